//! Where a log lives (`serve --store`), and `gatelog db`: the PostgreSQL
//! store's schema and the key every node of a cluster shares.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand};
use gatelog::server::run::StoreChoice;
use gatelog::server::store::postgres::{self, PgOptions};
use gatelog::sys::keyfile;

/// `gatelog serve`'s storage flags.
#[derive(Args, Debug)]
pub struct StoreArgs {
    /// Where the log lives: `rocksdb` (DATA_DIR/db, one node), or a
    /// PostgreSQL URL shared by several nodes, e.g.
    /// `postgres://db1,db2/gatelog?sslmode=verify-full` (a multi-host URL
    /// finds the primary; TLS is checked against --ca or the system's
    /// roots, and the host name). What the URL leaves out comes from PGHOST,
    /// PGPORT, PGUSER, PGPASSWORD and PGDATABASE: keep the password there
    /// or in --store-file, not on a command line.
    #[arg(long, value_name = "URL", default_value = "rocksdb")]
    pub store: String,
    /// Read the PostgreSQL URL from this file instead (mode 0600).
    #[arg(long, value_name = "FILE", conflicts_with = "store")]
    pub store_file: Option<PathBuf>,
    /// With PostgreSQL: the log's private key, the same file on every
    /// node (`gatelog db log-key` makes one).
    #[arg(long, value_name = "FILE")]
    pub log_key: Option<PathBuf>,
    /// With PostgreSQL: connections for reads, per node (the sequencer
    /// has one more).
    #[arg(long, default_value_t = 4, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=256))]
    pub pg_read_connections: u64,
    /// With PostgreSQL: how often an idle node looks for entries the
    /// other nodes committed, in milliseconds (its checkpoint is at most
    /// this stale).
    #[arg(long, default_value_t = 100, value_name = "MS", value_parser = clap::value_parser!(u64).range(1..=60_000))]
    pub pg_follow_ms: u64,
    /// With PostgreSQL: MiB of entries a node caches (entries never
    /// change, so each is read from the database once while cached).
    #[arg(long, default_value_t = 256, value_name = "MIB", value_parser = clap::value_parser!(u64).range(1..=1 << 20))]
    pub pg_entry_cache_mib: u64,
    /// With PostgreSQL: full tiles a node caches (8 KiB each).
    #[arg(long, default_value_t = 8192, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=1 << 24))]
    pub pg_tile_cache: u64,
    /// With PostgreSQL: seconds a statement (a wait for the sequencing
    /// lock included) may take before the batch gets 503.
    #[arg(long, default_value_t = 10, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub pg_statement_timeout_secs: u64,
}

/// The PostgreSQL URL of `--store` or `--store-file`, if not RocksDB.
fn postgres_url(store: &str, file: Option<&PathBuf>) -> anyhow::Result<Option<String>> {
    if let Some(path) = file {
        let url = keyfile::read_secret(path)
            .with_context(|| format!("--store-file {}", path.display()))?;
        return Ok(Some(url.trim().to_string()));
    }
    match store {
        "rocksdb" => Ok(None),
        s if s.starts_with("postgres://") || s.starts_with("postgresql://") => {
            Ok(Some(s.to_string()))
        }
        s => anyhow::bail!(
            "--store {s:?}: give `rocksdb` or a postgres:// URL (or --store-file FILE)"
        ),
    }
}

impl StoreArgs {
    pub fn choice(&self) -> anyhow::Result<StoreChoice> {
        let Some(url) = postgres_url(&self.store, self.store_file.as_ref())? else {
            if self.log_key.is_some() {
                anyhow::bail!("--log-key is for a PostgreSQL store; RocksDB keeps its key in DATA_DIR/log.key");
            }
            return Ok(StoreChoice::Embedded);
        };
        let log_key = self.log_key.clone().context(
            "a PostgreSQL store needs --log-key FILE, the same on every node (make it once with `gatelog db log-key --origin NAME --out FILE`)",
        )?;
        Ok(StoreChoice::Postgres {
            url,
            log_key,
            options: PgOptions {
                read_connections: self.pg_read_connections as usize,
                entry_cache_bytes: (self.pg_entry_cache_mib as usize) << 20,
                tile_cache_tiles: self.pg_tile_cache as usize,
                follow_interval: Duration::from_millis(self.pg_follow_ms),
                statement_timeout: Duration::from_secs(self.pg_statement_timeout_secs),
                ..PgOptions::default()
            },
        })
    }
}

#[derive(Subcommand, Debug)]
pub enum DbCommand {
    /// Create or upgrade the PostgreSQL schema (idempotent; safe to run
    /// from several nodes at once).
    ///
    /// Try it:
    ///   gatelog db migrate --store postgres://localhost/gatelog
    #[command(verbatim_doc_comment)]
    Migrate(MigrateArgs),
    /// Make the log's key for a PostgreSQL store: one file, copied to
    /// every node and given to each as --log-key.
    ///
    /// Try it:
    ///   gatelog db log-key --origin log.example.com/access --out log.key
    #[command(verbatim_doc_comment)]
    LogKey(LogKeyArgs),
    /// Copy a log from its RocksDB data directory into a new PostgreSQL
    /// database (migrated first), and check the copy serves the same
    /// checkpoint. The key and origin stay: clients, witnesses and
    /// monitors see the same log. Stop its server first; then serve it
    /// with `--store URL --log-key DATA_DIR/log.key`.
    ///
    /// Try it:
    ///   gatelog db migrate --store postgres://localhost/gatelog
    ///   gatelog db import --from ./gatelog-data --to postgres://localhost/gatelog
    #[command(verbatim_doc_comment)]
    Import(ImportArgs),
}

#[derive(Args, Debug)]
pub struct ImportArgs {
    /// The RocksDB data directory (DATA_DIR of `gatelog serve`).
    #[arg(long, value_name = "DIR")]
    from: PathBuf,
    /// The PostgreSQL database (see `serve --store`); it must hold no log.
    #[arg(long, value_name = "URL", default_value = "postgres://")]
    to: String,
    /// Read the URL from this file instead.
    #[arg(long, value_name = "FILE")]
    to_file: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct MigrateArgs {
    /// The database (see `serve --store`); PG* variables fill the rest.
    #[arg(long, value_name = "URL", default_value = "postgres://")]
    store: String,
    /// Read the URL from this file instead.
    #[arg(long, value_name = "FILE")]
    store_file: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct LogKeyArgs {
    /// The log's origin (its checkpoints' first line and key name).
    #[arg(long, value_name = "NAME")]
    origin: String,
    /// Where to write the private key (mode 0600; never overwritten).
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
}

pub(super) fn db(command: DbCommand) -> anyhow::Result<()> {
    match command {
        DbCommand::Migrate(args) => {
            let url = postgres_url(&args.store, args.store_file.as_ref())?
                .context("gatelog db works on a PostgreSQL store")?;
            let applied = postgres::migrate(&url)?;
            if applied.is_empty() {
                println!(
                    "gatelog: the schema is up to date (version {})",
                    postgres::schema_version()
                );
            }
            for (version, name) in applied {
                println!("gatelog: applied migration {version}: {name}");
            }
            Ok(())
        }
        DbCommand::Import(args) => {
            let url = postgres_url(&args.to, args.to_file.as_ref())?
                .context("--to must be a PostgreSQL URL")?;
            let bar = indicatif::ProgressBar::new(0).with_style(
                indicatif::ProgressStyle::with_template(
                    "{bar:40} {pos}/{len} entries ({per_sec}, {eta} left)",
                )
                .expect("a valid template"),
            );
            let imported = gatelog::server::store::import::import(&args.from, &url, &|n, of| {
                bar.set_length(of);
                bar.set_position(n);
            })?;
            bar.finish_and_clear();
            println!(
                "gatelog: imported {} entries; the copy serves the same checkpoint:\n{}",
                imported.entries, imported.checkpoint
            );
            Ok(())
        }
        DbCommand::LogKey(args) => {
            if args.out.exists() {
                anyhow::bail!(
                    "{} exists; a log keeps its key for ever: choose another --out",
                    args.out.display()
                );
            }
            let key = keyfile::new_actor_key(&args.origin)
                .map_err(|e| anyhow::anyhow!("--origin {:?}: {e:#}", args.origin))?;
            keyfile::write_key_pair(&key, &args.out)?;
            println!("log key:      {} (mode 0600)", args.out.display());
            println!("verifier key: {}", key.verifier().to_vkey());
            Ok(())
        }
    }
}
