//! The floor: the pod's two containers started directly with the OCI runtime, one after the
//! other (`create` then `start` of a bundle prepared beforehand, on the image's unpacked root
//! filesystem, read-only), with nothing of podvisor in the way.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use super::Samples;

/// What the floor costs.
pub(crate) struct Floor {
    /// Both containers, create + start each, in milliseconds.
    pub pod: Samples,
    /// One container's create + start.
    pub container: Samples,
}

/// Starts `n` pods' worth of containers with `runtime` on `rootfs`.
pub(crate) fn measure(runtime: &Path, rootfs: &Path, n: usize) -> anyhow::Result<Floor> {
    let dir = std::env::temp_dir().join(format!("podvisor-bench-floor-{}", std::process::id()));
    let (bundle, root) = (dir.join("bundle"), dir.join("runc"));
    std::fs::create_dir_all(&bundle)?;
    // The container inherits the runtime's output, so it goes to a file, not a pipe that would
    // stay open as long as the container runs.
    let errors = dir.join("runtime.err");
    let run = |args: &[&str]| -> anyhow::Result<()> {
        let err = std::fs::File::create(&errors)?;
        let status = Command::new(runtime)
            .arg("--root")
            .arg(&root)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(err)
            .status()
            .map_err(|e| anyhow::anyhow!("{}: {e}", runtime.display()))?;
        if !status.success() {
            let text = std::fs::read_to_string(&errors).unwrap_or_default();
            anyhow::bail!("{} {}: {}", runtime.display(), args.join(" "), text.trim());
        }
        Ok(())
    };
    let result = (|| {
        run(&["spec", "--bundle", &bundle.to_string_lossy()])?;
        let path = bundle.join("config.json");
        let mut spec: serde_json::Value = serde_json::from_slice(&std::fs::read(&path)?)?;
        spec["process"]["terminal"] = false.into();
        spec["process"]["args"] = serde_json::json!(["sh", "-c", "trap 'exit 0' TERM; sleep 1000 & wait"]);
        spec["root"] = serde_json::json!({ "path": rootfs, "readonly": true });
        std::fs::write(&path, serde_json::to_vec(&spec)?)?;
        let mut floor = Floor { pod: Samples::default(), container: Samples::default() };
        let b = bundle.to_string_lossy().into_owned();
        for i in 0..n {
            let mut pod = 0.0;
            let ids: Vec<String> =
                ["sidecar", "app"].iter().map(|c| format!("podvisor-floor-{}-{i}-{c}", std::process::id())).collect();
            for id in &ids {
                let t = Instant::now();
                run(&["create", "--bundle", &b, id])?;
                run(&["start", id])?;
                let ms = t.elapsed().as_secs_f64() * 1000.0;
                floor.container.0.push(ms);
                pod += ms;
            }
            floor.pod.0.push(pod);
            for id in &ids {
                let _ = run(&["delete", "--force", id]);
            }
        }
        Ok(floor)
    })();
    let _ = std::fs::remove_dir_all(&dir);
    result
}
