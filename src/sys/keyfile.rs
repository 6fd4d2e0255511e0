//! Key files: secrets written with mode 0600 and fsync'd, directory
//! entries fsync'd after a rename, so a key is never half-written or lost;
//! the key pairs `gatelog keygen` writes (FILE and FILE.pub) and the
//! development admin's. A key file is never read or written through a
//! symlink, and a secret others can read is refused, not quietly fixed
//! (someone may already have copied it).

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::tlog::note::{NoteSigner, NoteVerifier};

/// Writes `contents` and a newline to a new file `path` (mode 0600) and
/// fsyncs it. A stale file or symlink at `path` is removed first, then the
/// file is created exclusively (O_EXCL: never through a symlink).
pub fn write_secret(path: &Path, contents: &str) -> std::io::Result<()> {
    write_new(path, contents, 0o600)
}

fn write_new(path: &Path, contents: &str, mode: u32) -> std::io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)?;
    f.write_all(contents.as_bytes())?;
    f.write_all(b"\n")?;
    f.sync_all()
}

/// Writes `path` whole or not at all: a new temporary file beside it,
/// fsync'd, renamed over it, the directory fsync'd.
fn write_atomically(path: &Path, contents: &str, mode: u32) -> std::io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    write_new(&tmp, contents, mode)?;
    fs::rename(&tmp, path)?;
    sync_dir(
        path.parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new(".")),
    )
}

/// Reads a key file: a regular file (not a symlink) that only its owner
/// can read.
pub fn read_secret(path: &Path) -> std::io::Result<String> {
    use std::io::{Error, ErrorKind};
    let meta = fs::symlink_metadata(path)?;
    if meta.file_type().is_symlink() {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            "is a symlink; a key file must be a regular file",
        ));
    }
    let mode = meta.permissions().mode();
    if mode & 0o077 != 0 {
        return Err(Error::new(
            ErrorKind::PermissionDenied,
            format!(
                "others may read it (mode {:o}); if nobody did, `chmod 600` it, else make a new key",
                mode & 0o777
            ),
        ));
    }
    fs::read_to_string(path)
}

/// Writes `contents` to `path` whole or not at all, durably: a temporary
/// file beside it, fsync'd, renamed over it, the directory fsync'd (for
/// state and evidence files, which are not secret).
pub fn write_durably(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let mut f = fs::File::create(&tmp)?;
    f.write_all(contents)?;
    f.sync_all()?;
    fs::rename(&tmp, path)?;
    sync_dir(
        path.parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new(".")),
    )
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

#[cfg(feature = "server")]
/// A new key pair for `id`.
pub fn new_actor_key(id: &str) -> anyhow::Result<NoteSigner> {
    use rand_core::{OsRng, RngCore};
    let mut seed = [0u8; 32];
    OsRng.fill_bytes(&mut seed);
    NoteSigner::from_seed(id, seed).map_err(|e| anyhow::anyhow!("--id {id:?}: {e}"))
}

/// FILE.pub beside FILE.
pub fn pub_path(key: &Path) -> PathBuf {
    let mut p = key.as_os_str().to_owned();
    p.push(".pub");
    PathBuf::from(p)
}

/// Writes `key` to `out` (0600) and its verifier key to `out`.pub, each
/// atomically.
pub fn write_key_pair(key: &NoteSigner, out: &Path) -> anyhow::Result<()> {
    write_atomically(out, &key.to_private_key_string(), 0o600)
        .with_context(|| format!("writing {}", out.display()))?;
    let public = pub_path(out);
    write_atomically(&public, &key.verifier().to_vkey(), 0o644)
        .with_context(|| format!("writing {}", public.display()))?;
    Ok(())
}

/// Reads a private key file written by `keygen`.
pub fn read_private_key(path: &Path) -> anyhow::Result<NoteSigner> {
    let text = read_secret(path).with_context(|| format!("reading {}", path.display()))?;
    NoteSigner::parse(text.trim()).map_err(|e| {
        anyhow::anyhow!(
            "{}: not a gatelog private key ({e}); make one with `gatelog keygen`",
            path.display()
        )
    })
}

/// Reads a public key file (FILE.pub) written by `keygen`.
pub fn read_public_key(path: &Path) -> anyhow::Result<NoteVerifier> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    if text.starts_with("PRIVATE+KEY+") {
        anyhow::bail!(
            "{} is a private key; pass the public one ({})",
            path.display(),
            pub_path(path).display()
        );
    }
    NoteVerifier::parse(text.trim())
        .map_err(|e| anyhow::anyhow!("{}: not a gatelog public key: {e}", path.display()))
}

/// The bootstrap admins named by public key files; two files naming one
/// admin are an error.
pub fn read_admin_keys(paths: &[PathBuf]) -> anyhow::Result<Vec<NoteVerifier>> {
    let keys = paths
        .iter()
        .map(|p| read_public_key(p))
        .collect::<anyhow::Result<Vec<_>>>()?;
    for (i, k) in keys.iter().enumerate() {
        if keys[..i].iter().any(|o| o.name() == k.name()) {
            anyhow::bail!("two admin key files name the admin {:?}", k.name());
        }
    }
    Ok(keys)
}

#[cfg(feature = "server")]
/// The development admin (`gatelog serve --dev`): DATA_DIR/admin.key and
/// its .pub, generated when neither exists. A key file missing its pair is
/// an error: nothing is ever overwritten.
pub fn dev_admin(data_dir: &Path) -> anyhow::Result<NoteSigner> {
    let private = data_dir.join("admin.key");
    let public = pub_path(&private);
    match (private.exists(), public.exists()) {
        (false, false) => {
            let key = new_actor_key("admin")?;
            write_key_pair(&key, &private)?;
            println!(
                "gatelog: generated the development admin key {} (id admin); sign admin statements with it",
                private.display()
            );
            Ok(key)
        }
        (true, true) => {
            let key = read_private_key(&private)?;
            if read_public_key(&public)? != key.verifier() {
                anyhow::bail!(
                    "{} and {} are not a pair; move them away or restore the right one",
                    private.display(),
                    public.display()
                );
            }
            Ok(key)
        }
        (has_private, _) => anyhow::bail!(
            "{} is missing its pair {}; restore it (nothing is overwritten)",
            if has_private {
                private.display()
            } else {
                public.display()
            },
            if has_private {
                public.display()
            } else {
                private.display()
            },
        ),
    }
}

/// The bootstrap admin of a log made by an older release, which kept it in
/// DATA_DIR/admin.key.pub: none if that file does not exist. Read only.
pub fn legacy_admin(data_dir: &Path) -> anyhow::Result<Vec<NoteVerifier>> {
    let public = data_dir.join("admin.key.pub");
    if !public.exists() {
        return Ok(vec![]);
    }
    Ok(vec![read_public_key(&public)?])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_regular_files_only_their_owner_reads() {
        let dir = tempfile::tempdir().unwrap();
        let key = NoteSigner::from_seed("alice", [1; 32]).unwrap();
        let path = dir.path().join("alice.key");
        write_key_pair(&key, &path).unwrap();
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(read_private_key(&path).unwrap().key_id(), key.key_id());
        assert_eq!(read_public_key(&pub_path(&path)).unwrap(), key.verifier());
        // Readable by others: refused, and left as it is.
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        let Err(e) = read_private_key(&path) else {
            panic!("a secret others can read was accepted")
        };
        assert!(format!("{e:#}").contains("chmod 600"), "{e:#}");
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o644
        );
        // Through a symlink: refused.
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        let link = dir.path().join("link.key");
        std::os::unix::fs::symlink(&path, &link).unwrap();
        let Err(e) = read_private_key(&link) else {
            panic!("a symlinked secret was accepted")
        };
        assert!(format!("{e:#}").contains("symlink"), "{e:#}");
    }

    #[test]
    fn a_key_is_never_written_through_a_symlink() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        fs::write(&victim, "precious\n").unwrap();
        // An attacker's symlinks where the key and its temporary file go.
        let out = dir.path().join("new.key");
        std::os::unix::fs::symlink(&victim, &out).unwrap();
        std::os::unix::fs::symlink(&victim, dir.path().join("new.key.tmp")).unwrap();
        let key = NoteSigner::from_seed("bob", [2; 32]).unwrap();
        write_key_pair(&key, &out).unwrap();
        assert_eq!(fs::read_to_string(&victim).unwrap(), "precious\n");
        assert!(!fs::symlink_metadata(&out).unwrap().file_type().is_symlink());
        assert_eq!(read_private_key(&out).unwrap().key_id(), key.key_id());
    }
}
