//! Servers the tests run on a pod's loopback, for probes busybox cannot answer: a gRPC health
//! server and an HTTPS server. Their sockets are opened inside the pod's network namespace and
//! served from the test process.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::os::fd::AsFd;
use std::path::Path;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};

/// A listener on `127.0.0.1:port` inside the network namespace at `netns`.
pub fn listen_in(netns: &Path, port: u16) -> TcpListener {
    let netns = netns.to_path_buf();
    std::thread::spawn(move || {
        let ns = std::fs::File::open(&netns).expect("the pod's network namespace exists");
        rustix::thread::move_into_link_name_space(ns.as_fd(), Some(rustix::thread::LinkNameSpaceType::Network))
            .expect("setns");
        TcpListener::bind(("127.0.0.1", port)).expect("bind in the pod")
    })
    .join()
    .expect("the listener thread")
}

/// Serves `grpc.health.v1.Health/Check`: the service `""` is SERVING, `"db"` is NOT_SERVING, any
/// other is NOT_FOUND, as grpc-go's health server answers.
pub fn grpc_health(listener: TcpListener) {
    listener.set_nonblocking(true).unwrap();
    let listener = tokio::net::TcpListener::from_std(listener).unwrap();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let Ok(mut conn) = h2::server::handshake(socket).await else { return };
                while let Some(Ok((request, mut respond))) = conn.accept().await {
                    tokio::spawn(async move {
                        let mut body = request.into_body();
                        let mut data = BytesMut::new();
                        while let Some(Ok(chunk)) = body.data().await {
                            let _ = body.flow_control().release_capacity(chunk.len());
                            data.extend_from_slice(&chunk);
                        }
                        // HealthCheckRequest: an optional field 1 (the service name).
                        let service =
                            data.get(7..).map(|s| String::from_utf8_lossy(s).into_owned()).unwrap_or_default();
                        let head =
                            http::Response::builder().header("content-type", "application/grpc").body(()).unwrap();
                        let status = match service.as_str() {
                            "" => Some(1u8),
                            "db" => Some(2),
                            _ => None,
                        };
                        let Some(status) = status else {
                            let head = http::Response::builder()
                                .header("content-type", "application/grpc")
                                .header("grpc-status", "5")
                                .header("grpc-message", "unknown%20service")
                                .body(())
                                .unwrap();
                            let _ = respond.send_response(head, true);
                            return;
                        };
                        let Ok(mut send) = respond.send_response(head, false) else { return };
                        let _ = send.send_data(Bytes::from(vec![0, 0, 0, 0, 2, 0x08, status]), false);
                        let mut trailers = http::HeaderMap::new();
                        trailers.insert("grpc-status", http::HeaderValue::from_static("0"));
                        let _ = send.send_trailers(trailers);
                    });
                }
            });
        }
    });
}

/// Serves HTTPS with a self-signed certificate: `200 ok` for every request.
pub fn https(listener: TcpListener) {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(cert.signing_key.serialize_der().into());
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.cert.der().clone()], key)
        .unwrap();
    let config = Arc::new(config);
    std::thread::spawn(move || {
        for socket in listener.incoming().flatten() {
            let Ok(conn) = rustls::ServerConnection::new(config.clone()) else { continue };
            let mut tls = rustls::StreamOwned::new(conn, socket);
            let mut buf = [0u8; 4096];
            let mut request = Vec::new();
            while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                match tls.read(&mut buf) {
                    Ok(n) if n > 0 => request.extend_from_slice(&buf[..n]),
                    _ => break,
                }
            }
            let _ = tls.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok");
            tls.conn.send_close_notify();
            let _ = tls.flush();
        }
    });
}
