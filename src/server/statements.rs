//! Where the server's gate state keeps what it does not hold in memory:
//! the log's own storage (statements, and closed chains' entry indices).
//! The state keeps an open chain's facts (indices, digests, names) in
//! memory and its statements on disk, so a million open chains cost their
//! facts, not their statements.
//!
//! Two bounded caches: the newest statements *applied*, which also holds a
//! batch's statements until the batch is durable (so nothing else may
//! evict them), and a small one of statements *read back*, which anything
//! may fill (a chain's answer to an anonymous reader included) without
//! touching the first.

use std::sync::Arc;

use crate::access::entry::Statement;
use crate::access::gate::{
    stored_statement, ChainKey, StateStorage, StatementCache, StatementCaches,
};
use crate::server::log::Log;

/// Statements read back from storage that stay cached.
pub const READ_BACK_CACHE: usize = 1024;

/// Statements read from the log's storage, the newest cached.
pub struct StoredStatements {
    log: Arc<Log>,
    caches: StatementCaches,
}

impl StoredStatements {
    /// Reads `log`; keeps the newest `capacity` statements applied in
    /// memory. `capacity` must exceed the largest batch, whose statements
    /// are applied before they are durable.
    pub fn new(log: Arc<Log>, capacity: usize) -> Self {
        StoredStatements {
            log,
            caches: StatementCaches::new(
                StatementCache::new(capacity),
                StatementCache::new(READ_BACK_CACHE),
            ),
        }
    }
}

impl StateStorage for StoredStatements {
    fn statement(&self, index: u64) -> Option<Arc<Statement>> {
        self.caches.get_or_read(index, || {
            stored_statement(&self.log.store().entry(index).ok()??)
        })
    }

    fn applied(&self, index: u64, statement: Arc<Statement>) {
        self.caches.applied(index, statement);
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
}
