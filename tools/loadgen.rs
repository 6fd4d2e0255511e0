//! gatelog-loadgen: drives `POST /v1/entries` with N concurrent clients,
//! at a fixed total rate or as fast as the server answers, for a fixed
//! time. Prints throughput and integration latency (p50/p99/max: from the
//! moment a request was due to its durable, checkpointed answer), and
//! verifies a sample of the returned tlog-proof bundles against the log's
//! verifier key.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use bytes::Bytes;
use clap::Parser;
use gatelog::merkle::leaf_hash;
use gatelog::note::NoteVerifier;
use gatelog::tlog_proof::TlogProof;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::{self, SendRequest};
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// Load generator for a gatelog server.
#[derive(Parser, Debug)]
#[command(name = "gatelog-loadgen")]
struct Opts {
    /// Server address.
    #[arg(long, default_value = "127.0.0.1:8080")]
    addr: SocketAddr,
    /// Concurrent clients, one keep-alive connection each.
    #[arg(long, default_value_t = 256)]
    clients: u64,
    /// Total appends per second across all clients; 0 = as fast as possible.
    #[arg(long, default_value_t = 0)]
    rate: u64,
    /// How long to run, in seconds.
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Size of each (unique) entry in bytes.
    #[arg(long, default_value_t = 256)]
    entry_bytes: usize,
    /// Verify the proof of one response in this many (1 = all).
    #[arg(long, default_value_t = 100)]
    verify_every: u64,
}

#[derive(Default)]
struct Tally {
    ok: AtomicU64,
    errors: AtomicU64,
    verified: AtomicU64,
    verify_failed: AtomicU64,
}

async fn connect(addr: SocketAddr) -> anyhow::Result<SendRequest<Full<Bytes>>> {
    let stream = TcpStream::connect(addr)
        .await
        .with_context(|| format!("connecting to {addr}"))?;
    stream.set_nodelay(true)?;
    let (sender, conn) = http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    Ok(sender)
}

async fn request(
    sender: &mut SendRequest<Full<Bytes>>,
    method: Method,
    path: &str,
    body: Bytes,
) -> anyhow::Result<(u16, Bytes)> {
    sender.ready().await?;
    let req = Request::builder()
        .method(method)
        .uri(path)
        .header("host", "gatelog")
        .body(Full::new(body))?;
    let resp = sender.send_request(req).await?;
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await?.to_bytes();
    Ok((status, body))
}

fn entry(client: u64, seq: u64, size: usize) -> Vec<u8> {
    // Unique per (run, client, seq) so nothing deduplicates.
    let nonce = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos() as u64;
    let mut e = Vec::with_capacity(size.max(24));
    e.extend_from_slice(&client.to_be_bytes());
    e.extend_from_slice(&seq.to_be_bytes());
    e.extend_from_slice(&nonce.to_be_bytes());
    let mut x = nonce ^ (client << 32) ^ seq;
    while e.len() < size {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        e.push(x as u8);
    }
    e.truncate(size.max(24));
    e
}

fn check_answer(body: &[u8], entry: &[u8], log: &NoteVerifier) -> anyhow::Result<()> {
    let v: serde_json::Value = serde_json::from_slice(body)?;
    let bundle = TlogProof::parse(v["proof"].as_str().context("no proof")?)?;
    let cp = bundle.verify(&leaf_hash(entry), log)?;
    if Some(bundle.index) != v["index"].as_u64()
        || v["checkpoint"].as_str() != Some(bundle.checkpoint.as_str())
    {
        bail!("index or checkpoint in the answer disagree with the proof bundle");
    }
    if bundle.index >= cp.size {
        bail!("index beyond checkpoint");
    }
    Ok(())
}

async fn client(
    id: u64,
    opts: Arc<Opts>,
    log: Arc<NoteVerifier>,
    tally: Arc<Tally>,
    start: Instant,
) -> anyhow::Result<Vec<u32>> {
    let mut sender = connect(opts.addr).await?;
    let end = start + Duration::from_secs(opts.duration);
    let mut latencies = Vec::new();
    let mut ticker = (opts.rate > 0).then(|| {
        let period = Duration::from_secs_f64(opts.clients as f64 / opts.rate as f64);
        // Spread clients over one period so they do not fire together.
        let offset = period.mul_f64(id as f64 / opts.clients as f64);
        let mut t = tokio::time::interval_at((start + offset).into(), period);
        t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        t
    });
    let mut seq = 0u64;
    loop {
        // Latency runs from when the request was due, so a slow answer
        // also counts against the requests it delayed.
        let due = match &mut ticker {
            Some(t) => t.tick().await.into_std(),
            None => Instant::now(),
        };
        if due >= end {
            break;
        }
        let e = entry(id, seq, opts.entry_bytes);
        seq += 1;
        match request(
            &mut sender,
            Method::POST,
            "/v1/entries",
            Bytes::from(e.clone()),
        )
        .await
        {
            Ok((200, body)) => {
                latencies.push(due.elapsed().as_micros().min(u32::MAX as u128) as u32);
                let n = tally.ok.fetch_add(1, Relaxed);
                if n % opts.verify_every == 0 {
                    match check_answer(&body, &e, &log) {
                        Ok(()) => tally.verified.fetch_add(1, Relaxed),
                        Err(err) => {
                            eprintln!("proof check failed: {err:#}");
                            tally.verify_failed.fetch_add(1, Relaxed)
                        }
                    };
                }
            }
            Ok((status, body)) => {
                if tally.errors.fetch_add(1, Relaxed) < 5 {
                    eprintln!("HTTP {status}: {}", String::from_utf8_lossy(&body));
                }
                // Back off on overload rather than measure a retry storm.
                if status == 503 {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
            Err(err) => {
                tally.errors.fetch_add(1, Relaxed);
                eprintln!("client {id}: {err:#}; reconnecting");
                tokio::time::sleep(Duration::from_millis(100)).await;
                match connect(opts.addr).await {
                    Ok(s) => sender = s,
                    Err(e) => {
                        eprintln!("client {id}: {e:#}; giving up");
                        break;
                    }
                }
            }
        }
    }
    Ok(latencies)
}

fn ms(micros: u32) -> f64 {
    micros as f64 / 1000.0
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let opts = Arc::new(Opts::parse());
    if opts.clients == 0 || opts.duration == 0 || opts.verify_every == 0 {
        bail!("--clients, --duration and --verify-every must be at least 1");
    }
    let mut probe = connect(opts.addr).await?;
    let (status, body) = request(&mut probe, Method::GET, "/v1/log", Bytes::new()).await?;
    if status != 200 {
        bail!("GET /v1/log answered {status}");
    }
    let info: serde_json::Value = serde_json::from_slice(&body)?;
    let vkey = info["verifier_key"]
        .as_str()
        .context("no verifier_key in /v1/log")?;
    let log = Arc::new(NoteVerifier::parse(vkey)?);
    let size_before = info["tree_size"].as_u64().unwrap_or(0);
    println!(
        "gatelog-loadgen: {} clients, {}, {} s, {}-byte entries, log {} at size {size_before}",
        opts.clients,
        if opts.rate == 0 {
            "max rate".to_string()
        } else {
            format!("{} appends/s", opts.rate)
        },
        opts.duration,
        opts.entry_bytes,
        log.name()
    );
    let tally = Arc::new(Tally::default());
    let start = Instant::now();
    let tasks: Vec<_> = (0..opts.clients)
        .map(|id| tokio::spawn(client(id, opts.clone(), log.clone(), tally.clone(), start)))
        .collect();
    let mut latencies = Vec::new();
    for t in tasks {
        latencies.extend(t.await??);
    }
    let elapsed = start.elapsed().as_secs_f64();
    latencies.sort_unstable();
    let pct = |p: f64| latencies[((latencies.len() as f64 * p) as usize).min(latencies.len() - 1)];
    let ok = tally.ok.load(Relaxed);
    println!("appends ok: {ok}, errors: {}", tally.errors.load(Relaxed));
    println!(
        "throughput: {:.0} appends/s over {elapsed:.1} s",
        ok as f64 / elapsed
    );
    if !latencies.is_empty() {
        println!(
            "integration latency: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            ms(pct(0.50)),
            ms(pct(0.99)),
            ms(*latencies.last().unwrap())
        );
    }
    let failed = tally.verify_failed.load(Relaxed);
    println!(
        "proofs verified: {} (1 in {}), failed: {failed}",
        tally.verified.load(Relaxed),
        opts.verify_every
    );
    if failed > 0 {
        bail!("{failed} proofs did not verify");
    }
    Ok(())
}
