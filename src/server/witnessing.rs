//! The log's side of C2SP tlog-witness: after each new checkpoint, one
//! round asks every configured witness to cosign it (with a consistency
//! proof from the size that witness last cosigned, learning that size from
//! a 409 when it does not know it), and publishes the checkpoint with the
//! cosignatures gathered. A witness that is down or slow costs a round at
//! most `timeout`; it never stalls the log.
//!
//! One round covers one checkpoint for all witnesses, so their
//! cosignatures land on the same checkpoint and can form a quorum.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::client::conn::http1::{self, SendRequest};
use hyper::{Method, Request, Uri};
use hyper_util::rt::TokioIo;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::server::log::{Log, LogHead};
use crate::server::metrics::{Histogram, LATENCY_BOUNDS};
use crate::tlog::cosignature::{AddCheckpoint, CosignatureVerifier};
use crate::tlog::merkle::Hash;
use crate::tlog::note::Note;

/// Largest answer read from a witness.
const MAX_ANSWER_BYTES: usize = 64 << 10;
/// Pause before asking again after a round some witness did not cosign.
const RETRY_PAUSE: Duration = Duration::from_secs(1);

/// One witness the log asks: its name, where it listens, its key.
#[derive(Clone, Debug)]
pub struct WitnessConfig {
    /// The name used in metrics and messages.
    pub name: String,
    /// The witness's submission prefix, e.g. http://127.0.0.1:8081.
    pub url: Uri,
    /// The witness's cosignature verifier key.
    pub key: CosignatureVerifier,
}

impl WitnessConfig {
    /// Parses `NAME=URL+VKEY`, e.g.
    /// `w1=http://127.0.0.1:8081+witness.example/w1+1234abcd+BASE64`.
    pub fn parse(spec: &str) -> Result<WitnessConfig, String> {
        let (name, rest) = spec.split_once('=').ok_or("want NAME=URL+VKEY")?;
        let (url, vkey) = rest.split_once('+').ok_or("want NAME=URL+VKEY")?;
        let url = crate::sys::client::parse_url(url).map_err(|e| e.to_string())?;
        let key = CosignatureVerifier::parse(vkey).map_err(|e| format!("bad witness key: {e}"))?;
        Ok(WitnessConfig {
            name: name.to_string(),
            url,
            key,
        })
    }
}

/// A checkpoint and the cosignature lines gathered for it.
#[derive(Debug)]
pub struct CosignedHead {
    /// The log's checkpoint.
    pub head: Arc<LogHead>,
    /// Verified cosignature lines, each ending in "\n".
    pub cosignatures: Vec<String>,
    /// Inclusion proofs in this checkpoint's tree for the entries
    /// `proofs_from..head.size`, computed once for all the writers waiting
    /// on this quorum (one at a time, each would take the proof lock).
    pub proofs: Vec<Vec<Hash>>,
    pub proofs_from: u64,
}

/// Most proofs computed ahead for one quorum.
const MAX_PROOFS_AHEAD: u64 = 4096;

impl CosignedHead {
    fn new(head: Arc<LogHead>, cosignatures: Vec<String>) -> Self {
        CosignedHead {
            proofs_from: head.size,
            head,
            cosignatures,
            proofs: vec![],
        }
    }

    /// The inclusion proof of `index` in this checkpoint, if computed.
    pub fn proof(&self, index: u64) -> Option<&Vec<Hash>> {
        let k = index.checked_sub(self.proofs_from)?;
        self.proofs.get(usize::try_from(k).ok()?)
    }

    /// The signed note: the log's signature, then the cosignatures.
    pub fn note(&self) -> String {
        let mut n = self.head.checkpoint.to_string();
        for c in &self.cosignatures {
            n.push_str(c);
        }
        n
    }
}

/// Per-witness counters for `/metrics`.
#[derive(Default)]
struct WitnessStats {
    cosigned_size: AtomicU64,
    up: AtomicU64,
    failures: AtomicU64,
}

/// The witness rounds' published results.
pub struct Witnessing {
    quorum: usize,
    /// Time from a round's start to its quorum.
    quorum_latency: Histogram,
    /// Time a whole round takes (its slowest witness).
    round_latency: Histogram,
    /// Time a writer waits for the quorum after its entry is sequenced.
    wait_latency: Histogram,
    names: Vec<String>,
    configs: Vec<WitnessConfig>,
    stats: Vec<WitnessStats>,
    latest: watch::Sender<Arc<CosignedHead>>,
    quorate: watch::Sender<Option<Arc<CosignedHead>>>,
}

impl Witnessing {
    /// Starts the witness rounds for `log` on the current tokio runtime.
    pub fn start(
        log: Arc<Log>,
        witnesses: Vec<WitnessConfig>,
        quorum: usize,
        timeout: Duration,
    ) -> Arc<Self> {
        let head = log.head();
        let shared = Arc::new(Witnessing {
            quorum,
            // Prometheus label values escape '\\', '"' and newlines.
            names: witnesses
                .iter()
                .map(|w| {
                    w.name
                        .replace('\\', "\\\\")
                        .replace('"', "\\\"")
                        .replace('\n', "\\n")
                })
                .collect(),
            configs: witnesses.clone(),
            quorum_latency: Histogram::new(LATENCY_BOUNDS),
            round_latency: Histogram::new(LATENCY_BOUNDS),
            wait_latency: Histogram::new(LATENCY_BOUNDS),
            stats: witnesses.iter().map(|_| WitnessStats::default()).collect(),
            latest: watch::Sender::new(Arc::new(CosignedHead::new(head, vec![]))),
            quorate: watch::Sender::new(None),
        });
        let clients = witnesses
            .iter()
            .enumerate()
            .map(|(i, w)| WitnessClient::new(i, w.clone()))
            .collect();
        tokio::spawn(rounds(log, clients, shared.clone(), timeout));
        shared
    }

    /// The checkpoint to serve at `/checkpoint`: with a quorum, the latest
    /// that reached it; otherwise the latest round's.
    pub fn served(&self) -> Option<Arc<CosignedHead>> {
        if self.quorum > 0 {
            self.quorate.borrow().clone()
        } else {
            Some(self.latest.borrow().clone())
        }
    }

    /// How many cosignatures a writer waits for.
    pub fn quorum(&self) -> usize {
        self.quorum
    }

    /// Waits until a checkpoint covering `index` has the quorum; None
    /// after `timeout`.
    pub async fn wait_for_quorum(
        &self,
        index: u64,
        timeout: Duration,
    ) -> Option<Arc<CosignedHead>> {
        let started = std::time::Instant::now();
        let mut rx = self.quorate.subscribe();
        let covered = async move {
            rx.wait_for(|q| q.as_ref().is_some_and(|c| c.head.size > index))
                .await
                .ok()
                .and_then(|q| q.clone())
        };
        let quorate = tokio::time::timeout(timeout, covered).await.ok().flatten();
        self.wait_latency.observe_duration(started.elapsed());
        quorate
    }

    /// Per-witness metrics in Prometheus text.
    pub fn render_metrics(&self, out: &mut String) {
        use std::fmt::Write;
        self.quorum_latency.render(
            out,
            "gatelog_witness_quorum_seconds",
            "From a round's start to its quorum.",
        );
        self.round_latency.render(
            out,
            "gatelog_witness_round_seconds",
            "How long a whole witness round takes.",
        );
        self.wait_latency.render(
            out,
            "gatelog_witness_wait_seconds",
            "How long a writer waits for the quorum after its entry is sequenced.",
        );
        type Field = fn(&WitnessStats) -> &AtomicU64;
        let per_witness: [(&str, &str, &str, Field); 3] = [
            (
                "gatelog_witness_up",
                "Whether the witness answered the last round.",
                "gauge",
                |s| &s.up,
            ),
            (
                "gatelog_witness_cosigned_size",
                "Tree size the witness last cosigned.",
                "gauge",
                |s| &s.cosigned_size,
            ),
            (
                "gatelog_witness_failures_total",
                "Rounds the witness did not cosign.",
                "counter",
                |s| &s.failures,
            ),
        ];
        for (metric, help, kind, value) in per_witness {
            let _ = writeln!(out, "# HELP {metric} {help}\n# TYPE {metric} {kind}");
            for (n, s) in self.names.iter().zip(&self.stats) {
                let _ = writeln!(
                    out,
                    "{metric}{{witness=\"{n}\"}} {}",
                    value(s).load(Relaxed)
                );
            }
        }
    }
}

async fn rounds(
    log: Arc<Log>,
    mut clients: Vec<WitnessClient>,
    shared: Arc<Witnessing>,
    timeout: Duration,
) {
    let mut heads = log.subscribe();
    // The size every witness has cosigned; a round that missed a witness
    // is tried again after a pause even if the log is quiet.
    let mut done = 0u64;
    // The size of the last checkpoint that reached the quorum.
    let mut quorate_size = 0u64;
    loop {
        let head = heads.borrow_and_update().clone();
        if head.size == 0 || head.size == done {
            if heads.changed().await.is_err() {
                return;
            }
            continue;
        }
        let started = std::time::Instant::now();
        let mut round = JoinSet::new();
        for mut c in clients.drain(..) {
            let (log, head) = (log.clone(), head.clone());
            round.spawn(async move {
                let r = tokio::time::timeout(timeout, c.cosign(&log, &head)).await;
                (
                    c,
                    r.unwrap_or_else(|_| Err(format!("no answer within {timeout:?}"))),
                )
            });
        }
        let mut cosignatures = Vec::new();
        let mut published_quorum = false;
        while let Some(joined) = round.join_next().await {
            let Ok((c, result)) = joined else { continue };
            let stats = &shared.stats[c.index];
            match result {
                Ok(line) => {
                    cosignatures.push(line);
                    if stats.up.swap(1, Relaxed) == 0 {
                        tracing::info!(witness = %c.config.name, "witness is cosigning");
                    }
                    stats.cosigned_size.store(head.size, Relaxed);
                }
                Err(e) => {
                    if stats.up.swap(0, Relaxed) == 1 || stats.failures.load(Relaxed) == 0 {
                        tracing::warn!(witness = %c.config.name, error = %e, "witness did not cosign");
                    }
                    stats.failures.fetch_add(1, Relaxed);
                }
            }
            clients.push(c);
            // Answer waiting writers as soon as the quorum is in, not when
            // the slowest witness gives up.
            if !published_quorum && shared.quorum > 0 && cosignatures.len() >= shared.quorum {
                published_quorum = true;
                shared.quorum_latency.observe_duration(started.elapsed());
                // Proofs for the writers this quorum releases, computed in
                // one pass (each proof then costs microseconds, not a
                // cold read of the tiles under the proof lock).
                let from = quorate_size.max(head.size.saturating_sub(MAX_PROOFS_AHEAD));
                let (l, size) = (log.clone(), head.size);
                let proofs = tokio::task::spawn_blocking(move || l.inclusion_proofs(from, size))
                    .await
                    .ok()
                    .and_then(Result::ok)
                    .unwrap_or_default();
                quorate_size = head.size;
                shared.quorate.send_replace(Some(Arc::new(CosignedHead {
                    proofs,
                    proofs_from: from,
                    ..CosignedHead::new(head.clone(), cosignatures.clone())
                })));
            }
        }
        // A client whose task panicked is rebuilt, so no witness is lost.
        for (index, config) in shared.configs.iter().enumerate() {
            if !clients.iter().any(|c| c.index == index) {
                clients.push(WitnessClient::new(index, config.clone()));
            }
        }
        clients.sort_by_key(|c| c.index);
        shared.round_latency.observe_duration(started.elapsed());
        let complete = cosignatures.len() == clients.len();
        let cosigned = Arc::new(CosignedHead::new(head.clone(), cosignatures));
        if published_quorum {
            // The same checkpoint with every cosignature; keep the proofs.
            let proofs = shared
                .quorate
                .borrow()
                .as_ref()
                .map(|q| (q.proofs.clone(), q.proofs_from));
            let (proofs, proofs_from) = proofs.unwrap_or_default();
            shared.quorate.send_replace(Some(Arc::new(CosignedHead {
                proofs,
                proofs_from,
                ..CosignedHead::new(head.clone(), cosigned.cosignatures.clone())
            })));
        }
        shared.latest.send_replace(cosigned);
        if complete {
            done = head.size;
        } else {
            // Pause before asking again, unless the log moves on first.
            let _ = tokio::time::timeout(RETRY_PAUSE, heads.changed()).await;
        }
    }
}

/// A keep-alive connection to one witness and what it last cosigned.
struct WitnessClient {
    /// Position in the configuration (and in the metrics).
    index: usize,
    config: WitnessConfig,
    sender: Option<SendRequest<Full<Bytes>>>,
    /// The size this witness last cosigned, once learnt.
    known_size: Option<u64>,
}

impl WitnessClient {
    fn new(index: usize, config: WitnessConfig) -> Self {
        WitnessClient {
            index,
            config,
            sender: None,
            known_size: None,
        }
    }

    /// Asks for a cosignature of `head`, learning the witness's size from
    /// a 409 if needed; returns the verified cosignature line.
    async fn cosign(&mut self, log: &Arc<Log>, head: &Arc<LogHead>) -> Result<String, String> {
        for _ in 0..3 {
            let old = self.known_size.unwrap_or(0);
            if old > head.size {
                return Err(format!(
                    "it cosigned size {old}, larger than the log's {}",
                    head.size
                ));
            }
            let proof = if old == 0 || old == head.size {
                vec![]
            } else {
                let (log, size) = (log.clone(), head.size);
                tokio::task::spawn_blocking(move || {
                    log.consistency_proof(old, Some(size), crate::server::log::ProofUser::Log)
                })
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| format!("consistency proof {old}..{size}: {e}"))?
                .1
            };
            let body = AddCheckpoint {
                old_size: old,
                proof,
                checkpoint: head.checkpoint.to_string(),
            }
            .encode();
            let (status, answer) = self.post(body).await?;
            let answer = String::from_utf8_lossy(&answer).to_string();
            match status {
                200 => {
                    self.known_size = Some(head.size);
                    return self.verified_line(head, &answer);
                }
                409 => {
                    let size = answer
                        .trim_end()
                        .parse()
                        .map_err(|_| format!("409 without a size: {answer:?}"))?;
                    self.known_size = Some(size);
                }
                s => return Err(format!("HTTP {s}: {}", answer.trim_end())),
            }
        }
        Err("the witness's size kept changing".into())
    }

    fn verified_line(&self, head: &LogHead, answer: &str) -> Result<String, String> {
        let note = Note::parse(format!("{}{answer}", head.checkpoint).as_bytes())
            .map_err(|e| format!("unreadable cosignature: {e}"))?;
        let key = &self.config.key;
        let sig = note
            .signatures
            .iter()
            .find(|s| key.verify(&note.text, s).is_some())
            .ok_or("no valid cosignature by its key in the answer")?;
        // Rebuilt from the signature that verified, so the line published
        // is exactly the one checked.
        let mut raw = sig.id.to_be_bytes().to_vec();
        raw.extend_from_slice(&sig.sig);
        Ok(format!("\u{2014} {} {}\n", sig.name, B64.encode(raw)))
    }

    async fn post(&mut self, body: String) -> Result<(u16, Bytes), String> {
        let authority = self
            .config
            .url
            .authority()
            .expect("checked at parse")
            .clone();
        if self.sender.as_ref().is_none_or(|s| s.is_closed()) {
            let stream = crate::sys::client::connect(&self.config.url).await?;
            let (sender, conn) = http1::handshake(TokioIo::new(stream))
                .await
                .map_err(|e| e.to_string())?;
            tokio::spawn(conn);
            self.sender = Some(sender);
        }
        let sender = self.sender.as_mut().expect("connected above");
        let path = format!(
            "{}/add-checkpoint",
            self.config.url.path().trim_end_matches('/')
        );
        let req = Request::builder()
            .method(Method::POST)
            .uri(path)
            .header("host", authority.as_str())
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| e.to_string())?;
        let result = async {
            sender.ready().await?;
            let resp = sender.send_request(req).await?;
            let status = resp.status().as_u16();
            let body = Limited::new(resp.into_body(), MAX_ANSWER_BYTES)
                .collect()
                .await?
                .to_bytes();
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>((status, body))
        }
        .await;
        result.map_err(|e| {
            self.sender = None;
            format!("request to {authority}: {e}")
        })
    }
}
