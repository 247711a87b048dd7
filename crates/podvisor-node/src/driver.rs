//! One pod's driver: a task that feeds the lifecycle engine with what happens to real
//! containers (exits, probe results, hook results, deletion) the moment it happens, carries out
//! the engine's actions, and publishes status and events. No polling: the loop wakes on an input
//! or on the engine's own next deadline.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Container, LifecycleHandler, Pod, PodStatus, Probe};
use podvisor_engine::{
    Action, ContainerRef, EventContainer, EventType, Hook, Input, NodeFacts, PodEngine, PodIdentity, Prior, ProbeKind,
    ProbeOutcome, Signal,
};
use podvisor_runtime::bundle::PodContext;
use podvisor_runtime::sandbox::{Names, Networking, Sandbox};
use tokio::sync::{mpsc, watch};

use crate::events::What;
use crate::handlers::{self, Outcome, Purpose, Target};
use crate::host::{
    Held, Host, Publish, Report, StartJob, Steps, VOLUMES, Watch, container_id, pod_cgroup, remove_pod_leftovers,
};

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

pub(crate) struct Driver {
    pub host: Arc<Host>,
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
    held: Option<Vec<Held>>,
    /// Whether an earlier node process left a dead sandbox of the pod, removed before the pod
    /// starts over (R73).
    stale: bool,
}

impl Drop for Driver {
    fn drop(&mut self) {
        self.size_watches.iter().for_each(|w| w.abort());
    }
}

fn uid(pod: &Pod) -> String {
    pod.metadata.uid.clone().unwrap_or_default()
}

fn host_network(pod: &Pod) -> bool {
    pod.spec.as_ref().and_then(|s| s.host_network) == Some(true)
}

impl Driver {
    pub(crate) fn new(
        host: Arc<Host>,
        pod: Arc<Pod>,
        rx: mpsc::UnboundedReceiver<Input>,
        report: Report,
        publish: Publish,
        snapshot: Arc<watch::Sender<PodSnapshot>>,
    ) -> Driver {
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
        let mut engine = match &pod.status {
            None => PodEngine::new(id, spec, &node, now),
            Some(prior) => match host.held(&pod) {
                Some(found) => {
                    // The sandbox, not the status last written, knows the pod's address.
                    let sandbox = Sandbox::at(&host.run_dir(&uid(&pod)).join("sandbox"));
                    let ip =
                        if host_network(&pod) { Some(host.host_ip()) } else { sandbox.ip().map(|ip| ip.to_string()) };
                    let mut prior = prior.clone();
                    prior.pod_ip = ip.clone();
                    let held_now = found.iter().filter_map(Held::found).collect();
                    held = Some(found);
                    pod_ip = ip;
                    PodEngine::adopted(id, spec, &node, now, Prior { status: &prior, deleting }, held_now)
                }
                None => {
                    stale = host.run_dir(&uid(&pod)).exists();
                    PodEngine::resumed(id, spec, &node, now, Prior { status: prior, deleting })
                }
            },
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
            self.take_over(held).await;
        }
        if self.stale {
            // A pod resuming after a reboot keeps the files of its on-disk emptyDirs.
            let keep = podvisor_runtime::volumes::on_disk_empty_dirs(&self.pod);
            crate::host::remove_pod_leftovers_keeping(&self.host, &uid(&self.pod), &keep).await;
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

    /// Where network probes and hooks connect: to the pod's address from the node, as the
    /// kubelet's do; a pod without one (no pod network) from inside its network namespace to
    /// its loopback.
    fn target(&self) -> Target {
        match self.pod.status.as_ref().and_then(|s| s.pod_ip.clone()) {
            Some(ip) => Target { netns: None, ip },
            None => {
                let sandbox = Sandbox::at(&self.host.run_dir(&uid(&self.pod)).join("sandbox"));
                Target { netns: Some(sandbox.namespace("net")), ip: "127.0.0.1".into() }
            }
        }
    }

    /// The pod's hostname and what its `/etc/hosts` says of it.
    fn names(&self) -> Names {
        Names::of(&self.pod, &crate::host_name())
    }

    /// Remembers the pod's address: the downward API and the probes read it from the pod.
    fn set_pod_ip(&mut self, ip: Option<String>) {
        Arc::make_mut(&mut self.pod).status.get_or_insert_default().pod_ip = ip;
    }

    /// Creates the namespaces, the pod's address and volumes; on failure, what was made is
    /// removed again and the engine is told, with the kubelet's event reason.
    async fn create_sandbox(&mut self) -> Input {
        let uid = uid(&self.pod);
        let dir = self.host.run_dir(&uid);
        let sandbox = Sandbox::at(&dir.join("sandbox"));
        let names = self.names();
        let failed = |reason: &str, message: String| Input::SandboxFailed { reason: reason.into(), message };
        let mut steps = Steps::new();
        let net = match (host_network(&self.pod), &self.host.network) {
            (true, _) => Networking::Host,
            (false, Some(n)) => Networking::Pod(n),
            (false, None) => Networking::Loopback,
        };
        let pod_ip = match sandbox.create(&names, net).await {
            Ok(ip) => ip.map(|ip| ip.to_string()),
            Err(e) => return failed("FailedCreatePodSandBox", e.to_string()),
        };
        let pod_ip = if matches!(net, Networking::Host) { Some(self.host.host_ip()) } else { pod_ip };
        self.set_pod_ip(pod_ip.clone());
        steps.done("namespaces");
        let volumes =
            match podvisor_runtime::volumes::prepare(&self.pod, &dir.join("volumes"), self.host.objects.as_ref()) {
                Ok(v) => v,
                Err(e) => {
                    podvisor_runtime::volumes::release(&dir.join("volumes"));
                    let sandbox_dir = dir.join("sandbox");
                    match tokio::task::spawn_blocking(move || sandbox.remove()).await {
                        Ok(removed) => _ = crate::cleanup::said(sandbox_dir.display(), removed),
                        Err(e) => _ = crate::cleanup::said(sandbox_dir.display(), Err(e)),
                    }
                    return failed("FailedMount", e.to_string());
                }
            };
        steps.done("volumes");
        // A node process started again finds the volumes here (R75).
        // Written whole or not at all: without it, the sandbox counts as lost (R73).
        if let Ok(v) = serde_json::to_vec(&volumes) {
            let tmp = dir.join(format!("{VOLUMES}.tmp"));
            let written = std::fs::write(&tmp, v).and_then(|()| std::fs::rename(&tmp, dir.join(VOLUMES)));
            if let Err(e) = written {
                eprintln!(
                    "podvisor: pod {}/{}: {}: {e} (a node process started again will not take this pod over)",
                    self.pod.metadata.namespace.as_deref().unwrap_or("default"),
                    self.pod.metadata.name.as_deref().unwrap_or(""),
                    dir.join(VOLUMES).display()
                );
            }
        }
        (self.publish)(What::Timing { container: None, steps: steps.list });
        self.enter_sandbox(&sandbox, volumes);
        Input::SandboxReady { pod_ip }
    }

    /// Sets up what containers of the ready sandbox share, and watches its volumes' limits.
    fn enter_sandbox(&mut self, sandbox: &Sandbox, volumes: HashMap<String, PathBuf>) {
        for limit in crate::eviction::limits(&self.pod, &volumes) {
            self.size_watches.push(crate::eviction::watch(limit, self.report.clone()));
        }
        let host_network = host_network(&self.pod);
        self.ctx = Some(Arc::new(PodContext {
            netns: (!host_network).then(|| sandbox.namespace("net")),
            uts: (!host_network).then(|| sandbox.namespace("uts")),
            host_network,
            ipc: Some(sandbox.namespace("ipc")),
            cgroup_parent: pod_cgroup(&uid(&self.pod)),
            cgroup_v2: podvisor_runtime::cgroup::is_v2(),
            etc_files: sandbox.etc_files(),
            volumes,
            readonly_volumes: podvisor_runtime::volumes::read_only(&self.pod),
            hostname: Some(self.names().uts_hostname()),
            security: self.pod.spec.as_ref().and_then(|s| s.security_context.clone()),
            seccomp_default: self.host.default_seccomp,
            seccomp_dir: self.host.seccomp_dir(),
        }));
    }

    /// R75: takes over the sandbox and containers an earlier node process left. Running
    /// containers are watched again (their log lines published from where the log is now);
    /// ended and never-started ones are removed, the engine having been told how they ended.
    async fn take_over(&mut self, held: Vec<Held>) {
        let dir = self.host.run_dir(&uid(&self.pod));
        let volumes: HashMap<String, PathBuf> =
            std::fs::read(dir.join(VOLUMES)).ok().and_then(|v| serde_json::from_slice(&v).ok()).unwrap_or_default();
        self.enter_sandbox(&Sandbox::at(&dir.join("sandbox")), volumes);
        let log_dir = self.host.log_dir(&self.pod);
        for h in held {
            match h {
                Held::Running { r, id, dir, monitor } => {
                    let Some(spec) = self.container(&r.name) else { continue };
                    let log = podvisor_runtime::logs::path(&log_dir, &r.name, r.attempt);
                    let watch = Watch {
                        host: self.host.clone(),
                        pod: self.pod.clone(),
                        cgroup_parent: pod_cgroup(&uid(&self.pod)),
                        spec,
                        log_from: std::fs::metadata(&log).map_or(0, |m| m.len()),
                        r,
                        id,
                        dir,
                        monitor,
                        start_error: None,
                        report: self.report.clone(),
                        publish: self.publish.clone(),
                    };
                    tokio::spawn(watch.run());
                }
                Held::Ended { r, id, dir, end } => {
                    crate::host::record_end(&log_dir, &r, &end);
                    self.host.remove_container(&id, &dir).await;
                }
                Held::Unstarted { id, dir } => self.host.remove_container(&id, &dir).await,
                Held::Recorded { .. } => {}
            }
        }
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
                let job = StartJob {
                    cancelled,
                    host: self.host.clone(),
                    pod: self.pod.clone(),
                    ctx,
                    r: container,
                    spec: *spec,
                    report: self.report.clone(),
                    publish: self.publish.clone(),
                    pid_namespace,
                };
                tokio::spawn(job.run());
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
                if self.host.stopping.load(Ordering::SeqCst) {
                    let keep = podvisor_runtime::volumes::on_disk_empty_dirs(&self.pod);
                    crate::host::remove_pod_leftovers_keeping(&self.host, &uid(&self.pod), &keep).await
                } else {
                    remove_pod_leftovers(&self.host, &uid(&self.pod)).await
                }
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
        let dir = self.host.container_dir(&uid(&self.pod), &id);
        let pid: i32 = std::fs::read_to_string(dir.join("init.pid")).ok()?.trim().parse().ok()?;
        Some(PathBuf::from(format!("/proc/{pid}/ns/pid")))
    }

    fn signal(&mut self, r: ContainerRef, signal: Signal) {
        let id = container_id(&uid(&self.pod), &r);
        let (name, why) = match signal {
            Signal::Stop => {
                let name = self.stop_signal(&r.name);
                self.stop_sent.insert(r.clone(), (Instant::now(), name.clone()));
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
        (self.publish)(What::Signalled { container: r.name.clone(), signal: name.clone(), why });
        let runc = self.host.runc.clone();
        tokio::spawn(async move {
            let _ = runc.kill(&id, &name).await;
        });
    }

    /// `lifecycle.stopSignal`, else the image's `STOPSIGNAL`, else SIGTERM.
    fn stop_signal(&self, name: &str) -> String {
        let c = self.container(name);
        let own = c.as_ref().and_then(|c| c.lifecycle.as_ref()).and_then(|l| l.stop_signal.clone());
        let image = || {
            c.as_ref()
                .and_then(|c| c.image.as_deref())
                .and_then(|i| self.host.images.resolve(i))
                .and_then(|i| i.config.stop_signal)
        };
        let s = own.or_else(image).unwrap_or_else(|| "SIGTERM".into());
        if s.starts_with("SIG") || s.parse::<u32>().is_ok() { s } else { format!("SIG{s}") }
    }

    fn run_hook(&self, r: ContainerRef, hook: Hook, timeout: Option<Duration>) {
        let c = self.container(&r.name);
        let handler: Option<LifecycleHandler> =
            c.as_ref().and_then(|c| c.lifecycle.as_ref()).and_then(|l| match hook {
                Hook::PostStart => l.post_start.clone(),
                Hook::PreStop => l.pre_stop.clone(),
            });
        let (runc, report, target) = (self.host.runc.clone(), self.report.clone(), self.target());
        let publish = self.publish.clone();
        let id = container_id(&uid(&self.pod), &r);
        let timeout = timeout.unwrap_or(UNBOUNDED);
        tokio::spawn(async move {
            let outcome = match (handler, c) {
                (Some(h), Some(c)) => {
                    if let Some(e) = &h.exec {
                        handlers::exec(&runc, &id, e.command.as_deref().unwrap_or_default(), timeout).await
                    } else if let Some(s) = &h.sleep {
                        tokio::time::sleep(Duration::from_secs(s.seconds.max(0) as u64).min(timeout)).await;
                        Outcome::Ok
                    } else if let Some(a) = &h.http_get {
                        handlers::http(&target, &c, a, timeout, Purpose::Hook).await
                    } else if let Some(a) = &h.tcp_socket {
                        handlers::tcp(&target, &c, a, timeout).await
                    } else {
                        Outcome::Failed("the hook has no handler".into())
                    }
                }
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
            let _ = report.send(Input::HookDone { container: r, hook, result });
        });
    }

    fn run_probe(&self, r: ContainerRef, kind: ProbeKind, timeout: Duration) {
        let c = self.container(&r.name);
        let probe: Option<Probe> = c.as_ref().and_then(|c| match kind {
            ProbeKind::Startup => c.startup_probe.clone(),
            ProbeKind::Liveness => c.liveness_probe.clone(),
            ProbeKind::Readiness => c.readiness_probe.clone(),
        });
        let (runc, report, target) = (self.host.runc.clone(), self.report.clone(), self.target());
        let id = container_id(&uid(&self.pod), &r);
        tokio::spawn(async move {
            let outcome = match (probe, c) {
                (Some(p), Some(c)) => {
                    if let Some(e) = &p.exec {
                        handlers::exec(&runc, &id, e.command.as_deref().unwrap_or_default(), timeout).await.into()
                    } else if let Some(a) = &p.tcp_socket {
                        handlers::tcp(&target, &c, a, timeout).await.into()
                    } else if let Some(a) = &p.http_get {
                        handlers::http(&target, &c, a, timeout, Purpose::Probe).await.into()
                    } else if let Some(a) = &p.grpc {
                        handlers::grpc(&target, a, timeout).await.into()
                    } else {
                        ProbeOutcome::Failure("the probe has no handler".into())
                    }
                }
                _ => ProbeOutcome::Unknown,
            };
            let _ = report.send(Input::ProbeDone { container: r, probe: kind, outcome });
        });
    }
}

/// The moment as the engines read it: the monotonic clock, counted from this process's first
/// reading, for their deadlines, and the wall clock for the stamps of the status.
fn clock_now() -> podvisor_engine::Now {
    static ORIGIN: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    let origin = *ORIGIN.get_or_init(Instant::now);
    podvisor_engine::Now::new(podvisor_engine::Instant::ORIGIN.after(origin.elapsed()), Timestamp::now())
}
