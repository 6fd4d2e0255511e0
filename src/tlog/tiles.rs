//! C2SP tlog-tiles (c2sp.org/tlog-tiles): tile paths, tile maths, entry
//! bundles, and the two algorithms that sit on tiles: appending leaves
//! (which tiles change and how) and reading any complete subtree hash.
//!
//! Pure: storage is reached only through [`TileReader`].

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use thiserror::Error;

use crate::tlog::decimal::parse_decimal;
use crate::tlog::merkle::{complete_root, Hash, NodeSource};

/// Levels of the Merkle tree a tile spans.
pub const TILE_HEIGHT: u32 = 8;
/// Hashes (or entries) in a full tile.
pub const TILE_WIDTH: u64 = 256;
/// Bytes of one hash in a tile.
pub const HASH_SIZE: usize = 32;
/// Largest entry an entry bundle can hold (its lengths are u16).
pub const MAX_ENTRY_BYTES: usize = u16::MAX as usize;
/// Highest tile level the path syntax allows.
pub const MAX_LEVEL: u8 = 63;

/// What a tile path names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TileKind {
    /// A hash tile at a level.
    Hashes { level: u8 },
    /// An entry bundle.
    Entries,
}

/// A parsed `tile/...` path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TilePath {
    /// Hash tile or entry bundle.
    pub kind: TileKind,
    /// Index of the tile within its level.
    pub index: u64,
    /// Number of hashes or entries: 256 for a full tile, 1..=255 for a partial one.
    pub width: u64,
}

/// Why a tile path was rejected.
#[derive(Debug, Error, PartialEq, Eq)]
#[error("malformed tile path: {0}")]
pub struct TilePathError(pub &'static str);

impl TilePath {
    /// Parses the part of a path after `tile/`, e.g. `0/x001/234` or
    /// `entries/005.p/17`.
    pub fn parse(rest: &str) -> Result<TilePath, TilePathError> {
        let (kind, index_path) = match rest.split_once('/') {
            Some(("entries", r)) => (TileKind::Entries, r),
            Some((l, r)) => (
                TileKind::Hashes {
                    level: parse_level(l)?,
                },
                r,
            ),
            None => return Err(TilePathError("want <level>/<index> or entries/<index>")),
        };
        let (index_path, width) = match index_path.split_once(".p/") {
            Some((i, w)) => (i, parse_width(w)?),
            None => (index_path, TILE_WIDTH),
        };
        let index = parse_index(index_path)?;
        Ok(TilePath { kind, index, width })
    }

    /// Whether this is a partial tile.
    pub fn is_partial(&self) -> bool {
        self.width < TILE_WIDTH
    }
}

impl fmt::Display for TilePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            TileKind::Hashes { level } => write!(f, "tile/{level}/")?,
            TileKind::Entries => write!(f, "tile/entries/")?,
        }
        write!(f, "{}", format_index(self.index))?;
        if self.is_partial() {
            write!(f, ".p/{}", self.width)?;
        }
        Ok(())
    }
}

fn parse_level(s: &str) -> Result<u8, TilePathError> {
    parse_decimal(s)
        .filter(|&l| l <= MAX_LEVEL as u64)
        .map(|l| l as u8)
        .ok_or(TilePathError("level must be a decimal from 0 to 63"))
}

fn parse_width(s: &str) -> Result<u64, TilePathError> {
    parse_decimal(s)
        .filter(|w| (1..TILE_WIDTH).contains(w))
        .ok_or(TilePathError(
            "partial width must be a decimal from 1 to 255",
        ))
}

/// Formats a tile index in 3-digit groups: 1234067 -> "x001/x234/067".
pub fn format_index(mut n: u64) -> String {
    let mut groups = vec![format!("{:03}", n % 1000)];
    n /= 1000;
    while n > 0 {
        groups.push(format!("x{:03}", n % 1000));
        n /= 1000;
    }
    groups.reverse();
    groups.join("/")
}

fn parse_index(s: &str) -> Result<u64, TilePathError> {
    const BAD: TilePathError =
        TilePathError("index must be 3-digit groups, all but the last prefixed with x");
    let groups: Vec<&str> = s.split('/').collect();
    // 7 groups of 3 digits hold every u64.
    if groups.len() > 7 {
        return Err(BAD);
    }
    let mut n: u64 = 0;
    for (i, g) in groups.iter().enumerate() {
        let digits = if i + 1 < groups.len() {
            g.strip_prefix('x').ok_or(BAD)?
        } else {
            g
        };
        if digits.len() != 3 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(BAD);
        }
        let d: u64 = digits.parse().map_err(|_| BAD)?;
        n = n
            .checked_mul(1000)
            .and_then(|n| n.checked_add(d))
            .ok_or(BAD)?;
    }
    // Leading zero groups ("x000/001") would give one tile two paths.
    if groups.len() > 1 && groups[0] == "x000" {
        return Err(BAD);
    }
    Ok(n)
}

/// Number of complete hashes at tile `level` (tree height 8·level) in a
/// tree of `size` leaves.
pub fn level_len(level: u8, size: u64) -> u64 {
    size.checked_shr(TILE_HEIGHT * level as u32).unwrap_or(0)
}

/// Width of tile `index` at `level` in a tree of `size` leaves: 256 if
/// full, 0 if it does not exist yet.
pub fn tile_width(level: u8, index: u64, size: u64) -> u64 {
    level_len(level, size)
        .saturating_sub(index.saturating_mul(TILE_WIDTH))
        .min(TILE_WIDTH)
}

/// The `i`-th hash of tile bytes.
pub fn hash_at(tile: &[u8], i: usize) -> Hash {
    tile[i * HASH_SIZE..(i + 1) * HASH_SIZE]
        .try_into()
        .expect("32-byte slice")
}

/// Root of a full tile: the hash one level up.
pub fn full_tile_root(tile: &[u8]) -> Hash {
    debug_assert_eq!(tile.len(), TILE_WIDTH as usize * HASH_SIZE);
    let hashes: Vec<Hash> = (0..TILE_WIDTH as usize).map(|i| hash_at(tile, i)).collect();
    complete_root(&hashes)
}

/// Encodes an entry bundle: each entry as big-endian u16 length || bytes.
/// Entries longer than 65535 bytes cannot be bundled; callers refuse them
/// at the door.
pub fn encode_bundle<'a>(entries: impl IntoIterator<Item = &'a [u8]>) -> Vec<u8> {
    let mut out = Vec::new();
    for e in entries {
        let len = u16::try_from(e.len()).expect("entry longer than 65535 bytes");
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(e);
    }
    out
}

/// Why an entry bundle could not be decoded.
#[derive(Debug, Error, PartialEq, Eq)]
#[error("malformed entry bundle: {0}")]
pub struct BundleError(pub &'static str);

/// Decodes an entry bundle into its entries.
pub fn decode_bundle(mut data: &[u8]) -> Result<Vec<&[u8]>, BundleError> {
    let mut out = Vec::new();
    while !data.is_empty() {
        if data.len() < 2 {
            return Err(BundleError("truncated entry length"));
        }
        let len = u16::from_be_bytes([data[0], data[1]]) as usize;
        if data.len() < 2 + len {
            return Err(BundleError("truncated entry"));
        }
        out.push(&data[2..2 + len]);
        data = &data[2 + len..];
    }
    Ok(out)
}

/// Tile contents keyed by (level, index).
pub type TileSet = HashMap<(u8, u64), Arc<Vec<u8>>>;

/// Errors from reading tiles.
#[derive(Debug, Error)]
pub enum TileError<E> {
    /// The underlying store failed.
    #[error("reading tile: {0}")]
    Read(E),
    /// A tile the tree size says exists is missing or too short: storage
    /// does not match the checkpoint.
    #[error("tile {level}/{index} has {have} hashes, need {need}: storage is inconsistent")]
    Missing {
        level: u8,
        index: u64,
        have: u64,
        need: u64,
    },
}

/// Read access to stored hash tiles.
pub trait TileReader {
    /// Store error.
    type Error;
    /// The current content of tile `index` at `level` (its hashes
    /// concatenated, full or partial), or None if it was never written.
    fn read_tile(&self, level: u8, index: u64) -> Result<Option<Arc<Vec<u8>>>, Self::Error>;
}

impl<R: TileReader + ?Sized> TileReader for &R {
    type Error = R::Error;
    fn read_tile(&self, level: u8, index: u64) -> Result<Option<Arc<Vec<u8>>>, R::Error> {
        (**self).read_tile(level, index)
    }
}

/// Tiles written in memory over a base reader: the sequencer's view of the
/// tree after a batch, before (and while) it is committed.
pub struct Overlay<R> {
    /// Tiles changed by the batch, keyed by (level, index).
    pub changed: TileSet,
    /// Everything else.
    pub base: R,
}

impl<R: TileReader> TileReader for Overlay<R> {
    type Error = R::Error;
    fn read_tile(&self, level: u8, index: u64) -> Result<Option<Arc<Vec<u8>>>, R::Error> {
        match self.changed.get(&(level, index)) {
            Some(t) => Ok(Some(t.clone())),
            None => self.base.read_tile(level, index),
        }
    }
}

/// Computes complete-subtree hashes from tiles: a node at height 8·L + k
/// is the root of 2^k consecutive hashes in one level-L tile.
pub struct TileNodes<R> {
    reader: R,
    cache: HashMap<(u8, u64), Arc<Vec<u8>>>,
}

impl<R: TileReader> TileNodes<R> {
    /// Node source reading tiles from `reader`, caching each tile it reads.
    pub fn new(reader: R) -> Self {
        TileNodes {
            reader,
            cache: HashMap::new(),
        }
    }

    /// The reader tiles come from.
    pub fn reader(&self) -> &R {
        &self.reader
    }

    fn tile(&mut self, level: u8, index: u64) -> Result<Arc<Vec<u8>>, TileError<R::Error>> {
        if let Some(t) = self.cache.get(&(level, index)) {
            return Ok(t.clone());
        }
        let t = self
            .reader
            .read_tile(level, index)
            .map_err(TileError::Read)?
            .unwrap_or_default();
        self.cache.insert((level, index), t.clone());
        Ok(t)
    }
}

impl<R: TileReader> NodeSource for TileNodes<R> {
    type Error = TileError<R::Error>;

    /// Tiles hold the hashes at every 8th height; the prover computes the
    /// ones between from them.
    fn stores(&self, height: u32) -> bool {
        height.is_multiple_of(TILE_HEIGHT)
    }
    fn node(&mut self, height: u32, index: u64) -> Result<Hash, Self::Error> {
        let level = (height / TILE_HEIGHT) as u8;
        let k = height % TILE_HEIGHT;
        let first = index << k;
        let (tile_index, offset) = (first / TILE_WIDTH, (first % TILE_WIDTH) as usize);
        let count = 1usize << k;
        let tile = self.tile(level, tile_index)?;
        let have = (tile.len() / HASH_SIZE) as u64;
        if have < (offset + count) as u64 {
            return Err(TileError::Missing {
                level,
                index: tile_index,
                have,
                need: (offset + count) as u64,
            });
        }
        if count == 1 {
            return Ok(hash_at(&tile, offset));
        }
        let hashes: Vec<Hash> = (offset..offset + count)
            .map(|i| hash_at(&tile, i))
            .collect();
        Ok(complete_root(&hashes))
    }
}

/// Appends `leaves` to the tree of `old_size` leaves whose tiles `reader`
/// holds. Returns every tile that changes, keyed by (level, index), with
/// its whole new content. The caller stores them atomically with the
/// entries and the new checkpoint.
pub fn append_leaves<R: TileReader + ?Sized>(
    reader: &R,
    old_size: u64,
    leaves: &[Hash],
) -> Result<TileSet, TileError<R::Error>> {
    let mut changed = TileSet::new();
    let mut incoming: Vec<Hash> = leaves.to_vec();
    let mut first = old_size; // position of incoming[0] within its level
    let mut level: u8 = 0;
    while !incoming.is_empty() {
        let mut tile_index = first / TILE_WIDTH;
        let keep = (first % TILE_WIDTH) as usize;
        let mut tile = Vec::with_capacity(TILE_WIDTH as usize * HASH_SIZE);
        if keep > 0 {
            let stored = reader
                .read_tile(level, tile_index)
                .map_err(TileError::Read)?
                .unwrap_or_default();
            if stored.len() != keep * HASH_SIZE {
                return Err(TileError::Missing {
                    level,
                    index: tile_index,
                    have: (stored.len() / HASH_SIZE) as u64,
                    need: keep as u64,
                });
            }
            tile.extend_from_slice(&stored);
        }
        let mut completed = Vec::new();
        for h in &incoming {
            tile.extend_from_slice(h);
            if tile.len() == TILE_WIDTH as usize * HASH_SIZE {
                completed.push(full_tile_root(&tile));
                changed.insert((level, tile_index), Arc::new(std::mem::take(&mut tile)));
                tile_index += 1;
            }
        }
        if !tile.is_empty() {
            changed.insert((level, tile_index), Arc::new(tile));
        }
        incoming = completed;
        first /= TILE_WIDTH;
        level += 1;
    }
    Ok(changed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tlog::merkle::{leaf_hash, LeafHashes, Prover};

    #[test]
    fn index_paths_round_trip() {
        assert_eq!(format_index(1234067), "x001/x234/067");
        assert_eq!(format_index(0), "000");
        for n in [0u64, 5, 999, 1000, 1234067, u64::MAX] {
            assert_eq!(parse_index(&format_index(n)).unwrap(), n);
        }
        let p = TilePath::parse("entries/x001/067.p/12").unwrap();
        assert_eq!(p.kind, TileKind::Entries);
        assert_eq!((p.index, p.width), (1067, 12));
        assert_eq!(p.to_string(), "tile/entries/x001/067.p/12");
        for bad in [
            "0/67",
            "0/x067",
            "0/000.p/0",
            "0/000.p/256",
            "0/000.p/07",
            "64/000",
            "01/000",
            "0/x000/001",
            "0/1000",
            "x/000",
            "0",
            "0/000/",
            "0/abc",
        ] {
            assert!(TilePath::parse(bad).is_err(), "{bad} should be rejected");
        }
    }

    #[test]
    fn widths_follow_the_spec_example() {
        // A tree of 70,000: 273 full level-0 tiles and one of width 112,
        // one full level-1 tile and one of width 17, a level-2 tile of width 1.
        assert_eq!(tile_width(0, 272, 70_000), 256);
        assert_eq!(tile_width(0, 273, 70_000), 112);
        assert_eq!(tile_width(0, 274, 70_000), 0);
        assert_eq!(tile_width(1, 0, 70_000), 256);
        assert_eq!(tile_width(1, 1, 70_000), 17);
        assert_eq!(tile_width(2, 0, 70_000), 1);
        assert_eq!(tile_width(3, 0, 70_000), 0);
    }

    struct MapReader(HashMap<(u8, u64), Arc<Vec<u8>>>);
    impl TileReader for MapReader {
        type Error = std::convert::Infallible;
        fn read_tile(&self, l: u8, i: u64) -> Result<Option<Arc<Vec<u8>>>, Self::Error> {
            Ok(self.0.get(&(l, i)).cloned())
        }
    }

    #[test]
    fn appending_in_uneven_batches_gives_the_reference_root() {
        let leaves: Vec<Hash> = (0..70_000u32)
            .map(|i| leaf_hash(&i.to_be_bytes()))
            .collect();
        let mut store = MapReader(HashMap::new());
        let mut size = 0usize;
        for batch in [1usize, 254, 1, 300, 65_000, 4_444] {
            let changed = append_leaves(&store, size as u64, &leaves[size..size + batch]).unwrap();
            store.0.extend(changed);
            size += batch;
            let got = Prover::new(TileNodes::new(&store))
                .root(size as u64)
                .unwrap();
            let want = Prover::new(LeafHashes(&leaves[..size]))
                .root(size as u64)
                .unwrap();
            assert_eq!(got, want, "root after {size} leaves");
        }
        for (&(level, index), tile) in &store.0 {
            assert_eq!(
                tile.len() as u64 / 32,
                tile_width(level, index, size as u64),
                "tile {level}/{index}"
            );
        }
    }

    #[test]
    fn bundles_round_trip() {
        let entries: Vec<&[u8]> = vec![b"", b"a", &[7u8; 300]];
        let b = encode_bundle(entries.iter().copied());
        assert_eq!(decode_bundle(&b).unwrap(), entries);
        assert!(decode_bundle(&b[..b.len() - 1]).is_err());
    }
}
