//! The OpenAPI v3 schemas of the served kinds, as the API server publishes them under
//! `components.schemas` of `/openapi/v3/<group-version>`.
//!
//! The schemas come from the k8s-openapi types (their fields and documentation). Two things the
//! types do not say are added here as the API server adds them: the group, version and kind a
//! root schema stands for (`x-kubernetes-group-version-kind`, by which `kubectl explain` and
//! `kubectl apply` find a kind's schema), and the strategic-merge-patch metadata of list fields
//! (`x-kubernetes-patch-strategy`, `x-kubernetes-patch-merge-key`), read from the Go types'
//! struct tags by `scripts/gen-patch-meta`. Without the latter, kubectl would replace lists
//! such as a pod's containers whole in an apply patch instead of merging them by name.

mod patch_meta;

use k8s_openapi::api::{apps, authorization, batch, coordination, core, discovery, rbac, scheduling, storage};
use schemars::{JsonSchema, SchemaGenerator, generate::SchemaSettings};
use serde_json::{Map, Value, json};

use crate::kinds::Resource;

/// Registers the schema of `T` (and every schema it refers to) and returns its name.
fn add<T: JsonSchema>(generator: &mut SchemaGenerator) -> String {
    generator.subschema_for::<T>();
    T::schema_name().into_owned()
}

/// The root schema of a resource's objects, if it has a k8s-openapi type (the metrics API
/// does not).
fn root(resource: Resource, generator: &mut SchemaGenerator) -> Option<String> {
    Some(match resource {
        Resource::Pods => add::<core::v1::Pod>(generator),
        Resource::Jobs => add::<batch::v1::Job>(generator),
        Resource::Deployments => add::<apps::v1::Deployment>(generator),
        Resource::ReplicaSets => add::<apps::v1::ReplicaSet>(generator),
        Resource::ConfigMaps => add::<core::v1::ConfigMap>(generator),
        Resource::Secrets => add::<core::v1::Secret>(generator),
        Resource::Events => add::<core::v1::Event>(generator),
        Resource::Namespaces => add::<core::v1::Namespace>(generator),
        Resource::Nodes => add::<core::v1::Node>(generator),
        Resource::Services => add::<core::v1::Service>(generator),
        Resource::Endpoints => add::<core::v1::Endpoints>(generator),
        Resource::EndpointSlices => add::<discovery::v1::EndpointSlice>(generator),
        Resource::CronJobs => add::<batch::v1::CronJob>(generator),
        Resource::Leases => add::<coordination::v1::Lease>(generator),
        Resource::ServiceAccounts => add::<core::v1::ServiceAccount>(generator),
        Resource::Roles => add::<rbac::v1::Role>(generator),
        Resource::RoleBindings => add::<rbac::v1::RoleBinding>(generator),
        Resource::ClusterRoles => add::<rbac::v1::ClusterRole>(generator),
        Resource::ClusterRoleBindings => add::<rbac::v1::ClusterRoleBinding>(generator),
        Resource::StatefulSets => add::<apps::v1::StatefulSet>(generator),
        Resource::DaemonSets => add::<apps::v1::DaemonSet>(generator),
        Resource::PersistentVolumeClaims => add::<core::v1::PersistentVolumeClaim>(generator),
        Resource::PersistentVolumes => add::<core::v1::PersistentVolume>(generator),
        Resource::StorageClasses => add::<storage::v1::StorageClass>(generator),
        Resource::PriorityClasses => add::<scheduling::v1::PriorityClass>(generator),
        Resource::SelfSubjectAccessReviews => add::<authorization::v1::SelfSubjectAccessReview>(generator),
        Resource::PodMetrics | Resource::NodeMetrics => return None,
    })
}

/// `components.schemas` for the kinds in `resources`: every schema they reach, the root ones
/// marked with their group, version and kind, list fields with their patch metadata.
pub fn schemas(resources: &[Resource]) -> Map<String, Value> {
    let mut generator = SchemaSettings::openapi3().into_generator();
    let roots: Vec<(String, Resource)> =
        resources.iter().filter_map(|&r| root(r, &mut generator).map(|name| (name, r))).collect();
    let mut schemas = generator.take_definitions(true);
    for (name, r) in roots {
        let i = r.info();
        if let Some(Value::Object(schema)) = schemas.get_mut(&name) {
            schema.insert(
                "x-kubernetes-group-version-kind".into(),
                json!([{"group": i.group, "version": i.version, "kind": i.kind}]),
            );
        }
    }
    add_patch_meta(&mut schemas);
    schemas
}

fn add_patch_meta(schemas: &mut Map<String, Value>) {
    for (schema, field, strategy, key) in patch_meta::PATCH_META {
        let Some(Value::Object(property)) =
            schemas.get_mut(*schema).and_then(|s| s.pointer_mut(&format!("/properties/{field}")))
        else {
            continue;
        };
        property.insert("x-kubernetes-patch-strategy".into(), Value::from(*strategy));
        if let Some(key) = key {
            property.insert("x-kubernetes-patch-merge-key".into(), Value::from(*key));
        }
    }
}

/// Every served kind's schemas, built once, and each kind's root schema name.
fn all() -> &'static (Map<String, Value>, Vec<(Resource, String)>) {
    type All = (Map<String, Value>, Vec<(Resource, String)>);
    static ALL: std::sync::LazyLock<All> = std::sync::LazyLock::new(|| {
        let mut generator = SchemaSettings::openapi3().into_generator();
        let roots: Vec<(Resource, String)> =
            Resource::ALL.iter().filter_map(|&r| root(r, &mut generator).map(|name| (r, name))).collect();
        let mut s = generator.take_definitions(true);
        add_patch_meta(&mut s);
        (s, roots)
    });
    &ALL
}

/// What a strategic merge patch needs to know of one field of a schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FieldPatch<'a> {
    /// `x-kubernetes-patch-merge-key`: a list of objects merged by this key.
    pub merge_key: Option<&'a str>,
    /// `x-kubernetes-patch-strategy` contains `merge` (a list of scalars merged as a set when
    /// there is no key).
    pub merge: bool,
    /// The schema of the field's value, or of its items for a list.
    pub schema: Option<&'a str>,
}

/// The root schema of `resource`'s objects, if it has one.
pub fn root_schema(resource: Resource) -> Option<&'static str> {
    all().1.iter().find(|(r, _)| *r == resource).map(|(_, n)| n.as_str())
}

/// What the patch machinery needs of `field` in schema `schema` (`None` when the schema does
/// not name the field).
pub fn field_patch(schema: &str, field: &str) -> Option<FieldPatch<'static>> {
    let property = all().0.get(schema)?.pointer(&format!("/properties/{field}"))?;
    fn reference(v: &'static Value) -> Option<&'static str> {
        v.get("$ref").or_else(|| v.pointer("/allOf/0/$ref"))?.as_str()?.strip_prefix("#/components/schemas/")
    }
    let schema = reference(property).or_else(|| property.get("items").and_then(reference));
    Some(FieldPatch {
        merge_key: property.get("x-kubernetes-patch-merge-key").and_then(Value::as_str),
        merge: property.get("x-kubernetes-patch-strategy").and_then(Value::as_str).is_some_and(|s| s.contains("merge")),
        schema,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pods_schema_is_found_by_its_kind_and_reaches_the_sidecar_field() {
        let s = schemas(&[Resource::Pods]);
        assert_eq!(
            s["io.k8s.api.core.v1.Pod"]["x-kubernetes-group-version-kind"],
            json!([{"group": "", "version": "v1", "kind": "Pod"}])
        );
        let restart = &s["io.k8s.api.core.v1.Container"]["properties"]["restartPolicy"];
        assert!(restart["description"].as_str().unwrap().contains("sidecar"), "{restart}");
        let spec = &s["io.k8s.api.core.v1.Pod"]["properties"]["spec"];
        let reference = spec.pointer("/allOf/0/$ref").or_else(|| spec.get("$ref"));
        assert_eq!(reference, Some(&json!("#/components/schemas/io.k8s.api.core.v1.PodSpec")), "{spec}");
    }

    #[test]
    fn list_fields_carry_the_merge_keys_of_the_go_types() {
        let s = schemas(&[Resource::Pods, Resource::Services]);
        let containers = &s["io.k8s.api.core.v1.PodSpec"]["properties"]["containers"];
        assert_eq!(containers["x-kubernetes-patch-merge-key"], "name");
        assert_eq!(containers["x-kubernetes-patch-strategy"], "merge");
        assert_eq!(s["io.k8s.api.core.v1.ServiceSpec"]["properties"]["ports"]["x-kubernetes-patch-merge-key"], "port");
        let meta = &s["io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"]["properties"];
        assert_eq!(meta["ownerReferences"]["x-kubernetes-patch-merge-key"], "uid");
        assert_eq!(meta["finalizers"]["x-kubernetes-patch-strategy"], "merge");
    }

    #[test]
    fn a_fields_patch_meta_and_schema_are_found_from_the_kinds_root() {
        let svc = root_schema(Resource::Services).unwrap();
        let spec = field_patch(svc, "spec").unwrap().schema.unwrap();
        let ports = field_patch(spec, "ports").unwrap();
        assert_eq!(
            (ports.merge_key, ports.merge, ports.schema),
            (Some("port"), true, Some("io.k8s.api.core.v1.ServicePort"))
        );
        let pod_spec = field_patch(root_schema(Resource::Pods).unwrap(), "spec").unwrap().schema.unwrap();
        let containers = field_patch(pod_spec, "containers").unwrap();
        assert_eq!(containers.merge_key, Some("name"));
        let ports = field_patch(containers.schema.unwrap(), "ports").unwrap();
        assert_eq!(ports.merge_key, Some("containerPort"));
        assert_eq!(field_patch(pod_spec, "nosuch"), None);
    }

    #[test]
    fn every_row_of_the_patch_table_names_a_schema_field() {
        let s = schemas(&Resource::ALL);
        for (schema, field, _, _) in patch_meta::PATCH_META {
            if let Some(schema) = s.get(*schema) {
                assert!(schema.pointer(&format!("/properties/{field}")).is_some(), "{schema} has no {field}");
            }
        }
    }
}
