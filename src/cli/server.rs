//! The commands that run a log, a witness or a monitor, and `keygen`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use base64::Engine;
use clap::{Args, ValueEnum};
use gatelog::observers::monitor::{self, MonitorConfig};
use gatelog::observers::witness;
use gatelog::server::http::quota::Rate;
use gatelog::server::http::{HttpLimits, ServerConfig};
use gatelog::server::run::ServeConfig;
use gatelog::server::sequencer::SequencerConfig;
use gatelog::sys::client::parse_url;
use gatelog::sys::keyfile;
use gatelog::tlog::note::NoteVerifier;

#[derive(Args, Debug)]
pub struct KeygenArgs {
    /// The actor id the key belongs to (no spaces or '+').
    #[arg(long, value_name = "ACTOR")]
    pub id: String,
    /// Where to write the private key; the public key goes to FILE.pub.
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
}

/// How a service writes its logs (stderr).
#[derive(Args, Debug)]
pub struct LogArgs {
    /// Log lines as text or JSON (one object per line). Levels come from
    /// GATELOG_LOG (e.g. `warn`, `gatelog=debug`); the default is `info`.
    #[arg(long, value_name = "FORMAT", default_value = "text", value_parser = ["text", "json"])]
    log_format: String,
}

impl LogArgs {
    fn init(&self) {
        gatelog::sys::logs::init(self.log_format.parse().expect("clap checked the value"));
    }
}

/// How a service takes connections: HTTPS, deadlines, caps.
#[derive(Args, Debug)]
pub struct ConnectionArgs {
    /// Serve HTTPS with this certificate chain (PEM, leaf first); with
    /// --tls-key. Without it the service speaks plain HTTP.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The certificate's private key (PEM, mode 0600).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Most concurrent connections; more wait to be accepted.
    #[arg(long, default_value_t = 4096, value_parser = clap::value_parser!(u64).range(1..=1 << 20))]
    pub max_connections: u64,
    /// Most concurrent connections from one IP address; more are closed
    /// at once (so one client cannot hold every slot). Behind a proxy every
    /// client shares its address: raise it there.
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u64).range(1..=1 << 20))]
    pub max_connections_per_client: u64,
    /// Seconds a client may take to send a request's headers, and its
    /// body (and the TLS handshake).
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub read_timeout_secs: u64,
    /// Seconds a response may wait for a client that reads nothing; then
    /// the connection is closed.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub write_timeout_secs: u64,
    /// Seconds a connection lives, whatever it is doing (keep-alive
    /// included); a response still being written then is cut.
    #[arg(long, default_value_t = 300, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub connection_lifetime_secs: u64,
}

impl ConnectionArgs {
    fn limits(&self, client_ca: Option<PathBuf>) -> anyhow::Result<HttpLimits> {
        let client_certificates = client_ca.is_some();
        let tls = match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => Some(gatelog::sys::tls::server_acceptor(
                &gatelog::sys::tls::ServerTlsFiles {
                    cert: cert.clone(),
                    key: key.clone(),
                    client_ca,
                },
            )?),
            _ if client_ca.is_some() => {
                anyhow::bail!("--tls-client-ca needs --tls-cert and --tls-key")
            }
            _ => None,
        };
        Ok(HttpLimits {
            max_connections: self.max_connections as usize,
            max_connections_per_client: self.max_connections_per_client as usize,
            read_timeout: Duration::from_secs(self.read_timeout_secs),
            write_timeout: Duration::from_secs(self.write_timeout_secs),
            connection_lifetime: Duration::from_secs(self.connection_lifetime_secs),
            tls,
            client_certificates,
        })
    }
}

#[derive(Args, Debug)]
pub struct MonitorArgs {
    #[command(flatten)]
    log_output: LogArgs,
    #[command(flatten)]
    connections: ConnectionArgs,
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
    /// Shell command to run on a split view, or on entries that do not
    /// hash to the log's checkpoint (GATELOG_EQUIVOCATION names the
    /// evidence file).
    #[arg(long, value_name = "CMD")]
    pub alert_command: Option<String>,
    /// A bootstrap admin's public key of a log made by an earlier release
    /// (repeatable); a newer log names its admins in its first entry.
    #[arg(long = "admin-key", value_name = "FILE")]
    pub admin_keys: Vec<PathBuf>,
}

#[derive(Args, Debug)]
pub struct WitnessArgs {
    #[command(flatten)]
    log_output: LogArgs,
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
    #[command(flatten)]
    connections: ConnectionArgs,
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
    #[command(flatten)]
    log_output: LogArgs,
    #[command(flatten)]
    store: super::db::StoreArgs,
    /// Where the database and the log key live (with PostgreSQL: this
    /// node's own files, e.g. a --dev admin key).
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
    /// policy. A new log records them in its first entry (and a log made
    /// by an older release in its upgrade record); after that the admin
    /// set lives in the log and this flag is refused. Default for a log
    /// made by an older release: DATA_DIR/admin.key.pub.
    #[arg(long = "admin-key", value_name = "FILE")]
    pub admin_keys: Vec<PathBuf>,
    /// Admin signatures an action that creates authority needs (M of the
    /// N --admin-key), recorded in a new log's first entry.
    #[arg(long, default_value_t = 1, value_name = "M", value_parser = clap::value_parser!(u32).range(1..=64))]
    pub admin_threshold: u32,
    /// DEVELOPMENT ONLY: generate an admin key pair in DATA_DIR
    /// (admin.key, id "admin") if there is none, trust it, and give a new
    /// log a default policy that permits what the rules allow. Anyone
    /// with DATA_DIR can then act as admin. Never for a real log.
    #[arg(long)]
    pub dev: bool,
    /// How far a statement's issuedAt may be from the log's time, in
    /// seconds; recorded in a new log's first entry.
    #[arg(long, default_value_t = 300, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub max_clock_skew_secs: u64,
    /// How often, at most, the log records its own time (a logTime entry
    /// before a batch), in milliseconds: entries are judged at a log time
    /// at most this old.
    #[arg(long, default_value_t = 1000, value_name = "MS", value_parser = clap::value_parser!(u64).range(1..=60_000))]
    pub log_time_resolution_ms: u64,
    /// The newest statements the gate keeps in memory; older ones it
    /// reads back from storage when a rule needs them (at least the
    /// largest batch plus 64).
    #[arg(long, default_value_t = 16_384, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    pub gate_statement_cache: u64,
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
    #[command(flatten)]
    connections: ConnectionArgs,
    /// With --tls-cert: ask clients for certificates issued by the CAs in
    /// this PEM file (mutual TLS). Clients without one still read; a
    /// writer whose certificate's SHA-256 is in --writers is that writer.
    #[arg(long, value_name = "FILE")]
    pub tls_client_ca: Option<PathBuf>,
    /// The log's writers: lines of `NAME token-sha256:HEX` (a bearer
    /// token's SHA-256; the writer sends `Authorization: Bearer TOKEN`) or
    /// `NAME cert-sha256:HEX` (a client certificate's, with
    /// --tls-client-ca). A wrong token is refused (401). SIGHUP reads it
    /// again (a writer added or cut off without a restart).
    #[arg(long, value_name = "FILE")]
    pub writers: Option<PathBuf>,
    /// Take appends from clients that are no named writer. Default: yes
    /// for gatelog entries (each is signed by its author), no for opaque
    /// entries (nothing else says who wrote them).
    #[arg(long, value_name = "yes|no", value_parser = clap::builder::BoolishValueParser::new())]
    pub anonymous_writes: Option<bool>,
    /// Appends per second one client address may send (0: no limit);
    /// beyond it and its burst, 429 with Retry-After. Every attempt
    /// counts, failed ones included.
    #[arg(long, default_value_t = 5000.0, value_name = "N")]
    pub address_rate: f64,
    /// Appends one address may send at once, above its rate.
    #[arg(long, default_value_t = 10000.0, value_name = "N")]
    pub address_burst: f64,
    /// Appends per second one writer may send (0: no limit): a signer,
    /// counted only when its signature verified, or an opaque log's
    /// authenticated writer.
    #[arg(long, default_value_t = 1000.0, value_name = "N")]
    pub writer_rate: f64,
    /// Appends one writer may send at once, above its rate.
    #[arg(long, default_value_t = 5000.0, value_name = "N")]
    pub writer_burst: f64,
    /// Most clients (and most writers) whose quota is tracked; beyond it
    /// the fullest buckets are forgotten.
    #[arg(long, default_value_t = 65536, value_parser = clap::value_parser!(u64).range(1..=1 << 24))]
    pub max_quota_keys: u64,
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
    args.log_output.init();
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
        admins: keyfile::read_admin_keys(&args.admin_keys)?,
    };
    let limits = args.connections.limits(None)?;
    match monitor::serve(config, args.listen, limits, args.alert_command)? {
        monitor::Stopped::Shutdown => Ok(ExitCode::SUCCESS),
        monitor::Stopped::SplitView => Ok(ExitCode::from(3)),
    }
}

pub(super) fn witness(args: WitnessArgs) -> anyhow::Result<()> {
    args.log_output.init();
    let logs = args
        .logs
        .iter()
        .map(|v| NoteVerifier::parse(v).with_context(|| format!("--log {v:?}")))
        .collect::<anyhow::Result<Vec<_>>>()?;
    witness::serve(witness::ServiceConfig {
        data_dir: args.data_dir,
        listen: args.listen,
        name: args.name,
        logs,
        http: args.connections.limits(None)?,
    })
}

pub(super) fn keygen(args: &KeygenArgs) -> anyhow::Result<()> {
    for path in [args.out.clone(), keyfile::pub_path(&args.out)] {
        if path.exists() {
            anyhow::bail!(
                "{} exists; keygen never overwrites a key: choose another --out or remove it",
                path.display()
            );
        }
    }
    let key = keyfile::new_actor_key(&args.id)?;
    keyfile::write_key_pair(&key, &args.out)?;
    let public = key.verifier().public_key();
    println!("private key: {} (mode 0600)", args.out.display());
    println!("public key:  {}", keyfile::pub_path(&args.out).display());
    println!("key id:      {:08x}", key.key_id());
    println!(
        "publicKey for an identityRegistration: {}",
        base64::engine::general_purpose::STANDARD.encode(public)
    );
    Ok(())
}

pub(super) fn serve(args: ServeArgs) -> anyhow::Result<()> {
    args.log_output.init();
    gatelog::server::run::serve(ServeConfig {
        store: args.store.choice()?,
        data_dir: args.data_dir,
        listen: args.listen,
        origin: args.origin,
        gatelog_entries: matches!(args.entries, Entries::Gatelog),
        admin_key_files: args.admin_keys,
        admin_threshold: args.admin_threshold,
        dev: args.dev,
        max_clock_skew: Duration::from_secs(args.max_clock_skew_secs),
        log_time_resolution: Duration::from_millis(args.log_time_resolution_ms),
        gate_statement_cache: args.gate_statement_cache as usize,
        sequencer: SequencerConfig {
            max_batch_size: args.max_batch_size as usize,
            max_batch_delay: Duration::from_millis(args.max_batch_delay_ms),
            max_pending: args.max_pending as usize,
            max_pending_bytes: args.max_pending_bytes as usize,
        },
        http: ServerConfig {
            max_body_bytes: args.max_body_bytes as usize,
            max_entry_bytes: args.max_entry_bytes as usize,
            http: args.connections.limits(args.tls_client_ca)?,
            witness_timeout: Duration::from_millis(args.witness_timeout_ms),
        },
        witnesses: args.witnesses,
        witness_quorum: args.witness_quorum,
        writers_file: args.writers,
        anonymous_writes: args.anonymous_writes,
        address_rate: Rate {
            per_second: args.address_rate,
            burst: args.address_burst,
        },
        writer_rate: Rate {
            per_second: args.writer_rate,
            burst: args.writer_burst,
        },
        max_quota_keys: args.max_quota_keys as usize,
    })
}
