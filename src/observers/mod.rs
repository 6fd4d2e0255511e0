//! What watches a log from outside and checks it: the [`witness`] (cosigns
//! consistent checkpoints), the [`monitor`] (follows a log, gossips with
//! peers to catch a split view, replays entries with its [`follower`]) and
//! the [`mirror`] (a verified local copy of a log's tiles).
//!
//! Uses [`crate::tlog`], [`crate::access`], [`crate::sys`], and the
//! server's HTTP plumbing and storage for the witness's and monitor's own
//! small servers. Nothing below uses it. The mirror alone is on the
//! verifying side.

#[cfg(feature = "server")]
pub mod follower;
pub mod mirror;
#[cfg(feature = "server")]
pub mod monitor;
#[cfg(feature = "server")]
pub mod witness;
