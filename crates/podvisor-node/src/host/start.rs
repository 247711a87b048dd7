//! One container instance's start: its image by pull policy, its environment, its overlay
//! root and bundle, its monitor, and the runtime's create and start, undone step by step when
//! one fails or the pod stops wanting it.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use k8s_openapi::api::core::v1::{Container, Pod};
use podvisor_engine::{ContainerRef, EventContainer, Input};
use podvisor_runtime::bundle::{self, Instance, PodContext};
use podvisor_runtime::env;
use podvisor_runtime::image::{Image, normalize};
use podvisor_runtime::logs;
use podvisor_runtime::monitor::Monitor;
use podvisor_runtime::rootfs::Overlay;

use super::watch::Watch;
use super::{Host, Publish, Report, STARTED, SUBPATHS, Steps, container_id, remove_bundle};
use crate::cleanup;
use crate::events::What;

/// Everything a container start needs, owned so the start can run as its own task.
pub(crate) struct StartJob {
    pub host: Arc<Host>,
    pub pod: Arc<Pod>,
    pub ctx: Arc<PodContext>,
    pub r: ContainerRef,
    pub spec: Container,
    pub report: Report,
    pub publish: Publish,
    /// Set when the engine abandons this start (the pod began terminating): a container not
    /// yet started is removed, never runs, and the start is reported failed.
    pub cancelled: Arc<std::sync::atomic::AtomicBool>,
    /// For an ephemeral container with a target: the target's PID namespace, to see its
    /// processes (`kubectl debug --target`).
    pub pid_namespace: Option<PathBuf>,
}

impl StartJob {
    fn is_cancelled(&self) -> bool {
        self.cancelled.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Tells the engine the abandoned start never ran.
    fn abandoned(&self) {
        self.fail("Cancelled", "the start was abandoned: the pod is terminating".into());
    }

    fn fail(&self, reason: &str, message: String) {
        let _ = self.report.send(Input::StartFailed { container: self.r.clone(), reason: reason.into(), message });
    }

    /// Makes the image present as `imagePullPolicy` says, and reports how.
    async fn image(&self) -> Option<Image> {
        let r = self.r.clone();
        let reference = self.spec.image.clone().unwrap_or_default();
        let local = self.host.images.resolve(&reference);
        let policy = self.spec.image_pull_policy.as_deref().unwrap_or("IfNotPresent");
        let ready = |pulled| {
            let _ = self.report.send(Input::ImageReady { container: r.clone(), pulled });
        };
        match (policy, local) {
            ("Never", Some(image)) | ("IfNotPresent", Some(image)) => {
                ready(false);
                return Some(image);
            }
            ("Never", None) => {
                self.fail(
                    "ErrImageNeverPull",
                    format!("Container image {reference:?} is not present with pull policy of Never"),
                );
                return None;
            }
            _ => {}
        }
        match self.host.puller.pull(&self.host.images, &reference).await {
            Ok(image) => {
                ready(true);
                Some(image)
            }
            Err(e) => {
                if policy == "Always"
                    && let Some(image) = self.host.images.resolve(&reference)
                {
                    // Offline with a loaded copy: run it, and say once that the pull failed.
                    let first = self.host.offline_noted.lock().map(|mut n| n.insert(reference.clone())).unwrap_or(true);
                    if !first {
                        ready(false);
                        return Some(image);
                    }
                    (self.publish)(What::Event {
                        kind: "Warning",
                        reason: "Failed".into(),
                        message: format!(
                            "Failed to pull image {reference:?}: {e}; running the copy in the local image store (said once)"
                        ),
                        container: Some(r.name.clone()),
                        field_path: self.pod.spec.as_ref().map(|s| EventContainer::in_spec(s, &r.name).field_path()),
                    });
                    ready(false);
                    return Some(image);
                }
                let hint = format!(
                    "{e} (to run without a registry: podvisor image load FILE --tag {})",
                    normalize(&reference)
                );
                let _ = self.report.send(Input::ImagePullFailed { container: r, message: hint });
                None
            }
        }
    }

    /// Pulls (or finds) the image, creates and starts the container, then waits for its exit;
    /// every step is reported to the engine. A container made ahead of its start (see
    /// [`Host::make_ahead`]) is started as it is, if it was made from the same image and
    /// environment.
    pub async fn run(self) {
        let r = self.r.clone();
        let mut steps = Steps::new();
        let Some(image) = self.image().await else { return };
        steps.done("image");
        if self.is_cancelled() {
            return self.abandoned();
        }
        let env = match env::resolve(&self.pod, &self.spec, self.host.objects.as_ref()) {
            Ok(env) => env,
            Err(e) => return self.fail("CreateContainerConfigError", e.to_string()),
        };
        let uid = self.pod.metadata.uid.clone().unwrap_or_default();
        let id = container_id(&uid, &r);
        let dir = self.host.container_dir(&uid, &id);
        let ahead = match self.host.claim_ahead(&id).await {
            Some(made) if made.fits(&self.spec, &image, &env) => Some(made.monitor),
            Some(made) => {
                // Made from another image or environment than the start now has: made again.
                discard(&self.host, &id, &dir, made.monitor).await;
                None
            }
            None => None,
        };
        let monitor = match ahead {
            Some(monitor) => {
                steps.done("runc create (made ahead)");
                if self.is_cancelled() {
                    discard(&self.host, &id, &dir, monitor).await;
                    return self.abandoned();
                }
                monitor
            }
            None => {
                let creation = Creation {
                    host: &self.host,
                    pod: &self.pod,
                    ctx: &self.ctx,
                    spec: &self.spec,
                    r: &r,
                    pid_namespace: self.pid_namespace.as_deref(),
                };
                match creation.create(&image, &env, &mut steps, &|| self.is_cancelled()).await {
                    Ok(monitor) => monitor,
                    Err(Stop::Cancelled) => return self.abandoned(),
                    Err(Stop::Failed(reason, message)) => return self.fail(reason, message),
                }
            }
        };
        let _ = self.report.send(Input::Created { container: r.clone(), id: format!("runc://{id}") });
        // What a node process started again looks for: the start was asked for (whether it
        // happened, the runtime's state then says).
        if let Err(e) = std::fs::write(dir.join(STARTED), b"") {
            tracing::warn!(
                "{}: {e} (a node process started again would not take container {id} over)",
                dir.join(STARTED).display()
            );
        }
        let start = self.host.runc.start(&id).await;
        if start.is_err() {
            // The created container is ended; the watch reports the failed start either way.
            if let Err(e) = self.host.runc.kill(&id, "KILL").await {
                tracing::warn!("ending container {id} after its failed start: {e}");
            }
        } else {
            steps.done("runc start");
            let _ = self.report.send(Input::Started { container: r.clone() });
            (self.publish)(What::Timing { container: Some(r.name.clone()), steps: steps.list });
        }
        let watch = Watch {
            host: self.host.clone(),
            pod: self.pod.clone(),
            cgroup_parent: self.ctx.cgroup_parent.clone(),
            spec: self.spec.clone(),
            r,
            id,
            dir,
            monitor,
            log_from: 0,
            start_error: start.err().map(|e| e.to_string()),
            report: self.report.clone(),
            publish: self.publish.clone(),
        };
        watch.run().await;
    }
}

/// Why a creation did not give a container.
enum Stop {
    /// The start was abandoned; what was made is removed.
    Cancelled,
    /// A step failed: the kubelet's reason and the message; what was made is removed.
    Failed(&'static str, String),
}

/// One container instance to create: its layers, its bundle, its log file and its monitor,
/// which runs the runtime's `create`. Shared by a start and a creation ahead of the start.
struct Creation<'a> {
    host: &'a Host,
    pod: &'a Pod,
    ctx: &'a PodContext,
    spec: &'a Container,
    r: &'a ContainerRef,
    pid_namespace: Option<&'a Path>,
}

impl Creation<'_> {
    /// Creates the container from `image` with `env`; `cancelled` is asked between the steps.
    async fn create(
        &self,
        image: &Image,
        env: &[(String, String)],
        steps: &mut Steps,
        cancelled: &(dyn Fn() -> bool + Sync),
    ) -> Result<Monitor, Stop> {
        let uid = self.pod.metadata.uid.clone().unwrap_or_default();
        let id = container_id(&uid, self.r);
        let dir = self.host.container_dir(&uid, &id);
        let overlay = self.host.overlay(&id, &dir);
        let discard_files = |overlay: &Overlay, dir: &Path| {
            cleanup::said(overlay.layers().display(), overlay.remove());
            remove_bundle(dir);
        };
        let prepared =
            (|| -> Result<(), String> {
                std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
                let token =
                    self.spec.volume_mounts.iter().flatten().any(|m| {
                        m.mount_path.trim_end_matches('/') == format!("/{}", podvisor_runtime::rootfs::TOKEN_DIR)
                    });
                let lowers = podvisor_runtime::rootfs::lowers(&image.rootfs, token);
                overlay.mount(&lowers).map_err(|e| e.to_string())?;
                let term = self.host.termination_log(&id, &dir);
                std::fs::write(&term, b"").map_err(|e| format!("{}: {e}", term.display()))?;
                let rootfs = overlay.rootfs();
                let sub_paths =
                    podvisor_runtime::subpath::mount_all(self.spec, &self.ctx.volumes, env, &dir.join(SUBPATHS))?;
                let inst = Instance {
                    id: &id,
                    rootfs: &rootfs,
                    env,
                    termination_log: Some(&term),
                    sub_paths: &sub_paths,
                    pid_namespace: self.pid_namespace,
                };
                let spec = bundle::spec(self.spec, &image.config, self.ctx, &inst).map_err(|e| e.to_string())?;
                // The container's user writes its termination message; no one else on the machine.
                if let Some(user) = spec.process().as_ref().map(|p| p.user()) {
                    use std::os::unix::fs::PermissionsExt;
                    std::os::unix::fs::chown(&term, Some(user.uid()), Some(user.gid()))
                        .and_then(|()| std::fs::set_permissions(&term, std::fs::Permissions::from_mode(0o660)))
                        .map_err(|e| format!("{}: {e}", term.display()))?;
                }
                spec.save(dir.join("config.json")).map_err(|e| e.to_string())
            })();
        if let Err(message) = prepared {
            discard_files(&overlay, &dir);
            return Err(Stop::Failed("CreateContainerError", message));
        }
        steps.done("rootfs and bundle");
        let log = match logs::prepare(&self.host.log_dir(self.pod), &self.r.name, self.r.attempt) {
            Ok(log) => log,
            Err(e) => {
                discard_files(&overlay, &dir);
                return Err(Stop::Failed("CreateContainerError", format!("creating the log file: {e}")));
            }
        };
        if cancelled() {
            discard_files(&overlay, &dir);
            return Err(Stop::Cancelled);
        }
        let stdio =
            podvisor_runtime::monitor::Stdio { stdin: self.spec.stdin == Some(true), tty: self.spec.tty == Some(true) };
        let spawned =
            Monitor::spawn(&self.host.monitor, &self.host.runc, &id, &dir, &log, self.host.log_rotation, stdio).await;
        let monitor = match spawned {
            Ok(m) => m,
            Err(e) => {
                cleanup::container(&id, self.host.runc.delete_if_present(&id).await);
                discard_files(&overlay, &dir);
                return Err(Stop::Failed("CreateContainerError", e.to_string()));
            }
        };
        if cancelled() {
            discard(self.host, &id, &dir, monitor).await;
            return Err(Stop::Cancelled);
        }
        steps.done("runc create");
        Ok(monitor)
    }
}

/// Removes a created container that never started: the runtime's record (which ends its
/// monitor), its layers and its bundle.
async fn discard(host: &Host, id: &str, dir: &Path, mut monitor: Monitor) {
    cleanup::container(id, host.runc.delete_if_present(id).await);
    monitor.exited().await;
    let overlay = host.overlay(id, dir);
    cleanup::said(overlay.layers().display(), overlay.remove());
    remove_bundle(dir);
}

/// A container created ahead of its start, waiting for the engine to start it.
pub(crate) struct Ahead {
    /// The image reference of the spec it was made from.
    reference: Option<String>,
    /// The ID of the image it was made from.
    image: String,
    /// The environment it was made with.
    env: Vec<(String, String)>,
    /// Its monitor, which created it.
    monitor: Monitor,
}

impl Ahead {
    /// Whether it is what a start now would create: the same image and environment (a Service
    /// made meanwhile, a ConfigMap changed, an image replaced make it stale).
    fn fits(&self, spec: &Container, image: &Image, env: &[(String, String)]) -> bool {
        self.reference == spec.image && self.image == image.id && self.env == env
    }
}

/// A creation ahead of a start, under way or done.
pub(crate) struct Pending {
    /// The container's name.
    name: String,
    /// Set when the pod ends first: the creation stops at its next step.
    stop: Arc<AtomicBool>,
    /// The container, once made (`None` if a step failed or it was stopped).
    made: tokio::sync::oneshot::Receiver<Option<Ahead>>,
}

impl Host {
    /// Creates the first instance of `spec` ahead of its start, while the containers before it
    /// start: the runtime's `create` (the bulk of a container's start) overlaps theirs, and
    /// the start, when the engine asks for it, is the runtime's `start` alone. Nothing of the
    /// container runs before then: its process waits in the runtime until started (the OCI
    /// `create`/`start` split), so the pod's order of starts, its status and its events are
    /// as without it.
    ///
    /// Only what a later start would make the same way is made ahead: an image present here
    /// whose pull policy is not `Always`, an environment that resolves, and no `subPath`
    /// (which the kubelet resolves when it starts the container, after the containers
    /// before it ran). A start finds the container with [`Host::claim_ahead`] and makes it
    /// again if its image or environment changed meanwhile; a pod that ends first removes it
    /// with [`Host::drop_ahead`]. A failed step is not reported: the start does it again and
    /// reports it.
    pub(crate) fn make_ahead(self: &Arc<Self>, pod: Arc<Pod>, ctx: Arc<PodContext>, spec: Container) {
        let reference = spec.image.clone().unwrap_or_default();
        if spec.image_pull_policy.as_deref() == Some("Always") {
            return;
        }
        let sub_path = |m: &k8s_openapi::api::core::v1::VolumeMount| {
            m.sub_path.as_deref().is_some_and(|s| !s.is_empty())
                || m.sub_path_expr.as_deref().is_some_and(|s| !s.is_empty())
        };
        if spec.volume_mounts.iter().flatten().any(sub_path) {
            return;
        }
        let Some(image) = self.images.resolve(&reference) else { return };
        let Ok(env) = env::resolve(&pod, &spec, self.objects.as_ref()) else { return };
        let r = ContainerRef::new(spec.name.clone(), 0);
        let id = container_id(pod.metadata.uid.as_deref().unwrap_or_default(), &r);
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, made) = tokio::sync::oneshot::channel();
        let Ok(mut pending) = self.ahead.lock() else { return };
        if pending.contains_key(&id) {
            return;
        }
        pending.insert(id.clone(), Pending { name: spec.name.clone(), stop: stop.clone(), made });
        drop(pending);
        let host = self.clone();
        tokio::spawn(async move {
            let creation = Creation { host: &host, pod: &pod, ctx: &ctx, spec: &spec, r: &r, pid_namespace: None };
            let mut steps = Steps::new();
            let made = creation.create(&image, &env, &mut steps, &|| stop.load(Ordering::SeqCst)).await.ok();
            let made =
                made.map(|monitor| Ahead { reference: spec.image.clone(), image: image.id.clone(), env, monitor });
            // No one waits for it any more (the pod is gone): removed here.
            if let Err(Some(orphan)) = tx.send(made) {
                let dir = host.container_dir(pod.metadata.uid.as_deref().unwrap_or_default(), &id);
                discard(&host, &id, &dir, orphan.monitor).await;
                remove_log(&host, &pod, &r);
            }
        });
    }

    /// The container made ahead with runtime ID `id`, once its creation ends, if it made one.
    pub(crate) async fn claim_ahead(&self, id: &str) -> Option<Ahead> {
        let pending = self.ahead.lock().ok()?.remove(id)?;
        pending.made.await.ok().flatten()
    }

    /// Stops and removes what was made ahead for the pod and never started, log files with
    /// it (the kubelet never created those containers).
    pub(crate) async fn drop_ahead(&self, pod: &Pod) {
        let uid = pod.metadata.uid.as_deref().unwrap_or_default();
        let prefix = super::id_prefix(uid);
        let pending: Vec<(String, Pending)> = match self.ahead.lock() {
            Ok(mut all) => {
                let ids: Vec<String> = all.keys().filter(|id| id.starts_with(&prefix)).cloned().collect();
                ids.into_iter().filter_map(|id| all.remove(&id).map(|p| (id, p))).collect()
            }
            Err(_) => return,
        };
        for (_, p) in &pending {
            p.stop.store(true, Ordering::SeqCst);
        }
        for (id, p) in pending {
            if let Ok(Some(made)) = p.made.await {
                discard(self, &id, &self.container_dir(uid, &id), made.monitor).await;
                remove_log(self, pod, &ContainerRef::new(p.name, 0));
            }
        }
    }
}

/// Removes the (empty) log file made for an instance that never started.
fn remove_log(host: &Host, pod: &Pod, r: &ContainerRef) {
    let file = logs::path(&host.log_dir(pod), &r.name, r.attempt);
    if let Err(e) = std::fs::remove_file(&file)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!("{}: {e}", file.display());
    }
    // The container's log directory, empty now (it never ran).
    if let Some(dir) = file.parent() {
        let _ = std::fs::remove_dir(dir);
    }
}
