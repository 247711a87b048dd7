//! The objects pods read from (ConfigMaps and Secrets), kept in memory by namespace and name.

use std::collections::HashMap;
use std::sync::RwLock;

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use podvisor_runtime::objects::Objects;

/// ConfigMaps and Secrets by `(namespace, name)`.
#[derive(Debug, Default)]
pub struct ObjectStore {
    config_maps: RwLock<HashMap<(String, String), ConfigMap>>,
    secrets: RwLock<HashMap<(String, String), Secret>>,
}

fn key(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> (String, String) {
    (meta.namespace.clone().unwrap_or_else(|| "default".into()), meta.name.clone().unwrap_or_default())
}

impl ObjectStore {
    /// Adds or replaces a ConfigMap.
    pub fn put_config_map(&self, cm: ConfigMap) {
        if let Ok(mut m) = self.config_maps.write() {
            m.insert(key(&cm.metadata), cm);
        }
    }

    /// Adds or replaces a Secret.
    pub fn put_secret(&self, s: Secret) {
        if let Ok(mut m) = self.secrets.write() {
            m.insert(key(&s.metadata), s);
        }
    }
}

impl Objects for ObjectStore {
    fn config_map(&self, namespace: &str, name: &str) -> Option<ConfigMap> {
        self.config_maps.read().ok()?.get(&(namespace.to_string(), name.to_string())).cloned()
    }

    fn secret(&self, namespace: &str, name: &str) -> Option<Secret> {
        self.secrets.read().ok()?.get(&(namespace.to_string(), name.to_string())).cloned()
    }
}
