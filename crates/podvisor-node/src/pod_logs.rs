//! Finding a pod's container logs after the fact (`podvisor logs`, the API's `pods/log`): the
//! newest pod of that name under `logs/`, a container's current or previous instance.

use std::io::Read;
use std::path::{Path, PathBuf};

use jiff::Timestamp;
pub use podvisor_runtime::logs::Stream;
use podvisor_runtime::logs::{Joiner, Record};

/// Why a log could not be found, worded as kubectl's server would.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LogError {
    /// No pod of that name ever ran with this data directory.
    #[error("pods {0:?} not found")]
    NoPod(String),
    /// The pod has several containers and none was named.
    #[error("a container name must be specified for pod {pod}, choose one of: [{}]", .containers.join(" "))]
    Ambiguous {
        /// The pod.
        pod: String,
        /// Its containers with logs.
        containers: Vec<String>,
    },
    /// The container has no log.
    #[error("container {container:?} in pod {pod:?} not found")]
    NoContainer {
        /// The pod.
        pod: String,
        /// The container.
        container: String,
    },
    /// `--previous` but the container never restarted.
    #[error("previous terminated container {container:?} in pod {pod:?} not found")]
    NoPrevious {
        /// The pod.
        pod: String,
        /// The container.
        container: String,
    },
}

/// The file in a pod's log directory that names its sidecars, one a line, so that what reads
/// the logs after the pod (`podvisor ps`) can tell them from the containers whose exits decide
/// the pod's outcome.
pub const SIDECARS_FILE: &str = "sidecars";

/// The logs of one pod: `<data>/logs/<namespace>_<name>_<uid>`.
#[derive(Debug, Clone)]
pub struct PodLogs {
    /// The pod's log directory.
    pub dir: PathBuf,
    /// The pod's UID.
    pub uid: String,
    name: String,
}

impl PodLogs {
    /// The logs of the pod with this UID.
    pub fn of(data: &Path, namespace: &str, name: &str, uid: &str) -> PodLogs {
        PodLogs {
            dir: data.join("logs").join(format!("{namespace}_{name}_{uid}")),
            uid: uid.to_string(),
            name: name.to_string(),
        }
    }

    /// The newest pod named `name` in `namespace` whose logs are under `data`.
    pub fn find(data: &Path, namespace: &str, name: &str) -> Result<PodLogs, LogError> {
        let prefix = format!("{namespace}_{name}_");
        let newest = std::fs::read_dir(data.join("logs"))
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
            .max_by_key(|e| e.metadata().and_then(|m| m.modified()).ok())
            .ok_or_else(|| LogError::NoPod(name.to_string()))?;
        let uid = newest.file_name().to_string_lossy()[prefix.len()..].to_string();
        Ok(PodLogs { dir: newest.path(), uid, name: name.to_string() })
    }

    /// The newest pod of `namespace` whose name is `<owner>-` and then what a controller adds:
    /// `<5 characters>` for a Job's pods (`job/NAME`), `<template hash>-<5 characters>` for a
    /// Deployment's (`deploy/NAME`). The logs keep no owner, so the names tell.
    pub fn find_of(data: &Path, namespace: &str, owner: &str, deployment: bool) -> Result<PodLogs, LogError> {
        let prefix = format!("{namespace}_{owner}-");
        let suffix_ok = |s: &str| s.len() == 5 && s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
        let newest = std::fs::read_dir(data.join("logs"))
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let file = e.file_name().to_string_lossy().into_owned();
                let rest = file.strip_prefix(&prefix)?;
                let (generated, uid) = rest.split_once('_')?;
                let fits = match (deployment, generated.split_once('-')) {
                    (false, None) => suffix_ok(generated),
                    (true, Some((hash, tail))) => !hash.is_empty() && suffix_ok(tail),
                    _ => false,
                };
                fits.then(|| (e, format!("{owner}-{generated}"), uid.to_string()))
            })
            .max_by_key(|(e, _, _)| e.metadata().and_then(|m| m.modified()).ok())
            .ok_or_else(|| LogError::NoPod(owner.to_string()))?;
        let (entry, name, uid) = newest;
        Ok(PodLogs { dir: entry.path(), uid, name })
    }

    /// The pod's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The containers that wrote logs, sorted.
    pub fn containers(&self) -> Vec<String> {
        let mut out: Vec<String> = std::fs::read_dir(&self.dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.path().is_dir())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        out.sort();
        out
    }

    /// The container to show: the one named, or the only one.
    pub fn container(&self, name: Option<&str>) -> Result<String, LogError> {
        let all = self.containers();
        match name {
            Some(n) if all.iter().any(|c| c == n) => Ok(n.to_string()),
            Some(n) => Err(LogError::NoContainer { pod: self.name.clone(), container: n.to_string() }),
            None if all.len() == 1 => Ok(all[0].clone()),
            None => Err(LogError::Ambiguous { pod: self.name.clone(), containers: all }),
        }
    }

    /// The instances of `container` with a log, oldest first.
    pub fn attempts(&self, container: &str) -> Vec<u32> {
        let mut out: Vec<u32> = std::fs::read_dir(self.dir.join(container))
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| e.file_name().to_string_lossy().strip_suffix(".log")?.parse().ok())
            .collect();
        out.sort_unstable();
        out
    }

    /// The log file of the current (or, with `previous`, the previous) instance.
    pub fn file(&self, container: &str, previous: bool) -> Result<PathBuf, LogError> {
        let attempts = self.attempts(container);
        let pick = if previous { attempts.iter().rev().nth(1) } else { attempts.last() };
        match pick {
            Some(a) => Ok(podvisor_runtime::logs::path(&self.dir, container, *a)),
            None if previous => Err(LogError::NoPrevious { pod: self.name.clone(), container: container.into() }),
            None => Err(LogError::NoContainer { pod: self.name.clone(), container: container.into() }),
        }
    }

    /// The pod's sidecars (init containers with `restartPolicy: Always`), as recorded when its
    /// sandbox was made.
    pub fn sidecars(&self) -> Vec<String> {
        let text = std::fs::read_to_string(self.dir.join(SIDECARS_FILE)).unwrap_or_default();
        text.lines().filter(|l| !l.is_empty()).map(str::to_string).collect()
    }

    /// Whether the pod is still running on the node with data directory `data`.
    pub fn running(&self, data: &Path) -> bool {
        data.join("run").join(&self.uid).exists()
    }
}

/// Reads the records appended to a log file since the last call, joining partial records.
#[derive(Debug)]
pub struct Tail {
    path: PathBuf,
    file: std::fs::File,
    partial: Vec<u8>,
    joiner: Joiner,
}

/// A line read back: when it was written, its stream, its text.
pub type Line = (Timestamp, Stream, String);

/// The most a log line read back may hold before it is cut (a container may print one line
/// without end).
const MAX_LINE: usize = 1024 * 1024;

impl Tail {
    /// Opens a log file at its start.
    pub fn open(path: &Path) -> std::io::Result<Tail> {
        Ok(Tail {
            path: path.to_path_buf(),
            file: std::fs::File::open(path)?,
            partial: Vec::new(),
            joiner: Joiner::default(),
        })
    }

    /// Opens a log file for its last `n` lines, read from its end (a long log is not read
    /// whole); returns them, and the tail positioned after them.
    pub fn open_last(path: &Path, n: usize) -> std::io::Result<(Tail, Vec<Line>)> {
        use std::io::{Seek, SeekFrom};
        let mut tail = Tail::open(path)?;
        let len = tail.file.metadata()?.len();
        let mut chunk: u64 = 64 * 1024;
        loop {
            let from = len.saturating_sub(chunk);
            tail.file.seek(SeekFrom::Start(from))?;
            let mut bytes = Vec::new();
            (&mut tail.file).take(len - from).read_to_end(&mut bytes)?;
            if from > 0 {
                // The first record may be cut: the lines begin after the first newline.
                let start = bytes.iter().position(|b| *b == b'\n').map_or(bytes.len(), |i| i + 1);
                bytes.drain(..start);
            }
            let text = String::from_utf8_lossy(&bytes);
            let whole = text.lines().filter_map(Record::parse).filter(|r| !r.partial).count();
            if whole > n || from == 0 {
                tail.joiner = Joiner::default();
                tail.partial = bytes;
                let mut lines = tail.read_new()?;
                lines.drain(..lines.len().saturating_sub(n));
                return Ok((tail, lines));
            }
            chunk = chunk.saturating_mul(4);
        }
    }

    /// The whole lines written since the last call. After a rotation, the rest of the old file
    /// comes first, then the new file from its start.
    pub fn read_new(&mut self) -> std::io::Result<Vec<(Timestamp, Stream, String)>> {
        let mut out = self.read_open()?;
        if let Some(new) = podvisor_runtime::logs::reopened(&self.path, &self.file) {
            // What reached the old file before its rename, then the new file.
            out.extend(self.read_open()?);
            self.file = new;
            self.partial.clear();
            out.extend(self.read_open()?);
        }
        Ok(out)
    }

    fn read_open(&mut self) -> std::io::Result<Vec<(Timestamp, Stream, String)>> {
        let mut bytes = std::mem::take(&mut self.partial);
        self.file.read_to_end(&mut bytes)?;
        // Only whole records: a record being written waits for its newline.
        let end = bytes.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
        self.partial = bytes.split_off(end);
        // A record without end past the bound is dropped rather than held.
        if self.partial.len() > MAX_LINE {
            self.partial.clear();
        }
        Ok(String::from_utf8_lossy(&bytes)
            .lines()
            .filter_map(Record::parse)
            .filter_map(|r| self.joiner.push(r))
            .collect())
    }
}

/// Waits on inotify for `file` to grow, calling `more` after each change, until the pod stops
/// running (its run directory goes) or `more` returns false. Blocks: run it on its own thread.
pub fn follow(
    pod: &PodLogs,
    data: &Path,
    file: &Path,
    more: &mut dyn FnMut() -> std::io::Result<bool>,
) -> std::io::Result<()> {
    use rustix::fs::inotify;
    let fd = inotify::init(inotify::CreateFlags::CLOEXEC)?;
    // The directory, not the file: a rotation renames the file and begins a new one.
    let dir = file.parent().unwrap_or(Path::new("."));
    let flags = inotify::WatchFlags::MODIFY | inotify::WatchFlags::CREATE | inotify::WatchFlags::MOVED_TO;
    inotify::add_watch(&fd, dir, flags)?;
    inotify::add_watch(&fd, data.join("run"), inotify::WatchFlags::DELETE)?;
    let mut buf = [std::mem::MaybeUninit::<u8>::uninit(); 4096];
    while pod.running(data) {
        let mut reader = inotify::Reader::new(&fd, &mut buf);
        let _ = reader.next()?;
        if !more()? {
            return Ok(());
        }
    }
    more()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue: `--tail=3` of a 1.6 GB log read it whole. The last lines are read from the end.
    #[test]
    fn the_last_lines_are_read_from_the_end_and_following_goes_on_from_there() {
        let dir = std::env::temp_dir().join(format!("podvisor-tail-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let file = podvisor_runtime::logs::prepare(&dir, "c", 0).unwrap();
        let record = |i: usize| format!("2026-01-01T00:00:00Z stdout F line {i}\n");
        let body: String = (0..200_000).map(record).collect();
        std::fs::write(&file, &body).unwrap();
        let (mut tail, last) = Tail::open_last(&file, 3).unwrap();
        let text: Vec<&str> = last.iter().map(|l| l.2.as_str()).collect();
        assert_eq!(text, ["line 199997", "line 199998", "line 199999"]);
        use std::io::Write;
        std::fs::OpenOptions::new().append(true).open(&file).unwrap().write_all(record(200_000).as_bytes()).unwrap();
        assert_eq!(tail.read_new().unwrap()[0].2, "line 200000");
        // A rotation: the rest of the old file, then the new one.
        std::fs::OpenOptions::new().append(true).open(&file).unwrap().write_all(record(200_001).as_bytes()).unwrap();
        std::fs::rename(&file, dir.join("c/0.log.20260101-000000")).unwrap();
        std::fs::write(&file, record(200_002)).unwrap();
        let next: Vec<String> = tail.read_new().unwrap().into_iter().map(|l| l.2).collect();
        assert_eq!(next, ["line 200001", "line 200002"]);
        let (_, short) = Tail::open_last(&file, 10).unwrap();
        assert_eq!(short.len(), 1, "fewer lines than asked: all of them");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
