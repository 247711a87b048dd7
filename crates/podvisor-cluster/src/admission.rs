//! The admission plugins that read the store, applied to a new object after the typed
//! admission of `podvisor-apiserver` and before it is stored, on every front door (the API,
//! `run`, the controllers):
//!
//! - **ServiceAccount** (pods, where pods talk to an API): see
//!   [`serviceaccounts::admit_pod`](crate::serviceaccounts::admit_pod).
//! - **DefaultStorageClass** (claims): a claim that names no class gets the default one.
//! - **StorageObjectInUseProtection** (claims and volumes): the `kubernetes.io/pvc-protection`
//!   and `kubernetes.io/pv-protection` finalizers, which keep an object in use from going.
//! - **Priority** and **DefaultTolerationSeconds** (pods): `priority` and `preemptionPolicy`,
//!   and tolerations of an unready or unreachable node for 300 seconds.

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

/// The priority classes every cluster has, and their values.
const SYSTEM_PRIORITY_CLASSES: [(&str, i64); 2] =
    [("system-node-critical", 2_000_001_000), ("system-cluster-critical", 2_000_000_000)];

/// The **Priority** admission plugin: a pod gets the value of its `priorityClassName` (one of
/// the system classes; PriorityClass objects are not served, so any other name is not found)
/// or 0 without one, and `preemptionPolicy` `PreemptLowerPriority`; a pod that gives its own
/// `priority` is refused unless it is the value computed.
fn priority(obj: &mut Value) -> Result<(), StoreError> {
    let key = crate::store::Key::of(Resource::Pods, obj);
    let class = obj.pointer("/spec/priorityClassName").and_then(Value::as_str).unwrap_or("").to_string();
    let value = if class.is_empty() {
        0
    } else {
        match SYSTEM_PRIORITY_CLASSES.iter().find(|(name, _)| *name == class) {
            Some((_, v)) => *v,
            None => {
                return Err(StoreError::Forbidden {
                    key,
                    why: format!("no PriorityClass with name {class} was found"),
                });
            }
        }
    };
    if let Some(given) = obj.pointer("/spec/priority").and_then(Value::as_i64)
        && given != value
    {
        return Err(StoreError::Forbidden {
            key,
            why: format!(
                "the integer value of priority ({given}) must not be provided in pod spec; priority admission controller computed {value} from the given PriorityClass name"
            ),
        });
    }
    obj["spec"]["priority"] = json!(value);
    if obj.pointer("/spec/preemptionPolicy").is_none_or(Value::is_null) {
        obj["spec"]["preemptionPolicy"] = json!("PreemptLowerPriority");
    }
    Ok(())
}

/// The **DefaultTolerationSeconds** admission plugin: a pod that does not tolerate a node
/// becoming not ready or unreachable (`NoExecute`) tolerates each for 300 seconds.
fn default_toleration_seconds(obj: &mut Value) {
    let tolerations: Vec<Value> =
        obj.pointer("/spec/tolerations").and_then(Value::as_array).cloned().unwrap_or_default();
    let tolerates = |key: &str| {
        tolerations.iter().any(|t| {
            let s = |k: &str| t.get(k).and_then(Value::as_str).unwrap_or("");
            let effect = s("effect").is_empty() || s("effect") == "NoExecute";
            let key_ok = s("key") == key || s("key").is_empty();
            effect && key_ok
        })
    };
    let mut added = tolerations.clone();
    for key in ["node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable"] {
        if !tolerates(key) {
            added.push(json!({"key": key, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}));
        }
    }
    if added.len() != tolerations.len() {
        obj["spec"]["tolerations"] = json!(added);
    }
}

/// Applies the store-reading admission plugins to `obj`, a new `resource` about to be created.
pub fn admit_create(
    store: &Store,
    api: Option<&ApiAccess>,
    resource: Resource,
    obj: &mut Value,
) -> Result<(), StoreError> {
    if resource == Resource::Pods {
        priority(obj)?;
        default_toleration_seconds(obj);
    }
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

    #[test]
    fn a_pod_gets_its_priority_and_tolerates_an_unready_node_for_five_minutes() {
        let store = Store::in_memory();
        let admit = |spec: Value| {
            let mut pod = json!({"metadata": {"name": "p", "namespace": "default"}, "spec": spec});
            admit_create(&store, None, Resource::Pods, &mut pod).map(|()| pod).map_err(|e| e.to_string())
        };
        let plain = admit(json!({"containers": []})).unwrap();
        assert_eq!(
            (&plain["spec"]["priority"], &plain["spec"]["preemptionPolicy"]),
            (&json!(0), &json!("PreemptLowerPriority"))
        );
        assert_eq!(
            plain["spec"]["tolerations"],
            json!([
                {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
                {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}
            ])
        );
        let critical = admit(json!({"priorityClassName": "system-node-critical", "preemptionPolicy": "Never",
            "tolerations": [{"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute"}]}))
        .unwrap();
        assert_eq!(
            (&critical["spec"]["priority"], &critical["spec"]["preemptionPolicy"]),
            (&json!(2_000_001_000), &json!("Never"))
        );
        let tolerated: Vec<&str> =
            critical["spec"]["tolerations"].as_array().unwrap().iter().map(|t| t["key"].as_str().unwrap()).collect();
        assert_eq!(tolerated, ["node.kubernetes.io/unreachable", "node.kubernetes.io/not-ready"], "only what it lacks");
        let everything = admit(json!({"tolerations": [{"operator": "Exists"}]})).unwrap();
        assert_eq!(everything["spec"]["tolerations"].as_array().unwrap().len(), 1, "an empty key tolerates all");
        assert_eq!(
            admit(json!({"priorityClassName": "high"})).unwrap_err(),
            "pods \"p\" is forbidden: no PriorityClass with name high was found"
        );
        assert_eq!(
            admit(json!({"priority": 7})).unwrap_err(),
            "pods \"p\" is forbidden: the integer value of priority (7) must not be provided in pod spec; priority admission controller computed 0 from the given PriorityClass name"
        );
        assert!(admit(json!({"priority": 0})).is_ok(), "the value computed may be given");
    }
}
