//! Property tests of the entry model (the pure API only, so they run in the
//! verifier-only build too):
//!
//! (a) any statement survives sign → encode → decode unchanged, and its
//!     proto3 JSON parses back to the same statement;
//! (b) arbitrary bytes never make decoding, `validate` or `entry_json`
//!     panic, nor do signed leaves built from arbitrary field values;
//! (c) flipping any byte of a valid signed leaf is never accepted as the
//!     same signed statement (and, as a plain test, neither is the same
//!     entry re-encoded with an over-long varint or an unknown field);
//! (d) `validate` accepts every exact delta `build::delta` produces and
//!     refuses it (at `….after`) once `after` gains an extra entitlement.

use std::collections::BTreeSet;

use ed25519_dalek::VerifyingKey;
use gatelog::access::entry::proto::{
    decision, execution_outcome, identity_registration, review, workload_identity, Actor, Decision,
    EntitlementDelta, EntryRef, ExecutionOutcome, GateRefusal, IdentityRegistration, OnBehalfOf,
    PolicyRef, Recommendation, Review, RuleViolation, SignedEntry, Target, WorkloadIdentity,
};
use gatelog::access::entry::{
    self, build, ActorKind, Body, DecodedEntry, Limits, Statement, Timestamp,
};
use gatelog::tlog::merkle::leaf_hash;
use gatelog::tlog::note::NoteSigner;
use proptest::prelude::*;
use prost::Message;

/// The `now_ms` given to `validate`.
const NOW: i64 = 1_800_000_000_000;
const MINUTE: i64 = 60_000;
/// The range proto3 JSON allows a Timestamp: 0001-01-01T00:00:00Z to
/// 9999-12-31T23:59:59.999999999Z, in seconds.
const MIN_SECONDS: i64 = -62_135_596_800;
const MAX_SECONDS: i64 = 253_402_300_799;

// ---- Field values.

/// Any text, newlines and all.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![Just(String::new()), "[a-z0-9._:/-]{1,12}", "(?s).{0,16}",]
}

/// A name `NoteSigner` and `validate` accept (no whitespace, no '+').
fn key_name() -> impl Strategy<Value = String> {
    "[a-z][a-z0-9._@-]{0,15}"
}

/// A non-empty entitlement, any characters.
fn entitlement() -> impl Strategy<Value = String> {
    prop_oneof!["[a-z]{1,6}(:[a-z]{1,4})?", "(?s).{1,8}"]
}

fn hash32() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 32)
}

/// Any timestamp proto3 JSON can carry.
fn timestamp() -> impl Strategy<Value = Timestamp> {
    (MIN_SECONDS..=MAX_SECONDS, 0..1_000_000_000i32)
        .prop_map(|(seconds, nanos)| Timestamp { seconds, nanos })
}

fn millis() -> impl Strategy<Value = i64> {
    (MIN_SECONDS * 1000)..=(MAX_SECONDS * 1000)
}

fn workload() -> impl Strategy<Value = WorkloadIdentity> {
    use workload_identity::Id;
    prop::option::of(prop_oneof![
        text().prop_map(Id::SpiffeId),
        text().prop_map(Id::CloudPrincipal),
        text().prop_map(Id::KubernetesServiceAccount),
    ])
    .prop_map(|id| WorkloadIdentity { id })
}

fn actor_kind() -> impl Strategy<Value = ActorKind> {
    prop_oneof![
        Just(ActorKind::Unspecified),
        Just(ActorKind::Human),
        Just(ActorKind::Nhi),
        Just(ActorKind::Assistant),
    ]
}

/// Any actor: from the constructors, or field by field.
fn actor() -> impl Strategy<Value = Actor> {
    prop_oneof![
        text().prop_map(|id| build::human(&id)),
        (text(), text()).prop_map(|(id, s)| build::nhi(&id, &s)),
        (text(), text(), text(), text())
            .prop_map(|(id, s, m, a)| build::assistant(&id, &s, &m, &a)),
        (
            text(),
            actor_kind(),
            prop::option::of(workload()),
            text(),
            text()
        )
            .prop_map(|(id, kind, workload, model_id, agent_id)| Actor {
                id,
                kind: kind as i32,
                workload,
                model_id,
                agent_id,
            }),
    ]
}

/// `before`, `adds` (disjoint from it) and `removes` (a subset of it), in
/// random order; at least one add or remove.
fn delta_parts() -> impl Strategy<Value = (Vec<String>, Vec<String>, Vec<String>)> {
    prop::collection::btree_set(entitlement(), 1..8)
        .prop_flat_map(|pool| {
            let n = pool.len();
            (
                Just(pool.into_iter().collect::<Vec<_>>()).prop_shuffle(),
                prop::collection::vec(0u8..4, n),
            )
        })
        .prop_filter_map("at least one op", |(pool, roles)| {
            let (mut before, mut adds, mut removes) = (vec![], vec![], vec![]);
            for (e, role) in pool.into_iter().zip(roles) {
                match role {
                    0 => {}
                    1 => before.push(e),
                    2 => {
                        before.push(e.clone());
                        removes.push(e);
                    }
                    _ => adds.push(e),
                }
            }
            (!adds.is_empty() || !removes.is_empty()).then_some((before, adds, removes))
        })
}

fn delta() -> impl Strategy<Value = EntitlementDelta> {
    (delta_parts(), any::<bool>(), any::<bool>()).prop_map(
        |((before, adds, removes), privileged, high_risk)| EntitlementDelta {
            privileged,
            high_risk,
            ..build::delta(&strs(&before), &strs(&adds), &strs(&removes))
        },
    )
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

fn links() -> impl Strategy<Value = Vec<EntryRef>> {
    prop::collection::vec(
        (any::<u64>(), hash32()).prop_map(|(i, h)| build::link(i, &h)),
        0..4,
    )
}

fn target() -> impl Strategy<Value = Target> {
    (text(), text(), text()).prop_map(|(s, r, u)| build::target(&s, &r, &u))
}

fn policy_ref() -> impl Strategy<Value = Option<PolicyRef>> {
    prop::option::of(
        (text(), any::<u64>()).prop_map(|(policy_id, version)| PolicyRef { policy_id, version }),
    )
}

/// Every field a statement's body may need, drawn at once.
#[derive(Debug, Clone)]
struct Parts {
    actor: Actor,
    chain: String,
    links: Vec<EntryRef>,
    target: Target,
    delta: EntitlementDelta,
    ms: i64,
    ms2: i64,
    words: (String, String),
    hash: Vec<u8>,
    number: u64,
    flag: bool,
    policy: Option<PolicyRef>,
}

fn parts() -> impl Strategy<Value = Parts> {
    (
        (actor(), text(), links(), target(), delta()),
        (millis(), millis(), (text(), text()), hash32(), any::<u64>()),
        (any::<bool>(), policy_ref()),
    )
        .prop_map(
            |(
                (actor, chain, links, target, delta),
                (ms, ms2, words, hash, number),
                (flag, policy),
            )| Parts {
                actor,
                chain,
                links,
                target,
                delta,
                ms,
                ms2,
                words,
                hash,
                number,
                flag,
                policy,
            },
        )
}

const BODY_KINDS: u8 = 14;

/// A statement of body kind `kind` (one of `BODY_KINDS`), built with the
/// constructors where there is one.
fn statement_of(kind: u8, p: Parts) -> Statement {
    let Parts {
        actor: a,
        chain,
        links,
        target,
        delta,
        ms,
        ms2,
        words: (w1, w2),
        hash,
        number,
        flag,
        policy,
    } = p;
    let digest: [u8; 32] = hash.clone().try_into().unwrap();
    match kind {
        0 => build::request(&a, &chain, target, delta, &w1, ms),
        1 => build::recommend(&a, &chain, links, delta, digest, ms),
        2 => build::approve(&a, &chain, links, delta, ms2, ms),
        3 => build::intent(&a, &chain, links, delta, policy, ms),
        4 => build::outcome(&a, &chain, links, vec![w1, w2], "change-1", ms),
        5 => build::break_glass(&a, &chain, target, delta, &w1, ms2, ms),
        6 => build::review(&a, &chain, links, flag, ms),
        7 => build::revoke(&a, build::link(number, &hash), &w1, ms),
        8 => build::register(&build::human(&w1), &a, &w2, digest, ms),
        9 => build::publish_policy(&a, &w1, number, &w2, number as u32, ms),
        10 => build::delegate(&a, &w1, &w2, &chain, &target.resource, ms, ms2, ms),
        11 => build::on_behalf_of(
            build::approve(&a, &chain, links, delta, ms2, ms),
            &w1,
            build::link(number, &hash),
        ),
        // Field by field, enums included.
        12 => Statement {
            actor: Some(a),
            on_behalf_of: flag.then(|| OnBehalfOf {
                principals: vec![w1.clone(), w2.clone()],
                delegation: None,
            }),
            chain_id: chain,
            links,
            target: Some(target),
            issued_at: None,
            policy,
            log_origin: w2.clone(),
            body: Some(match number % 6 {
                0 => Body::Decision(Decision {
                    outcome: decision::Outcome::Deny as i32,
                    approved_delta: None,
                    expires_at: None,
                    reason: w1,
                    access_duration_seconds: number,
                }),
                1 => Body::Review(Review {
                    verdict: review::Verdict::Unspecified as i32,
                    notes: w1,
                }),
                2 => Body::ExecutionOutcome(ExecutionOutcome {
                    result: execution_outcome::Result::Failed as i32,
                    observed_before: vec![w1],
                    observed_after: vec![],
                    change_id: w2,
                }),
                3 => Body::IdentityRegistration(IdentityRegistration {
                    operation: identity_registration::Operation::RevokeKey as i32,
                    identity: None,
                    public_key: hash,
                    owner: String::new(),
                    compromised_at: None,
                }),
                4 => Body::GateRefusal(GateRefusal {
                    refused_entry: hash,
                    violations: vec![RuleViolation {
                        rule: number as u32,
                        code: w1,
                        message: w2,
                    }],
                    policy: None,
                    index: number,
                }),
                _ => Body::Recommendation(Recommendation::default()),
            }),
        },
        // No body at all.
        _ => Statement {
            actor: Some(a),
            chain_id: chain,
            links,
            ..Default::default()
        },
    }
}

/// Any statement, its issue time sometimes replaced or dropped.
fn statement() -> impl Strategy<Value = Statement> {
    (
        0..BODY_KINDS,
        parts(),
        prop::option::of(prop::option::of(timestamp())),
    )
        .prop_map(|(kind, p, issued)| {
            let mut st = statement_of(kind, p);
            if let Some(issued) = issued {
                st.issued_at = issued;
            }
            st
        })
}

/// A signer's name and seed (`NoteSigner` is not `Debug`).
fn signer() -> impl Strategy<Value = (String, [u8; 32])> {
    (key_name(), any::<[u8; 32]>())
}

fn note_signer((name, seed): &(String, [u8; 32])) -> NoteSigner {
    NoteSigner::from_seed(name, *seed).unwrap()
}

fn verifying_key(key: &NoteSigner) -> VerifyingKey {
    VerifyingKey::from_bytes(&key.verifier().public_key()).unwrap()
}

// ---- Valid statements, for (c) and (d).

/// A valid actor of any kind.
fn valid_actor() -> impl Strategy<Value = Actor> {
    (
        key_name(),
        0u8..3,
        "[a-z0-9:/._-]{1,20}",
        "[a-z0-9._-]{1,10}",
    )
        .prop_map(|(id, kind, workload, model)| match kind {
            0 => build::human(&id),
            1 => build::nhi(&id, &workload),
            _ => build::assistant(&id, &workload, &model, &model),
        })
}

fn valid_target() -> impl Strategy<Value = Target> {
    ("[a-z]{1,8}", "[a-z/]{1,12}", "[a-z]{1,8}").prop_map(|(s, r, u)| build::target(&s, &r, &u))
}

/// 1-3 links to distinct entries.
fn valid_links() -> impl Strategy<Value = Vec<EntryRef>> {
    prop::collection::btree_map(any::<u64>(), hash32(), 1..4)
        .prop_map(|m| m.into_iter().map(|(i, h)| build::link(i, &h)).collect())
}

/// The bodies that carry a delta, and the JSON path of that delta.
const DELTA_KINDS: [&str; 5] = [
    "statement.accessRequest.delta",
    "statement.recommendation.proposedDelta",
    "statement.decision.approvedDelta",
    "statement.executionIntent.delta",
    "statement.breakGlass.delta",
];

/// A valid statement carrying `delta` in body kind `kind` (an index of
/// `DELTA_KINDS`), issued within a minute of `NOW`.
fn valid_with_delta(
    kind: usize,
    actor: &Actor,
    chain: &str,
    target: Target,
    links: Vec<EntryRef>,
    delta: EntitlementDelta,
    offset_ms: i64,
) -> Statement {
    let ms = NOW + offset_ms;
    match kind {
        0 => build::request(actor, chain, target, delta, "deployer", ms),
        1 => build::recommend(actor, chain, links, delta, [7; 32], ms),
        2 => build::approve(actor, chain, links, delta, ms + 60 * MINUTE, ms),
        3 => build::intent(actor, chain, links, delta, None, ms),
        _ => build::break_glass(actor, chain, target, delta, "outage", ms + 60 * MINUTE, ms),
    }
}

/// A valid statement of any kind, and its actor's signing seed.
fn valid_signed() -> impl Strategy<Value = (Statement, [u8; 32])> {
    (
        (
            valid_actor(),
            "[A-Z]{3}-[0-9]{1,6}",
            valid_target(),
            valid_links(),
        ),
        (delta(), -MINUTE..MINUTE, 0u8..11, any::<[u8; 32]>()),
        ("[a-z]{1,8}", 1u64..1000, any::<bool>()),
    )
        .prop_map(
            |((actor, chain, target, links), (delta, offset, kind, seed), (word, n, flag))| {
                let ms = NOW + offset;
                let st = match kind {
                    0..=4 => valid_with_delta(
                        kind as usize,
                        &actor,
                        &chain,
                        target,
                        links,
                        delta,
                        offset,
                    ),
                    5 => build::outcome(&actor, &chain, links, vec![word.clone()], &word, ms),
                    6 => build::review(&actor, &chain, links, flag, ms),
                    7 => build::revoke(&actor, links[0].clone(), &word, ms),
                    8 => {
                        let pk = NoteSigner::from_seed(&word, seed).unwrap();
                        build::register(
                            &actor,
                            &build::human(&word),
                            "",
                            pk.verifier().public_key(),
                            ms,
                        )
                    }
                    9 => build::publish_policy(
                        &actor,
                        &word,
                        n,
                        "permit(principal, action, resource);",
                        2,
                        ms,
                    ),
                    _ => build::delegate(
                        &actor,
                        &word,
                        "team",
                        &target.system,
                        &target.resource,
                        ms,
                        ms + n as i64 * MINUTE,
                        ms,
                    ),
                };
                (st, seed)
            },
        )
}

/// Any timestamp at all, proto3 range or not, nanos valid or not.
fn any_timestamp() -> impl Strategy<Value = Timestamp> {
    (any::<i64>(), any::<i32>()).prop_map(|(seconds, nanos)| Timestamp { seconds, nanos })
}

/// A statement from `statement()` with any timestamps at all, signed by a
/// key named after its actor (so `validate` gets past the signer check)
/// when the actor's id can name a key.
fn structured_leaf() -> impl Strategy<Value = Vec<u8>> {
    (
        statement(),
        prop::option::of(any_timestamp()),
        any_timestamp(),
        any::<[u8; 32]>(),
    )
        .prop_map(|(mut st, issued, other, seed)| {
            st.issued_at = issued;
            match &mut st.body {
                Some(Body::Decision(d)) => d.expires_at = Some(other),
                Some(Body::BreakGlass(b)) => b.review_deadline = Some(other),
                Some(Body::DelegationGrant(g)) => g.not_after = Some(other),
                _ => {}
            }
            let id = st.actor.as_ref().map_or("", |a| a.id.as_str());
            let key = NoteSigner::from_seed(id, seed)
                .unwrap_or_else(|_| NoteSigner::from_seed("someone", seed).unwrap());
            entry::sign(&key, &st).encode_to_vec()
        })
}

fn decode_signed(key: &NoteSigner, st: &Statement) -> DecodedEntry {
    DecodedEntry::decode(&entry::sign(key, st).encode_to_vec()).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// (a) sign → encode → decode gives back the statement, the signer and
    /// a signature that verifies; the proto3 JSON parses back to it.
    #[test]
    fn statements_round_trip(st in statement(), key in signer()) {
        let key = note_signer(&key);
        let signed = entry::sign(&key, &st);
        let leaf = signed.encode_to_vec();
        let d = DecodedEntry::decode(&leaf).unwrap();
        prop_assert_eq!(&*d.statement, &st);
        prop_assert_eq!(&d.signed, &signed);
        prop_assert_eq!(d.signed.signer_id.as_str(), key.name());
        prop_assert_eq!(d.signed.key_id, key.key_id());
        prop_assert_eq!(d.leaf_hash, leaf_hash(&leaf));
        prop_assert!(entry::verify(&verifying_key(&key), &d.signed.statement, &d.signed.signature));

        let json = serde_json::to_string(&st).unwrap();
        let back = entry::statement_from_json(&json).unwrap();
        prop_assert_eq!(&back, &st, "JSON: {}", json);
        prop_assert_eq!(
            &entry::entry_json(&d)["statement"],
            &serde_json::to_value(&st).unwrap()
        );
    }

    /// (b) Arbitrary bytes, as a leaf or as the statement inside a
    /// well-formed SignedEntry, never panic.
    #[test]
    fn arbitrary_bytes_never_panic(
        bytes in prop::collection::vec(any::<u8>(), 0..512),
        signer_id in text(),
        key_id in any::<u32>(),
        signature in prop::collection::vec(any::<u8>(), 0..80),
        now in (MIN_SECONDS * 1000)..(MAX_SECONDS * 1000),
    ) {
        let wrapped = SignedEntry {
            statement: bytes.clone(),
            signer_id,
            key_id,
            signature,
            endorsements: vec![],
        }
        .encode_to_vec();
        for leaf in [&bytes, &wrapped] {
            if let Ok(d) = DecodedEntry::decode(leaf) {
                let _ = entry::validate(&d, NOW, &Limits::default());
                let _ = entry::validate(&d, now, &Limits::default());
                let _ = entry::entry_json(&d);
                let _ = d.kind().name();
            }
        }
    }

    /// (b) Signed leaves built from arbitrary field values (timestamps
    /// anywhere in their range, signed as the actor) never panic either.
    #[test]
    fn structured_leaves_never_panic(leaf in structured_leaf()) {
        let d = DecodedEntry::decode(&leaf).unwrap();
        let _ = entry::validate(&d, NOW, &Limits::default());
        let _ = entry::entry_json(&d);
    }

    /// (c) No single-byte change to a valid signed leaf is accepted as the
    /// same signed statement: it fails to decode or to validate, no longer
    /// verifies under the signer's key, or names another statement, signer
    /// or key.
    #[test]
    fn a_flipped_byte_is_never_the_same_signed_statement(
        (st, seed) in valid_signed(),
        at in any::<prop::sample::Index>(),
        mask in 1u8..=255,
    ) {
        let key = NoteSigner::from_seed(&st.actor.as_ref().unwrap().id, seed).unwrap();
        let signed = entry::sign(&key, &st);
        let mut leaf = signed.encode_to_vec();
        let original = DecodedEntry::decode(&leaf).unwrap();
        prop_assert_eq!(entry::validate(&original, NOW, &Limits::default()), Ok(()));
        let i = at.index(leaf.len());
        leaf[i] ^= mask;
        let Ok(d) = DecodedEntry::decode(&leaf) else { return Ok(()) };
        let same = entry::validate(&d, NOW, &Limits::default()).is_ok()
            && entry::verify(&verifying_key(&key), &d.signed.statement, &d.signed.signature)
            && *d.statement == st
            && d.signed.signer_id == signed.signer_id
            && d.signed.key_id == signed.key_id;
        prop_assert!(!same, "byte {} ^ {:#04x} still gives the same signed statement", i, mask);
    }

    /// (d) Exact deltas from `build::delta` pass; one more entitlement in
    /// `after` is refused, naming `….after`.
    #[test]
    fn exact_deltas_pass_and_a_padded_after_does_not(
        (before, adds, removes) in delta_parts(),
        extra in entitlement(),
        kind in 0..DELTA_KINDS.len(),
        actor in valid_actor(),
        target in valid_target(),
        links in valid_links(),
        offset in -MINUTE..MINUTE,
        seed in any::<[u8; 32]>(),
    ) {
        let key = NoteSigner::from_seed(&actor.id, seed).unwrap();
        let delta = build::delta(&strs(&before), &strs(&adds), &strs(&removes));
        let after: BTreeSet<&String> = delta.after.iter().collect();
        let expected: BTreeSet<&String> = before
            .iter()
            .filter(|e| !removes.contains(e))
            .chain(&adds)
            .collect();
        prop_assert_eq!(&after, &expected);

        let st = valid_with_delta(kind, &actor, "CHG-1", target.clone(), links.clone(), delta.clone(), offset);
        prop_assert_eq!(
            entry::validate(&decode_signed(&key, &st), NOW, &Limits::default()),
            Ok(())
        );

        prop_assume!(!delta.after.contains(&extra));
        let mut padded = delta;
        padded.after.push(extra);
        let st = valid_with_delta(kind, &actor, "CHG-1", target, links, padded, offset);
        let err = entry::validate(&decode_signed(&key, &st), NOW, &Limits::default()).unwrap_err();
        prop_assert_eq!(err.field, format!("{}.after", DELTA_KINDS[kind]));
    }
}

/// `statement_of` reaches every body kind, and a statement without one.
#[test]
fn the_generators_cover_the_kinds() {
    let p = Parts {
        actor: build::human("alice"),
        chain: "CHG-1".into(),
        links: vec![],
        target: build::target("s", "r", "u"),
        delta: build::delta(&["a"], &["b"], &[]),
        ms: NOW,
        ms2: NOW + 1,
        words: ("x".into(), "y".into()),
        hash: vec![0; 32],
        number: 4,
        flag: true,
        policy: None,
    };
    let kinds: BTreeSet<&str> = (0..BODY_KINDS)
        .map(|k| entry::Kind::of(&statement_of(k, p.clone())).name())
        .collect();
    // All twelve body kinds, and none.
    assert_eq!(kinds.len(), 13, "{kinds:?}");
}

/// (c), the cases a random flip rarely hits: a leaf re-encoded without
/// touching the signed bytes (an over-long `keyId` varint, an unknown
/// field) is a different leaf, so the log's dedup (by leaf hash) misses
/// it; it must not be accepted as the same signed statement.
#[test]
fn a_re_encoded_leaf_is_not_the_same_signed_statement() {
    let key = NoteSigner::from_seed("bob", [3; 32]).unwrap();
    let st = build::approve(
        &build::human("bob"),
        "CHG-1",
        vec![build::link(3, &[1; 32])],
        build::delta(&["read"], &["write"], &[]),
        NOW + 60 * MINUTE,
        NOW,
    );
    let signed = entry::sign(&key, &st);
    let leaf = signed.encode_to_vec();
    assert!(key.key_id() >= 1 << 28, "a 5-byte keyId varint");

    // Bits 32-34 of the keyId varint: a uint32 drops them.
    let key_id_at = leaf.len() - 64 - 2 - 5;
    assert_eq!(leaf[key_id_at - 1], 0x18, "the keyId tag");
    let mut long_varint = leaf.clone();
    long_varint[key_id_at + 4] |= 0x70;
    // Field 15, varint 0: unknown, skipped.
    let mut unknown_field = leaf.clone();
    unknown_field.extend_from_slice(&[0x78, 0x00]);

    for (what, other) in [
        ("long keyId varint", long_varint),
        ("unknown field", unknown_field),
    ] {
        assert_ne!(leaf_hash(&other), leaf_hash(&leaf));
        let Ok(d) = DecodedEntry::decode(&other) else {
            continue;
        };
        let same = entry::validate(&d, NOW, &Limits::default()).is_ok()
            && entry::verify(
                &verifying_key(&key),
                &d.signed.statement,
                &d.signed.signature,
            )
            && *d.statement == st
            && d.signed.signer_id == signed.signer_id
            && d.signed.key_id == signed.key_id;
        assert!(!same, "{what}: a different leaf, the same signed statement");
    }
}
