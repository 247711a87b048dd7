//! The probe scenarios of the e2e catalogue (Part B, "Probing restartable init container") and
//! the lifecycle hooks, on real containers, with timings shortened from minutes to seconds. The
//! probes and hooks sit on a sidecar, as in the catalogue; an app container runs beside it.
//!
//! The scenarios of one group run as pods side by side on one node, each watched on its own, and
//! each checked on its own: a failure names its scenario.

mod common;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{fixture, pod, servers};
use jiff::Timestamp;
use k8s_openapi::api::core::v1::PodStatus;
use podvisor_node::{NodeEvent, What};
use tokio::time::Instant;

/// A site for busybox httpd on :8080: `/`, `/healthz` (removed after `$HEALTHY_FOR` seconds
/// when set), `/cgi-bin/redirect?loc=URL` answering `302 Found` to URL as Go's `http.Redirect`
/// does, and `/cgi-bin/hook?WORD` that logs `hook WORD` on the container's output.
const WEB: &str = r#"
apiVersion: v1
kind: ConfigMap
metadata: {name: web}
data:
  serve: |
    mkdir -p /www/cgi-bin
    cp /web/redirect /web/hook /www/cgi-bin/
    echo ok > /www/index.html
    echo ok > /www/healthz
    if [ -n "$HEALTHY_FOR" ]; then (sleep "$HEALTHY_FOR"; rm /www/healthz) & fi
    trap 'exit 0' TERM
    httpd -f -p 8080 -h /www &
    wait
  hook: |
    #!/bin/sh
    echo "hook $QUERY_STRING" > /proc/1/fd/1
    printf 'HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nok\n'
  redirect: |
    #!/bin/sh
    l="${QUERY_STRING#loc=}"
    printf 'HTTP/1.1 302 Found\r\nLocation: %s\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<a href="%s">Found</a>.\n\n' "$l" "$l"
"#;

/// A command that runs until SIGTERM, then exits 0.
const SLEEPER: &str = r#"[sh, -c, "trap 'exit 0' TERM; while :; do sleep 0.1; done"]"#;

/// One scenario: a pod, how long it is watched, and what must hold.
struct Scenario {
    id: &'static str,
    yaml: String,
    /// The pod is deleted this long after it was created; its status is taken just before.
    delete_after: Duration,
    /// The grace period of that deletion (`None`: the pod's own).
    grace: Option<i64>,
    /// Runs with the pod's network namespace once its first container started.
    setup: Option<fn(PathBuf)>,
    check: fn(&Observed) -> Result<(), String>,
}

/// A pod with a sidecar named `sidecar` (whose fields are `sidecar`, YAML at four spaces) and an
/// app container `app` that runs until it is stopped.
fn sidecar_pod(id: &str, grace: u32, sidecar: &str) -> String {
    let sidecar = sidecar.trim().lines().map(|l| format!("    {l}\n")).collect::<String>();
    format!(
        r#"apiVersion: v1
kind: Pod
metadata: {{name: {}}}
spec:
  terminationGracePeriodSeconds: {grace}
  volumes: [{{name: web, configMap: {{name: web, defaultMode: 0755}}}}]
  initContainers:
  - name: sidecar
    image: busybox:1.36
    restartPolicy: Always
    volumeMounts: [{{name: web, mountPath: /web}}]
{sidecar}  containers:
  - name: app
    image: busybox:1.36
    command: {SLEEPER}
"#,
        id.to_lowercase()
    )
}

fn scenario(id: &'static str, secs: u64, sidecar: &str, check: fn(&Observed) -> Result<(), String>) -> Scenario {
    Scenario {
        id,
        yaml: sidecar_pod(id, 2, sidecar),
        delete_after: Duration::from_secs(secs),
        grace: Some(2),
        setup: None,
        check,
    }
}

/// What was seen of one pod.
struct Observed {
    /// The pod as created, with the status just before the deletion.
    pod: k8s_openapi::api::core::v1::Pod,
    events: Vec<NodeEvent>,
    /// Every change of (pod Ready, sidecar ready), with its time.
    readiness: Vec<(Timestamp, bool, bool)>,
    /// Every change of the sidecar's restart count, with its time.
    restarts: Vec<(Timestamp, i32)>,
    /// The status just before the deletion.
    status: PodStatus,
    deleted_at: Timestamp,
}

impl Observed {
    fn restarts(&self, container: &str) -> i32 {
        let s = &self.status;
        s.init_container_statuses
            .iter()
            .flatten()
            .chain(s.container_statuses.iter().flatten())
            .find(|c| c.name == container)
            .map_or(-1, |c| c.restart_count)
    }

    /// As the e2e suite counts: `0` means none at all, `n > 0` means at least `n` (R26 lets
    /// the first two restarts after probe kills go without back-off).
    fn expect_restarts(&self, container: &str, n: i32) -> Result<(), String> {
        match self.restarts(container) {
            r if r == n || (n > 0 && r > n) => Ok(()),
            r => Err(format!("{container} restarted {r} times, not {}{n}", if n > 0 { "at least " } else { "" })),
        }
    }

    fn messages(&self, reason: &str) -> Vec<String> {
        self.events
            .iter()
            .filter_map(|e| match &e.what {
                What::Event { reason: r, message, .. } if r == reason => Some(message.clone()),
                _ => None,
            })
            .collect()
    }

    fn expect_message(&self, reason: &str, message: &str) -> Result<(), String> {
        let all = self.messages(reason);
        if all.iter().any(|m| m == message) {
            Ok(())
        } else {
            Err(format!("no {reason} event {message:?} among {all:?}"))
        }
    }

    /// When the first event matching `f` came.
    fn at(&self, f: impl Fn(&What) -> bool) -> Option<Timestamp> {
        self.events.iter().find(|e| f(&e.what)).map(|e| e.at)
    }

    fn exit_code(&self, container: &str) -> Option<i32> {
        self.events.iter().rev().find_map(|e| match &e.what {
            What::Exited { container: c, exit_code, .. } if c == container => Some(*exit_code),
            _ => None,
        })
    }

    fn started(&self, container: &str) -> Option<Timestamp> {
        self.events
            .iter()
            .find(|e| matches!(&e.what, What::Started { container: c, .. } if c == container))
            .map(|e| e.at)
    }

    /// When the pod first became Ready.
    fn ready_at(&self) -> Option<Timestamp> {
        self.readiness.iter().find(|r| r.1).map(|r| r.0)
    }

    /// kubectl's READY column for the status before the deletion.
    fn ready_column(&self) -> String {
        podvisor_objects::columns::pod_columns(&self.pod, Timestamp::now()).ready
    }

    fn never_ready(&self) -> Result<(), String> {
        match self.ready_at() {
            None => Ok(()),
            Some(t) => Err(format!("the pod became Ready at {t}")),
        }
    }
}

fn is_ready(status: &PodStatus) -> (bool, bool) {
    let pod = status.conditions.iter().flatten().any(|c| c.type_ == "Ready" && c.status == "True");
    let sidecar = status
        .init_container_statuses
        .iter()
        .flatten()
        .any(|c| matches!(c.name.as_str(), "sidecar" | "istio-proxy") && c.ready);
    (pod, sidecar)
}

/// Runs the scenarios side by side and checks each; panics naming every one that failed.
async fn run(group: &str, scenarios: Vec<Scenario>) {
    let mut f = fixture(group).await;
    for m in podvisor_manifest::load_str("web.yaml", WEB).unwrap() {
        if let podvisor_manifest::Object::ConfigMap(c) = m.object {
            f.objects.put_config_map(*c);
        }
    }
    struct Running {
        scenario: Scenario,
        handle: podvisor_node::PodHandle,
        created: Instant,
        readiness: Arc<Mutex<Vec<(Timestamp, bool, bool)>>>,
        restarts: Arc<Mutex<Vec<(Timestamp, i32)>>>,
        status: Option<(PodStatus, Timestamp)>,
        set_up: bool,
        finished: bool,
    }
    let mut pods: Vec<Running> = Vec::new();
    // `SCENARIO=B-LIVE-EXEC-OK cargo test …` runs one scenario alone.
    let only = std::env::var("SCENARIO").ok();
    for scenario in scenarios.into_iter().filter(|s| only.as_deref().is_none_or(|o| o == s.id)) {
        let handle = f.node.run_pod(pod(&scenario.yaml));
        let (readiness, restarts) = (Arc::new(Mutex::new(Vec::new())), Arc::new(Mutex::new(Vec::new())));
        let (mut rx, seen, counts) = (handle.watch(), readiness.clone(), restarts.clone());
        tokio::spawn(async move {
            let (mut last, mut last_count) = (None, None);
            loop {
                let status = rx.borrow_and_update().status.clone();
                let now = is_ready(&status);
                if last != Some(now) {
                    seen.lock().unwrap().push((Timestamp::now(), now.0, now.1));
                    last = Some(now);
                }
                let count = status
                    .init_container_statuses
                    .iter()
                    .flatten()
                    .find(|c| c.name == "sidecar")
                    .map(|c| c.restart_count);
                if let Some(c) = count.filter(|c| last_count != Some(*c)) {
                    counts.lock().unwrap().push((Timestamp::now(), c));
                    last_count = Some(c);
                }
                if rx.changed().await.is_err() {
                    break;
                }
            }
        });
        pods.push(Running {
            set_up: scenario.setup.is_none(),
            scenario,
            handle,
            created: Instant::now(),
            readiness,
            restarts,
            status: None,
            finished: false,
        });
    }
    let limit = Instant::now() + Duration::from_secs(90);
    while pods.iter().any(|p| !p.finished) {
        for p in pods.iter_mut().filter(|p| p.status.is_none()) {
            if Instant::now() >= p.created + p.scenario.delete_after {
                p.status = Some((p.handle.status(), Timestamp::now()));
                p.handle.delete(p.scenario.grace);
            }
        }
        let next = pods
            .iter()
            .filter(|p| p.status.is_none())
            .map(|p| p.created + p.scenario.delete_after)
            .min()
            .unwrap_or(limit)
            .min(limit);
        match tokio::time::timeout_at(next, f.events.recv()).await {
            Ok(Some(e)) => {
                for p in pods.iter_mut().filter(|p| p.handle.key() == e.pod) {
                    match &e.what {
                        What::Started { .. } if !p.set_up => {
                            p.set_up = true;
                            if let Some(setup) = p.scenario.setup {
                                setup(f.node.network_namespace(p.handle.uid()));
                            }
                        }
                        What::Finished { .. } => p.finished = true,
                        _ => {}
                    }
                }
                f.seen.push(e);
            }
            Ok(None) => break,
            Err(_) => assert!(Instant::now() < limit, "the pods did not finish in time:\n{}", f.dump()),
        }
    }
    // Other groups run in this process at the same time: a child that just ended is reaped a
    // moment later, so only a zombie that stays is one left behind.
    let mut zombies = zombie_children();
    if !zombies.is_empty() {
        tokio::time::sleep(Duration::from_secs(3)).await;
        let still = zombie_children();
        zombies.retain(|z| still.contains(z));
    }
    assert!(zombies.is_empty(), "probes and hooks left zombies to this process: {zombies:?}");
    let mut failures = Vec::new();
    for p in pods {
        let (status, deleted_at) = p.status.expect("every pod was deleted");
        let mut pod = p.handle.pod().clone();
        pod.status = Some(status.clone());
        let observed = Observed {
            pod,
            events: f.seen.iter().filter(|e| e.pod == p.handle.key()).cloned().collect(),
            readiness: p.readiness.lock().unwrap().clone(),
            restarts: p.restarts.lock().unwrap().clone(),
            status,
            deleted_at,
        };
        match (p.scenario.check)(&observed) {
            Ok(()) => eprintln!("{}: ok", p.scenario.id),
            Err(e) => {
                let log = observed.events.iter().map(|e| format!("    {} {:?}", e.at, e.what)).collect::<Vec<_>>();
                failures.push(format!(
                    "{}: {e}\n  readiness: {:?}\n{}",
                    p.scenario.id,
                    observed.readiness,
                    log.join("\n")
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{} scenario(s) failed:\n{}", failures.len(), failures.join("\n\n"));
}

// The kubelet words a sidecar's kill without "will be restarted".
/// This process's children that exited and were never reaped.
fn zombie_children() -> Vec<String> {
    let tasks = std::fs::read_dir("/proc/self/task").map(|d| d.flatten().collect::<Vec<_>>()).unwrap_or_default();
    tasks
        .iter()
        .filter_map(|t| std::fs::read_to_string(t.path().join("children")).ok())
        .flat_map(|c| c.split_whitespace().map(String::from).collect::<Vec<_>>())
        .filter_map(|pid| std::fs::read_to_string(format!("/proc/{pid}/stat")).ok())
        .filter(|stat| stat.rsplit_once(')').is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')))
        .collect()
}

const KILLED_FOR_LIVENESS: &str = "Init container sidecar failed liveness probe";
const KILLED_FOR_STARTUP: &str = "Init container sidecar failed startup probe";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn b_liveness_probes_on_a_sidecar() {
    run(
        "b-liveness",
        vec![
            scenario(
                "B-LIVE-EXEC-RESTART",
                6,
                r#"
command: [sh, -c, "echo ok > /tmp/health; sleep 2; rm /tmp/health; trap 'exit 0' TERM; while :; do sleep 0.1; done"]
livenessProbe: {exec: {command: [cat, /tmp/health]}, initialDelaySeconds: 1, periodSeconds: 1, timeoutSeconds: 1, failureThreshold: 1}
"#,
                |o| {
                    o.expect_restarts("sidecar", 1)?;
                    o.expect_restarts("app", 0)?;
                    o.expect_message("Unhealthy", "Liveness probe failed: cat: can't open '/tmp/health': No such file or directory")?;
                    o.expect_message("Killing", KILLED_FOR_LIVENESS)
                },
            ),
            scenario(
                "B-LIVE-MONOTONIC",
                15,
                &format!(
                    "command: {SLEEPER}\nlivenessProbe: {{httpGet: {{path: /healthz, port: 8080}}, initialDelaySeconds: 1, periodSeconds: 1, failureThreshold: 1}}"
                ),
                |o| {
                    // Minutes of back-off shortened to its start: two restarts at once, the third
                    // after the 10 s back-off (R26), the count only ever growing.
                    let counts: Vec<i32> = o.restarts.iter().map(|r| r.1).collect();
                    if counts.windows(2).any(|w| w[1] < w[0]) || counts.last() < Some(&3) {
                        return Err(format!("restart counts seen: {counts:?}"));
                    }
                    let at = |n: i32| o.restarts.iter().find(|r| r.1 == n).map(|r| r.0);
                    let (Some(second), Some(third)) = (at(2), at(3)) else { return Err("no third restart".into()) };
                    match third.duration_since(second).as_secs_f64() {
                        gap if gap >= 9.5 => o.expect_message("BackOff", &format!("Back-off restarting failed container sidecar in pod b-live-monotonic_default({})", o.pod.metadata.uid.as_deref().unwrap_or_default())),
                        gap => Err(format!("the third restart came {gap:.2}s after the second")),
                    }
                },
            ),
            scenario(
                "B-LIVE-EXEC-OK",
                5,
                r#"
command: [sh, -c, "echo ok > /tmp/health; trap 'exit 0' TERM; while :; do sleep 0.1; done"]
livenessProbe: {exec: {command: [cat, /tmp/health]}, initialDelaySeconds: 1, periodSeconds: 1, failureThreshold: 1}
"#,
                |o| {
                    o.expect_restarts("sidecar", 0)?;
                    match o.messages("Unhealthy") {
                        m if m.is_empty() => Ok(()),
                        m => Err(format!("unexpected failures: {m:?}")),
                    }
                },
            ),
            scenario(
                "B-LIVE-HTTP-RESTART",
                6,
                r#"
command: [sh, /web/serve]
env: [{name: HEALTHY_FOR, value: "2"}]
livenessProbe: {httpGet: {path: /healthz, port: 8080}, initialDelaySeconds: 1, periodSeconds: 1, timeoutSeconds: 1, failureThreshold: 1}
"#,
                |o| {
                    o.expect_restarts("sidecar", 1)?;
                    o.expect_message("Unhealthy", "Liveness probe failed: HTTP probe failed with statuscode: 404")?;
                    o.expect_message("Killing", KILLED_FOR_LIVENESS)
                },
            ),
            scenario(
                "B-LIVE-TCP-OK",
                5,
                r#"
command: [sh, /web/serve]
livenessProbe: {tcpSocket: {port: 8080}, initialDelaySeconds: 1, periodSeconds: 1, failureThreshold: 1}
"#,
                |o| o.expect_restarts("sidecar", 0),
            ),
            scenario(
                "B-LIVE-HTTP-OK",
                5,
                r#"
command: [sh, /web/serve]
livenessProbe: {httpGet: {path: /, port: 8080}, initialDelaySeconds: 1, periodSeconds: 1, failureThreshold: 5}
"#,
                |o| o.expect_restarts("sidecar", 0),
            ),
            scenario(
                "B-LIVE-EXEC-TIMEOUT",
                6,
                &format!(
                    "command: {SLEEPER}\nlivenessProbe: {{exec: {{command: [sh, -c, sleep 10]}}, initialDelaySeconds: 1, periodSeconds: 1, timeoutSeconds: 1, failureThreshold: 1}}"
                ),
                |o| {
                    o.expect_restarts("sidecar", 1)?;
                    o.expect_message("Unhealthy", "Liveness probe failed: command \"sh -c sleep 10\" timed out")
                },
            ),
            scenario(
                "B-LIVE-EXEC-TIMEOUT-FAIL",
                6,
                &format!(
                    "command: {SLEEPER}\nlivenessProbe: {{exec: {{command: [sh, -c, 'sleep 10 & exit 1']}}, initialDelaySeconds: 1, periodSeconds: 1, timeoutSeconds: 1, failureThreshold: 1}}"
                ),
                |o| o.expect_restarts("sidecar", 1),
            ),
            scenario(
                "B-LIVE-LOCAL-REDIRECT",
                6,
                r#"
command: [sh, /web/serve]
env: [{name: HEALTHY_FOR, value: "2"}]
livenessProbe: {httpGet: {path: "/cgi-bin/redirect?loc=/healthz", port: 8080}, initialDelaySeconds: 1, periodSeconds: 1, timeoutSeconds: 1, failureThreshold: 1}
"#,
                |o| {
                    // The redirect is followed (same host) to /healthz, which starts failing.
                    o.expect_restarts("sidecar", 1)?;
                    o.expect_message("Unhealthy", "Liveness probe failed: HTTP probe failed with statuscode: 404")?;
                    match o.messages("ProbeWarning") {
                        w if w.is_empty() => Ok(()),
                        w => Err(format!("a local redirect gave warnings: {w:?}")),
                    }
                },
            ),
            scenario(
                "B-LIVE-NONLOCAL-REDIRECT",
                5,
                r#"
command: [sh, /web/serve]
livenessProbe: {httpGet: {path: "/cgi-bin/redirect?loc=http://0.0.0.0/", port: 8080}, initialDelaySeconds: 1, periodSeconds: 1, failureThreshold: 1}
"#,
                |o| {
                    o.expect_restarts("sidecar", 0)?;
                    o.expect_message(
                        "ProbeWarning",
                        "Liveness probe warning: Probe terminated redirects, Response body: <a href=\"http://0.0.0.0/\">Found</a>.",
                    )
                },
            ),
            Scenario {
                // R48: the probe's own grace (1 s) replaces the pod's 500 s for the kill.
                yaml: sidecar_pod(
                    "B-LIVE-PROBE-TGPS",
                    500,
                    r#"
command: [sh, -c, "trap '' TERM; while :; do sleep 0.1; done"]
livenessProbe: {httpGet: {path: /healthz, port: 8080}, initialDelaySeconds: 1, periodSeconds: 1, failureThreshold: 1, terminationGracePeriodSeconds: 1}
"#,
                ),
                ..scenario("B-LIVE-PROBE-TGPS", 6, "", |o| {
                    o.expect_restarts("sidecar", 1)?;
                    o.expect_message(
                        "Unhealthy",
                        "Liveness probe failed: Get \"http://127.0.0.1:8080/healthz\": dial tcp 127.0.0.1:8080: connect: connection refused",
                    )
                })
            },
            Scenario {
                yaml: sidecar_pod(
                    "B-STARTUP-PROBE-TGPS",
                    500,
                    r#"
command: [sh, -c, "trap '' TERM; while :; do sleep 0.1; done"]
startupProbe: {exec: {command: [cat, /tmp/startup]}, initialDelaySeconds: 1, periodSeconds: 1, failureThreshold: 1, terminationGracePeriodSeconds: 1}
"#,
                ),
                ..scenario("B-STARTUP-PROBE-TGPS", 6, "", |o| {
                    o.expect_restarts("sidecar", 1)?;
                    o.expect_message("Killing", KILLED_FOR_STARTUP)?;
                    match o.started("app") {
                        None => Ok(()),
                        Some(_) => Err("the app started although the sidecar never passed its startup probe".into()),
                    }
                })
            },
        ],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn b_startup_and_readiness_probes_on_a_sidecar() {
    run(
        "b-readiness",
        vec![
            scenario(
                "B-READY-DELAY",
                5,
                r#"
command: [sh, /web/serve]
readinessProbe: {httpGet: {path: /, port: 8080}, initialDelaySeconds: 2, periodSeconds: 1}
"#,
                |o| {
                    let (Some(started), Some(ready)) = (o.started("sidecar"), o.ready_at()) else {
                        return Err("the sidecar did not start, or the pod was never Ready".into());
                    };
                    let waited = ready.duration_since(started).as_secs_f64();
                    if waited < 2.0 {
                        return Err(format!("Ready {waited:.2}s after the start, before initialDelaySeconds"));
                    }
                    o.expect_restarts("sidecar", 0)
                },
            ),
            scenario(
                "B-READY-FAILING",
                4,
                r#"
command: [sh, /web/serve]
readinessProbe: {httpGet: {path: /, port: 81}, periodSeconds: 1}
"#,
                |o| {
                    o.never_ready()?;
                    o.expect_restarts("sidecar", 0)?;
                    if o.ready_column() != "1/2" {
                        return Err(format!("READY shows {}, not 1/2", o.ready_column()));
                    }
                    // R17/R32: readiness neither gates the app nor restarts anything.
                    o.started("app").ok_or("the app did not start")?;
                    o.expect_message(
                        "Unhealthy",
                        "Readiness probe failed: Get \"http://127.0.0.1:81/\": dial tcp 127.0.0.1:81: connect: connection refused",
                    )
                },
            ),
            scenario(
                "B-READY-EXEC-TIMEOUT",
                4,
                &format!(
                    "command: {SLEEPER}\nreadinessProbe: {{exec: {{command: [sh, -c, sleep 10]}}, periodSeconds: 1, timeoutSeconds: 1}}"
                ),
                |o| {
                    o.never_ready()?;
                    o.expect_restarts("sidecar", 0)
                },
            ),
            scenario(
                "B-STARTUP-FAIL",
                7,
                &format!(
                    "command: {SLEEPER}\nstartupProbe: {{exec: {{command: [/bin/false]}}, initialDelaySeconds: 1, periodSeconds: 1, failureThreshold: 3}}\nlivenessProbe: {{exec: {{command: [/bin/true]}}, periodSeconds: 1, failureThreshold: 1}}"
                ),
                |o| {
                    o.expect_restarts("sidecar", 1)?;
                    o.expect_message("Killing", KILLED_FOR_STARTUP)
                },
            ),
            scenario(
                "B-STARTUP-DELAYS-LIVENESS",
                5,
                &format!(
                    "command: {SLEEPER}\nstartupProbe: {{exec: {{command: [/bin/false]}}, periodSeconds: 1, failureThreshold: 60}}\nlivenessProbe: {{exec: {{command: [/bin/false]}}, periodSeconds: 1, failureThreshold: 1}}"
                ),
                |o| {
                    o.expect_restarts("sidecar", 0)?;
                    let liveness: Vec<_> =
                        o.messages("Unhealthy").into_iter().filter(|m| m.starts_with("Liveness")).collect();
                    if liveness.is_empty() { Ok(()) } else { Err(format!("liveness ran before startup passed: {liveness:?}")) }
                },
            ),
            scenario(
                "B-LIVE-AFTER-STARTUP",
                6,
                r#"
command: [sh, -c, "(sleep 2; touch /tmp/startup) & trap 'exit 0' TERM; while :; do sleep 0.1; done"]
startupProbe: {exec: {command: [cat, /tmp/startup]}, periodSeconds: 1, failureThreshold: 60}
livenessProbe: {exec: {command: [/bin/false]}, periodSeconds: 1, failureThreshold: 1}
"#,
                |o| {
                    o.expect_restarts("sidecar", 1)?;
                    o.expect_message("Killing", KILLED_FOR_LIVENESS)
                },
            ),
            scenario(
                "B-READY-AFTER-STARTUP",
                6,
                r#"
command: [sh, -c, "touch /tmp/health; (sleep 2; touch /tmp/startup) & trap 'exit 0' TERM; while :; do sleep 0.1; done"]
readinessProbe: {exec: {command: [cat, /tmp/health]}, periodSeconds: 30}
startupProbe: {exec: {command: [cat, /tmp/startup]}, periodSeconds: 1, failureThreshold: 120}
"#,
                |o| {
                    // R31: readiness runs at once when the startup probe passes, not a period later.
                    let (Some(started), Some(ready)) = (o.started("sidecar"), o.ready_at()) else {
                        return Err("the pod was never Ready".into());
                    };
                    let waited = ready.duration_since(started).as_secs_f64();
                    if (2.0..=4.5).contains(&waited) {
                        Ok(())
                    } else {
                        Err(format!("Ready {waited:.2}s after the sidecar started"))
                    }
                },
            ),
            Scenario {
                // seed004-2 (app-with-istio) on busybox: the proxy's readinessProbe passes only
                // once it listens, a second in; the app does not wait for it (R17), whatever the
                // seed's comment says, and the pod turns Ready (2/2) when the proxy does.
                yaml: r#"
apiVersion: v1
kind: Pod
metadata: {name: app-with-istio}
spec:
  terminationGracePeriodSeconds: 2
  initContainers:
  - name: istio-proxy
    image: busybox:1.36
    restartPolicy: Always
    command: [sh, -c, "mkdir -p /www/healthz; echo ok > /www/healthz/ready; trap 'exit 0' TERM; sleep 1; httpd -f -p 15021 -h /www & wait"]
    ports: [{containerPort: 15090}]
    readinessProbe: {httpGet: {path: /healthz/ready, port: 15021}, initialDelaySeconds: 1, periodSeconds: 1}
  containers:
  - name: app
    image: busybox:1.36
    command: [sh, -c, "echo app up; trap 'exit 0' TERM; while :; do sleep 0.1; done"]
    ports: [{containerPort: 8080}]
"#
                .into(),
                ..scenario("SEED-APP-WITH-ISTIO", 5, "", |o| {
                    let app = o.started("app").ok_or("the app did not start")?;
                    let ready = o.ready_at().ok_or("the pod never turned Ready")?;
                    let proxy_ready =
                        o.readiness.iter().find(|r| r.2).map(|r| r.0).ok_or("the proxy never turned ready")?;
                    if app >= proxy_ready {
                        return Err("the app waited for the proxy's readiness".into());
                    }
                    if ready < proxy_ready || o.ready_column() != "2/2" {
                        return Err(format!("READY shows {} at the end", o.ready_column()));
                    }
                    Ok(())
                })
            },
            Scenario {
                yaml: sidecar_pod(
                    "B-UNREADY-ON-TERMINATION",
                    10,
                    r#"
command: [sh, -c, "touch /tmp/ready; trap 'rm /tmp/ready; sleep 2; exit 0' TERM; while :; do sleep 0.1; done"]
readinessProbe: {exec: {command: [cat, /tmp/ready]}, initialDelaySeconds: 1, periodSeconds: 1, failureThreshold: 1}
"#,
                ),
                grace: None,
                ..scenario("B-UNREADY-ON-TERMINATION", 4, "", unready_while_terminating)
            },
            Scenario {
                yaml: sidecar_pod(
                    "B-NO-LIVENESS-ON-TERMINATION",
                    10,
                    r#"
command: [sh, -c, "touch /tmp/ready /tmp/liveness; trap 'rm /tmp/ready /tmp/liveness; sleep 2; exit 0' TERM; while :; do sleep 0.1; done"]
readinessProbe: {exec: {command: [cat, /tmp/ready]}, initialDelaySeconds: 1, periodSeconds: 1, failureThreshold: 1}
livenessProbe: {exec: {command: [cat, /tmp/liveness]}, initialDelaySeconds: 1, periodSeconds: 1, failureThreshold: 1}
"#,
                ),
                grace: None,
                ..scenario("B-NO-LIVENESS-ON-TERMINATION", 4, "", |o| {
                    unready_while_terminating(o)?;
                    let liveness: Vec<_> = o
                        .messages("Unhealthy")
                        .into_iter()
                        .chain(o.messages("Killing"))
                        .filter(|m| m.contains("iveness"))
                        .collect();
                    if liveness.is_empty() { Ok(()) } else { Err(format!("liveness ran during termination: {liveness:?}")) }
                })
            },
        ],
    )
    .await;
}

/// R40: readiness keeps running while the pod terminates, so the sidecar turns not ready before
/// it exits.
fn unready_while_terminating(o: &Observed) -> Result<(), String> {
    o.readiness.iter().find(|r| r.0 < o.deleted_at && r.2).ok_or("the sidecar was not ready before the deletion")?;
    let exited = o
        .events
        .iter()
        .find(|e| matches!(&e.what, What::Exited { container, .. } if container == "sidecar"))
        .map(|e| e.at)
        .ok_or("the sidecar never exited")?;
    match o.readiness.iter().find(|r| r.0 > o.deleted_at && !r.2) {
        Some(r) if r.0 < exited => o.expect_message(
            "Unhealthy",
            "Readiness probe failed: cat: can't open '/tmp/ready': No such file or directory",
        ),
        _ => Err("the sidecar stayed ready until it exited".into()),
    }
}

fn grpc_server(netns: PathBuf) {
    servers::grpc_health(servers::listen_in(&netns, 5000));
}

fn https_server(netns: PathBuf) {
    servers::https(servers::listen_in(&netns, 8443));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn b_grpc_and_https_probes_on_a_sidecar() {
    run(
        "b-grpc",
        vec![
            Scenario {
                setup: Some(grpc_server),
                ..scenario(
                    "B-GRPC-OK",
                    5,
                    &format!(
                        "command: {SLEEPER}\nlivenessProbe: {{grpc: {{port: 5000}}, initialDelaySeconds: 1, periodSeconds: 1, failureThreshold: 1}}\nreadinessProbe: {{grpc: {{port: 5000}}, initialDelaySeconds: 1, periodSeconds: 1}}"
                    ),
                    |o| {
                        o.expect_restarts("sidecar", 0)?;
                        o.ready_at().ok_or("the pod was never Ready")?;
                        Ok(())
                    },
                )
            },
            scenario(
                "B-GRPC-FAIL",
                5,
                &format!(
                    "command: {SLEEPER}\nlivenessProbe: {{grpc: {{port: 2333}}, initialDelaySeconds: 1, periodSeconds: 1, failureThreshold: 1}}"
                ),
                |o| {
                    o.expect_restarts("sidecar", 1)?;
                    o.expect_message(
                        "Unhealthy",
                        "Liveness probe failed: error: failed to connect service at \"127.0.0.1:2333\": dial tcp 127.0.0.1:2333: connect: connection refused",
                    )
                },
            ),
            Scenario {
                setup: Some(grpc_server),
                ..scenario(
                    "GRPC-NOT-SERVING",
                    4,
                    &format!("command: {SLEEPER}\nreadinessProbe: {{grpc: {{port: 5000, service: db}}, initialDelaySeconds: 1, periodSeconds: 1}}"),
                    |o| {
                        o.never_ready()?;
                        o.expect_message("Unhealthy", "Readiness probe failed: service unhealthy (responded with \"NOT_SERVING\")")
                    },
                )
            },
            Scenario {
                setup: Some(grpc_server),
                ..scenario(
                    "GRPC-UNKNOWN-SERVICE",
                    4,
                    &format!("command: {SLEEPER}\nreadinessProbe: {{grpc: {{port: 5000, service: nope}}, initialDelaySeconds: 1, periodSeconds: 1}}"),
                    |o| {
                        o.never_ready()?;
                        o.expect_message(
                            "Unhealthy",
                            "Readiness probe failed: error: health rpc probe failed: rpc error: code = NotFound desc = unknown service",
                        )
                    },
                )
            },
            Scenario {
                setup: Some(https_server),
                ..scenario(
                    "HTTPS-NO-CERTIFICATE-CHECK",
                    4,
                    &format!(
                        "command: {SLEEPER}\nreadinessProbe: {{httpGet: {{scheme: HTTPS, path: /, port: 8443}}, initialDelaySeconds: 1, periodSeconds: 1}}"
                    ),
                    |o| {
                        o.ready_at().ok_or("the pod was never Ready over HTTPS with a self-signed certificate")?;
                        Ok(())
                    },
                )
            },
        ],
    )
    .await;
}

fn seconds(from: Timestamp, to: Option<Timestamp>) -> f64 {
    to.map_or(f64::NAN, |t| t.duration_since(from).as_secs_f64())
}

fn hook_ran<'a>(hook: &'a str) -> impl Fn(&What) -> bool + 'a {
    move |w| matches!(w, What::Handler { handler, result, .. } if handler == hook && result == "ok")
}

fn signalled<'a>(name: &'a str, sig: &'a str) -> impl Fn(&What) -> bool + 'a {
    move |w| matches!(w, What::Signalled { container, signal, .. } if container == name && signal == sig)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lifecycle_hooks_on_a_sidecar() {
    run(
        "hooks",
        vec![
            scenario(
                "R19-POSTSTART-EXEC-BLOCKS-NEXT",
                4,
                &format!("command: {SLEEPER}\nlifecycle: {{postStart: {{exec: {{command: [sh, -c, sleep 1]}}}}}}"),
                |o| {
                    let (sidecar, hook, app) = (o.started("sidecar"), o.at(hook_ran("postStart")), o.started("app"));
                    let sidecar = sidecar.ok_or("the sidecar did not start")?;
                    if !(seconds(sidecar, hook) >= 1.0 && hook <= app) {
                        return Err(format!("sidecar {sidecar}, hook done {hook:?}, app {app:?}"));
                    }
                    Ok(())
                },
            ),
            scenario(
                "R19-POSTSTART-SLEEP-BLOCKS-NEXT",
                4,
                &format!("command: {SLEEPER}\nlifecycle: {{postStart: {{sleep: {{seconds: 1}}}}}}"),
                |o| {
                    let sidecar = o.started("sidecar").ok_or("the sidecar did not start")?;
                    match seconds(sidecar, o.started("app")) {
                        w if w >= 1.0 => Ok(()),
                        w => Err(format!("the app started {w:.2}s after the sidecar")),
                    }
                },
            ),
            scenario(
                "R19-POSTSTART-FAILS",
                4,
                &format!("command: {SLEEPER}\nlifecycle: {{postStart: {{exec: {{command: [sh, -c, 'echo no; exit 1']}}}}}}"),
                |o| {
                    o.messages("FailedPostStartHook").first().ok_or("no FailedPostStartHook event")?;
                    o.expect_restarts("sidecar", 1)?;
                    match o.started("app") {
                        None => Ok(()),
                        Some(_) => Err("the app started after a sidecar whose postStart failed".into()),
                    }
                },
            ),
            Scenario {
                grace: None,
                ..scenario(
                    "R42-PRESTOP-HTTP-BEFORE-THE-SIGNAL",
                    3,
                    "command: [sh, /web/serve]\nlifecycle: {preStop: {httpGet: {path: /cgi-bin/hook?prestop, port: 8080}}}",
                    |o| {
                        let hit = o.at(|w| matches!(w, What::Log { line, .. } if line == "hook prestop"));
                        let term = o.at(signalled("sidecar", "SIGTERM"));
                        match (hit, term, o.at(hook_ran("preStop"))) {
                            (Some(h), Some(t), Some(_)) if h < t => Ok(()),
                            other => Err(format!("hook request, SIGTERM, hook done: {other:?}")),
                        }
                    },
                )
            },
            Scenario {
                // R44: a preStop hook that never ends has the grace (2 s), then the 2 s minimum.
                yaml: sidecar_pod(
                    "R44-PRESTOP-LONGER-THAN-THE-GRACE",
                    2,
                    "command: [sh, -c, \"trap '' TERM; while :; do sleep 0.1; done\"]\nlifecycle: {preStop: {exec: {command: [sleep, '30']}}}",
                ),
                grace: None,
                ..scenario("R44-PRESTOP-LONGER-THAN-THE-GRACE", 3, "", |o| {
                    let killed = seconds(o.deleted_at, o.at(signalled("sidecar", "SIGKILL")));
                    if !(3.5..6.0).contains(&killed) || o.exit_code("sidecar") != Some(137) {
                        return Err(format!("SIGKILL {killed:.2}s after the deletion, exit {:?}", o.exit_code("sidecar")));
                    }
                    Ok(())
                })
            },
            Scenario {
                grace: None,
                ..scenario(
                    "R44-PRESTOP-FAILS",
                    3,
                    &format!("command: {SLEEPER}\nlifecycle: {{preStop: {{exec: {{command: [sh, -c, 'exit 3']}}}}}}"),
                    |o| {
                        o.messages("FailedPreStopHook").first().ok_or("no FailedPreStopHook event")?;
                        match o.exit_code("sidecar") {
                            Some(0) => Ok(()),
                            c => Err(format!("the failed hook changed the exit code: {c:?}")),
                        }
                    },
                )
            },
            Scenario {
                // R45 (A11-TERM-REGULAR-EXCEEDS-GRACE): the app uses the whole 2 s grace; both
                // sidecars then stop waiting together and get the 2 s minimum: the quick one
                // ends 0, the slow one is killed.
                yaml: r#"
apiVersion: v1
kind: Pod
metadata: {name: r45-grace-shared}
spec:
  terminationGracePeriodSeconds: 2
  initContainers:
  - name: quick
    image: busybox:1.36
    restartPolicy: Always
    command: [sh, -c, "trap 'sleep 1; exit 0' TERM; while :; do sleep 0.1; done"]
  - name: slow
    image: busybox:1.36
    restartPolicy: Always
    command: [sh, -c, "trap 'sleep 20; exit 0' TERM; while :; do sleep 0.1; done"]
  containers:
  - name: app
    image: busybox:1.36
    command: [sh, -c, "trap '' TERM; while :; do sleep 0.1; done"]
"#
                .into(),
                grace: None,
                ..scenario("R45-GRACE-SHARED", 2, "", |o| {
                    let d = o.deleted_at;
                    let app_killed = seconds(d, o.at(signalled("app", "SIGKILL")));
                    let quick_term = seconds(d, o.at(signalled("quick", "SIGTERM")));
                    let slow_term = seconds(d, o.at(signalled("slow", "SIGTERM")));
                    let slow_killed = seconds(d, o.at(signalled("slow", "SIGKILL")));
                    let ok = (1.8..3.0).contains(&app_killed)
                        && (quick_term - slow_term).abs() < 0.5
                        && (1.8..3.2).contains(&slow_term)
                        && (3.8..5.5).contains(&slow_killed)
                        && o.exit_code("quick") == Some(0)
                        && o.exit_code("slow") == Some(137);
                    if ok {
                        Ok(())
                    } else {
                        Err(format!(
                            "app SIGKILL {app_killed:.2}s, quick SIGTERM {quick_term:.2}s, slow SIGTERM {slow_term:.2}s, \
                             slow SIGKILL {slow_killed:.2}s; exits quick {:?} slow {:?}",
                            o.exit_code("quick"),
                            o.exit_code("slow")
                        ))
                    }
                })
            },
        ],
    )
    .await;
}
