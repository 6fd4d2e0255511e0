//! The rules, per statement kind. An `executionIntent` passes rules 1-7
//! (DESIGN.md, "The gate") or is refused naming every rule it broke; a
//! `review` must come from another human.

use std::collections::BTreeSet;

use super::state::{GateState, Recorded};
use super::{IntentFacts, PolicyEngine, Refusal, Rejection, Verdict, DEFAULT_PRIVILEGED_APPROVALS};
use crate::access::entry::proto::{
    decision, entitlement_op, EntitlementDelta, PolicyRef, RuleViolation,
};
use crate::access::entry::{millis, ActorKind, Body, DecodedEntry, Kind};

pub(super) fn check(
    state: &GateState,
    entry: &DecodedEntry,
    linked: &[&Recorded],
    engine: &mut dyn PolicyEngine,
) -> Result<Verdict, Rejection> {
    let st = &entry.statement;
    match entry.kind() {
        Kind::Decision | Kind::Recommendation => {
            let chain = state.chain(&st.chain_id).expect("links resolved");
            if !linked.iter().any(|r| r.index == chain.opener)
                || state.recorded(chain.opener).map(Recorded::kind) != Some(Kind::AccessRequest)
            {
                return Err(Rejection::new(
                    422,
                    "not_on_request",
                    "must link the chain's accessRequest",
                )
                .at("statement.links"));
            }
            Ok(Verdict::Admit)
        }
        Kind::ExecutionOutcome => {
            if !linked
                .iter()
                .any(|r| matches!(r.kind(), Kind::ExecutionIntent | Kind::BreakGlass))
            {
                return Err(Rejection::new(
                    422,
                    "no_intent_linked",
                    "an executionOutcome links the executionIntent or breakGlass it reports on",
                )
                .at("statement.links"));
            }
            Ok(Verdict::Admit)
        }
        Kind::PolicyPublication => {
            let Some(Body::PolicyPublication(p)) = &st.body else {
                unreachable!()
            };
            if let Some(current) = state.policy() {
                if current.policy_id == p.policy_id && p.version <= current.version {
                    return Err(Rejection::new(
                        409,
                        "stale_policy_version",
                        format!(
                            "{} version {} is in force; publish a higher version",
                            current.policy_id, current.version
                        ),
                    )
                    .at("statement.policyPublication.version"));
                }
            }
            engine.compile(p).map_err(|e| {
                Rejection::new(422, "invalid_policy", e).at("statement.policyPublication.cedar")
            })?;
            Ok(Verdict::Admit)
        }
        Kind::Review => Ok(review(state, entry, linked)),
        Kind::ExecutionIntent => Ok(intent(state, entry, linked, engine)),
        _ => Ok(Verdict::Admit),
    }
}

fn violation(rule: u32, code: &str, message: impl Into<String>) -> RuleViolation {
    RuleViolation {
        rule,
        code: code.to_string(),
        message: message.into(),
    }
}

fn verdict(violations: Vec<RuleViolation>, policy: Option<PolicyRef>) -> Verdict {
    if violations.is_empty() {
        Verdict::Admit
    } else {
        Verdict::Refuse(Refusal { violations, policy })
    }
}

/// A review closes a break-glass obligation; only another human may.
fn review(state: &GateState, entry: &DecodedEntry, linked: &[&Recorded]) -> Verdict {
    let st = &entry.statement;
    let reviewer = entry.signed.signer_id.as_str();
    let mut v = Vec::new();
    let Some(bg) = linked.iter().find(|r| r.kind() == Kind::BreakGlass) else {
        return verdict(
            vec![violation(
                0,
                "no_break_glass_linked",
                "a review links the breakGlass it reviews",
            )],
            None,
        );
    };
    let kind = st.actor.as_ref().map_or(0, |a| a.kind);
    if kind != ActorKind::Human as i32 {
        v.push(violation(
            0,
            "review_by_non_human",
            "a break-glass review comes from a HUMAN",
        ));
    }
    if bg.actor_id() == reviewer {
        v.push(violation(
            0,
            "self_review",
            format!("{reviewer} broke the glass and cannot review it"),
        ));
    }
    if state.obligation_of(&st.chain_id).is_none() {
        v.push(violation(
            0,
            "already_reviewed",
            "this break-glass has been reviewed",
        ));
    }
    verdict(v, None)
}

fn delta_of(r: &Recorded) -> Option<&EntitlementDelta> {
    match &r.statement.body {
        Some(Body::AccessRequest(b)) => b.delta.as_ref(),
        Some(Body::Decision(b)) => b.approved_delta.as_ref(),
        Some(Body::ExecutionIntent(b)) => b.delta.as_ref(),
        Some(Body::BreakGlass(b)) => b.delta.as_ref(),
        Some(Body::Recommendation(b)) => b.proposed_delta.as_ref(),
        _ => None,
    }
}

fn ops(delta: &EntitlementDelta, op: entitlement_op::Op) -> Vec<String> {
    delta
        .ops
        .iter()
        .filter(|o| o.op == op as i32)
        .map(|o| o.entitlement.clone())
        .collect()
}

/// Rules 1-7 for an execution intent.
fn intent(
    state: &GateState,
    entry: &DecodedEntry,
    linked: &[&Recorded],
    engine: &mut dyn PolicyEngine,
) -> Verdict {
    let st = &entry.statement;
    let Some(Body::ExecutionIntent(body)) = &st.body else {
        unreachable!()
    };
    let delta = body.delta.as_ref().expect("validated");
    let executor = entry.signed.signer_id.as_str();
    let executor_kind = st.actor.as_ref().map_or(0, |a| a.kind);
    let issued = st.issued_at.as_ref().map_or(0, millis);
    let chain = state.chain(&st.chain_id).expect("links resolved");
    let opener = state.recorded(chain.opener).expect("chains have an opener");
    let target = &chain.target;
    let mut v = Vec::new();

    let break_glass = opener.kind() == Kind::BreakGlass;
    let mut approvers: Vec<&Recorded> = Vec::new();
    if break_glass {
        // An emergency write: no approvals, but the break-glass must be
        // linked and the write must be the declared one.
        if !linked.iter().any(|r| r.index == opener.index) {
            v.push(violation(
                1,
                "break_glass_not_linked",
                "link the chain's breakGlass",
            ));
        }
        if delta_of(opener) != Some(delta) {
            v.push(violation(
                3,
                "delta_mismatch",
                format!(
                    "differs from the delta declared by breakGlass {}",
                    opener.index
                ),
            ));
        }
        if executor != opener.actor_id() {
            v.push(violation(
                2,
                "break_glass_executor",
                format!(
                    "only {}, who broke the glass, executes under it",
                    opener.actor_id()
                ),
            ));
        }
        if let Some(by) = state.used_by(opener.index) {
            v.push(violation(
                4,
                "break_glass_used",
                format!(
                    "break-glass {} already authorised intent {by}",
                    opener.index
                ),
            ));
        }
    } else {
        let requester = opener.actor_id();
        // Rule 1: request -> decision(s) -> intent, all linked.
        if !linked.iter().any(|r| r.index == opener.index) {
            v.push(violation(
                1,
                "request_not_linked",
                format!("link the chain's accessRequest (entry {})", opener.index),
            ));
        }
        for r in linked {
            match &r.statement.body {
                Some(Body::Decision(d)) if d.outcome == decision::Outcome::Approve as i32 => {
                    if !r.statement.links.iter().any(|l| l.index == opener.index) {
                        v.push(violation(
                            1,
                            "decision_not_on_request",
                            format!("decision {} does not link the request", r.index),
                        ));
                    }
                    approvers.push(r);
                }
                Some(Body::Decision(_)) => v.push(violation(
                    1,
                    "denied",
                    format!("decision {} denies the request", r.index),
                )),
                Some(Body::Recommendation(_)) => v.push(violation(
                    2,
                    "recommendation_as_approval",
                    format!("entry {} is a recommendation, never an approval", r.index),
                )),
                _ => {}
            }
        }
        if approvers.is_empty() {
            v.push(violation(
                1,
                "no_approval",
                "link at least one approving decision",
            ));
        }
        // Rule 2: distinct actors; no assistant approves.
        if executor == requester {
            v.push(violation(
                2,
                "executor_is_requester",
                format!("{executor} requested this change and cannot execute it"),
            ));
        }
        for a in &approvers {
            let who = a.actor_id();
            if a.actor_kind() == ActorKind::Assistant {
                v.push(violation(
                    2,
                    "assistant_approval",
                    format!("{who} is an ASSISTANT; assistants never fill an approval slot"),
                ));
            }
            if who == requester {
                v.push(violation(
                    2,
                    "self_approval",
                    format!("{who} approved their own request"),
                ));
            }
            if who == executor {
                v.push(violation(
                    2,
                    "approver_executes",
                    format!("{who} approved and executes"),
                ));
            }
        }
        for a in &approvers {
            // Rule 3: exactly the approved delta.
            if delta_of(a) != Some(delta) {
                v.push(violation(
                    3,
                    "delta_mismatch",
                    format!("differs from the delta approved by decision {}", a.index),
                ));
            }
            // Rule 4: unexpired, unrevoked.
            let Some(Body::Decision(d)) = &a.statement.body else {
                unreachable!()
            };
            let expires = d.expires_at.as_ref().map_or(0, millis);
            if issued > expires {
                v.push(violation(
                    4,
                    "approval_expired",
                    format!(
                        "decision {} expired {} ms before the intent",
                        a.index,
                        issued.saturating_sub(expires)
                    ),
                ));
            }
            if let Some(by) = state.used_by(a.index) {
                v.push(violation(
                    4,
                    "approval_used",
                    format!("decision {} already authorised intent {by}", a.index),
                ));
            }
            if state.is_revoked(a.index) {
                v.push(violation(
                    4,
                    "approval_revoked",
                    format!("decision {} was revoked", a.index),
                ));
            }
            // Rule 6: delegated authority rests on a valid grant.
            if let Some(obo) = &a.statement.on_behalf_of {
                delegation(state, a, obo, target, &mut v);
            }
        }
        // Rule 5: the two-person rule for privileged and high-risk changes.
        let adds = !ops(delta, entitlement_op::Op::Add).is_empty();
        let removes = !ops(delta, entitlement_op::Op::Remove).is_empty();
        if (adds && delta.privileged) || (removes && delta.high_risk) {
            let needed = state
                .policy()
                .map(|p| p.privileged_approvals)
                .filter(|n| *n > 0)
                .unwrap_or(DEFAULT_PRIVILEGED_APPROVALS);
            let humans = human_approvers(&approvers, requester, executor).len();
            if humans < needed as usize {
                v.push(violation(
                    5,
                    "insufficient_human_approvals",
                    format!(
                        "a privileged increase or high-risk removal needs {needed} distinct human approvals; it has {humans}"
                    ),
                ));
            }
        }
    }

    // Rule 7: the organisation's policy.
    let in_force = state.policy().map(|p| PolicyRef {
        policy_id: p.policy_id.clone(),
        version: p.version,
    });
    if st.policy != in_force {
        v.push(violation(
            7,
            "policy_mismatch",
            match &in_force {
                Some(p) => format!(
                    "the policy in force is {} version {}; name it in statement.policy",
                    p.policy_id, p.version
                ),
                None => "no policy is published; leave statement.policy empty".to_string(),
            },
        ));
    } else if let Some(policy) = state.policy() {
        let requester = if break_glass { "" } else { opener.actor_id() };
        let humans = human_approvers(&approvers, requester, executor);
        let facts = IntentFacts {
            chain_id: st.chain_id.clone(),
            executor: executor.to_string(),
            executor_kind: ActorKind::try_from(executor_kind)
                .map_or("", |k| k.as_str_name())
                .to_string(),
            requester: opener.actor_id().to_string(),
            approvers: approvers.iter().map(|a| a.actor_id().to_string()).collect(),
            human_approvals: humans.len() as i64,
            system: target.system.clone(),
            resource: target.resource.clone(),
            subject: target.subject.clone(),
            adds: ops(delta, entitlement_op::Op::Add),
            removes: ops(delta, entitlement_op::Op::Remove),
            privileged: delta.privileged,
            high_risk: delta.high_risk,
            break_glass,
            recommended: chain.entries.iter().any(|i| {
                state
                    .recorded(*i)
                    .is_some_and(|r| r.kind() == Kind::Recommendation)
            }),
        };
        match engine.allows(policy, &facts) {
            Ok(true) => {}
            Ok(false) => v.push(violation(
                7,
                "policy_denies",
                format!(
                    "{} version {} does not permit this execution",
                    policy.policy_id, policy.version
                ),
            )),
            Err(e) => v.push(violation(7, "policy_error", e)),
        }
    }
    verdict(v, in_force)
}

/// Distinct HUMAN approvers who are neither the requester nor the executor.
fn human_approvers<'a>(
    approvers: &[&'a Recorded],
    requester: &str,
    executor: &str,
) -> BTreeSet<&'a str> {
    approvers
        .iter()
        .filter(|a| a.actor_kind() == ActorKind::Human)
        .map(|a| a.actor_id())
        .filter(|id| *id != requester && *id != executor)
        .collect()
}

/// Rule 6 for one approval made on behalf of `obo.principals`.
fn delegation(
    state: &GateState,
    approval: &Recorded,
    obo: &crate::access::entry::proto::OnBehalfOf,
    target: &crate::access::entry::proto::Target,
    v: &mut Vec<RuleViolation>,
) {
    let d = obo.delegation.as_ref().expect("validated");
    let Some(grant_rec) = state.recorded(d.index) else {
        v.push(violation(
            6,
            "delegation_missing",
            format!("no delegation grant {}", d.index),
        ));
        return;
    };
    let Some(Body::DelegationGrant(g)) = &grant_rec.statement.body else {
        v.push(violation(
            6,
            "delegation_missing",
            format!("entry {} is not a delegation grant", d.index),
        ));
        return;
    };
    let who = approval.actor_id();
    let n = approval.index;
    if g.grantee != who {
        v.push(violation(
            6,
            "delegation_not_for_approver",
            format!("grant {} is for {}, not {who}", d.index, g.grantee),
        ));
    }
    if !obo.principals.contains(&g.principal) {
        v.push(violation(
            6,
            "delegation_wrong_principal",
            format!("grant {} is on behalf of {}", d.index, g.principal),
        ));
    }
    let covered = g
        .scope
        .iter()
        .any(|s| s.system == target.system && target.resource.starts_with(&s.resource_prefix));
    if !covered {
        v.push(violation(
            6,
            "delegation_out_of_scope",
            format!(
                "grant {} does not cover {}/{}",
                d.index, target.system, target.resource
            ),
        ));
    }
    let at = approval.issued_ms();
    let from = g.not_before.as_ref().map_or(0, millis);
    let until = g.not_after.as_ref().map_or(0, millis);
    if at < from || at > until {
        v.push(violation(
            6,
            "delegation_not_valid",
            format!("grant {} was not valid when decision {n} was made", d.index),
        ));
    }
    if state.is_revoked(d.index) {
        v.push(violation(
            6,
            "delegation_revoked",
            format!("grant {} was revoked", d.index),
        ));
    }
}
