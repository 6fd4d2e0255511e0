//! Conformance: every RFC 6962 proof vector (accept the good, reject every
//! bad one) and the C2SP signed-note example.

mod common;

use std::path::Path;

use gatelog::tlog::merkle::{verify_consistency, verify_inclusion, Hash};
use gatelog::tlog::note::{Note, NoteVerifier};

fn json_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).expect("read vectors dir") {
        let p = e.unwrap().path();
        if p.is_dir() {
            json_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "json") {
            out.push(p);
        }
    }
}

fn bytes(v: &serde_json::Value) -> Option<Vec<u8>> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(v.as_str()?)
        .ok()
}

fn hash(v: &serde_json::Value) -> Option<Hash> {
    bytes(v)?.try_into().ok()
}

/// The proof hashes; None if any is not a 32-byte hash (the case is then
/// malformed and must be rejected).
fn proof(v: &serde_json::Value) -> Option<Vec<Hash>> {
    match v {
        serde_json::Value::Null => Some(vec![]),
        serde_json::Value::Array(a) => a.iter().map(hash).collect(),
        _ => None,
    }
}

fn run_cases(kind: &str, check: impl Fn(&serde_json::Value) -> bool) -> usize {
    let Some(dir) = common::vectors_dir() else {
        return 0;
    };
    let mut files = Vec::new();
    json_files(&dir.join("rfc6962-merkle").join(kind), &mut files);
    assert!(!files.is_empty(), "no {kind} vectors found");
    let mut failures = Vec::new();
    for f in &files {
        let v: serde_json::Value = serde_json::from_slice(&std::fs::read(f).unwrap()).unwrap();
        let want_err = v["wantErr"].as_bool().expect("wantErr");
        let accepted = check(&v);
        if accepted == want_err {
            failures.push(format!("{} (wantErr {want_err})", f.display()));
        }
    }
    assert!(
        failures.is_empty(),
        "{} {kind} vectors failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    files.len()
}

#[test]
fn rfc6962_inclusion_vectors() {
    let n = run_cases("inclusion", |v| {
        let (Some(leaf), Some(root), Some(proof)) =
            (hash(&v["leafHash"]), hash(&v["root"]), proof(&v["proof"]))
        else {
            return false;
        };
        let (index, size) = (
            v["leafIdx"].as_u64().unwrap(),
            v["treeSize"].as_u64().unwrap(),
        );
        verify_inclusion(index, size, &leaf, &proof, &root).is_ok()
    });
    eprintln!("{n} inclusion vectors checked");
}

#[test]
fn rfc6962_consistency_vectors() {
    let n = run_cases("consistency", |v| {
        let (Some(root1), Some(root2), Some(proof)) =
            (bytes(&v["root1"]), bytes(&v["root2"]), proof(&v["proof"]))
        else {
            return false;
        };
        let (s1, s2) = (v["size1"].as_u64().unwrap(), v["size2"].as_u64().unwrap());
        verify_consistency(s1, s2, &proof, &root1, &root2).is_ok()
    });
    eprintln!("{n} consistency vectors checked");
}

#[test]
fn signed_note_example_verifies_and_every_changed_byte_fails() {
    let Some(dir) = common::vectors_dir() else {
        return;
    };
    let note = std::fs::read(dir.join("signed-note/example.note")).unwrap();
    let vkey = std::fs::read_to_string(dir.join("signed-note/example.vkey")).unwrap();
    let verifier = NoteVerifier::parse(vkey.trim()).expect("example verifier key");
    assert_eq!(verifier.key_id(), 0x530d903a);
    assert_eq!(verifier.to_vkey(), vkey.trim());
    let (opened, names) =
        Note::open(&note, std::slice::from_ref(&verifier)).expect("example note verifies");
    assert_eq!(opened.text, "This is an example message.\n");
    assert_eq!(names, vec!["example.com/foo".to_string()]);
    // Every byte: text, dash, key name, key ID, signature, newlines.
    for i in 0..note.len() {
        let mut bad = note.clone();
        bad[i] ^= 0x01;
        assert!(
            Note::open(&bad, std::slice::from_ref(&verifier)).is_err(),
            "note with byte {i} changed was accepted"
        );
    }
    // A changed verifier key (name, ID or key) must not verify the note.
    let vkey = vkey.trim();
    for i in 0..vkey.len() {
        let mut bad = vkey.as_bytes().to_vec();
        bad[i] ^= 0x01;
        let Ok(bad) = String::from_utf8(bad) else {
            continue;
        };
        if let Ok(v) = NoteVerifier::parse(&bad) {
            assert!(
                Note::open(&note, &[v]).is_err(),
                "changed key {bad} verified the note"
            );
        }
    }
}
