//! What goes into the engine ([`Input`]) and what comes out of it ([`Action`], [`PodEvent`]).

use std::time::Duration;

use k8s_openapi::api::core::v1::Container;

/// One instance of a container: its name and which attempt it is (0 for the first run,
/// equal to its `restartCount`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ContainerRef {
    /// The container's name in the pod spec.
    pub name: String,
    /// The instance number; the API's `restartCount` of this instance.
    pub attempt: u32,
}

impl ContainerRef {
    /// A reference to instance `attempt` of container `name`.
    pub fn new(name: impl Into<String>, attempt: u32) -> Self {
        ContainerRef { name: name.into(), attempt }
    }
}

impl std::fmt::Display for ContainerRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}#{}", self.name, self.attempt)
    }
}

/// A lifecycle hook.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Hook {
    /// `lifecycle.postStart`, run right after the container starts; it blocks the next start.
    PostStart,
    /// `lifecycle.preStop`, run before the stop signal when a container is killed.
    PreStop,
}

/// A probe kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ProbeKind {
    /// `startupProbe`: gates `started`.
    Startup,
    /// `livenessProbe`: a failure restarts the container.
    Liveness,
    /// `readinessProbe`: gates `ready`, never restarts anything.
    Readiness,
}

impl ProbeKind {
    /// The word the kubelet uses in event messages ("Liveness probe failed: …").
    pub fn title(self) -> &'static str {
        match self {
            ProbeKind::Startup => "Startup",
            ProbeKind::Liveness => "Liveness",
            ProbeKind::Readiness => "Readiness",
        }
    }
}

/// The result of one probe run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeOutcome {
    /// The probe passed.
    Success,
    /// The probe passed with a warning (e.g. a redirect to another host was not followed); the
    /// text becomes a `ProbeWarning` event.
    Warning(String),
    /// The probe failed; the text is the handler's output, used in the `Unhealthy` event.
    Failure(String),
    /// The probe could not be run (e.g. the container is going away); it changes nothing.
    Unknown,
}

/// Which signal to send to a container's main process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Signal {
    /// The container's stop signal: `lifecycle.stopSignal` or the image's, SIGTERM by default.
    Stop,
    /// SIGKILL, after the grace period ran out.
    Kill,
}

/// Why a container's process ended, as the runtime saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitCause {
    /// The process exited, or was killed by a signal (`exit_code` = 128 + signal).
    Exited,
    /// The kernel's OOM killer ended it (reported as reason `OOMKilled`).
    OomKilled,
    /// It was created but could not be started (reported as reason `StartError`).
    StartError,
    /// It was lost with its sandbox and nothing is known of its end (reported as reason
    /// `ContainerStatusUnknown`, exit code 137).
    Lost,
}

impl ExitCause {
    /// The API's terminated `reason` for an exit with this cause and code: `OOMKilled`,
    /// `StartError`, `Completed` (exit 0) or `Error`.
    pub fn reason(self, exit_code: i32) -> &'static str {
        match (self, exit_code) {
            (ExitCause::OomKilled, _) => "OOMKilled",
            (ExitCause::StartError, _) => "StartError",
            (ExitCause::Lost, _) => "ContainerStatusUnknown",
            (_, 0) => "Completed",
            _ => "Error",
        }
    }
}

/// A container instance the runtime still holds when the node process starts again while the
/// pod's sandbox is intact (R75): what [`crate::PodEngine::adopt`] takes over.
#[derive(Debug, Clone, PartialEq)]
pub struct Found {
    /// The instance.
    pub container: ContainerRef,
    /// The runtime's ID for it.
    pub id: String,
    /// How it ended, if it ended while no node process watched it; `None` while it runs.
    pub ended: Option<FoundExit>,
}

/// How a [`Found`] instance ended.
#[derive(Debug, Clone, PartialEq)]
pub struct FoundExit {
    /// The exit code (128 + signal number when killed by a signal).
    pub exit_code: i32,
    /// Why it ended.
    pub cause: ExitCause,
    /// When it ended.
    pub finished_at: jiff::Timestamp,
    /// The termination message, if the container wrote one.
    pub message: Option<String>,
}

/// Something the runtime, a prober, the API or the user reports to the engine.
#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    /// The pod sandbox (network namespace and shared mounts) is ready.
    SandboxReady {
        /// The pod's address (`status.podIP`), if it has one: on the pod network, or the
        /// host's on the host's network.
        pod_ip: Option<String>,
    },
    /// Creating the sandbox failed (namespaces, or a volume that cannot be set up). The pod
    /// stays Pending and the engine asks again after a back-off, as the kubelet's pod worker
    /// retries a failed sync.
    SandboxFailed {
        /// The event reason: `FailedCreatePodSandBox` or `FailedMount`.
        reason: String,
        /// What went wrong.
        message: String,
    },
    /// The image of a container being started is present. `pulled` is false when it was
    /// already on the machine.
    ImageReady {
        /// The instance being started.
        container: ContainerRef,
        /// Whether the image was pulled now.
        pulled: bool,
    },
    /// The image could not be pulled; the start failed with `ErrImagePull`.
    ImagePullFailed {
        /// The instance being started.
        container: ContainerRef,
        /// What the registry or the image store said.
        message: String,
    },
    /// The container was created by the runtime.
    Created {
        /// The instance.
        container: ContainerRef,
        /// The runtime's ID for it (`containerID` in the status).
        id: String,
    },
    /// Creating or starting the container failed (`CreateContainerError`, `RunContainerError`).
    StartFailed {
        /// The instance.
        container: ContainerRef,
        /// The waiting reason to show.
        reason: String,
        /// What went wrong.
        message: String,
    },
    /// The container's process is running.
    Started {
        /// The instance.
        container: ContainerRef,
    },
    /// The container's process ended.
    Exited {
        /// The instance.
        container: ContainerRef,
        /// The exit code (128 + signal number when killed by a signal).
        exit_code: i32,
        /// Why it ended.
        cause: ExitCause,
        /// The termination message, if the container wrote one.
        message: Option<String>,
    },
    /// A lifecycle hook finished.
    HookDone {
        /// The instance the hook ran in.
        container: ContainerRef,
        /// Which hook.
        hook: Hook,
        /// `Err` holds the hook's output or error.
        result: Result<(), String>,
    },
    /// A probe run finished.
    ProbeDone {
        /// The instance probed.
        container: ContainerRef,
        /// Which probe.
        probe: ProbeKind,
        /// What it found.
        outcome: ProbeOutcome,
    },
    /// The pod is being deleted (API delete or Ctrl-C). `grace_seconds` overrides the pod's
    /// `terminationGracePeriodSeconds`; a grace can only shrink.
    Delete {
        /// The grace period of the request, if it gave one.
        grace_seconds: Option<i64>,
    },
    /// Stop waiting: SIGKILL every running container now (a second Ctrl-C).
    ForceKill,
    /// The node evicts the pod (an `emptyDir` past its `sizeLimit`): it is killed with a grace
    /// of 1 s and ends `Failed` with reason `Evicted` and this message, as the kubelet's
    /// eviction manager ends it.
    Evict {
        /// The pod's `status.message`, e.g. `Usage of EmptyDir volume "cache" exceeds the
        /// limit "1Mi". `.
        message: String,
    },
    /// The node refuses the pod at admission, before its sandbox (the kubelet's
    /// `SysctlForbidden`, `OutOfpods`, …): nothing of it starts, a Warning event with `reason`
    /// is recorded, and it ends `Failed` with `reason` and `Pod was rejected: <message>`. Once
    /// the sandbox exists, it is too late to reject: the input is ignored.
    Reject {
        /// The status reason, e.g. `SysctlForbidden`.
        reason: String,
        /// Why, e.g. `forbidden sysctl: "kernel.msgmax" not allowlisted`.
        message: String,
    },
    /// The pod spec changed (only container images and `activeDeadlineSeconds` are mutable on a
    /// running pod).
    UpdateSpec(Box<k8s_openapi::api::core::v1::PodSpec>),
    /// The conditions others set on the pod (a controller, through the API), by type, with
    /// their status (`True`, `False`, `Unknown`): `Ready` waits for the condition of every
    /// readiness gate (R61). Each input replaces the last.
    Conditions(std::collections::BTreeMap<String, String>),
}

/// Something the engine wants done. The driver carries it out and reports back with [`Input`]s.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Create the pod sandbox, then report [`Input::SandboxReady`].
    CreateSandbox,
    /// Make the image present (per `imagePullPolicy`), create and start the container, and
    /// report [`Input::ImageReady`], [`Input::Created`] and [`Input::Started`] (or a failure).
    StartContainer {
        /// The new instance.
        container: ContainerRef,
        /// Its spec (with the image to run).
        spec: Box<Container>,
        /// Whether it is an init container (sidecar or regular).
        init: bool,
        /// For an ephemeral container, the container whose process namespace it joins.
        target: Option<String>,
    },
    /// Abandon a start that has not yet reported [`Input::Started`]: the pod began terminating.
    /// The runtime still reports how the start ended: [`Input::StartFailed`] (or
    /// [`Input::ImagePullFailed`]) when the container never ran, or [`Input::Started`] when it
    /// did, and the engine then stops it gracefully. The pod is not finished before that.
    CancelStart {
        /// The instance whose start is abandoned.
        container: ContainerRef,
    },
    /// Run a lifecycle hook in a container; report [`Input::HookDone`]. A preStop hook is given
    /// at most `timeout`; the engine stops waiting after it anyway.
    RunHook {
        /// The instance.
        container: ContainerRef,
        /// Which hook.
        hook: Hook,
        /// How long the engine waits for it, if bounded.
        timeout: Option<Duration>,
    },
    /// Run one probe; report [`Input::ProbeDone`]. The prober enforces `timeout`.
    RunProbe {
        /// The instance.
        container: ContainerRef,
        /// Which probe.
        probe: ProbeKind,
        /// The probe's `timeoutSeconds`.
        timeout: Duration,
    },
    /// Send a signal to the container's main process.
    Signal {
        /// The instance.
        container: ContainerRef,
        /// Which signal.
        signal: Signal,
    },
    /// Every container has stopped for good: tear the sandbox down.
    RemoveSandbox,
    /// Record an event about the pod (shown by `run`, kept for `describe`).
    Record(PodEvent),
}

/// The event type, as in the Kubernetes Event API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    /// Normal progress.
    Normal,
    /// Something went wrong.
    Warning,
}

/// An event the kubelet would record for the pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodEvent {
    /// Normal or Warning.
    pub kind: EventType,
    /// The short reason (`Started`, `Killing`, `BackOff`, `Unhealthy`, …).
    pub reason: String,
    /// The human message, worded as the kubelet words it.
    pub message: String,
    /// The container it is about, if any.
    pub container: Option<EventContainer>,
}

/// The container an event is about: its name, and whether it is declared among the init
/// containers (sidecars included) or the app containers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventContainer {
    /// The container's name.
    pub name: String,
    /// The list it is declared in: `initContainers`, `containers` or `ephemeralContainers`.
    pub list: &'static str,
}

impl EventContainer {
    /// The container `name` of `spec`, wherever it is declared.
    pub fn in_spec(spec: &k8s_openapi::api::core::v1::PodSpec, name: &str) -> EventContainer {
        let list = if spec.init_containers.iter().flatten().any(|c| c.name == name) {
            "initContainers"
        } else if spec.ephemeral_containers.iter().flatten().any(|c| c.name == name) {
            "ephemeralContainers"
        } else {
            "containers"
        };
        EventContainer { name: name.to_string(), list }
    }

    /// The API field path naming it in an event's `involvedObject.fieldPath`:
    /// `spec.initContainers{name}`, `spec.containers{name}`, `spec.ephemeralContainers{name}`.
    pub fn field_path(&self) -> String {
        format!("spec.{}{{{}}}", self.list, self.name)
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::{Container, PodSpec};

    use super::EventContainer;

    #[test]
    fn an_event_names_a_sidecar_among_the_init_containers_and_an_app_among_the_containers() {
        let c = |n: &str| Container { name: n.into(), ..Default::default() };
        let spec =
            PodSpec { init_containers: Some(vec![c("proxy")]), containers: vec![c("app")], ..Default::default() };
        assert_eq!(EventContainer::in_spec(&spec, "proxy").field_path(), "spec.initContainers{proxy}");
        assert_eq!(EventContainer::in_spec(&spec, "app").field_path(), "spec.containers{app}");
        let with = PodSpec {
            ephemeral_containers: Some(vec![k8s_openapi::api::core::v1::EphemeralContainer {
                name: "debugger".into(),
                ..Default::default()
            }]),
            ..spec
        };
        assert_eq!(EventContainer::in_spec(&with, "debugger").field_path(), "spec.ephemeralContainers{debugger}");
    }
}
