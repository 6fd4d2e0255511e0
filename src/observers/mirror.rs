//! `gatelog mirror`: copies a log's checkpoint, hash tiles and entry
//! bundles into a directory laid out exactly like the tlog-tiles API (so
//! any static web server can serve it), checking everything on the way:
//!
//! - the checkpoint is signed by the log's key, and extends the one the
//!   mirror already holds (consistency proof from the log);
//! - every hash tile is recomputed from the entries (level 0 from the
//!   entries' leaf hashes, level k+1 from full tiles of level k) and must
//!   equal the tile the log serves, byte for byte;
//! - the tree of all entries has the checkpoint's root.
//!
//! Resumable: full tiles and bundles already in the directory are read
//! from disk and checked again instead of fetched. The checkpoint is
//! written last, so a mirror's checkpoint always covers its files.

use std::path::{Path, PathBuf};
use std::time::Duration;

use hyper::Uri;
use thiserror::Error;

use crate::sys::client::http_get;
use crate::tlog::checkpoint::Checkpoint;
use crate::tlog::merkle::{
    complete_root, hash_from_base64, leaf_hash, verify_consistency, CompactRange, Hash,
};
use crate::tlog::note::NoteVerifier;
use crate::tlog::tiles::{decode_bundle, TileKind, TilePath, TILE_WIDTH};

/// Why a mirror run stopped. Each names what and where.
#[derive(Debug, Error)]
pub enum MirrorError {
    #[error("fetching {what}: {reason}")]
    Fetch { what: String, reason: String },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the log's checkpoint does not verify with the key: {0}")]
    BadCheckpoint(String),
    #[error("the mirror's checkpoint ({path}) does not verify with the key: {reason}")]
    BadLocalCheckpoint { path: PathBuf, reason: String },
    #[error(
        "the log's checkpoint (size {new}) does not extend the mirror's (size {old}): {reason}"
    )]
    Inconsistent { old: u64, new: u64, reason: String },
    #[error("{what}: {reason}")]
    Tampered { what: String, reason: String },
}

/// What a run did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct MirrorReport {
    pub size: u64,
    pub previous_size: u64,
    pub fetched: u64,
    pub reused: u64,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> MirrorError + '_ {
    move |source| MirrorError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Writes `data` to `path` via a temporary file and a rename.
fn write_atomic(path: &Path, data: &[u8]) -> Result<(), MirrorError> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(io(parent))?;
    }
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, data).map_err(io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io(path))
}

struct Fetcher<'a> {
    log: &'a Uri,
    dir: &'a Path,
    timeout: Duration,
    report: MirrorReport,
}

impl Fetcher<'_> {
    async fn get(&self, path: &str) -> Result<Vec<u8>, MirrorError> {
        let fail = |reason: String| MirrorError::Fetch {
            what: path.to_string(),
            reason,
        };
        let (status, body) = http_get(self.log, path, self.timeout).await.map_err(fail)?;
        if status != 200 {
            return Err(fail(format!("HTTP {status}")));
        }
        Ok(body.to_vec())
    }

    /// A tile's bytes: from the mirror if it holds this (full) tile,
    /// else from the log.
    async fn tile(&mut self, tile: &TilePath) -> Result<(Vec<u8>, bool), MirrorError> {
        let local = self.dir.join(tile.to_string());
        if !tile.is_partial() {
            match std::fs::read(&local) {
                Ok(data) => {
                    self.report.reused += 1;
                    return Ok((data, true));
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io(&local)(e)),
            }
        }
        self.report.fetched += 1;
        Ok((self.get(&format!("/{tile}")).await?, false))
    }

    /// Checks the log's (or the mirror's) copy of a hash tile against the
    /// hashes computed from the entries, then stores it.
    async fn hash_tile(
        &mut self,
        level: u8,
        index: u64,
        hashes: &[Hash],
    ) -> Result<(), MirrorError> {
        let tile = TilePath {
            kind: TileKind::Hashes { level },
            index,
            width: hashes.len() as u64,
        };
        let expected: Vec<u8> = hashes.concat();
        let (served, local) = self.tile(&tile).await?;
        if served != expected {
            return Err(MirrorError::Tampered {
                what: format!(
                    "{} {tile}",
                    if local { "the mirror's" } else { "the log's" }
                ),
                reason: "does not match the hashes of the entries under it: the tile or those entries were altered, truncated, dropped or reordered"
                    .into(),
            });
        }
        if !local {
            write_atomic(&self.dir.join(tile.to_string()), &served)?;
        }
        Ok(())
    }
}

/// Mirrors the log at `log` (verifier key `key`) into `dir`; `progress`
/// is told (entries done, entries in all) as it goes.
pub async fn mirror(
    log: &Uri,
    key: &NoteVerifier,
    dir: &Path,
    timeout: Duration,
    mut progress: impl FnMut(u64, u64),
) -> Result<MirrorReport, MirrorError> {
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let mut f = Fetcher {
        log,
        dir,
        timeout,
        report: MirrorReport::default(),
    };
    let note = f.get("/checkpoint").await?;
    let cp = Checkpoint::open(&note, key).map_err(|e| MirrorError::BadCheckpoint(e.to_string()))?;
    let local_path = dir.join("checkpoint");
    match std::fs::read(&local_path) {
        Ok(old_note) => {
            let old =
                Checkpoint::open(&old_note, key).map_err(|e| MirrorError::BadLocalCheckpoint {
                    path: local_path.clone(),
                    reason: e.to_string(),
                })?;
            f.report.previous_size = old.size;
            let proof = if old.size == 0 || old.size >= cp.size {
                vec![]
            } else {
                let body = f
                    .get(&format!(
                        "/v1/proof/consistency?old_size={}&tree_size={}",
                        old.size, cp.size
                    ))
                    .await?;
                let json: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
                json["hashes"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(|h| h.as_str().and_then(hash_from_base64))
                            .collect()
                    })
                    .unwrap_or_default()
            };
            verify_consistency(old.size, cp.size, &proof, &old.root, &cp.root).map_err(|e| {
                MirrorError::Inconsistent {
                    old: old.size,
                    new: cp.size,
                    reason: e.to_string(),
                }
            })?;
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io(&local_path)(e)),
    }

    // Hashes of the current (incomplete) tile at each level.
    let mut levels: Vec<Vec<Hash>> = vec![Vec::new()];
    let mut range = CompactRange::default();
    let bundles = cp.size.div_ceil(TILE_WIDTH);
    for n in 0..bundles {
        let width = (cp.size - n * TILE_WIDTH).min(TILE_WIDTH);
        let tile = TilePath {
            kind: TileKind::Entries,
            index: n,
            width,
        };
        let (data, local) = f.tile(&tile).await?;
        let entries = decode_bundle(&data).map_err(|e| MirrorError::Tampered {
            what: tile.to_string(),
            reason: e.0.to_string(),
        })?;
        if entries.len() as u64 != width {
            return Err(MirrorError::Tampered {
                what: tile.to_string(),
                reason: format!("holds {} entries, not {width}", entries.len()),
            });
        }
        for e in &entries {
            let h = leaf_hash(e);
            range.push(h);
            levels[0].push(h);
        }
        if !local {
            write_atomic(&dir.join(tile.to_string()), &data)?;
        }
        // Full tiles roll up into the level above.
        let mut level = 0;
        while levels[level].len() as u64 == TILE_WIDTH {
            let hashes = std::mem::take(&mut levels[level]);
            let index = hashes_index(&range, level);
            f.hash_tile(level as u8, index, &hashes).await?;
            if levels.len() == level + 1 {
                levels.push(Vec::new());
            }
            levels[level + 1].push(complete_root(&hashes));
            level += 1;
        }
        progress(range.size(), cp.size);
    }
    // The partial tile at the right edge of each level.
    for (level, hashes) in levels.iter().enumerate() {
        if !hashes.is_empty() {
            let index = hashes_index(&range, level);
            f.hash_tile(level as u8, index, hashes).await?;
        }
    }
    if range.root() != cp.root {
        return Err(MirrorError::Tampered {
            what: "the entries".into(),
            reason: format!(
                "do not hash to the checkpoint's root at size {} (an entry changed, swapped, dropped or duplicated)",
                cp.size
            ),
        });
    }
    write_atomic(&local_path, &note)?;
    f.report.size = cp.size;
    Ok(f.report)
}

/// The index of the tile at `level` that is being filled (or was just
/// filled) after `range.size()` leaves.
fn hashes_index(range: &CompactRange, level: usize) -> u64 {
    // Nodes at height 8*level cover 256^level leaves; tile = node / 256.
    let span = 1u64 << (8 * level as u32);
    let nodes = range.size().div_ceil(span);
    (nodes - 1) / TILE_WIDTH
}
