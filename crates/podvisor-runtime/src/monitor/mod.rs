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
use std::fs::File;
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
    // The output: the terminal's (all of it stdout), or the two pipes.
    let mut sources: Vec<Source> = Vec::new();
    match &terminal {
        Some(t) => {
            let reader = t.try_clone().map_err(|e| format!("the container's terminal: {e}"))?;
            sources.push(Source::new(File::from(reader), Stream::Stdout));
            // Its stdout and stderr pipes carry nothing of the container's: closed.
            drop((out_r, err_r));
        }
        None => {
            sources.push(Source::new(File::from(OwnedFd::from(out_r)), Stream::Stdout));
            sources.push(Source::new(File::from(OwnedFd::from(err_r)), Stream::Stderr));
        }
    }
    let input = match (&terminal, stdin_w) {
        (Some(t), _) if stdio.stdin => t.try_clone().ok().map(File::from),
        (None, Some(w)) => Some(File::from(OwnedFd::from(w))),
        _ => None,
    };
    let held = Held {
        bundle: bundle.to_path_buf(),
        writer,
        hub: attach::Hub::default(),
        sources,
        control: attach::Control::open(bundle).ok(),
        stdin: if stdio.stdin { attach::StdinFrames::open(bundle).ok() } else { None },
        input,
        pending: Vec::new(),
        close_input: false,
        terminal,
    };
    let children = Children::watch().map_err(|e| format!("signalfd: {e}"))?;
    let _ = writeln!(report, "created {init}");
    let _ = report.flush();
    // The node reads up to the report; from here on the monitor answers to nobody.
    if let Ok(null) = std::fs::OpenOptions::new().write(true).open("/dev/null") {
        let _ = rustix::stdio::dup2_stdout(&null);
    }
    let (code, at) = held.run(init, children);
    let tmp = bundle.join("exit.tmp");
    std::fs::write(&tmp, format!("{code} {at}\n")).map_err(|e| format!("{}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, bundle.join(EXIT_FILE)).map_err(|e| format!("{}: {e}", tmp.display()))?;
    Ok(())
}

/// One output stream of the container being copied into its log.
struct Source {
    file: File,
    stream: Stream,
    lines: crate::logs::Lines,
    open: bool,
}

impl Source {
    fn new(file: File, stream: Stream) -> Source {
        let _ = rustix::io::ioctl_fionbio(&file, true);
        Source { file, stream, lines: Default::default(), open: true }
    }
}

/// The most read from one stream in one turn of the loop, so that no stream starves the others.
const TURN: usize = 64 * 1024;

/// The most of the container's input kept while it does not read it; no more is taken from the
/// stdin pipe meanwhile (its writer waits).
const MAX_PENDING_INPUT: usize = 64 * 1024;

/// Everything the monitor holds of a running container, served by one thread: its output into
/// the log and to attached clients, the control and stdin pipes, its input, and its end.
struct Held {
    bundle: PathBuf,
    writer: Writer,
    hub: attach::Hub,
    sources: Vec<Source>,
    control: Option<attach::Control>,
    stdin: Option<attach::StdinFrames>,
    input: Option<File>,
    pending: Vec<u8>,
    close_input: bool,
    terminal: Option<OwnedFd>,
}

impl Held {
    /// Serves the container until its init has exited and its output is drained (or
    /// [`DRAIN`] has passed since); its exit code and when it ended.
    fn run(mut self, init: i32, children: Children) -> (i32, Timestamp) {
        use rustix::event::{PollFd, PollFlags, poll};
        let mut ended: Option<(i32, Timestamp, std::time::Instant)> =
            children.reap(init).map(|c| (c, Timestamp::now(), std::time::Instant::now() + DRAIN));
        if let Some(input) = &self.input {
            let _ = rustix::io::ioctl_fionbio(input, true);
        }
        loop {
            let open = self.sources.iter().any(|s| s.open);
            if let Some((code, at, deadline)) = ended
                && (!open || std::time::Instant::now() >= deadline)
            {
                self.finish();
                return (code, at);
            }
            let want_stdin = self.input.is_some() && self.pending.len() < MAX_PENDING_INPUT && !self.close_input;
            let (mut fds, mut kinds) = (Vec::new(), Vec::new());
            fds.push(PollFd::new(&children.fd, PollFlags::IN));
            kinds.push(Ready::Children);
            for (i, s) in self.sources.iter().enumerate().filter(|(_, s)| s.open) {
                fds.push(PollFd::new(&s.file, PollFlags::IN));
                kinds.push(Ready::Output(i));
            }
            if let Some(c) = &self.control {
                fds.push(PollFd::new(&c.pipe, PollFlags::IN));
                kinds.push(Ready::Control);
            }
            if let Some(f) = self.stdin.as_ref().filter(|_| want_stdin) {
                fds.push(PollFd::new(&f.pipe, PollFlags::IN));
                kinds.push(Ready::Stdin);
            }
            if let Some(i) = self.input.as_ref().filter(|_| !self.pending.is_empty()) {
                fds.push(PollFd::new(i, PollFlags::OUT));
                kinds.push(Ready::Input);
            }
            let left = ended.map(|(_, _, d)| d.saturating_duration_since(std::time::Instant::now()));
            let timeout = left
                .map(|d| rustix::event::Timespec { tv_sec: d.as_secs() as i64, tv_nsec: i64::from(d.subsec_nanos()) });
            match poll(&mut fds, timeout.as_ref()) {
                Ok(_) => {}
                Err(rustix::io::Errno::INTR) => continue,
                Err(_) => {
                    // Polling itself failed: wait for the end plainly, keep what came.
                    let code = ended.map(|e| (e.0, e.1)).unwrap_or_else(|| (wait_for(init), Timestamp::now()));
                    self.finish();
                    return code;
                }
            }
            let ready: Vec<Ready> =
                fds.iter().zip(&kinds).filter(|(f, _)| !f.revents().is_empty()).map(|(_, k)| *k).collect();
            drop(fds);
            for k in ready {
                match k {
                    Ready::Children => {
                        children.drain();
                        if ended.is_none()
                            && let Some(code) = children.reap(init)
                        {
                            ended = Some((code, Timestamp::now(), std::time::Instant::now() + DRAIN));
                        }
                    }
                    Ready::Output(i) => self.copy(i),
                    Ready::Control => {
                        if let Some(c) = &mut self.control {
                            c.read(&self.bundle, &self.hub, self.terminal.as_ref());
                        }
                    }
                    Ready::Stdin => self.take_input(),
                    Ready::Input => self.give_input(),
                }
            }
        }
    }

    /// Copies what stream `i` has into the log and to the attached clients.
    fn copy(&mut self, i: usize) {
        let mut chunk = [0u8; 8192];
        let mut taken = 0;
        let s = &mut self.sources[i];
        while taken < TURN {
            match s.file.read(&mut chunk) {
                // The end, or (a terminal whose other side closed) EIO.
                Ok(0) => {
                    s.open = false;
                    s.lines.finish(&self.writer, s.stream);
                    return;
                }
                Ok(n) => {
                    self.hub.send(s.stream, &chunk[..n]);
                    s.lines.feed(&self.writer, s.stream, &chunk[..n]);
                    taken += n;
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
                Err(_) => {
                    s.open = false;
                    s.lines.finish(&self.writer, s.stream);
                    return;
                }
            }
        }
    }

    /// Takes the frames the stdin pipe has for the container's input.
    fn take_input(&mut self) {
        let Some(f) = &mut self.stdin else { return };
        for frame in f.read() {
            match frame {
                attach::Frame::Data(d) => self.pending.extend_from_slice(&d),
                attach::Frame::End => self.close_input = true,
            }
        }
        self.give_input();
    }

    /// Writes what is pending to the container's input, as far as it takes it; closes the
    /// input once it has had all of it and its end came, or when it stops reading for good.
    fn give_input(&mut self) {
        let Some(input) = &mut self.input else {
            self.pending.clear();
            return;
        };
        while !self.pending.is_empty() {
            match input.write(&self.pending) {
                Ok(n) => {
                    self.pending.drain(..n);
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
                Err(_) => {
                    self.input = None;
                    self.pending.clear();
                    return;
                }
            }
        }
        if self.close_input {
            self.input = None;
        }
    }

    /// The container is done: what the streams left becomes the last records; clients end.
    fn finish(&mut self) {
        for s in self.sources.iter_mut().filter(|s| s.open) {
            s.open = false;
            s.lines.finish(&self.writer, s.stream);
        }
        self.hub.close();
    }
}

/// What the poll loop found ready.
#[derive(Debug, Clone, Copy)]
enum Ready {
    Children,
    Output(usize),
    Control,
    Stdin,
    Input,
}

/// The children of the monitor (the container's init, and orphans reparented to it), watched
/// through a signalfd for SIGCHLD, blocked for this thread.
struct Children {
    fd: OwnedFd,
}

impl Children {
    fn watch() -> std::io::Result<Children> {
        // SAFETY: a signal set made by `sigemptyset` and `sigaddset` is valid for
        // `pthread_sigmask` and `signalfd`; the descriptor `signalfd` returns is ours alone.
        unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, libc::SIGCHLD);
            if libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            let fd = libc::signalfd(-1, &set, libc::SFD_NONBLOCK | libc::SFD_CLOEXEC);
            if fd < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(Children { fd: std::os::fd::FromRawFd::from_raw_fd(fd) })
        }
    }

    /// Empties the signalfd (signals of one kind merge: what matters is that one came).
    fn drain(&self) {
        let mut buf = [0u8; 128 * 8];
        while rustix::io::read(&self.fd, &mut buf).is_ok_and(|n| n > 0) {}
    }

    /// Reaps every child that has ended; the init's exit code (or 128 + the signal that killed
    /// it) if it is among them.
    fn reap(&self, init: i32) -> Option<i32> {
        let mut code = None;
        loop {
            match rustix::process::wait(rustix::process::WaitOptions::NOHANG) {
                Ok(Some((pid, status))) => {
                    if pid.as_raw_nonzero().get() == init {
                        code = Some(match (status.exit_status(), status.terminating_signal()) {
                            (Some(c), _) => c,
                            (None, Some(sig)) => 128 + sig,
                            (None, None) => 255,
                        });
                    }
                }
                Err(rustix::io::Errno::INTR) => continue,
                Ok(None) | Err(_) => return code,
            }
        }
    }
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
