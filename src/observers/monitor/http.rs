//! The monitor's HTTP API: `GET /v1/monitor/checkpoint`, the latest
//! checkpoint it accepted, for its peers to check; and
//! `GET /v1/monitor/obligations`, the open break-glass reviews it found in
//! the log's entries.

use hyper::body::Incoming;
use hyper::{Method, Request, StatusCode};
use serde_json::json;

use crate::observers::monitor::Monitor;
use crate::server::http::chains::obligation_json;
use crate::server::http::routes::{bytes_response, json_response, HttpResponse};
use crate::server::http::ApiError;
use crate::sys::clock::now_ms;

/// Answers one request to the monitor.
pub fn handle(monitor: &Monitor, req: Request<Incoming>) -> HttpResponse {
    let path = req.uri().path();
    if path != "/v1/monitor/checkpoint" && path != "/v1/monitor/obligations" {
        return ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such endpoint")
            .into_response();
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return ApiError::method_not_allowed(path, "GET, HEAD");
    }
    if path == "/v1/monitor/obligations" {
        let report = monitor.obligations();
        let now = now_ms();
        return json_response(json!({
            "tree_size": report.tree_size,
            "not_gatelog": report.not_gatelog,
            "obligations": report.open.iter().map(|o| obligation_json(o, now)).collect::<Vec<_>>(),
        }));
    }
    match monitor.latest() {
        Some(note) => bytes_response(note.into(), "text/plain; charset=utf-8", "no-store"),
        None => ApiError::new(
            StatusCode::NOT_FOUND,
            "no_checkpoint",
            "no checkpoint accepted yet",
        )
        .into_response(),
    }
}
