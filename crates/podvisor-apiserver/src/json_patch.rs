//! JSON patch (RFC 6902), what `kubectl patch --type=json` sends: a list of `add`, `remove`,
//! `replace`, `move`, `copy` and `test` operations on JSON pointers (RFC 6901), applied in
//! order, all or nothing. The error texts are those the API server passes on.

use serde_json::Value;

/// Why a JSON patch was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JsonPatchError {
    /// The body is not a list of operations (the API server's 400).
    #[error("{0}")]
    Decode(String),
    /// An operation does not apply to the object (the API server's 422).
    #[error("{0}")]
    Apply(String),
    /// Too many operations, or copies that grow the object past the bound (the API server's
    /// 413).
    #[error("{0}")]
    TooLarge(String),
}

/// The most operations a JSON patch may hold, as the API server allows.
pub const MAX_OPERATIONS: usize = 10_000;

/// The most bytes `copy` operations may add to an object together (the API server's request
/// body limit): a few copies of copies otherwise grow an object to gigabytes.
pub const MAX_COPY_BYTES: usize = 3 * 1024 * 1024;

/// Applies the JSON patch `patch` to `target`. On an error `target` is left as it was.
pub fn json_patch(target: &mut Value, patch: &Value) -> Result<(), JsonPatchError> {
    let ops = patch.as_array().ok_or_else(|| {
        JsonPatchError::Decode("json: cannot unmarshal object into Go value of type jsonpatch.Patch".into())
    })?;
    if ops.len() > MAX_OPERATIONS {
        return Err(JsonPatchError::TooLarge(format!(
            "The allowed maximum operations in a JSON patch is {MAX_OPERATIONS}, got {}",
            ops.len()
        )));
    }
    let mut doc = target.clone();
    let mut copied = 0usize;
    for op in ops {
        if op.get("op").and_then(Value::as_str) == Some("copy")
            && let Some(from) = op.get("from").and_then(Value::as_str)
            && let Some(v) = get(&doc, from)
        {
            copied = copied.saturating_add(serde_json::to_vec(v).map_or(0, |b| b.len()));
            if copied > MAX_COPY_BYTES {
                return Err(JsonPatchError::TooLarge(format!(
                    "Unable to complete the copy, the accumulated size increase of copy is {copied}, exceeding the limit {MAX_COPY_BYTES}"
                )));
            }
        }
        apply(&mut doc, op)?;
    }
    *target = doc;
    Ok(())
}

fn field<'a>(op: &'a Value, name: &str, kind: &str) -> Result<&'a str, JsonPatchError> {
    op.get(name)
        .and_then(Value::as_str)
        .ok_or_else(|| JsonPatchError::Apply(format!("{kind} operation, missing {name}")))
}

fn apply(doc: &mut Value, op: &Value) -> Result<(), JsonPatchError> {
    let kind = op.get("op").and_then(Value::as_str).unwrap_or("");
    let value = |what: &str| {
        op.get("value").cloned().ok_or_else(|| JsonPatchError::Apply(format!("{what} operation, missing value")))
    };
    let missing = |what: &str, path: &str| {
        JsonPatchError::Apply(format!("{what} operation does not apply: doc is missing path: {path:?}: missing value"))
    };
    match kind {
        "add" => {
            let path = field(op, "path", "add")?;
            add(doc, path, value("add")?).ok_or_else(|| missing("add", path))
        }
        "remove" => {
            let path = field(op, "path", "remove")?;
            remove(doc, path).map(drop).ok_or_else(|| missing("remove", path))
        }
        "replace" => {
            let path = field(op, "path", "replace")?;
            let v = value("replace")?;
            let slot = get_mut(doc, path).ok_or_else(|| {
                JsonPatchError::Apply(format!(
                    "replace operation does not apply: doc is missing key: {path}: missing value"
                ))
            })?;
            *slot = v;
            Ok(())
        }
        "move" | "copy" => {
            let (from, path) = (field(op, "from", kind)?, field(op, "path", kind)?);
            if kind == "move" && path.starts_with(&format!("{from}/")) {
                return Err(JsonPatchError::Apply(format!(
                    "move operation, cannot move {from:?} into its child {path:?}"
                )));
            }
            let v = if kind == "move" { remove(doc, from) } else { get(doc, from).cloned() };
            let v = v.ok_or_else(|| missing(kind, from))?;
            add(doc, path, v).ok_or_else(|| missing(kind, path))
        }
        "test" => {
            let path = field(op, "path", "test")?;
            let want = op.get("value").cloned().unwrap_or(Value::Null);
            // A missing leaf tests as null; a missing parent does not apply.
            let parent_exists = has_parent(doc, path);
            match get(doc, path) {
                Some(got) if *got == want => Ok(()),
                None if want.is_null() && parent_exists => Ok(()),
                None if !parent_exists => Err(missing("test", path)),
                _ => Err(JsonPatchError::Apply(format!("testing value {path} failed: test failed"))),
            }
        }
        other => Err(JsonPatchError::Apply(format!("Unexpected kind: {other}"))),
    }
}

/// The reference tokens of a JSON pointer, unescaped (`~1` is `/`, `~0` is `~`).
fn tokens(path: &str) -> Option<Vec<String>> {
    if path.is_empty() {
        return Some(Vec::new());
    }
    let rest = path.strip_prefix('/')?;
    Some(rest.split('/').map(|t| t.replace("~1", "/").replace("~0", "~")).collect())
}

fn index(token: &str, len: usize) -> Option<usize> {
    if token.is_empty() || !token.bytes().all(|b| b.is_ascii_digit()) || (token.len() > 1 && token.starts_with('0')) {
        return None;
    }
    token.parse::<usize>().ok().filter(|i| *i < len)
}

fn walk<'a>(doc: &'a Value, tokens: &[String]) -> Option<&'a Value> {
    tokens.iter().try_fold(doc, |cur, t| match cur {
        Value::Object(m) => m.get(t),
        Value::Array(a) => a.get(index(t, a.len())?),
        _ => None,
    })
}

fn get<'a>(doc: &'a Value, path: &str) -> Option<&'a Value> {
    walk(doc, &tokens(path)?)
}

/// Whether the value holding `path`'s last token exists (the whole document has none).
fn has_parent(doc: &Value, path: &str) -> bool {
    match tokens(path) {
        Some(t) if !t.is_empty() => walk(doc, &t[..t.len() - 1]).is_some(),
        Some(_) => true,
        None => false,
    }
}

fn get_mut<'a>(doc: &'a mut Value, path: &str) -> Option<&'a mut Value> {
    tokens(path)?.iter().try_fold(doc, |cur, t| match cur {
        Value::Object(m) => m.get_mut(t),
        Value::Array(a) => {
            let i = index(t, a.len())?;
            a.get_mut(i)
        }
        _ => None,
    })
}

/// The parent of `path` and the last token; `None` for the whole document.
fn parent<'a>(doc: &'a mut Value, path: &str) -> Option<(&'a mut Value, String)> {
    let mut t = tokens(path)?;
    let last = t.pop()?;
    let parent_path: String = t.iter().map(|s| format!("/{}", s.replace('~', "~0").replace('/', "~1"))).collect();
    Some((get_mut(doc, &parent_path)?, last))
}

fn add(doc: &mut Value, path: &str, v: Value) -> Option<()> {
    if path.is_empty() {
        *doc = v;
        return Some(());
    }
    let (p, last) = parent(doc, path)?;
    match p {
        Value::Object(m) => {
            m.insert(last, v);
        }
        Value::Array(a) if last == "-" => a.push(v),
        Value::Array(a) => {
            let i = index(&last, a.len() + 1)?;
            a.insert(i, v);
        }
        _ => return None,
    }
    Some(())
}

fn remove(doc: &mut Value, path: &str) -> Option<Value> {
    let (p, last) = parent(doc, path)?;
    match p {
        Value::Object(m) => m.remove(&last),
        Value::Array(a) => {
            let i = index(&last, a.len())?;
            Some(a.remove(i))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue: 19 copies of copies took 57 s and 3.4 GB. Copies are bounded by what they add.
    #[test]
    fn copies_that_double_the_object_are_stopped_at_the_bound() {
        let mut doc = json!({"a": "x".repeat(1000)});
        let mut ops = vec![json!({"op": "add", "path": "/b", "value": [ "x".repeat(1000) ]})];
        for i in 0..40 {
            ops.push(json!({"op": "copy", "from": "", "path": format!("/c{i}")}));
        }
        let started = std::time::Instant::now();
        let err = json_patch(&mut doc, &Value::Array(ops)).unwrap_err();
        assert!(
            matches!(err, JsonPatchError::TooLarge(ref m) if m.contains("accumulated size increase of copy")),
            "{err}"
        );
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
        assert_eq!(doc, json!({"a": "x".repeat(1000)}), "all or nothing");
        let many = Value::Array(vec![json!({"op": "test", "path": "/a", "value": null}); MAX_OPERATIONS + 1]);
        assert_eq!(
            json_patch(&mut doc, &many),
            Err(JsonPatchError::TooLarge("The allowed maximum operations in a JSON patch is 10000, got 10001".into()))
        );
    }
    use serde_json::json;

    #[test]
    fn every_operation_in_order() {
        let mut doc = json!({"metadata": {"labels": {"a/b": "1"}}, "spec": {"containers": [{"name": "x"}]}});
        let patch = json!([
            {"op": "test", "path": "/metadata/labels/a~1b", "value": "1"},
            {"op": "add", "path": "/spec/containers/-", "value": {"name": "z"}},
            {"op": "add", "path": "/spec/containers/1", "value": {"name": "y"}},
            {"op": "replace", "path": "/spec/containers/0/name", "value": "w"},
            {"op": "copy", "from": "/spec/containers/0", "path": "/spec/first"},
            {"op": "move", "from": "/metadata/labels/a~1b", "path": "/metadata/labels/c"},
            {"op": "remove", "path": "/spec/containers/2"},
        ]);
        json_patch(&mut doc, &patch).unwrap();
        assert_eq!(
            doc,
            json!({"metadata": {"labels": {"c": "1"}},
                   "spec": {"containers": [{"name": "w"}, {"name": "y"}], "first": {"name": "w"}}})
        );
    }

    #[test]
    fn a_failed_operation_changes_nothing_and_says_what_failed() {
        let before = json!({"spec": {"replicas": 1, "list": [0]}});
        let mut doc = before.clone();
        let cases = [
            (
                json!([{"op": "replace", "path": "/spec/replicas", "value": 2}, {"op": "test", "path": "/spec/replicas", "value": 1}]),
                "testing value /spec/replicas failed: test failed",
            ),
            (
                json!([{"op": "remove", "path": "/spec/paused"}]),
                "remove operation does not apply: doc is missing path: \"/spec/paused\": missing value",
            ),
            (
                json!([{"op": "replace", "path": "/spec/x", "value": 1}]),
                "replace operation does not apply: doc is missing key: /spec/x: missing value",
            ),
            (
                json!([{"op": "add", "path": "/nope/x", "value": 1}]),
                "add operation does not apply: doc is missing path: \"/nope/x\": missing value",
            ),
            (json!([{"op": "frob", "path": "/spec"}]), "Unexpected kind: frob"),
            (
                json!([{"op": "test", "path": "/nope/x", "value": null}]),
                "test operation does not apply: doc is missing path: \"/nope/x\": missing value",
            ),
            (
                json!([{"op": "add", "path": "/spec/list/+1", "value": 1}]),
                "add operation does not apply: doc is missing path: \"/spec/list/+1\": missing value",
            ),
        ];
        for (patch, message) in cases {
            assert_eq!(json_patch(&mut doc, &patch), Err(JsonPatchError::Apply(message.into())));
            assert_eq!(doc, before);
        }
        assert!(matches!(json_patch(&mut doc, &json!({"op": "add"})), Err(JsonPatchError::Decode(_))));
    }
}
