//! C2SP tlog-cosignature (c2sp.org/tlog-cosignature), Ed25519 type 0x04:
//! a witness's timestamped statement that a checkpoint is the largest
//! consistent tree it has seen for a log. Also the request body of C2SP
//! tlog-witness `add-checkpoint`.
//!
//! Pure: no I/O. The ML-DSA-44 type is out of scope.

use ed25519_dalek::{Signature, Verifier as _, VerifyingKey};
use thiserror::Error;

use crate::tlog::decimal::parse_decimal;
use crate::tlog::merkle::{hash_from_base64, push_base64_lines, Hash};
use crate::tlog::note::{
    key_id, key_string, parse_key_string, NamedSigningKey, NoteError, NoteSignature,
};

/// Key type byte of Ed25519 cosignatures (cosignature/v1).
pub const ALG_COSIGNATURE_V1: u8 = 0x04;
/// Most consistency-proof lines an add-checkpoint request may carry.
pub const MAX_PROOF_LINES: usize = 63;

/// The message a v1 cosignature signs.
fn signed_message(checkpoint_text: &str, timestamp: u64) -> String {
    format!("cosignature/v1\ntime {timestamp}\n{checkpoint_text}")
}

/// A witness's verifier key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CosignatureVerifier {
    name: String,
    id: u32,
    key: VerifyingKey,
}

impl CosignatureVerifier {
    /// Parses `<name>+<key ID hex>+<base64(0x04 || key)>`.
    pub fn parse(vkey: &str) -> Result<Self, NoteError> {
        let (name, id, key) = parse_key_string(vkey, ALG_COSIGNATURE_V1)?;
        if key_id(name, ALG_COSIGNATURE_V1, &key) != id {
            return Err(NoteError::MalformedKey("key ID does not match the key"));
        }
        let key = VerifyingKey::from_bytes(&key)
            .map_err(|_| NoteError::MalformedKey("not a valid Ed25519 point"))?;
        Ok(CosignatureVerifier {
            name: name.to_string(),
            id,
            key,
        })
    }

    /// The witness's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The raw Ed25519 public key.
    pub fn public_key(&self) -> [u8; 32] {
        self.key.to_bytes()
    }

    /// The verifier key string.
    pub fn to_vkey(&self) -> String {
        key_string(&self.name, self.id, ALG_COSIGNATURE_V1, self.key.as_bytes())
    }

    /// If `sig` is this witness's cosignature of `checkpoint_text`, its
    /// timestamp.
    pub fn verify(&self, checkpoint_text: &str, sig: &NoteSignature) -> Option<u64> {
        if sig.name != self.name || sig.id != self.id || sig.sig.len() != 8 + 64 {
            return None;
        }
        let timestamp = u64::from_be_bytes(sig.sig[..8].try_into().expect("8 bytes"));
        let signature = Signature::from_slice(&sig.sig[8..]).ok()?;
        let message = signed_message(checkpoint_text, timestamp);
        self.key
            .verify(message.as_bytes(), &signature)
            .is_ok()
            .then_some(timestamp)
    }
}

/// A witness's signing key.
pub struct CosignatureSigner(NamedSigningKey);

impl CosignatureSigner {
    /// A cosigner named `name` with this 32-byte Ed25519 seed.
    pub fn from_seed(name: &str, seed: [u8; 32]) -> Result<Self, NoteError> {
        NamedSigningKey::from_seed(name, seed, ALG_COSIGNATURE_V1).map(CosignatureSigner)
    }

    /// Parses `PRIVATE+KEY+<name>+<id hex>+<base64(0x04 || seed)>`.
    pub fn parse(skey: &str) -> Result<Self, NoteError> {
        NamedSigningKey::parse(skey, ALG_COSIGNATURE_V1).map(CosignatureSigner)
    }

    /// The private key string (secret: store with mode 0600).
    pub fn to_private_key_string(&self) -> String {
        self.0.private_key_string(ALG_COSIGNATURE_V1)
    }

    /// The witness's name.
    pub fn name(&self) -> &str {
        &self.0.name
    }

    /// The matching verifier.
    pub fn verifier(&self) -> CosignatureVerifier {
        CosignatureVerifier {
            name: self.0.name.clone(),
            id: self.0.id,
            key: self.0.key.verifying_key(),
        }
    }

    /// The cosignature line ("— name base64(id || timestamp || sig)\n")
    /// over `checkpoint_text` at `timestamp` (POSIX seconds).
    pub fn cosign(&self, checkpoint_text: &str, timestamp: u64) -> String {
        let message = signed_message(checkpoint_text, timestamp);
        self.0
            .signature_line(&timestamp.to_be_bytes(), message.as_bytes())
    }
}

/// An `add-checkpoint` request body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AddCheckpoint {
    /// Size of the checkpoint the client believes the witness last cosigned.
    pub old_size: u64,
    /// Consistency proof from `old_size` to the new checkpoint.
    pub proof: Vec<Hash>,
    /// The signed checkpoint, verbatim.
    pub checkpoint: String,
}

/// Why an add-checkpoint body was rejected (answered with 400).
#[derive(Debug, Error, PartialEq, Eq)]
#[error("malformed add-checkpoint request: {0}")]
pub struct AddCheckpointError(pub &'static str);

impl AddCheckpoint {
    /// Encodes the request body.
    pub fn encode(&self) -> String {
        let mut out = format!("old {}\n", self.old_size);
        push_base64_lines(&mut out, &self.proof);
        out.push('\n');
        out.push_str(&self.checkpoint);
        out
    }

    /// Parses a request body.
    pub fn parse(body: &[u8]) -> Result<AddCheckpoint, AddCheckpointError> {
        let body = std::str::from_utf8(body).map_err(|_| AddCheckpointError("not UTF-8"))?;
        let (head, checkpoint) = body
            .split_once("\n\n")
            .ok_or(AddCheckpointError("no blank line before the checkpoint"))?;
        let mut lines = head.split('\n');
        let old = lines
            .next()
            .and_then(|l| l.strip_prefix("old "))
            .ok_or(AddCheckpointError("first line must be \"old <size>\""))?;
        let old_size = parse_decimal(old).ok_or(AddCheckpointError(
            "old size must be a decimal without leading zeros",
        ))?;
        let proof = lines
            .map(|l| {
                hash_from_base64(l).ok_or(AddCheckpointError(
                    "proof line is not a base64 SHA-256 hash",
                ))
            })
            .collect::<Result<Vec<_>, _>>()?;
        if proof.len() > MAX_PROOF_LINES {
            return Err(AddCheckpointError("more than 63 proof lines"));
        }
        Ok(AddCheckpoint {
            old_size,
            proof,
            checkpoint: checkpoint.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tlog::note::Note;

    #[test]
    fn cosignature_round_trip_and_tampering() {
        let w = CosignatureSigner::from_seed("witness.example/w1", [4; 32]).unwrap();
        let v = CosignatureVerifier::parse(&w.verifier().to_vkey()).unwrap();
        assert_eq!(v, w.verifier());
        let text = "example.com/log\n5\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n";
        let note = format!("{text}\n{}", w.cosign(text, 1_700_000_000));
        let sig = &Note::parse(note.as_bytes()).unwrap().signatures[0];
        assert_eq!(v.verify(text, sig), Some(1_700_000_000));
        assert_eq!(
            v.verify(
                "example.com/log\n6\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n",
                sig
            ),
            None
        );
        let mut later = sig.clone();
        later.sig[7] ^= 1;
        assert_eq!(v.verify(text, &later), None);
        // A cosigner key is not a note key: type 0x04, not 0x01.
        assert!(crate::tlog::note::NoteVerifier::parse(&v.to_vkey()).is_err());
        assert!(CosignatureSigner::parse(&w.to_private_key_string()).is_ok());
    }

    #[test]
    fn add_checkpoint_bodies_parse_strictly() {
        let req = AddCheckpoint {
            old_size: 20,
            proof: vec![[1; 32], [2; 32]],
            checkpoint: "o\n21\nAAAA\n\n— o AAAA\n".into(),
        };
        assert_eq!(AddCheckpoint::parse(req.encode().as_bytes()).unwrap(), req);
        for bad in [
            "old 01\n\nx",
            "old -1\n\nx",
            "new 1\n\nx",
            "old 1\nnotbase64\n\nx",
            "old 1\n",
        ] {
            assert!(AddCheckpoint::parse(bad.as_bytes()).is_err(), "{bad:?}");
        }
        let many = format!(
            "old 1\n{}\nx",
            "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=\n".repeat(64)
        );
        assert!(AddCheckpoint::parse(many.as_bytes()).is_err());
    }
}
