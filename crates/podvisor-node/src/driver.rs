//! One pod's driver: a task that feeds the lifecycle engine with what happens to real
//! containers (exits, probe results, hook results, deletion) the moment it happens, carries out
//! the engine's actions, and publishes status and events. No polling: the loop wakes on an input
//! or on the engine's own next deadline.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Container, Pod, PodStatus};
use podvisor_engine::{
    Action, ContainerRef, EventContainer, EventType, Hook, Input, NodeFacts, PodEngine, PodIdentity, Prior, ProbeKind,
    ProbeOutcome, Signal,
};
use podvisor_runtime::bundle::PodContext;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use crate::events::What;
use crate::handlers::{self, Handler, Outcome, Purpose};
use crate::host::{Publish, Report};
use crate::machine::{Leftover, Machine, Sandboxed, StartOrder};

/// A pod's status as its driver last published it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PodSnapshot {
    /// The API status.
    pub status: PodStatus,
    /// Whether the pod is done (every container stopped for good, sandbox removed).
    pub finished: bool,
}

/// A hook with no bound of its own may run this long.
const UNBOUNDED: Duration = Duration::from_secs(24 * 3600);

pub(crate) struct Driver<M: Machine> {
    /// The machine the pod runs on.
    pub host: M,
    pub pod: Arc<Pod>,
    pub engine: PodEngine,
    pub rx: mpsc::UnboundedReceiver<Input>,
    pub report: Report,
    pub publish: Publish,
    pub snapshot: Arc<watch::Sender<PodSnapshot>>,
    ctx: Option<Arc<PodContext>>,
    stop_sent: HashMap<ContainerRef, (Instant, String)>,
    phase: String,
    /// The cancel flags of starts in flight.
    starts: HashMap<ContainerRef, Arc<AtomicBool>>,
    /// The watches of `emptyDir` size limits, while the sandbox is up.
    size_watches: Vec<tokio::task::JoinHandle<()>>,
    /// What an earlier node process left running, to take over when the driver runs (R75).
    held: Option<M::Held>,
    /// Whether an earlier node process left a dead sandbox of the pod, removed before the pod
    /// starts over (R73).
    stale: bool,
}

impl<M: Machine> Drop for Driver<M> {
    fn drop(&mut self) {
        self.size_watches.iter().for_each(|w| w.abort());
    }
}

fn uid(pod: &Pod) -> String {
    pod.metadata.uid.clone().unwrap_or_default()
}

impl<M: Machine> Driver<M> {
    pub(crate) fn new(
        host: M,
        pod: Arc<Pod>,
        rx: mpsc::UnboundedReceiver<Input>,
        report: Report,
        publish: Publish,
        snapshot: Arc<watch::Sender<PodSnapshot>>,
    ) -> Driver<M> {
        let id = PodIdentity {
            name: pod.metadata.name.clone().unwrap_or_default(),
            namespace: pod.metadata.namespace.clone().unwrap_or_else(|| "default".into()),
            uid: uid(&pod),
        };
        let now = clock_now();
        let spec = pod.spec.clone().unwrap_or_default();
        let node = NodeFacts { host_ip: host.host_ip() };
        // A pod with a status ran on this node before the node process stopped. If its sandbox
        // is intact, what it left is taken over (R75); if not, it resumes as after a reboot
        // (R73, R74).
        let mut held = None;
        let mut stale = false;
        let mut pod_ip = None;
        // Deleted while no node process ran it: it stays terminating, nothing starts again.
        let deleting = pod.metadata.deletion_timestamp.is_some().then_some(pod.metadata.deletion_grace_period_seconds);
        let mut engine = match (&pod.status, host.leftover(&pod)) {
            (None, _) => PodEngine::new(id, spec, &node, now),
            (Some(prior), Leftover::Intact { found, pod_ip: ip, held: h }) => {
                // The sandbox, not the status last written, knows the pod's address.
                let mut prior = prior.clone();
                prior.pod_ip = ip.clone();
                held = Some(h);
                pod_ip = ip;
                PodEngine::adopted(id, spec, &node, now, Prior { status: &prior, deleting }, found)
            }
            (Some(prior), left) => {
                stale = matches!(left, Leftover::Dead);
                PodEngine::resumed(id, spec, &node, now, Prior { status: prior, deleting })
            }
        };
        // The node's admission, for a pod that never started here (no start time yet): sysctls
        // beyond the safe set are refused.
        if pod.status.as_ref().is_none_or(|s| s.start_time.is_none())
            && let Some(message) = pod.spec.as_ref().and_then(podvisor_runtime::bundle::forbidden_sysctl)
        {
            engine.handle(now, Input::Reject { reason: "SysctlForbidden".into(), message });
        }
        // The downward API and the probes read the addresses from the pod.
        let mut pod = pod;
        let status = Arc::make_mut(&mut pod).status.get_or_insert_default();
        (status.host_ip, status.pod_ip) = (Some(host.host_ip()), pod_ip);
        // A handle shows the engine's status from the start, never an empty one.
        snapshot.send_replace(PodSnapshot { status: engine.status().clone(), finished: false });
        Driver {
            host,
            pod,
            engine,
            rx,
            report,
            publish,
            snapshot,
            ctx: None,
            stop_sent: HashMap::new(),
            phase: String::new(),
            starts: HashMap::new(),
            size_watches: Vec::new(),
            held,
            stale,
        }
    }

    /// Runs the pod until it is finished.
    pub(crate) async fn run(mut self) {
        if let Some(held) = self.held.take() {
            // R75: what an earlier node process left running is watched again.
            let sandboxed = self.host.take_over(&self.pod, held, &self.report, &self.publish).await;
            self.enter_sandbox(sandboxed);
        }
        if self.stale {
            // A pod resuming after a reboot keeps the files of its on-disk emptyDirs.
            self.host.clear_dead(&self.pod).await;
        }
        loop {
            while let Some(action) = self.engine.poll_action() {
                self.execute(action).await;
            }
            self.publish_status();
            if self.engine.is_finished() {
                (self.publish)(What::Finished { phase: self.phase.clone() });
                return;
            }
            let wait = self.engine.poll_timeout().map(|t| t.saturating_since(clock_now().mono));
            tokio::select! {
                input = self.rx.recv() => {
                    let Some(input) = input else { return };
                    self.observe(&input);
                    self.engine.handle(clock_now(), input);
                }
                _ = tokio::time::sleep(wait.unwrap_or(Duration::ZERO)), if wait.is_some() => {
                    self.engine.handle_timeout(clock_now());
                }
            }
        }
    }

    fn publish_status(&mut self) {
        self.publish(self.engine.is_finished());
    }

    /// Publishes the engine's status; `finished` says whether the pod is done with.
    fn publish(&mut self, finished: bool) {
        let status = self.engine.status();
        let phase = status.phase.clone().unwrap_or_default();
        if phase != self.phase {
            self.phase = phase.clone();
            (self.publish)(What::Phase { phase });
        }
        self.snapshot.send_if_modified(|s| {
            if s.status != *status || s.finished != finished {
                *s = PodSnapshot { status: status.clone(), finished };
                true
            } else {
                false
            }
        });
    }

    /// Turns runtime reports into the lines `run` prints.
    fn observe(&mut self, input: &Input) {
        match input {
            Input::Started { container } => {
                (self.publish)(What::Started { container: container.name.clone(), attempt: container.attempt })
            }
            Input::Exited { container, exit_code, cause, .. } => {
                let reason = cause.reason(*exit_code);
                self.stop_sent.remove(container);
                (self.publish)(What::Exited {
                    container: container.name.clone(),
                    attempt: container.attempt,
                    exit_code: *exit_code,
                    reason: reason.into(),
                });
            }
            // The moment a sidecar counts as started (R16): what gates the next container.
            Input::ProbeDone { container, probe: ProbeKind::Startup, outcome: ProbeOutcome::Success } => {
                (self.publish)(What::Handler {
                    container: container.name.clone(),
                    handler: "startupProbe".into(),
                    result: "ok".into(),
                })
            }
            Input::HookDone { container, hook, result } => (self.publish)(What::Handler {
                container: container.name.clone(),
                handler: match hook {
                    Hook::PostStart => "postStart".into(),
                    Hook::PreStop => "preStop".into(),
                },
                result: match result {
                    Ok(()) => "ok".into(),
                    Err(e) => e.clone(),
                },
            }),
            _ => {}
        }
    }

    fn container(&self, name: &str) -> Option<Container> {
        let spec = self.engine.spec();
        spec.init_containers.iter().flatten().chain(&spec.containers).find(|c| c.name == name).cloned()
    }

    /// Remembers the pod's address: the downward API and the probes read it from the pod.
    fn set_pod_ip(&mut self, ip: Option<String>) {
        Arc::make_mut(&mut self.pod).status.get_or_insert_default().pod_ip = ip;
    }

    /// Asks the machine for the pod's sandbox; a failure is told to the engine with the
    /// kubelet's event reason.
    async fn create_sandbox(&mut self) -> Input {
        match self.host.create_sandbox(&self.pod, &self.publish).await {
            Ok(sandboxed) => {
                let pod_ip = sandboxed.pod_ip.clone();
                self.set_pod_ip(pod_ip.clone());
                self.enter_sandbox(sandboxed);
                self.create_ahead();
                Input::SandboxReady { pod_ip }
            }
            Err(f) => Input::SandboxFailed { reason: f.reason.into(), message: f.message },
        }
    }

    /// Has the machine create ahead the containers that wait only for sidecars to start: in a
    /// pod whose init containers are all sidecars, every container but the first, while the
    /// first starts. They are started in the engine's order all the same; a regular init
    /// container runs to its end before the next container is even made, as with the kubelet.
    fn create_ahead(&self) {
        let Some(ctx) = &self.ctx else { return };
        let spec = self.engine.spec();
        let init = spec.init_containers.as_deref().unwrap_or_default();
        if init.is_empty() || init.iter().any(|c| c.restart_policy.as_deref() != Some("Always")) {
            return;
        }
        for c in init.iter().skip(1).chain(&spec.containers) {
            self.host.create_ahead(&self.pod, ctx, c);
        }
    }

    /// Keeps what containers of the ready sandbox share, and watches its volumes' limits.
    fn enter_sandbox(&mut self, sandboxed: Sandboxed) {
        for limit in crate::eviction::limits(&self.pod, &sandboxed.volumes) {
            self.size_watches.push(crate::eviction::watch(limit, self.report.clone()));
        }
        self.ctx = Some(sandboxed.ctx);
    }

    async fn execute(&mut self, action: Action) {
        match action {
            Action::CreateSandbox => {
                let outcome = self.create_sandbox().await;
                self.engine.handle(clock_now(), outcome);
            }
            Action::StartContainer { container, spec, target, .. } => {
                let Some(ctx) = self.ctx.clone() else { return };
                let pid_namespace = target.and_then(|t| self.pid_namespace_of(&t));
                let cancelled = Arc::new(AtomicBool::new(false));
                self.starts.retain(|r, _| r.name != container.name);
                self.starts.insert(container.clone(), cancelled.clone());
                self.host.start(StartOrder {
                    cancelled,
                    pod: self.pod.clone(),
                    ctx,
                    r: container,
                    spec: *spec,
                    report: self.report.clone(),
                    publish: self.publish.clone(),
                    pid_namespace,
                });
            }
            // A start past `runc create` runs to its end; the engine kills the container if it
            // comes up.
            Action::CancelStart { container } => {
                if let Some(flag) = self.starts.remove(&container) {
                    flag.store(true, Ordering::SeqCst);
                }
            }
            Action::RunHook { container, hook, timeout } => self.run_hook(container, hook, timeout),
            Action::RunProbe { container, probe, timeout } => self.run_probe(container, probe, timeout),
            Action::Signal { container, signal } => self.signal(container, signal),
            Action::RemoveSandbox => {
                // The pod's end is known: taking its sandbox and address down does not delay
                // it. The pod counts as finished once they are gone.
                self.publish(false);
                self.size_watches.drain(..).for_each(|w| w.abort());
                self.host.remove_sandbox(&self.pod).await;
            }
            Action::Record(e) => (self.publish)(What::Event {
                kind: match e.kind {
                    EventType::Normal => "Normal",
                    EventType::Warning => "Warning",
                },
                reason: e.reason,
                message: e.message,
                field_path: e.container.as_ref().map(EventContainer::field_path),
                container: e.container.map(|c| c.name),
            }),
        }
    }

    /// The PID namespace of the running instance of container `name`, from its monitor's
    /// record of its init (for an ephemeral container that targets it).
    fn pid_namespace_of(&self, name: &str) -> Option<PathBuf> {
        let status = self.engine.status();
        let id = status
            .init_container_statuses
            .iter()
            .flatten()
            .chain(status.container_statuses.iter().flatten())
            .find(|s| s.name == name && s.state.as_ref().is_some_and(|st| st.running.is_some()))?
            .container_id
            .as_deref()?
            .strip_prefix("runc://")?
            .to_string();
        self.host.pid_namespace(&self.pod, &id)
    }

    fn signal(&mut self, r: ContainerRef, signal: Signal) {
        let mut kill_in = None;
        let (name, why) = match signal {
            Signal::Stop => {
                let name = self.stop_signal(&r.name);
                self.stop_sent.insert(r.clone(), (Instant::now(), name.clone()));
                let left = self.engine.stop_deadline(&r).map(|d| d.saturating_since(clock_now().mono));
                // Whole seconds, rounded to the nearest: the grace is given in seconds.
                kill_in = left.map(|d| d.as_millis().saturating_add(500) as u64 / 1000);
                (name, "stopping the container".to_string())
            }
            Signal::Kill => {
                let why = match self.stop_sent.get(&r) {
                    Some((at, sig)) => format!(
                        "still running {:.1}s after {sig}: the grace period is over",
                        at.elapsed().as_secs_f64()
                    ),
                    None => "killed at once".into(),
                };
                ("SIGKILL".to_string(), why)
            }
        };
        (self.publish)(What::Signalled { container: r.name.clone(), signal: name.clone(), why, kill_in });
        self.host.signal(&self.pod, &r, name);
    }

    /// `lifecycle.stopSignal`, else the image's `STOPSIGNAL`, else SIGTERM.
    fn stop_signal(&self, name: &str) -> String {
        let c = self.container(name);
        let own = c.as_ref().and_then(|c| c.lifecycle.as_ref()).and_then(|l| l.stop_signal.clone());
        let image = || c.as_ref().and_then(|c| c.image.as_deref()).and_then(|i| self.host.image_stop_signal(i));
        let s = own.or_else(image).unwrap_or_else(|| "SIGTERM".into());
        if s.starts_with("SIG") || s.parse::<u32>().is_ok() { s } else { format!("SIG{s}") }
    }

    fn run_hook(&self, r: ContainerRef, hook: Hook, timeout: Option<Duration>) {
        let c = self.container(&r.name);
        let handler = c.as_ref().and_then(|c| c.lifecycle.as_ref()).and_then(|l| match hook {
            Hook::PostStart => l.post_start.as_ref(),
            Hook::PreStop => l.pre_stop.as_ref(),
        });
        let handler = handler.map(|h| Handler::of_hook(h).ok_or("the hook has no handler"));
        let (host, pod, report, publish) =
            (self.host.clone(), self.pod.clone(), self.report.clone(), self.publish.clone());
        let timeout = timeout.unwrap_or(UNBOUNDED);
        tokio::spawn(async move {
            let outcome = match (handler, c) {
                (Some(Ok(h)), Some(c)) => run_handler(&host, &pod, &r, &c, h, timeout, Purpose::Hook).await,
                (Some(Err(e)), Some(_)) => Outcome::Failed(e.into()),
                _ => Outcome::Ok,
            };
            let result = match outcome {
                Outcome::Ok => Ok(()),
                // The only warning of a hook: its HTTPS request was answered in HTTP, and sent
                // again over HTTP it succeeded. The kubelet records it on the pod.
                Outcome::Warning(message) => {
                    publish(What::Event {
                        kind: "Warning",
                        reason: "LifecycleHTTPFallback".into(),
                        message,
                        container: None,
                        field_path: None,
                    });
                    Ok(())
                }
                Outcome::Failed(m) => Err(m),
            };
            // The receiver is gone only once the pod is done: nothing waits for the result.
            _ = report.send(Input::HookDone { container: r, hook, result });
        });
    }

    fn run_probe(&self, r: ContainerRef, kind: ProbeKind, timeout: Duration) {
        let c = self.container(&r.name);
        let probe = c.as_ref().and_then(|c| match kind {
            ProbeKind::Startup => c.startup_probe.as_ref(),
            ProbeKind::Liveness => c.liveness_probe.as_ref(),
            ProbeKind::Readiness => c.readiness_probe.as_ref(),
        });
        let handler = probe.map(|p| Handler::of_probe(p).ok_or("the probe has no handler"));
        let (host, pod, report) = (self.host.clone(), self.pod.clone(), self.report.clone());
        tokio::spawn(async move {
            let outcome = match (handler, c) {
                (Some(Ok(h)), Some(c)) => run_handler(&host, &pod, &r, &c, h, timeout, Purpose::Probe).await.into(),
                (Some(Err(e)), Some(_)) => ProbeOutcome::Failure(e.into()),
                _ => ProbeOutcome::Unknown,
            };
            // The receiver is gone only once the pod is done: nothing waits for the result.
            _ = report.send(Input::ProbeDone { container: r, probe: kind, outcome });
        });
    }
}

/// Runs one probe's or hook's handler against instance `r` of container `c`.
async fn run_handler<M: Machine>(
    host: &M,
    pod: &Pod,
    r: &ContainerRef,
    c: &Container,
    handler: Handler,
    timeout: Duration,
    purpose: Purpose,
) -> Outcome {
    match handler {
        Handler::Exec(argv) => host.exec(pod, r, argv, timeout).await,
        Handler::Sleep(seconds) => {
            tokio::time::sleep(Duration::from_secs(u64::try_from(seconds).unwrap_or(0)).min(timeout)).await;
            Outcome::Ok
        }
        Handler::Http(a) => handlers::http(&host.target(pod), c, &a, timeout, purpose).await,
        Handler::Tcp(a) => handlers::tcp(&host.target(pod), c, &a, timeout).await,
        Handler::Grpc(a) => handlers::grpc(&host.target(pod), &a, timeout).await,
    }
}

/// The moment as the engines read it: the monotonic clock (tokio's, so that tests may run it in
/// virtual time), counted from this process's first reading, for their deadlines, and the wall
/// clock for the stamps of the status.
fn clock_now() -> podvisor_engine::Now {
    static ORIGIN: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    let origin = *ORIGIN.get_or_init(Instant::now);
    podvisor_engine::Now::new(podvisor_engine::Instant::ORIGIN.after(origin.elapsed()), Timestamp::now())
}

#[cfg(test)]
mod tests;
