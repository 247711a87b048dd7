//! Services: the API server's defaults and validation of a `v1` Service, and the address
//! ranges its allocators draw from (ClusterIPs from the Service CIDR, nodePorts from
//! 30000–32767).

use std::collections::HashSet;
use std::net::Ipv4Addr;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::field::{FieldError, Path};
use crate::validation::{int_or_name_port, label, port_number, validate_metadata};

/// The Service CIDR ClusterIPs come from: the API server's default `10.96.0.0/12`.
pub const SERVICE_CIDR: (Ipv4Addr, u8) = (Ipv4Addr::new(10, 96, 0, 0), 12);

/// Whether `ip` is in the Service CIDR.
pub fn in_service_cidr(ip: Ipv4Addr) -> bool {
    let (base, prefix) = SERVICE_CIDR;
    let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
    u32::from(ip) & mask == u32::from(base) & mask
}

/// The nodePorts allocated: the API server's default `--service-node-port-range`.
pub const NODE_PORTS: std::ops::RangeInclusive<u16> = 30000..=32767;

const TYPES: &[&str] = &["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"];
const PROTOCOLS: &[&str] = &["SCTP", "TCP", "UDP"];
const AFFINITIES: &[&str] = &["ClientIP", "None"];
const TRAFFIC_POLICIES: &[&str] = &["Cluster", "Local"];

const DNS1035_LABEL_FMT: &str = "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start \
     with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used \
     for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')";

/// Whether `s` is a DNS-1035 label (a Service name: it becomes a DNS name and an environment
/// variable's prefix).
pub fn is_dns1035_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.starts_with(|c: char| c.is_ascii_lowercase())
        && s.ends_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && s.bytes().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
}

/// The type of a Service, defaulted.
pub fn type_of(svc: &Service) -> &str {
    svc.spec.as_ref().and_then(|s| s.type_.as_deref()).unwrap_or("ClusterIP")
}

/// Whether the Service is headless (`clusterIP: None`): DNS names its endpoints directly.
pub fn is_headless(svc: &Service) -> bool {
    svc.spec.as_ref().and_then(|s| s.cluster_ip.as_deref()) == Some("None")
}

/// The API server's defaults of a Service (`SetDefaults_Service`).
pub fn defaults(svc: &mut Service) {
    let spec = svc.spec.get_or_insert_with(Default::default);
    spec.type_.get_or_insert_with(|| "ClusterIP".into());
    spec.session_affinity.get_or_insert_with(|| "None".into());
    let ty = spec.type_.clone().unwrap_or_default();
    if ty != "ExternalName" {
        spec.internal_traffic_policy.get_or_insert_with(|| "Cluster".into());
    }
    if ty == "NodePort" || ty == "LoadBalancer" {
        spec.external_traffic_policy.get_or_insert_with(|| "Cluster".into());
    }
    for p in spec.ports.iter_mut().flatten() {
        p.protocol.get_or_insert_with(|| "TCP".into());
        let unset = match &p.target_port {
            None => true,
            Some(IntOrString::Int(0)) => true,
            Some(IntOrString::String(s)) => s.is_empty(),
            Some(IntOrString::Int(_)) => false,
        };
        if unset {
            p.target_port = Some(IntOrString::Int(p.port));
        }
    }
}

/// The API server's validation of a Service on create.
pub fn validate(svc: &Service) -> Vec<FieldError> {
    let meta = Path::new("metadata");
    let mut errs: Vec<FieldError> = validate_metadata(&svc.metadata, &meta)
        .into_iter()
        // A Service is named as a DNS-1035 label, not a subdomain.
        .filter(|e| e.field != "metadata.name")
        .collect();
    if let Some(name) = svc.metadata.name.as_deref().filter(|n| !n.is_empty())
        && !is_dns1035_label(name)
    {
        errs.push(meta.child("name").invalid(name, DNS1035_LABEL_FMT));
    }
    let path = Path::new("spec");
    let Some(spec) = &svc.spec else { return errs };
    let ty = type_of(svc);
    if !TYPES.contains(&ty) {
        errs.push(path.child("type").not_supported(ty, TYPES));
    }
    let headless = is_headless(svc);
    let ports = spec.ports.as_deref().unwrap_or_default();
    if ports.is_empty() && ty != "ExternalName" && !headless {
        errs.push(path.child("ports").required(""));
    }
    if ty == "ExternalName" {
        if spec.external_name.as_deref().is_none_or(str::is_empty) {
            errs.push(path.child("externalName").required(""));
        }
        if let Some(ip) = spec.cluster_ip.as_deref().filter(|ip| !ip.is_empty()) {
            errs.push(path.child("clusterIP").invalid(ip, "must be empty for ExternalName services"));
        }
    } else if headless && ty != "ClusterIP" {
        let detail = format!("may not be set to 'None' for {ty} services");
        errs.push(path.child("clusterIPs").index(0).invalid("None", &detail));
    } else if let Some(ip) = spec.cluster_ip.as_deref().filter(|ip| !ip.is_empty() && *ip != "None")
        && ip.parse::<Ipv4Addr>().is_err()
    {
        errs.push(
            path.child("clusterIPs")
                .index(0)
                .invalid(ip, "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)"),
        );
    }
    if let Some(a) = spec.session_affinity.as_deref()
        && !AFFINITIES.contains(&a)
    {
        errs.push(path.child("sessionAffinity").not_supported(a, AFFINITIES));
    }
    for (field, policy) in [
        ("internalTrafficPolicy", &spec.internal_traffic_policy),
        ("externalTrafficPolicy", &spec.external_traffic_policy),
    ] {
        if let Some(p) = policy.as_deref()
            && !TRAFFIC_POLICIES.contains(&p)
        {
            errs.push(path.child(field).not_supported(p, TRAFFIC_POLICIES));
        }
    }
    let mut names = HashSet::new();
    for (i, p) in ports.iter().enumerate() {
        let pp = path.child("ports").index(i);
        match p.name.as_deref().filter(|n| !n.is_empty()) {
            None if ports.len() > 1 => errs.push(pp.child("name").required("")),
            None => {}
            Some(n) => {
                label(&pp.child("name"), n, &mut errs);
                if !names.insert(n) {
                    errs.push(pp.child("name").duplicate(n));
                }
            }
        }
        port_number(&pp.child("port"), p.port, &mut errs);
        if let Some(proto) = p.protocol.as_deref()
            && !PROTOCOLS.contains(&proto)
        {
            errs.push(pp.child("protocol").not_supported(proto, PROTOCOLS));
        }
        if let Some(t) = &p.target_port {
            int_or_name_port(&pp.child("targetPort"), t, &mut errs);
        }
        if let Some(np) = p.node_port.filter(|n| *n != 0) {
            if ty != "NodePort" && ty != "LoadBalancer" {
                errs.push(pp.child("nodePort").forbidden(&format!("may not be used when `type` is '{ty}'")));
            } else if u16::try_from(np).ok().is_none_or(|n| !NODE_PORTS.contains(&n)) {
                errs.push(pp.child("nodePort").invalid_num(
                    np.into(),
                    "provided port is not in the valid range. The range of valid ports is 30000-32767",
                ));
            }
        }
    }
    if let Some(selector) = &spec.selector {
        crate::validation::validate_labels(selector, &path.child("selector"), &mut errs);
    }
    errs
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{ServicePort, ServiceSpec};

    fn svc(spec: ServiceSpec) -> Service {
        Service {
            metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                name: Some("web".into()),
                namespace: Some("default".into()),
                ..Default::default()
            },
            spec: Some(spec),
            ..Default::default()
        }
    }

    fn port(name: Option<&str>, port: i32) -> ServicePort {
        ServicePort { name: name.map(str::to_string), port, ..Default::default() }
    }

    #[test]
    fn the_service_cidr() {
        assert!(in_service_cidr(Ipv4Addr::new(10, 96, 0, 10)));
        assert!(in_service_cidr(Ipv4Addr::new(10, 111, 255, 255)));
        assert!(!in_service_cidr(Ipv4Addr::new(10, 112, 0, 0)));
        assert!(!in_service_cidr(Ipv4Addr::new(8, 8, 8, 8)));
    }

    #[test]
    fn defaults_as_the_api_server() {
        let mut s = svc(ServiceSpec { ports: Some(vec![port(None, 80)]), ..Default::default() });
        defaults(&mut s);
        let spec = s.spec.unwrap();
        assert_eq!(spec.type_.as_deref(), Some("ClusterIP"));
        assert_eq!(spec.session_affinity.as_deref(), Some("None"));
        assert_eq!(spec.internal_traffic_policy.as_deref(), Some("Cluster"));
        assert_eq!(spec.external_traffic_policy, None);
        let p = &spec.ports.unwrap()[0];
        assert_eq!((p.protocol.as_deref(), p.target_port.clone()), (Some("TCP"), Some(IntOrString::Int(80))));
    }

    #[test]
    fn errors_are_worded_as_the_api_server_words_them() {
        let shown = |s: Service| validate(&s).iter().map(ToString::to_string).collect::<Vec<_>>();
        let mut s = svc(ServiceSpec {
            ports: Some(vec![port(None, 80), port(Some("http"), 0), port(Some("http"), 81)]),
            type_: Some("ClusterIP".into()),
            ..Default::default()
        });
        s.spec.as_mut().unwrap().ports.as_mut().unwrap()[2].node_port = Some(30080);
        assert_eq!(
            shown(s),
            [
                "spec.ports[0].name: Required value",
                "spec.ports[1].port: Invalid value: 0: must be between 1 and 65535, inclusive",
                "spec.ports[2].name: Duplicate value: \"http\"",
                "spec.ports[2].nodePort: Forbidden: may not be used when `type` is 'ClusterIP'",
            ]
        );
        assert_eq!(shown(svc(ServiceSpec::default())), ["spec.ports: Required value"]);
        let headless = svc(ServiceSpec { cluster_ip: Some("None".into()), ..Default::default() });
        assert!(validate(&headless).is_empty(), "a headless Service needs no ports");
        let mut bad = svc(ServiceSpec { ports: Some(vec![port(None, 80)]), ..Default::default() });
        bad.metadata.name = Some("1web".into());
        assert!(shown(bad)[0].starts_with("metadata.name: Invalid value: \"1web\": a DNS-1035 label"));
        let np = ServicePort { node_port: Some(80), ..port(None, 80) };
        let s = svc(ServiceSpec { ports: Some(vec![np]), type_: Some("NodePort".into()), ..Default::default() });
        assert_eq!(
            shown(s),
            [
                "spec.ports[0].nodePort: Invalid value: 80: provided port is not in the valid range. The range of valid ports is 30000-32767"
            ]
        );
    }
}
