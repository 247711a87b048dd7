//! The kubelet's side of the API: every pod in the store is run on the node, its status written
//! back as it changes, a deletion turned into the ordered graceful termination, an image change
//! handed to the engine (R69, R70), and the object removed once its containers are gone.
//!
//! It reacts to store changes and to the pods' own status changes; nothing polls.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Pod, PodSpec};
use podvisor_node::{Node, PodHandle};
use podvisor_objects::kinds::Resource;
use serde_json::{Value, json};
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::watch;

use crate::scheduling;
use crate::store::{Change, ChangeKind, Key, Start, Store, StoreError, said};
use crate::values::{is_deleting, is_terminal};

fn uid(v: &Value) -> &str {
    v.pointer("/metadata/uid").and_then(Value::as_str).unwrap_or("")
}

/// What of a running pod's spec may change: the images, the active deadline, and the
/// ephemeral containers added (by name; they never change).
type Mutable<'a> = (Vec<(&'a str, Option<&'a str>)>, Option<i64>, Vec<&'a str>);

/// [`Mutable`], read from the typed spec the node runs.
fn mutable(spec: Option<&PodSpec>) -> Mutable<'_> {
    let Some(spec) = spec else { return (Vec::new(), None, Vec::new()) };
    let images =
        spec.init_containers.iter().flatten().chain(&spec.containers).map(|c| (c.name.as_str(), c.image.as_deref()));
    let ephemeral = spec.ephemeral_containers.iter().flatten().map(|e| e.name.as_str());
    (images.collect(), spec.active_deadline_seconds, ephemeral.collect())
}

/// The same, read from a stored pod without decoding it: most changes of a running pod are its
/// own status written back, and they need no decode at all.
fn mutable_stored(obj: &Value) -> Mutable<'_> {
    let list = |l: &str| obj.pointer(l).and_then(Value::as_array).into_iter().flatten();
    let images = list("/spec/initContainers")
        .chain(list("/spec/containers"))
        .map(|c| (c["name"].as_str().unwrap_or(""), c["image"].as_str()));
    let ephemeral = list("/spec/ephemeralContainers").map(|e| e["name"].as_str().unwrap_or(""));
    (images.collect(), obj.pointer("/spec/activeDeadlineSeconds").and_then(Value::as_i64), ephemeral.collect())
}

pub(crate) struct Kubelet {
    pub store: Arc<Store>,
    pub node: Node,
    pub node_name: String,
    handles: HashMap<String, PodHandle>,
    /// The effective requests of each pod in `handles`, by UID: what the scheduler counts as
    /// used on the node.
    requests: HashMap<String, BTreeMap<String, i128>>,
    /// Turns true when the store is detached from the node: nothing more is written back.
    detached: watch::Receiver<bool>,
    /// Pods the scheduler could not place (the node holds `maxPods`), by creation then key:
    /// started in that order as room comes.
    unscheduled: std::collections::BTreeSet<(String, Key)>,
    recorder: crate::events::Recorder,
    /// Told once the first pass is done: the stored pods run and the strays are gone.
    settled: watch::Sender<bool>,
    /// Only pods held on the machine are run (taken over), none anew.
    takeover_only: bool,
    /// A pod started while others waited to be scheduled: they are tried again.
    started_beside_waiting: bool,
}

impl Kubelet {
    pub fn new(
        store: Arc<Store>,
        node: Node,
        node_name: String,
        detached: watch::Receiver<bool>,
        recorder: crate::events::Recorder,
        settled: watch::Sender<bool>,
        takeover_only: bool,
    ) -> Kubelet {
        Kubelet {
            store,
            node,
            node_name,
            handles: HashMap::new(),
            requests: HashMap::new(),
            detached,
            unscheduled: Default::default(),
            recorder,
            settled,
            takeover_only,
            started_beside_waiting: false,
        }
    }

    /// Pods admitted here that still run: not finished, and their phase not terminal yet.
    fn active(&self) -> usize {
        self.handles.values().filter(|h| !h.is_finished() && !h.is_terminal()).count()
    }

    /// Tries the pods left unscheduled again, oldest first, each once: those that fit now start.
    fn schedule_waiting(&mut self) {
        let waiting = std::mem::take(&mut self.unscheduled);
        for (_, key) in waiting {
            if let Some(obj) = self.store.get(&key)
                && !is_terminal(&obj)
                && !is_deleting(&obj)
                && !self.handles.contains_key(uid(&obj))
            {
                self.start(key, &obj);
            }
        }
    }

    /// What keeps the unbound pod `obj` from its claims, as the scheduler's volume binding
    /// sees it: `Err` with the scheduler's message for a claim missing, being deleted, or
    /// unbound in an `Immediate` class; `Ok(false)` while a `WaitForFirstConsumer` claim is
    /// being provisioned for this node (it is asked for here); `Ok(true)` when all are bound.
    fn claims_ready(&self, obj: &Value) -> Result<bool, String> {
        const TAIL: &str = "preemption: 0/1 nodes are available: 1 Preemption is not helpful for scheduling.";
        let ns = obj.pointer("/metadata/namespace").and_then(Value::as_str).unwrap_or("default");
        let mut ready = true;
        let claims = obj.pointer("/spec/volumes").and_then(Value::as_array).into_iter().flatten();
        for name in claims.filter_map(|v| v.pointer("/persistentVolumeClaim/claimName")?.as_str()) {
            let key = Key::new(Resource::PersistentVolumeClaims, ns, name);
            let Some(claim) = self.store.get(&key) else {
                return Err(format!("0/1 nodes are available: persistentvolumeclaim \"{name}\" not found. {TAIL}"));
            };
            if is_deleting(&claim) {
                return Err(format!(
                    "0/1 nodes are available: persistentvolumeclaim \"{name}\" is being deleted. {TAIL}"
                ));
            }
            if claim.pointer("/status/phase").and_then(Value::as_str) == Some("Bound") {
                continue;
            }
            let class = claim.pointer("/spec/storageClassName").and_then(Value::as_str).unwrap_or("");
            let waits = self
                .store
                .get(&Key::new(Resource::StorageClasses, "", class))
                .is_some_and(|c| c.get("volumeBindingMode").and_then(Value::as_str) == Some("WaitForFirstConsumer"));
            if !waits {
                return Err(format!(
                    "0/1 nodes are available: pod has unbound immediate PersistentVolumeClaims. {TAIL}"
                ));
            }
            ready = false;
            let annotation = crate::controllers::volumes::SELECTED_NODE;
            if claim.pointer(&format!("/metadata/annotations/{}", annotation.replace('/', "~1"))).is_none() {
                let node = self.node_name.clone();
                let asked = self.store.update::<StoreError>(&key, |v| {
                    if !v["metadata"]["annotations"].is_object() {
                        v["metadata"]["annotations"] = json!({});
                    }
                    v["metadata"]["annotations"][annotation] = json!(node);
                    Ok(())
                });
                said(format_args!("the selected node of claim {ns}/{name}"), asked);
            }
        }
        Ok(ready)
    }

    /// What the pods admitted here and still running request together, in thousandths.
    fn used(&self) -> BTreeMap<String, i128> {
        let mut used = BTreeMap::new();
        for (uid, h) in &self.handles {
            if h.is_finished() || h.is_terminal() {
                continue;
            }
            for (r, v) in self.requests.get(uid).into_iter().flatten() {
                let e: &mut i128 = used.entry(r.clone()).or_default();
                *e = e.saturating_add(*v);
            }
        }
        used
    }

    /// The scheduler's verdict on the unbound pod `obj` (its decoded `spec`) by inter-pod
    /// affinity, against the pods admitted here and still running.
    fn inter_pod(&self, obj: &Value, spec: Option<&PodSpec>, node: &Value) -> Option<String> {
        fn decode<T: serde::de::DeserializeOwned + Default>(v: Option<&Value>) -> T {
            v.and_then(|v| serde_json::from_value(v.clone()).ok()).unwrap_or_default()
        }
        let empty = BTreeMap::new();
        let existing: Vec<scheduling::PodView<'_>> = self
            .handles
            .values()
            .filter(|h| !h.is_finished() && !h.is_terminal())
            .map(|h| scheduling::PodView::of(h.pod(), &empty))
            .collect();
        let affinity = spec.and_then(|s| s.affinity.as_ref());
        let asks = affinity.is_some_and(|a| a.pod_affinity.is_some() || a.pod_anti_affinity.is_some());
        if !asks && existing.iter().all(|p| p.affinity.is_none_or(|a| a.pod_anti_affinity.is_none())) {
            return None;
        }
        let labels: BTreeMap<String, String> = decode(obj.pointer("/metadata/labels"));
        let incoming = scheduling::PodView {
            namespace: obj.pointer("/metadata/namespace").and_then(Value::as_str).unwrap_or("default"),
            labels: &labels,
            affinity,
        };
        let node_labels: BTreeMap<String, String> = decode(node.pointer("/metadata/labels"));
        let namespaces: BTreeMap<String, BTreeMap<String, String>> = self
            .store
            .list(Resource::Namespaces, None)
            .0
            .iter()
            .map(|n| {
                let name = n.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("").to_string();
                (name, decode(n.pointer("/metadata/labels")))
            })
            .collect();
        scheduling::inter_pod(incoming, &existing, &node_labels, &namespaces)
    }

    /// The host ports the pods admitted here and still running take.
    fn used_ports(&self) -> Vec<scheduling::HostPort> {
        self.handles
            .values()
            .filter(|h| !h.is_finished() && !h.is_terminal())
            .filter_map(|h| h.pod().spec.as_ref())
            .flat_map(scheduling::host_ports)
            .collect()
    }

    /// Room for the pod `obj` requesting `requested`: `Ok` when it fits; otherwise one bound
    /// to this node already is rejected as the kubelet's admission rejects it (`OutOfpods`,
    /// `OutOfcpu`, …, the first short), and an unbound one stays Pending as the scheduler leaves
    /// it, `PodScheduled` False with every reason, and waits for room.
    fn room(&mut self, key: &Key, obj: &Value, node: &Value, requested: &BTreeMap<String, i128>) -> Result<(), ()> {
        let active = self.active();
        let full = active >= self.node.max_pods();
        let short = scheduling::shortfalls(requested, &self.used(), &scheduling::allocatable(node));
        if !full && short.is_empty() {
            return Ok(());
        }
        let bound = obj.pointer("/spec/nodeName").and_then(Value::as_str).is_some_and(|n| !n.is_empty());
        if bound {
            let (reason, message) = match short.first() {
                _ if full => (
                    "OutOfpods".to_string(),
                    format!(
                        "Node didn't have enough resource: pods, requested: 1, used: {active}, capacity: {}",
                        self.node.max_pods()
                    ),
                ),
                Some(s) => s.rejection(),
                None => return Ok(()),
            };
            self.reject(key, obj, &reason, &message);
            return Err(());
        }
        let mut reasons: Vec<String> = short.iter().map(scheduling::Shortfall::reason).collect();
        if full {
            reasons.push("Too many pods".into());
        }
        self.wait_unscheduled(key.clone(), obj, &scheduling::no_room_message(&reasons));
        Err(())
    }

    /// Rejects a pod bound here as the kubelet's admission does: a warning event with `reason`
    /// and `message`, and the pod Failed without running.
    fn reject(&self, key: &Key, obj: &Value, reason: &str, message: &str) {
        let about = crate::events::Involved::of(Resource::Pods, obj);
        self.recorder.record(&about, "Warning", reason, message, "kubelet");
        let rejected = self.store.update::<StoreError>(key, |v| {
            let status =
                json!({"phase": "Failed", "reason": reason, "message": format!("Pod was rejected: {message}")});
            write_status(v, status);
            Ok(())
        });
        said(format_args!("the rejection of pod {}/{}", key.namespace, key.name), rejected);
    }

    /// Leaves the unbound pod `obj` Pending as the scheduler leaves it, `PodScheduled` False
    /// with `message` (and a `FailedScheduling` event when the message is new), until it is
    /// tried again.
    fn wait_unscheduled(&mut self, key: Key, obj: &Value, message: &str) {
        let about = crate::events::Involved::of(Resource::Pods, obj);
        let created = obj.pointer("/metadata/creationTimestamp").and_then(Value::as_str).unwrap_or("").to_string();
        self.unscheduled.insert((created, key.clone()));
        let already = obj
            .pointer("/status/conditions")
            .and_then(Value::as_array)
            .is_some_and(|cs| cs.iter().any(|c| c["type"] == "PodScheduled" && c["message"] == message));
        if already {
            return;
        }
        self.recorder.record(&about, "Warning", "FailedScheduling", message, "default-scheduler");
        let now = crate::values::stamp(jiff::Timestamp::now());
        let pending = self.store.update::<StoreError>(&key, |v| {
            v["status"]["phase"] = json!("Pending");
            v["status"]["conditions"] = json!([{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                "message": message, "lastProbeTime": null, "lastTransitionTime": now}]);
            Ok(())
        });
        said(format_args!("the Unschedulable condition of pod {}/{}", key.namespace, key.name), pending);
    }

    pub async fn run(mut self) {
        let Ok((first, mut rx)) = self.store.watch(Resource::Pods, Start::Current) else { return };
        for c in first {
            self.on_change(&c);
        }
        // The stored pods run, taking over what an earlier node process left of them (R75);
        // what is left of other pods goes.
        self.node.remove_strays().await;
        self.settled.send_replace(true);
        loop {
            let next = tokio::select! {
                r = rx.recv() => r,
                _ = self.detached.wait_for(|d| *d) => return,
            };
            match next {
                Ok(c) if c.key.resource == Resource::Pods => {
                    self.on_change(&c);
                    // A pod that started may be the one a waiting pod's affinity asks for.
                    while std::mem::take(&mut self.started_beside_waiting) {
                        self.schedule_waiting();
                    }
                }
                // A node uncordoned, a taint gone, or a claim bound lets waiting pods on.
                Ok(c) if matches!(c.key.resource, Resource::Nodes | Resource::PersistentVolumeClaims) => {
                    self.schedule_waiting()
                }
                // An edited ConfigMap or Secret reaches the volumes that read it.
                Ok(c)
                    if c.kind != ChangeKind::Deleted
                        && matches!(c.key.resource, Resource::ConfigMaps | Resource::Secrets) =>
                {
                    let kind = if c.key.resource == Resource::ConfigMaps {
                        podvisor_runtime::objects::Kind::ConfigMap
                    } else {
                        podvisor_runtime::objects::Kind::Secret
                    };
                    self.node.refresh_volumes(&c.key.namespace, kind, &c.key.name);
                }
                Ok(_) => {}
                Err(RecvError::Lagged(_)) => {
                    let (pods, _) = self.store.list(Resource::Pods, None);
                    for p in pods {
                        let key = Key::of(Resource::Pods, &p);
                        self.on_change(&Change { rv: 0, kind: ChangeKind::Modified, key, object: p, previous: None });
                    }
                    self.reap();
                }
                Err(RecvError::Closed) => return,
            }
        }
    }

    /// Forgets pods whose object is gone and whose containers are stopped.
    fn reap(&mut self) {
        let store = self.store.clone();
        let node = self.node.clone();
        self.handles.retain(|uid, h| {
            let key = Key::new(
                Resource::Pods,
                h.pod().metadata.namespace.as_deref().unwrap_or(""),
                h.pod().metadata.name.as_deref().unwrap_or(""),
            );
            let present =
                store.get(&key).is_some_and(|o| o.pointer("/metadata/uid").and_then(Value::as_str) == Some(uid));
            let keep = present || !h.is_finished();
            if !keep {
                node.forget(uid);
            }
            keep
        });
        let handles = &self.handles;
        self.requests.retain(|uid, _| handles.contains_key(uid));
        self.schedule_waiting();
    }

    fn on_change(&mut self, c: &Change) {
        let obj = &c.object;
        let uid = uid(obj).to_string();
        if c.kind == ChangeKind::Deleted {
            // Removed: a force deletion stops the containers at once; a graceful one already has.
            if let Some(h) = self.handles.get(&uid)
                && !h.is_finished()
            {
                h.delete(Some(0));
            }
            self.reap();
            return;
        }
        let deleting = is_deleting(obj);
        if let Some(h) = self.handles.get_mut(&uid) {
            if deleting {
                if h.is_finished() {
                    said(
                        format_args!("the removal of pod {}/{}", c.key.namespace, c.key.name),
                        self.store.remove(&c.key),
                    );
                } else {
                    h.delete(obj.pointer("/metadata/deletionGracePeriodSeconds").and_then(Value::as_i64));
                }
            } else {
                // A readiness gate's condition changed: the pod's Ready follows at once.
                // Without the previous state (a replay after a lag), told as it is.
                let gates = gate_conditions(obj);
                if c.previous.as_deref().is_none_or(|p| gate_conditions(p) != gates) {
                    h.set_conditions(gates);
                }
            }
            if !deleting
                && mutable_stored(obj) != mutable(h.pod().spec.as_ref())
                && let Some(spec) = obj.get("spec")
                && let Ok(spec) = serde_json::from_value::<PodSpec>(spec.clone())
            {
                h.update_spec(spec);
            }
            // A pod that ended leaves room for one waiting.
            if is_terminal(obj) {
                self.schedule_waiting();
            }
            return;
        }
        if deleting {
            if self.node.holds(&uid) {
                // Deleted while no node process ran it, its containers still up: they are taken
                // over and stopped in order.
                self.start(c.key.clone(), obj);
                if let Some(h) = self.handles.get(&uid) {
                    h.delete(obj.pointer("/metadata/deletionGracePeriodSeconds").and_then(Value::as_i64));
                }
                return;
            }
            // Never ran here (or ran before a restart and is gone): nothing to stop.
            said(format_args!("the removal of pod {}/{}", c.key.namespace, c.key.name), self.store.remove(&c.key));
            return;
        }
        if is_terminal(obj) {
            // A pod that ended leaves room for one waiting.
            self.schedule_waiting();
            return;
        }
        if self.takeover_only && !self.node.holds(&uid) {
            return;
        }
        self.start(c.key.clone(), obj);
    }

    fn start(&mut self, key: Key, obj: &Value) {
        let bound_to = obj.pointer("/spec/nodeName").and_then(Value::as_str).filter(|n| !n.is_empty());
        let held = self.node.holds(uid(obj));
        // A pod bound to another node is that node's kubelet's: never run here.
        if bound_to.is_some_and(|n| n != self.node_name) && !held {
            return;
        }
        // A pod already held on the machine is always taken over, whatever the node's state.
        if !held {
            // Without its node object (deleted, until the next heartbeat makes it again) only
            // the pod count is checked.
            let node = self.store.get(&Key::new(Resource::Nodes, "", &self.node_name));
            let empty = json!({});
            let known = node.as_deref();
            // The scheduler's filters, in its order, for a pod not bound yet: a node that is
            // not cordoned, whose taints it tolerates and that its node selector and required
            // affinity match.
            if bound_to.is_none()
                && let Some(message) = known.and_then(|n| scheduling::excluded(n, obj))
            {
                return self.wait_unscheduled(key, obj, &message);
            }
            let spec = obj.get("spec").and_then(|s| serde_json::from_value::<PodSpec>(s.clone()).ok());
            // Its host ports free (the scheduler's NodePorts, before room).
            let wanted = spec.as_ref().map(scheduling::host_ports).unwrap_or_default();
            let ports_taken = !wanted.is_empty() && scheduling::ports_conflict(&wanted, &self.used_ports());
            if bound_to.is_none() && ports_taken {
                return self.wait_unscheduled(key, obj, &scheduling::ports_taken_message());
            }
            // Room for it: at most maxPods pods, and what their requests leave of the node's
            // allocatable resources (the scheduler's NodeResourcesFit; the kubelet's admission
            // for a pod bound here).
            let requested = match (known, &spec) {
                (Some(_), Some(spec)) => podvisor_objects::resources::effective(spec, false).unwrap_or_default(),
                _ => BTreeMap::new(),
            };
            if self.room(&key, obj, known.unwrap_or(&empty), &requested).is_err() {
                return;
            }
            // The kubelet's admission of a pod bound here, after room: its node selector and
            // required affinity must match this node and its host ports be free, or it fails at
            // once.
            if bound_to.is_some() && known.is_some_and(|n| !scheduling::fits_node(obj, n)) {
                return self.reject(&key, obj, "NodeAffinity", &scheduling::affinity_rejection());
            }
            if bound_to.is_some() && ports_taken {
                return self.reject(&key, obj, "NodePorts", &scheduling::ports_rejection());
            }
            let taints: Vec<Value> =
                known.and_then(|n| n.pointer("/spec/taints")).and_then(Value::as_array).cloned().unwrap_or_default();
            if bound_to.is_some() && crate::taints::untolerated(obj, &taints) {
                let message = "Predicate TaintToleration failed: node(s) had taints that the pod didn't tolerate";
                return self.reject(&key, obj, "TaintToleration", message);
            }
            // The scheduler's last filter: inter-pod affinity and anti-affinity, against the pods
            // already here.
            if bound_to.is_none()
                && let Some(node) = known
                && let Some(message) = self.inter_pod(obj, spec.as_ref(), node)
            {
                return self.wait_unscheduled(key, obj, &message);
            }
        }
        let unbound = bound_to.is_none();
        // The scheduler's volume binding: the pod waits for its claims to be bound.
        if unbound && !held {
            match self.claims_ready(obj) {
                Err(message) => return self.wait_unscheduled(key, obj, &message),
                Ok(false) => {
                    let created = obj.pointer("/metadata/creationTimestamp").and_then(Value::as_str).unwrap_or("");
                    self.unscheduled.insert((created.to_string(), key));
                    return;
                }
                Ok(true) => {}
            }
        }
        let node_name = self.node_name.clone();
        let bound = self.store.update::<StoreError>(&key, |v| {
            if v.pointer("/spec/nodeName").and_then(Value::as_str).is_none_or(str::is_empty) {
                v["spec"]["nodeName"] = json!(node_name);
            }
            Ok(())
        });
        let obj = bound.map(|o| (*o).clone()).unwrap_or_else(|_| obj.clone());
        let gates = gate_conditions(&obj);
        let pod: Pod = match serde_json::from_value(obj) {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!("pod {}/{} cannot run: {e}", key.namespace, key.name);
                return;
            }
        };
        let requested = pod.spec.as_ref().and_then(|s| podvisor_objects::resources::effective(s, false).ok());
        let handle = self.node.run_pod(pod);
        if !gates.is_empty() {
            handle.set_conditions(gates);
        }
        let uid = handle.uid().to_string();
        self.handles.insert(uid.clone(), handle.clone());
        self.requests.insert(uid.clone(), requested.unwrap_or_default());
        self.started_beside_waiting |= !self.unscheduled.is_empty();
        tokio::spawn(sync_status(self.store.clone(), key, uid, handle, self.detached.clone()));
    }
}

/// The conditions of the pod's readiness gates as its status has them (set by others, through
/// the API): type and status.
fn gate_conditions(pod: &Value) -> std::collections::BTreeMap<String, String> {
    let gates: Vec<&str> = pod
        .pointer("/spec/readinessGates")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|g| g.get("conditionType").and_then(Value::as_str))
        .collect();
    let conditions = pod.pointer("/status/conditions").and_then(Value::as_array).into_iter().flatten();
    conditions
        .filter_map(|c| Some((c.get("type")?.as_str()?, c.get("status")?.as_str()?)))
        .filter(|(t, _)| gates.contains(t))
        .map(|(t, s)| (t.to_string(), s.to_string()))
        .collect()
}

/// Replaces the stored pod's status with the node's `status`, keeping what is not the node's
/// (see [`crate::pod_status`]).
fn write_status(pod: &mut Value, status: Value) {
    crate::pod_status::merge(pod, status);
}

/// Writes each new status of the pod to the store, and removes the object when the pod has
/// finished and is being deleted.
async fn sync_status(store: Arc<Store>, key: Key, uid: String, handle: PodHandle, detached: watch::Receiver<bool>) {
    let mut rx = handle.watch();
    loop {
        let snap = rx.borrow_and_update().clone();
        if *detached.borrow() {
            return;
        }
        let status = serde_json::to_value(&snap.status).unwrap_or(Value::Null);
        let written = store.update::<StoreError>(&key, |v| {
            if v.pointer("/metadata/uid").and_then(Value::as_str) != Some(uid.as_str()) {
                return Err(StoreError::NotFound(key.clone()));
            }
            write_status(v, status);
            Ok(())
        });
        let Ok(obj) = written else {
            // The object is gone (a forced deletion): the containers stop on their own.
            return;
        };
        if snap.finished {
            if is_deleting(&obj) {
                said(format_args!("the removal of pod {}/{}", key.namespace, key.name), store.remove(&key));
            }
            return;
        }
        if rx.changed().await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue: every status the node wrote back decoded the whole pod again to look for an image
    /// change. The stored form is read in place, and reads as the typed spec does.
    #[test]
    fn the_mutable_fields_read_the_same_from_the_stored_pod_as_from_the_typed_spec() {
        let stored = json!({"metadata": {"name": "p"}, "spec": {
            "activeDeadlineSeconds": 30,
            "initContainers": [{"name": "proxy", "image": "envoy:1"}],
            "containers": [{"name": "app", "image": "busybox:1.36"}, {"name": "bare"}]},
            "status": {"phase": "Running"}});
        let pod: Pod = serde_json::from_value(stored.clone()).unwrap();
        assert_eq!(mutable_stored(&stored), mutable(pod.spec.as_ref()));
        assert_eq!(
            mutable_stored(&stored).0,
            [("proxy", Some("envoy:1")), ("app", Some("busybox:1.36")), ("bare", None)]
        );
        let mut changed = stored.clone();
        changed["spec"]["containers"][0]["image"] = json!("busybox:1.37");
        assert_ne!(mutable_stored(&changed), mutable(pod.spec.as_ref()));
        assert_eq!(mutable_stored(&json!({})), mutable(None));
    }
}
