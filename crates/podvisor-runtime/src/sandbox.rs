//! The pod sandbox: the network, UTS and IPC namespaces the containers of one pod share, kept
//! alive by bind mounts (no pause process), plus the pod's `/etc/hosts`, `/etc/hostname` and
//! `/etc/resolv.conf`.
//!
//! The namespaces are made ahead of need by a thread of this process with `unshare(2)`, loopback
//! up (netlink), and bound each to a file when a pod needs them, its hostname set inside them;
//! no process is spawned for any of it (see [`crate::namespaces`] and [`crate::netlink`]).
//! Every pod has its own localhost; on the pod network (see [`crate::network`]) it also has an address the other pods
//! and the host reach. A pod on the host's network makes only its IPC namespace.

use std::fs;
use std::path::{Path, PathBuf};

use rustix::mount::{UnmountFlags, unmount};

use crate::namespaces::NamespaceMaker;
use crate::network::{self, Attachment, NetworkError, PodNetwork, is_namespace};

/// Errors creating or removing a sandbox.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// A file of the sandbox could not be written.
    #[error("{path}: {error}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        error: std::io::Error,
    },
    /// The namespaces could not be made.
    #[error("creating the pod's namespaces: {0} (podvisor needs root)")]
    Namespaces(String),
    /// The pod could not be given an address.
    #[error(transparent)]
    Network(#[from] NetworkError),
}

/// How a pod is networked.
#[derive(Debug, Clone, Copy)]
pub enum Networking<'a> {
    /// `hostNetwork: true`: the host's network and hostname.
    Host,
    /// Its own network namespace with loopback only.
    Loopback,
    /// Its own network namespace with an address on the pod network.
    Pod(&'a PodNetwork),
}

/// A pod's sandbox on disk: `<dir>/ns/{net,uts,ipc}` and `<dir>/etc/*`.
#[derive(Debug, Clone)]
pub struct Sandbox {
    dir: PathBuf,
}

const NAMESPACES: [&str; 3] = ["net", "uts", "ipc"];

/// The file keeping the sandbox's [`Attachment`] to the pod network.
const ATTACHMENT: &str = "network.json";

impl Sandbox {
    /// The sandbox kept under `dir` (which may not exist yet).
    pub fn at(dir: &Path) -> Self {
        Sandbox { dir: dir.to_path_buf() }
    }

    /// The file holding namespace `kind` (`net`, `uts` or `ipc`).
    pub fn namespace(&self, kind: &str) -> PathBuf {
        self.dir.join("ns").join(kind)
    }

    /// The files to bind-mount into every container: `(destination, host file)`.
    pub fn etc_files(&self) -> Vec<(String, PathBuf)> {
        ["hosts", "hostname", "resolv.conf"]
            .iter()
            .map(|f| (format!("/etc/{f}"), self.dir.join("etc").join(f)))
            .collect()
    }

    /// The namespaces this sandbox made (all three, or only `ipc` on the host's network).
    fn made(&self) -> Vec<&'static str> {
        NAMESPACES.into_iter().filter(|kind| self.namespace(kind).exists()).collect()
    }

    /// Whether the sandbox's namespaces are still held: it outlived the node process that made
    /// it (a node restart, not a reboot).
    pub fn is_alive(&self) -> bool {
        let made = self.made();
        !made.is_empty() && made.iter().all(|kind| is_namespace(&self.namespace(kind)))
    }

    /// The pod's address on the pod network, if it has one.
    pub fn ip(&self) -> Option<std::net::Ipv4Addr> {
        self.attachment().map(|a| a.ip)
    }

    fn attachment(&self) -> Option<Attachment> {
        fs::read(self.dir.join(ATTACHMENT)).ok().and_then(|b| serde_json::from_slice(&b).ok())
    }

    /// Creates the namespaces (a pod's own through `maker`) and files for a pod named as
    /// `names` says, networked as `net` says. Returns the pod's address on the pod network, if
    /// it got one. On failure, what was made is removed again.
    pub async fn create(
        &self,
        names: &Names,
        net: Networking<'_>,
        resolv_conf: &str,
        maker: &NamespaceMaker,
    ) -> Result<Option<std::net::Ipv4Addr>, SandboxError> {
        let made = self.make(names, net, resolv_conf, maker).await;
        if made.is_err() {
            let me = self.clone();
            let _ = tokio::task::spawn_blocking(move || me.remove()).await;
        }
        made
    }

    async fn make(
        &self,
        names: &Names,
        net: Networking<'_>,
        resolv_conf: &str,
        maker: &NamespaceMaker,
    ) -> Result<Option<std::net::Ipv4Addr>, SandboxError> {
        let hostname = names.uts_hostname();
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |error| SandboxError::Io { path, error }
        };
        use crate::namespaces::Kind;
        let kinds: &[Kind] =
            if matches!(net, Networking::Host) { &[Kind::Ipc] } else { &[Kind::Net, Kind::Uts, Kind::Ipc] };
        let ns = self.dir.join("ns");
        fs::create_dir_all(&ns).map_err(io(&ns))?;
        let mut files = Vec::new();
        for kind in kinds {
            let f = self.namespace(kind.name());
            fs::write(&f, b"").map_err(io(&f))?;
            files.push((*kind, f));
        }
        let netns = self.namespace("net");
        // A pod's own namespaces come from the maker; the address is claimed meanwhile (the
        // claim names the file being bound, see `network::being_made`).
        let making = async {
            match net {
                Networking::Host => crate::namespaces::make_ipc(self.namespace("ipc")).await.map(|()| None),
                Networking::Pod(_) | Networking::Loopback => maker.make(files, hostname.clone()).await.map(Some),
            }
        };
        let claiming = async {
            match net {
                Networking::Pod(network) => Some(network.claim(&netns)),
                Networking::Host | Networking::Loopback => None,
            }
        };
        let (made, claimed) = tokio::join!(making, claiming);
        let (made, claimed) = match (made, claimed.transpose()) {
            (Ok(made), Ok(claimed)) => (made, claimed),
            (Err(e), Ok(Some(a))) => {
                let _ = tokio::task::spawn_blocking(move || network::detach(&a, &netns)).await;
                return Err(SandboxError::Namespaces(e));
            }
            (Err(e), _) => return Err(SandboxError::Namespaces(e)),
            (Ok(_), Err(e)) => return Err(e.into()),
        };
        let ip = match (net, claimed, made) {
            (Networking::Pod(network), Some(a), Some(made)) => {
                network.connect(&a, &netns, &made.netlink, made.veth).await?;
                let f = self.dir.join(ATTACHMENT);
                let written = serde_json::to_vec(&a).map_err(std::io::Error::other).and_then(|b| fs::write(&f, b));
                if let Err(e) = written {
                    let _ = tokio::task::spawn_blocking(move || network::detach(&a, &netns)).await;
                    return Err(io(&f)(e));
                }
                Some(a.ip)
            }
            _ => None,
        };
        let etc = self.dir.join("etc");
        fs::create_dir_all(&etc).map_err(io(&etc))?;
        for (name, text) in [
            ("hosts", hosts(names, net, ip)),
            ("hostname", format!("{hostname}\n")),
            ("resolv.conf", resolv_conf.to_string()),
        ] {
            let f = etc.join(name);
            fs::write(&f, text).map_err(io(&f))?;
        }
        Ok(ip)
    }

    /// Releases the namespaces and the pod's address, and deletes the sandbox's files. Safe to
    /// call twice, and on a sandbox left behind by an earlier run. It runs commands: call it
    /// off the async threads.
    pub fn remove(&self) -> Result<(), SandboxError> {
        if let Some(a) = self.attachment() {
            network::detach(&a, &self.namespace("net"));
        }
        for kind in NAMESPACES {
            let f = self.namespace(kind);
            let _ = unmount(&f, UnmountFlags::DETACH);
        }
        match fs::remove_dir_all(&self.dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(error) => Err(SandboxError::Io { path: self.dir.clone(), error }),
        }
    }
}

/// What a pod's hostname and `/etc/hosts` say of it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Names {
    /// The hostname: `spec.hostname`, else the pod's name (at most 63 characters).
    pub hostname: String,
    /// With `spec.subdomain`: `<subdomain>.<namespace>.svc.cluster.local`.
    pub domain: Option<String>,
    /// `spec.setHostnameAsFQDN`: the kernel hostname is the full name.
    pub fqdn_hostname: bool,
    /// `spec.hostAliases`: an address and its names, each.
    pub aliases: Vec<(String, Vec<String>)>,
}

impl Names {
    /// The names of `pod` as the kubelet gives them; `host` is the machine's hostname, which a
    /// pod on the host's network keeps.
    pub fn of(pod: &k8s_openapi::api::core::v1::Pod, host: &str) -> Names {
        let spec = pod.spec.clone().unwrap_or_default();
        let aliases =
            spec.host_aliases.iter().flatten().map(|a| (a.ip.clone(), a.hostnames.clone().unwrap_or_default()));
        let aliases = aliases.collect();
        if spec.host_network == Some(true) {
            return Names { hostname: host.to_string(), aliases, ..Default::default() };
        }
        let name = pod.metadata.name.as_deref().unwrap_or_default();
        let hostname = match spec.hostname.as_deref().filter(|h| !h.is_empty()) {
            Some(h) => h.to_string(),
            None => {
                let cut = &name[..name.len().min(63)];
                cut.trim_end_matches(['-', '.']).to_string()
            }
        };
        let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
        let domain =
            spec.subdomain.as_deref().filter(|s| !s.is_empty()).map(|s| format!("{s}.{namespace}.svc.cluster.local"));
        Names { hostname, domain, fqdn_hostname: spec.set_hostname_as_fqdn == Some(true), aliases }
    }

    /// The kernel hostname of the pod's UTS namespace.
    pub fn uts_hostname(&self) -> String {
        match &self.domain {
            Some(d) if self.fqdn_hostname => format!("{}.{d}", self.hostname),
            _ => self.hostname.clone(),
        }
    }
}

/// The pod's `/etc/hosts`, as the kubelet writes it: the host's own on the host network, else
/// loopback and the pod's address (or, without one, a loopback address) for its hostname; then
/// the `hostAliases`.
fn hosts(names: &Names, net: Networking<'_>, ip: Option<std::net::Ipv4Addr>) -> String {
    let mut text = if matches!(net, Networking::Host) {
        let host = fs::read_to_string("/etc/hosts").unwrap_or_default();
        format!("# Kubernetes-managed hosts file (host network).\n{host}")
    } else {
        let own = ip.map_or_else(|| "127.0.1.1".to_string(), |ip| ip.to_string());
        let name = match &names.domain {
            Some(d) => format!("{0}.{d}\t{0}", names.hostname),
            None => names.hostname.clone(),
        };
        format!(
            "# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n\
             fe00::0\tip6-localnet\nfe00::0\tip6-mcastprefix\nfe00::1\tip6-allnodes\nfe00::2\tip6-allrouters\n\
             {own}\t{name}\n"
        )
    };
    if !names.aliases.is_empty() {
        text.push_str("\n# Entries added by HostAliases.\n");
        for (ip, hostnames) in &names.aliases {
            text.push_str(&format!("{ip}\t{}\n", hostnames.join("\t")));
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(yaml: serde_json::Value) -> k8s_openapi::api::core::v1::Pod {
        serde_json::from_value(yaml).unwrap()
    }

    #[test]
    fn the_hosts_file_names_the_pod_its_domain_and_its_aliases_as_the_kubelet_writes_them() {
        let p = pod(serde_json::json!({
            "metadata": {"name": "web-0", "namespace": "shop"},
            "spec": {"containers": [], "hostname": "db", "subdomain": "backend",
                     "hostAliases": [{"ip": "10.1.2.3", "hostnames": ["foo.remote", "bar.remote"]}]}
        }));
        let names = Names::of(&p, "machine");
        assert_eq!(names.uts_hostname(), "db");
        let text = hosts(&names, Networking::Loopback, Some([10, 244, 0, 7].into()));
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "# Kubernetes-managed hosts file.");
        assert_eq!(lines[7], "10.244.0.7\tdb.backend.shop.svc.cluster.local\tdb");
        assert_eq!(lines[8..], ["", "# Entries added by HostAliases.", "10.1.2.3\tfoo.remote\tbar.remote"]);
    }

    #[test]
    fn a_long_name_is_cut_to_a_hostname_and_fqdn_applies_only_with_a_domain() {
        let long = format!("{}-x", "a".repeat(62));
        let p =
            pod(serde_json::json!({"metadata": {"name": long}, "spec": {"containers": [], "setHostnameAsFQDN": true}}));
        let names = Names::of(&p, "machine");
        assert_eq!(names.hostname, "a".repeat(62), "63 characters, the trailing dash dropped");
        assert_eq!(names.uts_hostname(), "a".repeat(62));
        let p = pod(
            serde_json::json!({"metadata": {"name": "n"}, "spec": {"containers": [], "subdomain": "s", "setHostnameAsFQDN": true}}),
        );
        assert_eq!(Names::of(&p, "machine").uts_hostname(), "n.s.default.svc.cluster.local");
        let p = pod(serde_json::json!({"metadata": {"name": "n"}, "spec": {"containers": [], "hostNetwork": true}}));
        assert_eq!(Names::of(&p, "machine").uts_hostname(), "machine");
    }
}
