//! The commands that run a log, a witness or a monitor, and the
//! workflow client commands (`keygen`, `submit`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use base64::Engine;
use clap::{Args, ValueEnum};
use gatelog::access::cedar::CedarEngine;
use gatelog::access::entry;
use gatelog::observers::monitor::{Monitor, MonitorConfig, MonitorError};
use gatelog::observers::witness::http::{self as witness_routes, WitnessApp};
use gatelog::observers::witness::Witness;
use gatelog::server::gatekeeper::Gatekeeper;
use gatelog::server::http::{self, App, ServerConfig};
use gatelog::server::log::Log;
use gatelog::server::sequencer::{self, SequencerConfig};
use gatelog::server::witnessing::{WitnessConfig, Witnessing};
use gatelog::sys::keyfile;
use gatelog::tlog::note::{NoteSigner, NoteVerifier};

use super::parse_url;

#[derive(Args, Debug)]
pub struct KeygenArgs {
    /// The actor id the key belongs to (no spaces or '+').
    #[arg(long, value_name = "ACTOR")]
    pub id: String,
    /// Where to write the private key; the public key goes to FILE.pub.
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
}

#[derive(Args, Debug)]
pub struct SubmitArgs {
    /// The log's URL, e.g. http://127.0.0.1:8080.
    #[arg(long, value_name = "URL")]
    pub log: String,
    /// The signer's private key file (from `gatelog keygen`).
    #[arg(long, value_name = "FILE")]
    pub key: PathBuf,
    /// Where to save the tlog-proof bundle (default: STATEMENT with the
    /// extension .tlog-proof).
    #[arg(long, value_name = "FILE")]
    pub proof_out: Option<PathBuf>,
    /// Seconds to wait for the log's answer.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub timeout_secs: u64,
    /// The statement, in proto3 JSON ("-" reads standard input).
    pub statement: PathBuf,
}

#[derive(Args, Debug)]
pub struct MonitorArgs {
    /// The log's URL, e.g. http://127.0.0.1:8080.
    #[arg(long, value_name = "URL")]
    pub log: String,
    /// The log's verifier key.
    #[arg(long, value_name = "VKEY")]
    pub vkey: String,
    /// A peer monitor's URL; repeatable.
    #[arg(long = "peer", value_name = "URL")]
    pub peers: Vec<String>,
    /// Where the latest accepted checkpoint and any evidence go.
    #[arg(long, default_value = "./gatelog-monitor", value_name = "DIR")]
    pub data_dir: PathBuf,
    /// Where to serve the latest checkpoint to peers.
    #[arg(long, default_value = "127.0.0.1:8082", value_name = "ADDR")]
    pub listen: SocketAddr,
    /// Milliseconds between polls.
    #[arg(long, default_value_t = 1000, value_name = "MS", value_parser = clap::value_parser!(u64).range(10..=3_600_000))]
    pub poll_ms: u64,
    /// Shell command to run on a split view.
    #[arg(long, value_name = "CMD")]
    pub alert_command: Option<String>,
}

#[derive(Args, Debug)]
pub struct WitnessArgs {
    /// Where the witness keeps its key and its record of each log.
    #[arg(long, default_value = "./gatelog-witness", value_name = "DIR")]
    pub data_dir: PathBuf,
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:8081", value_name = "ADDR")]
    pub listen: SocketAddr,
    /// The witness's name (its key name). Default for a new witness:
    /// "<hostname>/witness"; an existing witness keeps its name.
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// Verifier key of a log to witness, "<origin>+<key id>+<key>";
    /// repeat for several logs (or several keys of one log).
    #[arg(long = "log", value_name = "VKEY", required = true)]
    pub logs: Vec<String>,
    /// Most concurrent connections; more wait to be accepted.
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u64).range(1..=1 << 20))]
    pub max_connections: u64,
    /// Seconds a client may take to send a request's headers, and its body.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub read_timeout_secs: u64,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Entries {
    /// Any bytes are an entry (a generic transparency log).
    Opaque,
    /// gatelog's signed workflow entries, checked by the gate.
    Gatelog,
}

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Where the database and the log key live.
    #[arg(long, default_value = "./gatelog-data", value_name = "DIR")]
    pub data_dir: PathBuf,
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:8080", value_name = "ADDR")]
    pub listen: SocketAddr,
    /// The log's origin (checkpoint first line and key name), e.g.
    /// "log.example.com/access". Default for a new log: "<hostname>/gatelog";
    /// an existing log keeps the origin it was created with.
    #[arg(long, value_name = "NAME")]
    pub origin: Option<String>,
    /// How request bodies are interpreted.
    #[arg(long, value_enum, default_value_t = Entries::Gatelog)]
    pub entries: Entries,
    /// A bootstrap admin's public key file (FILE.pub from `gatelog
    /// keygen`); repeatable. Admins register identities and publish
    /// policy. Default: DATA_DIR/admin.key.pub, generated (with its
    /// private key DATA_DIR/admin.key, id "admin") if missing.
    #[arg(long = "admin-key", value_name = "FILE")]
    pub admin_keys: Vec<PathBuf>,
    /// How far in the future a statement's issuedAt may be, and how far
    /// in the past an executionIntent's or breakGlass's, in seconds.
    #[arg(long, default_value_t = 300, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub max_clock_skew_secs: u64,
    /// Most entries sequenced in one batch (one fsync, one checkpoint).
    #[arg(long, default_value_t = 4096, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub max_batch_size: u64,
    /// Longest a batch waits for more entries after its first, in milliseconds.
    #[arg(long, default_value_t = 2, value_name = "MS", value_parser = clap::value_parser!(u64).range(0..=10_000))]
    pub max_batch_delay_ms: u64,
    /// Most submissions waiting to be sequenced; beyond it, appends get 503.
    #[arg(long, default_value_t = 65536, value_parser = clap::value_parser!(u64).range(1..=1 << 24))]
    pub max_pending: u64,
    /// Most entry bytes waiting to be sequenced; beyond it, appends get 503.
    #[arg(long, default_value_t = 256 << 20, value_parser = clap::value_parser!(u64).range(65536..=1 << 40))]
    pub max_pending_bytes: u64,
    /// Largest request body, in bytes; larger bodies get 413.
    #[arg(long, default_value_t = 65535, value_parser = clap::value_parser!(u64).range(1..=16 << 20))]
    pub max_body_bytes: u64,
    /// Largest entry, in bytes (entry bundles cap it at 65535); larger get 413.
    #[arg(long, default_value_t = 65535, value_parser = clap::value_parser!(u64).range(1..=65535))]
    pub max_entry_bytes: u64,
    /// Most concurrent connections; more wait to be accepted.
    #[arg(long, default_value_t = 4096, value_parser = clap::value_parser!(u64).range(1..=1 << 20))]
    pub max_connections: u64,
    /// Seconds a client may take to send a request's headers, and its body.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub read_timeout_secs: u64,
    /// A witness to ask for cosignatures after each checkpoint, as
    /// NAME=URL+VKEY (e.g. w1=http://127.0.0.1:8081+<its verifier key>);
    /// repeatable. /checkpoint then carries the cosignatures gathered.
    #[arg(long = "witness", value_name = "NAME=URL+VKEY")]
    pub witnesses: Vec<String>,
    /// Cosignatures an append waits for before it is answered (0: do not
    /// wait). /checkpoint then serves the latest checkpoint with a quorum.
    #[arg(long, default_value_t = 0)]
    pub witness_quorum: usize,
    /// Longest a round waits for a witness, in milliseconds; an append
    /// waits up to twice this for the quorum, then gets 503.
    #[arg(long, default_value_t = 2000, value_name = "MS", value_parser = clap::value_parser!(u64).range(10..=600_000))]
    pub witness_timeout_ms: u64,
}

pub(super) fn monitor(args: MonitorArgs) -> anyhow::Result<ExitCode> {
    let config = MonitorConfig {
        log: parse_url(&args.log)?,
        key: NoteVerifier::parse(&args.vkey).with_context(|| format!("--vkey {:?}", args.vkey))?,
        peers: args
            .peers
            .iter()
            .map(|p| parse_url(p))
            .collect::<anyhow::Result<_>>()?,
        data_dir: args.data_dir.clone(),
        poll: Duration::from_millis(args.poll_ms),
    };
    let monitor = Arc::new(Monitor::open(config)?);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let stopped = runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("listening on {}", args.listen))?;
        println!(
            "gatelog: monitor of {} with {} peer(s)",
            args.log,
            args.peers.len()
        );
        println!("gatelog: listening on http://{}", listener.local_addr()?);
        let served = monitor.clone();
        let handler = move |req: hyper::Request<hyper::body::Incoming>| {
            let served = served.clone();
            async move { gatelog::observers::monitor::http::handle(&served, req) }
        };
        let limits = http::HttpLimits {
            max_connections: 256,
            read_timeout: Duration::from_secs(30),
        };
        let mut serving = tokio::spawn(http::serve_http(
            listener,
            limits,
            handler,
            shutdown_signal(),
        ));
        tokio::select! {
            r = &mut serving => { r??; anyhow::Ok(None) }
            e = monitor.clone().run() => {
                alert(&e, args.alert_command.as_deref());
                // Keep serving a little: peers may not have seen the view
                // that split from theirs yet.
                tokio::time::sleep(Duration::from_millis(2 * args.poll_ms).min(Duration::from_secs(10))).await;
                Ok(Some(e))
            }
        }
    })?;
    runtime.shutdown_timeout(Duration::from_secs(1));
    let Some(e) = stopped else {
        return Ok(ExitCode::SUCCESS);
    };
    match e {
        MonitorError::SplitView { .. } => Ok(ExitCode::from(3)),
        other => Err(other.into()),
    }
}

/// Reports a monitor's stop loudly and runs the alert command.
fn alert(e: &MonitorError, command: Option<&str>) {
    eprintln!("gatelog: ALERT: {e}");
    if let (MonitorError::SplitView { path, .. }, Some(cmd)) = (e, command) {
        let status = std::process::Command::new("sh")
            .args(["-c", cmd])
            .env("GATELOG_EQUIVOCATION", path)
            .status();
        if let Err(err) = status {
            eprintln!("gatelog: --alert-command failed to start: {err}");
        }
    }
}

pub(super) fn witness(args: WitnessArgs) -> anyhow::Result<()> {
    let logs = args
        .logs
        .iter()
        .map(|v| NoteVerifier::parse(v).with_context(|| format!("--log {v:?}")))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let witness = Witness::open(&args.data_dir, args.name.as_deref(), logs)
        .with_context(|| format!("opening the witness in {}", args.data_dir.display()))?;
    let read_timeout = Duration::from_secs(args.read_timeout_secs);
    let app = Arc::new(WitnessApp {
        witness,
        read_timeout,
    });
    let limits = http::HttpLimits {
        max_connections: args.max_connections as usize,
        read_timeout,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("listening on {}", args.listen))?;
        let addr = listener.local_addr()?;
        println!(
            "gatelog: witness {} for {} log key(s)",
            app.witness.verifier().name(),
            args.logs.len()
        );
        println!("gatelog: verifier key {}", app.witness.verifier().to_vkey());
        println!("gatelog: listening on http://{addr}");
        let handler = move |req| {
            let app = app.clone();
            async move { witness_routes::handle(&app, req).await }
        };
        http::serve_http(listener, limits, handler, shutdown_signal()).await?;
        println!("gatelog: shutting down");
        anyhow::Ok(())
    })
}

/// A new key pair for `id`.
fn new_actor_key(id: &str) -> anyhow::Result<NoteSigner> {
    use rand_core::{OsRng, RngCore};
    let mut seed = [0u8; 32];
    OsRng.fill_bytes(&mut seed);
    NoteSigner::from_seed(id, seed).map_err(|e| anyhow::anyhow!("--id {id:?}: {e}"))
}

/// FILE.pub beside FILE.
fn pub_path(key: &Path) -> PathBuf {
    let mut p = key.as_os_str().to_owned();
    p.push(".pub");
    PathBuf::from(p)
}

/// Writes `key` to `out` (0600) and its verifier key to `out`.pub.
fn write_key_pair(key: &NoteSigner, out: &Path) -> anyhow::Result<()> {
    keyfile::write_secret(out, &key.to_private_key_string())
        .with_context(|| format!("writing {}", out.display()))?;
    let public = pub_path(out);
    std::fs::write(&public, format!("{}\n", key.verifier().to_vkey()))
        .with_context(|| format!("writing {}", public.display()))?;
    Ok(())
}

pub(super) fn keygen(args: &KeygenArgs) -> anyhow::Result<()> {
    for path in [args.out.clone(), pub_path(&args.out)] {
        if path.exists() {
            anyhow::bail!(
                "{} exists; keygen never overwrites a key: choose another --out or remove it",
                path.display()
            );
        }
    }
    let key = new_actor_key(&args.id)?;
    write_key_pair(&key, &args.out)?;
    let public = key.verifier().public_key();
    println!("private key: {} (mode 0600)", args.out.display());
    println!("public key:  {}", pub_path(&args.out).display());
    println!("key id:      {:08x}", key.key_id());
    println!(
        "publicKey for an identityRegistration: {}",
        base64::engine::general_purpose::STANDARD.encode(public)
    );
    Ok(())
}

/// Reads a private key file written by `keygen`.
fn read_private_key(path: &Path) -> anyhow::Result<NoteSigner> {
    let text = keyfile::read_secret(path).with_context(|| format!("reading {}", path.display()))?;
    NoteSigner::parse(text.trim()).map_err(|e| {
        anyhow::anyhow!(
            "{}: not a gatelog private key ({e}); make one with `gatelog keygen`",
            path.display()
        )
    })
}

/// Reads a public key file (FILE.pub) written by `keygen`.
fn read_public_key(path: &Path) -> anyhow::Result<NoteVerifier> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    if text.starts_with("PRIVATE+KEY+") {
        anyhow::bail!(
            "{} is a private key; pass the public one ({})",
            path.display(),
            pub_path(path).display()
        );
    }
    NoteVerifier::parse(text.trim())
        .map_err(|e| anyhow::anyhow!("{}: not a gatelog public key: {e}", path.display()))
}

/// The bootstrap admins: the --admin-key files, or DATA_DIR/admin.key.pub
/// (generated on first start).
fn admin_keys(args: &ServeArgs) -> anyhow::Result<Vec<NoteVerifier>> {
    if !args.admin_keys.is_empty() {
        let keys = args
            .admin_keys
            .iter()
            .map(|p| read_public_key(p).with_context(|| "--admin-key".to_string()))
            .collect::<anyhow::Result<Vec<_>>>()?;
        for (i, k) in keys.iter().enumerate() {
            if keys[..i].iter().any(|o| o.name() == k.name()) {
                anyhow::bail!("two --admin-key files name the admin {:?}", k.name());
            }
        }
        return Ok(keys);
    }
    let private = args.data_dir.join("admin.key");
    let public = pub_path(&private);
    if !public.exists() {
        let key = new_actor_key("admin")?;
        write_key_pair(&key, &private)?;
        println!(
            "gatelog: generated the bootstrap admin key {} (id admin); sign admin statements with it",
            private.display()
        );
    }
    Ok(vec![read_public_key(&public)?])
}

pub(super) fn submit(args: &SubmitArgs) -> anyhow::Result<ExitCode> {
    use gatelog::access::entry::{self, statement_from_json, timestamp};
    use prost::Message;
    let log = parse_url(&args.log)?;
    let key = read_private_key(&args.key)?;
    let json = if args.statement.as_os_str() == "-" {
        std::io::read_to_string(std::io::stdin()).context("reading standard input")?
    } else {
        std::fs::read_to_string(&args.statement)
            .with_context(|| format!("reading {}", args.statement.display()))?
    };
    let mut statement = statement_from_json(&json)
        .map_err(|e| anyhow::anyhow!("{}: {e}", args.statement.display()))?;
    if statement.issued_at.is_none() {
        statement.issued_at = Some(timestamp(gatelog::sys::clock::now_ms()));
    }
    let signed = entry::sign(&key, &statement).encode_to_vec();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let timeout = Duration::from_secs(args.timeout_secs);
    let (status, body) = runtime
        .block_on(gatelog::sys::client::http_request(
            hyper::Method::POST,
            &log,
            "/v1/entries",
            signed.into(),
            timeout,
        ))
        .map_err(|e| anyhow::anyhow!("submitting to {}: {e}", args.log))?;
    let answer: serde_json::Value = serde_json::from_slice(&body)
        .unwrap_or_else(|_| serde_json::Value::String(String::from_utf8_lossy(&body).into_owned()));
    let pretty = serde_json::to_string_pretty(&answer).unwrap_or_default();
    if status != 200 {
        eprintln!("gatelog: the log refused the statement (HTTP {status}):");
        eprintln!("{pretty}");
        return Ok(ExitCode::FAILURE);
    }
    println!("{pretty}");
    let proof_out = args.proof_out.clone().unwrap_or_else(|| {
        if args.statement.as_os_str() == "-" {
            PathBuf::from("statement.tlog-proof")
        } else {
            args.statement.with_extension("tlog-proof")
        }
    });
    let proof = answer["proof"].as_str().unwrap_or_default();
    std::fs::write(&proof_out, proof)
        .with_context(|| format!("writing {}", proof_out.display()))?;
    eprintln!(
        "gatelog: tlog-proof bundle saved to {}",
        proof_out.display()
    );
    Ok(ExitCode::SUCCESS)
}

pub(super) fn serve(args: ServeArgs) -> anyhow::Result<()> {
    if matches!(args.entries, Entries::Opaque) && !args.admin_keys.is_empty() {
        anyhow::bail!("--admin-key needs --entries gatelog: an opaque log has no identities");
    }
    let witnesses = args
        .witnesses
        .iter()
        .map(|w| WitnessConfig::parse(w).map_err(|e| anyhow::anyhow!("--witness {w:?}: {e}")))
        .collect::<anyhow::Result<Vec<_>>>()?;
    for (i, w) in witnesses.iter().enumerate() {
        // One key is one cosigner (the Ed25519 cosignature does not commit
        // to a name): counting it twice would fake a quorum.
        if witnesses[..i]
            .iter()
            .any(|o| o.name == w.name || o.key.public_key() == w.key.public_key())
        {
            anyhow::bail!(
                "--witness {:?} repeats the name or key of another --witness",
                w.name
            );
        }
    }
    if args.witness_quorum > witnesses.len() {
        anyhow::bail!(
            "--witness-quorum {} needs at least that many --witness (got {})",
            args.witness_quorum,
            witnesses.len()
        );
    }
    let witness_timeout = Duration::from_millis(args.witness_timeout_ms);
    let log = Log::open(&args.data_dir, args.origin.as_deref())
        .with_context(|| format!("opening the log in {}", args.data_dir.display()))?;
    let log = Arc::new(log);
    let (gate, admission) = match args.entries {
        Entries::Opaque => (None, None),
        Entries::Gatelog => {
            let admins = admin_keys(&args)?;
            let names: Vec<&str> = admins.iter().map(|a| a.name()).collect();
            println!(
                "gatelog: gatelog entries, bootstrap admin(s): {}",
                names.join(", ")
            );
            let keeper = Gatekeeper::open(log.clone(), admins, Box::new(CedarEngine::default()))
                .context("rebuilding the gate's state from the log")?;
            let skew = args.max_clock_skew_secs as i64 * 1000;
            let gate = http::Gate {
                state: keeper.state(),
                limits: entry::Limits {
                    max_future_ms: skew,
                    max_backdate_ms: skew,
                },
            };
            (
                Some(gate),
                Some(Box::new(keeper) as Box<dyn sequencer::Admission>),
            )
        }
    };
    let (handle, sequencer_thread) = sequencer::start(
        log.clone(),
        SequencerConfig {
            max_batch_size: args.max_batch_size as usize,
            max_batch_delay: Duration::from_millis(args.max_batch_delay_ms),
            max_pending: args.max_pending as usize,
            max_pending_bytes: args.max_pending_bytes as usize,
        },
        admission,
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let witnessing = (!witnesses.is_empty()).then(|| {
        let _in_runtime = runtime.enter();
        Witnessing::start(log.clone(), witnesses, args.witness_quorum, witness_timeout)
    });
    let app = Arc::new(App {
        log: log.clone(),
        sequencer: handle,
        witnessing,
        config: ServerConfig {
            max_body_bytes: args.max_body_bytes as usize,
            max_entry_bytes: args.max_entry_bytes as usize,
            max_connections: args.max_connections as usize,
            read_timeout: Duration::from_secs(args.read_timeout_secs),
            witness_timeout,
        },
        gate,
    });
    // The sequencer ends only on shutdown or a storage failure; in the
    // latter case the server stops too, so a supervisor restarts it and the
    // restart re-checks storage.
    let mut sequencer_ended = runtime.spawn_blocking(move || sequencer_thread.join());
    let failure = runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("listening on {}", args.listen))?;
        let addr = listener.local_addr()?;
        let head = log.head();
        println!(
            "gatelog: log {} with {} entries in {}",
            log.origin(),
            head.size,
            args.data_dir.display()
        );
        println!("gatelog: verifier key {}", log.verifier().to_vkey());
        println!("gatelog: listening on http://{addr}");
        tokio::select! {
            served = http::serve(listener, app, shutdown_signal()) => {
                served?;
                println!("gatelog: shutting down");
                anyhow::Ok(None)
            }
            ended = &mut sequencer_ended => Ok(Some(match ended {
                Ok(Ok(Err(e))) => anyhow::anyhow!("sequencer stopped: {e}"),
                _ => anyhow::anyhow!("sequencer stopped unexpectedly"),
            })),
        }
    })?;
    // Dropping the runtime drops every connection and with them the last
    // sequencer handles; the sequencer then drains its queue and exits.
    runtime.shutdown_timeout(Duration::from_secs(5));
    match failure {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("installing SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
