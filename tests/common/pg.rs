//! A real PostgreSQL server for tests: `initdb` into a temporary
//! directory and `postgres` on a free loopback port, as the `postgres`
//! user when the tests run as root (`initdb` refuses root). Killed with
//! the test process (a watchdog stops it if the process dies first).
//!
//! Missing PostgreSQL fails the test under CI=true and skips it (with a
//! message) elsewhere.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The directory holding `initdb` and `postgres`: $GATELOG_PG_BIN, the
/// newest /usr/lib/postgresql/*/bin (Debian), or PATH.
fn bin_dir() -> Option<PathBuf> {
    if let Some(d) = std::env::var_os("GATELOG_PG_BIN") {
        return Some(PathBuf::from(d));
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((v, bin))
        })
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return Some(bin);
    }
    std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p).find(|d| d.join("initdb").exists() && d.join("postgres").exists())
    })
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(1).map(|u| u == "0"))
        })
        .unwrap_or(false)
}

/// A command run as the `postgres` user when we are root.
fn as_owner(program: &Path) -> Command {
    if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

/// A temporary directory the PostgreSQL server's user owns.
fn owned_tempdir() -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("gatelog-pg")
        .tempdir()
        .unwrap();
    if is_root() {
        let ok = Command::new("chown")
            .args(["postgres:postgres"])
            .arg(dir.path())
            .status()
            .unwrap();
        assert!(ok.success(), "chown of the PostgreSQL directory");
    }
    dir
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One PostgreSQL server.
pub struct Pg {
    pub port: u16,
    pub data: PathBuf,
    bin: PathBuf,
    child: Option<Child>,
    _dir: tempfile::TempDir,
}

/// The superuser the tests connect as.
pub const USER: &str = "gatelog";

impl Pg {
    /// A fresh server, or None (skipped) when PostgreSQL is not installed
    /// outside CI.
    pub fn start() -> Option<Pg> {
        Self::start_with(&[])
    }

    /// A fresh server with extra `postgresql.conf` lines.
    pub fn start_with(conf: &[&str]) -> Option<Pg> {
        let Some(bin) = bin_dir() else {
            if std::env::var("CI").as_deref() == Ok("true") {
                panic!("PostgreSQL is not installed (initdb not found; .ci/run installs the postgresql package)");
            }
            eprintln!("SKIPPED: PostgreSQL is not installed (no initdb); apt-get install postgresql to run this test");
            return None;
        };
        let dir = owned_tempdir();
        let data = dir.path().join("data");
        let out = as_owner(&bin.join("initdb"))
            .args(["-A", "trust", "-U", USER, "--no-sync", "-D"])
            .arg(&data)
            .output()
            .expect("running initdb");
        assert!(
            out.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut lines = vec![
            "listen_addresses = '127.0.0.1'".to_string(),
            format!("unix_socket_directories = '{}'", dir.path().display()),
            "fsync = on".into(),
            "synchronous_commit = on".into(),
            "max_connections = 200".into(),
        ];
        lines.extend(conf.iter().map(|l| l.to_string()));
        let conf_path = data.join("postgresql.auto.conf");
        let mut text = std::fs::read_to_string(&conf_path).unwrap_or_default();
        text.push_str(&lines.join("\n"));
        text.push('\n');
        std::fs::write(&conf_path, text).unwrap();
        let mut pg = Pg {
            port: 0,
            data,
            bin,
            child: None,
            _dir: dir,
        };
        pg.run();
        Some(pg)
    }

    /// A primary that streams to standbys; with
    /// [`Pg::require_sync_standby`] every commit waits for one
    /// (`synchronous_commit = on`, `synchronous_standby_names = '*'`).
    pub fn start_primary() -> Option<Pg> {
        Self::start_with(&["wal_level = replica", "max_wal_senders = 10"])
    }

    /// From now on every commit waits for a synchronous standby.
    pub fn require_sync_standby(&self) {
        self.psql(
            "postgres",
            "ALTER SYSTEM SET synchronous_standby_names = '*'",
        )
        .unwrap();
        self.psql("postgres", "SELECT pg_reload_conf()").unwrap();
    }

    /// A streaming standby of this primary (`pg_basebackup -R`), started.
    /// It requires no standby of its own (`synchronous_standby_names =
    /// ''`), so that once promoted its commits do not wait for ever.
    pub fn standby(&self) -> Pg {
        let dir = owned_tempdir();
        let data = dir.path().join("data");
        let out = as_owner(&self.bin.join("pg_basebackup"))
            .args([
                "-h",
                "127.0.0.1",
                "-U",
                USER,
                "-R",
                "-X",
                "stream",
                "-c",
                "fast",
                "-p",
            ])
            .arg(self.port.to_string())
            .arg("-D")
            .arg(&data)
            .output()
            .expect("running pg_basebackup");
        assert!(
            out.status.success(),
            "pg_basebackup: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let conf_path = data.join("postgresql.auto.conf");
        let mut text = std::fs::read_to_string(&conf_path).unwrap();
        text.push_str(&format!(
            "synchronous_standby_names = ''\nunix_socket_directories = '{}'\n",
            dir.path().display()
        ));
        std::fs::write(&conf_path, text).unwrap();
        let mut standby = Pg {
            port: 0,
            data,
            bin: self.bin.clone(),
            child: None,
            _dir: dir,
        };
        standby.run();
        standby
    }

    /// Serves TLS with this certificate chain and key (PEM files).
    pub fn enable_tls(&self, cert: &Path, key: &Path) {
        for (from, to) in [(cert, "server.crt"), (key, "server.key")] {
            let to = self.data.join(to);
            std::fs::copy(from, &to).unwrap();
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&to, std::fs::Permissions::from_mode(0o600)).unwrap();
            if is_root() {
                let ok = Command::new("chown")
                    .args(["postgres:postgres"])
                    .arg(&to)
                    .status()
                    .unwrap();
                assert!(ok.success());
            }
        }
        self.psql("postgres", "ALTER SYSTEM SET ssl = on").unwrap();
        self.psql("postgres", "SELECT pg_reload_conf()").unwrap();
    }

    /// Waits until a synchronous standby streams from this primary.
    pub fn wait_for_sync_standby(&self) {
        let started = Instant::now();
        while self
            .psql(
                "postgres",
                "DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_stat_replication WHERE sync_state = 'sync') THEN RAISE EXCEPTION 'no sync standby'; END IF; END $$",
            )
            .is_err()
        {
            assert!(started.elapsed() < Duration::from_secs(30), "no synchronous standby");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Promotes this standby to primary, and waits until it takes writes.
    pub fn promote(&self) {
        self.psql("postgres", "SELECT pg_promote(true, 30)")
            .expect("pg_promote");
    }

    /// Starts (again) `postgres` on a free port.
    pub fn run(&mut self) {
        if self.port == 0 {
            self.port = free_port();
        }
        let log = std::fs::File::create(self.data.with_extension("log")).unwrap();
        // The watchdog: postgres stops when this test process is gone.
        let script = format!(
            "{} -D {} -p {} & pg=$!; while [ -d /proc/{} ] && kill -0 $pg 2>/dev/null; do sleep 1; done; kill -QUIT $pg 2>/dev/null; wait $pg",
            self.bin.join("postgres").display(),
            self.data.display(),
            self.port,
            std::process::id()
        );
        let child = as_owner(Path::new("/bin/sh"))
            .args(["-c", &script])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("starting postgres");
        self.child = Some(child);
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "postgres did not start: {}",
                std::fs::read_to_string(self.data.with_extension("log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        // Listening is not yet accepting: wait for a query to work.
        while self.psql("postgres", "SELECT 1").is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "postgres not ready"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The server's postmaster pid.
    pub fn pid(&self) -> u32 {
        let text = std::fs::read_to_string(self.data.join("postmaster.pid")).unwrap();
        text.lines().next().unwrap().trim().parse().unwrap()
    }

    /// kill -9 of the server, as when its machine dies: the postmaster
    /// (stopped first, so that it restarts nothing) and every backend.
    pub fn kill9(&mut self) {
        let pid = self.pid().to_string();
        let _ = Command::new("kill").args(["-STOP", &pid]).status();
        let _ = Command::new("pkill").args(["-9", "-P", &pid]).status();
        let _ = Command::new("kill").args(["-9", &pid]).status();
        if let Some(mut c) = self.child.take() {
            let _ = c.wait();
        }
    }

    /// The URL of database `db`.
    pub fn url(&self, db: &str) -> String {
        format!("postgres://{USER}@127.0.0.1:{}/{db}", self.port)
    }

    /// Runs `sql` on `db`; its error as text.
    pub fn psql(&self, db: &str, sql: &str) -> Result<(), String> {
        let text = |e: postgres::Error| match e.as_db_error() {
            Some(db) => db.message().to_string(),
            None => e.to_string(),
        };
        let url = self.url(db);
        std::thread::scope(|s| {
            s.spawn(|| {
                let mut c = postgres::Client::connect(&url, postgres::NoTls).map_err(text)?;
                c.batch_execute(sql).map_err(text)
            })
            .join()
            .unwrap()
        })
    }

    /// The first column of the first row `sql` returns, as text.
    pub fn query_text(&self, db: &str, sql: &str) -> Result<String, String> {
        let url = self.url(db);
        std::thread::scope(|s| {
            s.spawn(|| {
                let mut c =
                    postgres::Client::connect(&url, postgres::NoTls).map_err(|e| e.to_string())?;
                let row = c.query_one(sql, &[]).map_err(|e| e.to_string())?;
                row.try_get::<_, String>(0).map_err(|e| e.to_string())
            })
            .join()
            .unwrap()
        })
    }

    /// A new, migrated database `db`.
    pub fn database(&self, db: &str) -> String {
        self.psql("postgres", &format!("CREATE DATABASE {db}"))
            .expect("CREATE DATABASE");
        let url = self.url(db);
        let (code, out) = super::run_gatelog(&["db", "migrate", "--store", &url]);
        assert_eq!(code, 0, "gatelog db migrate: {out}");
        url
    }
}

impl Drop for Pg {
    fn drop(&mut self) {
        if self.child.is_some() {
            let _ = Command::new("kill")
                .args(["-QUIT", &self.pid().to_string()])
                .status();
            if let Some(mut c) = self.child.take() {
                let _ = c.wait();
            }
        }
    }
}

/// Whether this test run puts the log core's suite on PostgreSQL
/// (`GATELOG_TEST_STORE=postgres`, as `tools/test` runs it the second
/// time); otherwise on RocksDB.
pub fn suite_on_postgres() -> bool {
    std::env::var("GATELOG_TEST_STORE").as_deref() == Ok("postgres")
}

/// The server shared by the suite's tests on PostgreSQL.
fn shared() -> &'static Pg {
    static PG: OnceLock<Pg> = OnceLock::new();
    PG.get_or_init(|| Pg::start().expect("GATELOG_TEST_STORE=postgres needs PostgreSQL"))
}

/// The flags that put a server for `data_dir` on PostgreSQL: its own
/// database (made on first use, so a restart finds its log) and a log key
/// beside the directory, with the origin `args` name.
pub fn store_flags(data_dir: &Path, args: &[&str]) -> Vec<String> {
    let pg = shared();
    let name = format!(
        "g{}",
        data_dir
            .to_string_lossy()
            .bytes()
            .fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b))
                .wrapping_mul(0x100_0000_01b3))
    );
    let key = data_dir.with_extension("log-key");
    if !key.exists() {
        std::fs::create_dir_all(data_dir).unwrap();
        pg.database(&name);
        let origin = args
            .iter()
            .position(|a| *a == "--origin")
            .map_or("test.example/log", |i| args[i + 1]);
        let (code, out) = super::run_gatelog(&[
            "db",
            "log-key",
            "--origin",
            origin,
            "--out",
            key.to_str().unwrap(),
        ]);
        assert_eq!(code, 0, "gatelog db log-key: {out}");
    }
    vec![
        "--store".into(),
        pg.url(&name),
        "--log-key".into(),
        key.to_str().unwrap().into(),
    ]
}
