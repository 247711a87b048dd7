//! The machine side of a pod, one room per concern:
//!
//! - here: where a pod's files live (run directory, logs, runtime IDs, cgroups) and how what a
//!   pod leaves is removed;
//! - `start`: one container instance's start (image by pull policy, bundle, monitor, runtime);
//! - `watch`: an instance from its start (or take-over) to its end;
//! - `ends`: how an instance ended, its termination message, and the record of its end kept
//!   beside its log;
//! - `takeover`: what a node process started again finds of a pod on the machine;
//! - `machine`: the host as the [`Machine`](crate::machine::Machine) pods' drivers run on;
//! - `steps`: the timing of a start's steps.

mod ends;
mod machine;
mod start;
mod steps;
mod takeover;
mod watch;

pub(crate) use ends::{message_budget, record_end};
pub(crate) use start::StartJob;
pub(crate) use steps::Steps;
pub(crate) use takeover::Held;
pub(crate) use watch::Watch;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use k8s_openapi::api::core::v1::Pod;
use podvisor_engine::ContainerRef;
use podvisor_runtime::cgroup;
use podvisor_runtime::image::ImageStore;
use podvisor_runtime::monitor::MonitorCommand;
use podvisor_runtime::pull::Puller;
use podvisor_runtime::rootfs::Overlay;
use podvisor_runtime::runc::Runc;

use crate::cleanup;

/// The parts every pod of a node shares.
pub(crate) struct Host {
    pub data: PathBuf,
    /// Where containers' bundles live: `<data>/state`, on a memory file system where one can
    /// be had (see [`podvisor_runtime::state`]).
    pub state: PathBuf,
    pub images: ImageStore,
    pub runc: Runc,
    pub objects: Arc<dyn podvisor_runtime::objects::Objects>,
    pub puller: Puller,
    /// How container monitors are started.
    pub monitor: MonitorCommand,
    /// The pod network, if pods get addresses.
    pub network: Option<podvisor_runtime::network::PodNetwork>,
    /// `RuntimeDefault` seccomp for containers that name no profile.
    pub default_seccomp: bool,
    /// How container logs are rotated.
    pub log_rotation: podvisor_runtime::logs::Rotation,
    /// The most pods that run at once.
    pub max_pods: usize,
    /// Cluster DNS for pods that ask for it, once the cluster serves it.
    pub cluster_dns: std::sync::OnceLock<podvisor_runtime::resolv::ClusterDns>,
    /// Set when the node stops its pods because it stops itself (`serve` exiting): they end as
    /// on a machine going down, their on-disk emptyDirs kept for their next start.
    pub stopping: std::sync::atomic::AtomicBool,
    /// The images (`imagePullPolicy: Always`) whose pull failed and whose local copy runs: said
    /// once, not at every start.
    pub offline_noted: std::sync::Mutex<std::collections::HashSet<String>>,
    /// Containers created ahead of their start, by runtime ID (see [`Host::make_ahead`]).
    pub ahead: std::sync::Mutex<std::collections::HashMap<String, start::Pending>>,
    /// Makes pods' namespaces, one set ahead of need.
    pub namespaces: podvisor_runtime::namespaces::NamespaceMaker,
}

/// The cgroup of a pod (its containers' cgroups are children).
pub(crate) fn pod_cgroup(uid: &str) -> String {
    format!("/podvisor/{uid}")
}

/// The runtime's ID of a container instance: the pod's whole UID, so that no two pods share
/// one.
pub(crate) fn container_id(uid: &str, r: &ContainerRef) -> String {
    format!("{}{}-{}", id_prefix(uid), r.name, r.attempt)
}

/// The start of the runtime IDs of the pod with `uid`.
pub(crate) fn id_prefix(uid: &str) -> String {
    format!("podvisor-{uid}-")
}

impl Host {
    /// Where the pod's sandbox and volumes live while it runs.
    pub fn run_dir(&self, uid: &str) -> PathBuf {
        self.data.join("run").join(component(uid))
    }

    /// Where the pod's logs are kept (they outlive the pod).
    pub fn log_dir(&self, pod: &Pod) -> PathBuf {
        log_dir(&self.data, pod)
    }

    /// The node's address: the pod network's gateway, or loopback without one.
    pub fn host_ip(&self) -> String {
        self.network.as_ref().map_or_else(|| podvisor_engine::HOST_IP.to_string(), |n| n.subnet().gateway().to_string())
    }

    /// The node's `Localhost` seccomp profiles (the kubelet's `<root>/seccomp`).
    pub fn seccomp_dir(&self) -> PathBuf {
        self.data.join("seccomp")
    }

    /// Where the bundle of the container instance `id` of the pod with `uid` lives.
    pub(crate) fn container_dir(&self, uid: &str, id: &str) -> PathBuf {
        bundles_dir(&self.state, uid).join(component(id))
    }

    /// The overlay of the container instance `id` whose bundle is `dir`: its own layer on disk
    /// under `<data>/layers/<id>`, its root mounted in the bundle. A bundle an earlier version
    /// made keeps both under its `fs`.
    pub(crate) fn overlay(&self, id: &str, dir: &Path) -> Overlay {
        let legacy = dir.join("fs");
        if legacy.exists() {
            return Overlay::at(&legacy, &legacy.join("rootfs"));
        }
        Overlay::at(&self.data.join("layers").join(component(id)), &dir.join("rootfs"))
    }

    /// Where the container instance `id` (bundle `dir`) writes its termination message: on
    /// disk beside its layer, as the container writes it (in its bundle for a bundle an
    /// earlier version made).
    pub(crate) fn termination_log(&self, id: &str, dir: &Path) -> PathBuf {
        let legacy = dir.join(TERMINATION_LOG);
        if legacy.exists() {
            return legacy;
        }
        self.data.join("layers").join(component(id)).join(TERMINATION_LOG)
    }

    /// The bundles of the pod with `uid`'s containers, by runtime ID: on the memory file
    /// system, and in its run directory where an earlier version made them.
    pub(crate) fn container_dirs(&self, uid: &str) -> Vec<(String, PathBuf)> {
        let places = [bundles_dir(&self.state, uid), self.run_dir(uid).join("containers")];
        let entries = places.into_iter().flat_map(|p| std::fs::read_dir(p).into_iter().flatten().flatten());
        entries.map(|e| (e.file_name().to_string_lossy().into_owned(), e.path())).collect()
    }
}

/// The file a container writes its termination message to.
const TERMINATION_LOG: &str = "termination-log";

/// A UID or runtime ID as one path component: they are made by podvisor; one that is not a
/// plain component is never joined as is.
fn component(name: &str) -> String {
    let safe = !name.is_empty() && name != "." && name != ".." && !name.contains('/');
    if safe { name.to_string() } else { name.replace('/', "%2F").replace('.', "%2E") }
}

/// Where the bundles of the pod with `uid`'s containers live under the bundles' directory
/// `state` (`<data>/state`).
pub fn bundles_dir(state: &Path, uid: &str) -> PathBuf {
    state.join("pods").join(component(uid))
}

/// Where the logs of `pod` are kept under a data directory: `logs/<namespace>_<name>_<uid>`.
/// Names are validated before a pod reaches the node; should one still hold a `/` (an object
/// stored by an older version), it is escaped, so the directory is always one component.
pub fn log_dir(data: &Path, pod: &Pod) -> PathBuf {
    let m = &pod.metadata;
    let part = |s: &str| s.replace('%', "%25").replace('/', "%2F");
    let name = format!(
        "{}_{}_{}",
        part(m.namespace.as_deref().unwrap_or("default")),
        part(m.name.as_deref().unwrap_or("")),
        part(m.uid.as_deref().unwrap_or(""))
    );
    data.join("logs").join(match name.strip_prefix('.') {
        Some(rest) => format!("%2E{rest}"),
        None => name,
    })
}

pub(crate) use crate::machine::{Publish, Report};

/// Where a container's `subPath` sources are pinned, in its bundle.
const SUBPATHS: &str = "subpaths";

/// The file of a pod's run directory that names its volumes' host paths.
pub(crate) const VOLUMES: &str = "volumes.json";

/// Removes a container's bundle directory once its `subPath` binds are gone; while one cannot
/// be unmounted the directory is left (removing it would reach into the volume) and said so.
/// Whether it was removed.
pub(crate) fn remove_bundle(dir: &Path) -> bool {
    match podvisor_runtime::subpath::release(&dir.join(SUBPATHS)) {
        Ok(()) => cleanup::remove_tree(dir),
        Err(e) => {
            tracing::warn!("leaving {} in place: {e}", dir.display());
            false
        }
    }
}

/// The marker a started container leaves in its bundle.
const STARTED: &str = "started";

impl Host {
    /// Removes a container instance: the runtime's record (killing what is left), its layers
    /// and its bundle.
    pub async fn remove_container(&self, id: &str, dir: &Path) {
        cleanup::container(id, self.runc.delete_if_present(id).await);
        let overlay = self.overlay(id, dir);
        cleanup::said(overlay.layers().display(), overlay.remove());
        remove_bundle(dir);
    }
}

/// Removes what a pod left on the machine, except its logs: containers, layers, volumes,
/// namespaces and cgroups. Used when a pod finishes and, at start-up, for pods a crashed
/// earlier run left behind.
pub(crate) async fn remove_pod_leftovers(host: &Host, uid: &str) {
    remove_pod_leftovers_keeping(host, uid, &[]).await
}

/// [`remove_pod_leftovers`], keeping the named volume directories with their files: a pod that
/// resumes after a reboot finds its on-disk emptyDirs as it left them, as with the kubelet.
pub(crate) async fn remove_pod_leftovers_keeping(host: &Host, uid: &str, keep: &[String]) {
    let dir = host.run_dir(uid);
    let mut released = true;
    for (id, bundle) in host.container_dirs(uid) {
        cleanup::container(&id, host.runc.delete_if_present(&id).await);
        let overlay = host.overlay(&id, &bundle);
        cleanup::said(overlay.layers().display(), overlay.remove());
        released &= remove_bundle(&bundle);
    }
    // Layers whose bundle is gone (a reboot empties the memory file system).
    let prefix = id_prefix(uid);
    for e in std::fs::read_dir(host.data.join("layers")).into_iter().flatten().flatten() {
        if e.file_name().to_string_lossy().starts_with(&prefix) {
            cleanup::remove_tree(&e.path());
        }
    }
    if released {
        let bundles = bundles_dir(&host.state, uid);
        if let Err(e) = std::fs::remove_dir(&bundles)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            cleanup::said(bundles.display(), Err::<(), _>(e));
        }
    }
    if keep.is_empty() {
        cleanup::said(dir.join("volumes").display(), podvisor_runtime::volumes::release(&dir.join("volumes")));
    } else {
        cleanup::said(
            dir.join("volumes").display(),
            podvisor_runtime::volumes::release_except(&dir.join("volumes"), keep),
        );
    }
    let sandbox = podvisor_runtime::sandbox::Sandbox::at(&dir.join("sandbox"));
    let sandbox_dir = dir.join("sandbox");
    match tokio::task::spawn_blocking(move || sandbox.remove()).await {
        Ok(removed) => _ = cleanup::said(sandbox_dir.display(), removed),
        Err(e) => _ = cleanup::said(sandbox_dir.display(), Err(e)),
    }
    for (cgroup, e) in cgroup::remove(&pod_cgroup(uid)) {
        cleanup::said(format_args!("cgroup {}", cgroup.display()), Err::<(), _>(e));
    }
    // A subPath bind left mounted would let the removal reach into a volume (or a host path).
    if !released {
        return;
    }
    if keep.is_empty() {
        cleanup::remove_tree(&dir);
    } else {
        for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            if e.file_name() != "volumes" {
                cleanup::remove_path(&e.path());
            }
        }
    }
}
