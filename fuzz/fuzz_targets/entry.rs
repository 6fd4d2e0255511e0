//! Entry decoding and the gate, on arbitrary bytes.
//!
//! As a leaf: `DecodedEntry::decode`, then `validate` (fixed now, default
//! limits), `entry_json`, `GateState::signing_key` (and the signature
//! check), `gate::check` on entries that validate (the server validates
//! before the gate, whose code relies on it), and `GateState::apply` to a
//! fresh state (what an auditor's replay does with any leaf).
//!
//! As UTF-8: `statement_from_json`; a statement that parses must survive
//! sign → encode → decode unchanged and verify. Signed by its actor when
//! that is one of the cast (else by the admin), it then goes through the
//! same checks as a leaf: JSON is far easier for the fuzzer to bend into
//! statements the gate looks at closely.
//!
//! Nothing may panic.
//!
//!   cargo run --manifest-path fuzz/Cargo.toml --bin entry-seeds -- fuzz/corpus/entry
//!   RUSTC_BOOTSTRAP=1 cargo fuzz run entry -- -max_total_time=120

#![no_main]

use std::sync::OnceLock;

use gatelog::access::entry::{self, DecodedEntry, Limits};
use gatelog::access::gate::{self, GateState};
use gatelog_fuzz::{verifiers, AllowAll, Cast, NOW, ORIGIN};
use libfuzzer_sys::fuzz_target;
use prost::Message;

static CAST: OnceLock<Cast> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    let cast = CAST.get_or_init(Cast::new);

    if let Ok(decoded) = DecodedEntry::decode(data) {
        judge(cast, &decoded);
    }

    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(mut statement) = entry::statement_from_json(text) {
            // Bound to the cast's log unless it names one.
            if statement.log_origin.is_empty() {
                statement.log_origin = ORIGIN.into();
            }
            let id = statement.actor.as_ref().map_or("", |a| a.id.as_str());
            let key = cast
                .actors
                .iter()
                .find(|(a, _)| a.id == id)
                .map_or(&cast.admin, |(_, k)| k);
            let signed = entry::sign(key, &statement);
            let leaf = signed.encode_to_vec();
            let decoded = DecodedEntry::decode(&leaf).expect("a signed statement decodes");
            assert_eq!(
                *decoded.statement, statement,
                "the statement changed in transit"
            );
            assert_eq!(decoded.signed, signed);
            let vk = ed25519_dalek::VerifyingKey::from_bytes(&key.verifier().public_key())
                .expect("a valid key");
            assert!(entry::verify(
                &vk,
                &decoded.signed.statement,
                &decoded.signed.signature
            ));
            judge(cast, &decoded);
        }
    }
});

/// Everything the log and an auditor do with a decoded leaf.
fn judge(cast: &Cast, decoded: &DecodedEntry) {
    let valid = entry::validate(decoded, NOW, &Limits::default()).is_ok();
    let _ = entry::entry_json(decoded);
    let _ = decoded.kind().name();
    if let Ok(key) = cast.state.signing_key(decoded) {
        let _ = entry::verify(&key, &decoded.signed.statement, &decoded.signed.signature);
    }
    if valid {
        let _ = gate::check(&cast.state, cast.next, decoded, &mut AllowAll);
    }
    let (log, admins) = verifiers(cast);
    let mut replay = GateState::new(log, admins);
    replay.apply(cast.next, decoded);
    if let Some(chain) = replay.chain(&decoded.statement.chain_id) {
        let _ = replay.status(chain);
    }
    let _ = replay.obligations();
}
