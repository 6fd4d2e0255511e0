//! Signature checks on a thread of their own, a batch behind the replay.
//!
//! Signatures are most of an audit's work but change nothing the replay
//! needs, so the replay hands each batch's signatures over in chunks and
//! goes on; it collects the verdicts one batch later. When the checker
//! falls behind, the replay thread takes chunks from the queue itself.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;

use ed25519_dalek::VerifyingKey;

use crate::access::entry::{self, Signed};

/// One signature, owned: (key, statement, signature).
pub(super) type Item = Option<(VerifyingKey, Vec<u8>, Vec<u8>)>;

/// Signatures checked as one batch.
pub(super) const CHUNK: usize = 256;

struct Chunk {
    id: u64,
    items: Vec<Item>,
}

#[derive(Default)]
struct Queue {
    chunks: VecDeque<Chunk>,
    done: HashMap<u64, Vec<bool>>,
    closed: bool,
}

#[derive(Default)]
struct Shared {
    queue: Mutex<Queue>,
    /// Signalled when a chunk is queued, a verdict is in, or on close.
    changed: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn check(&self, chunk: Chunk) {
        let signed: Vec<Option<Signed>> = chunk
            .items
            .iter()
            .map(|item| {
                item.as_ref().map(|(key, statement, signature)| Signed {
                    key: *key,
                    statement,
                    signature,
                })
            })
            .collect();
        let verdicts = entry::verify_signed(&signed);
        self.lock().done.insert(chunk.id, verdicts);
        self.changed.notify_all();
    }
}

/// The checking thread and its queue.
pub(super) struct Checker {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
    next_id: u64,
}

/// A batch handed over: the ids of its chunks.
pub(super) struct Ticket(Vec<u64>);

impl Checker {
    pub(super) fn start() -> Checker {
        let shared = Arc::new(Shared::default());
        let worker = shared.clone();
        let thread = std::thread::Builder::new()
            .name("signatures".into())
            .spawn(move || loop {
                let chunk = {
                    let mut q = worker.lock();
                    loop {
                        if let Some(c) = q.chunks.pop_front() {
                            break c;
                        }
                        if q.closed {
                            return;
                        }
                        q = worker
                            .changed
                            .wait(q)
                            .unwrap_or_else(PoisonError::into_inner);
                    }
                };
                // A panic must not leave the replay waiting for a verdict:
                // the chunk's signatures then count as bad.
                let (id, n) = (chunk.id, chunk.items.len());
                let checked =
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| worker.check(chunk)));
                if checked.is_err() {
                    worker.lock().done.insert(id, vec![false; n]);
                    worker.changed.notify_all();
                }
            })
            .expect("starting the signature thread");
        Checker {
            shared,
            thread: Some(thread),
            next_id: 0,
        }
    }

    /// Queues a batch's signatures.
    pub(super) fn submit(&mut self, items: Vec<Item>) -> Ticket {
        let mut ids = Vec::new();
        let mut q = self.shared.lock();
        let mut items = items.into_iter().peekable();
        while items.peek().is_some() {
            let chunk: Vec<Item> = items.by_ref().take(CHUNK).collect();
            ids.push(self.next_id);
            q.chunks.push_back(Chunk {
                id: self.next_id,
                items: chunk,
            });
            self.next_id += 1;
        }
        drop(q);
        self.shared.changed.notify_all();
        Ticket(ids)
    }

    /// Checks queued chunks on this thread while more than `keep` wait.
    pub(super) fn help(&self, keep: usize) {
        loop {
            let chunk = {
                let mut q = self.shared.lock();
                if q.chunks.len() <= keep {
                    return;
                }
                q.chunks.pop_front().expect("non-empty")
            };
            self.shared.check(chunk);
        }
    }

    /// The verdicts of a batch, in order; helps with its chunks still
    /// queued.
    pub(super) fn collect(&self, ticket: Ticket) -> Vec<bool> {
        let mut verdicts = Vec::new();
        for id in ticket.0 {
            loop {
                let mut q = self.shared.lock();
                if let Some(v) = q.done.remove(&id) {
                    verdicts.extend(v);
                    break;
                }
                if let Some(pos) = q.chunks.iter().position(|c| c.id == id) {
                    let chunk = q.chunks.remove(pos).expect("found");
                    drop(q);
                    self.shared.check(chunk);
                    continue;
                }
                drop(
                    self.shared
                        .changed
                        .wait(q)
                        .unwrap_or_else(PoisonError::into_inner),
                );
            }
        }
        verdicts
    }
}

impl Drop for Checker {
    fn drop(&mut self) {
        let mut q = self.shared.lock();
        q.closed = true;
        q.chunks.clear();
        drop(q);
        self.shared.changed.notify_all();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
