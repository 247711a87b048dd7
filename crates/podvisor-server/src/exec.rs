//! `pods/exec` over WebSocket, as kubectl 1.30 and later speak it: the `v5.channel.k8s.io`
//! subprotocol (and v4), each binary message a channel byte then data — 0 stdin, 1 stdout,
//! 2 stderr, 3 the error channel (a `Status` with the exit code at the end), 4 resize (the
//! terminal's `{"Width":…,"Height":…}`), and in v5 255 to close a channel (`[255, 0]`: the end
//! of stdin). The command runs in the container through the OCI runtime (`runc exec`), in its
//! namespaces and cgroup; with `tty=true` on a terminal of its own (`kubectl exec -it`), whose
//! output comes on stdout, and where Ctrl-C and Ctrl-D are typed characters, as on a cluster.
//!
//! Not yet: attach, and exec over the SPDY protocol of older clients (port-forward speaks SPDY:
//! see [`crate::portforward`]).

use std::sync::Arc;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::{Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use podvisor_cluster::store::{Key, Obj};
use podvisor_objects::kinds::Resource;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::Role;

use crate::status::ApiError;
use crate::{Body, Reply, State};

/// The subprotocols served, best first.
const PROTOCOLS: [&str; 2] = ["v5.channel.k8s.io", "v4.channel.k8s.io"];

/// The most one message carries of a command's output.
const CHUNK: usize = 32 * 1024;

/// Whether `req` asks to upgrade to WebSocket.
pub fn is_upgrade(req: &Request<Incoming>) -> bool {
    req.headers()
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
}

/// The container a streaming request is for, and how to answer its upgrade.
struct Target {
    pod: Obj,
    container: String,
    /// Its running instance's runtime ID.
    id: String,
    protocol: &'static str,
    ws_key: Vec<u8>,
}

/// Finds the running container of pod `name` that the request names (by default the first),
/// and the WebSocket subprotocol to answer with; or the API server's error.
fn target(
    state: &Arc<State>,
    req: &Request<Incoming>,
    namespace: &str,
    name: &str,
    q: &std::collections::HashMap<String, String>,
    verb: &str,
) -> Result<Target, ApiError> {
    let pod = state.store().get(&Key::new(Resource::Pods, namespace, name)).ok_or_else(|| {
        ApiError::from(podvisor_cluster::StoreError::NotFound(Key::new(Resource::Pods, namespace, name)))
    })?;
    let container = match q.get("container").filter(|c| !c.is_empty()) {
        Some(c) => c.clone(),
        None => pod.pointer("/spec/containers/0/name").and_then(Value::as_str).unwrap_or("").to_string(),
    };
    let declared = ["/spec/containers", "/spec/initContainers", "/spec/ephemeralContainers"]
        .iter()
        .filter_map(|p| pod.pointer(p)?.as_array())
        .flatten()
        .any(|c| c["name"] == container.as_str());
    if !declared {
        return Err(ApiError::bad_request(format!("container {container} is not valid for pod {name}")));
    }
    let id = running_id(&pod, &container).ok_or_else(|| {
        ApiError::bad_request(format!("unable to upgrade connection: container not found ({container:?})"))
    })?;
    if !is_upgrade(req) {
        return Err(ApiError::bad_request(format!(
            "podvisor serves {verb} over WebSocket (kubectl 1.30 and later); this client asked for another protocol"
        )));
    }
    let offered: Vec<String> = req
        .headers()
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(',').map(|p| p.trim().to_string()))
        .collect();
    let Some(protocol) = PROTOCOLS.iter().find(|p| offered.iter().any(|o| o == *p)) else {
        return Err(ApiError::bad_request(format!(
            "podvisor serves {verb} over WebSocket with the subprotocols {}; offered: {offered:?}",
            PROTOCOLS.join(", ")
        )));
    };
    let Some(ws_key) = req.headers().get(header::SEC_WEBSOCKET_KEY).map(|k| k.as_bytes().to_vec()) else {
        return Err(ApiError::bad_request("missing Sec-WebSocket-Key"));
    };
    Ok(Target { pod, container, id, protocol, ws_key })
}

/// The 101 that upgrades a streaming request to WebSocket with `protocol`.
fn switching(ws_key: &[u8], protocol: &'static str) -> Reply {
    let mut r: Response<Body> = Response::new(Full::new(Bytes::new()).boxed());
    *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = r.headers_mut();
    h.insert(header::UPGRADE, http::HeaderValue::from_static("websocket"));
    h.insert(header::CONNECTION, http::HeaderValue::from_static("Upgrade"));
    if let Ok(v) = tokio_tungstenite::tungstenite::handshake::derive_accept_key(ws_key).parse() {
        h.insert(header::SEC_WEBSOCKET_ACCEPT, v);
    }
    h.insert(header::SEC_WEBSOCKET_PROTOCOL, http::HeaderValue::from_static(protocol));
    Reply(r)
}

fn flag(q: &std::collections::HashMap<String, String>, k: &str) -> bool {
    q.get(k).is_some_and(|v| v == "true" || v == "1")
}

/// The WebSocket of a request once its connection is upgraded (`None`: the client left first).
async fn upgraded(
    req: Request<Incoming>,
) -> Option<WebSocketStream<hyper_util::rt::TokioIo<hyper::upgrade::Upgraded>>> {
    let upgraded = hyper::upgrade::on(req).await.ok()?;
    Some(WebSocketStream::from_raw_socket(hyper_util::rt::TokioIo::new(upgraded), Role::Server, None).await)
}

/// Ends a session that could not start: its reason as a Failure on the error channel.
async fn refuse<S>(mut ws: WebSocketStream<S>, message: String)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let end = json!({"metadata": {}, "status": "Failure", "message": message, "reason": "InternalError"});
    let _ = ws.send(status_message(&end)).await;
    let _ = ws.close(None).await;
}

/// A `Status` on the error channel.
fn status_message(status: &Value) -> Message {
    let mut m = vec![3u8];
    m.extend(serde_json::to_vec(status).unwrap_or_default());
    Message::binary(m)
}

/// Answers an exec request on pod `name` in `namespace`: the 101 that upgrades the connection,
/// and a task that runs the command over it; or the API server's error.
pub fn exec(state: &Arc<State>, req: Request<Incoming>, namespace: &str, name: &str) -> Result<Reply, ApiError> {
    let query = req.uri().query().map(str::to_string);
    let q = crate::request::query(query.as_deref());
    let command = crate::request::query_all(query.as_deref(), "command");
    if command.is_empty() {
        return Err(ApiError::bad_request("you must specify at least 1 command"));
    }
    let Target { container, id, protocol, ws_key, .. } = target(state, &req, namespace, name, &q, "exec")?;
    let (tty, stdin) = (flag(&q, "tty"), flag(&q, "stdin"));
    let v5 = protocol == PROTOCOLS[0];
    let state = state.clone();
    // The command starts once the connection is upgraded: a failed upgrade leaves nothing.
    tokio::spawn(async move {
        let Some(ws) = upgraded(req).await else { return };
        let started = state.cluster.node().exec_pid_file().and_then(|pid_file| {
            let started = if tty {
                state.cluster.node().exec_tty(&id, &command, &pid_file).map(|(child, pty)| (child, Some(pty)))
            } else {
                state.cluster.node().exec(&id, &command, stdin, &pid_file).map(|child| (child, None))
            };
            started.map(|(child, pty)| (child, pty, pid_file))
        });
        match started {
            Ok((child, pty, pid_file)) => {
                match pty {
                    Some(pty) => run_tty(ws, child, pty, v5, &pid_file).await,
                    None => run(ws, child, v5, &pid_file).await,
                }
                let _ = std::fs::remove_file(&pid_file);
            }
            Err(e) => refuse(ws, format!("unable to run {command:?} in container {container:?}: {e}")).await,
        }
    });
    Ok(switching(&ws_key, protocol))
}

/// Answers an attach request on pod `name` in `namespace` (`kubectl attach`, `kubectl run -it`):
/// the 101, and a task that carries the container's output from now on, and its input when
/// asked for and the container keeps it open, until the container ends or the client leaves.
/// With `stdinOnce`, the container's input ends with the first client's.
pub fn attach(state: &Arc<State>, req: Request<Incoming>, namespace: &str, name: &str) -> Result<Reply, ApiError> {
    let q = crate::request::query(req.uri().query());
    let Target { pod, container, id, protocol, ws_key } = target(state, &req, namespace, name, &q, "attach")?;
    let spec = ["/spec/containers", "/spec/initContainers", "/spec/ephemeralContainers"]
        .iter()
        .filter_map(|p| pod.pointer(p)?.as_array())
        .flatten()
        .find(|c| c["name"] == container.as_str())
        .cloned()
        .unwrap_or(Value::Null);
    let stdin = flag(&q, "stdin");
    if stdin && spec["stdin"] != true {
        return Err(ApiError::bad_request(format!(
            "container {container} of pod {name} does not keep its standard input open (it needs stdin: true)"
        )));
    }
    let (tty, once) = (spec["tty"] == true, spec["stdinOnce"] == true);
    let uid = pod.pointer("/metadata/uid").and_then(Value::as_str).unwrap_or("").to_string();
    let v5 = protocol == PROTOCOLS[0];
    let state = state.clone();
    tokio::spawn(async move {
        let Some(ws) = upgraded(req).await else { return };
        match state.cluster.node().attach(&uid, &id, stdin).await {
            Ok(attached) => carry_attached(ws, attached, tty, stdin && once, v5).await,
            Err(e) => refuse(ws, format!("unable to attach to container {container:?}: {e}")).await,
        }
    });
    Ok(switching(&ws_key, protocol))
}

/// Carries an attached container's output to the client, and the client's input and window
/// size to the container, until the container ends (then a Success status) or the client leaves.
async fn carry_attached<S>(
    ws: WebSocketStream<S>,
    mut attached: podvisor_runtime::monitor::attach::Attached,
    tty: bool,
    close_on_leave: bool,
    v5: bool,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sink, mut source) = ws.split();
    let ended = loop {
        tokio::select! {
            out = attached.next() => match out {
                Ok(Some((stream, data))) => {
                    let channel = if tty || stream == podvisor_runtime::logs::Stream::Stdout { 1u8 } else { 2u8 };
                    let mut m = Vec::with_capacity(data.len() + 1);
                    m.push(channel);
                    m.extend_from_slice(&data);
                    if sink.send(Message::binary(m)).await.is_err() {
                        break false;
                    }
                }
                _ => break true,
            },
            m = source.next() => {
                let Some(Ok(Message::Binary(data))) = m else {
                    if matches!(m, Some(Ok(Message::Text(_) | Message::Ping(_) | Message::Pong(_) | Message::Frame(_)))) {
                        continue;
                    }
                    break false;
                };
                match client_message(&data, v5) {
                    FromClient::Stdin(input) => {
                        let _ = attached.write(input).await;
                    }
                    FromClient::Resize(width, height) => {
                        let _ = attached.resize(width, height);
                    }
                    FromClient::EndOfStdin if close_on_leave => {
                        let _ = attached.close_stdin().await;
                    }
                    FromClient::EndOfStdin | FromClient::Other => {}
                }
            }
        }
    };
    if close_on_leave {
        let _ = attached.close_stdin().await;
    }
    if ended {
        let _ = sink.send(status_message(&json!({"metadata": {}, "status": "Success"}))).await;
        let normal = tokio_tungstenite::tungstenite::protocol::CloseFrame {
            code: tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode::Normal,
            reason: "".into(),
        };
        let _ = sink.send(Message::Close(Some(normal))).await;
    }
    let _ = sink.close().await;
}

/// The runtime ID of the running instance of `container` in the pod's status.
fn running_id(pod: &Value, container: &str) -> Option<String> {
    let lists = ["/status/containerStatuses", "/status/initContainerStatuses", "/status/ephemeralContainerStatuses"];
    lists.iter().filter_map(|p| pod.pointer(p)?.as_array()).flatten().find_map(|s| {
        (s["name"] == container && s.pointer("/state/running").is_some())
            .then(|| s["containerID"].as_str()?.strip_prefix("runc://").map(str::to_string))
            .flatten()
            // The status is writable through the API: only an ID of podvisor's own making names
            // a runtime container and a directory.
            .filter(|id| {
                id.starts_with("podvisor-")
                    && id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
                    && !id.contains("..")
            })
    })
}

/// Carries the streams between the WebSocket and the command until it ends; then sends its
/// end on the error channel and closes.
async fn run<S>(ws: WebSocketStream<S>, mut child: tokio::process::Child, v5: bool, pid_file: &std::path::Path)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (sink, mut source) = ws.split();
    let (tx, rx) = tokio::sync::mpsc::channel::<Message>(16);
    let mut pumps = Vec::new();
    for (channel, out) in [
        (1u8, child.stdout.take().map(|o| Box::new(o) as Box<dyn tokio::io::AsyncRead + Unpin + Send>)),
        (2u8, child.stderr.take().map(|o| Box::new(o) as Box<dyn tokio::io::AsyncRead + Unpin + Send>)),
    ] {
        let Some(mut out) = out else { continue };
        let tx = tx.clone();
        pumps.push(tokio::spawn(async move {
            let mut buf = vec![0u8; CHUNK];
            loop {
                match out.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => {
                        let mut m = Vec::with_capacity(n + 1);
                        m.push(channel);
                        m.extend_from_slice(&buf[..n]);
                        if tx.send(Message::binary(m)).await.is_err() {
                            return;
                        }
                    }
                }
            }
        }));
    }
    drop(tx);
    let mut stdin = child.stdin.take();
    let writer = tokio::spawn(forward_messages(rx, sink));
    // Stdin from the client until it closes it (v5) or goes away.
    let reading = async {
        while let Some(Ok(m)) = source.next().await {
            let Message::Binary(data) = m else {
                if matches!(m, Message::Close(_)) {
                    return;
                }
                continue;
            };
            match client_message(&data, v5) {
                FromClient::Stdin(input) => {
                    if let Some(s) = stdin.as_mut()
                        && s.write_all(input).await.is_err()
                    {
                        stdin = None;
                    }
                }
                FromClient::EndOfStdin => stdin = None,
                FromClient::Resize(..) | FromClient::Other => {}
            }
        }
    };
    let status = tokio::select! {
        s = child.wait() => s,
        // The client left: the command is ended with it.
        () = reading => kill_command(&mut child, pid_file).await,
    };
    for p in pumps {
        let _ = p.await;
    }
    let Ok(sink) = writer.await else { return };
    finish(sink, status).await;
}

/// Ends a session: kills the command in the container (the runtime client alone would leave
/// it running there), then the client, and waits for it.
async fn kill_command(
    child: &mut tokio::process::Child,
    pid_file: &std::path::Path,
) -> std::io::Result<std::process::ExitStatus> {
    let pid = std::fs::read_to_string(pid_file).ok().and_then(|s| s.trim().parse::<i32>().ok());
    if let Some(pid) = pid.and_then(rustix::process::Pid::from_raw) {
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
    }
    let _ = child.start_kill();
    child.wait().await
}

/// Sends the command's end on the error channel, then closes the WebSocket.
async fn finish<S>(mut sink: S, status: std::io::Result<std::process::ExitStatus>)
where
    S: futures_util::Sink<Message> + Unpin,
{
    let code = status.ok().and_then(|s| s.code()).unwrap_or(137);
    let end = if code == 0 {
        json!({"metadata": {}, "status": "Success"})
    } else {
        json!({"metadata": {}, "status": "Failure",
               "message": format!("command terminated with non-zero exit code: error executing command, exit code {code}"),
               "reason": "NonZeroExitCode",
               "details": {"causes": [{"reason": "ExitCode", "message": code.to_string()}]}})
    };
    let _ = sink.send(status_message(&end)).await;
    // A normal close: the client reads it as the end of every stream.
    let normal = tokio_tungstenite::tungstenite::protocol::CloseFrame {
        code: tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode::Normal,
        reason: "".into(),
    };
    let _ = sink.send(Message::Close(Some(normal))).await;
    let _ = sink.close().await;
}

/// What a client's binary message says.
enum FromClient<'a> {
    /// Input for the command (channel 0).
    Stdin(&'a [u8]),
    /// The terminal's new size, columns and rows (channel 4).
    Resize(u16, u16),
    /// The end of the input (v5's close of channel 0).
    EndOfStdin,
    /// Anything else: ignored.
    Other,
}

fn client_message(data: &[u8], v5: bool) -> FromClient<'_> {
    match data {
        [0, input @ ..] => FromClient::Stdin(input),
        [4, rest @ ..] => size(rest).map_or(FromClient::Other, |(w, h)| FromClient::Resize(w, h)),
        [255, 0, ..] if v5 => FromClient::EndOfStdin,
        _ => FromClient::Other,
    }
}

/// The terminal's size in a resize message (`{"Width":80,"Height":24}`), if it is one.
fn size(message: &[u8]) -> Option<(u16, u16)> {
    let v: Value = serde_json::from_slice(message).ok()?;
    let dimension = |k: &str| v.get(k)?.as_u64().and_then(|n| u16::try_from(n).ok());
    Some((dimension("Width")?, dimension("Height")?))
}

/// Carries a command with a terminal: typed input and resizes from the WebSocket, the
/// terminal's output back on stdout, until the command ends and its output is drained; then
/// its end on the error channel.
async fn run_tty<S>(
    ws: WebSocketStream<S>,
    mut child: tokio::process::Child,
    pty: podvisor_runtime::pty::Pty,
    v5: bool,
    pid_file: &std::path::Path,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (sink, mut source) = ws.split();
    let (tx, rx) = tokio::sync::mpsc::channel::<Message>(16);
    let writer = tokio::spawn(forward_messages(rx, sink));
    let output = async {
        let mut buf = vec![0u8; CHUNK];
        while let Ok(n) = pty.read(&mut buf).await {
            if n == 0 {
                break;
            }
            let mut m = Vec::with_capacity(n + 1);
            m.push(1u8);
            m.extend_from_slice(&buf[..n]);
            if tx.send(Message::binary(m)).await.is_err() {
                break;
            }
        }
    };
    let input = async {
        while let Some(Ok(m)) = source.next().await {
            let data = match m {
                Message::Binary(data) => data,
                Message::Close(_) => return,
                _ => continue,
            };
            match client_message(&data, v5) {
                FromClient::Stdin(input) => {
                    let _ = pty.write_all(input).await;
                }
                FromClient::Resize(width, height) => {
                    let _ = pty.resize(width, height);
                }
                // The end of stdin on a terminal is an end-of-file character typed.
                FromClient::EndOfStdin => {
                    let _ = pty.write_all(&[4]).await;
                }
                FromClient::Other => {}
            }
        }
    };
    let status = tokio::select! {
        (s, ()) = async { tokio::join!(child.wait(), output) } => s,
        () = input => kill_command(&mut child, pid_file).await,
    };
    drop(tx);
    let Ok(sink) = writer.await else { return };
    finish(sink, status).await;
}

/// Sends what the session's parts queue, in order, until they are all done or the client is
/// gone; gives the sink back for the session's end.
async fn forward_messages<K>(mut rx: tokio::sync::mpsc::Receiver<Message>, mut sink: K) -> K
where
    K: futures_util::Sink<Message> + Unpin,
{
    while let Some(m) = rx.recv().await {
        if sink.send(m).await.is_err() {
            break;
        }
    }
    sink
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A status written through the API cannot make exec or attach reach a runtime container,
    /// or a directory, that podvisor did not make.
    #[test]
    fn only_a_container_id_of_podvisors_own_making_is_used() {
        let pod = |id: &str| json!({"status": {"containerStatuses": [{"name": "app", "containerID": id, "state": {"running": {}}}]}});
        assert_eq!(running_id(&pod("runc://podvisor-u-app-0"), "app").as_deref(), Some("podvisor-u-app-0"));
        for hostile in ["runc://--process=/x", "runc://podvisor-../../etc", "runc://other", "runc://podvisor-a b"] {
            assert_eq!(running_id(&pod(hostile), "app"), None, "{hostile}");
        }
    }
}
