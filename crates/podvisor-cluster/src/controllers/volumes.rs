//! Persistent volumes, as the PV controller and a local-path provisioner keep them on one node:
//!
//! - A claim of a class whose provisioner is [`PROVISIONER`] gets a new volume: a directory
//!   `<data-dir>/local-path/pvc-<uid>_<namespace>_<name>` the kubelet makes on first use. With
//!   `WaitForFirstConsumer` (the default class's mode) that happens once the scheduler has
//!   picked the node for a pod that uses the claim (`volume.kubernetes.io/selected-node`).
//! - A claim with no class (`""`), or that names a volume, is bound to an Available volume that
//!   fits (capacity, access modes, class), as the binder does.
//! - A volume whose claim is gone is `Released`; with `reclaimPolicy: Delete` it is deleted,
//!   and a provisioned one's directory with it.
//! - The protection finalizers go when nothing uses the object: a claim no live pod mounts, a
//!   volume no claim is bound to.

use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use podvisor_objects::kinds::Resource;
use serde_json::{Value, json};

use super::{Action, Ctx, Error, decode, involved};
use crate::admission::{PV_PROTECTION, PVC_PROTECTION};
use crate::store::{Key, StoreError};
use crate::values::is_deleting;

/// The provisioner of the default StorageClass: directories under the data directory.
pub const PROVISIONER: &str = "podvisor/local-path";

/// The annotation the scheduler puts on a `WaitForFirstConsumer` claim.
pub const SELECTED_NODE: &str = "volume.kubernetes.io/selected-node";

const COMPONENT: &str = "persistentvolume-controller";

/// The default StorageClass every cluster of this node has.
pub fn default_class() -> Value {
    json!({"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
           "metadata": {"name": "standard", "annotations": {crate::admission::DEFAULT_CLASS: "true"}},
           "provisioner": PROVISIONER, "reclaimPolicy": "Delete", "volumeBindingMode": "WaitForFirstConsumer"})
}

fn text<'a>(v: &'a Value, p: &str) -> &'a str {
    v.pointer(p).and_then(Value::as_str).unwrap_or("")
}

/// Whether a live (not finished) pod of `namespace` mounts claim `name`.
pub(crate) fn claim_in_use(ctx: &Ctx, namespace: &str, name: &str) -> bool {
    ctx.store.list(Resource::Pods, Some(namespace)).0.iter().any(|p| {
        !crate::values::is_terminal(p)
            && p.pointer("/spec/volumes")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .any(|v| text(v, "/persistentVolumeClaim/claimName") == name)
    })
}

fn drop_finalizer(ctx: &Ctx, key: &Key, finalizer: &str) -> Result<(), Error> {
    let written = ctx.store.update::<StoreError>(key, |v| {
        if let Some(f) = v.pointer_mut("/metadata/finalizers").and_then(Value::as_array_mut) {
            f.retain(|x| x != finalizer);
        }
        Ok(())
    });
    match written {
        Ok(_) | Err(StoreError::NotFound(_)) => {}
        Err(e) => return Err(Error::store("removing a protection finalizer of", key, e)),
    }
    // The last finalizer gone, a deleted object goes.
    if let Some(o) = ctx.store.get(key)
        && is_deleting(&o)
        && o.pointer("/metadata/finalizers").and_then(Value::as_array).is_none_or(Vec::is_empty)
    {
        match ctx.store.remove(key) {
            Ok(_) | Err(StoreError::NotFound(_)) => {}
            Err(e) => return Err(Error::store("removing", key, e)),
        }
    }
    Ok(())
}

/// The storage a claim asks for, as written (`1Gi`).
fn request(claim: &PersistentVolumeClaim) -> String {
    claim
        .spec
        .as_ref()
        .and_then(|s| s.resources.as_ref())
        .and_then(|r| r.requests.as_ref())
        .and_then(|r| r.get("storage"))
        .map(|q| q.0.clone())
        .unwrap_or_else(|| "0".into())
}

fn milli(q: &str) -> i128 {
    podvisor_objects::resources::parse_milli(q).unwrap_or(0)
}

/// Reconciles a claim: binds or provisions it, and lets it go once unused.
pub(crate) fn reconcile_claim(ctx: &Ctx, key: &Key, obj: &Value) -> Result<Action, Error> {
    if is_deleting(obj) {
        if !claim_in_use(ctx, &key.namespace, &key.name) {
            drop_finalizer(ctx, key, PVC_PROTECTION)?;
        }
        return Ok(Action::await_change());
    }
    if text(obj, "/status/phase") == "Bound" {
        return Ok(Action::await_change());
    }
    let claim: PersistentVolumeClaim = decode(&ctx.store, Resource::PersistentVolumeClaims, obj)?;
    let spec = claim.spec.clone().unwrap_or_default();
    let about = involved(Resource::PersistentVolumeClaims, &claim.metadata);
    let class = spec.storage_class_name.clone().unwrap_or_default();
    // A volume named by the claim, or one that fits a claim of no dynamic class.
    let wanted = spec.volume_name.clone().filter(|n| !n.is_empty());
    if wanted.is_some() || class.is_empty() || ctx.store.get(&Key::new(Resource::StorageClasses, "", &class)).is_none()
    {
        if let Some(pv) = find_volume(ctx, &claim, wanted.as_deref(), &class) {
            return bind(ctx, key, &claim, &pv).map(|()| Action::await_change());
        }
        let message = if !class.is_empty() && wanted.is_none() {
            format!("storageclass.storage.k8s.io \"{class}\" not found")
        } else {
            "no persistent volumes available for this claim and no storage class is set".into()
        };
        let reason = if class.is_empty() || wanted.is_some() { "FailedBinding" } else { "ProvisioningFailed" };
        ctx.recorder.record(&about, "Warning", reason, &message, COMPONENT);
        return Ok(Action::await_change());
    }
    let class_obj = ctx.store.get(&Key::new(Resource::StorageClasses, "", &class)).unwrap_or_default();
    if text(&class_obj, "/provisioner") != PROVISIONER {
        let message = format!(
            "Waiting for a volume to be created either by the external provisioner '{}' or manually by the system administrator. If volume creation is delayed, please verify that the provisioner is running and correctly registered.",
            text(&class_obj, "/provisioner")
        );
        ctx.recorder.record(&about, "Normal", "ExternalProvisioning", &message, COMPONENT);
        return Ok(Action::await_change());
    }
    let waits = text(&class_obj, "/volumeBindingMode") == "WaitForFirstConsumer";
    let selected = claim.metadata.annotations.as_ref().and_then(|a| a.get(SELECTED_NODE)).cloned();
    if waits && selected.is_none() {
        ctx.recorder.record(
            &about,
            "Normal",
            "WaitForFirstConsumer",
            "waiting for first consumer to be created before binding",
            COMPONENT,
        );
        return Ok(Action::await_change());
    }
    provision(ctx, key, &claim, &class_obj, selected.as_deref())?;
    Ok(Action::await_change())
}

/// An Available volume that fits `claim`: the one named, else the smallest of its class whose
/// capacity and access modes cover the claim's.
fn find_volume(ctx: &Ctx, claim: &PersistentVolumeClaim, named: Option<&str>, class: &str) -> Option<PersistentVolume> {
    let spec = claim.spec.clone().unwrap_or_default();
    let want = milli(&request(claim));
    let modes = spec.access_modes.clone().unwrap_or_default();
    let (volumes, _) = ctx.store.list(Resource::PersistentVolumes, None);
    let mut fits: Vec<PersistentVolume> = volumes
        .iter()
        .filter(|v| !is_deleting(v))
        .filter_map(|v| decode::<PersistentVolume>(&ctx.store, Resource::PersistentVolumes, v).ok())
        .filter(|pv| {
            let s = pv.spec.clone().unwrap_or_default();
            let free = s.claim_ref.as_ref().is_none_or(|r| {
                r.name.as_deref() == claim.metadata.name.as_deref()
                    && r.namespace.as_deref() == claim.metadata.namespace.as_deref()
            });
            let phase_ok = pv
                .status
                .as_ref()
                .and_then(|s| s.phase.as_deref())
                .is_none_or(|p| matches!(p, "Available" | "Pending"));
            let named_ok = named.is_none_or(|n| pv.metadata.name.as_deref() == Some(n));
            let class_ok = named.is_some() || s.storage_class_name.clone().unwrap_or_default() == class;
            let size = s.capacity.as_ref().and_then(|c| c.get("storage")).map(|q| milli(&q.0)).unwrap_or(0);
            let have = s.access_modes.clone().unwrap_or_default();
            free && phase_ok && named_ok && class_ok && size >= want && modes.iter().all(|m| have.contains(m))
        })
        .collect();
    fits.sort_by_key(|pv| {
        pv.spec
            .as_ref()
            .and_then(|s| s.capacity.as_ref())
            .and_then(|c| c.get("storage"))
            .map(|q| milli(&q.0))
            .unwrap_or(0)
    });
    fits.into_iter().next()
}

/// Binds `claim` and `pv` to each other.
fn bind(ctx: &Ctx, key: &Key, claim: &PersistentVolumeClaim, pv: &PersistentVolume) -> Result<(), Error> {
    let pv_name = pv.metadata.name.clone().unwrap_or_default();
    let pv_key = Key::new(Resource::PersistentVolumes, "", &pv_name);
    let claim_ref = json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "namespace": key.namespace,
        "name": key.name, "uid": claim.metadata.uid, "resourceVersion": claim.metadata.resource_version});
    let bound = ctx.store.update::<StoreError>(&pv_key, |v| {
        v["spec"]["claimRef"] = claim_ref.clone();
        v["status"] = json!({"phase": "Bound"});
        Ok(())
    });
    bound.map_err(|e| Error::store("binding", &pv_key, e))?;
    let spec = pv.spec.clone().unwrap_or_default();
    let capacity = serde_json::to_value(&spec.capacity).unwrap_or(Value::Null);
    let modes = serde_json::to_value(&spec.access_modes).unwrap_or(Value::Null);
    let written = ctx.store.update::<StoreError>(key, |v| {
        v["spec"]["volumeName"] = json!(pv_name);
        let a = &mut v["metadata"]["annotations"];
        if !a.is_object() {
            *a = json!({});
        }
        a["pv.kubernetes.io/bind-completed"] = json!("yes");
        a["pv.kubernetes.io/bound-by-controller"] = json!("yes");
        v["status"] = json!({"phase": "Bound", "accessModes": modes, "capacity": capacity});
        Ok(())
    });
    written.map_err(|e| Error::store("binding", key, e))?;
    Ok(())
}

/// Provisions a local-path volume for `claim` and binds them.
fn provision(
    ctx: &Ctx,
    key: &Key,
    claim: &PersistentVolumeClaim,
    class: &Value,
    node: Option<&str>,
) -> Result<(), Error> {
    let about = involved(Resource::PersistentVolumeClaims, &claim.metadata);
    let Some(root) = &ctx.local_path else {
        ctx.recorder.record(&about, "Warning", "ProvisioningFailed", "no directory for local-path volumes", COMPONENT);
        return Ok(());
    };
    let uid = claim.metadata.uid.clone().unwrap_or_default();
    let name = format!("pvc-{uid}");
    ctx.recorder.record(
        &about,
        "Normal",
        "Provisioning",
        &format!("External provisioner is provisioning volume for claim \"{}/{}\"", key.namespace, key.name),
        PROVISIONER,
    );
    let path = root.join(format!("{name}_{}_{}", key.namespace, key.name));
    let spec = claim.spec.clone().unwrap_or_default();
    let node = node.map(str::to_string).unwrap_or_default();
    let mut pv = json!({"apiVersion": "v1", "kind": "PersistentVolume",
        "metadata": {"name": name, "annotations": {"pv.kubernetes.io/provisioned-by": PROVISIONER}},
        "spec": {"capacity": {"storage": request(claim)}, "accessModes": spec.access_modes,
                 "persistentVolumeReclaimPolicy": if text(class, "/reclaimPolicy").is_empty() { "Delete" } else { text(class, "/reclaimPolicy") },
                 "storageClassName": spec.storage_class_name, "volumeMode": spec.volume_mode.unwrap_or_else(|| "Filesystem".into()),
                 "hostPath": {"path": path.to_string_lossy(), "type": "DirectoryOrCreate"}},
        "status": {"phase": "Pending"}});
    if !node.is_empty() {
        pv["spec"]["nodeAffinity"] = json!({"required": {"nodeSelectorTerms": [{"matchExpressions": [
            {"key": "kubernetes.io/hostname", "operator": "In", "values": [node]}]}]}});
    }
    crate::admission::admit_create(&ctx.store, None, Resource::PersistentVolumes, &mut pv)
        .map_err(|e| Error::store("provisioning", key, e))?;
    let created = match ctx.store.create(Resource::PersistentVolumes, pv) {
        Ok(o) => o,
        Err(StoreError::AlreadyExists(k)) => ctx.store.get(&k).unwrap_or_default(),
        Err(e) => return Err(Error::store("provisioning", key, e)),
    };
    let pv: PersistentVolume = decode(&ctx.store, Resource::PersistentVolumes, &created)?;
    bind(ctx, key, claim, &pv)?;
    let written = ctx.store.update::<StoreError>(key, |v| {
        v["metadata"]["annotations"]["volume.kubernetes.io/storage-provisioner"] = json!(PROVISIONER);
        v["metadata"]["annotations"]["volume.beta.kubernetes.io/storage-provisioner"] = json!(PROVISIONER);
        Ok(())
    });
    written.map_err(|e| Error::store("annotating", key, e))?;
    ctx.recorder.record(
        &about,
        "Normal",
        "ProvisioningSucceeded",
        &format!("Successfully provisioned volume {name}"),
        PROVISIONER,
    );
    Ok(())
}

/// Reconciles a volume: `Available` while unclaimed, `Released` once its claim is gone, and
/// deleted then (with its directory) when its policy says so.
pub(crate) fn reconcile_volume(ctx: &Ctx, key: &Key, obj: &Value) -> Result<Action, Error> {
    let claim_ns = text(obj, "/spec/claimRef/namespace");
    let claim_name = text(obj, "/spec/claimRef/name");
    let claim_uid = text(obj, "/spec/claimRef/uid");
    let claim_here = !claim_name.is_empty()
        && ctx
            .store
            .get(&Key::new(Resource::PersistentVolumeClaims, claim_ns, claim_name))
            .is_some_and(|c| claim_uid.is_empty() || text(&c, "/metadata/uid") == claim_uid);
    if is_deleting(obj) {
        if !claim_here {
            remove_directory(ctx, obj);
            drop_finalizer(ctx, key, PV_PROTECTION)?;
        }
        return Ok(Action::await_change());
    }
    let phase = text(obj, "/status/phase");
    let next = if claim_name.is_empty() {
        "Available"
    } else if claim_here {
        "Bound"
    } else {
        "Released"
    };
    if next == "Released" && text(obj, "/spec/persistentVolumeReclaimPolicy") == "Delete" {
        match crate::delete::delete(&ctx.store, key, &crate::delete::DeleteOptions::default()) {
            Ok(_) | Err(StoreError::NotFound(_)) => {}
            Err(e) => return Err(Error::store("deleting", key, e)),
        }
        return Ok(Action::await_change());
    }
    if phase != next {
        let written = ctx.store.update::<StoreError>(key, |v| {
            v["status"] = json!({"phase": next});
            Ok(())
        });
        match written {
            Ok(_) | Err(StoreError::NotFound(_)) => {}
            Err(e) => return Err(Error::store("writing the status of", key, e)),
        }
    }
    Ok(Action::await_change())
}

/// Removes a provisioned volume's directory: only one this provisioner made, only under its
/// root, never through a symlink.
fn remove_directory(ctx: &Ctx, obj: &Value) {
    if text(obj, "/metadata/annotations/pv.kubernetes.io~1provisioned-by") != PROVISIONER {
        return;
    }
    let Some(root) = &ctx.local_path else { return };
    let path = Path::new(text(obj, "/spec/hostPath/path"));
    let Some(name) = path.file_name() else { return };
    // The directory is named in the root: nothing else is touched, whatever the object says.
    if path.parent() != Some(root.as_path()) {
        return;
    }
    let dir: PathBuf = root.join(name);
    match std::fs::symlink_metadata(&dir) {
        Ok(m) if m.is_dir() => {
            if let Err(e) = std::fs::remove_dir_all(&dir) {
                tracing::warn!("{}: left behind: {e}", dir.display());
            }
        }
        Ok(_) => tracing::warn!("{}: not a directory, left alone", dir.display()),
        Err(_) => {}
    }
}
