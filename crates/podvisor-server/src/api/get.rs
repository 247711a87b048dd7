//! GET of an object or a collection (a collection with `watch=true` is a watch).

use jiff::Timestamp;
use podvisor_apiserver::table::{self, Include};
use podvisor_cluster::{Obj, StoreError};
use serde_json::{Value, json};

use crate::Reply;
use crate::status::ApiError;

use super::Call;

impl Call<'_> {
    /// GET of an object or a collection.
    pub async fn get(&self) -> Result<Reply, ApiError> {
        if self.name.is_some() {
            let obj = self.state.store().get(&self.key()).ok_or_else(|| StoreError::NotFound(self.key()))?;
            if self.sub.as_deref() == Some("scale") {
                return Ok(Reply::json(200, &podvisor_apiserver::scale::view(&obj)));
            }
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
}

/// GET of the metrics API (`metrics.k8s.io`): pods' and the node's resource use, measured now.
pub async fn metrics(
    state: &crate::State,
    resource: podvisor_objects::kinds::Resource,
    namespace: Option<&str>,
    name: Option<&str>,
    table: bool,
) -> Result<Reply, ApiError> {
    use podvisor_objects::kinds::Resource;
    let items = match resource {
        Resource::NodeMetrics => {
            let node = state.cluster.node_name();
            if name.is_some_and(|n| n != node) {
                return Err(StoreError::NotFound(podvisor_cluster::Key::new(resource, "", name.unwrap_or(""))).into());
            }
            podvisor_cluster::metrics::node(node).await.into_iter().collect()
        }
        _ => podvisor_cluster::metrics::pods(state.store(), namespace, name).await,
    };
    if let Some(n) = name {
        let key = podvisor_cluster::Key::new(resource, namespace.unwrap_or(""), n);
        return items.into_iter().next().map(|o| Reply::json(200, &o)).ok_or_else(|| StoreError::NotFound(key).into());
    }
    if table {
        let refs: Vec<&Value> = items.iter().collect();
        return Ok(Reply::json(200, &table::table(resource, &refs, 0, Timestamp::now(), Include::Metadata)));
    }
    let info = resource.info();
    Ok(Reply::json(
        200,
        &json!({"kind": format!("{}List", info.kind), "apiVersion": resource.api_version(),
        "metadata": {}, "items": items}),
    ))
}
