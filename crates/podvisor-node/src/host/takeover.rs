//! What a node process started again finds of a pod on the machine (R75): instances running,
//! ended while nobody watched, or created and never started.

use std::path::PathBuf;

use k8s_openapi::api::core::v1::{Container, Pod};
use podvisor_engine::{ContainerRef, Found, FoundExit};
use podvisor_runtime::logs;
use podvisor_runtime::monitor::Monitor;

use super::ends::recorded_end;
use super::{Host, STARTED, VOLUMES, container_id, id_prefix, message_budget, pod_cgroup};

/// A container instance a node process started again finds on the machine.
pub(crate) enum Held {
    /// It runs; its monitor watches it.
    Running { r: ContainerRef, id: String, dir: PathBuf, monitor: Monitor },
    /// It ended while no node process watched it.
    Ended { r: ContainerRef, id: String, dir: PathBuf, end: FoundExit },
    /// It was created but never started: it is removed, and counts as never made.
    Unstarted { id: String, dir: PathBuf },
    /// The pod's status last showed it running, and it is gone from the runtime, but its end was
    /// recorded beside its log: it ended and was removed before the status said so.
    Recorded { r: ContainerRef, id: String, end: FoundExit },
}

impl Held {
    /// What the engine is told of it.
    pub fn found(&self) -> Option<Found> {
        match self {
            Held::Running { r, id, .. } => {
                Some(Found { container: r.clone(), id: format!("runc://{id}"), ended: None })
            }
            Held::Ended { r, id, end, .. } | Held::Recorded { r, id, end } => {
                Some(Found { container: r.clone(), id: format!("runc://{id}"), ended: Some(end.clone()) })
            }
            Held::Unstarted { .. } => None,
        }
    }
}

impl Host {
    /// What is left on the machine of `pod`, when its sandbox outlived the node process that
    /// made it (`None` when it did not: the pod resumes as after a reboot, R73).
    pub fn held(&self, pod: &Pod) -> Option<Vec<Held>> {
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let run = self.run_dir(&uid);
        if !podvisor_runtime::sandbox::Sandbox::at(&run.join("sandbox")).is_alive() || !run.join(VOLUMES).exists() {
            return None;
        }
        let spec = pod.spec.clone().unwrap_or_default();
        let log_dir = self.log_dir(pod);
        let mut held = Vec::new();
        for (id, dir) in self.container_dirs(&uid) {
            let r = parse_container_id(&uid, &id);
            let monitor = Monitor::find(&dir, &id);
            // Created but never started (the node process stopped in between): not adopted.
            let started =
                dir.join(STARTED).exists() && (monitor.is_none() || self.runc.state(&id) != Some("created".into()));
            // An ephemeral container is taken over too: what its end needs of it is a
            // container's termination message settings.
            let ephemeral: Vec<Container> = spec
                .ephemeral_containers
                .iter()
                .flatten()
                .map(|e| Container {
                    name: e.name.clone(),
                    termination_message_path: e.termination_message_path.clone(),
                    termination_message_policy: e.termination_message_policy.clone(),
                    ..Default::default()
                })
                .collect();
            let container = r.as_ref().and_then(|r| {
                spec.init_containers
                    .iter()
                    .flatten()
                    .chain(&spec.containers)
                    .chain(&ephemeral)
                    .find(|c| c.name == r.name)
            });
            held.push(match (r, container, started, monitor) {
                (Some(r), Some(_), true, Some(monitor)) => Held::Running { r, id, dir, monitor },
                (Some(r), Some(c), true, None) => {
                    let log = logs::path(&log_dir, &r.name, r.attempt);
                    let end = self.end_of(c, &pod_cgroup(&uid), &id, &dir, &log, message_budget(pod));
                    Held::Ended { r, id, dir, end }
                }
                _ => Held::Unstarted { id, dir },
            });
        }
        // Instances the status shows running that the runtime no longer holds: ended, if
        // their end was recorded.
        let statuses = pod.status.iter().flat_map(|s| {
            s.init_container_statuses.iter().chain(&s.container_statuses).chain(&s.ephemeral_container_statuses)
        });
        for s in statuses.flatten() {
            let running = s.state.as_ref().is_some_and(|st| st.running.is_some());
            let Ok(attempt) = u32::try_from(s.restart_count) else { continue };
            let r = ContainerRef::new(s.name.clone(), attempt);
            let known = held.iter().any(|h| match h {
                Held::Running { r: x, .. } | Held::Ended { r: x, .. } | Held::Recorded { r: x, .. } => *x == r,
                Held::Unstarted { .. } => false,
            });
            if running
                && !known
                && let Some(end) = recorded_end(&log_dir, &r)
            {
                held.push(Held::Recorded { id: container_id(&uid, &r), r, end });
            }
        }
        Some(held)
    }
}

/// The instance a runtime ID made by [`container_id`] names.
fn parse_container_id(uid: &str, id: &str) -> Option<ContainerRef> {
    let rest = id.strip_prefix(&id_prefix(uid))?;
    let (name, attempt) = rest.rsplit_once('-')?;
    Some(ContainerRef::new(name, attempt.parse().ok()?))
}
