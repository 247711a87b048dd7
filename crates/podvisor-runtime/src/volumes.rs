//! A pod's volumes on the host: `emptyDir` (on disk, or `medium: Memory` as a tmpfs with its
//! `sizeLimit`), `hostPath` (with its type checks), and `configMap`, `secret`, `downwardAPI` and
//! `projected` volumes written as files with their modes. Secrets live on a tmpfs, never on disk.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

use k8s_openapi::api::core::v1::{DownwardAPIVolumeFile, KeyToPath, Pod, Volume};
use rustix::mount::{MountFlags, UnmountFlags, mount, unmount};

use crate::objects::{Kind, Objects, data, field_value};

/// Why a volume could not be set up: the kubelet's `FailedMount` message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("MountVolume.SetUp failed for volume {volume:?}: {message}")]
pub struct VolumeError {
    /// The volume.
    pub volume: String,
    /// What went wrong.
    pub message: String,
}

/// Sets up every volume of `pod` under `dir` (the pod's volume directory) and returns the host
/// path of each, by volume name.
pub fn prepare(pod: &Pod, dir: &Path, objects: &dyn Objects) -> Result<HashMap<String, PathBuf>, VolumeError> {
    let mut out = HashMap::new();
    for v in pod.spec.iter().flat_map(|s| s.volumes.iter().flatten()) {
        let path = prepare_one(pod, v, &dir.join(&v.name), objects)
            .map_err(|message| VolumeError { volume: v.name.clone(), message })?;
        out.insert(v.name.clone(), path);
    }
    Ok(out)
}

/// The volumes of `pod` that containers only read (configMap, secret, downwardAPI and
/// projected): the kubelet mounts them read-only whatever the mount says.
pub fn read_only(pod: &Pod) -> std::collections::HashSet<String> {
    pod.spec
        .iter()
        .flat_map(|s| s.volumes.iter().flatten())
        .filter(|v| v.config_map.is_some() || v.secret.is_some() || v.downward_api.is_some() || v.projected.is_some())
        .map(|v| v.name.clone())
        .collect()
}

/// Unmounts and deletes the volumes under `dir` except those named in `keep` (left with their
/// files). Every volume is tried; the first that could not be deleted is the error.
pub fn release_except(dir: &Path, keep: &[String]) -> std::io::Result<()> {
    let mut first = Ok(());
    for e in fs::read_dir(dir).into_iter().flatten().flatten() {
        if keep.iter().any(|k| e.file_name() == k.as_str()) {
            continue;
        }
        // Not every volume is a mount (a configMap's is a plain directory): EINVAL is expected.
        _ = unmount(e.path(), UnmountFlags::DETACH);
        if let Err(error) = absent_is_ok(fs::remove_dir_all(e.path())) {
            first = first.and(Err(std::io::Error::new(error.kind(), format!("{}: {error}", e.path().display()))));
        }
    }
    first
}

fn absent_is_ok(r: std::io::Result<()>) -> std::io::Result<()> {
    match r {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        r => r,
    }
}

/// The on-disk emptyDir volumes of `pod` (not `medium: Memory`): what a reboot leaves.
pub fn on_disk_empty_dirs(pod: &Pod) -> Vec<String> {
    pod.spec
        .iter()
        .flat_map(|s| s.volumes.iter().flatten())
        .filter(|v| v.empty_dir.as_ref().is_some_and(|e| e.medium.as_deref() != Some("Memory")))
        .map(|v| v.name.clone())
        .collect()
}

/// Unmounts and deletes the pod's volume directory (host paths are left alone).
pub fn release(dir: &Path) -> std::io::Result<()> {
    if let Ok(entries) = fs::read_dir(dir) {
        for e in entries.flatten() {
            // Not every volume is a mount (a configMap's is a plain directory): EINVAL is expected.
            _ = unmount(e.path(), UnmountFlags::DETACH);
        }
    }
    absent_is_ok(fs::remove_dir_all(dir))
}

/// Mounts a tmpfs at `dir`: `mode` 0777 for a memory emptyDir, which containers write; 0755
/// for Secrets, which they only read (through a read-only mount).
fn tmpfs(dir: &Path, size: Option<i128>, mode: u32) -> Result<(), String> {
    fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    let mut data = format!("mode={mode:04o}");
    if let Some(bytes) = size {
        data.push_str(&format!(",size={bytes}"));
    }
    let data = std::ffi::CString::new(data).map_err(|e| e.to_string())?;
    mount("tmpfs", dir, "tmpfs", MountFlags::NOSUID | MountFlags::NODEV, data.as_c_str())
        .map_err(|e| format!("mounting a tmpfs at {}: {e}", dir.display()))
}

fn prepare_one(pod: &Pod, v: &Volume, dir: &Path, objects: &dyn Objects) -> Result<PathBuf, String> {
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    if let Some(e) = &v.empty_dir {
        if e.medium.as_deref() == Some("Memory") {
            let size = match &e.size_limit {
                Some(q) => Some(
                    (podvisor_objects::resources::parse_milli(&q.0).map_err(|_| format!("bad sizeLimit {:?}", q.0))?
                        / 1000)
                        .clamp(1, i128::from(i64::MAX)),
                ),
                None => None,
            };
            tmpfs(dir, size, 0o777)?;
        } else {
            fs::create_dir_all(dir).map_err(|e| e.to_string())?;
            fs::set_permissions(dir, fs::Permissions::from_mode(0o777)).map_err(|e| e.to_string())?;
        }
        return Ok(dir.to_path_buf());
    }
    if let Some(h) = &v.host_path {
        let p = PathBuf::from(&h.path);
        let meta = fs::metadata(&p).ok();
        let kind = h.type_.as_deref().unwrap_or("");
        let is = |f: fn(&fs::Metadata) -> bool| meta.as_ref().is_some_and(f);
        use std::os::unix::fs::FileTypeExt;
        let ok = match kind {
            "" => true,
            "DirectoryOrCreate" => {
                if meta.is_none() {
                    fs::create_dir_all(&p).map_err(|e| e.to_string())?;
                    fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).map_err(|e| e.to_string())?;
                }
                true
            }
            "FileOrCreate" => {
                if meta.is_none() {
                    fs::write(&p, b"").map_err(|e| e.to_string())?;
                    fs::set_permissions(&p, fs::Permissions::from_mode(0o644)).map_err(|e| e.to_string())?;
                }
                true
            }
            "Directory" => is(|m| m.is_dir()),
            "File" => is(|m| m.is_file()),
            "Socket" => is(|m| m.file_type().is_socket()),
            "CharDevice" => is(|m| m.file_type().is_char_device()),
            "BlockDevice" => is(|m| m.file_type().is_block_device()),
            other => return Err(format!("unsupported hostPath type {other:?}")),
        };
        if !ok {
            return Err(format!("hostPath type check failed: {} is not a {}", h.path, kind.to_lowercase()));
        }
        return Ok(p);
    }
    let mut files: Vec<(String, Vec<u8>, i32)> = Vec::new();
    let mut secret = false;
    // The files of one ConfigMap or Secret source (nothing when it is optional and missing).
    let mut source = |kind: Kind, name: &str, items: Option<&[KeyToPath]>, optional, mode| {
        secret |= kind == Kind::Secret;
        match data(objects, kind, ns, name, optional).map_err(|e| e.to_string())? {
            Some(d) => pick(&d, items, mode, kind, name),
            None => Ok(Vec::new()),
        }
    };
    if let Some(c) = &v.config_map {
        let mode = c.default_mode.unwrap_or(0o644);
        files = source(Kind::ConfigMap, &c.name, c.items.as_deref(), c.optional, mode)?;
    } else if let Some(s) = &v.secret {
        let (mode, name) = (s.default_mode.unwrap_or(0o644), s.secret_name.clone().unwrap_or_default());
        files = source(Kind::Secret, &name, s.items.as_deref(), s.optional, mode)?;
    } else if let Some(d) = &v.downward_api {
        files = downward(pod, d.items.iter().flatten(), d.default_mode.unwrap_or(0o644))?;
    } else if let Some(p) = &v.projected {
        let mode = p.default_mode.unwrap_or(0o644);
        for src in p.sources.iter().flatten() {
            files.extend(if let Some(c) = &src.config_map {
                source(Kind::ConfigMap, &c.name, c.items.as_deref(), c.optional, mode)?
            } else if let Some(s) = &src.secret {
                source(Kind::Secret, &s.name, s.items.as_deref(), s.optional, mode)?
            } else if let Some(d) = &src.downward_api {
                downward(pod, d.items.iter().flatten(), mode)?
            } else {
                return Err("only configMap, secret and downwardAPI projections are supported".into());
            });
        }
    } else {
        return Err(
            "this volume type is not supported (emptyDir, hostPath, configMap, secret, downwardAPI and projected are)"
                .into(),
        );
    }
    if secret {
        tmpfs(dir, None, 0o755)?;
    } else {
        fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    }
    for (rel, data, mode) in files {
        let rel = safe(&rel).ok_or_else(|| format!("invalid path {rel:?}"))?;
        let target = dir.join(rel);
        if let Some(parent) = target.parent() {
            fs::create_dir_all(parent).map_err(|e| e.to_string())?;
        }
        fs::write(&target, &data).map_err(|e| format!("{}: {e}", target.display()))?;
        fs::set_permissions(&target, fs::Permissions::from_mode(mode as u32 & 0o777)).map_err(|e| e.to_string())?;
    }
    Ok(dir.to_path_buf())
}

/// A relative path that stays inside its volume.
fn safe(rel: &str) -> Option<PathBuf> {
    let p = Path::new(rel);
    p.components().all(|c| matches!(c, Component::Normal(_))).then(|| p.to_path_buf())
}

fn pick(
    data: &BTreeMap<String, Vec<u8>>,
    items: Option<&[KeyToPath]>,
    default_mode: i32,
    kind: Kind,
    name: &str,
) -> Result<Vec<(String, Vec<u8>, i32)>, String> {
    match items {
        None => Ok(data.iter().map(|(k, v)| (k.clone(), v.clone(), default_mode)).collect()),
        Some(items) => items
            .iter()
            .map(|i| match data.get(&i.key) {
                Some(v) => Ok((i.path.clone(), v.clone(), i.mode.unwrap_or(default_mode))),
                None => Err(format!("{} {name:?}: no key {:?}", kind.title(), i.key)),
            })
            .collect(),
    }
}

fn downward<'a>(
    pod: &Pod,
    items: impl Iterator<Item = &'a DownwardAPIVolumeFile>,
    default_mode: i32,
) -> Result<Vec<(String, Vec<u8>, i32)>, String> {
    items
        .map(|i| {
            let value = match (&i.field_ref, &i.resource_field_ref) {
                (Some(f), _) => {
                    field_value(pod, &f.field_path).ok_or_else(|| format!("unsupported fieldRef {:?}", f.field_path))?
                }
                (None, Some(_)) => return Err("downwardAPI resourceFieldRef files are not supported yet".to_string()),
                (None, None) => String::new(),
            };
            Ok((i.path.clone(), value.into_bytes(), i.mode.unwrap_or(default_mode)))
        })
        .collect()
}
