//! Crash safety: drive concurrent appends against the real binary, kill -9
//! it at random moments over several rounds, restart, and check that every
//! acknowledged entry is at its index and every checkpoint seen before a
//! crash is consistent with the checkpoint after it.

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{get_ok, hash_list, http, Server};
use gatelog::tlog::checkpoint::Checkpoint;
use gatelog::tlog::merkle::verify_consistency;
use gatelog::tlog::note::NoteVerifier;
use gatelog::tlog::tiles::decode_bundle;

const ROUNDS: usize = 5;
const CLIENTS: usize = 8;

/// (entry, index) pairs the server acknowledged, and the checkpoints it sent.
#[derive(Default)]
struct Acked {
    entries: Vec<(Vec<u8>, u64)>,
    checkpoints: Vec<String>,
}

fn xorshift(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

fn check_log(server: &Server, verifier: &NoteVerifier, acked: &Acked) {
    let head = Checkpoint::open(
        get_ok(server.addr, "/checkpoint").text().as_bytes(),
        verifier,
    )
    .expect("checkpoint after restart verifies");
    // Every acknowledged entry is at its index.
    let mut bundles: HashMap<u64, Vec<Vec<u8>>> = HashMap::new();
    for (entry, index) in &acked.entries {
        assert!(
            *index < head.size,
            "acknowledged index {index} lost: tree size is {}",
            head.size
        );
        let tile = index / 256;
        let bundle = bundles.entry(tile).or_insert_with(|| {
            let width = (head.size - tile * 256).min(256);
            let path = if width == 256 {
                format!("/tile/entries/{}", gatelog::tlog::tiles::format_index(tile))
            } else {
                format!(
                    "/tile/entries/{}.p/{width}",
                    gatelog::tlog::tiles::format_index(tile)
                )
            };
            decode_bundle(&get_ok(server.addr, &path).body)
                .unwrap()
                .into_iter()
                .map(<[u8]>::to_vec)
                .collect()
        });
        assert_eq!(
            &bundle[(index % 256) as usize],
            entry,
            "entry at index {index} differs"
        );
    }
    // Every checkpoint seen is consistent with the current one.
    let mut seen: Vec<&String> = acked.checkpoints.iter().collect();
    seen.sort();
    seen.dedup();
    for text in seen {
        let old =
            Checkpoint::open(text.as_bytes(), verifier).expect("acknowledged checkpoint verifies");
        assert!(
            old.size <= head.size,
            "tree shrank from {} to {}",
            old.size,
            head.size
        );
        let r = get_ok(
            server.addr,
            &format!(
                "/v1/proof/consistency?old_size={}&tree_size={}",
                old.size, head.size
            ),
        );
        let proof = hash_list(&r.json()["hashes"]);
        verify_consistency(old.size, head.size, &proof, &old.root, &head.root).unwrap_or_else(
            |e| {
                panic!(
                    "checkpoint of size {} is not consistent with {}: {e}",
                    old.size, head.size
                )
            },
        );
    }
}

#[test]
fn kill_9_loses_no_acknowledged_entry() {
    let dir = tempfile::tempdir().unwrap();
    let mut seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    eprintln!("crash test seed {seed}");
    let acked = Arc::new(Mutex::new(Acked::default()));
    let mut verifier = None;
    for round in 0..ROUNDS {
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
                    for n in 0u64.. {
                        if stop.load(Ordering::Relaxed) {
                            return;
                        }
                        let entry = format!("round {round} client {c} entry {n}").into_bytes();
                        match http(addr, "POST", "/v1/entries", &entry) {
                            Ok(r) if r.status == 200 => {
                                let v = r.json();
                                let mut a = acked.lock().unwrap();
                                a.entries.push((entry, v["index"].as_u64().unwrap()));
                                a.checkpoints
                                    .push(v["checkpoint"].as_str().unwrap().to_string());
                            }
                            Ok(r) => panic!("append answered {}: {}", r.status, r.text()),
                            // The server died mid-request: not acknowledged.
                            Err(_) => return,
                        }
                    }
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
