//! The log's edges against hostile clients, on the real binary: writers
//! authenticated in opaque mode, quotas that answer 429 (and that nobody
//! can spend for someone else), slow readers and slow headers that cannot
//! hold every connection, bad-signature floods that good submitters do
//! not feel.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use common::{http, HttpResponse, Server};
use gatelog::access::entry::build::{self, human};
use gatelog::access::entry::Statement;
use gatelog::sys::clock::now_ms;
use gatelog::tlog::note::NoteSigner;
use prost::Message;

/// One HTTP/1.1 request with extra header lines.
fn request(addr: SocketAddr, method: &str, path: &str, headers: &str, body: &[u8]) -> HttpResponse {
    exchange(
        TcpStream::connect(addr).unwrap(),
        method,
        path,
        headers,
        body,
    )
}

/// Sends one request on `s` and reads the whole answer.
fn exchange(
    mut s: TcpStream,
    method: &str,
    path: &str,
    headers: &str,
    body: &[u8],
) -> HttpResponse {
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\n{headers}Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    common::parse_response(&raw).unwrap()
}

/// A TCP connection to `addr` from the loopback address `from` (so a test
/// can play several clients).
fn connect_from(from: &str, addr: SocketAddr) -> TcpStream {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind(format!("{from}:0").parse().unwrap()).unwrap();
        let stream = socket.connect(addr).await.unwrap().into_std().unwrap();
        stream.set_nonblocking(false).unwrap();
        stream
    })
}

/// `POST /v1/entries` of `body` from the loopback address `from`.
fn post_from(from: &str, addr: SocketAddr, body: &[u8]) -> HttpResponse {
    exchange(connect_from(from, addr), "POST", "/v1/entries", "", body)
}

fn writers_file(dir: &Path, lines: &str) -> String {
    std::fs::create_dir_all(dir).unwrap();
    let path = dir.join("writers");
    std::fs::write(&path, lines).unwrap();
    path.to_str().unwrap().to_string()
}

/// A writer's bearer token; the writers file holds its SHA-256.
const TOKEN: &str = "s3cret-token";

fn token_digest() -> String {
    use sha2::Digest;
    gatelog::tlog::merkle::hex(&sha2::Sha256::digest(TOKEN.as_bytes()))
}

#[test]
fn an_opaque_log_takes_entries_only_from_its_writers() {
    let tmp = tempfile::tempdir().unwrap();
    let file = writers_file(
        tmp.path(),
        &format!("# who writes\nhr-sync token-sha256:{}\n", token_digest()),
    );
    let log = tmp.path().join("log");
    let server = Server::start_command("serve", &log, &["--entries", "opaque", "--writers", &file]);
    for (headers, code) in [
        ("", "writer_required"),
        ("Authorization: Bearer wrong\r\n", "unknown_token"),
        ("Authorization: Basic czNjcmV0\r\n", "bad_authorization"),
    ] {
        let r = request(server.addr, "POST", "/v1/entries", headers, b"grant");
        assert_eq!(
            (r.status, r.error_code()),
            (401, code.to_string()),
            "{headers:?}"
        );
    }
    assert_eq!(server.tree_size(), 0, "a refused writer changes nothing");
    let auth = format!("Authorization: Bearer {TOKEN}\r\n");
    let r = request(server.addr, "POST", "/v1/entries", &auth, b"grant");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(server.tree_size(), 1);
    // Reads stay open to everyone.
    assert_eq!(
        http(server.addr, "GET", "/checkpoint", b"").unwrap().status,
        200
    );
    drop(server);

    // Without a writers file an opaque log takes no anonymous entry
    // unless asked to.
    let bare = Server::start_command("serve", &tmp.path().join("bare"), &["--entries", "opaque"]);
    let r = http(bare.addr, "POST", "/v1/entries", b"grant").unwrap();
    assert_eq!(
        (r.status, r.error_code()),
        (401, "writer_required".to_string())
    );
    let open = Server::start(&tmp.path().join("open"), &[]);
    assert_eq!(
        http(open.addr, "POST", "/v1/entries", b"grant")
            .unwrap()
            .status,
        200
    );
}

#[test]
fn sighup_reloads_the_writers_so_a_writer_is_cut_off_without_a_restart() {
    use sha2::Digest;
    let tmp = tempfile::tempdir().unwrap();
    let digest = |t: &str| gatelog::tlog::merkle::hex(&sha2::Sha256::digest(t.as_bytes()));
    let file = writers_file(
        tmp.path(),
        &format!("old token-sha256:{}\n", digest("old-token")),
    );
    let server = Server::start_command(
        "serve",
        &tmp.path().join("log"),
        &["--entries", "opaque", "--writers", &file],
    );
    let post = |token: &str, body: &[u8]| {
        request(
            server.addr,
            "POST",
            "/v1/entries",
            &format!("Authorization: Bearer {token}\r\n"),
            body,
        )
        .status
    };
    assert_eq!(post("old-token", b"one"), 200);
    assert_eq!(post("new-token", b"two"), 401);
    let hup = |file_text: &str| {
        std::fs::write(&file, file_text).unwrap();
        let pid = server.child.id().to_string();
        assert!(std::process::Command::new("kill")
            .args(["-HUP", &pid])
            .status()
            .unwrap()
            .success());
    };
    hup(&format!("new token-sha256:{}\n", digest("new-token")));
    let deadline = Instant::now() + Duration::from_secs(5);
    while post("new-token", b"two") != 200 {
        assert!(Instant::now() < deadline, "the new writer was never taken");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        post("old-token", b"three"),
        401,
        "the old writer is cut off"
    );
    // A broken file changes nothing: the writers in force stay.
    hup("new token-sha256:not-hex\n");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(post("new-token", b"four"), 200, "the writers in force stay");
}

#[test]
fn a_bad_writers_file_stops_the_server_naming_the_line() {
    let tmp = tempfile::tempdir().unwrap();
    let file = writers_file(tmp.path(), "ok token-sha256:00\n");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_gatelog"))
        .args([
            "serve",
            "--entries",
            "opaque",
            "--listen",
            "127.0.0.1:0",
            "--writers",
            &file,
            "--data-dir",
        ])
        .arg(tmp.path().join("log"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("line 1: a SHA-256 is 64 hex digits"), "{err}");
}

#[test]
fn an_address_over_its_quota_gets_429_with_retry_after() {
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start(
        tmp.path(),
        &["--address-rate", "0.5", "--address-burst", "3"],
    );
    for i in 0..3 {
        let r = http(
            server.addr,
            "POST",
            "/v1/entries",
            format!("e{i}").as_bytes(),
        )
        .unwrap();
        assert_eq!(r.status, 200, "{}", r.text());
    }
    let r = http(server.addr, "POST", "/v1/entries", b"e3").unwrap();
    assert_eq!(
        (r.status, r.error_code()),
        (429, "address_quota".to_string())
    );
    let retry: u64 = r
        .header("retry-after")
        .expect("Retry-After")
        .parse()
        .unwrap();
    assert!((1..=2).contains(&retry), "Retry-After {retry}");
    assert_eq!(r.json()["error"]["retry_after_secs"], retry);
    assert_eq!(server.tree_size(), 3, "a refused append changes nothing");
    // Another address has its own quota; reads are not limited.
    assert_eq!(post_from("127.0.0.2", server.addr, b"e4").status, 200);
    assert_eq!(
        http(server.addr, "GET", "/v1/log", b"").unwrap().status,
        200
    );
    let metrics = http(server.addr, "GET", "/metrics", b"").unwrap().text();
    assert!(
        metrics.contains("gatelog_quota_refused_total{quota=\"address\"} 1"),
        "{metrics}"
    );
}

fn admin(data_dir: &Path) -> NoteSigner {
    gatelog::sys::keyfile::read_private_key(&data_dir.join("admin.key")).unwrap()
}

fn registration(n: u64) -> (Statement, NoteSigner) {
    let id = format!("user{n}");
    let key = NoteSigner::from_seed(&id, [(n % 251) as u8 + 1; 32]).unwrap();
    let st = build::register(
        &human("admin"),
        &human(&id),
        "",
        key.verifier().public_key(),
        now_ms(),
    );
    (st, key)
}

#[test]
fn a_writer_quota_counts_only_new_entries_whose_signature_verified() {
    let tmp = tempfile::tempdir().unwrap();
    let server =
        Server::start_gatelog(tmp.path(), &["--writer-rate", "0.1", "--writer-burst", "3"]);
    let admin = admin(tmp.path());
    // An attacker floods entries in the admin's name with bad signatures:
    // each is refused and none spends the admin's quota.
    let forger = NoteSigner::from_seed("admin", [7; 32]).unwrap();
    let before_flood = server.tree_size();
    for n in 0..20 {
        let (mut st, _) = registration(100 + n);
        st.log_origin = server.origin().to_string();
        let mut signed = gatelog::access::entry::sign(&forger, &st);
        signed.key_id = admin.key_id();
        let r = http(server.addr, "POST", "/v1/entries", &signed.encode_to_vec()).unwrap();
        assert_eq!(
            (r.status, r.error_code()),
            (401, "bad_signature".to_string()),
            "{}",
            r.text()
        );
    }
    let size = server.tree_size();
    assert_eq!(size, before_flood, "refused forgeries change nothing");
    // The admin appends one entry; the attacker replays it (entries are
    // public) from another address: answered as a duplicate, at no cost
    // to the admin.
    let mut first = registration(0).0;
    first.log_origin = server.origin().to_string();
    let entry = gatelog::access::entry::sign(&admin, &first).encode_to_vec();
    assert_eq!(
        http(server.addr, "POST", "/v1/entries", &entry)
            .unwrap()
            .status,
        200
    );
    for _ in 0..10 {
        let r = post_from("127.0.0.2", server.addr, &entry);
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.json()["duplicate"], true);
    }
    // The admin's burst is intact: two more ...
    for n in 1..3 {
        let r = server.submit(&admin, &registration(n).0);
        assert_eq!(r.status, 200, "{}", r.text());
    }
    // ... and then it is spent.
    let r = server.submit(&admin, &registration(3).0);
    assert_eq!(
        (r.status, r.error_code()),
        (429, "writer_quota".to_string()),
        "{}",
        r.text()
    );
    assert!(r.header("retry-after").is_some());
    // Appended: the three registrations (and perhaps the log's time records).
    assert!(server.tree_size() >= size + 3 && server.tree_size() <= size + 6);
    let metrics = http(server.addr, "GET", "/metrics", b"").unwrap().text();
    assert!(
        metrics.contains("gatelog_quota_refused_total{quota=\"writer\"} 1"),
        "{metrics}"
    );
}

#[test]
fn good_submitters_are_served_through_a_bad_signature_flood() {
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start_gatelog(tmp.path(), &[]);
    let admin = admin(tmp.path());
    let addr = server.addr;
    let origin = server.origin().to_string();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    // Two flooders on other addresses send bad signatures in the admin's
    // name, as fast as they are answered.
    let flooders: Vec<_> = ["127.0.0.2", "127.0.0.3"]
        .into_iter()
        .map(|from| {
            let (stop, origin, admin_id) = (stop.clone(), origin.clone(), admin.key_id());
            std::thread::spawn(move || {
                let forger = NoteSigner::from_seed("admin", [9; 32]).unwrap();
                let mut sent = 0u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let (mut st, _) = registration(1000 + sent % 200);
                    st.log_origin = origin.clone();
                    let mut signed = gatelog::access::entry::sign(&forger, &st);
                    signed.key_id = admin_id;
                    let r = post_from(from, addr, &signed.encode_to_vec());
                    assert_eq!(r.status, 401, "{}", r.text());
                    sent += 1;
                }
                sent
            })
        })
        .collect();
    let mut slowest = Duration::ZERO;
    for n in 0..40 {
        let started = Instant::now();
        let r = server.submit(&admin, &registration(n).0);
        assert_eq!(r.status, 200, "{}", r.text());
        slowest = slowest.max(started.elapsed());
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let flooded: u64 = flooders.into_iter().map(|f| f.join().unwrap()).sum();
    eprintln!("{flooded} bad entries sent; slowest good submission {slowest:?}");
    assert!(flooded > 40, "the flood ran alongside");
    // A bound on service, not a measurement (the figure comes from the
    // load generator): a good submitter is never starved.
    assert!(
        slowest < Duration::from_secs(2),
        "a good submission took {slowest:?} during the flood"
    );
}

/// A log of 256 entries of 60 KB: its full entry bundle is ~15 MB, more
/// than a socket's buffers hold.
fn big_log(dir: &Path, extra: &[&str]) -> Server {
    let server = Server::start(dir, extra);
    let entry = vec![b'x'; 60_000];
    for i in 0..256u32 {
        let mut e = entry.clone();
        e[..4].copy_from_slice(&i.to_be_bytes());
        server.append(&e);
    }
    server
}

#[test]
fn slow_readers_and_slow_headers_cannot_hold_the_log() {
    let tmp = tempfile::tempdir().unwrap();
    let server = big_log(
        tmp.path(),
        &[
            "--max-connections",
            "2",
            "--write-timeout-secs",
            "1",
            "--read-timeout-secs",
            "1",
        ],
    );
    let addr = server.addr;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    // Two attackers on other addresses: one asks for the big bundle and
    // never reads, the other sends its headers a byte at a time; each
    // reconnects as soon as it is cut off.
    let attackers: Vec<_> = [("127.0.0.2", true), ("127.0.0.3", false)]
        .into_iter()
        .map(|(from, slow_reader)| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let mut s = connect_from(from, addr);
                    if slow_reader {
                        let _ = s.write_all(b"GET /tile/entries/000 HTTP/1.1\r\nHost: x\r\n\r\n");
                        // Never read; wait to be cut off.
                        let mut byte = [0u8; 1];
                        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
                        std::thread::sleep(Duration::from_secs(3));
                        let _ = s.read(&mut byte);
                    } else {
                        for b in b"GET /v1/log HTTP/1.1\r\nHost: x\r\n"
                            .iter()
                            .cycle()
                            .take(200)
                        {
                            if s.write_all(&[*b]).is_err() {
                                break;
                            }
                            std::thread::sleep(Duration::from_millis(300));
                            if stop.load(std::sync::atomic::Ordering::Relaxed) {
                                break;
                            }
                        }
                    }
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    for _ in 0..5 {
        let started = Instant::now();
        let r = http(addr, "GET", "/v1/log", b"").unwrap();
        assert_eq!(r.status, 200);
        let took = started.elapsed();
        assert!(
            took < Duration::from_secs(2),
            "GET /v1/log took {took:?} with slow clients holding the slots"
        );
        std::thread::sleep(Duration::from_millis(700));
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for a in attackers {
        a.join().unwrap();
    }
}
