//! The access log: one line per submission (`POST /v1/entries`), saying
//! who sent it (address, signer), what it was (kind, chain, size) and
//! what became of it (appended at an index, a duplicate, refused into a
//! record, rejected with a code), at tracing target `gatelog::access`,
//! level info. `GATELOG_LOG=info,gatelog::access=off` turns it off.

use std::net::SocketAddr;
use std::time::Instant;

use super::ApiError;

/// The client's address, put on each request by the connection loop.
#[derive(Clone, Copy, Debug)]
pub struct Peer(pub SocketAddr);

/// The SHA-256 (hex) of the client's TLS certificate, when it sent one
/// that the server's client CA issued.
#[derive(Clone, Debug)]
pub struct ClientCert(pub String);

/// What the handler learned of one submission.
#[derive(Debug, Default)]
pub(super) struct Submission {
    pub bytes: usize,
    /// The authenticated writer (token or client certificate), if any.
    pub writer: String,
    /// Empty for opaque entries or entries that did not decode.
    pub signer: String,
    pub kind: &'static str,
    pub chain: String,
    pub index: Option<u64>,
    /// `appended`, `duplicate` or `refused`; empty when rejected.
    pub outcome: &'static str,
}

/// Writes the line for `s`, which ended in `error` if it was rejected.
pub(super) fn record(
    peer: Option<Peer>,
    s: &Submission,
    error: Option<&ApiError>,
    started: Instant,
) {
    let peer = peer.map(|p| p.0.to_string()).unwrap_or_default();
    let (outcome, status) = match error {
        // A refusal is answered with an error, but the entry's record is in.
        Some(e) if e.code == "gate_refused" => ("refused", e.status.as_u16()),
        Some(e) => (e.code, e.status.as_u16()),
        None => (s.outcome, 200),
    };
    tracing::info!(
        target: "gatelog::access",
        peer = %peer,
        status,
        outcome,
        index = s.index,
        writer = %s.writer,
        signer = %s.signer,
        kind = s.kind,
        chain = %s.chain,
        bytes = s.bytes,
        micros = started.elapsed().as_micros() as u64,
        "submission"
    );
}
