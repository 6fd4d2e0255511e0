//! The log's HTTP API: the write API (`POST /v1/entries`), its C2SP
//! tlog-tiles read API, proofs and metrics; and the HTTP plumbing
//! ([`serve_http`], the response helpers, [`ApiError`]) that the witness's
//! and monitor's own servers use too.
//!
//! The only module that imports hyper's server. It takes a bound listener
//! and a shutdown future, so tests can bind port 0.

pub mod access;
pub mod access_log;
pub(crate) mod chains;
mod deadline;
mod error;
pub mod quota;
pub(crate) mod routes;
pub mod signatures;
pub mod writers;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{Notify, Semaphore};

pub use error::ApiError;

use crate::server::log::Log;
use crate::server::sequencer::SequencerHandle;
use crate::server::witnessing::Witnessing;

/// Limits of the HTTP layer.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Largest request body accepted.
    pub max_body_bytes: usize,
    /// Largest entry accepted; never more than [`crate::tlog::tiles::MAX_ENTRY_BYTES`].
    pub max_entry_bytes: usize,
    /// Connections: limits, deadlines, TLS. Its read timeout also bounds
    /// the wait for a request's body.
    pub http: HttpLimits,
    /// Longest an append waits for the witness quorum.
    pub witness_timeout: Duration,
}

/// Everything a request handler needs.
pub struct App {
    /// The log.
    pub log: Arc<Log>,
    /// Where appends go.
    pub sequencer: SequencerHandle,
    /// Cosignatures gathered from witnesses, if any are configured.
    pub witnessing: Option<Arc<Witnessing>>,
    /// Limits.
    pub config: ServerConfig,
    /// The gate, when the log holds gatelog entries (`--entries gatelog`).
    pub gate: Option<Gate>,
    /// Who may append.
    pub writers: std::sync::RwLock<Arc<writers::Writers>>,
    /// How fast each address and each writer may append.
    pub quotas: quota::Quotas,
}

/// What the HTTP layer needs of the gate.
pub struct Gate {
    /// The gate state, read for chains and obligations.
    pub state: crate::server::gatekeeper::SharedState,
    /// Stateless limits checked before an entry queues.
    pub limits: crate::access::entry::Limits,
    /// The signing keys, for the checks before the gate.
    pub keys: crate::server::gatekeeper::SharedKeys,
    /// Where the HTTP workers' signature checks are batched.
    pub signatures: signatures::BatchVerifier,
    /// Rule 7 for dry runs (`POST /v1/gate/check`), beside the
    /// sequencer's own engine.
    pub dry_runs: std::sync::Mutex<Box<dyn crate::access::gate::PolicyEngine + Send>>,
    /// How often the log records its time (a dry run is judged at the time
    /// a submission now would be).
    pub log_time_resolution_ms: i64,
}

/// Serves the log's HTTP API on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    app: Arc<App>,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let limits = app.config.http.clone();
    let handler = move |req| {
        let app = app.clone();
        async move { routes::handle(&app, req).await }
    };
    serve_http(listener, limits, handler, shutdown).await
}

/// Connection limits, and TLS, shared by every gatelog HTTP service.
#[derive(Clone)]
pub struct HttpLimits {
    /// Most concurrent connections; further ones wait to be accepted.
    pub max_connections: usize,
    /// Most concurrent connections from one IP address; more are closed.
    pub max_connections_per_client: usize,
    /// Longest wait for a request's headers (and for a TLS handshake).
    pub read_timeout: Duration,
    /// Longest a write may wait for the client to read.
    pub write_timeout: Duration,
    /// Longest a connection lives; a response still being written then is cut.
    pub connection_lifetime: Duration,
    /// HTTPS when set; plain HTTP otherwise.
    pub tls: Option<tokio_rustls::TlsAcceptor>,
    /// Whether clients are asked for certificates (mutual TLS).
    pub client_certificates: bool,
}

impl HttpLimits {
    /// The URL scheme the service answers on.
    pub fn scheme(&self) -> &'static str {
        if self.tls.is_some() {
            "https"
        } else {
            "http"
        }
    }
}

impl std::fmt::Debug for HttpLimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpLimits")
            .field("max_connections", &self.max_connections)
            .field(
                "max_connections_per_client",
                &self.max_connections_per_client,
            )
            .field("read_timeout", &self.read_timeout)
            .field("write_timeout", &self.write_timeout)
            .field("connection_lifetime", &self.connection_lifetime)
            .field("tls", &self.tls.is_some())
            .field("client_certificates", &self.client_certificates)
            .finish()
    }
}

/// Serves HTTP/1.1 on `listener` with `handler` until `shutdown` resolves.
pub async fn serve_http<H, F>(
    listener: TcpListener,
    limits: HttpLimits,
    handler: H,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()>
where
    H: Fn(Request<Incoming>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<Full<Bytes>>> + Send + 'static,
{
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let per_client = Arc::new(ClientSlots::default());
    let open = Arc::new(OpenConnections::default());
    tokio::pin!(shutdown);
    loop {
        // At the cap, ask the oldest connection to close: at once if it
        // is idle between requests, else after the answer in progress.
        let permit = match permits.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                open.shed_oldest();
                tokio::select! {
                    p = permits.clone().acquire_owned() => p.expect("semaphore never closed"),
                    _ = &mut shutdown => return Ok(()),
                }
            }
        };
        let (stream, peer) = tokio::select! {
            a = listener.accept() => match a {
                Ok(a) => a,
                // Out of file descriptors and the like: keep serving.
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => return Ok(()),
        };
        let Some(slot) = per_client.take(peer.ip(), limits.max_connections_per_client) else {
            tracing::debug!(%peer, "too many connections from this client; closed");
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let handler = handler.clone();
        let limits = limits.clone();
        let (id, shed) = open.add();
        let open = open.clone();
        tokio::spawn(async move {
            let stream =
                deadline::Deadlines::new(stream, limits.write_timeout, limits.connection_lifetime);
            match &limits.tls {
                None => serve_connection(stream, peer, None, &limits, handler, shed).await,
                Some(acceptor) => {
                    let handshake = acceptor.accept(stream);
                    match tokio::time::timeout(limits.read_timeout, handshake).await {
                        Ok(Ok(tls)) => {
                            let cert = tls
                                .get_ref()
                                .1
                                .peer_certificates()
                                .and_then(|c| c.first())
                                .map(|c| access_log::ClientCert(crate::sys::tls::fingerprint(c)));
                            serve_connection(tls, peer, cert, &limits, handler, shed).await
                        }
                        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                }
            }
            open.remove(id);
            drop(slot);
            drop(permit);
        });
    }
}

/// The open connections, oldest first, each with the signal that asks it
/// to close; at most the connection cap of them.
#[derive(Default)]
struct OpenConnections(std::sync::Mutex<(u64, std::collections::BTreeMap<u64, Arc<Shed>>)>);

/// How a connection is asked to close, and whether it may be: only once
/// it has answered a request (a keep-alive connection between requests),
/// never one whose first request is still on its way in, which the
/// header timeout governs.
#[derive(Default)]
struct Shed {
    asked: Notify,
    answered: std::sync::atomic::AtomicBool,
}

impl OpenConnections {
    fn add(&self) -> (u64, Arc<Shed>) {
        let mut open = self.0.lock().expect("open connections");
        let id = open.0;
        open.0 += 1;
        let shed = Arc::new(Shed::default());
        open.1.insert(id, shed.clone());
        (id, shed)
    }

    fn remove(&self, id: u64) {
        self.0.lock().expect("open connections").1.remove(&id);
    }

    /// Asks the oldest connection that has answered a request (and was
    /// not asked yet) to close.
    fn shed_oldest(&self) {
        use std::sync::atomic::Ordering::Relaxed;
        let mut open = self.0.lock().expect("open connections");
        let oldest = open
            .1
            .iter()
            .find(|(_, s)| s.answered.load(Relaxed))
            .map(|(id, _)| *id);
        if let Some(shed) = oldest.and_then(|id| open.1.remove(&id)) {
            shed.asked.notify_one();
        }
    }
}

/// Serves HTTP/1.1 requests on one accepted (and, for HTTPS, handshaken)
/// connection until it closes.
async fn serve_connection<IO, H, F>(
    io: IO,
    peer: std::net::SocketAddr,
    cert: Option<access_log::ClientCert>,
    limits: &HttpLimits,
    handler: H,
    shed: Arc<Shed>,
) where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    H: Fn(Request<Incoming>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<Full<Bytes>>> + Send + 'static,
{
    let answering = shed.clone();
    let service = service_fn(move |mut req: Request<Incoming>| {
        req.extensions_mut().insert(access_log::Peer(peer));
        if let Some(cert) = &cert {
            req.extensions_mut().insert(cert.clone());
        }
        let response = handler(req);
        let answering = answering.clone();
        async move {
            let response = response.await;
            answering
                .answered
                .store(true, std::sync::atomic::Ordering::Relaxed);
            Ok::<_, std::convert::Infallible>(response)
        }
    });
    let connection = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.read_timeout)
        .serve_connection(TokioIo::new(io), service);
    tokio::pin!(connection);
    // Asked to close (shed at the connection cap, or at its lifetime): at
    // once when idle, else after the answer in progress.
    let ended = tokio::select! {
        ended = connection.as_mut() => ended,
        _ = shed.asked.notified() => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
        _ = tokio::time::sleep(limits.connection_lifetime) => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(e) = ended {
        tracing::debug!(%peer, error = %e, "connection ended with an error");
    }
}

/// Open connections per client address.
#[derive(Default)]
struct ClientSlots(std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, usize>>);

/// One client's connection; gives its slot back when dropped.
struct ClientSlot {
    slots: Arc<ClientSlots>,
    ip: std::net::IpAddr,
}

impl ClientSlots {
    /// A slot for `ip`, unless it holds `max` already.
    fn take(self: &Arc<Self>, ip: std::net::IpAddr, max: usize) -> Option<ClientSlot> {
        let mut open = self.0.lock().expect("client slots");
        let n = open.entry(ip).or_insert(0);
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(ClientSlot {
            slots: self.clone(),
            ip,
        })
    }
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        let mut open = self.slots.0.lock().expect("client slots");
        if let Some(n) = open.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                // Only clients with open connections are kept.
                open.remove(&self.ip);
            }
        }
    }
}
