//! The chaos suite (`shop-chaos`, run by `scripts/chaos`): the shop under steady load through
//! its gateway while a seeded schedule injects the faults of DESIGN.md's failure model into the
//! real processes, then every invariant checked from the outside.
//!
//! [`schedule`] names the faults and plans them from a seed; [`fleet`] runs and supervises the
//! service processes; [`inject`] injects one fault and undoes what it leaves behind; [`load`]
//! is the patient client load; [`verify`] holds the invariants a faulty run adds to the saga's
//! own ([`crate::invariants`]); [`summary`] prints the figures; [`suite`] is one run.

pub mod fleet;
pub mod inject;
pub mod load;
pub mod schedule;
pub mod suite;
pub mod summary;
pub mod verify;
