//! `httpGet` probes and hooks, as the kubelet sends them: a GET from inside the pod's network
//! namespace, over HTTP or HTTPS (no certificate check), with the probe's headers.
//!
//! A probe passes on a status from 200 to 399. It follows redirects only to the same host; a
//! redirect elsewhere is not followed and passes with a warning that quotes the response body
//! (the `ProbeWarning` event). A hook cares only that a response came, whatever its status.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Container, HTTPGetAction};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, ClientConnection, DigitallySignedStruct, SignatureScheme, StreamOwned};

use super::{Outcome, Target, addr, in_netns, net_error, port};

/// Who sends the request: the rules for redirects and status codes differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Purpose {
    /// A probe: 200–399 passes; redirects followed to the same host only.
    Probe,
    /// A lifecycle hook: any response will do; redirects followed anywhere.
    Hook,
}

/// The most of a response body that is read (and quoted in a warning), as the kubelet reads.
const MAX_BODY: usize = 10 * 1024;
/// Redirects followed before giving up.
const MAX_REDIRECTS: usize = 10;

/// Where a request goes.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Url {
    https: bool,
    host: String,
    port: u16,
    /// The path with its query, starting with `/`.
    path: String,
}

impl std::fmt::Display for Url {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let scheme = if self.https { "https" } else { "http" };
        let host = if self.host.contains(':') { format!("[{}]", self.host) } else { self.host.clone() };
        write!(f, "{scheme}://{host}:{}{}", self.port, self.path)
    }
}

impl Url {
    /// The target of a `Location` header, relative to this URL.
    fn join(&self, location: &str) -> Option<Url> {
        let (https, rest) = if let Some(r) = location.strip_prefix("http://") {
            (false, Some(r))
        } else if let Some(r) = location.strip_prefix("https://") {
            (true, Some(r))
        } else if let Some(r) = location.strip_prefix("//") {
            (self.https, Some(r))
        } else {
            (self.https, None)
        };
        let Some(rest) = rest else {
            let path = if location.starts_with('/') {
                location.to_string()
            } else {
                let dir = self.path.split('?').next().unwrap_or("/");
                format!("{}{location}", &dir[..dir.rfind('/').map_or(0, |i| i + 1)])
            };
            return Some(Url { path, ..self.clone() });
        };
        let (authority, path) = match rest.find(['/', '?']) {
            Some(i) if rest.as_bytes()[i] == b'/' => (&rest[..i], rest[i..].to_string()),
            Some(i) => (&rest[..i], format!("/{}", &rest[i..])),
            None => (rest, "/".to_string()),
        };
        let default_port = if https { 443 } else { 80 };
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (h, p) = v6.split_once(']')?;
            (h.to_string(), p.strip_prefix(':').map_or(Some(default_port), |p| p.parse().ok())?)
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h.to_string(), p.parse().ok()?),
                None => (authority.to_string(), default_port),
            }
        };
        Some(Url { https, host, port, path })
    }
}

/// What came back.
struct Response {
    code: u16,
    location: Option<String>,
    body: String,
}

/// `httpGet`, for a probe or a hook.
pub(crate) async fn http(
    to: &Target,
    c: &Container,
    a: &HTTPGetAction,
    timeout: Duration,
    purpose: Purpose,
) -> Outcome {
    let port = match port(c, &a.port) {
        Ok(p) => p,
        Err(e) => return Outcome::Failed(e),
    };
    let url = Url {
        https: a.scheme.as_deref() == Some("HTTPS"),
        host: a.host.clone().filter(|h| !h.is_empty()).unwrap_or_else(|| to.ip.clone()),
        port,
        path: match a.path.as_deref() {
            None | Some("") => "/".into(),
            Some(p) if p.starts_with('/') => p.into(),
            Some(p) => format!("/{p}"),
        },
    };
    let headers: Vec<(String, String)> =
        a.http_headers.iter().flatten().map(|h| (h.name.clone(), h.value.clone())).collect();
    let deadline = Instant::now() + timeout.min(Duration::from_secs(86_400 * 365));
    let first = url.clone();
    let (again, headers_again) = (url.clone(), headers.clone());
    let result = in_netns(to.netns.clone(), move || follow(url, &headers, deadline, purpose)).await;
    // A hook (never a probe) whose HTTPS request got a plain HTTP answer is sent again over HTTP,
    // without its Authorization header, as the kubelet does.
    if purpose == Purpose::Hook
        && first.https
        && let Err(e) = &result
        && e.ends_with(HTTP_TO_HTTPS)
    {
        let plain = Url { https: false, ..again };
        let headers: Vec<(String, String)> =
            headers_again.into_iter().filter(|(n, _)| !n.eq_ignore_ascii_case("Authorization")).collect();
        if in_netns(to.netns.clone(), move || follow(plain, &headers, deadline, purpose)).await.is_ok() {
            return Outcome::Warning(format!(
                "request to HTTPS lifecycle hook {}:{} got HTTP response, retry with HTTP succeeded",
                first.host, first.port
            ));
        }
    }
    match (result, purpose) {
        (Err(e), _) => Outcome::Failed(e),
        (Ok(_), Purpose::Hook) => Outcome::Ok,
        (Ok(r), Purpose::Probe) if (200..300).contains(&r.code) => Outcome::Ok,
        (Ok(r), Purpose::Probe) if (300..400).contains(&r.code) => {
            Outcome::Warning(format!("Probe terminated redirects, Response body: {}", r.body.trim_end()))
        }
        (Ok(r), Purpose::Probe) => Outcome::Failed(format!("HTTP probe failed with statuscode: {}", r.code)),
    }
}

/// Sends the GET and follows redirects as `purpose` allows.
fn follow(mut url: Url, headers: &[(String, String)], deadline: Instant, purpose: Purpose) -> Result<Response, String> {
    let first_host = url.host.clone();
    let mut sent = 0;
    loop {
        // A header `Host` the user gave names the first request only.
        let own_host = if sent == 0 { headers } else { &[] };
        let response = get(&url, headers, own_host, deadline)?;
        sent += 1;
        let next = match (&response.location, matches!(response.code, 301 | 302 | 303 | 307 | 308)) {
            (Some(loc), true) => url.join(loc).ok_or_else(|| format!("Get \"{url}\": bad Location {loc:?}"))?,
            _ => return Ok(response),
        };
        if purpose == Purpose::Probe && next.host != first_host {
            return Ok(response);
        }
        if sent >= MAX_REDIRECTS {
            return Err(format!("Get \"{next}\": stopped after {MAX_REDIRECTS} redirects"));
        }
        url = next;
    }
}

/// A connection, plain or TLS.
enum Conn {
    Plain(TcpStream),
    Tls(Box<StreamOwned<ClientConnection, Peek>>),
}

/// A socket that keeps the first bytes it read: a server that answers a TLS hello in plain
/// HTTP is told by them.
struct Peek {
    tcp: TcpStream,
    first: Vec<u8>,
}

impl Read for Peek {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.tcp.read(buf)?;
        let room = 5usize.saturating_sub(self.first.len());
        self.first.extend_from_slice(&buf[..n.min(room)]);
        Ok(n)
    }
}

impl Write for Peek {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.tcp.write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.tcp.flush()
    }
}

/// Go's error for a TLS connection the server answered in plain HTTP.
pub(crate) const HTTP_TO_HTTPS: &str = "http: server gave HTTP response to HTTPS client";

impl Conn {
    fn socket(&self) -> &TcpStream {
        match self {
            Conn::Plain(s) => s,
            Conn::Tls(s) => &s.sock.tcp,
        }
    }

    /// Whether the server answered the TLS hello with plain HTTP.
    fn got_http(&self) -> bool {
        matches!(self, Conn::Tls(s) if s.sock.first.starts_with(b"HTTP/"))
    }
}

impl Read for Conn {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Conn::Plain(s) => s.read(buf),
            Conn::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Conn {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Conn::Plain(s) => s.write(buf),
            Conn::Tls(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Conn::Plain(s) => s.flush(),
            Conn::Tls(s) => s.flush(),
        }
    }
}

/// One GET, read up to [`MAX_BODY`] of the body.
fn get(
    url: &Url,
    headers: &[(String, String)],
    own_host: &[(String, String)],
    deadline: Instant,
) -> Result<Response, String> {
    let remaining = || deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(1));
    let target = addr(Some(&url.host), &url.host, url.port)?;
    let tcp = TcpStream::connect_timeout(&target, remaining())
        .map_err(|e| format!("Get \"{url}\": dial tcp {target}: connect: {}", net_error(&e)))?;
    let mut conn = if url.https {
        let name = ServerName::try_from(url.host.clone()).map_err(|e| format!("Get \"{url}\": {e}"))?;
        let tls = ClientConnection::new(tls_config()?, name).map_err(|e| format!("Get \"{url}\": {e}"))?;
        Conn::Tls(Box::new(StreamOwned::new(tls, Peek { tcp, first: Vec::new() })))
    } else {
        Conn::Plain(tcp)
    };
    let timed_out = |e: &std::io::Error| matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut);
    let fail = |e: std::io::Error| {
        if timed_out(&e) {
            format!("Get \"{url}\": context deadline exceeded (Client.Timeout exceeded while awaiting headers)")
        } else {
            format!("Get \"{url}\": {}", net_error(&e))
        }
    };
    let host = own_host
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("Host"))
        .map(|(_, v)| v.clone())
        .unwrap_or_else(|| format!("{}:{}", target.ip(), url.port));
    let mut request = format!("GET {} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n", url.path);
    for (k, v) in [("User-Agent", "kube-probe/1.35"), ("Accept", "*/*")] {
        if !headers.iter().any(|(n, _)| n.eq_ignore_ascii_case(k)) {
            request.push_str(&format!("{k}: {v}\r\n"));
        }
    }
    for (k, v) in headers.iter().filter(|(n, _)| !n.eq_ignore_ascii_case("Host")) {
        request.push_str(&format!("{k}: {v}\r\n"));
    }
    request.push_str("\r\n");
    let _ = conn.socket().set_write_timeout(Some(remaining()));
    let _ = conn.socket().set_read_timeout(Some(remaining()));
    let plain_answer = |conn: &Conn, e: std::io::Error| {
        if conn.got_http() { format!("Get \"{url}\": {HTTP_TO_HTTPS}") } else { fail(e) }
    };
    if let Err(e) = conn.write_all(request.as_bytes()).and_then(|()| conn.flush()) {
        return Err(plain_answer(&conn, e));
    }
    let mut data = Vec::new();
    let mut buf = [0u8; 4096];
    let mut interim = 0;
    let head_end = loop {
        if let Some(i) = data.windows(4).position(|w| w == b"\r\n\r\n") {
            // An interim answer (100 Continue, 103 Early Hints; not 101) comes before the
            // final one, which Go's client waits for: it is skipped, a bounded number of times.
            if interim < MAX_INTERIM && is_interim(&data[..i]) {
                interim += 1;
                data.drain(..i + 4);
                continue;
            }
            break i + 4;
        }
        if data.len() > 64 * 1024 {
            return Err(format!("Get \"{url}\": net/http: HTTP/1.x transport connection broken: header too long"));
        }
        let _ = conn.socket().set_read_timeout(Some(remaining()));
        match conn.read(&mut buf) {
            Ok(0) => return Err(format!("Get \"{url}\": EOF")),
            Ok(n) => data.extend_from_slice(&buf[..n]),
            Err(e) => return Err(plain_answer(&conn, e)),
        }
    };
    let head = String::from_utf8_lossy(&data[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let code: u16 = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("Get \"{url}\": malformed HTTP response"))?;
    let header = |name: &str| {
        head.split("\r\n").skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim().eq_ignore_ascii_case(name).then(|| v.trim().to_string())
        })
    };
    let chunked = header("Transfer-Encoding").is_some_and(|t| t.eq_ignore_ascii_case("chunked"));
    let length: Option<usize> = header("Content-Length").and_then(|l| l.parse().ok());
    let mut body = data.split_off(head_end);
    let wanted = length.unwrap_or(usize::MAX).min(MAX_BODY + if chunked { 1024 } else { 0 });
    while body.len() < wanted && Instant::now() < deadline {
        let _ = conn.socket().set_read_timeout(Some(remaining()));
        match conn.read(&mut buf) {
            Ok(n) if n > 0 => body.extend_from_slice(&buf[..n]),
            // The end, a TLS close without notify, or the deadline: what came is the body.
            _ => break,
        }
    }
    if chunked {
        body = dechunk(&body);
    }
    body.truncate(length.unwrap_or(MAX_BODY).min(MAX_BODY));
    Ok(Response { code, location: header("Location"), body: String::from_utf8_lossy(&body).into_owned() })
}

/// How many interim (1xx) answers are skipped before the next one counts as final.
const MAX_INTERIM: usize = 5;

/// Whether a response head is an interim 1xx one (101 Switching Protocols is final).
fn is_interim(head: &[u8]) -> bool {
    let line = head.split(|b| *b == b'\r').next().unwrap_or_default();
    let code = String::from_utf8_lossy(line).split_whitespace().nth(1).and_then(|c| c.parse::<u16>().ok());
    code.is_some_and(|c| (100..200).contains(&c) && c != 101)
}

/// The data of a chunked body (as much of it as arrived).
fn dechunk(mut raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(i) = raw.windows(2).position(|w| w == b"\r\n") {
        let size = String::from_utf8_lossy(&raw[..i]);
        let Ok(n) = usize::from_str_radix(size.split(';').next().unwrap_or("").trim(), 16) else { break };
        raw = &raw[i + 2..];
        if n == 0 {
            break;
        }
        out.extend_from_slice(&raw[..n.min(raw.len())]);
        raw = raw.get(n + 2..).unwrap_or_default();
    }
    out
}

/// TLS as the kubelet's probes use it: any certificate is accepted (the handshake's own
/// signatures are still checked).
fn tls_config() -> Result<Arc<ClientConfig>, String> {
    static CONFIG: OnceLock<Result<Arc<ClientConfig>, String>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
            let verifier = Arc::new(AnyCertificate(provider.clone()));
            ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .map(|b| Arc::new(b.dangerous().with_custom_certificate_verifier(verifier).with_no_client_auth()))
                .map_err(|e| format!("TLS: {e}"))
        })
        .clone()
}

#[derive(Debug)]
struct AnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue: an interim 1xx answer was taken as the final one. It is skipped, as Go's client
    /// skips it.
    #[test]
    fn interim_answers_are_skipped() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut req = [0u8; 1024];
            let _ = s.read(&mut req);
            s.write_all(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n").unwrap();
            s.write_all(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 4\r\n\r\nbusy").unwrap();
        });
        let url = Url { https: false, host: "127.0.0.1".into(), port, path: "/".into() };
        let r = get(&url, &[], &[], Instant::now() + Duration::from_secs(5)).unwrap();
        server.join().unwrap();
        assert_eq!((r.code, r.body.as_str()), (503, "busy"));
        assert!(!is_interim(b"HTTP/1.1 101 Switching Protocols"));
    }

    fn url(path: &str) -> Url {
        Url { https: false, host: "127.0.0.1".into(), port: 8080, path: path.into() }
    }

    #[test]
    fn locations_resolve_against_the_request() {
        let base = url("/a/b?x=1");
        assert_eq!(base.join("/healthz"), Some(url("/healthz")));
        assert_eq!(base.join("c"), Some(url("/a/c")));
        assert_eq!(
            base.join("http://0.0.0.0/"),
            Some(Url { https: false, host: "0.0.0.0".into(), port: 80, path: "/".into() })
        );
        assert_eq!(
            base.join("https://127.0.0.1:8443?q"),
            Some(Url { https: true, host: "127.0.0.1".into(), port: 8443, path: "/?q".into() })
        );
        assert_eq!(base.join("//[::1]:81/x"), Some(Url { host: "::1".into(), port: 81, ..url("/x") }));
        assert_eq!(base.join("http://h:notaport/"), None);
        assert_eq!(url("/x").to_string(), "http://127.0.0.1:8080/x");
    }

    #[test]
    fn chunked_bodies_are_decoded() {
        assert_eq!(dechunk(b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\n\r\n"), b"hello world");
        assert_eq!(dechunk(b"a\r\nshort"), b"short");
    }
}
