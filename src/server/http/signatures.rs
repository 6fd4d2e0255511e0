//! Signature checks for the HTTP workers, in batches: each submission's
//! check waits in a queue, and one thread of its own verifies whatever
//! has queued in one batch verification (bisected when it fails). Under
//! load a batch fills while the previous one runs, so a signature costs
//! what it costs in a batch (about half a single check), and a flood of
//! bad signatures costs the flood's own batches, never the sequencer's
//! thread. A thread, not the blocking pool: a task per batch there churned
//! threads (and their fresh stack pages) under load.

use std::sync::mpsc::{self, TrySendError};
use std::sync::Arc;

use ed25519_dalek::VerifyingKey;
use tokio::sync::oneshot;

use crate::access::entry::{DecodedEntry, VerifiedKey};
use crate::server::log::Log;
use crate::server::metrics::Metrics;

/// Most signatures in one batch.
const MAX_BATCH: usize = 256;

/// Most checks waiting; beyond it a submission is checked where it is.
const QUEUE: usize = 4 * MAX_BATCH;

struct Check {
    entry: DecodedEntry,
    key: VerifyingKey,
    reply: oneshot::Sender<(DecodedEntry, Option<VerifiedKey>)>,
}

/// The queue of signature checks.
#[derive(Clone)]
pub struct BatchVerifier {
    tx: mpsc::SyncSender<Check>,
}

impl BatchVerifier {
    /// Starts the verifying thread.
    /// Starts the verifying thread, which reports its batch sizes to
    /// `log`'s metrics.
    pub fn start(log: Arc<Log>) -> BatchVerifier {
        let (tx, rx) = mpsc::sync_channel(QUEUE);
        std::thread::Builder::new()
            .name("gatelog-signatures".into())
            .spawn(move || run(rx, &log.metrics))
            .expect("starting the signature thread");
        BatchVerifier { tx }
    }

    /// Checks `entry`'s signature with `key`; the entry back, and the key
    /// if it verified.
    pub async fn check(
        &self,
        entry: DecodedEntry,
        key: VerifyingKey,
    ) -> (DecodedEntry, Option<VerifiedKey>) {
        let (reply, answer) = oneshot::channel();
        match self.tx.try_send(Check { entry, key, reply }) {
            Ok(()) => answer
                .await
                .expect("the signature thread answers every check"),
            // Queue full, or the thread gone: check here.
            Err(TrySendError::Full(c) | TrySendError::Disconnected(c)) => {
                let verified = VerifiedKey::check(c.key, &c.entry);
                (c.entry, verified)
            }
        }
    }
}

fn run(rx: mpsc::Receiver<Check>, metrics: &Metrics) {
    while let Ok(first) = rx.recv() {
        let mut checks = vec![first];
        while checks.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(c) => checks.push(c),
                Err(_) => break,
            }
        }
        metrics.signature_batch.observe(checks.len() as f64);
        let pairs: Vec<(VerifyingKey, &DecodedEntry)> =
            checks.iter().map(|c| (c.key, &c.entry)).collect();
        let verified = VerifiedKey::check_batch(&pairs);
        drop(pairs);
        for (check, verified) in checks.into_iter().zip(verified) {
            let _ = check.reply.send((check.entry, verified));
        }
    }
}
