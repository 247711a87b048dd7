//! Probe workers: when probes run, and what their results change (R29–R35).

use crate::clock::Now;
use crate::io::{Action, ContainerRef, EventType, ProbeKind, ProbeOutcome};
use crate::probe::Cached;

use crate::record::{Instance, State};

use super::PodEngine;

impl PodEngine {
    pub(super) fn run_due_probes(&mut self, now: Now) {
        let terminating = self.terminating.is_some();
        let keys: Vec<(ContainerRef, ProbeKind)> = self.probes.keys().cloned().collect();
        for key in keys {
            let started = self.is_started(&key.0);
            let running = self.records.get(&key.0).is_some_and(Instance::running);
            let Some(w) = self.probes.get_mut(&key) else { continue };
            if terminating && key.1 != ProbeKind::Readiness {
                // R40: liveness and startup stop when termination begins.
                w.stopped = true;
                continue;
            }
            if !w.is_due_candidate() || w.next_at.is_none_or(|t| t > now.mono) || !running {
                continue;
            }
            let eligible = match key.1 {
                ProbeKind::Startup => !started,
                _ => started,
            };
            if !eligible {
                // Liveness and readiness wait for `started`; startup stops once started (R31).
                w.next_at = None;
                continue;
            }
            w.in_flight = true;
            w.next_at = Some(now.mono.after(w.spec.period));
            let timeout = w.spec.timeout;
            self.out.push_back(Action::RunProbe { container: key.0.clone(), probe: key.1, timeout });
        }
    }

    pub(crate) fn is_started(&self, r: &ContainerRef) -> bool {
        let Some(inst) = self.records.get(r) else { return false };
        if !inst.running() {
            return false;
        }
        match self.probes.get(&(r.clone(), ProbeKind::Startup)) {
            Some(w) => w.cached == Cached::Success,
            None => self.model.get(&r.name).is_none_or(|c| c.probe(ProbeKind::Startup).is_none()),
        }
    }

    pub(super) fn on_probe_done(&mut self, now: Now, r: &ContainerRef, kind: ProbeKind, outcome: ProbeOutcome) {
        let Some(c) = self.model.get(&r.name).cloned() else { return };
        let Some(w) = self.probes.get_mut(&(r.clone(), kind)) else { return };
        w.in_flight = false;
        if w.stopped || w.on_hold {
            return;
        }
        let (changed, failure) = match &outcome {
            ProbeOutcome::Success | ProbeOutcome::Warning(_) => (w.record(true), None),
            ProbeOutcome::Failure(msg) => (w.record(false), Some(msg.clone())),
            ProbeOutcome::Unknown => (false, None),
        };
        let now_cached = w.cached;
        if let ProbeOutcome::Warning(msg) = outcome {
            self.record(EventType::Warning, "ProbeWarning", format!("{} probe warning: {msg}", kind.title()), Some(&c));
        }
        if let Some(msg) = failure {
            self.record(EventType::Warning, "Unhealthy", format!("{} probe failed: {msg}", kind.title()), Some(&c));
        }
        if !changed {
            return;
        }
        match (kind, now_cached) {
            (ProbeKind::Startup, Cached::Success) => {
                // Started: liveness and readiness may run now; readiness at once (R31).
                let since = self.records.get(r).and_then(|i| match i.state {
                    State::Running { since, .. } => Some(since),
                    _ => None,
                });
                for other in [ProbeKind::Liveness, ProbeKind::Readiness] {
                    if let Some(o) = self.probes.get_mut(&(r.clone(), other)) {
                        // Readiness is probed at once; liveness at its next period.
                        let next = if other == ProbeKind::Readiness { now.mono } else { now.mono.after(o.spec.period) };
                        let earliest = since.map_or(next, |s| s.after(o.spec.initial_delay));
                        o.next_at = Some(earliest.max(next));
                    }
                }
                self.dirty = true;
                self.run_due_probes(now);
            }
            (ProbeKind::Startup | ProbeKind::Liveness, Cached::Failure) => self.dirty = true,
            _ => {}
        }
    }
}
