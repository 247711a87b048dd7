//! Stopping containers: single kills, the pod's termination with its grace and the sidecars'
//! reverse order (R38–R50), deadlines, and the pod's end.

use std::time::Duration;

use crate::backoff::CRASH_LOOP_INITIAL;
use crate::clock::{Instant, Now};
use crate::io::{Action, ContainerRef, EventType, Hook, ProbeKind, Signal};
use crate::kill::{KillTask, MIN_GRACE_SECONDS, Ordering, Stage, whole_seconds};
use crate::model::Role;
use crate::probe::Cached;

use crate::record::Instance;

use super::{Current, EVICTION_GRACE_SECONDS, PodEngine, Sandbox, Termination};

impl PodEngine {
    pub(super) fn start_kill(&mut self, now: Now, r: ContainerRef, grace: i64, ordered: bool, message: Option<String>) {
        if self.kills.contains_key(&r) {
            return;
        }
        let Some(c) = self.model.get(&r.name).cloned() else { return };
        let message = message.unwrap_or_else(|| format!("Stopping container {}", c.name));
        self.record(EventType::Normal, "Killing", message, Some(&c));
        let task = KillTask { r: r.clone(), ordered, grace, stage: Stage::PreStop, since: now.mono, deadline: None };
        self.kills.insert(r.clone(), task);
        if c.pre_stop && grace > 0 {
            let deadline = now.mono.after_secs(grace);
            if let Some(t) = self.kills.get_mut(&r) {
                t.deadline = Some(deadline);
            }
            self.out.push_back(Action::RunHook {
                container: r,
                hook: Hook::PreStop,
                timeout: Some(Duration::from_secs(grace as u64)),
            });
        } else {
            self.after_pre_stop(now, &r);
        }
    }

    /// R42 steps 1→2: the hook is done (or timed out); wait for the turn if ordered.
    pub(super) fn after_pre_stop(&mut self, now: Now, r: &ContainerRef) {
        let turn = match &self.terminating {
            Some(t) => t.ordering.turn_has_come(&self.model, &r.name),
            None => true,
        };
        let has_sidecar = self.model.has_sidecar();
        let Some(task) = self.kills.get_mut(r) else { return };
        if task.stage == Stage::PreStop {
            task.grace -= whole_seconds(task.since, now.mono);
        }
        if task.ordered && has_sidecar && task.grace > 0 && !turn {
            task.stage = Stage::WaitTurn;
            task.since = now.mono;
            task.deadline = Some(now.mono.after_secs(task.grace));
            return;
        }
        self.send_stop(now, r);
    }

    /// R42 steps 3–4: the stop signal, then SIGKILL after at least 2 s.
    pub(super) fn send_stop(&mut self, now: Now, r: &ContainerRef) {
        let Some(task) = self.kills.get_mut(r) else { return };
        if task.stage == Stage::WaitTurn {
            task.grace -= whole_seconds(task.since, now.mono);
        }
        let grace = task.grace.max(MIN_GRACE_SECONDS);
        task.stage = Stage::Stopping;
        task.since = now.mono;
        task.deadline = Some(now.mono.after_secs(grace));
        self.out.push_back(Action::Signal { container: r.clone(), signal: Signal::Stop });
    }

    pub(super) fn kill_deadline(&mut self, r: &ContainerRef, now: Now) {
        let Some(task) = self.kills.get(r) else { return };
        match task.stage {
            Stage::PreStop => self.after_pre_stop(now, r),
            Stage::WaitTurn => self.send_stop(now, r),
            Stage::Stopping => {
                if let Some(task) = self.kills.get_mut(r) {
                    task.stage = Stage::Killed;
                    task.deadline = None;
                }
                self.out.push_back(Action::Signal { container: r.clone(), signal: Signal::Kill });
            }
            Stage::Killed => {}
        }
    }

    pub(super) fn advance_waiting_kills(&mut self, now: Now) {
        let Some(term) = &self.terminating else { return };
        let ready: Vec<ContainerRef> = self
            .kills
            .values()
            .filter(|k| k.stage == Stage::WaitTurn && term.ordering.turn_has_come(&self.model, &k.r.name))
            .map(|k| k.r.clone())
            .collect();
        for r in ready {
            self.send_stop(now, &r);
        }
    }

    /// Begins pod termination (R36 completion, R39–R47 deletion).
    pub(super) fn begin_termination(&mut self, now: Now, deleted: bool, grace: i64) {
        // The pass in flight is abandoned, as the kubelet cancels its sync (R41).
        self.queue.clear();
        if let Some(Current::Starting(r)) = self.current.take()
            && !self.records.get(&r).is_some_and(Instance::running)
        {
            self.cancelled.insert(r.clone());
            self.starting_image.remove(&r);
            self.out.push_back(Action::CancelStart { container: r });
        }
        let running: Vec<ContainerRef> = self.records.running().map(|i| i.r.clone()).collect();
        let ordering = Ordering::new(running.iter().map(|r| r.name.clone()));
        self.terminating = Some(Termination { deleted, grace, ordering });
        for w in self.probes.values_mut() {
            if w.spec.kind != ProbeKind::Readiness {
                // R40: a worker that sees the deletion records Success and stops.
                if deleted {
                    w.cached = Cached::Success;
                }
                w.stopped = true;
            }
        }
        // Kills already under way (a probe failure, a changed image) join the termination with
        // its grace if that is shorter (R39).
        self.cap_kills(now, grace);
        let mut ordered: Vec<ContainerRef> = running;
        // Kill tasks start together; regular containers first so their events come first.
        ordered.sort_by_key(|r| match self.model.get(&r.name).map(|c| c.role) {
            Some(Role::Regular) => 0,
            _ => 1,
        });
        for r in ordered {
            self.start_kill(now, r, grace, true, None);
        }
        self.maybe_finish();
    }

    /// Caps every kill under way to a grace of `grace` seconds from `now`. A task's remaining
    /// grace counts from the start of its stage, so the time already spent there is added.
    pub(super) fn cap_kills(&mut self, now: Now, grace: i64) {
        for task in self.kills.values_mut() {
            match task.stage {
                Stage::PreStop | Stage::WaitTurn => {
                    task.grace = task.grace.min(whole_seconds(task.since, now.mono).saturating_add(grace));
                    task.deadline = task.deadline.map(|d| d.min(now.mono.after_secs(grace)));
                }
                Stage::Stopping => {
                    task.deadline = task.deadline.map(|d| d.min(now.mono.after_secs(grace.max(MIN_GRACE_SECONDS))));
                }
                Stage::Killed => {}
            }
        }
    }

    pub(super) fn maybe_finish(&mut self) {
        if self.terminating.is_none() || self.finished || self.current.is_some() {
            return;
        }
        // An abandoned start still owes its outcome: the runtime may have started it anyway.
        if self.records.running().next().is_some() || !self.kills.is_empty() || !self.cancelled.is_empty() {
            return;
        }
        self.finished = true;
        self.sandbox = Sandbox::Removed;
        self.probes.clear();
        self.timers.clear();
        self.out.push_back(Action::RemoveSandbox);
    }

    pub(super) fn on_sandbox_failed(&mut self, now: Now, reason: &str, message: String) {
        if self.sandbox != Sandbox::Creating {
            return;
        }
        self.record(EventType::Warning, reason, message, None);
        if self.terminating.is_none() {
            self.sandbox_backoff.next("sandbox", now.mono, now.mono);
            let wait = self.sandbox_backoff.current("sandbox").unwrap_or(CRASH_LOOP_INITIAL);
            self.timers.insert(super::Timer::SandboxRetry, now.mono.after(wait));
        }
    }

    pub(super) fn on_delete(&mut self, now: Now, grace_seconds: Option<i64>) {
        let grace = grace_seconds.unwrap_or_else(|| self.model.grace_seconds()).max(1);
        match &mut self.terminating {
            Some(term) => {
                term.deleted = true;
                if grace < term.grace {
                    // A grace can only shrink (R39): pull every deadline in.
                    term.grace = grace;
                    self.cap_kills(now, grace);
                }
            }
            None => self.begin_termination(now, true, grace),
        }
    }

    pub(super) fn on_evict(&mut self, now: Now, message: String) {
        if self.finished {
            return;
        }
        match &mut self.terminating {
            // A pod already stopping keeps its outcome; the eviction only shortens its grace.
            Some(term) => {
                if EVICTION_GRACE_SECONDS < term.grace {
                    term.grace = EVICTION_GRACE_SECONDS;
                    self.cap_kills(now, EVICTION_GRACE_SECONDS);
                }
            }
            None => {
                self.record(EventType::Warning, "Evicted", message.clone(), None);
                self.verdict = Some(("Evicted".into(), message));
                self.begin_termination(now, false, EVICTION_GRACE_SECONDS);
            }
        }
    }

    pub(super) fn on_reject(&mut self, now: Now, reason: String, message: String) {
        let before_sandbox = self.sandbox == Sandbox::Creating && self.records.running().next().is_none();
        if self.finished || self.terminating.is_some() || !before_sandbox {
            return;
        }
        self.record(EventType::Warning, &reason, message.clone(), None);
        self.verdict = Some((reason, format!("Pod was rejected: {message}")));
        self.out.retain(|a| *a != Action::CreateSandbox);
        self.begin_termination(now, false, 0);
    }

    /// The kubelet's active deadline handler: past the deadline, a Normal event, and the pod
    /// ends Failed after a kill with its own grace.
    pub(super) fn check_deadline(&mut self, now: Now) {
        if self.active_deadline().is_some_and(|t| t <= now.mono) && self.terminating.is_none() && !self.finished {
            let message = "Pod was active on the node longer than the specified deadline".to_string();
            self.record(EventType::Normal, "DeadlineExceeded", message.clone(), None);
            self.verdict = Some(("DeadlineExceeded".into(), message));
            self.begin_termination(now, false, self.model.grace_seconds());
        }
    }

    /// When `activeDeadlineSeconds` runs out, counted from the pod's start time.
    pub(super) fn active_deadline(&self) -> Option<Instant> {
        let seconds = self.spec.active_deadline_seconds.filter(|s| *s > 0)?;
        Some(self.start_mono.after_secs(seconds))
    }

    pub(super) fn on_force_kill(&mut self, now: Now) {
        if self.terminating.is_none() {
            self.begin_termination(now, true, 1);
        }
        let running: Vec<ContainerRef> = self.records.running().map(|i| i.r.clone()).collect();
        for r in running {
            if let Some(task) = self.kills.get_mut(&r) {
                if task.stage == Stage::Killed {
                    continue;
                }
                task.stage = Stage::Killed;
                task.deadline = None;
            }
            self.out.push_back(Action::Signal { container: r, signal: Signal::Kill });
        }
    }
}
