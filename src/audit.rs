//! The audit: replays a log from its entries alone and reports what is
//! wrong with it. Pure: the caller feeds entries in order and a checkpoint.
//!
//! For every entry it checks the signature against the identity registry
//! as it stood at that point, re-runs the gate with the server's own rule
//! code (an admitted entry the gate refuses, or a refusal the gate would
//! not make, is a finding), and checks what only hindsight can: outcomes
//! match their intents, no drift between one change's observed state and
//! the next, break-glass reviews on time. At the end the entries must hash
//! to the checkpoint's root.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

use crate::checkpoint::Checkpoint;
use crate::entry::proto::execution_outcome;
use crate::entry::{self, millis, validate, Body, DecodedEntry, Kind, Limits};
use crate::gate::{self, GateState, PolicyEngine, Verdict};
use crate::merkle::{leaf_hash, CompactRange};
use crate::note::NoteVerifier;

/// One thing wrong, where.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub index: u64,
    pub chain_id: String,
    pub code: String,
    pub message: String,
}

/// One decision chain, for the population an auditor samples from.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PopulationRow {
    pub chain_id: String,
    pub opened_at: u64,
    pub status: String,
    pub requester: String,
    pub approvers: Vec<String>,
    pub executor: String,
    pub executor_workload: String,
    pub system: String,
    pub resource: String,
    pub subject: String,
    pub adds: Vec<String>,
    pub removes: Vec<String>,
    pub privileged: bool,
    pub policy: String,
    pub break_glass: bool,
    pub review: String,
    pub findings: usize,
}

/// Counts by statement kind, the findings and the population.
#[derive(Debug, Default, Serialize)]
pub struct AuditSummary {
    pub entries: u64,
    pub by_kind: BTreeMap<&'static str, u64>,
    pub findings: Vec<Finding>,
    pub population: Vec<PopulationRow>,
    /// Entries per time bucket (issuedAt), for the report's timeline:
    /// (bucket start in ms, entries, refusals).
    pub timeline: Vec<(i64, u64, u64)>,
    /// Whether the entries hash to the checkpoint's root.
    pub tree_verified: bool,
}

/// Replays a log entry by entry.
pub struct Auditor {
    state: GateState,
    engine: Box<dyn PolicyEngine>,
    range: CompactRange,
    summary: AuditSummary,
    /// (system, resource, subject) → entitlements after the last change.
    last_after: HashMap<(String, String, String), Vec<String>>,
    /// (issuedAt ms, whether a refusal) of every entry, for the timeline.
    times: Vec<(i64, bool)>,
}

fn sorted(v: &[String]) -> Vec<String> {
    let mut v = v.to_vec();
    v.sort();
    v
}

impl Auditor {
    /// An audit trusting `admins` (the log's bootstrap admins) and
    /// `log_key` for the log's own refusal records.
    pub fn new(
        log_key: NoteVerifier,
        admins: Vec<NoteVerifier>,
        engine: Box<dyn PolicyEngine>,
    ) -> Self {
        Auditor {
            state: GateState::new(log_key, admins),
            engine,
            range: CompactRange::default(),
            summary: AuditSummary::default(),
            last_after: HashMap::new(),
            times: Vec::new(),
        }
    }

    fn find(&mut self, index: u64, chain_id: &str, code: &str, message: String) {
        self.summary.findings.push(Finding {
            index,
            chain_id: chain_id.to_string(),
            code: code.to_string(),
            message,
        });
    }

    /// Checks the next entries (`first` is the index of the first) and
    /// applies them; their signatures are checked in one batch.
    pub fn entries(&mut self, first: u64, leaves: &[&[u8]]) {
        let decoded: Vec<_> = leaves.iter().map(|l| DecodedEntry::decode(l)).collect();
        let keyed: Vec<_> = decoded
            .iter()
            .map(|d| {
                let d = d.as_ref().ok()?;
                Some((d, self.state.signing_key(d).ok()?))
            })
            .collect();
        // Signatures are most of an audit's work: check the two halves of
        // the batch on two threads.
        let (left, right) = keyed.split_at(keyed.len() / 2);
        let verified: Vec<bool> = std::thread::scope(|s| {
            let left = s.spawn(|| entry::verify_all(left));
            let mut right = entry::verify_all(right);
            let mut all = left.join().expect("signature check thread");
            all.append(&mut right);
            all
        });
        let batch_keys: Vec<_> = keyed.iter().map(|k| k.map(|(_, key)| key)).collect();
        for (k, (leaf, d)) in leaves.iter().zip(decoded).enumerate() {
            let checked = batch_keys[k].map(|key| (key, verified[k]));
            self.entry(first + k as u64, leaf, d, checked);
        }
    }

    /// Checks one entry and applies it; `batch_check` is its signature check
    /// with the key known before its batch, if there was one.
    fn entry(
        &mut self,
        index: u64,
        leaf: &[u8],
        decoded: Result<DecodedEntry, entry::EntryError>,
        batch_check: Option<(ed25519_dalek::VerifyingKey, bool)>,
    ) {
        debug_assert_eq!(index, self.range.size());
        self.range.push(leaf_hash(leaf));
        self.summary.entries += 1;
        let d = match decoded {
            Ok(d) => d,
            Err(e) => return self.find(index, "", "not_an_entry", e.to_string()),
        };
        *self.summary.by_kind.entry(d.kind().name()).or_default() += 1;
        let chain = d.statement.chain_id.clone();
        let issued = d.statement.issued_at.as_ref().map_or(0, millis);
        self.times.push((issued, d.kind() == Kind::GateRefusal));
        // Judged at its own time: the audit has no "now" for old entries.
        let at = d.statement.issued_at.as_ref().map_or(0, millis);
        // The log's own refusal records are checked by their signature.
        let checked = if d.kind() == Kind::GateRefusal {
            Ok(())
        } else {
            validate(&d, at, &Limits::default())
        };
        if let Err(e) = checked {
            self.find(index, &chain, "invalid_entry", e.to_string());
        }
        match self.state.signing_key(&d) {
            Err(r) => self.find(
                index,
                &chain,
                "signer",
                format!("{}: {}", r.code, r.message),
            ),
            Ok(key) => {
                // A key that changed earlier in the batch is checked alone.
                let good = match batch_check {
                    Some((batch_key, good)) if batch_key == key => good,
                    _ => entry::verify(&key, &d.signed.statement, &d.signed.signature),
                };
                if !good {
                    self.find(
                        index,
                        &chain,
                        "bad_signature",
                        format!("the signature of {} does not verify", d.signed.signer_id),
                    );
                }
            }
        }
        match gate::check(&self.state, index, &d, self.engine.as_mut()) {
            Err(r) => self.find(
                index,
                &chain,
                "should_have_been_rejected",
                format!("{} ({}): {}", d.kind().name(), r.code, r.message),
            ),
            Ok(Verdict::Refuse(r)) if d.kind() != Kind::GateRefusal => {
                let rules: Vec<String> = r
                    .violations
                    .iter()
                    .map(|v| format!("rule {} {}: {}", v.rule, v.code, v.message))
                    .collect();
                self.find(index, &chain, "admitted_despite_gate", rules.join("; "));
            }
            _ => {}
        }
        if let Some(Body::GateRefusal(g)) = &d.statement.body {
            self.refusal(index, &chain, g);
        }
        self.hindsight(index, &d);
        self.state.apply(index, &d);
    }

    /// A refusal record must be one the gate would make.
    fn refusal(&mut self, index: u64, chain: &str, g: &crate::entry::proto::GateRefusal) {
        let Ok(refused) = DecodedEntry::decode(&g.refused_entry) else {
            return self.find(
                index,
                chain,
                "refusal_unjustified",
                "the refused entry does not decode".into(),
            );
        };
        let recorded: Vec<&str> = g.violations.iter().map(|v| v.code.as_str()).collect();
        match gate::check(&self.state, index, &refused, self.engine.as_mut()) {
            Ok(Verdict::Refuse(r)) => {
                let replayed: Vec<&str> = r.violations.iter().map(|v| v.code.as_str()).collect();
                if replayed != recorded {
                    let m = format!("recorded {recorded:?}, the gate now finds {replayed:?}");
                    self.find(index, chain, "refusal_differs", m);
                }
            }
            _ => self.find(
                index,
                chain,
                "refusal_unjustified",
                format!("recorded {recorded:?}, but the gate admits the entry"),
            ),
        }
    }

    /// What only hindsight can check.
    fn hindsight(&mut self, index: u64, d: &DecodedEntry) {
        let st = &d.statement;
        let chain = st.chain_id.clone();
        match &st.body {
            Some(Body::ExecutionOutcome(o))
                if o.result == execution_outcome::Result::Succeeded as i32 =>
            {
                let intent = st
                    .links
                    .iter()
                    .filter_map(|l| self.state.recorded(l.index))
                    .find_map(|r| match &r.statement.body {
                        Some(Body::ExecutionIntent(i)) => i.delta.clone(),
                        Some(Body::BreakGlass(b)) => b.delta.clone(),
                        _ => None,
                    });
                if let Some(delta) = intent {
                    if sorted(&delta.after) != sorted(&o.observed_after) {
                        let m = format!(
                            "observed after {:?}, the intent declared {:?}",
                            o.observed_after, delta.after
                        );
                        self.find(index, &chain, "outcome_mismatch", m);
                    }
                }
                if let Some(target) = self.state.chain(&chain).map(|c| c.target.clone()) {
                    let key = (target.system, target.resource, target.subject);
                    if let Some(last) = self.last_after.get(&key) {
                        if !o.observed_before.is_empty()
                            && sorted(last) != sorted(&o.observed_before)
                        {
                            let m = format!(
                                "observed before {:?}, but the last change left {:?}",
                                o.observed_before, last
                            );
                            self.find(index, &chain, "drift", m);
                        }
                    }
                    self.last_after.insert(key, o.observed_after.clone());
                }
            }
            Some(Body::Review(_)) => {
                let reviewed = st.issued_at.as_ref().map_or(0, millis);
                for l in &st.links {
                    if let Some(o) = self
                        .state
                        .obligations()
                        .into_iter()
                        .find(|o| o.index == l.index)
                    {
                        if reviewed > o.deadline_ms {
                            let m = format!(
                                "break-glass {} reviewed {} s after its deadline",
                                o.index,
                                (reviewed - o.deadline_ms) / 1000
                            );
                            self.find(index, &chain, "late_review", m);
                        }
                    }
                }
            }
            _ => {}
        }
    }

    /// Ends the audit at checkpoint `cp`, with `now_ms` the time of the
    /// audit (break-glass past its deadline and still unreviewed).
    pub fn finish(mut self, cp: &Checkpoint, now_ms: i64) -> AuditSummary {
        self.summary.tree_verified = self.range.size() == cp.size && self.range.root() == cp.root;
        if !self.summary.tree_verified {
            let m = format!(
                "{} entries that do not hash to the checkpoint's root at size {}: an entry was changed, swapped, dropped or duplicated",
                self.range.size(),
                cp.size
            );
            self.find(cp.size, "", "tree_mismatch", m);
        }
        let overdue: Vec<(u64, String, i64)> = self
            .state
            .obligations()
            .into_iter()
            .filter(|o| o.deadline_ms < now_ms)
            .map(|o| (o.index, o.chain_id.clone(), o.deadline_ms))
            .collect();
        self.summary.population = self.population(now_ms);
        self.summary.timeline = timeline(&self.times, 48);
        for (index, chain, deadline) in overdue {
            let m = format!(
                "break-glass {index} has no review by another human, {} s past its deadline",
                (now_ms - deadline) / 1000
            );
            self.find(index, &chain, "unreviewed_break_glass", m);
        }
        self.summary
    }
}

/// Entries and refusals per bucket, `buckets` across the time span.
fn timeline(times: &[(i64, bool)], buckets: usize) -> Vec<(i64, u64, u64)> {
    let (Some(lo), Some(hi)) = (
        times.iter().map(|t| t.0).min(),
        times.iter().map(|t| t.0).max(),
    ) else {
        return vec![];
    };
    let width = ((hi - lo) / buckets as i64).max(1);
    let mut out: Vec<(i64, u64, u64)> = (0..=buckets as i64)
        .map(|b| (lo + b * width, 0, 0))
        .collect();
    for (t, refusal) in times {
        let b = (((t - lo) / width) as usize).min(buckets);
        out[b].1 += 1;
        out[b].2 += u64::from(*refusal);
    }
    out
}

impl Auditor {
    /// One row per chain.
    fn population(&self, now_ms: i64) -> Vec<PopulationRow> {
        use crate::entry::proto::{decision, entitlement_op, workload_identity};
        let mut findings: HashMap<&str, usize> = HashMap::new();
        for f in &self.summary.findings {
            *findings.entry(f.chain_id.as_str()).or_default() += 1;
        }
        let mut rows: Vec<PopulationRow> = self
            .state
            .chains()
            .map(|(id, chain)| {
                let mut row = PopulationRow {
                    chain_id: id.clone(),
                    opened_at: chain.opener,
                    status: serde_json::to_value(self.state.status(chain))
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_string))
                        .unwrap_or_default(),
                    system: chain.target.system.clone(),
                    resource: chain.target.resource.clone(),
                    subject: chain.target.subject.clone(),
                    findings: findings.get(id.as_str()).copied().unwrap_or(0),
                    ..Default::default()
                };
                for r in chain.entries.iter().filter_map(|i| self.state.recorded(*i)) {
                    let st = &r.statement;
                    match &st.body {
                        Some(Body::AccessRequest(b)) => {
                            row.requester = r.actor_id().to_string();
                            if let Some(d) = &b.delta {
                                row.privileged = d.privileged;
                                for op in &d.ops {
                                    if op.op == entitlement_op::Op::Add as i32 {
                                        row.adds.push(op.entitlement.clone());
                                    } else {
                                        row.removes.push(op.entitlement.clone());
                                    }
                                }
                            }
                        }
                        Some(Body::BreakGlass(b)) => {
                            row.break_glass = true;
                            row.requester = r.actor_id().to_string();
                            row.privileged = b.delta.as_ref().is_some_and(|d| d.privileged);
                            row.review = match self
                                .state
                                .obligations()
                                .iter()
                                .find(|o| o.index == r.index)
                            {
                                Some(o) if o.deadline_ms < now_ms => "overdue".into(),
                                Some(_) => "open".into(),
                                None => "reviewed".into(),
                            };
                        }
                        Some(Body::Decision(d))
                            if d.outcome == decision::Outcome::Approve as i32 =>
                        {
                            row.approvers.push(r.actor_id().to_string());
                        }
                        Some(Body::ExecutionIntent(_)) => {
                            row.executor = r.actor_id().to_string();
                            row.executor_workload = st
                                .actor
                                .as_ref()
                                .and_then(|a| a.workload.as_ref())
                                .and_then(|w| w.id.as_ref())
                                .map(|id| match id {
                                    workload_identity::Id::SpiffeId(s)
                                    | workload_identity::Id::CloudPrincipal(s)
                                    | workload_identity::Id::KubernetesServiceAccount(s) => {
                                        s.clone()
                                    }
                                })
                                .unwrap_or_default();
                            row.policy = st.policy.as_ref().map_or(String::new(), |p| {
                                format!("{}@{}", p.policy_id, p.version)
                            });
                        }
                        _ => {}
                    }
                }
                row
            })
            .collect();
        rows.sort_by_key(|r| r.opened_at);
        rows
    }
}
