//! Where an auditor's tools read a log from: a mirror directory laid out
//! like the tlog-tiles API, or the log's URL. Either way the paths are the
//! API's (`/checkpoint`, `/tile/0/x001`, `/tile/entries/000.p/5`).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::tlog::tiles::{tile_width, TileKind, TilePath, TileReader, HASH_SIZE, TILE_WIDTH};
use anyhow::Context;
use hyper::Uri;

use crate::sys::client::{fetch, parse_url};

pub enum Source {
    Dir(PathBuf),
    Url(Uri),
}

impl Source {
    /// `log` is an `http(s)://` URL or a directory.
    pub fn open(log: &str) -> anyhow::Result<Source> {
        if crate::sys::client::is_url(log) {
            Ok(Source::Url(parse_url(log)?))
        } else {
            Ok(Source::Dir(PathBuf::from(log)))
        }
    }

    /// The file at `path`, or None if the log has no such file.
    pub fn get(&self, path: &str) -> anyhow::Result<Option<Vec<u8>>> {
        match self {
            Source::Dir(dir) => {
                let file = dir.join(path.trim_start_matches('/'));
                match std::fs::read(&file) {
                    Ok(data) => Ok(Some(data)),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                    Err(e) => Err(e).with_context(|| format!("reading {}", file.display())),
                }
            }
            Source::Url(base) => match fetch(base, path, Duration::from_secs(30))? {
                (200, body) => Ok(Some(body)),
                (404, _) => Ok(None),
                (status, _) => anyhow::bail!("GET {base}{path}: HTTP {status}"),
            },
        }
    }

    /// The file at `path`, which must exist.
    pub fn read(&self, path: &str) -> anyhow::Result<Vec<u8>> {
        self.get(path)?
            .ok_or_else(|| anyhow::anyhow!("{path}: not found in the log"))
    }

    /// Tile `tile`, or the full tile of the same index when the partial
    /// one is gone (a log or mirror that has grown past it), cut to width.
    pub fn tile(&self, tile: TilePath) -> anyhow::Result<Option<Vec<u8>>> {
        if let Some(data) = self.get(&format!("/{tile}"))? {
            return Ok(Some(data));
        }
        if tile.width == TILE_WIDTH {
            return Ok(None);
        }
        let full = TilePath {
            width: TILE_WIDTH,
            ..tile
        };
        Ok(self.get(&format!("/{full}"))?.map(|mut data| {
            if let TileKind::Hashes { .. } = tile.kind {
                data.truncate(tile.width as usize * HASH_SIZE);
            }
            data
        }))
    }

    /// The log's hash tiles for a tree of `size` leaves.
    pub fn hash_tiles(&self, size: u64) -> SourceTiles<'_> {
        SourceTiles { source: self, size }
    }
}

/// Hash tiles read from a [`Source`], for proofs.
pub struct SourceTiles<'a> {
    source: &'a Source,
    size: u64,
}

impl TileReader for SourceTiles<'_> {
    type Error = std::io::Error;
    fn read_tile(&self, level: u8, index: u64) -> Result<Option<Arc<Vec<u8>>>, Self::Error> {
        let tile = TilePath {
            kind: TileKind::Hashes { level },
            index,
            width: tile_width(level, index, self.size),
        };
        self.source
            .tile(tile)
            .map(|t| t.map(Arc::new))
            .map_err(|e| std::io::Error::other(format!("{e:#}")))
    }
}
