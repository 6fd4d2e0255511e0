//! The log as the server sees it: storage, the signing key, the latest
//! checkpoint, and the read operations (tiles, entry bundles, proofs)
//! that the HTTP layer serves. Writes go through the sequencer.
//!
//! Opening a log checks it: the stored checkpoint must carry a valid
//! signature by the log's key, and the stored tiles must reproduce its
//! root. A log that fails either check is not served.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use rand_core::{OsRng, RngCore};
use thiserror::Error;
use tokio::sync::watch;

use crate::server::metrics::Metrics;
use crate::server::store::{Commit, LogStore, RocksStore, StoreError};
use crate::sys::keyfile;
use crate::tlog::checkpoint::{Checkpoint, CheckpointError};
use crate::tlog::merkle::{leaf_hash, Hash, Prover};
use crate::tlog::note::{NoteError, NoteSigner, NoteVerifier};
use crate::tlog::tiles::{self, encode_bundle, TileError, TileNodes, HASH_SIZE, TILE_WIDTH};

/// Most subtree roots kept between proof requests (about 60 bytes each).
pub const PROOF_MEMO_ENTRIES: usize = 1 << 18;

/// Name of the private key file inside the data directory.
pub const KEY_FILE: &str = "log.key";
/// Name of the RocksDB directory inside the data directory.
pub const DB_DIR: &str = "db";

/// The latest committed state of the tree.
#[derive(Debug)]
pub struct LogHead {
    /// Leaves in the tree.
    pub size: u64,
    /// Root hash.
    pub root: Hash,
    /// The signed checkpoint for (size, root).
    pub checkpoint: Arc<str>,
}

/// Why a log could not be opened.
#[derive(Debug, Error)]
pub enum OpenError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: not a valid log key ({source}); restore the original key file")]
    BadKey { path: PathBuf, source: NoteError },
    #[error("invalid origin {0:?}: it must be non-empty, without spaces or '+'")]
    BadOrigin(String),
    #[error("--origin {flag:?} differs from the origin {existing:?} this data directory was created with; drop --origin or use another --data-dir")]
    OriginMismatch { flag: String, existing: String },
    #[error("{path} is missing but the database exists: restore the log's key (a new key would start a second history)")]
    MissingKey { path: PathBuf },
    #[error("no database at {dir} but the log's key exists: restore the database, or move the key away to start a new log")]
    MissingDatabase { dir: PathBuf },
    #[error("no log in {dir} (no {KEY_FILE})")]
    NoLog { dir: PathBuf },
    #[error("opening storage: {0}")]
    Store(#[from] StoreError),
    #[error("refusing to serve, storage is corrupt: {0}")]
    Corrupt(String),
}

/// Errors of the read operations, each a client's mistake or a server fault.
#[derive(Debug, Error)]
pub enum ReadError {
    #[error("tree_size {asked} is beyond the current tree size {current}")]
    BeyondTree { asked: u64, current: u64 },
    #[error("index {index} is not below tree_size {size}")]
    IndexOutOfRange { index: u64, size: u64 },
    #[error("old_size {old} must be between 1 and tree_size {size}")]
    BadOldSize { old: u64, size: u64 },
    #[error("tree_size must be at least 1")]
    EmptyTree,
    #[error("no entry with this leaf hash in the tree of size {size}")]
    LeafNotFound { size: u64 },
    #[error("entries {start}..{end} are missing from storage")]
    MissingEntries { start: u64, end: u64 },
    #[error(transparent)]
    Storage(#[from] TileError<StoreError>),
}

impl From<StoreError> for ReadError {
    fn from(e: StoreError) -> Self {
        ReadError::Storage(TileError::Read(e))
    }
}

/// Who asks for a proof: the log's own work (witness rounds, answers to
/// appends) has its own memo and lock, so a flood of cold public proof
/// requests never delays it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProofUser {
    /// The log itself.
    Log = 0,
    /// A client of the read API.
    Public = 1,
}

/// An opened, checked log.
pub struct Log {
    store: Box<dyn LogStore>,
    signer: NoteSigner,
    verifier: NoteVerifier,
    /// The latest committed state; a watch channel so that tasks (the
    /// witness round) can wait for the next one.
    head: watch::Sender<Arc<LogHead>>,
    /// Subtree roots from earlier proofs (see [`Prover::with_memo`]),
    /// one memo per [`ProofUser`], each bounded by [`PROOF_MEMO_ENTRIES`].
    proof_memo: [Mutex<HashMap<(u64, u64), Hash>>; 2],
    /// Whether a sequencer owns the write side.
    writer_claimed: AtomicBool,
    /// On a shared store: where the last checkpoint this node served is
    /// kept (see [`Log::open_shared`]).
    served_record: Option<PathBuf>,
    /// Server metrics.
    pub metrics: Metrics,
}

/// A default origin for a new log: "<hostname>/gatelog".
pub fn default_origin() -> String {
    format!("{}/gatelog", keyfile::host_name())
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> OpenError + '_ {
    move |source| OpenError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn read_signer(path: &Path) -> Result<NoteSigner, OpenError> {
    let text = keyfile::read_secret(path).map_err(io_err(path))?;
    NoteSigner::parse(&text).map_err(|source| OpenError::BadKey {
        path: path.to_path_buf(),
        source,
    })
}

fn check_origin(signer: &NoteSigner, origin: Option<&str>) -> Result<(), OpenError> {
    match origin {
        Some(o) if o != signer.name() => Err(OpenError::OriginMismatch {
            flag: o.to_string(),
            existing: signer.name().to_string(),
        }),
        _ => Ok(()),
    }
}

/// The head of the log in `store`, its checkpoint checked against the
/// key; a store without a log gets the signed checkpoint of the empty
/// tree (under the sequencing lock, so two nodes starting at once agree).
fn head_of(
    store: &dyn LogStore,
    signer: &NoteSigner,
    key_path: &Path,
) -> Result<LogHead, OpenError> {
    let lock = store.lock()?;
    if let Some(text) = lock.checkpoint() {
        let cp = verify_head(text, &signer.verifier())?;
        return Ok(LogHead {
            size: cp.size,
            root: cp.root,
            checkpoint: text.into(),
        });
    }
    let cp = Checkpoint {
        origin: signer.name().to_string(),
        size: 0,
        root: crate::tlog::merkle::empty_root(),
        extensions: vec![],
    };
    let text = cp.sign(signer).map_err(|e| match e {
        CheckpointError::Note(n) => OpenError::BadKey {
            path: key_path.to_path_buf(),
            source: n,
        },
        other => OpenError::Corrupt(other.to_string()),
    })?;
    lock.commit(&Commit {
        entries: &[],
        tiles: &Default::default(),
        checkpoint: &text,
        refused: &[],
    })?;
    Ok(LogHead {
        size: 0,
        root: cp.root,
        checkpoint: text.into(),
    })
}

fn verify_head(text: &str, verifier: &NoteVerifier) -> Result<Checkpoint, OpenError> {
    Checkpoint::open(text.as_bytes(), verifier).map_err(|e| {
        OpenError::Corrupt(format!(
            "stored checkpoint does not verify with the log key: {e}"
        ))
    })
}

impl Log {
    /// Opens the log in `data_dir`, creating it (and its key) if new.
    /// `origin`, when given, must match an existing log's origin.
    ///
    /// The key and the database belong together: a key without its
    /// database (or the reverse) is refused, since starting afresh would
    /// sign a second, inconsistent history under the same key. A first
    /// start writes the key to `log.key.tmp`, the empty-tree checkpoint to
    /// the database, then renames the key into place; a start interrupted
    /// in between is completed by the next one.
    pub fn open(data_dir: &Path, origin: Option<&str>) -> Result<Log, OpenError> {
        Self::open_or_create(data_dir, origin, true)
    }

    /// Opens the log in `data_dir`, which must hold one.
    pub fn open_existing(data_dir: &Path) -> Result<Log, OpenError> {
        Self::open_or_create(data_dir, None, false)
    }

    fn open_or_create(
        data_dir: &Path,
        origin: Option<&str>,
        create: bool,
    ) -> Result<Log, OpenError> {
        if !create && !data_dir.join(KEY_FILE).exists() {
            return Err(OpenError::NoLog {
                dir: data_dir.to_path_buf(),
            });
        }
        fs::create_dir_all(data_dir).map_err(io_err(data_dir))?;
        let key_path = data_dir.join(KEY_FILE);
        let tmp_path = data_dir.join(format!("{KEY_FILE}.tmp"));
        let db_path = data_dir.join(DB_DIR);
        let key_exists = key_path.exists();
        if key_exists && !db_path.join("CURRENT").exists() {
            return Err(OpenError::MissingDatabase { dir: db_path });
        }
        // Opening the database takes its lock, so two servers cannot race
        // through a first start.
        let store = RocksStore::open(&db_path, !key_exists)?;
        let stored = store.checkpoint()?;
        let signer = if key_exists {
            read_signer(&key_path)?
        } else if let Some(text) = &stored {
            // Only an interrupted first start may have a database and no
            // key: its checkpoint is of the empty tree, by log.key.tmp.
            let resumed = read_signer(&tmp_path).ok().filter(|s| {
                Checkpoint::open(text.as_bytes(), &s.verifier()).is_ok_and(|cp| cp.size == 0)
            });
            resumed.ok_or(OpenError::MissingKey {
                path: key_path.clone(),
            })?
        } else {
            let origin = origin.map(str::to_string).unwrap_or_else(default_origin);
            let mut seed = [0u8; 32];
            OsRng.fill_bytes(&mut seed);
            let signer = NoteSigner::from_seed(&origin, seed)
                .map_err(|_| OpenError::BadOrigin(origin.clone()))?;
            keyfile::write_secret(&tmp_path, &signer.to_private_key_string())
                .map_err(io_err(&tmp_path))?;
            signer
        };
        check_origin(&signer, origin)?;
        let head = head_of(&store, &signer, &key_path)?;
        if !key_exists {
            fs::rename(&tmp_path, &key_path).map_err(io_err(&key_path))?;
            keyfile::sync_dir(data_dir).map_err(io_err(data_dir))?;
        }
        Log::with_store(Box::new(store), signer, head)
    }

    /// Opens the log in a shared store (several nodes on one log), signed
    /// by the key in `key_path` (each node has a copy), creating it there
    /// if the store holds no log yet. `origin`, when given, must be the
    /// key's name.
    ///
    /// `served_record` keeps the last checkpoint this node served: the
    /// store's log must extend it (same root at its size), or the node
    /// refuses to start: a failover that lost acknowledged entries, or a
    /// store holding another history, would otherwise make it sign a
    /// second checkpoint for a size it already served.
    pub fn open_shared(
        store: Box<dyn LogStore>,
        key_path: &Path,
        origin: Option<&str>,
        served_record: &Path,
    ) -> Result<Log, OpenError> {
        let signer = read_signer(key_path)?;
        check_origin(&signer, origin)?;
        let head = head_of(store.as_ref(), &signer, key_path)?;
        let mut log = Log::with_store(store, signer, head)?;
        match fs::read(served_record) {
            Ok(text) => {
                let served = verify_head(&String::from_utf8_lossy(&text), log.verifier())?;
                let size = log.head().size;
                let root = (served.size <= size)
                    .then(|| Prover::new(TileNodes::new(log.store.as_ref())).root(served.size))
                    .transpose()
                    .map_err(|e| OpenError::Corrupt(e.to_string()))?;
                if root != Some(served.root) {
                    return Err(OpenError::Corrupt(format!(
                        "the store's log (size {size}) does not extend the checkpoint this node served (size {}, kept in {}): a failover lost acknowledged entries, or the store holds another history; refusing to serve",
                        served.size,
                        served_record.display()
                    )));
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(OpenError::Io {
                    path: served_record.to_path_buf(),
                    source,
                })
            }
        }
        keyfile::write_durably(served_record, log.head().checkpoint.as_bytes())
            .map_err(io_err(served_record))?;
        log.served_record = Some(served_record.to_path_buf());
        Ok(log)
    }

    fn with_store(
        store: Box<dyn LogStore>,
        signer: NoteSigner,
        head: LogHead,
    ) -> Result<Log, OpenError> {
        let log = Log {
            store,
            verifier: signer.verifier(),
            signer,
            head: watch::Sender::new(Arc::new(head)),
            writer_claimed: AtomicBool::new(false),
            served_record: None,
            proof_memo: Default::default(),
            metrics: Metrics::default(),
        };
        log.check_storage()?;
        let size = log.head().size;
        log.metrics.tree_size.store(size, Ordering::Relaxed);
        Ok(log)
    }

    /// Checks that the stored tiles reproduce the checkpoint's root and
    /// that the newest entries hash to the newest level-0 tile.
    fn check_storage(&self) -> Result<(), OpenError> {
        let head = self.head();
        let root = Prover::new(TileNodes::new(self.store.as_ref()))
            .root(head.size)
            .map_err(|e| OpenError::Corrupt(e.to_string()))?;
        if root != head.root {
            return Err(OpenError::Corrupt(format!(
                "the stored tiles give a different root than the checkpoint of size {}",
                head.size
            )));
        }
        if head.size > 0 {
            let last_tile = (head.size - 1) / TILE_WIDTH;
            let start = last_tile * TILE_WIDTH;
            let entries = self.store.entries(start, head.size - start)?;
            let tile = self.store.read_tile(0, last_tile)?.unwrap_or_default();
            let hashes: Vec<u8> = entries.iter().flat_map(|e| leaf_hash(e)).collect();
            if entries.len() as u64 != head.size - start || !tile.starts_with(&hashes) {
                return Err(OpenError::Corrupt(format!(
                    "entries {start}..{} do not match the level-0 tile",
                    head.size
                )));
            }
        }
        Ok(())
    }

    /// The latest committed state.
    pub fn head(&self) -> Arc<LogHead> {
        self.head.borrow().clone()
    }

    /// A receiver that sees every new committed state.
    pub fn subscribe(&self) -> watch::Receiver<Arc<LogHead>> {
        self.head.subscribe()
    }

    /// Claims the write side; true only for the first caller. Two writers
    /// would assign the same indices and sign diverging checkpoints.
    pub(crate) fn claim_writer(&self) -> bool {
        !self.writer_claimed.swap(true, Ordering::SeqCst)
    }

    /// Publishes a new committed state. Only the sequencer calls this,
    /// after the state is durable. On a shared store the checkpoint is
    /// first recorded (fsync'd) as the last this node served, so that no
    /// later start serves one that contradicts it.
    pub(crate) fn set_head(&self, head: Arc<LogHead>) -> std::io::Result<()> {
        if let Some(path) = &self.served_record {
            keyfile::write_durably(path, head.checkpoint.as_bytes())?;
        }
        self.metrics.tree_size.store(head.size, Ordering::Relaxed);
        self.head.send_replace(head);
        Ok(())
    }

    /// The log's origin (its key name).
    pub fn origin(&self) -> &str {
        self.signer.name()
    }

    /// The log's verifier key.
    pub fn verifier(&self) -> &NoteVerifier {
        &self.verifier
    }

    pub(crate) fn signer(&self) -> &NoteSigner {
        &self.signer
    }

    pub(crate) fn store(&self) -> &dyn LogStore {
        self.store.as_ref()
    }

    /// Runs `f` with a prover over the stored tiles that reuses `user`'s
    /// memo. Proofs of one user take turns: with the memo most cost
    /// microseconds, and sharing it beats computing cold in parallel. The
    /// log's own proofs never wait behind public ones.
    fn with_prover<T>(
        &self,
        user: ProofUser,
        f: impl FnOnce(&mut Prover<TileNodes<&dyn LogStore>>) -> Result<T, TileError<StoreError>>,
    ) -> Result<T, TileError<StoreError>> {
        let mut shared = self.proof_memo[user as usize]
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let mut prover = Prover::with_memo(
            TileNodes::new(self.store.as_ref()),
            std::mem::take(&mut *shared),
        );
        let result = f(&mut prover);
        let mut memo = prover.into_memo();
        if memo.len() > PROOF_MEMO_ENTRIES {
            memo.clear();
        }
        *shared = memo;
        result
    }

    fn checked_size(&self, size: Option<u64>) -> Result<u64, ReadError> {
        let current = self.head().size;
        match size {
            Some(s) if s > current => Err(ReadError::BeyondTree { asked: s, current }),
            Some(0) => Err(ReadError::EmptyTree),
            None if current == 0 => Err(ReadError::EmptyTree),
            Some(s) => Ok(s),
            None => Ok(current),
        }
    }

    /// Inclusion proof for `index` in the tree of `size` (default: current).
    pub fn inclusion_proof(
        &self,
        index: u64,
        size: Option<u64>,
        user: ProofUser,
    ) -> Result<(u64, Vec<Hash>), ReadError> {
        let size = self.checked_size(size)?;
        if index >= size {
            return Err(ReadError::IndexOutOfRange { index, size });
        }
        let proof = self.with_prover(user, |p| p.inclusion(index, size))?;
        Ok((size, proof))
    }

    /// Inclusion proofs of the entries `start..size` in the tree of
    /// `size`, computed together (they share most of their nodes), for the
    /// log's own answers.
    pub fn inclusion_proofs(&self, start: u64, size: u64) -> Result<Vec<Vec<Hash>>, ReadError> {
        let size = self.checked_size(Some(size))?;
        let proofs = self.with_prover(ProofUser::Log, |p| {
            (start..size).map(|i| p.inclusion(i, size)).collect()
        })?;
        Ok(proofs)
    }

    /// The root of the tree of `size`, from the stored tiles.
    pub fn root_at(&self, size: u64) -> Result<Hash, ReadError> {
        let size = self.checked_size(Some(size))?;
        Ok(self.with_prover(ProofUser::Log, |p| p.root(size))?)
    }

    /// Index of the entry with `leaf` hash, if it is in the tree of `size`.
    pub fn find_leaf(&self, leaf: &Hash, size: Option<u64>) -> Result<u64, ReadError> {
        let size = self.checked_size(size)?;
        match self.store.index_of(leaf)? {
            Some(i) if i < size => Ok(i),
            _ => Err(ReadError::LeafNotFound { size }),
        }
    }

    /// Consistency proof from `old` to `size` (default: current).
    pub fn consistency_proof(
        &self,
        old: u64,
        size: Option<u64>,
        user: ProofUser,
    ) -> Result<(u64, Vec<Hash>), ReadError> {
        let size = self.checked_size(size)?;
        if old == 0 || old > size {
            return Err(ReadError::BadOldSize { old, size });
        }
        let proof = self.with_prover(user, |p| p.consistency(old, size))?;
        Ok((size, proof))
    }

    /// Hash tile `index` at `level`, `width` hashes wide, if the current
    /// tree has it.
    pub fn hash_tile(
        &self,
        level: u8,
        index: u64,
        width: u64,
    ) -> Result<Option<Vec<u8>>, ReadError> {
        if tiles::tile_width(level, index, self.head().size) < width {
            return Ok(None);
        }
        let tile = self.store.read_tile(level, index)?.unwrap_or_default();
        let want = width as usize * HASH_SIZE;
        if tile.len() < want {
            return Err(ReadError::Storage(TileError::Missing {
                level,
                index,
                have: (tile.len() / HASH_SIZE) as u64,
                need: width,
            }));
        }
        Ok(Some(tile[..want].to_vec()))
    }

    /// Entry bundle `index`, `width` entries wide, if the current tree has it.
    pub fn entry_bundle(&self, index: u64, width: u64) -> Result<Option<Vec<u8>>, ReadError> {
        if tiles::tile_width(0, index, self.head().size) < width {
            return Ok(None);
        }
        let entries = self.store.entries(index * TILE_WIDTH, width)?;
        if (entries.len() as u64) < width {
            let start = index * TILE_WIDTH;
            return Err(ReadError::MissingEntries {
                start: start + entries.len() as u64,
                end: start + width,
            });
        }
        Ok(Some(encode_bundle(entries.iter().map(Vec::as_slice))))
    }
}
