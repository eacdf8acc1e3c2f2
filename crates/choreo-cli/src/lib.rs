//! The `choreo` operator tool as a library, so that its commands can be tested without a shell.
//!
//! `main.rs` only parses arguments and calls [`cli::run`]. Each command group lives in its own
//! module: [`topics`] holds topics as code (spec files, a pure planner, and the AdminClient edge);
//! [`schemas`] holds schemas as code (the subject catalog, compatibility with reasons, and the
//! registry and git edges).

pub mod cli;
pub mod schemas;
pub mod topics;
