//! R75, R76: the node process starts again while a pod's sandbox and containers are intact (a
//! kubelet restart, not a reboot). The engine takes over what the runtime still holds and what
//! the pod last reported, and goes on from there: nothing that completed runs again, nothing
//! running is restarted, and `started`/`ready` stay as they were.

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{ContainerStateTerminated, ContainerStatus, PodStatus};

use super::{PodEngine, Sandbox};
use crate::clock::Now;
use crate::io::{Action, ContainerRef, ExitCause, Found, ProbeKind};
use crate::probe::{Cached, Worker};
use crate::record::{Exit, Instance, State};

/// How an instance ended, as a reported `terminated` state says.
pub(super) fn exit_from_status(t: &ContainerStateTerminated, now: Now) -> Exit {
    let finished_at = t.finished_at.as_ref().map_or(now.wall, |x| x.0);
    Exit {
        started_at: t.started_at.as_ref().map(|x| x.0),
        finished_at,
        ended: now.mono_of(finished_at),
        exit_code: t.exit_code,
        cause: match t.reason.as_deref() {
            Some("OOMKilled") => ExitCause::OomKilled,
            Some("StartError") => ExitCause::StartError,
            Some("ContainerStatusUnknown") => ExitCause::Lost,
            _ => ExitCause::Exited,
        },
        message: t.message.clone(),
    }
}

/// When the reported current instance started running, if the report says it runs.
fn reported_start(s: &ContainerStatus) -> Option<Timestamp> {
    s.state.as_ref()?.running.as_ref()?.started_at.as_ref().map(|t| t.0)
}

impl PodEngine {
    /// R75, what [`PodEngine::adopted`] does after making the engine: the node process stopped
    /// and started again, but the pod's sandbox is intact and `found` is what the runtime still
    /// holds of its containers; `prior` is the status last reported.
    ///
    /// No sandbox is created. Instances ended before (completed init containers, earlier
    /// attempts) keep their ends from `prior`, so no regular init container runs again;
    /// running instances are taken over as they are, with the `started` and `ready` they had
    /// (R76); instances that ended while nobody watched end as `found` says; and a container
    /// whose instance vanished from the runtime is simply started again where the pod's
    /// progress allows it (a sidecar of an initialized pod, R75). Restart counts go on.
    pub(super) fn adopt(&mut self, now: Now, prior: &PodStatus, found: Vec<Found>) {
        if let Some(t) = &prior.start_time {
            self.start_time = t.0;
            self.start_mono = now.mono_of(t.0);
        }
        // A condition whose status does not change keeps its transition time, as the kubelet's
        // status manager keeps it from the status it finds in the API.
        self.status.conditions = prior.conditions.clone();
        self.out.retain(|a| !matches!(a, Action::CreateSandbox));
        self.sandbox = Sandbox::Ready;
        self.pod_ip = prior.pod_ip.clone();
        // The containers' readiness, not the pod's: a readiness gate not met holds Ready back.
        let pod_ready = prior.conditions.iter().flatten().any(|c| c.type_ == "ContainersReady" && c.status == "True");
        let statuses: Vec<&ContainerStatus> = prior
            .init_container_statuses
            .iter()
            .flatten()
            .chain(prior.container_statuses.iter().flatten())
            .chain(prior.ephemeral_container_statuses.iter().flatten())
            .collect();
        let names: Vec<String> = self.model.all().map(|c| c.name.clone()).collect();
        for name in names {
            let reported = statuses.iter().find(|s| s.name == name).copied();
            let mut instances: Vec<Instance> = Vec::new();
            if let Some(s) = reported {
                let current = u32::try_from(s.restart_count).unwrap_or(0);
                let image = s.image.clone();
                let id = s.container_id.clone().unwrap_or_default();
                let waiting = s.state.as_ref().is_some_and(|st| st.waiting.is_some());
                if let Some(t) = s.last_state.as_ref().and_then(|l| l.terminated.as_ref()) {
                    // Waiting (a back-off) shows the instance `restartCount` as the last state;
                    // running or ended, the last state is the one before it.
                    let attempt = if waiting { Some(current) } else { current.checked_sub(1) };
                    if let Some(attempt) = attempt {
                        let r = ContainerRef::new(name.clone(), attempt);
                        let state = State::Exited(exit_from_status(t, now));
                        let id = t.container_id.clone().unwrap_or_default();
                        instances.push(Instance { r, image: image.clone(), id, state });
                    }
                }
                if let Some(t) = s.state.as_ref().and_then(|st| st.terminated.as_ref()) {
                    let r = ContainerRef::new(name.clone(), current);
                    instances.push(Instance {
                        r,
                        image: image.clone(),
                        id: id.clone(),
                        state: State::Exited(exit_from_status(t, now)),
                    });
                }
                if let Some(started_at) = reported_start(s) {
                    // Reported running: if the runtime no longer holds it, it ended unseen (its
                    // next instance gets the next attempt, never this one's ID again).
                    let r = ContainerRef::new(name.clone(), current);
                    let state = State::Exited(Exit {
                        started_at: Some(started_at),
                        finished_at: now.wall,
                        ended: now.mono,
                        exit_code: 137,
                        cause: ExitCause::Lost,
                        message: Some("The container could not be located when the node process started again".into()),
                    });
                    instances.push(Instance { r, image, id, state });
                }
                if instances.is_empty() {
                    self.records.carry(&name, current);
                }
            }
            for f in found.iter().filter(|f| f.container.name == name) {
                let r = f.container.clone();
                let same = reported.filter(|s| u32::try_from(s.restart_count).ok() == Some(r.attempt));
                let started_at = same.and_then(reported_start);
                let state = match &f.ended {
                    Some(e) => State::Exited(Exit {
                        started_at,
                        finished_at: e.finished_at,
                        ended: now.mono_of(e.finished_at),
                        exit_code: e.exit_code,
                        cause: e.cause,
                        message: e.message.clone(),
                    }),
                    None => {
                        let started_at = started_at.unwrap_or(now.wall);
                        State::Running { started_at, since: now.mono_of(started_at) }
                    }
                };
                let image =
                    same.map(|s| s.image.clone()).or_else(|| self.model.get(&name).map(|c| c.image().to_string()));
                instances.retain(|i| i.r.attempt != r.attempt);
                instances.push(Instance { r, image: image.unwrap_or_default(), id: f.id.clone(), state });
            }
            instances.sort_by_key(|i| i.r.attempt);
            for inst in instances {
                if inst.running() {
                    let started = reported
                        .filter(|s| u32::try_from(s.restart_count).ok() == Some(inst.r.attempt))
                        .is_some_and(|s| s.started == Some(true));
                    self.take_over_probes(now, &inst, started, pod_ready);
                }
                self.records.push(inst);
            }
        }
        match self.deleted_before.take() {
            // Terminating before the restart: it goes on terminating, nothing is started.
            Some(grace) => {
                let grace = grace.unwrap_or_else(|| self.model.grace_seconds()).max(1);
                self.begin_termination(now, true, grace);
            }
            None => {
                self.dirty = true;
                self.drive(now);
            }
        }
        self.refresh_status(now);
        self.run_due_probes(now);
    }

    /// R76: probe workers for a running instance taken over. A startup probe that had passed
    /// is not run again; the readiness result is kept until the first new one (reported ready
    /// unless it has a readiness probe and the pod was not Ready); liveness goes on as it was.
    fn take_over_probes(&mut self, now: Now, inst: &Instance, started: bool, pod_ready: bool) {
        let Some(c) = self.model.get(&inst.r.name).cloned() else { return };
        let since = match inst.state {
            State::Running { since, .. } => since,
            _ => now.mono,
        };
        for spec in &c.probes {
            let mut w = Worker::new(spec.clone());
            w.next_at = Some(since.after(spec.initial_delay).max(now.mono));
            match spec.kind {
                ProbeKind::Startup if started => {
                    w.cached = Cached::Success;
                    w.on_hold = true;
                }
                ProbeKind::Readiness if pod_ready => w.cached = Cached::Success,
                _ => {}
            }
            self.probes.insert((inst.r.clone(), spec.kind), w);
        }
    }
}
