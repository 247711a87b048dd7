//! PATCH: JSON, merge and strategic merge patches, and server-side apply.

use podvisor_cluster::StoreError;
use serde_json::Value;

use crate::Reply;
use crate::status::ApiError;

use super::Call;

impl Call<'_> {
    /// PATCH of an object.
    pub async fn patch(&self, content_type: &str, body: &[u8]) -> Result<Reply, ApiError> {
        let patch: Value = serde_json::from_slice(body).map_err(|e| ApiError::bad_request(e.to_string()))?;
        let key = self.key();
        let status_only = self.sub.as_deref() == Some("status");
        let media = content_type.split(';').next().unwrap_or("").trim();
        let scale = self.sub.as_deref() == Some("scale");
        let current = self.state.store().get(&key).map(|cur| {
            // A patch of the scale subresource applies to the Scale, not to the object.
            if scale { std::sync::Arc::new(podvisor_apiserver::scale::view(&cur)) } else { cur }
        });
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
                podvisor_apiserver::patch::strategic_merge_for(self.resource, &mut next, &patch)
                    .map_err(|e| ApiError::bad_request(e.0))?
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
        if self.sub.as_deref() == Some("ephemeralcontainers") {
            return self.update_ephemeral(next).await;
        }
        if scale {
            return self.update_scale(next).await;
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
}
