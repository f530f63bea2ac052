//! `hardened-csi-operator run`: the operator process. Wires configuration, logging, the HTTP
//! endpoints, leader election, the reconciler, the AWS poller and shutdown together; each piece
//! lives in its own module.
//!
//! On SIGTERM: the shared token is cancelled, the controller stops taking work and finishes what
//! is in flight, the lease is released, and the HTTP server stops last.

use std::sync::Arc;

use thiserror::Error;

use tokio::sync::mpsc;

use crate::aws::{AwsStatusStore, Poller, PollerSettings};
use crate::reconciler::policy::InstallPolicy;
use crate::reconciler::{self, Options};
use crate::runtime::config::{self, ConfigError, RunArgs};
use crate::runtime::http::{self, HttpError, Readiness};
use crate::runtime::leader::{self, LeadOutcome, LeaderElection, RELEASE_BUDGET};
use crate::runtime::metrics::Metrics;
use crate::runtime::shutdown::{CancellationToken, SignalListener};
use crate::runtime::telemetry::{self, TelemetryError};

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

/// `hardened-csi-operator run`: exit 0 after a graceful stop, 1 for a start-up failure.
pub fn main(args: RunArgs) -> std::process::ExitCode {
    match super::block_on(run(args)) {
        Ok(Ok(())) => std::process::ExitCode::SUCCESS,
        Ok(Err(e)) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
        Err(code) => code,
    }
}

/// Runs until SIGTERM/SIGINT. Errors are start-up problems (bad flags, port in use, no cluster)
/// or the leader-only work ending on its own.
pub async fn run(args: RunArgs) -> Result<(), RunError> {
    args.validate()?;
    telemetry::init(args.log_format, &args.log_level)?;
    let lease = args.lease_settings()?;
    let metrics = Arc::new(Metrics::new());
    let client = config::kube_client_counted(&args, Some(metrics.kube_requests.clone())).await?;
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
    let policy = InstallPolicy {
        driver_namespace: args.driver_namespace.clone(),
        allowed_registries: args.allowed_registries.clone(),
    };
    let store = AwsStatusStore::default();
    let poller_settings = PollerSettings {
        endpoint_url: args.aws_endpoint_url.clone(),
        default_region: args.aws_region.clone(),
        ..PollerSettings::default()
    };
    // Leader-only work: the controller and the AWS poller, started anew each time this replica
    // becomes leader; the poller tells the controller which driver's inventory changed.
    let work = {
        let (client, metrics, readiness) = (client.clone(), metrics.clone(), readiness.clone());
        move |token: CancellationToken| {
            let (triggers_tx, triggers_rx) = mpsc::channel(16);
            let poller =
                Poller::new(client.clone(), store.clone(), metrics.aws.clone(), triggers_tx, poller_settings.clone());
            let opts = Options {
                metrics: metrics.clone(),
                aws: Some(store.clone()),
                triggers: Some(triggers_rx),
                ready: Some(readiness.clone()),
                shutdown: Box::pin(token.clone().cancelled_owned()),
                reporter: reporter.clone(),
                policy: policy.clone(),
                discovery_interval: args.discovery_interval,
            };
            let client = client.clone();
            async move {
                let poll = tokio::spawn(poller.run(token.clone()));
                if let Err(e) = reconciler::run(client, opts).await {
                    tracing::error!(error = %e, "controller stopped");
                }
                token.cancel();
                let _ = poll.await;
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
