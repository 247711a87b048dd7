//! Pods' namespaces made one set ahead of need.
//!
//! Making a network namespace is most of a sandbox's cost: the kernel sets up every protocol's
//! state for it. A [`NamespaceMaker`] keeps a thread of its own that has always made the next
//! pod's network, UTS and IPC namespaces already, with loopback up: a pod's sandbox then only
//! sets the hostname in them and binds them to its files, and the thread makes the next set
//! while the pod goes on. The spare set belongs to no pod: it goes with the thread (when the
//! maker is dropped) and is never seen by a node process started again.

use std::path::PathBuf;
use std::sync::{Mutex, mpsc};

use crate::netlink::{Kind, Netlink};

/// One pod's request: the files to bind the namespaces to and the hostname to set.
struct Request {
    files: Vec<(Kind, PathBuf)>,
    hostname: String,
    /// The caller's runtime, which drives the netlink connection it gets back.
    runtime: tokio::runtime::Handle,
    reply: tokio::sync::oneshot::Sender<Result<Netlink, String>>,
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
    /// Starts the maker's thread, which makes the first spare set at once.
    pub fn start() -> std::io::Result<NamespaceMaker> {
        let (tx, rx) = mpsc::channel();
        std::thread::Builder::new().name("podvisor-namespaces".into()).spawn(move || serve(rx))?;
        Ok(NamespaceMaker { requests: Mutex::new(tx) })
    }

    /// Gives a pod new network, UTS and IPC namespaces, each bound to its file in `files`
    /// (`net`, `uts` and `ipc`, each once; the files must exist), with `hostname` set and
    /// loopback up. Returns a netlink connection in the network namespace, driven by the
    /// caller's tokio runtime.
    pub async fn make(&self, files: Vec<(Kind, PathBuf)>, hostname: String) -> Result<Netlink, String> {
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
fn serve(requests: mpsc::Receiver<Request>) {
    // Its own runtime drives the requests made for the spare set (setting loopback up).
    let runtime = tokio::runtime::Builder::new_current_thread().enable_io().build().map_err(|e| e.to_string());
    let mut spare = Some(make_spare(&runtime));
    while let Ok(request) = requests.recv() {
        // A spare that could not be made is tried again for the pod that needs it.
        let ready = match spare.take() {
            Some(Ok(())) => Ok(()),
            _ => make_spare(&runtime),
        };
        let made = ready.and_then(|()| hand_over(&request));
        let _ = request.reply.send(made);
        spare = Some(make_spare(&runtime));
    }
}

/// Moves this thread into new network, UTS and IPC namespaces and sets their loopback up.
fn make_spare(runtime: &Result<tokio::runtime::Runtime, String>) -> Result<(), String> {
    use rustix::thread::UnshareFlags;
    let runtime = runtime.as_ref().map_err(|e| format!("a runtime for the namespaces' thread: {e}"))?;
    // SAFETY: only namespaces of this thread change (network, UTS and IPC are per thread); the
    // thread shares no file table or file system state that unsharing would split.
    unsafe { rustix::thread::unshare_unsafe(UnshareFlags::NEWNET | UnshareFlags::NEWUTS | UnshareFlags::NEWIPC) }
        .map_err(|e| format!("unshare: {e}"))?;
    runtime.block_on(async {
        let netlink = Netlink::connect().map_err(|e| format!("netlink: {e}"))?;
        // A new network namespace has only its loopback, index 1.
        netlink.up(1).await.map_err(|e| format!("setting loopback up: {e}"))
    })
}

/// Gives the spare set (the thread's own namespaces) to the pod of `request`.
fn hand_over(request: &Request) -> Result<Netlink, String> {
    rustix::system::sethostname(request.hostname.as_bytes()).map_err(|e| format!("sethostname: {e}"))?;
    for (kind, file) in &request.files {
        let own = format!("/proc/thread-self/ns/{}", kind.name());
        rustix::mount::mount_bind(own.as_str(), file).map_err(|e| format!("binding {}: {e}", file.display()))?;
    }
    let _entered = request.runtime.enter();
    Netlink::connect().map_err(|e| format!("netlink: {e}"))
}
