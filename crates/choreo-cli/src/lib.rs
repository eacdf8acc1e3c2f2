//! The `choreo` operator tool as a library, so that its commands can be tested without a shell.
//!
//! `main.rs` only parses arguments and calls [`cli::run`]. Each command group lives in its own
//! module: [`topics`] holds topics as code (spec files, a pure planner, and the AdminClient edge);
//! [`schemas`] holds schemas as code (the subject catalog, compatibility with reasons, and the
//! registry and git edges); [`read`] reads bounded ranges of topics by assigned partitions (never
//! moving a consumer group) for [`inspect`], [`replay`], [`trace`] and [`dlq`]; [`lag`] reads
//! groups' offsets and services' outboxes.

pub mod cli;
pub mod decode;
pub mod dlq;
pub mod inspect;
pub mod lag;
pub mod read;
pub mod replay;
pub mod schemas;
pub mod topics;
pub mod trace;
