//! Putting manifests on a cluster and taking them off again, as `podvisor run --context` does:
//! server-side apply with podvisor's own field manager (so a second run updates what the first
//! made, and another manager's fields are taken over as `kubectl apply --server-side
//! --force-conflicts` takes them), and deletion with the pods' grace or at once.

use std::collections::BTreeMap;

use futures_util::StreamExt;
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams, PropagationPolicy,
    WatchEvent, WatchParams,
};
use serde_json::Value;

use crate::ClientError;

/// The field manager podvisor applies with.
pub const FIELD_MANAGER: &str = "podvisor";

/// An object podvisor put on the cluster.
#[derive(Debug, Clone)]
pub struct Applied {
    /// Its resource (group, version, kind, plural).
    pub resource: ApiResource,
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// Its UID, as the cluster gave it.
    pub uid: String,
    /// For a workload, the labels its pods carry (`spec.selector.matchLabels`, as the cluster
    /// completed it: a Job's `controller-uid`).
    pub selector: Option<BTreeMap<String, String>>,
}

impl Applied {
    /// `job/report`, as kubectl names objects.
    pub fn display(&self) -> String {
        format!("{}/{}", self.resource.kind.to_lowercase(), self.name)
    }

    /// Whether it is a Pod.
    pub fn is_pod(&self) -> bool {
        self.resource.kind == "Pod" && self.resource.group.is_empty()
    }

    /// Whether it is a Job.
    pub fn is_job(&self) -> bool {
        self.resource.kind == "Job" && self.resource.group == "batch"
    }
}

/// The resource of an object's `apiVersion` and `kind` (the kinds podvisor reads are all
/// pluralised with an `s`).
pub fn resource_of(api_version: &str, kind: &str) -> ApiResource {
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    ApiResource {
        group: group.to_string(),
        version: version.to_string(),
        api_version: api_version.to_string(),
        kind: kind.to_string(),
        plural: format!("{}s", kind.to_lowercase()),
    }
}

fn api(client: &kube::Client, resource: &ApiResource, namespace: &str) -> Api<DynamicObject> {
    Api::namespaced_with(client.clone(), namespace, resource)
}

/// Applies `object` (the API's JSON, with `apiVersion` and `kind`) in its namespace, else
/// `namespace`; an object with only `generateName` is created instead (apply needs a name).
pub async fn apply_one(client: &kube::Client, namespace: &str, object: &Value) -> Result<Applied, ClientError> {
    let s = |p: &str| object.pointer(p).and_then(Value::as_str).unwrap_or("").to_string();
    let resource = resource_of(&s("/apiVersion"), &s("/kind"));
    let namespace = Some(s("/metadata/namespace")).filter(|n| !n.is_empty()).unwrap_or_else(|| namespace.to_string());
    let mut dynamic: DynamicObject =
        serde_json::from_value(object.clone()).map_err(|e| ClientError::Config(format!("{}: {e}", resource.kind)))?;
    dynamic.metadata.namespace = Some(namespace.clone());
    let api = api(client, &resource, &namespace);
    let name = s("/metadata/name");
    let made = if name.is_empty() {
        api.create(&PostParams { field_manager: Some(FIELD_MANAGER.into()), ..Default::default() }, &dynamic).await?
    } else {
        api.patch(&name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&dynamic)).await?
    };
    let selector =
        made.data.pointer("/spec/selector/matchLabels").and_then(Value::as_object).map(|m| {
            m.iter().filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string()))).collect::<BTreeMap<_, _>>()
        });
    Ok(Applied {
        resource,
        namespace,
        name: made.metadata.name.clone().unwrap_or(name),
        uid: made.metadata.uid.clone().unwrap_or_default(),
        selector,
    })
}

/// Whether a Pod or Job of this object's name already exists and has ended: a run of it again
/// needs it gone first (a Job that completed does not run again when applied again).
pub async fn has_ended(client: &kube::Client, namespace: &str, object: &Value) -> Result<bool, ClientError> {
    let s = |p: &str| object.pointer(p).and_then(Value::as_str).unwrap_or("").to_string();
    let resource = resource_of(&s("/apiVersion"), &s("/kind"));
    let namespace = Some(s("/metadata/namespace")).filter(|n| !n.is_empty()).unwrap_or_else(|| namespace.to_string());
    let name = s("/metadata/name");
    if name.is_empty() || !matches!((resource.group.as_str(), resource.kind.as_str()), ("", "Pod") | ("batch", "Job")) {
        return Ok(false);
    }
    let Some(found) = api(client, &resource, &namespace).get_opt(&name).await? else { return Ok(false) };
    let phase = found.data.pointer("/status/phase").and_then(Value::as_str);
    let conditions = found.data.pointer("/status/conditions").and_then(Value::as_array);
    let job_ended = conditions
        .into_iter()
        .flatten()
        .any(|c| matches!(c["type"].as_str(), Some("Complete" | "Failed")) && c["status"] == "True");
    Ok(matches!(phase, Some("Succeeded" | "Failed")) || job_ended)
}

/// Deletes the object `object` names (with its pods, in the foreground) and returns once the
/// API no longer has it.
pub async fn delete_and_wait(client: &kube::Client, namespace: &str, object: &Value) -> Result<(), ClientError> {
    let s = |p: &str| object.pointer(p).and_then(Value::as_str).unwrap_or("").to_string();
    let resource = resource_of(&s("/apiVersion"), &s("/kind"));
    let namespace = Some(s("/metadata/namespace")).filter(|n| !n.is_empty()).unwrap_or_else(|| namespace.to_string());
    let name = s("/metadata/name");
    let api = api(client, &resource, &namespace);
    let fields = format!("metadata.name={name}");
    let listed = api.list(&ListParams::default().fields(&fields)).await?;
    if listed.items.is_empty() {
        return Ok(());
    }
    let version = listed.metadata.resource_version.unwrap_or_default();
    let params = DeleteParams { propagation_policy: Some(PropagationPolicy::Foreground), ..Default::default() };
    match api.delete(&name, &params).await {
        Err(kube::Error::Api(s)) if s.code == 404 => return Ok(()),
        other => drop(other?),
    }
    let mut stream = Box::pin(api.watch(&WatchParams::default().fields(&fields).timeout(120), &version).await?);
    while let Some(e) = stream.next().await {
        if let Ok(WatchEvent::Deleted(_)) = e {
            return Ok(());
        }
    }
    Ok(())
}

/// Deletes `applied`: with the pods' own grace periods (`grace` None), or with this one (0:
/// at once). A controller's pods go with it (background propagation, as kubectl deletes).
/// An object already gone is no error.
pub async fn delete(client: &kube::Client, applied: &Applied, grace: Option<u32>) -> Result<(), ClientError> {
    let params = DeleteParams {
        grace_period_seconds: grace,
        propagation_policy: Some(PropagationPolicy::Background),
        ..Default::default()
    };
    match api(client, &applied.resource, &applied.namespace).delete(&applied.name, &params).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resources_are_read_from_api_version_and_kind() {
        let r = resource_of("batch/v1", "Job");
        assert_eq!((r.group.as_str(), r.version.as_str(), r.plural.as_str()), ("batch", "v1", "jobs"));
        let r = resource_of("v1", "PersistentVolumeClaim");
        assert_eq!((r.group.as_str(), r.plural.as_str()), ("", "persistentvolumeclaims"));
    }
}
