//! Deterministic crash and pause points inside a relay's batch, for the crash-point scenario
//! tests (feature `testing`; absent from other builds, so a production relay cannot carry them).

use std::sync::Arc;

use super::RelayError;

/// Interruptions at precise points of a batch.
#[derive(Clone, Default)]
pub struct FaultPoints {
    /// Called after Kafka committed a batch and before its rows are deleted; `true` crashes the
    /// relay there (nothing is deleted).
    pub after_publish: Option<Arc<CrashPoint>>,
    /// Awaited after a batch was sent and before it is committed, with the whole relay stopped
    /// (as SIGSTOP would): its lease is not kept meanwhile.
    pub before_commit: Option<Arc<dyn Fn() -> PauseFuture + Send + Sync>>,
}

/// Told the ids of a published batch; `true` crashes the relay there.
pub type CrashPoint = dyn Fn(&[i64]) -> bool + Send + Sync;

/// What [`FaultPoints::before_commit`] returns: the pause, as a future.
pub type PauseFuture = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

impl FaultPoints {
    /// The pause before a batch's commit, if one is installed.
    pub(super) async fn before_commit(&self) {
        if let Some(pause) = &self.before_commit {
            pause().await;
        }
    }

    /// [`RelayError::Crashed`] when the crash point fires for the batch `ids`.
    pub(super) fn after_publish(&self, ids: &[i64]) -> Result<(), RelayError> {
        match &self.after_publish {
            Some(crash) if crash(ids) => Err(RelayError::Crashed),
            _ => Ok(()),
        }
    }
}
