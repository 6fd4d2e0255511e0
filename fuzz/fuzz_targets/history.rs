//! The gate and the audit on arbitrary histories: the fuzzer's bytes are
//! a run of leaves (each a 2-byte big-endian length, then that many
//! bytes), appended after the cast's history (rules version 2). Every leaf
//! goes through what the gate and an auditor do with a log they did not
//! write: decode, `signing_key`, `validate`, `gate::check`, `apply`; and
//! the whole log through the auditor's replay, to its end. Leaves need not
//! decode or validate (a hostile log may hold anything).
//!
//! Nothing may panic.
//!
//!   RUSTC_BOOTSTRAP=1 cargo fuzz run history -- -max_total_time=120

#![no_main]

use std::sync::OnceLock;

use gatelog::access::entry::{self, DecodedEntry, Limits};
use gatelog::access::gate::{self, GateState};
use gatelog::access::replay::{Auditor, Period};
use gatelog::tlog::checkpoint::Checkpoint;
use gatelog::tlog::merkle::{leaf_hash, CompactRange};
use gatelog_fuzz::{verifiers, AllowAll, Cast, NOW};
use libfuzzer_sys::fuzz_target;

/// At most this many fuzzed leaves per input: the history is the point,
/// not its length.
const MAX_LEAVES: usize = 64;

static CAST: OnceLock<Cast> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    let cast = CAST.get_or_init(Cast::new);
    let mut leaves: Vec<Vec<u8>> = cast.history.iter().map(|a| a.leaf.clone()).collect();
    let mut rest = data;
    while rest.len() >= 2 && leaves.len() < cast.history.len() + MAX_LEAVES {
        let n = u16::from_be_bytes([rest[0], rest[1]]) as usize;
        let n = n.min(rest.len() - 2);
        leaves.push(rest[2..2 + n].to_vec());
        rest = &rest[2 + n..];
    }

    // The gate, leaf by leaf, on a state built from the same log.
    let (log, admins) = verifiers(cast);
    let mut state = GateState::new(log.clone(), admins.clone());
    for (i, leaf) in leaves.iter().enumerate() {
        let Ok(d) = DecodedEntry::decode(leaf) else {
            continue;
        };
        if let Ok(key) = state.signing_key(&d) {
            let _ = entry::verify(&key, &d.signed.statement, &d.signed.signature);
        }
        if entry::validate(&d, NOW, &Limits::default()).is_ok() {
            let _ = gate::check(&state, i as u64, &d, &mut AllowAll);
        }
        state.apply(i as u64, &d);
        let _ = state.obligations();
    }

    // The auditor's replay of the whole log.
    let mut auditor = Auditor::new(log.clone(), admins, Box::new(AllowAll), Period::ALL);
    let refs: Vec<&[u8]> = leaves.iter().map(Vec::as_slice).collect();
    auditor.entries(0, &refs);
    let mut range = CompactRange::default();
    for l in &leaves {
        range.push(leaf_hash(l));
    }
    let cp = Checkpoint {
        origin: log.name().to_string(),
        size: leaves.len() as u64,
        root: range.root(),
        extensions: vec![],
    };
    let (summary, _) = auditor.finish(&cp, NOW);
    assert!(summary.tree_verified);
});
