//! Request routing, decoding and encoding. The logic lives in
//! [`crate::server::log::Log`] and [`crate::server::sequencer`]; each `serve_*` here only
//! turns HTTP into a call and the result into HTTP.

use base64::engine::general_purpose::{STANDARD as B64, URL_SAFE as B64URL};
use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CACHE_CONTROL, CONTENT_LENGTH, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use serde_json::json;

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::quota;
use super::writers::Writer;
use super::{access, access_log, chains, ApiError, App, Gate};
use crate::access::entry::{validate, DecodedEntry, VerifiedKey};
use crate::server::gatekeeper::SharedState;
use crate::server::log::ProofUser;
use crate::server::sequencer::SubmitError;
use crate::sys::clock::now_ms;
use crate::tlog::decimal::parse_decimal;
use crate::tlog::merkle::{leaf_hash, Hash};
use crate::tlog::tiles::{TileKind, TilePath, MAX_ENTRY_BYTES};
use crate::tlog::tlog_proof::TlogProof;

pub(crate) type HttpResponse = Response<Full<Bytes>>;
type Result<T> = std::result::Result<T, ApiError>;

const IMMUTABLE: &str = "public, max-age=31536000, immutable";
const SHORT_LIVED: &str = "public, max-age=1";

/// Answers one request; errors become JSON error responses.
pub async fn handle(app: &Arc<App>, req: Request<Incoming>) -> HttpResponse {
    let response = route(app, req)
        .await
        .unwrap_or_else(ApiError::into_response);
    app.log.metrics.count_response(response.status().as_u16());
    response
}

async fn route(app: &Arc<App>, req: Request<Incoming>) -> Result<HttpResponse> {
    let path = req.uri().path();
    let allowed = match path {
        "/v1/entries" | "/v1/gate/check" => "POST",
        "/v1/log"
        | "/checkpoint"
        | "/v1/proof/inclusion"
        | "/v1/proof/consistency"
        | "/metrics" => "GET, HEAD",
        p if p.starts_with("/tile/") => "GET, HEAD",
        "/v1/obligations" | "/v1/access" => "GET, HEAD",
        p if p.starts_with("/v1/chains/") => "GET, HEAD",
        _ => {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                format!("no such endpoint: {path}"),
            ))
        }
    };
    // hyper sends no body in answer to HEAD, so HEAD is served as GET.
    let method = req.method();
    let method = if method == Method::HEAD {
        "GET"
    } else {
        method.as_str()
    };
    if !allowed.split(", ").any(|m| m == method) {
        return Ok(ApiError::method_not_allowed(path, allowed));
    }
    let path = path.to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    match path.as_str() {
        "/v1/entries" => {
            let peer = req.extensions().get::<access_log::Peer>().copied();
            let started = std::time::Instant::now();
            let mut seen = access_log::Submission::default();
            let result = serve_add_entry(app, req, &mut seen).await;
            access_log::record(peer, &seen, result.as_ref().err(), started);
            result
        }
        "/v1/gate/check" => serve_gate_check(app, req).await,
        "/v1/log" => Ok(serve_log_info(app)),
        "/checkpoint" => Ok(serve_checkpoint(app)),
        "/metrics" => {
            let mut text = app.log.metrics.render();
            if let Some(w) = &app.witnessing {
                w.render_metrics(&mut text);
            }
            app.quotas.render_metrics(&mut text);
            Ok(bytes_response(
                text.into(),
                "text/plain; version=0.0.4; charset=utf-8",
                "no-store",
            ))
        }
        // Proofs and tiles read RocksDB, which may wait on the disk: keep
        // that off the threads that drive every connection.
        "/v1/proof/inclusion" => blocking(app, move |app| serve_inclusion(app, &query)).await,
        "/v1/proof/consistency" => blocking(app, move |app| serve_consistency(app, &query)).await,
        "/v1/obligations" => chains::serve_obligations(gate(app)?),
        "/v1/access" => {
            blocking(app, move |app| {
                access::serve_access(app, gate(app)?, &query)
            })
            .await
        }
        p if p.starts_with("/v1/chains/") => {
            let id = percent_decode(p.strip_prefix("/v1/chains/").expect("routed on prefix"))?;
            blocking(app, move |app| {
                chains::serve_chain(app, gate(app)?, &id, &query)
            })
            .await
        }
        _ => {
            blocking(app, move |app| {
                serve_tile(app, path.strip_prefix("/tile/").expect("routed on prefix"))
            })
            .await
        }
    }
}

/// Runs a handler that does blocking reads on the blocking thread pool.
async fn blocking<F>(app: &Arc<App>, f: F) -> Result<HttpResponse>
where
    F: FnOnce(&App) -> Result<HttpResponse> + Send + 'static,
{
    let app = app.clone();
    run_blocking(move || f(&app)).await?
}

/// Runs `f` on the blocking pool; a panic in it becomes a 500.
pub(crate) async fn run_blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(f).await.map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            e.to_string(),
        )
    })
}

pub(crate) fn bytes_response(
    body: Bytes,
    content_type: &'static str,
    cache: &'static str,
) -> HttpResponse {
    let mut r = Response::new(Full::new(body));
    let h = r.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(CACHE_CONTROL, HeaderValue::from_static(cache));
    r
}

pub(crate) fn json_response(value: serde_json::Value) -> HttpResponse {
    bytes_response(value.to_string().into(), "application/json", "no-store")
}

fn b64_list(hashes: &[Hash]) -> Vec<String> {
    hashes.iter().map(|h| B64.encode(h)).collect()
}

fn serve_log_info(app: &App) -> HttpResponse {
    json_response(json!({
        "origin": app.log.origin(),
        "verifier_key": app.log.verifier().to_vkey(),
        "tree_size": app.log.head().size,
        "max_entry_bytes": app.config.max_entry_bytes.min(MAX_ENTRY_BYTES),
    }))
}

fn serve_checkpoint(app: &App) -> HttpResponse {
    // With witnesses, the checkpoint they cosigned (the latest that
    // reached the quorum, when one is set) and their cosignatures.
    let cosigned = app.witnessing.as_ref().and_then(|w| w.served());
    let text = match cosigned {
        Some(c) => c.note(),
        None => app.log.head().checkpoint.to_string(),
    };
    bytes_response(text.into(), "text/plain; charset=utf-8", SHORT_LIVED)
}

/// Reads a request body of at most `limit` bytes within `timeout`.
pub(crate) async fn read_body(
    req: Request<Incoming>,
    limit: usize,
    timeout: Duration,
) -> Result<Bytes> {
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            format!("request body exceeds the limit of {limit} bytes"),
        )
    };
    let declared = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    let read = Limited::new(req.into_body(), limit).collect();
    let collected = tokio::time::timeout(timeout, read).await.map_err(|_| {
        ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "body_timeout",
            format!("the request body did not arrive within {timeout:?}"),
        )
    })?;
    let body = collected.map_err(|e| {
        if e.is::<http_body_util::LengthLimitError>() {
            too_large()
        } else {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad_body",
                format!("reading body: {e}"),
            )
        }
    })?;
    Ok(body.to_bytes())
}

/// The gate state, or 404 when the log holds opaque entries.
fn gate(app: &App) -> Result<&SharedState> {
    gate_of(app).map(|g| &g.state)
}

fn gate_of(app: &App) -> Result<&super::Gate> {
    app.gate.as_ref().ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not_a_gatelog",
            "this log is serving opaque entries (--entries opaque): it has no chains or gate",
        )
    })
}

/// Checks of a gatelog entry before it queues for the gate: decoding,
/// validation and, when the log knows the signer's key, the signature
/// (batched with other submissions', off the sequencer's thread). The entry decoded, and the key it verified with;
/// what it is goes into `seen` first, for the access log.
async fn check_entry(
    gate: &Gate,
    log: &Arc<crate::server::log::Log>,
    entry: &[u8],
    seen: &mut access_log::Submission,
) -> Result<(DecodedEntry, Option<VerifiedKey>)> {
    let decoded = DecodedEntry::decode(entry).map_err(|e| {
        ApiError::new(StatusCode::BAD_REQUEST, "malformed_entry", e.message).at(e.field)
    })?;
    seen.signer = decoded.signed.signer_id.clone();
    seen.kind = decoded.kind().name();
    seen.chain = decoded.statement.chain_id.clone();
    validate(&decoded, now_ms(), &gate.limits).map_err(|e| {
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_entry", e.message).at(e.field)
    })?;
    // Checked against the keys as of the last batch that changed one; a
    // signer the log does not know (yet: its registration may be in
    // flight) is left to the gate, which answers in log order and checks
    // again any entry whose signer's key changed since.
    let key = gate
        .keys
        .read()
        .expect("keys lock")
        .get(&decoded.signed.signer_id)
        .and_then(|keys| keys.get(&decoded.signed.key_id))
        .copied();
    let Some(key) = key else {
        return Ok((decoded, None));
    };
    match gate.signatures.check(decoded, key).await {
        (decoded, Some(verified)) => Ok((decoded, Some(verified))),
        // Several nodes: this node's keys may be behind another node's
        // rotation; if the log has moved on since this node last caught
        // up, the gate judges after catching up on it.
        (decoded, None) if behind_the_store(log).await => Ok((decoded, None)),
        (decoded, None) => Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "bad_signature",
            format!(
                "the signature does not verify with key {:08x} of {}",
                decoded.signed.key_id, decoded.signed.signer_id
            ),
        )
        .at("signedEntry.signature")),
    }
}

/// Whether the shared store holds a newer checkpoint than this node
/// serves (never, for an embedded store).
async fn behind_the_store(log: &Arc<crate::server::log::Log>) -> bool {
    if log.store().shared().is_none() {
        return false;
    }
    let log = log.clone();
    tokio::task::spawn_blocking(move || {
        log.store()
            .checkpoint()
            .is_ok_and(|cp| cp.is_some_and(|cp| *cp != *log.head().checkpoint))
    })
    .await
    .unwrap_or(false)
}

/// `POST /v1/gate/check`: what the gate would decide on this entry if it
/// were submitted now, logging nothing. The body is a signed entry, as for
/// `POST /v1/entries`; an empty signature is judged on everything else.
/// Decoding and validation errors are answered as for a submission; the
/// gate's verdict is a 200: `admit`, `refuse` (every violation) or
/// `reject` (why). Counts against the address's quota like a submission.
async fn serve_gate_check(app: &Arc<App>, req: Request<Incoming>) -> Result<HttpResponse> {
    take_address_quota(app, &req)?;
    let peer = req
        .extensions()
        .get::<access_log::Peer>()
        .map(|p| p.0.to_string())
        .unwrap_or_default();
    gate_of(app)?;
    // Whoever may not write may not ask either.
    let writers = app.writers.read().expect("writers lock").clone();
    writers.authenticate(&req)?;
    let body = read_body(req, app.config.max_body_bytes, app.config.http.read_timeout).await?;
    let entry = decode_entry(app, body)?;
    let mut decoded = DecodedEntry::decode(&entry).map_err(|e| {
        ApiError::new(StatusCode::BAD_REQUEST, "malformed_entry", e.message).at(e.field)
    })?;
    let limits = gate_of(app)?.limits;
    // An unsigned entry is validated as if signed: every other field is.
    let unsigned = decoded.signed.signature.is_empty();
    if unsigned {
        decoded.signed.signature = vec![0; 64];
    }
    validate(&decoded, now_ms(), &limits).map_err(|e| {
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_entry", e.message).at(e.field)
    })?;
    if unsigned {
        decoded.signed.signature.clear();
    }
    // The state is set to the time a submission would be judged at, and
    // back: a moment under its write lock, off the connection threads.
    blocking(app, move |app| {
        let g = gate_of(app)?;
        // What the log already holds, or refused for good, is answered
        // from that, as a submission would be.
        let store = app.log.store();
        let storage = |e: crate::server::store::StoreError| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "storage_error",
                e.to_string(),
            )
        };
        if let Some(index) = store.index_of(&decoded.leaf_hash).map_err(storage)? {
            return Ok(json_response(
                serde_json::json!({"verdict": "duplicate", "index": index}),
            ));
        }
        if let Some(record) = store.refusal_of(&decoded.leaf_hash).map_err(storage)? {
            return Ok(json_response(
                serde_json::json!({"verdict": "refused_before", "refusal_record": record}),
            ));
        }
        let next = app.log.head().size;
        // One dry run at a time: the others are told to come back rather
        // than each holding a thread of the blocking pool.
        let mut engine = match g.dry_runs.try_lock() {
            Ok(engine) => engine,
            Err(std::sync::TryLockError::WouldBlock) => {
                return Err(ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "overloaded",
                    "another dry run is being judged; retry",
                ))
            }
            Err(std::sync::TryLockError::Poisoned(_)) => return Err(super::chains::state_gone()),
        };
        let run = {
            let mut state = g.state.write().map_err(|_| super::chains::state_gone())?;
            crate::server::gatekeeper::judge_now(
                &mut state,
                next,
                &decoded,
                engine.as_mut(),
                g.log_time_resolution_ms,
                now_ms(),
            )
        };
        let answer = dry_run_json(&run, next);
        // Who asked the gate what, in the access log beside submissions.
        tracing::info!(
            target: "gatelog::access",
            peer = %peer,
            signer = %decoded.signed.signer_id,
            kind = decoded.kind().name(),
            chain = %decoded.statement.chain_id,
            verdict = %answer["verdict"].as_str().unwrap_or_default(),
            "dry run"
        );
        Ok(json_response(answer))
    })
    .await
}

fn dry_run_json(run: &crate::server::gatekeeper::DryRun, tree_size: u64) -> serde_json::Value {
    use crate::access::gate::Verdict;
    let (verdict, violations, error) = match &run.verdict {
        Ok(Verdict::Admit) => ("admit", vec![], None),
        Ok(Verdict::Refuse(r)) => (
            "refuse",
            r.violations
                .iter()
                .map(|v| serde_json::json!({"rule": v.rule, "code": v.code, "message": v.message}))
                .collect(),
            None,
        ),
        Err(r) => (
            "reject",
            vec![],
            Some(
                serde_json::json!({"status": r.status, "code": r.code, "message": r.message, "field": r.field}),
            ),
        ),
    };
    serde_json::json!({
        "verdict": verdict,
        "violations": violations,
        "error": error,
        "signature_checked": run.signature_checked,
        "tree_size": tree_size,
        "judged_at": run.judged_at_ms.map(crate::access::entry::timestamp),
    })
}

/// Every attempt counts against its address, before anything is checked.
fn take_address_quota(app: &App, req: &Request<Incoming>) -> Result<()> {
    if let Some(peer) = req.extensions().get::<access_log::Peer>() {
        let ip = peer.0.ip();
        let key = quota::address_key(ip);
        if let Err(wait) = app.quotas.per_address.take(&key, Instant::now()) {
            app.quotas.refused_address.fetch_add(1, Relaxed);
            return Err(ApiError::too_many(
                "address_quota",
                format!("too many submissions from {ip}; retry later"),
                wait,
            ));
        }
    }
    Ok(())
}

async fn serve_add_entry(
    app: &App,
    req: Request<Incoming>,
    seen: &mut access_log::Submission,
) -> Result<HttpResponse> {
    take_address_quota(app, &req)?;
    let writers = app.writers.read().expect("writers lock").clone();
    let writer = writers.authenticate(&req)?;
    if let Writer::Named(name) = &writer {
        seen.writer = name.clone();
    }
    let body = read_body(req, app.config.max_body_bytes, app.config.http.read_timeout).await?;
    seen.bytes = body.len();
    let entry = decode_entry(app, body)?;
    let (decoded, verified_with) = match &app.gate {
        Some(gate) => {
            let (d, k) = check_entry(gate, &app.log, &entry, seen).await?;
            (Some(d), k)
        }
        None => (None, None),
    };
    // Only a proven writer's quota is spent: a signer whose signature
    // verified, or a writer that authenticated; and only by a new entry,
    // so that nobody spends a signer's quota by replaying its entries
    // (they are public) from elsewhere. While the writer's bucket is at
    // least half full a token is taken at once and given back if the
    // entry turns out to be a duplicate (no lookup on the hot path); below
    // that, the log is asked first, so replays in flight can never take
    // the bucket below half.
    let proven = match (&verified_with, &writer) {
        (Some(_), _) => Some(seen.signer.clone()),
        (None, Writer::Named(name)) if app.gate.is_none() => Some(name.clone()),
        _ => None,
    };
    let quota = &app.quotas.per_writer;
    let proven = proven.filter(|_| quota.is_limited());
    let mut charged = None;
    if let Some(who) = proven {
        let now = Instant::now();
        let new_entry = quota.at_least_half_full(&who, now) || {
            let leaf = decoded
                .as_ref()
                .map_or_else(|| leaf_hash(&entry), |d| d.leaf_hash);
            app.log.find_leaf(&leaf, None).is_err()
        };
        if new_entry {
            if let Err(wait) = quota.take(&who, now) {
                app.quotas.refused_writer.fetch_add(1, Relaxed);
                return Err(ApiError::too_many(
                    "writer_quota",
                    format!("too many submissions by {who}; retry later"),
                    wait,
                ));
            }
            charged = Some(who);
        }
    }
    let appended = app.sequencer.submit(entry, decoded, verified_with).await;
    if let Some(who) = &charged {
        // A duplicate, or a submission the queue could not take, cost
        // nothing; a rejection cost the gate its work, and counts.
        let free = match &appended {
            Ok(a) => a.duplicate,
            Err(e) => matches!(e, SubmitError::Overloaded),
        };
        if free {
            quota.refund(who);
        }
    }
    let appended = appended?;
    seen.index = Some(appended.index);
    seen.outcome = match (&appended.refusal, appended.duplicate) {
        (Some(_), _) => "refused",
        (None, true) => "duplicate",
        (None, false) => "appended",
    };
    let (proof, checkpoint) = match app.witnessing.as_ref().filter(|w| w.quorum() > 0) {
        None => (appended.proof, appended.head.checkpoint.to_string()),
        Some(w) => {
            let index = appended.index;
            // The entry may have just missed a round: allow for the rest
            // of that one and the whole next one.
            let timeout = 2 * app.config.witness_timeout;
            let cosigned = w.wait_for_quorum(index, timeout).await.ok_or_else(|| {
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "witness_quorum_timeout",
                    format!(
                        "entry {index} is durable in the log, but {} witnesses did not cosign a checkpoint covering it within {timeout:?}; retry for its proof",
                        w.quorum()
                    ),
                )
            })?;
            // The sequencer's proof stands if the witnesses cosigned the
            // batch's own checkpoint; a later one needs its own proof.
            let size = cosigned.head.size;
            let proof = if size == appended.head.size {
                appended.proof
            } else if let Some(p) = cosigned.proof(index) {
                p.clone()
            } else {
                let log = app.log.clone();
                run_blocking(move || log.inclusion_proof(index, Some(size), ProofUser::Log))
                    .await??
                    .1
            };
            (proof, cosigned.note())
        }
    };
    let bundle = TlogProof {
        extra: None,
        index: appended.index,
        proof,
        checkpoint,
    };
    if let Some(refusal) = &appended.refusal {
        let violations: Vec<serde_json::Value> = refusal
            .violations
            .iter()
            .map(|v| json!({"rule": v.rule, "code": v.code, "message": v.message}))
            .collect();
        let rules: Vec<String> = refusal
            .violations
            .iter()
            .map(|v| format!("rule {} ({})", v.rule, v.code))
            .collect();
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "gate_refused",
            format!("the gate refused this entry: {}", rules.join(", ")),
        )
        .with("violations", violations.into())
        .with(
            "policy",
            serde_json::to_value(&refusal.policy).unwrap_or_default(),
        )
        .with(
            "refusal_record",
            json!({
                "index": appended.index,
                "leaf_hash": B64.encode(appended.leaf_hash),
                "checkpoint": bundle.checkpoint,
                "proof": bundle.encode(),
            }),
        ));
    }
    // A struct, not json!(): this is the hot path, and a Value tree costs
    // an allocation per field.
    #[derive(serde::Serialize)]
    struct Answer<'a> {
        index: u64,
        leaf_hash: String,
        checkpoint: &'a str,
        proof: String,
        duplicate: bool,
    }
    let body = serde_json::to_vec(&Answer {
        index: appended.index,
        leaf_hash: B64.encode(appended.leaf_hash),
        checkpoint: &bundle.checkpoint,
        proof: bundle.encode(),
        duplicate: appended.duplicate,
    })
    .expect("serialising plain data");
    Ok(bytes_response(body.into(), "application/json", "no-store"))
}

/// Turns a request body into the entry to log.
fn decode_entry(app: &App, body: Bytes) -> Result<Vec<u8>> {
    if body.is_empty() {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "empty_entry",
            "the request body is empty; an entry needs at least one byte",
        ));
    }
    let max = app.config.max_entry_bytes.min(MAX_ENTRY_BYTES);
    if body.len() > max {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "entry_too_large",
            format!("entry is {} bytes, the limit is {max}", body.len()),
        ));
    }
    Ok(body.to_vec())
}

fn serve_tile(app: &App, rest: &str) -> Result<HttpResponse> {
    let tile = TilePath::parse(rest)?;
    let data = match tile.kind {
        TileKind::Hashes { level } => app.log.hash_tile(level, tile.index, tile.width)?,
        TileKind::Entries => app.log.entry_bundle(tile.index, tile.width)?,
    };
    match data {
        Some(bytes) => Ok(bytes_response(
            bytes.into(),
            "application/octet-stream",
            IMMUTABLE,
        )),
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "tile_not_found",
            format!(
                "{tile} is not in the current tree of size {}",
                app.log.head().size
            ),
        )),
    }
}

/// Query parameters, percent-decoded. '+' is kept as '+', so base64
/// values work whether or not the client escaped them.
pub(super) struct Query(Vec<(String, String)>);

impl Query {
    pub(super) fn parse(raw: &str, allowed: &[&str]) -> Result<Query> {
        let mut pairs: Vec<(String, String)> = Vec::new();
        for part in raw.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = part.split_once('=').unwrap_or((part, ""));
            let (k, v) = (percent_decode(k)?, percent_decode(v)?);
            if !allowed.contains(&k.as_str()) {
                return Err(ApiError::bad_param(format!(
                    "unknown parameter {k:?}; this endpoint takes {}",
                    allowed.join(", ")
                )));
            }
            if pairs.iter().any(|(pk, _)| *pk == k) {
                return Err(ApiError::bad_param(format!("parameter {k:?} given twice")));
            }
            pairs.push((k, v));
        }
        Ok(Query(pairs))
    }

    /// A parameter's value, if given.
    pub(super) fn text(&self, name: &str) -> Option<&str> {
        self.get(name)
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub(super) fn u64(&self, name: &str) -> Result<Option<u64>> {
        let Some(v) = self.get(name) else {
            return Ok(None);
        };
        parse_decimal(v).map(Some).ok_or_else(|| {
            ApiError::bad_param(format!("{name} must be a decimal integer, got {v:?}"))
        })
    }

    fn required_u64(&self, name: &str) -> Result<u64> {
        self.u64(name)?
            .ok_or_else(|| ApiError::bad_param(format!("missing required parameter {name}")))
    }
}

/// Decodes `%XX` escapes (a `+` stays a `+`: base64 leaf hashes carry it).
/// A `%` without two hex digits after it is an error, not a literal.
pub(super) fn percent_decode(s: &str) -> Result<String> {
    let bad = || ApiError::bad_param("malformed percent-encoding in query");
    let well_formed = s.split('%').skip(1).all(|escape| {
        escape
            .as_bytes()
            .get(..2)
            .is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit))
    });
    if !well_formed {
        return Err(bad());
    }
    percent_encoding::percent_decode_str(s)
        .decode_utf8()
        .map(|c| c.into_owned())
        .map_err(|_| bad())
}

/// A leaf hash given as standard or URL-safe base64, or as hex.
fn parse_leaf_hash(v: &str) -> Result<Hash> {
    let decoded = if v.len() == 64 && v.bytes().all(|b| b.is_ascii_hexdigit()) {
        (0..32)
            .map(|i| u8::from_str_radix(&v[2 * i..2 * i + 2], 16).ok())
            .collect::<Option<Vec<u8>>>()
    } else {
        B64.decode(v).or_else(|_| B64URL.decode(v)).ok()
    };
    decoded
        .and_then(|d| Hash::try_from(d).ok())
        .ok_or_else(|| ApiError::bad_param("leaf_hash must be a SHA-256 hash in base64 or hex"))
}

fn serve_inclusion(app: &App, raw: &str) -> Result<HttpResponse> {
    let q = Query::parse(raw, &["index", "leaf_hash", "tree_size"])?;
    let tree_size = q.u64("tree_size")?;
    let index = match (q.u64("index")?, q.get("leaf_hash")) {
        (Some(i), None) => i,
        (None, Some(h)) => app.log.find_leaf(&parse_leaf_hash(h)?, tree_size)?,
        _ => {
            return Err(ApiError::bad_param(
                "give exactly one of index and leaf_hash",
            ))
        }
    };
    let (size, hashes) = app
        .log
        .inclusion_proof(index, tree_size, ProofUser::Public)?;
    Ok(json_response(json!({
        "index": index,
        "tree_size": size,
        "hashes": b64_list(&hashes),
    })))
}

fn serve_consistency(app: &App, raw: &str) -> Result<HttpResponse> {
    let q = Query::parse(raw, &["old_size", "tree_size"])?;
    let old = q.required_u64("old_size")?;
    let (size, hashes) = app
        .log
        .consistency_proof(old, q.u64("tree_size")?, ProofUser::Public)?;
    Ok(json_response(json!({
        "old_size": old,
        "tree_size": size,
        "hashes": b64_list(&hashes),
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_parsing_is_strict() {
        let q = Query::parse("index=5&tree_size=10", &["index", "tree_size"]).unwrap();
        assert_eq!(q.u64("index").unwrap(), Some(5));
        assert!(Query::parse("index=1&index=2", &["index"]).is_err());
        assert!(Query::parse("bogus=1", &["index"]).is_err());
        let q = Query::parse("index=05", &["index"]).unwrap();
        assert!(q.u64("index").is_err());
        let q = Query::parse("index=-1", &["index"]).unwrap();
        assert!(q.u64("index").is_err());
        assert!(Query::parse("index=%zz", &["index"]).is_err());
    }

    #[test]
    fn leaf_hashes_parse_in_every_spelling() {
        let h = [0xfbu8; 32];
        let hex = crate::tlog::merkle::hex(&h);
        assert_eq!(parse_leaf_hash(&B64.encode(h)).unwrap(), h);
        assert_eq!(parse_leaf_hash(&B64URL.encode(h)).unwrap(), h);
        assert_eq!(parse_leaf_hash(&hex).unwrap(), h);
        assert!(parse_leaf_hash("AAAA").is_err());
    }
}
