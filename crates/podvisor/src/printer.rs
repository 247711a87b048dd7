//! How `podvisor run` prints what happens, for its own pods and for the pods it follows on a
//! cluster (`run --context`) alike: each container's output behind a `pod/container | `
//! prefix, a line per lifecycle step with its time, notes where Kubernetes surprises people,
//! and on a terminal kubectl's pod table kept under the output with countdowns for stops that
//! wait out their grace.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::Arc;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::Pod;
use podvisor_cluster::{Key, Store};
use podvisor_node::{Node, NodeEvent, What};
use podvisor_objects::kinds::Resource;
use serde_json::Value;

/// The node's words for what the API showed: the same lines as a local run's.
pub(crate) fn whats(step: podvisor_kube::follow::Step) -> Vec<What> {
    use podvisor_kube::follow::Step;
    match step {
        Step::Started { container, attempt } => vec![What::Started { container, attempt }],
        Step::StartupPassed { container } => {
            vec![What::Handler { container, handler: "startupProbe".into(), result: "ok".into() }]
        }
        Step::Exited { container, attempt, exit_code, reason } => {
            vec![What::Exited { container, attempt, exit_code, reason }]
        }
        Step::Stopping { container, message } => vec![
            What::Event {
                kind: "Normal",
                reason: "Killing".into(),
                message,
                container: Some(container.clone()),
                field_path: None,
            },
            What::Signalled {
                container,
                signal: "SIGTERM".into(),
                why: "stopping the container".into(),
                kill_in: None,
            },
        ],
        Step::Event { kind, reason, message } => vec![What::Event {
            kind: if kind == "Warning" { "Warning" } else { "Normal" },
            reason,
            message,
            container: None,
            field_path: None,
        }],
        Step::Phase { phase } => vec![What::Phase { phase }],
    }
}

/// Where the printer reads the pods it shows: this machine's node, or the pods a run follows on
/// a cluster.
pub(crate) trait Pods {
    /// Every pod: `namespace/name`, its UID, and the pod with its current status.
    fn snapshot(&self) -> Vec<(String, String, Pod)>;
}

impl Pods for Node {
    fn snapshot(&self) -> Vec<(String, String, Pod)> {
        self.pods()
            .into_iter()
            .map(|h| (h.key(), h.uid().to_string(), Pod { status: Some(h.status()), ..h.pod().clone() }))
            .collect()
    }
}

const COLOURS: [&str; 6] = ["36", "33", "35", "32", "34", "31"];

pub(crate) struct Printer {
    /// The pods shown.
    pods: Box<dyn Pods>,
    /// The store of a run on this machine, for what the Job controller decided.
    store: Option<Arc<Store>>,
    /// When the run started: lines say the time since.
    pub start: Timestamp,
    colour: bool,
    /// On a terminal, the pod table is kept under the output: how many lines it has.
    table: Option<usize>,
    colours: BTreeMap<String, &'static str>,
    /// The events kept for `--timeline`.
    pub timeline: Option<Vec<NodeEvent>>,
    /// On a terminal, the containers waiting out a grace period, by pod UID and container:
    /// their pod, when they are killed, and whether their PID 1 ignores the stop signal.
    countdowns: BTreeMap<(String, String), Countdown>,
    /// Whether the user has pressed Ctrl-C once (a second one kills).
    pub interrupted: bool,
}

impl Printer {
    /// A printer of `pods` (with `store`, the store of a run on this machine); `colour` paints
    /// the prefixes, `table` keeps the pod table under the output, `timeline` keeps the events.
    pub fn new(pods: Box<dyn Pods>, store: Option<Arc<Store>>, colour: bool, table: bool, timeline: bool) -> Printer {
        Printer {
            pods,
            store,
            start: Timestamp::now(),
            colour,
            table: table.then_some(0),
            colours: BTreeMap::new(),
            timeline: timeline.then(Vec::new),
            countdowns: BTreeMap::new(),
            interrupted: false,
        }
    }

    /// Stops keeping the table (at the end of a run).
    pub fn drop_table(&mut self) {
        self.table = None;
    }
}

/// A container sent its stop signal, waiting out its grace period.
struct Countdown {
    pod: String,
    signal: String,
    kill_at: std::time::Instant,
    ignores: bool,
}

impl Countdown {
    /// `web/log-shipper ignores SIGTERM: killing in 24 s (Ctrl-C again to kill now)`.
    fn line(&self, container: &str, now: std::time::Instant, interrupted: bool) -> String {
        let left = self.kill_at.saturating_duration_since(now).as_secs_f64().ceil() as u64;
        let what = if self.ignores {
            format!("ignores {}: killing in {left} s", self.signal)
        } else {
            format!("stopping: killed in {left} s if it has not exited")
        };
        let ctrl_c = if interrupted { "Ctrl-C again to kill now" } else { "Ctrl-C twice to kill now" };
        format!("{}/{container} {what} ({ctrl_c})", self.pod)
    }
}

pub(crate) fn short(pod: &str) -> &str {
    pod.strip_prefix("default/").unwrap_or(pod)
}

impl Printer {
    fn paint(&mut self, who: &str) -> String {
        if !self.colour {
            return who.to_string();
        }
        let n = self.colours.len();
        let c = *self.colours.entry(who.to_string()).or_insert(COLOURS[n % COLOURS.len()]);
        format!("\x1b[{c}m{who}\x1b[0m")
    }

    /// Erases the table drawn last (the lines printed next take its place).
    pub(crate) fn erase(&mut self, out: &mut impl Write) -> std::io::Result<()> {
        if let Some(lines) = &mut self.table
            && *lines > 0
        {
            write!(out, "\x1b[{lines}A\x1b[J")?;
            *lines = 0;
        }
        Ok(())
    }

    /// Draws kubectl's `get pods` table of every pod under the output.
    pub(crate) fn draw(&mut self, out: &mut impl Write) -> std::io::Result<()> {
        if self.table.is_none() {
            return Ok(());
        }
        let now = Timestamp::now();
        let mut rows = vec![(
            "NAME".to_string(),
            "READY".to_string(),
            "STATUS".to_string(),
            "RESTARTS".to_string(),
            "AGE".to_string(),
        )];
        for (key, _, pod) in self.pods.snapshot() {
            let c = podvisor_objects::columns::pod_columns(&pod, now);
            let since = pod.status.as_ref().and_then(|s| s.start_time.as_ref()).map(|t| t.0).unwrap_or(now);
            let age = podvisor_objects::columns::human_duration(now.duration_since(since));
            rows.push((short(&key).to_string(), c.ready, c.status, c.restarts, age));
        }
        let w = |f: fn(&(String, String, String, String, String)) -> &String| {
            rows.iter().map(|r| f(r).len()).max().unwrap_or(0)
        };
        let (a, b, c, d) = (w(|r| &r.0), w(|r| &r.1), w(|r| &r.2), w(|r| &r.3));
        for r in &rows {
            writeln!(out, "\x1b[2m{:<a$}   {:<b$}   {:<c$}   {:<d$}   {}\x1b[0m", r.0, r.1, r.2, r.3, r.4)?;
        }
        let now = std::time::Instant::now();
        for ((_, container), c) in &self.countdowns {
            writeln!(out, "\x1b[33m{}\x1b[0m", c.line(container, now, self.interrupted))?;
        }
        self.table = Some(rows.len() + self.countdowns.len());
        out.flush()
    }

    /// Whether a countdown is shown (the table is then drawn again every second).
    pub(crate) fn counting(&self) -> bool {
        self.table.is_some() && !self.countdowns.is_empty()
    }

    /// Draws the table again, with the countdowns' new figures.
    pub(crate) fn redraw(&mut self, out: &mut impl Write) -> std::io::Result<()> {
        self.erase(out)?;
        self.draw(out)
    }

    pub(crate) fn print(&mut self, out: &mut impl Write, e: NodeEvent) -> std::io::Result<()> {
        self.erase(out)?;
        self.print_line(out, e)?;
        self.draw(out)
    }

    fn print_line(&mut self, out: &mut impl Write, e: NodeEvent) -> std::io::Result<()> {
        let secs = e.at.duration_since(self.start).as_secs_f64();
        let pod = short(&e.pod).to_string();
        let line = |who: String, text: String| format!("[{secs:>8.3}s] {who} {text}");
        let text = match &e.what {
            What::Log { container, line, .. } => {
                let who = self.paint(&format!("{pod}/{container}"));
                writeln!(out, "{who} | {line}")?;
                None
            }
            What::Started { container, attempt } => {
                let started = if *attempt == 0 { "started".into() } else { format!("started (restart {attempt})") };
                let note = (*attempt == 0).then(|| self.readiness_note(&e.uid, container)).flatten();
                let who = format!("pod/{pod} {container}:");
                Some(match note {
                    Some(n) => format!("{}\n{}", line(who.clone(), started), line(who, n)),
                    None => line(who, started),
                })
            }
            What::Exited { container, exit_code, reason, .. } => {
                self.countdowns.remove(&(e.uid.clone(), container.clone()));
                Some(line(format!("pod/{pod} {container}:"), format!("exited {exit_code} ({reason})")))
            }
            What::Signalled { container, signal, why, kill_in } => {
                let shell = self.shell_ignores_sigterm(&e.uid, container);
                let key = (e.uid.clone(), container.clone());
                match kill_in {
                    Some(secs) if signal != "SIGKILL" && self.table.is_some() => {
                        let kill_at = std::time::Instant::now() + std::time::Duration::from_secs(*secs);
                        let c = Countdown { pod: pod.clone(), signal: signal.clone(), kill_at, ignores: shell };
                        self.countdowns.insert(key, c);
                    }
                    _ => {
                        self.countdowns.remove(&key);
                    }
                }
                let hint = match (signal.as_str(), why.contains("grace period is over"), shell) {
                    ("SIGKILL", true, true) => {
                        " (its PID 1 is a shell without a trap, which ignores SIGTERM: lint PV004)"
                    }
                    ("SIGKILL", true, false) => " (a PID 1 without a handler for the stop signal ignores it)",
                    _ => "",
                };
                let who = format!("pod/{pod} {container}:");
                let sent = line(who.clone(), format!("sent {signal}: {why}{hint}"));
                // Said when it is sent, not when the grace runs out: the wait is coming.
                let note = (signal != "SIGKILL" && shell).then(|| {
                    let grace = kill_in.map_or_else(|| self.grace(&e.uid), |s| i64::try_from(s).unwrap_or(i64::MAX));
                    let ctrl_c = if self.interrupted { "again" } else { "twice" };
                    line(
                        who,
                        format!(
                            "note: its PID 1 is a shell without a trap: it ignores SIGTERM, so it is killed in {grace} s (Ctrl-C {ctrl_c} to kill now)"
                        ),
                    )
                });
                Some(match note {
                    Some(n) => format!("{sent}\n{n}"),
                    None => sent,
                })
            }
            What::Handler { container, handler, .. } if handler == "startupProbe" => {
                Some(line(format!("pod/{pod} {container}:"), "startup probe passed".into()))
            }
            What::Handler { container, handler, result } => {
                Some(line(format!("pod/{pod} {container}:"), format!("{handler} hook: {result}")))
            }
            What::Timing { .. } => None,
            What::Event { kind, reason, message, .. } => {
                let noisy =
                    *kind == "Normal" && matches!(reason.as_str(), "Pulled" | "Created" | "Started" | "Scheduled");
                (!noisy).then(|| line(format!("pod/{pod}"), format!("event {reason}: {message}")))
            }
            What::Phase { phase } => Some(line(format!("pod/{pod}"), format!("phase {phase}"))),
            What::Finished { phase } => {
                let done = line(format!("pod/{pod}"), format!("finished: {phase}"));
                Some(match (phase == "Failed").then(|| self.job_retry(&e.pod)).flatten() {
                    Some(retry) => format!("{done}\n{}", line(format!("pod/{pod}"), retry)),
                    None => done,
                })
            }
        };
        if let Some(t) = text {
            writeln!(out, "{t}")?;
        }
        if let Some(tl) = &mut self.timeline {
            tl.push(e);
        }
        Ok(())
    }
}

impl Printer {
    /// The pod with `uid`, with its current status.
    fn pod(&self, uid: &str) -> Option<Pod> {
        self.pods.snapshot().into_iter().find(|(_, u, _)| u == uid).map(|(_, _, p)| p)
    }

    /// Whether `container` of the pod with `uid` runs a shell as PID 1 that ignores SIGTERM.
    fn shell_ignores_sigterm(&self, uid: &str, container: &str) -> bool {
        let Some(pod) = self.pod(uid) else { return false };
        let spec = pod.spec.unwrap_or_default();
        spec.init_containers
            .iter()
            .flatten()
            .chain(&spec.containers)
            .find(|c| c.name == container)
            .is_some_and(podvisor_lint::shell_ignores_sigterm)
    }

    /// For a failed pod of a Job (`namespace/name`): when the Job controller makes the next one,
    /// and which attempt of how many that is, or that the back-off limit is reached.
    fn job_retry(&self, pod: &str) -> Option<String> {
        let (ns, name) = pod.split_once('/')?;
        let store = self.store.as_ref()?;
        let obj = store.get(&Key::new(Resource::Pods, ns, name))?;
        let owner = obj.pointer("/metadata/ownerReferences")?.as_array()?.iter().find(|o| o["kind"] == "Job")?;
        let job_name = owner["name"].as_str()?;
        let job = store.get(&Key::new(Resource::Jobs, ns, job_name))?;
        let failing = job
            .pointer("/status/conditions")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .find(|c| matches!(c["type"].as_str(), Some("Failed" | "FailureTarget")) && c["status"] == "True");
        if let Some(c) = failing {
            return Some(format!(
                "job/{job_name}: no retry: {}",
                c["message"].as_str().unwrap_or("the Job has failed")
            ));
        }
        let limit = job.pointer("/spec/backoffLimit").and_then(Value::as_i64).unwrap_or(6);
        let uid = owner["uid"].as_str().unwrap_or("");
        let failed = store
            .list(Resource::Pods, Some(ns))
            .0
            .iter()
            .filter(|p| p.pointer("/metadata/ownerReferences/0/uid").and_then(Value::as_str) == Some(uid))
            .filter(|p| p.pointer("/status/phase").and_then(Value::as_str) == Some("Failed"))
            .count() as i64;
        if failed > limit {
            return Some(format!("job/{job_name}: no retry: {failed} failed pods, past backoffLimit {limit}"));
        }
        let delay = podvisor_cluster::controllers::jobs::job_backoff(u32::try_from(failed).unwrap_or(u32::MAX));
        Some(format!(
            "job/{job_name}: retrying in {} s, attempt {} of {}",
            delay.as_secs(),
            failed + 1,
            limit.saturating_add(1)
        ))
    }

    /// The grace period of the pod with `uid`, in seconds.
    fn grace(&self, uid: &str) -> i64 {
        let pod = self.pod(uid);
        pod.and_then(|p| p.spec.and_then(|s| s.termination_grace_period_seconds)).unwrap_or(30)
    }

    /// When `container` starts while a sidecar before it has a readinessProbe that has not
    /// passed: a word that this is how Kubernetes works (readiness never holds back the next
    /// container; a startupProbe does), since many manifests say otherwise in their comments.
    fn readiness_note(&self, uid: &str, container: &str) -> Option<String> {
        let pod = self.pod(uid)?;
        let spec = pod.spec.as_ref()?;
        let inits = spec.init_containers.as_deref().unwrap_or_default();
        let before = match inits.iter().position(|c| c.name == container) {
            Some(i) => &inits[..i],
            None => inits,
        };
        let status = pod.status.clone().unwrap_or_default();
        let ready = |name: &str| status.init_container_statuses.iter().flatten().any(|s| s.name == name && s.ready);
        let waiting: Vec<&str> = before
            .iter()
            .filter(|c| c.restart_policy.as_deref() == Some("Always") && c.readiness_probe.is_some())
            .filter(|c| !ready(&c.name))
            .map(|c| c.name.as_str())
            .collect();
        (!waiting.is_empty()).then(|| {
            format!(
                "note: started before sidecar {} passed its readinessProbe; readiness never holds back \
                 the next container, only a startupProbe (or postStart hook) does",
                waiting.join(", ")
            )
        })
    }
}
