//! The monitor's HTTP API: `GET /v1/monitor/checkpoint`, the latest
//! checkpoint it accepted, for its peers to check.

use hyper::body::Incoming;
use hyper::{Method, Request, StatusCode};

use super::routes::{bytes_response, HttpResponse};
use super::ApiError;
use crate::monitor::Monitor;

/// Answers one request to the monitor.
pub fn handle(monitor: &Monitor, req: Request<Incoming>) -> HttpResponse {
    if req.uri().path() != "/v1/monitor/checkpoint" {
        return ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such endpoint")
            .into_response();
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "GET only",
        )
        .into_response();
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
