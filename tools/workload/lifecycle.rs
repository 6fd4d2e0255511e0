//! `gatelog-workload --lifecycle`: a log of this release's rules (version
//! 5: the log's clock, owners, named executors, a published policy,
//! time-bound grants, suspensions), where every chain grants a role for
//! an hour and the role is removed when the grant ends, injecting the
//! lifecycle's violations: a removal after its window
//! (`late_deprovisioning`), none at all (`access_not_deprovisioned`), a
//! removal that still sees the access (`access_past_end`, and the
//! outcome's `outcome_mismatch`), an assistant that acts after its
//! suspension (`signer`), and an access review campaign that certifies
//! every grant in force on a resource but one (`unreviewed_grant`). The
//! audit must find exactly those.

use std::collections::{HashMap, VecDeque};

use gatelog::access::entry::build::{self, delta, human, link, nhi, target};
use gatelog::access::entry::proto::{
    certification, Certification, EntitlementClass, EntryRef, LogParameters, LogTime, PolicyRef,
    ReviewCampaign, Statement, Suspension,
};
use gatelog::access::entry::{self, Body};
use gatelog::tlog::merkle::leaf_hash;
use gatelog::tlog::note::NoteSigner;
use prost::Message;

use super::{Args, Injected, Rng};

const SECOND: i64 = 1_000;
const HOUR: i64 = 3_600 * SECOND;
/// Every grant lasts an hour; its removal may take ten minutes more.
const GRANT_SECONDS: u64 = 3_600;
const WINDOW_SECONDS: u64 = 600;

/// The violations injected, by the audit codes that must report them.
pub const INJECTIONS: [(&str, &[&str]); 5] = [
    ("late_deprovisioning", &["late_deprovisioning"]),
    ("access_not_deprovisioned", &["access_not_deprovisioned"]),
    ("access_past_end", &["access_past_end", "outcome_mismatch"]),
    ("suspended_action", &["signer"]),
    // An access review of the grant's resource that certifies every other
    // grant in force there, and not this one.
    ("unreviewed_grant", &["unreviewed_grant"]),
];

/// A grant the gate tracks while it is in force.
struct Live {
    outcome: EntryRef,
    system: String,
    resource: String,
    ends: i64,
    approver: usize,
}

/// Entries under the log's clock: a time record whenever a minute has
/// passed, so every statement is within the skew of the log's time.
struct Writer {
    entries: Vec<Vec<u8>>,
    clock: i64,
    log_time: i64,
    log: NoteSigner,
    origin: String,
}

impl Writer {
    fn record(&mut self, body: Body) {
        let st = Statement {
            actor: Some(human(self.log.name())),
            issued_at: Some(entry::timestamp(self.clock)),
            log_origin: self.origin.clone(),
            body: Some(body),
            ..Default::default()
        };
        self.entries
            .push(entry::sign(&self.log, &st).encode_to_vec());
        self.log_time = self.clock;
    }

    fn put(&mut self, who: &NoteSigner, st: Statement) -> EntryRef {
        if self.clock - self.log_time >= 60 * SECOND {
            self.record(Body::LogTime(LogTime {}));
        }
        let mut st = build::for_log(st, &self.origin);
        st.issued_at = Some(entry::timestamp(self.clock));
        self.clock += SECOND;
        let leaf = entry::sign(who, &st).encode_to_vec();
        let at = link(self.entries.len() as u64, &leaf_hash(&leaf));
        self.entries.push(leaf);
        at
    }

    /// Moves the clock to `t` and records it (so rules that turn on time
    /// see it).
    fn at_least(&mut self, t: i64) {
        if self.clock < t {
            self.clock = t;
        }
        self.record(Body::LogTime(LogTime {}));
    }
}

struct Member {
    actor: gatelog::access::entry::proto::Actor,
    key: NoteSigner,
}

/// A grant whose removal is still to be written.
struct Pending {
    chain: String,
    outcome: EntryRef,
    key: (String, String, String),
    role: String,
    ends: i64,
    injection: Option<&'static str>,
    /// The executor the request named (who removes it).
    executor: usize,
}

/// Writes the log; the entries, the log key, the admin, and the report.
pub fn write(
    args: &Args,
    rng: &mut Rng,
    start: i64,
) -> anyhow::Result<(Vec<Vec<u8>>, NoteSigner, NoteSigner, serde_json::Value)> {
    let log = NoteSigner::from_seed("workload.example/lifecycle", rng.seed())?;
    let admin_key = NoteSigner::from_seed("admin", rng.seed())?;
    let admin = human("admin");
    let origin = log.name().to_string();
    let mut w = Writer {
        entries: vec![],
        clock: start,
        log_time: start,
        log,
        origin: origin.clone(),
    };
    w.record(Body::LogParameters(LogParameters {
        rules_version: 5,
        log_origin: origin,
        max_clock_skew_ms: 300_000,
        admin_keys: vec![admin_key.verifier().to_vkey()],
        admin_threshold: 1,
    }));
    w.record(Body::LogTime(LogTime {}));
    let member = |rng: &mut Rng, actor| -> anyhow::Result<Member> {
        let key = NoteSigner::from_seed(&build_id(&actor), rng.seed())?;
        Ok(Member { actor, key })
    };
    let mut requesters = vec![];
    let mut approvers = vec![];
    for i in 0..8 {
        requesters.push(member(rng, human(&format!("user{i}")))?);
        approvers.push(member(rng, human(&format!("manager{i}")))?);
    }
    // Machines answer to owners who take part in nothing else.
    let owner = member(rng, human("owner"))?;
    let executors: Vec<Member> = (0..4)
        .map(|i| {
            member(
                rng,
                nhi(&format!("pipeline{i}"), &format!("spiffe://corp/ci/p{i}")),
            )
        })
        .collect::<anyhow::Result<_>>()?;
    let assistant = member(
        rng,
        build::assistant(
            "copilot",
            "spiffe://corp/ai/copilot",
            "model-2026",
            "advisor",
        ),
    )?;
    for m in requesters.iter().chain(&approvers).chain([&owner]) {
        let st = build::register(&admin, &m.actor, "", m.key.verifier().public_key(), 0);
        w.put(&admin_key, st);
    }
    for m in executors.iter().chain([&assistant]) {
        let st = build::register(&admin, &m.actor, "owner", m.key.verifier().public_key(), 0);
        w.put(&admin_key, st);
    }
    let mut policy = build::publish_policy(
        &admin,
        "lifecycle",
        1,
        "permit(principal, action == Action::\"execute\", resource)\nwhen { context.human_approvals >= 1 };\n",
        0,
        0,
    );
    if let Some(Body::PolicyPublication(p)) = &mut policy.body {
        p.classes.push(EntitlementClass {
            pattern: "role*".into(),
            max_access_duration_seconds: 8 * GRANT_SECONDS,
            deprovision_window_seconds: WINDOW_SECONDS,
            ..Default::default()
        });
    }
    w.put(&admin_key, policy);
    let policy = Some(PolicyRef {
        policy_id: "lifecycle".into(),
        version: 1,
    });

    let systems = ["github", "aws", "okta", "postgres"];
    let mut held: HashMap<(String, String, String), Vec<String>> = HashMap::new();
    let mut pending: VecDeque<Pending> = VecDeque::new();
    // (Grants are removed in the order they end.)
    let mut injected = Injected::default();
    let mut rogues = 0;
    let mut live: Vec<Live> = vec![];
    // Removals injected late wait until the end, an hour past their due.
    let mut late: Vec<Pending> = vec![];
    for n in 0..args.chains {
        // Grants that have ended are removed first (on time, or as their
        // injection says).
        while pending.front().is_some_and(|p| p.ends < w.clock) {
            let p = pending.pop_front().expect("checked");
            remove(&mut w, &executors[p.executor], &mut held, p, &policy);
        }
        let chain = format!("CHG-{n}");
        let requester = &requesters[rng.below(requesters.len() as u64) as usize];
        let system = systems[rng.below(systems.len() as u64) as usize];
        let resource = format!("corp/app{}", rng.below(20));
        let subject = requester.actor.id.clone();
        let key = (system.to_string(), resource.clone(), subject.clone());
        let before = held
            .get(&key)
            .cloned()
            .unwrap_or_else(|| vec!["read".into()]);
        let role = loop {
            let r = format!("role{}", rng.below(1000));
            if !before.contains(&r) {
                break r;
            }
        };
        let refs: Vec<&str> = before.iter().map(String::as_str).collect();
        let d = delta(&refs, &[role.as_str()], &[]);
        let injection = rng
            .chance(args.inject_rate)
            .then(|| INJECTIONS[rng.below(INJECTIONS.len() as u64) as usize].0);
        let e = rng.below(executors.len() as u64) as usize;
        let executor = &executors[e];
        let req = w.put(
            &requester.key,
            build::lasting(
                build::request(
                    &requester.actor,
                    &chain,
                    target(system, &resource, &subject),
                    d.clone(),
                    &executor.actor.id,
                    0,
                ),
                GRANT_SECONDS,
            ),
        );
        if injection == Some("suspended_action") {
            // A fresh assistant, suspended, then recommending anyway.
            rogues += 1;
            let rogue = member(
                rng,
                build::assistant(
                    &format!("rogue{rogues}"),
                    "spiffe://corp/ai/rogue",
                    "m",
                    "a",
                ),
            )?;
            let st = build::register(
                &admin,
                &rogue.actor,
                "owner",
                rogue.key.verifier().public_key(),
                0,
            );
            w.put(&admin_key, st);
            w.put(
                &admin_key,
                Statement {
                    actor: Some(admin.clone()),
                    body: Some(Body::Suspension(Suspension {
                        identity: rogue.actor.id.clone(),
                        lifted: false,
                        reason: "acting outside its scope".into(),
                    })),
                    ..Default::default()
                },
            );
            w.put(
                &rogue.key,
                build::recommend(
                    &rogue.actor,
                    &chain,
                    vec![req.clone()],
                    d.clone(),
                    [3; 32],
                    0,
                ),
            );
        } else if rng.chance(0.5) {
            w.put(
                &assistant.key,
                build::recommend(
                    &assistant.actor,
                    &chain,
                    vec![req.clone()],
                    d.clone(),
                    [n as u8; 32],
                    0,
                ),
            );
        }
        let approver = rng.below(approvers.len() as u64) as usize;
        let a = &approvers[approver];
        let until = w.clock + HOUR;
        let dec = w.put(
            &a.key,
            build::approve(&a.actor, &chain, vec![req.clone()], d.clone(), until, 0),
        );
        let intent = w.put(
            &executor.key,
            build::intent(
                &executor.actor,
                &chain,
                vec![req, dec],
                d.clone(),
                policy.clone(),
                0,
            ),
        );
        let mut outcome = build::outcome(
            &executor.actor,
            &chain,
            vec![intent],
            d.after.clone(),
            &chain,
            0,
        );
        if let Some(Body::ExecutionOutcome(o)) = &mut outcome.body {
            o.observed_before = before.clone();
        }
        let granted_at = w.clock;
        let outcome = w.put(&executor.key, outcome);
        held.insert(key.clone(), d.after.clone());
        live.retain(|l| l.ends >= w.log_time);
        live.push(Live {
            outcome: outcome.clone(),
            system: system.to_string(),
            resource: resource.clone(),
            ends: granted_at + GRANT_SECONDS as i64 * SECOND,
            approver,
        });
        if injection == Some("unreviewed_grant") {
            let campaign = w.put(
                &admin_key,
                Statement {
                    actor: Some(admin.clone()),
                    body: Some(Body::ReviewCampaign(ReviewCampaign {
                        campaign_id: format!("R-{n}"),
                        system: system.to_string(),
                        resource_prefix: resource.clone(),
                        reviewers: approvers.iter().map(|m| m.actor.id.clone()).collect(),
                        // Before the grant ends: it needs its review.
                        deadline: Some(entry::timestamp(w.clock + HOUR / 2)),
                        revoke_unreviewed: false,
                        subject_prefix: String::new(),
                    })),
                    ..Default::default()
                },
            );
            // The snapshot: what is in force there at the campaign's time.
            let at = w.log_time;
            let others: Vec<(EntryRef, usize)> = live
                .iter()
                .filter(|l| l.system == system && l.resource.starts_with(&resource))
                .filter(|l| l.ends >= at && l.outcome.index != outcome.index)
                .map(|l| (l.outcome.clone(), l.approver))
                .collect();
            for (grant, approver) in others {
                // Anyone but who approved it (no manager holds or requests).
                let r = &approvers[(approver + 1) % approvers.len()];
                w.put(
                    &r.key,
                    Statement {
                        actor: Some(r.actor.clone()),
                        body: Some(Body::Certification(Certification {
                            campaign: Some(campaign.clone()),
                            grant: Some(grant),
                            verdict: certification::Verdict::Keep as i32,
                            notes: String::new(),
                        })),
                        ..Default::default()
                    },
                );
            }
        }
        if let Some(kind) = injection {
            injected.add(&INJECTIONS, kind);
        }
        let p = Pending {
            chain,
            outcome,
            key,
            role,
            ends: granted_at + GRANT_SECONDS as i64 * SECOND,
            injection,
            executor: e,
        };
        match injection {
            Some("access_not_deprovisioned") => {}
            Some("late_deprovisioning") => late.push(p),
            _ => pending.push_back(p),
        }
    }
    // What is left ends, and is removed, after the last chain; then the
    // late ones.
    for p in pending.into_iter().chain(late) {
        remove(&mut w, &executors[p.executor], &mut held, p, &policy);
    }
    let report = serde_json::json!({
        "entries": w.entries.len(),
        "chains": args.chains,
        "rules_version": 5,
        "injected": injected.kinds,
        "expected_findings": injected.findings,
    });
    let entries = std::mem::take(&mut w.entries);
    Ok((entries, w.log, admin_key, report))
}

fn build_id(actor: &gatelog::access::entry::proto::Actor) -> String {
    actor.id.clone()
}

/// The removal of `p`'s role once its grant has ended: within the window,
/// or (injected) after it, or with an outcome that still sees the role
/// before a correct one.
fn remove(
    w: &mut Writer,
    executor: &Member,
    held: &mut HashMap<(String, String, String), Vec<String>>,
    p: Pending,
    policy: &Option<PolicyRef>,
) {
    let due = p.ends + WINDOW_SECONDS as i64 * SECOND;
    let when = if p.injection == Some("late_deprovisioning") {
        due + HOUR
    } else {
        p.ends + SECOND
    };
    w.at_least(when);
    let mut times = if p.injection == Some("access_past_end") {
        2
    } else {
        1
    };
    while times > 0 {
        times -= 1;
        let before = held.get(&p.key).cloned().unwrap_or_default();
        let refs: Vec<&str> = before.iter().map(String::as_str).collect();
        let d = delta(&refs, &[], &[p.role.as_str()]);
        let intent = w.put(
            &executor.key,
            build::intent(
                &executor.actor,
                &p.chain,
                vec![p.outcome.clone()],
                d.clone(),
                policy.clone(),
                0,
            ),
        );
        // The first of two removals reports the role still there.
        let observed = if times == 1 {
            before.clone()
        } else {
            d.after.clone()
        };
        let mut outcome = build::outcome(
            &executor.actor,
            &p.chain,
            vec![intent],
            observed.clone(),
            &p.chain,
            0,
        );
        if let Some(Body::ExecutionOutcome(o)) = &mut outcome.body {
            o.observed_before = before;
        }
        w.put(&executor.key, outcome);
        held.insert(p.key.clone(), observed);
    }
}
