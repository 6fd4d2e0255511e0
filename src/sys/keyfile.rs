//! Secret key files: written with mode 0600 and fsync'd, directory
//! entries fsync'd after a rename, so a key is never half-written or lost.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Writes `contents` and a newline to `path` (mode 0600) and fsyncs it.
pub fn write_secret(path: &Path, contents: &str) -> std::io::Result<()> {
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(contents.as_bytes())?;
    f.write_all(b"\n")?;
    f.sync_all()
}

/// Reads a key file, tightening its mode to 0600 if others could read it.
pub fn read_secret(path: &Path) -> std::io::Result<String> {
    let text = fs::read_to_string(path)?;
    if fs::metadata(path)?.permissions().mode() & 0o077 != 0 {
        fs::set_permissions(path, fs::Permissions::from_mode(0o600))?;
    }
    Ok(text)
}

/// Fsyncs a directory, making renames and creations in it durable.
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    fs::File::open(dir)?.sync_all()
}

/// This machine's host name, if it is usable in a key name.
pub fn host_name() -> String {
    fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| crate::tlog::note::is_valid_key_name(h))
        .unwrap_or_else(|| "localhost".to_string())
}
