//! The embedded store: the log in one RocksDB database. Entries, the
//! leaf-hash index used for deduplication, the index of refused entries
//! (so a refused entry sent again gets its first refusal record), hash
//! tiles, the latest signed checkpoint, and the gate's closed chains
//! (derived).
//!
//! The one file that imports `rocksdb`. Commits are one `WriteBatch`,
//! WAL fsync'd; RocksDB's own lock file keeps a second process out, so
//! the sequencing lock is the sequencer itself.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rocksdb::{BlockBasedOptions, Direction, IteratorMode, Options, WriteBatch, WriteOptions, DB};

use super::{decode_indices, encode_indices, Commit, LogStore, Sequencing, StoreError};
use crate::tlog::merkle::Hash;
use crate::tlog::tiles::TileReader;

const KEY_CHECKPOINT: &[u8] = b"c";
const PREFIX_ENTRY: u8 = b'e';
const PREFIX_LEAF: u8 = b'h';
const PREFIX_TILE: u8 = b't';
const PREFIX_REFUSED: u8 = b'r';
const PREFIX_CLOSED_CHAIN: u8 = b'k';

/// The log's RocksDB database.
pub struct RocksStore {
    db: DB,
    dir: String,
}

fn entry_key(index: u64) -> [u8; 9] {
    let mut k = [PREFIX_ENTRY; 9];
    k[1..].copy_from_slice(&index.to_be_bytes());
    k
}

fn leaf_key(leaf: &Hash) -> [u8; 33] {
    let mut k = [PREFIX_LEAF; 33];
    k[1..].copy_from_slice(leaf);
    k
}

fn refused_key(leaf: &Hash) -> [u8; 33] {
    let mut k = [PREFIX_REFUSED; 33];
    k[1..].copy_from_slice(leaf);
    k
}

fn closed_chain_key(chain: &[u8; 16]) -> [u8; 17] {
    let mut k = [PREFIX_CLOSED_CHAIN; 17];
    k[1..].copy_from_slice(chain);
    k
}

fn read_index(v: &[u8], what: &str) -> Result<u64, StoreError> {
    let b: [u8; 8] = v
        .try_into()
        .map_err(|_| StoreError::Corrupt(format!("{what} is not 8 bytes")))?;
    Ok(u64::from_be_bytes(b))
}

fn tile_key(level: u8, index: u64) -> [u8; 10] {
    let mut k = [PREFIX_TILE; 10];
    k[1] = level;
    k[2..].copy_from_slice(&index.to_be_bytes());
    k
}

impl RocksStore {
    /// Opens the database in `dir`, creating it only if `create`.
    pub fn open(dir: &Path, create: bool) -> Result<RocksStore, StoreError> {
        let mut opts = Options::default();
        opts.create_if_missing(create);
        opts.set_max_background_jobs(2);
        // Leaf-hash lookups (dedup) are point reads of random keys: a
        // bloom filter keeps misses off the disk.
        let mut table = BlockBasedOptions::default();
        table.set_bloom_filter(10.0, false);
        opts.set_block_based_table_factory(&table);
        // Most dedup lookups miss and most of them are answered by the
        // memtable: a memtable bloom filter spares the skiplist walk.
        opts.set_memtable_whole_key_filtering(true);
        opts.set_memtable_prefix_bloom_ratio(0.1);
        let db = DB::open(&opts, dir)?;
        Ok(RocksStore {
            db,
            dir: dir.display().to_string(),
        })
    }
}

impl LogStore for RocksStore {
    /// The latest signed checkpoint, if the log was ever initialised.
    fn checkpoint(&self) -> Result<Option<String>, StoreError> {
        match self.db.get(KEY_CHECKPOINT)? {
            None => Ok(None),
            Some(v) => String::from_utf8(v)
                .map(Some)
                .map_err(|_| StoreError::Corrupt("checkpoint is not UTF-8".into())),
        }
    }

    /// Index of the entry with this leaf hash, if logged.
    fn index_of(&self, leaf: &Hash) -> Result<Option<u64>, StoreError> {
        match self.db.get_pinned(leaf_key(leaf))? {
            None => Ok(None),
            Some(v) => read_index(&v, "leaf index").map(Some),
        }
    }

    /// Index of the log's refusal record for the refused entry with this
    /// leaf hash, if the gate refused it (since refusals were indexed).
    fn refusal_of(&self, refused: &Hash) -> Result<Option<u64>, StoreError> {
        match self.db.get_pinned(refused_key(refused))? {
            None => Ok(None),
            Some(v) => read_index(&v, "refusal index").map(Some),
        }
    }

    /// The entry at `index`, if stored (a point read: no iterator).
    fn entry(&self, index: u64) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.db.get(entry_key(index))?)
    }

    /// Entries `start .. start+count` in order; fewer if some are missing.
    fn entries(&self, start: u64, count: u64) -> Result<Vec<Vec<u8>>, StoreError> {
        let from = entry_key(start);
        let iter = self
            .db
            .iterator(IteratorMode::From(&from, Direction::Forward));
        let mut out = Vec::with_capacity(count as usize);
        for (i, item) in iter.take(count as usize).enumerate() {
            let (k, v) = item?;
            if k[..] != entry_key(start + i as u64) {
                break;
            }
            out.push(v.to_vec());
        }
        Ok(out)
    }

    /// Not fsync'd: the gate derives them from the log again on every
    /// start.
    fn keep_closed_chain(&self, chain: &[u8; 16], entries: &[u64]) -> Result<(), StoreError> {
        self.db
            .put(closed_chain_key(chain), encode_indices(entries))?;
        Ok(())
    }

    /// A closed chain's entry indices, if kept.
    fn closed_chain(&self, chain: &[u8; 16]) -> Result<Option<Vec<u64>>, StoreError> {
        let Some(v) = self.db.get_pinned(closed_chain_key(chain))? else {
            return Ok(None);
        };
        decode_indices(&v).map(Some)
    }

    fn lock(&self) -> Result<Box<dyn Sequencing + '_>, StoreError> {
        Ok(Box::new(RocksSequencing {
            store: self,
            checkpoint: LogStore::checkpoint(self)?,
        }))
    }

    fn shared(&self) -> Option<Duration> {
        None
    }

    fn describe(&self) -> String {
        format!("RocksDB in {}", self.dir)
    }
}

/// The embedded store's sequencing "lock": the one sequencer of the one
/// process that holds the database.
struct RocksSequencing<'a> {
    store: &'a RocksStore,
    checkpoint: Option<String>,
}

impl Sequencing for RocksSequencing<'_> {
    fn checkpoint(&self) -> Option<&str> {
        self.checkpoint.as_deref()
    }

    fn clock_skew_ms(&self) -> i64 {
        0
    }

    /// Writes a batch atomically and fsyncs it before returning.
    fn commit(self: Box<Self>, c: &Commit<'_>) -> Result<(), StoreError> {
        let mut batch = WriteBatch::default();
        for (index, leaf, bytes) in c.entries {
            batch.put(entry_key(*index), bytes);
            batch.put(leaf_key(leaf), index.to_be_bytes());
        }
        for (refused, record) in c.refused {
            batch.put(refused_key(refused), record.to_be_bytes());
        }
        for ((level, index), tile) in c.tiles {
            batch.put(tile_key(*level, *index), tile.as_slice());
        }
        batch.put(KEY_CHECKPOINT, c.checkpoint.as_bytes());
        let mut wo = WriteOptions::default();
        wo.set_sync(true);
        self.store.db.write_opt(batch, &wo)?;
        Ok(())
    }
}

impl TileReader for RocksStore {
    type Error = StoreError;
    fn read_tile(&self, level: u8, index: u64) -> Result<Option<Arc<Vec<u8>>>, StoreError> {
        Ok(self.db.get(tile_key(level, index))?.map(Arc::new))
    }
}

/// A witness's record of the latest checkpoint it cosigned for each log.
/// Contract: when [`WitnessDb::set_latest`] returns Ok, the record is on
/// disk (WAL fsync'd).
pub struct WitnessDb {
    db: DB,
}

impl WitnessDb {
    /// Opens (creating if needed) the witness database in `dir`.
    pub fn open(dir: &Path) -> Result<WitnessDb, StoreError> {
        let mut opts = Options::default();
        opts.create_if_missing(true);
        Ok(WitnessDb {
            db: DB::open(&opts, dir)?,
        })
    }

    /// The latest checkpoint cosigned for `origin`, verbatim.
    pub fn latest(&self, origin: &str) -> Result<Option<String>, StoreError> {
        match self.db.get(origin.as_bytes())? {
            None => Ok(None),
            Some(v) => String::from_utf8(v)
                .map(Some)
                .map_err(|_| StoreError::Corrupt(format!("record for {origin} is not UTF-8"))),
        }
    }

    /// Durably records `checkpoint` as the latest cosigned for `origin`.
    pub fn set_latest(&self, origin: &str, checkpoint: &str) -> Result<(), StoreError> {
        let mut wo = WriteOptions::default();
        wo.set_sync(true);
        self.db
            .put_opt(origin.as_bytes(), checkpoint.as_bytes(), &wo)?;
        Ok(())
    }
}
