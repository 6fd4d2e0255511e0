//! Where the log lives: one interface, [`LogStore`], with two stores
//! behind it, the embedded RocksDB database (the default, one node) and
//! PostgreSQL (several nodes on one log).
//!
//! # The contract
//!
//! - **Durable on commit.** When [`Sequencing::commit`] returns Ok,
//!   everything in the commit (entries, the leaf-hash index, refusals,
//!   tiles, the checkpoint) is durable (RocksDB: its WAL fsync'd;
//!   PostgreSQL: committed, and with `synchronous_commit = on` and a
//!   synchronous standby, on the standby too) and visible to every
//!   reader of the store, all or nothing. An error means the commit may
//!   or may not have happened: the writer must read the head again before
//!   it signs anything more.
//! - **One writer at a time.** [`LogStore::lock`] takes the sequencing
//!   lock: until its [`Sequencing`] commits or is dropped, no other
//!   writer (another node on the same database) commits. It returns the
//!   latest committed checkpoint under the lock, so a writer that finds
//!   the log longer than it knew catches up before it decides anything:
//!   one order, and never two checkpoints for one size.
//! - **Readers see committed state only.** An entry, a leaf index or a
//!   tile read is one some commit made durable. Entries and full tiles
//!   never change once committed (a store may cache them forever); a
//!   partial tile grows, and the checkpoint moves.
//! - **The sequencer reads apart.** Reads from the thread marked with
//!   [`this_thread_sequences`] never wait behind other readers.
//! - **Derived data is not durable.** [`LogStore::keep_closed_chain`]
//!   keeps what the gate derives again from the log on every start; it
//!   may be lost.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use thiserror::Error;

use crate::tlog::merkle::Hash;
use crate::tlog::tiles::{TileReader, TileSet};

pub mod import;
pub mod postgres;
pub mod rocks;

pub use rocks::{RocksStore, WitnessDb};

/// Storage failures.
#[derive(Debug, Error)]
pub enum StoreError {
    #[error("RocksDB: {0}")]
    Db(#[from] rocksdb::Error),
    #[error("PostgreSQL: {0}")]
    Postgres(String),
    #[error("storage is corrupt: {0}")]
    Corrupt(String),
    #[error("{0}")]
    Refused(String),
}

/// One batch of the log to make durable at once.
pub struct Commit<'a> {
    /// New entries: (index, leaf hash, bytes).
    pub entries: &'a [(u64, Hash, &'a [u8])],
    /// Every tile that changed, with its whole new content.
    pub tiles: &'a TileSet,
    /// The signed checkpoint covering the entries.
    pub checkpoint: &'a str,
    /// Entries the gate refused: (the refused entry's leaf hash, the index
    /// of the log's refusal record for it).
    pub refused: &'a [(Hash, u64)],
}

/// The log's storage. See the module's contract.
pub trait LogStore: TileReader<Error = StoreError> + Send + Sync {
    /// The latest committed checkpoint, read fresh; None: never initialised.
    fn checkpoint(&self) -> Result<Option<String>, StoreError>;
    /// Index of the entry with this leaf hash, if logged.
    fn index_of(&self, leaf: &Hash) -> Result<Option<u64>, StoreError>;
    /// The indices of those of `leaves` that are logged, in one lookup
    /// (the sequencer's dedup of a batch, under the lock).
    fn indices_of(&self, leaves: &[Hash]) -> Result<HashMap<Hash, u64>, StoreError> {
        let mut found = HashMap::new();
        for leaf in leaves {
            if let Some(i) = self.index_of(leaf)? {
                found.insert(*leaf, i);
            }
        }
        Ok(found)
    }
    /// Index of the log's refusal record for the refused entry with this
    /// leaf hash, if the gate refused it.
    fn refusal_of(&self, refused: &Hash) -> Result<Option<u64>, StoreError>;
    /// The entry at `index`, if stored.
    fn entry(&self, index: u64) -> Result<Option<Vec<u8>>, StoreError>;
    /// Entries `start .. start+count` in order; fewer if some are missing.
    fn entries(&self, start: u64, count: u64) -> Result<Vec<Vec<u8>>, StoreError>;
    /// Keeps a closed chain's entry indices under `chain` (a digest of its
    /// id). Not durable: the gate derives them again on every start.
    fn keep_closed_chain(&self, chain: &[u8; 16], entries: &[u64]) -> Result<(), StoreError>;
    /// A closed chain's entry indices, if kept.
    fn closed_chain(&self, chain: &[u8; 16]) -> Result<Option<Vec<u64>>, StoreError>;
    /// Takes the sequencing lock and reads the head under it.
    fn lock(&self) -> Result<Box<dyn Sequencing + '_>, StoreError>;
    /// How often an idle writer looks for entries other writers
    /// committed; None: nobody else writes (an embedded store).
    fn shared(&self) -> Option<Duration>;
    /// What the store is, for logs and errors ("RocksDB in DIR").
    fn describe(&self) -> String;
    /// Where the nodes on a shared store agree on who runs the witness
    /// rounds and share what they cosigned; None: one node (an embedded
    /// store) runs its own.
    fn witness_board(&self) -> Option<&dyn WitnessBoard> {
        None
    }
}

/// One set of witness rounds for the nodes of a shared store: one node
/// at a time holds a lease and asks the witnesses; what they cosign is
/// posted here and every node serves it, after checking it.
///
/// The lease only saves the witnesses from rounds that conflict; the
/// log's safety does not rest on it. Two nodes that both believe they
/// lead each ask (a witness answers one of them with 409 and it learns
/// the size), and no node serves a posted checkpoint before it has
/// checked the log's signature, the root against its own tree and each
/// cosignature against its configured witnesses.
pub trait WitnessBoard: Send + Sync {
    /// Takes the lease for `node`, or renews the one it holds, for
    /// `lease` by the store's clock; true if `node` holds it now.
    fn lead(&self, node: &str, lease: Duration) -> Result<bool, StoreError>;
    /// Posts a round's checkpoint of `size` and its cosignature lines
    /// (also as the latest quorate one if `quorate`), only while `node`
    /// holds the lease and never below a size posted before; false: not
    /// posted.
    fn post(
        &self,
        node: &str,
        size: u64,
        posted: &Posted,
        quorate: bool,
    ) -> Result<bool, StoreError>;
    /// The latest round's checkpoint and the latest quorate one, as
    /// posted (unchecked).
    fn posted(&self) -> Result<(Option<Posted>, Option<Posted>), StoreError>;
    /// Gives up the lease `node` holds (on shutdown), so that another
    /// node leads at its next look instead of when the lease runs out.
    fn resign(&self, node: &str) -> Result<(), StoreError>;
}

/// A signed checkpoint and the cosignature lines gathered for it, as
/// the witness rounds' leader posts them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Posted {
    /// The checkpoint with the log's signature.
    pub checkpoint: String,
    /// Cosignature lines, each ending in "\n".
    pub cosignatures: String,
}

/// The sequencing lock, held until it commits or is dropped.
pub trait Sequencing {
    /// The latest committed checkpoint, read under the lock; None: the
    /// log was never initialised.
    fn checkpoint(&self) -> Option<&str>;
    /// The log's clock skew against the store's: local now minus the
    /// store's now, in ms (0 for an embedded store).
    fn clock_skew_ms(&self) -> i64;
    /// Commits `c` and releases the lock (see the contract).
    fn commit(self: Box<Self>, c: &Commit<'_>) -> Result<(), StoreError>;
}

thread_local! {
    static ON_SEQUENCER: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Marks this thread as the sequencer's: a shared store serves its reads
/// on connections of their own, so that no load of readers (anonymous
/// tile and proof requests) delays the holder of the sequencing lock.
pub fn this_thread_sequences() {
    ON_SEQUENCER.with(|c| c.set(true));
}

/// Whether this thread is the sequencer's.
pub(crate) fn on_sequencer_thread() -> bool {
    ON_SEQUENCER.with(|c| c.get())
}

/// A shared store for the log, as the server holds it.
pub type SharedStore = Arc<dyn LogStore>;

/// Encodes a closed chain's entry indices (big-endian u64s).
pub(crate) fn encode_indices(entries: &[u64]) -> Vec<u8> {
    entries.iter().flat_map(|i| i.to_be_bytes()).collect()
}

/// Decodes [`encode_indices`].
pub(crate) fn decode_indices(v: &[u8]) -> Result<Vec<u64>, StoreError> {
    if !v.len().is_multiple_of(8) {
        return Err(StoreError::Corrupt("a closed chain's indices".into()));
    }
    Ok(v.chunks_exact(8)
        .map(|c| u64::from_be_bytes(c.try_into().expect("8 bytes")))
        .collect())
}
