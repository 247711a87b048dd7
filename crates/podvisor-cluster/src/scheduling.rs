//! The scheduler's filters for the one node, and the kubelet's admission of a pod bound to it,
//! as pure functions of the stored node and pod: cordon, taints and node affinity
//! ([`excluded`]), free host ports ([`ports_conflict`], the `NodePorts` filter), and room for
//! the pod's requests ([`shortfalls`], the `NodeResourcesFit` filter). The kubelet (`kubelet.rs`) asks them before it runs a pod, and words the verdict as
//! the scheduler or the kubelet does.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{PodAffinityTerm, PodSpec};
use podvisor_objects::node_affinity;
use podvisor_objects::resources::parse_milli;
use serde_json::{Value, json};

/// The scheduler's words after a verdict that preemption cannot change.
const NOT_HELPFUL: &str = "preemption: 0/1 nodes are available: 1 Preemption is not helpful for scheduling.";

/// The scheduler's words after a verdict of room: no pod of lower priority to preempt.
const NO_VICTIMS: &str = "preemption: 0/1 nodes are available: 1 No preemption victims found for incoming pod..";

/// Why the scheduler would not place the unbound pod `pod` on `node`, in its words, or `None`:
/// the node is cordoned (`spec.unschedulable`), has a `NoSchedule` or `NoExecute` taint the pod
/// does not tolerate, or the pod's node selector or required affinity excludes it (the order of
/// the scheduler's filters; the first that fails is named).
pub fn excluded(node: &Value, pod: &Value) -> Option<String> {
    let tolerations: Vec<&Value> =
        pod.pointer("/spec/tolerations").and_then(Value::as_array).into_iter().flatten().collect();
    let text = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    let tolerates = |key: &str, value: &str, effect: &str| {
        tolerations.iter().any(|t| {
            let effect_ok = text(t, "effect").is_empty() || text(t, "effect") == effect;
            let key_ok = match text(t, "operator").as_str() {
                "Exists" => text(t, "key").is_empty() || text(t, "key") == key,
                _ => text(t, "key") == key && text(t, "value") == value,
            };
            effect_ok && key_ok
        })
    };
    if node.pointer("/spec/unschedulable") == Some(&json!(true))
        && !tolerates("node.kubernetes.io/unschedulable", "", "NoSchedule")
    {
        return Some(format!("0/1 nodes are available: 1 node(s) were unschedulable. {NOT_HELPFUL}"));
    }
    for taint in node.pointer("/spec/taints").and_then(Value::as_array).into_iter().flatten() {
        let (key, value, effect) = (text(taint, "key"), text(taint, "value"), text(taint, "effect"));
        if matches!(effect.as_str(), "NoSchedule" | "NoExecute") && !tolerates(&key, &value, &effect) {
            return Some(format!(
                "0/1 nodes are available: 1 node(s) had untolerated taint {{{key}: {value}}}. {NOT_HELPFUL}"
            ));
        }
    }
    if !fits_node(pod, node) {
        return Some(format!("0/1 nodes are available: 1 {}. {NOT_HELPFUL}", node_affinity::MISMATCH));
    }
    None
}

/// Whether the stored pod `pod` may run on the stored `node` by its node selector and required
/// node affinity.
pub fn fits_node(pod: &Value, node: &Value) -> bool {
    fn decode<T: serde::de::DeserializeOwned>(v: Option<&Value>) -> Option<T> {
        v.and_then(|v| serde_json::from_value(v.clone()).ok())
    }
    let spec = PodSpec {
        node_selector: decode(pod.pointer("/spec/nodeSelector")),
        affinity: decode(pod.pointer("/spec/affinity")),
        ..Default::default()
    };
    let labels: BTreeMap<String, String> = decode(node.pointer("/metadata/labels")).unwrap_or_default();
    let name = node.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("");
    node_affinity::matches(&spec, node_affinity::NodeView { name, labels: &labels })
}

/// The kubelet's words when a pod bound here fails node affinity (its admission's reason is
/// `NodeAffinity`).
pub fn affinity_rejection() -> String {
    format!("Predicate NodeAffinity failed: {}", node_affinity::MISMATCH)
}

/// A resource the node lacks room for: amounts in thousandths of the unit, as
/// [`podvisor_objects::resources::effective`] gives them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shortfall {
    /// The resource's name (`cpu`, `memory`, `ephemeral-storage`, an extended resource).
    pub resource: String,
    /// What the pod requests.
    pub requested: i128,
    /// What the pods already on the node request.
    pub used: i128,
    /// What the node has for pods (its allocatable).
    pub capacity: i128,
}

impl Shortfall {
    /// The scheduler's reason (`Insufficient cpu`).
    pub fn reason(&self) -> String {
        format!("Insufficient {}", self.resource)
    }

    /// The kubelet's admission: its reason (`OutOfcpu`) and message, with CPU in millicores and
    /// every other resource in its unit (bytes), as the kubelet counts them.
    pub fn rejection(&self) -> (String, String) {
        let shown = |v: i128| if self.resource == "cpu" { v } else { v / 1000 };
        (
            format!("OutOf{}", self.resource),
            format!(
                "Node didn't have enough resource: {}, requested: {}, used: {}, capacity: {}",
                self.resource,
                shown(self.requested),
                shown(self.used),
                shown(self.capacity)
            ),
        )
    }
}

/// The node's allocatable resources in thousandths (`status.allocatable`); a quantity that does
/// not parse counts as none.
pub fn allocatable(node: &Value) -> BTreeMap<String, i128> {
    node.pointer("/status/allocatable")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| Some((k.clone(), parse_milli(v.as_str()?).ok()?)))
        .collect()
}

/// The resources the scheduler's `NodeResourcesFit` filter finds short for a pod requesting
/// `requested` on a node with `allocatable` whose pods already request `used`: each resource
/// the pod asks for more of than is left (a resource the node does not have at all is short
/// for any request), in the filter's order (CPU, memory, ephemeral storage, then the others).
/// The pod count is not a resource here: the kubelet counts pods itself.
pub fn shortfalls(
    requested: &BTreeMap<String, i128>,
    used: &BTreeMap<String, i128>,
    allocatable: &BTreeMap<String, i128>,
) -> Vec<Shortfall> {
    let rank = |r: &str| match r {
        "cpu" => 0,
        "memory" => 1,
        "ephemeral-storage" => 2,
        _ => 3,
    };
    let mut short: Vec<Shortfall> = requested
        .iter()
        .filter(|(r, amount)| **amount > 0 && r.as_str() != "pods")
        .filter_map(|(r, amount)| {
            let capacity = allocatable.get(r).copied().unwrap_or(0);
            let used = used.get(r).copied().unwrap_or(0);
            (*amount > capacity.saturating_sub(used)).then(|| Shortfall {
                resource: r.clone(),
                requested: *amount,
                used,
                capacity,
            })
        })
        .collect();
    short.sort_by_key(|s| rank(&s.resource));
    short
}

/// The scheduler's message for a node without room: each reason once (`Too many pods`,
/// `Insufficient cpu`, …), sorted as the scheduler sorts them.
pub fn no_room_message(reasons: &[String]) -> String {
    let mut counted: Vec<String> = reasons.iter().map(|r| format!("1 {r}")).collect();
    counted.sort();
    format!("0/1 nodes are available: {}. {NO_VICTIMS}", counted.join(", "))
}

/// The scheduler's reason for a node where a host port the pod asks for is taken.
pub const PORTS_TAKEN: &str = "node(s) didn't have free ports for the requested pod ports";

/// A host port a pod takes on the node: its address (`0.0.0.0` for every one), protocol and
/// number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPort {
    /// `hostIP`, `0.0.0.0` when not given.
    pub ip: String,
    /// `TCP`, `UDP` or `SCTP`.
    pub protocol: String,
    /// `hostPort`.
    pub port: i32,
}

/// The host ports of `spec`: those of its containers and of its sidecars (which run beside
/// them), as the scheduler's `NodePorts` filter counts them.
pub fn host_ports(spec: &PodSpec) -> Vec<HostPort> {
    let sidecars = spec.init_containers.iter().flatten().filter(|c| c.restart_policy.as_deref() == Some("Always"));
    sidecars
        .chain(&spec.containers)
        .flat_map(|c| c.ports.iter().flatten())
        .filter_map(|p| {
            let port = p.host_port.filter(|h| *h > 0)?;
            let ip = p.host_ip.as_deref().filter(|ip| !ip.is_empty()).unwrap_or("0.0.0.0");
            Some(HostPort { ip: ip.to_string(), protocol: p.protocol.clone().unwrap_or_else(|| "TCP".into()), port })
        })
        .collect()
}

/// Whether a port of `wanted` is taken by one of `used`: the same protocol and number on the
/// same address, or on every address (`0.0.0.0`) on either side.
pub fn ports_conflict(wanted: &[HostPort], used: &[HostPort]) -> bool {
    wanted.iter().any(|w| {
        used.iter().any(|u| {
            u.port == w.port && u.protocol == w.protocol && (u.ip == w.ip || u.ip == "0.0.0.0" || w.ip == "0.0.0.0")
        })
    })
}

/// The scheduler's message for a pod whose host ports are taken.
pub fn ports_taken_message() -> String {
    no_room_message(&[PORTS_TAKEN.to_string()])
}

/// The kubelet's words when a pod bound here asks for a host port that is taken (its
/// admission's reason is `NodePorts`).
pub fn ports_rejection() -> String {
    format!("Predicate NodePorts failed: {PORTS_TAKEN}")
}

/// A pod as inter-pod affinity sees it: its namespace, labels and affinity.
#[derive(Debug, Clone, Copy)]
pub struct PodView<'a> {
    /// `metadata.namespace`.
    pub namespace: &'a str,
    /// `metadata.labels`.
    pub labels: &'a BTreeMap<String, String>,
    /// `spec.affinity`.
    pub affinity: Option<&'a k8s_openapi::api::core::v1::Affinity>,
}

impl<'a> PodView<'a> {
    /// The view of a typed pod (`empty` stands in for missing labels).
    pub fn of(pod: &'a k8s_openapi::api::core::v1::Pod, empty: &'a BTreeMap<String, String>) -> PodView<'a> {
        PodView {
            namespace: pod.metadata.namespace.as_deref().unwrap_or("default"),
            labels: pod.metadata.labels.as_ref().unwrap_or(empty),
            affinity: pod.spec.as_ref().and_then(|s| s.affinity.as_ref()),
        }
    }

    fn affinity_terms(&self) -> &'a [PodAffinityTerm] {
        self.affinity
            .and_then(|a| a.pod_affinity.as_ref())
            .and_then(|a| a.required_during_scheduling_ignored_during_execution.as_deref())
            .unwrap_or_default()
    }

    fn anti_affinity_terms(&self) -> &'a [PodAffinityTerm] {
        self.affinity
            .and_then(|a| a.pod_anti_affinity.as_ref())
            .and_then(|a| a.required_during_scheduling_ignored_during_execution.as_deref())
            .unwrap_or_default()
    }
}

/// Whether the term of a pod in `owner_ns` selects `pod`: the pod is in one of the term's
/// namespaces (its `namespaces`, those its `namespaceSelector` selects, or the owner's own when
/// it names neither) and its labels match the term's selector (none given selects nothing).
fn term_selects(
    term: &PodAffinityTerm,
    owner_ns: &str,
    pod: PodView<'_>,
    namespaces: &BTreeMap<String, BTreeMap<String, String>>,
) -> bool {
    use podvisor_apiserver::selector::LabelSelector;
    let listed = term.namespaces.as_deref().unwrap_or_default();
    let in_namespace = if listed.is_empty() && term.namespace_selector.is_none() {
        pod.namespace == owner_ns
    } else {
        listed.iter().any(|n| n == pod.namespace)
            || term.namespace_selector.as_ref().is_some_and(|sel| {
                let empty = BTreeMap::new();
                LabelSelector::from_spec(sel).matches(namespaces.get(pod.namespace).unwrap_or(&empty))
            })
    };
    in_namespace && term.label_selector.as_ref().is_some_and(|sel| LabelSelector::from_spec(sel).matches(pod.labels))
}

/// The scheduler's `InterPodAffinity` filter on the one node (labels `node_labels`), for
/// `incoming` beside the pods already there: `None` when it may go, else the scheduler's
/// message. Every term's topology key must be a label of the node; a required affinity needs a
/// pod there that all its terms select (or, when none anywhere does, the pod itself matching
/// them: the first of a group); a required anti-affinity term must select no pod there; and no
/// pod there may have an anti-affinity term that selects the incoming one.
pub fn inter_pod(
    incoming: PodView<'_>,
    existing: &[PodView<'_>],
    node_labels: &BTreeMap<String, String>,
    namespaces: &BTreeMap<String, BTreeMap<String, String>>,
) -> Option<String> {
    let message = |reason: &str, tail: &str| format!("0/1 nodes are available: 1 {reason}. {tail}");
    let affinity = incoming.affinity_terms();
    if !affinity.is_empty() {
        let keys = affinity.iter().all(|t| node_labels.contains_key(&t.topology_key));
        let all = |p: PodView<'_>| affinity.iter().all(|t| term_selects(t, incoming.namespace, p, namespaces));
        let some_match = existing.iter().any(|p| all(*p));
        if !keys || !(some_match || all(incoming)) {
            return Some(message("node(s) didn't match pod affinity rules", NOT_HELPFUL));
        }
    }
    let anti = incoming.anti_affinity_terms().iter().any(|t| {
        node_labels.contains_key(&t.topology_key)
            && existing.iter().any(|p| term_selects(t, incoming.namespace, *p, namespaces))
    });
    if anti {
        return Some(message("node(s) didn't match pod anti-affinity rules", NO_VICTIMS));
    }
    let theirs = existing.iter().any(|p| {
        p.anti_affinity_terms()
            .iter()
            .any(|t| node_labels.contains_key(&t.topology_key) && term_selects(t, p.namespace, incoming, namespaces))
    });
    if theirs {
        return Some(message("node(s) didn't satisfy existing pods anti-affinity rules", NO_VICTIMS));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn amounts(pairs: &[(&str, i128)]) -> BTreeMap<String, i128> {
        pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
    }

    #[test]
    fn a_request_past_what_is_left_is_short_and_a_resource_the_node_lacks_is_short_for_any_request() {
        let node = json!({"status": {"allocatable": {"cpu": "2", "memory": "1Gi", "pods": "110"}}});
        let free = allocatable(&node);
        assert_eq!(free, amounts(&[("cpu", 2000), ("memory", 1073741824000), ("pods", 110000)]));
        let used = amounts(&[("cpu", 1500)]);
        // Exactly what is left fits; a thousandth more does not.
        assert_eq!(shortfalls(&amounts(&[("cpu", 500)]), &used, &free), []);
        let short = shortfalls(
            &amounts(&[("memory", 2 * 1073741824000), ("example.com/gpu", 1000), ("cpu", 501)]),
            &used,
            &free,
        );
        let names: Vec<&str> = short.iter().map(|s| s.resource.as_str()).collect();
        assert_eq!(names, ["cpu", "memory", "example.com/gpu"], "the filter's order");
        assert_eq!(
            short[0].rejection(),
            (
                "OutOfcpu".to_string(),
                "Node didn't have enough resource: cpu, requested: 501, used: 1500, capacity: 2000".to_string()
            )
        );
        assert_eq!(
            short[1].rejection().1,
            "Node didn't have enough resource: memory, requested: 2147483648, used: 0, capacity: 1073741824"
        );
        // No request, no shortfall; requests that saturated stay comparable.
        assert_eq!(shortfalls(&amounts(&[("cpu", 0)]), &used, &free), []);
        assert_eq!(shortfalls(&amounts(&[("cpu", i128::MAX)]), &amounts(&[("cpu", i128::MAX)]), &free).len(), 1);
        let reasons: Vec<String> = short.iter().map(Shortfall::reason).chain(["Too many pods".to_string()]).collect();
        assert_eq!(
            no_room_message(&reasons),
            "0/1 nodes are available: 1 Insufficient cpu, 1 Insufficient example.com/gpu, 1 Insufficient memory, 1 Too many pods. preemption: 0/1 nodes are available: 1 No preemption victims found for incoming pod.."
        );
    }

    #[test]
    fn host_ports_conflict_on_one_address_or_on_every_address_and_not_across_protocols() {
        let spec: PodSpec = serde_json::from_value(json!({
            "initContainers": [
                {"name": "once", "ports": [{"containerPort": 1, "hostPort": 7000}]},
                {"name": "side", "restartPolicy": "Always", "ports": [{"containerPort": 1, "hostPort": 7001}]}],
            "containers": [{"name": "c", "ports": [
                {"containerPort": 80, "hostPort": 8080, "hostIP": "127.0.0.1"},
                {"containerPort": 53, "hostPort": 5353, "protocol": "UDP"},
                {"containerPort": 90}]}]}))
        .unwrap();
        let ports = host_ports(&spec);
        let shown: Vec<String> = ports.iter().map(|p| format!("{}/{}:{}", p.protocol, p.ip, p.port)).collect();
        assert_eq!(shown, ["TCP/0.0.0.0:7001", "TCP/127.0.0.1:8080", "UDP/0.0.0.0:5353"], "a sidecar's, not an init's");
        let port = |ip: &str, protocol: &str, port: i32| HostPort { ip: ip.into(), protocol: protocol.into(), port };
        assert!(ports_conflict(&[port("127.0.0.1", "TCP", 8080)], &ports));
        assert!(ports_conflict(&[port("0.0.0.0", "TCP", 8080)], &ports), "every address includes 127.0.0.1");
        assert!(!ports_conflict(&[port("10.0.0.5", "TCP", 8080)], &ports), "another address");
        assert!(!ports_conflict(&[port("127.0.0.1", "UDP", 8080)], &ports), "another protocol");
        assert!(ports_conflict(&[port("10.0.0.5", "UDP", 5353)], &ports), "taken on every address");
        assert!(!ports_conflict(&[port("0.0.0.0", "TCP", 7000)], &ports));
        assert_eq!(
            ports_taken_message(),
            "0/1 nodes are available: 1 node(s) didn't have free ports for the requested pod ports. preemption: 0/1 nodes are available: 1 No preemption victims found for incoming pod.."
        );
    }

    #[test]
    fn inter_pod_affinity_on_one_node_as_the_scheduler_filters_it() {
        use k8s_openapi::api::core::v1::Affinity;
        let node = BTreeMap::from([("kubernetes.io/hostname".to_string(), "box".to_string())]);
        let namespaces =
            BTreeMap::from([("team".to_string(), BTreeMap::from([("env".to_string(), "prod".to_string())]))]);
        let term = |selector: Value, extra: Value| {
            let mut t = json!({"labelSelector": selector, "topologyKey": "kubernetes.io/hostname"});
            for (k, v) in extra.as_object().into_iter().flatten() {
                t[k] = v.clone();
            }
            t
        };
        let affinity = |kind: &str, terms: Vec<Value>| -> Affinity {
            serde_json::from_value(json!({kind: {"requiredDuringSchedulingIgnoredDuringExecution": terms}})).unwrap()
        };
        let labels = |app: &str| BTreeMap::from([("app".to_string(), app.to_string())]);
        let (web, db) = (labels("web"), labels("db"));
        let view = |ns, labels, affinity| PodView { namespace: ns, labels, affinity };
        let spread = affinity("podAntiAffinity", vec![term(json!({"matchLabels": {"app": "web"}}), json!({}))]);
        let near_db = affinity("podAffinity", vec![term(json!({"matchLabels": {"app": "db"}}), json!({}))]);
        // Anti-affinity: the first replica goes, the second does not; in another namespace it does.
        assert_eq!(inter_pod(view("default", &web, Some(&spread)), &[], &node, &namespaces), None);
        let first = [view("default", &web, Some(&spread))];
        let second = inter_pod(view("default", &web, Some(&spread)), &first, &node, &namespaces).unwrap();
        assert!(
            second.starts_with("0/1 nodes are available: 1 node(s) didn't match pod anti-affinity rules."),
            "{second}"
        );
        assert_eq!(inter_pod(view("team", &web, Some(&spread)), &first, &node, &namespaces), None);
        // The one already there refuses a newcomer its term selects, even without a term of its own.
        let plain = inter_pod(view("default", &web, None), &first, &node, &namespaces).unwrap();
        assert!(plain.contains("1 node(s) didn't satisfy existing pods anti-affinity rules."), "{plain}");
        // Affinity: no db pod here, and the pod is no db itself: it waits; beside a db, it goes.
        let alone = inter_pod(view("default", &web, Some(&near_db)), &[], &node, &namespaces).unwrap();
        assert_eq!(
            alone,
            "0/1 nodes are available: 1 node(s) didn't match pod affinity rules. preemption: 0/1 nodes are available: 1 Preemption is not helpful for scheduling."
        );
        let dbs = [view("default", &db, None)];
        assert_eq!(inter_pod(view("default", &web, Some(&near_db)), &dbs, &node, &namespaces), None);
        // The first of a group that wants its own kind goes.
        let group = affinity("podAffinity", vec![term(json!({"matchLabels": {"app": "db"}}), json!({}))]);
        assert_eq!(inter_pod(view("default", &db, Some(&group)), &[], &node, &namespaces), None);
        // Namespaces by selector; a topology key the node lacks; no selector selects nothing.
        let by_label = affinity(
            "podAffinity",
            vec![term(
                json!({"matchLabels": {"app": "db"}}),
                json!({"namespaceSelector": {"matchLabels": {"env": "prod"}}}),
            )],
        );
        assert!(inter_pod(view("default", &web, Some(&by_label)), &dbs, &node, &namespaces).is_some());
        assert_eq!(
            inter_pod(view("default", &web, Some(&by_label)), &[view("team", &db, None)], &node, &namespaces),
            None
        );
        let zone: Affinity =
            serde_json::from_value(json!({"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
            {"labelSelector": {"matchLabels": {"app": "db"}}, "topologyKey": "topology.kubernetes.io/zone"}]}}))
            .unwrap();
        assert!(inter_pod(view("default", &web, Some(&zone)), &dbs, &node, &namespaces).is_some());
        let nothing: Affinity =
            serde_json::from_value(json!({"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
            {"topologyKey": "kubernetes.io/hostname"}]}}))
            .unwrap();
        assert_eq!(inter_pod(view("default", &web, Some(&nothing)), &dbs, &node, &namespaces), None);
    }

    #[test]
    fn cordon_taints_and_affinity_are_tried_in_the_schedulers_order() {
        let pod = json!({"spec": {"nodeSelector": {"disk": "ssd"}}});
        let node = json!({"metadata": {"name": "n", "labels": {"disk": "hdd"}},
            "spec": {"unschedulable": true, "taints": [{"key": "k", "value": "v", "effect": "NoSchedule"}]}});
        assert!(excluded(&node, &pod).unwrap().contains("1 node(s) were unschedulable."));
        let mut uncordoned = node.clone();
        uncordoned["spec"]["unschedulable"] = json!(false);
        assert!(excluded(&uncordoned, &pod).unwrap().contains("1 node(s) had untolerated taint {k: v}."));
        uncordoned["spec"]["taints"] = json!([]);
        assert_eq!(
            excluded(&uncordoned, &pod).unwrap(),
            "0/1 nodes are available: 1 node(s) didn't match Pod's node affinity/selector. preemption: 0/1 nodes are available: 1 Preemption is not helpful for scheduling."
        );
        uncordoned["metadata"]["labels"]["disk"] = json!("ssd");
        assert_eq!(excluded(&uncordoned, &pod), None);
    }
}
