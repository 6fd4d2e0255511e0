//! `gatelog access`: who has what, from a mirror or the log's URL, offline
//! from the server: the log is replayed and verified as the audit replays
//! it (signatures, rules, the root against the signed checkpoint), keeping
//! the holdings the server keeps, and the question is answered from them.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use indicatif::ProgressBar;

use super::source::Source;
use super::{read_admin, replay_log};
use crate::access::cedar::CedarEngine;
use crate::access::replay::{Auditor, Period};
use crate::observers::spill::SpilledEntries;
use crate::tlog::checkpoint::Checkpoint;
use crate::tlog::merkle::{leaf_hash, verify_inclusion, Hash, Prover};
use crate::tlog::note::NoteVerifier;
use crate::tlog::tiles::{decode_bundle, TileKind, TileNodes, TilePath, TILE_WIDTH};

/// Where to read the log and how to trust it.
pub struct AccessReplay {
    /// A mirror directory or the log's URL.
    pub log: String,
    pub vkey: String,
    /// Bootstrap admins (logs made before rules version 2).
    pub admin_keys: Vec<PathBuf>,
    /// Where open chains' entries wait past 64 MiB (an unnamed file).
    pub spill_dir: PathBuf,
}

/// An entry read again: its index, bytes and inclusion proof.
pub type Proven = (u64, Vec<u8>, Vec<Hash>);

/// The log replayed to its checkpoint.
pub struct Replayed {
    pub checkpoint: Checkpoint,
    /// The signed checkpoint note, as the log served it.
    pub note: String,
    pub auditor: Auditor,
    /// Whether the entries hash to the checkpoint's root.
    pub tree_verified: bool,
    /// Findings the replay made: the answer comes from a log that breaks
    /// its rules or its tree when this is not 0 (`gatelog audit` lists them).
    pub findings: u64,
    source: Source,
}

impl Replayed {
    /// The entries at `indices` (ascending: one read per bundle), read
    /// again from the log, each with its inclusion proof (from the log's
    /// hash tiles) verified against the checkpoint's root: a log that
    /// serves other bytes the second time is caught, not believed.
    pub fn entries(&self, indices: &[u64]) -> anyhow::Result<Vec<Proven>> {
        let size = self.checkpoint.size;
        let mut prover = Prover::new(TileNodes::new(self.source.hash_tiles(size)));
        let mut out = Vec::with_capacity(indices.len());
        let mut bundle: Option<(u64, Vec<Vec<u8>>)> = None;
        for &index in indices {
            let n = index / TILE_WIDTH;
            if bundle.as_ref().is_none_or(|(m, _)| *m != n) {
                let path = TilePath {
                    kind: TileKind::Entries,
                    index: n,
                    width: (self.checkpoint.size - n * TILE_WIDTH).min(TILE_WIDTH),
                };
                let data = self
                    .source
                    .tile(path)?
                    .ok_or_else(|| anyhow::anyhow!("{path}: not found in the log"))?;
                let entries =
                    decode_bundle(&data).map_err(|e| anyhow::anyhow!("{path}: {}", e.0))?;
                bundle = Some((n, entries.into_iter().map(<[u8]>::to_vec).collect()));
            }
            let (_, entries) = bundle.as_ref().expect("read above");
            let leaf = entries
                .get((index % TILE_WIDTH) as usize)
                .ok_or_else(|| anyhow::anyhow!("entry {index} is not in its bundle"))?;
            let proof = prover.inclusion(index, size).map_err(|e| {
                anyhow::anyhow!("entry {index}: no inclusion proof from the log's tiles: {e}")
            })?;
            verify_inclusion(index, size, &leaf_hash(leaf), &proof, &self.checkpoint.root)
                .map_err(|e| {
                    anyhow::anyhow!(
                        "entry {index} as the log served it again is not in its checkpoint: {e:?}"
                    )
                })?;
            out.push((index, leaf.clone(), proof));
        }
        Ok(out)
    }
}

/// Replays the log `r` names, keeping who has what.
pub fn replay(r: &AccessReplay, progress: &ProgressBar) -> anyhow::Result<Replayed> {
    let key =
        NoteVerifier::parse(&r.vkey).map_err(|e| anyhow::anyhow!("--vkey {:?}: {e}", r.vkey))?;
    let admins = r
        .admin_keys
        .iter()
        .map(|p| read_admin(p))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let source = Source::open(&r.log)?;
    let note = source.read("/checkpoint")?;
    let cp = Checkpoint::open(&note, &key)
        .map_err(|e| anyhow::anyhow!("the log's checkpoint does not verify with --vkey: {e}"))?;
    let spill = SpilledEntries::create(&r.spill_dir).context("--spill-dir")?;
    let engine = Box::new(CedarEngine::default());
    let mut auditor =
        Auditor::keeping_on(key, admins, engine, Period::ALL, Arc::new(spill)).with_holdings();
    let mut findings = 0u64;
    replay_log(
        &source,
        &mut auditor,
        &cp,
        progress,
        |auditor, mismatches| {
            findings += auditor.take_findings().len() as u64 + mismatches.len() as u64;
            auditor.let_go_of_reports();
            Ok(true)
        },
    )?;
    findings += auditor.take_findings().len() as u64;
    let tree_verified = auditor.tree_verified();
    Ok(Replayed {
        checkpoint: cp,
        note: String::from_utf8_lossy(&note).into_owned(),
        auditor,
        tree_verified,
        findings,
        source,
    })
}
