//! The gate on arbitrary histories: random actors making random
//! statements (wrong links, wrong people, wrong deltas, wrong times, other
//! chains, keys revoked midway) go through the server's own admission (the
//! `Gatekeeper`, this release's rules: time-bound grants, their
//! extensions, revocations and removals, suspensions, access review
//! campaigns and certifications), one batch each. Nothing panics, and the
//! audit of the log the gate produced, replayed from its leaves alone,
//! reports no finding about the gate: every refusal record is one the audit's replay of
//! the gate makes too, and nothing admitted breaks a rule. Before each
//! submission a dry run (`POST /v1/gate/check`'s judgement) must foresee
//! the verdict exactly: admit, refuse with the same violations, or reject
//! for the same reason.

use std::sync::Arc;

use gatelog::access::cedar::CedarEngine;
use gatelog::access::entry::build::{self, delta, human, link, nhi, target};
use gatelog::access::entry::proto::{
    decision, identity_registration::Operation, Actor, EntitlementDelta, EntryRef, PolicyRef,
    Statement,
};
use gatelog::access::entry::{self, Body};
use gatelog::access::gate::Verdict;
use gatelog::access::replay::{Auditor, Period};
use gatelog::server::gatekeeper::{judge_now, GateConfig, Gatekeeper};
use gatelog::server::log::Log;
use gatelog::server::run::DEV_POLICY;
use gatelog::server::sequencer::{Admission, Admit, Submitted};
use gatelog::tlog::checkpoint::Checkpoint;
use gatelog::tlog::merkle::{leaf_hash, CompactRange};
use gatelog::tlog::note::{NoteSigner, NoteVerifier};
use proptest::prelude::*;
use prost::Message;

const MINUTE: i64 = 60_000;
const PEOPLE: [&str; 4] = ["alice", "bob", "carol", "olivia"];
const CHAINS: [&str; 3] = ["C0", "C1", "C2"];

/// One random step: who, what, on which chain, linking what.
#[derive(Debug, Clone)]
struct Step {
    actor: usize,
    kind: u8,
    chain: usize,
    /// Picks among the chain's entries (and, rarely, others).
    links: Vec<usize>,
    delta: u8,
    executor: usize,
    /// Minutes off the log's time (0 nearly always).
    skew: i64,
    flag: bool,
}

fn step() -> impl Strategy<Value = Step> {
    (
        0usize..7,
        0u8..15,
        0usize..CHAINS.len(),
        prop::collection::vec(0usize..8, 0..3),
        0u8..4,
        0usize..7,
        prop_oneof![8 => Just(0i64), 1 => Just(-30i64), 1 => Just(30i64)],
        any::<bool>(),
    )
        .prop_map(
            |(actor, kind, chain, links, delta, executor, skew, flag)| Step {
                actor,
                kind,
                chain,
                links,
                delta,
                executor,
                skew,
                flag,
            },
        )
}

struct Cast {
    admin: (Actor, NoteSigner),
    /// alice, bob, carol, olivia (HUMAN); deployer (NHI), copilot
    /// (ASSISTANT), both olivia's; mallory (never registered).
    actors: Vec<(Actor, NoteSigner)>,
}

fn key(id: &str, seed: u8) -> NoteSigner {
    NoteSigner::from_seed(id, [seed; 32]).unwrap()
}

impl Cast {
    fn new() -> Cast {
        let mut actors: Vec<(Actor, NoteSigner)> = PEOPLE
            .iter()
            .enumerate()
            .map(|(i, p)| (human(p), key(p, 10 + i as u8)))
            .collect();
        actors.push((nhi("deployer", "spiffe://p/ci"), key("deployer", 20)));
        actors.push((
            build::assistant("copilot", "spiffe://p/ai", "m", "a"),
            key("copilot", 21),
        ));
        actors.push((human("mallory"), key("mallory", 22)));
        Cast {
            admin: (human("admin"), key("admin", 1)),
            actors,
        }
    }
}

fn deltas(n: u8) -> EntitlementDelta {
    match n {
        0 => delta(&["read"], &["write"], &[]),
        1 => delta(&["read"], &["admin"], &[]),
        2 => delta(&["read", "oncall"], &[], &["oncall"]),
        // The removal of what 0 grants.
        _ => delta(&["read", "write"], &[], &["write"]),
    }
}

/// The statement a step makes, given the chain entries appended so far.
fn statement(
    cast: &Cast,
    s: &Step,
    chain_entries: &[(EntryRef, u8)],
    everything: &[EntryRef],
    now: i64,
) -> Statement {
    let (actor, _) = &cast.actors[s.actor];
    let chain = CHAINS[s.chain];
    let at = now + s.skew * MINUTE;
    let mut links: Vec<EntryRef> = s
        .links
        .iter()
        .filter_map(|k| match k {
            // Now and then, any entry of the log (another chain's).
            7 => everything.last().cloned(),
            k => chain_entries.get(*k).map(|(r, _)| r.clone()),
        })
        .collect();
    links.dedup_by_key(|l| l.index);
    let d = deltas(s.delta);
    let tgt = target("github", "corp/app", PEOPLE[s.chain % PEOPLE.len()]);
    let policy = Some(PolicyRef {
        policy_id: "default".into(),
        version: 1,
    });
    let executor = &cast.actors[s.executor].0.id;
    // Rules version 5: `write` lasts at most an hour; with the flag, a
    // request or approval asks for ten minutes (an approval linking a
    // grant's outcome extends it).
    let lasting = |st: Statement| {
        if s.flag {
            build::lasting(st, 600)
        } else {
            st
        }
    };
    match s.kind {
        0 => lasting(build::request(actor, chain, tgt, d, executor, at)),
        1 => {
            // Now and then flagged privileged (two people then, for a
            // grant or, rules version 7, for its extension).
            let mut d = d;
            d.privileged = s.executor == 0;
            lasting(build::approve(actor, chain, links, d, at + 10 * MINUTE, at))
        }
        2 => {
            let mut st = build::approve(actor, chain, links, d, at + MINUTE, at);
            if let Some(Body::Decision(x)) = &mut st.body {
                x.outcome = decision::Outcome::Deny as i32;
            }
            st
        }
        3 => build::recommend(actor, chain, links, d, [s.delta; 32], at),
        4 | 5 => build::intent(actor, chain, links, d, policy, at),
        6 => build::outcome(actor, chain, links, d.after, "c", at),
        7 => build::break_glass(actor, chain, tgt, d, "incident", at + 60 * MINUTE, at),
        8 => build::review(actor, chain, links, s.flag, at),
        // A revocation of what it links first (a decision, a grant's
        // outcome, anything), else of the chain's first entry.
        9 => match links.first().or(chain_entries.first().map(|(r, _)| r)) {
            Some(r) => build::revoke(actor, r.clone(), "no", at),
            None => build::revoke(actor, link(0, &[0; 32]), "no", at),
        },
        // The admin suspends the actor (or lifts its suspension).
        11 => Statement {
            actor: Some(cast.admin.0.clone()),
            issued_at: Some(entry::timestamp(at)),
            body: Some(Body::Suspension(entry::proto::Suspension {
                identity: actor.id.clone(),
                lifted: s.flag,
                reason: String::new(),
            })),
            ..Default::default()
        },
        _ => {
            // The admin revokes the actor's key (or rotates it, stating a
            // compromise).
            let mut st = build::register(
                &cast.admin.0,
                actor,
                "",
                cast.actors[s.actor].1.verifier().public_key(),
                at,
            );
            if let Some(Body::IdentityRegistration(r)) = &mut st.body {
                r.operation = if s.flag {
                    Operation::RevokeKey as i32
                } else {
                    Operation::RotateKey as i32
                };
                if !s.flag {
                    r.compromised_at = Some(entry::timestamp(now - MINUTE));
                }
            }
            st
        }
    }
}

/// Runs `steps` through a real `Gatekeeper`; the log's leaves.
fn gate_history(steps: &[Step]) -> (Vec<Vec<u8>>, NoteVerifier) {
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(Log::open(dir.path(), Some("prop.example/log")).unwrap());
    let origin = log.origin().to_string();
    let log_key = log.verifier().clone();
    let cast = Cast::new();
    let now = gatelog::sys::clock::now_ms();
    // Rules version 7: the policy judges extensions too; carol's never
    // complete one.
    let cedar = format!(
        "{DEV_POLICY}forbid(principal, action, resource)\nwhen {{ context has extension && context.extension && context.approvers.contains(\"carol\") }};\n"
    );
    let mut policy = build::publish_policy(&cast.admin.0, "default", 1, &cedar, 0, now);
    if let Some(Body::PolicyPublication(p)) = &mut policy.body {
        p.classes
            .push(gatelog::access::entry::proto::EntitlementClass {
                pattern: "write".into(),
                max_access_duration_seconds: 3600,
                deprovision_window_seconds: 1,
                ..Default::default()
            });
    }
    let policy = entry::sign(&cast.admin.1, &build::for_log(policy, &origin)).encode_to_vec();
    let config = GateConfig {
        admins: vec![cast.admin.1.verifier()],
        admin_threshold: 1,
        max_clock_skew_ms: 5 * MINUTE,
        log_time_resolution_ms: 1000,
        // Nothing here is appended to storage: every statement stays
        // in the cache.
        statement_cache: 1 << 20,
        genesis: vec![policy],
    };
    let mut keeper = Gatekeeper::open(log, config, Box::new(CedarEngine::default())).unwrap();
    let mut leaves = keeper.opening(0);
    let mut dry_engine = CedarEngine::default();
    let mut submit = |keeper: &mut Gatekeeper, leaves: &mut Vec<Vec<u8>>, leaf: Vec<u8>| {
        let first = leaves.len() as u64;
        // The dry run first: it must foresee the gate's verdict exactly.
        let foreseen = dry_run(keeper, &mut dry_engine, first, &leaf);
        let admitted = keeper.admit(
            first,
            &[Submitted {
                bytes: &leaf,
                decoded: None,
                verified_with: None,
            }],
        );
        leaves.extend(admitted.prefix);
        let answer = admitted.answers.into_iter().next().unwrap();
        let happened = match &answer {
            Admit::Append => ("admit", vec![]),
            Admit::Record { refusal, .. } => (
                "refuse",
                refusal.violations.iter().map(|v| v.code.clone()).collect(),
            ),
            Admit::Reject(r) => ("reject", vec![r.code.to_string()]),
        };
        assert_eq!(foreseen, happened, "the dry run foresaw another verdict");
        match answer {
            Admit::Append => {
                leaves.push(leaf);
                Some(leaves.len() as u64 - 1)
            }
            Admit::Record { record, .. } => {
                leaves.push(record);
                None
            }
            Admit::Reject(_) => None,
        }
    };
    // The cast: people, then the machines owned by olivia.
    for (k, (actor, key)) in cast.actors[..6].iter().enumerate() {
        let owner = if k >= 4 { "olivia" } else { "" };
        let st = build::register(
            &cast.admin.0,
            actor,
            owner,
            key.verifier().public_key(),
            now,
        );
        let leaf = entry::sign(&cast.admin.1, &build::for_log(st, &origin)).encode_to_vec();
        assert!(submit(&mut keeper, &mut leaves, leaf).is_some());
    }
    let mut chains: Vec<Vec<(EntryRef, u8)>> = vec![vec![]; CHAINS.len()];
    let mut everything: Vec<EntryRef> = vec![];
    let mut campaigns: Vec<EntryRef> = vec![];
    for s in steps {
        if s.kind == 12 {
            // A whole grant at once (request for ten minutes, approval,
            // intent, outcome), so that random steps meet grants to
            // extend, revoke and remove.
            let chain = CHAINS[s.chain];
            let (alice, bob, deployer) = (&cast.actors[0], &cast.actors[1], &cast.actors[4]);
            let d = deltas(0);
            let tgt = target("github", "corp/app", PEOPLE[s.chain % PEOPLE.len()]);
            let mut last: Vec<EntryRef> = vec![];
            let steps: [(&(Actor, NoteSigner), u8); 4] =
                [(alice, 0), (bob, 1), (deployer, 4), (deployer, 6)];
            for (who, kind) in steps {
                let st = match kind {
                    0 => build::lasting(
                        build::request(&who.0, chain, tgt.clone(), d.clone(), "deployer", now),
                        600,
                    ),
                    1 => build::approve(&who.0, chain, last.clone(), d.clone(), now + MINUTE, now),
                    4 => build::intent(
                        &who.0,
                        chain,
                        last.clone(),
                        d.clone(),
                        Some(PolicyRef {
                            policy_id: "default".into(),
                            version: 1,
                        }),
                        now,
                    ),
                    _ => build::outcome(
                        &who.0,
                        chain,
                        last.last().cloned().into_iter().collect(),
                        d.after.clone(),
                        "c",
                        now,
                    ),
                };
                let leaf = entry::sign(&who.1, &build::for_log(st, &origin)).encode_to_vec();
                let hash = leaf_hash(&leaf);
                if let Some(index) = submit(&mut keeper, &mut leaves, leaf) {
                    let r = link(index, &hash);
                    chains[s.chain].push((r.clone(), kind));
                    everything.push(r.clone());
                    last.push(r);
                }
            }
            continue;
        }
        if s.kind >= 13 {
            // Access reviews: the admin opens a campaign over github, or
            // the actor certifies what it links (a grant's outcome, or
            // anything) in the latest campaign.
            let (st, signer) = if s.kind == 13 {
                let body = Body::ReviewCampaign(entry::proto::ReviewCampaign {
                    campaign_id: format!("Q{}", leaves.len()),
                    system: "github".into(),
                    resource_prefix: String::new(),
                    reviewers: PEOPLE.iter().map(|p| p.to_string()).collect(),
                    deadline: Some(entry::timestamp(now + 10 * MINUTE)),
                    revoke_unreviewed: s.flag,
                    // Now and then only alice's grants (rules version 7).
                    subject_prefix: if s.executor == 1 {
                        "a".into()
                    } else {
                        String::new()
                    },
                });
                (
                    Statement {
                        actor: Some(cast.admin.0.clone()),
                        issued_at: Some(entry::timestamp(now)),
                        body: Some(body),
                        ..Default::default()
                    },
                    &cast.admin.1,
                )
            } else {
                let (actor, key) = &cast.actors[s.actor];
                let grant = s
                    .links
                    .first()
                    .and_then(|k| chains[s.chain].get(*k).map(|(r, _)| r.clone()))
                    .or_else(|| everything.last().cloned())
                    .unwrap_or_else(|| link(0, &[0; 32]));
                let verdict = if s.flag {
                    entry::proto::certification::Verdict::Keep
                } else {
                    entry::proto::certification::Verdict::Revoke
                };
                let body = Body::Certification(entry::proto::Certification {
                    campaign: Some(
                        campaigns
                            .last()
                            .cloned()
                            .unwrap_or_else(|| link(0, &[0; 32])),
                    ),
                    grant: Some(grant),
                    verdict: verdict as i32,
                    notes: String::new(),
                });
                (
                    Statement {
                        actor: Some(actor.clone()),
                        issued_at: Some(entry::timestamp(now)),
                        body: Some(body),
                        ..Default::default()
                    },
                    key,
                )
            };
            let leaf = entry::sign(signer, &build::for_log(st, &origin)).encode_to_vec();
            let hash = leaf_hash(&leaf);
            if let (Some(index), 13) = (submit(&mut keeper, &mut leaves, leaf), s.kind) {
                campaigns.push(link(index, &hash));
            }
            continue;
        }
        let st = statement(&cast, s, &chains[s.chain], &everything, now);
        let signer = if s.kind >= 10 {
            &cast.admin.1
        } else {
            &cast.actors[s.actor].1
        };
        let leaf = entry::sign(signer, &build::for_log(st, &origin)).encode_to_vec();
        let hash = leaf_hash(&leaf);
        if let Some(index) = submit(&mut keeper, &mut leaves, leaf) {
            let r = link(index, &hash);
            chains[s.chain].push((r.clone(), s.kind));
            everything.push(r);
        }
    }
    (leaves, log_key)
}

/// What `POST /v1/gate/check` answers for `leaf` as the entry after
/// `first - 1`: its verdict and the codes of its violations (or of why it
/// is rejected, validation included, as the HTTP layer does).
fn dry_run(
    keeper: &Gatekeeper,
    engine: &mut CedarEngine,
    first: u64,
    leaf: &[u8],
) -> (&'static str, Vec<String>) {
    let d = match entry::DecodedEntry::decode(leaf) {
        Ok(d) => d,
        Err(_) => return ("reject", vec!["malformed_entry".into()]),
    };
    let limits = entry::Limits {
        max_future_ms: 5 * MINUTE,
        max_backdate_ms: 5 * MINUTE,
    };
    if entry::validate(&d, gatelog::sys::clock::now_ms(), &limits).is_err() {
        return ("reject", vec!["invalid_entry".into()]);
    }
    let state = keeper.state();
    let mut state = state.write().unwrap();
    let now = gatelog::sys::clock::now_ms();
    let run = judge_now(&mut state, first, &d, engine, 1000, now);
    assert!(run.signature_checked);
    match run.verdict {
        Ok(Verdict::Admit) => ("admit", vec![]),
        Ok(Verdict::Refuse(r)) => ("refuse", r.violations.into_iter().map(|v| v.code).collect()),
        Err(r) => ("reject", vec![r.code.to_string()]),
    }
}

/// What the world did rather than what the gate decided: outcomes that
/// differ from their intents, drift, and obligations still open. The
/// random steps make plenty of these; they are not the gate's to refuse.
const WORLD_FINDINGS: [&str; 5] = [
    "outcome_mismatch",
    "drift",
    "late_review",
    "unreviewed_break_glass",
    "revoked_not_undone",
];

/// The audit's verdict on `leaves`: its findings about the gate, as
/// "code at index: message".
fn audit(leaves: &[Vec<u8>], log_key: &NoteVerifier) -> Vec<String> {
    let mut auditor = Auditor::new(
        log_key.clone(),
        vec![],
        Box::new(CedarEngine::default()),
        Period::ALL,
    );
    let refs: Vec<&[u8]> = leaves.iter().map(Vec::as_slice).collect();
    auditor.entries(0, &refs);
    let mut range = CompactRange::default();
    for l in leaves {
        range.push(leaf_hash(l));
    }
    let cp = Checkpoint {
        origin: log_key.name().to_string(),
        size: leaves.len() as u64,
        root: range.root(),
        extensions: vec![],
    };
    let (summary, output) = auditor.finish(&cp, gatelog::sys::clock::now_ms());
    assert!(summary.tree_verified);
    output
        .findings
        .iter()
        .filter(|f| !WORLD_FINDINGS.contains(&f.code.as_str()))
        .map(|f| format!("{} at {}: {}", f.code, f.index, f.message))
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn the_audit_of_any_history_the_gate_made_finds_nothing(
        steps in prop::collection::vec(step(), 1..40),
    ) {
        let (leaves, log_key) = gate_history(&steps);
        let findings = audit(&leaves, &log_key);
        prop_assert!(findings.is_empty(), "{findings:#?}");
    }
}
