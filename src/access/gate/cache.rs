//! A bounded map of statements by entry index, the first in going first:
//! what a [`super::StateStorage`] keeps in memory of the statements it
//! otherwise reads back (the server's from its log, a replay's from its
//! spill file).

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use crate::access::entry::Statement;

/// At most `capacity` statements; inserting one more drops the oldest.
pub struct StatementCache {
    capacity: usize,
    by_index: HashMap<u64, Arc<Statement>>,
    order: VecDeque<u64>,
}

impl StatementCache {
    pub fn new(capacity: usize) -> StatementCache {
        StatementCache {
            capacity: capacity.max(1),
            by_index: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    pub fn insert(&mut self, index: u64, statement: Arc<Statement>) {
        if self.by_index.insert(index, statement).is_none() {
            self.order.push_back(index);
        }
        while self.order.len() > self.capacity {
            if let Some(old) = self.order.pop_front() {
                self.by_index.remove(&old);
            }
        }
    }

    pub fn get(&self, index: u64) -> Option<Arc<Statement>> {
        self.by_index.get(&index).cloned()
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
}
