//! Request counters by verb, resource and outcome, readable from tests and benchmarks.
//!
//! Definitions (stable, documented for test authors):
//! - every request served under `/api` or `/apis` for a resource is counted once, by verb
//!   (`get`, `list`, `watch`, `create`, `update`, `patch`, `delete`, `deletecollection`),
//!   resource (`deployments`, or `deployments/status` for a subresource) and HTTP status code;
//!   discovery and other non-resource paths are counted under verb `get` and resource `""`.
//! - a *write* is a create, update, patch (including apply) or delete (including delete
//!   collection) request that changed stored state: it produced at least one new
//!   resourceVersion. A no-op apply or patch, a rejected request (409, 422, injected fault) and a
//!   delete that only found the object already terminating are not writes.
//! - a *write attempt* is any request with one of those verbs, whatever its outcome.
//! - changes made by the server's own controllers (garbage collection, namespace and CRD
//!   cleanup, simulated workload status) are not requests and are not counted.
//! - kube-rs retries 429/503/504 itself: each retry is a separate request here.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

#[derive(Debug, Clone, Default)]
pub struct Counters {
    by_key: BTreeMap<(String, String, u16), u64>,
    writes: u64,
    write_attempts: u64,
}

impl Counters {
    /// Requests with this verb on this resource, whatever their outcome.
    pub fn requests(&self, verb: &str, resource: &str) -> u64 {
        self.by_key.iter().filter(|((v, r, _), _)| v == verb && r == resource).map(|(_, n)| n).sum()
    }

    /// Requests with this verb on this resource that ended with this HTTP status code.
    pub fn requests_with_code(&self, verb: &str, resource: &str, code: u16) -> u64 {
        self.by_key.get(&(verb.to_string(), resource.to_string(), code)).copied().unwrap_or(0)
    }

    /// Requests of any verb and resource that ended with this HTTP status code.
    pub fn by_code(&self, code: u16) -> u64 {
        self.by_key.iter().filter(|((_, _, c), _)| *c == code).map(|(_, n)| n).sum()
    }

    /// Mutating requests that changed stored state (see the module docs).
    pub fn writes(&self) -> u64 {
        self.writes
    }

    /// Mutating requests received, whatever their outcome.
    pub fn write_attempts(&self) -> u64 {
        self.write_attempts
    }

    /// All requests.
    pub fn total(&self) -> u64 {
        self.by_key.values().sum()
    }

    /// (verb, resource, code, count) rows, for printing.
    pub fn rows(&self) -> Vec<(String, String, u16, u64)> {
        self.by_key.iter().map(|((v, r, c), n)| (v.clone(), r.clone(), *c, *n)).collect()
    }
}

/// The live, shared counters.
#[derive(Clone, Default)]
pub struct CounterSink(Arc<Mutex<Counters>>);

pub fn is_write_verb(verb: &str) -> bool {
    matches!(verb, "create" | "update" | "patch" | "delete" | "deletecollection")
}

impl CounterSink {
    pub fn record(&self, verb: &str, resource: &str, code: u16, changed_state: bool) {
        tracing::debug!(verb, resource, code, changed_state, "local-apiserver request");
        let mut c = self.0.lock().unwrap_or_else(|p| p.into_inner());
        *c.by_key.entry((verb.to_string(), resource.to_string(), code)).or_default() += 1;
        if is_write_verb(verb) {
            c.write_attempts += 1;
            if changed_state {
                c.writes += 1;
            }
        }
    }

    pub fn snapshot(&self) -> Counters {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn reset(&self) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Counters::default();
    }
}
