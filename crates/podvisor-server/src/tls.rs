//! The server's credentials: a CA made on first start, a serving certificate it signs for
//! `127.0.0.1`, `localhost` and the `kubernetes` Service, and a bearer token, all kept (mode
//! 0600) under `<data-dir>/serve/` so that a kubeconfig stays valid across restarts.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// Why the credentials could not be made or read.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file of `<data-dir>/serve/`.
    #[error("{path}: {error}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        error: std::io::Error,
    },
    /// Certificate generation.
    #[error("cannot make the server certificate: {0}")]
    Cert(#[from] rcgen::Error),
    /// A stored certificate or key that does not parse.
    #[error("{0}: not a PEM certificate or key (remove the serve/ directory to make new ones)")]
    Pem(PathBuf),
    /// The TLS configuration.
    #[error("TLS: {0}")]
    Rustls(#[from] rustls::Error),
}

/// What a client needs to reach the server, and what the server serves with.
#[derive(Debug, Clone)]
pub struct Credentials {
    /// The CA certificate (PEM), for the kubeconfig.
    pub ca_pem: String,
    /// The bearer token.
    pub token: String,
    cert_pem: String,
    key_pem: String,
}

fn write_private(path: &Path, text: &str) -> Result<(), TlsError> {
    podvisor_runtime::files::write_private(path, text.as_bytes())
        .map_err(|error| TlsError::Io { path: path.to_path_buf(), error })
}

/// The names the serving certificate is always for: loopback, and the names of the
/// `kubernetes` Service by which pods reach the API. Its cluster IP is added per run.
const SERVING_NAMES: [&str; 6] = [
    "localhost",
    "127.0.0.1",
    "kubernetes",
    "kubernetes.default",
    "kubernetes.default.svc",
    "kubernetes.default.svc.cluster.local",
];

/// The CA's own certificate parameters; the same each time, so that a certificate signed
/// with the kept key verifies against the kept CA certificate.
fn ca_params() -> Result<rcgen::CertificateParams, rcgen::Error> {
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(rcgen::DnType::CommonName, "podvisor-ca");
    ca_params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::DigitalSignature,
        rcgen::KeyUsagePurpose::CrlSign,
    ];
    Ok(ca_params)
}

impl Credentials {
    /// Reads the credentials under `dir`, making what is missing first. With `service_ip`
    /// (the `kubernetes` Service's address this run), the serving certificate is made again,
    /// by the same CA, if it is not for exactly [`SERVING_NAMES`] and that address; without,
    /// an existing one is kept. The token and the CA are kept: a kubeconfig stays valid. A
    /// data directory whose CA key was not kept (an earlier version) gets a new CA.
    pub fn load_or_create(dir: &Path, service_ip: Option<std::net::Ipv4Addr>) -> Result<Credentials, TlsError> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |error| TlsError::Io { path, error }
        };
        {
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(io(dir))?;
        }
        let [ca_crt, ca_key, server_crt, server_key, token_file, names_file] =
            ["ca.crt", "ca.key", "server.crt", "server.key", "token", "server.names"].map(|f| dir.join(f));
        // Made by an earlier version with the umask's mode: keys and the token are secrets.
        for f in [&ca_crt, &ca_key, &server_crt, &server_key, &token_file, &names_file] {
            if f.exists() {
                podvisor_runtime::files::make_private(f).map_err(io(f))?;
            }
        }
        let read = |p: &PathBuf| std::fs::read_to_string(p).map_err(io(p));
        let token = match read(&token_file).map(|t| t.trim().to_string()) {
            Ok(t) if t.len() >= 32 => t,
            _ => {
                let t: String = podvisor_objects::uid::new_uid().chars().filter(char::is_ascii_hexdigit).collect();
                write_private(&token_file, &t)?;
                t
            }
        };
        let (ca_pem, ca_key_pair, new_ca) = if ca_crt.exists() && ca_key.exists() {
            let key = rcgen::KeyPair::from_pem(&read(&ca_key)?).map_err(|_| TlsError::Pem(ca_key.clone()))?;
            (read(&ca_crt)?, key, false)
        } else {
            let key = rcgen::KeyPair::generate()?;
            let key_pem = key.serialize_pem();
            let pem = rcgen::CertifiedIssuer::self_signed(ca_params()?, key)?.pem();
            let key = rcgen::KeyPair::from_pem(&key_pem).map_err(|_| TlsError::Pem(ca_key.clone()))?;
            write_private(&ca_key, &key_pem)?;
            write_private(&ca_crt, &pem)?;
            (pem, key, true)
        };
        let mut names: Vec<String> = SERVING_NAMES.map(str::to_string).to_vec();
        names.extend(service_ip.map(|ip| ip.to_string()));
        let have = std::fs::read_to_string(&names_file).unwrap_or_default();
        let keep =
            !new_ca && server_crt.exists() && server_key.exists() && (service_ip.is_none() || have == names.join("\n"));
        if keep {
            return Ok(Credentials { ca_pem, token, cert_pem: read(&server_crt)?, key_pem: read(&server_key)? });
        }
        let issuer = rcgen::Issuer::new(ca_params()?, ca_key_pair);
        let key = rcgen::KeyPair::generate()?;
        let mut params = rcgen::CertificateParams::new(names.clone())?;
        params.distinguished_name.push(rcgen::DnType::CommonName, "podvisor");
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        let cert = params.signed_by(&key, &issuer)?;
        let c = Credentials { ca_pem, token, cert_pem: cert.pem(), key_pem: key.serialize_pem() };
        write_private(&server_crt, &c.cert_pem)?;
        write_private(&server_key, &c.key_pem)?;
        write_private(&names_file, &names.join("\n"))?;
        Ok(c)
    }

    /// The TLS configuration to serve with (HTTP/1.1 only: no ALPN).
    pub fn server_config(&self, dir: &Path) -> Result<Arc<rustls::ServerConfig>, TlsError> {
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(self.cert_pem.as_bytes())
            .collect::<Result<_, _>>()
            .map_err(|_| TlsError::Pem(dir.join("server.crt")))?;
        let key = PrivateKeyDer::from_pem_slice(self.key_pem.as_bytes())
            .map_err(|_| TlsError::Pem(dir.join("server.key")))?;
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(certs, key)?;
        Ok(Arc::new(config))
    }

    /// A kubeconfig for the server at `server` (`https://127.0.0.1:PORT`), with one context
    /// named `podvisor`.
    pub fn kubeconfig(&self, server: &str) -> String {
        use base64::Engine;
        let ca = base64::engine::general_purpose::STANDARD.encode(self.ca_pem.as_bytes());
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: podvisor\n  cluster:\n    server: {server}\n    certificate-authority-data: {ca}\nusers:\n- name: podvisor\n  user:\n    token: {}\ncontexts:\n- name: podvisor\n  context:\n    cluster: podvisor\n    user: podvisor\n    namespace: default\ncurrent-context: podvisor\n",
            self.token
        )
    }
}
