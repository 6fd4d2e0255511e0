//! `gatelog verify checkpoint | inclusion | consistency` against a real
//! log: exit 0 when it verifies, 1 when it does not (tampered entry,
//! forged checkpoint, another key), 2 on unusable arguments.

mod common;

use std::path::Path;

use common::{get_ok, run_gatelog, Server};
use gatelog::tlog::checkpoint::Checkpoint;
use gatelog::tlog::note::NoteSigner;

/// Runs `gatelog verify ARGS...`; its exit code and stdout.
fn verify(args: &[&str]) -> (i32, String) {
    let mut all = vec!["verify"];
    all.extend_from_slice(args);
    run_gatelog(&all)
}

fn write(dir: &Path, name: &str, data: &[u8]) -> String {
    let path = dir.join(name);
    std::fs::write(&path, data).unwrap();
    path.to_str().unwrap().to_string()
}

#[test]
fn verify_commands_accept_the_truth_and_refuse_the_rest() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let log = Server::start(&dir.join("log"), &[]);
    let url = format!("http://{}", log.addr);
    let vkey = log.vkey.as_str();

    let answer = log.append(b"grant alice read");
    let proof = write(
        dir,
        "p.tlog-proof",
        answer["proof"].as_str().unwrap().as_bytes(),
    );
    let entry = write(dir, "entry", b"grant alice read");
    let tampered = write(dir, "tampered", b"grant alice admin");
    let old = write(dir, "old", &get_ok(log.addr, "/checkpoint").body);
    for i in 0..20u32 {
        log.append(&i.to_be_bytes());
    }
    let new = write(dir, "new", &get_ok(log.addr, "/checkpoint").body);

    // Checkpoints: from a file and from the log; another key fails.
    assert_eq!(verify(&["checkpoint", "--vkey", vkey, &new]).0, 0);
    let (code, out) = verify(&["checkpoint", "--vkey", vkey, &url]);
    assert_eq!(code, 0);
    assert!(out.contains("size 21"), "{out}");
    let other = NoteSigner::from_seed(vkey.split('+').next().unwrap(), [9; 32]).unwrap();
    let other_vkey = other.verifier().to_vkey();
    assert_eq!(verify(&["checkpoint", "--vkey", &other_vkey, &new]).0, 1);
    assert_eq!(verify(&["checkpoint", "--vkey", "not-a-key", &new]).0, 2);
    assert_eq!(
        verify(&["checkpoint", "--vkey", vkey, "/no/such/file"]).0,
        2
    );

    // Inclusion, offline: the entry is in; a changed byte is not.
    assert_eq!(
        verify(&["inclusion", "--vkey", vkey, "--entry", &entry, &proof]).0,
        0
    );
    assert_eq!(
        verify(&["inclusion", "--vkey", vkey, "--entry", &tampered, &proof]).0,
        1
    );
    assert_eq!(
        verify(&[
            "inclusion",
            "--vkey",
            &other_vkey,
            "--entry",
            &entry,
            &proof
        ])
        .0,
        1
    );

    // Consistency, with the proof from the log.
    assert_eq!(
        verify(&["consistency", "--vkey", vkey, &old, &new, "--log", &url]).0,
        0
    );
    assert_eq!(
        verify(&["consistency", "--vkey", vkey, &new, &old, "--log", &url]).0,
        2
    );
    // A checkpoint the log's key signed over another history.
    let key_text = std::fs::read_to_string(dir.join("log/log.key")).unwrap();
    let log_key = NoteSigner::parse(key_text.trim()).unwrap();
    let real = Checkpoint::open(&std::fs::read(&new).unwrap(), &log_key.verifier()).unwrap();
    let forged = Checkpoint {
        root: [7; 32],
        ..real
    }
    .sign(&log_key)
    .unwrap();
    let forged = write(dir, "forged", forged.as_bytes());
    let (code, out) = verify(&["consistency", "--vkey", vkey, &old, &forged, "--log", &url]);
    assert_eq!(code, 1);
    assert!(out.contains("does not extend"), "{out}");
}
