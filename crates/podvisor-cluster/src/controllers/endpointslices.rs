//! The EndpointSlice controller, with the older Endpoints beside it: a Service with a selector
//! gets one `discovery.k8s.io/v1` EndpointSlice (up to 100 endpoints each, more in further
//! slices) listing the pods it selects that have an address, each `ready` as its pod's `Ready`
//! condition says (so a pod whose sidecar fails readiness drops out), `serving` the same for a
//! pod being deleted, which is also `terminating`; and one `v1` Endpoints with the same
//! addresses split into ready and not ready. Named target ports are resolved per pod.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Pod, Service};
use podvisor_objects::kinds::Resource;
use serde_json::{Value, json};

use super::{Action, Ctx, Error, decode, key_of, owner_ref};
use crate::proxy::SERVICE_NAME_LABEL;
use crate::store::{Key, StoreError};

/// Who manages the slices, as the label of the upstream controller says.
const MANAGED_BY: &str = "endpointslice-controller.k8s.io";

/// The most endpoints in one slice (`--max-endpoints-per-slice`).
const MAX_PER_SLICE: usize = 100;

/// One endpoint: a pod's address and what its slice and Endpoints say of it.
#[derive(Debug, Clone, PartialEq)]
struct Endpoint {
    ip: String,
    ready: bool,
    serving: bool,
    terminating: bool,
    node: Option<String>,
    /// The pod's `hostname`, when its `subdomain` names the Service (DNS names it so).
    hostname: Option<String>,
    pod: String,
    uid: String,
}

/// A Service port resolved for the pods: its name, protocol, and the pod port.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct SlicePort {
    name: String,
    protocol: String,
    port: i32,
}

fn is_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// The pod port a Service port's targetPort means for `pod`, if it has it.
fn target(port: &k8s_openapi::api::core::v1::ServicePort, pod: &Pod) -> Option<i32> {
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
    match &port.target_port {
        None => Some(port.port),
        Some(IntOrString::Int(n)) => Some(*n),
        Some(IntOrString::String(name)) => pod
            .spec
            .as_ref()?
            .containers
            .iter()
            .flat_map(|c| c.ports.iter().flatten())
            .find(|p| p.name.as_deref() == Some(name.as_str()))
            .map(|p| p.container_port),
    }
}

/// The endpoints of `svc` among `pods`, grouped by the ports they resolve to.
fn endpoints(svc: &Service, pods: &[Pod]) -> BTreeMap<Vec<SlicePort>, Vec<Endpoint>> {
    let spec = svc.spec.clone().unwrap_or_default();
    let publish_not_ready = spec.publish_not_ready_addresses == Some(true);
    let mut groups: BTreeMap<Vec<SlicePort>, Vec<Endpoint>> = BTreeMap::new();
    for pod in pods {
        let status = pod.status.clone().unwrap_or_default();
        let Some(ip) = status.pod_ip.clone().filter(|ip| !ip.is_empty()) else { continue };
        if matches!(status.phase.as_deref(), Some("Succeeded" | "Failed")) {
            continue;
        }
        let ports: Vec<SlicePort> = spec
            .ports
            .iter()
            .flatten()
            .filter_map(|p| {
                Some(SlicePort {
                    name: p.name.clone().unwrap_or_default(),
                    protocol: p.protocol.clone().unwrap_or_else(|| "TCP".into()),
                    port: target(p, pod)?,
                })
            })
            .collect();
        let terminating = pod.metadata.deletion_timestamp.is_some();
        let pod_ready = is_ready(pod);
        groups.entry(ports).or_default().push(Endpoint {
            ip,
            // publishNotReadyAddresses lists every pod ready, terminating ones too.
            ready: publish_not_ready || (pod_ready && !terminating),
            serving: pod_ready,
            terminating,
            node: pod.spec.as_ref().and_then(|s| s.node_name.clone()),
            hostname: pod
                .spec
                .as_ref()
                .filter(|s| s.subdomain.is_some() && s.subdomain == svc.metadata.name)
                .and_then(|s| s.hostname.clone()),
            pod: pod.metadata.name.clone().unwrap_or_default(),
            uid: pod.metadata.uid.clone().unwrap_or_default(),
        });
    }
    groups
}

fn target_ref(e: &Endpoint, namespace: &str) -> Value {
    json!({"kind": "Pod", "namespace": namespace, "name": e.pod, "uid": e.uid})
}

/// The `endpoints` and `ports` of one slice.
fn slice_body(ports: &[SlicePort], eps: &[Endpoint], namespace: &str) -> (Value, Value) {
    let endpoints: Vec<Value> = eps
        .iter()
        .map(|e| {
            let mut v = json!({"addresses": [e.ip],
                "conditions": {"ready": e.ready, "serving": e.serving, "terminating": e.terminating},
                "targetRef": target_ref(e, namespace)});
            if let Some(n) = &e.node {
                v["nodeName"] = json!(n);
            }
            if let Some(h) = &e.hostname {
                v["hostname"] = json!(h);
            }
            v
        })
        .collect();
    let ports: Vec<Value> =
        ports.iter().map(|p| json!({"name": p.name, "protocol": p.protocol, "port": p.port})).collect();
    (json!(endpoints), json!(ports))
}

/// The selected pods of `svc`, as the selector (a plain label map) picks them.
fn selected(ctx: &Ctx, svc: &Service, namespace: &str) -> Result<Option<Vec<Pod>>, Error> {
    // An empty selector is no selector, as upstream: the endpoints are the user's.
    let Some(selector) = svc.spec.as_ref().and_then(|s| s.selector.clone()).filter(|s| !s.is_empty()) else {
        return Ok(None);
    };
    let mut pods = Vec::new();
    for o in ctx.store.list(Resource::Pods, Some(namespace)).0 {
        let labels = o.pointer("/metadata/labels").and_then(Value::as_object);
        let matches = selector.iter().all(|(k, v)| labels.and_then(|l| l.get(k)).and_then(Value::as_str) == Some(v));
        if matches {
            pods.push(decode::<Pod>(&ctx.store, Resource::Pods, &o)?);
        }
    }
    Ok(Some(pods))
}

/// Keeps the EndpointSlices and the Endpoints of `svc` as its pods say.
pub(crate) fn reconcile(ctx: &Ctx, svc: &Service) -> Result<Action, Error> {
    let namespace = svc.metadata.namespace.clone().unwrap_or_default();
    let name = svc.metadata.name.clone().unwrap_or_default();
    let uid = svc.metadata.uid.clone().unwrap_or_default();
    let external = svc.spec.as_ref().and_then(|s| s.type_.as_deref()) == Some("ExternalName");
    // A Service without a selector has its endpoints managed by the user: nothing is touched.
    let Some(pods) = selected(ctx, svc, &namespace)?.filter(|_| !external) else { return Ok(Action::await_change()) };
    let groups = endpoints(svc, &pods);
    let mut labels = svc.metadata.labels.clone().unwrap_or_default();
    labels.insert(SERVICE_NAME_LABEL.into(), name.clone());
    labels.insert("endpointslice.kubernetes.io/managed-by".into(), MANAGED_BY.into());
    if svc.spec.as_ref().and_then(|s| s.cluster_ip.as_deref()) == Some("None") {
        labels.insert("service.kubernetes.io/headless".into(), String::new());
    }
    let owner = serde_json::to_value(owner_ref(Resource::Services, &svc.metadata)).unwrap_or(Value::Null);
    // The wanted slices: per port set, chunks of at most MAX_PER_SLICE endpoints; a Service
    // with no endpoint still has one empty slice, with its ports unresolved.
    let mut wanted: Vec<(Value, Value)> = Vec::new();
    for (ports, eps) in &groups {
        for chunk in eps.chunks(MAX_PER_SLICE) {
            wanted.push(slice_body(ports, chunk, &namespace));
        }
    }
    if wanted.is_empty() {
        wanted.push((json!([]), json!([])));
    }
    let mine: Vec<Key> = ctx
        .store
        .list(Resource::EndpointSlices, Some(&namespace))
        .0
        .iter()
        .filter(|o| {
            o.pointer("/metadata/ownerReferences")
                .and_then(Value::as_array)
                .is_some_and(|r| r.iter().any(|x| x["uid"] == uid.as_str() && x["controller"] == json!(true)))
        })
        .map(|o| Key::of(Resource::EndpointSlices, o))
        .collect();
    for (i, (eps, ports)) in wanted.iter().enumerate() {
        match mine.get(i) {
            Some(key) => {
                let updated = ctx.store.update::<StoreError>(key, |v| {
                    v["metadata"]["labels"] = json!(labels);
                    v["addressType"] = json!("IPv4");
                    v["endpoints"] = eps.clone();
                    v["ports"] = ports.clone();
                    Ok(())
                });
                updated.map_err(|e| Error::store("updating", key, e))?;
            }
            None => {
                let slice = json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                    "metadata": {"name": format!("{name}-{}", podvisor_objects::uid::suffix(5)),
                        "generateName": format!("{name}-"), "namespace": namespace,
                        "labels": labels, "ownerReferences": [owner]},
                    "addressType": "IPv4", "endpoints": eps, "ports": ports});
                let key = Key::of(Resource::EndpointSlices, &slice);
                let mut slice = slice;
                podvisor_apiserver::admission::on_create(Resource::EndpointSlices, &mut slice);
                ctx.store.create(Resource::EndpointSlices, slice).map_err(|e| Error::store("creating", &key, e))?;
            }
        }
    }
    for key in mine.iter().skip(wanted.len()) {
        match ctx.store.remove(key) {
            Ok(_) | Err(StoreError::NotFound(_)) => {}
            Err(e) => return Err(Error::store("removing", key, e)),
        }
    }
    write_endpoints(ctx, svc, &groups, &owner)?;
    Ok(Action::await_change())
}

/// The `v1` Endpoints of `svc`: one subset per port set, ready and not-ready addresses apart.
fn write_endpoints(
    ctx: &Ctx,
    svc: &Service,
    groups: &BTreeMap<Vec<SlicePort>, Vec<Endpoint>>,
    owner: &Value,
) -> Result<(), Error> {
    let namespace = svc.metadata.namespace.clone().unwrap_or_default();
    let address = |e: &Endpoint| {
        let mut a = json!({"ip": e.ip, "targetRef": target_ref(e, &namespace)});
        if let Some(n) = &e.node {
            a["nodeName"] = json!(n);
        }
        a
    };
    let subsets: Vec<Value> = groups
        .iter()
        .filter(|(_, eps)| eps.iter().any(|e| !e.terminating))
        .map(|(ports, eps)| {
            let live = eps.iter().filter(|e| !e.terminating);
            let (ready, not_ready): (Vec<&Endpoint>, Vec<&Endpoint>) = live.partition(|e| e.ready);
            let mut s = json!({"ports": ports.iter().map(|p| json!({"name": p.name, "port": p.port, "protocol": p.protocol})).collect::<Vec<_>>()});
            if !ready.is_empty() {
                s["addresses"] = json!(ready.into_iter().map(address).collect::<Vec<_>>());
            }
            if !not_ready.is_empty() {
                s["notReadyAddresses"] = json!(not_ready.into_iter().map(address).collect::<Vec<_>>());
            }
            s
        })
        .collect();
    let key = key_of(Resource::Endpoints, &svc.metadata);
    let labels = json!(svc.metadata.labels.clone().unwrap_or_default());
    let set = |v: &mut Value| {
        v["metadata"]["labels"] = labels.clone();
        if subsets.is_empty() {
            if let Some(m) = v.as_object_mut() {
                m.remove("subsets");
            }
        } else {
            v["subsets"] = json!(subsets);
        }
    };
    if ctx.store.get(&key).is_some() {
        ctx.store
            .update::<StoreError>(&key, |v| {
                set(v);
                Ok(())
            })
            .map_err(|e| Error::store("updating", &key, e))?;
        return Ok(());
    }
    let mut obj = json!({"apiVersion": "v1", "kind": "Endpoints",
        "metadata": {"name": key.name, "namespace": namespace, "ownerReferences": [owner]}});
    set(&mut obj);
    podvisor_apiserver::admission::on_create(Resource::Endpoints, &mut obj);
    ctx.store.create(Resource::Endpoints, obj).map_err(|e| Error::store("creating", &key, e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(name: &str, ip: Option<&str>, ready: bool, deleting: bool) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "default", "uid": format!("u-{name}"), "labels": {"app": "web"},
                         "deletionTimestamp": if deleting { json!("2026-01-01T00:00:00Z") } else { Value::Null }},
            "spec": {"nodeName": "n", "containers": [{"name": "c", "ports": [{"name": "http", "containerPort": 8080}]}]},
            "status": {"phase": "Running", "podIP": ip,
                       "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]}
        }))
        .unwrap()
    }

    fn svc(target: Value) -> Service {
        serde_json::from_value(json!({"metadata": {"name": "web", "namespace": "default", "uid": "s"},
            "spec": {"selector": {"app": "web"}, "ports": [{"name": "http", "port": 80, "protocol": "TCP", "targetPort": target}]}}))
        .unwrap()
    }

    /// A pod not Ready (its sidecar failing readiness makes it so) is listed not ready; one
    /// being deleted is terminating and serving as its readiness says; one with no address is
    /// not listed; a named targetPort resolves to the container port of that name.
    #[test]
    fn endpoints_follow_pod_readiness_and_deletion() {
        let pods = [
            pod("a", Some("10.244.0.5"), true, false),
            pod("b", Some("10.244.0.6"), false, false),
            pod("c", Some("10.244.0.7"), true, true),
            pod("d", None, true, false),
        ];
        let groups = endpoints(&svc(json!("http")), &pods);
        assert_eq!(groups.len(), 1);
        let (ports, eps) = groups.into_iter().next().unwrap();
        assert_eq!(ports, [SlicePort { name: "http".into(), protocol: "TCP".into(), port: 8080 }]);
        let got: Vec<(&str, bool, bool, bool)> =
            eps.iter().map(|e| (e.ip.as_str(), e.ready, e.serving, e.terminating)).collect();
        assert_eq!(
            got,
            [("10.244.0.5", true, true, false), ("10.244.0.6", false, false, false), ("10.244.0.7", false, true, true)]
        );
        let numeric = endpoints(&svc(json!(9090)), &pods[..1]);
        assert_eq!(numeric.keys().next().unwrap()[0].port, 9090);
    }
}
