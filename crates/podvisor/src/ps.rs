//! `podvisor ps [-a]`: the pods of a data directory, read from the machine rather than from an
//! API, so it answers for the pods of a `podvisor run` (whose objects live in its memory), of
//! a `serve`, and of one that left its pods running or was killed.
//!
//! A pod is known by its log directory (`logs/<namespace>_<name>_<uid>`, kept after it ends); a
//! container runs while its monitor runs and has recorded no end; the exit of its last instance
//! is the end the node recorded beside its log.

use std::io::Write;
use std::path::Path;

use podvisor_node::pod_logs::PodLogs;

/// Options of `podvisor ps`.
pub struct Options {
    /// Pods that have ended too (whose logs are kept), not only those with something up.
    pub all: bool,
}

/// One container's last instance.
struct Container {
    restarts: u32,
    running: bool,
    exit: Option<i64>,
}

/// One row of the table.
struct Row {
    namespace: String,
    name: String,
    running: usize,
    containers: usize,
    status: &'static str,
    restarts: u32,
    age: String,
}

fn container(data: &Path, pod: &PodLogs, name: &str) -> Container {
    let attempt = pod.attempts(name).last().copied().unwrap_or(0);
    let id = format!("podvisor-{}-{name}-{attempt}", pod.uid);
    let bundle = podvisor_node::bundles_dir(&data.join(podvisor_runtime::state::STATE), &pod.uid).join(&id);
    // One an earlier version made is in the pod's run directory.
    let legacy = data.join("run").join(&pod.uid).join("containers").join(&id);
    let bundle = if bundle.exists() || !legacy.exists() { bundle } else { legacy };
    let recorded = std::fs::read(podvisor_runtime::logs::end_path(&pod.dir, name, attempt))
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .and_then(|v| v["exitCode"].as_i64());
    let ended = podvisor_runtime::monitor::ended(&bundle).map(|e| i64::from(e.code));
    let running =
        recorded.is_none() && ended.is_none() && podvisor_runtime::monitor::running_pid(&bundle, &id).is_some();
    Container { restarts: attempt, running, exit: recorded.or(ended) }
}

fn row(data: &Path, pod: &PodLogs, namespace: &str, now: jiff::Timestamp) -> Row {
    let sidecars = pod.sidecars();
    let names = pod.containers();
    let containers: Vec<Container> = names.iter().map(|c| container(data, pod, c)).collect();
    // A pod's outcome is its other containers': a sidecar is stopped (143, 137) by design.
    let deciding: Vec<&Container> =
        names.iter().zip(&containers).filter(|(n, _)| !sidecars.contains(n)).map(|(_, c)| c).collect();
    let running = containers.iter().filter(|c| c.running).count();
    let up = pod.running(data);
    let status = if running > 0 {
        "Running"
    } else if up {
        // The sandbox is there but nothing runs: starting, stopping, or left by a crash.
        "Waiting"
    } else if deciding.iter().any(|c| c.exit.is_some_and(|e| e != 0)) {
        "Error"
    } else if deciding.iter().all(|c| c.exit == Some(0)) {
        "Completed"
    } else {
        "Unknown"
    };
    let since = std::fs::metadata(&pod.dir).and_then(|m| m.created().or_else(|_| m.modified())).ok();
    let age = since
        .and_then(|t| jiff::Timestamp::try_from(t).ok())
        .map(|t| podvisor_objects::human_duration(now.duration_since(t)))
        .unwrap_or_else(|| "<unknown>".into());
    Row {
        namespace: namespace.to_string(),
        name: pod.name().to_string(),
        running,
        containers: containers.len(),
        status,
        restarts: containers.iter().map(|c| c.restarts).sum(),
        age,
    }
}

/// Prints the table of the pods of `data`.
pub fn run(out: &mut impl Write, data: &Path, opts: Options) -> anyhow::Result<bool> {
    let now = jiff::Timestamp::now();
    let mut rows = Vec::new();
    for e in std::fs::read_dir(data.join("logs")).into_iter().flatten().flatten() {
        let file = e.file_name().to_string_lossy().into_owned();
        // `<namespace>_<name>_<uid>`: neither a namespace nor a pod name holds `_`.
        let mut parts = file.splitn(3, '_');
        let (Some(namespace), Some(name), Some(uid)) = (parts.next(), parts.next(), parts.next()) else { continue };
        let pod = PodLogs::of(data, namespace, name, uid);
        let r = row(data, &pod, namespace, now);
        if opts.all || r.status == "Running" || r.status == "Waiting" {
            rows.push(r);
        }
    }
    rows.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    let header = ["NAMESPACE", "NAME", "RUNNING", "STATUS", "RESTARTS", "AGE"].map(String::from);
    let mut table = vec![header];
    for r in rows {
        table.push([
            r.namespace,
            r.name,
            format!("{}/{}", r.running, r.containers),
            r.status.to_string(),
            r.restarts.to_string(),
            r.age,
        ]);
    }
    if table.len() == 1 {
        let what = if opts.all { "No pods have run" } else { "No pods are running (-a for the ended ones)" };
        writeln!(out, "{what} with data directory {}.", data.display())?;
        return Ok(true);
    }
    let widths: Vec<usize> = (0..6).map(|i| table.iter().map(|r| r[i].len()).max().unwrap_or(0)).collect();
    for r in &table {
        let cells: Vec<String> = r.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
        writeln!(out, "{}", cells.join("   ").trim_end())?;
    }
    Ok(true)
}
