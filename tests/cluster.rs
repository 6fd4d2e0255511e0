//! Several gatelog nodes on one PostgreSQL log, end to end: real
//! PostgreSQL servers (started here), the real binary.
//!
//! - three nodes under concurrent appends: one total order, every
//!   acknowledged entry at its index, consistent checkpoints, duplicates
//!   across nodes answered with the first index;
//! - kill -9 of nodes mid-load, several rounds: the others go on, nothing
//!   acknowledged is lost;
//! - the gate across nodes: two executors racing on two nodes for one
//!   approval, exactly one admitted; a revocation on one node and an
//!   intent on another decided in log order;
//! - a node cut off from the database answers 503 and signs nothing, and
//!   goes on without a restart when the database is back;
//! - a key rotated on one node is checked again by another before its
//!   gate decides; a node whose clock is off the database's refuses to
//!   sequence;
//! - one set of witness rounds for the cluster, taken over when its
//!   leader dies, and nothing posted is served unchecked.

mod common;

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::acked::{append_until_stopped, check_log, Acked};
use common::pg::Pg;
use common::{b64, get_ok, http, Server};
use gatelog::access::entry;
use gatelog::access::entry::build::{self, delta, human, link, target};
use gatelog::access::entry::proto::{EntitlementDelta, EntryRef, PolicyRef};
use gatelog::access::entry::Statement;
use gatelog::tlog::checkpoint::Checkpoint;
use gatelog::tlog::merkle::leaf_hash;
use gatelog::tlog::note::{NoteSigner, NoteVerifier};
use gatelog::tlog::policy::Policy;
use gatelog::tlog::tlog_proof::TlogProof;

/// A log's database and key, and the flags that put a node on them.
struct Cluster {
    pg: Pg,
    url: String,
    key: std::path::PathBuf,
    dir: tempfile::TempDir,
}

impl Cluster {
    /// A PostgreSQL server with a migrated database and a log key; None
    /// when PostgreSQL is missing outside CI (skipped).
    fn new() -> Option<Cluster> {
        let pg = Pg::start()?;
        let url = pg.database("gatelog");
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("log.key");
        let (code, out) = common::run_gatelog(&[
            "db",
            "log-key",
            "--origin",
            "cluster.example/log",
            "--out",
            key.to_str().unwrap(),
        ]);
        assert_eq!(code, 0, "{out}");
        Some(Cluster { pg, url, key, dir })
    }

    /// Node `n` (its own data directory), with `args`.
    fn node(&self, n: usize, args: &[&str]) -> Server {
        self.node_with_env(n, args, &[])
    }

    /// Node `n` with `args` and `env` added to its environment.
    fn node_with_env(&self, n: usize, args: &[&str], env: &[(&str, &str)]) -> Server {
        let data = self.dir.path().join(format!("node{n}"));
        let mut all = vec![
            "--store",
            &self.url,
            "--log-key",
            self.key.to_str().unwrap(),
            "--address-rate",
            "0",
            "--writer-rate",
            "0",
        ];
        all.extend_from_slice(args);
        Server::start_with_env("serve", &data, &all, env)
    }

    fn opaque_node(&self, n: usize) -> Server {
        self.node(n, &["--entries", "opaque", "--anonymous-writes", "yes"])
    }
}

/// `gatelog db import --from DIR --to URL`: its exit code and output.
fn import(dir: &Path, url: &str) -> (i32, String) {
    common::run_gatelog(&["db", "import", "--from", dir.to_str().unwrap(), "--to", url])
}

fn verifier(server: &Server) -> NoteVerifier {
    NoteVerifier::parse(&server.vkey).unwrap()
}

/// Waits until every node serves the same checkpoint (each follows the
/// others within its --pg-follow-ms).
fn converge(nodes: &[&Server]) -> String {
    let started = Instant::now();
    loop {
        let seen: HashSet<String> = nodes
            .iter()
            .map(|n| get_ok(n.addr, "/checkpoint").text())
            .collect();
        if seen.len() == 1 {
            return seen.into_iter().next().unwrap();
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the nodes serve different checkpoints: {seen:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn three_nodes_one_order_every_acknowledged_entry_at_its_index() {
    let Some(cluster) = Cluster::new() else {
        return;
    };
    let nodes: Vec<Server> = (0..3).map(|n| cluster.opaque_node(n)).collect();
    let v = verifier(&nodes[0]);
    for n in &nodes {
        assert_eq!(n.vkey, nodes[0].vkey, "one log key");
    }
    let acked = Arc::new(Mutex::new(Acked::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let refs: Vec<&Server> = nodes.iter().collect();
    let clients = load(&refs, 12, "order", false, &stop, &acked);
    until_acknowledged(&acked, 1000);
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.join().unwrap();
    }
    let a = acked.lock().unwrap();
    assert!(a.entries.len() >= 1000, "{} appends", a.entries.len());
    // One order: no index was given twice.
    let indices: HashSet<u64> = a.entries.iter().map(|e| e.1).collect();
    assert_eq!(indices.len(), a.entries.len(), "an index was given twice");
    converge(&[&nodes[0], &nodes[1], &nodes[2]]);
    for n in &nodes {
        check_log(n, &v, &a);
    }
    // Duplicates across nodes: the first index, from any node.
    for (k, (entry, index)) in a.entries.iter().step_by(97).enumerate() {
        let r = http(nodes[k % 3].addr, "POST", "/v1/entries", entry).unwrap();
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.json()["index"].as_u64(), Some(*index));
        assert_eq!(r.json()["duplicate"], true);
    }
    eprintln!(
        "three nodes: {} acknowledged appends, one order",
        a.entries.len()
    );
}

#[test]
fn kill_9_of_a_node_mid_load_loses_nothing_and_the_others_go_on() {
    let Some(cluster) = Cluster::new() else {
        return;
    };
    let mut nodes: Vec<Server> = (0..3).map(|n| cluster.opaque_node(n)).collect();
    let v = verifier(&nodes[0]);
    let acked = Arc::new(Mutex::new(Acked::default()));
    let rounds = 3;
    for round in 0..rounds {
        let victim = round % 3;
        let stop = Arc::new(AtomicBool::new(false));
        let before = acked.lock().unwrap().entries.len();
        // A client of the killed node stops at its first connection
        // error (not acknowledged); any other answer but 200 fails.
        let refs: Vec<&Server> = nodes.iter().collect();
        let clients = load(&refs, 9, &format!("round {round}"), false, &stop, &acked);
        until_acknowledged(&acked, before + 600);
        nodes[victim].kill9();
        let killed = Instant::now();
        let at_kill = acked.lock().unwrap().entries.len();
        // The next acknowledged append through another node.
        let survivor = nodes[(victim + 1) % 3].addr;
        let next = loop {
            let r = http(
                survivor,
                "POST",
                "/v1/entries",
                format!("after kill {round}").as_bytes(),
            )
            .unwrap();
            if r.status == 200 {
                break killed.elapsed();
            }
            assert!(killed.elapsed() < Duration::from_secs(10), "{}", r.text());
        };
        until_acknowledged(&acked, at_kill.max(before + 700) + 300);
        stop.store(true, Ordering::Relaxed);
        for c in clients {
            c.join().unwrap();
        }
        let total = acked.lock().unwrap().entries.len();
        eprintln!(
            "round {round}: node {victim} killed after {} appends this round; next append through another node {next:?} later; {} more after",
            at_kill - before,
            total - at_kill
        );
        assert!(
            total - before >= 1000,
            "round {round}: only {} appends",
            total - before
        );
        assert!(total > at_kill, "round {round}: the other nodes stopped");
        nodes[victim] = cluster.opaque_node(victim);
        converge(&[&nodes[0], &nodes[1], &nodes[2]]);
        for n in &nodes {
            check_log(n, &v, &acked.lock().unwrap());
        }
    }
}

#[test]
fn a_node_cut_off_from_the_database_answers_503_signs_nothing_and_comes_back() {
    let Some(mut cluster) = Cluster::new() else {
        return;
    };
    let node = cluster.node(
        0,
        &[
            "--entries",
            "opaque",
            "--anonymous-writes",
            "yes",
            "--pg-statement-timeout-secs",
            "2",
        ],
    );
    node.append(b"before");
    let served = get_ok(node.addr, "/checkpoint").text();
    cluster.pg.kill9();
    let r = http(node.addr, "POST", "/v1/entries", b"while cut off").unwrap();
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(r.error_code(), "storage_unavailable", "{}", r.text());
    assert_eq!(
        get_ok(node.addr, "/checkpoint").text(),
        served,
        "signed nothing"
    );
    cluster.pg.run();
    // Back without a restart: the node reconnects.
    let started = Instant::now();
    loop {
        let r = http(node.addr, "POST", "/v1/entries", b"after").unwrap();
        if r.status == 200 {
            assert_eq!(r.json()["index"], 1, "the refused entry was not logged");
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(15), "{}", r.text());
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// People registered by the development admin of node 0.
struct Cast {
    keys: HashMap<String, NoteSigner>,
}

fn now() -> i64 {
    gatelog::sys::clock::now_ms()
}

fn at(r: &common::HttpResponse) -> EntryRef {
    assert_eq!(r.status, 200, "{}", r.text());
    let j = r.json();
    link(
        j["index"].as_u64().unwrap(),
        &b64(j["leaf_hash"].as_str().unwrap()),
    )
}

/// A person's key seed: the same in every test, so a key can be had again.
fn cast_seed(who: &str) -> [u8; 32] {
    let mut seed = [7u8; 32];
    seed[..who.len()].copy_from_slice(who.as_bytes());
    seed
}

impl Cast {
    fn new(admin_dir: &Path, via: &Server, people: &[&str]) -> Cast {
        let text = std::fs::read_to_string(admin_dir.join("admin.key")).unwrap();
        let admin = (human("admin"), NoteSigner::parse(text.trim()).unwrap());
        let mut keys = HashMap::new();
        for who in people {
            let key = NoteSigner::from_seed(who, cast_seed(who)).unwrap();
            let st = build::register(
                &admin.0,
                &human(who),
                "",
                key.verifier().public_key(),
                now(),
            );
            at(&via.submit(&admin.1, &st));
            keys.insert(who.to_string(), key);
        }
        Cast { keys }
    }

    fn send(&self, node: &Server, who: &str, st: &Statement) -> common::HttpResponse {
        node.submit(&self.keys[who], st)
    }

    /// alice asks, through `ask`, for write on `chain` with dave to
    /// execute; `approver` approves it through `approve_on`. Both links,
    /// and when.
    fn approved(
        &self,
        chain: &str,
        ask: &Server,
        approver: &str,
        approve_on: &Server,
    ) -> (EntryRef, EntryRef, i64) {
        let t = now();
        let tgt = target("github", "corp/payments", "alice");
        let req = at(&self.send(
            ask,
            "alice",
            &build::request(&human("alice"), chain, tgt, write(), "dave", t),
        ));
        let approval = build::approve(
            &human(approver),
            chain,
            vec![req.clone()],
            write(),
            t + 600_000,
            t,
        );
        (req, at(&self.send(approve_on, approver, &approval)), t)
    }
}

/// dave's intent on `chain`, linking `links`, issued at `t`.
fn dave_intent(chain: &str, links: Vec<EntryRef>, t: i64) -> Statement {
    build::intent(&human("dave"), chain, links, write(), default_policy(), t)
}

fn write() -> EntitlementDelta {
    delta(&["read"], &["write"], &[])
}

fn default_policy() -> Option<PolicyRef> {
    Some(PolicyRef {
        policy_id: "default".into(),
        version: 1,
    })
}

#[test]
fn the_gate_across_nodes_admits_one_executor_and_orders_a_revocation() {
    let Some(cluster) = Cluster::new() else {
        return;
    };
    // Node 0 starts first: its development admin and policy are the log's.
    let nodes: Vec<Server> = (0..3).map(|n| cluster.node(n, &["--dev"])).collect();
    let cast = Cast::new(
        &cluster.dir.path().join("node0"),
        &nodes[0],
        &["alice", "bob", "dave", "erin"],
    );
    for round in 0..10 {
        // Each step on another node than the last: the next node decides
        // only after catching up on it.
        let chain = format!("RACE-{round}");
        let (req, ok, t) = cast.approved(&chain, &nodes[0], "bob", &nodes[1]);
        // The named executor sends two different intents, to two nodes.
        let first = dave_intent(&chain, vec![req.clone(), ok.clone()], t + 1);
        let second = dave_intent(&chain, vec![req, ok], t + 2);
        let statuses: Vec<u16> = std::thread::scope(|s| {
            let a = s.spawn(|| cast.send(&nodes[1], "dave", &first).status);
            let b = s.spawn(|| cast.send(&nodes[2], "dave", &second).status);
            vec![a.join().unwrap(), b.join().unwrap()]
        });
        assert_eq!(
            statuses.iter().filter(|s| **s == 200).count(),
            1,
            "round {round}: {statuses:?}"
        );
        assert!(statuses.contains(&403), "round {round}: {statuses:?}");

        // A revocation on one node, an intent on another: log order.
        let chain = format!("REVOKE-{round}");
        let (req, ok, t) = cast.approved(&chain, &nodes[2], "erin", &nodes[0]);
        let intent = dave_intent(&chain, vec![req, ok.clone()], t + 1);
        let revoke = build::revoke(&human("erin"), ok, "race", t + 1);
        let (executed, revoked) = std::thread::scope(|s| {
            let a = s.spawn(|| cast.send(&nodes[1], "dave", &intent));
            let b = s.spawn(|| cast.send(&nodes[2], "erin", &revoke));
            (a.join().unwrap(), b.join().unwrap())
        });
        assert_eq!(revoked.status, 200, "{}", revoked.text());
        let revoked_at = revoked.json()["index"].as_u64().unwrap();
        match executed.status {
            200 => assert!(executed.json()["index"].as_u64().unwrap() < revoked_at),
            403 => {
                let e = &executed.json()["error"];
                assert_eq!(e["violations"][0]["code"], "approval_revoked", "{e}");
                assert!(e["refusal_record"]["index"].as_u64().unwrap() > revoked_at);
            }
            s => panic!("round {round}: HTTP {s}: {}", executed.text()),
        }
    }
    // Every node's gate holds the same chains.
    let cp = converge(&[&nodes[0], &nodes[1], &nodes[2]]);
    for n in &nodes {
        assert_eq!(
            get_ok(n.addr, "/v1/chains/RACE-3").json()["status"],
            get_ok(nodes[0].addr, "/v1/chains/RACE-3").json()["status"]
        );
    }
    // And the whole log audits clean, from any node.
    let out = tempfile::tempdir().unwrap();
    let (code, output, _) = nodes[2].audit(&[], &out.path().join("audit"));
    assert_eq!(code, 0, "{output}\n{cp}");
}

/// Waits until `acked` holds `count` appends (at most a minute: the
/// machine may be slow, but not stuck).
fn until_acknowledged(acked: &Mutex<Acked>, count: usize) {
    let started = Instant::now();
    while acked.lock().unwrap().entries.len() < count {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "{} of {count} appends acknowledged in a minute",
            acked.lock().unwrap().entries.len()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Appends from `clients` threads spread over `nodes` until `stop`; with
/// `unavailable_ok`, a 503 (store unavailable, outcome unknown) is neither
/// acknowledged nor a failure.
fn load(
    nodes: &[&Server],
    clients: usize,
    tag: &str,
    unavailable_ok: bool,
    stop: &Arc<AtomicBool>,
    acked: &Arc<Mutex<Acked>>,
) -> Vec<std::thread::JoinHandle<()>> {
    (0..clients)
        .map(|c| {
            let (addr, stop, acked) = (nodes[c % nodes.len()].addr, stop.clone(), acked.clone());
            let tag = tag.to_string();
            std::thread::spawn(move || {
                append_until_stopped(addr, &stop, &acked, unavailable_ok, |k| {
                    format!("{tag} client {c} entry {k}").into_bytes()
                })
            })
        })
        .collect()
}

#[test]
fn commits_cancelled_mid_flight_lose_no_served_checkpoint() {
    let Some(cluster) = Cluster::new() else {
        return;
    };
    let nodes: Vec<Server> = (0..3).map(|n| cluster.opaque_node(n)).collect();
    let refs: Vec<&Server> = nodes.iter().collect();
    let v = verifier(&nodes[0]);
    let acked = Arc::new(Mutex::new(Acked::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let clients = load(&refs, 9, "cancel", true, &stop, &acked);
    // Every gatelog connection is cut, again and again, wherever it is:
    // waiting for the lock, inside the transaction, committing.
    for _ in 0..15 {
        std::thread::sleep(Duration::from_millis(150));
        cluster
            .pg
            .psql(
                "postgres",
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'gatelog'",
            )
            .unwrap();
    }
    until_acknowledged(&acked, 500);
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.join().unwrap();
    }
    let a = acked.lock().unwrap();
    assert!(a.entries.len() >= 500, "{} appends", a.entries.len());
    let indices: HashSet<u64> = a.entries.iter().map(|e| e.1).collect();
    assert_eq!(indices.len(), a.entries.len(), "an index was given twice");
    converge(&refs);
    for n in &nodes {
        check_log(n, &v, &a);
    }
    // The nodes went on without a restart: each still takes appends.
    for (k, n) in nodes.iter().enumerate() {
        n.append(format!("after the cuts {k}").as_bytes());
    }
    let recoveries: u64 = nodes
        .iter()
        .map(|n| metric(n, "gatelog_recoveries_total"))
        .sum();
    eprintln!(
        "{} acknowledged appends through 15 rounds of cut connections; {recoveries} recoveries after a commit cut midway",
        a.entries.len()
    );
}

/// A counter from a node's /metrics.
fn metric(node: &Server, name: &str) -> u64 {
    get_ok(node.addr, "/metrics")
        .text()
        .lines()
        .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
        .unwrap_or(0)
}

#[test]
fn failover_to_the_synchronous_standby_loses_no_acknowledged_entry() {
    let Some(mut primary) = Pg::start_primary() else {
        return;
    };
    primary.psql("postgres", "CREATE DATABASE gatelog").unwrap();
    let standby = primary.standby();
    primary.require_sync_standby();
    primary.wait_for_sync_standby();
    let url = format!(
        "postgres://{}@127.0.0.1:{},127.0.0.1:{}/gatelog",
        common::pg::USER,
        primary.port,
        standby.port
    );
    let (code, out) = common::run_gatelog(&["db", "migrate", "--store", &url]);
    assert_eq!(code, 0, "{out}");
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("log.key");
    let (code, out) = common::run_gatelog(&[
        "db",
        "log-key",
        "--origin",
        "failover.example/log",
        "--out",
        key.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{out}");
    let nodes: Vec<Server> = (0..3)
        .map(|n| {
            Server::start_command(
                "serve",
                &dir.path().join(format!("node{n}")),
                &[
                    "--store",
                    &url,
                    "--log-key",
                    key.to_str().unwrap(),
                    "--entries",
                    "opaque",
                    "--anonymous-writes",
                    "yes",
                    "--address-rate",
                    "0",
                    "--pg-statement-timeout-secs",
                    "2",
                ],
            )
        })
        .collect();
    let refs: Vec<&Server> = nodes.iter().collect();
    let v = verifier(&nodes[0]);
    let acked = Arc::new(Mutex::new(Acked::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let clients = load(&refs, 24, "failover", true, &stop, &acked);
    until_acknowledged(&acked, 1000);
    eprintln!("failover: killing the primary");
    let before = acked.lock().unwrap().entries.len();
    primary.kill9();
    std::thread::sleep(Duration::from_millis(300));
    standby.promote();
    let promoted = Instant::now();
    let start = acked.lock().unwrap().entries.len();
    let next = loop {
        if acked.lock().unwrap().entries.len() > start {
            break promoted.elapsed();
        }
        assert!(
            promoted.elapsed() < Duration::from_secs(20),
            "no append acknowledged after the promotion"
        );
        std::thread::sleep(Duration::from_millis(5));
    };
    until_acknowledged(&acked, start + 300);
    stop.store(true, Ordering::Relaxed);
    eprintln!("failover: stopping the clients");
    for c in clients {
        c.join().unwrap();
    }
    eprintln!("failover: checking the log");
    let a = acked.lock().unwrap();
    eprintln!(
        "failover: {before} acknowledged before the primary's kill -9, {} after; next acknowledged append {next:?} after the promotion",
        a.entries.len() - start
    );
    assert!(before >= 1000, "{before} appends before the kill");
    assert!(
        a.entries.len() > start,
        "nothing acknowledged after the failover"
    );
    converge(&refs);
    for n in &nodes {
        check_log(n, &v, &a);
    }
}

#[test]
fn a_rocksdb_log_moves_into_postgresql_with_its_key_checkpoint_and_refusals() {
    let Some(pg) = Pg::start() else { return };
    let url = pg.database("moved");
    let dir = tempfile::tempdir().unwrap();
    let (vkey, checkpoint, refused) = {
        let server = Server::start_gatelog(dir.path(), &[]);
        let cast = Cast::new(dir.path(), &server, &["alice", "bob", "dave"]);
        let t = now();
        let chain = "MOVE-1";
        let tgt = target("github", "corp/payments", "alice");
        let req = at(&cast.send(
            &server,
            "alice",
            &build::request(&human("alice"), chain, tgt, write(), "dave", t),
        ));
        // bob is not the executor: refused, and recorded.
        let intent = build::intent(
            &human("bob"),
            chain,
            vec![req],
            write(),
            default_policy(),
            t,
        );
        let r = cast.send(&server, "bob", &intent);
        assert_eq!(r.status, 403, "{}", r.text());
        let record = r.json()["error"]["refusal_record"]["index"].clone();
        (
            server.vkey.clone(),
            get_ok(server.addr, "/checkpoint").text(),
            (intent, record),
        )
    };
    let (code, out) = import(dir.path(), &url);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains(&checkpoint), "{out}");
    // Once only: the database now holds a log.
    let (code, out) = import(dir.path(), &url);
    assert_ne!(code, 0, "{out}");
    // A node on the copy: the same key, the same checkpoint, the same
    // answer to a refused entry sent again, and it goes on appending.
    let key = dir.path().join("log.key");
    let node = Server::start_command(
        "serve",
        &dir.path().join("node"),
        &["--store", &url, "--log-key", key.to_str().unwrap()],
    );
    assert_eq!(node.vkey, vkey);
    assert_eq!(get_ok(node.addr, "/checkpoint").text(), checkpoint);
    let cast = Cast {
        keys: HashMap::from([(
            "bob".to_string(),
            NoteSigner::from_seed("bob", cast_seed("bob")).unwrap(),
        )]),
    };
    let again = cast.send(&node, "bob", &refused.0);
    assert_eq!(again.status, 403, "{}", again.text());
    assert_eq!(again.json()["error"]["refusal_record"]["index"], refused.1);
    let t = now();
    let req = build::request(
        &human("bob"),
        "MOVE-2",
        target("github", "corp/payments", "bob"),
        write(),
        "dave",
        t,
    );
    assert_eq!(cast.send(&node, "bob", &req).status, 200);
    let out = tempfile::tempdir().unwrap();
    let (code, output, _) = node.audit(&[], &out.path().join("audit"));
    assert_eq!(code, 0, "{output}");
}

#[test]
fn an_imported_log_of_several_tile_levels_serves_the_same_tiles() {
    let Some(pg) = Pg::start() else { return };
    let url = pg.database("tiles");
    let dir = tempfile::tempdir().unwrap();
    // Past one full level-0 tile twice, so level 1 has a tile too.
    let (checkpoint, tiles) = {
        let server = Server::start(dir.path(), &[]);
        for i in 0..700u32 {
            server.append(format!("entry {i}").as_bytes());
        }
        let tiles: Vec<Vec<u8>> = [
            "/tile/0/000",
            "/tile/0/002.p/188",
            "/tile/1/000.p/2",
            "/tile/entries/001",
        ]
        .iter()
        .map(|p| get_ok(server.addr, p).body)
        .collect();
        (get_ok(server.addr, "/checkpoint").text(), tiles)
    };
    let (code, out) = import(dir.path(), &url);
    assert_eq!(code, 0, "{out}");
    let key = dir.path().join("log.key");
    let node = Server::start_command(
        "serve",
        &dir.path().join("node"),
        &[
            "--store",
            &url,
            "--log-key",
            key.to_str().unwrap(),
            "--entries",
            "opaque",
            "--anonymous-writes",
            "yes",
        ],
    );
    assert_eq!(get_ok(node.addr, "/checkpoint").text(), checkpoint);
    for (path, want) in [
        "/tile/0/000",
        "/tile/0/002.p/188",
        "/tile/1/000.p/2",
        "/tile/entries/001",
    ]
    .iter()
    .zip(&tiles)
    {
        assert_eq!(&get_ok(node.addr, path).body, want, "{path}");
    }
    assert_eq!(node.append(b"after the move")["index"], 700);
}

/// alice's key after `rotations` rotations.
fn alice_key(rotations: u8) -> NoteSigner {
    NoteSigner::from_seed("alice", [0x40 + rotations; 32]).unwrap()
}

/// The admin's rotation of alice's key to `key`.
fn rotate_alice(key: &NoteSigner) -> Statement {
    let mut st = build::register(
        &human("admin"),
        &human("alice"),
        "",
        key.verifier().public_key(),
        now(),
    );
    if let Some(entry::Body::IdentityRegistration(r)) = &mut st.body {
        r.operation = entry::proto::identity_registration::Operation::RotateKey as i32;
    }
    st
}

fn alice_request(chain: &str) -> Statement {
    let tgt = target("github", "corp/payments", "alice");
    build::request(&human("alice"), chain, tgt, write(), "dave", now())
}

#[test]
fn a_key_rotated_on_another_node_is_checked_again_before_the_gate_decides() {
    let Some(cluster) = Cluster::new() else {
        return;
    };
    let a = cluster.node(0, &["--dev"]);
    // b never follows while idle: it learns of a's entries only when it
    // sequences, under the lock.
    let b = cluster.node(1, &["--dev", "--pg-follow-ms", "60000"]);
    let admin_text = std::fs::read_to_string(cluster.dir.path().join("node0/admin.key")).unwrap();
    let admin = NoteSigner::parse(admin_text.trim()).unwrap();
    let st = build::register(
        &human("admin"),
        &human("alice"),
        "",
        alice_key(0).verifier().public_key(),
        now(),
    );
    at(&a.submit(&admin, &st));
    let dave = NoteSigner::from_seed("dave", cast_seed("dave")).unwrap();
    let st = build::register(
        &human("admin"),
        &human("dave"),
        "",
        dave.verifier().public_key(),
        now(),
    );
    at(&a.submit(&admin, &st));
    // b does not know alice yet: the gate judges after catching up.
    at(&b.submit(&alice_key(0), &alice_request("KEY-0")));

    // a rotates alice's key; b still holds the old one when alice's old
    // key signs on b, and checks again once it has caught up.
    at(&a.submit(&admin, &rotate_alice(&alice_key(1))));
    let size = a.tree_size();
    let r = b.submit(&alice_key(0), &alice_request("KEY-OLD"));
    assert_eq!(r.status, 403, "{}", r.text());
    assert_eq!(r.error_code(), "key_revoked");
    assert_eq!(b.tree_size(), size, "b caught up and logged nothing");
    let r = b.submit(&alice_key(1), &alice_request("KEY-1"));
    assert_eq!(r.status, 200, "the new key signs: {}", r.text());

    // Again while b is behind, with the newer key: b's own check fails,
    // the log has moved on, so its gate judges after catching up.
    at(&a.submit(&admin, &rotate_alice(&alice_key(2))));
    let r = b.submit(&alice_key(2), &alice_request("KEY-2"));
    assert_eq!(r.status, 200, "{}", r.text());
    // A key alice never had is refused, behind or not.
    at(&a.submit(&admin, &rotate_alice(&alice_key(3))));
    let r = b.submit(&alice_key(9), &alice_request("KEY-9"));
    assert_eq!(r.status, 401, "{}", r.text());
    assert_eq!(r.error_code(), "unknown_key");
    let r = b.submit(&alice_key(2), &alice_request("KEY-2-OLD"));
    assert_eq!(r.status, 403, "{}", r.text());
    assert_eq!(r.error_code(), "key_revoked");
    assert_eq!(a.tree_size(), b.tree_size());
}

/// libfaketime, which shifts a process's clock; None (skipped) when
/// missing outside CI.
fn libfaketime() -> Option<String> {
    let found = [
        "/usr/lib/x86_64-linux-gnu",
        "/usr/lib/aarch64-linux-gnu",
        "/usr/lib",
    ]
    .iter()
    .map(|d| format!("{d}/faketime/libfaketime.so.1"))
    .find(|p| Path::new(p).exists());
    if found.is_none() {
        assert!(
            std::env::var("CI").is_err(),
            "libfaketime is missing (tools/setup --test installs faketime)"
        );
        eprintln!("skipped: libfaketime is missing (apt-get install faketime)");
    }
    found
}

#[test]
fn a_node_whose_clock_is_off_the_databases_refuses_to_sequence() {
    let Some(cluster) = Cluster::new() else {
        return;
    };
    let Some(lib) = libfaketime() else {
        return;
    };
    let good = cluster.opaque_node(0);
    good.append(b"on time");
    let shifted = |n: usize, offset: &str| {
        let args = ["--entries", "opaque", "--anonymous-writes", "yes"];
        let env = [
            ("LD_PRELOAD", lib.as_str()),
            ("FAKETIME", offset),
            ("FAKETIME_DONT_FAKE_MONOTONIC", "1"),
        ];
        cluster.node_with_env(n, &args, &env)
    };
    // Half a second off is within the tolerance.
    let near = shifted(1, "+0.5");
    near.append(b"half a second ahead");
    // What the database holds, not what a node has followed so far.
    let stored = || {
        cluster
            .pg
            .query_text("gatelog", "SELECT count(*)::text FROM gatelog_entries")
            .unwrap()
    };
    for (n, offset) in [(2, "+5"), (3, "-5")] {
        let off = shifted(n, offset);
        let size = stored();
        let r = http(off.addr, "POST", "/v1/entries", b"from a clock 5 s off").unwrap();
        assert_eq!(r.status, 503, "clock {offset} s: {}", r.text());
        assert_eq!(r.error_code(), "storage_unavailable");
        assert!(r.text().contains("off the database's"), "{}", r.text());
        assert_eq!(stored(), size, "nothing was sequenced");
    }
    good.append(b"the others go on");
    near.append(b"and so does the one nearly on time");
}

/// The witnesses' cosignatures on a node's /checkpoint, by name, if it
/// verifies under `policy`.
fn cosigners(node: &Server, policy: &Policy) -> (u64, Vec<String>) {
    let note = get_ok(node.addr, "/checkpoint").text();
    let (cp, names) = policy
        .verify(note.as_bytes())
        .unwrap_or_else(|e| panic!("{e}\n{note}"));
    (cp.size, names)
}

#[test]
fn one_set_of_witness_rounds_for_the_cluster_taken_over_when_its_leader_dies() {
    let Some(cluster) = Cluster::new() else {
        return;
    };
    let log_key = NoteSigner::parse(std::fs::read_to_string(&cluster.key).unwrap().trim()).unwrap();
    let log_vkey = log_key.verifier().to_vkey();
    let (witnesses, specs) = common::start_witnesses(&cluster.dir.path().join("w"), 2, &log_vkey);
    let mut policy = format!("log {log_vkey}\n");
    for (i, w) in witnesses.iter().enumerate() {
        policy.push_str(&format!("witness w{i} {} http://{}\n", w.vkey, w.addr));
    }
    policy.push_str("group both all w0 w1\nquorum both\n");
    let policy = Policy::parse(&policy).unwrap();
    let mut args = vec![
        "--entries",
        "opaque",
        "--anonymous-writes",
        "yes",
        "--witness-quorum",
        "2",
        "--witness-timeout-ms",
        "500",
    ];
    for s in &specs {
        args.extend(["--witness", s.as_str()]);
    }
    let mut nodes: Vec<Server> = (0..3).map(|n| cluster.node(n, &args)).collect();

    // Every node answers an append with a proof to a checkpoint both
    // witnesses cosigned: the leader's, or the one it posted.
    let verifier = verifier(&nodes[0]);
    let append_cosigned = |node: &Server, entry: &[u8]| -> Result<u64, String> {
        let r = http(node.addr, "POST", "/v1/entries", entry).unwrap();
        if r.status != 200 {
            return Err(r.text());
        }
        let bundle = TlogProof::parse(r.json()["proof"].as_str().unwrap()).unwrap();
        bundle.verify(&leaf_hash(entry), &verifier).unwrap();
        let (cp, names) = policy.verify(bundle.checkpoint.as_bytes()).unwrap();
        assert_eq!(names, ["w0", "w1"]);
        Ok(cp.size)
    };
    for i in 0..30u32 {
        let node = &nodes[i as usize % 3];
        append_cosigned(node, format!("cosigned {i}").as_bytes()).unwrap();
    }
    let leaders = |nodes: &[Server]| -> Vec<usize> {
        (0..nodes.len())
            .filter(|&n| metric(&nodes[n], "gatelog_witness_leading") == 1)
            .collect()
    };
    let led = leaders(&nodes);
    assert_eq!(led.len(), 1, "one node leads the rounds: {led:?}");
    let leader = led[0];
    for (n, node) in nodes.iter().enumerate() {
        let rounds = metric(node, "gatelog_witness_round_seconds_count");
        match n == leader {
            true => assert!(rounds > 0),
            false => assert_eq!(rounds, 0, "node {n} ran rounds of its own"),
        }
    }
    // Every node comes to serve the same cosigned checkpoint, byte for
    // byte.
    let started = Instant::now();
    loop {
        let seen: HashSet<String> = nodes
            .iter()
            .map(|n| get_ok(n.addr, "/checkpoint").text())
            .collect();
        let cosigned = cosigners(&nodes[0], &policy);
        if seen.len() == 1 && cosigned.0 == 30 && cosigned.1.len() == 2 {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "{seen:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
    let real = get_ok(nodes[0].addr, "/checkpoint").text();
    let real_cosignatures = real
        .split_once("\n\n")
        .unwrap()
        .1
        .split_once('\n')
        .unwrap()
        .1;
    assert_eq!(real_cosignatures.lines().count(), 2, "{real}");

    // Nothing posted is served unchecked. A database writer holds the
    // lease for a leader that does not exist: every node reads the posts.
    let sql = |q: &str| cluster.pg.psql("gatelog", q).unwrap();
    sql("UPDATE gatelog_witnessing SET leader = 'mallory', lease_until = clock_timestamp() + interval '1 hour'");
    let started = Instant::now();
    while nodes
        .iter()
        .any(|n| metric(n, "gatelog_witness_leading") == 1)
    {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "a node still leads"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // The log moves on without a round: the entry is logged, its writer
    // gets 503.
    let r = http(nodes[1].addr, "POST", "/v1/entries", b"uncosigned").unwrap();
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(r.error_code(), "witness_quorum_timeout");
    let started = Instant::now();
    while nodes.iter().any(|n| n.tree_size() != 31) {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the nodes did not follow"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let next = cluster
        .pg
        .query_text("gatelog", "SELECT checkpoint FROM gatelog_head")
        .unwrap();
    // Size 31 with another root (signed with the log's key), then the
    // true checkpoint of 31 with the cosignatures of 30 replayed.
    let forked = Checkpoint {
        origin: log_key.name().to_string(),
        size: 31,
        root: [9; 32],
        extensions: vec![],
    }
    .sign(&log_key)
    .unwrap();
    for checkpoint in [forked, next] {
        let before: Vec<u64> = nodes
            .iter()
            .map(|n| metric(n, "gatelog_witness_posted_refused_total"))
            .collect();
        let quote = |t: &str| t.replace('\'', "''");
        sql(&format!(
            "UPDATE gatelog_witnessing SET round_size = 31,
                round_checkpoint = '{0}', round_cosignatures = '{1}',
                quorate_size = 31, quorate_checkpoint = '{0}', quorate_cosignatures = '{1}'",
            quote(&checkpoint),
            quote(real_cosignatures)
        ));
        let started = Instant::now();
        for (n, node) in nodes.iter().enumerate() {
            while metric(node, "gatelog_witness_posted_refused_total") <= before[n] {
                assert!(
                    started.elapsed() < Duration::from_secs(10),
                    "node {n} did not refuse it"
                );
                std::thread::sleep(Duration::from_millis(20));
            }
            assert_eq!(get_ok(node.addr, "/checkpoint").text(), real, "node {n}");
        }
    }
    // The lease freed, a node leads again and cosigns what it missed.
    sql("UPDATE gatelog_witnessing SET leader = NULL");
    let started = Instant::now();
    while nodes.iter().any(|n| cosigners(n, &policy).0 != 31) {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "31 was not cosigned"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let led = leaders(&nodes);
    assert_eq!(led.len(), 1, "{led:?}");
    let leader = led[0];

    // The leader dies: another node takes the rounds over within its
    // lease (2 x 500 ms + 1 s), and appends through the others are
    // cosigned again.
    nodes[leader].kill9();
    let killed = Instant::now();
    let others: Vec<usize> = (0..3).filter(|&n| n != leader).collect();
    let mut i = 0;
    let size = loop {
        i += 1;
        let node = &nodes[others[i % 2]];
        match append_cosigned(node, format!("after {i}").as_bytes()) {
            Ok(size) => break size,
            Err(e) => assert!(killed.elapsed() < Duration::from_secs(15), "{e}"),
        }
    };
    let takeover = killed.elapsed();
    eprintln!("witness rounds taken over {takeover:?} after the leader's kill -9");
    assert!(size > 31);
    let leading: Vec<usize> = others
        .iter()
        .copied()
        .filter(|&n| metric(&nodes[n], "gatelog_witness_leading") == 1)
        .collect();
    assert_eq!(leading.len(), 1, "one of the others leads: {leading:?}");
    for &n in &others {
        append_cosigned(&nodes[n], format!("on node {n}").as_bytes()).unwrap();
    }

    // A leader that shuts down (SIGTERM) gives the lease up on its way out.
    let holder = || {
        cluster
            .pg
            .query_text(
                "gatelog",
                "SELECT coalesce(leader, '') FROM gatelog_witnessing",
            )
            .unwrap()
    };
    let leader = leading[0];
    let name = holder();
    assert!(!name.is_empty());
    let pid = nodes[leader].child.id().to_string();
    let term = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(term.success());
    let status = nodes[leader].child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    assert_ne!(holder(), name, "the lease is still the stopped node's");
    let last = others.into_iter().find(|&n| n != leader).unwrap();
    append_cosigned(&nodes[last], b"after a graceful stop").unwrap();
}
