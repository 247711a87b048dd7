//! Label and field selectors, parsed from the query strings kubectl sends and evaluated against
//! objects in their JSON form, with the API server's error wording.

use std::collections::BTreeMap;

use serde_json::Value;

use podvisor_objects::kinds::Resource;

/// A selector could not be parsed or names an unsupported field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BadSelector(pub String);

#[derive(Debug, Clone, PartialEq, Eq)]
enum Op {
    Eq(String),
    NotEq(String),
    In(Vec<String>),
    NotIn(Vec<String>),
    Exists,
    NotExists,
}

/// A parsed label selector: every requirement must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LabelSelector {
    reqs: Vec<(String, Op)>,
}

/// Splits on commas outside parentheses.
fn split_top(s: &str) -> Vec<&str> {
    let (mut depth, mut start, mut out) = (0i32, 0usize, Vec::new());
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out
}

fn set_values(rest: &str, whole: &str) -> Result<Vec<String>, BadSelector> {
    let rest = rest.trim();
    let inner = rest
        .strip_prefix('(')
        .and_then(|r| r.strip_suffix(')'))
        .ok_or_else(|| BadSelector(format!("unable to parse requirement: found '{rest}', expected: '('")))?;
    let values: Vec<String> = inner.split(',').map(|v| v.trim().to_string()).collect();
    if values.iter().any(String::is_empty) && values.len() > 1 {
        return Err(BadSelector(format!("unable to parse requirement: {whole}")));
    }
    Ok(values)
}

impl LabelSelector {
    /// Parses `a=b,c!=d,e in (f,g),!h`.
    pub fn parse(s: &str) -> Result<LabelSelector, BadSelector> {
        let mut reqs = Vec::new();
        for part in split_top(s) {
            let part = part.trim();
            if part.is_empty() {
                continue;
            }
            if let Some(key) = part.strip_prefix('!') {
                reqs.push((key.trim().to_string(), Op::NotExists));
            } else if let Some((k, v)) = part.split_once("!=") {
                reqs.push((k.trim().to_string(), Op::NotEq(v.trim().to_string())));
            } else if let Some((k, v)) = part.split_once("==") {
                reqs.push((k.trim().to_string(), Op::Eq(v.trim().to_string())));
            } else if let Some((k, v)) = part.split_once('=') {
                reqs.push((k.trim().to_string(), Op::Eq(v.trim().to_string())));
            } else if let Some((k, rest)) = part.split_once(" notin ") {
                reqs.push((k.trim().to_string(), Op::NotIn(set_values(rest, part)?)));
            } else if let Some((k, rest)) = part.split_once(" in ") {
                reqs.push((k.trim().to_string(), Op::In(set_values(rest, part)?)));
            } else if part.contains(char::is_whitespace) || part.contains('(') {
                return Err(BadSelector(format!("unable to parse requirement: {part}")));
            } else {
                reqs.push((part.to_string(), Op::Exists));
            }
        }
        for (k, _) in &reqs {
            if k.is_empty() {
                return Err(BadSelector(format!(
                    "unable to parse requirement: found '', expected: identifier in {s:?}"
                )));
            }
        }
        Ok(LabelSelector { reqs })
    }

    /// The selector of a Job or ReplicaSet spec (`matchLabels` and `matchExpressions`).
    pub fn from_spec(sel: &k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector) -> LabelSelector {
        let mut reqs: Vec<(String, Op)> =
            sel.match_labels.iter().flatten().map(|(k, v)| (k.clone(), Op::Eq(v.clone()))).collect();
        for e in sel.match_expressions.iter().flatten() {
            let values = e.values.clone().unwrap_or_default();
            let op = match e.operator.as_str() {
                "In" => Op::In(values),
                "NotIn" => Op::NotIn(values),
                "Exists" => Op::Exists,
                _ => Op::NotExists,
            };
            reqs.push((e.key.clone(), op));
        }
        LabelSelector { reqs }
    }

    /// Whether these labels match.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.reqs.iter().all(|(k, op)| {
            let v = labels.get(k);
            match op {
                Op::Eq(x) => v == Some(x),
                Op::NotEq(x) => v != Some(x),
                Op::In(xs) => v.is_some_and(|v| xs.contains(v)),
                Op::NotIn(xs) => v.is_none_or(|v| !xs.contains(v)),
                Op::Exists => v.is_some(),
                Op::NotExists => v.is_none(),
            }
        })
    }

    /// Whether the labels of an object in JSON form match.
    pub fn matches_object(&self, obj: &Value) -> bool {
        if self.reqs.is_empty() {
            return true;
        }
        let labels: BTreeMap<String, String> = obj
            .pointer("/metadata/labels")
            .and_then(Value::as_object)
            .map(|m| m.iter().filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string()))).collect())
            .unwrap_or_default();
        self.matches(&labels)
    }

    /// Whether this selects everything.
    pub fn is_empty(&self) -> bool {
        self.reqs.is_empty()
    }
}

/// A parsed field selector: `field=value` / `field!=value` terms, all of which must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldSelector {
    terms: Vec<(String, bool, String)>,
}

/// The field labels each resource supports, beyond `metadata.name` and `metadata.namespace`.
fn supported(resource: Resource) -> &'static [&'static str] {
    match resource {
        Resource::Pods => &[
            "spec.nodeName",
            "spec.restartPolicy",
            "spec.schedulerName",
            "spec.serviceAccountName",
            "spec.hostNetwork",
            "status.phase",
            "status.podIP",
            "status.podIPs",
            "status.nominatedNodeName",
        ],
        Resource::Events => &[
            "involvedObject.kind",
            "involvedObject.namespace",
            "involvedObject.name",
            "involvedObject.uid",
            "involvedObject.apiVersion",
            "involvedObject.resourceVersion",
            "involvedObject.fieldPath",
            "reason",
            "reportingComponent",
            "source",
            "type",
        ],
        Resource::Jobs => &["status.successful"],
        Resource::Secrets => &["type"],
        Resource::Namespaces => &["status.phase"],
        _ => &[],
    }
}

/// The value a field label reads from an object, as the API server's field-label functions do.
fn field_value(resource: Resource, obj: &Value, field: &str) -> String {
    let s = |p: &str| obj.pointer(p).map(|v| v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string()));
    match (resource, field) {
        (Resource::Pods, "spec.hostNetwork") => {
            s("/spec/hostNetwork").filter(|v| v != "null").unwrap_or_else(|| "false".into())
        }
        (Resource::Pods, "spec.restartPolicy") => s("/spec/restartPolicy").unwrap_or_else(|| "Always".into()),
        (Resource::Events, "source") => s("/source/component").unwrap_or_default(),
        (Resource::Jobs, "status.successful") => s("/status/succeeded").unwrap_or_else(|| "0".into()),
        _ => {
            let pointer: String = field.split('.').map(|p| format!("/{p}")).collect();
            s(&pointer).unwrap_or_default()
        }
    }
}

impl FieldSelector {
    /// Parses `a=b,c!=d` for `resource`, refusing field labels it does not support.
    pub fn parse(resource: Resource, s: &str) -> Result<FieldSelector, BadSelector> {
        let mut terms = Vec::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (field, eq, value) = if let Some((f, v)) = part.split_once("!=") {
                (f, false, v)
            } else if let Some((f, v)) = part.split_once("==") {
                (f, true, v)
            } else if let Some((f, v)) = part.split_once('=') {
                (f, true, v)
            } else {
                return Err(BadSelector(format!("invalid selector: '{s}'; can't understand '{part}'")));
            };
            let field = field.trim();
            if !matches!(field, "metadata.name" | "metadata.namespace") && !supported(resource).contains(&field) {
                return Err(BadSelector(format!("field label not supported: {field}")));
            }
            terms.push((field.to_string(), eq, value.trim().to_string()));
        }
        Ok(FieldSelector { terms })
    }

    /// Whether an object of `resource` matches.
    pub fn matches(&self, resource: Resource, obj: &Value) -> bool {
        self.terms.iter().all(|(f, eq, v)| (field_value(resource, obj, f) == *v) == *eq)
    }

    /// The name the selector pins with `metadata.name=`, if any.
    pub fn name(&self) -> Option<&str> {
        self.terms.iter().find(|(f, eq, _)| f == "metadata.name" && *eq).map(|(_, _, v)| v.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn label_selector_syntax() {
        let s = LabelSelector::parse("app in (web,x),!foo,tier!=db,env==prod,team").unwrap();
        assert!(s.matches(&labels(&[("app", "web"), ("env", "prod"), ("team", "a")])));
        assert!(!s.matches(&labels(&[("app", "web"), ("env", "prod"), ("team", "a"), ("foo", "1")])));
        assert!(!s.matches(&labels(&[("app", "y"), ("env", "prod"), ("team", "a")])));
        assert!(!s.matches(&labels(&[("app", "x"), ("env", "prod")])));
        let n = LabelSelector::parse("app notin (a)").unwrap();
        assert!(n.matches(&labels(&[])));
        assert!(!n.matches(&labels(&[("app", "a")])));
        assert!(LabelSelector::parse("app in web").is_err());
    }

    #[test]
    fn field_selectors_on_events_and_unknown_labels() {
        let ev = json!({"involvedObject": {"name": "web", "uid": "u1", "namespace": "default"}, "type": "Normal"});
        let s = FieldSelector::parse(
            Resource::Events,
            "involvedObject.name=web,involvedObject.namespace=default,involvedObject.uid=u1",
        )
        .unwrap();
        assert!(s.matches(Resource::Events, &ev));
        let s = FieldSelector::parse(Resource::Events, "involvedObject.uid!=u1").unwrap();
        assert!(!s.matches(Resource::Events, &ev));
        assert_eq!(FieldSelector::parse(Resource::Pods, "foo=bar").unwrap_err().0, "field label not supported: foo");
        let s = FieldSelector::parse(Resource::Pods, "metadata.name=web").unwrap();
        assert_eq!(s.name(), Some("web"));
        assert!(s.matches(Resource::Pods, &json!({"metadata": {"name": "web"}})));
        let s = FieldSelector::parse(Resource::Pods, "spec.restartPolicy=Always").unwrap();
        assert!(s.matches(Resource::Pods, &json!({"spec": {}})));
    }
}
