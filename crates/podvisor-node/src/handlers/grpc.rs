//! `grpc` probes: one `grpc.health.v1.Health/Check` call over plaintext HTTP/2 to the pod's
//! loopback, worded as the kubelet words its results.

use std::net::TcpStream;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use k8s_openapi::api::core::v1::GRPCAction;

use podvisor_engine::go_duration;

use super::{Outcome, Target, in_netns, net_error};

/// The health service's status names, by their protobuf number.
const STATUSES: [&str; 4] = ["UNKNOWN", "SERVING", "NOT_SERVING", "SERVICE_UNKNOWN"];

/// Runs the health check `a` describes, within `timeout`.
pub(crate) async fn grpc(to: &Target, a: &GRPCAction, timeout: Duration) -> Outcome {
    let Ok(port) = u16::try_from(a.port) else { return Outcome::Failed(format!("invalid port {}", a.port)) };
    let target = format!("{}:{port}", to.ip);
    let service = a.service.clone().unwrap_or_default();
    let connect = {
        let target = target.clone();
        let ip = to.ip.clone();
        in_netns(to.netns.clone(), move || {
            let addr = super::addr(None, &ip, port)?;
            let s = TcpStream::connect_timeout(&addr, timeout).map_err(|e| {
                format!("error: failed to connect service at {target:?}: dial tcp {addr}: connect: {}", net_error(&e))
            })?;
            s.set_nonblocking(true).map_err(|e| e.to_string())?;
            Ok(s)
        })
    };
    let within = go_duration(timeout);
    let call = async {
        let socket = tokio::net::TcpStream::from_std(connect.await?).map_err(|e| e.to_string())?;
        check(socket, &target, &service).await
    };
    match tokio::time::timeout(timeout, call).await {
        Err(_) => Outcome::Failed(format!("timeout: health rpc did not complete within {within}")),
        Ok(Err(e)) => Outcome::Failed(e),
        Ok(Ok(1)) => Outcome::Ok,
        Ok(Ok(n)) => {
            let name = STATUSES.get(n as usize).map_or_else(|| n.to_string(), |s| s.to_string());
            Outcome::Failed(format!("service unhealthy (responded with {name:?})"))
        }
    }
}

/// The call itself; the serving status's number, or the failure in the kubelet's words.
async fn check(socket: tokio::net::TcpStream, target: &str, service: &str) -> Result<u64, String> {
    let rpc_failed = |e: &dyn std::fmt::Display| format!("error: health rpc probe failed: {e}");
    let (client, connection) = h2::client::handshake(socket).await.map_err(|e| rpc_failed(&e))?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    let request = http::Request::post(format!("http://{target}/grpc.health.v1.Health/Check"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .header("user-agent", "kube-probe/1.35")
        .body(())
        .map_err(|e| rpc_failed(&e))?;
    let mut client = client.ready().await.map_err(|e| rpc_failed(&e))?;
    let (response, mut send) = client.send_request(request, false).map_err(|e| rpc_failed(&e))?;
    send.send_data(frame(&request_message(service)), true).map_err(|e| rpc_failed(&e))?;
    let response = response.await.map_err(|e| rpc_failed(&e))?;
    let (head, mut body) = response.into_parts();
    // A failed call may answer with trailers only: grpc-status among the headers.
    let mut trailers = head.headers.clone();
    let mut data = BytesMut::new();
    if !trailers.contains_key("grpc-status") {
        while let Some(chunk) = body.data().await {
            let chunk = chunk.map_err(|e| rpc_failed(&e))?;
            let _ = body.flow_control().release_capacity(chunk.len());
            data.extend_from_slice(&chunk);
        }
        trailers = body.trailers().await.map_err(|e| rpc_failed(&e))?.unwrap_or_default();
    }
    let text = |name: &str| trailers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    let code: u32 = text("grpc-status").parse().unwrap_or(2);
    let message = percent_decode(&text("grpc-message"));
    match code {
        0 => {}
        12 => {
            return Err(format!(
                "this server does not implement the grpc health protocol (grpc.health.v1.Health): {message}"
            ));
        }
        _ => return Err(rpc_failed(&format!("rpc error: code = {} desc = {message}", code_name(code)))),
    }
    let message = data.get(5..).ok_or_else(|| rpc_failed(&"rpc error: code = Internal desc = no response message"))?;
    Ok(serving_status(message))
}

/// A gRPC message frame: not compressed, the length, the message.
fn frame(message: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(5 + message.len());
    out.extend_from_slice(&[0]);
    out.extend_from_slice(&(message.len() as u32).to_be_bytes());
    out.extend_from_slice(message);
    out.freeze()
}

/// `HealthCheckRequest { service }` in protobuf: field 1, a string, left out when empty.
fn request_message(service: &str) -> Vec<u8> {
    let mut out = Vec::new();
    if !service.is_empty() {
        out.push(0x0a);
        prost::encoding::encode_varint(service.len() as u64, &mut out);
        out.extend_from_slice(service.as_bytes());
    }
    out
}

/// `HealthCheckResponse.status` (field 1, a varint); 0 (UNKNOWN) when absent.
fn serving_status(mut msg: &[u8]) -> u64 {
    let mut status = 0;
    let read_varint = |buf: &mut &[u8]| -> Option<u64> { prost::encoding::decode_varint(buf).ok() };
    while let Some(key) = read_varint(&mut msg) {
        let value = match key & 7 {
            0 => read_varint(&mut msg),
            1 => msg.get(8..).map(|r| msg = r).map(|_| 0),
            2 => read_varint(&mut msg).and_then(|len| msg.get(len as usize..).map(|r| msg = r)).map(|_| 0),
            5 => msg.get(4..).map(|r| msg = r).map(|_| 0),
            _ => None,
        };
        match value {
            Some(v) if key == 0x08 => status = v,
            Some(_) => {}
            None => break,
        }
    }
    status
}

/// gRPC's name of a status code, as Go's `codes.Code` prints it.
fn code_name(code: u32) -> String {
    const NAMES: [&str; 17] = [
        "OK",
        "Canceled",
        "Unknown",
        "InvalidArgument",
        "DeadlineExceeded",
        "NotFound",
        "AlreadyExists",
        "PermissionDenied",
        "ResourceExhausted",
        "FailedPrecondition",
        "Aborted",
        "OutOfRange",
        "Unimplemented",
        "Internal",
        "Unavailable",
        "DataLoss",
        "Unauthenticated",
    ];
    NAMES.get(code as usize).map_or_else(|| format!("Code({code})"), |n| n.to_string())
}

/// `grpc-message` is percent-encoded.
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        match (b[i], b.get(i + 1).copied().and_then(hex), b.get(i + 2).copied().and_then(hex)) {
            (b'%', Some(h), Some(l)) => {
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            (c, _, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_encode_and_decode_as_protobuf() {
        assert_eq!(request_message(""), b"");
        assert_eq!(request_message("db"), b"\x0a\x02db");
        assert_eq!(&frame(b"ab")[..], b"\x00\x00\x00\x00\x02ab");
        assert_eq!(serving_status(b"\x08\x01"), 1);
        assert_eq!(serving_status(b"\x08\x02"), 2);
        assert_eq!(serving_status(b""), 0, "a missing status is UNKNOWN");
        assert_eq!(serving_status(b"\x12\x01x\x08\x01"), 1, "unknown fields are skipped");
        assert_eq!(serving_status(b"\x08"), 0, "a cut message stops the parse");
        let long = "s".repeat(300);
        assert_eq!(&request_message(&long)[..3], [0x0a, 0xac, 0x02], "a length of 300 as a varint");
    }

    #[test]
    fn statuses_are_worded_as_go_prints_them() {
        assert_eq!(code_name(5), "NotFound");
        assert_eq!(code_name(99), "Code(99)");
        assert_eq!(percent_decode("unknown%20service%"), "unknown service%");
    }
}
