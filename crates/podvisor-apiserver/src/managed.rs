//! Field ownership (`metadata.managedFields`) and server-side apply.
//!
//! Every write names a field manager (`?fieldManager=`). A create, update or patch makes its
//! manager (operation `Update`) the owner of the fields whose values it set or changed, taking
//! them from other managers without conflict. A server-side apply (operation `Apply`) owns exactly
//! the fields of its configuration: setting a field another manager owns to a different value is
//! a conflict (409) unless forced, and a field the manager applied before and no longer applies is
//! removed, unless another manager owns it too. Field sets are written in the `FieldsV1` form
//! (`f:name`, `k:{"name":"app"}` for an item of a keyed list, `v:"x"` for an item of a set list,
//! `.` for a node that is itself owned). Lists are keyed as the strategic merge patch keys them;
//! other lists are atomic: owned, and replaced, whole.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use crate::patch::{BadPatch, is_set_list, merge_key, strip};

/// A set of field paths, as a tree of `FieldsV1` path elements.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldSet {
    /// The node itself is in the set.
    member: bool,
    children: BTreeMap<String, FieldSet>,
}

/// Top-level and metadata fields no manager owns.
fn ignored(path: &[String]) -> bool {
    match path {
        [one] => matches!(one.as_str(), "f:apiVersion" | "f:kind" | "f:status"),
        [meta, field] if meta == "f:metadata" => matches!(
            field.as_str(),
            "f:name"
                | "f:namespace"
                | "f:uid"
                | "f:resourceVersion"
                | "f:generation"
                | "f:creationTimestamp"
                | "f:deletionTimestamp"
                | "f:deletionGracePeriodSeconds"
                | "f:managedFields"
                | "f:selfLink"
        ),
        _ => false,
    }
}

/// A key field of list items that the API server defaults when it is left out, and its default.
const DEFAULTED_KEY: (&str, &str) = ("protocol", "TCP");

/// The key of a list item, `k:{…}`: its merge key, or for container ports, the port and its
/// protocol (defaulted), as the API server keys them for field ownership.
fn item_key(field: &str, item: &Value) -> Option<String> {
    let key = merge_key(field)?;
    let mut fields = Map::new();
    fields.insert(key.to_string(), item.get(key)?.clone());
    if field == "ports" && key == "containerPort" {
        let (name, default) = DEFAULTED_KEY;
        fields.insert(name.to_string(), item.get(name).cloned().unwrap_or_else(|| json!(default)));
    }
    Some(format!("k:{}", Value::Object(fields)))
}

impl FieldSet {
    /// The fields set in `object` (a whole object: ignored metadata and status left out).
    pub fn of(object: &Value) -> FieldSet {
        let mut set = FieldSet::default();
        set.add(object, "", &mut Vec::new());
        set
    }

    fn add(&mut self, v: &Value, field: &str, path: &mut Vec<String>) {
        match v {
            Value::Object(m) if !m.is_empty() => {
                for (k, c) in m {
                    path.push(format!("f:{k}"));
                    // The metadata is never owned whole, only its fields.
                    let bare_metadata = path.len() == 1 && k == "metadata" && c.as_object().is_none_or(Map::is_empty);
                    if !(ignored(path) || bare_metadata) {
                        let child = self.children.entry(format!("f:{k}")).or_default();
                        child.add(c, k, path);
                        if child.is_empty() {
                            self.children.remove(&format!("f:{k}"));
                        }
                    }
                    path.pop();
                }
            }
            Value::Array(items)
                if !items.is_empty()
                    && merge_key(field).is_some()
                    && items.iter().all(|i| item_key(field, i).is_some()) =>
            {
                for item in items {
                    let Some(key) = item_key(field, item) else { continue };
                    let node = self.children.entry(key).or_default();
                    node.member = true;
                    if let Value::Object(m) = item {
                        for (k, c) in m {
                            node.children.entry(format!("f:{k}")).or_default().add(c, k, path);
                        }
                    }
                }
            }
            Value::Array(items) if !items.is_empty() && field == "finalizers" => {
                for item in items {
                    self.children.entry(format!("v:{item}")).or_default().member = true;
                }
            }
            _ => self.member = true,
        }
    }

    /// Reads a `fieldsV1` value.
    pub fn from_json(v: &Value) -> FieldSet {
        let mut set = FieldSet::default();
        if let Value::Object(m) = v {
            for (k, c) in m {
                if k == "." {
                    set.member = true;
                } else {
                    let child = FieldSet::from_json(c);
                    set.children.insert(k.clone(), child);
                }
            }
            // A leaf (`{}`) is a member.
            if m.is_empty() {
                set.member = true;
            }
        }
        set
    }

    /// The `fieldsV1` value.
    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        if self.member && !self.children.is_empty() {
            m.insert(".".into(), json!({}));
        }
        for (k, c) in self.children.iter().filter(|(_, c)| !c.is_empty()) {
            m.insert(k.clone(), c.to_json());
        }
        Value::Object(m)
    }

    /// Whether nothing is in the set.
    pub fn is_empty(&self) -> bool {
        !self.member && self.children.values().all(FieldSet::is_empty)
    }

    fn node(&self, path: &[String]) -> Option<&FieldSet> {
        path.iter().try_fold(self, |n, e| n.children.get(e))
    }

    /// Whether `path` is in the set.
    pub fn contains(&self, path: &[String]) -> bool {
        self.node(path).is_some_and(|n| n.member)
    }

    /// Whether `path` or anything under it is in the set.
    fn touches(&self, path: &[String]) -> bool {
        self.node(path).is_some_and(|n| !n.is_empty())
    }

    /// Puts `path` in the set.
    fn insert(&mut self, path: &[String]) {
        let node = path.iter().fold(self, |n, e| n.children.entry(e.clone()).or_default());
        node.member = true;
    }

    /// Takes `path` out of the set, and the nodes above it that are left empty (an empty node
    /// would read back from `fieldsV1` as owning its whole field).
    fn remove(&mut self, path: &[String]) {
        let Some((first, rest)) = path.split_first() else {
            self.member = false;
            return;
        };
        if let Some(child) = self.children.get_mut(first) {
            child.remove(rest);
            if child.is_empty() {
                self.children.remove(first);
            }
        }
    }

    /// Every member path.
    fn members(&self) -> Vec<Vec<String>> {
        let mut out = Vec::new();
        self.walk(&mut Vec::new(), &mut out);
        out
    }

    fn walk(&self, path: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
        if self.member {
            out.push(path.clone());
        }
        for (k, c) in &self.children {
            path.push(k.clone());
            c.walk(path, out);
            path.pop();
        }
    }

    /// Keeps only the paths also in `other`.
    fn retain_in(&mut self, other: &FieldSet) {
        self.member &= other.member;
        self.children.retain(|k, c| match other.children.get(k) {
            Some(o) => {
                c.retain_in(o);
                !c.is_empty()
            }
            None => false,
        });
    }
}

/// Whether `item` is the list item the path element `e` names (`k:{…}` by its key fields,
/// `v:…` by its value).
fn names_item(e: &str, item: &Value) -> bool {
    if let Some(key) = e.strip_prefix("k:") {
        let (defaulted, default) = DEFAULTED_KEY;
        serde_json::from_str::<Map<String, Value>>(key).is_ok_and(|k| {
            k.iter().all(|(f, v)| match item.get(f) {
                Some(x) => x == v,
                None => f == defaulted && v == default,
            })
        })
    } else if let Some(value) = e.strip_prefix("v:") {
        serde_json::from_str::<Value>(value).is_ok_and(|v| *item == v)
    } else {
        false
    }
}

/// The value the path element `e` names inside `v`.
fn child<'a>(v: &'a Value, e: &str) -> Option<&'a Value> {
    match e.strip_prefix("f:") {
        Some(name) => v.get(name),
        None => v.as_array()?.iter().find(|i| names_item(e, i)),
    }
}

fn child_mut<'a>(v: &'a mut Value, e: &str) -> Option<&'a mut Value> {
    match e.strip_prefix("f:") {
        Some(name) => v.get_mut(name),
        None => v.as_array_mut()?.iter_mut().find(|i| names_item(e, i)),
    }
}

/// The value at a field path.
fn get<'a>(v: &'a Value, path: &[String]) -> Option<&'a Value> {
    path.iter().try_fold(v, |v, e| child(v, e))
}

/// Removes the field or list item at a path.
fn remove_at(v: &mut Value, path: &[String]) {
    let Some((last, parents)) = path.split_last() else { return };
    let Some(parent) = parents.iter().try_fold(v, |v, e| child_mut(v, e)) else { return };
    match (last.strip_prefix("f:"), parent) {
        (Some(name), Value::Object(m)) => drop(m.remove(name)),
        (None, Value::Array(items)) => items.retain(|i| !names_item(last, i)),
        _ => {}
    }
}

/// A path as the API server prints it in a conflict: `.spec.containers[name="app"].image`.
pub fn display(path: &[String]) -> String {
    let mut out = String::new();
    for e in path {
        if let Some(name) = e.strip_prefix("f:") {
            out.push('.');
            out.push_str(name);
        } else if let Some(key) = e.strip_prefix("k:") {
            let key: Map<String, Value> = serde_json::from_str(key).unwrap_or_default();
            let parts: Vec<String> = key.iter().map(|(k, v)| format!("{k}={v}")).collect();
            out.push_str(&format!("[{}]", parts.join(",")));
        } else if let Some(item) = e.strip_prefix("v:") {
            out.push_str(&format!("[={item}]"));
        }
    }
    out
}

/// One `managedFields` entry.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// The field manager.
    pub manager: String,
    /// `Apply` or `Update`.
    pub operation: String,
    /// The API version the fields are named in.
    pub api_version: String,
    /// When the manager last wrote.
    pub time: String,
    /// The fields it owns.
    pub fields: FieldSet,
    /// The subresource written (`status`), if any.
    pub subresource: Option<String>,
}

/// The object's `managedFields`.
pub fn entries(object: &Value) -> Vec<Entry> {
    let list = object.pointer("/metadata/managedFields").and_then(Value::as_array);
    let text = |e: &Value, k: &str| e.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    list.into_iter()
        .flatten()
        .filter(|e| e.get("manager").is_some())
        .map(|e| Entry {
            manager: text(e, "manager"),
            operation: text(e, "operation"),
            api_version: text(e, "apiVersion"),
            time: text(e, "time"),
            fields: e.get("fieldsV1").map(FieldSet::from_json).unwrap_or_default(),
            subresource: e.get("subresource").and_then(Value::as_str).map(str::to_string),
        })
        .collect()
}

/// Writes `entries` as the object's `managedFields` (none: the field is removed).
pub fn set_entries(object: &mut Value, entries: &[Entry]) {
    let list: Vec<Value> = entries
        .iter()
        .filter(|e| !e.fields.is_empty())
        .map(|e| {
            let mut v = json!({"manager": e.manager, "operation": e.operation, "apiVersion": e.api_version,
                "time": e.time, "fieldsType": "FieldsV1", "fieldsV1": e.fields.to_json()});
            if let Some(s) = &e.subresource {
                v["subresource"] = json!(s);
            }
            v
        })
        .collect();
    let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) else { return };
    if list.is_empty() {
        meta.remove("managedFields");
    } else {
        meta.insert("managedFields".into(), Value::Array(list));
    }
}

fn api_version(object: &Value) -> String {
    object.get("apiVersion").and_then(Value::as_str).unwrap_or("").to_string()
}

/// Records a create (`old` is `None`), update or patch by `manager` at `now` into `new`'s
/// `managedFields`. `managedFields` the client sent, changed from `old`'s, are kept as sent (this
/// is how kubectl hands client-side apply's fields to server-side apply).
pub fn record_update(old: Option<&Value>, new: &mut Value, manager: &str, now: &str) {
    let sent = new.pointer("/metadata/managedFields").filter(|v| v.as_array().is_some_and(|a| !a.is_empty()));
    let before = old.and_then(|o| o.pointer("/metadata/managedFields"));
    // Entries sent that differ from the stored ones are the base; none sent (or `[]`) keeps them.
    let mut list = match (sent, old) {
        (Some(s), _) if Some(s) != before => entries(new),
        (_, Some(o)) => entries(o),
        (_, None) => Vec::new(),
    };
    let all = FieldSet::of(new);
    // A list item is taken by the write that adds it; a change inside it takes only the fields
    // changed.
    let changed: Vec<Vec<String>> = all
        .members()
        .into_iter()
        .filter(|path| {
            let was = old.and_then(|o| get(o, path));
            let item = all.node(path).is_some_and(|n| !n.children.is_empty());
            if item { was.is_none() } else { was != get(new, path) }
        })
        .collect();
    for e in &mut list {
        e.fields.retain_in(&all);
        for path in &changed {
            e.fields.remove(path);
        }
    }
    if !changed.is_empty() {
        let mine = list.iter().position(|e| e.manager == manager && e.operation == "Update" && e.subresource.is_none());
        let i = mine.unwrap_or_else(|| {
            list.push(Entry {
                manager: manager.to_string(),
                operation: "Update".into(),
                api_version: String::new(),
                time: String::new(),
                fields: FieldSet::default(),
                subresource: None,
            });
            list.len() - 1
        });
        for path in &changed {
            list[i].fields.insert(path);
        }
        (list[i].time, list[i].api_version) = (now.to_string(), api_version(new));
    }
    set_entries(new, &list);
}

/// Fields another manager owns with a different value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    /// The other manager.
    pub manager: String,
    /// Its operation: `Apply` or `Update`.
    pub operation: String,
    /// The API version it wrote in.
    pub api_version: String,
    /// The subresource it wrote through, if any.
    pub subresource: Option<String>,
    /// The field, as printed (`.spec.replicas`).
    pub field: String,
}

impl Conflict {
    /// The other manager as the API server names it: `"m"`, with ` with subresource "s"` and,
    /// for an update, ` using v1` (an applier writes in every version).
    pub fn who(&self) -> String {
        let mut who = format!("{:?}", self.manager);
        if let Some(s) = &self.subresource {
            who.push_str(&format!(" with subresource {s:?}"));
        }
        if self.operation == "Update" {
            who.push_str(&format!(" using {}", self.api_version));
        }
        who
    }
}

/// Why an apply was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApplyError {
    /// Fields owned by other managers would change (409).
    #[error("{}", conflict_message(.0))]
    Conflicts(Vec<Conflict>),
    /// The configuration could not be merged (400).
    #[error("{0}")]
    Bad(#[from] BadPatch),
}

/// The API server's wording: `Apply failed with 1 conflict: conflict with "m" using v1: .spec.x`.
fn conflict_message(conflicts: &[Conflict]) -> String {
    let n = conflicts.len();
    if let [c] = conflicts {
        return format!("Apply failed with 1 conflict: conflict with {}: {}", c.who(), c.field);
    }
    // Grouped and ordered by manager, then operation, as the API server's identifiers sort.
    let mut by: BTreeMap<(&str, &str, String), Vec<&str>> = BTreeMap::new();
    for c in conflicts {
        by.entry((&c.manager, &c.operation, c.who())).or_default().push(&c.field);
    }
    let parts: Vec<String> = by
        .iter()
        .map(|((_, _, who), fields)| {
            let list: String = fields.iter().map(|f| format!("\n- {f}")).collect();
            format!("conflicts with {who}:{list}")
        })
        .collect();
    format!("Apply failed with {n} conflicts: {}", parts.join("\n"))
}

/// Merges an apply configuration into the live object as the API server does: objects field by
/// field, keyed lists item by item by their ownership key (so two container ports that differ
/// only in protocol stay two), sets as sets, anything else replaced.
fn merge_applied(live: &mut Value, config: &Value, field: &str) -> Result<(), BadPatch> {
    match (live, config) {
        (Value::Object(l), Value::Object(c)) => {
            for (k, v) in c {
                match l.get_mut(k) {
                    _ if v.is_null() => {
                        l.remove(k);
                    }
                    Some(cur) => merge_applied(cur, v, k)?,
                    None => {
                        l.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (Value::Array(l), Value::Array(c)) if merge_key(field).is_some() => {
            for item in c {
                let key = item_key(field, item).ok_or_else(|| {
                    BadPatch(format!(
                        ".{field}: associative list with keys has an element that omits key field {:?}",
                        merge_key(field).unwrap_or_default()
                    ))
                })?;
                match l.iter_mut().find(|x| item_key(field, x).as_ref() == Some(&key)) {
                    Some(x) => merge_applied(x, item, field)?,
                    None => l.push(item.clone()),
                }
            }
        }
        (Value::Array(l), Value::Array(c)) if is_set_list(field) => {
            for item in c {
                if !l.contains(item) {
                    l.push(item.clone());
                }
            }
        }
        (l, c) => *l = c.clone(),
    }
    Ok(())
}

/// Whether `path` names a key field of a list item (`k:{"name":"app"}`, `f:name`): an item
/// that stays keeps its key.
fn is_item_key(path: &[String]) -> bool {
    let [.., item, field] = path else { return false };
    let (Some(key), Some(field)) = (item.strip_prefix("k:"), field.strip_prefix("f:")) else { return false };
    serde_json::from_str::<Map<String, Value>>(key).is_ok_and(|k| k.contains_key(field))
}

/// The fields of `live`'s `kubectl.kubernetes.io/last-applied-configuration` whose values the
/// object still has.
fn last_applied_unchanged(live: &Value) -> FieldSet {
    let annotation = live.pointer("/metadata/annotations/kubectl.kubernetes.io~1last-applied-configuration");
    let Some(last) = annotation.and_then(Value::as_str).and_then(|a| serde_json::from_str::<Value>(a).ok()) else {
        return FieldSet::default();
    };
    let mut set = FieldSet::default();
    for path in FieldSet::of(&last).members() {
        if get(&last, &path).is_some() && get(&last, &path) == get(live, &path) {
            set.insert(&path);
        }
    }
    set
}

/// Server-side apply of `config` by `manager` onto `live`: the merged object, with its
/// `managedFields`. Conflicts refuse it unless `force`, which takes the fields over.
pub fn apply(live: &Value, config: &Value, manager: &str, force: bool, now: &str) -> Result<Value, ApplyError> {
    // Patch directives mean nothing to an apply; as fields they would be owned, and `$patch`
    // would replace or delete what other managers own.
    let config = &strip(config);
    let mut list = entries(live);
    let applied = FieldSet::of(config);
    // kubectl moving from client-side to server-side apply may take over the fields its
    // last-applied annotation still describes as they are, as the API server lets it.
    let allowed = if manager == "kubectl" { last_applied_unchanged(live) } else { FieldSet::default() };
    let mut conflicts = Vec::new();
    for path in applied.members() {
        let Some(current) = get(live, &path) else { continue };
        let wanted = get(config, &path);
        if wanted == Some(current) || applied.node(&path).is_some_and(|n| !n.children.is_empty()) {
            continue;
        }
        for e in &mut list {
            if (e.manager == manager && e.operation == "Apply") || !e.fields.contains(&path) {
                continue;
            }
            if force || allowed.contains(&path) {
                e.fields.remove(&path);
            } else {
                conflicts.push(Conflict {
                    manager: e.manager.clone(),
                    operation: e.operation.clone(),
                    api_version: e.api_version.clone(),
                    subresource: e.subresource.clone(),
                    field: display(&path),
                });
            }
        }
    }
    if !conflicts.is_empty() {
        return Err(ApplyError::Conflicts(conflicts));
    }
    let mut merged = live.clone();
    merge_applied(&mut merged, config, "")?;
    let mine = list.iter().position(|e| e.manager == manager && e.operation == "Apply");
    let before = mine.map(|i| list[i].fields.clone()).unwrap_or_default();
    // Fields applied before and not now go, unless another manager owns them.
    let others: Vec<&FieldSet> =
        list.iter().filter(|e| !(e.manager == manager && e.operation == "Apply")).map(|e| &e.fields).collect();
    for path in before.members() {
        if !applied.touches(&path) && !others.iter().any(|o| o.touches(&path)) && !is_item_key(&path) {
            remove_at(&mut merged, &path);
        }
    }
    let entry = Entry {
        manager: manager.to_string(),
        operation: "Apply".into(),
        api_version: api_version(config),
        time: now.to_string(),
        fields: applied,
        subresource: None,
    };
    match mine {
        Some(i) => list[i] = entry,
        None => list.push(entry),
    }
    set_entries(&mut merged, &list);
    Ok(merged)
}

#[cfg(test)]
mod tests;
