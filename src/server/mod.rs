//! The log server: everything that writes a log.
//!
//! - [`store`]: RocksDB, behind the contract of what is durable when a
//!   commit returns.
//! - [`log`]: the opened log, its key, its reads (tiles, proofs).
//! - [`sequencer`]: batches appends, one fsync and one checkpoint a batch.
//! - [`gatekeeper`]: the gate in front of the sequencer; [`statements`]:
//!   its statements, read back from storage.
//! - [`witnessing`]: the log's rounds of asking witnesses to cosign.
//! - [`http`]: the HTTP API (`serve_x` maps HTTP; the logic is below it).
//! - [`metrics`]: Prometheus counters and histograms.
//! - [`run`]: `gatelog serve`: all of the above, started and stopped.
//!
//! Uses [`crate::tlog`], [`crate::access`] and [`crate::sys`]. The
//! observers may use its HTTP plumbing and storage; the pure parts and the
//! auditor never use it.

pub mod gatekeeper;
pub mod http;
pub mod log;
pub mod metrics;
pub mod run;
pub mod sequencer;
pub mod statements;
pub mod store;
pub mod witnessing;
