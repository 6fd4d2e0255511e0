//! gatelog-loadgen: drives `POST /v1/entries` with N concurrent clients,
//! at a fixed total rate or as fast as the server answers, for a fixed
//! time. Prints throughput and integration latency (p50/p99/max: from the
//! moment a request was due to its durable, checkpointed answer), and
//! verifies a sample of the returned tlog-proof bundles against the log's
//! verifier key.
//!
//! `--workflow --admin-key FILE` drives a gatelog log (`--entries
//! gatelog`) with signed workflow entries instead: each client registers
//! its cast, then runs decision chains of 10 entries (request, two
//! assistant recommendations, five human approvals of a privileged
//! change, the execution intent through the gate, the outcome), each step
//! linking the answers of earlier ones.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use bytes::Bytes;
use clap::Parser;
use gatelog::tlog::merkle::leaf_hash;
use gatelog::tlog::note::NoteVerifier;
use gatelog::tlog::tlog_proof::TlogProof;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::{self, SendRequest};
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;

#[path = "loadgen/forged.rs"]
mod forged;
#[path = "loadgen/workflow.rs"]
mod workflow;

/// Load generator for a gatelog server.
#[derive(Parser, Debug)]
#[command(name = "gatelog-loadgen")]
struct Opts {
    /// The log's URL: http://HOST:PORT or https://HOST[:PORT].
    #[arg(long, default_value = "http://127.0.0.1:8080", value_parser = parse_log_url)]
    log: hyper::Uri,
    /// Trust the CAs in this PEM file for an https:// log, instead of the
    /// system's roots.
    #[arg(long, value_name = "FILE")]
    ca: Option<std::path::PathBuf>,
    /// A writer's bearer token (for a log with --writers).
    #[arg(long, value_name = "TOKEN")]
    token: Option<String>,
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
    /// Submit signed workflow chains (needs --admin-key) instead of
    /// opaque entries.
    #[arg(long, requires = "admin_key")]
    workflow: bool,
    /// The log's bootstrap admin private key, to register each client's
    /// cast and publish the policy the intents name.
    #[arg(long, value_name = "FILE")]
    admin_key: Option<std::path::PathBuf>,
    /// Workflow mode: meanwhile, this many entries/s with bad signatures
    /// in the admin's name, from the --forged-from addresses (the good
    /// clients' latency is what is measured).
    #[arg(
        long,
        default_value_t = 0,
        requires = "forged_from",
        requires = "workflow"
    )]
    forged_rate: u64,
    /// Workflow mode: each request asks for its access for this many
    /// seconds (rules version 5's time-bound grants: every executed chain
    /// then stays open, owing its de-provisioning); 0: permanent.
    #[arg(long, default_value_t = 0, requires = "workflow")]
    grant_seconds: u64,
    /// Local addresses the forged entries come from, comma-separated
    /// (e.g. 127.0.0.2,127.0.0.3 on loopback); plain http only.
    #[arg(long, value_delimiter = ',', value_name = "ADDR,...")]
    forged_from: Vec<std::net::IpAddr>,
}

#[derive(Default)]
struct Tally {
    ok: AtomicU64,
    /// Answered with an existing index (the entry was already logged).
    duplicates: AtomicU64,
    /// Execution intents the gate admitted (workflow mode).
    intents: AtomicU64,
    errors: AtomicU64,
    verified: AtomicU64,
    verify_failed: AtomicU64,
}

fn parse_log_url(url: &str) -> anyhow::Result<hyper::Uri> {
    gatelog::sys::client::parse_url(url)
}

/// One keep-alive connection to the log (HTTPS included).
struct Connection {
    sender: SendRequest<Full<Bytes>>,
    token: Option<String>,
}

async fn connect(opts: &Opts) -> anyhow::Result<Connection> {
    let stream = gatelog::sys::client::connect(&opts.log)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let (sender, conn) = http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    Ok(Connection {
        sender,
        token: opts.token.clone(),
    })
}

async fn request(
    conn: &mut Connection,
    method: Method,
    path: &str,
    body: Bytes,
) -> anyhow::Result<(u16, Bytes)> {
    let sender = &mut conn.sender;
    sender.ready().await?;
    let mut req = Request::builder()
        .method(method)
        .uri(path)
        .header("host", "gatelog");
    if let Some(token) = &conn.token {
        req = req.header("authorization", format!("Bearer {token}"));
    }
    let req = req.body(Full::new(body))?;
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

/// One client's connection and what it has measured.
struct Session {
    id: u64,
    sender: Connection,
    opts: Arc<Opts>,
    log: Arc<NoteVerifier>,
    tally: Arc<Tally>,
    latencies: Vec<u32>,
}

impl Session {
    async fn open(
        id: u64,
        opts: Arc<Opts>,
        log: Arc<NoteVerifier>,
        tally: Arc<Tally>,
    ) -> anyhow::Result<Session> {
        Ok(Session {
            id,
            sender: connect(&opts).await?,
            opts,
            log,
            tally,
            latencies: Vec::new(),
        })
    }

    /// Appends `entry`, due at `due`; its JSON answer if it was appended.
    /// Errors are counted; a broken connection is reopened.
    async fn append(
        &mut self,
        entry: Vec<u8>,
        due: Instant,
    ) -> anyhow::Result<Option<serde_json::Value>> {
        let tally = &self.tally;
        match request(
            &mut self.sender,
            Method::POST,
            "/v1/entries",
            Bytes::from(entry.clone()),
        )
        .await
        {
            Ok((200, body)) => {
                self.latencies
                    .push(due.elapsed().as_micros().min(u32::MAX as u128) as u32);
                let answer: serde_json::Value = serde_json::from_slice(&body)?;
                if answer["duplicate"] == true {
                    tally.duplicates.fetch_add(1, Relaxed);
                }
                let n = tally.ok.fetch_add(1, Relaxed);
                if n.is_multiple_of(self.opts.verify_every) {
                    match check_answer(&body, &entry, &self.log) {
                        Ok(()) => tally.verified.fetch_add(1, Relaxed),
                        Err(err) => {
                            eprintln!("proof check failed: {err:#}");
                            tally.verify_failed.fetch_add(1, Relaxed)
                        }
                    };
                }
                Ok(Some(answer))
            }
            Ok((status, body)) => {
                if tally.errors.fetch_add(1, Relaxed) < 5 {
                    eprintln!("HTTP {status}: {}", String::from_utf8_lossy(&body));
                }
                // Back off on overload rather than measure a retry storm.
                if status == 503 {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                Ok(None)
            }
            Err(err) => {
                tally.errors.fetch_add(1, Relaxed);
                eprintln!("client {}: {err:#}; reconnecting", self.id);
                tokio::time::sleep(Duration::from_millis(100)).await;
                self.sender = connect(&self.opts)
                    .await
                    .with_context(|| format!("client {}: giving up", self.id))?;
                Ok(None)
            }
        }
    }
}

/// When each request is due: now, or on this client's share of --rate.
struct Pacer {
    ticker: Option<tokio::time::Interval>,
    end: Instant,
}

impl Pacer {
    fn new(id: u64, opts: &Opts, start: Instant) -> Pacer {
        let ticker = (opts.rate > 0).then(|| {
            let period = Duration::from_secs_f64(opts.clients as f64 / opts.rate as f64);
            // Spread clients over one period so they do not fire together.
            let offset = period.mul_f64(id as f64 / opts.clients as f64);
            let mut t = tokio::time::interval_at((start + offset).into(), period);
            t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
            t
        });
        Pacer {
            ticker,
            end: start + Duration::from_secs(opts.duration),
        }
    }

    /// When the next request is due, or None when the run is over.
    /// Latency runs from then, so a slow answer also counts against the
    /// requests it delayed.
    async fn next(&mut self) -> Option<Instant> {
        let due = match &mut self.ticker {
            Some(t) => t.tick().await.into_std(),
            None => Instant::now(),
        };
        (due < self.end).then_some(due)
    }
}

async fn client(mut session: Session, start: Instant) -> anyhow::Result<Vec<u32>> {
    let mut pacer = Pacer::new(session.id, &session.opts, start);
    let mut seq = 0u64;
    while let Some(due) = pacer.next().await {
        let e = entry(session.id, seq, session.opts.entry_bytes);
        seq += 1;
        session.append(e, due).await?;
    }
    Ok(session.latencies)
}

fn b64(s: &str) -> Option<Vec<u8>> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.decode(s).ok()
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
    gatelog::sys::tls::configure_client(&gatelog::sys::tls::ClientTlsFiles {
        ca: opts.ca.clone(),
        ..Default::default()
    })?;
    let mut probe = connect(&opts).await?;
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
    let flood_tally = Arc::new(forged::FloodTally::default());
    let mut flood = None;
    let mut sessions = Vec::new();
    for id in 0..opts.clients {
        sessions.push(Session::open(id, opts.clone(), log.clone(), tally.clone()).await?);
    }
    let start;
    let tasks: Vec<_> = if opts.workflow {
        let admin = workflow::admin_key(opts.admin_key.as_deref().expect("clap requires it"))?;
        let setup = workflow::Setup::publish_policy(&mut sessions[0], &admin).await?;
        let casts: Vec<_> = sessions
            .into_iter()
            .map(|s| tokio::spawn(workflow::Cast::register(s, admin.clone(), setup.clone())))
            .collect();
        let mut ready = Vec::new();
        for c in casts {
            ready.push(c.await??);
        }
        println!("registered {} actors", ready.len() * workflow::CAST_SIZE);
        // Count only the measured run, not the set-up.
        tally.ok.store(0, Relaxed);
        tally.duplicates.store(0, Relaxed);
        start = Instant::now();
        if opts.forged_rate > 0 {
            let host = opts.log.host().context("--log without a host")?;
            let port = opts.log.port_u16().unwrap_or(80);
            let addr = tokio::net::lookup_host((host, port))
                .await?
                .next()
                .context("--log does not resolve")?;
            flood = Some(tokio::spawn(forged::flood(
                addr,
                log.name().to_string(),
                admin.clone(),
                opts.forged_from.clone(),
                opts.forged_rate,
                start + Duration::from_secs(opts.duration),
                flood_tally.clone(),
            )));
        }
        ready
            .into_iter()
            .map(|cast| tokio::spawn(cast.run(start)))
            .collect()
    } else {
        start = Instant::now();
        sessions
            .into_iter()
            .map(|s| tokio::spawn(client(s, start)))
            .collect()
    };
    let mut latencies = Vec::new();
    for t in tasks {
        latencies.extend(t.await??);
    }
    let elapsed = start.elapsed().as_secs_f64();
    if let Some(f) = flood {
        f.await??;
        println!(
            "forged entries sent: {} ({:.0}/s): refused 401: {}, throttled 429: {}, other: {}, connections closed: {}",
            flood_tally.sent.load(Relaxed),
            flood_tally.sent.load(Relaxed) as f64 / elapsed,
            flood_tally.refused.load(Relaxed),
            flood_tally.throttled.load(Relaxed),
            flood_tally.other.load(Relaxed),
            flood_tally.broken.load(Relaxed)
        );
    }
    latencies.sort_unstable();
    let pct = |p: f64| latencies[((latencies.len() as f64 * p) as usize).min(latencies.len() - 1)];
    let ok = tally.ok.load(Relaxed);
    println!(
        "appends ok: {ok} (of which already logged: {}), errors: {}",
        tally.duplicates.load(Relaxed),
        tally.errors.load(Relaxed)
    );
    if opts.workflow {
        println!(
            "execution intents admitted by the gate: {}",
            tally.intents.load(Relaxed)
        );
    }
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
