//! A local image store: images imported from OCI archives and `docker save` tarballs,
//! unpacked once into a root filesystem that containers of that image share (read-only, under
//! an overlay).

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{Read, Seek};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Image store errors.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// Reading or writing the store failed.
    #[error("{path}: {error}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The error (shown in the message, so not chained as a source).
        error: std::io::Error,
    },
    /// The archive is not an OCI archive or a `docker save` tarball.
    #[error("{path}: not an OCI archive or docker-save tarball: {why}")]
    Format {
        /// The archive.
        path: PathBuf,
        /// What is missing or wrong.
        why: String,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ImageError + '_ {
    move |error| ImageError::Io { path: path.to_path_buf(), error }
}

/// An image's runtime configuration (the parts a container needs).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageConfig {
    /// `ENTRYPOINT`.
    #[serde(default, rename = "Entrypoint")]
    pub entrypoint: Option<Vec<String>>,
    /// `CMD`.
    #[serde(default, rename = "Cmd")]
    pub cmd: Option<Vec<String>>,
    /// `ENV` as `K=V`.
    #[serde(default, rename = "Env")]
    pub env: Option<Vec<String>>,
    /// `WORKDIR`.
    #[serde(default, rename = "WorkingDir")]
    pub working_dir: Option<String>,
    /// `USER`.
    #[serde(default, rename = "User")]
    pub user: Option<String>,
    /// `STOPSIGNAL`.
    #[serde(default, rename = "StopSignal")]
    pub stop_signal: Option<String>,
}

/// An image in the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    /// The image ID (`sha256:` of its config).
    pub id: String,
    /// The unpacked root filesystem (shared, never written to).
    pub rootfs: PathBuf,
    /// Its configuration.
    pub config: ImageConfig,
}

/// Normalises an image reference as Kubernetes does: `busybox:1.36` is
/// `docker.io/library/busybox:1.36`, an untagged name gets `:latest`.
pub fn normalize(reference: &str) -> String {
    let (name, digest) = match reference.split_once('@') {
        Some((n, d)) => (n, Some(d)),
        None => (reference, None),
    };
    let last = name.rsplit('/').next().unwrap_or(name);
    let (repo, tag) = match last.split_once(':') {
        Some((_, t)) => (&name[..name.len() - t.len() - 1], Some(t)),
        None => (name, None),
    };
    let first = repo.split('/').next().unwrap_or(repo);
    let has_registry = repo.contains('/') && (first.contains('.') || first.contains(':') || first == "localhost");
    let repo = match (has_registry, repo.contains('/')) {
        (true, _) => repo.to_string(),
        (false, true) => format!("docker.io/{repo}"),
        (false, false) => format!("docker.io/library/{repo}"),
    };
    match (digest, tag) {
        (Some(d), _) => format!("{repo}@{d}"),
        (None, Some(t)) => format!("{repo}:{t}"),
        (None, None) => format!("{repo}:latest"),
    }
}

/// The file beside an image's `config.json` that holds when it was built (its config's
/// `created`, RFC 3339), when the config says.
pub const CREATED_FILE: &str = "created";

/// The store: `<dir>/images/<id>/{rootfs,config.json,created}` and `<dir>/images/refs.json`.
#[derive(Debug, Clone)]
pub struct ImageStore {
    dir: PathBuf,
}

type Refs = BTreeMap<String, String>;

impl ImageStore {
    /// Opens (creating) the store under a data directory.
    pub fn open(data_dir: &Path) -> Result<Self, ImageError> {
        crate::files::secure_data_dir(data_dir).map_err(|e| ImageError::Io {
            path: data_dir.to_path_buf(),
            error: std::io::Error::new(std::io::ErrorKind::PermissionDenied, e.to_string()),
        })?;
        let dir = data_dir.join("images");
        fs::create_dir_all(&dir).map_err(io(&dir))?;
        Ok(ImageStore { dir })
    }

    fn refs(&self) -> Refs {
        fs::read(self.dir.join("refs.json")).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default()
    }

    fn save_refs(&self, refs: &Refs) -> Result<(), ImageError> {
        let path = self.dir.join("refs.json");
        let tmp = self.dir.join("refs.json.tmp");
        fs::write(&tmp, serde_json::to_vec_pretty(refs).unwrap_or_default()).map_err(io(&tmp))?;
        fs::rename(&tmp, &path).map_err(io(&path))
    }

    /// Looks an image up by reference.
    pub fn resolve(&self, reference: &str) -> Option<Image> {
        let id = self.refs().get(&normalize(reference))?.clone();
        let dir = self.dir.join(id.trim_start_matches("sha256:"));
        let config = serde_json::from_slice(&fs::read(dir.join("config.json")).ok()?).ok()?;
        Some(Image { id, rootfs: dir.join("rootfs"), config })
    }

    /// Every reference and the image ID it names.
    pub fn list(&self) -> Vec<(String, String)> {
        self.refs().into_iter().collect()
    }

    /// Removes a reference (the unpacked image stays while other references use it).
    pub fn remove(&self, reference: &str) -> Result<bool, ImageError> {
        let mut refs = self.refs();
        let Some(id) = refs.remove(&normalize(reference)) else { return Ok(false) };
        self.save_refs(&refs)?;
        if !refs.values().any(|v| *v == id) {
            let dir = self.dir.join(id.trim_start_matches("sha256:"));
            fs::remove_dir_all(&dir).map_err(io(&dir))?;
        }
        Ok(true)
    }

    /// Imports an OCI archive or `docker save` tarball and tags it with `tags` (plus the tags
    /// the archive names). Returns the image and the references it got.
    pub fn load_archive(&self, archive: &Path, tags: &[String]) -> Result<(Image, Vec<String>), ImageError> {
        let fmt = |why: &str| ImageError::Format { path: archive.to_path_buf(), why: why.to_string() };
        let mut file = File::open(archive).map_err(io(archive))?;
        let read = |file: &mut File, name: &str| -> Result<Option<Vec<u8>>, ImageError> {
            file.rewind().map_err(io(archive))?;
            let mut tar = tar::Archive::new(&mut *file);
            for entry in tar.entries().map_err(io(archive))? {
                let mut entry = entry.map_err(io(archive))?;
                let path = entry.path().map_err(io(archive))?.to_string_lossy().trim_start_matches("./").to_string();
                if path == name {
                    let mut buf = Vec::new();
                    entry.read_to_end(&mut buf).map_err(io(archive))?;
                    return Ok(Some(buf));
                }
            }
            Ok(None)
        };
        let json = |b: Vec<u8>| serde_json::from_slice::<Value>(&b).map_err(|e| fmt(&e.to_string()));
        let blob = |d: &str| format!("blobs/{}", d.replace(':', "/"));
        let (config_blob, layers, mut names): (String, Vec<String>, Vec<String>) = if let Some(index) =
            read(&mut file, "index.json")?
        {
            let index = json(index)?;
            let desc = index["manifests"].get(0).ok_or_else(|| fmt("index.json lists no manifest"))?;
            let digest = desc["digest"].as_str().ok_or_else(|| fmt("manifest without digest"))?;
            let manifest = json(read(&mut file, &blob(digest))?.ok_or_else(|| fmt("manifest blob missing"))?)?;
            let config = manifest["config"]["digest"].as_str().ok_or_else(|| fmt("manifest without config"))?;
            let layers = manifest["layers"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|l| l["digest"].as_str().map(blob))
                .collect();
            let names = desc["annotations"]["io.containerd.image.name"]
                .as_str()
                .map(|n| vec![n.to_string()])
                .unwrap_or_default();
            (blob(config), layers, names)
        } else if let Some(manifest) = read(&mut file, "manifest.json")? {
            let manifest = json(manifest)?;
            let first = manifest.get(0).ok_or_else(|| fmt("manifest.json is empty"))?;
            let config = first["Config"].as_str().ok_or_else(|| fmt("manifest.json without Config"))?.to_string();
            let layers =
                first["Layers"].as_array().into_iter().flatten().filter_map(|l| l.as_str().map(String::from)).collect();
            let names = first["RepoTags"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|t| t.as_str().map(String::from))
                .collect();
            (config, layers, names)
        } else {
            return Err(fmt("neither index.json nor manifest.json found"));
        };
        let config_bytes = read(&mut file, &config_blob)?.ok_or_else(|| fmt("config blob missing"))?;
        let layers =
            layers.iter().map(|layer| read(&mut file, layer)?.ok_or_else(|| fmt(&format!("layer {layer} missing"))));
        names.extend(tags.iter().cloned());
        self.import(&config_bytes, layers, &names, archive)
    }

    /// Stores an image from its config blob and its layer blobs (unpacked in order, unless an
    /// image with that config is already there) and points `names` at it.
    pub fn import(
        &self,
        config_bytes: &[u8],
        layers: impl Iterator<Item = Result<Vec<u8>, ImageError>>,
        names: &[String],
        origin: &Path,
    ) -> Result<(Image, Vec<String>), ImageError> {
        let config_json: Value = serde_json::from_slice(config_bytes)
            .map_err(|e| ImageError::Format { path: origin.to_path_buf(), why: format!("image config: {e}") })?;
        let config: ImageConfig = serde_json::from_value(config_json["config"].clone()).unwrap_or_default();
        let id = format!("sha256:{}", sha256_hex(config_bytes));
        let dir = self.dir.join(id.trim_start_matches("sha256:"));
        if !dir.join("config.json").exists() {
            let staging = self.dir.join(format!(".staging-{}-{}", std::process::id(), next_staging()));
            let _ = fs::remove_dir_all(&staging);
            let rootfs = staging.join("rootfs");
            fs::create_dir_all(&rootfs).map_err(io(&rootfs))?;
            let unpacked = (|| {
                for layer in layers {
                    crate::layer::apply(&layer?, &rootfs).map_err(io(&rootfs))?;
                }
                let cfg = staging.join("config.json");
                fs::write(&cfg, serde_json::to_vec(&config).unwrap_or_default()).map_err(io(&cfg))?;
                // When the image was built, as its config says (for `image ls`).
                if let Some(created) = config_json["created"].as_str().filter(|c| c.len() <= 64) {
                    let file = staging.join(CREATED_FILE);
                    fs::write(&file, created).map_err(io(&file))?;
                }
                match fs::rename(&staging, &dir) {
                    // Another import of the same image finished first.
                    Err(_) if dir.join("config.json").exists() => {
                        let _ = fs::remove_dir_all(&staging);
                        Ok(())
                    }
                    r => r.map_err(io(&dir)),
                }
            })();
            if unpacked.is_err() {
                let _ = fs::remove_dir_all(&staging);
            }
            unpacked?;
        }
        let mut refs = self.refs();
        let names: Vec<String> = names.iter().map(|n| normalize(n)).collect();
        for n in &names {
            refs.insert(n.clone(), id.clone());
        }
        self.save_refs(&refs)?;
        Ok((Image { id, rootfs: dir.join("rootfs"), config }, names))
    }
}

fn next_staging() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

/// SHA-256 of a byte string, in hex (the image ID).
fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(data).iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_normalise_as_kubernetes_does() {
        assert_eq!(normalize("busybox:1.36"), "docker.io/library/busybox:1.36");
        assert_eq!(normalize("alpine"), "docker.io/library/alpine:latest");
        assert_eq!(normalize("fluent/fluent-bit:3.1"), "docker.io/fluent/fluent-bit:3.1");
        assert_eq!(normalize("127.0.0.1:5000/busybox:1.36"), "127.0.0.1:5000/busybox:1.36");
        assert_eq!(normalize("gcr.io/x/y"), "gcr.io/x/y:latest");
        assert_eq!(normalize("localhost/x@sha256:ab"), "localhost/x@sha256:ab");
    }

    #[test]
    fn sha256_matches_known_vectors() {
        assert_eq!(sha256_hex(b""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
        assert_eq!(sha256_hex(b"abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }
}
