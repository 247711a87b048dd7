//! The data directory kept as the kubelet keeps `/var/lib/kubelet`: reachable by root alone, so
//! that no other user of the machine reads a Secret, a token or a log, or plants a file that
//! podvisor (running as root) would then trust; and files that hold secrets written 0600.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Why the data directory cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum DataDirError {
    /// Another user owns it: they could change what podvisor reads there.
    #[error(
        "{path}: the data directory belongs to uid {owner}, not to this user (uid {me}); \
         use a directory of this user's, or give it to them with chown"
    )]
    Owner {
        /// The directory.
        path: PathBuf,
        /// Its owner.
        owner: u32,
        /// This process's user.
        me: u32,
    },
    /// Other users may write in it.
    #[error(
        "{path}: the data directory is writable by other users (mode {mode:04o}); anyone could \
         plant files podvisor runs as root; make it private: chmod 700 {path}"
    )]
    Writable {
        /// The directory.
        path: PathBuf,
        /// Its mode.
        mode: u32,
    },
    /// It could not be created or read.
    #[error("{path}: {error}")]
    Io {
        /// The directory.
        path: PathBuf,
        /// The error.
        error: std::io::Error,
    },
}

/// Makes `dir` the private data directory: created 0700 when missing; an existing one must
/// belong to this user and not be writable by others (refused, with what to do, otherwise),
/// and is then closed to others (0700) if it was readable by them.
pub fn secure_data_dir(dir: &Path) -> Result<(), DataDirError> {
    let io = |error| DataDirError::Io { path: dir.to_path_buf(), error };
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs::create_dir_all(parent).map_err(io)?;
    }
    match fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => return Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(io(e)),
    }
    // The directory itself, not a symlink's target: a symlink there is someone else's choice.
    let meta = fs::symlink_metadata(dir).map_err(io)?;
    if !meta.is_dir() {
        return Err(io(std::io::Error::other("not a directory")));
    }
    let me = rustix::process::geteuid().as_raw();
    if meta.uid() != me {
        return Err(DataDirError::Owner { path: dir.to_path_buf(), owner: meta.uid(), me });
    }
    let mode = meta.mode() & 0o7777;
    if mode & 0o022 != 0 {
        return Err(DataDirError::Writable { path: dir.to_path_buf(), mode });
    }
    if mode & 0o077 != 0 {
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(io)?;
    }
    Ok(())
}

/// Writes `bytes` to `path` readable and writable by its owner alone (0600), whole or not at
/// all: through a temporary file renamed over it. An earlier file's wider mode does not
/// survive.
pub fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp-private");
    let _ = fs::remove_file(&tmp);
    let mut f = fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    fs::rename(&tmp, path)
}

/// The size in bytes of the file system holding `path` (what the kubelet reports as the node's
/// `ephemeral-storage`), or `None` when it cannot be read.
pub fn filesystem_bytes(path: &Path) -> Option<u64> {
    let st = rustix::fs::statvfs(path).ok()?;
    Some(st.f_blocks.saturating_mul(st.f_frsize))
}

/// Narrows the mode of an existing file to 0600 (a file made by an earlier version).
pub fn make_private(path: &Path) -> std::io::Result<()> {
    let meta = fs::symlink_metadata(path)?;
    if meta.is_file() && meta.mode() & 0o077 != 0 {
        fs::set_permissions(path, fs::Permissions::from_mode(0o600))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("podvisor-files-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        d
    }

    fn mode(p: &Path) -> u32 {
        fs::metadata(p).unwrap().mode() & 0o7777
    }

    #[test]
    fn a_new_data_dir_is_private_and_an_open_one_is_closed() {
        let d = temp("new");
        secure_data_dir(&d.join("data")).unwrap();
        assert_eq!(mode(&d.join("data")), 0o700);
        fs::set_permissions(d.join("data"), fs::Permissions::from_mode(0o755)).unwrap();
        secure_data_dir(&d.join("data")).unwrap();
        assert_eq!(mode(&d.join("data")), 0o700, "a readable one from an earlier version is closed");
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_data_dir_others_may_write_is_refused_with_what_to_do() {
        let d = temp("writable");
        fs::create_dir_all(&d).unwrap();
        fs::set_permissions(&d, fs::Permissions::from_mode(0o777)).unwrap();
        let e = secure_data_dir(&d).unwrap_err();
        assert!(matches!(e, DataDirError::Writable { mode: 0o777, .. }), "{e}");
        assert!(e.to_string().contains("chmod 700"), "{e}");
        assert_eq!(mode(&d), 0o777, "left as it was");
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_data_dir_of_another_user_is_refused() {
        if !rustix::process::geteuid().is_root() {
            return;
        }
        let d = temp("owner");
        fs::create_dir_all(&d).unwrap();
        std::os::unix::fs::chown(&d, Some(65534), None).unwrap();
        let e = secure_data_dir(&d).unwrap_err();
        assert!(matches!(e, DataDirError::Owner { owner: 65534, .. }), "{e}");
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn private_files_are_0600_even_over_a_wider_one() {
        let d = temp("private");
        fs::create_dir_all(&d).unwrap();
        let f = d.join("token");
        fs::write(&f, "old").unwrap();
        fs::set_permissions(&f, fs::Permissions::from_mode(0o644)).unwrap();
        write_private(&f, b"new").unwrap();
        assert_eq!((mode(&f), fs::read_to_string(&f).unwrap().as_str()), (0o600, "new"));
        fs::set_permissions(&f, fs::Permissions::from_mode(0o644)).unwrap();
        make_private(&f).unwrap();
        assert_eq!(mode(&f), 0o600);
        fs::remove_dir_all(&d).unwrap();
    }
}
