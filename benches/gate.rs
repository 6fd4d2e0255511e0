//! Criterion benches for the gate (rules version 2): one decision on a
//! chain of 10 entries (with the Cedar policy, and with none, which the
//! rules refuse), and the sequencer's admission of a batch of signed
//! workflow entries as the HTTP layer hands them over, decoded and
//! validated (one batch signature verification, the gate, the state
//! update), without HTTP or storage.

use std::sync::Arc;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use gatelog::access::cedar::CedarEngine;
use gatelog::access::entry::build::{self, delta, human, link, nhi, target};
use gatelog::access::entry::proto::{
    Actor, EntitlementDelta, EntryRef, LogParameters, LogTime, PolicyRef, Statement,
};
use gatelog::access::entry::{self, DecodedEntry};
use gatelog::access::gate::{self, GateState, Verdict};
use gatelog::server::gatekeeper::{GateConfig, Gatekeeper};
use gatelog::server::log::Log;
use gatelog::server::sequencer::{Admission, Admit, Submitted};
use gatelog::tlog::merkle::leaf_hash;
use gatelog::tlog::note::NoteSigner;
use prost::Message;

const NOW: i64 = 1_800_000_000_000;
const ORIGIN: &str = "bench/log";
const MINUTE: i64 = 60_000;
const APPROVERS: usize = 5;

struct Member {
    actor: Actor,
    key: NoteSigner,
}

/// A cast like the load generator's: requester, assistant, executor and
/// five approvers, registered by `admin`, and the owner of the machines.
struct Cast {
    /// When its statements are issued.
    now: i64,
    admin: Member,
    owner: Member,
    requester: Member,
    assistant: Member,
    executor: Member,
    approvers: Vec<Member>,
}

fn member(actor: Actor, seed: u8) -> Member {
    let key = NoteSigner::from_seed(&actor.id, [seed; 32]).unwrap();
    Member { actor, key }
}

impl Cast {
    fn new(now: i64) -> Cast {
        Cast {
            now,
            admin: member(human("admin"), 1),
            owner: member(human("owner"), 5),
            requester: member(human("requester"), 2),
            assistant: member(build::assistant("assistant", "spiffe://b/ai", "m", "a"), 3),
            executor: member(nhi("executor", "spiffe://b/ci"), 4),
            approvers: (0..APPROVERS)
                .map(|i| member(human(&format!("approver{i}")), 10 + i as u8))
                .collect(),
        }
    }

    /// The admin's registrations of everyone, and (optionally) the
    /// policy, as the first entries of a log; the policy's reference.
    fn setup(&self, with_policy: bool) -> (Batch, Option<PolicyRef>) {
        let mut batch = Batch {
            first: 0,
            leaves: vec![],
        };
        for m in self.everyone() {
            let owner = if m.actor.kind == entry::ActorKind::Human as i32 {
                ""
            } else {
                "owner"
            };
            let st = build::register(
                &self.admin.actor,
                &m.actor,
                owner,
                m.key.verifier().public_key(),
                self.now,
            );
            batch.push(&self.admin, &st);
        }
        if !with_policy {
            return (batch, None);
        }
        let st = build::publish_policy(&self.admin.actor, "bench", 1, POLICY, 2, self.now);
        batch.push(&self.admin, &st);
        let policy = PolicyRef {
            policy_id: "bench".into(),
            version: 1,
        };
        (batch, Some(policy))
    }

    fn everyone(&self) -> impl Iterator<Item = &Member> {
        [
            &self.owner,
            &self.requester,
            &self.assistant,
            &self.executor,
        ]
        .into_iter()
        .chain(&self.approvers)
    }
}

/// Signed leaves appended from `first` on; knows each one's link.
struct Batch {
    first: u64,
    leaves: Vec<Vec<u8>>,
}

impl Batch {
    fn push(&mut self, who: &Member, st: &Statement) -> EntryRef {
        let leaf = entry::sign(&who.key, &build::for_log(st.clone(), ORIGIN)).encode_to_vec();
        let at = link(self.first + self.leaves.len() as u64, &leaf_hash(&leaf));
        self.leaves.push(leaf);
        at
    }

    /// A chain of 10: request, two recommendations, five approvals, the
    /// intent, the outcome.
    fn chain(&mut self, cast: &Cast, id: &str, policy: &Option<PolicyRef>) {
        let d = privileged();
        let now = cast.now;
        let tgt = target("k8s", "prod/svc", "requester");
        let req = self.push(
            &cast.requester,
            &build::request(&cast.requester.actor, id, tgt, d.clone(), "executor", now),
        );
        // Two distinct rationales: identical statements would be one entry.
        for digest in [[1; 32], [2; 32]] {
            let st = build::recommend(
                &cast.assistant.actor,
                id,
                vec![req.clone()],
                d.clone(),
                digest,
                now,
            );
            self.push(&cast.assistant, &st);
        }
        let mut links = vec![req.clone()];
        for a in &cast.approvers {
            let st = build::approve(
                &a.actor,
                id,
                vec![req.clone()],
                d.clone(),
                now + 60 * MINUTE,
                now,
            );
            links.push(self.push(a, &st));
        }
        let intent = build::intent(
            &cast.executor.actor,
            id,
            links,
            d.clone(),
            policy.clone(),
            now,
        );
        let executed = self.push(&cast.executor, &intent);
        let outcome = build::outcome(&cast.executor.actor, id, vec![executed], vec![], id, now);
        self.push(&cast.executor, &outcome);
    }
}

fn privileged() -> EntitlementDelta {
    let mut d = delta(&["read"], &["deploy"], &[]);
    d.privileged = true;
    d
}

const POLICY: &str = r#"permit(principal, action == Action::"execute", resource)
    when { context.human_approvals >= 2 && !context.break_glass };"#;

/// The log's own record with `body`, signed by `log_key`.
fn log_record(log_key: &NoteSigner, body: entry::Body) -> Vec<u8> {
    let st = Statement {
        actor: Some(Actor {
            id: log_key.name().into(),
            ..Default::default()
        }),
        issued_at: Some(entry::timestamp(NOW)),
        log_origin: ORIGIN.into(),
        body: Some(body),
        ..Default::default()
    };
    entry::sign(log_key, &st).encode_to_vec()
}

/// A state of rules version 2 with the cast registered and (optionally)
/// the policy published, plus the decoded intent of one chain of 10 and
/// where it goes.
fn decision_setup(with_policy: bool) -> (GateState, DecodedEntry, u64) {
    let cast = Cast::new(NOW);
    let log_key = NoteSigner::from_seed(ORIGIN, [99; 32]).unwrap();
    let mut state = GateState::new(log_key.verifier(), vec![]);
    let params = log_record(
        &log_key,
        entry::Body::LogParameters(LogParameters {
            rules_version: gate::RULES_VERSION,
            log_origin: ORIGIN.into(),
            max_clock_skew_ms: 300_000,
            admin_keys: vec![cast.admin.key.verifier().to_vkey()],
            admin_threshold: 1,
        }),
    );
    let time = log_record(&log_key, entry::Body::LogTime(LogTime {}));
    let (mut setup, policy) = cast.setup(with_policy);
    setup.first = 2;
    setup.chain(&cast, "C", &policy);
    let mut leaves = vec![params, time];
    leaves.extend(setup.leaves);
    let intent_at = leaves.len() - 2;
    for (i, leaf) in leaves[..intent_at].iter().enumerate() {
        state.apply(i as u64, &DecodedEntry::decode(leaf).unwrap());
    }
    let intent = DecodedEntry::decode(&leaves[intent_at]).unwrap();
    (state, intent, intent_at as u64)
}

fn decision(c: &mut Criterion) {
    let mut g = c.benchmark_group("gate_decision_chain_of_10");
    g.throughput(Throughput::Elements(1));
    for with_policy in [false, true] {
        let (state, intent, index) = decision_setup(with_policy);
        let mut engine = CedarEngine::default();
        // Without a policy nothing executes (rule 7 refuses it).
        let verdict = gate::check(&state, index, &intent, &mut engine).unwrap();
        assert_eq!(verdict == Verdict::Admit, with_policy, "{verdict:?}");
        let name = if with_policy {
            "rules_1_to_8_cedar"
        } else {
            "refused_no_policy"
        };
        g.bench_function(name, |b| {
            b.iter(|| gate::check(&state, index, &intent, &mut engine).unwrap())
        });
    }
    g.finish();
}

fn admission(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(Log::open(dir.path(), Some("bench/log")).unwrap());
    let cast = Cast::new(gatelog::sys::clock::now_ms());
    let config = GateConfig {
        admins: vec![cast.admin.key.verifier()],
        admin_threshold: 1,
        max_clock_skew_ms: 300_000,
        // One time record, at the start: the batches below are signed
        // with links to the indices they will get, so nothing may come
        // between them (a real client links what is already appended).
        log_time_resolution_ms: 3_600_000,
        // Nothing here is appended to storage: every statement stays
        // in the cache.
        statement_cache: 1 << 20,
        genesis: vec![],
    };
    let mut keeper = Gatekeeper::open(log, config, Box::new(CedarEngine::default())).unwrap();
    let opened = keeper.opening(0).len() as u64;
    // Register the cast and publish the policy (not measured).
    let (mut setup, policy) = cast.setup(true);
    setup.first = opened;
    // (The leaves were linked from 0; the setup batch links nothing.)
    let refs: Vec<Submitted> = setup
        .leaves
        .iter()
        .map(|l| Submitted {
            bytes: l,
            decoded: None,
            verified_with: None,
        })
        .collect();
    let admitted = keeper.admit(opened, &refs);
    assert!(admitted.prefix.is_empty());
    assert!(admitted.answers.iter().all(|a| matches!(a, Admit::Append)));
    let mut next = opened + setup.leaves.len() as u64;
    let mut chain = 0u64;
    const CHAINS: usize = 26; // ~256 entries, the sequencer's batches at 10k/s.
    let mut g = c.benchmark_group("admission");
    g.throughput(Throughput::Elements((CHAINS * 10) as u64));
    g.sample_size(30);
    g.bench_function("batch_of_260_workflow_entries", |b| {
        b.iter_batched(
            || {
                let mut batch = Batch {
                    first: next,
                    leaves: vec![],
                };
                for _ in 0..CHAINS {
                    chain += 1;
                    batch.chain(&cast, &format!("B{chain}"), &policy);
                }
                next += batch.leaves.len() as u64;
                // Decoded and validated before, as the HTTP layer does.
                let decoded: Vec<DecodedEntry> = batch
                    .leaves
                    .iter()
                    .map(|l| DecodedEntry::decode(l).unwrap())
                    .collect();
                (batch, decoded)
            },
            |(batch, decoded)| {
                let refs: Vec<Submitted> = batch
                    .leaves
                    .iter()
                    .zip(&decoded)
                    .map(|(l, d)| Submitted {
                        bytes: l,
                        decoded: Some(d),
                        // Signatures checked here, in one batch, as for
                        // entries that did not come through HTTP.
                        verified_with: None,
                    })
                    .collect();
                let admitted = keeper.admit(batch.first, &refs);
                debug_assert!(admitted.answers.iter().all(|a| matches!(a, Admit::Append)));
                admitted
            },
            BatchSize::PerIteration,
        )
    });
    g.finish();
}

criterion_group!(benches, decision, admission);
criterion_main!(benches);
