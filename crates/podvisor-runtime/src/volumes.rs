//! A pod's volumes on the host: `emptyDir` (on disk, or `medium: Memory` as a tmpfs with its
//! `sizeLimit`), `hostPath` (with its type checks), and `configMap`, `secret`, `downwardAPI` and
//! `projected` volumes written as files with their modes. Secrets live on a tmpfs, never on disk.
//!
//! Files of API objects are written as the kubelet's atomic writer writes them: into a new
//! timestamped directory, made current by renaming the `..data` symlink over the old one, with
//! each visible name a symlink through `..data`. A container reading the volume sees the old
//! files or the new, never a mix; [`refresh`] rewrites them when a ConfigMap or Secret
//! changes (a `subPath` mount keeps the file it bound, as upstream).

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
/// projected, and a claim mounted `readOnly`): the kubelet mounts them read-only whatever the
/// mount says.
pub fn read_only(pod: &Pod) -> std::collections::HashSet<String> {
    pod.spec
        .iter()
        .flat_map(|s| s.volumes.iter().flatten())
        .filter(|v| {
            v.config_map.is_some()
                || v.secret.is_some()
                || v.downward_api.is_some()
                || v.projected.is_some()
                || v.persistent_volume_claim.as_ref().is_some_and(|c| c.read_only == Some(true))
        })
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
    if let Some(c) = &v.persistent_volume_claim {
        // The claim's volume is a directory on this machine (a local-path or hostPath volume),
        // made on first use, writable by any user as the local-path provisioner makes it.
        let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
        let p = objects.claim_path(ns, &c.claim_name)?;
        if fs::symlink_metadata(&p).is_err() {
            fs::create_dir_all(&p).map_err(|e| format!("{}: {e}", p.display()))?;
            fs::set_permissions(&p, fs::Permissions::from_mode(0o777)).map_err(|e| format!("{}: {e}", p.display()))?;
        }
        return Ok(p);
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
    let (files, secret) = object_files(pod, v, objects)?;
    if secret {
        tmpfs(dir, None, 0o755)?;
    } else {
        fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    }
    write_atomic(dir, &files)?;
    Ok(dir.to_path_buf())
}

/// One file of an API-object volume: its path in the volume, its bytes and its mode.
type File = (String, Vec<u8>, i32);

/// The files a configMap, secret, downwardAPI or projected volume holds now, and whether any
/// comes from a Secret or is a token (the volume is then a tmpfs).
fn object_files(pod: &Pod, v: &Volume, objects: &dyn Objects) -> Result<(Vec<File>, bool), String> {
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    let mut files: Vec<File> = Vec::new();
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
            } else if let Some(t) = &src.service_account_token {
                let token =
                    objects.service_account_token(pod, t.audience.as_deref(), t.expiration_seconds.unwrap_or(3600))?;
                vec![(t.path.clone(), token.into_bytes(), mode)]
            } else {
                return Err(
                    "only configMap, secret, downwardAPI and serviceAccountToken projections are supported".into()
                );
            });
        }
    } else {
        return Err(
            "this volume type is not supported (emptyDir, hostPath, persistentVolumeClaim, configMap, secret, downwardAPI and projected are)"
                .into(),
        );
    }
    // A token is a secret too: its volume is a tmpfs.
    let token = v.projected.iter().flat_map(|p| p.sources.iter().flatten()).any(|s| s.service_account_token.is_some());
    Ok((files, secret || token))
}

/// The symlink that names the current data directory of a volume.
const DATA: &str = "..data";

/// Writes `files` into `dir` as the kubelet's atomic writer does; nothing is written when they
/// are what `dir` already holds. Returns whether anything changed.
fn write_atomic(dir: &Path, files: &[File]) -> Result<bool, String> {
    // One writer at a time: a pod's start and a refresh of its volumes may meet.
    static WRITING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one = WRITING.lock().unwrap_or_else(|e| e.into_inner());
    let io = |what: &Path| {
        let what = what.display().to_string();
        move |e: std::io::Error| format!("{what}: {e}")
    };
    let current = fs::read_link(dir.join(DATA)).ok().map(|t| dir.join(t));
    if let Some(cur) = &current
        && same_files(cur, files)
    {
        return Ok(false);
    }
    let stamp = jiff::Timestamp::now().strftime("..%Y_%m_%d_%H_%M_%S.%f").to_string();
    let fresh = dir.join(&stamp);
    fs::create_dir(&fresh).map_err(io(&fresh))?;
    for (rel, data, mode) in files {
        let rel = safe(rel).ok_or_else(|| format!("invalid path {rel:?}"))?;
        let target = fresh.join(rel);
        if let Some(parent) = target.parent() {
            fs::create_dir_all(parent).map_err(io(parent))?;
        }
        fs::write(&target, data).map_err(io(&target))?;
        fs::set_permissions(&target, fs::Permissions::from_mode(*mode as u32 & 0o777)).map_err(io(&target))?;
    }
    fs::set_permissions(&fresh, fs::Permissions::from_mode(0o755)).map_err(io(&fresh))?;
    // The switch: a new symlink renamed over `..data` in one step.
    let tmp = dir.join("..data_tmp");
    match fs::remove_file(&tmp) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io(&tmp)(e)),
        _ => {}
    }
    std::os::unix::fs::symlink(&stamp, &tmp).map_err(io(&tmp))?;
    fs::rename(&tmp, dir.join(DATA)).map_err(io(&tmp))?;
    // Every visible name goes through `..data`; names no longer there go.
    let visible: std::collections::BTreeSet<String> =
        files.iter().filter_map(|(rel, _, _)| rel.split('/').next().map(str::to_string)).collect();
    for name in &visible {
        let link = dir.join(name);
        if fs::symlink_metadata(&link).is_err() {
            std::os::unix::fs::symlink(Path::new(DATA).join(name), &link).map_err(io(&link))?;
        }
    }
    for e in fs::read_dir(dir).map_err(io(dir))?.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let stale_link = !name.starts_with("..") && !visible.contains(&name);
        let old_data = name.starts_with("..") && name != DATA && name != stamp;
        if stale_link {
            fs::remove_file(e.path()).map_err(io(&e.path()))?;
        } else if old_data && e.file_type().is_ok_and(|t| t.is_dir()) {
            fs::remove_dir_all(e.path()).map_err(io(&e.path()))?;
        }
    }
    Ok(true)
}

/// Whether the data directory `cur` holds exactly `files`, with their modes.
fn same_files(cur: &Path, files: &[File]) -> bool {
    let mut count = 0;
    for (rel, data, mode) in files {
        // A path that would leave the volume is never read (`write_atomic` refuses it too).
        let Some(rel) = safe(rel) else { return false };
        let path = cur.join(rel);
        let ok = fs::read(&path).is_ok_and(|d| d == *data)
            && fs::metadata(&path).is_ok_and(|m| m.permissions().mode() & 0o777 == (*mode as u32 & 0o777));
        if !ok {
            return false;
        }
        count += 1;
    }
    fn walk(p: &Path) -> usize {
        fs::read_dir(p)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| if e.file_type().is_ok_and(|t| t.is_dir()) { walk(&e.path()) } else { 1 })
            .sum()
    }
    walk(cur) == count
}

/// Whether volume `v` reads the object `kind` `name` (as a whole, or as a projection source).
fn reads(v: &Volume, kind: Kind, name: &str) -> bool {
    let is = |k: Kind, n: &str| k == kind && n == name;
    v.config_map.as_ref().is_some_and(|c| is(Kind::ConfigMap, &c.name))
        || v.secret.as_ref().is_some_and(|s| is(Kind::Secret, s.secret_name.as_deref().unwrap_or("")))
        || v.projected.iter().flat_map(|p| p.sources.iter().flatten()).any(|src| {
            src.config_map.as_ref().is_some_and(|c| is(Kind::ConfigMap, &c.name))
                || src.secret.as_ref().is_some_and(|s| is(Kind::Secret, &s.name))
        })
}

/// Rewrites the volumes of `pod` (set up under `dir`) that read ConfigMap or Secret `name`,
/// after it changed, as the kubelet's volume manager does (here at once, not within a
/// minute). Returns the names of the volumes that changed, and the errors of those that could
/// not be rewritten (their files stay as they were).
pub fn refresh(
    pod: &Pod,
    dir: &Path,
    objects: &dyn Objects,
    kind: Kind,
    name: &str,
) -> (Vec<String>, Vec<VolumeError>) {
    let (mut changed, mut errors) = (Vec::new(), Vec::new());
    for v in pod.spec.iter().flat_map(|s| s.volumes.iter().flatten()).filter(|v| reads(v, kind, name)) {
        let vdir = dir.join(&v.name);
        if !vdir.is_dir() {
            continue;
        }
        match object_files(pod, v, objects).and_then(|(files, _)| write_atomic(&vdir, &files)) {
            Ok(true) => changed.push(v.name.clone()),
            Ok(false) => {}
            Err(message) => errors.push(VolumeError { volume: v.name.clone(), message }),
        }
    }
    (changed, errors)
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

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{ConfigMap, Secret};
    use std::sync::Mutex;

    struct One(Mutex<ConfigMap>);

    impl Objects for One {
        fn config_map(&self, _: &str, name: &str) -> Option<ConfigMap> {
            let cm = self.0.lock().unwrap().clone();
            (cm.metadata.name.as_deref() == Some(name)).then_some(cm)
        }
        fn secret(&self, _: &str, _: &str) -> Option<Secret> {
            None
        }
    }

    fn cm(data: &[(&str, &str)]) -> ConfigMap {
        serde_json::from_value(serde_json::json!({"metadata": {"name": "settings"},
            "data": data.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<BTreeMap<_, _>>()}))
        .unwrap()
    }

    /// #17: an edited ConfigMap reaches its volume at once through the `..data` switch: the
    /// new key appears, the removed one goes, the old data directory is gone, and a second
    /// refresh with nothing new writes nothing.
    #[test]
    fn a_configmap_volume_follows_edits_through_the_data_symlink() {
        let root = std::env::temp_dir().join(format!("podvisor-atomic-{}", std::process::id()));
        _ = fs::remove_dir_all(&root);
        fs::create_dir_all(&root).unwrap();
        let pod: Pod = serde_json::from_value(serde_json::json!({"metadata": {"name": "p", "namespace": "default"},
            "spec": {"containers": [], "volumes": [{"name": "cfg", "configMap": {"name": "settings"}}]}}))
        .unwrap();
        let objects = One(Mutex::new(cm(&[("mode", "fast"), ("old", "1")])));
        let volumes = prepare(&pod, &root, &objects).unwrap();
        let dir = &volumes["cfg"];
        assert_eq!(fs::read_to_string(dir.join("mode")).unwrap(), "fast");
        assert_eq!(fs::read_link(dir.join("mode")).unwrap(), Path::new("..data/mode"));
        let first = fs::read_link(dir.join(DATA)).unwrap();
        *objects.0.lock().unwrap() = cm(&[("mode", "slow"), ("new", "2")]);
        let (changed, errors) = refresh(&pod, &root, &objects, Kind::ConfigMap, "settings");
        assert_eq!((changed, errors), (vec!["cfg".to_string()], vec![]));
        assert_eq!(fs::read_to_string(dir.join("mode")).unwrap(), "slow");
        assert_eq!(fs::read_to_string(dir.join("new")).unwrap(), "2");
        assert!(fs::symlink_metadata(dir.join("old")).is_err(), "a removed key goes");
        assert!(!dir.join(&first).exists(), "the old data directory goes");
        assert_eq!(refresh(&pod, &root, &objects, Kind::ConfigMap, "settings").0, Vec::<String>::new());
        assert_eq!(refresh(&pod, &root, &objects, Kind::ConfigMap, "other").0, Vec::<String>::new());
        fs::remove_dir_all(&root).unwrap();
    }
}
