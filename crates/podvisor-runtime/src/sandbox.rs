//! The pod sandbox: the network, UTS and IPC namespaces the containers of one pod share, kept
//! alive by bind mounts (no pause process), plus the pod's `/etc/hosts`, `/etc/hostname` and
//! `/etc/resolv.conf`.
//!
//! The namespaces are made by util-linux `unshare`, which binds each one to a file; loopback is
//! brought up and the hostname set to the pod name inside them. Every pod has its own
//! localhost; on the pod network (see [`crate::network`]) it also has an address the other pods
//! and the host reach. A pod on the host's network makes only its IPC namespace.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use rustix::mount::{UnmountFlags, unmount};

use crate::network::{self, Attachment, NetworkError, PodNetwork};

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
    /// `unshare` failed or could not run.
    #[error("creating the pod's namespaces: {0} (podvisor needs root and util-linux's unshare)")]
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

/// Whether `path` is a bound namespace.
pub(crate) fn is_namespace(path: &Path) -> bool {
    /// `NSFS_MAGIC`: the file system of a bound namespace.
    const NSFS: i64 = 0x6e73_6673;
    // `f_type`'s integer type differs between architectures.
    #[allow(clippy::unnecessary_cast)]
    rustix::fs::statfs(path).is_ok_and(|s| s.f_type as i64 == NSFS)
}

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

    /// Creates the namespaces and files for a pod whose hostname is `hostname`, networked as
    /// `net` says. Returns the pod's address on the pod network, if it got one. On failure,
    /// what was made is removed again.
    pub async fn create(
        &self,
        hostname: &str,
        net: Networking<'_>,
    ) -> Result<Option<std::net::Ipv4Addr>, SandboxError> {
        let made = self.make(hostname, net).await;
        if made.is_err() {
            let me = self.clone();
            let _ = tokio::task::spawn_blocking(move || me.remove()).await;
        }
        made
    }

    async fn make(&self, hostname: &str, net: Networking<'_>) -> Result<Option<std::net::Ipv4Addr>, SandboxError> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |error| SandboxError::Io { path, error }
        };
        let kinds: &[&str] = if matches!(net, Networking::Host) { &["ipc"] } else { &NAMESPACES };
        let ns = self.dir.join("ns");
        fs::create_dir_all(&ns).map_err(io(&ns))?;
        for kind in kinds {
            let f = self.namespace(kind);
            fs::write(&f, b"").map_err(io(&f))?;
        }
        let mut cmd = tokio::process::Command::new("unshare");
        for kind in kinds {
            cmd.arg(format!("--{kind}={}", self.namespace(kind).display()));
        }
        let script = if matches!(net, Networking::Host) { "true" } else { "hostname \"$1\" && ip link set lo up" };
        let out = cmd
            .args(["sh", "-c", script, "sh", hostname])
            .stdin(Stdio::null())
            .output()
            .await
            .map_err(|e| SandboxError::Namespaces(e.to_string()))?;
        if !out.status.success() {
            return Err(SandboxError::Namespaces(String::from_utf8_lossy(&out.stderr).trim().to_string()));
        }
        let ip = match net {
            Networking::Pod(network) => {
                let a = network.attach(&self.namespace("net")).await?;
                let f = self.dir.join(ATTACHMENT);
                let written = serde_json::to_vec(&a).map_err(std::io::Error::other).and_then(|b| fs::write(&f, b));
                if let Err(e) = written {
                    let ns = self.namespace("net");
                    let _ = tokio::task::spawn_blocking(move || network::detach(&a, &ns)).await;
                    return Err(io(&f)(e));
                }
                Some(a.ip)
            }
            Networking::Host | Networking::Loopback => None,
        };
        let etc = self.dir.join("etc");
        fs::create_dir_all(&etc).map_err(io(&etc))?;
        let resolv = fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
        for (name, text) in
            [("hosts", hosts(hostname, net, ip)), ("hostname", format!("{hostname}\n")), ("resolv.conf", resolv)]
        {
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

/// The pod's `/etc/hosts`, as the kubelet writes it: the host's own on the host network, else
/// loopback and the pod's address (or, without one, a loopback address) for its hostname.
fn hosts(hostname: &str, net: Networking<'_>, ip: Option<std::net::Ipv4Addr>) -> String {
    if matches!(net, Networking::Host) {
        let host = fs::read_to_string("/etc/hosts").unwrap_or_default();
        return format!("# Kubernetes-managed hosts file (host network).\n{host}");
    }
    let own = ip.map_or_else(|| "127.0.1.1".to_string(), |ip| ip.to_string());
    format!(
        "# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n\
         fe00::0\tip6-localnet\nfe00::0\tip6-mcastprefix\nfe00::1\tip6-allnodes\nfe00::2\tip6-allrouters\n\
         {own}\t{hostname}\n"
    )
}
