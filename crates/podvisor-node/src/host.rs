//! The machine side of a pod: where its files live, and how one container instance is started,
//! watched, exec'd into and cleaned up, using the runtime crate's parts.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Container, Pod};
use podvisor_engine::{ContainerRef, ExitCause, Found, FoundExit, Input};
use podvisor_runtime::bundle::{self, Instance, PodContext};
use podvisor_runtime::image::{Image, ImageStore, normalize};
use podvisor_runtime::logs;
use podvisor_runtime::monitor::{self, Monitor, MonitorCommand};
use podvisor_runtime::pull::Puller;
use podvisor_runtime::rootfs::Overlay;
use podvisor_runtime::runc::Runc;
use podvisor_runtime::{cgroup, env};

use crate::cleanup;
use crate::events::What;

/// The parts every pod of a node shares.
pub(crate) struct Host {
    pub data: PathBuf,
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
    /// Set when the node stops its pods because it stops itself (`serve` exiting): they end as
    /// on a machine going down, their on-disk emptyDirs kept for their next start.
    pub stopping: std::sync::atomic::AtomicBool,
}

/// The most the kubelet reads of a termination message.
const MAX_MESSAGE: usize = 4096;
/// The most termination message a pod's statuses hold together.
const MAX_POD_MESSAGES: usize = 12 * 1024;
/// How much of the end of a log is read for `FallbackToLogsOnError`.
const FALLBACK_READ: u64 = 80 * (logs::MAX_RECORD as u64 + 64);
/// With `FallbackToLogsOnError`: the last lines and bytes of the log it uses.
const FALLBACK_LINES: usize = 80;
const FALLBACK_BYTES: usize = 2048;

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
    /// Where the pod's sandbox, volumes and container layers live while it runs.
    pub fn run_dir(&self, uid: &str) -> PathBuf {
        // UIDs are made by podvisor; one that is not a plain component is never joined as is.
        let safe = !uid.is_empty() && uid != "." && uid != ".." && !uid.contains('/');
        self.data.join("run").join(if safe { uid.to_string() } else { uid.replace('/', "%2F").replace('.', "%2E") })
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

    fn container_dir(&self, uid: &str, id: &str) -> PathBuf {
        self.run_dir(uid).join("containers").join(id)
    }
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
            let inst =
                Instance { id: &id, rootfs: &rootfs, env: &env, termination_log: Some(&term), sub_paths: &sub_paths };
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
        let spawned =
            Monitor::spawn(&self.host.monitor, &self.host.runc, &id, &dir, &log, self.host.log_rotation).await;
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
        let _ = std::fs::write(dir.join(STARTED), b"");
        let start = self.host.runc.start(&id).await;
        if start.is_err() {
            let _ = self.host.runc.kill(&id, "KILL").await;
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
            eprintln!("podvisor: leaving {} in place: {e}", dir.display());
            false
        }
    }
}

/// The marker a started container leaves in its bundle.
const STARTED: &str = "started";

/// A container instance from its start (or its take-over by a node process started again) to its
/// end: its log lines are published as the monitor writes them, and its end is reported.
pub(crate) struct Watch {
    pub host: Arc<Host>,
    pub pod: Arc<Pod>,
    pub cgroup_parent: String,
    pub spec: Container,
    pub r: ContainerRef,
    pub id: String,
    pub dir: PathBuf,
    pub monitor: Monitor,
    /// Where in the log the lines not yet published begin.
    pub log_from: u64,
    /// Why the start failed, if it did (the process never ran).
    pub start_error: Option<String>,
    pub report: Report,
    pub publish: Publish,
}

impl Watch {
    /// Publishes the log lines until the container ends, then reports its end and removes it.
    pub async fn run(mut self) {
        let log = logs::path(&self.host.log_dir(&self.pod), &self.r.name, self.r.attempt);
        let (publish, name) = (self.publish.clone(), self.r.name.clone());
        let followed = logs::follow(&log, self.log_from, self.monitor.exited(), |stream, line| {
            publish(What::Log { container: name.clone(), stream: stream.as_str(), line: line.to_string() })
        })
        .await;
        if followed.is_err() {
            self.monitor.exited().await;
        }
        let end = match self.start_error {
            Some(message) => FoundExit {
                exit_code: 128,
                cause: ExitCause::StartError,
                finished_at: jiff::Timestamp::now(),
                message: Some(message),
            },
            None => {
                let budget = message_budget(&self.pod);
                self.host.end_of(&self.spec, &self.cgroup_parent, &self.id, &self.dir, &log, budget)
            }
        };
        // Recorded and told first, so that a node process stopped now finds the end, in the
        // record or in the pod's status, though the container is gone.
        record_end(&self.host.log_dir(&self.pod), &self.r, &end);
        let FoundExit { exit_code, cause, message, .. } = end;
        let _ = self.report.send(Input::Exited { container: self.r.clone(), exit_code, cause, message });
        self.host.remove_container(&self.id, &self.dir).await;
    }
}

/// A container instance a node process started again finds on the machine.
pub(crate) enum Held {
    /// It runs; its monitor watches it.
    Running { r: ContainerRef, id: String, dir: PathBuf, monitor: Monitor },
    /// It ended while no node process watched it.
    Ended { r: ContainerRef, id: String, dir: PathBuf, end: FoundExit },
    /// It was created but never started: it is removed, and counts as never made.
    Unstarted { id: String, dir: PathBuf },
    /// The pod's status last showed it running, and it is gone from the runtime, but its end was
    /// recorded beside its log: it ended and was removed before the status said so.
    Recorded { r: ContainerRef, id: String, end: FoundExit },
}

impl Held {
    /// What the engine is told of it.
    pub fn found(&self) -> Option<Found> {
        match self {
            Held::Running { r, id, .. } => {
                Some(Found { container: r.clone(), id: format!("runc://{id}"), ended: None })
            }
            Held::Ended { r, id, end, .. } | Held::Recorded { r, id, end } => {
                Some(Found { container: r.clone(), id: format!("runc://{id}"), ended: Some(end.clone()) })
            }
            Held::Unstarted { .. } => None,
        }
    }
}

impl Host {
    /// How the instance `id` ended, as its monitor recorded it: the code (or, when the
    /// monitor was killed, an unknown end), an OOM kill seen in its cgroup, and the termination
    /// message. Read before the container is removed.
    pub fn end_of(
        &self,
        spec: &Container,
        cgroup_parent: &str,
        id: &str,
        dir: &Path,
        log: &Path,
        budget: usize,
    ) -> FoundExit {
        let Some(ended) = monitor::ended(dir) else {
            return FoundExit {
                exit_code: 137,
                cause: ExitCause::Lost,
                finished_at: jiff::Timestamp::now(),
                message: Some("The container's monitor ended without recording its exit".into()),
            };
        };
        let oom = cgroup::oom_killed(&format!("{cgroup_parent}/{id}"));
        FoundExit {
            exit_code: ended.code,
            cause: if oom { ExitCause::OomKilled } else { ExitCause::Exited },
            finished_at: ended.at,
            message: termination_message(spec, &dir.join("termination-log"), log, ended.code, budget),
        }
    }

    /// Removes a container instance: the runtime's record (killing what is left), its layers
    /// and its bundle.
    pub async fn remove_container(&self, id: &str, dir: &Path) {
        cleanup::container(id, self.runc.delete_if_present(id).await);
        cleanup::said(dir.join("fs").display(), Overlay::at(&dir.join("fs")).remove());
        remove_bundle(dir);
    }

    /// What is left on the machine of `pod`, when its sandbox outlived the node process that
    /// made it (`None` when it did not: the pod resumes as after a reboot, R73).
    pub fn held(&self, pod: &Pod) -> Option<Vec<Held>> {
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let run = self.run_dir(&uid);
        if !podvisor_runtime::sandbox::Sandbox::at(&run.join("sandbox")).is_alive() || !run.join(VOLUMES).exists() {
            return None;
        }
        let spec = pod.spec.clone().unwrap_or_default();
        let log_dir = self.log_dir(pod);
        let mut held = Vec::new();
        for e in std::fs::read_dir(run.join("containers")).into_iter().flatten().flatten() {
            let id = e.file_name().to_string_lossy().into_owned();
            let dir = e.path();
            let r = parse_container_id(&uid, &id);
            let monitor = Monitor::find(&dir, &id);
            // Created but never started (the node process stopped in between): not adopted.
            let started =
                dir.join(STARTED).exists() && (monitor.is_none() || self.runc.state(&id) != Some("created".into()));
            let container = r
                .as_ref()
                .and_then(|r| spec.init_containers.iter().flatten().chain(&spec.containers).find(|c| c.name == r.name));
            held.push(match (r, container, started, monitor) {
                (Some(r), Some(_), true, Some(monitor)) => Held::Running { r, id, dir, monitor },
                (Some(r), Some(c), true, None) => {
                    let log = logs::path(&log_dir, &r.name, r.attempt);
                    let end = self.end_of(c, &pod_cgroup(&uid), &id, &dir, &log, message_budget(pod));
                    Held::Ended { r, id, dir, end }
                }
                _ => Held::Unstarted { id, dir },
            });
        }
        // Instances the status shows running that the runtime no longer holds: ended, if
        // their end was recorded.
        let statuses = pod.status.iter().flat_map(|s| s.init_container_statuses.iter().chain(&s.container_statuses));
        for s in statuses.flatten() {
            let running = s.state.as_ref().is_some_and(|st| st.running.is_some());
            let Ok(attempt) = u32::try_from(s.restart_count) else { continue };
            let r = ContainerRef::new(s.name.clone(), attempt);
            let known = held.iter().any(|h| match h {
                Held::Running { r: x, .. } | Held::Ended { r: x, .. } | Held::Recorded { r: x, .. } => *x == r,
                Held::Unstarted { .. } => false,
            });
            if running
                && !known
                && let Some(end) = recorded_end(&log_dir, &r)
            {
                held.push(Held::Recorded { id: container_id(&uid, &r), r, end });
            }
        }
        Some(held)
    }
}

/// Records beside its log how instance `r` ended.
pub(crate) fn record_end(log_dir: &Path, r: &ContainerRef, end: &FoundExit) {
    let cause = match end.cause {
        ExitCause::Exited => "Exited",
        ExitCause::OomKilled => "OOMKilled",
        ExitCause::StartError => "StartError",
        ExitCause::Lost => "Lost",
    };
    let record = serde_json::json!({
        "exitCode": end.exit_code,
        "cause": cause,
        "finishedAt": end.finished_at.to_string(),
        "message": end.message,
    });
    let path = logs::end_path(log_dir, &r.name, r.attempt);
    let tmp = path.with_extension("tmp");
    if let Ok(bytes) = serde_json::to_vec(&record) {
        let _ = std::fs::write(&tmp, bytes).and_then(|()| std::fs::rename(&tmp, &path));
    }
}

/// How instance `r` ended, if [`record_end`] recorded it.
fn recorded_end(log_dir: &Path, r: &ContainerRef) -> Option<FoundExit> {
    let v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(logs::end_path(log_dir, &r.name, r.attempt)).ok()?).ok()?;
    Some(FoundExit {
        exit_code: i32::try_from(v["exitCode"].as_i64()?).ok()?,
        cause: match v["cause"].as_str()? {
            "OOMKilled" => ExitCause::OomKilled,
            "StartError" => ExitCause::StartError,
            "Lost" => ExitCause::Lost,
            _ => ExitCause::Exited,
        },
        finished_at: v["finishedAt"].as_str()?.parse().ok()?,
        message: v["message"].as_str().map(str::to_string),
    })
}

/// The instance a runtime ID made by [`container_id`] names.
fn parse_container_id(uid: &str, id: &str) -> Option<ContainerRef> {
    let rest = id.strip_prefix(&id_prefix(uid))?;
    let (name, attempt) = rest.rsplit_once('-')?;
    Some(ContainerRef::new(name, attempt.parse().ok()?))
}

/// The last `max` bytes of `file`, never more read.
fn read_last(file: &Path, max: u64) -> std::io::Result<Vec<u8>> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = std::fs::File::open(file)?;
    let len = f.metadata()?.len();
    f.seek(SeekFrom::Start(len.saturating_sub(max)))?;
    let mut out = Vec::new();
    f.take(max).read_to_end(&mut out)?;
    Ok(out)
}

/// The first `max` bytes of `text`, cut at a character boundary.
fn first_bytes(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut end = max;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
}

/// The bytes of termination message each container of `pod` may keep: the kubelet's 12 KiB per
/// pod, shared evenly by every container it declares.
pub(crate) fn message_budget(pod: &Pod) -> usize {
    let spec = pod.spec.as_ref();
    let count = spec.map_or(0, |s| {
        s.containers.len()
            + s.init_containers.as_ref().map_or(0, Vec::len)
            + s.ephemeral_containers.as_ref().map_or(0, Vec::len)
    });
    MAX_POD_MESSAGES / count.max(1)
}

/// The container's termination message: the end of what it wrote to its
/// `terminationMessagePath` (its last 4096 bytes, as the kubelet reads it), or with
/// `FallbackToLogsOnError` and a failure, the end of its log; then the first `budget` bytes.
fn termination_message(c: &Container, file: &Path, log: &Path, code: i32, budget: usize) -> Option<String> {
    let written = read_last(file, MAX_MESSAGE as u64).ok().map(|b| String::from_utf8_lossy(&b).into_owned());
    if let Some(m) = written.filter(|m| !m.is_empty()) {
        return Some(first_bytes(m, budget));
    }
    if c.termination_message_policy.as_deref() == Some("FallbackToLogsOnError") && code != 0 {
        // The last 80 lines and 2 KiB: a longer end of the log than those is never needed.
        let lines = logs::read_tail(log, FALLBACK_READ).ok()?;
        let tail: Vec<String> = lines.iter().rev().take(FALLBACK_LINES).rev().map(|l| l.2.clone()).collect();
        let mut text = tail.join("\n");
        if text.len() > FALLBACK_BYTES {
            let mut cut = text.len() - FALLBACK_BYTES;
            while !text.is_char_boundary(cut) {
                cut += 1;
            }
            text = text[cut..].to_string();
        }
        return (!text.is_empty()).then(|| first_bytes(text, budget));
    }
    None
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
    let containers = dir.join("containers");
    let mut released = true;
    if let Ok(entries) = std::fs::read_dir(&containers) {
        for e in entries.flatten() {
            let id = e.file_name().to_string_lossy().into_owned();
            cleanup::container(&id, host.runc.delete_if_present(&id).await);
            cleanup::said(e.path().join("fs").display(), Overlay::at(&e.path().join("fs")).remove());
            released &= remove_bundle(&e.path());
        }
    }
    if keep.is_empty() {
        podvisor_runtime::volumes::release(&dir.join("volumes"));
    } else {
        podvisor_runtime::volumes::release_except(&dir.join("volumes"), keep);
    }
    let sandbox = podvisor_runtime::sandbox::Sandbox::at(&dir.join("sandbox"));
    let sandbox_dir = dir.join("sandbox");
    match tokio::task::spawn_blocking(move || sandbox.remove()).await {
        Ok(removed) => _ = cleanup::said(sandbox_dir.display(), removed),
        Err(e) => _ = cleanup::said(sandbox_dir.display(), Err(e)),
    }
    cgroup::remove(&pod_cgroup(uid));
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The kubelet reads the last 4096 bytes of a termination message, never the whole file,
    /// and a pod's messages share 12 KiB.
    #[test]
    fn termination_messages_are_read_from_the_end_and_share_the_pods_budget() {
        let dir = std::env::temp_dir().join(format!("podvisor-term-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("termination-log");
        let mut text = "a".repeat(10_000);
        text.push_str(&"z".repeat(4096));
        std::fs::write(&file, &text).unwrap();
        let c = Container { name: "c".into(), ..Default::default() };
        let one = termination_message(&c, &file, &dir.join("none.log"), 1, 4096).unwrap();
        assert_eq!(one, "z".repeat(4096), "the end of the file");
        let pod = Pod {
            spec: Some(k8s_openapi::api::core::v1::PodSpec {
                containers: (0..4).map(|i| Container { name: format!("c{i}"), ..Default::default() }).collect(),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(message_budget(&pod), 3072);
        let four = termination_message(&c, &file, &dir.join("none.log"), 1, message_budget(&pod)).unwrap();
        assert_eq!(four.len(), 3072, "the first bytes of it within the pod's share");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
