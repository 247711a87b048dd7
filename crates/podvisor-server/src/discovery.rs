//! What kubectl reads before anything else: `/version` (whose `minor` picks the kubectl the
//! dispatcher runs), aggregated and legacy discovery, and the OpenAPI v3 documents that tell
//! kubectl the server validates fields itself (`fieldValidation`) and carry the kinds' schemas.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};

use podvisor_objects::kinds::Resource;
use serde_json::{Value, json};

/// The content type kubectl requires on aggregated discovery.
pub const AGGREGATED: &str = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";

/// `/version`.
pub fn version() -> Value {
    json!({
        "major": "1", "minor": minor(), "gitVersion": format!("{}-podvisor", podvisor_objects::KUBERNETES_VERSION),
        "gitCommit": env!("CARGO_PKG_VERSION"), "gitTreeState": "clean",
        "buildDate": "2026-01-01T00:00:00Z", "goVersion": "go1.23", "compiler": "gc",
        "platform": format!("linux/{}", std::env::consts::ARCH.replace("x86_64", "amd64").replace("aarch64", "arm64")),
    })
}

/// The minor of [`podvisor_objects::KUBERNETES_VERSION`], as `/version` gives it.
fn minor() -> &'static str {
    podvisor_objects::KUBERNETES_VERSION.split('.').nth(1).unwrap_or("0")
}

const VERBS: [&str; 8] = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"];

fn group_versions(core: bool) -> Vec<(&'static str, &'static str)> {
    let mut out: Vec<(&str, &str)> = Vec::new();
    for r in Resource::ALL {
        let i = r.info();
        if (i.group.is_empty()) == core && !out.contains(&(i.group, i.version)) {
            out.push((i.group, i.version));
        }
    }
    out
}

fn resources_of(group: &str, version: &str) -> impl Iterator<Item = Resource> {
    let (group, version) = (group.to_string(), version.to_string());
    Resource::ALL.into_iter().filter(move |r| r.info().group == group && r.info().version == version)
}

/// The verbs of a resource: all, or only reading for the metrics API.
fn verbs(r: Resource) -> &'static [&'static str] {
    if r.is_review() {
        &["create"]
    } else if r.is_read_only() {
        &["get", "list"]
    } else {
        &VERBS
    }
}

fn subresources(r: Resource) -> &'static [&'static str] {
    match r {
        Resource::Pods => &["log", "status"],
        Resource::Deployments | Resource::ReplicaSets | Resource::StatefulSets => &["scale", "status"],
        Resource::DaemonSets | Resource::PersistentVolumeClaims | Resource::PersistentVolumes => &["status"],
        Resource::Jobs | Resource::CronJobs | Resource::Nodes | Resource::Namespaces | Resource::Services => {
            &["status"]
        }
        _ => &[],
    }
}

/// Aggregated discovery for `/api` (`core`) or `/apis`.
pub fn aggregated(core: bool) -> Value {
    let items: Vec<Value> = group_versions(core)
        .into_iter()
        .map(|(g, v)| {
            let resources: Vec<Value> = resources_of(g, v)
                .map(|r| {
                    let i = r.info();
                    json!({
                        "resource": i.plural, "singularResource": i.singular,
                        "responseKind": {"group": g, "version": v, "kind": i.kind},
                        "scope": if i.namespaced { "Namespaced" } else { "Cluster" },
                        "shortNames": i.short_names, "categories": i.categories, "verbs": verbs(r),
                        "subresources": subresources(r).iter().map(|s| {
                            let kind = if *s == "scale" {
                                json!({"group": "autoscaling", "version": "v1", "kind": "Scale"})
                            } else {
                                json!({"group": g, "version": v, "kind": i.kind})
                            };
                            json!({"subresource": s, "responseKind": kind, "verbs": ["get", "patch", "update"]})
                        }).collect::<Vec<_>>(),
                    })
                })
                .collect();
            json!({"metadata": {"name": g}, "versions": [{"version": v, "resources": resources, "freshness": "Current"}]})
        })
        .collect();
    json!({"kind": "APIGroupDiscoveryList", "apiVersion": "apidiscovery.k8s.io/v2", "metadata": {}, "items": items})
}

/// Legacy `/api`.
pub fn api_versions(server: &str) -> Value {
    json!({"kind": "APIVersions", "versions": ["v1"],
           "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server}]})
}

/// Legacy `/apis`.
pub fn api_groups() -> Value {
    let groups: Vec<Value> = group_versions(false)
        .into_iter()
        .map(|(g, v)| {
            let gv = json!({"groupVersion": format!("{g}/{v}"), "version": v});
            json!({"name": g, "versions": [gv.clone()], "preferredVersion": gv})
        })
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

/// Legacy `/api/v1` or `/apis/<group>/<version>`; `None` for a group-version not served.
pub fn resource_list(group: &str, version: &str) -> Option<Value> {
    let mut resources = Vec::new();
    for r in resources_of(group, version) {
        let i = r.info();
        resources.push(json!({
            "name": i.plural, "singularName": i.singular, "namespaced": i.namespaced, "kind": i.kind,
            "verbs": verbs(r), "shortNames": i.short_names, "categories": i.categories,
        }));
        for s in subresources(r) {
            let mut entry = json!({"name": format!("{}/{s}", i.plural), "singularName": "", "namespaced": i.namespaced,
                                  "kind": i.kind, "verbs": ["get", "patch", "update"]});
            if *s == "scale" {
                entry["group"] = json!("autoscaling");
                entry["version"] = json!("v1");
                entry["kind"] = json!("Scale");
            }
            resources.push(entry);
        }
    }
    if resources.is_empty() {
        return None;
    }
    let gv = if group.is_empty() { version.to_string() } else { format!("{group}/{version}") };
    Some(json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources}))
}

fn gv_path(group: &str, version: &str) -> String {
    if group.is_empty() { format!("api/{version}") } else { format!("apis/{group}/{version}") }
}

/// `/openapi/v3`: one document per group-version.
pub fn openapi_root() -> Value {
    let mut paths = serde_json::Map::new();
    for (g, v) in group_versions(true).into_iter().chain(group_versions(false)) {
        let p = gv_path(g, v);
        paths.insert(p.clone(), json!({"serverRelativeURL": format!("/openapi/v3/{p}")}));
    }
    json!({"paths": paths})
}

/// `/openapi/v3/<gv path>`: a PATCH operation per kind that advertises `fieldValidation`, which
/// is what makes kubectl leave validation to the server, and the kinds' schemas, which
/// `kubectl explain` reads and `kubectl apply` computes its patches from. Built once per
/// group-version.
pub fn openapi_doc(path: &str) -> Option<Arc<Vec<u8>>> {
    static DOCS: LazyLock<Mutex<HashMap<String, Arc<Vec<u8>>>>> = LazyLock::new(Default::default);
    let mut docs = DOCS.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(doc) = docs.get(path) {
        return Some(doc.clone());
    }
    let doc = Arc::new(serde_json::to_vec(&build_openapi_doc(path)?).ok()?);
    docs.insert(path.to_string(), doc.clone());
    Some(doc)
}

fn build_openapi_doc(path: &str) -> Option<Value> {
    let (g, v) = group_versions(true).into_iter().chain(group_versions(false)).find(|(g, v)| gv_path(g, v) == path)?;
    let mut paths = serde_json::Map::new();
    for r in resources_of(g, v) {
        let i = r.info();
        let p = if i.namespaced {
            format!("/{path}/namespaces/{{namespace}}/{}/{{name}}", i.plural)
        } else {
            format!("/{path}/{}/{{name}}", i.plural)
        };
        paths.insert(
            p,
            json!({"patch": {
                "x-kubernetes-group-version-kind": {"group": g, "version": v, "kind": i.kind},
                "parameters": [{"name": "fieldValidation", "in": "query"}, {"name": "fieldManager", "in": "query"},
                               {"name": "dryRun", "in": "query"}, {"name": "force", "in": "query"}]
            }}),
        );
    }
    let schemas = podvisor_objects::openapi::schemas(&resources_of(g, v).collect::<Vec<_>>());
    Some(json!({
        "openapi": "3.0.0", "info": {"title": "podvisor", "version": podvisor_objects::KUBERNETES_VERSION}, "paths": paths,
        "components": {"schemas": schemas},
    }))
}

/// The content type kubectl asks `/openapi/v2` for: gnostic's OpenAPI v2 protobuf document.
pub const OPENAPI_V2_TYPE: &str = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf";

/// `/openapi/v2`: a valid document with no definitions. kubectl validates a kind that the
/// OpenAPI v3 documents do not name (a `kind: List`, a kind podvisor does not serve) against
/// it; a kind it does not find there is not validated client-side, so `apply -f dir/` goes on
/// to kubectl's own `no matches for kind` for an unserved kind, and applies a List's items.
pub fn openapi_v2() -> Vec<u8> {
    // A length-delimited field of a protobuf message.
    fn field(number: u8, bytes: &[u8], out: &mut Vec<u8>) {
        out.push(number << 3 | 2);
        let mut n = bytes.len();
        while n >= 0x80 {
            out.push((n as u8 & 0x7f) | 0x80);
            n >>= 7;
        }
        out.push(n as u8);
        out.extend_from_slice(bytes);
    }
    let mut info = Vec::new();
    field(1, b"podvisor", &mut info);
    field(2, podvisor_objects::KUBERNETES_VERSION.as_bytes(), &mut info);
    let mut doc = Vec::new();
    field(1, b"2.0", &mut doc); // swagger
    field(2, &info, &mut doc); // info
    field(8, &[], &mut doc); // paths
    field(9, &[], &mut doc); // definitions
    doc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_openapi_v2_document_is_the_protobuf_kubectl_reads() {
        let doc = openapi_v2();
        // swagger "2.0", info {title, version}, empty paths and definitions.
        assert_eq!(&doc[..5], b"\x0a\x032.0");
        assert_eq!(&doc[doc.len() - 4..], b"\x42\x00\x4a\x00");
        assert_eq!(doc[5..7], [0x12, 19]);
    }

    #[test]
    fn discovery_names_every_resource_once() {
        let core = aggregated(true);
        let items = core["items"].as_array().unwrap();
        assert_eq!(items.len(), 1);
        assert_eq!(items[0]["metadata"]["name"], "");
        let pods = items[0]["versions"][0]["resources"].as_array().unwrap().iter().find(|r| r["resource"] == "pods");
        assert_eq!(pods.unwrap()["shortNames"], json!(["po"]));
        let groups = aggregated(false);
        let names: Vec<&str> =
            groups["items"].as_array().unwrap().iter().map(|i| i["metadata"]["name"].as_str().unwrap()).collect();
        assert_eq!(
            names,
            [
                "batch",
                "apps",
                "discovery.k8s.io",
                "coordination.k8s.io",
                "metrics.k8s.io",
                "rbac.authorization.k8s.io",
                "storage.k8s.io",
                "scheduling.k8s.io",
                "authorization.k8s.io"
            ]
        );
        assert!(build_openapi_doc("apis/batch/v1").unwrap()["paths"]["/apis/batch/v1/namespaces/{namespace}/jobs/{name}"]["patch"].is_object());
        assert!(resource_list("nope", "v1").is_none());
    }
}
