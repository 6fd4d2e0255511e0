//! The transparency-log primitives: RFC 6962 Merkle maths ([`merkle`]),
//! C2SP signed notes ([`note`]), checkpoints ([`checkpoint`]), tiles
//! ([`tiles`]), tlog-proof bundles ([`tlog_proof`]), witness cosignatures
//! ([`cosignature`]), trust policies ([`policy`]) and split-view evidence
//! ([`equivocation`]).
//!
//! Pure: no I/O, no clock, no async. It uses no other part of the crate;
//! every other part may use it. It knows nothing of access changes, so it
//! is the piece another transparency log could take whole.

pub mod checkpoint;
pub mod cosignature;
pub mod decimal;
pub mod equivocation;
pub mod merkle;
pub mod note;
pub mod policy;
pub mod tiles;
pub mod tlog_proof;
