//! Schemas as code: `schemas/**/*.avsc` registered under the subjects `topics/*.yaml` implies, and
//! kept BACKWARD_TRANSITIVE.
//!
//! [`catalog`] derives every subject from the two folders (pure); [`compat`] decides whether a
//! schema reads what an older one wrote and [`explain`] says why not, field by field (both pure);
//! [`registry`] is the schema registry edge and [`history`] the git edge; [`register`] and
//! [`check`] are the two commands built from them. Generating Rust types from the schemas is not here (crates/events).

pub mod catalog;
pub mod check;
pub mod compat;
pub mod explain;
pub mod history;
pub mod register;
pub mod registry;

pub use catalog::{load, Catalog, CatalogError, CatalogErrors, SchemaFile, Subject};
pub use compat::{check_compatible, check_transitive, Break, Rule};
pub use registry::{Registry, RegistryError, LEVEL};
