//! How much disk a directory uses, and a watch that wakes when it may have grown: what the
//! node needs to evict a pod whose on-disk `emptyDir` passes its `sizeLimit`.
//!
//! Usage is counted as `du -x` counts it, which is what the kubelet measures: allocated
//! blocks, each inode once, without leaving the directory's filesystem. The watch is inotify on
//! every directory of the tree (new directories are added as they appear), so a write is
//! noticed when it happens rather than at the next poll.

use std::collections::{HashMap, HashSet};
use std::io;
use std::mem::MaybeUninit;
use std::os::fd::OwnedFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use rustix::fs::inotify::{self, CreateFlags, ReadFlags, WatchFlags};
use tokio::io::unix::AsyncFd;

/// The bytes allocated to the files under `dir`, `dir` included, on `dir`'s filesystem.
pub fn disk_usage(dir: &Path) -> u64 {
    let Ok(root) = std::fs::symlink_metadata(dir) else { return 0 };
    let mut seen = HashSet::new();
    let mut total = 0;
    let mut stack = vec![(dir.to_path_buf(), root)];
    while let Some((path, meta)) = stack.pop() {
        if meta.nlink() > 1 && !meta.is_dir() && !seen.insert(meta.ino()) {
            continue;
        }
        total += meta.blocks() * 512;
        if !meta.is_dir() {
            continue;
        }
        let Ok(entries) = std::fs::read_dir(&path) else { continue };
        for e in entries.flatten() {
            if let Ok(m) = e.metadata()
                && m.dev() == meta.dev()
            {
                stack.push((e.path(), m));
            }
        }
    }
    total
}

/// An inotify watch on a directory tree: [`TreeWatch::changed`] returns once something in it
/// was written, created or moved in.
pub struct TreeWatch {
    fd: AsyncFd<OwnedFd>,
    dirs: HashMap<i32, PathBuf>,
}

/// What wakes the watch. `DONT_FOLLOW` and `ONLYDIR`: the tree is the container's to shape, so a
/// symbolic link in it is never followed out of it.
const FLAGS: WatchFlags = WatchFlags::MODIFY
    .union(WatchFlags::CREATE)
    .union(WatchFlags::MOVED_TO)
    .union(WatchFlags::CLOSE_WRITE)
    .union(WatchFlags::ONLYDIR)
    .union(WatchFlags::DONT_FOLLOW);

impl TreeWatch {
    /// Watches `root` and every directory under it. Needs a Tokio runtime.
    pub fn new(root: &Path) -> io::Result<TreeWatch> {
        let fd = inotify::init(CreateFlags::CLOEXEC | CreateFlags::NONBLOCK)?;
        // SAFETY: the inotify fd is an `OwnedFd` moved into the `AsyncFd`, so it stays open and
        // refers to the same inotify instance for as long as the `AsyncFd` lives.
        let fd = unsafe { AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE) }
            .map_err(|e| e.into_parts().1)?;
        let mut watch = TreeWatch { fd, dirs: HashMap::new() };
        watch.add_tree(root)?;
        Ok(watch)
    }

    fn add_tree(&mut self, root: &Path) -> io::Result<()> {
        let mut stack = vec![root.to_path_buf()];
        while let Some(dir) = stack.pop() {
            match inotify::add_watch(self.fd.get_ref(), &dir, FLAGS) {
                Ok(wd) => {
                    self.dirs.insert(wd, dir.clone());
                }
                // Gone again, or not a directory after all: nothing to watch.
                Err(rustix::io::Errno::NOENT | rustix::io::Errno::NOTDIR) if dir != root => continue,
                Err(e) => return Err(e.into()),
            }
            // Only a real directory is read (a link put in its place is not followed).
            let is_dir = std::fs::symlink_metadata(&dir).is_ok_and(|m| m.is_dir());
            if is_dir && let Ok(entries) = std::fs::read_dir(&dir) {
                stack.extend(entries.flatten().filter(|e| e.file_type().is_ok_and(|t| t.is_dir())).map(|e| e.path()));
            }
        }
        Ok(())
    }

    /// Waits until something under the tree changed, taking every change queued so far.
    /// Directories created meanwhile are watched from now on.
    pub async fn changed(&mut self) -> io::Result<()> {
        let mut buf = [MaybeUninit::<u8>::uninit(); 4096];
        loop {
            let mut guard = self.fd.readable().await?;
            let mut new_dirs = Vec::new();
            let mut any = false;
            {
                let mut reader = inotify::Reader::new(self.fd.get_ref(), &mut buf);
                loop {
                    match reader.next() {
                        Ok(event) => {
                            any = true;
                            let flags = event.events();
                            if flags.contains(ReadFlags::IGNORED) {
                                // The directory is gone (or moved away): its watch is over.
                                self.dirs.remove(&event.wd());
                                continue;
                            }
                            if flags.contains(ReadFlags::ISDIR)
                                && flags.intersects(ReadFlags::CREATE | ReadFlags::MOVED_TO)
                                && let (Some(parent), Some(name)) = (self.dirs.get(&event.wd()), event.file_name())
                            {
                                new_dirs.push(parent.join(name.to_string_lossy().as_ref()));
                            }
                        }
                        Err(rustix::io::Errno::AGAIN) => break,
                        Err(rustix::io::Errno::INTR) => continue,
                        Err(e) => return Err(e.into()),
                    }
                }
            }
            guard.clear_ready();
            for dir in new_dirs {
                self.add_tree(&dir)?;
            }
            if any {
                return Ok(());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_counts_allocated_blocks_and_a_hard_link_once() {
        let dir = std::env::temp_dir().join(format!("podvisor-usage-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("a/b")).unwrap();
        let empty = disk_usage(&dir);
        std::fs::write(dir.join("a/b/data"), vec![7u8; 256 * 1024]).unwrap();
        std::fs::hard_link(dir.join("a/b/data"), dir.join("a/link")).unwrap();
        // A sparse file allocates nothing for its hole.
        std::fs::File::create(dir.join("sparse")).unwrap().set_len(64 << 20).unwrap();
        let used = disk_usage(&dir) - empty;
        assert!((256 * 1024..300 * 1024).contains(&used), "{used}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_write_in_a_directory_made_after_the_watch_began_wakes_it() {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let dir = std::env::temp_dir().join(format!("podvisor-watch-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        rt.block_on(async {
            let mut w = TreeWatch::new(&dir).unwrap();
            std::fs::create_dir(dir.join("sub")).unwrap();
            let limit = std::time::Duration::from_secs(5);
            tokio::time::timeout(limit, w.changed()).await.expect("the new directory is seen").unwrap();
            std::fs::write(dir.join("sub/file"), b"x").unwrap();
            tokio::time::timeout(limit, w.changed()).await.expect("a write in it is seen").unwrap();
            let idle = tokio::time::timeout(std::time::Duration::from_millis(100), w.changed()).await;
            assert!(idle.is_err(), "nothing more happened");
        });
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
