//! The audit: replays a log from its entries alone and reports what is
//! wrong with it. Pure: the caller feeds entries in order and a checkpoint,
//! and drains what the audit produces as it goes ([`Auditor::take_output`]).
//!
//! For every entry it checks the signature against the identity registry
//! as it stood at that point, re-runs the gate with the server's own rule
//! code (an admitted entry the gate refuses, or a refusal the gate would
//! not make, is a finding), and checks what only hindsight can: outcomes
//! match their intents, no drift between one change's observed state and
//! the next, break-glass reviews on time. At the end the entries must hash
//! to the checkpoint's root.
//!
//! Memory does not grow with the log: findings and chain reports are
//! handed out as they are made, a chain's statements are let go when it
//! closes, and what is remembered per finished change is a few digests.

mod checker;
mod storage;

pub use storage::{MemoryEntries, ReplayStorage};

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;

use ed25519_dalek::VerifyingKey;
use sha2::{Digest, Sha256};

use crate::access::entry::proto::{decision, entitlement_op, execution_outcome, workload_identity};
use crate::access::entry::{self, millis, validate, Body, DecodedEntry, EntryError, Kind, Limits};
use crate::access::gate::{
    self, Chain, ChainStatus, Closure, GateState, Obligation, ObligationKind, PolicyEngine,
    Recorded, Verdict,
};
use crate::tlog::checkpoint::Checkpoint;
use crate::tlog::merkle::{leaf_hash, CompactRange, Hash};
use crate::tlog::note::NoteVerifier;

use checker::Checker;

/// Findings about the log's integrity rather than its rules: reported
/// whatever the period.
pub const INTEGRITY_CODES: [&str; 9] = [
    "genesis_mismatch",
    "log_time_after_cosignature",
    "tree_mismatch",
    "leaf_mismatch",
    "tile_mismatch",
    "not_an_entry",
    "bad_signature",
    "signer",
    "not_consistent_with_since",
];

/// The most bars the report's timeline has: a day each for two years,
/// longer spans in runs of days.
pub const TIMELINE_BUCKETS: i64 = 731;

/// Distinct hours the timeline counts entries in (20 years' worth, a few
/// MiB): what a log dating its entries at will cannot grow past.
const MAX_TIMELINE_HOURS: usize = 20 * 366 * 24;

/// How many findings the summary keeps for a report; all of them go out
/// through [`Auditor::take_output`].
pub const SUMMARY_FINDINGS: usize = 1000;

/// Signature chunks left queued for the checker thread while the replay
/// thread helps with the rest: one batch of four bundles.
const BATCH_CHUNKS_AHEAD: usize = 4;

/// A replayed batch waiting for its signature verdicts.
struct Pending {
    first: u64,
    decoded: Vec<Result<DecodedEntry, EntryError>>,
    /// The keys its signatures were queued with, and the keys the replay
    /// found they must verify with.
    guessed: Vec<Option<VerifyingKey>>,
    keys: Vec<Option<VerifyingKey>>,
    /// Whether each entry joined a chain.
    joined: Vec<bool>,
    closed: Vec<Closure>,
    findings: Vec<Finding>,
    ticket: checker::Ticket,
}

/// One thing wrong, where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub index: u64,
    pub chain_id: String,
    pub code: String,
    pub message: String,
}

/// The span of issue time an audit reports on: `[from_ms, to_ms)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Period {
    pub from_ms: i64,
    pub to_ms: i64,
}

impl Period {
    /// Everything.
    pub const ALL: Period = Period {
        from_ms: i64::MIN,
        to_ms: i64::MAX,
    };

    pub fn contains(&self, ms: i64) -> bool {
        self.from_ms <= ms && ms < self.to_ms
    }

    /// Parses `FROM..TO`: each an RFC 3339 time or a date (midnight UTC),
    /// either may be empty for an open end. TO is exclusive.
    pub fn parse(s: &str) -> Result<Period, String> {
        let (from, to) = s
            .split_once("..")
            .ok_or_else(|| format!("{s:?} is not FROM..TO (e.g. 2026-01-01..2026-04-01)"))?;
        let at = |t: &str, open: i64| -> Result<i64, String> {
            if t.is_empty() {
                return Ok(open);
            }
            if let Ok(d) = chrono::NaiveDate::parse_from_str(t, "%Y-%m-%d") {
                let midnight = d.and_hms_opt(0, 0, 0).expect("midnight exists");
                return Ok(midnight.and_utc().timestamp_millis());
            }
            chrono::DateTime::parse_from_rfc3339(t)
                .map(|t| t.timestamp_millis())
                .map_err(|e| format!("{t:?} is neither a date (YYYY-MM-DD) nor RFC 3339: {e}"))
        };
        let period = Period {
            from_ms: at(from, i64::MIN)?,
            to_ms: at(to, i64::MAX)?,
        };
        if period.from_ms >= period.to_ms {
            return Err(format!("{s:?} is empty: FROM must come before TO"));
        }
        Ok(period)
    }
}

/// One decision chain, for the population an auditor samples from.
#[derive(Debug, Clone, Default)]
pub struct PopulationRow {
    pub chain_id: String,
    /// The opening entry's index and issue time.
    pub opened_index: u64,
    pub opened_ms: i64,
    pub status: String,
    pub requester: String,
    pub approvers: Vec<String>,
    pub executor: String,
    pub executor_workload: String,
    pub system: String,
    pub resource: String,
    pub subject: String,
    /// What the request asked for.
    pub adds: Vec<String>,
    pub removes: Vec<String>,
    /// What the admitted intent executed.
    pub executed_adds: Vec<String>,
    pub executed_removes: Vec<String>,
    pub privileged: bool,
    pub policy: String,
    /// The request's change tickets, as `system:id`.
    pub tickets: Vec<String>,
    pub break_glass: bool,
    pub review: String,
    pub findings: usize,
}

/// A finished (or, at the end, still open) chain in the period: its row
/// and its entries, for `chains/<chain_id>.json`.
#[derive(Debug)]
pub struct ChainReport {
    pub row: PopulationRow,
    /// The chain's entries, in log order, with their indices.
    pub entries: Vec<(u64, DecodedEntry)>,
}

/// An execution intent (or, rules version 7, an approval extending a
/// grant) a draft policy would have judged otherwise than the log did
/// (`gatelog audit --policy`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyChange {
    pub index: u64,
    pub chain_id: String,
    /// What the log did: `admit` (the intent is in the log) or `refuse`
    /// (a refusal record holds it).
    pub actual: &'static str,
    /// What the gate decides under the draft: `admit`, `refuse` or
    /// `reject`.
    pub under_draft: &'static str,
    /// The draft's violations (or why it rejects), `rule code` each.
    pub why: String,
    /// What was judged: `intent`, or `extension` (an approval of a
    /// grant's extension, rules version 7).
    pub kind: &'static str,
}

/// A draft policy every past intent is judged under again.
struct Draft {
    policy: crate::access::entry::proto::PolicyPublication,
    /// Only its Cedar is new: the classes in force at each intent stay.
    cedar_only: bool,
    engine: Box<dyn PolicyEngine + Send>,
}

/// What the audit has produced since the caller last asked.
#[derive(Debug, Default)]
pub struct Output {
    /// In index order within each batch.
    pub findings: Vec<Finding>,
    pub chains: Vec<ChainReport>,
}

/// Counts, for the manifest and the report.
#[derive(Debug, Default)]
pub struct AuditSummary {
    pub entries: u64,
    pub by_kind: BTreeMap<&'static str, u64>,
    pub findings: u64,
    pub findings_by_code: BTreeMap<String, u64>,
    /// The first [`SUMMARY_FINDINGS`] findings, by index.
    pub first_findings: Vec<Finding>,
    /// Rule findings on entries issued outside the period (not reported).
    pub findings_outside_period: u64,
    /// Chains opened in the period, and of those executed and break-glass.
    pub chains: u64,
    pub executed: u64,
    pub break_glass: u64,
    pub chains_outside_period: u64,
    /// Entries per UTC day (issuedAt) in the period, or per run of days
    /// past [`TIMELINE_BUCKETS`] days, for the report's timeline: (bucket
    /// start in ms, entries, refusals).
    pub timeline: Vec<(i64, u64, u64)>,
    /// Whether the entries hash to the checkpoint's root.
    pub tree_verified: bool,
    /// The rules and parameters the log recorded, as they stood at its
    /// end (None: a log of rules version 1 throughout).
    pub params: Option<crate::access::gate::Params>,
    /// The admins as the log's end left them.
    pub admins: Vec<String>,
    /// `--policy`: execution intents judged again under the draft, and
    /// how many it judges otherwise.
    pub draft_judged: u64,
    pub draft_changes: u64,
    /// Rules version 5: the access review campaigns, and of the grants
    /// they revoked, those whose removal was carried out.
    pub campaigns: Vec<(
        crate::access::gate::Campaign,
        std::collections::BTreeSet<u64>,
    )>,
}

impl AuditSummary {
    /// Counts a finding, keeping it if it is among the first.
    pub fn add(&mut self, f: &Finding) {
        self.findings += 1;
        *self.findings_by_code.entry(f.code.clone()).or_default() += 1;
        if self.first_findings.len() < SUMMARY_FINDINGS {
            self.first_findings.push(f.clone());
        }
    }
}

type Digest16 = [u8; 16];

fn digest16(parts: &[&[u8]]) -> Digest16 {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_be_bytes());
        h.update(p);
    }
    let mut out = [0u8; 16];
    out.copy_from_slice(&h.finalize()[..16]);
    out
}

/// A set of entitlements, order aside.
fn entitlements_digest(v: &[String]) -> Digest16 {
    let mut v: Vec<&[u8]> = v.iter().map(|s| s.as_bytes()).collect();
    v.sort();
    digest16(&v)
}

fn sorted(v: &[String]) -> Vec<String> {
    let mut v = v.to_vec();
    v.sort();
    v
}

const HOUR_MS: i64 = 3_600_000;
const DAY_MS: i64 = 24 * HOUR_MS;

/// Replays a log entry by entry.
pub struct Auditor {
    state: GateState,
    engine: Box<dyn PolicyEngine + Send>,
    period: Period,
    range: CompactRange,
    summary: AuditSummary,
    /// Findings of settled batches, not yet taken.
    settled: Vec<Finding>,
    /// Chains closed in settled batches whose reports are not yet taken,
    /// in order (their facts: the entries are read back when taken).
    to_report: VecDeque<Closure>,
    /// Entries of open chains and delegation grants: for the gate's
    /// rules, and chains' reports.
    storage: Arc<dyn ReplayStorage>,
    /// Which reports carry their chain's entries (default: all).
    wants_entries: Box<dyn FnMut(&PopulationRow) -> bool + Send>,
    /// At the end: the chains still open, last opened first, whose
    /// reports [`Auditor::open_chain_reports`] has yet to hand out.
    still_open: Vec<(u64, String)>,
    /// At the end: the time of the audit.
    now_ms: i64,
    /// `gatelog audit --policy`: the draft, and what it would change.
    draft: Option<Draft>,
    policy_changes: Vec<PolicyChange>,
    /// Chains closed in the batch being replayed.
    closed: Vec<Closure>,
    /// Findings not yet in a settled batch.
    findings: Vec<Finding>,
    /// The batch replayed last, waiting for its signature verdicts.
    pending: Option<Pending>,
    checker: Checker,
    /// Findings on entries of chains not yet reported, by entry.
    entry_findings: HashMap<u64, usize>,
    /// (system, resource, subject) → the entitlements the last change
    /// left, and that change's entry.
    last_after: HashMap<Digest16, (Digest16, u64)>,
    /// Entries and refusals per hour of issue time, in the period.
    hours: BTreeMap<i64, (u64, u64)>,
    /// The time of the entry being checked: the log's under rules
    /// version 2, its own issuedAt before.
    at_ms: i64,
    /// The leaf hash entry 0 must have (`--genesis`).
    genesis: Option<Hash>,
    /// When a witness cosigned the audited checkpoint (POSIX seconds).
    cosigned_at: Option<u64>,
}

impl Auditor {
    /// An audit trusting `admins` (the log's bootstrap admins) and
    /// `log_key` for the log's own refusal records, reporting on `period`;
    /// it keeps open chains' entries in memory.
    pub fn new(
        log_key: NoteVerifier,
        admins: Vec<NoteVerifier>,
        engine: Box<dyn PolicyEngine + Send>,
        period: Period,
    ) -> Self {
        let storage = Arc::new(MemoryEntries::default());
        Self::keeping_on(log_key, admins, engine, period, storage)
    }

    /// [`Auditor::new`], keeping open chains' entries in `storage`: the
    /// audit's memory then holds their facts (indices, digests, names),
    /// not their statements.
    pub fn keeping_on(
        log_key: NoteVerifier,
        admins: Vec<NoteVerifier>,
        engine: Box<dyn PolicyEngine + Send>,
        period: Period,
        storage: Arc<dyn ReplayStorage>,
    ) -> Self {
        let state = GateState::new(log_key, admins)
            .without_free_text()
            .keeping_on(storage.clone());
        Auditor {
            state,
            engine,
            period,
            range: CompactRange::default(),
            summary: AuditSummary::default(),
            settled: Vec::new(),
            to_report: VecDeque::new(),
            storage,
            wants_entries: Box::new(|_| true),
            still_open: Vec::new(),
            now_ms: 0,
            draft: None,
            policy_changes: Vec::new(),
            closed: Vec::new(),
            findings: Vec::new(),
            pending: None,
            checker: Checker::start(),
            entry_findings: HashMap::new(),
            last_after: HashMap::new(),
            hours: BTreeMap::new(),
            at_ms: 0,
            genesis: None,
            cosigned_at: None,
        }
    }

    /// Only the reports of chains `wanted` picks carry their entries
    /// (asked once per chain reported, in the order reports go out); the
    /// others are not read back.
    pub fn reports_with_entries(
        &mut self,
        wanted: impl FnMut(&PopulationRow) -> bool + Send + 'static,
    ) {
        self.wants_entries = Box::new(wanted);
    }

    /// Judges every past execution intent (admitted or refused) again
    /// under `draft`, as if it had been in force in place of the policy
    /// the intent names, with the real history otherwise: nothing it
    /// would change is carried forward. With `cedar_only`, only the
    /// draft's Cedar replaces the policy in force (its classes stay). The
    /// intents it judges otherwise come out of
    /// [`Auditor::take_policy_changes`]; the count judged is
    /// `summary.draft_judged`.
    pub fn simulate_policy(
        &mut self,
        draft: crate::access::entry::proto::PolicyPublication,
        cedar_only: bool,
        engine: Box<dyn PolicyEngine + Send>,
    ) {
        self.draft = Some(Draft {
            policy: draft,
            cedar_only,
            engine,
        });
    }

    /// The intents the draft policy judges otherwise, since the last call.
    pub fn take_policy_changes(&mut self) -> Vec<PolicyChange> {
        std::mem::take(&mut self.policy_changes)
    }

    /// An intent judged again under the draft, if there is one.
    fn simulate(&mut self, index: u64, d: &DecodedEntry, actual: &'static str) {
        let Some(draft) = self.draft.as_mut() else {
            return;
        };
        // Rules version 7: the approval that completes a grant's
        // extension is the policy's to judge too.
        let judged = match d.kind() {
            Kind::ExecutionIntent => true,
            Kind::Decision => {
                self.state.rules_version() >= 7
                    && self
                        .state
                        .grant_of(&d.statement.chain_id)
                        .is_some_and(|g| d.statement.links.iter().any(|l| l.index == g.outcome))
            }
            _ => false,
        };
        if !judged {
            return;
        }
        // The draft stands in for the policy in force (under its id and
        // version, so an intent naming it is judged by the draft, and one
        // naming another is still `policy_mismatch`); with no policy in
        // force, for the one the intent names.
        let in_force = self.state.policy();
        let mut policy = match (draft.cedar_only, in_force) {
            (true, Some(p)) => crate::access::entry::proto::PolicyPublication {
                cedar: draft.policy.cedar.clone(),
                ..p.clone()
            },
            _ => draft.policy.clone(),
        };
        let (id, version) = match (in_force, &d.statement.policy) {
            (Some(p), _) => (p.policy_id.clone(), p.version),
            (None, Some(named)) => (named.policy_id.clone(), named.version),
            (None, None) => (policy.policy_id.clone(), policy.version),
        };
        policy.policy_id = id;
        policy.version = version;
        let real = self.state.swap_policy(Some(std::sync::Arc::new(policy)));
        let verdict = gate::check(&self.state, index, d, draft.engine.as_mut());
        self.state.swap_policy(real);
        self.summary.draft_judged += 1;
        let (under_draft, why) = match verdict {
            Ok(Verdict::Admit) => ("admit", String::new()),
            Ok(Verdict::Refuse(r)) => (
                "refuse",
                r.violations
                    .iter()
                    .map(|v| format!("rule {} {}", v.rule, v.code))
                    .collect::<Vec<_>>()
                    .join("; "),
            ),
            Err(r) => ("reject", r.code.to_string()),
        };
        if under_draft != actual {
            self.summary.draft_changes += 1;
            self.policy_changes.push(PolicyChange {
                index,
                chain_id: d.statement.chain_id.clone(),
                actual,
                under_draft,
                why,
                kind: if d.kind() == Kind::ExecutionIntent {
                    "intent"
                } else {
                    "extension"
                },
            });
        }
    }

    /// A witness cosigned the audited checkpoint at `seconds`: no time the
    /// log recorded in it may be later (a log dating entries into the
    /// future, e.g. to push deadlines or periods).
    pub fn cosigned_at(&mut self, seconds: u64) {
        self.cosigned_at = Some(seconds);
    }

    /// How far a statement may be dated from the time it is judged at:
    /// the log's recorded skew under rules version 2 (the server's
    /// `--max-clock-skew-secs`), the first releases' default before.
    fn limits(&self) -> Limits {
        let params = self.state.params();
        if params.rules_version >= 2 {
            Limits {
                max_future_ms: params.max_clock_skew_ms,
                max_backdate_ms: params.max_clock_skew_ms,
            }
        } else {
            Limits::default()
        }
    }

    /// Pins the log's first entry: an audit of a log whose entry 0 has
    /// another leaf hash reports `genesis_mismatch`.
    pub fn pin_genesis(&mut self, leaf_hash: Hash) {
        self.genesis = Some(leaf_hash);
    }

    /// Settles the batch in flight (its signature verdicts), so that the
    /// output holds every finding on the entries taken so far.
    pub fn settle_pending(&mut self) {
        if let Some(batch) = self.pending.take() {
            self.settle(batch);
        }
    }

    /// Open obligations (break-glass reviews, undos) as the entries taken
    /// so far leave them, earliest deadline first.
    pub fn obligations(&self) -> Vec<&Obligation> {
        self.state.obligations()
    }

    /// Findings and chain reports made since the last call (every report,
    /// whatever its entries weigh: see [`Auditor::take_reports`]).
    pub fn take_output(&mut self) -> Output {
        Output {
            findings: self.take_findings(),
            chains: self.take_reports(usize::MAX),
        }
    }

    /// Lets go of the chain reports not yet taken and of their chains'
    /// entries, for a replay that reports no chains (the monitor's).
    /// Keep who has what ([`crate::access::gate::holdings`]) as the
    /// replay goes; read it from [`Auditor::state`].
    pub fn with_holdings(mut self) -> Self {
        let placeholder = GateState::new(self.state.log_key().clone(), vec![]);
        let state = std::mem::replace(&mut self.state, placeholder);
        self.state = state.with_holdings();
        self
    }

    /// Whether the entries replayed hash to the checkpoint [`Auditor::end`]
    /// was given.
    pub fn tree_verified(&self) -> bool {
        self.summary.tree_verified
    }

    /// The gate's state as replayed so far.
    pub fn state(&self) -> &GateState {
        &self.state
    }

    pub fn let_go_of_reports(&mut self) {
        while let Some(c) = self.to_report.pop_front() {
            for i in &c.chain.entries {
                self.entry_findings.remove(i);
            }
            self.storage.forget(&c.chain.entries);
        }
    }

    /// Findings made since the last call, in index order within each batch.
    pub fn take_findings(&mut self) -> Vec<Finding> {
        std::mem::take(&mut self.settled)
    }

    /// Reports of chains closed so far (and, after [`Auditor::end`], of
    /// those still open, first opened first) until they hold about
    /// `max_entries` entries (empty only when none is left): a report's
    /// entries are read back only now,
    /// so however many chains close at once (an expiry can close every
    /// open chain on one entry), what is in memory is one slice.
    pub fn take_reports(&mut self, max_entries: usize) -> Vec<ChainReport> {
        let mut out = Vec::new();
        let mut taken = 0usize;
        while taken < max_entries {
            // A closed chain's facts left the state with it; a chain still
            // open has them there.
            let (id, chain, status, records, now) = if let Some(c) = self.to_report.pop_front() {
                (c.chain_id, c.chain, c.status, c.records, None)
            } else if let Some((_, id)) = self.still_open.pop() {
                let Some(chain) = self.state.chain(&id).cloned() else {
                    continue;
                };
                let status = self.state.status(&chain);
                let records = chain
                    .entries
                    .iter()
                    .filter_map(|i| self.state.recorded(*i).cloned())
                    .collect();
                (id, chain, status, records, Some(self.now_ms))
            } else {
                break;
            };
            let records: Vec<&Recorded> = records.iter().collect();
            let row = self.row(&id, &chain, status, &records, now);
            // Chains outside the period cost nothing here: an empty
            // answer means there is nothing left.
            if let Some(report) = self.report(row, &chain) {
                taken = taken.saturating_add(report.entries.len().max(1));
                out.push(report);
            }
        }
        out
    }

    /// Records a finding about the log's integrity made outside the replay
    /// (e.g. an entry that disagrees with the log's hash tiles).
    pub fn integrity_finding(&mut self, index: u64, code: &str, message: String) {
        debug_assert!(INTEGRITY_CODES.contains(&code));
        self.find(index, "", code, message);
    }

    fn find(&mut self, index: u64, chain_id: &str, code: &str, message: String) {
        if !INTEGRITY_CODES.contains(&code) && !self.period.contains(self.at_ms) {
            self.summary.findings_outside_period += 1;
            return;
        }
        // Counted for the row of the chain the entry joins (if it joins
        // one: see `settle`).
        if !chain_id.is_empty() {
            *self.entry_findings.entry(index).or_default() += 1;
        }
        let f = Finding {
            index,
            chain_id: chain_id.to_string(),
            code: code.to_string(),
            message,
        };
        self.summary.add(&f);
        self.findings.push(f);
    }

    /// Checks the next entries (`first` is the index of the first) and
    /// applies them; returns their leaf hashes.
    ///
    /// Their signatures go to the checker thread, with each signer's key
    /// as it stood before the batch, while this thread replays the gate;
    /// the verdicts are collected during the next batch (an entry whose
    /// key changed within the batch is checked again alone).
    pub fn entries(&mut self, first: u64, leaves: &[&[u8]]) -> Vec<Hash> {
        let decoded: Vec<Result<DecodedEntry, EntryError>> =
            leaves.iter().map(|l| DecodedEntry::decode(l)).collect();
        let hashes: Vec<Hash> = decoded
            .iter()
            .zip(leaves)
            .map(|(d, l)| d.as_ref().map_or_else(|_| leaf_hash(l), |d| d.leaf_hash))
            .collect();
        let guessed: Vec<Option<VerifyingKey>> = decoded
            .iter()
            .map(|d| self.state.signing_key(d.as_ref().ok()?).ok())
            .collect();
        let items: Vec<checker::Item> = decoded
            .iter()
            .zip(&guessed)
            .map(|(d, key)| {
                let d = d.as_ref().ok()?;
                Some((
                    *key.as_ref()?,
                    d.signed.statement.clone(),
                    d.signed.signature.clone(),
                ))
            })
            .collect();
        let ticket = self.checker.submit(items);
        let mut keys = Vec::with_capacity(decoded.len());
        let mut joined = Vec::with_capacity(decoded.len());
        for (k, (d, h)) in decoded.iter().zip(&hashes).enumerate() {
            let index = first + k as u64;
            let (key, j) = self.entry(index, *h, d);
            if j || self.state.recorded(index).is_some() {
                self.storage.keep(index, leaves[k]);
            }
            keys.push(key);
            joined.push(j);
        }
        let batch = Pending {
            first,
            decoded,
            guessed,
            keys,
            joined,
            closed: std::mem::take(&mut self.closed),
            findings: std::mem::take(&mut self.findings),
            ticket,
        };
        // Leave the checker a batch of work for the next replay; take the
        // rest here.
        self.checker.help(BATCH_CHUNKS_AHEAD);
        if let Some(previous) = self.pending.replace(batch) {
            self.settle(previous);
        }
        hashes
    }

    /// Finishes a batch once its signatures are checked: signature
    /// findings, then its findings in index order, then its chain reports.
    fn settle(&mut self, batch: Pending) {
        let verdicts = self.checker.collect(batch.ticket);
        for (k, key) in batch.keys.iter().enumerate() {
            let (Some(key), Ok(d)) = (key, &batch.decoded[k]) else {
                continue;
            };
            let good = if batch.guessed[k] == Some(*key) {
                verdicts[k]
            } else {
                entry::verify(key, &d.signed.statement, &d.signed.signature)
            };
            if !good {
                let m = format!("the signature of {} does not verify", d.signed.signer_id);
                self.find(
                    batch.first + k as u64,
                    &d.statement.chain_id,
                    "bad_signature",
                    m,
                );
            }
        }
        let mut findings = batch.findings;
        findings.append(&mut self.findings);
        findings.sort_by_key(|f| f.index);
        self.settled.extend(findings);
        for (k, joined) in batch.joined.iter().enumerate() {
            if !joined {
                // In no chain's row: its findings are in exceptions.csv.
                self.entry_findings.remove(&(batch.first + k as u64));
            }
        }
        self.to_report.extend(batch.closed);
    }

    /// Checks one entry and applies it; returns the key its signature must
    /// verify with, if its signer may sign it, and whether it joined a
    /// chain (whose report will need it).
    fn entry(
        &mut self,
        index: u64,
        leaf_hash: Hash,
        decoded: &Result<DecodedEntry, EntryError>,
    ) -> (Option<VerifyingKey>, bool) {
        debug_assert_eq!(index, self.range.size());
        self.range.push(leaf_hash);
        self.summary.entries += 1;
        if let Some(pinned) = self.genesis.filter(|g| index == 0 && *g != leaf_hash) {
            let m = format!(
                "entry 0 has leaf hash {}; --genesis pins {}",
                crate::tlog::merkle::hex(&leaf_hash),
                crate::tlog::merkle::hex(&pinned)
            );
            self.find(0, "", "genesis_mismatch", m);
        }
        let d = match decoded {
            Ok(d) => d,
            Err(e) => {
                self.find(index, "", "not_an_entry", e.to_string());
                return (None, false);
            }
        };
        *self.summary.by_kind.entry(d.kind().name()).or_default() += 1;
        let chain = d.statement.chain_id.as_str();
        // Judged at the log's time (rules version 2), or at its own time
        // before: the audit has no "now" for old entries.
        self.at_ms = self.state.time_of(&d.statement);
        let hour = self.at_ms.div_euclid(HOUR_MS);
        // A hostile log may date every entry to another hour: past the
        // cap, hours not yet seen stay off the timeline.
        let room = self.hours.len() < MAX_TIMELINE_HOURS || self.hours.contains_key(&hour);
        if self.period.contains(self.at_ms) && room {
            let bucket = self.hours.entry(hour).or_default();
            bucket.0 += 1;
            bucket.1 += u64::from(d.kind() == Kind::GateRefusal);
        }
        if let (Kind::LogTime, Some(cosigned)) = (d.kind(), self.cosigned_at) {
            // Cosignature timestamps are whole seconds: a second's grace.
            let bound = i64::try_from(cosigned)
                .unwrap_or(i64::MAX)
                .saturating_add(1)
                .saturating_mul(1000);
            let said = d.statement.issued_at.as_ref().map_or(0, millis);
            if said > bound {
                let m = format!(
                    "the log says it is {} ms past the witness cosignature (at {cosigned} s) of the checkpoint that covers it",
                    said - bound + 1000
                );
                self.find(index, "", "log_time_after_cosignature", m);
            }
        }
        // The log's own records are checked by their signature.
        let checked = if d.kind().is_log_record() {
            Ok(())
        } else {
            validate(d, self.at_ms, &self.limits())
        };
        let key = match self.state.signing_key(d) {
            Err(r) => {
                let m = format!("{}: {}", r.code, r.message);
                self.find(index, chain, "signer", m);
                None
            }
            Ok(key) => Some(key),
        };
        if let Err(e) = checked {
            // The gate never takes an entry that does not validate, and its
            // rules may assume what validation checks: it is a finding, and
            // it changes no state (a hostile log cannot crash the replay).
            self.find(index, chain, "invalid_entry", e.to_string());
            return (key, false);
        }
        match gate::check(&self.state, index, d, self.engine.as_mut()) {
            Err(r) => self.find(
                index,
                chain,
                "should_have_been_rejected",
                format!("{} ({}): {}", d.kind().name(), r.code, r.message),
            ),
            Ok(Verdict::Refuse(r)) if d.kind() != Kind::GateRefusal => {
                let rules: Vec<String> = r
                    .violations
                    .iter()
                    .map(|v| format!("rule {} {}: {}", v.rule, v.code, v.message))
                    .collect();
                self.find(index, chain, "admitted_despite_gate", rules.join("; "));
            }
            _ => {}
        }
        if let Some(Body::GateRefusal(g)) = &d.statement.body {
            self.refusal(index, chain, g);
        } else {
            self.simulate(index, d, "admit");
        }
        self.hindsight(index, d);
        let closed = self.state.apply(index, d);
        let joined = closed.iter().any(|c| c.chain.entries.contains(&index))
            || self.state.recorded(index).is_some() && d.kind() != Kind::DelegationGrant;
        self.closed.extend(closed);
        (key, joined)
    }

    /// A refusal record must be one the gate would make.
    fn refusal(&mut self, index: u64, chain: &str, g: &crate::access::entry::proto::GateRefusal) {
        // The log writes each record's own index into it, so no two are
        // the same leaf; a record elsewhere was not written there.
        if g.index != index {
            let m = format!("the record says it is entry {}", g.index);
            self.find(index, chain, "refusal_differs", m);
        }
        let Ok(refused) = DecodedEntry::decode(&g.refused_entry) else {
            return self.find(
                index,
                chain,
                "refusal_unjustified",
                "the refused entry does not decode".into(),
            );
        };
        // The gate refuses only entries that validate: a record of anything
        // else was never made by it (and must not reach its rules).
        let at = refused.statement.issued_at.as_ref().map_or(0, millis);
        if let Err(e) = validate(&refused, at, &self.limits()) {
            return self.find(
                index,
                chain,
                "refusal_unjustified",
                format!("the refused entry does not validate, so the gate never saw it: {e}"),
            );
        }
        // The gate checks a signature before its rules: a refusal of an
        // entry no registered identity signed was never made by it (an
        // operator fabricating "attempts" by someone).
        let signed = self
            .state
            .signing_key(&refused)
            .map(|key| entry::verify(&key, &refused.signed.statement, &refused.signed.signature));
        match signed {
            Ok(true) => {}
            Ok(false) => {
                return self.find(
                    index,
                    chain,
                    "refusal_unjustified",
                    format!(
                        "the refused entry's signature does not verify with the key of {}",
                        refused.signed.signer_id
                    ),
                )
            }
            Err(r) => {
                return self.find(
                    index,
                    chain,
                    "refusal_unjustified",
                    format!(
                        "the refused entry's signer could not sign it then: {}",
                        r.message
                    ),
                )
            }
        }
        self.simulate(index, &refused, "refuse");
        let recorded: Vec<&str> = g.violations.iter().map(|v| v.code.as_str()).collect();
        match gate::check(&self.state, index, &refused, self.engine.as_mut()) {
            Ok(Verdict::Refuse(r)) => {
                let r = r.bounded();
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
        let chain = st.chain_id.as_str();
        match &st.body {
            Some(Body::ExecutionIntent(i)) => {
                // What ran must be within what was asked (a request for
                // read executed as admin is a finding, whatever approved it);
                // the removal of a grant's access asks for nothing.
                let removal = self.state.grant_of(chain).is_some();
                let requested = self.state.chain(chain).filter(|_| !removal).and_then(|c| {
                    let opener = self.state.statement(self.state.recorded(c.opener)?);
                    match &opener.body {
                        Some(Body::AccessRequest(r)) => r.delta.clone(),
                        _ => None,
                    }
                });
                if let (Some(requested), Some(executed)) = (requested, &i.delta) {
                    if !gate::within(executed, &requested) {
                        let m = format!(
                            "executed {:?}, the request asked for {:?}",
                            executed.after, requested.after
                        );
                        self.find(index, chain, "executed_beyond_request", m);
                    }
                }
            }
            Some(Body::ExecutionOutcome(o))
                if o.result == execution_outcome::Result::Succeeded as i32 =>
            {
                let intent = st
                    .links
                    .iter()
                    .filter_map(|l| self.state.recorded(l.index))
                    .find_map(|r| match &self.state.statement(r).body {
                        Some(Body::ExecutionIntent(i)) => i.delta.clone(),
                        Some(Body::BreakGlass(b)) => b.delta.clone(),
                        _ => None,
                    });
                // Version 5: the removal of a grant's access, on time and
                // complete.
                let grant = self
                    .state
                    .grant_of(chain)
                    .filter(|g| st.links.iter().any(|l| l.index > g.outcome))
                    .map(|g| {
                        (
                            g.due_ms(g.revoked_ms),
                            self.state.to_remove(g, self.state.time_of(st)).0,
                        )
                    });
                if let Some((due, granted)) = grant {
                    let at = self.state.time_of(st);
                    let kept: Vec<&String> = granted
                        .iter()
                        .filter(|e| o.observed_after.contains(e))
                        .collect();
                    if !kept.is_empty() {
                        let m = format!(
                            "the removal left {kept:?}, whose removal was due at {}",
                            entry::rfc3339(due)
                        );
                        self.find(index, chain, "access_past_end", m);
                    } else if at > due {
                        let m = format!(
                            "the access was removed {} s after its removal was due",
                            at.saturating_sub(due) / 1000
                        );
                        self.find(index, chain, "late_deprovisioning", m);
                    }
                }
                if let Some(delta) = intent {
                    if sorted(&delta.after) != sorted(&o.observed_after) {
                        let m = format!(
                            "observed after {:?}, the intent declared {:?}",
                            o.observed_after, delta.after
                        );
                        self.find(index, chain, "outcome_mismatch", m);
                    }
                }
                let Some(t) = self.state.chain(chain).map(|c| &c.target) else {
                    return;
                };
                let target = digest16(&[
                    t.system.as_bytes(),
                    t.resource.as_bytes(),
                    t.subject.as_bytes(),
                ]);
                if let Some((last, at)) = self.last_after.get(&target).copied() {
                    if !o.observed_before.is_empty()
                        && entitlements_digest(&o.observed_before) != last
                    {
                        let m = format!(
                            "observed before {:?}, but the change at entry {at} left other entitlements",
                            o.observed_before
                        );
                        self.find(index, chain, "drift", m);
                    }
                }
                self.last_after
                    .insert(target, (entitlements_digest(&o.observed_after), index));
            }
            Some(Body::Review(_)) => {
                // At the log's time under rules version 2.
                let reviewed = self.state.time_of(st);
                for l in &st.links {
                    let late = self
                        .state
                        .obligations()
                        .into_iter()
                        .find(|o| o.index == l.index)
                        .filter(|o| reviewed > o.deadline_ms)
                        .map(|o| (o.index, reviewed.saturating_sub(o.deadline_ms)));
                    if let Some((bg, by)) = late {
                        let m = format!(
                            "break-glass {bg} reviewed {} s after its deadline",
                            by / 1000
                        );
                        self.find(index, chain, "late_review", m);
                    }
                }
            }
            _ => {}
        }
    }

    /// Ends the audit at checkpoint `cp`, with `now_ms` the time of the
    /// audit (break-glass past its deadline and still unreviewed). Returns
    /// the counts and all the last output: [`Auditor::end`],
    /// [`Auditor::take_reports`] and [`Auditor::summary`] hand it out in
    /// parts.
    pub fn finish(mut self, cp: &Checkpoint, now_ms: i64) -> (AuditSummary, Output) {
        self.end(cp, now_ms);
        let output = self.take_output();
        (self.summary(), output)
    }

    /// Ends the replay at checkpoint `cp`, with `now_ms` the time of the
    /// audit: the tree's check and overdue obligations go to the findings;
    /// the open chains' reports are then taken a slice at a time
    /// ([`Auditor::take_reports`]), so that a log of a million open
    /// chains is not reported all in memory at once.
    pub fn end(&mut self, cp: &Checkpoint, now_ms: i64) {
        if let Some(last) = self.pending.take() {
            self.settle(last);
        }
        self.summary.tree_verified = self.range.size() == cp.size && self.range.root() == cp.root;
        let params = self.state.params();
        self.summary.params = params.index.is_some().then(|| params.clone());
        self.summary.admins = self.state.admins().map(|a| a.name().to_string()).collect();
        self.summary.admins.sort();
        if !self.summary.tree_verified {
            let m = format!(
                "{} entries that do not hash to the checkpoint's root at size {}: an entry was changed, swapped, dropped or duplicated",
                self.range.size(),
                cp.size
            );
            self.find(cp.size, "", "tree_mismatch", m);
        }
        let overdue: Vec<Obligation> = self
            .state
            .obligations()
            .into_iter()
            .filter(|o| o.deadline_ms < now_ms)
            .cloned()
            .collect();
        for o in overdue {
            let index = o.index;
            self.at_ms = self.state.recorded(index).map_or(0, |r| r.admitted_ms);
            let late = now_ms.saturating_sub(o.deadline_ms) / 1000;
            let (code, m) = match o.kind {
                ObligationKind::Review => (
                    "unreviewed_break_glass",
                    format!("break-glass {index} has no review by another human, {late} s past its deadline"),
                ),
                ObligationKind::Undo => (
                    "revoked_not_undone",
                    format!(
                        "review {} revoked break-glass {index}, and no execution has undone it ({late} s)",
                        o.opened_by
                    ),
                ),
                ObligationKind::Deprovision => (
                    "access_not_deprovisioned",
                    format!(
                        "the access outcome {} granted ended, and its removal was due {late} s ago: it has not been removed",
                        o.opened_by
                    ),
                ),
            };
            self.find(index, &o.chain_id, code, m);
        }
        // Access reviews: what no one reviewed by the deadline is a
        // finding; a revoked grant's removal is carried out once the gate
        // no longer tracks the grant (removed, or covered).
        let campaigns: Vec<crate::access::gate::Campaign> =
            self.state.campaigns().cloned().collect();
        for c in &campaigns {
            let mut carried_out = std::collections::BTreeSet::new();
            for (outcome, item) in &c.items {
                let revoked =
                    item.revoked_unreviewed || item.decision.as_ref().is_some_and(|d| !d.0);
                if revoked && item.ended == Some("removed") {
                    carried_out.insert(*outcome);
                }
                // A grant whose access ended before the deadline needed no
                // review.
                let ended_first = item.ended_in_campaign && item.decision.is_none();
                if item.decision.is_none() && (c.closed || c.deadline_ms < now_ms) && !ended_first {
                    self.at_ms = c.deadline_ms;
                    let m = format!(
                        "campaign {:?} (entry {}) closed without a review of the grant of outcome {outcome} to {}{}",
                        c.campaign_id,
                        c.index,
                        item.subject,
                        if item.revoked_unreviewed { " (revoked for it)" } else { "" }
                    );
                    self.find(c.index, &item.chain_id, "unreviewed_grant", m);
                }
            }
            self.summary.campaigns.push((c.clone(), carried_out));
        }
        let mut rest = std::mem::take(&mut self.findings);
        rest.sort_by_key(|f| f.index);
        self.settled.extend(rest);
        self.now_ms = now_ms;
        self.still_open = self
            .state
            .chains()
            .map(|(id, c)| (c.opener, id.clone()))
            .collect();
        // Handed out from the end: first opened first.
        self.still_open
            .sort_by_key(|(opener, _)| std::cmp::Reverse(*opener));
    }

    /// The counts, once every report is out.
    pub fn summary(mut self) -> AuditSummary {
        self.summary.timeline = timeline(&self.hours, TIMELINE_BUCKETS);
        self.summary.first_findings.sort_by_key(|f| f.index);
        self.summary
    }

    /// A chain's report if it opened in the period; its entries are let go.
    fn report(&mut self, mut row: PopulationRow, chain: &Chain) -> Option<ChainReport> {
        row.findings = chain
            .entries
            .iter()
            .filter_map(|i| self.entry_findings.remove(i))
            .sum();
        if !self.period.contains(row.opened_ms) {
            self.storage.forget(&chain.entries);
            self.summary.chains_outside_period += 1;
            return None;
        }
        let entries = if (self.wants_entries)(&row) {
            self.kept_entries(&chain.entries)
        } else {
            Vec::new()
        };
        self.storage.forget(&chain.entries);
        self.summary.chains += 1;
        self.summary.executed += u64::from(!row.executor.is_empty());
        self.summary.break_glass += u64::from(row.break_glass);
        Some(ChainReport { row, entries })
    }

    /// The entries of a chain, as kept.
    ///
    /// # Panics
    /// If storage lost one (it kept every entry of an open chain).
    fn kept_entries(&self, indices: &[u64]) -> Vec<(u64, DecodedEntry)> {
        indices
            .iter()
            .map(|&i| {
                let decoded = self.storage.leaf(i).map(|l| DecodedEntry::decode(&l));
                match decoded {
                    Some(Ok(d)) => (i, d),
                    _ => panic!("the replay's storage lost entry {i}"),
                }
            })
            .collect()
    }

    /// A chain's population row, from its statements; `now_ms` is given
    /// for a chain still open at the end of the audit.
    fn row(
        &self,
        chain_id: &str,
        chain: &Chain,
        status: ChainStatus,
        records: &[&Recorded],
        now_ms: Option<i64>,
    ) -> PopulationRow {
        let mut row = PopulationRow {
            chain_id: chain_id.to_string(),
            opened_index: chain.opener,
            opened_ms: records
                .iter()
                .find(|r| r.index == chain.opener)
                .map_or(0, |r| r.admitted_ms),
            status: serde_json::to_value(status)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default(),
            system: chain.target.system.clone(),
            resource: chain.target.resource.clone(),
            subject: chain.target.subject.clone(),
            ..Default::default()
        };
        for r in records {
            let st = self.state.statement(r);
            match &st.body {
                Some(Body::AccessRequest(b)) => {
                    row.requester = r.actor_id().to_string();
                    row.tickets = b
                        .tickets
                        .iter()
                        .map(|t| format!("{}:{}", t.system, t.id))
                        .collect();
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
                    let open = self
                        .state
                        .obligations()
                        .into_iter()
                        .find(|o| o.index == r.index);
                    row.review = match (open, now_ms) {
                        (Some(o), Some(now)) if o.deadline_ms < now => "overdue".into(),
                        (Some(_), _) => "open".into(),
                        (None, _) => "reviewed".into(),
                    };
                }
                Some(Body::Decision(d)) if d.outcome == decision::Outcome::Approve as i32 => {
                    row.approvers.push(r.actor_id().to_string());
                }
                Some(Body::ExecutionIntent(i)) => {
                    row.executor = r.actor_id().to_string();
                    row.executed_adds.clear();
                    row.executed_removes.clear();
                    for op in i.delta.iter().flat_map(|d| &d.ops) {
                        if op.op == entitlement_op::Op::Add as i32 {
                            row.executed_adds.push(op.entitlement.clone());
                        } else {
                            row.executed_removes.push(op.entitlement.clone());
                        }
                    }
                    row.executor_workload = st
                        .actor
                        .as_ref()
                        .and_then(|a| a.workload.as_ref())
                        .and_then(|w| w.id.as_ref())
                        .map(|id| match id {
                            workload_identity::Id::SpiffeId(s)
                            | workload_identity::Id::CloudPrincipal(s)
                            | workload_identity::Id::KubernetesServiceAccount(s) => s.clone(),
                        })
                        .unwrap_or_default();
                    row.policy = st
                        .policy
                        .as_ref()
                        .map_or(String::new(), |p| format!("{}@{}", p.policy_id, p.version));
                }
                _ => {}
            }
        }
        row
    }
}

/// Entries and refusals per UTC day, from the first day with an entry to
/// the last (days without entries are zeros); over `max_buckets` days, each
/// bucket is a run of whole days, so there are never more than that.
fn timeline(hours: &BTreeMap<i64, (u64, u64)>, max_buckets: i64) -> Vec<(i64, u64, u64)> {
    let (Some((&lo, _)), Some((&hi, _))) = (hours.first_key_value(), hours.last_key_value()) else {
        return vec![];
    };
    let (first_day, last_day) = (lo.div_euclid(24), hi.div_euclid(24));
    let days = last_day - first_day + 1;
    let width = (days + max_buckets - 1) / max_buckets;
    let mut out: Vec<(i64, u64, u64)> = (0..(days + width - 1) / width)
        .map(|b| ((first_day + b * width).saturating_mul(DAY_MS), 0, 0))
        .collect();
    for (hour, (n, refused)) in hours {
        let b = ((hour.div_euclid(24) - first_day) / width) as usize;
        out[b].1 += n;
        out[b].2 += refused;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periods_parse_dates_times_and_open_ends() {
        let p = Period::parse("2026-01-01..2026-04-01").unwrap();
        assert_eq!(p.from_ms, 1_767_225_600_000);
        assert_eq!(p.to_ms, 1_775_001_600_000);
        assert!(p.contains(p.from_ms) && !p.contains(p.to_ms));
        let p = Period::parse("..2026-01-01T12:00:00Z").unwrap();
        assert_eq!(p.from_ms, i64::MIN);
        assert_eq!(p.to_ms, 1_767_268_800_000);
        assert_eq!(Period::parse("..").unwrap(), Period::ALL);
        for bad in [
            "2026-01-01",
            "2026-13-01..",
            "2026-04-01..2026-01-01",
            "x..y",
        ] {
            assert!(Period::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_timeline_has_a_bar_per_day() {
        let mut hours = BTreeMap::new();
        hours.insert(10, (5, 1)); // day 0
        hours.insert(11, (2, 0)); // day 0
        hours.insert(200, (7, 0)); // day 8
        hours.insert(-1, (1, 1)); // the day before the epoch
        let t = timeline(&hours, 731);
        assert_eq!(t.len(), 10, "days -1 to 8");
        assert_eq!(t[0], (-DAY_MS, 1, 1));
        assert_eq!(t[1], (0, 7, 1));
        assert_eq!(t[9], (8 * DAY_MS, 7, 0));
        assert!(t[2..9].iter().all(|b| b.1 == 0 && b.2 == 0));
    }

    #[test]
    fn a_long_timeline_groups_days() {
        let mut hours = BTreeMap::new();
        hours.insert(0, (1, 0));
        hours.insert(24 * 999, (2, 0)); // day 999: 1,000 days
        let t = timeline(&hours, 100);
        assert_eq!(t.len(), 100);
        assert_eq!(t[1].0 - t[0].0, 10 * DAY_MS);
        assert_eq!((t[0].1, t[99].1), (1, 2));
    }
}
