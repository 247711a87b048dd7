//! The node's runtime state on a memory file system, as containerd keeps its own under `/run`.
//!
//! The OCI runtime writes a record per container (its state and a copy of its config, each
//! update a new file), the node a bundle per container (its config, the monitor's pid and
//! control files, the root's mountpoint), and both are removed with the container: at a few
//! hundred pods, allocating those inodes on a disk file system is a large share of the
//! machine's work (on ext4 the allocator skips, one by one, inodes freed moments ago). They are
//! only meaningful while the machine is up, so they live on a memory file system:
//! `/run/podvisor/state/<data dir's key>/<name>`, with `/run/podvisor/state` mounted as one
//! where `/run` is not. The data directory's `runc` and `state` are symlinks to them, so every path that names
//! them stays as it was. A data directory whose `runc` is already a directory that holds
//! something (made by an earlier version, perhaps holding running containers) keeps it; where
//! no memory file system can be had, they are plain directories. What a container writes (its layer, its termination
//! message) and what must outlive the machine's uptime (logs, volumes) stays on disk.

use std::path::{Path, PathBuf};

/// Where the memory file system of every node's state is (its own mount where `/run` is not a
/// memory file system: beside, not over, the address claims under `/run/podvisor`).
pub const RUN: &str = "/run/podvisor/state";

/// The `statfs` type of a tmpfs.
const TMPFS_MAGIC: i64 = 0x0102_1994;

/// Whether `path` is on a memory file system.
// `f_type`'s width differs between targets.
#[allow(clippy::unnecessary_cast)]
fn on_tmpfs(path: &Path) -> bool {
    rustix::fs::statfs(path).is_ok_and(|s| s.f_type as i64 == TMPFS_MAGIC)
}

/// A key naming the data directory `data` (FNV-1a of its canonical path, in hex).
fn key(data: &Path) -> String {
    let path = std::fs::canonicalize(data).unwrap_or_else(|_| data.to_path_buf());
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in path.as_os_str().as_encoded_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{h:016x}")
}

/// Makes sure [`RUN`] is on a memory file system (mounting one where it is not), root's
/// alone: bundles hold the containers' environments, Secrets' values among them. Whether it
/// is.
fn memory_run() -> bool {
    use std::os::unix::fs::PermissionsExt;
    let run = Path::new(RUN);
    if std::fs::create_dir_all(run).is_err() {
        return false;
    }
    if on_tmpfs(run) {
        return std::fs::set_permissions(run, std::fs::Permissions::from_mode(0o700)).is_ok();
    }
    // Two processes starting at once mount it once: the second finds the first's mount.
    let lock = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(run.with_extension("lock"));
    let _held = lock.as_ref().ok().filter(|f| rustix::fs::flock(f, rustix::fs::FlockOperation::LockExclusive).is_ok());
    if on_tmpfs(run) {
        return true;
    }
    let flags = rustix::mount::MountFlags::NOSUID | rustix::mount::MountFlags::NODEV;
    let mounted = rustix::mount::mount("tmpfs", run, "tmpfs", flags, c"mode=0700");
    match mounted {
        Ok(()) => true,
        Err(e) => {
            tracing::warn!("no memory file system at {RUN} ({e}): the runtime's state stays on disk");
            false
        }
    }
}

/// The OCI runtime's state directory of the node whose data directory is `data`:
/// `<data>/runc` (see [`memory_dir`]).
pub fn runtime_root(data: &Path) -> std::io::Result<PathBuf> {
    memory_dir(data, "runc")
}

/// The directory of the node's container bundles: `<data>/state` (see [`memory_dir`]),
/// resolved: an OCI runtime refuses a root filesystem whose path passes through a symlink.
pub fn bundles(data: &Path) -> std::io::Result<PathBuf> {
    std::fs::canonicalize(memory_dir(data, STATE)?)
}

/// The name of the bundles' directory in a data directory.
pub const STATE: &str = "state";

/// `<data>/<name>`, made a symlink to the node's place on the memory file system unless it is
/// a directory already (see the module's documentation). Made if missing.
pub fn memory_dir(data: &Path, name: &str) -> std::io::Result<PathBuf> {
    let root = data.join(name);
    match std::fs::symlink_metadata(&root) {
        // An empty one (no container of an earlier version in it) moves to memory.
        Ok(m) if m.file_type().is_dir() => {
            if std::fs::read_dir(&root)?.next().is_some() || std::fs::remove_dir(&root).is_err() {
                return Ok(root);
            }
        }
        Ok(m) if m.file_type().is_symlink() => {
            // After a reboot the memory file system is empty: the target is made again. A
            // symlink to another data directory's place (a copied data directory) is replaced.
            let target = std::fs::read_link(&root)?;
            if target == Path::new(RUN).join(key(data)).join(name) && memory_run() {
                std::fs::create_dir_all(&target)?;
                return Ok(root);
            }
            std::fs::remove_file(&root)?;
        }
        Ok(_) => std::fs::remove_file(&root)?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    std::fs::create_dir_all(data)?;
    if memory_run() {
        let target = Path::new(RUN).join(key(data)).join(name);
        std::fs::create_dir_all(&target)?;
        std::os::unix::fs::symlink(&target, &root)?;
    } else {
        std::fs::create_dir_all(&root)?;
    }
    Ok(root)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_data_directory_has_its_own_key() {
        let (a, b) = (key(Path::new("/tmp/podvisor-a/data")), key(Path::new("/tmp/podvisor-b/data")));
        assert_ne!(a, b);
        assert_eq!(a.len(), 16);
        assert_eq!(a, key(Path::new("/tmp/podvisor-a/data")), "stable");
    }

    #[test]
    fn a_directory_holding_containers_is_kept_and_others_move_to_memory() {
        let dir = std::env::temp_dir().join(format!("podvisor-state-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("old/runc/podvisor-x-c-0")).unwrap();
        assert_eq!(runtime_root(&dir.join("old")).unwrap(), dir.join("old/runc"));
        assert!(std::fs::symlink_metadata(dir.join("old/runc")).unwrap().is_dir(), "kept as it was");
        std::fs::create_dir_all(dir.join("empty/runc")).unwrap();
        runtime_root(&dir.join("empty")).unwrap();
        assert!(dir.join("empty/runc").is_dir(), "an empty one is replaced by a usable one");
        let new = runtime_root(&dir.join("new")).unwrap();
        assert!(new.is_dir(), "usable, wherever it leads");
        std::fs::write(new.join("probe"), b"").unwrap();
        assert!(dir.join("new/runc/probe").exists());
        assert_eq!(runtime_root(&dir.join("new")).unwrap(), new, "the same the next time");
        let target = std::fs::read_link(dir.join("new/runc"));
        if let Ok(target) = target {
            use std::os::unix::fs::PermissionsExt;
            assert!(target.starts_with(RUN));
            let mode = std::fs::metadata(RUN).unwrap().permissions().mode();
            assert_eq!(mode & 0o077, 0, "no one else reaches the bundles: {mode:o}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
