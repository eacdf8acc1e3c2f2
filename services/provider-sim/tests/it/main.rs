//! The simulator over real HTTP: each test starts its own on port 0.

mod charges;
mod faults;
mod helpers;
mod refunds;
mod settling;
