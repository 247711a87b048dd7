//! The machine side of a pod: where its files live, and how one container instance is started,
//! watched, exec'd into and cleaned up, using the runtime crate's parts.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, Pod};
use podvisor_engine::{ContainerRef, ExitCause, Input};
use podvisor_runtime::bundle::{self, Instance, PodContext};
use podvisor_runtime::image::{Image, ImageStore, normalize};
use podvisor_runtime::logs::{self, Stream};
use podvisor_runtime::pull::Puller;
use podvisor_runtime::rootfs::Overlay;
use podvisor_runtime::runc::Runc;
use podvisor_runtime::{cgroup, env};

use crate::events::What;

/// The parts every pod of a node shares.
pub(crate) struct Host {
    pub data: PathBuf,
    pub images: ImageStore,
    pub runc: Runc,
    pub objects: Arc<dyn podvisor_runtime::objects::Objects>,
    pub puller: Puller,
}

/// The most the kubelet reads of a termination message.
const MAX_MESSAGE: usize = 4096;
/// With `FallbackToLogsOnError`: the last lines and bytes of the log it uses.
const FALLBACK_LINES: usize = 80;
const FALLBACK_BYTES: usize = 2048;

/// The cgroup of a pod (its containers' cgroups are children).
pub(crate) fn pod_cgroup(uid: &str) -> String {
    format!("/podvisor/{uid}")
}

/// The runtime's ID of a container instance.
pub(crate) fn container_id(uid: &str, r: &ContainerRef) -> String {
    format!("podvisor-{}-{}-{}", &uid[..uid.len().min(8)], r.name, r.attempt)
}

impl Host {
    /// Where the pod's sandbox, volumes and container layers live while it runs.
    pub fn run_dir(&self, uid: &str) -> PathBuf {
        self.data.join("run").join(uid)
    }

    /// Where the pod's logs are kept (they outlive the pod).
    pub fn log_dir(&self, pod: &Pod) -> PathBuf {
        log_dir(&self.data, pod)
    }

    fn container_dir(&self, uid: &str, id: &str) -> PathBuf {
        self.run_dir(uid).join("containers").join(id)
    }
}

/// Where the logs of `pod` are kept under a data directory: `logs/<namespace>_<name>_<uid>`.
pub fn log_dir(data: &Path, pod: &Pod) -> PathBuf {
    let m = &pod.metadata;
    data.join("logs").join(format!(
        "{}_{}_{}",
        m.namespace.as_deref().unwrap_or("default"),
        m.name.as_deref().unwrap_or(""),
        m.uid.as_deref().unwrap_or("")
    ))
}

/// Reports back to the pod's driver.
pub(crate) type Report = tokio::sync::mpsc::UnboundedSender<Input>;
/// Publishes node events about the pod.
pub(crate) type Publish = Arc<dyn Fn(What) + Send + Sync>;

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
                    // Offline with a loaded copy: run it, and say that the pull failed.
                    (self.publish)(What::Event {
                        kind: "Warning",
                        reason: "Failed".into(),
                        message: format!(
                            "Failed to pull image {reference:?}: {e}; running the copy in the local image store"
                        ),
                        container: Some(r.name.clone()),
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
            Err(e) => return self.fail("CreateContainerConfigError", e.0),
        };
        let uid = self.pod.metadata.uid.clone().unwrap_or_default();
        let id = container_id(&uid, &r);
        let dir = self.host.container_dir(&uid, &id);
        let overlay = Overlay::at(&dir.join("fs"));
        let cleanup = |overlay: &Overlay, dir: &Path| {
            let _ = overlay.remove();
            let _ = std::fs::remove_dir_all(dir);
        };
        let prepared = (|| -> Result<(), String> {
            std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
            overlay.mount(&image.rootfs).map_err(|e| e.to_string())?;
            let term = dir.join("termination-log");
            std::fs::write(&term, b"").map_err(|e| format!("{}: {e}", term.display()))?;
            // Any user the container runs as may write its termination message.
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&term, std::fs::Permissions::from_mode(0o666))
                .map_err(|e| format!("{}: {e}", term.display()))?;
            let rootfs = overlay.rootfs();
            let inst = Instance { id: &id, rootfs: &rootfs, env: &env, termination_log: Some(&term) };
            let spec = bundle::spec(&self.spec, &image.config, &self.ctx, &inst).map_err(|e| e.to_string())?;
            spec.save(dir.join("config.json")).map_err(|e| e.to_string())
        })();
        if let Err(message) = prepared {
            cleanup(&overlay, &dir);
            return self.fail("CreateContainerError", message);
        }
        steps.done("rootfs and bundle");
        let log_dir = self.host.log_dir(&self.pod);
        let writer = match logs::Writer::create(&log_dir, &r.name, r.attempt) {
            Ok(w) => w,
            Err(e) => {
                cleanup(&overlay, &dir);
                return self.fail("CreateContainerError", format!("creating the log file: {e}"));
            }
        };
        if self.is_cancelled() {
            cleanup(&overlay, &dir);
            return self.abandoned();
        }
        let created = match self.host.runc.create(&id, &dir).await {
            Ok(c) => c,
            Err(e) => {
                let _ = self.host.runc.delete(&id).await;
                cleanup(&overlay, &dir);
                return self.fail("CreateContainerError", e.to_string());
            }
        };
        if self.is_cancelled() {
            let _ = self.host.runc.delete(&id).await;
            cleanup(&overlay, &dir);
            return self.abandoned();
        }
        steps.done("runc create");
        let _ = self.report.send(Input::Created { container: r.clone(), id: format!("runc://{id}") });
        let mut pumps = Vec::new();
        for (pipe, stream) in [
            (created.stdout.map(|p| Box::new(p) as Box<dyn tokio::io::AsyncRead + Unpin + Send>), Stream::Stdout),
            (created.stderr.map(|p| Box::new(p) as Box<dyn tokio::io::AsyncRead + Unpin + Send>), Stream::Stderr),
        ] {
            let Some(pipe) = pipe else { continue };
            let (w, publish, name) = (writer.clone(), self.publish.clone(), r.name.clone());
            pumps.push(tokio::spawn(async move {
                w.pump(pipe, stream, |line| {
                    publish(What::Log { container: name.clone(), stream: stream.as_str(), line: line.to_string() })
                })
                .await
            }));
        }
        let start = self.host.runc.start(&id).await;
        if start.is_err() {
            let _ = self.host.runc.kill(&id, "KILL").await;
        }
        let started = start.is_ok();
        if started {
            steps.done("runc start");
            let _ = self.report.send(Input::Started { container: r.clone() });
            (self.publish)(What::Timing { container: Some(r.name.clone()), steps: steps.list });
        }
        let code = created.exit.wait().await.unwrap_or(255);
        // Output written just before the exit belongs before the exit in the logs.
        for p in pumps {
            let _ = tokio::time::timeout(Duration::from_secs(2), p).await;
        }
        let oom = cgroup::oom_killed(&format!("{}/{id}", self.ctx.cgroup_parent));
        let message = if started {
            termination_message(
                &self.spec,
                &dir.join("termination-log"),
                &logs::path(&log_dir, &r.name, r.attempt),
                code,
            )
        } else {
            start.err().map(|e| e.to_string())
        };
        let _ = self.host.runc.delete(&id).await;
        cleanup(&overlay, &dir);
        let (exit_code, cause) = if !started {
            (128, ExitCause::StartError)
        } else if oom {
            (code, ExitCause::OomKilled)
        } else {
            (code, ExitCause::Exited)
        };
        let _ = self.report.send(Input::Exited { container: r, exit_code, cause, message });
    }
}

/// The container's termination message: what it wrote to its `terminationMessagePath`, or with
/// `FallbackToLogsOnError` and a failure, the end of its log.
fn termination_message(c: &Container, file: &Path, log: &Path, code: i32) -> Option<String> {
    let written = std::fs::read(file).ok().map(|mut b| {
        b.truncate(MAX_MESSAGE);
        String::from_utf8_lossy(&b).into_owned()
    });
    if let Some(m) = written.filter(|m| !m.is_empty()) {
        return Some(m);
    }
    if c.termination_message_policy.as_deref() == Some("FallbackToLogsOnError") && code != 0 {
        let lines = logs::read(log).ok()?;
        let tail: Vec<String> = lines.iter().rev().take(FALLBACK_LINES).rev().map(|l| l.2.clone()).collect();
        let mut text = tail.join("\n");
        if text.len() > FALLBACK_BYTES {
            let mut cut = text.len() - FALLBACK_BYTES;
            while !text.is_char_boundary(cut) {
                cut += 1;
            }
            text = text[cut..].to_string();
        }
        return (!text.is_empty()).then_some(text);
    }
    None
}

/// Removes what a pod left on the machine, except its logs: containers, layers, volumes,
/// namespaces and cgroups. Used when a pod finishes and, at start-up, for pods a crashed
/// earlier run left behind.
pub(crate) async fn remove_pod_leftovers(host: &Host, uid: &str) {
    let dir = host.run_dir(uid);
    let containers = dir.join("containers");
    if let Ok(entries) = std::fs::read_dir(&containers) {
        for e in entries.flatten() {
            let id = e.file_name().to_string_lossy().into_owned();
            let _ = host.runc.delete(&id).await;
            let _ = Overlay::at(&e.path().join("fs")).remove();
        }
    }
    podvisor_runtime::volumes::release(&dir.join("volumes"));
    let _ = podvisor_runtime::sandbox::Sandbox::at(&dir.join("sandbox")).remove();
    cgroup::remove(&pod_cgroup(uid));
    let _ = std::fs::remove_dir_all(&dir);
}

/// Durations of consecutive steps, measured as they end.
pub(crate) struct Steps {
    last: std::time::Instant,
    /// Each step and its duration in microseconds.
    pub list: Vec<(String, u64)>,
}

impl Steps {
    pub fn new() -> Self {
        Steps { last: std::time::Instant::now(), list: Vec::new() }
    }

    /// Ends the step `name`, started when the previous one ended.
    pub fn done(&mut self, name: &str) {
        let now = std::time::Instant::now();
        self.list.push((name.to_string(), now.duration_since(self.last).as_micros() as u64));
        self.last = now;
    }
}
