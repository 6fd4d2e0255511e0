//! HTTPS end to end, with certificates made at test time: the log, a
//! witness and a monitor serve TLS, and every client (submit, verify,
//! mirror, audit, monitor, the log's witness rounds, the load generator)
//! trusts only the CA it is given: a certificate from another CA, or for
//! another host name, is refused. Mutual TLS and tokens name writers.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::Server;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, SanType};

/// A CA: its certificate (PEM file) and what it signs with.
struct Ca {
    pem: PathBuf,
    issuer: Issuer<'static, KeyPair>,
}

fn write_secret(path: &Path, contents: &str) {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .unwrap()
        .write_all(contents.as_bytes())
        .unwrap();
}

fn ca(dir: &Path, name: &str) -> Ca {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(DnType::CommonName, format!("{name} test CA"));
    let key = KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    let pem = dir.join(format!("{name}.pem"));
    std::fs::write(&pem, cert.pem()).unwrap();
    Ca {
        pem,
        issuer: Issuer::new(params, key),
    }
}

/// A leaf certificate for `names` (DNS names or IP addresses) signed by
/// `ca`, written to DIR/STEM.pem and DIR/STEM.key (mode 0600); its DER.
fn leaf(dir: &Path, stem: &str, ca: &Ca, names: &[&str]) -> (PathBuf, PathBuf, Vec<u8>) {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    for n in names {
        params.subject_alt_names.push(match n.parse() {
            Ok(ip) => SanType::IpAddress(ip),
            Err(_) => SanType::DnsName((*n).try_into().unwrap()),
        });
    }
    params.distinguished_name.push(DnType::CommonName, stem);
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, &ca.issuer).unwrap();
    let (cert_path, key_path) = (
        dir.join(format!("{stem}.pem")),
        dir.join(format!("{stem}.key")),
    );
    std::fs::write(&cert_path, cert.pem()).unwrap();
    write_secret(&key_path, &key.serialize_pem());
    (cert_path, key_path, cert.der().to_vec())
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A blocking HTTPS request trusting `ca`, presenting `client` if given.
fn https(
    addr: SocketAddr,
    host: &str,
    ca: &Path,
    client: Option<(&Path, &Path)>,
    method: &str,
    path: &str,
    body: &[u8],
) -> Result<(u16, String), String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let config = match client {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => builder
            .with_client_auth_cert(
                CertificateDer::pem_file_iter(cert)
                    .unwrap()
                    .map(|c| c.unwrap())
                    .collect(),
                PrivateKeyDer::from_pem_file(key).unwrap(),
            )
            .unwrap(),
    };
    let conn = rustls::ClientConnection::new(
        Arc::new(config),
        ServerName::try_from(host.to_string()).unwrap(),
    )
    .unwrap();
    let tcp = TcpStream::connect(addr).map_err(|e| e.to_string())?;
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    tls.write_all(head.as_bytes()).map_err(|e| e.to_string())?;
    tls.write_all(body).map_err(|e| e.to_string())?;
    let mut raw = Vec::new();
    match tls.read_to_end(&mut raw) {
        Ok(_) => {}
        // The server may close without close_notify after Connection: close.
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !raw.is_empty() => {}
        Err(e) => return Err(e.to_string()),
    }
    let text = String::from_utf8_lossy(&raw).to_string();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("no status in {text:?}"))?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((status, body))
}

/// The three servers a client must tell apart: the right CA and name, a
/// stranger's CA, and the right CA for another host name.
struct Certs {
    good_ca: Ca,
    good: (PathBuf, PathBuf),
    stranger: (PathBuf, PathBuf),
    other_host: (PathBuf, PathBuf),
}

fn certs(dir: &Path) -> Certs {
    let good_ca = ca(dir, "good");
    let stranger_ca = ca(dir, "stranger");
    let names = ["localhost", "127.0.0.1"];
    let (gc, gk, _) = leaf(dir, "good-server", &good_ca, &names);
    let (sc, sk, _) = leaf(dir, "stranger-server", &stranger_ca, &names);
    let (oc, ok, _) = leaf(dir, "other-server", &good_ca, &["other.example"]);
    Certs {
        good_ca,
        good: (gc, gk),
        stranger: (sc, sk),
        other_host: (oc, ok),
    }
}

fn serve_tls(dir: &Path, cert: &(PathBuf, PathBuf), extra: &[&str]) -> Server {
    let mut args = vec!["--tls-cert", s(&cert.0), "--tls-key", s(&cert.1)];
    args.extend_from_slice(extra);
    Server::start_gatelog(dir, &args)
}

fn url(server: &Server) -> String {
    format!("https://127.0.0.1:{}", server.addr.port())
}

/// Runs a gatelog client command, with `--ca CA` if given; its exit code
/// and output (both streams).
fn client(ca: Option<&Path>, args: &[&str]) -> (i32, String) {
    let mut all = Vec::new();
    if let Some(ca) = ca {
        all.extend(["--ca", s(ca)]);
    }
    all.extend_from_slice(args);
    let out = Command::new(env!("CARGO_BIN_EXE_gatelog"))
        .args(&all)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("gatelog {all:?}:\n{text}");
    (out.status.code().unwrap(), text)
}

#[test]
fn every_client_speaks_https_and_refuses_a_stranger_or_another_host() {
    let tmp = tempfile::tempdir().unwrap();
    let c = certs(tmp.path());
    let ca = c.good_ca.pem.clone();
    let mut servers = Vec::new();
    for (name, cert) in [
        ("good", &c.good),
        ("stranger", &c.stranger),
        ("other", &c.other_host),
    ] {
        let dir = tmp.path().join(name);
        servers.push((name, serve_tls(&dir, cert, &[]), dir));
    }
    let register = example_copy(tmp.path(), "01-register-alice.json");
    for (name, server, dir) in &servers {
        let good = *name == "good";
        let u = url(server);
        let out = tmp.path().join(format!("out-{name}"));
        let admin = dir.join("admin.key");
        let runs: Vec<(&str, Vec<&str>)> = vec![
            (
                "verify",
                vec!["verify", "checkpoint", "--vkey", &server.vkey, &u],
            ),
            (
                "submit",
                vec![
                    "submit",
                    "--log",
                    &u,
                    "--vkey",
                    &server.vkey,
                    "--key",
                    s(&admin),
                    s(&register),
                ],
            ),
            (
                "mirror",
                vec!["mirror", "--log", &u, "--vkey", &server.vkey, s(&out)],
            ),
            (
                "audit",
                vec![
                    "audit",
                    "--log",
                    &u,
                    "--vkey",
                    &server.vkey,
                    "--out",
                    s(&out),
                ],
            ),
        ];
        for (what, args) in runs {
            let (code, text) = client(Some(&ca), &args);
            if good {
                assert_eq!(code, 0, "{what} over HTTPS: {text}");
            } else {
                assert_ne!(code, 0, "{what} trusted the {name} server: {text}");
                assert!(
                    text.contains(refusal(name)),
                    "{what} against the {name} server fails for its certificate ({}): {text}",
                    refusal(name)
                );
            }
        }
        // The load generator, too.
        let out = Command::new(env!("CARGO_BIN_EXE_gatelog-loadgen"))
            .args([
                "--log",
                &u,
                "--ca",
                s(&ca),
                "--clients",
                "1",
                "--duration",
                "1",
            ])
            .output()
            .unwrap();
        assert_eq!(
            out.status.success(),
            good,
            "loadgen against the {name} server: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // Without --ca the system's roots do not know the test CA.
    let (code, text) = client(
        None,
        &[
            "verify",
            "checkpoint",
            "--vkey",
            &servers[0].1.vkey,
            &url(&servers[0].1),
        ],
    );
    assert_ne!(code, 0, "{text}");
    assert!(
        text.contains("UnknownIssuer") || text.contains("no CA certificates"),
        "{text}"
    );
}

/// What rustls says of each wrong server's certificate.
fn refusal(server: &str) -> &'static str {
    match server {
        "stranger" => "UnknownIssuer",
        _ => "not valid for name",
    }
}

#[test]
fn a_monitor_and_witness_rounds_over_https_refuse_a_stranger() {
    let tmp = tempfile::tempdir().unwrap();
    let c = certs(tmp.path());
    let ca = c.good_ca.pem.clone();
    // A witness on HTTPS, and a log that asks it for cosignatures.
    let register = example_copy(tmp.path(), "01-register-alice.json");
    for (name, witness_cert, cosigned) in
        [("good", &c.good, true), ("stranger", &c.stranger, false)]
    {
        let log_dir = tmp.path().join(format!("log-{name}"));
        let log_vkey = serve_tls(&log_dir, &c.good, &[]).vkey.clone();
        let wdir = tmp.path().join(format!("witness-{name}"));
        let witness = Server::start_command(
            "witness",
            &wdir,
            &[
                "--log",
                &log_vkey,
                "--tls-cert",
                s(&witness_cert.0),
                "--tls-key",
                s(&witness_cert.1),
            ],
        );
        let wspec = format!(
            "w1=https://localhost:{}+{}",
            witness.addr.port(),
            witness.vkey
        );
        let log_out = tmp.path().join(format!("log-{name}.err"));
        let server = Server::start_logging_to(
            "serve",
            &log_dir,
            &[
                "--dev",
                "--ca",
                s(&ca),
                "--witness",
                &wspec,
                "--tls-cert",
                s(&c.good.0),
                "--tls-key",
                s(&c.good.1),
            ],
            std::fs::File::create(&log_out).unwrap(),
        );
        // A new checkpoint, so a round runs.
        let u = url(&server);
        let admin = log_dir.join("admin.key");
        let (code, text) = client(
            Some(&ca),
            &[
                "submit",
                "--log",
                &u,
                "--vkey",
                &server.vkey,
                "--key",
                s(&admin),
                s(&register),
            ],
        );
        assert_eq!(code, 0, "{text}");
        let count = |body: &str| {
            body.lines()
                .filter(|l| l.starts_with('\u{2014}'))
                .count()
                .saturating_sub(1)
        };
        let checkpoint = || {
            let (status, body) = https(
                server.addr,
                "localhost",
                &ca,
                None,
                "GET",
                "/checkpoint",
                b"",
            )
            .unwrap();
            assert_eq!(status, 200);
            body
        };
        if cosigned {
            wait_until(&format!("{name} witness cosigns"), || {
                count(&checkpoint()) > 0
            });
        } else {
            // A round ran, and failed on the witness's certificate.
            wait_until("the round refuses the stranger", || {
                std::fs::read_to_string(&log_out)
                    .unwrap()
                    .contains("UnknownIssuer")
            });
            assert_eq!(count(&checkpoint()), 0, "{}", checkpoint());
        }
    }
    // A monitor that trusts the CA follows the HTTPS log; one whose log
    // presents a stranger's certificate never accepts a checkpoint.
    for (name, cert, follows) in [("good", &c.good, true), ("stranger", &c.stranger, false)] {
        let dir = tmp.path().join(format!("mlog-{name}"));
        let log = serve_tls(&dir, cert, &[]);
        let mdir = tmp.path().join(format!("monitor-{name}"));
        let u = url(&log);
        let mon_out = tmp.path().join(format!("monitor-{name}.err"));
        let monitor = Server::start_logging_to(
            "monitor",
            &mdir,
            &[
                "--ca",
                s(&ca),
                "--log",
                &u,
                "--vkey",
                &log.vkey,
                "--poll-ms",
                "100",
            ],
            std::fs::File::create(&mon_out).unwrap(),
        );
        let status = || {
            common::http(monitor.addr, "GET", "/v1/monitor/checkpoint", b"")
                .unwrap()
                .status
        };
        if follows {
            wait_until("the monitor follows the log", || status() == 200);
        } else {
            wait_until("the monitor refuses the stranger", || {
                std::fs::read_to_string(&mon_out)
                    .unwrap()
                    .contains("UnknownIssuer")
            });
            assert_eq!(status(), 404, "no checkpoint accepted");
        }
    }
}

/// A copy of an example statement in `dir` (`submit` writes its proof
/// beside the statement).
fn example_copy(dir: &Path, name: &str) -> PathBuf {
    let to = dir.join(name);
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("examples")
            .join(name),
        &to,
    )
    .unwrap();
    to
}

/// Waits up to 10 s for `done`.
fn wait_until(what: &str, done: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting: {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn mutual_tls_names_a_writer_and_readers_need_no_certificate() {
    let tmp = tempfile::tempdir().unwrap();
    let c = certs(tmp.path());
    let ca = c.good_ca.pem.clone();
    let (client_cert, client_key, der) =
        leaf(tmp.path(), "hr-sync", &c.good_ca, &["hr-sync.example"]);
    let stranger_ca = self::ca(tmp.path(), "stranger-clients");
    let (bad_cert, bad_key, _) = leaf(tmp.path(), "intruder", &stranger_ca, &["intruder.example"]);
    let (unlisted_cert, unlisted_key, _) =
        leaf(tmp.path(), "unlisted", &c.good_ca, &["unlisted.example"]);
    let fingerprint = {
        use sha2::Digest;
        gatelog::tlog::merkle::hex(&sha2::Sha256::digest(&der))
    };
    let writers = tmp.path().join("writers");
    std::fs::write(&writers, format!("hr-sync cert-sha256:{fingerprint}\n")).unwrap();
    let server = Server::start_command(
        "serve",
        &tmp.path().join("log"),
        &[
            "--entries",
            "opaque",
            "--writers",
            s(&writers),
            "--tls-client-ca",
            s(&ca),
            "--tls-cert",
            s(&c.good.0),
            "--tls-key",
            s(&c.good.1),
        ],
    );
    let post = |client: Option<(&Path, &Path)>| {
        https(
            server.addr,
            "localhost",
            &ca,
            client,
            "POST",
            "/v1/entries",
            b"grant",
        )
    };
    let (status, body) = post(None).unwrap();
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("writer_required"), "{body}");
    let (status, body) = post(Some((&unlisted_cert, &unlisted_key))).unwrap();
    assert_eq!(
        status, 401,
        "a certificate the writers file does not name: {body}"
    );
    // A certificate from another CA fails the handshake.
    assert!(post(Some((&bad_cert, &bad_key))).is_err());
    let (status, body) = post(Some((&client_cert, &client_key))).unwrap();
    assert_eq!(status, 200, "{body}");
    // Readers connect without a certificate.
    let (status, _) = https(server.addr, "localhost", &ca, None, "GET", "/v1/log", b"").unwrap();
    assert_eq!(status, 200);
}

#[test]
fn postgresql_with_verify_full_trusts_only_its_ca_and_host_name() {
    let Some(pg) = common::pg::Pg::start() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let ours = ca(dir.path(), "ours");
    let theirs = ca(dir.path(), "theirs");
    let (cert, key, _) = leaf(dir.path(), "pg", &ours, &["localhost"]);
    pg.enable_tls(&cert, &key);
    pg.psql("postgres", "CREATE DATABASE secure").unwrap();
    let url = |host: &str, mode: &str| {
        format!(
            "postgres://{}@{host}:{}/secure?sslmode={mode}",
            common::pg::USER,
            pg.port
        )
    };
    let migrate = |ca: &Path, url: &str| {
        common::run_gatelog(&["--ca", s(ca), "db", "migrate", "--store", url])
    };
    // Its CA and the name on its certificate: TLS, verified.
    let (code, out) = migrate(&ours.pem, &url("localhost", "verify-full"));
    assert_eq!(code, 0, "{out}");
    // Another CA, or another name for the same server: refused.
    let (code, _) = migrate(&theirs.pem, &url("localhost", "verify-full"));
    assert_ne!(code, 0, "a server from another CA was trusted");
    let (code, _) = migrate(&ours.pem, &url("127.0.0.1", "require"));
    assert_ne!(code, 0, "a certificate for another host was trusted");
    // A node on it: its connections are TLS.
    let key_file = dir.path().join("log.key");
    let (code, out) = common::run_gatelog(&[
        "db",
        "log-key",
        "--origin",
        "secure.example/log",
        "--out",
        s(&key_file),
    ]);
    assert_eq!(code, 0, "{out}");
    let store = url("localhost", "verify-full");
    let _node = Server::start_command(
        "serve",
        &dir.path().join("node"),
        &[
            "--ca",
            s(&ours.pem),
            "--store",
            &store,
            "--log-key",
            s(&key_file),
            "--entries",
            "opaque",
        ],
    );
    pg.psql(
        "postgres",
        "DO $$ BEGIN IF (SELECT count(*) FROM pg_stat_ssl JOIN pg_stat_activity USING (pid) WHERE ssl AND application_name = 'gatelog') = 0 THEN RAISE EXCEPTION 'no TLS connection from gatelog'; END IF; END $$",
    )
    .unwrap();
}
