//! The object endpoints: get, list (JSON or Table, with label and field selectors), watch,
//! create, update, patch (merge, strategic merge, server-side apply), and delete.

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use jiff::Timestamp;
use podvisor_apiserver::managed;
use podvisor_apiserver::selector::{FieldSelector, LabelSelector};
use podvisor_apiserver::table::{self, Include};
use podvisor_cluster::store::{ChangeKind, Start};
use podvisor_cluster::{DeleteOptions, Key, Obj, Propagation, StoreError};
use podvisor_objects::kinds::Resource;
use serde_json::{Value, json};
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::mpsc;

use crate::status::ApiError;
use crate::{Reply, State};
use podvisor_apiserver::admission::{self, FieldValidation, check_update};

/// One request to an object endpoint.
pub struct Call<'a> {
    /// The server.
    pub state: &'a State,
    /// The resource type.
    pub resource: Resource,
    /// The namespace in the path.
    pub namespace: Option<String>,
    /// The name in the path.
    pub name: Option<String>,
    /// The subresource.
    pub sub: Option<String>,
    /// The query.
    pub query: HashMap<String, String>,
    /// Whether a Table was asked for.
    pub table: bool,
    /// The client's `User-Agent`, which names the field manager when the query does not.
    pub user_agent: String,
}

impl Call<'_> {
    fn key(&self) -> Key {
        Key::new(self.resource, self.namespace.as_deref().unwrap_or(""), self.name.as_deref().unwrap_or(""))
    }

    fn q(&self, k: &str) -> Option<&str> {
        self.query.get(k).map(String::as_str).filter(|v| !v.is_empty())
    }

    /// The field manager of a write: `?fieldManager=`, else the client's name as its user agent
    /// gives it, as the API server does.
    fn manager(&self) -> String {
        let agent = self.user_agent.split('/').next().unwrap_or("").trim();
        self.q("fieldManager")
            .map(str::to_string)
            .unwrap_or_else(|| if agent.is_empty() { "unknown" } else { agent }.to_string())
    }

    fn now() -> String {
        podvisor_cluster::values::stamp(Timestamp::now())
    }

    /// Server-side apply of `config` onto `live` (`{}` for a create).
    fn apply(&self, live: &Value, config: &Value) -> Result<Value, ApiError> {
        let force = self.q("force") == Some("true");
        managed::apply(live, config, &self.manager(), force, &Self::now()).map_err(|e| match e {
            managed::ApplyError::Conflicts(ref c) => ApiError::apply_conflicts(&e.to_string(), c),
            managed::ApplyError::Bad(b) => ApiError::bad_request(b.0),
        })
    }

    fn selectors(&self) -> Result<(LabelSelector, FieldSelector), ApiError> {
        let labels =
            LabelSelector::parse(self.q("labelSelector").unwrap_or("")).map_err(|e| ApiError::bad_request(e.0))?;
        let fields = FieldSelector::parse(self.resource, self.q("fieldSelector").unwrap_or(""))
            .map_err(|e| ApiError::bad_request(e.0))?;
        Ok((labels, fields))
    }

    /// Admits a body with the request's `fieldValidation`.
    fn admit(&self, obj: Value) -> Result<(Value, Vec<String>), ApiError> {
        let validation = FieldValidation::parse(self.q("fieldValidation"))?;
        let admitted = admission::admit(self.resource, obj, self.namespace.as_deref(), validation)?;
        Ok((admitted.object, admitted.warnings))
    }

    fn dry_run(&self) -> bool {
        self.q("dryRun") == Some("All")
    }

    fn object_reply(&self, code: u16, obj: &Value) -> Reply {
        if self.table {
            let rv = obj.pointer("/metadata/resourceVersion").and_then(Value::as_str).and_then(|s| s.parse().ok());
            let t = table::table(
                self.resource,
                &[obj],
                rv.unwrap_or(0),
                Timestamp::now(),
                Include::parse(self.q("includeObject")),
            );
            return Reply::json(code, &t);
        }
        Reply::json(code, obj)
    }

    /// GET of an object or a collection.
    pub async fn get(&self) -> Result<Reply, ApiError> {
        if self.name.is_some() {
            let obj = self.state.store().get(&self.key()).ok_or_else(|| StoreError::NotFound(self.key()))?;
            return Ok(self.object_reply(200, &obj));
        }
        if matches!(self.q("watch"), Some("true" | "1")) {
            return self.watch();
        }
        let (labels, fields) = self.selectors()?;
        let (items, rv) = self.state.store().list(self.resource, self.namespace.as_deref());
        let items: Vec<Obj> =
            items.into_iter().filter(|o| labels.matches_object(o) && fields.matches(self.resource, o)).collect();
        if self.table {
            let refs: Vec<&Value> = items.iter().map(|o| &**o).collect();
            let t = table::table(self.resource, &refs, rv, Timestamp::now(), Include::parse(self.q("includeObject")));
            return Ok(Reply::json(200, &t));
        }
        let info = self.resource.info();
        let list = json!({
            "kind": format!("{}List", info.kind), "apiVersion": self.resource.api_version(),
            "metadata": {"resourceVersion": rv.to_string()},
            "items": items.iter().map(|o| (**o).clone()).collect::<Vec<_>>(),
        });
        Ok(Reply::json(200, &list))
    }

    fn watch(&self) -> Result<Reply, ApiError> {
        let (labels, fields) = self.selectors()?;
        let start = match self.q("resourceVersion") {
            None | Some("0") => Start::Current,
            Some(n) => {
                Start::After(n.parse().map_err(|_| ApiError::bad_request(format!("invalid resource version {n:?}")))?)
            }
        };
        let (tx, rx) = mpsc::channel::<Bytes>(64);
        let store = self.state.store().clone();
        let resource = self.resource;
        let namespace = self.namespace.clone();
        let table = self.table;
        let include = Include::parse(self.q("includeObject"));
        let timeout = self.q("timeoutSeconds").and_then(|t| t.parse::<u64>().ok()).map(Duration::from_secs);
        let bookmarks = self.q("allowWatchBookmarks") == Some("true");
        let watched = store.watch(resource, start);
        tokio::spawn(async move {
            let mut first_table = true;
            let mut frame = |ty: &str, obj: &Value| {
                let object = if table && ty != "ERROR" && ty != "BOOKMARK" {
                    let rv = obj.pointer("/metadata/resourceVersion").and_then(Value::as_str).unwrap_or("0");
                    let mut t = json!({
                        "kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": {"resourceVersion": rv},
                        "columnDefinitions": null,
                        "rows": [table::row(resource, obj, Timestamp::now(), include)],
                    });
                    if first_table {
                        t["columnDefinitions"] = table::column_definitions(resource);
                        first_table = false;
                    }
                    t
                } else {
                    obj.clone()
                };
                let mut line = serde_json::to_vec(&json!({"type": ty, "object": object})).unwrap_or_default();
                line.push(b'\n');
                Bytes::from(line)
            };
            // The event this watch sends for a change, if any, and its object: an object that
            // left the selection goes out as DELETED with its last matching content, at the
            // change's resource version, as the API server's watch cache sends it.
            let event_for = |c: &podvisor_cluster::store::Change| -> Option<(&'static str, Value)> {
                let in_scope =
                    c.key.resource == resource && namespace.as_deref().is_none_or(|ns| c.key.namespace == ns);
                let selected = |obj: &Value| labels.matches_object(obj) && fields.matches(resource, obj);
                let kind = if in_scope { c.seen_through(selected)? } else { return None };
                let left = c.kind == ChangeKind::Modified && kind == ChangeKind::Deleted;
                let object = match (&c.previous, left) {
                    (Some(prev), true) => {
                        let mut o = (**prev).clone();
                        o["metadata"]["resourceVersion"] = json!(c.rv.to_string());
                        o
                    }
                    _ => (*c.object).clone(),
                };
                Some((kind.as_str(), object))
            };
            let (first, mut changes) = match watched {
                Ok(w) => w,
                Err(e) => {
                    let _ = tx.send(frame("ERROR", &ApiError::from(e).to_status())).await;
                    return;
                }
            };
            for c in first {
                if let Some((kind, object)) = event_for(&c)
                    && tx.send(frame(kind, &object)).await.is_err()
                {
                    return;
                }
            }
            // Any number of seconds a client sends is legal; past about 30 years it means never.
            let far = Duration::from_secs(86_400 * 365 * 30);
            let deadline = timeout.map(|t| tokio::time::Instant::now() + t.min(far));
            let mut last_rv = store.rv();
            loop {
                tokio::select! {
                    r = changes.recv() => match r {
                        Ok(c) => {
                            last_rv = c.rv;
                            if let Some((kind, object)) = event_for(&c)
                                && tx.send(frame(kind, &object)).await.is_err()
                            {
                                return;
                            }
                        }
                        Err(RecvError::Lagged(_)) => {
                            let e = ApiError::from(StoreError::Expired { requested: last_rv, current: store.rv() });
                            let _ = tx.send(frame("ERROR", &e.to_status())).await;
                            return;
                        }
                        Err(RecvError::Closed) => return,
                    },
                    _ = tokio::time::sleep_until(deadline.unwrap_or_else(tokio::time::Instant::now)), if deadline.is_some() => {
                        if bookmarks {
                            let b = json!({"kind": resource.info().kind, "apiVersion": resource.api_version(),
                                           "metadata": {"resourceVersion": store.rv().to_string()}});
                            let _ = tx.send(frame("BOOKMARK", &b)).await;
                        }
                        return;
                    }
                    _ = tx.closed() => return,
                }
            }
        });
        let content_type = if self.table { "application/json;as=Table;v=v1;g=meta.k8s.io" } else { "application/json" };
        Ok(Reply::stream(content_type, rx))
    }

    /// POST to a collection.
    pub async fn create(&self, obj: Value) -> Result<Reply, ApiError> {
        let (obj, warnings) = self.admit(obj)?;
        Ok(self.create_admitted(obj, false).await?.with_warnings(&warnings))
    }

    /// Stores a new object; `applied` when server-side apply already recorded its fields.
    async fn create_admitted(&self, mut obj: Value, applied: bool) -> Result<Reply, ApiError> {
        admission::on_create(self.resource, &mut obj);
        if !applied {
            managed::record_update(None, &mut obj, &self.manager(), &Self::now());
        }
        if self.dry_run() {
            return Ok(Reply::json(201, &obj));
        }
        let created = self.state.store().create(self.resource, obj)?;
        self.state.synced().await?;
        Ok(Reply::json(201, &created))
    }

    /// PUT of an object (or its `status`).
    pub async fn update(&self, obj: Value) -> Result<Reply, ApiError> {
        let status_only = self.sub.as_deref() == Some("status");
        let (new, warnings) = if status_only { (obj, Vec::new()) } else { self.admit(obj)? };
        Ok(self.replace(new, status_only, false).await?.with_warnings(&warnings))
    }

    /// Writes `new` over the stored object; `applied` when server-side apply already recorded
    /// its fields.
    async fn replace(&self, new: Value, status_only: bool, applied: bool) -> Result<Reply, ApiError> {
        let key = self.key();
        if new.pointer("/metadata/name").and_then(Value::as_str).is_some_and(|n| n != key.name) {
            return Err(ApiError::bad_request("the name of the object does not match the name on the URL"));
        }
        let resource = self.resource;
        let dry = self.dry_run();
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
            check_update(resource, cur, &next)?;
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

    /// PATCH of an object.
    pub async fn patch(&self, content_type: &str, body: &[u8]) -> Result<Reply, ApiError> {
        let patch: Value = serde_json::from_slice(body).map_err(|e| ApiError::bad_request(e.to_string()))?;
        let key = self.key();
        let status_only = self.sub.as_deref() == Some("status");
        let media = content_type.split(';').next().unwrap_or("").trim();
        let current = self.state.store().get(&key);
        let mut next = match (media, current) {
            ("application/apply-patch+yaml", None) => return self.create_applied(patch).await,
            (_, None) => return Err(StoreError::NotFound(key).into()),
            (_, Some(cur)) => (*cur).clone(),
        };
        match media {
            "application/merge-patch+json" | "application/json" => {
                podvisor_apiserver::patch::merge_patch(&mut next, &patch)
            }
            "application/json-patch+json" => {
                podvisor_apiserver::json_patch::json_patch(&mut next, &patch).map_err(|e| match e {
                    podvisor_apiserver::json_patch::JsonPatchError::Decode(m) => ApiError::bad_request(m),
                    podvisor_apiserver::json_patch::JsonPatchError::Apply(m) => ApiError::patch_not_applicable(m),
                    podvisor_apiserver::json_patch::JsonPatchError::TooLarge(m) => ApiError::too_large_because(m),
                })?
            }
            "application/apply-patch+yaml" if !status_only => next = self.apply(&next, &patch)?,
            "application/strategic-merge-patch+json" | "application/apply-patch+yaml" => {
                podvisor_apiserver::patch::strategic_merge(&mut next, &patch).map_err(|e| ApiError::bad_request(e.0))?
            }
            other => return Err(ApiError::unsupported_media(other)),
        }
        if !next.is_object() {
            return Err(ApiError::bad_request("the patch must leave an object"));
        }
        if let Some(m) = next["metadata"].as_object_mut() {
            m.remove("resourceVersion");
        }
        if status_only {
            return self.replace(next, true, false).await;
        }
        let status = next.get("status").cloned();
        let (mut new, warnings) = self.admit(next)?;
        if let Some(s) = status {
            new["status"] = s;
        }
        let applied = media == "application/apply-patch+yaml";
        Ok(self.replace(new, false, applied).await?.with_warnings(&warnings))
    }

    async fn create_applied(&self, config: Value) -> Result<Reply, ApiError> {
        let obj = self.apply(&Value::Object(Default::default()), &config)?;
        let (obj, warnings) = self.admit(obj)?;
        if obj.pointer("/metadata/name").and_then(Value::as_str) != self.name.as_deref() {
            return Err(ApiError::bad_request("the name of the object does not match the name on the URL"));
        }
        Ok(self.create_admitted(obj, true).await?.with_warnings(&warnings))
    }

    fn delete_options(&self, body: &[u8]) -> Result<DeleteOptions, ApiError> {
        let b: Value = if body.iter().all(u8::is_ascii_whitespace) {
            json!({})
        } else {
            serde_json::from_slice(body).map_err(|e| ApiError::bad_request(e.to_string()))?
        };
        let text =
            |k: &str| b.get(k).and_then(Value::as_str).map(str::to_string).or_else(|| self.q(k).map(str::to_string));
        let grace = b
            .get("gracePeriodSeconds")
            .and_then(Value::as_i64)
            .or_else(|| self.q("gracePeriodSeconds").and_then(|g| g.parse().ok()));
        let mut propagation = match text("propagationPolicy") {
            Some(p) => Some(Propagation::parse(&p).ok_or_else(|| {
                ApiError::bad_request(format!(
                    "Unsupported value: {p:?}: supported values: \"Orphan\", \"Background\", \"Foreground\""
                ))
            })?),
            None => None,
        };
        let orphan = b
            .get("orphanDependents")
            .and_then(Value::as_bool)
            .or_else(|| self.q("orphanDependents").map(|o| o == "true"));
        if propagation.is_none() && orphan == Some(true) {
            propagation = Some(Propagation::Orphan);
        }
        let uid = b.pointer("/preconditions/uid").and_then(Value::as_str).map(str::to_string);
        Ok(DeleteOptions { grace_seconds: grace, propagation, uid })
    }

    /// DELETE of an object, or of every selected object of a collection.
    pub async fn delete(&self, body: &[u8]) -> Result<Reply, ApiError> {
        let opts = self.delete_options(body)?;
        if self.name.is_none() {
            let (labels, fields) = self.selectors()?;
            let (items, _) = self.state.store().list(self.resource, self.namespace.as_deref());
            let mut gone = Vec::new();
            for o in items.iter().filter(|o| labels.matches_object(o) && fields.matches(self.resource, o)) {
                if !self.dry_run() {
                    gone.push((*self.state.cluster.delete(&Key::of(self.resource, o), &opts)?).clone());
                }
            }
            self.state.synced().await?;
            let list = json!({"kind": format!("{}List", self.resource.info().kind), "apiVersion": self.resource.api_version(),
                              "metadata": {"resourceVersion": self.state.store().rv().to_string()}, "items": gone});
            return Ok(Reply::json(200, &list));
        }
        let key = self.key();
        if self.dry_run() {
            let cur = self.state.store().get(&key).ok_or_else(|| StoreError::NotFound(key.clone()))?;
            return Ok(Reply::json(200, &cur));
        }
        let obj = self.state.cluster.delete(&key, &opts)?;
        self.state.synced().await?;
        Ok(Reply::json(200, &obj))
    }
}
