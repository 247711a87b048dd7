//! Role-based access control as the API server's RBAC authorizer decides it, for the users
//! that are not the node's administrator (service accounts): a request is allowed when a
//! ClusterRoleBinding, or a RoleBinding in the request's namespace, names the user (or one of
//! its groups) and the role it refers to has a rule that covers the verb, API group, resource
//! (`pods`, `pods/log`) and name. Nothing is allowed otherwise.
//!
//! [`default_cluster_roles`] are the roles every cluster has (`cluster-admin`, `admin`, `edit`,
//! `view`), with their rules for the kinds podvisor serves.

use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding, Subject};
use podvisor_objects::kinds::Resource;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::store::{Key, Store};

/// Who makes a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// The user name (`system:serviceaccount:<ns>:<name>`).
    pub name: String,
    /// The groups it belongs to.
    pub groups: Vec<String>,
}

impl User {
    /// The user a service account's token authenticates as, with the groups the API server
    /// gives it.
    pub fn service_account(namespace: &str, name: &str) -> User {
        User {
            name: format!("system:serviceaccount:{namespace}:{name}"),
            groups: vec![
                "system:serviceaccounts".into(),
                format!("system:serviceaccounts:{namespace}"),
                "system:authenticated".into(),
            ],
        }
    }
}

/// What a request asks to do, as the API server's authorizer attributes name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request<'a> {
    /// `get`, `list`, `watch`, `create`, `update`, `patch`, `delete`, `deletecollection`.
    pub verb: &'a str,
    /// The API group (`""` for core).
    pub group: &'a str,
    /// The resource (`pods`).
    pub resource: &'a str,
    /// The subresource (`log`, `exec`), if any.
    pub subresource: Option<&'a str>,
    /// The namespace, for a namespaced request.
    pub namespace: Option<&'a str>,
    /// The object's name, for a request about one object.
    pub name: Option<&'a str>,
}

fn covers(list: &[String], wanted: &str) -> bool {
    list.iter().any(|x| x == "*" || x == wanted)
}

/// Whether `rule` allows `req`.
pub fn rule_allows(rule: &PolicyRule, req: &Request<'_>) -> bool {
    if !covers(&rule.verbs, req.verb) || !covers(rule.api_groups.as_deref().unwrap_or_default(), req.group) {
        return false;
    }
    let full = match req.subresource {
        Some(sub) => format!("{}/{sub}", req.resource),
        None => req.resource.to_string(),
    };
    let resource = rule.resources.iter().flatten().any(|r| {
        r == "*"
            || *r == full
            || (req.subresource.is_some() && r.strip_suffix("/*") == Some(req.resource))
            || (r.strip_prefix("*/").is_some_and(|s| req.subresource == Some(s)))
    });
    if !resource {
        return false;
    }
    match rule.resource_names.as_deref() {
        None | Some([]) => true,
        Some(names) => req.name.is_some_and(|n| names.iter().any(|x| x == n)),
    }
}

fn names_user(subject: &Subject, user: &User, binding_namespace: &str) -> bool {
    match subject.kind.as_str() {
        "User" => subject.name == user.name,
        "Group" => user.groups.contains(&subject.name),
        "ServiceAccount" => {
            let ns = subject.namespace.as_deref().filter(|n| !n.is_empty()).unwrap_or(binding_namespace);
            user.name == format!("system:serviceaccount:{ns}:{}", subject.name)
        }
        _ => false,
    }
}

fn typed<K: DeserializeOwned + Send + Sync + 'static>(
    store: &Store,
    r: Resource,
    obj: &Value,
) -> Option<std::sync::Arc<K>> {
    store.typed::<K>(&Key::of(r, obj), obj).ok()
}

fn cluster_role_rules(store: &Store, name: &str) -> Vec<PolicyRule> {
    store
        .get(&Key::new(Resource::ClusterRoles, "", name))
        .and_then(|o| typed::<ClusterRole>(store, Resource::ClusterRoles, &o))
        .and_then(|r| r.rules.clone())
        .unwrap_or_default()
}

/// Whether `user` may make `req`, by the stored roles and bindings.
pub fn allows(store: &Store, user: &User, req: &Request<'_>) -> bool {
    let (bindings, _) = store.list(Resource::ClusterRoleBindings, None);
    for b in bindings.iter().filter_map(|o| typed::<ClusterRoleBinding>(store, Resource::ClusterRoleBindings, o)) {
        if b.role_ref.kind == "ClusterRole"
            && b.subjects.iter().flatten().any(|s| names_user(s, user, ""))
            && cluster_role_rules(store, &b.role_ref.name).iter().any(|r| rule_allows(r, req))
        {
            return true;
        }
    }
    let Some(ns) = req.namespace else { return false };
    let (bindings, _) = store.list(Resource::RoleBindings, Some(ns));
    for b in bindings.iter().filter_map(|o| typed::<RoleBinding>(store, Resource::RoleBindings, o)) {
        if !b.subjects.iter().flatten().any(|s| names_user(s, user, ns)) {
            continue;
        }
        let rules = match b.role_ref.kind.as_str() {
            "ClusterRole" => cluster_role_rules(store, &b.role_ref.name),
            "Role" => store
                .get(&Key::new(Resource::Roles, ns, &b.role_ref.name))
                .and_then(|o| typed::<Role>(store, Resource::Roles, &o))
                .and_then(|r| r.rules.clone())
                .unwrap_or_default(),
            _ => Vec::new(),
        };
        if rules.iter().any(|r| rule_allows(r, req)) {
            return true;
        }
    }
    false
}

/// The API server's words for a request RBAC does not allow.
pub fn forbidden(user: &User, req: &Request<'_>) -> String {
    let resource = match req.subresource {
        Some(sub) => format!("{}/{sub}", req.resource),
        None => req.resource.to_string(),
    };
    let qualified =
        if req.group.is_empty() { req.resource.to_string() } else { format!("{}.{}", req.resource, req.group) };
    let what = match req.name {
        Some(n) => format!("{qualified} {n:?}"),
        None => qualified,
    };
    let scope = match req.namespace {
        Some(ns) => format!("in the namespace {ns:?}"),
        None => "at the cluster scope".to_string(),
    };
    format!(
        "{what} is forbidden: User {:?} cannot {} resource {resource:?} in API group {:?} {scope}",
        user.name, req.verb, req.group
    )
}

const READ: [&str; 3] = ["get", "list", "watch"];
const WRITE: [&str; 5] = ["create", "update", "patch", "delete", "deletecollection"];

/// The default ClusterRoles (labelled `kubernetes.io/bootstrapping: rbac-defaults`) with their
/// rules for the served kinds: `view` reads all but Secrets, `edit` also writes them and
/// reaches into pods, `admin` also manages Roles and RoleBindings, `cluster-admin` may do
/// anything.
pub fn default_cluster_roles() -> Vec<Value> {
    let readable = json!([
        {"apiGroups": [""], "resources": ["pods", "pods/log", "pods/status", "services", "services/status", "endpoints",
            "configmaps", "serviceaccounts", "events", "namespaces", "namespaces/status", "persistentvolumeclaims",
            "persistentvolumeclaims/status", "replicationcontrollers"], "verbs": READ},
        {"apiGroups": ["apps"], "resources": ["deployments", "deployments/scale", "deployments/status", "replicasets",
            "replicasets/scale", "replicasets/status", "statefulsets", "statefulsets/scale", "daemonsets"], "verbs": READ},
        {"apiGroups": ["batch"], "resources": ["jobs", "jobs/status", "cronjobs", "cronjobs/status"], "verbs": READ},
        {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": READ},
    ]);
    let writable = json!([
        {"apiGroups": [""], "resources": ["pods", "pods/exec", "pods/attach", "pods/portforward", "pods/eviction",
            "services", "endpoints", "configmaps", "secrets", "serviceaccounts", "persistentvolumeclaims"], "verbs": WRITE},
        {"apiGroups": [""], "resources": ["secrets"], "verbs": READ},
        {"apiGroups": [""], "resources": ["serviceaccounts/token"], "verbs": ["create"]},
        {"apiGroups": ["apps"], "resources": ["deployments", "deployments/scale", "replicasets", "replicasets/scale",
            "statefulsets", "statefulsets/scale", "daemonsets"], "verbs": WRITE},
        {"apiGroups": ["batch"], "resources": ["jobs", "cronjobs"], "verbs": WRITE},
        {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": WRITE},
    ]);
    let rbac = json!({"apiGroups": ["rbac.authorization.k8s.io"], "resources": ["roles", "rolebindings"],
                      "verbs": READ.iter().chain(&WRITE).collect::<Vec<_>>()});
    let concat = |parts: &[&Value]| -> Value {
        Value::Array(parts.iter().flat_map(|p| p.as_array().cloned().unwrap_or_else(|| vec![(*p).clone()])).collect())
    };
    let role = |name: &str, rules: Value| {
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
               "metadata": {"name": name, "labels": {"kubernetes.io/bootstrapping": "rbac-defaults"},
                            "annotations": {"rbac.authorization.kubernetes.io/autoupdate": "true"}},
               "rules": rules})
    };
    vec![
        role(
            "cluster-admin",
            json!([{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}, {"nonResourceURLs": ["*"], "verbs": ["*"]}]),
        ),
        role("admin", concat(&[&readable, &writable, &rbac])),
        role("edit", concat(&[&readable, &writable])),
        role("view", readable),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(v: Value) -> PolicyRule {
        serde_json::from_value(v).unwrap()
    }

    fn req<'a>(verb: &'a str, resource: &'a str, sub: Option<&'a str>, name: Option<&'a str>) -> Request<'a> {
        Request { verb, group: "", resource, subresource: sub, namespace: Some("ns"), name }
    }

    #[test]
    fn rules_match_verbs_groups_resources_subresources_and_names() {
        let r = rule(json!({"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]}));
        assert!(rule_allows(&r, &req("list", "pods", None, None)));
        assert!(!rule_allows(&r, &req("delete", "pods", None, Some("a"))));
        assert!(!rule_allows(&r, &req("get", "pods", Some("log"), Some("a"))), "a subresource is named apart");
        assert!(!rule_allows(&r, &Request { group: "apps", ..req("get", "pods", None, None) }));
        let logs = rule(json!({"apiGroups": [""], "resources": ["pods/*"], "verbs": ["get"]}));
        assert!(rule_allows(&logs, &req("get", "pods", Some("log"), Some("a"))));
        assert!(!rule_allows(&logs, &req("get", "pods", None, Some("a"))));
        let named =
            rule(json!({"apiGroups": [""], "resources": ["configmaps"], "resourceNames": ["x"], "verbs": ["*"]}));
        assert!(rule_allows(&named, &req("update", "configmaps", None, Some("x"))));
        assert!(!rule_allows(&named, &req("update", "configmaps", None, Some("y"))));
        assert!(!rule_allows(&named, &req("list", "configmaps", None, None)), "a list names no object");
        let all = rule(json!({"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}));
        assert!(rule_allows(&all, &Request { group: "batch", ..req("create", "jobs", None, None) }));
    }

    fn put(store: &Store, r: Resource, v: Value) {
        let v = json!({"apiVersion": r.api_version(), "kind": r.info().kind})
            .as_object()
            .unwrap()
            .clone()
            .into_iter()
            .chain(v.as_object().unwrap().clone())
            .collect::<serde_json::Map<_, _>>();
        store.create(r, Value::Object(v)).unwrap();
    }

    #[test]
    fn bindings_grant_their_roles_to_the_subjects_they_name_in_their_scope() {
        let store = Store::in_memory();
        for role in default_cluster_roles() {
            store.create(Resource::ClusterRoles, role).unwrap();
        }
        let me = User::service_account("ns", "reader");
        assert!(!allows(&store, &me, &req("list", "pods", None, None)), "nothing is allowed without a binding");
        put(
            &store,
            Resource::Roles,
            json!({"metadata": {"name": "pods", "namespace": "ns"},
            "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]}]}),
        );
        put(
            &store,
            Resource::RoleBindings,
            json!({"metadata": {"name": "b", "namespace": "ns"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "pods"},
            "subjects": [{"kind": "ServiceAccount", "name": "reader", "namespace": "ns"}]}),
        );
        assert!(allows(&store, &me, &req("list", "pods", None, None)));
        assert!(!allows(&store, &me, &Request { namespace: Some("other"), ..req("list", "pods", None, None) }));
        assert!(!allows(&store, &User::service_account("ns", "default"), &req("list", "pods", None, None)));
        // A RoleBinding to a ClusterRole grants it in its namespace only; a group subject.
        put(
            &store,
            Resource::RoleBindings,
            json!({"metadata": {"name": "v", "namespace": "ns"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"},
            "subjects": [{"kind": "Group", "name": "system:serviceaccounts:ns"}]}),
        );
        let other = User::service_account("ns", "default");
        assert!(allows(&store, &other, &Request { group: "apps", ..req("get", "deployments", None, Some("d")) }));
        assert!(!allows(&store, &other, &req("get", "secrets", None, Some("s"))), "view does not read Secrets");
        assert!(!allows(&store, &other, &Request { namespace: None, ..req("list", "nodes", None, None) }));
        put(
            &store,
            Resource::ClusterRoleBindings,
            json!({"metadata": {"name": "root"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
            "subjects": [{"kind": "User", "name": "system:serviceaccount:kube-system:boss"}]}),
        );
        let boss = User::service_account("kube-system", "boss");
        assert!(allows(&store, &boss, &Request { namespace: None, ..req("delete", "nodes", None, Some("n")) }));
    }

    #[test]
    fn refusals_are_worded_as_the_api_server_words_them() {
        let me = User::service_account("default", "default");
        assert_eq!(
            forbidden(&me, &req("list", "pods", None, None)),
            "pods is forbidden: User \"system:serviceaccount:default:default\" cannot list resource \"pods\" in API group \"\" in the namespace \"ns\""
        );
        let r = Request { group: "apps", namespace: None, ..req("get", "deployments", Some("scale"), Some("web")) };
        assert_eq!(
            forbidden(&me, &r),
            "deployments.apps \"web\" is forbidden: User \"system:serviceaccount:default:default\" cannot get resource \"deployments/scale\" in API group \"apps\" at the cluster scope"
        );
    }
}
