//! Garbage collection by owner references: when an owner is removed, its dependents are deleted
//! (background propagation); an owner deleted in the foreground keeps its `foregroundDeletion`
//! finalizer until its blocking dependents are gone. Orphan propagation is done by the delete
//! itself, which strips the owner references first.

use podvisor_objects::kinds::Resource;
use serde_json::Value;

use super::{Ctx, Error};
use crate::delete::{DeleteOptions, FOREGROUND, Propagation, delete};
use crate::store::{Change, Key, StoreError};
use crate::values::is_deleting;

fn dependents(ctx: &Ctx, namespace: &str, uid: &str) -> Vec<Key> {
    let mut keys = Vec::new();
    for r in Resource::ALL {
        if !r.info().namespaced || r == Resource::Events {
            continue;
        }
        for o in ctx.store.list(r, Some(namespace)).0 {
            let refs = o.pointer("/metadata/ownerReferences").and_then(Value::as_array);
            if refs.is_some_and(|refs| refs.iter().any(|x| x["uid"] == uid)) {
                keys.push(Key::of(r, &o));
            }
        }
    }
    keys
}

/// Deletes `key` with `propagation`; an object already gone is not an error.
fn delete_quietly(ctx: &Ctx, key: &Key, propagation: Propagation) -> Result<(), Error> {
    match delete(&ctx.store, key, &DeleteOptions { propagation: Some(propagation), ..Default::default() }) {
        Ok(_) | Err(StoreError::NotFound(_)) => Ok(()),
        Err(e) => Err(Error::store("deleting", key, e)),
    }
}

/// Logs a failure of the garbage collector, which leaves the object behind until the next
/// sweep (at the next start, or when the controllers fall behind the store's changes).
fn log(result: Result<(), Error>) {
    if let Err(e) = result {
        tracing::warn!("garbage collection: {e}; the object is left until the next sweep");
    }
}

/// Deletes the dependents of an object that was just removed.
pub(crate) fn owner_gone(ctx: &Ctx, c: &Change) {
    let uid = c.object.pointer("/metadata/uid").and_then(Value::as_str).unwrap_or("");
    if uid.is_empty() || c.key.resource == Resource::Events {
        return;
    }
    for key in dependents(ctx, &c.key.namespace, uid) {
        log(delete_quietly(ctx, &key, Propagation::Background));
    }
}

/// Finishes a foreground deletion: deletes the dependents, and removes the owner once none is
/// left. Every dependent is tried; the first failure is returned.
pub(crate) fn foreground(ctx: &Ctx, key: &Key, obj: &Value) -> Result<(), Error> {
    let finalizers = obj.pointer("/metadata/finalizers").and_then(Value::as_array);
    if !finalizers.is_some_and(|f| f.iter().any(|f| f == FOREGROUND)) {
        return Ok(());
    }
    let uid = obj.pointer("/metadata/uid").and_then(Value::as_str).unwrap_or("");
    let left = dependents(ctx, &key.namespace, uid);
    let mut first = Ok(());
    for d in &left {
        if ctx.store.get(d).is_some_and(|o| !is_deleting(&o)) {
            let deleted = delete_quietly(ctx, d, Propagation::Foreground);
            first = first.and(deleted);
        }
    }
    if left.is_empty() {
        let updated = ctx.store.update::<StoreError>(key, |v| {
            if let Some(f) = v.pointer_mut("/metadata/finalizers").and_then(Value::as_array_mut) {
                f.retain(|f| f != FOREGROUND);
            }
            Ok(())
        });
        match updated {
            Ok(_) | Err(StoreError::NotFound(_)) => {}
            Err(e) => return first.and(Err(Error::store("removing the foregroundDeletion finalizer of", key, e))),
        }
        let done = ctx
            .store
            .get(key)
            .is_some_and(|o| o.pointer("/metadata/finalizers").and_then(Value::as_array).is_none_or(|f| f.is_empty()));
        if done {
            match ctx.store.remove(key) {
                Ok(_) | Err(StoreError::NotFound(_)) => {}
                Err(e) => return first.and(Err(Error::store("removing", key, e))),
            }
        }
    }
    first
}

/// Deletes objects whose owners are all gone (after a restart), and finishes deletions that
/// were under way.
pub(crate) fn sweep(ctx: &Ctx) {
    for r in Resource::ALL {
        if !r.info().namespaced || r == Resource::Events {
            continue;
        }
        for o in ctx.store.list(r, None).0 {
            let key = Key::of(r, &o);
            if is_deleting(&o) && r != Resource::Pods {
                log(foreground(ctx, &key, &o));
                continue;
            }
            let Some(refs) = o.pointer("/metadata/ownerReferences").and_then(Value::as_array) else { continue };
            let alive = refs.iter().any(|x| {
                let owner = Resource::of_kind(x["apiVersion"].as_str().unwrap_or(""), x["kind"].as_str().unwrap_or(""))
                    .and_then(|or| ctx.store.get(&Key::new(or, &key.namespace, x["name"].as_str().unwrap_or(""))));
                owner.is_some_and(|owner| owner.pointer("/metadata/uid") == x.get("uid"))
            });
            if !refs.is_empty() && !alive {
                log(delete_quietly(ctx, &key, Propagation::Background));
            }
        }
    }
}
