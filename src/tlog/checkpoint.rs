//! C2SP tlog-checkpoint (c2sp.org/tlog-checkpoint): the note text
//! "<origin>\n<size>\n<base64 root>\n[extension lines]".
//!
//! Signing and verification are the signed note's job ([`crate::tlog::note`]);
//! this module only formats and parses the body.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use thiserror::Error;

use crate::tlog::decimal::parse_decimal;
use crate::tlog::merkle::Hash;
use crate::tlog::note::{Note, NoteError, NoteSigner, NoteVerifier};

/// The body of a checkpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    /// The log's origin line.
    pub origin: String,
    /// Number of leaves in the tree.
    pub size: u64,
    /// Root hash of the tree.
    pub root: Hash,
    /// Extension lines, without their newline.
    pub extensions: Vec<String>,
}

/// Why a checkpoint was rejected.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum CheckpointError {
    #[error("malformed checkpoint: {0}")]
    Malformed(&'static str),
    #[error(transparent)]
    Note(#[from] NoteError),
    #[error("checkpoint origin is {got:?}, want {want:?}")]
    WrongOrigin { got: String, want: String },
}

impl Checkpoint {
    /// The note text of this checkpoint.
    pub fn to_text(&self) -> String {
        let mut t = format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.size,
            B64.encode(self.root)
        );
        for e in &self.extensions {
            t.push_str(e);
            t.push('\n');
        }
        t
    }

    /// Parses checkpoint note text.
    pub fn parse(text: &str) -> Result<Checkpoint, CheckpointError> {
        let body = text
            .strip_suffix('\n')
            .ok_or(CheckpointError::Malformed("text must end with a newline"))?;
        let mut lines = body.split('\n');
        let origin = lines
            .next()
            .filter(|o| !o.is_empty())
            .ok_or(CheckpointError::Malformed("empty origin"))?;
        let size_line = lines
            .next()
            .ok_or(CheckpointError::Malformed("missing tree size"))?;
        let size = parse_decimal(size_line).ok_or(CheckpointError::Malformed(
            "tree size must be a decimal without leading zeros",
        ))?;
        let root_line = lines
            .next()
            .ok_or(CheckpointError::Malformed("missing root hash"))?;
        let root: Hash = B64
            .decode(root_line)
            .ok()
            .and_then(|r| r.try_into().ok())
            .ok_or(CheckpointError::Malformed(
                "root hash must be 32 bytes of base64",
            ))?;
        let extensions: Vec<String> = lines.map(str::to_string).collect();
        if extensions.iter().any(String::is_empty) {
            return Err(CheckpointError::Malformed("empty extension line"));
        }
        Ok(Checkpoint {
            origin: origin.to_string(),
            size,
            root,
            extensions,
        })
    }

    /// Signs this checkpoint with the log's key into a signed note.
    pub fn sign(&self, signer: &NoteSigner) -> Result<String, CheckpointError> {
        Ok(signer.sign(&self.to_text())?)
    }

    /// Opens a signed checkpoint: verifies the log's signature and that the
    /// origin is the log's key name, then parses the body.
    pub fn open(msg: &[u8], log: &NoteVerifier) -> Result<Checkpoint, CheckpointError> {
        let (note, _) = Note::open(msg, std::slice::from_ref(log))?;
        let cp = Checkpoint::parse(&note.text)?;
        if cp.origin != log.name() {
            return Err(CheckpointError::WrongOrigin {
                got: cp.origin,
                want: log.name().to_string(),
            });
        }
        Ok(cp)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_parse_round_trip_and_strictness() {
        let cp = Checkpoint {
            origin: "example.com/log".into(),
            size: 12,
            root: [9; 32],
            extensions: vec![],
        };
        assert_eq!(Checkpoint::parse(&cp.to_text()).unwrap(), cp);
        let root = B64.encode([9u8; 32]);
        assert!(Checkpoint::parse(&format!("o\n012\n{root}\n")).is_err());
        assert!(Checkpoint::parse(&format!("o\n-1\n{root}\n")).is_err());
        assert!(Checkpoint::parse("o\n1\nAAAA\n").is_err());
        assert!(Checkpoint::parse(&format!("o\n1\n{root}")).is_err());
    }

    #[test]
    fn open_checks_signature_and_origin() {
        let s = NoteSigner::from_seed("example.com/log", [3; 32]).unwrap();
        let cp = Checkpoint {
            origin: "example.com/log".into(),
            size: 1,
            root: [1; 32],
            extensions: vec![],
        };
        let signed = cp.sign(&s).unwrap();
        assert_eq!(
            Checkpoint::open(signed.as_bytes(), &s.verifier()).unwrap(),
            cp
        );
        let other = NoteSigner::from_seed("other.example/log", [3; 32]).unwrap();
        let wrong = Checkpoint {
            origin: "evil".into(),
            ..cp
        };
        let signed = other.sign(&wrong.to_text()).unwrap();
        assert!(Checkpoint::open(signed.as_bytes(), &other.verifier()).is_err());
    }
}
