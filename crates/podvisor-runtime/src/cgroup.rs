//! What podvisor reads and removes in the cgroup hierarchies itself (the OCI runtime creates
//! the containers' cgroups): the OOM-kill counter of a container, and a pod's parent cgroup.

use std::path::{Path, PathBuf};

const ROOT: &str = "/sys/fs/cgroup";

/// Whether the host has one unified cgroup v2 hierarchy at `/sys/fs/cgroup`.
pub fn is_v2() -> bool {
    Path::new(ROOT).join("cgroup.controllers").is_file()
}

/// The controllers of the cgroup2 hierarchy of a hybrid host (v1 controllers with cgroup2 at
/// `/sys/fs/cgroup/unified`): those no v1 hierarchy holds. Empty on a v1-only or v2-only host.
pub fn hybrid_unified_controllers() -> Vec<String> {
    std::fs::read_to_string(Path::new(ROOT).join("unified/cgroup.controllers"))
        .map(|text| text.split_whitespace().map(str::to_string).collect())
        .unwrap_or_default()
}

/// Whether the kernel's OOM killer killed a process in the cgroup at `path` (an absolute
/// `cgroupsPath`). Read before the runtime deletes the container.
pub fn oom_killed(path: &str) -> bool {
    let rel = path.trim_start_matches('/');
    let (file, key) = if !is_v2() {
        (Path::new(ROOT).join("memory").join(rel).join("memory.oom_control"), "oom_kill")
    } else {
        (Path::new(ROOT).join(rel).join("memory.events"), "oom_kill")
    };
    std::fs::read_to_string(file)
        .ok()
        .and_then(|text| {
            text.lines()
                .filter_map(|l| l.split_once(' '))
                .find(|(k, _)| *k == key)
                .and_then(|(_, v)| v.trim().parse::<u64>().ok())
        })
        .is_some_and(|n| n > 0)
}

/// Removes the cgroup `path` (and its empty children) in every hierarchy. A cgroup still
/// holding processes stays: the ones left are returned, with why.
pub fn remove(path: &str) -> Vec<(PathBuf, std::io::Error)> {
    let rel = path.trim_start_matches('/');
    let mut roots: Vec<PathBuf> = vec![Path::new(ROOT).join(rel)];
    if let Ok(entries) = std::fs::read_dir(ROOT) {
        roots.extend(entries.flatten().map(|e| e.path().join(rel)));
    }
    let mut left = Vec::new();
    for dir in roots {
        remove_tree(&dir, &mut left);
    }
    left
}

fn remove_tree(dir: &Path, left: &mut Vec<(PathBuf, std::io::Error)>) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                remove_tree(&e.path(), left);
            }
        }
    }
    match std::fs::remove_dir(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => left.push((dir.to_path_buf(), e)),
        _ => {}
    }
}
