//! The checks behind `gatelog verify ...`: a checkpoint's signature, an
//! entry's inclusion (a tlog-proof bundle, optionally under a witness
//! policy), consistency between two checkpoints, and split-view evidence.
//! Each answers [`Outcome::Verified`] or [`Outcome::Failed`] with the reason,
//! or a [`Usage`] error when its arguments or files cannot be used.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::tlog::checkpoint::Checkpoint;
use crate::tlog::equivocation::Equivocation;
use crate::tlog::merkle::{hash_from_base64, leaf_hash, verify_consistency, Hash, Prover};
use crate::tlog::note::NoteVerifier;
use crate::tlog::policy::Policy;
use crate::tlog::tiles::TileNodes;
use crate::tlog::tlog_proof::TlogProof;

use crate::audit::source::Source;
use crate::sys::client::{fetch, parse_url};

/// The outcome of a check, before it becomes an exit status.
pub enum Outcome {
    /// It verifies: what was verified.
    Verified(String),
    /// It does not verify: why.
    Failed(String),
}

/// The arguments or the files they name cannot be used.
#[derive(Debug)]
pub struct Usage(pub String);

impl<E: std::fmt::Display> From<E> for Usage {
    fn from(e: E) -> Self {
        Usage(e.to_string())
    }
}

fn key(vkey: &str) -> Result<NoteVerifier, Usage> {
    NoteVerifier::parse(vkey).map_err(|e| Usage(format!("--vkey {vkey:?}: {e}")))
}

fn read(path: &Path) -> Result<Vec<u8>, Usage> {
    std::fs::read(path).map_err(|e| Usage(format!("reading {}: {e}", path.display())))
}

fn read_text(path: &Path) -> Result<String, Usage> {
    String::from_utf8(read(path)?)
        .map_err(|_| Usage(format!("{} is not UTF-8 text", path.display())))
}

fn describe(cp: &Checkpoint) -> String {
    use base64::Engine;
    format!(
        "{} size {} root {}",
        cp.origin,
        cp.size,
        base64::engine::general_purpose::STANDARD.encode(cp.root)
    )
}

pub fn checkpoint(vkey: &str, source: &str) -> Result<Outcome, Usage> {
    let key = key(vkey)?;
    let note = if crate::sys::client::is_url(source) {
        let base = parse_url(source)?;
        let (status, body) = fetch(&base, "/checkpoint", Duration::from_secs(30))?;
        if status != 200 {
            return Err(Usage(format!("{source}/checkpoint answered {status}")));
        }
        body
    } else {
        read(Path::new(source))?
    };
    let signers = match crate::tlog::note::Note::parse(&note) {
        Ok(n) => n
            .signatures
            .iter()
            .map(|s| s.name.clone())
            .collect::<Vec<_>>(),
        Err(e) => {
            return Ok(Outcome::Failed(format!(
                "{source} is not a signed note: {e}"
            )))
        }
    };
    Ok(match Checkpoint::open(&note, &key) {
        Ok(cp) => Outcome::Verified(format!(
            "checkpoint {} signed by {} (signatures: {})",
            describe(&cp),
            key.name(),
            signers.join(", ")
        )),
        Err(e) => Outcome::Failed(format!("{source}: {e}")),
    })
}

pub fn inclusion(
    vkey: &str,
    entry: &Path,
    policy: Option<&Path>,
    proof: &Path,
) -> Result<Outcome, Usage> {
    let key = key(vkey)?;
    let entry = read(entry)?;
    let bundle = match TlogProof::parse(&read_text(proof)?) {
        Ok(b) => b,
        Err(e) => {
            return Ok(Outcome::Failed(format!(
                "{}: not a tlog-proof bundle: {e}",
                proof.display()
            )))
        }
    };
    let leaf = leaf_hash(&entry);
    let mut witnessed = String::new();
    if let Some(path) = policy {
        let policy = Policy::parse(&read_text(path)?)
            .map_err(|e| Usage(format!("{}: {e}", path.display())))?;
        match policy.verify(bundle.checkpoint.as_bytes()) {
            Ok((_, cosigners)) => witnessed = format!(", cosigned by {}", cosigners.join(", ")),
            Err(e) => {
                return Ok(Outcome::Failed(format!(
                    "the checkpoint does not satisfy {}: {e}",
                    path.display()
                )))
            }
        }
    }
    Ok(match bundle.verify(&leaf, &key) {
        Ok(cp) => Outcome::Verified(format!(
            "entry {} is in checkpoint {}{witnessed}",
            bundle.index,
            describe(&cp)
        )),
        Err(e) => Outcome::Failed(format!("entry not proven at index {}: {e}", bundle.index)),
    })
}

/// The consistency proof from `old` to `new` leaves: from the log
/// (`log` is a URL) or computed from a mirror's tiles (`log` is a
/// directory). The inner error says why there is none.
pub fn consistency_proof(
    log: &str,
    old: u64,
    new: u64,
) -> Result<Result<Vec<Hash>, String>, Usage> {
    if old == 0 || old == new {
        return Ok(Ok(vec![]));
    }
    if !crate::sys::client::is_url(log) {
        let mirror = Source::Dir(PathBuf::from(log));
        let proof = Prover::new(TileNodes::new(mirror.hash_tiles(new))).consistency(old, new);
        return Ok(proof.map_err(|e| format!("the mirror in {log} cannot prove it: {e}")));
    }
    let base = parse_url(log)?;
    let path = format!("/v1/proof/consistency?old_size={old}&tree_size={new}");
    let (status, body) = fetch(&base, &path, Duration::from_secs(30))?;
    if status != 200 {
        return Ok(Err(format!(
            "the log gave no consistency proof from {old} to {new} (HTTP {status}: {})",
            String::from_utf8_lossy(&body).trim()
        )));
    }
    let json: serde_json::Value = serde_json::from_slice(&body)?;
    let hashes: Option<Vec<Hash>> = json["hashes"].as_array().and_then(|a| {
        a.iter()
            .map(|h| h.as_str().and_then(hash_from_base64))
            .collect()
    });
    Ok(hashes.ok_or_else(|| "the log's consistency proof is malformed".to_string()))
}

pub fn consistency(vkey: &str, old: &Path, new: &Path, log: &str) -> Result<Outcome, Usage> {
    let key = key(vkey)?;
    let open = |path: &Path| -> Result<Result<Checkpoint, String>, Usage> {
        Ok(Checkpoint::open(&read(path)?, &key).map_err(|e| format!("{}: {e}", path.display())))
    };
    let (old_cp, new_cp) = match (open(old)?, open(new)?) {
        (Ok(o), Ok(n)) => (o, n),
        (Err(e), _) | (_, Err(e)) => return Ok(Outcome::Failed(e)),
    };
    if old_cp.size > new_cp.size {
        return Err(Usage(format!(
            "OLD_CHECKPOINT (size {}) is larger than NEW_CHECKPOINT (size {}); swap them",
            old_cp.size, new_cp.size
        )));
    }
    let proof = match consistency_proof(log, old_cp.size, new_cp.size)? {
        Ok(p) => p,
        Err(why) => return Ok(Outcome::Failed(why)),
    };
    let verdict = verify_consistency(old_cp.size, new_cp.size, &proof, &old_cp.root, &new_cp.root);
    Ok(if verdict.is_ok() {
        Outcome::Verified(format!(
            "{} extends {}",
            describe(&new_cp),
            describe(&old_cp)
        ))
    } else {
        Outcome::Failed(format!(
            "{} does not extend {}: history was rewritten (or the proof is wrong)",
            describe(&new_cp),
            describe(&old_cp)
        ))
    })
}

pub fn equivocation(vkey: &str, file: &Path) -> Result<Outcome, Usage> {
    let key = key(vkey)?;
    let text = read_text(file)?;
    Ok(
        match Equivocation::parse(&text).and_then(|e| e.verify(&key)) {
            Ok(verdict) => Outcome::Verified(format!("split view proven: {verdict:?}")),
            Err(e) => Outcome::Failed(format!("not proven: {e}")),
        },
    )
}
