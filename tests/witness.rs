//! The witness end to end (C2SP tlog-witness over real HTTP): every status
//! the spec defines, cosignatures that verify, no rollback, and a record
//! that survives kill -9.

mod common;

use common::{get_ok, http, HttpResponse, Server};
use gatelog::tlog::checkpoint::Checkpoint;
use gatelog::tlog::cosignature::{AddCheckpoint, CosignatureVerifier};
use gatelog::tlog::merkle::{leaf_hash, Hash, LeafHashes, Prover};
use gatelog::tlog::note::{Note, NoteSigner};

const ORIGIN: &str = "log.example/witnessed";

struct Tree {
    leaves: Vec<Hash>,
    key: NoteSigner,
}

impl Tree {
    fn new(salt: u8, key: NoteSigner) -> Tree {
        let leaves = (0..100u32)
            .map(|i| leaf_hash(&[&[salt][..], &i.to_be_bytes()].concat()))
            .collect();
        Tree { leaves, key }
    }

    fn checkpoint(&self, size: u64) -> String {
        let root = Prover::new(LeafHashes(&self.leaves)).root(size).unwrap();
        let cp = Checkpoint {
            origin: self.key.name().to_string(),
            size,
            root,
            extensions: vec![],
        };
        cp.sign(&self.key).unwrap()
    }

    fn proof(&self, old: u64, new: u64) -> Vec<Hash> {
        Prover::new(LeafHashes(&self.leaves))
            .consistency(old, new)
            .unwrap()
    }
}

fn add(w: &Server, old: u64, proof: Vec<Hash>, checkpoint: String) -> HttpResponse {
    let body = AddCheckpoint {
        old_size: old,
        proof,
        checkpoint,
    }
    .encode();
    http(w.addr, "POST", "/add-checkpoint", body.as_bytes()).unwrap()
}

fn assert_cosigned(r: &HttpResponse, checkpoint: &str, witness: &CosignatureVerifier) {
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let note = Note::parse(format!("{checkpoint}{}", r.text()).as_bytes()).unwrap();
    let sig = note
        .signatures
        .iter()
        .find(|s| s.name == witness.name())
        .expect("a cosignature line");
    let ts = witness
        .verify(&note.text, sig)
        .expect("cosignature verifies");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(
        ts <= now && ts + 60 > now,
        "timestamp {ts} is not now ({now})"
    );
}

fn assert_conflict(r: &HttpResponse, latest: u64) {
    assert_eq!(r.status, 409, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.header("content-type"), Some("text/x.tlog.size"));
    assert_eq!(r.text(), format!("{latest}\n"));
}

fn assert_error(r: &HttpResponse, status: u16, code: &str) {
    assert_eq!(r.status, status, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.error_code(), code);
}

#[test]
fn witness_cosigns_only_consistent_checkpoints_and_keeps_its_record() {
    let dir = tempfile::tempdir().unwrap();
    let log = Tree::new(1, NoteSigner::from_seed(ORIGIN, [1; 32]).unwrap());
    let vkey = log.key.verifier().to_vkey();
    let mut w = Server::start_command(
        "witness",
        dir.path(),
        &["--name", "witness.example/w1", "--log", &vkey],
    );
    let info = get_ok(w.addr, "/v1/witness").json();
    assert_eq!(info["name"], "witness.example/w1");
    let witness = CosignatureVerifier::parse(info["verifier_key"].as_str().unwrap()).unwrap();
    assert_eq!(witness.to_vkey(), w.vkey);

    // First contact: old size 0, no proof.
    let cp10 = log.checkpoint(10);
    assert_cosigned(&add(&w, 0, vec![], cp10.clone()), &cp10, &witness);
    // The client's idea of the last size is wrong: 409 with the real one.
    assert_conflict(&add(&w, 0, vec![], log.checkpoint(20)), 10);
    assert_conflict(&add(&w, 5, log.proof(5, 20), log.checkpoint(20)), 10);
    // A consistent extension.
    let cp20 = log.checkpoint(20);
    assert_cosigned(
        &add(&w, 10, log.proof(10, 20), cp20.clone()),
        &cp20,
        &witness,
    );
    // A proof that does not verify.
    let mut bad = log.proof(20, 30);
    bad[0][0] ^= 1;
    assert_error(
        &add(&w, 20, bad, log.checkpoint(30)),
        422,
        "bad_consistency_proof",
    );
    assert_error(
        &add(&w, 20, vec![], log.checkpoint(30)),
        422,
        "bad_consistency_proof",
    );
    // Same size again: the same root is fine, another root is a conflict.
    assert_cosigned(&add(&w, 20, vec![], cp20.clone()), &cp20, &witness);
    let fork = Tree::new(2, NoteSigner::from_seed(ORIGIN, [1; 32]).unwrap());
    assert_conflict(&add(&w, 20, vec![], fork.checkpoint(20)), 20);
    // A fork that grows past the witnessed size cannot prove consistency.
    assert_error(
        &add(&w, 20, fork.proof(20, 30), fork.checkpoint(30)),
        422,
        "bad_consistency_proof",
    );
    // Rollback: an old size beyond the checkpoint's size.
    assert_error(
        &add(&w, 20, vec![], log.checkpoint(15)),
        400,
        "old_size_beyond_checkpoint",
    );
    // Malformed bodies.
    for body in [
        "",
        "old 01\n\nx",
        "old 1\nnot-a-hash\n\nx",
        "old 0\n\nnot a checkpoint\n",
    ] {
        let r = http(w.addr, "POST", "/add-checkpoint", body.as_bytes()).unwrap();
        assert_error(&r, 400, "malformed");
    }
    // Unknown origin: 404. Known origin, wrong key: 403.
    let stranger = Tree::new(
        1,
        NoteSigner::from_seed("other.example/log", [1; 32]).unwrap(),
    );
    assert_error(
        &add(&w, 0, vec![], stranger.checkpoint(5)),
        404,
        "unknown_log",
    );
    let impostor = Tree::new(1, NoteSigner::from_seed(ORIGIN, [2; 32]).unwrap());
    assert_error(
        &add(&w, 20, impostor.proof(20, 30), impostor.checkpoint(30)),
        403,
        "bad_signature",
    );
    // Wrong paths and methods.
    assert_error(
        &http(w.addr, "GET", "/add-checkpoint", b"").unwrap(),
        405,
        "method_not_allowed",
    );
    assert_error(
        &http(w.addr, "GET", "/nope", b"").unwrap(),
        404,
        "not_found",
    );

    // The record and the key survive kill -9.
    let vkey_before = w.vkey.clone();
    w.kill9();
    let w = Server::start_command("witness", dir.path(), &["--log", &vkey]);
    assert_eq!(w.vkey, vkey_before);
    assert_conflict(&add(&w, 0, vec![], log.checkpoint(25)), 20);
    let cp30 = log.checkpoint(30);
    assert_cosigned(
        &add(&w, 20, log.proof(20, 30), cp30.clone()),
        &cp30,
        &witness,
    );
}

#[test]
fn racing_updates_get_one_cosignature_and_it_survives_kill_9() {
    // Eight clients race from the same old size with different new sizes:
    // checking the old size and recording the new checkpoint is one step,
    // so exactly one is cosigned (the rest get 409), and that one is what
    // the witness remembers after kill -9.
    let dir = tempfile::tempdir().unwrap();
    let log = Tree::new(0, NoteSigner::from_seed(ORIGIN, [1; 32]).unwrap());
    let vkey = log.key.verifier().to_vkey();
    let mut w = Server::start_command("witness", dir.path(), &["--log", &vkey]);
    assert_eq!(add(&w, 0, vec![], log.checkpoint(10)).status, 200);
    let addr = w.addr;
    let statuses: Vec<(u64, u16)> = std::thread::scope(|s| {
        let racers: Vec<_> = (11..19u64)
            .map(|size| {
                let body = AddCheckpoint {
                    old_size: 10,
                    proof: log.proof(10, size),
                    checkpoint: log.checkpoint(size),
                }
                .encode();
                s.spawn(move || {
                    (
                        size,
                        http(addr, "POST", "/add-checkpoint", body.as_bytes())
                            .unwrap()
                            .status,
                    )
                })
            })
            .collect();
        racers.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let winners: Vec<u64> = statuses
        .iter()
        .filter(|(_, s)| *s == 200)
        .map(|(n, _)| *n)
        .collect();
    assert_eq!(winners.len(), 1, "{statuses:?}");
    assert!(
        statuses.iter().all(|&(_, s)| s == 200 || s == 409),
        "{statuses:?}"
    );
    let won = winners[0];
    w.kill9();
    let w = Server::start_command("witness", dir.path(), &["--log", &vkey]);
    assert_conflict(&add(&w, 10, log.proof(10, 20), log.checkpoint(20)), won);
    let cp = log.checkpoint(30);
    let verifier = CosignatureVerifier::parse(&w.vkey).unwrap();
    assert_cosigned(
        &add(&w, won, log.proof(won, 30), cp.clone()),
        &cp,
        &verifier,
    );
}
