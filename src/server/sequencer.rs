//! The sequencer: one thread that batches submissions (by count and by
//! delay), deduplicates them, assigns indices, and commits the entries,
//! the changed tiles and a newly signed checkpoint in one fsync'd write.
//! Only then does it answer each submission, with its index and an
//! inclusion proof against that checkpoint.
//!
//! An [`Admission`] (the gate, for gatelog entries) decides in log order
//! what each new submission becomes: appended, replaced by the log's
//! record of a refusal, or rejected without logging anything.
//!
//! The queue in front of it is bounded: when full, submissions are
//! refused at once ([`SubmitError::Overloaded`]) instead of piling up.
//!
//! On a shared store (several nodes on one log) each batch is decided
//! under the store's sequencing lock, after catching up on what other
//! nodes committed (their entries go through [`Admission::follow`], so the
//! gate sees one log in one order); an idle sequencer catches up every
//! [`LogStore::shared`] interval, so the node serves a fresh checkpoint.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::mpsc::{self, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use thiserror::Error;
use tokio::sync::oneshot;

use crate::access::entry::{Body, DecodedEntry, VerifiedKey};
use crate::access::gate::{Refusal, Rejection};
use crate::server::log::{Log, LogHead};
use crate::server::store::{self, Commit, LogStore, StoreError};
use crate::tlog::checkpoint::Checkpoint;
use crate::tlog::merkle::{leaf_hash, verify_inclusion, Hash, Prover};
use crate::tlog::tiles::{append_leaves, Overlay, TileNodes, TileReader};

/// Batching limits.
#[derive(Clone, Debug)]
pub struct SequencerConfig {
    /// Most submissions in one batch.
    pub max_batch_size: usize,
    /// Longest a batch waits for more submissions after its first.
    pub max_batch_delay: Duration,
    /// Most submissions waiting for the sequencer.
    pub max_pending: usize,
    /// Most entry bytes waiting for the sequencer (queued or in the
    /// batch being committed).
    pub max_pending_bytes: usize,
}

/// A sequenced, durable entry and the proof of it.
#[derive(Debug)]
pub struct Appended {
    /// Index of the entry in the log.
    pub index: u64,
    /// Leaf hash of the entry.
    pub leaf_hash: Hash,
    /// Inclusion proof against `head`.
    pub proof: Vec<Hash>,
    /// The checkpoint that covers the entry.
    pub head: Arc<LogHead>,
    /// Whether the entry was already in the log, or came earlier in the
    /// same batch; only the first submission of an entry is not.
    pub duplicate: bool,
    /// Set when the gate refused the submission: it was not appended, and
    /// `index`, `leaf_hash` and `proof` are those of the log's record of
    /// the refusal.
    pub refusal: Option<Refusal>,
}

/// What a new submission becomes.
#[derive(Debug)]
pub enum Admit {
    /// Append it.
    Append,
    /// Append `record` (the log's own entry) in its place.
    Record { record: Vec<u8>, refusal: Refusal },
    /// Append nothing.
    Reject(Rejection),
}

/// What a batch becomes.
#[derive(Debug, Default)]
pub struct Admitted {
    /// The log's own records to append before the batch's entries (e.g.
    /// its clock).
    pub prefix: Vec<Vec<u8>>,
    /// One answer per entry.
    pub answers: Vec<Admit>,
}

/// Decides what new submissions become, in log order. Runs on the
/// sequencer thread, so it may keep state without locks of its own.
pub trait Admission: Send + 'static {
    /// Records the log appends before it takes any submission (a new
    /// log's genesis, or the records of a rules upgrade); `first` is the
    /// index the first gets.
    fn opening(&mut self, first: u64) -> Vec<Vec<u8>>;
    /// The prefix records and one answer per entry; `first` is the index
    /// the first prefix record (then the first `Append` or `Record`)
    /// gets, and each takes the next.
    fn admit(&mut self, first: u64, entries: &[Submitted<'_>]) -> Admitted;
    /// Entries another node committed, from index `first`, taken as they
    /// are (the log holds them already). An error: they are not entries
    /// this admission can follow, and the sequencer stops.
    fn follow(&mut self, first: u64, entries: &[Vec<u8>]) -> Result<(), String>;
    /// Forgets what it decided or followed past the log's committed head
    /// (`size` entries): after storage failed mid-commit, its state is
    /// rebuilt from the log as stored. `Unavailable`: try again later.
    fn reset(&mut self, size: u64) -> Result<(), SubmitError>;
}

/// A new submission as the admission sees it.
pub struct Submitted<'a> {
    pub bytes: &'a [u8],
    /// The entry as the HTTP layer already decoded (and validated) it, so
    /// the sequencer thread does not decode it again.
    pub decoded: Option<&'a DecodedEntry>,
    /// The key the HTTP layer verified the entry's signature with; the
    /// gate checks it again only if the signer's key changed since.
    pub verified_with: Option<VerifiedKey>,
}

/// Why a submission was not sequenced.
#[derive(Debug, Error, Clone)]
pub enum SubmitError {
    #[error("the sequencer queue is full; retry later")]
    Overloaded,
    #[error("the sequencer has stopped (shutdown or storage failure)")]
    Stopped,
    #[error("storage failure while sequencing: {0}")]
    Storage(String),
    #[error("storage unavailable, nothing was appended: {0}")]
    Unavailable(String),
    /// Storage failed after the gate had decided: the batch may or may
    /// not be in the log (a duplicate submission gets its index).
    #[error("storage failed mid-commit, the entry may or may not be logged (submit it again: a logged entry gets its index): {0}")]
    Unknown(String),
    #[error("{}", .0.message)]
    Rejected(Rejection),
}

struct Submission {
    entry: Vec<u8>,
    decoded: Option<DecodedEntry>,
    verified_with: Option<VerifiedKey>,
    leaf: Hash,
    arrived: Instant,
    reply: oneshot::Sender<Result<Appended, SubmitError>>,
}

/// Submits entries to the sequencer thread. Cheap to clone.
#[derive(Clone)]
pub struct SequencerHandle {
    tx: SyncSender<Submission>,
    log: Arc<Log>,
    pending_bytes: Arc<AtomicUsize>,
    max_pending_bytes: usize,
}

/// The sequencer thread's handle: its result says why it stopped.
pub type SequencerThread = JoinHandle<Result<(), SubmitError>>;

/// Appends the admission's opening records (durably, before returning),
/// then starts the sequencer thread for `log`. It runs until every handle
/// is dropped (after draining the queue) or storage fails, which its
/// result reports. A log has one sequencer: a second `start` panics.
pub fn start(
    log: Arc<Log>,
    config: SequencerConfig,
    mut admission: Option<Box<dyn Admission>>,
) -> Result<(SequencerHandle, SequencerThread), SubmitError> {
    assert!(log.claim_writer(), "a log has exactly one sequencer");
    if let Some(a) = admission.as_deref_mut() {
        sequence_opening(&log, a)?;
    }
    let (tx, rx) = mpsc::sync_channel(config.max_pending);
    let pending_bytes = Arc::new(AtomicUsize::new(0));
    let handle = SequencerHandle {
        tx,
        log: log.clone(),
        pending_bytes: pending_bytes.clone(),
        max_pending_bytes: config.max_pending_bytes,
    };
    let thread = std::thread::Builder::new()
        .name("sequencer".into())
        .spawn(move || {
            store::this_thread_sequences();
            run(&log, &config, &rx, &pending_bytes, admission.as_deref_mut())
        })
        .expect("spawning the sequencer thread");
    Ok((handle, thread))
}

/// Appends the admission's opening records alone, as one batch, decided
/// under the sequencing lock (on a shared store another node may have
/// written them first).
fn sequence_opening(log: &Log, admission: &mut dyn Admission) -> Result<(), SubmitError> {
    sequence(log, &[], Some(admission), true).map(|_| ())
}

impl SequencerHandle {
    /// Sequences `entry`; resolves once it is durable and covered by a
    /// signed checkpoint.
    /// `decoded` is the entry already decoded, if it was, and
    /// `verified_with` the key its signature verified with, if it did.
    pub async fn submit(
        &self,
        entry: Vec<u8>,
        decoded: Option<DecodedEntry>,
        verified_with: Option<VerifiedKey>,
    ) -> Result<Appended, SubmitError> {
        let len = entry.len();
        let queued = self.pending_bytes.fetch_add(len, Relaxed) + len;
        if queued > self.max_pending_bytes {
            self.pending_bytes.fetch_sub(len, Relaxed);
            self.log.metrics.overloaded.fetch_add(1, Relaxed);
            return Err(SubmitError::Overloaded);
        }
        let (reply, answer) = oneshot::channel();
        let sub = Submission {
            leaf: decoded
                .as_ref()
                .map_or_else(|| leaf_hash(&entry), |d| d.leaf_hash),
            entry,
            decoded,
            verified_with,
            arrived: Instant::now(),
            reply,
        };
        let refused = match self.tx.try_send(sub) {
            Ok(()) => return answer.await.unwrap_or(Err(SubmitError::Stopped)),
            Err(TrySendError::Full(_)) => {
                self.log.metrics.overloaded.fetch_add(1, Relaxed);
                SubmitError::Overloaded
            }
            Err(TrySendError::Disconnected(_)) => SubmitError::Stopped,
        };
        self.pending_bytes.fetch_sub(len, Relaxed);
        Err(refused)
    }
}

fn run(
    log: &Log,
    config: &SequencerConfig,
    rx: &mpsc::Receiver<Submission>,
    pending_bytes: &AtomicUsize,
    mut admission: Option<&mut dyn Admission>,
) -> Result<(), SubmitError> {
    let follow_every = log.store().shared();
    loop {
        let first = match follow_every {
            None => match rx.recv() {
                Ok(s) => s,
                Err(_) => return Ok(()),
            },
            Some(every) => match rx.recv_timeout(every) {
                Ok(s) => s,
                Err(RecvTimeoutError::Disconnected) => return Ok(()),
                Err(RecvTimeoutError::Timeout) => {
                    match catch_up(log, None, admission.as_deref_mut()) {
                        Err(SubmitError::Unavailable(e)) => {
                            log.metrics.store_unavailable.fetch_add(1, Relaxed);
                            tracing::warn!(error = %e, "cannot follow the shared store");
                        }
                        Err(SubmitError::Unknown(e)) => {
                            tracing::warn!(error = %e, "following failed midway; recovering");
                            recover(log, every, admission.as_deref_mut())?;
                        }
                        Err(e) => return Err(e),
                        Ok(()) => {}
                    }
                    continue;
                }
            },
        };
        let mut batch = vec![first];
        let deadline = Instant::now() + config.max_batch_delay;
        while batch.len() < config.max_batch_size {
            // Take what is already queued, then wait out the delay.
            match rx.try_recv() {
                Ok(s) => {
                    batch.push(s);
                    continue;
                }
                Err(mpsc::TryRecvError::Disconnected) => break,
                Err(mpsc::TryRecvError::Empty) => {}
            }
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            match rx.recv_timeout(deadline - now) {
                Ok(s) => batch.push(s),
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => break,
            }
        }
        let bytes: usize = batch.iter().map(|s| s.entry.len()).sum();
        let result = integrate(log, batch, admission.as_deref_mut());
        pending_bytes.fetch_sub(bytes, Relaxed);
        if let (Err(SubmitError::Unknown(e)), Some(every)) = (&result, follow_every) {
            // Several nodes: the database (or its failover) decides what
            // was committed; this node forgets what it decided and
            // follows the log as stored, without a restart.
            tracing::warn!(error = %e, "storage failed mid-commit; recovering from the shared store");
            recover(log, every, admission.as_deref_mut())?;
            continue;
        }
        if let Err(e) = result {
            // Storage may now hold more than we know: stop rather than
            // risk signing a checkpoint inconsistent with what is on disk.
            for s in rx.try_iter() {
                let _ = s.reply.send(Err(SubmitError::Stopped));
            }
            return Err(e);
        }
    }
}

/// Sequences one batch and answers every submission in it. An error means
/// storage failed with the outcome unknown (every submission of the batch
/// has been answered with it); a store that was unavailable before
/// anything was decided only fails the batch.
fn integrate(
    log: &Log,
    batch: Vec<Submission>,
    admission: Option<&mut dyn Admission>,
) -> Result<(), SubmitError> {
    let result = sequence(log, &batch, admission, false);
    let m = &log.metrics;
    match result {
        Ok(Sequenced {
            head,
            outcomes,
            mut prover,
        }) => {
            for (s, outcome) in batch.into_iter().zip(outcomes) {
                let answer = outcome.map_err(SubmitError::Rejected).and_then(|o| {
                    let proof = prover
                        .inclusion(o.index, head.size)
                        .map_err(|e| SubmitError::Storage(e.to_string()))?;
                    Ok(Appended {
                        index: o.index,
                        leaf_hash: o.leaf,
                        proof,
                        head: head.clone(),
                        duplicate: o.duplicate,
                        refusal: o.refusal,
                    })
                });
                m.integration_latency.observe_duration(s.arrived.elapsed());
                let _ = s.reply.send(answer);
            }
            Ok(())
        }
        Err(e) => {
            for s in batch {
                let _ = s.reply.send(Err(e.clone()));
            }
            match e {
                SubmitError::Unavailable(_) => {
                    m.store_unavailable.fetch_add(1, Relaxed);
                    Ok(())
                }
                e => Err(e),
            }
        }
    }
}

/// Where one submission of a committed batch ended up.
struct Outcome {
    index: u64,
    leaf: Hash,
    duplicate: bool,
    refusal: Option<Refusal>,
}

/// A committed batch.
struct Sequenced<'a> {
    /// The head covering the batch.
    head: Arc<LogHead>,
    /// Each submission's outcome, in batch order.
    outcomes: Vec<Result<Outcome, Rejection>>,
    /// Proofs over the committed tree; it remembers the batch's tiles.
    prover: Prover<TileNodes<Overlay<&'a dyn LogStore>>>,
}

/// The log's refusal record at `index`: its leaf hash and what it records.
fn refusal_record(store: &dyn LogStore, index: u64) -> Result<(Hash, Refusal), SubmitError> {
    let corrupt = |why: &str| SubmitError::Storage(format!("refusal record {index}: {why}"));
    let bytes = store
        .entry(index)
        .map_err(unavailable)?
        .ok_or_else(|| corrupt("missing"))?;
    let d = DecodedEntry::decode(&bytes).map_err(|e| corrupt(&e.message))?;
    match &d.statement.body {
        Some(Body::GateRefusal(g)) => Ok((
            leaf_hash(&bytes),
            Refusal {
                violations: g.violations.clone(),
                policy: g.policy.clone(),
            },
        )),
        _ => Err(corrupt("not a gateRefusal")),
    }
}

/// Assigns indices and commits the batch.
/// With `opening`, the batch is empty and the admission's opening
/// records are appended.
fn sequence<'a>(
    log: &'a Log,
    batch: &[Submission],
    admission: Option<&mut dyn Admission>,
    opening: bool,
) -> Result<Sequenced<'a>, SubmitError> {
    // From here on the admission has decided (and its state moved on).
    let storage = |e: &dyn std::fmt::Display| SubmitError::Unknown(e.to_string());
    let store = log.store();
    let mut admission = admission;
    // Most of what other nodes wrote is taken in before the lock, so that
    // the catch-up under it is short.
    if store.shared().is_some() {
        catch_up(log, None, admission.as_deref_mut())?;
    }
    // Nothing is decided before the lock is held: an unavailable store
    // fails the batch and changes nothing.
    let lock = store.lock().map_err(unavailable)?;
    let skew = lock.clock_skew_ms();
    if skew.abs() > MAX_STORE_CLOCK_SKEW_MS {
        return Err(SubmitError::Unavailable(format!(
            "this node's clock is {skew} ms off the database's; it sequences nothing until they agree within {MAX_STORE_CLOCK_SKEW_MS} ms"
        )));
    }
    catch_up(log, Some(lock.checkpoint()), admission.as_deref_mut())?;
    let head = log.head();
    // Each submission is either already stored, or the first or a repeat
    // of a new entry (by its position in `new`).
    enum Seen {
        Stored(u64),
        /// Refused before: the log's refusal record, its index and leaf
        /// hash, and what it records.
        Refused(u64, Hash, Refusal),
        New(usize),
    }
    // Only a gate refuses: an opaque log pays no lookup for refusals.
    let gated = admission.is_some();
    let mut new: Vec<&Submission> = Vec::new();
    let mut in_batch: HashMap<Hash, usize> = HashMap::new();
    let mut seen = Vec::with_capacity(batch.len());
    let leaves: Vec<Hash> = batch.iter().map(|s| s.leaf).collect();
    let logged = store.indices_of(&leaves).map_err(unavailable)?;
    for s in batch {
        if let Some(&k) = in_batch.get(&s.leaf) {
            seen.push((Seen::New(k), true));
        } else if let Some(&i) = logged.get(&s.leaf) {
            if i >= head.size {
                return Err(SubmitError::Storage(format!(
                    "the store indexes a leaf at {i}, beyond its tree of size {}",
                    head.size
                )));
            }
            seen.push((Seen::Stored(i), true));
        } else if let Some(i) = gated
            .then(|| store.refusal_of(&s.leaf))
            .transpose()
            .map_err(unavailable)?
            .flatten()
        {
            // Refused once, refused for good: the same bytes get their
            // first refusal record and append nothing, so nobody can grow
            // the log (or frame a signer) by replaying a refused entry.
            let (leaf, refusal) = refusal_record(store, i)?;
            seen.push((Seen::Refused(i, leaf, refusal), true));
        } else {
            in_batch.insert(s.leaf, new.len());
            seen.push((Seen::New(new.len()), false));
            new.push(s);
        }
    }
    let admitted = match admission {
        Some(a) if opening => Admitted {
            prefix: a.opening(head.size),
            answers: vec![],
        },
        Some(a) if !new.is_empty() => {
            let entries: Vec<Submitted> = new
                .iter()
                .map(|s| Submitted {
                    bytes: &s.entry,
                    decoded: s.decoded.as_ref(),
                    verified_with: s.verified_with,
                })
                .collect();
            let admitted = a.admit(head.size, &entries);
            assert_eq!(admitted.answers.len(), new.len(), "one answer per entry");
            admitted
        }
        _ => Admitted {
            prefix: vec![],
            answers: new.iter().map(|_| Admit::Append).collect(),
        },
    };
    let admits = &admitted.answers;
    // What each new entry became, and the leaves to append: the log's
    // prefix records first.
    type Placed = std::result::Result<(u64, Hash, Option<Refusal>), Rejection>;
    let mut placed: Vec<Placed> = Vec::with_capacity(new.len());
    let mut fresh: Vec<(u64, Hash, &[u8])> = Vec::with_capacity(new.len());
    for record in &admitted.prefix {
        fresh.push((head.size + fresh.len() as u64, leaf_hash(record), record));
    }
    let mut refused: Vec<(Hash, u64)> = Vec::new();
    for (s, admit) in new.iter().zip(admits) {
        let index = head.size + fresh.len() as u64;
        match admit {
            Admit::Append => {
                fresh.push((index, s.leaf, &s.entry));
                placed.push(Ok((index, s.leaf, None)));
            }
            Admit::Record { record, refusal } => {
                let leaf = leaf_hash(record);
                fresh.push((index, leaf, record));
                refused.push((s.leaf, index));
                placed.push(Ok((index, leaf, Some(refusal.clone()))));
            }
            Admit::Reject(r) => placed.push(Err(r.clone())),
        }
    }
    let outcomes = seen
        .into_iter()
        .zip(batch)
        .map(|((at, duplicate), s)| match at {
            Seen::Stored(index) => Ok(Outcome {
                index,
                leaf: s.leaf,
                duplicate,
                refusal: None,
            }),
            Seen::Refused(index, leaf, refusal) => Ok(Outcome {
                index,
                leaf,
                duplicate,
                refusal: Some(refusal),
            }),
            Seen::New(k) => placed[k].clone().map(|(index, leaf, refusal)| Outcome {
                index,
                leaf,
                duplicate,
                refusal,
            }),
        })
        .collect();
    let m = &log.metrics;
    m.duplicates
        .fetch_add((batch.len() - new.len()) as u64, Relaxed);
    let leaves: Vec<Hash> = fresh.iter().map(|f| f.1).collect();
    let changed = if leaves.is_empty() {
        HashMap::new()
    } else {
        append_leaves(store, head.size, &leaves).map_err(|e| storage(&e))?
    };
    let mut prover = Prover::new(TileNodes::new(Overlay {
        changed,
        base: store,
    }));
    if fresh.is_empty() {
        return Ok(Sequenced {
            head,
            outcomes,
            prover,
        });
    }
    let size = head.size + fresh.len() as u64;
    let root = prover.root(size).map_err(|e| storage(&e))?;
    let checkpoint = Checkpoint {
        origin: log.origin().to_string(),
        size,
        root,
        extensions: vec![],
    }
    .sign(log.signer())
    .map_err(|e| storage(&e))?;
    let started = Instant::now();
    lock.commit(&Commit {
        entries: &fresh,
        tiles: &prover.source().reader().changed,
        checkpoint: &checkpoint,
        refused: &refused,
    })
    .map_err(|e| storage(&e))?;
    m.commit_latency.observe_duration(started.elapsed());
    m.batches.fetch_add(1, Relaxed);
    m.batch_size.observe(batch.len() as f64);
    m.appends.fetch_add(fresh.len() as u64, Relaxed);
    let new_head = Arc::new(LogHead {
        size,
        root,
        checkpoint: checkpoint.into(),
    });
    log.set_head(new_head.clone())
        .map_err(|e| SubmitError::Storage(format!("recording the checkpoint served: {e}")))?;
    Ok(Sequenced {
        head: new_head,
        outcomes,
        prover,
    })
}

/// A storage failure before anything was decided: a database out of
/// reach is only unavailable (the batch gets 503, the sequencer goes on);
/// anything else (corruption, a local disk error) stops the sequencer.
fn unavailable(e: StoreError) -> SubmitError {
    match e {
        StoreError::Postgres(e) => SubmitError::Unavailable(e),
        e => SubmitError::Storage(e.to_string()),
    }
}

/// After a failed commit on a shared store: waits for the store, rebuilds
/// the admission's state from the committed log, and catches up.
fn recover(
    log: &Log,
    every: Duration,
    mut admission: Option<&mut dyn Admission>,
) -> Result<(), SubmitError> {
    let started = Instant::now();
    log.metrics.recoveries.fetch_add(1, Relaxed);
    loop {
        while let Err(e) = log.store().checkpoint() {
            if started.elapsed() > Duration::from_secs(5) {
                tracing::warn!(error = %e, "waiting for the shared store");
            }
            std::thread::sleep(every);
        }
        if let Some(a) = admission.as_deref_mut() {
            match a.reset(log.head().size) {
                Ok(()) => {}
                Err(SubmitError::Unavailable(e)) => {
                    tracing::warn!(error = %e, "rebuilding the gate: the shared store is unavailable");
                    std::thread::sleep(every);
                    continue;
                }
                Err(e) => return Err(e),
            }
        }
        match catch_up(log, None, admission.as_deref_mut()) {
            Ok(()) | Err(SubmitError::Unavailable(_)) => return Ok(()),
            // Part of the catch-up went through: start clean again.
            Err(SubmitError::Unknown(e)) => {
                tracing::warn!(error = %e, "catching up failed midway");
                std::thread::sleep(every);
            }
            Err(e) => return Err(e),
        }
    }
}

/// The store's tiles, each read once for one catch-up: its proofs share
/// most of their tiles, and a partial tile read from a shared store is a
/// round trip. Every tile read after the checkpoint it serves is at least
/// as wide as that checkpoint needs (commits write both at once).
struct TilesOnce<'a> {
    store: &'a dyn LogStore,
    read: std::sync::Mutex<TilesRead>,
}

/// Tiles read so far, by (level, index); None: not stored.
type TilesRead = HashMap<(u8, u64), Option<Arc<Vec<u8>>>>;

impl<'a> TilesOnce<'a> {
    fn new(store: &'a dyn LogStore) -> Self {
        TilesOnce {
            store,
            read: Default::default(),
        }
    }
}

impl TileReader for TilesOnce<'_> {
    type Error = StoreError;
    fn read_tile(&self, level: u8, index: u64) -> Result<Option<Arc<Vec<u8>>>, StoreError> {
        let mut read = self.read.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(t) = read.get(&(level, index)) {
            return Ok(t.clone());
        }
        let t = self.store.read_tile(level, index)?;
        read.insert((level, index), t.clone());
        Ok(t)
    }
}

/// Checks that each of `entries`, from index `first`, is in the tree its
/// checkpoint `cp` signs (an inclusion proof from the store's tiles, to
/// `cp`'s root): a node follows only what the signed tree holds. `clean`:
/// nothing of this catch-up was followed yet (a read failure is then only
/// unavailability).
fn check_leaves(
    tree: &mut Prover<TileNodes<&TilesOnce<'_>>>,
    first: u64,
    cp: &Checkpoint,
    entries: &[Vec<u8>],
    clean: bool,
) -> Result<(), SubmitError> {
    for (k, e) in entries.iter().enumerate() {
        let index = first + k as u64;
        let proof = tree.inclusion(index, cp.size).map_err(|e| match clean {
            true => SubmitError::Unavailable(e.to_string()),
            false => SubmitError::Unknown(e.to_string()),
        })?;
        if verify_inclusion(index, cp.size, &leaf_hash(e), &proof, &cp.root).is_err() {
            return Err(SubmitError::Storage(format!(
                "entry {index} is not in the tree the store's checkpoint of size {} signs: refusing to follow it",
                cp.size
            )));
        }
    }
    Ok(())
}

/// Most a node's clock may be off the shared store's before it stops
/// sequencing: the log's clock is assigned under the lock, and a node far
/// off would date entries out of line with the others.
pub const MAX_STORE_CLOCK_SKEW_MS: i64 = 1000;

/// Entries read at a time when catching up.
const CATCH_UP_CHUNK: u64 = 4096;

/// Takes in what other writers committed: the store's checkpoint (read
/// under the lock when given, else fresh) must verify with the log's key
/// and never be behind what this node signed or served; the entries up to
/// it go through the admission, then the node's head moves to it.
fn catch_up(
    log: &Log,
    locked: Option<Option<&str>>,
    mut admission: Option<&mut dyn Admission>,
) -> Result<(), SubmitError> {
    let store = log.store();
    let fresh;
    let text = match locked {
        Some(text) => text,
        None => {
            fresh = store.checkpoint().map_err(unavailable)?;
            fresh.as_deref()
        }
    };
    let Some(text) = text else {
        return Err(SubmitError::Storage(
            "the store holds no checkpoint: it is not this log's".into(),
        ));
    };
    let head = log.head();
    if *text == *head.checkpoint {
        return Ok(());
    }
    let cp = Checkpoint::open(text.as_bytes(), log.verifier()).map_err(|e| {
        SubmitError::Storage(format!(
            "the store's checkpoint does not verify with the log's key: {e}"
        ))
    })?;
    if cp.size < head.size || (cp.size == head.size && cp.root != head.root) {
        // A failover that lost committed entries, or another log: signing
        // on would fork the history this node has served.
        return Err(SubmitError::Storage(format!(
            "the store's checkpoint (size {}) is behind or beside the one this node served (size {}): refusing to sign",
            cp.size, head.size
        )));
    }
    // The store's tiles must give both roots: its tree extends the one
    // this node served (no fork), and is the one its checkpoint signs.
    let tiles = TilesOnce::new(store);
    let mut tree = Prover::new(TileNodes::new(&tiles));
    let roots = tree
        .root(head.size)
        .and_then(|old| Ok((old, tree.root(cp.size)?)))
        .map_err(|e| SubmitError::Unavailable(e.to_string()))?;
    if roots != (head.root, cp.root) {
        return Err(SubmitError::Storage(format!(
            "the store's tiles do not extend the tree of size {} this node served to the one its checkpoint of size {} signs: refusing to sign",
            head.size, cp.size
        )));
    }
    let mut next = head.size;
    while next < cp.size {
        let count = CATCH_UP_CHUNK.min(cp.size - next);
        // Once some entries went through the admission, a failure is no
        // longer harmless: they would go through again.
        let entries = store
            .entries(next, count)
            .map_err(|e| match next == head.size {
                true => unavailable(e),
                false => SubmitError::Unknown(e.to_string()),
            })?;
        if entries.is_empty() {
            return Err(SubmitError::Storage(format!(
                "entry {next} is missing below the store's checkpoint"
            )));
        }
        check_leaves(&mut tree, next, &cp, &entries, next == head.size)?;
        if let Some(a) = admission.as_deref_mut() {
            a.follow(next, &entries).map_err(SubmitError::Storage)?;
        }
        next += entries.len() as u64;
    }
    log.metrics.followed.fetch_add(cp.size - head.size, Relaxed);
    log.set_head(Arc::new(LogHead {
        size: cp.size,
        root: cp.root,
        checkpoint: text.into(),
    }))
    .map_err(|e| SubmitError::Storage(format!("recording the checkpoint served: {e}")))?;
    Ok(())
}
