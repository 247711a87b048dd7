//! `subPath` mounts made safe as the kubelet makes them (CVE-2017-1002101, CVE-2021-25741).
//!
//! A container of the pod may change its volume while another container is being created, for
//! instance by swapping a directory for a symlink to `/`. So a `subPath` is never handed to the
//! runtime as a path: it is resolved inside the volume from an open descriptor of the volume's
//! root, each step checked by the kernel (`openat2` with `RESOLVE_BENEATH` and
//! `RESOLVE_NO_MAGICLINKS`; on a kernel without it, a walk that refuses every symlink), missing
//! directories are created from the descriptor of their parent, and the directory or file
//! reached is bind-mounted from its descriptor (`/proc/self/fd/N`) onto a place of podvisor's
//! own. The runtime then mounts that place, which no container can change.

use std::fs;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

use rustix::fs::{FileType, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;
use rustix::mount::{UnmountFlags, mount_bind, unmount};

/// Why a `subPath` could not be mounted.
#[derive(Debug, thiserror::Error)]
pub enum SubPathError {
    /// The path is absolute or has a `..` component (the API server refuses these too).
    #[error("subPath {0:?} must be a relative path without '..'")]
    NotRelative(String),
    /// A symlink on the way leads out of the volume (or, on an old kernel, is a symlink).
    #[error("subPath {sub:?} resolves outside the volume {volume}")]
    Outside {
        /// The subPath as written.
        sub: String,
        /// The volume's host directory.
        volume: PathBuf,
    },
    /// A step failed for another reason.
    #[error("subPath {sub:?}: {what}: {error}")]
    Io {
        /// The subPath as written.
        sub: String,
        /// The step.
        what: String,
        /// The error.
        error: std::io::Error,
    },
}

/// How paths are resolved: `openat2` with the kernel's checks, or (kernels before 5.6) a walk
/// that opens each component with `O_NOFOLLOW` and refuses symlinks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolver {
    /// `openat2(RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS)`: symlinks that stay in the volume are
    /// followed, as the kubelet follows them.
    Openat2,
    /// Component by component, no symlink followed at all.
    NoFollow,
}

/// The components of a `subPath`, refused when it could leave the volume by its text alone.
pub fn components(sub: &str) -> Result<Vec<&str>, SubPathError> {
    let mut out = Vec::new();
    for c in Path::new(sub).components() {
        match c {
            Component::Normal(s) => out.push(s.to_str().ok_or_else(|| SubPathError::NotRelative(sub.into()))?),
            Component::CurDir => {}
            _ => return Err(SubPathError::NotRelative(sub.into())),
        }
    }
    Ok(out)
}

/// How many times a resolution is tried again when the volume changes under it (`EAGAIN` from
/// `openat2`, or a directory created and replaced between two steps).
const RETRIES: usize = 16;

/// Resolves `sub` inside `volume` and returns an `O_PATH` descriptor of what it names; missing
/// directories are created with the mode of the volume's root (as the kubelet's `SafeMakeDir`).
pub fn open(volume: &Path, sub: &str, resolver: Resolver) -> Result<OwnedFd, SubPathError> {
    let parts = components(sub)?;
    let io = |what: &str, error: Errno| SubPathError::Io { sub: sub.into(), what: what.into(), error: error.into() };
    let outside = || SubPathError::Outside { sub: sub.into(), volume: volume.to_path_buf() };
    let root =
        rustix::fs::open(volume, OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty()).map_err(|e| {
            SubPathError::Io { sub: sub.into(), what: format!("opening {}", volume.display()), error: e.into() }
        })?;
    let mode = rustix::fs::fstat(&root).map_err(|e| io("stat of the volume", e))?.st_mode & 0o7777;
    let mut current = root.as_fd().try_clone_to_owned().map_err(|error| SubPathError::Io {
        sub: sub.into(),
        what: "duplicating a descriptor".into(),
        error,
    })?;
    for i in 0..parts.len() {
        let mut tries = 0;
        current = loop {
            tries += 1;
            let step = match resolver {
                Resolver::Openat2 => openat2(&root, &parts[..=i].join("/")),
                Resolver::NoFollow => nofollow(&current, parts[i]),
            };
            match step {
                Ok(fd) => break fd,
                Err(Errno::NOENT) if tries <= RETRIES => {
                    // Made from the descriptor of its parent: a symlink swapped in above it
                    // changes nothing.
                    make_dir(&current, parts[i], mode)
                        .map_err(|e| io(&format!("creating {:?}", parts[..=i].join("/")), e))?;
                }
                Err(Errno::AGAIN) if tries <= RETRIES => {}
                Err(Errno::XDEV | Errno::LOOP | Errno::NOENT | Errno::AGAIN) => return Err(outside()),
                Err(e) => return Err(io(&format!("opening {:?}", parts[..=i].join("/")), e)),
            }
        };
    }
    Ok(current)
}

fn openat2(root: &OwnedFd, rel: &str) -> Result<OwnedFd, Errno> {
    rustix::fs::openat2(
        root,
        rel,
        OFlags::PATH | OFlags::CLOEXEC,
        Mode::empty(),
        ResolveFlags::BENEATH | ResolveFlags::NO_MAGICLINKS,
    )
}

/// Makes directory `name` in `dir` with `mode` (not the umask's: the volume's, as the kubelet
/// sets it); one made meanwhile by someone else is left as it is.
fn make_dir(dir: &OwnedFd, name: &str, mode: u32) -> Result<(), Errno> {
    match rustix::fs::mkdirat(dir, name, Mode::from_raw_mode(mode)) {
        Ok(()) => {}
        Err(Errno::EXIST) => return Ok(()),
        Err(e) => return Err(e),
    }
    // Opened without following, then as itself: a symlink swapped in is never chmod'ed through.
    let made = nofollow(dir, name)?;
    let real = rustix::fs::openat(&made, ".", OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())?;
    rustix::fs::fchmod(real, Mode::from_raw_mode(mode))
}

/// Opens `name` in `dir` without following it; a symlink is refused (`ELOOP`).
fn nofollow(dir: &OwnedFd, name: &str) -> Result<OwnedFd, Errno> {
    let fd = rustix::fs::openat(dir, name, OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC, Mode::empty())?;
    if FileType::from_raw_mode(rustix::fs::fstat(&fd)?.st_mode) == FileType::Symlink {
        return Err(Errno::LOOP);
    }
    Ok(fd)
}

/// The resolver this kernel supports.
pub fn resolver() -> Resolver {
    let probe = rustix::fs::openat2(
        rustix::fs::CWD,
        "/",
        OFlags::PATH | OFlags::CLOEXEC,
        Mode::empty(),
        ResolveFlags::NO_MAGICLINKS,
    );
    if matches!(probe, Err(Errno::NOSYS)) { Resolver::NoFollow } else { Resolver::Openat2 }
}

/// Resolves `sub` in `volume` and bind-mounts what it names at `target` (created as an empty
/// file or directory to match). `target` must be a path of podvisor's own, outside every volume.
pub fn mount(volume: &Path, sub: &str, target: &Path) -> Result<(), SubPathError> {
    let fd = open(volume, sub, resolver())?;
    let io = |what: String, error: std::io::Error| SubPathError::Io { sub: sub.into(), what, error };
    let is_dir = FileType::from_raw_mode(rustix::fs::fstat(&fd).map_err(|e| io("stat".into(), e.into()))?.st_mode)
        == FileType::Directory;
    // A target left by an earlier instance of the container is used again.
    let _ = unmount(target, UnmountFlags::DETACH);
    if let Some(parent) = target.parent() {
        fs::create_dir_all(parent).map_err(|e| io(format!("creating {}", parent.display()), e))?;
    }
    let made = if is_dir {
        fs::create_dir(target).or_else(|e| if target.is_dir() { Ok(()) } else { Err(e) })
    } else {
        fs::OpenOptions::new().write(true).create(true).truncate(false).open(target).map(drop)
    };
    made.map_err(|e| io(format!("creating {}", target.display()), e))?;
    let source = format!("/proc/self/fd/{}", fd.as_raw_fd());
    mount_bind(source.as_str(), target).map_err(|e| io(format!("binding it at {}", target.display()), e.into()))
}

/// Mounts every `subPath` of container `c` under `dir` (one entry per mount, by its index in
/// `volumeMounts`), from the pod's volume directories; returns the host source of each.
/// `subPathExpr` is expanded with the container's environment first.
pub fn mount_all(
    c: &k8s_openapi::api::core::v1::Container,
    volumes: &std::collections::HashMap<String, PathBuf>,
    env: &[(String, String)],
    dir: &Path,
) -> Result<std::collections::BTreeMap<usize, PathBuf>, String> {
    let mut out = std::collections::BTreeMap::new();
    for (i, m) in c.volume_mounts.iter().flatten().enumerate() {
        let sub = match (&m.sub_path, &m.sub_path_expr) {
            (Some(s), _) if !s.is_empty() => s.clone(),
            (_, Some(e)) if !e.is_empty() => crate::env::expand(e, env),
            _ => continue,
        };
        let Some(volume) = volumes.get(&m.name) else { continue };
        let target = dir.join(i.to_string());
        mount(volume, &sub, &target).map_err(|e| format!("volumeMounts {:?}: {e}", m.name))?;
        out.insert(i, target);
    }
    Ok(out)
}

/// Unmounts every `subPath` bind under `dir` (made by [`mount`]) and removes them; what cannot
/// be unmounted is left in place and named in the error.
pub fn release(dir: &Path) -> std::io::Result<()> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for e in entries.flatten() {
        let p = e.path();
        match unmount(&p, UnmountFlags::DETACH) {
            Ok(()) | Err(Errno::INVAL) | Err(Errno::NOENT) => {}
            Err(err) => return Err(std::io::Error::other(format!("unmounting {}: {err}", p.display()))),
        }
        // Only an empty directory or file is left: never a tree, which could be a volume's.
        let removed = if p.is_dir() { fs::remove_dir(&p) } else { fs::remove_file(&p) };
        removed.map_err(|err| std::io::Error::other(format!("removing {}: {err}", p.display())))?;
    }
    fs::remove_dir(dir)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn temp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("podvisor-subpath-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }

    fn path_of(fd: &OwnedFd) -> PathBuf {
        fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd())).unwrap()
    }

    #[test]
    fn text_that_leaves_the_volume_is_refused() {
        for bad in ["/etc", "../x", "a/../../x", "a/.."] {
            assert!(matches!(components(bad), Err(SubPathError::NotRelative(_))), "{bad}");
        }
        assert_eq!(components("a/./b/").unwrap(), ["a", "b"]);
    }

    #[test]
    fn a_symlink_out_of_the_volume_is_refused_by_both_resolvers() {
        let v = temp("out");
        symlink("/", v.join("x")).unwrap();
        symlink("../../..", v.join("up")).unwrap();
        for r in [Resolver::Openat2, Resolver::NoFollow] {
            for sub in ["x", "x/etc", "up", "up/etc"] {
                let got = open(&v, sub, r);
                assert!(matches!(got, Err(SubPathError::Outside { .. })), "{r:?} {sub}: {got:?}");
            }
        }
        assert!(!Path::new("/etc/podvisor-should-not-exist").exists());
        fs::remove_dir_all(&v).unwrap();
    }

    #[test]
    fn a_symlink_that_stays_inside_is_followed_as_the_kubelet_does() {
        let v = temp("inside");
        fs::create_dir_all(v.join("real/dir")).unwrap();
        symlink("real", v.join("link")).unwrap();
        let fd = open(&v, "link/dir", Resolver::Openat2).unwrap();
        assert_eq!(path_of(&fd), v.join("real/dir"));
        assert!(
            matches!(open(&v, "link/dir", Resolver::NoFollow), Err(SubPathError::Outside { .. })),
            "the old-kernel walk refuses every symlink"
        );
        fs::remove_dir_all(&v).unwrap();
    }

    #[test]
    fn missing_directories_are_made_inside_with_the_volumes_mode() {
        use std::os::unix::fs::PermissionsExt;
        let v = temp("make");
        fs::set_permissions(&v, fs::Permissions::from_mode(0o777)).unwrap();
        for r in [Resolver::Openat2, Resolver::NoFollow] {
            let sub = format!("{r:?}/a/b");
            let fd = open(&v, &sub, r).unwrap();
            assert_eq!(path_of(&fd), v.join(&sub));
            let mode = fs::metadata(v.join(&sub)).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o777, "{r:?}");
        }
        // A dangling symlink is not replaced by a directory: refused.
        symlink("/nonexistent-podvisor", v.join("dangling")).unwrap();
        assert!(open(&v, "dangling/x", Resolver::Openat2).is_err());
        assert!(!Path::new("/nonexistent-podvisor").exists());
        fs::remove_dir_all(&v).unwrap();
    }

    #[test]
    fn the_bind_mount_pins_what_was_resolved() {
        if !rustix::process::geteuid().is_root() {
            return;
        }
        let v = temp("bind");
        let own = temp("bind-target");
        fs::create_dir_all(v.join("d")).unwrap();
        fs::write(v.join("d/file"), b"inside").unwrap();
        fs::write(v.join("f"), b"a file").unwrap();
        mount(&v, "d", &own.join("0")).unwrap();
        mount(&v, "f", &own.join("1")).unwrap();
        assert_eq!(fs::read(own.join("0/file")).unwrap(), b"inside");
        assert_eq!(fs::read(own.join("1")).unwrap(), b"a file");
        // Swapping the directory for a symlink afterwards changes nothing that is mounted.
        fs::rename(v.join("d"), v.join("moved")).unwrap();
        symlink("/", v.join("d")).unwrap();
        assert_eq!(fs::read(own.join("0/file")).unwrap(), b"inside");
        assert!(matches!(mount(&v, "d", &own.join("2")), Err(SubPathError::Outside { .. })));
        release(&own).unwrap();
        assert!(!own.exists());
        assert_eq!(fs::read(v.join("moved/file")).unwrap(), b"inside", "release leaves the volume's data");
        fs::remove_dir_all(&v).unwrap();
    }
}
