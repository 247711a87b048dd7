//! The node core that `podvisor run` and `podvisor serve` share: pods driven by the sans-IO
//! lifecycle engine on real OCI containers, with their events and logs. (The controllers that
//! create pods are the cluster's, in `podvisor-cluster`.)
//!
//! - [`Node`]: opens the data directory (cleaning up after a crashed earlier run) and runs pods;
//! - `driver`: one task per pod feeding the engine and carrying out its actions;
//! - `host`: one container instance's start, exit and clean-up on the machine;
//! - `eviction`: local-storage eviction of `emptyDir` volumes over their `sizeLimit`;
//! - `handlers`: exec, tcpSocket, httpGet, grpc and sleep probes and hooks;
//! - [`pod_logs`]: reading a container's logs, as `kubectl logs` and `podvisor logs` do;
//! - [`events`]: what the node reports.

#![warn(missing_docs)]

mod cleanup;
mod driver;
pub mod events;
mod eviction;
mod execs;
mod handlers;
mod host;
mod machine;
pub mod pod_logs;
pub mod store;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Pod, PodStatus};
use podvisor_engine::Input;
use podvisor_runtime::image::ImageStore;
use podvisor_runtime::objects::Objects;
use podvisor_runtime::runc::Runc;
use tokio::sync::{mpsc, watch};

pub use driver::PodSnapshot;
pub use events::{NodeEvent, What};
pub use host::{bundles_dir, log_dir};
pub use store::ObjectStore;

/// Why a node could not open.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// Not running as root.
    #[error("podvisor needs root to run containers (namespaces, mounts, cgroups): run it as root, e.g. with sudo")]
    NotRoot,
    /// The OCI runtime binary is missing.
    #[error(
        "OCI runtime {0:?} not found: install it ({hint}) or name another with --runtime",
        hint = podvisor_runtime::runc::install_hint(std::path::Path::new(.0))
    )]
    NoRuntime(String),
    /// crun on a hybrid cgroup host whose cgroup2 hierarchy holds controllers, which crun
    /// refuses for every container.
    #[error(
        "{runtime} cannot run containers on this hybrid cgroup host: its cgroup2 hierarchy holds the {} \
         controller(s); bind them to cgroup v1 as scripts/setup does ({}) or use --runtime runc",
        controllers.join(", "),
        controllers.iter().map(|c| format!("mkdir -p /sys/fs/cgroup/{c} && mount -t cgroup -o {c} cgroup /sys/fs/cgroup/{c}")).collect::<Vec<_>>().join("; ")
    )]
    HybridCgroups {
        /// The runtime as named.
        runtime: String,
        /// The controllers of the cgroup2 hierarchy.
        controllers: Vec<String>,
    },
    /// Another podvisor holds the data directory.
    #[error("{0}: another podvisor is using this data directory (use --data-dir for a separate one)")]
    Busy(PathBuf),
    /// A file or directory of the data directory.
    #[error("{path}: {error}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        error: std::io::Error,
    },
    /// The image store.
    #[error(transparent)]
    Image(#[from] podvisor_runtime::image::ImageError),
    /// The data directory is not private to this user.
    #[error(transparent)]
    DataDir(#[from] podvisor_runtime::files::DataDirError),
    /// The pod network cannot be set up.
    #[error(transparent)]
    Network(#[from] podvisor_runtime::network::NetworkError),
    /// The thread that makes pods' namespaces could not start.
    #[error("starting the thread that makes pods' namespaces: {0}")]
    Namespaces(std::io::Error),
}

/// How to open a node.
#[derive(Clone)]
pub struct NodeConfig {
    /// Images, pod state and logs (`/var/lib/podvisor` by default).
    pub data_dir: PathBuf,
    /// The OCI runtime binary (`runc`, `crun`, `youki`, or a path).
    pub runtime: PathBuf,
    /// How to reach registries.
    pub pull: podvisor_runtime::pull::PullSettings,
    /// Where pods read ConfigMaps and Secrets from.
    pub objects: Arc<dyn Objects>,
    /// How to start the monitor process that holds each container (`podvisor monitor`).
    pub monitor: podvisor_runtime::monitor::MonitorCommand,
    /// The pod network pods get their addresses from; without one, a pod that does not use
    /// the host's network has loopback only.
    pub network: Option<podvisor_runtime::network::PodNetwork>,
    /// `RuntimeDefault` seccomp for containers that name no profile, as the kubelet's
    /// `seccompDefault`; without it they run `Unconfined`, as with the kubelet's default.
    pub default_seccomp: bool,
    /// How container logs are rotated (the kubelet's `containerLogMaxSize` and
    /// `containerLogMaxFiles`).
    pub log_rotation: podvisor_runtime::logs::Rotation,
    /// The most pods that run at once (the kubelet's `maxPods`, 110 by default).
    pub max_pods: usize,
}

/// The kubelet's default `maxPods`.
pub const DEFAULT_MAX_PODS: usize = 110;

impl std::fmt::Debug for NodeConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeConfig")
            .field("data_dir", &self.data_dir)
            .field("runtime", &self.runtime)
            .field("pull", &self.pull)
            .field("monitor", &self.monitor)
            .field("network", &self.network)
            .field("default_seccomp", &self.default_seccomp)
            .field("log_rotation", &self.log_rotation)
            .field("max_pods", &self.max_pods)
            .finish_non_exhaustive()
    }
}

/// Finds `name` on `PATH` unless it is a path already.
fn which(name: &Path) -> Option<PathBuf> {
    if name.components().count() > 1 {
        return name.is_file().then(|| name.to_path_buf());
    }
    std::env::var_os("PATH")?.to_str()?.split(':').map(|d| Path::new(d).join(name)).find(|p| p.is_file())
}

/// This machine's host name: the node's name, and the hostname of pods on the host's network.
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "podvisor".into())
}

/// A handle on a running pod.
#[derive(Clone)]
pub struct PodHandle {
    pod: Arc<Pod>,
    input: mpsc::UnboundedSender<Input>,
    snapshot: watch::Receiver<PodSnapshot>,
}

impl PodHandle {
    /// The pod as it was created, with the spec last given to [`PodHandle::update_spec`].
    pub fn pod(&self) -> &Pod {
        &self.pod
    }

    /// `namespace/name`.
    pub fn key(&self) -> String {
        key(&self.pod)
    }

    /// The pod's UID.
    pub fn uid(&self) -> &str {
        self.pod.metadata.uid.as_deref().unwrap_or("")
    }

    /// Applies a changed spec to the running pod (only images, R69 and R70, and
    /// `activeDeadlineSeconds` are mutable).
    pub fn update_spec(&mut self, spec: k8s_openapi::api::core::v1::PodSpec) {
        Arc::make_mut(&mut self.pod).spec = Some(spec.clone());
        let _ = self.input.send(Input::UpdateSpec(Box::new(spec)));
    }

    /// Tells the pod the conditions others set on it (by type, with their status), which its
    /// readiness gates wait for (R61).
    pub fn set_conditions(&self, conditions: std::collections::BTreeMap<String, String>) {
        let _ = self.input.send(Input::Conditions(conditions));
    }

    /// Deletes the pod: the ordered graceful termination, with `grace_seconds` if given.
    pub fn delete(&self, grace_seconds: Option<i64>) {
        let _ = self.input.send(Input::Delete { grace_seconds });
    }

    /// SIGKILLs every container now (a second Ctrl-C).
    pub fn force_kill(&self) {
        let _ = self.input.send(Input::ForceKill);
    }

    /// The latest status.
    pub fn status(&self) -> PodStatus {
        self.snapshot.borrow().status.clone()
    }

    /// Whether the pod is finished.
    pub fn is_finished(&self) -> bool {
        self.snapshot.borrow().finished
    }

    /// Whether the pod's phase is final (`Succeeded` or `Failed`), read without copying its
    /// status.
    pub fn is_terminal(&self) -> bool {
        matches!(self.snapshot.borrow().status.phase.as_deref(), Some("Succeeded" | "Failed"))
    }

    /// A receiver of every status change.
    pub fn watch(&self) -> watch::Receiver<PodSnapshot> {
        self.snapshot.clone()
    }

    /// Waits until the pod is finished and returns its final status.
    pub async fn finished(&self) -> PodStatus {
        let mut rx = self.snapshot.clone();
        let _ = rx.wait_for(|s| s.finished).await;
        rx.borrow().status.clone()
    }
}

fn key(pod: &Pod) -> String {
    format!("{}/{}", pod.metadata.namespace.as_deref().unwrap_or("default"), pod.metadata.name.as_deref().unwrap_or(""))
}

/// One machine's pods on real containers.
#[derive(Clone)]
pub struct Node {
    host: Arc<host::Host>,
    events: mpsc::UnboundedSender<NodeEvent>,
    pods: Arc<Mutex<BTreeMap<String, PodHandle>>>,
    _lock: Arc<std::fs::File>,
}

impl Node {
    /// Opens the node on `config.data_dir`: checks privileges and the runtime and takes the data
    /// directory's lock. What an earlier node process left on the machine stays: a pod run
    /// again takes its containers over ([`Node::run_pod`]), and [`Node::remove_strays`] removes
    /// the rest. Events of every pod go to `events`.
    pub async fn open(config: NodeConfig, events: mpsc::UnboundedSender<NodeEvent>) -> Result<Node, NodeError> {
        if !rustix::process::geteuid().is_root() {
            return Err(NodeError::NotRoot);
        }
        let runtime =
            which(&config.runtime).ok_or_else(|| NodeError::NoRuntime(config.runtime.display().to_string()))?;
        check_cgroups(&runtime, podvisor_runtime::cgroup::hybrid_unified_controllers())?;
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |error| NodeError::Io { path, error }
        };
        podvisor_runtime::files::secure_data_dir(&config.data_dir)?;
        let lock_path = config.data_dir.join("node.lock");
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io(&lock_path))?;
        rustix::fs::flock(&lock, rustix::fs::FlockOperation::NonBlockingLockExclusive)
            .map_err(|_| NodeError::Busy(config.data_dir.clone()))?;
        // Commands a killed node process ran for its clients end with it, if late.
        let strays = execs::end_strays(&config.data_dir);
        if strays > 0 {
            tracing::info!("ended {strays} command(s) a stopped node process had run in containers for its clients");
        }
        // The bridge comes first: its address is the node's, which hostNetwork pods and probes use.
        if let Some(network) = &config.network {
            network.ensure_bridge().await?;
        }
        let runtime_root = podvisor_runtime::state::runtime_root(&config.data_dir).map_err(io(&config.data_dir))?;
        let state = podvisor_runtime::state::bundles(&config.data_dir).map_err(io(&config.data_dir))?;
        let host = host::Host {
            state,
            images: ImageStore::open(&config.data_dir)?,
            runc: Runc::new(runtime, runtime_root),
            objects: config.objects.clone(),
            puller: podvisor_runtime::pull::Puller::new(config.pull.clone()),
            data: config.data_dir.clone(),
            monitor: config.monitor.clone(),
            network: config.network.clone(),
            default_seccomp: config.default_seccomp,
            log_rotation: config.log_rotation,
            max_pods: config.max_pods.max(1),
            cluster_dns: Default::default(),
            stopping: Default::default(),
            offline_noted: Default::default(),
            ahead: Default::default(),
            namespaces: podvisor_runtime::namespaces::NamespaceMaker::start(
                config.network.is_some().then_some(podvisor_runtime::network::BRIDGE),
            )
            .map_err(NodeError::Namespaces)?,
        };
        Ok(Node { host: Arc::new(host), events, pods: Arc::default(), _lock: Arc::new(lock) })
    }

    /// Removes what earlier node processes left on the machine of pods this node does not run
    /// now: their containers (stopped at once), layers, volumes, namespaces and cgroups. Call
    /// it once the pods to take over are running.
    pub async fn remove_strays(&self) {
        let running: Vec<String> = self.pods().iter().map(|p| p.uid().to_string()).collect();
        let kept = |uid: &str| running.iter().any(|r| r == uid);
        let stray =
            |id: &str| id.starts_with("podvisor-") && !running.iter().any(|uid| id.starts_with(&host::id_prefix(uid)));
        // The runtime keeps a directory per container under its root: without a stray one
        // there, the runtime is not asked (a process fewer while the first pods start).
        let mut entries = std::fs::read_dir(self.host.runc.root()).into_iter().flatten().flatten();
        let any_stray = entries.any(|e| stray(&e.file_name().to_string_lossy()));
        let listed = if any_stray { self.host.runc.list().await.unwrap_or_default() } else { Vec::new() };
        for id in listed {
            if stray(&id) {
                cleanup::container(&id, self.host.runc.delete_if_present(&id).await);
            }
        }
        // A pod is found by its run directory on disk, or by its bundles in memory (a run
        // directory removed while its bundles stayed).
        let mut uids: std::collections::BTreeSet<String> = std::collections::BTreeSet::new();
        for dir in [self.host.data.join("run"), self.host.state.join("pods")] {
            let entries = std::fs::read_dir(dir).into_iter().flatten().flatten();
            uids.extend(entries.map(|e| e.file_name().to_string_lossy().into_owned()));
        }
        for uid in uids.iter().filter(|u| !kept(u)) {
            host::remove_pod_leftovers(&self.host, uid).await;
        }
        // Layers whose bundle is gone (a reboot empties the memory file system).
        for e in std::fs::read_dir(self.host.data.join("layers")).into_iter().flatten().flatten() {
            if stray(&e.file_name().to_string_lossy()) {
                cleanup::remove_tree(&e.path());
            }
        }
    }

    /// Runs `argv` in the container with runtime ID `id` (as `containerID` shows it, without
    /// `runc://`), with piped standard streams (stdin only if `stdin`); the process's host PID
    /// is written to `pid_file`.
    pub fn exec(
        &self,
        id: &str,
        argv: &[String],
        stdin: bool,
        pid_file: &Path,
    ) -> std::io::Result<tokio::process::Child> {
        use std::process::Stdio;
        self.host
            .runc
            .exec_command(id, argv, pid_file)
            .stdin(if stdin { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
    }

    /// A fresh file for the host PID of a command run for a client ([`Node::exec`],
    /// [`Node::exec_tty`]): remove it when the command ends. A node process started after this
    /// one was killed ends the commands whose files are left.
    pub fn exec_pid_file(&self) -> std::io::Result<PathBuf> {
        execs::pid_file(&self.host.data)
    }

    /// Runs `argv` in the container with runtime ID `id` with a terminal (`kubectl exec -t`):
    /// the process and the terminal's master end, where its output is read, its input written
    /// and its window resized. The process's host PID is written to `pid_file`.
    pub fn exec_tty(
        &self,
        id: &str,
        argv: &[String],
        pid_file: &Path,
    ) -> std::io::Result<(tokio::process::Child, podvisor_runtime::pty::Pty)> {
        let (pty, slave) = podvisor_runtime::pty::open()?;
        let mut command = self.host.runc.exec_tty_command(id, argv, pid_file);
        podvisor_runtime::pty::attach(&mut command, &slave)?;
        let child = command.spawn()?;
        // Only the runtime may hold the slave end now, so that the master reads the end with it.
        drop(command);
        drop(slave);
        Ok((child, pty))
    }

    /// Attaches to the running container with runtime ID `id` of the pod with `uid`: its output
    /// from now on, and its standard input if `stdin` (the container must keep it open).
    pub async fn attach(
        &self,
        uid: &str,
        id: &str,
        stdin: bool,
    ) -> Result<podvisor_runtime::monitor::attach::Attached, podvisor_runtime::monitor::attach::AttachError> {
        podvisor_runtime::monitor::attach::attach(&self.host.container_dir(uid, id), stdin).await
    }

    /// Opens a TCP connection to `port` on the loopback of the pod with `uid`, from inside its
    /// network namespace as the kubelet's port-forward connects (so a server listening on the
    /// pod's loopback only is reached); on the host's loopback for a pod on the host's network.
    pub async fn connect(&self, uid: &str, port: u16) -> Result<tokio::net::TcpStream, String> {
        let netns = self.network_namespace(uid);
        let netns = netns.exists().then_some(netns);
        let stream = handlers::in_netns(netns, move || {
            let timeout = std::time::Duration::from_secs(10);
            let v4 = std::net::SocketAddr::from(([127, 0, 0, 1], port));
            let v6 = std::net::SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, port));
            let s = std::net::TcpStream::connect_timeout(&v4, timeout)
                .or_else(|e4| {
                    std::net::TcpStream::connect_timeout(&v6, timeout)
                        .map_err(|e6| format!("IPv4: dial tcp4 {v4}: {e4}; IPv6: dial tcp6 {v6}: {e6}"))
                })
                .map_err(|e| {
                    format!("failed to connect to localhost:{port} inside the pod's network namespace, {e}")
                })?;
            s.set_nonblocking(true).map_err(|e| e.to_string())?;
            Ok(s)
        })
        .await?;
        tokio::net::TcpStream::from_std(stream).map_err(|e| e.to_string())
    }

    /// The most pods that run at once (the kubelet's `maxPods`).
    pub fn max_pods(&self) -> usize {
        self.host.max_pods
    }

    /// Whether an earlier node process left a live sandbox of the pod with `uid` (with its
    /// containers) on the machine.
    pub fn holds(&self, uid: &str) -> bool {
        !uid.is_empty() && podvisor_runtime::sandbox::Sandbox::at(&self.host.run_dir(uid).join("sandbox")).is_alive()
    }

    /// The file of the network namespace of the pod with `uid` (present while its sandbox is,
    /// unless the pod uses the host's network): what `nsenter --net=` takes to reach the pod's
    /// loopback.
    pub fn network_namespace(&self, uid: &str) -> PathBuf {
        podvisor_runtime::sandbox::Sandbox::at(&self.host.run_dir(uid).join("sandbox")).namespace("net")
    }

    /// The node's address (`status.hostIP`): the pod network's gateway, where pods reach the
    /// host, or loopback without a pod network.
    pub fn host_ip(&self) -> String {
        self.host.host_ip()
    }

    /// Gives pods with `dnsPolicy: ClusterFirst` cluster DNS (the kubelet's `--cluster-dns` and
    /// `--cluster-domain`); without it they use the host's resolvers. Set once, before pods run.
    pub fn set_cluster_dns(&self, dns: podvisor_runtime::resolv::ClusterDns) {
        _ = self.host.cluster_dns.set(dns);
    }

    /// Whether pods get addresses on a pod network (Services and cluster DNS serve them there).
    pub fn has_pod_network(&self) -> bool {
        self.host.network.is_some()
    }

    /// The data directory.
    pub fn data_dir(&self) -> &Path {
        &self.host.data
    }

    /// Starts running `pod` (defaulted and validated, with the UID the store gave it: the UID
    /// names the pod's directories and cgroup). A pod with a status ran before: if its sandbox
    /// outlived the node process that ran it, its containers are taken over as they are (R75);
    /// otherwise it resumes as after a reboot (R73, R74). A pod without a UID, or with one that is not a
    /// UUID (a manifest's own is never used as a path), gets a fresh one, and the `default`
    /// namespace when it has none.
    pub fn run_pod(&self, mut pod: Pod) -> PodHandle {
        if !pod.metadata.uid.as_deref().is_some_and(podvisor_objects::uid::is_uuid) {
            pod.metadata.uid = Some(podvisor_objects::uid::new_uid());
        }
        if pod.metadata.namespace.is_none() {
            pod.metadata.namespace = Some("default".into());
        }
        let pod = Arc::new(pod);
        let (tx, rx) = mpsc::unbounded_channel();
        let (snap_tx, snap_rx) = watch::channel(PodSnapshot::default());
        let events = self.events.clone();
        let pod_key = key(&pod);
        let pod_uid = pod.metadata.uid.clone().unwrap_or_default();
        let publish: host::Publish = Arc::new(move |what| {
            let _ = events.send(NodeEvent { at: Timestamp::now(), pod: pod_key.clone(), uid: pod_uid.clone(), what });
        });
        let snap_tx = Arc::new(snap_tx);
        let handle = PodHandle { pod: pod.clone(), input: tx.clone(), snapshot: snap_rx };
        if let Ok(mut pods) = self.pods.lock() {
            pods.insert(handle.uid().to_string(), handle.clone());
        }
        let (snapshot, report) = (snap_tx.clone(), publish.clone());
        // Made here, not in the task: the handle shows the engine's first status at once, never
        // an empty one.
        let driver = driver::Driver::new(self.host.clone(), pod, rx, tx, publish, snap_tx);
        let worker = tokio::spawn(driver.run());
        let (host, pod) = (self.host.clone(), handle.pod.clone());
        // A panic in this pod's worker ends this pod alone: its containers are stopped, it is
        // Failed with the reason, and every other pod goes on.
        tokio::spawn(async move {
            if let Err(e) = worker.await
                && e.is_panic()
            {
                worker_panicked(&host, &pod, &snapshot, &report, e.into_panic()).await;
            }
        });
        handle
    }

    /// Rewrites the volumes that read ConfigMap or Secret `name` of `namespace` in every pod
    /// still running, after it changed (event-driven, where the kubelet takes up to a minute).
    /// A volume that cannot be rewritten keeps its files and gets a `FailedMount` event.
    pub fn refresh_volumes(&self, namespace: &str, kind: podvisor_runtime::objects::Kind, name: &str) {
        for h in self.pods() {
            if h.is_finished() || h.pod().metadata.namespace.as_deref() != Some(namespace) {
                continue;
            }
            let dir = self.host.run_dir(h.uid()).join("volumes");
            let (_, errors) = podvisor_runtime::volumes::refresh(h.pod(), &dir, self.host.objects.as_ref(), kind, name);
            for e in errors {
                let what = events::What::Event {
                    kind: "Warning",
                    reason: "FailedMount".into(),
                    message: e.to_string(),
                    container: None,
                    field_path: None,
                };
                // The receiver goes only with the node: nothing is left to tell then.
                _ = self.events.send(NodeEvent { at: Timestamp::now(), pod: h.key(), uid: h.uid().to_string(), what });
            }
        }
    }

    /// The cgroup (`cgroupsPath`) of the container with runtime ID `id` of the pod `uid`.
    pub fn container_cgroup(uid: &str, id: &str) -> String {
        format!("{}/{id}", host::pod_cgroup(uid))
    }

    /// Every pod run and not forgotten.
    pub fn pods(&self) -> Vec<PodHandle> {
        self.pods.lock().map(|p| p.values().cloned().collect()).unwrap_or_default()
    }

    /// Drops the handle of a finished pod (its object is gone), so that a long-running node
    /// does not keep every pod it ever ran, and removes its logs, as the kubelet removes the
    /// logs of a pod deleted from the API.
    pub fn forget(&self, uid: &str) {
        let gone = self.pods.lock().ok().and_then(|mut pods| pods.remove(uid));
        if let Some(h) = gone {
            let dir = self.host.log_dir(h.pod());
            if let Err(e) = std::fs::remove_dir_all(&dir)
                && e.kind() != std::io::ErrorKind::NotFound
            {
                tracing::warn!("removing the logs of pod {}: {}: {e}", key(h.pod()), dir.display());
            }
        }
    }

    /// Stops every pod with the ordered graceful termination and its grace period.
    pub fn shut_down(&self) {
        // As a machine going down: the pods' on-disk emptyDirs stay for their next start.
        self.host.stopping.store(true, std::sync::atomic::Ordering::SeqCst);
        for p in self.pods() {
            p.delete(None);
        }
    }

    /// SIGKILLs every container of every pod.
    pub fn force_kill(&self) {
        for p in self.pods() {
            p.force_kill();
        }
    }

    /// Waits until every pod run so far is finished.
    pub async fn all_finished(&self) {
        for p in self.pods() {
            p.finished().await;
        }
    }
}

/// Refuses a runtime that cannot work with the host's cgroups, before any pod fails on it: crun
/// refuses a hybrid host whose cgroup2 hierarchy holds controllers; runc and youki use v1 there.
fn check_cgroups(runtime: &Path, unified_controllers: Vec<String>) -> Result<(), NodeError> {
    let crun = runtime.file_name().is_some_and(|n| n == "crun");
    if crun && !unified_controllers.is_empty() {
        return Err(NodeError::HybridCgroups {
            runtime: runtime.display().to_string(),
            controllers: unified_controllers,
        });
    }
    Ok(())
}

/// Ends a pod whose worker panicked: what it left on the machine is removed (its containers
/// killed), a Warning event says why, and it is `Failed` with reason `NodeError`.
async fn worker_panicked(
    host: &Arc<host::Host>,
    pod: &Pod,
    snapshot: &watch::Sender<PodSnapshot>,
    publish: &host::Publish,
    panic: Box<dyn std::any::Any + Send>,
) {
    let what = panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic".into());
    let message = format!("podvisor's worker for this pod failed ({what}); its containers were stopped");
    tracing::warn!("pod {}: {message}", key(pod));
    host::remove_pod_leftovers(host, pod.metadata.uid.as_deref().unwrap_or_default()).await;
    publish(What::Event {
        kind: "Warning",
        reason: "NodeError".into(),
        message: message.clone(),
        container: None,
        field_path: None,
    });
    let mut status = snapshot.borrow().status.clone();
    status.phase = Some("Failed".into());
    status.reason = Some("NodeError".into());
    status.message = Some(message);
    publish(What::Phase { phase: "Failed".into() });
    snapshot.send_replace(PodSnapshot { status, finished: true });
    publish(What::Finished { phase: "Failed".into() });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crun_is_refused_on_a_hybrid_host_with_cgroup2_controllers_and_told_the_fix() {
        let err = check_cgroups(Path::new("/usr/bin/crun"), vec!["hugetlb".into()]).unwrap_err().to_string();
        assert_eq!(
            err,
            "/usr/bin/crun cannot run containers on this hybrid cgroup host: its cgroup2 hierarchy holds the \
             hugetlb controller(s); bind them to cgroup v1 as scripts/setup does (mkdir -p /sys/fs/cgroup/hugetlb \
             && mount -t cgroup -o hugetlb cgroup /sys/fs/cgroup/hugetlb) or use --runtime runc"
        );
        assert!(check_cgroups(Path::new("/usr/bin/crun"), vec![]).is_ok());
        assert!(check_cgroups(Path::new("/usr/sbin/runc"), vec!["hugetlb".into()]).is_ok());
    }
}
