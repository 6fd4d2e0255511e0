//! The process's contact with its machine, kept small and in one place so
//! that the pure parts ([`crate::tlog`], [`crate::access`]) never need it:
//! the wall clock ([`clock`]), secret key files ([`keyfile`]) and the HTTP
//! client ([`client`]).
//!
//! Uses only [`crate::tlog`]. The server, observers and auditor use it.

#[cfg(any(feature = "server", feature = "verifier"))]
pub mod client;
#[cfg(any(feature = "server", feature = "verifier"))]
pub mod clock;
#[cfg(feature = "server")]
pub mod keyfile;
