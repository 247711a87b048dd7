//! Small readings of API objects in their JSON form, shared by the controllers, the kubelet
//! binding and deletion, and the API's timestamp format.

use jiff::Timestamp;
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
