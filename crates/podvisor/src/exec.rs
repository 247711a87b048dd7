//! `podvisor exec POD [-c CONTAINER] [-i] [-t] -- COMMAND…`: runs a command in a running
//! container of a pod this machine runs (with `podvisor run`, or `serve`), through the OCI
//! runtime, with this terminal's standard streams; the exit code is the command's.

use std::path::Path;
use std::process::ExitCode;

use podvisor_node::pod_logs::PodLogs;

/// Options of `podvisor exec`.
pub struct Options {
    /// The pod.
    pub pod: String,
    /// Its namespace.
    pub namespace: String,
    /// The container (required when the pod runs several).
    pub container: Option<String>,
    /// A terminal for the command (`runc exec -t`).
    pub tty: bool,
    /// The command and its arguments.
    pub command: Vec<String>,
    /// The OCI runtime binary.
    pub runtime: std::path::PathBuf,
}

/// The running instance's runtime ID of each container of the pod with `uid`, by name.
fn running(data: &Path, runtime: &Path, uid: &str) -> Vec<(String, String)> {
    let prefix = format!("podvisor-{uid}-");
    let mut newest: std::collections::BTreeMap<String, (u32, String)> = Default::default();
    // The bundles, and those an earlier version made in the pod's run directory.
    let places = [
        podvisor_node::bundles_dir(&data.join(podvisor_runtime::state::STATE), uid),
        data.join("run").join(uid).join("containers"),
    ];
    for e in places.iter().flat_map(|p| std::fs::read_dir(p).into_iter().flatten().flatten()) {
        let id = e.file_name().to_string_lossy().into_owned();
        let Some((name, attempt)) = id.strip_prefix(&prefix).and_then(|r| r.rsplit_once('-')) else { continue };
        let Ok(attempt) = attempt.parse::<u32>() else { continue };
        let state = std::process::Command::new(runtime)
            .arg("--root")
            .arg(data.join("runc"))
            .args(["state", &id])
            .stderr(std::process::Stdio::null())
            .output();
        let status = state
            .ok()
            .and_then(|o| serde_json::from_slice::<serde_json::Value>(&o.stdout).ok())
            .and_then(|v| v["status"].as_str().map(str::to_string));
        if status.as_deref() == Some("running") && newest.get(name).is_none_or(|(a, _)| *a < attempt) {
            newest.insert(name.to_string(), (attempt, id));
        }
    }
    newest.into_iter().map(|(n, (_, id))| (n, id)).collect()
}

/// Runs the command; returns its exit code.
pub fn run(data: &Path, o: Options) -> anyhow::Result<ExitCode> {
    let pod = PodLogs::find(data, &o.namespace, &o.pod)?;
    let containers = running(data, &o.runtime, &pod.uid);
    let id = match &o.container {
        Some(c) => containers.iter().find(|(n, _)| n == c).map(|(_, id)| id.clone()).ok_or_else(|| {
            anyhow::anyhow!("container {c:?} of pod {:?} is not running (running: {})", o.pod, names(&containers))
        })?,
        None => match containers.as_slice() {
            [(_, id)] => id.clone(),
            [] => anyhow::bail!("pod {:?} has no running container", o.pod),
            _ => anyhow::bail!(
                "a container name must be specified for pod {}, choose one of: [{}]",
                o.pod,
                names(&containers)
            ),
        },
    };
    let mut cmd = std::process::Command::new(&o.runtime);
    cmd.arg("--root").arg(data.join("runc")).arg("exec");
    if o.tty {
        cmd.arg("-t");
    }
    let status = cmd.arg(&id).args(&o.command).status().map_err(|e| anyhow::anyhow!("{}: {e}", o.runtime.display()))?;
    let code = status.code().unwrap_or(137);
    if code != 0 {
        eprintln!("command terminated with exit code {code}");
    }
    Ok(ExitCode::from(u8::try_from(code).unwrap_or(1)))
}

fn names(containers: &[(String, String)]) -> String {
    containers.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>().join(" ")
}
