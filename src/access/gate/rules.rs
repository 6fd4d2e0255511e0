//! The rules, per statement kind. An `executionIntent` passes rules 1-7
//! (and 8 under rules version 2; see the module docs) or is refused
//! naming every rule it broke; a `review` must come from another human.

use std::collections::BTreeSet;

use super::classes::{ms as seconds_ms, ops, requirements, requirements_flagged};
use super::state::{delta_of, ExtensionApproval, GateState, Grant, ObligationKind, Recorded};
use super::{IntentFacts, PolicyEngine, Refusal, Rejection, Verdict, DEFAULT_PRIVILEGED_APPROVALS};
use crate::access::entry::proto::{
    decision, entitlement_op, EntitlementDelta, PolicyRef, RuleViolation,
};
use crate::access::entry::{millis, ActorKind, Body, DecodedEntry, Kind, Statement};

/// The log's own records: where they may stand.
pub(super) fn log_record(
    state: &GateState,
    index: u64,
    entry: &DecodedEntry,
) -> Result<Verdict, Rejection> {
    let st = &entry.statement;
    match &st.body {
        Some(Body::LogParameters(p)) => {
            // A log records its parameters first, and again only to move
            // to a later rules version (keeping its origin).
            let upgrade = state.params().index.is_none()
                || (p.rules_version > state.rules_version()
                    && p.log_origin == state.params().origin);
            if index != 0 && !upgrade {
                return Err(Rejection::new(
                    409,
                    "parameters_fixed",
                    "a log records its parameters once: first, or when it moves to a later rules version",
                ));
            }
            // A move to a later version changes the rules, never who
            // administers the log: that takes an adminSetChange (M of N).
            if state.params().index.is_some() {
                let mut now: Vec<String> = state.admins().map(|a| a.to_vkey()).collect();
                let mut named = p.admin_keys.clone();
                now.sort();
                named.sort();
                if now != named || p.admin_threshold.max(1) != state.params().admin_threshold {
                    return Err(Rejection::new(
                        409,
                        "admins_changed",
                        "a rules-version upgrade keeps the admin set and threshold the log has recorded",
                    ));
                }
            }
            if !(2..=super::RULES_VERSION).contains(&p.rules_version) {
                return Err(Rejection::new(
                    422,
                    "unknown_rules_version",
                    format!(
                        "rules version {} is not one this gate knows (2 to {})",
                        p.rules_version,
                        super::RULES_VERSION
                    ),
                ));
            }
            if p.admin_keys.is_empty() || p.admin_threshold as usize > p.admin_keys.len() {
                return Err(Rejection::new(
                    422,
                    "bad_admin_set",
                    "name at least one admin and a threshold no larger than the set",
                ));
            }
            Ok(Verdict::Admit)
        }
        Some(Body::LogTime(_)) => {
            if state.rules_version() < 2 {
                return Err(Rejection::new(
                    422,
                    "log_time_before_parameters",
                    "the log's clock starts with rules version 2",
                ));
            }
            let t =
                crate::access::entry::validate::time(st.issued_at.as_ref(), "statement.issuedAt")
                    .map_err(|e| Rejection::new(422, "invalid_log_time", e.message).at(e.field))?;
            match state.log_time() {
                Some(before) if t < before => Err(Rejection::new(
                    422,
                    "log_time_backwards",
                    format!("the log's time went back {} ms", before.saturating_sub(t)),
                )),
                _ => Ok(Verdict::Admit),
            }
        }
        _ => Ok(Verdict::Admit),
    }
}

/// Rules version 2 for every statement: it names this log, and its time
/// is within the skew of the log's.
pub(super) fn bound_to_log(state: &GateState, entry: &DecodedEntry) -> Result<(), Rejection> {
    let st = &entry.statement;
    let params = state.params();
    if st.log_origin != params.origin {
        return Err(Rejection::new(
            403,
            "wrong_log",
            format!(
                "this statement is for log {:?}; this log is {:?}",
                st.log_origin, params.origin
            ),
        )
        .at("statement.logOrigin"));
    }
    let Some(now) = state.log_time() else {
        return Err(Rejection::new(
            422,
            "no_log_time",
            "the log has not recorded its time before this entry",
        ));
    };
    let issued = st.issued_at.as_ref().map_or(0, millis);
    let off = issued.saturating_sub(now);
    if off.saturating_abs() > params.max_clock_skew_ms {
        return Err(Rejection::new(
            422,
            "clock_skew",
            format!(
                "issuedAt is {} ms {} the log's time; at most {} ms is allowed",
                off.saturating_abs(),
                if off > 0 { "after" } else { "before" },
                params.max_clock_skew_ms
            ),
        )
        .at("statement.issuedAt"));
    }
    Ok(())
}

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
            let grant = state
                .grant_of(&st.chain_id)
                .filter(|g| linked.iter().any(|r| r.index == g.outcome));
            if let (Some(grant), Kind::Decision, 5..) = (grant, entry.kind(), state.rules_version())
            {
                return Ok(extension(state, entry, chain.opener, grant, engine));
            }
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
            if state.rules_version() >= 2 && entry.kind() == Kind::Decision {
                return Ok(verdict(decision_v2(state, entry, chain.opener), None));
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
            if state.rules_version() >= 2 {
                return Ok(outcome_v2(entry, linked, state));
            }
            Ok(Verdict::Admit)
        }
        Kind::AccessRequest if state.rules_version() >= 2 => {
            let Some(Body::AccessRequest(r)) = &st.body else {
                unreachable!()
            };
            let field = "statement.accessRequest.executor";
            if r.executor.is_empty() {
                return Err(Rejection::new(
                    422,
                    "executor_required",
                    "a request names the identity that will execute it",
                )
                .at(field));
            }
            if state.kind_of(&r.executor).is_none() {
                return Err(Rejection::new(
                    422,
                    "unknown_executor",
                    format!("{:?} is not a registered identity", r.executor),
                )
                .at(field));
            }
            // Rules 10 and 11, once nothing rejects the request outright.
            let system = st.target.as_ref().map_or("", |t| t.system.as_str());
            let need = requirements(state.policy(), system, r.delta.as_ref().expect("validated"));
            let mut v = Vec::new();
            if state.rules_version() >= 4 && need.ticket && r.tickets.is_empty() {
                v.push(violation(
                    10,
                    "ticket_required",
                    "the policy requires a change ticket for this change: name one in tickets",
                ));
            }
            if state.rules_version() >= 5 {
                let asked =
                    (r.access_duration_seconds > 0).then(|| seconds_ms(r.access_duration_seconds));
                v.extend(duration_violation(asked, need.max_access_duration_ms));
            }
            let in_force = (!v.is_empty()).then(|| policy_in_force(state)).flatten();
            Ok(verdict(v, in_force))
        }
        Kind::BreakGlass if state.rules_version() >= 2 => {
            let Some(Body::BreakGlass(b)) = &st.body else {
                unreachable!()
            };
            let system = st.target.as_ref().map_or("", |t| t.system.as_str());
            let need = requirements(state.policy(), system, b.delta.as_ref().expect("validated"));
            let deadline = b.review_deadline.as_ref().map_or(0, millis);
            let window = deadline.saturating_sub(state.time_of(st));
            if window > need.max_review_window_ms {
                return Ok(verdict(
                    vec![violation(
                        9,
                        "review_window",
                        format!(
                            "the review deadline is {} s away; the policy allows at most {} s",
                            window / 1000,
                            need.max_review_window_ms / 1000
                        ),
                    )],
                    None,
                ));
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
        Kind::ReviewCampaign => {
            let Some(Body::ReviewCampaign(c)) = &st.body else {
                unreachable!()
            };
            let field = "statement.reviewCampaign";
            // Rules version 7 reads the subject prefix (an earlier release
            // never saw the field, so never bounded it).
            if state.rules_version() >= 7 && c.subject_prefix.len() > super::limits::MAX_NAME_BYTES
            {
                return Err(Rejection::new(
                    422,
                    "too_long",
                    format!(
                        "{} bytes; a name is at most {}",
                        c.subject_prefix.len(),
                        super::limits::MAX_NAME_BYTES
                    ),
                )
                .at(format!("{field}.subjectPrefix")));
            }
            if state.campaign_named(&c.campaign_id) {
                return Err(Rejection::new(
                    409,
                    "campaign_exists",
                    format!("a campaign {:?} is in the log already", c.campaign_id),
                )
                .at(format!("{field}.campaignId")));
            }
            let now = state.time_of(st);
            if c.deadline.as_ref().map_or(0, millis) <= now {
                return Err(Rejection::new(
                    422,
                    "deadline_passed",
                    "the deadline must be after the log's time",
                )
                .at(format!("{field}.deadline")));
            }
            if state.open_campaigns() >= super::limits::MAX_OPEN_CAMPAIGNS {
                return Err(Rejection::new(
                    409,
                    "too_many_campaigns",
                    format!(
                        "{} campaigns are open; at most {}",
                        state.open_campaigns(),
                        super::limits::MAX_OPEN_CAMPAIGNS
                    ),
                ));
            }
            let grants = state.grants_in_scope(c, now);
            if grants > super::limits::MAX_CAMPAIGN_GRANTS {
                return Err(Rejection::new(
                    422,
                    "campaign_too_large",
                    format!(
                        "{grants} grants are in this scope; a campaign reviews at most {}: narrow it (system, resourcePrefix, subjectPrefix)",
                        super::limits::MAX_CAMPAIGN_GRANTS
                    ),
                )
                .at(format!("{field}.resourcePrefix")));
            }
            let mut seen = std::collections::HashSet::new();
            if let Some((i, who)) = c.reviewers.iter().enumerate().find(|(_, who)| {
                state.kind_of(who) != Some(ActorKind::Human)
                    || state.is_admin(who)
                    || !seen.insert(who.as_str())
            }) {
                return Err(Rejection::new(
                    422,
                    "unknown_reviewer",
                    format!("{who:?} is not a registered HUMAN (an admin key reviews nothing), or is named twice"),
                )
                .at(format!("{field}.reviewers[{i}]")));
            }
            Ok(Verdict::Admit)
        }
        Kind::Certification => certification(state, entry),
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
    let v2 = state.rules_version() >= 2;
    // Under rules version 2, the person behind the breaker neither.
    let same = if v2 {
        state.person_of(bg.actor_id()) == state.person_of(reviewer)
    } else {
        bg.actor_id() == reviewer
    };
    if same {
        v.push(violation(
            0,
            "self_review",
            format!("{reviewer} broke the glass and cannot review it"),
        ));
    }
    let open = state
        .obligation_of(&st.chain_id)
        .filter(|o| !v2 || o.kind == ObligationKind::Review);
    if open.is_none() {
        v.push(violation(
            0,
            "already_reviewed",
            "this break-glass has been reviewed",
        ));
    }
    if v2 && state.used_by(bg.index).is_none() {
        v.push(violation(
            0,
            "review_before_execution",
            "a review follows the execution it reviews",
        ));
    }
    // Nor does whoever gained the access (or answers for them).
    let subject = state
        .chain(&st.chain_id)
        .map_or("", |c| c.target.subject.as_str());
    if v2 && (reviewer == subject || state.person_of(reviewer) == state.person_of(subject)) {
        v.push(violation(
            0,
            "review_by_subject",
            format!("{reviewer} gained the access under review (or answers for who did)"),
        ));
    }
    verdict(v, None)
}

/// Rules version 5: a certification decides one grant of a campaign's
/// snapshot: by an eligible reviewer, a HUMAN who neither holds nor
/// granted it (compared as people), once, before the deadline.
fn certification(state: &GateState, entry: &DecodedEntry) -> Result<Verdict, Rejection> {
    let st = &entry.statement;
    let Some(Body::Certification(c)) = &st.body else {
        unreachable!()
    };
    let field = "statement.certification";
    let campaign_ref = c.campaign.as_ref().expect("validated");
    let campaign = state
        .campaign(campaign_ref.index)
        .filter(|k| k.leaf_hash.as_slice() == campaign_ref.leaf_hash.as_slice())
        .ok_or_else(|| {
            Rejection::new(
                422,
                "absent_link",
                format!(
                    "entry {} is not a review campaign of this log",
                    campaign_ref.index
                ),
            )
            .at(format!("{field}.campaign"))
        })?;
    let grant_ref = c.grant.as_ref().expect("validated");
    let item = campaign
        .items
        .get(&grant_ref.index)
        .filter(|i| i.leaf_hash.as_slice() == grant_ref.leaf_hash.as_slice())
        .ok_or_else(|| {
            Rejection::new(
                422,
                "not_in_campaign",
                format!(
                    "entry {} is not the outcome of a grant campaign {:?} reviews",
                    grant_ref.index, campaign.campaign_id
                ),
            )
            .at(format!("{field}.grant"))
        })?;
    let who = entry.signed.signer_id.as_str();
    let person = state.person_of(who);
    let mut v = Vec::new();
    if !campaign.reviewers.iter().any(|r| r == who) {
        v.push(violation(
            12,
            "not_a_reviewer",
            format!(
                "{who} is not a reviewer of campaign {:?}",
                campaign.campaign_id
            ),
        ));
    }
    if state.kind_of(who) != Some(ActorKind::Human) {
        v.push(violation(
            12,
            "certification_by_non_human",
            format!("{who} is not a HUMAN: an assistant may recommend, never certify"),
        ));
    }
    if person == state.person_of(&item.subject) {
        v.push(violation(
            12,
            "self_certification",
            format!("{who} holds this access (or answers for who does)"),
        ));
    }
    // Who granted it when the campaign opened, and who has extended it
    // since.
    let now_granting: Vec<&str> = state
        .grant_by_outcome(grant_ref.index)
        .map(|(opener, _)| state.grant_revokers(opener))
        .unwrap_or_default();
    let granted = item.granters.iter().map(String::as_str).chain(now_granting);
    if granted.into_iter().any(|g| state.person_of(g) == person) {
        v.push(violation(
            12,
            "granter_certifies",
            format!("{who} requested, approved or executed this grant (or answers for who did)"),
        ));
    }
    if let Some((_, by, at)) = &item.decision {
        v.push(violation(
            12,
            "already_certified",
            format!("{by} certified this grant at entry {at}"),
        ));
    }
    if campaign.closed || state.time_of(st) > campaign.deadline_ms {
        v.push(violation(
            12,
            "campaign_closed",
            format!(
                "campaign {:?} closed at {}",
                campaign.campaign_id,
                crate::access::entry::rfc3339(campaign.deadline_ms)
            ),
        ));
    }
    Ok(verdict(v, None))
}

/// Rules version 5: an approval that links a grant's outcome extends the
/// grant, under the rules of the first approval (who may decide, how long
/// it may last), while the grant is in force; it must say for how long.
/// Version 7: the approval that completes it must be permitted by the
/// policy in force, as the first grant was.
fn extension(
    state: &GateState,
    entry: &DecodedEntry,
    opener: u64,
    grant: &Grant,
    engine: &mut dyn PolicyEngine,
) -> Verdict {
    let st = &entry.statement;
    let Some(Body::Decision(d)) = &st.body else {
        unreachable!()
    };
    if d.outcome != decision::Outcome::Approve as i32 {
        return verdict(
            vec![violation(
                11,
                "deny_on_grant",
                "a DENY decides a request; end a grant early with a revocation of its outcome",
            )],
            None,
        );
    }
    let mut v = decision_v2(state, entry, opener);
    // The grant's own entitlements bound how long it may run (an approval
    // of a narrower delta must not lift the maximum).
    let need = requirements(state.policy(), &grant.target.system, &grant.held_delta());
    if d.access_duration_seconds > 0 && !v.iter().any(|x| x.code == "access_duration") {
        v.extend(duration_violation(
            Some(seconds_ms(d.access_duration_seconds)),
            need.max_access_duration_ms,
        ));
    }
    if grant.ends().is_none() {
        v.push(violation(
            11,
            "grant_permanent",
            format!(
                "the grant of entry {} is permanent: it needs no extension",
                grant.outcome
            ),
        ));
    }
    if !grant.in_force(state.time_of(st)) {
        v.push(violation(
            11,
            "grant_ended",
            format!(
                "the grant of entry {} has ended; open a new request",
                grant.outcome
            ),
        ));
    }
    if d.access_duration_seconds == 0 {
        v.push(violation(
            11,
            "extension_duration",
            "an extension says how long the access lasts from now: accessDurationSeconds",
        ));
    }
    // (A refusal names the policy when the policy judged it.)
    let mut judged_by = None;
    if state.rules_version() >= 7 {
        if let Some(violation) = extension_policy(state, entry, opener, grant, engine) {
            judged_by = policy_in_force(state);
            v.extend(violation);
        }
    }
    verdict(v, judged_by)
}

/// Rules version 7, rule 7 for the approval that completes an extension:
/// the policy in force judges it as an execution that adds what the grant
/// holds, by the request's executor, approved by who extends it
/// (`context.extension` true). An approval the extension still waits on
/// is not judged: the policy may ask for more approvers than it has.
/// `None`: not judged; else the policy's answer. (A grant rests on an
/// intent the policy allowed, and a policy is never withdrawn, so a
/// grant being extended always has one.)
fn extension_policy(
    state: &GateState,
    entry: &DecodedEntry,
    opener: u64,
    grant: &Grant,
    engine: &mut dyn PolicyEngine,
) -> Option<Option<RuleViolation>> {
    let policy = state.policy()?;
    let st = &entry.statement;
    let Some(Body::Decision(d)) = &st.body else {
        unreachable!()
    };
    let who = entry.signed.signer_id.as_str();
    let approval = ExtensionApproval {
        decision: u64::MAX,
        person: state.person_of(who).into(),
        duration_ms: 0,
        expires_ms: d.expires_at.as_ref().map_or(0, millis),
        privileged: d.approved_delta.as_ref().is_some_and(|d| d.privileged),
    };
    let approvals = state.extension_with(grant, approval, state.time_of(st));
    if !state.extension_stands(grant, &approvals) {
        return None;
    }
    let request = state.recorded(opener)?;
    let request_statement = state.statement(request);
    let Some(Body::AccessRequest(r)) = &request_statement.body else {
        return None;
    };
    let held = grant.held_delta();
    let flagged = grant.privileged || approvals.iter().any(|a| a.privileged);
    let need = requirements_flagged(Some(policy), &grant.target.system, &held, flagged, false);
    let (tickets, ticket_systems) = ticket_facts(state, &request_statement);
    let approvers = approvals
        .iter()
        .map(|a| {
            state
                .recorded(a.decision)
                .map_or(who, Recorded::actor_id)
                .to_string()
        })
        .collect();
    let people: BTreeSet<&str> = approvals.iter().map(|a| &*a.person).collect();
    let facts = IntentFacts {
        chain_id: st.chain_id.clone(),
        executor: r.executor.clone(),
        executor_kind: state
            .kind_of(&r.executor)
            .map_or("", |k| k.as_str_name())
            .to_string(),
        requester: request.actor_id().to_string(),
        approvers,
        human_approvals: people.len() as i64,
        system: grant.target.system.clone(),
        resource: grant.target.resource.clone(),
        subject: grant.target.subject.clone(),
        adds: grant.entitlements.clone(),
        removes: vec![],
        privileged: need.privileged,
        high_risk: false,
        break_glass: false,
        recommended: recommended(state, &st.chain_id),
        tickets,
        ticket_systems,
        extension: Some(true),
    };
    Some(judge(engine, policy, &facts, "this extension"))
}

/// Rule 7's answer for `facts`: a violation unless `policy` permits
/// `what`.
fn judge(
    engine: &mut dyn PolicyEngine,
    policy: &crate::access::entry::proto::PolicyPublication,
    facts: &IntentFacts,
    what: &str,
) -> Option<RuleViolation> {
    match engine.allows(policy, facts) {
        Ok(true) => None,
        Ok(false) => Some(violation(
            7,
            "policy_denies",
            format!(
                "{} version {} does not permit {what}",
                policy.policy_id, policy.version
            ),
        )),
        Err(e) => Some(violation(7, "policy_error", e)),
    }
}

/// A request's change tickets for the policy, as `system:id` and their
/// systems (rules version 4: before it, tickets are not read).
fn ticket_facts(state: &GateState, request: &Statement) -> (Vec<String>, Vec<String>) {
    let tickets = match &request.body {
        Some(Body::AccessRequest(r)) if state.rules_version() >= 4 => r.tickets.as_slice(),
        _ => &[],
    };
    (
        tickets
            .iter()
            .map(|t| format!("{}:{}", t.system, t.id))
            .collect(),
        tickets.iter().map(|t| t.system.clone()).collect(),
    )
}

/// Whether an assistant recommended in chain `chain_id`.
fn recommended(state: &GateState, chain_id: &str) -> bool {
    state.chain(chain_id).is_some_and(|chain| {
        chain.entries.iter().any(|i| {
            state
                .recorded(*i)
                .is_some_and(|r| r.kind() == Kind::Recommendation)
        })
    })
}

/// How long a grant runs, in words.
fn runs(g: &Grant) -> String {
    match g.ends() {
        Some(end) => format!("runs until {}", crate::access::entry::rfc3339(end)),
        None => "is permanent".into(),
    }
}

/// Rule 11's check of a duration (`None`: permanent) against the
/// policy's maximum for what is added (`None`: no maximum).
fn duration_violation(duration_ms: Option<i64>, max_ms: Option<i64>) -> Option<RuleViolation> {
    let max = max_ms?;
    let message = match duration_ms {
        None => format!(
            "the policy allows this access for at most {} s; permanent access is not allowed: set accessDurationSeconds",
            max / 1000
        ),
        Some(d) if d > max => format!(
            "the access would last {} s; the policy allows at most {} s",
            d / 1000,
            max / 1000
        ),
        Some(_) => return None,
    };
    Some(violation(11, "access_duration", message))
}

fn policy_in_force(state: &GateState) -> Option<PolicyRef> {
    state.policy().map(|p| PolicyRef {
        policy_id: p.policy_id.clone(),
        version: p.version,
    })
}

/// Rules version 2 for a decision, when it is made: only a person who may
/// approve decides (a DENY too: an ineligible DENY would be a veto anyone
/// could cast), and an approval is within the request and its lifetime
/// (and, version 5, the access it approves within the policy's maximum).
fn decision_v2(state: &GateState, entry: &DecodedEntry, opener: u64) -> Vec<RuleViolation> {
    let st = &entry.statement;
    let Some(Body::Decision(d)) = &st.body else {
        unreachable!()
    };
    let request = state.recorded(opener).expect("chains have an opener");
    let request_statement = state.statement(request);
    let Some(Body::AccessRequest(req)) = &request_statement.body else {
        unreachable!("decisions rest on requests")
    };
    let who = entry.signed.signer_id.as_str();
    let person = state.person_of(who);
    let subject = state
        .chain(&st.chain_id)
        .map_or("", |c| c.target.subject.as_str());
    let mut v = Vec::new();
    if state.kind_of(who) != Some(ActorKind::Human) {
        v.push(violation(
            2,
            "approval_by_non_human",
            format!("{who} is not a HUMAN; only humans decide"),
        ));
    }
    if person == state.person_of(request.actor_id()) {
        v.push(violation(
            2,
            "self_approval",
            format!("{who} requested this change (or answers for who did)"),
        ));
    }
    if who == subject || person == state.person_of(subject) {
        v.push(violation(
            2,
            "subject_approves",
            format!("{who} gains the access (or answers for who does)"),
        ));
    }
    if !req.executor.is_empty() && person == state.person_of(&req.executor) {
        v.push(violation(
            2,
            "approver_executes",
            format!("{who} is (or answers for) the executor {}", req.executor),
        ));
    }
    if d.outcome == decision::Outcome::Approve as i32 {
        let approved = d.approved_delta.as_ref().expect("validated");
        let requested = req.delta.as_ref().expect("validated");
        if !within(approved, requested) {
            v.push(violation(
                3,
                "approval_exceeds_request",
                format!(
                    "approves more than request {} asked for (same before, a subset of its operations)",
                    request.index
                ),
            ));
        }
        // The chain's target (a decision may leave its own out).
        let system = state
            .chain(&st.chain_id)
            .map_or("", |c| c.target.system.as_str());
        let need = requirements(state.policy(), system, approved);
        let lasts = d
            .expires_at
            .as_ref()
            .map_or(0, millis)
            .saturating_sub(state.time_of(st));
        if lasts > need.max_approval_lifetime_ms {
            v.push(violation(
                4,
                "approval_lifetime",
                format!(
                    "the approval lasts {} s; the policy allows at most {} s",
                    lasts / 1000,
                    need.max_approval_lifetime_ms / 1000
                ),
            ));
        }
        // A duration above the maximum; none says "as requested", which
        // the request's own check bounds.
        if state.rules_version() >= 5 && d.access_duration_seconds > 0 {
            v.extend(duration_violation(
                Some(seconds_ms(d.access_duration_seconds)),
                need.max_access_duration_ms,
            ));
        }
    }
    v
}

/// Rules version 2 for an outcome: only the intent's executor reports it,
/// once, and only on an intent (a break-glass is reported through one).
fn outcome_v2(entry: &DecodedEntry, linked: &[&Recorded], state: &GateState) -> Verdict {
    let who = entry.signed.signer_id.as_str();
    let Some(intent) = linked.iter().find(|r| r.kind() == Kind::ExecutionIntent) else {
        return verdict(
            vec![violation(
                8,
                "outcome_without_intent",
                "an outcome reports on the executionIntent it links",
            )],
            None,
        );
    };
    let mut v = Vec::new();
    if intent.actor_id() != who {
        v.push(violation(
            8,
            "not_the_executor",
            format!(
                "only {}, who declared intent {}, reports its outcome",
                intent.actor_id(),
                intent.index
            ),
        ));
    }
    if state.is_reported(intent.index) {
        v.push(violation(
            8,
            "outcome_reported",
            format!(
                "the outcome of intent {} is already in the log",
                intent.index
            ),
        ));
    }
    verdict(v, None)
}

// Deltas compare as sets. Validation guarantees that no list of a delta
// holds an entitlement twice and no operation repeats, so equal lengths
// and containment are set equality; these few-element scans allocate
// nothing (every intent compares against each approval: measured, the
// BTreeSet version was a visible share of the audit's time).

/// `narrow` is `wide` or narrower: the same `before`, and a subset of its
/// operations (sets, not lists).
pub fn within(narrow: &EntitlementDelta, wide: &EntitlementDelta) -> bool {
    same_set(&narrow.before, &wide.before) && narrow.ops.iter().all(|o| wide.ops.contains(o))
}

/// The same change, as sets.
fn same_delta(a: &EntitlementDelta, b: &EntitlementDelta) -> bool {
    same_set(&a.before, &b.before)
        && same_set(&a.after, &b.after)
        && a.ops.len() == b.ops.len()
        && a.ops.iter().all(|o| b.ops.contains(o))
}

fn same_set(a: &[String], b: &[String]) -> bool {
    a.len() == b.len() && a.iter().all(|x| b.contains(x))
}

/// `delta` only removes, and removes exactly `entitlements`.
fn removes_exactly(delta: &EntitlementDelta, entitlements: &[String]) -> bool {
    delta.ops.len() == entitlements.len()
        && delta.ops.iter().all(|o| {
            o.op == entitlement_op::Op::Remove as i32 && entitlements.contains(&o.entitlement)
        })
}

/// `undo` takes `d`'s `after` back to its `before`, each operation
/// reversed.
fn undoes(undo: &EntitlementDelta, d: &EntitlementDelta) -> bool {
    same_set(&undo.before, &d.after)
        && same_set(&undo.after, &d.before)
        && undo.ops.len() == d.ops.len()
        && undo.ops.iter().all(|u| {
            d.ops
                .iter()
                .any(|o| o.entitlement == u.entitlement && o.op != u.op)
        })
}

/// Rules 1-7 (and 8 under rules version 2) for an execution intent.
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
    // When the rules judge it: the log's time under version 2, else the
    // intent's own (bounded) issuedAt.
    let now = state.time_of(st);
    let v2 = state.rules_version() >= 2;
    let chain = state.chain(&st.chain_id).expect("links resolved");
    let opener = state.recorded(chain.opener).expect("chains have an opener");
    let target = &chain.target;
    let mut v = Vec::new();
    let same = |a: &EntitlementDelta, b: &EntitlementDelta| {
        if v2 {
            same_delta(a, b)
        } else {
            a == b
        }
    };
    // Version 2 compares people: an NHI or assistant stands for its owner.
    let person = |id| person(state, v2, id);

    let break_glass = opener.kind() == Kind::BreakGlass;
    let undo = state
        .obligation_of(&st.chain_id)
        .filter(|o| v2 && o.kind == ObligationKind::Undo);
    let v5 = state.rules_version() >= 5;
    // Version 5: in a chain holding a grant, an intent removes it.
    let removal = state.grant_of(&st.chain_id).filter(|_| v5);
    let mut approvers: Vec<&Recorded> = Vec::new();
    // The request's and approvals' flags count too: a flag may raise the
    // approvals needed, and clearing it later must not lower them.
    let (privileged, high_risk) = state.chain_flags(
        delta,
        std::iter::once(opener).chain(linked.iter().copied()),
    );
    let mut need =
        requirements_flagged(state.policy(), &target.system, delta, privileged, high_risk);
    if let Some(o) = undo {
        // Undoing a revoked break-glass: no approval, exempt from rule 5,
        // by anyone but the reviewer who revoked it or an assistant.
        need.approvals = 0;
        if !linked.iter().any(|r| r.index == o.opened_by) {
            v.push(violation(
                1,
                "undo_not_linked",
                format!("link review {}, which opened the undo", o.opened_by),
            ));
        }
        if !delta_of(&state.statement(opener)).is_some_and(|d| undoes(delta, d)) {
            v.push(violation(
                3,
                "not_an_undo",
                format!(
                    "must undo exactly the change of breakGlass {}",
                    opener.index
                ),
            ));
        }
        // Not the reviewer, the one who broke the glass, or who gained
        // the access (compared as people); no assistant.
        let reviewer = state.recorded(o.opened_by).map_or("", Recorded::actor_id);
        let involved = [reviewer, opener.actor_id(), target.subject.as_str()];
        if involved.iter().any(|who| person(who) == person(executor))
            || executor_kind == ActorKind::Assistant as i32
        {
            v.push(violation(
                2,
                "undo_executor",
                "the reviewer, the one who broke the glass, who gained the access, or an ASSISTANT, does not undo it",
            ));
        }
        // An undo that adds a privileged entitlement back is a new grant:
        // it takes a request and its approvals.
        if need.privileged {
            v.push(violation(
                5,
                "insufficient_human_approvals",
                "this undo adds a privileged entitlement: open a request for it",
            ));
        }
    } else if let Some(g) = removal {
        // De-provisioning an ended grant: no approval, exempt from rule 5
        // and from the policy (which must not keep access past its end).
        need.approvals = 0;
        if !linked.iter().any(|r| r.index == g.outcome) {
            v.push(violation(
                1,
                "removal_not_linked",
                format!("link outcome {}, which granted the access", g.outcome),
            ));
        }
        // What other grants in force hold on stays (it is theirs).
        let (expected, _) = state.to_remove(g, now);
        if !removes_exactly(delta, &expected) {
            v.push(violation(
                3,
                "not_a_removal",
                format!(
                    "a chain holding a grant takes only its removal: REMOVE exactly {expected:?} (of {:?}; other grants in force hold the rest)",
                    g.entitlements
                ),
            ));
        }
        if g.in_force(now) {
            v.push(violation(
                11,
                "grant_in_force",
                format!(
                    "the grant {}; revoke its outcome {} to end it early",
                    runs(g),
                    g.outcome
                ),
            ));
        }
        // The executor the request named removes it (its outcome is the
        // evidence the access is gone), one removal at a time.
        let named = match &state.statement(opener).body {
            Some(Body::AccessRequest(r)) => r.executor.clone(),
            _ => String::new(),
        };
        if executor != named
            || person(executor) == person(target.subject.as_str())
            || executor_kind == ActorKind::Assistant as i32
        {
            v.push(violation(
                2,
                "removal_executor",
                format!("{named}, the executor the request named, removes it (never who holds the access, or an ASSISTANT)"),
            ));
        }
        if state.unreported_intents(chain) > 0 {
            v.push(violation(
                11,
                "removal_pending",
                "a removal awaits its outcome: report it before another",
            ));
        }
    } else if break_glass {
        // An emergency write: no approvals, but the break-glass must be
        // linked and the write must be the declared one.
        if !linked.iter().any(|r| r.index == opener.index) {
            v.push(violation(
                1,
                "break_glass_not_linked",
                "link the chain's breakGlass",
            ));
        }
        if !delta_of(&state.statement(opener)).is_some_and(|d| same(d, delta)) {
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
        let opener_statement = state.statement(opener);
        let Some(Body::AccessRequest(request)) = &opener_statement.body else {
            unreachable!("a chain not opened by a break-glass is opened by a request")
        };
        // Rule 1: request -> decision(s) -> intent, all linked.
        if !linked.iter().any(|r| r.index == opener.index) {
            v.push(violation(
                1,
                "request_not_linked",
                format!("link the chain's accessRequest (entry {})", opener.index),
            ));
        }
        for r in linked {
            let linked_statement = state.statement(r);
            match &linked_statement.body {
                Some(Body::Decision(d)) if d.outcome == decision::Outcome::Approve as i32 => {
                    if !linked_statement
                        .links
                        .iter()
                        .any(|l| l.index == opener.index)
                    {
                        v.push(violation(
                            1,
                            "decision_not_on_request",
                            format!("decision {} does not link the request", r.index),
                        ));
                    }
                    approvers.push(r);
                }
                // Version 2 vetoes on every DENY in the chain, below.
                Some(Body::Decision(_)) if !v2 => v.push(violation(
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
        if v2 {
            // Rule 4: a DENY is a veto, linked or not.
            for d in state.denials(chain) {
                v.push(violation(
                    4,
                    "denied",
                    format!("decision {d} denies the request"),
                ));
            }
            // Rule 8: the executor the request named, and no other.
            if executor != request.executor {
                v.push(violation(
                    8,
                    "wrong_executor",
                    format!(
                        "request {} names {} as its executor",
                        opener.index, request.executor
                    ),
                ));
            }
            if !request.delta.as_ref().is_some_and(|r| within(delta, r)) {
                v.push(violation(
                    3,
                    "intent_exceeds_request",
                    format!("does more than request {} asked for", opener.index),
                ));
            }
        }
        // Rule 2: distinct actors; no assistant approves.
        if person(executor) == person(requester) {
            v.push(violation(
                2,
                "executor_is_requester",
                format!("{executor} requested this change and cannot execute it"),
            ));
        }
        for a in &approvers {
            let who = a.actor_id();
            if v2 && state.kind_of(who) != Some(ActorKind::Human) {
                v.push(violation(
                    2,
                    "approval_by_non_human",
                    format!("{who} is not a HUMAN; only humans approve"),
                ));
            } else if a.actor_kind() == ActorKind::Assistant {
                v.push(violation(
                    2,
                    "assistant_approval",
                    format!("{who} is an ASSISTANT; assistants never fill an approval slot"),
                ));
            }
            if person(who) == person(requester) {
                v.push(violation(
                    2,
                    "self_approval",
                    format!("{who} approved their own request"),
                ));
            }
            if person(who) == person(executor) {
                v.push(violation(
                    2,
                    "approver_executes",
                    format!("{who} approved and executes"),
                ));
            }
        }
        for a in &approvers {
            // Rule 3: exactly the approved delta.
            if !delta_of(&state.statement(a)).is_some_and(|d| same(d, delta)) {
                v.push(violation(
                    3,
                    "delta_mismatch",
                    format!("differs from the delta approved by decision {}", a.index),
                ));
            }
            // Rule 4: unexpired, unrevoked.
            let approval = state.statement(a);
            let Some(Body::Decision(d)) = &approval.body else {
                unreachable!()
            };
            let expires = d.expires_at.as_ref().map_or(0, millis);
            if now > expires {
                v.push(violation(
                    4,
                    "approval_expired",
                    format!(
                        "decision {} expired {} ms before the intent",
                        a.index,
                        now.saturating_sub(expires)
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
            if v2 && state.is_voided(a.index) {
                v.push(violation(
                    4,
                    "approval_voided",
                    format!(
                        "decision {} was signed by a key since revoked or reported compromised",
                        a.index
                    ),
                ));
            }
            // Rule 6: delegated authority rests on a valid grant.
            if let Some(obo) = &approval.on_behalf_of {
                delegation(state, a, obo, target, &mut v);
            }
        }
        // Rule 5: the two-person rule for privileged and high-risk changes
        // (version 2: as many as the policy's classes say).
        let needed = if v2 {
            (need.privileged || need.high_risk).then_some(need.approvals)
        } else {
            let adds = !ops(delta, entitlement_op::Op::Add).is_empty();
            let removes = !ops(delta, entitlement_op::Op::Remove).is_empty();
            ((adds && delta.privileged) || (removes && delta.high_risk)).then(|| {
                state
                    .policy()
                    .map(|p| p.privileged_approvals)
                    .filter(|n| *n > 0)
                    .unwrap_or(DEFAULT_PRIVILEGED_APPROVALS)
            })
        };
        if let Some(needed) = needed {
            let humans = human_approvers(state, &approvers, requester, executor).len();
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

    if v5 {
        // Rule 11: no removal ends another chain's grant still in force.
        for g in state.grants_on(target) {
            let ends_it = ops(delta, entitlement_op::Op::Remove)
                .iter()
                .any(|e| g.entitlements.contains(e));
            if g.chain_id != st.chain_id && g.in_force(now) && ends_it {
                v.push(violation(
                    11,
                    "grant_in_force",
                    format!(
                        "chain {:?} grants this access: it {}; revoke its outcome {} to end it early",
                        g.chain_id,
                        runs(g),
                        g.outcome
                    ),
                ));
            }
        }
        // Rule 11: what an approved intent adds lasts no longer than the
        // policy allows (the policy may have changed since the request);
        // a time-bound one waits for the chain's pending intents (the
        // first outcome makes the chain's one grant, and a second must not
        // escape its bound); nothing more for a suspended subject.
        let adds = !ops(delta, entitlement_op::Op::Add).is_empty();
        let opener_statement = state.statement(opener);
        if let (false, true, Some(Body::AccessRequest(r))) =
            (removal.is_some(), adds, &opener_statement.body)
        {
            let granted = state.granted_duration_ms(r, &st.links);
            v.extend(duration_violation(granted, need.max_access_duration_ms));
            // (Version 6: a permanent one too, or a second intent's
            // access would be held but tracked by no grant.)
            let tracked = granted.is_some() || state.rules_version() >= 6;
            if tracked && state.unreported_intents(chain) > 0 {
                v.push(violation(
                    11,
                    "intent_pending",
                    "an intent of this chain awaits its outcome: report it before another",
                ));
            }
        }
        if adds {
            let subject = state.person_of(&target.subject);
            if let Some(at) = state.suspended_by(subject) {
                v.push(violation(
                    11,
                    "subject_suspended",
                    format!("{subject} was suspended by entry {at}: nothing is granted to them"),
                ));
            }
        }
    }

    // Rule 7: the organisation's policy.
    let in_force = policy_in_force(state);
    if v2 && in_force.is_none() {
        v.push(violation(
            7,
            "no_policy",
            "no policy is published: nothing executes until an admin publishes one",
        ));
    } else if st.policy != in_force {
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
    } else if let Some(policy) = state.policy().filter(|_| removal.is_none()) {
        let requester = if break_glass { "" } else { opener.actor_id() };
        let humans = human_approvers(state, &approvers, requester, executor);
        let (privileged, high_risk) = if v2 {
            (need.privileged, need.high_risk)
        } else {
            (delta.privileged, delta.high_risk)
        };
        let (tickets, ticket_systems) = ticket_facts(state, &state.statement(opener));
        let facts = IntentFacts {
            tickets,
            ticket_systems,
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
            privileged,
            high_risk,
            break_glass,
            recommended: recommended(state, &st.chain_id),
            extension: (state.rules_version() >= 7).then_some(false),
        };
        v.extend(judge(engine, policy, &facts, "this execution"));
    }
    verdict(v, in_force)
}

/// Who stands behind `id`: under rules version 2 the owner of an NHI or
/// assistant, else `id`.
fn person<'a>(state: &'a GateState, v2: bool, id: &'a str) -> &'a str {
    if v2 {
        state.person_of(id)
    } else {
        id
    }
}

/// Distinct HUMAN approvers who are neither the requester nor the
/// executor (under rules version 2: distinct people, neither the people
/// behind the requester nor the executor).
fn human_approvers<'a>(
    state: &'a GateState,
    approvers: &[&'a Recorded],
    requester: &'a str,
    executor: &'a str,
) -> BTreeSet<&'a str> {
    let v2 = state.rules_version() >= 2;
    let person = |id: &'a str| person(state, v2, id);
    let (requester, executor) = (person(requester), person(executor));
    approvers
        .iter()
        .filter(|a| a.actor_kind() == ActorKind::Human)
        .map(|a| person(a.actor_id()))
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
    let grant = state.statement(grant_rec);
    let Some(Body::DelegationGrant(g)) = &grant.body else {
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
    let at = approval.admitted_ms;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access::entry::proto::{LogParameters, Statement};
    use crate::access::entry::{sign, Body, DecodedEntry};
    use crate::tlog::note::NoteSigner;
    use prost::Message;

    fn record(log: &NoteSigner, body: Body) -> DecodedEntry {
        let st = Statement {
            actor: Some(crate::access::entry::build::human(log.name())),
            log_origin: log.name().into(),
            body: Some(body),
            ..Default::default()
        };
        DecodedEntry::decode(&sign(log, &st).encode_to_vec()).unwrap()
    }

    fn parameters(version: u32, admins: &[&NoteSigner], threshold: u32) -> Body {
        Body::LogParameters(LogParameters {
            rules_version: version,
            log_origin: "log".into(),
            max_clock_skew_ms: 300_000,
            admin_keys: admins.iter().map(|a| a.verifier().to_vkey()).collect(),
            admin_threshold: threshold,
        })
    }

    #[test]
    fn an_upgrade_record_keeps_the_admins_the_log_recorded() {
        let log = NoteSigner::from_seed("log", [1; 32]).unwrap();
        let admin = NoteSigner::from_seed("admin", [2; 32]).unwrap();
        let operator = NoteSigner::from_seed("operator", [3; 32]).unwrap();
        let mut state = GateState::new(log.verifier(), vec![]);
        state.apply(0, &record(&log, parameters(2, &[&admin], 1)));
        // The legitimate move to version 3: same admins, same threshold.
        let same = record(&log, parameters(3, &[&admin], 1));
        assert_eq!(log_record(&state, 5, &same), Ok(Verdict::Admit));
        // An operator's "upgrade" that names itself admin, or lowers the
        // threshold of a larger set, is refused (the audit replays this).
        for hostile in [
            parameters(3, &[&operator], 1),
            parameters(3, &[&admin, &operator], 1),
        ] {
            let r = log_record(&state, 5, &record(&log, hostile)).unwrap_err();
            assert_eq!(r.code, "admins_changed");
        }
        // Nor may it stay on its version and re-record parameters.
        let again = record(&log, parameters(2, &[&admin], 1));
        assert_eq!(
            log_record(&state, 5, &again).unwrap_err().code,
            "parameters_fixed"
        );
    }
}
