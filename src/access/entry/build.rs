//! Constructors for statements, for clients (the demo, the load
//! generator, tests) that write them in code rather than JSON.

use super::proto::{
    decision, entitlement_op, identity_registration, review, workload_identity, AccessRequest,
    Actor, BreakGlass, Decision, DelegationGrant, DelegationScope, EntitlementDelta, EntitlementOp,
    EntryRef, ExecutionIntent, ExecutionOutcome, IdentityRegistration, OnBehalfOf,
    PolicyPublication, PolicyRef, Recommendation, Review, Revocation, Target, WorkloadIdentity,
};
use super::{timestamp, ActorKind, Body, Statement};

pub fn human(id: &str) -> Actor {
    Actor {
        id: id.into(),
        kind: ActorKind::Human as i32,
        ..Default::default()
    }
}

/// A non-human identity running as `spiffe_id`.
pub fn nhi(id: &str, spiffe_id: &str) -> Actor {
    Actor {
        id: id.into(),
        kind: ActorKind::Nhi as i32,
        workload: Some(WorkloadIdentity {
            id: Some(workload_identity::Id::SpiffeId(spiffe_id.into())),
        }),
        ..Default::default()
    }
}

/// An AI assistant running as `spiffe_id`.
pub fn assistant(id: &str, spiffe_id: &str, model_id: &str, agent_id: &str) -> Actor {
    Actor {
        kind: ActorKind::Assistant as i32,
        model_id: model_id.into(),
        agent_id: agent_id.into(),
        ..nhi(id, spiffe_id)
    }
}

pub fn target(system: &str, resource: &str, subject: &str) -> Target {
    Target {
        system: system.into(),
        resource: resource.into(),
        subject: subject.into(),
    }
}

/// `before` plus `adds`, minus `removes`.
pub fn delta(before: &[&str], adds: &[&str], removes: &[&str]) -> EntitlementDelta {
    let mut after: Vec<String> = before
        .iter()
        .filter(|e| !removes.contains(e))
        .map(|e| e.to_string())
        .collect();
    after.extend(adds.iter().map(|e| e.to_string()));
    let op = |op: entitlement_op::Op, e: &&str| EntitlementOp {
        op: op as i32,
        entitlement: e.to_string(),
    };
    EntitlementDelta {
        before: before.iter().map(|e| e.to_string()).collect(),
        after,
        ops: adds
            .iter()
            .map(|e| op(entitlement_op::Op::Add, e))
            .chain(removes.iter().map(|e| op(entitlement_op::Op::Remove, e)))
            .collect(),
        privileged: false,
        high_risk: false,
    }
}

pub fn link(index: u64, leaf_hash: &[u8]) -> EntryRef {
    EntryRef {
        index,
        leaf_hash: leaf_hash.to_vec(),
    }
}

/// A statement by `actor` at `now_ms`, with nothing else set.
fn by(actor: &Actor, now_ms: i64, body: Body) -> Statement {
    Statement {
        actor: Some(actor.clone()),
        issued_at: Some(timestamp(now_ms)),
        body: Some(body),
        ..Default::default()
    }
}

/// A statement in `chain` resting on `links`.
fn in_chain(
    actor: &Actor,
    now_ms: i64,
    chain: &str,
    links: Vec<EntryRef>,
    body: Body,
) -> Statement {
    Statement {
        chain_id: chain.into(),
        links,
        ..by(actor, now_ms, body)
    }
}

/// An admin registers `identity` with `public_key`; an NHI or assistant
/// names its accountable human `owner` (a HUMAN names none: "").
pub fn register(
    admin: &Actor,
    identity: &Actor,
    owner: &str,
    public_key: [u8; 32],
    now_ms: i64,
) -> Statement {
    by(
        admin,
        now_ms,
        Body::IdentityRegistration(IdentityRegistration {
            operation: identity_registration::Operation::Register as i32,
            identity: Some(identity.clone()),
            public_key: public_key.to_vec(),
            owner: owner.into(),
            compromised_at: None,
        }),
    )
}

/// `statement` bound to the log whose origin is `origin`.
pub fn for_log(mut statement: Statement, origin: &str) -> Statement {
    statement.log_origin = origin.into();
    statement
}

pub fn publish_policy(
    admin: &Actor,
    policy_id: &str,
    version: u64,
    cedar: &str,
    privileged_approvals: u32,
    now_ms: i64,
) -> Statement {
    by(
        admin,
        now_ms,
        Body::PolicyPublication(PolicyPublication {
            policy_id: policy_id.into(),
            version,
            cedar: cedar.into(),
            privileged_approvals,
            classes: vec![],
        }),
    )
}

/// An admin lets `grantee` decide for `principal` on `system` resources
/// starting with `resource_prefix`, from `from_ms` until `until_ms`.
#[allow(clippy::too_many_arguments)]
pub fn delegate(
    admin: &Actor,
    grantee: &str,
    principal: &str,
    system: &str,
    resource_prefix: &str,
    from_ms: i64,
    until_ms: i64,
    now_ms: i64,
) -> Statement {
    by(
        admin,
        now_ms,
        Body::DelegationGrant(DelegationGrant {
            grantee: grantee.into(),
            principal: principal.into(),
            scope: vec![DelegationScope {
                system: system.into(),
                resource_prefix: resource_prefix.into(),
            }],
            not_before: Some(timestamp(from_ms)),
            not_after: Some(timestamp(until_ms)),
        }),
    )
}

/// `actor` asks for `delta` on `target`, to be executed by `executor`.
pub fn request(
    actor: &Actor,
    chain: &str,
    target: Target,
    delta: EntitlementDelta,
    executor: &str,
    now_ms: i64,
) -> Statement {
    Statement {
        target: Some(target),
        ..in_chain(
            actor,
            now_ms,
            chain,
            vec![],
            Body::AccessRequest(AccessRequest {
                delta: Some(delta),
                justification: String::new(),
                executor: executor.into(),
                ..Default::default()
            }),
        )
    }
}

pub fn recommend(
    actor: &Actor,
    chain: &str,
    links: Vec<EntryRef>,
    delta: EntitlementDelta,
    rationale_digest: [u8; 32],
    now_ms: i64,
) -> Statement {
    in_chain(
        actor,
        now_ms,
        chain,
        links,
        Body::Recommendation(Recommendation {
            proposed_delta: Some(delta),
            rationale_digest: rationale_digest.to_vec(),
        }),
    )
}

/// An approval of exactly `delta` until `expires_ms`.
pub fn approve(
    actor: &Actor,
    chain: &str,
    links: Vec<EntryRef>,
    delta: EntitlementDelta,
    expires_ms: i64,
    now_ms: i64,
) -> Statement {
    in_chain(
        actor,
        now_ms,
        chain,
        links,
        Body::Decision(Decision {
            outcome: decision::Outcome::Approve as i32,
            approved_delta: Some(delta),
            expires_at: Some(timestamp(expires_ms)),
            ..Default::default()
        }),
    )
}

/// The same request or approval, for access lasting `seconds` (rules
/// version 5; 0 asks for permanent access, or approves as requested).
pub fn lasting(mut statement: Statement, seconds: u64) -> Statement {
    match &mut statement.body {
        Some(Body::AccessRequest(r)) => r.access_duration_seconds = seconds,
        Some(Body::Decision(d)) => d.access_duration_seconds = seconds,
        _ => {}
    }
    statement
}

/// The same statement, made on behalf of `principal` under `grant`.
pub fn on_behalf_of(mut statement: Statement, principal: &str, grant: EntryRef) -> Statement {
    statement.on_behalf_of = Some(OnBehalfOf {
        principals: vec![principal.into()],
        delegation: Some(grant),
    });
    statement
}

pub fn intent(
    actor: &Actor,
    chain: &str,
    links: Vec<EntryRef>,
    delta: EntitlementDelta,
    policy: Option<PolicyRef>,
    now_ms: i64,
) -> Statement {
    Statement {
        policy,
        ..in_chain(
            actor,
            now_ms,
            chain,
            links,
            Body::ExecutionIntent(ExecutionIntent { delta: Some(delta) }),
        )
    }
}

pub fn outcome(
    actor: &Actor,
    chain: &str,
    links: Vec<EntryRef>,
    observed_after: Vec<String>,
    change_id: &str,
    now_ms: i64,
) -> Statement {
    in_chain(
        actor,
        now_ms,
        chain,
        links,
        Body::ExecutionOutcome(ExecutionOutcome {
            result: super::proto::execution_outcome::Result::Succeeded as i32,
            observed_before: vec![],
            observed_after,
            change_id: change_id.into(),
        }),
    )
}

pub fn break_glass(
    actor: &Actor,
    chain: &str,
    target: Target,
    delta: EntitlementDelta,
    reason: &str,
    deadline_ms: i64,
    now_ms: i64,
) -> Statement {
    Statement {
        target: Some(target),
        ..in_chain(
            actor,
            now_ms,
            chain,
            vec![],
            Body::BreakGlass(BreakGlass {
                delta: Some(delta),
                reason: reason.into(),
                review_deadline: Some(timestamp(deadline_ms)),
            }),
        )
    }
}

pub fn review(
    actor: &Actor,
    chain: &str,
    links: Vec<EntryRef>,
    ratify: bool,
    now_ms: i64,
) -> Statement {
    let verdict = if ratify {
        review::Verdict::Ratify
    } else {
        review::Verdict::Revoke
    };
    in_chain(
        actor,
        now_ms,
        chain,
        links,
        Body::Review(Review {
            verdict: verdict as i32,
            notes: String::new(),
        }),
    )
}

pub fn revoke(actor: &Actor, revoked: EntryRef, reason: &str, now_ms: i64) -> Statement {
    by(
        actor,
        now_ms,
        Body::Revocation(Revocation {
            revoked: Some(revoked),
            reason: reason.into(),
        }),
    )
}
