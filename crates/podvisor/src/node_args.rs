//! The options of the commands that run pods on this machine (`run`, `serve`).

use std::path::Path;

use podvisor_cluster::NodeOptions;
use podvisor_runtime::network::{DEFAULT_SUBNET, PodNetwork, Subnet};

use crate::image::RegistryArgs;

/// How pods are run here.
#[derive(clap::Args, Clone)]
pub struct NodeArgs {
    /// The OCI runtime binary (runc, crun, youki, or a path). `auto`: the one this data
    /// directory used last, else crun where it is installed and the host allows it (it is the
    /// fastest), else runc.
    #[arg(long, env = "PODVISOR_RUNTIME", default_value = "auto")]
    pub runtime: std::path::PathBuf,
    /// The subnet pods get their addresses from, on the host bridge podvisor0: pods reach each
    /// other, and the host at the subnet's first address. `none`: pods have loopback only.
    #[arg(long, value_name = "CIDR|none", env = "PODVISOR_POD_NETWORK", default_value = DEFAULT_SUBNET, value_parser = pod_network)]
    pub pod_network: PodNetworkArg,
    /// Run containers that name no seccomp profile under the runtime's default profile
    /// (`RuntimeDefault`) instead of `Unconfined`, as the kubelet's `seccompDefault` does.
    #[arg(long, env = "PODVISOR_DEFAULT_SECCOMP")]
    pub default_seccomp: bool,
    /// The size at which a container's log is rotated (a quantity, as the kubelet's
    /// containerLogMaxSize).
    #[arg(long, value_name = "QUANTITY", default_value = "10Mi", value_parser = log_size)]
    pub container_log_max_size: u64,
    /// How many files a container's log may take, the current one included (at least 2, as the
    /// kubelet's containerLogMaxFiles).
    #[arg(long, value_name = "N", default_value_t = 5, value_parser = clap::value_parser!(u32).range(2..))]
    pub container_log_max_files: u32,
    /// The most pods that run at once, as the kubelet's maxPods: pods beyond stay Pending until
    /// others end.
    #[arg(long, value_name = "N", default_value_t = 110, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_pods: u32,
    #[command(flatten)]
    pub registry: RegistryArgs,
}

/// `--pod-network` as given: a subnet, or none.
#[derive(Clone, Debug)]
pub struct PodNetworkArg(Option<Subnet>);

fn log_size(s: &str) -> Result<u64, String> {
    let milli = podvisor_objects::resources::parse_milli(s).map_err(|e| e.to_string())?;
    let bytes = u64::try_from(milli / 1000).unwrap_or(u64::MAX);
    if bytes < 1024 {
        return Err(format!("{s:?} is less than 1Ki; a log must hold at least a few lines"));
    }
    Ok(bytes)
}

fn pod_network(s: &str) -> Result<PodNetworkArg, String> {
    if s == "none" {
        return Ok(PodNetworkArg(None));
    }
    s.parse()
        .map(|subnet| PodNetworkArg(Some(subnet)))
        .map_err(|e: podvisor_runtime::network::NetworkError| e.to_string())
}

/// The file of a data directory that remembers the runtime its containers were made with:
/// another runtime cannot take them over (R75).
const REMEMBERED: &str = "runtime";

/// Whether `name` is an executable on `PATH`.
fn on_path(name: &str) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::env::var_os("PATH").is_some_and(|paths| {
        std::env::split_paths(&paths)
            .any(|d| std::fs::metadata(d.join(name)).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0))
    })
}

/// Whether crun runs on this host: not on a hybrid cgroup host whose cgroup2 hierarchy still
/// holds controllers (crun refuses those; `scripts/setup` binds them to v1 as systemd does).
fn crun_allowed() -> bool {
    let unified = Path::new("/sys/fs/cgroup/unified/cgroup.controllers");
    std::fs::read_to_string(unified).map_or(true, |c| c.trim().is_empty())
}

/// The runtime `asked` names for `data_dir`, and why it was chosen: as asked; for `auto`, the
/// one the data directory used last, else crun if installed and allowed, else runc.
pub fn resolve_runtime(asked: &Path, data_dir: &Path) -> (std::path::PathBuf, &'static str) {
    if asked != Path::new("auto") {
        return (asked.to_path_buf(), "as asked");
    }
    let remembered = std::fs::read_to_string(data_dir.join(REMEMBERED)).ok().map(|s| s.trim().to_string());
    if let Some(r) = remembered.filter(|r| !r.is_empty() && (r.contains('/') || on_path(r))) {
        return (r.into(), "the one this data directory's containers were made with");
    }
    if on_path("crun") && crun_allowed() {
        return ("crun".into(), "the fastest installed");
    }
    ("runc".into(), if on_path("crun") { "crun refuses this hybrid cgroup host" } else { "crun is not installed" })
}

/// Remembers `runtime` as the one `data_dir`'s containers are made with.
pub fn remember_runtime(runtime: &Path, data_dir: &Path) {
    let path = data_dir.join(REMEMBERED);
    if let Err(e) = std::fs::write(&path, runtime.to_string_lossy().as_bytes()) {
        eprintln!("podvisor: {}: {e}", path.display());
    }
}

impl NodeArgs {
    /// The node to open on `data_dir`.
    pub fn options(&self, data_dir: &Path) -> NodeOptions {
        NodeOptions {
            data_dir: data_dir.to_path_buf(),
            runtime: resolve_runtime(&self.runtime, data_dir).0,
            pull: self.registry.settings(),
            monitor: crate::monitor_command(),
            network: self.pod_network.0.map(PodNetwork::new),
            default_seccomp: self.default_seccomp,
            log_rotation: podvisor_runtime::logs::Rotation {
                max_size: self.container_log_max_size,
                max_files: self.container_log_max_files as usize,
            },
            max_pods: self.max_pods as usize,
            // Only `serve` has an API for pods to talk to; it sets this.
            api: None,
            takeover_only: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_keeps_the_data_directorys_runtime_else_prefers_crun_where_it_runs() {
        let dir = std::env::temp_dir().join(format!("podvisor-runtime-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        assert_eq!(resolve_runtime(Path::new("youki"), &dir), ("youki".into(), "as asked"));
        let fresh = resolve_runtime(Path::new("auto"), &dir).0;
        let expected = if on_path("crun") && crun_allowed() { "crun" } else { "runc" };
        assert_eq!(fresh, Path::new(expected));
        remember_runtime(Path::new("/usr/sbin/runc"), &dir);
        assert_eq!(
            resolve_runtime(Path::new("auto"), &dir).0,
            Path::new("/usr/sbin/runc"),
            "takeover needs the same runtime"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
