//! Follows a log's entries: fetches the entry bundles up to a checkpoint
//! the monitor accepted, one bundle at a time, and replays them through
//! the auditor's verified replay ([`Auditor`]: signatures, the gate's
//! rules, the log's own records). At the end of each pass the entries must
//! hash to the checkpoint's root; if they do not, the log served entries
//! its checkpoint does not commit to, and the follower says so with the
//! evidence. Break-glass obligations and findings then come from the log's
//! own signed history, checked, not from what its API claims.
//!
//! Memory: one bundle of entries at a time, plus the auditor's state (open
//! chains' facts; their entries are in the monitor's spill file).

use std::sync::Arc;
use std::time::Duration;

use hyper::Uri;
use sha2::{Digest, Sha256};

use crate::access::entry::DecodedEntry;
use crate::access::gate::Obligation;
use crate::access::replay::{Auditor, Finding, Period, ReplayStorage};
use crate::sys::client::http_get;
use crate::tlog::checkpoint::Checkpoint;
use crate::tlog::merkle::{hex, leaf_hash, CompactRange};
use crate::tlog::note::NoteVerifier;
use crate::tlog::tiles::{decode_bundle, TileKind, TilePath};

/// Entries per full entry bundle.
const BUNDLE: u64 = 256;

/// Findings a pass holds until it ends; past this they are counted (a
/// hostile log can break a rule with every entry).
pub const MAX_PENDING_FINDINGS: usize = 10_000;

/// Why a pass stopped.
#[derive(Debug)]
pub enum FollowError {
    /// The log could not be read (down, slow, 5xx): try again later.
    Outage(String),
    /// The entries served do not hash to the checkpoint the log signed:
    /// what was fetched, for the evidence file.
    Mismatch {
        reason: String,
        /// Each bundle fetched in the pass: its path and SHA-256.
        bundles: Vec<(String, String)>,
    },
}

/// Entries fetched, checked and replayed so far.
pub struct Follower {
    /// The leaves replayed so far (a pass cut short by an outage resumes
    /// after the last one: nothing is replayed twice).
    range: CompactRange,
    /// How many of them hash to a checkpoint the monitor accepted.
    checked: u64,
    /// Findings of the pass, up to [`MAX_PENDING_FINDINGS`], and how many
    /// more there were.
    findings: Vec<Finding>,
    findings_not_kept: u64,
    /// The verified replay; None when the log holds no gatelog entries.
    auditor: Option<Auditor>,
    /// Why entries are not replayed (the log's first entry is not a
    /// gatelog entry: an opaque log).
    not_gatelog: Option<String>,
}

impl Follower {
    /// Follows the log with key `log_key` from its first entry; `admins`
    /// are the bootstrap admins of a log made by an earlier release (a
    /// newer log names its own). Open chains' entries are kept in
    /// `storage`.
    pub fn new(
        log_key: NoteVerifier,
        admins: Vec<NoteVerifier>,
        storage: Arc<dyn ReplayStorage>,
    ) -> Follower {
        let engine = Box::new(crate::access::cedar::CedarEngine::default());
        let auditor = Auditor::keeping_on(log_key, admins, engine, Period::ALL, storage);
        Follower {
            range: CompactRange::default(),
            checked: 0,
            findings: Vec::new(),
            findings_not_kept: 0,
            auditor: Some(auditor),
            not_gatelog: None,
        }
    }

    /// Entries checked against a checkpoint.
    pub fn size(&self) -> u64 {
        self.checked
    }

    /// Why the entries are not gatelog entries, if they are not.
    pub fn not_gatelog(&self) -> Option<&str> {
        self.not_gatelog.as_deref()
    }

    /// Open obligations, earliest deadline first.
    pub fn obligations(&self) -> Vec<&Obligation> {
        self.auditor
            .as_ref()
            .map_or_else(Vec::new, |a| a.obligations())
    }

    /// Replays the entries `first..` of one bundle into the auditor.
    fn replay(&mut self, first: u64, entries: &[&[u8]]) {
        debug_assert_eq!(first, self.range.size());
        for e in entries {
            self.range.push(leaf_hash(e));
        }
        if first == 0 && self.not_gatelog.is_none() {
            if let Some(Err(e)) = entries.first().map(|e| DecodedEntry::decode(e)) {
                // A gatelog log's first entry is always one: this log
                // holds other entries, and nothing here is a finding.
                self.not_gatelog = Some(format!("entry 0 is not a gatelog entry: {e}"));
                self.auditor = None;
            }
        }
        if let Some(a) = &mut self.auditor {
            a.entries(first, entries);
            // Taken as they come, so a pass over millions of entries holds
            // none of their chains and a bounded number of findings.
            a.let_go_of_reports();
            self.keep_findings();
        }
    }

    fn keep_findings(&mut self) {
        let Some(a) = &mut self.auditor else { return };
        for f in a.take_findings() {
            if self.findings.len() < MAX_PENDING_FINDINGS {
                self.findings.push(f);
            } else {
                self.findings_not_kept += 1;
            }
        }
    }

    /// Findings past [`MAX_PENDING_FINDINGS`] since the last call, counted
    /// but not kept.
    pub fn take_findings_not_kept(&mut self) -> u64 {
        std::mem::take(&mut self.findings_not_kept)
    }

    /// Findings on the entries replayed so far, not yet taken.
    pub fn take_findings(&mut self) -> Vec<Finding> {
        if let Some(a) = &mut self.auditor {
            a.settle_pending();
            // Chain reports are the audit's, not the monitor's.
            a.let_go_of_reports();
        }
        self.keep_findings();
        std::mem::take(&mut self.findings)
    }
}

/// One pass: fetches the log's entries from the follower's size up to
/// `cp.size`, bundle by bundle, replaying each into the follower (locked
/// only while it replays), and checks that they hash to `cp.root`.
pub async fn follow(
    follower: &std::sync::Mutex<Follower>,
    log: &Uri,
    cp: &Checkpoint,
    timeout: Duration,
) -> Result<(), FollowError> {
    let from = follower.lock().expect("follower").range.size();
    let mut bundles = Vec::new();
    let mut next = from;
    while next < cp.size {
        let index = next / BUNDLE;
        let width = (cp.size - index * BUNDLE).min(BUNDLE);
        let path = TilePath {
            kind: TileKind::Entries,
            index,
            width,
        };
        let (status, body) = http_get(log, &format!("/{path}"), timeout)
            .await
            .map_err(FollowError::Outage)?;
        if status != 200 {
            return Err(FollowError::Outage(format!(
                "GET /{path} answered {status}"
            )));
        }
        bundles.push((format!("/{path}"), hex(&Sha256::digest(&body))));
        let mismatch = |reason: String, bundles: &[(String, String)]| FollowError::Mismatch {
            reason,
            bundles: bundles.to_vec(),
        };
        let bundle = decode_bundle(&body)
            .map_err(|e| mismatch(format!("/{path} is not an entry bundle: {}", e.0), &bundles))?;
        if bundle.len() as u64 != width {
            let reason = format!("/{path} holds {} entries, not {width}", bundle.len());
            return Err(mismatch(reason, &bundles));
        }
        let skip = (next - index * BUNDLE) as usize;
        follower
            .lock()
            .expect("follower")
            .replay(next, &bundle[skip..]);
        next = index * BUNDLE + width;
    }
    let mut f = follower.lock().expect("follower");
    if f.range.size() != cp.size || f.range.root() != cp.root {
        let reason = format!(
            "the entries served up to {} do not hash to the checkpoint's root: the log serves entries its checkpoint does not commit to",
            cp.size
        );
        return Err(FollowError::Mismatch { reason, bundles });
    }
    f.checked = cp.size;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access::entry::build::{self, delta, human, target};
    use crate::access::entry::{self, millis};
    use crate::access::replay::MemoryEntries;
    use crate::tlog::note::NoteSigner;
    use prost::Message;

    #[test]
    fn replays_gatelog_entries_and_leaves_other_logs_alone() {
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
        let leaves = [b"x".to_vec(), entry::sign(&carol, &bg).encode_to_vec()];
        let mut f = Follower::new(log.verifier(), vec![], Arc::new(MemoryEntries::default()));
        f.replay(0, &[&leaves[0]]);
        assert!(f.not_gatelog().is_some(), "b\"x\" is not an entry");
        assert!(f.take_findings().is_empty());
        let mut f = Follower::new(log.verifier(), vec![], Arc::new(MemoryEntries::default()));
        f.replay(0, &[&leaves[1]]);
        let open = f.obligations();
        assert_eq!(open.len(), 1);
        assert_eq!(open[0].deadline_ms, millis(&entry::timestamp(5_000)));
        // Carol was never registered: the verified replay says so.
        let found = f.take_findings();
        assert!(!found.is_empty(), "an unregistered signer is a finding");
    }
}
