//! The command line, end to end on the seed manifests.

use std::io::Write;
use std::process::{Command, Stdio};

const SEEDS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/seed-manifests");

fn podvisor(args: &[&str], stdin: Option<&str>) -> (i32, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_podvisor"))
        .args(args)
        .current_dir(SEEDS)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("runs");
    if let Some(text) = stdin {
        child.stdin.take().expect("stdin").write_all(text.as_bytes()).expect("writes");
    }
    drop(child.stdin.take());
    // No command of these tests takes minutes: one that does is killed and fails its test
    // instead of holding the suite.
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let out = match rx.recv_timeout(std::time::Duration::from_secs(240)) {
        Ok(out) => out.expect("waits"),
        Err(_) => {
            let _ = Command::new("kill").args(["-KILL", &pid.to_string()]).status();
            panic!("podvisor {args:?} did not end within 4 minutes");
        }
    };
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

#[test]
fn validate_accepts_every_valid_seed() {
    let valid = [
        "seed000-1.yaml",
        "seed001-1.yaml",
        "seed002-1.yaml",
        "seed004-1.yaml",
        "seed004-2.yaml",
        "seed004-3.yaml",
        "seed004-4.yaml",
        "seed004-5-legacy.yaml",
    ];
    let (code, out, err) = podvisor(&[&["validate"][..], &valid].concat(), None);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.lines().count(), valid.len());
}

#[test]
fn validate_reports_the_broken_seeds_at_their_line_and_column() {
    let (code, out, err) = podvisor(&["validate", "seed003-1.yaml", "seed003-2.yaml", "seed002-1.yaml"], None);
    assert_eq!(code, 1);
    assert!(out.is_empty(), "nothing is reported valid when anything is not: {out}");
    assert!(err.contains("seed003-1.yaml:33:19: error converting YAML to JSON"), "{err}");
    assert!(err.contains("seed003-2.yaml:24:19: error converting YAML to JSON"), "{err}");
    assert!(err.ends_with("2 problem(s); nothing was started\n"), "{err}");
}

#[test]
fn validation_errors_carry_file_line_column_and_field_path() {
    let pod = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\nspec:\n  initContainers:\n  - name: proxy\n    image: busybox\n    restartPolicy: Never\n  containers:\n  - name: app\n    image: busybox\n";
    let (code, _, err) = podvisor(&["validate", "-"], Some(pod));
    assert_eq!(code, 1);
    assert!(
        err.contains(r#"-:9:5: Pod "p" is invalid: spec.initContainers[0].restartPolicy: Unsupported value: "Never": supported values: "Always""#),
        "{err}"
    );
}

#[test]
fn simulate_prints_the_seed_job_lifecycle_in_order() {
    let (code, out, err) = podvisor(&["simulate", "seed002-1.yaml"], None);
    assert_eq!(code, 0, "{err}");
    let expected = [
        "log-shipper      started",
        "main-task        started",
        "main-task        exited 0",
        "log-shipper      sent SIGTERM",
        "log-shipper      sent SIGKILL: the grace period is over",
        "log-shipper      killed (exit 137)",
        "pod              phase Succeeded",
    ];
    let mut rest = out.as_str();
    for line in expected {
        let at = rest.find(line).unwrap_or_else(|| panic!("missing or out of order: {line}\n{out}"));
        rest = &rest[at + line.len()..];
    }
    assert!(out.contains("[   0.040s] log-shipper      started"), "{out}");
    assert!(out.contains("[   0.080s] main-task        started"), "{out}");
    assert!(out.contains("[  35.080s] log-shipper      killed (exit 137)"), "{out}");
    assert!(
        out.contains("sidecar-job: Complete after 35.080s of virtual time (1 pod(s) succeeded, 0 failed)"),
        "{out}"
    );
}

#[test]
fn simulate_with_a_sidecar_that_handles_sigterm_finishes_at_once() {
    let (code, out, _) = podvisor(&["simulate", "seed002-1.yaml", "--behave", "log-shipper=forever,term:0.5s"], None);
    assert_eq!(code, 0);
    assert!(out.contains("sidecar-job: Complete after 5.580s of virtual time"), "{out}");
    let (code, _, err) = podvisor(&["simulate", "seed002-1.yaml", "--behave", "log-shipper=run:x"], None);
    assert_eq!(code, 1);
    assert!(err.contains("run needs seconds"), "{err}");
}

#[test]
fn the_test_image_builds_and_loads_under_busybox_and_alpine() {
    let dir = test_dir("image-test");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let archive = dir.join("busybox.tar");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../scripts/build-test-image");
    let built = Command::new(script).arg(&archive).status().expect("runs the script");
    assert!(built.success());
    let data = dir.join("data");
    let data = data.to_str().unwrap();
    let archive = archive.to_str().unwrap();
    let (code, out, err) = podvisor(
        &["image", "load", archive, "--tag", "busybox:1.36", "--tag", "alpine:latest", "--data-dir", data],
        None,
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("Loaded image: docker.io/library/busybox:1.36 (sha256:"), "{out}");
    assert!(out.contains("Loaded image: docker.io/library/alpine:latest"), "{out}");
    let (_, out, _) = podvisor(&["image", "ls", "--data-dir", data], None);
    assert_eq!(out.lines().count(), 3, "{out}");
    let header = out.lines().next().unwrap();
    assert!(header.starts_with("IMAGE ") && header.contains("   IMAGE ID   ") && header.ends_with("SIZE"), "{out}");
    let busybox = out.lines().find(|l| l.starts_with("docker.io/library/busybox:1.36")).expect("a row");
    let col = header.find("IMAGE ID").unwrap();
    assert!(busybox[col..col + 12].chars().all(|c| c.is_ascii_hexdigit()), "the ID under its heading: {out}");
    assert!(busybox.ends_with(" MB") && busybox.contains(" ago "), "{busybox}");
    // #24: when the image was built, from its config (the test image says 1970).
    let created = header.find("CREATED").expect("a CREATED column");
    assert!(busybox[created..].split_whitespace().next().unwrap().ends_with('y'), "{out}");
    let store = podvisor_runtime::image::ImageStore::open(std::path::Path::new(data)).unwrap();
    let image = store.resolve("alpine").expect("alpine resolves to the test image");
    assert_eq!(std::fs::read_link(image.rootfs.join("bin/sh")).unwrap(), std::path::Path::new("/bin/busybox"));
    assert_eq!(image.config.cmd, Some(vec!["/bin/sh".to_string()]));
    let (code, _, _) = podvisor(&["image", "rm", "alpine:latest", "--data-dir", data], None);
    assert_eq!(code, 0);
    assert!(store.resolve("alpine").is_none() && store.resolve("busybox:1.36").is_some());
    let (code, _, err) = podvisor(&["image", "load", "/nonexistent.tar", "--data-dir", data], None);
    assert_eq!((code, err.trim()), (1, "podvisor: /nonexistent.tar: No such file or directory (os error 2)"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_file_without_objects_is_an_error() {
    let (code, out, err) = podvisor(&["simulate", "-"], Some("# only a comment\n---\n"));
    assert_eq!(code, 1);
    assert!(out.is_empty());
    assert!(err.starts_with("-: no objects found"), "{err}");
}

/// A test's own directory under the temporary directory, made empty; removed when the test
/// passes, kept for a look when it fails.
struct TestDir(std::path::PathBuf);

impl std::ops::Deref for TestDir {
    type Target = std::path::Path;
    fn deref(&self) -> &std::path::Path {
        &self.0
    }
}

impl AsRef<std::path::Path> for TestDir {
    fn as_ref(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

fn test_dir(name: &str) -> TestDir {
    let dir = std::env::temp_dir().join(format!("podvisor-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    TestDir(dir)
}

/// A data directory with the offline busybox image loaded as busybox:1.36.
fn data_dir_with_image(name: &str) -> TestDir {
    let dir = test_dir(name);
    let archive = dir.join("busybox.tar");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../scripts/build-test-image");
    assert!(Command::new(script).arg(&archive).status().expect("runs the script").success());
    let data = dir.join("data");
    let (code, _, err) = podvisor(
        &["image", "load", archive.to_str().unwrap(), "--tag", "busybox:1.36", "--data-dir", data.to_str().unwrap()],
        None,
    );
    assert_eq!(code, 0, "{err}");
    dir
}

const JOB: &str = r#"
apiVersion: batch/v1
kind: Job
metadata: {name: quick}
spec:
  template:
    spec:
      restartPolicy: Never
      initContainers:
      - name: shipper
        image: busybox:1.36
        restartPolicy: Always
        command: [sh, -c, "trap 'echo shipper stopping; exit 0' TERM; while :; do sleep 0.1; done"]
      containers:
      - name: main
        image: busybox:1.36
        command: [sh, -c, "echo task done"]
---
apiVersion: v1
kind: Pod
metadata: {name: failing}
spec:
  restartPolicy: Never
  containers:
  - name: c
    image: busybox:1.36
    command: [sh, -c, "echo oops >&2; exit 4"]
"#;

#[test]
fn run_prints_prefixed_logs_and_events_and_exits_by_outcome() {
    let dir = data_dir_with_image("run");
    let data = dir.join("data");
    let timeline = dir.join("timeline.json");
    let (code, out, err) = podvisor(
        &["run", "-", "--data-dir", data.to_str().unwrap(), "--timeline", timeline.to_str().unwrap()],
        Some(JOB),
    );
    assert_eq!(code, 2, "a failed pod makes the run fail\n{out}\n{err}");
    let pos = |needle: &str| out.find(needle).unwrap_or_else(|| panic!("{needle:?} missing from:\n{out}"));
    assert!(pos("shipper: started") < pos("main: started"));
    assert!(pos("/main | task done") < pos("main: exited 0 (Completed)"));
    assert!(pos("main: exited 0 (Completed)") < pos("shipper: sent SIGTERM"));
    assert!(pos("/shipper | shipper stopping") < pos("shipper: exited 0 (Completed)"));
    assert!(out.contains("failing/c | oops"), "{out}");
    assert!(out.contains("job/quick: Complete") && out.contains("pod/failing: Failed"), "{out}");
    let events: serde_json::Value = serde_json::from_slice(&std::fs::read(&timeline).unwrap()).unwrap();
    let exits: Vec<_> =
        events.as_array().unwrap().iter().filter(|e| e["type"] == "exited" && e["container"] == "c").collect();
    assert_eq!(exits.len(), 1);
    assert_eq!(exits[0]["exitCode"], 4);
    assert_eq!(exits[0]["pod"], "default/failing");

    // The logs outlive the pods.
    let (code, out, err) = podvisor(&["logs", "failing", "--data-dir", data.to_str().unwrap()], None);
    assert_eq!((code, out.as_str()), (0, "oops\n"), "{err}");
    let (code, _, err) = podvisor(&["logs", "nobody", "--data-dir", data.to_str().unwrap()], None);
    assert_eq!((code, err.trim()), (1, "podvisor: pods \"nobody\" not found"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn run_refuses_an_unknown_runtime_before_starting_anything() {
    let dir = test_dir("noruntime");
    let (code, out, err) =
        podvisor(&["run", "seed002-1.yaml", "--runtime", "no-such-runtime", "--data-dir", dir.to_str().unwrap()], None);
    assert_eq!(code, 1, "{out}");
    assert_eq!(
        err.trim(),
        "podvisor: OCI runtime \"no-such-runtime\" not found: install it (Debian: apt-get install runc or crun) or name another with --runtime"
    );
    // #24: youki is not a Debian package; the way to it is named instead of runc's.
    let (code, _, err) =
        podvisor(&["run", "seed002-1.yaml", "--runtime", "/nowhere/youki", "--data-dir", dir.to_str().unwrap()], None);
    assert_eq!(code, 1);
    assert_eq!(
        err.trim(),
        "podvisor: OCI runtime \"/nowhere/youki\" not found: install it (from crates.io: cargo install youki --locked --features v1,v2,seccomp) or name another with --runtime"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn ctrl_c_deletes_every_pod_gracefully_and_exits_130() {
    let dir = data_dir_with_image("interrupt");
    let data = dir.join("data");
    let manifest = dir.join("pod.yaml");
    std::fs::write(
        &manifest,
        r#"
apiVersion: v1
kind: Pod
metadata: {name: forever}
spec:
  terminationGracePeriodSeconds: 5
  initContainers:
  - name: proxy
    image: busybox:1.36
    restartPolicy: Always
    command: [sh, -c, "trap 'echo proxy bye; exit 0' TERM; echo ready; while :; do sleep 0.1; done"]
  containers:
  - name: app
    image: busybox:1.36
    command: [sh, -c, "trap 'echo app bye; exit 0' TERM; echo ready; while :; do sleep 0.1; done"]
"#,
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_podvisor"))
        .args(["run", manifest.to_str().unwrap(), "--data-dir", data.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::BufRead;
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let mut seen = Vec::new();
    // Both containers are up once both are reported started and have logged "ready"; then Ctrl-C.
    let up = |seen: &[String]| {
        seen.iter().filter(|l| l.ends_with("| ready")).count() == 2
            && ["proxy: started", "app: started"].iter().all(|s| seen.iter().any(|l| l.ends_with(s)))
    };
    while !up(&seen) {
        seen.push(lines.next().expect("the run goes on until both are ready").unwrap());
    }
    let pid = rustix::process::Pid::from_raw(child.id() as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::INT).unwrap();
    seen.extend(lines.map_while(Result::ok));
    let out = child.wait_with_output().unwrap();
    let stdout = seen.join("\n");
    assert_eq!(out.status.code(), Some(130), "{stdout}");
    let pos = |needle: &str| stdout.find(needle).unwrap_or_else(|| panic!("{needle:?} missing from:\n{stdout}"));
    assert!(pos("interrupted") < pos("app: sent SIGTERM"));
    assert!(pos("app: exited 0") < pos("proxy: sent SIGTERM"), "the sidecar stops after the app");
    assert!(pos("proxy: exited 0") < pos("finished"));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Runs `podvisor run` of `manifest` (written under `dir`) on a terminal of its own (util-linux
/// `script`), with `env` (variables) before the command and `options` after it; its exit code
/// and what the terminal showed.
fn run_on_terminal(dir: &std::path::Path, manifest: &str, env: &str, options: &str) -> (Option<i32>, String) {
    let path = dir.join("pod.yaml");
    std::fs::write(&path, manifest).unwrap();
    let cmd = format!(
        "{env}{} --data-dir {} run {}{options}",
        env!("CARGO_BIN_EXE_podvisor"),
        dir.join("data").display(),
        path.display()
    );
    let out = Command::new("script").args(["-qec", &cmd, "/dev/null"]).output().expect("script runs");
    (out.status.code(), String::from_utf8_lossy(&out.stdout).into_owned())
}

#[test]
fn on_a_terminal_run_keeps_kubectls_pod_table_under_the_output() {
    let dir = data_dir_with_image("tty");
    let manifest = r#"
apiVersion: v1
kind: Pod
metadata: {name: tty}
spec:
  restartPolicy: Never
  initContainers:
  - {name: side, image: busybox:1.36, restartPolicy: Always, command: [sh, -c, "trap 'exit 0' TERM; while :; do sleep 0.1; done"]}
  containers:
  - {name: app, image: busybox:1.36, command: [sh, -c, "echo hi; sleep 0.5"]}
"#;
    let (code, text) = run_on_terminal(&dir, manifest, "", "");
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("NAME   READY   STATUS"), "{text}");
    assert!(text.contains("tty    2/2     Running"), "both containers ready while the app runs: {text}");
    assert!(text.contains("tty    0/2     Completed"), "{text}");
    assert!(text.contains("\x1b[36m"), "prefixes are coloured on a terminal");
    // NO_COLOR, and --color never, on the same terminal: no colour, no table.
    for (env, flag) in [("NO_COLOR=1 ", ""), ("", " --color never")] {
        let (code, text) = run_on_terminal(&dir, manifest, env, flag);
        assert_eq!(code, Some(0), "{text}");
        assert!(!text.contains("\x1b[36m"), "{env}{flag}: {text}");
        if !flag.is_empty() {
            assert!(!text.contains("NAME   READY   STATUS"), "no table with --color never: {text}");
        }
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// #24: on a terminal, a container waiting out its grace period gets a countdown under the
/// table, counting down each second, gone once it is killed.
#[test]
fn on_a_terminal_a_stop_that_waits_out_its_grace_counts_down() {
    let dir = data_dir_with_image("countdown");
    let manifest = r#"
apiVersion: v1
kind: Pod
metadata: {name: cd}
spec:
  restartPolicy: Never
  terminationGracePeriodSeconds: 3
  initContainers:
  - {name: side, image: busybox:1.36, restartPolicy: Always, command: [sh, -c, "while :; do sleep 0.2; done"]}
  containers:
  - {name: app, image: busybox:1.36, command: [sh, -c, "echo hi"]}
"#;
    let (code, text) = run_on_terminal(&dir, manifest, "", "");
    assert_eq!(code, Some(0), "{text}");
    let pos = |needle: &str| text.find(needle).unwrap_or_else(|| panic!("{needle:?} missing from:\n{text}"));
    let first = pos("cd/side ignores SIGTERM: killing in 3 s (Ctrl-C twice to kill now)");
    assert!(first < pos("cd/side ignores SIGTERM: killing in 2 s"));
    assert!(pos("cd/side ignores SIGTERM: killing in 1 s") < pos("side: sent SIGKILL"));
    let after = &text[pos("side: exited 137")..];
    assert!(!after.contains("killing in"), "the countdown ends with the container: {after}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn run_without_root_says_how_to_fix_it_and_starts_nothing() {
    // The binary and manifest are copied where any user can read them, wherever the checkout is.
    let dir = test_dir("nobody");
    std::fs::create_dir_all(&dir).unwrap();
    let bin = dir.join("podvisor");
    std::fs::copy(env!("CARGO_BIN_EXE_podvisor"), &bin).unwrap();
    std::fs::copy(std::path::Path::new(SEEDS).join("seed002-1.yaml"), dir.join("job.yaml")).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(dir.join("job.yaml"), std::fs::Permissions::from_mode(0o644)).unwrap();
    let data = dir.join("data");
    let out = Command::new("setpriv")
        .args(["--reuid", "65534", "--regid", "65534", "--clear-groups"])
        .arg(&bin)
        .args(["--data-dir", data.to_str().unwrap(), "run", "job.yaml"])
        .current_dir(&dir)
        .output()
        .expect("setpriv runs");
    assert_eq!(
        (out.status.code(), String::from_utf8_lossy(&out.stderr).trim()),
        (
            Some(1),
            "podvisor: podvisor needs root to run containers (namespaces, mounts, cgroups): run it as root, e.g. with sudo"
        )
    );
    assert!(!data.exists(), "nothing was created");
    // Loading an image says the same, not a failure deep in the unpacking.
    let out = Command::new("setpriv")
        .args(["--reuid", "65534", "--regid", "65534", "--clear-groups"])
        .arg(&bin)
        .args(["--data-dir", data.to_str().unwrap(), "image", "load", "job.yaml"])
        .current_dir(&dir)
        .output()
        .expect("setpriv runs");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("image load and pull need root"), "{out:?}");
    assert!(!data.exists(), "nothing was created");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn logs_follow_prints_lines_as_they_come_and_ends_with_the_pod() {
    let dir = data_dir_with_image("follow");
    let data = dir.join("data");
    let manifest = dir.join("pod.yaml");
    std::fs::write(
        &manifest,
        r#"
apiVersion: v1
kind: Pod
metadata: {name: talker}
spec:
  restartPolicy: Never
  containers:
  - {name: c, image: busybox:1.36, command: [sh, -c, "for i in 1 2 3; do echo line$i; sleep 0.3; done"]}
"#,
    )
    .unwrap();
    let mut run = Command::new(env!("CARGO_BIN_EXE_podvisor"))
        .args(["run", manifest.to_str().unwrap(), "--data-dir", data.to_str().unwrap()])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::BufRead;
    let mut lines = std::io::BufReader::new(run.stdout.take().unwrap()).lines();
    // Follow from the moment the container is up, while it still writes.
    lines.find(|l| l.as_ref().is_ok_and(|l| l.ends_with("c: started"))).expect("the container starts").unwrap();
    let (code, out, err) = podvisor(&["logs", "-f", "talker", "--data-dir", data.to_str().unwrap()], None);
    assert_eq!((code, out.as_str()), (0, "line1\nline2\nline3\n"), "{err}");
    lines.for_each(drop);
    assert!(run.wait().unwrap().success());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn run_refuses_two_objects_of_one_name_before_starting_anything() {
    let dir = test_dir("dup").join("data");
    let pod =
        "apiVersion: v1\nkind: Pod\nmetadata: {name: twin}\nspec:\n  containers: [{name: c, image: busybox:1.36}]\n";
    let (code, _, err) =
        podvisor(&["run", "-", "--data-dir", dir.to_str().unwrap()], Some(&format!("{pod}---\n{pod}")));
    assert_eq!(
        (code, err.trim()),
        (1, "podvisor: -: pods \"twin\" already exists (in namespace \"default\"); nothing was started")
    );
    assert!(!dir.exists(), "nothing was created");
}

/// Issue: a namespace such as `../../../tmp/x` reached the paths of the logs. It is refused as
/// the API server refuses it, with its position, before anything starts.
#[test]
fn run_refuses_a_namespace_that_is_not_a_dns_label_before_starting_anything() {
    let dir = test_dir("ns").join("data");
    let pod = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n  namespace: ../../../tmp/x\nspec:\n  containers: [{name: c, image: busybox:1.36}]\n";
    let (code, _, err) = podvisor(&["run", "-", "--data-dir", dir.to_str().unwrap()], Some(pod));
    assert_eq!(code, 1);
    assert!(
        err.contains(
            r#"Pod "p" is invalid: metadata.namespace: Invalid value: "../../../tmp/x": a lowercase RFC 1123 label"#
        ),
        "{err}"
    );
    assert!(!dir.exists(), "nothing was created");
}

/// seed004-3 (data-migration) on busybox: the proxy stand-in listens only after a second and its
/// tcpSocket readinessProbe fails until then. The migration starts anyway (R17; the seed's comment
/// says otherwise), retries until the proxy answers, and the Job completes with its sidecar
/// stopped after it. The run output says why the migration did not wait.
#[test]
fn run_explains_that_a_sidecars_readiness_does_not_hold_back_the_job() {
    const MIGRATION: &str = r#"
apiVersion: batch/v1
kind: Job
metadata: {name: data-migration}
spec:
  template:
    spec:
      terminationGracePeriodSeconds: 2
      initContainers:
      - name: cloud-sql-proxy
        image: busybox:1.36
        restartPolicy: Always
        command: [sh, -c, "trap 'exit 0' TERM; sleep 1; nc -ll -p 5432 -e echo proxied & wait"]
        readinessProbe: {tcpSocket: {port: 5432}}
      containers:
      - name: migration
        image: busybox:1.36
        command: [sh, -c, "for i in $(seq 1 50); do nc 127.0.0.1 5432 </dev/null 2>/dev/null && exit 0; sleep 0.1; done; exit 1"]
      restartPolicy: Never
"#;
    let dir = data_dir_with_image("migration");
    let data = dir.join("data");
    let (code, out, err) = podvisor(&["run", "-", "--data-dir", data.to_str().unwrap()], Some(MIGRATION));
    assert_eq!(code, 0, "{out}\n{err}");
    let pos = |needle: &str| out.find(needle).unwrap_or_else(|| panic!("{needle:?} missing from:\n{out}"));
    assert!(pos("cloud-sql-proxy: started") < pos("migration: started"));
    assert!(
        pos("migration: note: started before sidecar cloud-sql-proxy passed its readinessProbe")
            < pos("/migration | proxied"),
        "{out}"
    );
    assert!(pos("migration: exited 0 (Completed)") < pos("cloud-sql-proxy: sent SIGTERM"));
    assert!(out.contains("job/data-migration: Complete"), "{out}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The benchmark suite in its reduced form, with a second runtime alongside: every figure is
/// measured and written, on real containers; no timing is asserted.
#[test]
fn bench_measures_every_figure_in_its_reduced_form() {
    let dir = data_dir_with_image("bench");
    let (data, json) = (dir.join("data"), dir.join("bench.json"));
    let (code, out, err) = podvisor(
        &[
            "bench",
            "--iterations",
            "1",
            "--pods",
            "3",
            "--also-runtime",
            "crun",
            "--out",
            json.to_str().unwrap(),
            "--data-dir",
            data.to_str().unwrap(),
        ],
        None,
    );
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("| pod start, `podvisor run`") && out.contains("container: runc create"), "{out}");
    assert!(out.contains("`serve` (POST → both running), crun"), "the other runtime has its rows: {out}");
    assert!(out.contains("| its rolling update"), "{out}");
    let doc: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    for figure in [
        "/floor/pod/median_ms",
        "/run/pod_start/median_ms",
        "/run/handoff/median_ms",
        "/run/handoff_startup_probe/median_ms",
        "/run/job_completion_from_sidecar_exit/median_ms",
        "/run/seed002_1_end_to_end/median_ms",
        "/serve/pod_start/median_ms",
        "/serve/pod_start/p99_ms",
        "/serve/scale_all_running_ms",
        "/serve/pss_per_pod_kib",
        "/serve/idle_rss_kib",
        "/serve/helper_processes_per_pod",
        "/engine/scenarios_per_second",
        "/admission/direct_median_us",
        "/admission/yaml_round_trip_median_us",
        "/sandbox_step/median_ms",
        "/rollout/create_all_available_ms",
        "/rollout/update_complete_ms",
        "/other_runtimes/0/floor/pod/median_ms",
        "/other_runtimes/0/run_pod_start/median_ms",
        "/other_runtimes/0/serve_pod_start/median_ms",
        "/other_runtimes/0/handoff/median_ms",
    ] {
        assert!(doc.pointer(figure).is_some_and(serde_json::Value::is_number), "{figure} missing: {doc:#}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A `podFailurePolicy` judges each failed pod: exit code 3 is ignored (not counted, the pod
/// is replaced at once), exit code 42 fails the Job without using its backoff limit. The
/// sidecar, stopped with SIGTERM, exits 143: an exit code rule names its container so that
/// the sidecar's end does not match.
#[test]
fn a_pod_failure_policy_ignores_one_exit_code_and_fails_the_job_on_another() {
    let dir = data_dir_with_image("failure-policy");
    let data = dir.join("data");
    let counter = dir.join("counter");
    std::fs::create_dir_all(&counter).unwrap();
    let job = format!(
        r#"
apiVersion: batch/v1
kind: Job
metadata: {{name: judged}}
spec:
  backoffLimit: 6
  podFailurePolicy:
    rules:
    - action: Ignore
      onExitCodes: {{containerName: main, operator: In, values: [3]}}
    - action: FailJob
      onExitCodes: {{containerName: main, operator: In, values: [42]}}
  template:
    spec:
      restartPolicy: Never
      terminationGracePeriodSeconds: 2
      volumes: [{{name: counter, hostPath: {{path: {}}}}}]
      initContainers:
      - name: proxy
        image: busybox:1.36
        restartPolicy: Always
        command: [sh, -c, "trap 'exit 143' TERM; while :; do sleep 0.1; done"]
      containers:
      - name: main
        image: busybox:1.36
        command: [sh, -c, "n=$(cat /c/n 2>/dev/null || echo 0); echo $((n+1)) > /c/n; if [ $n = 0 ]; then exit 3; fi; exit 42"]
        volumeMounts: [{{name: counter, mountPath: /c}}]
"#,
        counter.display()
    );
    let (code, out, err) = podvisor(&["run", "-", "--data-dir", data.to_str().unwrap()], Some(&job));
    assert_eq!(code, 2, "the Job failed\n{out}\n{err}");
    assert_eq!(std::fs::read_to_string(counter.join("n")).unwrap().trim(), "2", "two pods ran, the first ignored");
    let failed = out.lines().find(|l| l.contains("job/judged: Failed")).unwrap_or_else(|| panic!("{out}"));
    assert!(failed.contains("Failed: PodFailurePolicy: Container main for pod default/judged-"), "{failed}");
    assert!(failed.ends_with("failed with exit code 42 matching FailJob rule at index 1"), "{failed}");
}

/// `podvisor exec` reaches a pod that `podvisor run` runs, from another terminal: the output,
/// the exit code, and the container asked for.
#[test]
fn exec_runs_a_command_in_a_pod_of_run() {
    let dir = data_dir_with_image("exec");
    let data = dir.join("data");
    let manifest = dir.join("pod.yaml");
    std::fs::write(
        &manifest,
        r#"
apiVersion: v1
kind: Pod
metadata: {name: shell}
spec:
  terminationGracePeriodSeconds: 1
  initContainers:
  - name: side
    image: busybox:1.36
    restartPolicy: Always
    command: [sh, -c, "trap 'exit 0' TERM; while :; do sleep 0.1; done"]
  containers:
  - name: app
    image: busybox:1.36
    command: [sh, -c, "trap 'exit 0' TERM; while :; do sleep 0.1; done"]
"#,
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_podvisor"))
        .args(["run", manifest.to_str().unwrap(), "--data-dir", data.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let d = data.to_str().unwrap();
    let mut last = (0, String::new(), String::new());
    for _ in 0..100 {
        last = podvisor(&["exec", "--data-dir", d, "shell", "-c", "app", "--", "sh", "-c", "echo hi; exit 4"], None);
        if last.0 == 4 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    assert_eq!((last.0, last.1.as_str()), (4, "hi\n"), "{}", last.2);
    assert!(last.2.contains("command terminated with exit code 4"), "{}", last.2);
    let (code, out, err) = podvisor(&["exec", "--data-dir", d, "shell", "-c", "side", "--", "hostname"], None);
    assert_eq!((code, out.trim()), (0, "shell"), "{err}");
    let (code, _, err) = podvisor(&["exec", "--data-dir", d, "shell", "--", "true"], None);
    assert_eq!(
        (code, err.trim()),
        (1, "podvisor: a container name must be specified for pod shell, choose one of: [app side]")
    );
    let _ = Command::new("kill").args(["-INT", &child.id().to_string()]).status();
    let _ = child.wait();
    std::fs::remove_dir_all(&dir).unwrap();
}

/// #18: `podvisor lint` on the seed directory: each finding placed, the invalid YAML an error
/// (exit 1), warnings alone exit 0 unless `--fail-on warning`; JSON and SARIF on request; a
/// manifest on standard input.
#[test]
fn lint_reports_the_seed_pitfalls_with_exit_codes_and_formats() {
    let (code, out, err) = podvisor(&["lint", "--color", "never", "."], None);
    assert_eq!(code, 1, "the invalid seeds are errors: {out}{err}");
    assert!(out.contains("./seed002-1.yaml\n  14:9  warning  pid1-shell-ignores-sigterm (PV004)"), "{out}");
    assert!(out.contains("./seed004-5-legacy.yaml\n  11:5  warning  legacy-sidecar (PV001)"), "{out}");
    assert!(out.contains("./seed003-1.yaml\n  33:19  error  invalid (PV000)"), "{out}");
    assert!(out.ends_with("2 errors, 6 warnings\n"), "{out}");
    let (code, out, _) = podvisor(&["lint", "seed002-1.yaml", "seed004-2.yaml"], None);
    assert_eq!(code, 0, "warnings alone pass: {out}");
    assert!(!out.contains('\x1b'), "no colour off a terminal");
    let (code, _, _) = podvisor(&["lint", "--fail-on", "warning", "seed002-1.yaml"], None);
    assert_eq!(code, 1);
    let (code, out, _) = podvisor(&["lint", "-o", "json", "seed004-2.yaml"], None);
    assert_eq!(code, 0);
    let json: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(json[0]["rule"], "readiness-does-not-gate");
    let (_, out, _) = podvisor(&["lint", "-o", "sarif", "seed004-5-legacy.yaml"], None);
    let sarif: serde_json::Value = serde_json::from_str(&out).expect("SARIF");
    assert_eq!(sarif["runs"][0]["results"][0]["ruleId"], "PV001");
    let clean = "apiVersion: v1\nkind: Pod\nmetadata: {name: a}\nspec: {containers: [{name: a, image: busybox}]}\n";
    let (code, out, _) = podvisor(&["lint", "-"], Some(clean));
    assert_eq!((code, out.as_str()), (0, "0 errors, 0 warnings\n"));
}

/// #18: the seed Job's timeline drawn from a simulation: one row per container in start order
/// (the sidecar first), bars, the SIGTERM and SIGKILL marks on the sidecar, the grace window,
/// the phases; and a run's events (`--timeline RUN.json`) drawn by `podvisor timeline`.
#[test]
fn the_seed_jobs_timeline_is_drawn_with_rows_marks_and_the_grace_window() {
    let dir = test_dir("timeline");
    std::fs::create_dir_all(&dir).unwrap();
    let html = dir.join("seed002-1.html");
    let (code, out, err) = podvisor(&["simulate", "seed002-1.yaml", "--timeline", html.to_str().unwrap()], None);
    assert_eq!(code, 0, "{out}{err}");
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(page.starts_with("<!doctype html>") && page.contains("<svg"), "self-contained HTML with the picture");
    assert!(!page.contains("<script"), "no script");
    assert_eq!(page.matches("http").count(), page.matches("http://www.w3.org/2000/svg").count(), "nothing fetched");
    let sidecar = page.find(r#"data-container="log-shipper" data-kind="sidecar""#).expect("the sidecar's row");
    let app = page.find(r#"data-container="main-task" data-kind="app""#).expect("the app's row");
    assert!(sidecar < app, "rows in start order");
    let sidecar_row = &page[sidecar..app];
    assert!(sidecar_row.contains(r#"class="mark sigterm""#) && sidecar_row.contains(r#"class="mark sigkill""#));
    assert!(sidecar_row.contains("exited 137"), "{sidecar_row}");
    assert!(page[app..].contains("main-task exited 0 (Completed) at 5.080 s"));
    assert!(page.contains("grace period (30 s) from the first SIGTERM at 5.080 s"));
    assert!(page.contains("phase Succeeded from 35.080 s"));
    let (code, _, err) = podvisor(&["simulate", "seed002-1.yaml", "--timeline", "/tmp/x.png"], None);
    assert_eq!(code, 1);
    assert!(err.contains("a timeline picture is written as .html or .svg"), "{err}");
    // A run's events, as `run --timeline RUN.json` writes them.
    let events = r#"[
      {"at": "2026-01-01T00:00:00Z", "pod": "default/p", "uid": "u", "type": "started", "container": "proxy", "attempt": 0},
      {"at": "2026-01-01T00:00:00.5Z", "pod": "default/p", "uid": "u", "type": "event", "kind": "Normal", "reason": "Pulled", "message": "ok", "container": "proxy", "fieldPath": "spec.initContainers{proxy}"},
      {"at": "2026-01-01T00:00:02Z", "pod": "default/p", "uid": "u", "type": "handler", "container": "proxy", "handler": "startupProbe", "result": "ok"},
      {"at": "2026-01-01T00:00:02.1Z", "pod": "default/p", "uid": "u", "type": "started", "container": "app", "attempt": 0},
      {"at": "2026-01-01T00:00:04Z", "pod": "default/p", "uid": "u", "type": "exited", "container": "app", "attempt": 0, "exitCode": 0, "reason": "Completed"},
      {"at": "2026-01-01T00:00:04Z", "pod": "default/p", "uid": "u", "type": "signalled", "container": "proxy", "signal": "SIGTERM", "why": "the regular containers have exited"},
      {"at": "2026-01-01T00:00:04.2Z", "pod": "default/p", "uid": "u", "type": "exited", "container": "proxy", "attempt": 0, "exitCode": 143, "reason": "Error"},
      {"at": "2026-01-01T00:00:04.3Z", "pod": "default/p", "uid": "u", "type": "finished", "phase": "Succeeded"}
    ]"#;
    let json = dir.join("run.json");
    std::fs::write(&json, events).unwrap();
    let svg = dir.join("run.svg");
    let (code, _, err) = podvisor(&["timeline", json.to_str().unwrap(), "-o", svg.to_str().unwrap()], None);
    assert_eq!(code, 0, "{err}");
    let picture = std::fs::read_to_string(&svg).unwrap();
    assert!(picture.starts_with("<svg"));
    let proxy = picture.find(r#"data-container="proxy" data-kind="sidecar""#).expect("the sidecar is recognised");
    let app = picture.find(r#"data-container="app" data-kind="app""#).expect("the app");
    assert!(proxy < app);
    assert!(
        picture.contains("proxy: running from 0.000 s to 2.000 s") && picture.contains("proxy: started from 2.000 s")
    );
    assert!(picture.contains("proxy exited 143 (Error) at 4.200 s"));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// #18: `podvisor migrate` rewrites a legacy sidecar in a Job as a native one, keeping the
/// rest of the text; the check in virtual time shows the Job now completes where it never did;
/// the result validates, lints clean, and completes on real containers.
#[test]
fn migrate_turns_a_legacy_sidecar_job_into_one_that_completes() {
    let dir = data_dir_with_image("migrate");
    let manifest = dir.join("job.yaml");
    let legacy = r#"# A report with its log shipper, written the old way.
apiVersion: batch/v1
kind: Job
metadata:
  name: report
spec:
  template:
    spec:
      restartPolicy: Never
      terminationGracePeriodSeconds: 2
      containers:
      - name: report   # the work
        image: busybox:1.36
        command: [sh, -c, "echo working > /logs/out; sleep 1"]
        volumeMounts: [{name: logs, mountPath: /logs}]
      - name: log-shipper
        image: busybox:1.36
        command: [sh, -c, "trap 'exit 0' TERM; tail -F /logs/out & wait"]
        volumeMounts: [{name: logs, mountPath: /logs}]
      volumes: [{name: logs, emptyDir: {}}]
"#;
    std::fs::write(&manifest, legacy).unwrap();
    let path = manifest.to_str().unwrap();
    let (code, out, err) = podvisor(&["migrate", path, "--behave", "report=run:1s,exit:0"], None);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("log-shipper moved from containers to initContainers with restartPolicy: Always"), "{out}");
    assert!(out.contains("before: still Running after 600 s (never completes)"), "{out}");
    assert!(out.contains("after:  Succeeded after"), "{out}");
    assert!(
        out.contains("+      initContainers:\n+      - name: log-shipper\n+        restartPolicy: Always\n"),
        "{out}"
    );
    assert_eq!(std::fs::read_to_string(&manifest).unwrap(), legacy, "without --in-place the file is left as it is");
    let (code, out, _) = podvisor(&["migrate", path, "--in-place"], None);
    assert_eq!(code, 0, "{out}");
    let migrated = std::fs::read_to_string(&manifest).unwrap();
    assert!(migrated.starts_with("# A report with its log shipper, written the old way.\n"));
    assert!(migrated.contains("      - name: report   # the work\n"), "comments kept: {migrated}");
    assert_eq!(podvisor(&["validate", path], None).0, 0);
    let (code, out, _) = podvisor(&["lint", "--fail-on", "warning", path], None);
    assert_eq!(code, 0, "lints clean: {out}");
    let data = dir.join("data");
    let (code, out, err) = podvisor(&["run", path, "--data-dir", data.to_str().unwrap()], None);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("job/report: Complete") || out.contains("report: Complete"), "{out}");
    // The Job's logs, by the Job's name, kept after the run.
    let data = data.to_str().unwrap();
    let (code, out, err) = podvisor(&["logs", "job/report", "-c", "log-shipper", "--data-dir", data], None);
    assert_eq!(code, 0, "{err}");
    assert!(out.lines().any(|l| l == "working"), "the shipper started first, waited, then shipped: {out}");
    let all = out.lines().count();
    let (code, out, _) =
        podvisor(&["logs", "job/report", "-c", "log-shipper", "--tail", "1", "--data-dir", data], None);
    assert_eq!((code, out.lines().count()), (0, 1), "{out}");
    assert!(all > 1);
    let (code, _, err) = podvisor(&["logs", "job/nosuch", "--data-dir", data], None);
    assert_eq!(code, 1, "{err}");
    std::fs::remove_dir_all(&dir).ok();
}

/// #18: simulate prints the notes `run` prints: why a sidecar was killed at the end of its grace
/// (a PID-1 shell), and that readiness held nothing back.
#[test]
fn simulate_says_why_a_shell_is_killed_and_that_readiness_does_not_gate() {
    let (code, out, _) = podvisor(&["simulate", "seed002-1.yaml"], None);
    assert_eq!(code, 0);
    assert!(
        out.contains("log-shipper      sent SIGKILL: the grace period is over (its PID 1 is a shell without a trap"),
        "{out}"
    );
    let (_, out, _) = podvisor(&["simulate", "seed004-2.yaml", "--until", "5"], None);
    assert!(
        out.contains("app              note: started before sidecar istio-proxy passed its readinessProbe"),
        "{out}"
    );
}

/// #18: a `--behave` for a container no manifest has is an error, not ignored.
#[test]
fn simulate_refuses_a_behaviour_for_a_container_that_does_not_exist() {
    let (code, out, err) = podvisor(&["simulate", "seed002-1.yaml", "--behave", "log-shiper=run:1s"], None);
    assert_eq!(code, 1, "{out}");
    assert!(err.contains("--behave log-shiper=run:1s: no container is named \"log-shiper\" in the manifests"), "{err}");
    let (code, _, err) = podvisor(&["simulate", "seed002-1.yaml", "--behave", "log-shipper=term:1s"], None);
    assert_eq!(code, 0, "{err}");
}

/// #18: simulate runs a Job as the Job controller does: completions with parallelism, the
/// back-off between failed pods, backoffLimit, and a podFailurePolicy that fails the Job at
/// once on an exit code.
#[test]
fn simulate_runs_jobs_as_the_job_controller_does() {
    let job = |extra: &str, command: &str| {
        format!(
            "apiVersion: batch/v1\nkind: Job\nmetadata: {{name: work}}\nspec:\n{extra}  template:\n    spec:\n      restartPolicy: Never\n      containers: [{{name: w, image: busybox, command: [sh, -c, \"{command}\"]}}]\n"
        )
    };
    let (code, out, err) = podvisor(&["simulate", "-"], Some(&job("  completions: 4\n  parallelism: 2\n", "sleep 2")));
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains(
            "[   0.000s] job              created pod work-1\n[   0.000s] job              created pod work-2\n"
        ),
        "{out}"
    );
    assert!(!out.contains("work-5"), "four completions, four pods: {out}");
    assert!(
        out.contains("work: Complete after 4.080s"),
        "two rounds of two pods, each 40 ms to start and 2 s to run: {out}"
    );
    let (code, out, _) = podvisor(&["simulate", "-"], Some(&job("  backoffLimit: 1\n", "sleep 1; exit 1")));
    assert_eq!(code, 2, "{out}");
    let line = out.lines().find(|l| l.ends_with("job              created pod work-2")).expect("a second pod");
    let at: f64 = line.trim_start_matches('[').split('s').next().unwrap().trim().parse().unwrap();
    assert!((11.0..11.5).contains(&at), "the second pod after the first failure (1 s) and a 10 s back-off: {out}");
    assert!(out.contains("work: Failed: BackoffLimitExceeded"), "{out}");
    let policy = "  backoffLimit: 6\n  podFailurePolicy:\n    rules:\n    - action: FailJob\n      onExitCodes: {containerName: w, operator: In, values: [42]}\n";
    let (code, out, _) = podvisor(&["simulate", "-"], Some(&job(policy, "sleep 1; exit 42")));
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("work: Failed: PodFailurePolicy"), "{out}");
    assert!(!out.contains("work-2"), "failed at once, no retry: {out}");
}

/// #24: a directory stands for its manifests; completions and the man page come from the
/// command line itself.
#[test]
fn directories_completions_and_the_man_page() {
    let dir = test_dir("dir");
    std::fs::create_dir_all(dir.join("more")).unwrap();
    std::fs::write(dir.join("a.yaml"), "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n").unwrap();
    std::fs::write(dir.join("more/b.yml"), "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: b}\n").unwrap();
    std::fs::write(dir.join("notes.txt"), "not a manifest").unwrap();
    let (code, out, err) = podvisor(&["validate", dir.to_str().unwrap()], None);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("a.yaml: ConfigMap \"a\" is valid") && out.contains("more/b.yml: ConfigMap \"b\" is valid"),
        "{out}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
    let (code, out, _) = podvisor(&["completion", "bash"], None);
    assert_eq!(code, 0);
    assert!(out.contains("_podvisor()") && out.contains("lint") && out.contains("migrate"));
    let (code, out, _) = podvisor(&["man"], None);
    assert_eq!(code, 0);
    assert!(out.contains(".TH podvisor 1"));
}

/// #24: run says when a Job's failed pod is retried (after the controller's back-off, which
/// attempt of how many) and when it is not, and says at SIGTERM that a PID-1 shell will make
/// the stop wait out its grace.
#[test]
fn run_says_when_a_job_retries_and_why_a_sidecar_stop_waits() {
    let dir = data_dir_with_image("retry");
    let manifest = dir.join("job.yaml");
    std::fs::write(
        &manifest,
        r#"apiVersion: batch/v1
kind: Job
metadata: {name: flaky}
spec:
  backoffLimit: 1
  template:
    spec:
      restartPolicy: Never
      terminationGracePeriodSeconds: 1
      initContainers:
      - {name: side, image: "busybox:1.36", restartPolicy: Always, command: [sh, -c, "while true; do sleep 1; done"]}
      containers:
      - {name: work, image: "busybox:1.36", command: [sh, -c, "exit 1"]}
"#,
    )
    .unwrap();
    let data = dir.join("data");
    let (code, out, err) = podvisor(&["run", manifest.to_str().unwrap(), "--data-dir", data.to_str().unwrap()], None);
    assert_eq!(code, 2, "{out}{err}");
    assert!(
        // A grace of 1 s gives a stop signal the kubelet's minimum of 2 s.
        out.contains("side: note: its PID 1 is a shell without a trap: it ignores SIGTERM, so it is killed in 2 s"),
        "{out}"
    );
    assert!(out.contains("job/flaky: retrying in 10 s, attempt 2 of 2"), "{out}");
    assert!(out.contains("job/flaky: no retry: Job has reached the specified backoff limit"), "{out}");
    // The logs stay after the run, until pruned; an unpacked image no name refers to goes too.
    let data = data.to_str().unwrap();
    assert_eq!(podvisor(&["logs", "job/flaky", "-c", "work", "--data-dir", data], None).0, 0);
    let orphan = dir.join("data/images").join("0".repeat(64));
    std::fs::create_dir_all(orphan.join("rootfs")).unwrap();
    let (code, out, err) = podvisor(&["prune", "--data-dir", data], None);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.matches("removed the logs of pod default/flaky-").count(), 2, "{out}");
    assert!(out.contains("removed image 000000000000") && out.ends_with(" MB\n"), "{out}");
    assert!(!orphan.exists());
    assert_eq!(podvisor(&["logs", "job/flaky", "-c", "work", "--data-dir", data], None).0, 1);
    let images = podvisor(&["image", "ls", "--data-dir", data], None).1;
    assert!(images.contains("docker.io/library/busybox:1.36"), "named images stay: {images}");
    std::fs::remove_dir_all(&dir).ok();
}

/// #24: the images a run needs and the local store lacks are named up front, all of them;
/// with `--pull never` that is an error and nothing starts.
#[test]
fn run_names_every_missing_image_up_front() {
    let dir = data_dir_with_image("missing");
    let manifest = dir.join("pod.yaml");
    std::fs::write(
        &manifest,
        "apiVersion: v1\nkind: Pod\nmetadata: {name: two}\nspec:\n  restartPolicy: Never\n  containers:\n  - {name: a, image: \"nowhere.invalid/a:1\"}\n  - {name: b, image: \"nowhere.invalid/b:1\"}\n  - {name: c, image: \"busybox:1.36\", command: [\"true\"]}\n",
    )
    .unwrap();
    let data = dir.join("data");
    let (code, out, err) =
        podvisor(&["run", manifest.to_str().unwrap(), "--pull", "never", "--data-dir", data.to_str().unwrap()], None);
    assert_eq!(code, 1, "{out}");
    assert!(
        err.contains("not in the local image store, and not to be pulled (imagePullPolicy Never): nowhere.invalid/a:1, nowhere.invalid/b:1; nothing was started"),
        "{err}"
    );
    assert!(!out.contains("phase Pending"), "nothing started: {out}");
    std::fs::remove_dir_all(&dir).ok();
}

/// Issue: a pod that wrote much just before it ended had its last lines cut off by the end of
/// the run (they were still on their way to the terminal). Every line is printed, in order,
/// before the run's outcome.
#[test]
fn run_prints_every_line_a_pod_wrote_before_it_ended() {
    let dir = data_dir_with_image("chatty");
    let data = dir.join("data");
    let pod = "apiVersion: v1\nkind: Pod\nmetadata: {name: chatty}\nspec:\n  restartPolicy: Never\n  containers:\n  - {name: c, image: \"busybox:1.36\", command: [seq, \"1\", \"50000\"]}\n";
    let (code, out, err) = podvisor(&["run", "-", "--data-dir", data.to_str().unwrap()], Some(pod));
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().filter_map(|l| l.strip_prefix("chatty/c | ")).collect();
    assert_eq!(lines.len(), 50000, "{}", &out[out.len().saturating_sub(500)..]);
    assert!(lines.iter().enumerate().all(|(i, l)| l.parse::<usize>() == Ok(i + 1)), "in order");
    assert!(!out.contains("not shown"), "nothing skipped");
}

/// Issue: `podvisor run … | head` left its pods running without it once the pipe closed. The
/// run now stops them in order, as an interrupt does, and ends; a closed pipe is not an error.
#[test]
fn run_stops_its_pods_when_its_output_goes_away() {
    use std::io::BufRead;
    let dir = data_dir_with_image("closed");
    let data = dir.join("data");
    let pod = "apiVersion: v1\nkind: Pod\nmetadata: {name: talker}\nspec:\n  terminationGracePeriodSeconds: 1\n  containers:\n  - {name: c, image: \"busybox:1.36\", command: [sh, -c, \"trap 'exit 0' TERM; while :; do echo tick; sleep 0.1; done\"]}\n";
    let manifest = dir.join("talker.yaml");
    std::fs::write(&manifest, pod).unwrap();
    let started = std::time::Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_podvisor"))
        .args(["run", manifest.to_str().unwrap(), "--data-dir", data.to_str().unwrap()])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let ticks = lines.by_ref().map_while(Result::ok).filter(|l| l.contains("tick")).take(3).count();
    assert_eq!(ticks, 3);
    drop(lines);
    let status = child.wait().unwrap();
    assert!(status.success(), "{status}");
    assert!(started.elapsed() < std::time::Duration::from_secs(30), "it ended: {:?}", started.elapsed());
    let left = Command::new("pgrep").args(["-f", data.to_str().unwrap()]).output().unwrap();
    assert!(left.stdout.is_empty(), "nothing of the run is left: {}", String::from_utf8_lossy(&left.stdout));
}

/// A pod the one node would never run (bound to another node, or excluded by its node
/// selector or required node affinity) stays Pending for ever under the kubelet and the
/// scheduler: `run` refuses it up front, naming the file, the field and the node's labels, and
/// nothing starts. A pod the node's labels select runs.
#[test]
fn run_refuses_pods_this_node_would_never_run_and_runs_those_it_selects() {
    let dir = data_dir_with_image("placement");
    let data = dir.join("data");
    let run = |name: &str, yaml: &str| {
        let manifest = dir.join(name);
        std::fs::write(&manifest, yaml).unwrap();
        podvisor(&["run", manifest.to_str().unwrap(), "--data-dir", data.to_str().unwrap()], None)
    };
    let container = "  containers:\n  - {name: c, image: \"busybox:1.36\", command: [\"true\"]}\n";
    let (code, out, err) = run(
        "selector.yaml",
        &format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: ssd}}\nspec:\n  restartPolicy: Never\n  nodeSelector: {{disk: ssd}}\n{container}"
        ),
    );
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains("selector.yaml:6:3: Pod \"ssd\" would never run on this node: spec.nodeSelector: 0/1 nodes are available: 1 node(s) didn't match Pod's node affinity/selector (node "), "{err}");
    assert!(err.contains("kubernetes.io/os=linux") && err.ends_with("nothing was started\n"), "{err}");
    assert!(!out.contains("Pending"), "nothing started: {out}");
    let (code, out, err) = run(
        "affinity.yaml",
        &format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: gpu}}\nspec:\n  restartPolicy: Never\n  affinity: {{nodeAffinity: {{requiredDuringSchedulingIgnoredDuringExecution: {{nodeSelectorTerms: [{{matchExpressions: [{{key: gpu, operator: Exists}}]}}]}}}}}}\n{container}"
        ),
    );
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains("affinity.yaml:6:29: Pod \"gpu\" would never run on this node: spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution: 0/1 nodes are available"), "{err}");
    let (code, out, err) = run(
        "elsewhere.yaml",
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec:\n  selector: {matchLabels: {app: web}}\n  template:\n    metadata: {labels: {app: web}}\n    spec:\n      nodeName: worker-7\n      containers: [{name: c, image: \"busybox:1.36\"}]\n",
    );
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains("elsewhere.yaml:9:7: Deployment \"web\" would never run on this node: spec.template.spec.nodeName: Invalid value: \"worker-7\": bound to another node (this node is "), "{err}");
    let (code, out, err) = run(
        "linux.yaml",
        &format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: linux}}\nspec:\n  restartPolicy: Never\n  nodeSelector: {{kubernetes.io/os: linux}}\n  affinity: {{nodeAffinity: {{requiredDuringSchedulingIgnoredDuringExecution: {{nodeSelectorTerms: [{{matchExpressions: [{{key: kubernetes.io/arch, operator: Exists}}]}}]}}}}}}\n{container}"
        ),
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("pod/linux: Succeeded"), "{out}");
    // Two pods of a Job asking for one host port: the second waits for the first, and the run
    // says why.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let (code, out, err) = run(
        "ports.yaml",
        &format!(
            "apiVersion: batch/v1\nkind: Job\nmetadata: {{name: two}}\nspec:\n  completions: 2\n  parallelism: 2\n  template:\n    spec:\n      restartPolicy: Never\n      containers:\n      - {{name: c, image: \"busybox:1.36\", command: [sleep, \"1\"], ports: [{{containerPort: 80, hostPort: {port}}}]}}\n"
        ),
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("event FailedScheduling: 0/1 nodes are available: 1 node(s) didn't have free ports for the requested pod ports."), "{out}");
    assert!(out.contains("job/two: Complete"), "{out}");
    std::fs::remove_dir_all(&dir).ok();
}

/// #24: `--version` names the version, the commit the binary is built from, and the Kubernetes
/// version it reports.
#[test]
fn version_names_the_commit_and_the_kubernetes_version() {
    let (code, out, _) = podvisor(&["--version"], None);
    assert_eq!(code, 0);
    let commit = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let commit = if commit.is_empty() { "unknown".to_string() } else { commit };
    assert!(out.starts_with(&format!("podvisor {} (commit ", env!("CARGO_PKG_VERSION"))), "{out}");
    assert!(out.contains(&format!("commit {commit},")), "{out}");
    assert!(out.contains("Kubernetes v1.32.0;"), "{out}");
}

/// #24: `--fail-fast` stops the run at the first image that cannot be pulled (showing the
/// network's own error) or the first pod that fails, instead of backing off for ever; the
/// other pods are stopped with their grace, and the run exits 2.
#[test]
fn fail_fast_stops_at_the_first_pull_failure_or_failed_pod() {
    let dir = data_dir_with_image("failfast");
    let data = dir.join("data");
    let data = data.to_str().unwrap();
    let unreachable = "apiVersion: v1\nkind: Pod\nmetadata: {name: far}\nspec:\n  restartPolicy: Never\n  containers:\n  - {name: a, image: \"127.0.0.1:1/nothing:1\"}\n";
    let (code, out, err) = podvisor(&["run", "-", "--fail-fast", "--data-dir", data], Some(unreachable));
    assert_eq!(code, 2, "{out}{err}");
    assert!(out.contains("podvisor: --fail-fast: pod/far: Failed to pull image \"127.0.0.1:1/nothing:1\""), "{out}");
    assert!(out.contains("Connection refused"), "the network's own error is shown: {out}");
    assert!(out.contains("podvisor: stopped by --fail-fast"), "{out}");
    let two = r#"apiVersion: v1
kind: Pod
metadata: {name: bad}
spec:
  restartPolicy: Never
  containers: [{name: c, image: "busybox:1.36", command: [sh, -c, "exit 3"]}]
---
apiVersion: v1
kind: Pod
metadata: {name: long}
spec:
  restartPolicy: Never
  terminationGracePeriodSeconds: 1
  containers: [{name: c, image: "busybox:1.36", command: [sleep, "600"]}]
"#;
    let started = std::time::Instant::now();
    let (code, out, err) = podvisor(&["run", "-", "--fail-fast", "--data-dir", data], Some(two));
    assert_eq!(code, 2, "{out}{err}");
    assert!(out.contains("podvisor: --fail-fast: pod/bad Failed: deleting every pod"), "{out}");
    assert!(out.contains("pod/long c: sent SIGTERM"), "{out}");
    assert!(started.elapsed() < std::time::Duration::from_secs(60), "{out}");
    std::fs::remove_dir_all(&dir).ok();
}

/// #24: `ps` lists the pods of a data directory from the machine: those of a `run` in
/// progress, of one that was killed (its containers outlive it), and with `-a` the ended ones,
/// a Job's pod `Completed` although its sidecar was stopped; `down` stops what a killed run
/// left, and refuses while a podvisor uses the directory.
#[test]
fn ps_lists_the_pods_on_the_machine_and_down_stops_what_a_killed_run_left() {
    let dir = data_dir_with_image("ps");
    let data = dir.join("data");
    let data = data.to_str().unwrap();
    let (code, out, err) = podvisor(&["run", "-", "--data-dir", data], Some(JOB.split("---").next().unwrap()));
    assert_eq!(code, 0, "{out}{err}");
    let manifest = dir.join("long.yaml");
    std::fs::write(
        &manifest,
        r#"apiVersion: v1
kind: Pod
metadata: {name: long}
spec:
  terminationGracePeriodSeconds: 1
  initContainers:
  - {name: side, image: busybox:1.36, restartPolicy: Always, command: [sleep, "600"]}
  containers:
  - {name: app, image: busybox:1.36, command: [sleep, "600"]}
"#,
    )
    .unwrap();
    let mut run = Command::new(env!("CARGO_BIN_EXE_podvisor"))
        .args(["run", manifest.to_str().unwrap(), "--data-dir", data])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(run.stdout.take().unwrap()));
    assert!(lines.any(|l| l.unwrap().contains("app: started")), "the run starts its pod");
    fn row(out: &str, name: &str) -> Option<Vec<String>> {
        let line = out.lines().find(|l| l.split_whitespace().nth(1) == Some(name))?;
        Some(line.split_whitespace().map(str::to_string).collect())
    }
    let (code, out, _) = podvisor(&["ps", "--data-dir", data], None);
    assert_eq!(code, 0);
    assert_eq!(row(&out, "long").unwrap()[..4], ["default", "long", "2/2", "Running"], "{out}");
    assert!(row(&out, "quick").is_none(), "ended pods only with -a: {out}");
    let (code, _, err) = podvisor(&["down", "--data-dir", data], None);
    assert_eq!(code, 1);
    assert!(err.contains("a podvisor is using this data directory"), "{err}");
    // Killed, the run leaves its containers up; ps still sees them, down stops them.
    run.kill().unwrap();
    run.wait().unwrap();
    let (_, out, _) = podvisor(&["ps", "--data-dir", data], None);
    assert_eq!(row(&out, "long").unwrap()[2..4], ["2/2", "Running"], "{out}");
    let (code, out, err) = podvisor(&["down", "--data-dir", data], None);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("1 pod(s) of no stored object (a killed run): stopped at once"), "{out}");
    let (_, out, _) = podvisor(&["ps", "--data-dir", data], None);
    assert!(out.starts_with("No pods are running"), "{out}");
    let (_, out, _) = podvisor(&["ps", "-a", "--data-dir", data], None);
    let quick = out.lines().find(|l| l.contains(" quick-")).map(|l| l.split_whitespace().collect::<Vec<_>>());
    assert_eq!(quick.as_ref().map(|r| r[2..4].to_vec()), Some(vec!["0/2", "Completed"]), "{out}");
    assert_eq!(row(&out, "long").unwrap()[2], "0/2", "{out}");
    std::fs::remove_dir_all(&dir).ok();
}

/// #24: every manifest in `examples/` is lint-clean and runs to success on real containers,
/// showing what it is there to show, in order.
#[test]
fn the_examples_are_lint_clean_and_run_as_they_say() {
    // Lifecycle lines in the order the kubelet's rules give them; a container's output may be
    // printed before or after the line of its own start, so output is only required present.
    let expected: &[(&str, &[&str], &[&str])] = &[
        (
            "log-shipper-job.yaml",
            &["log-shipper: started", "report: started", "log-shipper | shipper: all shipped", "job/report: Complete"],
            &["/log-shipper | line 3", "/report | report done"],
        ),
        (
            "migration-init-sidecar.yaml",
            &[
                "db-proxy: startup probe passed",
                "migrate: started",
                "migrate: exited 0",
                "app: started",
                "app: exited 0",
                "db-proxy: sent SIGTERM",
                "job/migrate-and-serve: Complete",
            ],
            &["/migrate | migration applied", "/app | app done"],
        ),
        (
            "ordered-shutdown.yaml",
            &[
                "log-shipper: started",
                "metrics: started",
                "app: started",
                "app: exited 0",
                "metrics: sent SIGTERM",
                "metrics: exited 0",
                "log-shipper: sent SIGTERM",
                "log-shipper: exited 0",
                "pod/ordered: Succeeded",
            ],
            &["/metrics | metrics stopping", "/log-shipper | log-shipper stopping"],
        ),
        (
            "proxy-startup-probe.yaml",
            &["proxy: startup probe passed", "app: started", "pod/web-client: Succeeded"],
            &["web-client/app | hello through the proxy"],
        ),
    ];
    let examples = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    let mut files: Vec<String> = std::fs::read_dir(&examples)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".yaml"))
        .collect();
    files.sort();
    let named: Vec<&str> = expected.iter().map(|(f, _, _)| *f).collect();
    assert_eq!(files, named, "each example has its expectations here");
    let dir = data_dir_with_image("examples");
    let data = dir.join("data");
    for (file, needles, output) in expected {
        let path = examples.join(file);
        let path = path.to_str().unwrap();
        let (code, out, err) = podvisor(&["lint", path, "--fail-on", "warning"], None);
        assert_eq!(code, 0, "{file} is lint-clean: {out}{err}");
        let (code, out, err) = podvisor(&["run", path, "--data-dir", data.to_str().unwrap()], None);
        assert_eq!(code, 0, "{file}: {out}{err}");
        let mut from = 0;
        for needle in *needles {
            let at = out[from..]
                .find(needle)
                .unwrap_or_else(|| panic!("{file}: {needle:?} missing after byte {from}:\n{out}"));
            from += at + needle.len();
        }
        for line in *output {
            assert!(out.contains(line), "{file}: {line:?} missing:\n{out}");
        }
    }
    std::fs::remove_dir_all(&dir).ok();
}

/// The long options `podvisor ARGS --help` lists, without `--help` and `--data-dir`.
fn long_options(args: &[&str]) -> Vec<String> {
    let mut full = args.to_vec();
    full.push("--help");
    let (code, out, err) = podvisor(&full, None);
    assert_eq!(code, 0, "{err}");
    let mut options: Vec<String> = out
        .lines()
        .map(str::trim_start)
        .filter(|l| l.starts_with('-'))
        .filter_map(|l| l.split_whitespace().find(|w| w.starts_with("--")))
        .map(|w| w.trim_end_matches(',').to_string())
        .filter(|o| o != "--help" && o != "--data-dir")
        .collect();
    options.dedup();
    options
}

/// #24: every command has its page under docs/commands/ and docs/commands.md links it; every
/// option a command takes is on its page (the node options on theirs), and the Options section
/// of a page names no option the command does not take.
#[test]
fn every_command_has_a_docs_page_that_names_its_options() {
    let docs = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs");
    let (_, help, _) = podvisor(&["--help"], None);
    let commands: Vec<&str> = help
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .collect();
    assert!(commands.len() > 15, "{help}");
    let index = std::fs::read_to_string(docs.join("commands.md")).unwrap();
    let node_page = std::fs::read_to_string(docs.join("commands/node-options.md")).unwrap();
    let node_options = long_options(&["down"]);
    assert!(node_options.contains(&"--pod-network".to_string()), "{node_options:?}");
    assert!(long_options(&["run"]).contains(&"--fail-fast".to_string()));
    for o in &node_options {
        assert!(node_page.contains(&format!("`{o}")), "node-options.md names {o}");
    }
    for command in commands {
        let page = docs.join(format!("commands/{command}.md"));
        let text = std::fs::read_to_string(&page).unwrap_or_else(|_| panic!("{} is missing", page.display()));
        assert!(text.starts_with(&format!("# podvisor {command}\n")), "{command}.md's title");
        assert!(index.contains(&format!("(commands/{command}.md)")), "docs/commands.md links {command}");
        let mut taken: Vec<String> = Vec::new();
        if command == "image" {
            for sub in ["load", "pull", "ls", "rm"] {
                taken.extend(long_options(&["image", sub]));
            }
        } else {
            taken = long_options(&[command]);
        }
        for o in &taken {
            assert!(text.contains(&format!("`{o}")), "{command}.md names {o}");
        }
        let section = text.split("\n## ").find(|s| s.contains("ptions\n")).unwrap_or("");
        let section = section.split("\n## ").next().unwrap_or("");
        for word in section.split(|c: char| c == '`' || c.is_whitespace() || c == ',' || c == '[' || c == '(') {
            if let Some(flag) = word.strip_prefix("--").map(|f| f.split(['=', ' ']).next().unwrap_or(f)) {
                let flag = format!("--{flag}");
                if flag.len() > 3 {
                    assert!(
                        taken.contains(&flag) || flag == "--data-dir",
                        "{command}.md's options name {flag}, which it does not take"
                    );
                }
            }
        }
    }
}

/// #24: every row of docs/kubectl.md marked working names tests of the kubectl suite that
/// exist and that run what the row is about (its first word: the kubectl command, or the kind).
#[test]
fn the_kubectl_matrix_names_the_tests_that_run_each_row() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let matrix = std::fs::read_to_string(root.join("../../docs/kubectl.md")).unwrap();
    let suite = std::fs::read_to_string(root.join("tests/kubectl.rs")).unwrap();
    let body = |name: &str| -> Option<&str> {
        let start = suite.find(&format!("#[test]\nfn {name}()"))?;
        let rest = &suite[start + 8..];
        Some(&rest[..rest.find("\n#[test]").unwrap_or(rest.len())])
    };
    let mut working = 0;
    for row in matrix.lines().filter(|l| l.starts_with("| ") && !l.starts_with("| kubectl") && !l.starts_with("|---")) {
        // Cells split on `|` not escaped as `\|`.
        let cells: Vec<String> =
            row.replace("\\|", "\u{1}").split('|').map(|c| c.trim().replace('\u{1}', "|")).collect();
        let (what, works, tests) = (&cells[1], &cells[2], &cells[4]);
        assert!(["yes", "partly", "no"].contains(&works.as_str()), "{row}");
        if works == "no" {
            continue;
        }
        working += 1;
        let first = what.trim_start_matches('`').split([' ', '`', ',']).next().unwrap();
        let needle =
            first.strip_suffix("es").filter(|s| s.ends_with("Class")).or(first.strip_suffix('s')).unwrap_or(first);
        let names: Vec<&str> = tests.split(',').map(|t| t.trim().trim_matches('`')).filter(|t| !t.is_empty()).collect();
        assert!(!names.is_empty(), "a working row names its tests: {row}");
        let bodies: Vec<&str> =
            names.iter().map(|n| body(n).unwrap_or_else(|| panic!("no test {n} in kubectl.rs"))).collect();
        assert!(bodies.iter().any(|b| b.contains(needle)), "none of {names:?} runs {needle:?}: {row}");
    }
    assert!(working >= 20, "{working} working rows");
}

/// The shell block that follows `<!-- quick-start: NAME -->` in the README.
fn quick_start_block(readme: &str, name: &str) -> String {
    let marker = format!("<!-- quick-start: {name} -->\n```sh\n");
    let start = readme.find(&marker).unwrap_or_else(|| panic!("the README has no {name} block")) + marker.len();
    readme[start..start + readme[start..].find("```").unwrap()].to_string()
}

/// #24: the README's quick start, run as it stands: its commands, in its order, from the
/// checkout, with podvisor on the PATH (a data directory of the test's own through
/// PODVISOR_DATA_DIR, which every command honours).
#[test]
fn the_readme_quick_start_works_as_written() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap();
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let bin = std::path::Path::new(env!("CARGO_BIN_EXE_podvisor")).parent().unwrap();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
    let dir = test_dir("quick-start");
    let _ = std::fs::remove_dir_all(&dir);
    let data = dir.join("data");
    let shell = |block: &str| {
        let out = Command::new("sh")
            .args(["-e", "-c", block])
            .current_dir(&root)
            .env("PATH", &path)
            .env("PODVISOR_DATA_DIR", &data)
            .env("HOME", &*dir)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{block}\n{text}");
        text
    };
    let ran = shell(&quick_start_block(&readme, "run"));
    // The image archive the quick start makes in the checkout.
    let _ = std::fs::remove_file(root.join("busybox.tar"));
    assert!(ran.contains("job/report: Complete"), "{ran}");
    assert!(ran.trim_end().ends_with("shipper: all shipped, stopping"), "the logs after the run: {ran}");

    let mut serve = Command::new("sh")
        .args(["-c", &format!("exec {}", quick_start_block(&readme, "serve").trim())])
        .current_dir(&root)
        .env("PATH", &path)
        .env("PODVISOR_DATA_DIR", &data)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(serve.stdout.take().unwrap()));
    let first = lines.next().unwrap().unwrap();
    assert!(first.starts_with("podvisor: serving the Kubernetes API at https://"), "{first}");
    std::thread::spawn(move || for _ in lines {});
    let listed = shell(&quick_start_block(&readme, "kubectl"));
    let _ = Command::new("kill").args(["-INT", &serve.id().to_string()]).status();
    let stopped = serve.wait().unwrap();
    assert!(listed.contains("job.batch/report created"), "{listed}");
    assert!(listed.contains("job.batch/report condition met"), "{listed}");
    assert!(
        listed.lines().any(|l| l.starts_with("report-") && l.contains(" 0/2 ") && l.contains("Completed")),
        "{listed}"
    );
    assert!(listed.contains("line 3\n"), "{listed}");
    assert!(stopped.success(), "{stopped}");
    std::fs::remove_dir_all(&dir).ok();
}

/// A file past the bound (a mistaken path: a disk image, a log) is refused with the bound, not
/// read whole into memory: the events of `timeline` and the manifests of `migrate`.
#[test]
fn a_file_past_the_bound_is_refused_by_timeline_and_migrate() {
    let dir = test_dir("bound");
    std::fs::create_dir_all(&dir).unwrap();
    let big = dir.join("big.json");
    // Sparse: 65 MiB that take no disk.
    std::fs::File::create(&big).unwrap().set_len(65 << 20).unwrap();
    let out = dir.join("out.svg");
    let (code, _, err) = podvisor(&["timeline", big.to_str().unwrap(), "-o", out.to_str().unwrap()], None);
    assert_ne!(code, 0);
    assert!(err.contains("larger than 64 MiB"), "{err}");
    assert!(!out.exists(), "nothing is drawn");
    let (code, _, err) = podvisor(&["migrate", big.to_str().unwrap()], None);
    assert_ne!(code, 0);
    assert!(err.contains("larger than 64 MiB"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}
