//! Finding a pod's container logs after the fact (`podvisor logs`, the API's `pods/log`): the
//! newest pod of that name under `logs/`, a container's current or previous instance.

use std::io::Read;
use std::path::{Path, PathBuf};

use jiff::Timestamp;
use podvisor_runtime::logs::{Joiner, Record, Stream};

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

    /// Whether the pod is still running on the node with data directory `data`.
    pub fn running(&self, data: &Path) -> bool {
        data.join("run").join(&self.uid).exists()
    }
}

/// Reads the records appended to a log file since the last call, joining partial records.
#[derive(Debug)]
pub struct Tail {
    file: std::fs::File,
    partial: Vec<u8>,
    joiner: Joiner,
}

impl Tail {
    /// Opens a log file at its start.
    pub fn open(path: &Path) -> std::io::Result<Tail> {
        Ok(Tail { file: std::fs::File::open(path)?, partial: Vec::new(), joiner: Joiner::default() })
    }

    /// The whole lines written since the last call.
    pub fn read_new(&mut self) -> std::io::Result<Vec<(Timestamp, Stream, String)>> {
        let mut bytes = std::mem::take(&mut self.partial);
        self.file.read_to_end(&mut bytes)?;
        // Only whole records: a record being written waits for its newline.
        let end = bytes.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
        self.partial = bytes.split_off(end);
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
    inotify::add_watch(&fd, file, inotify::WatchFlags::MODIFY)?;
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
