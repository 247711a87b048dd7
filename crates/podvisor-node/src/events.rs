//! What the node reports as pods run: container output, lifecycle steps and the kubelet's
//! events. `podvisor run` prints them; `--timeline` keeps them as JSON.

use jiff::Timestamp;
use serde::Serialize;

/// One thing that happened to a pod.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NodeEvent {
    /// When it happened.
    pub at: Timestamp,
    /// The pod, as `namespace/name`.
    pub pod: String,
    /// The pod's UID.
    pub uid: String,
    /// What happened.
    #[serde(flatten)]
    pub what: What,
}

/// The kinds of [`NodeEvent`].
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "camelCase", rename_all_fields = "camelCase")]
pub enum What {
    /// A line a container wrote.
    Log {
        /// The container.
        container: String,
        /// `stdout` or `stderr`.
        stream: &'static str,
        /// The line, without its newline.
        line: String,
    },
    /// A container's process started.
    Started {
        /// The container.
        container: String,
        /// Its restart count.
        attempt: u32,
    },
    /// A container's process ended.
    Exited {
        /// The container.
        container: String,
        /// Its restart count.
        attempt: u32,
        /// The exit code.
        exit_code: i32,
        /// `Completed`, `Error`, `OOMKilled` or `StartError`.
        reason: String,
    },
    /// A signal was sent to a container's main process.
    Signalled {
        /// The container.
        container: String,
        /// `SIGTERM` (or the stop signal) or `SIGKILL`.
        signal: String,
        /// Why, in words.
        why: String,
        /// For a stop signal: in how many seconds the container is killed if it has not
        /// exited (what is left of its grace period).
        #[serde(skip_serializing_if = "Option::is_none")]
        kill_in: Option<u64>,
    },
    /// A lifecycle hook ran, or a startup probe passed.
    Handler {
        /// The container.
        container: String,
        /// `postStart`, `preStop` or `startupProbe`.
        handler: String,
        /// `ok`, or what failed.
        result: String,
    },
    /// An event the kubelet records (`Pulled`, `Created`, `Started`, `Killing`, `BackOff`, …).
    Event {
        /// `Normal` or `Warning`.
        kind: &'static str,
        /// The reason.
        reason: String,
        /// The message.
        message: String,
        /// The container it is about, if any.
        container: Option<String>,
        /// The container as the API names it (`spec.initContainers{name}`), if any.
        #[serde(skip_serializing_if = "Option::is_none")]
        field_path: Option<String>,
    },
    /// How long the steps of setting something up took: the pod's sandbox, or a container
    /// from its image to its running process. For `--timeline` and the benchmarks.
    Timing {
        /// The container, or none for the sandbox.
        container: Option<String>,
        /// Each step with its duration in microseconds, in order.
        steps: Vec<(String, u64)>,
    },
    /// The pod's phase changed.
    Phase {
        /// The new phase.
        phase: String,
    },
    /// Every container has stopped for good and the sandbox is gone.
    Finished {
        /// The final phase.
        phase: String,
    },
}
