//! The auditor: what an auditor runs against a log it does not trust,
//! from a mirror directory or the log's URL ([`source`]).
//!
//! - [`run`] streams a log's entries through the verified replay
//!   ([`crate::access::replay::Auditor`]) and writes the evidence package
//!   ([`package`]) as it goes: nothing grows with the log but the files.
//! - [`verify`]: the one-off checks (a checkpoint, an inclusion proof,
//!   consistency, split-view evidence).
//!
//! Uses [`crate::tlog`], [`crate::access`], [`crate::sys`] and the mirror's
//! layout; never the server. Builds on the verifying side (feature
//! `verifier`).

pub mod access;
pub mod package;
pub mod report;
pub mod source;
pub mod verify;

use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc};

use crate::access::cedar::CedarEngine;
use crate::access::replay::{AuditSummary, Auditor, ChainReport, Finding, Period, PopulationRow};
use crate::observers::spill::SpilledEntries;
use crate::tlog::checkpoint::Checkpoint;
use crate::tlog::merkle::Hash;
use crate::tlog::note::NoteVerifier;
use crate::tlog::tiles::{decode_bundle, hash_at, TileKind, TilePath, HASH_SIZE, TILE_WIDTH};
use anyhow::Context;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use indicatif::ProgressBar;

use package::{write_untrusted, ChainWriter, Package};
use report::REPORT_TRAILS;
use source::Source;

/// What an audit reads and where its package goes (`gatelog audit`'s
/// flags).
#[derive(Clone, Debug)]
pub struct AuditConfig {
    /// A mirror directory or the log's URL.
    pub log: String,
    /// The log's verifier key.
    pub vkey: String,
    /// The bootstrap admins' public key files (logs of rules version 1).
    pub admin_keys: Vec<PathBuf>,
    /// The leaf hash entry 0 must have.
    pub genesis: Option<[u8; 32]>,
    /// Witnesses whose cosignatures of the checkpoint bound the log's time.
    pub witness_keys: Vec<String>,
    /// An earlier checkpoint the log must extend.
    pub since: Option<PathBuf>,
    /// The period reported on; None: all of it.
    pub period: Option<Period>,
    /// Which chains get a chain file.
    pub chains: ChainFiles,
    /// The package's directory.
    pub out: PathBuf,
    /// A draft policy to judge every past intent under
    /// (`policy_simulation.csv`): a `policyPublication` statement in
    /// proto3 JSON, or Cedar alone (the classes in force stay).
    pub draft_policy: Option<PathBuf>,
    /// Where open chains' entries are kept while the audit runs (an
    /// unnamed file); None: the package's directory (a disk, where the
    /// system's temporary directory may be memory).
    pub spill_dir: Option<PathBuf>,
}

fn spill_dir(config: &AuditConfig) -> PathBuf {
    config
        .spill_dir
        .clone()
        .unwrap_or_else(|| config.out.clone())
}

/// Which chains get `chains/<chain_id>.json`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChainFiles {
    /// Every chain.
    All,
    /// Only chains with findings.
    Exceptions,
    /// None: population.csv still lists every chain.
    None,
}

impl std::str::FromStr for ChainFiles {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "all" => Ok(ChainFiles::All),
            "exceptions" => Ok(ChainFiles::Exceptions),
            "none" => Ok(ChainFiles::None),
            _ => Err(format!("{s:?}: expected all, exceptions or none")),
        }
    }
}

impl ChainFiles {
    /// Whether a chain gets a file.
    pub(super) fn wanted(self, row: &PopulationRow) -> bool {
        match self {
            ChainFiles::All => true,
            ChainFiles::Exceptions => row.findings > 0,
            ChainFiles::None => false,
        }
    }
}

/// Which chains the writer gets with their entries: those that get a file,
/// and the first [`REPORT_TRAILS`] with findings (their decision trails go
/// in the report). The others' entries are not read back. The writer
/// counts trails the same way.
fn with_entries(files: ChainFiles) -> impl FnMut(&PopulationRow) -> bool + Send + 'static {
    let mut trails_left = REPORT_TRAILS;
    move |row| {
        let trail = row.findings > 0 && trails_left > 0;
        if trail {
            trails_left -= 1;
        }
        trail || files.wanted(row)
    }
}

/// Entries of chain reports handed to the writer at a time, and how many
/// such slices may wait for it: with every entry at its largest (decoded
/// and as bytes, ~28 KiB), ≤ 6 slices in flight are ≤ ~42 MiB.
const REPORT_ENTRIES_PER_SLICE: usize = 256;
const SLICES_WAITING: usize = 4;

/// Hands the writer every report the auditor has ready, a slice at a
/// time; false if the writer has stopped (its error says why).
fn send_reports(auditor: &mut Auditor, chains: &mpsc::SyncSender<Vec<ChainReport>>) -> bool {
    loop {
        let slice = auditor.take_reports(REPORT_ENTRIES_PER_SLICE);
        if slice.is_empty() {
            return true;
        }
        if chains.send(slice).is_err() {
            return false;
        }
    }
}

/// Entry bundles replayed per batch.
const BUNDLES_PER_BATCH: u64 = 4;

/// Why an audit could not give a verdict on the log's content.
pub enum Failure {
    /// Exit 2: the command line or the files it names.
    Usage(anyhow::Error),
    /// Exit 1: a checkpoint is not to be trusted; the package holds just
    /// that finding.
    Untrusted {
        /// The finding's code.
        code: &'static str,
        /// What is wrong.
        message: String,
        /// Why the package naming it could not be written, if it could not.
        not_written: Option<String>,
    },
}

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Self {
        Failure::Usage(e)
    }
}

/// A draft policy: a `policyPublication` statement (proto3 JSON), or a
/// Cedar policy set alone (true: only its Cedar is new).
fn read_draft(
    path: &Path,
) -> anyhow::Result<(crate::access::entry::proto::PolicyPublication, bool)> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading --policy {}", path.display()))?;
    if text.trim_start().starts_with('{') {
        let st = crate::access::entry::statement_from_json(&text)
            .map_err(|e| anyhow::anyhow!("--policy {}: {e}", path.display()))?;
        return match st.body {
            Some(crate::access::entry::Body::PolicyPublication(p)) => Ok((p, false)),
            _ => anyhow::bail!(
                "--policy {}: not a policyPublication statement",
                path.display()
            ),
        };
    }
    let draft = crate::access::entry::proto::PolicyPublication {
        policy_id: "draft".into(),
        version: 1,
        cedar: text,
        ..Default::default()
    };
    Ok((draft, true))
}

pub(super) fn read_admin(path: &Path) -> anyhow::Result<NoteVerifier> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    NoteVerifier::parse(text.trim())
        .map_err(|e| anyhow::anyhow!("--admin-key {}: {e}", path.display()))
}

/// The earlier checkpoint an audit starts from.
pub(super) struct Since {
    pub(super) note: String,
    pub(super) size: u64,
    pub(super) proof: Vec<Hash>,
    pub(super) consistent: bool,
}

/// The earliest time (POSIX seconds) a witness of `witness_keys` cosigned
/// the checkpoint `note`, if any did.
fn cosigned_at(witness_keys: &[String], note: &[u8]) -> Result<Option<u64>, Failure> {
    use crate::tlog::cosignature::CosignatureVerifier;
    use crate::tlog::note::Note;
    if witness_keys.is_empty() {
        return Ok(None);
    }
    let witnesses = witness_keys
        .iter()
        .map(|k| {
            CosignatureVerifier::parse(k).map_err(|e| anyhow::anyhow!("--witness-key {k:?}: {e}"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let parsed = Note::parse(note).map_err(|e| anyhow::anyhow!("the checkpoint: {e}"))?;
    let earliest = parsed
        .signatures
        .iter()
        .filter_map(|s| witnesses.iter().find_map(|w| w.verify(&parsed.text, s)))
        .min();
    if earliest.is_none() {
        eprintln!("gatelog: no cosignature by a --witness-key on the checkpoint; the log's time is not bounded by one");
    }
    Ok(earliest)
}

fn since(
    args: &AuditConfig,
    key: &NoteVerifier,
    cp: &Checkpoint,
) -> Result<Option<Since>, Failure> {
    let Some(path) = &args.since else {
        return Ok(None);
    };
    let old_note =
        std::fs::read(path).with_context(|| format!("reading --since {}", path.display()))?;
    let old = Checkpoint::open(&old_note, key).map_err(|e| Failure::Untrusted {
        not_written: None,
        code: "since_signature",
        message: format!(
            "the --since checkpoint {} does not verify with --vkey: {e}",
            path.display()
        ),
    })?;
    if old.size > cp.size {
        return Err(Failure::Untrusted {
            not_written: None,
            code: "log_shrank",
            message: format!(
                "the log's checkpoint (size {}) is smaller than --since (size {}): the log lost entries",
                cp.size, old.size
            ),
        });
    }
    let proof = verify::consistency_proof(&args.log, old.size, cp.size)
        .map_err(|u| anyhow::anyhow!(u.0))?;
    let consistent = proof.as_ref().is_ok_and(|p| {
        crate::tlog::merkle::verify_consistency(old.size, cp.size, p, &old.root, &cp.root).is_ok()
    });
    Ok(Some(Since {
        note: String::from_utf8_lossy(&old_note).into_owned(),
        size: old.size,
        proof: proof.unwrap_or_default(),
        consistent,
    }))
}

/// Audits the log `config` names and writes the evidence package; the
/// summary, or why no verdict on the log's content could be given.
/// `progress` counts entries replayed (`ProgressBar::hidden()` for none). On
/// [`Failure::Untrusted`] the package already holds that finding.
pub fn run(config: &AuditConfig, progress: &ProgressBar) -> Result<AuditSummary, Failure> {
    match audit(config, progress) {
        Err(Failure::Untrusted { code, message, .. }) => {
            let not_written = write_untrusted(&config.out, code, &message)
                .err()
                .map(|e| format!("{e:#}"));
            Err(Failure::Untrusted {
                code,
                message,
                not_written,
            })
        }
        result => result,
    }
}

fn audit(args: &AuditConfig, progress: &ProgressBar) -> Result<AuditSummary, Failure> {
    let key = NoteVerifier::parse(&args.vkey)
        .map_err(|e| anyhow::anyhow!("--vkey {:?}: {e}", args.vkey))?;
    let admins = args
        .admin_keys
        .iter()
        .map(|p| read_admin(p))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let source = Source::open(&args.log)?;
    let note = source.read("/checkpoint")?;
    let cp = Checkpoint::open(&note, &key).map_err(|e| Failure::Untrusted {
        not_written: None,
        code: "checkpoint_signature",
        message: format!("the log's checkpoint does not verify with --vkey: {e}"),
    })?;
    let since = since(args, &key, &cp)?;
    let period = args.period.unwrap_or(Period::ALL);
    let mut package = Package::create(&args.out)?;
    let writer = ChainWriter::create(&args.out, &source, &note, &cp, args.chains)?;
    let spill = SpilledEntries::create(&spill_dir(args)).context("--spill-dir")?;
    let engine = Box::new(CedarEngine::default());
    let mut auditor = Auditor::keeping_on(key, admins, engine, period, Arc::new(spill));
    auditor.reports_with_entries(with_entries(args.chains));
    if let Some(path) = &args.draft_policy {
        let (draft, cedar_only) = read_draft(path)?;
        let mut engine = Box::new(CedarEngine::default());
        crate::access::gate::PolicyEngine::compile(engine.as_mut(), &draft)
            .map_err(|e| anyhow::anyhow!("--policy {}: {e}", path.display()))?;
        auditor.simulate_policy(draft, cedar_only, engine);
        package.simulating()?;
    }
    if let Some(g) = args.genesis {
        auditor.pin_genesis(g);
    }
    if let Some(at) = cosigned_at(&args.witness_keys, &note)? {
        auditor.cosigned_at(at);
    }
    // Chain files are written on their own thread, beside the replay.
    let (mut summary, mut last, gathered) = std::thread::scope(|s| -> anyhow::Result<_> {
        let (chains, to_write) = mpsc::sync_channel::<Vec<ChainReport>>(SLICES_WAITING);
        let (failures_tx, failures) = mpsc::channel::<(u64, String)>();
        let writing = std::thread::Builder::new()
            .name("chain-files".into())
            .spawn_scoped(s, move || writer.run(to_write, failures_tx))
            .context("starting the chain file writer")?;
        replay_log(
            &source,
            &mut auditor,
            &cp,
            progress,
            |auditor, mismatches| {
                package.leaf_mismatches.extend(mismatches);
                package.findings(&auditor.take_findings())?;
                package.policy_changes(&auditor.take_policy_changes())?;
                if !send_reports(auditor, &chains) {
                    return Ok(false); // the writer failed: its error is below
                }
                for (at, message) in failures.try_iter() {
                    if !package.explained(at) {
                        auditor.integrity_finding(at, "tile_mismatch", message);
                    }
                }
                Ok(true)
            },
        )?;
        package.findings(&auditor.take_findings())?;
        package.policy_changes(&auditor.take_policy_changes())?;
        send_reports(&mut auditor, &chains);
        let mut summary = auditor.summary();
        drop(chains);
        let gathered = writing
            .join()
            .map_err(|_| anyhow::anyhow!("the chain file writer panicked"))??;
        let mut last = Vec::new();
        for (index, message) in failures.try_iter() {
            if !package.explained(index) {
                let f = Finding {
                    index,
                    chain_id: String::new(),
                    code: "tile_mismatch".into(),
                    message,
                };
                summary.add(&f);
                last.push(f);
            }
        }
        Ok((summary, last, gathered))
    })?;
    let first_mismatch = package.leaf_mismatches.first().copied();
    if let Some(first) = first_mismatch.filter(|_| summary.tree_verified) {
        // The entries are the ones the checkpoint signs: the tiles lied.
        let f = Finding {
            index: first,
            chain_id: String::new(),
            code: "tile_mismatch".into(),
            message: format!("the entries hash to the checkpoint's root but the log's level-0 hash tiles differ from entry {first} on: a hash tile was altered"),
        };
        summary.add(&f);
        last.push(f);
    }
    if let Some(s) = since.as_ref().filter(|s| !s.consistent) {
        let f = Finding {
            index: s.size,
            chain_id: String::new(),
            code: "not_consistent_with_since".into(),
            message: format!("the log's checkpoint does not extend the --since checkpoint of size {}: history was rewritten", s.size),
        };
        summary.add(&f);
        last.push(f);
    }
    package.findings(&last)?;
    package.finish(args.period, &note, &cp, since.as_ref(), &summary, gathered)?;
    Ok(summary)
}

/// Replays the entry bundles from `first_bundle` on (up to
/// [`BUNDLES_PER_BATCH`]), the first entry being `index`; returns how many
/// entries were read, whether a bundle was short, and the entries found
/// to differ from the log's hash tiles.
/// Replays the log's entries up to checkpoint `cp` into `auditor`, a
/// batch of bundles at a time, counting them on `progress`; after each
/// batch `each` takes what the auditor made (and the entries that differ
/// from the log's hash tiles) and says whether to go on. Then ends the
/// replay at `cp`.
pub(super) fn replay_log(
    source: &Source,
    auditor: &mut Auditor,
    cp: &Checkpoint,
    progress: &ProgressBar,
    mut each: impl FnMut(&mut Auditor, Vec<u64>) -> anyhow::Result<bool>,
) -> anyhow::Result<()> {
    let tiles = cp.size.div_ceil(TILE_WIDTH);
    progress.set_length(cp.size);
    let (mut index, mut n) = (0u64, 0u64);
    while n < tiles {
        let (read, short, mismatches) = replay_bundles(source, auditor, cp, n, index)?;
        index += read;
        let go_on = each(auditor, mismatches)?;
        progress.set_position(index);
        if short || !go_on {
            break;
        }
        n += BUNDLES_PER_BATCH;
    }
    progress.finish_and_clear();
    auditor.end(cp, crate::sys::clock::now_ms());
    Ok(())
}

fn replay_bundles(
    source: &Source,
    auditor: &mut Auditor,
    cp: &Checkpoint,
    first_bundle: u64,
    index: u64,
) -> anyhow::Result<(u64, bool, Vec<u64>)> {
    let tiles = cp.size.div_ceil(TILE_WIDTH);
    // Several bundles at a time: signature checks batch better.
    let batch: Vec<(TilePath, Vec<u8>)> = (first_bundle
        ..(first_bundle + BUNDLES_PER_BATCH).min(tiles))
        .map(|m| {
            let bundle = TilePath {
                kind: TileKind::Entries,
                index: m,
                width: (cp.size - m * TILE_WIDTH).min(TILE_WIDTH),
            };
            let data = source
                .tile(bundle)?
                .ok_or_else(|| anyhow::anyhow!("{bundle}: not found in the log"))?;
            Ok((bundle, data))
        })
        .collect::<anyhow::Result<_>>()?;
    let mut leaves: Vec<&[u8]> = Vec::with_capacity(batch.len() * TILE_WIDTH as usize);
    let mut taken = Vec::with_capacity(batch.len());
    let mut short = false;
    for (bundle, data) in &batch {
        let entries = decode_bundle(data).map_err(|e| anyhow::anyhow!("{bundle}: {}", e.0))?;
        let take = entries.len().min(bundle.width as usize);
        leaves.extend(&entries[..take]);
        taken.push((*bundle, take));
        if take < bundle.width as usize {
            // Fewer entries than the checkpoint covers: the tree check
            // reports it.
            short = true;
            break;
        }
    }
    let hashes = auditor.entries(index, &leaves);
    let mut at = 0;
    let mut mismatches = Vec::new();
    for (bundle, take) in taken {
        let first = index + at as u64;
        mismatches.extend(compare_with_hash_tile(
            source,
            auditor,
            bundle,
            first,
            &hashes[at..at + take],
        )?);
        at += take;
    }
    Ok((leaves.len() as u64, short, mismatches))
}

/// Each entry's leaf hash must be the one the log's level-0 hash tile
/// holds (when the log has hash tiles): names where entries were changed,
/// swapped, dropped or duplicated. The first difference per tile is
/// reported, and returned.
fn compare_with_hash_tile(
    source: &Source,
    auditor: &mut Auditor,
    bundle: TilePath,
    first: u64,
    hashes: &[Hash],
) -> anyhow::Result<Option<u64>> {
    let path = TilePath {
        kind: TileKind::Hashes { level: 0 },
        ..bundle
    };
    let Some(tile) = source.tile(path)? else {
        return Ok(None);
    };
    let held = tile.len() / HASH_SIZE;
    let differs = (0..hashes.len().max(held))
        .find(|&i| i >= held || i >= hashes.len() || hash_at(&tile, i) != hashes[i]);
    if let Some(i) = differs {
        let ours = hashes.get(i).map_or("nothing".into(), |h| B64.encode(h));
        let theirs = if i < held {
            B64.encode(hash_at(&tile, i))
        } else {
            "nothing".into()
        };
        auditor.integrity_finding(
            first + i as u64,
            "leaf_mismatch",
            format!(
                "entry {} hashes to {ours}, but the log's hash tile {path} holds {theirs}: the entry or the tile was changed, swapped, dropped or duplicated",
                first + i as u64
            ),
        );
    }
    Ok(differs.map(|i| first + i as u64))
}
