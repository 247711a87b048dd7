//! Small readings of API objects, in their JSON form (shared by the kubelet binding, deletion
//! and the controllers' dispatch) and in their typed form (the controllers), and the API's
//! timestamp format.

use jiff::Timestamp;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use serde::Deserialize;
use serde_json::Value;

/// A timestamp as the API writes it (RFC 3339, seconds, `Z`).
pub fn stamp(t: Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// The timestamp at `pointer`, if there is a valid one.
pub fn time(v: &Value, pointer: &str) -> Option<Timestamp> {
    v.pointer(pointer).and_then(Value::as_str).and_then(|t| t.parse().ok())
}

/// Whether a pod's phase is final (`Succeeded` or `Failed`).
pub fn is_terminal(pod: &Value) -> bool {
    matches!(pod.pointer("/status/phase").and_then(Value::as_str), Some("Succeeded" | "Failed"))
}

/// Marks a pod as about to be deleted by a controller: the `DisruptionTarget` condition (in
/// place of any it had) with the controller's `reason` and `message`, stamped `now`.
pub fn mark_disruption(pod: &mut Value, reason: &str, message: &str, now: &str) {
    let condition = serde_json::json!({"type": "DisruptionTarget", "status": "True", "reason": reason,
        "message": message, "lastProbeTime": null, "lastTransitionTime": now});
    match pod["status"]["conditions"].as_array_mut() {
        Some(list) => {
            list.retain(|c| c["type"] != "DisruptionTarget");
            list.push(condition);
        }
        None => pod["status"]["conditions"] = serde_json::json!([condition]),
    }
}

/// Whether a pod's `Ready` condition is true.
pub fn is_ready(pod: &Value) -> bool {
    pod.pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|cs| cs.iter().any(|c| c["type"] == "Ready" && c["status"] == "True"))
}

/// Whether the object is being deleted.
pub fn is_deleting(v: &Value) -> bool {
    v.pointer("/metadata/deletionTimestamp").is_some_and(|t| !t.is_null())
}

/// The owner references of a stored object, each one that reads as an
/// [`OwnerReference`] (a malformed one is skipped, as if absent).
pub fn owner_references(v: &Value) -> Vec<OwnerReference> {
    let refs = v.pointer("/metadata/ownerReferences").and_then(Value::as_array);
    refs.into_iter().flatten().filter_map(|r| OwnerReference::deserialize(r).ok()).collect()
}

/// The controller owner reference of a stored object (the first with `controller: true`), if
/// any.
pub fn controller_ref(v: &Value) -> Option<OwnerReference> {
    owner_references(v).into_iter().find(|r| r.controller == Some(true))
}

/// Whether a typed object is being deleted (it has a `deletionTimestamp`).
pub fn meta_is_deleting(meta: &ObjectMeta) -> bool {
    meta.deletion_timestamp.is_some()
}

/// A typed pod's phase, or `""`.
pub fn pod_phase(pod: &Pod) -> &str {
    pod.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or("")
}

/// Whether a typed pod's phase is final (`Succeeded` or `Failed`), as [`is_terminal`].
pub fn pod_is_terminal(pod: &Pod) -> bool {
    matches!(pod_phase(pod), "Succeeded" | "Failed")
}

/// Whether a typed pod's `Ready` condition is true, as [`is_ready`].
pub fn pod_is_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}
