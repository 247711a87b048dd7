//! Validation as the API server does it (R5–R10, R7 probe/hook rules), with its wording.

use podvisor_manifest::{Object, load_file, load_str};
use podvisor_objects::{defaults, validate};

const SEEDS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/seed-manifests");

fn errors(yaml: &str) -> Vec<String> {
    let mut docs = load_str("t.yaml", yaml).expect("decodes");
    let mut object = docs.remove(0).object;
    defaults::apply(&mut object);
    match validate(&object) {
        Ok(()) => Vec::new(),
        Err(e) => e.errors.iter().map(ToString::to_string).collect(),
    }
}

fn pod(spec: &str) -> String {
    format!("apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\nspec:\n{spec}")
}

#[test]
fn every_valid_seed_passes() {
    for name in [
        "seed000-1.yaml",
        "seed001-1.yaml",
        "seed002-1.yaml",
        "seed004-1.yaml",
        "seed004-2.yaml",
        "seed004-3.yaml",
        "seed004-4.yaml",
        "seed004-5-legacy.yaml",
    ] {
        for m in load_file(&std::path::Path::new(SEEDS).join(name)).unwrap() {
            let mut object = m.object;
            defaults::apply(&mut object);
            assert_eq!(validate(&object).map_err(|e| e.to_string()), Ok(()), "{name}");
        }
    }
}

#[test]
fn r5_init_restart_policy_other_than_always() {
    let e = errors(&pod(
        "  initContainers:\n  - {name: i, image: busybox, restartPolicy: Never}\n  containers:\n  - {name: c, image: busybox}\n",
    ));
    assert_eq!(e, [r#"spec.initContainers[0].restartPolicy: Unsupported value: "Never": supported values: "Always""#]);
}

#[test]
fn r6_restart_policy_on_an_app_container() {
    let e = errors(&pod("  containers:\n  - {name: c, image: busybox, restartPolicy: Always}\n"));
    assert_eq!(e, ["spec.containers[0].restartPolicy: Forbidden: may not be set for non-init containers"]);
}

#[test]
fn r8_probes_and_hooks_on_a_regular_init_container() {
    let e = errors(&pod(
        "  initContainers:\n  - name: i\n    image: busybox\n    readinessProbe: {exec: {command: [sh]}}\n    lifecycle: {postStart: {exec: {command: [sh]}}}\n  containers:\n  - {name: c, image: busybox}\n",
    ));
    assert_eq!(
        e,
        [
            "spec.initContainers[0].lifecycle: Forbidden: may not be set for init containers without restartPolicy=Always",
            "spec.initContainers[0].readinessProbe: Forbidden: may not be set for init containers without restartPolicy=Always",
        ]
    );
}

#[test]
fn r9_duplicate_names_across_init_and_app_containers() {
    let e = errors(&pod(
        "  initContainers:\n  - {name: x, image: busybox, restartPolicy: Always}\n  containers:\n  - {name: x, image: busybox}\n  - {name: z, image: busybox}\n  - {name: z, image: busybox}\n",
    ));
    assert_eq!(
        e,
        [r#"spec.initContainers[0].name: Duplicate value: "x""#, r#"spec.containers[2].name: Duplicate value: "z""#]
    );
}

#[test]
fn mount_of_an_undeclared_volume() {
    let e = errors(&pod(
        "  containers:\n  - name: c\n    image: busybox\n    volumeMounts: [{name: data, mountPath: /data}]\n",
    ));
    assert_eq!(e, [r#"spec.containers[0].volumeMounts[0].name: Not found: "data""#]);
}

#[test]
fn r7_sleep_hook_longer_than_the_grace_period() {
    let e = errors(&pod(
        "  terminationGracePeriodSeconds: 5\n  containers:\n  - name: c\n    image: busybox\n    lifecycle: {preStop: {sleep: {seconds: 10}}}\n",
    ));
    assert_eq!(
        e,
        [
            "spec.containers[0].lifecycle.preStop.sleep: Invalid value: 10: must be non-negative and less than terminationGracePeriodSeconds (5)"
        ]
    );
}

#[test]
fn r7_probe_rules_on_sidecars() {
    let e = errors(&pod(
        "  initContainers:\n  - name: s\n    image: busybox\n    restartPolicy: Always\n    livenessProbe: {exec: {command: [sh]}, successThreshold: 2}\n    startupProbe: {exec: {command: [sh]}, tcpSocket: {port: 80}}\n    readinessProbe: {httpGet: {port: 70000}, terminationGracePeriodSeconds: 5, periodSeconds: -1}\n  containers:\n  - {name: c, image: busybox}\n",
    ));
    assert_eq!(
        e,
        [
            "spec.initContainers[0].livenessProbe.successThreshold: Invalid value: 2: must be 1",
            "spec.initContainers[0].readinessProbe.periodSeconds: Invalid value: -1: must be greater than or equal to 0",
            "spec.initContainers[0].readinessProbe.httpGet.port: Invalid value: 70000: must be between 1 and 65535, inclusive",
            "spec.initContainers[0].readinessProbe.terminationGracePeriodSeconds: Invalid value: 5: must not be set for readinessProbes",
            "spec.initContainers[0].startupProbe.tcpSocket: Forbidden: may not specify more than 1 handler type",
        ]
    );
}

#[test]
fn names_ports_and_images() {
    let e = errors(&pod(
        "  containers:\n  - name: Web_1\n    ports: [{containerPort: 0}, {containerPort: 80, protocol: HTTP, name: metrics-port-too-long}]\n",
    ));
    assert_eq!(
        e,
        [
            "spec.containers[0].name: Invalid value: \"Web_1\": a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')",
            "spec.containers[0].image: Required value",
            "spec.containers[0].ports[0].containerPort: Required value",
            "spec.containers[0].ports[1].name: Invalid value: \"metrics-port-too-long\": must be no more than 15 characters",
            "spec.containers[0].ports[1].protocol: Unsupported value: \"HTTP\": supported values: \"SCTP\", \"TCP\", \"UDP\"",
        ]
    );
}

#[test]
fn a_job_needs_on_failure_or_never_and_all_errors_come_at_once() {
    let job = "apiVersion: batch/v1\nkind: Job\nmetadata: {name: j}\nspec:\n  template:\n    spec:\n      initContainers:\n      - {name: s, image: busybox, restartPolicy: OnFailure}\n      containers:\n      - {name: c, image: busybox}\n";
    let mut docs = load_str("j.yaml", job).unwrap();
    let mut object = docs.remove(0).object;
    defaults::apply(&mut object);
    let err = validate(&object).unwrap_err();
    assert_eq!(
        err.to_string(),
        r#"Job.batch "j" is invalid: [spec.template.spec.initContainers[0].restartPolicy: Unsupported value: "OnFailure": supported values: "Always", spec.template.spec.restartPolicy: Required value: valid values: "OnFailure", "Never"]"#
    );
}

#[test]
fn a_pod_failure_policy_needs_never_and_well_formed_rules() {
    let job = "apiVersion: batch/v1\nkind: Job\nmetadata: {name: j}\nspec:\n  podFailurePolicy:\n    rules:\n    - {action: FailIndex, onExitCodes: {operator: In, values: [0, 2]}}\n    - {action: Ignore}\n  template:\n    spec:\n      restartPolicy: OnFailure\n      containers:\n      - {name: c, image: busybox}\n";
    assert_eq!(
        errors(job),
        [
            r#"spec.template.spec.restartPolicy: Invalid value: "OnFailure": only "Never" is supported when podFailurePolicy is specified"#,
            r#"spec.podFailurePolicy.rules[0].action: Unsupported value: "FailIndex": supported values: "Count", "FailJob", "Ignore""#,
            r#"spec.podFailurePolicy.rules[0].onExitCodes.values[0]: Invalid value: 0: must not be 0 for the In operator"#,
            r#"spec.podFailurePolicy.rules[1]: Invalid value: "": specifying one of OnExitCodes and OnPodConditions is required"#,
        ]
    );
}

#[test]
fn an_empty_dir_size_limit_must_be_a_quantity() {
    let spec = "  volumes: [{name: cache, emptyDir: {sizeLimit: 1Gb}}]\n  containers:\n  - {name: c, image: busybox}\n";
    assert_eq!(
        errors(&pod(spec)),
        [
            r#"spec.volumes[0].emptyDir.sizeLimit: Invalid value: "1Gb": quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$': "1Gb""#
        ]
    );
}

#[test]
fn a_deployment_selector_must_match_its_template() {
    let d = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\nspec:\n  selector: {matchLabels: {app: a}}\n  template:\n    metadata: {labels: {app: b}}\n    spec: {containers: [{name: c, image: busybox}]}\n";
    assert_eq!(
        errors(d),
        [r#"spec.template.metadata.labels: Invalid value: {"app":"b"}: `selector` does not match template `labels`"#]
    );
}

#[test]
fn r12_defaults() {
    let mut docs = load_str("p.yaml", &pod("  containers:\n  - name: c\n    image: busybox:1.36\n    readinessProbe: {httpGet: {port: 80}}\n  - {name: d, image: alpine}\n")).unwrap();
    let mut object = docs.remove(0).object;
    defaults::apply(&mut object);
    let Object::Pod(p) = object else { panic!() };
    let spec = p.spec.unwrap();
    assert_eq!(spec.restart_policy.as_deref(), Some("Always"));
    assert_eq!(spec.termination_grace_period_seconds, Some(30));
    let probe = spec.containers[0].readiness_probe.clone().unwrap();
    assert_eq!(
        (probe.period_seconds, probe.timeout_seconds, probe.success_threshold, probe.failure_threshold),
        (Some(10), Some(1), Some(1), Some(3))
    );
    assert_eq!(spec.containers[0].image_pull_policy.as_deref(), Some("IfNotPresent"));
    assert_eq!(spec.containers[1].image_pull_policy.as_deref(), Some("Always"), "untagged means :latest");
    assert_eq!(spec.containers[0].restart_policy, None, "the container-level restartPolicy has no default");
    assert_eq!(p.metadata.namespace.as_deref(), Some("default"));
}

#[test]
fn r9_host_ports_are_checked_per_init_container_and_across_regular_containers() {
    let e = errors(&pod(
        "  initContainers:\n  - {name: s, image: busybox, restartPolicy: Always, ports: [{containerPort: 80, hostPort: 8080}]}\n  containers:\n  - {name: a, image: busybox, ports: [{containerPort: 80, hostPort: 8080}]}\n  - {name: b, image: busybox, ports: [{containerPort: 81, hostPort: 8080}]}\n",
    ));
    assert_eq!(
        e,
        [r#"spec.containers[1].ports[0].hostPort: Duplicate value: "TCP//8080""#],
        "the sidecar's port is not checked against the regular containers'"
    );
}

#[test]
fn r10_resize_policy_only_on_sidecars() {
    let spec = "  initContainers:\n  - name: s\n    image: busybox\n    restartPolicy: Always\n    resizePolicy: [{resourceName: cpu, restartPolicy: NotRequired}]\n  - name: i\n    image: busybox\n    resizePolicy: [{resourceName: cpu, restartPolicy: NotRequired}]\n  containers:\n  - {name: c, image: busybox}\n";
    assert_eq!(
        errors(&pod(spec)),
        [
            r#"spec.initContainers[1].resizePolicy: Invalid value: [{"resourceName":"cpu","restartPolicy":"NotRequired"}]: must not be set for init containers"#
        ]
    );
}

#[test]
fn an_empty_mount_name_is_required_and_not_found() {
    let e =
        errors(&pod("  containers:\n  - name: c\n    image: busybox\n    volumeMounts: [{name: '', mountPath: /x}]\n"));
    assert_eq!(
        e,
        [
            "spec.containers[0].volumeMounts[0].name: Required value",
            r#"spec.containers[0].volumeMounts[0].name: Not found: """#
        ]
    );
}

#[test]
fn exec_handlers_need_a_command() {
    let e = errors(&pod("  containers:\n  - name: c\n    image: busybox\n    livenessProbe: {exec: {command: []}}\n"));
    assert_eq!(e, ["spec.containers[0].livenessProbe.exec.command: Required value"]);
}

#[test]
fn hostname_subdomain_and_host_aliases_are_checked_as_the_api_server_checks_them() {
    let e = errors(&pod(
        "  hostname: Web_1\n  subdomain: back-end\n  hostAliases:\n  - {ip: 10.1.2.300, hostnames: [ok.local, Bad_Name]}\n  containers:\n  - {name: c, image: busybox}\n",
    ));
    assert_eq!(e.len(), 3, "{e:?}");
    assert!(
        e[0].starts_with(r#"spec.hostname: Invalid value: "Web_1": a lowercase RFC 1123 label must consist of"#),
        "{e:?}"
    );
    assert_eq!(
        e[1],
        r#"spec.hostAliases[0].ip: Invalid value: "10.1.2.300": must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)"#
    );
    assert!(
        e[2].starts_with(
            r#"spec.hostAliases[0].hostnames[1]: Invalid value: "Bad_Name": a lowercase RFC 1123 subdomain"#
        )
    );
}

#[test]
fn paths_from_a_user_stay_below_their_root_as_the_api_server_requires() {
    let e = errors(&pod(
        "  volumes:\n  - {name: h, hostPath: {path: /var/../etc}}\n  - {name: c, configMap: {name: x, items: [{key: k, path: ../k}]}}\n  containers:\n  - name: c\n    image: busybox\n    volumeMounts:\n    - {name: h, mountPath: /a, subPath: ../x}\n    - {name: h, mountPath: /b, subPath: /etc}\n    - {name: c, mountPath: /c, subPath: a, subPathExpr: b}\n",
    ));
    assert_eq!(
        e,
        [
            r#"spec.volumes[0].hostPath.path: Invalid value: "/var/../etc": must not contain '..'"#,
            r#"spec.volumes[1].configMap.items[0].path: Invalid value: "../k": must not contain '..'"#,
            r#"spec.volumes[1].configMap.items[0].path: Invalid value: "../k": must not start with '..'"#,
            r#"spec.containers[0].volumeMounts[0].subPath: Invalid value: "../x": must not contain '..'"#,
            r#"spec.containers[0].volumeMounts[1].subPath: Invalid value: "/etc": must be a relative path"#,
            r#"spec.containers[0].volumeMounts[2].subPathExpr: Invalid value: "b": subPathExpr and subPath are mutually exclusive"#,
        ]
    );
}

#[test]
fn seccomp_profiles_and_proc_mounts_take_the_api_servers_values() {
    let e = errors(&pod(
        "  securityContext: {seccompProfile: {type: Localhost}}\n  containers:\n  - name: c\n    image: busybox\n    securityContext:\n      seccompProfile: {type: Localhost, localhostProfile: ../escape.json}\n      procMount: Host\n  - name: d\n    image: busybox\n    securityContext: {seccompProfile: {type: RuntimeDefault, localhostProfile: x.json}}\n",
    ));
    assert_eq!(
        e,
        [
            "spec.securityContext.seccompProfile.localhostProfile: Required value: must be set when seccomp type is Localhost",
            r#"spec.containers[0].securityContext.seccompProfile.localhostProfile: Invalid value: "../escape.json": must not contain '..'"#,
            r#"spec.containers[0].securityContext.procMount: Unsupported value: "Host": supported values: "Default", "Unmasked""#,
            r#"spec.containers[1].securityContext.seccompProfile.localhostProfile: Invalid value: "x.json": can only be set when seccomp type is Localhost"#,
        ]
    );
}

#[test]
fn a_namespace_must_be_a_dns_label() {
    let e = errors("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c, namespace: ../../x}\n");
    assert_eq!(e.len(), 1);
    assert!(e[0].starts_with(r#"metadata.namespace: Invalid value: "../../x": a lowercase RFC 1123 label"#), "{e:?}");
}

/// The values the API server refuses that podvisor used to accept (and run), in its words.
#[test]
fn numbers_ids_names_and_quantities_the_api_server_refuses() {
    let e = errors(&pod(
        "  securityContext: {runAsUser: -1, fsGroup: 2147483648, supplementalGroups: [5, -2]}\n  dnsPolicy: Sometimes\n  volumes: [{name: v, emptyDir: {sizeLimit: -1Mi}}]\n  containers:\n  - name: c\n    image: ' busybox'\n    env: [{name: '', value: x}, {name: A=B, value: w}, {name: 'with space', value: ok}]\n    securityContext: {runAsGroup: 2147483648}\n    resources:\n      limits: {cpu: '1', memory: -64Mi, foo: '1'}\n      requests: {cpu: '2'}\n",
    ));
    let expected = [
        r#"spec.volumes[0].emptyDir.sizeLimit: Forbidden: SizeLimit field must be a valid resource quantity"#,
        r#"spec.containers[0].env[0].name: Required value"#,
        r#"spec.containers[0].env[1].name: Invalid value: "A=B": a valid environment variable name must consist only of printable ASCII characters other than '='"#,
        r#"spec.containers[0].resources.limits[foo]: Invalid value: "foo": must be a standard resource type or fully qualified"#,
        r#"spec.containers[0].resources.limits[foo]: Invalid value: "foo": must be a standard resource for containers"#,
        r#"spec.containers[0].resources.limits[memory]: Invalid value: "-64Mi": must be greater than or equal to 0"#,
        // Requests default to the limits before validation, as the API server defaults them:
        // a bad limit without a request is reported for both.
        r#"spec.containers[0].resources.requests[foo]: Invalid value: "foo": must be a standard resource type or fully qualified"#,
        r#"spec.containers[0].resources.requests[foo]: Invalid value: "foo": must be a standard resource for containers"#,
        r#"spec.containers[0].resources.requests[memory]: Invalid value: "-64Mi": must be greater than or equal to 0"#,
        r#"spec.containers[0].resources.requests: Invalid value: "2": must be less than or equal to cpu limit of 1"#,
        r#"spec.containers[0].securityContext.runAsGroup: Invalid value: 2147483648: must be between 0 and 2147483647, inclusive"#,
        r#"spec.securityContext.runAsUser: Invalid value: -1: must be between 0 and 2147483647, inclusive"#,
        r#"spec.securityContext.fsGroup: Invalid value: 2147483648: must be between 0 and 2147483647, inclusive"#,
        r#"spec.securityContext.supplementalGroups[1]: Invalid value: -2: must be between 0 and 2147483647, inclusive"#,
        r#"spec.dnsPolicy: Unsupported value: "Sometimes": supported values: "ClusterFirstWithHostNet", "ClusterFirst", "Default", "None""#,
        r#"spec.containers[0].image: Invalid value: " busybox": must not have leading or trailing whitespace"#,
    ];
    for want in expected {
        assert!(e.iter().any(|got| got == want), "missing: {want}\nall: {e:#?}");
    }
    assert_eq!(e.len(), expected.len(), "{e:#?}");
}

#[test]
fn labels_and_annotations_follow_the_api_servers_rules() {
    let big = "x".repeat(300 * 1024);
    let e = errors(&format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\n  labels: {{'-bad': ok, good: '-value', 'a/b/c': x}}\n  annotations: {{big: {big}}}\n"
    ));
    assert!(e.contains(&r#"metadata.annotations: Too long: may not be more than 262144 bytes"#.to_string()), "{e:?}");
    assert!(
        e.iter().any(|m| m.starts_with(
            r#"metadata.labels: Invalid value: "-bad": name part must consist of alphanumeric characters"#
        )),
        "{e:?}"
    );
    assert!(
        e.iter().any(
            |m| m.starts_with(r#"metadata.labels: Invalid value: "-value": a valid label must be an empty string"#)
        ),
        "{e:?}"
    );
    assert!(
        e.iter().any(|m| m.starts_with(r#"metadata.labels: Invalid value: "a/b/c": a valid label key must consist"#)),
        "{e:?}"
    );
}

#[test]
fn empty_policies_are_defaulted_not_refused_and_a_negative_grace_is_one() {
    assert_eq!(
        errors(&pod(
            "  restartPolicy: ''\n  dnsPolicy: ''\n  terminationGracePeriodSeconds: -5\n  containers: [{name: c, image: busybox}]\n"
        )),
        Vec::<String>::new()
    );
    let mut docs =
        load_str("t.yaml", &pod("  terminationGracePeriodSeconds: -5\n  containers: [{name: c, image: busybox}]\n"))
            .unwrap();
    defaults::apply(&mut docs[0].object);
    let Object::Pod(p) = &docs[0].object else { unreachable!() };
    assert_eq!(p.spec.as_ref().unwrap().termination_grace_period_seconds, Some(1));
}

#[test]
fn job_and_deployment_fields_the_api_server_checks() {
    let job = "apiVersion: batch/v1\nkind: Job\nmetadata: {name: j}\nspec:\n  completionMode: Sometimes\n  activeDeadlineSeconds: -1\n  template:\n    metadata: {labels: {'-x': z}}\n    spec: {restartPolicy: Never, containers: [{name: c, image: busybox}]}\n";
    let e = errors(job);
    assert!(
        e.contains(&r#"spec.activeDeadlineSeconds: Invalid value: -1: must be greater than or equal to 0"#.to_string()),
        "{e:?}"
    );
    assert!(
        e.contains(
            &r#"spec.completionMode: Unsupported value: "Sometimes": supported values: "NonIndexed", "Indexed""#
                .to_string()
        ),
        "{e:?}"
    );
    assert!(e.iter().any(|m| m.starts_with(r#"spec.template.labels: Invalid value: "-x""#)), "{e:?}");
    // Completions default to 1 only when parallelism is not set either.
    let indexed = job
        .replace("Sometimes", "Indexed")
        .replace("  activeDeadlineSeconds: -1\n", "  parallelism: 2\n")
        .replace("'-x'", "x");
    assert_eq!(errors(&indexed), ["spec.completions: Required value: when completion mode is Indexed"]);
    let deploy = |strategy: &str| {
        format!(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: d}}\nspec:\n  selector: {{matchLabels: {{a: b}}}}\n  strategy: {strategy}\n  template:\n    metadata: {{labels: {{a: b}}}}\n    spec: {{containers: [{{name: c, image: busybox}}]}}\n"
        )
    };
    assert_eq!(
        errors(&deploy("{type: Recreate, rollingUpdate: {maxSurge: 1}}")),
        ["spec.strategy.rollingUpdate: Forbidden: may not be specified when strategy `type` is 'Recreate'"]
    );
    assert_eq!(
        errors(&deploy("{type: Sometimes}")),
        [
            r#"spec.strategy: Unsupported value: {"Type":"Sometimes","RollingUpdate":null}: supported values: "Recreate", "RollingUpdate""#
        ]
    );
    assert_eq!(
        errors(&deploy("{type: RollingUpdate, rollingUpdate: {maxSurge: 0, maxUnavailable: 0}}")),
        ["spec.strategy.rollingUpdate.maxUnavailable: Invalid value: 0: may not be 0 when `maxSurge` is 0"]
    );
    assert_eq!(
        errors(&deploy("{type: RollingUpdate, rollingUpdate: {maxSurge: 150%, maxUnavailable: 150%}}")),
        [r#"spec.strategy.rollingUpdate.maxUnavailable: Invalid value: "150%": must not be greater than 100%"#]
    );
}

/// A Secret without a type is `Opaque`, as the API server defaults it; one with a type keeps it.
#[test]
fn a_secret_is_opaque_unless_it_says_otherwise() {
    let mut m = load_str("s.yaml", "apiVersion: v1\nkind: Secret\nmetadata: {name: s}\nstringData: {a: b}\n")
        .unwrap()
        .remove(0);
    defaults::apply(&mut m.object);
    let Object::Secret(s) = &m.object else { panic!("a Secret") };
    assert_eq!(s.type_.as_deref(), Some("Opaque"));
    let mut m = load_str("t.yaml", "apiVersion: v1\nkind: Secret\nmetadata: {name: t}\ntype: kubernetes.io/tls\n")
        .unwrap()
        .remove(0);
    defaults::apply(&mut m.object);
    let Object::Secret(s) = &m.object else { panic!("a Secret") };
    assert_eq!(s.type_.as_deref(), Some("kubernetes.io/tls"));
}

/// An ephemeral container's name is unique among the pod's containers, and a pod template
/// carries none, in the API server's words.
#[test]
fn ephemeral_containers_are_named_uniquely_and_kept_out_of_templates() {
    let pod = "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers: [{name: app, image: busybox}]\n  ephemeralContainers: [{name: app, image: busybox}]\n";
    let m = load_str("p.yaml", pod).unwrap().remove(0);
    let e = validate(&m.object).unwrap_err().to_string();
    assert!(e.contains("spec.ephemeralContainers[0].name: Duplicate value: \"app\""), "{e}");
    let job = "apiVersion: batch/v1\nkind: Job\nmetadata: {name: j}\nspec:\n  template:\n    spec:\n      restartPolicy: Never\n      containers: [{name: app, image: busybox}]\n      ephemeralContainers: [{name: d, image: busybox}]\n";
    let m = load_str("j.yaml", job).unwrap().remove(0);
    let e = validate(&m.object).unwrap_err().to_string();
    assert!(
        e.contains(
            "spec.template.spec.ephemeralContainers: Forbidden: ephemeral containers not allowed in pod template"
        ),
        "{e}"
    );
}

#[test]
fn node_selectors_and_node_affinity_are_checked_as_the_api_server_checks_them() {
    let e = errors(&pod(concat!(
        "  nodeSelector: {disk_: ssd}\n",
        "  affinity:\n    nodeAffinity:\n",
        "      requiredDuringSchedulingIgnoredDuringExecution:\n        nodeSelectorTerms:\n",
        "        - matchExpressions:\n",
        "          - {key: a, operator: In}\n",
        "          - {key: b, operator: Exists, values: [x]}\n",
        "          - {key: c, operator: Gt, values: [\"1\", \"2\"]}\n",
        "          - {key: d, operator: Like, values: [x]}\n",
        "          matchFields:\n",
        "          - {key: metadata.uid, operator: In, values: [x]}\n",
        "          - {key: metadata.name, operator: NotIn, values: [a, b]}\n",
        "      preferredDuringSchedulingIgnoredDuringExecution:\n",
        "      - {weight: 101, preference: {matchExpressions: [{key: e, operator: DoesNotExist}]}}\n",
        "  containers:\n  - {name: c, image: busybox}\n",
    )));
    let t = "spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0]";
    assert_eq!(e.len(), 8, "{e:?}");
    assert!(e[0].starts_with(r#"spec.nodeSelector: Invalid value: "disk_": name part must consist of"#), "{e:?}");
    assert_eq!(
        e[1..],
        [
            format!("{t}.matchExpressions[0].values: Required value: must be specified when `operator` is 'In' or 'NotIn'"),
            format!("{t}.matchExpressions[1].values: Forbidden: may not be specified when `operator` is 'Exists' or 'DoesNotExist'"),
            format!("{t}.matchExpressions[2].values: Required value: must be specified single value when `operator` is 'Lt' or 'Gt'"),
            format!(r#"{t}.matchExpressions[3].operator: Invalid value: "Like": not a valid selector operator"#),
            format!(r#"{t}.matchFields[0].key: Invalid value: "metadata.uid": not a valid field selector key"#),
            format!("{t}.matchFields[1].values: Required value: must be only one value when `operator` is 'In' or 'NotIn' for node field selector"),
            "spec.affinity.nodeAffinity.preferredDuringSchedulingIgnoredDuringExecution[0].weight: Invalid value: 101: must be in the range 1-100".to_string(),
        ]
    );
    let none = errors(&pod(concat!(
        "  affinity: {nodeAffinity: {requiredDuringSchedulingIgnoredDuringExecution: {nodeSelectorTerms: []}}}\n",
        "  containers:\n  - {name: c, image: busybox}\n",
    )));
    assert_eq!(
        none,
        [
            "spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms: Required value: must have at least one node selector term"
        ]
    );
    let fine = errors(&pod(concat!(
        "  nodeSelector: {kubernetes.io/os: linux}\n",
        "  affinity: {nodeAffinity: {requiredDuringSchedulingIgnoredDuringExecution: {nodeSelectorTerms: [\n",
        "    {matchExpressions: [{key: cores, operator: Gt, values: [\"9223372036854775807\"]}]},\n",
        "    {matchFields: [{key: metadata.name, operator: In, values: [box]}]}]}}}\n",
        "  containers:\n  - {name: c, image: busybox}\n",
    )));
    assert_eq!(fine, Vec::<String>::new());
}

/// The API server's defaulting: a limit without a request becomes the request too; a request
/// given stays as it is.
#[test]
fn requests_default_to_the_limits_they_lack() {
    let yaml = pod(concat!(
        "  initContainers:\n  - {name: i, image: busybox, resources: {limits: {memory: 16Mi}}}\n",
        "  containers:\n  - {name: c, image: busybox, resources: {requests: {cpu: 100m}, limits: {cpu: \"2\", memory: 1Gi}}}\n",
    ));
    let mut object = load_str("t.yaml", &yaml).unwrap().remove(0).object;
    defaults::apply(&mut object);
    let Object::Pod(p) = object else { panic!("a pod") };
    let spec = p.spec.unwrap();
    let requests = |c: &k8s_openapi::api::core::v1::Container| {
        let r = c.resources.as_ref().and_then(|r| r.requests.clone()).unwrap_or_default();
        r.into_iter().map(|(k, v)| format!("{k}={}", v.0)).collect::<Vec<_>>()
    };
    assert_eq!(requests(&spec.init_containers.unwrap()[0]), ["memory=16Mi"]);
    assert_eq!(requests(&spec.containers[0]), ["cpu=100m", "memory=1Gi"]);
    assert_eq!(spec.enable_service_links, Some(true));
    // A pod template is not a Pod: it keeps what it was given (its pods get the defaults).
    let deployment = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\nspec:\n  selector: {matchLabels: {a: b}}\n  template:\n    metadata: {labels: {a: b}}\n    spec:\n      containers: [{name: c, image: busybox, resources: {limits: {cpu: \"1\"}}}]\n";
    let mut object = load_str("t.yaml", deployment).unwrap().remove(0).object;
    defaults::apply(&mut object);
    let Object::Deployment(d) = object else { panic!("a deployment") };
    let template = d.spec.unwrap().template.spec.unwrap();
    assert_eq!(requests(&template.containers[0]), Vec::<String>::new());
    assert_eq!(template.enable_service_links, None);
}
