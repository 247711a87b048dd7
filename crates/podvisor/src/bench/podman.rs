//! The baseline no peer but podman offers: `podman kube play` of the same two-container pod (the
//! sidecar as a regular container, since podman drops `restartPolicy: Always` on an init
//! container), from the command to its return with both containers running.
//!
//! podman keeps its state under a temporary directory here (`CONTAINERS_CONF`,
//! `CONTAINERS_STORAGE_CONF`), with cgroupfs, file events, runc, and rlimits under this kind of
//! machine's hard limits (its defaults are above them, and root lacks `CAP_SYS_RESOURCE`).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use super::Samples;

const POD: &str = r#"apiVersion: v1
kind: Pod
metadata: {name: bench-podman}
spec:
  containers:
  - name: sidecar
    image: docker.io/library/busybox:1.36
    command: [sh, -c, "trap 'exit 0' TERM; sleep 1000 & wait"]
  - name: app
    image: docker.io/library/busybox:1.36
    command: [sh, -c, "trap 'exit 0' TERM; sleep 1000 & wait"]
"#;

/// `podman kube play` of the pod, `n` times, with the image loaded from `archive` (the test
/// image's OCI archive).
pub(crate) fn measure(podman: &Path, archive: &Path, n: usize) -> anyhow::Result<Samples> {
    let scratch = crate::scratch::Scratch::new("bench-podman")?;
    let dir = scratch.path().to_path_buf();
    let result = (|| {
        let conf = dir.join("containers.conf");
        std::fs::write(
            &conf,
            "[containers]\ndefault_ulimits = [\"nofile=20000:20000\", \"nproc=32768:32768\"]\n\n\
             [engine]\ncgroup_manager = \"cgroupfs\"\nevents_logger = \"file\"\nruntime = \"runc\"\n",
        )?;
        let storage = dir.join("storage.conf");
        std::fs::write(
            &storage,
            format!(
                "[storage]\ndriver = \"overlay\"\nrunroot = \"{}\"\ngraphroot = \"{}\"\n",
                dir.join("run").display(),
                dir.join("root").display()
            ),
        )?;
        let run = |args: &[&str]| -> anyhow::Result<String> {
            let out = Command::new(podman)
                .args(args)
                .env("CONTAINERS_CONF", &conf)
                .env("CONTAINERS_STORAGE_CONF", &storage)
                .env("TMPDIR", &dir)
                .stdin(Stdio::null())
                .output()
                .map_err(|e| anyhow::anyhow!("{}: {e}", podman.display()))?;
            if !out.status.success() {
                anyhow::bail!("podman {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
            }
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        };
        let loaded = run(&["load", "-i", &archive.to_string_lossy()])?;
        let id = loaded.split_whitespace().last().unwrap_or_default().trim_start_matches("sha256:").to_string();
        run(&["tag", &id, "docker.io/library/busybox:1.36"])?;
        let pod = dir.join("pod.yaml");
        std::fs::write(&pod, POD)?;
        let pod = pod.to_string_lossy().into_owned();
        let mut samples = Samples::default();
        for _ in 0..n {
            let t = Instant::now();
            run(&["kube", "play", &pod])?;
            samples.0.push(t.elapsed().as_secs_f64() * 1000.0);
            run(&["kube", "down", &pod])?;
        }
        Ok(samples)
    })();
    // What podman left (its mounts, its state) goes with the directory.
    let _ = Command::new(podman)
        .args(["system", "reset", "--force"])
        .env("CONTAINERS_CONF", dir.join("containers.conf"))
        .env("CONTAINERS_STORAGE_CONF", dir.join("storage.conf"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    result
}
