//! `podvisor logs POD [-c CONTAINER] [-f] [--previous] [--timestamps]`: a container's output
//! from its CRI log file, during or after `podvisor run`.

use std::io::Write;
use std::path::Path;

use podvisor_node::pod_logs::PodLogs;
use podvisor_runtime::logs::Record;

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

fn print(out: &mut impl Write, text: &str, pending: &mut String, timestamps: bool) -> std::io::Result<()> {
    for raw in text.lines() {
        let Some(r) = Record::parse(raw) else { continue };
        if pending.is_empty() && timestamps {
            pending.push_str(&format!("{} ", r.time));
        }
        pending.push_str(&r.content);
        if !r.partial {
            writeln!(out, "{pending}")?;
            pending.clear();
        }
    }
    Ok(())
}

/// Prints the log; returns whether it was found.
pub fn run(out: &mut impl Write, data: &Path, o: Options) -> anyhow::Result<bool> {
    let pod = PodLogs::find(data, &o.namespace, &o.pod)?;
    let container = pod.container(o.container.as_deref())?;
    let file = pod.file(&container, o.previous)?;
    let mut pending = String::new();
    let mut offset = 0usize;
    let mut read_more = |out: &mut dyn FnMut(&str) -> std::io::Result<()>| -> std::io::Result<()> {
        let bytes = std::fs::read(&file)?;
        if bytes.len() > offset {
            // Only whole records: a line being written waits for its newline.
            let end = bytes[offset..].iter().rposition(|b| *b == b'\n').map(|i| offset + i + 1).unwrap_or(offset);
            out(&String::from_utf8_lossy(&bytes[offset..end]))?;
            offset = end;
        }
        Ok(())
    };
    let mut emit = |t: &str| print(out, t, &mut pending, o.timestamps);
    read_more(&mut emit)?;
    if o.follow && !o.previous {
        follow(&pod, data, &file, &mut || read_more(&mut emit))?;
    }
    Ok(true)
}

/// Waits on inotify for the log to grow, until the pod stops running (its run directory goes).
fn follow(
    pod: &PodLogs,
    data: &Path,
    file: &Path,
    more: &mut dyn FnMut() -> std::io::Result<()>,
) -> anyhow::Result<()> {
    use rustix::fs::inotify;
    let fd = inotify::init(inotify::CreateFlags::CLOEXEC)?;
    let dir = file.parent().unwrap_or(Path::new("."));
    inotify::add_watch(&fd, dir, inotify::WatchFlags::MODIFY | inotify::WatchFlags::CREATE)?;
    inotify::add_watch(&fd, data.join("run"), inotify::WatchFlags::DELETE)?;
    let mut buf = [std::mem::MaybeUninit::<u8>::uninit(); 4096];
    while pod.running(data) {
        let mut reader = inotify::Reader::new(&fd, &mut buf);
        let _ = reader.next()?;
        more()?;
    }
    more()?;
    Ok(())
}
