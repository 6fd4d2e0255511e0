//! The evidence package an audit writes: `exceptions.csv` (every
//! finding), `population.csv` (one row per chain), `chains/<id>.json`
//! (each chain's entries with inclusion proofs, checked before they are
//! written), `manifest.json` and `report.html`.

use std::collections::HashMap;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::mpsc;

use crate::access::entry::rfc3339;
use crate::access::replay::{AuditSummary, ChainReport, Finding, Period, PolicyChange};
use crate::tlog::checkpoint::Checkpoint;
use crate::tlog::merkle::{node_hash, verify_inclusion, Hash, Prover};
use crate::tlog::tiles::{TileNodes, TILE_WIDTH};
use anyhow::Context;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use prost::Message;

use super::report::{self, Gathered, Row, REPORT_ROWS, REPORT_TRAILS, TRAIL_FINDINGS};
use super::source::{Source, SourceTiles};
use super::{ChainFiles, Since};

/// exceptions.csv's columns.
const EXCEPTIONS_HEADER: [&str; 4] = ["index", "chain_id", "code", "message"];

/// population.csv's columns.
const POPULATION_HEADER: [&str; 22] = [
    "chain_id",
    "opened_index",
    "opened_at",
    "status",
    "requester",
    "approvers",
    "executor",
    "executor_workload",
    "system",
    "resource",
    "subject",
    "requested_adds",
    "requested_removes",
    "executed_adds",
    "executed_removes",
    "privileged",
    "policy",
    "tickets",
    "break_glass",
    "review",
    "findings",
    "chain_file",
];

/// A value as a CSV cell a spreadsheet shows as text: a cell starting
/// with `=`, `+`, `-`, `@`, a tab or a carriage return would be read as a
/// formula, and every value here may come from a hostile log, so those
/// get a leading `'` (the OWASP advice for CSV injection).
fn cell(value: &str) -> std::borrow::Cow<'_, str> {
    if value.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{value}").into()
    } else {
        value.into()
    }
}

/// A cell's value as written before [`cell`] (for reading the package
/// back).
fn uncell(cell: &str) -> &str {
    match cell.strip_prefix('\'') {
        Some(rest) if rest.starts_with(['=', '+', '-', '@', '\t', '\r']) => rest,
        _ => cell,
    }
}

/// Writes one row, each cell through [`cell`].
fn write_row<W: std::io::Write>(w: &mut csv::Writer<W>, row: &[&str]) -> csv::Result<()> {
    w.write_record(row.iter().map(|v| cell(v).into_owned()))
}

/// A CSV file of the package, its header written.
fn create_csv(dir: &Path, name: &str, header: &[&str]) -> anyhow::Result<csv::Writer<File>> {
    let path = dir.join(name);
    let mut w = csv::WriterBuilder::new()
        .buffer_capacity(1 << 16)
        .from_path(&path)
        .with_context(|| format!("writing {}", path.display()))?;
    w.write_record(header)?;
    Ok(w)
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
    let hex = crate::tlog::merkle::hex(&digest[..8]);
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

/// The package of an audit stopped by a checkpoint it cannot trust: the
/// manifest and exceptions.csv say why; nothing else was checked.
pub(super) fn write_untrusted(out: &Path, code: &str, message: &str) -> anyhow::Result<()> {
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
    let mut exceptions = create_csv(out, "exceptions.csv", &EXCEPTIONS_HEADER)?;
    write_row(&mut exceptions, &["", "", code, message])?;
    exceptions.flush()?;
    Ok(())
}

/// The evidence package's exceptions, manifest and report.
pub(super) struct Package {
    dir: PathBuf,
    exceptions: csv::Writer<File>,
    /// `policy_simulation.csv`, when the audit judges intents under a
    /// draft policy.
    simulation: Option<csv::Writer<File>>,
    /// Entries found to differ from the log's hash tiles (the first per
    /// tile): failing proofs in their tiles say nothing new.
    pub(super) leaf_mismatches: std::collections::BTreeSet<u64>,
}

fn write_file(dir: &Path, name: &str, data: String) -> anyhow::Result<()> {
    let path = dir.join(name);
    std::fs::write(&path, data).with_context(|| format!("writing {}", path.display()))
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
    statement: &'a crate::access::entry::Statement,
    inclusion_proof: Option<Vec<String>>,
}

/// population.csv and `chains/<chain_id>.json`, on their own thread.
pub(super) struct ChainWriter<'a> {
    dir: PathBuf,
    population: csv::Writer<File>,
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
    /// Population rows and decision trails for the report.
    gathered: Gathered,
}

/// The prover's caches are emptied after this many chain files, which
/// bounds memory; neighbouring chains share most of their proof hashes.
const PROVER_RESET: usize = 512;

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
    pub(super) fn create(dir: &Path) -> anyhow::Result<Self> {
        refuse_existing_package(dir)?;
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let exceptions = create_csv(dir, "exceptions.csv", &EXCEPTIONS_HEADER)?;
        Ok(Package {
            dir: dir.to_path_buf(),
            exceptions,
            simulation: None,
            leaf_mismatches: Default::default(),
        })
    }

    /// Starts `policy_simulation.csv`: the intents a draft policy judges
    /// otherwise than the log did.
    pub(super) fn simulating(&mut self) -> anyhow::Result<()> {
        let header = ["index", "chain_id", "actual", "under_draft", "why", "kind"];
        self.simulation = Some(create_csv(&self.dir, "policy_simulation.csv", &header)?);
        Ok(())
    }

    pub(super) fn policy_changes(&mut self, changes: &[PolicyChange]) -> anyhow::Result<()> {
        let Some(csv) = &mut self.simulation else {
            return Ok(());
        };
        for c in changes {
            let index = c.index.to_string();
            write_row(
                csv,
                &[&index, &c.chain_id, c.actual, c.under_draft, &c.why, c.kind],
            )?;
        }
        Ok(())
    }

    /// Whether a failing proof for entry `index` is explained by an entry
    /// of its tile that differs from the log's hash tile.
    pub(super) fn explained(&self, index: u64) -> bool {
        let tile = index / TILE_WIDTH * TILE_WIDTH;
        self.leaf_mismatches
            .range(tile..tile + TILE_WIDTH)
            .next()
            .is_some()
    }

    pub(super) fn findings(&mut self, findings: &[Finding]) -> anyhow::Result<()> {
        for f in findings {
            let index = f.index.to_string();
            write_row(
                &mut self.exceptions,
                &[&index, &f.chain_id, &f.code, &f.message],
            )?;
        }
        Ok(())
    }

    /// The findings of the chains whose trails the report shows (the first
    /// [`TRAIL_FINDINGS`] of each, and how many each has), read back from
    /// exceptions.csv: which chains get a trail is known only once they
    /// close, and their findings may have come long before.
    fn trail_findings(
        &self,
        gathered: &Gathered,
    ) -> anyhow::Result<HashMap<String, (Vec<Finding>, usize)>> {
        let mut out: HashMap<String, (Vec<Finding>, usize)> = gathered
            .trails
            .iter()
            .map(|t| (t.chain_id.clone(), Default::default()))
            .collect();
        let path = self.dir.join("exceptions.csv");
        let mut reader =
            csv::Reader::from_path(&path).with_context(|| format!("reading {}", path.display()))?;
        for record in reader.records() {
            let r = record.with_context(|| format!("reading {}", path.display()))?;
            let Some((kept, total)) = out.get_mut(uncell(&r[1])) else {
                continue;
            };
            *total += 1;
            if kept.len() < TRAIL_FINDINGS {
                kept.push(Finding {
                    index: r[0].parse().unwrap_or_default(),
                    chain_id: uncell(&r[1]).to_string(),
                    code: uncell(&r[2]).to_string(),
                    message: uncell(&r[3]).to_string(),
                });
            }
        }
        Ok(out)
    }

    /// `campaigns.csv` (rules version 5): a row per grant of each access
    /// review campaign's snapshot: who holds it, the decision, the
    /// reviewer and entry, and for a revocation whether its removal was
    /// carried out; and a summary per campaign for the manifest.
    fn campaigns(&self, s: &AuditSummary) -> anyhow::Result<serde_json::Value> {
        if s.campaigns.is_empty() {
            return Ok(serde_json::Value::Null);
        }
        let header = [
            "campaign_id",
            "campaign_entry",
            "deadline",
            "grant_outcome",
            "chain_id",
            "subject",
            "entitlements",
            "decision",
            "reviewer",
            "decision_entry",
            "voided_decisions",
            "removal_carried_out",
        ];
        let mut csv = create_csv(&self.dir, "campaigns.csv", &header)?;
        let mut summary = vec![];
        for (c, carried_out) in &s.campaigns {
            let (mut kept, mut revoked, mut unreviewed, mut done) = (0, 0, 0, 0);
            for (outcome, item) in &c.items {
                let (decision, reviewer, at) = match &item.decision {
                    _ if item.revoked_unreviewed => ("unreviewed, revoked", "", String::new()),
                    Some((true, by, at)) => ("keep", by.as_str(), at.to_string()),
                    Some((false, by, at)) => ("revoke", by.as_str(), at.to_string()),
                    None => ("unreviewed", "", String::new()),
                };
                let revoking = decision.contains("revoke");
                // Covered: the grant ended, but another grant still in
                // force holds the same access.
                let removal = match (revoking, carried_out.contains(outcome), item.ended) {
                    (false, _, _) => "",
                    (true, true, _) => "yes",
                    (true, false, Some("covered")) => "covered by another grant",
                    (true, false, _) => "no",
                };
                match item.decision {
                    Some((true, _, _)) => kept += 1,
                    Some((false, _, _)) => revoked += 1,
                    None => unreviewed += 1,
                }
                done += u64::from(removal == "yes");
                write_row(
                    &mut csv,
                    &[
                        &c.campaign_id,
                        &c.index.to_string(),
                        &rfc3339(c.deadline_ms),
                        &outcome.to_string(),
                        &item.chain_id,
                        &item.subject,
                        &item.entitlements.join(" "),
                        decision,
                        reviewer,
                        &at,
                        &item
                            .voided
                            .iter()
                            .map(u64::to_string)
                            .collect::<Vec<_>>()
                            .join(" "),
                        removal,
                    ],
                )?;
            }
            summary.push(serde_json::json!({
                "campaign_id": c.campaign_id,
                "entry": c.index,
                "scope": {
                    "system": c.system,
                    "resource_prefix": c.resource_prefix,
                    "subject_prefix": c.subject_prefix,
                },
                "reviewers": c.reviewers,
                "deadline": rfc3339(c.deadline_ms),
                "revoke_unreviewed": c.revoke_unreviewed,
                "grants": c.items.len(),
                "kept": kept,
                "revoked": revoked,
                "unreviewed": unreviewed,
                "removals_carried_out": done,
            }));
        }
        csv.flush()?;
        Ok(serde_json::json!({ "file": "campaigns.csv", "campaigns": summary }))
    }

    /// `manifest.json` and `report.html`, once the counts are final.
    pub(super) fn finish(
        mut self,
        period: Option<Period>,
        note: &[u8],
        cp: &Checkpoint,
        since: Option<&Since>,
        s: &AuditSummary,
        gathered: Gathered,
    ) -> anyhow::Result<()> {
        self.exceptions.flush()?;
        if let Some(csv) = &mut self.simulation {
            csv.flush()?;
        }
        let simulation = self.simulation.as_ref().map(|_| {
            serde_json::json!({
                "file": "policy_simulation.csv",
                "intents_judged": s.draft_judged,
                "judged_otherwise": s.draft_changes,
            })
        });
        let campaigns = self.campaigns(s)?;
        let b64 = |h: &[u8]| B64.encode(h);
        let period_json = period.map(|p| {
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
            "period": period_json,
            "entries": s.entries,
            "entries_by_kind": s.by_kind,
            "findings": s.findings,
            "findings_by_code": s.findings_by_code,
            "findings_outside_period": s.findings_outside_period,
            "chains": s.chains,
            "chains_outside_period": s.chains_outside_period,
            "policy_simulation": simulation,
            "access_reviews": campaigns,
            "rules": s.params.as_ref().map(|p| serde_json::json!({
                "rules_version": p.rules_version,
                "recorded_at_entry": p.index,
                "max_clock_skew_ms": p.max_clock_skew_ms,
                "admins": s.admins,
                "admin_threshold": p.admin_threshold,
                "note": (p.admin_threshold == 1).then_some(
                    "admin threshold 1: one admin key alone can register the humans who approve and publish the policy"),
            })),
            "since": since.map(|x| serde_json::json!({
                "checkpoint": x.note,
                "tree_size": x.size,
                "consistency_proof": x.proof.iter().map(|h| b64(h)).collect::<Vec<_>>(),
                "consistent": x.consistent,
            })),
        });
        let manifest = serde_json::to_string_pretty(&manifest)?;
        write_file(&self.dir, "manifest.json", manifest)?;
        let chain_findings = self.trail_findings(&gathered)?;
        let page = report::render(report::Inputs {
            cp,
            note,
            since: since.map(|x| (x.size, x.consistent)),
            period,
            summary: s,
            gathered,
            chain_findings,
        })
        .context("rendering report.html")?;
        write_file(&self.dir, "report.html", page)?;
        Ok(())
    }
}

impl<'a> ChainWriter<'a> {
    pub(super) fn create(
        dir: &Path,
        source: &'a Source,
        note: &[u8],
        cp: &Checkpoint,
        chain_files: ChainFiles,
    ) -> anyhow::Result<Self> {
        let chains = dir.join("chains");
        std::fs::create_dir_all(&chains)
            .with_context(|| format!("creating {}", chains.display()))?;
        let population = create_csv(dir, "population.csv", &POPULATION_HEADER)?;
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
            gathered: Gathered::default(),
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
    ) -> Result<(), crate::tlog::merkle::ProofError> {
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
    /// whose proof does not verify, and why. Returns what the report shows
    /// of the chains.
    pub(super) fn run(
        mut self,
        chains: mpsc::Receiver<Vec<ChainReport>>,
        failures: mpsc::Sender<(u64, String)>,
    ) -> anyhow::Result<Gathered> {
        for batch in chains {
            for chain in &batch {
                if let Some(failure) = self.chain(chain)? {
                    let _ = failures.send(failure);
                }
            }
        }
        self.population.flush()?;
        Ok(self.gathered)
    }

    /// The chain's population row and `chains/<chain_id>.json`, each entry
    /// with an inclusion proof to the checkpoint, checked before it is
    /// written. Returns the first entry whose proof fails, and why.
    fn chain(&mut self, chain: &ChainReport) -> anyhow::Result<Option<(u64, String)>> {
        let r = &chain.row;
        let wants_file = self.chain_files.wanted(r);
        // Counted as KeepEntries counts: these chains came with entries.
        let wants_trail = r.findings > 0 && self.gathered.trails.len() < REPORT_TRAILS;
        let proofs = if wants_file || wants_trail {
            self.proofs(chain)
        } else {
            Vec::new()
        };
        let failed = proofs.iter().find_map(|p| p.as_ref().err().cloned());
        let file = if wants_file {
            format!("chains/{}", self.chain_file(chain, &proofs)?)
        } else {
            String::new()
        };
        if wants_trail {
            let statuses: Vec<Option<String>> = proofs
                .iter()
                .map(|p| p.as_ref().err().map(|(_, why)| why.clone()))
                .collect();
            self.gathered
                .trails
                .push(report::trail(chain, &file, &statuses));
        }
        if self.gathered.rows.len() < REPORT_ROWS {
            self.gathered.rows.push(Row {
                row: r.clone(),
                file: file.clone(),
            });
        }
        let cols: [&str; 22] = [
            &r.chain_id,
            &r.opened_index.to_string(),
            &rfc3339(r.opened_ms),
            &r.status,
            &r.requester,
            &r.approvers.join(" "),
            &r.executor,
            &r.executor_workload,
            &r.system,
            &r.resource,
            &r.subject,
            &r.adds.join(" "),
            &r.removes.join(" "),
            &r.executed_adds.join(" "),
            &r.executed_removes.join(" "),
            &r.privileged.to_string(),
            &r.policy,
            &r.tickets.join(" "),
            &r.break_glass.to_string(),
            &r.review,
            &r.findings.to_string(),
            &file,
        ];
        write_row(&mut self.population, &cols)?;
        Ok(failed)
    }

    /// Each entry's inclusion proof from the log's tiles, checked against
    /// the checkpoint; or the entry's index and why there is none.
    fn proofs(&mut self, chain: &ChainReport) -> Vec<Result<Vec<Hash>, (u64, String)>> {
        self.since_reset += 1;
        if self.since_reset == PROVER_RESET {
            self.since_reset = 0;
            self.prover = Prover::new(TileNodes::new(self.source.hash_tiles(self.size)));
            self.verified_blocks.clear();
        }
        chain
            .entries
            .iter()
            .map(|(index, d)| match self.prover.inclusion(*index, self.size) {
                Ok(p) => self
                    .check_proof(*index, &d.leaf_hash, &p)
                    .map(|()| p)
                    .map_err(|e| (*index, format!("entry {index} with its inclusion proof from the log's hash tiles does not verify against the checkpoint ({e}): the entry or a hash tile was altered"))),
                Err(e) => Err((*index, format!("no inclusion proof for entry {index}: {e}"))),
            })
            .collect()
    }

    /// Writes `chains/<chain_id>.json` with the proofs that verified;
    /// returns its name.
    fn chain_file(
        &mut self,
        chain: &ChainReport,
        proofs: &[Result<Vec<Hash>, (u64, String)>],
    ) -> anyhow::Result<String> {
        let r = &chain.row;
        let entries = chain
            .entries
            .iter()
            .zip(proofs)
            .map(|((index, d), proof)| ChainFileEntry {
                index: *index,
                kind: d.kind().name(),
                leaf_hash: B64.encode(d.leaf_hash),
                entry: B64.encode(d.signed.encode_to_vec()),
                signer: &d.signed.signer_id,
                statement: &d.statement,
                inclusion_proof: proof
                    .as_ref()
                    .ok()
                    .map(|p| p.iter().map(|h| B64.encode(h)).collect()),
            })
            .collect();
        let doc = ChainFile {
            chain_id: &r.chain_id,
            status: &r.status,
            findings: r.findings,
            tree_size: self.size,
            root: B64.encode(self.root),
            checkpoint: &self.checkpoint,
            entries,
        };
        write_new(
            &self.dir.join("chains"),
            &chain_file_names(&r.chain_id),
            &serde_json::to_vec(&doc)?,
        )
    }
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
    fn cells_a_spreadsheet_would_run_are_neutralised() {
        for formula in ["=HYPERLINK(\"x\")", "+1", "-2+3", "@SUM(A1)", "\tx", "\rx"] {
            let c = cell(formula);
            assert!(c.starts_with('\''), "{formula:?}");
            assert_eq!(uncell(&c), formula);
        }
        assert_eq!(cell("CHG-1"), "CHG-1");
        assert_eq!(uncell("CHG-1"), "CHG-1");
        let mut w = csv::Writer::from_writer(Vec::new());
        write_row(&mut w, &["=1+1", "a,b"]).unwrap();
        assert_eq!(
            String::from_utf8(w.into_inner().unwrap()).unwrap(),
            "'=1+1,\"a,b\"\n"
        );
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
