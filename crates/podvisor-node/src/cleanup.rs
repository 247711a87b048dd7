//! Clean-ups that may fail. What a failed one leaves behind on the machine is said on standard
//! error with the path or container it concerns, never dropped; a thing already gone is not a
//! failure.

use std::fmt::Display;
use std::io::ErrorKind;
use std::path::Path;

/// Says what `result`, the clean-up of `what`, left behind when it failed. Whether it succeeded.
pub(crate) fn said<E: Display>(what: impl Display, result: Result<(), E>) -> bool {
    match result {
        Ok(()) => true,
        Err(e) => {
            tracing::warn!("{what} is left behind: {e}");
            false
        }
    }
}

/// Says what the removal of container `id` from the runtime left behind when it failed.
pub(crate) fn container<E: Display>(id: &str, result: Result<(), E>) -> bool {
    said(format_args!("container {id}"), result)
}

/// Removes a directory tree, saying what is left when it cannot.
pub(crate) fn remove_tree(dir: &Path) -> bool {
    said(dir.display(), absent_is_ok(std::fs::remove_dir_all(dir)))
}

/// Removes a file or a directory tree, saying what is left when it cannot.
pub(crate) fn remove_path(path: &Path) -> bool {
    let removed = if path.is_dir() { std::fs::remove_dir_all(path) } else { std::fs::remove_file(path) };
    said(path.display(), absent_is_ok(removed))
}

fn absent_is_ok(r: std::io::Result<()>) -> std::io::Result<()> {
    match r {
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_path_is_already_clean_and_a_failure_is_reported() {
        let dir = std::env::temp_dir().join(format!("podvisor-cleanup-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("a/b")).unwrap();
        std::fs::write(dir.join("f"), b"x").unwrap();
        assert!(remove_path(&dir.join("f")));
        assert!(remove_tree(&dir));
        assert!(!dir.exists());
        assert!(remove_tree(&dir), "already gone");
        assert!(!said("container x", Err::<(), _>("runc delete x: busy")));
    }
}
