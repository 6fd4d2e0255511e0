//! Evidence of a split view: two checkpoints signed by one log key that
//! cannot both be true, plus the consistency proof the log served between
//! them, if any. Checkable offline with only the log's verifier key.
//!
//! Proven when the two have the same size and different roots, or when
//! the proof leads to the larger checkpoint's root but implies a different
//! root for the smaller one's size. Anything else is reported but is not
//! offline evidence (the log may simply have failed to answer).
//!
//! File format (text; lengths make it unambiguous although notes contain
//! blank lines):
//! ```text
//! gatelog-equivocation v1
//! proof <n>
//! <n base64 hashes, one per line>
//! checkpoint <byte length>
//! <signed note>
//! checkpoint <byte length>
//! <signed note>
//! ```

use thiserror::Error;

use crate::tlog::checkpoint::{Checkpoint, CheckpointError};
use crate::tlog::merkle::{consistency_roots, hash_from_base64, push_base64_lines, Hash};
use crate::tlog::note::NoteVerifier;

const HEADER: &str = "gatelog-equivocation v1\n";

/// Two checkpoints and the proof attempt between them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Equivocation {
    /// A signed checkpoint.
    pub a: String,
    /// Another signed checkpoint by the same key.
    pub b: String,
    /// The consistency proof served from the smaller to the larger size
    /// (empty if none was served).
    pub proof: Vec<Hash>,
}

/// What the evidence shows.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Same size, different roots.
    SameSizeDifferentRoots { size: u64 },
    /// The proof leads to the larger tree's root and shows that tree's
    /// prefix of the smaller size has another root.
    ProofShowsOtherPrefix { old_size: u64, new_size: u64 },
}

/// Why evidence does not prove a split view.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum EquivocationError {
    #[error("malformed evidence file: {0}")]
    Malformed(&'static str),
    #[error("checkpoint {which}: {source}")]
    Checkpoint {
        which: char,
        source: CheckpointError,
    },
    #[error("the two checkpoints are identical in size and root: no split view")]
    Same,
    #[error("not provable offline: {0}")]
    Unproven(String),
}

impl Equivocation {
    /// Encodes the evidence file.
    pub fn encode(&self) -> String {
        let mut out = String::from(HEADER);
        out.push_str(&format!("proof {}\n", self.proof.len()));
        push_base64_lines(&mut out, &self.proof);
        for note in [&self.a, &self.b] {
            out.push_str(&format!("checkpoint {}\n{note}", note.len()));
        }
        out
    }

    /// Parses an evidence file.
    pub fn parse(text: &str) -> Result<Equivocation, EquivocationError> {
        let bad = EquivocationError::Malformed;
        let mut rest = text
            .strip_prefix(HEADER)
            .ok_or(bad("missing header line"))?;
        let line = |rest: &mut &str| -> Result<String, EquivocationError> {
            let (l, r) = rest.split_once('\n').ok_or(bad("truncated"))?;
            *rest = r;
            Ok(l.to_string())
        };
        let n: usize = line(&mut rest)?
            .strip_prefix("proof ")
            .and_then(|n| n.parse().ok())
            .filter(|&n| n <= 64)
            .ok_or(bad("want \"proof <n>\""))?;
        let mut proof = Vec::with_capacity(n);
        for _ in 0..n {
            let h = hash_from_base64(&line(&mut rest)?)
                .ok_or(bad("proof line is not a base64 hash"))?;
            proof.push(h);
        }
        let mut notes = Vec::new();
        for _ in 0..2 {
            let len: usize = line(&mut rest)?
                .strip_prefix("checkpoint ")
                .and_then(|n| n.parse().ok())
                .ok_or(bad("want \"checkpoint <length>\""))?;
            let note = rest
                .get(..len)
                .ok_or(bad("checkpoint shorter than its length"))?;
            notes.push(note.to_string());
            rest = &rest[len..];
        }
        if !rest.is_empty() {
            return Err(bad("trailing data"));
        }
        let b = notes.pop().expect("two notes");
        let a = notes.pop().expect("two notes");
        Ok(Equivocation { a, b, proof })
    }

    /// Checks the evidence against the log's key.
    pub fn verify(&self, log: &NoteVerifier) -> Result<Verdict, EquivocationError> {
        let open = |which, note: &str| {
            Checkpoint::open(note.as_bytes(), log)
                .map_err(|source| EquivocationError::Checkpoint { which, source })
        };
        let (a, b) = (open('A', &self.a)?, open('B', &self.b)?);
        if a.size == b.size {
            return if a.root != b.root {
                Ok(Verdict::SameSizeDifferentRoots { size: a.size })
            } else {
                Err(EquivocationError::Same)
            };
        }
        let (small, large) = if a.size < b.size { (a, b) } else { (b, a) };
        if small.size == 0 {
            return Err(EquivocationError::Unproven(
                "every tree extends the empty tree".into(),
            ));
        }
        if small.size.is_power_of_two() {
            return Err(EquivocationError::Unproven(format!(
                "a proof from size {} (a power of two) does not imply its root",
                small.size
            )));
        }
        let (implied_old, implied_new) =
            consistency_roots(small.size, large.size, &self.proof, None)
                .map_err(|e| EquivocationError::Unproven(format!("the proof is unusable: {e}")))?;
        if implied_new != large.root {
            return Err(EquivocationError::Unproven(
                "the proof does not lead to the larger checkpoint's root".into(),
            ));
        }
        if implied_old == small.root {
            return Err(EquivocationError::Unproven(
                "the proof shows the two checkpoints are consistent".into(),
            ));
        }
        Ok(Verdict::ProofShowsOtherPrefix {
            old_size: small.size,
            new_size: large.size,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tlog::merkle::{leaf_hash, LeafHashes, Prover};
    use crate::tlog::note::NoteSigner;

    fn signed(key: &NoteSigner, leaves: &[Hash], size: u64) -> String {
        let root = Prover::new(LeafHashes(leaves)).root(size).unwrap();
        Checkpoint {
            origin: key.name().into(),
            size,
            root,
            extensions: vec![],
        }
        .sign(key)
        .unwrap()
    }

    #[test]
    fn split_views_are_proven_and_consistent_pairs_are_not() {
        let key = NoteSigner::from_seed("log.example/x", [3; 32]).unwrap();
        let one: Vec<Hash> = (0..20u8).map(|i| leaf_hash(&[i])).collect();
        let two: Vec<Hash> = (0..20u8).map(|i| leaf_hash(&[i, 1])).collect();
        let v = key.verifier();

        let same = Equivocation {
            a: signed(&key, &one, 7),
            b: signed(&key, &two, 7),
            proof: vec![],
        };
        let parsed = Equivocation::parse(&same.encode()).unwrap();
        assert_eq!(parsed, same);
        assert_eq!(
            parsed.verify(&v),
            Ok(Verdict::SameSizeDifferentRoots { size: 7 })
        );

        // View two's log proves its size-7 prefix differs from view one's.
        let proof = Prover::new(LeafHashes(&two)).consistency(7, 20).unwrap();
        let grown = Equivocation {
            a: signed(&key, &one, 7),
            b: signed(&key, &two, 20),
            proof,
        };
        assert_eq!(
            grown.verify(&v),
            Ok(Verdict::ProofShowsOtherPrefix {
                old_size: 7,
                new_size: 20
            })
        );

        // An honest pair is not evidence, nor is an identical one.
        let proof = Prover::new(LeafHashes(&one)).consistency(7, 20).unwrap();
        let honest = Equivocation {
            a: signed(&key, &one, 7),
            b: signed(&key, &one, 20),
            proof,
        };
        assert!(matches!(
            honest.verify(&v),
            Err(EquivocationError::Unproven(_))
        ));
        let twice = Equivocation {
            a: signed(&key, &one, 7),
            b: signed(&key, &one, 7),
            proof: vec![],
        };
        assert_eq!(twice.verify(&v), Err(EquivocationError::Same));
        // Another key's checkpoints prove nothing about this log.
        let other = NoteSigner::from_seed("log.example/x", [4; 32]).unwrap();
        let forged = Equivocation {
            a: signed(&other, &one, 7),
            b: signed(&key, &two, 7),
            proof: vec![],
        };
        assert!(matches!(
            forged.verify(&v),
            Err(EquivocationError::Checkpoint { which: 'A', .. })
        ));
    }
}
