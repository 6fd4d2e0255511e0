//! Split views caught: two real gatelog servers share one log key and
//! diverge; two gossiping monitors, each shown one view, both report the
//! split view within two poll intervals, exit with status 3, and write
//! evidence that `gatelog verify equivocation` accepts offline. A monitor
//! of a log that only grows keeps running.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{get_ok, Server};
use gatelog::tlog::checkpoint::Checkpoint;
use gatelog::tlog::note::{NoteSigner, NoteVerifier};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    let status = Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .unwrap();
    assert!(status.success());
}

fn wait_exit(server: &mut Server, within: Duration) -> Option<i32> {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if let Some(status) = server.child.try_wait().unwrap() {
            return status.code();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

/// Exit code of `gatelog verify equivocation --vkey VKEY FILE`.
fn verify_equivocation(vkey: &str, file: &std::path::Path) -> Option<i32> {
    let out = Command::new(env!("CARGO_BIN_EXE_gatelog"))
        .args(["verify", "equivocation", "--vkey", vkey])
        .arg(file)
        .output()
        .unwrap();
    eprintln!("{}", String::from_utf8_lossy(&out.stdout));
    out.status.code()
}

fn evidence_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("equivocation-")
        })
        .collect()
}

#[test]
fn gossiping_monitors_catch_a_forked_log() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir_a, dir_b) = (tmp.path().join("log-a"), tmp.path().join("log-b"));
    let mut first = Server::start(&dir_a, &["--origin", "fork.example/log"]);
    let vkey = first.vkey.clone();
    for e in ["common 1", "common 2", "common 3"] {
        first.append(e.as_bytes());
    }
    first.kill9();
    // The same key and history in two places: a log operator's fork.
    copy_dir(&dir_a, &dir_b);
    let (log_a, log_b) = (Server::start(&dir_a, &[]), Server::start(&dir_b, &[]));
    assert_eq!(log_a.vkey, log_b.vkey);
    for i in 0..2 {
        log_a.append(format!("only in view A {i}").as_bytes());
        log_b.append(format!("only in view B {i}").as_bytes());
    }

    let (port_a, port_b) = (free_port(), free_port());
    let monitor = |log: &Server, dir: &str, port: u16, peer: u16, alert: &str| {
        let (listen, peer) = (
            format!("127.0.0.1:{port}"),
            format!("http://127.0.0.1:{peer}"),
        );
        let log_url = format!("http://{}", log.addr);
        let args = [
            "--log",
            &log_url,
            "--vkey",
            &vkey,
            "--peer",
            &peer,
            "--listen",
            &listen,
            "--poll-ms",
            "200",
            "--alert-command",
            alert,
        ];
        Server::start_command("monitor", &tmp.path().join(dir), &args)
    };
    let alerted = tmp.path().join("alerted");
    let touch = format!("cp \"$GATELOG_EQUIVOCATION\" {}", alerted.display());
    let mut mon_a = monitor(&log_a, "mon-a", port_a, port_b, &touch);
    let mut mon_b = monitor(&log_b, "mon-b", port_b, port_a, "true");
    // An honest follower of view A alone sees nothing wrong as it grows.
    let honest_url = format!("http://{}", log_a.addr);
    let mut honest = Server::start_command(
        "monitor",
        &tmp.path().join("mon-honest"),
        &["--log", &honest_url, "--vkey", &vkey, "--poll-ms", "100"],
    );

    // Two poll intervals (plus start-up slack) to catch it.
    assert_eq!(
        wait_exit(&mut mon_a, Duration::from_millis(2 * 200 + 1500)),
        Some(3),
        "monitor A did not report"
    );
    assert_eq!(
        wait_exit(&mut mon_b, Duration::from_millis(2 * 200 + 1500)),
        Some(3),
        "monitor B did not report"
    );
    assert!(alerted.exists(), "the alert command did not run");
    for dir in ["mon-a", "mon-b"] {
        let files = evidence_files(&tmp.path().join(dir));
        assert_eq!(files.len(), 1, "{dir}: {files:?}");
        assert_eq!(verify_equivocation(&vkey, &files[0]), Some(0));
        // A malformed key is a usage error.
        assert_eq!(
            verify_equivocation("other.example/log+0b4b0e8e+AQ==", &files[0]),
            Some(2)
        );
        // Under another key of the same name, the evidence proves nothing.
        let another = NoteSigner::from_seed("fork.example/log", [9; 32])
            .unwrap()
            .verifier()
            .to_vkey();
        assert_eq!(verify_equivocation(&another, &files[0]), Some(1));
    }

    for i in 0..5 {
        log_a.append(format!("more in view A {i}").as_bytes());
    }
    std::thread::sleep(Duration::from_millis(400));
    assert_eq!(
        honest.child.try_wait().unwrap(),
        None,
        "the honest monitor stopped"
    );
    let key = NoteVerifier::parse(&vkey).unwrap();
    let latest = std::fs::read_to_string(tmp.path().join("mon-honest/latest.checkpoint")).unwrap();
    let seen = Checkpoint::open(latest.as_bytes(), &key).unwrap();
    let served =
        Checkpoint::open(get_ok(log_a.addr, "/checkpoint").text().as_bytes(), &key).unwrap();
    assert_eq!(seen, served);
    honest.kill9();
}

#[test]
fn a_monitor_of_a_new_log_follows_it_from_the_empty_tree() {
    let tmp = tempfile::tempdir().unwrap();
    let log = Server::start(&tmp.path().join("log"), &[]);
    let url = format!("http://{}", log.addr);
    let mut mon = Server::start_command(
        "monitor",
        &tmp.path().join("mon"),
        &["--log", &url, "--vkey", &log.vkey, "--poll-ms", "50"],
    );
    std::thread::sleep(Duration::from_millis(200));
    for i in 0..5u8 {
        log.append(&[i]);
        std::thread::sleep(Duration::from_millis(60));
    }
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(
        mon.child.try_wait().unwrap(),
        None,
        "the monitor stopped on an honest log"
    );
    let key = NoteVerifier::parse(&log.vkey).unwrap();
    let latest = std::fs::read_to_string(tmp.path().join("mon/latest.checkpoint")).unwrap();
    assert_eq!(Checkpoint::open(latest.as_bytes(), &key).unwrap().size, 5);
    mon.kill9();
}

#[test]
fn a_monitor_reports_overdue_break_glass_reviews_from_the_entries() {
    use gatelog::access::entry::build::{self, delta, human, target};
    let tmp = tempfile::tempdir().unwrap();
    let log = Server::start_gatelog(&tmp.path().join("log"), &[]);
    let admin_text = std::fs::read_to_string(tmp.path().join("log/admin.key")).unwrap();
    let admin = NoteSigner::parse(admin_text.trim()).unwrap();
    let now = gatelog::sys::clock::now_ms;
    let mut keys = Vec::new();
    for (i, id) in ["carol", "bob"].into_iter().enumerate() {
        let key = NoteSigner::from_seed(id, [i as u8 + 1; 32]).unwrap();
        let st = build::register(
            &human("admin"),
            &human(id),
            "",
            key.verifier().public_key(),
            now(),
        );
        assert_eq!(log.submit(&admin, &st).status, 200);
        keys.push(key);
    }
    let bg = build::break_glass(
        &human("carol"),
        "BG-7",
        target("postgres", "prod/payments", "carol"),
        delta(&[], &["superuser"], &[]),
        "INC-7",
        now() + 1_000,
        now(),
    );
    let r = log.submit(&keys[0], &bg);
    assert_eq!(r.status, 200);
    let answer = r.json();
    let bg_index = answer["index"].as_u64().unwrap();
    let bg_leaf = common::b64(answer["leaf_hash"].as_str().unwrap());
    let url = format!("http://{}", log.addr);
    let mon = Server::start_command(
        "monitor",
        &tmp.path().join("mon"),
        &["--log", &url, "--vkey", &log.vkey, "--poll-ms", "100"],
    );
    // The monitor finds the obligation in the entries, then sees it overdue.
    let wait_for = |pred: &dyn Fn(&serde_json::Value) -> bool| {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let report = get_ok(mon.addr, "/v1/monitor/obligations").json();
            if pred(&report) {
                return report;
            }
            assert!(Instant::now() < deadline, "monitor never saw it: {report}");
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    let report = wait_for(&|r| r["obligations"][0]["overdue"] == true);
    assert_eq!(report["obligations"][0]["chain_id"], "BG-7");
    assert_eq!(report["obligations"][0]["index"], bg_index);
    assert!(report["not_gatelog"].is_null());
    // Carol executes under it; another human reviews it afterwards: the
    // monitor's list empties.
    let intent = build::intent(
        &human("carol"),
        "BG-7",
        vec![build::link(bg_index, &bg_leaf)],
        delta(&[], &["superuser"], &[]),
        Some(gatelog::access::entry::proto::PolicyRef {
            policy_id: "default".into(),
            version: 1,
        }),
        now(),
    );
    let r = log.submit(&keys[0], &intent);
    assert_eq!(r.status, 200, "{}", r.text());
    let review = build::review(
        &human("bob"),
        "BG-7",
        vec![build::link(bg_index, &bg_leaf)],
        true,
        now(),
    );
    assert_eq!(log.submit(&keys[1], &review).status, 200);
    wait_for(&|r| r["obligations"].as_array().is_some_and(|o| o.is_empty()));
}

#[test]
fn a_log_that_is_down_for_proofs_is_an_outage_not_a_split_view() {
    use gatelog::tlog::merkle::{leaf_hash, node_hash};
    use std::io::{Read, Write};
    // A log that serves signed checkpoints (size 1, then 2) but answers
    // every proof request 503, as an overloaded log may.
    let key = NoteSigner::from_seed("flaky.example/log", [3; 32]).unwrap();
    let (a, b) = (leaf_hash(b"a"), leaf_hash(b"b"));
    let checkpoint = |size: u64, root| {
        Checkpoint {
            origin: key.name().to_string(),
            size,
            root,
            extensions: vec![],
        }
        .sign(&key)
        .unwrap()
    };
    let notes = [checkpoint(1, a), checkpoint(2, node_hash(&a, &b))];
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let served = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = served.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut buf = [0u8; 2048];
            let n = stream.read(&mut buf).unwrap_or(0);
            let request = String::from_utf8_lossy(&buf[..n]).to_string();
            let (status, body) = if request.starts_with("GET /checkpoint") {
                let k = count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                ("200 OK", notes[k.min(1)].clone())
            } else {
                (
                    "503 Service Unavailable",
                    "{\"error\":{\"code\":\"overloaded\"}}".to_string(),
                )
            };
            let _ = write!(
                stream,
                "HTTP/1.1 {status}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    let tmp = tempfile::tempdir().unwrap();
    let url = format!("http://{addr}");
    let mut mon = Server::start_command(
        "monitor",
        &tmp.path().join("mon"),
        &[
            "--log",
            &url,
            "--vkey",
            &key.verifier().to_vkey(),
            "--poll-ms",
            "50",
        ],
    );
    // Many more polls than the split-view threshold.
    let deadline = Instant::now() + Duration::from_secs(10);
    while served.load(std::sync::atomic::Ordering::SeqCst) < 12 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        served.load(std::sync::atomic::Ordering::SeqCst) >= 12,
        "the monitor stopped polling"
    );
    assert_eq!(
        mon.child.try_wait().unwrap(),
        None,
        "an outage was reported as a split view"
    );
    assert!(evidence_files(&tmp.path().join("mon")).is_empty());
    mon.kill9();
}

/// A hostile log, written around the gate (an opaque server takes any
/// bytes): an overdue break-glass "cleared" by a review whose signature is
/// garbage. The monitor's verified replay reports it; it does not believe
/// the review.
#[test]
fn a_monitor_reports_an_unsigned_review_instead_of_believing_it() {
    use gatelog::access::entry::build::{self, delta, human, target};
    use gatelog::access::entry::sign;
    use prost::Message;
    let tmp = tempfile::tempdir().unwrap();
    let log = Server::start(&tmp.path().join("log"), &[]);
    let admin = NoteSigner::from_seed("admin", [1; 32]).unwrap();
    let admin_pub = tmp.path().join("admin.key.pub");
    std::fs::write(&admin_pub, admin.verifier().to_vkey()).unwrap();
    let now = gatelog::sys::clock::now_ms;
    let (carol, bob) = (
        NoteSigner::from_seed("carol", [2; 32]).unwrap(),
        NoteSigner::from_seed("bob", [3; 32]).unwrap(),
    );
    for key in [&carol, &bob] {
        let st = build::register(
            &human("admin"),
            &human(key.name()),
            "",
            key.verifier().public_key(),
            now(),
        );
        assert_eq!(log.submit(&admin, &st).status, 200);
    }
    let bg = build::break_glass(
        &human("carol"),
        "BG-9",
        target("postgres", "prod/payments", "carol"),
        delta(&[], &["superuser"], &[]),
        "INC-9",
        now() + 500,
        now(),
    );
    let answer = log.submit(&carol, &bg).json();
    let bg_link = build::link(
        answer["index"].as_u64().unwrap(),
        &common::b64(answer["leaf_hash"].as_str().unwrap()),
    );
    let review = build::review(&human("bob"), "BG-9", vec![bg_link], true, now());
    let mut forged = sign(&bob, &review);
    forged.signature = vec![7; 64];
    let r = common::http(log.addr, "POST", "/v1/entries", &forged.encode_to_vec()).unwrap();
    assert_eq!(r.status, 200, "the opaque log takes it: {}", r.text());
    let review_index = r.json()["index"].as_u64().unwrap();
    let url = format!("http://{}", log.addr);
    let mon = tmp.path().join("mon");
    common::monitor_until(
        &[
            "--log",
            &url,
            "--vkey",
            &log.vkey,
            "--admin-key",
            admin_pub.to_str().unwrap(),
            "--data-dir",
            mon.to_str().unwrap(),
        ],
        &tmp.path().join("monitor.out"),
        &format!("FINDING at entry {review_index}: bad_signature"),
        Duration::from_secs(10),
    );
}

/// A log whose entry bundle does not hash to the checkpoint it signed:
/// evidence in the data dir, the alert command run, exit 3.
#[test]
fn a_monitor_keeps_evidence_of_entries_that_do_not_match_the_checkpoint() {
    use gatelog::tlog::merkle::{leaf_hash, node_hash};
    use gatelog::tlog::tiles::encode_bundle;
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("www");
    std::fs::create_dir_all(root.join("tile/entries/000.p")).unwrap();
    let key = NoteSigner::from_seed("liar.example/log", [4; 32]).unwrap();
    let note = Checkpoint {
        origin: key.name().to_string(),
        size: 2,
        root: node_hash(&leaf_hash(b"grant a"), &leaf_hash(b"grant b")),
        extensions: vec![],
    }
    .sign(&key)
    .unwrap();
    std::fs::write(root.join("checkpoint"), &note).unwrap();
    // The bundle served holds another second entry.
    let served: [&[u8]; 2] = [b"grant a", b"grant EVERYTHING"];
    std::fs::write(root.join("tile/entries/000.p/2"), encode_bundle(served)).unwrap();
    let www = common::StaticServer::start(&root);
    let alerted = tmp.path().join("alerted");
    let alert = format!("cp \"$GATELOG_EQUIVOCATION\" {}", alerted.display());
    let mut mon = Server::start_command(
        "monitor",
        &tmp.path().join("mon"),
        &[
            "--log",
            &www.url(),
            "--vkey",
            &key.verifier().to_vkey(),
            "--poll-ms",
            "100",
            "--alert-command",
            &alert,
        ],
    );
    assert_eq!(wait_exit(&mut mon, Duration::from_secs(10)), Some(3));
    let evidence: Vec<_> = std::fs::read_dir(tmp.path().join("mon"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_str()
                .unwrap()
                .starts_with("bad-entries-")
        })
        .collect();
    assert_eq!(evidence.len(), 1, "{evidence:?}");
    let text = std::fs::read_to_string(&evidence[0]).unwrap();
    assert!(
        text.contains("/tile/entries/000.p/2") && text.contains(&note),
        "{text}"
    );
    assert_eq!(
        std::fs::read_to_string(&alerted).unwrap(),
        text,
        "the alert command got the evidence"
    );
}

/// A pass cut short by an outage resumes where it stopped: a clean seeded
/// log whose second entry bundle fails three times is followed to its end
/// with no finding (replaying the first bundle again would report every
/// identity registered twice and every chain opened twice).
#[test]
fn a_monitor_resumes_after_an_outage_without_replaying_twice() {
    use std::io::{Read, Write};
    let tmp = tempfile::tempdir().unwrap();
    let log = tmp.path().join("log");
    let made = Command::new(env!("CARGO_BIN_EXE_gatelog-workload"))
        .args([
            "--seed",
            "23",
            "--chains",
            "120",
            "--inject-rate",
            "0",
            "--out",
        ])
        .arg(&log)
        .output()
        .unwrap();
    assert!(made.status.success());
    let vkey = std::fs::read_to_string(log.join("log.vkey")).unwrap();
    let size: u64 = std::fs::read_to_string(log.join("checkpoint"))
        .unwrap()
        .lines()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    assert!(size > 256, "two bundles at least: {size}");
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let failed = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let failures = failed.clone();
    let root = log.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut buf = [0u8; 2048];
            let n = stream.read(&mut buf).unwrap_or(0);
            let request = String::from_utf8_lossy(&buf[..n]).to_string();
            let path = request.split(' ').nth(1).unwrap_or("/").to_string();
            let second_bundle = path.starts_with("/tile/entries/001");
            let body = if second_bundle
                && failures.fetch_add(1, std::sync::atomic::Ordering::SeqCst) < 3
            {
                None
            } else {
                std::fs::read(root.join(path.trim_start_matches('/'))).ok()
            };
            let (status, body) = match body {
                Some(b) => ("200 OK", b),
                None => ("503 Service Unavailable", b"busy".to_vec()),
            };
            let _ = write!(
                stream,
                "HTTP/1.1 {status}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                body.len()
            );
            let _ = stream.write_all(&body);
        }
    });
    let url = format!("http://{addr}");
    let admin_pub = log.join("admin.key.pub");
    let out = std::fs::File::create(tmp.path().join("monitor.out")).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_gatelog"))
        .args(["monitor", "--listen", "127.0.0.1:0", "--log", &url])
        .args(["--vkey", vkey.trim(), "--poll-ms", "50", "--admin-key"])
        .arg(&admin_pub)
        .arg("--data-dir")
        .arg(tmp.path().join("mon"))
        .stdout(out)
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let listening = loop {
        let text = std::fs::read_to_string(tmp.path().join("monitor.out")).unwrap();
        if let Some(a) = text
            .lines()
            .find_map(|l| l.strip_prefix("gatelog: listening on http://"))
        {
            break a.trim().parse::<std::net::SocketAddr>().unwrap();
        }
        assert!(
            Instant::now() < deadline,
            "the monitor did not start: {text}"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    loop {
        let report = common::get_ok(listening, "/v1/monitor/obligations").json();
        if report["tree_size"].as_u64() == Some(size) {
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the monitor did not catch up: {report}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    child.wait().unwrap();
    assert!(
        failed.load(std::sync::atomic::Ordering::SeqCst) >= 3,
        "the outage happened"
    );
    let text = std::fs::read_to_string(tmp.path().join("monitor.out")).unwrap();
    assert!(!text.contains("FINDING"), "{text}");
}
