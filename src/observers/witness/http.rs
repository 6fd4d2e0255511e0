//! The witness's HTTP API (C2SP tlog-witness): `POST /add-checkpoint`
//! answered with the statuses the spec defines, and `GET /v1/witness`.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use hyper::body::Incoming;
use hyper::{Method, Request, StatusCode};
use serde_json::json;

use crate::observers::witness::{Witness, WitnessError};
use crate::server::http::routes::{
    bytes_response, json_response, read_body, run_blocking, HttpResponse,
};
use crate::server::http::ApiError;

/// Largest add-checkpoint body: 63 proof lines and a checkpoint with many
/// signatures fit in far less.
pub const MAX_BODY_BYTES: usize = 64 << 10;

/// The witness and its limits, shared by every request.
pub struct WitnessApp {
    /// The witness.
    pub witness: Witness,
    /// Longest wait for a request body.
    pub read_timeout: Duration,
}

impl From<WitnessError> for ApiError {
    fn from(e: WitnessError) -> Self {
        let (status, code) = match &e {
            WitnessError::Malformed(_) => (StatusCode::BAD_REQUEST, "malformed"),
            WitnessError::OldSizeBeyond { .. } => {
                (StatusCode::BAD_REQUEST, "old_size_beyond_checkpoint")
            }
            WitnessError::UnknownLog(_) => (StatusCode::NOT_FOUND, "unknown_log"),
            WitnessError::BadSignature(_) => (StatusCode::FORBIDDEN, "bad_signature"),
            WitnessError::WrongOldSize { .. } => (StatusCode::CONFLICT, "wrong_old_size"),
            WitnessError::RootMismatch { .. } => (StatusCode::CONFLICT, "root_mismatch"),
            WitnessError::BadProof { .. } => {
                (StatusCode::UNPROCESSABLE_ENTITY, "bad_consistency_proof")
            }
            WitnessError::Storage(_) => (StatusCode::INTERNAL_SERVER_ERROR, "storage_error"),
        };
        ApiError::new(status, code, e.to_string())
    }
}

/// Answers one witness request.
pub async fn handle(app: &Arc<WitnessApp>, req: Request<Incoming>) -> HttpResponse {
    route(app, req)
        .await
        .unwrap_or_else(ApiError::into_response)
}

async fn route(app: &Arc<WitnessApp>, req: Request<Incoming>) -> Result<HttpResponse, ApiError> {
    let (path, method) = (req.uri().path().to_string(), req.method().clone());
    let allowed = match path.as_str() {
        "/add-checkpoint" => "POST",
        "/v1/witness" => "GET",
        _ => {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                format!("no such endpoint: {path}"),
            ))
        }
    };
    if method.as_str() != allowed && !(method == Method::HEAD && allowed == "GET") {
        return Ok(ApiError::method_not_allowed(&path, allowed));
    }
    if allowed == "GET" {
        let v = app.witness.verifier();
        return Ok(json_response(
            json!({ "name": v.name(), "verifier_key": v.to_vkey() }),
        ));
    }
    let body = read_body(req, MAX_BODY_BYTES, app.read_timeout).await?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    // Checking and recording is a read, a verify and an fsync'd write.
    let app = app.clone();
    let answer = run_blocking(move || app.witness.add_checkpoint(&body, now)).await?;
    match answer {
        Ok(cosignatures) => Ok(bytes_response(
            Bytes::from(cosignatures),
            "text/plain; charset=utf-8",
            "no-store",
        )),
        Err(e) => match e.latest_size() {
            // tlog-witness: a 409 carries the latest cosigned size as text.
            Some(size) => {
                let mut r = bytes_response(
                    Bytes::from(format!("{size}\n")),
                    "text/x.tlog.size",
                    "no-store",
                );
                *r.status_mut() = StatusCode::CONFLICT;
                Ok(r)
            }
            None => Err(e.into()),
        },
    }
}
