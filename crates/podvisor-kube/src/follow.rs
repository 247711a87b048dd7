//! Following pods through an API as `podvisor run` follows its own: the lifecycle steps a pod
//! went through, read from the difference between two readings of its status (a watch gives
//! one reading per change) and from its events. Pure: readings in, steps out.
//!
//! What an API shows is less than what a node sees: a container's start and its end (with the
//! exit code and reason), a startupProbe passing (`started`), the pod's phase, and the
//! kubelet's events (`Killing` is the stop signal, `Unhealthy` a failed probe, `BackOff`).

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{ContainerStatus, Event, Pod};

/// One lifecycle step of a pod, as far as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// A container's process started; `attempt` is its restart count.
    Started {
        /// The container.
        container: String,
        /// Its restart count.
        attempt: u32,
    },
    /// A container's startupProbe passed (it is `started`).
    StartupPassed {
        /// The container.
        container: String,
    },
    /// A container's process ended.
    Exited {
        /// The container.
        container: String,
        /// The restart count of the instance that ended.
        attempt: u32,
        /// Its exit code.
        exit_code: i32,
        /// `Completed`, `Error`, `OOMKilled`, …
        reason: String,
    },
    /// The kubelet stopped a container (its `Killing` event): the stop signal was sent.
    Stopping {
        /// The container.
        container: String,
        /// The event's message.
        message: String,
    },
    /// An event of the pod other than `Killing`.
    Event {
        /// `Normal` or `Warning`.
        kind: String,
        /// The event's reason.
        reason: String,
        /// Its message.
        message: String,
    },
    /// The pod's phase changed.
    Phase {
        /// The new phase.
        phase: String,
    },
}

/// The container statuses of a pod, init containers first, by name.
fn statuses(pod: &Pod) -> Vec<&ContainerStatus> {
    let status = pod.status.as_ref();
    let inits = status.and_then(|s| s.init_container_statuses.as_deref()).unwrap_or_default();
    let regular = status.and_then(|s| s.container_statuses.as_deref()).unwrap_or_default();
    inits.iter().chain(regular).collect()
}

/// Whether `container` of `pod` has a startupProbe.
fn has_startup_probe(pod: &Pod, container: &str) -> bool {
    let Some(spec) = pod.spec.as_ref() else { return false };
    spec.init_containers
        .iter()
        .flatten()
        .chain(&spec.containers)
        .any(|c| c.name == container && c.startup_probe.is_some())
}

/// When the running instance of `s` started, if it runs.
fn running_since(s: &ContainerStatus) -> Option<Timestamp> {
    Some(s.state.as_ref()?.running.as_ref()?.started_at.as_ref()?.0)
}

/// The end of the current instance of `s` (exit code, reason, when), if it has ended.
fn ended(s: &ContainerStatus) -> Option<(i32, String, Option<Timestamp>)> {
    let t = s.state.as_ref()?.terminated.as_ref()?;
    Some((t.exit_code, t.reason.clone().unwrap_or_default(), t.finished_at.as_ref().map(|f| f.0)))
}

/// The end of the previous instance of `s`, if there was one.
fn last_ended(s: &ContainerStatus) -> Option<(i32, String, Option<Timestamp>)> {
    let t = s.last_state.as_ref()?.terminated.as_ref()?;
    Some((t.exit_code, t.reason.clone().unwrap_or_default(), t.finished_at.as_ref().map(|f| f.0)))
}

fn attempt(s: &ContainerStatus) -> u32 {
    u32::try_from(s.restart_count).unwrap_or(0)
}

/// The steps between two readings of a pod's status (`before` is `None` for the first): starts,
/// startup probes passed, ends (the previous instance's too, when a restart happened between the
/// readings), and the phase. In the order they happened where the status says when.
pub fn diff(before: Option<&Pod>, now: &Pod) -> Vec<Step> {
    let mut steps: Vec<(Option<Timestamp>, Step)> = Vec::new();
    let old = before.map(statuses).unwrap_or_default();
    for s in statuses(now) {
        let was = old.iter().find(|o| o.name == s.name);
        let old_attempt = was.map(|w| attempt(w));
        let restarted = old_attempt.is_some_and(|a| attempt(s) > a);
        // The instance that ended between the readings, when a restart hid it.
        if restarted
            && was.is_none_or(|w| ended(w).is_none())
            && let Some((code, reason, at)) = last_ended(s)
        {
            let container = s.name.clone();
            steps.push((at, Step::Exited { container, attempt: attempt(s) - 1, exit_code: code, reason }));
        }
        if let Some(since) = running_since(s) {
            let same = was.and_then(|w| running_since(w)) == Some(since);
            if !same {
                steps.push((Some(since), Step::Started { container: s.name.clone(), attempt: attempt(s) }));
            }
        }
        let now_started = s.started == Some(true);
        let was_started = was.is_some_and(|w| w.started == Some(true) && attempt(w) == attempt(s));
        if now_started && !was_started && has_startup_probe(now, &s.name) {
            steps.push((None, Step::StartupPassed { container: s.name.clone() }));
        }
        if let Some((code, reason, at)) = ended(s) {
            let seen = was.is_some_and(|w| ended(w).is_some() && attempt(w) == attempt(s));
            if !seen {
                let container = s.name.clone();
                steps.push((at, Step::Exited { container, attempt: attempt(s), exit_code: code, reason }));
            }
        }
    }
    // Stable: steps without a time keep their place after what came before them.
    let mut ordered: Vec<(usize, (Option<Timestamp>, Step))> = steps.into_iter().enumerate().collect();
    let mut last = None;
    for (_, (at, _)) in ordered.iter_mut() {
        match at {
            Some(t) => last = Some(*t),
            None => *at = last,
        }
    }
    ordered.sort_by_key(|(i, (at, _))| (*at, *i));
    let mut out: Vec<Step> = ordered.into_iter().map(|(_, (_, s))| s).collect();
    let phase = |p: &Pod| p.status.as_ref().and_then(|s| s.phase.clone());
    if let Some(p) = phase(now)
        && before.and_then(phase) != Some(p.clone())
    {
        out.push(Step::Phase { phase: p });
    }
    out
}

/// The step an event of a pod stands for: `Killing` is the stop of the container its
/// `fieldPath` names; the others are events as they are.
pub fn event_step(e: &Event) -> Step {
    let reason = e.reason.clone().unwrap_or_default();
    let message = e.message.clone().unwrap_or_default();
    let container = e.involved_object.field_path.as_deref().and_then(|p| {
        let inner = p.strip_suffix('}')?;
        Some(inner[inner.find('{')? + 1..].to_string())
    });
    match container {
        Some(container) if reason == "Killing" => Step::Stopping { container, message },
        _ => Step::Event { kind: e.type_.clone().unwrap_or_else(|| "Normal".into()), reason, message },
    }
}

/// What a pod went through, read afterwards from one reading of its status and its events: each
/// container's current and previous instance (started, ended), the events with their times
/// (`Killing` as the stop signal), and the phase: `Pending` at the pod's start, `Running` at the
/// first container's start, the final phase at the last end. Sorted by time. Startup probes
/// passing leave no time in the status and are left out.
pub fn history(pod: &Pod, events: &[Event]) -> Vec<(Timestamp, Step)> {
    let mut out: Vec<(Timestamp, Step)> = Vec::new();
    for s in statuses(pod) {
        let a = attempt(s);
        if let Some(t) = s.last_state.as_ref().and_then(|l| l.terminated.as_ref()) {
            let previous = a.saturating_sub(1);
            if let Some(start) = &t.started_at {
                out.push((start.0, Step::Started { container: s.name.clone(), attempt: previous }));
            }
            if let Some(end) = &t.finished_at {
                let (exit_code, reason) = (t.exit_code, t.reason.clone().unwrap_or_default());
                out.push((end.0, Step::Exited { container: s.name.clone(), attempt: previous, exit_code, reason }));
            }
        }
        let state = s.state.as_ref();
        let started = running_since(s).or_else(|| state?.terminated.as_ref()?.started_at.as_ref().map(|t| t.0));
        if let Some(at) = started {
            out.push((at, Step::Started { container: s.name.clone(), attempt: a }));
        }
        if let Some((exit_code, reason, Some(at))) = ended(s) {
            out.push((at, Step::Exited { container: s.name.clone(), attempt: a, exit_code, reason }));
        }
    }
    for e in events {
        let at = e.event_time.as_ref().map(|t| t.0).or(e.last_timestamp.as_ref().map(|t| t.0));
        if let Some(at) = at {
            out.push((at, event_step(e)));
        }
    }
    out.sort_by_key(|(at, _)| *at);
    let status = pod.status.as_ref();
    if let Some(start) = status.and_then(|s| s.start_time.as_ref()) {
        out.insert(0, (start.0, Step::Phase { phase: "Pending".into() }));
    }
    if let Some(first) = out.iter().find(|(_, s)| matches!(s, Step::Started { .. })).map(|(at, _)| *at) {
        let i = out.iter().position(|(at, _)| *at > first).unwrap_or(out.len());
        out.insert(i, (first, Step::Phase { phase: "Running".into() }));
    }
    if is_finished(pod)
        && let Some(last) = out.iter().rev().find(|(_, s)| matches!(s, Step::Exited { .. })).map(|(at, _)| *at)
    {
        let phase = status.and_then(|s| s.phase.clone()).unwrap_or_default();
        out.push((last, Step::Phase { phase }));
    }
    out
}

/// Whether the pod has ended (`Succeeded` or `Failed`).
pub fn is_finished(pod: &Pod) -> bool {
    matches!(pod.status.as_ref().and_then(|s| s.phase.as_deref()), Some("Succeeded" | "Failed"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(json: serde_json::Value) -> Pod {
        serde_json::from_value(json).unwrap()
    }

    fn running(name: &str, at: &str, restarts: i32) -> serde_json::Value {
        serde_json::json!({"name": name, "image": "i", "imageID": "", "ready": true, "restartCount": restarts,
            "started": true, "state": {"running": {"startedAt": at}}})
    }

    fn base(inits: Vec<serde_json::Value>, regular: Vec<serde_json::Value>, phase: &str) -> Pod {
        pod(serde_json::json!({
            "metadata": {"name": "p"},
            "spec": {"initContainers": [{"name": "side", "restartPolicy": "Always",
                        "startupProbe": {"exec": {"command": ["true"]}}}],
                     "containers": [{"name": "app"}]},
            "status": {"phase": phase, "initContainerStatuses": inits, "containerStatuses": regular}
        }))
    }

    #[test]
    fn starts_startup_probes_ends_and_phases_are_read_from_two_readings() {
        let first = base(vec![running("side", "2026-01-01T00:00:01Z", 0)], vec![], "Pending");
        assert_eq!(
            diff(None, &first),
            [
                Step::Started { container: "side".into(), attempt: 0 },
                Step::StartupPassed { container: "side".into() },
                Step::Phase { phase: "Pending".into() }
            ]
        );
        let second = base(
            vec![running("side", "2026-01-01T00:00:01Z", 0)],
            vec![running("app", "2026-01-01T00:00:02Z", 0)],
            "Running",
        );
        assert_eq!(
            diff(Some(&first), &second),
            [Step::Started { container: "app".into(), attempt: 0 }, Step::Phase { phase: "Running".into() }]
        );
        let mut app_done = running("app", "2026-01-01T00:00:02Z", 0);
        app_done["state"] = serde_json::json!({"terminated": {"exitCode": 0, "reason": "Completed",
            "startedAt": "2026-01-01T00:00:02Z", "finishedAt": "2026-01-01T00:00:07Z"}});
        let third = base(vec![running("side", "2026-01-01T00:00:01Z", 0)], vec![app_done], "Running");
        assert_eq!(
            diff(Some(&second), &third),
            [Step::Exited { container: "app".into(), attempt: 0, exit_code: 0, reason: "Completed".into() }]
        );
        assert!(diff(Some(&third), &third).is_empty(), "nothing new, nothing said");
    }

    /// A restart between two readings: the ended instance (from lastState) and the new start.
    #[test]
    fn a_restart_between_readings_gives_the_end_of_the_instance_before_it() {
        let first = base(vec![running("side", "2026-01-01T00:00:01Z", 0)], vec![], "Pending");
        let mut again = running("side", "2026-01-01T00:00:12Z", 1);
        again["lastState"] = serde_json::json!({"terminated": {"exitCode": 3, "reason": "Error",
            "startedAt": "2026-01-01T00:00:01Z", "finishedAt": "2026-01-01T00:00:02Z"}});
        let second = base(vec![again], vec![], "Pending");
        assert_eq!(
            diff(Some(&first), &second),
            [
                Step::Exited { container: "side".into(), attempt: 0, exit_code: 3, reason: "Error".into() },
                Step::Started { container: "side".into(), attempt: 1 },
                Step::StartupPassed { container: "side".into() },
            ]
        );
    }

    #[test]
    fn a_pods_history_is_read_from_its_status_and_events_in_time_order() {
        let mut done = running("app", "2026-01-01T00:00:02Z", 0);
        done["state"] = serde_json::json!({"terminated": {"exitCode": 0, "reason": "Completed",
            "startedAt": "2026-01-01T00:00:02Z", "finishedAt": "2026-01-01T00:00:07Z"}});
        let mut side = running("side", "2026-01-01T00:00:01Z", 1);
        side["state"] = serde_json::json!({"terminated": {"exitCode": 137, "reason": "Error",
            "startedAt": "2026-01-01T00:00:01.5Z", "finishedAt": "2026-01-01T00:00:09Z"}});
        side["lastState"] = serde_json::json!({"terminated": {"exitCode": 1, "reason": "Error",
            "startedAt": "2026-01-01T00:00:00.5Z", "finishedAt": "2026-01-01T00:00:01Z"}});
        let mut pod = base(vec![side], vec![done], "Succeeded");
        pod.status.as_mut().unwrap().start_time =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time("2026-01-01T00:00:00Z".parse().unwrap()));
        let kill: Event = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "e"}, "reason": "Killing", "message": "Stopping container side", "type": "Normal",
            "lastTimestamp": "2026-01-01T00:00:07Z",
            "involvedObject": {"kind": "Pod", "name": "p", "fieldPath": "spec.initContainers{side}"}
        }))
        .unwrap();
        let steps: Vec<String> = history(&pod, &[kill]).into_iter().map(|(_, s)| format!("{s:?}")).collect();
        let expected = [
            "Phase { phase: \"Pending\" }",
            "Started { container: \"side\", attempt: 0 }",
            "Phase { phase: \"Running\" }",
            "Exited { container: \"side\", attempt: 0, exit_code: 1, reason: \"Error\" }",
            "Started { container: \"side\", attempt: 1 }",
            "Started { container: \"app\", attempt: 0 }",
            "Exited { container: \"app\", attempt: 0, exit_code: 0, reason: \"Completed\" }",
            "Stopping { container: \"side\", message: \"Stopping container side\" }",
            "Exited { container: \"side\", attempt: 1, exit_code: 137, reason: \"Error\" }",
            "Phase { phase: \"Succeeded\" }",
        ];
        assert_eq!(steps, expected);
    }

    #[test]
    fn a_killing_event_is_the_stop_of_the_container_its_field_path_names() {
        let e: Event = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "e"}, "reason": "Killing", "message": "Stopping container side", "type": "Normal",
            "involvedObject": {"kind": "Pod", "name": "p", "fieldPath": "spec.initContainers{side}"}
        }))
        .unwrap();
        assert_eq!(
            event_step(&e),
            Step::Stopping { container: "side".into(), message: "Stopping container side".into() }
        );
    }
}
