//! The gate: what the log knows from its own history (identities, keys,
//! chains, delegations, revocations, the policy in force) and the rules a
//! statement must pass against it before it is appended.
//!
//! Pure and deterministic: the server runs it at append time and an
//! auditor replays it over the log alone, reaching the same verdicts.
//! Rule 7 (the organisation's Cedar policy) is behind [`PolicyEngine`] so
//! this module needs no Cedar.
//!
//! # The rules, versioned
//!
//! A log records the rules it is judged by. Before its `logParameters`
//! record a log is under **rules version 1** (the rules of the first
//! releases, kept so that old logs still audit). From that record on,
//! the version it names judges every entry, including chains opened
//! earlier (version 2, then 3 from a second record). A new log's first entry is that record; an existing log gets
//! it on its first start under a release that knows version 2.
//!
//! The log's own records (written and signed by the log key, never
//! accepted from a client): `logParameters` (rules version, origin, clock
//! skew, admin set and threshold), `logTime` (the log's clock: every
//! entry after it was admitted at its `issuedAt`, until the next one) and
//! `gateRefusal` (an attempt the gate refused, holding the whole refused
//! entry).
//!
//! Version 2, for every statement: it names this log (`logOrigin`); its
//! `issuedAt` is within the recorded skew of the log's time; its signer is
//! registered with an active key (or is an admin). Then:
//!
//! - **Chains.** A chain opens with an `accessRequest` (naming its
//!   executor) or a `breakGlass`, and every later statement links earlier
//!   entries of the same chain and target. A statement that breaks a chain
//!   rule (another chain's entry, another target, a closed chain, a second
//!   opener) is refused and recorded.
//! - **Decisions** (APPROVE and DENY alike) come only from a HUMAN who is
//!   not the requester, the subject who gains the access, or the named
//!   executor, comparing the people behind identities (an NHI or
//!   assistant is registered with its accountable human owner). An
//!   approval is within the request (same `before`, a subset of its
//!   operations) and lasts no longer than the policy's class allows.
//!   Ineligible decisions are refused when made.
//! - **Intents**, rules 1-8: (1) the request and approvals are linked;
//!   (2) distinct people, no assistant or NHI approval; (3) the intent's
//!   delta equals every linked approval's, as sets, and is within the
//!   request; (4) approvals unexpired at the log's time, unused, unrevoked,
//!   not voided by a key revocation or compromise, and no unrevoked DENY in
//!   the chain; (5) as many distinct human approvals as the policy's
//!   entitlement classes require for privileged adds and high-risk removes
//!   (the requester's flags can only raise this); (6) delegated approvals
//!   rest on a grant valid when the approval was admitted; (7) a policy is
//!   published (none: nothing executes) and permits it; (8) the executor is
//!   the one the request names.
//! - **Outcomes** come from the intent's executor, once per intent, and
//!   link an intent.
//! - **Break-glass**: a review deadline within the policy's window; only
//!   the one who broke the glass executes, once; a review comes from
//!   another human, after the execution.
//!
//! # One chain lifecycle
//!
//! A chain is *requested*, then *approved* or *denied*, then *executed*
//! (or its execution failed); a break-glass chain is *awaiting review*
//! after its execution. A chain holds at most one open **obligation** at a
//! time: a break-glass *review*, or an *undo* (opened when a review
//! REVOKEs the break-glass, due at once). An undo is an intent that links
//! the entry that opened it and exactly reverses the change: it needs no
//! new approval and is exempt from rule 5, and anyone but the reviewer
//! (or an assistant) may execute it; its successful outcome discharges the
//! obligation. A chain closes when it has executed and holds no open
//! obligation; nothing joins it after that.
//!
//! # Version 3: bounded chains
//!
//! Every string and list has a limit ([`limits`]); a chain holds at most
//! [`limits::MAX_CHAIN_ENTRIES`] entries besides refusal records, keeping
//! a place for an intent and its outcome, and one identity adds at most
//! [`limits::MAX_OPINIONS_PER_ACTOR`] recommendations and decisions to it;
//! a revocation takes a place in its target's chain and is not repeated;
//! a chain that cannot progress closes: at an admitted DENY (final), or
//! when its request outlives the class's maximum request age, once no
//! intent awaits its outcome. A log of version 2 moves to 3 with a second
//! parameters record, which must keep the recorded admin set.
//!
//! # Version 4: tickets. Version 5: time-bound grants
//!
//! Version 4: a request names its change tickets, and a class may require
//! one (rule 10). Version 5: a request asks for its access for a time
//! (`accessDurationSeconds`; none: permanent), and a class may set the
//! longest (`maxAccessDurationSeconds`; rule 11 refuses a request,
//! approval or intent past it, or asking for permanent access under it).
//! The successful outcome of an intent that adds grants the access until
//! its admission plus the shortest duration requested or approved, and
//! opens a *de-provisioning* obligation due then; the chain stays open.
//! What may join it:
//!
//! - an **extension**: an APPROVE linking the grant's outcome, from a
//!   person who may decide, while the grant is in force, saying how long;
//!   once as many people as the grant needed approve, it runs from then
//!   for the shortest they approved;
//! - an early **revocation** of the outcome, by an admin (one signature:
//!   it takes authority away), the requester or an approver: the
//!   de-provisioning is due at once;
//! - the **removal**, once the grant has ended or been revoked: an intent
//!   linking the outcome that removes exactly what it added, by anyone but
//!   who holds the access (or answers for them) or an assistant, with no
//!   approval and no policy check; its successful outcome (which no longer
//!   sees the access) discharges the obligation and closes the chain.
//!
//! Grants of the same access to the same subject and target overlap
//! without harm: when one ends while others in force hold all it granted,
//! its obligation closes as covered by them, and no removal (in any
//! chain) that would end a grant still in force is admitted.
//!
//! # Version 6: permanent grants are grants too
//!
//! Under version 5 a grant without a duration was not tracked: its chain
//! closed at its outcome, and no access review could see it. From
//! version 6 it is a grant that never ends: its chain stays open while it
//! is in force, holding no obligation. A campaign snapshots it like any
//! grant; a REVOKE (or the campaign's deadline, or a suspension of its
//! holder, or an early revocation of its outcome) opens its
//! de-provisioning, due after the class's removal window, and the removal
//! goes as for a grant that ended. It takes no extension (it needs none),
//! and a removal in another chain is refused while it is in force (revoke
//! its outcome first), as for any grant. As for a time-bound grant, an
//! intent that adds waits for the chain's pending intents: the first
//! outcome makes the chain's one grant, and a second must not hold access
//! that no grant tracks. Permanent grants made before a
//! log moved to version 6 stay untracked.
//!
//! # Version 7: an extension is held to a first grant's rules
//!
//! An extension takes effect, as before, once enough people approve it;
//! from version 7 "enough" is also what the policy in force now asks of
//! the entitlements the grant holds, with every `privileged` flag
//! counted: the granting chain's (its request, intent and the approvals
//! the intent linked, as rule 5 counted them) and the extension's own
//! approvals'. The approval that completes it is judged
//! by the organisation's Cedar policy (rule 7) as an execution that adds
//! what the grant holds, approved by who extends it, with
//! `context.extension` true (false for an intent; the attribute is absent
//! before version 7): a policy that would not permit the grant now does
//! not permit its extension. A key revoked or reported compromised voids
//! the KEEP certifications it signed (as it voids unused approvals) in
//! campaigns still open: the grant is to be reviewed again.

mod cache;
pub mod classes;
pub mod holdings;
pub mod limits;
mod rules;
mod state;

pub use cache::{StatementCache, StatementCaches};
pub use rules::within;
pub(crate) use state::stored_statement;
pub use state::{
    Campaign, CampaignItem, Chain, ChainKey, ChainStatus, Closure, GateState, Grant, Obligation,
    ObligationKind, Params, Recorded, StateStorage,
};

use crate::access::entry::proto::{PolicyPublication, RuleViolation};
use crate::access::entry::{Body, DecodedEntry};

/// A submission the log will not append at all (authentication,
/// authorisation, or links that do not fit the log). Nothing is logged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// HTTP status: 401, 403, 404, 409 or 422.
    pub status: u16,
    /// Machine-readable reason, e.g. `unknown_signer`.
    pub code: &'static str,
    /// The field at fault, as a proto3 JSON path, when there is one.
    pub field: Option<String>,
    pub message: String,
}

impl Rejection {
    pub(crate) fn new(status: u16, code: &'static str, message: impl Into<String>) -> Self {
        Rejection {
            status,
            code,
            field: None,
            message: message.into(),
        }
    }

    pub(crate) fn at(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }
}

/// The gate's answer for one authenticated, well-linked statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Append it.
    Admit,
    /// Do not append it; record a `GateRefusal` naming every broken rule.
    Refuse(Refusal),
}

/// Why the gate refused a statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub violations: Vec<RuleViolation>,
    /// The policy evaluated, if one was in force.
    pub policy: Option<crate::access::entry::proto::PolicyRef>,
}

/// Most violations a refusal record carries.
pub const MAX_RECORDED_VIOLATIONS: usize = 16;
/// The longest violation code and message a refusal record carries, in
/// bytes. Messages quote what was refused (entitlement names, ids), so an
/// uncapped message could make a record too large for an entry bundle.
pub const MAX_VIOLATION_CODE_BYTES: usize = 64;
pub const MAX_VIOLATION_MESSAGE_BYTES: usize = 512;

/// `s` cut to at most `max` bytes at a character boundary.
fn truncated(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max - '…'.len_utf8();
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

impl Refusal {
    /// The refusal as the log records it: at most
    /// [`MAX_RECORDED_VIOLATIONS`] violations, codes and messages capped,
    /// so that the record fits the tile format whatever was refused. The
    /// server records this and the audit compares against it.
    pub fn bounded(mut self) -> Refusal {
        self.violations.truncate(MAX_RECORDED_VIOLATIONS);
        for v in &mut self.violations {
            v.code = truncated(&v.code, MAX_VIOLATION_CODE_BYTES);
            v.message = truncated(&v.message, MAX_VIOLATION_MESSAGE_BYTES);
        }
        self
    }
}

/// The facts of a chain handed to the organisation's policy (rule 7) as
/// its context.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IntentFacts {
    pub chain_id: String,
    pub executor: String,
    pub executor_kind: String,
    pub requester: String,
    pub approvers: Vec<String>,
    pub human_approvals: i64,
    pub system: String,
    pub resource: String,
    pub subject: String,
    pub adds: Vec<String>,
    pub removes: Vec<String>,
    pub privileged: bool,
    pub high_risk: bool,
    pub break_glass: bool,
    pub recommended: bool,
    /// The request's change tickets, as `system:id`.
    pub tickets: Vec<String>,
    /// The systems of those tickets.
    pub ticket_systems: Vec<String>,
    /// Rules version 7: whether it is an extension of a grant (`adds`:
    /// what the grant holds, `approvers`: who extends it) rather than an
    /// intent; before version 7 the context has no such attribute.
    pub extension: Option<bool>,
}

/// Evaluates the organisation's policy (rule 7).
pub trait PolicyEngine {
    /// Checks that a policy set can be evaluated, before it is published.
    fn compile(&mut self, policy: &PolicyPublication) -> Result<(), String>;
    /// Whether `policy` allows the intent; `Err` when it cannot say.
    fn allows(&mut self, policy: &PolicyPublication, facts: &IntentFacts) -> Result<bool, String>;
}

/// The rules version this gate writes into new logs and upgrades.
pub const RULES_VERSION: u32 = 7;

/// The default number of distinct human approvals for a privileged
/// increase or a high-risk removal (the two-person rule).
pub const DEFAULT_PRIVILEGED_APPROVALS: u32 = 2;

/// Checks `entry`, which would get `index`, against `state`: `Err` means
/// do not log it at all; `Ok(Refuse)` means log a refusal instead. The
/// signature is not checked here (the sequencer batch-verifies against
/// [`GateState::signing_key`]).
pub fn check(
    state: &GateState,
    index: u64,
    entry: &DecodedEntry,
    engine: &mut dyn PolicyEngine,
) -> Result<Verdict, Rejection> {
    if entry.kind().is_log_record() {
        return rules::log_record(state, index, entry);
    }
    let v2 = state.rules_version() >= 2;
    if state.rules_version() >= 3 {
        limits::check_sizes(&entry.statement)?;
    }
    if let (4.., Some(Body::AccessRequest(r))) = (state.rules_version(), &entry.statement.body) {
        limits::check_tickets(r)?;
    }
    if state.rules_version() >= 5 {
        limits::check_durations(&entry.statement)?;
    }
    if v2 {
        rules::bound_to_log(state, entry)?;
    }
    state.authorize(entry)?;
    let linked = match state.resolve_links(index, entry) {
        Ok(linked) => linked,
        // Under version 2, an authenticated attempt that breaks a chain
        // rule is evidence: it is refused and recorded.
        Err(r) if v2 && CHAIN_RULES.contains(&r.code) => {
            return Ok(Verdict::Refuse(Refusal {
                violations: vec![RuleViolation {
                    rule: 1,
                    code: r.code.to_string(),
                    message: r.message,
                }],
                policy: None,
            }))
        }
        Err(r) => return Err(r),
    };
    rules::check(state, entry, &linked, engine)
}

/// Rejections that become recorded refusals under rules version 2.
const CHAIN_RULES: &[&str] = &[
    "cross_chain_link",
    "target_mismatch",
    "chain_closed",
    "chain_exists",
    "request_expired",
    "request_denied",
    "too_many_from_actor",
    "chain_granted",
];
