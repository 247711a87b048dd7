//! The controllers: Job, CronJob, Deployment, ReplicaSet, StatefulSet, DaemonSet,
//! EndpointSlice, the persistent-volume binder and provisioner, and the garbage collectors (by
//! owner, and of pods whose node is gone). One task reacts to every store change by
//! reconciling the objects it touches (an object, its controller owner), level-triggered and
//! idempotent; timers (Job back-off and deadlines, the pod collector's quarantine) wake it when
//! something is due.
//!
//! Each controller is shaped as kube-runtime's: the stored object is decoded once into its
//! k8s-openapi type here, and `reconcile(&obj, &Ctx) -> Result<Action, Error>` says what comes
//! next ([`Action`]) or why it failed ([`Error`]); [`error_policy`] turns a failure into a
//! Warning event and a retry after a per-object back-off. Inside, a reconcile `observe`s the
//! store into a typed struct, `decide`s a plan in a pure function (no store, no recorder, the
//! time passed in) and `act`s on it.

pub mod cronjobs;
pub mod daemonsets;
pub mod deployments;
pub mod endpointslices;
pub mod gc;
pub mod jobs;
pub mod namespaces;
pub mod podgc;
pub mod replicasets;
pub mod statefulsets;
pub mod volumes;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use podvisor_apiserver::admission::{self, FieldValidation};
use podvisor_objects::kinds::Resource;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio::sync::broadcast::error::{RecvError, TryRecvError};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::delete::{DeleteOptions, delete};
use crate::events::{Involved, Recorder};
use crate::store::{Change, Key, Store, StoreError};
use crate::values::{controller_ref, is_deleting, owner_references};

/// The characters Kubernetes uses for generated names.
const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// The component that reports failed reconciles.
const COMPONENT: &str = "podvisor-controllers";

/// Encodes a number as the API machinery's `SafeEncodeString` of its decimal form.
fn safe_encode(n: u64) -> String {
    n.to_string().bytes().map(|b| ALPHABET[b as usize % ALPHABET.len()] as char).collect()
}

/// FNV-1a over a template's JSON, in the Kubernetes alphabet: the `pod-template-hash` of a
/// Deployment's ReplicaSets, and the revision of a StatefulSet's or DaemonSet's pods.
pub(crate) fn template_hash(template: &Value) -> String {
    let mut h: u32 = 0x811c_9dc5;
    for b in template.to_string().bytes() {
        h ^= b as u32;
        h = h.wrapping_mul(0x0100_0193);
    }
    safe_encode(h as u64)
}

/// A context on `store` for the controllers' tests: its own recorder, no API, no volumes.
#[cfg(test)]
pub(crate) fn test_ctx(store: &Arc<Store>) -> Ctx {
    Ctx {
        store: store.clone(),
        recorder: Recorder::new(store.clone(), "node".into()),
        bursts: Default::default(),
        api: None,
        local_path: None,
        missing_nodes: Default::default(),
    }
}

/// What every controller needs.
#[derive(Clone)]
pub(crate) struct Ctx {
    /// The object store.
    pub store: Arc<Store>,
    /// Where the controllers' events go.
    pub recorder: Recorder,
    /// When each ReplicaSet last created a burst of pods: bursts come at most once a second,
    /// as the controller's API client paces them.
    pub bursts: Arc<std::sync::Mutex<std::collections::HashMap<Key, Instant>>>,
    /// The API pods talk to, if any: new pods then go through ServiceAccount admission, and
    /// new namespaces get their `default` account and root CA.
    pub api: Option<Arc<crate::serviceaccounts::ApiAccess>>,
    /// Where local-path volumes live (`<data-dir>/local-path`).
    pub local_path: Option<std::path::PathBuf>,
    /// Since when each node that pods are bound to has been missing (the pod garbage
    /// collector's quarantine).
    pub missing_nodes: Arc<std::sync::Mutex<HashMap<String, Instant>>>,
}

/// What a reconcile asks for next, as kube-runtime's `Action`: to be reconciled again after a
/// while, or only when something it watches changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Action {
    requeue_after: Option<Duration>,
}

impl Action {
    /// Reconcile again after `after` (and at any change before).
    pub(crate) fn requeue(after: Duration) -> Action {
        Action { requeue_after: Some(after) }
    }

    /// Reconcile again only when something the object depends on changes.
    pub(crate) fn await_change() -> Action {
        Action { requeue_after: None }
    }

    /// [`Action::requeue`] when `after` is some, else [`Action::await_change`].
    pub(crate) fn requeue_or_await(after: Option<Duration>) -> Action {
        Action { requeue_after: after }
    }

    /// When to reconcile again, if the object asked for a time.
    pub(crate) fn requeue_after(self) -> Option<Duration> {
        self.requeue_after
    }
}

/// Why a reconcile failed. [`error_policy`] reports it and retries the object after a back-off.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Error {
    /// A stored object does not read as its type.
    #[error("{} {}/{} cannot be read: {source}", .key.resource.qualified(), .key.namespace, .key.name)]
    Decode {
        /// The object.
        key: Key,
        /// What does not read.
        #[source]
        source: serde_json::Error,
    },
    /// What a reconcile writes (a status, a template to hash) does not write as JSON.
    #[error("{} {}/{} cannot be written: {source}", .key.resource.qualified(), .key.namespace, .key.name)]
    Encode {
        /// The object.
        key: Key,
        /// What does not write.
        #[source]
        source: serde_json::Error,
    },
    /// A store operation failed; `what` says what it was to do, and so what is left undone.
    #[error("{what}: {source}")]
    Store {
        /// What the operation was to do (`writing the status of jobs.batch default/pi`).
        what: String,
        /// How it failed.
        #[source]
        source: StoreError,
    },
    /// An object could not be created.
    #[error("creating {} {}/{}: {message}", .key.resource.qualified(), .key.namespace, .key.name)]
    Create {
        /// The object that was to be created.
        key: Key,
        /// Why it was not.
        message: String,
    },
}

impl Error {
    /// A failed store operation on `key`, `doing` what (`writing the status of`).
    pub(crate) fn store(doing: &str, key: &Key, source: StoreError) -> Error {
        let what = format!("{doing} {} {}/{}", key.resource.qualified(), key.namespace, key.name);
        Error::Store { what, source }
    }
}

/// A stored object of `resource` as its typed form `K`: each version is decoded once (the
/// store keeps its typed form), and read again as a copy.
pub(crate) fn decode<K: DeserializeOwned + Clone + Send + Sync + 'static>(
    store: &Store,
    resource: Resource,
    obj: &Value,
) -> Result<K, Error> {
    let key = Key::of(resource, obj);
    store.typed::<K>(&key, obj).map(|k| K::clone(&k)).map_err(|source| Error::Decode { key, source })
}

/// The JSON form of `value`, a part of the object at `key`.
pub(crate) fn encode(key: &Key, value: &impl serde::Serialize) -> Result<Value, Error> {
    serde_json::to_value(value).map_err(|source| Error::Encode { key: key.clone(), source })
}

/// Writes `status` as the status of the object at `key`; one gone meanwhile is no error.
pub(crate) fn write_status(ctx: &Ctx, key: &Key, status: &impl serde::Serialize) -> Result<(), Error> {
    let status = encode(key, status)?;
    let written = ctx.store.update::<StoreError>(key, |v| {
        v["status"] = status;
        Ok(())
    });
    match written {
        Ok(_) | Err(StoreError::NotFound(_)) => Ok(()),
        Err(e) => Err(Error::store("writing the status of", key, e)),
    }
}

/// The key of a typed object of `resource`.
pub(crate) fn key_of(resource: Resource, meta: &ObjectMeta) -> Key {
    Key::new(resource, meta.namespace.as_deref().unwrap_or(""), meta.name.as_deref().unwrap_or(""))
}

/// The typed object of `resource` an event is about.
pub(crate) fn involved(resource: Resource, meta: &ObjectMeta) -> Involved {
    let text = |s: &Option<String>| s.clone().unwrap_or_default();
    Involved {
        kind: resource.info().kind.to_string(),
        api_version: resource.api_version(),
        namespace: text(&meta.namespace),
        name: text(&meta.name),
        uid: text(&meta.uid),
        field_path: None,
    }
}

/// Whether a stored object's controller is the object with `uid`.
fn controlled_by(obj: &Value, uid: &str) -> bool {
    controller_ref(obj).is_some_and(|c| c.uid == uid)
}

/// The objects of `resource` in `namespace` whose controller is the object with `uid`,
/// decoded as `K`, in the store's order (by name).
pub(crate) fn owned<K: DeserializeOwned + Clone + Send + Sync + 'static>(
    store: &Store,
    resource: Resource,
    namespace: &str,
    uid: &str,
) -> Result<Vec<K>, Error> {
    let (objects, _) = store.list(resource, Some(namespace));
    objects.iter().filter(|o| controlled_by(o, uid)).map(|o| decode(store, resource, o)).collect()
}

/// How many objects of `resource` in `namespace` the object with `uid` controls.
pub(crate) fn owned_count(store: &Store, resource: Resource, namespace: &str, uid: &str) -> usize {
    store.list(resource, Some(namespace)).0.iter().filter(|o| controlled_by(o, uid)).count()
}

/// The owner reference that names `owner` (of type `resource`) as controller.
pub(crate) fn owner_ref(resource: Resource, owner: &ObjectMeta) -> OwnerReference {
    OwnerReference {
        api_version: resource.api_version(),
        kind: resource.info().kind.to_string(),
        name: owner.name.clone().unwrap_or_default(),
        uid: owner.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// The metadata of a new pod (or ReplicaSet) made from a template's: its labels with `labels`
/// added, its name, namespace and owner, and no creation time.
pub(crate) fn from_template(
    template: Option<&ObjectMeta>,
    name: &str,
    namespace: &str,
    labels: &BTreeMap<String, String>,
    owner: OwnerReference,
) -> ObjectMeta {
    let mut meta = template.cloned().unwrap_or_default();
    meta.labels.get_or_insert_default().extend(labels.iter().map(|(k, v)| (k.clone(), v.clone())));
    meta.name = Some(name.to_string());
    meta.namespace = Some(namespace.to_string());
    meta.owner_references = Some(vec![owner]);
    meta.creation_timestamp = None;
    meta
}

/// Creates a pod from `template`, the pod template of `owner` (a Job or ReplicaSet, of type
/// `resource`), named `<owner>-<5 characters>`, and records `SuccessfulCreate` as `component`;
/// a pod that cannot be created is a `FailedCreate` event, and `false`.
pub(crate) fn create_pod(
    ctx: &Ctx,
    resource: Resource,
    owner: &ObjectMeta,
    template: &PodTemplateSpec,
    component: &'static str,
) -> bool {
    let name = owner.name.as_deref().unwrap_or("");
    let pod_name = format!("{name}-{}", podvisor_objects::uid::suffix(5));
    let made = create_pod_as(ctx, resource, owner, template, &pod_name, Some(format!("{name}-")), |_| {});
    let about = involved(resource, owner);
    match made {
        Ok(()) => {
            ctx.recorder.record(&about, "Normal", "SuccessfulCreate", &format!("Created pod: {pod_name}"), component);
            true
        }
        Err(e) => {
            ctx.recorder.record(&about, "Warning", "FailedCreate", &format!("Error creating: {e}"), component);
            false
        }
    }
}

/// Creates pod `pod_name` from `template`, the pod template of `owner` (of type `resource`),
/// after `shape` has had its say on the pod, admitted as a kubectl's pod is (decoded,
/// defaulted, validated, the store's admission plugins).
pub(crate) fn create_pod_as(
    ctx: &Ctx,
    resource: Resource,
    owner: &ObjectMeta,
    template: &PodTemplateSpec,
    pod_name: &str,
    generate_name: Option<String>,
    shape: impl FnOnce(&mut Pod),
) -> Result<(), String> {
    let namespace = owner.namespace.as_deref().unwrap_or("");
    let mut metadata =
        from_template(template.metadata.as_ref(), pod_name, namespace, &BTreeMap::new(), owner_ref(resource, owner));
    metadata.generate_name = generate_name;
    let mut pod = Pod { metadata, spec: Some(template.spec.clone().unwrap_or_default()), status: None };
    shape(&mut pod);
    let pod = serde_json::to_value(&pod).map_err(|e| e.to_string())?;
    let mut pod = admission::admit(Resource::Pods, pod, Some(namespace), FieldValidation::Strict)
        .map(|mut a| {
            admission::on_create(Resource::Pods, &mut a.object);
            a.object
        })
        .map_err(|e| e.to_string())?;
    crate::admission::admit_create(&ctx.store, ctx.api.as_deref(), Resource::Pods, &mut pod)
        .map_err(|e| e.to_string())?;
    ctx.store.create(Resource::Pods, pod).map(|_| ()).map_err(|e| e.to_string())
}

/// Deletes the pod at `pod`, which `owner` (of type `resource`) controls, and records
/// `SuccessfulDelete` as `component`. A pod already gone is not deleted (`false`).
pub(crate) fn delete_pod(
    ctx: &Ctx,
    resource: Resource,
    owner: &ObjectMeta,
    pod: &Key,
    component: &'static str,
) -> Result<bool, Error> {
    match delete(&ctx.store, pod, &DeleteOptions::default()) {
        Ok(_) => {
            let about = involved(resource, owner);
            ctx.recorder.record(&about, "Normal", "SuccessfulDelete", &format!("Deleted pod: {}", pod.name), component);
            Ok(true)
        }
        Err(StoreError::NotFound(_)) => Ok(false),
        Err(e) => Err(Error::store("deleting", pod, e)),
    }
}

/// The keys a change asks to reconcile: the object itself when a controller owns its kind, and
/// its controller owner; for a pod, every Service of its namespace (its labels, address or
/// readiness may change which endpoints they have).
fn affected(c: &Change, store: &Store) -> Vec<Key> {
    let mut keys = Vec::new();
    if matches!(
        c.key.resource,
        Resource::Jobs
            | Resource::ReplicaSets
            | Resource::Deployments
            | Resource::Services
            | Resource::CronJobs
            | Resource::StatefulSets
            | Resource::DaemonSets
    ) || is_deleting(&c.object)
    {
        keys.push(c.key.clone());
    }
    if c.key.resource == Resource::Pods {
        let services = store.list(Resource::Services, Some(&c.key.namespace)).0;
        keys.extend(services.iter().map(|s| Key::of(Resource::Services, s)));
        // The claims it mounts: one it no longer uses may go.
        let claims = c.object.pointer("/spec/volumes").and_then(Value::as_array).into_iter().flatten();
        keys.extend(
            claims
                .filter_map(|v| v.pointer("/persistentVolumeClaim/claimName")?.as_str())
                .map(|n| Key::new(Resource::PersistentVolumeClaims, &c.key.namespace, n)),
        );
    }
    podgc::affected(c, store, &mut keys);
    // A node's labels and taints decide where daemons run.
    if c.key.resource == Resource::Nodes {
        keys.extend(store.list(Resource::DaemonSets, None).0.iter().map(|d| Key::of(Resource::DaemonSets, d)));
    }
    if matches!(c.key.resource, Resource::PersistentVolumeClaims | Resource::PersistentVolumes) {
        keys.push(c.key.clone());
    }
    // A claim's volume follows it (Released when it goes).
    if c.key.resource == Resource::PersistentVolumeClaims
        && let Some(pv) = c.object.pointer("/spec/volumeName").and_then(Value::as_str).filter(|n| !n.is_empty())
    {
        keys.push(Key::new(Resource::PersistentVolumes, "", pv));
    }
    // A volume's claim may bind once it is there.
    if c.key.resource == Resource::PersistentVolumes && c.kind != crate::store::ChangeKind::Deleted {
        let pending = store.list(Resource::PersistentVolumeClaims, None).0;
        keys.extend(
            pending
                .iter()
                .filter(|p| p.pointer("/status/phase").and_then(Value::as_str) != Some("Bound"))
                .map(|p| Key::of(Resource::PersistentVolumeClaims, p)),
        );
    }
    // A namespace's default account and root CA are kept: their removal or change is its.
    let kept = (c.key.resource == Resource::ServiceAccounts && c.key.name == "default")
        || (c.key.resource == Resource::ConfigMaps && c.key.name == crate::serviceaccounts::ROOT_CA);
    // A terminating namespace waits for what it holds: each change in it may be the last.
    if kept {
        keys.push(Key::new(Resource::Namespaces, "", &c.key.namespace));
    }
    if c.key.resource == Resource::Namespaces {
        keys.push(c.key.clone());
    } else if c.key.resource.info().namespaced {
        let ns = Key::new(Resource::Namespaces, "", &c.key.namespace);
        if store.get(&ns).is_some_and(|n| is_deleting(&n)) {
            keys.push(ns);
        }
    }
    for o in owner_references(&c.object) {
        if let Some(r) = Resource::of_kind(&o.api_version, &o.kind) {
            keys.push(Key::new(r, &c.key.namespace, &o.name));
        }
    }
    keys
}

/// Runs the controllers until `stopping` turns true.
pub(crate) async fn run(ctx: Ctx, mut stopping: watch::Receiver<bool>) {
    let mut rx = ctx.store.subscribe();
    let mut queue = BTreeSet::new();
    let mut timers: BTreeMap<Key, Instant> = BTreeMap::new();
    let mut failures = Failures::default();
    let all = |queue: &mut BTreeSet<Key>| {
        for r in [
            Resource::Jobs,
            Resource::ReplicaSets,
            Resource::Deployments,
            Resource::Services,
            Resource::CronJobs,
            Resource::Namespaces,
        ] {
            queue.extend(ctx.store.list(r, None).0.iter().map(|o| Key::of(r, o)));
        }
        queue.extend(podgc::orphans(&ctx.store));
    };
    all(&mut queue);
    gc::sweep(&ctx);
    loop {
        if *stopping.borrow() {
            return;
        }
        while let Some(key) = queue.pop_first() {
            match isolated(&ctx, &key, &mut failures).requeue_after() {
                // tokio's own bound for "never": about 30 years.
                Some(d) => timers.insert(key, Instant::now() + d.min(FAR)),
                None => timers.remove(&key),
            };
        }
        let next = timers.values().min().copied();
        tokio::select! {
            r = rx.recv() => {
                // The changes already waiting join this one, up to a batch: the objects they
                // touch are reconciled once, on the store as it is now (level-triggered),
                // rather than once per change.
                let mut r = r;
                for taken in 1.. {
                    match r {
                        Ok(c) => {
                            queue.extend(affected(&c, &ctx.store));
                            if c.kind == crate::store::ChangeKind::Deleted {
                                gc::owner_gone(&ctx, &c);
                            }
                        }
                        Err(RecvError::Lagged(_)) => {
                            all(&mut queue);
                            gc::sweep(&ctx);
                        }
                        Err(RecvError::Closed) => return,
                    }
                    if taken == BATCH {
                        break;
                    }
                    r = match rx.try_recv() {
                        Ok(c) => Ok(c),
                        Err(TryRecvError::Empty) => break,
                        Err(TryRecvError::Lagged(n)) => Err(RecvError::Lagged(n)),
                        Err(TryRecvError::Closed) => Err(RecvError::Closed),
                    };
                }
            }
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

/// The most store changes taken at once before the objects they touch are reconciled.
const BATCH: usize = 1024;

/// The longest a timer waits.
const FAR: Duration = Duration::from_secs(86_400 * 365 * 30);

/// How long after a reconcile that panicked it is tried again.
const AFTER_PANIC: Duration = Duration::from_secs(60);

/// The first wait after a reconcile that failed; it doubles with every failure in a row.
const ERROR_BACKOFF: Duration = Duration::from_secs(5);

/// The longest wait after failed reconciles.
const ERROR_BACKOFF_MAX: Duration = Duration::from_secs(300);

/// How many reconciles of each object failed in a row (none once one succeeds).
#[derive(Debug, Default)]
struct Failures(HashMap<Key, u32>);

/// The wait before retrying an object whose last `failures` reconciles failed: 5 s doubling,
/// at most 5 minutes.
fn error_backoff(failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(16);
    ERROR_BACKOFF.saturating_mul(1 << doublings).min(ERROR_BACKOFF_MAX)
}

/// What follows a reconcile of `key` that failed with `error` for the `failures`-th time in a
/// row, as kube-runtime's error policy: the failure is logged and recorded as a Warning event
/// on the object (`ReconcileError`), and the object is tried again after [`error_backoff`].
pub(crate) fn error_policy(key: &Key, error: &Error, ctx: &Ctx, failures: u32) -> Action {
    let wait = error_backoff(failures);
    tracing::warn!(
        "reconciling {} {}/{} failed: {error}; trying again in {}s",
        key.resource.qualified(),
        key.namespace,
        key.name,
        wait.as_secs()
    );
    if let Some(obj) = ctx.store.get(key) {
        let about = Involved::of(key.resource, &obj);
        let message = format!("reconcile failed: {error}; trying again in {}s", wait.as_secs());
        ctx.recorder.record(&about, "Warning", "ReconcileError", &message, COMPONENT);
    }
    Action::requeue(wait)
}

/// One reconcile, its failure handled by [`error_policy`] and its panic contained: the object
/// gets a Warning event and is tried again later, and every other object goes on being
/// reconciled.
fn isolated(ctx: &Ctx, key: &Key, failures: &mut Failures) -> Action {
    isolated_with(ctx, key, failures, reconcile)
}

/// [`isolated`] around any reconcile function.
fn isolated_with(
    ctx: &Ctx,
    key: &Key,
    failures: &mut Failures,
    reconcile: impl FnOnce(&Ctx, &Key) -> Result<Action, Error>,
) -> Action {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| reconcile(ctx, key))) {
        Ok(Ok(action)) => {
            failures.0.remove(key);
            action
        }
        Ok(Err(error)) => {
            let n = failures.0.entry(key.clone()).or_default();
            *n = n.saturating_add(1);
            error_policy(key, &error, ctx, *n)
        }
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic".into());
            tracing::warn!("reconciling {} {}/{} failed: {what}", key.resource.qualified(), key.namespace, key.name);
            if let Some(obj) = ctx.store.get(key) {
                let about = Involved::of(key.resource, &obj);
                let message = format!("reconcile failed: {what}; trying again in {}s", AFTER_PANIC.as_secs());
                ctx.recorder.record(&about, "Warning", "ReconcileError", &message, COMPONENT);
            }
            Action::requeue(AFTER_PANIC)
        }
    }
}

/// Reconciles the object at `key`: finishes its foreground deletion, or decodes it and runs its
/// controller.
fn reconcile(ctx: &Ctx, key: &Key) -> Result<Action, Error> {
    let Some(obj) = ctx.store.get(key) else { return Ok(Action::await_change()) };
    match key.resource {
        Resource::Namespaces => return namespaces::reconcile(ctx, key, &obj),
        Resource::PersistentVolumeClaims => return volumes::reconcile_claim(ctx, key, &obj),
        Resource::PersistentVolumes => return volumes::reconcile_volume(ctx, key, &obj),
        _ => {}
    }
    if is_deleting(&obj) {
        gc::foreground(ctx, key, &obj)?;
        // A pod being deleted whose node is gone is still the pod collector's.
        if key.resource != Resource::Pods {
            return Ok(Action::await_change());
        }
    }
    match key.resource {
        Resource::Jobs => jobs::reconcile(&decode(&ctx.store, key.resource, &obj)?, ctx),
        Resource::ReplicaSets => replicasets::reconcile(&decode(&ctx.store, key.resource, &obj)?, ctx),
        Resource::Deployments => deployments::reconcile(&decode(&ctx.store, key.resource, &obj)?, ctx),
        Resource::Services => endpointslices::reconcile(ctx, &decode(&ctx.store, key.resource, &obj)?),
        Resource::CronJobs => cronjobs::reconcile(&decode(&ctx.store, key.resource, &obj)?, ctx),
        Resource::StatefulSets => statefulsets::reconcile(&decode(&ctx.store, key.resource, &obj)?, ctx),
        Resource::DaemonSets => daemonsets::reconcile(&decode(&ctx.store, key.resource, &obj)?, ctx),
        Resource::Pods => podgc::reconcile(ctx, key, &obj),
        _ => Ok(Action::await_change()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ctx(store: &Arc<Store>) -> Ctx {
        test_ctx(store)
    }

    /// The events of the default namespace with `reason`, as `(message, count)`.
    fn events(store: &Store, reason: &str) -> Vec<(String, i64)> {
        let events = store.list(Resource::Events, Some("default")).0;
        let of = |e: &Value| (e["message"].as_str().unwrap_or("").to_string(), e["count"].as_i64().unwrap_or(0));
        events.iter().filter(|e| e["reason"] == reason).map(|e| of(e)).collect()
    }

    /// Issue: a panic in the Job controller stopped every controller. One reconcile's panic
    /// is an event on its object and a retry later; the next object is reconciled as usual.
    #[test]
    fn a_reconcile_that_panics_is_contained() {
        let store = Store::in_memory();
        let ctx = ctx(&store);
        let job = store
            .create(Resource::Jobs, json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "bad", "namespace": "default", "uid": "u"}}))
            .unwrap();
        let key = Key::of(Resource::Jobs, &job);
        let mut failures = Failures::default();
        let action = isolated_with(&ctx, &key, &mut failures, |_, _| panic!("a bug"));
        assert_eq!(action, Action::requeue(AFTER_PANIC));
        let events = store.list(Resource::Events, Some("default")).0;
        assert!(
            events
                .iter()
                .any(|e| e["reason"] == "ReconcileError" && e["message"].as_str().is_some_and(|m| m.contains("a bug"))),
            "{events:?}"
        );
        let once = Action::requeue(Duration::from_secs(1));
        assert_eq!(isolated_with(&ctx, &key, &mut failures, |_, _| Ok(once)), once);
    }

    /// A reconcile that fails is a `ReconcileError` event naming the failure and a retry after
    /// 5 s, doubling with each failure in a row up to 5 minutes; a success resets the back-off.
    #[test]
    fn a_failed_reconcile_is_reported_and_retried_after_a_growing_back_off() {
        let store = Store::in_memory();
        let ctx = ctx(&store);
        let job = store
            .create(Resource::Jobs, json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "j", "namespace": "default", "uid": "u"}}))
            .unwrap();
        let key = Key::of(Resource::Jobs, &job);
        let mut failures = Failures::default();
        let fail = |_: &Ctx, k: &Key| -> Result<Action, Error> {
            Err(Error::Create { key: Key::new(Resource::Pods, &k.namespace, "p"), message: "no room".into() })
        };
        let waits: Vec<u64> =
            (0..9).map(|_| isolated_with(&ctx, &key, &mut failures, fail).requeue_after().unwrap().as_secs()).collect();
        assert_eq!(waits, [5, 10, 20, 40, 80, 160, 300, 300, 300]);
        let reported = events(&store, "ReconcileError");
        assert!(
            reported.contains(&("reconcile failed: creating pods default/p: no room; trying again in 5s".into(), 1)),
            "{reported:?}"
        );
        assert!(
            reported.contains(&("reconcile failed: creating pods default/p: no room; trying again in 300s".into(), 3))
        );
        assert_eq!(isolated_with(&ctx, &key, &mut failures, |_, _| Ok(Action::await_change())), Action::await_change());
        assert_eq!(isolated_with(&ctx, &key, &mut failures, fail), Action::requeue(Duration::from_secs(5)));
        assert_eq!(error_backoff(u32::MAX), Duration::from_secs(300));
    }

    /// A stored Job that does not read as a Job (a string where a count goes) is not
    /// reconciled: the failure names the Job and what does not read, and is retried.
    #[test]
    fn an_object_that_does_not_decode_is_a_reconcile_error_naming_it() {
        let store = Store::in_memory();
        let ctx = ctx(&store);
        let job = store
            .create(
                Resource::Jobs,
                json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "odd", "namespace": "default", "uid": "u"},
                       "spec": {"parallelism": "two", "template": {"spec": {"containers": [{"name": "c", "image": "busybox"}]}}}}),
            )
            .unwrap();
        let key = Key::of(Resource::Jobs, &job);
        let err = reconcile(&ctx, &key).unwrap_err();
        assert!(matches!(&err, Error::Decode { key: k, .. } if *k == key), "{err:?}");
        assert!(err.to_string().starts_with("jobs.batch default/odd cannot be read: invalid type"), "{err}");
        let mut failures = Failures::default();
        assert_eq!(isolated(&ctx, &key, &mut failures), Action::requeue(Duration::from_secs(5)));
        assert_eq!(events(&store, "ReconcileError").len(), 1);
        assert!(store.list(Resource::Pods, None).0.is_empty(), "no pod of an unreadable Job");
    }

    /// Changes that come together are taken together, and none is lost: every ReplicaSet of a
    /// burst of creations gets its pods.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_object_a_burst_of_changes_touches_is_reconciled() {
        let store = Store::in_memory();
        let (stop, stopping) = watch::channel(false);
        let task = tokio::spawn(run(ctx(&store), stopping));
        tokio::time::sleep(Duration::from_millis(50)).await;
        for i in 0..40 {
            let rs = json!({"apiVersion": "apps/v1", "kind": "ReplicaSet",
                "metadata": {"name": format!("rs-{i}"), "namespace": "default", "uid": format!("u-{i}")},
                "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "a"}},
                         "template": {"metadata": {"labels": {"app": "a"}},
                                      "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}});
            store.create(Resource::ReplicaSets, rs).unwrap();
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        let ready = || {
            (0..40).all(|i| {
                let rs = store.get(&Key::new(Resource::ReplicaSets, "default", &format!("rs-{i}")));
                owned_count(&store, Resource::Pods, "default", &format!("u-{i}")) == 2
                    && rs.is_some_and(|r| r["status"]["replicas"] == 2)
            })
        };
        while !ready() {
            assert!(Instant::now() < deadline, "not every ReplicaSet got its pods");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(store.list(Resource::Pods, None).0.len(), 80);
        stop.send_replace(true);
        task.await.unwrap();
    }

    #[test]
    fn numbers_are_encoded_in_the_kubernetes_alphabet() {
        assert_eq!(safe_encode(1234567890), "56789bcdf4");
    }
}
