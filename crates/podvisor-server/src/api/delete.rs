//! DELETE of an object, with its options (grace, propagation, preconditions).

use podvisor_cluster::{DeleteOptions, Key, Propagation, StoreError};
use podvisor_objects::kinds::Resource;
use serde_json::{Value, json};

use crate::Reply;
use crate::status::ApiError;

use super::Call;

impl Call<'_> {
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
            // What a single delete may not remove (the system priority classes) stays.
            let kept = |o: &Value| {
                self.resource == Resource::PriorityClasses
                    && podvisor_objects::priority::is_system(
                        o.pointer("/metadata/name").and_then(Value::as_str).unwrap_or(""),
                    )
            };
            for o in items.iter().filter(|o| labels.matches_object(o) && fields.matches(self.resource, o) && !kept(o)) {
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
            podvisor_cluster::refuse_delete(&key)?;
            return Ok(Reply::json(200, &cur));
        }
        let obj = self.state.cluster.delete(&key, &opts)?;
        self.state.synced().await?;
        Ok(Reply::json(200, &obj))
    }
}
