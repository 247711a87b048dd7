//! What the runtime reports: images, creates, starts, exits, hooks and failed starts.

use crate::backoff::CRASH_LOOP_INITIAL;
use crate::clock::Now;
use crate::io::{Action, ContainerRef, EventType, ExitCause, Hook, ProbeKind};
use crate::kill::{MIN_GRACE_SECONDS, Stage};
use crate::probe::Worker;

use crate::record::{Exit, Instance, State};

use super::{Current, PodEngine, Waiting};

impl PodEngine {
    pub(super) fn on_image_ready(&mut self, r: &ContainerRef, pulled: bool) {
        let Some(c) = self.model.get(&r.name).cloned() else { return };
        let image = c.image().to_string();
        self.pull_failed_at.remove(&image);
        let message = if pulled {
            format!("Successfully pulled image \"{image}\"")
        } else {
            format!("Container image \"{image}\" already present on machine")
        };
        self.record(EventType::Normal, "Pulled", message, Some(&c));
    }

    pub(super) fn on_pull_failed(&mut self, now: Now, r: &ContainerRef, message: String) {
        if self.cancelled.remove(r) {
            return;
        }
        let Some(c) = self.model.get(&r.name).cloned() else { return };
        if !self.is_current_start(r) {
            return;
        }
        let image = c.image().to_string();
        self.record(EventType::Warning, "Failed", format!("Failed to pull image \"{image}\": {message}"), Some(&c));
        self.record(EventType::Warning, "Failed", "Error: ErrImagePull".into(), Some(&c));
        self.waiting.insert(c.name.clone(), Waiting { reason: "ErrImagePull".into(), message });
        let since = self.pull_failed_at.get(&image).copied().unwrap_or(now.mono);
        self.pull_backoff.next(&image, since, now.mono);
        self.pull_failed_at.insert(image, now.mono);
        // The kubelet re-syncs after a failed start; here that happens at once.
        self.dirty = true;
        self.start_done(r, false);
    }

    pub(super) fn on_created(&mut self, r: &ContainerRef, id: String) {
        let Some(c) = self.model.get(&r.name).cloned() else { return };
        if self.records.get(r).is_some() {
            return;
        }
        let image = self.instance_image(r, &c);
        self.records.push(Instance { r: r.clone(), image, id, state: State::Created });
        self.record(EventType::Normal, "Created", format!("Created container: {}", c.name), Some(&c));
    }

    pub(super) fn on_start_failed(&mut self, now: Now, r: &ContainerRef, reason: String, message: String) {
        if self.cancelled.remove(r) {
            // An abandoned start that never ran: nothing to show, nothing to retry.
            return;
        }
        let Some(c) = self.model.get(&r.name).cloned() else { return };
        if !self.is_current_start(r) {
            return;
        }
        self.record(EventType::Warning, "Failed", format!("Error: {message}"), Some(&c));
        match self.records.get_mut(r) {
            // A created container that failed to start is reported exited with code 128, so the
            // crash-loop back-off applies to it as to any exit.
            Some(inst) => {
                inst.state = State::Exited(Exit {
                    started_at: None,
                    finished_at: now.wall,
                    ended: now.mono,
                    exit_code: 128,
                    cause: ExitCause::StartError,
                    message: Some(message),
                });
                self.waiting.remove(&r.name);
                // Exited: the next pass restarts it under the crash-loop back-off.
                self.dirty = true;
            }
            None => {
                self.waiting.insert(c.name.clone(), Waiting { reason, message });
                let key = format!("create/{}", self.backoff_key(&c));
                self.crash_backoff.next(&key, now.mono, now.mono);
                let wait = self.crash_backoff.current(&key).unwrap_or(CRASH_LOOP_INITIAL);
                // Nothing exited, so the crash-loop back-off cannot hold the retry: the timer does.
                self.timers.insert(super::Timer::CreateRetry(c.name.clone()), now.mono.after(wait));
            }
        }
        self.start_done(r, false);
    }

    pub(super) fn on_started(&mut self, now: Now, r: &ContainerRef) {
        let Some(c) = self.model.get(&r.name).cloned() else { return };
        if self.records.get(r).is_none() {
            let image = self.instance_image(r, &c);
            self.records.push(Instance { r: r.clone(), image, id: String::new(), state: State::Created });
        }
        if let Some(inst) = self.records.get_mut(r) {
            if inst.state != State::Created {
                return;
            }
            inst.state = State::Running { started_at: now.wall, since: now.mono };
        }
        self.waiting.remove(&r.name);
        self.starting_image.remove(r);
        if self.cancelled.remove(r) {
            // Its start was abandoned when the pod began terminating, but the runtime had already
            // started it: it is stopped like any running container of the terminating pod (R42),
            // with the pod's grace; it was not running when the kill began, so it waits for no
            // turn (R43).
            let grace = self.terminating.as_ref().map_or(MIN_GRACE_SECONDS, |t| t.grace);
            self.start_kill(now, r.clone(), grace, false, None);
            return;
        }
        self.record(EventType::Normal, "Started", format!("Started container {}", c.name), Some(&c));
        for spec in &c.probes {
            let mut w = Worker::new(spec.clone());
            w.next_at = Some(now.mono.after(spec.initial_delay));
            if self.terminating.is_some() && spec.kind != ProbeKind::Readiness {
                w.stopped = true;
            }
            self.probes.insert((r.clone(), spec.kind), w);
        }
        self.dirty = true;
        if let Some(term) = &self.terminating {
            // Started while the pod terminates: stop it at once with what is left of the grace.
            let grace = term.grace;
            self.start_kill(now, r.clone(), grace, false, None);
            self.start_done(r, true);
            return;
        }
        if self.current == Some(Current::Starting(r.clone())) {
            if c.post_start {
                self.out.push_back(Action::RunHook { container: r.clone(), hook: Hook::PostStart, timeout: None });
            } else {
                self.start_done(r, true);
            }
        }
        self.run_due_probes(now);
    }

    pub(super) fn on_exited(
        &mut self,
        now: Now,
        r: &ContainerRef,
        exit_code: i32,
        cause: ExitCause,
        message: Option<String>,
    ) {
        if self.records.get(r).is_none() {
            // An exit reported before the creation: record the instance so it is not lost.
            let Some(c) = self.model.get(&r.name).cloned() else { return };
            let image = self.instance_image(r, &c);
            self.records.push(Instance { r: r.clone(), image, id: String::new(), state: State::Created });
        }
        self.starting_image.remove(r);
        self.cancelled.remove(r);
        let Some(inst) = self.records.get_mut(r) else { return };
        if inst.exit().is_some() {
            return;
        }
        let started_at = match inst.state {
            State::Running { started_at, .. } => Some(started_at),
            _ => None,
        };
        let exit = Exit { started_at, finished_at: now.wall, ended: now.mono, exit_code, cause, message };
        inst.state = State::Exited(exit);
        self.probes.retain(|(pr, _), _| pr != r);
        self.dirty = true;
        self.kills.remove(r);
        // Whether it was being killed or died on its own, it no longer holds anyone's turn (R46).
        if let Some(term) = &mut self.terminating {
            term.ordering.terminated(&r.name);
            self.advance_waiting_kills(now);
        }
        match self.current.clone() {
            Some(Current::Killing(x)) if x == *r => self.current = None,
            Some(Current::PostStartFailed(x)) if x == *r => self.start_done(r, false),
            Some(Current::Starting(x)) if x == *r => self.start_done(r, false),
            _ => {}
        }
    }

    pub(super) fn on_hook_done(&mut self, now: Now, r: &ContainerRef, hook: Hook, result: Result<(), String>) {
        let Some(c) = self.model.get(&r.name).cloned() else { return };
        match hook {
            Hook::PostStart => {
                if self.current != Some(Current::Starting(r.clone())) {
                    return;
                }
                match result {
                    Ok(()) => self.start_done(r, true),
                    Err(_) => {
                        self.record(EventType::Warning, "FailedPostStartHook", "PostStartHook failed".into(), Some(&c));
                        if self.records.get(r).is_some_and(Instance::running) {
                            let grace = self.model.grace_seconds();
                            self.start_kill(now, r.clone(), grace, false, Some("FailedPostStartHook".into()));
                            self.current = Some(Current::PostStartFailed(r.clone()));
                        } else {
                            self.start_done(r, false);
                        }
                    }
                }
            }
            Hook::PreStop => {
                if result.is_err() {
                    self.record(EventType::Warning, "FailedPreStopHook", "PreStopHook failed".into(), Some(&c));
                }
                if self.kills.get(r).is_some_and(|k| k.stage == Stage::PreStop) {
                    self.after_pre_stop(now, r);
                }
            }
        }
    }
}
