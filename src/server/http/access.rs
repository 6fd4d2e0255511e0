//! `GET /v1/access`: who has what, from the gate's state, with proofs.
//!
//! - `?subject=ID`: what a subject holds (each holding with its chain, the
//!   outcome that granted it, its end and an inclusion proof);
//! - `?resource=NAME[&system=S]`: who holds access to a resource;
//! - `?actor=ID`: every entry an identity signed (requested, approved,
//!   executed, recommended, ...), each with an inclusion proof;
//! - `&at=RFC3339` (subject, resource): as held then, instead of now;
//! - `&offset=N&limit=M` (M at most [`ACCESS_PAGE_MAX`]): a page.
//!
//! Proofs are to the checkpoint the answer names, so a client checks each
//! answer against a checkpoint it trusts (and its consistency).

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use hyper::StatusCode;
use serde_json::{json, Value};

use super::chains::{decoded_json, state_gone};
use super::routes::{json_response, HttpResponse, Query};
use super::{ApiError, App};
use crate::access::entry::{millis, timestamp, DecodedEntry, Timestamp};
use crate::access::gate::holdings::{holding_json, Holding};
use crate::server::gatekeeper::SharedState;
use crate::sys::clock::now_ms;
use crate::tlog::merkle::{leaf_hash, Hash};

type Result<T> = std::result::Result<T, ApiError>;

/// Most holdings or entries in one answer (each carries an inclusion
/// proof): an answer is bounded however much one subject holds.
pub const ACCESS_PAGE_MAX: u64 = 500;
const ACCESS_PAGE_DEFAULT: u64 = 100;

pub(super) fn serve_access(app: &App, gate: &SharedState, raw_query: &str) -> Result<HttpResponse> {
    let query = Query::parse(
        raw_query,
        &[
            "subject", "resource", "system", "actor", "at", "offset", "limit",
        ],
    )?;
    let offset = query.u64("offset")?.unwrap_or(0);
    let limit = query.u64("limit")?.unwrap_or(ACCESS_PAGE_DEFAULT);
    if !(1..=ACCESS_PAGE_MAX).contains(&limit) {
        return Err(ApiError::bad_param(format!(
            "limit must be 1 to {ACCESS_PAGE_MAX}"
        )));
    }
    let asked: Vec<&str> = ["subject", "resource", "actor"]
        .into_iter()
        .filter(|k| query.text(k).is_some())
        .collect();
    if asked.len() != 1 {
        return Err(ApiError::bad_param(
            "ask one question: subject=ID, resource=NAME (with system=S) or actor=ID",
        ));
    }
    let at = match query.text("at") {
        None => None,
        Some(_) if asked[0] == "actor" => {
            return Err(ApiError::bad_param("at applies to subject and resource"))
        }
        Some(t) => Some(parse_time(t)?),
    };
    let head = app.log.head();
    let now = now_ms();
    // What to prove, decided under the lock; proofs are made after it.
    let (total, page, rows): (usize, Vec<u64>, Vec<Value>) = {
        let state = gate.read().map_err(|_| state_gone())?;
        let holdings = state.holdings().ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "not_kept",
                "this server keeps no access index",
            )
        })?;
        let skip = usize::try_from(offset).unwrap_or(usize::MAX);
        if let Some(actor) = query.text("actor") {
            // Entries past the checkpoint answered are not counted yet.
            let all = holdings.by_actor(actor);
            let shown = all.partition_point(|i| *i < head.size);
            let page: Vec<u64> = all[..shown]
                .iter()
                .copied()
                .skip(skip)
                .take(limit as usize)
                .collect();
            (shown, page, vec![])
        } else {
            let held = match (query.text("subject"), query.text("resource")) {
                (Some(subject), _) => holdings.of_subject(subject, at),
                (_, Some(resource)) => {
                    let system = query.text("system").ok_or_else(|| {
                        ApiError::bad_param("resource=NAME needs system=S, the system it is in")
                    })?;
                    holdings.on_resource(system, resource, at)
                }
                _ => unreachable!("one question was asked"),
            };
            let held: Vec<&Holding> = held.into_iter().filter(|h| h.outcome < head.size).collect();
            let page: Vec<&Holding> = held
                .iter()
                .copied()
                .skip(skip)
                .take(limit as usize)
                .collect();
            let rows = page
                .iter()
                .map(|h| holding_json(h, state.grant_revoked_at(h.outcome), at.unwrap_or(now)))
                .collect();
            (held.len(), page.iter().map(|h| h.outcome).collect(), rows)
        }
    };
    let mut proven = Vec::with_capacity(page.len());
    for index in &page {
        let (leaf, decoded) = entry_at(app, *index)?;
        let (_, proof) = app.log.inclusion_proof(
            *index,
            Some(head.size),
            crate::server::log::ProofUser::Public,
        )?;
        let proof: Vec<String> = proof.iter().map(|h| B64.encode(h)).collect();
        proven.push((leaf, decoded, proof));
    }
    let next = offset.saturating_add(page.len() as u64);
    let mut answer = json!({
        "tree_size": head.size,
        "checkpoint": head.checkpoint.to_string(),
        "total": total,
        "offset": offset,
        "next_offset": (next < total as u64).then_some(next),
    });
    if let Some(actor) = query.text("actor") {
        answer["actor"] = json!(actor);
        answer["entries"] = page
            .iter()
            .zip(proven)
            .map(|(index, (leaf, decoded, proof))| {
                json!({
                    "index": index,
                    "leaf_hash": B64.encode(leaf),
                    "kind": decoded.kind().name(),
                    "chain_id": decoded.statement.chain_id,
                    "entry": decoded_json(&decoded),
                    "inclusion_proof": proof,
                })
            })
            .collect();
    } else {
        for k in ["subject", "resource", "system"] {
            if let Some(v) = query.text(k) {
                answer[k] = json!(v);
            }
        }
        answer["at"] = serde_json::to_value(timestamp(at.unwrap_or(now))).unwrap_or_default();
        answer["holdings"] = rows
            .into_iter()
            .zip(page.iter())
            .zip(proven)
            .map(|((mut row, index), (leaf, _, proof))| {
                row["outcome"] = json!({
                    "index": index,
                    "leaf_hash": B64.encode(leaf),
                    "inclusion_proof": proof,
                });
                row
            })
            .collect();
    }
    Ok(json_response(answer))
}

fn entry_at(app: &App, index: u64) -> Result<(Hash, DecodedEntry)> {
    let storage = |m: String| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "storage_error", m);
    let leaf = app
        .log
        .store()
        .entry(index)
        .map_err(|e| storage(e.to_string()))?
        .ok_or_else(|| storage(format!("entry {index} is missing")))?;
    let decoded = DecodedEntry::decode(&leaf).map_err(|e| storage(e.to_string()))?;
    Ok((leaf_hash(&leaf), decoded))
}

/// An RFC 3339 time, as proto3 JSON writes timestamps.
fn parse_time(t: &str) -> Result<i64> {
    serde_json::from_value::<Timestamp>(Value::String(t.to_string()))
        .map(|ts| millis(&ts))
        .map_err(|_| {
            ApiError::bad_param(format!(
                "at must be an RFC 3339 time such as 2026-12-03T10:00:00Z, got {t:?}"
            ))
        })
}
