//! `gatelog verify ...`: offline and online checks an auditor runs.
//! Exit 0: verified; 1: it does not verify (the reason is printed);
//! 2: the arguments or files cannot be used.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::Subcommand;
use gatelog::tlog::checkpoint::Checkpoint;
use gatelog::tlog::equivocation::Equivocation;
use gatelog::tlog::merkle::{hash_from_base64, leaf_hash, verify_consistency, Hash, Prover};
use gatelog::tlog::note::NoteVerifier;
use gatelog::tlog::policy::Policy;
use gatelog::tlog::tiles::TileNodes;
use gatelog::tlog::tlog_proof::TlogProof;

use super::{fetch, parse_url};

#[derive(Subcommand, Debug)]
pub enum VerifyCommand {
    /// Check a signed checkpoint: its format and the log's signature.
    ///
    /// SOURCE is a file, or a log's URL (its /checkpoint is fetched).
    /// Prints the origin, size, root and every signer named on it.
    ///
    /// Try it:
    ///   gatelog verify checkpoint --vkey "$VKEY" http://127.0.0.1:8080
    Checkpoint {
        /// The log's verifier key, "<origin>+<key id>+<key>".
        #[arg(long, value_name = "VKEY")]
        vkey: String,
        /// A checkpoint file, or the log's URL.
        #[arg(value_name = "FILE|URL")]
        source: String,
    },
    /// Check, offline, that an entry is in the log: the tlog-proof bundle
    /// (from `gatelog submit` or POST /v1/entries) holds a checkpoint signed
    /// by the log and an inclusion proof of the entry's leaf hash.
    ///
    /// With --policy (a C2SP tlog-policy file) the checkpoint must also
    /// carry the witness cosignatures the policy's quorum requires.
    ///
    /// Try it:
    ///   gatelog verify inclusion --vkey "$VKEY" --entry entry.bin request.tlog-proof
    Inclusion {
        #[arg(long, value_name = "VKEY")]
        vkey: String,
        /// The entry's exact bytes (for gatelog entries: the SignedEntry).
        #[arg(long, value_name = "FILE")]
        entry: PathBuf,
        /// A tlog-policy the checkpoint must satisfy (witness quorum).
        #[arg(long, value_name = "FILE")]
        policy: Option<PathBuf>,
        /// The tlog-proof bundle.
        #[arg(value_name = "PROOF")]
        proof: PathBuf,
    },
    /// Check that NEW_CHECKPOINT's tree extends OLD_CHECKPOINT's: nothing
    /// before it was rewritten. The consistency proof comes from the log
    /// (--log URL) or is computed from a mirror's tiles (--log DIR).
    ///
    /// Try it:
    ///   gatelog verify consistency --vkey "$VKEY" old.checkpoint new.checkpoint --log http://127.0.0.1:8080
    Consistency {
        #[arg(long, value_name = "VKEY")]
        vkey: String,
        #[arg(value_name = "OLD_CHECKPOINT")]
        old: PathBuf,
        #[arg(value_name = "NEW_CHECKPOINT")]
        new: PathBuf,
        /// The log's URL, or a mirror directory (`gatelog mirror`).
        #[arg(long, value_name = "URL|DIR")]
        log: String,
    },
    /// Check a split-view evidence file written by `gatelog monitor`.
    ///
    /// Exit 0: both checkpoints are signed by the key and cannot both be
    /// true. Exit 1: they are not proven inconsistent (or not signed).
    /// Exit 2: the key or the file cannot be used.
    Equivocation {
        /// The log's verifier key.
        #[arg(long, value_name = "VKEY")]
        vkey: String,
        /// The evidence file.
        file: PathBuf,
    },
}

/// The outcome of a check, before it becomes an exit status.
enum Outcome {
    Verified(String),
    Failed(String),
}

/// A usage problem: exit 2.
pub(super) struct Usage(pub(super) String);

impl<E: std::fmt::Display> From<E> for Usage {
    fn from(e: E) -> Self {
        Usage(e.to_string())
    }
}

pub fn run(command: VerifyCommand) -> ExitCode {
    let result = match command {
        VerifyCommand::Checkpoint { vkey, source } => checkpoint(&vkey, &source),
        VerifyCommand::Inclusion {
            vkey,
            entry,
            policy,
            proof,
        } => inclusion(&vkey, &entry, policy.as_deref(), &proof),
        VerifyCommand::Consistency {
            vkey,
            old,
            new,
            log,
        } => consistency(&vkey, &old, &new, &log),
        VerifyCommand::Equivocation { vkey, file } => equivocation(&vkey, &file),
    };
    match result {
        Ok(Outcome::Verified(what)) => {
            println!("verified: {what}");
            ExitCode::SUCCESS
        }
        Ok(Outcome::Failed(why)) => {
            println!("FAILED: {why}");
            ExitCode::FAILURE
        }
        Err(Usage(message)) => {
            eprintln!("gatelog: error: {message}");
            ExitCode::from(2)
        }
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

fn checkpoint(vkey: &str, source: &str) -> Result<Outcome, Usage> {
    let key = key(vkey)?;
    let note = if source.starts_with("http://") {
        let base = parse_url(source)?;
        let (status, body) = fetch(&base, "/checkpoint", Duration::from_secs(30))?;
        if status != 200 {
            return Err(Usage(format!("{source}/checkpoint answered {status}")));
        }
        body
    } else {
        read(Path::new(source))?
    };
    let signers = match gatelog::tlog::note::Note::parse(&note) {
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

fn inclusion(
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
pub(super) fn consistency_proof(
    log: &str,
    old: u64,
    new: u64,
) -> Result<Result<Vec<Hash>, String>, Usage> {
    if old == 0 || old == new {
        return Ok(Ok(vec![]));
    }
    if !log.starts_with("http://") {
        let mirror = super::source::Source::Dir(PathBuf::from(log));
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

fn consistency(vkey: &str, old: &Path, new: &Path, log: &str) -> Result<Outcome, Usage> {
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

fn equivocation(vkey: &str, file: &Path) -> Result<Outcome, Usage> {
    let key = key(vkey)?;
    let text = read_text(file)?;
    Ok(
        match Equivocation::parse(&text).and_then(|e| e.verify(&key)) {
            Ok(verdict) => Outcome::Verified(format!("split view proven: {verdict:?}")),
            Err(e) => Outcome::Failed(format!("not proven: {e}")),
        },
    )
}
