//! Server-side printing: the `meta.k8s.io/v1` Table that `kubectl get` asks for, with the
//! columns and cell strings of the API server's printers for each resource.

use jiff::Timestamp;
use k8s_openapi::api::core::v1::Pod;
use serde_json::{Value, json};

use podvisor_objects::columns::{human_duration, pod_columns};
use podvisor_objects::kinds::Resource;

/// What a row carries besides its cells (`includeObject`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Include {
    /// Nothing.
    None,
    /// The object's metadata as `PartialObjectMetadata` (the default).
    #[default]
    Metadata,
    /// The whole object.
    Object,
}

impl Include {
    /// Parses the `includeObject` query parameter.
    pub fn parse(s: Option<&str>) -> Include {
        match s {
            Some("None") => Include::None,
            Some("Object") => Include::Object,
            _ => Include::Metadata,
        }
    }
}

/// Column names and priorities (0 always shown, 1 with `-o wide`).
fn columns(r: Resource) -> &'static [(&'static str, u8)] {
    match r {
        Resource::Pods => &[
            ("Name", 0),
            ("Ready", 0),
            ("Status", 0),
            ("Restarts", 0),
            ("Age", 0),
            ("IP", 1),
            ("Node", 1),
            ("Nominated Node", 1),
            ("Readiness Gates", 1),
        ],
        Resource::Jobs => &[
            ("Name", 0),
            ("Status", 0),
            ("Completions", 0),
            ("Duration", 0),
            ("Age", 0),
            ("Containers", 1),
            ("Images", 1),
            ("Selector", 1),
        ],
        Resource::CronJobs => &[
            ("Name", 0),
            ("Schedule", 0),
            ("Timezone", 0),
            ("Suspend", 0),
            ("Active", 0),
            ("Last Schedule", 0),
            ("Age", 0),
            ("Containers", 1),
            ("Images", 1),
            ("Selector", 1),
        ],
        Resource::Deployments => &[
            ("Name", 0),
            ("Ready", 0),
            ("Up-to-date", 0),
            ("Available", 0),
            ("Age", 0),
            ("Containers", 1),
            ("Images", 1),
            ("Selector", 1),
        ],
        Resource::ReplicaSets => &[
            ("Name", 0),
            ("Desired", 0),
            ("Current", 0),
            ("Ready", 0),
            ("Age", 0),
            ("Containers", 1),
            ("Images", 1),
            ("Selector", 1),
        ],
        Resource::Events => &[
            ("Last Seen", 0),
            ("Type", 0),
            ("Reason", 0),
            ("Object", 0),
            ("Subobject", 1),
            ("Source", 1),
            ("Message", 0),
            ("First Seen", 1),
            ("Count", 1),
            ("Name", 1),
        ],
        Resource::ConfigMaps => &[("Name", 0), ("Data", 0), ("Age", 0)],
        Resource::Secrets => &[("Name", 0), ("Type", 0), ("Data", 0), ("Age", 0)],
        Resource::Namespaces => &[("Name", 0), ("Status", 0), ("Age", 0)],
        Resource::Nodes => &[
            ("Name", 0),
            ("Status", 0),
            ("Roles", 0),
            ("Age", 0),
            ("Version", 0),
            ("Internal-IP", 1),
            ("External-IP", 1),
            ("OS-Image", 1),
            ("Kernel-Version", 1),
            ("Container-Runtime", 1),
        ],
        Resource::Services => &[
            ("Name", 0),
            ("Type", 0),
            ("Cluster-IP", 0),
            ("External-IP", 0),
            ("Port(s)", 0),
            ("Age", 0),
            ("Selector", 1),
        ],
        Resource::Endpoints => &[("Name", 0), ("Endpoints", 0), ("Age", 0)],
        Resource::Leases => &[("Name", 0), ("Holder", 0), ("Age", 0)],
        Resource::PodMetrics | Resource::NodeMetrics => &[("Name", 0), ("CPU", 0), ("Memory", 0), ("Window", 0)],
        Resource::SelfSubjectAccessReviews => &[("Name", 0)],
        Resource::EndpointSlices => &[("Name", 0), ("AddressType", 0), ("Ports", 0), ("Endpoints", 0), ("Age", 0)],
        Resource::ServiceAccounts => &[("Name", 0), ("Secrets", 0), ("Age", 0)],
        Resource::Roles | Resource::ClusterRoles => &[("Name", 0), ("Created At", 0)],
        Resource::RoleBindings | Resource::ClusterRoleBindings => {
            &[("Name", 0), ("Role", 0), ("Age", 0), ("Users", 1), ("Groups", 1), ("ServiceAccounts", 1)]
        }
        Resource::StatefulSets => &[("Name", 0), ("Ready", 0), ("Age", 0), ("Containers", 1), ("Images", 1)],
        Resource::DaemonSets => &[
            ("Name", 0),
            ("Desired", 0),
            ("Current", 0),
            ("Ready", 0),
            ("Up-to-date", 0),
            ("Available", 0),
            ("Node Selector", 0),
            ("Age", 0),
            ("Containers", 1),
            ("Images", 1),
            ("Selector", 1),
        ],
        Resource::PersistentVolumeClaims => &[
            ("Name", 0),
            ("Status", 0),
            ("Volume", 0),
            ("Capacity", 0),
            ("Access Modes", 0),
            ("StorageClass", 0),
            ("VolumeAttributesClass", 0),
            ("Age", 0),
            ("VolumeMode", 1),
        ],
        Resource::PersistentVolumes => &[
            ("Name", 0),
            ("Capacity", 0),
            ("Access Modes", 0),
            ("Reclaim Policy", 0),
            ("Status", 0),
            ("Claim", 0),
            ("StorageClass", 0),
            ("VolumeAttributesClass", 0),
            ("Reason", 0),
            ("Age", 0),
            ("VolumeMode", 1),
        ],
        Resource::StorageClasses => &[
            ("Name", 0),
            ("Provisioner", 0),
            ("ReclaimPolicy", 0),
            ("VolumeBindingMode", 0),
            ("AllowVolumeExpansion", 0),
            ("Age", 0),
        ],
        Resource::PriorityClasses => {
            &[("Name", 0), ("Value", 0), ("Global-Default", 0), ("Age", 0), ("PreemptionPolicy", 0)]
        }
    }
}

/// Access modes as kubectl abbreviates them (`RWO,ROX`).
fn access_modes(v: &Value, p: &str) -> String {
    let short: Vec<&str> = list(v, p)
        .filter_map(Value::as_str)
        .map(|m| match m {
            "ReadWriteOnce" => "RWO",
            "ReadOnlyMany" => "ROX",
            "ReadWriteMany" => "RWX",
            "ReadWriteOncePod" => "RWOP",
            other => other,
        })
        .collect();
    short.join(",")
}

/// `Terminating` for an object being deleted, as kubectl shows a claim's or volume's status.
fn terminating_or<'a>(v: &Value, phase: &'a str) -> &'a str {
    if v.pointer("/metadata/deletionTimestamp").is_some_and(|t| !t.is_null()) { "Terminating" } else { phase }
}

/// A text cell that kubectl shows as `<unset>` when empty.
fn or_unset(t: &str) -> String {
    if t.is_empty() { "<unset>".to_string() } else { t.to_string() }
}

/// At most three items, then how many more, as kubectl's printers list endpoints.
fn first_three(items: Vec<String>) -> String {
    if items.is_empty() {
        return "<none>".into();
    }
    let shown = items.iter().take(3).cloned().collect::<Vec<_>>().join(",");
    if items.len() > 3 { format!("{shown} + {} more...", items.len() - 3) } else { shown }
}

fn list<'a>(v: &'a Value, pointer: &str) -> impl Iterator<Item = &'a Value> {
    v.pointer(pointer).and_then(Value::as_array).into_iter().flatten()
}

fn integer_column(name: &str) -> bool {
    matches!(name, "Up-to-date" | "Available" | "Desired" | "Current" | "Count" | "Data" | "Active" | "Value")
}

/// The column definitions of `resource`'s Table.
pub fn column_definitions(r: Resource) -> Value {
    Value::Array(
        columns(r)
            .iter()
            .map(|(name, priority)| {
                let format = if *name == "Name" { "name" } else { "" };
                let ty = if integer_column(name) { "integer" } else { "string" };
                json!({"name": name, "type": ty, "format": format, "description": "", "priority": priority})
            })
            .collect(),
    )
}

fn s<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

fn int(v: &Value, pointer: &str) -> i64 {
    v.pointer(pointer).and_then(Value::as_i64).unwrap_or(0)
}

fn time(v: &Value, pointer: &str) -> Option<Timestamp> {
    v.pointer(pointer).and_then(Value::as_str).and_then(|t| t.parse().ok())
}

/// kubectl's age of a timestamp at `now`, `<unknown>` when absent.
fn age(t: Option<Timestamp>, now: Timestamp) -> String {
    t.map(|t| human_duration(now.duration_since(t))).unwrap_or_else(|| "<unknown>".into())
}

fn or_none(s: &str) -> String {
    if s.is_empty() { "<none>".into() } else { s.to_string() }
}

fn joined(v: &Value, pointer: &str, field: &str) -> String {
    v.pointer(pointer)
        .and_then(Value::as_array)
        .map(|cs| cs.iter().map(|c| s(c, &format!("/{field}"))).collect::<Vec<_>>().join(","))
        .unwrap_or_default()
}

pub(crate) fn selector_string(v: &Value) -> String {
    let mut parts: Vec<String> = v
        .pointer("/spec/selector/matchLabels")
        .and_then(Value::as_object)
        .map(|m| m.iter().map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or(""))).collect())
        .unwrap_or_default();
    for e in v.pointer("/spec/selector/matchExpressions").and_then(Value::as_array).into_iter().flatten() {
        let values: Vec<&str> =
            e.get("values").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str).collect();
        let (k, op) = (s(e, "/key"), s(e, "/operator"));
        parts.push(match op {
            "In" => format!("{k} in ({})", values.join(",")),
            "NotIn" => format!("{k} notin ({})", values.join(",")),
            "Exists" => k.to_string(),
            _ => format!("!{k}"),
        });
    }
    if parts.is_empty() { "<none>".into() } else { parts.join(",") }
}

fn has_condition(v: &Value, ty: &str) -> bool {
    v.pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|cs| cs.iter().any(|c| s(c, "/type") == ty && s(c, "/status") == "True"))
}

/// The cells of one row.
pub fn cells(r: Resource, v: &Value, now: Timestamp) -> Vec<Value> {
    let name = s(v, "/metadata/name").to_string();
    let created = age(time(v, "/metadata/creationTimestamp"), now);
    match r {
        Resource::Pods => {
            let pod: Pod = serde_json::from_value(v.clone()).unwrap_or_default();
            let c = pod_columns(&pod, now);
            let gates = v.pointer("/spec/readinessGates").and_then(Value::as_array).map(|g| {
                let n = g
                    .iter()
                    .filter(|g| {
                        v.pointer("/status/conditions").and_then(Value::as_array).is_some_and(|cs| {
                            cs.iter().any(|c| s(c, "/type") == s(g, "/conditionType") && s(c, "/status") == "True")
                        })
                    })
                    .count();
                format!("{n}/{}", g.len())
            });
            vec![
                json!(name),
                json!(c.ready),
                json!(c.status),
                json!(c.restarts),
                json!(created),
                json!(or_none(s(v, "/status/podIP"))),
                json!(or_none(s(v, "/spec/nodeName"))),
                json!(or_none(s(v, "/status/nominatedNodeName"))),
                json!(gates.unwrap_or_else(|| "<none>".into())),
            ]
        }
        Resource::Jobs => {
            let status = if has_condition(v, "Complete") {
                "Complete"
            } else if has_condition(v, "Failed") {
                "Failed"
            } else if v.pointer("/metadata/deletionTimestamp").is_some() {
                "Terminating"
            } else if has_condition(v, "Suspended") {
                "Suspended"
            } else if has_condition(v, "FailureTarget") {
                "FailureTarget"
            } else if has_condition(v, "SuccessCriteriaMet") {
                "SuccessCriteriaMet"
            } else {
                "Running"
            };
            let succeeded = int(v, "/status/succeeded");
            let completions = match v.pointer("/spec/completions").and_then(Value::as_i64) {
                Some(c) => format!("{succeeded}/{c}"),
                None => {
                    let p = v.pointer("/spec/parallelism").and_then(Value::as_i64).unwrap_or(1);
                    if p > 1 { format!("{succeeded}/1 of {p}") } else { format!("{succeeded}/1") }
                }
            };
            let duration = match (time(v, "/status/startTime"), time(v, "/status/completionTime")) {
                (Some(a), Some(b)) => human_duration(b.duration_since(a)),
                (Some(a), None) => human_duration(now.duration_since(a)),
                _ => String::new(),
            };
            let cs = "/spec/template/spec/containers";
            vec![
                json!(name),
                json!(status),
                json!(completions),
                json!(duration),
                json!(created),
                json!(joined(v, cs, "name")),
                json!(joined(v, cs, "image")),
                json!(selector_string(v)),
            ]
        }
        Resource::CronJobs => {
            let cs = "/spec/jobTemplate/spec/template/spec/containers";
            let active = v.pointer("/status/active").and_then(Value::as_array).map_or(0, Vec::len);
            let last = time(v, "/status/lastScheduleTime").map_or_else(|| "<none>".into(), |t| age(Some(t), now));
            let selector = v
                .pointer("/spec/jobTemplate/spec/selector")
                .map_or_else(|| "<none>".to_string(), |sel| selector_string(&json!({"spec": {"selector": sel}})));
            vec![
                json!(name),
                json!(s(v, "/spec/schedule")),
                json!(or_none(s(v, "/spec/timeZone"))),
                json!(if v.pointer("/spec/suspend") == Some(&json!(true)) { "True" } else { "False" }),
                json!(active),
                json!(last),
                json!(created),
                json!(joined(v, cs, "name")),
                json!(joined(v, cs, "image")),
                json!(selector),
            ]
        }
        Resource::Deployments | Resource::ReplicaSets => {
            let cs = "/spec/template/spec/containers";
            let desired = v.pointer("/spec/replicas").and_then(Value::as_i64).unwrap_or(1);
            let mut row = vec![json!(name)];
            if r == Resource::Deployments {
                row.push(json!(format!("{}/{desired}", int(v, "/status/readyReplicas"))));
                row.push(json!(int(v, "/status/updatedReplicas")));
                row.push(json!(int(v, "/status/availableReplicas")));
            } else {
                row.push(json!(desired));
                row.push(json!(int(v, "/status/replicas")));
                row.push(json!(int(v, "/status/readyReplicas")));
            }
            row.push(json!(created));
            row.push(json!(joined(v, cs, "name")));
            row.push(json!(joined(v, cs, "image")));
            row.push(json!(selector_string(v)));
            row
        }
        Resource::Events => {
            let first = time(v, "/firstTimestamp").or_else(|| time(v, "/eventTime"));
            let last = time(v, "/series/lastObservedTime").or_else(|| time(v, "/lastTimestamp")).or(first);
            let kind = s(v, "/involvedObject/kind").to_lowercase();
            let source = {
                let c = s(v, "/source/component");
                let c = if c.is_empty() { s(v, "/reportingComponent") } else { c };
                match s(v, "/source/host") {
                    "" => c.to_string(),
                    h => format!("{c}, {h}"),
                }
            };
            vec![
                json!(age(last, now)),
                json!(s(v, "/type")),
                json!(s(v, "/reason")),
                json!(format!("{kind}/{}", s(v, "/involvedObject/name"))),
                json!(s(v, "/involvedObject/fieldPath")),
                json!(source),
                json!(s(v, "/message").trim()),
                json!(age(first, now)),
                json!(int(v, "/count").max(1)),
                json!(name),
            ]
        }
        Resource::ConfigMaps => {
            let n = ["/data", "/binaryData"]
                .iter()
                .map(|p| v.pointer(p).and_then(Value::as_object).map_or(0, |m| m.len()))
                .sum::<usize>();
            vec![json!(name), json!(n), json!(created)]
        }
        Resource::Secrets => {
            let n = ["/data", "/stringData"]
                .iter()
                .map(|p| v.pointer(p).and_then(Value::as_object).map_or(0, |m| m.len()))
                .sum::<usize>();
            vec![json!(name), json!(s(v, "/type")), json!(n), json!(created)]
        }
        Resource::Namespaces => vec![json!(name), json!(s(v, "/status/phase")), json!(created)],
        Resource::Nodes => {
            let ready = if v
                .pointer("/status/conditions")
                .and_then(Value::as_array)
                .is_some_and(|cs| cs.iter().any(|c| s(c, "/type") == "Ready" && s(c, "/status") == "True"))
            {
                "Ready"
            } else {
                "NotReady"
            };
            let ip = v
                .pointer("/status/addresses")
                .and_then(Value::as_array)
                .and_then(|a| a.iter().find(|a| s(a, "/type") == "InternalIP"))
                .map(|a| s(a, "/address").to_string())
                .unwrap_or_else(|| "<none>".into());
            vec![
                json!(name),
                json!(ready),
                json!("<none>"),
                json!(created),
                json!(s(v, "/status/nodeInfo/kubeletVersion")),
                json!(ip),
                json!("<none>"),
                json!(s(v, "/status/nodeInfo/osImage")),
                json!(s(v, "/status/nodeInfo/kernelVersion")),
                json!(s(v, "/status/nodeInfo/containerRuntimeVersion")),
            ]
        }
        Resource::Services => {
            let ty = s(v, "/spec/type");
            let cluster_ip = or_none(s(v, "/spec/clusterIP"));
            let external = match ty {
                "ExternalName" => s(v, "/spec/externalName").to_string(),
                "LoadBalancer" => {
                    let ingress: Vec<&str> = list(v, "/status/loadBalancer/ingress")
                        .map(|i| if s(i, "/ip").is_empty() { s(i, "/hostname") } else { s(i, "/ip") })
                        .collect();
                    if ingress.is_empty() { "<pending>".into() } else { ingress.join(",") }
                }
                _ => "<none>".into(),
            };
            let ports: Vec<String> = list(v, "/spec/ports")
                .map(|p| match int(p, "/nodePort") {
                    0 => format!("{}/{}", int(p, "/port"), s(p, "/protocol")),
                    np => format!("{}:{np}/{}", int(p, "/port"), s(p, "/protocol")),
                })
                .collect();
            let ports = if ports.is_empty() { "<none>".to_string() } else { ports.join(",") };
            let selector: Vec<String> = v
                .pointer("/spec/selector")
                .and_then(Value::as_object)
                .map(|m| m.iter().map(|(k, x)| format!("{k}={}", x.as_str().unwrap_or(""))).collect())
                .unwrap_or_default();
            let selector = if selector.is_empty() { "<none>".to_string() } else { selector.join(",") };
            vec![
                json!(name),
                json!(ty),
                json!(cluster_ip),
                json!(external),
                json!(ports),
                json!(created),
                json!(selector),
            ]
        }
        Resource::Endpoints => {
            let mut all = Vec::new();
            for subset in list(v, "/subsets") {
                for a in list(subset, "/addresses") {
                    let ports: Vec<i64> = list(subset, "/ports").map(|p| int(p, "/port")).collect();
                    if ports.is_empty() {
                        all.push(s(a, "/ip").to_string());
                    }
                    all.extend(ports.iter().map(|p| format!("{}:{p}", s(a, "/ip"))));
                }
            }
            vec![json!(name), json!(first_three(all)), json!(created)]
        }
        Resource::Leases => vec![json!(name), json!(s(v, "/spec/holderIdentity")), json!(created)],
        Resource::SelfSubjectAccessReviews => vec![json!(name)],
        Resource::PodMetrics | Resource::NodeMetrics => {
            // A pod's use is its containers' together; a node's is its own.
            let usages: Vec<&Value> = match v.get("containers").and_then(Value::as_array) {
                Some(cs) => cs.iter().filter_map(|c| c.get("usage")).collect(),
                None => v.get("usage").into_iter().collect(),
            };
            let total = |key: &str, unit: &str| {
                let n: u128 =
                    usages.iter().filter_map(|u| u.get(key)?.as_str()?.strip_suffix(unit)?.parse::<u128>().ok()).sum();
                format!("{n}{unit}")
            };
            vec![json!(name), json!(total("cpu", "n")), json!(total("memory", "Ki")), json!(s(v, "/window"))]
        }
        Resource::EndpointSlices => {
            let ports: Vec<String> = list(v, "/ports").map(|p| int(p, "/port").to_string()).collect();
            let ports = if ports.is_empty() { "<unset>".to_string() } else { ports.join(",") };
            let addresses: Vec<String> = list(v, "/endpoints")
                .flat_map(|e| list(e, "/addresses"))
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect();
            vec![json!(name), json!(s(v, "/addressType")), json!(ports), json!(first_three(addresses)), json!(created)]
        }
        Resource::ServiceAccounts => vec![json!(name), json!(list(v, "/secrets").count()), json!(created)],
        Resource::StatefulSets => {
            let cs = "/spec/template/spec/containers";
            let desired = v.pointer("/spec/replicas").and_then(Value::as_i64).unwrap_or(1);
            vec![
                json!(name),
                json!(format!("{}/{desired}", int(v, "/status/readyReplicas"))),
                json!(created),
                json!(joined(v, cs, "name")),
                json!(joined(v, cs, "image")),
            ]
        }
        Resource::DaemonSets => {
            let cs = "/spec/template/spec/containers";
            let selector: Vec<String> = v
                .pointer("/spec/template/spec/nodeSelector")
                .and_then(Value::as_object)
                .into_iter()
                .flatten()
                .map(|(k, x)| format!("{k}={}", x.as_str().unwrap_or("")))
                .collect();
            let selector = if selector.is_empty() { "<none>".to_string() } else { selector.join(",") };
            vec![
                json!(name),
                json!(int(v, "/status/desiredNumberScheduled")),
                json!(int(v, "/status/currentNumberScheduled")),
                json!(int(v, "/status/numberReady")),
                json!(int(v, "/status/updatedNumberScheduled")),
                json!(int(v, "/status/numberAvailable")),
                json!(selector),
                json!(created),
                json!(joined(v, cs, "name")),
                json!(joined(v, cs, "image")),
                json!(selector_string(v)),
            ]
        }
        Resource::PersistentVolumeClaims => vec![
            json!(name),
            json!(terminating_or(v, s(v, "/status/phase"))),
            json!(s(v, "/spec/volumeName")),
            json!(s(v, "/status/capacity/storage")),
            json!(access_modes(v, "/status/accessModes")),
            json!(s(v, "/spec/storageClassName")),
            json!(or_unset(s(v, "/spec/volumeAttributesClassName"))),
            json!(created),
            json!(s(v, "/spec/volumeMode")),
        ],
        Resource::PersistentVolumes => {
            let claim = match (s(v, "/spec/claimRef/namespace"), s(v, "/spec/claimRef/name")) {
                (_, "") => String::new(),
                (ns, n) => format!("{ns}/{n}"),
            };
            vec![
                json!(name),
                json!(s(v, "/spec/capacity/storage")),
                json!(access_modes(v, "/spec/accessModes")),
                json!(s(v, "/spec/persistentVolumeReclaimPolicy")),
                json!(terminating_or(v, s(v, "/status/phase"))),
                json!(claim),
                json!(s(v, "/spec/storageClassName")),
                json!(or_unset(s(v, "/spec/volumeAttributesClassName"))),
                json!(s(v, "/status/reason")),
                json!(created),
                json!(s(v, "/spec/volumeMode")),
            ]
        }
        Resource::StorageClasses => {
            let default = s(v, "/metadata/annotations/storageclass.kubernetes.io~1is-default-class") == "true";
            let shown = if default { format!("{name} (default)") } else { name.to_string() };
            let policy = s(v, "/reclaimPolicy");
            let mode = s(v, "/volumeBindingMode");
            vec![
                json!(shown),
                json!(s(v, "/provisioner")),
                json!(if policy.is_empty() { "Delete" } else { policy }),
                json!(if mode.is_empty() { "Immediate" } else { mode }),
                json!(v.get("allowVolumeExpansion").and_then(Value::as_bool).unwrap_or(false)),
                json!(created),
            ]
        }
        Resource::PriorityClasses => vec![
            json!(name),
            json!(int(v, "/value")),
            json!(v.get("globalDefault").and_then(Value::as_bool).unwrap_or(false)),
            json!(created),
            json!(s(v, "/preemptionPolicy")),
        ],
        Resource::Roles | Resource::ClusterRoles => vec![json!(name), json!(s(v, "/metadata/creationTimestamp"))],
        Resource::RoleBindings | Resource::ClusterRoleBindings => {
            let subjects = |kind: &str| {
                let names: Vec<String> = list(v, "/subjects")
                    .filter(|x| s(x, "/kind") == kind)
                    .map(|x| match (kind, s(x, "/namespace")) {
                        ("ServiceAccount", ns) => format!("{ns}/{}", s(x, "/name")),
                        _ => s(x, "/name").to_string(),
                    })
                    .collect();
                names.join(", ")
            };
            let role = format!("{}/{}", s(v, "/roleRef/kind"), s(v, "/roleRef/name"));
            vec![
                json!(name),
                json!(role),
                json!(created),
                json!(subjects("User")),
                json!(subjects("Group")),
                json!(subjects("ServiceAccount")),
            ]
        }
    }
}

/// One row: its cells and, per `include`, the object or its metadata.
pub fn row(r: Resource, v: &Value, now: Timestamp, include: Include) -> Value {
    let mut row = json!({"cells": cells(r, v, now)});
    match include {
        Include::None => {}
        Include::Metadata => {
            row["object"] = json!({
                "kind": "PartialObjectMetadata",
                "apiVersion": "meta.k8s.io/v1",
                "metadata": v.get("metadata").cloned().unwrap_or(Value::Null),
            })
        }
        Include::Object => row["object"] = v.clone(),
    }
    row
}

/// A whole Table of `objects` at resource version `rv`.
pub fn table(r: Resource, objects: &[&Value], rv: u64, now: Timestamp, include: Include) -> Value {
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": rv.to_string()},
        "columnDefinitions": column_definitions(r),
        "rows": objects.iter().map(|o| row(r, o, now, include)).collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> Timestamp {
        "2026-11-23T10:00:00Z".parse().unwrap()
    }

    #[test]
    fn job_cells_follow_the_printer() {
        let job = json!({
            "metadata": {"name": "sidecar-job", "creationTimestamp": "2026-11-23T09:59:00Z"},
            "spec": {"completions": 1, "selector": {"matchLabels": {"batch.kubernetes.io/controller-uid": "u"}},
                     "template": {"spec": {"containers": [{"name": "main-task", "image": "alpine:latest"}]}}},
            "status": {"succeeded": 1, "startTime": "2026-11-23T09:59:00Z", "completionTime": "2026-11-23T09:59:35Z",
                       "conditions": [{"type": "Complete", "status": "True"}]}
        });
        let c = cells(Resource::Jobs, &job, now());
        assert_eq!(
            c,
            vec![
                json!("sidecar-job"),
                json!("Complete"),
                json!("1/1"),
                json!("35s"),
                json!("60s"),
                json!("main-task"),
                json!("alpine:latest"),
                json!("batch.kubernetes.io/controller-uid=u")
            ]
        );
    }

    #[test]
    fn event_cells_and_deployment_cells() {
        let ev = json!({"metadata": {"name": "web.1"}, "type": "Normal", "reason": "Started",
            "message": "Started container app ", "count": 0,
            "involvedObject": {"kind": "Pod", "name": "web", "fieldPath": "spec.containers{app}"},
            "source": {"component": "kubelet", "host": "h"},
            "firstTimestamp": "2026-11-23T09:58:00Z", "lastTimestamp": "2026-11-23T09:59:50Z"});
        let c = cells(Resource::Events, &ev, now());
        assert_eq!(c[0], json!("10s"));
        assert_eq!(c[3], json!("pod/web"));
        assert_eq!(c[5], json!("kubelet, h"));
        assert_eq!(c[6], json!("Started container app"));
        assert_eq!(c[7], json!("2m"));
        assert_eq!(c[8], json!(1));
        let d = json!({"metadata": {"name": "d"}, "spec": {"replicas": 2},
            "status": {"readyReplicas": 2, "updatedReplicas": 2, "availableReplicas": 2}});
        assert_eq!(&cells(Resource::Deployments, &d, now())[..4], &[json!("d"), json!("2/2"), json!(2), json!(2)]);
        assert_eq!(cells(Resource::Deployments, &d, now())[4], json!("<unknown>"));
    }
}
