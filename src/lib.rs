//! gatelog: a transparency log for access changes.
//!
//! The verifying side (always built): RFC 6962 Merkle maths ([`merkle`]),
//! C2SP signed notes ([`note`]), checkpoints ([`checkpoint`]), tiles
//! ([`tiles`]), proof bundles ([`tlog_proof`]), witness cosignatures
//! ([`cosignature`]), trust policies ([`policy`]) and split-view evidence
//! ([`equivocation`]). None of it does I/O.
//!
//! The serving side (feature `server`, on by default): RocksDB storage
//! ([`store`]), the opened log and its reads ([`log`]), the sequencer
//! ([`sequencer`]), the HTTP servers ([`server`]), [`metrics`], the
//! witness ([`witness`]) and the log's rounds of asking witnesses to
//! cosign ([`witnessing`]), and the gossiping [`monitor`].

pub mod audit;
#[cfg(feature = "cedar")]
pub mod cedar;
pub mod checkpoint;
#[cfg(any(feature = "server", feature = "verifier"))]
pub mod clock;
pub mod cosignature;
pub mod decimal;
pub mod entry;
pub mod equivocation;
pub mod gate;
pub mod merkle;
pub mod note;
pub mod policy;
pub mod tiles;
pub mod tlog_proof;

#[cfg(any(feature = "server", feature = "verifier"))]
pub mod client;
#[cfg(feature = "server")]
pub mod follower;
#[cfg(feature = "server")]
pub mod gatekeeper;
#[cfg(feature = "server")]
pub mod keyfile;
#[cfg(feature = "server")]
pub mod log;
#[cfg(feature = "server")]
pub mod metrics;
#[cfg(any(feature = "server", feature = "verifier"))]
pub mod mirror;
#[cfg(feature = "server")]
pub mod monitor;
#[cfg(feature = "server")]
pub mod sequencer;
#[cfg(feature = "server")]
pub mod server;
#[cfg(feature = "server")]
pub mod store;
#[cfg(feature = "server")]
pub mod witness;
#[cfg(feature = "server")]
pub mod witnessing;
