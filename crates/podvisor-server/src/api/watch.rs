//! Watches: the changes of a collection (or one object) from a resource version, as events,
//! bounded and ended as the API server ends them.

use std::time::Duration;

use bytes::Bytes;
use jiff::Timestamp;
use podvisor_apiserver::table::{self, Include};
use podvisor_cluster::StoreError;
use podvisor_cluster::store::{ChangeKind, Start};
use serde_json::{Value, json};
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::mpsc;

use crate::Reply;
use crate::status::ApiError;

use super::Call;

impl Call<'_> {
    pub(super) fn watch(&self) -> Result<Reply, ApiError> {
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
}
