//! What this process last wrote to each driver's status, and when: the coalescing of
//! progress-only writes, and the status to compare with while the driver cache lags the write.
//!
//! The operator is the status subresource's only writer. A reconcile that follows its own status
//! write within milliseconds (a rollout's first pods) often gets the driver from a cache that has
//! not seen that write yet: it would compare against the status from before the write, take a
//! progress-only change for a first status, write again at once and stamp every condition's
//! `lastTransitionTime` anew. Comparing with what was written instead keeps the coalescing and the
//! transition times.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::crd::HardenedCsiDriverStatus;

/// How long the driver cache may lag a status write before its copy is believed again whatever
/// it says (a status someone else wrote back to the replaced one is then corrected).
const CACHE_LAG: Duration = Duration::from_secs(30);

struct Written {
    at: Instant,
    /// The status the write replaced, as the cache held it.
    replaced: Option<HardenedCsiDriverStatus>,
    status: HardenedCsiDriverStatus,
}

#[derive(Default)]
pub struct StatusLog(Mutex<HashMap<String, Written>>);

impl StatusLog {
    pub fn record(&self, name: &str, replaced: Option<&HardenedCsiDriverStatus>, status: &HardenedCsiDriverStatus) {
        if let Ok(mut log) = self.0.lock() {
            let w = Written { at: Instant::now(), replaced: replaced.cloned(), status: status.clone() };
            log.insert(name.to_string(), w);
        }
    }

    /// When the driver's status was last written by this process.
    pub fn written_at(&self, name: &str) -> Option<Instant> {
        self.0.lock().ok()?.get(name).map(|w| w.at)
    }

    /// The status to compare with: the cached one, unless it is still the one this process's
    /// last write (a moment ago) replaced, in which case the cache has not caught up and what was
    /// written is current.
    pub fn current(&self, name: &str, cached: Option<HardenedCsiDriverStatus>) -> Option<HardenedCsiDriverStatus> {
        let log = self.0.lock().ok();
        match log.as_ref().and_then(|l| l.get(name)) {
            Some(w) if w.at.elapsed() < CACHE_LAG && cached == w.replaced && cached.as_ref() != Some(&w.status) => {
                Some(w.status.clone())
            }
            _ => cached,
        }
    }

    /// A driver that is gone leaves nothing behind.
    pub fn forget(&self, name: &str) {
        if let Ok(mut log) = self.0.lock() {
            log.remove(name);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(generation: i64) -> HardenedCsiDriverStatus {
        HardenedCsiDriverStatus { observed_generation: Some(generation), ..Default::default() }
    }

    #[test]
    fn a_cache_behind_the_last_write_is_answered_with_what_was_written() {
        let log = StatusLog::default();
        // Nothing written yet: the cache is all there is.
        assert_eq!(log.current("ebs", None), None);
        assert_eq!(log.current("ebs", Some(status(1))), Some(status(1)));

        // The first status: the cache still has none, then catches up.
        log.record("ebs", None, &status(1));
        assert_eq!(log.current("ebs", None), Some(status(1)));
        assert_eq!(log.current("ebs", Some(status(1))), Some(status(1)));
        // Another driver's entry is its own.
        assert_eq!(log.current("other", None), None);

        // A later write over a cached status.
        log.record("ebs", Some(&status(1)), &status(2));
        assert_eq!(log.current("ebs", Some(status(1))), Some(status(2)));
        // A status that is neither (someone else wrote it) is believed, and corrected by the
        // reconcile that compares with it.
        assert_eq!(log.current("ebs", Some(status(7))), Some(status(7)));
        // A status written back to the replaced one stays trusted only for the cache's lag.
        assert!(log.written_at("ebs").is_some_and(|at| at.elapsed() < CACHE_LAG));
        {
            let mut entries = log.0.lock().unwrap();
            let at = &mut entries.get_mut("ebs").unwrap().at;
            *at = at.checked_sub(CACHE_LAG).unwrap();
        }
        assert_eq!(log.current("ebs", Some(status(1))), Some(status(1)));

        log.forget("ebs");
        assert_eq!(log.written_at("ebs"), None);
        assert_eq!(log.current("ebs", None), None);
    }
}
