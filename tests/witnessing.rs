//! The log with witnesses: appends answered only once 2 of 3 witnesses
//! cosigned, a witness killed mid-run does not stop the log, /checkpoint
//! verifies under a 2-of-3 policy, a restarted log recovers the witnesses'
//! sizes from their 409s, and without a quorum an append gets 503.

mod common;

use common::{get_ok, http, Server};
use gatelog::checkpoint::Checkpoint;
use gatelog::cosignature::CosignatureVerifier;
use gatelog::merkle::leaf_hash;
use gatelog::note::{Note, NoteVerifier};
use gatelog::tlog_proof::TlogProof;

/// What a tlog-policy "log K; witnesses; group 2-of-3; quorum" demands:
/// the log's signature and at least `k` valid cosignatures. Returns the
/// checkpoint and the names of the witnesses that cosigned it.
fn check_policy(
    note: &str,
    log: &NoteVerifier,
    witnesses: &[CosignatureVerifier],
    k: usize,
) -> (Checkpoint, Vec<String>) {
    let cp = Checkpoint::open(note.as_bytes(), log).expect("log signature");
    let parsed = Note::parse(note.as_bytes()).unwrap();
    let mut names: Vec<String> = witnesses
        .iter()
        .filter(|w| {
            parsed
                .signatures
                .iter()
                .any(|s| w.verify(&parsed.text, s).is_some())
        })
        .map(|w| w.name().to_string())
        .collect();
    names.sort();
    assert!(
        names.len() >= k,
        "only {} of {k} cosignatures: {names:?}\n{note}",
        names.len()
    );
    (cp, names)
}

#[test]
fn appends_wait_for_the_witness_quorum_and_survive_a_dead_witness() {
    let log_dir = tempfile::tempdir().unwrap();
    // First start creates the log's key; witnesses need its verifier key.
    let mut first = Server::start(log_dir.path(), &["--origin", "witnessed.example/log"]);
    let log_vkey = first.vkey.clone();
    first.kill9();
    let log_key = NoteVerifier::parse(&log_vkey).unwrap();

    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut witnesses: Vec<Server> = dirs
        .iter()
        .enumerate()
        .map(|(i, d)| {
            let name = format!("witness.example/w{i}");
            Server::start_command("witness", d.path(), &["--name", &name, "--log", &log_vkey])
        })
        .collect();
    let keys: Vec<CosignatureVerifier> = witnesses
        .iter()
        .map(|w| CosignatureVerifier::parse(&w.vkey).unwrap())
        .collect();
    let specs: Vec<String> = witnesses
        .iter()
        .enumerate()
        .map(|(i, w)| format!("w{i}=http://{}+{}", w.addr, w.vkey))
        .collect();
    let start_log = || {
        let mut args = vec!["--witness-quorum", "2", "--witness-timeout-ms", "700"];
        for s in &specs {
            args.extend(["--witness", s.as_str()]);
        }
        Server::start(log_dir.path(), &args)
    };
    let mut log = start_log();

    let append_checked = |server: &Server, entry: &[u8]| {
        let v = server.append(entry);
        let bundle = TlogProof::parse(v["proof"].as_str().unwrap()).unwrap();
        bundle
            .verify(&leaf_hash(entry), &log_key)
            .expect("proof verifies against the cosigned checkpoint");
        assert_eq!(v["checkpoint"].as_str().unwrap(), bundle.checkpoint);
        check_policy(&bundle.checkpoint, &log_key, &keys, 2)
    };
    for i in 0..10u32 {
        let (cp, names) = append_checked(&log, format!("first {i}").as_bytes());
        assert!(cp.size > i as u64);
        assert_eq!(names.len(), 3, "all three witnesses are up");
    }

    // One witness dies mid-run: appends go on with the other two.
    witnesses[2].kill9();
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let (addr, log_key, keys) = (log.addr, log_key.clone(), keys.clone());
            std::thread::spawn(move || {
                for i in 0..10u32 {
                    let entry = format!("second {t} {i}").into_bytes();
                    let r = http(addr, "POST", "/v1/entries", &entry).unwrap();
                    assert_eq!(r.status, 200, "{}", r.text());
                    let bundle = TlogProof::parse(r.json()["proof"].as_str().unwrap()).unwrap();
                    bundle.verify(&leaf_hash(&entry), &log_key).unwrap();
                    check_policy(&bundle.checkpoint, &log_key, &keys, 2);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let (cp, names) = check_policy(&get_ok(log.addr, "/checkpoint").text(), &log_key, &keys, 2);
    assert_eq!(cp.size, 50);
    assert_eq!(names, vec!["witness.example/w0", "witness.example/w1"]);
    let metrics = get_ok(log.addr, "/metrics").text();
    assert!(
        metrics.contains("gatelog_witness_up{witness=\"w2\"} 0"),
        "{metrics}"
    );
    assert!(
        metrics.contains("gatelog_witness_cosigned_size{witness=\"w0\"} 50"),
        "{metrics}"
    );

    // A restarted log does not know the witnesses' sizes: it learns them
    // from their 409 answers and carries on.
    log.kill9();
    let log = start_log();
    let (cp, _) = append_checked(&log, b"after restart");
    assert_eq!(cp.size, 51);

    // Below the quorum an append is durable but answered 503.
    witnesses[1].kill9();
    let r = http(log.addr, "POST", "/v1/entries", b"no quorum").unwrap();
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(r.error_code(), "witness_quorum_timeout");
    assert_eq!(log.tree_size(), 52, "the entry itself was logged");
}
