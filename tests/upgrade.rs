//! Logs made by earlier releases (committed fixtures: `tests/fixtures/v1-log`
//! before rules version 2, `v2-log` before version 3, `v3-log` before
//! version 4, `v4-log` before version 5, `v5-log` before version 6,
//! `v6-log` before version 7) keep working: served
//! by this release each gets its rules-version record once, its old entries
//! audit under the rules they were admitted under, new entries are judged
//! by this release's rules, and the audit of the whole log finds nothing.

mod common;

use std::path::Path;

use common::{get_ok, Server};
use gatelog::access::entry::build::{self, delta, human, target};
use gatelog::sys::keyfile::read_private_key;

fn copy_fixture(name: &str, to: &Path) {
    let from = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    let status = std::process::Command::new("cp")
        .arg("-a")
        .arg(&from)
        .arg(to)
        .status()
        .unwrap();
    assert!(status.success());
    // Git keeps no file modes: key files are the server's secrets again.
    for key in ["log.key", "admin.key"] {
        use std::os::unix::fs::PermissionsExt;
        let p = to.join(key);
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
}

/// The audit of a log served from the fixture, whose first 16 entries
/// were written under rules version 1 with this admin.
fn audit(server: &Server, admin_pub: &Path, out: &Path) -> (i32, serde_json::Value) {
    let (code, _, manifest) = server.audit(&["--admin-key", admin_pub.to_str().unwrap()], out);
    (code, manifest)
}

#[test]
fn a_log_of_the_previous_release_upgrades_once_and_still_audits() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("log");
    copy_fixture("v1-log", &data);
    let admin_pub = data.join("admin.key.pub");
    let mut server = Server::start_gatelog(&data, &["--admin-key", admin_pub.to_str().unwrap()]);
    // The 16 entries of the old release, then the parameters record and
    // the log's first time record.
    let upgraded = server.tree_size();
    assert_eq!(upgraded, 18);
    let (code, manifest) = audit(&server, &admin_pub, &tmp.path().join("audit-1"));
    assert_eq!(code, 0, "{manifest:#}");
    assert_eq!(manifest["findings"], 0);
    assert_eq!(
        manifest["rules"]["rules_version"],
        gatelog::access::gate::RULES_VERSION
    );
    assert_eq!(manifest["rules"]["recorded_at_entry"], 16);
    assert_eq!(manifest["rules"]["admins"], serde_json::json!(["admin"]));
    assert!(manifest["rules"]["note"]
        .as_str()
        .is_some_and(|n| n.contains("one admin key")));

    // New entries are judged by rules version 2: statements name the log,
    // and a request names its executor.
    let admin = read_private_key(&data.join("admin.key")).unwrap();
    let dana = gatelog::tlog::note::NoteSigner::from_seed("dana", [0x0d; 32]).unwrap();
    let st = build::register(
        &human("admin"),
        &human("dana"),
        "",
        dana.verifier().public_key(),
        gatelog::sys::clock::now_ms(),
    );
    assert_eq!(server.submit(&admin, &st).status, 200);
    let d = delta(&["read"], &["write"], &[]);
    let unnamed = build::request(
        &human("dana"),
        "NEW-1",
        target("github", "corp/x", "dana"),
        d.clone(),
        "",
        gatelog::sys::clock::now_ms(),
    );
    let r = server.submit(&dana, &unnamed);
    assert_eq!(r.status, 422, "{}", r.text());
    assert_eq!(r.error_code(), "executor_required");
    // The old release registered its pipeline without an owner: it acts
    // again once an admin names one.
    let deployer = gatelog::tlog::note::NoteSigner::parse(
        std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/v1-log/deployer.key"),
        )
        .unwrap()
        .trim(),
    )
    .unwrap();
    let deployer_actor = build::nhi("deployer", "spiffe://corp.example/ns/ci/sa/deployer");
    let ask = |t| {
        build::request(
            &deployer_actor,
            "BOT-1",
            target("github", "corp/x", "dana"),
            d.clone(),
            "dana",
            t,
        )
    };
    let r = server.submit(&deployer, &ask(gatelog::sys::clock::now_ms()));
    assert_eq!(
        (r.status, r.error_code()),
        (403, "no_owner".to_string()),
        "{}",
        r.text()
    );

    // Restarted without flags: the admins come from the log, and the
    // rules-version record is not written again.
    let size = server.tree_size();
    server.kill9();
    let server = Server::start_command("serve", &data, &[]);
    assert_eq!(server.tree_size(), size);
    let (code, manifest) = audit(&server, &admin_pub, &tmp.path().join("audit-2"));
    assert_eq!(code, 0, "{manifest:#}");
    assert_eq!(manifest["findings"], 0);
    let log = get_ok(server.addr, "/v1/log").json();
    assert_eq!(log["tree_size"].as_u64(), Some(size));
}

#[test]
fn a_log_of_rules_version_2_moves_to_the_current_version_once_keeping_its_admins() {
    use gatelog::access::gate::limits::MAX_TEXT_BYTES;
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("log");
    copy_fixture("v2-log", &data);
    let mut server = Server::start_gatelog(&data, &["--dev"]);
    // 64 entries of the old release, then the new parameters record and
    // a time record.
    assert_eq!(server.tree_size(), 66);
    let (code, _, manifest) = server.audit(&[], &tmp.path().join("audit-1"));
    assert_eq!(code, 0, "{manifest:#}");
    assert_eq!(manifest["findings"], 0);
    assert_eq!(
        manifest["rules"]["rules_version"],
        gatelog::access::gate::RULES_VERSION
    );
    assert_eq!(manifest["rules"]["recorded_at_entry"], 64);
    assert_eq!(manifest["rules"]["admins"], serde_json::json!(["admin"]));

    // Version 3's limits hold from here on.
    let admin = read_private_key(&data.join("admin.key")).unwrap();
    let mut st = build::register(
        &human("admin"),
        &human("erin"),
        "",
        gatelog::tlog::note::NoteSigner::from_seed("erin", [0x0e; 32])
            .unwrap()
            .verifier()
            .public_key(),
        gatelog::sys::clock::now_ms(),
    );
    st.log_origin = server.origin().to_string();
    if let Some(gatelog::access::entry::Body::IdentityRegistration(r)) = &mut st.body {
        r.owner = "o".repeat(MAX_TEXT_BYTES);
    }
    let r = server.submit(&admin, &st);
    assert_eq!(
        (r.status, r.error_code()),
        (422, "too_long".to_string()),
        "{}",
        r.text()
    );

    // Restarted: the record is not written again.
    let size = server.tree_size();
    server.kill9();
    let server = Server::start_gatelog(&data, &["--dev"]);
    assert_eq!(server.tree_size(), size);
    let (code, _, manifest) = server.audit(&[], &tmp.path().join("audit-2"));
    assert_eq!(code, 0, "{manifest:#}");
}

/// Serves a copy of `fixture` (a log of an earlier rules version, of
/// `entries` entries) with this release: it gets this release's
/// parameters record and a time record, keeping its admins, and audits
/// clean. The directory, the log's data and the server.
fn moved_on(fixture: &str, entries: u64) -> (tempfile::TempDir, std::path::PathBuf, Server) {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("log");
    copy_fixture(fixture, &data);
    let server = Server::start_gatelog(&data, &["--dev"]);
    assert_eq!(
        server.tree_size(),
        entries + 2,
        "{entries} entries, the record and a time record"
    );
    let (code, _, manifest) = server.audit(&[], &tmp.path().join("audit-1"));
    assert_eq!(code, 0, "{manifest:#}");
    assert_eq!(
        manifest["rules"]["rules_version"],
        gatelog::access::gate::RULES_VERSION
    );
    assert_eq!(manifest["rules"]["recorded_at_entry"], entries);
    assert_eq!(manifest["rules"]["admins"], serde_json::json!(["admin"]));
    (tmp, data, server)
}

/// The chains owing something, as `/v1/obligations` lists them.
fn owed_chains(server: &Server) -> Vec<String> {
    get_ok(server.addr, "/v1/obligations").json()["obligations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["chain_id"].as_str().unwrap().to_string())
        .collect()
}

/// Restarted after a kill -9, the server does not write the record again.
fn not_written_again(mut server: Server, data: &Path) {
    let size = server.tree_size();
    server.kill9();
    let server = Server::start_gatelog(data, &["--dev"]);
    assert_eq!(server.tree_size(), size, "the record is not written again");
}

/// A log of rules version 3 (the release before tickets) gets the record
/// of this release's version on its first start, keeping its admins; it
/// audits clean, and version 4's ticket rules hold from there on.
#[test]
fn a_log_of_rules_version_3_moves_on_once_keeping_its_admins() {
    let (_tmp, data, server) = moved_on("v3-log", 64);
    let admin = read_private_key(&data.join("admin.key")).unwrap();
    let mut st = build::request(
        &human("admin"),
        "T-1",
        build::target("github", "corp/x", "admin"),
        build::delta(&[], &["read"], &[]),
        "admin",
        gatelog::sys::clock::now_ms(),
    );
    st.log_origin = server.origin().to_string();
    if let Some(gatelog::access::entry::Body::AccessRequest(r)) = &mut st.body {
        r.tickets.push(gatelog::access::entry::proto::TicketRef {
            system: "jira".into(),
            id: "CHG-1".into(),
            url: "http://jira.example/CHG-1".into(),
        });
    }
    let r = server.submit(&admin, &st);
    assert_eq!(
        (r.status, r.error_code()),
        (422, "invalid_entry".to_string()),
        "{}",
        r.text()
    );
    not_written_again(server, &data);
}

/// A log of rules version 4 (the release before time-bound grants) gets
/// the current version's record on its first start, keeping its admins;
/// it audits clean, and version 5's duration limits hold from there on.
#[test]
fn a_log_of_rules_version_4_moves_on_once_keeping_its_admins() {
    let (_tmp, data, server) = moved_on("v4-log", 65);
    let admin = read_private_key(&data.join("admin.key")).unwrap();
    let mut st = build::lasting(
        build::request(
            &human("admin"),
            "D-1",
            build::target("github", "corp/x", "admin"),
            build::delta(&[], &["read"], &[]),
            "admin",
            gatelog::sys::clock::now_ms(),
        ),
        gatelog::access::gate::limits::MAX_ACCESS_DURATION_SECONDS + 1,
    );
    st.log_origin = server.origin().to_string();
    let r = server.submit(&admin, &st);
    assert_eq!(
        (r.status, r.error_code()),
        (422, "invalid_entry".to_string()),
        "{}",
        r.text()
    );
    not_written_again(server, &data);
}

/// A log of rules version 5 (the release before permanent grants were
/// tracked) gets the current version's record on its first start, keeping
/// its admins; it audits clean, its time-bound grants still owe their
/// de-provisioning, and its permanent grants stay as version 5 left them
/// (their chains closed, in no obligation and no campaign).
#[test]
fn a_log_of_rules_version_5_moves_on_once_keeping_its_admins() {
    let (_tmp, data, server) = moved_on("v5-log", 84);
    let chains = owed_chains(&server);
    assert_eq!(chains, ["L1a23f238b45-0-1", "L1a23f238b45-1-1"]);
    let chain = |id: &str| get_ok(server.addr, &format!("/v1/chains/{id}")).json();
    assert_eq!(chain("L1a23f238b45-0-1")["status"], "granted");
    for id in ["L1a23f2386d2-0-1", "L1a23f2386d2-1-1"] {
        let c = chain(id);
        assert_eq!(c["status"], "executed", "{c}");
        assert_eq!(c["grant"], serde_json::Value::Null, "{c}");
    }
    not_written_again(server, &data);
}

/// A log of rules version 6 (the release before extensions were held to
/// the policy in force) gets the version 7 record on its first start,
/// keeping its admins; it audits clean, its permanent grants are still
/// held by their open chains, and its ten-year grants still owe their
/// de-provisioning.
#[test]
fn a_log_of_rules_version_6_moves_to_7_once_keeping_its_admins() {
    let (_tmp, data, server) = moved_on("v6-log", 83);
    let chains = owed_chains(&server);
    assert_eq!(chains, ["L1a23f862229-0-1", "L1a23f862229-1-1"]);
    for id in ["L1a23f861dda-0-1", "L1a23f861dda-1-1"] {
        let c = get_ok(server.addr, &format!("/v1/chains/{id}")).json();
        assert_eq!(c["status"], "granted", "{c}");
        assert_eq!(c["grant"]["ends_at"], serde_json::Value::Null, "{c}");
    }
    not_written_again(server, &data);
}
