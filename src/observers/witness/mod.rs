//! A C2SP tlog-witness (c2sp.org/tlog-witness): cosigns a log's checkpoint
//! only if it is consistent with the latest one the witness cosigned for
//! that log, and records the new one durably before answering.
//!
//! The HTTP side lives in [`crate::observers::witness::http`]; this is the logic
//! and its state.

pub mod http;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rand_core::{OsRng, RngCore};
use thiserror::Error;

use crate::server::store::{StoreError, WitnessDb};
use crate::sys::keyfile;
use crate::tlog::checkpoint::Checkpoint;
use crate::tlog::cosignature::{AddCheckpoint, CosignatureSigner, CosignatureVerifier};
use crate::tlog::merkle::{empty_root, verify_consistency};
use crate::tlog::note::{Note, NoteError, NoteVerifier};

/// Name of the witness's private key file inside its data directory.
pub const KEY_FILE: &str = "witness.key";

/// Why an add-checkpoint request was refused; each maps to the status
/// tlog-witness prescribes.
#[derive(Debug, Error)]
pub enum WitnessError {
    /// 400: the body or the checkpoint is malformed.
    #[error("{0}")]
    Malformed(String),
    /// 404: no configured log has this origin.
    #[error("unknown log origin {0:?}")]
    UnknownLog(String),
    /// 403: no signature by a key trusted for this log verifies.
    #[error("no valid signature by the log's key: {0}")]
    BadSignature(NoteError),
    /// 400: the old size is beyond the checkpoint's size.
    #[error("old size {old} is larger than the checkpoint size {size}")]
    OldSizeBeyond { old: u64, size: u64 },
    /// 409: the old size is not the size this witness last cosigned.
    #[error("old size {old} is not the size last cosigned, {latest}")]
    WrongOldSize { old: u64, latest: u64 },
    /// 409: same size as the last cosigned checkpoint, another root.
    #[error("checkpoint of size {size} has a different root than the one already cosigned")]
    RootMismatch { size: u64, latest: u64 },
    /// 422: the consistency proof does not verify.
    #[error("consistency proof from {old} to {size} does not verify: {reason}")]
    BadProof { old: u64, size: u64, reason: String },
    /// 500: the record could not be read or written.
    #[error("witness storage: {0}")]
    Storage(#[from] StoreError),
}

impl WitnessError {
    /// For a 409, the size of the latest cosigned checkpoint.
    pub fn latest_size(&self) -> Option<u64> {
        match self {
            WitnessError::WrongOldSize { latest, .. }
            | WitnessError::RootMismatch { latest, .. } => Some(*latest),
            _ => None,
        }
    }
}

/// Why a witness could not start.
#[derive(Debug, Error)]
pub enum WitnessOpenError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: not a valid witness key ({source})")]
    BadKey { path: PathBuf, source: NoteError },
    #[error("invalid witness name {0:?}: it must be non-empty, without spaces or '+'")]
    BadName(String),
    #[error("--name {flag:?} differs from the name {existing:?} of the key in the data directory")]
    NameMismatch { flag: String, existing: String },
    #[error("opening storage: {0}")]
    Store(#[from] StoreError),
}

/// One log the witness follows: its keys, and a lock that makes checking
/// the old size and recording the new checkpoint one step.
struct FollowedLog {
    keys: Vec<NoteVerifier>,
    lock: Mutex<()>,
}

/// A witness: its key, the logs it follows, and its durable record.
pub struct Witness {
    signer: CosignatureSigner,
    logs: HashMap<String, FollowedLog>,
    db: WitnessDb,
}

impl Witness {
    /// Opens the witness in `data_dir`, generating its key (named `name`,
    /// default "<hostname>/witness") on first start.
    pub fn open(
        data_dir: &Path,
        name: Option<&str>,
        log_keys: Vec<NoteVerifier>,
    ) -> Result<Witness, WitnessOpenError> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| WitnessOpenError::Io { path, source }
        };
        std::fs::create_dir_all(data_dir).map_err(io(data_dir))?;
        let db = WitnessDb::open(&data_dir.join("db"))?;
        let key_path = data_dir.join(KEY_FILE);
        let signer = if key_path.exists() {
            let text = keyfile::read_secret(&key_path).map_err(io(&key_path))?;
            let signer =
                CosignatureSigner::parse(&text).map_err(|source| WitnessOpenError::BadKey {
                    path: key_path.clone(),
                    source,
                })?;
            if let Some(n) = name.filter(|n| *n != signer.name()) {
                return Err(WitnessOpenError::NameMismatch {
                    flag: n.to_string(),
                    existing: signer.name().to_string(),
                });
            }
            signer
        } else {
            let name = name
                .map(str::to_string)
                .unwrap_or_else(|| format!("{}/witness", keyfile::host_name()));
            let mut seed = [0u8; 32];
            OsRng.fill_bytes(&mut seed);
            let signer = CosignatureSigner::from_seed(&name, seed)
                .map_err(|_| WitnessOpenError::BadName(name))?;
            let tmp = data_dir.join(format!("{KEY_FILE}.tmp"));
            keyfile::write_secret(&tmp, &signer.to_private_key_string()).map_err(io(&tmp))?;
            std::fs::rename(&tmp, &key_path).map_err(io(&key_path))?;
            keyfile::sync_dir(data_dir).map_err(io(data_dir))?;
            signer
        };
        let mut logs: HashMap<String, FollowedLog> = HashMap::new();
        for key in log_keys {
            logs.entry(key.name().to_string())
                .or_insert_with(|| FollowedLog {
                    keys: Vec::new(),
                    lock: Mutex::new(()),
                })
                .keys
                .push(key);
        }
        Ok(Witness { signer, logs, db })
    }

    /// The witness's verifier key.
    pub fn verifier(&self) -> CosignatureVerifier {
        self.signer.verifier()
    }

    /// Handles one add-checkpoint request body at time `now` (POSIX
    /// seconds); returns the cosignature line(s).
    pub fn add_checkpoint(&self, body: &[u8], now: u64) -> Result<String, WitnessError> {
        let req = AddCheckpoint::parse(body).map_err(|e| WitnessError::Malformed(e.to_string()))?;
        let note = Note::parse(req.checkpoint.as_bytes())
            .map_err(|e| WitnessError::Malformed(e.to_string()))?;
        let cp =
            Checkpoint::parse(&note.text).map_err(|e| WitnessError::Malformed(e.to_string()))?;
        let log = self
            .logs
            .get(&cp.origin)
            .ok_or_else(|| WitnessError::UnknownLog(cp.origin.clone()))?;
        Note::open(req.checkpoint.as_bytes(), &log.keys).map_err(WitnessError::BadSignature)?;
        if req.old_size > cp.size {
            return Err(WitnessError::OldSizeBeyond {
                old: req.old_size,
                size: cp.size,
            });
        }
        let _one_at_a_time = log.lock.lock().unwrap_or_else(|p| p.into_inner());
        let (latest, latest_root) = match self.db.latest(&cp.origin)? {
            Some(text) => {
                // Only checkpoints that verified are ever recorded; not
                // verifying again lets the log's keys be rotated.
                let n = Note::parse(text.as_bytes())
                    .map_err(|e| StoreError::Corrupt(format!("recorded checkpoint: {e}")))?;
                let c = Checkpoint::parse(&n.text)
                    .map_err(|e| StoreError::Corrupt(format!("recorded checkpoint: {e}")))?;
                (c.size, c.root)
            }
            None => (0, empty_root()),
        };
        if req.old_size != latest {
            return Err(WitnessError::WrongOldSize {
                old: req.old_size,
                latest,
            });
        }
        if req.old_size == cp.size {
            if cp.root != latest_root {
                return Err(WitnessError::RootMismatch {
                    size: cp.size,
                    latest,
                });
            }
        } else if req.old_size == 0 {
            if !req.proof.is_empty() {
                return Err(WitnessError::BadProof {
                    old: 0,
                    size: cp.size,
                    reason: "a proof from size 0 must be empty".into(),
                });
            }
        } else {
            verify_consistency(req.old_size, cp.size, &req.proof, &latest_root, &cp.root).map_err(
                |e| WitnessError::BadProof {
                    old: req.old_size,
                    size: cp.size,
                    reason: e.to_string(),
                },
            )?;
        }
        // Re-cosigning the recorded checkpoint changes nothing: no write
        // (a replay of a public checkpoint must not cost an fsync).
        if cp.size != latest || latest == 0 {
            self.db.set_latest(&cp.origin, &req.checkpoint)?;
        }
        Ok(self.signer.cosign(&note.text, now))
    }
}

/// What `gatelog witness` runs (its flags).
#[derive(Debug)]
pub struct ServiceConfig {
    /// The witness's key and its durable record per log.
    pub data_dir: std::path::PathBuf,
    /// Where its HTTP API listens.
    pub listen: std::net::SocketAddr,
    /// Its key name; None: from the host name.
    pub name: Option<String>,
    /// The logs it witnesses.
    pub logs: Vec<NoteVerifier>,
    /// Connections: limits, deadlines, TLS.
    pub http: crate::server::http::HttpLimits,
}

/// Runs a witness with its HTTP API until SIGINT or SIGTERM.
pub fn serve(config: ServiceConfig) -> anyhow::Result<()> {
    use crate::server::http::serve_http;
    use anyhow::Context;
    use http::WitnessApp;
    let logs = config.logs.len();
    let witness = Witness::open(&config.data_dir, config.name.as_deref(), config.logs)
        .with_context(|| format!("opening the witness in {}", config.data_dir.display()))?;
    let limits = config.http;
    let app = std::sync::Arc::new(WitnessApp {
        witness,
        read_timeout: limits.read_timeout,
    });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("listening on {}", config.listen))?;
        let addr = listener.local_addr()?;
        println!(
            "gatelog: witness {} for {} log key(s)",
            app.witness.verifier().name(),
            logs
        );
        println!("gatelog: verifier key {}", app.witness.verifier().to_vkey());
        println!("gatelog: listening on {}://{addr}", limits.scheme());
        let handler = move |req| {
            let app = app.clone();
            async move { http::handle(&app, req).await }
        };
        serve_http(listener, limits, handler, crate::sys::shutdown_signal()).await?;
        println!("gatelog: shutting down");
        anyhow::Ok(())
    })
}
