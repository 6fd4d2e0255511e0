//! A monitor: follows a log's checkpoints, checks each is consistent with
//! the latest one it holds, serves that one to peer monitors and checks
//! theirs the same way. Two checkpoints signed by the log's key that are
//! not consistent (same size and another root, or no valid consistency
//! proof from the log) are a split view: the monitor writes the evidence
//! ([`crate::equivocation`]) and stops.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::{Request, Uri};
use hyper_util::rt::TokioIo;
use thiserror::Error;
use tokio::net::TcpStream;

use crate::checkpoint::Checkpoint;
use crate::equivocation::Equivocation;
use crate::keyfile;
use crate::merkle::{verify_consistency, Hash};
use crate::note::NoteVerifier;

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
}

/// Why the monitor stopped.
#[derive(Debug, Error)]
pub enum MonitorError {
    #[error("split view: {reason}; evidence written to {path}")]
    SplitView { reason: String, path: PathBuf },
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
}

/// GET `path` under `base`; the status and body.
pub async fn http_get(base: &Uri, path: &str, timeout: Duration) -> Result<(u16, Bytes), String> {
    let authority = base.authority().ok_or("URL without host")?.clone();
    let uri = format!("{}{path}", base.path().trim_end_matches('/'));
    let fetch = async {
        let stream = TcpStream::connect(authority.as_str())
            .await
            .map_err(|e| e.to_string())?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        let req = Request::get(uri)
            .header("host", authority.as_str())
            .body(Empty::<Bytes>::new())
            .map_err(|e| e.to_string())?;
        let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
        let status = resp.status().as_u16();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        Ok((status, body))
    };
    tokio::time::timeout(timeout, fetch)
        .await
        .map_err(|_| format!("no answer from {authority} within {timeout:?}"))?
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
        Ok(Monitor {
            config,
            latest: Mutex::new(latest),
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
        let timeout = self.config.poll.max(Duration::from_secs(2));
        loop {
            let mut seen = Vec::new();
            match http_get(&self.config.log, "/checkpoint", timeout).await {
                Ok((200, body)) => seen.push((format!("log {}", self.config.log), body)),
                Ok((s, _)) => eprintln!("gatelog monitor: log answered {s} for /checkpoint"),
                Err(e) => eprintln!("gatelog monitor: log: {e}"),
            }
            for peer in &self.config.peers {
                match http_get(peer, "/v1/monitor/checkpoint", timeout).await {
                    Ok((200, body)) => seen.push((format!("peer {peer}"), body)),
                    Ok((404, _)) => {}
                    Ok((s, _)) => eprintln!("gatelog monitor: peer {peer} answered {s}"),
                    Err(e) => eprintln!("gatelog monitor: peer {peer}: {e}"),
                }
            }
            for (source, body) in seen {
                if let Err(e) = self
                    .observe(&String::from_utf8_lossy(&body), &source, timeout)
                    .await
                {
                    return e;
                }
            }
            tokio::time::sleep(self.config.poll).await;
        }
    }

    /// Checks one checkpoint against the latest accepted one.
    async fn observe(
        &self,
        note: &str,
        source: &str,
        timeout: Duration,
    ) -> Result<(), MonitorError> {
        let Ok(new) = Checkpoint::open(note.as_bytes(), &self.config.key) else {
            eprintln!(
                "gatelog monitor: {source} served a checkpoint the log's key did not sign; ignored"
            );
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
        let path = format!(
            "/v1/proof/consistency?old_size={}&tree_size={}",
            small.size, large.size
        );
        let proof = match http_get(&self.config.log, &path, timeout).await {
            Ok((200, body)) => parse_hashes(&body),
            Ok((status, body)) => Err(format!(
                "the log answered {status}: {}",
                String::from_utf8_lossy(&body)
            )),
            Err(e) => {
                // Unreachable is not evidence; try again next poll.
                eprintln!("gatelog monitor: consistency proof: {e}");
                return Ok(());
            }
        };
        let checked = proof.as_ref().map_err(Clone::clone).and_then(|p| {
            verify_consistency(small.size, large.size, p, &small.root, &large.root)
                .map_err(|e| e.to_string())
        });
        match checked {
            Ok(()) if new.size > old.size => self.accept(note, new),
            Ok(()) => Ok(()),
            Err(why) => Err(self.split_view(
                &old_note,
                note,
                proof.unwrap_or_default(),
                format!(
                    "{source}: no valid consistency proof from {} to {}: {why}",
                    small.size, large.size
                ),
            )),
        }
    }

    fn accept(&self, note: &str, cp: Checkpoint) -> Result<(), MonitorError> {
        let dir = &self.config.data_dir;
        let tmp = dir.join(format!("{LATEST_FILE}.tmp"));
        let path = dir.join(LATEST_FILE);
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| MonitorError::Io { path, source }
        };
        std::fs::write(&tmp, note).map_err(io(&tmp))?;
        std::fs::File::open(&tmp)
            .and_then(|f| f.sync_all())
            .map_err(io(&tmp))?;
        std::fs::rename(&tmp, &path).map_err(io(&path))?;
        keyfile::sync_dir(dir).map_err(io(dir))?;
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
        let path = self.config.data_dir.join(format!("equivocation-{now}.txt"));
        if let Err(e) = std::fs::write(&path, evidence.encode()) {
            eprintln!(
                "gatelog monitor: could not write evidence to {}: {e}",
                path.display()
            );
        }
        MonitorError::SplitView { reason, path }
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
