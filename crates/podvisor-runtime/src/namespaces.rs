//! Pods' namespaces made one set ahead of need.
//!
//! Making a network namespace and its veth pair is most of a sandbox's cost: the kernel sets up
//! every protocol's state for the namespace and two devices for the pair. A [`NamespaceMaker`]
//! keeps a thread of its own that has always made the next pod's network, UTS and IPC
//! namespaces already, with loopback up and, on the pod network, `eth0` paired with a link on
//! the bridge under a name of its own: a pod's sandbox then only sets the hostname in them and
//! binds them to its files (and renames the host's end after its address, see
//! [`crate::network`]), while the thread makes the next set. The spare set belongs to no pod:
//! it goes with the thread (when the maker is dropped), its pair with it, and is never seen by
//! a node process started again.

use std::path::PathBuf;
use std::sync::{Mutex, mpsc};

use crate::netlink::Netlink;

/// The kinds of namespace a sandbox makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Network.
    Net,
    /// UTS (the hostname).
    Uts,
    /// System V IPC.
    Ipc,
}

impl Kind {
    /// The name `/proc/…/ns/` gives it.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Net => "net",
            Kind::Uts => "uts",
            Kind::Ipc => "ipc",
        }
    }
}

/// One pod's request: the files to bind the namespaces to and the hostname to set.
struct Request {
    files: Vec<(Kind, PathBuf)>,
    hostname: String,
    /// The caller's runtime, which drives the netlink connection it gets back.
    runtime: tokio::runtime::Handle,
    reply: tokio::sync::oneshot::Sender<Result<Made, String>>,
}

/// A pod's namespaces, as the maker gives them.
pub struct Made {
    /// A netlink connection in the pod's network namespace.
    pub netlink: Netlink,
    /// The veth pair made with them, on the pod network.
    pub veth: Option<Veth>,
}

/// A veth pair made ahead: `eth0` in the pod's network namespace and its peer on the bridge,
/// down, under a name of its own until the pod's address names it.
#[derive(Debug, Clone)]
pub struct Veth {
    /// The index of the host's end.
    pub host_index: u32,
    /// The index of `eth0` in the pod's namespace.
    pub eth0_index: u32,
}

/// Makes pods' network, UTS and IPC namespaces on a thread of its own, one set ahead of need.
/// Requests are served one at a time, in order.
pub struct NamespaceMaker {
    requests: Mutex<mpsc::Sender<Request>>,
}

impl std::fmt::Debug for NamespaceMaker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NamespaceMaker")
    }
}

impl NamespaceMaker {
    /// Starts the maker's thread, which makes the first spare set at once; with `bridge` (the
    /// pod network's), each set comes with its veth pair on it.
    pub fn start(bridge: Option<&'static str>) -> std::io::Result<NamespaceMaker> {
        let (tx, rx) = mpsc::channel();
        std::thread::Builder::new().name("podvisor-namespaces".into()).spawn(move || serve(rx, bridge))?;
        Ok(NamespaceMaker { requests: Mutex::new(tx) })
    }

    /// Gives a pod new network, UTS and IPC namespaces, each bound to its file in `files`
    /// (`net`, `uts` and `ipc`, each once; the files must exist), with `hostname` set and
    /// loopback up, and the veth pair made with them, if any. The netlink connection is driven
    /// by the caller's tokio runtime.
    pub async fn make(&self, files: Vec<(Kind, PathBuf)>, hostname: String) -> Result<Made, String> {
        let mut kinds: Vec<&str> = files.iter().map(|(k, _)| k.name()).collect();
        kinds.sort_unstable();
        if kinds != ["ipc", "net", "uts"] {
            return Err(format!("a pod's namespaces are net, uts and ipc, not {}", kinds.join(", ")));
        }
        let (reply, made) = tokio::sync::oneshot::channel();
        let request = Request { files, hostname, runtime: tokio::runtime::Handle::current(), reply };
        let sent = self.requests.lock().map_err(|_| "the namespaces' thread is gone".to_string())?.send(request);
        sent.map_err(|_| "the namespaces' thread has ended".to_string())?;
        made.await.map_err(|_| "the namespaces' thread ended early".to_string())?
    }
}

/// The maker's thread: a spare set made, then each request served with it and the next set
/// made, until the maker is dropped.
fn serve(requests: mpsc::Receiver<Request>, bridge: Option<&'static str>) {
    // Its own runtime drives the requests made for the spare set (setting loopback up, making
    // the pair from the host's side).
    let runtime = tokio::runtime::Builder::new_current_thread().enable_io().build().map_err(|e| e.to_string());
    // A connection opened before any unshare stays in the host's network namespace.
    let host = match (&runtime, bridge) {
        (Ok(rt), Some(_)) => {
            let _entered = rt.enter();
            Netlink::connect().ok()
        }
        _ => None,
    };
    let mut side = Side { runtime: &runtime, host: host.as_ref().zip(bridge), made: 0 };
    let mut spare = Some(side.make_spare());
    while let Ok(request) = requests.recv() {
        // A spare that could not be made is tried again for the pod that needs it.
        let ready = match spare.take() {
            Some(Ok(veth)) => Ok(veth),
            _ => side.make_spare(),
        };
        let made = ready.and_then(|veth| hand_over(&request).map(|netlink| Made { netlink, veth }));
        let _ = request.reply.send(made);
        spare = Some(side.make_spare());
    }
}

/// What the maker's thread makes spare sets with.
struct Side<'a> {
    runtime: &'a Result<tokio::runtime::Runtime, String>,
    /// A connection in the host's network namespace and the bridge, on the pod network.
    host: Option<(&'a Netlink, &'static str)>,
    /// How many pairs this thread made: each host end's temporary name is new.
    made: u32,
}

impl Side<'_> {
    /// Moves this thread into new network, UTS and IPC namespaces, sets their loopback up and,
    /// on the pod network, makes their veth pair (a spare without one is still a spare: the
    /// sandbox then makes the pair itself).
    fn make_spare(&mut self) -> Result<Option<Veth>, String> {
        use rustix::thread::UnshareFlags;
        let runtime = self.runtime.as_ref().map_err(|e| format!("a runtime for the namespaces' thread: {e}"))?;
        // SAFETY: only namespaces of this thread change (network, UTS and IPC are per thread);
        // the thread shares no file table or file system state that unsharing would split.
        unsafe { rustix::thread::unshare_unsafe(UnshareFlags::NEWNET | UnshareFlags::NEWUTS | UnshareFlags::NEWIPC) }
            .map_err(|e| format!("unshare: {e}"))?;
        self.made = self.made.wrapping_add(1);
        let temporary = format!("pvs{:08x}", (std::process::id() << 12) ^ self.made);
        let host = self.host;
        runtime.block_on(async move {
            let inside = Netlink::connect().map_err(|e| format!("netlink: {e}"))?;
            // A new network namespace has only its loopback, index 1.
            inside.up(1).await.map_err(|e| format!("setting loopback up: {e}"))?;
            let Some((host, bridge)) = host else { return Ok(None) };
            Ok(make_pair(host, bridge, &inside, &temporary).await)
        })
    }
}

/// Makes the spare's veth pair: `eth0` here, its peer on `bridge` named `temporary`.
async fn make_pair(host: &Netlink, bridge: &str, inside: &Netlink, temporary: &str) -> Option<Veth> {
    let index = std::fs::read_to_string(std::path::Path::new("/sys/class/net").join(bridge).join("ifindex")).ok()?;
    let bridge_index: u32 = index.trim().parse().ok()?;
    let own = std::fs::File::open("/proc/thread-self/ns/net").ok()?;
    host.add_veth_into(temporary, "eth0", &own, bridge_index).await.ok()?;
    let (host_index, eth0_index) = tokio::join!(host.index(temporary), inside.index("eth0"));
    match (host_index, eth0_index) {
        (Some(host_index), Some(eth0_index)) => Some(Veth { host_index, eth0_index }),
        (Some(i), None) => {
            let _ = host.delete(i).await;
            None
        }
        _ => None,
    }
}

/// Gives the spare set (the thread's own namespaces) to the pod of `request`.
fn hand_over(request: &Request) -> Result<Netlink, String> {
    rustix::system::sethostname(request.hostname.as_bytes()).map_err(|e| format!("sethostname: {e}"))?;
    for (kind, file) in &request.files {
        bind_own(*kind, file)?;
    }
    let _entered = request.runtime.enter();
    Netlink::connect().map_err(|e| format!("netlink: {e}"))
}

/// Binds the calling thread's namespace of `kind` to `file`, which keeps it alive.
fn bind_own(kind: Kind, file: &std::path::Path) -> Result<(), String> {
    let own = format!("/proc/thread-self/ns/{}", kind.name());
    rustix::mount::mount_bind(own.as_str(), file).map_err(|e| format!("binding {}: {e}", file.display()))
}

/// Gives a pod on the host's network its own IPC namespace, bound to `file` (which must
/// exist), from a short-lived thread made for it (its namespace changes, so it must not be one
/// that runs anything else).
pub async fn make_ipc(file: PathBuf) -> Result<(), String> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let spawned = std::thread::Builder::new().name("podvisor-sandbox".into()).spawn(move || {
        // SAFETY: only this thread's IPC namespace changes; the thread shares no file table or
        // file system state that unsharing would split.
        let made = unsafe { rustix::thread::unshare_unsafe(rustix::thread::UnshareFlags::NEWIPC) }
            .map_err(|e| format!("unshare: {e}"))
            .and_then(|()| bind_own(Kind::Ipc, &file));
        let _ = tx.send(made);
    });
    spawned.map_err(|e| format!("a thread for the namespace: {e}"))?;
    rx.await.map_err(|_| "the namespace's thread ended early".to_string())?
}
