//! The log's side of C2SP tlog-witness: after each new checkpoint, one
//! round asks every configured witness to cosign it (with a consistency
//! proof from the size that witness last cosigned, learning that size from
//! a 409 when it does not know it), and publishes the checkpoint with the
//! cosignatures gathered. A witness that is down or slow costs a round at
//! most `timeout`; it never stalls the log.
//!
//! One round covers one checkpoint for all witnesses, so their
//! cosignatures land on the same checkpoint and can form a quorum.
//!
//! Nodes on a shared store run one set of rounds for the cluster: the
//! node holding the store's lease ([`WitnessBoard`]) asks the witnesses
//! and posts what they cosigned; the others serve it once they have
//! checked it against their own tree and their own witness keys. A node
//! that dies loses the lease after `2 x timeout + 1 s` and another takes
//! over.

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
use crate::server::store::{Posted, WitnessBoard};
use crate::tlog::checkpoint::Checkpoint;
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
    /// 1 while this node runs the rounds (always, on an embedded store).
    leading: AtomicU64,
    /// This process's name in the lease (see [`WitnessBoard`]).
    node: String,
    /// Posted checkpoints this node refused to serve.
    posted_refused: AtomicU64,
    /// The last post checked in each [`Slot`], so that each is checked
    /// (and reported) once.
    seen: std::sync::Mutex<[Option<Posted>; 2]>,
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
            leading: AtomicU64::new(0),
            node: node_name(),
            posted_refused: AtomicU64::new(0),
            seen: std::sync::Mutex::new([None, None]),
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

    /// On shutdown: gives up the lease if this node leads the rounds of
    /// a cluster, so that another takes them over at once.
    pub async fn resign(&self, log: &Arc<Log>) {
        if self.leading.load(Relaxed) == 0 || log.store().witness_board().is_none() {
            return;
        }
        let (l, node) = (log.clone(), self.node.clone());
        let resigned =
            tokio::task::spawn_blocking(move || l.store().witness_board().map(|b| b.resign(&node)));
        if let Ok(Some(Err(e))) = resigned.await {
            tracing::warn!(error = %e, "giving up the witness rounds' lease");
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
        for (metric, help, kind, value) in [
            (
                "gatelog_witness_leading",
                "Whether this node runs the witness rounds (one node of a cluster does).",
                "gauge",
                &self.leading,
            ),
            (
                "gatelog_witness_posted_refused_total",
                "Checkpoints the rounds' leader posted that this node refused to serve.",
                "counter",
                &self.posted_refused,
            ),
        ] {
            let _ = writeln!(
                out,
                "# HELP {metric} {help}\n# TYPE {metric} {kind}\n{metric} {}",
                value.load(Relaxed)
            );
        }
        type Field = fn(&WitnessStats) -> &AtomicU64;
        let per_witness: [(&str, &str, &str, Field); 3] = [
            (
                "gatelog_witness_up",
                "Whether the witness answered this node's last round (in a cluster, only the leading node asks).",
                "gauge",
                |s| &s.up,
            ),
            (
                "gatelog_witness_cosigned_size",
                "Tree size the witness last cosigned in this node's rounds.",
                "gauge",
                |s| &s.cosigned_size,
            ),
            (
                "gatelog_witness_failures_total",
                "Rounds of this node's that the witness did not cosign.",
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

/// Whether `got` (size, cosignatures) would be a step back from `had`: a
/// smaller tree, or the same with fewer cosignatures.
fn worse(got: &CosignedHead, had: &CosignedHead) -> bool {
    (got.head.size, got.cosignatures.len()) < (had.head.size, had.cosignatures.len())
}

/// Where the leader posts: the latest round's checkpoint, and the latest
/// that reached the quorum.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Slot {
    Round = 0,
    Quorate = 1,
}

impl Witnessing {
    /// Publishes `got` as the latest round's, unless it is a step back.
    fn publish_latest(&self, got: CosignedHead) {
        if !worse(&got, &self.latest.borrow()) {
            self.latest.send_replace(Arc::new(got));
        }
    }

    /// Publishes `got`, cosigned by at least the quorum, unless it is a
    /// step back, with the inclusion proofs of the entries it newly covers
    /// (computed in one pass: each then costs microseconds, not a cold
    /// read of the tiles under the proof lock). Blocking: it reads tiles.
    fn publish_quorate(&self, log: &Log, got: CosignedHead) {
        let current = self.quorate.borrow().clone();
        let next = match current {
            Some(q) if worse(&got, &q) => return,
            // The same checkpoint with more cosignatures: keep the proofs.
            Some(q) if q.head.size == got.head.size => CosignedHead {
                proofs: q.proofs.clone(),
                proofs_from: q.proofs_from,
                ..got
            },
            q => {
                let size = got.head.size;
                let from = q
                    .map_or(0, |q| q.head.size)
                    .max(size.saturating_sub(MAX_PROOFS_AHEAD));
                let proofs = log.inclusion_proofs(from, size).unwrap_or_default();
                CosignedHead {
                    proofs,
                    proofs_from: from,
                    ..got
                }
            }
        };
        self.quorate.send_replace(Some(Arc::new(next)));
    }

    /// Serves what the rounds' leader posted, once checked. Either post
    /// with this node's quorum of cosignatures is quorate here, whatever
    /// the leader's own quorum. Blocking.
    fn adopt_posted(&self, log: &Log, board: &dyn WitnessBoard) {
        let (round, quorate) = match board.posted() {
            Ok(posted) => posted,
            Err(e) => {
                tracing::debug!(error = %e, "reading the posted cosignatures");
                return;
            }
        };
        for (slot, posted) in [(Slot::Round, round), (Slot::Quorate, quorate)] {
            let Some(got) = posted.and_then(|p| self.checked(log, slot, p)) else {
                continue;
            };
            if self.quorum > 0 && got.cosignatures.len() >= self.quorum {
                self.publish_quorate(log, got.clone_head());
            }
            self.publish_latest(got);
        }
    }

    /// A posted checkpoint this node may serve: signed by the log and by
    /// nothing else, the root of this node's own tree at its size, with
    /// the cosignatures of this node's witnesses only, in their order.
    /// None: seen before, refused, beyond this node's tree for now (it
    /// follows the store soon) or not checkable now.
    fn checked(&self, log: &Log, slot: Slot, posted: Posted) -> Option<CosignedHead> {
        if self.seen.lock().unwrap_or_else(|p| p.into_inner())[slot as usize].as_ref()
            == Some(&posted)
        {
            return None;
        }
        let checkpoint = match Checkpoint::open(posted.checkpoint.as_bytes(), log.verifier()) {
            Ok(c) => c,
            Err(e) => return self.refuse(slot, posted, &format!("the checkpoint: {e}")),
        };
        match Note::parse(posted.checkpoint.as_bytes()) {
            Ok(n) if n.signatures.len() == 1 => {}
            _ => {
                let why = "the checkpoint carries signatures besides the log's";
                return self.refuse(slot, posted, why);
            }
        }
        if checkpoint.size > log.head().size {
            return None;
        }
        let root = match log.root_at(checkpoint.size) {
            Ok(root) => root,
            Err(e) => {
                tracing::debug!(error = %e, "this node's root at a posted size");
                return None;
            }
        };
        if root != checkpoint.root {
            let why = format!(
                "its root at size {} is not this node's (a fork of the log)",
                checkpoint.size
            );
            return self.refuse(slot, posted, &why);
        }
        let text = format!("{}{}", posted.checkpoint, posted.cosignatures);
        let cosigned = match Note::parse(text.as_bytes()) {
            Ok(n) => n,
            Err(e) => return self.refuse(slot, posted, &format!("the cosignatures: {e}")),
        };
        let lines: Vec<String> = self
            .configs
            .iter()
            .filter_map(|w| cosignature_line(&w.key, &cosigned))
            .collect();
        if slot == Slot::Quorate && lines.len() < self.quorum {
            let why = format!(
                "posted as quorate with {} of this node's {} witnesses cosigning; it needs {} (do the nodes have the same --witness flags?)",
                lines.len(),
                self.configs.len(),
                self.quorum
            );
            return self.refuse(slot, posted, &why);
        }
        let head = LogHead {
            size: checkpoint.size,
            root,
            checkpoint: posted.checkpoint.as_str().into(),
        };
        self.seen.lock().unwrap_or_else(|p| p.into_inner())[slot as usize] = Some(posted);
        Some(CosignedHead::new(Arc::new(head), lines))
    }

    /// Reports a refused post, once per post and slot.
    fn refuse(&self, slot: Slot, posted: Posted, why: &str) -> Option<CosignedHead> {
        tracing::warn!(reason = %why, "refused to serve a checkpoint the witness rounds' leader posted");
        self.posted_refused.fetch_add(1, Relaxed);
        self.seen.lock().unwrap_or_else(|p| p.into_inner())[slot as usize] = Some(posted);
        None
    }
}

impl CosignedHead {
    /// The checkpoint and cosignatures, without the proofs.
    fn clone_head(&self) -> CosignedHead {
        CosignedHead::new(self.head.clone(), self.cosignatures.clone())
    }
}

/// How long the rounds' leader holds its lease: longer than a round
/// (which ends within `timeout`) and than three looks at the store, since
/// it renews between rounds once half of it has passed.
fn lease_for(timeout: Duration, every: Duration) -> Duration {
    (2 * timeout + Duration::from_secs(1)).max(3 * every)
}

/// This process's name for the lease: a restarted node is a new one.
fn node_name() -> String {
    use rand_core::{OsRng, RngCore};
    format!("{}-{:016x}", std::process::id(), OsRng.next_u64())
}

/// On a shared store: takes or renews the lease when `lease` is given,
/// and reads what the leader posted when another node holds it; true if
/// this node leads.
async fn visit_board(
    log: &Arc<Log>,
    shared: &Arc<Witnessing>,
    node: &str,
    lease: Option<Duration>,
) -> bool {
    let (l, w, node) = (log.clone(), shared.clone(), node.to_string());
    let leading = tokio::task::spawn_blocking(move || {
        let board = l.store().witness_board()?;
        let leads = match lease.map(|lease| board.lead(&node, lease)) {
            Some(Ok(leads)) => leads,
            Some(Err(e)) => {
                tracing::debug!(error = %e, "taking the witness rounds' lease");
                false
            }
            None => false,
        };
        if !leads {
            w.adopt_posted(&l, board);
        }
        leads.then_some(())
    });
    leading.await.ok().flatten().is_some()
}

async fn rounds(
    log: Arc<Log>,
    mut clients: Vec<WitnessClient>,
    shared: Arc<Witnessing>,
    timeout: Duration,
) {
    let mut heads = log.subscribe();
    // On a shared store: how often to read the posts (and so how stale a
    // follower's cosignatures may be).
    let poll = log.store().shared();
    let lease = poll.map(|every| lease_for(timeout, every));
    let node = shared.node.clone();
    // When this node last took or renewed the lease, and last tried to.
    let mut renewed: Option<std::time::Instant> = None;
    let mut tried: Option<std::time::Instant> = None;
    // The size every witness has cosigned; a round that missed a witness
    // is tried again after a pause even if the log is quiet.
    let mut done = 0u64;
    loop {
        let leading = match (lease, poll) {
            (Some(lease), Some(every)) => {
                if renewed.is_some_and(|r| r.elapsed() < lease / 2) {
                    true
                } else {
                    // A follower reads the posts each time its head moves,
                    // but asks for the lease (a write) once per look.
                    let started = std::time::Instant::now();
                    let ask = tried.is_none_or(|t| t.elapsed() >= every);
                    let leading = visit_board(&log, &shared, &node, ask.then_some(lease)).await;
                    if ask {
                        tried = Some(started);
                    }
                    renewed = leading.then_some(started);
                    leading
                }
            }
            _ => true,
        };
        if shared.leading.swap(leading as u64, Relaxed) != leading as u64 && poll.is_some() {
            let role = match leading {
                true => "this node leads them",
                false => "this node serves the leader's",
            };
            tracing::info!(leading, "witness rounds: {role}");
        }
        if leading {
            let head = heads.borrow_and_update().clone();
            if head.size != 0 && head.size != done {
                let board_node = poll.map(|_| node.as_str());
                if round(&log, &mut clients, &shared, &head, timeout, board_node).await {
                    done = head.size;
                } else {
                    // Pause before asking again, unless the log moves on first.
                    let _ = tokio::time::timeout(RETRY_PAUSE, heads.changed()).await;
                }
                continue;
            }
        } else {
            // Whoever leads next asks for the head it has.
            done = 0;
        }
        let changed = match poll {
            None => heads.changed().await,
            Some(every) => {
                let changed = tokio::time::timeout(every, heads.changed()).await;
                // Under load the head moves on every commit: a follower
                // reads the posts at most ten times per look.
                if !leading && changed.is_ok() {
                    tokio::time::sleep(every / 10).await;
                }
                changed.unwrap_or(Ok(()))
            }
        };
        if changed.is_err() {
            return;
        }
    }
}

/// One round: asks every witness to cosign `head`, publishes the
/// checkpoint as soon as the quorum is in and again with every
/// cosignature, and posts both for the other nodes (`board_node`: this
/// node's name in the lease, on a shared store). True if every witness
/// cosigned and the other nodes have it.
async fn round(
    log: &Arc<Log>,
    clients: &mut Vec<WitnessClient>,
    shared: &Arc<Witnessing>,
    head: &Arc<LogHead>,
    timeout: Duration,
    board_node: Option<&str>,
) -> bool {
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
    // (witness index, line): published in the configuration's order, the
    // order every node serves them in.
    let mut cosignatures: Vec<(usize, String)> = Vec::new();
    let mut published_quorum = false;
    while let Some(joined) = round.join_next().await {
        let Ok((c, result)) = joined else { continue };
        let stats = &shared.stats[c.index];
        match result {
            Ok(line) => {
                cosignatures.push((c.index, line));
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
            publish(log, shared, head, &cosignatures, true, board_node).await;
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
    // The same checkpoint with every cosignature gathered.
    let posted = publish(
        log,
        shared,
        head,
        &cosignatures,
        published_quorum,
        board_node,
    )
    .await;
    complete && posted
}

/// Publishes a round's result on this node (as quorate if `quorate`) and
/// posts it for the other nodes; false if that post failed.
async fn publish(
    log: &Arc<Log>,
    shared: &Arc<Witnessing>,
    head: &Arc<LogHead>,
    cosignatures: &[(usize, String)],
    quorate: bool,
    board_node: Option<&str>,
) -> bool {
    let mut sorted = cosignatures.to_vec();
    sorted.sort();
    let lines: Vec<String> = sorted.into_iter().map(|(_, line)| line).collect();
    let (l, w, head) = (log.clone(), shared.clone(), head.clone());
    let node = board_node.map(str::to_string);
    let posting = tokio::task::spawn_blocking(move || {
        let got = CosignedHead::new(head.clone(), lines.clone());
        if quorate {
            w.publish_quorate(&l, got.clone_head());
        }
        w.publish_latest(got);
        let (Some(node), Some(board)) = (node, l.store().witness_board()) else {
            return true;
        };
        let posted = Posted {
            checkpoint: head.checkpoint.to_string(),
            cosignatures: lines.concat(),
        };
        match board.post(&node, head.size, &posted, quorate) {
            Ok(true) => true,
            Ok(false) => {
                tracing::debug!("not posted: another node leads the witness rounds");
                false
            }
            Err(e) => {
                tracing::warn!(error = %e, "posting the cosigned checkpoint");
                false
            }
        }
    });
    posting.await.unwrap_or(false)
}

/// The cosignature line `key` made on `note`, if any: rebuilt from the
/// signature that verified, so the line published is exactly the one
/// checked.
fn cosignature_line(key: &CosignatureVerifier, note: &Note) -> Option<String> {
    let sig = note
        .signatures
        .iter()
        .find(|s| key.verify(&note.text, s).is_some())?;
    let mut raw = sig.id.to_be_bytes().to_vec();
    raw.extend_from_slice(&sig.sig);
    Some(format!("\u{2014} {} {}\n", sig.name, B64.encode(raw)))
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
        cosignature_line(&self.config.key, &note)
            .ok_or_else(|| "no valid cosignature by its key in the answer".into())
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
