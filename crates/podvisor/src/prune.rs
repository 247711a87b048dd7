//! `podvisor prune [--logs] [--images]`: what a data directory keeps that nothing uses any
//! more: the logs of pods that are gone (kept after `run` on purpose, so that `podvisor logs`
//! reads them later), and unpacked images no name refers to.
//!
//! It runs only while no podvisor uses the data directory (it takes the node's lock), and
//! keeps the logs of pods whose containers are still up (left running for a takeover) and of
//! pods a stopped `serve`'s store still holds.

use std::collections::HashSet;
use std::io::Write;
use std::path::Path;

/// Options of `podvisor prune`.
pub struct Options {
    /// Remove the logs of pods that are gone.
    pub logs: bool,
    /// Remove unpacked images no name refers to.
    pub images: bool,
}

fn size(path: &Path) -> u64 {
    let Ok(meta) = path.symlink_metadata() else { return 0 };
    if !meta.is_dir() {
        return meta.len();
    }
    std::fs::read_dir(path).into_iter().flatten().flatten().map(|e| size(&e.path())).sum()
}

/// Prunes `data`; prints each removal and what it freed.
pub fn run(out: &mut impl Write, data: &Path, opts: Options) -> anyhow::Result<bool> {
    let (logs, images) = if opts.logs || opts.images { (opts.logs, opts.images) } else { (true, true) };
    let lock_path = data.join("node.lock");
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| anyhow::anyhow!("{}: {e}", lock_path.display()))?;
    if rustix::fs::flock(&lock, rustix::fs::FlockOperation::NonBlockingLockExclusive).is_err() {
        anyhow::bail!("{}: a podvisor is using this data directory; stop it first", data.display());
    }
    let mut freed = 0u64;
    let mut remove = |out: &mut dyn Write, path: &Path, what: &str| -> anyhow::Result<()> {
        let bytes = size(path);
        std::fs::remove_dir_all(path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        freed += bytes;
        writeln!(out, "removed {what} ({:.1} MB)", bytes as f64 / 1e6)?;
        Ok(())
    };
    if logs {
        // Pods whose containers are still up, and pods a stopped serve's store still has.
        let mut keep: HashSet<String> = std::fs::read_dir(data.join("run"))
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        let store = data.join("store.redb");
        if store.exists() {
            let store = podvisor_cluster::Store::open(&store)?;
            let (pods, _) = store.list(podvisor_objects::kinds::Resource::Pods, None);
            keep.extend(pods.iter().filter_map(|p| p.pointer("/metadata/uid")?.as_str().map(str::to_string)));
        }
        let mut dirs: Vec<_> = std::fs::read_dir(data.join("logs")).into_iter().flatten().flatten().collect();
        dirs.sort_by_key(|e| e.file_name());
        for e in dirs {
            let name = e.file_name().to_string_lossy().into_owned();
            let uid = name.rsplit('_').next().unwrap_or("");
            if !keep.contains(uid) && e.file_type().is_ok_and(|t| t.is_dir()) {
                let pod = name.rsplit_once('_').map_or(name.as_str(), |(p, _)| p).replacen('_', "/", 1);
                remove(out, &e.path(), &format!("the logs of pod {pod}"))?;
            }
        }
    }
    if images {
        let store = podvisor_runtime::image::ImageStore::open(data)?;
        let used: HashSet<String> =
            store.list().into_iter().map(|(_, id)| id.trim_start_matches("sha256:").to_string()).collect();
        for e in std::fs::read_dir(data.join("images")).into_iter().flatten().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if e.file_type().is_ok_and(|t| t.is_dir()) && !used.contains(&name) && name.len() == 64 {
                remove(out, &e.path(), &format!("image {}", &name[..12]))?;
            }
        }
    }
    writeln!(out, "freed {:.1} MB", freed as f64 / 1e6)?;
    Ok(true)
}
