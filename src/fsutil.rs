//! Atomic file replacement: write a temporary file beside the target, fsync it,
//! rename it over the target, fsync the directory. A crash or error at any point
//! leaves either the old file or the new one, never a mix.

use crate::testhook;
use std::io::Write;
use std::path::Path;

/// Replaces `path` with `bytes` atomically, keeping the old file's permissions.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mode = std::fs::metadata(path).ok().map(|m| m.permissions());
    write(path, bytes, mode, true)
}

/// Creates `path` with `bytes` atomically, failing if it already exists.
pub fn create_new_atomic(path: &Path, bytes: &[u8], mode: Option<u32>) -> std::io::Result<()> {
    #[cfg(unix)]
    let perms = mode.map(|m| {
        use std::os::unix::fs::PermissionsExt;
        std::fs::Permissions::from_mode(m)
    });
    #[cfg(not(unix))]
    let perms = {
        let _ = mode;
        None
    };
    write(path, bytes, perms, false)
}

fn write(
    path: &Path,
    bytes: &[u8],
    perms: Option<std::fs::Permissions>,
    clobber: bool,
) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let mut tmp = tempfile::Builder::new()
        .prefix(".tufkey-")
        .suffix(".tmp")
        .tempfile_in(dir)?;
    if let Some(p) = perms {
        tmp.as_file().set_permissions(p)?;
    }
    tmp.write_all(bytes)?;
    testhook::at("write-temp");
    tmp.as_file().sync_all()?;
    testhook::at("write-synced");
    if clobber {
        tmp.persist(path).map_err(|e| e.error)?;
    } else {
        tmp.persist_noclobber(path).map_err(|e| e.error)?;
    }
    testhook::at("write-renamed");
    if let Ok(d) = std::fs::File::open(dir) {
        // Directory fsync makes the rename durable; not every filesystem allows it.
        let _ = d.sync_all();
    }
    Ok(())
}

/// Makes a rename in `dir` durable; not every filesystem allows a directory fsync, so
/// a failure is ignored as in [`write_atomic`].
pub fn sync_dir(dir: &Path) {
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
}

/// Copies `from` to `to` atomically (temporary file beside `to`, fsync, rename), streaming
/// so large files are not held in memory.
pub fn copy_atomic(from: &Path, to: &Path) -> std::io::Result<()> {
    let dir = match to.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let mut src = std::fs::File::open(from)?;
    let mut tmp = tempfile::Builder::new()
        .prefix(".tufkey-")
        .suffix(".tmp")
        .tempfile_in(dir)?;
    std::io::copy(&mut src, tmp.as_file_mut())?;
    testhook::at("write-temp");
    tmp.as_file().sync_all()?;
    testhook::at("write-synced");
    tmp.persist(to).map_err(|e| e.error)?;
    testhook::at("write-renamed");
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_and_refuses_to_clobber() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f.json");
        create_new_atomic(&p, b"one", Some(0o600)).unwrap();
        assert!(create_new_atomic(&p, b"two", None).is_err());
        write_atomic(&p, b"three").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"three");
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temporary file left"
        );
    }
}
