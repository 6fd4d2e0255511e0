//! Stateless checks of a decoded entry: required fields, well-formed
//! actors, exact deltas and sane timestamps. Each failure names the field
//! in its proto3 JSON path.

use std::collections::BTreeSet;

use super::proto::{
    certification, decision, entitlement_op, identity_registration, review, Actor,
    EntitlementDelta, EntryRef, Target,
};
use super::{millis, Body, DecodedEntry, EntryError, Kind};
use crate::tlog::note::is_valid_key_name;

/// Limits on what a statement may claim.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// How far in the future `issuedAt` may be, in milliseconds.
    pub max_future_ms: i64,
    /// How far in the past an `executionIntent` or `breakGlass` may be
    /// dated: the gate judges expiry at `issuedAt`, so backdating is bounded.
    pub max_backdate_ms: i64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_future_ms: 5 * 60 * 1000,
            max_backdate_ms: 5 * 60 * 1000,
        }
    }
}

/// Most endorsements (further admin signatures) an entry carries.
pub const MAX_ENDORSEMENTS: usize = 16;

type Result = std::result::Result<(), EntryError>;

fn err(field: &str, message: impl Into<String>) -> Result {
    Err(EntryError::new(field, message))
}

fn require(ok: bool, field: &str, message: &str) -> Result {
    if ok {
        Ok(())
    } else {
        err(field, message)
    }
}

/// Checks everything about `entry` that needs no knowledge of the log,
/// with `now_ms` the current time. Signatures are the gate's job (it
/// knows the keys).
pub fn validate(entry: &DecodedEntry, now_ms: i64, limits: &Limits) -> Result {
    let st = &entry.statement;
    let kind = entry.kind();
    if kind == Kind::Unknown {
        return err("statement.body", "missing or unknown statement kind");
    }
    require(
        entry.signed.signature.len() == 64,
        "signedEntry.signature",
        "must be a 64-byte Ed25519 signature",
    )?;
    require(
        entry.signed.endorsements.len() <= MAX_ENDORSEMENTS,
        "signedEntry.endorsements",
        "at most 16",
    )?;
    for (i, e) in entry.signed.endorsements.iter().enumerate() {
        let field = format!("signedEntry.endorsements[{i}]");
        require(
            e.signature.len() == 64,
            &field,
            "a 64-byte Ed25519 signature",
        )?;
        require(
            e.signer_id != entry.signed.signer_id
                && !entry.signed.endorsements[..i]
                    .iter()
                    .any(|o| o.signer_id == e.signer_id),
            &field,
            "each admin signs once",
        )?;
    }
    let actor = st
        .actor
        .as_ref()
        .ok_or_else(|| EntryError::new("statement.actor", "required"))?;
    check_actor(actor, "statement.actor")?;
    require(
        entry.signed.signer_id == actor.id,
        "signedEntry.signerId",
        "must equal statement.actor.id",
    )?;
    let issued = time(st.issued_at.as_ref(), "statement.issuedAt")?;
    if issued > now_ms.saturating_add(limits.max_future_ms) {
        return err(
            "statement.issuedAt",
            format!(
                "{} ms in the future; at most {} ms is allowed",
                issued.saturating_sub(now_ms),
                limits.max_future_ms
            ),
        );
    }
    if matches!(kind, Kind::ExecutionIntent | Kind::BreakGlass)
        && issued < now_ms.saturating_sub(limits.max_backdate_ms)
    {
        return err(
            "statement.issuedAt",
            format!(
                "{} ms in the past; a {} may be dated at most {} ms back",
                now_ms.saturating_sub(issued),
                kind.name(),
                limits.max_backdate_ms
            ),
        );
    }
    let mut seen = BTreeSet::new();
    for (i, link) in st.links.iter().enumerate() {
        let field = format!("statement.links[{i}]");
        check_ref(link, &field)?;
        if !seen.insert(link.index) {
            return err(&field, "links the same entry twice");
        }
    }
    if let Some(obo) = &st.on_behalf_of {
        require(
            !obo.principals.is_empty() && obo.principals.iter().all(|p| !p.is_empty()),
            "statement.onBehalfOf.principals",
            "names at least one principal, none empty",
        )?;
        let d = obo
            .delegation
            .as_ref()
            .ok_or_else(|| EntryError::new("statement.onBehalfOf.delegation", "required"))?;
        check_ref(d, "statement.onBehalfOf.delegation")?;
    }
    let in_chain = !matches!(
        kind,
        Kind::IdentityRegistration
            | Kind::PolicyPublication
            | Kind::DelegationGrant
            | Kind::Revocation
            | Kind::LogParameters
            | Kind::LogTime
            | Kind::AdminSetChange
            | Kind::Suspension
            | Kind::ReviewCampaign
            | Kind::Certification
    );
    // Every kind: a refusal record repeats the chain id, and must fit.
    require(
        st.chain_id.len() <= 256,
        "statement.chainId",
        "at most 256 bytes",
    )?;
    if in_chain {
        require(
            !st.chain_id.is_empty(),
            "statement.chainId",
            "required for a chain statement",
        )?;
    }
    let opens_chain = matches!(kind, Kind::AccessRequest | Kind::BreakGlass);
    if opens_chain {
        require(
            st.links.is_empty(),
            "statement.links",
            "a chain's first statement links nothing",
        )?;
        check_target(st.target.as_ref())?;
    } else if in_chain && kind != Kind::GateRefusal {
        require(
            !st.links.is_empty(),
            "statement.links",
            "must link the chain entries it rests on",
        )?;
    }
    match st.body.as_ref().expect("kind is known") {
        Body::IdentityRegistration(r) => {
            use identity_registration::Operation;
            require(
                Operation::try_from(r.operation).is_ok_and(|o| o != Operation::Unspecified),
                "statement.identityRegistration.operation",
                "must be REGISTER, ROTATE_KEY or REVOKE_KEY",
            )?;
            let identity = r.identity.as_ref().ok_or_else(|| {
                EntryError::new("statement.identityRegistration.identity", "required")
            })?;
            check_actor(identity, "statement.identityRegistration.identity")?;
            let key: [u8; 32] = r.public_key.as_slice().try_into().map_err(|_| {
                EntryError::new(
                    "statement.identityRegistration.publicKey",
                    "must be a 32-byte Ed25519 public key",
                )
            })?;
            require(
                ed25519_dalek::VerifyingKey::from_bytes(&key).is_ok_and(|k| !k.is_weak()),
                "statement.identityRegistration.publicKey",
                "not a valid Ed25519 public key (or a weak, small-order one)",
            )?;
        }
        Body::PolicyPublication(p) => {
            require(
                !p.policy_id.is_empty(),
                "statement.policyPublication.policyId",
                "required",
            )?;
            // Refusal records name the policy: bounded, so they fit.
            require(
                p.policy_id.len() <= 256,
                "statement.policyPublication.policyId",
                "at most 256 bytes",
            )?;
            require(
                p.version >= 1,
                "statement.policyPublication.version",
                "must be at least 1",
            )?;
            require(
                !p.cedar.trim().is_empty(),
                "statement.policyPublication.cedar",
                "required: a Cedar policy set",
            )?;
        }
        Body::AccessRequest(r) => {
            check_delta(r.delta.as_ref(), "statement.accessRequest.delta")?;
        }
        Body::Recommendation(r) => {
            check_delta(
                r.proposed_delta.as_ref(),
                "statement.recommendation.proposedDelta",
            )?;
            require(
                r.rationale_digest.is_empty() || r.rationale_digest.len() == 32,
                "statement.recommendation.rationaleDigest",
                "must be a 32-byte SHA-256 digest",
            )?;
        }
        Body::Decision(d) => {
            let outcome = decision::Outcome::try_from(d.outcome)
                .ok()
                .filter(|o| *o != decision::Outcome::Unspecified)
                .ok_or_else(|| {
                    EntryError::new("statement.decision.outcome", "must be APPROVE or DENY")
                })?;
            if outcome == decision::Outcome::Approve {
                check_delta(
                    d.approved_delta.as_ref(),
                    "statement.decision.approvedDelta",
                )?;
                let expires = time(d.expires_at.as_ref(), "statement.decision.expiresAt")?;
                require(
                    expires > issued,
                    "statement.decision.expiresAt",
                    "must be after issuedAt",
                )?;
            }
        }
        Body::ExecutionIntent(i) => {
            check_delta(i.delta.as_ref(), "statement.executionIntent.delta")?;
        }
        Body::ExecutionOutcome(o) => {
            require(
                o.result != 0,
                "statement.executionOutcome.result",
                "must be SUCCEEDED or FAILED",
            )?;
        }
        Body::BreakGlass(b) => {
            check_delta(b.delta.as_ref(), "statement.breakGlass.delta")?;
            require(
                !b.reason.trim().is_empty(),
                "statement.breakGlass.reason",
                "required",
            )?;
            let deadline = time(
                b.review_deadline.as_ref(),
                "statement.breakGlass.reviewDeadline",
            )?;
            require(
                deadline > issued,
                "statement.breakGlass.reviewDeadline",
                "must be after issuedAt",
            )?;
        }
        Body::Review(r) => {
            require(
                review::Verdict::try_from(r.verdict)
                    .is_ok_and(|v| v != review::Verdict::Unspecified),
                "statement.review.verdict",
                "must be RATIFY or REVOKE",
            )?;
        }
        Body::DelegationGrant(g) => {
            require(
                !g.grantee.is_empty(),
                "statement.delegationGrant.grantee",
                "required",
            )?;
            require(
                !g.principal.is_empty(),
                "statement.delegationGrant.principal",
                "required",
            )?;
            require(
                !g.scope.is_empty() && g.scope.iter().all(|s| !s.system.is_empty()),
                "statement.delegationGrant.scope",
                "names at least one system",
            )?;
            let from = time(g.not_before.as_ref(), "statement.delegationGrant.notBefore")?;
            let until = time(g.not_after.as_ref(), "statement.delegationGrant.notAfter")?;
            require(
                until > from,
                "statement.delegationGrant.notAfter",
                "must be after notBefore",
            )?;
        }
        Body::Revocation(r) => {
            let revoked = r
                .revoked
                .as_ref()
                .ok_or_else(|| EntryError::new("statement.revocation.revoked", "required"))?;
            check_ref(revoked, "statement.revocation.revoked")?;
        }
        Body::ReviewCampaign(_) | Body::Certification(_)
            if !st.chain_id.is_empty()
                || !st.links.is_empty()
                || st.target.is_some()
                || st.on_behalf_of.is_some() =>
        {
            err(
                "statement",
                "a review campaign or certification belongs to no chain: no chainId, links, target or onBehalfOf",
            )?;
        }
        Body::ReviewCampaign(c) => {
            let field = "statement.reviewCampaign";
            require(
                !c.campaign_id.is_empty(),
                &format!("{field}.campaignId"),
                "required",
            )?;
            require(
                !c.reviewers.is_empty() && c.reviewers.len() <= 64,
                &format!("{field}.reviewers"),
                "names 1 to 64 reviewers",
            )?;
            let deadline = time(c.deadline.as_ref(), &format!("{field}.deadline"))?;
            require(
                deadline > issued,
                &format!("{field}.deadline"),
                "must be after issuedAt",
            )?;
        }
        Body::Certification(c) => {
            let field = "statement.certification";
            let campaign = c
                .campaign
                .as_ref()
                .ok_or_else(|| EntryError::new(format!("{field}.campaign"), "required"))?;
            check_ref(campaign, &format!("{field}.campaign"))?;
            let grant = c
                .grant
                .as_ref()
                .ok_or_else(|| EntryError::new(format!("{field}.grant"), "required"))?;
            check_ref(grant, &format!("{field}.grant"))?;
            require(
                c.verdict == certification::Verdict::Keep as i32
                    || c.verdict == certification::Verdict::Revoke as i32,
                &format!("{field}.verdict"),
                "must be KEEP or REVOKE",
            )?;
        }
        Body::Suspension(s) => {
            require(
                !s.identity.is_empty(),
                "statement.suspension.identity",
                "required: the identity suspended (or whose suspension is lifted)",
            )?;
        }
        Body::AdminSetChange(c) => {
            let field = "statement.adminSetChange.adminKeys";
            require(!c.admin_keys.is_empty(), field, "names at least one admin")?;
            require(
                c.admin_keys.len() <= MAX_ENDORSEMENTS + 1,
                field,
                "at most 17 admins",
            )?;
            for (i, k) in c.admin_keys.iter().enumerate() {
                let v = crate::tlog::note::NoteVerifier::parse(k)
                    .map_err(|e| EntryError::new(format!("{field}[{i}]"), e.to_string()))?;
                require(
                    !c.admin_keys[..i].iter().any(|o| {
                        crate::tlog::note::NoteVerifier::parse(o)
                            .is_ok_and(|o| o.name() == v.name())
                    }),
                    &format!("{field}[{i}]"),
                    "names an admin twice",
                )?;
            }
            require(
                c.admin_threshold >= 1 && c.admin_threshold as usize <= c.admin_keys.len(),
                "statement.adminSetChange.adminThreshold",
                "at least 1 and at most the number of admins",
            )?;
        }
        Body::GateRefusal(_) | Body::LogParameters(_) | Body::LogTime(_) => {}
    }
    Ok(())
}

/// Seconds of 0001-01-01T00:00:00Z and 9999-12-31T23:59:59Z: the range
/// of google.protobuf.Timestamp (and of its RFC 3339 JSON form).
const MIN_SECONDS: i64 = -62_135_596_800;
const MAX_SECONDS: i64 = 253_402_300_799;

/// A required timestamp within the protobuf range, in milliseconds.
pub fn time(ts: Option<&super::Timestamp>, field: &str) -> std::result::Result<i64, EntryError> {
    let ts = ts.ok_or_else(|| EntryError::new(field, "required"))?;
    if !(MIN_SECONDS..=MAX_SECONDS).contains(&ts.seconds) || !(0..1_000_000_000).contains(&ts.nanos)
    {
        return Err(EntryError::new(
            field,
            "out of range: years 0001 to 9999, nanos 0 to 999999999",
        ));
    }
    Ok(millis(ts))
}

fn check_actor(actor: &Actor, field: &str) -> Result {
    use super::ActorKind;
    require(
        is_valid_key_name(&actor.id) && actor.id.len() <= 128,
        &format!("{field}.id"),
        "required: up to 128 bytes, no spaces or '+'",
    )?;
    let kind = ActorKind::try_from(actor.kind)
        .ok()
        .filter(|k| *k != ActorKind::Unspecified)
        .ok_or_else(|| {
            EntryError::new(format!("{field}.kind"), "must be HUMAN, NHI or ASSISTANT")
        })?;
    if kind != ActorKind::Human {
        require(
            actor.workload.as_ref().is_some_and(|w| match &w.id {
                Some(id) => {
                    use super::proto::workload_identity::Id;
                    let (Id::SpiffeId(s) | Id::CloudPrincipal(s) | Id::KubernetesServiceAccount(s)) =
                        id;
                    !s.is_empty()
                }
                None => false,
            }),
            &format!("{field}.workload"),
            "required for NHI and ASSISTANT: a SPIFFE ID, cloud principal or Kubernetes service account",
        )?;
    }
    if kind == ActorKind::Assistant {
        require(
            !actor.model_id.is_empty(),
            &format!("{field}.modelId"),
            "required for an ASSISTANT",
        )?;
        require(
            !actor.agent_id.is_empty(),
            &format!("{field}.agentId"),
            "required for an ASSISTANT",
        )?;
    }
    Ok(())
}

fn check_ref(r: &EntryRef, field: &str) -> Result {
    require(
        r.leaf_hash.len() == 32,
        &format!("{field}.leafHash"),
        "must be a 32-byte leaf hash",
    )
}

fn check_target(target: Option<&Target>) -> Result {
    let t = target.ok_or_else(|| EntryError::new("statement.target", "required"))?;
    for (value, name) in [
        (&t.system, "system"),
        (&t.resource, "resource"),
        (&t.subject, "subject"),
    ] {
        require(
            !value.is_empty(),
            &format!("statement.target.{name}"),
            "required",
        )?;
    }
    Ok(())
}

/// A delta is exact: `after` is `before` with `ops` applied, each op
/// changes something, and no list repeats an entitlement.
/// The entitlements of `list`, which must not repeat one.
fn entitlement_set(
    list: &[String],
    field: impl Fn() -> String,
) -> std::result::Result<BTreeSet<&str>, EntryError> {
    let set: BTreeSet<&str> = list.iter().map(String::as_str).collect();
    if set.len() != list.len() {
        return Err(EntryError::new(field(), "repeats an entitlement"));
    }
    Ok(set)
}

fn check_delta(delta: Option<&EntitlementDelta>, field: &str) -> Result {
    // Field paths are formatted only for an error: every entry of a
    // replayed log passes through here.
    let d = delta.ok_or_else(|| EntryError::new(field, "required"))?;
    if d.ops.is_empty() {
        return err(&format!("{field}.ops"), "at least one ADD or REMOVE");
    }
    let mut state = entitlement_set(&d.before, || format!("{field}.before"))?;
    let after = entitlement_set(&d.after, || format!("{field}.after"))?;
    for (i, op) in d.ops.iter().enumerate() {
        let f = || format!("{field}.ops[{i}]");
        if op.entitlement.is_empty() {
            return err(&format!("{}.entitlement", f()), "required");
        }
        match entitlement_op::Op::try_from(op.op) {
            Ok(entitlement_op::Op::Add) if !state.insert(&op.entitlement) => {
                return err(&f(), "adds an entitlement already held")
            }
            Ok(entitlement_op::Op::Remove) if !state.remove(op.entitlement.as_str()) => {
                return err(&f(), "removes an entitlement not held")
            }
            Ok(entitlement_op::Op::Add | entitlement_op::Op::Remove) => {}
            _ => return err(&format!("{}.op", f()), "must be ADD or REMOVE"),
        }
    }
    if state != after {
        return err(
            &format!("{field}.after"),
            "is not `before` with `ops` applied",
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::proto::*;
    use super::super::{sign, timestamp, DecodedEntry};
    use super::*;
    use crate::tlog::note::NoteSigner;
    use prost::Message;

    const NOW: i64 = 1_800_000_000_000;

    fn delta() -> EntitlementDelta {
        EntitlementDelta {
            before: vec!["read".into()],
            after: vec!["read".into(), "write".into()],
            ops: vec![EntitlementOp {
                op: entitlement_op::Op::Add as i32,
                entitlement: "write".into(),
            }],
            privileged: false,
            high_risk: false,
        }
    }

    fn request() -> Statement {
        Statement {
            actor: Some(Actor {
                id: "alice".into(),
                kind: ActorKind::Human as i32,
                ..Default::default()
            }),
            chain_id: "CHG-1".into(),
            target: Some(Target {
                system: "github".into(),
                resource: "org/repo".into(),
                subject: "bob".into(),
            }),
            issued_at: Some(timestamp(NOW)),
            body: Some(Body::AccessRequest(AccessRequest {
                delta: Some(delta()),
                justification: "on-call".into(),
                executor: "deployer".into(),
                ..Default::default()
            })),
            ..Default::default()
        }
    }

    fn check(st: &Statement) -> Result {
        let key = NoteSigner::from_seed("alice", [1; 32]).unwrap();
        let leaf = sign(&key, st).encode_to_vec();
        validate(
            &DecodedEntry::decode(&leaf).unwrap(),
            NOW,
            &Limits::default(),
        )
    }

    fn field_of(st: &Statement) -> String {
        check(st).unwrap_err().field
    }

    #[test]
    fn a_well_formed_request_passes() {
        check(&request()).unwrap();
    }

    #[test]
    fn a_weak_key_is_never_registered() {
        // The identity point: every signature "verifies" under it with the
        // cofactored equation.
        let mut weak = [0u8; 32];
        weak[0] = 1;
        let admin = Actor {
            id: "alice".into(),
            kind: ActorKind::Human as i32,
            ..Default::default()
        };
        let bob = Actor {
            id: "bob".into(),
            kind: ActorKind::Human as i32,
            ..Default::default()
        };
        let st = crate::access::entry::build::register(&admin, &bob, "", weak, NOW);
        assert_eq!(field_of(&st), "statement.identityRegistration.publicKey");
        let good = NoteSigner::from_seed("bob", [5; 32]).unwrap();
        let st = crate::access::entry::build::register(
            &admin,
            &bob,
            "",
            good.verifier().public_key(),
            NOW,
        );
        check(&st).unwrap();
    }

    #[test]
    fn each_missing_field_is_named() {
        let mut st = request();
        st.actor = None;
        assert_eq!(field_of(&st), "statement.actor");
        let mut st = request();
        st.body = None;
        assert_eq!(field_of(&st), "statement.body");
        let mut st = request();
        st.issued_at = None;
        assert_eq!(field_of(&st), "statement.issuedAt");
        let mut st = request();
        st.chain_id.clear();
        assert_eq!(field_of(&st), "statement.chainId");
        let mut st = request();
        st.target.as_mut().unwrap().subject.clear();
        assert_eq!(field_of(&st), "statement.target.subject");
    }

    #[test]
    fn signer_must_be_the_actor() {
        let mut st = request();
        st.actor.as_mut().unwrap().id = "mallory".into();
        assert_eq!(field_of(&st), "signedEntry.signerId");
    }

    #[test]
    fn non_humans_carry_workload_identity() {
        let mut st = request();
        st.actor.as_mut().unwrap().kind = ActorKind::Nhi as i32;
        assert_eq!(field_of(&st), "statement.actor.workload");
        st.actor.as_mut().unwrap().workload = Some(WorkloadIdentity {
            id: Some(workload_identity::Id::SpiffeId("spiffe://corp/ci".into())),
        });
        check(&st).unwrap();
        st.actor.as_mut().unwrap().kind = ActorKind::Assistant as i32;
        assert_eq!(field_of(&st), "statement.actor.modelId");
    }

    #[test]
    fn the_future_is_refused() {
        let mut st = request();
        st.issued_at = Some(timestamp(NOW + 10 * 60 * 1000));
        assert_eq!(field_of(&st), "statement.issuedAt");
    }

    #[test]
    fn deltas_must_be_exact() {
        let mut st = request();
        let Some(Body::AccessRequest(r)) = &mut st.body else {
            unreachable!()
        };
        r.delta.as_mut().unwrap().after.push("admin".into());
        assert_eq!(field_of(&st), "statement.accessRequest.delta.after");
        let mut st = request();
        let Some(Body::AccessRequest(r)) = &mut st.body else {
            unreachable!()
        };
        r.delta.as_mut().unwrap().ops[0].entitlement = "read".into();
        assert_eq!(field_of(&st), "statement.accessRequest.delta.ops[0]");
    }

    #[test]
    fn links_need_full_hashes() {
        let mut st = request();
        st.body = Some(Body::Review(Review {
            verdict: review::Verdict::Ratify as i32,
            notes: String::new(),
        }));
        assert_eq!(field_of(&st), "statement.links");
        st.links = vec![EntryRef {
            index: 0,
            leaf_hash: vec![0; 31],
        }];
        assert_eq!(field_of(&st), "statement.links[0].leafHash");
    }
}
