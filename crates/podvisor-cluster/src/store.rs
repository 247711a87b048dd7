//! The object store: every API object in its JSON form, one global monotonic resource version,
//! a history of recent changes for watches, and (for `serve`) a redb file that survives a
//! restart.
//!
//! Every change is applied in memory under one lock, numbered, kept in the history and
//! broadcast at once; a writer thread commits changes to disk in batches (one fsync for all
//! that queued up meanwhile). Writers that answer a client wait with [`Store::synced`] until
//! their change is on disk.

use std::any::{Any, TypeId};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use jiff::Timestamp;
use podvisor_objects::kinds::Resource;
use redb::{ReadableDatabase, ReadableTable, TableDefinition};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tokio::sync::{broadcast, watch};

/// An object as stored.
pub type Obj = Arc<Value>;

const OBJECTS: TableDefinition<&str, &[u8]> = TableDefinition::new("objects");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

/// How many changes the history keeps for watches that resume from a resource version.
const HISTORY: usize = 50_000;

/// Where an object lives.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Key {
    /// Its resource type.
    pub resource: Resource,
    /// Its namespace (`""` for cluster-scoped objects).
    pub namespace: String,
    /// Its name.
    pub name: String,
}

impl Key {
    /// A key.
    pub fn new(resource: Resource, namespace: &str, name: &str) -> Key {
        Key { resource, namespace: namespace.to_string(), name: name.to_string() }
    }

    /// The key of `obj` as a `resource`.
    pub fn of(resource: Resource, obj: &Value) -> Key {
        let s = |p: &str| obj.pointer(p).and_then(Value::as_str).unwrap_or("").to_string();
        Key { resource, namespace: s("/metadata/namespace"), name: s("/metadata/name") }
    }

    fn disk(&self) -> String {
        format!("{}/{}/{}", self.resource.info().plural, self.namespace, self.name)
    }

    fn from_disk(s: &str) -> Option<Key> {
        let mut parts = s.splitn(3, '/');
        let plural = parts.next()?;
        let resource = Resource::ALL.into_iter().find(|r| r.info().plural == plural)?;
        Some(Key { resource, namespace: parts.next()?.to_string(), name: parts.next()?.to_string() })
    }
}

/// What a change did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    /// The object was created.
    Added,
    /// The object changed.
    Modified,
    /// The object was removed; the change carries its last state.
    Deleted,
}

impl ChangeKind {
    /// The watch event type (`ADDED`, `MODIFIED`, `DELETED`).
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeKind::Added => "ADDED",
            ChangeKind::Modified => "MODIFIED",
            ChangeKind::Deleted => "DELETED",
        }
    }
}

/// One numbered change.
#[derive(Debug, Clone)]
pub struct Change {
    /// The resource version the change made.
    pub rv: u64,
    /// What happened.
    pub kind: ChangeKind,
    /// Which object.
    pub key: Key,
    /// The object after the change (its last state for a deletion).
    pub object: Obj,
    /// The object before a modification: a filtered watch turns a change that moves an object
    /// into or out of its selection into `ADDED` or `DELETED`.
    pub previous: Option<Obj>,
}

impl Change {
    /// The event a watch that sees only objects matching `wanted` sends for this change, if
    /// any: as the API server's watch, an object modified out of the selection is `DELETED`
    /// for it, and one modified into it is `ADDED`.
    pub fn seen_through(&self, wanted: impl Fn(&Value) -> bool) -> Option<ChangeKind> {
        let now = wanted(&self.object);
        match self.kind {
            ChangeKind::Modified => {
                let before = self.previous.as_ref().is_none_or(|p| wanted(p));
                match (before, now) {
                    (true, true) => Some(ChangeKind::Modified),
                    (false, true) => Some(ChangeKind::Added),
                    (true, false) => Some(ChangeKind::Deleted),
                    (false, false) => None,
                }
            }
            kind => now.then_some(kind),
        }
    }
}

/// Why a store operation failed, worded as the API server words it.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No such object.
    #[error("{} {:?} not found", .0.resource.qualified(), .0.name)]
    NotFound(Key),
    /// The name is taken.
    #[error("{} {:?} already exists", .0.resource.qualified(), .0.name)]
    AlreadyExists(Key),
    /// The caller's resource version is not the current one.
    #[error(
        "Operation cannot be fulfilled on {} {:?}: the object has been modified; please apply your changes to the latest version and try again",
        .0.resource.qualified(), .0.name
    )]
    Conflict(Key),
    /// The API server refuses the operation on this object (`this namespace may not be
    /// deleted`).
    #[error("{} {:?} is forbidden: {why}", .key.resource.qualified(), .key.name)]
    Forbidden {
        /// The object.
        key: Key,
        /// Why.
        why: String,
    },
    /// A watch asked for changes the history no longer has.
    #[error("too old resource version: {requested} ({current})")]
    Expired {
        /// The version asked for.
        requested: u64,
        /// The current version.
        current: u64,
    },
    /// The database file.
    #[error("{0}")]
    Disk(String),
}

/// Says what a write that failed leaves undone (`what`, e.g. `pod default/web: status`); an
/// object gone meanwhile is no failure. Whether the write happened.
pub(crate) fn said<T>(what: impl std::fmt::Display, r: Result<T, StoreError>) -> bool {
    match r {
        Ok(_) => true,
        Err(StoreError::NotFound(_)) => false,
        Err(e) => {
            tracing::warn!("{what} was not written: {e}");
            false
        }
    }
}

fn disk<E: std::fmt::Display>(e: E) -> StoreError {
    StoreError::Disk(e.to_string())
}

/// Whether an object's `metadata.finalizers` holds any.
fn has_finalizers(v: &Value) -> bool {
    v.pointer("/metadata/finalizers").and_then(Value::as_array).is_some_and(|f| !f.is_empty())
}

fn is_deleting(v: &Value) -> bool {
    v.pointer("/metadata/deletionTimestamp").is_some_and(|t| !t.is_null())
}

/// Where a watch starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// The current state as `ADDED` changes, then every later change (`resourceVersion=0` or none).
    Current,
    /// Every change after this resource version, nothing replayed before it.
    After(u64),
}

struct State {
    rv: u64,
    objects: BTreeMap<Key, Obj>,
    history: VecDeque<Arc<Change>>,
    /// The oldest version the history can resume after.
    floor: u64,
}

enum Op {
    Put(String, Vec<u8>),
    Delete(String),
}

/// What a watch sees first, and the receiver of every later change.
pub type Watch = (Vec<Arc<Change>>, broadcast::Receiver<Arc<Change>>);

/// The object store. See the module documentation.
pub struct Store {
    state: Mutex<State>,
    changes: broadcast::Sender<Arc<Change>>,
    disk: Option<std::sync::mpsc::Sender<(u64, Op)>>,
    persisted: watch::Receiver<Durable>,
    /// Typed forms of stored objects, per object: one per type, of the version last decoded.
    typed: Mutex<HashMap<Key, Vec<Typed>>>,
}

/// One typed form of a stored object's version.
struct Typed {
    ty: TypeId,
    rv: String,
    value: Arc<dyn Any + Send + Sync>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("rv", &self.rv()).field("on_disk", &self.disk.is_some()).finish()
    }
}

impl Store {
    /// A store kept in memory only (`podvisor run`).
    pub fn in_memory() -> Arc<Store> {
        let (_, persisted) = watch::channel(Durable { rv: u64::MAX, failed: None });
        Arc::new(Store::with(BTreeMap::new(), 0, None, persisted))
    }

    fn with(
        objects: BTreeMap<Key, Obj>,
        rv: u64,
        disk: Option<std::sync::mpsc::Sender<(u64, Op)>>,
        persisted: watch::Receiver<Durable>,
    ) -> Store {
        let (changes, _) = broadcast::channel(16_384);
        Store {
            state: Mutex::new(State { rv, objects, history: VecDeque::new(), floor: rv }),
            changes,
            disk,
            persisted,
            typed: Mutex::default(),
        }
    }

    /// `obj` (a stored object of `key`) as its typed form `K`, decoded once per version and
    /// type: reconciles that read the same version again share it.
    pub fn typed<K: DeserializeOwned + Send + Sync + 'static>(
        &self,
        key: &Key,
        obj: &Value,
    ) -> Result<Arc<K>, serde_json::Error> {
        let rv = obj.pointer("/metadata/resourceVersion").and_then(Value::as_str).unwrap_or("");
        let ty = TypeId::of::<K>();
        let lock = || self.typed.lock().unwrap_or_else(|e| e.into_inner());
        if !rv.is_empty()
            && let Some(hit) = lock()
                .get(key)
                .and_then(|v| v.iter().find(|t| t.ty == ty && t.rv == rv))
                .and_then(|t| t.value.clone().downcast::<K>().ok())
        {
            return Ok(hit);
        }
        let decoded = Arc::new(K::deserialize(obj)?);
        if !rv.is_empty() {
            // Under the state lock (then the typed one, as a commit takes them): an object
            // removed meanwhile leaves no typed form behind.
            let state = self.lock();
            if state.objects.contains_key(key) {
                let mut typed = lock();
                let forms = typed.entry(key.clone()).or_default();
                forms.retain(|t| t.ty != ty);
                forms.push(Typed { ty, rv: rv.to_string(), value: decoded.clone() });
            }
            drop(state);
        }
        Ok(decoded)
    }

    /// Opens (or creates) the store file at `path` and loads every object.
    pub fn open(path: &Path) -> Result<Arc<Store>, StoreError> {
        let db = redb::Database::create(path).map_err(|e| StoreError::Disk(format!("{}: {e}", path.display())))?;
        let mut objects = BTreeMap::new();
        let mut rv = 0;
        {
            let w = db.begin_write().map_err(disk)?;
            w.open_table(OBJECTS).map_err(disk)?;
            w.open_table(META).map_err(disk)?;
            w.commit().map_err(disk)?;
            let r = db.begin_read().map_err(disk)?;
            let t = r.open_table(OBJECTS).map_err(disk)?;
            for entry in t.iter().map_err(disk)? {
                let (k, v) = entry.map_err(disk)?;
                if let (Some(key), Ok(obj)) = (Key::from_disk(k.value()), serde_json::from_slice::<Value>(v.value())) {
                    objects.insert(key, Arc::new(obj));
                }
            }
            let m = r.open_table(META).map_err(disk)?;
            if let Some(v) = m.get("rv").map_err(disk)? {
                rv = v.value();
            }
        }
        // After a failed write redb refuses every later one until the file is opened again: the
        // database is dropped on an error and opened anew for the next attempt.
        let path = path.to_path_buf();
        let mut db = Some(db);
        Store::start(objects, rv, move |batch: &[(u64, Op)]| {
            let open = match db.take() {
                Some(open) => open,
                None => redb::Database::create(&path).map_err(|e| format!("{}: {e}", path.display()))?,
            };
            write(&open, batch).map_err(|e| e.to_string())?;
            db = Some(open);
            Ok(())
        })
    }

    /// A store of `objects` at `rv` whose changes `write` makes durable, batch by batch, on its
    /// own thread.
    fn start(
        objects: BTreeMap<Key, Obj>,
        rv: u64,
        write: impl FnMut(&[(u64, Op)]) -> Result<(), String> + Send + 'static,
    ) -> Result<Arc<Store>, StoreError> {
        let (tx, rx) = std::sync::mpsc::channel::<(u64, Op)>();
        let (done_tx, done_rx) = watch::channel(Durable { rv, failed: None });
        std::thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || writer(rx, done_tx, write))
            .map_err(disk)?;
        Ok(Arc::new(Store::with(objects, rv, Some(tx), done_rx)))
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The current resource version.
    pub fn rv(&self) -> u64 {
        self.lock().rv
    }

    /// One object.
    pub fn get(&self, key: &Key) -> Option<Obj> {
        self.lock().objects.get(key).cloned()
    }

    /// The objects of `resource` (in `namespace`, or all) and the version they are current at.
    pub fn list(&self, resource: Resource, namespace: Option<&str>) -> (Vec<Obj>, u64) {
        let st = self.lock();
        let items = of_resource(&st.objects, resource, namespace).map(|(_, v)| v.clone()).collect();
        (items, st.rv)
    }

    fn commit(&self, st: &mut State, kind: ChangeKind, key: Key, object: Value) -> Obj {
        let object = Arc::new(object);
        let previous = if kind == ChangeKind::Modified { st.objects.get(&key).cloned() } else { None };
        let change = Arc::new(Change { rv: st.rv, kind, key: key.clone(), object: object.clone(), previous });
        if kind == ChangeKind::Deleted {
            st.objects.remove(&key);
            self.typed.lock().unwrap_or_else(|e| e.into_inner()).remove(&key);
        } else {
            st.objects.insert(key.clone(), object.clone());
        }
        if let Some(d) = &self.disk {
            let op = match kind {
                ChangeKind::Deleted => Op::Delete(key.disk()),
                _ => Op::Put(key.disk(), serde_json::to_vec(&*object).unwrap_or_default()),
            };
            let _ = d.send((st.rv, op));
        }
        st.history.push_back(change.clone());
        if st.history.len() > HISTORY
            && let Some(old) = st.history.pop_front()
        {
            st.floor = old.rv;
        }
        let _ = self.changes.send(change);
        object
    }

    /// Creates `obj` as a `resource`: assigns its creation time, generation and resource
    /// version, and its UID unless admission (`podvisor_apiserver::admission::on_create`) gave it one. Fails when the
    /// name is taken.
    pub fn create(&self, resource: Resource, obj: Value) -> Result<Obj, StoreError> {
        self.create_checked(resource, obj, |_, _| Ok::<(), StoreError>(()))
    }

    /// [`create`](Self::create), after `check` saw every stored object of `resource` and
    /// completed or refused `obj`, under the same lock: what it allocates (a Service's
    /// ClusterIP) cannot be taken by another create meanwhile.
    pub fn create_checked<E: From<StoreError>>(
        &self,
        resource: Resource,
        mut obj: Value,
        check: impl FnOnce(&mut Value, &[&Value]) -> Result<(), E>,
    ) -> Result<Obj, E> {
        let key = Key::of(resource, &obj);
        let mut st = self.lock();
        if st.objects.contains_key(&key) {
            return Err(StoreError::AlreadyExists(key).into());
        }
        let siblings: Vec<&Value> = of_resource(&st.objects, resource, None).map(|(_, v)| v.as_ref()).collect();
        check(&mut obj, &siblings)?;
        st.rv += 1;
        let meta = &mut obj["metadata"];
        if meta.get("uid").and_then(Value::as_str).is_none_or(str::is_empty) {
            meta["uid"] = json!(podvisor_objects::uid::new_uid());
        }
        meta["creationTimestamp"] = json!(crate::values::stamp(Timestamp::now()));
        meta["resourceVersion"] = json!(st.rv.to_string());
        if resource != Resource::Events {
            meta["generation"] = json!(1);
        }
        Ok(self.commit(&mut st, ChangeKind::Added, key, obj))
    }

    /// Changes an object with `f`, which may refuse. A change to anything but `metadata` and
    /// `status` bumps `metadata.generation`; a call that changes nothing makes no new version.
    pub fn update<E: From<StoreError>>(
        &self,
        key: &Key,
        f: impl FnOnce(&mut Value) -> Result<(), E>,
    ) -> Result<Obj, E> {
        let mut st = self.lock();
        let cur = st.objects.get(key).cloned().ok_or_else(|| StoreError::NotFound(key.clone()))?;
        let mut next = (*cur).clone();
        f(&mut next)?;
        // Identity and bookkeeping fields are the store's.
        for field in ["uid", "creationTimestamp", "name", "namespace", "generation"] {
            match cur["metadata"].get(field) {
                Some(v) => next["metadata"][field] = v.clone(),
                None => {
                    if let Some(m) = next["metadata"].as_object_mut() {
                        m.remove(field);
                    }
                }
            }
        }
        next["metadata"]["resourceVersion"] = cur["metadata"]["resourceVersion"].clone();
        if next == *cur {
            return Ok(cur);
        }
        if body(&next) != body(&cur)
            && let Some(g) = cur.pointer("/metadata/generation").and_then(Value::as_i64)
        {
            next["metadata"]["generation"] = json!(g + 1);
        }
        st.rv += 1;
        next["metadata"]["resourceVersion"] = json!(st.rv.to_string());
        // The last finalizer of an object whose deletion is due (no grace left) is gone: the
        // object goes, as the API server removes it. A graceful deletion waits for its end.
        let due = is_deleting(&next)
            && next.pointer("/metadata/deletionGracePeriodSeconds").and_then(Value::as_i64).unwrap_or(0) == 0;
        let kind = if due && !has_finalizers(&next) && has_finalizers(&cur) {
            ChangeKind::Deleted
        } else {
            ChangeKind::Modified
        };
        Ok(self.commit(&mut st, kind, key.clone(), next))
    }

    /// Removes an object; watchers see its last state. An object with finalizers stays, marked
    /// as being deleted (`deletionTimestamp`), until they are removed, as the API server keeps
    /// it.
    pub fn remove(&self, key: &Key) -> Result<Obj, StoreError> {
        let mut st = self.lock();
        let cur = st.objects.get(key).cloned().ok_or_else(|| StoreError::NotFound(key.clone()))?;
        let mut last = (*cur).clone();
        if has_finalizers(&cur) {
            let grace = cur.pointer("/metadata/deletionGracePeriodSeconds").and_then(Value::as_i64);
            if is_deleting(&cur) && grace == Some(0) {
                return Ok(cur);
            }
            if !is_deleting(&cur) {
                last["metadata"]["deletionTimestamp"] = json!(crate::values::stamp(Timestamp::now()));
            }
            last["metadata"]["deletionGracePeriodSeconds"] = json!(0);
            st.rv += 1;
            last["metadata"]["resourceVersion"] = json!(st.rv.to_string());
            return Ok(self.commit(&mut st, ChangeKind::Modified, key.clone(), last));
        }
        st.rv += 1;
        last["metadata"]["resourceVersion"] = json!(st.rv.to_string());
        Ok(self.commit(&mut st, ChangeKind::Deleted, key.clone(), last))
    }

    /// Every change from now on, of every resource.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Change>> {
        self.changes.subscribe()
    }

    /// The changes of `resource` a watch starting at `from` must see first, and a receiver of
    /// every later change (of every resource: filter by [`Change::key`]).
    pub fn watch(&self, resource: Resource, from: Start) -> Result<Watch, StoreError> {
        let st = self.lock();
        let rx = self.changes.subscribe();
        let first = match from {
            Start::Current => of_resource(&st.objects, resource, None)
                .map(|(k, v)| {
                    let rv =
                        v.pointer("/metadata/resourceVersion").and_then(Value::as_str).and_then(|s| s.parse().ok());
                    Arc::new(Change {
                        rv: rv.unwrap_or(st.rv),
                        kind: ChangeKind::Added,
                        key: k.clone(),
                        object: v.clone(),
                        previous: None,
                    })
                })
                .collect(),
            Start::After(n) if n >= st.rv => Vec::new(),
            Start::After(n) if n < st.floor => {
                return Err(StoreError::Expired { requested: n, current: st.rv });
            }
            Start::After(n) => st.history.iter().filter(|c| c.rv > n && c.key.resource == resource).cloned().collect(),
        };
        Ok((first, rx))
    }

    /// Waits until every change up to `rv` is on disk (at once for an in-memory store). A change
    /// that could not be written is an error, never reported as persisted: the writer tries it
    /// again with the next changes, and a client is told (the API server's 500).
    pub async fn synced(&self, rv: u64) -> Result<(), StoreError> {
        let mut rx = self.persisted.clone();
        let seen = rx
            .wait_for(|p| p.rv >= rv || p.failed.as_ref().is_some_and(|(from, to, _)| (*from..=*to).contains(&rv)))
            .await;
        match seen.as_deref() {
            Ok(Durable { rv: done, .. }) if *done >= rv => Ok(()),
            Ok(Durable { failed: Some((_, _, e)), .. }) => {
                Err(StoreError::Disk(format!("the store could not write to disk: {e}")))
            }
            _ => Err(StoreError::Disk("the store's writer stopped".into())),
        }
    }
}

/// An object without its `metadata` and `status`: what `generation` counts changes of.
fn body(v: &Value) -> Option<BTreeMap<&String, &Value>> {
    v.as_object().map(|m| m.iter().filter(|(k, _)| !matches!(k.as_str(), "metadata" | "status")).collect())
}

/// How far the changes are on disk: every one up to `rv`; and, while writing fails, the
/// changes of the batch that failed last (first and last version) and why.
#[derive(Debug, Clone)]
struct Durable {
    rv: u64,
    failed: Option<(u64, u64, String)>,
}

/// Writes one batch of changes in one transaction.
fn write(db: &redb::Database, batch: &[(u64, Op)]) -> Result<(), redb::Error> {
    let last = batch.last().map(|(rv, _)| *rv).unwrap_or(0);
    let w = db.begin_write()?;
    {
        let mut t = w.open_table(OBJECTS)?;
        for (_, op) in batch {
            match op {
                Op::Put(k, v) => {
                    t.insert(k.as_str(), v.as_slice())?;
                }
                Op::Delete(k) => {
                    t.remove(k.as_str())?;
                }
            }
        }
        let mut m = w.open_table(META)?;
        m.insert("rv", last)?;
    }
    w.commit()?;
    Ok(())
}

/// How long the writer waits before it tries a failed batch again.
const RETRY: std::time::Duration = std::time::Duration::from_millis(500);

/// Writes the changes as they come, in batches. A batch that fails is kept and tried again
/// with the next changes (every second at most while nothing new comes); until it is written,
/// `done` says so and no later change counts as persisted.
fn writer(
    rx: std::sync::mpsc::Receiver<(u64, Op)>,
    done: watch::Sender<Durable>,
    mut write: impl FnMut(&[(u64, Op)]) -> Result<(), String>,
) {
    let mut batch: Vec<(u64, Op)> = Vec::new();
    loop {
        if batch.is_empty() {
            match rx.recv() {
                Ok(first) => batch.push(first),
                Err(_) => return,
            }
        } else {
            match rx.recv_timeout(RETRY) {
                Ok(more) => batch.push(more),
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return,
            }
        }
        batch.extend(rx.try_iter());
        let (first, last) = (batch.first().map_or(0, |(rv, _)| *rv), batch.last().map_or(0, |(rv, _)| *rv));
        match write(&batch) {
            Ok(()) => {
                batch.clear();
                done.send_replace(Durable { rv: last, failed: None });
            }
            Err(e) => {
                tracing::warn!("the store could not write to disk (trying again): {e}");
                done.send_modify(|d| d.failed = Some((first, last, e)));
                // Only the last change of each object needs writing: the batch kept for the next
                // attempt grows with the objects changed, not with every change.
                let mut latest: BTreeMap<String, (u64, Op)> = BTreeMap::new();
                for (rv, op) in batch.drain(..) {
                    let key = match &op {
                        Op::Put(k, _) | Op::Delete(k) => k.clone(),
                    };
                    latest.insert(key, (rv, op));
                }
                batch = latest.into_values().collect();
                batch.sort_by_key(|(rv, _)| *rv);
            }
        }
    }
}

/// The objects of `resource` (in `namespace`, if given), read as a range of the ordered map
/// (keys order by resource, then namespace, then name): a list costs what it returns, not
/// what the whole store holds (its events, its other kinds).
fn of_resource<'a>(
    objects: &'a BTreeMap<Key, Obj>,
    resource: Resource,
    namespace: Option<&'a str>,
) -> impl Iterator<Item = (&'a Key, &'a Obj)> + 'a {
    let from = Key::new(resource, namespace.unwrap_or(""), "");
    objects
        .range(from..)
        .take_while(move |(k, _)| k.resource == resource && namespace.is_none_or(|ns| k.namespace == ns))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(name: &str) -> Value {
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "default"},
               "spec": {"containers": [{"name": "a", "image": "busybox"}]}})
    }

    /// Issue #22: a version is decoded once, however many reconciles read it; a new version
    /// is decoded anew, and an object gone takes its typed forms with it.
    #[test]
    fn each_version_is_decoded_once() {
        use k8s_openapi::api::core::v1::Pod;
        let store = Store::in_memory();
        let created = store.create(Resource::Pods, pod("p")).unwrap();
        let key = Key::of(Resource::Pods, &created);
        let first = store.typed::<Pod>(&key, &created).unwrap();
        let again = store.typed::<Pod>(&key, &store.get(&key).unwrap()).unwrap();
        assert!(Arc::ptr_eq(&first, &again), "the same version is not decoded twice");
        let updated = store
            .update::<StoreError>(&key, |v| {
                v["metadata"]["labels"] = json!({"x": "y"});
                Ok(())
            })
            .unwrap();
        let next = store.typed::<Pod>(&key, &updated).unwrap();
        assert!(!Arc::ptr_eq(&first, &next));
        assert_eq!(next.metadata.labels.as_ref().and_then(|l| l.get("x")).map(String::as_str), Some("y"));
        store.remove(&key).unwrap();
        assert!(store.typed.lock().unwrap().get(&key).is_none());
    }

    /// A list reads the range of its resource (and namespace) alone: the kinds ordered before
    /// and after it, and the namespaces that share its name's start, stay out.
    #[test]
    fn a_list_holds_its_resource_and_namespace_and_nothing_else() {
        let s = Store::in_memory();
        let obj = |kind: &str, ns: &str, name: &str| json!({"apiVersion": "v1", "kind": kind, "metadata": {"name": name, "namespace": ns}});
        for (resource, kind) in
            [(Resource::ConfigMaps, "ConfigMap"), (Resource::Pods, "Pod"), (Resource::Services, "Service")]
        {
            for ns in ["", "a", "ab", "b"] {
                for name in ["x", "y"] {
                    let created = if ns.is_empty() { obj(kind, "default", name) } else { obj(kind, ns, name) };
                    s.create(resource, created).unwrap();
                }
            }
        }
        let names = |resource, ns| -> Vec<String> {
            let (items, _) = s.list(resource, ns);
            items
                .iter()
                .map(|o| {
                    format!(
                        "{}/{}",
                        o["metadata"]["namespace"].as_str().unwrap(),
                        o["metadata"]["name"].as_str().unwrap()
                    )
                })
                .collect()
        };
        assert_eq!(names(Resource::Pods, Some("a")), ["a/x", "a/y"]);
        assert_eq!(names(Resource::Pods, Some("ab")), ["ab/x", "ab/y"]);
        assert_eq!(names(Resource::Pods, Some("c")), Vec::<String>::new());
        assert_eq!(names(Resource::Pods, None), ["a/x", "a/y", "ab/x", "ab/y", "b/x", "b/y", "default/x", "default/y"]);
        assert_eq!(names(Resource::Services, Some("b")), ["b/x", "b/y"]);
        assert_eq!(names(Resource::Secrets, None), Vec::<String>::new());
        let (first, _) = s.watch(Resource::ConfigMaps, Start::Current).unwrap();
        assert_eq!(first.len(), 8, "a watch from now starts with its resource's objects alone");
    }

    #[test]
    fn a_filtered_watch_sees_an_object_enter_and_leave_its_selection() {
        let s = Store::in_memory();
        let key = Key::new(Resource::Pods, "default", "a");
        let (_, mut rx) = s.watch(Resource::Pods, Start::Current).unwrap();
        s.create(Resource::Pods, pod("a")).unwrap();
        let label = |team: &str| {
            let team = team.to_string();
            move |v: &mut Value| -> Result<(), StoreError> {
                v["metadata"]["labels"] = json!({"team": team});
                Ok(())
            }
        };
        s.update(&key, label("a")).unwrap();
        s.update(&key, label("a")).unwrap();
        s.update(&key, label("b")).unwrap();
        s.remove(&key).unwrap();
        let team_a = |v: &Value| v.pointer("/metadata/labels/team").and_then(Value::as_str) == Some("a");
        let mut seen = Vec::new();
        while let Ok(c) = rx.try_recv() {
            seen.push(c.seen_through(team_a).map(ChangeKind::as_str));
        }
        assert_eq!(seen, [None, Some("ADDED"), Some("DELETED"), None], "the no-op update made no change");
    }

    #[test]
    fn versions_history_and_watch_resume() {
        let s = Store::in_memory();
        let a = s.create(Resource::Pods, pod("a")).unwrap();
        assert_eq!(a["metadata"]["resourceVersion"], "1");
        assert!(matches!(s.create(Resource::Pods, pod("a")), Err(StoreError::AlreadyExists(_))));
        let key = Key::new(Resource::Pods, "default", "a");
        let (_, rv) = s.list(Resource::Pods, Some("default"));
        // A no-op update makes no version; a spec change bumps generation; status does not.
        s.update::<StoreError>(&key, |_| Ok(())).unwrap();
        assert_eq!(s.rv(), rv);
        let b = s
            .update::<StoreError>(&key, |v| {
                v["spec"]["containers"][0]["image"] = json!("x");
                Ok(())
            })
            .unwrap();
        assert_eq!(b["metadata"]["generation"], 2);
        let c = s
            .update::<StoreError>(&key, |v| {
                v["status"] = json!({"phase": "Running"});
                Ok(())
            })
            .unwrap();
        assert_eq!(c["metadata"]["generation"], 2);
        assert_eq!(c["metadata"]["resourceVersion"], "3");
        s.remove(&key).unwrap();
        let (after, _) = s.watch(Resource::Pods, Start::After(rv)).unwrap();
        let kinds: Vec<_> = after.iter().map(|c| (c.rv, c.kind)).collect();
        assert_eq!(kinds, [(2, ChangeKind::Modified), (3, ChangeKind::Modified), (4, ChangeKind::Deleted)]);
        let (now, _) = s.watch(Resource::Pods, Start::After(4)).unwrap();
        assert!(now.is_empty());
    }

    /// Issue: a failed commit was reported as persisted, so a client got 201 for data that never
    /// reached the disk. Now the client waiting for it gets the error, the batch is tried again,
    /// and once it is written the changes count as persisted.
    #[tokio::test(flavor = "current_thread")]
    async fn a_write_that_fails_is_an_error_and_is_tried_again() {
        let fail = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
        let written = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (f, w) = (fail.clone(), written.clone());
        let s = Store::start(BTreeMap::new(), 0, move |batch: &[(u64, Op)]| {
            if f.load(std::sync::atomic::Ordering::SeqCst) {
                return Err("disk full".into());
            }
            w.lock().unwrap().extend(batch.iter().map(|(rv, _)| *rv));
            Ok(())
        })
        .unwrap();
        s.create(Resource::Pods, pod("a")).unwrap();
        let err = s.synced(1).await.unwrap_err();
        assert!(err.to_string().contains("disk full"), "{err}");
        fail.store(false, std::sync::atomic::Ordering::SeqCst);
        s.create(Resource::Pods, pod("b")).unwrap();
        s.synced(2).await.unwrap();
        assert_eq!(*written.lock().unwrap(), [1, 2], "the failed change was written again, first");
    }

    #[tokio::test(flavor = "current_thread")]
    async fn survives_reopening() {
        let dir = std::env::temp_dir().join(format!("podvisor-store-{}", podvisor_objects::uid::new_uid()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("store.redb");
        {
            let s = Store::open(&path).unwrap();
            s.create(Resource::Pods, pod("a")).unwrap();
            s.create(Resource::Pods, pod("b")).unwrap();
            let gone = s.remove(&Key::new(Resource::Pods, "default", "b")).unwrap();
            assert_eq!(gone["metadata"]["resourceVersion"], "3");
            s.synced(3).await.unwrap();
        }
        // The writer thread may still hold the file briefly after the store is dropped.
        let mut reopened = Store::open(&path);
        for _ in 0..200 {
            if reopened.is_ok() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            reopened = Store::open(&path);
        }
        let s = reopened.expect("the store reopens once the writer has let go");
        assert_eq!(s.rv(), 3);
        let (pods, _) = s.list(Resource::Pods, None);
        assert_eq!(pods.len(), 1);
        assert!(matches!(s.watch(Resource::Pods, Start::After(1)), Err(StoreError::Expired { .. })));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
