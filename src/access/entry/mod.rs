//! The entry model: every leaf is a [`SignedEntry`] carrying the exact
//! bytes of a [`Statement`], its signer and an Ed25519 signature.
//!
//! Pure: decoding, stateless validation ([`validate`]), signing and
//! signature checks, and the canonical proto3 JSON form. What depends on
//! the log's history (who holds which key, what a link points at) is the
//! [`crate::access::gate`]'s job.

mod batch;
pub use batch::Signed;
pub mod build;
pub mod validate;

use std::sync::Arc;

use ed25519_dalek::VerifyingKey;
use prost::Message;
use thiserror::Error;

use crate::tlog::merkle::{leaf_hash, Hash};
use crate::tlog::note::NoteSigner;

/// The generated protobuf types (`proto/gatelog/v1/entry.proto`) and
/// their canonical proto3 JSON mapping.
#[allow(clippy::all, missing_docs)]
pub mod proto {
    include!(concat!(env!("OUT_DIR"), "/gatelog.v1.rs"));
    include!(concat!(env!("OUT_DIR"), "/gatelog.v1.serde.rs"));
}

pub use proto::{statement::Body, ActorKind, SignedEntry, Statement};
pub use validate::{validate, Limits};

/// What every entry signature covers before the statement bytes, so a
/// gatelog signature can never be replayed as another protocol's.
pub const SIGNING_CONTEXT: &[u8] = b"gatelog/v1/statement\n";

/// A decoded entry was refused: which field, and why.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
#[error("{field}: {message}")]
pub struct EntryError {
    /// The offending field, as a proto3 JSON path (e.g.
    /// `statement.decision.expiresAt`).
    pub field: String,
    pub message: String,
}

impl EntryError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        EntryError {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// A leaf decoded and structurally valid; nothing about the log's state
/// has been checked yet.
#[derive(Debug, Clone)]
pub struct DecodedEntry {
    pub signed: SignedEntry,
    /// Shared: the gate keeps the statements of open chains.
    pub statement: Arc<Statement>,
    /// The leaf hash of the exact submitted bytes.
    pub leaf_hash: Hash,
}

impl DecodedEntry {
    /// Decodes a leaf (a `SignedEntry`) and its statement without
    /// validating them.
    pub fn decode(leaf: &[u8]) -> Result<Self, EntryError> {
        let signed = SignedEntry::decode(leaf)
            .map_err(|e| EntryError::new("signedEntry", format!("not a SignedEntry: {e}")))?;
        // The signature covers the statement, not this wrapper: only its
        // one canonical encoding is an entry, so nobody can log a copy of
        // someone's signed statement under another leaf hash.
        if signed.encoded_len() != leaf.len() || signed.encode_to_vec() != leaf {
            return Err(EntryError::new(
                "signedEntry",
                "not the canonical encoding of a SignedEntry (fields in order, no unknown fields, minimal varints)",
            ));
        }
        let statement = Statement::decode(signed.statement.as_slice()).map_err(|e| {
            EntryError::new("signedEntry.statement", format!("not a Statement: {e}"))
        })?;
        Ok(DecodedEntry {
            signed,
            statement: Arc::new(statement),
            leaf_hash: leaf_hash(leaf),
        })
    }

    /// The statement's kind.
    pub fn kind(&self) -> Kind {
        Kind::of(&self.statement)
    }
}

/// `SIGNING_CONTEXT || statement`.
pub fn signed_message(statement: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(SIGNING_CONTEXT.len() + statement.len());
    m.extend_from_slice(SIGNING_CONTEXT);
    m.extend_from_slice(statement);
    m
}

/// Encodes and signs `statement` with `key`, whose name is the signer's
/// actor id.
pub fn sign(key: &NoteSigner, statement: &Statement) -> SignedEntry {
    let bytes = statement.encode_to_vec();
    SignedEntry {
        signature: key.sign_bytes(&signed_message(&bytes)).to_vec(),
        signer_id: key.name().to_string(),
        key_id: key.key_id(),
        statement: bytes,
        endorsements: vec![],
    }
}

/// `entry` with `key`'s endorsement of its statement added (another
/// admin co-signing an action that needs M of N).
pub fn endorse(key: &NoteSigner, entry: &mut SignedEntry) {
    entry.endorsements.push(proto::Endorsement {
        signer_id: key.name().to_string(),
        key_id: key.key_id(),
        signature: key.sign_bytes(&signed_message(&entry.statement)).to_vec(),
    });
}

/// Whether `signature` is `key`'s signature over `statement`.
///
/// The same equation as the batch check (so a signature's verdict never
/// depends on its batch): cofactored, with weak keys, small-order or
/// non-canonical R and non-canonical s refused.
pub fn verify(key: &VerifyingKey, statement: &[u8], signature: &[u8]) -> bool {
    batch::verify_batch(&[Signed {
        key: *key,
        statement,
        signature,
    }])
}

/// Checks the signature of every entry whose key is known: one batch
/// verification, bisected when it fails (see [`verify_signed`]).
pub fn verify_all(entries: &[Option<(&DecodedEntry, VerifyingKey)>]) -> Vec<bool> {
    let items: Vec<Option<Signed>> = entries
        .iter()
        .map(|e| {
            e.map(|(d, key)| Signed {
                key,
                statement: &d.signed.statement,
                signature: &d.signed.signature,
            })
        })
        .collect();
    verify_signed(&items)
}

/// An entry's signature, checked: the key it verified with. Made only by
/// [`VerifiedKey::check`], so holding one means the check ran.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VerifiedKey(VerifyingKey);

impl VerifiedKey {
    /// Verifies `entry`'s signature with `key`.
    pub fn check(key: VerifyingKey, entry: &DecodedEntry) -> Option<VerifiedKey> {
        verify(&key, &entry.signed.statement, &entry.signed.signature).then_some(VerifiedKey(key))
    }

    /// Verifies each entry's signature with its key, in one batch
    /// (bisected when it fails; see [`verify_signed`]).
    pub fn check_batch(checks: &[(VerifyingKey, &DecodedEntry)]) -> Vec<Option<VerifiedKey>> {
        let items: Vec<Option<Signed>> = checks
            .iter()
            .map(|(key, d)| {
                Some(Signed {
                    key: *key,
                    statement: &d.signed.statement,
                    signature: &d.signed.signature,
                })
            })
            .collect();
        verify_signed(&items)
            .into_iter()
            .zip(checks)
            .map(|(good, (key, _))| good.then_some(VerifiedKey(*key)))
            .collect()
    }

    /// The key the signature verified with.
    pub fn key(&self) -> VerifyingKey {
        self.0
    }
}

/// Below this many signatures a failed batch is checked one by one (a
/// batch check costs about as much as two single ones, plus setup).
const BISECT_BELOW: usize = 8;

/// Checks each signature (None: no key, so false): one batch
/// verification; when it fails, the batch is bisected, so k bad
/// signatures among n cost about 2·k·log2(n/8) batch checks plus a few
/// single ones, not n single ones (one bad entry per batch no longer sends
/// the batch one by one). A half is not batch-checked when its sibling
/// passed: the bad signature must be in it.
pub fn verify_signed(items: &[Option<Signed<'_>>]) -> Vec<bool> {
    let present: Vec<(usize, Signed)> = items
        .iter()
        .enumerate()
        .filter_map(|(i, s)| s.map(|s| (i, s)))
        .collect();
    let mut good = vec![false; items.len()];
    bisect(&present, false, &mut good);
    good
}

/// Marks the items of `part` that verify; `known_bad` when a failure is
/// known to be in `part`.
fn bisect(part: &[(usize, Signed<'_>)], known_bad: bool, good: &mut [bool]) {
    if part.len() < BISECT_BELOW {
        for (i, s) in part {
            good[*i] = verify(&s.key, s.statement, s.signature);
        }
        return;
    }
    if !known_bad {
        let signed: Vec<Signed> = part.iter().map(|(_, s)| *s).collect();
        if batch::verify_batch(&signed) {
            for (i, _) in part {
                good[*i] = true;
            }
            return;
        }
    }
    let (left, right) = part.split_at(part.len() / 2);
    let signed: Vec<Signed> = left.iter().map(|(_, s)| *s).collect();
    if left.len() >= BISECT_BELOW && batch::verify_batch(&signed) {
        for (i, _) in left {
            good[*i] = true;
        }
        bisect(right, true, good);
    } else {
        bisect(left, left.len() >= BISECT_BELOW, good);
        bisect(right, false, good);
    }
}

#[cfg(test)]
mod bisect_tests {
    use super::*;
    use crate::tlog::note::NoteSigner;

    #[test]
    fn bisection_finds_exactly_the_bad_signatures() {
        let keys: Vec<NoteSigner> = (0..5u8)
            .map(|i| NoteSigner::from_seed(&format!("k{i}"), [i + 1; 32]).unwrap())
            .collect();
        let statements: Vec<Vec<u8>> = (0..100u32).map(|i| i.to_be_bytes().to_vec()).collect();
        let mut sigs: Vec<Vec<u8>> = statements
            .iter()
            .enumerate()
            .map(|(i, st)| keys[i % 5].sign_bytes(&signed_message(st)).to_vec())
            .collect();
        for bad in [0usize, 13, 14, 57, 99] {
            sigs[bad][0] ^= 1;
        }
        let items: Vec<Option<Signed>> = statements
            .iter()
            .zip(&sigs)
            .enumerate()
            .map(|(i, (st, sig))| {
                (i != 50).then(|| Signed {
                    key: VerifyingKey::from_bytes(&keys[i % 5].verifier().public_key()).unwrap(),
                    statement: st,
                    signature: sig,
                })
            })
            .collect();
        let good = verify_signed(&items);
        for (i, g) in good.iter().enumerate() {
            assert_eq!(*g, ![0, 13, 14, 50, 57, 99].contains(&i), "item {i}");
        }
    }
}

/// The kinds of statement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    IdentityRegistration,
    PolicyPublication,
    AccessRequest,
    Recommendation,
    Decision,
    ExecutionIntent,
    ExecutionOutcome,
    BreakGlass,
    Review,
    DelegationGrant,
    Revocation,
    GateRefusal,
    LogParameters,
    LogTime,
    AdminSetChange,
    Suspension,
    ReviewCampaign,
    Certification,
    /// No body, or one this version does not know.
    Unknown,
}

impl Kind {
    pub fn of(statement: &Statement) -> Kind {
        match &statement.body {
            Some(Body::IdentityRegistration(_)) => Kind::IdentityRegistration,
            Some(Body::PolicyPublication(_)) => Kind::PolicyPublication,
            Some(Body::AccessRequest(_)) => Kind::AccessRequest,
            Some(Body::Recommendation(_)) => Kind::Recommendation,
            Some(Body::Decision(_)) => Kind::Decision,
            Some(Body::ExecutionIntent(_)) => Kind::ExecutionIntent,
            Some(Body::ExecutionOutcome(_)) => Kind::ExecutionOutcome,
            Some(Body::BreakGlass(_)) => Kind::BreakGlass,
            Some(Body::Review(_)) => Kind::Review,
            Some(Body::DelegationGrant(_)) => Kind::DelegationGrant,
            Some(Body::Revocation(_)) => Kind::Revocation,
            Some(Body::GateRefusal(_)) => Kind::GateRefusal,
            Some(Body::LogParameters(_)) => Kind::LogParameters,
            Some(Body::LogTime(_)) => Kind::LogTime,
            Some(Body::AdminSetChange(_)) => Kind::AdminSetChange,
            Some(Body::Suspension(_)) => Kind::Suspension,
            Some(Body::ReviewCampaign(_)) => Kind::ReviewCampaign,
            Some(Body::Certification(_)) => Kind::Certification,
            None => Kind::Unknown,
        }
    }

    /// Whether only the log itself writes this kind, under its own key.
    pub fn is_log_record(self) -> bool {
        matches!(
            self,
            Kind::GateRefusal | Kind::LogParameters | Kind::LogTime
        )
    }

    /// The name used in JSON and messages (the body's field name).
    pub fn name(self) -> &'static str {
        match self {
            Kind::IdentityRegistration => "identityRegistration",
            Kind::PolicyPublication => "policyPublication",
            Kind::AccessRequest => "accessRequest",
            Kind::Recommendation => "recommendation",
            Kind::Decision => "decision",
            Kind::ExecutionIntent => "executionIntent",
            Kind::ExecutionOutcome => "executionOutcome",
            Kind::BreakGlass => "breakGlass",
            Kind::Review => "review",
            Kind::DelegationGrant => "delegationGrant",
            Kind::Revocation => "revocation",
            Kind::GateRefusal => "gateRefusal",
            Kind::LogParameters => "logParameters",
            Kind::LogTime => "logTime",
            Kind::AdminSetChange => "adminSetChange",
            Kind::Suspension => "suspension",
            Kind::ReviewCampaign => "reviewCampaign",
            Kind::Certification => "certification",
            Kind::Unknown => "unknown",
        }
    }
}

/// Parses a statement from its canonical proto3 JSON form.
pub fn statement_from_json(json: &str) -> Result<Statement, EntryError> {
    serde_json::from_str(json).map_err(|e| {
        EntryError::new(
            "statement",
            format!(
                "not a Statement in proto3 JSON (line {}, column {}): {e}",
                e.line(),
                e.column()
            ),
        )
    })
}

/// The JSON value of a decoded entry: the statement in canonical proto3
/// JSON beside the signer, key id and signature.
pub fn entry_json(entry: &DecodedEntry) -> serde_json::Value {
    use base64::Engine;
    serde_json::json!({
        "signerId": entry.signed.signer_id,
        "keyId": format!("{:08x}", entry.signed.key_id),
        "signature": base64::engine::general_purpose::STANDARD.encode(&entry.signed.signature),
        "statement": serde_json::to_value(&*entry.statement).unwrap_or_default(),
    })
}

mod timestamp;
pub use timestamp::Timestamp;

/// Milliseconds since the Unix epoch of a protobuf timestamp.
pub fn millis(ts: &Timestamp) -> i64 {
    ts.seconds
        .saturating_mul(1000)
        .saturating_add(i64::from(ts.nanos / 1_000_000))
}

/// A protobuf timestamp `ms` milliseconds after the Unix epoch.
pub fn timestamp(ms: i64) -> Timestamp {
    Timestamp {
        seconds: ms.div_euclid(1000),
        nanos: (ms.rem_euclid(1000) * 1_000_000) as i32,
    }
}

/// `ms` as an RFC 3339 time, as proto3 JSON writes it.
pub fn rfc3339(ms: i64) -> String {
    serde_json::to_value(timestamp(ms))
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::*;

    fn key() -> NoteSigner {
        NoteSigner::from_seed("alice", [7; 32]).unwrap()
    }

    #[test]
    fn sign_then_verify_and_decode_round_trip() {
        let st = Statement {
            chain_id: "CHG-1".into(),
            ..Default::default()
        };
        let signed = sign(&key(), &st);
        let vk = VerifyingKey::from_bytes(&key().verifier().public_key()).unwrap();
        assert!(verify(&vk, &signed.statement, &signed.signature));
        let mut tampered = signed.statement.clone();
        tampered.push(0);
        assert!(!verify(&vk, &tampered, &signed.signature));
        let leaf = signed.encode_to_vec();
        let decoded = DecodedEntry::decode(&leaf).unwrap();
        assert_eq!(*decoded.statement, st);
        assert_eq!(decoded.signed.key_id, key().key_id());
        assert_eq!(decoded.kind(), Kind::Unknown);
    }

    #[test]
    fn garbage_is_not_an_entry() {
        let err = DecodedEntry::decode(&[0xff, 0xff, 0xff]).unwrap_err();
        assert_eq!(err.field, "signedEntry");
    }

    #[test]
    fn json_uses_the_canonical_mapping() {
        let st = Statement {
            actor: Some(Actor {
                id: "pipeline".into(),
                kind: ActorKind::Nhi as i32,
                workload: Some(WorkloadIdentity {
                    id: Some(workload_identity::Id::SpiffeId("spiffe://corp/ci".into())),
                }),
                ..Default::default()
            }),
            chain_id: "CHG-1".into(),
            issued_at: Some(timestamp(1_700_000_000_123)),
            links: vec![EntryRef {
                index: 3,
                leaf_hash: vec![1; 32],
            }],
            body: Some(Body::ExecutionIntent(ExecutionIntent::default())),
            ..Default::default()
        };
        let v = serde_json::to_value(&st).unwrap();
        assert_eq!(v["actor"]["kind"], "NHI");
        assert_eq!(v["actor"]["workload"]["spiffeId"], "spiffe://corp/ci");
        assert_eq!(v["chainId"], "CHG-1");
        assert_eq!(v["issuedAt"], "2023-11-14T22:13:20.123Z");
        assert_eq!(v["links"][0]["index"], "3");
        assert!(v.get("executionIntent").is_some());
        let back = statement_from_json(&v.to_string()).unwrap();
        assert_eq!(back, st);
        assert!(statement_from_json("{\"chainId\": 5}").is_err());
    }

    #[test]
    fn timestamps_convert_both_ways() {
        for ms in [0, 1, 999, 1000, -1, 1_700_000_000_123] {
            assert_eq!(millis(&timestamp(ms)), ms);
        }
    }
}
