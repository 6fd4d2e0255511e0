//! Signature checks for the HTTP workers, in batches: each submission's
//! check waits in a queue, and one task verifies whatever has queued in
//! one batch verification (bisected when it fails), on the blocking pool.
//! Under load a batch fills while the previous one runs, so a signature
//! costs what it costs in a batch (about half a single check), and a
//! flood of bad signatures costs the flood's own batches, never the
//! sequencer's thread.

use ed25519_dalek::VerifyingKey;
use tokio::sync::{mpsc, oneshot};

use crate::access::entry::{DecodedEntry, VerifiedKey};

/// Most signatures in one batch.
const MAX_BATCH: usize = 256;

/// Most checks waiting; beyond it a submission waits for room.
const QUEUE: usize = 4 * MAX_BATCH;

struct Check {
    entry: DecodedEntry,
    key: VerifyingKey,
    reply: oneshot::Sender<(DecodedEntry, Option<VerifiedKey>)>,
}

/// The queue of signature checks.
#[derive(Clone)]
pub struct BatchVerifier {
    tx: mpsc::Sender<Check>,
}

impl BatchVerifier {
    /// Starts the batching task on `runtime`.
    pub fn start_on(runtime: &tokio::runtime::Runtime) -> BatchVerifier {
        let (tx, rx) = mpsc::channel(QUEUE);
        runtime.spawn(run(rx));
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
        let check = Check { entry, key, reply };
        if let Err(mpsc::error::SendError(check)) = self.tx.send(check).await {
            // The task is gone (shutdown): check here.
            let verified = VerifiedKey::check(check.key, &check.entry);
            return (check.entry, verified);
        }
        answer.await.expect("the batch task answers every check")
    }
}

async fn run(mut rx: mpsc::Receiver<Check>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let checks = std::mem::take(&mut batch);
        let done = tokio::task::spawn_blocking(move || {
            let pairs: Vec<(VerifyingKey, &DecodedEntry)> =
                checks.iter().map(|c| (c.key, &c.entry)).collect();
            let verified = VerifiedKey::check_batch(&pairs);
            drop(pairs);
            for (check, verified) in checks.into_iter().zip(verified) {
                let _ = check.reply.send((check.entry, verified));
            }
        })
        .await;
        if done.is_err() {
            tracing::error!("a signature batch panicked; its submissions get no answer");
        }
    }
}
