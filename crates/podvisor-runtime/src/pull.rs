//! Pulling images from OCI and Docker registries into the [`ImageStore`], with credentials
//! from the Docker config file and plain HTTP for registries named insecure. Concurrent pulls
//! of one reference are one pull.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use base64::Engine;
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::manifest::{IMAGE_DOCKER_LAYER_GZIP_MEDIA_TYPE, IMAGE_LAYER_GZIP_MEDIA_TYPE, IMAGE_LAYER_MEDIA_TYPE};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use tokio::sync::OnceCell;

use crate::image::{Image, ImageError, ImageStore, normalize};

/// Why a pull failed. The message is what the kubelet shows after `Failed to pull image`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PullError {
    /// A pull of the same image panicked while this one waited for it.
    #[error("pull state poisoned")]
    Poisoned,
    /// The reference does not parse.
    #[error("invalid reference {reference:?}: {message}")]
    Reference {
        /// The normalised reference.
        reference: String,
        /// Why.
        message: String,
    },
    /// The registry could not be reached, refused, or sent something unusable.
    #[error("failed to pull and unpack image {reference:?}: {message}")]
    Registry {
        /// The normalised reference.
        reference: String,
        /// Why.
        message: String,
    },
    /// The layers came but could not be stored.
    #[error("failed to unpack image: {0}")]
    Unpack(String),
    /// The unpacking task ended abnormally.
    #[error("unpacking the image stopped: {0}")]
    Task(String),
}

/// An error with the causes under it (`error sending request: client error (Connect): dns
/// error: …`): the first line of an HTTP client's error rarely says what went wrong on the
/// network. A cause its parent already quotes is not repeated.
fn with_causes(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    // Chains are short; the bound keeps a cyclic one from looping.
    for _ in 0..16 {
        let Some(c) = cause else { break };
        let line = c.to_string();
        if !text.contains(&line) {
            text.push_str(": ");
            text.push_str(&line);
        }
        cause = c.source();
    }
    text
}

/// How to reach registries.
#[derive(Debug, Clone, Default)]
pub struct PullSettings {
    /// Registries (`host:port`) spoken to over plain HTTP.
    pub insecure: Vec<String>,
    /// The Docker config file with credentials (`$DOCKER_CONFIG/config.json` or
    /// `~/.docker/config.json` when not given).
    pub docker_config: Option<PathBuf>,
}

/// The result of one pull, shared by everyone who asked for it while it ran.
type Shared = OnceCell<Result<Image, PullError>>;

/// Pulls images, one pull per reference at a time.
pub struct Puller {
    /// Made at the first pull: a registry client loads the machine's root certificates, which
    /// costs milliseconds that a node whose images are all local should not pay at its start.
    client: std::sync::OnceLock<Client>,
    settings: PullSettings,
    inflight: Mutex<HashMap<String, Arc<Shared>>>,
}

/// The registry host a normalised reference names (`docker.io` for Docker Hub).
fn registry(normalized: &str) -> &str {
    normalized.split('/').next().unwrap_or(normalized)
}

fn docker_config_path(settings: &PullSettings) -> Option<PathBuf> {
    settings.docker_config.clone().or_else(|| {
        std::env::var_os("DOCKER_CONFIG")
            .map(|d| PathBuf::from(d).join("config.json"))
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".docker/config.json")))
    })
}

/// The credentials for `registry` in a Docker config file (`auths.<registry>.auth`, base64 of
/// `user:password`; Docker Hub is also found under `https://index.docker.io/v1/`).
pub fn credentials(config: &Path, registry: &str) -> Option<(String, String)> {
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(config).ok()?).ok()?;
    let auths = json.get("auths")?.as_object()?;
    let keys: Vec<String> = if registry == "docker.io" {
        vec!["https://index.docker.io/v1/".into(), "docker.io".into(), "index.docker.io".into()]
    } else {
        vec![registry.to_string(), format!("https://{registry}"), format!("http://{registry}")]
    };
    let entry = keys.iter().find_map(|k| auths.get(k))?;
    if let (Some(u), Some(p)) =
        (entry.get("username").and_then(|v| v.as_str()), entry.get("password").and_then(|v| v.as_str()))
    {
        return Some((u.to_string(), p.to_string()));
    }
    let decoded = base64::engine::general_purpose::STANDARD.decode(entry.get("auth")?.as_str()?).ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (u, p) = text.split_once(':')?;
    Some((u.to_string(), p.to_string()))
}

impl Puller {
    /// A puller with these settings.
    pub fn new(settings: PullSettings) -> Puller {
        Puller { client: std::sync::OnceLock::new(), settings, inflight: Mutex::new(HashMap::new()) }
    }

    fn client(&self) -> &Client {
        self.client.get_or_init(|| {
            let protocol = if self.settings.insecure.is_empty() {
                ClientProtocol::Https
            } else {
                ClientProtocol::HttpsExcept(self.settings.insecure.clone())
            };
            Client::new(ClientConfig { protocol, ..Default::default() })
        })
    }

    /// Pulls `reference` into `store`. A pull of a reference already being pulled waits for
    /// that pull and shares its result.
    pub async fn pull(&self, store: &ImageStore, reference: &str) -> Result<Image, PullError> {
        let key = normalize(reference);
        let cell = {
            let mut inflight = self.inflight.lock().map_err(|_| PullError::Poisoned)?;
            inflight.entry(key.clone()).or_default().clone()
        };
        let result = cell.get_or_init(|| self.pull_now(store, key.clone())).await.clone();
        if let Ok(mut inflight) = self.inflight.lock()
            && inflight.get(&key).is_some_and(|c| Arc::ptr_eq(c, &cell))
        {
            inflight.remove(&key);
        }
        result
    }

    async fn pull_now(&self, store: &ImageStore, normalized: String) -> Result<Image, PullError> {
        let r: Reference = normalized.parse().map_err(|e: oci_client::ParseError| PullError::Reference {
            reference: normalized.clone(),
            message: e.to_string(),
        })?;
        let auth = docker_config_path(&self.settings)
            .and_then(|c| credentials(&c, registry(&normalized)))
            .map(|(u, p)| RegistryAuth::Basic(u, p))
            .unwrap_or(RegistryAuth::Anonymous);
        let data = self
            .client()
            .pull(
                &r,
                &auth,
                vec![IMAGE_LAYER_GZIP_MEDIA_TYPE, IMAGE_DOCKER_LAYER_GZIP_MEDIA_TYPE, IMAGE_LAYER_MEDIA_TYPE],
            )
            .await
            .map_err(|e| PullError::Registry { reference: normalized.clone(), message: with_causes(&e) })?;
        let store = store.clone();
        let origin = PathBuf::from(&normalized);
        tokio::task::spawn_blocking(move || {
            let layers = data.layers.into_iter().map(|l| Ok::<_, ImageError>(l.data.to_vec()));
            store.import(&data.config.data, layers, std::slice::from_ref(&normalized), &origin).map(|(image, _)| image)
        })
        .await
        .map_err(|e| PullError::Task(e.to_string()))?
        .map_err(|e| PullError::Unpack(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_come_from_the_docker_config_file() {
        let dir = std::env::temp_dir().join(format!("podvisor-creds-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("config.json");
        let auth = base64::engine::general_purpose::STANDARD.encode("alice:pw");
        std::fs::write(
            &file,
            serde_json::json!({"auths": {
                "https://index.docker.io/v1/": {"auth": auth},
                "registry.example:5000": {"username": "bob", "password": "x"}
            }})
            .to_string(),
        )
        .unwrap();
        assert_eq!(credentials(&file, "docker.io"), Some(("alice".into(), "pw".into())));
        assert_eq!(credentials(&file, "registry.example:5000"), Some(("bob".into(), "x".into())));
        assert_eq!(credentials(&file, "quay.io"), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_registry_of_a_normalised_reference() {
        assert_eq!(registry(&normalize("busybox")), "docker.io");
        assert_eq!(registry(&normalize("127.0.0.1:5000/busybox:1.36")), "127.0.0.1:5000");
    }
}
