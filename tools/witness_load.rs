//! gatelog-witness-load: drives a witness's `POST /add-checkpoint` with N
//! simulated logs in parallel, each growing its own tree and sending
//! consistent checkpoints one after another, for a fixed time. Prints
//! throughput and latency (p50/p99/max) and verifies a sample of the
//! cosignatures.
//!
//!   gatelog witness $(gatelog-witness-load keys --logs 32)   # the logs' keys
//!   gatelog-witness-load run --addr 127.0.0.1:8081 --logs 32 --witness-key VKEY

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use bytes::Bytes;
use clap::{Args, Parser, Subcommand};
use gatelog::tlog::checkpoint::Checkpoint;
use gatelog::tlog::cosignature::{AddCheckpoint, CosignatureVerifier};
use gatelog::tlog::merkle::{leaf_hash, Hash, Prover};
use gatelog::tlog::note::{Note, NoteSigner};
use gatelog::tlog::tiles::{append_leaves, TileNodes, TileReader, TileSet};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use sha2::{Digest, Sha256};
use tokio::net::TcpStream;

#[derive(Parser, Debug)]
#[command(
    name = "gatelog-witness-load",
    about = "Load generator for a gatelog witness"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Print "--log VKEY" for each simulated log, for `gatelog witness`.
    Keys(KeysArgs),
    /// Send add-checkpoint requests from every simulated log.
    Run(RunArgs),
}

#[derive(Args, Debug)]
struct KeysArgs {
    /// Number of simulated logs.
    #[arg(long, default_value_t = 32)]
    logs: u32,
    /// Seed the logs' keys derive from.
    #[arg(long, default_value = "gatelog-witness-load")]
    seed: String,
}

#[derive(Args, Debug)]
struct RunArgs {
    #[command(flatten)]
    keys: KeysArgs,
    /// The witness's address.
    #[arg(long, default_value = "127.0.0.1:8081")]
    addr: SocketAddr,
    /// The witness's verifier key, to check cosignatures.
    #[arg(long)]
    witness_key: String,
    /// How long to run, in seconds.
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Verify one cosignature in this many.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    verify_every: u64,
}

/// A simulated log's hash tiles; leaf n is the leaf hash of n.
#[derive(Default)]
struct Tiles(TileSet);

impl Tiles {
    fn grow(&mut self, from: u64, to: u64) {
        let leaves: Vec<Hash> = (from..to).map(|n| leaf_hash(&n.to_be_bytes())).collect();
        let changed = append_leaves(&*self, from, &leaves).expect("in memory");
        self.0.extend(changed);
    }
}

impl TileReader for Tiles {
    type Error = std::convert::Infallible;
    fn read_tile(&self, level: u8, index: u64) -> Result<Option<Arc<Vec<u8>>>, Self::Error> {
        Ok(self.0.get(&(level, index)).cloned())
    }
}

fn log_key(keys: &KeysArgs, i: u32) -> NoteSigner {
    let seed: [u8; 32] = Sha256::digest(format!("{}/{i}", keys.seed)).into();
    NoteSigner::from_seed(&format!("load.example/log{i}"), seed).expect("valid name")
}

/// One simulated log's requests; returns latencies in microseconds.
async fn drive(
    i: u32,
    args: &RunArgs,
    witness: &CosignatureVerifier,
) -> anyhow::Result<(Vec<u32>, u64)> {
    let key = log_key(&args.keys, i);
    let stream = TcpStream::connect(args.addr).await?;
    stream.set_nodelay(true)?;
    let (mut sender, conn) = http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    // The log's tree as tiles, so each step costs O(log n), not O(n).
    let mut tiles = Tiles::default();
    let mut size = 0u64;
    let mut old = 0u64;
    let (mut latencies, mut verified) = (Vec::new(), 0u64);
    let end = Instant::now() + Duration::from_secs(args.duration);
    while Instant::now() < end {
        tiles.grow(size, size + 1);
        size += 1;
        let mut prover = Prover::new(TileNodes::new(&tiles));
        let cp = Checkpoint {
            origin: key.name().to_string(),
            size,
            root: prover.root(size).expect("in memory"),
            extensions: vec![],
        };
        let text = cp.to_text();
        let body = AddCheckpoint {
            old_size: old,
            proof: prover.consistency(old, size).expect("in memory"),
            checkpoint: key.sign(&text)?,
        }
        .encode();
        let started = Instant::now();
        sender.ready().await?;
        let req = Request::builder()
            .method(Method::POST)
            .uri("/add-checkpoint")
            .header("host", "witness")
            .body(Full::new(Bytes::from(body)))?;
        let resp = sender.send_request(req).await?;
        let status = resp.status().as_u16();
        let answer = resp.into_body().collect().await?.to_bytes();
        let answer = String::from_utf8_lossy(&answer);
        match status {
            200 => {
                latencies.push(started.elapsed().as_micros().min(u32::MAX as u128) as u32);
                if (latencies.len() as u64 - 1).is_multiple_of(args.verify_every) {
                    let note = Note::parse(format!("{text}\n{answer}").as_bytes())?;
                    if !note
                        .signatures
                        .iter()
                        .any(|s| witness.verify(&text, s).is_some())
                    {
                        bail!("log {i}: cosignature for size {size} does not verify");
                    }
                    verified += 1;
                }
                old = size;
            }
            // The witness knew this log from an earlier run: catch up.
            409 => {
                let known: u64 = answer.trim().parse().context("409 size")?;
                if known > size {
                    tiles.grow(size, known);
                    size = known;
                }
                old = known;
            }
            s => bail!("log {i}: HTTP {s}: {answer}"),
        }
    }
    Ok((latencies, verified))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Keys(k) => {
            let keys: Vec<String> = (0..k.logs)
                .map(|i| format!("--log {}", log_key(&k, i).verifier().to_vkey()))
                .collect();
            println!("{}", keys.join(" "));
            Ok(())
        }
        Command::Run(args) => {
            let witness = CosignatureVerifier::parse(&args.witness_key)?;
            let args = Arc::new(args);
            let started = Instant::now();
            let tasks: Vec<_> = (0..args.keys.logs)
                .map(|i| {
                    let (args, witness) = (args.clone(), witness.clone());
                    tokio::spawn(async move { drive(i, &args, &witness).await })
                })
                .collect();
            let (mut latencies, mut verified) = (Vec::new(), 0);
            for t in tasks {
                let (l, v) = t.await??;
                latencies.extend(l);
                verified += v;
            }
            let elapsed = started.elapsed().as_secs_f64();
            latencies.sort_unstable();
            if latencies.is_empty() {
                bail!("no cosignatures");
            }
            let pct = |p: f64| {
                latencies[((latencies.len() as f64 * p) as usize).min(latencies.len() - 1)] as f64
                    / 1000.0
            };
            println!(
                "cosigned: {} over {elapsed:.1} s from {} logs",
                latencies.len(),
                args.keys.logs
            );
            println!(
                "throughput: {:.0} add-checkpoint/s",
                latencies.len() as f64 / elapsed
            );
            println!(
                "latency: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
                pct(0.5),
                pct(0.99),
                pct(1.0)
            );
            println!("cosignatures verified: {verified}");
            Ok(())
        }
    }
}
