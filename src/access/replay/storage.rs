//! Where a replay keeps the entries it may need again: those of open
//! chains (for the gate's rules, which read statements back through
//! [`StateStorage`], and for the chain's report when it closes) and
//! delegation grants. The replay hands each such entry over once
//! ([`ReplayStorage::keep`]) and lets go of a chain's entries once its
//! report is made ([`ReplayStorage::forget`]).
//!
//! [`MemoryEntries`] keeps them in memory (tests, small logs); the audit
//! and the monitor keep them in a spill file (`observers::spill`), so
//! their memory follows the open chains' facts, not their statements.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::access::entry::Statement;
use crate::access::gate::{stored_statement, ChainKey, StateStorage, StatementCache};

/// A [`StateStorage`] that also keeps whole entries for a replay.
pub trait ReplayStorage: StateStorage {
    /// Keeps the entry at `index` (its leaf bytes) until it is forgotten.
    fn keep(&self, index: u64, leaf: &[u8]);
    /// The leaf bytes of a kept entry; `None` if storage cannot give it.
    fn leaf(&self, index: u64) -> Option<Vec<u8>>;
    /// Lets go of entries: nothing will ask for them again.
    fn forget(&self, indices: &[u64]);
}

/// A kept entry: its leaf bytes and, once read, its statement.
type Kept = (Vec<u8>, Option<Arc<Statement>>);

/// Statements applied that stay cached until kept (an entry applied and
/// never kept, e.g. one that joined no chain, is let go with the oldest).
const APPLIED_CACHE: usize = 4096;

/// Everything kept, in memory.
pub struct MemoryEntries {
    kept: Mutex<HashMap<u64, Kept>>,
    applied: Mutex<StatementCache>,
}

impl Default for MemoryEntries {
    fn default() -> Self {
        MemoryEntries {
            kept: Mutex::default(),
            applied: Mutex::new(StatementCache::new(APPLIED_CACHE)),
        }
    }
}

impl StateStorage for MemoryEntries {
    fn statement(&self, index: u64) -> Option<Arc<Statement>> {
        if let Some(st) = self.applied.lock().expect("replay storage").get(index) {
            return Some(st);
        }
        let mut kept = self.kept.lock().expect("replay storage");
        let (leaf, st) = kept.get_mut(&index)?;
        if st.is_none() {
            *st = Some(stored_statement(leaf)?);
        }
        st.clone()
    }

    fn applied(&self, index: u64, statement: Arc<Statement>) {
        self.applied
            .lock()
            .expect("replay storage")
            .insert(index, statement);
    }

    // A replay reports a chain when it closes and needs its entries no more.
    fn keep_closed_chain(&self, _: &ChainKey, _: &[u64]) {}

    fn closed_chain(&self, _: &ChainKey) -> Option<Vec<u64>> {
        None
    }
}

impl ReplayStorage for MemoryEntries {
    fn keep(&self, index: u64, leaf: &[u8]) {
        let st = self.applied.lock().expect("replay storage").get(index);
        self.kept
            .lock()
            .expect("replay storage")
            .insert(index, (leaf.to_vec(), st));
    }

    fn leaf(&self, index: u64) -> Option<Vec<u8>> {
        let kept = self.kept.lock().expect("replay storage");
        kept.get(&index).map(|(leaf, _)| leaf.clone())
    }

    fn forget(&self, indices: &[u64]) {
        let mut kept = self.kept.lock().expect("replay storage");
        for i in indices {
            kept.remove(i);
        }
    }
}
