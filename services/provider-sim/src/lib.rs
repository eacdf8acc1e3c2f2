//! A payment provider simulator: a stand-in for a card processor, so the payment service can be
//! tested against real HTTP. It captures and declines charges, refunds them, honours idempotency
//! keys, and injects latency, outages (503), declines and pending charges by configuration and by
//! customer-id prefix (`cus_decline`, `cus_flaky`, `cus_pending`). A pending charge is what a
//! processor answers when the customer must still authenticate (3-D Secure): it is answered at
//! once, the merchant asks again by repeating the charge with its idempotency key, and it is
//! declined (`authentication_timeout`) when `--pending-ms` is over. Its state lives in memory
//! behind a mutex and is gone when it stops: it is a simulator, not a ledger.
//!
//! What a real processor offers to settle an outcome the merchant did not see is here too: a
//! charge is found by its idempotency key, voided by it (which also takes an unused key, so a
//! request still on its way can never capture), and all charges are listed in creation order for
//! reconciliation. Faults are set at run time (`PUT /admin/faults`): latency, bursts of 503s, and
//! charges captured at once but answered after the client's timeout.
//!
//! The pure decision is in [`decide`], request parsing in [`request`], run-time faults in
//! [`faults`], the books in [`ledger`], the routes in [`http`].

pub mod config;
pub mod decide;
pub mod faults;
pub mod http;
pub mod ledger;
pub mod request;
mod rng;

use std::net::SocketAddr;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use config::Config;
pub use http::{router, AppState};

/// A simulator bound to its port, not yet serving.
pub struct Simulator {
    listener: TcpListener,
    config: Config,
}

impl Simulator {
    /// Binds `config.addr` (port 0 picks a free port; read it with [`Simulator::local_addr`]).
    pub async fn bind(config: Config) -> std::io::Result<Self> {
        let listener = TcpListener::bind(config.addr).await?;
        Ok(Self { listener, config })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `shutdown` is cancelled.
    pub async fn run(self, shutdown: CancellationToken) -> std::io::Result<()> {
        serve(self.listener, self.config, shutdown).await
    }
}

/// Serves the simulator on `listener` until `shutdown`; answers still waiting out their
/// latency then get a 503 at once.
pub async fn serve(
    listener: TcpListener,
    config: Config,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let app = router(AppState::new(config, shutdown.clone()));
    axum::serve(listener, app)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
}
