//! The kubelet's decision function (`computePodActions` with the unified init-container
//! algorithm, R13–R37), as a pure function of the spec, the runtime records and the probe
//! results.

use crate::io::{ContainerRef, ProbeKind};
use crate::model::{ContainerModel, PodModel, RestartPolicy, Role};
use crate::probe::Cached;
use crate::record::{Records, State};

/// Why a single container is killed outside pod termination (R48 picks its grace from this).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KillReason {
    /// Its startup probe failed.
    StartupProbe,
    /// Its liveness probe failed.
    LivenessProbe,
    /// Its spec (name or image) changed.
    Changed,
    /// Its postStart hook failed.
    PostStartHook,
}

/// A container to kill in this pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KillOrder {
    /// The running instance.
    pub r: ContainerRef,
    /// Why.
    pub reason: KillReason,
    /// The `Killing` event message.
    pub message: String,
}

/// What one sync pass should do.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Decision {
    /// Kill the whole pod (completion, or a failed init container under `Never`).
    pub kill_pod: bool,
    /// Containers to kill first, one by one.
    pub kills: Vec<KillOrder>,
    /// Init containers (indexes) to start, ascending.
    pub init_starts: Vec<usize>,
    /// Regular containers (indexes) to start, ascending.
    pub regular_starts: Vec<usize>,
    /// Ephemeral containers (indexes) to start: those never started (R23).
    pub ephemeral_starts: Vec<usize>,
}

/// Probe results as the decision function needs them: `None` when not recorded.
pub trait ProbeResults {
    /// The cached result of a probe of an instance.
    fn cached(&self, r: &ContainerRef, kind: ProbeKind) -> Option<Cached>;
}

/// Computes a sync pass's actions.
pub fn decide(model: &PodModel, records: &Records, probes: &impl ProbeResults) -> Decision {
    let mut d = Decision::default();
    if is_done(model, records) {
        // The kubelet decides the phase before any action: once it is terminal, nothing starts
        // again, not even a sidecar that exited (R36).
        d.kill_pod = true;
        return d;
    }
    // Ephemeral containers come first in a pass, whatever the initialization, once each (R23).
    d.ephemeral_starts = model.ephemeral.iter().filter(|c| !records.has_record(&c.name)).map(|c| c.index).collect();
    let initialized = decide_init(model, records, probes, &mut d);
    if d.kill_pod || !initialized {
        return d;
    }
    let mut keep = 0;
    for c in &model.regular {
        let latest = records.latest(&c.name);
        let Some(inst) = latest.filter(|i| i.running()) else {
            if should_restart(model, records, c) {
                d.regular_starts.push(c.index);
            }
            continue;
        };
        let mut restart = model.restart_policy != RestartPolicy::Never;
        let (reason, what) = if inst.image != c.image() {
            restart = true;
            (KillReason::Changed, "definition changed")
        } else if probes.cached(&inst.r, ProbeKind::Liveness) == Some(Cached::Failure) {
            (KillReason::LivenessProbe, "failed liveness probe")
        } else if probes.cached(&inst.r, ProbeKind::Startup) == Some(Cached::Failure) {
            (KillReason::StartupProbe, "failed startup probe")
        } else {
            keep += 1;
            continue;
        };
        let mut message = format!("Container {} {what}", c.name);
        if restart {
            message.push_str(", will be restarted");
            d.regular_starts.push(c.index);
        }
        d.kills.push(KillOrder { r: inst.r.clone(), reason, message });
    }
    if keep == 0 && d.regular_starts.is_empty() {
        // Nothing runs or will run: stop the pod, and do not restart sidecars (R36).
        d.kill_pod = true;
        d.init_starts.clear();
    }
    d
}

/// Whether the pod's phase is already terminal, as the kubelet's `getPhase` finds it: the
/// policy is not `Always`, every regular container has exited, none is to run again (all
/// succeeded, or `Never`), and no sidecar is running (an exited or crash-looping sidecar does not count).
fn is_done(model: &PodModel, records: &Records) -> bool {
    // Under `Always` every container is "in the process of restarting": never terminal.
    // A running ephemeral container (a debugger) keeps nothing alive.
    let running = records.running().any(|i| model.get(&i.r.name).is_none_or(|c| c.role != Role::Ephemeral));
    if model.restart_policy == RestartPolicy::Always || model.regular.is_empty() || running {
        return false;
    }
    let mut all_succeeded = true;
    for c in &model.regular {
        match records.latest(&c.name).map(|i| &i.state) {
            Some(State::Exited(e)) => all_succeeded &= e.exit_code == 0,
            _ => return false,
        }
    }
    all_succeeded || model.restart_policy == RestartPolicy::Never
}

/// `ShouldContainerBeRestarted` for a regular container that is not running (R33).
fn should_restart(model: &PodModel, records: &Records, c: &ContainerModel) -> bool {
    match records.latest(&c.name).map(|i| &i.state) {
        None | Some(State::Created) => true,
        Some(State::Running { .. }) => false,
        Some(State::Exited(e)) => match model.restart_policy {
            RestartPolicy::Always => true,
            RestartPolicy::OnFailure => e.exit_code != 0,
            RestartPolicy::Never => false,
        },
    }
}

/// The unified init-container walk (R14). Returns whether the pod is initialized.
fn decide_init(model: &PodModel, records: &Records, probes: &impl ProbeResults, d: &mut Decision) -> bool {
    let n = model.init.len();
    if n == 0 {
        return true;
    }
    let mut initialized = model
        .regular
        .iter()
        .any(|c| records.latest(&c.name).is_some_and(|i| matches!(i.state, State::Created | State::Running { .. })));
    let mut prev_init = initialized;
    let restart_on_failure = model.restart_policy != RestartPolicy::Never;
    let mut starts = Vec::new();
    for i in (0..n).rev() {
        let c = &model.init[i];
        let sidecar = c.role == Role::Sidecar;
        // Kill the running sidecar and start it again (R14 a, c, d).
        let restart = |d: &mut Decision, starts: &mut Vec<usize>, i: usize, reason: KillReason, what: &str| {
            if let Some(inst) = records.latest(&c.name) {
                let message = format!("Init container {} {what}", c.name);
                d.kills.push(KillOrder { r: inst.r.clone(), reason, message });
            }
            starts.push(i);
        };
        let Some(inst) = records.latest(&c.name) else {
            if prev_init && sidecar {
                starts.push(i);
            }
            continue;
        };
        if prev_init && !sidecar {
            continue;
        }
        match &inst.state {
            State::Created => starts.push(i),
            State::Running { .. } if sidecar => 'sidecar: {
                if c.probe(ProbeKind::Startup).is_some() {
                    match probes.cached(&inst.r, ProbeKind::Startup) {
                        Some(Cached::Success) => {}
                        Some(Cached::Failure) => {
                            restart(d, &mut starts, i, KillReason::StartupProbe, "failed startup probe");
                            break 'sidecar;
                        }
                        _ => break 'sidecar,
                    }
                }
                if i == n - 1 {
                    initialized = true;
                } else if !prev_init {
                    starts.push(i + 1);
                }
                if inst.image != c.image() {
                    restart(d, &mut starts, i, KillReason::Changed, "definition changed");
                    break 'sidecar;
                }
                if c.probe(ProbeKind::Liveness).is_some() {
                    match probes.cached(&inst.r, ProbeKind::Liveness) {
                        Some(Cached::Failure) => {
                            restart(d, &mut starts, i, KillReason::LivenessProbe, "failed liveness probe")
                        }
                        _ => break 'sidecar,
                    }
                }
            }
            State::Running { .. } => {}
            State::Exited(_) if sidecar => starts.push(i),
            State::Exited(e) => {
                if e.failed() {
                    if !restart_on_failure {
                        d.kill_pod = true;
                        d.init_starts.clear();
                        return false;
                    }
                    starts.push(i);
                } else if i == n - 1 {
                    initialized = true;
                } else {
                    starts.push(i + 1);
                }
            }
        }
        prev_init = true;
    }
    if !prev_init {
        starts.push(0);
    }
    starts.reverse();
    d.init_starts = starts;
    initialized
}
