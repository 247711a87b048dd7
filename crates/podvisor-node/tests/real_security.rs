//! What a pod cannot do to the machine, on real containers: escape through a `subPath` raced by
//! another container, write its read-only volumes, keep capabilities it dropped or was never
//! given, or make syscalls the default seccomp profile refuses.

mod common;

use std::time::Duration;

use common::{exited, fixture, pod};
use podvisor_node::What;

const LIMIT: Duration = Duration::from_secs(60);

/// The pod of the subPath race (CVE-2017-1002101's class): a sidecar swaps the directory the
/// app's `subPath` names for a symlink to `/` as fast as it can while the app is created.
fn racer(n: usize) -> k8s_openapi::api::core::v1::Pod {
    pod(&format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: race-{n}}}
spec:
  restartPolicy: Never
  terminationGracePeriodSeconds: 1
  volumes: [{{name: d, emptyDir: {{}}}}]
  initContainers:
  - name: racer
    image: busybox:1.36
    restartPolicy: Always
    command: [sh, -c, "while true; do rm -rf /d/x; mkdir /d/x; rm -rf /d/x; ln -s / /d/x; done"]
    volumeMounts: [{{name: d, mountPath: /d}}]
  containers:
  - name: victim
    image: busybox:1.36
    command: [sh, -c, "echo seen $(ls -A /host | wc -l); touch /host/podvisor-escape-{n} 2>/dev/null; true"]
    volumeMounts: [{{name: d, mountPath: /host, subPath: x}}]
"#
    ))
}

/// The race, 20 times at once: the app either sees the empty directory of the volume or is
/// refused (`CreateContainerError`, the subPath resolving outside the volume); never the host.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subpath_raced_into_a_symlink_to_root_never_mounts_the_host() {
    const PODS: usize = 20;
    let mut f = fixture("subpath-race").await;
    let handles: Vec<_> = (0..PODS).map(|n| f.node.run_pod(racer(n))).collect();
    let keys: Vec<String> = handles.iter().map(|h| h.key()).collect();
    // Each victim ran once, or was refused once.
    let decided = |seen: &[podvisor_node::NodeEvent], key: &str| {
        seen.iter().any(|e| {
            e.pod == key
                && (exited("victim")(&e.what)
                    || matches!(&e.what, What::Event { reason, container: Some(c), .. } if reason == "Failed" && c == "victim"))
        })
    };
    let all = f.until(LIMIT, |seen| keys.iter().all(|k| decided(seen, k))).await;
    for h in &handles {
        h.delete(Some(0));
    }
    for h in &handles {
        f.finish(h, LIMIT).await;
    }
    assert!(all, "not every victim ran or was refused:\n{}", f.dump());
    let seen: Vec<String> = f.lines("victim");
    assert!(seen.iter().all(|l| l == "seen 0"), "a victim saw more than the empty volume: {seen:?}");
    for n in 0..PODS {
        let marker = std::path::Path::new("/").join(format!("podvisor-escape-{n}"));
        assert!(!marker.exists(), "pod race-{n} wrote {} on the host", marker.display());
    }
}

/// The capability sets and flags of a container's process, from `/proc/self/status`.
const SHOW: &str =
    "grep -E '^(CapInh|CapPrm|CapEff|CapBnd|CapAmb|NoNewPrivs|Seccomp):' /proc/self/status | tr -s '\\t ' ' '";

/// containerd's capability sets: a restricted-profile container (non-root, `drop: [ALL]`, no
/// privilege escalation, `RuntimeDefault`) runs; `add` after `drop: [ALL]` gives a root process
/// that capability alone; a non-root process keeps none; inheritable and ambient stay empty.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn capabilities_and_seccomp_are_as_written_and_as_containerd_sets_them() {
    let mut f = fixture("caps").await;
    let p = f.node.run_pod(pod(&format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: caps}}
spec:
  restartPolicy: Never
  containers:
  - name: restricted
    image: busybox:1.36
    command: [sh, -c, "{SHOW}"]
    securityContext:
      runAsNonRoot: true
      runAsUser: 1000
      allowPrivilegeEscalation: false
      capabilities: {{drop: [ALL]}}
      seccompProfile: {{type: RuntimeDefault}}
  - name: bind-only
    image: busybox:1.36
    command: [sh, -c, "{SHOW}"]
    securityContext: {{capabilities: {{drop: [ALL], add: [NET_BIND_SERVICE]}}}}
  - name: kill-only
    image: busybox:1.36
    command: [sh, -c, "{SHOW}"]
    securityContext: {{capabilities: {{drop: [ALL], add: [KILL]}}}}
  - name: non-root
    image: busybox:1.36
    command: [sh, -c, "{SHOW}"]
    securityContext: {{runAsUser: 1000}}
  - name: root
    image: busybox:1.36
    command: [sh, -c, "{SHOW}"]
"#
    )));
    let status = f.finish(&p, LIMIT).await;
    assert_eq!(status.phase.as_deref(), Some("Succeeded"), "{}", f.dump());
    // containerd's 14 default capabilities.
    const DEFAULT: &str = "00000000a80425fb";
    let sets = |inh: &str, prm: &str, eff: &str, bnd: &str, nnp: u8, seccomp: u8| {
        vec![
            format!("CapInh: {inh}"),
            format!("CapPrm: {prm}"),
            format!("CapEff: {eff}"),
            format!("CapBnd: {bnd}"),
            "CapAmb: 0000000000000000".to_string(),
            format!("NoNewPrivs: {nnp}"),
            format!("Seccomp: {seccomp}"),
        ]
    };
    let none = "0000000000000000";
    assert_eq!(f.lines("restricted"), sets(none, none, none, none, 1, 2), "{}", f.dump());
    let bind = "0000000000000400";
    assert_eq!(f.lines("bind-only"), sets(none, bind, bind, bind, 0, 0));
    let kill = "0000000000000020";
    assert_eq!(f.lines("kill-only"), sets(none, kill, kill, kill, 0, 0));
    assert_eq!(f.lines("non-root"), sets(none, none, none, DEFAULT, 0, 0), "a non-root process keeps none");
    assert_eq!(f.lines("root"), sets(none, DEFAULT, DEFAULT, DEFAULT, 0, 0));
}

/// `RuntimeDefault` refuses what containerd's profile refuses (`unshare`, `keyctl` through
/// `unshare -U`), `Unconfined` does not, a `Localhost` profile is read from the node's seccomp
/// directory, and `--default-seccomp` makes `RuntimeDefault` the default. /proc is mounted
/// nosuid, nodev and noexec.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seccomp_profiles_filter_what_they_say() {
    let mut f = fixture("seccomp").await;
    let dir = f.node.data_dir().join("seccomp/profiles");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("no-mkdir.json"),
        r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["mkdir","mkdirat"],"action":"SCMP_ACT_ERRNO"}]}"#,
    )
    .unwrap();
    let try_all = "unshare -U true 2>/dev/null && echo unshare-ok || echo unshare-refused; \
                   mkdir /tmp/d 2>/dev/null && echo mkdir-ok || echo mkdir-refused";
    let p = f.node.run_pod(pod(&format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: filters}}
spec:
  restartPolicy: Never
  securityContext: {{seccompProfile: {{type: RuntimeDefault}}}}
  containers:
  - name: default
    image: busybox:1.36
    command: [sh, -c, "{try_all}; grep ' /proc proc' /proc/mounts | grep -o 'nosuid,nodev,noexec'"]
  - name: unconfined
    image: busybox:1.36
    command: [sh, -c, "{try_all}"]
    securityContext: {{seccompProfile: {{type: Unconfined}}}}
  - name: local
    image: busybox:1.36
    command: [sh, -c, "{try_all}"]
    securityContext: {{seccompProfile: {{type: Localhost, localhostProfile: profiles/no-mkdir.json}}}}
  - name: privileged
    image: busybox:1.36
    command: [sh, -c, "grep Seccomp: /proc/self/status | tr -s '\\t ' ' '"]
    securityContext: {{privileged: true}}
"#
    )));
    let status = f.finish(&p, LIMIT).await;
    assert_eq!(status.phase.as_deref(), Some("Succeeded"), "{}", f.dump());
    assert_eq!(f.lines("default"), ["unshare-refused", "mkdir-ok", "nosuid,nodev,noexec"], "{}", f.dump());
    assert_eq!(f.lines("unconfined"), ["unshare-ok", "mkdir-ok"]);
    assert_eq!(f.lines("local"), ["unshare-ok", "mkdir-refused"]);
    assert_eq!(f.lines("privileged"), ["Seccomp: 0"], "privileged containers run unfiltered");
}

/// Safe sysctls are set in the pod's namespaces; any other one makes the node reject the pod
/// before anything of it runs (`SysctlForbidden`), as the kubelet's admission does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn safe_sysctls_are_set_and_unsafe_ones_reject_the_pod() {
    let mut f = fixture("sysctls").await;
    let safe = f.node.run_pod(pod(r#"
apiVersion: v1
kind: Pod
metadata: {name: safe}
spec:
  restartPolicy: Never
  securityContext: {sysctls: [{name: net.ipv4.ip_unprivileged_port_start, value: "80"}]}
  containers:
  - {name: c, image: busybox:1.36, command: [cat, /proc/sys/net/ipv4/ip_unprivileged_port_start]}
"#));
    let unsafe_ = f.node.run_pod(pod(r#"
apiVersion: v1
kind: Pod
metadata: {name: unsafe}
spec:
  securityContext: {sysctls: [{name: kernel.msgmax, value: "65536"}]}
  containers:
  - {name: never, image: busybox:1.36, command: [echo, ran]}
"#));
    assert_eq!(f.finish(&safe, LIMIT).await.phase.as_deref(), Some("Succeeded"), "{}", f.dump());
    assert_eq!(f.lines("c"), ["80"]);
    let st = f.finish(&unsafe_, LIMIT).await;
    assert_eq!(
        (st.phase.as_deref(), st.reason.as_deref(), st.message.as_deref()),
        (
            Some("Failed"),
            Some("SysctlForbidden"),
            Some("Pod was rejected: forbidden sysctl: \"kernel.msgmax\" not allowlisted")
        )
    );
    assert!(f.lines("never").is_empty());
}

/// `--default-seccomp` (the kubelet's `seccompDefault`): a container that names no profile
/// runs under `RuntimeDefault`; one that asks for `Unconfined` still gets it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_node_default_seccomp_applies_to_containers_that_name_none() {
    let mut f = common::fixture_configured("seccomp-default", |c| c.default_seccomp = true).await;
    let p = f.node.run_pod(pod(r#"
apiVersion: v1
kind: Pod
metadata: {name: defaults}
spec:
  restartPolicy: Never
  containers:
  - {name: plain, image: busybox:1.36, command: [sh, -c, "grep Seccomp: /proc/self/status | tr -s '\t ' ' '"]}
  - name: opted-out
    image: busybox:1.36
    command: [sh, -c, "grep Seccomp: /proc/self/status | tr -s '\t ' ' '"]
    securityContext: {seccompProfile: {type: Unconfined}}
"#));
    f.finish(&p, LIMIT).await;
    assert_eq!(
        (f.lines("plain"), f.lines("opted-out")),
        (vec!["Seccomp: 2".to_string()], vec!["Seccomp: 0".to_string()])
    );
}

/// ConfigMap, Secret, downwardAPI and projected volumes are mounted read-only whatever the
/// mount says, as the kubelet mounts them: even root in the container cannot change them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn volumes_of_api_data_are_read_only_even_for_root() {
    let mut f = fixture("readonly-volumes").await;
    for m in podvisor_manifest::load_str(
        "objects.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings}\ndata: {mode: fast}\n---\napiVersion: v1\nkind: Secret\nmetadata: {name: creds}\nstringData: {token: s3cret}\n",
    )
    .unwrap()
    {
        match m.object {
            podvisor_manifest::Object::ConfigMap(c) => f.objects.put_config_map(*c),
            podvisor_manifest::Object::Secret(s) => f.objects.put_secret(*s),
            _ => unreachable!(),
        }
    }
    let p = f.node.run_pod(pod(r#"
apiVersion: v1
kind: Pod
metadata: {name: writer}
spec:
  restartPolicy: Never
  volumes:
  - {name: cfg, configMap: {name: settings}}
  - {name: sec, secret: {secretName: creds}}
  - {name: info, downwardAPI: {items: [{path: name, fieldRef: {fieldPath: metadata.name}}]}}
  - {name: all, projected: {sources: [{configMap: {name: settings}}]}}
  - {name: scratch, emptyDir: {}}
  containers:
  - name: c
    image: busybox:1.36
    command: [sh, -c, "for d in cfg sec info all scratch; do touch /$d/new 2>/dev/null && echo $d writable || echo $d read-only; done"]
    volumeMounts:
    - {name: cfg, mountPath: /cfg}
    - {name: sec, mountPath: /sec, readOnly: false}
    - {name: info, mountPath: /info}
    - {name: all, mountPath: /all}
    - {name: scratch, mountPath: /scratch}
"#));
    f.finish(&p, LIMIT).await;
    assert_eq!(
        f.lines("c"),
        ["cfg read-only", "sec read-only", "info read-only", "all read-only", "scratch writable"],
        "{}",
        f.dump()
    );
}
