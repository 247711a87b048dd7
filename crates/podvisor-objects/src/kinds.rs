//! The resource types podvisor serves, with what discovery says about each: group, version,
//! kind, plural, scope, short names and categories.

/// One resource type of the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Resource {
    /// `v1` pods.
    Pods,
    /// `batch/v1` jobs.
    Jobs,
    /// `apps/v1` deployments.
    Deployments,
    /// `apps/v1` replicasets.
    ReplicaSets,
    /// `v1` configmaps.
    ConfigMaps,
    /// `v1` secrets.
    Secrets,
    /// `v1` events.
    Events,
    /// `v1` namespaces (cluster-scoped).
    Namespaces,
    /// `v1` nodes (cluster-scoped).
    Nodes,
    /// `v1` services.
    Services,
    /// `v1` endpoints (the older view of a Service's endpoints).
    Endpoints,
    /// `discovery.k8s.io/v1` endpointslices.
    EndpointSlices,
    /// `batch/v1` cronjobs.
    CronJobs,
    /// `coordination.k8s.io/v1` leases (the node's heartbeat).
    Leases,
    /// `metrics.k8s.io/v1beta1` pods: the resource use of running pods (read only).
    PodMetrics,
    /// `metrics.k8s.io/v1beta1` nodes: the node's resource use (read only).
    NodeMetrics,
    /// `v1` serviceaccounts: the identities pods talk to the API as.
    ServiceAccounts,
    /// `rbac.authorization.k8s.io/v1` roles: rules within a namespace.
    Roles,
    /// `rbac.authorization.k8s.io/v1` rolebindings: who holds a role in a namespace.
    RoleBindings,
    /// `rbac.authorization.k8s.io/v1` clusterroles (cluster-scoped).
    ClusterRoles,
    /// `rbac.authorization.k8s.io/v1` clusterrolebindings (cluster-scoped).
    ClusterRoleBindings,
    /// `apps/v1` statefulsets.
    StatefulSets,
    /// `apps/v1` daemonsets.
    DaemonSets,
    /// `v1` persistentvolumeclaims.
    PersistentVolumeClaims,
    /// `v1` persistentvolumes (cluster-scoped).
    PersistentVolumes,
    /// `storage.k8s.io/v1` storageclasses (cluster-scoped).
    StorageClasses,
    /// `scheduling.k8s.io/v1` priorityclasses (cluster-scoped): the names pods give for their
    /// priority.
    PriorityClasses,
    /// `authorization.k8s.io/v1` selfsubjectaccessreviews: "may I?" (`kubectl auth can-i`),
    /// answered at once and never stored.
    SelfSubjectAccessReviews,
}

/// What discovery tells about a [`Resource`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Info {
    /// The API group (`""` for core).
    pub group: &'static str,
    /// The version.
    pub version: &'static str,
    /// The kind of one object.
    pub kind: &'static str,
    /// The plural resource name used in paths.
    pub plural: &'static str,
    /// The singular name.
    pub singular: &'static str,
    /// Whether objects live in a namespace.
    pub namespaced: bool,
    /// Short names (`po`, `deploy`, …).
    pub short_names: &'static [&'static str],
    /// Categories (`all`).
    pub categories: &'static [&'static str],
}

impl Resource {
    /// Every resource served.
    pub const ALL: [Resource; 28] = [
        Resource::Pods,
        Resource::Jobs,
        Resource::Deployments,
        Resource::ReplicaSets,
        Resource::ConfigMaps,
        Resource::Secrets,
        Resource::Events,
        Resource::Namespaces,
        Resource::Nodes,
        Resource::Services,
        Resource::Endpoints,
        Resource::EndpointSlices,
        Resource::CronJobs,
        Resource::Leases,
        Resource::PodMetrics,
        Resource::NodeMetrics,
        Resource::ServiceAccounts,
        Resource::Roles,
        Resource::RoleBindings,
        Resource::ClusterRoles,
        Resource::ClusterRoleBindings,
        Resource::StatefulSets,
        Resource::DaemonSets,
        Resource::PersistentVolumeClaims,
        Resource::PersistentVolumes,
        Resource::StorageClasses,
        Resource::PriorityClasses,
        Resource::SelfSubjectAccessReviews,
    ];

    /// Discovery facts.
    pub fn info(self) -> Info {
        let i = |group, version, kind, plural, singular, namespaced, short_names, categories| Info {
            group,
            version,
            kind,
            plural,
            singular,
            namespaced,
            short_names,
            categories,
        };
        const ALL: &[&str] = &["all"];
        const RBAC: &str = "rbac.authorization.k8s.io";
        match self {
            Resource::Pods => i("", "v1", "Pod", "pods", "pod", true, &["po"], ALL),
            Resource::Jobs => i("batch", "v1", "Job", "jobs", "job", true, &[], ALL),
            Resource::Deployments => i("apps", "v1", "Deployment", "deployments", "deployment", true, &["deploy"], ALL),
            Resource::ReplicaSets => i("apps", "v1", "ReplicaSet", "replicasets", "replicaset", true, &["rs"], ALL),
            Resource::ConfigMaps => i("", "v1", "ConfigMap", "configmaps", "configmap", true, &["cm"], &[]),
            Resource::Secrets => i("", "v1", "Secret", "secrets", "secret", true, &[], &[]),
            Resource::Events => i("", "v1", "Event", "events", "event", true, &["ev"], &[]),
            Resource::Namespaces => i("", "v1", "Namespace", "namespaces", "namespace", false, &["ns"], &[]),
            Resource::Nodes => i("", "v1", "Node", "nodes", "node", false, &["no"], &[]),
            Resource::Services => i("", "v1", "Service", "services", "service", true, &["svc"], ALL),
            Resource::Endpoints => i("", "v1", "Endpoints", "endpoints", "endpoints", true, &["ep"], &[]),
            Resource::CronJobs => i("batch", "v1", "CronJob", "cronjobs", "cronjob", true, &["cj"], ALL),
            Resource::Leases => i("coordination.k8s.io", "v1", "Lease", "leases", "lease", true, &[], &[]),
            Resource::PodMetrics => i("metrics.k8s.io", "v1beta1", "PodMetrics", "pods", "", true, &[], &[]),
            Resource::NodeMetrics => i("metrics.k8s.io", "v1beta1", "NodeMetrics", "nodes", "", false, &[], &[]),
            Resource::EndpointSlices => {
                i("discovery.k8s.io", "v1", "EndpointSlice", "endpointslices", "endpointslice", true, &[], &[])
            }
            Resource::ServiceAccounts => {
                i("", "v1", "ServiceAccount", "serviceaccounts", "serviceaccount", true, &["sa"], &[])
            }
            Resource::Roles => i(RBAC, "v1", "Role", "roles", "role", true, &[], &[]),
            Resource::RoleBindings => i(RBAC, "v1", "RoleBinding", "rolebindings", "rolebinding", true, &[], &[]),
            Resource::ClusterRoles => i(RBAC, "v1", "ClusterRole", "clusterroles", "clusterrole", false, &[], &[]),
            Resource::ClusterRoleBindings => {
                i(RBAC, "v1", "ClusterRoleBinding", "clusterrolebindings", "clusterrolebinding", false, &[], &[])
            }
            Resource::StatefulSets => {
                i("apps", "v1", "StatefulSet", "statefulsets", "statefulset", true, &["sts"], ALL)
            }
            Resource::DaemonSets => i("apps", "v1", "DaemonSet", "daemonsets", "daemonset", true, &["ds"], ALL),
            Resource::PersistentVolumeClaims => i(
                "",
                "v1",
                "PersistentVolumeClaim",
                "persistentvolumeclaims",
                "persistentvolumeclaim",
                true,
                &["pvc"],
                &[],
            ),
            Resource::PersistentVolumes => {
                i("", "v1", "PersistentVolume", "persistentvolumes", "persistentvolume", false, &["pv"], &[])
            }
            Resource::StorageClasses => {
                i("storage.k8s.io", "v1", "StorageClass", "storageclasses", "storageclass", false, &["sc"], &[])
            }
            Resource::PriorityClasses => {
                i("scheduling.k8s.io", "v1", "PriorityClass", "priorityclasses", "priorityclass", false, &["pc"], &[])
            }
            Resource::SelfSubjectAccessReviews => i(
                "authorization.k8s.io",
                "v1",
                "SelfSubjectAccessReview",
                "selfsubjectaccessreviews",
                "",
                false,
                &[],
                &[],
            ),
        }
    }

    /// Whether the resource is measured, not stored: it is only read (the metrics API).
    pub fn is_read_only(self) -> bool {
        matches!(self, Resource::PodMetrics | Resource::NodeMetrics)
    }

    /// Whether the resource is a question asked by creating it and answered at once, never
    /// stored (`SelfSubjectAccessReview`).
    pub fn is_review(self) -> bool {
        self == Resource::SelfSubjectAccessReviews
    }

    /// `apiVersion` of its objects (`v1`, `batch/v1`).
    pub fn api_version(self) -> String {
        let i = self.info();
        if i.group.is_empty() { i.version.to_string() } else { format!("{}/{}", i.group, i.version) }
    }

    /// The resource served at `group`/`version` under `plural`.
    pub fn find(group: &str, version: &str, plural: &str) -> Option<Resource> {
        Resource::ALL.into_iter().find(|r| {
            let i = r.info();
            i.group == group && i.version == version && i.plural == plural
        })
    }

    /// The resource whose objects have this `apiVersion` and `kind`.
    pub fn of_kind(api_version: &str, kind: &str) -> Option<Resource> {
        Resource::ALL.into_iter().find(|r| r.api_version() == api_version && r.info().kind == kind)
    }

    /// The group-qualified name the API server uses in messages: `pods`, `jobs.batch`.
    pub fn qualified(self) -> String {
        let i = self.info();
        if i.group.is_empty() { i.plural.to_string() } else { format!("{}.{}", i.plural, i.group) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_by_path_and_kind() {
        assert_eq!(Resource::find("batch", "v1", "jobs"), Some(Resource::Jobs));
        assert_eq!(Resource::find("", "v1", "jobs"), None);
        assert_eq!(Resource::of_kind("apps/v1", "Deployment"), Some(Resource::Deployments));
        assert_eq!(Resource::Jobs.qualified(), "jobs.batch");
        assert_eq!(Resource::Pods.qualified(), "pods");
    }
}
