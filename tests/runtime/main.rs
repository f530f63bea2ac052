//! Leader election against the local Kubernetes API server over real HTTP: one leader among
//! several replicas, hand-over on release and on death, stepping down when renewals fail, and no
//! instant where two replicas lead or run leader-only work. Each replica is the operator's
//! ServiceAccount with exactly the chart's RBAC (`helm template`), against the RBAC-enforcing
//! server: a request the chart does not grant fails the test.
//!
//! Time-based assertions here are bounds with wide margins that separate two behaviours (a
//! release hands over in well under the lease duration; a death never before it), not
//! measurements.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hardened_csi_operator::runtime::config::LeaseSettings;
use hardened_csi_operator::runtime::leader::{LeadOutcome, LeaderElection, run_while_leader};
use hardened_csi_operator::runtime::metrics::Metrics;
use k8s_openapi::api::coordination::v1::Lease;
use kube::Api;
use local_apiserver::{LocalApiServer, Match};
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

#[path = "../support/chart_rbac.rs"]
mod chart_rbac;

const NAMESPACE: &str = chart_rbac::OPERATOR_NAMESPACE;
const LEASE: &str = "hardened-csi-operator";

/// The RBAC-enforcing server with the chart's ServiceAccount and RBAC installed.
async fn operator_server() -> LocalApiServer {
    let server = chart_rbac::rbac_server().await;
    chart_rbac::install(&server.client()).await;
    server
}

/// Nothing the replicas asked for was refused by the chart's RBAC (that every lease grant is used
/// is checked over a whole lifecycle, `every_grant_of_the_chart_is_used_by_some_part_of_the_lifecycle`).
fn assert_never_refused(server: &LocalApiServer) {
    let denied = server.denied_requests(&chart_rbac::operator_user());
    assert!(denied.is_empty(), "the chart's RBAC refused leader election: {denied:#?}");
}

fn settings(identity: &str, lease_secs: u64, renew_ms: u64, retry_ms: u64) -> LeaseSettings {
    let settings = LeaseSettings {
        name: LEASE.into(),
        namespace: NAMESPACE.into(),
        identity: identity.into(),
        lease_duration: Duration::from_secs(lease_secs),
        renew_deadline: Duration::from_millis(renew_ms),
        retry_period: Duration::from_millis(retry_ms),
    };
    settings.validate().expect("valid test settings");
    settings
}

/// A replica: its election and the receiver the sampler watches.
struct Replica {
    name: &'static str,
    election: LeaderElection,
    metrics: Arc<Metrics>,
}

fn replica(server: &LocalApiServer, name: &'static str, s: LeaseSettings) -> Replica {
    let metrics = Arc::new(Metrics::new());
    let election = LeaderElection::start(chart_rbac::operator_client(server), s, metrics.clone());
    Replica { name, election, metrics }
}

/// Samples every live replica's leader flag in a loop and records the largest number of
/// simultaneous leaders. A killed replica is removed before it is killed: a dead process's last
/// belief does not count.
/// Each live replica's name and leader flag.
type LiveFlags = Arc<Mutex<Vec<(&'static str, watch::Receiver<bool>)>>>;

/// A running sampler.
struct Sampling {
    sampler: Sampler,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Sampling {
    /// Stops sampling and asserts that no two replicas ever led at the same instant.
    async fn finish(self) {
        self.stop.cancel();
        self.task.await.expect("sampler");
        self.sampler.assert_never_two();
    }
}

#[derive(Clone, Default)]
struct Sampler {
    live: LiveFlags,
    max_leaders: Arc<AtomicUsize>,
    samples: Arc<AtomicUsize>,
}

impl Sampler {
    /// Starts sampling `replicas`; `Sampling::finish` stops it and asserts.
    fn start(replicas: &[&Replica]) -> Sampling {
        let sampler = Sampler::default();
        sampler.live.lock().expect("lock").extend(replicas.iter().map(|r| (r.name, r.election.subscribe())));
        let stop = CancellationToken::new();
        let task = sampler.spawn(stop.clone());
        Sampling { sampler, stop, task }
    }

    fn forget(&self, name: &str) {
        self.live.lock().expect("lock").retain(|(n, _)| *n != name);
    }

    fn spawn(&self, stop: CancellationToken) -> tokio::task::JoinHandle<()> {
        let this = self.clone();
        tokio::spawn(async move {
            while !stop.is_cancelled() {
                let leaders = this.live.lock().expect("lock").iter().filter(|(_, rx)| *rx.borrow()).count();
                this.max_leaders.fetch_max(leaders, Ordering::SeqCst);
                this.samples.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        })
    }

    fn assert_never_two(&self) {
        assert!(self.samples.load(Ordering::SeqCst) > 100, "the sampler ran");
        assert!(self.max_leaders.load(Ordering::SeqCst) <= 1, "two replicas led at the same instant");
    }
}

/// Waits until one of `replicas` leads; returns its index.
async fn leader_among(replicas: &[&Replica], within: Duration) -> usize {
    let deadline = Instant::now() + within;
    loop {
        if let Some(i) = replicas.iter().position(|r| r.election.is_leader()) {
            return i;
        }
        assert!(Instant::now() < deadline, "no leader within {within:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn wait_leading(r: &Replica, value: bool, within: Duration) {
    let mut rx = r.election.subscribe();
    tokio::time::timeout(within, rx.wait_for(|l| *l == value))
        .await
        .unwrap_or_else(|_| panic!("{} leading={value} not reached within {within:?}", r.name))
        .expect("election running");
}

async fn read_lease(server: &LocalApiServer) -> Lease {
    Api::<Lease>::namespaced(server.client(), NAMESPACE).get(LEASE).await.expect("lease exists")
}

fn holder(lease: &Lease) -> Option<String> {
    lease.spec.as_ref().and_then(|s| s.holder_identity.clone())
}

fn transitions(lease: &Lease) -> i32 {
    lease.spec.as_ref().and_then(|s| s.lease_transitions).unwrap_or(-1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exactly_one_of_two_leads_and_the_lease_names_it() {
    let server = operator_server().await;
    let a = replica(&server, "a", settings("a", 3, 2000, 200));
    let b = replica(&server, "b", settings("b", 3, 2000, 200));
    let sampling = Sampler::start(&[&a, &b]);

    let first = leader_among(&[&a, &b], Duration::from_secs(10)).await;
    let (leader, follower) = if first == 0 { (&a, &b) } else { (&b, &a) };
    // Both took part: a standby is ready through its first contact with the Lease.
    tokio::time::timeout(Duration::from_secs(5), follower.election.first_contact()).await.expect("standby contact");

    // Stable for longer than a lease duration: renewals keep the same leader.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert!(leader.election.is_leader() && !follower.election.is_leader());
    let lease = read_lease(&server).await;
    assert_eq!(holder(&lease).as_deref(), Some(leader.name));
    assert_eq!(transitions(&lease), 0);
    assert_eq!(lease.spec.as_ref().and_then(|s| s.lease_duration_seconds), Some(3));
    assert!(leader.metrics.encode().contains("hardened_csi_operator_leader 1"));
    assert!(follower.metrics.encode().contains("hardened_csi_operator_leader 0"));

    sampling.finish().await;
    assert_never_refused(&server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn release_hands_over_without_waiting_for_the_lease_to_expire() {
    let server = operator_server().await;
    // A 30 s lease: a hand-over within 10 s can only come from the release.
    let a = replica(&server, "a", settings("a", 30, 20_000, 200));
    wait_leading(&a, true, Duration::from_secs(10)).await;
    let b = replica(&server, "b", settings("b", 30, 20_000, 200));
    tokio::time::timeout(Duration::from_secs(5), b.election.first_contact()).await.expect("b contact");
    let sampling = Sampler::start(&[&a, &b]);
    // Long enough for the sampler to take its samples while the TLS server shares the runtime.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(!b.election.is_leader());

    let a_metrics = a.metrics.clone();
    let mut a_rx = a.election.subscribe();
    assert!(a.election.release().await, "released within the renew deadline");
    assert!(!*a_rx.borrow_and_update());
    assert!(a_metrics.encode().contains("hardened_csi_operator_leader 0"));
    wait_leading(&b, true, Duration::from_secs(10)).await;

    let lease = read_lease(&server).await;
    assert_eq!(holder(&lease).as_deref(), Some("b"));
    assert_eq!(transitions(&lease), 1);
    assert_eq!(lease.spec.as_ref().and_then(|s| s.lease_duration_seconds), Some(30), "b restored its duration");

    sampling.finish().await;
    assert_never_refused(&server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_leader_is_replaced_only_after_the_lease_duration() {
    let server = operator_server().await;
    let lease_duration = Duration::from_secs(3);
    let a = replica(&server, "a", settings("a", 3, 2000, 200));
    wait_leading(&a, true, Duration::from_secs(10)).await;
    let b = replica(&server, "b", settings("b", 3, 2000, 200));
    tokio::time::timeout(Duration::from_secs(5), b.election.first_contact()).await.expect("b contact");
    let sampling = Sampler::start(&[&a, &b]);

    // Kill: no release. The lease keeps naming "a" until b takes it over.
    sampling.sampler.forget("a");
    let killed_at = Instant::now();
    drop(a);
    wait_leading(&b, true, Duration::from_secs(15)).await;
    let took = killed_at.elapsed();
    // a's last renewal was at most one retry period (200 ms) before the kill, and b counts the
    // lease duration from when it saw that renewal; so never before 3 s - 200 ms.
    assert!(
        took >= lease_duration - Duration::from_millis(200),
        "b took over {took:?} after the kill, before the lease could have expired"
    );
    let lease = read_lease(&server).await;
    assert_eq!(holder(&lease).as_deref(), Some("b"));
    assert_eq!(transitions(&lease), 1);

    sampling.finish().await;
    assert_never_refused(&server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_leader_steps_down_when_renewals_fail_past_the_deadline_and_leads_again_after() {
    let server = operator_server().await;
    let a = replica(&server, "a", settings("a", 3, 2000, 200));
    wait_leading(&a, true, Duration::from_secs(10)).await;

    // The API server answers every Lease request with 503: no renewal can succeed.
    server.faults().fail_share(1.0, Match::new("*", "leases"), 503);
    let outage = Instant::now();
    wait_leading(&a, false, Duration::from_secs(10)).await;
    let stepped_down = outage.elapsed();
    // Leadership survives failed renewals up to the renew deadline (2 s) counted from the last
    // success, which was at most one retry period (200 ms) before the outage began.
    assert!(stepped_down >= Duration::from_millis(1800), "stepped down after {stepped_down:?}, before the deadline");
    assert!(a.metrics.encode().contains("hardened_csi_operator_leader 0"));

    server.faults().clear();
    // Back in contact, a finds its own lease (no one else could take it) and resumes.
    wait_leading(&a, true, Duration::from_secs(10)).await;
    assert_eq!(holder(&read_lease(&server).await).as_deref(), Some("a"));
    assert_never_refused(&server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renewal_hanging_past_the_deadline_makes_the_leader_step_down() {
    let server = operator_server().await;
    let a = replica(&server, "a", settings("a", 3, 1000, 200));
    wait_leading(&a, true, Duration::from_secs(10)).await;
    // Requests hang far longer than the renew deadline: the timeout, not an error, must end it.
    server.faults().add_latency(Match::new("*", "leases"), Duration::from_secs(30));
    wait_leading(&a, false, Duration::from_secs(5)).await;
    server.faults().clear();
    assert_never_refused(&server);
}

/// The production wiring: each replica runs leader-only work through `run_while_leader`, and a
/// graceful stop drains the work before it releases the lease. Across three hand-overs the work
/// of two replicas never runs at the same time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_only_work_never_overlaps_across_graceful_hand_overs() {
    let server = operator_server().await;
    let active = Arc::new(AtomicUsize::new(0));
    let max_active = Arc::new(AtomicUsize::new(0));
    let started = Arc::new(AtomicUsize::new(0));

    struct Running {
        name: &'static str,
        election: LeaderElection,
        shutdown: CancellationToken,
        runner: tokio::task::JoinHandle<LeadOutcome>,
    }
    let start = |name: &'static str| {
        let election = LeaderElection::start(
            chart_rbac::operator_client(&server),
            settings(name, 30, 20_000, 200),
            Arc::new(Metrics::new()),
        );
        let shutdown = CancellationToken::new();
        let (active, max_active, started) = (active.clone(), max_active.clone(), started.clone());
        let runner = tokio::spawn(run_while_leader(
            election.subscribe(),
            shutdown.clone(),
            Duration::from_secs(5),
            move |token| {
                let (active, max_active, started) = (active.clone(), max_active.clone(), started.clone());
                async move {
                    // Counts down when the work ends, whether it finishes or is aborted.
                    struct Active(Arc<AtomicUsize>);
                    impl Drop for Active {
                        fn drop(&mut self) {
                            self.0.fetch_sub(1, Ordering::SeqCst);
                        }
                    }
                    let now = active.fetch_add(1, Ordering::SeqCst) + 1;
                    let _active = Active(active);
                    max_active.fetch_max(now, Ordering::SeqCst);
                    started.fetch_add(1, Ordering::SeqCst);
                    // Like a controller with graceful shutdown: run until told to stop, then finish.
                    token.cancelled().await;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
        ));
        Running { name, election, shutdown, runner }
    };

    let mut replicas = vec![start("r0"), start("r1")];
    let names = ["r2", "r3", "r4"];
    for (round, next) in names.into_iter().enumerate() {
        let deadline = Instant::now() + Duration::from_secs(10);
        // Hand over only once the current leader's work runs, so every leadership starts work.
        let leader = loop {
            let leader = replicas.iter().position(|r| r.election.is_leader());
            if let Some(i) = leader
                && started.load(Ordering::SeqCst) > round
            {
                break i;
            }
            assert!(Instant::now() < deadline, "no leader running work in round {round}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        let r = replicas.remove(leader);
        // SIGTERM order: stop and drain the work, then release the lease.
        r.shutdown.cancel();
        assert_eq!(r.runner.await.expect("runner"), LeadOutcome::Shutdown, "{}", r.name);
        assert!(r.election.release().await);
        replicas.push(start(next));
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while started.load(Ordering::SeqCst) < 4 {
        assert!(Instant::now() < deadline, "the last hand-over did not start work");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(max_active.load(Ordering::SeqCst), 1, "leader-only work of two replicas overlapped");
    for r in replicas {
        r.shutdown.cancel();
        r.runner.await.expect("runner");
        r.election.release().await;
    }
    assert_eq!(active.load(Ordering::SeqCst), 0);
    assert_never_refused(&server);
}

/// 500s, 409s and a 429 shorter than the renew deadline are absorbed: no step-down, no
/// hand-over, and no retry storm (lease requests stay near two per replica per retry period).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn brief_faults_neither_flap_leadership_nor_cause_a_retry_storm() {
    let server = operator_server().await;
    let a = replica(&server, "a", settings("a", 3, 2000, 200));
    let b = replica(&server, "b", settings("b", 3, 2000, 200));
    let first = leader_among(&[&a, &b], Duration::from_secs(10)).await;
    let (leader, follower) = if first == 0 { (&a, &b) } else { (&b, &a) };
    let mut leader_rx = leader.election.subscribe();
    let mut follower_rx = follower.election.subscribe();
    leader_rx.borrow_and_update();
    follower_rx.borrow_and_update();
    server.reset_counters();

    let faults = server.faults();
    faults.fail_next(2, Match::new("update", "leases"), 500);
    faults.fail_next(2, Match::new("update", "leases"), 409);
    faults.fail_next(1, Match::new("get", "leases"), 429);
    let window = Duration::from_secs(3);
    tokio::time::sleep(window).await;

    assert!(!leader_rx.has_changed().expect("election running"), "{} stepped down", leader.name);
    assert!(!follower_rx.has_changed().expect("election running"), "{} changed state", follower.name);
    assert!(leader.election.is_leader());
    let counters = server.counters();
    assert_eq!(counters.requests_with_code("update", "leases", 409), 2, "the injected conflicts were hit");
    assert_eq!(counters.requests_with_code("update", "leases", 500), 2, "the injected errors were hit");
    let lease_requests = counters.requests("get", "leases") + counters.requests("update", "leases");
    // 3 s / 200 ms = 15 rounds per replica; the leader reads and writes, the follower only reads,
    // and each conflict adds one immediate re-read: about 45; a retry storm would be hundreds.
    assert!((10..=80).contains(&lease_requests), "{lease_requests} lease requests in {window:?}");
    assert_eq!(counters.requests("create", "leases"), 0);
    assert_never_refused(&server);
}
