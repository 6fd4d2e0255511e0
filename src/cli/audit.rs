//! `gatelog audit`: streams a log's entries (from a mirror directory or
//! the log's tile API) through [`gatelog::access::replay::Auditor`] and writes the
//! evidence package as it goes: nothing grows with the log but the files.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::mpsc;

use anyhow::Context;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use clap::Args;
use gatelog::access::cedar::CedarEngine;
use gatelog::access::entry::timestamp;
use gatelog::access::replay::{AuditSummary, Auditor, ChainReport, Finding, Period, PopulationRow};
use gatelog::tlog::checkpoint::Checkpoint;
use gatelog::tlog::merkle::{node_hash, verify_inclusion, Hash, Prover};
use gatelog::tlog::note::NoteVerifier;
use gatelog::tlog::tiles::{
    decode_bundle, hash_at, TileKind, TileNodes, TilePath, HASH_SIZE, TILE_WIDTH,
};
use prost::Message;

use super::source::{Source, SourceTiles};

#[derive(Args, Debug)]
pub struct AuditArgs {
    /// The log: a mirror directory (`gatelog mirror`) or the log's URL.
    #[arg(long, value_name = "DIR|URL")]
    log: String,
    /// The log's verifier key.
    #[arg(long, value_name = "VKEY")]
    vkey: String,
    /// A bootstrap admin's public key (FILE.pub), as the log was served
    /// with; repeatable. Identity registrations are checked against them.
    #[arg(long = "admin-key", value_name = "FILE", required = true)]
    admin_keys: Vec<PathBuf>,
    /// An earlier checkpoint (e.g. the last audit's): the log must extend
    /// it; the package records both and the consistency proof.
    #[arg(long, value_name = "FILE")]
    since: Option<PathBuf>,
    /// Report on chains opened, and rule findings on entries issued, in
    /// FROM..TO (dates or RFC 3339 times, TO exclusive, either end open:
    /// `2026-01-01..2026-04-01`, `2026-07-01..`). The whole log is still
    /// replayed and verified; integrity findings are always reported.
    #[arg(long, value_name = "FROM..TO", value_parser = parse_period)]
    period: Option<Period>,
    /// Which chains get `chains/<chain_id>.json` (every entry with an
    /// inclusion proof): all of them, only those with findings, or none.
    /// Every chain is in population.csv either way. A file per chain is
    /// most of a large audit's time on a slow filesystem.
    #[arg(long, value_enum, default_value_t = ChainFiles::All)]
    chains: ChainFiles,
    /// Where the evidence package goes: created if missing; a directory
    /// that already holds a package is refused (evidence is not
    /// overwritten).
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum ChainFiles {
    All,
    Exceptions,
    None,
}

impl ChainFiles {
    /// Whether a chain gets a file.
    fn wanted(self, row: &PopulationRow) -> bool {
        match self {
            ChainFiles::All => true,
            ChainFiles::Exceptions => row.findings > 0,
            ChainFiles::None => false,
        }
    }

    /// The chains with the entries only of those that get a file (freed
    /// here rather than on the writer's thread).
    fn keep(self, mut chains: Vec<ChainReport>) -> Vec<ChainReport> {
        for c in &mut chains {
            if !self.wanted(&c.row) {
                c.entries = Vec::new();
            }
        }
        chains
    }
}

fn parse_period(s: &str) -> Result<Period, String> {
    Period::parse(s)
}

/// Entry bundles replayed per batch.
const BUNDLES_PER_BATCH: u64 = 4;

/// Why an audit could not give a verdict on the log's content.
enum Failure {
    /// Exit 2: the command line or the files it names.
    Usage(anyhow::Error),
    /// Exit 1: a checkpoint is not to be trusted; the package holds just
    /// that finding.
    Untrusted { code: &'static str, message: String },
}

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Self {
        Failure::Usage(e)
    }
}

pub fn audit(args: &AuditArgs) -> ExitCode {
    let summary = match run(args) {
        Ok(summary) => summary,
        Err(Failure::Usage(e)) => {
            eprintln!("gatelog: error: {e:#}");
            return ExitCode::from(2);
        }
        Err(Failure::Untrusted { code, message }) => {
            println!("FAILED: {code}: {message}");
            if let Err(e) = write_untrusted(&args.out, code, &message) {
                eprintln!("gatelog: error: {e:#}");
            }
            return ExitCode::FAILURE;
        }
    };
    let clean = summary.findings == 0 && summary.tree_verified;
    println!(
        "{}: {} entries, tree {}, {} chains reported, {} finding(s); written to {}",
        if clean { "verified" } else { "FAILED" },
        summary.entries,
        if summary.tree_verified {
            "verified"
        } else {
            "NOT verified"
        },
        summary.chains,
        summary.findings,
        args.out.display()
    );
    for f in summary.first_findings.iter().take(20) {
        println!(
            "  entry {} chain {:?}: {}: {}",
            f.index, f.chain_id, f.code, f.message
        );
    }
    if clean {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn read_admin(path: &Path) -> anyhow::Result<NoteVerifier> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    NoteVerifier::parse(text.trim())
        .map_err(|e| anyhow::anyhow!("--admin-key {}: {e}", path.display()))
}

/// The earlier checkpoint an audit starts from.
struct Since {
    note: String,
    size: u64,
    proof: Vec<Hash>,
    consistent: bool,
}

fn since(args: &AuditArgs, key: &NoteVerifier, cp: &Checkpoint) -> Result<Option<Since>, Failure> {
    let Some(path) = &args.since else {
        return Ok(None);
    };
    let old_note =
        std::fs::read(path).with_context(|| format!("reading --since {}", path.display()))?;
    let old = Checkpoint::open(&old_note, key).map_err(|e| Failure::Untrusted {
        code: "since_signature",
        message: format!(
            "the --since checkpoint {} does not verify with --vkey: {e}",
            path.display()
        ),
    })?;
    if old.size > cp.size {
        return Err(Failure::Untrusted {
            code: "log_shrank",
            message: format!(
                "the log's checkpoint (size {}) is smaller than --since (size {}): the log lost entries",
                cp.size, old.size
            ),
        });
    }
    let proof = super::verify::consistency_proof(&args.log, old.size, cp.size)
        .map_err(|u| anyhow::anyhow!(u.0))?;
    let consistent = proof.as_ref().is_ok_and(|p| {
        gatelog::tlog::merkle::verify_consistency(old.size, cp.size, p, &old.root, &cp.root).is_ok()
    });
    Ok(Some(Since {
        note: String::from_utf8_lossy(&old_note).into_owned(),
        size: old.size,
        proof: proof.unwrap_or_default(),
        consistent,
    }))
}

fn run(args: &AuditArgs) -> Result<AuditSummary, Failure> {
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
        code: "checkpoint_signature",
        message: format!("the log's checkpoint does not verify with --vkey: {e}"),
    })?;
    let since = since(args, &key, &cp)?;
    let period = args.period.unwrap_or(Period::ALL);
    let mut package = Package::create(&args.out)?;
    let writer = ChainWriter::create(&args.out, &source, &note, &cp, args.chains)?;
    let mut auditor = Auditor::new(key, admins, Box::new(CedarEngine::default()), period);
    // Chain files are written on their own thread, beside the replay.
    let (mut summary, mut last) = std::thread::scope(|s| -> anyhow::Result<_> {
        let (chains, to_write) = mpsc::sync_channel::<Vec<ChainReport>>(16);
        let (failures_tx, failures) = mpsc::channel::<(u64, String)>();
        let writing = std::thread::Builder::new()
            .name("chain-files".into())
            .spawn_scoped(s, move || writer.run(to_write, failures_tx))
            .context("starting the chain file writer")?;
        let mut index = 0u64;
        let tiles = cp.size.div_ceil(TILE_WIDTH);
        let mut progress = Progress::new(cp.size);
        let mut n = 0;
        while n < tiles {
            let (leaves_read, short, mismatches) =
                replay_bundles(&source, &mut auditor, &cp, n, index)?;
            package.leaf_mismatches.extend(mismatches);
            index += leaves_read;
            let output = auditor.take_output();
            package.findings(&output.findings)?;
            if chains.send(args.chains.keep(output.chains)).is_err() {
                break; // the writer failed: its error is below
            }
            for (at, message) in failures.try_iter() {
                if !package.explained(at) {
                    auditor.integrity_finding(at, "tile_mismatch", message);
                }
            }
            progress.at(index);
            if short {
                break;
            }
            n += BUNDLES_PER_BATCH;
        }
        progress.done();
        let (mut summary, output) = auditor.finish(&cp, gatelog::sys::clock::now_ms());
        package.findings(&output.findings)?;
        let _ = chains.send(args.chains.keep(output.chains));
        drop(chains);
        writing
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
        Ok((summary, last))
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
    package.finish(args, &note, &cp, since.as_ref(), &summary)?;
    Ok(summary)
}

/// Replays the entry bundles from `first_bundle` on (up to
/// [`BUNDLES_PER_BATCH`]), the first entry being `index`; returns how many
/// entries were read, whether a bundle was short, and the entries found
/// to differ from the log's hash tiles.
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

/// The package of an audit stopped by a checkpoint it cannot trust: the
/// manifest and exceptions.csv say why; nothing else was checked.
fn write_untrusted(out: &Path, code: &str, message: &str) -> anyhow::Result<()> {
    refuse_existing_package(out)?;
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let manifest = serde_json::json!({
        "tool": format!("gatelog {}", env!("CARGO_PKG_VERSION")),
        "tree_verified": false,
        "findings": 1,
        "stopped": { "code": code, "message": message },
    });
    write_file(
        out,
        "manifest.json",
        serde_json::to_string_pretty(&manifest)?,
    )?;
    write_file(
        out,
        "exceptions.csv",
        format!("index,chain_id,code,message\n,,{code},{}\n", csv(message)),
    )
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

/// A progress line on stderr for long audits.
struct Progress {
    total: u64,
    shown: u64,
    start: std::time::Instant,
    tty: bool,
}

impl Progress {
    fn new(total: u64) -> Self {
        use std::io::IsTerminal;
        Progress {
            total,
            shown: 0,
            start: std::time::Instant::now(),
            tty: std::io::stderr().is_terminal(),
        }
    }

    fn at(&mut self, done: u64) {
        if !self.tty || done < self.shown + 50_000 {
            return;
        }
        self.shown = done;
        let secs = self.start.elapsed().as_secs_f64();
        eprint!(
            "\raudit: {done}/{} entries ({:.0}%), {:.0} entries/s",
            self.total,
            done as f64 * 100.0 / self.total.max(1) as f64,
            done as f64 / secs.max(1e-3)
        );
    }

    fn done(&self) {
        if self.tty && self.shown > 0 {
            eprintln!();
        }
    }
}

fn csv(field: &str) -> String {
    if field.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", field.replace('"', "\"\""))
    } else {
        field.to_string()
    }
}

fn rfc3339(ms: i64) -> String {
    serde_json::to_value(timestamp(ms))
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

/// The file names a chain may get, in order: its id when that is a plain,
/// short name; otherwise (or when that file exists already, e.g. for an
/// id differing only in case on a case-insensitive filesystem) its safe
/// characters, cut to 64, then `~` and a digest of the id. `~` never
/// occurs in a plain name, so the two kinds never meet.
fn chain_file_names(chain_id: &str) -> [String; 2] {
    use sha2::Digest;
    let plain = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    let safe: String = chain_id
        .chars()
        .take(64)
        .map(|c| if plain(c) { c } else { '_' })
        .collect();
    let digest = sha2::Sha256::digest(chain_id.as_bytes());
    let hex: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    let hashed = format!("{safe}~{hex}.json");
    let is_plain = !chain_id.is_empty()
        && chain_id.len() <= 100
        && !chain_id.starts_with('.')
        && chain_id.chars().all(plain);
    if is_plain {
        [format!("{chain_id}.json"), hashed]
    } else {
        [hashed.clone(), hashed]
    }
}

/// Writes `data` to the first of `names` in `dir` that does not exist yet;
/// returns the name used.
fn write_new(dir: &Path, names: &[String], data: &[u8]) -> anyhow::Result<String> {
    for name in names {
        let path = dir.join(name);
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
        {
            Ok(mut f) => {
                f.write_all(data)
                    .with_context(|| format!("writing {}", path.display()))?;
                return Ok(name.clone());
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e).with_context(|| format!("writing {}", path.display())),
        }
    }
    anyhow::bail!(
        "{}: every name for this chain's file is taken",
        dir.join(&names[0]).display()
    )
}

/// The evidence package's exceptions, manifest and report.
struct Package {
    dir: PathBuf,
    exceptions: BufWriter<File>,
    /// Entries found to differ from the log's hash tiles (the first per
    /// tile): failing proofs in their tiles say nothing new.
    leaf_mismatches: std::collections::BTreeSet<u64>,
}

fn write_file(dir: &Path, name: &str, data: String) -> anyhow::Result<()> {
    let path = dir.join(name);
    std::fs::write(&path, data).with_context(|| format!("writing {}", path.display()))
}

fn create_file(dir: &Path, name: &str) -> anyhow::Result<BufWriter<File>> {
    let path = dir.join(name);
    let f = File::create(&path).with_context(|| format!("writing {}", path.display()))?;
    Ok(BufWriter::with_capacity(1 << 16, f))
}

/// `chains/<chain_id>.json`.
#[derive(serde::Serialize)]
struct ChainFile<'a> {
    chain_id: &'a str,
    status: &'a str,
    findings: usize,
    tree_size: u64,
    root: String,
    checkpoint: &'a str,
    entries: Vec<ChainFileEntry<'a>>,
}

/// One entry of a chain file: its bytes, decoded, and its proof (null if
/// the log's tiles gave none that verifies: see exceptions.csv).
#[derive(serde::Serialize)]
struct ChainFileEntry<'a> {
    index: u64,
    kind: &'static str,
    leaf_hash: String,
    entry: String,
    signer: &'a str,
    statement: &'a gatelog::access::entry::Statement,
    inclusion_proof: Option<Vec<String>>,
}

/// population.csv and `chains/<chain_id>.json`, on their own thread.
struct ChainWriter<'a> {
    dir: PathBuf,
    population: BufWriter<File>,
    prover: Prover<TileNodes<SourceTiles<'a>>>,
    source: &'a Source,
    size: u64,
    root: Hash,
    checkpoint: String,
    /// Chain files since the prover's caches were last emptied.
    since_reset: usize,
    chain_files: ChainFiles,
    /// Block → its root and the proof above it, once verified.
    verified_blocks: HashMap<u64, (Hash, Vec<Hash>)>,
}

/// The prover's caches are emptied after this many chain files, which
/// bounds memory; neighbouring chains share most of their proof hashes.
const PROVER_RESET: usize = 512;

const POPULATION_HEADER: &str = "chain_id,opened_index,opened_at,status,requester,approvers,executor,executor_workload,system,resource,subject,adds,removes,privileged,policy,break_glass,review,findings,chain_file\n";

/// A package is evidence: an audit never writes over another's.
fn refuse_existing_package(dir: &Path) -> anyhow::Result<()> {
    let chains = dir.join("chains");
    let has_chains = std::fs::read_dir(&chains).is_ok_and(|mut d| d.next().is_some());
    if dir.join("manifest.json").exists() || has_chains {
        anyhow::bail!(
            "--out {} already holds an audit package; give a new directory",
            dir.display()
        );
    }
    Ok(())
}

impl Package {
    fn create(dir: &Path) -> anyhow::Result<Self> {
        refuse_existing_package(dir)?;
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let mut exceptions = create_file(dir, "exceptions.csv")?;
        exceptions.write_all(b"index,chain_id,code,message\n")?;
        Ok(Package {
            dir: dir.to_path_buf(),
            exceptions,
            leaf_mismatches: Default::default(),
        })
    }

    /// Whether a failing proof for entry `index` is explained by an entry
    /// of its tile that differs from the log's hash tile.
    fn explained(&self, index: u64) -> bool {
        let tile = index / TILE_WIDTH * TILE_WIDTH;
        self.leaf_mismatches
            .range(tile..tile + TILE_WIDTH)
            .next()
            .is_some()
    }

    fn findings(&mut self, findings: &[Finding]) -> anyhow::Result<()> {
        for f in findings {
            writeln!(
                self.exceptions,
                "{},{},{},{}",
                f.index,
                csv(&f.chain_id),
                csv(&f.code),
                csv(&f.message)
            )?;
        }
        Ok(())
    }

    /// `manifest.json` and `report.html`, once the counts are final.
    fn finish(
        mut self,
        args: &AuditArgs,
        note: &[u8],
        cp: &Checkpoint,
        since: Option<&Since>,
        s: &AuditSummary,
    ) -> anyhow::Result<()> {
        self.exceptions.flush()?;
        let b64 = |h: &[u8]| B64.encode(h);
        let period = args.period.map(|p| {
            let end = |ms: i64| (ms != i64::MIN && ms != i64::MAX).then(|| rfc3339(ms));
            serde_json::json!({ "from": end(p.from_ms), "to": end(p.to_ms) })
        });
        let manifest = serde_json::json!({
            "tool": format!("gatelog {}", env!("CARGO_PKG_VERSION")),
            "origin": cp.origin,
            "tree_size": cp.size,
            "root": b64(&cp.root),
            "checkpoint": String::from_utf8_lossy(note),
            "tree_verified": s.tree_verified,
            "period": period,
            "entries": s.entries,
            "entries_by_kind": s.by_kind,
            "findings": s.findings,
            "findings_by_code": s.findings_by_code,
            "findings_outside_period": s.findings_outside_period,
            "chains": s.chains,
            "chains_outside_period": s.chains_outside_period,
            "since": since.map(|x| serde_json::json!({
                "checkpoint": x.note,
                "tree_size": x.size,
                "consistency_proof": x.proof.iter().map(|h| b64(h)).collect::<Vec<_>>(),
                "consistent": x.consistent,
            })),
        });
        let manifest = serde_json::to_string_pretty(&manifest)?;
        write_file(&self.dir, "manifest.json", manifest)?;
        write_file(&self.dir, "report.html", report_html(cp, s))?;
        Ok(())
    }
}

impl<'a> ChainWriter<'a> {
    fn create(
        dir: &Path,
        source: &'a Source,
        note: &[u8],
        cp: &Checkpoint,
        chain_files: ChainFiles,
    ) -> anyhow::Result<Self> {
        let chains = dir.join("chains");
        std::fs::create_dir_all(&chains)
            .with_context(|| format!("creating {}", chains.display()))?;
        let mut population = create_file(dir, "population.csv")?;
        population.write_all(POPULATION_HEADER.as_bytes())?;
        Ok(ChainWriter {
            dir: dir.to_path_buf(),
            population,
            prover: Prover::new(TileNodes::new(source.hash_tiles(cp.size))),
            source,
            size: cp.size,
            root: cp.root,
            checkpoint: String::from_utf8_lossy(note).into_owned(),
            since_reset: 0,
            chain_files,
            verified_blocks: HashMap::new(),
        })
    }

    /// Checks an inclusion proof from the log's tiles against the
    /// checkpoint. Entries of one full 256-entry block share the proof
    /// above it: once one entry's proof has verified, another's needs only
    /// its 8 hashes within the block to reach the same block root.
    fn check_proof(
        &mut self,
        index: u64,
        leaf: &Hash,
        proof: &[Hash],
    ) -> Result<(), gatelog::tlog::merkle::ProofError> {
        let block = index / TILE_WIDTH;
        let full = (block + 1) * TILE_WIDTH <= self.size && proof.len() >= 8;
        if !full {
            return verify_inclusion(index, self.size, leaf, proof, &self.root);
        }
        let mut node = *leaf;
        for (level, sibling) in proof[..8].iter().enumerate() {
            node = if (index >> level) & 1 == 1 {
                node_hash(sibling, &node)
            } else {
                node_hash(&node, sibling)
            };
        }
        if let Some((root, upper)) = self.verified_blocks.get(&block) {
            if *root == node && upper[..] == proof[8..] {
                return Ok(());
            }
        }
        verify_inclusion(index, self.size, leaf, proof, &self.root)?;
        self.verified_blocks
            .insert(block, (node, proof[8..].to_vec()));
        Ok(())
    }

    /// Writes every chain it is sent; sends back each chain's first entry
    /// whose proof does not verify, and why.
    fn run(
        mut self,
        chains: mpsc::Receiver<Vec<ChainReport>>,
        failures: mpsc::Sender<(u64, String)>,
    ) -> anyhow::Result<()> {
        for batch in chains {
            for chain in &batch {
                if let Some(failure) = self.chain(chain)? {
                    let _ = failures.send(failure);
                }
            }
        }
        self.population.flush()?;
        Ok(())
    }

    /// The chain's population row and `chains/<chain_id>.json`, each entry
    /// with an inclusion proof to the checkpoint, checked before it is
    /// written. Returns the first entry whose proof fails, and why.
    fn chain(&mut self, chain: &ChainReport) -> anyhow::Result<Option<(u64, String)>> {
        let r = &chain.row;
        let (file, failed) = if self.chain_files.wanted(r) {
            let (file, failed) = self.chain_file(chain)?;
            (format!("chains/{file}"), failed)
        } else {
            (String::new(), None)
        };
        let cols = [
            csv(&r.chain_id),
            r.opened_index.to_string(),
            rfc3339(r.opened_ms),
            csv(&r.status),
            csv(&r.requester),
            csv(&r.approvers.join(" ")),
            csv(&r.executor),
            csv(&r.executor_workload),
            csv(&r.system),
            csv(&r.resource),
            csv(&r.subject),
            csv(&r.adds.join(" ")),
            csv(&r.removes.join(" ")),
            r.privileged.to_string(),
            csv(&r.policy),
            r.break_glass.to_string(),
            csv(&r.review),
            r.findings.to_string(),
            csv(&file),
        ];
        writeln!(self.population, "{}", cols.join(","))?;
        Ok(failed)
    }

    /// `chains/<chain_id>.json`; returns its name and the first entry whose
    /// proof fails, and why.
    fn chain_file(
        &mut self,
        chain: &ChainReport,
    ) -> anyhow::Result<(String, Option<(u64, String)>)> {
        let r = &chain.row;
        self.since_reset += 1;
        if self.since_reset == PROVER_RESET {
            self.since_reset = 0;
            self.prover = Prover::new(TileNodes::new(self.source.hash_tiles(self.size)));
            self.verified_blocks.clear();
        }
        let mut failed = None;
        let mut entries = Vec::with_capacity(chain.entries.len());
        for (index, d) in &chain.entries {
            let proof = match self.prover.inclusion(*index, self.size) {
                Ok(p) => self
                    .check_proof(*index, &d.leaf_hash, &p)
                    .map(|()| p)
                    .map_err(|e| format!("entry {index} with its inclusion proof from the log's hash tiles does not verify against the checkpoint ({e}): the entry or a hash tile was altered")),
                Err(e) => Err(format!("no inclusion proof for entry {index}: {e}")),
            };
            let inclusion_proof = match proof {
                Ok(p) => Some(p.iter().map(|h| B64.encode(h)).collect()),
                Err(m) => {
                    failed.get_or_insert((*index, m));
                    None
                }
            };
            entries.push(ChainFileEntry {
                index: *index,
                kind: d.kind().name(),
                leaf_hash: B64.encode(d.leaf_hash),
                entry: B64.encode(d.signed.encode_to_vec()),
                signer: &d.signed.signer_id,
                statement: &d.statement,
                inclusion_proof,
            });
        }
        let doc = ChainFile {
            chain_id: &r.chain_id,
            status: &r.status,
            findings: r.findings,
            tree_size: self.size,
            root: B64.encode(self.root),
            checkpoint: &self.checkpoint,
            entries,
        };
        let file = write_new(
            &self.dir.join("chains"),
            &chain_file_names(&r.chain_id),
            &serde_json::to_vec(&doc)?,
        )?;
        Ok((file, failed))
    }
}

fn html(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A readable summary that opens in a browser without a server.
fn report_html(cp: &Checkpoint, s: &AuditSummary) -> String {
    let verdict = if s.findings == 0 && s.tree_verified {
        "verified: no findings"
    } else {
        "FINDINGS"
    };
    let mut kinds = String::new();
    for (k, n) in &s.by_kind {
        kinds.push_str(&format!("<tr><td>{k}</td><td>{n}</td></tr>"));
    }
    let mut codes = String::new();
    for (k, n) in &s.findings_by_code {
        codes.push_str(&format!("<tr><td>{}</td><td>{n}</td></tr>", html(k)));
    }
    let mut exceptions = String::new();
    for f in &s.first_findings {
        exceptions.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            f.index,
            html(&f.chain_id),
            html(&f.code),
            html(&f.message)
        ));
    }
    // The timeline: entries per time bucket, refusals in red.
    let max = s.timeline.iter().map(|b| b.1).max().unwrap_or(1).max(1) as f64;
    let bar = 600.0 / s.timeline.len().max(1) as f64;
    let mut bars = String::new();
    for (i, (_, n, refused)) in s.timeline.iter().enumerate() {
        let h = *n as f64 / max * 120.0;
        let r = *refused as f64 / max * 120.0;
        let x = i as f64 * bar;
        let w = bar * 0.9;
        bars.push_str(&format!(
            "<rect x='{x:.1}' y='{:.1}' width='{w:.1}' height='{h:.1}' fill='#4a78c2'/><rect x='{x:.1}' y='{:.1}' width='{w:.1}' height='{r:.1}' fill='#c24a4a'/>",
            130.0 - h,
            130.0 - r,
        ));
    }
    let from = rfc3339(s.timeline.first().map_or(0, |b| b.0));
    let to = rfc3339(s.timeline.last().map_or(0, |b| b.0));
    let (chains, executed, break_glass) = (s.chains, s.executed, s.break_glass);
    let origin = html(&cp.origin);
    let size = cp.size;
    let tree = if s.tree_verified {
        "verified"
    } else {
        "NOT verified"
    };
    let root = B64.encode(cp.root);
    let n = s.findings;
    let shown = s.first_findings.len();
    format!(
        "<!doctype html><meta charset='utf-8'><title>gatelog audit: {origin}</title>
<style>body{{font:14px system-ui,sans-serif;margin:2em;max-width:1100px}}table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:3px 8px;text-align:left}}h1 small{{color:#666}}</style>
<h1>gatelog audit <small>{origin}</small></h1>
<p><b>{verdict}</b>. Tree of {size} entries {tree} against the signed checkpoint (root <code>{root}</code>).</p>
<p>{chains} chains ({executed} executed, {break_glass} break-glass); {n} findings. Files: manifest.json, population.csv, exceptions.csv, chains/.</p>
<h2>Timeline</h2><p>Entries by issue time, {from} to {to}; refusals in red.</p>
<svg width='620' height='140' role='img'>{bars}</svg>
<h2>Entries by kind</h2><table><tr><th>kind</th><th>entries</th></tr>{kinds}</table>
<h2>Findings by code</h2><table><tr><th>code</th><th>findings</th></tr>{codes}</table>
<h2>Exceptions</h2><p>The first {shown} of {n}; exceptions.csv has them all.</p><table><tr><th>entry</th><th>chain</th><th>code</th><th>what</th></tr>{exceptions}</table>
"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_file_names_never_collide_and_stay_short() {
        assert_eq!(chain_file_names("CHG-1")[0], "CHG-1.json");
        let [first, second] = chain_file_names("CHG-1");
        assert!(second.starts_with("CHG-1~") && first != second);
        // Unsafe characters: the digest form, which no plain id can take.
        let [spaced, _] = chain_file_names("a b");
        assert!(spaced.starts_with("a_b~"), "{spaced}");
        let [lookalike, _] = chain_file_names(spaced.trim_end_matches(".json"));
        assert_ne!(lookalike, spaced);
        for id in ["", ".hidden", "../up", "x/y"] {
            let [name, _] = chain_file_names(id);
            assert!(name.contains('~') && !name.contains('/'), "{id:?}: {name}");
        }
        let long = "x".repeat(256);
        let [name, _] = chain_file_names(&long);
        assert!(name.len() <= 64 + 1 + 16 + 5, "{}", name.len());
    }

    #[test]
    fn a_taken_name_falls_back_to_the_next() {
        let dir = tempfile::tempdir().unwrap();
        let names = chain_file_names("CHG-1");
        assert_eq!(write_new(dir.path(), &names, b"one").unwrap(), names[0]);
        assert_eq!(write_new(dir.path(), &names, b"two").unwrap(), names[1]);
        assert!(write_new(dir.path(), &names, b"three").is_err());
        assert_eq!(std::fs::read(dir.path().join(&names[0])).unwrap(), b"one");
    }
}
