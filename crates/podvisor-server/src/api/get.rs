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
