//! `podvisor down`: stops what a data directory still has running when no podvisor process
//! holds it: the pods a `serve --leave-pods-running` left (taken over and stopped as that
//! server would have stopped them, in the kubelet's order with their grace; the store keeps
//! them, so the next `serve` runs them again), and the containers of a `run` or `serve` that
//! was killed (no object says how to stop those: they are stopped at once).

use std::io::Write;
use std::path::Path;

use podvisor_cluster::{Cluster, Store};
use tokio::signal::unix::{SignalKind, signal};

/// Stops the pods of `node.data_dir`; prints each step.
pub fn run(out: &mut impl Write, node: podvisor_cluster::NodeOptions) -> anyhow::Result<bool> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(down(out, node))
}

fn busy(data: &Path) -> anyhow::Error {
    anyhow::anyhow!(
        "{}: a podvisor is using this data directory; stop it (Ctrl-C, or SIGTERM to its process) or use kubectl delete",
        data.display()
    )
}

async fn down(out: &mut impl Write, node: podvisor_cluster::NodeOptions) -> anyhow::Result<bool> {
    let data = node.data_dir.clone();
    let store_path = data.join("store.redb");
    let store = if store_path.exists() {
        Store::open(&store_path).map_err(|e| match e.to_string().contains("already open") {
            true => busy(&data),
            false => anyhow::Error::from(e),
        })?
    } else {
        Store::in_memory()
    };
    // The pods with something on the machine, before the node takes over the stored ones.
    let up = std::fs::read_dir(data.join("run")).into_iter().flatten().flatten().count();
    let (tx, mut rx) = tokio::sync::mpsc::channel(podvisor_cluster::relay::CAPACITY);
    let cluster = Cluster::open(store, node, Some(tx)).await.map_err(|e| match e {
        podvisor_node::NodeError::Busy(_) => busy(&data),
        e => anyhow::Error::from(e),
    })?;
    cluster.settled().await;
    let pods = cluster.node().pods().len();
    let strays = up.saturating_sub(pods);
    if strays > 0 {
        writeln!(out, "podvisor: {strays} pod(s) of no stored object (a killed run): stopped at once")?;
    }
    writeln!(out, "podvisor: stopping {pods} pod(s) in order, with their grace")?;
    let node = cluster.node().clone();
    cluster.stop_node();
    let mut sigint = signal(SignalKind::interrupt())?;
    let mut killed = false;
    let finished = node.all_finished();
    tokio::pin!(finished);
    loop {
        tokio::select! {
            _ = &mut finished => break,
            Some(e) = rx.recv() => {
                if let Some(line) = crate::serve::step(&e) {
                    writeln!(out, "podvisor: {line}")?;
                }
            }
            _ = sigint.recv(), if !killed => {
                writeln!(out, "podvisor: killing every container now")?;
                node.force_kill();
                killed = true;
            }
        }
    }
    while let Ok(e) = rx.try_recv() {
        if let Some(line) = crate::serve::step(&e) {
            writeln!(out, "podvisor: {line}")?;
        }
    }
    cluster.close_services().await;
    writeln!(out, "podvisor: down: nothing of {} runs now", data.display())?;
    Ok(true)
}
