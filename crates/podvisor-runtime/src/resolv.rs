//! A pod's `/etc/resolv.conf`, as the kubelet makes it from `dnsPolicy` and `dnsConfig`:
//! `ClusterFirst` (the default) points at cluster DNS with the namespace's search path and
//! `ndots:5`; a `hostNetwork` pod with `ClusterFirst`, and `Default`, get the host's file;
//! `ClusterFirstWithHostNet` gets cluster DNS even on the host's network; `None` only what
//! `dnsConfig` says. `dnsConfig` adds nameservers and search domains and sets options.

use std::net::Ipv4Addr;

use k8s_openapi::api::core::v1::Pod;

/// Cluster DNS as the node is configured with it (`--cluster-dns`, `--cluster-domain`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterDns {
    /// The server pods ask.
    pub server: Ipv4Addr,
    /// The cluster's domain (`cluster.local`).
    pub domain: String,
}

/// The most search domains a resolver reads (glibc's limit since 2.26 is 32).
const MAX_SEARCHES: usize = 32;

/// The nameservers, search domains and options of a `resolv.conf` text.
fn parse(text: &str) -> (Vec<String>, Vec<String>, Vec<String>) {
    let (mut servers, mut searches, mut options) = (Vec::new(), Vec::new(), Vec::new());
    for line in text.lines() {
        let mut words = line.split_whitespace();
        match words.next() {
            Some("nameserver") => servers.extend(words.next().map(str::to_string)),
            Some("search" | "domain") => searches = words.map(str::to_string).collect(),
            Some("options") => options.extend(words.map(str::to_string)),
            _ => {}
        }
    }
    (servers, searches, options)
}

/// The `resolv.conf` of `pod` on a node whose own is `host`, with cluster DNS if the node has
/// it.
pub fn resolv_conf(pod: &Pod, host: &str, cluster: Option<&ClusterDns>) -> String {
    let spec = pod.spec.clone().unwrap_or_default();
    let host_network = spec.host_network == Some(true);
    let policy = spec.dns_policy.as_deref().unwrap_or("ClusterFirst");
    let wants_cluster = match policy {
        "ClusterFirstWithHostNet" => true,
        "ClusterFirst" => !host_network,
        _ => false,
    };
    let (mut servers, mut searches, mut options) = match (policy, wants_cluster, cluster) {
        ("None", _, _) => (Vec::new(), Vec::new(), Vec::new()),
        (_, true, Some(dns)) => {
            let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
            let d = &dns.domain;
            let mut searches = vec![format!("{ns}.svc.{d}"), format!("svc.{d}"), d.clone()];
            searches.extend(parse(host).1);
            (vec![dns.server.to_string()], searches, vec!["ndots:5".to_string()])
        }
        // Default, ClusterFirst on the host's network, or no cluster DNS on this node.
        _ => parse(host),
    };
    if let Some(config) = &spec.dns_config {
        servers.extend(config.nameservers.iter().flatten().cloned());
        searches.extend(config.searches.iter().flatten().cloned());
        for o in config.options.iter().flatten() {
            let Some(name) = o.name.as_deref() else { continue };
            options.retain(|x| x.split(':').next() != Some(name));
            options.push(match &o.value {
                Some(v) => format!("{name}:{v}"),
                None => name.to_string(),
            });
        }
    }
    let mut seen = std::collections::HashSet::new();
    searches.retain(|s| seen.insert(s.clone()));
    searches.truncate(MAX_SEARCHES);
    let mut out = String::new();
    if !searches.is_empty() {
        out.push_str(&format!("search {}\n", searches.join(" ")));
    }
    for s in servers {
        out.push_str(&format!("nameserver {s}\n"));
    }
    if !options.is_empty() {
        out.push_str(&format!("options {}\n", options.join(" ")));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const HOST: &str = "search corp.example\nnameserver 10.255.255.53\noptions edns0\n";

    fn dns() -> ClusterDns {
        ClusterDns { server: Ipv4Addr::new(10, 96, 0, 10), domain: "cluster.local".into() }
    }

    fn pod(spec: serde_json::Value) -> Pod {
        serde_json::from_value(json!({"metadata": {"name": "p", "namespace": "shop"}, "spec": spec})).unwrap()
    }

    #[test]
    fn cluster_first_points_at_cluster_dns_with_the_namespace_search_path() {
        assert_eq!(
            resolv_conf(&pod(json!({"containers": []})), HOST, Some(&dns())),
            "search shop.svc.cluster.local svc.cluster.local cluster.local corp.example\nnameserver 10.96.0.10\noptions ndots:5\n"
        );
    }

    #[test]
    fn host_network_default_and_none_follow_the_kubelet() {
        let host_net = pod(json!({"hostNetwork": true, "containers": []}));
        assert_eq!(resolv_conf(&host_net, HOST, Some(&dns())), HOST);
        let with_host_net = pod(json!({"hostNetwork": true, "dnsPolicy": "ClusterFirstWithHostNet", "containers": []}));
        assert!(resolv_conf(&with_host_net, HOST, Some(&dns())).contains("nameserver 10.96.0.10\n"));
        assert_eq!(resolv_conf(&pod(json!({"dnsPolicy": "Default", "containers": []})), HOST, Some(&dns())), HOST);
        assert_eq!(resolv_conf(&pod(json!({"containers": []})), HOST, None), HOST, "no cluster DNS: the host's");
        let none = pod(json!({"dnsPolicy": "None", "containers": [], "dnsConfig": {
            "nameservers": ["1.1.1.1"], "searches": ["a.example", "a.example"],
            "options": [{"name": "ndots", "value": "2"}, {"name": "edns0"}]}}));
        assert_eq!(
            resolv_conf(&none, HOST, Some(&dns())),
            "search a.example\nnameserver 1.1.1.1\noptions ndots:2 edns0\n"
        );
        let merged = pod(json!({"containers": [], "dnsConfig": {"options": [{"name": "ndots", "value": "1"}]}}));
        assert!(resolv_conf(&merged, HOST, Some(&dns())).ends_with("options ndots:1\n"));
    }
}
