//! `podvisor run`: the Pods, Jobs and Deployments of the manifests on real containers, in the
//! foreground. Container output is prefixed `pod/container | `, each lifecycle step gets a line,
//! Ctrl-C deletes everything with the ordered graceful shutdown (a second Ctrl-C kills at once),
//! and the exit code says whether every Pod and Job succeeded.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;

use jiff::Timestamp;
use podvisor_manifest::Manifest;

use podvisor_apiserver::admission;
use podvisor_cluster::{Cluster, Key, Store};
use podvisor_node::{Node, NodeEvent, What};
use podvisor_objects::kinds::Resource;
use serde_json::Value;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;

/// How a run ended.
pub enum Outcome {
    /// Everything ran to its end; `true` when every Pod and Job succeeded.
    Done(bool),
    /// Stopped by Ctrl-C (or SIGTERM).
    Interrupted,
}

/// Options of `podvisor run`.
pub struct Options {
    /// The node to run the pods on.
    pub node: podvisor_cluster::NodeOptions,
    /// Where to write the timeline JSON.
    pub timeline: Option<PathBuf>,
    /// Why the node's runtime was chosen.
    pub runtime_why: &'static str,
    /// The pull policy for every container, overriding the manifests' (`--pull`).
    pub pull: Option<PullPolicy>,
    /// When to colour the output (and keep the pod table under it).
    pub colour: crate::lint::Colour,
    /// Stop everything at the first image that cannot be pulled or the first Pod or Job that
    /// fails, instead of backing off and retrying as the kubelet and the Job controller do.
    pub fail_fast: bool,
}

/// `--pull`: when images are pulled, for every container of the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PullPolicy {
    /// Never: only what the local store has (`imagePullPolicy: Never`).
    Never,
    /// When not in the local store (`IfNotPresent`).
    Missing,
    /// At every start (`Always`).
    Always,
}

/// The pod specs an object carries, to change.
fn pod_specs(object: &mut podvisor_manifest::Object) -> Vec<&mut k8s_openapi::api::core::v1::PodSpec> {
    use podvisor_manifest::Object as O;
    match object {
        O::Pod(p) => p.spec.iter_mut().collect(),
        O::Job(j) => j.spec.iter_mut().filter_map(|s| s.template.spec.as_mut()).collect(),
        O::CronJob(c) => c
            .spec
            .iter_mut()
            .filter_map(|s| s.job_template.spec.as_mut())
            .filter_map(|s| s.template.spec.as_mut())
            .collect(),
        O::Deployment(d) => d.spec.iter_mut().filter_map(|s| s.template.spec.as_mut()).collect(),
        O::StatefulSet(d) => d.spec.iter_mut().filter_map(|s| s.template.spec.as_mut()).collect(),
        O::DaemonSet(d) => d.spec.iter_mut().filter_map(|s| s.template.spec.as_mut()).collect(),
        O::ConfigMap(_) | O::Secret(_) | O::Service(_) | O::PersistentVolumeClaim(_) => Vec::new(),
    }
}

/// Applies `--pull` to every container, then names up front the images the local store lacks:
/// an error with `--pull never` (nothing starts), a line otherwise.
fn images_up_front(out: &mut impl Write, manifests: &mut [Manifest], opts: &Options) -> anyhow::Result<()> {
    let policy = opts.pull.map(|p| match p {
        PullPolicy::Never => "Never",
        PullPolicy::Missing => "IfNotPresent",
        PullPolicy::Always => "Always",
    });
    let mut images = std::collections::BTreeSet::new();
    let mut never = std::collections::BTreeSet::new();
    for m in manifests.iter_mut() {
        for spec in pod_specs(&mut m.object) {
            for c in spec.init_containers.iter_mut().flatten().chain(spec.containers.iter_mut()) {
                if let Some(p) = policy {
                    c.image_pull_policy = Some(p.to_string());
                }
                let image = c.image.clone().unwrap_or_default();
                if c.image_pull_policy.as_deref() == Some("Never") {
                    never.insert(image.clone());
                }
                images.insert(image);
            }
        }
    }
    let store = podvisor_runtime::image::ImageStore::open(&opts.node.data_dir)?;
    let missing: Vec<&String> = images.iter().filter(|i| store.resolve(i).is_none()).collect();
    let refused: Vec<&String> = missing.iter().copied().filter(|i| never.contains(*i)).collect();
    if !refused.is_empty() {
        let names: Vec<&str> = refused.iter().map(|s| s.as_str()).collect();
        anyhow::bail!(
            "not in the local image store, and not to be pulled (imagePullPolicy Never): {}; nothing was started (load one with `podvisor image load FILE --tag NAME`)",
            names.join(", ")
        );
    }
    if !missing.is_empty() {
        let names: Vec<&str> = missing.iter().map(|s| s.as_str()).collect();
        writeln!(out, "podvisor: to pull, not in the local image store: {}", names.join(", "))?;
    }
    Ok(())
}

const COLOURS: [&str; 6] = ["36", "33", "35", "32", "34", "31"];

struct Printer {
    node: Node,
    store: std::sync::Arc<Store>,
    start: Timestamp,
    colour: bool,
    /// On a terminal, the pod table kept under the output, and how many lines it has.
    table: Option<(Node, usize)>,
    colours: BTreeMap<String, &'static str>,
    timeline: Option<Vec<NodeEvent>>,
    /// On a terminal, the containers waiting out a grace period, by pod UID and container:
    /// their pod, when they are killed, and whether their PID 1 ignores the stop signal.
    countdowns: BTreeMap<(String, String), Countdown>,
    /// Whether the user has pressed Ctrl-C once (a second one kills).
    interrupted: bool,
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

fn short(pod: &str) -> &str {
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
    fn erase(&mut self, out: &mut impl Write) -> std::io::Result<()> {
        if let Some((_, lines)) = &mut self.table
            && *lines > 0
        {
            write!(out, "\x1b[{lines}A\x1b[J")?;
            *lines = 0;
        }
        Ok(())
    }

    /// Draws kubectl's `get pods` table of every pod under the output.
    fn draw(&mut self, out: &mut impl Write) -> std::io::Result<()> {
        let Some((node, lines)) = &mut self.table else { return Ok(()) };
        let now = Timestamp::now();
        let mut rows = vec![(
            "NAME".to_string(),
            "READY".to_string(),
            "STATUS".to_string(),
            "RESTARTS".to_string(),
            "AGE".to_string(),
        )];
        for h in node.pods() {
            let pod = k8s_openapi::api::core::v1::Pod { status: Some(h.status()), ..h.pod().clone() };
            let c = podvisor_objects::columns::pod_columns(&pod, now);
            let since = pod.status.as_ref().and_then(|s| s.start_time.as_ref()).map(|t| t.0).unwrap_or(now);
            let age = podvisor_objects::columns::human_duration(now.duration_since(since));
            rows.push((short(&h.key()).to_string(), c.ready, c.status, c.restarts, age));
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
        *lines = rows.len() + self.countdowns.len();
        out.flush()
    }

    /// Whether a countdown is shown (the table is then drawn again every second).
    fn counting(&self) -> bool {
        self.table.is_some() && !self.countdowns.is_empty()
    }

    /// Draws the table again, with the countdowns' new figures.
    fn redraw(&mut self, out: &mut impl Write) -> std::io::Result<()> {
        self.erase(out)?;
        self.draw(out)
    }

    fn print(&mut self, out: &mut impl Write, e: NodeEvent) -> std::io::Result<()> {
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
    /// Whether `container` of the pod with `uid` runs a shell as PID 1 that ignores SIGTERM.
    fn shell_ignores_sigterm(&self, uid: &str, container: &str) -> bool {
        let Some(handle) = self.node.pods().into_iter().find(|p| p.uid() == uid) else { return false };
        let spec = handle.pod().spec.clone().unwrap_or_default();
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
        let obj = self.store.get(&Key::new(Resource::Pods, ns, name))?;
        let owner = obj.pointer("/metadata/ownerReferences")?.as_array()?.iter().find(|o| o["kind"] == "Job")?;
        let job_name = owner["name"].as_str()?;
        let job = self.store.get(&Key::new(Resource::Jobs, ns, job_name))?;
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
        let failed = self
            .store
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
        let handle = self.node.pods().into_iter().find(|p| p.uid() == uid);
        handle.and_then(|h| h.pod().spec.as_ref().and_then(|s| s.termination_grace_period_seconds)).unwrap_or(30)
    }

    /// When `container` starts while a sidecar before it has a readinessProbe that has not
    /// passed: a word that this is how Kubernetes works (readiness never holds back the next
    /// container; a startupProbe does), since many manifests say otherwise in their comments.
    fn readiness_note(&self, uid: &str, container: &str) -> Option<String> {
        let handle = self.node.pods().into_iter().find(|p| p.uid() == uid)?;
        let spec = handle.pod().spec.as_ref()?;
        let inits = spec.init_containers.as_deref().unwrap_or_default();
        let before = match inits.iter().position(|c| c.name == container) {
            Some(i) => &inits[..i],
            None => inits,
        };
        let status = handle.status();
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

/// Whether `e` says an image could not be pulled (the kubelet's `Failed` event for a pull).
fn is_pull_failure(e: &NodeEvent) -> bool {
    matches!(&e.what, What::Event { reason, message, .. } if reason == "Failed" && message.starts_with("Failed to pull image"))
}

/// How a Pod or Job ended: its name, whether it succeeded, and in words.
fn outcome(store: &Store, key: &Key) -> Option<(String, bool, String)> {
    let obj = store.get(key)?;
    let name = format!("{}/{}", key.resource.info().singular, key.name);
    if key.resource == Resource::Pods {
        let phase = obj.pointer("/status/phase").and_then(Value::as_str)?;
        return matches!(phase, "Succeeded" | "Failed").then(|| (name, phase == "Succeeded", phase.to_string()));
    }
    let conditions = obj.pointer("/status/conditions").and_then(Value::as_array)?;
    let c = conditions.iter().find(|c| c["status"] == "True" && (c["type"] == "Complete" || c["type"] == "Failed"))?;
    let s = |f: &str| c.get(f).and_then(Value::as_str).unwrap_or("").to_string();
    if s("type") == "Complete" {
        Some((name, true, "Complete".into()))
    } else {
        Some((name, false, format!("Failed: {}: {}", s("reason"), s("message"))))
    }
}

/// Runs the workloads of `manifests` until they end or the user interrupts.
pub fn run(out: &mut impl Write, manifests: Vec<Manifest>, opts: Options) -> anyhow::Result<Outcome> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(run_async(out, manifests, opts))
}

async fn run_async(out: &mut impl Write, mut manifests: Vec<Manifest>, opts: Options) -> anyhow::Result<Outcome> {
    // As the API server refuses a second create of one name, nothing starts when names repeat.
    let mut names = std::collections::BTreeSet::new();
    for m in &manifests {
        let ns = m.object.metadata().namespace.as_deref().unwrap_or("default");
        if !names.insert((m.object.kind(), ns.to_string(), m.object.name().to_string())) {
            anyhow::bail!(
                "{}: {}s {:?} already exists (in namespace {ns:?}); nothing was started",
                m.source,
                m.object.kind().to_lowercase(),
                m.object.name()
            );
        }
    }
    let store = Store::in_memory();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let cluster = Cluster::open(store.clone(), opts.node.clone(), Some(tx)).await?;
    crate::node_args::remember_runtime(&opts.node.runtime, &opts.node.data_dir);
    writeln!(out, "podvisor: OCI runtime {} ({})", opts.node.runtime.display(), opts.runtime_why)?;
    images_up_front(out, &mut manifests, &opts)?;
    let node = cluster.node().clone();
    let mut changes = store.subscribe();
    // A terminal that can move the cursor keeps the pod table; colour unless NO_COLOR says no.
    let tty = std::io::stdout().is_terminal() && std::env::var("TERM").map_or(true, |t| t != "dumb");
    let (colour, tty) = match opts.colour {
        crate::lint::Colour::Always => (true, tty),
        crate::lint::Colour::Never => (false, false),
        crate::lint::Colour::Auto => (tty && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()), tty),
    };
    let mut printer = Printer {
        node: node.clone(),
        store: store.clone(),
        start: Timestamp::now(),
        colour,
        table: tty.then(|| (node.clone(), 0)),
        colours: BTreeMap::new(),
        timeline: opts.timeline.as_ref().map(|_| Vec::new()),
        countdowns: BTreeMap::new(),
        interrupted: false,
    };
    // The workloads whose outcome is the run's: Pods and Jobs end, Deployments run until
    // interrupted.
    let mut pending: Vec<Key> = Vec::new();
    let mut has_deployment = false;
    for m in manifests {
        let resource = Resource::of_kind(m.object.api_version(), m.object.kind())
            .ok_or_else(|| anyhow::anyhow!("{}: {} is not served", m.source, m.object.kind()))?;
        // The manifest went through admission's typed step when it was loaded (so that its
        // errors have lines and columns); what remains is the stored form and the create.
        let mut obj =
            admission::admit_prepared(resource, &m.object).map_err(|e| anyhow::anyhow!("{}: {e}", m.source))?;
        admission::on_create(resource, &mut obj);
        podvisor_cluster::admission::admit_create(&store, None, resource, &mut obj)
            .map_err(|e| anyhow::anyhow!("{}: {e}", m.source))?;
        let created = store
            .create_checked(resource, obj, |o, existing| {
                podvisor_apiserver::services::allocate_for(resource, o, existing).map_err(anyhow::Error::from)
            })
            .map_err(|e| anyhow::anyhow!("{}: {e}", m.source))?;
        match resource {
            Resource::Pods | Resource::Jobs => pending.push(Key::of(resource, &created)),
            Resource::Deployments | Resource::CronJobs => has_deployment = true,
            _ => {}
        }
    }
    if has_deployment {
        writeln!(out, "podvisor: Deployments and CronJobs run until interrupted (Ctrl-C)")?;
    }
    let mut sigint = signal(SignalKind::interrupt())?;
    let mut sigterm = signal(SignalKind::terminate())?;
    let mut interrupts = 0;
    // Why `--fail-fast` stopped the run, once it has.
    let mut failed_fast: Option<String> = None;
    let mut results = Vec::new();
    loop {
        pending.retain(|key| match outcome(&store, key) {
            Some(r) => {
                if opts.fail_fast && !r.1 && failed_fast.is_none() {
                    failed_fast = Some(format!("{} {}", r.0, r.2));
                }
                results.push(r);
                false
            }
            None => true,
        });
        if failed_fast.is_some() && interrupts == 0 {
            interrupts = 1;
            printer.erase(out)?;
            let why = failed_fast.as_deref().unwrap_or_default();
            writeln!(out, "podvisor: --fail-fast: {why}: deleting every pod with its grace period")?;
            cluster.shut_down();
        }
        let idle = node.pods().iter().all(|p| p.is_finished());
        if (pending.is_empty() && !has_deployment || interrupts > 0) && idle {
            // Drain what the drivers published before they finished.
            while let Ok(e) = rx.try_recv() {
                printer.print(out, e)?;
            }
            break;
        }
        tokio::select! {
            Some(e) = rx.recv() => {
                if opts.fail_fast
                    && failed_fast.is_none()
                    && is_pull_failure(&e)
                    && let What::Event { message, .. } = &e.what
                {
                    failed_fast = Some(format!("pod/{}: {message}", short(&e.pod)));
                }
                printer.print(out, e)?
            }
            _ = changes.recv() => {}
            _ = tokio::time::sleep(std::time::Duration::from_secs(1)), if printer.counting() => printer.redraw(out)?,
            _ = async { tokio::select! { _ = sigint.recv() => {}, _ = sigterm.recv() => {} } } => {
                interrupts += 1;
                printer.interrupted = true;
                printer.erase(out)?;
                if interrupts == 1 {
                    writeln!(out, "podvisor: interrupted: deleting every pod with its grace period (interrupt again to kill at once)")?;
                    cluster.shut_down();
                } else {
                    writeln!(out, "podvisor: killing every container now")?;
                    cluster.force_kill();
                }
            }
        }
    }
    for key in pending {
        results.push((format!("{}/{}", key.resource.info().singular, key.name), false, "stopped".into()));
    }
    // A run `--fail-fast` stopped ends as a failure, not as an interruption.
    if failed_fast.is_some() {
        interrupts = 0;
        results.push(("podvisor".into(), false, "stopped by --fail-fast".into()));
    }
    printer.erase(out)?;
    printer.table = None;
    cluster.close_services().await;
    let elapsed = Timestamp::now().duration_since(printer.start).as_secs_f64();
    results.sort();
    let mut ok = interrupts == 0;
    for (name, good, what) in &results {
        ok &= *good;
        writeln!(out, "{name}: {what}")?;
    }
    writeln!(out, "podvisor: done in {elapsed:.3}s")?;
    if let (Some(path), Some(tl)) = (&opts.timeline, &printer.timeline) {
        if crate::timeline::picture(path).is_some() {
            let events: Vec<serde_json::Value> = tl.iter().filter_map(|e| serde_json::to_value(e).ok()).collect();
            let title = format!("podvisor run, {}", printer.start);
            let picture = podvisor_timeline::from_run_events(&title, &events, &std::collections::HashMap::new());
            crate::timeline::write(path, &picture)?;
        } else {
            std::fs::write(path, serde_json::to_vec_pretty(tl)?)
                .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        }
    }
    Ok(if interrupts > 0 { Outcome::Interrupted } else { Outcome::Done(ok) })
}
