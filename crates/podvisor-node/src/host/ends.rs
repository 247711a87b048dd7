//! How a container instance ended: its exit as its monitor recorded it, an OOM kill, its
//! termination message (bounded as the kubelet bounds it), and the record of its end kept
//! beside its log for a node process started again.

use std::path::Path;

use k8s_openapi::api::core::v1::{Container, Pod};
use podvisor_engine::{ContainerRef, ExitCause, FoundExit};
use podvisor_runtime::cgroup;
use podvisor_runtime::logs;
use podvisor_runtime::monitor::{self};

use super::Host;

/// The most the kubelet reads of a termination message.
const MAX_MESSAGE: usize = 4096;
/// The most termination message a pod's statuses hold together.
const MAX_POD_MESSAGES: usize = 12 * 1024;
/// How much of the end of a log is read for `FallbackToLogsOnError`.
const FALLBACK_READ: u64 = 80 * (logs::MAX_RECORD as u64 + 64);
/// With `FallbackToLogsOnError`: the last lines and bytes of the log it uses.
const FALLBACK_LINES: usize = 80;
const FALLBACK_BYTES: usize = 2048;

impl Host {
    /// How the instance `id` ended, as its monitor recorded it: the code (or, when the
    /// monitor was killed, an unknown end), an OOM kill seen in its cgroup, and the termination
    /// message. Read before the container is removed.
    pub fn end_of(
        &self,
        spec: &Container,
        cgroup_parent: &str,
        id: &str,
        dir: &Path,
        log: &Path,
        budget: usize,
    ) -> FoundExit {
        let Some(ended) = monitor::ended(dir) else {
            return FoundExit {
                exit_code: 137,
                cause: ExitCause::Lost,
                finished_at: jiff::Timestamp::now(),
                message: Some("The container's monitor ended without recording its exit".into()),
            };
        };
        let oom = cgroup::oom_killed(&format!("{cgroup_parent}/{id}"));
        FoundExit {
            exit_code: ended.code,
            cause: if oom { ExitCause::OomKilled } else { ExitCause::Exited },
            finished_at: ended.at,
            message: termination_message(spec, &self.termination_log(id, dir), log, ended.code, budget),
        }
    }
}

/// The record of an instance's end kept beside its log, for a node process started again
/// after the instance's monitor (and its own record) is gone.
#[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct EndRecord {
    exit_code: i32,
    cause: Cause,
    /// RFC 3339.
    finished_at: String,
    message: Option<String>,
}

/// [`ExitCause`] as the record names it.
#[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
enum Cause {
    #[serde(rename = "OOMKilled")]
    OomKilled,
    StartError,
    Lost,
    /// A plain exit, and any cause a later version may add.
    #[serde(other)]
    Exited,
}

impl From<&FoundExit> for EndRecord {
    fn from(end: &FoundExit) -> Self {
        EndRecord {
            exit_code: end.exit_code,
            cause: match end.cause {
                ExitCause::Exited => Cause::Exited,
                ExitCause::OomKilled => Cause::OomKilled,
                ExitCause::StartError => Cause::StartError,
                ExitCause::Lost => Cause::Lost,
            },
            finished_at: end.finished_at.to_string(),
            message: end.message.clone(),
        }
    }
}

impl EndRecord {
    fn into_exit(self) -> Option<FoundExit> {
        Some(FoundExit {
            exit_code: self.exit_code,
            cause: match self.cause {
                Cause::Exited => ExitCause::Exited,
                Cause::OomKilled => ExitCause::OomKilled,
                Cause::StartError => ExitCause::StartError,
                Cause::Lost => ExitCause::Lost,
            },
            finished_at: self.finished_at.parse().ok()?,
            message: self.message,
        })
    }
}

/// Records beside its log how instance `r` ended, written whole or not at all; a record that
/// cannot be written is said (a node process started again would not know this end).
pub(crate) fn record_end(log_dir: &Path, r: &ContainerRef, end: &FoundExit) {
    let path = logs::end_path(log_dir, &r.name, r.attempt);
    let tmp = path.with_extension("tmp");
    let written = serde_json::to_vec(&EndRecord::from(end))
        .map_err(std::io::Error::other)
        .and_then(|bytes| std::fs::write(&tmp, bytes))
        .and_then(|()| std::fs::rename(&tmp, &path));
    if let Err(e) = written {
        tracing::warn!("{}: the end of container {} is not recorded: {e}", path.display(), r.name);
    }
}

/// How instance `r` ended, if [`record_end`] recorded it.
pub(super) fn recorded_end(log_dir: &Path, r: &ContainerRef) -> Option<FoundExit> {
    let bytes = std::fs::read(logs::end_path(log_dir, &r.name, r.attempt)).ok()?;
    serde_json::from_slice::<EndRecord>(&bytes).ok()?.into_exit()
}

/// The last `max` bytes of `file`, never more read.
fn read_last(file: &Path, max: u64) -> std::io::Result<Vec<u8>> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = std::fs::File::open(file)?;
    let len = f.metadata()?.len();
    f.seek(SeekFrom::Start(len.saturating_sub(max)))?;
    let mut out = Vec::new();
    f.take(max).read_to_end(&mut out)?;
    Ok(out)
}

/// The first `max` bytes of `text`, cut at a character boundary.
fn first_bytes(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut end = max;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
}

/// The bytes of termination message each container of `pod` may keep: the kubelet's 12 KiB per
/// pod, shared evenly by every container it declares.
pub(crate) fn message_budget(pod: &Pod) -> usize {
    let spec = pod.spec.as_ref();
    let count = spec.map_or(0, |s| {
        s.containers.len()
            + s.init_containers.as_ref().map_or(0, Vec::len)
            + s.ephemeral_containers.as_ref().map_or(0, Vec::len)
    });
    MAX_POD_MESSAGES / count.max(1)
}

/// The container's termination message: the end of what it wrote to its
/// `terminationMessagePath` (its last 4096 bytes, as the kubelet reads it), or with
/// `FallbackToLogsOnError` and a failure, the end of its log; then the first `budget` bytes.
fn termination_message(c: &Container, file: &Path, log: &Path, code: i32, budget: usize) -> Option<String> {
    let written = read_last(file, MAX_MESSAGE as u64).ok().map(|b| String::from_utf8_lossy(&b).into_owned());
    if let Some(m) = written.filter(|m| !m.is_empty()) {
        return Some(first_bytes(m, budget));
    }
    if c.termination_message_policy.as_deref() == Some("FallbackToLogsOnError") && code != 0 {
        // The last 80 lines and 2 KiB: a longer end of the log than those is never needed.
        let lines = logs::read_tail(log, FALLBACK_READ).ok()?;
        let tail: Vec<String> = lines.iter().rev().take(FALLBACK_LINES).rev().map(|l| l.2.clone()).collect();
        let mut text = tail.join("\n");
        if text.len() > FALLBACK_BYTES {
            let mut cut = text.len() - FALLBACK_BYTES;
            while !text.is_char_boundary(cut) {
                cut += 1;
            }
            text = text[cut..].to_string();
        }
        return (!text.is_empty()).then(|| first_bytes(text, budget));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_end_is_recorded_and_read_back_and_an_unknown_cause_reads_as_an_exit() {
        let dir = std::env::temp_dir().join(format!("podvisor-end-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("app")).unwrap();
        let r = ContainerRef::new("app", 2);
        let end = FoundExit {
            exit_code: 137,
            cause: ExitCause::OomKilled,
            finished_at: "2026-01-02T03:04:05Z".parse().unwrap(),
            message: Some("out of memory".into()),
        };
        record_end(&dir, &r, &end);
        let text = std::fs::read_to_string(logs::end_path(&dir, "app", 2)).unwrap();
        assert!(text.contains("\"cause\":\"OOMKilled\"") && text.contains("\"exitCode\":137"), "{text}");
        assert_eq!(recorded_end(&dir, &r), Some(end));
        std::fs::write(
            logs::end_path(&dir, "app", 2),
            r#"{"exitCode":1,"cause":"Evicted","finishedAt":"2026-01-02T03:04:05Z","message":null}"#,
        )
        .unwrap();
        assert_eq!(recorded_end(&dir, &r).unwrap().cause, ExitCause::Exited);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// The kubelet reads the last 4096 bytes of a termination message, never the whole file,
    /// and a pod's messages share 12 KiB.
    #[test]
    fn termination_messages_are_read_from_the_end_and_share_the_pods_budget() {
        let dir = std::env::temp_dir().join(format!("podvisor-term-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("termination-log");
        let mut text = "a".repeat(10_000);
        text.push_str(&"z".repeat(4096));
        std::fs::write(&file, &text).unwrap();
        let c = Container { name: "c".into(), ..Default::default() };
        let one = termination_message(&c, &file, &dir.join("none.log"), 1, 4096).unwrap();
        assert_eq!(one, "z".repeat(4096), "the end of the file");
        let pod = Pod {
            spec: Some(k8s_openapi::api::core::v1::PodSpec {
                containers: (0..4).map(|i| Container { name: format!("c{i}"), ..Default::default() }).collect(),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(message_budget(&pod), 3072);
        let four = termination_message(&c, &file, &dir.join("none.log"), 1, message_budget(&pod)).unwrap();
        assert_eq!(four.len(), 3072, "the first bytes of it within the pod's share");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
