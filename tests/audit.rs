//! `gatelog audit` finds every injected violation in a log built without
//! the gate (a real `--entries opaque` server takes any signed entry) and
//! nothing else; a log run through the gate audits clean; a changed byte
//! in a mirror is caught.

mod common;

use std::collections::BTreeSet;

use common::{run_gatelog, Server};
use gatelog::access::entry::build::{self, delta, human, link, nhi, target};
use gatelog::access::entry::proto::{EntryRef, Statement};
use gatelog::sys::clock::now_ms;
use gatelog::tlog::note::NoteSigner;

const MINUTE: i64 = 60_000;

struct Ungated {
    log: Server,
}

impl Ungated {
    /// An opaque log in `dir/log` (it takes any bytes: the gate is not
    /// there), its bootstrap admin's key and public key file.
    fn start(dir: &std::path::Path) -> (Ungated, NoteSigner, std::path::PathBuf) {
        let log = Server::start(&dir.join("log"), &[]);
        let admin = NoteSigner::from_seed("admin", [1; 32]).unwrap();
        let admin_pub = dir.join("admin.key.pub");
        std::fs::write(&admin_pub, admin.verifier().to_vkey()).unwrap();
        (Ungated { log }, admin, admin_pub)
    }

    /// `gatelog audit` of this log over HTTP into `out`, with `extra`
    /// arguments: its exit code and output.
    fn audit(&self, out: &std::path::Path, extra: &[&str]) -> (i32, String) {
        let url = format!("http://{}", self.log.addr);
        let mut args = vec!["audit", "--log", &url, "--vkey", &self.log.vkey];
        args.extend_from_slice(extra);
        args.extend(["--out", out.to_str().unwrap()]);
        run_gatelog(&args)
    }

    fn put(&self, key: &NoteSigner, st: &Statement) -> EntryRef {
        let r = self.log.submit(key, st);
        assert_eq!(r.status, 200);
        let j = r.json();
        link(
            j["index"].as_u64().unwrap(),
            &common::b64(j["leaf_hash"].as_str().unwrap()),
        )
    }
}

/// (code, chain) of each finding in exceptions.csv.
fn findings(out: &std::path::Path) -> BTreeSet<(String, String)> {
    std::fs::read_to_string(out.join("exceptions.csv"))
        .unwrap()
        .lines()
        .skip(1)
        .map(|l| {
            let cols: Vec<&str> = l.splitn(4, ',').collect();
            (cols[2].to_string(), cols[1].to_string())
        })
        .collect()
}

#[test]
fn audit_finds_each_injected_violation_and_nothing_else() {
    let tmp = tempfile::tempdir().unwrap();
    let (u, admin, admin_pub) = Ungated::start(tmp.path());
    let key = |id: &str, seed: u8| NoteSigner::from_seed(id, [seed; 32]).unwrap();
    let (alice, bob, deployer) = (key("alice", 2), key("bob", 3), key("deployer", 4));
    let t = now_ms();
    let deployer_actor = nhi("deployer", "spiffe://corp/ci/deployer");
    for (actor, k) in [
        (human("alice"), &alice),
        (human("bob"), &bob),
        (deployer_actor.clone(), &deployer),
    ] {
        u.put(
            &admin,
            &build::register(&human("admin"), &actor, "", k.verifier().public_key(), t),
        );
    }
    let d = delta(&["read"], &["write"], &[]);
    let tgt = || target("github", "corp/app", "alice");

    // A clean chain.
    let req = u.put(
        &alice,
        &build::request(&human("alice"), "OK-1", tgt(), d.clone(), "", t),
    );
    let dec = u.put(
        &bob,
        &build::approve(
            &human("bob"),
            "OK-1",
            vec![req.clone()],
            d.clone(),
            t + MINUTE,
            t,
        ),
    );
    let int = u.put(
        &deployer,
        &build::intent(&deployer_actor, "OK-1", vec![req, dec], d.clone(), None, t),
    );
    u.put(
        &deployer,
        &build::outcome(&deployer_actor, "OK-1", vec![int], d.after.clone(), "c1", t),
    );

    let since = tmp.path().join("since.checkpoint");
    std::fs::write(&since, common::get_ok(u.log.addr, "/checkpoint").body).unwrap();

    // Injected: a self-approved execution the gate would have refused.
    let req = u.put(
        &alice,
        &build::request(&human("alice"), "SELF-1", tgt(), d.clone(), "", t),
    );
    let selfie = u.put(
        &alice,
        &build::approve(
            &human("alice"),
            "SELF-1",
            vec![req.clone()],
            d.clone(),
            t + MINUTE,
            t,
        ),
    );
    u.put(
        &deployer,
        &build::intent(
            &deployer_actor,
            "SELF-1",
            vec![req, selfie],
            d.clone(),
            None,
            t,
        ),
    );

    // Injected: an entry signed by a key nobody registered.
    let mallory = key("mallory", 9);
    u.put(
        &mallory,
        &build::request(&human("mallory"), "EVIL-1", tgt(), d.clone(), "", t),
    );

    // Injected: an outcome that is not what the intent declared.
    let req = u.put(
        &alice,
        &build::request(
            &human("alice"),
            "DRIFT-1",
            target("github", "corp/lib", "alice"),
            d.clone(),
            "",
            t,
        ),
    );
    let dec = u.put(
        &bob,
        &build::approve(
            &human("bob"),
            "DRIFT-1",
            vec![req.clone()],
            d.clone(),
            t + MINUTE,
            t,
        ),
    );
    let int = u.put(
        &deployer,
        &build::intent(
            &deployer_actor,
            "DRIFT-1",
            vec![req, dec],
            d.clone(),
            None,
            t,
        ),
    );
    u.put(
        &deployer,
        &build::outcome(
            &deployer_actor,
            "DRIFT-1",
            vec![int],
            vec!["read".into(), "admin".into()],
            "c2",
            t,
        ),
    );

    // Injected: a break-glass nobody reviewed, past its deadline.
    u.put(
        &bob,
        &build::break_glass(
            &human("bob"),
            "BG-1",
            target("db", "prod", "bob"),
            d.clone(),
            "incident",
            t - MINUTE,
            t - 2 * MINUTE,
        ),
    );

    let url = format!("http://{}", u.log.addr);
    let out = tmp.path().join("audit");
    let (code, _) = run_gatelog(&[
        "audit",
        "--log",
        &url,
        "--vkey",
        &u.log.vkey,
        "--admin-key",
        admin_pub.to_str().unwrap(),
        "--since",
        since.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(code, 1);
    let expected: BTreeSet<(String, String)> = [
        ("admitted_despite_gate", "SELF-1"),
        ("signer", "EVIL-1"),
        ("outcome_mismatch", "DRIFT-1"),
        ("unreviewed_break_glass", "BG-1"),
    ]
    .into_iter()
    .map(|(c, ch)| (c.to_string(), ch.to_string()))
    .collect();
    assert_eq!(findings(&out), expected);
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["tree_verified"], true);
    assert_eq!(manifest["since"]["consistent"], true);
    // The population: one row per chain, with who did what.
    let population = std::fs::read_to_string(out.join("population.csv")).unwrap();
    assert_eq!(population.lines().count(), 1 + 5, "{population}");
    let ok = population.lines().find(|l| l.starts_with("OK-1,")).unwrap();
    assert!(
        ok.contains(
            ",executed,alice,bob,deployer,spiffe://corp/ci/deployer,github,corp/app,alice,write,"
        ),
        "{ok}"
    );
    let report = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(report.contains("4 finding(s)") && report.contains("admitted_despite_gate"));

    // A changed byte in a mirror of it: the tree no longer verifies.
    let mirror = tmp.path().join("mirror");
    assert_eq!(
        run_gatelog(&[
            "mirror",
            "--log",
            &url,
            "--vkey",
            &u.log.vkey,
            mirror.to_str().unwrap()
        ])
        .0,
        0
    );
    let bundle = mirror.join("tile/entries/000.p/16");
    let mut data = std::fs::read(&bundle).unwrap();
    let at = data.len() / 2;
    data[at] ^= 0x01;
    std::fs::write(&bundle, data).unwrap();
    let out2 = tmp.path().join("audit2");
    let (code, stdout) = run_gatelog(&[
        "audit",
        "--log",
        mirror.to_str().unwrap(),
        "--vkey",
        &u.log.vkey,
        "--admin-key",
        admin_pub.to_str().unwrap(),
        "--out",
        out2.to_str().unwrap(),
    ]);
    assert_eq!(code, 1);
    assert!(stdout.contains("tree NOT verified"), "{stdout}");
    assert!(findings(&out2).iter().any(|(c, _)| c == "tree_mismatch"));
}

/// Runs `gatelog-workload` into `dir`; its JSON report.
fn workload(dir: &std::path::Path, seed: u64, chains: u64, rate: f64) -> serde_json::Value {
    workload_with(dir, &[], seed, chains, rate)
}

/// As [`workload`], with more flags (`--lifecycle`).
fn workload_with(
    dir: &std::path::Path,
    extra: &[&str],
    seed: u64,
    chains: u64,
    rate: f64,
) -> serde_json::Value {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_gatelog-workload"))
        .args(extra)
        .args(["--seed", &seed.to_string(), "--chains", &chains.to_string()])
        .args(["--inject-rate", &rate.to_string(), "--out"])
        .arg(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn audit_finds_exactly_what_the_seeded_workload_injected() {
    let tmp = tempfile::tempdir().unwrap();
    for seed in [11, 12] {
        let log = tmp.path().join(format!("log{seed}"));
        let out = tmp.path().join(format!("audit{seed}"));
        let report = workload(&log, seed, 600, 0.25);
        assert_eq!(audit_with(&log, &out, &[]).0, 1);
        let (found, expected) = found_and_expected(&out, &report);
        assert!(expected.len() >= 5, "too few kinds injected: {expected:?}");
        assert_eq!(found, expected, "seed {seed}");
    }
    // Nothing injected: nothing found.
    let log = tmp.path().join("clean");
    workload(&log, 13, 300, 0.0);
    assert_eq!(audit_with(&log, &tmp.path().join("clean-audit"), &[]).0, 0);
}

/// The access lifecycle at scale: a seeded log of rules version 5 where
/// every chain grants a role for an hour and it is removed when it ends,
/// with late and missing removals, removals that still see the access,
/// suspended assistants acting and grants an access review left
/// unreviewed injected. The audit finds exactly those.
#[test]
fn audit_finds_exactly_the_lifecycle_violations_the_workload_injected() {
    let tmp = tempfile::tempdir().unwrap();
    let run = |name: &str, seed: u64, rate: f64| {
        let log = tmp.path().join(name);
        let report = workload_with(&log, &["--lifecycle"], seed, 600, rate);
        let audit = tmp.path().join(format!("{name}-audit"));
        (report, audit_with(&log, &audit, &[]).0, audit)
    };
    let (report, code, audit) = run("lifecycle", 5, 0.25);
    assert_eq!(code, 1);
    let (found, expected) = found_and_expected(&audit, &report);
    assert_eq!(expected.len(), 6, "every kind injected: {expected:?}");
    assert_eq!(found, expected);
    // Nothing injected: nothing found.
    let (_, code, audit) = run("clean", 6, 0.0);
    assert_eq!(
        code,
        0,
        "{}",
        std::fs::read_to_string(audit.join("exceptions.csv")).unwrap_or_default()
    );
}

/// The findings in the package at `out`, by code, and those the workload
/// `report` says it injected.
type ByCode = std::collections::BTreeMap<String, u64>;
fn found_and_expected(out: &std::path::Path, report: &serde_json::Value) -> (ByCode, ByCode) {
    let mut found = ByCode::default();
    let text = std::fs::read_to_string(out.join("exceptions.csv")).unwrap();
    for line in text.lines().skip(1) {
        *found
            .entry(line.split(',').nth(2).unwrap().to_string())
            .or_default() += 1;
    }
    let expected = serde_json::from_value(report["expected_findings"].clone()).unwrap();
    (found, expected)
}

fn audit_with(log: &std::path::Path, out: &std::path::Path, extra: &[&str]) -> (i32, String) {
    let vkey = std::fs::read_to_string(log.join("log.vkey")).unwrap();
    let admin = log.join("admin.key.pub");
    let mut args = vec![
        "audit",
        "--log",
        log.to_str().unwrap(),
        "--vkey",
        vkey.trim(),
        "--admin-key",
        admin.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    run_gatelog(&args)
}

/// Every chain file holds each entry's bytes and an inclusion proof that
/// verifies (leaf hash recomputed here with sha2) against the checkpoint.
#[test]
fn chain_files_prove_every_entry_of_every_chain() {
    use sha2::{Digest, Sha256};
    let tmp = tempfile::tempdir().unwrap();
    let log = tmp.path().join("log");
    workload(&log, 21, 200, 0.0);
    let out = tmp.path().join("audit");
    assert_eq!(audit_with(&log, &out, &[]).0, 0);
    let population = std::fs::read_to_string(out.join("population.csv")).unwrap();
    let rows: Vec<&str> = population.lines().skip(1).collect();
    assert_eq!(rows.len(), 200);
    let mut entries = 0;
    for row in &rows {
        let file = row.rsplit(',').next().unwrap();
        assert!(file.starts_with("chains/"), "{row}");
        let chain: serde_json::Value =
            serde_json::from_slice(&std::fs::read(out.join(file)).unwrap()).unwrap();
        assert_eq!(chain["chain_id"], row.split(',').next().unwrap());
        let size = chain["tree_size"].as_u64().unwrap();
        let root: [u8; 32] = common::b64(chain["root"].as_str().unwrap())
            .try_into()
            .unwrap();
        for e in chain["entries"].as_array().unwrap() {
            let bytes = common::b64(e["entry"].as_str().unwrap());
            let leaf: [u8; 32] = Sha256::new()
                .chain_update([0u8])
                .chain_update(&bytes)
                .finalize()
                .into();
            assert_eq!(common::b64(e["leaf_hash"].as_str().unwrap()), leaf);
            let proof = common::hash_list(&e["inclusion_proof"]);
            let index = e["index"].as_u64().unwrap();
            gatelog::tlog::merkle::verify_inclusion(index, size, &leaf, &proof, &root)
                .unwrap_or_else(|err| panic!("{file} entry {index}: {err}"));
            entries += 1;
        }
    }
    assert!(entries >= 200 * 4, "{entries} entries in chain files");

    // Only the chains with findings get a file with --chains exceptions.
    let bad = tmp.path().join("bad");
    workload(&bad, 22, 200, 0.3);
    let out = tmp.path().join("bad-audit");
    assert_eq!(audit_with(&bad, &out, &["--chains", "exceptions"]).0, 1);
    let population = std::fs::read_to_string(out.join("population.csv")).unwrap();
    for row in population.lines().skip(1) {
        let cols: Vec<&str> = row.split(',').collect();
        let findings: u64 = cols[cols.len() - 2].parse().unwrap();
        let file = cols[cols.len() - 1];
        assert_eq!(findings > 0, !file.is_empty(), "{row}");
        assert_eq!(out.join(file).is_file(), findings > 0, "{row}");
    }
}

/// `--period` reports the chains opened in it and the rule findings on
/// entries issued in it; the whole tree is still verified.
#[test]
fn the_period_limits_the_population_and_findings() {
    let tmp = tempfile::tempdir().unwrap();
    let log = tmp.path().join("log");
    workload(&log, 31, 400, 0.2);
    let all = tmp.path().join("all");
    assert_eq!(audit_with(&log, &all, &[]).0, 1);
    // The workload's clock starts 60 days ago, one second per entry: cut
    // its span in two at the middle chain's opening time.
    let population = std::fs::read_to_string(all.join("population.csv")).unwrap();
    let opened: Vec<String> = population
        .lines()
        .skip(1)
        .map(|l| l.split(',').nth(2).unwrap().to_string())
        .collect();
    let mut sorted = opened.clone();
    sorted.sort();
    let middle = &sorted[sorted.len() / 2];
    let first = tmp.path().join("first");
    let (code, stdout) = audit_with(&log, &first, &["--period", &format!("..{middle}")]);
    let second = tmp.path().join("second");
    audit_with(&log, &second, &["--period", &format!("{middle}..")]);
    let manifest = |dir: &std::path::Path| -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap()
    };
    let (m_all, m1, m2) = (manifest(&all), manifest(&first), manifest(&second));
    assert_eq!(m1["tree_verified"], true, "{stdout}");
    assert_eq!(m1["period"]["to"], middle.as_str());
    assert!(m1["period"]["from"].is_null());
    assert_eq!(m1["chains"].as_u64().unwrap(), sorted.len() as u64 / 2);
    assert_eq!(
        m1["chains"].as_u64().unwrap() + m2["chains"].as_u64().unwrap(),
        m_all["chains"].as_u64().unwrap()
    );
    assert_eq!(
        m1["chains"].as_u64().unwrap() + m1["chains_outside_period"].as_u64().unwrap(),
        m_all["chains"].as_u64().unwrap()
    );
    // Rule findings split between the halves (integrity ones, here the
    // unknown signers, are reported by both).
    let count = |m: &serde_json::Value| m["findings"].as_u64().unwrap();
    let signer = |m: &serde_json::Value| m["findings_by_code"]["signer"].as_u64().unwrap_or(0);
    assert!(count(&m1) > 0 && count(&m2) > 0 && code == 1);
    assert_eq!(
        count(&m1) - signer(&m1) + count(&m2) - signer(&m2),
        count(&m_all) - signer(&m_all)
    );
    for row in std::fs::read_to_string(first.join("population.csv"))
        .unwrap()
        .lines()
        .skip(1)
    {
        assert!(row.split(',').nth(2).unwrap() < middle.as_str(), "{row}");
    }
    // A period that is not one is a usage error.
    assert_eq!(
        audit_with(&log, &tmp.path().join("x"), &["--period", "2026-02-30.."]).0,
        2
    );
}

/// A package is evidence: a second audit into the same directory is
/// refused, and the first package is left as it was.
#[test]
fn an_existing_package_is_never_overwritten() {
    let tmp = tempfile::tempdir().unwrap();
    let log = tmp.path().join("log");
    workload(&log, 51, 20, 0.0);
    let out = tmp.path().join("audit");
    assert_eq!(audit_with(&log, &out, &[]).0, 0);
    let manifest = std::fs::read(out.join("manifest.json")).unwrap();
    let (code, _) = audit_with(&log, &out, &[]);
    assert_eq!(code, 2);
    assert_eq!(std::fs::read(out.join("manifest.json")).unwrap(), manifest);
}

/// A hostile log (every entry signed by a registered key) that once made
/// the audit panic: an access request on behalf of someone with no
/// delegation, an entry dated `i64::MIN` seconds, and a refusal record of
/// an entry the gate could never have seen. Each is a finding; the audit
/// writes its package and exits 1.
#[test]
fn a_hostile_log_cannot_crash_the_audit() {
    use gatelog::access::entry::proto::{statement::Body, GateRefusal, OnBehalfOf, RuleViolation};
    use gatelog::access::entry::Timestamp;
    let tmp = tempfile::tempdir().unwrap();
    let (u, admin, admin_pub) = Ungated::start(tmp.path());
    let alice = NoteSigner::from_seed("alice", [2; 32]).unwrap();
    let t = now_ms();
    u.put(
        &admin,
        &build::register(
            &human("admin"),
            &human("alice"),
            "",
            alice.verifier().public_key(),
            t,
        ),
    );
    let d = delta(&["read"], &["write"], &[]);
    let tgt = || target("github", "corp/app", "alice");

    let mut proxy = build::request(&human("alice"), "OBO-1", tgt(), d.clone(), "", t);
    proxy.on_behalf_of = Some(OnBehalfOf {
        principals: vec!["bob".into()],
        delegation: None,
    });
    u.put(&alice, &proxy);

    let mut ancient = build::request(&human("alice"), "MIN-1", tgt(), d.clone(), "", t);
    ancient.issued_at = Some(Timestamp {
        seconds: i64::MIN,
        nanos: 0,
    });
    u.put(&alice, &ancient);

    // A "refusal record" (not signed by the log: an opaque log takes any
    // bytes) of the proxy request, which the gate could never have seen.
    use prost::Message;
    let refused = gatelog::access::entry::sign(&alice, &proxy).encode_to_vec();
    let mut record = build::request(&human("alice"), "OBO-1", tgt(), d.clone(), "", t);
    record.body = Some(Body::GateRefusal(GateRefusal {
        refused_entry: refused,
        violations: vec![RuleViolation {
            rule: 6,
            code: "delegation".into(),
            message: "made up".into(),
        }],
        policy: None,
        index: 3,
    }));
    u.put(&alice, &record);

    let out = tmp.path().join("audit");
    let (code, stdout) = u.audit(&out, &["--admin-key", admin_pub.to_str().unwrap()]);
    assert_eq!(code, 1, "{stdout}");
    let found = findings(&out);
    assert!(
        found.contains(&("invalid_entry".to_string(), "OBO-1".to_string())),
        "{found:?}"
    );
    assert!(
        found.contains(&("invalid_entry".to_string(), "MIN-1".to_string())),
        "{found:?}"
    );
    // The forged record: not the log's, and of an entry the gate never saw.
    assert!(
        found.contains(&("signer".to_string(), "OBO-1".to_string())),
        "{found:?}"
    );
    assert!(
        found.contains(&("refusal_unjustified".to_string(), "OBO-1".to_string())),
        "{found:?}"
    );
    assert!(out.join("manifest.json").exists() && out.join("report.html").exists());
}

/// A log of rules version 2 written around the gate: an opaque server
/// takes whatever we append, including records signed with its own key
/// (read from its data dir, as a dishonest operator could).
#[test]
fn a_rules_v2_log_written_around_the_gate_is_caught_per_kind() {
    use gatelog::access::entry::proto::{decision, GateRefusal, RuleViolation};
    use gatelog::access::entry::{self, Body};
    use prost::Message;
    let tmp = tempfile::tempdir().unwrap();
    let (u, admin, _) = Ungated::start(tmp.path());
    let (log_key, origin) = rules_log(&u, tmp.path(), &admin, 2);
    let t = now_ms();
    let by_log = |body: Body| log_record(&log_key, &origin, t, body);
    let key = |id: &str, seed: u8| NoteSigner::from_seed(id, [seed; 32]).unwrap();
    let (alice, bob, carol, olivia, deployer) = (
        key("alice", 2),
        key("bob", 3),
        key("carol", 5),
        key("olivia", 6),
        key("deployer", 4),
    );
    let deployer_actor = nhi("deployer", "spiffe://corp/ci/deployer");
    for (actor, owner, k) in [
        (human("alice"), "", &alice),
        (human("bob"), "", &bob),
        (human("carol"), "", &carol),
        (human("olivia"), "", &olivia),
        (deployer_actor.clone(), "olivia", &deployer),
    ] {
        u.put(
            &admin,
            &build::register(&human("admin"), &actor, owner, k.verifier().public_key(), t),
        );
    }
    u.put(
        &admin,
        &build::publish_policy(
            &human("admin"),
            "default",
            1,
            gatelog::server::run::DEV_POLICY,
            0,
            t,
        ),
    );
    let policy = Some(gatelog::access::entry::proto::PolicyRef {
        policy_id: "default".into(),
        version: 1,
    });
    let d = delta(&["read"], &["write"], &[]);
    let tgt = || target("github", "corp/app", "alice");
    let request = |chain: &str, d: &gatelog::access::entry::proto::EntitlementDelta| {
        u.put(
            &alice,
            &build::request(&human("alice"), chain, tgt(), d.clone(), "deployer", t),
        )
    };
    let approve = |who: &NoteSigner,
                   chain: &str,
                   req: &EntryRef,
                   d: &gatelog::access::entry::proto::EntitlementDelta| {
        u.put(
            who,
            &build::approve(
                &human(who.name()),
                chain,
                vec![req.clone()],
                d.clone(),
                t + MINUTE,
                t,
            ),
        )
    };
    let intent = |who: &NoteSigner,
                  chain: &str,
                  links: Vec<EntryRef>,
                  d: &gatelog::access::entry::proto::EntitlementDelta| {
        let actor = if who.name() == "deployer" {
            deployer_actor.clone()
        } else {
            human(who.name())
        };
        u.put(
            who,
            &build::intent(&actor, chain, links, d.clone(), policy.clone(), t),
        )
    };
    let outcome = |who: &NoteSigner, chain: &str, int: EntryRef| {
        let actor = if who.name() == "deployer" {
            deployer_actor.clone()
        } else {
            human(who.name())
        };
        u.put(
            who,
            &build::outcome(&actor, chain, vec![int], d.after.clone(), "c", t),
        )
    };

    // Legitimate chains: no finding.
    for chain in ["OK-1", "OK-2"] {
        let req = request(chain, &d);
        let dec = approve(&bob, chain, &req, &d);
        let int = intent(&deployer, chain, vec![req, dec], &d);
        outcome(&deployer, chain, int);
    }
    // A self-approval the gate refuses when made (and the intent on it).
    let req = request("SELF", &d);
    let selfie = approve(&alice, "SELF", &req, &d);
    intent(&deployer, "SELF", vec![req, selfie], &d);
    // The person behind the executor approving.
    let req = request("OWNER", &d);
    approve(&olivia, "OWNER", &req, &d);
    // Someone other than the named executor executing.
    let req = request("EXEC", &d);
    let dec = approve(&bob, "EXEC", &req, &d);
    intent(&carol, "EXEC", vec![req, dec], &d);
    // The outcome reported by someone other than the executor.
    let req = request("OUT", &d);
    let dec = approve(&bob, "OUT", &req, &d);
    let int = intent(&deployer, "OUT", vec![req, dec], &d);
    outcome(&bob, "OUT", int);
    // An approval and an execution broader than the request.
    let broad = delta(&["read"], &["admin"], &[]);
    let req = request("BROAD", &d);
    let dec = approve(&bob, "BROAD", &req, &broad);
    intent(&deployer, "BROAD", vec![req, dec], &broad);
    // A DENY the executor leaves out.
    let req = request("DENY", &d);
    let dec = approve(&bob, "DENY", &req, &d);
    let mut no = build::approve(
        &human("carol"),
        "DENY",
        vec![req.clone()],
        d.clone(),
        t + MINUTE,
        t,
    );
    if let Some(Body::Decision(x)) = &mut no.body {
        x.outcome = decision::Outcome::Deny as i32;
    }
    u.put(&carol, &no);
    intent(&deployer, "DENY", vec![req, dec], &d);
    // A request dated an hour before the log's time, and one for another log.
    u.put(
        &alice,
        &build::request(
            &human("alice"),
            "SKEW",
            tgt(),
            d.clone(),
            "deployer",
            t - 60 * MINUTE,
        ),
    );
    let mut elsewhere = build::request(
        &human("alice"),
        "ELSEWHERE",
        tgt(),
        d.clone(),
        "deployer",
        t,
    );
    elsewhere.log_origin = "other.example/log".into();
    u.put(&alice, &elsewhere);
    // A refusal record the gate never made: the "refused" entry is signed
    // by a key alice never had.
    let forged = entry::sign(
        &key("alice", 66),
        &build::for_log(
            build::request(&human("alice"), "FRAMED", tgt(), d.clone(), "deployer", t),
            &origin,
        ),
    )
    .encode_to_vec();
    let mut record = by_log(Body::GateRefusal(GateRefusal {
        refused_entry: forged,
        violations: vec![RuleViolation {
            rule: 1,
            code: "chain_exists".into(),
            message: "made up".into(),
        }],
        policy: None,
        index: u.log.tree_size(),
    }));
    // (Its chain id names the framed chain.)
    let mut g = gatelog::access::entry::SignedEntry::decode(record.as_slice()).unwrap();
    let mut st = Statement::decode(g.statement.as_slice()).unwrap();
    st.chain_id = "FRAMED".into();
    g = entry::sign(&log_key, &st);
    record = g.encode_to_vec();
    u.log.append(&record);

    let url = format!("http://{}", u.log.addr);
    let out = tmp.path().join("audit");
    let (code, output) = run_gatelog(&[
        "audit",
        "--log",
        &url,
        "--vkey",
        &u.log.vkey,
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(code, 1, "{output}");
    let expected: BTreeSet<(String, String)> = [
        ("admitted_despite_gate", "SELF"),
        ("admitted_despite_gate", "OWNER"),
        ("admitted_despite_gate", "EXEC"),
        ("admitted_despite_gate", "OUT"),
        ("admitted_despite_gate", "BROAD"),
        ("executed_beyond_request", "BROAD"),
        ("admitted_despite_gate", "DENY"),
        ("should_have_been_rejected", "SKEW"),
        ("should_have_been_rejected", "ELSEWHERE"),
        ("refusal_unjustified", "FRAMED"),
    ]
    .into_iter()
    .map(|(c, ch)| (c.to_string(), ch.to_string()))
    .collect();
    assert_eq!(findings(&out), expected, "{output}");
    let exceptions = std::fs::read_to_string(out.join("exceptions.csv")).unwrap();
    for code in [
        "clock_skew",
        "wrong_log",
        "self_approval",
        "approver_executes",
        "wrong_executor",
        "not_the_executor",
        "approval_exceeds_request",
        "denied",
    ] {
        assert!(exceptions.contains(code), "{code}: {exceptions}");
    }
}

/// The log's clock, checked: a time that goes back, and times later than
/// a witness's cosignature of the checkpoint that covers them.
#[test]
fn the_logs_clock_never_goes_back_nor_past_its_witnesses() {
    use gatelog::access::entry::proto::{LogParameters, LogTime};
    use gatelog::access::entry::{self, Body};
    use gatelog::tlog::cosignature::CosignatureSigner;
    let tmp = tempfile::tempdir().unwrap();
    let (u, admin, _) = Ungated::start(tmp.path());
    let log_key = gatelog::sys::keyfile::read_private_key(&tmp.path().join("log/log.key")).unwrap();
    let origin = u.log.origin().to_string();
    let t = now_ms();
    let by_log = |at: i64, body: Body| log_record(&log_key, &origin, at, body);
    use prost::Message;
    u.log.append(&by_log(
        t,
        Body::LogParameters(LogParameters {
            rules_version: 2,
            log_origin: origin.clone(),
            max_clock_skew_ms: 300_000,
            admin_keys: vec![admin.verifier().to_vkey()],
            admin_threshold: 1,
        }),
    ));
    u.log.append(&by_log(t, Body::LogTime(LogTime {})));
    u.log
        .append(&by_log(t + 60 * MINUTE, Body::LogTime(LogTime {})));
    u.log
        .append(&by_log(t + 55 * MINUTE, Body::LogTime(LogTime {})));
    // A time no timestamp can hold (it would overflow the arithmetic).
    let mut st = Statement::decode(
        gatelog::access::entry::SignedEntry::decode(
            by_log(t, Body::LogTime(LogTime {})).as_slice(),
        )
        .unwrap()
        .statement
        .as_slice(),
    )
    .unwrap();
    st.issued_at = Some(gatelog::access::entry::Timestamp {
        seconds: -9_000_000_000_000_000,
        nanos: 0,
    });
    u.log.append(&entry::sign(&log_key, &st).encode_to_vec());
    // A mirror whose checkpoint a witness cosigned now.
    let url = format!("http://{}", u.log.addr);
    let mirror = tmp.path().join("mirror");
    let (code, _) = run_gatelog(&[
        "mirror",
        "--log",
        &url,
        "--vkey",
        &u.log.vkey,
        mirror.to_str().unwrap(),
    ]);
    assert_eq!(code, 0);
    let witness = CosignatureSigner::from_seed("w1.example", [7; 32]).unwrap();
    let note = std::fs::read_to_string(mirror.join("checkpoint")).unwrap();
    let text = &note[..note.find("\n\n").unwrap() + 1];
    let cosigned = format!("{note}{}", witness.cosign(text, (t / 1000) as u64));
    std::fs::write(mirror.join("checkpoint"), cosigned).unwrap();
    let audit = |extra: &[&str], out: &str| {
        let out = tmp.path().join(out);
        let mut args = vec![
            "audit",
            "--log",
            mirror.to_str().unwrap(),
            "--vkey",
            &u.log.vkey,
        ];
        args.extend_from_slice(extra);
        args.extend(["--out", out.to_str().unwrap()]);
        let (code, output) = run_gatelog(&args);
        assert_eq!(code, 1, "{output}");
        let found: BTreeSet<(String, String)> = std::fs::read_to_string(out.join("exceptions.csv"))
            .unwrap()
            .lines()
            .skip(1)
            .map(|l| {
                let cols: Vec<&str> = l.splitn(4, ',').collect();
                (cols[0].to_string(), cols[2].to_string())
            })
            .collect();
        found
    };
    let set = |v: &[(&str, &str)]| -> BTreeSet<(String, String)> {
        v.iter()
            .map(|(i, c)| (i.to_string(), c.to_string()))
            .collect()
    };
    assert_eq!(
        audit(&[], "plain"),
        set(&[
            ("3", "should_have_been_rejected"),
            ("4", "should_have_been_rejected"),
        ])
    );
    let w = witness.verifier().to_vkey();
    assert_eq!(
        audit(&["--witness-key", &w], "witnessed"),
        set(&[
            ("2", "log_time_after_cosignature"),
            ("3", "log_time_after_cosignature"),
            ("3", "should_have_been_rejected"),
            ("4", "should_have_been_rejected"),
        ])
    );
}

/// A record of the log's own (`body`, dated `at`), signed with its key as a
/// dishonest operator could.
/// Makes the ungated log in `dir/log` a log of rules `version` with
/// `admin`: its parameters record and a time record, by the log's key.
/// The log's key and origin.
fn rules_log(
    u: &Ungated,
    dir: &std::path::Path,
    admin: &NoteSigner,
    version: u32,
) -> (NoteSigner, String) {
    use gatelog::access::entry::proto::{LogParameters, LogTime};
    use gatelog::access::entry::Body;
    let log_key = gatelog::sys::keyfile::read_private_key(&dir.join("log/log.key")).unwrap();
    let origin = u.log.origin().to_string();
    let by_log = |body: Body| log_record(&log_key, &origin, now_ms(), body);
    u.log.append(&by_log(Body::LogParameters(LogParameters {
        rules_version: version,
        log_origin: origin.clone(),
        max_clock_skew_ms: 300_000,
        admin_keys: vec![admin.verifier().to_vkey()],
        admin_threshold: 1,
    })));
    u.log.append(&by_log(Body::LogTime(LogTime {})));
    (log_key, origin)
}

fn log_record(
    key: &NoteSigner,
    origin: &str,
    at: i64,
    body: gatelog::access::entry::Body,
) -> Vec<u8> {
    use prost::Message;
    let st = Statement {
        actor: Some(gatelog::access::entry::proto::Actor {
            id: key.name().into(),
            ..Default::default()
        }),
        issued_at: Some(gatelog::access::entry::timestamp(at)),
        log_origin: origin.into(),
        body: Some(body),
        ..Default::default()
    };
    gatelog::access::entry::sign(key, &st).encode_to_vec()
}

/// The audit's replay reaches the same findings and chain reports whether
/// it keeps open chains' entries in memory or spills nearly all of them to
/// a file (a budget of 4 KiB, compacted after 8 KiB let go), on a seeded
/// log with violations of every kind.
#[test]
fn a_replay_that_spills_reports_what_one_in_memory_reports() {
    use gatelog::access::cedar::CedarEngine;
    use gatelog::access::replay::{Auditor, Output, Period};
    use gatelog::observers::spill::SpilledEntries;
    use gatelog::tlog::checkpoint::Checkpoint;
    use gatelog::tlog::note::NoteVerifier;
    use gatelog::tlog::tiles::{decode_bundle, TileKind, TilePath};
    let tmp = tempfile::tempdir().unwrap();
    let log = tmp.path().join("log");
    workload(&log, 17, 400, 0.25);
    let vkey = NoteVerifier::parse(
        std::fs::read_to_string(log.join("log.vkey"))
            .unwrap()
            .trim(),
    )
    .unwrap();
    let admin_text = std::fs::read_to_string(log.join("admin.key.pub")).unwrap();
    let admin = NoteVerifier::parse(admin_text.trim()).unwrap();
    let cp = Checkpoint::open(&std::fs::read(log.join("checkpoint")).unwrap(), &vkey).unwrap();
    let spill = SpilledEntries::with_limits(tmp.path(), 4 << 10, 8 << 10).unwrap();
    let spill = std::sync::Arc::new(spill);
    let engine = || Box::new(CedarEngine::default());
    let mut auditors = [
        Auditor::new(vkey.clone(), vec![admin.clone()], engine(), Period::ALL),
        Auditor::keeping_on(vkey, vec![admin], engine(), Period::ALL, spill.clone()),
    ];
    let mut outputs = [Output::default(), Output::default()];
    let mut first = 0u64;
    for n in 0..cp.size.div_ceil(256) {
        let width = (cp.size - n * 256).min(256);
        let bundle = TilePath {
            kind: TileKind::Entries,
            index: n,
            width,
        };
        let data = std::fs::read(log.join(bundle.to_string())).unwrap();
        let leaves = decode_bundle(&data).unwrap();
        for (a, out) in auditors.iter_mut().zip(&mut outputs) {
            a.entries(first, &leaves);
            let o = a.take_output();
            out.findings.extend(o.findings);
            out.chains.extend(o.chains);
        }
        first += leaves.len() as u64;
    }
    let summaries: Vec<_> = auditors
        .into_iter()
        .zip(&mut outputs)
        .map(|(a, out)| {
            let (summary, o) = a.finish(&cp, now_ms());
            out.findings.extend(o.findings);
            out.chains.extend(o.chains);
            summary
        })
        .collect();
    assert!(spill.file_bytes() > 0, "the spilling replay used its file");
    let [memory, spilled] = &outputs;
    assert!(
        memory.findings.len() > 50,
        "{} findings",
        memory.findings.len()
    );
    assert_eq!(memory.findings, spilled.findings);
    assert_eq!(memory.chains.len(), spilled.chains.len());
    assert!(memory.chains.len() >= 400);
    for (m, s) in memory.chains.iter().zip(&spilled.chains) {
        assert_eq!(format!("{:?}", m.row), format!("{:?}", s.row));
        let indices = |c: &gatelog::access::replay::ChainReport| {
            c.entries
                .iter()
                .map(|(i, d)| (*i, d.leaf_hash))
                .collect::<Vec<_>>()
        };
        assert_eq!(indices(m), indices(s));
        assert!(!m.entries.is_empty());
    }
    assert_eq!(summaries[0].chains, summaries[1].chains);
    assert_eq!(summaries[0].findings, summaries[1].findings);
}

/// The kill switch, checked from the entries: a log that takes anything a
/// suspended identity signs after its suspension is caught at that entry,
/// while what it signed before audits clean.
#[test]
fn a_log_that_admits_a_suspended_identitys_entries_is_caught() {
    use gatelog::access::entry::proto::Suspension;
    use gatelog::access::entry::Body;
    let tmp = tempfile::tempdir().unwrap();
    let (u, admin, _) = Ungated::start(tmp.path());
    rules_log(&u, tmp.path(), &admin, 5);
    let t = now_ms();
    let (alice, olivia, copilot) = (
        NoteSigner::from_seed("alice", [2; 32]).unwrap(),
        NoteSigner::from_seed("olivia", [3; 32]).unwrap(),
        NoteSigner::from_seed("copilot", [4; 32]).unwrap(),
    );
    let assistant = build::assistant("copilot", "spiffe://corp/ai/copilot", "m-1", "a-1");
    for (actor, owner, k) in [
        (human("alice"), "", &alice),
        (human("olivia"), "", &olivia),
        (assistant.clone(), "olivia", &copilot),
    ] {
        u.put(
            &admin,
            &build::register(&human("admin"), &actor, owner, k.verifier().public_key(), t),
        );
    }
    let d = delta(&["read"], &["write"], &[]);
    let recommend = |chain: &str| -> u64 {
        let req = u.put(
            &alice,
            &build::request(
                &human("alice"),
                chain,
                target("github", "corp/app", "alice"),
                d.clone(),
                "olivia",
                t,
            ),
        );
        u.put(
            &copilot,
            &build::recommend(&assistant, chain, vec![req], d.clone(), [7; 32], t),
        )
        .index
    };
    let before = recommend("BEFORE");
    u.put(
        &admin,
        &Statement {
            actor: Some(human("admin")),
            issued_at: Some(gatelog::access::entry::timestamp(t)),
            body: Some(Body::Suspension(Suspension {
                identity: "copilot".into(),
                lifted: false,
                reason: "recommending outside its scope".into(),
            })),
            ..Default::default()
        },
    );
    let after = recommend("AFTER");
    let url = format!("http://{}", u.log.addr);
    let out = tmp.path().join("audit");
    let (code, output) = run_gatelog(&[
        "audit",
        "--log",
        &url,
        "--vkey",
        &u.log.vkey,
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(code, 1, "{output}");
    let expected: BTreeSet<(String, String)> = [("signer".to_string(), "AFTER".to_string())]
        .into_iter()
        .collect();
    assert_eq!(findings(&out), expected, "{output}");
    let exceptions = std::fs::read_to_string(out.join("exceptions.csv")).unwrap();
    assert!(exceptions.contains("suspended"), "{exceptions}");

    // A monitor following the log reports it as it comes, and nothing
    // the assistant signed before.
    let mon = tmp.path().join("mon");
    let text = common::monitor_until(
        &[
            "--log",
            &url,
            "--vkey",
            &u.log.vkey,
            "--data-dir",
            mon.to_str().unwrap(),
        ],
        &tmp.path().join("monitor.out"),
        &format!("FINDING at entry {after}: signer"),
        std::time::Duration::from_secs(10),
    );
    assert!(
        !text.contains(&format!("FINDING at entry {before}:")),
        "{text}"
    );
    assert_eq!(text.matches("FINDING").count(), 1, "{text}");
}

/// Rules version 7 judges an extension by the policy in force; a log of
/// version 6 does not. The same history, a policy that permits no
/// extension and an extension the log admitted anyway, audits clean as a
/// version-6 log, and as a version-7 log is caught at that approval (a
/// dishonest operator admitting what the gate refuses).
#[test]
fn an_extension_the_policy_forbids_is_caught_from_rules_version_7_only() {
    use gatelog::access::entry::proto::PolicyRef;
    let extension_log = |version: u32| -> (i32, BTreeSet<(String, String)>, String) {
        let tmp = tempfile::tempdir().unwrap();
        let (u, admin, _) = Ungated::start(tmp.path());
        rules_log(&u, tmp.path(), &admin, version);
        let t = now_ms();
        let people: Vec<(&str, NoteSigner)> = ["alice", "bob", "carol", "olivia"]
            .iter()
            .zip(2u8..)
            .map(|(who, seed)| (*who, NoteSigner::from_seed(who, [seed; 32]).unwrap()))
            .collect();
        for (who, key) in &people {
            u.put(
                &admin,
                &build::register(
                    &human("admin"),
                    &human(who),
                    "",
                    key.verifier().public_key(),
                    t,
                ),
            );
        }
        let key = |who: &str| &people.iter().find(|(w, _)| *w == who).unwrap().1;
        let cedar = format!(
            "{}forbid(principal, action, resource)\nwhen {{ context has extension && context.extension }};\n",
            gatelog::server::run::DEV_POLICY
        );
        u.put(
            &admin,
            &build::publish_policy(&human("admin"), "org", 1, &cedar, 0, t),
        );
        let policy = Some(PolicyRef {
            policy_id: "org".into(),
            version: 1,
        });
        let d = delta(&["read"], &["write"], &[]);
        let tgt = target("github", "corp/app", "alice");
        let req = u.put(
            key("alice"),
            &build::lasting(
                build::request(&human("alice"), "X", tgt, d.clone(), "olivia", t),
                600,
            ),
        );
        let bob = u.put(
            key("bob"),
            &build::approve(
                &human("bob"),
                "X",
                vec![req.clone()],
                d.clone(),
                t + 600_000,
                t,
            ),
        );
        let intent = u.put(
            key("olivia"),
            &build::intent(&human("olivia"), "X", vec![req, bob], d.clone(), policy, t),
        );
        let outcome = u.put(
            key("olivia"),
            &build::outcome(
                &human("olivia"),
                "X",
                vec![intent],
                d.after.clone(),
                "c-1",
                t,
            ),
        );
        u.put(
            key("carol"),
            &build::lasting(
                build::approve(&human("carol"), "X", vec![outcome], d, t + 600_000, t),
                1200,
            ),
        );
        let out = tmp.path().join("audit");
        let (code, output) = u.audit(&out, &[]);
        let exceptions = std::fs::read_to_string(out.join("exceptions.csv")).unwrap_or_default();
        (code, findings(&out), format!("{output}\n{exceptions}"))
    };
    let (code, found, output) = extension_log(6);
    assert_eq!((code, found.len()), (0, 0), "{found:?} {output}");
    let (code, found, output) = extension_log(7);
    assert_eq!(code, 1, "{output}");
    let codes: Vec<&str> = found.iter().map(|(c, _)| c.as_str()).collect();
    assert_eq!(codes, ["admitted_despite_gate"], "{found:?}");
    // At the extension, for the policy's refusal.
    assert!(output.contains("policy_denies"), "{output}");
}

/// A log moved to a rules version newer than this release knows is never
/// judged by this release's older rules under the newer number (a weaker
/// gate than the log claims): the server refuses to serve it, naming the
/// version, and the audit does not call it clean.
#[test]
fn a_log_of_a_newer_rules_version_is_refused_not_judged_by_older_rules() {
    let newer = gatelog::access::gate::RULES_VERSION + 1;
    let tmp = tempfile::tempdir().unwrap();
    let (u, admin, _) = Ungated::start(tmp.path());
    rules_log(&u, tmp.path(), &admin, newer);
    let out = tmp.path().join("audit");
    let (code, output) = u.audit(&out, &[]);
    // The audit names it: a record this release's gate could not take.
    assert_eq!(code, 1, "{output}");
    let exceptions = std::fs::read_to_string(out.join("exceptions.csv")).unwrap();
    assert!(
        exceptions.contains(&format!("rules version {newer} is not one this gate knows")),
        "{exceptions}"
    );
    drop(u);
    // The same data served with the gate.
    let data = tmp.path().join("log");
    std::fs::write(data.join("entries"), "gatelog\n").unwrap();
    let mut child = common::serve_command(&data, &["--dev"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            child.kill().unwrap();
            panic!("the server serves a log of rules version {newer}");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert!(!status.success());
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(
        stderr.contains(&format!("moves this log to rules version {newer}"))
            && stderr.contains("this release knows up to"),
        "{stderr}"
    );
}
