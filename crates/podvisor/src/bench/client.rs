//! A small HTTPS client for `podvisor serve`, as the benchmark needs it: requests on one kept-alive
//! connection, and a watch read event by event. It checks the server against the CA that serve
//! made and sends its bearer token, as kubectl does.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};
use serde_json::Value;

type Tls = BufReader<StreamOwned<ClientConnection, TcpStream>>;

/// How to reach the server.
#[derive(Clone)]
pub(crate) struct Server {
    addr: String,
    token: String,
    tls: Arc<ClientConfig>,
}

impl Server {
    /// The server at `addr` (`127.0.0.1:PORT`), with the credentials serve keeps in `dir`.
    pub fn new(addr: &str, dir: &Path) -> anyhow::Result<Server> {
        let mut roots = RootCertStore::empty();
        let ca = CertificateDer::from_pem_file(dir.join("ca.crt"))
            .map_err(|e| anyhow::anyhow!("{}: {e}", dir.join("ca.crt").display()))?;
        roots.add(ca)?;
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let tls = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let token = std::fs::read_to_string(dir.join("token"))?.trim().to_string();
        Ok(Server { addr: addr.to_string(), token, tls: Arc::new(tls) })
    }

    fn connect(&self) -> anyhow::Result<Tls> {
        let tcp = TcpStream::connect(&self.addr)?;
        tcp.set_nodelay(true)?;
        tcp.set_read_timeout(Some(Duration::from_secs(60)))?;
        let host = self.addr.rsplit_once(':').map_or(self.addr.as_str(), |(h, _)| h).to_string();
        let conn = ClientConnection::new(self.tls.clone(), ServerName::try_from(host)?)?;
        Ok(BufReader::new(StreamOwned::new(conn, tcp)))
    }

    fn head(&self, method: &str, path: &str, body: &[u8]) -> Vec<u8> {
        let mut req = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\nAccept: application/json\r\n",
            self.addr, self.token
        );
        if !body.is_empty() {
            req.push_str(&format!("Content-Type: application/json\r\nContent-Length: {}\r\n", body.len()));
        }
        req.push_str("\r\n");
        let mut out = req.into_bytes();
        out.extend_from_slice(body);
        out
    }
}

/// Reads a response's status line and headers; the status and whether the body is chunked, or
/// its length.
fn read_head(r: &mut Tls) -> anyhow::Result<(u16, Option<usize>)> {
    let mut line = String::new();
    r.read_line(&mut line)?;
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| anyhow::anyhow!("malformed response from serve: {line:?}"))?;
    let mut length = None;
    loop {
        line.clear();
        r.read_line(&mut line)?;
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((k, v)) = l.split_once(':')
            && k.eq_ignore_ascii_case("content-length")
        {
            length = v.trim().parse().ok();
        }
    }
    Ok((status, length))
}

/// Reads one chunk of a chunked body; `None` at its end.
fn read_chunk(r: &mut Tls) -> anyhow::Result<Option<Vec<u8>>> {
    let mut line = String::new();
    if r.read_line(&mut line)? == 0 {
        return Ok(None);
    }
    let size = usize::from_str_radix(line.trim().split(';').next().unwrap_or(""), 16)?;
    let mut data = vec![0; size + 2];
    r.read_exact(&mut data)?;
    data.truncate(size);
    Ok((size > 0).then_some(data))
}

/// A kept-alive connection for plain requests.
pub(crate) struct Client {
    server: Server,
    conn: Option<Tls>,
}

impl Client {
    pub fn new(server: &Server) -> Client {
        Client { server: server.clone(), conn: None }
    }

    /// Sends a request; the status and the JSON body.
    pub fn call(&mut self, method: &str, path: &str, body: Option<&Value>) -> anyhow::Result<(u16, Value)> {
        let body = body.map(serde_json::to_vec).transpose()?.unwrap_or_default();
        let conn = match &mut self.conn {
            Some(c) => c,
            None => self.conn.insert(self.server.connect()?),
        };
        conn.get_mut().write_all(&self.server.head(method, path, &body))?;
        conn.get_mut().flush()?;
        let (status, length) = read_head(conn)?;
        let mut data = Vec::new();
        match length {
            Some(n) => {
                data.resize(n, 0);
                conn.read_exact(&mut data)?;
            }
            None => {
                while let Some(chunk) = read_chunk(conn)? {
                    data.extend_from_slice(&chunk);
                }
            }
        }
        Ok((status, serde_json::from_slice(&data).unwrap_or(Value::Null)))
    }
}

/// A watch: events as they come.
pub(crate) struct Watch {
    conn: Tls,
    pending: Vec<u8>,
}

impl Watch {
    /// Watches `path` (a list path, `watch=true` is added).
    pub fn open(server: &Server, path: &str) -> anyhow::Result<Watch> {
        let mut conn = server.connect()?;
        let sep = if path.contains('?') { '&' } else { '?' };
        conn.get_mut().write_all(&server.head("GET", &format!("{path}{sep}watch=true"), &[]))?;
        conn.get_mut().flush()?;
        let (status, _) = read_head(&mut conn)?;
        if status != 200 {
            anyhow::bail!("watch {path}: HTTP {status}");
        }
        Ok(Watch { conn, pending: Vec::new() })
    }

    /// The next event (`{type, object}`), waiting for it.
    pub fn next(&mut self) -> anyhow::Result<Value> {
        loop {
            if let Some(i) = self.pending.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.pending.drain(..=i).collect();
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                return Ok(serde_json::from_slice(&line)?);
            }
            let chunk = read_chunk(&mut self.conn)?.ok_or_else(|| anyhow::anyhow!("the watch ended"))?;
            self.pending.extend_from_slice(&chunk);
        }
    }
}
