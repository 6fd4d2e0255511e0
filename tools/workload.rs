//! gatelog-workload: writes a seeded, realistic workflow log straight into
//! a directory laid out like the tlog-tiles API (checkpoint and entry
//! bundles), *without* the gate, injecting each kind of violation at a
//! known rate. `gatelog audit --log DIR` must find every injected
//! violation and nothing else; the expected findings are printed as JSON.
//! The log is one of rules version 1 (it has no parameters record), which
//! the audit replays under those rules: the old-rules path, at scale.
//!
//!   gatelog-workload --seed 7 --chains 10000 --inject-rate 0.05 --out /tmp/wl
//!   gatelog audit --log /tmp/wl --vkey "$(cat /tmp/wl/log.vkey)" \
//!       --admin-key /tmp/wl/admin.key.pub --out /tmp/wl-audit

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use gatelog::access::entry::build::{self, delta, human, link, target};
use gatelog::access::entry::proto::{
    workload_identity, Actor, EntitlementDelta, EntryRef, Statement, WorkloadIdentity,
};
use gatelog::access::entry::{self, ActorKind};
use gatelog::tlog::checkpoint::Checkpoint;
use gatelog::tlog::merkle::{leaf_hash, CompactRange};
use gatelog::tlog::note::NoteSigner;
use gatelog::tlog::tiles::{
    append_leaves, encode_bundle, TileKind, TilePath, TileReader, HASH_SIZE, TILE_WIDTH,
};
use prost::Message;

#[derive(Parser, Debug)]
#[command(name = "gatelog-workload")]
struct Args {
    /// Seed for every choice (and the keys): the same seed, the same log.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Decision chains to write (about 6 entries each).
    #[arg(long, default_value_t = 1000)]
    chains: u64,
    /// Chance that a chain carries one injected violation.
    #[arg(long, default_value_t = 0.05)]
    inject_rate: f64,
    /// Where the log goes (created; must not hold a log already).
    #[arg(long)]
    out: PathBuf,
    /// A log of this release's rules (version 5) instead, where every
    /// chain grants a role for an hour and the role is removed when it
    /// ends; the injections are the access lifecycle's (late or missing
    /// de-provisioning, access kept past its end, a suspended assistant
    /// acting).
    #[arg(long)]
    lifecycle: bool,
}

#[path = "workload/lifecycle.rs"]
mod lifecycle;

/// splitmix64: small, seeded, good enough to pick workloads.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn chance(&mut self, p: f64) -> bool {
        ((self.next() >> 11) as f64 / (1u64 << 53) as f64) < p
    }
    fn seed(&mut self) -> [u8; 32] {
        let mut s = [0u8; 32];
        for c in s.chunks_mut(8) {
            c.copy_from_slice(&self.next().to_le_bytes());
        }
        s
    }
}

struct Member {
    actor: Actor,
    key: NoteSigner,
}

/// The violations injected, by the audit codes that must report them.
const INJECTIONS: [(&str, &[&str]); 8] = [
    ("self_approval", &["admitted_despite_gate"]),
    ("assistant_approval", &["admitted_despite_gate"]),
    // An unapproved entitlement is also beyond what was requested.
    (
        "delta_mismatch",
        &["admitted_despite_gate", "executed_beyond_request"],
    ),
    ("unknown_signer", &["signer"]),
    ("outcome_mismatch", &["outcome_mismatch"]),
    ("drift", &["drift"]),
    ("unreviewed_break_glass", &["unreviewed_break_glass"]),
    ("late_review", &["late_review"]),
];

/// The violations injected, by kind, and the findings the audit must
/// make for them, by code.
#[derive(Default)]
struct Injected {
    kinds: BTreeMap<&'static str, u64>,
    findings: BTreeMap<&'static str, u64>,
}

impl Injected {
    /// One `kind` of `injections` (kinds and their codes) injected.
    fn add(&mut self, injections: &[(&'static str, &[&'static str])], kind: &'static str) {
        *self.kinds.entry(kind).or_default() += 1;
        let codes = injections
            .iter()
            .find(|(k, _)| *k == kind)
            .expect("listed")
            .1;
        for code in codes {
            *self.findings.entry(code).or_default() += 1;
        }
    }
}

struct Writer {
    entries: Vec<Vec<u8>>,
    /// Synthetic time: one second per entry (see [`start_ms`]).
    clock: i64,
}

impl Writer {
    fn put(&mut self, who: &NoteSigner, mut st: Statement) -> EntryRef {
        st.issued_at = Some(entry::timestamp(self.clock));
        self.clock += 1000;
        let leaf = entry::sign(who, &st).encode_to_vec();
        let at = link(self.entries.len() as u64, &leaf_hash(&leaf));
        self.entries.push(leaf);
        at
    }
}

/// When the log starts: far enough back that it ends a day before now
/// whatever its length (at most 6 entries, a second each, per chain, and
/// two hours more for each late review), so every break-glass deadline in
/// it has passed when it is audited.
fn start_ms(args: &Args) -> i64 {
    const HOUR: i64 = 3_600_000;
    let chains = args.chains as i64;
    let late_reviews = (chains as f64 * args.inject_rate).ceil() as i64;
    gatelog::sys::clock::now_ms() - 24 * HOUR - chains * 6_000 - late_reviews * 2 * HOUR
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.out.join("checkpoint").exists() {
        anyhow::bail!("{} already holds a log", args.out.display());
    }
    let mut rng = Rng(args.seed);
    if args.lifecycle {
        // A chain and its removal take about ten entries (a second each);
        // the last grants end an hour after the last chain, late removals
        // come an hour after that: the log ends a day before now.
        let start = gatelog::sys::clock::now_ms() - 27 * 3_600_000 - args.chains as i64 * 12_000;
        let (entries, log_key, admin, report) = lifecycle::write(&args, &mut rng, start)?;
        write_log(&args.out, &log_key, &entries)?;
        std::fs::write(args.out.join("log.vkey"), log_key.verifier().to_vkey())?;
        std::fs::write(args.out.join("admin.key.pub"), admin.verifier().to_vkey())?;
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    let log_key = NoteSigner::from_seed("workload.example/log", rng.seed())?;
    let admin = Member {
        actor: human("admin"),
        key: NoteSigner::from_seed("admin", rng.seed())?,
    };
    let mut w = Writer {
        entries: Vec::new(),
        clock: start_ms(&args),
    };
    let member = |rng: &mut Rng, actor: Actor| -> anyhow::Result<Member> {
        let key = NoteSigner::from_seed(&actor.id, rng.seed())?;
        Ok(Member { actor, key })
    };
    let workload = |id: workload_identity::Id| Some(WorkloadIdentity { id: Some(id) });
    let mut cast: HashMap<&str, Vec<Member>> = HashMap::new();
    for i in 0..8 {
        cast.entry("requester")
            .or_default()
            .push(member(&mut rng, human(&format!("user{i}")))?);
        cast.entry("approver")
            .or_default()
            .push(member(&mut rng, human(&format!("manager{i}")))?);
    }
    for i in 0..6 {
        let id = if i % 2 == 0 {
            workload_identity::Id::SpiffeId(format!("spiffe://corp.example/ns/ci/sa/deployer{i}"))
        } else {
            workload_identity::Id::CloudPrincipal(format!(
                "arn:aws:iam::123456789012:role/deployer{i}"
            ))
        };
        let actor = Actor {
            id: format!("pipeline{i}"),
            kind: ActorKind::Nhi as i32,
            workload: workload(id),
            ..Default::default()
        };
        cast.entry("executor")
            .or_default()
            .push(member(&mut rng, actor)?);
    }
    for i in 0..3 {
        let a = build::assistant(
            &format!("copilot{i}"),
            &format!("spiffe://corp.example/ns/ai/sa/copilot{i}"),
            "model-2026",
            "advisor",
        );
        cast.entry("assistant")
            .or_default()
            .push(member(&mut rng, a)?);
    }
    for group in cast.values() {
        for m in group {
            let st = build::register(&admin.actor, &m.actor, "", m.key.verifier().public_key(), 0);
            w.put(&admin.key, st);
        }
    }
    let pick = |rng: &mut Rng, role: &str| rng.below(cast[role].len() as u64) as usize;
    let systems = ["github", "aws", "okta", "postgres"];
    let mut last_after: HashMap<(String, String, String), Vec<String>> = HashMap::new();
    let mut injected = Injected::default();
    const HOUR: i64 = 3_600_000;

    let progress = indicatif::ProgressBar::new(args.chains).with_style(
        indicatif::ProgressStyle::with_template(
            "workload: {bar:30} {human_pos}/{human_len} chains ({percent}%), {per_sec}, {eta} left",
        )
        .expect("a valid template"),
    );
    for n in 0..args.chains {
        progress.inc(1);
        let chain = format!("CHG-{n}");
        let r = pick(&mut rng, "requester");
        let requester = &cast["requester"][r];
        let system = systems[rng.below(systems.len() as u64) as usize];
        let resource = format!("corp/app{}", rng.below(20));
        let subject = requester.actor.id.clone();
        let key = (system.to_string(), resource.clone(), subject.clone());
        let before: Vec<String> = last_after
            .get(&key)
            .cloned()
            .unwrap_or_else(|| vec!["read".into()]);
        let before_refs: Vec<&str> = before.iter().map(String::as_str).collect();
        // People hold a handful of entitlements: grant one, or take one
        // back once they hold five.
        let grant = if before.len() >= 5 {
            before[rng.below(before.len() as u64) as usize].clone()
        } else {
            format!("role{}", rng.below(1000))
        };
        let d: EntitlementDelta = if before.contains(&grant) {
            delta(&before_refs, &[], &[grant.as_str()])
        } else {
            delta(&before_refs, &[grant.as_str()], &[])
        };
        let mut d = d;
        d.privileged = rng.chance(0.3);
        let mut injection = if rng.chance(args.inject_rate) {
            Some(INJECTIONS[rng.below(INJECTIONS.len() as u64) as usize].0)
        } else {
            None
        };
        // Drift needs an earlier change to drift from.
        if injection == Some("drift") && !last_after.contains_key(&key) {
            injection = None;
        }
        let break_glass = matches!(injection, Some("unreviewed_break_glass" | "late_review"))
            || (injection.is_none() && rng.chance(0.05));
        let t = || target(system, &resource, &subject);
        let e = pick(&mut rng, "executor");
        let executor = &cast["executor"][e];

        let executed_after: Vec<String>;
        if break_glass {
            let bg = w.put(
                &requester.key,
                build::break_glass(
                    &requester.actor,
                    &chain,
                    t(),
                    d.clone(),
                    "incident",
                    w.clock + HOUR,
                    0,
                ),
            );
            let intent = w.put(
                &requester.key,
                build::intent(
                    &requester.actor,
                    &chain,
                    vec![bg.clone()],
                    d.clone(),
                    None,
                    0,
                ),
            );
            executed_after = d.after.clone();
            w.put(
                &requester.key,
                build::outcome(
                    &requester.actor,
                    &chain,
                    vec![intent],
                    executed_after.clone(),
                    &chain,
                    0,
                ),
            );
            match injection {
                Some("unreviewed_break_glass") => {}
                Some("late_review") => {
                    w.clock += 2 * HOUR;
                    let rv = &cast["approver"][pick(&mut rng, "approver")];
                    w.put(&rv.key, build::review(&rv.actor, &chain, vec![bg], true, 0));
                }
                _ => {
                    let rv = &cast["approver"][pick(&mut rng, "approver")];
                    w.put(&rv.key, build::review(&rv.actor, &chain, vec![bg], true, 0));
                }
            }
        } else {
            // The requester's name under a key nobody registered.
            let ghost = NoteSigner::from_seed(&requester.actor.id, rng.seed())?;
            let signer = if injection == Some("unknown_signer") {
                &ghost
            } else {
                &requester.key
            };
            let req = w.put(
                signer,
                build::request(&requester.actor, &chain, t(), d.clone(), "", 0),
            );
            if rng.chance(0.5) {
                let a = &cast["assistant"][pick(&mut rng, "assistant")];
                w.put(
                    &a.key,
                    build::recommend(
                        &a.actor,
                        &chain,
                        vec![req.clone()],
                        d.clone(),
                        [n as u8; 32],
                        0,
                    ),
                );
            }
            let mut links = vec![req.clone()];
            let needed = if d.privileged { 2 } else { 1 };
            let first = pick(&mut rng, "approver");
            for k in 0..needed {
                let a = &cast["approver"][(first + k) % cast["approver"].len()];
                let (who, actor) = match (injection, k) {
                    (Some("self_approval"), 0) => (&requester.key, &requester.actor),
                    (Some("assistant_approval"), 0) => {
                        let a = &cast["assistant"][0];
                        (&a.key, &a.actor)
                    }
                    _ => (&a.key, &a.actor),
                };
                let until = w.clock + HOUR;
                links.push(w.put(
                    who,
                    build::approve(actor, &chain, vec![req.clone()], d.clone(), until, 0),
                ));
            }
            let mut executed = d.clone();
            if injection == Some("delta_mismatch") {
                // Not what was approved (and no entitlement held yet).
                executed = delta(&before_refs, &[&format!("unapproved-{n}")], &[]);
                executed.privileged = d.privileged;
            }
            let intent = w.put(
                &executor.key,
                build::intent(&executor.actor, &chain, links, executed.clone(), None, 0),
            );
            let observed_after = if injection == Some("outcome_mismatch") {
                let mut a = executed.after.clone();
                a.push(format!("unexpected-{n}"));
                a
            } else {
                executed.after.clone()
            };
            let mut outcome = build::outcome(
                &executor.actor,
                &chain,
                vec![intent],
                observed_after.clone(),
                &chain,
                0,
            );
            if let Some(entry::Body::ExecutionOutcome(o)) = &mut outcome.body {
                o.observed_before = if injection == Some("drift") {
                    vec!["tampered".into()]
                } else {
                    before.clone()
                };
            }
            w.put(&executor.key, outcome);
            executed_after = observed_after;
        }
        last_after.insert(key, executed_after);
        if let Some(kind) = injection {
            injected.add(&INJECTIONS, kind);
        }
    }
    progress.finish_and_clear();
    write_log(&args.out, &log_key, &w.entries)?;
    std::fs::write(args.out.join("log.vkey"), log_key.verifier().to_vkey())?;
    std::fs::write(
        args.out.join("admin.key.pub"),
        admin.key.verifier().to_vkey(),
    )?;
    let report = serde_json::json!({
        "entries": w.entries.len(),
        "chains": args.chains,
        "injected": injected.kinds,
        "expected_findings": injected.findings,
    });
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}

/// No tiles yet: the log is written in one append.
struct NoTiles;

impl TileReader for NoTiles {
    type Error = std::convert::Infallible;
    fn read_tile(&self, _: u8, _: u64) -> Result<Option<Arc<Vec<u8>>>, Self::Error> {
        Ok(None)
    }
}

fn write_tile(dir: &Path, tile: TilePath, data: &[u8]) -> anyhow::Result<()> {
    let path = dir.join(tile.to_string());
    std::fs::create_dir_all(path.parent().expect("tile paths have a parent"))?;
    std::fs::write(&path, data).with_context(|| format!("writing {}", path.display()))
}

/// The checkpoint, hash tiles and entry bundles of a tlog-tiles directory,
/// as a mirror of the log would hold them.
fn write_log(dir: &Path, key: &NoteSigner, entries: &[Vec<u8>]) -> anyhow::Result<()> {
    let mut range = CompactRange::default();
    let mut hashes = Vec::with_capacity(entries.len());
    for (n, chunk) in entries.chunks(TILE_WIDTH as usize).enumerate() {
        for e in chunk {
            hashes.push(leaf_hash(e));
            range.push(leaf_hash(e));
        }
        let tile = TilePath {
            kind: TileKind::Entries,
            index: n as u64,
            width: chunk.len() as u64,
        };
        write_tile(dir, tile, &encode_bundle(chunk.iter().map(Vec::as_slice)))?;
    }
    let tiles = append_leaves(&NoTiles, 0, &hashes).map_err(|e| anyhow::anyhow!("{e}"))?;
    for ((level, index), data) in tiles {
        let tile = TilePath {
            kind: TileKind::Hashes { level },
            index,
            width: (data.len() / HASH_SIZE) as u64,
        };
        write_tile(dir, tile, &data)?;
    }
    let note = Checkpoint {
        origin: key.name().to_string(),
        size: range.size(),
        root: range.root(),
        extensions: vec![],
    }
    .sign(key)?;
    std::fs::write(dir.join("checkpoint"), note)?;
    Ok(())
}
