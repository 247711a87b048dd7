//! Patches as the API server applies them: JSON merge patch (RFC 7396) and the strategic merge
//! patch that `kubectl apply` sends, with the merge keys of the Pod, Job and Deployment types
//! (`$patch`, `$setElementOrder`, `$retainKeys`, `$deleteFromPrimitiveList` directives).

use serde_json::{Map, Value};

/// Applies a JSON merge patch (RFC 7396) to `target`.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(p) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let Value::Object(t) = target else { return };
    for (k, v) in p {
        if v.is_null() {
            t.remove(k);
        } else {
            merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
        }
    }
}

/// The merge key of a list field, by the field's name, for the types podvisor serves. Lists
/// without one are replaced whole (atomic).
pub(crate) fn merge_key(field: &str) -> Option<&'static str> {
    Some(match field {
        "containers"
        | "initContainers"
        | "ephemeralContainers"
        | "volumes"
        | "imagePullSecrets"
        | "resourceClaims"
        | "schedulingGates"
        | "env" => "name",
        "ports" => "containerPort",
        "volumeMounts" => "mountPath",
        "volumeDevices" => "devicePath",
        "hostAliases" => "ip",
        "topologySpreadConstraints" => "topologyKey",
        "ownerReferences" => "uid",
        "conditions" => "type",
        _ => return None,
    })
}

/// Lists of scalars merged as sets (`patchStrategy: merge`).
pub(crate) fn is_set_list(field: &str) -> bool {
    field == "finalizers"
}

/// A strategic merge patch could not be applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BadPatch(pub String);

/// Removes the patch directives (`$`-prefixed keys) from a value that is inserted as is.
pub(crate) fn strip(v: &Value) -> Value {
    match v {
        Value::Object(m) => {
            Value::Object(m.iter().filter(|(k, _)| !k.starts_with('$')).map(|(k, v)| (k.clone(), strip(v))).collect())
        }
        Value::Array(a) => Value::Array(a.iter().map(strip).collect()),
        other => other.clone(),
    }
}

/// Applies a strategic merge patch to `target`, an object of `resource`: lists merge by the
/// merge keys of its Go types (a Service's `ports` by `port`, a container's by
/// `containerPort`), read from the schemas podvisor serves.
pub fn strategic_merge_for(
    resource: podvisor_objects::kinds::Resource,
    target: &mut Value,
    patch: &Value,
) -> Result<(), BadPatch> {
    merge_in(target, patch, podvisor_objects::openapi::root_schema(resource))
}

/// Applies a strategic merge patch to `target` whose type is not known: lists merge by the
/// merge key their field's name usually has.
pub fn strategic_merge(target: &mut Value, patch: &Value) -> Result<(), BadPatch> {
    merge_in(target, patch, None)
}

/// How the list `field` of an object of schema `schema` merges: its merge key, whether it is a
/// set of scalars, and the schema of its items. By the field's name where the schema is not
/// known.
fn list_meta(schema: Option<&str>, field: &str) -> (Option<&'static str>, bool, Option<&'static str>) {
    match schema {
        Some(s) => match podvisor_objects::openapi::field_patch(s, field) {
            Some(m) => (m.merge_key, m.merge && m.merge_key.is_none(), m.schema),
            None => (None, false, None),
        },
        None => (merge_key(field), is_set_list(field), None),
    }
}

fn merge_in(target: &mut Value, patch: &Value, schema: Option<&str>) -> Result<(), BadPatch> {
    let Value::Object(p) = patch else {
        return Err(BadPatch("a strategic merge patch must be a JSON object".into()));
    };
    match p.get("$patch").and_then(Value::as_str) {
        Some("replace") => {
            *target = strip(patch);
            return Ok(());
        }
        Some("delete") => {
            *target = Value::Object(Map::new());
            return Ok(());
        }
        Some(other) => return Err(BadPatch(format!("unknown patch type: {other}"))),
        None => {}
    }
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let Value::Object(t) = target else { return Ok(()) };
    let mut orders = Vec::new();
    for (k, v) in p {
        if let Some(list) = k.strip_prefix("$setElementOrder/") {
            orders.push((list.to_string(), v.clone()));
        } else if let Some(list) = k.strip_prefix("$deleteFromPrimitiveList/") {
            if let (Some(Value::Array(items)), Value::Array(gone)) = (t.get_mut(list), v) {
                items.retain(|i| !gone.contains(i));
            }
        } else if k.starts_with('$') {
            // `$retainKeys` is applied after the merge below.
        } else if v.is_null() {
            t.remove(k);
        } else {
            let (key, set, child) = list_meta(schema, k);
            match (t.get_mut(k), v) {
                (Some(cur @ Value::Object(_)), Value::Object(_)) => merge_in(cur, v, child)?,
                (Some(Value::Array(cur)), Value::Array(items)) if key.is_some() => {
                    merge_list(cur, items, key.unwrap_or("name"), child)?
                }
                (Some(Value::Array(cur)), Value::Array(items)) if set => {
                    for i in items {
                        if !cur.contains(i) {
                            cur.push(i.clone());
                        }
                    }
                }
                (_, Value::Array(items)) if key.is_some() => {
                    let mut cur = Vec::new();
                    merge_list(&mut cur, items, key.unwrap_or("name"), child)?;
                    t.insert(k.clone(), Value::Array(cur));
                }
                _ => {
                    t.insert(k.clone(), strip(v));
                }
            }
        }
    }
    for (list, order) in orders {
        let (Some(Value::Array(items)), Value::Array(order), Some(key)) =
            (t.get_mut(&list), &order, list_meta(schema, &list).0)
        else {
            continue;
        };
        let pos = |i: &Value| order.iter().position(|o| o.get(key) == i.get(key)).unwrap_or(usize::MAX);
        items.sort_by_key(pos);
    }
    if let Some(Value::Array(keep)) = p.get("$retainKeys") {
        let keep: Vec<&str> = keep.iter().filter_map(Value::as_str).collect();
        t.retain(|k, _| keep.contains(&k.as_str()));
    }
    Ok(())
}

fn merge_list(cur: &mut Vec<Value>, items: &[Value], key: &str, schema: Option<&str>) -> Result<(), BadPatch> {
    if items.iter().any(|i| i.get("$patch").and_then(Value::as_str) == Some("replace")) {
        *cur = items.iter().filter(|i| i.get("$patch").is_none()).map(strip).collect();
        return Ok(());
    }
    for item in items {
        let Some(k) = item.get(key) else {
            return Err(BadPatch(format!("map: {item} does not contain declared merge key: {key}")));
        };
        let found = cur.iter().position(|c| c.get(key) == Some(k));
        match (item.get("$patch").and_then(Value::as_str), found) {
            (Some("delete"), Some(i)) => {
                cur.remove(i);
            }
            (Some("delete"), None) => {}
            (_, Some(i)) => merge_in(&mut cur[i], item, schema)?,
            (_, None) => cur.push(strip(item)),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn merge_patch_sets_and_removes() {
        let mut t = json!({"a": 1, "b": {"c": 2, "d": 3}});
        merge_patch(&mut t, &json!({"a": null, "b": {"c": 5}}));
        assert_eq!(t, json!({"b": {"c": 5, "d": 3}}));
    }

    #[test]
    fn strategic_merge_of_a_captured_apply_patch() {
        let mut live = json!({
            "metadata": {"labels": {"tier": "x", "app": "a"}},
            "spec": {"replicas": 1, "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}},
              "template": {"spec": {
                "containers": [
                  {"name": "a", "image": "busybox:1", "env": [{"name": "X", "value": "1"}, {"name": "Y", "value": "2"}],
                   "ports": [{"containerPort": 80}], "args": ["x"]},
                  {"name": "b", "image": "busybox:1"}],
                "initContainers": [{"name": "sc", "image": "busybox:1", "restartPolicy": "Always"}],
                "volumes": [{"name": "v", "emptyDir": {}}]}}}
        });
        let patch = json!({"metadata":{"labels":{"tier":null}},
         "spec":{"replicas":2,
          "strategy":{"$retainKeys":["type"],"rollingUpdate":null,"type":"Recreate"},
          "template":{"spec":{
            "$setElementOrder/containers":[{"name":"a"}],
            "containers":[{"name":"a","image":"busybox:2",
                "$setElementOrder/env":[{"name":"Y"}],
                "env":[{"name":"Y","value":"3"},{"$patch":"delete","name":"X"}],
                "ports":[{"containerPort":8080},{"$patch":"delete","containerPort":80}]},
              {"$patch":"delete","name":"b"}],
            "initContainers":[{"name":"sc","startupProbe":{"exec":{"command":["true"]}}}],
            "volumes":[{"$retainKeys":["configMap","name"],"configMap":{"name":"cm"},"emptyDir":null,"name":"v"}]}}}});
        strategic_merge(&mut live, &patch).unwrap();
        assert_eq!(
            live,
            json!({
                "metadata": {"labels": {"app": "a"}},
                "spec": {"replicas": 2, "strategy": {"type": "Recreate"},
                  "template": {"spec": {
                    "containers": [{"name": "a", "image": "busybox:2", "env": [{"name": "Y", "value": "3"}],
                       "ports": [{"containerPort": 8080}], "args": ["x"]}],
                    "initContainers": [{"name": "sc", "image": "busybox:1", "restartPolicy": "Always",
                       "startupProbe": {"exec": {"command": ["true"]}}}],
                    "volumes": [{"name": "v", "configMap": {"name": "cm"}}]}}}
            })
        );
    }

    #[test]
    fn set_element_order_and_atomic_lists() {
        let mut live = json!({"containers": [{"name": "a"}, {"name": "b"}], "args": ["1", "2"]});
        strategic_merge(
            &mut live,
            &json!({"$setElementOrder/containers": [{"name": "b"}, {"name": "a"}], "args": ["3"]}),
        )
        .unwrap();
        assert_eq!(live, json!({"containers": [{"name": "b"}, {"name": "a"}], "args": ["3"]}));
        let err = strategic_merge(&mut live, &json!({"containers": [{"image": "x"}]})).unwrap_err();
        assert!(err.0.contains("merge key: name"), "{err}");
    }
}

#[cfg(test)]
mod typed_tests {
    use super::*;
    use podvisor_objects::kinds::Resource;
    use serde_json::json;

    #[test]
    fn lists_merge_by_the_merge_keys_of_their_types() {
        let mut svc = json!({"spec": {"ports": [{"name": "http", "port": 80, "targetPort": 8080}, {"name": "https", "port": 443}]}});
        let patch = json!({"spec": {"$setElementOrder/ports": [{"port": 80}, {"port": 443}], "ports": [{"port": 80, "targetPort": 9090}]}});
        strategic_merge_for(Resource::Services, &mut svc, &patch).unwrap();
        assert_eq!(
            svc["spec"]["ports"],
            json!([{"name": "http", "port": 80, "targetPort": 9090}, {"name": "https", "port": 443}])
        );
        // A container's ports still merge by containerPort, deep inside a Deployment.
        let mut d = json!({"spec": {"template": {"spec": {"containers": [{"name": "a", "ports": [{"containerPort": 80, "name": "web"}]}]}}}});
        let patch =
            json!({"spec": {"template": {"spec": {"containers": [{"name": "a", "ports": [{"containerPort": 81}]}]}}}});
        strategic_merge_for(Resource::Deployments, &mut d, &patch).unwrap();
        assert_eq!(
            d["spec"]["template"]["spec"]["containers"][0]["ports"],
            json!([{"containerPort": 80, "name": "web"}, {"containerPort": 81}])
        );
        // A list its type does not merge (EndpointSlice ports) is replaced whole.
        let mut slice = json!({"ports": [{"port": 1}]});
        strategic_merge_for(Resource::EndpointSlices, &mut slice, &json!({"ports": [{"port": 2}]})).unwrap();
        assert_eq!(slice["ports"], json!([{"port": 2}]));
    }
}
