//! The workflow read API: `GET /v1/chains/<chain_id>` (a decision chain,
//! decoded, with proofs) and `GET /v1/obligations` (open break-glass
//! reviews). Only for `--entries gatelog`.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use hyper::StatusCode;
use serde_json::{json, Value};

use super::routes::{json_response, HttpResponse};
use super::{ApiError, App};
use crate::access::entry::{entry_json, timestamp, Body, DecodedEntry};
use crate::access::gate::{Grant, Obligation};
use crate::server::gatekeeper::SharedState;
use crate::sys::clock::now_ms;

type Result<T> = std::result::Result<T, ApiError>;

/// An entry as JSON; a refusal record carries the refused entry decoded.
pub(super) fn decoded_json(d: &DecodedEntry) -> Value {
    let mut v = entry_json(d);
    if let Some(Body::GateRefusal(r)) = &d.statement.body {
        if let Ok(refused) = DecodedEntry::decode(&r.refused_entry) {
            v["refused"] = entry_json(&refused);
        }
    }
    v
}

pub(crate) fn obligation_json(o: &Obligation, now: i64) -> Value {
    json!({
        "chain_id": o.chain_id,
        "index": o.index,
        "actor": o.actor,
        "kind": o.kind,
        "opened_by": o.opened_by,
        "owed": o.kind.owed(),
        "deadline": serde_json::to_value(timestamp(o.deadline_ms)).unwrap_or_default(),
        // The same, by its first name (clients of break-glass reviews).
        "review_deadline": serde_json::to_value(timestamp(o.deadline_ms)).unwrap_or_default(),
        "overdue": o.deadline_ms < now,
    })
}

/// A time-bound grant (rules version 5): what it granted, to whom, until
/// when, and whether it was revoked early.
pub(crate) fn grant_json(g: &Grant) -> Value {
    json!({
        "chain_id": g.chain_id,
        "outcome": g.outcome,
        "target": {
            "system": g.target.system,
            "resource": g.target.resource,
            "subject": g.target.subject,
        },
        "entitlements": g.entitlements,
        "granted_at": serde_json::to_value(timestamp(g.granted_ms)).unwrap_or_default(),
        // null: permanent (rules version 6).
        "ends_at": g.ends().map(|e| serde_json::to_value(timestamp(e)).unwrap_or_default()),
        "revoked_by": g.revoked_by,
    })
}

pub(super) fn state_gone() -> ApiError {
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal_error",
        "the gate state is unavailable",
    )
}

/// Most entries in one page of a chain (each carries its statement, up to
/// 64 KiB, and an inclusion proof): a chain's answer is bounded however
/// long the chain grows.
pub const CHAIN_PAGE_MAX: u64 = 256;

/// The chain `chain_id`, a page at a time (`?offset=N&limit=M`, M at most
/// [`CHAIN_PAGE_MAX`]): each entry with its index, leaf hash and an
/// inclusion proof to the current checkpoint, plus status and any open
/// obligation, and the offset of the next page while there is one.
pub(super) fn serve_chain(
    app: &App,
    gate: &SharedState,
    chain_id: &str,
    raw_query: &str,
) -> Result<HttpResponse> {
    let query = super::routes::Query::parse(raw_query, &["offset", "limit"])?;
    let offset = query.u64("offset")?.unwrap_or(0);
    let limit = query.u64("limit")?.unwrap_or(CHAIN_PAGE_MAX);
    if !(1..=CHAIN_PAGE_MAX).contains(&limit) {
        return Err(ApiError::bad_param(format!(
            "limit must be 1 to {CHAIN_PAGE_MAX}"
        )));
    }
    let head = app.log.head();
    let (indices, status, obligation, grant) = {
        let state = gate.read().map_err(|_| state_gone())?;
        let (indices, status) = state.chain_entries(chain_id).ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "unknown_chain",
                format!("no chain {chain_id:?} in this log"),
            )
        })?;
        // A closed chain whose entries storage cannot list: say so, rather
        // than answer that it has none.
        let mut indices = indices.ok_or_else(|| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "storage_error",
                format!("chain {chain_id:?} is closed and this server cannot list its entries (see its log; a restart lists them again)"),
            )
        })?;
        indices.retain(|i| *i < head.size);
        let obligation = state.obligation_of(chain_id).cloned();
        let grant = state.grant_of(chain_id).map(grant_json);
        (indices, status, obligation, grant)
    };
    let total = indices.len() as u64;
    let page: Vec<u64> = indices
        .into_iter()
        .skip(usize::try_from(offset).unwrap_or(usize::MAX))
        .take(limit as usize)
        .collect();
    let next = offset.saturating_add(page.len() as u64);
    let mut entries = Vec::with_capacity(page.len());
    for index in page {
        let leaf = app
            .log
            .store()
            .entry(index)
            .map_err(|e| {
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "storage_error",
                    e.to_string(),
                )
            })?
            .ok_or_else(|| {
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "storage_error",
                    format!("entry {index} is missing"),
                )
            })?;
        let decoded = DecodedEntry::decode(&leaf).map_err(|e| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "storage_error",
                e.to_string(),
            )
        })?;
        let (_, proof) = app.log.inclusion_proof(
            index,
            Some(head.size),
            crate::server::log::ProofUser::Public,
        )?;
        entries.push(json!({
            "index": index,
            "leaf_hash": B64.encode(decoded.leaf_hash),
            "kind": decoded.kind().name(),
            "entry": decoded_json(&decoded),
            "inclusion_proof": proof.iter().map(|h| B64.encode(h)).collect::<Vec<_>>(),
        }));
    }
    let now = now_ms();
    Ok(json_response(json!({
        "chain_id": chain_id,
        "status": status,
        "tree_size": head.size,
        "checkpoint": head.checkpoint.to_string(),
        "obligation": obligation.map(|o| obligation_json(&o, now)),
        "grant": grant,
        "entries_total": total,
        "offset": offset,
        "next_offset": (next < total).then_some(next),
        "entries": entries,
    })))
}

/// Open obligations (break-glass reviews, undos, de-provisionings), earliest deadline first.
pub(super) fn serve_obligations(gate: &SharedState) -> Result<HttpResponse> {
    let now = now_ms();
    let state = gate.read().map_err(|_| state_gone())?;
    let open: Vec<Value> = state
        .obligations()
        .into_iter()
        .map(|o| obligation_json(o, now))
        .collect();
    Ok(json_response(json!({
        "now": serde_json::to_value(timestamp(now)).unwrap_or_default(),
        "obligations": open,
    })))
}
