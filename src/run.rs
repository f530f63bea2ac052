//! `hardened-csi-operator run`: the operator process. Wires configuration, logging, the HTTP
//! endpoints, leader election, the controller and shutdown together; each piece lives in its own
//! module.
//!
//! On SIGTERM: the shared token is cancelled, the controller stops taking work and finishes what
//! is in flight, the lease is released, and the HTTP server stops last.

use std::sync::Arc;

use thiserror::Error;

use crate::config::{self, ConfigError, RunArgs};
use crate::controller::{self, Options};
use crate::http::{self, HttpError, Readiness};
use crate::leader::{self, LeadOutcome, LeaderElection, RELEASE_BUDGET};
use crate::metrics::Metrics;
use crate::shutdown::{CancellationToken, SignalListener};
use crate::telemetry::{self, TelemetryError};

#[derive(Debug, Error)]
pub enum RunError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Telemetry(#[from] TelemetryError),
    #[error(transparent)]
    Http(#[from] HttpError),
    #[error("installing signal handlers: {0}")]
    Signals(std::io::Error),
    #[error("{0}")]
    Stopped(&'static str),
}

/// Runs until SIGTERM/SIGINT. Errors are start-up problems (bad flags, port in use, no cluster)
/// or the leader-only work ending on its own.
pub async fn run(args: RunArgs) -> Result<(), RunError> {
    args.validate()?;
    telemetry::init(args.log_format, &args.log_level)?;
    let lease = args.lease_settings()?;
    let client = config::kube_client(&args).await?;
    let metrics = Arc::new(Metrics::new());
    let readiness = Readiness::new();
    let shutdown = CancellationToken::new();
    let signals = SignalListener::install().map_err(RunError::Signals)?.cancel_on_signal(shutdown.clone());
    // Stopped last, so probes and scrapes keep answering while the rest drains.
    let http_stop = CancellationToken::new();
    let server = http::serve(args.metrics_addr, metrics.clone(), readiness.clone(), http_stop.clone()).await?;

    let election = match lease {
        Some(settings) => {
            let election = LeaderElection::start(client.clone(), settings, metrics.clone());
            // A standby runs no controller and so never syncs caches: it is ready once it takes
            // part in the election; the leader's controller sets ready when its caches synced.
            let contact = election.first_contact();
            let ready = readiness.clone();
            tokio::spawn(async move {
                contact.await;
                ready.set_ready();
            });
            election
        }
        None => LeaderElection::disabled(&metrics),
    };

    let reporter = args.identity.clone().unwrap_or_else(|| "hardened-csi-operator".into());
    let work = {
        let (client, metrics, readiness) = (client.clone(), metrics.clone(), readiness.clone());
        move |token: CancellationToken| {
            let opts = Options {
                metrics: metrics.clone(),
                aws: None,
                triggers: None,
                ready: Some(readiness.clone()),
                shutdown: Box::pin(token.cancelled_owned()),
                reporter: reporter.clone(),
            };
            let client = client.clone();
            async move {
                if let Err(e) = controller::run(client, opts).await {
                    tracing::error!(error = %e, "controller stopped");
                }
            }
        }
    };
    let work_grace = args.shutdown_grace_period.saturating_sub(RELEASE_BUDGET);
    let outcome = leader::run_while_leader(election.subscribe(), shutdown.clone(), work_grace, work).await;
    election.release_within(RELEASE_BUDGET).await;
    signals.abort();
    http_stop.cancel();
    if let Err(e) = server.wait().await {
        tracing::warn!(error = %e, "HTTP server stopped with an error");
    }
    match outcome {
        LeadOutcome::Shutdown => {
            tracing::info!("stopped");
            Ok(())
        }
        LeadOutcome::ElectionEnded => Err(RunError::Stopped("leader election ended unexpectedly")),
        LeadOutcome::WorkEnded => Err(RunError::Stopped("the controller stopped unexpectedly (see the log above)")),
    }
}
