//! The container monitor: one small process per container that holds what must outlive the node
//! process, so that a node process started again can take its containers over (R75), as the
//! kubelet finds its containers again in the container runtime.
//!
//! The monitor creates the container (`runc create`), becomes the parent of its init, writes the
//! container's stdout and stderr to its CRI log and, when the init exits, its exit status to the
//! file `exit` of the bundle. It runs in its own session, so a terminal's Ctrl-C reaches the
//! node, which stops its containers in order, and never the containers directly.
//!
//! A container that keeps its standard input open (`stdin: true`) gets it from the monitor, and
//! one with a terminal (`tty: true`) gets the terminal through the monitor, which holds its
//! master end; clients attach to either through [`attach`].
//!
//! - process side: [`main`], run as `podvisor monitor …` (or the `podvisor-monitor` binary);
//! - node side: [`Monitor::spawn`] starts one and waits until the container is created,
//!   [`Monitor::find`] finds one again after a restart, [`Monitor::exited`] resolves when it
//!   is gone, and [`ended`] reads how the container ended.

use std::ffi::OsString;
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::time::Duration;

use jiff::Timestamp;
use rustix::process::{Pid, PidfdFlags};
use tokio::io::unix::AsyncFd;

use crate::logs::{Stream, Writer};
use crate::runc::{Runc, RuncError};

pub mod attach;

/// How a container's standard streams are set up.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stdio {
    /// Its standard input stays open, fed by attached clients (`stdin: true`).
    pub stdin: bool,
    /// It runs on a terminal whose master end the monitor holds (`tty: true`).
    pub tty: bool,
}

/// How to start a monitor process: a program and the arguments before the monitor's own.
#[derive(Debug, Clone)]
pub struct MonitorCommand {
    /// The program (`podvisor`, or the `podvisor-monitor` binary).
    pub program: PathBuf,
    /// Leading arguments (`["monitor"]` for `podvisor monitor`).
    pub args: Vec<OsString>,
}

/// The file in the bundle holding the monitor's process ID.
const PID_FILE: &str = "monitor.pid";
/// The file in the bundle holding the container's end: `CODE FINISHED_AT`.
const EXIT_FILE: &str = "exit";
/// How long the output of an exited init may keep coming (from processes it left behind).
const DRAIN: Duration = Duration::from_secs(2);

/// How a container ended, as its monitor recorded it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ended {
    /// The exit code: the status, or 128 + the signal that killed it.
    pub code: i32,
    /// When the monitor saw it end.
    pub at: Timestamp,
}

/// The process ID of the monitor of container `id` whose bundle is `bundle`, if it still runs
/// (a recycled pid is some other process: the monitor's command line names its container).
pub fn running_pid(bundle: &Path, id: &str) -> Option<i32> {
    let pid: i32 = std::fs::read_to_string(bundle.join(PID_FILE)).ok()?.trim().parse().ok()?;
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    cmdline.split(|b| *b == 0).any(|arg| arg == id.as_bytes()).then_some(pid)
}

/// Reads the end the monitor recorded in `bundle`, if the container has ended.
pub fn ended(bundle: &Path) -> Option<Ended> {
    let text = std::fs::read_to_string(bundle.join(EXIT_FILE)).ok()?;
    let (code, at) = text.trim().split_once(' ')?;
    Some(Ended { code: code.parse().ok()?, at: at.parse().ok()? })
}

/// A monitor process, watched through a pidfd (it need not be this process's child).
pub struct Monitor {
    pid: i32,
    fd: AsyncFd<OwnedFd>,
    /// Set when this process started it: the child to reap once it has exited.
    child: Option<tokio::process::Child>,
}

impl std::fmt::Debug for Monitor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Monitor").field("pid", &self.pid).finish()
    }
}

impl Monitor {
    fn watch(pid: i32) -> std::io::Result<Monitor> {
        let raw = Pid::from_raw(pid).ok_or_else(|| std::io::Error::other(format!("bad pid {pid}")))?;
        let fd = rustix::process::pidfd_open(raw, PidfdFlags::empty())?;
        // SAFETY: the pidfd is an `OwnedFd` moved into the `AsyncFd`, so it stays open and
        // refers to the same process for as long as the `AsyncFd` lives.
        let fd = unsafe { AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE) }?;
        Ok(Monitor { pid, fd, child: None })
    }

    /// Starts a monitor that creates container `id` from `bundle` with `runc`, its output going
    /// to the CRI log `log` rotated as `rotation` says; returns once the container is created
    /// (not yet started).
    pub async fn spawn(
        command: &MonitorCommand,
        runc: &Runc,
        id: &str,
        bundle: &Path,
        log: &Path,
        rotation: crate::logs::Rotation,
        stdio: Stdio,
    ) -> Result<Monitor, RuncError> {
        let failed = |message: String| RuncError::Failed {
            binary: runc.binary().to_path_buf(),
            verb: "create",
            id: id.into(),
            message,
        };
        let mut child = tokio::process::Command::new(&command.program)
            .args(&command.args)
            .arg(runc.binary())
            .arg(runc.root())
            .arg(bundle)
            .arg(id)
            .arg(log)
            .arg(rotation.max_size.to_string())
            .arg(rotation.max_files.to_string())
            .arg(if stdio.stdin { "1" } else { "0" })
            .arg(if stdio.tty { "1" } else { "0" })
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(false)
            .spawn()
            .map_err(|error| RuncError::Spawn { binary: command.program.clone(), error })?;
        let pid = child.id().map(|p| p as i32);
        let mut report = String::new();
        if let Some(out) = child.stdout.take() {
            use tokio::io::AsyncBufReadExt;
            let _ = tokio::io::BufReader::new(out).read_line(&mut report).await;
        }
        let report = report.trim();
        if let Some(message) = report.strip_prefix("failed ") {
            let _ = child.wait().await;
            return Err(failed(message.to_string()));
        }
        if !report.starts_with("created") {
            let status = child.wait().await.ok();
            return Err(failed(format!("the container monitor ended without creating it ({status:?})")));
        }
        let pid = pid.ok_or_else(|| failed("the container monitor has no pid".into()))?;
        // The pidfd is opened while the child is unreaped, so it names this very process.
        let mut monitor = Monitor::watch(pid).map_err(|error| RuncError::Wait { id: id.into(), error })?;
        monitor.child = Some(child);
        Ok(monitor)
    }

    /// The monitor of container `id` whose bundle is `bundle`, if it still runs.
    pub fn find(bundle: &Path, id: &str) -> Option<Monitor> {
        Monitor::watch(running_pid(bundle, id)?).ok()
    }

    /// The monitor's process ID.
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// Resolves when the monitor has exited (the container ended, and its end is recorded in
    /// the bundle unless the monitor itself was killed).
    pub async fn exited(&mut self) {
        if let Ok(mut guard) = self.fd.readable().await {
            guard.retain_ready();
        }
        if let Some(child) = self.child.as_mut() {
            let _ = child.wait().await;
        }
    }
}

/// Why a monitor's arguments were refused.
#[derive(Debug, thiserror::Error)]
#[error("usage: monitor RUNTIME RUNTIME_ROOT BUNDLE ID LOG_FILE [LOG_MAX_SIZE LOG_MAX_FILES [STDIN TTY]]")]
pub struct Usage;

/// The monitor process: creates the container, reports `created PID` (or `failed MESSAGE`) on
/// its standard output and closes it, writes the container's output to the log, and records the
/// init's exit. Returns the process's exit code. `args` are the five (or seven, with the log's
/// rotation, or nine, with `1` or `0` for stdin and tty) after the program's own.
pub fn main(mut args: Vec<OsString>) -> i32 {
    let mut rotation = crate::logs::Rotation::default();
    let mut stdio = Stdio::default();
    if args.len() == 9 {
        let flag = |s: Option<OsString>| s.is_some_and(|s| s == "1");
        stdio.tty = flag(args.pop());
        stdio.stdin = flag(args.pop());
    }
    if args.len() == 7 {
        let number = |s: Option<OsString>| s.and_then(|s| s.into_string().ok()).and_then(|s| s.parse::<u64>().ok());
        let (files, size) = (number(args.pop()), number(args.pop()));
        match (size, files) {
            (Some(size), Some(files)) => {
                rotation =
                    crate::logs::Rotation { max_size: size, max_files: usize::try_from(files).unwrap_or(usize::MAX) }
            }
            _ => {
                eprintln!("{Usage}");
                return 2;
            }
        }
    }
    let [runtime, root, bundle, id, log] = match <[OsString; 5]>::try_from(args) {
        Ok(a) => a,
        Err(_) => {
            eprintln!("{Usage}");
            return 2;
        }
    };
    let (bundle, log) = (PathBuf::from(bundle), PathBuf::from(log));
    let mut report = std::io::stdout();
    let job = Job { runtime: &runtime, root: &root, bundle: &bundle, id: &id, log: &log, rotation, stdio };
    match run(job, &mut report) {
        Ok(()) => 0,
        Err(message) => {
            let _ = writeln!(report, "failed {}", message.replace('\n', " "));
            1
        }
    }
}

/// What a monitor process was asked to do.
struct Job<'a> {
    runtime: &'a OsString,
    root: &'a OsString,
    bundle: &'a Path,
    id: &'a OsString,
    log: &'a Path,
    rotation: crate::logs::Rotation,
    stdio: Stdio,
}

fn run(job: Job<'_>, report: &mut std::io::Stdout) -> Result<(), String> {
    let Job { runtime, root, bundle, id, log, rotation, stdio } = job;
    // Its own session: no terminal signal reaches it or, through it, the container. A stray
    // SIGTERM, SIGINT or SIGHUP (a service manager stopping the node) must not end it either:
    // the container would lose its output and its exit status. A handler, unlike ignoring the
    // signal, is not inherited by the container.
    let _ = rustix::process::setsid();
    ignore_stop_signals();
    rustix::process::set_child_subreaper(rustix::process::Pid::from_raw(std::process::id() as i32))
        .map_err(|e| format!("prctl(PR_SET_CHILD_SUBREAPER): {e}"))?;
    let pid_file = bundle.join(PID_FILE);
    std::fs::write(&pid_file, format!("{}\n", std::process::id()))
        .map_err(|e| format!("{}: {e}", pid_file.display()))?;
    attach::make_pipes(bundle, stdio.stdin).map_err(|e| format!("{}: {e}", bundle.display()))?;
    // The container's input: a pipe the monitor holds (stdin: true), or its terminal.
    let (stdin_r, stdin_w) = match stdio.stdin && !stdio.tty {
        true => std::io::pipe().map(|(r, w)| (Some(r), Some(w))).map_err(|e| format!("pipe: {e}"))?,
        false => (None, None),
    };
    let console =
        if stdio.tty { Some(console::Socket::new().map_err(|e| format!("console socket: {e}"))?) } else { None };
    let (out_r, out_w) = std::io::pipe().map_err(|e| format!("pipe: {e}"))?;
    let (err_r, err_w) = std::io::pipe().map_err(|e| format!("pipe: {e}"))?;
    let init_pid_file = bundle.join("init.pid");
    // Until create returns, the runtime's own messages come on the container's stderr pipe: they
    // are read meanwhile (a long one would fill the pipe and block the runtime) and kept up to a
    // bound. The container init holds the pipe too, so its end never comes: the reader stops
    // when told, not at the end of the pipe.
    // Closing `done_w` tells the reader that create has returned: it takes what is left and
    // stops at once (a timed poll would add its period to every container's start).
    let (done_r, done_w) = std::io::pipe().map_err(|e| format!("pipe: {e}"))?;
    let reader = std::thread::spawn(move || runtime_messages(err_r, done_r));
    let mut create = std::process::Command::new(runtime);
    create.arg("--root").arg(root).arg("create").arg("--bundle").arg(bundle).arg("--pid-file").arg(&init_pid_file);
    if let Some(c) = &console {
        create.arg("--console-socket").arg(c.path());
    }
    let status = create
        .arg(id)
        .stdin(stdin_r.map_or_else(std::process::Stdio::null, std::process::Stdio::from))
        .stdout(out_w)
        .stderr(err_w)
        .status();
    // The command holds the write ends it was given: the container's output ends only once
    // nothing but the container holds them.
    drop(create);
    drop(done_w);
    let (err_r, said) = reader.join().map_err(|_| "reading the runtime's messages failed".to_string())?;
    let status = status.map_err(|e| format!("cannot run {}: {e}", runtime.to_string_lossy()))?;
    let terminal = match console {
        Some(c) if status.success() => Some(c.receive().map_err(|e| format!("the container's terminal: {e}"))?),
        _ => None,
    };
    if !status.success() {
        // The container may exist all the same (a runtime that failed after making it): the
        // node removes it with `delete --force`.
        return Err(said.trim().to_string());
    }
    let init: i32 = std::fs::read_to_string(&init_pid_file)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .ok_or_else(|| format!("no pid in {}", init_pid_file.display()))?;
    let writer = Writer::open_rotated(log, rotation).map_err(|e| format!("{}: {e}", log.display()))?;
    let hub = std::sync::Arc::new(attach::Hub::default());
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    // The output: the terminal's (all of it stdout), or the two pipes.
    let mut sources: Vec<(Box<dyn Read + Send>, Stream)> = Vec::new();
    match &terminal {
        Some(t) => {
            let reader = t.try_clone().map_err(|e| format!("the container's terminal: {e}"))?;
            sources.push((Box::new(std::fs::File::from(reader)), Stream::Stdout));
            // Its stdout and stderr pipes carry nothing of the container's: closed.
            drop((out_r, err_r));
        }
        None => {
            sources.push((Box::new(out_r), Stream::Stdout));
            sources.push((Box::new(err_r), Stream::Stderr));
        }
    }
    let pumps = sources.len();
    for (pipe, stream) in sources {
        let (w, done, hub) = (writer.clone(), done_tx.clone(), hub.clone());
        std::thread::spawn(move || {
            w.pump_tee(pipe, stream, &|data| hub.send(stream, data));
            let _ = done.send(());
        });
    }
    drop(done_tx);
    let input: attach::Input = std::sync::Arc::new(std::sync::Mutex::new(match (&terminal, stdin_w) {
        (Some(t), _) if stdio.stdin => t.try_clone().ok().map(std::fs::File::from),
        (None, Some(w)) => Some(std::fs::File::from(OwnedFd::from(w))),
        _ => None,
    }));
    {
        let (bundle, hub) = (bundle.to_path_buf(), hub.clone());
        let terminal = terminal.as_ref().and_then(|t| t.try_clone().ok());
        std::thread::spawn(move || attach::serve_control(bundle, hub, terminal));
    }
    if stdio.stdin {
        let (bundle, input) = (bundle.to_path_buf(), input.clone());
        std::thread::spawn(move || attach::serve_stdin(bundle, input));
    }
    let _ = writeln!(report, "created {init}");
    let _ = report.flush();
    // The node reads up to the report; from here on the monitor answers to nobody.
    if let Ok(null) = std::fs::OpenOptions::new().write(true).open("/dev/null") {
        let _ = rustix::stdio::dup2_stdout(&null);
    }
    let code = wait_for(init);
    let at = Timestamp::now();
    let deadline = std::time::Instant::now() + DRAIN;
    for _ in 0..pumps {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if done_rx.recv_timeout(left).is_err() {
            break;
        }
    }
    hub.close();
    let tmp = bundle.join("exit.tmp");
    std::fs::write(&tmp, format!("{code} {at}\n")).map_err(|e| format!("{}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, bundle.join(EXIT_FILE)).map_err(|e| format!("{}: {e}", tmp.display()))?;
    Ok(())
}

/// The most of the runtime's own messages kept for an error.
const MAX_MESSAGE: usize = 16 * 1024;

/// Reads `pipe` until `done` ends (create has returned; what is already in the pipe is still
/// taken) or the pipe does; returns it and what came, cut to [`MAX_MESSAGE`] bytes with a note of
/// how much more there was.
fn runtime_messages(pipe: std::io::PipeReader, done: std::io::PipeReader) -> (std::io::PipeReader, String) {
    use rustix::event::{PollFd, PollFlags, poll};
    let mut kept = Vec::new();
    let mut more = 0usize;
    let mut buf = [0u8; 8192];
    let mut pipe = pipe;
    let mut finishing = false;
    loop {
        let (data, ended) = {
            let mut fds = [PollFd::new(&pipe, PollFlags::IN), PollFd::new(&done, PollFlags::IN)];
            // Once create has returned, only what is already there is read: no waiting.
            let zero = rustix::event::Timespec { tv_sec: 0, tv_nsec: 0 };
            let wait = if finishing { Some(&zero) } else { None };
            match poll(&mut fds, wait) {
                Ok(_) => (
                    fds[0].revents().intersects(PollFlags::IN | PollFlags::HUP),
                    fds[1].revents().intersects(PollFlags::IN | PollFlags::HUP),
                ),
                Err(rustix::io::Errno::INTR) => continue,
                Err(_) => break,
            }
        };
        if data {
            match pipe.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let room = MAX_MESSAGE.saturating_sub(kept.len());
                    kept.extend_from_slice(&buf[..n.min(room)]);
                    more += n.saturating_sub(room);
                }
            }
        } else if finishing {
            break;
        }
        finishing |= ended;
    }
    let mut text = String::from_utf8_lossy(&kept).into_owned();
    if more > 0 {
        text.push_str(&format!(" … ({more} more bytes)"));
    }
    (pipe, text)
}

extern "C" fn ignore(_: libc::c_int) {}

/// Catches SIGTERM, SIGINT and SIGHUP with a handler that does nothing (and restarts the call
/// it interrupted); an `exec` resets it, so runc and the container get the default again.
fn ignore_stop_signals() {
    for sig in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP] {
        // SAFETY: a zeroed `sigaction` with a handler that touches nothing is valid, and
        // installing it affects only this single-threaded process at its start.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = ignore as *const () as usize;
            action.sa_flags = libc::SA_RESTART;
            libc::sigemptyset(&mut action.sa_mask);
            libc::sigaction(sig, &action, std::ptr::null_mut());
        }
    }
}

/// Reaps children (the init, and any orphan reparented here) until the init has exited; its
/// exit code, or 128 + the signal that killed it.
fn wait_for(init: i32) -> i32 {
    loop {
        match rustix::process::wait(rustix::process::WaitOptions::empty()) {
            Ok(Some((pid, status))) if pid.as_raw_nonzero().get() == init => {
                if let Some(code) = status.exit_status() {
                    return code;
                }
                if let Some(sig) = status.terminating_signal() {
                    return 128 + sig;
                }
                return 255;
            }
            Ok(_) => continue,
            Err(rustix::io::Errno::INTR) => continue,
            Err(_) => return 255,
        }
    }
}

/// The socket the OCI runtime hands a container's terminal over (`--console-socket`), in a
/// private directory of its own under the temporary directory: a socket's path is short.
mod console {
    use std::os::fd::OwnedFd;
    use std::os::unix::net::UnixListener;
    use std::path::{Path, PathBuf};

    pub(super) struct Socket {
        dir: PathBuf,
        path: PathBuf,
        listener: UnixListener,
    }

    impl Drop for Socket {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    impl Socket {
        pub(super) fn new() -> std::io::Result<Socket> {
            use std::os::unix::fs::DirBuilderExt;
            let mut n = 0u32;
            let dir = loop {
                let dir = std::env::temp_dir().join(format!("podvisor-console-{}-{n}", std::process::id()));
                match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
                    Ok(()) => break dir,
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && n < 100 => n += 1,
                    Err(e) => return Err(e),
                }
            };
            let path = dir.join("s");
            let listener = UnixListener::bind(&path)?;
            Ok(Socket { dir, path, listener })
        }

        pub(super) fn path(&self) -> &Path {
            &self.path
        }

        /// The terminal's master end, as the runtime sent it.
        pub(super) fn receive(self) -> std::io::Result<OwnedFd> {
            use rustix::net::{RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags};
            self.listener.set_nonblocking(true)?;
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
            let (conn, _) = loop {
                match self.listener.accept() {
                    Ok(c) => break c,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock && std::time::Instant::now() < deadline => {
                        std::thread::sleep(std::time::Duration::from_millis(2));
                    }
                    Err(e) => return Err(e),
                }
            };
            conn.set_nonblocking(false)?;
            let mut space = [std::mem::MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
            let mut ancillary = RecvAncillaryBuffer::new(&mut space);
            let mut name = [0u8; 4096];
            rustix::net::recvmsg(
                &conn,
                &mut [std::io::IoSliceMut::new(&mut name)],
                &mut ancillary,
                RecvFlags::CMSG_CLOEXEC,
            )?;
            for message in ancillary.drain() {
                if let RecvAncillaryMessage::ScmRights(mut fds) = message
                    && let Some(fd) = fds.next()
                {
                    return Ok(fd);
                }
            }
            Err(std::io::Error::other("the runtime sent no terminal"))
        }
    }
}
