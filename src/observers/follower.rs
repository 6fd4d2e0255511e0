//! Follows a log's entries: fetches the entry bundles up to a checkpoint
//! the monitor accepted, checks that they hash to that checkpoint's root,
//! and replays them into a [`GateState`]. Break-glass obligations then come
//! from the log's own signed history, not from what its API claims.

use std::time::Duration;

use hyper::Uri;

use crate::access::entry::DecodedEntry;
use crate::access::gate::{GateState, Obligation};
use crate::sys::client::http_get;
use crate::tlog::checkpoint::Checkpoint;
use crate::tlog::merkle::{leaf_hash, CompactRange};
use crate::tlog::note::NoteVerifier;
use crate::tlog::tiles::{decode_bundle, TileKind, TilePath};

/// Entries per full entry bundle.
const BUNDLE: u64 = 256;

/// Entries fetched and replayed so far.
pub struct Follower {
    range: CompactRange,
    state: GateState,
    /// Why entries are not replayed (e.g. the log holds opaque entries).
    not_gatelog: Option<String>,
}

impl Follower {
    /// Follows the log with key `log_key` from its first entry.
    pub fn new(log_key: NoteVerifier) -> Follower {
        Follower {
            range: CompactRange::default(),
            state: GateState::new(log_key, vec![]),
            not_gatelog: None,
        }
    }

    /// Entries checked and replayed.
    pub fn size(&self) -> u64 {
        self.range.size()
    }

    /// Why the entries are not gatelog entries, if they are not.
    pub fn not_gatelog(&self) -> Option<&str> {
        self.not_gatelog.as_deref()
    }

    /// Open break-glass reviews, earliest deadline first.
    pub fn obligations(&self) -> Vec<&Obligation> {
        self.state.obligations()
    }

    /// Takes `entries`, the log's entries from index [`Self::size`] up to
    /// `cp.size`, if together with those already taken they hash to
    /// `cp.root`; otherwise changes nothing.
    pub fn take(&mut self, entries: &[Vec<u8>], cp: &Checkpoint) -> Result<(), String> {
        let mut range = self.range.clone();
        for e in entries {
            range.push(leaf_hash(e));
        }
        if range.size() != cp.size {
            return Err(format!(
                "{} entries do not reach checkpoint size {}",
                range.size(),
                cp.size
            ));
        }
        if range.root() != cp.root {
            return Err(format!(
                "the entries served up to {} do not hash to the checkpoint's root: the log serves entries its checkpoint does not commit to",
                cp.size
            ));
        }
        let first = self.range.size();
        self.range = range;
        for (k, e) in entries.iter().enumerate() {
            if self.not_gatelog.is_some() {
                break;
            }
            match DecodedEntry::decode(e) {
                Ok(d) => {
                    self.state.apply(first + k as u64, &d);
                }
                Err(err) => {
                    self.not_gatelog = Some(format!(
                        "entry {} is not a gatelog entry: {err}",
                        first + k as u64
                    ))
                }
            }
        }
        Ok(())
    }
}

/// Fetches the log's entries from index `from` up to `cp.size` from its
/// entry bundles.
pub async fn fetch_entries(
    log: &Uri,
    from: u64,
    cp: &Checkpoint,
    timeout: Duration,
) -> Result<Vec<Vec<u8>>, String> {
    let mut entries = Vec::new();
    let mut next = from;
    while next < cp.size {
        let index = next / BUNDLE;
        let width = (cp.size - index * BUNDLE).min(BUNDLE);
        let path = TilePath {
            kind: TileKind::Entries,
            index,
            width,
        };
        let (status, body) = http_get(log, &format!("/{path}"), timeout).await?;
        if status != 200 {
            return Err(format!("GET /{path} answered {status}"));
        }
        let bundle = decode_bundle(&body).map_err(|e| format!("/{path}: {}", e.0))?;
        if bundle.len() as u64 != width {
            return Err(format!(
                "/{path} holds {} entries, not {width}",
                bundle.len()
            ));
        }
        let skip = (next - index * BUNDLE) as usize;
        entries.extend(bundle[skip..].iter().map(|e| e.to_vec()));
        next = index * BUNDLE + width;
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access::entry::build::{self, delta, human, target};
    use crate::access::entry::{self, millis};
    use crate::tlog::merkle::{LeafHashes, Prover};
    use crate::tlog::note::NoteSigner;
    use prost::Message;

    fn checkpoint(leaves: &[Vec<u8>]) -> Checkpoint {
        let hashes: Vec<_> = leaves.iter().map(|e| leaf_hash(e)).collect();
        Checkpoint {
            origin: "log".into(),
            size: leaves.len() as u64,
            root: Prover::new(LeafHashes(&hashes))
                .root(leaves.len() as u64)
                .unwrap(),
            extensions: vec![],
        }
    }

    #[test]
    fn replays_checked_entries_and_refuses_others() {
        let log = NoteSigner::from_seed("log", [1; 32]).unwrap();
        let carol = NoteSigner::from_seed("carol", [2; 32]).unwrap();
        let bg = build::break_glass(
            &human("carol"),
            "BG-1",
            target("db", "prod", "carol"),
            delta(&[], &["su"], &[]),
            "incident",
            5_000,
            1_000,
        );
        let leaves = vec![b"x".to_vec(), entry::sign(&carol, &bg).encode_to_vec()];
        let mut f = Follower::new(log.verifier());
        // Entries that do not match the checkpoint change nothing.
        let mut forged = leaves.clone();
        forged[0] = b"y".to_vec();
        assert!(f.take(&forged, &checkpoint(&leaves)).is_err());
        assert_eq!(f.size(), 0);
        f.take(&leaves[..1], &checkpoint(&leaves[..1])).unwrap();
        assert!(f.not_gatelog().is_some(), "b\"x\" is not an entry");
        let mut f = Follower::new(log.verifier());
        f.take(&leaves[1..], &checkpoint(&leaves[1..])).unwrap();
        let open = f.obligations();
        assert_eq!(open.len(), 1);
        assert_eq!(open[0].deadline_ms, millis(&entry::timestamp(5_000)));
    }
}
