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
use gatelog::access::entry::{self, build};
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
    let forger = Arc::new(NoteSigner::from_seed(admin.name(), [0x99; 32])?);
    let connections = from.len() * CONNECTIONS_PER_ADDRESS;
    let period = Duration::from_secs_f64(connections as f64 / rate.max(1) as f64);
    let mut tasks = Vec::new();
    for (k, ip) in from
        .iter()
        .flat_map(|ip| std::iter::repeat_n(*ip, CONNECTIONS_PER_ADDRESS))
        .enumerate()
    {
        let (forger, origin, tally) = (forger.clone(), origin.clone(), tally.clone());
        let admin_key_id = admin.key_id();
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
                    &build::human(forger.name()),
                    &build::human(&format!("forged-{k}-{n}")),
                    "",
                    NoteSigner::from_seed("x", [(n % 251) as u8; 32])?
                        .verifier()
                        .public_key(),
                    gatelog::sys::clock::now_ms(),
                );
                n += 1;
                let mut signed = entry::sign(&forger, &build::for_log(st, &origin));
                signed.key_id = admin_key_id;
                let req = Request::post("/v1/entries")
                    .header("host", "gatelog")
                    .body(Full::new(Bytes::from(signed.encode_to_vec())))?;
                sender.ready().await?;
                let resp = sender.send_request(req).await?;
                let status = resp.status().as_u16();
                let _ = resp.into_body().collect().await?;
                tally.sent.fetch_add(1, Relaxed);
                match status {
                    401 => &tally.refused,
                    429 => &tally.throttled,
                    _ => &tally.other,
                }
                .fetch_add(1, Relaxed);
            }
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(())
}
