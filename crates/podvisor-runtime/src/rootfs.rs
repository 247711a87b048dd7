//! A container's root filesystem: an overlay whose lower layer is the image's unpacked root
//! (shared by every container of that image, never written) and whose upper layer is the
//! container's own.

use std::fs;
use std::path::{Path, PathBuf};

use rustix::mount::{MountFlags, UnmountFlags, mount, unmount};

/// A container's overlay under `<dir>/{upper,work,rootfs}`.
#[derive(Debug, Clone)]
pub struct Overlay {
    dir: PathBuf,
}

impl Overlay {
    /// The overlay kept under `dir`.
    pub fn at(dir: &Path) -> Self {
        Overlay { dir: dir.to_path_buf() }
    }

    /// Where the merged root is mounted.
    pub fn rootfs(&self) -> PathBuf {
        self.dir.join("rootfs")
    }

    /// Mounts the overlay of `lower` (an image's root filesystem).
    pub fn mount(&self, lower: &Path) -> std::io::Result<()> {
        for d in ["upper", "work", "rootfs"] {
            fs::create_dir_all(self.dir.join(d))?;
        }
        let data = format!(
            "lowerdir={},upperdir={},workdir={}",
            lower.display(),
            self.dir.join("upper").display(),
            self.dir.join("work").display()
        );
        let data = std::ffi::CString::new(data).map_err(|_| std::io::Error::other("a path holds a NUL byte"))?;
        mount("overlay", self.rootfs(), "overlay", MountFlags::empty(), data.as_c_str()).map_err(|e| {
            std::io::Error::new(e.kind(), format!("mounting the overlay root at {}: {e}", self.rootfs().display()))
        })
    }

    /// Unmounts the overlay and deletes the container's layer. Safe to call twice.
    pub fn remove(&self) -> std::io::Result<()> {
        let _ = unmount(self.rootfs(), UnmountFlags::DETACH);
        match fs::remove_dir_all(&self.dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}
