//! The simulator over real HTTP: each test starts its own on port 0.

mod charges;
mod helpers;
mod refunds;
