//! The pod sandbox: the network, UTS and IPC namespaces the containers of one pod share, kept
//! alive by bind mounts (no pause process), plus the pod's `/etc/hosts`, `/etc/hostname` and
//! `/etc/resolv.conf`.
//!
//! The namespaces are made by util-linux `unshare`, which binds each one to a file; loopback is
//! brought up and the hostname set to the pod name inside them. Every pod has its own
//! localhost; pods cannot reach each other's loopback.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use rustix::mount::{UnmountFlags, unmount};

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
}

/// A pod's sandbox on disk: `<dir>/ns/{net,uts,ipc}` and `<dir>/etc/*`.
#[derive(Debug, Clone)]
pub struct Sandbox {
    dir: PathBuf,
}

const NAMESPACES: [&str; 3] = ["net", "uts", "ipc"];

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

    /// Whether the sandbox's namespaces are still held: it outlived the node process that made
    /// it (a node restart, not a reboot).
    pub fn is_alive(&self) -> bool {
        /// `NSFS_MAGIC`: the file system of a bound namespace.
        const NSFS: i64 = 0x6e73_6673;
        // `f_type`'s integer type differs between architectures.
        #[allow(clippy::unnecessary_cast)]
        NAMESPACES.iter().all(|kind| rustix::fs::statfs(self.namespace(kind)).is_ok_and(|s| s.f_type as i64 == NSFS))
    }

    /// Creates the namespaces and files for a pod whose hostname is `hostname`.
    pub async fn create(&self, hostname: &str) -> Result<(), SandboxError> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |error| SandboxError::Io { path, error }
        };
        let ns = self.dir.join("ns");
        fs::create_dir_all(&ns).map_err(io(&ns))?;
        for kind in NAMESPACES {
            let f = self.namespace(kind);
            fs::write(&f, b"").map_err(io(&f))?;
        }
        let etc = self.dir.join("etc");
        fs::create_dir_all(&etc).map_err(io(&etc))?;
        let hosts = format!(
            "# Kubernetes-managed hosts file (podvisor).\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\t{hostname}\n"
        );
        let resolv = fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
        for (name, text) in [("hosts", hosts), ("hostname", format!("{hostname}\n")), ("resolv.conf", resolv)] {
            let f = etc.join(name);
            fs::write(&f, text).map_err(io(&f))?;
        }
        let mut cmd = tokio::process::Command::new("unshare");
        for kind in NAMESPACES {
            cmd.arg(format!("--{kind}={}", self.namespace(kind).display()));
        }
        let out = cmd
            .args(["sh", "-c", "hostname \"$1\" && ip link set lo up", "sh", hostname])
            .stdin(Stdio::null())
            .output()
            .await
            .map_err(|e| SandboxError::Namespaces(e.to_string()))?;
        if !out.status.success() {
            let _ = self.remove();
            return Err(SandboxError::Namespaces(String::from_utf8_lossy(&out.stderr).trim().to_string()));
        }
        Ok(())
    }

    /// Releases the namespaces and deletes the sandbox's files. Safe to call twice, and on a
    /// sandbox left behind by an earlier run.
    pub fn remove(&self) -> Result<(), SandboxError> {
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
