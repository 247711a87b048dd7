//! POST and PUT: a create or an update of an object (or its `status`), admitted once.

use podvisor_apiserver::admission::{self, check_update};
use podvisor_apiserver::managed;
use podvisor_cluster::StoreError;
use podvisor_objects::kinds::Resource;
use serde_json::Value;

use crate::Reply;
use crate::status::ApiError;

use super::Call;

impl Call<'_> {
    /// POST to a collection.
    pub async fn create(&self, obj: Value) -> Result<Reply, ApiError> {
        let (obj, warnings) = self.admit(obj)?;
        admission::forbid_on_create(self.resource, &obj)?;
        Ok(self.create_admitted(obj, false).await?.with_warnings(&warnings))
    }

    /// Stores a new object; `applied` when server-side apply already recorded its fields.
    pub(super) async fn create_admitted(&self, mut obj: Value, applied: bool) -> Result<Reply, ApiError> {
        self.namespace_open(&obj)?;
        admission::on_create(self.resource, &mut obj);
        podvisor_cluster::admission::admit_create(
            self.state.store(),
            self.state.cluster.api().map(|a| a.as_ref()),
            self.resource,
            &mut obj,
        )?;
        if !applied {
            managed::record_update(None, &mut obj, &self.manager(), &Self::now());
        }
        let resource = self.resource;
        let allocate = |obj: &mut Value, existing: &[&Value]| -> Result<(), ApiError> {
            Ok(podvisor_apiserver::services::allocate_for(resource, obj, existing)?)
        };
        if self.dry_run() {
            let (existing, _) = self.state.store().list(self.resource, None);
            allocate(&mut obj, &existing.iter().map(|o| o.as_ref()).collect::<Vec<_>>())?;
            return Ok(Reply::json(201, &obj));
        }
        let created = self.state.store().create_checked(self.resource, obj, allocate)?;
        self.state.synced().await?;
        Ok(Reply::json(201, &created))
    }

    /// Refuses a create in a namespace that does not exist, or that is being deleted, as the
    /// API server's NamespaceLifecycle admission does.
    fn namespace_open(&self, obj: &Value) -> Result<(), ApiError> {
        if !self.resource.info().namespaced || self.resource == Resource::Events {
            return Ok(());
        }
        let ns = obj.pointer("/metadata/namespace").and_then(Value::as_str).unwrap_or("default");
        if podvisor_cluster::IMMORTAL_NAMESPACES.contains(&ns) {
            return Ok(());
        }
        let key = podvisor_cluster::Key::new(Resource::Namespaces, "", ns);
        match self.state.store().get(&key) {
            None => Err(StoreError::NotFound(key).into()),
            Some(n) if n.pointer("/metadata/deletionTimestamp").is_some_and(|t| !t.is_null()) => {
                let name = obj.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("");
                let why = format!("unable to create new content in namespace {ns} because it is being terminated");
                Err(StoreError::Forbidden { key: podvisor_cluster::Key::new(self.resource, ns, name), why }.into())
            }
            Some(_) => Ok(()),
        }
    }

    /// PUT or PATCH of `pods/ephemeralcontainers` (`kubectl debug`): the pod's ephemeral
    /// containers as `requested` has them, and nothing else of it, as the API server rules.
    pub(super) async fn update_ephemeral(&self, requested: Value) -> Result<Reply, ApiError> {
        let key = self.key();
        if self.dry_run() {
            let cur = self.state.store().get(&key).ok_or_else(|| StoreError::NotFound(key.clone()))?;
            return Ok(Reply::json(200, &podvisor_apiserver::ephemeral::apply(&cur, &requested)?));
        }
        let updated = self.state.store().update::<ApiError>(&key, |cur| {
            let next = podvisor_apiserver::ephemeral::apply(cur, &requested)?;
            cur["spec"]["ephemeralContainers"] = next["spec"]["ephemeralContainers"].clone();
            Ok(())
        })?;
        self.state.synced().await?;
        Ok(Reply::json(200, &updated))
    }

    /// PUT or PATCH of the `scale` of a Deployment or ReplicaSet (`kubectl scale`): the
    /// replicas the Scale asks for (with its resourceVersion as a precondition, if it has one),
    /// and nothing else; the answer is the new Scale.
    pub(super) async fn update_scale(&self, requested: Value) -> Result<Reply, ApiError> {
        let key = self.key();
        let dry = self.dry_run();
        let rv = requested.pointer("/metadata/resourceVersion").and_then(Value::as_str).map(str::to_string);
        let change = |cur: &mut Value| -> Result<(), ApiError> {
            if rv
                .as_deref()
                .is_some_and(|rv| Some(rv) != cur.pointer("/metadata/resourceVersion").and_then(Value::as_str))
            {
                return Err(StoreError::Conflict(key.clone()).into());
            }
            cur["spec"]["replicas"] = serde_json::json!(podvisor_apiserver::scale::replicas(cur, &requested)?);
            Ok(())
        };
        if dry {
            let mut cur = (*self.state.store().get(&key).ok_or_else(|| StoreError::NotFound(key.clone()))?).clone();
            change(&mut cur)?;
            return Ok(Reply::json(200, &podvisor_apiserver::scale::view(&cur)));
        }
        let updated = self.state.store().update::<ApiError>(&key, change)?;
        self.state.synced().await?;
        Ok(Reply::json(200, &podvisor_apiserver::scale::view(&updated)))
    }

    /// PUT of an object (or its `status`).
    pub async fn update(&self, obj: Value) -> Result<Reply, ApiError> {
        if self.sub.as_deref() == Some("ephemeralcontainers") {
            return self.update_ephemeral(obj).await;
        }
        if self.sub.as_deref() == Some("scale") {
            return self.update_scale(obj).await;
        }
        let status_only = self.sub.as_deref() == Some("status");
        let (new, warnings) = if status_only { (obj, Vec::new()) } else { self.admit(obj)? };
        Ok(self.replace(new, status_only, false).await?.with_warnings(&warnings))
    }

    /// Writes `new` over the stored object; `applied` when server-side apply already recorded
    /// its fields.
    pub(super) async fn replace(&self, new: Value, status_only: bool, applied: bool) -> Result<Reply, ApiError> {
        let key = self.key();
        if new.pointer("/metadata/name").and_then(Value::as_str).is_some_and(|n| n != key.name) {
            return Err(ApiError::bad_request("the name of the object does not match the name on the URL"));
        }
        let resource = self.resource;
        let dry = self.dry_run();
        // What the other Services hold, for what a type change allocates (read before the
        // store's lock, which the update holds).
        let siblings: Vec<Value> = if resource == Resource::Services {
            let (all, _) = self.state.store().list(resource, None);
            all.iter().filter(|o| podvisor_cluster::Key::of(resource, o) != key).map(|o| (**o).clone()).collect()
        } else {
            Vec::new()
        };
        if !status_only {
            podvisor_cluster::admission::admit_update(self.state.store(), resource, &new)?;
        }
        let (manager, now) = (self.manager(), Self::now());
        let apply = |cur: &mut Value| -> Result<(), ApiError> {
            if let Some(rv) = new.pointer("/metadata/resourceVersion").and_then(Value::as_str)
                && Some(rv) != cur.pointer("/metadata/resourceVersion").and_then(Value::as_str)
            {
                return Err(StoreError::Conflict(key.clone()).into());
            }
            if status_only {
                cur["status"] = new.get("status").cloned().unwrap_or(Value::Null);
                return Ok(());
            }
            let mut next = new.clone();
            if resource == Resource::Jobs && next.pointer("/spec/selector").is_none() {
                // A PUT without the generated selector keeps it, and the labels it selects by.
                next["spec"]["selector"] = cur["spec"]["selector"].clone();
                next["spec"]["template"]["metadata"]["labels"] = cur["spec"]["template"]["metadata"]["labels"].clone();
            }
            if resource == Resource::Pods {
                // Ephemeral containers change only through their subresource: an update keeps
                // them as they are, whatever it sends.
                match cur.pointer("/spec/ephemeralContainers") {
                    Some(e) => next["spec"]["ephemeralContainers"] = e.clone(),
                    None => {
                        if let Some(spec) = next["spec"].as_object_mut() {
                            spec.remove("ephemeralContainers");
                        }
                    }
                }
            }
            admission::keep_allocated(resource, cur, &mut next);
            check_update(resource, cur, &next)?;
            if !status_only && resource == Resource::Services {
                // A type change gets what the new type needs (a nodePort, a ClusterIP).
                podvisor_apiserver::services::allocate(&mut next, &siblings.iter().collect::<Vec<_>>())?;
            }
            next["status"] = cur.get("status").cloned().unwrap_or(Value::Null);
            if next["status"].is_null()
                && let Some(m) = next.as_object_mut()
            {
                m.remove("status");
            }
            // The deletion marks are the server's; finalizers and owner references are the
            // writer's, as in the API server (a patch or an update may remove them).
            for f in ["deletionTimestamp", "deletionGracePeriodSeconds"] {
                if next["metadata"].get(f).is_none()
                    && let Some(v) = cur["metadata"].get(f)
                {
                    next["metadata"][f] = v.clone();
                }
            }
            if resource == Resource::Pods
                && let Some(n) = cur.pointer("/spec/nodeName")
            {
                next["spec"]["nodeName"] = n.clone();
            }
            if !applied {
                managed::record_update(Some(cur), &mut next, &manager, &now);
            }
            *cur = next;
            Ok(())
        };
        if dry {
            let mut cur = (*self.state.store().get(&key).ok_or_else(|| StoreError::NotFound(key.clone()))?).clone();
            apply(&mut cur)?;
            return Ok(Reply::json(200, &cur));
        }
        let updated = self.state.store().update(&key, apply)?;
        self.state.synced().await?;
        Ok(self.object_reply(200, &updated))
    }
}
