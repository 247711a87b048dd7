//! The admission plugins that read the store, applied to a new object after the typed
//! admission of `podvisor-apiserver` and before it is stored, on every front door (the API,
//! `run`, the controllers):
//!
//! - **ServiceAccount** (pods, where pods talk to an API): see
//!   [`serviceaccounts::admit_pod`](crate::serviceaccounts::admit_pod).
//! - **DefaultStorageClass** (claims): a claim that names no class gets the default one.
//! - **StorageObjectInUseProtection** (claims and volumes): the `kubernetes.io/pvc-protection`
//!   and `kubernetes.io/pv-protection` finalizers, which keep an object in use from going.

use podvisor_objects::kinds::Resource;
use serde_json::{Value, json};

use crate::serviceaccounts::ApiAccess;
use crate::store::{Store, StoreError};

/// The finalizer that keeps a claim while a pod uses it.
pub const PVC_PROTECTION: &str = "kubernetes.io/pvc-protection";

/// The finalizer that keeps a volume while a claim is bound to it.
pub const PV_PROTECTION: &str = "kubernetes.io/pv-protection";

/// The annotation that marks the default StorageClass.
pub const DEFAULT_CLASS: &str = "storageclass.kubernetes.io/is-default-class";

/// The name of the default StorageClass, if one is marked so (the newest, as the API server
/// picks among several).
pub fn default_class(store: &Store) -> Option<String> {
    let (classes, _) = store.list(Resource::StorageClasses, None);
    classes
        .iter()
        .filter(|c| {
            c.pointer(&format!("/metadata/annotations/{}", DEFAULT_CLASS.replace('/', "~1"))) == Some(&json!("true"))
        })
        .max_by_key(|c| c.pointer("/metadata/creationTimestamp").and_then(Value::as_str).unwrap_or("").to_string())
        .and_then(|c| c.pointer("/metadata/name").and_then(Value::as_str).map(str::to_string))
}

fn add_finalizer(obj: &mut Value, finalizer: &str) {
    let list = &mut obj["metadata"]["finalizers"];
    match list.as_array_mut() {
        Some(f) if f.iter().any(|x| x == finalizer) => {}
        Some(f) => f.push(json!(finalizer)),
        None => *list = json!([finalizer]),
    }
}

/// Applies the store-reading admission plugins to `obj`, a new `resource` about to be created.
pub fn admit_create(
    store: &Store,
    api: Option<&ApiAccess>,
    resource: Resource,
    obj: &mut Value,
) -> Result<(), StoreError> {
    match resource {
        Resource::Pods if api.is_some() => crate::serviceaccounts::admit_pod(store, obj),
        Resource::PersistentVolumeClaims => {
            if obj.pointer("/spec/storageClassName").is_none_or(Value::is_null)
                && let Some(class) = default_class(store)
            {
                obj["spec"]["storageClassName"] = json!(class);
            }
            add_finalizer(obj, PVC_PROTECTION);
            Ok(())
        }
        Resource::PersistentVolumes => {
            add_finalizer(obj, PV_PROTECTION);
            if obj.pointer("/status/phase").is_none_or(Value::is_null) {
                obj["status"] = json!({"phase": "Pending"});
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_claim_without_a_class_gets_the_default_and_is_protected() {
        let store = Store::in_memory();
        let mut claim = json!({"metadata": {"name": "data"}, "spec": {}});
        admit_create(&store, None, Resource::PersistentVolumeClaims, &mut claim).unwrap();
        assert!(claim["spec"].get("storageClassName").is_none(), "no default class, none given");
        store
            .create(
                Resource::StorageClasses,
                json!({"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
                "metadata": {"name": "standard", "annotations": {DEFAULT_CLASS: "true"}}, "provisioner": "x"}),
            )
            .unwrap();
        let mut claim = json!({"metadata": {"name": "data"}, "spec": {}});
        admit_create(&store, None, Resource::PersistentVolumeClaims, &mut claim).unwrap();
        assert_eq!(claim["spec"]["storageClassName"], "standard");
        assert_eq!(claim["metadata"]["finalizers"], json!([PVC_PROTECTION]));
        let mut static_claim = json!({"metadata": {"name": "data"}, "spec": {"storageClassName": ""}});
        admit_create(&store, None, Resource::PersistentVolumeClaims, &mut static_claim).unwrap();
        assert_eq!(static_claim["spec"]["storageClassName"], "", "an empty class asks for no class");
    }
}
