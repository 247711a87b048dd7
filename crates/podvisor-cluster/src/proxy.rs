//! The node's Service proxy, as kube-proxy runs beside a kubelet: every change to a Service or
//! an EndpointSlice recomputes the routes (each TCP Service port's ClusterIP and nodePort to
//! the ready endpoints of its slices) and hands them to the in-process
//! [`Proxy`](podvisor_runtime::services::Proxy). Nothing polls: the store's changes drive it.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use podvisor_objects::kinds::Resource;
use podvisor_runtime::services::{Frontend, Proxy, Routes};
use serde_json::Value;
use tokio::sync::broadcast::error::{RecvError, TryRecvError};
use tokio::sync::watch;

use crate::store::Store;

/// The label that ties an EndpointSlice to its Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

fn s<'a>(v: &'a Value, p: &str) -> &'a str {
    v.pointer(p).and_then(Value::as_str).unwrap_or("")
}

fn list<'a>(v: &'a Value, p: &str) -> impl Iterator<Item = &'a Value> {
    v.pointer(p).and_then(Value::as_array).into_iter().flatten()
}

/// Whether an endpoint address may be relayed to: never the host's loopback, an unspecified,
/// link-local or multicast address (the API server refuses them in EndpointSlices), nor a
/// frontend of the proxy itself (a loop).
fn relayable(ip: IpAddr, frontends: &std::collections::HashSet<Ipv4Addr>) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            !(v4.is_loopback()
                || v4.is_unspecified()
                || v4.is_link_local()
                || v4.is_multicast()
                || v4.is_broadcast()
                || frontends.contains(&v4))
        }
        IpAddr::V6(v6) => !(v6.is_loopback() || v6.is_unspecified() || v6.is_multicast()),
    }
}

/// The routes the stored Services and EndpointSlices ask for. A ClusterIP is routed only from
/// the Service CIDR and never at `reserved` (cluster DNS's address); a nodePort only for a
/// NodePort or LoadBalancer Service; nothing for an ExternalName one.
pub fn routes(services: &[Arc<Value>], slices: &[Arc<Value>], reserved: &[Ipv4Addr]) -> Routes {
    let mut routes = Routes::new();
    let frontends: std::collections::HashSet<Ipv4Addr> = services
        .iter()
        .filter_map(|s| s.pointer("/spec/clusterIP")?.as_str()?.parse().ok())
        .chain(reserved.iter().copied())
        .collect();
    for svc in services {
        let (ns, name) = (s(svc, "/metadata/namespace"), s(svc, "/metadata/name"));
        let ty = s(svc, "/spec/type");
        if ty == "ExternalName" {
            continue;
        }
        let node_ports = matches!(ty, "NodePort" | "LoadBalancer");
        let cluster_ip: Option<Ipv4Addr> = s(svc, "/spec/clusterIP")
            .parse()
            .ok()
            .filter(|ip| podvisor_objects::service::in_service_cidr(*ip))
            .filter(|ip| !reserved.contains(ip));
        let mine: Vec<&Arc<Value>> = slices
            .iter()
            .filter(|sl| {
                s(sl, "/metadata/namespace") == ns && s(sl, "/metadata/labels/kubernetes.io~1service-name") == name
            })
            .collect();
        for port in list(svc, "/spec/ports") {
            if !matches!(s(port, "/protocol"), "" | "TCP") {
                continue;
            }
            let port_name = s(port, "/name");
            let mut backends = Vec::new();
            for slice in &mine {
                let Some(target) = list(slice, "/ports")
                    .find(|p| s(p, "/name") == port_name && matches!(s(p, "/protocol"), "" | "TCP"))
                    .and_then(|p| p.get("port")?.as_u64())
                    .and_then(|p| u16::try_from(p).ok())
                else {
                    continue;
                };
                for e in list(slice, "/endpoints") {
                    // kube-proxy routes to ready endpoints (a missing condition counts as ready).
                    if e.pointer("/conditions/ready").and_then(Value::as_bool) == Some(false) {
                        continue;
                    }
                    for a in list(e, "/addresses").filter_map(Value::as_str) {
                        if let Ok(ip) = a.parse::<IpAddr>()
                            && relayable(ip, &frontends)
                        {
                            backends.push(SocketAddr::new(ip, target));
                        }
                    }
                }
            }
            backends.sort();
            backends.dedup();
            let Some(front_port) = port.get("port").and_then(Value::as_u64).and_then(|p| u16::try_from(p).ok()) else {
                continue;
            };
            if let Some(ip) = cluster_ip {
                routes.insert(Frontend { ip, port: front_port }, backends.clone());
            }
            if let Some(np) = port
                .get("nodePort")
                .and_then(Value::as_u64)
                .and_then(|p| u16::try_from(p).ok())
                .filter(|p| node_ports && podvisor_objects::service::NODE_PORTS.contains(p))
            {
                routes.insert(Frontend { ip: Ipv4Addr::UNSPECIFIED, port: np }, backends);
            }
        }
    }
    routes
}

/// Whether the stored pod asks for a host port (a change to it may change the routes).
fn has_host_port(pod: &Value) -> bool {
    list(pod, "/spec/containers")
        .chain(list(pod, "/spec/initContainers"))
        .flat_map(|c| list(c, "/ports"))
        .any(|p| p.get("hostPort").and_then(Value::as_i64).is_some_and(|h| h > 0))
}

/// The routes of the host ports of the pods that run on `node_name` with an address: each TCP
/// `hostPort` of a container or sidecar, on its `hostIP` (every address when none is given; an
/// address that is neither loopback nor one of `host`'s is not this machine's, and gets nothing),
/// to the pod's address at the `containerPort`, as the portmap plugin maps it. A pod on the
/// host's network takes its ports itself. UDP host ports are not relayed.
pub fn host_port_routes(pods: &[Arc<Value>], node_name: &str, host: &[Ipv4Addr]) -> Routes {
    let mut routes = Routes::new();
    for pod in pods {
        let running = s(pod, "/spec/nodeName") == node_name
            && !matches!(s(pod, "/status/phase"), "Succeeded" | "Failed")
            && pod.pointer("/spec/hostNetwork").and_then(Value::as_bool) != Some(true);
        let Ok(pod_ip) = s(pod, "/status/podIP").parse::<Ipv4Addr>() else { continue };
        if !running || !has_host_port(pod) {
            continue;
        }
        let sidecars = list(pod, "/spec/initContainers").filter(|c| s(c, "/restartPolicy") == "Always");
        for port in sidecars.chain(list(pod, "/spec/containers")).flat_map(|c| list(c, "/ports")) {
            let number = |k: &str| port.get(k).and_then(Value::as_u64).and_then(|p| u16::try_from(p).ok());
            let (Some(host_port), Some(container_port)) = (number("hostPort"), number("containerPort")) else {
                continue;
            };
            if host_port == 0 || !matches!(s(port, "/protocol"), "" | "TCP") {
                continue;
            }
            let ip = match s(port, "/hostIP") {
                "" => Ipv4Addr::UNSPECIFIED,
                given => match given.parse::<Ipv4Addr>() {
                    Ok(ip) if ip.is_unspecified() || ip.is_loopback() || host.contains(&ip) => ip,
                    _ => continue,
                },
            };
            routes.insert(Frontend { ip, port: host_port }, vec![SocketAddr::new(IpAddr::V4(pod_ip), container_port)]);
        }
    }
    routes
}

/// Serves the store's Services until `stopping`, then closes every frontend. The
/// `default/kubernetes` Service leads to `api` (the API's own listener, which may be on
/// loopback: it is podvisor's, not an endpoint a user wrote).
pub(crate) async fn run(
    store: Arc<Store>,
    proxy: Arc<Proxy>,
    reserved: Vec<Ipv4Addr>,
    api: Option<(Ipv4Addr, SocketAddr)>,
    host: (String, Vec<Ipv4Addr>),
    mut stopping: watch::Receiver<bool>,
) {
    use crate::serviceaccounts::KUBERNETES_PORT;
    let (node_name, host_addresses) = host;
    proxy.set_host_addresses(host_addresses.iter().copied().collect()).await;
    let mut rx = store.subscribe();
    loop {
        let services = store.list(Resource::Services, None).0;
        let slices = store.list(Resource::EndpointSlices, None).0;
        let pods = store.list(Resource::Pods, None).0;
        // A Service's frontends win over a pod's host port on the same address and port.
        let mut routes = host_port_routes(&pods, &node_name, &host_addresses);
        routes.extend(self::routes(&services, &slices, &reserved));
        if let Some((ip, to)) = api
            && services.iter().any(|s| {
                s.pointer("/metadata/name").and_then(Value::as_str) == Some("kubernetes")
                    && s.pointer("/metadata/namespace").and_then(Value::as_str) == Some("default")
                    && s.pointer("/spec/clusterIP").and_then(Value::as_str) == Some(&ip.to_string())
            })
        {
            routes.insert(Frontend { ip, port: KUBERNETES_PORT }, vec![to]);
        }
        for e in proxy.set(&routes).await {
            tracing::warn!("Service routing: {e}");
        }
        // Wait for a change that matters, then take every change already queued with it.
        let wake = async {
            loop {
                match rx.recv().await {
                    Ok(c) if matches!(c.key.resource, Resource::Services | Resource::EndpointSlices) => return true,
                    Ok(c)
                        if c.key.resource == Resource::Pods
                            && (has_host_port(&c.object) || c.previous.as_deref().is_some_and(has_host_port)) =>
                    {
                        return true;
                    }
                    Ok(_) => {}
                    Err(RecvError::Lagged(_)) => return true,
                    Err(RecvError::Closed) => return false,
                }
            }
        };
        tokio::select! {
            go = wake => if !go { break },
            _ = stopping.wait_for(|s| *s) => break,
        }
        while let Ok(_) | Err(TryRecvError::Lagged(_)) = rx.try_recv() {}
    }
    proxy.close().await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn routes_go_to_ready_endpoints_by_port_name() {
        let svc = Arc::new(json!({"metadata": {"name": "web", "namespace": "default"},
            "spec": {"clusterIP": "10.96.0.20", "type": "NodePort", "ports": [
                {"name": "http", "port": 80, "protocol": "TCP", "nodePort": 30080},
                {"name": "dns", "port": 53, "protocol": "UDP"}]}}));
        let headless = Arc::new(json!({"metadata": {"name": "db", "namespace": "default"},
            "spec": {"clusterIP": "None", "ports": [{"port": 5432, "protocol": "TCP"}]}}));
        let slice = Arc::new(json!({"metadata": {"name": "web-abc", "namespace": "default",
                "labels": {"kubernetes.io/service-name": "web"}},
            "addressType": "IPv4", "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
            "endpoints": [
                {"addresses": ["10.244.0.5"], "conditions": {"ready": true}},
                {"addresses": ["10.244.0.6"], "conditions": {"ready": false}},
                {"addresses": ["10.244.0.7"]}]}));
        let other_ns = Arc::new(json!({"metadata": {"name": "web-x", "namespace": "other",
                "labels": {"kubernetes.io/service-name": "web"}},
            "ports": [{"name": "http", "port": 9, "protocol": "TCP"}],
            "endpoints": [{"addresses": ["10.244.0.9"]}]}));
        let r = routes(&[svc, headless], &[slice, other_ns], &[]);
        let backends: Vec<SocketAddr> = vec!["10.244.0.5:8080".parse().unwrap(), "10.244.0.7:8080".parse().unwrap()];
        assert_eq!(
            r,
            Routes::from([
                (Frontend { ip: Ipv4Addr::UNSPECIFIED, port: 30080 }, backends.clone()),
                (Frontend { ip: Ipv4Addr::new(10, 96, 0, 20), port: 80 }, backends),
            ])
        );
    }

    /// Review: a Service could put any address on the host's bridge (an ExternalName with a
    /// clusterIP, an address outside the Service CIDR, cluster DNS's own) and relay to the
    /// host's loopback or to itself.
    #[test]
    fn host_ports_of_running_pods_route_to_the_pod_on_this_machines_addresses() {
        let pod = |name: &str, node: &str, phase: &str, ports: Value| {
            Arc::new(json!({"metadata": {"name": name}, "spec": {"nodeName": node,
                "initContainers": [{"name": "side", "restartPolicy": "Always", "ports": [{"containerPort": 9000, "hostPort": 19000}]},
                                   {"name": "once", "ports": [{"containerPort": 9001, "hostPort": 19001}]}],
                "containers": [{"name": "c", "ports": ports}]},
                "status": {"phase": phase, "podIP": "10.88.0.7"}}))
        };
        let ports = json!([
            {"containerPort": 80, "hostPort": 18080},
            {"containerPort": 81, "hostPort": 18081, "hostIP": "127.0.0.1"},
            {"containerPort": 82, "hostPort": 18082, "hostIP": "192.168.1.5"},
            {"containerPort": 83, "hostPort": 18083, "hostIP": "203.0.113.9"},
            {"containerPort": 53, "hostPort": 18053, "protocol": "UDP"},
            {"containerPort": 84, "hostPort": 70000},
            {"containerPort": 85}]);
        let host = [Ipv4Addr::new(192, 168, 1, 5)];
        let r = host_port_routes(&[pod("a", "box", "Running", ports.clone())], "box", &host);
        let to = |port| vec![SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 88, 0, 7)), port)];
        assert_eq!(
            r,
            Routes::from([
                (Frontend { ip: Ipv4Addr::UNSPECIFIED, port: 18080 }, to(80)),
                (Frontend { ip: Ipv4Addr::LOCALHOST, port: 18081 }, to(81)),
                (Frontend { ip: host[0], port: 18082 }, to(82)),
                (Frontend { ip: Ipv4Addr::UNSPECIFIED, port: 19000 }, to(9000)),
            ]),
            "another machine's address, UDP, a port past 65535 and an init container's get nothing"
        );
        for other in [pod("b", "elsewhere", "Running", ports.clone()), pod("c", "box", "Succeeded", ports.clone())] {
            assert_eq!(host_port_routes(&[other], "box", &host), Routes::new());
        }
        let mut host_network = (*pod("d", "box", "Running", ports)).clone();
        host_network["spec"]["hostNetwork"] = json!(true);
        assert_eq!(host_port_routes(&[Arc::new(host_network)], "box", &host), Routes::new());
    }

    #[test]
    fn hostile_services_and_endpoints_route_nowhere() {
        let svc = |name: &str, spec: Value| {
            Arc::new(json!({"metadata": {"name": name, "namespace": "default"}, "spec": spec}))
        };
        let services = [
            svc(
                "ext",
                json!({"type": "ExternalName", "clusterIP": "10.96.0.30", "ports": [{"port": 53, "protocol": "TCP"}]}),
            ),
            svc("far", json!({"clusterIP": "8.8.8.8", "ports": [{"port": 53, "protocol": "TCP"}]})),
            svc("dns", json!({"clusterIP": "10.96.0.10", "ports": [{"port": 53, "protocol": "TCP"}]})),
            svc(
                "cip",
                json!({"type": "ClusterIP", "clusterIP": "10.96.0.40", "ports": [{"port": 80, "protocol": "TCP", "nodePort": 30080}]}),
            ),
        ];
        let slice = Arc::new(json!({"metadata": {"name": "cip-x", "namespace": "default",
                "labels": {"kubernetes.io/service-name": "cip"}},
            "ports": [{"name": "", "port": 80, "protocol": "TCP"}],
            "endpoints": [{"addresses": ["127.0.0.1"]}, {"addresses": ["10.96.0.40"]}, {"addresses": ["169.254.169.254"]}]}));
        let r = routes(&services, &[slice], &[Ipv4Addr::new(10, 96, 0, 10)]);
        assert_eq!(r, Routes::from([(Frontend { ip: Ipv4Addr::new(10, 96, 0, 40), port: 80 }, vec![])]));
    }
}
