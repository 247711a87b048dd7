//! The control plane on one machine, shared by `podvisor run` and `podvisor serve`:
//!
//! - [`store`]: every API object, with resource versions, watches and (for `serve`) a file;
//! - [`controllers`]: Job, Deployment and ReplicaSet controllers and the garbage collector;
//! - `kubelet`: runs the stored pods on the [`podvisor_node::Node`] and writes their status back;
//! - [`events`]: Event objects from the node and the controllers;
//! - [`delete`]: graceful deletion and propagation;
//! - [`values`]: readings of objects in JSON form.
//!
//! [`Cluster::start`] wires them together; both front doors only create, change and delete
//! objects in the store and watch it.

#![warn(missing_docs)]

pub mod admission;
pub mod controllers;
pub mod delete;
pub mod dns;
pub mod events;
mod kubelet;
pub mod metrics;
pub mod pod_status;
pub mod proxy;
pub mod rbac;
pub mod relay;
pub mod scheduling;
pub mod serviceaccounts;
pub mod store;
pub mod taints;
pub mod tokens;
pub mod values;

use std::sync::Arc;

use podvisor_node::{Node, NodeEvent, What};
use podvisor_objects::kinds::Resource;
use serde_json::{Value, json};
use tokio::sync::{mpsc, watch};

pub use delete::{DeleteOptions, Propagation};
pub use podvisor_node::host_name;
pub use store::{Key, Obj, Store, StoreError};
pub use values::is_terminal;

use crate::events::{Involved, Recorder};

/// How to open the node a cluster runs its pods on: a [`podvisor_node::NodeConfig`] but for
/// where pods read ConfigMaps and Secrets, which is the cluster's store.
#[derive(Debug, Clone)]
pub struct NodeOptions {
    /// Images, pod state and logs.
    pub data_dir: std::path::PathBuf,
    /// The OCI runtime binary.
    pub runtime: std::path::PathBuf,
    /// How to reach registries.
    pub pull: podvisor_runtime::pull::PullSettings,
    /// How to start container monitors.
    pub monitor: podvisor_runtime::monitor::MonitorCommand,
    /// The pod network, if pods get addresses.
    pub network: Option<podvisor_runtime::network::PodNetwork>,
    /// `RuntimeDefault` seccomp for containers that name no profile (the kubelet's
    /// `seccompDefault`).
    pub default_seccomp: bool,
    /// How container logs are rotated.
    pub log_rotation: podvisor_runtime::logs::Rotation,
    /// The most pods that run at once.
    pub max_pods: usize,
    /// The API pods may talk to, when there is one (`serve`): pods then run as service
    /// accounts with tokens, and the `kubernetes` Service leads to it.
    pub api: Option<Arc<serviceaccounts::ApiAccess>>,
    /// Run only the stored pods whose containers an earlier node process left on the machine
    /// (taken over), none anew (`podvisor down`, which stops them).
    pub takeover_only: bool,
}

/// What this machine offers pods, as a kubelet reports it: its CPUs, its memory, the size of the
/// file system holding the data directory (`ephemeral-storage`), no huge pages, and `maxPods`.
fn capacity(max_pods: usize, data_dir: &std::path::Path) -> Value {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mem_kib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| {
            t.lines().find_map(|l| l.strip_prefix("MemTotal:")?.trim().strip_suffix("kB")?.trim().parse::<u64>().ok())
        })
        .unwrap_or(0);
    let storage = podvisor_runtime::files::filesystem_bytes(data_dir).unwrap_or(0);
    json!({"cpu": cpus.to_string(), "memory": format!("{mem_kib}Ki"), "pods": max_pods.to_string(),
           "ephemeral-storage": storage.to_string(), "hugepages-1Gi": "0", "hugepages-2Mi": "0"})
}

/// How often the node renews its Lease and heartbeat.
const HEARTBEAT: std::time::Duration = std::time::Duration::from_secs(10);

/// The namespaces the API server never deletes.
pub const IMMORTAL_NAMESPACES: [&str; 3] = ["default", "kube-system", "kube-public"];

/// The store, the node and the controllers, running.
#[derive(Clone)]
pub struct Cluster {
    store: Arc<Store>,
    node: Node,
    node_name: String,
    recorder: Recorder,
    stopping: Arc<watch::Sender<bool>>,
    detached: Arc<watch::Sender<bool>>,
    /// Turns true to close the Service proxy; its task, to wait for the close.
    services_stop: Arc<watch::Sender<bool>>,
    services: Arc<std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>>,
    api: Option<Arc<serviceaccounts::ApiAccess>>,
    /// Turns true once the node runs the stored pods (taking over what an earlier process
    /// left of them) and has removed what is left of others.
    settled: watch::Receiver<bool>,
}

impl Cluster {
    /// Opens the node `options` describe (see [`Node::open`]), its pods reading ConfigMaps and
    /// Secrets from `store`, and starts the cluster on them. Node events go to `observer`
    /// through a [`relay::Relay`]: a channel made with [`relay::CAPACITY`] that never holds the
    /// node back.
    pub async fn open(
        store: Arc<Store>,
        options: NodeOptions,
        observer: Option<mpsc::Sender<NodeEvent>>,
    ) -> Result<Cluster, podvisor_node::NodeError> {
        let (tx, rx) = mpsc::unbounded_channel();
        let NodeOptions {
            data_dir,
            runtime,
            pull,
            monitor,
            network,
            default_seccomp,
            log_rotation,
            max_pods,
            api,
            takeover_only,
        } = options;
        let objects = Arc::new(StoreObjects { store: store.clone(), api: api.clone() });
        // Pods on the pod network resolve names through cluster DNS, which serves them there.
        let dns_dir = data_dir.clone();
        let config = podvisor_node::NodeConfig {
            data_dir,
            runtime,
            pull,
            objects,
            monitor,
            network,
            default_seccomp,
            log_rotation,
            max_pods,
        };
        let node = Node::open(config, tx).await?;
        // The node is open (root, runtime, data directory checked): pods on the pod network
        // resolve names through cluster DNS, at an address this process claims.
        let dns = if node.has_pod_network() { dns::bind(&dns_dir).await } else { None };
        if let Some(bound) = &dns {
            node.set_cluster_dns(podvisor_runtime::resolv::ClusterDns {
                server: bound.ip,
                domain: dns::DOMAIN.to_string(),
            });
        }
        Ok(Cluster::start(store, node, rx, observer, dns, api, takeover_only))
    }

    /// Starts the controllers and the kubelet binding on `store` and `node`. `node_events` is
    /// the receiver of the node's events: they become Event objects and are then passed on to
    /// `observer`, if any. With a pod network, Services are routed, and cluster DNS is served
    /// on `dns` (bound by [`dns::bind`]) if given. With `api`, pods run as service accounts
    /// (see [`serviceaccounts`]). With `takeover_only`, only the pods an earlier node process
    /// left on the machine run.
    fn start(
        store: Arc<Store>,
        node: Node,
        mut node_events: mpsc::UnboundedReceiver<NodeEvent>,
        observer: Option<mpsc::Sender<NodeEvent>>,
        dns: Option<dns::Bound>,
        api: Option<Arc<serviceaccounts::ApiAccess>>,
        takeover_only: bool,
    ) -> Cluster {
        let node_name = host_name();
        let recorder = Recorder::new(store.clone(), node_name.clone());
        let (stopping, stop_rx) = watch::channel(false);
        let (settled_tx, settled) = watch::channel(false);
        let cluster = Cluster {
            settled,
            store: store.clone(),
            node: node.clone(),
            node_name: node_name.clone(),
            recorder,
            stopping: Arc::new(stopping),
            detached: Arc::new(watch::Sender::new(false)),
            services_stop: Arc::new(watch::Sender::new(false)),
            services: Arc::default(),
            api: api.clone(),
        };
        cluster.ensure_basics();
        if node.has_pod_network() {
            let (store, stop) = (store.clone(), cluster.services_stop.subscribe());
            // Pods' host ports are listened on at the node's own address too.
            let host_addresses: Vec<std::net::Ipv4Addr> = node.host_ip().parse().ok().into_iter().collect();
            let node_name = node_name.clone();
            let task = tokio::spawn(async move {
                let proxy = podvisor_runtime::services::Proxy::open().await;
                let reserved: Vec<std::net::Ipv4Addr> = dns.iter().map(|b| b.ip).collect();
                let dns = dns.map(|bound| tokio::spawn(dns::serve(store.clone(), bound, stop.clone())));
                let to_api = api.as_ref().and_then(|a| Some((a.service_ip?, a.address)));
                proxy::run(store, Arc::new(proxy), reserved, to_api, (node_name, host_addresses), stop).await;
                if let Some(dns) = dns {
                    _ = dns.await;
                }
            });
            if let Ok(mut s) = cluster.services.lock() {
                *s = Some(task);
            }
        }
        let ctx = controllers::Ctx {
            store: store.clone(),
            recorder: cluster.recorder.clone(),
            bursts: Default::default(),
            api: cluster.api.clone(),
            local_path: Some(node.data_dir().join("local-path")),
            missing_nodes: Default::default(),
        };
        tokio::spawn(controllers::run(ctx, stop_rx));
        let kubelet = kubelet::Kubelet::new(
            store.clone(),
            node,
            node_name,
            cluster.detached.subscribe(),
            cluster.recorder.clone(),
            settled_tx,
            takeover_only,
        );
        tokio::spawn(kubelet.run());
        tokio::spawn(taints::run(
            store.clone(),
            cluster.node_name.clone(),
            cluster.recorder.clone(),
            cluster.stopping.subscribe(),
        ));
        let c = cluster.clone();
        tokio::spawn(async move {
            let mut relay = observer.map(relay::Relay::new);
            while let Some(e) = node_events.recv().await {
                c.record_node_event(&e);
                if let Some(r) = &mut relay {
                    r.pass(e);
                }
            }
        });
        let recorder = cluster.recorder.clone();
        tokio::spawn(async move {
            loop {
                let next = recorder.expire();
                tokio::time::sleep(next).await;
            }
        });
        // The kubelet's heartbeat: the node's Lease renewed, its conditions' heartbeat times.
        let c = cluster.clone();
        let mut stopping = cluster.stopping.subscribe();
        tokio::spawn(async move {
            loop {
                c.heartbeat();
                tokio::select! {
                    _ = tokio::time::sleep(HEARTBEAT) => {}
                    _ = stopping.wait_for(|s| *s) => return,
                }
            }
        });
        cluster
    }

    /// Renews the node's Lease in `kube-node-lease` and the heartbeat times of its conditions,
    /// as the kubelet does (every 10 s here; the kubelet renews the Lease every 10 s too).
    fn heartbeat(&self) {
        let now = jiff::Timestamp::now();
        let micro = now.strftime("%Y-%m-%dT%H:%M:%S.%6fZ").to_string();
        let lease = Key::new(Resource::Leases, "kube-node-lease", &self.node_name);
        let renewed = self.store.update::<StoreError>(&lease, |v| {
            v["spec"]["renewTime"] = json!(micro);
            Ok(())
        });
        if let Err(StoreError::NotFound(_)) = renewed {
            let obj = json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                "metadata": {"name": self.node_name, "namespace": "kube-node-lease", "uid": podvisor_objects::uid::new_uid()},
                "spec": {"holderIdentity": self.node_name, "leaseDurationSeconds": 40, "renewTime": micro}});
            store::said("the node's Lease", self.store.create(Resource::Leases, obj));
        } else {
            store::said("the node's Lease", renewed);
        }
        let node = Key::new(Resource::Nodes, "", &self.node_name);
        let stamp = values::stamp(now);
        let beat = self.store.update::<StoreError>(&node, |v| {
            for c in v.pointer_mut("/status/conditions").and_then(Value::as_array_mut).into_iter().flatten() {
                c["lastHeartbeatTime"] = json!(stamp);
            }
            Ok(())
        });
        store::said("the node's heartbeat", beat);
    }

    fn ensure_basics(&self) {
        for ns in IMMORTAL_NAMESPACES.iter().chain(&["kube-node-lease"]) {
            let made = self.store.create(
                Resource::Namespaces,
                json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns},
                       "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}}),
            );
            if !matches!(made, Err(StoreError::AlreadyExists(_))) {
                store::said(format_args!("namespace {ns}"), made);
            }
        }
        for role in rbac::default_cluster_roles() {
            let name = role.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("").to_string();
            if self.store.get(&Key::new(Resource::ClusterRoles, "", &name)).is_none() {
                store::said(format_args!("clusterrole {name}"), self.store.create(Resource::ClusterRoles, role));
            }
        }
        if self.store.get(&Key::new(Resource::StorageClasses, "", "standard")).is_none() {
            let class = controllers::volumes::default_class();
            store::said("storageclass standard", self.store.create(Resource::StorageClasses, class));
        }
        for class in podvisor_objects::priority::system_classes() {
            let name = class.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("").to_string();
            if self.store.get(&Key::new(Resource::PriorityClasses, "", &name)).is_none() {
                store::said(format_args!("priorityclass {name}"), self.store.create(Resource::PriorityClasses, class));
            }
        }
        if let Some(api) = &self.api {
            let (namespaces, _) = self.store.list(Resource::Namespaces, None);
            for ns in namespaces.iter().filter_map(|n| n.pointer("/metadata/name").and_then(Value::as_str)) {
                serviceaccounts::ensure_namespace(&self.store, api, ns);
            }
            serviceaccounts::ensure_kubernetes_service(&self.store, api, &self.node.host_ip());
        }
        let now = values::stamp(jiff::Timestamp::now());
        let condition = |ty: &str, status: &str, reason: &str, message: &str| {
            json!({"type": ty, "status": status, "reason": reason, "message": message,
                   "lastHeartbeatTime": now, "lastTransitionTime": now})
        };
        let uname = os_and_kernel();
        let node = json!({
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": self.node_name, "labels": {
                "kubernetes.io/hostname": self.node_name, "kubernetes.io/os": "linux",
                "kubernetes.io/arch": std::env::consts::ARCH.replace("x86_64", "amd64").replace("aarch64", "arm64")}},
            "spec": {},
            "status": {
                "conditions": [
                    condition("MemoryPressure", "False", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
                    condition("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
                    condition("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
                    condition("Ready", "True", "KubeletReady", "kubelet is posting ready status"),
                ],
                "addresses": [{"type": "InternalIP", "address": self.node.host_ip()}, {"type": "Hostname", "address": self.node_name}],
                "capacity": capacity(self.node.max_pods(), self.node.data_dir()),
                "allocatable": capacity(self.node.max_pods(), self.node.data_dir()),
                "nodeInfo": {"kubeletVersion": format!("{}-podvisor", podvisor_objects::KUBERNETES_VERSION), "osImage": uname.0, "kernelVersion": uname.1,
                             "containerRuntimeVersion": "podvisor", "operatingSystem": "linux",
                             "architecture": std::env::consts::ARCH.replace("x86_64", "amd64")}
            }
        });
        let key = Key::new(Resource::Nodes, "", &self.node_name);
        if self.store.create(Resource::Nodes, node.clone()).is_err() {
            let updated = self.store.update::<StoreError>(&key, |v| {
                v["status"] = node["status"].clone();
                Ok(())
            });
            store::said(format_args!("the status of node {}", self.node_name), updated);
        }
    }

    fn record_node_event(&self, e: &NodeEvent) {
        let What::Event { kind, reason, message, field_path, .. } = &e.what else { return };
        let (ns, name) = e.pod.split_once('/').unwrap_or(("default", &e.pod));
        let about = Involved {
            kind: "Pod".into(),
            api_version: "v1".into(),
            namespace: ns.into(),
            name: name.into(),
            uid: e.uid.clone(),
            field_path: field_path.clone(),
        };
        self.recorder.record(&about, kind, reason, message, "kubelet");
    }

    /// The API pods talk to, if there is one.
    pub fn api(&self) -> Option<&Arc<serviceaccounts::ApiAccess>> {
        self.api.as_ref()
    }

    /// The object store.
    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// The node.
    pub fn node(&self) -> &Node {
        &self.node
    }

    /// The node's name.
    pub fn node_name(&self) -> &str {
        &self.node_name
    }

    /// The event recorder.
    pub fn recorder(&self) -> &Recorder {
        &self.recorder
    }

    /// Deletes an object (see [`delete::delete`]). The namespaces the API server keeps
    /// (`default`, `kube-system`, `kube-public`) and the system priority classes are refused as
    /// it refuses them; this node, deleted, registers again at once, as a kubelet registers its
    /// node.
    pub fn delete(&self, key: &Key, opts: &DeleteOptions) -> Result<Obj, StoreError> {
        refuse_delete(key)?;
        if key.resource == Resource::Namespaces {
            // As the API server: the namespace is Terminating, and stays until the namespace
            // controller has deleted what it holds (pods with their grace).
            let now = values::stamp(jiff::Timestamp::now());
            return self.store.update::<StoreError>(key, |v| {
                if v.pointer("/metadata/deletionTimestamp").is_none_or(Value::is_null) {
                    v["metadata"]["deletionTimestamp"] = json!(now);
                    v["metadata"]["deletionGracePeriodSeconds"] = json!(0);
                }
                v["status"]["phase"] = json!("Terminating");
                Ok(())
            });
        }
        let gone = delete::delete(&self.store, key, opts)?;
        if key.resource == Resource::Nodes && key.name == self.node_name {
            self.ensure_basics();
        }
        Ok(gone)
    }

    /// Stops the controllers (no new pods) and deletes every pod with its grace period.
    pub fn shut_down(&self) {
        self.stopping.send_replace(true);
        for p in self.store.list(Resource::Pods, None).0 {
            let k = Key::of(Resource::Pods, &p);
            let gone = self.delete(&k, &DeleteOptions::default());
            store::said(format_args!("the deletion of pod {}/{}", k.namespace, k.name), gone);
        }
    }

    /// Stops every container while the store keeps the pods as they are (`serve` stopping):
    /// the controllers stop and nothing more is written back, so the next start runs the pods
    /// again instead of recording the stop as their end.
    pub fn stop_node(&self) {
        self.stopping.send_replace(true);
        self.detached.send_replace(true);
        self.node.shut_down();
    }

    /// Stops routing Services and removes their addresses from the machine; returns once
    /// they are gone.
    pub async fn close_services(&self) {
        self.services_stop.send_replace(true);
        let task = self.services.lock().ok().and_then(|mut s| s.take());
        if let Some(task) = task {
            _ = task.await;
        }
    }

    /// Returns once the node runs the stored pods (taking over what an earlier node process
    /// left of them) and has removed what is left of other pods.
    pub async fn settled(&self) {
        let mut settled = self.settled.clone();
        _ = settled.wait_for(|s| *s).await;
    }

    /// SIGKILLs every container now.
    pub fn force_kill(&self) {
        self.stopping.send_replace(true);
        self.node.force_kill();
    }
}

/// The ConfigMaps, Secrets, Services and service-account tokens of a store, as the node
/// reads them.
#[derive(Debug, Clone)]
pub struct StoreObjects {
    /// The store.
    pub store: Arc<Store>,
    /// The API that issues tokens, if any.
    pub api: Option<Arc<serviceaccounts::ApiAccess>>,
}

impl podvisor_runtime::objects::Objects for StoreObjects {
    fn config_map(&self, namespace: &str, name: &str) -> Option<k8s_openapi::api::core::v1::ConfigMap> {
        let v = self.store.get(&Key::new(Resource::ConfigMaps, namespace, name))?;
        serde_json::from_value((*v).clone()).ok()
    }

    fn secret(&self, namespace: &str, name: &str) -> Option<k8s_openapi::api::core::v1::Secret> {
        let v = self.store.get(&Key::new(Resource::Secrets, namespace, name))?;
        serde_json::from_value((*v).clone()).ok()
    }

    fn services(&self, namespace: &str) -> Vec<k8s_openapi::api::core::v1::Service> {
        let (items, _) = self.store.list(Resource::Services, Some(namespace));
        items.iter().filter_map(|v| serde_json::from_value((**v).clone()).ok()).collect()
    }

    fn claim_path(&self, namespace: &str, name: &str) -> Result<std::path::PathBuf, String> {
        let claim = self
            .store
            .get(&Key::new(Resource::PersistentVolumeClaims, namespace, name))
            .ok_or_else(|| format!("persistentvolumeclaim {name:?} not found"))?;
        let volume = claim
            .pointer("/spec/volumeName")
            .and_then(Value::as_str)
            .filter(|v| claim.pointer("/status/phase").and_then(Value::as_str) == Some("Bound") && !v.is_empty())
            .ok_or_else(|| format!("persistentvolumeclaim {name:?} is not bound"))?;
        let pv = self
            .store
            .get(&Key::new(Resource::PersistentVolumes, "", volume))
            .ok_or_else(|| format!("persistentvolume {volume:?} not found"))?;
        let path = pv
            .pointer("/spec/hostPath/path")
            .or_else(|| pv.pointer("/spec/local/path"))
            .and_then(Value::as_str)
            .ok_or_else(|| format!("persistentvolume {volume:?}: only hostPath and local volumes are supported"))?;
        Ok(std::path::PathBuf::from(path))
    }

    fn service_account_token(
        &self,
        pod: &k8s_openapi::api::core::v1::Pod,
        audience: Option<&str>,
        expiration_seconds: i64,
    ) -> Result<String, String> {
        let api =
            self.api.as_ref().ok_or("no API issues service-account tokens here (only `podvisor serve` has one)")?;
        serviceaccounts::token_for(&self.store, api, pod, audience, expiration_seconds)
    }
}

/// The OS name and kernel release for the Node object.
fn os_and_kernel() -> (String, String) {
    let os = std::fs::read_to_string("/etc/os-release")
        .ok()
        .and_then(|s| s.lines().find_map(|l| l.strip_prefix("PRETTY_NAME=").map(|v| v.trim_matches('"').to_string())))
        .unwrap_or_else(|| "Linux".into());
    let kernel =
        std::fs::read_to_string("/proc/sys/kernel/osrelease").map(|s| s.trim().to_string()).unwrap_or_default();
    (os, kernel)
}

/// Refuses the deletion of what the API server never lets go: the namespaces it keeps
/// (`default`, `kube-system`, `kube-public`) and the system priority classes (a dry run too).
pub fn refuse_delete(key: &Key) -> Result<(), StoreError> {
    if key.resource == Resource::Namespaces && IMMORTAL_NAMESPACES.contains(&key.name.as_str()) {
        return Err(StoreError::Forbidden { key: key.clone(), why: "this namespace may not be deleted".into() });
    }
    if key.resource == Resource::PriorityClasses && podvisor_objects::priority::is_system(&key.name) {
        let why = "this is a system priority class and cannot be deleted".into();
        return Err(StoreError::Forbidden { key: key.clone(), why });
    }
    Ok(())
}
