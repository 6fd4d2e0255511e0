//! API errors and the one place that maps errors to HTTP statuses.
//! Every error answers with JSON `{"error": {"code", "message"}}`, plus
//! `field` when one field is at fault and any details (e.g. the rules a
//! refused intent broke). A 500 names its code but keeps its details in
//! the log.

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderValue, ALLOW, CACHE_CONTROL, CONTENT_TYPE, RETRY_AFTER};
use hyper::{Response, StatusCode};

use crate::server::log::ReadError;
use crate::server::sequencer::SubmitError;
use crate::tlog::tiles::TilePathError;

/// An error answer: status, machine-readable code, human message.
#[derive(Debug)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable machine-readable code.
    pub code: &'static str,
    /// What went wrong, for a person.
    pub message: String,
    /// More members of the error object (e.g. `field`, the request field
    /// at fault); boxed to keep errors small on the success path.
    pub details: Option<Box<serde_json::Map<String, serde_json::Value>>>,
}

impl ApiError {
    /// An error with this status, code and message.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            details: None,
        }
    }

    /// The same error, naming the field at fault.
    pub fn at(self, field: impl Into<String>) -> Self {
        self.with("field", field.into().into())
    }

    /// The same error with one more member in its JSON object.
    pub fn with(mut self, key: &str, value: serde_json::Value) -> Self {
        self.details
            .get_or_insert_with(Default::default)
            .insert(key.to_string(), value);
        self
    }

    /// 405 naming the methods `path` accepts, with an Allow header.
    pub fn method_not_allowed(path: &str, allowed: &'static str) -> Response<Full<Bytes>> {
        let mut r = ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            format!("{path} accepts {allowed} only"),
        )
        .into_response();
        r.headers_mut()
            .insert(ALLOW, HeaderValue::from_static(allowed));
        r
    }

    /// 429: a quota is spent; retry after `wait` (rounded up to seconds,
    /// in `Retry-After` and the body's `retry_after_secs`).
    pub fn too_many(
        code: &'static str,
        message: impl Into<String>,
        wait: std::time::Duration,
    ) -> Self {
        let secs = wait
            .as_secs()
            .saturating_add(u64::from(wait.subsec_nanos() > 0));
        Self::new(StatusCode::TOO_MANY_REQUESTS, code, message)
            .with("retry_after_secs", secs.max(1).into())
    }

    /// 400 for a query parameter.
    pub fn bad_param(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_parameter", message)
    }

    /// The JSON response. A 500's message is generic: what went wrong
    /// inside (storage paths, a panic's text) goes to the log, not to
    /// whoever asked.
    pub fn into_response(self) -> Response<Full<Bytes>> {
        let message = if self.status == StatusCode::INTERNAL_SERVER_ERROR {
            tracing::error!(code = self.code, detail = %self.message, "internal error");
            "internal error; the server logged the details".to_string()
        } else {
            self.message
        };
        let retry_after = self
            .details
            .as_ref()
            .and_then(|d| d.get("retry_after_secs"))
            .and_then(|v| v.as_u64());
        let mut error = serde_json::Map::new();
        error.insert("code".into(), self.code.into());
        error.insert("message".into(), message.into());
        error.extend(self.details.map(|d| *d).unwrap_or_default());
        let body = serde_json::json!({ "error": error });
        let mut r = Response::new(Full::new(Bytes::from(body.to_string())));
        *r.status_mut() = self.status;
        r.headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        // A tile that is missing now may exist in a second: no cache may
        // keep an error.
        r.headers_mut()
            .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            r.headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from_static("1"));
        }
        if let Some(secs) = retry_after {
            r.headers_mut().insert(RETRY_AFTER, HeaderValue::from(secs));
        }
        r
    }
}

impl From<ReadError> for ApiError {
    fn from(e: ReadError) -> Self {
        let (status, code) = match &e {
            ReadError::BeyondTree { .. } => (StatusCode::BAD_REQUEST, "tree_size_too_large"),
            ReadError::IndexOutOfRange { .. } => (StatusCode::BAD_REQUEST, "index_out_of_range"),
            ReadError::BadOldSize { .. } => (StatusCode::BAD_REQUEST, "bad_old_size"),
            ReadError::EmptyTree => (StatusCode::BAD_REQUEST, "empty_tree"),
            ReadError::LeafNotFound { .. } => (StatusCode::NOT_FOUND, "leaf_not_found"),
            ReadError::Storage(_) | ReadError::MissingEntries { .. } => {
                (StatusCode::INTERNAL_SERVER_ERROR, "storage_error")
            }
        };
        ApiError::new(status, code, e.to_string())
    }
}

impl From<SubmitError> for ApiError {
    fn from(e: SubmitError) -> Self {
        let (status, code) = match &e {
            SubmitError::Overloaded => (StatusCode::SERVICE_UNAVAILABLE, "overloaded"),
            SubmitError::Stopped => (StatusCode::SERVICE_UNAVAILABLE, "sequencer_stopped"),
            SubmitError::Storage(_) => (StatusCode::INTERNAL_SERVER_ERROR, "storage_error"),
            SubmitError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "storage_unavailable"),
            SubmitError::Unknown(_) => (StatusCode::SERVICE_UNAVAILABLE, "outcome_unknown"),
            SubmitError::Rejected(r) => {
                let status = StatusCode::from_u16(r.status).unwrap_or(StatusCode::BAD_REQUEST);
                let e = ApiError::new(status, r.code, r.message.clone());
                return match &r.field {
                    Some(f) => e.at(f.clone()),
                    None => e,
                };
            }
        };
        ApiError::new(status, code, e.to_string())
    }
}

impl From<TilePathError> for ApiError {
    fn from(e: TilePathError) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, "bad_tile_path", e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    fn body(r: Response<Full<Bytes>>) -> String {
        let bytes = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(r.into_body().collect())
            .unwrap()
            .to_bytes();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    #[test]
    fn a_500_keeps_its_details_out_of_the_answer() {
        let r = ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "storage_error",
            "RocksDB: IO error: /srv/secret/db/000123.sst: panicked at ...",
        )
        .into_response();
        assert_eq!(r.status(), 500);
        let text = body(r);
        assert!(
            text.contains("storage_error") && !text.contains("/srv/secret"),
            "{text}"
        );
        // Other statuses keep their message: it tells the client what to fix.
        let r = ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_parameter",
            "index must be a number",
        )
        .into_response();
        assert!(body(r).contains("index must be a number"));
    }
}
