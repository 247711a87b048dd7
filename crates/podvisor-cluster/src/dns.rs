//! Cluster DNS: the names CoreDNS's kubernetes plugin answers, read from the store at each
//! question. `<svc>.<ns>.svc.cluster.local` is a Service's ClusterIP (the ready endpoints of a
//! headless one, a CNAME for an `ExternalName` one); `<hostname>.<svc>.<ns>.svc.cluster.local`
//! an endpoint of a headless Service whose pod named that hostname (with the Service as its
//! subdomain); `_<port>._<proto>.<svc>.<ns>.svc.cluster.local` its SRV records;
//! `<a-b-c-d>.<ns>.pod.cluster.local` an address. Other names are the host's.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;

use podvisor_objects::kinds::Resource;
use podvisor_runtime::dns::{Answer, Kind, Question, Rr, Zone};
use serde_json::Value;
use tokio::sync::watch;

use crate::proxy::SERVICE_NAME_LABEL;
use crate::store::{Key, Store};

/// The cluster's domain.
pub const DOMAIN: &str = "cluster.local";

/// Where pods reach cluster DNS: the tenth address of the Service CIDR, as kube-dns's, unless
/// another podvisor process on the machine serves there already.
pub const DNS_IP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 10);

/// The file of a data directory that remembers its cluster DNS address, so that pods taken
/// over after a restart keep resolving.
const REMEMBERED: &str = "cluster-dns";

/// Claims this process's cluster DNS address: the one the data directory used last, else
/// [`DNS_IP`], else another free address of the Service CIDR.
pub fn claim_address(data_dir: &std::path::Path) -> Option<Ipv4Addr> {
    podvisor_runtime::services::claim_remembered(data_dir, REMEMBERED, DNS_IP, podvisor_objects::service::SERVICE_CIDR)
}

fn s<'a>(v: &'a Value, p: &str) -> &'a str {
    v.pointer(p).and_then(Value::as_str).unwrap_or("")
}

fn list<'a>(v: &'a Value, p: &str) -> impl Iterator<Item = &'a Value> {
    v.pointer(p).and_then(Value::as_array).into_iter().flatten()
}

/// Cluster DNS's address and sockets, bound before any pod is pointed at it.
pub struct Bound {
    /// The address, claimed and on the bridge.
    pub ip: Ipv4Addr,
    udp: tokio::net::UdpSocket,
    tcp: tokio::net::TcpListener,
}

/// Claims cluster DNS's address ([`claim_address`]), puts it on the bridge and binds port 53
/// there. `None` (said on stderr) when it cannot: pods then use the host's resolvers rather
/// than a nameserver that does not answer.
pub async fn bind(data_dir: &std::path::Path) -> Option<Bound> {
    use podvisor_runtime::services::{add_address, del_address, release};
    let ip = claim_address(data_dir)?;
    if let Err(e) = add_address(ip).await {
        tracing::warn!("cluster DNS is off (pods use the host's resolvers): {e}");
        release(ip);
        return None;
    }
    let at = SocketAddr::from((ip, 53));
    let bound = async {
        Ok::<_, std::io::Error>((tokio::net::UdpSocket::bind(at).await?, tokio::net::TcpListener::bind(at).await?))
    };
    match bound.await {
        Ok((udp, tcp)) => Some(Bound { ip, udp, tcp }),
        Err(e) => {
            tracing::warn!("cluster DNS is off (pods use the host's resolvers): listening on {at}: {e}");
            if del_address(ip).await.is_ok() {
                release(ip);
            }
            None
        }
    }
}

/// Serves cluster DNS on `bound` until `stop`, then takes the address away. Names outside the
/// zone go to the host's resolvers.
pub(crate) async fn serve(store: Arc<Store>, bound: Bound, stop: watch::Receiver<bool>) {
    use podvisor_runtime::services::{del_address, release};
    let Bound { ip, udp, tcp } = bound;
    let host = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    let upstreams = podvisor_runtime::dns::nameservers(&host, ip);
    podvisor_runtime::dns::serve_on(udp, tcp, Arc::new(StoreZone(store)), upstreams, stop).await;
    match del_address(ip).await {
        Ok(()) => release(ip),
        Err(e) => tracing::warn!("the cluster DNS address {ip} is left on the bridge: {e}"),
    }
}

/// The zone of a store's Services and pods.
pub struct StoreZone(pub Arc<Store>);

/// One endpoint of a Service: its address and the hostname its pod asked for, if any.
struct Endpoint {
    ip: Ipv4Addr,
    hostname: Option<String>,
}

impl StoreZone {
    /// The ready endpoints of Service `name` in `ns`, from its EndpointSlices.
    fn endpoints(&self, ns: &str, name: &str) -> Vec<Endpoint> {
        let mut out = Vec::new();
        for slice in self.0.list(Resource::EndpointSlices, Some(ns)).0 {
            if slice.pointer("/metadata/labels").and_then(|l| l.get(SERVICE_NAME_LABEL)).and_then(Value::as_str)
                != Some(name)
            {
                continue;
            }
            for e in list(&slice, "/endpoints") {
                if e.pointer("/conditions/ready").and_then(Value::as_bool) == Some(false) {
                    continue;
                }
                let hostname = e.get("hostname").and_then(Value::as_str).map(str::to_string);
                for ip in list(e, "/addresses").filter_map(Value::as_str).filter_map(|a| a.parse().ok()) {
                    out.push(Endpoint { ip, hostname: hostname.clone() });
                }
            }
        }
        out.sort_by_key(|e| e.ip);
        out.dedup_by_key(|e| e.ip);
        out
    }

    fn service(&self, q: &Question, svc: &Value, ns: &str, name: &str) -> Answer {
        let fqdn = format!("{name}.{ns}.svc.{DOMAIN}");
        match (s(svc, "/spec/type"), s(svc, "/spec/clusterIP")) {
            ("ExternalName", _) => {
                let target = s(svc, "/spec/externalName").trim_end_matches('.').to_string();
                Answer::Records(vec![Rr::Cname(q.name.clone(), target)])
            }
            (_, "None") => match q.kind {
                Kind::A => {
                    Answer::Records(self.endpoints(ns, name).into_iter().map(|e| Rr::A(q.name.clone(), e.ip)).collect())
                }
                _ => Answer::Records(vec![]),
            },
            (_, ip) => match (q.kind, ip.parse::<Ipv4Addr>()) {
                (Kind::A, Ok(ip)) => Answer::Records(vec![Rr::A(fqdn, ip)]),
                _ => Answer::Records(vec![]),
            },
        }
    }

    /// `_<port>._<proto>.<svc>.<ns>.svc`: one SRV per target of the named port.
    fn srv(&self, q: &Question, svc: &Value, ns: &str, name: &str, port: &str, proto: &str) -> Answer {
        let Some(p) =
            list(svc, "/spec/ports").find(|p| s(p, "/name") == port && s(p, "/protocol").eq_ignore_ascii_case(proto))
        else {
            return Answer::NxDomain;
        };
        if q.kind != Kind::Srv {
            return Answer::Records(vec![]);
        }
        let number = p.get("port").and_then(Value::as_u64).and_then(|n| u16::try_from(n).ok()).unwrap_or(0);
        let base = format!("{name}.{ns}.svc.{DOMAIN}");
        if s(svc, "/spec/clusterIP") != "None" {
            return Answer::Records(vec![Rr::Srv { name: q.name.clone(), port: number, target: base }]);
        }
        let rrs = self
            .endpoints(ns, name)
            .into_iter()
            .map(|e| {
                let host = e.hostname.unwrap_or_else(|| e.ip.to_string().replace('.', "-"));
                Rr::Srv { name: q.name.clone(), port: number, target: format!("{host}.{base}") }
            })
            .collect();
        Answer::Records(rrs)
    }
}

impl Zone for StoreZone {
    fn apex(&self) -> &str {
        DOMAIN
    }

    fn answer(&self, q: &Question) -> Answer {
        let rest = if q.name == DOMAIN {
            return Answer::Records(vec![]);
        } else if let Some(rest) = q.name.strip_suffix(&format!(".{DOMAIN}")) {
            rest
        } else {
            return Answer::NotOurs;
        };
        let labels: Vec<&str> = rest.split('.').collect();
        let service = |ns: &str, name: &str| self.0.get(&Key::new(Resource::Services, ns, name));
        match labels.as_slice() {
            ["svc"] | ["pod"] => Answer::Records(vec![]),
            [ns, "svc" | "pod"] if self.0.get(&Key::new(Resource::Namespaces, "", ns)).is_some() => {
                Answer::Records(vec![])
            }
            [name, ns, "svc"] => match service(ns, name) {
                Some(svc) => self.service(q, &svc, ns, name),
                None => Answer::NxDomain,
            },
            [port, proto, name, ns, "svc"] if port.starts_with('_') && proto.starts_with('_') => {
                match service(ns, name) {
                    Some(svc) => self.srv(q, &svc, ns, name, &port[1..], &proto[1..]),
                    None => Answer::NxDomain,
                }
            }
            [host, name, ns, "svc"] => {
                if service(ns, name).is_none_or(|svc| s(&svc, "/spec/clusterIP") != "None") {
                    return Answer::NxDomain;
                }
                let found: Vec<Ipv4Addr> = self
                    .endpoints(ns, name)
                    .into_iter()
                    .filter(|e| e.hostname.as_deref() == Some(*host) || e.ip.to_string().replace('.', "-") == *host)
                    .map(|e| e.ip)
                    .collect();
                match (found.is_empty(), q.kind) {
                    (true, _) => Answer::NxDomain,
                    (false, Kind::A) => {
                        Answer::Records(found.into_iter().map(|ip| Rr::A(q.name.clone(), ip)).collect())
                    }
                    (false, _) => Answer::Records(vec![]),
                }
            }
            [dashed, _ns, "pod"] => match dashed.replace('-', ".").parse::<Ipv4Addr>() {
                Ok(ip) if q.kind == Kind::A => Answer::Records(vec![Rr::A(q.name.clone(), ip)]),
                Ok(_) => Answer::Records(vec![]),
                Err(_) => Answer::NxDomain,
            },
            _ => Answer::NxDomain,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn zone() -> StoreZone {
        let store = Store::in_memory();
        for (name, ip) in [("web", "10.96.0.20"), ("db", "None")] {
            store
                .create(
                    Resource::Services,
                    json!({"metadata": {"name": name, "namespace": "default"},
                       "spec": {"clusterIP": ip, "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]}}),
                )
                .unwrap();
        }
        store
            .create(
                Resource::Services,
                json!({"metadata": {"name": "ext", "namespace": "default"},
                   "spec": {"type": "ExternalName", "externalName": "example.com"}}),
            )
            .unwrap();
        store
            .create(
                Resource::EndpointSlices,
                json!({"metadata": {"name": "db-x", "namespace": "default", "labels": {"kubernetes.io/service-name": "db"}},
                   "endpoints": [
                       {"addresses": ["10.244.0.5"], "hostname": "db-0", "conditions": {"ready": true}},
                       {"addresses": ["10.244.0.6"], "conditions": {"ready": true}},
                       {"addresses": ["10.244.0.7"], "conditions": {"ready": false}}]}),
            )
            .unwrap();
        StoreZone(store)
    }

    fn ask(z: &StoreZone, name: &str, kind: Kind) -> Answer {
        z.answer(&Question { name: name.into(), kind })
    }

    fn a(name: &str, ip: [u8; 4]) -> Rr {
        Rr::A(name.into(), Ipv4Addr::from(ip))
    }

    #[test]
    fn services_resolve_as_coredns_answers_them() {
        let z = zone();
        let web = "web.default.svc.cluster.local";
        assert_eq!(ask(&z, web, Kind::A), Answer::Records(vec![a(web, [10, 96, 0, 20])]));
        assert_eq!(ask(&z, web, Kind::Aaaa), Answer::Records(vec![]));
        let db = "db.default.svc.cluster.local";
        assert_eq!(ask(&z, db, Kind::A), Answer::Records(vec![a(db, [10, 244, 0, 5]), a(db, [10, 244, 0, 6])]));
        let host = "db-0.db.default.svc.cluster.local";
        assert_eq!(ask(&z, host, Kind::A), Answer::Records(vec![a(host, [10, 244, 0, 5])]));
        assert_eq!(ask(&z, "db-1.db.default.svc.cluster.local", Kind::A), Answer::NxDomain);
        assert_eq!(
            ask(&z, "ext.default.svc.cluster.local", Kind::A),
            Answer::Records(vec![Rr::Cname("ext.default.svc.cluster.local".into(), "example.com".into())])
        );
        let srv = "_http._tcp.web.default.svc.cluster.local";
        assert_eq!(
            ask(&z, srv, Kind::Srv),
            Answer::Records(vec![Rr::Srv { name: srv.into(), port: 80, target: web.into() }])
        );
        assert_eq!(ask(&z, "nope.default.svc.cluster.local", Kind::A), Answer::NxDomain);
        let pod = "10-244-0-9.default.pod.cluster.local";
        assert_eq!(ask(&z, pod, Kind::A), Answer::Records(vec![a(pod, [10, 244, 0, 9])]));
        assert_eq!(ask(&z, "example.com", Kind::A), Answer::NotOurs);
    }
}
