//! Where the server's gate state keeps what it does not hold in memory:
//! the log's own storage (statements, and closed chains' entry indices). The state keeps an open chain's facts (indices, digests,
//! names) in memory and its statements on disk, so a million open chains
//! cost their facts, not their statements; the newest statements stay in
//! a bounded cache, which also holds a batch's statements until the batch
//! is durable.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use crate::access::entry::{DecodedEntry, Statement};
use crate::access::gate::{drop_free_text, ChainKey, StateStorage};
use crate::server::log::Log;

/// Statements read from the log's storage, the newest `capacity` cached.
pub struct StoredStatements {
    log: Arc<Log>,
    capacity: usize,
    newest: Mutex<Newest>,
}

#[derive(Default)]
struct Newest {
    by_index: HashMap<u64, Arc<Statement>>,
    order: VecDeque<u64>,
}

impl StoredStatements {
    /// Reads `log`; keeps the newest `capacity` statements applied in
    /// memory. `capacity` must exceed the largest batch, whose statements
    /// are applied before they are durable.
    pub fn new(log: Arc<Log>, capacity: usize) -> Self {
        StoredStatements {
            log,
            capacity: capacity.max(1),
            newest: Mutex::new(Newest::default()),
        }
    }
}

impl StateStorage for StoredStatements {
    fn statement(&self, index: u64) -> Option<Arc<Statement>> {
        if let Some(st) = self
            .newest
            .lock()
            .expect("statement cache lock")
            .by_index
            .get(&index)
        {
            return Some(st.clone());
        }
        let leaf = self.log.store().entry(index).ok()??;
        let mut statement = DecodedEntry::decode(&leaf).ok()?.statement;
        // A chain's statements are read together, and again for its next
        // entry: keep what was read back too, as the state stores it.
        drop_free_text(&mut statement);
        self.remember(index, statement.clone());
        Some(statement)
    }

    fn keep_closed_chain(&self, chain: &ChainKey, entries: &[u64]) {
        // A failure loses only what the next start derives again; the
        // chain's answer then lists no entries, and says so in the log.
        if let Err(e) = self.log.store().keep_closed_chain(chain, entries) {
            tracing::error!(error = %e, "a closed chain's entries were not kept");
        }
    }

    fn closed_chain(&self, chain: &ChainKey) -> Option<Vec<u64>> {
        self.log.store().closed_chain(chain).ok().flatten()
    }

    fn applied(&self, index: u64, statement: Arc<Statement>) {
        self.remember(index, statement);
    }
}

impl StoredStatements {
    fn remember(&self, index: u64, statement: Arc<Statement>) {
        let mut newest = self.newest.lock().expect("statement cache lock");
        if newest.by_index.insert(index, statement).is_none() {
            newest.order.push_back(index);
        }
        while newest.order.len() > self.capacity {
            if let Some(old) = newest.order.pop_front() {
                newest.by_index.remove(&old);
            }
        }
    }
}
