//! The HTTP server: the write API (`POST /v1/entries`), the C2SP
//! tlog-tiles read API, proofs and metrics.
//!
//! The only module that imports hyper's server. It takes a bound listener
//! and a shutdown future, so tests can bind port 0.

mod error;
mod routes;

use std::future::Future;
use std::sync::Arc;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

pub use error::ApiError;

use crate::log::Log;
use crate::sequencer::SequencerHandle;

/// How entries are interpreted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EntryFormat {
    /// Any bytes are an entry: a generic transparency log.
    Opaque,
    /// gatelog's signed workflow entries.
    Gatelog,
}

/// Limits of the HTTP layer.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Largest request body accepted.
    pub max_body_bytes: usize,
    /// Largest entry accepted (at most 65535: entry bundles use u16 lengths).
    pub max_entry_bytes: usize,
    /// Most concurrent connections; further ones wait to be accepted.
    pub max_connections: usize,
    /// How entries are interpreted.
    pub entries: EntryFormat,
}

/// Everything a request handler needs.
pub struct App {
    /// The log.
    pub log: Arc<Log>,
    /// Where appends go.
    pub sequencer: SequencerHandle,
    /// Limits.
    pub config: ServerConfig,
}

/// Serves HTTP/1.1 on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    app: Arc<App>,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let permits = Arc::new(Semaphore::new(app.config.max_connections));
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            p = permits.clone().acquire_owned() => p.expect("semaphore never closed"),
            _ = &mut shutdown => return Ok(()),
        };
        let (stream, _) = tokio::select! {
            a = listener.accept() => match a {
                Ok(a) => a,
                // Out of file descriptors and the like: keep serving.
                Err(e) => {
                    eprintln!("gatelog: accept failed: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => return Ok(()),
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let app = app.clone();
                async move { Ok::<_, std::convert::Infallible>(routes::handle(&app, req).await) }
            });
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
            drop(permit);
        });
    }
}
