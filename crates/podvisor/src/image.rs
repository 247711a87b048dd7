//! `podvisor image`: the local image store.

use std::io::Write;
use std::path::Path;

use clap::Subcommand;
use podvisor_runtime::image::ImageStore;

/// Image store commands.
#[derive(Subcommand)]
pub enum ImageCommand {
    /// Import an OCI archive or a `docker save` tarball.
    Load {
        /// The archive.
        file: String,
        /// Extra names to tag it with (e.g. busybox:1.36).
        #[arg(long = "tag")]
        tags: Vec<String>,
    },
    /// Pull an image from its registry.
    Pull {
        /// The image reference (busybox:1.36, 127.0.0.1:5000/app:v1, …).
        image: String,
        #[command(flatten)]
        registry: RegistryArgs,
    },
    /// List images.
    Ls,
    /// Remove image references.
    Rm {
        /// References to remove.
        #[arg(required = true)]
        images: Vec<String>,
    },
}

/// How to reach registries.
#[derive(clap::Args, Clone, Default)]
pub struct RegistryArgs {
    /// A registry (HOST:PORT) to speak plain HTTP to; repeatable.
    #[arg(
        long = "insecure-registry",
        value_name = "HOST:PORT",
        env = "PODVISOR_INSECURE_REGISTRIES",
        value_delimiter = ','
    )]
    pub insecure: Vec<String>,
    /// The Docker config file with registry credentials (default: $DOCKER_CONFIG/config.json or ~/.docker/config.json).
    #[arg(long, value_name = "FILE")]
    pub docker_config: Option<std::path::PathBuf>,
}

impl RegistryArgs {
    /// The settings for the puller.
    pub fn settings(&self) -> podvisor_runtime::pull::PullSettings {
        podvisor_runtime::pull::PullSettings {
            insecure: self.insecure.clone(),
            docker_config: self.docker_config.clone(),
        }
    }
}

/// Runs an image command; returns whether it fully succeeded.
pub fn run(out: &mut impl Write, data_dir: &Path, cmd: ImageCommand) -> anyhow::Result<bool> {
    // Unpacking keeps the layers' owners, modes and device files: that takes root.
    if matches!(cmd, ImageCommand::Load { .. } | ImageCommand::Pull { .. }) && !rustix::process::geteuid().is_root() {
        anyhow::bail!(
            "image load and pull need root (layers are unpacked with their owners, modes and device files): run it as root, e.g. with sudo"
        );
    }
    let store = ImageStore::open(data_dir)?;
    match cmd {
        ImageCommand::Load { file, tags } => {
            let (image, names) = store.load_archive(Path::new(&file), &tags)?;
            for n in names {
                writeln!(out, "Loaded image: {n} ({})", image.id)?;
            }
            Ok(true)
        }
        ImageCommand::Pull { image, registry } => {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            let puller = podvisor_runtime::pull::Puller::new(registry.settings());
            let pulled = rt.block_on(puller.pull(&store, &image))?;
            writeln!(out, "Pulled image: {} ({})", podvisor_runtime::image::normalize(&image), pulled.id)?;
            Ok(true)
        }
        ImageCommand::Ls => {
            let images = data_dir.join("images");
            let now = jiff::Timestamp::now();
            let rows: Vec<[String; 5]> = store
                .list()
                .into_iter()
                .map(|(name, id)| {
                    let hex = id.trim_start_matches("sha256:").to_string();
                    // Stored when its config was written (the directory changes later: the
                    // init layers of its containers are made in it).
                    let dir = images.join(&hex);
                    let age = std::fs::metadata(dir.join("config.json"))
                        .and_then(|m| m.modified())
                        .ok()
                        .and_then(|t| t.elapsed().ok())
                        .map(|d| {
                            format!(
                                "{} ago",
                                podvisor_objects::human_duration(
                                    jiff::SignedDuration::try_from(d).unwrap_or(jiff::SignedDuration::MAX)
                                )
                            )
                        })
                        .unwrap_or_else(|| "?".into());
                    let size = format!("{:.1} MB", dir_size(&dir.join("rootfs")) as f64 / 1e6);
                    let created = std::fs::read_to_string(dir.join(podvisor_runtime::image::CREATED_FILE))
                        .ok()
                        .and_then(|c| c.trim().parse::<jiff::Timestamp>().ok())
                        .map(|t| format!("{} ago", podvisor_objects::human_duration(now.duration_since(t))))
                        .unwrap_or_else(|| "?".into());
                    [name, hex.chars().take(12).collect(), created, age, size]
                })
                .collect();
            let header = ["IMAGE", "IMAGE ID", "CREATED", "STORED", "SIZE"].map(String::from);
            let width = |i: usize| rows.iter().chain([&header]).map(|r| r[i].chars().count()).max().unwrap_or(0);
            let (w0, w1, w2, w3) = (width(0), width(1), width(2), width(3));
            for r in std::iter::once(&header).chain(&rows) {
                writeln!(out, "{:<w0$}   {:<w1$}   {:<w2$}   {:<w3$}   {}", r[0], r[1], r[2], r[3], r[4])?;
            }
            Ok(true)
        }
        ImageCommand::Rm { images } => {
            let mut ok = true;
            for i in images {
                if store.remove(&i)? {
                    writeln!(out, "Untagged: {i}")?;
                } else {
                    eprintln!("podvisor: image {i:?} not found");
                    ok = false;
                }
            }
            Ok(ok)
        }
    }
}

/// The bytes the files under `dir` take, not following symlinks (a bound on depth and entries
/// keeps a strange tree from holding the listing).
fn dir_size(dir: &Path) -> u64 {
    let mut total = 0u64;
    let mut stack = vec![(dir.to_path_buf(), 0usize)];
    let mut seen = 0usize;
    while let Some((d, depth)) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else { continue };
        for e in entries.flatten() {
            seen += 1;
            if seen > 1_000_000 {
                return total;
            }
            let Ok(meta) = e.path().symlink_metadata() else { continue };
            if meta.is_dir() && depth < 64 {
                stack.push((e.path(), depth + 1));
            } else if meta.is_file() {
                total = total.saturating_add(meta.len());
            }
        }
    }
    total
}
