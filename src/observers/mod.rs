//! What watches a log from outside and checks it: the [`witness`] (cosigns
//! consistent checkpoints), the [`monitor`] (follows a log, gossips with
//! peers to catch a split view, replays entries with its [`follower`]),
//! the [`mirror`] (a verified local copy of a log's tiles), and the
//! [`spill`] file where the audit's and monitor's replay keeps open chains'
//! entries.
//!
//! Uses [`crate::tlog`], [`crate::access`], [`crate::sys`], and the
//! server's HTTP plumbing and storage for the witness's and monitor's own
//! small servers. Nothing below uses it. The mirror and the spill file
//! are on the verifying side.

#[cfg(feature = "server")]
pub mod follower;
pub mod mirror;
#[cfg(feature = "server")]
pub mod monitor;
pub mod spill;
#[cfg(feature = "server")]
pub mod witness;
