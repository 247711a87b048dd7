//! The engine's view of a pod spec: each container's role, probes and hooks, with the API
//! defaults (R12) applied.

use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, PodSpec, Probe};

use crate::io::ProbeKind;

/// What a container is to the lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// An init container without `restartPolicy`: runs to completion, in order.
    Init,
    /// An init container with `restartPolicy: Always`: a native sidecar.
    Sidecar,
    /// An entry of `spec.containers`.
    Regular,
    /// An entry of `spec.ephemeralContainers` (`kubectl debug`): started once when added, even
    /// during initialization, never restarted, and no part of the start or stop order (R23).
    Ephemeral,
}

/// The pod's `restartPolicy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestartPolicy {
    /// Restart every exited container.
    Always,
    /// Restart only failed containers.
    OnFailure,
    /// Never restart regular containers.
    Never,
}

/// A probe's timing and thresholds, defaults applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeSpec {
    /// Which probe.
    pub kind: ProbeKind,
    /// `initialDelaySeconds`.
    pub initial_delay: Duration,
    /// `periodSeconds` (default 10).
    pub period: Duration,
    /// `timeoutSeconds` (default 1).
    pub timeout: Duration,
    /// `successThreshold` (default 1).
    pub success_threshold: u32,
    /// `failureThreshold` (default 3).
    pub failure_threshold: u32,
    /// Probe-level `terminationGracePeriodSeconds` (R48).
    pub termination_grace: Option<i64>,
}

impl ProbeSpec {
    fn from_api(kind: ProbeKind, p: &Probe) -> Self {
        let secs = |v: Option<i32>, d: i32| Duration::from_secs(v.unwrap_or(d).max(0) as u64);
        ProbeSpec {
            kind,
            initial_delay: secs(p.initial_delay_seconds, 0),
            period: secs(p.period_seconds, 10).max(Duration::from_secs(1)),
            timeout: secs(p.timeout_seconds, 1).max(Duration::from_secs(1)),
            success_threshold: p.success_threshold.unwrap_or(1).max(1) as u32,
            failure_threshold: p.failure_threshold.unwrap_or(3).max(1) as u32,
            termination_grace: p.termination_grace_period_seconds,
        }
    }
}

/// One container of the pod, as the engine sees it.
#[derive(Debug, Clone)]
pub struct ContainerModel {
    /// The container's name.
    pub name: String,
    /// Its role.
    pub role: Role,
    /// Its index within `initContainers` or `containers`.
    pub index: usize,
    /// The full API spec, handed to the runtime on start.
    pub spec: Container,
    /// Its probes (only sidecars and regular containers have them, R31).
    pub probes: Vec<ProbeSpec>,
    /// Whether `lifecycle.postStart` is set.
    pub post_start: bool,
    /// Whether `lifecycle.preStop` is set.
    pub pre_stop: bool,
    /// For an ephemeral container, the container whose processes it sees
    /// (`targetContainerName`).
    pub target: Option<String>,
}

impl ContainerModel {
    /// The image the spec asks for.
    pub fn image(&self) -> &str {
        self.spec.image.as_deref().unwrap_or("")
    }

    /// The probe of the given kind, if defined.
    pub fn probe(&self, kind: ProbeKind) -> Option<&ProbeSpec> {
        self.probes.iter().find(|p| p.kind == kind)
    }

    /// This container as events name it.
    pub fn event_container(&self) -> crate::io::EventContainer {
        let list = match self.role {
            Role::Init | Role::Sidecar => "initContainers",
            Role::Regular => "containers",
            Role::Ephemeral => "ephemeralContainers",
        };
        crate::io::EventContainer { name: self.name.clone(), list }
    }

    fn from_api(c: &Container, role: Role, index: usize) -> Self {
        let mut probes = Vec::new();
        if role != Role::Init {
            for (kind, p) in [
                (ProbeKind::Startup, &c.startup_probe),
                (ProbeKind::Liveness, &c.liveness_probe),
                (ProbeKind::Readiness, &c.readiness_probe),
            ] {
                if let Some(p) = p {
                    probes.push(ProbeSpec::from_api(kind, p));
                }
            }
        }
        let lifecycle = c.lifecycle.as_ref();
        ContainerModel {
            name: c.name.clone(),
            role,
            index,
            spec: c.clone(),
            probes,
            post_start: role != Role::Init && lifecycle.is_some_and(|l| l.post_start.is_some()),
            pre_stop: role != Role::Init && lifecycle.is_some_and(|l| l.pre_stop.is_some()),
            target: None,
        }
    }
}

/// The whole pod as the engine sees it.
#[derive(Debug, Clone)]
pub struct PodModel {
    /// Init containers (regular and sidecars) in spec order.
    pub init: Vec<ContainerModel>,
    /// Regular containers in spec order.
    pub regular: Vec<ContainerModel>,
    /// Ephemeral containers in spec order.
    pub ephemeral: Vec<ContainerModel>,
    /// The pod's restart policy (default `Always`).
    pub restart_policy: RestartPolicy,
    /// `terminationGracePeriodSeconds` (default 30).
    pub termination_grace: Option<i64>,
}

impl PodModel {
    /// Builds the model from a pod spec.
    pub fn new(spec: &PodSpec) -> Self {
        let init = spec
            .init_containers
            .iter()
            .flatten()
            .enumerate()
            .map(|(i, c)| {
                let role = if c.restart_policy.as_deref() == Some("Always") { Role::Sidecar } else { Role::Init };
                ContainerModel::from_api(c, role, i)
            })
            .collect();
        let regular =
            spec.containers.iter().enumerate().map(|(i, c)| ContainerModel::from_api(c, Role::Regular, i)).collect();
        let restart_policy = match spec.restart_policy.as_deref() {
            Some("Never") => RestartPolicy::Never,
            Some("OnFailure") => RestartPolicy::OnFailure,
            _ => RestartPolicy::Always,
        };
        // An ephemeral container has a container's fields (validation keeps out probes,
        // lifecycle hooks, ports and resources), and a target, which is the runtime's concern.
        let ephemeral = spec
            .ephemeral_containers
            .iter()
            .flatten()
            .enumerate()
            .map(|(i, e)| ContainerModel {
                target: e.target_container_name.clone().filter(|t| !t.is_empty()),
                ..ContainerModel::from_api(&ephemeral_as_container(e), Role::Ephemeral, i)
            })
            .collect();
        PodModel { init, regular, ephemeral, restart_policy, termination_grace: spec.termination_grace_period_seconds }
    }

    /// Every container, init containers first.
    pub fn all(&self) -> impl Iterator<Item = &ContainerModel> {
        self.init.iter().chain(self.regular.iter()).chain(self.ephemeral.iter())
    }

    /// The container with this name.
    pub fn get(&self, name: &str) -> Option<&ContainerModel> {
        self.all().find(|c| c.name == name)
    }

    /// Whether the pod has at least one sidecar (termination ordering exists only then, R42).
    pub fn has_sidecar(&self) -> bool {
        self.init.iter().any(|c| c.role == Role::Sidecar)
    }

    /// The pod's grace period in seconds: `terminationGracePeriodSeconds`, default 30 (R12).
    pub fn grace_seconds(&self) -> i64 {
        self.termination_grace.unwrap_or(30)
    }
}

/// The fields of an ephemeral container that a container has.
fn ephemeral_as_container(e: &k8s_openapi::api::core::v1::EphemeralContainer) -> Container {
    Container {
        name: e.name.clone(),
        image: e.image.clone(),
        image_pull_policy: e.image_pull_policy.clone(),
        command: e.command.clone(),
        args: e.args.clone(),
        env: e.env.clone(),
        env_from: e.env_from.clone(),
        working_dir: e.working_dir.clone(),
        volume_mounts: e.volume_mounts.clone(),
        volume_devices: e.volume_devices.clone(),
        security_context: e.security_context.clone(),
        stdin: e.stdin,
        stdin_once: e.stdin_once,
        tty: e.tty,
        termination_message_path: e.termination_message_path.clone(),
        termination_message_policy: e.termination_message_policy.clone(),
        ..Default::default()
    }
}
