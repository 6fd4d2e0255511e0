//! Who has what (issue "the access lifecycle"): the entitlement state the
//! log establishes, kept beside the gate's state when asked for
//! ([`super::GateState::with_holdings`]) and rebuilt with it from the log.
//!
//! A *holding* is one entitlement one successful outcome added to one
//! subject on one target. It lasts until a later successful outcome
//! removes that entitlement from that target (the removal of a time-bound
//! grant, an undo, an approved removal), or until its grant ends covered
//! by another grant of the same access. Holdings are history: one removed
//! stays, so a query can ask what was held at any time. Every entry a
//! non-log identity signed is listed under that identity, so a query can
//! ask what one assistant (or anyone) did.
//!
//! Cost: one [`Holding`] (about 200 bytes) per entitlement granted, and
//! 8 bytes per signed entry, for the life of the log (README, "Memory").

use std::collections::HashMap;

use serde::Serialize;
use serde_json::{json, Value};

use super::Grant;
use crate::access::entry::proto::Target;

/// One entitlement held by one subject on one target, from one outcome.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Holding {
    pub entitlement: String,
    pub system: String,
    pub resource: String,
    pub subject: String,
    pub chain_id: String,
    /// The successful outcome that granted it.
    pub outcome: u64,
    pub granted_ms: i64,
    /// Rules version 5: when its time-bound grant ended, as granted (an
    /// extension moves the grant's end; see [`Holding::status`]).
    pub ends_ms: Option<i64>,
    /// The successful outcome that removed it (none when its grant ended
    /// covered by another).
    pub removed_by: Option<u64>,
    pub removed_ms: Option<i64>,
    /// The chain whose grant covered it when its own ended.
    pub covered_by: Option<String>,
}

impl Holding {
    /// Where it stands at `now`, given its grant while the gate still
    /// tracks it: `held`, `awaiting_removal` (ended or revoked, within the
    /// removal window), `overdue`, `removed` or `covered`.
    pub fn status(&self, grant: Option<&Grant>, revoked_at: Option<i64>, now: i64) -> &'static str {
        match (self.removed_ms, &self.covered_by, grant) {
            (Some(_), Some(_), _) => "covered",
            (Some(_), None, _) => "removed",
            (None, _, Some(g)) if !g.in_force(now) => {
                if now > g.due_ms(revoked_at) {
                    "overdue"
                } else {
                    "awaiting_removal"
                }
            }
            _ => "held",
        }
    }

    /// Whether it was held at `at` (`None`: now).
    pub fn held_at(&self, at: Option<i64>) -> bool {
        match at {
            None => self.removed_ms.is_none(),
            Some(t) => self.granted_ms <= t && self.removed_ms.is_none_or(|r| t < r),
        }
    }
}

/// A holding, as `GET /v1/access` and `gatelog access` answer it: where it
/// stands at `now` and when its grant ends (`grant`: its grant while the
/// gate tracks it, and when that was revoked).
pub fn holding_json(h: &Holding, grant: Option<(&Grant, Option<i64>)>, now: i64) -> Value {
    let ends = match grant {
        Some((g, _)) => g.ends(),
        None => h.ends_ms,
    };
    let ts = |ms: Option<i64>| ms.map(crate::access::entry::rfc3339);
    json!({
        "entitlement": h.entitlement,
        "system": h.system,
        "resource": h.resource,
        "subject": h.subject,
        "chain_id": h.chain_id,
        "status": h.status(grant.map(|(g, _)| g), grant.and_then(|(_, r)| r), now),
        "granted_at": ts(Some(h.granted_ms)),
        "ends_at": ts(ends),
        "revoked_by": grant.and_then(|(g, _)| g.revoked_by),
        "removed_at": ts(h.removed_ms),
        "removed_by": h.removed_by,
        "covered_by": h.covered_by,
        "outcome": { "index": h.outcome },
    })
}

/// Holdings and who signed what, indexed for the three questions.
#[derive(Debug, Default)]
pub struct Holdings {
    all: Vec<Holding>,
    by_subject: HashMap<String, Vec<usize>>,
    /// (system, resource) → holdings.
    by_resource: HashMap<(String, String), Vec<usize>>,
    /// (system, resource, subject) → holdings not yet removed.
    open_on: HashMap<(String, String, String), Vec<usize>>,
    by_actor: HashMap<Box<str>, Vec<u64>>,
}

fn target_key(t: &Target) -> (String, String, String) {
    (t.system.clone(), t.resource.clone(), t.subject.clone())
}

impl Holdings {
    /// `actor` signed the entry at `index`.
    pub fn signed(&mut self, actor: &str, index: u64) {
        if actor.is_empty() {
            return;
        }
        match self.by_actor.get_mut(actor) {
            Some(v) => v.push(index),
            None => {
                self.by_actor.insert(actor.into(), vec![index]);
            }
        }
    }

    /// The successful outcome at `outcome`, admitted at `at`, in chain
    /// `chain_id` on `target`, added `added` (until `ends`, if time-bound)
    /// and removed `removed`.
    #[allow(clippy::too_many_arguments)]
    pub fn outcome(
        &mut self,
        target: &Target,
        chain_id: &str,
        outcome: u64,
        at: i64,
        ends: Option<i64>,
        added: &[String],
        removed: &[String],
    ) {
        self.end_open(target, at, |h| {
            removed
                .contains(&h.entitlement)
                .then_some((Some(outcome), None))
        });
        let key = target_key(target);
        // Added again while held (overlapping grants): each grant is a
        // holding of its own, ended on its own.
        for e in added {
            let i = self.all.len();
            self.all.push(Holding {
                entitlement: e.clone(),
                system: target.system.clone(),
                resource: target.resource.clone(),
                subject: target.subject.clone(),
                chain_id: chain_id.to_string(),
                outcome,
                granted_ms: at,
                ends_ms: ends,
                removed_by: None,
                removed_ms: None,
                covered_by: None,
            });
            self.by_subject
                .entry(target.subject.clone())
                .or_default()
                .push(i);
            self.by_resource
                .entry((target.system.clone(), target.resource.clone()))
                .or_default()
                .push(i);
            self.open_on.entry(key.clone()).or_default().push(i);
        }
    }

    /// The grant of outcome `outcome` on `target` ended at `at` while
    /// `covering`'s grant holds the same access: its holdings (of
    /// `entitlement` only, when given: the rest was removed) end, and the
    /// covering chain's go on.
    pub fn covered(
        &mut self,
        target: &Target,
        outcome: u64,
        entitlement: Option<&str>,
        at: i64,
        covering: &str,
    ) {
        self.end_open(target, at, |h| {
            (h.outcome == outcome && entitlement.is_none_or(|e| h.entitlement == e))
                .then(|| (None, Some(covering.to_string())))
        });
    }

    /// Ends the open holdings on `target` that `ends` picks, at `at`: it
    /// says by which outcome they were removed, or by which chain covered.
    fn end_open(
        &mut self,
        target: &Target,
        at: i64,
        ends: impl Fn(&Holding) -> Option<(Option<u64>, Option<String>)>,
    ) {
        let key = target_key(target);
        let Some(open) = self.open_on.get_mut(&key) else {
            return;
        };
        open.retain(|&i| {
            let h = &mut self.all[i];
            let Some((removed_by, covered_by)) = ends(h) else {
                return true;
            };
            h.removed_by = removed_by;
            h.covered_by = covered_by;
            h.removed_ms = Some(at);
            false
        });
        if open.is_empty() {
            self.open_on.remove(&key);
        }
    }

    /// What `subject` held at `at` (`None`: now), in grant order.
    pub fn of_subject(&self, subject: &str, at: Option<i64>) -> Vec<&Holding> {
        self.select(self.by_subject.get(subject), at)
    }

    /// Who held access to `resource` of `system` at `at`.
    pub fn on_resource(&self, system: &str, resource: &str, at: Option<i64>) -> Vec<&Holding> {
        let key = (system.to_string(), resource.to_string());
        self.select(self.by_resource.get(&key), at)
    }

    /// Every entry `actor` signed, in log order.
    pub fn by_actor(&self, actor: &str) -> &[u64] {
        self.by_actor.get(actor).map_or(&[], |v| v.as_slice())
    }

    fn select(&self, indices: Option<&Vec<usize>>, at: Option<i64>) -> Vec<&Holding> {
        indices
            .into_iter()
            .flatten()
            .map(|&i| &self.all[i])
            .filter(|h| h.held_at(at))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(subject: &str) -> Target {
        Target {
            system: "github".into(),
            resource: "corp/app".into(),
            subject: subject.into(),
        }
    }

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn a_holding_lasts_from_its_grant_to_its_removal_and_stays_in_history() {
        let mut h = Holdings::default();
        h.outcome(
            &t("alice"),
            "C1",
            10,
            1_000,
            None,
            &s(&["write", "read"]),
            &[],
        );
        h.outcome(&t("bob"), "C2", 11, 1_500, None, &s(&["write"]), &[]);
        assert_eq!(h.of_subject("alice", None).len(), 2);
        // Granted again while held: a holding of its own.
        h.outcome(&t("alice"), "C3", 12, 1_800, None, &s(&["write"]), &[]);
        assert_eq!(h.of_subject("alice", None).len(), 3);
        // A removal of the entitlement ends every holding of it there.
        h.outcome(&t("alice"), "C1", 20, 2_000, None, &[], &s(&["write"]));
        let now: Vec<&str> = h
            .of_subject("alice", None)
            .iter()
            .map(|x| x.entitlement.as_str())
            .collect();
        assert_eq!(now, ["read"]);
        assert_eq!(h.of_subject("alice", Some(1_999)).len(), 3);
        assert_eq!(h.of_subject("alice", Some(2_000)).len(), 1);
        assert_eq!(h.of_subject("alice", Some(999)).len(), 0);
        // Bob's is untouched by alice's removal.
        assert_eq!(h.on_resource("github", "corp/app", None).len(), 2);
        assert_eq!(h.on_resource("github", "other", None).len(), 0);
    }

    #[test]
    fn a_covered_grant_ends_and_the_covering_one_goes_on() {
        let mut h = Holdings::default();
        h.outcome(
            &t("alice"),
            "A",
            10,
            1_000,
            Some(2_500),
            &s(&["write"]),
            &[],
        );
        h.outcome(
            &t("alice"),
            "B",
            20,
            2_000,
            Some(9_000),
            &s(&["write"]),
            &[],
        );
        h.covered(&t("alice"), 10, None, 3_000, "B");
        let now = h.of_subject("alice", None);
        assert_eq!((now.len(), now[0].chain_id.as_str()), (1, "B"));
        assert_eq!(h.of_subject("alice", Some(2_500)).len(), 2);
        let all = h.of_subject("alice", Some(1_500));
        assert_eq!(all[0].covered_by.as_deref(), Some("B"));
    }

    #[test]
    fn every_signed_entry_is_listed_under_its_signer() {
        let mut h = Holdings::default();
        h.signed("copilot", 3);
        h.signed("copilot", 9);
        h.signed("", 10);
        assert_eq!(h.by_actor("copilot"), [3, 9]);
        assert!(h.by_actor("nobody").is_empty());
    }
}
