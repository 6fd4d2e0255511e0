//! Rules version 3's limits: how long a string, how many items in a list,
//! how many entries in a chain, how old a request may grow. They are
//! constants of the rules version, not flags, so a replay of the log
//! reaches the verdicts the server reached; a new limit is a new version.
//!
//! Together they bound what an open chain can cost a server, monitor or
//! auditor that keeps it in memory (see README, "Memory").

use super::Rejection;
use crate::access::entry::proto::{AccessRequest, Actor, EntitlementDelta, Statement, Target};
use crate::access::entry::Body;

/// Names: identity ids, chain ids, systems, resources, subjects,
/// entitlements, policy ids, origins, executor and change ids.
pub const MAX_NAME_BYTES: usize = 256;
/// Free text: justifications, reasons, review notes.
pub const MAX_TEXT_BYTES: usize = 4096;
/// Entitlement names in one delta (before, after and operations together).
pub const MAX_DELTA_NAMES: usize = 32;
/// Links of one statement.
pub const MAX_LINKS: usize = 16;
/// Principals an actor may act on behalf of.
pub const MAX_PRINCIPALS: usize = 4;
/// Scopes of one delegation grant.
pub const MAX_SCOPES: usize = 16;
/// Entitlement classes in one policy.
pub const MAX_CLASSES: usize = 256;
/// Change tickets one request names.
pub const MAX_TICKETS: usize = 4;
/// A ticket's link.
pub const MAX_URL_BYTES: usize = 1024;
/// Entries one chain may hold, besides the log's refusal records: a chain
/// is one access change, and past this an entry is refused (`chain_full`)
/// rather than the chain growing for ever. A place is kept for one intent
/// and its outcome, and for the outcome of every intent admitted.
pub const MAX_CHAIN_ENTRIES: usize = 32;
/// Recommendations and decisions one identity adds to one chain (an
/// approval given again after the first expired, a change of mind): past
/// this it is refused and recorded (`too_many_from_actor`), so no single
/// identity, an assistant included, can fill a chain and shut others out.
pub const MAX_OPINIONS_PER_ACTOR: usize = 4;
/// Refusal records a chain lists (every one is in the log; past this the
/// chain's list of them stops growing).
pub const MAX_CHAIN_REFUSALS: usize = 8;
/// Rules version 5: the longest access a request or approval may ask for
/// or a class may allow (ten years): a duration is a number of seconds,
/// and past this it is a mistake, not a grant.
pub const MAX_ACCESS_DURATION_SECONDS: u64 = 10 * 366 * 24 * 3600;
/// Rules version 5: access review campaigns open at once, and the grants
/// one may review (its snapshot): a campaign is an admin's single
/// signature, so what it costs the log is bounded.
pub const MAX_OPEN_CAMPAIGNS: usize = 64;
pub const MAX_CAMPAIGN_GRANTS: usize = 10_000;
/// The longest a request stays open when the policy says nothing shorter:
/// after it, nothing more joins the chain and it closes (`expired`).
pub const DEFAULT_MAX_REQUEST_AGE_MS: i64 = 30 * 24 * 3600 * 1000;

/// Checks every string and list of `st` against the limits.
pub fn check_sizes(st: &Statement) -> Result<(), Rejection> {
    let mut c = Sizes::default();
    if let Some(a) = &st.actor {
        c.actor(a, "statement.actor");
    }
    if let Some(obo) = &st.on_behalf_of {
        c.list(
            obo.principals.len(),
            MAX_PRINCIPALS,
            "statement.onBehalfOf.principals",
        );
        for (i, p) in obo.principals.iter().enumerate() {
            c.name(p, || format!("statement.onBehalfOf.principals[{i}]"));
        }
    }
    c.name(&st.chain_id, || "statement.chainId".into());
    c.list(st.links.len(), MAX_LINKS, "statement.links");
    if let Some(t) = &st.target {
        c.target(t, "statement.target");
    }
    if let Some(p) = &st.policy {
        c.name(&p.policy_id, || "statement.policy.policyId".into());
    }
    c.name(&st.log_origin, || "statement.logOrigin".into());
    match &st.body {
        Some(Body::IdentityRegistration(r)) => {
            if let Some(a) = &r.identity {
                c.actor(a, "statement.identityRegistration.identity");
            }
            c.name(&r.owner, || "statement.identityRegistration.owner".into());
        }
        Some(Body::PolicyPublication(p)) => {
            let f = "statement.policyPublication";
            c.name(&p.policy_id, || format!("{f}.policyId"));
            c.list(
                p.classes.len(),
                MAX_CLASSES,
                "statement.policyPublication.classes",
            );
            for (i, class) in p.classes.iter().enumerate() {
                c.name(&class.system, || format!("{f}.classes[{i}].system"));
                c.name(&class.pattern, || format!("{f}.classes[{i}].pattern"));
            }
        }
        Some(Body::AccessRequest(r)) => {
            let f = "statement.accessRequest";
            c.delta(r.delta.as_ref(), f, "delta");
            c.text(&r.justification, || format!("{f}.justification"));
            c.name(&r.executor, || format!("{f}.executor"));
        }
        Some(Body::Recommendation(r)) => {
            let f = "statement.recommendation";
            c.delta(r.proposed_delta.as_ref(), f, "proposedDelta");
            c.check(r.rationale_digest.len() <= 64, || {
                (format!("{f}.rationaleDigest"), "at most 64 bytes".into())
            });
        }
        Some(Body::Decision(d)) => {
            c.delta(
                d.approved_delta.as_ref(),
                "statement.decision",
                "approvedDelta",
            );
            c.text(&d.reason, || "statement.decision.reason".into());
        }
        Some(Body::ExecutionIntent(i)) => {
            c.delta(i.delta.as_ref(), "statement.executionIntent", "delta");
        }
        Some(Body::ExecutionOutcome(o)) => {
            let f = "statement.executionOutcome";
            c.list(
                o.observed_before.len() + o.observed_after.len(),
                MAX_DELTA_NAMES,
                "statement.executionOutcome.observedBefore",
            );
            for (i, e) in o.observed_before.iter().enumerate() {
                c.name(e, || format!("{f}.observedBefore[{i}]"));
            }
            for (i, e) in o.observed_after.iter().enumerate() {
                c.name(e, || format!("{f}.observedAfter[{i}]"));
            }
            c.name(&o.change_id, || format!("{f}.changeId"));
        }
        Some(Body::BreakGlass(b)) => {
            c.delta(b.delta.as_ref(), "statement.breakGlass", "delta");
            c.text(&b.reason, || "statement.breakGlass.reason".into());
        }
        Some(Body::Review(r)) => c.text(&r.notes, || "statement.review.notes".into()),
        Some(Body::DelegationGrant(g)) => {
            let f = "statement.delegationGrant";
            c.name(&g.grantee, || format!("{f}.grantee"));
            c.name(&g.principal, || format!("{f}.principal"));
            c.list(g.scope.len(), MAX_SCOPES, "statement.delegationGrant.scope");
            for (i, s) in g.scope.iter().enumerate() {
                c.name(&s.system, || format!("{f}.scope[{i}].system"));
                c.name(&s.resource_prefix, || {
                    format!("{f}.scope[{i}].resourcePrefix")
                });
            }
        }
        Some(Body::Revocation(r)) => c.text(&r.reason, || "statement.revocation.reason".into()),
        Some(Body::ReviewCampaign(r)) => {
            let f = "statement.reviewCampaign";
            c.name(&r.campaign_id, || format!("{f}.campaignId"));
            c.name(&r.system, || format!("{f}.system"));
            c.name(&r.resource_prefix, || format!("{f}.resourcePrefix"));
            for (i, who) in r.reviewers.iter().enumerate() {
                c.name(who, || format!("{f}.reviewers[{i}]"));
            }
        }
        Some(Body::Certification(r)) => {
            c.text(&r.notes, || "statement.certification.notes".into());
        }
        Some(Body::Suspension(s)) => {
            c.name(&s.identity, || "statement.suspension.identity".into());
            c.text(&s.reason, || "statement.suspension.reason".into());
        }
        // The log's own records and admin set changes: written by the log
        // or bounded by validation (at most 17 admin keys).
        Some(Body::GateRefusal(_))
        | Some(Body::LogParameters(_))
        | Some(Body::LogTime(_))
        | Some(Body::AdminSetChange(_))
        | None => {}
    }
    match c.first {
        None => Ok(()),
        Some((field, message)) => Err(Rejection::new(422, "too_long", message).at(field)),
    }
}

/// Rules version 4: a request's change tickets. At most
/// [`MAX_TICKETS`]; a system and an id, printable without spaces (the
/// system without `:`, which joins them in reports and Cedar), names in
/// length; a link, if any, `https://` of URI characters only (nothing a
/// page could read as the end of an attribute or tag), at most
/// [`MAX_URL_BYTES`]. Before version 4 tickets are not read at all: a
/// statement of an earlier release that carried the field is judged as it
/// was.
pub fn check_tickets(r: &AccessRequest) -> Result<(), Rejection> {
    let f = "statement.accessRequest.tickets";
    let mut c = Sizes::default();
    c.list(r.tickets.len(), MAX_TICKETS, f);
    for (i, t) in r.tickets.iter().enumerate() {
        c.name(&t.system, || format!("{f}[{i}].system"));
        c.name(&t.id, || format!("{f}[{i}].id"));
        c.check(t.url.len() <= MAX_URL_BYTES, || {
            (
                format!("{f}[{i}].url"),
                format!("{} bytes; a link is at most {MAX_URL_BYTES}", t.url.len()),
            )
        });
    }
    if let Some((field, message)) = c.first {
        return Err(Rejection::new(422, "too_long", message).at(field));
    }
    let token = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_graphic());
    let uri = |c: char| c.is_ascii_alphanumeric() || "-._~:/?#[]@!$&'()*+,;=%".contains(c);
    for (i, t) in r.tickets.iter().enumerate() {
        let (field, message) = if !token(&t.system) || t.system.contains(':') {
            (
                "system",
                "required: a ticket system, printable, without spaces or ':'",
            )
        } else if !token(&t.id) {
            ("id", "required: the ticket's id, printable, without spaces")
        } else if !(t.url.is_empty()
            || t.url.len() > "https://".len()
                && t.url.starts_with("https://")
                && t.url.chars().all(uri))
        {
            ("url", "must be an https:// link of URI characters")
        } else {
            continue;
        };
        return Err(Rejection::new(422, "invalid_entry", message).at(format!("{f}[{i}].{field}")));
    }
    Ok(())
}

/// Rules version 5: an access duration (of a request, an approval or a
/// class) is at most [`MAX_ACCESS_DURATION_SECONDS`].
pub fn check_durations(st: &Statement) -> Result<(), Rejection> {
    let (seconds, field) = match &st.body {
        Some(Body::AccessRequest(r)) => (
            r.access_duration_seconds,
            "statement.accessRequest.accessDurationSeconds".to_string(),
        ),
        Some(Body::Decision(d)) => (
            d.access_duration_seconds,
            "statement.decision.accessDurationSeconds".to_string(),
        ),
        Some(Body::PolicyPublication(p)) => {
            let fields = p.classes.iter().enumerate().flat_map(|(i, c)| {
                [
                    (c.max_access_duration_seconds, i, "maxAccessDurationSeconds"),
                    (c.deprovision_window_seconds, i, "deprovisionWindowSeconds"),
                ]
            });
            match fields
                .into_iter()
                .find(|(s, _, _)| *s > MAX_ACCESS_DURATION_SECONDS)
            {
                Some((seconds, i, name)) => (
                    seconds,
                    format!("statement.policyPublication.classes[{i}].{name}"),
                ),
                None => return Ok(()),
            }
        }
        _ => return Ok(()),
    };
    if seconds > MAX_ACCESS_DURATION_SECONDS {
        return Err(Rejection::new(
            422,
            "invalid_entry",
            format!(
                "{seconds} s; an access lasts at most {MAX_ACCESS_DURATION_SECONDS} s (ten years)"
            ),
        )
        .at(field));
    }
    Ok(())
}

/// The first limit a statement breaks, if any.
#[derive(Default)]
struct Sizes {
    first: Option<(String, String)>,
}

impl Sizes {
    fn check(&mut self, ok: bool, what: impl FnOnce() -> (String, String)) {
        if !ok && self.first.is_none() {
            self.first = Some(what());
        }
    }

    fn name(&mut self, s: &str, field: impl FnOnce() -> String) {
        self.check(s.len() <= MAX_NAME_BYTES, || {
            (
                field(),
                format!("{} bytes; a name is at most {MAX_NAME_BYTES}", s.len()),
            )
        });
    }

    fn text(&mut self, s: &str, field: impl FnOnce() -> String) {
        self.check(s.len() <= MAX_TEXT_BYTES, || {
            (
                field(),
                format!("{} bytes; free text is at most {MAX_TEXT_BYTES}", s.len()),
            )
        });
    }

    fn list(&mut self, n: usize, max: usize, field: &str) {
        self.check(n <= max, || {
            (field.to_string(), format!("{n} items; at most {max}"))
        });
    }

    fn actor(&mut self, a: &Actor, f: &str) {
        self.name(&a.id, || format!("{f}.id"));
        self.name(&a.model_id, || format!("{f}.modelId"));
        self.name(&a.agent_id, || format!("{f}.agentId"));
        if let Some(w) = a.workload.as_ref().and_then(|w| w.id.as_ref()) {
            use crate::access::entry::proto::workload_identity::Id;
            let (Id::SpiffeId(s) | Id::CloudPrincipal(s) | Id::KubernetesServiceAccount(s)) = w;
            self.name(s, || format!("{f}.workload"));
        }
    }

    fn target(&mut self, t: &Target, f: &str) {
        self.name(&t.system, || format!("{f}.system"));
        self.name(&t.resource, || format!("{f}.resource"));
        self.name(&t.subject, || format!("{f}.subject"));
    }

    fn delta(&mut self, d: Option<&EntitlementDelta>, body: &str, name: &str) {
        let Some(d) = d else { return };
        let f = format!("{body}.{name}");
        self.list(
            d.before.len() + d.after.len() + d.ops.len(),
            MAX_DELTA_NAMES,
            &f,
        );
        for (i, e) in d.before.iter().enumerate() {
            self.name(e, || format!("{f}.before[{i}]"));
        }
        for (i, e) in d.after.iter().enumerate() {
            self.name(e, || format!("{f}.after[{i}]"));
        }
        for (i, op) in d.ops.iter().enumerate() {
            self.name(&op.entitlement, || format!("{f}.ops[{i}].entitlement"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access::entry::proto::{AccessRequest, EntitlementOp};

    fn request(justification: &str, entitlements: usize, name: &str) -> Statement {
        Statement {
            chain_id: "c".into(),
            body: Some(Body::AccessRequest(AccessRequest {
                delta: Some(EntitlementDelta {
                    ops: (0..entitlements)
                        .map(|_| EntitlementOp {
                            op: 1,
                            entitlement: name.into(),
                        })
                        .collect(),
                    ..Default::default()
                }),
                justification: justification.into(),
                executor: "exec".into(),
                ..Default::default()
            })),
            ..Default::default()
        }
    }

    #[test]
    fn statements_at_the_limits_pass_and_one_byte_or_item_more_fails() {
        let name = "e".repeat(MAX_NAME_BYTES);
        let text = "j".repeat(MAX_TEXT_BYTES);
        check_sizes(&request(&text, MAX_DELTA_NAMES, &name)).unwrap();

        let long_text = check_sizes(&request(&format!("{text}j"), 1, "e")).unwrap_err();
        assert_eq!(long_text.code, "too_long");
        assert_eq!(
            long_text.field.as_deref(),
            Some("statement.accessRequest.justification")
        );
        let long_name = check_sizes(&request("", 2, &format!("{name}e"))).unwrap_err();
        assert_eq!(
            long_name.field.as_deref(),
            Some("statement.accessRequest.delta.ops[0].entitlement")
        );
        let many = check_sizes(&request("", MAX_DELTA_NAMES + 1, "e")).unwrap_err();
        assert_eq!(many.field.as_deref(), Some("statement.accessRequest.delta"));
    }

    #[test]
    fn a_long_actor_id_or_chain_id_is_refused() {
        let mut st = request("", 1, "e");
        st.actor = Some(Actor {
            id: "a".repeat(MAX_NAME_BYTES + 1),
            ..Default::default()
        });
        assert_eq!(
            check_sizes(&st).unwrap_err().field.as_deref(),
            Some("statement.actor.id")
        );
        let mut st = request("", 1, "e");
        st.chain_id = "c".repeat(MAX_NAME_BYTES + 1);
        assert_eq!(
            check_sizes(&st).unwrap_err().field.as_deref(),
            Some("statement.chainId")
        );
    }
}
