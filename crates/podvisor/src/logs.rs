//! `podvisor logs POD [-c CONTAINER] [-f] [--previous] [--timestamps]`: a container's output
//! from its CRI log file, during or after `podvisor run`.

use std::io::{Read, Write};
use std::path::Path;

use podvisor_node::pod_logs::PodLogs;
use podvisor_runtime::logs::{Joiner, Record};

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

/// Prints the records appended to a log file since the last call.
struct Tail {
    file: std::fs::File,
    partial: Vec<u8>,
    joiner: Joiner,
    timestamps: bool,
}

impl Tail {
    fn print_new(&mut self, out: &mut impl Write) -> std::io::Result<()> {
        let mut bytes = std::mem::take(&mut self.partial);
        self.file.read_to_end(&mut bytes)?;
        // Only whole records: a record being written waits for its newline.
        let end = bytes.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
        self.partial = bytes.split_off(end);
        for r in String::from_utf8_lossy(&bytes).lines().filter_map(Record::parse) {
            if let Some((time, _, line)) = self.joiner.push(r) {
                if self.timestamps {
                    write!(out, "{time} ")?;
                }
                writeln!(out, "{line}")?;
            }
        }
        out.flush()
    }
}

/// Prints the log; returns whether it was found.
pub fn run(out: &mut impl Write, data: &Path, o: Options) -> anyhow::Result<bool> {
    let pod = PodLogs::find(data, &o.namespace, &o.pod)?;
    let container = pod.container(o.container.as_deref())?;
    let path = pod.file(&container, o.previous)?;
    let file = std::fs::File::open(&path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    let mut tail = Tail { file, partial: Vec::new(), joiner: Joiner::default(), timestamps: o.timestamps };
    tail.print_new(out)?;
    if o.follow && !o.previous {
        follow(&pod, data, &path, &mut || tail.print_new(out))?;
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
    inotify::add_watch(&fd, file, inotify::WatchFlags::MODIFY)?;
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
