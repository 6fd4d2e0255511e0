//! gatelog: a transparency log for access changes.
//!
//! The crate is built in parts, each a folder, each allowed to use only the
//! parts listed before it (`tests/layering.rs` checks this):
//!
//! - [`tlog`]: the transparency-log primitives (RFC 6962 Merkle maths, C2SP
//!   signed notes, checkpoints, tiles, cosignatures, tlog-proof, trust
//!   policies, split-view evidence). Pure: no I/O.
//! - [`access`]: the access model (the entry schema and its validation, the
//!   gate's state and rules, Cedar, and the verified replay of a log that
//!   the audit and the monitor run). Pure: no I/O.
//! - [`sys`]: the process's contact with its machine, shared by everything
//!   above: the wall clock, key files, the HTTP client.
//! - [`server`] (feature `server`): the log server (RocksDB storage, the
//!   opened log, the sequencer, the gatekeeper, witnessing, HTTP, metrics).
//! - [`observers`]: what watches a log from outside: the witness, the
//!   monitor and its follower (feature `server`), and the mirror.
//! - [`audit`] (feature `verifier`): the auditor's tools: the audit and its
//!   evidence package, and the one-off verifications.
//!
//! `src/cli/` (the `gatelog` binary) parses arguments and makes one call
//! into these parts per command.
//!
//! The verifying side (`--no-default-features`, or `--features verifier`
//! for the auditor's binary) has `tlog`, `access`, the client half of `sys`
//! and the mirror: no RocksDB, no HTTP server.

pub mod access;
#[cfg(feature = "verifier")]
pub mod audit;
#[cfg(any(feature = "server", feature = "verifier"))]
pub mod observers;
#[cfg(feature = "server")]
pub mod server;
pub mod sys;
pub mod tlog;
