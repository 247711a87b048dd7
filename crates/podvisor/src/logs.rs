//! `podvisor logs POD|job/NAME|deploy/NAME [-c CONTAINER] [-f] [--previous] [--timestamps]
//! [--tail N]`: a container's output from its CRI log file, during or after `podvisor run`.

use std::io::Write;
use std::path::Path;

use podvisor_node::pod_logs::{PodLogs, Tail, follow};

/// Options of `podvisor logs`.
pub struct Options {
    /// The pod.
    pub pod: String,
    /// Its namespace.
    pub namespace: String,
    /// The container.
    pub container: Option<String>,
    /// Keep printing as the container writes, until the pod stops running.
    pub follow: bool,
    /// The previous instance.
    pub previous: bool,
    /// Prefix each line with its RFC 3339 timestamp.
    pub timestamps: bool,
    /// Only the last lines.
    pub tail: Option<usize>,
    /// Read them from the cluster this names instead of this machine's logs.
    pub cluster: Option<podvisor_kube::Target>,
}

/// Prints what a [`Tail`] read.
fn print(out: &mut impl Write, tail: &mut Tail, timestamps: bool) -> std::io::Result<()> {
    for (time, _, line) in tail.read_new()? {
        if timestamps {
            write!(out, "{time} ")?;
        }
        writeln!(out, "{line}")?;
    }
    out.flush()
}

/// Prints the log of a pod on a cluster, through its API, as `kubectl logs` does.
fn remote(out: &mut impl Write, target: &podvisor_kube::Target, o: &Options) -> anyhow::Result<bool> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(async {
        let c = podvisor_kube::connect(target).await.map_err(|e| anyhow::anyhow!("{e}"))?;
        let say = |e: podvisor_kube::ClientError| anyhow::anyhow!(c.say(&e));
        let pod = podvisor_kube::pod_of(&c.client, &o.namespace, &o.pod).await.map_err(say)?;
        let name = pod.metadata.name.clone().unwrap_or_default();
        let container = match &o.container {
            Some(c) => c.clone(),
            None => {
                let spec = pod.spec.clone().unwrap_or_default();
                let names: Vec<String> = spec.containers.iter().map(|c| c.name.clone()).collect();
                match names.as_slice() {
                    [only] => only.clone(),
                    _ => anyhow::bail!(
                        "a container name must be specified for pod {name}, choose one of: [{}]",
                        spec.init_containers
                            .iter()
                            .flatten()
                            .map(|c| c.name.clone())
                            .chain(names)
                            .collect::<Vec<_>>()
                            .join(" ")
                    ),
                }
            }
        };
        let params = podvisor_kube::kube::api::LogParams {
            container: Some(container),
            follow: o.follow,
            previous: o.previous,
            timestamps: o.timestamps,
            tail_lines: o.tail.map(|n| i64::try_from(n).unwrap_or(i64::MAX)),
            ..Default::default()
        };
        let pods: podvisor_kube::kube::Api<k8s_openapi::api::core::v1::Pod> =
            podvisor_kube::kube::Api::namespaced(c.client.clone(), &o.namespace);
        let stream = pods.log_stream(&name, &params).await.map_err(|e| say(e.into()))?;
        let mut failed = None;
        podvisor_kube::each_line(stream, |line| match writeln!(out, "{line}").and_then(|()| out.flush()) {
            Ok(()) => true,
            Err(e) => {
                failed = Some(e);
                false
            }
        })
        .await?;
        if let Some(e) = failed {
            return Err(e.into());
        }
        Ok(true)
    })
}

/// Prints the log; returns whether it was found.
pub fn run(out: &mut impl Write, data: &Path, o: Options) -> anyhow::Result<bool> {
    if let Some(target) = &o.cluster {
        return remote(out, target, &o);
    }
    // `job/NAME` and `deploy/NAME` name a controller's newest pod, as kubectl takes them.
    let pod = match o.pod.split_once('/') {
        Some(("job" | "jobs", owner)) => PodLogs::find_of(data, &o.namespace, owner, false)?,
        Some(("deploy" | "deployment" | "deployments", owner)) => PodLogs::find_of(data, &o.namespace, owner, true)?,
        Some(("pod" | "pods" | "po", name)) => PodLogs::find(data, &o.namespace, name)?,
        Some((kind, _)) => anyhow::bail!("logs of a {kind}: name a pod, job/NAME or deploy/NAME"),
        None => PodLogs::find(data, &o.namespace, &o.pod)?,
    };
    let container = pod.container(o.container.as_deref())?;
    let path = pod.file(&container, o.previous)?;
    let mut tail = match o.tail {
        Some(n) => {
            let (tail, lines) = Tail::open_last(&path, n).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
            for l in lines {
                if o.timestamps {
                    write!(out, "{} ", l.0)?;
                }
                writeln!(out, "{}", l.2)?;
            }
            tail
        }
        None => Tail::open(&path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?,
    };
    print(out, &mut tail, o.timestamps)?;
    if o.follow && !o.previous {
        follow(&pod, data, &path, &mut || print(out, &mut tail, o.timestamps).map(|()| true))?;
    }
    Ok(true)
}
