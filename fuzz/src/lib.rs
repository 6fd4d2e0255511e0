//! A small, fixed log history for the fuzz targets, under rules version 2:
//! the log's parameters and clock records, an admin, a cast of identities
//! (the machines owned by the admin), a policy, a delegation grant, one
//! approved chain (request + approval) and one break-glass chain awaiting
//! review. Built in code with fixed keys, so every run (and the seed
//! writer) sees the same leaves.

pub mod parsers;

use gatelog::access::entry::build::{self, delta, human, link, nhi, target};
use gatelog::access::entry::proto::{
    decision, Actor, Decision, EntryRef, LogParameters, LogTime, PolicyRef, Statement,
};
use gatelog::access::entry::{self, Body, DecodedEntry};
use gatelog::access::gate::GateState;
use gatelog::tlog::note::{NoteSigner, NoteVerifier};
use prost::Message;

/// The gate's "now", and the `now_ms` given to `validate`.
pub const NOW: i64 = 1_800_000_000_000;
/// The log's origin (its key's name).
pub const ORIGIN: &str = "log.example";
const MINUTE: i64 = 60_000;

pub use parsers::AllowAll;

/// An appended leaf.
pub struct At {
    pub index: u64,
    pub leaf: Vec<u8>,
}

impl At {
    pub fn link(&self) -> EntryRef {
        link(
            self.index,
            &DecodedEntry::decode(&self.leaf).unwrap().leaf_hash,
        )
    }
}

/// The history, the keys that wrote it, and where it stands.
pub struct Cast {
    pub state: GateState,
    pub log: NoteSigner,
    pub admin: NoteSigner,
    /// alice, bob, carol (HUMAN), deployer (NHI), copilot (ASSISTANT).
    pub actors: Vec<(Actor, NoteSigner)>,
    /// Every leaf applied, in order.
    pub history: Vec<At>,
    /// Indices into `history`.
    pub grant: usize,
    pub request: usize,
    pub approval: usize,
    pub break_glass: usize,
    pub policy: PolicyRef,
    /// The index the next entry would get.
    pub next: u64,
}

fn key(name: &str, seed: u8) -> NoteSigner {
    NoteSigner::from_seed(name, [seed; 32]).expect("a valid key name")
}

impl Cast {
    pub fn new() -> Cast {
        let log = key(ORIGIN, 0);
        let admin = key("admin", 1);
        let actors = vec![
            (human("alice"), key("alice", 2)),
            (human("bob"), key("bob", 3)),
            (human("carol"), key("carol", 4)),
            (
                nhi("deployer", "spiffe://corp.example/ns/ci/sa/deployer"),
                key("deployer", 5),
            ),
            (
                build::assistant(
                    "copilot",
                    "spiffe://corp.example/ns/ai/sa/copilot",
                    "model-x",
                    "agent-7",
                ),
                key("copilot", 6),
            ),
        ];
        let mut cast = Cast {
            state: GateState::new(log.verifier(), vec![admin.verifier()]),
            log,
            admin,
            actors,
            history: Vec::new(),
            grant: 0,
            request: 0,
            approval: 0,
            break_glass: 0,
            policy: PolicyRef {
                policy_id: "org-access".into(),
                version: 1,
            },
            next: 0,
        };
        let admin_actor = human("admin");
        let t0 = NOW - 30 * MINUTE;
        cast.append_log_record(
            t0,
            Body::LogParameters(LogParameters {
                rules_version: 2,
                log_origin: ORIGIN.into(),
                max_clock_skew_ms: 5 * MINUTE as u64,
                admin_keys: vec![cast.admin.verifier().to_vkey()],
                admin_threshold: 1,
            }),
        );
        cast.tick(t0);
        for i in 0..cast.actors.len() {
            let (actor, key) = &cast.actors[i];
            let owner = if actor.kind == entry::ActorKind::Human as i32 {
                ""
            } else {
                "admin"
            };
            let st = build::register(&admin_actor, actor, owner, key.verifier().public_key(), t0);
            cast.append_as_admin(&st);
        }
        let st = build::publish_policy(
            &admin_actor,
            "org-access",
            1,
            "permit(principal, action, resource);",
            0,
            t0,
        );
        cast.append_as_admin(&st);
        let st = build::delegate(
            &admin_actor,
            "bob",
            "team-payments",
            "github",
            "org/",
            t0,
            NOW + 60 * MINUTE,
            t0,
        );
        cast.grant = cast.append_as_admin(&st);

        let d = Self::delta();
        cast.tick(NOW - 10 * MINUTE);
        let st = build::request(
            &cast.actor("alice"),
            "CHG-1",
            Self::target(),
            d.clone(),
            "deployer",
            NOW - 10 * MINUTE,
        );
        cast.request = cast.append_as("alice", &st);
        let st = build::on_behalf_of(
            build::approve(
                &cast.actor("bob"),
                "CHG-1",
                vec![cast.history[cast.request].link()],
                d.clone(),
                NOW + 60 * MINUTE,
                NOW - 5 * MINUTE,
            ),
            "team-payments",
            cast.history[cast.grant].link(),
        );
        cast.approval = cast.append_as("bob", &st);
        let st = build::break_glass(
            &cast.actor("bob"),
            "INC-1",
            target("github", "org/infra", "bob"),
            delta(&["read"], &["admin"], &[]),
            "outage",
            NOW + 60 * MINUTE,
            NOW - 2 * MINUTE,
        );
        cast.break_glass = cast.append_as("bob", &st);
        cast.tick(NOW);
        cast
    }

    /// The log's own record, signed by its key.
    fn append_log_record(&mut self, at: i64, body: Body) -> usize {
        let st = Statement {
            actor: Some(Actor {
                id: self.log.name().into(),
                ..Default::default()
            }),
            issued_at: Some(entry::timestamp(at)),
            body: Some(body),
            ..Default::default()
        };
        let leaf = Self::leaf(&self.log, &st);
        self.append(leaf)
    }

    /// The log records its time.
    fn tick(&mut self, at: i64) {
        self.append_log_record(at, Body::LogTime(LogTime {}));
    }

    pub fn delta() -> gatelog::access::entry::proto::EntitlementDelta {
        delta(&["read"], &["write"], &[])
    }

    pub fn target() -> gatelog::access::entry::proto::Target {
        target("github", "org/repo", "alice")
    }

    pub fn actor(&self, name: &str) -> Actor {
        self.signer(name).0.clone()
    }

    pub fn signer(&self, name: &str) -> &(Actor, NoteSigner) {
        self.actors
            .iter()
            .find(|(a, _)| a.id == name)
            .expect("a cast member")
    }

    /// Signs `st`, bound to this log, with `key` into a leaf.
    pub fn leaf(key: &NoteSigner, st: &Statement) -> Vec<u8> {
        entry::sign(key, &build::for_log(st.clone(), ORIGIN)).encode_to_vec()
    }

    fn append(&mut self, leaf: Vec<u8>) -> usize {
        let decoded = DecodedEntry::decode(&leaf).expect("our own leaf decodes");
        self.state.apply(self.next, &decoded);
        self.history.push(At {
            index: self.next,
            leaf,
        });
        self.next += 1;
        self.history.len() - 1
    }

    fn append_as_admin(&mut self, st: &Statement) -> usize {
        let leaf = Self::leaf(&self.admin, st);
        self.append(leaf)
    }

    fn append_as(&mut self, name: &str, st: &Statement) -> usize {
        let leaf = Self::leaf(&self.signer(name).1, st);
        self.append(leaf)
    }

    /// Statements that would be judged at `next`, with their signers:
    /// the intent that passes, an outcome, a review, a recommendation, a
    /// denial, a revocation, a new request, and a few the gate refuses or
    /// rejects.
    pub fn candidates(&self) -> Vec<(String, Statement)> {
        let request = self.history[self.request].link();
        let approval = self.history[self.approval].link();
        let bg = self.history[self.break_glass].link();
        let d = Self::delta();
        let intent = build::intent(
            &self.actor("deployer"),
            "CHG-1",
            vec![request.clone(), approval.clone()],
            d.clone(),
            Some(self.policy.clone()),
            NOW,
        );
        // Refused: the requester executes; the approver executes.
        let by_requester = Statement {
            actor: Some(self.actor("alice")),
            ..intent.clone()
        };
        let by_approver = Statement {
            actor: Some(self.actor("bob")),
            ..intent.clone()
        };
        let deny = Statement {
            body: Some(Body::Decision(Decision {
                outcome: decision::Outcome::Deny as i32,
                approved_delta: None,
                expires_at: None,
                reason: "no".into(),
            })),
            ..build::approve(
                &self.actor("carol"),
                "CHG-1",
                vec![request.clone()],
                d.clone(),
                NOW,
                NOW,
            )
        };
        vec![
            ("deployer".into(), intent.clone()),
            ("alice".into(), by_requester),
            ("bob".into(), by_approver),
            (
                "deployer".into(),
                build::outcome(
                    &self.actor("deployer"),
                    "CHG-1",
                    vec![approval.clone()],
                    vec!["read".into(), "write".into()],
                    "gh-1",
                    NOW,
                ),
            ),
            (
                "carol".into(),
                build::review(&self.actor("carol"), "INC-1", vec![bg.clone()], true, NOW),
            ),
            (
                "bob".into(),
                build::review(&self.actor("bob"), "INC-1", vec![bg.clone()], false, NOW),
            ),
            (
                "bob".into(),
                build::intent(
                    &self.actor("bob"),
                    "INC-1",
                    vec![bg.clone()],
                    delta(&["read"], &["admin"], &[]),
                    Some(self.policy.clone()),
                    NOW,
                ),
            ),
            (
                "copilot".into(),
                build::recommend(
                    &self.actor("copilot"),
                    "CHG-1",
                    vec![request.clone()],
                    d.clone(),
                    [9; 32],
                    NOW,
                ),
            ),
            ("carol".into(), deny),
            (
                "bob".into(),
                build::revoke(&self.actor("bob"), approval.clone(), "mistake", NOW),
            ),
            (
                "carol".into(),
                build::request(
                    &self.actor("carol"),
                    "CHG-2",
                    target("github", "org/repo", "carol"),
                    delta(&[], &["read"], &[]),
                    "deployer",
                    NOW,
                ),
            ),
        ]
    }
}

impl Default for Cast {
    fn default() -> Self {
        Cast::new()
    }
}

/// The verifier of the log's own key (for a fresh replay state).
pub fn verifiers(cast: &Cast) -> (NoteVerifier, Vec<NoteVerifier>) {
    (cast.log.verifier(), vec![cast.admin.verifier()])
}
