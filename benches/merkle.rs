//! Criterion benches: leaf and node hashing, tile updates, and proof
//! generation from tiles (single proofs and a batch's worth).

use std::collections::HashMap;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use gatelog::tlog::merkle::{leaf_hash, node_hash, Hash, Prover};
use gatelog::tlog::tiles::{append_leaves, TileNodes, TileReader};

#[derive(Default, Clone)]
struct MemTiles(HashMap<(u8, u64), Arc<Vec<u8>>>);

impl TileReader for MemTiles {
    type Error = std::convert::Infallible;
    fn read_tile(&self, level: u8, index: u64) -> Result<Option<Arc<Vec<u8>>>, Self::Error> {
        Ok(self.0.get(&(level, index)).cloned())
    }
}

fn leaves(from: u64, n: u64) -> Vec<Hash> {
    (from..from + n)
        .map(|i| leaf_hash(&i.to_le_bytes()))
        .collect()
}

const TREE: u64 = 1 << 20;

fn tree(size: u64) -> MemTiles {
    let mut t = MemTiles::default();
    let changed = append_leaves(&t, 0, &leaves(0, size)).unwrap();
    t.0.extend(changed);
    t
}

fn hashing(c: &mut Criterion) {
    let entry = [7u8; 256];
    let mut g = c.benchmark_group("hash");
    g.throughput(Throughput::Elements(1));
    g.bench_function("leaf_256B", |b| {
        b.iter(|| leaf_hash(std::hint::black_box(&entry)))
    });
    let (l, r) = (leaf_hash(b"l"), leaf_hash(b"r"));
    g.bench_function("node", |b| {
        b.iter(|| node_hash(std::hint::black_box(&l), &r))
    });
    g.finish();
}

fn tile_updates(c: &mut Criterion) {
    // End mid-tile so the partial tile is read and rewritten.
    let start = TREE - 100;
    let base = tree(start);
    let mut g = c.benchmark_group("append_leaves");
    for batch in [1u64, 256, 4096] {
        let new = leaves(start, batch);
        g.throughput(Throughput::Elements(batch));
        g.bench_function(format!("batch_{batch}_onto_1M"), |b| {
            b.iter(|| append_leaves(&base, start, std::hint::black_box(&new)).unwrap())
        });
    }
    g.finish();
}

fn proofs(c: &mut Criterion) {
    let tiles = tree(TREE);
    let mut g = c.benchmark_group("proof_from_tiles");
    let mut i = 0u64;
    g.bench_function("inclusion_1M_fresh", |b| {
        b.iter(|| {
            i = (i + 7919) % TREE;
            Prover::new(TileNodes::new(&tiles))
                .inclusion(i, TREE - 3)
                .unwrap()
        })
    });
    g.bench_function("consistency_1M_fresh", |b| {
        b.iter(|| {
            i = (i + 7919) % (TREE - 4) + 1;
            Prover::new(TileNodes::new(&tiles))
                .consistency(i, TREE - 3)
                .unwrap()
        })
    });
    // What the sequencer does after a commit: proofs for a whole batch.
    g.throughput(Throughput::Elements(1024));
    g.bench_function("inclusion_batch_of_1024_at_tip", |b| {
        b.iter_batched(
            || Prover::new(TileNodes::new(&tiles)),
            |mut p| {
                for idx in TREE - 1024..TREE {
                    std::hint::black_box(p.inclusion(idx, TREE).unwrap());
                }
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

criterion_group!(benches, hashing, tile_updates, proofs);
criterion_main!(benches);
