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
            writeln!(out, "{:<50} IMAGE ID", "IMAGE")?;
            for (name, id) in store.list() {
                let short: String = id.trim_start_matches("sha256:").chars().take(12).collect();
                writeln!(out, "{name:<50} {short}")?;
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
