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

/// Whether the kernel accounts and limits swap per cgroup, as the kubelet finds out: the swap
/// limit file exists in this process's own cgroup (`memory.swap.max` on v2; the root has none,
/// so a process in the root cgroup finds none) or in the v1 memory hierarchy. Read once.
pub fn swap_controller() -> bool {
    static FOUND: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *FOUND.get_or_init(|| {
        if !is_v2() {
            return Path::new(ROOT).join("memory/memory.memsw.limit_in_bytes").is_file();
        }
        let own = std::fs::read_to_string("/proc/self/cgroup").ok().and_then(|text| {
            text.lines().find_map(|l| l.strip_prefix("0::").map(|p| p.trim().trim_start_matches('/').to_string()))
        });
        own.is_some_and(|own| !own.is_empty() && Path::new(ROOT).join(own).join("memory.swap.max").is_file())
    })
}

/// What a cgroup (or the whole machine) has used: CPU time and the memory working set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Usage {
    /// CPU time, in nanoseconds, since the cgroup began.
    pub cpu_ns: u64,
    /// Memory in use but the inactive file cache, in bytes (the kubelet's working set).
    pub memory: u64,
}

/// A value of a `key value` file (`memory.stat`, `cpu.stat`).
fn stat(text: &str, key: &str) -> Option<u64> {
    text.lines().filter_map(|l| l.split_once(' ')).find(|(k, _)| *k == key).and_then(|(_, v)| v.trim().parse().ok())
}

/// The use of the cgroup at `path` (an absolute `cgroupsPath`), if it is there.
pub fn usage(path: &str) -> Option<Usage> {
    let rel = path.trim_start_matches('/');
    let read = |p: PathBuf| std::fs::read_to_string(p).ok();
    if is_v2() {
        let dir = Path::new(ROOT).join(rel);
        let cpu = stat(&read(dir.join("cpu.stat"))?, "usage_usec")?.saturating_mul(1000);
        let current: u64 = read(dir.join("memory.current"))?.trim().parse().ok()?;
        let inactive = read(dir.join("memory.stat")).and_then(|t| stat(&t, "inactive_file")).unwrap_or(0);
        return Some(Usage { cpu_ns: cpu, memory: current.saturating_sub(inactive) });
    }
    let cpu: u64 = read(Path::new(ROOT).join("cpuacct").join(rel).join("cpuacct.usage"))?.trim().parse().ok()?;
    let memory = Path::new(ROOT).join("memory").join(rel);
    let used: u64 = read(memory.join("memory.usage_in_bytes"))?.trim().parse().ok()?;
    let inactive = read(memory.join("memory.stat")).and_then(|t| stat(&t, "total_inactive_file")).unwrap_or(0);
    Some(Usage { cpu_ns: cpu, memory: used.saturating_sub(inactive) })
}

/// The whole machine's use: busy CPU time from `/proc/stat` and memory in use from
/// `/proc/meminfo` (total less available).
pub fn machine_usage() -> Option<Usage> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let cpu: Vec<u64> = stat.lines().next()?.split_whitespace().skip(1).filter_map(|v| v.parse().ok()).collect();
    // user nice system idle iowait irq softirq steal: busy is all but idle and iowait.
    let busy = cpu.iter().enumerate().filter(|(i, _)| *i != 3 && *i != 4 && *i < 8).map(|(_, v)| v).sum::<u64>();
    let ticks = rustix::param::clock_ticks_per_second().max(1);
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let kib = |key: &str| {
        meminfo.lines().find_map(|l| l.strip_prefix(key)?.trim().strip_suffix("kB")?.trim().parse::<u64>().ok())
    };
    let memory = kib("MemTotal:")?.saturating_sub(kib("MemAvailable:")?).saturating_mul(1024);
    Some(Usage { cpu_ns: busy.saturating_mul(1_000_000_000 / ticks), memory })
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
    // A v1 host has a hierarchy per controller (and `unified`) below the root; a v2 host has
    // only the one, whose root holds the interface files.
    if !is_v2()
        && let Ok(entries) = std::fs::read_dir(ROOT)
    {
        roots.extend(entries.flatten().filter(|e| e.file_type().is_ok_and(|t| t.is_dir())).map(|e| e.path().join(rel)));
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
