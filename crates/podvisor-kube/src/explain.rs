//! `explain`: why a pod is where it is and what happens next, read from its spec, its status
//! and its events as the kubelet's rules decide them (the numbers are the sidecar spec's), never
//! guessed from names. A pure function of the objects and the time.

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Container, ContainerStatus, Event, Pod};

/// What `explain` says: one headline, then the details that support it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Explanation {
    /// Where the pod is, in one sentence.
    pub headline: String,
    /// Why, and what comes next.
    pub details: Vec<String>,
}

impl std::fmt::Display for Explanation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "{}", self.headline)?;
        for d in &self.details {
            writeln!(f, "  - {d}")?;
        }
        Ok(())
    }
}

fn event_time(e: &Event) -> Option<Timestamp> {
    e.last_timestamp
        .as_ref()
        .map(|t| t.0)
        .or_else(|| e.event_time.as_ref().map(|t| t.0))
        .or_else(|| e.first_timestamp.as_ref().map(|t| t.0))
}

/// The events about `container` (by the API's field path) with `reason`, oldest first.
fn events_of<'a>(events: &'a [Event], container: &str, reason: &str) -> Vec<&'a Event> {
    let mut out: Vec<&Event> = events
        .iter()
        .filter(|e| e.reason.as_deref() == Some(reason))
        .filter(|e| {
            e.involved_object.field_path.as_deref().is_some_and(|p| p.ends_with(&format!("{{{container}}}")))
                || e.message.as_deref().is_some_and(|m| m.contains(&format!("container {container}")))
        })
        .collect();
    out.sort_by_key(|e| event_time(e));
    out
}

fn count(e: &Event) -> i64 {
    i64::from(e.count.unwrap_or(1).max(1))
}

fn seconds(s: f64) -> String {
    if s < 10.0 { format!("{s:.1} s") } else { format!("{s:.0} s") }
}

/// The role of a container, as the spec's words name it.
fn role(list: &str, c: &Container) -> &'static str {
    match (list, c.restart_policy.as_deref()) {
        ("initContainers", Some("Always")) => "sidecar",
        ("initContainers", _) => "init container",
        _ => "container",
    }
}

fn status_of<'a>(statuses: Option<&'a Vec<ContainerStatus>>, name: &str) -> Option<&'a ContainerStatus> {
    statuses?.iter().find(|s| s.name == name)
}

/// Why a waiting container waits, in words (`None` when it is not waiting).
fn waiting(c: &Container, kind: &str, st: &ContainerStatus, events: &[Event]) -> Option<String> {
    let w = st.state.as_ref()?.waiting.as_ref()?;
    let reason = w.reason.as_deref().unwrap_or("");
    let message = w.message.as_deref().unwrap_or("").trim();
    Some(match reason {
        "ImagePullBackOff" | "ErrImagePull" | "InvalidImageName" => {
            // The kubelet says why in its "Failed to pull image" event; its "Error: …" one only
            // repeats the reason.
            let failed = events_of(events, &c.name, "Failed");
            let pulls: Vec<&&Event> = failed
                .iter()
                .filter(|e| e.message.as_deref().is_some_and(|m| m.starts_with("Failed to pull image")))
                .collect();
            let failures: i64 = pulls.iter().map(|e| count(e)).sum();
            let why = pulls.last().and_then(|e| e.message.clone()).unwrap_or_else(|| message.to_string());
            format!(
                "{kind} {} cannot start: its image {} cannot be pulled ({reason}{}): {why}. The kubelet tries again \
                 with a back-off that doubles up to 5 minutes (R22).",
                c.name,
                c.image.as_deref().unwrap_or("?"),
                if failures > 0 { format!(", {failures} failed pulls") } else { String::new() }
            )
        }
        "CrashLoopBackOff" => {
            let last = st.last_state.as_ref().and_then(|s| s.terminated.as_ref());
            let exit = last
                .map(|t| format!("last exit code {} ({})", t.exit_code, t.reason.as_deref().unwrap_or("Error")))
                .unwrap_or_else(|| "no exit recorded".into());
            format!(
                "{kind} {} keeps crashing: {} restart{}, {exit}. It is restarted after a back-off that doubles from \
                 10 s up to 5 minutes (R26){}",
                c.name,
                st.restart_count,
                if st.restart_count == 1 { "" } else { "s" },
                if message.is_empty() { ".".into() } else { format!(": {message}.") }
            )
        }
        "CreateContainerConfigError" | "CreateContainerError" => {
            format!("{kind} {} cannot be created ({reason}): {message}. It is tried again on every sync.", c.name)
        }
        "PodInitializing" | "ContainerCreating" => format!("{kind} {} has not been started yet ({reason}).", c.name),
        other => format!(
            "{kind} {} is waiting ({other}){}",
            c.name,
            if message.is_empty() { String::new() } else { format!(": {message}") }
        ),
    })
}

/// Why a sidecar that runs is not started yet: its startup probe or its postStart hook.
fn not_started(c: &Container, st: &ContainerStatus, events: &[Event]) -> Option<String> {
    let running = st.state.as_ref()?.running.as_ref()?;
    if st.started == Some(true) {
        return None;
    }
    if let Some(p) = &c.startup_probe {
        let failed: Vec<&Event> = events_of(events, &c.name, "Unhealthy")
            .into_iter()
            .filter(|e| e.message.as_deref().is_some_and(|m| m.starts_with("Startup probe failed")))
            .collect();
        let threshold = i64::from(p.failure_threshold.unwrap_or(3).max(1));
        // Each restart used up a full run of failures; the events count them all together.
        let total: i64 = failed.iter().map(|e| count(e)).sum();
        let n = (total - i64::from(st.restart_count.max(0)).saturating_mul(threshold)).max(0);
        let period = i64::from(p.period_seconds.unwrap_or(10).max(1));
        let last = failed
            .last()
            .and_then(|e| e.message.as_deref())
            .map(|m| m.trim_start_matches("Startup probe failed: ").trim().to_string());
        let left = (threshold - n).max(0);
        return Some(if n == 0 {
            format!(
                "it waits for sidecar {}'s startupProbe, which has not passed yet (up to {threshold} tries, every {period} s) (R16, R18)",
                c.name
            )
        } else {
            format!(
                "it waits for sidecar {}'s startupProbe (failed {n} time{}{}); after {left} more failure{} (about {} s) the \
                 sidecar is restarted and the wait begins again (R18, R32)",
                c.name,
                if n == 1 { "" } else { "s" },
                last.map(|m| format!(": {m}")).unwrap_or_default(),
                if left == 1 { "" } else { "s" },
                left * period
            )
        });
    }
    if c.lifecycle.as_ref().and_then(|l| l.post_start.as_ref()).is_some() {
        let since = running.started_at.as_ref().map(|t| format!(" since {}", t.0)).unwrap_or_default();
        return Some(format!("it waits for sidecar {}'s postStart hook to return{since} (R19)", c.name));
    }
    None
}

/// Explains `pod` at `now`, from its spec, status and `events`.
pub fn explain(pod: &Pod, events: &[Event], now: Timestamp) -> Explanation {
    let name = pod.metadata.name.clone().unwrap_or_default();
    let spec = pod.spec.clone().unwrap_or_default();
    let status = pod.status.clone().unwrap_or_default();
    let phase = status.phase.clone().unwrap_or_else(|| "Pending".into());
    let grace = spec.termination_grace_period_seconds.unwrap_or(30);
    let init_st = status.init_container_statuses.as_ref();
    let app_st = status.container_statuses.as_ref();
    let mut details = Vec::new();
    let running = |st: Option<&ContainerStatus>| st.and_then(|s| s.state.as_ref()).is_some_and(|s| s.running.is_some());

    // Being deleted: what still runs, and when it will be killed.
    if let Some(deadline) = pod.metadata.deletion_timestamp.as_ref().map(|t| t.0) {
        let left = deadline.duration_since(now).as_secs_f64().max(0.0);
        let mut still = Vec::new();
        for (list, c) in spec
            .init_containers
            .iter()
            .flatten()
            .map(|c| ("initContainers", c))
            .chain(spec.containers.iter().map(|c| ("containers", c)))
        {
            let st = if list == "containers" { status_of(app_st, &c.name) } else { status_of(init_st, &c.name) };
            if !running(st) {
                continue;
            }
            still.push(c.name.clone());
            let kind = role(list, c);
            if podvisor_lint::shell_ignores_sigterm(c) {
                details.push(format!(
                    "{kind} {} still runs after SIGTERM: its PID 1 is a shell without a trap, which ignores SIGTERM (lint \
                     PV004), so it will be killed when the grace period ends, in {} (R42).",
                    c.name,
                    seconds(left)
                ));
            } else {
                details.push(format!(
                    "{kind} {} has been sent SIGTERM (or waits for the containers stopped before it, R43) and has {} left to \
                     exit before SIGKILL.",
                    c.name,
                    seconds(left)
                ));
            }
        }
        let headline = if still.is_empty() {
            format!("pod {name} is being deleted: its containers have stopped; it goes once the node has cleaned up.")
        } else {
            format!(
                "pod {name} is terminating: {} still running, killed at the latest in {} (grace period {grace} s).",
                still.join(", "),
                seconds(left)
            )
        };
        return Explanation { headline, details };
    }

    if phase == "Succeeded" || phase == "Failed" {
        for c in spec.init_containers.iter().flatten().chain(&spec.containers) {
            let st = status_of(init_st, &c.name).or_else(|| status_of(app_st, &c.name));
            if let Some(t) = st.and_then(|s| s.state.as_ref()).and_then(|s| s.terminated.as_ref()) {
                details.push(format!("{} exited {} ({})", c.name, t.exit_code, t.reason.as_deref().unwrap_or("")));
            }
        }
        let why = status
            .reason
            .as_deref()
            .map(|r| format!(" ({r}{})", status.message.as_deref().map(|m| format!(": {m}")).unwrap_or_default()))
            .unwrap_or_default();
        return Explanation { headline: format!("pod {name} has ended: {phase}{why}."), details };
    }

    // Initialization, in order (R14, R16): the first init container that holds the rest. Once
    // the pod is initialized (a regular container has run), init containers hold nothing: a
    // sidecar that crashes then is restarted alone (R25, R27).
    let inits: Vec<&Container> = spec.init_containers.iter().flatten().collect();
    let initialized = status.conditions.iter().flatten().any(|c| c.type_ == "Initialized" && c.status == "True")
        || app_st
            .into_iter()
            .flatten()
            .any(|s| s.state.as_ref().is_some_and(|st| st.running.is_some() || st.terminated.is_some()));
    if initialized {
        for c in inits.iter().filter(|c| role("initContainers", c) == "sidecar") {
            if let Some(why) = status_of(init_st, &c.name).and_then(|st| waiting(c, "sidecar", st, events)) {
                details.push(format!("{why} Its restarts do not restart or hold back the other containers (R27)."));
            }
        }
    }
    let next_after = |i: usize| {
        inits
            .get(i + 1)
            .map(|c| c.name.clone())
            .or_else(|| spec.containers.first().map(|c| c.name.clone()))
            .unwrap_or_default()
    };
    for (i, c) in inits.iter().enumerate().filter(|_| !initialized) {
        let kind = role("initContainers", c);
        let Some(st) = status_of(init_st, &c.name) else {
            return Explanation {
                headline: format!("pod {name} is {phase}: {kind} {} has not been created yet.", c.name),
                details,
            };
        };
        if let Some(why) = waiting(c, kind, st, events) {
            let headline = format!("pod {name} is {phase}: {} and what comes after it waits (R16).", next_after(i));
            details.push(why);
            return Explanation { headline, details };
        }
        let state = st.state.clone().unwrap_or_default();
        if kind == "sidecar" {
            if let Some(why) = not_started(c, st, events) {
                let headline = format!("pod {name} is {phase}: {} has not started: {why}.", next_after(i));
                if st.restart_count > 0 {
                    details.push(format!("{} has been restarted {} times.", c.name, st.restart_count));
                }
                return Explanation { headline, details };
            }
            if !st.ready && c.readiness_probe.is_some() {
                details.push(format!(
                    "sidecar {} is started but not ready: its readinessProbe holds nothing back (R17); it only keeps the pod out of Ready.",
                    c.name
                ));
            }
            continue;
        }
        if let Some(t) = state.terminated {
            if t.exit_code == 0 {
                continue;
            }
            let headline = format!("pod {name} is {phase}: init container {} failed (exit {}).", c.name, t.exit_code);
            let next = if spec.restart_policy.as_deref() == Some("Never") {
                "with restartPolicy Never the pod fails (R20)".to_string()
            } else {
                "it is run again after a back-off; nothing after it starts until it exits 0 (R20, R26)".to_string()
            };
            details.push(next);
            return Explanation { headline, details };
        }
        if state.running.is_some() {
            let headline = format!(
                "pod {name} is {phase}: init container {} is running; {} starts when it exits 0 (R14).",
                c.name,
                next_after(i)
            );
            return Explanation { headline, details };
        }
    }

    // The regular containers.
    let mut exited = Vec::new();
    for c in &spec.containers {
        let Some(st) = status_of(app_st, &c.name) else { continue };
        if let Some(why) = waiting(c, "container", st, events) {
            details.push(why);
            continue;
        }
        let state = st.state.clone().unwrap_or_default();
        if let Some(t) = state.terminated {
            exited.push(format!("{} exited {} ({})", c.name, t.exit_code, t.reason.as_deref().unwrap_or("")));
        } else if state.running.is_some() && !st.ready {
            details.push(format!("container {} runs but is not ready.", c.name));
        }
    }
    let all_exited = !spec.containers.is_empty() && exited.len() == spec.containers.len();
    let sidecars_running: Vec<&Container> = inits
        .iter()
        .copied()
        .filter(|c| role("initContainers", c) == "sidecar" && running(status_of(init_st, &c.name)))
        .collect();
    if all_exited && !sidecars_running.is_empty() {
        // R36–R38: the regular containers are done; the sidecars are stopped in reverse order.
        let mut lines = Vec::new();
        for c in sidecars_running.iter().rev() {
            let killing = events_of(events, &c.name, "Killing").last().and_then(|e| event_time(e));
            let when = killing.map(|t| {
                let left = (t.as_second() + grace - now.as_second()).max(0);
                format!(
                    "got SIGTERM {} ago; killed in {} at the latest",
                    seconds(now.duration_since(t).as_secs_f64().max(0.0)),
                    seconds(left as f64)
                )
            });
            let shell = if podvisor_lint::shell_ignores_sigterm(c) {
                " (its PID 1 is a shell without a trap: it ignores SIGTERM and will run until SIGKILL, lint PV004)"
            } else {
                ""
            };
            lines.push(format!("sidecar {} {}{shell}", c.name, when.unwrap_or_else(|| "is being stopped".into())));
        }
        let headline = format!(
            "pod {name} is {phase}: its work is done ({}); it is stopping its sidecars, in reverse order, within one grace period of {grace} s (R36, R43, R45).",
            exited.join(", ")
        );
        details.extend(lines);
        details.push("the pod turns Succeeded or Failed, and a Job counts it, once they have stopped (R38).".into());
        return Explanation { headline, details };
    }
    let ready =
        status.conditions.iter().flatten().find(|c| c.type_ == "Ready").map(|c| c.status == "True").unwrap_or(false);
    let headline = match details.as_slice() {
        [] => format!("pod {name} is {phase}{}.", if ready { " and Ready" } else { "" }),
        [only] => {
            let (first, rest) = only
                .split_once(". ")
                .map(|(a, b)| (format!("{a}."), b.to_string()))
                .unwrap_or((only.clone(), String::new()));
            details = if rest.is_empty() { Vec::new() } else { vec![rest] };
            format!("pod {name} is {phase}: {first}")
        }
        _ => format!("pod {name} is {phase}, with containers that need attention."),
    };
    details.extend(exited);
    Explanation { headline, details }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn pod(spec: Value, status: Value) -> Pod {
        serde_json::from_value(
            json!({"metadata": {"name": "p", "namespace": "default"}, "spec": spec, "status": status}),
        )
        .unwrap()
    }

    fn event(reason: &str, container: &str, message: &str, count: i32, at: &str) -> Event {
        serde_json::from_value(json!({"metadata": {"name": "e"}, "reason": reason, "message": message, "count": count,
            "lastTimestamp": at,
            "involvedObject": {"kind": "Pod", "name": "p", "fieldPath": format!("spec.initContainers{{{container}}}")}}))
        .unwrap()
    }

    fn now() -> Timestamp {
        "2026-01-01T00:01:00Z".parse().unwrap()
    }

    #[test]
    fn a_failing_startup_probe_holds_the_app_and_says_how_many_tries_are_left() {
        let p = pod(
            json!({"initContainers": [{"name": "proxy", "image": "x", "restartPolicy": "Always",
                    "startupProbe": {"tcpSocket": {"port": 5432}, "failureThreshold": 30, "periodSeconds": 1}}],
                   "containers": [{"name": "app", "image": "y"}]}),
            json!({"phase": "Pending", "initContainerStatuses": [{"name": "proxy", "image": "x", "imageID": "", "ready": false,
                    "restartCount": 0, "started": false, "state": {"running": {"startedAt": "2026-01-01T00:00:50Z"}}}],
                   "containerStatuses": [{"name": "app", "image": "y", "imageID": "", "ready": false, "restartCount": 0,
                    "state": {"waiting": {"reason": "PodInitializing"}}}]}),
        );
        let ev = [event(
            "Unhealthy",
            "proxy",
            "Startup probe failed: dial tcp 10.244.0.5:5432: connect: connection refused",
            3,
            "2026-01-01T00:00:59Z",
        )];
        let e = explain(&p, &ev, now());
        assert_eq!(
            e.headline,
            "pod p is Pending: app has not started: it waits for sidecar proxy's startupProbe (failed 3 times: dial tcp \
             10.244.0.5:5432: connect: connection refused); after 27 more failures (about 27 s) the sidecar is restarted \
             and the wait begins again (R18, R32)."
        );
    }

    #[test]
    fn a_sidecar_in_crash_loop_and_an_image_that_cannot_be_pulled_are_named() {
        let p = pod(
            json!({"initContainers": [{"name": "agent", "image": "x", "restartPolicy": "Always"}], "containers": [{"name": "app", "image": "y"}]}),
            json!({"phase": "Pending", "initContainerStatuses": [{"name": "agent", "image": "x", "imageID": "", "ready": false,
                    "restartCount": 4, "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 40s restarting failed container=agent"}},
                    "lastState": {"terminated": {"exitCode": 1, "reason": "Error"}}}]}),
        );
        let e = explain(&p, &[], now());
        assert_eq!(e.headline, "pod p is Pending: app and what comes after it waits (R16).");
        assert!(e.details[0].starts_with("sidecar agent keeps crashing: 4 restarts, last exit code 1 (Error)"), "{e}");
        let p = pod(
            json!({"containers": [{"name": "app", "image": "nowhere.invalid/app:1"}]}),
            json!({"phase": "Pending", "containerStatuses": [{"name": "app", "image": "nowhere.invalid/app:1", "imageID": "", "ready": false,
                    "restartCount": 0, "state": {"waiting": {"reason": "ImagePullBackOff", "message": "Back-off pulling image"}}}]}),
        );
        let e = explain(&p, &[], now());
        assert_eq!(
            e.headline,
            "pod p is Pending: container app cannot start: its image nowhere.invalid/app:1 cannot be pulled \
             (ImagePullBackOff): Back-off pulling image."
        );
        assert_eq!(e.details, ["The kubelet tries again with a back-off that doubles up to 5 minutes (R22)."]);
    }

    #[test]
    fn a_terminating_shell_and_a_job_pod_stopping_its_sidecar_say_when_they_end() {
        let shell = json!({"name": "log-shipper", "image": "busybox", "restartPolicy": "Always", "command": ["sh", "-c", "while true; do sleep 1; done"]});
        let mut p = pod(
            json!({"terminationGracePeriodSeconds": 30, "initContainers": [shell], "containers": [{"name": "main", "image": "busybox"}]}),
            json!({"phase": "Running", "initContainerStatuses": [{"name": "log-shipper", "image": "busybox", "imageID": "", "ready": true,
                    "restartCount": 0, "started": true, "state": {"running": {}}}],
                   "containerStatuses": [{"name": "main", "image": "busybox", "imageID": "", "ready": false, "restartCount": 0,
                    "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}]}),
        );
        let killing = event("Killing", "log-shipper", "Stopping container log-shipper", 1, "2026-01-01T00:00:54Z");
        let e = explain(&p, &[killing], now());
        assert!(
            e.headline.starts_with(
                "pod p is Running: its work is done (main exited 0 (Completed)); it is stopping its sidecars"
            ),
            "{e}"
        );
        assert!(
            e.details[0].contains("got SIGTERM 6.0 s ago; killed in 24 s at the latest")
                && e.details[0].contains("PV004"),
            "{e}"
        );
        p.metadata.deletion_timestamp =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time("2026-01-01T00:01:20Z".parse().unwrap()));
        let e = explain(&p, &[], now());
        assert_eq!(
            e.headline,
            "pod p is terminating: log-shipper still running, killed at the latest in 20 s (grace period 30 s)."
        );
        assert!(e.details[0].contains("ignores SIGTERM"), "{e}");
    }
}
