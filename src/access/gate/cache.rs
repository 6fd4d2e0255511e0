//! A bounded map of statements by entry index, the first in going first:
//! what a [`super::StateStorage`] keeps in memory of the statements it
//! otherwise reads back (the server's from its log, a replay's from its
//! spill file). Bounded by a count, and optionally by bytes (a statement's
//! encoded size plus [`STATEMENT_OVERHEAD`]).

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use prost::Message;

use crate::access::entry::Statement;

/// What a cached statement costs beyond its encoded size (its decoded
/// form's headers, the map slot, the order): counted against a byte budget.
pub const STATEMENT_OVERHEAD: usize = 512;

/// At most `capacity` statements (and `max_bytes`); inserting one more
/// drops the oldest.
pub struct StatementCache {
    capacity: usize,
    max_bytes: Option<usize>,
    bytes: usize,
    by_index: HashMap<u64, (Arc<Statement>, usize)>,
    order: VecDeque<u64>,
}

impl StatementCache {
    pub fn new(capacity: usize) -> StatementCache {
        StatementCache {
            capacity: capacity.max(1),
            max_bytes: None,
            bytes: 0,
            by_index: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    /// As many statements as fit in `max_bytes`, decoded.
    pub fn with_byte_budget(max_bytes: usize) -> StatementCache {
        StatementCache {
            capacity: usize::MAX,
            max_bytes: Some(max_bytes),
            ..StatementCache::new(1)
        }
    }

    pub fn insert(&mut self, index: u64, statement: Arc<Statement>) {
        // Sized only under a byte budget: the count-bounded cache (the
        // server's hot path) does not walk the statement.
        let size = self
            .max_bytes
            .map_or(0, |_| statement.encoded_len() + STATEMENT_OVERHEAD);
        match self.by_index.insert(index, (statement, size)) {
            Some((_, old)) => self.bytes -= old,
            None => self.order.push_back(index),
        }
        self.bytes += size;
        let max_bytes = self.max_bytes.unwrap_or(usize::MAX);
        while self.order.len() > self.capacity || self.bytes > max_bytes {
            let Some(old) = self.order.pop_front() else {
                break;
            };
            if let Some((_, size)) = self.by_index.remove(&old) {
                self.bytes -= size;
            }
        }
    }

    pub fn get(&self, index: u64) -> Option<Arc<Statement>> {
        self.by_index.get(&index).map(|(st, _)| st.clone())
    }
}

/// The two caches of a storage that reads statements back: the newest
/// *applied* (which also holds a batch's statements until they are
/// durable, so nothing else may evict them) and the last *read back*
/// (which any reader may fill, a chain's answer to an anonymous client
/// included, without touching the first).
pub struct StatementCaches {
    applied: std::sync::Mutex<StatementCache>,
    read_back: std::sync::Mutex<StatementCache>,
}

impl StatementCaches {
    pub fn new(applied: StatementCache, read_back: StatementCache) -> StatementCaches {
        StatementCaches {
            applied: std::sync::Mutex::new(applied),
            read_back: std::sync::Mutex::new(read_back),
        }
    }

    /// `statement`, just applied at `index`.
    pub fn applied(&self, index: u64, statement: Arc<Statement>) {
        self.applied
            .lock()
            .expect("statement cache lock")
            .insert(index, statement);
    }

    /// The statement at `index` from either cache, or else from `read`
    /// (then cached as read back: a chain's statements are read together,
    /// and again for its next entry).
    pub fn get_or_read(
        &self,
        index: u64,
        read: impl FnOnce() -> Option<Arc<Statement>>,
    ) -> Option<Arc<Statement>> {
        let cached = |c: &std::sync::Mutex<StatementCache>| {
            c.lock().expect("statement cache lock").get(index)
        };
        if let Some(st) = cached(&self.applied).or_else(|| cached(&self.read_back)) {
            return Some(st);
        }
        let statement = read()?;
        self.read_back
            .lock()
            .expect("statement cache lock")
            .insert(index, statement.clone());
        Some(statement)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_oldest_goes_first_and_the_capacity_holds() {
        let mut c = StatementCache::new(2);
        for i in 0..3 {
            c.insert(i, Arc::new(Statement::default()));
        }
        assert!(c.get(0).is_none());
        assert!(c.get(1).is_some() && c.get(2).is_some());
        // Inserting an index again does not count twice.
        c.insert(2, Arc::new(Statement::default()));
        assert!(c.get(1).is_some());
    }

    #[test]
    fn a_byte_budget_holds_what_fits() {
        let big = Arc::new(Statement {
            chain_id: "x".repeat(10_000),
            ..Default::default()
        });
        let mut c = StatementCache::with_byte_budget(25_000);
        for i in 0..3 {
            c.insert(i, big.clone());
        }
        assert!(c.get(0).is_none(), "three of 10.5 KB exceed 25 KB");
        assert!(c.get(1).is_some() && c.get(2).is_some());
        assert!(c.bytes <= 25_000);
        c.insert(2, big);
        assert!(c.get(1).is_some(), "an index inserted again counts once");
    }
}
