//! The rules. Each finds one kind of mistake in one pod spec and says it in the kubelet's
//! terms; the numbers (R16, R43…) are those of the kubelet sidecar spec podvisor follows.

use k8s_openapi::api::core::v1::{Container, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::shell;
use crate::workload::{Slot, Workload};
use crate::{Rule, Severity};

/// A manifest the API server would refuse.
pub(crate) const INVALID: Rule = Rule {
    id: "PV000",
    name: "invalid",
    summary: "the manifest does not load or validate; the API server would refuse it",
    severity: Severity::Error,
};

const LEGACY_SIDECAR: Rule = Rule {
    id: "PV001",
    name: "legacy-sidecar",
    summary: "a sidecar written as a regular container",
    severity: Severity::Warning,
};

const READINESS_DOES_NOT_GATE: Rule = Rule {
    id: "PV002",
    name: "readiness-does-not-gate",
    summary: "a sidecar's readinessProbe expected to hold back what starts after it",
    severity: Severity::Warning,
};

const NO_STARTUP_PROBE: Rule = Rule {
    id: "PV003",
    name: "no-startup-probe",
    summary: "a sidecar that later containers connect to at start, with nothing that waits for it",
    severity: Severity::Warning,
};

const PID1_SHELL: Rule = Rule {
    id: "PV004",
    name: "pid1-shell-ignores-sigterm",
    summary: "a shell as PID 1 without a trap: SIGTERM is ignored and stopping waits out the grace period",
    severity: Severity::Warning,
};

const SHUTDOWN_EXCEEDS_GRACE: Rule = Rule {
    id: "PV005",
    name: "shutdown-exceeds-grace",
    summary: "preStop hooks that take longer than the pod's grace period",
    severity: Severity::Warning,
};

const SIDECAR_ORDER: Rule = Rule {
    id: "PV006",
    name: "sidecar-order",
    summary: "a sidecar that uses another sidecar listed after it",
    severity: Severity::Warning,
};

const FAILURE_POLICY_MATCHES_SIDECARS: Rule = Rule {
    id: "PV007",
    name: "failure-policy-matches-sidecars",
    summary: "a podFailurePolicy rule without containerName that matches a stopped sidecar's 137 or 143",
    severity: Severity::Warning,
};

const PROBE_PORT_UNDEFINED: Rule = Rule {
    id: "PV008",
    name: "probe-port-undefined",
    summary: "a probe on a named port the container does not have: it can never pass",
    severity: Severity::Error,
};

/// Every rule, in id order.
pub static RULES: [&Rule; 9] = [
    &INVALID,
    &LEGACY_SIDECAR,
    &READINESS_DOES_NOT_GATE,
    &NO_STARTUP_PROBE,
    &PID1_SHELL,
    &SHUTDOWN_EXCEEDS_GRACE,
    &SIDECAR_ORDER,
    &FAILURE_POLICY_MATCHES_SIDECARS,
    &PROBE_PORT_UNDEFINED,
];

/// A finding before it is placed in a file.
pub(crate) struct Found {
    pub rule: &'static Rule,
    pub severity: Severity,
    pub field: String,
    pub message: String,
    pub fix: String,
}

fn found(rule: &'static Rule, field: String, message: String, fix: &str) -> Found {
    Found { rule, severity: rule.severity, field, message, fix: fix.to_string() }
}

/// Every rule's findings on one pod spec.
pub(crate) fn check(w: &Workload<'_>) -> Vec<Found> {
    let mut out = Vec::new();
    legacy_sidecar(w, &mut out);
    gating(w, &mut out);
    pid1_shell(w, &mut out);
    shutdown_exceeds_grace(w, &mut out);
    sidecar_order(w, &mut out);
    failure_policy(w, &mut out);
    probe_ports(w, &mut out);
    out
}

/// Images and names that are sidecars by trade: log shippers, proxies, secret and service-mesh
/// agents.
const SIDECAR_IMAGES: [&str; 16] = [
    "fluent-bit",
    "fluentd",
    "filebeat",
    "vector",
    "promtail",
    "logstash",
    "otel-collector",
    "opentelemetry-collector",
    "opentelemetry-collector-contrib",
    "envoy",
    "proxyv2",
    "linkerd-proxy",
    "cloud-sql-proxy",
    "oauth2-proxy",
    "vault",
    "consul",
];
const SIDECAR_NAMES: [&str; 9] = [
    "sidecar",
    "log-shipper",
    "logshipper",
    "log-collector",
    "fluent",
    "envoy",
    "istio-proxy",
    "vault-agent",
    "consul-agent",
];

/// The image's name without registry, path or tag (`fluent/fluent-bit:3.1` → `fluent-bit`).
fn image_name(image: &str) -> &str {
    let last = image.rsplit('/').next().unwrap_or(image);
    last.split([':', '@']).next().unwrap_or(last)
}

fn is_proxy(c: &Container) -> bool {
    let image = image_name(c.image.as_deref().unwrap_or(""));
    image.contains("proxy") || image == "envoy" || c.name.contains("proxy") || c.name.contains("envoy")
}

/// Why `c` looks like a sidecar, if it does.
fn sidecar_by_trade(c: &Container) -> Option<String> {
    let image = image_name(c.image.as_deref().unwrap_or(""));
    if SIDECAR_IMAGES.contains(&image) {
        return Some(format!("its image is {image}"));
    }
    if let Some(n) = SIDECAR_NAMES.iter().find(|n| c.name.contains(*n)) {
        return Some(format!("its name says {n}"));
    }
    let args = shell::argv(c).join(" ");
    if args.contains("tail -f") || args.contains("tail -F") {
        return Some("it follows a log file (tail -f)".into());
    }
    None
}

/// The indexes in `containers` of the legacy sidecars of `w` (what `legacy-sidecar` finds).
pub(crate) fn legacy_containers(w: &Workload<'_>) -> Vec<usize> {
    let containers = &w.spec.containers;
    if containers.len() < 2 {
        return Vec::new();
    }
    let traded: Vec<bool> = containers.iter().map(|c| sidecar_by_trade(c).is_some()).collect();
    if traded.iter().all(|t| *t) {
        return Vec::new();
    }
    traded.iter().enumerate().filter(|(_, t)| **t).map(|(i, _)| i).collect()
}

/// The sidecars (index in `initContainers`, name) whose readinessProbe is relied on to hold
/// back what comes after them (what `readiness-does-not-gate` finds).
pub(crate) fn ungated_by_readiness(w: &Workload<'_>) -> Vec<(usize, String)> {
    let slots = w.slots();
    slots
        .iter()
        .enumerate()
        .filter(|(i, s)| {
            s.is_sidecar() && !gates(s.c) && s.c.readiness_probe.is_some() && dependents(&slots, *i).is_some()
        })
        .map(|(_, s)| (s.index, s.c.name.clone()))
        .collect()
}

fn legacy_sidecar(w: &Workload<'_>, out: &mut Vec<Found>) {
    let containers = &w.spec.containers;
    if containers.len() < 2 {
        return;
    }
    let traded: Vec<Option<String>> = containers.iter().map(sidecar_by_trade).collect();
    let Some(main) = containers.iter().zip(&traded).find(|(_, t)| t.is_none()).map(|(c, _)| c) else { return };
    for (i, (c, why)) in containers.iter().zip(&traded).enumerate() {
        let Some(why) = why else { continue };
        let field = format!("{}.containers[{i}]", w.base);
        let fix = "make it a native sidecar: move it to initContainers with `restartPolicy: Always` \
                   (`podvisor migrate` does this)";
        if w.completes {
            let message = format!(
                "{} looks like a sidecar ({why}) but is a regular container beside {}: the pod ends only when \
                 every regular container has exited, and it does not exit on its own, so the {} never completes \
                 (R36, R37). A native sidecar is stopped once the regular containers have exited.",
                c.name,
                main.name,
                if w.job.is_some() { "Job" } else { "pod" }
            );
            out.push(Found { severity: Severity::Error, ..found(&LEGACY_SIDECAR, field, message, fix) });
        } else {
            let message = format!(
                "{} looks like a sidecar ({why}) but is a regular container beside {}: it starts together with \
                 {} instead of before it (R24), and is stopped together with it instead of after it (R43), so \
                 what {} sends it at start and at shutdown can be lost.",
                c.name, main.name, main.name, main.name
            );
            out.push(found(&LEGACY_SIDECAR, field, message, fix));
        }
    }
}

/// Whether a probe or hook makes the next container wait for the sidecar (R16, R18, R19).
fn gates(c: &Container) -> bool {
    c.startup_probe.is_some() || c.lifecycle.as_ref().and_then(|l| l.post_start.as_ref()).is_some()
}

fn probe_port(p: &Probe) -> Option<i32> {
    let port = p.http_get.as_ref().map(|h| &h.port).or(p.tcp_socket.as_ref().map(|t| &t.port));
    match port {
        Some(IntOrString::Int(n)) => Some(*n),
        _ => p.grpc.as_ref().map(|g| g.port),
    }
}

/// What of the later containers depends on the sidecar at `i`, said in words, if anything.
fn dependents(slots: &[Slot<'_>], i: usize) -> Option<String> {
    let sidecar = slots[i].c;
    let mut ports = shell::served_ports(sidecar);
    ports.extend(sidecar.readiness_probe.as_ref().and_then(probe_port));
    for later in &slots[i + 1..] {
        if let Some(p) = shell::loopback_ports(later.c).into_iter().find(|p| ports.contains(p)) {
            return Some(format!("{} connects to it (localhost:{p})", later.c.name));
        }
    }
    if let Some(init) = slots[i + 1..].iter().find(|s| s.list == "initContainers" && !s.is_sidecar()) {
        return Some(format!("the init container {} runs after it", init.c.name));
    }
    if is_proxy(sidecar)
        && let Some(app) = slots[i + 1..].iter().find(|s| s.list == "containers")
    {
        return Some(format!("{} goes through the proxy", app.c.name));
    }
    None
}

const GATE_FIX: &str = "add a startupProbe (the same check as the readinessProbe will do) or a postStart hook that \
                        returns once it serves: the next container then waits for it";

fn gating(w: &Workload<'_>, out: &mut Vec<Found>) {
    let slots = w.slots();
    for (i, s) in slots.iter().enumerate() {
        if !s.is_sidecar() || gates(s.c) {
            continue;
        }
        let Some(why) = dependents(&slots, i) else { continue };
        let next = slots.get(i + 1).map(|n| n.c.name.as_str()).unwrap_or("");
        if s.c.readiness_probe.is_some() {
            let message = format!(
                "{}'s readinessProbe does not hold back what starts after it: {next} starts as soon as {} is \
                 running, ready or not; only a startupProbe or a postStart hook makes the next container wait \
                 (R16, R17). Here {why}.",
                s.c.name, s.c.name
            );
            out.push(found(&READINESS_DOES_NOT_GATE, format!("{}.readinessProbe", s.path(w.base)), message, GATE_FIX));
        } else if why.contains("localhost:") && s.c.liveness_probe.is_none() {
            let message = format!(
                "{why}, but nothing waits for {} to serve: {next} starts as soon as {} is running (R16), \
                 and may find nothing listening yet.",
                s.c.name, s.c.name
            );
            out.push(found(&NO_STARTUP_PROBE, s.path(w.base), message, GATE_FIX));
        }
    }
}

fn pid1_shell(w: &Workload<'_>, out: &mut Vec<Found>) {
    for s in w.slots() {
        // Containers that are stopped while they run: sidecars always; regular containers of
        // pods that keep running. Regular init containers, and the work of a pod meant to
        // end, exit on their own.
        let stopped = s.is_sidecar() || (s.list == "containers" && !w.completes);
        if !stopped {
            continue;
        }
        let Some(script) = shell::pid1_script(s.c) else { continue };
        if !shell::ignores_sigterm(script) {
            continue;
        }
        let when = if s.is_sidecar() { "every time the pod stops" } else { "at every stop (a delete, a rollout)" };
        let message = format!(
            "{} runs a shell script as PID 1 without a trap: PID 1 ignores SIGTERM unless it handles it, so \
             {when} it is killed only at the end of the grace period, {} s later (R42).",
            s.c.name,
            w.grace()
        );
        let fix = "`exec` the long-running command, or add `trap 'exit 0' TERM` and run the work in the background \
                   followed by `wait`";
        out.push(found(&PID1_SHELL, format!("{}.command", s.path(w.base)), message, fix));
    }
}

/// How long a container's preStop hook takes at least, if that can be read.
fn pre_stop_seconds(c: &Container) -> Option<i64> {
    let hook = c.lifecycle.as_ref()?.pre_stop.as_ref()?;
    if let Some(s) = &hook.sleep {
        return Some(s.seconds);
    }
    shell::sleep_seconds(hook.exec.as_ref()?.command.as_deref()?)
}

fn shutdown_exceeds_grace(w: &Workload<'_>, out: &mut Vec<Found>) {
    let grace = w.grace();
    let slots = w.slots();
    let fix = "raise terminationGracePeriodSeconds above the shutdown work, or shorten the hooks";
    for s in &slots {
        let Some(secs) = pre_stop_seconds(s.c) else { continue };
        if secs >= grace {
            let message = format!(
                "{}'s preStop hook takes {secs} s but the pod's grace period is {grace} s: the hook is cut off and \
                 the container killed when the grace runs out (R44).",
                s.c.name
            );
            out.push(found(&SHUTDOWN_EXCEEDS_GRACE, format!("{}.lifecycle.preStop", s.path(w.base)), message, fix));
            return;
        }
    }
    // The regular containers stop together, then the sidecars in reverse order, all within one
    // grace period (R43, R45).
    let regular =
        slots.iter().filter(|s| s.list == "containers").filter_map(|s| pre_stop_seconds(s.c)).max().unwrap_or(0);
    let sidecars: i64 = slots.iter().filter(|s| s.is_sidecar()).filter_map(|s| pre_stop_seconds(s.c)).sum();
    if sidecars > 0 && regular.saturating_add(sidecars) >= grace {
        let message = format!(
            "the preStop hooks take {} s in turn (the regular containers' {regular} s, then the sidecars' {sidecars} s \
             in reverse order) but the sidecars share one grace period of {grace} s with the regular containers \
             (R43, R45): the last sidecars are killed before their hooks finish.",
            regular.saturating_add(sidecars)
        );
        out.push(found(&SHUTDOWN_EXCEEDS_GRACE, format!("{}.terminationGracePeriodSeconds", w.base), message, fix));
    }
}

fn sidecar_order(w: &Workload<'_>, out: &mut Vec<Found>) {
    let slots = w.slots();
    let sidecars: Vec<&Slot<'_>> = slots.iter().filter(|s| s.is_sidecar()).collect();
    for (i, a) in sidecars.iter().enumerate() {
        let uses = shell::loopback_ports(a.c);
        for b in &sidecars[i + 1..] {
            let Some(p) = shell::served_ports(b.c).into_iter().find(|p| uses.contains(p)) else { continue };
            let message = format!(
                "{} uses {} (localhost:{p}) but is listed before it: {} starts first, and since sidecars stop in \
                 reverse order, {} stops first too (R43), so {} is without it at both ends.",
                a.c.name, b.c.name, a.c.name, b.c.name, a.c.name
            );
            let fix = format!("list {} before {} in initContainers", b.c.name, a.c.name);
            out.push(Found { fix, ..found(&SIDECAR_ORDER, a.path(w.base), message, "") });
        }
    }
}

fn failure_policy(w: &Workload<'_>, out: &mut Vec<Found>) {
    let Some((job, base)) = w.job else { return };
    let slots = w.slots();
    let Some(sidecar) = slots.iter().find(|s| s.is_sidecar()) else { return };
    let rules = job.pod_failure_policy.as_ref().map(|p| p.rules.as_slice()).unwrap_or_default();
    for (i, rule) in rules.iter().enumerate() {
        let Some(codes) = &rule.on_exit_codes else { continue };
        if codes.container_name.is_some() || codes.operator != "In" {
            continue;
        }
        let Some(code) = codes.values.iter().find(|v| matches!(**v, 137 | 143)) else { continue };
        let message = format!(
            "this rule matches exit code {code} in any container, and a sidecar such as {} exits with 143 \
             (SIGTERM) or 137 (SIGKILL) when it is stopped after a failure: the rule may judge the pod by the \
             sidecar's exit instead of the work's.",
            sidecar.c.name
        );
        let main =
            slots.iter().find(|s| s.list == "containers").map(|s| s.c.name.as_str()).unwrap_or("the main container");
        let fix = format!("add `containerName: {main}` to onExitCodes");
        out.push(Found {
            fix,
            ..found(
                &FAILURE_POLICY_MATCHES_SIDECARS,
                format!("{base}.podFailurePolicy.rules[{i}].onExitCodes"),
                message,
                "",
            )
        });
    }
}

fn probe_ports(w: &Workload<'_>, out: &mut Vec<Found>) {
    for s in w.slots() {
        let names: Vec<&str> = s.c.ports.iter().flatten().filter_map(|p| p.name.as_deref()).collect();
        let probes = [
            ("startupProbe", &s.c.startup_probe),
            ("readinessProbe", &s.c.readiness_probe),
            ("livenessProbe", &s.c.liveness_probe),
        ];
        for (kind, probe) in probes {
            let Some(p) = probe else { continue };
            let (handler, port) = match (&p.http_get, &p.tcp_socket) {
                (Some(h), _) => ("httpGet", &h.port),
                (_, Some(t)) => ("tcpSocket", &t.port),
                _ => continue,
            };
            let IntOrString::String(name) = port else { continue };
            if names.contains(&name.as_str()) {
                continue;
            }
            let message = format!(
                "{}'s {kind} names port {name:?}, which is not one of its ports: the kubelet cannot resolve it, \
                 so the probe fails every time (R31).",
                s.c.name
            );
            let fix = format!("name a port {name:?} in the container's ports, or give the number");
            out.push(Found {
                fix,
                ..found(&PROBE_PORT_UNDEFINED, format!("{}.{kind}.{handler}.port", s.path(w.base)), message, "")
            });
        }
    }
}
