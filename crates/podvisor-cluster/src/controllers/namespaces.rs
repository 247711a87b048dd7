//! The namespace controller's deletion: a namespace being deleted (`Terminating`) has what it
//! holds deleted (pods with their grace, the rest at once, events last), and goes once
//! nothing is left in it, as the API server removes it when the controller takes its
//! `kubernetes` finalizer away. A live namespace keeps its `default` ServiceAccount and its
//! `kube-root-ca.crt` ConfigMap, as the service-account and root-CA-publisher controllers do.

use podvisor_objects::kinds::Resource;
use serde_json::{Value, json};

use super::{Action, Ctx, Error};
use crate::delete::{DeleteOptions, delete};
use crate::store::{Key, StoreError};
use crate::values::is_deleting;

/// Deletes what the terminating namespace `ns` holds, and the namespace once it is empty. A
/// live namespace has its `default` ServiceAccount and root CA kept, where pods talk to an API.
pub(crate) fn reconcile(ctx: &Ctx, key: &Key, ns: &Value) -> Result<Action, Error> {
    if !is_deleting(ns) {
        if let Some(api) = &ctx.api {
            crate::serviceaccounts::ensure_namespace(&ctx.store, api, &key.name);
        }
        return Ok(Action::await_change());
    }
    for r in Resource::ALL.into_iter().filter(|r| r.info().namespaced && *r != Resource::Events) {
        for o in ctx.store.list(r, Some(&key.name)).0 {
            if is_deleting(&o) {
                continue;
            }
            let k = Key::of(r, &o);
            match delete(&ctx.store, &k, &DeleteOptions::default()) {
                Ok(_) | Err(StoreError::NotFound(_)) => {}
                Err(e) => return Err(Error::store("deleting", &k, e)),
            }
        }
    }
    // Deleted at once, or not: what is still there is waited for (pods stop with their grace).
    let remaining = Resource::ALL
        .into_iter()
        .filter(|r| r.info().namespaced && *r != Resource::Events)
        .map(|r| ctx.store.list(r, Some(&key.name)).0.len())
        .sum::<usize>();
    if remaining > 0 {
        let message = format!("Some resources are remaining: {remaining} objects");
        let written = ctx.store.update::<StoreError>(key, |v| {
            v["status"]["phase"] = json!("Terminating");
            v["status"]["conditions"] = json!([{"type": "NamespaceContentRemaining", "status": "True",
                "reason": "SomeResourcesRemain", "message": message}]);
            Ok(())
        });
        return match written {
            Ok(_) | Err(StoreError::NotFound(_)) => Ok(Action::await_change()),
            Err(e) => Err(Error::store("writing the status of", key, e)),
        };
    }
    for e in ctx.store.list(Resource::Events, Some(&key.name)).0 {
        let k = Key::of(Resource::Events, &e);
        match ctx.store.remove(&k) {
            Ok(_) | Err(StoreError::NotFound(_)) => {}
            Err(e) => return Err(Error::store("removing", &k, e)),
        }
    }
    match ctx.store.remove(key) {
        Ok(_) | Err(StoreError::NotFound(_)) => Ok(Action::await_change()),
        Err(e) => Err(Error::store("removing", key, e)),
    }
}
