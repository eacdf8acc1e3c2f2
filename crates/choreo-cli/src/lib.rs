//! The `choreo` operator tool as a library, so that its commands can be tested without a shell.
//!
//! `main.rs` only parses arguments and calls [`cli::run`], which dispatches to the command groups;
//! they share [`failure`] (how a command fails) and [`cluster`] (the global flags and the
//! registry), never `cli`. Each command group lives in its own module: [`topics`] holds topics
//! as code (spec files, a pure planner, and the AdminClient edge); [`schemas`] holds schemas as
//! code (the subject catalog, compatibility with reasons, and the registry and git edges);
//! [`read`] reads bounded ranges of topics by assigned partitions (never moving a consumer group)
//! for [`inspect`], [`replay`] (dump and load; replaying through a service's handlers is the
//! service binary's `replay` subcommand, on [`choreo::replay`]), [`trace`] and [`dlq`]; [`lag`]
//! reads groups' offsets and services' outboxes.
//!
//! It depends on the backbone only, never on a service or the shop's events.

pub mod cli;
pub mod cluster;
pub mod decode;
pub mod dlq;
pub mod failure;
pub mod inspect;
pub mod lag;
pub mod read;
pub mod replay;
pub mod schemas;
pub mod topics;
pub mod trace;
