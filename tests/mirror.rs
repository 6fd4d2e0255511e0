//! `gatelog mirror` against a real log: a verified copy laid out like the
//! tlog-tiles API, resumable, that `verify consistency --log DIR` can use;
//! a changed byte in the mirror or a checkpoint under another key is
//! caught with exit 1.

mod common;

use std::path::Path;

use common::{get_ok, run_gatelog, Server};
use gatelog::tlog::note::NoteSigner;

fn append_n(log: &Server, from: u32, n: u32) {
    for i in from..from + n {
        log.append(format!("entry {i}").as_bytes());
    }
}

#[test]
fn mirror_copies_verifies_resumes_and_catches_tampering() {
    let tmp = tempfile::tempdir().unwrap();
    let log = Server::start(&tmp.path().join("log"), &[]);
    let url = format!("http://{}", log.addr);
    let vkey = log.vkey.clone();
    let dir = tmp.path().join("mirror");
    let dir_s = dir.to_str().unwrap();

    append_n(&log, 0, 100);
    let old = tmp.path().join("old.checkpoint");
    std::fs::write(&old, get_ok(log.addr, "/checkpoint").body).unwrap();
    append_n(&log, 100, 420);
    let (code, out) = run_gatelog(&["mirror", "--log", &url, "--vkey", &vkey, dir_s]);
    assert_eq!(code, 0);
    assert!(out.contains("mirrored 520 entries"), "{out}");
    for f in [
        "checkpoint",
        "tile/0/000",
        "tile/0/001",
        "tile/0/002.p/8",
        "tile/1/000.p/2",
        "tile/entries/001",
        "tile/entries/002.p/8",
    ] {
        assert!(dir.join(f).is_file(), "{f} missing from the mirror");
    }
    // The mirror proves consistency offline.
    let new = dir.join("checkpoint");
    let (code, _) = run_gatelog(&[
        "verify",
        "consistency",
        "--vkey",
        &vkey,
        old.to_str().unwrap(),
        new.to_str().unwrap(),
        "--log",
        dir_s,
    ]);
    assert_eq!(code, 0);

    // Resume: full tiles already there are reused, not fetched.
    append_n(&log, 520, 300);
    let (code, out) = run_gatelog(&["mirror", "--log", &url, "--vkey", &vkey, dir_s]);
    assert_eq!(code, 0);
    assert!(
        out.contains("mirrored 820 entries") && out.contains("(was 520;"),
        "{out}"
    );
    assert!(!out.contains(" 0 reused"), "{out}");

    // Another key: refused.
    let other = NoteSigner::from_seed(vkey.split('+').next().unwrap(), [3; 32]).unwrap();
    let (code, out) = run_gatelog(&[
        "mirror",
        "--log",
        &url,
        "--vkey",
        &other.verifier().to_vkey(),
        dir_s,
    ]);
    assert_eq!(code, 1);
    assert!(out.contains("does not verify"), "{out}");

    // A changed byte in an entry the mirror holds: caught, and named.
    flip(&dir.join("tile/entries/001"), 3);
    let (code, out) = run_gatelog(&["mirror", "--log", &url, "--vkey", &vkey, dir_s]);
    assert_eq!(code, 1);
    assert!(out.contains("tile/0/001"), "{out}");
}

fn flip(path: &Path, at: usize) {
    let mut data = std::fs::read(path).unwrap();
    data[at] ^= 0x01;
    std::fs::write(path, data).unwrap();
}
