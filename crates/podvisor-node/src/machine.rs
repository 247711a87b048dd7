//! The seam between a pod's driver and the machine: everything the driver asks of the host
//! (a sandbox, a container start, a signal, a command in a container, where network checks
//! connect, the removal of what a pod left) goes through [`Machine`]. The node runs pods on
//! the shared [`Host`](crate::host::Host): real namespaces and an OCI runtime; the driver's own tests run
//! them on a scripted machine, without root, in tokio's virtual time.

use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, Pod};
use podvisor_engine::{ContainerRef, Found};
use podvisor_runtime::bundle::PodContext;

use crate::events::What;
use crate::handlers::{Outcome, Target};

/// Reports back to the pod's driver.
pub(crate) type Report = tokio::sync::mpsc::UnboundedSender<podvisor_engine::Input>;
/// Publishes node events about the pod.
pub(crate) type Publish = Arc<dyn Fn(What) + Send + Sync>;

/// A pod's sandbox, ready for its containers.
pub(crate) struct Sandboxed {
    /// The pod's address, if it has one.
    pub pod_ip: Option<String>,
    /// What the pod's containers share (namespaces, volumes, security defaults).
    pub ctx: Arc<PodContext>,
    /// The host paths of the pod's volumes, by volume name.
    pub volumes: HashMap<String, PathBuf>,
}

/// Why a sandbox could not be made: the kubelet's event reason and its message.
pub(crate) struct SandboxFailure {
    /// `FailedCreatePodSandBox` or `FailedMount`.
    pub reason: &'static str,
    /// What went wrong.
    pub message: String,
}

/// What a node process finds of a pod it is given, from an earlier node process.
pub(crate) enum Leftover<H> {
    /// Nothing: a pod new to the machine, or one whose sandbox left no trace.
    Nothing,
    /// Its sandbox is intact: the pod is taken over (R75).
    Intact {
        /// What the engine is told of the instances still known to the runtime.
        found: Vec<Found>,
        /// The address the sandbox holds.
        pod_ip: Option<String>,
        /// What [`Machine::take_over`] needs.
        held: H,
    },
    /// A dead sandbox (the machine rebooted): removed before the pod starts over (R73).
    Dead,
}

/// One container start the engine asked for.
pub(crate) struct StartOrder {
    /// The pod, with its address.
    pub pod: Arc<Pod>,
    /// What the pod's containers share.
    pub ctx: Arc<PodContext>,
    /// The instance to start.
    pub r: ContainerRef,
    /// Its spec.
    pub spec: Container,
    /// Set when the engine abandons the start before the container runs.
    pub cancelled: Arc<AtomicBool>,
    /// For an ephemeral container with a target: the PID namespace to join.
    pub pid_namespace: Option<PathBuf>,
    /// Where the start's progress and the instance's end are reported.
    pub report: Report,
    /// Where its log lines and timings are published.
    pub publish: Publish,
}

/// What a pod's driver needs of the machine its pod runs on.
pub(crate) trait Machine: Clone + Send + Sync + 'static {
    /// What an earlier node process left of the machine for this machine's own take-over.
    type Held: Send + 'static;

    /// The node's address (`status.hostIP`, and a `hostNetwork` pod's address).
    fn host_ip(&self) -> String;

    /// What an earlier node process left of `pod`.
    fn leftover(&self, pod: &Pod) -> Leftover<Self::Held>;

    /// Takes over the intact sandbox of `pod` (R75): running instances are watched again and
    /// report their ends, ended ones are recorded and removed.
    fn take_over(
        &self,
        pod: &Arc<Pod>,
        held: Self::Held,
        report: &Report,
        publish: &Publish,
    ) -> impl Future<Output = Sandboxed> + Send;

    /// Removes the dead sandbox of a pod about to start over, keeping its on-disk emptyDirs.
    fn clear_dead(&self, pod: &Pod) -> impl Future<Output = ()> + Send;

    /// Makes the pod's sandbox: namespaces, address, volumes (which may read the address,
    /// through the downward API). On failure, what was made is removed again.
    fn create_sandbox(
        &self,
        pod: &Pod,
        publish: &Publish,
    ) -> impl Future<Output = Result<Sandboxed, SandboxFailure>> + Send;

    /// Starts a container instance in the background; its progress (`ImageReady`, `Created`,
    /// `Started`, `StartFailed`) and its end (`Exited`) are reported as they happen.
    fn start(&self, order: StartOrder);

    /// Creates the first instance of `spec` ahead of its start, if the machine can do so
    /// without changing what the pod sees (the host: see `Host::make_ahead`); its later
    /// [`Machine::start`] then only starts it. A machine may ignore this.
    fn create_ahead(&self, pod: &Arc<Pod>, ctx: &Arc<PodContext>, spec: &Container) {
        let _ = (pod, ctx, spec);
    }

    /// The PID namespace of the running instance with runtime ID `id` (`kubectl debug --target`).
    fn pid_namespace(&self, pod: &Pod, id: &str) -> Option<PathBuf>;

    /// The `STOPSIGNAL` of a locally known image.
    fn image_stop_signal(&self, image: &str) -> Option<String>;

    /// Sends `signal` (a name such as `SIGTERM`) to an instance, in the background.
    fn signal(&self, pod: &Pod, r: &ContainerRef, signal: String);

    /// Runs `argv` in an instance, for at most `timeout`; exit code 0 passes.
    fn exec(
        &self,
        pod: &Pod,
        r: &ContainerRef,
        argv: Vec<String>,
        timeout: Duration,
    ) -> impl Future<Output = Outcome> + Send;

    /// Where the pod's network probes and hooks connect.
    fn target(&self, pod: &Pod) -> Target;

    /// Removes the pod's sandbox, containers and volumes (its logs stay). A node stopping
    /// itself keeps the pod's on-disk emptyDirs for its next start.
    fn remove_sandbox(&self, pod: &Pod) -> impl Future<Output = ()> + Send;
}
