//! The controllers: Job, Deployment and ReplicaSet, and the garbage collector. One task reacts
//! to every store change by reconciling the objects it touches (an object, its controller
//! owner), level-triggered and idempotent; timers (Job back-off and deadlines) wake it when
//! something is due.

pub mod deployments;
pub mod gc;
pub mod jobs;
pub mod replicasets;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use podvisor_apiserver::admission::{self, FieldValidation};
use podvisor_objects::kinds::Resource;
use serde_json::{Map, Value, json};
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::delete::{DeleteOptions, delete};
use crate::events::{Involved, Recorder};
use crate::store::{Change, Key, Obj, Store};
use crate::values::is_deleting;

/// The characters Kubernetes uses for generated names.
const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// Encodes a number as the API machinery's `SafeEncodeString` of its decimal form.
fn safe_encode(n: u64) -> String {
    n.to_string().bytes().map(|b| ALPHABET[b as usize % ALPHABET.len()] as char).collect()
}

/// What every controller needs.
#[derive(Clone)]
pub(crate) struct Ctx {
    pub store: Arc<Store>,
    pub recorder: Recorder,
    /// When each ReplicaSet last created a burst of pods: bursts come at most once a second,
    /// as the controller's API client paces them.
    pub bursts: Arc<std::sync::Mutex<std::collections::HashMap<Key, Instant>>>,
}

/// What a reconcile asks for next.
pub(crate) type Requeue = Option<Duration>;

fn s<'a>(v: &'a Value, p: &str) -> &'a str {
    v.pointer(p).and_then(Value::as_str).unwrap_or("")
}

/// The controller owner reference of an object, if any.
pub(crate) fn controller_of(v: &Value) -> Option<&Value> {
    v.pointer("/metadata/ownerReferences")?.as_array()?.iter().find(|o| o["controller"] == json!(true))
}

/// The objects of `resource` in `namespace` whose controller is the object with `uid`.
pub(crate) fn owned(store: &Store, resource: Resource, namespace: &str, uid: &str) -> Vec<Obj> {
    store
        .list(resource, Some(namespace))
        .0
        .into_iter()
        .filter(|o| controller_of(o).is_some_and(|c| c["uid"] == uid))
        .collect()
}

/// The owner reference that names `owner` as controller.
pub(crate) fn owner_ref(resource: Resource, owner: &Value) -> Value {
    json!({
        "apiVersion": resource.api_version(),
        "kind": resource.info().kind,
        "name": s(owner, "/metadata/name"),
        "uid": s(owner, "/metadata/uid"),
        "controller": true,
        "blockOwnerDeletion": true,
    })
}

/// A new pod (or ReplicaSet) object from a template's metadata and spec.
pub(crate) fn from_template(
    api_version: &str,
    kind: &str,
    template: &Value,
    name: &str,
    namespace: &str,
    labels: &Map<String, Value>,
    owner: Value,
) -> Value {
    let mut meta = template.get("metadata").cloned().filter(Value::is_object).unwrap_or_else(|| json!({}));
    let mut all = meta.get("labels").and_then(Value::as_object).cloned().unwrap_or_default();
    all.extend(labels.clone());
    meta["labels"] = Value::Object(all);
    meta["name"] = json!(name);
    meta["namespace"] = json!(namespace);
    meta["ownerReferences"] = json!([owner]);
    if let Some(m) = meta.as_object_mut() {
        m.remove("creationTimestamp");
    }
    json!({"apiVersion": api_version, "kind": kind, "metadata": meta, "spec": template.get("spec").cloned().unwrap_or(json!({}))})
}

/// Creates a pod from the pod template of `owner` (a Job or ReplicaSet, of type `resource`),
/// named `<owner>-<5 characters>`, and records `SuccessfulCreate` as `component`.
pub(crate) fn create_pod(ctx: &Ctx, resource: Resource, owner: &Value, component: &'static str) -> bool {
    let name = s(owner, "/metadata/name");
    let namespace = s(owner, "/metadata/namespace");
    let pod_name = format!("{name}-{}", podvisor_objects::uid::suffix(5));
    let mut pod = from_template(
        "v1",
        "Pod",
        &owner["spec"]["template"],
        &pod_name,
        namespace,
        &Map::new(),
        owner_ref(resource, owner),
    );
    pod["metadata"]["generateName"] = json!(format!("{name}-"));
    let about = Involved::of(resource, owner);
    // A controller's pod is admitted as a kubectl's is: decoded, defaulted, validated.
    let admitted = admission::admit(Resource::Pods, pod, Some(namespace), FieldValidation::Strict).map(|mut a| {
        admission::on_create(Resource::Pods, &mut a.object);
        a.object
    });
    let created = admitted
        .map_err(|e| e.to_string())
        .and_then(|pod| ctx.store.create(Resource::Pods, pod).map_err(|e| e.to_string()));
    match created {
        Ok(_) => {
            ctx.recorder.record(&about, "Normal", "SuccessfulCreate", &format!("Created pod: {pod_name}"), component);
            true
        }
        Err(e) => {
            ctx.recorder.record(&about, "Warning", "FailedCreate", &format!("Error creating: {e}"), component);
            false
        }
    }
}

/// Deletes a pod `owner` controls and records `SuccessfulDelete` as `component`.
pub(crate) fn delete_pod(ctx: &Ctx, resource: Resource, owner: &Value, pod: &Value, component: &'static str) -> bool {
    let key = Key::of(Resource::Pods, pod);
    let deleted = delete(&ctx.store, &key, &DeleteOptions::default()).is_ok();
    if deleted {
        let about = Involved::of(resource, owner);
        ctx.recorder.record(&about, "Normal", "SuccessfulDelete", &format!("Deleted pod: {}", key.name), component);
    }
    deleted
}

/// The keys a change asks to reconcile: the object itself when a controller owns its kind, and
/// its controller owner.
fn affected(c: &Change) -> Vec<Key> {
    let mut keys = Vec::new();
    if matches!(c.key.resource, Resource::Jobs | Resource::ReplicaSets | Resource::Deployments)
        || is_deleting(&c.object)
    {
        keys.push(c.key.clone());
    }
    for o in c.object.pointer("/metadata/ownerReferences").and_then(Value::as_array).into_iter().flatten() {
        if let Some(r) = Resource::of_kind(s(o, "/apiVersion"), s(o, "/kind")) {
            keys.push(Key::new(r, &c.key.namespace, s(o, "/name")));
        }
    }
    keys
}

/// Runs the controllers until `stopping` turns true.
pub(crate) async fn run(ctx: Ctx, mut stopping: watch::Receiver<bool>) {
    let mut rx = ctx.store.subscribe();
    let mut queue = BTreeSet::new();
    let mut timers: BTreeMap<Key, Instant> = BTreeMap::new();
    let all = |queue: &mut BTreeSet<Key>| {
        for r in [Resource::Jobs, Resource::ReplicaSets, Resource::Deployments] {
            queue.extend(ctx.store.list(r, None).0.iter().map(|o| Key::of(r, o)));
        }
    };
    all(&mut queue);
    gc::sweep(&ctx);
    loop {
        if *stopping.borrow() {
            return;
        }
        while let Some(key) = queue.pop_first() {
            match isolated(&ctx, &key) {
                // tokio's own bound for "never": about 30 years.
                Some(d) => timers.insert(key, Instant::now() + d.min(FAR)),
                None => timers.remove(&key),
            };
        }
        let next = timers.values().min().copied();
        tokio::select! {
            r = rx.recv() => match r {
                Ok(c) => {
                    queue.extend(affected(&c));
                    if c.kind == crate::store::ChangeKind::Deleted {
                        gc::owner_gone(&ctx, &c);
                    }
                }
                Err(RecvError::Lagged(_)) => {
                    all(&mut queue);
                    gc::sweep(&ctx);
                }
                Err(RecvError::Closed) => return,
            },
            _ = tokio::time::sleep_until(next.unwrap_or_else(Instant::now)), if next.is_some() => {
                let now = Instant::now();
                let due: Vec<Key> = timers.iter().filter(|(_, t)| **t <= now).map(|(k, _)| k.clone()).collect();
                for k in due {
                    timers.remove(&k);
                    queue.insert(k);
                }
            }
            _ = stopping.changed() => {}
        }
    }
}

/// The longest a timer waits.
const FAR: Duration = Duration::from_secs(86_400 * 365 * 30);

/// How long after a reconcile that panicked it is tried again.
const AFTER_PANIC: Duration = Duration::from_secs(60);

/// One reconcile, its panic contained: the object gets a Warning event and is tried again
/// later, and every other object goes on being reconciled.
fn isolated(ctx: &Ctx, key: &Key) -> Requeue {
    isolated_with(ctx, key, reconcile)
}

/// [`isolated`] around any reconcile function.
fn isolated_with(ctx: &Ctx, key: &Key, reconcile: impl FnOnce(&Ctx, &Key) -> Requeue) -> Requeue {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| reconcile(ctx, key))) {
        Ok(requeue) => requeue,
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic".into());
            eprintln!(
                "podvisor: reconciling {} {}/{} failed: {what}",
                key.resource.qualified(),
                key.namespace,
                key.name
            );
            if let Some(obj) = ctx.store.get(key) {
                let about = Involved::of(key.resource, &obj);
                let message = format!("reconcile failed: {what}; trying again in {}s", AFTER_PANIC.as_secs());
                ctx.recorder.record(&about, "Warning", "ReconcileError", &message, "podvisor-controllers");
            }
            Some(AFTER_PANIC)
        }
    }
}

fn reconcile(ctx: &Ctx, key: &Key) -> Requeue {
    let obj = ctx.store.get(key)?;
    if is_deleting(&obj) {
        gc::foreground(ctx, key, &obj);
        return None;
    }
    match key.resource {
        Resource::Jobs => jobs::reconcile(ctx, key, &obj),
        Resource::ReplicaSets => replicasets::reconcile(ctx, key, &obj),
        Resource::Deployments => deployments::reconcile(ctx, key, &obj),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue: a panic in the Job controller stopped every controller. One reconcile's panic
    /// is an event on its object and a retry later; the next object is reconciled as usual.
    #[test]
    fn a_reconcile_that_panics_is_contained() {
        let store = Store::in_memory();
        let ctx = Ctx {
            store: store.clone(),
            recorder: Recorder::new(store.clone(), "node".into()),
            bursts: Default::default(),
        };
        let job = store
            .create(Resource::Jobs, json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "bad", "namespace": "default", "uid": "u"}}))
            .unwrap();
        let key = Key::of(Resource::Jobs, &job);
        let requeue = isolated_with(&ctx, &key, |_, _| panic!("a bug"));
        assert_eq!(requeue, Some(AFTER_PANIC));
        let events = store.list(Resource::Events, Some("default")).0;
        assert!(
            events
                .iter()
                .any(|e| e["reason"] == "ReconcileError" && e["message"].as_str().is_some_and(|m| m.contains("a bug"))),
            "{events:?}"
        );
        assert_eq!(isolated_with(&ctx, &key, |_, _| Some(Duration::from_secs(1))), Some(Duration::from_secs(1)));
    }

    #[test]
    fn numbers_are_encoded_in_the_kubernetes_alphabet() {
        assert_eq!(safe_encode(1234567890), "56789bcdf4");
    }
}
