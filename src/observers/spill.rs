//! Where the audit and the monitor keep the entries their replay may need
//! again (open chains' entries, delegation grants): the newest in memory
//! up to a budget, the rest in a spill file, read back when a rule or a
//! chain's report asks. Their memory then follows the open chains' facts,
//! not their statements, whatever the log holds.
//!
//! The file is the process's own: created new and unlinked at once, so
//! nothing else can open it and nothing is left behind, even after a
//! crash. Nothing in it is trusted more than memory would be: the replay
//! wrote it. It is rewritten with only what is still kept once what was
//! let go outweighs that (and [`COMPACT_AFTER`]), so it stays within twice
//! what is kept plus that.

use std::collections::{HashMap, VecDeque};
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::access::entry::Statement;
use crate::access::gate::{
    stored_statement, ChainKey, StateStorage, StatementCache, StatementCaches,
};
use crate::access::replay::ReplayStorage;

/// Bytes of entries kept in memory before they go to the file.
pub const MEMORY_BUDGET: usize = 64 << 20;
/// Bytes of statements applied that stay cached, decoded (a replay keeps
/// each entry right after applying it; the cache saves decoding the
/// newest again when a chain's rules read them).
pub const APPLIED_CACHE_BYTES: usize = 32 << 20;
/// Statements read back that stay cached.
const READ_BACK_CACHE: usize = 1024;
/// Bytes let go of in the file before it is rewritten.
pub const COMPACT_AFTER: u64 = 64 << 20;

/// A replay's kept entries: memory first, then a spill file.
pub struct SpilledEntries {
    dir: PathBuf,
    kept: Mutex<Kept>,
    caches: StatementCaches,
}

struct Kept {
    file: File,
    /// The file's length: where the next entry goes.
    end: u64,
    /// Bytes of the file still kept.
    live: u64,
    on_disk: HashMap<u64, (u64, u32)>,
    /// The newest entries, in memory, oldest first in `order` (which may
    /// also hold entries since forgotten).
    recent: HashMap<u64, Vec<u8>>,
    order: VecDeque<u64>,
    recent_bytes: usize,
    budget: usize,
    compact_after: u64,
}

/// What an entry kept in memory costs besides its bytes (its map slot,
/// its place in the order, the allocation), counted against the budget.
const ENTRY_OVERHEAD: usize = 64;

/// A new file in `dir` that only this process can reach: created new,
/// readable by its owner alone, and unlinked at once.
fn unnamed_file(dir: &Path) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    static FILES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let name = format!(
        ".gatelog-spill-{}-{}",
        std::process::id(),
        FILES.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    );
    let path = dir.join(name);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)?;
    std::fs::remove_file(&path)?;
    Ok(file)
}

impl SpilledEntries {
    /// Spills to a new unnamed file in `dir`.
    pub fn create(dir: &Path) -> std::io::Result<SpilledEntries> {
        Self::with_limits(dir, MEMORY_BUDGET, COMPACT_AFTER)
    }

    /// [`SpilledEntries::create`] keeping `budget` bytes of entries in
    /// memory and rewriting the file after `compact_after` bytes are let go.
    pub fn with_limits(
        dir: &Path,
        budget: usize,
        compact_after: u64,
    ) -> std::io::Result<SpilledEntries> {
        let file = unnamed_file(dir).map_err(|e| {
            std::io::Error::new(
                e.kind(),
                format!("creating a spill file in {}: {e}", dir.display()),
            )
        })?;
        Ok(SpilledEntries {
            dir: dir.to_path_buf(),
            kept: Mutex::new(Kept {
                file,
                end: 0,
                live: 0,
                on_disk: HashMap::new(),
                recent: HashMap::new(),
                order: VecDeque::new(),
                recent_bytes: 0,
                budget,
                compact_after,
            }),
            caches: StatementCaches::new(
                StatementCache::with_byte_budget(APPLIED_CACHE_BYTES),
                StatementCache::new(READ_BACK_CACHE),
            ),
        })
    }

    /// Bytes of the spill file (for tests and figures).
    pub fn file_bytes(&self) -> u64 {
        self.lock().end
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Kept> {
        self.kept.lock().expect("spill lock")
    }

    /// A failure of the local disk: the replay cannot go on without what
    /// it kept, and must not guess.
    fn disk_failed(&self, what: &str, e: std::io::Error) -> ! {
        panic!(
            "the replay's spill file in {} failed while {what}: {e}",
            self.dir.display()
        )
    }
}

impl Kept {
    fn write(&mut self, index: u64, leaf: &[u8]) -> std::io::Result<()> {
        self.file.write_all_at(leaf, self.end)?;
        let len = leaf.len() as u32;
        self.on_disk.insert(index, (self.end, len));
        self.end += u64::from(len);
        self.live += u64::from(len);
        Ok(())
    }

    fn read(&self, (offset, len): (u64, u32)) -> std::io::Result<Vec<u8>> {
        let mut leaf = vec![0; len as usize];
        self.file.read_exact_at(&mut leaf, offset)?;
        Ok(leaf)
    }

    /// Moves the oldest entries in memory to the file until memory is
    /// within the budget.
    fn spill(&mut self) -> std::io::Result<()> {
        while self.recent_bytes > self.budget {
            let Some(index) = self.order.pop_front() else {
                break;
            };
            if let Some(leaf) = self.recent.remove(&index) {
                self.recent_bytes -= leaf.len() + ENTRY_OVERHEAD;
                self.write(index, &leaf)?;
            }
        }
        // Forgotten entries leave their index in `order`: drop them
        // before they outnumber the entries kept.
        if self.order.len() > 2 * self.recent.len() + 1024 {
            let recent = &self.recent;
            self.order.retain(|i| recent.contains_key(i));
        }
        Ok(())
    }

    /// Rewrites the file with only what is kept, once what was let go
    /// outweighs it.
    fn compact(&mut self, dir: &Path) -> std::io::Result<()> {
        let dead = self.end - self.live;
        if dead < self.compact_after || dead < self.live {
            return Ok(());
        }
        let mut kept: Vec<(u64, (u64, u32))> = self.on_disk.drain().collect();
        kept.sort_by_key(|(_, (offset, _))| *offset);
        let old = std::mem::replace(&mut self.file, unnamed_file(dir)?);
        self.end = 0;
        self.live = 0;
        for (index, (offset, len)) in kept {
            let mut leaf = vec![0; len as usize];
            old.read_exact_at(&mut leaf, offset)?;
            self.write(index, &leaf)?;
        }
        Ok(())
    }
}

impl StateStorage for SpilledEntries {
    fn statement(&self, index: u64) -> Option<Arc<Statement>> {
        // Decoded where it lies: no copy of an entry kept in memory.
        self.caches.get_or_read(index, || {
            let kept = self.lock();
            match kept.recent.get(&index) {
                Some(leaf) => stored_statement(leaf),
                None => {
                    let at = *kept.on_disk.get(&index)?;
                    match kept.read(at) {
                        Ok(leaf) => stored_statement(&leaf),
                        Err(e) => {
                            drop(kept);
                            self.disk_failed("reading", e)
                        }
                    }
                }
            }
        })
    }

    fn applied(&self, index: u64, statement: Arc<Statement>) {
        self.caches.applied(index, statement);
    }

    // A replay reports a chain when it closes and needs its entries no more.
    fn keep_closed_chain(&self, _: &ChainKey, _: &[u64]) {}

    fn closed_chain(&self, _: &ChainKey) -> Option<Vec<u64>> {
        None
    }
}

impl ReplayStorage for SpilledEntries {
    fn keep(&self, index: u64, leaf: &[u8]) {
        let mut kept = self.lock();
        // Kept again: the newest copy is the one kept.
        if let Some((_, len)) = kept.on_disk.remove(&index) {
            kept.live -= u64::from(len);
        }
        if let Some(old) = kept.recent.insert(index, leaf.to_vec()) {
            kept.recent_bytes -= old.len() + ENTRY_OVERHEAD;
        } else {
            kept.order.push_back(index);
        }
        kept.recent_bytes += leaf.len() + ENTRY_OVERHEAD;
        if let Err(e) = kept.spill() {
            drop(kept);
            self.disk_failed("writing", e);
        }
    }

    fn leaf(&self, index: u64) -> Option<Vec<u8>> {
        let kept = self.lock();
        if let Some(leaf) = kept.recent.get(&index) {
            return Some(leaf.clone());
        }
        let at = *kept.on_disk.get(&index)?;
        match kept.read(at) {
            Ok(leaf) => Some(leaf),
            Err(e) => {
                drop(kept);
                self.disk_failed("reading", e)
            }
        }
    }

    fn forget(&self, indices: &[u64]) {
        let mut kept = self.lock();
        for i in indices {
            if let Some(leaf) = kept.recent.remove(i) {
                kept.recent_bytes -= leaf.len() + ENTRY_OVERHEAD;
            }
            if let Some((_, len)) = kept.on_disk.remove(i) {
                kept.live -= u64::from(len);
            }
        }
        if let Err(e) = kept.compact(&self.dir) {
            drop(kept);
            self.disk_failed("compacting", e);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_spill_past_the_budget_read_back_and_the_file_is_compacted() {
        let dir = std::env::temp_dir();
        let s = SpilledEntries::with_limits(&dir, 100, 200).unwrap();
        let leaf = |i: u64| vec![i as u8; 10 + i as usize % 7];
        for i in 0..100 {
            s.keep(i, &leaf(i));
        }
        assert!(s.lock().recent_bytes <= 100);
        assert!(s.lock().recent.len() <= 1, "64 bytes of overhead each");
        assert!(s.file_bytes() > 800, "most went to the file");
        for i in 0..100 {
            assert_eq!(s.leaf(i), Some(leaf(i)), "entry {i}");
        }
        let first: Vec<u64> = (0..90).collect();
        s.forget(&first);
        assert!(s.leaf(5).is_none(), "forgotten");
        assert!(s.file_bytes() < 200, "rewritten: {}", s.file_bytes());
        for i in 90..100 {
            assert_eq!(s.leaf(i), Some(leaf(i)), "entry {i} after compaction");
        }
        // Nothing named is left in the directory.
        let me = format!(".gatelog-spill-{}-", std::process::id());
        let left = std::fs::read_dir(&dir)
            .unwrap()
            .filter(|e| {
                let n = e.as_ref().unwrap().file_name();
                n.to_string_lossy().starts_with(&me)
            })
            .count();
        assert_eq!(left, 0);
    }

    #[test]
    fn an_entry_kept_again_is_kept_once_and_forgotten_for_good() {
        let s = SpilledEntries::with_limits(&std::env::temp_dir(), 0, 1 << 20).unwrap();
        s.keep(7, b"first");
        assert_eq!(s.lock().live, 5, "on disk at once: no budget");
        s.keep(7, b"second");
        assert_eq!(s.leaf(7).as_deref(), Some(&b"second"[..]));
        assert_eq!(s.lock().live, 6, "only the newest copy is live");
        s.forget(&[7]);
        assert!(s.leaf(7).is_none());
        assert_eq!(s.lock().live, 0);
    }

    #[test]
    fn forgetting_many_entries_kept_in_memory_does_not_grow_the_order() {
        let s = SpilledEntries::with_limits(&std::env::temp_dir(), 1 << 20, 1 << 20).unwrap();
        for i in 0..100_000 {
            s.keep(i, b"entry");
            s.forget(&[i]);
        }
        assert!(s.lock().order.len() <= 1025);
        assert_eq!(s.file_bytes(), 0);
    }
}
