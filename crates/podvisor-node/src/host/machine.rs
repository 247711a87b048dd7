//! The host as the pods' [`Machine`] (shared, as every pod's driver holds it): sandboxes of real namespaces, containers through the OCI
//! runtime, commands through its `exec`.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, Pod};
use podvisor_engine::ContainerRef;
use podvisor_runtime::bundle::PodContext;
use podvisor_runtime::sandbox::{Names, Networking, Sandbox};

use super::{
    Held, Host, Publish, Report, StartJob, Steps, VOLUMES, Watch, container_id, pod_cgroup, remove_pod_leftovers,
    remove_pod_leftovers_keeping,
};
use crate::events::What;
use crate::handlers::{self, Outcome, Target};
use crate::machine::{Leftover, Machine, SandboxFailure, Sandboxed, StartOrder};

fn uid(pod: &Pod) -> String {
    pod.metadata.uid.clone().unwrap_or_default()
}

fn host_network(pod: &Pod) -> bool {
    pod.spec.as_ref().and_then(|s| s.host_network) == Some(true)
}

impl Host {
    fn sandbox_of(&self, pod: &Pod) -> Sandbox {
        Sandbox::at(&self.run_dir(&uid(pod)).join("sandbox"))
    }

    /// What the containers of `pod` share, in its sandbox.
    fn context(&self, pod: &Pod, sandbox: &Sandbox, volumes: HashMap<String, PathBuf>) -> Arc<PodContext> {
        let host_network = host_network(pod);
        Arc::new(PodContext {
            netns: (!host_network).then(|| sandbox.namespace("net")),
            uts: (!host_network).then(|| sandbox.namespace("uts")),
            host_network,
            ipc: Some(sandbox.namespace("ipc")),
            cgroup_parent: pod_cgroup(&uid(pod)),
            cgroup_v2: podvisor_runtime::cgroup::is_v2(),
            swap_controller: podvisor_runtime::cgroup::swap_controller(),
            etc_files: sandbox.etc_files(),
            volumes,
            readonly_volumes: podvisor_runtime::volumes::read_only(pod),
            hostname: Some(Names::of(pod, &crate::host_name()).uts_hostname()),
            security: pod.spec.as_ref().and_then(|s| s.security_context.clone()),
            seccomp_default: self.default_seccomp,
            seccomp_dir: self.seccomp_dir(),
        })
    }
}

impl Machine for Arc<Host> {
    type Held = Vec<Held>;

    fn host_ip(&self) -> String {
        Host::host_ip(self)
    }

    fn leftover(&self, pod: &Pod) -> Leftover<Vec<Held>> {
        if pod.status.is_none() {
            return Leftover::Nothing;
        }
        match self.held(pod) {
            Some(held) => {
                // The sandbox, not the status last written, knows the pod's address.
                let pod_ip = if host_network(pod) {
                    Some(Host::host_ip(self))
                } else {
                    self.sandbox_of(pod).ip().map(|ip| ip.to_string())
                };
                let found = held.iter().filter_map(Held::found).collect();
                Leftover::Intact { found, pod_ip, held }
            }
            None if self.run_dir(&uid(pod)).exists() => Leftover::Dead,
            None => Leftover::Nothing,
        }
    }

    async fn take_over(&self, pod: &Arc<Pod>, held: Vec<Held>, report: &Report, publish: &Publish) -> Sandboxed {
        let dir = self.run_dir(&uid(pod));
        let volumes: HashMap<String, PathBuf> =
            std::fs::read(dir.join(VOLUMES)).ok().and_then(|v| serde_json::from_slice(&v).ok()).unwrap_or_default();
        let ctx = self.context(pod, &self.sandbox_of(pod), volumes.clone());
        let log_dir = self.log_dir(pod);
        let spec = pod.spec.clone().unwrap_or_default();
        let container = |name: &str| {
            spec.init_containers.iter().flatten().chain(&spec.containers).find(|c| c.name == name).cloned()
        };
        for h in held {
            match h {
                Held::Running { r, id, dir, monitor } => {
                    let Some(spec) = container(&r.name) else { continue };
                    let log = podvisor_runtime::logs::path(&log_dir, &r.name, r.attempt);
                    let watch = Watch {
                        host: self.clone(),
                        pod: pod.clone(),
                        cgroup_parent: pod_cgroup(&uid(pod)),
                        spec,
                        log_from: std::fs::metadata(&log).map_or(0, |m| m.len()),
                        r,
                        id,
                        dir,
                        monitor,
                        start_error: None,
                        report: report.clone(),
                        publish: publish.clone(),
                    };
                    tokio::spawn(watch.run());
                }
                Held::Ended { r, id, dir, end } => {
                    super::record_end(&log_dir, &r, &end);
                    self.remove_container(&id, &dir).await;
                }
                Held::Unstarted { id, dir } => self.remove_container(&id, &dir).await,
                Held::Recorded { .. } => {}
            }
        }
        let pod_ip = pod.status.as_ref().and_then(|s| s.pod_ip.clone());
        Sandboxed { pod_ip, ctx, volumes }
    }

    async fn clear_dead(&self, pod: &Pod) {
        let keep = podvisor_runtime::volumes::on_disk_empty_dirs(pod);
        remove_pod_leftovers_keeping(self, &uid(pod), &keep).await;
    }

    async fn create_sandbox(&self, pod: &Pod, publish: &Publish) -> Result<Sandboxed, SandboxFailure> {
        let uid = uid(pod);
        let dir = self.run_dir(&uid);
        record_sidecars(&self.log_dir(pod), pod);
        let sandbox = Sandbox::at(&dir.join("sandbox"));
        let names = Names::of(pod, &crate::host_name());
        let mut steps = Steps::new();
        let net = match (host_network(pod), &self.network) {
            (true, _) => Networking::Host,
            (false, Some(n)) => Networking::Pod(n),
            (false, None) => Networking::Loopback,
        };
        let host_resolv = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
        let resolv = podvisor_runtime::resolv::resolv_conf(pod, &host_resolv, self.cluster_dns.get());
        let pod_ip = match sandbox.create(&names, net, &resolv, &self.namespaces).await {
            Ok(ip) => ip.map(|ip| ip.to_string()),
            Err(e) => return Err(SandboxFailure { reason: "FailedCreatePodSandBox", message: e.to_string() }),
        };
        let pod_ip = if matches!(net, Networking::Host) { Some(Host::host_ip(self)) } else { pod_ip };
        steps.done("namespaces");
        // The downward API reads the address from the pod.
        let mut addressed = pod.clone();
        addressed.status.get_or_insert_default().pod_ip = pod_ip.clone();
        let volumes = match podvisor_runtime::volumes::prepare(&addressed, &dir.join("volumes"), self.objects.as_ref())
        {
            Ok(v) => v,
            Err(e) => {
                crate::cleanup::said(
                    dir.join("volumes").display(),
                    podvisor_runtime::volumes::release(&dir.join("volumes")),
                );
                let sandbox_dir = dir.join("sandbox");
                match tokio::task::spawn_blocking(move || sandbox.remove()).await {
                    Ok(removed) => _ = crate::cleanup::said(sandbox_dir.display(), removed),
                    Err(e) => _ = crate::cleanup::said(sandbox_dir.display(), Err(e)),
                }
                return Err(SandboxFailure { reason: "FailedMount", message: e.to_string() });
            }
        };
        steps.done("volumes");
        // A node process started again finds the volumes here (R75).
        // Written whole or not at all: without it, the sandbox counts as lost (R73).
        if let Ok(v) = serde_json::to_vec(&volumes) {
            let tmp = dir.join(format!("{VOLUMES}.tmp"));
            let written = std::fs::write(&tmp, v).and_then(|()| std::fs::rename(&tmp, dir.join(VOLUMES)));
            if let Err(e) = written {
                tracing::warn!(
                    "pod {}/{}: {}: {e} (a node process started again will not take this pod over)",
                    pod.metadata.namespace.as_deref().unwrap_or("default"),
                    pod.metadata.name.as_deref().unwrap_or(""),
                    dir.join(VOLUMES).display()
                );
            }
        }
        publish(What::Timing { container: None, steps: steps.list });
        let ctx = self.context(&addressed, &sandbox, volumes.clone());
        Ok(Sandboxed { pod_ip, ctx, volumes })
    }

    fn start(&self, order: StartOrder) {
        let job = StartJob {
            cancelled: order.cancelled,
            host: self.clone(),
            pod: order.pod,
            ctx: order.ctx,
            r: order.r,
            spec: order.spec,
            report: order.report,
            publish: order.publish,
            pid_namespace: order.pid_namespace,
        };
        tokio::spawn(job.run());
    }

    fn create_ahead(&self, pod: &Arc<Pod>, ctx: &Arc<PodContext>, spec: &Container) {
        self.make_ahead(pod.clone(), ctx.clone(), spec.clone());
    }

    fn pid_namespace(&self, pod: &Pod, id: &str) -> Option<PathBuf> {
        let dir = self.container_dir(&uid(pod), id);
        let pid: i32 = std::fs::read_to_string(dir.join("init.pid")).ok()?.trim().parse().ok()?;
        Some(PathBuf::from(format!("/proc/{pid}/ns/pid")))
    }

    fn image_stop_signal(&self, image: &str) -> Option<String> {
        self.images.resolve(image).and_then(|i| i.config.stop_signal)
    }

    fn signal(&self, pod: &Pod, r: &ContainerRef, signal: String) {
        let id = container_id(&uid(pod), r);
        let runc = self.runc.clone();
        tokio::spawn(async move {
            // A container that is already gone cannot be signalled: its exit is reported anyway.
            // One still there that the signal did not reach is worth a line.
            if let Err(e) = runc.kill(&id, &signal).await {
                let (runc, asked) = (runc.clone(), id.clone());
                if let Ok(Some(state)) = tokio::task::spawn_blocking(move || runc.state(&asked)).await
                    && state != "stopped"
                {
                    tracing::warn!("{signal} to {id} ({state}): {e}");
                }
            }
        });
    }

    async fn exec(&self, pod: &Pod, r: &ContainerRef, argv: Vec<String>, timeout: Duration) -> Outcome {
        handlers::exec(&self.runc, &container_id(&uid(pod), r), &argv, timeout).await
    }

    fn target(&self, pod: &Pod) -> Target {
        match pod.status.as_ref().and_then(|s| s.pod_ip.clone()) {
            Some(ip) => Target { netns: None, ip },
            // No pod network: from inside the pod's network namespace to its loopback.
            None => Target { netns: Some(self.sandbox_of(pod).namespace("net")), ip: "127.0.0.1".into() },
        }
    }

    async fn remove_sandbox(&self, pod: &Pod) {
        self.drop_ahead(pod).await;
        if self.stopping.load(Ordering::SeqCst) {
            let keep = podvisor_runtime::volumes::on_disk_empty_dirs(pod);
            remove_pod_leftovers_keeping(self, &uid(pod), &keep).await
        } else {
            remove_pod_leftovers(self, &uid(pod)).await
        }
    }
}

/// Writes [`crate::pod_logs::SIDECARS_FILE`] for a pod with sidecars.
fn record_sidecars(log_dir: &std::path::Path, pod: &Pod) {
    let spec = pod.spec.as_ref();
    let names: Vec<&str> = spec
        .and_then(|s| s.init_containers.as_deref())
        .unwrap_or_default()
        .iter()
        .filter(|c| c.restart_policy.as_deref() == Some("Always"))
        .map(|c| c.name.as_str())
        .collect();
    if names.is_empty() {
        return;
    }
    let text: String = names.iter().map(|n| format!("{n}\n")).collect();
    let file = log_dir.join(crate::pod_logs::SIDECARS_FILE);
    if let Err(e) = std::fs::create_dir_all(log_dir).and_then(|()| std::fs::write(&file, text)) {
        tracing::warn!("{}: {e}", file.display());
    }
}
