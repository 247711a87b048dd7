//! What the API server does to an object before it is written: strict decoding into the typed
//! object (unknown fields are a 400 with the field path), defaults, validation (a 422 with one
//! cause per field), `generateName`, and the rules of what an update may change.

use podvisor_api::kinds::Resource;
use podvisor_manifest::LoadError;
use serde_json::{Value, json};

use crate::status::ApiError;

/// What to do with fields the types do not have (the `fieldValidation` query parameter).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldValidation {
    /// Refuse the request (400), naming every unknown field: what kubectl asks for by default.
    Strict,
    /// Drop them and say so in `Warning` headers: the API server's default.
    Warn,
    /// Drop them silently (`kubectl --validate=false`).
    Ignore,
}

impl FieldValidation {
    /// The directive of a request: `Warn` when it names none.
    pub fn parse(value: Option<&str>) -> Result<FieldValidation, ApiError> {
        match value {
            None | Some("Warn") => Ok(FieldValidation::Warn),
            Some("Strict") => Ok(FieldValidation::Strict),
            Some("Ignore") => Ok(FieldValidation::Ignore),
            Some(other) => Err(ApiError::bad_request(format!(
                "fieldValidation: Unsupported value: {other:?}: supported values: \"Ignore\", \"Strict\", \"Warn\""
            ))),
        }
    }
}

/// Decodes, defaults and validates `obj` as a `resource`, as a create or update body, refusing
/// unknown fields.
pub fn admit(resource: Resource, obj: Value, namespace: Option<&str>) -> Result<Value, ApiError> {
    admit_with(resource, obj, namespace, FieldValidation::Strict).map(|(obj, _)| obj)
}

/// [`admit`] with a `fieldValidation` directive; returns the object and the warnings to send.
pub fn admit_with(
    resource: Resource,
    mut obj: Value,
    namespace: Option<&str>,
    validation: FieldValidation,
) -> Result<(Value, Vec<String>), ApiError> {
    let info = resource.info();
    if !obj.is_object() {
        return Err(ApiError::bad_request("the body of the request must be a JSON object"));
    }
    match obj.get("metadata") {
        None => obj["metadata"] = json!({}),
        Some(Value::Object(_)) => {}
        Some(_) => {
            return Err(ApiError::bad_request(format!(
                "{kind} in version {v:?} cannot be handled as a {kind}: metadata: expected an object",
                kind = info.kind,
                v = info.version
            )));
        }
    }
    if obj.get("apiVersion").is_none() {
        obj["apiVersion"] = json!(resource.api_version());
    }
    if obj.get("kind").is_none() {
        obj["kind"] = json!(info.kind);
    }
    if obj["kind"] != info.kind || obj["apiVersion"] != resource.api_version().as_str() {
        return Err(ApiError::bad_request(format!(
            "the API version in the data ({}) does not match the expected API version ({}) or kind {} does not match {}",
            obj["apiVersion"].as_str().unwrap_or(""),
            resource.api_version(),
            obj["kind"].as_str().unwrap_or(""),
            info.kind
        )));
    }
    let meta_ns = obj.pointer("/metadata/namespace").and_then(Value::as_str).filter(|s| !s.is_empty());
    match (namespace, meta_ns) {
        (Some(path), Some(body)) if path != body => {
            return Err(ApiError::bad_request(
                "the namespace of the provided object does not match the namespace sent on the request",
            ));
        }
        (Some(path), None) if info.namespaced => obj["metadata"]["namespace"] = json!(path),
        _ => {}
    }
    let name = obj.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("");
    if name.is_empty()
        && let Some(prefix) = obj.pointer("/metadata/generateName").and_then(Value::as_str)
    {
        obj["metadata"]["name"] = json!(format!("{prefix}{}", podvisor_cluster::controllers::suffix(5)));
    }
    if obj.pointer("/metadata/name").and_then(Value::as_str).is_none_or(str::is_empty) {
        let msg = "name or generateName is required";
        return Err(ApiError::immutable(info.kind, "", "metadata.name", &format!("Required value: {msg}")));
    }
    if !matches!(
        resource,
        Resource::Pods | Resource::Jobs | Resource::Deployments | Resource::ConfigMaps | Resource::Secrets
    ) {
        names(resource, &obj)?;
        podvisor_cluster::normalize(resource, &mut obj);
        return Ok((obj, Vec::new()));
    }
    let text = obj.to_string();
    let loaded = match validation {
        FieldValidation::Strict => podvisor_manifest::load_str("request", &text).map(|m| (m, Vec::new())),
        FieldValidation::Warn | FieldValidation::Ignore => podvisor_manifest::load_str_lenient("request", &text),
    };
    let (mut manifests, mut warnings) = match loaded {
        Ok(m) => m,
        Err(LoadError::Invalid { problems, .. }) => {
            let what: Vec<String> = problems.iter().map(|p| p.message.clone()).collect();
            return Err(ApiError::bad_request(format!(
                "{kind} in version {v:?} cannot be handled as a {kind}: {}",
                what.join(", "),
                kind = info.kind,
                v = info.version
            )));
        }
        Err(e) => return Err(ApiError::bad_request(e.to_string())),
    };
    let Some(mut m) = manifests.pop() else { return Err(ApiError::bad_request("empty object")) };
    podvisor_api::defaults::apply(&mut m.object);
    podvisor_api::validate(&m.object).map_err(|e| ApiError::invalid(&e))?;
    let mut out = m.object.to_json().map_err(|e| ApiError::bad_request(e.to_string()))?;
    // The typed round trip keeps what the API knows; status is the server's.
    if let Some(status) = obj.get("status") {
        out["status"] = status.clone();
    }
    podvisor_cluster::normalize(resource, &mut out);
    if validation == FieldValidation::Ignore {
        warnings.clear();
    }
    Ok((out, warnings))
}

/// The API server's rules for the name and namespace of the kinds admitted without a typed
/// decode: a Namespace is named as a DNS-1123 label, the others as a subdomain, and a
/// namespace is a label.
fn names(resource: Resource, obj: &Value) -> Result<(), ApiError> {
    let text = |p: &str| obj.pointer(p).and_then(Value::as_str).unwrap_or("");
    let (name, namespace) = (text("/metadata/name"), text("/metadata/namespace"));
    let meta = podvisor_api::field::Path::new("metadata");
    let mut errors = Vec::new();
    if resource == Resource::Namespaces {
        podvisor_api::validation::label(&meta.child("name"), name, &mut errors);
    } else {
        let m = k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
            name: Some(name.to_string()),
            namespace: (!namespace.is_empty()).then(|| namespace.to_string()),
            ..Default::default()
        };
        errors = podvisor_api::validation::validate_metadata(&m, &meta);
    }
    if errors.is_empty() {
        return Ok(());
    }
    Err(ApiError::invalid(&podvisor_api::Invalid {
        kind: resource.info().kind.to_string(),
        name: name.to_string(),
        errors,
    }))
}

fn without(spec: &Value, mutable: &[&str]) -> Value {
    let mut s = spec.clone();
    for list in ["containers", "initContainers"] {
        if let Some(cs) = s.get_mut(list).and_then(Value::as_array_mut) {
            for c in cs {
                if let Some(m) = c.as_object_mut() {
                    m.remove("image");
                }
            }
        }
    }
    if let Some(m) = s.as_object_mut() {
        for f in mutable {
            m.remove(*f);
        }
    }
    s
}

/// Refuses changes an update may not make: a pod's spec beyond images, deadlines, grace and
/// tolerations; a Job's pod template; a Deployment's selector.
pub fn check_update(resource: Resource, old: &Value, new: &Value) -> Result<(), ApiError> {
    let name = new.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("");
    match resource {
        Resource::Pods => {
            // The deadline may be set, or shortened, never lengthened or taken away.
            let deadline = |v: &Value| v.pointer("/spec/activeDeadlineSeconds").and_then(Value::as_i64);
            let problem = match (deadline(old), deadline(new)) {
                (Some(was), Some(now)) if now > was => {
                    Some(format!("Invalid value: {now}: must be less than or equal to previous value"))
                }
                (Some(_), None) => {
                    Some("Invalid value: null: must not update from a positive integer to nil value".into())
                }
                _ => None,
            };
            if let Some(problem) = problem {
                return Err(ApiError::immutable("Pod", name, "spec.activeDeadlineSeconds", &problem));
            }
            let mutable = ["activeDeadlineSeconds", "terminationGracePeriodSeconds", "tolerations", "nodeName"];
            if without(&old["spec"], &mutable) != without(&new["spec"], &mutable) {
                return Err(ApiError::immutable(
                    "Pod",
                    name,
                    "spec",
                    "Forbidden: pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)",
                ));
            }
        }
        Resource::Jobs => {
            let strip = |v: &Value| {
                let mut t = v.pointer("/spec/template").cloned().unwrap_or(Value::Null);
                if let Some(l) = t.pointer_mut("/metadata/labels").and_then(Value::as_object_mut) {
                    l.retain(|k, _| !k.contains("controller-uid") && !k.contains("job-name"));
                }
                t
            };
            if strip(old) != strip(new) {
                return Err(ApiError::immutable(
                    "Job.batch",
                    name,
                    "spec.template",
                    "Invalid value: field is immutable",
                ));
            }
        }
        Resource::Deployments if old.pointer("/spec/selector") != new.pointer("/spec/selector") => {
            return Err(ApiError::immutable(
                "Deployment.apps",
                name,
                "spec.selector",
                "Invalid value: field is immutable",
            ));
        }
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod() -> Value {
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web"},
               "spec": {"containers": [{"name": "a", "image": "busybox"}]}})
    }

    #[test]
    fn unknown_fields_and_invalid_specs_are_refused_as_the_api_server_words_it() {
        let mut p = pod();
        p["spec"]["containers"][0]["imagee"] = json!("x");
        let e = admit(Resource::Pods, p, Some("default")).unwrap_err();
        assert_eq!(e.code, 400);
        assert_eq!(
            e.message,
            "Pod in version \"v1\" cannot be handled as a Pod: strict decoding error: unknown field \"spec.containers[0].imagee\""
        );
        let mut p = pod();
        p["spec"]["initContainers"] = json!([{"name": "s", "image": "b", "restartPolicy": "Never"}]);
        let e = admit(Resource::Pods, p, Some("default")).unwrap_err();
        assert_eq!(e.code, 422);
        let cause = &e.details.unwrap()["causes"][0];
        assert_eq!(cause["field"], "spec.initContainers[0].restartPolicy");
        assert_eq!(cause["message"], "Unsupported value: \"Never\": supported values: \"Always\"");
    }

    #[test]
    fn unknown_fields_are_refused_warned_of_or_dropped_as_field_validation_says() {
        let cm =
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"a": "1"}, "bogus": 1});
        let e = admit_with(Resource::ConfigMaps, cm.clone(), Some("default"), FieldValidation::Strict).unwrap_err();
        assert_eq!(
            e.message,
            "ConfigMap in version \"v1\" cannot be handled as a ConfigMap: strict decoding error: unknown field \"bogus\""
        );
        let (obj, warnings) =
            admit_with(Resource::ConfigMaps, cm.clone(), Some("default"), FieldValidation::Warn).unwrap();
        assert_eq!((obj.get("bogus"), obj["data"]["a"].as_str()), (None, Some("1")));
        assert_eq!(warnings, ["unknown field \"bogus\""]);
        let (obj, warnings) = admit_with(Resource::ConfigMaps, cm, Some("default"), FieldValidation::Ignore).unwrap();
        assert_eq!((obj.get("bogus"), warnings.len()), (None, 0));
        assert_eq!(FieldValidation::parse(None).unwrap(), FieldValidation::Warn, "the API server's default");
        assert_eq!(FieldValidation::parse(Some("Loose")).unwrap_err().code, 400);
    }

    #[test]
    fn a_body_that_is_not_an_object_is_a_bad_request_not_a_panic() {
        for r in [Resource::Pods, Resource::Namespaces, Resource::Events] {
            let e = admit(r, json!({"metadata": "x"}), Some("default")).unwrap_err();
            assert_eq!(e.code, 400, "{r:?}");
            assert!(e.message.ends_with("metadata: expected an object"), "{}", e.message);
            assert_eq!(admit(r, json!([1]), None).unwrap_err().code, 400);
        }
        let ns = admit(Resource::Namespaces, json!({"metadata": {"name": "team"}}), None).unwrap();
        assert_eq!(ns["metadata"]["name"], "team");
    }

    #[test]
    fn defaults_namespace_and_update_rules() {
        let p = admit(Resource::Pods, pod(), Some("default")).unwrap();
        assert_eq!(p["metadata"]["namespace"], "default");
        assert_eq!(p["spec"]["restartPolicy"], "Always");
        let mut q = p.clone();
        q["spec"]["containers"][0]["image"] = json!("busybox:2");
        check_update(Resource::Pods, &p, &q).unwrap();
        q["spec"]["containers"][0]["command"] = json!(["sh"]);
        assert_eq!(check_update(Resource::Pods, &p, &q).unwrap_err().code, 422);
        let e = admit(Resource::Pods, pod(), Some("other"));
        assert!(e.is_ok());
        let mut wrong = pod();
        wrong["metadata"]["namespace"] = json!("x");
        assert_eq!(admit(Resource::Pods, wrong, Some("default")).unwrap_err().code, 400);
    }
}
