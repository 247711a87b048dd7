//! `podvisor logs POD [-c CONTAINER] [-f] [--previous] [--timestamps]`: a container's output
//! from its CRI log file, during or after `podvisor run`.

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
    let pod = PodLogs::find(data, &o.namespace, &o.pod)?;
    let container = pod.container(o.container.as_deref())?;
    let path = pod.file(&container, o.previous)?;
    let mut tail = Tail::open(&path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    print(out, &mut tail, o.timestamps)?;
    if o.follow && !o.previous {
        follow(&pod, data, &path, &mut || print(out, &mut tail, o.timestamps).map(|()| true))?;
    }
    Ok(true)
}
