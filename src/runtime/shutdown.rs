//! Process shutdown: one signal (SIGTERM or SIGINT) turned into one [`CancellationToken`] that
//! every task watches, and the helpers that let in-flight work finish within the grace period.
//!
//! Order on SIGTERM (wired in `main.rs`): the token is cancelled, the controller stops taking new
//! work and finishes in-flight reconciles, the AWS poller stops, the lease is released, and the
//! HTTP server stops last so probes and scrapes keep working while the rest drains. Every stage
//! draws on the same deadline, so the whole sequence fits in `--shutdown-grace-period`.

use std::future::Future;
use std::time::Duration;

use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio::task::JoinHandle;
use tokio::time::Instant;
pub use tokio_util::sync::CancellationToken;

/// Which signal asked the process to stop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopSignal {
    Terminate,
    Interrupt,
}

impl StopSignal {
    pub fn name(self) -> &'static str {
        match self {
            StopSignal::Terminate => "SIGTERM",
            StopSignal::Interrupt => "SIGINT",
        }
    }
}

/// SIGTERM and SIGINT handlers, registered when this is built (not when first awaited), so a
/// signal that arrives between start-up and the first `await` is not lost and does not kill the
/// process with the default action.
pub struct SignalListener {
    terminate: Signal,
    interrupt: Signal,
}

impl SignalListener {
    /// Registers the handlers. Needs a running Tokio runtime.
    pub fn install() -> std::io::Result<Self> {
        Ok(Self { terminate: signal(SignalKind::terminate())?, interrupt: signal(SignalKind::interrupt())? })
    }

    /// Waits for the next SIGTERM or SIGINT.
    pub async fn recv(&mut self) -> StopSignal {
        tokio::select! {
            _ = self.terminate.recv() => StopSignal::Terminate,
            _ = self.interrupt.recv() => StopSignal::Interrupt,
        }
    }

    /// Spawns the task that cancels `token` on the first signal. A second signal means the
    /// operator (a person pressing Ctrl-C twice, or a kubelet out of patience) does not want to
    /// wait for the drain: the process exits at once with status 130.
    pub fn cancel_on_signal(mut self, token: CancellationToken) -> JoinHandle<()> {
        tokio::spawn(async move {
            let first = self.recv().await;
            tracing::info!(signal = first.name(), "shutdown requested: stopping new work and draining");
            token.cancel();
            let second = self.recv().await;
            tracing::warn!(signal = second.name(), "second signal: exiting without waiting for in-flight work");
            std::process::exit(130);
        })
    }
}

/// A fixed point in time by which shutdown must be complete; each stage waits at most until it.
#[derive(Clone, Copy, Debug)]
pub struct Deadline(Instant);

impl Deadline {
    /// The deadline `grace` from now.
    pub fn after(grace: Duration) -> Self {
        Self(Instant::now() + grace)
    }

    pub fn remaining(&self) -> Duration {
        self.0.saturating_duration_since(Instant::now())
    }

    /// Runs `fut` until it finishes or the deadline passes (`None`).
    pub async fn run<F: Future>(&self, fut: F) -> Option<F::Output> {
        tokio::time::timeout_at(self.0, fut).await.ok()
    }
}

/// What [`drain`] saw: tasks that finished on their own and tasks it had to abort.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Drained {
    pub finished: Vec<&'static str>,
    pub aborted: Vec<&'static str>,
    /// Tasks that ended by panicking, with the panic treated as finished work that failed.
    pub panicked: Vec<&'static str>,
}

impl Drained {
    /// True when every task finished by itself without panicking.
    pub fn clean(&self) -> bool {
        self.aborted.is_empty() && self.panicked.is_empty()
    }
}

/// Waits for every named task to finish until `deadline`, then aborts whatever is still running.
/// Tasks are expected to have seen the cancelled token already; this only bounds the wait.
pub async fn drain<T>(deadline: Deadline, tasks: impl IntoIterator<Item = (&'static str, JoinHandle<T>)>) -> Drained {
    let mut drained = Drained::default();
    for (name, mut handle) in tasks {
        match deadline.run(&mut handle).await {
            Some(Ok(_)) => drained.finished.push(name),
            Some(Err(err)) if err.is_panic() => {
                tracing::error!(task = name, "task panicked during shutdown");
                drained.panicked.push(name);
            }
            Some(Err(_)) => drained.aborted.push(name),
            None => {
                tracing::warn!(task = name, "task still running at the end of the grace period: aborting it");
                handle.abort();
                drained.aborted.push(name);
            }
        }
    }
    drained
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn drain_waits_for_work_that_finishes_and_aborts_work_that_does_not() {
        let token = CancellationToken::new();
        let finishes = {
            let token = token.clone();
            tokio::spawn(async move {
                token.cancelled().await;
                "flushed"
            })
        };
        let (aborted_tx, aborted_rx) = tokio::sync::oneshot::channel::<()>();
        let hangs = tokio::spawn(async move {
            // Holds the sender until the task is dropped (aborted): the receiver then sees it.
            let _guard = aborted_tx;
            std::future::pending::<&str>().await
        });
        token.cancel();
        let drained =
            drain(Deadline::after(Duration::from_millis(200)), [("finishes", finishes), ("hangs", hangs)]).await;
        assert_eq!(drained.finished, vec!["finishes"]);
        assert_eq!(drained.aborted, vec!["hangs"]);
        assert!(!drained.clean());
        assert!(aborted_rx.await.is_err(), "the hanging task was aborted, dropping its state");
    }

    #[tokio::test]
    async fn drain_reports_panics() {
        let panics = tokio::spawn(async { panic!("boom") });
        let drained = drain::<()>(Deadline::after(Duration::from_secs(5)), [("panics", panics)]).await;
        assert_eq!(drained.panicked, vec!["panics"]);
    }

    #[tokio::test]
    async fn child_tokens_see_the_one_signal() {
        let root = CancellationToken::new();
        let children: Vec<_> = (0..3).map(|_| root.child_token()).collect();
        root.cancel();
        for child in children {
            child.cancelled().await;
        }
    }

    #[tokio::test]
    async fn sigterm_cancels_the_token() {
        let listener = SignalListener::install().expect("install handlers");
        let token = CancellationToken::new();
        let _task = listener.cancel_on_signal(token.clone());
        // The handler is registered, so SIGTERM to ourselves is caught rather than fatal.
        let status = std::process::Command::new("kill")
            .args(["-TERM", &std::process::id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success());
        tokio::time::timeout(Duration::from_secs(10), token.cancelled()).await.expect("token cancelled by SIGTERM");
    }
}
