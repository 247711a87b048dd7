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
    /// List images.
    Ls,
    /// Remove image references.
    Rm {
        /// References to remove.
        #[arg(required = true)]
        images: Vec<String>,
    },
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
