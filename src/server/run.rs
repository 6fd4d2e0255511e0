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
use crate::server::gatekeeper::{max_refusable_entry_bytes, Gatekeeper};
use crate::server::http::{serve as serve_http_api, App, Gate, ServerConfig};
use crate::server::log::Log;
use crate::server::sequencer::{self, Admission, SequencerConfig};
use crate::server::witnessing::{WitnessConfig, Witnessing};
use crate::sys::keyfile;
use crate::sys::shutdown_signal;

/// What `gatelog serve` runs (its flags).
#[derive(Debug)]
pub struct ServeConfig {
    /// RocksDB and the log key.
    pub data_dir: PathBuf,
    /// Where the HTTP API listens.
    pub listen: SocketAddr,
    /// The log's origin; None: `<hostname>/gatelog`.
    pub origin: Option<String>,
    /// Signed workflow entries through the gate, or any bytes (opaque).
    pub gatelog_entries: bool,
    /// The bootstrap admins' public key files; none: DATA_DIR/admin.key.pub.
    pub admin_key_files: Vec<PathBuf>,
    /// How far a statement may be dated ahead, or an intent back.
    pub max_clock_skew: Duration,
    /// Batching and queue limits.
    pub sequencer: SequencerConfig,
    /// The HTTP layer's limits.
    pub http: ServerConfig,
    /// Witnesses to ask, as NAME=URL+VKEY.
    pub witnesses: Vec<String>,
    /// Cosignatures an append waits for.
    pub witness_quorum: usize,
}

pub fn serve(mut args: ServeConfig) -> anyhow::Result<()> {
    if !args.gatelog_entries && !args.admin_key_files.is_empty() {
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
    let witness_timeout = args.http.witness_timeout;
    let log = Log::open(&args.data_dir, args.origin.as_deref())
        .with_context(|| format!("opening the log in {}", args.data_dir.display()))?;
    check_entry_mode(&args.data_dir, args.gatelog_entries)?;
    let log = Arc::new(log);
    let (gate, admission) = match args.gatelog_entries {
        false => (None, None),
        true => {
            let admins = if args.admin_key_files.is_empty() {
                keyfile::bootstrap_admin(&args.data_dir)?
            } else {
                keyfile::read_admin_keys(&args.admin_key_files).context("--admin-key")?
            };
            let names: Vec<&str> = admins.iter().map(|a| a.name()).collect();
            println!(
                "gatelog: gatelog entries, bootstrap admin(s): {}",
                names.join(", ")
            );
            // Every refused entry is recorded whole inside a refusal
            // record, which must fit an entry bundle too.
            let refusable = max_refusable_entry_bytes(log.signer());
            args.http.max_entry_bytes = args.http.max_entry_bytes.min(refusable);
            let keeper = Gatekeeper::open(log.clone(), admins, Box::new(CedarEngine::default()))
                .context("rebuilding the gate's state from the log")?;
            let skew = args.max_clock_skew.as_millis() as i64;
            let gate = Gate {
                state: keeper.state(),
                limits: entry::Limits {
                    max_future_ms: skew,
                    max_backdate_ms: skew,
                },
            };
            (Some(gate), Some(Box::new(keeper) as Box<dyn Admission>))
        }
    };
    let (handle, sequencer_thread) = sequencer::start(log.clone(), args.sequencer, admission);
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
        config: args.http,
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
            served = serve_http_api(listener, app, shutdown_signal()) => {
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
