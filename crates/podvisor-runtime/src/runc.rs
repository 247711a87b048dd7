//! Driving an OCI runtime binary (runc by default): create, start, signal, delete, exec.
//!
//! The node creates containers through a [`crate::monitor`], which outlives it. [`Runc::create`]
//! attaches a container to this process instead: its init is reparented here (a child
//! subreaper), its exit awaited through a pidfd registered with the async reactor, and its
//! stdout and stderr are pipes this process reads.

use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use rustix::process::{Pid, PidfdFlags, WaitId, WaitIdOptions};
use tokio::io::unix::AsyncFd;
use tokio::process::{ChildStderr, ChildStdout, Command};

/// How to install the OCI runtime `binary` names: Debian's package for runc and crun, crates.io
/// for youki, either Debian package for anything else.
pub fn install_hint(binary: &Path) -> &'static str {
    match binary.file_name().and_then(|n| n.to_str()) {
        Some("runc") => "Debian: apt-get install runc",
        Some("crun") => "Debian: apt-get install crun",
        Some("youki") => "from crates.io: cargo install youki --locked --features v1,v2,seccomp",
        _ => "Debian: apt-get install runc or crun",
    }
}

/// Errors from the OCI runtime.
#[derive(Debug, thiserror::Error)]
pub enum RuncError {
    /// The runtime binary could not be run.
    #[error("cannot run {binary}: {error} ({})", install_hint(binary))]
    Spawn {
        /// The binary.
        binary: PathBuf,
        /// Why.
        error: std::io::Error,
    },
    /// The runtime ran and failed.
    #[error("{binary} {verb} {id}: {message}")]
    Failed {
        /// The binary.
        binary: PathBuf,
        /// The subcommand.
        verb: &'static str,
        /// The container.
        id: String,
        /// Its error output.
        message: String,
    },
    /// Waiting for the container failed.
    #[error("waiting for container {id}: {error}")]
    Wait {
        /// The container.
        id: String,
        /// Why.
        error: std::io::Error,
    },
}

/// A created container: its init's pid, an exit handle, and its output pipes.
pub struct Created {
    /// The init process.
    pub pid: i32,
    /// Resolves when the init exits.
    pub exit: ExitWatch,
    /// The container's stdout.
    pub stdout: Option<ChildStdout>,
    /// The container's stderr.
    pub stderr: Option<ChildStderr>,
}

/// Waits for a container init to exit, through a pidfd.
pub struct ExitWatch {
    id: String,
    fd: AsyncFd<OwnedFd>,
}

impl ExitWatch {
    /// The exit code: the status, or 128 + the signal that killed it.
    pub async fn wait(self) -> Result<i32, RuncError> {
        let err = |error| RuncError::Wait { id: self.id.clone(), error };
        loop {
            let mut guard = self.fd.readable().await.map_err(err)?;
            match rustix::process::waitid(
                WaitId::PidFd(self.fd.get_ref().as_fd()),
                WaitIdOptions::EXITED | WaitIdOptions::NOHANG,
            ) {
                Ok(Some(status)) => {
                    if let Some(code) = status.exit_status() {
                        return Ok(code);
                    }
                    if let Some(sig) = status.terminating_signal() {
                        return Ok(128 + sig);
                    }
                    return Ok(255);
                }
                Ok(None) => guard.clear_ready(),
                Err(e) => return Err(err(e.into())),
            }
        }
    }
}

/// Makes this process the reaper of orphaned descendants, so container inits (whose `runc`
/// parent exits after `create`) become its children and their exit status reaches it.
pub fn become_subreaper() -> std::io::Result<()> {
    rustix::process::set_child_subreaper(Pid::from_raw(1)).map_err(Into::into)
}

/// An OCI runtime binary.
#[derive(Debug, Clone)]
pub struct Runc {
    binary: PathBuf,
    root: PathBuf,
}

impl Runc {
    /// The runtime `binary`, keeping its state under `root`.
    pub fn new(binary: impl Into<PathBuf>, root: impl Into<PathBuf>) -> Self {
        Runc { binary: binary.into(), root: root.into() }
    }

    /// The runtime binary.
    pub fn binary(&self) -> &Path {
        &self.binary
    }

    /// The directory the runtime keeps its state in (`--root`).
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn command(&self) -> Command {
        let mut c = Command::new(&self.binary);
        c.arg("--root").arg(&self.root);
        c.kill_on_drop(false);
        c
    }

    async fn run(&self, verb: &'static str, id: &str, args: &[&str]) -> Result<(), RuncError> {
        let out = self
            .command()
            .arg(verb)
            .args(args)
            .arg(id)
            .stdin(Stdio::null())
            .output()
            .await
            .map_err(|error| RuncError::Spawn { binary: self.binary.clone(), error })?;
        if out.status.success() {
            return Ok(());
        }
        Err(RuncError::Failed { binary: self.binary.clone(), verb, id: id.to_string(), message: cut(&out.stderr) })
    }

    /// `create`: the container exists and waits to be started. Requires [`become_subreaper`].
    pub async fn create(&self, id: &str, bundle: &Path) -> Result<Created, RuncError> {
        let pid_file = bundle.join("init.pid");
        let mut child = self
            .command()
            .arg("create")
            .arg("--bundle")
            .arg(bundle)
            .arg("--pid-file")
            .arg(&pid_file)
            .arg(id)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|error| RuncError::Spawn { binary: self.binary.clone(), error })?;
        // The container keeps these pipes as its stdout and stderr; runc's own errors come on
        // stderr too, so they are read from it only if create fails.
        let stdout = child.stdout.take();
        let mut stderr = child.stderr.take();
        let status = child.wait().await.map_err(|error| RuncError::Spawn { binary: self.binary.clone(), error })?;
        let failed =
            |message: String| RuncError::Failed { binary: self.binary.clone(), verb: "create", id: id.into(), message };
        if !status.success() {
            let mut message = String::new();
            if let Some(e) = stderr.as_mut() {
                use tokio::io::AsyncReadExt;
                let _ = tokio::time::timeout(Duration::from_secs(1), e.read_to_string(&mut message)).await;
            }
            return Err(failed(message.trim().to_string()));
        }
        let pid: i32 = std::fs::read_to_string(&pid_file)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .ok_or_else(|| failed(format!("no pid in {}", pid_file.display())))?;
        let raw = Pid::from_raw(pid).ok_or_else(|| failed(format!("bad pid {pid}")))?;
        let fd = rustix::process::pidfd_open(raw, PidfdFlags::empty())
            .map_err(|e| RuncError::Wait { id: id.to_string(), error: e.into() })?;
        // SAFETY: the pidfd is an `OwnedFd` moved into the `AsyncFd`, so it stays open and
        // refers to the same process for as long as the `AsyncFd` lives.
        let fd = unsafe { AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE) }
            .map_err(|e| RuncError::Wait { id: id.to_string(), error: e.into() })?;
        Ok(Created { pid, exit: ExitWatch { id: id.to_string(), fd }, stdout, stderr })
    }

    /// `start`: runs the created container's process.
    pub async fn start(&self, id: &str) -> Result<(), RuncError> {
        self.run("start", id, &[]).await
    }

    /// `kill`: sends a signal (`TERM`, `KILL`, …) to the container's init.
    pub async fn kill(&self, id: &str, signal: &str) -> Result<(), RuncError> {
        let out = self.command().arg("kill").arg(id).arg(signal).stdin(Stdio::null()).output().await;
        match out {
            Ok(o) if o.status.success() => Ok(()),
            // An already-stopped container is not an error (R42 step 4).
            Ok(o) if String::from_utf8_lossy(&o.stderr).contains("not running") => Ok(()),
            Ok(o) => Err(RuncError::Failed {
                binary: self.binary.clone(),
                verb: "kill",
                id: id.into(),
                message: cut(&o.stderr),
            }),
            Err(error) => Err(RuncError::Spawn { binary: self.binary.clone(), error }),
        }
    }

    /// `state`: the container's status (`created`, `running`, `stopped`), if the runtime
    /// knows it. Blocks for the runtime's answer.
    pub fn state(&self, id: &str) -> Option<String> {
        let out = std::process::Command::new(&self.binary)
            .arg("--root")
            .arg(&self.root)
            .args(["state", id])
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .output()
            .ok()?;
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        v.get("status")?.as_str().map(str::to_string)
    }

    /// `list`: the IDs of the containers this runtime root holds.
    pub async fn list(&self) -> Result<Vec<String>, RuncError> {
        let out = self
            .command()
            .args(["list", "-q"])
            .stdin(Stdio::null())
            .output()
            .await
            .map_err(|error| RuncError::Spawn { binary: self.binary.clone(), error })?;
        if !out.status.success() {
            return Err(RuncError::Failed {
                binary: self.binary.clone(),
                verb: "list",
                id: String::new(),
                message: cut(&out.stderr),
            });
        }
        Ok(String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).filter(|l| !l.is_empty()).collect())
    }

    /// `exec` of `argv` in container `id`, its standard streams for the caller to set: what an
    /// interactive exec (`kubectl exec`) runs. The process's host PID is written to `pid_file`:
    /// killing the runtime client alone leaves the process running in the container.
    pub fn exec_command(&self, id: &str, argv: &[String], pid_file: &Path) -> Command {
        let mut c = self.command();
        c.arg("exec").arg("--pid-file").arg(pid_file).arg(id).args(argv);
        c.kill_on_drop(true);
        c
    }

    /// `exec --tty` of `argv` in container `id`, in the foreground: the runtime gives the process
    /// a terminal of its own and copies between it and the terminal on the runtime's own
    /// standard streams (see [`crate::pty::attach`]); its exit code is the process's.
    pub fn exec_tty_command(&self, id: &str, argv: &[String], pid_file: &Path) -> Command {
        let mut c = self.command();
        c.arg("exec").arg("--tty").arg("--pid-file").arg(pid_file).arg(id).args(argv);
        c.kill_on_drop(true);
        c
    }

    /// `delete --force`: removes the container and its cgroup.
    pub async fn delete(&self, id: &str) -> Result<(), RuncError> {
        self.run("delete", id, &["--force"]).await
    }

    /// `delete --force` for a clean-up: a container the runtime does not know is already gone,
    /// and not an error. runc says `does not exist`; crun, when another delete (the container's
    /// monitor's) removed its state first, that the state directory is missing.
    ///
    /// Two deletes of one container may run at once (the container's own end and its pod's
    /// clean-up): the one that finds the state half removed (crun: `error loading
    /// …/config.json`) is no failure once the state is gone, and is tried once more while it
    /// is not.
    pub async fn delete_if_present(&self, id: &str) -> Result<(), RuncError> {
        let mut tries = 0;
        loop {
            match self.delete(id).await {
                Err(RuncError::Failed { message, .. })
                    if message.contains("does not exist")
                        || message.contains("not found")
                        || (message.contains(id) && message.contains("No such file or directory")) =>
                {
                    return Ok(());
                }
                Err(_) if !self.root.join(id).exists() => return Ok(()),
                Err(e) if tries > 0 => return Err(e),
                Err(_) => {
                    tries += 1;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Ok(()) => return Ok(()),
            }
        }
    }

    /// `exec`: runs `argv` in the container; returns its exit code and combined output, or
    /// `None` when it did not finish within `timeout`. A process past its timeout is killed
    /// inside the container (not just the runtime client), so nothing is left behind.
    pub async fn exec(&self, id: &str, argv: &[String], timeout: Duration) -> Result<Option<(i32, String)>, RuncError> {
        let spawn_err = |error| RuncError::Spawn { binary: self.binary.clone(), error };
        let pid_file = std::env::temp_dir().join(format!("podvisor-exec-{}-{}.pid", std::process::id(), next_exec()));
        let mut child = self
            .command()
            .arg("exec")
            .arg("--pid-file")
            .arg(&pid_file)
            .arg(id)
            .args(argv)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(spawn_err)?;
        let (mut out, mut err) = (child.stdout.take(), child.stderr.take());
        let collect = async {
            use tokio::io::AsyncReadExt;
            let (mut a, mut b) = (Vec::new(), Vec::new());
            if let Some(o) = out.as_mut() {
                let _ = o.read_to_end(&mut a).await;
            }
            if let Some(e) = err.as_mut() {
                let _ = e.read_to_end(&mut b).await;
            }
            a.extend_from_slice(&b);
            a
        };
        let result = tokio::time::timeout(timeout, async { (collect.await, child.wait().await) }).await;
        let outcome = match result {
            Ok((output, Ok(status))) => {
                Ok(Some((status.code().unwrap_or(255), String::from_utf8_lossy(&output).to_string())))
            }
            Ok((_, Err(error))) => Err(spawn_err(error)),
            Err(_) => {
                let pid = std::fs::read_to_string(&pid_file).ok().and_then(|s| s.trim().parse::<i32>().ok());
                if let Some(pid) = pid.and_then(Pid::from_raw) {
                    let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
                }
                // runc exec reaps the process it ran, and must: a zombie it left to this
                // process (the subreaper) would keep the container's init from ever exiting.
                // But it also waits for whatever still holds the output (a backgrounded child),
                // so after a moment it is ended itself: the timeout stays the timeout.
                if tokio::time::timeout(Duration::from_millis(500), child.wait()).await.is_err() {
                    let _ = child.start_kill();
                    let _ = tokio::time::timeout(Duration::from_secs(5), child.wait()).await;
                }
                Ok(None)
            }
        };
        let _ = std::fs::remove_file(&pid_file);
        outcome
    }
}

/// The most of a runtime's error output put in an error (and so in an event).
const MAX_MESSAGE: usize = 16 * 1024;

/// A runtime's error output as a message: trimmed, cut to [`MAX_MESSAGE`] bytes with a note of
/// how much more there was.
fn cut(output: &[u8]) -> String {
    let text = String::from_utf8_lossy(output);
    let text = text.trim();
    if text.len() <= MAX_MESSAGE {
        return text.to_string();
    }
    let mut end = MAX_MESSAGE;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{} … ({} more bytes)", &text[..end], text.len() - end)
}

fn next_exec() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}
