//! `report.html`: the page an auditor works from. It opens from disk, with
//! no server and no network (styles and the table sorter are inline), and
//! stays small whatever the log: the population table and the decision
//! trails are capped ([`REPORT_ROWS`], [`REPORT_TRAILS`]); the CSV files
//! and `chains/` hold the rest.
//!
//! Rendered by askama from `templates/report.html`, which escapes every
//! value: chain ids, reasons and messages come from the log, which may be
//! hostile.

use std::collections::HashMap;

use askama::Template;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;

use crate::access::entry::proto::{
    decision, entitlement_op, execution_outcome, review, statement::Body, workload_identity, Actor,
    ActorKind, EntitlementDelta,
};
use crate::access::entry::{millis, DecodedEntry};
use crate::access::replay::{AuditSummary, ChainReport, Finding, Period, PopulationRow};
use crate::tlog::checkpoint::Checkpoint;

/// Population rows the page shows (population.csv has every chain).
pub const REPORT_ROWS: usize = 2_000;
/// Chains with findings whose decision trail the page shows; the others
/// are linked through exceptions.csv and `chains/`.
pub const REPORT_TRAILS: usize = 1_000;
/// Findings kept per chain for its trail.
pub const TRAIL_FINDINGS: usize = 20;

/// What a finding's code means, in words an auditor can act on.
pub fn explain(code: &str) -> &'static str {
    match code {
        "tree_mismatch" => "The entries do not hash to the root the checkpoint signs: the log served entries other than the ones it committed to.",
        "leaf_mismatch" => "An entry's hash differs from the log's own hash tile: the entry or the tile was changed, swapped, dropped or duplicated.",
        "tile_mismatch" => "An inclusion proof built from the log's hash tiles does not verify against the signed checkpoint: a hash tile was altered.",
        "not_an_entry" => "A leaf of the log is not a well-formed signed entry.",
        "bad_signature" => "The entry's signature does not verify with the key its signer had registered at that point of the log: the entry was forged or altered.",
        "signer" => "The entry's signer was not a registered identity with a valid key at that point of the log.",
        "genesis_mismatch" => "The log's first entry is not the one pinned with --genesis: the log's starting admins and rules are not the ones it was created with.",
        "log_time_after_cosignature" => "The log recorded a time later than a witness's cosignature of the checkpoint that covers it: the log dated entries into the future.",
        "not_consistent_with_since" => "The log's checkpoint does not extend the earlier checkpoint the audit started from: history was rewritten.",
        "invalid_entry" => "The entry breaks the schema's rules (a field missing, malformed or inconsistent), so the gate could not have admitted it.",
        "should_have_been_rejected" => "The log admitted an entry that the gate's checks reject.",
        "admitted_despite_gate" => "The log admitted a step that the gate's rules refuse (for an execution: an access change without the approvals the policy requires).",
        "refusal_unjustified" => "The log recorded a refusal that the gate's rules would not make.",
        "refusal_differs" => "The log's refusal names other rule violations than the gate finds.",
        "executed_beyond_request" => "The execution changed more than the request asked for (other entitlements, or a broader change), whatever approved it.",
        "outcome_mismatch" => "The reported outcome does not match the execution intent it reports on (another target, or other entitlements).",
        "drift" => "The state observed before this change differs from the state observed after the previous change to the same target: something changed the access outside the log.",
        "late_review" => "A break-glass change was reviewed after its review deadline.",
        "revoked_not_undone" => "A review revoked a break-glass change, and no execution has undone the change since.",
        "unreviewed_break_glass" => "A break-glass change was never reviewed, and its review deadline has passed.",
        "access_not_deprovisioned" => "Time-bound access ended (or was revoked) and has not been removed: the holder still has it.",
        "late_deprovisioning" => "Time-bound access was removed after it ended: the holder kept it past its end for the time stated.",
        "unreviewed_grant" => "An access review campaign reached its deadline without a reviewer's decision on this grant.",
        "access_past_end" => "An execution meant to remove ended access reported the access still present afterwards: it was kept past its end.",
        _ => "See the message.",
    }
}

/// One step of a decision trail: one entry of the chain.
pub struct Step {
    pub index: u64,
    pub time: String,
    pub actor: String,
    /// HUMAN, NHI or ASSISTANT.
    pub actor_kind: &'static str,
    /// The actor's workload identity (SPIFFE ID, cloud principal, ...).
    pub workload: String,
    /// What the step is, in words ("approved", "recommended (not an
    /// approval)", ...).
    pub action: String,
    /// A CSS class for the step's role.
    pub role: &'static str,
    /// Further lines: the delta before/after, reasons, results.
    pub details: Vec<String>,
    /// The entry's inclusion proof: "verified", or why not.
    pub proof: String,
}

/// A chain's decision trail, with its findings in words.
pub struct Trail {
    pub chain_id: String,
    pub status: String,
    pub target: String,
    /// `chains/<file>`, when the package has the chain's file.
    pub file: String,
    pub steps: Vec<Step>,
    pub findings: Vec<TrailFinding>,
    /// Findings the chain has beyond those shown.
    pub more_findings: usize,
    /// "all N verified", or the first failure.
    pub proofs: String,
}

/// A finding, explained.
pub struct TrailFinding {
    pub index: u64,
    pub code: String,
    pub explanation: &'static str,
    pub message: String,
}

/// A population row and its chain file.
pub struct Row {
    pub row: PopulationRow,
    pub file: String,
}

/// What the chain-file thread gathers for the page.
#[derive(Default)]
pub struct Gathered {
    /// The first [`REPORT_ROWS`] chains.
    pub rows: Vec<Row>,
    /// The first [`REPORT_TRAILS`] chains with findings (their findings
    /// are filled in by [`render`]).
    pub trails: Vec<Trail>,
}

/// An inclusion proof's status per entry: None verified, Some(why) not;
/// an empty slice when proofs were not checked.
pub fn trail(chain: &ChainReport, file: &str, proofs: &[Option<String>]) -> Trail {
    let r = &chain.row;
    let steps: Vec<Step> = chain
        .entries
        .iter()
        .enumerate()
        .map(|(i, (index, d))| {
            let proof = match proofs.get(i) {
                Some(None) => "verified".to_string(),
                Some(Some(why)) => why.clone(),
                None => "not checked".to_string(),
            };
            step(*index, d, proof)
        })
        .collect();
    let failed = proofs.iter().flatten().next();
    let proofs = match (failed, proofs.is_empty()) {
        (Some(why), _) => format!("FAILED: {why}"),
        (None, true) => "not checked".to_string(),
        (None, false) => format!("all {} verified against the checkpoint", proofs.len()),
    };
    Trail {
        chain_id: r.chain_id.clone(),
        status: r.status.clone(),
        target: format!("{} / {} for {}", r.system, r.resource, r.subject),
        file: file.to_string(),
        steps,
        findings: Vec::new(),
        more_findings: 0,
        proofs,
    }
}

fn kind_name(a: Option<&Actor>) -> &'static str {
    match a.and_then(|a| ActorKind::try_from(a.kind).ok()) {
        Some(ActorKind::Human) => "HUMAN",
        Some(ActorKind::Nhi) => "NHI",
        Some(ActorKind::Assistant) => "ASSISTANT",
        _ => "?",
    }
}

fn workload(a: Option<&Actor>) -> String {
    let Some(a) = a else { return String::new() };
    let id = a
        .workload
        .as_ref()
        .and_then(|w| w.id.as_ref())
        .map(|id| match id {
            workload_identity::Id::SpiffeId(s) => format!("SPIFFE {s}"),
            workload_identity::Id::CloudPrincipal(s) => format!("cloud principal {s}"),
            workload_identity::Id::KubernetesServiceAccount(s) => format!("Kubernetes SA {s}"),
        });
    let model =
        (!a.model_id.is_empty()).then(|| format!("model {} agent {}", a.model_id, a.agent_id));
    [id, model]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(", ")
}

/// "before [a] → after [a, b] (+b −c)".
fn delta(d: Option<&EntitlementDelta>) -> String {
    let Some(d) = d else {
        return "no delta".to_string();
    };
    let ops: Vec<String> = d
        .ops
        .iter()
        .map(|o| {
            let sign = if o.op == entitlement_op::Op::Add as i32 {
                '+'
            } else {
                '−'
            };
            format!("{sign}{}", o.entitlement)
        })
        .collect();
    let mut flags = Vec::new();
    if d.privileged {
        flags.push("privileged");
    }
    if d.high_risk {
        flags.push("high-risk");
    }
    format!(
        "before [{}] → after [{}] ({}){}",
        d.before.join(", "),
        d.after.join(", "),
        ops.join(" "),
        if flags.is_empty() {
            String::new()
        } else {
            format!(", {}", flags.join(", "))
        }
    )
}

fn readable_time(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_else(|| format!("{ms} ms"))
}

fn step(index: u64, d: &DecodedEntry, proof: String) -> Step {
    let st = &d.statement;
    let actor = st.actor.as_ref();
    let mut details = Vec::new();
    let (action, role) = match &st.body {
        Some(Body::AccessRequest(b)) => {
            details.push(format!("delta: {}", delta(b.delta.as_ref())));
            if !b.justification.is_empty() {
                details.push(format!("justification: {}", b.justification));
            }
            ("requested".to_string(), "request")
        }
        Some(Body::Recommendation(b)) => {
            details.push(format!(
                "proposed delta: {}",
                delta(b.proposed_delta.as_ref())
            ));
            (
                "recommended (a recommendation, not an approval)".to_string(),
                "recommendation",
            )
        }
        Some(Body::Decision(b)) => {
            details.push(format!(
                "approved delta: {}",
                delta(b.approved_delta.as_ref())
            ));
            if let Some(t) = &b.expires_at {
                details.push(format!("expires {}", readable_time(millis(t))));
            }
            if !b.reason.is_empty() {
                details.push(format!("reason: {}", b.reason));
            }
            let by_assistant = actor.is_some_and(|a| a.kind == ActorKind::Assistant as i32);
            if b.outcome == decision::Outcome::Approve as i32 && by_assistant {
                // Evidence of an attempt, never an approval.
                (
                    "\u{201c}approved\u{201d}: an assistant cannot approve".to_string(),
                    "deny",
                )
            } else if b.outcome == decision::Outcome::Approve as i32 {
                ("approved".to_string(), "approval")
            } else {
                ("DENIED".to_string(), "deny")
            }
        }
        Some(Body::ExecutionIntent(b)) => {
            details.push(format!("delta: {}", delta(b.delta.as_ref())));
            if let Some(p) = &st.policy {
                details.push(format!("under policy {}@{}", p.policy_id, p.version));
            }
            ("intends to execute".to_string(), "execution")
        }
        Some(Body::ExecutionOutcome(b)) => {
            details.push(format!(
                "observed before [{}] → after [{}]",
                b.observed_before.join(", "),
                b.observed_after.join(", ")
            ));
            if !b.change_id.is_empty() {
                details.push(format!("change {}", b.change_id));
            }
            let result = if b.result == execution_outcome::Result::Succeeded as i32 {
                "executed: SUCCEEDED"
            } else {
                "executed: FAILED"
            };
            (result.to_string(), "outcome")
        }
        Some(Body::BreakGlass(b)) => {
            details.push(format!("delta: {}", delta(b.delta.as_ref())));
            details.push(format!("reason: {}", b.reason));
            if let Some(t) = &b.review_deadline {
                details.push(format!("review due {}", readable_time(millis(t))));
            }
            (
                "broke the glass (executed without approval)".to_string(),
                "break-glass",
            )
        }
        Some(Body::Review(b)) => {
            if !b.notes.is_empty() {
                details.push(format!("notes: {}", b.notes));
            }
            let verdict = if b.verdict == review::Verdict::Ratify as i32 {
                "RATIFY"
            } else {
                "REVOKE"
            };
            (format!("reviewed the break-glass: {verdict}"), "review")
        }
        Some(Body::Revocation(b)) => {
            if let Some(r) = &b.revoked {
                details.push(format!("revokes entry {}", r.index));
            }
            details.push(format!("reason: {}", b.reason));
            ("revoked".to_string(), "deny")
        }
        Some(Body::GateRefusal(b)) => {
            for v in &b.violations {
                details.push(format!("rule {} {}: {}", v.rule, v.code, v.message));
            }
            ("the log's gate REFUSED an attempt".to_string(), "refusal")
        }
        _ => (d.kind().name().to_string(), "other"),
    };
    if !st.links.is_empty() {
        let links: Vec<String> = st.links.iter().map(|l| l.index.to_string()).collect();
        details.push(format!("links entries {}", links.join(", ")));
    }
    if let Some(on) = &st.on_behalf_of {
        details.push(format!("on behalf of {}", on.principals.join(", ")));
    }
    Step {
        index,
        time: st
            .issued_at
            .as_ref()
            .map(|t| readable_time(millis(t)))
            .unwrap_or_default(),
        actor: actor.map_or(String::new(), |a| a.id.clone()),
        actor_kind: kind_name(actor),
        workload: workload(actor),
        action,
        role,
        details,
        proof,
    }
}

/// A bar of the timeline, in SVG units.
struct Bar {
    x: String,
    width: String,
    entries_y: String,
    entries_height: String,
    refusals_y: String,
    refusals_height: String,
    title: String,
}

/// An axis tick: where, and its label.
struct Tick {
    at: String,
    label: String,
}

/// The timeline's drawing area.
const PLOT_LEFT: f64 = 70.0;
const PLOT_WIDTH: f64 = 840.0;
const PLOT_TOP: f64 = 10.0;
const PLOT_HEIGHT: f64 = 180.0;

#[derive(Template)]
#[template(path = "report.html")]
struct Page<'a> {
    origin: &'a str,
    clean: bool,
    tree_verified: bool,
    tree_size: u64,
    root: String,
    checkpoint: &'a str,
    since_size: Option<u64>,
    since_consistent: bool,
    period: String,
    tool: String,
    s: &'a AuditSummary,
    kinds: Vec<(&'static str, u64)>,
    codes: Vec<(String, u64, &'static str)>,
    bars: Vec<Bar>,
    x_ticks: Vec<Tick>,
    y_ticks: Vec<Tick>,
    y_label: String,
    per: String,
    plot_bottom: String,
    plot_right: String,
    timeline_from: String,
    timeline_to: String,
    rows: &'a [Row],
    rows_hidden: u64,
    trails: &'a [Trail],
    findings: &'a [Finding],
}

/// The date of a bucket start.
fn day(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.format("%Y-%m-%d").to_string())
        .unwrap_or_default()
}

/// What the period covers, in words.
fn period_words(p: Option<Period>) -> String {
    let Some(p) = p else {
        return "the whole log".to_string();
    };
    let end = |ms: i64| (ms != i64::MIN && ms != i64::MAX).then(|| readable_time(ms));
    match (end(p.from_ms), end(p.to_ms)) {
        (Some(f), Some(t)) => format!("from {f} to {t} (exclusive)"),
        (Some(f), None) => format!("from {f} on"),
        (None, Some(t)) => format!("until {t} (exclusive)"),
        (None, None) => "the whole log".to_string(),
    }
}

/// Everything the page shows.
pub struct Inputs<'a> {
    pub cp: &'a Checkpoint,
    pub note: &'a [u8],
    pub since: Option<(u64, bool)>,
    pub period: Option<Period>,
    pub summary: &'a AuditSummary,
    pub gathered: Gathered,
    /// Findings per chain, for the trails.
    pub chain_findings: HashMap<String, (Vec<Finding>, usize)>,
}

/// Renders `report.html`.
pub fn render(inputs: Inputs<'_>) -> Result<String, askama::Error> {
    let s = inputs.summary;
    let mut trails = inputs.gathered.trails;
    for t in &mut trails {
        if let Some((findings, total)) = inputs.chain_findings.get(&t.chain_id) {
            t.findings = findings
                .iter()
                .map(|f| TrailFinding {
                    index: f.index,
                    code: f.code.clone(),
                    explanation: explain(&f.code),
                    message: f.message.clone(),
                })
                .collect();
            t.more_findings = total - findings.len();
        }
    }
    // The timeline's axes: y from 0 to the busiest bucket, x by date.
    let buckets = &s.timeline;
    let max = buckets.iter().map(|b| b.1).max().unwrap_or(0).max(1);
    let slot = PLOT_WIDTH / buckets.len().max(1) as f64;
    let y = |n: u64| PLOT_TOP + PLOT_HEIGHT - n as f64 / max as f64 * PLOT_HEIGHT;
    let bucket_days = match buckets.as_slice() {
        [a, b, ..] => (b.0 - a.0) / 86_400_000,
        _ => 1,
    };
    // Bars no wider than 40 units, centred in their slot.
    let bar_width = (slot * 0.85).clamp(0.5, 40.0);
    let per = if bucket_days == 1 {
        "day".to_string()
    } else {
        format!("{bucket_days} days")
    };
    let bars = buckets
        .iter()
        .enumerate()
        .map(|(i, &(start, n, refused))| Bar {
            x: format!(
                "{:.2}",
                PLOT_LEFT + i as f64 * slot + (slot - bar_width) / 2.0
            ),
            width: format!("{bar_width:.2}"),
            entries_y: format!("{:.2}", y(n)),
            entries_height: format!("{:.2}", PLOT_TOP + PLOT_HEIGHT - y(n)),
            refusals_y: format!("{:.2}", y(refused)),
            refusals_height: format!("{:.2}", PLOT_TOP + PLOT_HEIGHT - y(refused)),
            title: format!("{} ({per}): {n} entries, {refused} refusals", day(start)),
        })
        .collect();
    let y_ticks = [0, max / 2, max]
        .iter()
        .map(|&n| Tick {
            at: format!("{:.2}", y(n)),
            label: n.to_string(),
        })
        .collect();
    let x_count = buckets.len().min(7);
    let x_ticks = (0..x_count)
        .map(|k| {
            let i = if x_count == 1 {
                0
            } else {
                k * (buckets.len() - 1) / (x_count - 1)
            };
            Tick {
                at: format!("{:.2}", PLOT_LEFT + (i as f64 + 0.5) * slot),
                label: day(buckets[i].0),
            }
        })
        .collect();
    let mut codes: Vec<(String, u64, &'static str)> = s
        .findings_by_code
        .iter()
        .map(|(c, n)| (c.clone(), *n, explain(c)))
        .collect();
    codes.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    let page = Page {
        origin: &inputs.cp.origin,
        clean: s.findings == 0 && s.tree_verified,
        tree_verified: s.tree_verified,
        tree_size: inputs.cp.size,
        root: B64.encode(inputs.cp.root),
        checkpoint: std::str::from_utf8(inputs.note).unwrap_or(""),
        since_size: inputs.since.map(|s| s.0),
        since_consistent: inputs.since.is_some_and(|s| s.1),
        period: period_words(inputs.period),
        tool: format!("gatelog {}", env!("CARGO_PKG_VERSION")),
        s,
        kinds: s.by_kind.iter().map(|(k, n)| (*k, *n)).collect(),
        codes,
        bars,
        x_ticks,
        y_ticks,
        y_label: format!("entries per {per}"),
        per,
        plot_bottom: format!("{:.2}", PLOT_TOP + PLOT_HEIGHT),
        plot_right: format!("{:.2}", PLOT_LEFT + PLOT_WIDTH),
        timeline_from: buckets.first().map(|b| day(b.0)).unwrap_or_default(),
        timeline_to: buckets.last().map(|b| day(b.0)).unwrap_or_default(),
        rows: &inputs.gathered.rows,
        rows_hidden: s.chains.saturating_sub(inputs.gathered.rows.len() as u64),
        trails: &trails,
        findings: &s.first_findings,
    };
    page.render()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_finding_code_has_an_explanation() {
        for code in crate::access::replay::INTEGRITY_CODES {
            assert_ne!(explain(code), "See the message.", "{code}");
        }
        for code in [
            "admitted_despite_gate",
            "drift",
            "late_review",
            "unreviewed_break_glass",
            "access_not_deprovisioned",
            "late_deprovisioning",
            "access_past_end",
            "outcome_mismatch",
        ] {
            assert_ne!(explain(code), "See the message.", "{code}");
        }
    }

    #[test]
    fn hostile_text_is_escaped() {
        let cp = Checkpoint {
            origin: "<script>alert(1)</script>".into(),
            size: 0,
            root: [0; 32],
            extensions: vec![],
        };
        let summary = AuditSummary::default();
        let html = render(Inputs {
            cp: &cp,
            note: b"",
            since: None,
            period: None,
            summary: &summary,
            gathered: Gathered::default(),
            chain_findings: HashMap::new(),
        })
        .unwrap();
        assert!(!html.contains("<script>alert(1)"), "{html}");
        assert!(
            html.contains("&#60;script&#62;alert(1)") || html.contains("&lt;script&gt;alert(1)")
        );
    }
}
