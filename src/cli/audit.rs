//! `gatelog audit`: streams a log's entries (from a mirror directory or
//! the log's tile API) through [`gatelog::audit::Auditor`] and writes the
//! findings.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use gatelog::audit::{AuditSummary, Auditor};
use gatelog::cedar::CedarEngine;
use gatelog::checkpoint::Checkpoint;
use gatelog::note::NoteVerifier;
use gatelog::tiles::{decode_bundle, TileKind, TilePath, TILE_WIDTH};
use hyper::Uri;

use super::{fetch, parse_url};

#[derive(Args, Debug)]
pub struct AuditArgs {
    /// The log: a mirror directory (`gatelog mirror`) or the log's URL.
    #[arg(long, value_name = "DIR|URL")]
    log: String,
    /// The log's verifier key.
    #[arg(long, value_name = "VKEY")]
    vkey: String,
    /// A bootstrap admin's public key (FILE.pub), as the log was served
    /// with; repeatable. Identity registrations are checked against them.
    #[arg(long = "admin-key", value_name = "FILE", required = true)]
    admin_keys: Vec<PathBuf>,
    /// Where the findings go (created if missing).
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
}

/// Where entry bundles and the checkpoint come from.
enum Source {
    Dir(PathBuf),
    Url(Uri),
}

impl Source {
    fn read(&self, path: &str) -> anyhow::Result<Vec<u8>> {
        match self {
            Source::Dir(dir) => {
                let file = dir.join(path.trim_start_matches('/'));
                std::fs::read(&file).with_context(|| format!("reading {}", file.display()))
            }
            Source::Url(base) => {
                let (status, body) = fetch(base, path, Duration::from_secs(30))?;
                if status != 200 {
                    anyhow::bail!("GET {path}: HTTP {status}");
                }
                Ok(body)
            }
        }
    }
}

fn read_admin(path: &Path) -> anyhow::Result<NoteVerifier> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    NoteVerifier::parse(text.trim())
        .map_err(|e| anyhow::anyhow!("--admin-key {}: {e}", path.display()))
}

pub fn audit(args: &AuditArgs) -> ExitCode {
    match run(args) {
        Ok(summary) => {
            let n = summary.findings.len();
            println!(
                "{}: {} entries, tree {}, {n} finding(s); written to {}",
                if n == 0 && summary.tree_verified {
                    "verified"
                } else {
                    "FAILED"
                },
                summary.entries,
                if summary.tree_verified {
                    "verified"
                } else {
                    "NOT verified"
                },
                args.out.display()
            );
            for f in summary.findings.iter().take(20) {
                println!(
                    "  entry {} chain {:?}: {}: {}",
                    f.index, f.chain_id, f.code, f.message
                );
            }
            if n == 0 && summary.tree_verified {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("gatelog: error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run(args: &AuditArgs) -> anyhow::Result<AuditSummary> {
    let key = NoteVerifier::parse(&args.vkey)
        .map_err(|e| anyhow::anyhow!("--vkey {:?}: {e}", args.vkey))?;
    let admins = args
        .admin_keys
        .iter()
        .map(|p| read_admin(p))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let source = if args.log.starts_with("http://") {
        Source::Url(parse_url(&args.log)?)
    } else {
        Source::Dir(PathBuf::from(&args.log))
    };
    let note = source.read("/checkpoint")?;
    let cp = Checkpoint::open(&note, &key)
        .map_err(|e| anyhow::anyhow!("the checkpoint does not verify with --vkey: {e}"))?;
    let mut auditor = Auditor::new(key, admins, Box::new(CedarEngine::default()));
    let mut index = 0u64;
    for n in 0..cp.size.div_ceil(TILE_WIDTH) {
        let width = (cp.size - n * TILE_WIDTH).min(TILE_WIDTH);
        let tile = TilePath {
            kind: TileKind::Entries,
            index: n,
            width,
        };
        // A mirror holds the full bundle once the tree has grown past it.
        let data = match source.read(&format!("/{tile}")) {
            Err(_) if width < TILE_WIDTH => source.read(&format!(
                "/{}",
                TilePath {
                    width: TILE_WIDTH,
                    ..tile
                }
            ))?,
            r => r?,
        };
        let entries = decode_bundle(&data).map_err(|e| anyhow::anyhow!("{tile}: {}", e.0))?;
        let take = entries.len().min(width as usize);
        auditor.entries(index, &entries[..take]);
        index += take as u64;
        if index != n * TILE_WIDTH + width {
            // Fewer entries than the checkpoint covers: the tree check
            // reports it.
            break;
        }
    }
    let summary = auditor.finish(&cp, gatelog::clock::now_ms());
    write_package(&args.out, &note, &cp, &summary)?;
    Ok(summary)
}

fn csv(field: &str) -> String {
    if field.contains([',', '"', '\n']) {
        format!("\"{}\"", field.replace('"', "\"\""))
    } else {
        field.to_string()
    }
}

fn write_package(out: &Path, note: &[u8], cp: &Checkpoint, s: &AuditSummary) -> anyhow::Result<()> {
    use base64::Engine;
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let manifest = serde_json::json!({
        "tool": format!("gatelog {}", env!("CARGO_PKG_VERSION")),
        "origin": cp.origin,
        "tree_size": cp.size,
        "root": base64::engine::general_purpose::STANDARD.encode(cp.root),
        "checkpoint": String::from_utf8_lossy(note),
        "tree_verified": s.tree_verified,
        "entries": s.entries,
        "entries_by_kind": s.by_kind,
        "findings": s.findings.len(),
    });
    let path = out.join("manifest.json");
    std::fs::write(&path, serde_json::to_string_pretty(&manifest)?)
        .with_context(|| format!("writing {}", path.display()))?;
    let mut rows = String::from("index,chain_id,code,message\n");
    for f in &s.findings {
        rows.push_str(&format!(
            "{},{},{},{}\n",
            f.index,
            csv(&f.chain_id),
            csv(&f.code),
            csv(&f.message)
        ));
    }
    let path = out.join("exceptions.csv");
    std::fs::write(&path, rows).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}
