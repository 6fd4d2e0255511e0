//! `--forged-rate N --forged-from ADDR,...`: while the measured clients
//! run, a flood of entries whose signatures do not verify, naming the
//! log's admin as signer, sent from other local addresses at N entries/s
//! in total (e.g. 127.0.0.2 and 127.0.0.3 on loopback). What it measures
//! is the good clients' latency; the flood's answers are only counted.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use gatelog::access::entry::build;
use gatelog::access::entry::proto::SignedEntry;
use gatelog::tlog::note::NoteSigner;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper::Request;
use hyper_util::rt::TokioIo;
use prost::Message;

/// Connections each source address floods from.
const CONNECTIONS_PER_ADDRESS: usize = 8;

/// How the flood was answered.
#[derive(Default)]
pub struct FloodTally {
    pub sent: AtomicU64,
    /// Answered 401 (the signature was checked and refused).
    pub refused: AtomicU64,
    /// Answered 429 (the address's quota).
    pub throttled: AtomicU64,
    pub other: AtomicU64,
    /// Connections the server closed under the flood.
    pub broken: AtomicU64,
}

/// Floods `log` until `end` from every address in `from`, `rate` entries/s
/// in total, in `admin`'s name with another key.
pub async fn flood(
    log: SocketAddr,
    origin: String,
    admin: Arc<NoteSigner>,
    from: Vec<IpAddr>,
    rate: u64,
    end: Instant,
    tally: Arc<FloodTally>,
) -> anyhow::Result<()> {
    let connections = from.len() * CONNECTIONS_PER_ADDRESS;
    let period = Duration::from_secs_f64(connections as f64 / rate.max(1) as f64);
    // No signing in the loop (it would take the server's CPU): one
    // signature, made over another statement, goes on every entry.
    let forger = NoteSigner::from_seed(admin.name(), [0x99; 32])?;
    let some_key = forger.verifier().public_key();
    let wrong_signature = forger.sign_bytes(b"not this statement").to_vec();
    let mut tasks = Vec::new();
    for (k, ip) in from
        .iter()
        .flat_map(|ip| std::iter::repeat_n(*ip, CONNECTIONS_PER_ADDRESS))
        .enumerate()
    {
        let (origin, tally) = (origin.clone(), tally.clone());
        let (admin_name, admin_key_id) = (admin.name().to_string(), admin.key_id());
        let wrong_signature = wrong_signature.clone();
        tasks.push(tokio::spawn(async move {
            let socket = tokio::net::TcpSocket::new_v4()?;
            socket.bind(SocketAddr::new(ip, 0))?;
            let stream = socket
                .connect(log)
                .await
                .with_context(|| format!("flooding from {ip}"))?;
            let (mut sender, conn) = http1::handshake(TokioIo::new(stream)).await?;
            tokio::spawn(conn);
            let mut ticker = tokio::time::interval(period);
            let mut n = 0u64;
            while Instant::now() < end {
                ticker.tick().await;
                let st = build::register(
                    &build::human(&admin_name),
                    &build::human(&format!("forged-{k}-{n}")),
                    "",
                    some_key,
                    gatelog::sys::clock::now_ms(),
                );
                n += 1;
                let signed = SignedEntry {
                    statement: build::for_log(st, &origin).encode_to_vec(),
                    signer_id: admin_name.clone(),
                    key_id: admin_key_id,
                    signature: wrong_signature.clone(),
                    endorsements: vec![],
                };
                let req = Request::post("/v1/entries")
                    .header("host", "gatelog")
                    .body(Full::new(Bytes::from(signed.encode_to_vec())))?;
                let answer = async {
                    sender.ready().await?;
                    let resp = sender.send_request(req).await?;
                    let status = resp.status().as_u16();
                    resp.into_body().collect().await?;
                    anyhow::Ok(status)
                };
                let counter = match answer.await {
                    Ok(401) => &tally.refused,
                    Ok(429) => &tally.throttled,
                    Ok(_) => &tally.other,
                    // The server closed the connection: count it, stop
                    // this connection, let the run go on.
                    Err(_) => {
                        tally.broken.fetch_add(1, Relaxed);
                        break;
                    }
                };
                tally.sent.fetch_add(1, Relaxed);
                counter.fetch_add(1, Relaxed);
            }
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(())
}
