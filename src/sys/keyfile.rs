//! Key files: secrets written with mode 0600 and fsync'd, directory
//! entries fsync'd after a rename, so a key is never half-written or lost;
//! the key pairs `gatelog keygen` writes (FILE and FILE.pub) and the
//! bootstrap admin's.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::tlog::note::{NoteSigner, NoteVerifier};

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

/// Writes `key` to `out` (0600) and its verifier key to `out`.pub.
pub fn write_key_pair(key: &NoteSigner, out: &Path) -> anyhow::Result<()> {
    write_secret(out, &key.to_private_key_string())
        .with_context(|| format!("writing {}", out.display()))?;
    let public = pub_path(out);
    std::fs::write(&public, format!("{}\n", key.verifier().to_vkey()))
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
