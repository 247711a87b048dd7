//! A probe worker per container instance and probe kind (R31): when to probe, and how
//! consecutive results become the cached result.

use crate::clock::Instant;
use crate::io::ProbeKind;
use crate::model::ProbeSpec;

/// A cached probe result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cached {
    /// Not known yet (the startup probe's seed).
    Unknown,
    /// Passing.
    Success,
    /// Failing.
    Failure,
}

/// The state of one probe worker.
#[derive(Debug, Clone)]
pub struct Worker {
    /// Timing and thresholds.
    pub spec: ProbeSpec,
    /// The cached result, seeded per new instance: readiness Failure, liveness Success,
    /// startup Unknown (R31).
    pub cached: Cached,
    last: Option<bool>,
    run: u32,
    /// Paused until a new instance appears (after a liveness/startup failure, or once the
    /// startup result is Success).
    pub on_hold: bool,
    /// Stopped for good (termination stops liveness and startup, R40).
    pub stopped: bool,
    /// When the next run is due.
    pub next_at: Option<Instant>,
    /// Whether a run is in flight.
    pub in_flight: bool,
}

impl Worker {
    /// A fresh worker for a new instance.
    pub fn new(spec: ProbeSpec) -> Self {
        let cached = match spec.kind {
            ProbeKind::Readiness => Cached::Failure,
            ProbeKind::Liveness => Cached::Success,
            ProbeKind::Startup => Cached::Unknown,
        };
        Worker { spec, cached, last: None, run: 0, on_hold: false, stopped: false, next_at: None, in_flight: false }
    }

    /// Feeds one result; returns whether the cached result changed.
    pub fn record(&mut self, success: bool) -> bool {
        if self.last == Some(success) {
            self.run = self.run.saturating_add(1);
        } else {
            self.last = Some(success);
            self.run = 1;
        }
        let threshold = if success { self.spec.success_threshold } else { self.spec.failure_threshold };
        if self.run < threshold {
            return false;
        }
        let new = if success { Cached::Success } else { Cached::Failure };
        let kind = self.spec.kind;
        if !success && matches!(kind, ProbeKind::Liveness | ProbeKind::Startup) {
            self.on_hold = true;
            self.run = 0;
        }
        if success && kind == ProbeKind::Startup {
            self.on_hold = true;
        }
        let changed = self.cached != new;
        self.cached = new;
        changed
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn spec(kind: ProbeKind, success: u32, failure: u32) -> ProbeSpec {
        ProbeSpec {
            kind,
            initial_delay: Duration::ZERO,
            period: Duration::from_secs(10),
            timeout: Duration::from_secs(1),
            success_threshold: success,
            failure_threshold: failure,
            termination_grace: None,
        }
    }

    #[test]
    fn r31_seeds_per_kind() {
        assert_eq!(Worker::new(spec(ProbeKind::Readiness, 1, 3)).cached, Cached::Failure);
        assert_eq!(Worker::new(spec(ProbeKind::Liveness, 1, 3)).cached, Cached::Success);
        assert_eq!(Worker::new(spec(ProbeKind::Startup, 1, 3)).cached, Cached::Unknown);
    }

    #[test]
    fn r31_thresholds_need_consecutive_results() {
        let mut w = Worker::new(spec(ProbeKind::Readiness, 2, 3));
        assert!(!w.record(true), "one success of two needed");
        assert!(w.record(true));
        assert_eq!(w.cached, Cached::Success);
        assert!(!w.record(false));
        assert!(!w.record(true), "a success breaks the failure run");
        assert!(!w.record(false));
        assert!(!w.record(false));
        assert!(w.record(false));
        assert_eq!(w.cached, Cached::Failure);
    }

    #[test]
    fn r31_liveness_failure_holds_the_worker() {
        let mut w = Worker::new(spec(ProbeKind::Liveness, 1, 1));
        assert!(w.record(false));
        assert!(w.on_hold);
        let mut s = Worker::new(spec(ProbeKind::Startup, 1, 3));
        assert!(s.record(true));
        assert!(s.on_hold, "startup stops probing once started");
    }
}
