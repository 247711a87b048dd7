//! The OCI runtime configuration (`config.json`) of a container: its process as Kubernetes
//! defines it against the image, the pod's shared namespaces, mounts, and cgroup limits.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::Container;
use oci_spec::runtime::{
    LinuxBuilder, LinuxCpuBuilder, LinuxMemoryBuilder, LinuxNamespace, LinuxNamespaceBuilder, LinuxNamespaceType,
    LinuxPidsBuilder, LinuxResourcesBuilder, Mount, MountBuilder, ProcessBuilder, RootBuilder, Spec,
};

use crate::env::expand;
use crate::image::ImageConfig;

/// Why a container's configuration could not be made.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    /// Neither the container nor the image says what to run.
    #[error("container {0:?}: no command: the pod gives no command and the image no ENTRYPOINT or CMD")]
    NoCommand(String),
    /// A field podvisor does not implement yet.
    #[error("container {container:?}: {field} is not supported yet")]
    Unsupported {
        /// The container.
        container: String,
        /// The field.
        field: String,
    },
    /// A resource quantity is malformed.
    #[error("container {container:?}: resources.limits.{resource}: {quantity:?} is not a quantity")]
    Quantity {
        /// The container.
        container: String,
        /// The resource.
        resource: String,
        /// The value.
        quantity: String,
    },
    /// The OCI types refused a value.
    #[error("container {0:?}: {1}")]
    Oci(String, String),
}

/// What containers of one pod share.
#[derive(Debug, Clone, Default)]
pub struct PodContext {
    /// The network namespace to join.
    pub netns: Option<PathBuf>,
    /// The UTS namespace to join (its hostname is the pod name).
    pub uts: Option<PathBuf>,
    /// `hostNetwork: true`: containers stay in the host's network and UTS namespaces.
    pub host_network: bool,
    /// The IPC namespace to join.
    pub ipc: Option<PathBuf>,
    /// The pod's cgroup path; each container gets a child.
    pub cgroup_parent: String,
    /// Whether the host has one unified cgroup v2 hierarchy. There a container's processes are
    /// OOM-killed together (`memory.oom.group`), as the kubelet has them on cgroup v2.
    pub cgroup_v2: bool,
    /// Whether the kernel limits swap per cgroup ([`crate::cgroup::swap_controller`]). On
    /// cgroup v2 a container then gets `memory.swap.max = 0`, the kubelet's `NoSwap`.
    pub swap_controller: bool,
    /// Files bind-mounted at `/etc/hosts`, `/etc/hostname`, `/etc/resolv.conf`.
    pub etc_files: Vec<(String, PathBuf)>,
    /// Host directories of the pod's volumes, by volume name.
    pub volumes: HashMap<String, PathBuf>,
    /// The volumes containers only read (configMap, secret, downwardAPI, projected), mounted
    /// read-only whatever `readOnly` says, as the kubelet mounts them.
    pub readonly_volumes: std::collections::HashSet<String>,
    /// The pod's hostname (its name), given to containers as `HOSTNAME`.
    pub hostname: Option<String>,
    /// The pod-level security context (`runAsUser`, `runAsGroup`, `supplementalGroups`, …).
    pub security: Option<k8s_openapi::api::core::v1::PodSecurityContext>,
    /// The node's seccomp default for containers that name no profile (the kubelet's
    /// `seccompDefault`): `RuntimeDefault` when set, `Unconfined` otherwise.
    pub seccomp_default: bool,
    /// The node's directory of `Localhost` seccomp profiles.
    pub seccomp_dir: PathBuf,
}

/// The argv Kubernetes runs: `command` replaces ENTRYPOINT and `args` replaces CMD; with a
/// `command` but no `args`, the image's CMD is not used.
pub fn argv(c: &Container, image: &ImageConfig) -> Result<Vec<String>, BundleError> {
    let args = match (&c.command, &c.args) {
        (Some(cmd), Some(args)) => cmd.iter().chain(args).cloned().collect(),
        (Some(cmd), None) => cmd.clone(),
        (None, Some(args)) => image.entrypoint.iter().flatten().chain(args).cloned().collect(),
        (None, None) => image.entrypoint.iter().flatten().chain(image.cmd.iter().flatten()).cloned().collect(),
    };
    let args: Vec<String> = args;
    if args.is_empty() { Err(BundleError::NoCommand(c.name.clone())) } else { Ok(args) }
}

fn bind(dest: &str, source: &Path, readonly: bool) -> Result<Mount, String> {
    let mut options = vec!["rbind".to_string(), "rprivate".to_string()];
    options.push(if readonly { "ro" } else { "rw" }.to_string());
    MountBuilder::default()
        .destination(dest)
        .typ("bind")
        .source(source)
        .options(options)
        .build()
        .map_err(|e| e.to_string())
}

/// The largest CFS quota the kernel takes, in microseconds.
const MAX_CFS_QUOTA: i128 = (1 << 44) - 1;

/// What differs between instances of a container: its runtime ID, root, resolved
/// environment and termination-message file.
#[derive(Debug, Clone)]
pub struct Instance<'a> {
    /// The runtime's container ID (also the name of its cgroup under the pod's).
    pub id: &'a str,
    /// The mounted root filesystem.
    pub rootfs: &'a Path,
    /// The environment from `envFrom` and `env`, resolved (see [`crate::env::resolve`]).
    pub env: &'a [(String, String)],
    /// The host file bound at `terminationMessagePath`.
    pub termination_log: Option<&'a Path>,
    /// The pinned source of each `subPath` mount, by its index in `volumeMounts` (see
    /// [`crate::subpath::mount_all`]). A `subPath` mount missing here is refused.
    pub sub_paths: &'a std::collections::BTreeMap<usize, PathBuf>,
    /// The PID namespace to join instead of a new one: an ephemeral container's target's
    /// (`/proc/<its init>/ns/pid`).
    pub pid_namespace: Option<&'a Path>,
}

/// The capabilities a container gets by default (those of containerd and CRI-O).
const DEFAULT_CAPS: [&str; 14] = [
    "CHOWN",
    "DAC_OVERRIDE",
    "FSETID",
    "FOWNER",
    "MKNOD",
    "NET_RAW",
    "SETGID",
    "SETUID",
    "SETFCAP",
    "SETPCAP",
    "NET_BIND_SERVICE",
    "SYS_CHROOT",
    "KILL",
    "AUDIT_WRITE",
];

/// Every capability, by its number, for `privileged: true` and `add: [ALL]` (of which a container
/// gets those this process holds, as containerd gives "all current capabilities").
const ALL_CAPS: [&str; 41] = [
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "KILL",
    "SETGID",
    "SETUID",
    "SETPCAP",
    "LINUX_IMMUTABLE",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_ADMIN",
    "NET_RAW",
    "IPC_LOCK",
    "IPC_OWNER",
    "SYS_MODULE",
    "SYS_RAWIO",
    "SYS_CHROOT",
    "SYS_PTRACE",
    "SYS_PACCT",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_NICE",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "MKNOD",
    "LEASE",
    "AUDIT_WRITE",
    "AUDIT_CONTROL",
    "SETFCAP",
    "MAC_OVERRIDE",
    "MAC_ADMIN",
    "SYSLOG",
    "WAKE_ALARM",
    "BLOCK_SUSPEND",
    "AUDIT_READ",
    "PERFMON",
    "BPF",
    "CHECKPOINT_RESTORE",
];

/// The bounding set of this process (bit `n` for capability number `n`); all when unknown.
fn own_bounding_set() -> u64 {
    static SET: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *SET.get_or_init(|| {
        std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| {
                s.lines().find_map(|l| l.strip_prefix("CapBnd:")).and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
            })
            .unwrap_or(u64::MAX)
    })
}

/// The capabilities this process holds, by name: what "all" gives a container.
fn all_current_caps() -> impl Iterator<Item = String> {
    let held = own_bounding_set();
    ALL_CAPS.iter().enumerate().filter(move |(bit, _)| held & (1 << bit) != 0).map(|(_, n)| n.to_string())
}

fn capabilities(c: &Container, privileged: bool) -> Result<oci_spec::runtime::LinuxCapabilities, String> {
    let norm = |s: &str| s.trim_start_matches("CAP_").to_ascii_uppercase();
    let mut set: Vec<String> =
        if privileged { all_current_caps().collect() } else { DEFAULT_CAPS.iter().map(|s| s.to_string()).collect() };
    if !privileged && let Some(caps) = c.security_context.as_ref().and_then(|s| s.capabilities.as_ref()) {
        for d in caps.drop.iter().flatten() {
            if norm(d) == "ALL" {
                set.clear();
            } else {
                set.retain(|x| *x != norm(d));
            }
        }
        for a in caps.add.iter().flatten() {
            let names: Vec<String> = if norm(a) == "ALL" { all_current_caps().collect() } else { vec![norm(a)] };
            for n in names {
                if !set.contains(&n) {
                    set.push(n);
                }
            }
        }
    }
    let caps: oci_spec::runtime::Capabilities = set
        .iter()
        .map(|n| {
            serde_json::from_value::<oci_spec::runtime::Capability>(serde_json::Value::String(format!("CAP_{n}")))
                .map_err(|_| format!("securityContext.capabilities: unknown capability {n:?}"))
        })
        .collect::<Result<_, _>>()?;
    // containerd's sets: the inheritable and ambient sets stay empty, so a process that is not
    // root keeps no capability past its execve (none is added to ambient), and a `drop: [ALL]`
    // leaves nothing that the runtime would fail to raise.
    oci_spec::runtime::LinuxCapabilitiesBuilder::default()
        .bounding(caps.clone())
        .effective(caps.clone())
        .permitted(caps)
        .inheritable(oci_spec::runtime::Capabilities::new())
        .ambient(oci_spec::runtime::Capabilities::new())
        .build()
        .map_err(|e| e.to_string())
}

/// The sysctls the kubelet allows a pod to set without `--allowed-unsafe-sysctls`: namespaced
/// ones that cannot reach beyond the pod.
pub const SAFE_SYSCTLS: [&str; 12] = [
    "kernel.shm_rmid_forced",
    "net.ipv4.ip_local_port_range",
    "net.ipv4.tcp_syncookies",
    "net.ipv4.ping_group_range",
    "net.ipv4.ip_unprivileged_port_start",
    "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.tcp_keepalive_time",
    "net.ipv4.tcp_fin_timeout",
    "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
    "net.ipv4.tcp_rmem",
    "net.ipv4.tcp_wmem",
];

/// Why the node refuses a pod's sysctls (the kubelet's `SysctlForbidden`), if it does: an
/// unsafe one, or a network one on the host's network.
pub fn forbidden_sysctl(pod: &k8s_openapi::api::core::v1::PodSpec) -> Option<String> {
    let host_network = pod.host_network == Some(true);
    for s in pod.security_context.iter().flat_map(|s| s.sysctls.iter().flatten()) {
        // Either separator, as the kubelet normalises them.
        let name = s.name.replace('/', ".");
        if !SAFE_SYSCTLS.contains(&name.as_str()) {
            return Some(format!("forbidden sysctl: \"{}\" not allowlisted", s.name));
        }
        if host_network && name.starts_with("net.") {
            return Some(format!("forbidden sysctl: \"{}\" not allowed with host net enabled", s.name));
        }
    }
    None
}

fn safe_sysctls(ctx: &PodContext) -> Result<HashMap<String, String>, String> {
    let mut out = HashMap::new();
    for s in ctx.security.iter().flat_map(|s| s.sysctls.iter().flatten()) {
        let name = s.name.replace('/', ".");
        if !SAFE_SYSCTLS.contains(&name.as_str()) || (ctx.host_network && name.starts_with("net.")) {
            return Err(format!("forbidden sysctl: {:?} not allowlisted", s.name));
        }
        out.insert(name, s.value.clone());
    }
    Ok(out)
}

/// The `(id, primary group)` of the first entry of the image's `/etc/passwd` or `/etc/group`
/// that `wanted` accepts (by name, or by id). Group entries have no primary group: 0.
fn lookup(rootfs: &Path, file: &str, wanted: impl Fn(&str, u32) -> bool) -> Option<(u32, u32)> {
    let text = std::fs::read_to_string(rootfs.join("etc").join(file)).ok()?;
    text.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        let id = f.get(2)?.parse().ok()?;
        wanted(f.first()?, id).then(|| (id, f.get(3).and_then(|g| g.parse().ok()).unwrap_or(0)))
    })
}

/// The primary group of user `uid` in the image, if it lists the user.
fn primary_group(rootfs: &Path, uid: u32) -> Option<u32> {
    lookup(rootfs, "passwd", |_, id| id == uid).map(|(_, gid)| gid)
}

/// The user and group the process runs as: `runAsUser`/`runAsGroup` (container over pod), else
/// the image's `USER`, else root.
fn user(c: &Container, ctx: &PodContext, image: &ImageConfig, rootfs: &Path) -> Result<(u32, u32, Vec<u32>), String> {
    let sc = c.security_context.as_ref();
    let psc = ctx.security.as_ref();
    let run_as_user = sc.and_then(|s| s.run_as_user).or(psc.and_then(|s| s.run_as_user));
    let run_as_group = sc.and_then(|s| s.run_as_group).or(psc.and_then(|s| s.run_as_group));
    let (mut uid, mut gid) = (0u32, 0u32);
    if let Some(u) = image.user.as_deref().filter(|u| !u.is_empty()) {
        let (name, group) = match u.split_once(':') {
            Some((n, g)) => (n, Some(g)),
            None => (u, None),
        };
        (uid, gid) = match name.parse::<u32>() {
            Ok(n) => (n, primary_group(rootfs, n).unwrap_or(0)),
            Err(_) => lookup(rootfs, "passwd", |n, _| n == name)
                .ok_or_else(|| format!("image user {name:?} is not in /etc/passwd"))?,
        };
        if let Some(g) = group {
            gid = match g.parse::<u32>() {
                Ok(n) => n,
                Err(_) => lookup(rootfs, "group", |n, _| n == g)
                    .map(|(id, _)| id)
                    .ok_or_else(|| format!("image group {g:?} is not in /etc/group"))?,
            };
        }
    }
    if let Some(u) = run_as_user {
        uid = u32::try_from(u).map_err(|_| format!("runAsUser {u} is out of range"))?;
        if run_as_group.is_none() {
            gid = primary_group(rootfs, uid).unwrap_or(0);
        }
    }
    if let Some(g) = run_as_group {
        gid = u32::try_from(g).map_err(|_| format!("runAsGroup {g} is out of range"))?;
    }
    let extra = psc
        .and_then(|s| s.supplemental_groups.clone())
        .unwrap_or_default()
        .into_iter()
        .filter_map(|g| u32::try_from(g).ok())
        .chain(psc.and_then(|s| s.fs_group).and_then(|g| u32::try_from(g).ok()))
        .collect();
    Ok((uid, gid, extra))
}

/// Builds the runtime configuration of container `c` of a pod.
pub fn spec(c: &Container, image: &ImageConfig, ctx: &PodContext, inst: &Instance<'_>) -> Result<Spec, BundleError> {
    let oci = |e: String| BundleError::Oci(c.name.clone(), e);
    // The image's variables, overridden by the container's.
    let mut env: Vec<(String, String)> = image
        .env
        .iter()
        .flatten()
        .filter_map(|kv| kv.split_once('=').map(|(k, v)| (k.to_string(), v.to_string())))
        .filter(|(k, _)| !inst.env.iter().any(|(n, _)| n == k))
        .collect();
    env.extend(inst.env.iter().cloned());
    if !env.iter().any(|(k, _)| k == "HOSTNAME")
        && let Some(h) = &ctx.hostname
    {
        env.insert(0, ("HOSTNAME".into(), h.clone()));
    }
    // `$(VAR)` in command and args refer to the container's own variables.
    let args: Vec<String> = argv(c, image)?.iter().map(|a| expand(a, inst.env)).collect();
    let cwd =
        c.working_dir.clone().or_else(|| image.working_dir.clone()).filter(|w| !w.is_empty()).unwrap_or("/".into());
    let sc = c.security_context.as_ref();
    let privileged = sc.and_then(|s| s.privileged) == Some(true);
    let (uid, gid, extra) = user(c, ctx, image, inst.rootfs).map_err(oci)?;
    let capabilities = capabilities(c, privileged).map_err(oci)?;
    let user = oci_spec::runtime::UserBuilder::default()
        .uid(uid)
        .gid(gid)
        .additional_gids(extra)
        .build()
        .map_err(|e| oci(e.to_string()))?;
    let mut process = ProcessBuilder::default()
        .args(args)
        .env(env.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>())
        .cwd(cwd)
        .user(user)
        .capabilities(capabilities.clone())
        .terminal(c.tty == Some(true))
        .build()
        .map_err(|e| oci(e.to_string()))?;
    // `noNewPrivileges` only when set: youki reads a present `false` as "set", loads the seccomp
    // filter after dropping CAP_SYS_ADMIN, and the kernel refuses it.
    process.set_no_new_privileges((sc.and_then(|s| s.allow_privilege_escalation) == Some(false)).then_some(true));
    let mut mounts = oci_spec::runtime::get_default_mounts();
    // /proc as containerd mounts it: nothing set-user-ID, no devices, nothing executed from it.
    for m in mounts.iter_mut().filter(|m| m.destination() == Path::new("/proc")) {
        m.set_options(Some(vec!["nosuid".into(), "noexec".into(), "nodev".into()]));
    }
    // /sys/fs/cgroup (a default mount) as containerd mounts it: the container's own cgroup (its
    // namespace is private on cgroup v2, below), read-only unless the container is privileged.
    let cgroup_access = if privileged { "rw" } else { "ro" };
    for m in mounts.iter_mut().filter(|m| m.destination() == Path::new("/sys/fs/cgroup")) {
        m.set_options(Some(["nosuid", "noexec", "nodev", "relatime", cgroup_access].map(String::from).to_vec()));
    }
    for (dest, file) in &ctx.etc_files {
        mounts.push(bind(dest, file, false).map_err(oci)?);
    }
    if let Some(log) = inst.termination_log {
        let dest = c.termination_message_path.as_deref().unwrap_or("/dev/termination-log");
        mounts.push(bind(dest, log, false).map_err(oci)?);
    }
    for (i, m) in c.volume_mounts.iter().flatten().enumerate() {
        let base = ctx.volumes.get(&m.name).ok_or_else(|| BundleError::Unsupported {
            container: c.name.clone(),
            field: format!("volumeMounts: volume {:?} is not set up", m.name),
        })?;
        let has_sub = m.sub_path.as_deref().is_some_and(|s| !s.is_empty())
            || m.sub_path_expr.as_deref().is_some_and(|s| !s.is_empty());
        let source = match (has_sub, inst.sub_paths.get(&i)) {
            (false, _) => base,
            (true, Some(pinned)) => pinned,
            (true, None) => return Err(oci(format!("volumeMounts {:?}: the subPath was not resolved", m.name))),
        };
        let readonly = m.read_only == Some(true) || ctx.readonly_volumes.contains(&m.name);
        mounts.push(bind(&m.mount_path, source, readonly).map_err(oci)?);
    }
    let namespaces: Vec<LinuxNamespace> = [
        (LinuxNamespaceType::Pid, inst.pid_namespace.map(Path::to_path_buf)),
        (LinuxNamespaceType::Mount, None),
        (LinuxNamespaceType::Network, ctx.netns.clone()),
        (LinuxNamespaceType::Uts, ctx.uts.clone()),
        (LinuxNamespaceType::Ipc, ctx.ipc.clone()),
        (LinuxNamespaceType::Cgroup, None),
    ]
    .into_iter()
    .filter(|(typ, _)| !(ctx.host_network && matches!(typ, LinuxNamespaceType::Network | LinuxNamespaceType::Uts)))
    // A private cgroup namespace on cgroup v2, as containerd gives every container but a
    // privileged one: the container sees its own cgroup at the root of /sys/fs/cgroup (where a
    // JVM or Go runtime reads its memory and CPU limits). v1 hosts keep the host's.
    .filter(|(typ, _)| *typ != LinuxNamespaceType::Cgroup || (ctx.cgroup_v2 && !privileged))
    .map(|(typ, path)| {
        let b = LinuxNamespaceBuilder::default().typ(typ);
        match path {
            Some(p) => b.path(p).build(),
            None => b.build(),
        }
    })
    .collect::<Result<_, _>>()
    .map_err(|e| oci(e.to_string()))?;
    let limits = c.resources.as_ref().and_then(|r| r.limits.clone()).unwrap_or_default();
    let quantity = |name: &str| -> Result<Option<i128>, BundleError> {
        limits
            .get(name)
            .map(|q| {
                podvisor_objects::resources::parse_milli(&q.0).map_err(|_| BundleError::Quantity {
                    container: c.name.clone(),
                    resource: name.into(),
                    quantity: q.0.clone(),
                })
            })
            .transpose()
    };
    let requests = c.resources.as_ref().and_then(|r| r.requests.clone()).unwrap_or_default();
    let mut resources = LinuxResourcesBuilder::default();
    // CPU shares from the request, as the kubelet computes them (the runtime turns them into a
    // cgroup v2 weight): 1024 per CPU, at least 2.
    // Without a request, the API server's defaulting takes it from the limit.
    let request = match requests.get("cpu").or_else(|| limits.get("cpu")) {
        Some(q) => podvisor_objects::resources::parse_milli(&q.0).map_err(|_| BundleError::Quantity {
            container: c.name.clone(),
            resource: "cpu".into(),
            quantity: q.0.clone(),
        })?,
        None => 0,
    };
    let shares = u64::try_from((request.saturating_mul(1024) / 1000).clamp(2, 262_144)).unwrap_or(2);
    if let Some(mem) = quantity("memory")? {
        // Saturated: `9Ei` is past an int64 of bytes and means no practical limit.
        let bytes = i64::try_from((mem / 1000).max(1)).unwrap_or(i64::MAX);
        let memory = LinuxMemoryBuilder::default().limit(bytes).swap(bytes).build().map_err(|e| oci(e.to_string()))?;
        resources = resources.memory(memory);
    }
    let mut cpu = LinuxCpuBuilder::default().shares(shares);
    if let Some(limit) = quantity("cpu")? {
        let period: u64 = 100_000;
        // At most the kernel's largest quota (2^44 - 1 µs), at least its 1 ms minimum.
        let quota = (limit.saturating_mul(period as i128) / 1000).clamp(1000, MAX_CFS_QUOTA) as i64;
        cpu = cpu.quota(quota).period(period);
    }
    resources = resources.cpu(cpu.build().map_err(|e| oci(e.to_string()))?);
    if ctx.cgroup_v2 {
        let mut unified = HashMap::from([("memory.oom.group".to_string(), "1".to_string())]);
        // The kubelet's NoSwap: no swap at all, limit or not (the memory+swap limit above only
        // says so to runtimes that translate it, and youki 0.7 does not write a 0).
        if ctx.swap_controller {
            unified.insert("memory.swap.max".into(), "0".into());
        }
        resources = resources.unified(unified);
    }
    let pids = LinuxPidsBuilder::default().limit(4096).build().map_err(|e| oci(e.to_string()))?;
    let mut resources = resources.pids(pids);
    if privileged {
        let all = oci_spec::runtime::LinuxDeviceCgroupBuilder::default()
            .allow(true)
            .access("rwm")
            .build()
            .map_err(|e| oci(e.to_string()))?;
        resources = resources.devices(vec![all]);
    }
    let resources = resources.build().map_err(|e| oci(e.to_string()))?;
    let mut linux = LinuxBuilder::default()
        .namespaces(namespaces)
        .cgroups_path(PathBuf::from(format!("{}/{}", ctx.cgroup_parent, inst.id)))
        .resources(resources);
    // `procMount: Unmasked` leaves /proc as the kernel shows it, as privileged does.
    let unmasked = sc.and_then(|s| s.proc_mount.as_deref()) == Some("Unmasked");
    if !privileged && !unmasked {
        linux = linux
            .masked_paths(oci_spec::runtime::get_default_maskedpaths())
            .readonly_paths(oci_spec::runtime::get_default_readonly_paths());
    }
    // Privileged containers run without a filter, as in containerd.
    if !privileged {
        let profile = sc
            .and_then(|s| s.seccomp_profile.as_ref())
            .or_else(|| ctx.security.as_ref().and_then(|s| s.seccomp_profile.as_ref()))
            .map(crate::seccomp::Profile::of)
            .transpose()
            .map_err(|e| oci(e.to_string()))?
            .unwrap_or(if ctx.seccomp_default {
                crate::seccomp::Profile::RuntimeDefault
            } else {
                crate::seccomp::Profile::Unconfined
            });
        let bounding: Vec<String> = capabilities.bounding().iter().flatten().map(|c| c.to_string()).collect();
        if let Some(filter) = profile.load(&bounding, &ctx.seccomp_dir).map_err(|e| oci(e.to_string()))? {
            linux = linux.seccomp(filter);
        }
    }
    let sysctls = safe_sysctls(ctx).map_err(oci)?;
    if !sysctls.is_empty() {
        linux = linux.sysctl(sysctls);
    }
    let linux = linux.build().map_err(|e| oci(e.to_string()))?;
    let readonly = sc.and_then(|s| s.read_only_root_filesystem) == Some(true);
    let root = RootBuilder::default().path(inst.rootfs).readonly(readonly).build().map_err(|e| oci(e.to_string()))?;
    let mut spec = Spec::default();
    spec.set_hostname(None)
        .set_process(Some(process))
        .set_root(Some(root))
        .set_mounts(Some(mounts))
        .set_linux(Some(linux));
    Ok(spec)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An instance with no environment, log or subPath.
    fn instance() -> Instance<'static> {
        static NONE: std::sync::LazyLock<std::collections::BTreeMap<usize, PathBuf>> =
            std::sync::LazyLock::new(Default::default);
        Instance {
            id: "p-c-0",
            rootfs: Path::new("/r"),
            env: &[],
            termination_log: None,
            sub_paths: &NONE,
            pid_namespace: None,
        }
    }

    fn image() -> ImageConfig {
        ImageConfig {
            entrypoint: Some(vec!["/entry".into()]),
            cmd: Some(vec!["--default".into()]),
            env: Some(vec!["PATH=/bin".into(), "A=image".into()]),
            ..Default::default()
        }
    }

    fn c(command: Option<&[&str]>, args: Option<&[&str]>) -> Container {
        let v = |x: &[&str]| x.iter().map(|s| s.to_string()).collect();
        Container { name: "c".into(), command: command.map(v), args: args.map(v), ..Default::default() }
    }

    #[test]
    fn command_and_args_against_entrypoint_and_cmd() {
        let img = image();
        assert_eq!(argv(&c(None, None), &img).unwrap(), ["/entry", "--default"]);
        assert_eq!(argv(&c(None, Some(&["x"])), &img).unwrap(), ["/entry", "x"]);
        assert_eq!(argv(&c(Some(&["sh"]), None), &img).unwrap(), ["sh"], "CMD is dropped when command is set");
        assert_eq!(argv(&c(Some(&["sh"]), Some(&["-c", "true"])), &img).unwrap(), ["sh", "-c", "true"]);
        assert!(argv(&c(None, None), &ImageConfig::default()).is_err());
    }

    #[test]
    fn variables_expand_as_kubernetes_expands_them() {
        let env = vec![("A".to_string(), "1".to_string())];
        assert_eq!(expand("x$(A)y", &env), "x1y");
        assert_eq!(expand("$(B)", &env), "$(B)");
        assert_eq!(expand("$$(A)", &env), "$(A)");
    }

    #[test]
    fn the_spec_joins_the_pod_namespaces_and_limits_memory() {
        let mut container = c(Some(&["sh"]), None);
        container.resources = Some(k8s_openapi::api::core::v1::ResourceRequirements {
            limits: Some(
                [("memory".to_string(), k8s_openapi::apimachinery::pkg::api::resource::Quantity("32Mi".into()))].into(),
            ),
            ..Default::default()
        });
        let ctx = PodContext {
            netns: Some("/run/netns/p".into()),
            cgroup_parent: "/podvisor/p".into(),
            ..Default::default()
        };
        let inst = instance();
        let spec = spec(&container, &image(), &ctx, &inst).unwrap();
        let json = serde_json::to_value(&spec).unwrap();
        assert_eq!(json["process"]["env"], serde_json::json!(["PATH=/bin", "A=image"]));
        assert_eq!(json["linux"]["cgroupsPath"], "/podvisor/p/p-c-0");
        assert_eq!(json["linux"]["resources"]["memory"]["limit"], 32 * 1024 * 1024);
        assert_eq!(json["linux"]["resources"]["cpu"], serde_json::json!({"shares": 2}), "no request: the minimum");
        assert!(json["linux"]["resources"].get("unified").is_none(), "cgroup v1 has no unified files");
        let ns = json["linux"]["namespaces"].as_array().unwrap();
        assert!(ns.iter().any(|n| n["type"] == "network" && n["path"] == "/run/netns/p"));
        assert!(json.get("hostname").is_none(), "the hostname belongs to the shared UTS namespace");
        assert!(json["process"].get("noNewPrivileges").is_none(), "absent unless set (youki reads false as set)");
    }

    #[test]
    fn allow_privilege_escalation_false_sets_no_new_privileges() {
        let mut container = c(Some(&["sh"]), None);
        container.security_context = Some(k8s_openapi::api::core::v1::SecurityContext {
            allow_privilege_escalation: Some(false),
            ..Default::default()
        });
        let ctx = PodContext { cgroup_parent: "/podvisor/p".into(), ..Default::default() };
        let json = serde_json::to_value(spec(&container, &image(), &ctx, &instance()).unwrap()).unwrap();
        assert_eq!(json["process"]["noNewPrivileges"], true);
    }

    #[test]
    fn on_the_host_network_a_container_keeps_the_hosts_network_and_hostname() {
        let container = c(Some(&["sh"]), None);
        let ctx = PodContext {
            host_network: true,
            ipc: Some("/p/ns/ipc".into()),
            cgroup_parent: "/podvisor/p".into(),
            ..Default::default()
        };
        let inst = instance();
        let json = serde_json::to_value(spec(&container, &image(), &ctx, &inst).unwrap()).unwrap();
        let types: Vec<&str> =
            json["linux"]["namespaces"].as_array().unwrap().iter().map(|n| n["type"].as_str().unwrap()).collect();
        assert_eq!(types, ["pid", "mount", "ipc"]);
    }

    #[test]
    fn cpu_shares_follow_the_request_and_cgroup_v2_kills_a_container_as_a_group() {
        let mut container = c(Some(&["sh"]), None);
        let q = |s: &str| k8s_openapi::apimachinery::pkg::api::resource::Quantity(s.into());
        container.resources = Some(k8s_openapi::api::core::v1::ResourceRequirements {
            requests: Some([("cpu".to_string(), q("250m"))].into()),
            limits: Some([("cpu".to_string(), q("500m"))].into()),
            ..Default::default()
        });
        let ctx = PodContext { cgroup_parent: "/podvisor/p".into(), cgroup_v2: true, ..Default::default() };
        let inst = instance();
        let json = serde_json::to_value(spec(&container, &image(), &ctx, &inst).unwrap()).unwrap();
        let r = &json["linux"]["resources"];
        assert_eq!(r["cpu"], serde_json::json!({"shares": 256, "quota": 50000, "period": 100000}));
        assert_eq!(r["unified"], serde_json::json!({"memory.oom.group": "1"}));
        let swap = PodContext { swap_controller: true, ..ctx };
        let json = serde_json::to_value(spec(&container, &image(), &swap, &inst).unwrap()).unwrap();
        assert_eq!(
            json["linux"]["resources"]["unified"],
            serde_json::json!({"memory.oom.group": "1", "memory.swap.max": "0"}),
            "the kubelet's NoSwap where the kernel limits swap"
        );
        let types: Vec<&str> =
            json["linux"]["namespaces"].as_array().unwrap().iter().map(|n| n["type"].as_str().unwrap()).collect();
        assert!(types.contains(&"cgroup"), "a private cgroup namespace on cgroup v2: {types:?}");
        let mounts = json["mounts"].as_array().unwrap();
        assert_eq!(mounts.iter().filter(|m| m["destination"] == "/sys/fs/cgroup").count(), 1, "{mounts:?}");
        let cgroup = mounts.iter().find(|m| m["destination"] == "/sys/fs/cgroup").unwrap();
        assert_eq!(cgroup["type"], "cgroup");
        assert!(cgroup["options"].as_array().unwrap().contains(&serde_json::json!("ro")), "{cgroup}");
    }

    #[test]
    fn a_privileged_container_keeps_the_hosts_cgroup_namespace_and_may_write_its_cgroup() {
        let mut container = c(Some(&["sh"]), None);
        container.security_context =
            Some(k8s_openapi::api::core::v1::SecurityContext { privileged: Some(true), ..Default::default() });
        let ctx = PodContext { cgroup_parent: "/podvisor/p".into(), cgroup_v2: true, ..Default::default() };
        let json = serde_json::to_value(spec(&container, &image(), &ctx, &instance()).unwrap()).unwrap();
        let ns = json["linux"]["namespaces"].as_array().unwrap();
        assert!(ns.iter().all(|n| n["type"] != "cgroup"), "{ns:?}");
        let cgroup = json["mounts"].as_array().unwrap().iter().find(|m| m["destination"] == "/sys/fs/cgroup").unwrap();
        assert!(cgroup["options"].as_array().unwrap().contains(&serde_json::json!("rw")), "{cgroup}");
    }

    #[test]
    fn the_user_comes_from_run_as_user_else_the_image_user_looked_up_in_its_passwd() {
        let root = std::env::temp_dir().join(format!("podvisor-user-{}", std::process::id()));
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::fs::write(root.join("etc/passwd"), "root:x:0:0::/root:/bin/sh\napp:x:1000:1001::/home/app:/bin/sh\n")
            .unwrap();
        std::fs::write(root.join("etc/group"), "root:x:0:\nstaff:x:50:app\n").unwrap();
        let ctx = PodContext::default();
        let img = |u: &str| ImageConfig { user: Some(u.into()), ..Default::default() };
        let plain = c(Some(&["sh"]), None);
        assert_eq!(user(&plain, &ctx, &img("app"), &root), Ok((1000, 1001, vec![])));
        assert_eq!(user(&plain, &ctx, &img("app:staff"), &root), Ok((1000, 50, vec![])));
        assert_eq!(user(&plain, &ctx, &img("1000"), &root), Ok((1000, 1001, vec![])));
        assert_eq!(user(&plain, &ctx, &img("ghost"), &root), Err("image user \"ghost\" is not in /etc/passwd".into()));
        let mut own = plain.clone();
        own.security_context =
            Some(k8s_openapi::api::core::v1::SecurityContext { run_as_user: Some(0), ..Default::default() });
        assert_eq!(user(&own, &ctx, &img("app"), &root), Ok((0, 0, vec![])), "runAsUser wins, with its passwd group");
        std::fs::remove_dir_all(&root).unwrap();
    }
}
