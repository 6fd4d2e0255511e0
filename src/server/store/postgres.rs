//! The shared store: the log in PostgreSQL, for several gatelog nodes on
//! one log (`gatelog serve --store postgres://...`).
//!
//! - **Sequencing** is serialised by a row lock on the log's head
//!   (`SELECT ... FOR UPDATE` on `gatelog_head`, as Tessera does on
//!   Spanner and Aurora): a node takes it, catches up on what other nodes
//!   committed, decides its batch, and commits the entries, tiles and the
//!   new checkpoint in the same transaction. A node that dies holding it
//!   loses its connection and with it the lock; one that stalls loses it
//!   to `idle_in_transaction_session_timeout`.
//! - **Reads** of entries and full tiles, which never change once
//!   committed, are served from bounded caches filled once; a partial
//!   tile, a leaf lookup and the checkpoint are read fresh.
//! - **Connections** run on the store's own threads, each holding one
//!   blocking client (tokio-postgres's `postgres` facade): the store's
//!   interface is synchronous like RocksDB's, and the facade cannot be
//!   driven from inside the server's async runtime. The sequencer has a
//!   connection of its own, which holds the lock's transaction.
//! - **Schema** comes from versioned migrations (`gatelog db migrate`),
//!   run under an advisory lock so that two nodes migrating at once apply
//!   each step once.

use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::str::FromStr;
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lru::LruCache;
use postgres::config::SslMode;
use postgres::config::{Host, TargetSessionAttrs};
use postgres::{Client, Config};
use tokio_postgres_rustls::MakeRustlsConnect;

use super::{
    decode_indices, encode_indices, Commit, LogStore, Posted, Sequencing, StoreError, WitnessBoard,
};
use crate::sys::clock::now_ms;
use crate::tlog::merkle::{leaf_hash, Hash};
use crate::tlog::tiles::{level_len, TileReader, HASH_SIZE, TILE_WIDTH};

/// The schema's versioned steps, applied in order by `gatelog db
/// migrate`; a released step never changes (add a new one).
pub const MIGRATIONS: &[(i32, &str, &str)] = &[
    (
        1,
        "the log: head, entries, refusals, tiles, closed chains",
        "CREATE TABLE gatelog_head (
        one boolean PRIMARY KEY DEFAULT true CHECK (one),
        checkpoint text,
        entries_mode text
    );
    INSERT INTO gatelog_head (one) VALUES (true);
    CREATE TABLE gatelog_entries (
        idx bigint PRIMARY KEY,
        leaf bytea NOT NULL,
        data bytea NOT NULL
    );
    CREATE UNIQUE INDEX gatelog_entries_leaf ON gatelog_entries (leaf);
    CREATE TABLE gatelog_refusals (
        leaf bytea PRIMARY KEY,
        record bigint NOT NULL
    );
    CREATE TABLE gatelog_tiles (
        level smallint NOT NULL,
        idx bigint NOT NULL,
        data bytea NOT NULL,
        PRIMARY KEY (level, idx)
    );
    CREATE TABLE gatelog_closed_chains (
        chain bytea PRIMARY KEY,
        entries bytea NOT NULL
    );",
    ),
    (
        2,
        "one set of witness rounds: the leader's lease and what it posted",
        "CREATE TABLE gatelog_witnessing (
        one boolean PRIMARY KEY DEFAULT true CHECK (one),
        leader text,
        lease_until timestamptz,
        round_size bigint NOT NULL DEFAULT 0,
        round_checkpoint text,
        round_cosignatures text,
        quorate_size bigint NOT NULL DEFAULT 0,
        quorate_checkpoint text,
        quorate_cosignatures text
    );
    INSERT INTO gatelog_witnessing (one) VALUES (true);",
    ),
];

/// The advisory lock `gatelog db migrate` holds ("gatelog" in ASCII).
const MIGRATION_LOCK: i64 = 0x0067_6174_656c_6f67;

/// Limits and timings of the PostgreSQL store.
#[derive(Clone, Debug)]
pub struct PgOptions {
    /// Connections for readers (the sequencer has one more of its own).
    pub read_connections: usize,
    /// Most bytes of entries kept in the cache.
    pub entry_cache_bytes: usize,
    /// Most full tiles kept in the cache (8 KiB each).
    pub tile_cache_tiles: usize,
    /// How often an idle node looks for entries other nodes committed.
    pub follow_interval: Duration,
    /// Longest a statement (a lock wait included) may take.
    pub statement_timeout: Duration,
    /// Longest a connection attempt may take, per host.
    pub connect_timeout: Duration,
}

impl Default for PgOptions {
    fn default() -> Self {
        PgOptions {
            read_connections: 4,
            entry_cache_bytes: 256 << 20,
            tile_cache_tiles: 8192,
            follow_interval: Duration::from_millis(100),
            statement_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(5),
        }
    }
}

fn pg(e: postgres::Error) -> StoreError {
    // The server's own words (e.g. "relation ... does not exist") are in
    // the source, which Display leaves out.
    match e.as_db_error() {
        Some(db) => StoreError::Postgres(format!("{}: {}", db.code().code(), db.message())),
        None => StoreError::Postgres(e.to_string()),
    }
}

/// The connection settings from `url` (a `postgres://` URL or libpq
/// key=value string) and, for what it leaves out, the standard `PG*`
/// environment variables, so no password need be on a command line.
/// Multi-host URLs find the primary: `target_session_attrs` defaults to
/// `read-write`.
///
/// TLS: every TLS connection checks the server's certificate against the
/// process's roots (`--ca`, or the system's) and its host name, as libpq's
/// `verify-full`, whatever the `sslmode`: `verify-full`, `verify-ca` and
/// `require` need TLS, `prefer` (the default) uses it when the server
/// offers it, `disable` never does.
pub fn config(url: &str) -> Result<Config, StoreError> {
    let bad = |e: postgres::Error| StoreError::Refused(format!("the PostgreSQL URL: {e}"));
    let url = url.trim();
    // tokio-postgres knows disable, prefer and require; the verifying
    // modes are require with our (always verifying) connector.
    let url = url
        .replace("sslmode=verify-full", "sslmode=require")
        .replace("sslmode=verify-ca", "sslmode=require");
    let mut c = match url.as_str() {
        "postgres:" | "postgres://" | "postgresql://" | "" => Config::new(),
        _ => Config::from_str(&url).map_err(bad)?,
    };
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    if !url.contains("sslmode=") {
        match env("PGSSLMODE").as_deref() {
            None | Some("prefer") => {}
            Some("disable") => {
                c.ssl_mode(SslMode::Disable);
            }
            Some("require" | "verify-ca" | "verify-full") => {
                c.ssl_mode(SslMode::Require);
            }
            Some(other) => {
                return Err(StoreError::Refused(format!(
                    "PGSSLMODE {other:?} is not a mode gatelog knows"
                )))
            }
        }
    }
    if c.get_hosts().is_empty() {
        let hosts = env("PGHOST").unwrap_or_else(|| "localhost".into());
        for h in hosts.split(',') {
            c.host(h);
        }
    }
    if c.get_ports().is_empty() {
        if let Some(p) = env("PGPORT") {
            for p in p.split(',') {
                c.port(p.parse().map_err(|_| {
                    StoreError::Refused(format!("PGPORT {p:?} is not a port number"))
                })?);
            }
        }
    }
    if c.get_user().is_none() {
        let user = env("PGUSER").or_else(|| env("USER"));
        c.user(user.as_deref().unwrap_or("postgres"));
    }
    if c.get_password().is_none() {
        if let Some(p) = env("PGPASSWORD") {
            c.password(p);
        }
    }
    if c.get_dbname().is_none() {
        if let Some(d) = env("PGDATABASE") {
            c.dbname(&d);
        }
    }
    if !url.contains("target_session_attrs") {
        c.target_session_attrs(TargetSessionAttrs::ReadWrite);
    }
    if c.get_application_name().is_none() {
        c.application_name("gatelog");
    }
    Ok(c)
}

/// Where `c` points, without its password: "host:port,.../dbname".
fn describe(c: &Config) -> String {
    let ports = c.get_ports();
    let hosts: Vec<String> = c
        .get_hosts()
        .iter()
        .enumerate()
        .map(|(i, h)| {
            let port = ports.get(i).or(ports.first()).copied().unwrap_or(5432);
            match h {
                Host::Tcp(h) => format!("{h}:{port}"),
                Host::Unix(p) => format!("{}:{port}", p.display()),
            }
        })
        .collect();
    let db = c.get_dbname().or(c.get_user()).unwrap_or("");
    format!("PostgreSQL {}/{db}", hosts.join(","))
}

/// The TLS connector for PostgreSQL (see [`config`]).
fn tls() -> Result<MakeRustlsConnect, StoreError> {
    crate::sys::tls::postgres_client_config()
        .map(MakeRustlsConnect::new)
        .map_err(|e| StoreError::Refused(format!("TLS to PostgreSQL: {e}")))
}

/// One connection, made (again) when needed.
struct Connection {
    config: Config,
    tls: MakeRustlsConnect,
    settings: String,
    client: Option<Client>,
    /// Counts the connections made: a transaction belongs to one.
    generation: u64,
}

impl Connection {
    fn client(&mut self) -> Result<&mut Client, StoreError> {
        if self.client.as_ref().is_none_or(Client::is_closed) {
            self.client = None;
            let mut client = self.config.connect(self.tls.clone()).map_err(pg)?;
            client.batch_execute(&self.settings).map_err(pg)?;
            self.client = Some(client);
            self.generation += 1;
        }
        Ok(self.client.as_mut().expect("connected"))
    }
}

type Job = Box<dyn FnOnce(&mut Connection) + Send>;

/// Threads that each hold a connection and run jobs from one queue.
struct Workers {
    tx: SyncSender<Job>,
}

/// Jobs waiting for a connection, at most.
const QUEUED_JOBS: usize = 1024;

impl Workers {
    fn start(
        config: &Config,
        tls: &MakeRustlsConnect,
        settings: &str,
        threads: usize,
        name: &str,
    ) -> Workers {
        let (tx, rx) = mpsc::sync_channel::<Job>(QUEUED_JOBS);
        let rx: Arc<Mutex<Receiver<Job>>> = Arc::new(Mutex::new(rx));
        for k in 0..threads.max(1) {
            let rx = rx.clone();
            let mut conn = Connection {
                config: config.clone(),
                tls: tls.clone(),
                settings: settings.to_string(),
                client: None,
                generation: 0,
            };
            std::thread::Builder::new()
                .name(format!("{name}-{k}"))
                .spawn(move || loop {
                    let job = rx.lock().unwrap_or_else(|p| p.into_inner()).recv();
                    match job {
                        Ok(job) => job(&mut conn),
                        Err(_) => return,
                    }
                })
                .expect("spawning a PostgreSQL connection thread");
        }
        Workers { tx }
    }

    /// Runs `f` on a connection and waits for its result.
    fn run<T: Send + 'static>(
        &self,
        f: impl Fn(&mut Client) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        self.run_in(None, move |c, _| f(c))
    }

    /// Runs `f` on a connection, passing it the connection's generation;
    /// with `Some(generation)`, only on that same connection (a
    /// transaction's): a connection made since fails the job unrun.
    /// Without, a job that failed on a connection the server had closed
    /// meanwhile (a restart, a failover, a terminated backend) runs once
    /// more on a new one.
    fn run_in<T: Send + 'static>(
        &self,
        generation: Option<u64>,
        f: impl Fn(&mut Client, u64) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let (reply, answer) = mpsc::sync_channel(1);
        let job: Job = Box::new(move |conn| {
            let lost = generation.is_some_and(|g| {
                g != conn.generation || conn.client.as_ref().is_none_or(Client::is_closed)
            });
            let result = match lost {
                true => Err(StoreError::Postgres(
                    "the connection that held the sequencing lock was lost".into(),
                )),
                false => {
                    let attempt = |conn: &mut Connection| {
                        conn.client()?;
                        let g = conn.generation;
                        f(conn.client.as_mut().expect("connected"), g)
                    };
                    match attempt(conn) {
                        Err(_)
                            if generation.is_none()
                                && conn.client.as_ref().is_some_and(Client::is_closed) =>
                        {
                            attempt(conn)
                        }
                        done => done,
                    }
                }
            };
            let _ = reply.send(result);
        });
        self.tx
            .send(job)
            .map_err(|_| StoreError::Postgres("the connection threads stopped".into()))?;
        answer
            .recv()
            .map_err(|_| StoreError::Postgres("a connection thread stopped".into()))?
    }

    /// Queues `f` without waiting; false if the queue is full.
    fn spawn(
        &self,
        f: impl FnOnce(&mut Client) -> Result<(), StoreError> + Send + 'static,
    ) -> bool {
        let job: Job = Box::new(move |conn| {
            if let Err(e) = conn.client().and_then(f) {
                tracing::warn!(error = %e, "a PostgreSQL write of derived data failed");
            }
        });
        !matches!(self.tx.try_send(job), Err(TrySendError::Full(_)))
    }
}

/// Entries by index, and the bytes they hold.
type EntryCache = (LruCache<u64, Arc<Vec<u8>>>, usize);
/// Full tiles by (level, index).
type TileCache = LruCache<(u8, u64), Arc<Vec<u8>>>;

/// The log in PostgreSQL.
pub struct PgStore {
    /// Connections for the HTTP layer's (and anyone's) reads.
    public_readers: Workers,
    /// Connections for the sequencer's reads (see
    /// [`super::this_thread_sequences`]).
    sequencer_readers: Workers,
    /// The sequencer's connection: it holds the lock's transaction.
    sequencer: Workers,
    /// The witness rounds' connection (leases and posts), so that a load
    /// of readers does not cost the leader its lease. Connects on first
    /// use: a node without witnesses never opens it.
    board: Workers,
    entries: Mutex<EntryCache>,
    tiles: Mutex<TileCache>,
    options: PgOptions,
    describe: String,
}

/// The schema version this release needs.
pub fn schema_version() -> i32 {
    MIGRATIONS.last().map_or(0, |m| m.0)
}

/// Applies the migrations `url`'s database lacks, under an advisory lock;
/// returns those applied (none: it was up to date). Idempotent.
pub fn migrate(url: &str) -> Result<Vec<(i32, &'static str)>, StoreError> {
    let config = config(url)?;
    std::thread::scope(|s| {
        // The blocking client makes its own runtime: not on a thread that
        // may be inside another.
        s.spawn(|| {
            let mut client = config.connect(tls()?).map_err(pg)?;
            let mut tx = client.transaction().map_err(pg)?;
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
                .map_err(pg)?;
            tx.batch_execute(
                "CREATE TABLE IF NOT EXISTS gatelog_migrations (
                    version integer PRIMARY KEY,
                    name text NOT NULL,
                    applied_at timestamptz NOT NULL DEFAULT now()
                )",
            )
            .map_err(pg)?;
            let done: Vec<i32> = tx
                .query("SELECT version FROM gatelog_migrations", &[])
                .map_err(pg)?
                .iter()
                .map(|r| r.get(0))
                .collect();
            if let Some(newer) = done.iter().find(|v| **v > schema_version()) {
                return Err(StoreError::Refused(format!(
                    "the database's schema is at version {newer}, newer than this release's {}: upgrade gatelog",
                    schema_version()
                )));
            }
            let mut applied = vec![];
            for (version, name, sql) in MIGRATIONS {
                if done.contains(version) {
                    continue;
                }
                tx.batch_execute(sql).map_err(pg)?;
                tx.execute(
                    "INSERT INTO gatelog_migrations (version, name) VALUES ($1, $2)",
                    &[version, name],
                )
                .map_err(pg)?;
                applied.push((*version, *name));
            }
            tx.commit().map_err(pg)?;
            Ok(applied)
        })
        .join()
        .unwrap_or_else(|_| Err(StoreError::Postgres("migration thread panicked".into())))
    })
}

impl PgStore {
    /// Connects to `url` and checks the schema is this release's.
    pub fn connect(url: &str, options: PgOptions) -> Result<PgStore, StoreError> {
        let mut config = config(url)?;
        config.connect_timeout(options.connect_timeout);
        let ms = options.statement_timeout.as_millis();
        let readers_settings = format!("SET statement_timeout = {ms}");
        // A node that stalls holding the lock must not stall the others.
        let sequencer_settings = format!(
            "SET statement_timeout = {ms}; SET lock_timeout = {ms}; SET idle_in_transaction_session_timeout = {}",
            ms.max(1000)
        );
        let cap = |n: usize| NonZeroUsize::new(n.max(1)).expect("at least 1");
        let tls = tls()?;
        let store = PgStore {
            public_readers: Workers::start(
                &config,
                &tls,
                &readers_settings,
                options.read_connections,
                "pg-read",
            ),
            sequencer_readers: Workers::start(&config, &tls, &readers_settings, 2, "pg-seq-read"),
            sequencer: Workers::start(&config, &tls, &sequencer_settings, 1, "pg-sequencer"),
            board: Workers::start(&config, &tls, &readers_settings, 1, "pg-witnessing"),
            entries: Mutex::new((LruCache::unbounded(), 0)),
            tiles: Mutex::new(LruCache::new(cap(options.tile_cache_tiles))),
            describe: describe(&config),
            options,
        };
        let version: Option<i32> = store.readers().run(|c| {
            let exists: bool = c
                .query_one("SELECT to_regclass('gatelog_migrations') IS NOT NULL", &[])
                .map_err(pg)?
                .get(0);
            if !exists {
                return Ok(None);
            }
            Ok(
                c.query_one("SELECT max(version) FROM gatelog_migrations", &[])
                    .map_err(pg)?
                    .get(0),
            )
        })?;
        match version {
            Some(v) if v == schema_version() => Ok(store),
            Some(v) if v > schema_version() => Err(StoreError::Refused(format!(
                "{}: the schema is at version {v}, newer than this release's {}: upgrade gatelog",
                store.describe,
                schema_version()
            ))),
            _ => Err(StoreError::Refused(format!(
                "{}: the schema is at version {}, this release needs {}: run `gatelog db migrate --store URL` first",
                store.describe,
                version.unwrap_or(0),
                schema_version()
            ))),
        }
    }

    /// The entry mode recorded for the log (`gatelog` or `opaque`),
    /// recorded now if none was: one cluster serves one kind of log.
    pub fn check_entry_mode(&self, want: &'static str) -> Result<(), StoreError> {
        let held: Option<String> = self.readers().run(move |c| {
            c.execute(
                "UPDATE gatelog_head SET entries_mode = $1 WHERE entries_mode IS NULL",
                &[&want],
            )
            .map_err(pg)?;
            Ok(c.query_one("SELECT entries_mode FROM gatelog_head", &[])
                .map_err(pg)?
                .get(0))
        })?;
        match held.as_deref() {
            Some(h) if h == want => Ok(()),
            h => Err(StoreError::Refused(format!(
                "{} holds a log of {} entries; it cannot be served with --entries {want}",
                self.describe,
                h.unwrap_or("unknown")
            ))),
        }
    }

    /// The connections for this thread's reads.
    fn readers(&self) -> &Workers {
        match super::on_sequencer_thread() {
            true => &self.sequencer_readers,
            false => &self.public_readers,
        }
    }

    /// Copies the log of `size` entries signed by `checkpoint` from
    /// `source` into this (empty) store, in one transaction under the
    /// sequencing lock: nodes see nothing of it until it is whole.
    /// `refused` names, for an entry that is the log's refusal record, the
    /// leaf hash of the entry it refused. `progress` gets entries copied.
    pub fn import(
        &self,
        source: &dyn LogStore,
        size: u64,
        checkpoint: &str,
        refused: &dyn Fn(&[u8]) -> Option<Hash>,
        progress: &dyn Fn(u64),
    ) -> Result<(), StoreError> {
        let lock = self.take_lock()?;
        if lock.checkpoint.is_some() {
            return Err(StoreError::Refused(format!(
                "{} already holds a log: import only into a new database",
                self.describe
            )));
        }
        // The lock's transaction, on its connection, chunk by chunk.
        let generation = lock.generation;
        let on_lock = |sql: &'static str, params: Params| {
            self.sequencer.run_in(Some(generation), move |c, _| {
                let refs = params.refs();
                c.execute(sql, &refs).map(|_| ()).map_err(pg)
            })
        };
        const CHUNK: u64 = 4096;
        let mut next = 0;
        while next < size {
            let entries = source.entries(next, CHUNK.min(size - next))?;
            if entries.is_empty() {
                return Err(StoreError::Corrupt(format!("entry {next} is missing")));
            }
            let copied = entries.len() as u64;
            let idx: Vec<i64> = (next..next + copied).map(|i| i as i64).collect();
            let leaves: Vec<Vec<u8>> = entries.iter().map(|e| leaf_hash(e).to_vec()).collect();
            let (mut r_leaves, mut r_idx) = (vec![], vec![]);
            for (k, e) in entries.iter().enumerate() {
                if let Some(leaf) = refused(e) {
                    r_leaves.push(leaf.to_vec());
                    r_idx.push(next as i64 + k as i64);
                }
            }
            on_lock(
                "INSERT INTO gatelog_entries (idx, leaf, data)
                 SELECT * FROM unnest($1::int8[], $2::bytea[], $3::bytea[])",
                Params::Entries(idx, leaves, entries),
            )?;
            if !r_leaves.is_empty() {
                on_lock(
                    "INSERT INTO gatelog_refusals (leaf, record)
                     SELECT * FROM unnest($1::bytea[], $2::int8[])
                     ON CONFLICT (leaf) DO NOTHING",
                    Params::Refusals(r_leaves, r_idx),
                )?;
            }
            next += copied;
            progress(next);
        }
        // Every tile of the tree of `size`, full or partial.
        let mut level = 0u8;
        while level_len(level, size) > 0 {
            let tiles = level_len(level, size).div_ceil(TILE_WIDTH);
            let mut index = 0;
            while index < tiles {
                let end = (index + CHUNK).min(tiles);
                let (mut levels, mut idx, mut data) = (vec![], vec![], vec![]);
                for i in index..end {
                    let tile = source.read_tile(level, i)?.ok_or_else(|| {
                        StoreError::Corrupt(format!("tile {level}/{i} is missing"))
                    })?;
                    levels.push(i16::from(level));
                    idx.push(i as i64);
                    data.push(tile.to_vec());
                }
                on_lock(
                    "INSERT INTO gatelog_tiles (level, idx, data)
                     SELECT * FROM unnest($1::int2[], $2::int8[], $3::bytea[])",
                    Params::Tiles(levels, idx, data),
                )?;
                index = end;
            }
            level += 1;
        }
        Box::new(lock).commit(&Commit {
            entries: &[],
            tiles: &Default::default(),
            checkpoint,
            refused: &[],
        })
    }

    /// Takes the sequencing lock on the sequencer's connection.
    fn take_lock(&self) -> Result<PgSequencing<'_>, StoreError> {
        let (checkpoint, skew_ms, generation) = self.sequencer.run_in(None, |c, generation| {
            c.batch_execute("BEGIN").map_err(pg)?;
            let locked = (|| {
                let row = c.query_one("SELECT checkpoint FROM gatelog_head FOR UPDATE", &[])?;
                // The clocks are compared once the lock is held, so that
                // the wait for it is not mistaken for skew.
                let before = now_ms();
                let theirs: i64 = c
                    .query_one(
                        "SELECT (extract(epoch FROM clock_timestamp()) * 1000)::int8",
                        &[],
                    )?
                    .get(0);
                let after = now_ms();
                Ok((
                    row.get::<_, Option<String>>(0),
                    before / 2 + after / 2 - theirs,
                ))
            })();
            let (checkpoint, skew) = locked
                .inspect_err(|_: &postgres::Error| {
                    let _ = c.batch_execute("ROLLBACK");
                })
                .map_err(pg)?;
            Ok((checkpoint, skew, generation))
        })?;
        Ok(PgSequencing {
            store: self,
            checkpoint,
            skew_ms,
            generation,
            done: false,
        })
    }

    fn cached_entry(&self, index: u64) -> Option<Arc<Vec<u8>>> {
        let mut c = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        c.0.get(&index).cloned()
    }

    fn cache_entries(&self, start: u64, entries: &[Vec<u8>]) {
        let mut c = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        for (k, e) in entries.iter().enumerate() {
            let bytes = e.len() + 64;
            if c.0.put(start + k as u64, Arc::new(e.clone())).is_none() {
                c.1 += bytes;
            }
        }
        while c.1 > self.options.entry_cache_bytes {
            match c.0.pop_lru() {
                Some((_, e)) => c.1 -= e.len() + 64,
                None => break,
            }
        }
    }
}

/// The parameters of one of the import's statements, owned (they go to
/// the connection's thread).
enum Params {
    Entries(Vec<i64>, Vec<Vec<u8>>, Vec<Vec<u8>>),
    Refusals(Vec<Vec<u8>>, Vec<i64>),
    Tiles(Vec<i16>, Vec<i64>, Vec<Vec<u8>>),
}

impl Params {
    fn refs(&self) -> Vec<&(dyn postgres::types::ToSql + Sync)> {
        match self {
            Params::Entries(a, b, c) => vec![a, b, c],
            Params::Refusals(a, b) => vec![a, b],
            Params::Tiles(a, b, c) => vec![a, b, c],
        }
    }
}

fn index(v: i64, what: &str) -> Result<u64, StoreError> {
    u64::try_from(v).map_err(|_| StoreError::Corrupt(format!("{what} {v} is negative")))
}

impl LogStore for PgStore {
    fn checkpoint(&self) -> Result<Option<String>, StoreError> {
        self.readers().run(|c| {
            Ok(c.query_one("SELECT checkpoint FROM gatelog_head", &[])
                .map_err(pg)?
                .get(0))
        })
    }

    fn index_of(&self, leaf: &Hash) -> Result<Option<u64>, StoreError> {
        let leaf = leaf.to_vec();
        let found: Option<i64> = self.readers().run(move |c| {
            Ok(
                c.query_opt("SELECT idx FROM gatelog_entries WHERE leaf = $1", &[&leaf])
                    .map_err(pg)?
                    .map(|r| r.get(0)),
            )
        })?;
        found.map(|i| index(i, "leaf index")).transpose()
    }

    fn indices_of(&self, leaves: &[Hash]) -> Result<HashMap<Hash, u64>, StoreError> {
        if leaves.is_empty() {
            return Ok(HashMap::new());
        }
        let asked: Vec<Vec<u8>> = leaves.iter().map(|l| l.to_vec()).collect();
        let rows: Vec<(Vec<u8>, i64)> = self.readers().run(move |c| {
            Ok(c.query(
                "SELECT leaf, idx FROM gatelog_entries WHERE leaf = ANY($1)",
                &[&asked],
            )
            .map_err(pg)?
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect())
        })?;
        rows.into_iter()
            .map(|(leaf, i)| {
                let leaf: Hash = leaf
                    .try_into()
                    .map_err(|_| StoreError::Corrupt("a leaf hash is not 32 bytes".into()))?;
                Ok((leaf, index(i, "leaf index")?))
            })
            .collect()
    }

    fn refusal_of(&self, refused: &Hash) -> Result<Option<u64>, StoreError> {
        let leaf = refused.to_vec();
        let found: Option<i64> = self.readers().run(move |c| {
            Ok(c.query_opt(
                "SELECT record FROM gatelog_refusals WHERE leaf = $1",
                &[&leaf],
            )
            .map_err(pg)?
            .map(|r| r.get(0)))
        })?;
        found.map(|i| index(i, "refusal index")).transpose()
    }

    fn entry(&self, index: u64) -> Result<Option<Vec<u8>>, StoreError> {
        if let Some(e) = self.cached_entry(index) {
            return Ok(Some(e.to_vec()));
        }
        let found = self.entries(index, 1)?;
        Ok(found.into_iter().next())
    }

    fn entries(&self, start: u64, count: u64) -> Result<Vec<Vec<u8>>, StoreError> {
        let mut out = Vec::with_capacity(count as usize);
        for i in start..start.saturating_add(count) {
            match self.cached_entry(i) {
                Some(e) => out.push(e.to_vec()),
                None => break,
            }
        }
        if out.len() as u64 == count {
            return Ok(out);
        }
        let from = start + out.len() as u64;
        let (lo, hi) = (from as i64, start.saturating_add(count) as i64);
        let rows: Vec<(i64, Vec<u8>)> = self.readers().run(move |c| {
            Ok(c.query(
                "SELECT idx, data FROM gatelog_entries WHERE idx >= $1 AND idx < $2 ORDER BY idx",
                &[&lo, &hi],
            )
            .map_err(pg)?
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect())
        })?;
        let mut read = Vec::with_capacity(rows.len());
        for (k, (idx, data)) in rows.into_iter().enumerate() {
            if idx != lo + k as i64 {
                break;
            }
            read.push(data);
        }
        self.cache_entries(from, &read);
        out.extend(read);
        Ok(out)
    }

    fn keep_closed_chain(&self, chain: &[u8; 16], entries: &[u64]) -> Result<(), StoreError> {
        let (chain, value) = (chain.to_vec(), encode_indices(entries));
        let queued = self.readers().spawn(move |c| {
            c.execute(
                "INSERT INTO gatelog_closed_chains (chain, entries) VALUES ($1, $2)
                 ON CONFLICT (chain) DO UPDATE SET entries = excluded.entries",
                &[&chain, &value],
            )
            .map_err(pg)
            .map(|_| ())
        });
        match queued {
            true => Ok(()),
            false => Err(StoreError::Postgres(
                "too many writes queued; a closed chain's entries were not kept".into(),
            )),
        }
    }

    fn closed_chain(&self, chain: &[u8; 16]) -> Result<Option<Vec<u64>>, StoreError> {
        let chain = chain.to_vec();
        let found: Option<Vec<u8>> = self.readers().run(move |c| {
            Ok(c.query_opt(
                "SELECT entries FROM gatelog_closed_chains WHERE chain = $1",
                &[&chain],
            )
            .map_err(pg)?
            .map(|r| r.get(0)))
        })?;
        found.map(|v| decode_indices(&v)).transpose()
    }

    fn lock(&self) -> Result<Box<dyn Sequencing + '_>, StoreError> {
        Ok(Box::new(self.take_lock()?))
    }

    fn shared(&self) -> Option<Duration> {
        Some(self.options.follow_interval)
    }

    fn describe(&self) -> String {
        self.describe.clone()
    }

    fn witness_board(&self) -> Option<&dyn WitnessBoard> {
        Some(self)
    }
}

impl WitnessBoard for PgStore {
    fn lead(&self, node: &str, lease: Duration) -> Result<bool, StoreError> {
        let (node, secs) = (node.to_string(), lease.as_secs_f64());
        self.board.run(move |c| {
            // The store's clock decides, so the nodes' clocks need not agree.
            let taken = c
                .execute(
                    "UPDATE gatelog_witnessing
                     SET leader = $1, lease_until = clock_timestamp() + make_interval(secs => $2)
                     WHERE leader = $1 OR leader IS NULL OR lease_until IS NULL
                        OR lease_until < clock_timestamp()",
                    &[&node, &secs],
                )
                .map_err(pg)?;
            Ok(taken == 1)
        })
    }

    fn post(
        &self,
        node: &str,
        size: u64,
        posted: &Posted,
        quorate: bool,
    ) -> Result<bool, StoreError> {
        let (node, posted) = (node.to_string(), posted.clone());
        let size = i64::try_from(size)
            .map_err(|_| StoreError::Refused(format!("size {size} beyond PostgreSQL's bigint")))?;
        self.board.run(move |c| {
            let done = c
                .execute(
                    "UPDATE gatelog_witnessing
                     SET round_size = $2, round_checkpoint = $3, round_cosignatures = $4,
                         quorate_size = CASE WHEN $5 THEN $2 ELSE quorate_size END,
                         quorate_checkpoint = CASE WHEN $5 THEN $3 ELSE quorate_checkpoint END,
                         quorate_cosignatures = CASE WHEN $5 THEN $4 ELSE quorate_cosignatures END
                     WHERE leader = $1 AND lease_until >= clock_timestamp() AND round_size <= $2",
                    &[
                        &node,
                        &size,
                        &posted.checkpoint,
                        &posted.cosignatures,
                        &quorate,
                    ],
                )
                .map_err(pg)?;
            Ok(done == 1)
        })
    }

    fn resign(&self, node: &str) -> Result<(), StoreError> {
        let node = node.to_string();
        self.board.run(move |c| {
            c.execute(
                "UPDATE gatelog_witnessing SET leader = NULL, lease_until = NULL WHERE leader = $1",
                &[&node],
            )
            .map_err(pg)?;
            Ok(())
        })
    }

    fn posted(&self) -> Result<(Option<Posted>, Option<Posted>), StoreError> {
        self.board.run(|c| {
            let row = c
                .query_one(
                    "SELECT round_checkpoint, round_cosignatures,
                            quorate_checkpoint, quorate_cosignatures
                     FROM gatelog_witnessing",
                    &[],
                )
                .map_err(pg)?;
            let pair = |a: usize| -> Option<Posted> {
                Some(Posted {
                    checkpoint: row.get::<_, Option<String>>(a)?,
                    cosignatures: row.get::<_, Option<String>>(a + 1)?,
                })
            };
            Ok((pair(0), pair(2)))
        })
    }
}

impl TileReader for PgStore {
    type Error = StoreError;
    fn read_tile(&self, level: u8, index: u64) -> Result<Option<Arc<Vec<u8>>>, StoreError> {
        let key = (level, index);
        if let Some(t) = self
            .tiles
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
        {
            return Ok(Some(t.clone()));
        }
        let (l, i) = (i16::from(level), index as i64);
        let tile: Option<Vec<u8>> = self.readers().run(move |c| {
            Ok(c.query_opt(
                "SELECT data FROM gatelog_tiles WHERE level = $1 AND idx = $2",
                &[&l, &i],
            )
            .map_err(pg)?
            .map(|r| r.get(0)))
        })?;
        let tile = tile.map(Arc::new);
        // Only a full tile is final; a partial one grows with the tree.
        if let Some(t) = tile
            .as_ref()
            .filter(|t| t.len() == TILE_WIDTH as usize * HASH_SIZE)
        {
            self.tiles
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .put(key, t.clone());
        }
        Ok(tile)
    }
}

/// The lock's transaction on the sequencer's connection.
struct PgSequencing<'a> {
    store: &'a PgStore,
    checkpoint: Option<String>,
    skew_ms: i64,
    /// The sequencer connection's generation the lock was taken on.
    generation: u64,
    done: bool,
}

impl Sequencing for PgSequencing<'_> {
    fn checkpoint(&self) -> Option<&str> {
        self.checkpoint.as_deref()
    }

    fn clock_skew_ms(&self) -> i64 {
        self.skew_ms
    }

    fn commit(mut self: Box<Self>, c: &Commit<'_>) -> Result<(), StoreError> {
        self.done = true;
        let mut idx = Vec::with_capacity(c.entries.len());
        let mut leaves = Vec::with_capacity(c.entries.len());
        let mut data = Vec::with_capacity(c.entries.len());
        for (i, leaf, bytes) in c.entries {
            idx.push(*i as i64);
            leaves.push(leaf.to_vec());
            data.push(bytes.to_vec());
        }
        let refused_leaves: Vec<Vec<u8>> = c.refused.iter().map(|r| r.0.to_vec()).collect();
        let refused_records: Vec<i64> = c.refused.iter().map(|r| r.1 as i64).collect();
        let mut levels = Vec::with_capacity(c.tiles.len());
        let mut tile_idx = Vec::with_capacity(c.tiles.len());
        let mut tiles = Vec::with_capacity(c.tiles.len());
        for ((level, index), tile) in c.tiles {
            levels.push(i16::from(*level));
            tile_idx.push(*index as i64);
            tiles.push(tile.as_slice().to_vec());
        }
        let checkpoint = c.checkpoint.to_string();
        let old = self.checkpoint.clone();
        self.store.sequencer.run_in(Some(self.generation), move |c, _| {
            let result = (|| {
                if !idx.is_empty() {
                    c.execute(
                        "INSERT INTO gatelog_entries (idx, leaf, data)
                         SELECT * FROM unnest($1::int8[], $2::bytea[], $3::bytea[])",
                        &[&idx, &leaves, &data],
                    )?;
                }
                if !refused_leaves.is_empty() {
                    c.execute(
                        "INSERT INTO gatelog_refusals (leaf, record)
                         SELECT * FROM unnest($1::bytea[], $2::int8[])",
                        &[&refused_leaves, &refused_records],
                    )?;
                }
                if !levels.is_empty() {
                    c.execute(
                        "INSERT INTO gatelog_tiles (level, idx, data)
                         SELECT * FROM unnest($1::int2[], $2::int8[], $3::bytea[])
                         ON CONFLICT (level, idx) DO UPDATE SET data = excluded.data",
                        &[&levels, &tile_idx, &tiles],
                    )?;
                }
                // The head must still be the one read under the lock.
                c.execute(
                    "UPDATE gatelog_head SET checkpoint = $1 WHERE checkpoint IS NOT DISTINCT FROM $2",
                    &[&checkpoint, &old],
                )
            })();
            match result {
                // No timeout may cut the commit's wait for the synchronous
                // standby: PostgreSQL would then commit locally only, and
                // say so only in a warning.
                Ok(1) => c
                    .batch_execute("SET LOCAL statement_timeout = 0; COMMIT")
                    .map_err(pg),
                Ok(_) => {
                    let _ = c.batch_execute("ROLLBACK");
                    Err(StoreError::Postgres(
                        "the log's head moved under the sequencing lock; nothing committed".into(),
                    ))
                }
                Err(e) => {
                    let _ = c.batch_execute("ROLLBACK");
                    Err(pg(e))
                }
            }
        })
    }
}

impl Drop for PgSequencing<'_> {
    fn drop(&mut self) {
        if !self.done {
            // Nothing decided under the lock is committed: let it go.
            let _ = self.store.sequencer.run_in(Some(self.generation), |c, _| {
                c.batch_execute("ROLLBACK").map_err(pg)
            });
        }
    }
}
