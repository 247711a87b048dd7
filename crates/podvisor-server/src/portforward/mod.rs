//! `pods/portforward`, as kubectl 1.32 speaks it: SPDY/3.1 tunnelled in WebSocket (the
//! `SPDY/3.1+portforward.k8s.io` subprotocol, each binary message a piece of the SPDY byte
//! stream), and plain SPDY over an HTTP upgrade (`Upgrade: SPDY/3.1`,
//! `X-Stream-Protocol-Version: portforward.k8s.io`), which kubectl falls back to and older
//! clients speak first.
//!
//! For each forwarded connection the client opens two streams with the same `requestid`: an
//! `error` stream and a `data` stream, naming the pod's `port`. Once both are open the server
//! connects to the port on the pod's loopback, from inside its network namespace as the
//! kubelet does, and carries bytes both ways; a connection that fails is told on the error
//! stream, worded as the kubelet words it. Every connection ends with the session.

mod spdy;

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::{Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use podvisor_cluster::store::Key;
use podvisor_objects::kinds::Resource;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::Role;

use self::spdy::{Decoder, Encoder, Frame};
use crate::status::ApiError;
use crate::{Body, Reply, State};

/// The WebSocket subprotocol of SPDY tunnelled in WebSocket.
const TUNNEL: &str = "SPDY/3.1+portforward.k8s.io";

/// The stream protocol of plain SPDY.
const PORT_FORWARD: &str = "portforward.k8s.io";

/// The most streams one session holds open at once (two per forwarded connection).
const MAX_STREAMS: usize = 2048;

/// The most one data frame carries from the pod.
const CHUNK: usize = 32 * 1024;

/// The client's data frames a connection may have waiting for the pod (kubectl's are at most
/// 32 KiB: 2 MiB): past that the connection is reset rather than the session held up.
const STREAM_BACKLOG: usize = 64;

/// Answers a port-forward request on pod `name` in `namespace`: the 101 that upgrades the
/// connection, and a task that serves the session; or the API server's error.
pub fn port_forward(
    state: &Arc<State>,
    req: Request<Incoming>,
    namespace: &str,
    name: &str,
) -> Result<Reply, ApiError> {
    let key = Key::new(Resource::Pods, namespace, name);
    let pod =
        state.store().get(&key).ok_or_else(|| ApiError::from(podvisor_cluster::StoreError::NotFound(key.clone())))?;
    if pod.pointer("/status/phase").and_then(Value::as_str) != Some("Running") {
        return Err(ApiError::bad_request(format!("unable to upgrade connection: pod {name} is not running")));
    }
    let uid = pod.pointer("/metadata/uid").and_then(Value::as_str).unwrap_or("").to_string();
    let pod_name = format!("{name}_{namespace}");
    let headers = req.headers();
    let websocket = crate::exec::is_upgrade(&req);
    let offered = |h: header::HeaderName| -> Vec<String> {
        headers
            .get_all(h)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(',').map(|p| p.trim().to_string()))
            .collect()
    };
    let mut r: Response<Body> = Response::new(Full::new(Bytes::new()).boxed());
    *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    if websocket {
        let protocols = offered(header::SEC_WEBSOCKET_PROTOCOL);
        if !protocols.iter().any(|p| p == TUNNEL) {
            return Err(ApiError::bad_request(format!(
                "podvisor serves port-forward over WebSocket with the subprotocol {TUNNEL}; offered: {protocols:?}"
            )));
        }
        let Some(ws_key) = headers.get(header::SEC_WEBSOCKET_KEY).map(|k| k.as_bytes().to_vec()) else {
            return Err(ApiError::bad_request("missing Sec-WebSocket-Key"));
        };
        let h = r.headers_mut();
        h.insert(header::UPGRADE, http::HeaderValue::from_static("websocket"));
        h.insert(header::CONNECTION, http::HeaderValue::from_static("Upgrade"));
        if let Ok(v) = tokio_tungstenite::tungstenite::handshake::derive_accept_key(&ws_key).parse() {
            h.insert(header::SEC_WEBSOCKET_ACCEPT, v);
        }
        h.insert(header::SEC_WEBSOCKET_PROTOCOL, http::HeaderValue::from_static(TUNNEL));
    } else {
        let spdy = headers
            .get(header::UPGRADE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.eq_ignore_ascii_case("SPDY/3.1"));
        let protocols = offered(header::HeaderName::from_static("x-stream-protocol-version"));
        if !spdy || !protocols.iter().any(|p| p == PORT_FORWARD) {
            return Err(ApiError::bad_request(format!(
                "podvisor serves port-forward over SPDY/3.1 ({PORT_FORWARD}), plain or tunnelled in WebSocket"
            )));
        }
        let h = r.headers_mut();
        h.insert(header::UPGRADE, http::HeaderValue::from_static("SPDY/3.1"));
        h.insert(header::CONNECTION, http::HeaderValue::from_static("Upgrade"));
        h.insert("x-stream-protocol-version", http::HeaderValue::from_static(PORT_FORWARD));
    }
    let state = state.clone();
    tokio::spawn(async move {
        let Ok(upgraded) = hyper::upgrade::on(req).await else { return };
        let io = hyper_util::rt::TokioIo::new(upgraded);
        let (bytes_in, bytes_rx) = mpsc::channel::<Vec<u8>>(16);
        let (frames_out, frames_rx) = mpsc::channel::<Vec<u8>>(64);
        let target = Target { state, uid, pod: pod_name };
        if websocket {
            // A message is a piece of the SPDY stream, never more than a frame's worth.
            let config = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
                .max_message_size(Some(spdy::MAX_FRAME + 8))
                .max_frame_size(Some(spdy::MAX_FRAME + 8));
            let ws = WebSocketStream::from_raw_socket(io, Role::Server, Some(config)).await;
            tokio::join!(websocket_transport(ws, bytes_in, frames_rx), session(target, bytes_rx, frames_out));
        } else {
            tokio::join!(raw_transport(io, bytes_in, frames_rx), session(target, bytes_rx, frames_out));
        }
    });
    Ok(Reply(r))
}

/// Carries the SPDY byte stream in WebSocket binary messages, both ways, until either side
/// ends.
async fn websocket_transport<S>(
    ws: WebSocketStream<S>,
    bytes_in: mpsc::Sender<Vec<u8>>,
    mut out: mpsc::Receiver<Vec<u8>>,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let (mut sink, mut source) = ws.split();
    let reading = async {
        while let Some(Ok(m)) = source.next().await {
            let data = match m {
                Message::Binary(b) => b,
                Message::Close(_) => return,
                _ => continue,
            };
            if bytes_in.send(data.to_vec()).await.is_err() {
                return;
            }
        }
    };
    let writing = async {
        while let Some(frame) = out.recv().await {
            if sink.send(Message::binary(frame)).await.is_err() {
                return;
            }
        }
        let _ = sink.close().await;
    };
    tokio::select! { () = reading => {}, () = writing => {} }
}

/// Carries the SPDY byte stream over the upgraded connection itself.
async fn raw_transport<S>(io: S, bytes_in: mpsc::Sender<Vec<u8>>, mut out: mpsc::Receiver<Vec<u8>>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let (mut r, mut w) = tokio::io::split(io);
    let reading = async {
        let mut buf = vec![0u8; CHUNK];
        loop {
            match r.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    if bytes_in.send(buf[..n].to_vec()).await.is_err() {
                        return;
                    }
                }
            }
        }
    };
    let writing = async {
        while let Some(frame) = out.recv().await {
            if w.write_all(&frame).await.is_err() {
                return;
            }
        }
        let _ = w.shutdown().await;
    };
    tokio::select! { () = reading => {}, () = writing => {} }
}

/// The pod the session forwards to.
struct Target {
    state: Arc<State>,
    uid: String,
    /// `name_namespace`, as the kubelet names the pod in its errors.
    pod: String,
}

/// What a forwarded connection sends back, encoded in order by the session (header blocks
/// share one compression context).
enum Out {
    Data { id: u32, data: Vec<u8>, fin: bool },
}

/// One stream the client opened.
#[derive(Debug, Clone)]
struct Opened {
    id: u32,
    port: Option<u16>,
}

/// The streams of one forwarded connection, as they open.
#[derive(Default)]
struct Pair {
    error: Option<Opened>,
    data: Option<Opened>,
}

/// Serves one SPDY session: accepts the client's streams, pairs them, forwards each pair, and
/// ends every connection when the session ends.
async fn session(target: Target, mut bytes_in: mpsc::Receiver<Vec<u8>>, frames_out: mpsc::Sender<Vec<u8>>) {
    let target = Arc::new(target);
    let mut decoder = Decoder::default();
    let mut encoder = Encoder::default();
    let (out_tx, mut out_rx) = mpsc::channel::<Out>(64);
    let mut pending: HashMap<String, Pair> = HashMap::new();
    // The client's data, by data stream, to its connection.
    let mut inbound: HashMap<u32, mpsc::Sender<Vec<u8>>> = HashMap::new();
    let mut last = 0u32;
    let mut forwards = JoinSet::new();
    loop {
        tokio::select! {
            chunk = bytes_in.recv() => {
                let Some(chunk) = chunk else { break };
                decoder.push(&chunk);
                let mut replies = Vec::new();
                let mut end = false;
                loop {
                    let frame = match decoder.next_frame() {
                        Ok(Some(f)) => f,
                        Ok(None) => break,
                        Err(_) => {
                            end = true;
                            break;
                        }
                    };
                    match frame {
                        Frame::SynStream { id, headers, .. } => {
                            last = last.max(id);
                            let header = |n: &str| headers.iter().find(|(k, _)| k == n).map(|(_, v)| v.as_str());
                            let kind = header("streamtype").unwrap_or("");
                            let open = 2 * forwards.len() + pending.len();
                            if open >= MAX_STREAMS || !matches!(kind, "error" | "data") {
                                replies.push(Encoder::rst_stream(id, spdy::REFUSED_STREAM));
                                continue;
                            }
                            replies.push(encoder.syn_reply(id));
                            // Without a request ID (older clients) the error stream precedes
                            // its data stream by one ID of the client's (odd) sequence.
                            let request = header("requestid").map(str::to_string).unwrap_or_else(|| {
                                if kind == "error" { id.to_string() } else { id.saturating_sub(2).to_string() }
                            });
                            let opened = Opened { id, port: header("port").and_then(|p| p.parse().ok()) };
                            let pair = pending.entry(request.clone()).or_default();
                            if kind == "error" { pair.error = Some(opened) } else { pair.data = Some(opened) }
                            if let (Some(_), Some(_)) = (&pair.error, &pair.data)
                                && let Some(Pair { error: Some(error), data: Some(data) }) = pending.remove(&request)
                            {
                                let (tx, rx) = mpsc::channel(STREAM_BACKLOG);
                                inbound.insert(data.id, tx);
                                forwards.spawn(forward(target.clone(), error, data, rx, out_tx.clone()));
                            }
                        }
                        Frame::Data { id, fin, data } => {
                            // Never waited on: one slow pod connection must not hold up the
                            // session's other connections, its pings, or the pod's answers.
                            // A connection whose backlog is full is reset.
                            if let Some(tx) = inbound.get(&id) {
                                match (data.is_empty(), tx.try_send(data)) {
                                    (true, _) | (false, Ok(())) => {}
                                    (false, Err(mpsc::error::TrySendError::Full(_))) => {
                                        inbound.remove(&id);
                                        replies.push(Encoder::rst_stream(id, spdy::FLOW_CONTROL_ERROR));
                                    }
                                    (false, Err(mpsc::error::TrySendError::Closed(_))) => {
                                        inbound.remove(&id);
                                    }
                                }
                                if fin {
                                    inbound.remove(&id);
                                }
                            }
                        }
                        Frame::RstStream { id, .. } => {
                            inbound.remove(&id);
                        }
                        Frame::Ping(id) => replies.push(Encoder::ping(id)),
                        Frame::GoAway => end = true,
                        Frame::SynReply { .. } | Frame::Ignored => {}
                    }
                }
                for r in replies {
                    if frames_out.send(r).await.is_err() {
                        end = true;
                    }
                }
                if end {
                    let _ = frames_out.send(Encoder::go_away(last)).await;
                    break;
                }
            }
            Some(out) = out_rx.recv() => {
                let Out::Data { id, data, fin } = out;
                if frames_out.send(Encoder::data(id, &data, fin)).await.is_err() {
                    break;
                }
            }
            Some(_) = forwards.join_next(), if !forwards.is_empty() => {}
        }
    }
    // The session is over: so is every connection it carried.
    forwards.abort_all();
}

/// Forwards one connection: connects to the pod's port and carries bytes until both sides
/// are done, or tells the client on the error stream why it could not.
async fn forward(
    target: Arc<Target>,
    error: Opened,
    data: Opened,
    mut from_client: mpsc::Receiver<Vec<u8>>,
    out: mpsc::Sender<Out>,
) {
    let port = data.port.or(error.port).filter(|p| *p > 0);
    let connected = match port {
        Some(port) => target.state.cluster.node().connect(&target.uid, port).await,
        None => Err("a port between 1 and 65535 is required".to_string()),
    };
    let stream = match connected {
        Ok(c) => c,
        Err(e) => {
            let message = format!(
                // The kubelet's words; its streaming server knows no UID, so none is given.
                "error forwarding port {} to pod {}, uid : {e}",
                port.map_or_else(String::new, |p| p.to_string()),
                target.pod
            );
            let _ = out.send(Out::Data { id: error.id, data: message.into_bytes(), fin: true }).await;
            let _ = out.send(Out::Data { id: data.id, data: Vec::new(), fin: true }).await;
            return;
        }
    };
    let (mut r, mut w) = stream.into_split();
    // The client's end of its data (FIN or reset) half-closes the connection to the pod; the
    // pod's end of its data ends the forwarded connection.
    let to_pod = async {
        while let Some(chunk) = from_client.recv().await {
            if w.write_all(&chunk).await.is_err() {
                break;
            }
        }
        let _ = w.shutdown().await;
    };
    let from_pod = async {
        let mut buf = vec![0u8; CHUNK];
        loop {
            match r.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if out.send(Out::Data { id: data.id, data: buf[..n].to_vec(), fin: false }).await.is_err() {
                        return;
                    }
                }
            }
        }
        let _ = out.send(Out::Data { id: data.id, data: Vec::new(), fin: true }).await;
    };
    tokio::select! {
        () = from_pod => {}
        () = async { to_pod.await; std::future::pending::<()>().await } => {}
    }
    let _ = out.send(Out::Data { id: error.id, data: Vec::new(), fin: true }).await;
}
