//! Pseudo-terminals for commands run in a container with a TTY (`kubectl exec -it`).
//!
//! The OCI runtime, run in the foreground with `--tty`, gives the container's process a
//! terminal of its own and copies between it and the terminal on the runtime's standard
//! streams. That terminal is one of these: its slave end is the runtime's controlling terminal
//! (so a change of its window size reaches the runtime as `SIGWINCH`, and from it the
//! container's terminal), and its master end is read and written here, asynchronously.

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::process::Stdio;

use rustix::pty::OpenptFlags;
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

/// The master end of a pseudo-terminal, for async reads and writes.
pub struct Pty {
    master: AsyncFd<OwnedFd>,
}

/// Opens a pseudo-terminal: its master end, and its slave end for the command's streams.
pub fn open() -> io::Result<(Pty, OwnedFd)> {
    let master = rustix::pty::openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY | OpenptFlags::CLOEXEC)?;
    rustix::pty::grantpt(&master)?;
    rustix::pty::unlockpt(&master)?;
    let name = rustix::pty::ptsname(&master, Vec::new())?;
    let slave = rustix::fs::open(
        name.as_c_str(),
        rustix::fs::OFlags::RDWR | rustix::fs::OFlags::NOCTTY | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )?;
    rustix::io::ioctl_fionbio(&master, true)?;
    // SAFETY: an OwnedFd is a valid open descriptor that stays open, and the same, until the
    // AsyncFd that owns it is dropped.
    let master = unsafe { AsyncFd::register_with_interest(master, Interest::READABLE | Interest::WRITABLE) }
        .map_err(|e| e.into_parts().1)?;
    Ok((Pty { master }, slave))
}

/// Gives `command` the terminal `slave` on its three standard streams, as its controlling
/// terminal in a session of its own. Drop the command (and `slave`) once it is spawned: the
/// master reads the end only when no copy of the slave end is left.
pub fn attach(command: &mut tokio::process::Command, slave: &OwnedFd) -> io::Result<()> {
    let stream = || slave.try_clone().map(Stdio::from);
    command.stdin(stream()?).stdout(stream()?).stderr(stream()?);
    // SAFETY: between fork and exec the closure calls two system calls, setsid and the
    // TIOCSCTTY ioctl on the child's own standard input; it allocates nothing and takes no lock.
    unsafe {
        command.pre_exec(|| {
            rustix::process::setsid()?;
            rustix::process::ioctl_tiocsctty(rustix::stdio::stdin())?;
            Ok(())
        });
    }
    Ok(())
}

impl Pty {
    /// Reads what the command wrote; `Ok(0)` once every holder of the slave end is gone.
    pub async fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            let mut guard = self.master.readable().await?;
            match guard.try_io(|fd| rustix::io::read(fd.get_ref(), &mut *buf).map_err(io::Error::from)) {
                Ok(Ok(n)) => return Ok(n),
                // Linux answers EIO on the master once the slave end is closed: the end.
                Ok(Err(e)) if e.raw_os_error() == Some(rustix::io::Errno::IO.raw_os_error()) => return Ok(0),
                Ok(Err(e)) => return Err(e),
                Err(_would_block) => continue,
            }
        }
    }

    /// Writes all of `data` as typed input.
    pub async fn write_all(&self, mut data: &[u8]) -> io::Result<()> {
        while !data.is_empty() {
            let mut guard = self.master.writable().await?;
            match guard.try_io(|fd| rustix::io::write(fd.get_ref(), data).map_err(io::Error::from)) {
                Ok(Ok(n)) => data = &data[n..],
                Ok(Err(e)) => return Err(e),
                Err(_would_block) => continue,
            }
        }
        Ok(())
    }

    /// Sets the terminal's window size; the command is told with `SIGWINCH`.
    pub fn resize(&self, columns: u16, rows: u16) -> io::Result<()> {
        let size = rustix::termios::Winsize { ws_row: rows, ws_col: columns, ws_xpixel: 0, ws_ypixel: 0 };
        Ok(rustix::termios::tcsetwinsize(self.master.get_ref().as_fd(), size)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A shell on the terminal: it sees a TTY of the size set, reads what is typed, and the
    /// master reads the end once it exits.
    #[tokio::test]
    async fn a_command_on_the_terminal_sees_a_tty_of_the_size_set_and_its_output_ends() {
        let (pty, slave) = open().unwrap();
        pty.resize(91, 17).unwrap();
        let mut cmd = tokio::process::Command::new("sh");
        cmd.args(["-c", "stty size; read line; echo got:$line; [ -t 0 ] && echo tty"]);
        attach(&mut cmd, &slave).unwrap();
        let mut child = cmd.spawn().unwrap();
        // The command's copies of the slave end go with it: the master reads the end then.
        drop(cmd);
        drop(slave);
        pty.write_all(b"typed\n").await.unwrap();
        let mut out = Vec::new();
        let mut buf = [0u8; 1024];
        let reading = async {
            loop {
                let n = pty.read(&mut buf).await.unwrap();
                if n == 0 {
                    break;
                }
                out.extend_from_slice(&buf[..n]);
            }
        };
        // A master that never reads the end fails the test instead of hanging it.
        tokio::time::timeout(std::time::Duration::from_secs(20), reading).await.expect("the end is read");
        assert!(child.wait().await.unwrap().success());
        let text = String::from_utf8_lossy(&out);
        assert!(text.contains("17 91") && text.contains("got:typed") && text.contains("tty"), "{text:?}");
    }
}
