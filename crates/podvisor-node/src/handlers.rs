//! Probe and hook handlers on real containers: `exec` through the OCI runtime, `tcpSocket` and
//! `httpGet` from inside the pod's network namespace, `sleep`.
//!
//! Network checks run on a short-lived thread that joins the pod's network namespace, so the
//! node's own threads never change namespace.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, HTTPGetAction, TCPSocketAction};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use podvisor_engine::ProbeOutcome;
use podvisor_runtime::runc::Runc;

/// What a handler found.
pub(crate) enum Outcome {
    Ok,
    Failed(String),
}

/// Runs `argv` in container `id`; exit code 0 passes.
pub(crate) async fn exec(runc: &Runc, id: &str, argv: &[String], timeout: Duration) -> Outcome {
    match runc.exec(id, argv, timeout).await {
        Ok(Some((0, _))) => Outcome::Ok,
        Ok(Some((code, out))) => {
            let out = out.trim_end().to_string();
            Outcome::Failed(if out.is_empty() { format!("command {argv:?} exited with {code}") } else { out })
        }
        Ok(None) => Outcome::Failed(format!("command {argv:?} timed out")),
        Err(e) => Outcome::Failed(e.to_string()),
    }
}

fn port(c: &Container, p: &IntOrString) -> Result<u16, String> {
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

/// Runs `f` on a fresh thread inside the network namespace at `netns`.
async fn in_netns<T: Send + 'static>(
    netns: PathBuf,
    f: impl FnOnce() -> Result<T, String> + Send + 'static,
) -> Result<T, String> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("podvisor-netns".into())
        .spawn(move || {
            let result = (|| {
                let ns = std::fs::File::open(&netns).map_err(|e| format!("{}: {e}", netns.display()))?;
                use std::os::fd::AsFd;
                rustix::thread::move_into_link_name_space(ns.as_fd(), Some(rustix::thread::LinkNameSpaceType::Network))
                    .map_err(|e| format!("joining the pod's network namespace: {e}"))?;
                f()
            })();
            let _ = tx.send(result);
        })
        .map_err(|e| e.to_string())?;
    rx.await.map_err(|_| "the network check thread died".to_string())?
}

fn addr(host: Option<&str>, port: u16) -> Result<SocketAddr, String> {
    let host = host.filter(|h| !h.is_empty()).unwrap_or("127.0.0.1");
    (host, port)
        .to_socket_addrs()
        .map_err(|e| format!("{host}: {e}"))?
        .next()
        .ok_or_else(|| format!("{host}: no address"))
}

/// `tcpSocket`: a connection opens.
pub(crate) async fn tcp(netns: &Path, c: &Container, a: &TCPSocketAction, timeout: Duration) -> Outcome {
    let port = match port(c, &a.port) {
        Ok(p) => p,
        Err(e) => return Outcome::Failed(e),
    };
    let host = a.host.clone();
    // The name is resolved on the thread too: no blocking lookup on the event loop.
    outcome(
        in_netns(netns.to_path_buf(), move || {
            let target = addr(host.as_deref(), port)?;
            TcpStream::connect_timeout(&target, timeout)
                .map(|_| ())
                .map_err(|e| format!("dial tcp {target}: connect: {}", net_error(&e)))
        })
        .await,
    )
}

/// `httpGet`: a GET answered with a status from 200 to 399.
pub(crate) async fn http(netns: &Path, c: &Container, a: &HTTPGetAction, timeout: Duration) -> Outcome {
    if a.scheme.as_deref() == Some("HTTPS") {
        return Outcome::Failed("HTTPS probes are not supported yet".into());
    }
    let port = match port(c, &a.port) {
        Ok(p) => p,
        Err(e) => return Outcome::Failed(e),
    };
    let host = a.host.clone().filter(|h| !h.is_empty());
    let path = a.path.clone().filter(|p| !p.is_empty()).unwrap_or_else(|| "/".into());
    let mut headers: Vec<(String, String)> =
        a.http_headers.iter().flatten().map(|h| (h.name.clone(), h.value.clone())).collect();
    outcome(
        in_netns(netns.to_path_buf(), move || {
            let target = addr(host.as_deref(), port)?;
            let host_header = host.unwrap_or_else(|| target.ip().to_string());
            for (k, v) in [
                ("Host", format!("{host_header}:{port}")),
                ("User-Agent", "kube-probe/1.35".into()),
                ("Accept", "*/*".into()),
            ] {
                if !headers.iter().any(|(n, _)| n.eq_ignore_ascii_case(k)) {
                    headers.push((k.to_string(), v));
                }
            }
            let url = format!("http://{target}{path}");
            let mut s = TcpStream::connect_timeout(&target, timeout)
                .map_err(|e| format!("Get \"{url}\": dial tcp {target}: connect: {}", net_error(&e)))?;
            let _ = s.set_read_timeout(Some(timeout));
            let _ = s.set_write_timeout(Some(timeout));
            let mut req = format!("GET {path} HTTP/1.1\r\nConnection: close\r\n");
            for (k, v) in &headers {
                req.push_str(&format!("{k}: {v}\r\n"));
            }
            req.push_str("\r\n");
            s.write_all(req.as_bytes()).map_err(|e| format!("Get \"{url}\": {e}"))?;
            let mut head = Vec::new();
            let mut buf = [0u8; 1024];
            while !head.windows(2).any(|w| w == b"\r\n") && head.len() < 8192 {
                let n = s.read(&mut buf).map_err(|e| format!("Get \"{url}\": {}", net_error(&e)))?;
                if n == 0 {
                    break;
                }
                head.extend_from_slice(&buf[..n]);
            }
            let line = String::from_utf8_lossy(&head);
            let code: u16 = line
                .split_whitespace()
                .nth(1)
                .and_then(|c| c.parse().ok())
                .ok_or_else(|| format!("Get \"{url}\": malformed HTTP response"))?;
            if (200..400).contains(&code) { Ok(()) } else { Err(format!("HTTP probe failed with statuscode: {code}")) }
        })
        .await,
    )
}

/// A socket error as Go's net package words it (the kubelet's probe messages quote it).
fn net_error(e: &std::io::Error) -> String {
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
            Outcome::Failed(m) => ProbeOutcome::Failure(m),
        }
    }
}
