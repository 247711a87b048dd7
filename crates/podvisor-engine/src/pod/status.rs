//! The API status of a pod (R51–R62): container statuses, phase and conditions, derived
//! from the engine's records and probe results.

use std::collections::HashMap;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{
    ContainerState, ContainerStateRunning, ContainerStateTerminated, ContainerStateWaiting, ContainerStatus, HostIP,
    PodCondition, PodIP, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::PodEngine;
use crate::io::ProbeKind;
use crate::model::{ContainerModel, RestartPolicy, Role};
use crate::probe::Cached;
use crate::record::{Exit, Instance, State};

/// The node's address (`status.hostIP`) unless the node says otherwise: this machine, on
/// loopback.
pub const HOST_IP: &str = "127.0.0.1";

/// Builds the pod status; condition transition times are kept from the previous status.
pub(crate) fn build(e: &PodEngine, now: Timestamp) -> PodStatus {
    let init: Vec<ContainerStatus> = e.model.init.iter().map(|c| container_status(e, c)).collect();
    let regular: Vec<ContainerStatus> = e.model.regular.iter().map(|c| container_status(e, c)).collect();
    // An ephemeral container is never ready, has no restarts, and has a status once added.
    let ephemeral: Vec<ContainerStatus> =
        e.model.ephemeral.iter().map(|c| ContainerStatus { ready: false, ..container_status(e, c) }).collect();
    let previous = e.status.phase.as_deref();
    // The node ended the pod (eviction, active deadline): Failed, with its reason, once no
    // container can still be running, as the kubelet's status manager holds a terminal phase
    // back until then.
    let verdict = e.verdict.as_ref().filter(|_| e.is_finished());
    let phase = match (previous, verdict) {
        (Some(p @ ("Succeeded" | "Failed")), _) => p.to_string(),
        (_, Some(_)) => "Failed".to_string(),
        _ => phase(e, &init, &regular).to_string(),
    };
    let mut conditions = Vec::new();
    let mut push = |type_: &str, ok: bool, reason: Option<String>, message: Option<String>| {
        let status = if ok { "True" } else { "False" };
        let since = e
            .status
            .conditions
            .iter()
            .flatten()
            .find(|c| c.type_ == type_ && c.status == status)
            .and_then(|c| c.last_transition_time.clone())
            .unwrap_or(Time(now));
        conditions.push(PodCondition {
            type_: type_.to_string(),
            status: status.to_string(),
            reason,
            message,
            last_transition_time: Some(since),
            ..Default::default()
        });
    };
    push("PodReadyToStartContainers", e.sandbox_ready(), None, None);
    let (ok, reason, message) = initialized(e, &init, &regular, &phase);
    push("Initialized", ok, reason, message);
    let (ok, reason, message) = containers_ready(e, &init, &regular, &phase);
    match unmet_gates(e) {
        Some(unmet) if ok => push("Ready", false, Some("ReadinessGatesNotReady".into()), Some(unmet)),
        _ => push("Ready", ok, reason.clone(), message.clone()),
    }
    push("ContainersReady", ok, reason, message);
    push("PodScheduled", true, None, None);
    PodStatus {
        phase: Some(phase),
        conditions: Some(conditions),
        init_container_statuses: (!init.is_empty()).then_some(init),
        container_statuses: Some(regular),
        ephemeral_container_statuses: (!ephemeral.is_empty()).then_some(ephemeral),
        start_time: Some(Time(e.start_time)),
        host_ip: Some(e.host_ip.clone()),
        host_ips: Some(vec![HostIP { ip: e.host_ip.clone() }]),
        pod_ip: e.pod_ip.clone(),
        pod_ips: e.pod_ip.as_ref().map(|ip| vec![PodIP { ip: ip.clone() }]),
        reason: verdict.map(|v| v.0.clone()),
        message: verdict.map(|v| v.1.clone()),
        qos_class: None,
        ..Default::default()
    }
}

/// R61: once the containers are ready, `Ready` also needs the condition of every readiness
/// gate to be `True` (conditions others set, which the kubelet only reads): the kubelet's words
/// for each gate not met, if any.
fn unmet_gates(e: &PodEngine) -> Option<String> {
    let unmet: Vec<String> = e
        .spec
        .readiness_gates
        .iter()
        .flatten()
        .filter_map(|g| match e.others.get(&g.condition_type).map(String::as_str) {
            None => {
                Some(format!("corresponding condition of pod readiness gate \"{}\" does not exist.", g.condition_type))
            }
            Some("True") => None,
            Some(other) => {
                Some(format!("the status of pod readiness gate \"{}\" is not \"True\", but {other}", g.condition_type))
            }
        })
        .collect();
    (!unmet.is_empty()).then(|| unmet.join(", "))
}

fn terminated(i: &Instance, x: &Exit) -> ContainerState {
    ContainerState {
        terminated: Some(ContainerStateTerminated {
            exit_code: x.exit_code,
            reason: Some(x.reason().to_string()),
            message: x.message.clone(),
            started_at: x.started_at.map(Time),
            finished_at: Some(Time(x.finished_at)),
            container_id: (!i.id.is_empty()).then(|| i.id.clone()),
            signal: None,
        }),
        ..Default::default()
    }
}

fn waiting(reason: &str, message: Option<String>) -> ContainerState {
    ContainerState {
        waiting: Some(ContainerStateWaiting { reason: Some(reason.to_string()), message }),
        ..Default::default()
    }
}

/// One container's status (R51–R55).
fn container_status(e: &PodEngine, c: &ContainerModel) -> ContainerStatus {
    let latest = e.records.latest(&c.name);
    // A restart that will not happen (the pod terminates) shows no waiting reason (R33).
    let override_ = e.waiting.get(&c.name).filter(|_| latest.is_none() || e.terminating.is_none());
    let default_reason = if e.model.init.is_empty() { "ContainerCreating" } else { "PodInitializing" };
    let (state, last) = match latest {
        None => {
            let (reason, message) =
                override_.map_or((default_reason, None), |w| (&w.reason[..], Some(w.message.clone())));
            (waiting(reason, message), None)
        }
        Some(i) => {
            let prev = e.records.previous(&c.name).and_then(|p| p.exit().map(|x| terminated(p, x)));
            match &i.state {
                State::Created => (waiting("ContainerCreating", None), prev),
                State::Running { started_at, .. } => (
                    ContainerState {
                        running: Some(ContainerStateRunning { started_at: Some(Time(*started_at)) }),
                        ..Default::default()
                    },
                    prev,
                ),
                State::Exited(x) => match override_ {
                    Some(w) => (waiting(&w.reason, Some(w.message.clone())), Some(terminated(i, x))),
                    None => (terminated(i, x), prev),
                },
            }
        }
    };
    let started = latest.is_some_and(|i| e.is_started(&i.r));
    let ready = match c.role {
        Role::Init => state.terminated.as_ref().is_some_and(|t| t.exit_code == 0),
        _ => {
            started
                && latest.is_some_and(|i| match e.probes.get(&(i.r.clone(), ProbeKind::Readiness)) {
                    Some(w) => w.cached == Cached::Success,
                    None => c.probe(ProbeKind::Readiness).is_none(),
                })
        }
    };
    ContainerStatus {
        name: c.name.clone(),
        image: latest.map_or_else(|| c.image().to_string(), |i| i.image.clone()),
        image_id: String::new(),
        container_id: latest.and_then(|i| (!i.id.is_empty()).then(|| i.id.clone())),
        restart_count: latest.map_or_else(|| e.records.carried(&c.name).saturating_sub(1), |i| i.r.attempt) as i32,
        started: Some(started),
        ready,
        state: Some(state),
        last_state: Some(last.unwrap_or_default()),
        ..Default::default()
    }
}

fn last_terminated(s: &ContainerStatus) -> Option<&ContainerStateTerminated> {
    s.last_state.as_ref().and_then(|l| l.terminated.as_ref())
}

/// The pod phase (R56, R50).
fn phase(e: &PodEngine, init: &[ContainerStatus], regular: &[ContainerStatus]) -> &'static str {
    let (mut pending_init, mut failed_init, mut pending_sidecar, mut waiting) = (0, 0, 0, 0);
    let (mut running, mut stopped, mut succeeded) = (0, 0, 0);
    for (c, s) in e.model.init.iter().zip(init) {
        let st = s.state.as_ref().cloned().unwrap_or_default();
        let sidecar = c.role == Role::Sidecar;
        if st.running.is_some() {
            if sidecar {
                running += 1;
                if s.started != Some(true) {
                    pending_sidecar += 1;
                }
            } else {
                pending_init += 1;
            }
        } else if let Some(t) = &st.terminated {
            if !sidecar && t.exit_code != 0 {
                failed_init += 1;
            }
        } else if let Some(last) = last_terminated(s) {
            if !sidecar && last.exit_code != 0 {
                failed_init += 1;
            }
        } else if sidecar {
            pending_sidecar += 1;
            waiting += 1;
        } else {
            pending_init += 1;
        }
    }
    for s in regular {
        let st = s.state.as_ref().cloned().unwrap_or_default();
        if st.running.is_some() {
            running += 1;
        } else if let Some(t) = &st.terminated {
            stopped += 1;
            if t.exit_code == 0 {
                succeeded += 1;
            }
        } else if last_terminated(s).is_some() {
            stopped += 1;
        } else {
            waiting += 1;
        }
    }
    let policy = e.model.restart_policy;
    // "Initialized" for the phase: a regular container of this sandbox has started (R56).
    let initialized = e.model.regular.iter().any(|c| e.records.has_record(&c.name));
    if failed_init > 0 && policy == RestartPolicy::Never {
        return "Failed";
    }
    if pending_init > 0 || (pending_sidecar > 0 && !initialized) || waiting > 0 {
        return "Pending";
    }
    if running > 0 {
        return "Running";
    }
    if stopped > 0 {
        let terminal = e.is_finished() && e.terminating.as_ref().is_some_and(|t| t.deleted);
        if terminal {
            return if stopped == succeeded { "Succeeded" } else { "Failed" };
        }
        return match policy {
            RestartPolicy::Always => "Running",
            _ if stopped == succeeded => "Succeeded",
            RestartPolicy::Never => "Failed",
            RestartPolicy::OnFailure => "Running",
        };
    }
    "Pending"
}

fn list(names: &[&str]) -> String {
    format!("[{}]", names.join(" "))
}

/// The `Initialized` condition (R59).
fn initialized(
    e: &PodEngine,
    init: &[ContainerStatus],
    regular: &[ContainerStatus],
    phase: &str,
) -> (bool, Option<String>, Option<String>) {
    if init.is_empty() {
        return (true, None, None);
    }
    if phase == "Succeeded" {
        return (true, Some("PodCompleted".into()), None);
    }
    let any_regular = regular.iter().any(|s| {
        let st = s.state.as_ref();
        st.is_some_and(|st| st.running.is_some() || st.terminated.is_some())
    });
    if any_regular {
        return (true, None, None);
    }
    let by_name: HashMap<&str, &ContainerStatus> = init.iter().map(|s| (s.name.as_str(), s)).collect();
    let incomplete: Vec<&str> = e
        .model
        .init
        .iter()
        .filter(|c| {
            let s = by_name.get(c.name.as_str());
            match c.role {
                Role::Sidecar => s.is_none_or(|s| s.started != Some(true)),
                _ => !s.is_some_and(|s| s.ready),
            }
        })
        .map(|c| c.name.as_str())
        .collect();
    if incomplete.is_empty() {
        return (true, None, None);
    }
    (
        false,
        Some("ContainersNotInitialized".into()),
        Some(format!("containers with incomplete status: {}", list(&incomplete))),
    )
}

/// `ContainersReady` (R60), which `Ready` copies when there are no readiness gates (R61).
fn containers_ready(
    e: &PodEngine,
    init: &[ContainerStatus],
    regular: &[ContainerStatus],
    phase: &str,
) -> (bool, Option<String>, Option<String>) {
    match phase {
        "Succeeded" => return (false, Some("PodCompleted".into()), None),
        "Failed" => return (false, Some("PodFailed".into()), None),
        _ => {}
    }
    let unready: Vec<&str> = e
        .model
        .init
        .iter()
        .zip(init)
        .filter(|(c, _)| c.role == Role::Sidecar)
        .map(|(_, s)| s)
        .chain(regular)
        .filter(|s| !s.ready)
        .map(|s| s.name.as_str())
        .collect();
    if unready.is_empty() {
        (true, None, None)
    } else {
        (false, Some("ContainersNotReady".into()), Some(format!("containers with unready status: {}", list(&unready))))
    }
}
