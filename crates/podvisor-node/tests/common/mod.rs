//! Real-container test fixtures: a node on its own data directory with the offline busybox
//! image loaded, manifests parsed the way `podvisor run` parses them, and event helpers.

#![allow(dead_code)]

pub mod servers;

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use podvisor_manifest::{Object, load_str};
use podvisor_node::{Node, NodeConfig, NodeEvent, PodHandle, What};
use podvisor_runtime::image::ImageStore;
use tokio::sync::mpsc;

/// The busybox OCI archive, built once and shared by the test binaries: under cargo's own
/// temporary directory in the build tree (not the machine's), named after the script that
/// builds it, so that a changed script builds it anew and no run leaves one behind in `/tmp`.
fn archive() -> &'static PathBuf {
    static ARCHIVE: OnceLock<PathBuf> = OnceLock::new();
    ARCHIVE.get_or_init(|| {
        const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../scripts/build-test-image");
        // FNV-1a of the script: stable from one build to the next.
        let hash = include_bytes!("../../../../scripts/build-test-image")
            .iter()
            .fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3));
        let path = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("podvisor-busybox-{hash:016x}.tar"));
        if !path.exists() {
            // Built aside and renamed: a binary running beside this one never reads half a file.
            let partial = path.with_extension(format!("tar.{}", std::process::id()));
            let out = Command::new(SCRIPT).arg(&partial).output().expect("scripts/build-test-image runs");
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
            std::fs::rename(&partial, &path).expect("the archive is renamed into place");
        }
        path
    })
}

/// A node on a fresh data directory, with busybox:1.36 loaded.
pub struct Fixture {
    pub node: Node,
    /// The ConfigMaps and Secrets the node reads.
    pub objects: std::sync::Arc<podvisor_node::ObjectStore>,
    pub events: mpsc::UnboundedReceiver<NodeEvent>,
    pub seen: Vec<NodeEvent>,
    pub dir: PathBuf,
    /// Keep the directory when dropped (a test that reopens it).
    pub keep: bool,
}

pub async fn fixture(name: &str) -> Fixture {
    fixture_configured(name, |_| {}).await
}

/// A node whose pods get addresses on the pod network (the default subnet).
pub async fn fixture_with_network(name: &str) -> Fixture {
    let subnet = podvisor_runtime::network::DEFAULT_SUBNET.parse().expect("the default subnet parses");
    fixture_configured(name, |c| c.network = Some(podvisor_runtime::network::PodNetwork::new(subnet))).await
}

/// A node whose configuration `configure` changes from the tests' one.
pub async fn fixture_configured(name: &str, configure: impl FnOnce(&mut NodeConfig)) -> Fixture {
    let dir = std::env::temp_dir().join(format!("podvisor-node-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let data = dir.join("data");
    ImageStore::open(&data).unwrap().load_archive(archive(), &["busybox:1.36".into()]).unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    let objects = std::sync::Arc::new(podvisor_node::ObjectStore::default());
    let mut config = config(data, objects.clone());
    configure(&mut config);
    let node = Node::open(config, tx).await.expect("the node opens");
    Fixture { node, objects, events: rx, seen: Vec::new(), dir, keep: false }
}

/// Drops the fixture and the runtime its node ran on without stopping anything, as a crash
/// does. Returns the test's directory and the node's data directory, both kept.
pub fn crash(mut f: Fixture, runtime: tokio::runtime::Runtime) -> (PathBuf, PathBuf) {
    f.keep = true;
    let (dir, data) = (f.dir.clone(), f.node.data_dir().to_path_buf());
    drop(f);
    drop(runtime);
    (dir, data)
}

/// A node opened again on `data` after [`crash`] (the dead node's lock is free), with its events.
pub async fn reopen(data: &std::path::Path) -> (Node, mpsc::UnboundedReceiver<NodeEvent>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let node =
        Node::open(config(data.to_path_buf(), Default::default()), tx).await.expect("the lock of a dead node is free");
    (node, rx)
}

/// The node configuration of the tests: the data directory `data`, pods reading `objects`.
pub fn config(data: std::path::PathBuf, objects: std::sync::Arc<podvisor_node::ObjectStore>) -> NodeConfig {
    NodeConfig {
        data_dir: data,
        runtime: runtime().into(),
        pull: Default::default(),
        objects,
        monitor: monitor(),
        network: None,
        default_seccomp: false,
        log_rotation: Default::default(),
        max_pods: podvisor_node::DEFAULT_MAX_PODS,
    }
}

/// The container monitor, `podvisor-monitor` (the `podvisor` package's program): found in the
/// target directory these tests run from, built there first if it is not.
pub fn monitor() -> podvisor_runtime::monitor::MonitorCommand {
    static BUILT: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
    let program = BUILT.get_or_init(|| {
        // target/<profile>/deps/<this test> → target/<profile>/podvisor-monitor
        let exe = std::env::current_exe().expect("the test's path");
        let dir = exe.parent().and_then(|d| d.parent()).expect("the target directory").to_path_buf();
        let program = dir.join("podvisor-monitor");
        if !program.exists() {
            let built = std::process::Command::new(env!("CARGO"))
                .args(["build", "-p", "podvisor", "--bin", "podvisor-monitor"])
                .current_dir(env!("CARGO_MANIFEST_DIR"))
                .status()
                .expect("cargo runs");
            assert!(built.success(), "building podvisor-monitor");
        }
        program
    });
    podvisor_runtime::monitor::MonitorCommand { program: program.clone(), args: vec![] }
}

/// The OCI runtime the tests drive: runc, or the one named by `PODVISOR_TEST_RUNTIME`.
pub fn runtime() -> String {
    std::env::var("PODVISOR_TEST_RUNTIME").unwrap_or_else(|_| "runc".into())
}

/// The pods of a manifest, defaulted and validated as `podvisor run` does.
pub fn pod(yaml: &str) -> Pod {
    let mut m = load_str("test.yaml", yaml).expect("the manifest parses").remove(0);
    podvisor_objects::defaults::apply(&mut m.object);
    podvisor_objects::validate(&m.object).expect("the manifest is valid");
    match m.object {
        Object::Pod(p) => *p,
        other => panic!("not a pod: {}", other.kind()),
    }
}

impl Fixture {
    /// Collects events until `done` holds for what was seen, or `limit` passes.
    pub async fn until(&mut self, limit: Duration, done: impl Fn(&[NodeEvent]) -> bool) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        while !done(&self.seen) {
            match tokio::time::timeout_at(deadline, self.events.recv()).await {
                Ok(Some(e)) => self.seen.push(e),
                _ => return false,
            }
        }
        true
    }

    /// Collects events until `pod` is finished (at most `limit`); returns its final status.
    pub async fn finish(&mut self, pod: &PodHandle, limit: Duration) -> k8s_openapi::api::core::v1::PodStatus {
        let key = pod.key();
        let ok = self.until(limit, |s| s.iter().any(|e| e.pod == key && matches!(e.what, What::Finished { .. }))).await;
        assert!(ok, "pod {key} did not finish within {limit:?}; events:\n{}", self.dump());
        pod.status()
    }

    /// The events seen so far, one per line, for failure messages.
    pub fn dump(&self) -> String {
        self.seen.iter().map(|e| format!("{} {:?}", e.pod, e.what)).collect::<Vec<_>>().join("\n")
    }

    /// The position of the first event matching `f`.
    pub fn index(&self, f: impl Fn(&What) -> bool) -> Option<usize> {
        self.seen.iter().position(|e| f(&e.what))
    }

    /// The lines `container` wrote.
    pub fn lines(&self, container: &str) -> Vec<String> {
        lines_in(&self.seen, container)
    }
}

/// The lines `container` wrote, among `seen`.
pub fn lines_in(seen: &[NodeEvent], container: &str) -> Vec<String> {
    seen.iter()
        .filter_map(|e| match &e.what {
            What::Log { container: c, line, .. } if c == container => Some(line.clone()),
            _ => None,
        })
        .collect()
}

impl Drop for Fixture {
    fn drop(&mut self) {
        if !self.keep {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

pub fn started(name: &str) -> impl Fn(&What) -> bool + '_ {
    move |w| matches!(w, What::Started { container, .. } if container == name)
}

pub fn exited(name: &str) -> impl Fn(&What) -> bool + '_ {
    move |w| matches!(w, What::Exited { container, .. } if container == name)
}

pub fn signalled<'a>(name: &'a str, sig: &'a str) -> impl Fn(&What) -> bool + 'a {
    move |w| matches!(w, What::Signalled { container, signal, .. } if container == name && signal == sig)
}

/// The terminated state of container `name` in `status` (init or app).
pub fn terminated(
    status: &k8s_openapi::api::core::v1::PodStatus,
    name: &str,
) -> k8s_openapi::api::core::v1::ContainerStateTerminated {
    status
        .init_container_statuses
        .iter()
        .flatten()
        .chain(status.container_statuses.iter().flatten())
        .find(|c| c.name == name)
        .and_then(|c| c.state.as_ref()?.terminated.clone())
        .unwrap_or_else(|| panic!("{name} is not terminated in {status:#?}"))
}
