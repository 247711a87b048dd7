//! Admission: what happens to every object written, whoever writes it (a kubectl request, a
//! manifest given to `podvisor run`, a controller creating a pod), once, before the store:
//!
//! 1. [`admit`] checks the envelope (`apiVersion`, `kind`, metadata, the namespace of the
//!    request, `generateName`) and decodes the JSON straight into the typed object, strictly
//!    (unknown fields are refused, warned of or dropped as `fieldValidation` says);
//! 2. [`prepare`] applies the API server's defaults and validation to the typed object (a
//!    manifest read with positions enters here, so its errors keep their line and column);
//! 3. [`normalize`] applies what the API server does to every stored form (the `default`
//!    namespace, a Secret's `stringData`);
//! 4. on a create, [`on_create`] adds what only creation sets (the UID, a new pod's `Pending`,
//!    a Job's generated selector); on an update, [`check_update`] refuses what may not change.

use podvisor_manifest::Object;
use podvisor_objects::Invalid;
use podvisor_objects::kinds::Resource;
use serde_json::{Value, json};

/// Why an object was not admitted, as the API server answers.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AdmissionError {
    /// The body cannot be handled at all (400 BadRequest): not an object, an unknown field
    /// under `Strict`, a wrong type, a namespace that differs from the request's.
    #[error("{0}")]
    BadRequest(String),
    /// The object decoded but is not valid (422 Invalid, one cause per field).
    #[error("{0}")]
    Invalid(Invalid),
    /// An update changes what may not change, or a required name is missing (422 Invalid with
    /// one cause).
    #[error("{kind} {name:?} is invalid: {field}: {message}")]
    Field {
        /// The kind, as the API server names it in the message (`Job.batch`).
        kind: String,
        /// The object's name.
        name: String,
        /// The field path.
        field: String,
        /// What is wrong with it.
        message: String,
    },
}

impl AdmissionError {
    fn field(kind: &str, name: &str, field: &str, message: &str) -> AdmissionError {
        AdmissionError::Field { kind: kind.into(), name: name.into(), field: field.into(), message: message.into() }
    }
}

/// An object admitted: its stored form and the warnings to send with the answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Admitted {
    /// The object as it is stored.
    pub object: Value,
    /// `Warning` headers: the unknown fields dropped under `fieldValidation=Warn`.
    pub warnings: Vec<String>,
}

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
    pub fn parse(value: Option<&str>) -> Result<FieldValidation, AdmissionError> {
        match value {
            None | Some("Warn") => Ok(FieldValidation::Warn),
            Some("Strict") => Ok(FieldValidation::Strict),
            Some("Ignore") => Ok(FieldValidation::Ignore),
            Some(other) => Err(AdmissionError::BadRequest(format!(
                "fieldValidation: Unsupported value: {other:?}: supported values: \"Ignore\", \"Strict\", \"Warn\""
            ))),
        }
    }
}

/// Admits `obj`, the body of a create or update of a `resource` sent to `namespace`: the
/// envelope, the strict decode into the typed object, [`prepare`] and [`normalize`]. A kind
/// without a typed object here (a Namespace, an Event) is checked for its name and stored as
/// sent.
pub fn admit(
    resource: Resource,
    mut obj: Value,
    namespace: Option<&str>,
    validation: FieldValidation,
) -> Result<Admitted, AdmissionError> {
    let info = resource.info();
    if !obj.is_object() {
        return Err(AdmissionError::BadRequest("the body of the request must be a JSON object".into()));
    }
    match obj.get("metadata") {
        None => obj["metadata"] = json!({}),
        Some(Value::Object(_)) => {}
        Some(_) => {
            return Err(AdmissionError::BadRequest(format!(
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
        return Err(AdmissionError::BadRequest(format!(
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
            return Err(AdmissionError::BadRequest(
                "the namespace of the provided object does not match the namespace sent on the request".into(),
            ));
        }
        (Some(path), None) if info.namespaced => obj["metadata"]["namespace"] = json!(path),
        _ => {}
    }
    let name = obj.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("");
    if name.is_empty()
        && let Some(prefix) = obj.pointer("/metadata/generateName").and_then(Value::as_str)
    {
        obj["metadata"]["name"] = json!(format!("{prefix}{}", podvisor_objects::uid::suffix(5)));
    }
    if obj.pointer("/metadata/name").and_then(Value::as_str).is_none_or(str::is_empty) {
        let msg = "name or generateName is required";
        return Err(AdmissionError::field(info.kind, "", "metadata.name", &format!("Required value: {msg}")));
    }
    if !matches!(
        resource,
        Resource::Pods
            | Resource::Jobs
            | Resource::Deployments
            | Resource::ConfigMaps
            | Resource::Secrets
            | Resource::Services
            | Resource::CronJobs
            | Resource::StatefulSets
            | Resource::DaemonSets
            | Resource::PersistentVolumeClaims
    ) {
        names(resource, &obj)?;
        let warnings =
            if resource == Resource::PriorityClasses { priority_class(&mut obj, validation)? } else { Vec::new() };
        normalize(resource, &mut obj);
        return Ok(Admitted { object: obj, warnings });
    }
    let (object, problems) = podvisor_manifest::decode_value(&obj);
    let (unknown, other): (Vec<_>, Vec<_>) = problems.into_iter().partition(|p| p.unknown_field.is_some());
    let refused: Vec<String> = match validation {
        FieldValidation::Strict => other.iter().chain(&unknown).map(|p| p.message.clone()).collect(),
        FieldValidation::Warn | FieldValidation::Ignore => other.iter().map(|p| p.message.clone()).collect(),
    };
    if !refused.is_empty() {
        return Err(AdmissionError::BadRequest(format!(
            "{kind} in version {v:?} cannot be handled as a {kind}: {}",
            refused.join(", "),
            kind = info.kind,
            v = info.version
        )));
    }
    let Some(mut object) = object else { return Err(AdmissionError::BadRequest("empty object".into())) };
    prepare(&mut object).map_err(AdmissionError::Invalid)?;
    let mut out = object.to_json().map_err(|e| AdmissionError::BadRequest(e.to_string()))?;
    // The typed round trip keeps what the API knows; status is the server's.
    if let Some(status) = obj.get_mut("status").map(Value::take) {
        out["status"] = status;
    }
    normalize(resource, &mut out);
    let warnings = match validation {
        FieldValidation::Warn => {
            unknown.into_iter().filter_map(|p| p.unknown_field).map(|f| format!("unknown field {f:?}")).collect()
        }
        FieldValidation::Strict | FieldValidation::Ignore => Vec::new(),
    };
    Ok(Admitted { object: out, warnings })
}

/// A PriorityClass's decoding (types, unknown fields as `validation` says), default and
/// validation; the warnings of the unknown fields dropped.
fn priority_class(obj: &mut Value, validation: FieldValidation) -> Result<Vec<String>, AdmissionError> {
    use podvisor_objects::priority;
    let bad = |m: String| {
        AdmissionError::BadRequest(format!("PriorityClass in version \"v1\" cannot be handled as a PriorityClass: {m}"))
    };
    let unknown = priority::decode(obj).map_err(bad)?;
    let warnings = match validation {
        FieldValidation::Strict if !unknown.is_empty() => {
            let list: Vec<String> =
                unknown.iter().map(|f| format!("strict decoding error: unknown field \"{f}\"")).collect();
            return Err(bad(list.join(", ")));
        }
        FieldValidation::Warn => unknown.iter().map(|f| format!("unknown field {f:?}")).collect(),
        FieldValidation::Strict | FieldValidation::Ignore => Vec::new(),
    };
    let errors = priority::validate(obj);
    if !errors.is_empty() {
        let name = obj.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("").to_string();
        return Err(AdmissionError::Invalid(Invalid { kind: PRIORITY_CLASS.into(), name, errors }));
    }
    Ok(warnings)
}

/// The kind of a PriorityClass as the API server names it in messages.
const PRIORITY_CLASS: &str = "PriorityClass.scheduling.k8s.io";

/// The typed step of admission, for a request body and a manifest alike: the API server's
/// defaults, then its validation.
pub fn prepare(object: &mut Object) -> Result<(), Invalid> {
    podvisor_objects::defaults::apply(object);
    podvisor_objects::validate(object)
}

/// The stored form of an object already through [`prepare`] (a manifest given to `podvisor
/// run`): its JSON, [`normalize`]d.
pub fn admit_prepared(resource: Resource, object: &Object) -> Result<Value, AdmissionError> {
    let mut out = object.to_json().map_err(|e| AdmissionError::BadRequest(e.to_string()))?;
    normalize(resource, &mut out);
    Ok(out)
}

/// What an update that leaves out what the API server allocated keeps of it: a Service's
/// ClusterIP (with its families) and each port's nodePort, as the API server carries them over
/// to an update that omits them (`kubectl apply` of a manifest without them).
pub fn keep_allocated(resource: Resource, old: &Value, new: &mut Value) {
    if resource != Resource::Services {
        return;
    }
    let absent = |v: &Value, p: &str| v.pointer(p).is_none_or(|x| x.is_null() || x.as_str() == Some(""));
    if absent(new, "/spec/clusterIP") {
        for f in ["clusterIP", "clusterIPs", "ipFamilies", "ipFamilyPolicy"] {
            if let Some(v) = old.pointer(&format!("/spec/{f}")) {
                new["spec"][f] = v.clone();
            }
        }
    }
    // NodePorts are kept only for a type that has them.
    if !matches!(new.pointer("/spec/type").and_then(Value::as_str), Some("NodePort" | "LoadBalancer")) {
        return;
    }
    let old_ports: Vec<&Value> = old.pointer("/spec/ports").and_then(Value::as_array).into_iter().flatten().collect();
    if let Some(ports) = new.pointer_mut("/spec/ports").and_then(Value::as_array_mut) {
        for p in ports {
            if !absent(p, "/nodePort") && p.pointer("/nodePort") != Some(&json!(0)) {
                continue;
            }
            let same =
                old_ports.iter().find(|o| o.get("port") == p.get("port") && o.get("protocol") == p.get("protocol"));
            if let Some(np) = same.and_then(|o| o.get("nodePort")) {
                p["nodePort"] = np.clone();
            }
        }
    }
}

/// What a create may not carry: a pod's ephemeral containers, which only the
/// `pods/ephemeralcontainers` subresource adds to a running pod.
pub fn forbid_on_create(resource: Resource, obj: &Value) -> Result<(), AdmissionError> {
    let ephemeral = obj.pointer("/spec/ephemeralContainers").and_then(Value::as_array).is_some_and(|e| !e.is_empty());
    if resource == Resource::Pods && ephemeral {
        let name = obj.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("");
        return Err(AdmissionError::field(
            "Pod",
            name,
            "spec.ephemeralContainers",
            "Forbidden: cannot be set on create",
        ));
    }
    Ok(())
}

/// What only a create sets, after [`admit`]: the UID, a new pod's `Pending` phase, a
/// Namespace's finalizer and phase, and a Job's generated selector and pod labels
/// (`controller-uid`, `job-name`) unless it asks for a manual selector.
pub fn on_create(resource: Resource, obj: &mut Value) {
    let uid = podvisor_objects::uid::new_uid();
    obj["metadata"]["uid"] = json!(uid);
    if resource == Resource::Pods {
        // A new pod is Pending until the node reports on it; its QoS class is set once, from
        // the spec it was created with.
        let qos = obj
            .get("spec")
            .and_then(|s| serde_json::from_value::<k8s_openapi::api::core::v1::PodSpec>(s.clone()).ok())
            .map(|s| podvisor_objects::resources::qos_class(&s));
        obj["status"] = json!({"phase": "Pending"});
        if let Some(qos) = qos {
            obj["status"]["qosClass"] = json!(qos);
        }
    }
    if resource == Resource::Namespaces {
        obj["spec"] = json!({"finalizers": ["kubernetes"]});
        obj["status"] = json!({"phase": "Active"});
    }
    if resource == Resource::Jobs && obj.pointer("/spec/manualSelector") != Some(&json!(true)) {
        let name = obj.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("").to_string();
        obj["spec"]["selector"] = json!({"matchLabels": {"batch.kubernetes.io/controller-uid": uid}});
        let labels = &mut obj["spec"]["template"]["metadata"]["labels"];
        for (k, v) in [
            ("batch.kubernetes.io/controller-uid", &uid),
            ("batch.kubernetes.io/job-name", &name),
            ("controller-uid", &uid),
            ("job-name", &name),
        ] {
            labels[k] = json!(v);
        }
    }
}

/// What the API server does to every stored form: the `default` namespace, and a Secret's
/// `stringData` merged into `data` (base64).
pub fn normalize(resource: Resource, obj: &mut Value) {
    if resource.info().namespaced
        && obj.pointer("/metadata/namespace").and_then(Value::as_str).is_none_or(str::is_empty)
    {
        obj["metadata"]["namespace"] = json!("default");
    }
    if resource == Resource::Secrets
        && let Some(Value::Object(strings)) = obj.as_object_mut().and_then(|o| o.remove("stringData"))
    {
        for (k, v) in strings {
            use base64::Engine;
            let encoded = base64::engine::general_purpose::STANDARD.encode(v.as_str().unwrap_or("").as_bytes());
            obj["data"][k] = json!(encoded);
        }
    }
}

/// The API server's rules for the name and namespace of the kinds admitted without a typed
/// decode: a Namespace is named as a DNS-1123 label, the others as a subdomain, and a
/// namespace is a label.
fn names(resource: Resource, obj: &Value) -> Result<(), AdmissionError> {
    let text = |p: &str| obj.pointer(p).and_then(Value::as_str).unwrap_or("");
    let (name, namespace) = (text("/metadata/name"), text("/metadata/namespace"));
    let meta = podvisor_objects::field::Path::new("metadata");
    let mut errors = Vec::new();
    if resource == Resource::Namespaces {
        podvisor_objects::validation::label(&meta.child("name"), name, &mut errors);
    } else {
        let m = k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
            name: Some(name.to_string()),
            namespace: (!namespace.is_empty()).then(|| namespace.to_string()),
            ..Default::default()
        };
        errors = podvisor_objects::validation::validate_metadata(&m, &meta);
    }
    if errors.is_empty() {
        return Ok(());
    }
    // The kind as the API server names it: qualified by its group (`Role.rbac.authorization.k8s.io`).
    let info = resource.info();
    let kind = if info.group.is_empty() { info.kind.to_string() } else { format!("{}.{}", info.kind, info.group) };
    Err(AdmissionError::Invalid(Invalid { kind, name: name.to_string(), errors }))
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
pub fn check_update(resource: Resource, old: &Value, new: &Value) -> Result<(), AdmissionError> {
    let name = new.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("");
    match resource {
        Resource::ConfigMaps | Resource::Secrets if old.get("immutable") == Some(&json!(true)) => {
            let kind = resource.info().kind;
            let message = "Forbidden: field is immutable when `immutable` is set";
            if new.get("immutable") != Some(&json!(true)) {
                return Err(AdmissionError::field(kind, name, "immutable", message));
            }
            for field in ["data", "binaryData"] {
                if old.get(field) != new.get(field) {
                    return Err(AdmissionError::field(kind, name, field, message));
                }
            }
        }
        Resource::PriorityClasses => {
            let errors = podvisor_objects::priority::validate_update(old, new);
            if !errors.is_empty() {
                return Err(AdmissionError::Invalid(Invalid {
                    kind: PRIORITY_CLASS.into(),
                    name: name.to_string(),
                    errors,
                }));
            }
        }
        Resource::Services => {
            let ip = |v: &Value| v.pointer("/spec/clusterIP").and_then(Value::as_str).unwrap_or("").to_string();
            let (was, now) = (ip(old), ip(new));
            // A ClusterIP is only ever one the allocator gave at creation.
            if was.is_empty() && !now.is_empty() {
                return Err(AdmissionError::field(
                    "Service",
                    name,
                    "spec.clusterIPs[0]",
                    &format!(
                        "Invalid value: []string{{{now:?}}}: may not be set on an update of a Service that has none"
                    ),
                ));
            }
            if !was.is_empty() && was != now {
                return Err(AdmissionError::field(
                    "Service",
                    name,
                    "spec.clusterIPs[0]",
                    &format!("Invalid value: []string{{{:?}}}: may not change once set", now),
                ));
            }
        }
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
                return Err(AdmissionError::field("Pod", name, "spec.activeDeadlineSeconds", &problem));
            }
            let mutable = ["activeDeadlineSeconds", "terminationGracePeriodSeconds", "tolerations", "nodeName"];
            if without(&old["spec"], &mutable) != without(&new["spec"], &mutable) {
                return Err(AdmissionError::field(
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
                return Err(AdmissionError::field(
                    "Job.batch",
                    name,
                    "spec.template",
                    "Invalid value: field is immutable",
                ));
            }
        }
        Resource::Deployments if old.pointer("/spec/selector") != new.pointer("/spec/selector") => {
            return Err(AdmissionError::field(
                "Deployment.apps",
                name,
                "spec.selector",
                "Invalid value: field is immutable",
            ));
        }
        Resource::DaemonSets if old.pointer("/spec/selector") != new.pointer("/spec/selector") => {
            return Err(AdmissionError::field(
                "DaemonSet.apps",
                name,
                "spec.selector",
                "Invalid value: field is immutable",
            ));
        }
        Resource::StatefulSets => {
            let mutable = [
                "replicas",
                "ordinals",
                "template",
                "updateStrategy",
                "revisionHistoryLimit",
                "persistentVolumeClaimRetentionPolicy",
                "minReadySeconds",
            ];
            let rest = |v: &Value| {
                let mut spec = v.get("spec").cloned().unwrap_or(Value::Null);
                if let Some(m) = spec.as_object_mut() {
                    m.retain(|k, _| !mutable.contains(&k.as_str()));
                }
                spec
            };
            if rest(old) != rest(new) {
                return Err(AdmissionError::field(
                    "StatefulSet.apps",
                    name,
                    "spec",
                    "Forbidden: updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'revisionHistoryLimit', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden",
                ));
            }
        }
        Resource::PersistentVolumeClaims => {
            // Only a bound claim's storage request may grow; the rest of its spec is fixed.
            let rest = |v: &Value| {
                let mut spec = v.get("spec").cloned().unwrap_or(Value::Null);
                if let Some(r) = spec.pointer_mut("/resources/requests").and_then(Value::as_object_mut) {
                    r.remove("storage");
                }
                if let Some(m) = spec.as_object_mut() {
                    m.remove("volumeAttributesClassName");
                    // The binder names the volume once.
                    if old.pointer("/spec/volumeName").is_none_or(Value::is_null) {
                        m.remove("volumeName");
                    }
                }
                spec
            };
            if rest(old) != rest(new) {
                return Err(AdmissionError::field(
                    "PersistentVolumeClaim",
                    name,
                    "spec",
                    "Forbidden: spec is immutable after creation except resources.requests and volumeAttributesClassName for bound claims",
                ));
            }
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

    fn strict(resource: Resource, obj: Value, namespace: Option<&str>) -> Result<Value, AdmissionError> {
        admit(resource, obj, namespace, FieldValidation::Strict).map(|a| a.object)
    }

    #[test]
    fn unknown_fields_and_invalid_specs_are_refused_as_the_api_server_words_it() {
        let mut p = pod();
        p["spec"]["containers"][0]["imagee"] = json!("x");
        assert_eq!(
            strict(Resource::Pods, p, Some("default")).unwrap_err(),
            AdmissionError::BadRequest(
                "Pod in version \"v1\" cannot be handled as a Pod: strict decoding error: unknown field \"spec.containers[0].imagee\"".into()
            )
        );
        let mut p = pod();
        p["spec"]["initContainers"] = json!([{"name": "s", "image": "b", "restartPolicy": "Never"}]);
        let AdmissionError::Invalid(invalid) = strict(Resource::Pods, p, Some("default")).unwrap_err() else {
            panic!("not Invalid")
        };
        assert_eq!(invalid.errors[0].field, "spec.initContainers[0].restartPolicy");
        assert_eq!(
            invalid.errors[0].to_string(),
            "spec.initContainers[0].restartPolicy: Unsupported value: \"Never\": supported values: \"Always\""
        );
        let mut p = pod();
        p["spec"]["terminationGracePeriodSeconds"] = json!("thirty");
        let e = strict(Resource::Pods, p, Some("default")).unwrap_err().to_string();
        assert!(
            e.starts_with(
                "Pod in version \"v1\" cannot be handled as a Pod: spec.terminationGracePeriodSeconds: invalid type"
            ),
            "{e}"
        );
    }

    #[test]
    fn unknown_fields_are_refused_warned_of_or_dropped_as_field_validation_says() {
        let cm =
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"a": "1"}, "bogus": 1});
        let e = admit(Resource::ConfigMaps, cm.clone(), Some("default"), FieldValidation::Strict).unwrap_err();
        assert_eq!(
            e.to_string(),
            "ConfigMap in version \"v1\" cannot be handled as a ConfigMap: strict decoding error: unknown field \"bogus\""
        );
        let a = admit(Resource::ConfigMaps, cm.clone(), Some("default"), FieldValidation::Warn).unwrap();
        assert_eq!((a.object.get("bogus"), a.object["data"]["a"].as_str()), (None, Some("1")));
        assert_eq!(a.warnings, ["unknown field \"bogus\""]);
        let a = admit(Resource::ConfigMaps, cm, Some("default"), FieldValidation::Ignore).unwrap();
        assert_eq!((a.object.get("bogus"), a.warnings.len()), (None, 0));
        assert_eq!(FieldValidation::parse(None).unwrap(), FieldValidation::Warn, "the API server's default");
        assert!(matches!(FieldValidation::parse(Some("Loose")), Err(AdmissionError::BadRequest(_))));
    }

    #[test]
    fn a_body_that_is_not_an_object_is_a_bad_request_not_a_panic() {
        for r in [Resource::Pods, Resource::Namespaces, Resource::Events] {
            let e = strict(r, json!({"metadata": "x"}), Some("default")).unwrap_err();
            assert!(e.to_string().ends_with("metadata: expected an object"), "{r:?}: {e}");
            assert!(matches!(strict(r, json!([1]), None), Err(AdmissionError::BadRequest(_))));
        }
        let ns = strict(Resource::Namespaces, json!({"metadata": {"name": "team"}}), None).unwrap();
        assert_eq!(ns["metadata"]["name"], "team");
    }

    #[test]
    fn defaults_namespace_and_update_rules() {
        let p = strict(Resource::Pods, pod(), Some("default")).unwrap();
        assert_eq!(p["metadata"]["namespace"], "default");
        assert_eq!(p["spec"]["restartPolicy"], "Always");
        let mut q = p.clone();
        q["spec"]["containers"][0]["image"] = json!("busybox:2");
        check_update(Resource::Pods, &p, &q).unwrap();
        q["spec"]["containers"][0]["command"] = json!(["sh"]);
        assert!(matches!(check_update(Resource::Pods, &p, &q), Err(AdmissionError::Field { .. })));
        assert!(strict(Resource::Pods, pod(), Some("other")).is_ok());
        let mut wrong = pod();
        wrong["metadata"]["namespace"] = json!("x");
        assert!(matches!(strict(Resource::Pods, wrong, Some("default")), Err(AdmissionError::BadRequest(_))));
    }

    #[test]
    fn a_request_body_is_decoded_as_a_manifest_of_the_same_object_is() {
        let text =
            "apiVersion: v1\nkind: Pod\nmetadata: {name: web}\nspec:\n  containers: [{name: a, image: busybox}]\n";
        let mut m = podvisor_manifest::load_str("web.yaml", text).unwrap().remove(0);
        prepare(&mut m.object).unwrap();
        let from_manifest = admit_prepared(Resource::Pods, &m.object).unwrap();
        assert_eq!(strict(Resource::Pods, pod(), None).unwrap(), from_manifest);
    }

    #[test]
    fn creation_defaults_the_namespace_encodes_string_data_and_gives_a_job_its_selector() {
        let mut s =
            json!({"metadata": {"name": "s"}, "stringData": {"token": "s3cret", "a": "ab"}, "data": {"x": "eA=="}});
        normalize(Resource::Secrets, &mut s);
        on_create(Resource::Secrets, &mut s);
        assert_eq!(s["metadata"]["namespace"], "default");
        assert_eq!(s["data"], json!({"x": "eA==", "token": "czNjcmV0", "a": "YWI="}));
        assert!(s.get("stringData").is_none());
        let mut j = json!({"metadata": {"name": "j"}, "spec": {"template": {"spec": {}}}});
        on_create(Resource::Jobs, &mut j);
        let uid = j["metadata"]["uid"].as_str().unwrap();
        assert!(podvisor_objects::uid::is_uuid(uid));
        assert_eq!(j["spec"]["selector"]["matchLabels"]["batch.kubernetes.io/controller-uid"], uid);
        assert_eq!(j["spec"]["template"]["metadata"]["labels"]["job-name"], "j");
        let mut n = json!({"metadata": {"name": "n"}});
        normalize(Resource::Namespaces, &mut n);
        on_create(Resource::Namespaces, &mut n);
        assert!(n["metadata"].get("namespace").is_none());
        assert_eq!(n["status"]["phase"], "Active");
    }
}
