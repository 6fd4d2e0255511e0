//! Shared test helpers: the conformance vectors' location, a real server
//! process, and a minimal HTTP/1.1 client.
#![allow(dead_code)]

pub mod acked;
#[cfg(feature = "server")]
pub mod pg;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The shared conformance vectors: `$GATELOG_VECTORS`, else
/// `../shared/vectors` beside the repository. None (with a message) when
/// missing outside CI; a failure when missing under CI=true.
pub fn vectors_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("GATELOG_VECTORS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/vectors"));
    if dir.is_dir() {
        return Some(dir);
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!(
            "conformance vectors missing at {} (set GATELOG_VECTORS)",
            dir.display()
        );
    }
    eprintln!(
        "SKIPPED: conformance vectors not found at {}; set GATELOG_VECTORS to run these tests",
        dir.display()
    );
    None
}

/// A response: status, headers (lower-case names), body.
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "body is not JSON ({e}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    pub fn text(&self) -> String {
        String::from_utf8(self.body.clone()).expect("UTF-8 body")
    }

    /// The `error.code` of a JSON error body.
    pub fn error_code(&self) -> String {
        self.json()["error"]["code"]
            .as_str()
            .unwrap_or("")
            .to_string()
    }
}

/// One HTTP/1.1 request on a fresh connection.
pub fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: &[u8],
) -> std::io::Result<HttpResponse> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes())?;
    s.write_all(body)?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    parse_response(&raw)
}

/// An HTTP/1.1 response read whole (the connection closed after it).
pub fn parse_response(raw: &[u8]) -> std::io::Result<HttpResponse> {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| std::io::Error::other("no end of headers"))?;
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other("bad status line"))?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Ok(HttpResponse {
        status,
        headers,
        body: raw[split + 4..].to_vec(),
    })
}

/// GET that must succeed with 200.
pub fn get_ok(addr: SocketAddr, path: &str) -> HttpResponse {
    let r = http(addr, "GET", path, b"").expect("GET");
    assert_eq!(
        r.status,
        200,
        "GET {path}: {}",
        String::from_utf8_lossy(&r.body)
    );
    r
}

/// The real `gatelog serve` binary, on a free port.
pub struct Server {
    pub child: Child,
    pub addr: SocketAddr,
    pub vkey: String,
}

impl Server {
    /// Starts `gatelog serve --data-dir DIR --listen 127.0.0.1:0
    /// --entries opaque ARGS...` (a generic log) and waits until it listens.
    pub fn start(data_dir: &Path, args: &[&str]) -> Server {
        let mut all = vec!["--entries", "opaque", "--anonymous-writes", "yes"];
        all.extend_from_slice(args);
        Self::start_command("serve", data_dir, &all)
    }

    /// Starts `gatelog serve` on gatelog entries (the default) with ARGS;
    /// in development mode (DATA_DIR/admin.key, a default policy) unless
    /// ARGS name the admins.
    pub fn start_gatelog(data_dir: &Path, args: &[&str]) -> Server {
        let mut all = args.to_vec();
        if !args.contains(&"--admin-key") && !args.contains(&"--dev") {
            all.push("--dev");
        }
        Self::start_command("serve", data_dir, &all)
    }

    /// The log's origin (its key's name).
    pub fn origin(&self) -> &str {
        self.vkey.split('+').next().unwrap_or_default()
    }

    /// Starts `gatelog SUBCOMMAND --data-dir DIR --listen 127.0.0.1:0 ARGS...`
    /// (without the --listen if ARGS has one) and waits until it listens.
    pub fn start_command(subcommand: &str, data_dir: &Path, args: &[&str]) -> Server {
        Self::spawn(subcommand, data_dir, args, Stdio::inherit(), &[])
    }

    /// As [`Server::start_command`], with `env` added to its environment.
    pub fn start_with_env(
        subcommand: &str,
        data_dir: &Path,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Server {
        Self::spawn(subcommand, data_dir, args, Stdio::inherit(), env)
    }

    /// As [`Server::start_command`], its stderr (the log lines) into `stderr`.
    pub fn start_logging_to(
        subcommand: &str,
        data_dir: &Path,
        args: &[&str],
        stderr: std::fs::File,
    ) -> Server {
        Self::spawn(subcommand, data_dir, args, stderr.into(), &[])
    }

    fn spawn(
        subcommand: &str,
        data_dir: &Path,
        args: &[&str],
        stderr: Stdio,
        env: &[(&str, &str)],
    ) -> Server {
        #[cfg(feature = "server")]
        let store =
            match subcommand == "serve" && pg::suite_on_postgres() && !args.contains(&"--store") {
                true => pg::store_flags(data_dir, args),
                false => vec![],
            };
        #[cfg(not(feature = "server"))]
        let store: Vec<String> = vec![];
        let mut child = Command::new(env!("CARGO_BIN_EXE_gatelog"))
            .arg(subcommand)
            .arg("--data-dir")
            .arg(data_dir)
            .args(&store)
            .args(if args.contains(&"--listen") {
                &[][..]
            } else {
                &["--listen", "127.0.0.1:0"][..]
            })
            .args(args)
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("starting gatelog");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let (mut addr, mut vkey) = (None, None);
        while addr.is_none() {
            let line = match lines.next() {
                Some(Ok(l)) => l,
                _ => panic!("gatelog exited before listening: {:?}", child.wait()),
            };
            if let Some(a) = line
                .strip_prefix("gatelog: listening on http://")
                .or_else(|| line.strip_prefix("gatelog: listening on https://"))
            {
                addr = Some(a.parse().expect("address"));
            }
            if let Some(k) = line.strip_prefix("gatelog: verifier key ") {
                vkey = Some(k.to_string());
            }
        }
        // Keep draining stdout so the server never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Server {
            child,
            addr: addr.unwrap(),
            // Monitors have no key of their own.
            vkey: vkey.unwrap_or_default(),
        }
    }

    /// kill -9, and reap.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Appends `entry`, which must succeed; returns the JSON answer.
    pub fn append(&self, entry: &[u8]) -> serde_json::Value {
        let r = http(self.addr, "POST", "/v1/entries", entry).expect("POST");
        assert_eq!(
            r.status,
            200,
            "append: {}",
            String::from_utf8_lossy(&r.body)
        );
        r.json()
    }

    /// Signs `statement` with `key` and submits it, bound to this log
    /// unless it names a log already.
    pub fn submit(
        &self,
        key: &gatelog::tlog::note::NoteSigner,
        statement: &gatelog::access::entry::Statement,
    ) -> HttpResponse {
        use prost::Message;
        let mut statement = statement.clone();
        if statement.log_origin.is_empty() {
            statement.log_origin = self.origin().to_string();
        }
        let leaf = gatelog::access::entry::sign(key, &statement).encode_to_vec();
        http(self.addr, "POST", "/v1/entries", &leaf).expect("POST")
    }

    /// Runs `gatelog audit` of this server's log (with `extra` flags) into
    /// `out`: its exit code, its output, and the manifest (null if none).
    pub fn audit(&self, extra: &[&str], out: &Path) -> (i32, String, serde_json::Value) {
        let url = format!("http://{}", self.addr);
        let mut args = vec!["audit", "--log", &url, "--vkey", &self.vkey];
        args.extend_from_slice(extra);
        args.extend(["--out", out.to_str().unwrap()]);
        let (code, output) = run_gatelog(&args);
        let manifest = std::fs::read(out.join("manifest.json"))
            .ok()
            .and_then(|m| serde_json::from_slice(&m).ok())
            .unwrap_or_default();
        (code, output, manifest)
    }

    pub fn tree_size(&self) -> u64 {
        get_ok(self.addr, "/v1/log").json()["tree_size"]
            .as_u64()
            .unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Standard base64 decode that must succeed.
pub fn b64(s: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(s)
        .expect("base64")
}

/// A JSON array of base64 hashes.
pub fn hash_list(v: &serde_json::Value) -> Vec<[u8; 32]> {
    v.as_array()
        .expect("array of hashes")
        .iter()
        .map(|h| b64(h.as_str().unwrap()).try_into().expect("32-byte hash"))
        .collect()
}

/// `gatelog serve --listen 127.0.0.1:0 ARGS --data-dir DIR` on the
/// suite's store (see [`pg::suite_on_postgres`]), to run to its end.
pub fn serve_command(data_dir: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_gatelog"));
    c.args(["serve", "--listen", "127.0.0.1:0"]).args(args);
    #[cfg(feature = "server")]
    if pg::suite_on_postgres() {
        c.args(pg::store_flags(data_dir, args));
    }
    c.arg("--data-dir").arg(data_dir);
    c
}

/// `n` witnesses of the log `log_vkey`, named `witness.example/wI`, each
/// with its data under `dir/wI`; and their `--witness` flags' values,
/// `wI=http://ADDR+VKEY`.
pub fn start_witnesses(dir: &Path, n: usize, log_vkey: &str) -> (Vec<Server>, Vec<String>) {
    let witnesses: Vec<Server> = (0..n)
        .map(|i| {
            let name = format!("witness.example/w{i}");
            let data = dir.join(format!("w{i}"));
            Server::start_command("witness", &data, &["--name", &name, "--log", log_vkey])
        })
        .collect();
    let specs = witnesses
        .iter()
        .enumerate()
        .map(|(i, w)| format!("w{i}=http://{}+{}", w.addr, w.vkey))
        .collect();
    (witnesses, specs)
}

/// Runs `gatelog monitor --listen 127.0.0.1:0 --poll-ms 100 ARGS` with its
/// stdout into `out` until that holds `want` (panics after `within`), then
/// stops it; its stdout so far.
pub fn monitor_until(args: &[&str], out: &Path, want: &str, within: Duration) -> String {
    let file = std::fs::File::create(out).expect("monitor output file");
    let mut child = Command::new(env!("CARGO_BIN_EXE_gatelog"))
        .args(["monitor", "--listen", "127.0.0.1:0", "--poll-ms", "100"])
        .args(args)
        .stdout(file)
        .spawn()
        .expect("starting gatelog monitor");
    let deadline = std::time::Instant::now() + within;
    let mut text = String::new();
    while !text.contains(want) && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
        text = std::fs::read_to_string(out).unwrap_or_default();
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        text.contains(want),
        "the monitor never printed {want:?}: {text}"
    );
    text
}

/// Runs the `gatelog` binary with `args`; its exit code and stdout (both
/// streams are echoed for a failing test's log).
pub fn run_gatelog(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_gatelog"))
        .args(args)
        .output()
        .expect("running gatelog");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    eprintln!("{stdout}{}", String::from_utf8_lossy(&out.stderr));
    (out.status.code().expect("exit code"), stdout)
}

/// A static file server for `root`, like any web server a mirror is
/// published with: HTTP/1.1, GET only, one request per connection
/// (`Connection: close`), 404 for anything that is not a file under
/// `root`. Files are read on each request, so a test can tamper with
/// them while it serves: a lying log.
pub struct StaticServer {
    pub addr: SocketAddr,
}

impl StaticServer {
    pub fn start(root: &Path) -> StaticServer {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("binding");
        let addr = listener.local_addr().expect("local address");
        let root = root.to_path_buf();
        // Lives as long as the test process; each connection on its own thread.
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let root = root.clone();
                std::thread::spawn(move || {
                    let _ = serve_one(stream, &root);
                });
            }
        });
        StaticServer { addr }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

/// Answers one request on `stream` from the files under `root`.
fn serve_one(stream: TcpStream, root: &Path) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut reader = BufReader::new(&stream);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    // Skip the headers; a GET has no body.
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line.trim_end().is_empty() {
            break;
        }
    }
    let mut parts = request_line.split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    // Only plain paths under root: no query, no "..".
    let file = target
        .strip_prefix('/')
        .filter(|p| !p.contains('?') && !p.split('/').any(|c| c == ".."))
        .map(|p| root.join(p));
    let (status, body) = match (method, file.and_then(|f| std::fs::read(f).ok())) {
        ("GET", Some(body)) => ("200 OK", body),
        ("GET", None) => ("404 Not Found", b"not found\n".to_vec()),
        _ => ("405 Method Not Allowed", b"GET only\n".to_vec()),
    };
    let mut stream = &stream;
    write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )?;
    stream.write_all(&body)?;
    stream.flush()
}
