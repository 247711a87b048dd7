//! The API server's allocators for Services: a ClusterIP from the Service CIDR and a nodePort
//! from the node-port range for each port of a NodePort Service, free of every other Service's,
//! chosen at random as the API server chooses them, or the ones asked for if they are free.

use std::collections::HashSet;
use std::net::Ipv4Addr;

use podvisor_objects::service::{NODE_PORTS, SERVICE_CIDR, in_service_cidr};
use podvisor_objects::uid::random_u64;
use serde_json::{Value, json};

use crate::admission::AdmissionError;

/// The first address of the Service CIDR is the `kubernetes` Service's, the tenth cluster
/// DNS's: neither is handed out at random.
const RESERVED: [u32; 2] = [1, 10];

fn invalid(obj: &Value, field: &str, message: String) -> AdmissionError {
    let name = obj.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("");
    AdmissionError::Field { kind: "Service".into(), name: name.into(), field: field.into(), message }
}

/// What every stored Service holds: ClusterIPs and nodePorts.
fn taken(services: &[&Value]) -> (HashSet<Ipv4Addr>, HashSet<u16>) {
    let mut ips = HashSet::new();
    let mut ports = HashSet::new();
    for s in services {
        if let Some(ip) = s.pointer("/spec/clusterIP").and_then(Value::as_str).and_then(|i| i.parse().ok()) {
            ips.insert(ip);
        }
        for p in s.pointer("/spec/ports").and_then(Value::as_array).into_iter().flatten() {
            if let Some(np) = p.get("nodePort").and_then(Value::as_u64).and_then(|n| u16::try_from(n).ok()) {
                ports.insert(np);
            }
        }
    }
    (ips, ports)
}

/// What the API server allocates for a new object of `resource` beside the `existing` ones of
/// its kind (a Service's ClusterIP and nodePorts; nothing for other kinds), to run under the
/// store's lock with the create.
pub fn allocate_for(
    resource: podvisor_objects::kinds::Resource,
    obj: &mut Value,
    existing: &[&Value],
) -> Result<(), AdmissionError> {
    if resource == podvisor_objects::kinds::Resource::Services { allocate(obj, existing) } else { Ok(()) }
}

/// An update that makes a NodePort (or LoadBalancer) Service one of a type without nodePorts
/// drops the nodePorts it still carries (a merge patch of only `type` keeps them), as the API
/// server drops type-dependent fields.
pub fn drop_type_dependent(old: &Value, new: &mut Value) {
    let has_node_ports =
        |v: &Value| matches!(v.pointer("/spec/type").and_then(Value::as_str), Some("NodePort" | "LoadBalancer"));
    if !has_node_ports(old) || has_node_ports(new) {
        return;
    }
    for p in new.pointer_mut("/spec/ports").and_then(Value::as_array_mut).into_iter().flatten() {
        if let Some(m) = p.as_object_mut() {
            m.remove("nodePort");
        }
    }
}

/// Gives the new Service `obj` its ClusterIP (unless headless or `ExternalName`) and its
/// nodePorts (a NodePort or LoadBalancer Service), beside the `existing` Services.
pub fn allocate(obj: &mut Value, existing: &[&Value]) -> Result<(), AdmissionError> {
    let (ips, ports) = taken(existing);
    let ty = obj.pointer("/spec/type").and_then(Value::as_str).unwrap_or("ClusterIP").to_string();
    if ty == "ExternalName" {
        return Ok(());
    }
    let requested = obj.pointer("/spec/clusterIP").and_then(Value::as_str).unwrap_or("").to_string();
    let ip = match requested.as_str() {
        "None" => "None".to_string(),
        "" => pick_ip(&ips).ok_or_else(|| {
            invalid(obj, "spec.clusterIPs", "Internal error: failed to allocate a serviceIP: range is full".into())
        })?,
        asked => {
            let failed = |why: String| {
                invalid(
                    obj,
                    "spec.clusterIPs",
                    format!("Invalid value: []string{{{asked:?}}}: failed to allocate IP {asked}: {why}"),
                )
            };
            let ip: Ipv4Addr = asked.parse().map_err(|_| failed("not a valid IP".into()))?;
            let (base, prefix) = SERVICE_CIDR;
            if !in_service_cidr(ip) {
                return Err(failed(format!(
                    "the provided IP ({ip}) is not in the valid range. The range of valid IPs is {base}/{prefix}"
                )));
            }
            let offset = u32::from(ip) - u32::from(SERVICE_CIDR.0);
            if ips.contains(&ip) || RESERVED.contains(&offset) {
                return Err(failed("provided IP is already allocated".into()));
            }
            asked.to_string()
        }
    };
    obj["spec"]["clusterIP"] = json!(ip);
    obj["spec"]["clusterIPs"] = json!([ip]);
    obj["spec"]["ipFamilies"] = json!(["IPv4"]);
    obj["spec"]["ipFamilyPolicy"] = json!("SingleStack");
    if ty != "NodePort" && ty != "LoadBalancer" {
        return Ok(());
    }
    let mut used = ports;
    let count = obj.pointer("/spec/ports").and_then(Value::as_array).map_or(0, Vec::len);
    for i in 0..count {
        let asked = obj["spec"]["ports"][i].get("nodePort").and_then(Value::as_u64).filter(|n| *n != 0);
        let port = match asked {
            Some(n) => {
                let n = u16::try_from(n).unwrap_or(0);
                if !used.insert(n) {
                    let field = format!("spec.ports[{i}].nodePort");
                    return Err(invalid(
                        obj,
                        &field,
                        format!("Invalid value: {n}: provided port is already allocated"),
                    ));
                }
                n
            }
            None => {
                let n = pick_port(&used).ok_or_else(|| {
                    let field = format!("spec.ports[{i}].nodePort");
                    invalid(obj, &field, "Internal error: failed to allocate a nodePort: range is full".into())
                })?;
                used.insert(n);
                n
            }
        };
        obj["spec"]["ports"][i]["nodePort"] = json!(port);
    }
    Ok(())
}

/// A free address of the Service CIDR, but its network and broadcast addresses and the reserved.
fn pick_ip(taken: &HashSet<Ipv4Addr>) -> Option<String> {
    let (base, prefix) = SERVICE_CIDR;
    let size = 1u32 << (32 - u32::from(prefix));
    let start = (random_u64() % u64::from(size)) as u32;
    (0..size)
        .map(|i| (start + i) % size)
        .filter(|off| *off != 0 && *off != size - 1 && !RESERVED.contains(off))
        .map(|off| Ipv4Addr::from(u32::from(base) + off))
        .find(|ip| !taken.contains(ip))
        .map(|ip| ip.to_string())
}

fn pick_port(taken: &HashSet<u16>) -> Option<u16> {
    let (lo, hi) = (*NODE_PORTS.start(), *NODE_PORTS.end());
    let size = u32::from(hi - lo) + 1;
    let start = (random_u64() % u64::from(size)) as u32;
    (0..size).map(|i| lo + ((start + i) % size) as u16).find(|p| !taken.contains(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn svc(spec: Value) -> Value {
        json!({"metadata": {"name": "web", "namespace": "default"}, "spec": spec})
    }

    #[test]
    fn a_cluster_ip_is_free_in_range_and_a_taken_one_is_refused() {
        let mut a = svc(json!({"ports": [{"port": 80}]}));
        allocate(&mut a, &[]).unwrap();
        let ip: Ipv4Addr = a["spec"]["clusterIP"].as_str().unwrap().parse().unwrap();
        assert!(in_service_cidr(ip));
        assert_eq!(a["spec"]["clusterIPs"], json!([ip.to_string()]));
        assert_eq!(a["spec"]["ipFamilyPolicy"], "SingleStack");
        let mut b = svc(json!({"clusterIP": ip.to_string(), "ports": [{"port": 80}]}));
        let e = allocate(&mut b, &[&a]).unwrap_err().to_string();
        assert_eq!(
            e,
            format!(
                "Service \"web\" is invalid: spec.clusterIPs: Invalid value: []string{{\"{ip}\"}}: failed to allocate IP {ip}: provided IP is already allocated"
            )
        );
        let mut c = svc(json!({"clusterIP": "1.2.3.4"}));
        assert!(allocate(&mut c, &[]).unwrap_err().to_string().contains("The range of valid IPs is 10.96.0.0/12"));
        let mut h = svc(json!({"clusterIP": "None"}));
        allocate(&mut h, &[&a]).unwrap();
        assert_eq!(h["spec"]["clusterIPs"], json!(["None"]));
    }

    #[test]
    fn node_ports_are_allocated_per_port_and_never_twice() {
        let mut a = svc(json!({"type": "NodePort", "ports": [{"port": 80, "nodePort": 30080}, {"port": 81}]}));
        allocate(&mut a, &[]).unwrap();
        assert_eq!(a["spec"]["ports"][0]["nodePort"], 30080);
        let second = a["spec"]["ports"][1]["nodePort"].as_u64().unwrap();
        assert!((30000..=32767).contains(&second) && second != 30080);
        let mut b = svc(json!({"type": "NodePort", "ports": [{"port": 80, "nodePort": 30080}]}));
        assert_eq!(
            allocate(&mut b, &[&a]).unwrap_err().to_string(),
            "Service \"web\" is invalid: spec.ports[0].nodePort: Invalid value: 30080: provided port is already allocated"
        );
    }
}
