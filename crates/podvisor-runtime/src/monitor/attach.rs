//! Attaching to a container through its monitor (`kubectl attach`, `kubectl run -it`): the
//! container's output as it is written, and its standard input when it keeps one open
//! (`stdin: true`), through named pipes in its bundle, so that any node process (a new one
//! after a restart too) can attach.
//!
//! - `stdin`: frames for the container's standard input (or terminal): a kind byte (0 data,
//!   1 the end of the input, for `stdinOnce`), a 16-bit length and the bytes, each written
//!   whole, so that the end comes after the data sent before it;
//! - `control`: lines `attach NAME` (send the output to the pipe `attach/NAME` from now on) and
//!   `size COLUMNS ROWS` (the terminal's window);
//! - `attach/NAME`: frames of the output, each a stream byte (1 stdout, 2 stderr), a 16-bit
//!   length and the bytes; a first frame of stream 0 says the monitor is there. The pipe ends
//!   when the container does.
//!
//! The monitor side ([`Hub`], [`Control`], [`StdinFrames`]) is driven by the monitor's one
//! poll loop; the client side ([`attach`]) is async, in the node process.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use tokio::io::AsyncReadExt;

use crate::logs::Stream;

/// The bundle's pipe for the container's input.
const STDIN: &str = "stdin";
/// The bundle's pipe for commands to the monitor.
const CONTROL: &str = "control";
/// The bundle's directory of attached clients' pipes.
const ATTACHED: &str = "attach";
/// The most bytes in one frame: a frame is written whole (at most `PIPE_BUF`, 4096 bytes), so
/// frames from stdout and stderr never interleave.
const FRAME_DATA: usize = 4096 - 3;
/// How large an attached client's pipe is made: output may come faster than a client reads it
/// for this long before the client is dropped (the container never waits for a client).
const CLIENT_PIPE: i32 = 1 << 20;
/// The longest a client waits for the monitor to take its pipe.
const HANDSHAKE: Duration = Duration::from_secs(5);

fn mkfifo(path: &Path) -> std::io::Result<()> {
    match rustix::fs::mknodat(
        rustix::fs::CWD,
        path,
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o600),
        0,
    ) {
        Err(rustix::io::Errno::EXIST) => Ok(()),
        other => Ok(other?),
    }
}

/// Opens a FIFO for reading and writing: the open never waits, and reads never see an end.
fn open_held(path: &Path) -> std::io::Result<File> {
    std::fs::OpenOptions::new().read(true).write(true).open(path)
}

/// The clients attached to a container's output (monitor side).
#[derive(Default)]
pub(crate) struct Hub {
    clients: Mutex<Vec<File>>,
}

impl Hub {
    /// Sends `data` of `stream` to every client; a client whose pipe is full or gone is dropped.
    pub(crate) fn send(&self, stream: Stream, data: &[u8]) {
        let Ok(mut clients) = self.clients.lock() else { return };
        if clients.is_empty() {
            return;
        }
        let tag = match stream {
            Stream::Stdout => 1u8,
            Stream::Stderr => 2u8,
        };
        for piece in data.chunks(FRAME_DATA) {
            let frame = frame(tag, piece);
            clients.retain_mut(|c| c.write(&frame).is_ok_and(|n| n == frame.len()));
        }
    }

    /// Takes the client pipe `name` of the bundle's attach directory.
    fn add(&self, bundle: &Path, name: &str) {
        if name.is_empty() || name.contains('/') || name.starts_with('.') {
            return;
        }
        let path = bundle.join(ATTACHED).join(name);
        let opened = std::fs::OpenOptions::new().write(true).custom_flags_nonblocking().open(&path);
        let Ok(mut file) = opened else { return };
        let _ = rustix::pipe::fcntl_setpipe_size(file.as_fd(), CLIENT_PIPE as usize);
        if file.write_all(&frame(0, &[])).is_ok()
            && let Ok(mut clients) = self.clients.lock()
        {
            clients.push(file);
        }
    }

    /// Ends every client's output: the container is done.
    pub(crate) fn close(&self) {
        if let Ok(mut clients) = self.clients.lock() {
            clients.clear();
        }
    }
}

fn frame(tag: u8, data: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(3 + data.len());
    f.push(tag);
    f.extend_from_slice(&(data.len() as u16).to_be_bytes());
    f.extend_from_slice(data);
    f
}

/// Opening for writing without waiting for a reader (a client that went away is no reader).
trait NonBlocking {
    fn custom_flags_nonblocking(&mut self) -> &mut Self;
}

impl NonBlocking for std::fs::OpenOptions {
    fn custom_flags_nonblocking(&mut self) -> &mut Self {
        use std::os::unix::fs::OpenOptionsExt;
        self.custom_flags(libc::O_NONBLOCK)
    }
}

/// Makes the bundle's pipes (monitor side, before the container is created).
pub(crate) fn make_pipes(bundle: &Path, stdin: bool) -> std::io::Result<()> {
    mkfifo(&bundle.join(CONTROL))?;
    if stdin {
        mkfifo(&bundle.join(STDIN))?;
    }
    Ok(())
}

/// The most a control line may hold; a longer one is dropped.
const MAX_CONTROL_LINE: usize = 256;

/// The control pipe (monitor side): `attach NAME` and `size COLUMNS ROWS` lines.
pub(crate) struct Control {
    /// The pipe, held open for reading and writing (so that it never ends), not blocking.
    pub pipe: File,
    partial: Vec<u8>,
}

impl Control {
    /// Opens the bundle's control pipe.
    pub(crate) fn open(bundle: &Path) -> std::io::Result<Control> {
        let pipe = open_held(&bundle.join(CONTROL))?;
        rustix::io::ioctl_fionbio(&pipe, true)?;
        Ok(Control { pipe, partial: Vec::new() })
    }

    /// Reads what the pipe has and acts on each whole line: attaches clients to `hub`, resizes
    /// `terminal`.
    pub(crate) fn read(&mut self, bundle: &Path, hub: &Hub, terminal: Option<&OwnedFd>) {
        let mut buf = [0u8; 1024];
        loop {
            match self.pipe.read(&mut buf) {
                Ok(0) => return,
                Ok(n) => self.partial.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => break,
            }
        }
        while let Some(i) = self.partial.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.partial.drain(..=i).collect();
            let line = String::from_utf8_lossy(&line);
            let words: Vec<&str> = line.split_whitespace().collect();
            match words.as_slice() {
                ["attach", name] => hub.add(bundle, name),
                ["size", columns, rows] => {
                    if let (Some(t), Ok(c), Ok(r)) = (terminal, columns.parse::<u16>(), rows.parse::<u16>()) {
                        let size = rustix::termios::Winsize { ws_row: r, ws_col: c, ws_xpixel: 0, ws_ypixel: 0 };
                        let _ = rustix::termios::tcsetwinsize(t, size);
                    }
                }
                _ => {}
            }
        }
        if self.partial.len() > MAX_CONTROL_LINE {
            self.partial.clear();
        }
    }
}

/// The stdin pipe (monitor side): frames for the container's input.
pub(crate) struct StdinFrames {
    /// The pipe, held open for reading and writing, not blocking.
    pub pipe: File,
    partial: Vec<u8>,
}

/// What the stdin pipe brought.
pub(crate) enum Frame {
    /// Bytes for the container's input.
    Data(Vec<u8>),
    /// The end of the input (`stdinOnce`), or a frame this monitor does not know.
    End,
}

impl StdinFrames {
    /// Opens the bundle's stdin pipe.
    pub(crate) fn open(bundle: &Path) -> std::io::Result<StdinFrames> {
        let pipe = open_held(&bundle.join(STDIN))?;
        rustix::io::ioctl_fionbio(&pipe, true)?;
        Ok(StdinFrames { pipe, partial: Vec::new() })
    }

    /// Reads what the pipe has (a frame at most: the caller reads again once the container
    /// has taken it) and returns the whole frames.
    pub(crate) fn read(&mut self) -> Vec<Frame> {
        let mut buf = vec![0u8; 3 + FRAME_DATA];
        loop {
            match self.pipe.read(&mut buf) {
                Ok(n) => {
                    self.partial.extend_from_slice(&buf[..n]);
                    break;
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => break,
            }
        }
        let mut frames = Vec::new();
        while self.partial.len() >= 3 {
            let n = usize::from(u16::from_be_bytes([self.partial[1], self.partial[2]])).min(FRAME_DATA);
            if self.partial.len() < 3 + n {
                break;
            }
            let kind = self.partial[0];
            let data: Vec<u8> = self.partial.drain(..3 + n).skip(3).collect();
            frames.push(if kind == 0 { Frame::Data(data) } else { Frame::End });
        }
        frames
    }
}

/// A client attached to a container (node side).
pub struct Attached {
    output: tokio::net::unix::pipe::Receiver,
    stdin: Option<tokio::net::unix::pipe::Sender>,
    control: PathBuf,
    path: PathBuf,
}

impl Drop for Attached {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Why a client could not attach.
#[derive(Debug, thiserror::Error)]
pub enum AttachError {
    /// The container's monitor is gone (the container ended, or it is not one of this node's).
    #[error("the container's monitor is not running")]
    NoMonitor,
    /// Standard input was asked for, and the container keeps none open (`stdin: false`).
    #[error("the container does not keep its standard input open (stdin: true is needed)")]
    NoStdin,
    /// A pipe could not be made or opened.
    #[error("{0}: {1}")]
    Io(PathBuf, std::io::Error),
}

/// Attaches to the container whose bundle is `bundle`: its output from now on, and its input
/// if `stdin`.
pub async fn attach(bundle: &Path, stdin: bool) -> Result<Attached, AttachError> {
    let io = |p: &Path| {
        let p = p.to_path_buf();
        move |e| AttachError::Io(p, e)
    };
    let dir = bundle.join(ATTACHED);
    std::fs::create_dir_all(&dir).map_err(io(&dir))?;
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let name = format!("{}-{}", std::process::id(), NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
    let path = dir.join(&name);
    // A pipe of the same name left by an earlier node process (its PID used again) may still
    // be held by a monitor: never reused.
    match std::fs::remove_file(&path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(AttachError::Io(path, e)),
        _ => {}
    }
    mkfifo(&path).map_err(io(&path))?;
    let output = tokio::net::unix::pipe::OpenOptions::new().open_receiver(&path).map_err(io(&path))?;
    let control = bundle.join(CONTROL);
    let mut attached = Attached { output, stdin: None, control, path };
    // No monitor reads its control pipe: opening it for writing without waiting fails.
    attached.command(&format!("attach {name}")).map_err(|_| AttachError::NoMonitor)?;
    let deadline = tokio::time::Instant::now() + HANDSHAKE;
    let mut hello = [0u8; 3];
    loop {
        match attached.output.read(&mut hello[..1]).await {
            Ok(1) => break,
            // No writer yet: the monitor has not opened it.
            Ok(_) if tokio::time::Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(5)).await,
            Ok(_) => return Err(AttachError::NoMonitor),
            Err(e) => return Err(AttachError::Io(attached.path.clone(), e)),
        }
    }
    attached.output.read_exact(&mut hello[1..]).await.map_err(|e| AttachError::Io(attached.path.clone(), e))?;
    if stdin {
        let pipe = bundle.join(STDIN);
        let sender = tokio::net::unix::pipe::OpenOptions::new().open_sender(&pipe).map_err(|_| AttachError::NoStdin)?;
        attached.stdin = Some(sender);
    }
    Ok(attached)
}

impl Attached {
    fn command(&self, line: &str) -> std::io::Result<()> {
        let mut pipe = std::fs::OpenOptions::new().write(true).custom_flags_nonblocking().open(&self.control)?;
        pipe.write_all(format!("{line}\n").as_bytes())
    }

    /// The next piece of output and its stream; `None` once the container has ended.
    pub async fn next(&mut self) -> std::io::Result<Option<(Stream, Vec<u8>)>> {
        loop {
            let mut head = [0u8; 3];
            match self.output.read_exact(&mut head).await {
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
                Err(e) => return Err(e),
            }
            let mut data = vec![0u8; usize::from(u16::from_be_bytes([head[1], head[2]]))];
            self.output.read_exact(&mut data).await?;
            match head[0] {
                1 => return Ok(Some((Stream::Stdout, data))),
                2 => return Ok(Some((Stream::Stderr, data))),
                _ => continue,
            }
        }
    }

    /// Writes `data` to the container's input (if attached with it).
    pub async fn write(&mut self, data: &[u8]) -> std::io::Result<()> {
        use tokio::io::AsyncWriteExt;
        let Some(s) = self.stdin.as_mut() else { return Ok(()) };
        for piece in data.chunks(FRAME_DATA) {
            s.write_all(&frame(0, piece)).await?;
        }
        Ok(())
    }

    /// Sets the container's terminal's window size.
    pub fn resize(&self, columns: u16, rows: u16) -> std::io::Result<()> {
        self.command(&format!("size {columns} {rows}"))
    }

    /// Closes the container's input for good (`stdinOnce`), after what was written before.
    pub async fn close_stdin(&mut self) -> std::io::Result<()> {
        use tokio::io::AsyncWriteExt;
        match self.stdin.take() {
            Some(mut s) => s.write_all(&frame(1, &[])).await,
            None => Ok(()),
        }
    }
}
