//! Process shutdown: one signal (SIGTERM or SIGINT) turned into one [`CancellationToken`] that
//! every task watches; a second signal exits at once.
//!
//! Order on SIGTERM (wired in `commands::run`): the token is cancelled, the reconciler stops
//! taking new work and finishes in-flight reconciles, the AWS poller stops, the lease is released,
//! and the HTTP server stops last so probes and scrapes keep working while the rest drains, all
//! within `--shutdown-grace-period`.

use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio::task::JoinHandle;
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

#[cfg(test)]
mod tests {
    use super::*;

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
        tokio::time::timeout(std::time::Duration::from_secs(10), token.cancelled())
            .await
            .expect("token cancelled by SIGTERM");
    }
}
