//! Writes seed corpora for the parser fuzz targets into DIR/<target>/:
//! well-formed inputs of each format, made with the crate's own encoders
//! and fixed keys, so the fuzzer starts from inputs that parse.
//!
//!   cargo run --manifest-path fuzz/Cargo.toml --bin parsers-seeds -- fuzz/corpus

use std::path::Path;

use gatelog::tlog::checkpoint::Checkpoint;
use gatelog::tlog::cosignature::{AddCheckpoint, CosignatureSigner};
use gatelog::tlog::equivocation::Equivocation;
use gatelog::tlog::merkle::{leaf_hash, LeafHashes, Prover};
use gatelog::tlog::note::NoteSigner;
use gatelog::tlog::tiles::encode_bundle;
use gatelog::tlog::tlog_proof::TlogProof;

fn main() {
    let out = std::env::args().nth(1).expect("usage: parsers-seeds DIR");
    let out = Path::new(&out);
    let log = NoteSigner::from_seed("log.example", [1; 32]).unwrap();
    let witness = CosignatureSigner::from_seed("w.example", [2; 32]).unwrap();
    let leaves: Vec<Vec<u8>> = (0..5u8).map(|i| vec![b'e', i]).collect();
    let hashes: Vec<_> = leaves.iter().map(|l| leaf_hash(l)).collect();
    let checkpoint = |size: u64| {
        let root = Prover::new(LeafHashes(&hashes)).root(size).unwrap();
        Checkpoint {
            origin: "log.example".into(),
            size,
            root,
            extensions: vec![],
        }
    };
    let note3 = checkpoint(3).sign(&log).unwrap();
    let note5 = checkpoint(5).sign(&log).unwrap();
    let mut cosigned = note5.clone();
    cosigned.push_str(&witness.cosign(&checkpoint(5).to_text(), 1_800_000_000));
    let proof = Prover::new(LeafHashes(&hashes)).inclusion(1, 5).unwrap();
    let consistency = Prover::new(LeafHashes(&hashes)).consistency(3, 5).unwrap();
    let forked = Checkpoint {
        root: leaf_hash(b"fork"),
        ..checkpoint(5)
    }
    .sign(&log)
    .unwrap();
    let seeds: Vec<(&str, Vec<Vec<u8>>)> = vec![
        (
            "note",
            vec![note3.clone().into_bytes(), cosigned.clone().into_bytes()],
        ),
        (
            "checkpoint",
            vec![
                checkpoint(3).to_text().into_bytes(),
                checkpoint(5).to_text().into_bytes(),
            ],
        ),
        (
            "tile_path",
            [
                "0/000",
                "1/x001/234",
                "entries/000.p/7",
                "entries/x123/x456/789",
                "2/000.p/255",
            ]
            .iter()
            .map(|s| s.as_bytes().to_vec())
            .collect(),
        ),
        (
            "bundle",
            vec![
                encode_bundle(leaves.iter().map(|l| l.as_slice())),
                encode_bundle([&b""[..]]),
            ],
        ),
        (
            "tlog_proof",
            vec![TlogProof {
                extra: Some(b"x".to_vec()),
                index: 1,
                proof,
                checkpoint: note5.clone(),
            }
            .encode()
            .into_bytes()],
        ),
        (
            "witness_body",
            vec![
                AddCheckpoint {
                    old_size: 3,
                    proof: consistency.clone(),
                    checkpoint: note5.clone(),
                }
                .encode()
                .into_bytes(),
                AddCheckpoint {
                    old_size: 0,
                    proof: vec![],
                    checkpoint: note3.clone(),
                }
                .encode()
                .into_bytes(),
            ],
        ),
        (
            "policy",
            vec![format!(
                "log {}\nwitness w1 {}\ngroup g 1 w1\nquorum g\n",
                log.verifier().to_vkey(),
                witness.verifier().to_vkey()
            )
            .into_bytes()],
        ),
        (
            "equivocation",
            vec![
                Equivocation {
                    a: note5.clone(),
                    b: forked,
                    proof: vec![],
                }
                .encode()
                .into_bytes(),
                Equivocation {
                    a: note3,
                    b: note5,
                    proof: consistency,
                }
                .encode()
                .into_bytes(),
            ],
        ),
        (
            "audit",
            vec![encode_bundle(leaves.iter().map(|l| l.as_slice()))],
        ),
    ];
    for (target, inputs) in seeds {
        let dir = out.join(target);
        std::fs::create_dir_all(&dir).unwrap();
        for (i, input) in inputs.iter().enumerate() {
            std::fs::write(dir.join(format!("seed-{i}")), input).unwrap();
        }
        println!("{target}: {} seeds in {}", inputs.len(), dir.display());
    }
}
