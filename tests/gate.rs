//! The access-change workflow end to end over HTTP against the real
//! binary: identities, every gate rule with a passing and a failing case,
//! refusal records, break-glass reviews, chains, bad input, restart.

mod common;

use std::collections::HashMap;
use std::path::Path;

use common::{get_ok, hash_list, http, HttpResponse, Server};
use gatelog::access::entry;
use gatelog::access::entry::build::{self, delta, human, link, nhi, target};
use gatelog::access::entry::proto::identity_registration::Operation as KeyOp;
use gatelog::access::entry::proto::{Actor, EntitlementDelta, EntryRef, PolicyRef, Statement};
use gatelog::tlog::checkpoint::Checkpoint;
use gatelog::tlog::merkle::verify_inclusion;
use gatelog::tlog::note::{NoteSigner, NoteVerifier};
use prost::Message;

const MINUTE: i64 = 60_000;

fn now() -> i64 {
    gatelog::sys::clock::now_ms()
}

/// A running gatelog and the cast registered in it.
struct Log {
    server: Server,
    _dir: tempfile::TempDir,
    admin: (Actor, NoteSigner),
    keys: HashMap<String, (Actor, NoteSigner)>,
    /// The policy intents name (a development log starts with one).
    policy: std::cell::RefCell<Option<PolicyRef>>,
}

/// An appended entry: where it is.
#[derive(Clone)]
struct At {
    index: u64,
    leaf: Vec<u8>,
}

impl At {
    fn link(&self) -> EntryRef {
        link(self.index, &self.leaf)
    }
}

fn admin_key(dir: &Path) -> NoteSigner {
    let text = std::fs::read_to_string(dir.join("admin.key")).expect("server wrote admin.key");
    NoteSigner::parse(text.trim()).unwrap()
}

impl Log {
    fn start() -> Log {
        let dir = tempfile::tempdir().unwrap();
        let server = Server::start_gatelog(dir.path(), &[]);
        let admin = (human("admin"), admin_key(dir.path()));
        let mut log = Log {
            server,
            _dir: dir,
            admin,
            keys: HashMap::new(),
            policy: std::cell::RefCell::new(Some(PolicyRef {
                policy_id: "default".into(),
                version: 1,
            })),
        };
        log.register(human("alice"));
        log.register(human("bob"));
        log.register(human("carol"));
        // Who answers for the machines, and takes part in nothing else.
        log.register(human("olivia"));
        log.register(nhi("deployer", "spiffe://corp.example/ns/ci/sa/deployer"));
        log.register(build::assistant(
            "copilot",
            "spiffe://corp.example/ns/ai/sa/copilot",
            "gpt-x-2026-06",
            "access-advisor-7",
        ));
        log
    }

    fn post(&self, key: &NoteSigner, st: &Statement) -> HttpResponse {
        self.server.submit(key, st)
    }

    /// Submits as `who`; must be appended.
    fn ok(&self, who: &str, st: &Statement) -> At {
        let key = self.key(who);
        let r = self.post(key, st);
        assert_eq!(r.status, 200, "{who}: {}", String::from_utf8_lossy(&r.body));
        let j = r.json();
        At {
            index: j["index"].as_u64().unwrap(),
            leaf: common::b64(j["leaf_hash"].as_str().unwrap()),
        }
    }

    /// Submits as `who`; must be refused by the gate (403, logged). The
    /// codes of the violations.
    fn refused(&self, who: &str, st: &Statement) -> Vec<(u64, String)> {
        let before = self.server.tree_size();
        let r = self.post(self.key(who), st);
        assert_eq!(r.status, 403, "{}", String::from_utf8_lossy(&r.body));
        let e = &r.json()["error"];
        assert_eq!(e["code"], "gate_refused", "{e}");
        // The refusal itself is in the log, right after what was there
        // (and the log's time record, when its clock moved on).
        let at = e["refusal_record"]["index"].as_u64().unwrap();
        assert!(at == before || at == before + 1, "{at} after {before}");
        assert_eq!(self.server.tree_size(), at + 1);
        e["violations"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| {
                (
                    v["rule"].as_u64().unwrap(),
                    v["code"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    }

    /// Submits as `who`; must be rejected with `status` and `code`, and
    /// change nothing.
    fn rejected(
        &self,
        key: &NoteSigner,
        st: &Statement,
        status: u16,
        code: &str,
    ) -> serde_json::Value {
        let before = self.server.tree_size();
        let r = self.post(key, st);
        assert_eq!(r.status, status, "{}", String::from_utf8_lossy(&r.body));
        assert_eq!(r.error_code(), code, "{}", String::from_utf8_lossy(&r.body));
        assert_eq!(
            self.server.tree_size(),
            before,
            "a rejected entry changed the log"
        );
        r.json()["error"].clone()
    }

    fn key(&self, who: &str) -> &NoteSigner {
        if who == "admin" {
            return &self.admin.1;
        }
        &self.keys[who].1
    }

    fn actor(&self, who: &str) -> &Actor {
        if who == "admin" {
            return &self.admin.0;
        }
        &self.keys[who].0
    }

    fn register(&mut self, actor: Actor) -> At {
        let key = NoteSigner::from_seed(&actor.id, rand_seed()).unwrap();
        let owner = if actor.kind == entry::ActorKind::Human as i32 {
            ""
        } else {
            "olivia"
        };
        let st = build::register(
            &self.admin.0,
            &actor,
            owner,
            key.verifier().public_key(),
            now(),
        );
        let at = self.ok("admin", &st);
        self.keys.insert(actor.id.clone(), (actor, key));
        at
    }

    /// Audits the whole log (the admins come from the log itself): the
    /// real gate's log must replay with no finding.
    fn audits_clean(&self) {
        let out = tempfile::tempdir().unwrap();
        let pkg = out.path().join("audit");
        let (code, output, _) = self.server.audit(&[], &pkg);
        let exceptions = std::fs::read_to_string(pkg.join("exceptions.csv")).unwrap_or_default();
        assert_eq!(code, 0, "{output}\n{exceptions}");
    }

    fn chain(&self, id: &str) -> serde_json::Value {
        get_ok(self.server.addr, &format!("/v1/chains/{id}")).json()
    }

    /// alice requests `d` on github in `chain`; bob approves it.
    fn approved(&self, chain: &str, d: &EntitlementDelta) -> (At, At) {
        let t = now();
        let req = self.ok(
            "alice",
            &build::request(self.actor("alice"), chain, tgt(), d.clone(), "deployer", t),
        );
        let dec = self.ok(
            "bob",
            &build::approve(
                self.actor("bob"),
                chain,
                vec![req.link()],
                d.clone(),
                t + 30 * MINUTE,
                t,
            ),
        );
        (req, dec)
    }

    fn intent(
        &self,
        who: &str,
        chain: &str,
        links: Vec<EntryRef>,
        d: &EntitlementDelta,
    ) -> Statement {
        let policy = self.policy.borrow().clone();
        build::intent(self.actor(who), chain, links, d.clone(), policy, now())
    }

    /// `who` reports that the entry at `intent` (an intent, or anything it
    /// should not be) succeeded, leaving `observed_after`.
    fn outcome(&self, who: &str, chain: &str, intent: &At, observed_after: &[&str]) -> Statement {
        let after = observed_after.iter().map(|e| e.to_string()).collect();
        let change = format!("change-{}", intent.index);
        build::outcome(
            self.actor(who),
            chain,
            vec![intent.link()],
            after,
            &change,
            now(),
        )
    }
}

fn rand_seed() -> [u8; 32] {
    use rand_core::RngCore;
    let mut seed = [0u8; 32];
    rand_core::OsRng.fill_bytes(&mut seed);
    seed
}

fn tgt() -> entry::proto::Target {
    target("github", "corp/payments", "alice")
}

fn write() -> EntitlementDelta {
    delta(&["read"], &["write"], &[])
}

fn admin_rights() -> EntitlementDelta {
    let mut d = delta(&["read"], &["admin"], &[]);
    d.privileged = true;
    d
}

fn codes(v: &[(u64, String)]) -> Vec<&str> {
    v.iter().map(|(_, c)| c.as_str()).collect()
}

#[test]
fn an_approved_chain_executes_and_reads_back_with_proofs() {
    let log = Log::start();
    let d = write();
    let rec_target = log.ok(
        "alice",
        &build::request(
            log.actor("alice"),
            "CHG-1",
            tgt(),
            d.clone(),
            "deployer",
            now(),
        ),
    );
    let rec = log.ok(
        "copilot",
        &build::recommend(
            log.actor("copilot"),
            "CHG-1",
            vec![rec_target.link()],
            d.clone(),
            [9; 32],
            now(),
        ),
    );
    assert_eq!(log.chain("CHG-1")["status"], "recommended");
    let dec = log.ok(
        "bob",
        &build::approve(
            log.actor("bob"),
            "CHG-1",
            vec![rec_target.link()],
            d.clone(),
            now() + MINUTE,
            now(),
        ),
    );
    assert_eq!(log.chain("CHG-1")["status"], "approved");
    let int = log.ok(
        "deployer",
        &log.intent("deployer", "CHG-1", vec![rec_target.link(), dec.link()], &d),
    );
    log.ok(
        "deployer",
        &log.outcome("deployer", "CHG-1", &int, &["read", "write"]),
    );
    // The change is done; it granted write for good, so the chain stays
    // open holding the grant (rules version 6), and takes nothing but an
    // early revocation and then the removal (an attempt is refused and
    // recorded: attempts are evidence).
    let v = log.refused(
        "bob",
        &build::approve(
            log.actor("bob"),
            "CHG-1",
            vec![rec_target.link()],
            d.clone(),
            now() + MINUTE,
            now(),
        ),
    );
    assert_eq!(codes(&v), ["chain_granted"]);
    let v = log.refused(
        "alice",
        &build::request(
            log.actor("alice"),
            "CHG-1",
            tgt(),
            d.clone(),
            "deployer",
            now(),
        ),
    );
    assert_eq!(codes(&v), ["chain_exists"]);
    let chain = log.chain("CHG-1");
    assert_eq!(chain["status"], "granted");
    assert_eq!(
        chain["grant"]["ends_at"],
        serde_json::Value::Null,
        "{chain}"
    );
    let entries = chain["entries"].as_array().unwrap();
    let kinds: Vec<&str> = entries
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        [
            "accessRequest",
            "recommendation",
            "decision",
            "executionIntent",
            "executionOutcome",
            // The two attempts above, as the chain is still open.
            "gateRefusal",
            "gateRefusal"
        ]
    );
    assert_eq!(entries[1]["index"], rec.index);
    // Each entry's proof verifies against the chain's signed checkpoint.
    let log_key = NoteVerifier::parse(&log.server.vkey).unwrap();
    let cp = Checkpoint::open(chain["checkpoint"].as_str().unwrap().as_bytes(), &log_key).unwrap();
    for e in entries {
        let index = e["index"].as_u64().unwrap();
        let leaf: [u8; 32] = common::b64(e["leaf_hash"].as_str().unwrap())
            .try_into()
            .unwrap();
        verify_inclusion(
            index,
            cp.size,
            &leaf,
            &hash_list(&e["inclusion_proof"]),
            &cp.root,
        )
        .unwrap();
    }
    // Decoded to the canonical JSON form.
    let st = &entries[3]["entry"]["statement"];
    assert_eq!(st["actor"]["kind"], "NHI");
    assert_eq!(
        st["actor"]["workload"]["spiffeId"],
        "spiffe://corp.example/ns/ci/sa/deployer"
    );
    assert_eq!(
        entries[1]["entry"]["statement"]["actor"]["modelId"],
        "gpt-x-2026-06"
    );
    assert!(chain["obligation"].is_null());
    assert_eq!(
        http(log.server.addr, "GET", "/v1/chains/NOPE", b"")
            .unwrap()
            .status,
        404
    );
    log.audits_clean();
}

#[test]
fn rule_1_the_chain_must_link_request_and_approval() {
    let log = Log::start();
    let d = write();
    let (req, dec) = log.approved("C1", &d);
    let v = log.refused(
        "deployer",
        &log.intent("deployer", "C1", vec![dec.link()], &d),
    );
    assert!(codes(&v).contains(&"request_not_linked"), "{v:?}");
    assert!(v.iter().all(|(rule, _)| *rule == 1), "{v:?}");
    let v = log.refused(
        "deployer",
        &log.intent("deployer", "C1", vec![req.link()], &d),
    );
    // The default policy wants a human approval too.
    assert_eq!(codes(&v), ["no_approval", "policy_denies"]);
    log.ok(
        "deployer",
        &log.intent("deployer", "C1", vec![req.link(), dec.link()], &d),
    );
    // The refusals are in the chain, decoded, with the refused entry.
    let chain = log.chain("C1");
    let refusal = chain["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == "gateRefusal")
        .expect("refusal in the chain");
    assert_eq!(
        refusal["entry"]["refused"]["statement"]["actor"]["id"],
        "deployer"
    );
    assert_eq!(
        refusal["entry"]["signerId"],
        log.server.vkey.split('+').next().unwrap()
    );
    assert_eq!(chain["status"], "executed");
}

#[test]
fn rule_2_only_people_outside_the_change_approve_and_only_the_named_executor_executes() {
    let log = Log::start();
    let d = write();
    let t = now();
    let req = log.ok(
        "alice",
        &build::request(log.actor("alice"), "C2", tgt(), d.clone(), "deployer", t),
    );
    let approve = |who: &str| {
        build::approve(
            log.actor(who),
            "C2",
            vec![req.link()],
            d.clone(),
            t + MINUTE,
            t,
        )
    };
    // The requester, who is also the subject, approving herself: refused
    // when made.
    let v = log.refused("alice", &approve("alice"));
    assert_eq!(codes(&v), ["self_approval", "subject_approves"]);
    // An assistant's "approval", and an NHI's: only humans decide. Both
    // machines answer to olivia, who is also behind the executor.
    let v = log.refused("copilot", &approve("copilot"));
    assert_eq!(codes(&v), ["approval_by_non_human", "approver_executes"]);
    let v = log.refused("deployer", &approve("deployer"));
    assert_eq!(codes(&v), ["approval_by_non_human", "approver_executes"]);
    // The person behind the executor cannot approve what her bot runs.
    let v = log.refused("olivia", &approve("olivia"));
    assert_eq!(codes(&v), ["approver_executes"]);
    // A DENY by someone who may not decide is no veto: it is refused.
    let mut deny = approve("alice");
    if let Some(entry::Body::Decision(dec)) = &mut deny.body {
        dec.outcome = entry::proto::decision::Outcome::Deny as i32;
    }
    let v = log.refused("alice", &deny);
    assert_eq!(codes(&v), ["self_approval", "subject_approves"]);
    // A recommendation passed off as an approval.
    let rec = log.ok(
        "copilot",
        &build::recommend(
            log.actor("copilot"),
            "C2",
            vec![req.link()],
            d.clone(),
            [1; 32],
            t,
        ),
    );
    let v = log.refused(
        "deployer",
        &log.intent("deployer", "C2", vec![req.link(), rec.link()], &d),
    );
    assert!(codes(&v).contains(&"recommendation_as_approval"), "{v:?}");
    // The approver executing, the requester executing, and an uninvolved
    // identity consuming the approval: only the named executor may.
    let good = log.ok("bob", &approve("bob"));
    let v = log.refused(
        "bob",
        &log.intent("bob", "C2", vec![req.link(), good.link()], &d),
    );
    assert_eq!(
        codes(&v),
        ["wrong_executor", "approver_executes", "policy_denies"]
    );
    let v = log.refused(
        "alice",
        &log.intent("alice", "C2", vec![req.link(), good.link()], &d),
    );
    assert_eq!(codes(&v), ["wrong_executor", "executor_is_requester"]);
    let v = log.refused(
        "carol",
        &log.intent("carol", "C2", vec![req.link(), good.link()], &d),
    );
    assert_eq!(codes(&v), ["wrong_executor"]);
    let int = log.ok(
        "deployer",
        &log.intent("deployer", "C2", vec![req.link(), good.link()], &d),
    );
    // Only the executor reports the outcome, once.
    let outcome = |who: &str, change: &str| {
        build::outcome(
            log.actor(who),
            "C2",
            vec![int.link()],
            vec!["read".into(), "write".into()],
            change,
            now(),
        )
    };
    let v = log.refused("carol", &outcome("carol", "x-1"));
    assert_eq!(codes(&v), ["not_the_executor"]);
    let v = log.refused("bob", &outcome("bob", "x-2"));
    assert_eq!(codes(&v), ["not_the_executor"]);
    log.ok("deployer", &outcome("deployer", "x-3"));
    // Write granted for good: the chain holds it (rules version 6).
    assert_eq!(log.chain("C2")["status"], "granted");
    log.audits_clean();
}

#[test]
fn rule_3_approvals_stay_within_the_request_and_the_intent_is_what_was_approved() {
    let log = Log::start();
    let asked = delta(&["read"], &["write", "triage"], &[]);
    let t = now();
    let req = log.ok(
        "alice",
        &build::request(
            log.actor("alice"),
            "C3",
            tgt(),
            asked.clone(),
            "deployer",
            t,
        ),
    );
    let approve = |d: &EntitlementDelta| {
        build::approve(
            log.actor("bob"),
            "C3",
            vec![req.link()],
            d.clone(),
            t + MINUTE,
            t,
        )
    };
    // A request for write and triage, approved as admin: refused when made.
    let broader = delta(&["read"], &["admin"], &[]);
    let v = log.refused("bob", &approve(&broader));
    assert_eq!(codes(&v), ["approval_exceeds_request"]);
    assert_eq!(v[0].0, 3);
    // Approved narrower (write only): the intent must be exactly that.
    let d = write();
    let dec = log.ok("bob", &approve(&d));
    let v = log.refused(
        "deployer",
        &log.intent("deployer", "C3", vec![req.link(), dec.link()], &asked),
    );
    assert_eq!(codes(&v), ["delta_mismatch"]);
    let more = delta(&["read"], &["write", "admin"], &[]);
    let v = log.refused(
        "deployer",
        &log.intent("deployer", "C3", vec![req.link(), dec.link()], &more),
    );
    assert_eq!(codes(&v), ["intent_exceeds_request", "delta_mismatch"]);
    // Deltas are sets: the same change listed in another order passes.
    let mut reordered = d.clone();
    reordered.after.reverse();
    assert_ne!(reordered.after, d.after);
    log.ok(
        "deployer",
        &log.intent("deployer", "C3", vec![req.link(), dec.link()], &reordered),
    );
    log.audits_clean();
}

#[test]
fn rule_4_approvals_expire_and_can_be_revoked() {
    let log = Log::start();
    let d = write();
    let t = now();
    let req = log.ok(
        "alice",
        &build::request(log.actor("alice"), "C4", tgt(), d.clone(), "deployer", t),
    );
    let short = log.ok(
        "bob",
        &build::approve(
            log.actor("bob"),
            "C4",
            vec![req.link()],
            d.clone(),
            t + 1_000,
            t,
        ),
    );
    std::thread::sleep(std::time::Duration::from_millis(1_200));
    let v = log.refused(
        "deployer",
        &log.intent("deployer", "C4", vec![req.link(), short.link()], &d),
    );
    assert_eq!(codes(&v), ["approval_expired"]);
    let t = now();
    let long = log.ok(
        "bob",
        &build::approve(
            log.actor("bob"),
            "C4",
            vec![req.link()],
            d.clone(),
            t + MINUTE,
            t,
        ),
    );
    // Only an admin or the author revokes.
    log.rejected(
        log.key("carol"),
        &build::revoke(log.actor("carol"), long.link(), "no", now()),
        403,
        "not_revoker",
    );
    log.ok(
        "bob",
        &build::revoke(log.actor("bob"), long.link(), "changed my mind", now()),
    );
    let v = log.refused(
        "deployer",
        &log.intent("deployer", "C4", vec![req.link(), long.link()], &d),
    );
    assert_eq!(codes(&v), ["approval_revoked"]);
    let t = now();
    let fresh = log.ok(
        "bob",
        &build::approve(
            log.actor("bob"),
            "C4",
            vec![req.link()],
            d.clone(),
            t + MINUTE,
            t,
        ),
    );
    log.ok(
        "deployer",
        &log.intent("deployer", "C4", vec![req.link(), fresh.link()], &d),
    );
    // An approval authorises one execution (and, rules version 6, a
    // second intent waits for the first one's outcome).
    let v = log.refused(
        "deployer",
        &log.intent("deployer", "C4", vec![req.link(), fresh.link()], &d),
    );
    assert_eq!(codes(&v), ["approval_used", "intent_pending"]);
    assert_eq!(
        log.chain("C4")["status"],
        "executed",
        "a refused retry undid the execution"
    );
}

#[test]
fn rule_5_privileged_increases_need_two_humans() {
    let log = Log::start();
    let d = admin_rights();
    let (req, bob) = log.approved("C5", &d);
    let v = log.refused(
        "deployer",
        &log.intent("deployer", "C5", vec![req.link(), bob.link()], &d),
    );
    assert_eq!(codes(&v), ["insufficient_human_approvals"]);
    assert_eq!(v[0].0, 5);
    // An assistant cannot be the second approver: refused when made.
    let t = now();
    let v = log.refused(
        "copilot",
        &build::approve(
            log.actor("copilot"),
            "C5",
            vec![req.link()],
            d.clone(),
            t + MINUTE,
            t,
        ),
    );
    assert!(codes(&v).contains(&"approval_by_non_human"), "{v:?}");
    let carol = log.ok(
        "carol",
        &build::approve(
            log.actor("carol"),
            "C5",
            vec![req.link()],
            d.clone(),
            t + MINUTE,
            t,
        ),
    );
    log.ok(
        "deployer",
        &log.intent(
            "deployer",
            "C5",
            vec![req.link(), bob.link(), carol.link()],
            &d,
        ),
    );
    // A high-risk removal is held to the same rule.
    let mut removal = delta(&["read", "oncall"], &[], &["oncall"]);
    removal.high_risk = true;
    let (req, bob) = log.approved("C5b", &removal);
    let v = log.refused(
        "deployer",
        &log.intent("deployer", "C5b", vec![req.link(), bob.link()], &removal),
    );
    assert_eq!(codes(&v), ["insufficient_human_approvals"]);

    // Privilege comes from the policy: once "admin" is a privileged class
    // needing three approvals, an unflagged request for it needs three.
    let mut policy = build::publish_policy(
        log.actor("admin"),
        "classes",
        1,
        gatelog::server::run::DEV_POLICY,
        0,
        now(),
    );
    if let Some(entry::Body::PolicyPublication(p)) = &mut policy.body {
        p.classes.push(entry::proto::EntitlementClass {
            pattern: "adm*".into(),
            privileged: true,
            approvals: 3,
            ..Default::default()
        });
    }
    log.ok("admin", &policy);
    *log.policy.borrow_mut() = Some(PolicyRef {
        policy_id: "classes".into(),
        version: 1,
    });
    let unflagged = delta(&["read"], &["admin"], &[]);
    let (req, bob) = log.approved("C5c", &unflagged);
    let t = now();
    let carol = log.ok(
        "carol",
        &build::approve(
            log.actor("carol"),
            "C5c",
            vec![req.link()],
            unflagged.clone(),
            t + MINUTE,
            t,
        ),
    );
    let v = log.refused(
        "deployer",
        &log.intent(
            "deployer",
            "C5c",
            vec![req.link(), bob.link(), carol.link()],
            &unflagged,
        ),
    );
    assert_eq!(codes(&v), ["insufficient_human_approvals"]);
    let message = |v: &[(u64, String)]| v.len();
    assert_eq!(message(&v), 1);
    log.audits_clean();
}

#[test]
fn rule_6_delegated_approvals_rest_on_a_valid_grant() {
    let log = Log::start();
    let d = write();
    let t = now();
    let grant = log.ok(
        "admin",
        &build::delegate(
            log.actor("admin"),
            "bob",
            "team-payments",
            "github",
            "corp/",
            t - MINUTE,
            t + 60 * MINUTE,
            t,
        ),
    );
    let elsewhere = log.ok(
        "admin",
        &build::delegate(
            log.actor("admin"),
            "bob",
            "team-payments",
            "aws",
            "",
            t - MINUTE,
            t + 60 * MINUTE,
            t,
        ),
    );
    // Only admins grant.
    log.rejected(
        log.key("bob"),
        &build::delegate(
            log.actor("bob"),
            "bob",
            "team-x",
            "github",
            "",
            t,
            t + MINUTE,
            t,
        ),
        403,
        "admin_only",
    );
    let req = log.ok(
        "alice",
        &build::request(log.actor("alice"), "C6", tgt(), d.clone(), "deployer", t),
    );
    let approve = |g: &At| {
        build::on_behalf_of(
            build::approve(
                log.actor("bob"),
                "C6",
                vec![req.link()],
                d.clone(),
                now() + MINUTE,
                now(),
            ),
            "team-payments",
            g.link(),
        )
    };
    let out_of_scope = log.ok("bob", &approve(&elsewhere));
    let v = log.refused(
        "deployer",
        &log.intent("deployer", "C6", vec![req.link(), out_of_scope.link()], &d),
    );
    assert_eq!(codes(&v), ["delegation_out_of_scope"]);
    let good = log.ok("bob", &approve(&grant));
    log.ok(
        "deployer",
        &log.intent("deployer", "C6", vec![req.link(), good.link()], &d),
    );
    // Revoke the grant: approvals resting on it no longer count.
    let unused = log.ok("bob", &approve(&grant));
    log.ok(
        "admin",
        &build::revoke(log.actor("admin"), grant.link(), "reorg", now()),
    );
    let v = log.refused(
        "deployer",
        &log.intent("deployer", "C6", vec![req.link(), unused.link()], &d),
    );
    // (The chain's first intent awaits its outcome: rules version 6 has
    // the second wait for it.)
    assert_eq!(codes(&v), ["delegation_revoked", "intent_pending"]);
    assert_eq!(v[0].0, 6);
}

#[test]
fn rule_7_the_published_cedar_policy_decides() {
    let log = Log::start();
    let policy = r#"
        permit(principal, action == Action::"execute", resource)
        when { context.human_approvals >= 1 || context.break_glass };
        forbid(principal, action, resource)
        when { context.system == "github" && context.adds.contains("owner") };
    "#;
    // A policy that does not parse is refused, and not published.
    log.rejected(
        log.key("admin"),
        &build::publish_policy(log.actor("admin"), "org", 1, "permit(", 0, now()),
        422,
        "invalid_policy",
    );
    log.ok(
        "admin",
        &build::publish_policy(log.actor("admin"), "org", 1, policy, 0, now()),
    );
    let v1 = Some(PolicyRef {
        policy_id: "org".into(),
        version: 1,
    });
    let d = write();
    let (req, dec) = log.approved("C7", &d);
    // The intent names the policy in force, so the log records it.
    let v = log.refused(
        "deployer",
        &log.intent("deployer", "C7", vec![req.link(), dec.link()], &d),
    );
    assert_eq!(codes(&v), ["policy_mismatch"]);
    let mut ok = log.intent("deployer", "C7", vec![req.link(), dec.link()], &d);
    ok.policy = v1.clone();
    log.ok("deployer", &ok);
    let owner = delta(&["read"], &["owner"], &[]);
    let (req, dec) = log.approved("C7b", &owner);
    let mut denied = log.intent("deployer", "C7b", vec![req.link(), dec.link()], &owner);
    denied.policy = v1;
    let v = log.refused("deployer", &denied);
    assert_eq!(codes(&v), ["policy_denies"]);
    assert_eq!(v[0].0, 7);
    // Versions only go up.
    log.rejected(
        log.key("admin"),
        &build::publish_policy(log.actor("admin"), "org", 1, policy, 0, now()),
        409,
        "stale_policy_version",
    );
}

#[test]
fn break_glass_opens_a_review_only_another_human_closes() {
    let log = Log::start();
    let d = admin_rights();
    let t = now();
    let bg = log.ok(
        "carol",
        &build::break_glass(
            log.actor("carol"),
            "BG-1",
            tgt(),
            d.clone(),
            "prod incident 4411",
            t + 1_000,
            t,
        ),
    );
    // The emergency intent needs no approval, but only the one who broke
    // the glass executes under it, once.
    let v = log.refused(
        "deployer",
        &log.intent("deployer", "BG-1", vec![bg.link()], &d),
    );
    assert_eq!(codes(&v), ["break_glass_executor"]);
    log.ok("carol", &log.intent("carol", "BG-1", vec![bg.link()], &d));
    let v = log.refused("carol", &log.intent("carol", "BG-1", vec![bg.link()], &d));
    assert_eq!(codes(&v), ["break_glass_used"]);
    let bot_bg = build::break_glass(
        log.actor("copilot"),
        "BG-2",
        tgt(),
        d.clone(),
        "x",
        now() + MINUTE,
        now(),
    );
    log.rejected(log.key("copilot"), &bot_bg, 403, "assistant_break_glass");
    let chain = log.chain("BG-1");
    assert_eq!(chain["status"], "break_glass_awaiting_review");
    assert_eq!(chain["obligation"]["index"], bg.index);
    std::thread::sleep(std::time::Duration::from_millis(1_100));
    let open = get_ok(log.server.addr, "/v1/obligations").json();
    let first = &open["obligations"][0];
    assert_eq!(first["chain_id"], "BG-1");
    assert_eq!(first["overdue"], true);
    // Not by the one who broke the glass, not by a machine.
    let v = log.refused(
        "carol",
        &build::review(log.actor("carol"), "BG-1", vec![bg.link()], true, now()),
    );
    assert_eq!(codes(&v), ["self_review"]);
    let v = log.refused(
        "deployer",
        &build::review(log.actor("deployer"), "BG-1", vec![bg.link()], true, now()),
    );
    assert_eq!(codes(&v), ["review_by_non_human"]);
    log.ok(
        "bob",
        &build::review(log.actor("bob"), "BG-1", vec![bg.link()], true, now()),
    );
    assert_eq!(log.chain("BG-1")["status"], "reviewed");
    assert!(
        get_ok(log.server.addr, "/v1/obligations").json()["obligations"]
            .as_array()
            .unwrap()
            .is_empty()
    );
}

#[test]
fn unknown_revoked_and_wrong_keys_are_refused_and_not_logged() {
    let mut log = Log::start();
    let d = write();
    let st = build::request(
        log.actor("alice"),
        "K1",
        tgt(),
        d.clone(),
        "deployer",
        now(),
    );
    let stranger = NoteSigner::from_seed("mallory", [3; 32]).unwrap();
    let mut as_mallory = st.clone();
    as_mallory.actor = Some(human("mallory"));
    log.rejected(&stranger, &as_mallory, 401, "unknown_signer");
    // alice's name, another key.
    let imposter = NoteSigner::from_seed("alice", [4; 32]).unwrap();
    log.rejected(&imposter, &st, 401, "unknown_key");
    // alice's key id, a bad signature.
    let mut leaf = entry::sign(log.key("alice"), &st);
    leaf.signature[0] ^= 1;
    let before = log.server.tree_size();
    let r = http(
        log.server.addr,
        "POST",
        "/v1/entries",
        &leaf.encode_to_vec(),
    )
    .unwrap();
    assert_eq!((r.status, r.error_code().as_str()), (401, "bad_signature"));
    assert_eq!(log.server.tree_size(), before);
    // Claiming another kind than registered.
    let mut as_nhi = st.clone();
    as_nhi.actor = Some(nhi("alice", "spiffe://corp.example/x"));
    log.rejected(log.key("alice"), &as_nhi, 403, "actor_mismatch");
    // Rotate alice's key: the old one is refused, the new one works.
    let old = log.keys["alice"].1.to_private_key_string();
    let new_key = NoteSigner::from_seed("alice", [5; 32]).unwrap();
    let rotate = key_change(&log, "alice", &new_key, KeyOp::RotateKey, None);
    log.ok("admin", &rotate);
    log.keys.get_mut("alice").unwrap().1 = new_key;
    log.rejected(&NoteSigner::parse(&old).unwrap(), &st, 403, "key_revoked");
    log.ok("alice", &st);
    // Only admins register; only the log writes refusals.
    log.rejected(
        log.key("bob"),
        &build::register(
            log.actor("bob"),
            &human("eve"),
            "",
            NoteSigner::from_seed("eve", [7; 32])
                .unwrap()
                .verifier()
                .public_key(),
            now(),
        ),
        403,
        "admin_only",
    );
}

#[test]
fn malformed_and_inconsistent_entries_get_4xx_naming_the_field() {
    let log = Log::start();
    let addr = log.server.addr;
    let post_raw = |body: &[u8]| http(addr, "POST", "/v1/entries", body).unwrap();
    let before = log.server.tree_size();
    let r = post_raw(b"\xff\xff\xffnot protobuf");
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (400, "malformed_entry")
    );
    assert_eq!(r.json()["error"]["field"], "signedEntry");
    let big = vec![b'x'; 70_000];
    assert_eq!(post_raw(&big).status, 413);
    assert_eq!(log.server.tree_size(), before);

    let d = write();
    let alice = log.key("alice");
    let mut no_body = build::request(
        log.actor("alice"),
        "B1",
        tgt(),
        d.clone(),
        "deployer",
        now(),
    );
    no_body.body = None;
    let e = log.rejected(alice, &no_body, 422, "invalid_entry");
    assert_eq!(e["field"], "statement.body");
    let mut no_subject = build::request(
        log.actor("alice"),
        "B1",
        tgt(),
        d.clone(),
        "deployer",
        now(),
    );
    no_subject.target.as_mut().unwrap().subject.clear();
    let e = log.rejected(alice, &no_subject, 422, "invalid_entry");
    assert_eq!(e["field"], "statement.target.subject");
    let future = build::request(
        log.actor("alice"),
        "B1",
        tgt(),
        d.clone(),
        "deployer",
        now() + 3_600_000,
    );
    let e = log.rejected(alice, &future, 422, "invalid_entry");
    assert_eq!(e["field"], "statement.issuedAt");
    let mut inexact = d.clone();
    inexact.after.push("admin".into());
    let e = log.rejected(
        alice,
        &build::request(log.actor("alice"), "B1", tgt(), inexact, "deployer", now()),
        422,
        "invalid_entry",
    );
    assert_eq!(e["field"], "statement.accessRequest.delta.after");

    // Links: absent, wrong hash, other chain; and an unknown chain.
    let (req, _) = log.approved("B1", &d);
    let (other, _) = log.approved("B2", &d);
    let t = now();
    let approve = |links| build::approve(log.actor("bob"), "B1", links, d.clone(), t + MINUTE, t);
    let e = log.rejected(
        log.key("bob"),
        &approve(vec![link(9_999, &[0; 32])]),
        422,
        "absent_link",
    );
    assert_eq!(e["field"], "statement.links[0].index");
    log.rejected(
        log.key("bob"),
        &approve(vec![link(req.index, &[0; 32])]),
        422,
        "link_hash_mismatch",
    );
    // Another chain's entry, by a registered identity: refused and
    // recorded (attempts are evidence).
    let v = log.refused("bob", &approve(vec![other.link()]));
    assert_eq!(codes(&v), ["cross_chain_link"]);
    let stray = build::approve(
        log.actor("bob"),
        "NOCHAIN",
        vec![req.link()],
        d.clone(),
        t + MINUTE,
        t,
    );
    let v = log.refused("bob", &stray);
    assert_eq!(codes(&v), ["cross_chain_link"]);
    let v = log.refused(
        "alice",
        &build::request(
            log.actor("alice"),
            "B1",
            tgt(),
            d.clone(),
            "deployer",
            now(),
        ),
    );
    assert_eq!(codes(&v), ["chain_exists"]);
    // A copy of a signed entry under another leaf hash (an unknown field
    // appended to the wrapper the signature does not cover) is refused:
    // otherwise one approval could be logged, and used, twice.
    let approval = build::approve(
        log.actor("bob"),
        "B1",
        vec![req.link()],
        d.clone(),
        t + MINUTE,
        t,
    );
    let mut copy = entry::sign(log.key("bob"), &approval).encode_to_vec();
    copy.extend_from_slice(&[0x78, 0x00]);
    let r = post_raw(&copy);
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (400, "malformed_entry")
    );
    // Timestamps outside the protobuf range are refused, not overflowed.
    let mut ancient = approval.clone();
    ancient.issued_at = Some(gatelog::access::entry::Timestamp {
        seconds: i64::MIN / 2,
        nanos: 0,
    });
    let e = log.rejected(log.key("bob"), &ancient, 422, "invalid_entry");
    assert_eq!(e["field"], "statement.issuedAt");
    // Nobody signs as the log.
    let refusal = Statement {
        actor: Some(human("alice")),
        issued_at: Some(entry::timestamp(now())),
        chain_id: "B1".into(),
        body: Some(entry::Body::GateRefusal(Default::default())),
        ..Default::default()
    };
    log.rejected(alice, &refusal, 403, "log_only");
}

#[test]
fn the_gate_state_survives_a_restart() {
    let mut log = Log::start();
    let d = write();
    let (req, dec) = log.approved("R1", &d);
    let dir = log._dir.path().to_path_buf();
    log.server.kill9();
    log.server = Server::start_gatelog(&dir, &[]);
    // Identities, chains and approvals came back from the log itself.
    log.ok(
        "deployer",
        &log.intent("deployer", "R1", vec![req.link(), dec.link()], &d),
    );
    assert_eq!(log.chain("R1")["status"], "executed");
    let v = log.refused(
        "alice",
        &build::request(
            log.actor("alice"),
            "R1",
            tgt(),
            d.clone(),
            "deployer",
            now(),
        ),
    );
    assert_eq!(codes(&v), ["chain_exists"]);
}

#[test]
fn a_refused_entry_sent_again_gets_its_first_refusal_record_and_appends_nothing() {
    let mut log = Log::start();
    let d = write();
    let (req, dec) = log.approved("RR1", &d);
    let more = delta(&["read"], &["write", "admin"], &[]);
    let attempt = log.intent("deployer", "RR1", vec![req.link(), dec.link()], &more);
    let v = log.refused("deployer", &attempt);
    assert_eq!(codes(&v), ["intent_exceeds_request", "delta_mismatch"]);
    let size = log.server.tree_size();
    let first = log.post(log.key("deployer"), &attempt).json()["error"]["refusal_record"].clone();
    assert_eq!(first["index"].as_u64(), Some(size - 1));
    // Anyone holding the bytes (they are public, inside the record) may
    // send them again: each answer is the first record, and the log stays.
    for _ in 0..100 {
        let r = log.post(log.key("deployer"), &attempt);
        assert_eq!(r.status, 403, "{}", String::from_utf8_lossy(&r.body));
        let e = &r.json()["error"];
        assert_eq!(e["code"], "gate_refused");
        assert_eq!(e["violations"][0]["code"], "intent_exceeds_request");
        assert_eq!(e["refusal_record"]["index"], first["index"]);
        assert_eq!(e["refusal_record"]["leaf_hash"], first["leaf_hash"]);
    }
    assert_eq!(log.server.tree_size(), size);
    // The index of refusals is durable: the same after a kill -9.
    let dir = log._dir.path().to_path_buf();
    log.server.kill9();
    log.server = Server::start_gatelog(&dir, &[]);
    let r = log.post(log.key("deployer"), &attempt);
    assert_eq!(r.status, 403);
    assert_eq!(r.json()["error"]["refusal_record"]["index"], first["index"]);
    assert_eq!(log.server.tree_size(), size);
    // The legitimate intent is still admitted.
    log.ok(
        "deployer",
        &log.intent("deployer", "RR1", vec![req.link(), dec.link()], &d),
    );
}

#[test]
fn the_largest_entry_the_gate_takes_is_refused_into_a_record_that_fits_a_bundle() {
    use prost::Message;
    let log = Log::start();
    let info = common::get_ok(log.server.addr, "/v1/log").json();
    let max = info["max_entry_bytes"].as_u64().unwrap() as usize;
    // The record holds the whole entry plus the log's envelope (at most a
    // few KB: capped violation messages, a 256-byte chain id).
    assert!((55_000..65_535).contains(&max), "{max}");
    let (req, dec) = log.approved("BIG", &write());
    // An intent for another delta than the approved one, padded to exactly
    // the largest size taken. Rules version 3 bounds every string, so the
    // padding is a field this release does not know (decoders skip it; the
    // signature covers it; the refusal record must still hold it whole).
    let key = log.key("deployer");
    let at = now();
    let sized = |pad: usize| {
        let d = delta(&["read"], &["write", "other"], &[]);
        let st = build::intent(
            log.actor("deployer"),
            "BIG",
            vec![req.link(), dec.link()],
            d,
            log.policy.borrow().clone(),
            at,
        );
        let mut signed = entry::sign(key, &build::for_log(st, log.server.origin()));
        // Field 1000, length-delimited: tag 1000 << 3 | 2, as a varint.
        prost::encoding::encode_key(
            1000,
            prost::encoding::WireType::LengthDelimited,
            &mut signed.statement,
        );
        prost::encoding::encode_varint(pad as u64, &mut signed.statement);
        signed.statement.extend(std::iter::repeat_n(b'p', pad));
        signed.signature = key
            .sign_bytes(&entry::signed_message(&signed.statement))
            .to_vec();
        signed.encode_to_vec()
    };
    let base = sized(0).len();
    let (pad, bytes) = (max.saturating_sub(base + 8)..max)
        .map(|n| (n, sized(n)))
        .find(|(_, b)| b.len() == max)
        .expect("an intent of exactly the largest size");
    let before = log.server.tree_size();
    let r = common::http(log.server.addr, "POST", "/v1/entries", &bytes).unwrap();
    assert_eq!(r.status, 403, "{}", String::from_utf8_lossy(&r.body));
    let at = r.json()["error"]["refusal_record"]["index"]
        .as_u64()
        .unwrap();
    assert!(at == before || at == before + 1, "{at} after {before}");
    // The record is in an entry bundle that decodes and holds it whole.
    let size = log.server.tree_size();
    let bundle = common::get_ok(log.server.addr, &format!("/tile/entries/000.p/{size}"));
    let entries = gatelog::tlog::tiles::decode_bundle(&bundle.body).expect("a valid bundle");
    let record = entry::DecodedEntry::decode(entries[before as usize]).unwrap();
    match &record.statement.body {
        Some(entry::Body::GateRefusal(g)) => {
            assert_eq!(g.refused_entry, bytes);
            assert!(g.violations.iter().all(|v| v.message.len() <= 512));
        }
        other => panic!("not a refusal record: {other:?}"),
    }
    assert!(entries[before as usize].len() <= 65_535);
    // One byte more is refused at the door, and changes nothing.
    let over = sized(pad + 1);
    assert!(over.len() > max);
    let r = common::http(log.server.addr, "POST", "/v1/entries", &over).unwrap();
    assert_eq!(r.status, 413, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.error_code(), "entry_too_large");
    assert_eq!(log.server.tree_size(), size);
}

// ---------------------------------------------------------------------
// Rules version 2: each rule attempted by the actor who would game it,
// beside the legitimate variant.

/// A deny by someone who may decide.
fn deny(log: &Log, who: &str, chain: &str, req: &At) -> Statement {
    let mut st = build::approve(
        log.actor(who),
        chain,
        vec![req.link()],
        write(),
        now() + MINUTE,
        now(),
    );
    if let Some(entry::Body::Decision(d)) = &mut st.body {
        d.outcome = entry::proto::decision::Outcome::Deny as i32;
        d.approved_delta = None;
        d.expires_at = None;
    }
    st
}

#[test]
fn a_deny_is_final_whether_or_not_the_executor_links_it() {
    let log = Log::start();
    let d = write();
    let (req, bob) = log.approved("V1", &d);
    let no = log.ok("carol", &deny(&log, "carol", "V1", &req));
    // Rules version 3: a DENY closes the chain; nothing joins it after.
    assert_eq!(log.chain("V1")["status"], "denied");
    // The executor leaves the DENY out of its links: still refused, and
    // the attempt is recorded.
    let v = log.refused(
        "deployer",
        &log.intent("deployer", "V1", vec![req.link(), bob.link()], &d),
    );
    assert_eq!(codes(&v), ["chain_closed"]);
    // Carol cannot take her DENY back to reopen it: the requester asks
    // again, in a new chain.
    log.rejected(
        log.key("carol"),
        &build::revoke(log.actor("carol"), no.link(), "resolved", now()),
        403,
        "not_revoker",
    );
    let (req, bob) = log.approved("V1-again", &d);
    log.ok(
        "deployer",
        &log.intent("deployer", "V1-again", vec![req.link(), bob.link()], &d),
    );
    log.audits_clean();
}

/// Publishes a policy whose only class is `class`, and names it in what
/// the log's helpers build from then on.
fn publish_class(log: &Log, class: entry::proto::EntitlementClass) {
    publish(log, 1, gatelog::server::run::DEV_POLICY, vec![class]);
}

/// The admin publishes version `version` of policy `classes`: `cedar`
/// and `classes`; the intents name it from then on.
fn publish(log: &Log, version: u64, cedar: &str, classes: Vec<entry::proto::EntitlementClass>) {
    let mut policy = build::publish_policy(log.actor("admin"), "classes", version, cedar, 0, now());
    if let Some(entry::Body::PolicyPublication(p)) = &mut policy.body {
        p.classes = classes;
    }
    log.ok("admin", &policy);
    *log.policy.borrow_mut() = Some(PolicyRef {
        policy_id: "classes".into(),
        version,
    });
}

#[test]
fn a_request_expires_at_the_policys_maximum_age_and_its_chain_closes() {
    let log = Log::start();
    publish_class(
        &log,
        entry::proto::EntitlementClass {
            pattern: "write".into(),
            max_request_age_seconds: 1,
            ..Default::default()
        },
    );
    let d = write();
    // Approved in time, never executed: the approval outlives the request.
    let (stale_req, stale_bob) = log.approved("E1", &d);
    // Executing when the request expires: its outcome still joins.
    let (req, bob) = log.approved("E2", &d);
    let intent = log.ok(
        "deployer",
        &log.intent("deployer", "E2", vec![req.link(), bob.link()], &d),
    );
    std::thread::sleep(std::time::Duration::from_millis(2_500));
    let v = log.refused(
        "deployer",
        &log.intent(
            "deployer",
            "E1",
            vec![stale_req.link(), stale_bob.link()],
            &d,
        ),
    );
    assert!(
        matches!(codes(&v)[..], ["chain_closed"] | ["request_expired"]),
        "{v:?}"
    );
    assert_eq!(log.chain("E1")["status"], "expired");
    assert_eq!(log.chain("E2")["status"], "expired");
    let mut failed = log.outcome("deployer", "E2", &intent, &[]);
    if let Some(entry::Body::ExecutionOutcome(o)) = &mut failed.body {
        o.result = entry::proto::execution_outcome::Result::Failed as i32;
    }
    log.ok("deployer", &failed);
    // Reported, it owes nothing more: the chain has closed.
    let v = log.refused(
        "deployer",
        &log.intent("deployer", "E2", vec![req.link(), bob.link()], &d),
    );
    assert_eq!(codes(&v), ["chain_closed"]);
    log.audits_clean();
}

#[test]
fn a_chain_holds_a_bounded_number_of_entries_and_nobody_fills_it_alone() {
    use gatelog::access::gate::limits::{
        MAX_CHAIN_ENTRIES, MAX_CHAIN_REFUSALS, MAX_OPINIONS_PER_ACTOR,
    };
    let mut log = Log::start();
    let approvers: Vec<String> = (0..8).map(|i| format!("approver-{i}")).collect();
    for a in &approvers {
        log.register(human(a));
    }
    let d = write();
    let req = log.ok(
        "alice",
        &build::request(
            log.actor("alice"),
            "FULL",
            tgt(),
            d.clone(),
            "deployer",
            now(),
        ),
    );
    let approve = |who: &str| {
        build::approve(
            log.actor(who),
            "FULL",
            vec![req.link()],
            d.clone(),
            now() + MINUTE,
            now(),
        )
    };
    // Refused attempts are recorded but take no place: alice approving
    // her own request, more times than a chain lists refusals.
    for _ in 0..MAX_CHAIN_REFUSALS + 2 {
        log.refused("alice", &approve("alice"));
    }
    // One identity alone cannot fill the chain: the copilot recommends,
    // bob approves, each up to the limit, then is refused (recorded).
    for _ in 0..MAX_OPINIONS_PER_ACTOR {
        let rec = build::recommend(
            log.actor("copilot"),
            "FULL",
            vec![req.link()],
            d.clone(),
            [7; 32],
            now(),
        );
        log.ok("copilot", &rec);
        log.ok("bob", &approve("bob"));
    }
    let rec = build::recommend(
        log.actor("copilot"),
        "FULL",
        vec![req.link()],
        d.clone(),
        [7; 32],
        now(),
    );
    assert_eq!(
        codes(&log.refused("copilot", &rec)),
        ["too_many_from_actor"]
    );
    assert_eq!(
        codes(&log.refused("bob", &approve("bob"))),
        ["too_many_from_actor"]
    );
    // Many people can fill it, keeping a place for an intent and its
    // outcome.
    let mut taken = 1 + 2 * MAX_OPINIONS_PER_ACTOR;
    let mut last = None;
    for who in approvers.iter().cycle().take(MAX_CHAIN_ENTRIES - 2 - taken) {
        last = Some(log.ok(who, &approve(who)));
        taken += 1;
    }
    log.rejected(log.key("carol"), &approve("carol"), 409, "chain_full");
    assert_eq!(
        log.chain("FULL")["entries"].as_array().unwrap().len(),
        taken + MAX_CHAIN_REFUSALS
    );
    let approval = last.expect("approvals");
    let intent = log.ok(
        "deployer",
        &log.intent("deployer", "FULL", vec![req.link(), approval.link()], &d),
    );
    log.ok(
        "deployer",
        &log.outcome("deployer", "FULL", &intent, &["read", "write"]),
    );
    log.audits_clean();
}

#[test]
fn a_revocation_takes_a_place_and_revoking_twice_adds_nothing() {
    let log = Log::start();
    let d = write();
    let (_, bob) = log.approved("RV", &d);
    let revoke = || build::revoke(log.actor("bob"), bob.link(), "mistake", now());
    log.ok("bob", &revoke());
    log.rejected(log.key("bob"), &revoke(), 409, "already_revoked");
    assert_eq!(log.chain("RV")["entries"].as_array().unwrap().len(), 3);
    log.audits_clean();
}

#[test]
fn strings_and_lists_longer_than_the_rules_allow_are_refused_and_change_nothing() {
    use gatelog::access::gate::limits::{MAX_DELTA_NAMES, MAX_NAME_BYTES, MAX_TEXT_BYTES};
    let log = Log::start();
    let t = now();
    let request = |justification: &str, names: &[String]| {
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        let mut st = build::request(
            log.actor("alice"),
            "LONG",
            tgt(),
            delta(&[], &names, &[]),
            "deployer",
            t,
        );
        if let Some(entry::Body::AccessRequest(r)) = &mut st.body {
            r.justification = justification.into();
        }
        st
    };
    let name = |i: usize, len: usize| format!("{i:03}{}", "e".repeat(len - 3));
    let long_text = "j".repeat(MAX_TEXT_BYTES + 1);
    let e = log.rejected(
        log.key("alice"),
        &request(&long_text, &[name(0, 8)]),
        422,
        "too_long",
    );
    assert_eq!(e["field"], "statement.accessRequest.justification");
    let e = log.rejected(
        log.key("alice"),
        &request("", &[name(0, MAX_NAME_BYTES + 1)]),
        422,
        "too_long",
    );
    assert_eq!(e["field"], "statement.accessRequest.delta.after[0]");
    // `delta` with N adds carries N `after` names and N ops.
    let many: Vec<String> = (0..MAX_DELTA_NAMES).map(|i| name(i, 8)).collect();
    let e = log.rejected(log.key("alice"), &request("", &many), 422, "too_long");
    assert_eq!(e["field"], "statement.accessRequest.delta");
    // At every limit, it is taken.
    let most: Vec<String> = (0..MAX_DELTA_NAMES / 2)
        .map(|i| name(i, MAX_NAME_BYTES))
        .collect();
    log.ok("alice", &request(&"j".repeat(MAX_TEXT_BYTES), &most));
    log.audits_clean();
}

#[test]
fn revoking_a_key_voids_the_unused_approvals_it_signed() {
    let mut log = Log::start();
    let d = write();
    let (req1, bob1) = log.approved("K-A", &d);
    let (req2, bob2) = log.approved("K-B", &d);
    log.ok(
        "deployer",
        &log.intent("deployer", "K-A", vec![req1.link(), bob1.link()], &d),
    );
    // Bob's key is compromised and revoked: his used approval stands, his
    // unused one is void.
    let revoke = key_change(&log, "bob", log.key("bob"), KeyOp::RevokeKey, None);
    log.ok("admin", &revoke);
    let v = log.refused(
        "deployer",
        &log.intent("deployer", "K-B", vec![req2.link(), bob2.link()], &d),
    );
    assert_eq!(codes(&v), ["approval_voided"]);
    // A rotation voids nothing by itself; one stating a compromise voids
    // what the old key signed from then on.
    let new_bob = NoteSigner::from_seed("bob", [0x42; 32]).unwrap();
    let rotate = |log: &Log, key: &NoteSigner, compromised: Option<i64>| {
        key_change(log, "bob", key, KeyOp::RotateKey, compromised)
    };
    log.ok("admin", &rotate(&log, &new_bob, None));
    log.keys.get_mut("bob").unwrap().1 = new_bob;
    let (req3, bob3) = log.approved("K-C", &d);
    let (req4, bob4) = log.approved("K-D", &d);
    log.ok(
        "deployer",
        &log.intent("deployer", "K-C", vec![req3.link(), bob3.link()], &d),
    );
    let newest = NoteSigner::from_seed("bob", [0x43; 32]).unwrap();
    log.ok("admin", &rotate(&log, &newest, Some(now() - MINUTE)));
    let v = log.refused(
        "deployer",
        &log.intent("deployer", "K-D", vec![req4.link(), bob4.link()], &d),
    );
    assert_eq!(codes(&v), ["approval_voided"]);
    log.audits_clean();
}

/// The admin's change of `who`'s key: `key` registered with `op`, with
/// the compromise it states, if any.
fn key_change(
    log: &Log,
    who: &str,
    key: &NoteSigner,
    op: KeyOp,
    compromised: Option<i64>,
) -> Statement {
    let mut st = build::register(
        log.actor("admin"),
        &human(who),
        "",
        key.verifier().public_key(),
        now(),
    );
    if let Some(entry::Body::IdentityRegistration(r)) = &mut st.body {
        r.operation = op as i32;
        r.compromised_at = compromised.map(entry::timestamp);
    }
    st
}

#[test]
fn a_statement_for_another_log_is_refused() {
    let log = Log::start();
    let d = write();
    let mut st = build::request(
        log.actor("alice"),
        "O1",
        tgt(),
        d.clone(),
        "deployer",
        now(),
    );
    st.log_origin = "other.example/gatelog".into();
    let e = log.rejected(log.key("alice"), &st, 403, "wrong_log");
    assert_eq!(e["field"], "statement.logOrigin");
    // The same statement for this log is fine.
    st.log_origin = log.server.origin().to_string();
    log.ok("alice", &st);
}

#[test]
fn times_are_the_logs_and_lifetimes_are_bounded() {
    let log = Log::start();
    let d = write();
    // A request dated 2001, and one an hour old: the log's clock says no.
    let ancient = build::request(
        log.actor("alice"),
        "T1",
        tgt(),
        d.clone(),
        "deployer",
        978_307_200_000,
    );
    let e = log.rejected(log.key("alice"), &ancient, 422, "clock_skew");
    assert_eq!(e["field"], "statement.issuedAt");
    let stale = build::request(
        log.actor("alice"),
        "T1",
        tgt(),
        d.clone(),
        "deployer",
        now() - 60 * MINUTE,
    );
    log.rejected(log.key("alice"), &stale, 422, "clock_skew");
    let req = log.ok(
        "alice",
        &build::request(
            log.actor("alice"),
            "T1",
            tgt(),
            d.clone(),
            "deployer",
            now(),
        ),
    );
    // An approval for a year: longer than the default 7 days.
    let t = now();
    let long = build::approve(
        log.actor("bob"),
        "T1",
        vec![req.link()],
        d.clone(),
        t + 365 * 24 * 60 * MINUTE,
        t,
    );
    let v = log.refused("bob", &long);
    assert_eq!(codes(&v), ["approval_lifetime"]);
    // A break-glass whose review is due in year 9999: never overdue, so
    // refused; 72 hours is the default window.
    let bg = |deadline: i64| {
        build::break_glass(
            log.actor("carol"),
            "T2",
            target("postgres", "prod/db", "carol"),
            delta(&[], &["superuser"], &[]),
            "INC-1",
            deadline,
            now(),
        )
    };
    let v = log.refused("carol", &bg(253_402_300_799_000));
    assert_eq!(codes(&v), ["review_window"]);
    log.ok("carol", &bg(now() + 71 * 60 * MINUTE));
    log.audits_clean();
}

#[test]
fn a_review_follows_the_execution_and_a_revoke_is_undone_without_approval() {
    let log = Log::start();
    let d = delta(&["read"], &["superuser"], &[]);
    let t = now();
    let bg = log.ok(
        "carol",
        &build::break_glass(
            log.actor("carol"),
            "U1",
            target("postgres", "prod/db", "carol"),
            d.clone(),
            "INC-2",
            t + 60 * MINUTE,
            t,
        ),
    );
    let review = |who: &str, ratify: bool| {
        build::review(log.actor(who), "U1", vec![bg.link()], ratify, now())
    };
    let v = log.refused("bob", &review("bob", false));
    assert_eq!(codes(&v), ["review_before_execution"]);
    // Nobody reports an outcome on a break-glass without an intent.
    let v = log.refused("carol", &log.outcome("carol", "U1", &bg, &[]));
    assert_eq!(codes(&v), ["outcome_without_intent"]);
    let int = log.ok("carol", &log.intent("carol", "U1", vec![bg.link()], &d));
    let v = log.refused("bob", &log.outcome("bob", "U1", &int, &[]));
    assert_eq!(codes(&v), ["not_the_executor"]);
    log.ok(
        "carol",
        &log.outcome("carol", "U1", &int, &["read", "superuser"]),
    );
    // Bob revokes it: the change must be undone, at once.
    let revoked = log.ok("bob", &review("bob", false));
    assert_eq!(log.chain("U1")["status"], "awaiting_undo");
    let open = get_ok(log.server.addr, "/v1/obligations").json();
    let o = &open["obligations"][0];
    assert_eq!(
        (o["chain_id"].as_str(), o["kind"].as_str()),
        (Some("U1"), Some("undo")),
        "{open}"
    );
    let undo = delta(&["read", "superuser"], &[], &["superuser"]);
    let links = vec![revoked.link()];
    // The reviewer does not undo it himself, nor the one who broke the
    // glass and gained the access; nor does anyone do something else.
    let v = log.refused("bob", &log.intent("bob", "U1", links.clone(), &undo));
    assert_eq!(codes(&v), ["undo_executor"]);
    let v = log.refused("carol", &log.intent("carol", "U1", links.clone(), &undo));
    assert_eq!(codes(&v), ["undo_executor"]);
    let v = log.refused(
        "deployer",
        &log.intent("deployer", "U1", links.clone(), &write()),
    );
    assert!(codes(&v).contains(&"not_an_undo"), "{v:?}");
    // The undo: no approval needed, exempt from the two-person rule.
    let undone = log.ok("deployer", &log.intent("deployer", "U1", links, &undo));
    log.ok(
        "deployer",
        &log.outcome("deployer", "U1", &undone, &["read"]),
    );
    let open = get_ok(log.server.addr, "/v1/obligations").json();
    assert_eq!(open["obligations"].as_array().unwrap().len(), 0, "{open}");
    log.audits_clean();
}

#[test]
fn machines_answer_to_a_registered_human() {
    let mut log = Log::start();
    let bot = nhi("builder", "spiffe://corp.example/ns/ci/sa/builder");
    let key = NoteSigner::from_seed("builder", [0x77; 32]).unwrap();
    let reg = |owner: &str| {
        build::register(
            log.actor("admin"),
            &bot,
            owner,
            key.verifier().public_key(),
            now(),
        )
    };
    let e = log.rejected(log.key("admin"), &reg(""), 422, "owner_required");
    assert_eq!(e["field"], "statement.identityRegistration.owner");
    log.rejected(log.key("admin"), &reg("nobody"), 422, "unknown_owner");
    log.rejected(log.key("admin"), &reg("deployer"), 422, "unknown_owner");
    log.ok("admin", &reg("alice"));
    log.keys.insert("builder".into(), (bot, key));
    // alice's bot cannot execute what alice approved, nor what she asked.
    let t = now();
    let req = log.ok(
        "bob",
        &build::request(
            log.actor("bob"),
            "M1",
            target("github", "corp/x", "bob"),
            write(),
            "builder",
            t,
        ),
    );
    let v = log.refused(
        "alice",
        &build::approve(
            log.actor("alice"),
            "M1",
            vec![req.link()],
            write(),
            t + MINUTE,
            t,
        ),
    );
    assert_eq!(codes(&v), ["approver_executes"]);
}

#[test]
fn without_a_policy_nothing_executes_and_admins_are_never_made_silently() {
    let dir = tempfile::tempdir().unwrap();
    // No admin named, not in development mode: a new log will not start.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_gatelog"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path().join("none"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--admin-key"), "{err}");
    assert!(!dir.path().join("none/admin.key").exists());
    // A development key missing its pair is never overwritten.
    let half = dir.path().join("half");
    std::fs::create_dir_all(&half).unwrap();
    std::fs::write(half.join("admin.key.pub"), "x").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_gatelog"))
        .args(["serve", "--dev", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&half)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(!half.join("admin.key").exists());

    // A real log: the admin's key made with keygen, no policy published.
    let admin_file = dir.path().join("admin.key");
    let (code, _) = common::run_gatelog(&[
        "keygen",
        "--id",
        "admin",
        "--out",
        admin_file.to_str().unwrap(),
    ]);
    assert_eq!(code, 0);
    let pub_file = format!("{}.pub", admin_file.display());
    let server = Server::start_gatelog(&dir.path().join("log"), &["--admin-key", &pub_file]);
    let admin = gatelog::sys::keyfile::read_private_key(&admin_file).unwrap();
    let mut log = Log {
        server,
        _dir: tempfile::tempdir().unwrap(),
        admin: (human("admin"), admin),
        keys: HashMap::new(),
        policy: std::cell::RefCell::new(None),
    };
    log.register(human("alice"));
    log.register(human("bob"));
    log.register(human("olivia"));
    log.register(nhi("deployer", "spiffe://corp.example/ns/ci/sa/deployer"));
    let d = write();
    let (req, bob) = log.approved("P1", &d);
    let v = log.refused(
        "deployer",
        &log.intent("deployer", "P1", vec![req.link(), bob.link()], &d),
    );
    assert_eq!(codes(&v), ["no_policy"]);
    // The admin set is the log's now: naming others at a restart fails.
    let data = dir.path().join("log");
    log.server.kill9();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_gatelog"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--admin-key",
            &pub_file,
            "--data-dir",
        ])
        .arg(&data)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("is in the log"));
}

#[test]
fn authority_takes_m_of_n_admins_and_the_admin_set_changes_in_the_log() {
    use prost::Message;
    let dir = tempfile::tempdir().unwrap();
    let admins: Vec<NoteSigner> = (1..=4)
        .map(|i| NoteSigner::from_seed(&format!("admin{i}"), [0x30 + i as u8; 32]).unwrap())
        .collect();
    let mut pubs = Vec::new();
    for a in &admins[..3] {
        let p = dir.path().join(format!("{}.key.pub", a.name()));
        std::fs::write(&p, a.verifier().to_vkey()).unwrap();
        pubs.push(p.to_str().unwrap().to_string());
    }
    let mut args = vec!["--admin-threshold", "2"];
    for p in &pubs {
        args.extend(["--admin-key", p.as_str()]);
    }
    let server = Server::start_gatelog(&dir.path().join("log"), &args);
    let origin = server.origin().to_string();
    // Signed by `by[0]`, endorsed by the rest.
    let post = |by: &[&NoteSigner], st: &Statement| {
        let mut signed = entry::sign(by[0], &build::for_log(st.clone(), &origin));
        for e in &by[1..] {
            entry::endorse(e, &mut signed);
        }
        http(server.addr, "POST", "/v1/entries", &signed.encode_to_vec()).unwrap()
    };
    let (a1, a2, a3, a4) = (&admins[0], &admins[1], &admins[2], &admins[3]);
    let alice = NoteSigner::from_seed("alice", [0x41; 32]).unwrap();
    let reg = |by: &NoteSigner, who: &Actor, owner: &str, key: &NoteSigner| {
        build::register(
            &human(by.name()),
            who,
            owner,
            key.verifier().public_key(),
            now(),
        )
    };
    // One admin alone cannot create a human who approves.
    let r = post(&[a1], &reg(a1, &human("alice"), "", &alice));
    assert_eq!(
        (r.status, r.error_code()),
        (403, "admin_quorum".to_string())
    );
    // Nor with a signature by someone who is not an admin, or twice.
    let r = post(&[a1, &alice], &reg(a1, &human("alice"), "", &alice));
    assert_eq!(r.error_code(), "admin_quorum");
    let r = post(&[a1, a1], &reg(a1, &human("alice"), "", &alice));
    assert_eq!(
        (r.status, r.error_code()),
        (422, "invalid_entry".to_string())
    );
    // Two of the three: done.
    let r = post(&[a1, a2], &reg(a1, &human("alice"), "", &alice));
    assert_eq!(r.status, 200, "{}", r.text());
    // A machine acts in changes too (as its owner's): two admins as well.
    let bot = NoteSigner::from_seed("bot", [0x42; 32]).unwrap();
    let machine = reg(a3, &nhi("bot", "spiffe://corp.example/bot"), "alice", &bot);
    assert_eq!(post(&[a3], &machine).error_code(), "admin_quorum");
    let r = post(&[a3, a1], &machine);
    assert_eq!(r.status, 200, "{}", r.text());
    // A policy takes two as well.
    let policy = |by: &NoteSigner| {
        build::publish_policy(
            &human(by.name()),
            "org",
            1,
            gatelog::server::run::DEV_POLICY,
            0,
            now(),
        )
    };
    assert_eq!(post(&[a2], &policy(a2)).error_code(), "admin_quorum");
    assert_eq!(post(&[a2, a3], &policy(a2)).status, 200);
    // One admin suspends (the kill switch takes authority away); lifting
    // gives it back, so it takes two.
    let suspend = |by: &NoteSigner, lifted: bool| Statement {
        actor: Some(human(by.name())),
        issued_at: Some(entry::timestamp(now())),
        body: Some(entry::Body::Suspension(entry::proto::Suspension {
            identity: "bot".into(),
            lifted,
            reason: String::new(),
        })),
        ..Default::default()
    };
    let r = post(&[a2], &suspend(a2, false));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(post(&[a2], &suspend(a2, true)).error_code(), "admin_quorum");
    let r = post(&[a2, a1], &suspend(a2, true));
    assert_eq!(r.status, 200, "{}", r.text());
    // The admins replace admin3 with admin4, threshold 1 from then on.
    let change = |by: &NoteSigner, keys: &[&NoteSigner], threshold: u32| Statement {
        actor: Some(human(by.name())),
        issued_at: Some(entry::timestamp(now())),
        body: Some(entry::Body::AdminSetChange(entry::proto::AdminSetChange {
            admin_keys: keys.iter().map(|k| k.verifier().to_vkey()).collect(),
            admin_threshold: threshold,
        })),
        ..Default::default()
    };
    assert_eq!(
        post(&[a3], &change(a3, &[a3], 1)).error_code(),
        "admin_quorum"
    );
    let r = post(&[a1, a2], &change(a1, &[a1, a2, a4], 1));
    assert_eq!(r.status, 200, "{}", r.text());
    let carol = NoteSigner::from_seed("carol", [0x43; 32]).unwrap();
    let r = post(&[a3], &reg(a3, &human("carol"), "", &carol));
    // admin3 is nobody now.
    assert_eq!(
        (r.status, r.error_code()),
        (401, "unknown_signer".to_string())
    );
    let r = post(&[a4], &reg(a4, &human("carol"), "", &carol));
    assert_eq!(r.status, 200, "{}", r.text());
    // The audit reads the admins and the threshold from the log.
    let (code, output, manifest) = server.audit(&[], &dir.path().join("audit"));
    assert_eq!(code, 0, "{output}");
    assert_eq!(
        manifest["rules"]["admins"],
        serde_json::json!(["admin1", "admin2", "admin4"])
    );
    assert_eq!(manifest["rules"]["admin_threshold"], 1);
}

#[test]
fn races_for_one_approval_admit_exactly_one_every_time() {
    let log = Log::start();
    let d = write();
    let server = &log.server;
    for round in 0..20 {
        let chain = format!("RACE-{round}");
        let (req, bob) = log.approved(&chain, &d);
        // The named executor sends two different intents on the same
        // approval (another time, so other bytes), and carol a third.
        let mut first = log.intent("deployer", &chain, vec![req.link(), bob.link()], &d);
        let mut second = first.clone();
        // (One clock reading: two could make the bytes equal, and a
        // duplicate is answered with the first's index.)
        let t = now();
        first.issued_at = Some(entry::timestamp(t - 1));
        second.issued_at = Some(entry::timestamp(t - 2));
        let third = log.intent("carol", &chain, vec![req.link(), bob.link()], &d);
        let attempts = [
            (log.key("deployer"), &first),
            (log.key("deployer"), &second),
            (log.key("carol"), &third),
        ];
        let statuses: Vec<u16> = std::thread::scope(|s| {
            let running: Vec<_> = attempts
                .iter()
                .map(|(key, st)| s.spawn(move || server.submit(key, st).status))
                .collect();
            running.into_iter().map(|t| t.join().unwrap()).collect()
        });
        assert_eq!(
            statuses.iter().filter(|s| **s == 200).count(),
            1,
            "round {round}: {statuses:?}"
        );
        assert_eq!(statuses[2], 403, "round {round}: carol is not the executor");
    }
    log.audits_clean();
}

#[test]
fn a_revocation_racing_an_intent_is_ordered_by_the_log() {
    let log = Log::start();
    let d = write();
    let server = &log.server;
    for round in 0..20 {
        let chain = format!("RR-{round}");
        let (req, bob) = log.approved(&chain, &d);
        let intent = log.intent("deployer", &chain, vec![req.link(), bob.link()], &d);
        let revoke = build::revoke(log.actor("bob"), bob.link(), "race", now());
        let (deployer, bob_key) = (log.key("deployer"), log.key("bob"));
        let (executed, revoked) = std::thread::scope(|s| {
            let a = s.spawn(|| server.submit(deployer, &intent));
            let b = s.spawn(|| server.submit(bob_key, &revoke));
            (a.join().unwrap(), b.join().unwrap())
        });
        // The revocation is always appended; the intent is admitted only
        // if the log ordered it first, and refused (approval_revoked) if not.
        assert_eq!(revoked.status, 200, "{}", revoked.text());
        let revoked_at = revoked.json()["index"].as_u64().unwrap();
        match executed.status {
            200 => assert!(executed.json()["index"].as_u64().unwrap() < revoked_at),
            403 => {
                let e = &executed.json()["error"];
                assert_eq!(e["violations"][0]["code"], "approval_revoked", "{e}");
                assert!(e["refusal_record"]["index"].as_u64().unwrap() > revoked_at);
            }
            s => panic!("round {round}: HTTP {s}: {}", executed.text()),
        }
    }
    log.audits_clean();
}

#[test]
fn admins_on_different_machines_endorse_a_held_entry() {
    let dir = tempfile::tempdir().unwrap();
    let path = |f: &str| dir.path().join(f).to_str().unwrap().to_string();
    for id in ["admin1", "admin2"] {
        let (code, _) =
            common::run_gatelog(&["keygen", "--id", id, "--out", &path(&format!("{id}.key"))]);
        assert_eq!(code, 0);
    }
    let server = Server::start_gatelog(
        &dir.path().join("log"),
        &[
            "--admin-key",
            &path("admin1.key.pub"),
            "--admin-key",
            &path("admin2.key.pub"),
            "--admin-threshold",
            "2",
        ],
    );
    let url = format!("http://{}", server.addr);
    let alice = NoteSigner::from_seed("alice", [0x51; 32]).unwrap();
    let statement = build::register(
        &human("admin1"),
        &human("alice"),
        "",
        alice.verifier().public_key(),
        now(),
    );
    std::fs::write(path("reg.json"), serde_json::to_string(&statement).unwrap()).unwrap();
    // One admin alone: refused.
    let (code, _) = common::run_gatelog(&[
        "submit",
        "--log",
        &url,
        "--vkey",
        &server.vkey,
        "--key",
        &path("admin1.key"),
        &path("reg.json"),
    ]);
    assert_eq!(code, 1);
    // Held by admin1, endorsed by admin2 (twice is refused), then sent.
    let (code, _) = common::run_gatelog(&[
        "submit",
        "--log",
        &url,
        "--key",
        &path("admin1.key"),
        "--hold",
        &path("reg.entry"),
        &path("reg.json"),
    ]);
    assert_eq!(code, 0);
    let size = server.tree_size();
    let (code, _) =
        common::run_gatelog(&["endorse", "--key", &path("admin2.key"), &path("reg.entry")]);
    assert_eq!(code, 0);
    assert_eq!(
        server.tree_size(),
        size,
        "holding and endorsing send nothing"
    );
    let (code, _) =
        common::run_gatelog(&["endorse", "--key", &path("admin2.key"), &path("reg.entry")]);
    assert_ne!(code, 0);
    let (code, out) = common::run_gatelog(&[
        "submit",
        "--log",
        &url,
        "--vkey",
        &server.vkey,
        "--entry",
        &path("reg.entry"),
    ]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("\"index\""), "{out}");
}

#[test]
fn submit_believes_no_answer_it_cannot_verify() {
    use std::io::{Read, Write};
    // A fake log: any entry is "admitted", with a proof signed by a key
    // of the right name that is not the log's.
    let real = NoteSigner::from_seed("log.example/real", [1; 32]).unwrap();
    let fake = NoteSigner::from_seed("log.example/real", [2; 32]).unwrap();
    let fake_vkey = fake.verifier().to_vkey();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut buf = vec![0u8; 65536];
            let n = stream.read(&mut buf).unwrap_or(0);
            let request = &buf[..n];
            let body = if request.starts_with(b"GET /v1/log") {
                json_of(&serde_json::json!({"origin": "log.example/real"}))
            } else {
                // The entry is the request body: prove it in a one-leaf tree.
                let start = request.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
                let leaf = gatelog::tlog::merkle::leaf_hash(&request[start..]);
                let cp = Checkpoint {
                    origin: "log.example/real".into(),
                    size: 1,
                    root: leaf,
                    extensions: vec![],
                }
                .sign(&fake)
                .unwrap();
                let proof = gatelog::tlog::tlog_proof::TlogProof {
                    extra: None,
                    index: 0,
                    proof: vec![],
                    checkpoint: cp.clone(),
                };
                json_of(
                    &serde_json::json!({"index": 0, "leaf_hash": "", "checkpoint": cp, "proof": proof.encode(), "duplicate": false}),
                )
            };
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("alice.key");
    gatelog::sys::keyfile::write_key_pair(&NoteSigner::from_seed("alice", [3; 32]).unwrap(), &key)
        .unwrap();
    let st = dir.path().join("req.json");
    let statement = build::request(&human("alice"), "F1", tgt(), write(), "deployer", now());
    std::fs::write(&st, serde_json::to_string(&statement).unwrap()).unwrap();
    let url = format!("http://{addr}");
    let submit = |vkey: &str| {
        common::run_gatelog(&[
            "submit",
            "--log",
            &url,
            "--vkey",
            vkey,
            "--key",
            key.to_str().unwrap(),
            st.to_str().unwrap(),
        ])
    };
    let (code, out) = submit(&real.verifier().to_vkey());
    assert_eq!(code, 1, "a forged admission was believed: {out}");
    assert!(
        !dir.path().join("req.tlog-proof").exists(),
        "a forged proof was saved"
    );
    // The same answer does verify under the key that signed it: the
    // check is the signature, not the shape.
    let (code, _) = submit(&fake_vkey);
    assert_eq!(code, 0);
}

fn json_of(v: &serde_json::Value) -> String {
    v.to_string()
}

#[test]
fn holes_a_hostile_review_found_stay_closed() {
    let log = Log::start();
    // A statement of any kind carries a chain id of at most 256 bytes: its
    // refusal record repeats it, and must fit an entry bundle.
    let (req, _) = log.approved("H1", &write());
    let mut long = build::revoke(log.actor("alice"), req.link(), "x", now());
    long.chain_id = "c".repeat(50_000);
    let e = log.rejected(log.key("alice"), &long, 422, "invalid_entry");
    assert_eq!(e["field"], "statement.chainId");

    // A requester's privileged flag is not lowered by approving, or
    // executing, an unflagged copy.
    let mut flagged = write();
    flagged.privileged = true;
    let t = now();
    let req = log.ok(
        "alice",
        &build::request(log.actor("alice"), "H2", tgt(), flagged, "deployer", t),
    );
    let plain = write();
    let bob = log.ok(
        "bob",
        &build::approve(
            log.actor("bob"),
            "H2",
            vec![req.link()],
            plain.clone(),
            t + MINUTE,
            t,
        ),
    );
    let v = log.refused(
        "deployer",
        &log.intent("deployer", "H2", vec![req.link(), bob.link()], &plain),
    );
    assert_eq!(codes(&v), ["insufficient_human_approvals"]);

    // An admin key does not take part in changes.
    let e = log.rejected(
        log.key("admin"),
        &build::request(log.actor("admin"), "H3", tgt(), write(), "deployer", now()),
        403,
        "admin_in_chain",
    );
    assert!(e["message"]
        .as_str()
        .unwrap()
        .contains("registered identity"));

    // Whoever gained access under a break-glass does not review it.
    let d = delta(&["read"], &["deploy"], &[]);
    let t = now();
    let bg = log.ok(
        "bob",
        &build::break_glass(
            log.actor("bob"),
            "H4",
            target("k8s", "prod/api", "alice"),
            d.clone(),
            "INC-9",
            t + 60 * MINUTE,
            t,
        ),
    );
    log.ok("bob", &log.intent("bob", "H4", vec![bg.link()], &d));
    let review = |who: &str| build::review(log.actor(who), "H4", vec![bg.link()], true, now());
    let v = log.refused("alice", &review("alice"));
    assert_eq!(codes(&v), ["review_by_subject"]);
    log.ok("carol", &review("carol"));
    log.audits_clean();
}

#[test]
fn a_wider_clock_skew_is_the_logs_and_the_audit_reads_it() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_gatelog(dir.path(), &["--max-clock-skew-secs", "3600"]);
    let admin = (human("admin"), admin_key(dir.path()));
    let mut log = Log {
        server,
        _dir: dir,
        admin,
        keys: HashMap::new(),
        policy: std::cell::RefCell::new(Some(PolicyRef {
            policy_id: "default".into(),
            version: 1,
        })),
    };
    log.register(human("alice"));
    log.register(human("olivia"));
    log.register(nhi("deployer", "spiffe://corp.example/ns/ci/sa/deployer"));
    // Dated 10 minutes ago: within this log's hour.
    log.ok(
        "alice",
        &build::request(
            log.actor("alice"),
            "S1",
            tgt(),
            write(),
            "deployer",
            now() - 10 * MINUTE,
        ),
    );
    log.audits_clean();
}

#[test]
fn the_access_log_says_who_sent_what_and_what_became_of_it() {
    let dir = tempfile::tempdir().unwrap();
    let stderr = std::fs::File::create(dir.path().join("stderr")).unwrap();
    let mut server = Server::start_logging_to(
        "serve",
        &dir.path().join("log"),
        &["--dev", "--log-format", "json"],
        stderr,
    );
    let (addr, origin) = (server.addr, server.origin().to_string());
    let admin = admin_key(&dir.path().join("log"));
    let alice = NoteSigner::from_seed("alice", [0x61; 32]).unwrap();
    let post = |key: &NoteSigner, st: &Statement| {
        use prost::Message;
        let leaf = entry::sign(key, &build::for_log(st.clone(), &origin)).encode_to_vec();
        http(addr, "POST", "/v1/entries", &leaf).unwrap().status
    };
    let reg = build::register(
        &human("admin"),
        &human("alice"),
        "",
        alice.verifier().public_key(),
        now(),
    );
    assert_eq!(post(&admin, &reg), 200);
    assert_eq!(post(&admin, &reg), 200); // the same bytes: a duplicate
    let unnamed = build::request(&human("alice"), "A1", tgt(), write(), "", now());
    assert_eq!(post(&alice, &unnamed), 422); // names no executor
                                             // A dry run is logged too, beside the submissions.
    let leaf = {
        use prost::Message;
        entry::sign(&alice, &build::for_log(unnamed.clone(), &origin)).encode_to_vec()
    };
    assert_eq!(
        http(addr, "POST", "/v1/gate/check", &leaf).unwrap().status,
        200
    );
    server.kill9();
    let text = std::fs::read_to_string(dir.path().join("stderr")).unwrap();
    let access: Vec<serde_json::Value> = text
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["fields"]["message"] == "submission")
        .collect();
    let outcomes: Vec<(&str, &str)> = access
        .iter()
        .map(|v| {
            (
                v["fields"]["outcome"].as_str().unwrap(),
                v["fields"]["signer"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        outcomes,
        [
            ("appended", "admin"),
            ("duplicate", "admin"),
            ("executor_required", "alice")
        ],
        "{text}"
    );
    assert!(access[0]["fields"]["peer"]
        .as_str()
        .unwrap()
        .starts_with("127.0.0.1:"));
    assert_eq!(access[0]["fields"]["kind"], "identityRegistration");
    let dry: Vec<serde_json::Value> = text
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["fields"]["message"] == "dry run")
        .collect();
    assert_eq!(dry.len(), 1, "{text}");
    assert_eq!(dry[0]["fields"]["signer"], "alice");
    assert_eq!(dry[0]["fields"]["verdict"], "reject");
    assert_eq!(dry[0]["fields"]["chain"], "A1");
}

#[test]
fn a_chain_is_served_a_bounded_page_at_a_time() {
    let log = Log::start();
    let d = write();
    let (req, bob) = log.approved("P1", &d);
    let int = log.ok(
        "deployer",
        &log.intent("deployer", "P1", vec![req.link(), bob.link()], &d),
    );
    log.ok(
        "deployer",
        &build::outcome(
            log.actor("deployer"),
            "P1",
            vec![int.link()],
            d.after.clone(),
            "x",
            now(),
        ),
    );
    // Four entries, two at a time.
    let page = |q: &str| get_ok(log.server.addr, &format!("/v1/chains/P1{q}")).json();
    let first = page("?limit=2");
    assert_eq!(first["entries_total"], 4);
    assert_eq!(first["entries"].as_array().unwrap().len(), 2);
    assert_eq!(first["entries"][0]["index"], req.index);
    assert_eq!(first["next_offset"], 2);
    let second = page("?offset=2&limit=2");
    assert_eq!(second["entries"][1]["index"], int.index + 1);
    assert!(second["next_offset"].is_null());
    assert_eq!(page("")["entries"].as_array().unwrap().len(), 4);
    for bad in ["?limit=0", "?limit=100000", "?offset=x", "?page=2"] {
        let r = http(log.server.addr, "GET", &format!("/v1/chains/P1{bad}"), b"").unwrap();
        assert_eq!(
            (r.status, r.error_code()),
            (400, "bad_parameter".to_string()),
            "{bad}"
        );
    }
}

/// `request` with `tickets` (system, id, url).
fn with_tickets(mut st: Statement, tickets: &[(&str, &str, &str)]) -> Statement {
    if let Some(entry::Body::AccessRequest(r)) = &mut st.body {
        r.tickets = tickets
            .iter()
            .map(|(system, id, url)| entry::proto::TicketRef {
                system: system.to_string(),
                id: id.to_string(),
                url: url.to_string(),
            })
            .collect();
    }
    st
}

/// A class of the policy may require a change ticket: a request without
/// one is refused and recorded (rule 10, `ticket_required`); with one it
/// is admitted and the ticket shows in the chain. Cedar sees the tickets
/// (here: only a Jira ticket lets a change execute). A link that is not
/// https:// is rejected and changes nothing; so is a fifth ticket.
#[test]
fn a_policy_can_require_a_change_ticket_and_cedar_sees_it() {
    let log = Log::start();
    let mut policy = build::publish_policy(
        log.actor("admin"),
        "tickets",
        1,
        "permit(principal, action == Action::\"execute\", resource)\n\
         when { context.human_approvals >= 1 && context.ticket_systems.contains(\"jira\") };\n",
        0,
        now(),
    );
    if let Some(entry::Body::PolicyPublication(p)) = &mut policy.body {
        p.classes.push(entry::proto::EntitlementClass {
            pattern: "write".into(),
            requires_ticket: true,
            ..Default::default()
        });
    }
    log.ok("admin", &policy);
    *log.policy.borrow_mut() = Some(PolicyRef {
        policy_id: "tickets".into(),
        version: 1,
    });
    let request = |chain: &str, tickets: &[(&str, &str, &str)]| {
        let st = build::request(log.actor("alice"), chain, tgt(), write(), "deployer", now());
        with_tickets(st, tickets)
    };
    // No ticket: refused when asked, and recorded.
    assert_eq!(
        log.refused("alice", &request("T1", &[])),
        vec![(10, "ticket_required".to_string())]
    );
    // A bad link, too many tickets, a ticket without an id: nothing logged.
    let http = request("T2", &[("jira", "CHG-1", "http://jira.example/CHG-1")]);
    let e = log.rejected(log.key("alice"), &http, 422, "invalid_entry");
    assert_eq!(e["field"], "statement.accessRequest.tickets[0].url", "{e}");
    let five = [("jira", "CHG-1", ""); 5];
    let e = log.rejected(log.key("alice"), &request("T2", &five), 422, "too_long");
    assert_eq!(e["field"], "statement.accessRequest.tickets", "{e}");
    let e = log.rejected(
        log.key("alice"),
        &request("T2", &[("jira", "", "")]),
        422,
        "invalid_entry",
    );
    assert_eq!(e["field"], "statement.accessRequest.tickets[0].id", "{e}");
    let markup = request("T2", &[("jira", "C-1", "https://t.example/\"><script>")]);
    let e = log.rejected(log.key("alice"), &markup, 422, "invalid_entry");
    assert_eq!(e["field"], "statement.accessRequest.tickets[0].url", "{e}");
    let colon = request("T2", &[("jira:x", "C-1", "")]);
    let e = log.rejected(log.key("alice"), &colon, 422, "invalid_entry");
    assert_eq!(
        e["field"], "statement.accessRequest.tickets[0].system",
        "{e}"
    );
    // A ServiceNow ticket opens the chain, but the policy wants Jira.
    let opened = |chain: &str, system: &str| {
        let req = log.ok(
            "alice",
            &request(chain, &[(system, "CHG-7", "https://tickets.example/CHG-7")]),
        );
        let t = now();
        let bob = log.ok(
            "bob",
            &build::approve(
                log.actor("bob"),
                chain,
                vec![req.link()],
                write(),
                t + 30 * MINUTE,
                t,
            ),
        );
        log.intent("deployer", chain, vec![req.link(), bob.link()], &write())
    };
    let servicenow = opened("T3", "servicenow");
    assert_eq!(
        log.refused("deployer", &servicenow),
        vec![(7, "policy_denies".to_string())]
    );
    let jira = opened("T4", "jira");
    log.ok("deployer", &jira);
    let chain = log.chain("T4");
    let ticket = &chain["entries"][0]["entry"]["statement"]["accessRequest"]["tickets"][0];
    assert_eq!(ticket["system"], "jira", "{chain}");
    assert_eq!(ticket["id"], "CHG-7");
    assert_eq!(ticket["url"], "https://tickets.example/CHG-7");
    // The audit replays every verdict, and lists the tickets.
    log.audits_clean();
    let out = tempfile::tempdir().unwrap();
    let (code, _, _) = log.server.audit(&[], &out.path().join("audit"));
    assert_eq!(code, 0);
    let population = std::fs::read_to_string(out.path().join("audit/population.csv")).unwrap();
    let row = population.lines().find(|l| l.starts_with("T4,")).unwrap();
    assert!(row.contains(",jira:CHG-7,"), "{row}");
}

/// `POST /v1/gate/check` answers what the gate would decide now, with
/// every violation, and logs nothing: an intent with no approval is
/// refused, the same intent once approved is admitted (and then is, for
/// real), an unsigned one is judged on everything but its signature, a
/// forged signature is rejected. `gatelog submit --dry-run` exits 0 only
/// for an admit. An opaque log has no gate to ask.
#[test]
fn a_dry_run_foresees_the_verdict_and_logs_nothing() {
    let log = Log::start();
    let check = |who: &str, st: &Statement, sign: bool| {
        let mut st = st.clone();
        st.log_origin = log.server.origin().to_string();
        let mut signed = entry::sign(log.key(who), &st);
        if !sign {
            signed.signature.clear();
        }
        let before = log.server.tree_size();
        let r = http(
            log.server.addr,
            "POST",
            "/v1/gate/check",
            &signed.encode_to_vec(),
        )
        .unwrap();
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(log.server.tree_size(), before, "a dry run logged something");
        r.json()
    };
    let req = log.ok(
        "alice",
        &build::request(log.actor("alice"), "D1", tgt(), write(), "deployer", now()),
    );
    let bare = log.intent("deployer", "D1", vec![req.link()], &write());
    let answer = check("deployer", &bare, true);
    assert_eq!(answer["verdict"], "refuse", "{answer}");
    let codes: Vec<&str> = answer["violations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["code"].as_str().unwrap())
        .collect();
    assert!(codes.contains(&"no_approval"), "{answer}");
    assert_eq!(answer["signature_checked"], true);
    let t = now();
    let bob = log.ok(
        "bob",
        &build::approve(
            log.actor("bob"),
            "D1",
            vec![req.link()],
            write(),
            t + 30 * MINUTE,
            t,
        ),
    );
    let intent = log.intent("deployer", "D1", vec![req.link(), bob.link()], &write());
    assert_eq!(check("deployer", &intent, true)["verdict"], "admit");
    let unsigned = check("deployer", &intent, false);
    assert_eq!(unsigned["verdict"], "admit", "{unsigned}");
    assert_eq!(unsigned["signature_checked"], false);
    // Signed by someone else's key under the executor's name.
    let mut forged = entry::sign(log.key("alice"), &{
        let mut st = intent.clone();
        st.log_origin = log.server.origin().to_string();
        st
    });
    forged.signer_id = "deployer".into();
    forged.key_id = log.key("deployer").key_id();
    let r = http(
        log.server.addr,
        "POST",
        "/v1/gate/check",
        &forged.encode_to_vec(),
    )
    .unwrap();
    assert_eq!(r.json()["verdict"], "reject", "{}", r.text());
    assert_eq!(r.json()["error"]["code"], "bad_signature");
    // The CLI: a statement file, the executor's key.
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("deployer.key");
    std::fs::write(&key, log.key("deployer").to_private_key_string()).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let url = format!("http://{}", log.server.addr);
    let run = |st: &Statement| {
        let file = dir.path().join("st.json");
        std::fs::write(&file, serde_json::to_vec(st).unwrap()).unwrap();
        common::run_gatelog(&[
            "submit",
            "--log",
            &url,
            "--dry-run",
            "--key",
            key.to_str().unwrap(),
            file.to_str().unwrap(),
        ])
    };
    let (code, out) = run(&bare);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("\"refuse\""), "{out}");
    let (code, out) = run(&intent);
    assert_eq!(code, 0, "{out}");
    // Still not in the log; now it is, as foreseen, and a dry run of the
    // same bytes says so.
    let at = log.ok("deployer", &intent);
    let again = check("deployer", &intent, true);
    assert_eq!(again["verdict"], "duplicate", "{again}");
    assert_eq!(again["index"], at.index);
    log.audits_clean();
    let opaque_dir = tempfile::tempdir().unwrap();
    let opaque = Server::start(opaque_dir.path(), &[]);
    let r = http(opaque.addr, "POST", "/v1/gate/check", b"x").unwrap();
    assert_eq!(r.status, 404);
    assert_eq!(r.error_code(), "not_a_gatelog");
}

/// `gatelog audit --policy DRAFT`: every past intent judged again under a
/// draft, the real history otherwise; the ones it decides otherwise are
/// listed, and nothing else in the audit changes.
#[test]
fn an_audit_under_a_draft_policy_lists_the_decisions_it_would_change() {
    let log = Log::start();
    // Executed with one approval; then an intent refused for having none.
    let (req, bob) = log.approved("P1", &write());
    let executed = log.ok(
        "deployer",
        &log.intent("deployer", "P1", vec![req.link(), bob.link()], &write()),
    );
    let req2 = log.ok(
        "alice",
        &build::request(log.actor("alice"), "P2", tgt(), write(), "deployer", now()),
    );
    log.refused(
        "deployer",
        &log.intent("deployer", "P2", vec![req2.link()], &write()),
    );
    let dir = tempfile::tempdir().unwrap();
    let draft = dir.path().join("draft.cedar");
    std::fs::write(
        &draft,
        "permit(principal, action == Action::\"execute\", resource)\nwhen { context.human_approvals >= 2 };\n",
    )
    .unwrap();
    let out = dir.path().join("audit");
    let (code, output, manifest) = log
        .server
        .audit(&["--policy", draft.to_str().unwrap()], &out);
    assert_eq!(code, 0, "the log itself is clean: {output}");
    assert!(
        output.contains(
            "2 execution intents and extensions judged under the draft, 1 decided otherwise"
        ),
        "{output}"
    );
    assert_eq!(manifest["policy_simulation"]["judged_otherwise"], 1);
    let csv = std::fs::read_to_string(out.join("policy_simulation.csv")).unwrap();
    let rows: Vec<&str> = csv.lines().skip(1).collect();
    assert_eq!(rows.len(), 1, "{csv}");
    assert!(
        rows[0].starts_with(&format!("{},P1,admit,refuse,", executed.index)),
        "{csv}"
    );
    assert!(rows[0].contains("policy_denies"), "{csv}");
    assert!(rows[0].ends_with(",intent"), "{csv}");
    // A draft that does not parse is a usage error.
    std::fs::write(&draft, "permit(").unwrap();
    let (code, _, _) = log.server.audit(
        &["--policy", draft.to_str().unwrap()],
        &dir.path().join("bad"),
    );
    assert_eq!(code, 2);
}

/// A class that bounds access to `write` on every system: at most an hour,
/// its removal due `window` seconds after it ends.
fn time_bound_write(log: &Log, window: u64) {
    publish_class(
        log,
        entry::proto::EntitlementClass {
            pattern: "write".into(),
            max_access_duration_seconds: 3600,
            deprovision_window_seconds: window,
            ..Default::default()
        },
    );
}

/// alice asks for `write` for `seconds` in `chain`, bob approves, deployer
/// executes: the grant's outcome.
fn grant(log: &Log, chain: &str, seconds: u64) -> At {
    grant_roles(log, chain, &["write"], seconds)
}

/// alice asks for `roles` (beside read) for `seconds` in `chain`, bob
/// approves, deployer executes: the grant's outcome.
fn grant_roles(log: &Log, chain: &str, roles: &[&str], seconds: u64) -> At {
    grant_on(log, chain, tgt(), roles, seconds)
}

/// As [`grant_roles`], on `target`.
fn grant_on(
    log: &Log,
    chain: &str,
    target: entry::proto::Target,
    roles: &[&str],
    seconds: u64,
) -> At {
    let d = delta(&["read"], roles, &[]);
    let t = now();
    let req = log.ok(
        "alice",
        &build::lasting(
            build::request(log.actor("alice"), chain, target, d.clone(), "deployer", t),
            seconds,
        ),
    );
    let bob = log.ok(
        "bob",
        &build::approve(
            log.actor("bob"),
            chain,
            vec![req.link()],
            d.clone(),
            t + 30 * MINUTE,
            t,
        ),
    );
    let int = log.ok(
        "deployer",
        &log.intent("deployer", chain, vec![req.link(), bob.link()], &d),
    );
    let after: Vec<&str> = d.after.iter().map(String::as_str).collect();
    log.ok("deployer", &log.outcome("deployer", chain, &int, &after))
}

/// The removal of `write` that an ended grant owes, linking its outcome.
fn removal(log: &Log, who: &str, chain: &str, outcome: &At) -> Statement {
    let undo = delta(&["read", "write"], &[], &["write"]);
    log.intent(who, chain, vec![outcome.link()], &undo)
}

fn obligations(log: &Log) -> Vec<serde_json::Value> {
    let j = get_ok(log.server.addr, "/v1/obligations").json();
    j["obligations"].as_array().unwrap().clone()
}

/// Appends an unrelated entry, so the log's clock moves to now.
fn tick(log: &mut Log, name: &str) {
    log.register(human(name));
}

#[test]
fn a_time_bound_grant_ends_and_is_removed_without_a_new_approval() {
    let mut log = Log::start();
    time_bound_write(&log, 60);
    let d = write();
    let t = now();
    // The policy bounds `write` to an hour: permanent access, or longer,
    // is refused and recorded.
    for seconds in [0, 7200] {
        let st = build::lasting(
            build::request(log.actor("alice"), "G0", tgt(), d.clone(), "deployer", t),
            seconds,
        );
        assert_eq!(codes(&log.refused("alice", &st)), ["access_duration"]);
    }
    // Nor does an approval go past it.
    let req = log.ok(
        "alice",
        &build::lasting(
            build::request(log.actor("alice"), "G0", tgt(), d.clone(), "deployer", t),
            600,
        ),
    );
    let long = build::lasting(
        build::approve(
            log.actor("bob"),
            "G0",
            vec![req.link()],
            d.clone(),
            t + MINUTE,
            t,
        ),
        7200,
    );
    assert_eq!(codes(&log.refused("bob", &long)), ["access_duration"]);

    let granted = grant(&log, "G1", 2);
    let chain = log.chain("G1");
    assert_eq!(chain["status"], "granted", "{chain}");
    assert_eq!(chain["grant"]["entitlements"], serde_json::json!(["write"]));
    let open = obligations(&log);
    assert_eq!(open.len(), 1, "{open:?}");
    assert_eq!(
        (open[0]["kind"].as_str(), open[0]["overdue"].as_bool()),
        (Some("deprovision"), Some(false))
    );
    // While it runs, its removal is refused (the grant is in force), and
    // the chain takes nothing else.
    let v = log.refused("deployer", &removal(&log, "deployer", "G1", &granted));
    assert_eq!(codes(&v), ["grant_in_force"]);
    std::thread::sleep(std::time::Duration::from_millis(2_500));
    // Ended. Who holds the access does not remove it; nor does anything
    // but its exact removal pass.
    let v = log.refused("alice", &removal(&log, "alice", "G1", &granted));
    assert_eq!(codes(&v), ["removal_executor"]);
    assert_eq!(log.chain("G1")["status"], "awaiting_deprovisioning");
    let wider = delta(&["read", "write"], &[], &["read", "write"]);
    let v = log.refused(
        "deployer",
        &log.intent("deployer", "G1", vec![granted.link()], &wider),
    );
    assert_eq!(codes(&v), ["not_a_removal"]);
    tick(&mut log, "dave");
    // The removal: no approval, by the executor.
    let removed = log.ok("deployer", &removal(&log, "deployer", "G1", &granted));
    log.ok(
        "deployer",
        &log.outcome("deployer", "G1", &removed, &["read"]),
    );
    assert_eq!(log.chain("G1")["status"], "deprovisioned");
    assert!(obligations(&log).is_empty());
    log.audits_clean();
}

#[test]
fn access_not_removed_in_time_is_overdue_for_obligations_monitor_and_audit() {
    let mut log = Log::start();
    time_bound_write(&log, 1);
    let granted = grant(&log, "L1", 1);
    std::thread::sleep(std::time::Duration::from_millis(2_500));
    tick(&mut log, "dave");
    let open = obligations(&log);
    assert_eq!(open.len(), 1, "{open:?}");
    assert_eq!(
        (open[0]["kind"].as_str(), open[0]["overdue"].as_bool()),
        (Some("deprovision"), Some(true))
    );
    // The audit reports it while the access stays.
    let out = tempfile::tempdir().unwrap();
    let (code, _, _) = log.server.audit(&[], &out.path().join("a"));
    assert_ne!(code, 0);
    let exceptions = std::fs::read_to_string(out.path().join("a/exceptions.csv")).unwrap();
    assert!(
        exceptions.contains("access_not_deprovisioned"),
        "{exceptions}"
    );
    // The monitor too, from the entries alone.
    let mon_dir = tempfile::tempdir().unwrap();
    let url = format!("http://{}", log.server.addr);
    let mon = Server::start_command(
        "monitor",
        mon_dir.path(),
        &[
            "--log",
            &url,
            "--vkey",
            &log.server.vkey,
            "--poll-ms",
            "100",
        ],
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let report = get_ok(mon.addr, "/v1/monitor/obligations").json();
        let o = &report["obligations"][0];
        if o["kind"] == "deprovision" && o["overdue"] == true {
            assert_eq!(o["chain_id"], "L1");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{report}");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    // Removed late, and then by an outcome that still sees it: both found.
    let removed = log.ok("deployer", &removal(&log, "deployer", "L1", &granted));
    log.ok(
        "deployer",
        &log.outcome("deployer", "L1", &removed, &["read", "write"]),
    );
    assert_eq!(
        log.chain("L1")["status"],
        "awaiting_deprovisioning",
        "an outcome that still sees the access discharges nothing"
    );
    let again = log.ok("deployer", &removal(&log, "deployer", "L1", &granted));
    log.ok(
        "deployer",
        &log.outcome("deployer", "L1", &again, &["read"]),
    );
    assert_eq!(log.chain("L1")["status"], "deprovisioned");
    let (code, _, _) = log.server.audit(&[], &out.path().join("b"));
    assert_ne!(code, 0);
    let exceptions = std::fs::read_to_string(out.path().join("b/exceptions.csv")).unwrap();
    for code in ["access_past_end", "late_deprovisioning"] {
        assert!(exceptions.contains(code), "{code}: {exceptions}");
    }
    assert!(
        !exceptions.contains("access_not_deprovisioned"),
        "{exceptions}"
    );
}

#[test]
fn an_extension_is_an_approval_of_the_grant_under_the_first_ones_rules() {
    let log = Log::start();
    time_bound_write(&log, 60);
    let granted = grant(&log, "X1", 2);
    let ends = |log: &Log| {
        log.chain("X1")["grant"]["ends_at"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let before = ends(&log);
    let extend = |who: &str, seconds: u64| {
        let t = now();
        build::lasting(
            build::approve(
                log.actor(who),
                "X1",
                vec![granted.link()],
                write(),
                t + MINUTE,
                t,
            ),
            seconds,
        )
    };
    // Not by who holds it, not past the policy's maximum, and never
    // without saying how long.
    let v = log.refused("alice", &extend("alice", 600));
    assert!(codes(&v).contains(&"subject_approves"), "{v:?}");
    // An assistant recommends; it never extends.
    let v = log.refused("copilot", &extend("copilot", 600));
    assert!(codes(&v).contains(&"approval_by_non_human"), "{v:?}");
    assert_eq!(
        codes(&log.refused("carol", &extend("carol", 7200))),
        ["access_duration"]
    );
    assert_eq!(
        codes(&log.refused("carol", &extend("carol", 0))),
        ["extension_duration"]
    );
    assert_eq!(ends(&log), before, "refused extensions change nothing");
    log.ok("carol", &extend("carol", 600));
    std::thread::sleep(std::time::Duration::from_millis(2_500));
    let chain = log.chain("X1");
    assert_eq!(chain["status"], "granted", "{chain}");
    assert_ne!(ends(&log), before);
    // Still in force: its removal is refused.
    let v = log.refused("deployer", &removal(&log, "deployer", "X1", &granted));
    assert_eq!(codes(&v), ["grant_in_force"]);
    log.audits_clean();
}

/// Rules version 7: an extension is held to the rules a first grant is
/// held to now. The policy in force judges the approval that completes
/// it (`context.extension`), and the approvals it needs are what the
/// classes ask now, flags of its approvals counted.
#[test]
fn an_extension_is_held_to_the_policy_and_classes_in_force() {
    let mut log = Log::start();
    log.register(human("dave"));
    let write_class = |privileged: bool| entry::proto::EntitlementClass {
        pattern: "write".into(),
        max_access_duration_seconds: 3600,
        privileged,
        approvals: 2,
        ..Default::default()
    };
    // Executions as the development policy permits them; extensions of
    // `ops` never.
    let cedar = format!(
        "{}forbid(principal, action, resource)\nwhen {{ context has extension && context.extension && context.adds.contains(\"ops\") }};\n",
        gatelog::server::run::DEV_POLICY
    );
    publish(&log, 1, &cedar, vec![write_class(false)]);
    let plain = grant_roles(&log, "E1", &["write"], 600);
    let ops = grant_roles(&log, "E2", &["write", "ops"], 600);
    let ends = |chain: &str| log.chain(chain)["grant"]["ends_at"].clone();
    let extend = |who: &str, chain: &str, granted: &At, privileged: bool, seconds: u64| {
        let t = now();
        let mut d = write();
        d.privileged = privileged;
        build::lasting(
            build::approve(
                log.actor(who),
                chain,
                vec![granted.link()],
                d,
                t + MINUTE,
                t,
            ),
            seconds,
        )
    };
    // The grant of `ops` was permitted; its extension is not.
    let before = ends("E2");
    let v = log.refused("carol", &extend("carol", "E2", &ops, false, 1200));
    assert_eq!(codes(&v), ["policy_denies"], "{v:?}");
    assert_eq!(v[0].0, 7);
    assert_eq!(ends("E2"), before, "a refused extension changes nothing");
    // One approval flagged privileged: the extension waits for a second
    // person, as a privileged grant would.
    let before = ends("E1");
    log.ok("carol", &extend("carol", "E1", &plain, true, 1200));
    assert_eq!(ends("E1"), before, "one of two approvals extends nothing");
    log.ok("dave", &extend("dave", "E1", &plain, false, 1200));
    assert_ne!(ends("E1"), before, "the second extends it");
    // A grant that took two people because one approval flagged it
    // privileged (its request and intent did not) takes two to extend.
    let d = delta(&["read"], &["write"], &[]);
    let t = now();
    let req = log.ok(
        "alice",
        &build::lasting(
            build::request(log.actor("alice"), "E3", tgt(), d.clone(), "deployer", t),
            600,
        ),
    );
    let mut flagged = d.clone();
    flagged.privileged = true;
    let approve = |who: &str, d: &EntitlementDelta| {
        build::approve(
            log.actor(who),
            "E3",
            vec![req.link()],
            d.clone(),
            t + MINUTE,
            t,
        )
    };
    let bob = log.ok("bob", &approve("bob", &flagged));
    let carol = log.ok("carol", &approve("carol", &d));
    let intent = log.ok(
        "deployer",
        &log.intent(
            "deployer",
            "E3",
            vec![req.link(), bob.link(), carol.link()],
            &d,
        ),
    );
    let two = log.ok(
        "deployer",
        &log.outcome("deployer", "E3", &intent, &["read", "write"]),
    );
    let before = ends("E3");
    log.ok("dave", &extend("dave", "E3", &two, false, 1200));
    assert_eq!(ends("E3"), before, "the first grant needed two people");
    log.ok("bob", &extend("bob", "E3", &two, false, 1200));
    assert_ne!(ends("E3"), before);
    // The policy tightens: `write` is privileged now (two people), and an
    // unflagged approval alone no longer extends the grant.
    publish(&log, 2, &cedar, vec![write_class(true)]);
    let before = ends("E1");
    log.ok("carol", &extend("carol", "E1", &plain, false, 1800));
    assert_eq!(ends("E1"), before, "the class asks two people now");
    let last = log.ok("dave", &extend("dave", "E1", &plain, false, 1800));
    assert_ne!(ends("E1"), before);
    log.audits_clean();
    // A draft that permits no extension: the audit lists the approvals
    // that completed one (and nothing else), as the policy would have
    // refused them.
    let dir = tempfile::tempdir().unwrap();
    let draft = dir.path().join("draft.cedar");
    std::fs::write(
        &draft,
        format!(
            "{}forbid(principal, action, resource)\nwhen {{ context has extension && context.extension }};\n",
            gatelog::server::run::DEV_POLICY
        ),
    )
    .unwrap();
    let out = dir.path().join("audit");
    let (code, output, _) = log
        .server
        .audit(&["--policy", draft.to_str().unwrap()], &out);
    assert_eq!(code, 0, "{output}");
    let csv = std::fs::read_to_string(out.join("policy_simulation.csv")).unwrap();
    let changed: Vec<(&str, &str, &str)> = csv
        .lines()
        .skip(1)
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            (f[1], f[3], f[f.len() - 1])
        })
        .collect();
    assert_eq!(
        changed,
        [
            ("E1", "refuse", "extension"),
            ("E3", "refuse", "extension"),
            ("E1", "refuse", "extension")
        ],
        "{csv}"
    );
    assert!(
        csv.contains(&format!("\n{},E1,admit,refuse,", last.index)),
        "{csv}"
    );
}

#[test]
fn an_early_revocation_makes_the_removal_due_at_once() {
    let log = Log::start();
    time_bound_write(&log, 60);
    let granted = grant(&log, "R1", 3600);
    // Not by someone outside the chain; by the requester, one signature.
    log.rejected(
        log.key("carol"),
        &build::revoke(log.actor("carol"), granted.link(), "no", now()),
        403,
        "not_revoker",
    );
    log.ok(
        "alice",
        &build::revoke(log.actor("alice"), granted.link(), "done early", now()),
    );
    assert_eq!(log.chain("R1")["status"], "awaiting_deprovisioning");
    // Only the executor the request named removes it (its outcome is the
    // evidence the access is gone); the chain takes nothing but the
    // grant's own steps (nobody fills it to shut out its revocation).
    let v = log.refused("carol", &removal(&log, "carol", "R1", &granted));
    assert_eq!(codes(&v), ["removal_executor"]);
    let rec = build::recommend(
        log.actor("copilot"),
        "R1",
        vec![granted.link()],
        write(),
        [9; 32],
        now(),
    );
    assert_eq!(codes(&log.refused("copilot", &rec)), ["chain_granted"]);
    let removed = log.ok("deployer", &removal(&log, "deployer", "R1", &granted));
    log.ok(
        "deployer",
        &log.outcome("deployer", "R1", &removed, &["read"]),
    );
    assert_eq!(log.chain("R1")["status"], "deprovisioned");
    log.audits_clean();
}

#[test]
fn overlapping_grants_end_separately_and_no_removal_ends_one_in_force() {
    let mut log = Log::start();
    time_bound_write(&log, 60);
    let short = grant(&log, "O1", 2);
    let long = grant(&log, "O2", 3600);
    std::thread::sleep(std::time::Duration::from_millis(2_500));
    // O1 ended while O2 grants the same: O1 closes as covered by O2, and
    // nothing is to be removed.
    tick(&mut log, "dave");
    let o1 = log.chain("O1");
    assert_eq!(o1["status"], "covered", "{o1}");
    let v = log.refused("deployer", &removal(&log, "deployer", "O1", &short));
    assert_eq!(codes(&v), ["chain_closed"]);
    assert_eq!(log.chain("O2")["status"], "granted");
    // An approved removal in a chain of its own would end O2's access:
    // refused while O2 is in force.
    let d = delta(&["read", "write"], &[], &["write"]);
    let (req, bob) = log.approved("O3", &d);
    let v = log.refused(
        "deployer",
        &log.intent("deployer", "O3", vec![req.link(), bob.link()], &d),
    );
    assert_eq!(codes(&v), ["grant_in_force"]);
    // Revoked, O2 ends; its own removal then passes.
    log.ok(
        "bob",
        &build::revoke(log.actor("bob"), long.link(), "no longer needed", now()),
    );
    let removed = log.ok("deployer", &removal(&log, "deployer", "O2", &long));
    log.ok(
        "deployer",
        &log.outcome("deployer", "O2", &removed, &["read"]),
    );
    assert_eq!(log.chain("O2")["status"], "deprovisioned");
    log.audits_clean();
}

fn suspension(log: &Log, who: &str, lifted: bool) -> Statement {
    Statement {
        actor: Some(log.actor("admin").clone()),
        issued_at: Some(entry::timestamp(now())),
        body: Some(entry::Body::Suspension(entry::proto::Suspension {
            identity: who.into(),
            lifted,
            reason: "kill switch".into(),
        })),
        ..Default::default()
    }
}

#[test]
fn a_suspension_stops_an_identity_everywhere_at_once() {
    let log = Log::start();
    time_bound_write(&log, 60);
    let d = delta(&["read"], &["deploy"], &[]);
    // alice holds a grant; bob approved a change still to run; copilot
    // recommends.
    let granted = grant(&log, "K1", 3600);
    let (req, bob) = log.approved("K2", &d);
    let recommend = || {
        build::recommend(
            log.actor("copilot"),
            "K2",
            vec![req.link()],
            d.clone(),
            [7; 32],
            now(),
        )
    };
    log.ok("copilot", &recommend());
    // The assistant goes wrong: one admin signature stops it.
    log.ok("admin", &suspension(&log, "copilot", false));
    let e = log.rejected(log.key("copilot"), &recommend(), 403, "suspended");
    assert_eq!(e["field"], "signedEntry.signerId", "{e}");
    // bob is suspended: the approval he gave and that was not used is void.
    log.ok("admin", &suspension(&log, "bob", false));
    let v = log.refused(
        "deployer",
        &log.intent("deployer", "K2", vec![req.link(), bob.link()], &d),
    );
    assert_eq!(codes(&v), ["approval_voided"]);
    // alice is suspended: the access she holds owes its removal now.
    assert_eq!(log.chain("K1")["status"], "granted");
    log.ok("admin", &suspension(&log, "alice", false));
    assert_eq!(log.chain("K1")["status"], "awaiting_deprovisioning");
    let removed = log.ok("deployer", &removal(&log, "deployer", "K1", &granted));
    log.ok(
        "deployer",
        &log.outcome("deployer", "K1", &removed, &["read"]),
    );
    assert_eq!(log.chain("K1")["status"], "deprovisioned");
    // What makes no sense is rejected and changes nothing.
    let admin = log.key("admin");
    log.rejected(
        admin,
        &suspension(&log, "bob", false),
        409,
        "already_suspended",
    );
    log.rejected(
        admin,
        &suspension(&log, "carol", true),
        409,
        "not_suspended",
    );
    log.rejected(
        admin,
        &suspension(&log, "nobody", false),
        404,
        "unknown_identity",
    );
    log.rejected(
        admin,
        &suspension(&log, "admin", false),
        422,
        "admin_suspension",
    );
    // A suspended human's machines stop with them: olivia answers for
    // deployer.
    log.ok("admin", &suspension(&log, "olivia", false));
    log.rejected(
        log.key("deployer"),
        &removal(&log, "deployer", "K1", &granted),
        403,
        "suspended",
    );
    log.ok("admin", &suspension(&log, "olivia", true));
    let mut by_carol = suspension(&log, "bob", true);
    by_carol.actor = Some(log.actor("carol").clone());
    log.rejected(log.key("carol"), &by_carol, 403, "admin_only");
    // Lifted, bob signs again; the approval it voided stays void. While
    // alice is suspended, nothing is granted to her either.
    log.ok("admin", &suspension(&log, "bob", true));
    let v = log.refused(
        "deployer",
        &log.intent("deployer", "K2", vec![req.link(), bob.link()], &d),
    );
    assert_eq!(codes(&v), ["approval_voided", "subject_suspended"]);
    log.ok("admin", &suspension(&log, "alice", true));
    let t = now();
    let again = log.ok(
        "bob",
        &build::approve(
            log.actor("bob"),
            "K2",
            vec![req.link()],
            d.clone(),
            t + MINUTE,
            t,
        ),
    );
    log.ok(
        "deployer",
        &log.intent("deployer", "K2", vec![req.link(), again.link()], &d),
    );
    log.audits_clean();
}

fn access(log: &Log, query: &str) -> serde_json::Value {
    get_ok(log.server.addr, &format!("/v1/access?{query}")).json()
}

/// Each holding's outcome (or each entry) proves its inclusion under the
/// answer's signed checkpoint.
fn proofs_verify(log: &Log, answer: &serde_json::Value, list: &str) {
    let log_key = NoteVerifier::parse(&log.server.vkey).unwrap();
    let cp = Checkpoint::open(answer["checkpoint"].as_str().unwrap().as_bytes(), &log_key).unwrap();
    for item in answer[list].as_array().unwrap() {
        let proven = if list == "holdings" {
            &item["outcome"]
        } else {
            item
        };
        let leaf: [u8; 32] = common::b64(proven["leaf_hash"].as_str().unwrap())
            .try_into()
            .unwrap();
        verify_inclusion(
            proven["index"].as_u64().unwrap(),
            cp.size,
            &leaf,
            &hash_list(&proven["inclusion_proof"]),
            &cp.root,
        )
        .unwrap();
    }
}

/// (entitlement, chain, status, outcome) of each holding.
fn holdings(answer: &serde_json::Value) -> Vec<(String, String, String, u64)> {
    let mut v: Vec<_> = answer["holdings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            (
                h["entitlement"].as_str().unwrap().to_string(),
                h["chain_id"].as_str().unwrap().to_string(),
                h["status"].as_str().unwrap().to_string(),
                h["outcome"]["index"].as_u64().unwrap(),
            )
        })
        .collect();
    v.sort();
    v
}

#[test]
fn who_has_what_is_answered_with_proofs_and_equals_the_offline_replay() {
    let log = Log::start();
    time_bound_write(&log, 60);
    let before = entry::rfc3339(now() - MINUTE);
    // alice: `write` for an hour, `deploy` for good; copilot recommended.
    let timed = grant(&log, "W1", 3600);
    let d = delta(&["read"], &["deploy"], &[]);
    let (req, bob) = log.approved("P1", &d);
    log.ok(
        "copilot",
        &build::recommend(
            log.actor("copilot"),
            "P1",
            vec![req.link()],
            d.clone(),
            [1; 32],
            now(),
        ),
    );
    let int = log.ok(
        "deployer",
        &log.intent("deployer", "P1", vec![req.link(), bob.link()], &d),
    );
    let permanent = log.ok(
        "deployer",
        &log.outcome("deployer", "P1", &int, &["read", "deploy"]),
    );
    let a = access(&log, "subject=alice");
    assert_eq!(
        holdings(&a),
        [
            ("deploy".into(), "P1".into(), "held".into(), permanent.index),
            ("write".into(), "W1".into(), "held".into(), timed.index),
        ],
        "{a}"
    );
    let ends: Vec<bool> = a["holdings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["ends_at"].is_string())
        .collect();
    assert!(ends.contains(&true) && ends.contains(&false), "{a}");
    proofs_verify(&log, &a, "holdings");
    let r = access(&log, "resource=corp/payments&system=github");
    assert_eq!(holdings(&r), holdings(&a));
    assert!(holdings(&access(&log, "subject=bob")).is_empty());
    assert!(holdings(&access(&log, &format!("subject=alice&at={before}"))).is_empty());
    // All one assistant did.
    let c = access(&log, "actor=copilot");
    let kinds: Vec<&str> = c["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["recommendation"], "{c}");
    proofs_verify(&log, &c, "entries");
    // Paged.
    let p = access(&log, "subject=alice&limit=1");
    assert_eq!(
        (p["total"].as_u64(), p["next_offset"].as_u64()),
        (Some(2), Some(1))
    );
    // Questions that make no sense get 400, naming the problem.
    for bad in [
        "",
        "subject=alice&actor=bob",
        "subject=alice&limit=0",
        "subject=alice&at=yesterday",
        "actor=bob&at=2026-01-01T00:00:00Z",
        "resource=corp/payments",
        "who=alice",
    ] {
        let r = http(log.server.addr, "GET", &format!("/v1/access?{bad}"), &[]).unwrap();
        assert_eq!(r.status, 400, "{bad}: {}", r.text());
    }
    // The timed grant revoked and removed (a log-time tick later): history
    // keeps it.
    let during = a["holdings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["entitlement"] == "write")
        .unwrap()["granted_at"]
        .as_str()
        .unwrap()
        .to_string();
    std::thread::sleep(std::time::Duration::from_millis(1_200));
    log.ok(
        "alice",
        &build::revoke(log.actor("alice"), timed.link(), "done", now()),
    );
    // (What the removal leaves is what is there: read and deploy.)
    let undo = delta(&["read", "deploy", "write"], &[], &["write"]);
    let removed = log.ok(
        "deployer",
        &log.intent("deployer", "W1", vec![timed.link()], &undo),
    );
    log.ok(
        "deployer",
        &log.outcome("deployer", "W1", &removed, &["read", "deploy"]),
    );
    let now_held = access(&log, "subject=alice");
    assert_eq!(
        holdings(&now_held),
        [("deploy".into(), "P1".into(), "held".into(), permanent.index)]
    );
    let then = access(&log, &format!("subject=alice&at={during}"));
    assert_eq!(holdings(&then).len(), 2, "{then}");
    // The auditor's answer, from the log's entries alone, is the same.
    let url = format!("http://{}", log.server.addr);
    for (flag, value, query) in [
        ("--subject", "alice", "subject=alice".to_string()),
        ("--subject", "alice", format!("subject=alice&at={during}")),
        (
            "--resource",
            "corp/payments",
            "resource=corp/payments&system=github".into(),
        ),
    ] {
        let mut args = vec![
            "access",
            "--log",
            &url,
            "--vkey",
            &log.server.vkey,
            flag,
            value,
        ];
        if query.contains("system") {
            args.extend(["--system", "github"]);
        }
        if query.contains("at=") {
            args.extend(["--at", &during]);
        }
        let (code, out) = common::run_gatelog(&args);
        assert_eq!(code, 0, "{out}");
        let offline: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(
            holdings(&offline),
            holdings(&access(&log, &query)),
            "{query}"
        );
    }
    let (code, out) = common::run_gatelog(&[
        "access",
        "--log",
        &url,
        "--vkey",
        &log.server.vkey,
        "--actor",
        "copilot",
    ]);
    assert_eq!(code, 0, "{out}");
    let offline: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(offline["entries"][0]["kind"], "recommendation");
    log.audits_clean();
}

#[test]
fn an_access_review_campaign_keeps_revokes_and_reports_what_no_one_reviewed() {
    let mut log = Log::start();
    // (dave reviews; he takes part in no grant.)
    log.register(human("dave"));
    let (keep, revoke, unreviewed) = (
        grant_roles(&log, "A1", &["deploy"], 3600),
        grant_roles(&log, "A2", &["oncall"], 3600),
        grant_roles(&log, "A3", &["billing"], 3600),
    );
    let campaign = review_campaign(
        &log,
        "Q4-github",
        &["carol", "dave", "alice", "olivia"],
        now() + 3_000,
    );
    // Only an admin opens one, naming registered humans.
    let mut by_bob = campaign.clone();
    by_bob.actor = Some(log.actor("bob").clone());
    log.rejected(log.key("bob"), &by_bob, 403, "admin_only");
    let mut twice = campaign.clone();
    if let Some(entry::Body::ReviewCampaign(c)) = &mut twice.body {
        c.reviewers.push("carol".into());
    }
    log.rejected(log.key("admin"), &twice, 422, "unknown_reviewer");
    let mut past = campaign.clone();
    if let Some(entry::Body::ReviewCampaign(c)) = &mut past.body {
        c.deadline = Some(entry::timestamp(now() - MINUTE));
    }
    log.rejected(log.key("admin"), &past, 422, "invalid_entry");
    let campaign = log.ok("admin", &campaign);
    let certify =
        |who: &str, grant: &At, keep: bool| certification(&log, who, &campaign, grant, keep);
    // Never the holder, nor who granted it (olivia answers for the
    // executor), nor someone the campaign does not name; each refusal is
    // recorded.
    assert_eq!(
        codes(&log.refused("alice", &certify("alice", &keep, true))),
        ["self_certification", "granter_certifies"]
    );
    assert_eq!(
        codes(&log.refused("olivia", &certify("olivia", &keep, true))),
        ["granter_certifies"]
    );
    assert_eq!(
        codes(&log.refused("bob", &certify("bob", &keep, true))),
        ["not_a_reviewer", "granter_certifies"]
    );
    // Only a grant of the snapshot is certified (not the request, say).
    let mut other = certify("carol", &keep, true);
    if let Some(entry::Body::Certification(c)) = &mut other.body {
        c.grant = Some(campaign.link());
    }
    log.rejected(log.key("carol"), &other, 422, "not_in_campaign");
    // A certification belongs to no chain (it cannot crowd one's list).
    let mut in_chain = certify("carol", &keep, true);
    in_chain.chain_id = "A1".into();
    log.rejected(log.key("carol"), &in_chain, 422, "invalid_entry");
    log.ok("carol", &certify("carol", &keep, true));
    assert_eq!(
        codes(&log.refused("dave", &certify("dave", &keep, false))),
        ["already_certified"]
    );
    // A REVOKE makes the grant's removal due at once.
    log.ok("dave", &certify("dave", &revoke, false));
    assert_eq!(log.chain("A2")["status"], "awaiting_deprovisioning");
    let undo = delta(&["read", "oncall"], &[], &["oncall"]);
    let removed = log.ok(
        "deployer",
        &log.intent("deployer", "A2", vec![revoke.link()], &undo),
    );
    log.ok(
        "deployer",
        &log.outcome("deployer", "A2", &removed, &["read"]),
    );
    // The deadline passes with A3 unreviewed.
    std::thread::sleep(std::time::Duration::from_millis(3_500));
    log.ok(
        "dave",
        &build::request(
            log.actor("dave"),
            "T1",
            target("github", "other/x", "dave"),
            delta(&[], &["read"], &[]),
            "deployer",
            now(),
        ),
    );
    assert_eq!(
        codes(&log.refused("carol", &certify("carol", &unreviewed, true))),
        ["campaign_closed"]
    );
    let out = tempfile::tempdir().unwrap();
    let (code, _, manifest) = log.server.audit(&[], &out.path().join("a"));
    assert_eq!(code, 1);
    let exceptions = std::fs::read_to_string(out.path().join("a/exceptions.csv")).unwrap();
    let found: Vec<&str> = exceptions
        .lines()
        .skip(1)
        .map(|l| l.split(',').nth(2).unwrap())
        .collect();
    assert_eq!(found, ["unreviewed_grant"], "{exceptions}");
    assert!(exceptions.contains("A3"), "{exceptions}");
    let c = &manifest["access_reviews"]["campaigns"][0];
    assert_eq!(
        (
            c["grants"].as_u64(),
            c["kept"].as_u64(),
            c["revoked"].as_u64(),
            c["unreviewed"].as_u64()
        ),
        (Some(3), Some(1), Some(1), Some(1)),
        "{manifest:#}"
    );
    assert_eq!(c["removals_carried_out"], 1);
    let rows = std::fs::read_to_string(out.path().join("a/campaigns.csv")).unwrap();
    assert!(rows.contains(",A1,alice,deploy,keep,carol,"), "{rows}");
    assert!(rows.contains(",A2,alice,oncall,revoke,dave,"), "{rows}");
    assert!(rows.contains(",A3,alice,billing,unreviewed,,,"), "{rows}");
    assert!(
        rows.lines()
            .any(|l| l.contains(",A2,") && l.ends_with(",yes")),
        "{rows}"
    );
}

/// Rules version 7: a reviewer's key reported compromised voids the
/// KEEPs it signed since, in campaigns still open (the grant is to be
/// reviewed again, by anyone the campaign names); what it signed before
/// the compromise, its REVOKEs and other reviewers' KEEPs stand. A key
/// revoked outright voids every KEEP it signed.
#[test]
fn a_compromised_reviewer_key_voids_the_keeps_it_signed() {
    let mut log = Log::start();
    log.register(human("dave"));
    let [before, after, revoked, daves, later] = ["deploy", "oncall", "billing", "audit", "ops"]
        .map(|role| {
            let chain = format!("R-{role}");
            grant_roles(&log, &chain, &[role], 3600)
        });
    let campaign = log.ok(
        "admin",
        &review_campaign(&log, "Q1", &["carol", "dave"], now() + 10 * MINUTE),
    );
    let certify = |log: &Log, who: &str, grant: &At, keep: bool| {
        certification(log, who, &campaign, grant, keep)
    };
    log.ok("carol", &certify(&log, "carol", &before, true));
    // (The log's clock has a one-second resolution.)
    std::thread::sleep(std::time::Duration::from_millis(2_100));
    let stolen_at = now();
    std::thread::sleep(std::time::Duration::from_millis(2_100));
    let kept_after = log.ok("carol", &certify(&log, "carol", &after, true));
    log.ok("carol", &certify(&log, "carol", &revoked, false));
    let daves_keep = log.ok("dave", &certify(&log, "dave", &daves, true));
    assert_eq!(
        codes(&log.refused("dave", &certify(&log, "dave", &after, false))),
        ["already_certified"]
    );
    // carol's key was stolen at `stolen_at`: the admin rotates it.
    let new_key = NoteSigner::from_seed("carol", [0x44; 32]).unwrap();
    log.ok(
        "admin",
        &key_change(&log, "carol", &new_key, KeyOp::RotateKey, Some(stolen_at)),
    );
    log.keys.get_mut("carol").unwrap().1 = NoteSigner::from_seed("carol", [0x44; 32]).unwrap();
    // Her KEEP since the theft no longer stands: dave reviews it again.
    log.ok("dave", &certify(&log, "dave", &after, false));
    assert_eq!(log.chain("R-oncall")["status"], "awaiting_deprovisioning");
    // What stands: her KEEP from before the theft, her REVOKE, dave's KEEP.
    for (who, grant) in [("dave", &before), ("dave", &revoked), ("carol", &daves)] {
        assert_eq!(
            codes(&log.refused(who, &certify(&log, who, grant, true))),
            ["already_certified"],
            "{who}"
        );
    }
    // A key revoked outright voids every KEEP it signed.
    let later_keep = log.ok("carol", &certify(&log, "carol", &later, true));
    log.ok(
        "admin",
        &key_change(&log, "carol", &new_key, KeyOp::RevokeKey, None),
    );
    let daves_later = log.ok("dave", &certify(&log, "dave", &later, true));
    // dave is suspended: his KEEPs no longer stand, his REVOKE does.
    log.ok("admin", &suspension(&log, "dave", false));
    // The evidence shows the voided KEEP beside the decision that stands.
    let out = tempfile::tempdir().unwrap();
    let (code, output, _) = log.server.audit(&[], &out.path().join("a"));
    assert_eq!(code, 0, "{output}");
    let rows = std::fs::read_to_string(out.path().join("a/campaigns.csv")).unwrap();
    let header: Vec<&str> = rows.lines().next().unwrap().split(',').collect();
    let column = |name: &str| header.iter().position(|h| *h == name).unwrap();
    let row = |chain: &str| -> Vec<String> {
        let line = rows
            .lines()
            .find(|l| l.contains(&format!(",{chain},")))
            .unwrap();
        line.split(',').map(str::to_string).collect()
    };
    let (decision, reviewer, voided) = (
        column("decision"),
        column("reviewer"),
        column("voided_decisions"),
    );
    let oncall = row("R-oncall");
    assert_eq!(
        (&*oncall[decision], &*oncall[reviewer], &*oncall[voided]),
        ("revoke", "dave", &*kept_after.index.to_string()),
        "{rows}"
    );
    let ops = row("R-ops");
    assert_eq!(
        (&*ops[decision], &*ops[voided]),
        (
            "unreviewed",
            &*format!("{} {}", later_keep.index, daves_later.index)
        ),
        "{rows}"
    );
    let audit = row("R-audit");
    assert_eq!(
        (&*audit[decision], &*audit[voided]),
        ("unreviewed", &*daves_keep.index.to_string()),
        "{rows}"
    );
    assert_eq!(row("R-oncall").len(), header.len());
    assert_eq!(row("R-deploy")[voided], "", "{rows}");
}

/// Rules version 7: a campaign may review the grants of some subjects
/// only (`subjectPrefix`), so a resource with more standing grants than
/// one campaign reviews is reviewed in parts.
#[test]
fn a_campaign_scoped_to_subjects_reviews_only_their_grants() {
    let mut log = Log::start();
    log.register(human("dave"));
    let alices = grant_roles(&log, "S1", &["deploy"], 0);
    let daves = grant_on(
        &log,
        "S2",
        target("github", "corp/x", "dave"),
        &["deploy"],
        0,
    );
    let mut scoped = review_campaign(&log, "Q-o", &["carol", "dave"], now() + 10 * MINUTE);
    if let Some(entry::Body::ReviewCampaign(c)) = &mut scoped.body {
        c.subject_prefix = "da".into();
    }
    let campaign = log.ok("admin", &scoped);
    log.rejected(
        log.key("carol"),
        &certification(&log, "carol", &campaign, &alices, false),
        422,
        "not_in_campaign",
    );
    log.ok(
        "carol",
        &certification(&log, "carol", &campaign, &daves, false),
    );
    assert_eq!(log.chain("S2")["status"], "awaiting_deprovisioning");
    assert_eq!(log.chain("S1")["status"], "granted");
    let out = tempfile::tempdir().unwrap();
    let (_, _, manifest) = log.server.audit(&[], &out.path().join("a"));
    let c = &manifest["access_reviews"]["campaigns"][0];
    assert_eq!(c["scope"]["subject_prefix"], "da", "{manifest:#}");
    assert_eq!(c["grants"], 1, "{manifest:#}");
}

/// The admin's access review of github's `corp/` resources by
/// `reviewers`, due at `deadline_ms`, reporting what is not reviewed.
fn review_campaign(log: &Log, id: &str, reviewers: &[&str], deadline_ms: i64) -> Statement {
    Statement {
        actor: Some(log.actor("admin").clone()),
        issued_at: Some(entry::timestamp(now())),
        body: Some(entry::Body::ReviewCampaign(entry::proto::ReviewCampaign {
            campaign_id: id.into(),
            system: "github".into(),
            resource_prefix: "corp/".into(),
            reviewers: reviewers.iter().map(|r| r.to_string()).collect(),
            deadline: Some(entry::timestamp(deadline_ms)),
            revoke_unreviewed: false,
            subject_prefix: String::new(),
        })),
        ..Default::default()
    }
}

/// `who`'s certification of `grant` (its outcome) in `campaign`: KEEP or
/// REVOKE.
fn certification(log: &Log, who: &str, campaign: &At, grant: &At, keep: bool) -> Statement {
    use entry::proto::certification::Verdict;
    Statement {
        actor: Some(log.actor(who).clone()),
        issued_at: Some(entry::timestamp(now())),
        body: Some(entry::Body::Certification(entry::proto::Certification {
            campaign: Some(campaign.link()),
            grant: Some(grant.link()),
            verdict: if keep { Verdict::Keep } else { Verdict::Revoke } as i32,
            notes: String::new(),
        })),
        ..Default::default()
    }
}

/// Rules version 6: permanent access is a grant that never ends. Its
/// chain holds it; a campaign reviews it; a REVOKE, or a suspension of its
/// holder, makes its removal due; it takes no extension, and no other
/// chain removes it while it is in force.
#[test]
fn permanent_access_is_reviewed_and_a_revoke_makes_its_removal_due() {
    let mut log = Log::start();
    log.register(human("dave"));
    // No duration, and the default policy sets no maximum: permanent.
    let standing = grant_roles(&log, "P1", &["deploy"], 0);
    let other = grant_roles(&log, "P2", &["oncall"], 0);
    let chain = log.chain("P1");
    assert_eq!(chain["status"], "granted", "{chain}");
    assert_eq!(
        chain["grant"]["ends_at"],
        serde_json::Value::Null,
        "{chain}"
    );
    assert!(
        obligations(&log).is_empty(),
        "a grant in force owes nothing"
    );

    // It needs no extension.
    let t = now();
    let d = delta(&["read"], &["deploy"], &[]);
    let extension = build::lasting(
        build::approve(
            log.actor("carol"),
            "P1",
            vec![standing.link()],
            d,
            t + MINUTE,
            t,
        ),
        600,
    );
    assert_eq!(
        codes(&log.refused("carol", &extension)),
        ["grant_permanent"]
    );
    // Another chain does not remove it while it is in force.
    let removal_elsewhere = delta(&["read", "deploy"], &[], &["deploy"]);
    let req = log.ok(
        "alice",
        &build::request(
            log.actor("alice"),
            "P3",
            tgt(),
            removal_elsewhere.clone(),
            "deployer",
            t,
        ),
    );
    let ok = log.ok(
        "bob",
        &build::approve(
            log.actor("bob"),
            "P3",
            vec![req.link()],
            removal_elsewhere.clone(),
            t + MINUTE,
            t,
        ),
    );
    let v = log.refused(
        "deployer",
        &log.intent(
            "deployer",
            "P3",
            vec![req.link(), ok.link()],
            &removal_elsewhere,
        ),
    );
    assert_eq!(codes(&v), ["grant_in_force"]);

    // A campaign snapshots both; dave revokes P1, carol keeps P2.
    let campaign = log.ok(
        "admin",
        &review_campaign(
            &log,
            "standing-access",
            &["carol", "dave"],
            now() + 60 * MINUTE,
        ),
    );
    let certify =
        |who: &str, grant: &At, keep: bool| certification(&log, who, &campaign, grant, keep);
    log.ok("carol", &certify("carol", &other, true));
    log.ok("dave", &certify("dave", &standing, false));
    assert_eq!(log.chain("P1")["status"], "awaiting_deprovisioning");
    assert_eq!(log.chain("P2")["status"], "granted");
    let owed = obligations(&log);
    assert_eq!(owed.len(), 1, "{owed:?}");
    assert_eq!(owed[0]["chain_id"], "P1");
    assert_eq!(owed[0]["opened_by"], standing.index);
    // The executor removes it without a new approval; the chain closes.
    let undo = delta(&["read", "deploy"], &[], &["deploy"]);
    let removed = log.ok(
        "deployer",
        &log.intent("deployer", "P1", vec![standing.link()], &undo),
    );
    log.ok(
        "deployer",
        &log.outcome("deployer", "P1", &removed, &["read"]),
    );
    assert_eq!(log.chain("P1")["status"], "deprovisioned");
    assert!(obligations(&log).is_empty());

    // The holder suspended: the access kept owes its removal now.
    log.ok("admin", &suspension(&log, "alice", false));
    assert_eq!(log.chain("P2")["status"], "awaiting_deprovisioning");
    let owed = obligations(&log);
    assert_eq!(owed.len(), 1, "{owed:?}");
    assert_eq!(owed[0]["chain_id"], "P2");
    log.audits_clean();
}

/// Rules version 6: a chain's one grant is made by its first outcome, so
/// a second intent waits for it, permanent or not: two partial approvals
/// executed at once would otherwise leave access held but tracked by no
/// grant, out of every review.
#[test]
fn a_second_permanent_intent_waits_for_the_first_outcome() {
    let log = Log::start();
    let t = now();
    let both = delta(&["read"], &["deploy", "write"], &[]);
    let req = log.ok(
        "alice",
        &build::request(log.actor("alice"), "PP", tgt(), both, "deployer", t),
    );
    let approve = |d: &EntitlementDelta| {
        log.ok(
            "bob",
            &build::approve(
                log.actor("bob"),
                "PP",
                vec![req.link()],
                d.clone(),
                t + MINUTE,
                t,
            ),
        )
    };
    let (deploy, write) = (
        delta(&["read"], &["deploy"], &[]),
        delta(&["read"], &["write"], &[]),
    );
    let (a, b) = (approve(&deploy), approve(&write));
    let first = log.ok(
        "deployer",
        &log.intent("deployer", "PP", vec![req.link(), a.link()], &deploy),
    );
    let second = log.intent("deployer", "PP", vec![req.link(), b.link()], &write);
    assert_eq!(codes(&log.refused("deployer", &second)), ["intent_pending"]);
    log.ok(
        "deployer",
        &log.outcome("deployer", "PP", &first, &["read", "deploy"]),
    );
    let chain = log.chain("PP");
    assert_eq!(chain["status"], "granted", "{chain}");
    assert_eq!(
        chain["grant"]["entitlements"],
        serde_json::json!(["deploy"])
    );
    log.audits_clean();
}

#[test]
fn a_partly_covered_grant_removes_only_what_no_other_grant_holds() {
    let log = Log::start();
    // PA1: deploy and oncall for 2 s; PA2: oncall for an hour.
    let a1 = grant_roles(&log, "PA1", &["deploy", "oncall"], 2);
    grant_roles(&log, "PA2", &["oncall"], 3600);
    std::thread::sleep(std::time::Duration::from_millis(2_500));
    // Removing oncall too would end PA2's access: refused; deploy alone
    // is the removal.
    let both = delta(&["read", "deploy", "oncall"], &[], &["deploy", "oncall"]);
    let v = log.refused(
        "deployer",
        &log.intent("deployer", "PA1", vec![a1.link()], &both),
    );
    assert!(codes(&v).contains(&"not_a_removal"), "{v:?}");
    let deploy = delta(&["read", "deploy", "oncall"], &[], &["deploy"]);
    let removed = log.ok(
        "deployer",
        &log.intent("deployer", "PA1", vec![a1.link()], &deploy),
    );
    log.ok(
        "deployer",
        &log.outcome("deployer", "PA1", &removed, &["read", "oncall"]),
    );
    assert_eq!(log.chain("PA1")["status"], "deprovisioned");
    let a = access(&log, "subject=alice");
    assert_eq!(
        holdings(&a)
            .iter()
            .map(|(e, c, s, _)| (e.as_str(), c.as_str(), s.as_str()))
            .collect::<Vec<_>>(),
        [("oncall", "PA2", "held")],
        "{a}"
    );
    log.audits_clean();
}
