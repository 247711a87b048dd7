//! The options of the commands that run pods on this machine (`run`, `serve`).

use std::path::Path;

use podvisor_cluster::NodeOptions;
use podvisor_runtime::network::{DEFAULT_SUBNET, PodNetwork, Subnet};

use crate::image::RegistryArgs;

/// How pods are run here.
#[derive(clap::Args, Clone)]
pub struct NodeArgs {
    /// The OCI runtime binary (runc, crun, youki, or a path).
    #[arg(long, env = "PODVISOR_RUNTIME", default_value = "runc")]
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

impl NodeArgs {
    /// The node to open on `data_dir`.
    pub fn options(&self, data_dir: &Path) -> NodeOptions {
        NodeOptions {
            data_dir: data_dir.to_path_buf(),
            runtime: self.runtime.clone(),
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
        }
    }
}
