//! C2SP tlog-proof (c2sp.org/tlog-proof): the offline inclusion-proof
//! bundle "c2sp.org/tlog-proof@v1", optional "extra", "index", the proof
//! hashes, a blank line, then the signed checkpoint verbatim.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use thiserror::Error;

use crate::tlog::checkpoint::{Checkpoint, CheckpointError};
use crate::tlog::decimal::parse_decimal;
use crate::tlog::merkle::{
    hash_from_base64, push_base64_lines, verify_inclusion, Hash, ProofError,
};
use crate::tlog::note::NoteVerifier;

const HEADER: &str = "c2sp.org/tlog-proof@v1";

/// A parsed tlog-proof bundle.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlogProof {
    /// Unauthenticated application data.
    pub extra: Option<Vec<u8>>,
    /// Index of the entry in the log.
    pub index: u64,
    /// Inclusion proof, leaf to root.
    pub proof: Vec<Hash>,
    /// The signed checkpoint, verbatim.
    pub checkpoint: String,
}

/// Why a proof bundle was rejected.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum TlogProofError {
    #[error("malformed tlog-proof: {0}")]
    Malformed(&'static str),
    #[error("checkpoint in tlog-proof: {0}")]
    Checkpoint(#[from] CheckpointError),
    #[error("inclusion proof in tlog-proof: {0}")]
    Proof(#[from] ProofError),
}

impl TlogProof {
    /// Encodes the bundle.
    pub fn encode(&self) -> String {
        let mut out = String::with_capacity(64 + self.proof.len() * 45 + self.checkpoint.len());
        out.push_str(HEADER);
        out.push('\n');
        if let Some(extra) = &self.extra {
            out.push_str("extra ");
            out.push_str(&B64.encode(extra));
            out.push('\n');
        }
        out.push_str(&format!("index {}\n", self.index));
        push_base64_lines(&mut out, &self.proof);
        out.push('\n');
        out.push_str(&self.checkpoint);
        out
    }

    /// Parses a bundle without verifying it.
    pub fn parse(text: &str) -> Result<TlogProof, TlogProofError> {
        let (head, checkpoint) = text.split_once("\n\n").ok_or(TlogProofError::Malformed(
            "no blank line before the checkpoint",
        ))?;
        let mut lines = head.split('\n').peekable();
        if lines.next() != Some(HEADER) {
            return Err(TlogProofError::Malformed(
                "first line must be c2sp.org/tlog-proof@v1",
            ));
        }
        let extra = match lines.peek().and_then(|l| l.strip_prefix("extra ")) {
            Some(b64) => {
                let e = B64
                    .decode(b64)
                    .map_err(|_| TlogProofError::Malformed("extra is not base64"))?;
                lines.next();
                Some(e)
            }
            None => None,
        };
        let index_str = lines
            .next()
            .and_then(|l| l.strip_prefix("index "))
            .ok_or(TlogProofError::Malformed("missing index line"))?;
        let index = parse_decimal(index_str).ok_or(TlogProofError::Malformed(
            "index must be a decimal without leading zeros",
        ))?;
        let proof = lines
            .map(|l| {
                hash_from_base64(l).ok_or(TlogProofError::Malformed(
                    "proof line is not a base64 SHA-256 hash",
                ))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(TlogProof {
            extra,
            index,
            proof,
            checkpoint: checkpoint.to_string(),
        })
    }

    /// Verifies the bundle for an entry with `leaf` hash against the log's
    /// key: the checkpoint's signature, then the inclusion proof.
    pub fn verify(&self, leaf: &Hash, log: &NoteVerifier) -> Result<Checkpoint, TlogProofError> {
        let cp = Checkpoint::open(self.checkpoint.as_bytes(), log)?;
        verify_inclusion(self.index, cp.size, leaf, &self.proof, &cp.root)?;
        Ok(cp)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tlog::merkle::{leaf_hash, LeafHashes, Prover};
    use crate::tlog::note::NoteSigner;

    #[test]
    fn bundle_round_trips_and_verifies() {
        let s = NoteSigner::from_seed("example.com/log", [5; 32]).unwrap();
        let leaves: Vec<Hash> = (0..5u8).map(|i| leaf_hash(&[i])).collect();
        let mut p = Prover::new(LeafHashes(&leaves));
        let cp = Checkpoint {
            origin: "example.com/log".into(),
            size: 5,
            root: p.root(5).unwrap(),
            extensions: vec![],
        };
        let bundle = TlogProof {
            extra: Some(b"ctx".to_vec()),
            index: 3,
            proof: p.inclusion(3, 5).unwrap(),
            checkpoint: cp.sign(&s).unwrap(),
        };
        let parsed = TlogProof::parse(&bundle.encode()).unwrap();
        assert_eq!(parsed, bundle);
        assert_eq!(parsed.verify(&leaves[3], &s.verifier()).unwrap(), cp);
        assert!(parsed.verify(&leaves[2], &s.verifier()).is_err());
        assert!(TlogProof::parse("c2sp.org/tlog-proof@v1\nindex 01\n\nx").is_err());
    }
}
