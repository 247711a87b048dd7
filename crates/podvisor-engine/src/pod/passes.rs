//! The sync passes: deciding what a pass does, then carrying it out step by step (kills one by
//! one, then starts in spec order, each waiting for its postStart hook), and spec updates.

use std::collections::HashMap;

use k8s_openapi::api::core::v1::PodSpec;

use crate::clock::{Instant, Now};
use crate::decide::{KillReason, decide};
use crate::duration::go_duration;
use crate::io::{Action, ContainerRef, EventType, ProbeKind};
use crate::model::{ContainerModel, PodModel, Role};
use crate::record::Instance;

use super::{Current, Op, PodEngine, Sandbox, Waiting};

impl PodEngine {
    /// Runs the current pass forward, and new passes while inputs are pending.
    pub(super) fn drive(&mut self, now: Now) {
        loop {
            if self.finished || self.current.is_some() {
                return;
            }
            if let Some(op) = self.queue.pop_front() {
                self.begin_op(now, op);
                continue;
            }
            if self.terminating.is_some() {
                self.maybe_finish();
                return;
            }
            if !self.dirty || self.sandbox != Sandbox::Ready {
                return;
            }
            self.dirty = false;
            let d = decide(&self.model, &self.records, &self.probes);
            if d.kill_pod {
                self.begin_termination(now, false, self.model.grace_seconds());
                continue;
            }
            self.queue.extend(d.kills.into_iter().map(|k| Op::Kill { r: k.r, reason: k.reason, message: k.message }));
            // The back-off reference is taken from the records as the pass began (R26).
            let start = |c: &ContainerModel| Op::Start {
                name: c.name.clone(),
                backoff_since: self.records.last_finished(&c.name),
            };
            let starts: Vec<Op> = d
                .ephemeral_starts
                .iter()
                .map(|i| start(&self.model.ephemeral[*i]))
                .chain(d.init_starts.iter().map(|i| start(&self.model.init[*i])))
                .chain(d.regular_starts.iter().map(|i| start(&self.model.regular[*i])))
                .collect();
            self.queue.extend(starts);
        }
    }

    pub(super) fn begin_op(&mut self, now: Now, op: Op) {
        match op {
            Op::Kill { r, reason, message } => {
                if self.records.get(&r).is_some_and(Instance::running) {
                    let grace = self.single_kill_grace(&r.name, reason);
                    self.start_kill(now, r.clone(), grace, false, Some(message));
                    self.current = Some(Current::Killing(r));
                }
            }
            Op::Start { name, backoff_since } => self.begin_start(now, &name, backoff_since),
        }
    }

    /// R48: the grace of a single-container kill.
    pub(super) fn single_kill_grace(&self, name: &str, reason: KillReason) -> i64 {
        let probe = match reason {
            KillReason::LivenessProbe => Some(ProbeKind::Liveness),
            KillReason::StartupProbe => Some(ProbeKind::Startup),
            _ => None,
        };
        probe
            .and_then(|k| self.model.get(name).and_then(|c| c.probe(k)).and_then(|p| p.termination_grace))
            .unwrap_or_else(|| self.model.grace_seconds())
    }

    pub(super) fn begin_start(&mut self, now: Now, name: &str, backoff_since: Option<Instant>) {
        let Some(c) = self.model.get(name).cloned() else { return };
        let key = self.backoff_key(&c);
        if let Some(since) = backoff_since {
            if let Some(left) = self.crash_backoff.remaining(&key, since, now.mono) {
                let total = self.crash_backoff.current(&key).unwrap_or(left);
                self.waiting.insert(
                    c.name.clone(),
                    Waiting {
                        reason: "CrashLoopBackOff".into(),
                        message: format!(
                            "back-off {} restarting failed container={} pod={}_{}({})",
                            go_duration(total),
                            c.name,
                            self.id.name,
                            self.id.namespace,
                            self.id.uid
                        ),
                    },
                );
                self.record(
                    EventType::Warning,
                    "BackOff",
                    format!(
                        "Back-off restarting failed container {} in pod {}_{}({})",
                        c.name, self.id.name, self.id.namespace, self.id.uid
                    ),
                    Some(&c),
                );
                self.timers.insert(super::Timer::CrashLoopBackOff(c.name.clone()), now.mono.after(left));
                self.start_refused(&c);
                return;
            }
            self.crash_backoff.next(&key, since, now.mono);
        }
        let image = c.image().to_string();
        if let Some(failed_at) = self.pull_failed_at.get(&image).copied()
            && let Some(left) = self.pull_backoff.remaining(&image, failed_at, now.mono)
        {
            self.waiting.insert(
                c.name.clone(),
                Waiting { reason: "ImagePullBackOff".into(), message: format!("Back-off pulling image \"{image}\"") },
            );
            self.record(EventType::Normal, "BackOff", format!("Back-off pulling image \"{image}\""), Some(&c));
            self.timers.insert(super::Timer::ImagePullBackOff(c.name.clone()), now.mono.after(left));
            self.start_refused(&c);
            return;
        }
        let r = ContainerRef::new(c.name.clone(), self.records.next_attempt(&c.name));
        self.starting_image.insert(r.clone(), image);
        self.out.push_back(Action::StartContainer {
            container: r.clone(),
            spec: Box::new(c.spec.clone()),
            init: matches!(c.role, Role::Init | Role::Sidecar),
            target: c.target.clone(),
        });
        self.current = Some(Current::Starting(r));
    }

    /// A start that did not happen: a regular init container ends the pass (R13), others let
    /// it go on with the next start.
    pub(super) fn start_refused(&mut self, c: &ContainerModel) {
        if c.role == Role::Init {
            self.queue.clear();
        }
    }

    pub(super) fn start_done(&mut self, r: &ContainerRef, ok: bool) {
        if self
            .current
            .as_ref()
            .is_some_and(|cur| matches!(cur, Current::Starting(x) | Current::PostStartFailed(x) if x == r))
        {
            self.current = None;
            if !ok && let Some(c) = self.model.get(&r.name).cloned() {
                self.start_refused(&c);
            }
        }
    }

    /// The image instance `r` runs: the one its start asked for.
    pub(super) fn instance_image(&self, r: &ContainerRef, c: &ContainerModel) -> String {
        self.starting_image.get(r).cloned().unwrap_or_else(|| c.image().to_string())
    }

    /// Whether an input about a start concerns the start in flight (duplicates and late
    /// reports about other starts change nothing).
    pub(super) fn is_current_start(&self, r: &ContainerRef) -> bool {
        self.current == Some(Current::Starting(r.clone()))
    }

    pub(super) fn backoff_key(&self, c: &ContainerModel) -> String {
        format!("{}_{}_{}_{}_{}", self.id.name, self.id.namespace, self.id.uid, c.name, c.image())
    }

    pub(super) fn on_update_spec(&mut self, spec: PodSpec) {
        // A finished pod runs nothing more, and its status stays as it ended.
        if self.finished {
            return;
        }
        // Only images and the active deadline are mutable on a running pod (R11). The deadline is
        // read from the spec when it is due, so it needs no new model.
        self.spec.active_deadline_seconds = spec.active_deadline_seconds;
        let mut merged = self.spec.clone();
        let images = |list: &Option<Vec<k8s_openapi::api::core::v1::Container>>| {
            list.iter().flatten().map(|c| (c.name.clone(), c.image.clone())).collect::<HashMap<_, _>>()
        };
        let (init, regular) = (images(&spec.init_containers), images(&Some(spec.containers.clone())));
        for c in merged.init_containers.iter_mut().flatten() {
            if let Some(img) = init.get(&c.name) {
                c.image = img.clone();
            }
        }
        for c in &mut merged.containers {
            if let Some(img) = regular.get(&c.name) {
                c.image = img.clone();
            }
        }
        // Ephemeral containers may be added, never changed or removed (R23); a new one starts on
        // the next pass.
        for e in spec.ephemeral_containers.iter().flatten() {
            let list = merged.ephemeral_containers.get_or_insert_with(Vec::new);
            if !list.iter().any(|x| x.name == e.name) {
                list.push(e.clone());
            }
        }
        if merged == self.spec {
            return;
        }
        self.spec = merged;
        self.model = PodModel::new(&self.spec);
        // During termination nothing restarts, so a changed image changes nothing (R72).
        self.dirty = self.terminating.is_none();
    }
}
