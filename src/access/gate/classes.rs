//! Entitlement classes (rules version 2): what the published policy says
//! a change needs. Which entitlements are privileged to add or high-risk
//! to remove, how many human approvals they need, and how long an
//! approval or a break-glass review window may last. The requester's
//! `privileged`/`highRisk` flags can raise these, never lower them.

use crate::access::entry::proto::{entitlement_op::Op, EntitlementDelta, PolicyPublication};

use super::limits::DEFAULT_MAX_REQUEST_AGE_MS;
use super::DEFAULT_PRIVILEGED_APPROVALS;

/// The longest an approval lasts when no class says otherwise: 7 days.
pub const DEFAULT_MAX_APPROVAL_LIFETIME_MS: i64 = 7 * 24 * 3600 * 1000;
/// The longest a break-glass waits for review when no class says
/// otherwise: 72 hours.
pub const DEFAULT_MAX_REVIEW_WINDOW_MS: i64 = 72 * 3600 * 1000;

/// How long the removal of ended access may take when no class says
/// otherwise: 15 minutes.
pub const DEFAULT_DEPROVISION_WINDOW_MS: i64 = 15 * 60 * 1000;

/// What a delta needs under the policy in force.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Requirements {
    /// An entitlement it adds is privileged.
    pub privileged: bool,
    /// An entitlement it removes is high-risk.
    pub high_risk: bool,
    /// Distinct human approvals it needs (at least 1).
    pub approvals: u32,
    pub max_approval_lifetime_ms: i64,
    pub max_review_window_ms: i64,
    /// Rules version 3: how long a request stays open.
    pub max_request_age_ms: i64,
    /// A request must name a change ticket.
    pub ticket: bool,
    /// Rules version 5: the longest the access it adds may last; `None`:
    /// no class sets a maximum, so it may be permanent.
    pub max_access_duration_ms: Option<i64>,
    /// Rules version 5: how long the removal of ended access may take.
    pub deprovision_window_ms: i64,
}

/// What `delta` on `system` needs under `policy`: every matching class
/// applies and the strictest value wins.
pub fn requirements(
    policy: Option<&PolicyPublication>,
    system: &str,
    delta: &EntitlementDelta,
) -> Requirements {
    requirements_flagged(policy, system, delta, delta.privileged, delta.high_risk)
}

/// As [`requirements`], with the requester's flags as given (a chain's
/// flags: set on the request or any approval, they count for the intent).
pub fn requirements_flagged(
    policy: Option<&PolicyPublication>,
    system: &str,
    delta: &EntitlementDelta,
    privileged: bool,
    high_risk: bool,
) -> Requirements {
    let base = policy
        .map(|p| p.privileged_approvals)
        .filter(|n| *n > 0)
        .unwrap_or(DEFAULT_PRIVILEGED_APPROVALS);
    let adds = || entitlements(delta, Op::Add);
    let removes = || entitlements(delta, Op::Remove);
    let mut r = Requirements {
        privileged: privileged && adds().next().is_some(),
        high_risk: high_risk && removes().next().is_some(),
        approvals: 1,
        max_approval_lifetime_ms: DEFAULT_MAX_APPROVAL_LIFETIME_MS,
        max_review_window_ms: DEFAULT_MAX_REVIEW_WINDOW_MS,
        max_request_age_ms: DEFAULT_MAX_REQUEST_AGE_MS,
        ticket: false,
        max_access_duration_ms: None,
        deprovision_window_ms: DEFAULT_DEPROVISION_WINDOW_MS,
    };
    if r.privileged || r.high_risk {
        r.approvals = base;
    }
    let classes = policy.map_or(&[][..], |p| p.classes.as_slice());
    for class in classes
        .iter()
        .filter(|c| c.system.is_empty() || c.system == system)
    {
        let (added, removed) = (
            adds().any(|e| glob_match(&class.pattern, e)),
            removes().any(|e| glob_match(&class.pattern, e)),
        );
        let needs = if class.approvals > 0 {
            class.approvals
        } else {
            base
        };
        if added && class.privileged {
            r.privileged = true;
            r.approvals = r.approvals.max(needs);
        }
        if removed && class.high_risk {
            r.high_risk = true;
            r.approvals = r.approvals.max(needs);
        }
        if added || removed {
            if let Some(ms) = seconds_ms(class.max_approval_lifetime_seconds) {
                r.max_approval_lifetime_ms = r.max_approval_lifetime_ms.min(ms);
            }
            if let Some(ms) = seconds_ms(class.max_review_window_seconds) {
                r.max_review_window_ms = r.max_review_window_ms.min(ms);
            }
            if let Some(ms) = seconds_ms(class.max_request_age_seconds) {
                r.max_request_age_ms = r.max_request_age_ms.min(ms);
            }
            r.ticket |= class.requires_ticket;
        }
        // Only what is added lasts; a removal has no duration.
        if added {
            if let Some(ms) = seconds_ms(class.max_access_duration_seconds) {
                r.max_access_duration_ms =
                    Some(r.max_access_duration_ms.map_or(ms, |m: i64| m.min(ms)));
            }
            if let Some(ms) = seconds_ms(class.deprovision_window_seconds) {
                r.deprovision_window_ms = r.deprovision_window_ms.min(ms);
            }
        }
    }
    r
}

fn entitlements(delta: &EntitlementDelta, op: Op) -> impl Iterator<Item = &str> {
    delta
        .ops
        .iter()
        .filter(move |o| o.op == op as i32)
        .map(|o| o.entitlement.as_str())
}

/// The entitlements `delta` adds (or removes), in its order.
pub(super) fn ops(delta: &EntitlementDelta, op: Op) -> Vec<String> {
    entitlements(delta, op).map(str::to_string).collect()
}

/// Seconds in milliseconds, saturating.
pub(super) fn ms(seconds: u64) -> i64 {
    i64::try_from(seconds.saturating_mul(1000)).unwrap_or(i64::MAX)
}

/// 0 means "the default"; anything else in milliseconds, saturating.
fn seconds_ms(s: u64) -> Option<i64> {
    (s > 0).then(|| ms(s))
}

/// Whether `text` matches `pattern`, where `*` matches any run of
/// characters (including none) and everything else matches itself.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let (p, t) = (pattern.as_bytes(), text.as_bytes());
    let (mut pi, mut ti) = (0, 0);
    // The last `*` seen and the text position it currently covers up to.
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, ti));
            pi += 1;
        } else if pi < p.len() && p[pi] == t[ti] {
            pi += 1;
            ti += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access::entry::build::delta;
    use crate::access::entry::proto::EntitlementClass;

    #[test]
    fn globs_match_runs_of_anything() {
        assert!(glob_match("admin", "admin"));
        assert!(!glob_match("admin", "admins"));
        assert!(glob_match("admin*", "admins"));
        assert!(glob_match("*:write", "repo:write"));
        assert!(!glob_match("*:write", "repo:read"));
        assert!(glob_match("a*b*c", "aXXbYYc"));
        assert!(!glob_match("a*b*c", "aXXbYY"));
        assert!(glob_match("*", ""));
        assert!(!glob_match("", "x"));
    }

    fn policy(classes: Vec<EntitlementClass>) -> PolicyPublication {
        PolicyPublication {
            policy_id: "p".into(),
            version: 1,
            cedar: "permit(principal, action, resource);".into(),
            privileged_approvals: 0,
            classes,
        }
    }

    #[test]
    fn the_policy_decides_privilege_and_the_requester_can_only_raise_it() {
        let p = policy(vec![EntitlementClass {
            system: "github".into(),
            pattern: "admin".into(),
            privileged: true,
            approvals: 3,
            max_approval_lifetime_seconds: 3600,
            ..Default::default()
        }]);
        // Unflagged, but the class makes it privileged.
        let d = delta(&["read"], &["admin"], &[]);
        let r = requirements(Some(&p), "github", &d);
        assert!(r.privileged);
        assert_eq!(r.approvals, 3);
        assert_eq!(r.max_approval_lifetime_ms, 3_600_000);
        // Another system: the class does not apply.
        let r = requirements(Some(&p), "aws", &d);
        assert!(!r.privileged);
        assert_eq!(r.approvals, 1);
        assert_eq!(r.max_approval_lifetime_ms, DEFAULT_MAX_APPROVAL_LIFETIME_MS);
        // The requester raises an ordinary change to the default two.
        let mut w = delta(&["read"], &["write"], &[]);
        w.privileged = true;
        assert_eq!(requirements(Some(&p), "github", &w).approvals, 2);
        // A removal is high-risk only where a class says so.
        let rm = delta(&["read", "admin"], &[], &["admin"]);
        assert!(!requirements(Some(&p), "github", &rm).high_risk);
    }
}
