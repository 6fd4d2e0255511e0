//! End to end against the real binary: appends, answers and proofs that
//! independent implementations (the `signed_note` and `tlog_tiles` crates)
//! accept, dedup, restart, refusal of corrupt storage, and every bad input
//! getting its status while changing nothing.

mod common;

use std::net::SocketAddr;

use common::{b64, get_ok, hash_list, http, Server};
use signed_note::{Note, StandardVerifier, VerifierList};
use tlog_tiles::{
    check_record, check_tree, prove_record, record_hash, stored_hash_index, tree_hash, Checkpoint,
    Hash as TlHash, HashReader, Tile, TileHashReader, TileReader,
};

/// Opens a signed checkpoint with the `signed_note` and `tlog_tiles` crates.
fn open_checkpoint(text: &str, vkey: &str) -> (String, u64, TlHash) {
    let v = StandardVerifier::new(vkey).expect("vkey accepted by signed_note");
    let note = Note::from_bytes(text.as_bytes()).expect("note parses with signed_note");
    let (verified, _) = note
        .verify(&VerifierList::new(vec![Box::new(v)]))
        .expect("checkpoint verifies with signed_note");
    assert_eq!(verified.len(), 1);
    let cp = Checkpoint::from_bytes(note.text()).expect("checkpoint parses with tlog_tiles");
    (cp.origin().to_string(), cp.size(), *cp.hash())
}

/// Reads tiles over HTTP from the server, mapping tlog_tiles' Go-style
/// paths (tile/8/L/N) to C2SP ones (tile/L/N).
struct HttpTiles(SocketAddr);

impl HttpTiles {
    fn load(&self, t: &Tile) -> Result<Vec<u8>, tlog_tiles::Error> {
        let path = format!("/{}", t.path().replacen("tile/8/", "tile/", 1));
        let r = http(self.0, "GET", &path, b"").map_err(|_| tlog_tiles::Error::InvalidTile)?;
        if r.status != 200 {
            return Err(tlog_tiles::Error::InvalidTile);
        }
        assert_eq!(r.header("content-type"), Some("application/octet-stream"));
        assert!(r.header("cache-control").unwrap().contains("immutable"));
        Ok(r.body)
    }
}

impl TileReader for HttpTiles {
    fn height(&self) -> u8 {
        8
    }
    fn read_tiles(&self, tiles: &[Tile]) -> Result<Vec<Vec<u8>>, tlog_tiles::Error> {
        tiles.iter().map(|t| self.load(t)).collect()
    }
    fn save_tiles(&self, _: &[Tile], _: &[Vec<u8>]) {}
}

/// A HashReader that trusts nothing: it reads each stored hash from the
/// smallest tile holding it in the tree of `size`.
struct RawHashes<'a>(&'a HttpTiles, u64);

impl HashReader for RawHashes<'_> {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<TlHash>, tlog_tiles::Error> {
        indexes
            .iter()
            .map(|&x| {
                let t = Tile::from_index(8, x)
                    .parent(0, self.1)
                    .ok_or(tlog_tiles::Error::IndexesNotInTree)?;
                t.hash_at_index(&self.0.load(&t)?, x)
            })
            .collect()
    }
}

fn tl(h: [u8; 32]) -> TlHash {
    TlHash(h)
}

#[test]
fn appends_and_proofs_verify_with_independent_implementations() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &["--origin", "test.example/log"]);
    let info = get_ok(server.addr, "/v1/log").json();
    assert_eq!(info["origin"], "test.example/log");
    assert_eq!(info["verifier_key"], server.vkey.as_str());
    assert_eq!(info["tree_size"], 0);

    // Enough entries for a full level-0 tile, a partial one, and a level-1 tile.
    let entries: Vec<Vec<u8>> = (0..600u32)
        .map(|i| format!("entry {i}").into_bytes())
        .collect();
    let mut sizes_seen = Vec::new();
    let threads: Vec<_> = entries
        .chunks(150)
        .map(|chunk| {
            let chunk = chunk.to_vec();
            let server_addr = server.addr;
            let vkey = server.vkey.clone();
            std::thread::spawn(move || {
                let mut seen = Vec::new();
                for e in chunk {
                    let r = http(server_addr, "POST", "/v1/entries", &e).unwrap();
                    assert_eq!(r.status, 200, "{}", r.text());
                    let v = r.json();
                    let index = v["index"].as_u64().unwrap();
                    assert_eq!(
                        b64(v["leaf_hash"].as_str().unwrap()),
                        record_hash(&e).0.to_vec()
                    );
                    let (origin, size, root) =
                        open_checkpoint(v["checkpoint"].as_str().unwrap(), &vkey);
                    assert_eq!(origin, "test.example/log");
                    assert!(index < size);
                    // The tlog-proof bundle: header, index, hashes, blank, checkpoint.
                    let bundle = v["proof"].as_str().unwrap();
                    let (head, cp) = bundle.split_once("\n\n").unwrap();
                    assert_eq!(cp, v["checkpoint"].as_str().unwrap());
                    let mut lines = head.lines();
                    assert_eq!(lines.next(), Some("c2sp.org/tlog-proof@v1"));
                    assert_eq!(lines.next(), Some(format!("index {index}").as_str()));
                    let proof: Vec<TlHash> =
                        lines.map(|l| tl(b64(l).try_into().unwrap())).collect();
                    check_record(&proof, size, root, index, record_hash(&e))
                        .expect("tlog_tiles accepts the inclusion proof");
                    seen.push((index, e, size));
                }
                seen
            })
        })
        .collect();
    let mut by_index = std::collections::BTreeMap::new();
    for t in threads {
        for (i, e, size) in t.join().unwrap() {
            assert!(by_index.insert(i, e).is_none(), "index {i} given twice");
            sizes_seen.push(size);
        }
    }
    assert_eq!(
        by_index.keys().copied().collect::<Vec<_>>(),
        (0..600).collect::<Vec<_>>()
    );

    let cp = get_ok(server.addr, "/checkpoint");
    assert_eq!(cp.header("content-type"), Some("text/plain; charset=utf-8"));
    let (_, size, root) = open_checkpoint(&cp.text(), &server.vkey);
    assert_eq!(size, 600);

    // tlog_tiles recomputes the root from our tiles, with and without trust.
    let tiles = HttpTiles(server.addr);
    assert_eq!(tree_hash(size, &RawHashes(&tiles, size)).unwrap(), root);
    let trusted = TileHashReader::new(size, root, &tiles);
    assert_eq!(tree_hash(size, &trusted).unwrap(), root);

    // Our proof endpoints agree with tlog_tiles' proofs from our tiles.
    for index in [0u64, 1, 255, 256, 511, 599] {
        let ours = get_ok(
            server.addr,
            &format!("/v1/proof/inclusion?index={index}&tree_size={size}"),
        )
        .json();
        let ours: Vec<TlHash> = hash_list(&ours["hashes"]).into_iter().map(tl).collect();
        assert_eq!(ours, prove_record(size, index, &trusted).unwrap());
        let leaf = trusted.read_hashes(&[stored_hash_index(0, index)]).unwrap()[0];
        assert_eq!(leaf, record_hash(&by_index[&index]));
        check_record(&ours, size, root, index, leaf).unwrap();
        // And by leaf hash (URL-escaped base64).
        let h = base64_escape(&record_hash(&by_index[&index]).0);
        let r = get_ok(server.addr, &format!("/v1/proof/inclusion?leaf_hash={h}")).json();
        assert_eq!(r["index"], index);
    }
    for &old in sizes_seen.iter().take(40) {
        let old_root = tree_hash(old, &RawHashes(&tiles, old)).unwrap();
        let r = get_ok(
            server.addr,
            &format!("/v1/proof/consistency?old_size={old}&tree_size={size}"),
        )
        .json();
        let proof: Vec<TlHash> = hash_list(&r["hashes"]).into_iter().map(tl).collect();
        check_tree(&proof, size, root, old, old_root)
            .expect("tlog_tiles accepts the consistency proof");
    }

    // Entry bundles hold the entries whose hashes are the level-0 tiles.
    let full = get_ok(server.addr, "/tile/entries/000");
    let partial = get_ok(server.addr, "/tile/entries/002.p/88");
    assert!(full.header("cache-control").unwrap().contains("immutable"));
    let middle = get_ok(server.addr, "/tile/entries/001");
    let mut all = gatelog::tlog::tiles::decode_bundle(&full.body).unwrap();
    all.extend(gatelog::tlog::tiles::decode_bundle(&middle.body).unwrap());
    all.extend(gatelog::tlog::tiles::decode_bundle(&partial.body).unwrap());
    assert_eq!(all.len(), 600);
    for (i, e) in all.iter().enumerate() {
        assert_eq!(*e, by_index[&(i as u64)].as_slice());
    }
    // A smaller partial of a full tile is a prefix of it (tiles only grow).
    let p5 = get_ok(server.addr, "/tile/0/000.p/5");
    assert_eq!(p5.body, get_ok(server.addr, "/tile/0/000").body[..5 * 32]);

    let metrics = get_ok(server.addr, "/metrics").text();
    assert!(metrics.contains("gatelog_tree_size 600"), "{metrics}");
    assert!(metrics.contains("gatelog_appends_total 600"));
    assert!(metrics.contains("gatelog_integration_latency_seconds_bucket"));
}

fn base64_escape(h: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .encode(h)
        .replace('+', "%2B")
        .replace('/', "%2F")
        .replace('=', "%3D")
}

#[test]
fn resubmitting_returns_the_existing_index() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let a = server.append(b"alpha");
    server.append(b"beta");
    let again = server.append(b"alpha");
    assert_eq!(again["index"], a["index"]);
    assert_eq!(again["duplicate"], true);
    assert_eq!(server.tree_size(), 2);
    // Duplicates inside one batch also get one index.
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let addr = server.addr;
            std::thread::spawn(move || {
                http(addr, "POST", "/v1/entries", b"gamma").unwrap().json()["index"]
                    .as_u64()
                    .unwrap()
            })
        })
        .collect();
    let indices: std::collections::HashSet<u64> =
        threads.into_iter().map(|t| t.join().unwrap()).collect();
    assert_eq!(indices.len(), 1);
    assert_eq!(server.tree_size(), 3);
}

#[test]
fn bad_input_gets_its_status_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(
        dir.path(),
        &[
            "--max-body-bytes",
            "1000",
            "--max-entry-bytes",
            "500",
            "--read-timeout-secs",
            "1",
        ],
    );
    for i in 0..3u8 {
        server.append(&[i; 10]);
    }
    let before = get_ok(server.addr, "/checkpoint").text();
    let cases: &[(&str, &str, &[u8], u16, &str)] = &[
        ("POST", "/v1/entries", b"", 413, "empty_entry"),
        ("POST", "/v1/entries", &[1u8; 1001], 413, "body_too_large"),
        ("POST", "/v1/entries", &[1u8; 501], 413, "entry_too_large"),
        ("GET", "/v1/entries", b"", 405, "method_not_allowed"),
        ("POST", "/checkpoint", b"x", 405, "method_not_allowed"),
        ("GET", "/nope", b"", 404, "not_found"),
        ("GET", "/tile/0/1", b"", 400, "bad_tile_path"),
        ("GET", "/tile/0/x000/001", b"", 400, "bad_tile_path"),
        ("GET", "/tile/0/000.p/0", b"", 400, "bad_tile_path"),
        ("GET", "/tile/0/000.p/256", b"", 400, "bad_tile_path"),
        ("GET", "/tile/64/000", b"", 400, "bad_tile_path"),
        ("GET", "/tile/entries/abc", b"", 400, "bad_tile_path"),
        ("GET", "/tile/0/000", b"", 404, "tile_not_found"),
        ("GET", "/tile/0/000.p/4", b"", 404, "tile_not_found"),
        ("GET", "/tile/0/001.p/1", b"", 404, "tile_not_found"),
        ("GET", "/tile/1/000.p/1", b"", 404, "tile_not_found"),
        ("GET", "/tile/entries/000", b"", 404, "tile_not_found"),
        (
            "GET",
            "/v1/proof/inclusion?index=abc&tree_size=3",
            b"",
            400,
            "bad_parameter",
        ),
        (
            "GET",
            "/v1/proof/inclusion?index=-1",
            b"",
            400,
            "bad_parameter",
        ),
        (
            "GET",
            "/v1/proof/inclusion?index=0&tree_size=4",
            b"",
            400,
            "tree_size_too_large",
        ),
        (
            "GET",
            "/v1/proof/inclusion?index=3&tree_size=3",
            b"",
            400,
            "index_out_of_range",
        ),
        (
            "GET",
            "/v1/proof/inclusion?index=0&tree_size=0",
            b"",
            400,
            "empty_tree",
        ),
        (
            "GET",
            "/v1/proof/inclusion?tree_size=3",
            b"",
            400,
            "bad_parameter",
        ),
        (
            "GET",
            "/v1/proof/inclusion?index=0&bogus=1",
            b"",
            400,
            "bad_parameter",
        ),
        (
            "GET",
            "/v1/proof/inclusion?leaf_hash=zz",
            b"",
            400,
            "bad_parameter",
        ),
        (
            "GET",
            "/v1/proof/inclusion?leaf_hash=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA%3D",
            b"",
            404,
            "leaf_not_found",
        ),
        (
            "GET",
            "/v1/proof/consistency?old_size=2&tree_size=9",
            b"",
            400,
            "tree_size_too_large",
        ),
        (
            "GET",
            "/v1/proof/consistency?old_size=3&tree_size=2",
            b"",
            400,
            "bad_old_size",
        ),
        (
            "GET",
            "/v1/proof/consistency?old_size=0&tree_size=2",
            b"",
            400,
            "bad_old_size",
        ),
        (
            "GET",
            "/v1/proof/consistency?tree_size=2",
            b"",
            400,
            "bad_parameter",
        ),
    ];
    for &(method, path, body, status, code) in cases {
        let r = http(server.addr, method, path, body).unwrap();
        assert_eq!(
            r.status,
            status,
            "{method} {path}: {}",
            String::from_utf8_lossy(&r.body)
        );
        assert_eq!(
            r.header("content-type"),
            Some("application/json"),
            "{method} {path}"
        );
        assert_eq!(r.error_code(), code, "{method} {path}");
        assert!(!r.json()["error"]["message"].as_str().unwrap().is_empty());
        assert_eq!(
            r.header("cache-control"),
            Some("no-store"),
            "{method} {path}"
        );
        assert_eq!(
            get_ok(server.addr, "/checkpoint").text(),
            before,
            "{method} {path} changed the log"
        );
    }
    // A body that stops arriving is cut off after --read-timeout-secs.
    {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(server.addr).unwrap();
        s.write_all(
            b"POST /v1/entries HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nonly ten b",
        )
        .unwrap();
        let mut answer = String::new();
        let _ = s.read_to_string(&mut answer);
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
        assert!(answer.contains("body_timeout"));
    }
    assert_eq!(server.tree_size(), 3);
    // HEAD is answered like GET, without a body.
    let head = http(server.addr, "HEAD", "/checkpoint", b"").unwrap();
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());
    // The partial tiles of the current tree do exist.
    assert_eq!(get_ok(server.addr, "/tile/0/000.p/3").body.len(), 96);
    assert_eq!(
        get_ok(server.addr, "/tile/entries/000.p/3").body.len(),
        3 * 12
    );
}

#[test]
fn restart_keeps_the_key_and_every_entry() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path(), &["--origin", "restart.example/log"]);
    let vkey = server.vkey.clone();
    for i in 0..300u32 {
        server.append(&i.to_be_bytes());
    }
    let cp_before = get_ok(server.addr, "/checkpoint").text();
    server.kill9();
    use std::os::unix::fs::PermissionsExt;
    let key = match common::pg::suite_on_postgres() {
        true => dir.path().with_extension("log-key"),
        false => dir.path().join("log.key"),
    };
    let mode = std::fs::metadata(key).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);

    let server = Server::start(dir.path(), &[]);
    assert_eq!(server.vkey, vkey, "the key is reused");
    assert_eq!(get_ok(server.addr, "/checkpoint").text(), cp_before);
    let again = server.append(&7u32.to_be_bytes());
    assert_eq!(again["index"], 7);
    let next = server.append(b"new");
    assert_eq!(next["index"], 300);
    drop(server);

    // Another origin for the same data directory is refused.
    let out = common::serve_command(
        dir.path(),
        &["--entries", "opaque", "--origin", "other.example/log"],
    )
    .output()
    .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("differs from the origin"), "{stderr}");
}

#[test]
fn corrupt_storage_is_refused_with_a_clear_error() {
    if common::pg::suite_on_postgres() {
        eprintln!("SKIPPED on PostgreSQL: this test writes RocksDB's files");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path(), &[]);
    for i in 0..20u32 {
        server.append(&i.to_be_bytes());
    }
    server.kill9();
    {
        // The store's key for hash tile (level 0, index 0): 't', level, index.
        let db = rocksdb::DB::open_default(dir.path().join("db")).unwrap();
        let key = [b't', 0, 0, 0, 0, 0, 0, 0, 0, 0];
        let mut tile = db.get(key).unwrap().expect("tile 0/0 stored");
        assert_eq!(tile.len(), 20 * 32);
        tile[40] ^= 0xff;
        db.put(key, tile).unwrap();
    }
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_gatelog"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success(), "served a corrupt log");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("storage is corrupt"), "{stderr}");
}

fn serve_fails(dir: &std::path::Path) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_gatelog"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir)
        .output()
        .unwrap();
    assert!(!out.status.success(), "gatelog started");
    String::from_utf8_lossy(&out.stderr).to_string()
}

#[test]
fn a_key_without_its_database_or_the_reverse_is_refused() {
    // Starting afresh with either half would sign a second history.
    if common::pg::suite_on_postgres() {
        eprintln!("SKIPPED on PostgreSQL: the key is a separate file there (--log-key)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path(), &[]);
    server.append(b"one");
    server.kill9();
    let db = dir.path().join("db");
    let moved = dir.path().join("db.moved");
    std::fs::rename(&db, &moved).unwrap();
    assert!(serve_fails(dir.path()).contains("no database"));
    assert!(!db.exists(), "a refused start must not create a database");
    std::fs::rename(&moved, &db).unwrap();
    let key = dir.path().join("log.key");
    std::fs::rename(&key, dir.path().join("log.key.moved")).unwrap();
    assert!(serve_fails(dir.path()).contains("log.key is missing"));
    assert!(!key.exists(), "a refused start must not create a key");
    std::fs::rename(dir.path().join("log.key.moved"), &key).unwrap();
    let server = Server::start(dir.path(), &[]);
    assert_eq!(server.tree_size(), 1);
}

#[test]
fn a_log_keeps_its_entry_mode() {
    // An opaque log is never served through the gate, and a gatelog log
    // never takes opaque entries (which would skip the gate).
    for (first, then) in [("opaque", "gatelog"), ("gatelog", "opaque")] {
        let dir = tempfile::tempdir().unwrap();
        let server = Server::start_gatelog(dir.path(), &["--entries", first]);
        let size = server.tree_size();
        drop(server);
        let out = common::serve_command(dir.path(), &["--entries", then])
            .output()
            .unwrap();
        assert!(!out.status.success(), "{first} log served as {then}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains(&format!("holds a log of {first} entries")),
            "{stderr}"
        );
        // The same mode still starts, with the log as it was.
        let server = Server::start_gatelog(dir.path(), &["--entries", first]);
        assert_eq!(server.tree_size(), size);
    }
}

#[test]
fn one_client_cannot_hold_every_connection() {
    use std::io::Read;
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &["--max-connections-per-client", "2"]);
    // Two idle connections from this address fill its share.
    let held: Vec<std::net::TcpStream> = (0..2)
        .map(|_| std::net::TcpStream::connect(server.addr).unwrap())
        .collect();
    std::thread::sleep(std::time::Duration::from_millis(200));
    // A third is closed at once (it never reaches a request).
    let mut third = std::net::TcpStream::connect(server.addr).unwrap();
    third
        .set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .unwrap();
    let mut buf = [0u8; 16];
    assert_eq!(
        third.read(&mut buf).unwrap_or(0),
        0,
        "the third connection was served"
    );
    // One let go: the client is served again.
    drop(held);
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert_eq!(get_ok(server.addr, "/v1/log").status, 200);
}
