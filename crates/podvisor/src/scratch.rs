//! Private scratch directories: made anew under the temporary directory, root's alone (0700),
//! never one that was there before (a name another user planted, a symlink, is refused, not
//! followed), and removed when dropped.

use std::path::{Path, PathBuf};

/// A scratch directory, removed with its contents when dropped.
pub(crate) struct Scratch(PathBuf);

impl Scratch {
    /// Makes a new private directory named after `what`.
    pub(crate) fn new(what: &str) -> anyhow::Result<Scratch> {
        use std::os::unix::fs::DirBuilderExt;
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("podvisor-{what}-{}-{nanos:08x}-{n}", std::process::id()));
        // `create` (not `create_all`) fails on anything already there.
        std::fs::DirBuilder::new().mode(0o700).create(&dir).map_err(|e| anyhow::anyhow!("{}: {e}", dir.display()))?;
        Ok(Scratch(dir))
    }

    /// Its path.
    pub(crate) fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scratch_directory_is_private_new_and_gone_when_dropped() {
        use std::os::unix::fs::PermissionsExt;
        let s = Scratch::new("test").unwrap();
        let path = s.path().to_path_buf();
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o700);
        assert_ne!(Scratch::new("test").unwrap().path(), path, "never the same one twice");
        drop(s);
        assert!(!path.exists());
    }
}
