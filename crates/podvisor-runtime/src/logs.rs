//! Container logs in the CRI format the kubelet uses: one file per container instance,
//! `<dir>/<container>/<attempt>.log`, each line `TIMESTAMP STREAM TAG CONTENT` where TAG is `F`
//! for a full line and `P` for a part of a longer one.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use jiff::Timestamp;

/// The longest content of one log record; longer lines are split into `P` records.
pub const MAX_RECORD: usize = 16 * 1024;

/// Which output a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

impl Stream {
    /// The CRI name of the stream.
    pub fn as_str(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

/// One record of a CRI log file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// When the line was read.
    pub time: Timestamp,
    /// Its stream.
    pub stream: Stream,
    /// Whether it is only part of a line (the rest follows in the next record).
    pub partial: bool,
    /// The text, without the newline.
    pub content: String,
}

impl Record {
    /// Parses one line of a CRI log file.
    pub fn parse(line: &str) -> Option<Record> {
        let mut parts = line.splitn(4, ' ');
        let time = parts.next()?.parse().ok()?;
        let stream = match parts.next()? {
            "stdout" => Stream::Stdout,
            "stderr" => Stream::Stderr,
            _ => return None,
        };
        let partial = match parts.next()? {
            "P" => true,
            "F" => false,
            _ => return None,
        };
        Some(Record { time, stream, partial, content: parts.next().unwrap_or("").to_string() })
    }
}

/// The log file of instance `attempt` of `container` under a pod's log directory.
pub fn path(dir: &Path, container: &str, attempt: u32) -> PathBuf {
    dir.join(container).join(format!("{attempt}.log"))
}

/// The file beside the log of instance `attempt` of `container` that records how it ended, so
/// the end outlives the container as the log does.
pub fn end_path(dir: &Path, container: &str, attempt: u32) -> PathBuf {
    dir.join(container).join(format!("{attempt}.end.json"))
}

/// The mode of log files.
const LOG_MODE: u32 = 0o640;

/// Makes the log file of instance `attempt` of `container` (empty, even if one was left), and deletes the container's
/// logs and ends older than the previous instance (the kubelet keeps the current and the previous one).
pub fn prepare(dir: &Path, container: &str, attempt: u32) -> std::io::Result<PathBuf> {
    let file = path(dir, container, attempt);
    if let Some(parent) = file.parent() {
        fs::create_dir_all(parent)?;
        for e in fs::read_dir(parent)?.flatten() {
            let n = e.file_name().to_string_lossy().split('.').next().and_then(|n| n.parse::<u32>().ok());
            if n.is_some_and(|n| n + 1 < attempt) {
                let _ = fs::remove_file(e.path());
            }
        }
    }
    // Root and its group read logs, as the kubelet keeps them: a container may print secrets.
    let f = OpenOptions::new().create(true).write(true).truncate(true).mode(LOG_MODE).open(&file)?;
    f.set_permissions(std::fs::Permissions::from_mode(LOG_MODE))?;
    Ok(file)
}

/// A log file being written by a container's output pumps.
#[derive(Debug, Clone)]
pub struct Writer {
    file: Arc<Mutex<File>>,
}

impl Writer {
    /// Opens a log file for appending.
    pub fn open(file: &Path) -> std::io::Result<Writer> {
        let f = OpenOptions::new().create(true).append(true).mode(LOG_MODE).open(file)?;
        Ok(Writer { file: Arc::new(Mutex::new(f)) })
    }

    fn write(&self, stream: Stream, partial: bool, content: &str, now: Timestamp) {
        let line = format!("{} {} {} {content}\n", now, stream.as_str(), if partial { "P" } else { "F" });
        if let Ok(mut f) = self.file.lock() {
            // A full disk loses log lines, never the container.
            let _ = f.write_all(line.as_bytes());
        }
    }

    /// Copies `reader` (a container's stdout or stderr) into the log until it closes. Lines
    /// longer than [`MAX_RECORD`] become several records.
    pub fn pump(&self, mut reader: impl Read, stream: Stream) {
        let mut buf = Vec::with_capacity(4096);
        let mut chunk = [0u8; 8192];
        loop {
            let n = match reader.read(&mut chunk) {
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Ok(0) | Err(_) => 0,
                Ok(n) => n,
            };
            if n == 0 {
                if !buf.is_empty() {
                    self.write(stream, false, &String::from_utf8_lossy(&buf), Timestamp::now());
                }
                return;
            }
            buf.extend_from_slice(&chunk[..n]);
            let now = Timestamp::now();
            let mut start = 0;
            while let Some(i) = buf[start..].iter().position(|&b| b == b'\n') {
                let text = String::from_utf8_lossy(&buf[start..start + i]);
                let pieces = split(&text);
                for (k, piece) in pieces.iter().enumerate() {
                    self.write(stream, k + 1 < pieces.len(), piece, now);
                }
                start += i + 1;
            }
            buf.drain(..start);
            while buf.len() >= MAX_RECORD {
                let piece: Vec<u8> = buf.drain(..MAX_RECORD).collect();
                self.write(stream, true, &String::from_utf8_lossy(&piece), now);
            }
        }
    }
}

/// How often [`follow`] reads a file it cannot watch.
const FALLBACK: std::time::Duration = std::time::Duration::from_millis(200);

/// Follows a log file that a container's monitor writes: calls `each` with every line
/// (partial records joined) written after byte `from`, as it is written (inotify, no polling),
/// until `done` resolves; then reads what is left and returns `done`'s output.
pub async fn follow<T>(
    file: &Path,
    from: u64,
    done: impl std::future::Future<Output = T>,
    mut each: impl FnMut(Stream, &str),
) -> std::io::Result<T> {
    use rustix::fs::inotify;
    use std::io::{Seek, SeekFrom};
    let mut f = File::open(file)?;
    f.seek(SeekFrom::Start(from))?;
    // Past the user's inotify instances (`fs.inotify.max_user_instances`), the file is read
    // again every FALLBACK instead of on each write.
    let watch = inotify::init(inotify::CreateFlags::CLOEXEC | inotify::CreateFlags::NONBLOCK)
        .and_then(|fd| inotify::add_watch(&fd, file, inotify::WatchFlags::MODIFY).map(|_| fd))
        .ok()
        // SAFETY: the inotify fd is an `OwnedFd` moved into the `AsyncFd`, open for its lifetime.
        .and_then(|fd| {
            unsafe { tokio::io::unix::AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE) }.ok()
        });
    let mut pending = Vec::new();
    let (mut out, mut err) = (Joiner::default(), Joiner::default());
    let mut read_new = |f: &mut File| {
        let _ = f.read_to_end(&mut pending);
        let mut start = 0;
        while let Some(i) = pending[start..].iter().position(|&b| b == b'\n') {
            let line = String::from_utf8_lossy(&pending[start..start + i]).into_owned();
            start += i + 1;
            let record = Record::parse(&line);
            let joined = record.and_then(|r| if r.stream == Stream::Stdout { out.push(r) } else { err.push(r) });
            if let Some((_, stream, text)) = joined {
                each(stream, &text);
            }
        }
        pending.drain(..start);
    };
    tokio::pin!(done);
    loop {
        read_new(&mut f);
        tokio::select! {
            out = &mut done => {
                read_new(&mut f);
                return Ok(out);
            }
            _ = async {
                match &watch {
                    Some(fd) => {
                        if let Ok(mut guard) = fd.readable().await {
                            let mut buf = [std::mem::MaybeUninit::<u8>::uninit(); 1024];
                            let mut reader = inotify::Reader::new(fd.get_ref(), &mut buf);
                            while reader.next().is_ok() {}
                            guard.clear_ready();
                        }
                    }
                    None => tokio::time::sleep(FALLBACK).await,
                }
            } => {}
        }
    }
}

fn split(text: &str) -> Vec<&str> {
    if text.len() <= MAX_RECORD {
        return vec![text];
    }
    let mut out = Vec::new();
    let mut rest = text;
    while rest.len() > MAX_RECORD {
        let mut cut = MAX_RECORD;
        while !rest.is_char_boundary(cut) {
            cut -= 1;
        }
        out.push(&rest[..cut]);
        rest = &rest[cut..];
    }
    out.push(rest);
    out
}

/// Joins CRI records back into lines: partial (`P`) records are held until the full (`F`)
/// record that ends the line. A line carries the time of its first record.
#[derive(Debug, Default)]
pub struct Joiner {
    pending: Option<(Timestamp, Stream, String)>,
}

impl Joiner {
    /// Adds a record; returns the line it completes, if any.
    pub fn push(&mut self, r: Record) -> Option<(Timestamp, Stream, String)> {
        let mut line = self.pending.take().unwrap_or((r.time, r.stream, String::new()));
        line.2.push_str(&r.content);
        if r.partial {
            self.pending = Some(line);
            None
        } else {
            Some(line)
        }
    }

    /// The unfinished line, if the log ended inside one.
    pub fn finish(self) -> Option<(Timestamp, Stream, String)> {
        self.pending
    }
}

/// Reads a CRI log file back as lines (partial records joined).
pub fn read(file: &Path) -> std::io::Result<Vec<(Timestamp, Stream, String)>> {
    let text = fs::read_to_string(file)?;
    let mut joiner = Joiner::default();
    let mut out: Vec<_> = text.lines().filter_map(Record::parse).filter_map(|r| joiner.push(r)).collect();
    out.extend(joiner.finish());
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn lines_are_written_in_cri_format_read_back_and_followed() {
        let dir = std::env::temp_dir().join(format!("podvisor-logs-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let file = prepare(&dir, "c", 0).unwrap();
        let w = Writer::open(&file).unwrap();
        let long = "x".repeat(MAX_RECORD + 10);
        let input = format!("one\n{long}\ntwo without newline");
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let writer = {
            let (w, input) = (w.clone(), input.clone());
            std::thread::spawn(move || {
                w.pump(input.as_bytes(), Stream::Stderr);
                let _ = tx.send(());
            })
        };
        let mut seen = Vec::new();
        follow(&file, 0, rx, |stream, l| seen.push((stream, l.to_string()))).await.unwrap().unwrap();
        writer.join().unwrap();
        let lines: Vec<&str> = seen.iter().map(|(_, l)| l.as_str()).collect();
        assert_eq!(lines, ["one", long.as_str(), "two without newline"]);
        assert!(seen.iter().all(|(s, _)| *s == Stream::Stderr));
        let text = fs::read_to_string(path(&dir, "c", 0)).unwrap();
        let records: Vec<Record> = text.lines().map(|l| Record::parse(l).unwrap()).collect();
        assert_eq!(records.len(), 4, "the long line is split in two records");
        assert!(records[1].partial && !records[2].partial);
        assert!(records.iter().all(|r| r.stream == Stream::Stderr));
        let lines: Vec<String> = read(&path(&dir, "c", 0)).unwrap().into_iter().map(|l| l.2).collect();
        assert_eq!(lines, ["one", long.as_str(), "two without newline"]);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn only_the_current_and_previous_instance_are_kept() {
        let dir = std::env::temp_dir().join(format!("podvisor-logs-keep-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        for attempt in 0..4 {
            prepare(&dir, "c", attempt).unwrap();
            fs::write(end_path(&dir, "c", attempt), "{}").unwrap();
        }
        let mut kept: Vec<String> =
            fs::read_dir(dir.join("c")).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        kept.sort();
        assert_eq!(kept, ["2.end.json", "2.log", "3.end.json", "3.log"]);
        fs::remove_dir_all(&dir).unwrap();
    }
}
