//! The `scale` subresource of Deployments and ReplicaSets (`kubectl scale`): an
//! `autoscaling/v1` Scale that shows the object's desired and current replicas and its
//! selector, and through which only `spec.replicas` changes.

use podvisor_objects::Invalid;
use podvisor_objects::field::Path;
use serde_json::{Value, json};

use crate::admission::AdmissionError;

/// The Scale of a Deployment or ReplicaSet.
pub fn view(obj: &Value) -> Value {
    let meta = &obj["metadata"];
    let keep = ["name", "namespace", "uid", "resourceVersion", "creationTimestamp"];
    let metadata: serde_json::Map<String, Value> =
        keep.iter().filter_map(|k| meta.get(*k).map(|v| (k.to_string(), v.clone()))).collect();
    let selector = crate::table::selector_string(obj);
    json!({
        "kind": "Scale", "apiVersion": "autoscaling/v1", "metadata": metadata,
        "spec": {"replicas": obj.pointer("/spec/replicas").and_then(Value::as_i64).unwrap_or(1)},
        "status": {
            "replicas": obj.pointer("/status/replicas").and_then(Value::as_i64).unwrap_or(0),
            "selector": if selector == "<none>" { String::new() } else { selector },
        },
    })
}

/// The replicas a Scale sent for `obj` asks for, as the API server validates them.
pub fn replicas(obj: &Value, requested: &Value) -> Result<i32, AdmissionError> {
    let name = obj.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("");
    let field = Path::new("spec").child("replicas");
    let invalid = |e| AdmissionError::Invalid(Invalid { kind: "Scale".into(), name: name.into(), errors: vec![e] });
    match requested.pointer("/spec/replicas") {
        None | Some(Value::Null) => Ok(0),
        Some(v) => match v.as_i64() {
            Some(n) if n < 0 => Err(invalid(field.invalid_num(n, "must be greater than or equal to 0"))),
            // An int32 field: what does not fit does not decode, as the API server answers.
            Some(n) => i32::try_from(n).map_err(|_| {
                AdmissionError::BadRequest(format!(
                    "Scale in version \"v1\" cannot be handled as a Scale: spec.replicas: {n} overflows int32"
                ))
            }),
            None => Err(AdmissionError::BadRequest(
                "Scale in version \"v1\" cannot be handled as a Scale: spec.replicas: expected an integer".into(),
            )),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_deployments_scale_shows_its_replicas_and_selector_and_refuses_what_the_api_server_refuses() {
        let d = json!({"kind": "Deployment", "metadata": {"name": "web", "namespace": "default", "uid": "u",
            "resourceVersion": "7", "labels": {"x": "y"}},
            "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}}}, "status": {"replicas": 2}});
        let s = view(&d);
        assert_eq!(s["spec"]["replicas"], 3);
        assert_eq!(s["status"], json!({"replicas": 2, "selector": "app=web"}));
        assert_eq!(s["metadata"], json!({"name": "web", "namespace": "default", "uid": "u", "resourceVersion": "7"}));
        assert_eq!(replicas(&d, &json!({"spec": {"replicas": 5}})).unwrap(), 5);
        let e = replicas(&d, &json!({"spec": {"replicas": -1}})).unwrap_err();
        assert_eq!(
            e.to_string(),
            "Scale \"web\" is invalid: spec.replicas: Invalid value: -1: must be greater than or equal to 0"
        );
        assert!(matches!(
            replicas(&d, &json!({"spec": {"replicas": 2147483648i64}})),
            Err(AdmissionError::BadRequest(_))
        ));
        assert_eq!(
            replicas(&d, &json!({"spec": {}})).unwrap(),
            0,
            "an absent int32 is 0, as autoscaling/v1 decodes it"
        );
        assert!(matches!(replicas(&d, &json!({"spec": {"replicas": "2"}})), Err(AdmissionError::BadRequest(_))));
    }
}
