//! Replacing a file the tools write (`tern passwd`'s password files, `tern ctl apikey`'s key
//! files) so that a crash leaves the old file or the new one, never half of either.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;

/// Replaces `file` with `contents` atomically: a temporary file in the same directory, synced,
/// then renamed over it. An existing file keeps its permissions (and owner, when allowed); a
/// new one gets mode 0600. A symbolic link is followed: its target is replaced.
pub(super) fn write_atomically(tool: &str, file: &Path, contents: &[u8]) -> anyhow::Result<()> {
    let target = match std::fs::canonicalize(file) {
        Ok(path) => path,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => file.to_path_buf(),
        Err(e) => return Err(e).with_context(|| format!("cannot open {}", file.display())),
    };
    let dir = match target.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let existing = std::fs::metadata(&target).ok();
    let mut temp = tempfile::Builder::new()
        .prefix(&format!(".tern-{tool}-"))
        .suffix(".tmp")
        .tempfile_in(&dir)
        .with_context(|| format!("cannot create a temporary file in {}", dir.display()))?;
    let write_error = || format!("cannot write {}", temp_name(&dir));
    temp.write_all(contents).with_context(write_error)?;
    match &existing {
        Some(meta) => {
            temp.as_file()
                .set_permissions(meta.permissions())
                .with_context(write_error)?;
            keep_owner(tool, temp.as_file(), meta, file);
        }
        None => set_private(temp.as_file()).with_context(write_error)?,
    }
    temp.as_file().sync_all().with_context(write_error)?;
    temp.persist(&target)
        .map_err(|e| e.error)
        .with_context(|| format!("cannot replace {}", file.display()))?;
    // Make the rename durable; not every file system lets a directory be synced.
    if let Ok(dir) = std::fs::File::open(&dir) {
        let _ = dir.sync_all();
    }
    Ok(())
}

fn temp_name(dir: &Path) -> String {
    format!("a temporary file in {}", dir.display())
}

#[cfg(unix)]
fn set_private(file: &std::fs::File) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    file.set_permissions(std::fs::Permissions::from_mode(0o600))
}

#[cfg(not(unix))]
fn set_private(_file: &std::fs::File) -> std::io::Result<()> {
    Ok(())
}

/// Gives the new file the old one's owner and group (root editing the broker's file, say).
#[cfg(unix)]
fn keep_owner(tool: &str, new: &std::fs::File, old: &std::fs::Metadata, name: &Path) {
    use std::os::unix::fs::MetadataExt;
    let Ok(new_meta) = new.metadata() else {
        return;
    };
    if (new_meta.uid(), new_meta.gid()) == (old.uid(), old.gid()) {
        return;
    }
    if let Err(e) = std::os::unix::fs::fchown(new, Some(old.uid()), Some(old.gid())) {
        eprintln!(
            "tern {tool}: warning: cannot keep the owner of {} ({e}); it is now owned by \
             user {} group {}",
            name.display(),
            new_meta.uid(),
            new_meta.gid()
        );
    }
}

#[cfg(not(unix))]
fn keep_owner(_tool: &str, _new: &std::fs::File, _old: &std::fs::Metadata, _name: &Path) {}
