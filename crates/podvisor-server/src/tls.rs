//! The server's credentials: a CA made on first start, a serving certificate it signs for
//! `127.0.0.1` and `localhost`, and a bearer token, all kept (mode 0600) under
//! `<data-dir>/serve/` so that a kubeconfig stays valid across restarts.

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

impl Credentials {
    /// Reads the credentials under `dir`, making them first when absent.
    pub fn load_or_create(dir: &Path) -> Result<Credentials, TlsError> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |error| TlsError::Io { path, error }
        };
        {
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(io(dir))?;
        }
        let files = ["ca.crt", "server.crt", "server.key", "token"].map(|f| dir.join(f));
        if files.iter().all(|f| f.exists()) {
            // Made by an earlier version with the umask's mode: the key and token are secrets.
            for f in &files {
                podvisor_runtime::files::make_private(f).map_err(io(f))?;
            }
            let read = |p: &PathBuf| std::fs::read_to_string(p).map_err(io(p));
            return Ok(Credentials {
                ca_pem: read(&files[0])?,
                cert_pem: read(&files[1])?,
                key_pem: read(&files[2])?,
                token: read(&files[3])?.trim().to_string(),
            });
        }
        let ca_key = rcgen::KeyPair::generate()?;
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new())?;
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params.distinguished_name.push(rcgen::DnType::CommonName, "podvisor-ca");
        ca_params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
            rcgen::KeyUsagePurpose::CrlSign,
        ];
        let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key)?;
        let key = rcgen::KeyPair::generate()?;
        let mut params = rcgen::CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])?;
        params.distinguished_name.push(rcgen::DnType::CommonName, "podvisor");
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        let cert = params.signed_by(&key, &ca)?;
        let token: String = podvisor_objects::uid::new_uid().chars().filter(char::is_ascii_hexdigit).collect();
        let c = Credentials { ca_pem: ca.pem(), cert_pem: cert.pem(), key_pem: key.serialize_pem(), token };
        write_private(&files[0], &c.ca_pem)?;
        write_private(&files[1], &c.cert_pem)?;
        write_private(&files[2], &c.key_pem)?;
        write_private(&files[3], &c.token)?;
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
