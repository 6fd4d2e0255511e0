//! C2SP signed-note (c2sp.org/signed-note) with Ed25519 signatures: note
//! parsing, signing and verification, verifier keys and private keys.
//!
//! In scope: signature type 0x01 (Ed25519 over the note text). Other
//! signature types are carried through as unverified signatures.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use ed25519_dalek::{Signature, Signer as _, SigningKey, Verifier as _, VerifyingKey};
use sha2::{Digest, Sha256};
use thiserror::Error;

/// Signature type byte for Ed25519 in signed notes.
pub const ALG_ED25519: u8 = 0x01;
/// The em dash and space that start every signature line.
const SIG_PREFIX: &str = "\u{2014} ";
/// A note with more signature lines than this is rejected unread.
pub const MAX_SIGNATURES: usize = 100;

/// Why a note or key was rejected.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum NoteError {
    #[error("malformed note: {0}")]
    Malformed(&'static str),
    #[error("malformed key: {0}")]
    MalformedKey(&'static str),
    #[error("invalid key name {0:?}: must be non-empty, without spaces or '+'")]
    BadKeyName(String),
    #[error("signature by {name} does not verify")]
    InvalidSignature { name: String },
    #[error("no signature by a known key")]
    NoKnownSignature,
}

/// Whether `name` may name a key: non-empty, no whitespace, no '+'.
pub fn is_valid_key_name(name: &str) -> bool {
    !name.is_empty() && !name.chars().any(|c| c.is_whitespace() || c == '+')
}

/// Key ID: the first 4 bytes of SHA-256(name || "\n" || type || public key).
pub fn key_id(name: &str, alg: u8, public_key: &[u8]) -> u32 {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update(b"\n");
    h.update([alg]);
    h.update(public_key);
    let d = h.finalize();
    u32::from_be_bytes([d[0], d[1], d[2], d[3]])
}

/// Splits `<name>+<key ID hex>+<base64(0x01 || 32 bytes)>`, the shape of
/// both verifier keys and (after "PRIVATE+KEY+") private keys.
pub(crate) fn parse_key_string(s: &str, alg: u8) -> Result<(&str, u32, [u8; 32]), NoteError> {
    let mut parts = s.splitn(3, '+');
    let (Some(name), Some(id_hex), Some(key_b64)) = (parts.next(), parts.next(), parts.next())
    else {
        return Err(NoteError::MalformedKey("want <name>+<key ID>+<key>"));
    };
    if !is_valid_key_name(name) {
        return Err(NoteError::BadKeyName(name.to_string()));
    }
    let id = (id_hex.len() == 8)
        .then(|| u32::from_str_radix(id_hex, 16).ok())
        .flatten()
        .ok_or(NoteError::MalformedKey("key ID must be 8 hex digits"))?;
    let raw = B64
        .decode(key_b64)
        .map_err(|_| NoteError::MalformedKey("key is not base64"))?;
    match raw.split_first() {
        Some((&a, key)) if a == alg && key.len() == 32 => {
            Ok((name, id, key.try_into().expect("32 bytes")))
        }
        _ => Err(NoteError::MalformedKey(
            "wrong key type or length (want type byte || 32 bytes)",
        )),
    }
}

/// Formats `<name>+<key ID hex>+<base64(alg || key)>`.
pub(crate) fn key_string(name: &str, id: u32, alg: u8, key: &[u8]) -> String {
    let mut raw = vec![alg];
    raw.extend_from_slice(key);
    format!("{name}+{id:08x}+{}", B64.encode(raw))
}

/// A key that verifies Ed25519 note signatures.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NoteVerifier {
    name: String,
    id: u32,
    key: VerifyingKey,
}

impl NoteVerifier {
    /// Parses a verifier key string `<name>+<key ID hex>+<base64(0x01 || key)>`.
    pub fn parse(vkey: &str) -> Result<Self, NoteError> {
        let (name, id, key) = parse_key_string(vkey, ALG_ED25519)?;
        if key_id(name, ALG_ED25519, &key) != id {
            return Err(NoteError::MalformedKey("key ID does not match the key"));
        }
        let key = VerifyingKey::from_bytes(&key)
            .map_err(|_| NoteError::MalformedKey("not a valid Ed25519 point"))?;
        Ok(NoteVerifier {
            name: name.to_string(),
            id,
            key,
        })
    }

    /// The key name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The key ID.
    pub fn key_id(&self) -> u32 {
        self.id
    }

    /// The raw Ed25519 public key.
    pub fn public_key(&self) -> [u8; 32] {
        self.key.to_bytes()
    }

    /// The verifier key string.
    pub fn to_vkey(&self) -> String {
        key_string(&self.name, self.id, ALG_ED25519, self.key.as_bytes())
    }

    /// Whether `sig` is this key's signature over `text`.
    pub fn verify(&self, text: &[u8], sig: &[u8]) -> bool {
        match Signature::from_slice(sig) {
            Ok(s) => self.key.verify(text, &s).is_ok(),
            Err(_) => false,
        }
    }
}

/// An Ed25519 signing key with its name and key ID: what note signers
/// and witness cosigners share (they differ in key type and message).
pub(crate) struct NamedSigningKey {
    pub(crate) name: String,
    pub(crate) id: u32,
    pub(crate) key: SigningKey,
}

impl NamedSigningKey {
    /// A key named `name` of type `alg` with this 32-byte seed.
    pub(crate) fn from_seed(name: &str, seed: [u8; 32], alg: u8) -> Result<Self, NoteError> {
        if !is_valid_key_name(name) {
            return Err(NoteError::BadKeyName(name.to_string()));
        }
        let key = SigningKey::from_bytes(&seed);
        let id = key_id(name, alg, key.verifying_key().as_bytes());
        Ok(NamedSigningKey {
            name: name.to_string(),
            id,
            key,
        })
    }

    /// Parses `PRIVATE+KEY+<name>+<id hex>+<base64(alg || seed)>` (the
    /// format of Go's `note.GenerateKey`).
    pub(crate) fn parse(skey: &str, alg: u8) -> Result<Self, NoteError> {
        let rest = skey
            .trim_end()
            .strip_prefix("PRIVATE+KEY+")
            .ok_or(NoteError::MalformedKey(
                "private key must start PRIVATE+KEY+",
            ))?;
        let (name, id, seed) = parse_key_string(rest, alg)?;
        let key = Self::from_seed(name, seed, alg)?;
        if key.id != id {
            return Err(NoteError::MalformedKey("key ID does not match the key"));
        }
        Ok(key)
    }

    /// The private key string (secret: store with mode 0600).
    pub(crate) fn private_key_string(&self, alg: u8) -> String {
        let key = key_string(&self.name, self.id, alg, self.key.as_bytes());
        format!("PRIVATE+KEY+{key}")
    }

    /// A signature line: "— name base64(id || prefix || sig(message))\n".
    pub(crate) fn signature_line(&self, prefix: &[u8], message: &[u8]) -> String {
        let sig = self.key.sign(message);
        let mut raw = self.id.to_be_bytes().to_vec();
        raw.extend_from_slice(prefix);
        raw.extend_from_slice(&sig.to_bytes());
        format!("{SIG_PREFIX}{} {}\n", self.name, B64.encode(raw))
    }
}

/// A key that signs notes with Ed25519.
pub struct NoteSigner(NamedSigningKey);

impl NoteSigner {
    /// A signer named `name` with the given 32-byte Ed25519 seed.
    pub fn from_seed(name: &str, seed: [u8; 32]) -> Result<Self, NoteError> {
        NamedSigningKey::from_seed(name, seed, ALG_ED25519).map(NoteSigner)
    }

    /// Parses a private key string `PRIVATE+KEY+<name>+<id hex>+<base64(0x01 || seed)>`
    /// (the format of Go's `note.GenerateKey`).
    pub fn parse(skey: &str) -> Result<Self, NoteError> {
        NamedSigningKey::parse(skey, ALG_ED25519).map(NoteSigner)
    }

    /// The private key string (secret: store with mode 0600).
    pub fn to_private_key_string(&self) -> String {
        self.0.private_key_string(ALG_ED25519)
    }

    /// The key name.
    pub fn name(&self) -> &str {
        &self.0.name
    }

    /// The matching verifier.
    pub fn verifier(&self) -> NoteVerifier {
        NoteVerifier {
            name: self.0.name.clone(),
            id: self.0.id,
            key: self.0.key.verifying_key(),
        }
    }

    /// The key ID (see [`key_id`]).
    pub fn key_id(&self) -> u32 {
        self.0.id
    }

    /// A bare Ed25519 signature over `message`, for signing that is not a
    /// note (e.g. log entries).
    pub fn sign_bytes(&self, message: &[u8]) -> [u8; 64] {
        self.0.key.sign(message).to_bytes()
    }

    /// The signature line ("— name base64(id || sig)\n") over `text`.
    pub fn signature_line(&self, text: &str) -> String {
        self.0.signature_line(&[], text.as_bytes())
    }

    /// Signs `text` (which must be valid note text) into a signed note.
    pub fn sign(&self, text: &str) -> Result<String, NoteError> {
        check_text(text.as_bytes())?;
        Ok(format!("{text}\n{}", self.signature_line(text)))
    }
}

/// One signature line of a note.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NoteSignature {
    /// Key name.
    pub name: String,
    /// Key ID.
    pub id: u32,
    /// Signature bytes after the key ID.
    pub sig: Vec<u8>,
}

/// A parsed note: its text and every signature line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Note {
    /// The signed text, ending in "\n".
    pub text: String,
    /// Signatures in the order they appear.
    pub signatures: Vec<NoteSignature>,
}

fn check_text(text: &[u8]) -> Result<(), NoteError> {
    if text.is_empty() || *text.last().unwrap() != b'\n' {
        return Err(NoteError::Malformed("text must end with a newline"));
    }
    if text.iter().any(|&b| b < 0x20 && b != b'\n') {
        return Err(NoteError::Malformed("control character in note"));
    }
    if text.windows(2).any(|w| w == b"\n\n") {
        return Err(NoteError::Malformed("blank line inside note text"));
    }
    Ok(())
}

impl Note {
    /// Parses a signed note without verifying any signature.
    pub fn parse(msg: &[u8]) -> Result<Note, NoteError> {
        let msg = std::str::from_utf8(msg).map_err(|_| NoteError::Malformed("not UTF-8"))?;
        if msg.bytes().any(|b| b < 0x20 && b != b'\n') {
            return Err(NoteError::Malformed("control character in note"));
        }
        let split = msg
            .rfind("\n\n")
            .ok_or(NoteError::Malformed("no blank line before signatures"))?;
        let (text, sigs) = (&msg[..split + 1], &msg[split + 2..]);
        if !sigs.ends_with('\n') {
            return Err(NoteError::Malformed(
                "signature block must end with a newline",
            ));
        }
        let mut signatures = Vec::new();
        for line in sigs[..sigs.len() - 1].split('\n') {
            if signatures.len() == MAX_SIGNATURES {
                return Err(NoteError::Malformed("too many signatures"));
            }
            let line = line
                .strip_prefix(SIG_PREFIX)
                .ok_or(NoteError::Malformed("signature line must start with '— '"))?;
            let (name, b64) = line
                .split_once(' ')
                .ok_or(NoteError::Malformed("signature line without a space"))?;
            if !is_valid_key_name(name) {
                return Err(NoteError::BadKeyName(name.to_string()));
            }
            let raw = B64
                .decode(b64)
                .map_err(|_| NoteError::Malformed("signature is not base64"))?;
            if raw.len() < 5 {
                return Err(NoteError::Malformed("signature too short"));
            }
            signatures.push(NoteSignature {
                name: name.to_string(),
                id: u32::from_be_bytes([raw[0], raw[1], raw[2], raw[3]]),
                sig: raw[4..].to_vec(),
            });
        }
        Ok(Note {
            text: text.to_string(),
            signatures,
        })
    }

    /// Parses a note and checks its signatures against `known`: every
    /// signature by a known key must verify, and at least one must exist.
    /// Signatures by unknown keys are ignored. Returns the note and the
    /// names of the keys that verified it.
    pub fn open(msg: &[u8], known: &[NoteVerifier]) -> Result<(Note, Vec<String>), NoteError> {
        let note = Note::parse(msg)?;
        let mut verified: Vec<String> = Vec::new();
        for s in &note.signatures {
            let Some(v) = known.iter().find(|v| v.name == s.name && v.id == s.id) else {
                continue;
            };
            if !v.verify(note.text.as_bytes(), &s.sig) {
                return Err(NoteError::InvalidSignature {
                    name: s.name.clone(),
                });
            }
            if !verified.contains(&s.name) {
                verified.push(s.name.clone());
            }
        }
        if verified.is_empty() {
            return Err(NoteError::NoKnownSignature);
        }
        Ok((note, verified))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_then_open_round_trips() {
        let s = NoteSigner::from_seed("example.com/log", [7; 32]).unwrap();
        let msg = s.sign("hello\nworld\n").unwrap();
        let (note, names) = Note::open(msg.as_bytes(), &[s.verifier()]).unwrap();
        assert_eq!(note.text, "hello\nworld\n");
        assert_eq!(names, vec!["example.com/log".to_string()]);
        let v = NoteVerifier::parse(&s.verifier().to_vkey()).unwrap();
        assert_eq!(v, s.verifier());
        let back = NoteSigner::parse(&s.to_private_key_string()).unwrap();
        assert_eq!(back.verifier(), s.verifier());
    }

    #[test]
    fn tampered_text_fails_and_unknown_key_is_not_enough() {
        let s = NoteSigner::from_seed("a", [1; 32]).unwrap();
        let other = NoteSigner::from_seed("b", [2; 32]).unwrap();
        let msg = s.sign("x\n").unwrap().replacen("x\n", "y\n", 1);
        assert!(matches!(
            Note::open(msg.as_bytes(), &[s.verifier()]),
            Err(NoteError::InvalidSignature { .. })
        ));
        let msg = s.sign("x\n").unwrap();
        assert_eq!(
            Note::open(msg.as_bytes(), &[other.verifier()]),
            Err(NoteError::NoKnownSignature)
        );
    }

    #[test]
    fn bad_names_and_text_are_refused() {
        assert!(NoteSigner::from_seed("has space", [1; 32]).is_err());
        assert!(NoteSigner::from_seed("has+plus", [1; 32]).is_err());
        let s = NoteSigner::from_seed("a", [1; 32]).unwrap();
        assert!(s.sign("no newline").is_err());
        assert!(s.sign("a\n\nb\n").is_err());
        assert!(s.sign("tab\there\n").is_err());
    }
}
