//! The DaemonSet controller: one pod of the set on each node it should run on (here, the one
//! node, unless its `nodeSelector` or an untolerated taint says otherwise). Its pods tolerate
//! what the controller adds for daemons (a cordoned node, pressure, a node not ready), and are
//! pinned to their node by affinity. A failed pod is replaced; a rolling update replaces a pod
//! of an old template (`maxSurge: 0`: the old one goes first); `OnDelete` waits for the user.
//!
//! A reconcile [`observe`]s the set's pods and the nodes, [`decide`]s a [`Plan`] (pure) and
//! [`act`]s on it.

use k8s_openapi::api::apps::v1::{DaemonSet, DaemonSetStatus};
use k8s_openapi::api::core::v1::{Node, Pod, Toleration};
use podvisor_objects::kinds::Resource;
use podvisor_objects::node_affinity;
use serde_json::{Value, json};

use super::{Action, Ctx, Error, create_pod_as, decode, involved, key_of, owned, template_hash, write_status};
use crate::store::{Key, StoreError};
use crate::values::{meta_is_deleting, pod_is_ready, pod_is_terminal};

const COMPONENT: &str = "daemonset-controller";

/// The label naming a pod's template revision.
const REVISION_LABEL: &str = "controller-revision-hash";

/// The tolerations the controller gives every daemon pod: `(key, effect)`, operator Exists.
const DAEMON_TOLERATIONS: [(&str, &str); 6] = [
    ("node.kubernetes.io/not-ready", "NoExecute"),
    ("node.kubernetes.io/unreachable", "NoExecute"),
    ("node.kubernetes.io/disk-pressure", "NoSchedule"),
    ("node.kubernetes.io/memory-pressure", "NoSchedule"),
    ("node.kubernetes.io/pid-pressure", "NoSchedule"),
    ("node.kubernetes.io/unschedulable", "NoSchedule"),
];

/// What the store says about one DaemonSet besides the set itself.
#[derive(Debug, Clone, Default)]
pub(crate) struct Observed {
    /// Its pods.
    pub pods: Vec<Pod>,
    /// The nodes.
    pub nodes: Vec<Node>,
}

/// Reads the pods `set` controls and the nodes.
pub(crate) fn observe(set: &DaemonSet, ctx: &Ctx) -> Result<Observed, Error> {
    let key = key_of(Resource::DaemonSets, &set.metadata);
    let uid = set.metadata.uid.as_deref().unwrap_or("");
    let pods = owned(&ctx.store, Resource::Pods, &key.namespace, uid)?;
    let nodes = ctx
        .store
        .list(Resource::Nodes, None)
        .0
        .iter()
        .map(|n| decode(&ctx.store, Resource::Nodes, n))
        .collect::<Result<_, _>>()?;
    Ok(Observed { pods, nodes })
}

/// One step a plan takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Step {
    /// Make a pod for this node.
    CreatePod(String),
    /// Delete this pod.
    DeletePod(String),
}

/// What one reconcile of a DaemonSet does.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Plan {
    /// The steps.
    pub steps: Vec<Step>,
    /// The status to write.
    pub status: DaemonSetStatus,
}

/// The revision of `set`'s current template.
fn revision(set: &DaemonSet) -> String {
    let template = set.spec.as_ref().map(|s| serde_json::to_value(&s.template).unwrap_or(Value::Null));
    template_hash(&template.unwrap_or(Value::Null))
}

fn revision_of(pod: &Pod) -> &str {
    pod.metadata.labels.as_ref().and_then(|l| l.get(REVISION_LABEL)).map(String::as_str).unwrap_or("")
}

/// The tolerations of a daemon pod: its template's and the controller's.
fn tolerations(set: &DaemonSet) -> Vec<Toleration> {
    let mut all = set
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .and_then(|s| s.tolerations.clone())
        .unwrap_or_default();
    for (key, effect) in DAEMON_TOLERATIONS {
        if !all.iter().any(|t| t.key.as_deref() == Some(key) && t.effect.as_deref() == Some(effect)) {
            all.push(Toleration {
                key: Some(key.into()),
                operator: Some("Exists".into()),
                effect: Some(effect.into()),
                ..Default::default()
            });
        }
    }
    all
}

/// Whether a pod of `set` should run on `node`: its node selector and required node affinity
/// match the node and it tolerates the node's `NoSchedule` and `NoExecute` taints.
fn should_run(set: &DaemonSet, node: &Node) -> bool {
    let labels = node.metadata.labels.clone().unwrap_or_default();
    let view = node_affinity::NodeView { name: node.metadata.name.as_deref().unwrap_or(""), labels: &labels };
    let template = set.spec.as_ref().and_then(|s| s.template.spec.as_ref());
    if !template.is_none_or(|spec| node_affinity::matches(spec, view)) {
        return false;
    }
    let tolerations = tolerations(set);
    node.spec.as_ref().and_then(|s| s.taints.as_ref()).into_iter().flatten().all(|taint| {
        !matches!(taint.effect.as_str(), "NoSchedule" | "NoExecute")
            || tolerations.iter().any(|t| {
                let effect = t.effect.as_deref().is_none_or(|e| e.is_empty() || e == taint.effect);
                let key = match t.operator.as_deref() {
                    Some("Exists") => t.key.as_deref().is_none_or(|k| k.is_empty() || k == taint.key),
                    _ => t.key.as_deref() == Some(taint.key.as_str()) && t.value == taint.value,
                };
                effect && key
            })
    })
}

/// The node a daemon pod is pinned to (its affinity's `metadata.name`), else the one it runs on.
fn node_of(pod: &Pod) -> Option<String> {
    let spec = pod.spec.as_ref()?;
    let pinned = spec
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|n| n.required_during_scheduling_ignored_during_execution.as_ref())
        .and_then(|r| r.node_selector_terms.first())
        .and_then(|t| t.match_fields.as_ref())
        .and_then(|f| f.iter().find(|f| f.key == "metadata.name"))
        .and_then(|f| f.values.as_ref()?.first().cloned());
    pinned.or_else(|| spec.node_name.clone())
}

/// Decides what to do with `set` on each node: a pure function.
pub(crate) fn decide(set: &DaemonSet, observed: &Observed) -> Plan {
    let current = revision(set);
    let rolling =
        set.spec.as_ref().and_then(|s| s.update_strategy.as_ref()).and_then(|u| u.type_.as_deref()) != Some("OnDelete");
    let mut steps = Vec::new();
    let (mut desired, mut scheduled, mut ready, mut updated, mut misscheduled) = (0, 0, 0, 0, 0);
    for node in &observed.nodes {
        let name = node.metadata.name.clone().unwrap_or_default();
        let mine: Vec<&Pod> = observed.pods.iter().filter(|p| node_of(p).as_deref() == Some(name.as_str())).collect();
        let live: Vec<&Pod> =
            mine.iter().copied().filter(|p| !meta_is_deleting(&p.metadata) && !pod_is_terminal(p)).collect();
        for failed in mine.iter().filter(|p| pod_is_terminal(p) && !meta_is_deleting(&p.metadata)) {
            steps.push(Step::DeletePod(failed.metadata.name.clone().unwrap_or_default()));
        }
        if !should_run(set, node) {
            misscheduled += i32::from(!live.is_empty());
            steps.extend(live.iter().map(|p| Step::DeletePod(p.metadata.name.clone().unwrap_or_default())));
            continue;
        }
        desired += 1;
        scheduled += i32::from(!live.is_empty());
        ready += i32::from(live.iter().any(|p| pod_is_ready(p)));
        updated += i32::from(live.iter().any(|p| revision_of(p) == current));
        match live.as_slice() {
            [] => steps.push(Step::CreatePod(name)),
            [only] if rolling && revision_of(only) != current => {
                steps.push(Step::DeletePod(only.metadata.name.clone().unwrap_or_default()))
            }
            [_] => {}
            // More than one: the oldest stays.
            [_, extra @ ..] => {
                steps.extend(extra.iter().map(|p| Step::DeletePod(p.metadata.name.clone().unwrap_or_default())));
            }
        }
    }
    let status = DaemonSetStatus {
        desired_number_scheduled: desired,
        current_number_scheduled: scheduled,
        number_ready: ready,
        number_available: Some(ready),
        number_unavailable: Some(desired - ready).filter(|n| *n > 0),
        updated_number_scheduled: Some(updated),
        number_misscheduled: misscheduled,
        observed_generation: Some(set.metadata.generation.unwrap_or(1)),
        ..Default::default()
    };
    Plan { steps, status }
}

/// Applies `plan` to `set`.
pub(crate) fn act(set: &DaemonSet, plan: Plan, ctx: &Ctx) -> Result<Action, Error> {
    let key = key_of(Resource::DaemonSets, &set.metadata);
    let about = involved(Resource::DaemonSets, &set.metadata);
    let template = set.spec.as_ref().map(|s| s.template.clone()).unwrap_or_default();
    let name = key.name.clone();
    for step in &plan.steps {
        match step {
            Step::CreatePod(node) => {
                let pod_name = format!("{name}-{}", podvisor_objects::uid::suffix(5));
                let (rev, generation) = (revision(set), set.metadata.generation.unwrap_or(1));
                let made = create_pod_as(
                    ctx,
                    Resource::DaemonSets,
                    &set.metadata,
                    &template,
                    &pod_name,
                    Some(format!("{name}-")),
                    |pod| {
                        let labels = pod.metadata.labels.get_or_insert_default();
                        labels.insert(REVISION_LABEL.into(), rev.clone());
                        labels.insert("pod-template-generation".into(), generation.to_string());
                        let ps = pod.spec.get_or_insert_default();
                        ps.tolerations = Some(tolerations(set));
                        let pin = json!({"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                        {"matchFields": [{"key": "metadata.name", "operator": "In", "values": [node]}]}]}}});
                        ps.affinity = serde_json::from_value(pin).ok();
                    },
                );
                match made {
                    Ok(()) => ctx.recorder.record(
                        &about,
                        "Normal",
                        "SuccessfulCreate",
                        &format!("Created pod: {pod_name}"),
                        COMPONENT,
                    ),
                    Err(e) => {
                        ctx.recorder.record(
                            &about,
                            "Warning",
                            "FailedCreate",
                            &format!("Error creating: {e}"),
                            COMPONENT,
                        );
                        return Ok(Action::requeue(std::time::Duration::from_secs(5)));
                    }
                }
            }
            Step::DeletePod(pod) => {
                let pk = Key::new(Resource::Pods, &key.namespace, pod);
                match crate::delete::delete(&ctx.store, &pk, &crate::delete::DeleteOptions::default()) {
                    Ok(_) => ctx.recorder.record(
                        &about,
                        "Normal",
                        "SuccessfulDelete",
                        &format!("Deleted pod: {pod}"),
                        COMPONENT,
                    ),
                    Err(StoreError::NotFound(_)) => {}
                    Err(e) => return Err(Error::store("deleting", &pk, e)),
                }
            }
        }
    }
    write_status(ctx, &key, &plan.status)?;
    Ok(Action::await_change())
}

/// Reconciles one DaemonSet: [`observe`], [`decide`], [`act`].
pub(crate) fn reconcile(set: &DaemonSet, ctx: &Ctx) -> Result<Action, Error> {
    let observed = observe(set, ctx)?;
    let plan = decide(set, &observed);
    act(set, plan, ctx)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(extra: Value) -> DaemonSet {
        let mut v = json!({"metadata": {"name": "agent", "namespace": "default", "uid": "u", "generation": 1},
            "spec": {"selector": {"matchLabels": {"app": "agent"}},
                     "template": {"metadata": {"labels": {"app": "agent"}}, "spec": {"containers": [{"name": "c", "image": "x"}]}}}});
        if let Value::Object(more) = extra {
            v["spec"].as_object_mut().unwrap().extend(more);
        }
        serde_json::from_value(v).unwrap()
    }

    fn node(spec: Value) -> Node {
        serde_json::from_value(json!({"metadata": {"name": "n1", "labels": {"disk": "ssd"}}, "spec": spec})).unwrap()
    }

    fn pod(name: &str, rev: &str, phase: &str) -> Pod {
        serde_json::from_value(json!({"metadata": {"name": name, "labels": {REVISION_LABEL: rev}},
            "spec": {"nodeName": "n1", "containers": []},
            "status": {"phase": phase, "conditions": [{"type": "Ready", "status": "True"}]}}))
        .unwrap()
    }

    #[test]
    fn one_pod_per_node_that_fits_even_a_cordoned_one() {
        let s = set(json!({}));
        let cordoned = node(
            json!({"unschedulable": true, "taints": [{"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"}]}),
        );
        let plan = decide(&s, &Observed { pods: vec![], nodes: vec![cordoned] });
        assert_eq!(plan.steps, [Step::CreatePod("n1".into())]);
        assert_eq!(plan.status.desired_number_scheduled, 1);
        let tainted = node(json!({"taints": [{"key": "dedicated", "value": "db", "effect": "NoSchedule"}]}));
        assert_eq!(decide(&s, &Observed { pods: vec![], nodes: vec![tainted] }).steps, [], "an untolerated taint");
        let elsewhere = set(json!({"template": {"metadata": {"labels": {"app": "agent"}},
            "spec": {"nodeSelector": {"disk": "hdd"}, "containers": [{"name": "c", "image": "x"}]}}}));
        let plan =
            decide(&elsewhere, &Observed { pods: vec![pod("agent-a", "r", "Running")], nodes: vec![node(json!({}))] });
        assert_eq!(plan.steps, [Step::DeletePod("agent-a".into())], "a pod where it should not run goes");
        assert_eq!((plan.status.desired_number_scheduled, plan.status.number_misscheduled), (0, 1));
        // The template's required node affinity counts as its node selector does.
        let affinity = |op: &str| {
            set(json!({"template": {"metadata": {"labels": {"app": "agent"}}, "spec": {
                "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                    {"matchFields": [{"key": "metadata.name", "operator": op, "values": ["n1"]}]}]}}},
                "containers": [{"name": "c", "image": "x"}]}}}))
        };
        let observed = || Observed { pods: vec![], nodes: vec![node(json!({}))] };
        assert_eq!(decide(&affinity("In"), &observed()).steps, [Step::CreatePod("n1".into())]);
        assert_eq!(decide(&affinity("NotIn"), &observed()).steps, [], "an affinity that excludes the node");
    }

    #[test]
    fn an_old_or_failed_pod_is_replaced_unless_updates_wait_for_deletion() {
        let s = set(json!({}));
        let current = revision(&s);
        let nodes = vec![node(json!({}))];
        let ok = decide(&s, &Observed { pods: vec![pod("agent-a", &current, "Running")], nodes: nodes.clone() });
        assert_eq!(ok.steps, []);
        assert_eq!((ok.status.number_ready, ok.status.updated_number_scheduled), (1, Some(1)));
        let old = decide(&s, &Observed { pods: vec![pod("agent-a", "old", "Running")], nodes: nodes.clone() });
        assert_eq!(old.steps, [Step::DeletePod("agent-a".into())]);
        let on_delete = set(json!({"updateStrategy": {"type": "OnDelete"}}));
        assert_eq!(
            decide(&on_delete, &Observed { pods: vec![pod("agent-a", "old", "Running")], nodes: nodes.clone() }).steps,
            []
        );
        let failed = decide(&s, &Observed { pods: vec![pod("agent-a", &current, "Failed")], nodes });
        assert_eq!(failed.steps, [Step::DeletePod("agent-a".into()), Step::CreatePod("n1".into())]);
    }
}
