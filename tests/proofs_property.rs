//! Property tests: roots, proofs and tiles computed from stored tiles (as
//! the server does) equal those of a naive in-memory RFC 6962 reference,
//! for random tree sizes up to several thousand, built in random batches.

use std::collections::HashMap;
use std::sync::Arc;

use gatelog::tlog::merkle::{
    leaf_hash, node_hash, verify_consistency, verify_inclusion, Hash, Prover,
};
use gatelog::tlog::tiles::{append_leaves, tile_width, TileNodes, TileReader};
use proptest::prelude::*;

// ---- The reference: RFC 6962 §2.1 written out literally, over leaf hashes.

fn k_of(n: usize) -> usize {
    let mut k = 1;
    while k * 2 < n {
        k *= 2;
    }
    k
}

fn mth(d: &[Hash]) -> Hash {
    match d.len() {
        0 => leaf_hash_of_nothing(),
        1 => d[0],
        n => {
            let k = k_of(n);
            node_hash(&mth(&d[..k]), &mth(&d[k..]))
        }
    }
}

fn leaf_hash_of_nothing() -> Hash {
    use sha2::Digest;
    sha2::Sha256::digest([]).into()
}

fn path(m: usize, d: &[Hash]) -> Vec<Hash> {
    let n = d.len();
    if n == 1 {
        return vec![];
    }
    let k = k_of(n);
    if m < k {
        let mut p = path(m, &d[..k]);
        p.push(mth(&d[k..]));
        p
    } else {
        let mut p = path(m - k, &d[k..]);
        p.push(mth(&d[..k]));
        p
    }
}

fn subproof(m: usize, d: &[Hash], b: bool) -> Vec<Hash> {
    let n = d.len();
    if m == n {
        return if b { vec![] } else { vec![mth(d)] };
    }
    let k = k_of(n);
    if m <= k {
        let mut p = subproof(m, &d[..k], b);
        p.push(mth(&d[k..]));
        p
    } else {
        let mut p = subproof(m - k, &d[k..], false);
        p.push(mth(&d[..k]));
        p
    }
}

// ---- The tile store under test.

#[derive(Default)]
struct MemTiles(HashMap<(u8, u64), Arc<Vec<u8>>>);

impl TileReader for MemTiles {
    type Error = std::convert::Infallible;
    fn read_tile(&self, level: u8, index: u64) -> Result<Option<Arc<Vec<u8>>>, Self::Error> {
        Ok(self.0.get(&(level, index)).cloned())
    }
}

fn build(leaves: &[Hash], cuts: &[usize]) -> MemTiles {
    let mut tiles = MemTiles::default();
    let mut size = 0;
    let mut points: Vec<usize> = cuts.iter().map(|c| c % (leaves.len() + 1)).collect();
    points.push(leaves.len());
    points.sort_unstable();
    for p in points {
        if p > size {
            let changed = append_leaves(&tiles, size as u64, &leaves[size..p]).unwrap();
            tiles.0.extend(changed);
            size = p;
        }
    }
    tiles
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn tiles_give_the_reference_proofs(
        size in 1usize..5000,
        cuts in proptest::collection::vec(0usize..5000, 0..6),
        picks in proptest::collection::vec((any::<u64>(), any::<u64>()), 8),
    ) {
        let leaves: Vec<Hash> = (0..size as u32).map(|i| leaf_hash(&i.to_le_bytes())).collect();
        let tiles = build(&leaves, &cuts);
        // Every stored tile has the spec's width and content.
        for (&(level, index), t) in &tiles.0 {
            prop_assert_eq!(t.len() as u64 / 32, tile_width(level, index, size as u64));
            let span = 256usize.pow(level as u32);
            for (i, h) in t.chunks(32).enumerate() {
                let start = (index as usize * 256 + i) * span;
                prop_assert_eq!(h, &mth(&leaves[start..start + span])[..]);
            }
        }
        let mut prover = Prover::new(TileNodes::new(&tiles));
        let root = mth(&leaves);
        prop_assert_eq!(prover.root(size as u64).unwrap(), root);
        for (a, b) in picks {
            // A historical tree size, an index in it, and an older size.
            let n = 1 + (a as usize % size);
            let m = b as usize % n;
            let old = 1 + (b as usize % n);
            let want = path(m, &leaves[..n]);
            let got = prover.inclusion(m as u64, n as u64).unwrap();
            prop_assert_eq!(&got, &want);
            prop_assert!(verify_inclusion(m as u64, n as u64, &leaves[m], &got, &mth(&leaves[..n])).is_ok());
            let want = if old == n { vec![] } else { subproof(old, &leaves[..n], true) };
            let got = prover.consistency(old as u64, n as u64).unwrap();
            prop_assert_eq!(&got, &want);
            prop_assert!(verify_consistency(old as u64, n as u64, &got, &mth(&leaves[..old]), &mth(&leaves[..n])).is_ok());
        }
    }
}

/// Trees past 65,536 leaves use level-2 tiles (nodes of height 16 and up):
/// a few sizes around that boundary, against the reference.
#[test]
fn level_two_tiles_give_the_reference_proofs() {
    let leaves: Vec<Hash> = (0..200_003u32)
        .map(|i| leaf_hash(&i.to_le_bytes()))
        .collect();
    let tiles = build(&leaves, &[65_535, 65_536, 65_537, 70_000, 131_072]);
    let mut prover = Prover::new(TileNodes::new(&tiles));
    for n in [65_535usize, 65_536, 65_537, 70_000, 131_072, 200_003] {
        let d = &leaves[..n];
        assert_eq!(prover.root(n as u64).unwrap(), mth(d), "root of {n}");
        for m in [0, 1, 255, 256, 65_534, n / 2, n - 1] {
            assert_eq!(
                prover.inclusion(m as u64, n as u64).unwrap(),
                path(m, d),
                "inclusion {m} in {n}"
            );
        }
        for old in [1, 256, 65_535, 65_536, n - 1]
            .into_iter()
            .filter(|&o| o <= n)
        {
            assert_eq!(
                prover.consistency(old as u64, n as u64).unwrap(),
                subproof(old, d, true),
                "consistency {old} -> {n}"
            );
        }
    }
}
