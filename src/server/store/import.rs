//! Moving up: `gatelog db import` copies a log from its RocksDB data
//! directory into a new PostgreSQL database and checks the copy's root.
//! The log key and origin stay, so clients, witnesses and monitors see
//! the same log (same checkpoints) served by the cluster.

use std::path::Path;

use anyhow::Context;

use crate::access::entry::{Body, DecodedEntry};
use crate::server::log::{Log, KEY_FILE};
use crate::server::store::postgres::{PgOptions, PgStore};
use crate::tlog::merkle::{leaf_hash, Hash};

/// What an import copied.
pub struct Imported {
    pub entries: u64,
    pub checkpoint: String,
}

/// The refused entry's leaf hash, if `entry` is the log's refusal record.
fn refused_by(entry: &[u8]) -> Option<Hash> {
    match &DecodedEntry::decode(entry).ok()?.statement.body {
        Some(Body::GateRefusal(g)) => Some(leaf_hash(&g.refused_entry)),
        _ => None,
    }
}

/// Copies the log in `data_dir` (its server stopped: the database is
/// locked while it runs) into the empty PostgreSQL database at `url`,
/// then opens the copy as a node would and checks it serves the same
/// checkpoint. `progress` gets (entries copied, entries).
pub fn import(data_dir: &Path, url: &str, progress: &dyn Fn(u64, u64)) -> anyhow::Result<Imported> {
    let log = Log::open_existing(data_dir)
        .with_context(|| format!("opening the log in {}", data_dir.display()))?;
    let mode_file = data_dir.join("entries");
    let mode = std::fs::read_to_string(&mode_file).with_context(|| {
        format!(
            "reading {} (serve the log once with this release first)",
            mode_file.display()
        )
    })?;
    let mode: &'static str = match mode.trim() {
        "gatelog" => "gatelog",
        "opaque" => "opaque",
        other => anyhow::bail!("{}: unknown entry mode {other:?}", mode_file.display()),
    };
    let head = log.head();
    // One transaction of many large statements: no statement timeout.
    let patient = PgOptions {
        statement_timeout: std::time::Duration::from_secs(24 * 3600),
        ..PgOptions::default()
    };
    let pg = PgStore::connect(url, patient)?;
    pg.check_entry_mode(mode)?;
    let no_refusals = |_: &[u8]| None;
    let refused: &dyn Fn(&[u8]) -> Option<Hash> = match mode {
        "gatelog" => &refused_by,
        _ => &no_refusals,
    };
    pg.import(log.store(), head.size, &head.checkpoint, refused, &|n| {
        progress(n, head.size)
    })?;
    drop(pg);
    // The copy, opened as a node opens it: its checkpoint verifies with
    // the key and its tiles give the checkpoint's root.
    let record = data_dir.join("import-check.served-checkpoint");
    let copy = Log::open_shared(
        Box::new(PgStore::connect(url, PgOptions::default())?),
        &data_dir.join(KEY_FILE),
        None,
        &record,
    )
    .context("checking the copy")?;
    let _ = std::fs::remove_file(&record);
    if copy.head().checkpoint != head.checkpoint {
        anyhow::bail!("the copy serves another checkpoint than the original");
    }
    Ok(Imported {
        entries: head.size,
        checkpoint: head.checkpoint.to_string(),
    })
}
