use serde_json::json;

use super::*;

const NOW: &str = "2026-11-23T10:00:00Z";
const LATER: &str = "2026-11-23T10:05:00Z";

fn deployment(replicas: i64, env: Value) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "labels": {"app": "web"}},
        "spec": {"replicas": replicas, "template": {"spec": {"containers": [
            {"name": "app", "image": "busybox:1.36", "env": env}]}}}})
}

fn managers(object: &Value) -> Vec<(String, String)> {
    entries(object).into_iter().map(|e| (e.manager, e.operation)).collect()
}

#[test]
fn a_field_set_is_written_in_the_fieldsv1_form() {
    let set = FieldSet::of(&deployment(2, json!([{"name": "A", "value": "1"}])));
    assert_eq!(
        set.to_json(),
        json!({
            "f:metadata": {"f:labels": {"f:app": {}}},
            "f:spec": {"f:replicas": {}, "f:template": {"f:spec": {"f:containers": {"k:{\"name\":\"app\"}": {
                ".": {}, "f:name": {}, "f:image": {}, "f:env": {"k:{\"name\":\"A\"}": {".": {}, "f:name": {}, "f:value": {}}}
            }}}}}
        })
    );
    assert_eq!(FieldSet::from_json(&set.to_json()), set, "it reads back");
}

#[test]
fn applying_again_without_a_field_removes_it_and_keeps_the_others() {
    let first = deployment(2, json!([{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]));
    let live = apply(&json!({}), &first, "kubectl", false, NOW).unwrap();
    assert_eq!(managers(&live), [("kubectl".to_string(), "Apply".to_string())]);
    let second = deployment(2, json!([{"name": "A", "value": "1"}]));
    let live = apply(&live, &second, "kubectl", false, LATER).unwrap();
    assert_eq!(live.pointer("/spec/template/spec/containers/0/env").unwrap(), &json!([{"name": "A", "value": "1"}]));
    let mut third = second.clone();
    third["metadata"].as_object_mut().unwrap().remove("labels");
    let live = apply(&live, &third, "kubectl", false, LATER).unwrap();
    assert_eq!(live.pointer("/metadata/labels"), Some(&json!({})), "the label went");
    assert_eq!(entries(&live)[0].time, LATER);
}

#[test]
fn a_field_another_manager_set_is_a_conflict_unless_forced() {
    let mut live = apply(&json!({}), &deployment(2, json!([])), "kubectl", false, NOW).unwrap();
    let before = live.clone();
    live["spec"]["replicas"] = json!(5);
    record_update(Some(&before), &mut live, "kubectl-edit", NOW);
    assert_eq!(managers(&live)[1], ("kubectl-edit".to_string(), "Update".to_string()));
    let err = apply(&live, &deployment(3, json!([])), "kubectl", false, LATER).unwrap_err();
    assert_eq!(
        err.to_string(),
        "Apply failed with 1 conflict: conflict with \"kubectl-edit\" using apps/v1: .spec.replicas"
    );
    // The same value is no conflict.
    assert!(apply(&live, &deployment(5, json!([])), "kubectl", false, LATER).is_ok());
    let forced = apply(&live, &deployment(3, json!([])), "kubectl", true, LATER).unwrap();
    assert_eq!(forced["spec"]["replicas"], json!(3));
    assert_eq!(managers(&forced), [("kubectl".to_string(), "Apply".to_string())], "the editor owned only replicas");
}

#[test]
fn a_field_also_owned_by_another_manager_stays_when_no_longer_applied() {
    let config = deployment(2, json!([{"name": "A", "value": "1"}]));
    let mut live = apply(&json!({}), &config, "kubectl", false, NOW).unwrap();
    let other = apply(&live, &config, "ci", false, NOW).unwrap();
    live = other;
    let fewer = deployment(2, json!([]));
    let live = apply(&live, &fewer, "kubectl", false, LATER).unwrap();
    assert_eq!(
        live.pointer("/spec/template/spec/containers/0/env").unwrap(),
        &json!([{"name": "A", "value": "1"}]),
        "ci still applies it"
    );
}

#[test]
fn updates_take_changed_fields_from_other_managers_and_list_them_by_item() {
    let mut live = deployment(2, json!([{"name": "A", "value": "1"}]));
    record_update(None, &mut live, "kubectl-create", NOW);
    let before = live.clone();
    live["spec"]["template"]["spec"]["containers"][0]["image"] = json!("busybox:1.37");
    record_update(Some(&before), &mut live, "kubectl-set", LATER);
    let list = entries(&live);
    let set = &list[1].fields;
    let image: Vec<String> = ["f:spec", "f:template", "f:spec", "f:containers", "k:{\"name\":\"app\"}", "f:image"]
        .map(String::from)
        .to_vec();
    assert!(set.contains(&image) && !list[0].fields.contains(&image), "{list:?}");
    assert_eq!(display(&image), ".spec.template.spec.containers[name=\"app\"].image");
    // An unchanged write records nothing new.
    let again = live.clone();
    record_update(Some(&again), &mut live, "kubectl-set", "2026-11-23T11:00:00Z");
    assert_eq!(entries(&live)[1].time, LATER);
}

#[test]
fn managed_fields_a_client_sends_are_kept_as_sent() {
    let mut live = deployment(2, json!([]));
    record_update(None, &mut live, "kubectl-client-side-apply", NOW);
    let before = live.clone();
    let mut moved = live.clone();
    moved["metadata"]["managedFields"][0]["manager"] = json!("kubectl");
    moved["metadata"]["managedFields"][0]["operation"] = json!("Apply");
    record_update(Some(&before), &mut moved, "kubectl", LATER);
    assert_eq!(managers(&moved), [("kubectl".to_string(), "Apply".to_string())]);
}

#[test]
fn conflicts_with_several_fields_are_listed_by_manager() {
    let c = |manager: &str, operation: &str, field: &str| Conflict {
        manager: manager.into(),
        operation: operation.into(),
        api_version: "v1".into(),
        subresource: None,
        field: field.into(),
    };
    let e = ApplyError::Conflicts(vec![c("a", "Update", ".spec.x"), c("a", "Update", ".spec.y")]);
    assert_eq!(e.to_string(), "Apply failed with 2 conflicts: conflicts with \"a\" using v1:\n- .spec.x\n- .spec.y");
    let e = ApplyError::Conflicts(vec![c("b", "Apply", ".spec.x"), c("a", "Update", ".spec.y")]);
    let text =
        "Apply failed with 2 conflicts: conflicts with \"a\" using v1:\n- .spec.y\nconflicts with \"b\":\n- .spec.x";
    assert_eq!(e.to_string(), text, "an applier is named without a version");
    let status = Conflict { subresource: Some("status".into()), ..c("k", "Update", ".status.x") };
    assert_eq!(status.who(), "\"k\" with subresource \"status\" using v1");
}

#[test]
fn kubectl_takes_over_from_client_side_apply_the_fields_its_annotation_still_describes() {
    let csa = |replicas: i64| {
        let mut d = deployment(replicas, json!([]));
        let last = d.to_string();
        d["metadata"]["annotations"] = json!({"kubectl.kubernetes.io/last-applied-configuration": last});
        d
    };
    let mut live = csa(2);
    record_update(None, &mut live, "kubectl-client-side-apply", NOW);
    let moved = apply(&live, &deployment(3, json!([])), "kubectl", false, LATER).unwrap();
    assert_eq!(moved["spec"]["replicas"], json!(3));
    // Another manager gets no such pass.
    let err = apply(&live, &deployment(3, json!([])), "ci", false, LATER).unwrap_err();
    assert!(err.to_string().contains("conflict with \"kubectl-client-side-apply\" using apps/v1: .spec.replicas"));
    // A field changed since the annotation was written is still a conflict.
    let before = live.clone();
    live["spec"]["replicas"] = json!(7);
    record_update(Some(&before), &mut live, "kubectl-client-side-apply", LATER);
    assert!(apply(&live, &deployment(3, json!([])), "kubectl", false, LATER).is_err());
}

#[test]
fn metadata_with_only_its_name_is_no_field_and_is_never_removed() {
    let bare = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"a": "1"}});
    assert_eq!(FieldSet::of(&bare).to_json(), json!({"f:data": {"f:a": {}}}));
    let live = apply(&json!({}), &bare, "kubectl", false, NOW).unwrap();
    let empty_meta = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {}, "data": {"a": "1"}});
    let live = apply(&live, &empty_meta, "kubectl", false, LATER).unwrap();
    let again = apply(&live, &bare, "kubectl", false, LATER).unwrap();
    assert_eq!(again["metadata"]["name"], json!("c"));
}

#[test]
fn patch_directives_in_an_apply_neither_replace_nor_delete_nor_are_owned() {
    let base = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "labels": {"team": "x"}},
        "data": {"a": "1"}});
    let mut live = base.clone();
    record_update(None, &mut live, "kubectl-create", NOW);
    let config = json!({"apiVersion": "v1", "kind": "ConfigMap", "$patch": "replace",
        "metadata": {"name": "c", "$patch": "delete"}, "data": {"b": "2"}});
    let out = apply(&live, &config, "kubectl", false, LATER).unwrap();
    assert_eq!(out["metadata"]["labels"], json!({"team": "x"}));
    assert_eq!(out["data"], json!({"a": "1", "b": "2"}));
    assert!(!out["metadata"]["managedFields"].to_string().contains('$'));
}

#[test]
fn a_manager_left_with_nothing_under_a_map_does_not_come_to_own_the_map() {
    let cm =
        |labels: Value| json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "labels": labels}});
    let live = apply(&json!({}), &cm(json!({"a": "1"})), "b", false, NOW).unwrap();
    let mut live = apply(&live, &cm(json!({"a": "2"})), "a", true, NOW).unwrap();
    let before = live.clone();
    live["metadata"]["labels"]["team"] = json!("x");
    record_update(Some(&before), &mut live, "kubectl-label", NOW);
    let bare = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}});
    let live = apply(&live, &bare, "a", false, LATER).unwrap();
    let live = apply(&live, &bare, "b", false, LATER).unwrap();
    assert_eq!(live["metadata"]["labels"], json!({"team": "x"}), "the labeller's label stays");
}

#[test]
fn an_update_inside_a_list_item_takes_only_the_changed_field() {
    let mut live = apply(&json!({}), &deployment(2, json!([])), "kubectl", false, NOW).unwrap();
    let before = live.clone();
    live["spec"]["template"]["spec"]["containers"][0]["image"] = json!("busybox:1.37");
    record_update(Some(&before), &mut live, "kubectl-set", LATER);
    let mut gone = deployment(2, json!([]));
    gone["spec"]["template"]["spec"]["containers"] = json!([]);
    let out = apply(&live, &gone, "kubectl", true, LATER).unwrap();
    let containers = out.pointer("/spec/template/spec/containers").unwrap();
    assert!(containers.as_array().unwrap().iter().all(|c| c.get("name").is_some()), "{containers}");
}

#[test]
fn an_update_sending_no_managed_fields_keeps_them_and_is_recorded() {
    let mut live = apply(&json!({}), &deployment(2, json!([])), "kubectl", false, NOW).unwrap();
    let before = live.clone();
    live["metadata"]["managedFields"] = json!([]);
    live["spec"]["replicas"] = json!(4);
    record_update(Some(&before), &mut live, "kubectl-edit", LATER);
    assert_eq!(
        managers(&live),
        [("kubectl".to_string(), "Apply".to_string()), ("kubectl-edit".to_string(), "Update".to_string())]
    );
}

#[test]
fn container_ports_are_owned_by_port_and_protocol_the_protocol_defaulted() {
    let with_ports = |ports: Value| {
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
            "spec": {"containers": [{"name": "app", "image": "busybox:1.36", "ports": ports}]}})
    };
    let set = FieldSet::of(&with_ports(json!([{"containerPort": 53}, {"containerPort": 53, "protocol": "UDP"}])));
    let ports = &set.to_json()["f:spec"]["f:containers"]["k:{\"name\":\"app\"}"]["f:ports"];
    let keys: Vec<&String> = ports.as_object().unwrap().keys().collect();
    assert_eq!(
        keys,
        ["k:{\"containerPort\":53,\"protocol\":\"TCP\"}", "k:{\"containerPort\":53,\"protocol\":\"UDP\"}"]
    );
    // The live object has the protocol defaulted; the configuration that left it out still
    // names the same item, so applying it again without the UDP port removes only that one.
    let live = with_ports(json!([{"containerPort": 53, "protocol": "TCP"}, {"containerPort": 53, "protocol": "UDP"}]));
    let mut live = apply(
        &live,
        &with_ports(json!([{"containerPort": 53}, {"containerPort": 53, "protocol": "UDP"}])),
        "m",
        false,
        NOW,
    )
    .unwrap();
    let both = json!([{"containerPort": 53, "protocol": "TCP"}, {"containerPort": 53, "protocol": "UDP"}]);
    assert_eq!(live.pointer("/spec/containers/0/ports").unwrap(), &both, "two ports, not one merged into the other");
    live = apply(&live, &with_ports(json!([{"containerPort": 53}])), "m", false, LATER).unwrap();
    assert_eq!(live.pointer("/spec/containers/0/ports").unwrap(), &json!([{"containerPort": 53, "protocol": "TCP"}]));
}
