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
    /// An earlier checkpoint (e.g. the last audit's): the log must extend
    /// it; the package records both and the consistency proof.
    #[arg(long, value_name = "FILE")]
    since: Option<PathBuf>,
    /// Where the evidence package goes (created if missing).
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
    let since = match &args.since {
        None => None,
        Some(path) => {
            let old_note = std::fs::read(path)
                .with_context(|| format!("reading --since {}", path.display()))?;
            let old = Checkpoint::open(&old_note, &key)
                .map_err(|e| anyhow::anyhow!("--since {}: {e}", path.display()))?;
            if old.size > cp.size {
                anyhow::bail!(
                    "--since (size {}) is larger than the log's checkpoint (size {})",
                    old.size,
                    cp.size
                );
            }
            let proof = super::verify::consistency_proof(&args.log, old.size, cp.size)
                .map_err(|u| anyhow::anyhow!(u.0))?;
            let consistent = proof.as_ref().is_ok_and(|p| {
                gatelog::merkle::verify_consistency(old.size, cp.size, p, &old.root, &cp.root)
                    .is_ok()
            });
            Some(Since {
                note: String::from_utf8_lossy(&old_note).into_owned(),
                size: old.size,
                proof: proof.unwrap_or_default(),
                consistent,
            })
        }
    };
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
    let mut summary = auditor.finish(&cp, gatelog::clock::now_ms());
    if let Some(s) = since.as_ref().filter(|s| !s.consistent) {
        summary.findings.push(gatelog::audit::Finding {
            index: s.size,
            chain_id: String::new(),
            code: "not_consistent_with_since".into(),
            message: format!("the log's checkpoint does not extend the --since checkpoint of size {}: history was rewritten", s.size),
        });
    }
    write_package(&args.out, &note, &cp, since.as_ref(), &summary)?;
    Ok(summary)
}

fn csv(field: &str) -> String {
    if field.contains([',', '"', '\n']) {
        format!("\"{}\"", field.replace('"', "\"\""))
    } else {
        field.to_string()
    }
}

/// The earlier checkpoint an audit starts from.
struct Since {
    note: String,
    size: u64,
    proof: Vec<gatelog::merkle::Hash>,
    consistent: bool,
}

fn write(path: PathBuf, data: impl AsRef<[u8]>) -> anyhow::Result<()> {
    std::fs::write(&path, data).with_context(|| format!("writing {}", path.display()))
}

fn write_package(
    out: &Path,
    note: &[u8],
    cp: &Checkpoint,
    since: Option<&Since>,
    s: &AuditSummary,
) -> anyhow::Result<()> {
    use base64::Engine;
    let b64 = |h: &[u8]| base64::engine::general_purpose::STANDARD.encode(h);
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
        "chains": s.population.len(),
        "since": since.map(|x| serde_json::json!({
            "checkpoint": x.note,
            "tree_size": x.size,
            "consistency_proof": x.proof.iter().map(|h| b64(h)).collect::<Vec<_>>(),
            "consistent": x.consistent,
        })),
    });
    write(
        out.join("manifest.json"),
        serde_json::to_string_pretty(&manifest)?,
    )?;
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
    write(out.join("exceptions.csv"), rows)?;
    let mut pop = String::from(
        "chain_id,opened_at,status,requester,approvers,executor,executor_workload,system,resource,subject,adds,removes,privileged,policy,break_glass,review,findings\n",
    );
    for r in &s.population {
        let cols = [
            csv(&r.chain_id),
            r.opened_at.to_string(),
            csv(&r.status),
            csv(&r.requester),
            csv(&r.approvers.join(" ")),
            csv(&r.executor),
            csv(&r.executor_workload),
            csv(&r.system),
            csv(&r.resource),
            csv(&r.subject),
            csv(&r.adds.join(" ")),
            csv(&r.removes.join(" ")),
            r.privileged.to_string(),
            csv(&r.policy),
            r.break_glass.to_string(),
            csv(&r.review),
            r.findings.to_string(),
        ];
        pop.push_str(&cols.join(","));
        pop.push('\n');
    }
    write(out.join("population.csv"), pop)?;
    write(out.join("report.html"), report_html(cp, s))?;
    Ok(())
}

fn html(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A readable summary that opens in a browser without a server.
fn report_html(cp: &Checkpoint, s: &AuditSummary) -> String {
    use base64::Engine;
    let verdict = if s.findings.is_empty() && s.tree_verified {
        "verified: no findings"
    } else {
        "FINDINGS"
    };
    let mut kinds = String::new();
    for (k, n) in &s.by_kind {
        kinds.push_str(&format!("<tr><td>{k}</td><td>{n}</td></tr>"));
    }
    let mut exceptions = String::new();
    for f in s.findings.iter().take(1000) {
        exceptions.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            f.index,
            html(&f.chain_id),
            html(&f.code),
            html(&f.message)
        ));
    }
    // The timeline: entries per time bucket, refusals in red.
    let max = s.timeline.iter().map(|b| b.1).max().unwrap_or(1).max(1) as f64;
    let bar = 600.0 / s.timeline.len().max(1) as f64;
    let mut bars = String::new();
    for (i, (_, n, refused)) in s.timeline.iter().enumerate() {
        let h = *n as f64 / max * 120.0;
        let r = *refused as f64 / max * 120.0;
        let x = i as f64 * bar;
        let w = bar * 0.9;
        bars.push_str(&format!(
            "<rect x='{x:.1}' y='{:.1}' width='{w:.1}' height='{h:.1}' fill='#4a78c2'/><rect x='{x:.1}' y='{:.1}' width='{w:.1}' height='{r:.1}' fill='#c24a4a'/>",
            130.0 - h,
            130.0 - r,
        ));
    }
    let ts = |ms: i64| {
        serde_json::to_value(gatelog::entry::timestamp(ms))
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default()
    };
    let from = ts(s.timeline.first().map_or(0, |b| b.0));
    let to = ts(s.timeline.last().map_or(0, |b| b.0));
    let chains = s.population.len();
    let break_glass = s.population.iter().filter(|r| r.break_glass).count();
    let executed = s
        .population
        .iter()
        .filter(|r| !r.executor.is_empty())
        .count();
    let origin = html(&cp.origin);
    let size = cp.size;
    let tree = if s.tree_verified {
        "verified"
    } else {
        "NOT verified"
    };
    let root = base64::engine::general_purpose::STANDARD.encode(cp.root);
    let n = s.findings.len();
    format!(
        "<!doctype html><meta charset='utf-8'><title>gatelog audit: {origin}</title>
<style>body{{font:14px system-ui,sans-serif;margin:2em;max-width:1100px}}table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:3px 8px;text-align:left}}h1 small{{color:#666}}</style>
<h1>gatelog audit <small>{origin}</small></h1>
<p><b>{verdict}</b>. Tree of {size} entries {tree} against the signed checkpoint (root <code>{root}</code>).</p>
<p>{chains} chains ({executed} executed, {break_glass} break-glass); {n} findings. Files: manifest.json, population.csv, exceptions.csv.</p>
<h2>Timeline</h2><p>Entries by issue time, {from} to {to}; refusals in red.</p>
<svg width='620' height='140' role='img'>{bars}</svg>
<h2>Entries by kind</h2><table><tr><th>kind</th><th>entries</th></tr>{kinds}</table>
<h2>Exceptions</h2><table><tr><th>entry</th><th>chain</th><th>code</th><th>what</th></tr>{exceptions}</table>
"
    )
}
