//! Seccomp profiles as the kubelet asks for them (`securityContext.seccompProfile`) and
//! containerd makes them: `RuntimeDefault` is containerd's default profile, written here in
//! podvisor's own form (the syscall list in `seccomp/allowed.txt`, the conditional rules below);
//! `Localhost` loads an OCI profile from the node's seccomp directory; `Unconfined` is none.
//!
//! As in containerd, the profile depends on the container's bounding capabilities (a capability
//! allows the syscalls it is about), and privileged containers run without a filter.

use std::path::{Path, PathBuf};

use oci_spec::runtime::LinuxSeccomp;
use serde_json::{Value, json};

/// Why a container's seccomp profile could not be made.
#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    /// `Localhost` without `localhostProfile`, or one that leaves the seccomp directory.
    #[error("seccompProfile: localhostProfile {0:?} must be a relative path below the node's seccomp directory")]
    BadPath(String),
    /// The `Localhost` profile cannot be read.
    #[error("failed to generate seccomp security profile: reading {path}: {error}")]
    Read {
        /// The profile's file.
        path: PathBuf,
        /// The error.
        error: std::io::Error,
    },
    /// The `Localhost` profile is not an OCI seccomp profile.
    #[error("failed to generate seccomp security profile: {path}: not an OCI seccomp profile: {error}")]
    Parse {
        /// The profile's file.
        path: PathBuf,
        /// The error.
        error: String,
    },
    /// The built-in profile is not of the OCI form (a mistake in its table).
    #[error("the RuntimeDefault seccomp profile is malformed: {0}")]
    Table(String),
    /// A type podvisor does not know.
    #[error("seccompProfile: type {0:?} is not supported: RuntimeDefault, Localhost or Unconfined")]
    Type(String),
}

/// The syscalls allowed whatever the capabilities.
const ALLOWED: &str = include_str!("seccomp/allowed.txt");

/// The syscalls each capability allows besides: having it in the bounding set is what lets
/// them through, as in containerd's profile.
const BY_CAPABILITY: &[(&str, &[&str])] = &[
    ("CAP_DAC_READ_SEARCH", &["open_by_handle_at"]),
    (
        "CAP_SYS_ADMIN",
        &[
            "bpf",
            "clone",
            "clone3",
            "fanotify_init",
            "fsconfig",
            "fsmount",
            "fsopen",
            "fspick",
            "lookup_dcookie",
            "mount",
            "mount_setattr",
            "move_mount",
            "open_tree",
            "perf_event_open",
            "quotactl",
            "quotactl_fd",
            "setdomainname",
            "sethostname",
            "setns",
            "syslog",
            "umount",
            "umount2",
            "unshare",
        ],
    ),
    ("CAP_SYS_BOOT", &["reboot"]),
    ("CAP_SYS_CHROOT", &["chroot"]),
    ("CAP_SYS_MODULE", &["delete_module", "init_module", "finit_module"]),
    ("CAP_SYS_PACCT", &["acct"]),
    ("CAP_SYS_PTRACE", &["kcmp", "pidfd_getfd", "process_madvise", "process_vm_readv", "process_vm_writev", "ptrace"]),
    ("CAP_SYS_RAWIO", &["iopl", "ioperm"]),
    ("CAP_SYS_TIME", &["settimeofday", "stime", "clock_settime", "clock_settime64"]),
    ("CAP_SYS_TTY_CONFIG", &["vhangup"]),
    ("CAP_SYS_NICE", &["get_mempolicy", "mbind", "set_mempolicy", "set_mempolicy_home_node"]),
    ("CAP_SYSLOG", &["syslog"]),
    ("CAP_BPF", &["bpf"]),
    ("CAP_PERFMON", &["perf_event_open"]),
];

/// `personality(2)` personas a container may switch to (Linux, 32-bit Linux, `UNAME26`, both),
/// and the query `0xffffffff`.
const PERSONAS: [u64; 5] = [0x0, 0x8, 0x20000, 0x20008, 0xffff_ffff];

/// The namespace flags of `clone(2)`: without `CAP_SYS_ADMIN`, a clone asking for any is refused.
const CLONE_NAMESPACES: u64 = 0x7E02_0000;

/// Socket families the profile refuses: `AF_ALG` (38) and `AF_VSOCK` (40).
const AF_ALG: u64 = 38;
const AF_VSOCK: u64 = 40;

/// `ENOSYS`, which `clone3` gets so that the C library falls back to `clone`, whose flags the
/// filter can see.
const ENOSYS: u32 = 38;

/// The syscall names of the unconditional rule.
pub fn allowed() -> impl Iterator<Item = &'static str> {
    ALLOWED.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#'))
}

fn allow(names: &[&str]) -> Value {
    json!({"names": names, "action": "SCMP_ACT_ALLOW"})
}

fn allow_if(name: &str, op: &str, value: u64) -> Value {
    json!({"names": [name], "action": "SCMP_ACT_ALLOW", "args": [{"index": 0, "value": value, "op": op}]})
}

/// The architectures of this machine's build, as containerd lists them for its own.
fn architectures() -> Vec<&'static str> {
    if cfg!(target_arch = "x86_64") {
        vec!["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]
    } else if cfg!(target_arch = "aarch64") {
        vec!["SCMP_ARCH_ARM", "SCMP_ARCH_AARCH64"]
    } else {
        Vec::new()
    }
}

/// Syscalls of this architecture only.
fn arch_specific() -> &'static [&'static str] {
    if cfg!(target_arch = "x86_64") {
        &["arch_prctl", "modify_ldt"]
    } else if cfg!(target_arch = "aarch64") {
        &["arm_fadvise64_64", "arm_sync_file_range", "sync_file_range2", "breakpoint", "cacheflush", "set_tls"]
    } else {
        &[]
    }
}

/// The `RuntimeDefault` profile of a container whose bounding set is `bounding` (names such as
/// `CAP_SYS_ADMIN`).
pub fn runtime_default(bounding: &[String]) -> Result<LinuxSeccomp, SeccompError> {
    let mut rules = vec![allow(&allowed().collect::<Vec<_>>())];
    // Every family but AF_ALG and AF_VSOCK: three rules of one condition each, since two
    // conditions on one argument would be joined by "or" and let both through.
    rules.push(allow_if("socket", "SCMP_CMP_LT", AF_ALG));
    rules.push(allow_if("socket", "SCMP_CMP_EQ", AF_ALG + 1));
    rules.push(allow_if("socket", "SCMP_CMP_GT", AF_VSOCK));
    for p in PERSONAS {
        rules.push(allow_if("personality", "SCMP_CMP_EQ", p));
    }
    // Kernels since 4.8 check ptrace against seccomp themselves.
    rules.push(allow(&["process_vm_readv", "process_vm_writev", "ptrace"]));
    if !arch_specific().is_empty() {
        rules.push(allow(arch_specific()));
    }
    for (cap, names) in BY_CAPABILITY {
        if bounding.iter().any(|b| b == cap) {
            rules.push(allow(names));
        }
    }
    if !bounding.iter().any(|b| b == "CAP_SYS_ADMIN") {
        rules.push(json!({"names": ["clone"], "action": "SCMP_ACT_ALLOW",
            "args": [{"index": 0, "value": CLONE_NAMESPACES, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}]}));
        rules.push(json!({"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": ENOSYS}));
    }
    let profile = json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "architectures": architectures(),
        "syscalls": rules,
    });
    serde_json::from_value(profile).map_err(|e| SeccompError::Table(e.to_string()))
}

/// A profile as `securityContext.seccompProfile` names it (the container's, else the pod's,
/// else the node's default: `RuntimeDefault` with `--default-seccomp`, `Unconfined` without).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Profile {
    /// No filter.
    Unconfined,
    /// The runtime's default profile.
    RuntimeDefault,
    /// A file below the node's seccomp directory.
    Localhost(String),
}

impl Profile {
    /// The profile of the API's `SeccompProfile`.
    pub fn of(p: &k8s_openapi::api::core::v1::SeccompProfile) -> Result<Profile, SeccompError> {
        match p.type_.as_str() {
            "Unconfined" => Ok(Profile::Unconfined),
            "RuntimeDefault" => Ok(Profile::RuntimeDefault),
            "Localhost" => Ok(Profile::Localhost(p.localhost_profile.clone().unwrap_or_default())),
            other => Err(SeccompError::Type(other.into())),
        }
    }

    /// The OCI section for this profile (`None`: no filter), for a container with bounding set
    /// `bounding`; `Localhost` profiles are read from below `dir`.
    pub fn load(&self, bounding: &[String], dir: &Path) -> Result<Option<LinuxSeccomp>, SeccompError> {
        match self {
            Profile::Unconfined => Ok(None),
            Profile::RuntimeDefault => runtime_default(bounding).map(Some),
            Profile::Localhost(rel) => {
                let parts = crate::subpath::components(rel).map_err(|_| SeccompError::BadPath(rel.clone()))?;
                if parts.is_empty() {
                    return Err(SeccompError::BadPath(rel.clone()));
                }
                let path = dir.join(parts.join("/"));
                let text = read_beneath(dir, &parts.join("/"))
                    .map_err(|error| SeccompError::Read { path: path.clone(), error })?;
                serde_json::from_slice(&text).map(Some).map_err(|e| SeccompError::Parse { path, error: e.to_string() })
            }
        }
    }
}

/// The most a profile file may hold.
const MAX_PROFILE: u64 = 1 << 20;

/// Reads `rel` below `dir` without following a symlink out of it, at most [`MAX_PROFILE`] bytes.
fn read_beneath(dir: &Path, rel: &str) -> std::io::Result<Vec<u8>> {
    use rustix::fs::{Mode, OFlags, ResolveFlags};
    use std::io::Read;
    let root = rustix::fs::open(dir, OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())?;
    let fd = rustix::fs::openat2(
        &root,
        rel,
        OFlags::RDONLY | OFlags::CLOEXEC,
        Mode::empty(),
        ResolveFlags::BENEATH | ResolveFlags::NO_MAGICLINKS,
    )?;
    let mut out = Vec::new();
    std::fs::File::from(fd).take(MAX_PROFILE + 1).read_to_end(&mut out)?;
    if out.len() as u64 > MAX_PROFILE {
        return Err(std::io::Error::other(format!("larger than {MAX_PROFILE} bytes")));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(p: &LinuxSeccomp) -> Vec<Value> {
        serde_json::to_value(p).unwrap()["syscalls"].as_array().unwrap().clone()
    }

    fn allowed_plainly(p: &LinuxSeccomp, name: &str) -> bool {
        rules(p).iter().any(|r| {
            r["action"] == "SCMP_ACT_ALLOW"
                && r.get("args").is_none_or(|a| a.as_array().is_none_or(Vec::is_empty))
                && r["names"].as_array().unwrap().iter().any(|n| n == name)
        })
    }

    const DEFAULT_CAPS: [&str; 14] = [
        "CAP_CHOWN",
        "CAP_DAC_OVERRIDE",
        "CAP_FSETID",
        "CAP_FOWNER",
        "CAP_MKNOD",
        "CAP_NET_RAW",
        "CAP_SETGID",
        "CAP_SETUID",
        "CAP_SETFCAP",
        "CAP_SETPCAP",
        "CAP_NET_BIND_SERVICE",
        "CAP_SYS_CHROOT",
        "CAP_KILL",
        "CAP_AUDIT_WRITE",
    ];

    fn default_caps() -> Vec<String> {
        DEFAULT_CAPS.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn the_list_has_containerds_syscalls_once_each() {
        let names: Vec<&str> = allowed().collect();
        assert_eq!(names.len(), 363);
        let set: std::collections::BTreeSet<&str> = names.iter().copied().collect();
        assert_eq!(set.len(), names.len(), "no name twice");
        for common in ["read", "write", "execve", "openat", "mmap", "exit_group", "futex", "socketcall", "seccomp"] {
            assert!(set.contains(common), "{common}");
        }
    }

    #[test]
    fn what_containerds_profile_refuses_is_refused() {
        let p = runtime_default(&default_caps()).unwrap();
        assert_eq!(serde_json::to_value(&p).unwrap()["defaultAction"], "SCMP_ACT_ERRNO");
        for refused in [
            "unshare",
            "mount",
            "umount2",
            "setns",
            "keyctl",
            "add_key",
            "request_key",
            "bpf",
            "perf_event_open",
            "reboot",
            "swapon",
            "kexec_load",
            "init_module",
            "open_by_handle_at",
            "userfaultfd",
            "io_uring_setup",
            "pivot_root",
            "clock_settime",
            "sethostname",
        ] {
            assert!(!allowed_plainly(&p, refused), "{refused} must be refused");
        }
        // With the default capabilities, chroot is allowed (CAP_SYS_CHROOT), and ptrace (kernel).
        assert!(allowed_plainly(&p, "chroot"));
        assert!(allowed_plainly(&p, "ptrace"));
    }

    #[test]
    fn conditional_rules_follow_the_capabilities() {
        let plain = runtime_default(&default_caps()).unwrap();
        let r = rules(&plain);
        let clone = r.iter().find(|r| r["names"] == json!(["clone"])).expect("a clone rule");
        assert_eq!(clone["args"][0]["op"], "SCMP_CMP_MASKED_EQ");
        assert_eq!(clone["args"][0]["value"], 0x7E02_0000u64);
        let clone3 = r.iter().find(|r| r["names"] == json!(["clone3"])).expect("a clone3 rule");
        assert_eq!((clone3["action"].as_str(), clone3["errnoRet"].as_u64()), (Some("SCMP_ACT_ERRNO"), Some(38)));
        let sockets: Vec<_> = r.iter().filter(|r| r["names"] == json!(["socket"])).collect();
        assert_eq!(sockets.len(), 3, "one condition per rule");
        let mut admin = default_caps();
        admin.push("CAP_SYS_ADMIN".into());
        let admin = runtime_default(&admin).unwrap();
        for now in ["mount", "unshare", "setns", "clone", "clone3"] {
            assert!(allowed_plainly(&admin, now), "{now} with CAP_SYS_ADMIN");
        }
        assert!(!rules(&admin).iter().any(|r| r["names"] == json!(["clone3"])), "no ENOSYS rule with CAP_SYS_ADMIN");
        let none = runtime_default(&[]).unwrap();
        assert!(!allowed_plainly(&none, "chroot"), "no CAP_SYS_CHROOT, no chroot");
    }

    #[test]
    fn localhost_profiles_are_read_below_the_directory_only() {
        let dir = std::env::temp_dir().join(format!("podvisor-seccomp-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("profiles")).unwrap();
        std::fs::write(
            dir.join("profiles/deny-mkdir.json"),
            r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["mkdir","mkdirat"],"action":"SCMP_ACT_ERRNO"}]}"#,
        )
        .unwrap();
        std::os::unix::fs::symlink("/etc/passwd", dir.join("profiles/out.json")).unwrap();
        let local = |p: &str| Profile::Localhost(p.into()).load(&[], &dir);
        let p = local("profiles/deny-mkdir.json").unwrap().unwrap();
        assert_eq!(serde_json::to_value(&p).unwrap()["syscalls"][0]["names"], json!(["mkdir", "mkdirat"]));
        assert!(matches!(local("../x.json"), Err(SeccompError::BadPath(_))));
        assert!(matches!(local("/etc/passwd"), Err(SeccompError::BadPath(_))));
        assert!(matches!(local("profiles/out.json"), Err(SeccompError::Read { .. })), "a symlink out is refused");
        assert!(matches!(local("profiles/absent.json"), Err(SeccompError::Read { .. })));
        assert_eq!(Profile::Unconfined.load(&[], &dir).unwrap(), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
