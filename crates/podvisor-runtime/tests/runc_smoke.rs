//! The generated runtime configuration runs under the real runc: output and exit code come
//! through, and the container sees the pod's emptyDir.

use std::path::Path;
use std::process::Command;

use k8s_openapi::api::core::v1::{Container, VolumeMount};
use podvisor_runtime::bundle::{Instance, PodContext, spec};
use podvisor_runtime::image::ImageStore;

/// A fresh directory with the test image built and loaded into a store inside it.
fn fixture(name: &str) -> (std::path::PathBuf, podvisor_runtime::image::Image) {
    let dir = std::env::temp_dir().join(format!("podvisor-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let archive = dir.join("busybox.tar");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../scripts/build-test-image");
    assert!(Command::new(script).arg(&archive).status().unwrap().success());
    let store = ImageStore::open(&dir.join("data")).unwrap();
    let (image, _) = store.load_archive(&archive, &["busybox:1.36".into()]).unwrap();
    (dir, image)
}

#[test]
fn a_busybox_container_runs_under_runc() {
    let (dir, image) = fixture("runc-smoke");

    let shared = dir.join("shared");
    std::fs::create_dir_all(&shared).unwrap();
    let container = Container {
        name: "c".into(),
        command: Some(vec![
            "sh".into(),
            "-c".into(),
            "echo hello from $(hostname); echo data > /data/f; exit 3".into(),
        ]),
        volume_mounts: Some(vec![VolumeMount {
            name: "data".into(),
            mount_path: "/data".into(),
            ..Default::default()
        }]),
        ..Default::default()
    };
    let ctx = PodContext {
        cgroup_parent: "/podvisor-test".into(),
        volumes: [("data".to_string(), shared.clone())].into(),
        ..Default::default()
    };
    let bundle = dir.join("bundle");
    std::fs::create_dir_all(&bundle).unwrap();
    let mut s = spec(
        &container,
        &image.config,
        &ctx,
        &Instance {
            id: "smoke",
            rootfs: &image.rootfs,
            env: &[],
            termination_log: None,
            sub_paths: &Default::default(),
            pid_namespace: None,
        },
    )
    .unwrap();
    s.set_hostname(Some("smoke".into()));
    s.save(bundle.join("config.json")).unwrap();
    let id = format!("podvisor-smoke-{}", std::process::id());
    let out = Command::new("runc").args(["run", "--bundle"]).arg(&bundle).arg(&id).output().expect("runc runs");
    let _ = Command::new("runc").args(["delete", "-f", &id]).status();
    assert_eq!(out.status.code(), Some(3), "stderr: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hello from smoke\n");
    assert_eq!(std::fs::read_to_string(shared.join("f")).unwrap(), "data\n");
    assert!(!Path::new(&image.rootfs).join("data/f").exists(), "the volume is a bind mount, not the image");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// create, start, exec, signal and the pidfd exit watch, on a real container.
#[test]
fn create_start_exec_and_stop_through_the_driver() {
    use podvisor_runtime::runc::{Runc, become_subreaper};
    use tokio::io::AsyncReadExt;

    let (dir, image) = fixture("runc-driver");
    let container = Container {
        name: "c".into(),
        command: Some(vec![
            "sh".into(),
            "-c".into(),
            "trap 'echo bye; exit 143' TERM; echo up; while :; do sleep 0.1; done".into(),
        ]),
        ..Default::default()
    };
    let ctx = PodContext { cgroup_parent: "/podvisor-test".into(), ..Default::default() };
    let bundle = dir.join("bundle");
    std::fs::create_dir_all(&bundle).unwrap();
    spec(
        &container,
        &image.config,
        &ctx,
        &Instance {
            id: "driver",
            rootfs: &image.rootfs,
            env: &[],
            termination_log: None,
            sub_paths: &Default::default(),
            pid_namespace: None,
        },
    )
    .unwrap()
    .save(bundle.join("config.json"))
    .unwrap();

    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        become_subreaper().unwrap();
        let runc = Runc::new("runc", dir.join("runc-root"));
        let id = format!("podvisor-driver-{}", std::process::id());
        let created = runc.create(&id, &bundle).await.unwrap();
        runc.start(&id).await.unwrap();
        let exec =
            runc.exec(&id, &["cat".into(), "/proc/1/cmdline".into()], std::time::Duration::from_secs(5)).await.unwrap();
        assert_eq!(exec.map(|(code, _)| code), Some(0));
        let slow = runc.exec(&id, &["sleep".into(), "5".into()], std::time::Duration::from_millis(200)).await.unwrap();
        assert_eq!(slow, None, "an exec past its timeout reports no result");
        runc.kill(&id, "TERM").await.unwrap();
        let code = created.exit.wait().await.unwrap();
        let mut out = String::new();
        created.stdout.unwrap().read_to_string(&mut out).await.unwrap();
        runc.delete(&id).await.unwrap();
        assert_eq!(code, 143);
        assert_eq!(out, "up\nbye\n");
        runc.kill(&id, "KILL").await.expect_err("the container is gone");
    });
    std::fs::remove_dir_all(&dir).unwrap();
}
