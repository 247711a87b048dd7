//! The `pods/ephemeralcontainers` subresource (`kubectl debug`): what an update may do to a
//! pod through it, as the API server rules: only `spec.ephemeralContainers` changes; those
//! already there may not be changed or removed; each new one is named uniquely among all the
//! pod's containers, has an image, names an existing `targetContainerName`, and has none of
//! what an ephemeral container may not have (ports, probes, lifecycle, resources, restart
//! policy). Defaults are applied as for the pod's other containers.

use podvisor_objects::Invalid;
use podvisor_objects::field::{FieldError, Path};
use serde_json::{Value, json};

use crate::admission::AdmissionError;

/// The most ephemeral containers a pod may have (the API server bounds a pod by its size;
/// this bounds the work of checking an update).
const MAX_EPHEMERAL: usize = 1024;

/// The fields an ephemeral container may not set, as the API names them.
const FORBIDDEN: [&str; 7] =
    ["ports", "livenessProbe", "readinessProbe", "startupProbe", "lifecycle", "resizePolicy", "restartPolicy"];

/// The pod `current` with the ephemeral containers of `requested` (an update sent to the
/// subresource), or why not.
pub fn apply(current: &Value, requested: &Value) -> Result<Value, AdmissionError> {
    let name = current.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("");
    let list =
        |v: &Value| v.pointer("/spec/ephemeralContainers").and_then(Value::as_array).cloned().unwrap_or_default();
    let (old, new) = (list(current), list(requested));
    let path = Path::new("spec").child("ephemeralContainers");
    if new.len() > MAX_EPHEMERAL {
        return Err(AdmissionError::Invalid(Invalid {
            kind: "Pod".into(),
            name: name.into(),
            errors: vec![path.forbidden(&format!("{}: must have at most {MAX_EPHEMERAL} items", new.len()))],
        }));
    }
    // Each new one must be an ephemeral container, strictly: what would not decode into one
    // would fail every later read of the pod.
    for (i, e) in new.iter().enumerate().filter(|(_, e)| !old.iter().any(|o| o["name"] == e["name"])) {
        if let Err(err) = serde_json::from_value::<k8s_openapi::api::core::v1::EphemeralContainer>(e.clone()) {
            return Err(AdmissionError::BadRequest(format!(
                "Pod in version \"v1\" cannot be handled as a Pod: spec.ephemeralContainers[{i}]: {err}"
            )));
        }
    }
    let mut errors = Vec::new();
    for o in &old {
        let n = o["name"].as_str().unwrap_or("");
        match new.iter().find(|x| x["name"] == o["name"]) {
            None => errors.push(path.forbidden(&format!("existing ephemeral containers {n:?} may not be removed"))),
            Some(x) if x != o => {
                errors.push(path.forbidden(&format!("existing ephemeral containers {n:?} may not be changed")))
            }
            Some(_) => {}
        }
    }
    let names: std::collections::HashSet<&str> = ["/spec/initContainers", "/spec/containers"]
        .iter()
        .filter_map(|p| current.pointer(p)?.as_array())
        .flatten()
        .filter_map(|c| c["name"].as_str())
        .collect();
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::new();
    for (i, e) in new.iter().enumerate() {
        let at = path.index(i);
        let mut e = e.clone();
        let is_new = !old.iter().any(|o| o["name"] == e["name"]);
        if is_new {
            check(&e, &at, &names, &mut errors);
            defaults(&mut e);
        }
        let n = e["name"].as_str().unwrap_or("").to_string();
        if names.contains(n.as_str()) || !seen.insert(n.clone()) {
            errors.push(at.child("name").duplicate(&n));
        }
        out.push(e);
    }
    if !errors.is_empty() {
        return Err(AdmissionError::Invalid(Invalid { kind: "Pod".into(), name: name.into(), errors }));
    }
    let mut pod = current.clone();
    pod["spec"]["ephemeralContainers"] = Value::Array(out);
    Ok(pod)
}

fn check(e: &Value, at: &Path, names: &std::collections::HashSet<&str>, errors: &mut Vec<FieldError>) {
    let text = |k: &str| e.get(k).and_then(Value::as_str).unwrap_or("");
    let name = text("name");
    if name.is_empty() {
        errors.push(at.child("name").required(""));
    } else {
        podvisor_objects::validation::label(&at.child("name"), name, errors);
    }
    if text("image").trim().is_empty() {
        errors.push(at.child("image").required(""));
    }
    for f in FORBIDDEN {
        if e.get(f).is_some_and(|v| !v.is_null()) {
            errors.push(at.child(f).forbidden("cannot be set for an Ephemeral Container"));
        }
    }
    let resources = e.get("resources").filter(|r| !r.is_null() && r.as_object().is_none_or(|m| !m.is_empty()));
    if resources.is_some() {
        errors.push(at.child("resources").forbidden("cannot be set for an Ephemeral Container"));
    }
    let target = text("targetContainerName");
    if !target.is_empty() && !names.contains(target) {
        errors.push(at.child("targetContainerName").not_found(target));
    }
}

/// The API server's defaults of a container, for an ephemeral one.
fn defaults(e: &mut Value) {
    let image = e["image"].as_str().unwrap_or("").to_string();
    let Some(m) = e.as_object_mut() else { return };
    m.entry("terminationMessagePath").or_insert(json!("/dev/termination-log"));
    m.entry("terminationMessagePolicy").or_insert(json!("File"));
    let tag = image.rsplit('/').next().unwrap_or("").split_once(':').map(|(_, t)| t.to_string());
    let latest = !image.contains('@') && tag.as_deref().is_none_or(|t| t == "latest");
    m.entry("imagePullPolicy").or_insert(json!(if latest { "Always" } else { "IfNotPresent" }));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod() -> Value {
        json!({"metadata": {"name": "web"}, "spec": {
            "initContainers": [{"name": "proxy", "image": "envoy", "restartPolicy": "Always"}],
            "containers": [{"name": "app", "image": "busybox:1.36"}]}})
    }

    fn with(list: Value) -> Value {
        json!({"metadata": {"name": "web"}, "spec": {"ephemeralContainers": list}})
    }

    fn messages(e: AdmissionError) -> Vec<String> {
        match e {
            AdmissionError::Invalid(i) => i.errors.iter().map(ToString::to_string).collect(),
            other => vec![other.to_string()],
        }
    }

    #[test]
    fn a_debugger_is_added_with_the_containers_defaults() {
        let added = apply(
            &pod(),
            &with(json!([{"name": "debugger", "image": "busybox:1.36", "targetContainerName": "app",
            "stdin": true, "tty": true}])),
        )
        .unwrap();
        let e = &added["spec"]["ephemeralContainers"][0];
        assert_eq!(
            (e["imagePullPolicy"].as_str(), e["terminationMessagePolicy"].as_str()),
            (Some("IfNotPresent"), Some("File"))
        );
        assert_eq!(added["spec"]["containers"], pod()["spec"]["containers"], "nothing else changes");
        // Sent again unchanged with a second one: both kept.
        let mut both = added["spec"]["ephemeralContainers"].clone();
        both.as_array_mut().unwrap().push(json!({"name": "second", "image": "busybox"}));
        let twice = apply(&added, &with(both)).unwrap();
        assert_eq!(twice["spec"]["ephemeralContainers"][1]["imagePullPolicy"], "Always");
    }

    #[test]
    fn what_an_ephemeral_container_may_not_be_is_refused_in_the_api_servers_words() {
        let e = apply(
            &pod(),
            &with(json!([{"name": "app", "image": "", "ports": [{"containerPort": 80}],
            "readinessProbe": {"exec": {"command": ["true"]}}, "resources": {"limits": {"cpu": "1"}},
            "targetContainerName": "nope"}])),
        )
        .unwrap_err();
        assert_eq!(
            messages(e),
            [
                "spec.ephemeralContainers[0].image: Required value",
                "spec.ephemeralContainers[0].ports: Forbidden: cannot be set for an Ephemeral Container",
                "spec.ephemeralContainers[0].readinessProbe: Forbidden: cannot be set for an Ephemeral Container",
                "spec.ephemeralContainers[0].resources: Forbidden: cannot be set for an Ephemeral Container",
                "spec.ephemeralContainers[0].targetContainerName: Not found: \"nope\"",
                "spec.ephemeralContainers[0].name: Duplicate value: \"app\"",
            ]
        );
        let added = apply(&pod(), &with(json!([{"name": "d", "image": "busybox"}]))).unwrap();
        let changed = with(json!([{"name": "d", "image": "alpine"}]));
        assert_eq!(
            messages(apply(&added, &changed).unwrap_err()),
            ["spec.ephemeralContainers: Forbidden: existing ephemeral containers \"d\" may not be changed"]
        );
        assert_eq!(
            messages(apply(&added, &with(json!([]))).unwrap_err()),
            ["spec.ephemeralContainers: Forbidden: existing ephemeral containers \"d\" may not be removed"]
        );
        // What is not an ephemeral container is refused before it is stored.
        let wrong_type = with(json!([{"name": "e", "image": "busybox", "command": "sh"}]));
        let e = apply(&pod(), &wrong_type).unwrap_err();
        assert!(matches!(&e, AdmissionError::BadRequest(m) if m.contains("spec.ephemeralContainers[0]")), "{e}");
    }
}
