//! `otlp-sink`: a small OTLP/HTTP trace receiver for the tests. It keeps in memory every span the
//! services export and answers queries for them; `scripts/test` starts it before the shop and
//! `tests/traces.rs` reads it. The receiver itself is [`shop_e2e::otlp`].

use clap::Parser;
use shop_e2e::otlp::{serve, Sink};
use tokio_util::sync::CancellationToken;

#[derive(Debug, Parser)]
#[command(
    name = "otlp-sink",
    about = "An in-memory OTLP/HTTP trace receiver for the shop's tests",
    long_about = "An in-memory OTLP/HTTP trace receiver for the shop's tests.\n\n\
        Point the services at it with OTEL_EXPORTER_OTLP_ENDPOINT=http://<listen>; it takes \
        their exports and keeps every span (ids in hex, name, kind, service.name, attributes \
        as strings, start and end). Routes:\n\n  \
        POST /v1/traces   an ExportTraceServiceRequest in protobuf (application/x-protobuf, \
        uncompressed), as the OTLP/HTTP exporters send it\n  \
        GET  /spans?trace_id=<32 hex>&key=<message key>   the spans of a trace and/or with \
        that messaging.kafka.message.key, by start time (JSON array; one of the two is needed)\n  \
        GET  /stats       spans kept, export requests, rejected requests, dropped spans, traces\n  \
        GET  /healthz     200 once it listens\n\n\
        Nothing is written to disk; the spans are gone when it stops (SIGTERM or Ctrl-C)."
)]
struct Args {
    /// Address to listen on (OTLP/HTTP's usual port is 4318; scripts/test uses SHOP_OTLP_PORT,
    /// 4319, so that a Jaeger from `STACK_TRACING=jaeger scripts/stack up` can keep 4318).
    #[arg(long, default_value = "127.0.0.1:4318")]
    listen: std::net::SocketAddr,
    /// Spans kept at most; later ones are counted as dropped.
    #[arg(long, default_value_t = 2_000_000)]
    max_spans: u64,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|e| anyhow::anyhow!("listening on {}: {e}", args.listen))?;
    eprintln!(
        "otlp-sink: listening on http://{} (POST /v1/traces, GET /spans, /stats, /healthz)",
        listener.local_addr()?
    );
    let shutdown = CancellationToken::new();
    let signalled = shutdown.clone();
    tokio::spawn(async move {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("a SIGTERM handler");
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        signalled.cancel();
    });
    let sink = Sink::new(args.max_spans);
    serve(listener, sink.clone(), shutdown).await?;
    let stats = sink.stats();
    eprintln!(
        "otlp-sink: stopped after {} requests, {} spans kept, {} dropped, {} rejected",
        stats.requests, stats.spans, stats.dropped, stats.rejected
    );
    Ok(())
}
