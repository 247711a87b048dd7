//! Deletion as the API server does it: a pod gets `deletionTimestamp` and a grace period and is
//! removed by the node once its containers are stopped (at once when it never ran or already
//! finished); other objects are removed with their dependents per the propagation policy.

use jiff::{SignedDuration, Timestamp};
use podvisor_objects::kinds::Resource;
use serde_json::{Value, json};

use crate::store::{Key, Obj, Store, StoreError};
use crate::values::{is_deleting, is_terminal, stamp};

/// The finalizer of a foreground deletion.
pub const FOREGROUND: &str = "foregroundDeletion";

/// What happens to an object's dependents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Propagation {
    /// Removed now; dependents deleted afterwards.
    Background,
    /// Kept (with `deletionTimestamp`) until its dependents are gone.
    Foreground,
    /// Removed now; dependents lose their owner reference and stay.
    Orphan,
}

impl Propagation {
    /// Parses `propagationPolicy`.
    pub fn parse(s: &str) -> Option<Propagation> {
        match s {
            "Background" => Some(Propagation::Background),
            "Foreground" => Some(Propagation::Foreground),
            "Orphan" => Some(Propagation::Orphan),
            _ => None,
        }
    }
}

/// The options of a delete request.
#[derive(Debug, Clone, Default)]
pub struct DeleteOptions {
    /// `gracePeriodSeconds`: overrides the pod's own (0 removes at once).
    pub grace_seconds: Option<i64>,
    /// `propagationPolicy` (or `orphanDependents`).
    pub propagation: Option<Propagation>,
    /// `preconditions.uid`.
    pub uid: Option<String>,
}

/// Deletes the object at `key`; returns its state after the request (with
/// `deletionTimestamp` when the deletion is graceful).
pub fn delete(store: &Store, key: &Key, opts: &DeleteOptions) -> Result<Obj, StoreError> {
    let cur = store.get(key).ok_or_else(|| StoreError::NotFound(key.clone()))?;
    if let Some(uid) = &opts.uid
        && cur.pointer("/metadata/uid").and_then(Value::as_str) != Some(uid.as_str())
    {
        return Err(StoreError::Conflict(key.clone()));
    }
    if key.resource == Resource::Pods {
        let grace = opts
            .grace_seconds
            .or_else(|| cur.pointer("/spec/terminationGracePeriodSeconds").and_then(Value::as_i64))
            .unwrap_or(30)
            .max(0);
        let unbound = cur.pointer("/spec/nodeName").and_then(Value::as_str).is_none_or(str::is_empty);
        if grace == 0 || unbound || is_terminal(&cur) {
            return store.remove(key);
        }
        if let Some(old) = cur.pointer("/metadata/deletionGracePeriodSeconds").and_then(Value::as_i64)
            && old <= grace
        {
            return Ok(cur);
        }
        return store.update::<StoreError>(key, |v| {
            v["metadata"]["deletionTimestamp"] = json!(stamp(Timestamp::now() + SignedDuration::from_secs(grace)));
            v["metadata"]["deletionGracePeriodSeconds"] = json!(grace);
            Ok(())
        });
    }
    let default = if key.resource == Resource::Jobs { Propagation::Orphan } else { Propagation::Background };
    match opts.propagation.unwrap_or(default) {
        Propagation::Background => store.remove(key),
        Propagation::Orphan => {
            let uid = cur.pointer("/metadata/uid").and_then(Value::as_str).unwrap_or("").to_string();
            for r in Resource::ALL.into_iter().filter(|r| r.info().namespaced) {
                for o in store.list(r, Some(&key.namespace)).0 {
                    let refs = o.pointer("/metadata/ownerReferences").and_then(Value::as_array);
                    if refs.is_some_and(|refs| refs.iter().any(|x| x["uid"] == uid.as_str())) {
                        let orphaned = store.update::<StoreError>(&Key::of(r, &o), |v| {
                            if let Some(refs) = v.pointer_mut("/metadata/ownerReferences").and_then(Value::as_array_mut)
                            {
                                refs.retain(|x| x["uid"] != uid.as_str());
                            }
                            Ok(())
                        });
                        // A dependent still naming its owner would be collected with it: the
                        // owner stays until every dependent is orphaned.
                        match orphaned {
                            Ok(_) | Err(StoreError::NotFound(_)) => {}
                            Err(e) => return Err(e),
                        }
                    }
                }
            }
            store.remove(key)
        }
        Propagation::Foreground => {
            if is_deleting(&cur) {
                return Ok(cur);
            }
            store.update::<StoreError>(key, |v| {
                v["metadata"]["deletionTimestamp"] = json!(stamp(Timestamp::now()));
                v["metadata"]["deletionGracePeriodSeconds"] = json!(0);
                let mut f = v.pointer("/metadata/finalizers").and_then(Value::as_array).cloned().unwrap_or_default();
                if !f.iter().any(|x| x == FOREGROUND) {
                    f.push(json!(FOREGROUND));
                }
                v["metadata"]["finalizers"] = Value::Array(f);
                Ok(())
            })
        }
    }
}
