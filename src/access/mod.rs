//! The access model: what an entry is and which entries the gate admits.
//!
//! - [`entry`]: the signed statement schema (protobuf, proto3 JSON), its
//!   stateless validation and signature checks.
//! - [`gate`]: the gate's state (identities, delegations, chains,
//!   obligations) and its rules, decided the same way by the server, the
//!   monitor and the audit.
//! - [`cedar`]: rule 7, the organisation's Cedar policy (feature `cedar`).
//! - [`replay`]: the verified replay of a whole log (signatures, rules,
//!   drift, the root), which the audit runs and the monitor can run.
//!
//! Pure: times are arguments, entries arrive as bytes; no I/O, no clock, no
//! async. It uses only [`crate::tlog`]; the server, observers and auditor
//! use it, never the other way round.

#[cfg(feature = "cedar")]
pub mod cedar;
pub mod entry;
pub mod gate;
pub mod replay;
