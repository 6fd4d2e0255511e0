//! What clients were told: every acknowledged entry and checkpoint, and
//! the check that a log still holds them (kill -9 and failover tests).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use super::{get_ok, hash_list, http, Server};
use gatelog::tlog::checkpoint::Checkpoint;
use gatelog::tlog::merkle::verify_consistency;
use gatelog::tlog::note::NoteVerifier;
use gatelog::tlog::tiles::decode_bundle;

/// (entry, index) pairs the server acknowledged, and the checkpoints it sent.
#[derive(Default)]
pub struct Acked {
    pub entries: Vec<(Vec<u8>, u64)>,
    pub checkpoints: Vec<String>,
}

/// Checks that `server`'s log holds every acknowledged entry at its index
/// and that every acknowledged checkpoint is consistent with its current one.
pub fn check_log(server: &Server, verifier: &NoteVerifier, acked: &Acked) {
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

/// Appends `next_entry(n)` for n = 0, 1, ... until `stop` or the server
/// dies, recording each acknowledged entry and checkpoint in `acked`. With
/// `unavailable_ok`, a 503 (a witness quorum that did not come, a store
/// that is unavailable) is not an acknowledgement and not a failure.
pub fn append_until_stopped(
    addr: std::net::SocketAddr,
    stop: &AtomicBool,
    acked: &Mutex<Acked>,
    unavailable_ok: bool,
    mut next_entry: impl FnMut(u64) -> Vec<u8>,
) {
    for n in 0u64.. {
        if stop.load(Ordering::Relaxed) {
            return;
        }
        let entry = next_entry(n);
        match http(addr, "POST", "/v1/entries", &entry) {
            Ok(r) if r.status == 200 => {
                let v = r.json();
                let mut a = acked.lock().unwrap();
                a.entries.push((entry, v["index"].as_u64().unwrap()));
                a.checkpoints
                    .push(v["checkpoint"].as_str().unwrap().to_string());
            }
            Ok(r) if r.status == 503 && unavailable_ok => {}
            Ok(r) => panic!("append answered {}: {}", r.status, r.text()),
            // The server died mid-request: not acknowledged.
            Err(_) => return,
        }
    }
}
