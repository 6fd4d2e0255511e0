//! The gate: what the log knows from its own history (identities, keys,
//! chains, delegations, revocations, the policy in force) and the rules a
//! statement must pass against it before it is appended.
//!
//! Pure and deterministic: the server runs it at append time and an
//! auditor replays it over the log alone, reaching the same verdicts.
//! Rule 7 (the organisation's Cedar policy) is behind [`PolicyEngine`] so
//! this module needs no Cedar.

mod rules;
mod state;

pub use state::{Chain, ChainStatus, Closure, GateState, Obligation, Recorded};

use crate::access::entry::proto::{PolicyPublication, RuleViolation};
use crate::access::entry::DecodedEntry;

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
}

/// Evaluates the organisation's policy (rule 7).
pub trait PolicyEngine {
    /// Checks that a policy set can be evaluated, before it is published.
    fn compile(&mut self, policy: &PolicyPublication) -> Result<(), String>;
    /// Whether `policy` allows the intent; `Err` when it cannot say.
    fn allows(&mut self, policy: &PolicyPublication, facts: &IntentFacts) -> Result<bool, String>;
}

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
    state.authorize(entry)?;
    let linked = state.resolve_links(index, entry)?;
    rules::check(state, entry, &linked, engine)
}
