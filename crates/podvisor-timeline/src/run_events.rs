//! A run's events (what `podvisor run --timeline FILE.json` writes) read into a timeline.

use std::collections::HashMap;

use serde_json::Value;

use crate::{Kind, Recorder, Timeline};

fn text<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("")
}

/// The timeline of a run's events (the JSON array `--timeline FILE.json` writes), titled
/// `title`. Which containers are init containers and which of those are sidecars is read from
/// `kinds` (pod, container) when given, else from the events: an init container (its events
/// name `spec.initContainers{…}`) still running when a later container starts is a sidecar.
pub fn from_run_events(title: &str, events: &[Value], kinds: &HashMap<(String, String), Kind>) -> Timeline {
    let time = |v: &Value| text(v, "at").parse::<jiff::Timestamp>().ok();
    let start = events.iter().filter_map(time).min();
    let secs = |v: &Value| match (time(v), start) {
        (Some(t), Some(s)) => t.duration_since(s).as_secs_f64(),
        _ => 0.0,
    };
    // Kinds from the events when not given.
    let mut inferred: HashMap<(String, String), Kind> = HashMap::new();
    let mut running: Vec<(String, String)> = Vec::new();
    let mut order: Vec<(String, String)> = Vec::new();
    for e in events {
        let pod = text(e, "pod").to_string();
        let container = text(e, "container").to_string();
        if container.is_empty() {
            continue;
        }
        let key = (pod.clone(), container.clone());
        if !order.contains(&key) {
            order.push(key.clone());
        }
        if text(e, "fieldPath").starts_with("spec.initContainers") {
            inferred.entry(key.clone()).or_insert(Kind::Init);
        }
        match text(e, "type") {
            "started" => {
                // A container starting while an init container of the pod still runs: that
                // one is a sidecar.
                for r in running.iter().filter(|r| r.0 == pod && r.1 != container) {
                    if inferred.get(r) == Some(&Kind::Init) {
                        inferred.insert(r.clone(), Kind::Sidecar);
                    }
                }
                running.push(key);
            }
            "exited" => running.retain(|r| *r != key),
            _ => {}
        }
    }
    let kind_of = |k: &(String, String)| kinds.get(k).or_else(|| inferred.get(k)).copied().unwrap_or(Kind::App);
    // A container with a startup probe or postStart hook is started only when it says so.
    let gated: Vec<(String, String)> = events
        .iter()
        .filter(|e| text(e, "type") == "handler" && matches!(text(e, "handler"), "startupProbe" | "postStart"))
        .map(|e| (text(e, "pod").to_string(), text(e, "container").to_string()))
        .collect();
    let mut r = Recorder::new(title);
    // Rows in the pod's start order: init containers and sidecars first, then the app.
    let mut rows = order.clone();
    rows.sort_by_key(|k| (k.0.clone(), matches!(kind_of(k), Kind::App)));
    for k in &rows {
        r.container(&k.0, &k.1, kind_of(k));
    }
    for e in events {
        let (pod, at) = (text(e, "pod"), secs(e));
        let container = text(e, "container");
        match text(e, "type") {
            "started" => {
                let attempt = u32::try_from(e.get("attempt").and_then(Value::as_u64).unwrap_or(0)).unwrap_or(u32::MAX);
                let gated = gated.contains(&(pod.to_string(), container.to_string()));
                r.started(pod, container, at, attempt, gated);
            }
            "exited" => {
                let code = i32::try_from(e.get("exitCode").and_then(Value::as_i64).unwrap_or(0)).unwrap_or(i32::MAX);
                r.exited(pod, container, at, code, text(e, "reason"));
            }
            "signalled" => r.signalled(pod, container, at, text(e, "signal"), text(e, "why"), None),
            "handler" => {
                let (handler, result) = (text(e, "handler"), text(e, "result"));
                if handler == "startupProbe" && result == "ok" {
                    r.became_started(pod, container, at, "startup probe passed");
                } else if handler == "postStart" && result == "ok" {
                    r.hook(pod, container, at, handler, result);
                    r.became_started(pod, container, at, "postStart hook returned");
                } else {
                    r.hook(pod, container, at, handler, result);
                }
            }
            "event" => {
                let (reason, message) = (text(e, "reason"), text(e, "message"));
                let warning = text(e, "kind") == "Warning";
                let c = e.get("container").and_then(Value::as_str);
                if reason == "Unhealthy" {
                    let kind = message.split_whitespace().next().unwrap_or("").to_lowercase();
                    r.probe(pod, c.unwrap_or(""), at, &kind, false, message);
                } else if !matches!(reason, "Started" | "Created" | "Killing") {
                    r.event(pod, c, at, &format!("{reason}: {message}"), warning);
                }
            }
            "phase" => r.phase(pod, at, text(e, "phase")),
            "finished" => {
                r.phase(pod, at, text(e, "phase"));
                r.finished(pod, at);
            }
            _ => {}
        }
    }
    r.finish()
}
