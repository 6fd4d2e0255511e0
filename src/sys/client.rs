//! A minimal HTTP/1.1 client for talking to gatelog services (a log, a
//! peer monitor, a witness): one request per connection, bounded answer,
//! timeout; `https://` URLs over TLS with the process's roots
//! ([`crate::sys::tls`]).

use std::time::Duration;

use anyhow::Context;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::{Method, Request, Uri};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

/// A connection to a service: plain TCP or TLS over it.
pub trait Connection: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Connection for T {}

/// Opens a connection to the service at `base` (`http://` or `https://`),
/// the TLS handshake included.
pub async fn connect(base: &Uri) -> Result<Box<dyn Connection>, String> {
    let host = base.host().ok_or("URL without host")?;
    let tls = base.scheme_str() == Some("https");
    let port = base.port_u16().unwrap_or(if tls { 443 } else { 80 });
    let stream = TcpStream::connect((host.trim_start_matches('[').trim_end_matches(']'), port))
        .await
        .map_err(|e| format!("connecting to {host}:{port}: {e}"))?;
    let _ = stream.set_nodelay(true);
    if tls {
        Ok(Box::new(crate::sys::tls::connect(host, stream).await?))
    } else {
        Ok(Box::new(stream))
    }
}

/// The largest answer read.
const MAX_BODY_BYTES: usize = 16 << 20;

/// Sends `method path` under `base` with `body`; the status and body.
pub async fn http_request(
    method: Method,
    base: &Uri,
    path: &str,
    body: Bytes,
    timeout: Duration,
) -> Result<(u16, Bytes), String> {
    let authority = base.authority().ok_or("URL without host")?.clone();
    let uri = format!("{}{path}", base.path().trim_end_matches('/'));
    let fetch = async {
        let stream = connect(base).await?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        let req = Request::builder()
            .method(method)
            .uri(uri)
            .header("host", authority.as_str())
            .body(Full::new(body))
            .map_err(|e| e.to_string())?;
        let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
        let status = resp.status().as_u16();
        let body = Limited::new(resp.into_body(), MAX_BODY_BYTES)
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        Ok((status, body))
    };
    tokio::time::timeout(timeout, fetch)
        .await
        .map_err(|_| format!("no answer from {authority} within {timeout:?}"))?
}

/// GET `path` under `base`; the status and body.
pub async fn http_get(base: &Uri, path: &str, timeout: Duration) -> Result<(u16, Bytes), String> {
    http_request(Method::GET, base, path, Bytes::new(), timeout).await
}

/// What a log's answer to an append proves, checked by [`verify_answer`].
#[derive(Debug)]
pub struct Proven {
    /// The entry's index in the log.
    pub index: u64,
    /// The checkpoint the inclusion proof reaches, signed by the log.
    pub checkpoint: crate::tlog::checkpoint::Checkpoint,
    /// The tlog-proof bundle, as served (for an auditor, offline).
    pub tlog_proof: String,
}

/// Checks a log's 200 answer to `POST /v1/entries` of `sent`: the
/// tlog-proof bundle's checkpoint is signed by `log` (and satisfies
/// `policy`, its witnesses' cosignatures), and its inclusion proof proves
/// the leaf of exactly `sent` (not, say, a refusal record the log wrote
/// about it). An executor acts only on an answer that passes.
pub fn verify_answer(
    answer: &serde_json::Value,
    sent: &[u8],
    log: &crate::tlog::note::NoteVerifier,
    policy: Option<&crate::tlog::policy::Policy>,
) -> Result<Proven, String> {
    use crate::tlog::tlog_proof::TlogProof;
    let text = answer["proof"]
        .as_str()
        .ok_or("no tlog-proof bundle in the answer")?;
    let bundle = TlogProof::parse(text).map_err(|e| format!("the tlog-proof bundle: {e}"))?;
    if let Some(policy) = policy {
        policy
            .verify(bundle.checkpoint.as_bytes())
            .map_err(|e| format!("the checkpoint does not satisfy the witness policy: {e}"))?;
    }
    let leaf = crate::tlog::merkle::leaf_hash(sent);
    let checkpoint = bundle.verify(&leaf, log).map_err(|e| {
        format!(
            "the proof does not prove this entry at index {}: {e}",
            bundle.index
        )
    })?;
    Ok(Proven {
        index: bundle.index,
        checkpoint,
        tlog_proof: text.to_string(),
    })
}

/// Whether `s` names a service by URL (rather than a file or directory).
pub fn is_url(s: &str) -> bool {
    s.starts_with("http://") || s.starts_with("https://")
}

/// Parses a service URL: `https://HOST[:PORT][/prefix]`, or
/// `http://HOST:PORT[/prefix]` (plain HTTP names its port, so a URL
/// missing its `s` does not quietly go to port 80).
pub fn parse_url(url: &str) -> anyhow::Result<Uri> {
    let uri: Uri = url.parse().with_context(|| format!("bad URL {url:?}"))?;
    let ok = uri.host().is_some()
        && match uri.scheme_str() {
            Some("https") => true,
            Some("http") => uri.port_u16().is_some(),
            _ => false,
        };
    if !ok {
        anyhow::bail!(
            "URL {url:?} must be https://HOST[:PORT][/prefix] or http://HOST:PORT[/prefix]"
        );
    }
    Ok(uri)
}

/// GET `path` under `base`, blocking (for the command-line tools); the
/// status and body.
pub fn fetch(base: &Uri, path: &str, timeout: Duration) -> anyhow::Result<(u16, Vec<u8>)> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let (status, body) = runtime
        .block_on(http_get(base, path, timeout))
        .map_err(|e| anyhow::anyhow!("GET {base}{path}: {e}"))?;
    Ok((status, body.to_vec()))
}
