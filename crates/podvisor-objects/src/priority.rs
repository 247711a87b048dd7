//! PriorityClass (`scheduling.k8s.io/v1`): the classes every cluster has, and the API server's
//! decoding, defaults and validation of a class, in its words.
//!
//! A class is a name for a pod's priority: the **Priority** admission plugin gives a pod the
//! value and preemption policy of the class it names, or of the one class marked
//! `globalDefault`.

use serde_json::{Map, Value, json};

use crate::field::{FieldError, Path};

/// The highest value a class that is not a system class may have.
pub const HIGHEST_USER_DEFINABLE: i64 = 1_000_000_000;

/// The prefix reserved for the system classes.
pub const SYSTEM_PREFIX: &str = "system-";

/// The preemption policy of a class that names none, and of a pod without a class when no
/// class is the global default.
pub const DEFAULT_PREEMPTION: &str = "PreemptLowerPriority";

/// The system classes: name, value and description, as the API server creates them at start.
pub const SYSTEM_CLASSES: [(&str, i64, &str); 2] = [
    (
        "system-node-critical",
        2_000_001_000,
        "Used for system critical pods that must not be moved from their current node.",
    ),
    (
        "system-cluster-critical",
        2_000_000_000,
        "Used for system critical pods that must run in the cluster, but can be moved to another node if necessary.",
    ),
];

/// The fields a PriorityClass has.
const FIELDS: [&str; 7] =
    ["apiVersion", "kind", "metadata", "value", "globalDefault", "description", "preemptionPolicy"];

/// The system classes as stored objects.
pub fn system_classes() -> Vec<Value> {
    SYSTEM_CLASSES
        .iter()
        .map(|(name, value, description)| {
            json!({"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass", "metadata": {"name": name},
                   "value": value, "description": description, "preemptionPolicy": DEFAULT_PREEMPTION})
        })
        .collect()
}

/// Whether `name` is one of the system classes.
pub fn is_system(name: &str) -> bool {
    SYSTEM_CLASSES.iter().any(|(n, _, _)| *n == name)
}

/// A class's value, as the Go type reads it: an `int32`.
fn value_of(obj: &Value) -> Result<i64, String> {
    match obj.get("value") {
        None | Some(Value::Null) => Ok(0),
        Some(Value::Number(n)) => match n.as_i64() {
            Some(v) if i32::try_from(v).is_ok() => Ok(v),
            _ => {
                Err(format!("json: cannot unmarshal number {n} into Go struct field PriorityClass.value of type int32"))
            }
        },
        Some(other) => Err(format!(
            "json: cannot unmarshal {} into Go struct field PriorityClass.value of type int32",
            json_type(other)
        )),
    }
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Reads `obj` as a PriorityClass: the types of its fields (a wrong one is refused with Go's
/// unmarshal error), and the fields it may not have (dropped and returned; the caller says
/// whether that refuses the body). Then the API server's default: a class without a
/// preemption policy preempts lower priorities.
pub fn decode(obj: &mut Value) -> Result<Vec<String>, String> {
    value_of(obj)?;
    for (field, want, go) in [("globalDefault", "bool", "bool"), ("description", "string", "string")] {
        if let Some(v) = obj.get(field).filter(|v| !v.is_null())
            && json_type(v) != want
        {
            return Err(format!(
                "json: cannot unmarshal {} into Go struct field PriorityClass.{field} of type {go}",
                json_type(v)
            ));
        }
    }
    if let Some(v) = obj.get("preemptionPolicy").filter(|v| !v.is_null() && !v.is_string()) {
        return Err(format!(
            "json: cannot unmarshal {} into Go struct field PriorityClass.preemptionPolicy of type v1.PreemptionPolicy",
            json_type(v)
        ));
    }
    let map: &mut Map<String, Value> = obj.as_object_mut().ok_or_else(|| "not an object".to_string())?;
    let unknown: Vec<String> = map.keys().filter(|k| !FIELDS.contains(&k.as_str())).cloned().collect();
    for k in &unknown {
        map.remove(k);
    }
    if map.get("preemptionPolicy").is_none_or(Value::is_null) {
        map.insert("preemptionPolicy".into(), json!(DEFAULT_PREEMPTION));
    }
    Ok(unknown)
}

/// The value of a decoded class.
pub fn value(obj: &Value) -> i64 {
    value_of(obj).unwrap_or(0)
}

/// Whether a decoded class is the global default.
pub fn is_global_default(obj: &Value) -> bool {
    obj.get("globalDefault").and_then(Value::as_bool).unwrap_or(false)
}

/// The preemption policy of a decoded class.
pub fn preemption_policy(obj: &Value) -> &str {
    obj.get("preemptionPolicy").and_then(Value::as_str).unwrap_or(DEFAULT_PREEMPTION)
}

/// The API server's validation of a decoded class (its metadata is checked by the caller): a
/// name with the system prefix must be a system class as it is, any other class's value at
/// most [`HIGHEST_USER_DEFINABLE`], and the preemption policy one of the two.
pub fn validate(obj: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let name = obj.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("");
    let (value, global) = (value(obj), is_global_default(obj));
    if name.starts_with(SYSTEM_PREFIX) {
        let why = match SYSTEM_CLASSES.iter().find(|(n, _, _)| *n == name) {
            None => Some(format!("{name} is not a known system priority class")),
            Some((n, v, _)) if *v != value => Some(format!("value of {n} PriorityClass must be {v}")),
            Some((n, _, _)) if global => Some(format!("globalDefault of {n} PriorityClass must be false")),
            Some(_) => None,
        };
        if let Some(why) = why {
            errs.push(Path::new("metadata").child("name").forbidden(&format!(
                "priority class names with '{SYSTEM_PREFIX}' prefix are reserved for system use only. error: {why}"
            )));
        }
    } else if value > HIGHEST_USER_DEFINABLE {
        errs.push(
            Path::new("value")
                .forbidden(&format!("maximum allowed value of a user defined priority is {HIGHEST_USER_DEFINABLE}")),
        );
    }
    let policy = preemption_policy(obj);
    if !matches!(policy, "Never" | "PreemptLowerPriority") {
        errs.push(Path::new("preemptionPolicy").not_supported(policy, &["Never", "PreemptLowerPriority"]));
    }
    errs
}

/// What an update of a class may not change: its value and its preemption policy.
pub fn validate_update(old: &Value, new: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if value(old) != value(new) {
        errs.push(Path::new("value").forbidden("may not be changed in an update."));
    }
    let policy = preemption_policy(new);
    if preemption_policy(old) != policy {
        errs.push(Path::new("preemptionPolicy").invalid(policy, "field is immutable"));
    }
    errs
}

#[cfg(test)]
mod tests {
    use super::*;

    fn class(body: Value) -> Value {
        let mut c =
            json!({"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass", "metadata": {"name": "high"}});
        c.as_object_mut().unwrap().extend(body.as_object().unwrap().clone());
        c
    }

    fn messages(errs: Vec<FieldError>) -> Vec<String> {
        errs.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn a_class_is_decoded_as_the_go_type_reads_it_and_defaulted() {
        let mut c = class(json!({"value": 1000, "extra": 1}));
        assert_eq!(decode(&mut c), Ok(vec!["extra".to_string()]));
        assert_eq!((c.get("extra"), preemption_policy(&c), value(&c)), (None, "PreemptLowerPriority", 1000));
        let mut big = class(json!({"value": 2_147_483_648_i64}));
        assert_eq!(
            decode(&mut big),
            Err("json: cannot unmarshal number 2147483648 into Go struct field PriorityClass.value of type int32"
                .into())
        );
        let mut text = class(json!({"value": "7"}));
        assert!(decode(&mut text).is_err_and(|m| m.contains("unmarshal string")));
        let mut flag = class(json!({"globalDefault": "yes"}));
        assert!(decode(&mut flag).is_err_and(|m| m.contains("PriorityClass.globalDefault")));
        let mut none = class(json!({}));
        assert_eq!(decode(&mut none), Ok(vec![]));
        assert_eq!(value(&none), 0, "a class without a value has 0, as the Go type's zero");
    }

    #[test]
    fn user_classes_stay_below_the_system_ones_and_system_names_are_reserved() {
        assert!(validate(&class(json!({"value": 1_000_000_000, "preemptionPolicy": "Never"}))).is_empty());
        assert_eq!(
            messages(validate(&class(json!({"value": 1_000_000_001})))),
            ["value: Forbidden: maximum allowed value of a user defined priority is 1000000000"]
        );
        let mut system = class(json!({"value": 5}));
        system["metadata"]["name"] = json!("system-node-critical");
        assert_eq!(
            messages(validate(&system)),
            [
                "metadata.name: Forbidden: priority class names with 'system-' prefix are reserved for system use only. error: value of system-node-critical PriorityClass must be 2000001000"
            ]
        );
        system["metadata"]["name"] = json!("system-mine");
        assert!(messages(validate(&system))[0].ends_with("error: system-mine is not a known system priority class"));
        for stored in system_classes() {
            assert!(validate(&stored).is_empty(), "{stored}");
        }
        assert_eq!(
            messages(validate(&class(json!({"preemptionPolicy": "Sometimes"})))),
            [
                "preemptionPolicy: Unsupported value: \"Sometimes\": supported values: \"Never\", \"PreemptLowerPriority\""
            ]
        );
    }

    #[test]
    fn an_update_keeps_the_value_and_the_policy() {
        let old = class(json!({"value": 10, "preemptionPolicy": "PreemptLowerPriority"}));
        let described = class(json!({"value": 10, "preemptionPolicy": "PreemptLowerPriority", "description": "d"}));
        assert!(validate_update(&old, &described).is_empty());
        let changed = class(json!({"value": 11, "preemptionPolicy": "Never"}));
        assert_eq!(
            messages(validate_update(&old, &changed)),
            [
                "value: Forbidden: may not be changed in an update.",
                "preemptionPolicy: Invalid value: \"Never\": field is immutable"
            ]
        );
    }
}
