//! The gate at append time: the sequencer's [`Admission`] for gatelog
//! entries. It rebuilds the [`GateState`] from the log on start, checks a
//! batch's signatures in one batch verification, runs the gate on each
//! entry in log order, and writes the log's signed `gateRefusal` record
//! for each refused intent.
//!
//! The state is shared (read-only) with the HTTP handlers that serve
//! chains and obligations.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, RwLock};
use std::time::Instant;

use ed25519_dalek::VerifyingKey;
use prost::Message;
use thiserror::Error;

use crate::access::entry::proto::{Actor, GateRefusal, LogParameters, LogTime};
use crate::access::entry::{self, timestamp, Body, DecodedEntry, Kind, Statement};
use crate::access::gate::{self, GateState, PolicyEngine, Refusal, Rejection, Verdict};
use crate::server::log::Log;
use crate::server::sequencer::{Admission, Admit, Admitted, SubmitError, Submitted};
use crate::server::statements::StoredStatements;
use crate::server::store::StoreError;
use crate::sys::clock::now_ms;
use crate::tlog::note::{NoteSigner, NoteVerifier};
use crate::tlog::tiles::MAX_ENTRY_BYTES;

/// Why the gate's state could not be rebuilt from the log.
#[derive(Debug, Error)]
pub enum ReplayError {
    #[error(transparent)]
    Storage(#[from] StoreError),
    #[error("entry {index} is not a gatelog SignedEntry ({reason}); this log holds other entries: serve it with --entries opaque")]
    NotAnEntry { index: u64, reason: String },
    #[error("{0}")]
    NewerRules(String),
}

/// A log moved to a rules version this release does not know (a newer
/// release wrote it, or a node of an older release shares its store)
/// must not be judged by older rules under the newer number: that gate
/// would be weaker than the log says. Fail closed, before `entry` is
/// applied (nothing is judged under the newer number meanwhile).
fn known_rules(entry: &DecodedEntry, index: u64) -> Result<(), String> {
    let Some(Body::LogParameters(p)) = &entry.statement.body else {
        return Ok(());
    };
    let version = p.rules_version;
    if version > gate::RULES_VERSION {
        return Err(format!(
            "entry {index} moves this log to rules version {version}; this release knows up to {}: serve it with a release that knows version {version}",
            gate::RULES_VERSION
        ));
    }
    Ok(())
}

/// The gate state behind a lock: the sequencer writes, readers read.
pub type SharedState = Arc<RwLock<GateState>>;

/// Every key that may sign, by signer and key id, as of the last batch
/// that changed one: what the HTTP workers check signatures against
/// before an entry queues, without waiting for the gate's state (which
/// the sequencer holds while it admits a batch). Swapped whole.
pub type SharedKeys = Arc<RwLock<Arc<HashMap<String, HashMap<u32, VerifyingKey>>>>>;

/// What the gate is started with.
pub struct GateConfig {
    /// The bootstrap admins: trusted for a log of rules version 1 until its
    /// upgrade, and recorded in the parameters record of a new log or of
    /// that upgrade. A log that has its parameters record ignores them.
    pub admins: Vec<NoteVerifier>,
    /// Admin signatures an authority-creating action needs.
    pub admin_threshold: u32,
    /// How far a statement's `issuedAt` may be from the log's time.
    pub max_clock_skew_ms: i64,
    /// How often, at most, the log records its time: a batch gets a
    /// `logTime` record when the clock has moved this far since the last.
    pub log_time_resolution_ms: i64,
    /// The newest statements the gate keeps in memory (the rest it reads
    /// back from storage); more than the largest batch.
    pub statement_cache: usize,
    /// Signed entries a new log appends right after its parameters (in
    /// development mode: a default policy).
    pub genesis: Vec<Vec<u8>>,
}

/// The sequencer's admission for gatelog entries.
pub struct Gatekeeper {
    log: Arc<Log>,
    state: SharedState,
    keys: SharedKeys,
    engine: Box<dyn PolicyEngine + Send>,
    /// The log's key, for its own records.
    signer: NoteSigner,
    config: GateConfig,
}

impl Gatekeeper {
    /// Replays every entry of `log` into a fresh state that trusts
    /// `config.admins` (until the log's parameters record says otherwise).
    pub fn open(
        log: Arc<Log>,
        config: GateConfig,
        engine: Box<dyn PolicyEngine + Send>,
    ) -> Result<Self, ReplayError> {
        let signer = NoteSigner::parse(&log.signer().to_private_key_string())
            .expect("the log's own key parses");
        let state = replay(&log, &config, log.head().size)?;
        Ok(Gatekeeper {
            log,
            keys: Arc::new(RwLock::new(Arc::new(state.active_keys()))),
            state: Arc::new(RwLock::new(state)),
            engine,
            signer,
            config,
        })
    }

    /// A record of the log's own, with `body`, dated `at_ms`.
    fn own_record(&self, at_ms: i64, body: Body) -> Vec<u8> {
        let statement = Statement {
            actor: Some(Actor {
                id: self.signer.name().to_string(),
                ..Default::default()
            }),
            issued_at: Some(timestamp(at_ms)),
            log_origin: self.log.origin().to_string(),
            body: Some(body),
            ..Default::default()
        };
        entry::sign(&self.signer, &statement).encode_to_vec()
    }

    /// The log's record of its own time, `now_ms`.
    fn log_time_record(&self, now_ms: i64) -> Vec<u8> {
        self.own_record(now_ms, Body::LogTime(LogTime {}))
    }

    /// The parameters record for a new log, or for `state`'s move to
    /// this release's rules version, which keeps the admin set the log
    /// has recorded since (the bootstrap admins may be long gone).
    fn parameters_record(&self, state: &GateState, now_ms: i64) -> Vec<u8> {
        let (admin_keys, admin_threshold) = match state.params().index {
            Some(_) => (
                state.admins().map(|a| a.to_vkey()).collect(),
                state.params().admin_threshold,
            ),
            None => (
                self.config.admins.iter().map(|a| a.to_vkey()).collect(),
                self.config.admin_threshold,
            ),
        };
        self.own_record(
            now_ms,
            Body::LogParameters(LogParameters {
                rules_version: gate::RULES_VERSION,
                log_origin: self.log.origin().to_string(),
                max_clock_skew_ms: self.config.max_clock_skew_ms.max(0) as u64,
                admin_keys,
                admin_threshold,
            }),
        )
    }

    /// Appends `record` (the log's own) to the state at `index`.
    fn apply_own(state: &mut GateState, index: u64, record: &[u8]) {
        let d = DecodedEntry::decode(record).expect("our own record decodes");
        state.apply(index, &d);
    }

    /// The state, for readers.
    pub fn state(&self) -> SharedState {
        self.state.clone()
    }

    /// The signing keys, for checks before the gate.
    pub fn keys(&self) -> SharedKeys {
        self.keys.clone()
    }
}

/// The log's signed record of a refused entry, to sit at `index`.
fn refusal_record(
    signer: &NoteSigner,
    index: u64,
    refused: &[u8],
    chain_id: &str,
    r: &Refusal,
    now_ms: i64,
) -> Vec<u8> {
    let statement = Statement {
        actor: Some(Actor {
            id: signer.name().to_string(),
            ..Default::default()
        }),
        chain_id: chain_id.to_string(),
        issued_at: Some(timestamp(now_ms)),
        body: Some(Body::GateRefusal(GateRefusal {
            refused_entry: refused.to_vec(),
            violations: r.violations.clone(),
            policy: r.policy.clone(),
            index,
        })),
        ..Default::default()
    };
    entry::sign(signer, &statement).encode_to_vec()
}

/// A fresh gate state, replayed from the first `size` entries of `log`.
fn replay(log: &Arc<Log>, config: &GateConfig, size: u64) -> Result<GateState, ReplayError> {
    let statements = StoredStatements::new(log.clone(), config.statement_cache);
    let mut state = GateState::new(log.verifier().clone(), config.admins.clone())
        .without_free_text()
        .with_holdings()
        .keeping_on(Arc::new(statements));
    const CHUNK: u64 = 4096;
    let mut start = 0;
    while start < size {
        let count = CHUNK.min(size - start);
        let entries = log.store().entries(start, count)?;
        if entries.is_empty() {
            return Err(ReplayError::Storage(StoreError::Corrupt(format!(
                "entry {start} is missing below the checkpoint"
            ))));
        }
        for (k, leaf) in entries.iter().enumerate() {
            let index = start + k as u64;
            let decoded = DecodedEntry::decode(leaf).map_err(|e| ReplayError::NotAnEntry {
                index,
                reason: e.to_string(),
            })?;
            known_rules(&decoded, index).map_err(ReplayError::NewerRules)?;
            state.apply(index, &decoded);
        }
        start += entries.len() as u64;
    }
    Ok(state)
}

/// The largest entry the gate may take for a log signed by `signer`: the
/// log's refusal record for it, which holds the whole entry, must fit the
/// tile format's 65,535 bytes. Found by encoding the largest record there
/// can be (a 256-byte chain id and policy id, the most violations with the
/// longest codes and messages, the largest index and time) around a
/// refused entry of each candidate size.
pub fn max_refusable_entry_bytes(signer: &NoteSigner) -> usize {
    use crate::access::entry::proto::{PolicyRef, RuleViolation};
    let worst = Refusal {
        violations: vec![
            RuleViolation {
                rule: u32::MAX,
                code: "c".repeat(gate::MAX_VIOLATION_CODE_BYTES),
                message: "m".repeat(gate::MAX_VIOLATION_MESSAGE_BYTES),
            };
            gate::MAX_RECORDED_VIOLATIONS
        ],
        policy: Some(PolicyRef {
            policy_id: "p".repeat(256),
            version: u64::MAX,
        }),
    };
    let chain_id = "x".repeat(256);
    // The latest time a protobuf Timestamp holds, with all nanoseconds.
    let latest = 253_402_300_799_999;
    let size = |n: usize| {
        refusal_record(signer, u64::MAX, &vec![0xff; n], &chain_id, &worst, latest).len()
    };
    let mut n = MAX_ENTRY_BYTES.saturating_sub(size(0));
    while n > 0 && size(n) > MAX_ENTRY_BYTES {
        n -= 1;
    }
    n
}

/// What the gate answers a dry run: its verdict, and whether the entry's
/// signature was checked.
pub struct DryRun {
    /// Admit, refuse (with every violation), or reject (why).
    pub verdict: Result<Verdict, Rejection>,
    /// False for an unsigned entry (an empty signature): everything but
    /// the signature was judged.
    pub signature_checked: bool,
    /// The log's time the entry was judged at.
    pub judged_at_ms: Option<i64>,
}

/// What [`Gatekeeper::admit`] would decide on `d` if it were submitted now
/// (at `now_ms`) as the next entry after `next - 1`, changing nothing: the
/// same signer and signature checks, at the time its batch would be judged
/// (a new `logTime` record's when the clock has moved `resolution_ms`
/// since the last), through the same rules. An entry with an empty
/// signature is judged on everything else.
pub fn judge_now(
    state: &mut GateState,
    next: u64,
    d: &DecodedEntry,
    engine: &mut dyn PolicyEngine,
    resolution_ms: i64,
    now_ms: i64,
) -> DryRun {
    let before = state.log_time();
    let mut index = next;
    if state.rules_version() >= 2 {
        let now = now_ms.max(before.unwrap_or(i64::MIN));
        if before.is_none_or(|t| now - t >= resolution_ms) {
            state.rewind_log_time(Some(now));
            index += 1;
        }
    }
    let signature_checked = !d.signed.signature.is_empty();
    // The state is set to the judging time: a panic below must neither
    // leave it there nor unwind through its lock (poisoning it would stop
    // the sequencer).
    let judged = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        judge(state, index, d, engine, signature_checked)
    }));
    let verdict = judged.unwrap_or_else(|_| {
        Err(Rejection::new(
            500,
            "internal_error",
            "the dry run could not be judged",
        ))
    });
    let judged_at_ms = state.log_time();
    state.rewind_log_time(before);
    DryRun {
        verdict,
        signature_checked,
        judged_at_ms,
    }
}

/// The checks of [`judge_now`], at the state's time.
fn judge(
    state: &GateState,
    index: u64,
    d: &DecodedEntry,
    engine: &mut dyn PolicyEngine,
    signature_checked: bool,
) -> Result<Verdict, Rejection> {
    if d.kind().is_log_record() {
        Err(Rejection::new(
            403,
            "log_only",
            "only the log writes gateRefusal, logParameters and logTime entries",
        ))
    } else {
        state.signing_key(d).and_then(|key| {
            if signature_checked && !entry::verify(&key, &d.signed.statement, &d.signed.signature) {
                return Err(Rejection::new(
                    401,
                    "bad_signature",
                    format!(
                        "the signature does not verify with key {:08x} of {}",
                        d.signed.key_id, d.signed.signer_id
                    ),
                )
                .at("signedEntry.signature"));
            }
            gate::check(state, index, d, engine)
        })
    }
}

/// Whether admitting an entry of `kind` may change who can sign with
/// which key.
fn changes_keys(kind: Kind) -> bool {
    matches!(
        kind,
        Kind::IdentityRegistration | Kind::AdminSetChange | Kind::LogParameters | Kind::Suspension
    )
}

impl Admission for Gatekeeper {
    /// A log without this release's parameters record gets one now (with
    /// a time record): a new log's genesis, or an existing log's move to
    /// this rules version (from 1, or from 2 keeping its admin set). A new
    /// log then appends its genesis entries.
    fn opening(&mut self, first: u64) -> Vec<Vec<u8>> {
        let mut state = self.state.write().expect("gate state lock");
        if state.params().index.is_some() && state.rules_version() >= gate::RULES_VERSION {
            return vec![];
        }
        let now = now_ms();
        let mut records = vec![
            self.parameters_record(&state, now),
            self.log_time_record(now),
        ];
        for (k, r) in records.iter().enumerate() {
            Self::apply_own(&mut state, first + k as u64, r);
        }
        if first == 0 {
            for bytes in &self.config.genesis {
                let index = first + records.len() as u64;
                let d = DecodedEntry::decode(bytes).expect("genesis entries decode");
                let admitted = state
                    .signing_key(&d)
                    .is_ok_and(|k| entry::verify(&k, &d.signed.statement, &d.signed.signature))
                    && matches!(
                        gate::check(&state, index, &d, self.engine.as_mut()),
                        Ok(Verdict::Admit)
                    );
                assert!(admitted, "a genesis entry the gate refuses");
                state.apply(index, &d);
                records.push(bytes.clone());
            }
        }
        // The parameters record may have named the admins.
        *self.keys.write().expect("keys lock") = Arc::new(state.active_keys());
        records
    }

    fn admit(&mut self, first: u64, entries: &[Submitted<'_>]) -> Admitted {
        let decoded: Vec<Result<Cow<DecodedEntry>, Rejection>> =
            entries
                .iter()
                .map(|e| match e.decoded {
                    Some(d) => Ok(Cow::Borrowed(d)),
                    // Not through the HTTP layer: decode and validate here, as
                    // it does (the gate's rules rely on what validation checks,
                    // and never refuse-record what could not be an entry).
                    None => DecodedEntry::decode(e.bytes)
                        .map_err(|e| Rejection::new(400, "malformed_entry", e.message).at(e.field))
                        .and_then(|d| {
                            let limits = entry::Limits {
                                max_future_ms: self.config.max_clock_skew_ms,
                                max_backdate_ms: self.config.max_clock_skew_ms,
                            };
                            match d.kind().is_log_record() {
                                true => Ok(d),
                                false => entry::validate(&d, now_ms(), &limits)
                                    .map(|()| d)
                                    .map_err(|e| {
                                        Rejection::new(422, "invalid_entry", e.message).at(e.field)
                                    }),
                            }
                        })
                        .map(Cow::Owned),
                })
                .map(|d| match d {
                    Ok(d) if d.kind().is_log_record() => Err(Rejection::new(
                        403,
                        "log_only",
                        "only the log writes gateRefusal, logParameters and logTime entries",
                    )),
                    d => d,
                })
                .collect();
        let mut state = self.state.write().expect("gate state lock");
        // The log's clock: under rules version 2 a batch is judged at the
        // time its `logTime` record states, written first when the clock
        // has moved on since the last one. It never goes back.
        let mut prefix = Vec::new();
        let before = state.log_time();
        if state.rules_version() >= 2 {
            let now = now_ms().max(before.unwrap_or(i64::MIN));
            let due = before.is_none_or(|t| now - t >= self.config.log_time_resolution_ms);
            if due {
                let record = self.log_time_record(now);
                Self::apply_own(&mut state, first, &record);
                prefix.push(record);
            }
        }
        // Signatures the HTTP layer verified with the key the signer still
        // holds are not checked again; the rest go in one batch.
        let keyed: Vec<Option<(&DecodedEntry, VerifyingKey)>> = decoded
            .iter()
            .zip(entries)
            .map(|(d, e)| {
                let d: &DecodedEntry = d.as_ref().ok()?;
                let key = state.signing_key(d).ok()?;
                (e.verified_with.map(|v| v.key()) != Some(key)).then_some((d, key))
            })
            .collect();
        let started = Instant::now();
        let verified = entry::verify_all(&keyed);
        let m = &self.log.metrics;
        m.signature_check.observe_duration(started.elapsed());
        let mut next = first + prefix.len() as u64;
        let mut keys_changed = false;
        let mut out = Vec::with_capacity(entries.len());
        for (k, d) in decoded.iter().enumerate() {
            let d: &DecodedEntry = match d {
                Ok(d) => d,
                Err(r) => {
                    out.push(Admit::Reject(r.clone()));
                    continue;
                }
            };
            // An earlier entry of this batch may have registered, rotated
            // or revoked the key: ask again, and verify alone if it changed.
            let key = match state.signing_key(d) {
                Ok(key) => key,
                Err(r) => {
                    out.push(Admit::Reject(r));
                    continue;
                }
            };
            let good = match keyed[k] {
                _ if entries[k].verified_with.map(|v| v.key()) == Some(key) => true,
                Some((_, batch_key)) if batch_key == key => verified[k],
                _ => entry::verify(&key, &d.signed.statement, &d.signed.signature),
            };
            if !good {
                out.push(Admit::Reject(
                    Rejection::new(
                        401,
                        "bad_signature",
                        format!(
                            "the signature does not verify with key {:08x} of {}",
                            d.signed.key_id, d.signed.signer_id
                        ),
                    )
                    .at("signedEntry.signature"),
                ));
                continue;
            }
            let started = Instant::now();
            let verdict = gate::check(&state, next, d, self.engine.as_mut());
            if matches!(d.kind(), Kind::ExecutionIntent | Kind::Review) {
                m.gate_decision.observe_duration(started.elapsed());
            }
            match verdict {
                Err(r) => out.push(Admit::Reject(r)),
                Ok(Verdict::Admit) => {
                    keys_changed |= changes_keys(d.kind());
                    state.apply(next, d);
                    next += 1;
                    out.push(Admit::Append);
                }
                Ok(Verdict::Refuse(refusal)) => {
                    m.gate_refusals.fetch_add(1, Relaxed);
                    let refusal = refusal.bounded();
                    let at = state.log_time().unwrap_or_else(now_ms);
                    let record = refusal_record(
                        &self.signer,
                        next,
                        entries[k].bytes,
                        &d.statement.chain_id,
                        &refusal,
                        at,
                    );
                    // Validation bounds every field a record repeats, so
                    // this cannot happen; if it did, a record the tile
                    // format cannot carry would make its bundle unservable
                    // for ever: refuse to log it at all.
                    if record.len() > MAX_ENTRY_BYTES {
                        out.push(Admit::Reject(Rejection::new(
                            413,
                            "entry_too_large",
                            "its refusal record would not fit an entry bundle",
                        )));
                        continue;
                    }
                    let recorded = DecodedEntry::decode(&record).expect("our own record decodes");
                    state.apply(next, &recorded);
                    next += 1;
                    out.push(Admit::Record { record, refusal });
                }
            }
        }
        let rejected = out.iter().filter(|a| matches!(a, Admit::Reject(_))).count();
        m.rejected.fetch_add(rejected as u64, Relaxed);
        if rejected == out.len() && !prefix.is_empty() {
            // Nothing to time: rejected submissions do not make the log
            // record its clock (or anyone could grow it with junk).
            state.rewind_log_time(before);
            prefix.clear();
        }
        if keys_changed {
            *self.keys.write().expect("keys lock") = Arc::new(state.active_keys());
        }
        Admitted {
            prefix,
            answers: out,
        }
    }

    /// The state again from the stored log, in place (readers keep their
    /// handle on it). A database out of reach is only unavailable.
    fn reset(&mut self, size: u64) -> Result<(), SubmitError> {
        let fresh = replay(&self.log, &self.config, size).map_err(|e| match e {
            ReplayError::Storage(StoreError::Postgres(e)) => SubmitError::Unavailable(e),
            e => SubmitError::Storage(e.to_string()),
        })?;
        let mut state = self.state.write().expect("gate state lock");
        *state = fresh;
        *self.keys.write().expect("keys lock") = Arc::new(state.active_keys());
        Ok(())
    }

    /// Another node's entries, as its gate admitted them: applied in log
    /// order, as on start. The keys the HTTP workers check with are
    /// refreshed, and a queued entry verified with a key that changed
    /// meanwhile is checked again by `admit`.
    fn follow(&mut self, first: u64, entries: &[Vec<u8>]) -> Result<(), String> {
        let mut state = self.state.write().expect("gate state lock");
        let mut keys_changed = false;
        for (k, leaf) in entries.iter().enumerate() {
            let index = first + k as u64;
            let d = DecodedEntry::decode(leaf).map_err(|e| {
                format!("entry {index} is not a gatelog SignedEntry ({e}); another node serves this log with --entries opaque")
            })?;
            keys_changed |= changes_keys(d.kind());
            known_rules(&d, index)?;
            state.apply(index, &d);
        }
        if keys_changed {
            *self.keys.write().expect("keys lock") = Arc::new(state.active_keys());
        }
        Ok(())
    }
}
