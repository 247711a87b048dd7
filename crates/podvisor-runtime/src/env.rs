//! A container's environment as the kubelet builds it: `envFrom` sources first, then `env` in
//! order, each value's `$(VAR)` references expanded against the variables before it, and
//! `valueFrom` read from ConfigMaps, Secrets, the pod (downward API) and the container's
//! resources.

use k8s_openapi::api::core::v1::{Container, Pod, Service};

use crate::objects::{Kind, NotFound, Objects, data, field_value};

/// Why a container's environment could not be built: the kubelet's
/// `CreateContainerConfigError`, with its message wording.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvError {
    /// A ConfigMap or Secret the environment reads is missing.
    #[error(transparent)]
    Missing(#[from] NotFound),
    /// A key of one is missing.
    #[error("couldn't find key {key} in {kind} {namespace}/{name}")]
    MissingKey {
        /// The key.
        key: String,
        /// `ConfigMap` or `Secret`.
        kind: &'static str,
        /// The object's namespace.
        namespace: String,
        /// The object's name.
        name: String,
    },
    /// A `fieldRef` podvisor does not resolve.
    #[error("unsupported fieldRef {0:?}")]
    UnsupportedFieldRef(String),
    /// A `valueFrom` without a source.
    #[error("env {0:?}: valueFrom has no source")]
    NoSource(String),
    /// A `resourceFieldRef` naming a container the pod does not have.
    #[error("resourceFieldRef: no container {0:?}")]
    NoContainer(String),
    /// A `resourceFieldRef` resource that is not `limits.*` or `requests.*`.
    #[error("unsupported resourceFieldRef {0:?}")]
    UnsupportedResource(String),
    /// A quantity that does not parse.
    #[error("bad quantity {0:?}")]
    BadQuantity(String),
    /// A divisor that does not parse.
    #[error("bad divisor {0:?}")]
    BadDivisor(String),
}

/// Expands `$(VAR)` references as Kubernetes does (`$$` escapes); unknown ones stay as written.
pub fn expand(s: &str, env: &[(String, String)]) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(stripped) = after.strip_prefix('$') {
            out.push('$');
            rest = stripped;
        } else if let Some((name, tail)) =
            after.strip_prefix('(').and_then(|a| a.find(')').map(|j| (&a[..j], &a[j + 1..])))
        {
            match env.iter().rev().find(|(k, _)| k == name) {
                Some((_, v)) => out.push_str(v),
                None => {
                    out.push_str("$(");
                    out.push_str(name);
                    out.push(')');
                }
            }
            rest = tail;
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

fn set(env: &mut Vec<(String, String)>, k: String, v: String) {
    env.retain(|(name, _)| *name != k);
    env.push((k, v));
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The service environment variables the kubelet gives a container: for each Service of the
/// pod's namespace with a cluster IP (unless `enableServiceLinks` is false) and for
/// `default/kubernetes` always, `<NAME>_SERVICE_HOST`, `<NAME>_SERVICE_PORT[_<PORT NAME>]` and
/// the Docker-link `<NAME>_PORT*` variables.
pub fn service_links(pod: &Pod, objects: &dyn Objects) -> Vec<(String, String)> {
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    let links = pod.spec.as_ref().and_then(|s| s.enable_service_links).unwrap_or(true);
    let mut services: Vec<Service> = if links { objects.services(ns) } else { Vec::new() };
    let named = |s: &Service, n: &str| s.metadata.name.as_deref() == Some(n);
    if !services.iter().any(|s| named(s, "kubernetes")) {
        services.extend(objects.services("default").into_iter().filter(|s| named(s, "kubernetes")));
    }
    services.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    let upper = |s: &str| s.to_uppercase().replace('-', "_");
    let mut env = Vec::new();
    for svc in &services {
        let Some(spec) = &svc.spec else { continue };
        let Some(ip) = spec.cluster_ip.as_deref().filter(|ip| !ip.is_empty() && *ip != "None") else { continue };
        let name = upper(svc.metadata.name.as_deref().unwrap_or(""));
        let ports = spec.ports.as_deref().unwrap_or_default();
        env.push((format!("{name}_SERVICE_HOST"), ip.to_string()));
        if let Some(first) = ports.first() {
            env.push((format!("{name}_SERVICE_PORT"), first.port.to_string()));
        }
        for p in ports {
            if let Some(n) = p.name.as_deref().filter(|n| !n.is_empty()) {
                env.push((format!("{name}_SERVICE_PORT_{}", upper(n)), p.port.to_string()));
            }
        }
        let proto = |p: &k8s_openapi::api::core::v1::ServicePort| p.protocol.as_deref().unwrap_or("TCP").to_string();
        if let Some(first) = ports.first() {
            env.push((format!("{name}_PORT"), format!("{}://{ip}:{}", proto(first).to_lowercase(), first.port)));
        }
        for p in ports {
            let (lower, upper_proto) = (proto(p).to_lowercase(), proto(p).to_uppercase());
            let prefix = format!("{name}_PORT_{}_{upper_proto}", p.port);
            env.push((prefix.clone(), format!("{lower}://{ip}:{}", p.port)));
            env.push((format!("{prefix}_PROTO"), lower));
            env.push((format!("{prefix}_PORT"), p.port.to_string()));
            env.push((format!("{prefix}_ADDR"), ip.to_string()));
        }
    }
    env
}

/// Builds the environment of container `c` of `pod`: the service variables first (a
/// container's own variables of the same name win, and may refer to them), then `envFrom`
/// and `env`.
pub fn resolve(pod: &Pod, c: &Container, objects: &dyn Objects) -> Result<Vec<(String, String)>, EnvError> {
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    let mut env: Vec<(String, String)> = service_links(pod, objects);
    for from in c.env_from.iter().flatten() {
        let prefix = from.prefix.clone().unwrap_or_default();
        let (kind, name, optional) = match (&from.config_map_ref, &from.secret_ref) {
            (Some(r), _) => (Kind::ConfigMap, &r.name, r.optional),
            (_, Some(r)) => (Kind::Secret, &r.name, r.optional),
            _ => continue,
        };
        let Some(data) = data(objects, kind, ns, name, optional)? else { continue };
        for (k, v) in data {
            set(&mut env, format!("{prefix}{k}"), text(&v));
        }
    }
    for e in c.env.iter().flatten() {
        let value = match &e.value_from {
            None => expand(e.value.as_deref().unwrap_or(""), &env),
            Some(from) => {
                let key_ref = match (&from.config_map_key_ref, &from.secret_key_ref) {
                    (Some(r), _) => Some((Kind::ConfigMap, &r.name, &r.key, r.optional)),
                    (_, Some(r)) => Some((Kind::Secret, &r.name, &r.key, r.optional)),
                    _ => None,
                };
                if let Some(f) = &from.field_ref {
                    field_value(pod, &f.field_path)
                        .ok_or_else(|| EnvError::UnsupportedFieldRef(f.field_path.clone()))?
                } else if let Some((kind, name, key, optional)) = key_ref {
                    let Some(data) = data(objects, kind, ns, name, optional)? else { continue };
                    match data.get(key) {
                        Some(v) => text(v),
                        None if optional == Some(true) => continue,
                        None => {
                            return Err(EnvError::MissingKey {
                                key: key.clone(),
                                kind: kind.title(),
                                namespace: ns.to_string(),
                                name: name.clone(),
                            });
                        }
                    }
                } else if let Some(r) = &from.resource_field_ref {
                    resource_value(c, pod, r)?
                } else {
                    return Err(EnvError::NoSource(e.name.clone()));
                }
            }
        };
        set(&mut env, e.name.clone(), value);
    }
    Ok(env)
}

fn resource_value(
    c: &Container,
    pod: &Pod,
    r: &k8s_openapi::api::core::v1::ResourceFieldSelector,
) -> Result<String, EnvError> {
    use podvisor_objects::resources::parse_milli;
    let target = match &r.container_name {
        Some(name) if !name.is_empty() => pod
            .spec
            .iter()
            .flat_map(|s| s.init_containers.iter().flatten().chain(&s.containers))
            .find(|x| &x.name == name)
            .ok_or_else(|| EnvError::NoContainer(name.clone()))?,
        _ => c,
    };
    let (kind, resource) =
        r.resource.split_once('.').ok_or_else(|| EnvError::UnsupportedResource(r.resource.clone()))?;
    let res = target.resources.as_ref();
    let map =
        if kind == "limits" { res.and_then(|x| x.limits.as_ref()) } else { res.and_then(|x| x.requests.as_ref()) };
    let milli = match map.and_then(|m| m.get(resource)) {
        Some(q) => parse_milli(&q.0).map_err(|_| EnvError::BadQuantity(q.0.clone()))?,
        // Without a limit the kubelet reports the node's allocatable amount.
        None if resource == "cpu" => {
            std::thread::available_parallelism().map(|n| n.get() as i128 * 1000).unwrap_or(1000)
        }
        None if resource == "memory" => host_memory() * 1000,
        None => 0,
    };
    let divisor = match &r.divisor {
        Some(d) => parse_milli(&d.0).map_err(|_| EnvError::BadDivisor(d.0.clone()))?,
        None => 1000,
    };
    let divisor = if divisor == 0 { 1000 } else { divisor };
    // The kubelet rounds up (away from zero for a remainder).
    let (q, r) = (milli / divisor, milli % divisor);
    Ok(if r != 0 && (r > 0) == (divisor > 0) { q.saturating_add(1) } else { q }.to_string())
}

fn host_memory() -> i128 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<i128>().ok())
        })
        .map(|kib| kib * 1024)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{ConfigMap, Secret};
    use std::collections::BTreeMap;

    struct Fixed;
    impl Objects for Fixed {
        fn config_map(&self, _: &str, name: &str) -> Option<ConfigMap> {
            (name == "cfg").then(|| ConfigMap {
                data: Some(BTreeMap::from([("MODE".into(), "fast".into()), ("LEVEL".into(), "3".into())])),
                ..Default::default()
            })
        }
        fn secret(&self, _: &str, name: &str) -> Option<Secret> {
            (name == "s").then(|| Secret {
                string_data: Some(BTreeMap::from([("TOKEN".into(), "t0p".into())])),
                ..Default::default()
            })
        }
    }

    fn container(yaml: serde_json::Value) -> Container {
        serde_json::from_value(yaml).unwrap()
    }

    fn pod() -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "namespace": "ns1", "uid": "u-1", "labels": {"app": "x"}},
            "spec": {"containers": []}
        }))
        .unwrap()
    }

    #[test]
    fn env_from_then_env_with_expansion_and_value_from() {
        let c = container(serde_json::json!({
            "name": "c",
            "envFrom": [{"configMapRef": {"name": "cfg"}, "prefix": "CFG_"}],
            "env": [
                {"name": "A", "value": "$(CFG_MODE)-$(NOPE)-$$(A)"},
                {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                {"name": "APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
                {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "s", "key": "TOKEN"}}},
                {"name": "OPT", "valueFrom": {"configMapKeyRef": {"name": "gone", "key": "k", "optional": true}}},
                {"name": "MEM", "valueFrom": {"resourceFieldRef": {"resource": "limits.memory", "divisor": "1Mi"}}}
            ],
            "resources": {"limits": {"memory": "64Mi"}}
        }));
        let env = resolve(&pod(), &c, &Fixed).unwrap();
        let get = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("CFG_MODE"), Some("fast"));
        assert_eq!(get("A"), Some("fast-$(NOPE)-$(A)"));
        assert_eq!(get("POD"), Some("p"));
        assert_eq!(get("APP"), Some("x"));
        assert_eq!(get("TOKEN"), Some("t0p"));
        assert_eq!(get("OPT"), None);
        assert_eq!(get("MEM"), Some("64"));
    }

    #[test]
    fn a_missing_reference_is_a_config_error_worded_as_the_kubelet_words_it() {
        let c = container(serde_json::json!({"name": "c",
            "env": [{"name": "X", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "NOPE"}}}]}));
        assert_eq!(resolve(&pod(), &c, &Fixed).unwrap_err().to_string(), "couldn't find key NOPE in ConfigMap ns1/cfg");
        let c = container(serde_json::json!({"name": "c", "envFrom": [{"secretRef": {"name": "missing"}}]}));
        assert_eq!(resolve(&pod(), &c, &Fixed).unwrap_err().to_string(), "secret \"missing\" not found");
    }
}
