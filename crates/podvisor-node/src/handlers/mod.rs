//! Probe and hook handlers, dispatched from one list ([`Handler`]): `exec` through the
//! machine's runtime; `tcpSocket`, `httpGet` and `grpc` from the node to the pod's address, as
//! the kubelet's go (so a server listening on loopback only fails them there too), or, for a
//! pod without an address of its own, from inside its network namespace to its loopback;
//! `sleep`.
//!
//! A check that must connect from inside a network namespace opens its socket on a short-lived
//! thread that joins it, so the node's own threads never change namespace; the socket stays in
//! the pod's namespace wherever it is used afterwards.

mod grpc;
mod http;

pub(crate) use grpc::grpc;
pub(crate) use http::{Purpose, http};

use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, GRPCAction, HTTPGetAction, LifecycleHandler, Probe, TCPSocketAction};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use podvisor_engine::ProbeOutcome;
use podvisor_runtime::runc::Runc;

/// Where a pod's network checks go.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    /// The pod's network namespace (none on the host's network).
    pub netns: Option<PathBuf>,
    /// The address a check without a `host` connects to: the pod's.
    pub ip: String,
}

/// What a probe or a lifecycle hook does: the one list both are dispatched from.
pub(crate) enum Handler {
    /// Runs a command in the container; exit code 0 passes.
    Exec(Vec<String>),
    /// An HTTP GET.
    Http(HTTPGetAction),
    /// A TCP connection.
    Tcp(TCPSocketAction),
    /// A gRPC health check (probes only).
    Grpc(GRPCAction),
    /// Waits this many seconds (hooks only).
    Sleep(i64),
}

impl Handler {
    /// A probe's handler, if it names one.
    pub(crate) fn of_probe(p: &Probe) -> Option<Handler> {
        if let Some(e) = &p.exec {
            Some(Handler::Exec(e.command.clone().unwrap_or_default()))
        } else if let Some(a) = &p.tcp_socket {
            Some(Handler::Tcp(a.clone()))
        } else if let Some(a) = &p.http_get {
            Some(Handler::Http(a.clone()))
        } else {
            p.grpc.clone().map(Handler::Grpc)
        }
    }

    /// A lifecycle hook's handler, if it names one.
    pub(crate) fn of_hook(h: &LifecycleHandler) -> Option<Handler> {
        if let Some(e) = &h.exec {
            Some(Handler::Exec(e.command.clone().unwrap_or_default()))
        } else if let Some(s) = &h.sleep {
            Some(Handler::Sleep(s.seconds))
        } else if let Some(a) = &h.http_get {
            Some(Handler::Http(a.clone()))
        } else {
            h.tcp_socket.clone().map(Handler::Tcp)
        }
    }
}

/// What a handler found.
pub(crate) enum Outcome {
    Ok,
    /// Passed, with something the user should hear of (a `ProbeWarning` event).
    Warning(String),
    Failed(String),
}

/// Runs `argv` in container `id`; exit code 0 passes.
pub(crate) async fn exec(runc: &Runc, id: &str, argv: &[String], timeout: Duration) -> Outcome {
    match runc.exec(id, argv, timeout).await {
        Ok(Some((0, _))) => Outcome::Ok,
        // The kubelet's message is the command's output alone, empty if it printed nothing.
        Ok(Some((_, out))) => Outcome::Failed(out.trim_end().to_string()),
        Ok(None) => Outcome::Failed(format!("command {:?} timed out", argv.join(" "))),
        Err(e) => Outcome::Failed(e.to_string()),
    }
}

pub(super) fn port(c: &Container, p: &IntOrString) -> Result<u16, String> {
    match p {
        IntOrString::Int(n) => u16::try_from(*n).map_err(|_| format!("invalid port {n}")),
        IntOrString::String(name) => c
            .ports
            .iter()
            .flatten()
            .find(|x| x.name.as_deref() == Some(name.as_str()))
            .and_then(|x| u16::try_from(x.container_port).ok())
            .ok_or_else(|| format!("couldn't find port {name:?} in container {:?}", c.name)),
    }
}

/// Runs `f` on a fresh thread inside the network namespace at `netns` (or the node's own).
pub(crate) async fn in_netns<T: Send + 'static>(
    netns: Option<PathBuf>,
    f: impl FnOnce() -> Result<T, String> + Send + 'static,
) -> Result<T, String> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("podvisor-netns".into())
        .spawn(move || {
            let result = (|| {
                if let Some(netns) = netns {
                    let ns = std::fs::File::open(&netns).map_err(|e| format!("{}: {e}", netns.display()))?;
                    use std::os::fd::AsFd;
                    let kind = Some(rustix::thread::LinkNameSpaceType::Network);
                    rustix::thread::move_into_link_name_space(ns.as_fd(), kind)
                        .map_err(|e| format!("joining the pod's network namespace: {e}"))?;
                }
                f()
            })();
            let _ = tx.send(result);
        })
        .map_err(|e| e.to_string())?;
    rx.await.map_err(|_| "the network check thread died".to_string())?
}

/// The address of `host` (by default the pod's, `pod_ip`) at `port`.
pub(super) fn addr(host: Option<&str>, pod_ip: &str, port: u16) -> Result<SocketAddr, String> {
    let host = host.filter(|h| !h.is_empty()).unwrap_or(pod_ip);
    (host, port)
        .to_socket_addrs()
        .map_err(|e| format!("{host}: {e}"))?
        .next()
        .ok_or_else(|| format!("{host}: no address"))
}

/// `tcpSocket`: a connection opens.
pub(crate) async fn tcp(to: &Target, c: &Container, a: &TCPSocketAction, timeout: Duration) -> Outcome {
    let port = match port(c, &a.port) {
        Ok(p) => p,
        Err(e) => return Outcome::Failed(e),
    };
    let (host, ip) = (a.host.clone(), to.ip.clone());
    // The name is resolved on the thread too: no blocking lookup on the event loop.
    outcome(
        in_netns(to.netns.clone(), move || {
            let target = addr(host.as_deref(), &ip, port)?;
            TcpStream::connect_timeout(&target, timeout)
                .map(|_| ())
                .map_err(|e| format!("dial tcp {target}: connect: {}", net_error(&e)))
        })
        .await,
    )
}

/// A socket error as Go's net package words it (the kubelet's probe messages quote it).
pub(super) fn net_error(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::ConnectionRefused => "connection refused".into(),
        std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock => "i/o timeout".into(),
        std::io::ErrorKind::ConnectionReset => "connection reset by peer".into(),
        _ => e.to_string(),
    }
}

fn outcome(r: Result<(), String>) -> Outcome {
    match r {
        Ok(()) => Outcome::Ok,
        Err(e) => Outcome::Failed(e),
    }
}

impl From<Outcome> for ProbeOutcome {
    fn from(o: Outcome) -> Self {
        match o {
            Outcome::Ok => ProbeOutcome::Success,
            Outcome::Warning(m) => ProbeOutcome::Warning(m),
            Outcome::Failed(m) => ProbeOutcome::Failure(m),
        }
    }
}
