//! Running the log server: opens the log, rebuilds the gate from it,
//! starts the sequencer, the witness rounds and the HTTP API, and serves
//! until SIGINT or SIGTERM (or until storage fails, so that a supervisor
//! restarts it and the restart re-checks storage).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

use crate::access::cedar::CedarEngine;
use crate::access::entry;
use crate::access::gate;
use crate::server::gatekeeper::{max_refusable_entry_bytes, GateConfig, Gatekeeper};
use crate::server::http::quota::{Quotas, Rate};
use crate::server::http::signatures::BatchVerifier;
use crate::server::http::writers::Writers;
use crate::server::http::{serve as serve_http_api, App, Gate, ServerConfig};
use crate::server::log::Log;
use crate::server::sequencer::{self, Admission, SequencerConfig};
use crate::server::store::postgres::{PgOptions, PgStore};
use crate::server::store::LogStore;
use crate::server::witnessing::{WitnessConfig, Witnessing};
use crate::sys::keyfile;
use crate::sys::shutdown_signal;
use crate::tlog::note::NoteSigner;

/// Where the log lives.
#[derive(Debug)]
pub enum StoreChoice {
    /// RocksDB in DATA_DIR/db, with the key in DATA_DIR/log.key: one node.
    Embedded,
    /// PostgreSQL, shared by several nodes that each hold the log's key.
    Postgres {
        url: String,
        log_key: PathBuf,
        options: PgOptions,
    },
}

/// What `gatelog serve` runs (its flags).
#[derive(Debug)]
pub struct ServeConfig {
    /// Where the log lives.
    pub store: StoreChoice,
    /// RocksDB and the log key (with PostgreSQL: this node's own files).
    pub data_dir: PathBuf,
    /// Where the HTTP API listens.
    pub listen: SocketAddr,
    /// The log's origin; None: `<hostname>/gatelog`.
    pub origin: Option<String>,
    /// Signed workflow entries through the gate, or any bytes (opaque).
    pub gatelog_entries: bool,
    /// The bootstrap admins' public key files, for a new log or the
    /// upgrade of an old one; none: DATA_DIR/admin.key.pub if it exists.
    pub admin_key_files: Vec<PathBuf>,
    /// M of the N bootstrap admins, for a new log.
    pub admin_threshold: u32,
    /// Development mode: a generated admin key and a default policy.
    pub dev: bool,
    /// How far a statement's issuedAt may be from the log's time.
    pub max_clock_skew: Duration,
    /// How often, at most, the log records its time.
    pub log_time_resolution: Duration,
    /// The newest statements the gate keeps in memory.
    pub gate_statement_cache: usize,
    /// Batching and queue limits.
    pub sequencer: SequencerConfig,
    /// The HTTP layer's limits.
    pub http: ServerConfig,
    /// Witnesses to ask, as NAME=URL+VKEY.
    pub witnesses: Vec<String>,
    /// Cosignatures an append waits for.
    pub witness_quorum: usize,
    /// The writers file (`--writers`), if any.
    pub writers_file: Option<PathBuf>,
    /// Whether appends without a named writer are taken; None: yes for
    /// gatelog entries (their signatures name the writer), no for opaque.
    pub anonymous_writes: Option<bool>,
    /// Appends per second (and burst) per client address.
    pub address_rate: Rate,
    /// Appends per second (and burst) per proven writer.
    pub writer_rate: Rate,
    /// Most token buckets each quota keeps.
    pub max_quota_keys: usize,
}

pub fn serve(mut args: ServeConfig) -> anyhow::Result<()> {
    if !args.gatelog_entries && !args.admin_key_files.is_empty() {
        anyhow::bail!("--admin-key needs --entries gatelog: an opaque log has no identities");
    }
    for (flag, rate) in [("address", args.address_rate), ("writer", args.writer_rate)] {
        if !(rate.per_second >= 0.0 && rate.per_second.is_finite())
            || (rate.per_second > 0.0 && !(rate.burst >= 1.0 && rate.burst.is_finite()))
        {
            anyhow::bail!(
                "--{flag}-rate must be 0 (no limit) or more, with --{flag}-burst at least 1"
            );
        }
    }
    let anonymous = args.anonymous_writes.unwrap_or(args.gatelog_entries);
    let writers = match &args.writers_file {
        Some(path) => Writers::load(path, anonymous)?,
        None => Writers::anonymous(anonymous),
    };
    if writers.has_certificates() && !args.http.http.client_certificates {
        anyhow::bail!("--writers names writers by certificate (cert-sha256), which needs HTTPS with --tls-client-ca");
    }
    if writers.has_tokens() && args.http.http.tls.is_none() {
        tracing::warn!("--writers names writers by token, but the server speaks plain HTTP: tokens cross the network in clear; serve HTTPS (--tls-cert, --tls-key) unless every writer is on this host");
    }
    if !anonymous && writers.is_empty() {
        tracing::warn!("no writers: this log takes no appends (give --writers FILE, or --anonymous-writes yes)");
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
    let witness_timeout = args.http.witness_timeout;
    let scheme = args.http.http.scheme();
    let log = Arc::new(open_log(&args)?);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let (gate, admission) = match args.gatelog_entries {
        false => (None, None),
        true => {
            let config = gate_config(&args, &log)?;
            // Every refused entry is recorded whole inside a refusal
            // record, which must fit an entry bundle too.
            let refusable = max_refusable_entry_bytes(log.signer());
            args.http.max_entry_bytes = args.http.max_entry_bytes.min(refusable);
            let flagged = !args.admin_key_files.is_empty();
            let keeper = Gatekeeper::open(log.clone(), config, Box::new(CedarEngine::default()))
                .context("rebuilding the gate's state from the log")?;
            {
                let state = keeper.state();
                let state = state.read().expect("gate state lock");
                let names: Vec<String> = state.admins().map(|a| a.name().to_string()).collect();
                match state.params().index {
                    Some(at) if flagged => anyhow::bail!(
                        "the admin set of this log is in the log (entry {at}); --admin-key only names the bootstrap admins of a new log"
                    ),
                    Some(_) => println!(
                        "gatelog: gatelog entries, rules version {}, admins (from the log): {}",
                        state.rules_version(),
                        names.join(", ")
                    ),
                    None if names.is_empty() => anyhow::bail!(
                        "{} needs its bootstrap admins, which its first entry records: --admin-key FILE.pub (from `gatelog keygen`), or --dev for a development log",
                        if log.head().size == 0 { "a new log" } else { "a log moving to rules version 2" }
                    ),
                    None => println!(
                        "gatelog: gatelog entries; recording rules version {} and bootstrap admin(s) {}",
                        gate::RULES_VERSION,
                        names.join(", ")
                    ),
                }
            }
            let skew = args.max_clock_skew.as_millis() as i64;
            let gate = Gate {
                dry_runs: std::sync::Mutex::new(Box::new(CedarEngine::default())),
                log_time_resolution_ms: args.log_time_resolution.as_millis() as i64,
                signatures: BatchVerifier::start(log.clone()),
                keys: keeper.keys(),
                state: keeper.state(),
                limits: entry::Limits {
                    max_future_ms: skew,
                    max_backdate_ms: skew,
                },
            };
            (Some(gate), Some(Box::new(keeper) as Box<dyn Admission>))
        }
    };
    let (handle, sequencer_thread) = sequencer::start(log.clone(), args.sequencer, admission)
        .context("appending the log's opening records")?;
    if args.gatelog_entries {
        if let Some(genesis) = log.store().entry(0)? {
            println!(
                "gatelog: genesis entry digest {} (pin it: gatelog audit --genesis)",
                crate::tlog::merkle::hex(&crate::tlog::merkle::leaf_hash(&genesis))
            );
        }
    }
    let witnessing = (!witnesses.is_empty()).then(|| {
        let _in_runtime = runtime.enter();
        Witnessing::start(log.clone(), witnesses, args.witness_quorum, witness_timeout)
    });
    let app = Arc::new(App {
        log: log.clone(),
        sequencer: handle,
        witnessing,
        config: args.http,
        gate,
        writers: std::sync::RwLock::new(Arc::new(writers)),
        quotas: Quotas::new(args.address_rate, args.writer_rate, args.max_quota_keys),
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
            log.store().describe()
        );
        println!("gatelog: verifier key {}", log.verifier().to_vkey());
        println!("gatelog: listening on {scheme}://{addr}");
        if let Some(path) = args.writers_file.clone() {
            tokio::spawn(reload_writers_on_sighup(app.clone(), path, anonymous));
        }
        let witnessing = app.witnessing.clone();
        tokio::select! {
            served = serve_http_api(listener, app, shutdown_signal()) => {
                served?;
                println!("gatelog: shutting down");
                if let Some(w) = witnessing {
                    w.resign(&log).await;
                }
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

/// Opens the log where `--store` says, checking it holds the kind of
/// entries this server takes.
fn open_log(args: &ServeConfig) -> anyhow::Result<Log> {
    let mode = if args.gatelog_entries {
        "gatelog"
    } else {
        "opaque"
    };
    match &args.store {
        StoreChoice::Embedded => {
            let log = Log::open(&args.data_dir, args.origin.as_deref())
                .with_context(|| format!("opening the log in {}", args.data_dir.display()))?;
            check_entry_mode(&args.data_dir, args.gatelog_entries)?;
            Ok(log)
        }
        StoreChoice::Postgres {
            url,
            log_key,
            options,
        } => {
            std::fs::create_dir_all(&args.data_dir)
                .with_context(|| format!("creating {}", args.data_dir.display()))?;
            let store = PgStore::connect(url, options.clone()).context("the PostgreSQL store")?;
            store.check_entry_mode(mode)?;
            let describe = store.describe();
            let served = args.data_dir.join("served-checkpoint");
            Log::open_shared(Box::new(store), log_key, args.origin.as_deref(), &served)
                .with_context(|| format!("opening the log in {describe}"))
        }
    }
}

/// The gate's configuration from the flags: the bootstrap admins (from
/// --admin-key, the development key, or DATA_DIR/admin.key.pub of a log
/// made by an older release), and for a new development log a default
/// policy signed by the development admin.
fn gate_config(args: &ServeConfig, log: &Log) -> anyhow::Result<GateConfig> {
    let dev = if args.dev {
        eprintln!("gatelog: DEVELOPMENT MODE: the admin key is in the data dir; never use this for a real log");
        Some(keyfile::dev_admin(&args.data_dir)?)
    } else {
        None
    };
    let admins = if !args.admin_key_files.is_empty() {
        keyfile::read_admin_keys(&args.admin_key_files).context("--admin-key")?
    } else if let Some(key) = &dev {
        vec![key.verifier()]
    } else {
        keyfile::legacy_admin(&args.data_dir)?
    };
    if args.admin_threshold as usize > admins.len().max(1) {
        anyhow::bail!(
            "--admin-threshold {} needs at least that many --admin-key (got {})",
            args.admin_threshold,
            admins.len()
        );
    }
    let skew = args.max_clock_skew.as_millis() as i64;
    let genesis = match &dev {
        Some(key) if log.head().size == 0 => vec![dev_policy(key, log.origin())],
        _ => vec![],
    };
    Ok(GateConfig {
        admins,
        admin_threshold: args.admin_threshold,
        max_clock_skew_ms: skew,
        log_time_resolution_ms: args.log_time_resolution.as_millis() as i64,
        statement_cache: args
            .gate_statement_cache
            .max(args.sequencer.max_batch_size + 64),
        genesis,
    })
}

/// A development log's default policy: permit every execution the rules
/// allow (at least one human approval, or a break-glass).
fn dev_policy(admin: &NoteSigner, origin: &str) -> Vec<u8> {
    use prost::Message;
    let st = entry::build::publish_policy(
        &entry::build::human(admin.name()),
        "default",
        1,
        DEV_POLICY,
        0,
        crate::sys::clock::now_ms(),
    );
    entry::sign(admin, &entry::build::for_log(st, origin)).encode_to_vec()
}

/// The Cedar of a development log's default policy.
pub const DEV_POLICY: &str = "permit(principal, action == Action::\"execute\", resource)\nwhen { context.human_approvals >= 1 || context.break_glass };\n";

/// The entry mode is part of a log: a gatelog log served with `--entries
/// opaque` would take entries the gate never saw. It is recorded in
/// DATA_DIR/entries on the first start (also the first start of a log made
/// before the mode was recorded), durably, and checked on every later one.
fn check_entry_mode(data_dir: &Path, gatelog_entries: bool) -> anyhow::Result<()> {
    let want = if gatelog_entries { "gatelog" } else { "opaque" };
    let path = data_dir.join("entries");
    match std::fs::read_to_string(&path) {
        Ok(held) if held.trim() == want => Ok(()),
        Ok(held) => anyhow::bail!(
            "{} holds a log of {} entries (see {}); it cannot be served with --entries {want}",
            data_dir.display(),
            held.trim(),
            path.display()
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let tmp = data_dir.join("entries.tmp");
            let written = std::fs::write(&tmp, format!("{want}\n"))
                .and_then(|()| std::fs::File::open(&tmp)?.sync_all())
                .and_then(|()| std::fs::rename(&tmp, &path))
                .and_then(|()| keyfile::sync_dir(data_dir));
            written.with_context(|| format!("recording the entry mode in {}", path.display()))
        }
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// Reads the writers file again on each SIGHUP, so a writer is added or
/// cut off without a restart. A file that does not parse changes nothing
/// (the error is logged): the writers in force stay.
async fn reload_writers_on_sighup(app: Arc<App>, path: PathBuf, anonymous: bool) {
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(mut hup) = signal(SignalKind::hangup()) else {
        tracing::warn!("cannot install a SIGHUP handler: the writers file is read only at start");
        return;
    };
    while hup.recv().await.is_some() {
        match Writers::load(&path, anonymous) {
            Ok(w) if w.has_certificates() && !app.config.http.client_certificates => {
                tracing::error!(path = %path.display(), "writers file not reloaded: it names certificates, and this server asks for none (--tls-client-ca)");
            }
            Ok(w) => {
                tracing::info!(path = %path.display(), writers = w.len(), "writers file reloaded");
                *app.writers.write().expect("writers lock") = Arc::new(w);
            }
            Err(e) => {
                tracing::error!(error = %format!("{e:#}"), "writers file not reloaded; the writers in force stay")
            }
        }
    }
}
