//! Structure checks for the shop's deployment files: the root `Dockerfile`, `compose/` and the
//! kustomize tree in `deploy/`, held against what the code actually reads and registers. No
//! Docker engine or cluster is needed: the files are parsed, never run.
//!
//! [`source`] scans the Rust sources (the environment variables each binary reads, the metric
//! names the backbone and the services register, the consumer's shutdown grace); [`files`]
//! loads YAML and JSON from the repository. The checks themselves live in `tests/manifests.rs`.

pub mod files;
pub mod source;

/// The shop's binaries with an image of their own, and the crate whose sources build each.
pub const BINARIES: &[(&str, &str)] = &[
    ("order", "services/order"),
    ("inventory", "services/inventory"),
    ("payment", "services/payment"),
    ("shipping", "services/shipping"),
    ("gateway", "services/gateway"),
    ("provider-sim", "services/provider-sim"),
    ("choreo", "crates/choreo-cli"),
];

/// The crate directory of `binary`, if it is one of [`BINARIES`].
pub fn crate_of(binary: &str) -> Option<&'static str> {
    BINARIES
        .iter()
        .find(|(name, _)| *name == binary)
        .map(|(_, dir)| *dir)
}
