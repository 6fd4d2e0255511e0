//! A lying log or mirror is caught. Each test starts from a log that
//! audits clean (the control), then lies in one way: a changed, swapped,
//! dropped or duplicated entry in a bundle; a truncated or altered hash
//! tile served over HTTP; a checkpoint under another key; a checkpoint of
//! another history under the log's own key; an entry signed with a
//! rotated-out or revoked key; a chain link with the wrong leaf hash.
//! `gatelog audit` (and `gatelog mirror`, where it reads the lie) must
//! exit 1 and name what is wrong and where: the finding's code and the
//! entry's index.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{get_ok, Server, StaticServer};
use gatelog::access::entry::build::{self, delta, human, link, target};
use gatelog::access::entry::proto::{identity_registration::Operation, Actor, EntryRef, Statement};
use gatelog::access::entry::Body;
use gatelog::sys::clock::now_ms;
use gatelog::tlog::checkpoint::Checkpoint;
use gatelog::tlog::merkle::{leaf_hash, CompactRange};
use gatelog::tlog::note::{NoteSigner, NoteVerifier};
use gatelog::tlog::tiles::{decode_bundle, encode_bundle};
use prost::Message;

const MINUTE: i64 = 60_000;

/// What a `gatelog` run printed, and its exit code.
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn output(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }
}

fn gatelog(args: &[&str]) -> Run {
    let out = Command::new(env!("CARGO_BIN_EXE_gatelog"))
        .args(args)
        .output()
        .expect("running gatelog");
    let run = Run {
        code: out.status.code().expect("exit code"),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    // Echoed for a failing test's log.
    eprintln!(
        "$ gatelog {}\n{}{}exit {}",
        args.join(" "),
        run.stdout,
        run.stderr,
        run.code
    );
    run
}

/// What an audit of one log needs: its verifier key and bootstrap admin.
#[derive(Clone)]
struct AuditKeys {
    vkey: String,
    admin_pub: PathBuf,
}

fn audit(log: &str, keys: &AuditKeys, since: Option<&Path>, out: &Path) -> Run {
    let mut args = vec![
        "audit",
        "--log",
        log,
        "--vkey",
        &keys.vkey,
        "--admin-key",
        keys.admin_pub.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ];
    if let Some(since) = since {
        args.extend(["--since", since.to_str().unwrap()]);
    }
    gatelog(&args)
}

fn mirror(log: &str, vkey: &str, dir: &Path) -> Run {
    gatelog(&[
        "mirror",
        "--log",
        log,
        "--vkey",
        vkey,
        dir.to_str().unwrap(),
    ])
}

/// One row of exceptions.csv.
#[derive(Debug)]
struct Finding {
    index: u64,
    code: String,
    message: String,
}

fn findings(out: &Path) -> Vec<Finding> {
    let text = std::fs::read_to_string(out.join("exceptions.csv")).expect("exceptions.csv");
    text.lines()
        .skip(1)
        .map(|line| {
            // index,chain_id,code,message: only the message may hold commas
            // in these logs (chain ids here have none).
            let cols: Vec<&str> = line.splitn(4, ',').collect();
            Finding {
                index: cols[0].parse().expect("finding index"),
                code: cols[2].to_string(),
                message: cols[3].to_string(),
            }
        })
        .collect()
}

/// (code, index) of every finding, sorted.
fn codes_at(found: &[Finding]) -> Vec<(&str, u64)> {
    let mut v: Vec<(&str, u64)> = found.iter().map(|f| (f.code.as_str(), f.index)).collect();
    v.sort();
    v
}

/// Whether there is a finding with one of `codes` at entry `index` whose
/// message mentions one of `names`.
fn has_finding(found: &[Finding], codes: &[&str], index: u64, names: &[&str]) -> bool {
    found.iter().any(|f| {
        codes.contains(&f.code.as_str())
            && f.index == index
            && names.iter().any(|n| f.message.contains(n))
    })
}

/// A seeded workflow log with nothing injected (it audits clean) in `dir`.
fn clean_workload(dir: &Path, seed: u64, chains: u64) -> AuditKeys {
    let out = Command::new(env!("CARGO_BIN_EXE_gatelog-workload"))
        .args(["--seed", &seed.to_string(), "--chains", &chains.to_string()])
        .args(["--inject-rate", "0", "--out"])
        .arg(dir)
        .output()
        .expect("running gatelog-workload");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    AuditKeys {
        vkey: std::fs::read_to_string(dir.join("log.vkey"))
            .unwrap()
            .trim()
            .to_string(),
        admin_pub: dir.join("admin.key.pub"),
    }
}

// ---------------------------------------------------------------------
// Cases 1-4: a lie inside an entry bundle. The workload's hash tiles are
// the honest ones, so the audit must name the first entry of the bundle
// that no longer matches tile/0/001, and the whole tree no longer matches
// the checkpoint.

/// Entry bundle 1 holds entries 256..512 (full in a 300-chain workload).
const BUNDLE: &str = "tile/entries/001";
/// Where in the bundle the tampering happens, and that entry's index.
const AT: usize = 40;
const AT_INDEX: u64 = 256 + AT as u64;

/// Audits and mirrors a clean workload (exit 0), rewrites entry bundle 1
/// with `tamper`, and checks that the audit fails with `leaf_mismatch` at
/// entry `index` and `tree_mismatch`, and that a mirror from a server
/// serving the tampered log refuses it, naming the tile.
fn assert_bundle_tampering_caught(seed: u64, tamper: impl FnOnce(&mut Vec<Vec<u8>>), index: u64) {
    let tmp = tempfile::tempdir().unwrap();
    let log = tmp.path().join("log");
    let keys = clean_workload(&log, seed, 300);
    let log_s = log.to_str().unwrap();
    let control = audit(log_s, &keys, None, &tmp.path().join("control"));
    assert_eq!(control.code, 0, "the untouched workload must audit clean");
    let served = StaticServer::start(&log);
    let control = mirror(
        &served.url(),
        &keys.vkey,
        &tmp.path().join("control-mirror"),
    );
    assert_eq!(control.code, 0, "the untouched workload must mirror clean");

    let bundle = log.join(BUNDLE);
    let data = std::fs::read(&bundle).unwrap();
    let mut entries: Vec<Vec<u8>> = decode_bundle(&data)
        .unwrap()
        .into_iter()
        .map(<[u8]>::to_vec)
        .collect();
    assert_eq!(entries.len(), 256, "{BUNDLE} should be a full bundle");
    tamper(&mut entries);
    std::fs::write(&bundle, encode_bundle(entries.iter().map(Vec::as_slice))).unwrap();

    let out = tmp.path().join("audit");
    let run = audit(log_s, &keys, None, &out);
    assert_eq!(run.code, 1, "a tampered bundle must fail the audit");
    let found = findings(&out);
    assert!(
        found.iter().any(|f| f.code == "tree_mismatch"),
        "no tree_mismatch: {found:#?}"
    );
    assert!(
        has_finding(
            &found,
            &["leaf_mismatch"],
            index,
            &["tile/0/001", "tile/entries/001"]
        ),
        "no leaf_mismatch at entry {index} naming the tile: {found:#?}"
    );

    // The mirror recomputes tile/0/001 from the bundle (or finds it short).
    let run = mirror(&served.url(), &keys.vkey, &tmp.path().join("mirror"));
    assert_eq!(run.code, 1, "mirror must refuse a tampered bundle");
    assert!(
        ["tile/0/001", BUNDLE]
            .iter()
            .any(|t| run.stdout.contains(t)),
        "{}",
        run.output()
    );
}

#[test]
fn changed_byte_in_an_entry_is_caught_at_its_index() {
    assert_bundle_tampering_caught(
        31,
        |entries| {
            let e = &mut entries[AT];
            let mid = e.len() / 2;
            e[mid] ^= 0x01;
        },
        AT_INDEX,
    );
}

#[test]
fn swapped_entries_are_caught_at_the_lower_index() {
    assert_bundle_tampering_caught(
        32,
        |entries| {
            assert_ne!(entries[AT], entries[AT + 3], "a swap must change the order");
            entries.swap(AT, AT + 3);
        },
        AT_INDEX,
    );
}

#[test]
fn dropped_entry_is_caught_at_its_index() {
    assert_bundle_tampering_caught(
        33,
        |entries| {
            entries.remove(AT);
        },
        AT_INDEX,
    );
}

#[test]
fn duplicated_entry_is_caught_at_the_replaced_index() {
    assert_bundle_tampering_caught(
        34,
        |entries| {
            assert_ne!(entries[AT - 1], entries[AT]);
            entries[AT] = entries[AT - 1].clone();
        },
        AT_INDEX,
    );
}

// ---------------------------------------------------------------------
// Real logs: an ungated server (`--entries opaque`) takes any signed
// entry, so a test can write what the gate would have refused.

/// A real log and the admin that signs its registrations.
struct Ungated {
    log: Server,
    admin: NoteSigner,
    keys: AuditKeys,
    url: String,
}

impl Ungated {
    fn start(dir: &Path) -> Ungated {
        let log = Server::start(&dir.join("log"), &[]);
        let admin = NoteSigner::from_seed("admin", [1; 32]).unwrap();
        let admin_pub = dir.join("admin.key.pub");
        std::fs::write(&admin_pub, admin.verifier().to_vkey()).unwrap();
        let keys = AuditKeys {
            vkey: log.vkey.clone(),
            admin_pub,
        };
        let url = format!("http://{}", log.addr);
        Ungated {
            log,
            admin,
            keys,
            url,
        }
    }

    /// Appends a leaf; its index and leaf hash, as a link.
    fn append(&self, leaf: &[u8]) -> EntryRef {
        let answer = self.log.append(leaf);
        link(answer["index"].as_u64().unwrap(), &leaf_hash(leaf))
    }

    fn put(&self, key: &NoteSigner, st: &Statement) -> EntryRef {
        self.append(&signed(key, st))
    }

    fn register(&self, actor: &Actor, key: &NoteSigner) -> EntryRef {
        self.put(&self.admin, &registration(actor, key))
    }

    fn audit(&self, since: Option<&Path>, out: &Path) -> Run {
        audit(&self.url, &self.keys, since, out)
    }
}

/// The leaf bytes of `st` signed by `key`.
fn signed(key: &NoteSigner, st: &Statement) -> Vec<u8> {
    gatelog::access::entry::sign(key, st).encode_to_vec()
}

/// The admin registers `actor` with `key`.
fn registration(actor: &Actor, key: &NoteSigner) -> Statement {
    build::register(
        &human("admin"),
        actor,
        "",
        key.verifier().public_key(),
        now_ms(),
    )
}

/// Human `user{n}` and a key of its own.
fn user(n: u64) -> (Actor, NoteSigner) {
    let mut seed = [0xa5; 32];
    seed[..8].copy_from_slice(&n.to_le_bytes());
    let id = format!("user{n}");
    (human(&id), NoteSigner::from_seed(&id, seed).unwrap())
}

// ---------------------------------------------------------------------
// Case 5: a lying server serves a bad hash tile. The entries are honest,
// so the tree verifies; `gatelog mirror` must refuse the tile and the
// audit over HTTP must report it.

/// A mirror (with hash tiles) of a real log of 300 registrations, and a
/// static server that serves it; both mirror and audit of it are clean.
fn served_mirror(tmp: &Path) -> (AuditKeys, PathBuf, StaticServer) {
    let u = Ungated::start(tmp);
    for n in 0..300 {
        let (actor, key) = user(n);
        u.register(&actor, &key);
    }
    let dir = tmp.join("mirror");
    assert_eq!(mirror(&u.url, &u.keys.vkey, &dir).code, 0);
    for tile in ["tile/0/000", "tile/entries/000", "tile/0/001.p/44"] {
        assert!(dir.join(tile).is_file(), "{tile} missing from the mirror");
    }
    // From here on the static server is the log.
    let served = StaticServer::start(&dir);
    let control = audit(&served.url(), &u.keys, None, &tmp.join("control"));
    assert_eq!(control.code, 0, "the served mirror must audit clean");
    let control = mirror(&served.url(), &u.keys.vkey, &tmp.join("control-mirror"));
    assert_eq!(control.code, 0, "the served mirror must mirror clean");
    (u.keys.clone(), dir, served)
}

/// `gatelog mirror` from the lying server refuses, naming tile/0/000; the
/// audit over HTTP finds one of `codes` at entry `index` naming it, and no
/// tree_mismatch (the entries are the true ones).
fn assert_bad_hash_tile_caught(
    tmp: &Path,
    keys: &AuditKeys,
    served: &StaticServer,
    codes: &[&str],
    index: u64,
) {
    let run = mirror(&served.url(), &keys.vkey, &tmp.join("fresh-mirror"));
    assert_eq!(run.code, 1, "mirror must refuse a bad hash tile");
    assert!(run.stdout.contains("tile/0/000"), "{}", run.output());

    let out = tmp.join("audit");
    let run = audit(&served.url(), keys, None, &out);
    assert_eq!(run.code, 1, "the audit must report a bad hash tile");
    let found = findings(&out);
    assert!(
        has_finding(&found, codes, index, &["tile/0/000"]),
        "no {codes:?} at entry {index} naming tile/0/000: {found:#?}"
    );
    assert!(
        !found.iter().any(|f| f.code == "tree_mismatch"),
        "the entries are honest; the tree must verify: {found:#?}"
    );
}

#[test]
fn truncated_hash_tile_is_refused_by_mirror_and_reported_by_audit() {
    let tmp = tempfile::tempdir().unwrap();
    let (keys, dir, served) = served_mirror(tmp.path());
    let tile = dir.join("tile/0/000");
    let data = std::fs::read(&tile).unwrap();
    assert_eq!(data.len(), 256 * 32);
    // Only the first 200 hashes: entry 200 is the first without one. Either
    // code names it: its leaf hash differs from (is missing in) the tile.
    std::fs::write(&tile, &data[..200 * 32]).unwrap();
    let codes = ["leaf_mismatch", "tile_mismatch"];
    assert_bad_hash_tile_caught(tmp.path(), &keys, &served, &codes, 200);
}

#[test]
fn altered_hash_tile_is_refused_by_mirror_and_reported_by_audit() {
    let tmp = tempfile::tempdir().unwrap();
    let (keys, dir, served) = served_mirror(tmp.path());
    let tile = dir.join("tile/0/000");
    let mut data = std::fs::read(&tile).unwrap();
    // One bit of entry 77's leaf hash.
    data[77 * 32 + 5] ^= 0x01;
    std::fs::write(&tile, data).unwrap();
    assert_bad_hash_tile_caught(tmp.path(), &keys, &served, &["leaf_mismatch"], 77);
}

// ---------------------------------------------------------------------
// Case 6: a checkpoint signed by another key under the log's name.

#[test]
fn checkpoint_signed_by_another_key_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let log = tmp.path().join("log");
    let keys = clean_workload(&log, 36, 100);
    let log_s = log.to_str().unwrap();
    let control = audit(log_s, &keys, None, &tmp.path().join("control"));
    assert_eq!(control.code, 0, "the untouched workload must audit clean");

    // The same checkpoint body, signed by a key with the log's name.
    let note = std::fs::read(log.join("checkpoint")).unwrap();
    let cp = Checkpoint::open(&note, &NoteVerifier::parse(&keys.vkey).unwrap()).unwrap();
    let impostor = NoteSigner::from_seed(&cp.origin, [9; 32]).unwrap();
    std::fs::write(log.join("checkpoint"), cp.sign(&impostor).unwrap()).unwrap();

    let run = audit(log_s, &keys, None, &tmp.path().join("audit"));
    assert_eq!(
        run.code, 1,
        "a forged checkpoint is tampering, not a usage error"
    );
    assert!(run.output().contains("does not verify"), "{}", run.output());
    // The package says why, and holds nothing else.
    let exceptions = std::fs::read_to_string(tmp.path().join("audit/exceptions.csv")).unwrap();
    assert!(
        exceptions.contains(",checkpoint_signature,"),
        "{exceptions}"
    );
    assert!(!tmp.path().join("audit/population.csv").exists());

    // Served by a lying server: the mirror refuses it too, as does the audit.
    let served = StaticServer::start(&log);
    let run = mirror(&served.url(), &keys.vkey, &tmp.path().join("mirror"));
    assert_eq!(run.code, 1);
    assert!(run.stdout.contains("does not verify"), "{}", run.output());
    let run = audit(&served.url(), &keys, None, &tmp.path().join("audit-http"));
    assert_eq!(run.code, 1);
    assert!(run.output().contains("does not verify"), "{}", run.output());
}

// ---------------------------------------------------------------------
// Case 7: `--since` a checkpoint the log's own key signed over another
// history. The log (or a mirror of it) proves consistency from its true
// history, which the forged checkpoint's root is not part of.

#[test]
fn since_checkpoint_of_another_history_is_not_consistent() {
    let tmp = tempfile::tempdir().unwrap();
    let u = Ungated::start(tmp.path());
    let mut leaves = Vec::new();
    for n in 0..20 {
        let (actor, key) = user(n);
        let leaf = signed(&u.admin, &registration(&actor, &key));
        u.append(&leaf);
        leaves.push(leaf);
    }
    let genuine = tmp.path().join("genuine.checkpoint");
    std::fs::write(&genuine, get_ok(u.log.addr, "/checkpoint").body).unwrap();
    for n in 20..40 {
        let (actor, key) = user(n);
        u.register(&actor, &key);
    }

    // The first 20 entries, except that entry 10 registers someone else,
    // checkpointed with the log's own key.
    let (actor, key) = user(1000);
    leaves[10] = signed(&u.admin, &registration(&actor, &key));
    let mut other_history = CompactRange::default();
    for leaf in &leaves {
        other_history.push(leaf_hash(leaf));
    }
    let log_key = std::fs::read_to_string(tmp.path().join("log/log.key")).unwrap();
    let log_key = NoteSigner::parse(log_key.trim()).unwrap();
    let forged = Checkpoint {
        origin: log_key.name().to_string(),
        size: 20,
        root: other_history.root(),
        extensions: vec![],
    }
    .sign(&log_key)
    .unwrap();
    let forged_path = tmp.path().join("forged.checkpoint");
    std::fs::write(&forged_path, forged).unwrap();

    // The log itself, and a mirror of it (proving from its hash tiles).
    let dir = tmp.path().join("mirror");
    assert_eq!(mirror(&u.url, &u.keys.vkey, &dir).code, 0);
    for (name, source) in [("http", u.url.as_str()), ("mirror", dir.to_str().unwrap())] {
        let out = tmp.path().join(format!("control-{name}"));
        let control = audit(source, &u.keys, Some(&genuine), &out);
        assert_eq!(
            control.code, 0,
            "{name}: --since a true checkpoint is clean"
        );
        let manifest: serde_json::Value =
            serde_json::from_slice(&std::fs::read(out.join("manifest.json")).unwrap()).unwrap();
        assert_eq!(manifest["since"]["consistent"], true, "{name}");

        let out = tmp.path().join(format!("audit-{name}"));
        let run = audit(source, &u.keys, Some(&forged_path), &out);
        assert_eq!(run.code, 1, "{name}: --since another history must fail");
        let found = findings(&out);
        assert_eq!(
            codes_at(&found),
            [("not_consistent_with_since", 20)],
            "{name}: {found:#?}"
        );
    }
}

// ---------------------------------------------------------------------
// Case 8: entries signed with a key that was rotated out or revoked.

/// The admin changes `identity`'s key registration to `key` with `op`
/// (ROTATE_KEY: `key` replaces the old one; REVOKE_KEY: `key` is revoked).
fn key_change(identity: &Actor, key: &NoteSigner, op: Operation) -> Statement {
    let mut st = registration(identity, key);
    if let Some(Body::IdentityRegistration(r)) = &mut st.body {
        r.operation = op as i32;
    }
    st
}

#[test]
fn entry_signed_with_a_revoked_key_is_reported_at_its_index() {
    let tmp = tempfile::tempdir().unwrap();
    let u = Ungated::start(tmp.path());
    let (alice, bob) = (human("alice"), human("bob"));
    let alice_old = NoteSigner::from_seed("alice", [2; 32]).unwrap();
    let alice_new = NoteSigner::from_seed("alice", [3; 32]).unwrap();
    let bob_key = NoteSigner::from_seed("bob", [4; 32]).unwrap();
    u.register(&alice, &alice_old);
    u.register(&bob, &bob_key);
    u.put(
        &u.admin,
        &key_change(&alice, &alice_new, Operation::RotateKey),
    );
    u.put(&u.admin, &key_change(&bob, &bob_key, Operation::RevokeKey));
    let t = now_ms();
    let request = |who: &Actor, chain: &str| {
        let tgt = target("github", "corp/app", &who.id);
        build::request(who, chain, tgt, delta(&["read"], &["write"], &[]), "", t)
    };
    // The rotated identity signs with its new key: fine.
    u.put(&alice_new, &request(&alice, "NEW-KEY-1"));
    let control = u.audit(None, &tmp.path().join("control"));
    assert_eq!(control.code, 0, "key changes and the new key audit clean");

    let rotated_out = u.put(&alice_old, &request(&alice, "OLD-KEY-1")).index;
    let revoked = u.put(&bob_key, &request(&bob, "REVOKED-KEY-1")).index;
    let out = tmp.path().join("audit");
    let run = u.audit(None, &out);
    assert_eq!(run.code, 1);
    let found = findings(&out);
    assert_eq!(
        codes_at(&found),
        [("signer", rotated_out), ("signer", revoked)],
        "{found:#?}"
    );
    assert!(
        found.iter().all(|f| f.message.contains("key_revoked")),
        "{found:#?}"
    );
}

// ---------------------------------------------------------------------
// Case 9: a forged link in a decision chain.

#[test]
fn forged_chain_link_is_reported_at_its_index() {
    let tmp = tempfile::tempdir().unwrap();
    let u = Ungated::start(tmp.path());
    let (alice, bob) = (human("alice"), human("bob"));
    let alice_key = NoteSigner::from_seed("alice", [2; 32]).unwrap();
    let bob_key = NoteSigner::from_seed("bob", [3; 32]).unwrap();
    u.register(&alice, &alice_key);
    u.register(&bob, &bob_key);
    let t = now_ms();
    let d = delta(&["read"], &["write"], &[]);
    let tgt = target("github", "corp/app", "alice");
    let req = u.put(
        &alice_key,
        &build::request(&alice, "CHG-1", tgt, d.clone(), "", t),
    );
    let approval = u.put(
        &bob_key,
        &build::approve(&bob, "CHG-1", vec![req.clone()], d.clone(), t + MINUTE, t),
    );
    let control = u.audit(None, &tmp.path().join("control"));
    assert_eq!(control.code, 0, "a correctly linked chain audits clean");

    // Another approval whose link names the request's index but carries
    // another entry's leaf hash (the first approval's).
    let forged_link = link(req.index, &approval.leaf_hash);
    let forged = u.put(
        &bob_key,
        &build::approve(&bob, "CHG-1", vec![forged_link], d, t + 2 * MINUTE, t),
    );
    let out = tmp.path().join("audit");
    let run = u.audit(None, &out);
    assert_eq!(run.code, 1);
    let found = findings(&out);
    assert_eq!(
        codes_at(&found),
        [("should_have_been_rejected", forged.index)],
        "{found:#?}"
    );
    assert!(
        found[0].message.contains("link_hash_mismatch"),
        "{found:#?}"
    );
}

// ---------------------------------------------------------------------
// A signature that does not verify, in a log whose tree is intact: the
// log signed a checkpoint over an entry nobody signed.

#[test]
fn entry_with_a_bad_signature_is_reported_at_its_index() {
    let tmp = tempfile::tempdir().unwrap();
    let u = Ungated::start(tmp.path());
    let alice = human("alice");
    let alice_key = NoteSigner::from_seed("alice", [2; 32]).unwrap();
    u.register(&alice, &alice_key);
    let t = now_ms();
    let request = |chain: &str| {
        let tgt = target("github", "corp/app", "alice");
        build::request(&alice, chain, tgt, delta(&["read"], &["write"], &[]), "", t)
    };
    // Enough good entries around it that it sits inside a signature batch.
    for n in 0..300 {
        u.put(&alice_key, &request(&format!("GOOD-{n}")));
    }
    let mut forged = gatelog::access::entry::sign(&alice_key, &request("FORGED-1"));
    forged.signature[10] ^= 1;
    let bad = u.append(&forged.encode_to_vec()).index;
    for n in 300..400 {
        u.put(&alice_key, &request(&format!("GOOD-{n}")));
    }
    let out = tmp.path().join("audit");
    let run = u.audit(None, &out);
    assert_eq!(run.code, 1, "{}", run.output());
    let found = findings(&out);
    assert_eq!(codes_at(&found), [("bad_signature", bad)], "{found:#?}");
    assert!(found[0].message.contains("alice"), "{found:#?}");
}

// ---------------------------------------------------------------------
// A lie one level up: a level-1 hash tile altered in a directory whose
// entries and level-0 tiles are honest. Only the chain files' inclusion
// proofs go through it; the audit must refuse to write proofs that do not
// verify and report the tile.

#[test]
fn altered_level_1_tile_fails_the_chain_proofs() {
    let tmp = tempfile::tempdir().unwrap();
    let log = tmp.path().join("log");
    let keys = clean_workload(&log, 41, 300);
    let control = audit(
        log.to_str().unwrap(),
        &keys,
        None,
        &tmp.path().join("control"),
    );
    assert_eq!(control.code, 0, "{}", control.output());
    let dir = log.join("tile/1");
    let tile = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.is_file() || p.is_dir())
        .expect("a level-1 tile");
    // tile/1/000.p/<width> for a log of fewer than 65,536 entries.
    let tile = if tile.is_dir() {
        std::fs::read_dir(&tile)
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path()
    } else {
        tile
    };
    let mut data = std::fs::read(&tile).unwrap();
    assert!(data.len() >= 3 * 32, "{}", tile.display());
    data[2 * 32 + 7] ^= 0x10;
    std::fs::write(&tile, data).unwrap();

    let out = tmp.path().join("audit");
    let run = audit(log.to_str().unwrap(), &keys, None, &out);
    assert_eq!(run.code, 1, "{}", run.output());
    let found = findings(&out);
    assert!(
        found.iter().all(|f| f.code == "tile_mismatch"),
        "{found:#?}"
    );
    assert!(!found.is_empty(), "{}", run.output());
    // No chain file carries a proof that does not verify.
    for f in &found {
        assert!(f.message.contains("does not verify"), "{f:?}");
    }
    let population = std::fs::read_to_string(out.join("population.csv")).unwrap();
    let mut nulls = 0;
    for row in population.lines().skip(1) {
        let file = row.rsplit(',').next().unwrap();
        let chain: serde_json::Value =
            serde_json::from_slice(&std::fs::read(out.join(file)).unwrap()).unwrap();
        for e in chain["entries"].as_array().unwrap() {
            nulls += usize::from(e["inclusion_proof"].is_null());
        }
    }
    assert!(nulls > 0, "proofs through the altered hash were written");
}
