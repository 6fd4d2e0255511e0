//! The log with witnesses: appends answered only once 2 of 3 witnesses
//! cosigned, a witness killed mid-run does not stop the log, /checkpoint
//! verifies under a C2SP tlog-policy requiring 2 of 3, a restarted log recovers the witnesses'
//! sizes from their 409s, and without a quorum an append gets 503.

mod common;

use common::{get_ok, http, Server};
use gatelog::tlog::checkpoint::Checkpoint;
use gatelog::tlog::merkle::leaf_hash;
use gatelog::tlog::note::NoteVerifier;
use gatelog::tlog::policy::Policy;
use gatelog::tlog::tlog_proof::TlogProof;

/// A C2SP tlog-policy: the log, three witnesses, any two of them.
fn two_of_three(log_vkey: &str, witnesses: &[Server]) -> Policy {
    let mut text = format!("log {log_vkey}\n");
    for (i, w) in witnesses.iter().enumerate() {
        text.push_str(&format!("witness w{i} {} http://{}\n", w.vkey, w.addr));
    }
    text.push_str("group two-of-three 2 w0 w1 w2\nquorum two-of-three\n");
    Policy::parse(&text).expect("policy parses")
}

fn check_policy(note: &str, policy: &Policy) -> (Checkpoint, Vec<String>) {
    policy
        .verify(note.as_bytes())
        .unwrap_or_else(|e| panic!("{e}\n{note}"))
}

#[test]
fn appends_wait_for_the_witness_quorum_and_survive_a_hung_witness() {
    let log_dir = tempfile::tempdir().unwrap();
    // First start creates the log's key; witnesses need its verifier key.
    let mut first = Server::start(log_dir.path(), &["--origin", "witnessed.example/log"]);
    let log_vkey = first.vkey.clone();
    first.kill9();
    let log_key = NoteVerifier::parse(&log_vkey).unwrap();

    let witness_dir = tempfile::tempdir().unwrap();
    let (mut witnesses, specs) = common::start_witnesses(witness_dir.path(), 3, &log_vkey);
    let policy = std::sync::Arc::new(two_of_three(&log_vkey, &witnesses));
    let start_log = || {
        let mut args = vec!["--witness-quorum", "2", "--witness-timeout-ms", "500"];
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
        check_policy(&bundle.checkpoint, &policy)
    };
    for i in 0..10u32 {
        let (cp, names) = append_checked(&log, format!("first {i}").as_bytes());
        assert!(cp.size > i as u64);
        assert!(names.len() >= 2);
    }

    // Once a round is complete, /checkpoint carries all three.
    std::thread::sleep(std::time::Duration::from_millis(200));
    let (_, names) = check_policy(&get_ok(log.addr, "/checkpoint").text(), &policy);
    assert_eq!(names, vec!["w0", "w1", "w2"]);

    // One witness hangs mid-run (stopped, not dead: connections open but
    // nothing answers): appends go on with the other two.
    let stopped = std::process::Command::new("kill")
        .args(["-STOP", &witnesses[2].child.id().to_string()])
        .status()
        .unwrap();
    assert!(stopped.success());
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let (addr, log_key, policy) = (log.addr, log_key.clone(), policy.clone());
            std::thread::spawn(move || {
                for i in 0..4u32 {
                    let entry = format!("second {t} {i}").into_bytes();
                    let r = http(addr, "POST", "/v1/entries", &entry).unwrap();
                    assert_eq!(r.status, 200, "{}", r.text());
                    let bundle = TlogProof::parse(r.json()["proof"].as_str().unwrap()).unwrap();
                    bundle.verify(&leaf_hash(&entry), &log_key).unwrap();
                    check_policy(&bundle.checkpoint, &policy);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let (cp, names) = check_policy(&get_ok(log.addr, "/checkpoint").text(), &policy);
    assert_eq!(cp.size, 26);
    assert_eq!(names, vec!["w0", "w1"]);
    let metrics = get_ok(log.addr, "/metrics").text();
    assert!(
        metrics.contains("gatelog_witness_up{witness=\"w2\"} 0"),
        "{metrics}"
    );
    assert!(
        metrics.contains("gatelog_witness_cosigned_size{witness=\"w0\"} 26"),
        "{metrics}"
    );

    // A restarted log does not know the witnesses' sizes: it learns them
    // from their 409 answers and carries on.
    log.kill9();
    let log = start_log();
    let (cp, _) = append_checked(&log, b"after restart");
    assert_eq!(cp.size, 27);

    // Below the quorum an append is durable but answered 503.
    witnesses[1].kill9();
    let r = http(log.addr, "POST", "/v1/entries", b"no quorum").unwrap();
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(r.error_code(), "witness_quorum_timeout");
    assert_eq!(log.tree_size(), 28, "the entry itself was logged");
}
