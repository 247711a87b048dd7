//! Whether a pod may run on a node by its `nodeSelector` and its required node affinity, as the
//! scheduler's `NodeAffinity` filter and the kubelet's admission decide it, and the words both
//! use when it may not.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{NodeSelectorRequirement, NodeSelectorTerm, PodSpec};

/// The scheduler's reason for a node that a pod's node selector or required affinity excludes.
pub const MISMATCH: &str = "node(s) didn't match Pod's node affinity/selector";

/// A node as node affinity sees it: its name (for `matchFields`) and its labels.
#[derive(Debug, Clone, Copy)]
pub struct NodeView<'a> {
    /// `metadata.name`.
    pub name: &'a str,
    /// `metadata.labels`.
    pub labels: &'a BTreeMap<String, String>,
}

/// Whether `spec` may run on `node`: every `nodeSelector` label is the node's, and one of the
/// required affinity's terms matches (each of its expressions and fields). Preferred affinity
/// only ranks nodes; it never excludes one.
pub fn matches(spec: &PodSpec, node: NodeView<'_>) -> bool {
    let selector = spec.node_selector.iter().flatten().all(|(k, v)| node.labels.get(k) == Some(v));
    let required = spec
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|n| n.required_during_scheduling_ignored_during_execution.as_ref());
    selector && required.is_none_or(|r| r.node_selector_terms.iter().any(|t| term_matches(t, node)))
}

/// A term matches when it has at least one expression or field and all of them match; an empty
/// term matches no node.
fn term_matches(term: &NodeSelectorTerm, node: NodeView<'_>) -> bool {
    let expressions = term.match_expressions.as_deref().unwrap_or_default();
    let fields = term.match_fields.as_deref().unwrap_or_default();
    if expressions.is_empty() && fields.is_empty() {
        return false;
    }
    expressions.iter().all(|r| requirement_matches(r, node.labels.get(&r.key).map(String::as_str)))
        && fields.iter().all(|r| r.key == "metadata.name" && requirement_matches(r, Some(node.name)))
}

/// One requirement against the node's value for its key (`None` when the node has no such
/// label). An operator the API server would have refused matches nothing.
fn requirement_matches(r: &NodeSelectorRequirement, value: Option<&str>) -> bool {
    let values = r.values.as_deref().unwrap_or_default();
    let listed = |v: &str| values.iter().any(|x| x == v);
    match r.operator.as_str() {
        "In" => value.is_some_and(listed),
        "NotIn" => value.is_none_or(|v| !listed(v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        op @ ("Gt" | "Lt") => {
            // One integer each side; anything else matches nothing.
            let [bound] = values else { return false };
            match (value.and_then(|v| v.parse::<i64>().ok()), bound.parse::<i64>().ok()) {
                (Some(v), Some(b)) => {
                    if op == "Gt" {
                        v > b
                    } else {
                        v < b
                    }
                }
                _ => false,
            }
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec(v: serde_json::Value) -> PodSpec {
        let mut v = v;
        v["containers"] = json!([{"name": "c"}]);
        serde_json::from_value(v).unwrap()
    }

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn required(terms: serde_json::Value) -> PodSpec {
        spec(json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": terms}}}}))
    }

    #[test]
    fn a_node_selector_needs_every_label_with_its_value() {
        let l = labels(&[("disk", "ssd"), ("zone", "a")]);
        let node = NodeView { name: "n", labels: &l };
        assert!(matches(&spec(json!({})), node));
        assert!(matches(&spec(json!({"nodeSelector": {"disk": "ssd"}})), node));
        assert!(matches(&spec(json!({"nodeSelector": {"disk": "ssd", "zone": "a"}})), node));
        assert!(!matches(&spec(json!({"nodeSelector": {"disk": "hdd"}})), node));
        assert!(!matches(&spec(json!({"nodeSelector": {"disk": "ssd", "gpu": "yes"}})), node));
    }

    #[test]
    fn required_terms_are_ored_their_expressions_anded_and_an_empty_term_matches_nothing() {
        let l = labels(&[("disk", "ssd"), ("cores", "8")]);
        let node = NodeView { name: "n", labels: &l };
        let expr = |key: &str, op: &str, values: &[&str]| json!({"key": key, "operator": op, "values": values});
        let term = |exprs: Vec<serde_json::Value>| json!({"matchExpressions": exprs});
        let yes = |terms| assert!(matches(&required(terms), node));
        let no = |terms| assert!(!matches(&required(terms), node));
        yes(json!([term(vec![expr("disk", "In", &["hdd", "ssd"])])]));
        no(json!([term(vec![expr("disk", "In", &["hdd"])])]));
        yes(json!([term(vec![expr("disk", "NotIn", &["hdd"])])]));
        yes(json!([term(vec![expr("gpu", "NotIn", &["yes"])])]));
        no(json!([term(vec![expr("disk", "NotIn", &["ssd"])])]));
        yes(json!([term(vec![json!({"key": "disk", "operator": "Exists"})])]));
        no(json!([term(vec![json!({"key": "gpu", "operator": "Exists"})])]));
        yes(json!([term(vec![json!({"key": "gpu", "operator": "DoesNotExist"})])]));
        no(json!([term(vec![json!({"key": "disk", "operator": "DoesNotExist"})])]));
        yes(json!([term(vec![expr("cores", "Gt", &["4"])])]));
        no(json!([term(vec![expr("cores", "Gt", &["8"])])]));
        yes(json!([term(vec![expr("cores", "Lt", &["9223372036854775807"])])]));
        no(json!([term(vec![expr("cores", "Lt", &["not a number"])])]));
        no(json!([term(vec![expr("disk", "Gt", &["1"])])]));
        no(json!([term(vec![expr("cores", "Gt", &["1", "2"])])]));
        no(json!([term(vec![expr("disk", "Like", &["ssd"])])]));
        // Expressions of a term are all needed; one term of several is enough.
        no(json!([term(vec![expr("disk", "In", &["ssd"]), expr("cores", "Gt", &["8"])])]));
        yes(json!([term(vec![expr("disk", "In", &["hdd"])]), term(vec![expr("cores", "Gt", &["4"])])]));
        // An empty term matches nothing, not everything; no terms match nothing.
        no(json!([{}]));
        yes(json!([{}, term(vec![expr("disk", "In", &["ssd"])])]));
        no(json!([]));
    }

    #[test]
    fn match_fields_select_the_node_by_name_and_the_selector_applies_beside_affinity() {
        let l = labels(&[("disk", "ssd")]);
        let node = NodeView { name: "box", labels: &l };
        let field = |op: &str, name: &str| json!([{"matchFields": [{"key": "metadata.name", "operator": op, "values": [name]}]}]);
        assert!(matches(&required(field("In", "box")), node));
        assert!(!matches(&required(field("In", "other")), node));
        assert!(matches(&required(field("NotIn", "other")), node));
        let other_key = json!([{"matchFields": [{"key": "metadata.uid", "operator": "In", "values": ["box"]}]}]);
        assert!(!matches(&required(other_key), node));
        let mut both = required(field("In", "box"));
        both.node_selector = Some(labels(&[("disk", "hdd")]));
        assert!(!matches(&both, node));
        // Preferred affinity never excludes a node.
        let preferred = spec(json!({"affinity": {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
            {"weight": 1, "preference": {"matchExpressions": [{"key": "gpu", "operator": "Exists"}]}}]}}}));
        assert!(matches(&preferred, node));
    }
}
