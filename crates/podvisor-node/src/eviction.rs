//! Local-storage eviction as the kubelet's eviction manager does it for `emptyDir` volumes: a
//! pod whose on-disk `emptyDir` uses more than its `sizeLimit` is evicted (the engine's
//! [`Input::Evict`]). The kubelet measures every 10 s; here a write to the volume wakes its
//! watch, and the usage is measured at most every [`SETTLE`] while writes go on.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use podvisor_engine::Input;
use podvisor_runtime::usage::{TreeWatch, disk_usage};
use tokio::task::JoinHandle;

/// How long a burst of writes may go on before the usage is measured again.
const SETTLE: Duration = Duration::from_millis(100);

/// An on-disk `emptyDir` with a `sizeLimit`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Limit {
    volume: String,
    dir: PathBuf,
    bytes: u64,
    /// The limit as the pod gave it, for the message.
    text: String,
}

/// The limits to watch among the pod's volumes (`dirs`: host directory by volume name). A
/// `medium: Memory` volume is a tmpfs of that size already; a zero limit means none.
pub(crate) fn limits(pod: &Pod, dirs: &HashMap<String, PathBuf>) -> Vec<Limit> {
    let volumes = pod.spec.iter().flat_map(|s| s.volumes.iter().flatten());
    volumes
        .filter_map(|v| {
            let e = v.empty_dir.as_ref().filter(|e| e.medium.as_deref() != Some("Memory"))?;
            let q = e.size_limit.as_ref()?;
            let bytes = podvisor_objects::resources::parse_milli(&q.0).ok()? / 1000;
            Some(Limit {
                volume: v.name.clone(),
                dir: dirs.get(&v.name)?.clone(),
                bytes: u64::try_from(bytes).ok().filter(|b| *b > 0)?,
                text: q.0.clone(),
            })
        })
        .collect()
}

/// Watches one volume until it passes its limit, then asks for the eviction.
pub(crate) fn watch(limit: Limit, report: tokio::sync::mpsc::UnboundedSender<Input>) -> JoinHandle<()> {
    tokio::spawn(async move {
        let Ok(mut watch) = TreeWatch::new(&limit.dir) else { return };
        loop {
            let dir = limit.dir.clone();
            let used = tokio::task::spawn_blocking(move || disk_usage(&dir)).await.unwrap_or(0);
            if used > limit.bytes {
                let message =
                    format!("Usage of EmptyDir volume {:?} exceeds the limit {:?}. ", limit.volume, limit.text);
                let _ = report.send(Input::Evict { message });
                return;
            }
            if watch.changed().await.is_err() {
                return;
            }
            tokio::time::sleep(SETTLE).await;
        }
    })
}
