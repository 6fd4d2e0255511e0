//! A monitor: follows a log's checkpoints, checks each is consistent with
//! the latest one it holds, serves that one to peer monitors and checks
//! theirs the same way. Two checkpoints signed by the log's key that are
//! not consistent (same size and another root, or no valid consistency
//! proof from the log) are a split view: the monitor writes the evidence
//! ([`crate::tlog::equivocation`]) and stops.
//!
//! It also follows the log's entries up to the checkpoint it accepted
//! ([`crate::observers::follower`]) through the auditor's verified replay:
//! it reports each finding (a bad signature, a rule the gate should have
//! applied) as an alert, and break-glass reviews past their deadline.
//! Entries that do not hash to the checkpoint are evidence, like a split
//! view: written to the data dir, the alert command run, the monitor stops.

pub mod http;

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use hyper::Uri;
use thiserror::Error;

use crate::access::gate::Obligation;
use crate::observers::follower::{follow, FollowError, Follower};
use crate::observers::spill::SpilledEntries;
use crate::sys::client::http_get;
use crate::sys::clock::now_ms;
use crate::sys::keyfile;
use crate::tlog::checkpoint::Checkpoint;
use crate::tlog::equivocation::Equivocation;
use crate::tlog::merkle::{verify_consistency, Hash};
use crate::tlog::note::NoteVerifier;

/// Polls in a row a log may answer a consistency proof request between
/// two checkpoints it signed with a refusal or an unreadable proof before
/// that counts as a split view: a log that keeps refusing may be hiding a
/// fork. An outage (no connection, a timeout, a 5xx or 429) is not an
/// answer and counts for nothing: the monitor warns and polls again.
pub const MAX_PROOF_FAILURES: u32 = 3;

/// File holding the latest checkpoint the monitor accepted.
pub const LATEST_FILE: &str = "latest.checkpoint";

/// What the monitor watches and where it keeps its state.
#[derive(Clone, Debug)]
pub struct MonitorConfig {
    /// The log's URL prefix (serving /checkpoint and the proof API).
    pub log: Uri,
    /// The log's verifier key.
    pub key: NoteVerifier,
    /// Peer monitors' URL prefixes.
    pub peers: Vec<Uri>,
    /// Where the latest checkpoint and any evidence are written.
    pub data_dir: PathBuf,
    /// Time between polls.
    pub poll: Duration,
    /// Bootstrap admins of a log made by an earlier release (a newer log
    /// names its own in its first entry).
    pub admins: Vec<NoteVerifier>,
}

/// Why the monitor stopped.
#[derive(Debug, Error)]
pub enum MonitorError {
    #[error("split view: {reason}; evidence written to {path}")]
    SplitView { reason: String, path: PathBuf },
    #[error("bad entries: {reason}; evidence written to {path}")]
    BadEntries { reason: String, path: PathBuf },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: stored checkpoint does not verify with the log key: {reason}")]
    BadState { path: PathBuf, reason: String },
}

/// A running monitor's state, shared with its HTTP endpoint.
pub struct Monitor {
    config: MonitorConfig,
    latest: Mutex<Option<(String, Checkpoint)>>,
    /// Consecutive polls without a consistency proof, per (old, new) size.
    proof_failures: Mutex<HashMap<(u64, u64), u32>>,
    /// The log's entries replayed up to the accepted checkpoint.
    follower: Mutex<Follower>,
    /// Overdue reviews already reported, by break-glass index.
    reported: Mutex<HashSet<u64>>,
}

/// What the monitor knows of open break-glass reviews.
pub struct ObligationReport {
    /// Entries replayed (checked against an accepted checkpoint).
    pub tree_size: u64,
    /// Set when the log's entries are not gatelog entries.
    pub not_gatelog: Option<String>,
    /// Open reviews, earliest deadline first.
    pub open: Vec<Obligation>,
}

impl Monitor {
    /// Opens the monitor, loading the latest checkpoint it accepted.
    pub fn open(config: MonitorConfig) -> Result<Monitor, MonitorError> {
        let dir = &config.data_dir;
        std::fs::create_dir_all(dir).map_err(|source| MonitorError::Io {
            path: dir.clone(),
            source,
        })?;
        let path = dir.join(LATEST_FILE);
        let latest = match std::fs::read_to_string(&path) {
            Ok(text) => {
                let cp = Checkpoint::open(text.as_bytes(), &config.key).map_err(|e| {
                    MonitorError::BadState {
                        path: path.clone(),
                        reason: e.to_string(),
                    }
                })?;
                Some((text, cp))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(source) => return Err(MonitorError::Io { path, source }),
        };
        let spill = SpilledEntries::create(dir).map_err(|source| MonitorError::Io {
            path: dir.clone(),
            source,
        })?;
        let follower = Follower::new(config.key.clone(), config.admins.clone(), Arc::new(spill));
        let follower = Mutex::new(follower);
        Ok(Monitor {
            config,
            follower,
            reported: Mutex::new(HashSet::new()),
            latest: Mutex::new(latest),
            proof_failures: Mutex::new(HashMap::new()),
        })
    }

    /// The latest accepted checkpoint, as served to peers.
    pub fn latest(&self) -> Option<String> {
        self.latest
            .lock()
            .expect("monitor state")
            .as_ref()
            .map(|(t, _)| t.clone())
    }

    /// Polls the log and every peer until a split view is found.
    pub async fn run(self: Arc<Self>) -> MonitorError {
        // A slow peer must not hold up the others.
        let timeout = self
            .config
            .poll
            .clamp(Duration::from_secs(1), Duration::from_secs(5));
        loop {
            let mut fetches = tokio::task::JoinSet::new();
            let log = self.config.log.clone();
            fetches.spawn(async move {
                let r = http_get(&log, "/checkpoint", timeout).await;
                (format!("log {log}"), r)
            });
            for peer in self.config.peers.clone() {
                fetches.spawn(async move {
                    let r = http_get(&peer, "/v1/monitor/checkpoint", timeout).await;
                    (format!("peer {peer}"), r)
                });
            }
            let mut seen = Vec::new();
            while let Some(Ok((source, result))) = fetches.join_next().await {
                match result {
                    Ok((200, body)) => seen.push((source, body)),
                    // A peer that has accepted nothing yet.
                    Ok((404, _)) if source.starts_with("peer") => {}
                    Ok((s, _)) => tracing::warn!(%source, status = s, "unexpected answer"),
                    Err(e) => tracing::warn!(%source, error = %e, "fetch failed"),
                }
            }
            // Our own log's view first: what we serve to peers must be
            // the view our log shows, or a fork could go unseen by them.
            seen.sort_by_key(|(source, _)| !source.starts_with("log"));
            for (source, body) in seen {
                if let Err(e) = self
                    .observe(&String::from_utf8_lossy(&body), &source, timeout)
                    .await
                {
                    return e;
                }
            }
            if let Err(e) = self.follow(timeout).await {
                return e;
            }
            tokio::time::sleep(self.config.poll).await;
        }
    }

    /// Open break-glass reviews, from the entries replayed so far.
    pub fn obligations(&self) -> ObligationReport {
        let f = self.follower.lock().expect("follower");
        ObligationReport {
            tree_size: f.size(),
            not_gatelog: f.not_gatelog().map(str::to_string),
            open: f.obligations().into_iter().cloned().collect(),
        }
    }

    /// Replays the log's entries up to the accepted checkpoint, reports
    /// the replay's findings, then each break-glass review newly past its
    /// deadline. Entries that do not hash to the checkpoint stop the
    /// monitor with the evidence.
    async fn follow(&self, timeout: Duration) -> Result<(), MonitorError> {
        let Some((note, cp)) = self.latest.lock().expect("monitor state").clone() else {
            return Ok(());
        };
        if self.follower.lock().expect("follower").size() < cp.size {
            match follow(&self.follower, &self.config.log, &cp, timeout).await {
                Ok(()) => {}
                Err(FollowError::Outage(e)) => {
                    tracing::warn!(to = cp.size, error = %e, "fetching entries failed");
                }
                Err(FollowError::Mismatch { reason, bundles }) => {
                    return Err(self.bad_entries(&note, reason, &bundles));
                }
            }
        }
        let (findings, not_kept) = {
            let mut f = self.follower.lock().expect("follower");
            (f.take_findings(), f.take_findings_not_kept())
        };
        if not_kept > 0 {
            tracing::error!(count = not_kept, "ALERT: more findings than a pass keeps");
            println!("gatelog monitor: FINDING: {not_kept} more findings in this pass, not listed (see `gatelog audit`)");
        }
        for f in &findings {
            tracing::error!(index = f.index, code = %f.code, chain = %f.chain_id, message = %f.message, "ALERT: the log's entries break its rules");
            println!(
                "gatelog monitor: FINDING at entry {}: {} ({}){}",
                f.index,
                f.code,
                f.message,
                if f.chain_id.is_empty() {
                    String::new()
                } else {
                    format!(" in chain {}", f.chain_id)
                }
            );
        }
        let now = now_ms();
        let report = self.obligations();
        let mut reported = self.reported.lock().expect("reported");
        for o in report.open.iter().filter(|o| o.deadline_ms < now) {
            if reported.insert(o.index) {
                println!(
                    "gatelog monitor: OVERDUE {}: chain {} (entry {} by {}), deadline passed {} s ago",
                    o.kind.owed(),
                    o.chain_id,
                    o.index,
                    o.actor,
                    now.saturating_sub(o.deadline_ms) / 1000
                );
            }
        }
        Ok(())
    }

    /// Writes the evidence of entries that do not hash to the checkpoint
    /// `note`: the checkpoint, and each bundle fetched with its SHA-256.
    fn bad_entries(
        &self,
        note: &str,
        reason: String,
        bundles: &[(String, String)],
    ) -> MonitorError {
        let stamp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let path = self
            .config
            .data_dir
            .join(format!("bad-entries-{stamp}.txt"));
        let mut text = format!(
            "gatelog monitor evidence: {reason}\nlog {}\n\nbundles fetched (path, SHA-256 of the body served):\n",
            self.config.log
        );
        for (p, digest) in bundles {
            text.push_str(&format!("{p} {digest}\n"));
        }
        text.push_str("\ncheckpoint (signed by the log):\n");
        text.push_str(note);
        if let Err(source) = keyfile::write_durably(&path, text.as_bytes()) {
            return MonitorError::Io { path, source };
        }
        MonitorError::BadEntries { reason, path }
    }

    /// Checks one checkpoint against the latest accepted one.
    async fn observe(
        &self,
        note: &str,
        source: &str,
        timeout: Duration,
    ) -> Result<(), MonitorError> {
        let Ok(new) = Checkpoint::open(note.as_bytes(), &self.config.key) else {
            tracing::warn!(%source, "served a checkpoint the log's key did not sign; ignored");
            return Ok(());
        };
        let Some((old_note, old)) = self.latest.lock().expect("monitor state").clone() else {
            return self.accept(note, new);
        };
        if new.size == old.size {
            if new.root != old.root {
                return Err(self.split_view(
                    &old_note,
                    note,
                    vec![],
                    format!("{source}: two roots for size {}", new.size),
                ));
            }
            return Ok(());
        }
        let (small, large) = if new.size < old.size {
            (&new, &old)
        } else {
            (&old, &new)
        };
        if small.size == 0 {
            // Every tree extends the empty one: nothing to prove.
            return if new.size > old.size {
                self.accept(note, new)
            } else {
                Ok(())
            };
        }
        let path = format!(
            "/v1/proof/consistency?old_size={}&tree_size={}",
            small.size, large.size
        );
        let served = match http_get(&self.config.log, &path, timeout).await {
            Ok((200, body)) => parse_hashes(&body).map_err(|e| format!("unreadable proof: {e}")),
            Ok((status, _)) if status >= 500 || status == 429 => {
                tracing::warn!(
                    old_size = small.size,
                    new_size = large.size,
                    status,
                    "the log is unavailable for a consistency proof; polling again"
                );
                return Ok(());
            }
            Ok((status, body)) => Err(format!(
                "the log answered {status}: {}",
                String::from_utf8_lossy(&body)
            )),
            Err(e) => {
                tracing::warn!(
                    old_size = small.size,
                    new_size = large.size,
                    error = %e,
                    "the log is unreachable for a consistency proof; polling again"
                );
                return Ok(());
            }
        };
        let pair = (small.size, large.size);
        let proof = match served {
            Ok(p) => {
                self.proof_failures
                    .lock()
                    .expect("monitor state")
                    .remove(&pair);
                p
            }
            Err(why) => {
                // No proof this time. Not evidence yet; a log that keeps
                // withholding it is treated as hiding a fork.
                let failures = {
                    let mut f = self.proof_failures.lock().expect("monitor state");
                    let n = f.entry(pair).or_insert(0);
                    *n += 1;
                    *n
                };
                tracing::warn!(
                    old_size = pair.0,
                    new_size = pair.1,
                    failures,
                    max_failures = MAX_PROOF_FAILURES,
                    reason = %why,
                    "no consistency proof"
                );
                if failures < MAX_PROOF_FAILURES {
                    return Ok(());
                }
                return Err(self.split_view(
                    &old_note,
                    note,
                    vec![],
                    format!(
                        "{source}: the log did not prove {} -> {} in {failures} polls: {why}",
                        pair.0, pair.1
                    ),
                ));
            }
        };
        match verify_consistency(small.size, large.size, &proof, &small.root, &large.root) {
            Ok(()) if new.size > old.size => self.accept(note, new),
            Ok(()) => Ok(()),
            Err(why) => Err(self.split_view(
                &old_note,
                note,
                proof,
                format!(
                    "{source}: the log's consistency proof from {} to {} fails: {why}",
                    small.size, large.size
                ),
            )),
        }
    }

    fn accept(&self, note: &str, cp: Checkpoint) -> Result<(), MonitorError> {
        let dir = &self.config.data_dir;
        let path = dir.join(LATEST_FILE);
        keyfile::write_durably(&path, note.as_bytes())
            .map_err(|source| MonitorError::Io { path, source })?;
        *self.latest.lock().expect("monitor state") = Some((note.to_string(), cp));
        Ok(())
    }

    fn split_view(&self, a: &str, b: &str, proof: Vec<Hash>, reason: String) -> MonitorError {
        let evidence = Equivocation {
            a: a.to_string(),
            b: b.to_string(),
            proof,
        };
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let dir = &self.config.data_dir;
        let path = (0..)
            .map(|n| match n {
                0 => dir.join(format!("equivocation-{now}.txt")),
                n => dir.join(format!("equivocation-{now}-{n}.txt")),
            })
            .find(|p| !p.exists())
            .expect("some name is free");
        // Durable before anyone is alerted to it.
        if let Err(e) = keyfile::write_durably(&path, evidence.encode().as_bytes()) {
            tracing::error!(path = %path.display(), error = %e, "could not write split-view evidence");
        }
        let provable = match evidence.verify(&self.config.key) {
            Ok(v) => format!("offline-checkable ({v:?})"),
            Err(e) => format!("not offline-checkable: {e}"),
        };
        MonitorError::SplitView {
            reason: format!("{reason}; evidence {provable}"),
            path,
        }
    }
}

fn parse_hashes(body: &[u8]) -> Result<Vec<Hash>, String> {
    let v: serde_json::Value = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    v["hashes"]
        .as_array()
        .ok_or("no hashes in the answer")?
        .iter()
        .map(|h| {
            h.as_str()
                .and_then(|s| B64.decode(s).ok())
                .and_then(|b| Hash::try_from(b).ok())
                .ok_or_else(|| "a proof hash is not base64 SHA-256".to_string())
        })
        .collect()
}

/// Why a monitor's service stopped, when it was not an error.
#[derive(Debug, PartialEq, Eq)]
pub enum Stopped {
    /// Asked to (SIGINT, SIGTERM).
    Shutdown,
    /// It found a split view: the evidence is written and the alert
    /// command ran.
    SplitView,
}

/// Runs a monitor with its HTTP API on `listen` until it is asked to stop
/// or finds a split view (then `alert_command` runs and peers get a little
/// time to fetch the view it holds).
pub fn serve(
    config: MonitorConfig,
    listen: std::net::SocketAddr,
    limits: crate::server::http::HttpLimits,
    alert_command: Option<String>,
) -> anyhow::Result<Stopped> {
    use crate::server::http::serve_http;
    use anyhow::Context;
    let (log, peers) = (config.log.to_string(), config.peers.len());
    let poll_ms = config.poll.as_millis() as u64;
    let monitor = Arc::new(Monitor::open(config)?);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let stopped = runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("listening on {}", listen))?;
        println!("gatelog: monitor of {log} with {peers} peer(s)");
        println!(
            "gatelog: listening on {}://{}",
            limits.scheme(),
            listener.local_addr()?
        );
        let served = monitor.clone();
        let handler = move |req: hyper::Request<hyper::body::Incoming>| {
            let served = served.clone();
            async move { http::handle(&served, req) }
        };
        let mut serving = tokio::spawn(serve_http(
            listener,
            limits,
            handler,
            crate::sys::shutdown_signal(),
        ));
        tokio::select! {
            r = &mut serving => { r??; anyhow::Ok(None) }
            e = monitor.clone().run() => {
                alert(&e, alert_command.as_deref());
                // Keep serving a little: peers may not have seen the view
                // that split from theirs yet.
                tokio::time::sleep(Duration::from_millis(2 * poll_ms).min(Duration::from_secs(10))).await;
                Ok(Some(e))
            }
        }
    })?;
    runtime.shutdown_timeout(Duration::from_secs(1));
    match stopped {
        None => Ok(Stopped::Shutdown),
        Some(MonitorError::SplitView { .. } | MonitorError::BadEntries { .. }) => {
            Ok(Stopped::SplitView)
        }
        Some(other) => Err(other.into()),
    }
}

/// Reports a monitor's stop loudly and runs the alert command.
pub fn alert(e: &MonitorError, command: Option<&str>) {
    tracing::error!(error = %e, "ALERT");
    if let (
        MonitorError::SplitView { path, .. } | MonitorError::BadEntries { path, .. },
        Some(cmd),
    ) = (e, command)
    {
        let status = std::process::Command::new("sh")
            .args(["-c", cmd])
            .env("GATELOG_EQUIVOCATION", path)
            .status();
        if let Err(err) = status {
            tracing::error!(error = %err, "--alert-command failed to start");
        }
    }
}
