//! The objects a pod's containers may read from: ConfigMaps and Secrets (for env, envFrom and
//! volumes), Services (for the service environment variables), service-account tokens, and the
//! pod itself (for the downward API).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret, Service};

/// Where ConfigMaps, Secrets, Services and service-account tokens are looked up.
pub trait Objects: Send + Sync {
    /// The ConfigMap `name` in `namespace`.
    fn config_map(&self, namespace: &str, name: &str) -> Option<ConfigMap>;
    /// The Secret `name` in `namespace`.
    fn secret(&self, namespace: &str, name: &str) -> Option<Secret>;
    /// The Services of `namespace` (for the service environment variables). None by default.
    fn services(&self, namespace: &str) -> Vec<Service> {
        let _ = namespace;
        Vec::new()
    }
    /// The directory on this machine that holds the volume bound to claim `name` of
    /// `namespace`. Refused where there are no claims.
    fn claim_path(&self, namespace: &str, name: &str) -> Result<std::path::PathBuf, String> {
        let _ = namespace;
        Err(format!("persistentvolumeclaim {name:?} not found"))
    }
    /// A token for `pod`'s service account, for `audience`, lasting `expiration_seconds`: what
    /// a `serviceAccountToken` projection holds. Refused where no API issues tokens.
    fn service_account_token(
        &self,
        pod: &Pod,
        audience: Option<&str>,
        expiration_seconds: i64,
    ) -> Result<String, String> {
        let _ = (pod, audience, expiration_seconds);
        Err("no API issues service-account tokens here".into())
    }
}

/// A ConfigMap's keys and values (`data` and `binaryData`).
pub fn config_map_data(cm: &ConfigMap) -> BTreeMap<String, Vec<u8>> {
    let mut out: BTreeMap<String, Vec<u8>> =
        cm.data.iter().flatten().map(|(k, v)| (k.clone(), v.clone().into_bytes())).collect();
    out.extend(cm.binary_data.iter().flatten().map(|(k, v)| (k.clone(), v.0.clone())));
    out
}

/// A Secret's keys and values (`data`, with `stringData` merged over it as the API server does).
pub fn secret_data(s: &Secret) -> BTreeMap<String, Vec<u8>> {
    let mut out: BTreeMap<String, Vec<u8>> = s.data.iter().flatten().map(|(k, v)| (k.clone(), v.0.clone())).collect();
    out.extend(s.string_data.iter().flatten().map(|(k, v)| (k.clone(), v.clone().into_bytes())));
    out
}

/// The two kinds of object that hold data for containers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A ConfigMap.
    ConfigMap,
    /// A Secret.
    Secret,
}

impl Kind {
    /// The kind as the kubelet names it in messages (`ConfigMap`, `Secret`).
    pub fn title(self) -> &'static str {
        match self {
            Kind::ConfigMap => "ConfigMap",
            Kind::Secret => "Secret",
        }
    }
}

/// A ConfigMap or Secret a pod needs and that does not exist, as the kubelet words it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{} {name:?} not found", kind.title().to_lowercase())]
pub struct NotFound {
    /// Which kind of object.
    pub kind: Kind,
    /// Its name.
    pub name: String,
}

/// The data of ConfigMap or Secret `name`: `Ok(None)` when it is missing and `optional`, an
/// error worded as the kubelet's (`configmap "x" not found`) when it is missing otherwise.
pub fn data(
    objects: &dyn Objects,
    kind: Kind,
    namespace: &str,
    name: &str,
    optional: Option<bool>,
) -> Result<Option<BTreeMap<String, Vec<u8>>>, NotFound> {
    let found = match kind {
        Kind::ConfigMap => objects.config_map(namespace, name).map(|c| config_map_data(&c)),
        Kind::Secret => objects.secret(namespace, name).map(|s| secret_data(&s)),
    };
    match found {
        Some(d) => Ok(Some(d)),
        None if optional == Some(true) => Ok(None),
        None => Err(NotFound { kind, name: name.to_string() }),
    }
}

/// The value of a downward API `fieldRef` path of `pod`, as the kubelet renders it.
pub fn field_value(pod: &Pod, path: &str) -> Option<String> {
    let meta = &pod.metadata;
    let map_line = |m: &Option<BTreeMap<String, String>>| {
        m.iter().flatten().map(|(k, v)| format!("{k}={v:?}")).collect::<Vec<_>>().join("\n")
    };
    let subscript = |prefix: &str, m: &Option<BTreeMap<String, String>>| {
        path.strip_prefix(prefix)
            .and_then(|r| r.strip_suffix("']"))
            .map(|k| m.as_ref().and_then(|m| m.get(k)).cloned().unwrap_or_default())
    };
    Some(match path {
        "metadata.name" => meta.name.clone().unwrap_or_default(),
        "metadata.namespace" => meta.namespace.clone().unwrap_or_else(|| "default".into()),
        "metadata.uid" => meta.uid.clone().unwrap_or_default(),
        "metadata.labels" => map_line(&meta.labels),
        "metadata.annotations" => map_line(&meta.annotations),
        "spec.nodeName" => pod.spec.as_ref().and_then(|s| s.node_name.clone()).unwrap_or_default(),
        "spec.serviceAccountName" => {
            pod.spec.as_ref().and_then(|s| s.service_account_name.clone()).unwrap_or_else(|| "default".into())
        }
        "status.hostIP" | "status.hostIPs" => {
            pod.status.as_ref().and_then(|s| s.host_ip.clone()).unwrap_or_else(|| "127.0.0.1".into())
        }
        "status.podIP" | "status.podIPs" => {
            pod.status.as_ref().and_then(|s| s.pod_ip.clone()).unwrap_or_else(|| "127.0.0.1".into())
        }
        _ => subscript("metadata.labels['", &meta.labels)
            .or_else(|| subscript("metadata.annotations['", &meta.annotations))?,
    })
}
