//! The commands run in containers for clients (`kubectl exec`), as the node keeps track of
//! them: each one's host PID in a file under `<data-dir>/exec`, removed when it ends. A node
//! process that was killed (SIGKILL) could not end its clients' commands; the next one ends
//! whatever of them still runs, so that no command outlives the client that asked for it.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// Where the PID files are, under the data directory.
pub(crate) fn dir(data: &Path) -> PathBuf {
    data.join("exec")
}

/// A fresh PID file's path for a command about to run (its directory made).
pub(crate) fn pid_file(data: &Path) -> std::io::Result<PathBuf> {
    let dir = dir(data);
    std::fs::create_dir_all(&dir)?;
    Ok(dir.join(format!("{}.pid", podvisor_objects::uid::new_uid())))
}

/// When process `pid` started, from `/proc` (its start in clock ticks after the boot time).
fn started(pid: i32) -> Option<SystemTime> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: fields count from its end.
    let after = &stat[stat.rfind(')')? + 1..];
    let ticks: u64 = after.split_whitespace().nth(19)?.parse().ok()?;
    let boot: u64 = std::fs::read_to_string("/proc/stat")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("btime ")?.trim().parse().ok())?;
    let per_second = rustix::param::clock_ticks_per_second().max(1);
    Some(SystemTime::UNIX_EPOCH + Duration::from_secs(boot) + Duration::from_millis(ticks * 1000 / per_second))
}

/// Ends the commands an earlier node process left running: each PID file names a process that
/// is still the command if it started when the file was written (within 2 s: a PID used again
/// since is some other process, and is left alone). Removes the files. Returns how many were
/// ended.
pub(crate) fn end_strays(data: &Path) -> usize {
    let mut ended = 0;
    for e in std::fs::read_dir(dir(data)).into_iter().flatten().flatten() {
        let path = e.path();
        let pid = std::fs::read_to_string(&path).ok().and_then(|s| s.trim().parse::<i32>().ok());
        let written = e.metadata().and_then(|m| m.modified()).ok();
        if let (Some(pid), Some(written)) = (pid, written)
            && let Some(start) = started(pid)
        {
            let apart = written.duration_since(start).unwrap_or_else(|e| e.duration());
            if apart <= Duration::from_secs(2)
                && let Some(p) = rustix::process::Pid::from_raw(pid)
                && rustix::process::kill_process(p, rustix::process::Signal::KILL).is_ok()
            {
                ended += 1;
            }
        }
        crate::cleanup::remove_path(&path);
    }
    ended
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_command_left_running_is_ended_and_a_reused_pid_is_not() {
        let data = std::env::temp_dir().join(format!("podvisor-execs-{}", std::process::id()));
        let mut child = std::process::Command::new("sleep").arg("600").spawn().unwrap();
        let file = pid_file(&data).unwrap();
        std::fs::write(&file, child.id().to_string()).unwrap();
        // This test's own process started long before its file: taken for a reused PID.
        let old = pid_file(&data).unwrap();
        std::fs::write(&old, std::process::id().to_string()).unwrap();
        let stale = std::fs::File::options().write(true).open(&old).unwrap();
        stale.set_modified(SystemTime::now() + Duration::from_secs(3600)).unwrap();
        assert_eq!(end_strays(&data), 1);
        let status = child.wait().unwrap();
        assert_eq!(std::os::unix::process::ExitStatusExt::signal(&status), Some(9));
        assert!(std::fs::read_dir(dir(&data)).unwrap().next().is_none(), "the files are gone");
        std::fs::remove_dir_all(&data).unwrap();
    }
}
