//! The admission plugins that read the store, applied to a new object after the typed
//! admission of `podvisor-apiserver` and before it is stored, on every front door (the API,
//! `run`, the controllers):
//!
//! - **ServiceAccount** (pods, where pods talk to an API): see
//!   [`serviceaccounts::admit_pod`](crate::serviceaccounts::admit_pod).
//! - **DefaultStorageClass** (claims): a claim that names no class gets the default one.
//! - **StorageObjectInUseProtection** (claims and volumes): the `kubernetes.io/pvc-protection`
//!   and `kubernetes.io/pv-protection` finalizers, which keep an object in use from going.
//! - **Priority** (pods and PriorityClasses): a pod's `priority` and `preemptionPolicy` from
//!   its class or the global default one; one default class at most.
//! - **DefaultTolerationSeconds** (pods): tolerations of an unready or unreachable node for 300
//!   seconds.

use podvisor_objects::kinds::Resource;
use podvisor_objects::priority;
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

/// The class pods without a `priorityClassName` get: the one marked `globalDefault` (the lowest
/// valued, should a race have made two), if any.
fn default_priority_class(store: &Store) -> Option<std::sync::Arc<Value>> {
    let (classes, _) = store.list(Resource::PriorityClasses, None);
    classes.into_iter().filter(|c| priority::is_global_default(c)).min_by_key(|c| priority::value(c))
}

/// The **Priority** admission plugin, for a pod: it gets the value and preemption policy of
/// its `priorityClassName` (a class of the store, or a system class), or of the global
/// default class (whose name it then carries), or 0 and `PreemptLowerPriority` without
/// either. A pod that names a class that does not exist is refused, and so is one that gives
/// its own `priority` or `preemptionPolicy` other than the ones computed.
fn priority(store: &Store, obj: &mut Value) -> Result<(), StoreError> {
    let key = crate::store::Key::of(Resource::Pods, obj);
    let named = obj.pointer("/spec/priorityClassName").and_then(Value::as_str).unwrap_or("").to_string();
    let class = if named.is_empty() {
        default_priority_class(store)
    } else {
        let stored = store.get(&crate::store::Key::new(Resource::PriorityClasses, "", &named));
        let system =
            || priority::system_classes().into_iter().find(|c| c.pointer("/metadata/name") == Some(&json!(named)));
        match stored.or_else(|| system().map(std::sync::Arc::new)) {
            Some(c) => Some(c),
            None => {
                return Err(StoreError::Forbidden {
                    key,
                    why: format!("no PriorityClass with name {named} was found"),
                });
            }
        }
    };
    let value = class.as_deref().map_or(0, priority::value);
    let policy = class.as_deref().map_or(priority::DEFAULT_PREEMPTION, priority::preemption_policy).to_string();
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
    if let Some(given) = obj.pointer("/spec/preemptionPolicy").and_then(Value::as_str)
        && given != policy
    {
        return Err(StoreError::Forbidden {
            key,
            why: format!(
                "the string value of PreemptionPolicy ({given}) must not be provided in pod spec; priority admission controller computed {policy} from the given PriorityClass name"
            ),
        });
    }
    if named.is_empty()
        && let Some(name) = class.as_deref().and_then(|c| c.pointer("/metadata/name"))
    {
        obj["spec"]["priorityClassName"] = name.clone();
    }
    obj["spec"]["priority"] = json!(value);
    obj["spec"]["preemptionPolicy"] = json!(policy);
    Ok(())
}

/// The **Priority** admission plugin, for a class created or updated: only one class may be
/// the global default.
fn one_default_class(store: &Store, class: &Value) -> Result<(), StoreError> {
    if !priority::is_global_default(class) {
        return Ok(());
    }
    let name = class.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("");
    match default_priority_class(store) {
        Some(other) if other.pointer("/metadata/name").and_then(Value::as_str) != Some(name) => {
            let other = other.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("");
            Err(StoreError::Forbidden {
                key: crate::store::Key::new(Resource::PriorityClasses, "", name),
                why: format!("PriorityClass {other} is already marked as default. Only one default can exist"),
            })
        }
        _ => Ok(()),
    }
}

/// Applies the store-reading admission plugins to `obj`, the new form of a `resource` an
/// update is about to store (the Priority plugin's one default class).
pub fn admit_update(store: &Store, resource: Resource, obj: &Value) -> Result<(), StoreError> {
    match resource {
        Resource::PriorityClasses => one_default_class(store, obj),
        _ => Ok(()),
    }
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
        priority(store, obj)?;
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
        Resource::PriorityClasses => one_default_class(store, obj),
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
        let critical = admit(json!({"priorityClassName": "system-node-critical",
            "tolerations": [{"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute"}]}))
        .unwrap();
        assert_eq!(
            (&critical["spec"]["priority"], &critical["spec"]["preemptionPolicy"]),
            (&json!(2_000_001_000), &json!("PreemptLowerPriority"))
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
        assert_eq!(
            admit(json!({"preemptionPolicy": "Never"})).unwrap_err(),
            "pods \"p\" is forbidden: the string value of PreemptionPolicy (Never) must not be provided in pod spec; priority admission controller computed PreemptLowerPriority from the given PriorityClass name"
        );
    }

    #[test]
    fn pods_take_their_class_or_the_one_global_default() {
        let store = Store::in_memory();
        let class = |name: &str, value: i64, default: bool, policy: &str| {
            let mut c = json!({"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass", "metadata": {"name": name},
                               "value": value, "globalDefault": default, "preemptionPolicy": policy});
            admit_create(&store, None, Resource::PriorityClasses, &mut c).map(|()| c).map_err(|e| e.to_string())
        };
        let admit = |spec: Value| {
            let mut pod = json!({"metadata": {"name": "p", "namespace": "default"}, "spec": spec});
            admit_create(&store, None, Resource::Pods, &mut pod)
                .map(|()| pod["spec"].clone())
                .map_err(|e| e.to_string())
        };
        store.create(Resource::PriorityClasses, class("batch", 50, false, "Never").unwrap()).unwrap();
        let spec = admit(json!({"priorityClassName": "batch"})).unwrap();
        assert_eq!((&spec["priority"], &spec["preemptionPolicy"]), (&json!(50), &json!("Never")));
        store.create(Resource::PriorityClasses, class("normal", 10, true, "PreemptLowerPriority").unwrap()).unwrap();
        let spec = admit(json!({})).unwrap();
        assert_eq!(
            (&spec["priorityClassName"], &spec["priority"], &spec["preemptionPolicy"]),
            (&json!("normal"), &json!(10), &json!("PreemptLowerPriority")),
            "a pod without a class carries the default one's name"
        );
        assert_eq!(
            class("other", 20, true, "Never").unwrap_err(),
            "priorityclasses.scheduling.k8s.io \"other\" is forbidden: PriorityClass normal is already marked as default. Only one default can exist"
        );
        let mut normal =
            (*store.get(&crate::store::Key::new(Resource::PriorityClasses, "", "normal")).unwrap()).clone();
        assert!(admit_update(&store, Resource::PriorityClasses, &normal).is_ok(), "the default itself may be updated");
        normal["metadata"]["name"] = json!("batch");
        assert!(admit_update(&store, Resource::PriorityClasses, &normal).is_err(), "another may not become one");
    }
}
