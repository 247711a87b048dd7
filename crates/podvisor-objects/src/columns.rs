//! kubectl's `get pods` columns (R63–R65): READY, STATUS and RESTARTS from a pod's spec and
//! status, as kubectl's pod printer computes them, and its AGE format.

use std::collections::HashMap;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::core::v1::{ContainerStateTerminated, Pod};

/// The three computed columns of `kubectl get pods`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodColumns {
    /// `ready/total`, sidecars counted in both (R63).
    pub ready: String,
    /// The STATUS column (R64).
    pub status: String,
    /// The RESTARTS column, with " (<age> ago)" of the last restart.
    pub restarts: String,
}

/// kubectl's human duration (`HumanDuration`), used by AGE and RESTARTS.
pub fn human_duration(d: SignedDuration) -> String {
    let secs = d.as_secs();
    if secs < -1 {
        return "<invalid>".into();
    }
    if secs < 0 {
        return "0s".into();
    }
    if secs < 120 {
        return format!("{secs}s");
    }
    let minutes = secs / 60;
    if minutes < 10 {
        let s = secs % 60;
        return if s == 0 { format!("{minutes}m") } else { format!("{minutes}m{s}s") };
    }
    if minutes < 180 {
        return format!("{minutes}m");
    }
    let hours = secs / 3600;
    if hours < 8 {
        let m = minutes % 60;
        return if m == 0 { format!("{hours}h") } else { format!("{hours}h{m}m") };
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    if hours < 24 * 8 {
        let h = hours % 24;
        return if h == 0 { format!("{}d", hours / 24) } else { format!("{}d{h}h", hours / 24) };
    }
    if hours < 24 * 365 * 2 {
        return format!("{}d", hours / 24);
    }
    if hours < 24 * 365 * 8 {
        let dy = (hours / 24) % 365;
        return if dy == 0 { format!("{}y", hours / 24 / 365) } else { format!("{}y{dy}d", hours / 24 / 365) };
    }
    format!("{}y", hours / 24 / 365)
}

fn terminated_reason(prefix: &str, t: &ContainerStateTerminated) -> String {
    match t.reason.as_deref().filter(|r| !r.is_empty()) {
        Some(r) => format!("{prefix}{r}"),
        None => match t.signal.filter(|s| *s != 0) {
            Some(s) => format!("{prefix}Signal:{s}"),
            None => format!("{prefix}ExitCode:{}", t.exit_code),
        },
    }
}

/// Computes READY, STATUS and RESTARTS for a pod at `now`.
pub fn pod_columns(pod: &Pod, now: Timestamp) -> PodColumns {
    let spec = pod.spec.clone().unwrap_or_default();
    let status = pod.status.clone().unwrap_or_default();
    let init_specs = spec.init_containers.unwrap_or_default();
    let sidecar: HashMap<&str, bool> =
        init_specs.iter().map(|c| (c.name.as_str(), c.restart_policy.as_deref() == Some("Always"))).collect();
    let is_sidecar = |name: &str| sidecar.get(name).copied().unwrap_or(false);
    let total = spec.containers.len() + init_specs.iter().filter(|c| is_sidecar(&c.name)).count();
    let mut ready = 0;
    let mut restarts = 0;
    let mut sidecar_restarts = 0;
    let mut last_restart: Option<Timestamp> = None;
    let mut last_sidecar_restart: Option<Timestamp> = None;
    let mut reason = status.reason.clone().unwrap_or_else(|| status.phase.clone().unwrap_or_default());
    let finished = |s: &k8s_openapi::api::core::v1::ContainerStatus| {
        s.last_state.as_ref().and_then(|l| l.terminated.as_ref()).and_then(|t| t.finished_at.as_ref()).map(|t| t.0)
    };
    let mut initializing = false;
    for (i, c) in status.init_container_statuses.iter().flatten().enumerate() {
        restarts += c.restart_count;
        last_restart = last_restart.max(finished(c));
        if is_sidecar(&c.name) {
            sidecar_restarts += c.restart_count;
            last_sidecar_restart = last_sidecar_restart.max(finished(c));
        }
        let state = c.state.clone().unwrap_or_default();
        if state.terminated.as_ref().is_some_and(|t| t.exit_code == 0) {
            continue;
        }
        if is_sidecar(&c.name) && c.started == Some(true) {
            if c.ready {
                ready += 1;
            }
            continue;
        }
        reason = if let Some(t) = &state.terminated {
            terminated_reason("Init:", t)
        } else if let Some(w) =
            state.waiting.as_ref().and_then(|w| w.reason.clone()).filter(|r| !r.is_empty() && r != "PodInitializing")
        {
            format!("Init:{w}")
        } else {
            format!("Init:{i}/{}", init_specs.len())
        };
        initializing = true;
        break;
    }
    let initialized = status.conditions.iter().flatten().any(|c| c.type_ == "Initialized" && c.status == "True");
    if !initializing || initialized {
        restarts = sidecar_restarts;
        last_restart = last_sidecar_restart;
        let mut has_running = false;
        for c in status.container_statuses.iter().flatten().rev() {
            restarts += c.restart_count;
            last_restart = last_restart.max(finished(c));
            let state = c.state.clone().unwrap_or_default();
            if let Some(w) = state.waiting.as_ref().and_then(|w| w.reason.clone()).filter(|r| !r.is_empty()) {
                reason = w;
            } else if let Some(t) = &state.terminated {
                reason = terminated_reason("", t);
            } else if c.ready && state.running.is_some() {
                has_running = true;
                ready += 1;
            }
        }
        if reason == "Completed" && has_running {
            let pod_ready = status.conditions.iter().flatten().any(|c| c.type_ == "Ready" && c.status == "True");
            reason = if pod_ready { "Running".into() } else { "NotReady".into() };
        }
    }
    let phase = status.phase.as_deref().unwrap_or("");
    if pod.metadata.deletion_timestamp.is_some() {
        if status.reason.as_deref() == Some("NodeLost") {
            reason = "Unknown".into();
        } else if !matches!(phase, "Succeeded" | "Failed") {
            reason = "Terminating".into();
        }
    }
    let restarts_text = match last_restart {
        Some(t) if restarts != 0 => format!("{restarts} ({} ago)", human_duration(now.duration_since(t))),
        _ => restarts.to_string(),
    };
    PodColumns { ready: format!("{ready}/{total}"), status: reason, restarts: restarts_text }
}
