//! Leader election on a `coordination.k8s.io/v1` Lease, so that several replicas can run and only
//! one of them reconciles and polls AWS.
//!
//! The protocol is the one client-go's `leaderelection` uses, written small:
//!
//! - Every round (each `--retry-period`) a replica reads the Lease and [`decide`]s: create it when
//!   absent, acquire it when free or expired, renew it when it names this replica, wait while
//!   another live replica holds it, or step down.
//! - Every write is a create or a `replace` carrying the `resourceVersion` that was read, so two
//!   replicas racing for the same Lease cannot both succeed: the loser gets 409 Conflict.
//! - Expiry is judged on this replica's own monotonic clock: a Lease is expired when its content
//!   has not changed for `leaseDurationSeconds` since this replica first saw that content. The
//!   holder's `renewTime` is written for people and tools, never compared with our clock, so
//!   clock skew between nodes cannot cause a premature takeover.
//! - The leader steps down when it has not renewed for `--renew-deadline`, measured from when its
//!   last successful renewal was *sent*. Since the renew deadline is shorter than the lease
//!   duration, it stops leading before any other replica may start.
//! - A graceful stop ([`LeaderElection::release`]) clears `holderIdentity` (and sets
//!   `leaseDurationSeconds: 1`), so another replica takes over on its next round instead of
//!   waiting for the lease to expire.
//!
//! No crate fit: `kube-leader-election` requires kube 4; `kube-lease-manager` (kube 5) takes over
//! expired leases with a forced strategic-merge patch that carries no `resourceVersion`, which
//! lets two replicas both believe they lead during a takeover, and has no renew deadline.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::Api;
use kube::api::{ObjectMeta, PostParams};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::runtime::config::LeaseSettings;
use crate::runtime::metrics::Metrics;

/// Time to keep at the end of the shutdown grace period for releasing the Lease (one read and
/// one write): give leader-only work `grace - RELEASE_BUDGET`, then `release_within(RELEASE_BUDGET)`.
pub const RELEASE_BUDGET: Duration = Duration::from_secs(2);

/// The Lease as read in one round.
#[derive(Clone, Copy, Debug)]
pub enum LeaseRead<'a> {
    /// No Lease object exists.
    Absent,
    /// The Lease's spec (an object without spec reads as an empty spec).
    Present(&'a LeaseSpec),
    /// The read failed (API server unreachable, timeout, 5xx).
    Failed,
}

/// Everything [`decide`] needs; no I/O and no clock inside.
#[derive(Clone, Copy, Debug)]
pub struct DecisionInput<'a> {
    pub lease: LeaseRead<'a>,
    /// This replica's identity.
    pub me: &'a str,
    pub now: Instant,
    /// When this replica first saw the Lease's current content (the start of its expiry clock).
    pub observed_since: Instant,
    /// While leading: when the last successful acquire or renewal was sent. `None` = not leading.
    pub renewed_at: Option<Instant>,
    pub renew_deadline: Duration,
    /// Used when the Lease has no valid `leaseDurationSeconds`.
    pub lease_duration: Duration,
}

/// What to do this round.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// No Lease exists: create one naming this replica.
    Create,
    /// The Lease is free or its holder stopped renewing: write this replica as the new holder.
    Acquire,
    /// The Lease names this replica: write a new `renewTime`.
    Renew,
    /// Another replica holds a live lease, or the Lease could not be read: look again later.
    Wait,
    /// This replica was leading and must stop now.
    Lost,
}

/// The pure election rule; see the module docs for why each case is safe.
pub fn decide(input: &DecisionInput<'_>) -> Decision {
    let leading = input.renewed_at.is_some();
    if let Some(renewed_at) = input.renewed_at
        && input.now >= renewed_at + input.renew_deadline
    {
        return Decision::Lost;
    }
    match input.lease {
        // Still within the renew deadline: keep leading (or keep waiting) and retry.
        LeaseRead::Failed => Decision::Wait,
        // Someone deleted the Lease under the leader: another replica may create it at any
        // moment, so stop first and compete again next round.
        LeaseRead::Absent if leading => Decision::Lost,
        LeaseRead::Absent => Decision::Create,
        LeaseRead::Present(spec) => {
            let holder = spec.holder_identity.as_deref().filter(|h| !h.is_empty());
            match holder {
                // Also when not leading: a restarted replica with the same identity (same pod name)
                // resumes its own lease; the replace's resourceVersion proves nobody else took it.
                Some(holder) if holder == input.me => Decision::Renew,
                _ if leading => Decision::Lost,
                None => Decision::Acquire,
                Some(_) => {
                    let duration = lease_duration_of(spec).unwrap_or(input.lease_duration);
                    if input.now >= input.observed_since + duration { Decision::Acquire } else { Decision::Wait }
                }
            }
        }
    }
}

fn lease_duration_of(spec: &LeaseSpec) -> Option<Duration> {
    spec.lease_duration_seconds.filter(|s| *s > 0).map(|s| Duration::from_secs(u64::from(s.unsigned_abs())))
}

/// Leader election for this replica: a background task plus the channel saying whether this
/// replica leads. Dropping it without [`release`](Self::release) stops the task without
/// releasing, as a crash would.
pub struct LeaderElection {
    leader: watch::Receiver<bool>,
    /// Keeps the channel open when election is disabled (no task owns the sender then).
    _always: Option<watch::Sender<bool>>,
    /// True once the elector has read the Lease successfully at least once.
    contacted: watch::Receiver<bool>,
    stop: CancellationToken,
    task: Option<JoinHandle<()>>,
    release_timeout: Duration,
}

impl Drop for LeaderElection {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

impl LeaderElection {
    /// Starts competing for the Lease in `settings` (validated by [`LeaseSettings::validate`]).
    pub fn start(client: kube::Client, settings: LeaseSettings, metrics: Arc<Metrics>) -> Self {
        let (tx, rx) = watch::channel(false);
        let (contacted_tx, contacted) = watch::channel(false);
        metrics.leader.set(0);
        let stop = CancellationToken::new();
        let release_timeout = settings.renew_deadline;
        let elector = Elector {
            api: Api::namespaced(client, &settings.namespace),
            settings,
            metrics,
            tx,
            contacted: contacted_tx,
            observed: None,
            renewed_at: None,
            held: None,
        };
        let task = tokio::spawn(elector.run(stop.clone()));
        Self { leader: rx, _always: None, contacted, stop, task: Some(task), release_timeout }
    }

    /// Leader election switched off: this replica always leads (a single-replica install).
    pub fn disabled(metrics: &Metrics) -> Self {
        let (tx, rx) = watch::channel(true);
        // Without election there is no lease to read: "contact" is immediate.
        let (_, contacted) = watch::channel(true);
        metrics.leader.set(1);
        Self {
            leader: rx,
            _always: Some(tx),
            contacted,
            stop: CancellationToken::new(),
            task: None,
            release_timeout: Duration::ZERO,
        }
    }

    /// Completes once this replica has read the Lease successfully, i.e. it takes part in the
    /// election with a working API connection. A standby replica runs no controller and so never
    /// syncs caches: this is what makes it ready (see the wiring in `commands::run`). Pending forever if
    /// the election task ended before any read.
    pub fn first_contact(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut contacted = self.contacted.clone();
        async move {
            if contacted.wait_for(|c| *c).await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }

    /// A receiver of "this replica leads"; the value changes when leadership is won or lost.
    pub fn subscribe(&self) -> watch::Receiver<bool> {
        self.leader.clone()
    }

    pub fn is_leader(&self) -> bool {
        *self.leader.borrow()
    }

    /// Stops competing and, if this replica leads, gives the Lease up so another replica takes
    /// over on its next round. Call after the leader-only work has stopped. Bounded by the renew
    /// deadline; returns false when the task had to be aborted before it released (the lease
    /// then expires on its own).
    pub async fn release(self) -> bool {
        let limit = self.release_timeout;
        self.release_within(limit).await
    }

    /// [`release`](Self::release) bounded by `limit` (at most the renew deadline), for the
    /// end of a shutdown grace period; see [`RELEASE_BUDGET`].
    pub async fn release_within(mut self, limit: Duration) -> bool {
        self.stop.cancel();
        let Some(mut task) = self.task.take() else { return true };
        match tokio::time::timeout(limit.min(self.release_timeout), &mut task).await {
            Ok(joined) => joined.is_ok(),
            Err(_) => {
                tracing::warn!("lease release did not finish in time; the lease will expire instead");
                task.abort();
                false
            }
        }
    }
}

/// The state of one replica's election task.
struct Elector {
    api: Api<Lease>,
    settings: LeaseSettings,
    metrics: Arc<Metrics>,
    tx: watch::Sender<bool>,
    contacted: watch::Sender<bool>,
    /// The Lease content last read and when it was first seen with that content.
    observed: Option<(LeaseSpec, Instant)>,
    /// When the last successful acquire/renew was sent; `Some` exactly while leading.
    renewed_at: Option<Instant>,
    /// The Lease as this replica last wrote it, for the release.
    held: Option<Lease>,
}

/// What a round asks of the loop.
enum Next {
    /// Sleep until the next round.
    Sleep,
    /// The Lease changed between read and write (409): read again at once.
    Reread,
}

enum WriteResult {
    Written(Box<Lease>),
    Conflict,
    Failed,
}

impl Elector {
    async fn run(mut self, stop: CancellationToken) {
        let mut conflict_retried = false;
        loop {
            let attempt = Instant::now();
            let deadline = self.renew_deadline_at();
            let next = tokio::select! {
                biased;
                _ = stop.cancelled() => break,
                next = bounded(deadline, self.round(attempt)) => next,
            };
            match next {
                Some(Next::Reread) if !conflict_retried => {
                    conflict_retried = true;
                    continue;
                }
                Some(_) => {}
                None => self.step_down("the renew deadline passed while talking to the API server"),
            }
            conflict_retried = false;
            let wake = match self.renew_deadline_at() {
                // Leaders renew on a fixed cadence, never sleeping past their deadline.
                Some(deadline) => (attempt + self.settings.retry_period).min(deadline),
                // Followers add jitter so that replicas started together do not race in step.
                None => Instant::now() + self.settings.retry_period.mul_f64(1.0 + fastrand::f64() * 0.2),
            };
            tokio::select! {
                biased;
                _ = stop.cancelled() => break,
                _ = tokio::time::sleep_until(wake) => {}
            }
            if let Some(deadline) = self.renew_deadline_at()
                && Instant::now() >= deadline
            {
                self.step_down("the lease was not renewed within the renew deadline");
            }
        }
        self.release().await;
    }

    fn renew_deadline_at(&self) -> Option<Instant> {
        self.renewed_at.map(|at| at + self.settings.renew_deadline)
    }

    async fn round(&mut self, attempt: Instant) -> Next {
        let read = self.api.get_opt(&self.settings.name).await;
        let now = Instant::now();
        if read.is_ok() {
            self.contacted.send_if_modified(|c| !std::mem::replace(c, true));
        }
        let current = match read {
            Ok(Some(lease)) => {
                let spec = lease.spec.clone().unwrap_or_default();
                if self.observed.as_ref().is_none_or(|(seen, _)| *seen != spec) {
                    self.observed = Some((spec, now));
                }
                Some(lease)
            }
            Ok(None) => {
                self.observed = None;
                None
            }
            Err(err) => {
                tracing::warn!(lease = %self.settings.name, error = %err, "cannot read the leader lease");
                if self.decide(LeaseRead::Failed, now) == Decision::Lost {
                    self.step_down("the lease was not renewed within the renew deadline");
                }
                return Next::Sleep;
            }
        };
        let empty = LeaseSpec::default();
        let lease_read = match &current {
            Some(lease) => LeaseRead::Present(lease.spec.as_ref().unwrap_or(&empty)),
            None => LeaseRead::Absent,
        };
        let decision = self.decide(lease_read, now);
        match decision {
            Decision::Wait => Next::Sleep,
            Decision::Lost => {
                let holder = current
                    .as_ref()
                    .and_then(|l| l.spec.as_ref())
                    .and_then(|s| s.holder_identity.clone())
                    .unwrap_or_default();
                self.step_down(&format!("the lease now names {holder:?}"));
                Next::Sleep
            }
            Decision::Create => self.write(attempt, None).await,
            Decision::Acquire | Decision::Renew => self.write(attempt, current).await,
        }
    }

    fn decide(&self, lease: LeaseRead<'_>, now: Instant) -> Decision {
        decide(&DecisionInput {
            lease,
            me: &self.settings.identity,
            now,
            observed_since: self.observed.as_ref().map_or(now, |(_, since)| *since),
            renewed_at: self.renewed_at,
            renew_deadline: self.settings.renew_deadline,
            lease_duration: self.settings.lease_duration,
        })
    }

    /// Creates the Lease (when `current` is None) or replaces it with this replica as holder.
    async fn write(&mut self, attempt: Instant, current: Option<Lease>) -> Next {
        let now = MicroTime(jiff::Timestamp::now());
        let me = self.settings.identity.clone();
        let duration = i32::try_from(self.settings.lease_duration.as_secs()).unwrap_or(i32::MAX);
        let result = match current {
            None => {
                let lease = Lease {
                    metadata: ObjectMeta { name: Some(self.settings.name.clone()), ..ObjectMeta::default() },
                    spec: Some(LeaseSpec {
                        holder_identity: Some(me),
                        lease_duration_seconds: Some(duration),
                        acquire_time: Some(now.clone()),
                        renew_time: Some(now),
                        lease_transitions: Some(0),
                        ..LeaseSpec::default()
                    }),
                };
                classify(self.api.create(&PostParams::default(), &lease).await)
            }
            Some(mut lease) => {
                let mut spec = lease.spec.take().unwrap_or_default();
                let ours = spec.holder_identity.as_deref() == Some(me.as_str());
                if !ours {
                    // Leadership moves to this replica (from a dead, expired or released holder).
                    spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0).saturating_add(1));
                    spec.acquire_time = Some(now.clone());
                } else if spec.acquire_time.is_none() {
                    spec.acquire_time = Some(now.clone());
                }
                spec.holder_identity = Some(me);
                spec.lease_duration_seconds = Some(duration);
                spec.renew_time = Some(now);
                spec.lease_transitions.get_or_insert(0);
                lease.spec = Some(spec);
                // `lease` still carries the resourceVersion that was read: optimistic concurrency.
                classify(self.api.replace(&self.settings.name, &PostParams::default(), &lease).await)
            }
        };
        match result {
            WriteResult::Written(lease) => {
                if let Some(spec) = &lease.spec {
                    self.observed = Some((spec.clone(), Instant::now()));
                }
                self.held = Some(*lease);
                let was_leading = self.renewed_at.replace(attempt).is_some();
                if !was_leading {
                    tracing::info!(lease = %self.settings.name, identity = %self.settings.identity, "became leader");
                    self.set_leader(true);
                }
                Next::Sleep
            }
            WriteResult::Conflict => {
                tracing::debug!(lease = %self.settings.name, "lease changed between read and write; reading again");
                Next::Reread
            }
            WriteResult::Failed => Next::Sleep,
        }
    }

    fn step_down(&mut self, reason: &str) {
        self.held = None;
        if self.renewed_at.take().is_some() {
            tracing::warn!(lease = %self.settings.name, identity = %self.settings.identity, reason, "lost leadership");
            self.set_leader(false);
        }
    }

    fn set_leader(&self, leading: bool) {
        self.metrics.leader.set(i64::from(leading));
        self.tx.send_replace(leading);
    }

    /// Gives the Lease up if this replica holds it: holder cleared, a one-second duration, so
    /// the next replica to look acquires it at once.
    async fn release(&mut self) {
        let leading = self.renewed_at.take().is_some();
        // Stop claiming leadership before the write: from here on nothing may act as leader.
        self.set_leader(false);
        let Some(mut lease) = self.held.take().filter(|_| leading) else { return };
        for _ in 0..2 {
            let mut spec = lease.spec.take().unwrap_or_default();
            if spec.holder_identity.as_deref() != Some(self.settings.identity.as_str()) {
                return;
            }
            let now = MicroTime(jiff::Timestamp::now());
            spec.holder_identity = None;
            spec.lease_duration_seconds = Some(1);
            spec.acquire_time = Some(now.clone());
            spec.renew_time = Some(now);
            lease.spec = Some(spec);
            match classify(self.api.replace(&self.settings.name, &PostParams::default(), &lease).await) {
                WriteResult::Written(_) => {
                    tracing::info!(lease = %self.settings.name, "released the leader lease");
                    return;
                }
                // Changed since our last renewal: look again, release only if it still names us.
                WriteResult::Conflict => match self.api.get_opt(&self.settings.name).await {
                    Ok(Some(fresh)) => lease = fresh,
                    _ => return,
                },
                WriteResult::Failed => return,
            }
        }
    }
}

fn classify(result: Result<Lease, kube::Error>) -> WriteResult {
    match result {
        Ok(lease) => WriteResult::Written(Box::new(lease)),
        // 409 on replace: resourceVersion moved on; on create: someone created it first.
        Err(kube::Error::Api(status)) if status.code == 409 => WriteResult::Conflict,
        Err(err) => {
            tracing::warn!(error = %err, "writing the leader lease failed");
            WriteResult::Failed
        }
    }
}

/// Runs `fut`, bounded by `deadline` when there is one.
async fn bounded<F: Future>(deadline: Option<Instant>, fut: F) -> Option<F::Output> {
    match deadline {
        Some(deadline) => tokio::time::timeout_at(deadline, fut).await.ok(),
        None => Some(fut.await),
    }
}

/// Why [`run_while_leader`] returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LeadOutcome {
    /// The shutdown token was cancelled; the work finished or was aborted at the grace period.
    Shutdown,
    /// The election stopped (its sender is gone) without a shutdown: treat as fatal.
    ElectionEnded,
    /// The work returned by itself while this replica was leading: treat as fatal.
    WorkEnded,
}

/// Runs leader-only work: started each time this replica becomes leader, given a token that is
/// cancelled on shutdown (finish in-flight work, e.g. `Controller::graceful_shutdown_on`), and
/// aborted at once when leadership is lost, because another replica may start after the
/// lease duration and the margin (lease duration - renew deadline) is all there is.
pub async fn run_while_leader<F, Fut>(
    mut leader: watch::Receiver<bool>,
    shutdown: CancellationToken,
    grace: Duration,
    mut work: F,
) -> LeadOutcome
where
    F: FnMut(CancellationToken) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    loop {
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => return LeadOutcome::Shutdown,
            became = wait_until(&mut leader, true) => {
                if !became {
                    return LeadOutcome::ElectionEnded;
                }
            }
        }
        let token = shutdown.child_token();
        let mut task = tokio::spawn(work(token.clone()));
        tracing::info!("leading: starting leader-only work");
        let lost = tokio::select! {
            biased;
            _ = shutdown.cancelled() => {
                if tokio::time::timeout(grace, &mut task).await.is_err() {
                    tracing::warn!(?grace, "leader-only work still running at the end of the grace period: aborting \
                        it");
                    task.abort();
                }
                return LeadOutcome::Shutdown;
            }
            lost = wait_until(&mut leader, false) => lost,
            _ = &mut task => {
                return if shutdown.is_cancelled() { LeadOutcome::Shutdown } else { LeadOutcome::WorkEnded };
            }
        };
        token.cancel();
        task.abort();
        // Wait until the aborted task is really gone before competing again.
        let _ = task.await;
        tracing::warn!("leadership lost: leader-only work stopped");
        if !lost {
            return LeadOutcome::ElectionEnded;
        }
    }
}

/// Waits until the leader flag equals `wanted`; false when the election's sender is gone.
async fn wait_until(leader: &mut watch::Receiver<bool>, wanted: bool) -> bool {
    leader.wait_for(|leading| *leading == wanted).await.is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const RENEW: Duration = Duration::from_secs(10);
    const LEASE: Duration = Duration::from_secs(15);

    fn spec(holder: Option<&str>, seconds: Option<i32>) -> LeaseSpec {
        LeaseSpec {
            holder_identity: holder.map(str::to_string),
            lease_duration_seconds: seconds,
            ..LeaseSpec::default()
        }
    }

    /// Decision at `elapsed` after the content was first observed (t0), renewed at `renewed`
    /// seconds after t0 when leading.
    fn at(lease: LeaseRead<'_>, elapsed: u64, renewed: Option<u64>) -> Decision {
        let t0 = Instant::now();
        decide(&DecisionInput {
            lease,
            me: "me",
            now: t0 + Duration::from_secs(elapsed),
            observed_since: t0,
            renewed_at: renewed.map(|s| t0 + Duration::from_secs(s)),
            renew_deadline: RENEW,
            lease_duration: LEASE,
        })
    }

    #[test]
    fn absent_lease_is_created_by_a_follower_and_lost_by_a_leader() {
        assert_eq!(at(LeaseRead::Absent, 0, None), Decision::Create);
        assert_eq!(at(LeaseRead::Absent, 0, Some(0)), Decision::Lost);
    }

    #[test]
    fn free_lease_is_acquired() {
        assert_eq!(at(LeaseRead::Present(&spec(None, Some(15))), 0, None), Decision::Acquire);
        assert_eq!(at(LeaseRead::Present(&spec(Some(""), Some(1))), 0, None), Decision::Acquire);
        assert_eq!(at(LeaseRead::Present(&LeaseSpec::default()), 0, None), Decision::Acquire);
    }

    #[test]
    fn own_lease_is_renewed_while_within_the_deadline() {
        let mine = spec(Some("me"), Some(15));
        assert_eq!(at(LeaseRead::Present(&mine), 5, Some(0)), Decision::Renew);
        assert_eq!(at(LeaseRead::Present(&mine), 9, Some(0)), Decision::Renew);
        // A restart with the same identity resumes its own lease.
        assert_eq!(at(LeaseRead::Present(&mine), 0, None), Decision::Renew);
    }

    #[test]
    fn leader_past_the_renew_deadline_has_lost_whatever_it_reads() {
        let mine = spec(Some("me"), Some(15));
        assert_eq!(at(LeaseRead::Present(&mine), 10, Some(0)), Decision::Lost);
        assert_eq!(at(LeaseRead::Failed, 12, Some(0)), Decision::Lost);
    }

    #[test]
    fn failed_read_within_the_deadline_keeps_state_and_waits() {
        assert_eq!(at(LeaseRead::Failed, 5, Some(0)), Decision::Wait);
        assert_eq!(at(LeaseRead::Failed, 100, None), Decision::Wait);
    }

    #[test]
    fn live_lease_of_another_holder_is_respected_until_it_expires_on_our_clock() {
        let theirs = spec(Some("other"), Some(15));
        assert_eq!(at(LeaseRead::Present(&theirs), 0, None), Decision::Wait);
        assert_eq!(at(LeaseRead::Present(&theirs), 14, None), Decision::Wait);
        assert_eq!(at(LeaseRead::Present(&theirs), 15, None), Decision::Acquire);
    }

    #[test]
    fn the_leases_own_duration_wins_over_ours() {
        let short = spec(Some("other"), Some(3));
        assert_eq!(at(LeaseRead::Present(&short), 2, None), Decision::Wait);
        assert_eq!(at(LeaseRead::Present(&short), 3, None), Decision::Acquire);
        // A missing or nonsensical duration falls back to the configured one.
        let broken = spec(Some("other"), Some(-5));
        assert_eq!(at(LeaseRead::Present(&broken), 14, None), Decision::Wait);
        assert_eq!(at(LeaseRead::Present(&broken), 15, None), Decision::Acquire);
    }

    #[test]
    fn a_leader_that_sees_another_holder_has_lost() {
        assert_eq!(at(LeaseRead::Present(&spec(Some("other"), Some(15))), 1, Some(0)), Decision::Lost);
        assert_eq!(at(LeaseRead::Present(&spec(None, Some(15))), 1, Some(0)), Decision::Lost);
    }

    /// The safety argument in one test: a follower that first saw the leader's last successful
    /// renewal no earlier than it was sent can only acquire after the leader has stepped down.
    #[test]
    fn no_instant_where_both_would_lead() {
        let theirs = spec(Some("leader"), Some(15));
        let t0 = Instant::now();
        for seen_after_ms in [0u64, 1, 500, 1999] {
            for now_ms in (0..20_000).step_by(250) {
                let now = t0 + Duration::from_millis(now_ms);
                let follower = decide(&DecisionInput {
                    lease: LeaseRead::Present(&theirs),
                    me: "follower",
                    now,
                    observed_since: t0 + Duration::from_millis(seen_after_ms),
                    renewed_at: None,
                    renew_deadline: RENEW,
                    lease_duration: LEASE,
                });
                // The leader's renewals all fail after t0: it only ever reads Failed.
                let leader = decide(&DecisionInput {
                    lease: LeaseRead::Failed,
                    me: "leader",
                    now,
                    observed_since: t0,
                    renewed_at: Some(t0),
                    renew_deadline: RENEW,
                    lease_duration: LEASE,
                });
                assert!(
                    !(follower == Decision::Acquire && leader != Decision::Lost),
                    "both lead at {now_ms} ms (follower saw the renewal at {seen_after_ms} ms)"
                );
            }
        }
    }

    #[tokio::test]
    async fn disabled_election_always_leads() {
        let metrics = Metrics::new();
        let election = LeaderElection::disabled(&metrics);
        assert!(election.is_leader());
        assert!(*election.subscribe().borrow());
        assert!(metrics.encode().contains("hardened_csi_operator_leader 1"));
        assert!(election.release().await);
    }

    #[tokio::test]
    async fn work_runs_only_while_leading_and_is_aborted_on_loss() {
        let (tx, rx) = watch::channel(false);
        let shutdown = CancellationToken::new();
        let (started_tx, mut started_rx) = tokio::sync::mpsc::unbounded_channel::<()>();
        let (dropped_tx, mut dropped_rx) = tokio::sync::mpsc::unbounded_channel::<()>();
        struct OnDrop(tokio::sync::mpsc::UnboundedSender<()>);
        impl Drop for OnDrop {
            fn drop(&mut self) {
                let _ = self.0.send(());
            }
        }
        let runner = tokio::spawn(run_while_leader(rx, shutdown.clone(), Duration::from_millis(100), move |_token| {
            let started = started_tx.clone();
            let dropped = OnDrop(dropped_tx.clone());
            async move {
                let _dropped = dropped;
                let _ = started.send(());
                std::future::pending::<()>().await;
            }
        }));
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        assert!(started_rx.try_recv().is_err(), "no work before leading");
        tx.send_replace(true);
        started_rx.recv().await.expect("work starts on leadership");
        tx.send_replace(false);
        dropped_rx.recv().await.expect("work aborted on loss");
        tx.send_replace(true);
        started_rx.recv().await.expect("work restarts on regained leadership");
        shutdown.cancel();
        // The work ignores its token: it is aborted after the grace period.
        assert_eq!(runner.await.expect("runner"), LeadOutcome::Shutdown);
        dropped_rx.recv().await.expect("work aborted at the end of the grace period");
    }

    #[tokio::test]
    async fn graceful_work_finishes_on_shutdown_and_a_dropped_election_ends_the_runner() {
        let (tx, rx) = watch::channel(true);
        let shutdown = CancellationToken::new();
        let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel::<()>();
        let runner = tokio::spawn(run_while_leader(rx, shutdown.clone(), Duration::from_secs(30), move |token| {
            let done = done_tx.clone();
            async move {
                token.cancelled().await;
                let _ = done.send(());
            }
        }));
        tokio::task::yield_now().await;
        shutdown.cancel();
        assert_eq!(runner.await.expect("runner"), LeadOutcome::Shutdown);
        done_rx.recv().await.expect("work saw the token and finished");

        let (tx2, rx2) = watch::channel(false);
        drop(tx);
        drop(tx2);
        let outcome = run_while_leader(rx2, CancellationToken::new(), Duration::from_secs(1), |_| async {}).await;
        assert_eq!(outcome, LeadOutcome::ElectionEnded);
    }
}
