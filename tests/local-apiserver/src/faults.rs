//! Fault injection: fail the next N requests, or a share of requests, matching a verb and
//! resource with a chosen status (500, 429 with Retry-After, 409, ...); add latency; drop open
//! watch streams. Which requests of a share fail is pseudo-random from a fixed seed: the same
//! sequence of requests fails the same way on every run (tests do not flake), and failures are
//! not periodic (an evenly spread 1-in-5 would fail every reconcile that makes 5 writes).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;

use crate::error::ApiError;

/// Which requests a fault applies to. `"*"` matches any verb or resource.
#[derive(Debug, Clone, PartialEq)]
pub struct Match {
    pub verb: String,
    pub resource: String,
}

impl Match {
    pub fn new(verb: &str, resource: &str) -> Match {
        Match { verb: verb.into(), resource: resource.into() }
    }

    pub fn any() -> Match {
        Match::new("*", "*")
    }

    fn hits(&self, verb: &str, resource: &str) -> bool {
        (self.verb == "*" || self.verb == verb) && (self.resource == "*" || self.resource == resource)
    }
}

#[derive(Debug, Clone)]
enum Rule {
    Next {
        m: Match,
        /// Matching requests to let through before failing any.
        skip: u64,
        remaining: u64,
        status: u16,
    },
    Share {
        m: Match,
        share: f64,
        /// splitmix64 state.
        state: u64,
        status: u16,
    },
    Latency {
        m: Match,
        delay: Duration,
    },
}

#[derive(Default)]
struct State {
    rules: Vec<Rule>,
}

/// Handle to the fault controls of one server. Cloning shares the same controls.
#[derive(Clone)]
pub struct Faults {
    state: Arc<Mutex<State>>,
    drop_tx: Arc<watch::Sender<u64>>,
}

impl Default for Faults {
    fn default() -> Self {
        let (tx, _) = watch::channel(0);
        Faults { state: Arc::default(), drop_tx: Arc::new(tx) }
    }
}

impl Faults {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Fails the next `n` requests matching `m` with `status`.
    pub fn fail_next(&self, n: u64, m: Match, status: u16) {
        self.fail_after(0, n, m, status);
    }

    /// Lets the next `skip` requests matching `m` through, then fails the `n` after them with
    /// `status` (to fail the second step of a multi-step operation, e.g. the create after a delete).
    pub fn fail_after(&self, skip: u64, n: u64, m: Match, status: u16) {
        self.lock().rules.push(Rule::Next { m, skip, remaining: n, status });
    }

    /// Fails each request matching `m` with probability `share` (0.0..=1.0) with `status`,
    /// drawn from a seeded generator (reproducible from run to run).
    pub fn fail_share(&self, share: f64, m: Match, status: u16) {
        self.lock().rules.push(Rule::Share { m, share: share.clamp(0.0, 1.0), state: 0x005E_ED0F_FA17, status });
    }

    /// Delays every request matching `m` by `delay` before it is handled.
    pub fn add_latency(&self, m: Match, delay: Duration) {
        self.lock().rules.push(Rule::Latency { m, delay });
    }

    /// Ends every open watch stream now (clients see the stream close and must re-watch).
    pub fn drop_watches(&self) {
        self.drop_tx.send_modify(|g| *g += 1);
    }

    /// Removes every rule.
    pub fn clear(&self) {
        self.lock().rules.clear();
    }

    pub(crate) fn drop_signal(&self) -> watch::Receiver<u64> {
        self.drop_tx.subscribe()
    }

    /// Decides the fate of one request: latency to add, and an error to return instead of
    /// handling it.
    pub(crate) fn decide(&self, verb: &str, resource: &str) -> (Duration, Option<ApiError>) {
        let mut st = self.lock();
        let mut delay = Duration::ZERO;
        let mut failure = None;
        for rule in st.rules.iter_mut() {
            match rule {
                Rule::Latency { m, delay: d } if m.hits(verb, resource) => delay += *d,
                Rule::Next { m, skip, .. } if failure.is_none() && *skip > 0 && m.hits(verb, resource) => {
                    *skip -= 1;
                }
                Rule::Next { m, remaining, status, .. }
                    if failure.is_none() && *remaining > 0 && m.hits(verb, resource) =>
                {
                    *remaining -= 1;
                    failure = Some(injected(*status));
                }
                Rule::Share { m, share, state, status } if failure.is_none() && m.hits(verb, resource) => {
                    // splitmix64: a uniform draw in [0, 1).
                    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
                    let mut z = *state;
                    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
                    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
                    z ^= z >> 31;
                    let draw = (z >> 11) as f64 / (1u64 << 53) as f64;
                    if draw < *share {
                        failure = Some(injected(*status));
                    }
                }
                _ => {}
            }
        }
        st.rules.retain(|r| !matches!(r, Rule::Next { remaining: 0, .. }));
        (delay, failure)
    }
}

fn injected(status: u16) -> ApiError {
    let (reason, message): (&'static str, &str) = match status {
        409 => (
            "Conflict",
            "injected conflict: the object has been modified; please apply your changes to the latest version and try \
                again",
        ),
        429 => ("TooManyRequests", "injected throttling: too many requests, please try again later"),
        500 => ("InternalError", "injected internal error"),
        503 => ("ServiceUnavailable", "injected: the server is currently unable to handle the request"),
        504 => ("Timeout", "injected timeout"),
        404 => ("NotFound", "injected not found"),
        403 => ("Forbidden", "injected forbidden"),
        _ => ("InternalError", "injected failure"),
    };
    let mut e = ApiError::new(status, reason, message);
    if status == 429 {
        e.retry_after = Some(1);
    }
    e
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_n_then_clean() {
        let f = Faults::default();
        f.fail_next(2, Match::new("patch", "deployments"), 500);
        assert!(f.decide("get", "deployments").1.is_none());
        assert_eq!(f.decide("patch", "deployments").1.map(|e| e.code), Some(500));
        assert_eq!(f.decide("patch", "deployments").1.map(|e| e.code), Some(500));
        assert!(f.decide("patch", "deployments").1.is_none());
    }

    #[test]
    fn share_is_close_reproducible_and_not_periodic() {
        let run = || {
            let f = Faults::default();
            f.fail_share(0.25, Match::new("*", "pods"), 429);
            (0..1000).map(|_| f.decide("list", "pods").1.is_some()).collect::<Vec<bool>>()
        };
        let a = run();
        assert_eq!(a, run(), "the same seed fails the same requests");
        let failed = a.iter().filter(|x| **x).count();
        assert!((200..300).contains(&failed), "{failed} of 1000 failed");
        // Some window of 8 consecutive requests has no failure (an even spread would not).
        assert!(a.windows(8).any(|w| w.iter().all(|x| !x)));
        let f = Faults::default();
        f.fail_share(1.0, Match::new("*", "pods"), 429);
        assert!((0..50).all(|_| f.decide("list", "pods").1.is_some()));
        f.clear();
        f.fail_share(0.25, Match::new("*", "pods"), 429);
        let e = f.decide("list", "pods");
        assert!(e.1.is_none() || e.1.is_some_and(|e| e.retry_after == Some(1)));
    }
}
