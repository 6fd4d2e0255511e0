//! What the log's history establishes: identities and their keys, chains
//! and their entries, delegations, revocations, the policy in force and
//! open break-glass reviews. Built by applying admitted entries in order.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use ed25519_dalek::VerifyingKey;
use serde::Serialize;

use super::classes::{ms, ops, requirements, requirements_flagged};
use super::holdings::Holdings;
use super::limits::{MAX_CHAIN_ENTRIES, MAX_CHAIN_REFUSALS, MAX_OPINIONS_PER_ACTOR};
use super::Rejection;
use crate::access::entry::proto::entitlement_op::Op;
use crate::access::entry::proto::{
    decision, execution_outcome, identity_registration::Operation, review, Actor, EntitlementDelta,
    GateRefusal, LogParameters, PolicyPublication, ReviewCampaign, Target,
};
use crate::access::entry::{millis, ActorKind, Body, DecodedEntry, Kind, Statement};
use crate::tlog::merkle::Hash;
use crate::tlog::note::{key_id, NoteVerifier, ALG_ED25519};

/// An admitted statement the rules may look at again: the facts every
/// scan needs, and the statement itself unless the state reads it back
/// from its [`StateStorage`] (see [`GateState::statement`]).
#[derive(Debug, Clone)]
pub struct Recorded {
    pub index: u64,
    pub leaf_hash: Hash,
    /// Which key of its signer signed it.
    pub key_id: u32,
    /// When the log admitted it: the log's time (rules version 2), else
    /// its own `issuedAt`.
    pub admitted_ms: i64,
    kind: Kind,
    actor_kind: ActorKind,
    /// A DENY decision, an outcome that failed, or a review without a
    /// verdict: what a chain's status needs besides the kind, kept so that
    /// no status reads a statement.
    negative: bool,
    actor: Box<str>,
    statement: Option<Arc<Statement>>,
}

impl Recorded {
    pub fn kind(&self) -> Kind {
        self.kind
    }

    pub fn actor_id(&self) -> &str {
        &self.actor
    }

    pub fn actor_kind(&self) -> ActorKind {
        self.actor_kind
    }

    /// Whether it is a DENY decision.
    pub fn is_deny(&self) -> bool {
        self.kind == Kind::Decision && self.negative
    }

    /// Whether it is an outcome that reports a failed execution.
    pub fn is_failed_outcome(&self) -> bool {
        self.kind == Kind::ExecutionOutcome && self.negative
    }
}

/// Where a state that keeps only facts in memory keeps the rest: the
/// log's storage, which holds every entry the state has applied (an
/// implementation holds the newest until they are durable), and the entry
/// indices of closed chains (derived from the log, so a replay rewrites
/// them: they need not be durable with the batch that closed the chain).
pub trait StateStorage: Send + Sync {
    /// The statement of the entry at `index`, as [`GateState`] stores it
    /// (free text dropped); `None` if storage cannot give it.
    fn statement(&self, index: u64) -> Option<Arc<Statement>>;
    /// `statement`, just applied at `index` (perhaps not yet durable).
    fn applied(&self, index: u64, statement: Arc<Statement>);
    /// Keeps the entry indices of a chain that closed, under a digest of
    /// its id.
    fn keep_closed_chain(&self, chain: &ChainKey, entries: &[u64]);
    /// The entry indices of a closed chain, if kept.
    fn closed_chain(&self, chain: &ChainKey) -> Option<Vec<u64>>;
}

/// One open decision chain: its opening statement and every entry in it.
#[derive(Debug, Clone)]
pub struct Chain {
    /// The `accessRequest` or `breakGlass` that opened it.
    pub opener: u64,
    pub target: Target,
    /// Indices of the chain's entries, in log order.
    pub entries: Vec<u64>,
    /// Whether an execution succeeded.
    executed: bool,
    /// Rules version 3: an eligible DENY was admitted (final).
    denied: bool,
    /// Rules version 3: when the request expires (an access request's
    /// admission plus the policy's maximum request age).
    expires_ms: Option<i64>,
    /// Rules version 5: how its time-bound grant ended, once it has.
    ended: Option<ChainStatus>,
    /// Rules version 5: the chain whose grant covered this one's access
    /// when it ended.
    pub covered_by: Option<String>,
}

/// A chain that has just closed, with the statements the state let go.
#[derive(Debug)]
pub struct Closure {
    pub chain_id: String,
    pub chain: Chain,
    pub status: ChainStatus,
    /// The chain's entries, in log order.
    pub records: Vec<Recorded>,
}

/// A target as a key: system, resource, subject.
type TargetKey = (String, String, String);

fn target_key(t: &Target) -> TargetKey {
    (t.system.clone(), t.resource.clone(), t.subject.clone())
}

/// Closed chains are found by a digest of their id: 16 bytes each.
pub type ChainKey = [u8; 16];

fn chain_key(chain_id: &str) -> ChainKey {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(chain_id.as_bytes());
    let mut key = [0u8; 16];
    key.copy_from_slice(&digest[..16]);
    key
}

/// Where a chain stands, from its latest significant entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ChainStatus {
    Requested,
    Recommended,
    Approved,
    Denied,
    Executed,
    ExecutionFailed,
    Refused,
    BreakGlassAwaitingReview,
    Reviewed,
    /// A review revoked the break-glass: the change awaits its undo.
    AwaitingUndo,
    /// Rules version 3: the request outlived the policy's maximum request
    /// age unexecuted; the chain closed.
    Expired,
    /// Rules version 5: the access it granted is in force until its end.
    Granted,
    /// Rules version 5: the grant ended (or was revoked early); its access
    /// awaits removal.
    AwaitingDeprovisioning,
    /// Rules version 5: the ended grant's access was removed; closed.
    Deprovisioned,
    /// Rules version 5: the grant ended while another grant in force
    /// covers the same access (its chain is in the obligation); closed.
    Covered,
}

/// What an open obligation asks for.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ObligationKind {
    /// A break-glass awaits its review by another human.
    Review,
    /// A change must be undone (a break-glass whose review revoked it):
    /// an executor removes it, without a new approval.
    Undo,
    /// Rules version 5: a time-bound grant's access must be removed when
    /// it ends (or at once, once revoked): an executor removes it, without
    /// a new approval.
    Deprovision,
}

impl ObligationKind {
    /// What is owed, in words.
    pub fn owed(self) -> &'static str {
        match self {
            ObligationKind::Review => "break-glass review",
            ObligationKind::Undo => "undo of a revoked break-glass",
            ObligationKind::Deprovision => "de-provisioning of ended access",
        }
    }
}

/// Something a chain still owes: the one kind of obligation every
/// lifecycle rule opens (see the gate's docs, "One chain lifecycle").
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Obligation {
    pub chain_id: String,
    /// The `breakGlass` entry that opened the chain.
    pub index: u64,
    pub actor: String,
    pub deadline_ms: i64,
    pub kind: ObligationKind,
    /// The entry that opened the obligation (for an undo: the review; for
    /// a de-provisioning: the successful outcome that granted the access).
    pub opened_by: u64,
}

/// A permanent grant's end (rules version 6): never.
pub const PERMANENT: i64 = i64::MAX;

/// Rules version 5: access a chain granted for a time. It is in force from
/// its successful outcome until `ends_ms` (or its early revocation), and
/// its chain stays open, owing its de-provisioning, until an executor has
/// removed what it added.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Grant {
    pub chain_id: String,
    /// The successful outcome that granted it.
    pub outcome: u64,
    pub target: Target,
    /// The entitlements it added.
    pub entitlements: Vec<String>,
    pub granted_ms: i64,
    pub ends_ms: i64,
    /// The revocation (or suspension) that ended it early, and when.
    pub revoked_by: Option<u64>,
    pub revoked_ms: Option<i64>,
    /// Extension approvals admitted since it was granted or last
    /// extended. The extension takes effect when as many people as the
    /// first grant needed have approved it (rules version 7: and as many
    /// as the policy in force asks now), with approvals still good then.
    #[serde(skip)]
    extensions: Vec<ExtensionApproval>,
    /// Distinct people an extension needs: as many as the grant did.
    pub approvals: u32,
    /// The granting chain flagged its access privileged (its request,
    /// intent or an approval the intent linked).
    pub privileged: bool,
    /// How long its removal may take once it has ended (the policy's).
    pub window_ms: i64,
}

/// The entitlement delta a statement carries, if any (a request's, an
/// approval's, an intent's, a break-glass's, a recommendation's).
pub(super) fn delta_of(st: &Statement) -> Option<&EntitlementDelta> {
    match &st.body {
        Some(Body::AccessRequest(b)) => b.delta.as_ref(),
        Some(Body::Decision(b)) => b.approved_delta.as_ref(),
        Some(Body::ExecutionIntent(b)) => b.delta.as_ref(),
        Some(Body::BreakGlass(b)) => b.delta.as_ref(),
        Some(Body::Recommendation(b)) => b.proposed_delta.as_ref(),
        _ => None,
    }
}

/// An approval that extends a grant (rules version 5), while it waits for
/// the others the extension needs.
#[derive(Debug, Clone, PartialEq)]
pub struct ExtensionApproval {
    pub decision: u64,
    /// Who approved, as a person (an NHI's owner).
    pub person: Box<str>,
    /// How long the access lasts from the extension.
    pub duration_ms: i64,
    /// When the approval expires.
    pub expires_ms: i64,
    /// It flags the access privileged (rules version 7: that may raise
    /// the approvals the extension needs).
    pub privileged: bool,
}

impl Grant {
    /// The entitlements it holds, as a delta that adds them (what an
    /// extension approves again).
    pub fn held_delta(&self) -> EntitlementDelta {
        EntitlementDelta {
            ops: self
                .entitlements
                .iter()
                .map(|e| crate::access::entry::proto::EntitlementOp {
                    op: Op::Add as i32,
                    entitlement: e.clone(),
                })
                .collect(),
            ..Default::default()
        }
    }

    /// Whether it grants access at `now`: not ended, not revoked.
    pub fn in_force(&self, now: i64) -> bool {
        self.revoked_by.is_none() && now <= self.ends_ms
    }

    /// When it ends; None: permanent (rules version 6).
    pub fn ends(&self) -> Option<i64> {
        (self.ends_ms != PERMANENT).then_some(self.ends_ms)
    }

    /// When its access had to be gone, at the latest: its end (or its
    /// revocation) and the removal window after it.
    pub fn due_ms(&self, revoked_at: Option<i64>) -> i64 {
        revoked_at
            .map_or(self.ends_ms, |r| r.min(self.ends_ms))
            .saturating_add(self.window_ms)
    }
}

#[derive(Debug, Clone)]
struct Identity {
    actor: Actor,
    /// The accountable human behind an NHI or ASSISTANT, if named.
    owner: String,
    /// key id → (key, still allowed to sign).
    keys: HashMap<u32, (VerifyingKey, bool)>,
}

/// The log's history, as far as the gate is concerned.
pub struct GateState {
    log_key: NoteVerifier,
    admins: HashMap<String, NoteVerifier>,
    identities: HashMap<String, Identity>,
    /// Chain entries, delegation grants and revocable statements.
    recorded: HashMap<u64, Recorded>,
    chains: HashMap<String, Chain>,
    /// Rules version 3: open access-request chains by expiry, so the log's
    /// clock closes them as it passes.
    expiring: BTreeSet<(i64, String)>,
    /// A chain closes once it has executed and, if it broke glass, been
    /// reviewed. Nothing may be added to it after that, so its statements
    /// are let go: what is kept is its final status under a digest of its
    /// id (17 bytes), and its entry indices: in `storage` if the state
    /// has one, else here.
    closed: HashMap<ChainKey, ChainStatus>,
    closed_entries: HashMap<ChainKey, Box<[u64]>>,
    /// Whether recorded statements keep their free text (justifications,
    /// reasons, notes), which no rule reads; the server drops it, so an
    /// open chain costs its facts, not its prose (see
    /// [`GateState::without_free_text`]).
    free_text: bool,
    /// Where recorded statements are read back from, when they are not
    /// kept in memory (the server's storage); `None`: kept in memory.
    storage: Option<Arc<dyn StateStorage>>,
    revoked: HashSet<u64>,
    /// Approvals and break-glasses already executed on → the intent.
    used: HashMap<u64, u64>,
    policy: Option<Arc<PolicyPublication>>,
    obligations: BTreeMap<u64, Obligation>,
    /// Rules version 5: time-bound grants, by their chain's opener, until
    /// their access is removed or covered.
    grants: HashMap<u64, Grant>,
    /// Those grants by end, so the log's clock finds the ones it ends.
    grant_ends: BTreeSet<(i64, u64)>,
    /// Those grants by target, to find what covers what.
    grants_on: HashMap<TargetKey, BTreeSet<u64>>,
    /// Grants to look at again after the entry being applied: revoked, or
    /// on a target that just got a new grant (one may now cover another).
    grants_to_check: Vec<u64>,
    /// The rules and parameters in force (from the log's
    /// `logParameters` record; rules version 1 before one).
    params: Params,
    /// The log's time: the `issuedAt` of its latest `logTime` record.
    log_time_ms: Option<i64>,
    /// Approvals void because the key that signed them was revoked or
    /// reported compromised.
    voided: HashSet<u64>,
    /// Intents whose outcome has been reported.
    reported: HashSet<u64>,
    /// Rules version 5: suspended identities, and the entry that suspended
    /// each.
    suspended: HashMap<String, u64>,
    /// Who has what, when kept ([`GateState::with_holdings`]).
    holdings: Option<Holdings>,
    /// Rules version 5: access review campaigns, by their entry, and the
    /// open ones by deadline.
    campaigns: BTreeMap<u64, Campaign>,
    campaign_deadlines: BTreeSet<(i64, u64)>,
    campaign_ids: HashSet<String>,
}

/// Rules version 5: an access review campaign and where it stands.
#[derive(Debug, Clone, Serialize)]
pub struct Campaign {
    pub campaign_id: String,
    pub index: u64,
    pub leaf_hash: Hash,
    pub system: String,
    pub resource_prefix: String,
    /// Rules version 7 (empty before).
    pub subject_prefix: String,
    pub reviewers: Vec<String>,
    pub deadline_ms: i64,
    pub revoke_unreviewed: bool,
    /// Whether the log's clock has passed its deadline.
    pub closed: bool,
    /// The snapshot: the grants in force in its scope at its admission,
    /// by their outcome.
    pub items: BTreeMap<u64, CampaignItem>,
}

/// One grant of a campaign's snapshot.
#[derive(Debug, Clone, Serialize)]
pub struct CampaignItem {
    pub chain_id: String,
    pub subject: String,
    pub entitlements: Vec<String>,
    /// Who took part in granting it (requester, approvers, executor).
    pub granters: Vec<String>,
    /// KEEP (true) or REVOKE, by whom, at which entry.
    pub decision: Option<(bool, String, u64)>,
    /// Which key of the reviewer signed the decision, and when the log
    /// admitted it (rules version 7: a KEEP signed by a key since revoked
    /// or reported compromised no longer stands).
    #[serde(skip)]
    pub signed: (u32, i64),
    /// Certifications of it that stood and were voided (their reviewer
    /// suspended, or, rules version 7, their key revoked or reported
    /// compromised), by entry.
    pub voided: Vec<u64>,
    /// Revoked at the deadline for want of a review.
    pub revoked_unreviewed: bool,
    /// The grant's outcome's leaf hash (a certification links it).
    pub leaf_hash: Hash,
    /// How its access ended while the log was replayed: `removed` (a
    /// removal's outcome no longer saw it) or `covered` (by another
    /// grant still in force).
    pub ended: Option<&'static str>,
    /// Whether it ended while the campaign was open (then it needed no
    /// review).
    pub ended_in_campaign: bool,
}

impl CampaignItem {
    /// Its decision no longer stands: the grant is to be reviewed again.
    fn void_decision(&mut self) {
        if let Some((_, _, entry)) = self.decision.take() {
            self.voided.push(entry);
        }
    }
}

/// Every parameter that changes a verdict, as the log recorded it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Params {
    pub rules_version: u32,
    pub origin: String,
    pub max_clock_skew_ms: i64,
    pub admin_threshold: u32,
    /// Where the parameters record is.
    pub index: Option<u64>,
}

impl GateState {
    /// An empty history, trusting `admins` to register identities and
    /// publish policy, and `log_key` for the log's own refusal records.
    pub fn new(log_key: NoteVerifier, admins: Vec<NoteVerifier>) -> Self {
        GateState {
            log_key,
            admins: admins
                .into_iter()
                .map(|a| (a.name().to_string(), a))
                .collect(),
            identities: HashMap::new(),
            recorded: HashMap::new(),
            chains: HashMap::new(),
            expiring: BTreeSet::new(),
            closed: HashMap::new(),
            closed_entries: HashMap::new(),
            free_text: true,
            storage: None,
            revoked: HashSet::new(),
            used: HashMap::new(),
            policy: None,
            obligations: BTreeMap::new(),
            grants: HashMap::new(),
            grant_ends: BTreeSet::new(),
            grants_on: HashMap::new(),
            grants_to_check: Vec::new(),
            params: Params {
                rules_version: 1,
                origin: String::new(),
                max_clock_skew_ms: 0,
                admin_threshold: 1,
                index: None,
            },
            log_time_ms: None,
            voided: HashSet::new(),
            reported: HashSet::new(),
            suspended: HashMap::new(),
            holdings: None,
            campaigns: BTreeMap::new(),
            campaign_deadlines: BTreeSet::new(),
            campaign_ids: HashSet::new(),
        }
    }

    /// The rules and parameters in force.
    pub fn params(&self) -> &Params {
        &self.params
    }

    /// The gate's rules version in force.
    pub fn rules_version(&self) -> u32 {
        self.params.rules_version
    }

    /// The log's time, once it has recorded one.
    pub fn log_time(&self) -> Option<i64> {
        self.log_time_ms
    }

    /// Sets the log's time back to `t` (the sequencer undoes a `logTime`
    /// record it did not append because nothing followed it).
    pub fn rewind_log_time(&mut self, t: Option<i64>) {
        self.log_time_ms = t;
    }

    /// The time the log's rules judge `at` by: the log's own clock under
    /// rules version 2, the statement's `issuedAt` before.
    pub fn time_of(&self, st: &Statement) -> i64 {
        match (self.params.rules_version, self.log_time_ms) {
            (2.., Some(t)) => t,
            _ => st.issued_at.as_ref().map_or(0, millis),
        }
    }

    /// The person accountable for `id`: the owner of an NHI or assistant
    /// that names one, else `id` itself.
    pub fn person_of<'a>(&'a self, id: &'a str) -> &'a str {
        match self.identities.get(id) {
            Some(i) if !i.owner.is_empty() => i.owner.as_str(),
            _ => id,
        }
    }

    /// The registered kind of `id` (admins are HUMAN).
    pub fn kind_of(&self, id: &str) -> Option<ActorKind> {
        if self.admins.contains_key(id) {
            return Some(ActorKind::Human);
        }
        let i = self.identities.get(id)?;
        ActorKind::try_from(i.actor.kind).ok()
    }

    /// Whether `index` is an approval voided by a key revocation or
    /// compromise.
    pub fn is_voided(&self, index: u64) -> bool {
        self.voided.contains(&index)
    }

    /// Whether the outcome of intent `index` has been reported.
    pub fn is_reported(&self, index: u64) -> bool {
        self.reported.contains(&index)
    }

    /// The admins' verifier keys.
    pub fn admins(&self) -> impl Iterator<Item = &NoteVerifier> {
        self.admins.values()
    }

    /// Every key that may sign now, by signer and key id: the admins'
    /// and each identity's active keys (the log's own key aside). A
    /// snapshot for checks made before the gate; the gate's verdict is
    /// [`GateState::signing_key`]'s.
    pub fn active_keys(&self) -> HashMap<String, HashMap<u32, VerifyingKey>> {
        let mut all: HashMap<String, HashMap<u32, VerifyingKey>> = self
            .identities
            .iter()
            .map(|(id, identity)| {
                let keys = identity
                    .keys
                    .iter()
                    .filter(|(_, (_, active))| *active)
                    .map(|(key_id, (key, _))| (*key_id, *key))
                    .collect();
                (id.clone(), keys)
            })
            .collect();
        for admin in self.admins.values() {
            all.entry(admin.name().to_string())
                .or_default()
                .insert(admin.key_id(), verifying_key(admin));
        }
        all
    }

    /// The key that must have signed `entry`, if its signer, key and actor
    /// are known and allowed to sign.
    pub fn signing_key(&self, entry: &DecodedEntry) -> Result<VerifyingKey, Rejection> {
        let signer = &entry.signed.signer_id;
        let key_id = entry.signed.key_id;
        let kind = entry.kind();
        let log = self.log_key.name() == signer.as_str();
        if kind.is_log_record() || log {
            if log && kind.is_log_record() && key_id == self.log_key.key_id() {
                return Ok(verifying_key(&self.log_key));
            }
            return Err(Rejection::new(
                403,
                "log_only",
                "only the log writes gateRefusal, logParameters and logTime entries, under its own name",
            ));
        }
        let actor = entry.statement.actor.as_ref();
        if let Some(admin) = self.admins.get(signer.as_str()) {
            if admin.key_id() != key_id {
                return Err(Rejection::new(
                    401,
                    "unknown_key",
                    format!("admin {signer} has no key {key_id:08x}"),
                )
                .at("signedEntry.keyId"));
            }
            if actor.is_some_and(|a| a.kind != ActorKind::Human as i32) {
                return Err(
                    Rejection::new(403, "actor_mismatch", "an admin acts as HUMAN")
                        .at("statement.actor.kind"),
                );
            }
            return Ok(verifying_key(admin));
        }
        let identity = self.identities.get(signer.as_str()).ok_or_else(|| {
            Rejection::new(
                401,
                "unknown_signer",
                format!("no identity {signer:?} is registered"),
            )
            .at("signedEntry.signerId")
        })?;
        let (key, active) = identity.keys.get(&key_id).ok_or_else(|| {
            Rejection::new(
                401,
                "unknown_key",
                format!("{signer} has no key {key_id:08x}"),
            )
            .at("signedEntry.keyId")
        })?;
        if !active {
            return Err(Rejection::new(
                403,
                "key_revoked",
                format!("key {key_id:08x} of {signer} was rotated out or revoked"),
            )
            .at("signedEntry.keyId"));
        }
        // A suspended human's machines stop with them.
        let person = self.person_of(signer);
        if let Some(at) = self
            .suspended
            .get(signer.as_str())
            .or_else(|| self.suspended.get(person))
        {
            return Err(Rejection::new(
                403,
                "suspended",
                format!("{signer} (or {person}, who answers for it) was suspended by entry {at}: its keys sign nothing the log takes"),
            )
            .at("signedEntry.signerId"));
        }
        if let Some(a) = actor {
            let r = &identity.actor;
            if a.kind != r.kind
                || a.workload != r.workload
                || a.model_id != r.model_id
                || a.agent_id != r.agent_id
            {
                return Err(Rejection::new(
                    403,
                    "actor_mismatch",
                    format!("statement.actor differs from the registration of {signer} (kind, workload, model or agent)"),
                )
                .at("statement.actor"));
            }
        }
        Ok(*key)
    }

    /// Whether the signer may make this kind of statement at all.
    pub(super) fn authorize(&self, entry: &DecodedEntry) -> Result<(), Rejection> {
        let signer = entry.signed.signer_id.as_str();
        let admin = self.admins.contains_key(signer);
        let kind = entry.kind();
        let admin_only = matches!(
            kind,
            Kind::IdentityRegistration
                | Kind::PolicyPublication
                | Kind::DelegationGrant
                | Kind::AdminSetChange
                | Kind::Suspension
                | Kind::ReviewCampaign
        );
        if admin_only && !admin {
            return Err(Rejection::new(
                403,
                "admin_only",
                format!("{} statements come from an admin", kind.name()),
            ));
        }
        let v2 = self.params.rules_version >= 2;
        let in_chain = !admin_only && kind != Kind::Revocation;
        if v2 && admin && in_chain {
            // An admin key administers; the person behind it takes part in
            // changes under their own identity (else one person could be
            // both "alice" and admin "ops-alice" in one chain).
            return Err(Rejection::new(
                403,
                "admin_in_chain",
                "admin keys register, publish and revoke; act in a change under a registered identity",
            ));
        }
        if v2 && in_chain {
            let id = signer;
            let machine = !matches!(self.kind_of(id), Some(ActorKind::Human) | None);
            if machine && self.person_of(id) == id {
                return Err(Rejection::new(
                    403,
                    "no_owner",
                    format!("{id} answers to no human: an admin names its owner (ROTATE_KEY with owner) before it acts"),
                ));
            }
        }
        if (admin_only || kind == Kind::Revocation) && admin && v2 {
            self.admin_quorum(entry)?;
        } else if kind == Kind::AdminSetChange {
            return Err(Rejection::new(
                422,
                "needs_rules_version_2",
                "the admin set lives in the log from rules version 2",
            ));
        }
        if let Some(Body::Suspension(s)) = &entry.statement.body {
            self.may_suspend(s)?;
        }
        if matches!(kind, Kind::ReviewCampaign | Kind::Certification)
            && self.params.rules_version < 5
        {
            return Err(Rejection::new(
                422,
                "needs_rules_version_5",
                "access reviews are rules version 5's",
            ));
        }
        let assistant = entry
            .statement
            .actor
            .as_ref()
            .is_some_and(|a| a.kind == ActorKind::Assistant as i32);
        if assistant && kind == Kind::BreakGlass {
            return Err(Rejection::new(
                403,
                "assistant_break_glass",
                "an ASSISTANT never breaks glass",
            ));
        }
        if let Some(Body::Revocation(r)) = &entry.statement.body {
            let revoked = r.revoked.as_ref().map_or(u64::MAX, |r| r.index);
            if let Some((opener, _)) = self.grant_by_outcome(revoked) {
                // Version 5: a grant is revoked early by an admin, its
                // requester or one of its approvers.
                if !admin && !self.grant_revokers(opener).contains(&signer) {
                    return Err(Rejection::new(
                        403,
                        "not_revoker",
                        "only an admin, the requester or an approver revokes a grant",
                    ));
                }
                return Ok(());
            }
            let author = self
                .recorded
                .get(&revoked)
                .map(|r| r.actor_id().to_string());
            if !admin && author.as_deref() != Some(signer) {
                return Err(Rejection::new(
                    403,
                    "not_revoker",
                    "only an admin or the revoked entry's author revokes it",
                ));
            }
        }
        if let Some(Body::IdentityRegistration(r)) = &entry.statement.body {
            let id = r.identity.as_ref().map_or("", |a| a.id.as_str());
            let existing = self.identities.get(id);
            let op = Operation::try_from(r.operation).unwrap_or(Operation::Unspecified);
            let field = "statement.identityRegistration.identity.id";
            if op == Operation::Register && (existing.is_some() || self.admins.contains_key(id)) {
                return Err(Rejection::new(
                    409,
                    "already_registered",
                    format!("{id} is already registered"),
                )
                .at(field));
            }
            let kind = r.identity.as_ref().map_or(0, |a| a.kind);
            // A rotation may name (or change) a machine's owner: how an
            // NHI registered under rules version 1 gets one.
            let names_owner =
                op == Operation::Register || (op == Operation::RotateKey && !r.owner.is_empty());
            if self.params.rules_version >= 2 && names_owner {
                let machine = kind != ActorKind::Human as i32;
                let field = "statement.identityRegistration.owner";
                if machine && r.owner.is_empty() {
                    return Err(Rejection::new(
                        422,
                        "owner_required",
                        "an NHI or ASSISTANT names its accountable human owner",
                    )
                    .at(field));
                }
                if !r.owner.is_empty() && self.kind_of(&r.owner) != Some(ActorKind::Human) {
                    return Err(Rejection::new(
                        422,
                        "unknown_owner",
                        format!("{:?} is not a registered HUMAN", r.owner),
                    )
                    .at(field));
                }
                if !machine && !r.owner.is_empty() {
                    return Err(Rejection::new(
                        422,
                        "human_owner",
                        "a HUMAN answers for themselves and names no owner",
                    )
                    .at(field));
                }
            }
            if op != Operation::Register {
                let existing = existing.ok_or_else(|| {
                    Rejection::new(404, "unknown_identity", format!("{id} is not registered"))
                        .at(field)
                })?;
                if existing.actor.kind != r.identity.as_ref().map_or(0, |a| a.kind) {
                    return Err(Rejection::new(
                        422,
                        "kind_change",
                        "an identity keeps its kind; register a new one",
                    )
                    .at("statement.identityRegistration.identity.kind"));
                }
                let kid = key_id(id, ALG_ED25519, &r.public_key);
                if op == Operation::RotateKey
                    && r.compromised_at.is_some()
                    && self.params.rules_version < 2
                {
                    return Err(Rejection::new(
                        422,
                        "unsupported_field",
                        "compromisedAt needs rules version 2",
                    )
                    .at("statement.identityRegistration.compromisedAt"));
                }
                if op == Operation::RevokeKey && !existing.keys.get(&kid).is_some_and(|k| k.1) {
                    return Err(Rejection::new(
                        404,
                        "unknown_key",
                        format!("{id} has no active key {kid:08x}"),
                    )
                    .at("statement.identityRegistration.publicKey"));
                }
            }
        }
        Ok(())
    }

    /// Whether an admin may suspend (or lift the suspension of) `s.identity`
    /// now (rules version 5).
    fn may_suspend(&self, s: &crate::access::entry::proto::Suspension) -> Result<(), Rejection> {
        let field = "statement.suspension.identity";
        let id = s.identity.as_str();
        if self.params.rules_version < 5 {
            return Err(Rejection::new(
                422,
                "needs_rules_version_5",
                "suspensions are rules version 5's",
            ));
        }
        if self.admins.contains_key(id) {
            return Err(Rejection::new(
                422,
                "admin_suspension",
                format!("{id} is an admin: an admin leaves through an adminSetChange (M of N)"),
            )
            .at(field));
        }
        if !self.identities.contains_key(id) {
            return Err(
                Rejection::new(404, "unknown_identity", format!("{id} is not registered"))
                    .at(field),
            );
        }
        match (s.lifted, self.suspended.get(id)) {
            (false, Some(at)) => Err(Rejection::new(
                409,
                "already_suspended",
                format!("{id} is suspended since entry {at}"),
            )
            .at(field)),
            (true, None) => {
                Err(
                    Rejection::new(409, "not_suspended", format!("{id} is not suspended"))
                        .at(field),
                )
            }
            _ => Ok(()),
        }
    }

    /// Rules version 5: suspends `id` by entry `by`, admitted at `at`:
    /// its unused approvals are void, the delegations it holds or gave are
    /// revoked, and every grant it holds owes its removal now.
    fn suspend(&mut self, id: &str, by: u64, at: i64) {
        self.suspended.insert(id.to_string(), by);
        // What a suspended reviewer certified in campaigns still open no
        // longer stands: it is to be reviewed again. (Rules version 7: a
        // KEEP; a REVOKE has already taken the access away, and stands.)
        let keeps_only = self.rules_version() >= 7;
        let open: Vec<u64> = self.campaign_deadlines.iter().map(|(_, i)| *i).collect();
        for index in open {
            let Some(c) = self.campaigns.get(&index) else {
                continue;
            };
            let undo: Vec<u64> = c
                .items
                .iter()
                .filter(|(_, i)| {
                    i.decision.as_ref().is_some_and(|(keep, by, _)| {
                        (*keep || !keeps_only) && (by == id || self.person_of(by) == id)
                    })
                })
                .map(|(o, _)| *o)
                .collect();
            if let Some(c) = self.campaigns.get_mut(&index) {
                for o in undo {
                    if let Some(i) = c.items.get_mut(&o) {
                        i.void_decision();
                    }
                }
            }
        }
        let approvals: Vec<u64> = self
            .recorded
            .values()
            .filter(|d| d.kind() == Kind::Decision && d.actor_id() == id)
            .filter(|d| !self.used.contains_key(&d.index))
            .map(|d| d.index)
            .collect();
        self.voided.extend(approvals);
        let delegations: Vec<u64> = self
            .recorded
            .values()
            .filter(|r| r.kind() == Kind::DelegationGrant)
            .filter(|r| match &self.statement(r).body {
                Some(Body::DelegationGrant(g)) => g.grantee == id || g.principal == id,
                _ => false,
            })
            .map(|r| r.index)
            .collect();
        self.revoked.extend(delegations);
        // (In log order, so that every replay closes what it closes in the
        // same order.)
        let mut held: Vec<u64> = self
            .grants
            .values()
            .filter(|g| self.person_of(&g.target.subject) == id || g.target.subject == id)
            .filter(|g| g.in_force(at))
            .map(|g| g.outcome)
            .collect();
        held.sort_unstable();
        for outcome in held {
            self.revoke_grant(outcome, by, at);
        }
    }

    /// Rules version 5: opens campaign `c` at `index`: snapshots the grants
    /// in force in its scope.
    fn open_campaign(
        &mut self,
        index: u64,
        leaf_hash: Hash,
        c: &crate::access::entry::proto::ReviewCampaign,
        at: i64,
    ) {
        let mut items = BTreeMap::new();
        let scoped: Vec<&Grant> = self.in_campaign_scope(c, at).collect();
        for g in scoped {
            let granters = self.granters(g);
            let leaf_hash = self
                .recorded
                .get(&g.outcome)
                .map_or([0; 32], |r| r.leaf_hash);
            items.insert(
                g.outcome,
                CampaignItem {
                    chain_id: g.chain_id.clone(),
                    subject: g.target.subject.clone(),
                    entitlements: g.entitlements.clone(),
                    granters,
                    decision: None,
                    signed: (0, 0),
                    voided: vec![],
                    revoked_unreviewed: false,
                    leaf_hash,
                    ended: None,
                    ended_in_campaign: false,
                },
            );
        }
        let deadline_ms = c.deadline.as_ref().map_or(0, millis);
        self.campaign_deadlines.insert((deadline_ms, index));
        self.campaign_ids.insert(c.campaign_id.clone());
        self.campaigns.insert(
            index,
            Campaign {
                campaign_id: c.campaign_id.clone(),
                index,
                leaf_hash,
                system: c.system.clone(),
                resource_prefix: c.resource_prefix.clone(),
                subject_prefix: self.subject_prefix(c).to_string(),
                reviewers: c.reviewers.clone(),
                deadline_ms,
                revoke_unreviewed: c.revoke_unreviewed,
                closed: false,
                items,
            },
        );
    }

    /// Who took part in granting `g`: its requester, the approvals its
    /// intent linked and the approvers of its extensions, its executor.
    fn granters(&self, g: &Grant) -> Vec<String> {
        let Some(chain) = self.chains.get(&g.chain_id) else {
            return vec![];
        };
        let mut who: Vec<String> = self
            .grant_revokers(chain.opener)
            .into_iter()
            .map(str::to_string)
            .collect();
        if let Some(o) = self.recorded.get(&g.outcome) {
            who.push(o.actor_id().to_string());
        }
        who
    }

    /// Rules version 5: certification `c` at `index` decides its grant;
    /// a REVOKE makes the grant's removal due at once.
    fn certify(
        &mut self,
        index: u64,
        key_id: u32,
        st: &Statement,
        c: &crate::access::entry::proto::Certification,
        at: i64,
    ) {
        let (Some(campaign), Some(grant)) = (c.campaign.as_ref(), c.grant.as_ref()) else {
            return;
        };
        let reviewer = st.actor.as_ref().map_or("", |a| a.id.as_str()).to_string();
        let keep = c.verdict == crate::access::entry::proto::certification::Verdict::Keep as i32;
        // The rule's guards again: a log that admitted a certification the
        // gate refuses gets its finding, and no decision from it.
        let person = self.person_of(&reviewer).to_string();
        let live_granters: Vec<String> = self
            .grant_by_outcome(grant.index)
            .map(|(opener, _)| {
                self.grant_revokers(opener)
                    .into_iter()
                    .map(|g| self.person_of(g).to_string())
                    .collect()
            })
            .unwrap_or_default();
        let eligible = |k: &Campaign, i: &CampaignItem| {
            !k.closed
                && at <= k.deadline_ms
                && k.leaf_hash.as_slice() == campaign.leaf_hash.as_slice()
                && i.leaf_hash.as_slice() == grant.leaf_hash.as_slice()
                && k.reviewers.contains(&reviewer)
                && self.kind_of(&reviewer) == Some(ActorKind::Human)
                && self.person_of(&i.subject) != person
                && !i.granters.iter().any(|g| self.person_of(g) == person)
                && !live_granters.contains(&person)
        };
        let ok = self
            .campaigns
            .get(&campaign.index)
            .and_then(|k| k.items.get(&grant.index).map(|i| (k, i)))
            .is_some_and(|(k, i)| i.decision.is_none() && eligible(k, i));
        if !ok {
            return;
        }
        let Some(item) = self
            .campaigns
            .get_mut(&campaign.index)
            .and_then(|k| k.items.get_mut(&grant.index))
        else {
            return;
        };
        item.decision = Some((keep, reviewer, index));
        item.signed = (key_id, at);
        if !keep
            && self
                .grant_by_outcome(grant.index)
                .is_some_and(|(_, g)| g.in_force(at))
        {
            self.revoke_grant(grant.index, index, at);
        }
    }

    /// Rules version 7: the KEEPs `id` certified, in campaigns still open,
    /// with a key `void` says is no longer trusted (revoked, or a key
    /// rotated out after its stated compromise) stand no more: their
    /// grants are to be reviewed again. (A REVOKE stands: it took access
    /// away, which a stolen key gains nothing by.)
    fn void_certifications(&mut self, id: &str, void: impl Fn((u32, i64)) -> bool) {
        for (_, index) in self.campaign_deadlines.iter() {
            let Some(c) = self.campaigns.get_mut(index) else {
                continue;
            };
            for item in c.items.values_mut() {
                let keep_by_id = matches!(&item.decision, Some((true, by, _)) if by == id);
                if keep_by_id && void(item.signed) {
                    item.void_decision();
                }
            }
        }
    }

    /// Rules version 5: the campaigns whose deadline the log's clock has
    /// passed close; what they hold unreviewed is revoked if they say so.
    fn close_campaigns(&mut self) {
        let Some(now) = self.log_time_ms else {
            return;
        };
        while let Some(&(deadline, index)) = self.campaign_deadlines.first() {
            if deadline >= now {
                break;
            }
            self.campaign_deadlines.pop_first();
            let Some(c) = self.campaigns.get_mut(&index) else {
                continue;
            };
            c.closed = true;
            if !c.revoke_unreviewed {
                continue;
            }
            let undecided: Vec<u64> = c
                .items
                .iter()
                .filter(|(_, i)| i.decision.is_none())
                .map(|(o, _)| *o)
                .collect();
            for outcome in undecided {
                if self
                    .grant_by_outcome(outcome)
                    .is_some_and(|(_, g)| g.in_force(now))
                {
                    self.revoke_grant(outcome, index, now);
                    if let Some(item) = self
                        .campaigns
                        .get_mut(&index)
                        .and_then(|c| c.items.get_mut(&outcome))
                    {
                        item.revoked_unreviewed = true;
                    }
                }
            }
        }
    }

    /// Rules version 5: the access review campaigns, in log order.
    pub fn campaigns(&self) -> impl Iterator<Item = &Campaign> {
        self.campaigns.values()
    }

    /// Rules version 5: the campaign opened at entry `index`.
    pub fn campaign(&self, index: u64) -> Option<&Campaign> {
        self.campaigns.get(&index)
    }

    /// Whether a campaign named `id` exists.
    pub fn campaign_named(&self, id: &str) -> bool {
        self.campaign_ids.contains(id)
    }

    /// Campaigns whose deadline the log's clock has not passed.
    pub fn open_campaigns(&self) -> usize {
        self.campaign_deadlines.len()
    }

    /// Rules version 5: the grants in force at `at` on `system` (empty:
    /// any) whose resource starts with `prefix`: a campaign's snapshot.
    pub fn grants_in_scope(&self, c: &ReviewCampaign, at: i64) -> usize {
        self.in_campaign_scope(c, at).count()
    }

    /// The grants in force at `at` that campaign `c` reviews: on its
    /// system (empty: any), a resource starting with its prefix and
    /// (rules version 7) a subject starting with its own.
    fn in_campaign_scope<'a>(
        &'a self,
        c: &'a ReviewCampaign,
        at: i64,
    ) -> impl Iterator<Item = &'a Grant> + 'a {
        let subject_prefix = self.subject_prefix(c);
        self.grants.values().filter(move |g| {
            g.in_force(at)
                && (c.system.is_empty() || g.target.system == c.system)
                && g.target.resource.starts_with(&c.resource_prefix)
                && g.target.subject.starts_with(subject_prefix)
        })
    }

    /// A campaign's subject prefix: read from rules version 7 (an earlier
    /// release never saw the field).
    fn subject_prefix<'a>(&self, c: &'a ReviewCampaign) -> &'a str {
        if self.rules_version() >= 7 {
            &c.subject_prefix
        } else {
            ""
        }
    }

    /// Marks how the access of the grant of `outcome` ended, in every
    /// campaign that reviews it.
    fn campaign_grant_ended(&mut self, outcome: u64, how: &'static str) {
        for c in self.campaigns.values_mut() {
            let open = !c.closed;
            if let Some(item) = c.items.get_mut(&outcome) {
                item.ended = Some(how);
                item.ended_in_campaign |= open;
            }
        }
    }

    /// Rules version 5: the entry that suspended `id`, while it is.
    pub fn suspended_by(&self, id: &str) -> Option<u64> {
        self.suspended.get(id).copied()
    }

    /// Who may revoke the grant of the chain opened at `opener`: its
    /// requester and those who approved in it.
    pub(super) fn grant_revokers(&self, opener: u64) -> Vec<&str> {
        let (Some(g), Some(requester)) = (self.grants.get(&opener), self.recorded.get(&opener))
        else {
            return vec![];
        };
        let Some(chain) = self.chains.get(&g.chain_id) else {
            return vec![];
        };
        // The approvals the granting intent linked, and the extensions.
        let granting: Vec<u64> = self
            .recorded
            .get(&g.outcome)
            .map(|o| self.statement(o).links.clone())
            .unwrap_or_default()
            .iter()
            .filter_map(|l| self.recorded.get(&l.index))
            .filter(|r| r.kind() == Kind::ExecutionIntent)
            .flat_map(|i| self.statement(i).links.clone())
            .map(|l| l.index)
            .collect();
        let mut who = vec![requester.actor_id()];
        who.extend(
            chain
                .entries
                .iter()
                .filter_map(|i| self.recorded.get(i))
                .filter(|r| r.kind() == Kind::Decision && !r.negative)
                .filter(|r| {
                    granting.contains(&r.index)
                        || self.statement(r).links.iter().any(|l| l.index == g.outcome)
                })
                .map(Recorded::actor_id),
        );
        who
    }

    /// Rules version 2: an admin action that creates authority (changing
    /// the admin set, registering or re-keying a HUMAN, publishing a
    /// policy) carries the signatures of at least the threshold of
    /// distinct admins: its signer's and its endorsements'.
    fn admin_quorum(&self, entry: &DecodedEntry) -> Result<(), Rejection> {
        let creates_authority = match &entry.statement.body {
            Some(Body::PolicyPublication(_))
            | Some(Body::AdminSetChange(_))
            | Some(Body::IdentityRegistration(_))
            | Some(Body::DelegationGrant(_)) => true,
            // Suspending takes authority away: one admin does, at once.
            // Lifting gives it back: M of N.
            Some(Body::Suspension(s)) => s.lifted,
            // An admin withdrawing someone else's decision (a DENY's veto)
            // or grant acts for the organisation.
            // Ending a grant early takes authority away: one admin does.
            Some(Body::Revocation(r)) => r
                .revoked
                .as_ref()
                .and_then(|r| self.recorded.get(&r.index))
                .is_some_and(|r| {
                    r.actor_id() != entry.signed.signer_id && r.kind() != Kind::ExecutionOutcome
                }),
            _ => false,
        };
        let needed = self.params.admin_threshold as usize;
        if !creates_authority || needed <= 1 {
            return Ok(());
        }
        let endorsed = entry
            .signed
            .endorsements
            .iter()
            .filter(|e| e.signer_id != entry.signed.signer_id)
            .filter(|e| {
                self.admins.get(&e.signer_id).is_some_and(|a| {
                    a.key_id() == e.key_id
                        && crate::access::entry::verify(
                            &verifying_key(a),
                            &entry.signed.statement,
                            &e.signature,
                        )
                })
            })
            .map(|e| e.signer_id.as_str())
            .collect::<std::collections::BTreeSet<_>>()
            .len();
        let have = 1 + endorsed;
        if have < needed {
            return Err(Rejection::new(
                403,
                "admin_quorum",
                format!(
                    "this {} creates authority: it needs {needed} admins' signatures and has {have} valid",
                    entry.kind().name()
                ),
            )
            .at("signedEntry.endorsements"));
        }
        Ok(())
    }

    /// The statements `entry` links to, checked to be in the log with the
    /// right hash and in the same chain, and the chain itself consistent.
    pub(super) fn resolve_links(
        &self,
        index: u64,
        entry: &DecodedEntry,
    ) -> Result<Vec<&Recorded>, Rejection> {
        let st = &entry.statement;
        let kind = entry.kind();
        let chain_kind = !matches!(
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
        if let Some(status) = self
            .closed
            .get(&chain_key(&st.chain_id))
            .filter(|_| chain_kind)
        {
            let opens = matches!(kind, Kind::AccessRequest | Kind::BreakGlass);
            let why = match status {
                ChainStatus::Denied => "denied",
                ChainStatus::Expired => "its request expired",
                ChainStatus::Deprovisioned => "the access it granted was removed",
                ChainStatus::Covered => "its grant ended, covered by another",
                _ => "executed and, after break-glass, reviewed",
            };
            return Err(Rejection::new(
                409,
                if opens {
                    "chain_exists"
                } else {
                    "chain_closed"
                },
                format!(
                    "chain {:?} has closed ({why}); open a new chain",
                    st.chain_id
                ),
            )
            .at("statement.chainId"));
        }
        let mut linked = Vec::with_capacity(st.links.len());
        for (i, link) in st.links.iter().enumerate() {
            let field = format!("statement.links[{i}]");
            let r = self
                .recorded
                .get(&link.index)
                .filter(|_| link.index < index)
                .ok_or_else(|| {
                    Rejection::new(
                        422,
                        "absent_link",
                        format!(
                            "entry {} is not an entry of an open chain of this log",
                            link.index
                        ),
                    )
                    .at(format!("{field}.index"))
                })?;
            if r.leaf_hash.as_slice() != link.leaf_hash.as_slice() {
                return Err(Rejection::new(
                    422,
                    "link_hash_mismatch",
                    format!("entry {} has a different leaf hash", link.index),
                )
                .at(format!("{field}.leafHash")));
            }
            let linked_chain = &self.statement(r).chain_id;
            if *linked_chain != st.chain_id {
                return Err(Rejection::new(
                    422,
                    "cross_chain_link",
                    format!(
                        "entry {} is in chain {:?}, not {:?}",
                        link.index, linked_chain, st.chain_id
                    ),
                )
                .at(format!("{field}.index")));
            }
            linked.push(r);
        }
        match kind {
            Kind::AccessRequest | Kind::BreakGlass => {
                if self.chains.contains_key(&st.chain_id) {
                    return Err(Rejection::new(
                        409,
                        "chain_exists",
                        format!("chain {:?} already exists", st.chain_id),
                    )
                    .at("statement.chainId"));
                }
            }
            Kind::IdentityRegistration
            | Kind::PolicyPublication
            | Kind::DelegationGrant
            | Kind::LogParameters
            | Kind::LogTime
            | Kind::AdminSetChange
            | Kind::Suspension
            | Kind::ReviewCampaign
            | Kind::Certification => {}
            Kind::Revocation => {
                let Some(Body::Revocation(r)) = &st.body else {
                    unreachable!()
                };
                let target = r.revoked.as_ref().expect("validated");
                let field = "statement.revocation.revoked";
                let v5 = self.params.rules_version >= 5;
                let rec = self
                    .recorded
                    .get(&target.index)
                    .filter(|r| {
                        matches!(r.kind(), Kind::Decision | Kind::DelegationGrant)
                            || (v5 && self.grant_by_outcome(r.index).is_some())
                    })
                    .ok_or_else(|| {
                        Rejection::new(
                            422,
                            "absent_link",
                            format!(
                                "entry {} is not a decision of an open chain, a delegation grant or the outcome of a grant",
                                target.index
                            ),
                        )
                        .at(format!("{field}.index"))
                    })?;
                let now = self.time_of(st);
                if let Some((_, g)) = self.grant_by_outcome(target.index) {
                    if !g.in_force(now) {
                        return Err(Rejection::new(
                            409,
                            "grant_ended",
                            format!(
                                "the grant of entry {} has ended; its access awaits removal",
                                target.index
                            ),
                        )
                        .at(format!("{field}.index")));
                    }
                }
                if rec.leaf_hash.as_slice() != target.leaf_hash.as_slice() {
                    return Err(Rejection::new(
                        422,
                        "link_hash_mismatch",
                        format!("entry {} has a different leaf hash", target.index),
                    )
                    .at(format!("{field}.leafHash")));
                }
                // Version 3: a revocation joins its target's chain, so it
                // takes a place there, and revoking twice adds nothing.
                if self.params.rules_version >= 3 {
                    if self.revoked.contains(&target.index) {
                        return Err(Rejection::new(
                            409,
                            "already_revoked",
                            format!("entry {} is revoked already", target.index),
                        )
                        .at(format!("{field}.index")));
                    }
                    let chain_id = &self.statement(rec).chain_id;
                    if let Some(chain) = self.chains.get(chain_id.as_str()) {
                        self.room_in(chain, st, kind, self.time_of(st))?;
                    }
                }
            }
            _ => {
                let chain = self.chains.get(&st.chain_id).ok_or_else(|| {
                    Rejection::new(
                        422,
                        "unknown_chain",
                        format!(
                            "no chain {:?}: open it with an accessRequest or breakGlass",
                            st.chain_id
                        ),
                    )
                    .at("statement.chainId")
                })?;
                if st.target.as_ref().is_some_and(|t| *t != chain.target) {
                    return Err(Rejection::new(
                        422,
                        "target_mismatch",
                        "differs from the chain's target",
                    )
                    .at("statement.target"));
                }
                if self.params.rules_version >= 3 {
                    self.room_in(chain, st, kind, self.time_of(st))?;
                }
            }
        }
        if let Some(obo) = &st.on_behalf_of {
            let d = obo.delegation.as_ref().expect("validated");
            let field = "statement.onBehalfOf.delegation";
            let grant = self
                .recorded
                .get(&d.index)
                .filter(|r| r.kind() == Kind::DelegationGrant)
                .ok_or_else(|| {
                    Rejection::new(
                        422,
                        "absent_link",
                        format!("entry {} is not a delegation grant", d.index),
                    )
                    .at(format!("{field}.index"))
                })?;
            if grant.leaf_hash.as_slice() != d.leaf_hash.as_slice() {
                return Err(Rejection::new(
                    422,
                    "link_hash_mismatch",
                    format!("entry {} has a different leaf hash", d.index),
                )
                .at(format!("{field}.leafHash")));
            }
        }
        Ok(linked)
    }

    /// Rules version 3: whether `st`, of `kind`, may still join `chain`
    /// at `at_ms`. Once its request has expired or a DENY is in, only
    /// outcomes join; a chain holds at most [`MAX_CHAIN_ENTRIES`], keeping
    /// a place for the outcome of every intent; one identity adds at most
    /// [`MAX_OPINIONS_PER_ACTOR`] recommendations and decisions to it, so
    /// no one alone can fill it.
    fn room_in(
        &self,
        chain: &Chain,
        st: &Statement,
        kind: Kind,
        at_ms: i64,
    ) -> Result<(), Rejection> {
        if kind == Kind::ExecutionOutcome {
            return Ok(());
        }
        // A chain holding a grant is past its request: what joins it now
        // extends, revokes or removes the grant (version 5's rules), and
        // nothing else (which could fill it and shut out its revocation).
        let grant = self.grants.get(&chain.opener);
        let granted = grant.is_some();
        if let Some(g) = grant {
            let on_grant = st.links.iter().any(|l| l.index == g.outcome);
            let revokes_it = matches!(&st.body, Some(Body::Revocation(r))
                if r.revoked.as_ref().is_some_and(|r| r.index == g.outcome));
            if revokes_it {
                // At most one (revoking twice is refused): it always fits.
                return Ok(());
            }
            // The removal of an ended grant always fits (a failed one is
            // retried), up to twice a chain's entries.
            let removal = kind == Kind::ExecutionIntent && on_grant && !g.in_force(at_ms);
            if removal && Self::admitted_in(&self.recorded, chain) < 2 * MAX_CHAIN_ENTRIES {
                return Ok(());
            }
            let fits = match kind {
                Kind::Decision | Kind::ExecutionIntent => on_grant,
                Kind::Revocation => true,
                _ => false,
            };
            if !fits {
                return Err(Rejection::new(
                    409,
                    "chain_granted",
                    "this chain holds a grant: it takes an extension (an approval linking the grant's outcome), a revocation or the removal",
                )
                .at("statement.chainId"));
            }
        }
        if chain.denied && !granted {
            return Err(
                Rejection::new(409, "request_denied", "a DENY is final: open a new chain")
                    .at("statement.chainId"),
            );
        }
        if Self::expired(chain, at_ms) && !granted {
            return Err(Rejection::new(
                409,
                "request_expired",
                format!(
                    "the request expired at {}; open a new chain",
                    crate::access::entry::rfc3339(chain.expires_ms.unwrap_or_default())
                ),
            )
            .at("statement.chainId"));
        }
        if matches!(kind, Kind::Recommendation | Kind::Decision) {
            let actor = st.actor.as_ref().map_or("", |a| a.id.as_str());
            let opinions = chain
                .entries
                .iter()
                .filter_map(|i| self.recorded.get(i))
                .filter(|r| matches!(r.kind(), Kind::Recommendation | Kind::Decision))
                .filter(|r| r.actor_id() == actor)
                .count();
            if opinions >= MAX_OPINIONS_PER_ACTOR {
                return Err(Rejection::new(
                    409,
                    "too_many_from_actor",
                    format!(
                        "{actor} has {opinions} recommendations and decisions in this chain; at most {MAX_OPINIONS_PER_ACTOR}"
                    ),
                )
                .at("statement.actor.id"));
            }
        }
        // Whatever fills a chain, one intent and its outcome still fit.
        let needs = if kind == Kind::ExecutionIntent { 2 } else { 3 };
        let taken = Self::admitted_in(&self.recorded, chain) + self.unreported_intents(chain);
        if taken + needs > MAX_CHAIN_ENTRIES {
            return Err(Rejection::new(
                409,
                "chain_full",
                format!("a chain holds at most {MAX_CHAIN_ENTRIES} entries; open a new chain"),
            )
            .at("statement.chainId"));
        }
        Ok(())
    }

    /// Records an appended entry (admitted, or the log's refusal record);
    /// returns the chains it closed: under rules version 3 first every
    /// chain whose request the log's clock expired, then the entry's own.
    pub fn apply(&mut self, index: u64, entry: &DecodedEntry) -> Vec<Closure> {
        // Expired requests close before the next entry, not at the time
        // record itself: a server drops a time record when its whole batch
        // is rejected, and must then have closed nothing.
        let mut closed = vec![];
        if self.params.rules_version >= 3 && entry.kind() != Kind::LogTime {
            closed = self.close_expired();
        }
        if self.params.rules_version >= 5 && entry.kind() != Kind::LogTime {
            self.close_campaigns();
            closed.extend(self.end_grants());
        }
        closed.extend(self.record(index, entry));
        let recheck = std::mem::take(&mut self.grants_to_check);
        for opener in recheck {
            closed.extend(self.cover(opener));
        }
        closed
    }

    /// Rules version 5: the grants whose end the log's clock has passed
    /// close where another grant in force covers their access; the rest
    /// owe their de-provisioning, now due.
    fn end_grants(&mut self) -> Vec<Closure> {
        let Some(now) = self.log_time_ms else {
            return vec![];
        };
        let mut closed = vec![];
        while let Some(&(end, opener)) = self.grant_ends.first() {
            if end >= now {
                break;
            }
            self.grant_ends.pop_first();
            closed.extend(self.cover(opener));
        }
        closed
    }

    /// Closes the chain of grant `opener` as covered, if the grant no
    /// longer grants access itself and other grants in force grant all it
    /// did to the same subject and target.
    fn cover(&mut self, opener: u64) -> Option<Closure> {
        let now = self.log_time_ms.unwrap_or(i64::MIN);
        let grant = self.grants.get(&opener).filter(|g| !g.in_force(now))?;
        // A removal under way goes on; and access left past its removal's
        // due is not excused by a grant made after it (it stays overdue).
        if self
            .chains
            .get(&grant.chain_id)
            .is_some_and(|c| self.unreported_intents(c) > 0)
        {
            return None;
        }
        let by = self.covering(grant, now)?;
        let chain_id = grant.chain_id.clone();
        let outcome = grant.outcome;
        if let Some(h) = self.holdings.as_mut() {
            let ended = grant
                .revoked_ms
                .map_or(grant.ends_ms, |r| r.min(grant.ends_ms));
            h.covered(&grant.target, grant.outcome, None, ended, &by);
        }
        self.obligations.remove(&opener);
        self.unindex_grant(opener);
        self.campaign_grant_ended(outcome, "covered");
        let chain = self.chains.get_mut(&chain_id)?;
        chain.ended = Some(ChainStatus::Covered);
        chain.covered_by = Some(by);
        let chain = self.chains.get(&chain_id)?;
        if self.owes_nothing(chain) {
            self.close(&chain_id)
        } else {
            None
        }
    }

    /// The chain of a grant in force at `now`, other than `grant`, that
    /// grants its subject some of the same access on the same target, if
    /// grants in force together hold all of `grant`'s.
    fn covering(&self, grant: &Grant, now: i64) -> Option<String> {
        let others: Vec<&Grant> = self
            .grants_on
            .get(&target_key(&grant.target))?
            .iter()
            .filter_map(|o| self.grants.get(o))
            .filter(|g| g.outcome != grant.outcome && g.in_force(now))
            .filter(|g| g.granted_ms <= grant.due_ms(grant.revoked_ms))
            .collect();
        let all_held = grant
            .entitlements
            .iter()
            .all(|e| others.iter().any(|g| g.entitlements.contains(e)));
        if !all_held {
            return None;
        }
        others
            .iter()
            .find(|g| {
                g.entitlements
                    .iter()
                    .any(|e| grant.entitlements.contains(e))
            })
            .map(|g| g.chain_id.clone())
    }

    /// Rules version 5: what the removal of `grant` at `now` removes: what
    /// it added, less what other grants still in force on the same target
    /// hold (their access must not end with it), each with the chain of
    /// the grant that holds it on.
    pub fn to_remove(&self, grant: &Grant, now: i64) -> (Vec<String>, Vec<(String, String)>) {
        let others: Vec<&Grant> = self
            .grants_on
            .get(&target_key(&grant.target))
            .into_iter()
            .flatten()
            .filter_map(|o| self.grants.get(o))
            .filter(|g| g.outcome != grant.outcome && g.in_force(now))
            .collect();
        let mut removed = vec![];
        let mut held_on = vec![];
        for e in &grant.entitlements {
            match others.iter().find(|g| g.entitlements.contains(e)) {
                Some(g) => held_on.push((e.clone(), g.chain_id.clone())),
                None => removed.push(e.clone()),
            }
        }
        (removed, held_on)
    }

    fn unindex_grant(&mut self, opener: u64) {
        let Some(g) = self.grants.remove(&opener) else {
            return;
        };
        self.grant_ends.remove(&(g.ends_ms, opener));
        let key = target_key(&g.target);
        if let Some(set) = self.grants_on.get_mut(&key) {
            set.remove(&opener);
            if set.is_empty() {
                self.grants_on.remove(&key);
            }
        }
    }

    /// Closes the chains whose request expired before the log's time and
    /// that owe nothing (an intent still awaiting its outcome keeps its
    /// chain open until the outcome, which then closes it).
    fn close_expired(&mut self) -> Vec<Closure> {
        let Some(now) = self.log_time_ms else {
            return vec![];
        };
        let mut closed = vec![];
        while let Some((expiry, chain_id)) = self.expiring.first().cloned() {
            if expiry >= now {
                break;
            }
            self.expiring.pop_first();
            if self
                .chains
                .get(&chain_id)
                .is_some_and(|c| self.owes_nothing(c))
            {
                closed.extend(self.close(&chain_id));
            }
        }
        closed
    }

    /// Whether `chain` has no open obligation and no intent awaiting its
    /// outcome.
    fn owes_nothing(&self, chain: &Chain) -> bool {
        !self.obligations.contains_key(&chain.opener)
            && !self.grants.contains_key(&chain.opener)
            && self.unreported_intents(chain) == 0
    }

    /// The chain's intents whose outcome has not been reported.
    pub(super) fn unreported_intents(&self, chain: &Chain) -> usize {
        chain
            .entries
            .iter()
            .filter(|i| !self.reported.contains(i))
            .filter(|i| {
                self.recorded
                    .get(i)
                    .is_some_and(|r| r.kind() == Kind::ExecutionIntent)
            })
            .count()
    }

    /// The chain's entries that are not the log's refusal records.
    fn admitted_in(recorded: &HashMap<u64, Recorded>, chain: &Chain) -> usize {
        chain
            .entries
            .iter()
            .filter(|i| {
                recorded
                    .get(i)
                    .is_some_and(|r| r.kind() != Kind::GateRefusal)
            })
            .count()
    }

    /// Whether `chain`'s request has expired at `at_ms` (rules version 3).
    fn expired(chain: &Chain, at_ms: i64) -> bool {
        chain.expires_ms.is_some_and(|e| at_ms > e)
    }

    fn record(&mut self, index: u64, entry: &DecodedEntry) -> Option<Closure> {
        let mut st = entry.statement.clone();
        if !self.free_text {
            drop_free_text(&mut st);
        }
        let admitted_ms = self.time_of(&st);
        let kind = entry.kind();
        // What the state may record (chain entries, delegation grants,
        // revocations, refusal records) goes to storage; the rest it
        // applies and forgets.
        let recordable = !matches!(
            kind,
            Kind::IdentityRegistration
                | Kind::PolicyPublication
                | Kind::LogParameters
                | Kind::LogTime
                | Kind::AdminSetChange
                | Kind::Suspension
                | Kind::ReviewCampaign
                | Kind::Certification
        );
        let statement = match &self.storage {
            Some(storage) if recordable => {
                storage.applied(index, st.clone());
                None
            }
            _ => Some(st.clone()),
        };
        let rec = Recorded {
            index,
            leaf_hash: entry.leaf_hash,
            key_id: entry.signed.key_id,
            admitted_ms,
            kind,
            actor_kind: st
                .actor
                .as_ref()
                .and_then(|a| ActorKind::try_from(a.kind).ok())
                .unwrap_or(ActorKind::Unspecified),
            negative: match &st.body {
                Some(Body::Decision(d)) => d.outcome == decision::Outcome::Deny as i32,
                Some(Body::ExecutionOutcome(o)) => {
                    o.result == execution_outcome::Result::Failed as i32
                }
                Some(Body::Review(rv)) => rv.verdict == review::Verdict::Unspecified as i32,
                _ => false,
            },
            actor: st.actor.as_ref().map_or("", |a| a.id.as_str()).into(),
            statement,
        };
        if let Some(h) = self.holdings.as_mut().filter(|_| !kind.is_log_record()) {
            h.signed(rec.actor_id(), index);
        }
        match &st.body {
            Some(Body::LogParameters(p)) => {
                self.set_params(index, p);
                return None;
            }
            Some(Body::LogTime(_)) => {
                // Out of the protobuf range, it is no time at all (a hostile
                // log's; the audit reports it).
                if let Ok(t) = crate::access::entry::validate::time(st.issued_at.as_ref(), "") {
                    self.log_time_ms = Some(t);
                }
                return None;
            }
            Some(Body::AdminSetChange(c)) => {
                self.set_admins(&c.admin_keys);
                self.params.admin_threshold = c.admin_threshold.max(1);
                return None;
            }
            Some(Body::ReviewCampaign(c)) => {
                if self.params.rules_version >= 5 {
                    self.open_campaign(index, entry.leaf_hash, c, admitted_ms);
                }
                return None;
            }
            Some(Body::Certification(c)) => {
                if self.params.rules_version >= 5 {
                    self.certify(index, entry.signed.key_id, &st, c, admitted_ms);
                }
                return None;
            }
            Some(Body::Suspension(s)) => {
                if s.lifted {
                    self.suspended.remove(&s.identity);
                } else if self.params.rules_version >= 5 {
                    self.suspend(&s.identity, index, admitted_ms);
                }
                return None;
            }
            Some(Body::IdentityRegistration(r)) => {
                let actor = r.identity.clone()?;
                let Ok(key) = <[u8; 32]>::try_from(r.public_key.as_slice()) else {
                    return None;
                };
                let Ok(vk) = VerifyingKey::from_bytes(&key) else {
                    return None;
                };
                let kid = key_id(&actor.id, ALG_ED25519, &key);
                let op = Operation::try_from(r.operation).unwrap_or(Operation::Unspecified);
                let identity =
                    self.identities
                        .entry(actor.id.clone())
                        .or_insert_with(|| Identity {
                            actor: actor.clone(),
                            owner: r.owner.clone(),
                            keys: HashMap::new(),
                        });
                // Which unused approvals of this identity become void:
                // those signed by a revoked key (`Some((kid, None))`), or
                // by a rotated-out key admitted at or after the stated
                // compromise (`Some((new kid, Some(since)))`).
                let void: Option<(u32, Option<i64>)> = match op {
                    Operation::Register | Operation::RotateKey => {
                        for k in identity.keys.values_mut() {
                            k.1 = false;
                        }
                        identity.keys.insert(kid, (vk, true));
                        identity.actor = actor;
                        if !r.owner.is_empty() {
                            identity.owner = r.owner.clone();
                        }
                        r.compromised_at.as_ref().map(|t| (kid, Some(millis(t))))
                    }
                    Operation::RevokeKey => {
                        if let Some(k) = identity.keys.get_mut(&kid) {
                            k.1 = false;
                        }
                        Some((kid, None))
                    }
                    Operation::Unspecified => None,
                };
                if let Some((kid, since)) = void {
                    let signed_by_void_key = |d: &Recorded| match since {
                        None => d.key_id == kid,
                        Some(since) => d.key_id != kid && d.admitted_ms >= since,
                    };
                    let id = r.identity.as_ref().map_or("", |a| a.id.as_str());
                    let hit: Vec<u64> = self
                        .recorded
                        .values()
                        .filter(|d| d.kind() == Kind::Decision && d.actor_id() == id)
                        .filter(|d| !self.used.contains_key(&d.index) && signed_by_void_key(d))
                        .map(|d| d.index)
                        .collect();
                    self.voided.extend(hit);
                    if self.params.rules_version >= 7 {
                        self.void_certifications(id, |(key, at)| match since {
                            None => key == kid,
                            Some(since) => key != kid && at >= since,
                        });
                    }
                }
                return None;
            }
            Some(Body::PolicyPublication(p)) => {
                self.policy = Some(Arc::new(p.clone()));
                return None;
            }
            Some(Body::DelegationGrant(_)) => {
                self.recorded.insert(index, rec);
                return None;
            }
            Some(Body::Revocation(r)) => {
                // Only what the state holds can be revoked (a hostile log
                // may name anything).
                if let Some(target) = r
                    .revoked
                    .as_ref()
                    .filter(|t| self.recorded.contains_key(&t.index))
                {
                    self.revoked.insert(target.index);
                    if self.params.rules_version >= 5 {
                        self.revoke_grant(target.index, index, admitted_ms);
                    }
                    let chain = self
                        .recorded
                        .get(&target.index)
                        .map(|t| self.statement(t).chain_id.clone());
                    if let Some(chain) = chain.and_then(|c| self.chains.get_mut(&c)) {
                        chain.entries.push(index);
                        self.recorded.insert(index, rec);
                    }
                }
                return None;
            }
            Some(Body::AccessRequest(_)) | Some(Body::BreakGlass(_)) => {
                // A second opener of a chain changes nothing (the gate
                // refuses it; an audit reports it and goes on).
                if self.chains.contains_key(&st.chain_id) || self.is_closed(&st.chain_id) {
                    return None;
                }
                let expires_ms = match &st.body {
                    Some(Body::AccessRequest(r)) if self.params.rules_version >= 3 => {
                        let system = st.target.as_ref().map_or("", |t| t.system.as_str());
                        let delta = r.delta.clone().unwrap_or_default();
                        let age =
                            requirements(self.policy.as_deref(), system, &delta).max_request_age_ms;
                        Some(admitted_ms.saturating_add(age))
                    }
                    _ => None,
                };
                if let Some(e) = expires_ms {
                    self.expiring.insert((e, st.chain_id.clone()));
                }
                self.chains.insert(
                    st.chain_id.clone(),
                    Chain {
                        opener: index,
                        target: st.target.clone().unwrap_or_default(),
                        entries: vec![],
                        executed: false,
                        denied: false,
                        expires_ms,
                        ended: None,
                        covered_by: None,
                    },
                );
            }
            _ => {}
        }
        match &st.body {
            Some(Body::BreakGlass(b)) => {
                self.obligations.insert(
                    index,
                    Obligation {
                        chain_id: st.chain_id.clone(),
                        index,
                        actor: rec.actor_id().to_string(),
                        deadline_ms: b.review_deadline.as_ref().map_or(0, millis),
                        kind: ObligationKind::Review,
                        opened_by: index,
                    },
                );
            }
            Some(Body::Review(rv)) => {
                // Under rules version 2 a REVOKE turns the review into an
                // obligation to undo the change, due at once.
                let revoke =
                    self.params.rules_version >= 2 && rv.verdict == review::Verdict::Revoke as i32;
                for link in &st.links {
                    let Some(o) = self.obligations.get_mut(&link.index) else {
                        continue;
                    };
                    if o.kind != ObligationKind::Review {
                        continue;
                    }
                    if revoke {
                        o.kind = ObligationKind::Undo;
                        o.deadline_ms = admitted_ms;
                        o.opened_by = index;
                    } else {
                        self.obligations.remove(&link.index);
                    }
                }
            }
            Some(Body::ExecutionOutcome(o)) => {
                let intent = st.links.iter().find_map(|l| {
                    self.recorded
                        .get(&l.index)
                        .filter(|r| r.kind() == Kind::ExecutionIntent)
                });
                if let Some(intent) = intent {
                    // Read once for all that follows.
                    let intent_statement = self.statement(intent);
                    let intent_links = &intent_statement.links;
                    let intent = intent.index;
                    self.reported.insert(intent);
                    // An undo that succeeded discharges the obligation.
                    let succeeded = o.result == execution_outcome::Result::Succeeded as i32;
                    let undo = self.chains.get(&st.chain_id).and_then(|c| {
                        self.obligations
                            .get(&c.opener)
                            .filter(|o| o.kind == ObligationKind::Undo)
                            .filter(|o| intent_links.iter().any(|l| l.index == o.opened_by))
                            .map(|_| c.opener)
                    });
                    if let Some(opener) = undo.filter(|_| succeeded) {
                        self.obligations.remove(&opener);
                    }
                    if self.params.rules_version >= 5 && succeeded {
                        self.grant_or_remove(
                            &st,
                            (intent, &intent_statement),
                            index,
                            admitted_ms,
                            &o.observed_after,
                        );
                    }
                    if succeeded && self.holdings.is_some() {
                        self.hold(
                            &st,
                            &intent_statement,
                            index,
                            admitted_ms,
                            &o.observed_after,
                        );
                    }
                }
            }
            Some(Body::Decision(d))
                if self.params.rules_version >= 5
                    && d.outcome == decision::Outcome::Approve as i32 =>
            {
                self.extend_grant(&st, index, admitted_ms, d.access_duration_seconds);
            }
            Some(Body::ExecutionIntent(_)) => {
                // Each approval (or break-glass) authorises one execution.
                for link in &st.links {
                    let authorises = self
                        .recorded
                        .get(&link.index)
                        .is_some_and(|r| matches!(r.kind(), Kind::Decision | Kind::BreakGlass));
                    if authorises {
                        self.used.entry(link.index).or_insert(index);
                    }
                }
            }
            _ => {}
        }
        let v3 = self.params.rules_version >= 3;
        let chain = self.chains.get_mut(&st.chain_id)?;
        // Under version 3 a chain lists at most MAX_CHAIN_REFUSALS refusal
        // records (the log keeps every one); they take no place from the
        // chain's own entries, so refused attempts cannot fill it.
        if v3 && entry.kind() == Kind::GateRefusal {
            let refusals = chain.entries.len() - Self::admitted_in(&self.recorded, chain);
            if refusals >= MAX_CHAIN_REFUSALS {
                return None;
            }
        }
        chain.entries.push(index);
        self.recorded.insert(index, rec);
        match &st.body {
            Some(Body::ExecutionOutcome(o)) => {
                chain.executed |= o.result == execution_outcome::Result::Succeeded as i32;
            }
            // Under version 3 a DENY is final: the chain cannot progress.
            Some(Body::Decision(d)) if v3 => {
                chain.denied |= d.outcome == decision::Outcome::Deny as i32;
            }
            _ => {}
        }
        let chain = self.chains.get(&st.chain_id)?;
        let closes = if chain.executed {
            // Under version 3 an intent still awaiting its outcome keeps
            // the chain open (its place was kept for it).
            // (Version 6: a permanent grant in force keeps it open too.)
            !self.obligations.contains_key(&chain.opener)
                && !self.grants.contains_key(&chain.opener)
                && (!v3 || self.unreported_intents(chain) == 0)
        } else {
            v3 && (chain.denied || Self::expired(chain, admitted_ms)) && self.owes_nothing(chain)
        };
        if closes {
            self.close(&st.chain_id)
        } else {
            None
        }
    }

    /// Rules version 5, at a successful outcome of intent `intent` in
    /// `st`'s chain: the first that adds to a request chain grants the
    /// access for the shortest duration approved (none: permanent, not
    /// tracked); one on an intent admitted after the grant removes it
    /// (the gate admits no other), unless it still sees the access.
    fn grant_or_remove(
        &mut self,
        st: &Statement,
        (intent, intent_statement): (u64, &Statement),
        index: u64,
        at: i64,
        observed_after: &[String],
    ) {
        let Some(chain) = self.chains.get(&st.chain_id) else {
            return;
        };
        let opener = chain.opener;
        if let Some(g) = self.grants.get(&opener) {
            let g_outcome = g.outcome;
            // What it removes is what no other grant in force holds on;
            // the rest passes to those grants.
            let (removed, held_on) = self.to_remove(g, at);
            let target = g.target.clone();
            if intent > g.outcome && !removed.iter().any(|e| observed_after.contains(e)) {
                if let Some(h) = self.holdings.as_mut() {
                    for (e, chain) in &held_on {
                        h.covered(&target, g_outcome, Some(e), at, chain);
                    }
                }
                self.obligations.remove(&opener);
                self.unindex_grant(opener);
                if let Some(c) = self.chains.get_mut(&st.chain_id) {
                    c.ended = Some(ChainStatus::Deprovisioned);
                }
                self.campaign_grant_ended(g_outcome, "removed");
            }
            return;
        }
        let Some(request) = self
            .recorded
            .get(&opener)
            .filter(|r| r.kind() == Kind::AccessRequest)
        else {
            return;
        };
        let request = self.statement(request);
        let Some(Body::AccessRequest(r)) = &request.body else {
            return;
        };
        let Some(Body::ExecutionIntent(i)) = &intent_statement.body else {
            return;
        };
        let delta = i.delta.clone().unwrap_or_default();
        let entitlements = ops(&delta, Op::Add);
        if entitlements.is_empty() {
            return;
        }
        let duration = self.granted_duration_ms(r, &intent_statement.links);
        if duration.is_none() && self.rules_version() < 6 {
            return;
        }
        let target = chain.target.clone();
        let requested = r.delta.clone().unwrap_or_default();
        let need = requirements_flagged(
            self.policy.as_deref(),
            &target.system,
            &delta,
            delta.privileged || requested.privileged,
            false,
        );
        // Every flag the granting chain set, as rule 5 counted them: rules
        // version 7 holds an extension to them.
        let linked = intent_statement
            .links
            .iter()
            .filter_map(|l| self.recorded.get(&l.index));
        let (privileged, _) =
            self.chain_flags(&delta, self.recorded.get(&opener).into_iter().chain(linked));
        // A permanent grant owes nothing until it is revoked. (Rules
        // version 7: a time-bound end is never PERMANENT, whatever a
        // hostile log's clock.)
        let ends_ms = match duration {
            None => PERMANENT,
            Some(d) if self.rules_version() >= 7 => at.saturating_add(d).min(PERMANENT - 1),
            Some(d) => at.saturating_add(d),
        };
        if duration.is_some() {
            self.obligations.insert(
                opener,
                Obligation {
                    chain_id: st.chain_id.clone(),
                    index: opener,
                    actor: st.actor.as_ref().map_or("", |a| a.id.as_str()).to_string(),
                    deadline_ms: ends_ms.saturating_add(need.deprovision_window_ms),
                    kind: ObligationKind::Deprovision,
                    opened_by: index,
                },
            );
            self.grant_ends.insert((ends_ms, opener));
        }
        let on = self.grants_on.entry(target_key(&target)).or_default();
        // The new grant may cover grants on its target that have ended.
        self.grants_to_check.extend(on.iter().copied());
        on.insert(opener);
        self.grants.insert(
            opener,
            Grant {
                chain_id: st.chain_id.clone(),
                outcome: index,
                target,
                entitlements,
                granted_ms: at,
                ends_ms,
                revoked_by: None,
                revoked_ms: None,
                extensions: vec![],
                approvals: need.approvals,
                privileged,
                window_ms: need.deprovision_window_ms,
            },
        );
    }

    /// Who has what: the successful outcome at `index` of intent `intent`
    /// added and removed its intent's entitlements on its chain's target.
    fn hold(
        &mut self,
        st: &Statement,
        intent: &Statement,
        index: u64,
        at: i64,
        observed: &[String],
    ) {
        let Some(target) = self.chains.get(&st.chain_id).map(|c| c.target.clone()) else {
            return;
        };
        let Some(Body::ExecutionIntent(i)) = &intent.body else {
            return;
        };
        let Some(delta) = &i.delta else {
            return;
        };
        // A removal whose outcome still sees the access removed nothing.
        let (added, mut removed) = (ops(delta, Op::Add), ops(delta, Op::Remove));
        removed.retain(|e| !observed.contains(e));
        // (The outcome is not recorded yet: its grant is found by chain.)
        let ends = self
            .grant_of(&st.chain_id)
            .filter(|g| g.outcome == index)
            .and_then(|g| g.ends());
        if let Some(h) = self.holdings.as_mut() {
            h.outcome(&target, &st.chain_id, index, at, ends, &added, &removed);
        }
    }

    /// Keep who has what ([`Holdings`]) beside the gate's state.
    pub fn with_holdings(mut self) -> Self {
        self.holdings = Some(Holdings::default());
        self
    }

    /// Who has what, if kept.
    pub fn holdings(&self) -> Option<&Holdings> {
        self.holdings.as_ref()
    }

    /// Rules version 5: how long an intent linking `links` in a chain
    /// opened by `request` would grant its access for: the shortest of
    /// the request's duration and its linked approvals' (0 in one of them
    /// says nothing); `None`: permanent.
    pub fn granted_duration_ms(
        &self,
        request: &crate::access::entry::proto::AccessRequest,
        links: &[crate::access::entry::proto::EntryRef],
    ) -> Option<i64> {
        let approved = links
            .iter()
            .filter_map(|l| self.recorded.get(&l.index))
            .filter(|r| r.kind() == Kind::Decision && !r.negative)
            .filter_map(|r| match &self.statement(r).body {
                Some(Body::Decision(d)) => Some(d.access_duration_seconds),
                _ => None,
            });
        std::iter::once(request.access_duration_seconds)
            .chain(approved)
            .filter(|s| *s > 0)
            .min()
            .map(ms)
    }

    /// Rules version 5: an approval admitted at `at` that links a grant's
    /// outcome while it is in force counts towards its extension; once as
    /// many people as the grant needed have approved one, the grant runs
    /// from `at` for the shortest duration they approved.
    fn extend_grant(&mut self, st: &Statement, index: u64, at: i64, seconds: u64) {
        let Some(opener) = self.chains.get(&st.chain_id).map(|c| c.opener) else {
            return;
        };
        let Some(g) = self.grants.get(&opener) else {
            return;
        };
        // A permanent grant takes no extension (rule 11): even a log that
        // admitted one does not make it time-bound here.
        let permanent = g.ends().is_none();
        let linked = st.links.iter().any(|l| l.index == g.outcome);
        if permanent || !g.in_force(at) || !linked || seconds == 0 {
            return;
        }
        let Some(Body::Decision(d)) = &st.body else {
            return;
        };
        let approval = ExtensionApproval {
            decision: index,
            person: self
                .person_of(st.actor.as_ref().map_or("", |a| a.id.as_str()))
                .into(),
            duration_ms: ms(seconds),
            expires_ms: d.expires_at.as_ref().map_or(0, millis),
            privileged: d.approved_delta.as_ref().is_some_and(|d| d.privileged),
        };
        let pending = self.extension_with(g, approval, at);
        let stands = self.extension_stands(g, &pending);
        let v7 = self.rules_version() >= 7;
        let Some(g) = self.grants.get_mut(&opener) else {
            return;
        };
        if !stands {
            g.extensions = pending;
            return;
        }
        let shortest = pending.iter().map(|a| a.duration_ms).min().unwrap_or(0);
        g.extensions.clear();
        let new = at.saturating_add(shortest);
        let new = if v7 { new.min(PERMANENT - 1) } else { new };
        let (old, new) = (g.ends_ms, new);
        g.ends_ms = new;
        self.grant_ends.remove(&(old, opener));
        self.grant_ends.insert((new, opener));
        if let Some(o) = self.obligations.get_mut(&opener) {
            o.deadline_ms = new.saturating_add(g.window_ms);
        }
    }

    /// The `privileged` and `highRisk` flags of an intent of `delta` and of
    /// the entries it rests on (its chain's opener and what it links):
    /// rule 5 counts a flag set on any of them (clearing it later must not
    /// lower the approvals needed).
    pub(super) fn chain_flags<'a>(
        &'a self,
        delta: &EntitlementDelta,
        rests_on: impl Iterator<Item = &'a Recorded>,
    ) -> (bool, bool) {
        rests_on.fold(
            (delta.privileged, delta.high_risk),
            |(p, h), r| match delta_of(&self.statement(r)) {
                Some(d) => (p || d.privileged, h || d.high_risk),
                None => (p, h),
            },
        )
    }

    /// The extension approvals of `g` that are still good at `at`
    /// (unexpired, unrevoked, not void), with `approval` among them.
    pub fn extension_with(
        &self,
        g: &Grant,
        approval: ExtensionApproval,
        at: i64,
    ) -> Vec<ExtensionApproval> {
        g.extensions
            .iter()
            .cloned()
            .chain(std::iter::once(approval))
            .filter(|a| {
                a.expires_ms >= at
                    && !self.revoked.contains(&a.decision)
                    && !self.voided.contains(&a.decision)
            })
            .collect()
    }

    /// Whether `approvals` extend `g`: as many people as the grant
    /// needed and, rules version 7, as many as the policy in force asks
    /// now of what it holds, with the flags the approvals set counted (an
    /// extension is held to the rules of a first grant).
    pub fn extension_stands(&self, g: &Grant, approvals: &[ExtensionApproval]) -> bool {
        let people: BTreeSet<&str> = approvals.iter().map(|a| &*a.person).collect();
        let mut needed = g.approvals.max(1);
        if self.rules_version() >= 7 {
            let flagged = g.privileged || approvals.iter().any(|a| a.privileged);
            let now = requirements_flagged(
                self.policy.as_deref(),
                &g.target.system,
                &g.held_delta(),
                flagged,
                false,
            );
            needed = needed.max(now.approvals);
        }
        people.len() >= needed as usize
    }

    /// Rules version 5: revocation `by`, admitted at `at`, of a grant's
    /// outcome ends the grant: its de-provisioning is due at once.
    fn revoke_grant(&mut self, outcome: u64, by: u64, at: i64) {
        let Some(opener) = self.grant_by_outcome(outcome).map(|(opener, _)| opener) else {
            return;
        };
        let Some(g) = self.grants.get_mut(&opener) else {
            return;
        };
        g.revoked_by = Some(by);
        g.revoked_ms = Some(at);
        let due = g.due_ms(Some(at));
        let (chain_id, outcome) = (g.chain_id.clone(), g.outcome);
        match self.obligations.get_mut(&opener) {
            Some(o) => o.deadline_ms = due,
            // A permanent grant (version 6) owes its removal from now.
            None => {
                let actor = self
                    .recorded
                    .get(&outcome)
                    .and_then(|r| self.statement(r).actor.clone())
                    .map_or_else(String::new, |a| a.id);
                self.obligations.insert(
                    opener,
                    Obligation {
                        chain_id,
                        index: opener,
                        actor,
                        deadline_ms: due,
                        kind: ObligationKind::Deprovision,
                        opened_by: outcome,
                    },
                );
            }
        }
        self.grants_to_check.push(opener);
    }

    /// Rules version 5: the grant that the successful outcome at
    /// `outcome` made while it is tracked, and when it was revoked.
    pub fn grant_revoked_at(&self, outcome: u64) -> Option<(&Grant, Option<i64>)> {
        let (_, g) = self.grant_by_outcome(outcome)?;
        Some((g, g.revoked_ms))
    }

    /// Rules version 5: the grant (and its chain's opener) that the
    /// successful outcome at `outcome` made, while it is tracked.
    pub fn grant_by_outcome(&self, outcome: u64) -> Option<(u64, &Grant)> {
        let r = self
            .recorded
            .get(&outcome)
            .filter(|r| r.kind() == Kind::ExecutionOutcome)?;
        let chain = self.chains.get(&self.statement(r).chain_id)?;
        let g = self
            .grants
            .get(&chain.opener)
            .filter(|g| g.outcome == outcome)?;
        Some((chain.opener, g))
    }

    /// Rules version 5: the time-bound grant of an open chain.
    pub fn grant_of(&self, chain_id: &str) -> Option<&Grant> {
        self.grants.get(&self.chains.get(chain_id)?.opener)
    }

    /// Rules version 5: the tracked grants on `target`.
    pub fn grants_on(&self, target: &Target) -> impl Iterator<Item = &Grant> {
        self.grants_on
            .get(&target_key(target))
            .into_iter()
            .flatten()
            .filter_map(|o| self.grants.get(o))
    }

    /// Lets go of a finished chain's statements, keeping its entry indices
    /// and final status (for `GET /v1/chains/<id>`).
    fn close(&mut self, chain_id: &str) -> Option<Closure> {
        let chain = self.chains.remove(chain_id)?;
        self.unindex_grant(chain.opener);
        if let Some(e) = chain.expires_ms {
            self.expiring.remove(&(e, chain_id.to_string()));
        }
        let status = self.status(&chain);
        let records: Vec<Recorded> = chain
            .entries
            .iter()
            .filter_map(|i| self.recorded.remove(i))
            .collect();
        for i in &chain.entries {
            self.used.remove(i);
            self.revoked.remove(i);
            self.voided.remove(i);
            self.reported.remove(i);
        }
        let key = chain_key(chain_id);
        self.closed.insert(key, status);
        if let Some(storage) = &self.storage {
            storage.keep_closed_chain(&key, &chain.entries);
        } else {
            self.closed_entries
                .insert(key, chain.entries.clone().into_boxed_slice());
        }
        Some(Closure {
            chain_id: chain_id.to_string(),
            chain,
            status,
            records,
        })
    }

    /// Keep recorded statements without their free text: an access
    /// request's justification, a decision's, break-glass's or
    /// revocation's reason, a review's notes. No rule reads them; the log
    /// keeps them, and whoever wants them reads the entry.
    pub fn without_free_text(mut self) -> Self {
        self.free_text = false;
        self
    }

    /// Keep only the facts of recorded statements in memory and read the
    /// statements back from `storage` when a rule needs them, and closed
    /// chains' entry indices there: an open chain then costs its indices,
    /// digests and names, not its statements, and a closed one its status.
    pub fn keeping_on(mut self, storage: Arc<dyn StateStorage>) -> Self {
        self.storage = Some(storage);
        self
    }

    /// The statement of a recorded entry.
    ///
    /// # Panics
    /// If the state reads statements from storage and storage cannot give
    /// back one the log appended: the gate cannot judge without it, and
    /// must not guess.
    pub fn statement(&self, r: &Recorded) -> Arc<Statement> {
        if let Some(st) = &r.statement {
            return st.clone();
        }
        self.storage
            .as_ref()
            .and_then(|s| s.statement(r.index))
            .unwrap_or_else(|| panic!("storage lost entry {} of the gate state", r.index))
    }

    /// Every open chain, in no particular order.
    pub fn chains(&self) -> impl Iterator<Item = (&String, &Chain)> {
        self.chains.iter()
    }

    /// An open chain.
    pub fn chain(&self, chain_id: &str) -> Option<&Chain> {
        self.chains.get(chain_id)
    }

    /// Whether `chain_id` names a chain that has closed.
    pub fn is_closed(&self, chain_id: &str) -> bool {
        self.closed.contains_key(&chain_key(chain_id))
    }

    /// The entry indices and status of a chain, open or closed; the
    /// indices are None for a closed chain whose indices were forgotten or
    /// cannot be read back from storage.
    pub fn chain_entries(&self, chain_id: &str) -> Option<(Option<Vec<u64>>, ChainStatus)> {
        if let Some(chain) = self.chains.get(chain_id) {
            return Some((Some(chain.entries.clone()), self.status(chain)));
        }
        let key = chain_key(chain_id);
        let status = *self.closed.get(&key)?;
        let entries = match &self.storage {
            Some(storage) => storage.closed_chain(&key),
            None => self.closed_entries.get(&key).map(|e| e.to_vec()),
        };
        Some((entries, status))
    }

    pub fn recorded(&self, index: u64) -> Option<&Recorded> {
        self.recorded.get(&index)
    }

    pub fn is_revoked(&self, index: u64) -> bool {
        self.revoked.contains(&index)
    }

    /// The intent that already executed on approval (or break-glass)
    /// `index`, if any.
    pub fn used_by(&self, index: u64) -> Option<u64> {
        self.used.get(&index).copied()
    }

    pub fn policy(&self) -> Option<&PolicyPublication> {
        self.policy.as_deref()
    }

    /// Puts `policy` in force in place of the current one, which it
    /// returns: a policy simulation judges one entry under a draft, then
    /// puts the real one back.
    pub fn swap_policy(
        &mut self,
        policy: Option<Arc<PolicyPublication>>,
    ) -> Option<Arc<PolicyPublication>> {
        std::mem::replace(&mut self.policy, policy)
    }

    pub fn is_admin(&self, id: &str) -> bool {
        self.admins.contains_key(id)
    }

    pub fn log_key(&self) -> &NoteVerifier {
        &self.log_key
    }

    /// Open break-glass reviews, overdue (earliest deadline) first.
    pub fn obligations(&self) -> Vec<&Obligation> {
        let mut open: Vec<&Obligation> = self.obligations.values().collect();
        open.sort_by_key(|o| (o.deadline_ms, o.index));
        open
    }

    /// The chain's unrevoked DENY decisions by identities that may decide.
    pub fn denials(&self, chain: &Chain) -> Vec<u64> {
        chain
            .entries
            .iter()
            .filter_map(|i| self.recorded.get(i))
            .filter(|r| r.is_deny())
            .filter(|r| !self.revoked.contains(&r.index))
            .map(|r| r.index)
            .collect()
    }

    /// The open obligation of a chain, if any.
    pub fn obligation_of(&self, chain_id: &str) -> Option<&Obligation> {
        let chain = self.chains.get(chain_id)?;
        self.obligations.get(&chain.opener)
    }

    /// Where `chain` stands, from its latest significant entry (from the
    /// entries' facts: no statement is read).
    pub fn status(&self, chain: &Chain) -> ChainStatus {
        let mut status = ChainStatus::Requested;
        for r in chain.entries.iter().filter_map(|i| self.recorded.get(i)) {
            status = match r.kind() {
                Kind::AccessRequest => ChainStatus::Requested,
                Kind::Recommendation if status == ChainStatus::Requested => {
                    ChainStatus::Recommended
                }
                Kind::Decision if r.actor_kind() != ActorKind::Assistant => {
                    if r.is_deny() {
                        ChainStatus::Denied
                    } else {
                        ChainStatus::Approved
                    }
                }
                Kind::ExecutionOutcome if r.is_failed_outcome() => ChainStatus::ExecutionFailed,
                Kind::ExecutionIntent | Kind::ExecutionOutcome => {
                    let review = self
                        .obligations
                        .get(&chain.opener)
                        .is_some_and(|o| o.kind == ObligationKind::Review);
                    if review {
                        ChainStatus::BreakGlassAwaitingReview
                    } else {
                        ChainStatus::Executed
                    }
                }
                // A refused attempt does not undo what already happened.
                Kind::GateRefusal
                    if matches!(
                        status,
                        ChainStatus::Requested
                            | ChainStatus::Recommended
                            | ChainStatus::Approved
                            | ChainStatus::Denied
                            | ChainStatus::Refused
                    ) =>
                {
                    ChainStatus::Refused
                }
                Kind::BreakGlass => ChainStatus::BreakGlassAwaitingReview,
                Kind::Review if !r.negative => ChainStatus::Reviewed,
                _ => status,
            };
        }
        let expired = !chain.executed
            && !chain.denied
            && self
                .log_time_ms
                .is_some_and(|now| Self::expired(chain, now));
        let now = self.log_time_ms.unwrap_or(i64::MIN);
        match self.obligations.get(&chain.opener) {
            _ if chain.ended.is_some() => chain.ended.unwrap_or(status),
            Some(o) if o.kind == ObligationKind::Undo => ChainStatus::AwaitingUndo,
            Some(o) if o.kind == ObligationKind::Deprovision => {
                match self.grants.get(&chain.opener) {
                    Some(g) if g.in_force(now) => ChainStatus::Granted,
                    _ => ChainStatus::AwaitingDeprovisioning,
                }
            }
            // A permanent grant (version 6) owes nothing while in force.
            None if self
                .grants
                .get(&chain.opener)
                .is_some_and(|g| g.in_force(now)) =>
            {
                ChainStatus::Granted
            }
            _ if expired => ChainStatus::Expired,
            _ => status,
        }
    }
}

impl GateState {
    /// Applies the log's parameters record: from here on its rules, its
    /// origin, its skew and its admin set judge every entry.
    fn set_params(&mut self, index: u64, p: &LogParameters) {
        self.params = Params {
            rules_version: p.rules_version,
            origin: p.log_origin.clone(),
            max_clock_skew_ms: i64::try_from(p.max_clock_skew_ms).unwrap_or(i64::MAX),
            admin_threshold: p.admin_threshold.max(1),
            index: Some(index),
        };
        self.set_admins(&p.admin_keys);
    }

    /// Replaces the admin set (keys that do not parse are left out: fail
    /// closed).
    fn set_admins(&mut self, keys: &[String]) {
        self.admins = keys
            .iter()
            .filter_map(|k| NoteVerifier::parse(k).ok())
            .map(|a| (a.name().to_string(), a))
            .collect();
    }
}

fn verifying_key(v: &NoteVerifier) -> VerifyingKey {
    VerifyingKey::from_bytes(&v.public_key()).expect("a parsed verifier holds a valid key")
}

/// The statement of a leaf the state applied, as it stores it (see
/// [`drop_free_text`]), for a storage reading it back: only the statement
/// is decoded (the leaf was checked when it was applied, so neither its
/// hash nor its canonical form is checked again). None if it does not
/// decode.
pub(crate) fn stored_statement(leaf: &[u8]) -> Option<Arc<Statement>> {
    use prost::Message;
    let signed = crate::access::entry::proto::SignedEntry::decode(leaf).ok()?;
    let mut statement = Arc::new(Statement::decode(signed.statement.as_slice()).ok()?);
    drop_free_text(&mut statement);
    Some(statement)
}

/// `st` as the state stores it: without the free text no rule reads (an
/// access request's justification and ticket links, a decision's, break-glass's or
/// revocation's reason, a review's notes) and without what a refusal
/// record refused (the log holds it).
pub(crate) fn drop_free_text(st: &mut Arc<Statement>) {
    if let Some(Body::GateRefusal(g)) = &st.body {
        if g.refused_entry.is_empty() && g.violations.is_empty() {
            return;
        }
        // Built from the header: a copy-on-write would copy the whole
        // refused entry (up to 64 KB) only to clear it.
        let header = Statement {
            actor: st.actor.clone(),
            on_behalf_of: st.on_behalf_of.clone(),
            chain_id: st.chain_id.clone(),
            links: st.links.clone(),
            target: st.target.clone(),
            issued_at: st.issued_at,
            policy: st.policy.clone(),
            log_origin: st.log_origin.clone(),
            body: Some(Body::GateRefusal(GateRefusal {
                policy: g.policy.clone(),
                index: g.index,
                ..Default::default()
            })),
        };
        *st = Arc::new(header);
        return;
    }
    let has_text = match &st.body {
        Some(Body::AccessRequest(r)) => {
            !r.justification.is_empty() || r.tickets.iter().any(|t| !t.url.is_empty())
        }
        Some(Body::Decision(d)) => !d.reason.is_empty(),
        Some(Body::BreakGlass(b)) => !b.reason.is_empty(),
        Some(Body::Review(r)) => !r.notes.is_empty(),
        Some(Body::Revocation(r)) => !r.reason.is_empty(),
        _ => false,
    };
    if !has_text {
        return;
    }
    match &mut Arc::make_mut(st).body {
        Some(Body::AccessRequest(r)) => {
            // Links to tickets too: the rules and Cedar see their systems
            // and ids.
            r.justification = String::new();
            for t in &mut r.tickets {
                t.url = String::new();
            }
        }
        Some(Body::Decision(d)) => d.reason = String::new(),
        Some(Body::BreakGlass(b)) => b.reason = String::new(),
        Some(Body::Review(r)) => r.notes = String::new(),
        Some(Body::Revocation(r)) => r.reason = String::new(),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access::entry::build::{delta, human, request, target};
    use crate::access::entry::{sign, DecodedEntry};
    use crate::tlog::note::NoteSigner;
    use prost::Message;

    #[test]
    fn without_free_text_an_open_chain_keeps_its_facts_not_its_prose() {
        let log = NoteSigner::from_seed("log", [1; 32]).unwrap();
        let alice = NoteSigner::from_seed("alice", [2; 32]).unwrap();
        let mut st = request(
            &human("alice"),
            "C-1",
            target("db", "prod", "alice"),
            delta(&[], &["read"], &[]),
            "deployer",
            1_000,
        );
        if let Some(Body::AccessRequest(r)) = st.body.as_mut() {
            r.justification = "x".repeat(50_000);
        }
        let leaf = sign(&alice, &st).encode_to_vec();
        let entry = DecodedEntry::decode(&leaf).unwrap();
        for (free_text, kept) in [(true, 50_000), (false, 0)] {
            let mut state = GateState::new(log.verifier(), vec![]);
            if !free_text {
                state = state.without_free_text();
            }
            state.apply(7, &entry);
            let recorded = state.recorded(7).expect("the request is recorded");
            let statement = state.statement(recorded);
            let Some(Body::AccessRequest(r)) = &statement.body else {
                panic!("not a request");
            };
            assert_eq!(r.justification.len(), kept);
            assert_eq!(
                recorded.leaf_hash, entry.leaf_hash,
                "the entry is still named by its leaf"
            );
            assert_eq!(
                r.delta,
                match &entry.statement.body {
                    Some(Body::AccessRequest(e)) => e.delta.clone(),
                    _ => None,
                }
            );
            assert!(state.chain("C-1").is_some());
        }
        // The decoded entry itself is untouched.
        let Some(Body::AccessRequest(r)) = &entry.statement.body else {
            panic!("not a request");
        };
        assert_eq!(r.justification.len(), 50_000);
    }
}
