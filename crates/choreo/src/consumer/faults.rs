//! A deterministic crash point inside a consumer's batch, for the crash-point scenario tests
//! (feature `testing`; absent from other builds, so a production consumer cannot carry it).

use std::future::Future;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

/// Crash points.
#[derive(Clone, Default)]
pub struct Faults {
    /// Called after a batch's transaction committed and before its offset is committed; `true`
    /// kills the consumer there.
    pub after_db_commit: Option<Arc<dyn Fn() -> bool + Send + Sync>>,
}

/// A worker's crash points and its session's crash token.
pub(super) struct Armed {
    pub faults: Faults,
    /// Cancelled by a fault point: the whole consumer dies without committing.
    pub crash: CancellationToken,
}

impl Armed {
    /// Whether the crash point after a batch's database commit fires.
    pub fn after_db_commit(&self) -> bool {
        self.faults
            .after_db_commit
            .as_ref()
            .is_some_and(|crash| crash())
    }
}

/// Runs `session` to its end, or `None` once a worker cancelled `crash` (even if the session
/// ended meanwhile: a crashed worker also looks like a dead one).
pub(super) async fn unless_crashed<T>(
    crash: &CancellationToken,
    session: impl Future<Output = T>,
) -> Option<T> {
    let end = tokio::select! {
        biased;
        () = crash.cancelled() => None,
        end = session => Some(end),
    };
    end.filter(|_| !crash.is_cancelled())
}
