//! Service accounts, the identities pods talk to the API as (only where there is an API to
//! talk to: `podvisor serve`).
//!
//! - Every namespace has a `default` ServiceAccount and the `kube-root-ca.crt` ConfigMap that
//!   holds the API's CA, as the service-account and root-CA-publisher controllers keep them.
//! - [`admit_pod`] is the API server's ServiceAccount admission: a pod runs as `default` unless
//!   it names another account, which must exist, and unless `automountServiceAccountToken` is
//!   false (on the pod, else on the account) gets the `kube-api-access-*` projected volume (a
//!   token, `ca.crt`, `namespace`) mounted read-only at
//!   `/var/run/secrets/kubernetes.io/serviceaccount` in each container.
//! - The `default/kubernetes` Service at the Service CIDR's first address leads to the API.
//! - [`authenticate`] accepts a token only while the account and the pod it is bound to exist.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;

use k8s_openapi::api::core::v1::Pod;
use podvisor_objects::kinds::Resource;
use serde_json::{Value, json};

use crate::rbac::User;
use crate::store::{Key, Store, StoreError};
use crate::tokens::{Bound, Claims, Issuer};

/// Where containers find their account's credentials.
pub const MOUNT_PATH: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// The ConfigMap with the API's CA, in every namespace.
pub const ROOT_CA: &str = "kube-root-ca.crt";

/// The `kubernetes` Service's address: the first of the Service CIDR, unless another
/// podvisor process on the machine has it (see [`claim_ip`]).
pub const KUBERNETES_IP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 1);

/// The file of a data directory that remembers the `kubernetes` Service's address.
const REMEMBERED: &str = "kubernetes-ip";

/// Claims this process's address for the `kubernetes` Service: the one the data directory
/// used last, else [`KUBERNETES_IP`], else another free address of the Service CIDR.
pub fn claim_ip(data_dir: &std::path::Path) -> Option<Ipv4Addr> {
    podvisor_runtime::services::claim_remembered(
        data_dir,
        REMEMBERED,
        KUBERNETES_IP,
        podvisor_objects::service::SERVICE_CIDR,
    )
}

/// The `kubernetes` Service's port.
pub const KUBERNETES_PORT: u16 = 443;

/// What pods need to reach the API: the key that signs their tokens, the CA that signed the
/// API's certificate, and where the API listens.
#[derive(Debug)]
pub struct ApiAccess {
    /// Signs and checks service-account tokens.
    pub issuer: Issuer,
    /// The API's CA certificate (PEM).
    pub ca_pem: String,
    /// Where the API listens.
    pub address: SocketAddr,
    /// The `kubernetes` Service's cluster IP, claimed by this process ([`claim_ip`]); none
    /// without a pod network.
    pub service_ip: Option<Ipv4Addr>,
}

fn said(what: impl std::fmt::Display, r: Result<impl Sized, StoreError>) {
    if !matches!(r, Err(StoreError::AlreadyExists(_))) {
        crate::store::said(what, r);
    }
}

/// Makes sure `namespace` has its `default` ServiceAccount and its `kube-root-ca.crt`
/// ConfigMap holding the current CA.
pub fn ensure_namespace(store: &Store, api: &ApiAccess, namespace: &str) {
    if store.get(&Key::new(Resource::ServiceAccounts, namespace, "default")).is_none() {
        said(
            format_args!("serviceaccount {namespace}/default"),
            store.create(
                Resource::ServiceAccounts,
                json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "default", "namespace": namespace}}),
            ),
        );
    }
    let key = Key::new(Resource::ConfigMaps, namespace, ROOT_CA);
    let data = json!({"ca.crt": api.ca_pem});
    match store.get(&key) {
        Some(cm) if cm.get("data") == Some(&data) => {}
        Some(_) => said(
            format_args!("configmap {namespace}/{ROOT_CA}"),
            store.update::<StoreError>(&key, |v| {
                v["data"] = data.clone();
                Ok(())
            }),
        ),
        None => said(
            format_args!("configmap {namespace}/{ROOT_CA}"),
            store.create(
                Resource::ConfigMaps,
                json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": ROOT_CA, "namespace": namespace,
                       "annotations": {"kubernetes.io/description": "Contains a CA bundle that can be used to verify the kube-apiserver when using internal endpoints such as the internal service IP or kubernetes.default.svc. No other usage is guaranteed across distributions of Kubernetes clusters."}},
                       "data": data}),
            ),
        ),
    }
}

/// Makes sure the `default/kubernetes` Service and its EndpointSlice (the node's address and
/// the API's port) exist, as the API server's endpoint reconciler keeps them.
pub fn ensure_kubernetes_service(store: &Store, api: &ApiAccess, host_ip: &str) {
    let Some(ip) = api.service_ip else { return };
    let port = api.address.port();
    let svc = json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "kubernetes", "namespace": "default", "labels": {"component": "apiserver", "provider": "kubernetes"}},
        "spec": {"type": "ClusterIP", "clusterIP": ip.to_string(), "clusterIPs": [ip.to_string()],
                 "ipFamilies": ["IPv4"], "ipFamilyPolicy": "SingleStack", "sessionAffinity": "None", "internalTrafficPolicy": "Cluster",
                 "ports": [{"name": "https", "port": KUBERNETES_PORT, "protocol": "TCP", "targetPort": port}]}});
    let key = Key::new(Resource::Services, "default", "kubernetes");
    match store.get(&key) {
        // A cluster IP cannot change: the Service is made again at this run's address.
        Some(cur) if cur.pointer("/spec/clusterIP") != svc.pointer("/spec/clusterIP") => {
            said("service default/kubernetes", store.remove(&key));
            said("service default/kubernetes", store.create(Resource::Services, svc));
        }
        Some(_) => {}
        None => said("service default/kubernetes", store.create(Resource::Services, svc)),
    }
    let slice = json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": "kubernetes", "namespace": "default",
                     "labels": {"kubernetes.io/service-name": "kubernetes", "endpointslice.kubernetes.io/managed-by": "podvisor-apiserver"}},
        "addressType": "IPv4",
        "endpoints": [{"addresses": [host_ip], "conditions": {"ready": true}}],
        "ports": [{"name": "https", "port": port, "protocol": "TCP"}]});
    let key = Key::new(Resource::EndpointSlices, "default", "kubernetes");
    match store.get(&key) {
        Some(cur) if cur.get("endpoints") == slice.get("endpoints") && cur.get("ports") == slice.get("ports") => {}
        Some(_) => said(
            "endpointslice default/kubernetes",
            store.update::<StoreError>(&key, |v| {
                v["endpoints"] = slice["endpoints"].clone();
                v["ports"] = slice["ports"].clone();
                Ok(())
            }),
        ),
        None => said("endpointslice default/kubernetes", store.create(Resource::EndpointSlices, slice)),
    }
}

fn text<'a>(v: &'a Value, p: &str) -> Option<&'a str> {
    v.pointer(p).and_then(Value::as_str).filter(|s| !s.is_empty())
}

/// The ServiceAccount admission of a new pod (`pod`, admitted JSON): names its account, checks
/// that it exists, and mounts its token unless told not to. A `default` account the
/// namespace does not have yet is made on the spot, as its controller would a moment later.
pub fn admit_pod(store: &Store, pod: &mut Value) -> Result<(), StoreError> {
    let namespace = text(pod, "/metadata/namespace").unwrap_or("default").to_string();
    let name = text(pod, "/metadata/name").unwrap_or("").to_string();
    let account =
        text(pod, "/spec/serviceAccountName").or(text(pod, "/spec/serviceAccount")).unwrap_or("default").to_string();
    pod["spec"]["serviceAccountName"] = json!(account);
    pod["spec"]["serviceAccount"] = json!(account);
    let key = Key::new(Resource::ServiceAccounts, &namespace, &account);
    let sa = match store.get(&key) {
        Some(sa) => sa,
        None if account == "default" => {
            let made = store.create(
                Resource::ServiceAccounts,
                json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "default", "namespace": namespace}}),
            );
            match made {
                Ok(sa) => sa,
                Err(_) => store.get(&key).unwrap_or_else(|| Arc::new(json!({}))),
            }
        }
        None => {
            return Err(StoreError::Forbidden {
                key: Key::new(Resource::Pods, &namespace, &name),
                why: format!(
                    "error looking up service account {namespace}/{account}: serviceaccount \"{account}\" not found"
                ),
            });
        }
    };
    let automount = pod
        .pointer("/spec/automountServiceAccountToken")
        .and_then(Value::as_bool)
        .or_else(|| sa.get("automountServiceAccountToken").and_then(Value::as_bool))
        .unwrap_or(true);
    if !automount {
        return Ok(());
    }
    let containers = ["containers", "initContainers"];
    let mounted = |c: &Value| {
        c.get("volumeMounts")
            .and_then(Value::as_array)
            .is_some_and(|ms| ms.iter().any(|m| text(m, "/mountPath") == Some(MOUNT_PATH)))
    };
    let all: Vec<&Value> = containers
        .iter()
        .flat_map(|l| pod.pointer(&format!("/spec/{l}")).and_then(Value::as_array).into_iter().flatten())
        .collect();
    if !all.is_empty() && all.iter().all(|c| mounted(c)) {
        return Ok(());
    }
    let taken: Vec<String> = pod
        .pointer("/spec/volumes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|v| text(v, "/name"))
        .map(str::to_string)
        .collect();
    let volume = loop {
        let candidate = format!("kube-api-access-{}", podvisor_objects::uid::suffix(5));
        if !taken.contains(&candidate) {
            break candidate;
        }
    };
    let projected = json!({"name": volume, "projected": {"defaultMode": 420, "sources": [
        {"serviceAccountToken": {"expirationSeconds": crate::tokens::KUBELET_EXPIRATION, "path": "token"}},
        {"configMap": {"name": ROOT_CA, "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
        {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}},
    ]}});
    match pod["spec"].get_mut("volumes").and_then(Value::as_array_mut) {
        Some(vs) => vs.push(projected),
        None => pod["spec"]["volumes"] = json!([projected]),
    }
    for list in containers {
        for c in pod["spec"].get_mut(list).and_then(Value::as_array_mut).into_iter().flatten() {
            if mounted(c) {
                continue;
            }
            let mount = json!({"name": volume, "readOnly": true, "mountPath": MOUNT_PATH});
            match c.get_mut("volumeMounts").and_then(Value::as_array_mut) {
                Some(ms) => ms.push(mount),
                None => c["volumeMounts"] = json!([mount]),
            }
        }
    }
    Ok(())
}

/// A token for `pod`'s service account, bound to the pod, for `audience` (this API's when
/// none), lasting `expiration` seconds: what the kubelet asks the API for to fill a
/// `serviceAccountToken` projection.
pub fn token_for(
    store: &Store,
    api: &ApiAccess,
    pod: &Pod,
    audience: Option<&str>,
    expiration: i64,
) -> Result<String, String> {
    let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
    let account = pod.spec.as_ref().and_then(|s| s.service_account_name.as_deref()).unwrap_or("default");
    let sa = store
        .get(&Key::new(Resource::ServiceAccounts, namespace, account))
        .ok_or_else(|| format!("serviceaccount {account:?} not found"))?;
    let sa = Bound { name: account.to_string(), uid: text(&sa, "/metadata/uid").unwrap_or("").to_string() };
    let bound = Bound {
        name: pod.metadata.name.clone().unwrap_or_default(),
        uid: pod.metadata.uid.clone().unwrap_or_default(),
    };
    let now = jiff::Timestamp::now().as_second();
    let audiences = audience.map(|a| vec![a.to_string()]).unwrap_or_default();
    Ok(api.issuer.issue(&Claims::new(namespace, sa, Some(bound), audiences, now, expiration)))
}

/// The user `token` authenticates as: its service account, if the token is this API's,
/// current, and the account (and the pod it is bound to) still exist with the UIDs it names.
pub fn authenticate(store: &Store, api: &ApiAccess, token: &str) -> Option<User> {
    let claims = api.issuer.verify(token, jiff::Timestamp::now().as_second()).ok()?;
    let k = &claims.kubernetes;
    let uid = |r: Resource, name: &str| {
        store.get(&Key::new(r, &k.namespace, name)).and_then(|o| text(&o, "/metadata/uid").map(str::to_string))
    };
    if uid(Resource::ServiceAccounts, &k.serviceaccount.name)? != k.serviceaccount.uid {
        return None;
    }
    if let Some(pod) = &k.pod
        && uid(Resource::Pods, &pod.name)? != pod.uid
    {
        return None;
    }
    Some(User::service_account(&k.namespace, &k.serviceaccount.name))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(spec: Value) -> Value {
        json!({"metadata": {"name": "p", "namespace": "ns"}, "spec": spec})
    }

    #[test]
    fn a_pod_gets_the_default_account_and_its_token_mounted_in_every_container() {
        let store = Store::in_memory();
        let mut p = pod(
            json!({"containers": [{"name": "a"}], "initContainers": [{"name": "side", "restartPolicy": "Always"}]}),
        );
        admit_pod(&store, &mut p).unwrap();
        assert_eq!(p["spec"]["serviceAccountName"], "default");
        assert!(store.get(&Key::new(Resource::ServiceAccounts, "ns", "default")).is_some(), "made on the spot");
        let volume = p["spec"]["volumes"][0]["name"].as_str().unwrap();
        assert!(volume.starts_with("kube-api-access-"));
        assert_eq!(
            p["spec"]["volumes"][0]["projected"]["sources"][0]["serviceAccountToken"]["expirationSeconds"],
            3607
        );
        for c in [&p["spec"]["containers"][0], &p["spec"]["initContainers"][0]] {
            assert_eq!(c["volumeMounts"], json!([{"name": volume, "readOnly": true, "mountPath": MOUNT_PATH}]));
        }
    }

    #[test]
    fn automount_is_off_by_the_pod_or_the_account_and_a_missing_account_is_refused() {
        let store = Store::in_memory();
        let mut p = pod(json!({"containers": [{"name": "a"}], "automountServiceAccountToken": false}));
        admit_pod(&store, &mut p).unwrap();
        assert!(p["spec"].get("volumes").is_none());
        store
            .create(
                Resource::ServiceAccounts,
                json!({"apiVersion": "v1", "kind": "ServiceAccount",
                "metadata": {"name": "quiet", "namespace": "ns"}, "automountServiceAccountToken": false}),
            )
            .unwrap();
        let mut p = pod(json!({"containers": [{"name": "a"}], "serviceAccountName": "quiet"}));
        admit_pod(&store, &mut p).unwrap();
        assert!(p["spec"].get("volumes").is_none());
        let mut p = pod(
            json!({"containers": [{"name": "a"}], "serviceAccountName": "quiet", "automountServiceAccountToken": true}),
        );
        admit_pod(&store, &mut p).unwrap();
        assert_eq!(p["spec"]["volumes"].as_array().unwrap().len(), 1, "the pod's word wins");
        let mut p = pod(json!({"containers": [{"name": "a"}], "serviceAccountName": "ghost"}));
        let e = admit_pod(&store, &mut p).unwrap_err().to_string();
        assert_eq!(
            e,
            "pods \"p\" is forbidden: error looking up service account ns/ghost: serviceaccount \"ghost\" not found"
        );
    }

    #[test]
    fn a_token_authenticates_while_its_account_and_pod_exist() {
        let store = Store::in_memory();
        let api = ApiAccess {
            issuer: Issuer::from_key(&[3; 32]),
            ca_pem: "CA".into(),
            address: "127.0.0.1:6443".parse().unwrap(),
            service_ip: Some(KUBERNETES_IP),
        };
        ensure_namespace(&store, &api, "ns");
        ensure_kubernetes_service(&store, &api, "10.244.0.1");
        let svc = store.get(&Key::new(Resource::Services, "default", "kubernetes")).unwrap();
        assert_eq!(svc["spec"]["clusterIP"], "10.96.0.1");
        assert_eq!(svc["spec"]["ports"][0]["targetPort"], 6443);
        let moved = ApiAccess { service_ip: Some(Ipv4Addr::new(10, 96, 0, 2)), ..api };
        ensure_kubernetes_service(&store, &moved, "10.244.0.1");
        let svc = store.get(&Key::new(Resource::Services, "default", "kubernetes")).unwrap();
        assert_eq!(svc["spec"]["clusterIP"], "10.96.0.2", "made again at this run's address");
        let api = moved;
        let cm = store.get(&Key::new(Resource::ConfigMaps, "ns", ROOT_CA)).unwrap();
        assert_eq!(cm["data"]["ca.crt"], "CA");
        let created = store
            .create(
                Resource::Pods,
                json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "ns"},
                "spec": {"serviceAccountName": "default", "containers": [{"name": "a", "image": "x"}]}}),
            )
            .unwrap();
        let typed: Pod = serde_json::from_value((*created).clone()).unwrap();
        let token = token_for(&store, &api, &typed, None, 3607).unwrap();
        assert_eq!(authenticate(&store, &api, &token), Some(User::service_account("ns", "default")));
        store.remove(&Key::new(Resource::Pods, "ns", "p")).unwrap();
        assert_eq!(authenticate(&store, &api, &token), None, "a bound token ends with its pod");
    }
}
