//! Garbage collection by owner references: when an owner is removed, its dependents are deleted
//! (background propagation); an owner deleted in the foreground keeps its `foregroundDeletion`
//! finalizer until its blocking dependents are gone. Orphan propagation is done by the delete
//! itself, which strips the owner references first.

use podvisor_objects::kinds::Resource;
use serde_json::Value;

use super::Ctx;
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

/// Deletes the dependents of an object that was just removed.
pub(crate) fn owner_gone(ctx: &Ctx, c: &Change) {
    let uid = c.object.pointer("/metadata/uid").and_then(Value::as_str).unwrap_or("");
    if uid.is_empty() || c.key.resource == Resource::Events {
        return;
    }
    for key in dependents(ctx, &c.key.namespace, uid) {
        let _ = delete(
            &ctx.store,
            &key,
            &DeleteOptions { propagation: Some(Propagation::Background), ..Default::default() },
        );
    }
}

/// Finishes a foreground deletion: deletes the dependents, and removes the owner once none is
/// left.
pub(crate) fn foreground(ctx: &Ctx, key: &Key, obj: &Value) {
    let finalizers = obj.pointer("/metadata/finalizers").and_then(Value::as_array);
    if !finalizers.is_some_and(|f| f.iter().any(|f| f == FOREGROUND)) {
        return;
    }
    let uid = obj.pointer("/metadata/uid").and_then(Value::as_str).unwrap_or("");
    let left = dependents(ctx, &key.namespace, uid);
    for d in &left {
        if ctx.store.get(d).is_some_and(|o| !is_deleting(&o)) {
            let _ = delete(
                &ctx.store,
                d,
                &DeleteOptions { propagation: Some(Propagation::Foreground), ..Default::default() },
            );
        }
    }
    if left.is_empty() {
        let _ = ctx.store.update::<StoreError>(key, |v| {
            if let Some(f) = v.pointer_mut("/metadata/finalizers").and_then(Value::as_array_mut) {
                f.retain(|f| f != FOREGROUND);
            }
            Ok(())
        });
        let done = ctx
            .store
            .get(key)
            .is_some_and(|o| o.pointer("/metadata/finalizers").and_then(Value::as_array).is_none_or(|f| f.is_empty()));
        if done {
            let _ = ctx.store.remove(key);
        }
    }
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
                foreground(ctx, &key, &o);
                continue;
            }
            let Some(refs) = o.pointer("/metadata/ownerReferences").and_then(Value::as_array) else { continue };
            let alive = refs.iter().any(|x| {
                let owner = Resource::of_kind(x["apiVersion"].as_str().unwrap_or(""), x["kind"].as_str().unwrap_or(""))
                    .and_then(|or| ctx.store.get(&Key::new(or, &key.namespace, x["name"].as_str().unwrap_or(""))));
                owner.is_some_and(|owner| owner.pointer("/metadata/uid") == x.get("uid"))
            });
            if !refs.is_empty() && !alive {
                let _ = delete(
                    &ctx.store,
                    &key,
                    &DeleteOptions { propagation: Some(Propagation::Background), ..Default::default() },
                );
            }
        }
    }
}
