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

/// How logs are rotated, as the kubelet's `containerLogMaxSize` and `containerLogMaxFiles`: a
/// log reaching `max_size` bytes is renamed `<attempt>.log.<YYYYMMDD-HHMMSS>` and a new one
/// begun; of the rotated files the newest stays plain, older ones are gzipped, and the oldest
/// are deleted so that at most `max_files` files (the current one included) remain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rotation {
    /// The size at which a log is rotated (`10Mi` by default).
    pub max_size: u64,
    /// How many files a container's log may take, at least 2 (5 by default).
    pub max_files: usize,
}

impl Default for Rotation {
    fn default() -> Self {
        Rotation { max_size: 10 * 1024 * 1024, max_files: 5 }
    }
}

/// An open log file and what rotating it needs.
#[derive(Debug)]
struct Open {
    file: File,
    path: PathBuf,
    size: u64,
    rotation: Rotation,
}

/// A log file being written by a container's output pumps.
#[derive(Debug, Clone)]
pub struct Writer {
    file: Arc<Mutex<Open>>,
}

impl Writer {
    /// Opens a log file for appending, rotated by the defaults.
    pub fn open(file: &Path) -> std::io::Result<Writer> {
        Writer::open_rotated(file, Rotation::default())
    }

    /// Opens a log file for appending, rotated as `rotation` says.
    pub fn open_rotated(file: &Path, rotation: Rotation) -> std::io::Result<Writer> {
        let f = OpenOptions::new().create(true).append(true).mode(LOG_MODE).open(file)?;
        let size = f.metadata()?.len();
        let rotation = Rotation { max_files: rotation.max_files.max(2), ..rotation };
        Ok(Writer { file: Arc::new(Mutex::new(Open { file: f, path: file.to_path_buf(), size, rotation })) })
    }

    fn write(&self, stream: Stream, partial: bool, content: &str, now: Timestamp) {
        let line = format!("{} {} {} {content}\n", now, stream.as_str(), if partial { "P" } else { "F" });
        if let Ok(mut open) = self.file.lock() {
            // A full disk loses log lines, never the container.
            if open.file.write_all(line.as_bytes()).is_ok() {
                open.size += line.len() as u64;
            }
            if open.size >= open.rotation.max_size {
                // A rotation that fails leaves the log growing rather than losing it.
                let _ = rotate(&mut open, now);
            }
        }
    }

    /// Copies `reader` (a container's stdout or stderr) into the log until it closes. Lines
    /// longer than [`MAX_RECORD`] become several records.
    pub fn pump(&self, reader: impl Read, stream: Stream) {
        self.pump_tee(reader, stream, &|_| {});
    }

    /// [`Writer::pump`], handing every chunk read to `tee` as it comes, before any line is
    /// whole (for attached clients, who see a prompt without its newline).
    pub fn pump_tee(&self, mut reader: impl Read, stream: Stream, tee: &dyn Fn(&[u8])) {
        let mut lines = Lines::default();
        let mut chunk = [0u8; 8192];
        loop {
            let n = match reader.read(&mut chunk) {
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Ok(0) | Err(_) => 0,
                Ok(n) => n,
            };
            if n == 0 {
                lines.finish(self, stream);
                return;
            }
            tee(&chunk[..n]);
            lines.feed(self, stream, &chunk[..n]);
        }
    }
}

/// What a stream has written since its last whole line: the records of its log are made from
/// it as bytes come, a record per line, a line longer than [`MAX_RECORD`] cut into several.
#[derive(Debug, Default)]
pub struct Lines {
    buf: Vec<u8>,
}

impl Lines {
    /// Takes `data` of `stream` and writes every line it completes to `w`.
    pub fn feed(&mut self, w: &Writer, stream: Stream, data: &[u8]) {
        self.buf.extend_from_slice(data);
        let now = Timestamp::now();
        let mut start = 0;
        while let Some(i) = self.buf[start..].iter().position(|&b| b == b'\n') {
            let text = String::from_utf8_lossy(&self.buf[start..start + i]);
            let pieces = split(&text);
            for (k, piece) in pieces.iter().enumerate() {
                w.write(stream, k + 1 < pieces.len(), piece, now);
            }
            start += i + 1;
        }
        self.buf.drain(..start);
        while self.buf.len() >= MAX_RECORD {
            let piece: Vec<u8> = self.buf.drain(..MAX_RECORD).collect();
            w.write(stream, true, &String::from_utf8_lossy(&piece), now);
        }
    }

    /// The stream has ended: what it left without a newline becomes the last record.
    pub fn finish(&mut self, w: &Writer, stream: Stream) {
        if !self.buf.is_empty() {
            w.write(stream, false, &String::from_utf8_lossy(&self.buf), Timestamp::now());
            self.buf.clear();
        }
    }
}

/// The rotated files of the log `path` (`<path>.<stamp>`, maybe `.gz`), oldest first.
pub fn rotated(path: &Path) -> Vec<PathBuf> {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name().and_then(|n| n.to_str())) else {
        return Vec::new();
    };
    let prefix = format!("{name}.");
    let mut out: Vec<PathBuf> = fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let n = e.file_name().into_string().ok()?;
            (n.starts_with(&prefix) && !n.ends_with(".tmp")).then(|| e.path())
        })
        .collect();
    // By stamp, then by the number of a rotation in the same second (`-10` after `-9`).
    out.sort_by_key(|p| {
        let name = p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let stamp = name[prefix.len()..].trim_end_matches(".gz").to_string();
        // `YYYYMMDD-HHMMSS`, then `-N`.
        let (time, n) = match stamp.get(15..).and_then(|r| r.strip_prefix('-')) {
            Some(n) => (stamp[..15].to_string(), n.parse::<u64>().unwrap_or(0)),
            None => (stamp.clone(), 0),
        };
        (time, n)
    });
    out
}

/// Rotates the open log as the kubelet's log manager does (see [`Rotation`]).
fn rotate(open: &mut Open, now: Timestamp) -> std::io::Result<()> {
    let mut old = rotated(&open.path);
    // A plain file whose gzipped twin exists was being compressed: the twin is whole.
    old.retain(|p| {
        let gz = PathBuf::from(format!("{}.gz", p.display()));
        if p.extension().is_some_and(|e| e != "gz") && gz.exists() {
            let _ = fs::remove_file(p);
            false
        } else {
            true
        }
    });
    // Room for the one about to be rotated: at most max_files - 1 rotated files remain.
    while old.len() > open.rotation.max_files - 2 {
        let oldest = old.remove(0);
        let _ = fs::remove_file(oldest);
    }
    for p in old.iter().filter(|p| p.extension().is_none_or(|e| e != "gz")) {
        let _ = compress(p);
    }
    let stamp = now.to_zoned(jiff::tz::TimeZone::system()).strftime("%Y%m%d-%H%M%S").to_string();
    // Several rotations in one second: `<stamp>-1`, `<stamp>-2`, … after any kept one, so that
    // the order of the names stays the order of the files.
    let base = format!("{}.{stamp}", open.path.display());
    let last = old
        .iter()
        .filter_map(|p| {
            let name = p.to_string_lossy();
            let rest = name.trim_end_matches(".gz").strip_prefix(&base)?.to_string();
            if rest.is_empty() { Some(0) } else { rest.strip_prefix('-')?.parse::<u64>().ok() }
        })
        .max();
    let target = match last {
        None => PathBuf::from(&base),
        Some(n) => PathBuf::from(format!("{base}-{}", n + 1)),
    };
    fs::rename(&open.path, &target)?;
    open.file = OpenOptions::new().create(true).append(true).mode(LOG_MODE).open(&open.path)?;
    open.size = 0;
    Ok(())
}

/// Gzips `path` to `path.gz` (through a temporary file) and removes it.
fn compress(path: &Path) -> std::io::Result<()> {
    let gz = PathBuf::from(format!("{}.gz", path.display()));
    let tmp = PathBuf::from(format!("{}.gz.tmp", path.display()));
    let out = OpenOptions::new().create(true).write(true).truncate(true).mode(LOG_MODE).open(&tmp)?;
    let mut enc = flate2::write::GzEncoder::new(out, flate2::Compression::default());
    std::io::copy(&mut File::open(path)?, &mut enc)?;
    enc.finish()?.sync_all()?;
    fs::rename(&tmp, &gz)?;
    fs::remove_file(path)
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
    // The directory is watched, not the file: a rotation renames the file and begins a new one.
    // Past the user's inotify instances (`fs.inotify.max_user_instances`), the file is read
    // again every FALLBACK instead of on each write.
    let dir = file.parent().unwrap_or(Path::new("."));
    let flags = inotify::WatchFlags::MODIFY | inotify::WatchFlags::CREATE | inotify::WatchFlags::MOVED_TO;
    let watch = inotify::init(inotify::CreateFlags::CLOEXEC | inotify::CreateFlags::NONBLOCK)
        .and_then(|fd| inotify::add_watch(&fd, dir, flags).map(|_| fd))
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
        // Rotated: what reached the old file before its rename is read, then the new one from
        // its start (the writer writes no more to a file once it renamed it).
        if let Some(new) = reopened(file, &f) {
            read_new(&mut f);
            f = new;
            continue;
        }
        tokio::select! {
            out = &mut done => {
                read_new(&mut f);
                while let Some(new) = reopened(file, &f) {
                    read_new(&mut f);
                    f = new;
                    read_new(&mut f);
                }
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

/// The file to read after `open` (read to its end) when the log at `path` was rotated: the
/// newest rotated file if `open` is older than it (a reader one rotation behind), else the file
/// now at `path`. `None` while `open` is still the current log. A reader more than one rotation
/// behind misses what was compressed meanwhile, as with the kubelet's own readers.
pub fn reopened(path: &Path, open: &File) -> Option<File> {
    use std::os::unix::fs::MetadataExt;
    let id = |m: &fs::Metadata| (m.dev(), m.ino());
    let now = fs::metadata(path).ok()?;
    let was = id(&open.metadata().ok()?);
    if id(&now) == was {
        return None;
    }
    let newest = rotated(path).into_iter().rev().find(|p| p.extension().is_none_or(|e| e != "gz"));
    if let Some(r) = newest
        && let Ok(m) = fs::metadata(&r)
        && id(&m) != was
        && m.modified().ok() >= open.metadata().ok().and_then(|o| o.modified().ok())
    {
        return File::open(r).ok();
    }
    File::open(path).ok()
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

/// The longest line read back whole: a container that prints without a newline is read in
/// pieces of this size, never held in memory at once.
pub const MAX_JOINED: usize = 1024 * 1024;

/// Joins CRI records back into lines: partial (`P`) records are held until the full (`F`)
/// record that ends the line. A line carries the time of its first record.
#[derive(Debug, Default)]
pub struct Joiner {
    pending: Option<(Timestamp, Stream, String)>,
}

impl Joiner {
    /// Adds a record; returns the line it completes, if any. A line without end is handed out
    /// in pieces of [`MAX_JOINED`] bytes rather than held whole.
    pub fn push(&mut self, r: Record) -> Option<(Timestamp, Stream, String)> {
        let mut line = self.pending.take().unwrap_or((r.time, r.stream, String::new()));
        line.2.push_str(&r.content);
        if r.partial && line.2.len() < MAX_JOINED {
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

/// Reads the end of a CRI log file back as lines (partial records joined): at most its last
/// `bytes` bytes are read, from the first whole record in them.
pub fn read_tail(file: &Path, bytes: u64) -> std::io::Result<Vec<(Timestamp, Stream, String)>> {
    use std::io::{Seek, SeekFrom};
    let mut f = File::open(file)?;
    let len = f.metadata()?.len();
    let from = len.saturating_sub(bytes);
    f.seek(SeekFrom::Start(from))?;
    let mut raw = Vec::new();
    f.take(bytes).read_to_end(&mut raw)?;
    if from > 0 {
        // The first record is cut: it begins after the first newline.
        let start = raw.iter().position(|b| *b == b'\n').map_or(raw.len(), |i| i + 1);
        raw.drain(..start);
    }
    let text = String::from_utf8_lossy(&raw);
    let mut joiner = Joiner::default();
    let mut out: Vec<_> = text.lines().filter_map(Record::parse).filter_map(|r| joiner.push(r)).collect();
    out.extend(joiner.finish());
    Ok(out)
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

    /// Rotations in one second are ordered by their number (`-10` after `-9`), so the oldest
    /// are the ones deleted.
    #[test]
    fn many_rotations_in_one_second_keep_their_order() {
        let dir = std::env::temp_dir().join(format!("podvisor-logs-order-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let log = dir.join("0.log");
        for name in [
            "0.log.20260101-000000-9",
            "0.log.20260101-000000-10.gz",
            "0.log.20260101-000000",
            "0.log.20251231-235959-12.gz",
        ] {
            fs::write(dir.join(name), b"").unwrap();
        }
        let names: Vec<String> =
            rotated(&log).iter().map(|p| p.file_name().unwrap().to_string_lossy().into_owned()).collect();
        assert_eq!(
            names,
            [
                "0.log.20251231-235959-12.gz",
                "0.log.20260101-000000",
                "0.log.20260101-000000-9",
                "0.log.20260101-000000-10.gz"
            ]
        );
        fs::remove_dir_all(&dir).unwrap();
    }

    /// Issue: a chatty container's log grew without bound. Rotated at the size, it takes at
    /// most `max_files` files: the current, the newest rotated plain, the older gzipped; and a
    /// follower reads every line across the rotations.
    #[tokio::test]
    async fn logs_rotate_at_their_size_and_followers_miss_no_line() {
        let dir = std::env::temp_dir().join(format!("podvisor-logs-rotate-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let file = prepare(&dir, "c", 0).unwrap();
        let w = Writer::open_rotated(&file, Rotation { max_size: 16 * 1024, max_files: 3 }).unwrap();
        let lines: String = (0..2000).map(|i| format!("line {i:05}\n")).collect();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        /// A container's output arriving 700 bytes at a time.
        struct Slow(Vec<u8>, usize);
        impl Read for Slow {
            fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                std::thread::sleep(std::time::Duration::from_millis(1));
                let n = buf.len().min(700).min(self.0.len() - self.1);
                buf[..n].copy_from_slice(&self.0[self.1..self.1 + n]);
                self.1 += n;
                Ok(n)
            }
        }
        let writer = {
            let (w, lines) = (w.clone(), lines.clone());
            std::thread::spawn(move || {
                w.pump(Slow(lines.into_bytes(), 0), Stream::Stdout);
                let _ = tx.send(());
            })
        };
        let mut seen = Vec::new();
        follow(&file, 0, async { rx.await.ok() }, |_, l| seen.push(l.to_string())).await.unwrap();
        writer.join().unwrap();
        let expected: Vec<String> = (0..2000).map(|i| format!("line {i:05}")).collect();
        assert_eq!(seen.len(), expected.len(), "no line lost across rotations");
        assert_eq!(seen, expected);
        let rotated = rotated(&file);
        assert_eq!(rotated.len(), 2, "max_files 3: the current log and two rotated: {rotated:?}");
        assert!(rotated[0].to_string_lossy().ends_with(".gz"), "the older one is gzipped: {rotated:?}");
        assert!(!rotated[1].to_string_lossy().ends_with(".gz"), "the newest stays plain: {rotated:?}");
        assert!(fs::metadata(&file).unwrap().len() < 16 * 1024 + 64);
        let tail = read_tail(&file, 200).unwrap();
        assert_eq!(tail.last().map(|l| l.2.as_str()), Some("line 01999"), "the end is read from the end");
        fs::remove_dir_all(&dir).unwrap();
    }

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
