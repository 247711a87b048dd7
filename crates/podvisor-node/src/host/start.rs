//! One container instance's start: its image by pull policy, its environment, its overlay
//! root and bundle, its monitor, and the runtime's create and start, undone step by step when
//! one fails or the pod stops wanting it.

use std::path::{Path, PathBuf};
use std::sync::Arc;

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
    /// every step is reported to the engine.
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
        let overlay = Overlay::at(&dir.join("fs"));
        let discard = |overlay: &Overlay, dir: &Path| {
            cleanup::said(dir.join("fs").display(), overlay.remove());
            remove_bundle(dir);
        };
        let prepared = (|| -> Result<(), String> {
            std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
            overlay.mount(&image.rootfs).map_err(|e| e.to_string())?;
            let term = dir.join("termination-log");
            std::fs::write(&term, b"").map_err(|e| format!("{}: {e}", term.display()))?;
            let rootfs = overlay.rootfs();
            let sub_paths =
                podvisor_runtime::subpath::mount_all(&self.spec, &self.ctx.volumes, &env, &dir.join(SUBPATHS))?;
            let inst = Instance {
                id: &id,
                rootfs: &rootfs,
                env: &env,
                termination_log: Some(&term),
                sub_paths: &sub_paths,
                pid_namespace: self.pid_namespace.as_deref(),
            };
            let spec = bundle::spec(&self.spec, &image.config, &self.ctx, &inst).map_err(|e| e.to_string())?;
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
            discard(&overlay, &dir);
            return self.fail("CreateContainerError", message);
        }
        steps.done("rootfs and bundle");
        let log = match logs::prepare(&self.host.log_dir(&self.pod), &r.name, r.attempt) {
            Ok(log) => log,
            Err(e) => {
                discard(&overlay, &dir);
                return self.fail("CreateContainerError", format!("creating the log file: {e}"));
            }
        };
        if self.is_cancelled() {
            discard(&overlay, &dir);
            return self.abandoned();
        }
        let stdio =
            podvisor_runtime::monitor::Stdio { stdin: self.spec.stdin == Some(true), tty: self.spec.tty == Some(true) };
        let spawned =
            Monitor::spawn(&self.host.monitor, &self.host.runc, &id, &dir, &log, self.host.log_rotation, stdio).await;
        let mut monitor = match spawned {
            Ok(m) => m,
            Err(e) => {
                cleanup::container(&id, self.host.runc.delete_if_present(&id).await);
                discard(&overlay, &dir);
                return self.fail("CreateContainerError", e.to_string());
            }
        };
        if self.is_cancelled() {
            cleanup::container(&id, self.host.runc.delete_if_present(&id).await);
            monitor.exited().await;
            discard(&overlay, &dir);
            return self.abandoned();
        }
        steps.done("runc create");
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
