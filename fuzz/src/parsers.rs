//! What each parser fuzz target checks, on arbitrary bytes: nothing may
//! panic, and what parses must survive its own encoding. Shared by the
//! cargo-fuzz targets (`fuzz/fuzz_targets/*.rs`) and by the main crate's
//! `tests/fuzz_corpus.rs`, which replays every committed corpus file
//! through the same functions on every CI run.
//!
//! Uses only `gatelog` (verifier side) and std.

use gatelog::access::entry::DecodedEntry;
use gatelog::access::gate::PolicyEngine;
use gatelog::access::replay::{Auditor, Period};
use gatelog::tlog::checkpoint::Checkpoint;
use gatelog::tlog::cosignature::{AddCheckpoint, CosignatureVerifier};
use gatelog::tlog::equivocation::Equivocation;
use gatelog::tlog::merkle::{leaf_hash, CompactRange};
use gatelog::tlog::note::{Note, NoteSigner};
use gatelog::tlog::policy::Policy;
use gatelog::tlog::tiles::{decode_bundle, encode_bundle, TilePath};
use gatelog::tlog::tlog_proof::TlogProof;

/// What a target checks of one input.
pub type Check = fn(&[u8]);

/// The targets, by name: the working corpus of each is `fuzz/corpus/<name>`,
/// the committed one `fuzz/regressions/<name>`.
pub const TARGETS: &[(&str, Check)] = &[
    ("note", note),
    ("checkpoint", checkpoint),
    ("tile_path", tile_path),
    ("bundle", bundle),
    ("tlog_proof", tlog_proof),
    ("witness_body", witness_body),
    ("policy", policy),
    ("equivocation", equivocation),
    ("audit", audit),
];

/// The log every target's notes are checked against.
fn log_key() -> NoteSigner {
    NoteSigner::from_seed("log.example", [1; 32]).expect("a valid key name")
}

/// A signed note: parse, verify against a known key, and as a checkpoint.
pub fn note(data: &[u8]) {
    let key = log_key().verifier();
    if let Ok(n) = Note::parse(data) {
        for s in &n.signatures {
            let _ = key.verify(n.text.as_bytes(), &s.sig);
        }
    }
    let _ = Note::open(data, std::slice::from_ref(&key));
    let _ = Checkpoint::open(data, &key);
}

/// A checkpoint body: what parses re-encodes to the same text.
pub fn checkpoint(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(cp) = Checkpoint::parse(text) {
        let again = Checkpoint::parse(&cp.to_text()).expect("an encoded checkpoint parses");
        assert_eq!(again, cp);
    }
}

/// A tile path (what follows `tile/`): only the canonical spelling of a
/// tile parses, so what parses prints back exactly.
pub fn tile_path(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(p) = TilePath::parse(text) {
        assert_eq!(
            p.to_string(),
            format!("tile/{text}"),
            "a non-canonical tile path parsed"
        );
    }
}

/// An entry bundle: what decodes encodes back to the same bytes.
pub fn bundle(data: &[u8]) {
    if let Ok(entries) = decode_bundle(data) {
        assert_eq!(encode_bundle(entries.iter().copied()), data);
    }
}

/// A tlog-proof bundle: parse, verify against a known key.
pub fn tlog_proof(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(p) = TlogProof::parse(text) {
        let _ = p.verify(&leaf_hash(b"entry"), &log_key().verifier());
    }
}

/// A tlog-witness add-checkpoint body: what parses re-encodes and parses
/// to the same request.
pub fn witness_body(data: &[u8]) {
    if let Ok(req) = AddCheckpoint::parse(data) {
        let again =
            AddCheckpoint::parse(req.encode().as_bytes()).expect("an encoded request parses");
        assert_eq!(again, req);
        let witness = CosignatureVerifier::parse(&witness_vkey()).expect("a valid vkey");
        if let Ok(n) = Note::parse(req.checkpoint.as_bytes()) {
            for s in &n.signatures {
                let _ = witness.verify(&n.text, s);
            }
        }
    }
}

fn witness_vkey() -> String {
    gatelog::tlog::cosignature::CosignatureSigner::from_seed("w.example", [2; 32])
        .expect("a valid key name")
        .verifier()
        .to_vkey()
}

/// A tlog-policy file; a policy that parses checks a note.
pub fn policy(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(p) = Policy::parse(text) {
        let note = gatelog::tlog::checkpoint::Checkpoint {
            origin: "log.example".into(),
            size: 1,
            root: leaf_hash(b"x"),
            extensions: vec![],
        }
        .sign(&log_key())
        .expect("signs");
        let _ = p.verify(note.as_bytes());
    }
}

/// An equivocation evidence file: parse, then verify against a known key.
pub fn equivocation(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(e) = Equivocation::parse(text) {
        let _ = e.verify(&log_key().verifier());
    }
}

/// The auditor fed an arbitrary log: the bytes as an entry bundle (or,
/// when they are not one, as a single entry), replayed and finished
/// against the checkpoint of those entries and against a wrong one.
pub fn audit(data: &[u8]) {
    let entries: Vec<&[u8]> = decode_bundle(data).unwrap_or_else(|_| vec![data]);
    let admins = vec![NoteSigner::from_seed("admin", [3; 32])
        .expect("valid")
        .verifier()];
    for wrong_root in [false, true] {
        let mut auditor = Auditor::new(
            log_key().verifier(),
            admins.clone(),
            Box::new(AllowAll),
            Period::ALL,
        );
        let mut range = CompactRange::default();
        for (i, chunk) in entries.chunks(7).enumerate() {
            for h in auditor.entries((i * 7) as u64, chunk) {
                range.push(h);
            }
            let _ = auditor.take_output();
        }
        let mut root = range.root();
        if wrong_root {
            root[0] ^= 1;
        }
        let cp = Checkpoint {
            origin: "log.example".into(),
            size: range.size(),
            root,
            extensions: vec![],
        };
        let _ = auditor.finish(&cp, 1_800_000_000_000);
    }
    for e in &entries {
        let _ = DecodedEntry::decode(e);
    }
}

/// Rule 7 without Cedar (not in the verifier-only build): allows all.
pub struct AllowAll;

impl PolicyEngine for AllowAll {
    fn compile(
        &mut self,
        _: &gatelog::access::entry::proto::PolicyPublication,
    ) -> Result<(), String> {
        Ok(())
    }

    fn allows(
        &mut self,
        _: &gatelog::access::entry::proto::PolicyPublication,
        _: &gatelog::access::gate::IntentFacts,
    ) -> Result<bool, String> {
        Ok(true)
    }
}
