//! A container's root filesystem: an overlay whose lower layers are the image's unpacked root
//! (shared by every container of that image, never written) under its init layers, and whose
//! upper layer is the container's own.
//!
//! The init layers hold, once per image, the mountpoints the node mounts in containers that
//! the image lacks (`/etc/hosts`, `/etc/hostname`, `/etc/resolv.conf`, the service account's
//! directory), as Docker's init layer does: without them the runtime would create each in
//! every container's upper layer, copying `/etc` up first, a dozen files and directories made
//! and removed per container.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rustix::mount::{MountFlags, UnmountFlags, mount, unmount};

/// A container's overlay: its own layer (`upper` and `work`, on disk) under `layers`, the merged
/// root mounted at `rootfs`.
#[derive(Debug, Clone)]
pub struct Overlay {
    layers: PathBuf,
    rootfs: PathBuf,
}

impl Overlay {
    /// The overlay whose own layer is kept under `layers`, mounted at `rootfs`.
    pub fn at(layers: &Path, rootfs: &Path) -> Self {
        Overlay { layers: layers.to_path_buf(), rootfs: rootfs.to_path_buf() }
    }

    /// Where the merged root is mounted.
    pub fn rootfs(&self) -> PathBuf {
        self.rootfs.clone()
    }

    /// Where the container's own layer is kept.
    pub fn layers(&self) -> &Path {
        &self.layers
    }

    /// Mounts the overlay of `lowers` (an image's init layers, then its root filesystem: the
    /// topmost first).
    pub fn mount(&self, lowers: &[PathBuf]) -> std::io::Result<()> {
        for d in [self.layers.join("upper"), self.layers.join("work"), self.rootfs.clone()] {
            fs::create_dir_all(d)?;
        }
        let lowers: Vec<String> = lowers.iter().map(|l| l.display().to_string()).collect();
        let data = format!(
            "lowerdir={},upperdir={},workdir={}",
            lowers.join(":"),
            self.layers.join("upper").display(),
            self.layers.join("work").display()
        );
        let data = std::ffi::CString::new(data).map_err(|_| std::io::Error::other("a path holds a NUL byte"))?;
        mount("overlay", &self.rootfs, "overlay", MountFlags::empty(), data.as_c_str()).map_err(|e| {
            std::io::Error::new(e.kind(), format!("mounting the overlay root at {}: {e}", self.rootfs.display()))
        })
    }

    /// Unmounts the overlay and deletes the container's layer and the root's mountpoint. Safe
    /// to call twice.
    pub fn remove(&self) -> std::io::Result<()> {
        let _ = unmount(&self.rootfs, UnmountFlags::DETACH);
        let gone = |r: std::io::Result<()>| match r {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        };
        gone(fs::remove_dir_all(&self.layers))?;
        gone(fs::remove_dir(&self.rootfs))
    }
}

/// The files every container has mounted over: the pod's `/etc` files.
const ETC_FILES: [&str; 3] = ["etc/hosts", "etc/hostname", "etc/resolv.conf"];

/// Where a pod's service account token is mounted (relative to the root).
pub const TOKEN_DIR: &str = "var/run/secrets/kubernetes.io/serviceaccount";

/// The lower layers of a container of the image whose root is `rootfs`, topmost first: its init
/// layers (made the first time they are asked for; the token's directory only for a container
/// that mounts it), then the root itself. A layer that cannot be made is left out: the runtime
/// then makes the mountpoints in the container's own layer, as without init layers.
pub fn lowers(rootfs: &Path, token: bool) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Some(image) = rootfs.parent() {
        if token {
            out.extend(init_layer(&image.join("init-token"), rootfs, &[], &[TOKEN_DIR]));
        }
        out.extend(init_layer(&image.join("init-etc"), rootfs, &ETC_FILES, &[]));
    }
    out.push(rootfs.to_path_buf());
    out
}

/// The init layer at `at` for `rootfs`, made if missing: the `files` and `dirs` the image does
/// not have, with their missing parents; `None` when it would be empty or cannot be made.
fn init_layer(at: &Path, rootfs: &Path, files: &[&str], dirs: &[&str]) -> Option<PathBuf> {
    let empty = at.with_extension("empty");
    if at.is_dir() {
        return Some(at.to_path_buf());
    }
    if empty.exists() {
        return None;
    }
    static MADE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = MADE.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = at.with_extension(format!("tmp-{}-{n}", std::process::id()));
    let made = (|| -> std::io::Result<bool> {
        fs::create_dir(&tmp)?;
        let mut any = false;
        for (path, dir) in files.iter().map(|f| (f, false)).chain(dirs.iter().map(|d| (d, true))) {
            any |= add_mountpoint(&tmp, rootfs, path, dir)?;
        }
        Ok(any)
    })();
    match made {
        Ok(true) => match fs::rename(&tmp, at) {
            Ok(()) => Some(at.to_path_buf()),
            // Another container of the image made it first.
            Err(_) if at.is_dir() => {
                let _ = fs::remove_dir_all(&tmp);
                Some(at.to_path_buf())
            }
            Err(e) => {
                tracing::warn!("init layer {}: {e}", at.display());
                let _ = fs::remove_dir_all(&tmp);
                None
            }
        },
        Ok(false) => {
            let _ = fs::remove_dir_all(&tmp);
            let _ = fs::write(&empty, b"");
            None
        }
        Err(e) => {
            tracing::warn!("init layer {}: {e}", at.display());
            let _ = fs::remove_dir_all(&tmp);
            None
        }
    }
}

/// Adds `path` (a file, or a directory when `dir`) to the layer `layer` if the image at
/// `rootfs` lacks it and every parent it has is a plain directory (never through a symlink of
/// the image: the layer would hide it). The parents made copy the mode and owner of the
/// image's own, which the merged view shows. Whether it was added.
fn add_mountpoint(layer: &Path, rootfs: &Path, path: &str, dir: bool) -> std::io::Result<bool> {
    let parts: Vec<&str> = path.split('/').collect();
    let Some((last, parents)) = parts.split_last() else { return Ok(false) };
    let mut rel = PathBuf::new();
    let mut made = Vec::new();
    for part in parents {
        rel.push(part);
        match fs::symlink_metadata(rootfs.join(&rel)) {
            Ok(m) if m.file_type().is_dir() => made.push((rel.clone(), Some(m))),
            Ok(_) => return Ok(false),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => made.push((rel.clone(), None)),
            Err(e) => return Err(e),
        }
    }
    rel.push(last);
    match fs::symlink_metadata(rootfs.join(&rel)) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Ok(_) => return Ok(false),
        Err(e) => return Err(e),
    }
    for (p, image) in made {
        let target = layer.join(&p);
        if target.is_dir() {
            continue;
        }
        fs::create_dir(&target)?;
        match image {
            Some(m) => {
                fs::set_permissions(&target, fs::Permissions::from_mode(m.mode() & 0o7777))?;
                std::os::unix::fs::lchown(&target, Some(m.uid()), Some(m.gid()))?;
            }
            None => fs::set_permissions(&target, fs::Permissions::from_mode(0o755))?,
        }
    }
    let target = layer.join(&rel);
    if dir {
        fs::create_dir(&target)?;
        fs::set_permissions(&target, fs::Permissions::from_mode(0o755))?;
    } else {
        fs::write(&target, b"")?;
        fs::set_permissions(&target, fs::Permissions::from_mode(0o644))?;
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("podvisor-init-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(d.join("image/rootfs/etc")).unwrap();
        d
    }

    #[test]
    fn an_init_layer_holds_the_mountpoints_the_image_lacks_and_is_made_once() {
        let d = tree("lacks");
        let rootfs = d.join("image/rootfs");
        fs::write(rootfs.join("etc/hostname"), "image's own").unwrap();
        fs::set_permissions(rootfs.join("etc"), fs::Permissions::from_mode(0o750)).unwrap();
        let layers = lowers(&rootfs, true);
        let (token, etc) = (d.join("image/init-token"), d.join("image/init-etc"));
        assert_eq!(layers, [token.clone(), etc.clone(), rootfs.clone()]);
        assert!(etc.join("etc/hosts").is_file() && etc.join("etc/resolv.conf").is_file());
        assert!(!etc.join("etc/hostname").exists(), "the image's own file is not hidden");
        assert_eq!(fs::metadata(etc.join("etc")).unwrap().mode() & 0o7777, 0o750, "the parent looks as the image's");
        assert!(token.join(TOKEN_DIR).is_dir());
        assert_eq!(lowers(&rootfs, false), [etc, rootfs.clone()], "made once, the token's only when mounted");
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_symlinked_parent_or_a_complete_image_gets_no_layer() {
        let d = tree("symlink");
        let rootfs = d.join("image/rootfs");
        fs::create_dir_all(rootfs.join("run")).unwrap();
        fs::create_dir_all(rootfs.join("var")).unwrap();
        std::os::unix::fs::symlink("/run", rootfs.join("var/run")).unwrap();
        for f in ETC_FILES {
            fs::write(rootfs.join(f), "").unwrap();
        }
        assert_eq!(
            lowers(&rootfs, true),
            std::slice::from_ref(&rootfs),
            "nothing to add under a symlink, nothing missing"
        );
        assert!(d.join("image/init-etc.empty").exists(), "an empty layer is remembered");
        fs::remove_dir_all(&d).unwrap();
    }
}
