//! The process's contact with its machine, kept small and in one place so
//! that the pure parts ([`crate::tlog`], [`crate::access`]) never need it:
//! the wall clock ([`clock`]), secret key files ([`keyfile`]), the HTTP
//! client ([`client`]) and the services' logs ([`logs`]).
//!
//! Uses only [`crate::tlog`]. The server, observers and auditor use it.

#[cfg(any(feature = "server", feature = "verifier"))]
pub mod client;
#[cfg(any(feature = "server", feature = "verifier"))]
pub mod clock;
#[cfg(any(feature = "server", feature = "verifier"))]
pub mod keyfile;
#[cfg(feature = "server")]
pub mod logs;
#[cfg(any(feature = "server", feature = "verifier"))]
pub mod tls;

/// Resolves on SIGINT or SIGTERM: how a service is asked to stop.
#[cfg(feature = "server")]
pub async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("installing SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
