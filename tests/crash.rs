//! Crash safety: drive concurrent appends against the real binary, kill -9
//! it at random moments over several rounds, restart, and check that every
//! acknowledged entry is at its index and every checkpoint seen before a
//! crash is consistent with the checkpoint after it.
//!
//! Two loads: opaque entries, and signed workflow entries through the gate
//! into a log whose appends wait for a witness's cosignature (so the
//! witness's own writes are under the same kills). `GATELOG_CRASH_ROUNDS`
//! sets the rounds (5 by default; the nightly run uses 100).

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::acked::{append_until_stopped, check_log, Acked};
use common::{get_ok, http, Server};
use gatelog::tlog::note::NoteVerifier;

const CLIENTS: usize = 8;

/// Kill rounds per test: `GATELOG_CRASH_ROUNDS`, or 5.
fn rounds() -> usize {
    std::env::var("GATELOG_CRASH_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(5)
}

fn seed() -> u64 {
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    eprintln!("crash test seed {seed}");
    seed
}

fn xorshift(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

#[test]
fn kill_9_loses_no_acknowledged_entry() {
    let dir = tempfile::tempdir().unwrap();
    let mut seed = seed();
    let acked = Arc::new(Mutex::new(Acked::default()));
    let mut verifier = None;
    for round in 0..rounds() {
        let mut server = Server::start(dir.path(), &["--max-batch-delay-ms", "1"]);
        let v = NoteVerifier::parse(&server.vkey).unwrap();
        if let Some(prev) = &verifier {
            assert_eq!(prev, &v, "key changed across restart");
        }
        verifier = Some(v.clone());
        check_log(&server, &v, &acked.lock().unwrap());

        let stop = Arc::new(AtomicBool::new(false));
        let clients: Vec<_> = (0..CLIENTS)
            .map(|c| {
                let (addr, stop, acked) = (server.addr, stop.clone(), acked.clone());
                std::thread::spawn(move || {
                    append_until_stopped(addr, &stop, &acked, false, |n| {
                        format!("round {round} client {c} entry {n}").into_bytes()
                    })
                })
            })
            .collect();
        let wait = 150 + xorshift(&mut seed) % 600;
        std::thread::sleep(Duration::from_millis(wait));
        server.kill9();
        stop.store(true, Ordering::Relaxed);
        for c in clients {
            c.join().unwrap();
        }
        let a = acked.lock().unwrap();
        eprintln!(
            "round {round}: killed after {wait} ms, {} acknowledged so far",
            a.entries.len()
        );
    }
    let server = Server::start(dir.path(), &[]);
    let a = acked.lock().unwrap();
    assert!(
        a.entries.len() > 100,
        "too few appends to test anything: {}",
        a.entries.len()
    );
    check_log(&server, verifier.as_ref().unwrap(), &a);
}

/// The size the witness says it last cosigned for the log (it answers a
/// deliberately stale add-checkpoint with 409 and that size).
fn witness_size(witness: &Server, checkpoint: &str) -> u64 {
    let body = format!("old 0\n\n{checkpoint}");
    let r = http(witness.addr, "POST", "/add-checkpoint", body.as_bytes()).unwrap();
    match r.status {
        409 => r.text().trim().parse().unwrap(),
        // Only asked once it has cosigned something: taking it means it
        // forgot (and it has now cosigned the head).
        s => panic!(
            "the witness answered {s}, as if it had cosigned nothing: {}",
            r.text()
        ),
    }
}

#[test]
fn kill_9_of_a_witnessed_gatelog_log_loses_no_acknowledged_entry_or_cosignature() {
    use gatelog::access::entry::build::{self, human};
    use gatelog::sys::clock::now_ms;
    use gatelog::tlog::cosignature::CosignatureVerifier;
    use gatelog::tlog::note::{Note, NoteSigner};

    let tmp = tempfile::tempdir().unwrap();
    let (log_dir, witness_dir) = (tmp.path().join("log"), tmp.path().join("witness"));
    let vkey = Server::start_gatelog(&log_dir, &[]).vkey.clone();
    let verifier = NoteVerifier::parse(&vkey).unwrap();
    let admin = gatelog::sys::keyfile::read_private_key(&log_dir.join("admin.key")).unwrap();
    let mut seed = seed();
    let acked = Arc::new(Mutex::new(Acked::default()));
    // The largest size a cosignature was seen on.
    let mut cosigned = 0u64;
    let mut witness_key = None;
    for round in 0..rounds() {
        let mut witness = Server::start_command("witness", &witness_dir, &["--log", &vkey]);
        let wkey = CosignatureVerifier::parse(&witness.vkey).unwrap();
        witness_key.get_or_insert_with(|| witness.vkey.clone());
        assert_eq!(
            witness_key.as_deref(),
            Some(witness.vkey.as_str()),
            "the witness key changed"
        );
        let spec = format!("w1=http://{}+{}", witness.addr, witness.vkey);
        let mut server = Server::start_gatelog(
            &log_dir,
            &[
                "--witness",
                &spec,
                "--witness-quorum",
                "1",
                "--witness-timeout-ms",
                "300",
                "--max-batch-delay-ms",
                "1",
                "--writer-rate",
                "0",
            ],
        );
        check_log(&server, &verifier, &acked.lock().unwrap());
        // The witness still holds every size it cosigned before the crash.
        if cosigned > 0 {
            let head = get_ok(server.addr, "/checkpoint").text();
            let held = witness_size(&witness, &head);
            assert!(
                held >= cosigned,
                "the witness forgot size {cosigned}: it holds {held}"
            );
        }

        let stop = Arc::new(AtomicBool::new(false));
        let clients: Vec<_> = (0..CLIENTS)
            .map(|c| {
                let (addr, stop, acked) = (server.addr, stop.clone(), acked.clone());
                let (admin, origin) = (
                    NoteSigner::parse(&admin.to_private_key_string()).unwrap(),
                    server.origin().to_string(),
                );
                std::thread::spawn(move || {
                    append_until_stopped(addr, &stop, &acked, true, |n| {
                        let id = format!("r{round}c{c}n{n}");
                        let key = NoteSigner::from_seed(&id, [c as u8 + 1; 32]).unwrap();
                        let mut st = build::register(
                            &human("admin"),
                            &human(&id),
                            "",
                            key.verifier().public_key(),
                            now_ms(),
                        );
                        st.log_origin = origin.clone();
                        prost::Message::encode_to_vec(&gatelog::access::entry::sign(&admin, &st))
                    })
                })
            })
            .collect();
        let wait = 150 + xorshift(&mut seed) % 600;
        std::thread::sleep(Duration::from_millis(wait));
        // Kill both, in either order.
        if xorshift(&mut seed).is_multiple_of(2) {
            witness.kill9();
            std::thread::sleep(Duration::from_millis(xorshift(&mut seed) % 100));
            server.kill9();
        } else {
            server.kill9();
            witness.kill9();
        }
        stop.store(true, Ordering::Relaxed);
        for c in clients {
            c.join().unwrap();
        }
        let a = acked.lock().unwrap();
        // Every acknowledged answer carried the witness's cosignature.
        for text in &a.checkpoints {
            let note = Note::parse(text.as_bytes()).unwrap();
            let signed = note
                .signatures
                .iter()
                .any(|s| wkey.verify(&note.text, s).is_some());
            assert!(
                signed,
                "an acknowledged checkpoint lacks the cosignature: {text}"
            );
            let size: u64 = note.text.lines().nth(1).unwrap().parse().unwrap();
            cosigned = cosigned.max(size);
        }
        eprintln!(
            "round {round}: killed after {wait} ms, {} acknowledged so far, cosigned up to {cosigned}",
            a.entries.len()
        );
    }
    let server = Server::start_gatelog(&log_dir, &[]);
    let a = acked.lock().unwrap();
    assert!(
        a.entries.len() > 50,
        "too few appends to test anything: {}",
        a.entries.len()
    );
    check_log(&server, &verifier, &a);
    let witness = Server::start_command("witness", &witness_dir, &["--log", &vkey]);
    let head = get_ok(server.addr, "/checkpoint").text();
    assert!(cosigned > 0 && witness_size(&witness, &head) >= cosigned);
}
