//! `podvisor run`: the Pods, Jobs and Deployments of the manifests on real containers, in the
//! foreground. Container output is prefixed `pod/container | `, each lifecycle step gets a line,
//! Ctrl-C deletes everything with the ordered graceful shutdown (a second Ctrl-C kills at once),
//! and the exit code says whether every Pod and Job succeeded.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;

use jiff::Timestamp;
use podvisor_manifest::{Manifest, Object};
use podvisor_node::workloads::{JobOutcome, run_deployment, run_job};
use podvisor_node::{Node, NodeConfig, NodeEvent, What};
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
    /// The data directory.
    pub data_dir: PathBuf,
    /// The OCI runtime binary.
    pub runtime: PathBuf,
    /// Where to write the timeline JSON.
    pub timeline: Option<PathBuf>,
    /// How to reach registries.
    pub pull: podvisor_runtime::pull::PullSettings,
}

const COLOURS: [&str; 6] = ["36", "33", "35", "32", "34", "31"];

struct Printer {
    start: Timestamp,
    colour: bool,
    /// On a terminal, the pod table kept under the output, and how many lines it has.
    table: Option<(Node, usize)>,
    colours: BTreeMap<String, &'static str>,
    timeline: Option<Vec<NodeEvent>>,
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
            let c = podvisor_api::columns::pod_columns(&pod, now);
            let since = pod.status.as_ref().and_then(|s| s.start_time.as_ref()).map(|t| t.0).unwrap_or(now);
            let age = podvisor_api::columns::human_duration(now.duration_since(since));
            rows.push((short(&h.key()).to_string(), c.ready, c.status, c.restarts, age));
        }
        let w = |f: fn(&(String, String, String, String, String)) -> &String| {
            rows.iter().map(|r| f(r).len()).max().unwrap_or(0)
        };
        let (a, b, c, d) = (w(|r| &r.0), w(|r| &r.1), w(|r| &r.2), w(|r| &r.3));
        for r in &rows {
            writeln!(out, "\x1b[2m{:<a$}   {:<b$}   {:<c$}   {:<d$}   {}\x1b[0m", r.0, r.1, r.2, r.3, r.4)?;
        }
        *lines = rows.len();
        out.flush()
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
            What::Started { container, attempt } => Some(line(
                format!("pod/{pod} {container}:"),
                if *attempt == 0 { "started".into() } else { format!("started (restart {attempt})") },
            )),
            What::Exited { container, exit_code, reason, .. } => {
                Some(line(format!("pod/{pod} {container}:"), format!("exited {exit_code} ({reason})")))
            }
            What::Signalled { container, signal, why } => {
                let hint = if signal == "SIGKILL" && why.contains("grace period is over") {
                    " (a PID 1 without a handler for the stop signal ignores it)"
                } else {
                    ""
                };
                Some(line(format!("pod/{pod} {container}:"), format!("sent {signal}: {why}{hint}")))
            }
            What::Handler { container, handler, result } => {
                Some(line(format!("pod/{pod} {container}:"), format!("{handler} hook: {result}")))
            }
            What::Event { kind, reason, message, .. } => {
                let noisy =
                    *kind == "Normal" && matches!(reason.as_str(), "Pulled" | "Created" | "Started" | "Scheduled");
                (!noisy).then(|| line(format!("pod/{pod}"), format!("event {reason}: {message}")))
            }
            What::Phase { phase } => Some(line(format!("pod/{pod}"), format!("phase {phase}"))),
            What::Finished { phase } => Some(line(format!("pod/{pod}"), format!("finished: {phase}"))),
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

/// Runs the workloads of `manifests` until they end or the user interrupts.
pub fn run(out: &mut impl Write, manifests: Vec<Manifest>, opts: Options) -> anyhow::Result<Outcome> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(run_async(out, manifests, opts))
}

async fn run_async(out: &mut impl Write, manifests: Vec<Manifest>, opts: Options) -> anyhow::Result<Outcome> {
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
    let (tx, mut rx) = mpsc::unbounded_channel();
    let node = Node::open(
        NodeConfig { data_dir: opts.data_dir.clone(), runtime: opts.runtime.clone(), pull: opts.pull.clone() },
        tx,
    )
    .await?;
    let tty = std::io::stdout().is_terminal();
    let mut printer = Printer {
        start: Timestamp::now(),
        colour: tty,
        table: tty.then(|| (node.clone(), 0)),
        colours: BTreeMap::new(),
        timeline: opts.timeline.as_ref().map(|_| Vec::new()),
    };
    let mut work = tokio::task::JoinSet::new();
    let mut has_deployment = false;
    for m in &manifests {
        match &m.object {
            Object::ConfigMap(cm) => node.objects().put_config_map((**cm).clone()),
            Object::Secret(s) => node.objects().put_secret((**s).clone()),
            _ => {}
        }
    }
    for m in manifests {
        let node = node.clone();
        match m.object {
            Object::Pod(pod) => {
                let h = node.run_pod(*pod);
                work.spawn(async move {
                    let st = h.finished().await;
                    let phase = st.phase.unwrap_or_default();
                    (format!("pod/{}", short(&h.key())), phase == "Succeeded", phase)
                });
            }
            Object::Job(job) => {
                work.spawn(async move {
                    let name = format!("job/{}", job.metadata.name.clone().unwrap_or_default());
                    match run_job(&node, &job).await {
                        JobOutcome::Complete => (name, true, "Complete".to_string()),
                        JobOutcome::Failed { reason, message } => (name, false, format!("Failed: {reason}: {message}")),
                        JobOutcome::Stopped => (name, false, "stopped".to_string()),
                    }
                });
            }
            Object::Deployment(d) => {
                has_deployment = true;
                work.spawn(async move {
                    run_deployment(&node, &d).await;
                    (format!("deployment/{}", d.metadata.name.clone().unwrap_or_default()), true, "stopped".into())
                });
            }
            Object::ConfigMap(_) | Object::Secret(_) => {}
        }
    }
    if has_deployment {
        writeln!(out, "podvisor: Deployments run until interrupted (Ctrl-C)")?;
    }
    let mut sigint = signal(SignalKind::interrupt())?;
    let mut sigterm = signal(SignalKind::terminate())?;
    let mut interrupts = 0;
    let mut results = Vec::new();
    let mut workloads_done = work.is_empty();
    loop {
        if workloads_done && node.pods().iter().all(|p| p.is_finished()) {
            // Drain what the drivers published before they finished.
            while let Ok(e) = rx.try_recv() {
                printer.print(out, e)?;
            }
            break;
        }
        tokio::select! {
            Some(e) = rx.recv() => printer.print(out, e)?,
            r = work.join_next(), if !workloads_done => match r {
                Some(Ok(res)) => results.push(res),
                Some(Err(e)) => anyhow::bail!("a workload task failed: {e}"),
                None => workloads_done = true,
            },
            _ = async { tokio::select! { _ = sigint.recv() => {}, _ = sigterm.recv() => {} } } => {
                interrupts += 1;
                printer.erase(out)?;
                if interrupts == 1 {
                    writeln!(out, "podvisor: interrupted: deleting every pod with its grace period (interrupt again to kill at once)")?;
                    node.shut_down();
                } else {
                    writeln!(out, "podvisor: killing every container now")?;
                    node.force_kill();
                }
            }
        }
    }
    printer.erase(out)?;
    printer.table = None;
    let elapsed = Timestamp::now().duration_since(printer.start).as_secs_f64();
    results.sort();
    let mut ok = true;
    for (name, good, what) in &results {
        ok &= *good;
        writeln!(out, "{name}: {what}")?;
    }
    writeln!(out, "podvisor: done in {elapsed:.3}s")?;
    if let (Some(path), Some(tl)) = (&opts.timeline, &printer.timeline) {
        std::fs::write(path, serde_json::to_vec_pretty(tl)?).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    }
    Ok(if interrupts > 0 { Outcome::Interrupted } else { Outcome::Done(ok) })
}
