//! Command-line interface: flags into configuration, then one library
//! call. `server` holds what runs a log, witness or monitor (feature
//! "server"), `submit` the workflow client; `verify` what an auditor runs
//! (feature "verifier").

mod access;
mod audit;
#[cfg(feature = "server")]
mod db;
#[cfg(feature = "server")]
mod server;
#[cfg(feature = "server")]
mod submit;
mod verify;

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};

/// gatelog: a transparency log for access changes.
///
/// `serve` runs the log: signed workflow statements pass its gate (an
/// execution is admitted only when its decision chain authorises it) and
/// go into an RFC 6962 Merkle tree in RocksDB, with C2SP checkpoints,
/// tiles and proofs. `keygen` and `submit` are the workflow client.
/// `witness` cosigns a log's checkpoints; `monitor` follows a log, gossips
/// to catch split views and reports overdue break-glass reviews. `verify`,
/// `mirror` and `audit` are the auditor's tools (they alone build with
/// `--no-default-features --features verifier`).
#[derive(Parser, Debug)]
#[command(name = "gatelog", version, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
    #[command(flatten)]
    tls: ClientTlsArgs,
}

/// How every command connects to `https://` services (a log, a witness, a
/// peer monitor).
#[derive(Args, Debug)]
struct ClientTlsArgs {
    /// Trust the CAs in this PEM file instead of the system's roots, for
    /// every https:// URL this command connects to. A server whose
    /// certificate does not chain to them, or does not name the URL's
    /// host, is refused.
    #[arg(long, global = true, value_name = "FILE")]
    ca: Option<std::path::PathBuf>,
    /// A client certificate (PEM) to present, for logs that authenticate
    /// writers by mutual TLS; with --client-key.
    #[arg(long, global = true, value_name = "FILE", requires = "client_key")]
    client_cert: Option<std::path::PathBuf>,
    /// The client certificate's private key (PEM, mode 0600).
    #[arg(long, global = true, value_name = "FILE", requires = "client_cert")]
    client_key: Option<std::path::PathBuf>,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the log server.
    ///
    /// On first start it creates the data directory, generates the log's
    /// Ed25519 key (DATA_DIR/log.key, mode 0600) and signs a checkpoint of
    /// the empty tree. Later starts reuse both, after checking that the
    /// stored tiles reproduce the stored checkpoint.
    ///
    /// By default (--entries gatelog) every entry is a signed workflow
    /// statement that must pass the gate. A new log records its admins
    /// (--admin-key FILE.pub, from `gatelog keygen`) in its first entry;
    /// --dev instead makes a development admin key, DATA_DIR/admin.key,
    /// and a default policy.
    ///
    /// Try it:
    ///   gatelog serve --dev
    ///   tools/demo --admin-key gatelog-data/admin.key
    ///   curl http://127.0.0.1:8080/checkpoint
    ///   curl http://127.0.0.1:8080/v1/obligations
    #[cfg(feature = "server")]
    #[command(verbatim_doc_comment)]
    Serve(Box<server::ServeArgs>),
    /// Run a C2SP tlog-witness for one or more logs.
    ///
    /// The witness cosigns a log's checkpoint (POST /add-checkpoint) only
    /// if it is consistent with the last one it cosigned for that log, and
    /// records the new one durably before answering. Its Ed25519 key is
    /// generated on first start (DATA_DIR/witness.key, mode 0600) and its
    /// verifier key (type 0x04, tlog-cosignature) is printed and served at
    /// GET /v1/witness.
    ///
    /// Try it:
    ///   gatelog witness --log "$(curl -s http://127.0.0.1:8080/v1/log | jq -r .verifier_key)"
    #[cfg(feature = "server")]
    #[command(verbatim_doc_comment)]
    Witness(server::WitnessArgs),
    /// The PostgreSQL store: its schema, and the log key its nodes share.
    ///
    /// Several `gatelog serve --store postgres://...` nodes serve one log:
    /// any node takes appends, each batch is sequenced under a row lock in
    /// the database, and every node's gate follows the others' entries.
    ///
    /// Try it:
    ///   gatelog db migrate --store postgres://localhost/gatelog
    ///   gatelog db log-key --origin log.example.com/access --out log.key
    ///   gatelog serve --store postgres://localhost/gatelog --log-key log.key --dev
    #[cfg(feature = "server")]
    #[command(subcommand, verbatim_doc_comment)]
    Db(db::DbCommand),
    /// Follow a log, check every checkpoint, gossip with peer monitors.
    ///
    /// Polls the log's /checkpoint and each peer's /v1/monitor/checkpoint,
    /// and checks each against the latest checkpoint it accepted (kept in
    /// DATA_DIR): same size must mean same root, and a bigger or smaller
    /// one needs a valid consistency proof from the log. Serves its latest
    /// at GET /v1/monitor/checkpoint. On a split view it writes the
    /// evidence to DATA_DIR/equivocation-<time>.txt, runs --alert-command
    /// (with GATELOG_EQUIVOCATION set to that file) and exits with status 3.
    ///
    /// It also replays the log's entries (checked against the accepted
    /// checkpoint) and reports break-glass reviews past their deadline,
    /// listing open ones at GET /v1/monitor/obligations.
    #[cfg(feature = "server")]
    #[command(verbatim_doc_comment)]
    Monitor(server::MonitorArgs),
    /// Check checkpoints, proofs and evidence.
    #[command(subcommand)]
    #[command(verbatim_doc_comment)]
    Verify(verify::VerifyCommand),
    /// Copy a log into a directory laid out like its tlog-tiles API,
    /// checking every tile on the way.
    ///
    /// Fetches the checkpoint (it must verify with --vkey and extend the
    /// one already in DIR), every entry bundle and hash tile. Each hash
    /// tile is recomputed from the entries and must equal the log's; the
    /// entries must hash to the checkpoint's root. Resumable: full tiles
    /// already in DIR are checked again, not fetched. Any static web
    /// server can then serve DIR, and `verify consistency --log DIR` and
    /// audits can read it.
    ///
    /// Exit 0: mirrored and verified; 1: the log served something that
    /// does not verify (named in the message); 2: usage error.
    ///
    /// Try it:
    ///   gatelog mirror --log http://127.0.0.1:8080 --vkey "$VKEY" ./mirror
    #[command(verbatim_doc_comment)]
    Mirror(MirrorArgs),
    /// Replay a log from its entries alone and report what is wrong.
    ///
    /// Recomputes the tree from every entry and checks it against the
    /// signed checkpoint; checks every entry's signature against the
    /// identity registry as it stood at that point (the bootstrap admins
    /// come from --admin-key); re-runs every gate decision with the
    /// server's own rules (an admitted intent the gate refuses, or a
    /// refusal it would not make, is a finding); and checks outcomes
    /// against intents, drift between changes, and break-glass reviews
    /// (late, or missing past the deadline). Streams: memory does not
    /// grow with the log's length.
    ///
    /// Writes the evidence package to --out, a new directory: manifest.json
    /// (checkpoints, consistency proof, period, counts), population.csv (a
    /// row per chain), exceptions.csv (every finding, with its entry),
    /// chains/<chain_id>.json (each entry with an inclusion proof) and
    /// report.html (opens without a server).
    ///
    /// Exit 0: the log verifies and no finding; 1: findings or tampering
    /// (the package is written, naming them); 2: usage error.
    ///
    /// Try it:
    ///   gatelog audit --log ./mirror --vkey "$VKEY" --admin-key admin.key.pub --out ./audit
    ///   gatelog audit --log http://127.0.0.1:8080 --vkey "$VKEY" --admin-key admin.key.pub \
    ///       --since last.checkpoint --period 2026-07-01..2026-10-01 --out ./audit-q3
    #[command(verbatim_doc_comment)]
    Audit(audit::AuditArgs),
    /// Who has what: the access the log's history establishes, verified.
    ///
    /// Replays the log (a mirror or its URL) as `audit` does (every
    /// signature, every gate decision, the root against the signed
    /// checkpoint) and answers one question as JSON:
    ///   --subject ID      what ID holds (each holding with its chain, the
    ///                     outcome that granted it, when its grant ends, and
    ///                     whether it is held, awaiting removal, overdue,
    ///                     removed or covered by another grant);
    ///   --resource NAME   who holds access to NAME (of --system);
    ///   --actor ID        every entry ID signed (e.g. all one assistant did);
    ///   --at TIME         as held at TIME instead of at the checkpoint.
    /// The same answers as GET /v1/access on the log, without trusting it.
    ///
    /// Exit 0: answered from a log that verifies; 1: answered, but the log
    /// has findings (`gatelog audit` names them); 2: no answer.
    ///
    /// Try it:
    ///   gatelog access --log ./mirror --vkey "$VKEY" --subject alice
    ///   gatelog access --log http://127.0.0.1:8080 --vkey "$VKEY" --actor copilot
    #[command(verbatim_doc_comment)]
    Access(access::AccessArgs),
    /// Make an actor's Ed25519 key pair.
    ///
    /// Writes the private key to FILE (mode 0600) and the public
    /// (verifier) key to FILE.pub, and prints the base64 public key an
    /// admin puts in the actor's identityRegistration.
    ///
    /// Try it:
    ///   gatelog keygen --id alice --out alice.key
    ///   gatelog serve --admin-key admin.key.pub
    #[cfg(feature = "server")]
    #[command(verbatim_doc_comment)]
    Keygen(server::KeygenArgs),
    /// Sign a statement (proto3 JSON) and submit it to a log.
    ///
    /// Prints the log's answer (index, checkpoint, proof) and saves the
    /// tlog-proof bundle. A refusal prints the log's reasons (for a gate
    /// refusal, every broken rule) and exits 1. If the statement has no
    /// issuedAt, the current time is used.
    ///
    /// With an admin threshold of M, M admins sign: with --endorse-key
    /// on one machine, or one holds the signed entry (--hold FILE), the
    /// others add theirs (`gatelog endorse`), and it goes with --entry.
    ///
    /// Try it:
    ///   gatelog submit --log http://127.0.0.1:8080 --key alice.key examples/07-alice-requests-write.json
    ///   gatelog submit --log URL --key admin1.key --hold reg.entry examples/01-register-alice.json
    ///   gatelog endorse --key admin2.key reg.entry
    ///   gatelog submit --log URL --entry reg.entry
    #[cfg(feature = "server")]
    #[command(verbatim_doc_comment)]
    Submit(submit::SubmitArgs),
    /// Add this admin's signature to an entry held by `gatelog submit
    /// --hold`, after showing what it says.
    #[cfg(feature = "server")]
    #[command(verbatim_doc_comment)]
    Endorse(submit::EndorseArgs),
}

/// Runs the parsed command; the process's exit code.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    gatelog::sys::tls::configure_client(&gatelog::sys::tls::ClientTlsFiles {
        ca: cli.tls.ca,
        cert: cli.tls.client_cert,
        key: cli.tls.client_key,
    })
    .context("TLS client")?;
    match cli.command {
        #[cfg(feature = "server")]
        Command::Serve(args) => server::serve(*args).map(|()| ExitCode::SUCCESS),
        #[cfg(feature = "server")]
        Command::Witness(args) => server::witness(args).map(|()| ExitCode::SUCCESS),
        #[cfg(feature = "server")]
        Command::Monitor(args) => server::monitor(args),
        #[cfg(feature = "server")]
        Command::Db(command) => db::db(command).map(|()| ExitCode::SUCCESS),
        Command::Verify(command) => Ok(verify::run(command)),
        Command::Mirror(args) => mirror(&args),
        Command::Audit(args) => Ok(audit::audit(args)),
        Command::Access(args) => Ok(access::access(args)),
        #[cfg(feature = "server")]
        Command::Keygen(args) => server::keygen(&args).map(|()| ExitCode::SUCCESS),
        #[cfg(feature = "server")]
        Command::Submit(args) => submit::submit(&args),
        #[cfg(feature = "server")]
        Command::Endorse(args) => submit::endorse(&args),
    }
}

#[derive(Args, Debug)]
pub struct MirrorArgs {
    /// The log's URL.
    #[arg(long, value_name = "URL")]
    log: String,
    /// The log's verifier key.
    #[arg(long, value_name = "VKEY")]
    vkey: String,
    /// Seconds to wait for each request.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=3600))]
    timeout_secs: u64,
    /// Where the mirror lives (created if missing).
    dir: std::path::PathBuf,
}

/// The log a verifying command replays (`gatelog audit`, `gatelog
/// access`), and the keys it trusts.
#[derive(Args, Debug)]
pub struct LogSource {
    /// The log: a mirror directory (`gatelog mirror`) or the log's URL.
    #[arg(long, value_name = "DIR|URL")]
    pub log: String,
    /// The log's verifier key.
    #[arg(long, value_name = "VKEY")]
    pub vkey: String,
    /// A bootstrap admin's public key (FILE.pub), as a log made by an
    /// older release was served with; repeatable. Only for the entries
    /// before such a log's parameters record: a log of rules version 2
    /// names its admins itself.
    #[arg(long = "admin-key", value_name = "FILE")]
    pub admin_keys: Vec<std::path::PathBuf>,
}

fn mirror(args: &MirrorArgs) -> anyhow::Result<ExitCode> {
    use gatelog::observers::mirror::{mirror, MirrorError};
    use gatelog::sys::client::parse_url;
    let usage = |m: String| {
        eprintln!("gatelog: error: {m}");
        Ok(ExitCode::from(2))
    };
    let log = match parse_url(&args.log) {
        Ok(u) => u,
        Err(e) => return usage(format!("--log: {e:#}")),
    };
    let key = match gatelog::tlog::note::NoteVerifier::parse(&args.vkey) {
        Ok(k) => k,
        Err(e) => return usage(format!("--vkey {:?}: {e}", args.vkey)),
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let bar = progress_bar("mirror", "entries");
    let progress = |done: u64, all: u64| {
        bar.set_length(all);
        bar.set_position(done);
    };
    let timeout = Duration::from_secs(args.timeout_secs);
    let result = runtime.block_on(mirror(&log, &key, &args.dir, timeout, progress));
    bar.finish_and_clear();
    match result {
        Ok(r) => {
            println!(
                "verified: mirrored {} entries of {} into {} (was {}; {} tiles fetched, {} reused)",
                r.size,
                key.name(),
                args.dir.display(),
                r.previous_size,
                r.fetched,
                r.reused
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(e @ (MirrorError::Io { .. } | MirrorError::Fetch { .. })) => {
            eprintln!("gatelog: error: {e}");
            Ok(ExitCode::from(2))
        }
        Err(e) => {
            println!("FAILED: {e}");
            Ok(ExitCode::FAILURE)
        }
    }
}

/// A progress bar on stderr for a long command: `what` done of all, its
/// rate and what is left. Drawn only when stderr is a terminal.
pub(crate) fn progress_bar(what: &str, unit: &str) -> indicatif::ProgressBar {
    let style = indicatif::ProgressStyle::with_template(&format!(
        "{what}: {{bar:30}} {{human_pos}}/{{human_len}} {unit} ({{percent}}%), {{per_sec}}, {{eta}} left"
    ))
    .expect("a valid template");
    indicatif::ProgressBar::new(0).with_style(style)
}
