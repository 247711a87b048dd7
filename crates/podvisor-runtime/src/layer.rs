//! Applying an image layer (a tar, gzip-compressed or not) onto a root filesystem, with the
//! OCI whiteouts: `.wh.NAME` deletes NAME from lower layers, `.wh..wh..opq` empties its
//! directory of lower-layer content.

use std::fs;
use std::io::{self, Read};
use std::path::{Component, Path, PathBuf};

const WHITEOUT: &str = ".wh.";
const OPAQUE: &str = ".wh..wh..opq";

fn remove(path: &Path) -> io::Result<()> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// A layer path made relative and free of `..`, or `None` when it would leave the root.
fn clean(path: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::Normal(p) => out.push(p),
            Component::CurDir | Component::RootDir => {}
            Component::ParentDir | Component::Prefix(_) => return None,
        }
    }
    Some(out)
}

/// Unpacks `bytes` (a layer blob) onto `root`.
pub fn apply(bytes: &[u8], root: &Path) -> io::Result<()> {
    let reader: Box<dyn Read> =
        if bytes.starts_with(&[0x1f, 0x8b]) { Box::new(flate2::read::GzDecoder::new(bytes)) } else { Box::new(bytes) };
    let mut archive = tar::Archive::new(reader);
    archive.set_preserve_permissions(true);
    archive.set_preserve_ownerships(true);
    archive.set_unpack_xattrs(true);
    archive.set_overwrite(true);
    for entry in archive.entries()? {
        let mut entry = entry?;
        let Some(path) = clean(&entry.path()?) else { continue };
        let name = path.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
        let parent = path.parent().map(|p| root.join(p)).unwrap_or_else(|| root.to_path_buf());
        if name == OPAQUE {
            if let Ok(children) = fs::read_dir(&parent) {
                for child in children.flatten() {
                    remove(&child.path())?;
                }
            }
            continue;
        }
        if let Some(target) = name.strip_prefix(WHITEOUT) {
            remove(&parent.join(target))?;
            continue;
        }
        // A file replacing a directory (or the reverse) must remove the old entry first.
        let dest = root.join(&path);
        if let Ok(meta) = fs::symlink_metadata(&dest)
            && meta.is_dir() != entry.header().entry_type().is_dir()
        {
            remove(&dest)?;
        }
        entry.unpack_in(root)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layer(files: &[(&str, &str)]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (path, body) in files {
            let mut h = tar::Header::new_gnu();
            h.set_size(body.len() as u64);
            h.set_mode(0o644);
            h.set_uid(0);
            h.set_gid(0);
            h.set_mtime(0);
            // Written raw, so that a hostile `..` path can be tested too.
            h.as_old_mut().name[..path.len()].copy_from_slice(path.as_bytes());
            h.set_cksum();
            b.append(&h, body.as_bytes()).unwrap();
        }
        b.into_inner().unwrap()
    }

    #[test]
    fn whiteouts_delete_lower_layer_content() {
        let dir = std::env::temp_dir().join(format!("podvisor-layer-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        apply(&layer(&[("a/keep", "1"), ("a/gone", "2"), ("b/x", "3"), ("b/y", "4")]), &dir).unwrap();
        apply(&layer(&[("a/.wh.gone", ""), ("b/.wh..wh..opq", ""), ("b/z", "5"), ("../escape", "no")]), &dir).unwrap();
        assert!(dir.join("a/keep").exists());
        assert!(!dir.join("a/gone").exists());
        assert!(!dir.join("b/x").exists() && !dir.join("b/y").exists());
        assert_eq!(fs::read_to_string(dir.join("b/z")).unwrap(), "5");
        assert!(!dir.parent().unwrap().join("escape").exists());
        fs::remove_dir_all(&dir).unwrap();
    }
}
