//! C2SP tlog-policy (c2sp.org/tlog-policy): which logs and witnesses a
//! verifier trusts and which witnesses must cosign a checkpoint (the
//! quorum, possibly through nested k-of-n groups).
//!
//! Pure: no I/O. Names are compared as opaque byte strings.

use thiserror::Error;

use crate::tlog::checkpoint::Checkpoint;
use crate::tlog::cosignature::CosignatureVerifier;
use crate::tlog::decimal::parse_decimal;
use crate::tlog::note::{Note, NoteVerifier};

/// Most logs, witnesses and groups a policy may define, together.
pub const MAX_ENTRIES: usize = 256;

#[derive(Debug)]
enum Node {
    Witness(CosignatureVerifier),
    Group { k: usize, members: Vec<usize> },
}

/// A parsed policy.
#[derive(Debug)]
pub struct Policy {
    logs: Vec<NoteVerifier>,
    /// Witnesses and groups, in definition order, by name.
    nodes: Vec<(String, Node)>,
    /// The node that must witness a checkpoint; None for `quorum none`.
    quorum: Option<usize>,
}

/// Why a policy was rejected, or a checkpoint did not satisfy it.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum PolicyError {
    #[error("policy line {line}: {reason}")]
    Syntax { line: usize, reason: String },
    #[error("policy has no quorum line")]
    NoQuorum,
    #[error("checkpoint is not signed by any log in the policy")]
    UnknownLog,
    #[error("checkpoint lacks the quorum: cosigned by {0:?}")]
    NoQuorumReached(Vec<String>),
}

impl Policy {
    /// Parses a policy file.
    pub fn parse(text: &str) -> Result<Policy, PolicyError> {
        let mut p = Policy {
            logs: vec![],
            nodes: vec![],
            quorum: None,
        };
        let mut saw_quorum = false;
        for (i, raw) in text.split('\n').enumerate() {
            let line = i + 1;
            let err = |reason: &str| PolicyError::Syntax {
                line,
                reason: reason.to_string(),
            };
            if raw.bytes().any(|b| b < 0x20 && b != b'\t' || b == 0x7f) {
                return Err(err("control character"));
            }
            let words: Vec<&str> = raw.split([' ', '\t']).filter(|w| !w.is_empty()).collect();
            if words.is_empty() || words[0].starts_with('#') {
                continue;
            }
            if p.logs.len() + p.nodes.len() >= MAX_ENTRIES {
                return Err(err("too many definitions"));
            }
            let find = |p: &Policy, name: &str| p.nodes.iter().position(|(n, _)| n == name);
            match words[0] {
                "log" if (2..=3).contains(&words.len()) => {
                    let key = NoteVerifier::parse(words[1]).map_err(|e| err(&e.to_string()))?;
                    if p.logs.iter().any(|l| l.public_key() == key.public_key()) {
                        return Err(err("duplicate log key"));
                    }
                    p.logs.push(key);
                }
                "witness" if (3..=4).contains(&words.len()) => {
                    let key =
                        CosignatureVerifier::parse(words[2]).map_err(|e| err(&e.to_string()))?;
                    if words[1] == "none" || find(&p, words[1]).is_some() {
                        return Err(err("name already defined"));
                    }
                    let dup = p.nodes.iter().any(|(_, n)| matches!(n, Node::Witness(w) if w.public_key() == key.public_key()));
                    if dup {
                        return Err(err("duplicate witness key"));
                    }
                    p.nodes.push((words[1].to_string(), Node::Witness(key)));
                }
                "group" if words.len() >= 4 => {
                    if words[1] == "none" || find(&p, words[1]).is_some() {
                        return Err(err("name already defined"));
                    }
                    let mut members = Vec::new();
                    for m in &words[3..] {
                        let idx =
                            find(&p, m).ok_or_else(|| err(&format!("unknown member {m:?}")))?;
                        if members.contains(&idx) {
                            return Err(err(&format!("member {m:?} listed twice")));
                        }
                        members.push(idx);
                    }
                    let n = members.len();
                    let k = match words[2] {
                        "all" => n,
                        "any" => 1,
                        k => parse_decimal(k)
                            .map(|k| k as usize)
                            .filter(|k| (1..=n).contains(k))
                            .ok_or_else(|| err("threshold must be all, any or 1..=members"))?,
                    };
                    p.nodes
                        .push((words[1].to_string(), Node::Group { k, members }));
                }
                "quorum" if words.len() == 2 => {
                    if saw_quorum {
                        return Err(err("second quorum line"));
                    }
                    saw_quorum = true;
                    p.quorum = match words[1] {
                        "none" => None,
                        name => Some(
                            find(&p, name)
                                .ok_or_else(|| err(&format!("unknown quorum {name:?}")))?,
                        ),
                    };
                }
                _ => {
                    return Err(err(
                        "want log, witness, group or quorum with their arguments",
                    ))
                }
            }
        }
        if !saw_quorum {
            return Err(PolicyError::NoQuorum);
        }
        Ok(p)
    }

    /// Checks a signed checkpoint: signed by a listed log, cosigned to the
    /// quorum. Returns the checkpoint and the witnesses that cosigned it.
    pub fn verify(&self, note: &[u8]) -> Result<(Checkpoint, Vec<String>), PolicyError> {
        let cp = self
            .logs
            .iter()
            .find_map(|log| Checkpoint::open(note, log).ok())
            .ok_or(PolicyError::UnknownLog)?;
        let parsed = Note::parse(note).map_err(|_| PolicyError::UnknownLog)?;
        let mut witnessed = vec![false; self.nodes.len()];
        let mut cosigners = Vec::new();
        for (i, (name, node)) in self.nodes.iter().enumerate() {
            witnessed[i] = match node {
                Node::Witness(w) => {
                    let ok = parsed
                        .signatures
                        .iter()
                        .any(|s| w.verify(&parsed.text, s).is_some());
                    if ok {
                        cosigners.push(name.clone());
                    }
                    ok
                }
                // Members are defined earlier, so already evaluated.
                Node::Group { k, members } => {
                    members.iter().filter(|&&m| witnessed[m]).count() >= *k
                }
            };
        }
        match self.quorum {
            Some(q) if !witnessed[q] => Err(PolicyError::NoQuorumReached(cosigners)),
            _ => Ok((cp, cosigners)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tlog::cosignature::CosignatureSigner;
    use crate::tlog::note::NoteSigner;

    #[test]
    fn nested_groups_decide_the_quorum() {
        let log = NoteSigner::from_seed("log.example/a", [1; 32]).unwrap();
        let ws: Vec<CosignatureSigner> = (0..4)
            .map(|i| CosignatureSigner::from_seed(&format!("w{i}.example"), [10 + i; 32]).unwrap())
            .collect();
        let policy = format!(
            "# two of X, and Y\nlog {}\n\twitness X0 {}\nwitness X1 {} http://x1\nwitness X2 {}\ngroup X 2 X0 X1 X2\nwitness Y {}\ngroup XY all X Y\nquorum XY\n",
            log.verifier().to_vkey(),
            ws[0].verifier().to_vkey(),
            ws[1].verifier().to_vkey(),
            ws[2].verifier().to_vkey(),
            ws[3].verifier().to_vkey(),
        );
        let p = Policy::parse(&policy).unwrap();
        let text = "log.example/a\n3\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n";
        let signed = log.sign(text).unwrap();
        let with = |idx: &[usize]| {
            let mut n = signed.clone();
            for &i in idx {
                n.push_str(&ws[i].cosign(text, 1));
            }
            n
        };
        assert!(p.verify(with(&[0, 1, 3]).as_bytes()).is_ok());
        assert!(matches!(
            p.verify(with(&[0, 1]).as_bytes()),
            Err(PolicyError::NoQuorumReached(_))
        ));
        assert!(matches!(
            p.verify(with(&[0, 3]).as_bytes()),
            Err(PolicyError::NoQuorumReached(_))
        ));
        let other = NoteSigner::from_seed("log.example/a", [2; 32]).unwrap();
        assert_eq!(
            p.verify(other.sign(text).unwrap().as_bytes()).unwrap_err(),
            PolicyError::UnknownLog
        );
        for bad in [
            "quorum X\n",
            "witness A bad\nquorum none\n",
            "log x\nquorum none\n",
            "group G 1 nobody\nquorum none\n",
            "quorum none\nquorum none\n",
            "witness A x\ngroup G +1 A\nquorum G\n",
            "",
        ] {
            assert!(Policy::parse(bad).is_err(), "{bad:?}");
        }
        let dup = format!(
            "witness A {0}\nwitness B {0}\nquorum none\n",
            ws[0].verifier().to_vkey()
        );
        assert!(Policy::parse(&dup).is_err());
    }
}
