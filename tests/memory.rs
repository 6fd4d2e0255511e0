//! The server's memory is bounded by a stated formula, whatever the log
//! holds (README, "Memory"): open chains of the largest size rules version
//! 3 allows, from identities with the longest names, against the formula,
//! while they are submitted and again after a restart replays them.
//!
//! `GATELOG_MEMORY_CHAINS` sets how many chains (default 1,000; the
//! nightly-style run uses 10,000); `GATELOG_MEMORY_SHAPE=request` opens
//! chains of one small request each instead (for the 1M figure).

mod common;

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};

use common::Server;
use gatelog::access::entry::build::{self, human, nhi, target};
use gatelog::access::entry::proto::{Actor, EntitlementDelta, EntitlementOp, EntryRef};
use gatelog::access::gate::limits::{
    MAX_CHAIN_ENTRIES, MAX_DELTA_NAMES, MAX_NAME_BYTES, MAX_OPINIONS_PER_ACTOR,
};
use gatelog::tlog::note::NoteSigner;

/// The formula (README, "Memory"), in bytes: a fixed part, which holds the
/// gate's statement caches (`--gate-statement-cache`, 16,384 statements,
/// and 1,024 read back, of up to `STATEMENT_BYTES`), and a part per open chain of the largest size.
const BASE_BYTES: u64 = 120 << 20;
const STATEMENT_BYTES: u64 = 14 << 10;
const CACHE_STATEMENTS: u64 = 16_384 + gatelog::server::statements::READ_BACK_CACHE as u64;
const LARGEST_CHAIN_BYTES: u64 = 16 << 10;
const SMALL_CHAIN_BYTES: u64 = 1 << 10;

/// Approvers enough to fill a chain of the largest size.
const APPROVERS: usize = MAX_CHAIN_ENTRIES.div_ceil(MAX_OPINIONS_PER_ACTOR);

fn peak_rss_bytes(server: &Server) -> u64 {
    peak_rss_of(server.child.id()).expect("VmHWM in /proc/PID/status")
}

/// A running process's peak RSS; None once it has exited.
fn peak_rss_of(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())?;
    Some(kib * 1024)
}

/// The audit's and the monitor's formula (README, "Memory"): a fixed part
/// (64 MiB of entries before they spill, cached statements, chain
/// reports in flight to the package's writer) and a part per open chain (its facts, as in the server, and the replay's own
/// per-chain data).
const OBSERVER_BASE_BYTES: u64 = 100 << 20;
/// Statements read back that stay cached (and the applied ones, cached by
/// bytes).
const OBSERVER_CACHED_STATEMENTS: u64 = 1024;
const OBSERVER_APPLIED_BYTES: u64 = gatelog::observers::spill::APPLIED_CACHE_BYTES as u64;
const OBSERVER_SPILL_BUDGET: u64 = 64 << 20;
/// Chain reports on their way to the audit's package writer: at most 6
/// slices of 256 entries, each ≤ ~28 KiB decoded and as bytes.
const OBSERVER_REPORTS_IN_FLIGHT: u64 = 42 << 20;

/// Audits `server`'s log with the real binary while reading its peak RSS
/// (sampled until it exits: the last reading is at most a few
/// milliseconds before the end); its exit code and peak.
fn audit_peak(server: &Server, out: &Path, spill: &Path) -> (i32, u64) {
    let url = format!("http://{}", server.addr);
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_gatelog"))
        // The default --chains all: every chain's entries go through the
        // package's writer, the heaviest case.
        .args(["audit", "--log", &url, "--vkey", &server.vkey])
        .arg("--out")
        .arg(out)
        .arg("--spill-dir")
        .arg(spill)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut peak = 0;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return (status.code().unwrap_or(-1), peak);
        }
        peak = peak.max(peak_rss_of(child.id()).unwrap_or(0));
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
}

/// Follows `server`'s log with `gatelog monitor` until it has replayed
/// all of it; the monitor's peak RSS.
fn monitor_peak(server: &Server, dir: &Path) -> u64 {
    let url = format!("http://{}", server.addr);
    let size = server.tree_size();
    let monitor = Server::start_command(
        "monitor",
        dir,
        &["--log", &url, "--vkey", &server.vkey, "--poll-ms", "200"],
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(1200);
    loop {
        let report = common::get_ok(monitor.addr, "/v1/monitor/obligations").json();
        if report["tree_size"].as_u64() == Some(size) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the monitor is behind: {report}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    peak_rss_bytes(&monitor)
}

fn long_name(prefix: &str) -> String {
    format!("{prefix}{}", "x".repeat(MAX_NAME_BYTES - prefix.len()))
}

/// Identity ids are signed-note key names: at most 128 bytes.
fn long_id(prefix: &str) -> String {
    format!("{prefix}{}", "x".repeat(128 - prefix.len()))
}

fn admin_key(dir: &Path) -> NoteSigner {
    let text = std::fs::read_to_string(dir.join("admin.key")).unwrap();
    NoteSigner::parse(text.trim()).unwrap()
}

struct Cast {
    requester: (Actor, NoteSigner),
    /// Enough approvers to fill a chain (each adds at most
    /// MAX_OPINIONS_PER_ACTOR decisions to one chain).
    approvers: Vec<(Actor, NoteSigner)>,
    executor: String,
}

fn register(server: &Server, admin: &NoteSigner, who: &Actor, owner: &str, seed: u8) -> NoteSigner {
    let key = NoteSigner::from_seed(&who.id, [seed; 32]).unwrap();
    let st = build::register(
        &human("admin"),
        who,
        owner,
        key.verifier().public_key(),
        gatelog::sys::clock::now_ms(),
    );
    let r = server.submit(admin, &st);
    assert_eq!(r.status, 200, "{}", r.text());
    key
}

fn largest_delta() -> EntitlementDelta {
    // Every name of a delta is counted (`after` and `ops` alike).
    let names: Vec<String> = (0..MAX_DELTA_NAMES / 2)
        .map(|i| long_name(&format!("e{i:02}-")))
        .collect();
    EntitlementDelta {
        after: names.clone(),
        ops: names
            .into_iter()
            .map(|entitlement| EntitlementOp { op: 1, entitlement })
            .collect(),
        ..Default::default()
    }
}

/// Opens chain `n`: its request and, for the largest shape, approvals
/// until the chain is full.
fn open_chain(server: &Server, cast: &Cast, n: usize, largest: bool) -> usize {
    let now = gatelog::sys::clock::now_ms;
    let (chain, tgt, delta) = if largest {
        (
            long_name(&format!("chain-{n:07}-")),
            target(&long_name("sys-"), &long_name("res-"), &long_name("subj-")),
            largest_delta(),
        )
    } else {
        (
            format!("chain-{n:07}"),
            target("github", "corp/payments", "dana"),
            build::delta(&["read"], &["write"], &[]),
        )
    };
    let request = build::request(
        &cast.requester.0,
        &chain,
        tgt,
        delta.clone(),
        &cast.executor,
        now(),
    );
    let r = server.submit(&cast.requester.1, &request);
    assert_eq!(r.status, 200, "{}", r.text());
    let j = r.json();
    let link = EntryRef {
        index: j["index"].as_u64().unwrap(),
        leaf_hash: common::b64(j["leaf_hash"].as_str().unwrap()),
    };
    let mut entries = 1;
    if !largest {
        return entries;
    }
    for (approver, key) in cast.approvers.iter().cycle() {
        let approval = build::approve(
            approver,
            &chain,
            vec![link.clone()],
            delta.clone(),
            now() + 3_600_000,
            now(),
        );
        let r = server.submit(key, &approval);
        if r.status == 409 && r.error_code() == "chain_full" {
            break;
        }
        assert_eq!(r.status, 200, "{}", r.text());
        entries += 1;
    }
    entries
}

#[test]
fn open_chains_of_the_largest_size_stay_within_the_stated_memory() {
    let chains: usize = std::env::var("GATELOG_MEMORY_CHAINS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000);
    let largest = std::env::var("GATELOG_MEMORY_SHAPE").as_deref() != Ok("request");
    let dir = tempfile::tempdir().unwrap();
    let limits = ["--address-rate", "0", "--writer-rate", "0"];
    let mut server = Server::start_gatelog(dir.path(), &limits);
    let admin = admin_key(dir.path());
    let name = |prefix: &str| {
        if largest {
            long_id(prefix)
        } else {
            prefix.to_string()
        }
    };
    let requester = human(&name("alice-"));
    let executor = nhi("deployer", "spiffe://corp.example/ns/ci/sa/deployer");
    let cast = Cast {
        requester: (
            requester.clone(),
            register(&server, &admin, &requester, "", 1),
        ),
        approvers: (0..APPROVERS)
            .map(|i| {
                let approver = human(&name(&format!("approver-{i}-")));
                let key = register(&server, &admin, &approver, "", 10 + i as u8);
                (approver, key)
            })
            .collect(),
        executor: executor.id.clone(),
    };
    register(&server, &admin, &human("olivia"), "", 3);
    register(&server, &admin, &executor, "olivia", 4);
    let identities = 3 + APPROVERS as u64;

    let next = AtomicUsize::new(0);
    let entries = AtomicUsize::new(0);
    let started = std::time::Instant::now();
    std::thread::scope(|s| {
        for _ in 0..8 {
            s.spawn(|| loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= chains {
                    break;
                }
                let e = open_chain(&server, &cast, n, largest);
                entries.fetch_add(e, Ordering::Relaxed);
                if n % 10_000 == 9_999 {
                    eprintln!("{} chains open after {:?}", n + 1, started.elapsed());
                }
            });
        }
    });
    let entries = entries.into_inner();
    if largest {
        assert_eq!(entries, chains * (MAX_CHAIN_ENTRIES - 2));
    }
    let per_chain = if largest {
        LARGEST_CHAIN_BYTES
    } else {
        SMALL_CHAIN_BYTES
    };
    let ceiling = BASE_BYTES
        + CACHE_STATEMENTS * STATEMENT_BYTES.min(if largest { u64::MAX } else { 2 << 10 })
        + per_chain * chains as u64
        + identities * (4 << 10);
    let peak = peak_rss_bytes(&server);
    eprintln!(
        "{chains} open chains ({entries} entries, {}): server peak RSS {} MiB, formula {} MiB, {:?}",
        if largest { "largest" } else { "one request each" },
        peak >> 20,
        ceiling >> 20,
        started.elapsed()
    );
    assert!(
        peak <= ceiling + ceiling / 5,
        "peak RSS {peak} exceeds the formula {ceiling} by more than 20%"
    );
    // A restart replays every open chain into the same bound.
    let size = server.tree_size();
    server.kill9();
    let server = Server::start_gatelog(dir.path(), &limits);
    assert_eq!(server.tree_size(), size);
    let replayed = peak_rss_bytes(&server);
    eprintln!("after a restart: peak RSS {} MiB", replayed >> 20);
    assert!(replayed <= ceiling + ceiling / 5);

    // The audit and the monitor replay the same log within their formula.
    let observer_ceiling = OBSERVER_BASE_BYTES
        + OBSERVER_SPILL_BUDGET
        + OBSERVER_REPORTS_IN_FLIGHT
        + OBSERVER_APPLIED_BYTES
        + OBSERVER_CACHED_STATEMENTS
            * STATEMENT_BYTES.min(if largest { u64::MAX } else { 2 << 10 })
        + per_chain * chains as u64
        + identities * (4 << 10);
    let spill = dir.path().join("spill");
    std::fs::create_dir(&spill).unwrap();
    let started = std::time::Instant::now();
    let (code, audit) = audit_peak(&server, &dir.path().join("audit"), &spill);
    eprintln!(
        "audit of {size} entries: peak RSS {} MiB, formula {} MiB, {:?}",
        audit >> 20,
        observer_ceiling >> 20,
        started.elapsed()
    );
    assert_eq!(code, 0, "the audit finds nothing wrong");
    assert_eq!(
        std::fs::read_dir(&spill).unwrap().count(),
        0,
        "the spill file is gone"
    );
    let started = std::time::Instant::now();
    let monitor = monitor_peak(&server, &dir.path().join("monitor"));
    eprintln!(
        "monitor of {size} entries: peak RSS {} MiB, {:?}",
        monitor >> 20,
        started.elapsed()
    );
    for (who, peak) in [("audit", audit), ("monitor", monitor)] {
        assert!(
            peak <= observer_ceiling + observer_ceiling / 5,
            "the {who}'s peak RSS {peak} exceeds the formula {observer_ceiling} by more than 20%"
        );
    }
}

fn link_of(r: &common::HttpResponse) -> EntryRef {
    assert_eq!(r.status, 200, "{}", r.text());
    let j = r.json();
    EntryRef {
        index: j["index"].as_u64().unwrap(),
        leaf_hash: common::b64(j["leaf_hash"].as_str().unwrap()),
    }
}

#[test]
fn statements_let_go_of_are_read_back_from_storage() {
    let dir = tempfile::tempdir().unwrap();
    // Batches of one and the smallest cache (65 statements).
    let args = ["--max-batch-size", "1", "--gate-statement-cache", "1"];
    let server = Server::start_gatelog(dir.path(), &args);
    let admin = admin_key(dir.path());
    let (alice, bob) = (human("alice"), human("bob"));
    let executor = nhi("deployer", "spiffe://corp.example/ns/ci/sa/deployer");
    let alice_key = register(&server, &admin, &alice, "", 1);
    let bob_key = register(&server, &admin, &bob, "", 2);
    register(&server, &admin, &human("olivia"), "", 3);
    let deployer_key = register(&server, &admin, &executor, "olivia", 4);
    let now = gatelog::sys::clock::now_ms;
    let d = build::delta(&["read"], &["write"], &[]);
    let tgt = || target("github", "corp/payments", "dana");
    let ask = |chain: &str| build::request(&alice, chain, tgt(), d.clone(), "deployer", now());
    let request = link_of(&server.submit(&alice_key, &ask("OLD")));
    // A hundred other requests push it out of the cache.
    for n in 0..100 {
        link_of(&server.submit(&alice_key, &ask(&format!("OTHER-{n}"))));
    }
    // Bob's approval is judged against the request, read back from disk.
    let approval = build::approve(
        &bob,
        "OLD",
        vec![request.clone()],
        d.clone(),
        now() + 60_000,
        now(),
    );
    let approval = link_of(&server.submit(&bob_key, &approval));
    for n in 100..200 {
        link_of(&server.submit(&alice_key, &ask(&format!("OTHER-{n}"))));
    }
    let policy = Some(gatelog::access::entry::proto::PolicyRef {
        policy_id: "default".into(),
        version: 1,
    });
    let intent = build::intent(
        &executor,
        "OLD",
        vec![request, approval.clone()],
        d.clone(),
        policy.clone(),
        now(),
    );
    link_of(&server.submit(&deployer_key, &intent));
    // A second intent on the same approval: refused, from what is on disk.
    let again = build::intent(&executor, "OLD", vec![approval], d, policy, now() - 1);
    let r = server.submit(&deployer_key, &again);
    assert_eq!(r.status, 403, "{}", r.text());
    let chain = common::get_ok(server.addr, "/v1/chains/OLD").json();
    assert_eq!(chain["entries"].as_array().unwrap().len(), 4, "{chain}");
}
