//! `podvisor logs POD|job/NAME|deploy/NAME [-c CONTAINER] [-f] [--previous] [--timestamps]
//! [--tail N]`: a container's output from its CRI log file, during or after `podvisor run`.

use std::io::Write;
use std::path::Path;

use podvisor_node::pod_logs::{PodLogs, Tail, follow};

/// Options of `podvisor logs`.
pub struct Options {
    /// The pod.
    pub pod: String,
    /// Its namespace.
    pub namespace: String,
    /// The container.
    pub container: Option<String>,
    /// Keep printing as the container writes, until the pod stops running.
    pub follow: bool,
    /// The previous instance.
    pub previous: bool,
    /// Prefix each line with its RFC 3339 timestamp.
    pub timestamps: bool,
    /// Only the last lines.
    pub tail: Option<usize>,
}

/// Prints what a [`Tail`] read.
fn print(out: &mut impl Write, tail: &mut Tail, timestamps: bool) -> std::io::Result<()> {
    for (time, _, line) in tail.read_new()? {
        if timestamps {
            write!(out, "{time} ")?;
        }
        writeln!(out, "{line}")?;
    }
    out.flush()
}

/// Prints the log; returns whether it was found.
pub fn run(out: &mut impl Write, data: &Path, o: Options) -> anyhow::Result<bool> {
    // `job/NAME` and `deploy/NAME` name a controller's newest pod, as kubectl takes them.
    let pod = match o.pod.split_once('/') {
        Some(("job" | "jobs", owner)) => PodLogs::find_of(data, &o.namespace, owner, false)?,
        Some(("deploy" | "deployment" | "deployments", owner)) => PodLogs::find_of(data, &o.namespace, owner, true)?,
        Some(("pod" | "pods" | "po", name)) => PodLogs::find(data, &o.namespace, name)?,
        Some((kind, _)) => anyhow::bail!("logs of a {kind}: name a pod, job/NAME or deploy/NAME"),
        None => PodLogs::find(data, &o.namespace, &o.pod)?,
    };
    let container = pod.container(o.container.as_deref())?;
    let path = pod.file(&container, o.previous)?;
    let mut tail = match o.tail {
        Some(n) => {
            let (tail, lines) = Tail::open_last(&path, n).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
            for l in lines {
                if o.timestamps {
                    write!(out, "{} ", l.0)?;
                }
                writeln!(out, "{}", l.2)?;
            }
            tail
        }
        None => Tail::open(&path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?,
    };
    print(out, &mut tail, o.timestamps)?;
    if o.follow && !o.previous {
        follow(&pod, data, &path, &mut || print(out, &mut tail, o.timestamps).map(|()| true))?;
    }
    Ok(true)
}
