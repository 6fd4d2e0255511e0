//! `gatelog audit`: flags into an [`AuditConfig`], one call to
//! [`gatelog::audit::run`], and the verdict as an exit code (0 verified,
//! 1 findings or an untrusted checkpoint, 2 unusable arguments).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use gatelog::access::replay::Period;
use gatelog::audit::{AuditConfig, Failure};

#[derive(Args, Debug)]
pub struct AuditArgs {
    #[command(flatten)]
    source: super::LogSource,
    /// The leaf hash (hex) of the log's first entry, as `gatelog serve`
    /// printed it at creation: pins the admins and rules the log started
    /// with; any other entry 0 is a `genesis_mismatch` finding.
    #[arg(long, value_name = "DIGEST", value_parser = parse_digest)]
    genesis: Option<[u8; 32]>,
    /// A witness's cosignature verifier key; repeatable. The checkpoint's
    /// cosignatures by these witnesses bound the log's time: a time record
    /// later than the earliest verified cosignature is a finding.
    #[arg(long = "witness-key", value_name = "VKEY")]
    witness_keys: Vec<String>,
    /// An earlier checkpoint (e.g. the last audit's): the log must extend
    /// it; the package records both and the consistency proof.
    #[arg(long, value_name = "FILE")]
    since: Option<PathBuf>,
    /// Report on chains opened, and rule findings on entries issued, in
    /// FROM..TO (dates or RFC 3339 times, TO exclusive, either end open:
    /// `2026-01-01..2026-04-01`, `2026-07-01..`). The whole log is still
    /// replayed and verified; integrity findings are always reported.
    #[arg(long, value_name = "FROM..TO", value_parser = parse_period)]
    period: Option<Period>,
    /// Which chains get `chains/<chain_id>.json` (every entry with an
    /// inclusion proof): all of them, only those with findings, or none.
    /// Every chain is in population.csv either way. A file per chain is
    /// most of a large audit's time on a slow filesystem.
    #[arg(long, value_name = "WHICH", default_value = "all",
          value_parser = ["all", "exceptions", "none"])]
    chains: String,
    /// Where the evidence package goes: created if missing; a directory
    /// that already holds a package is refused (evidence is not
    /// overwritten).
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// Where open chains' entries (and delegation grants) wait while the
    /// audit runs, past the newest 64 MiB kept in memory: an unnamed file,
    /// gone when the audit ends, at most twice what they hold plus 64 MiB.
    /// Put it on a disk, not a tmpfs, or it is memory again
    /// [default: the --out directory]
    #[arg(long, value_name = "DIR")]
    spill_dir: Option<PathBuf>,
    /// A draft policy: judge every past execution intent again as if it
    /// had been in force (the real history otherwise), and list in
    /// policy_simulation.csv each one it would decide otherwise. A
    /// `policyPublication` statement in JSON, or a Cedar file alone (the
    /// classes in force stay)
    #[arg(long, value_name = "FILE")]
    policy: Option<PathBuf>,
}

fn parse_digest(s: &str) -> Result<[u8; 32], String> {
    let bytes = (0..s.len())
        .step_by(2)
        .map(|i| s.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok()))
        .collect::<Option<Vec<u8>>>();
    bytes
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| "expected 64 hex digits (a SHA-256 leaf hash)".to_string())
}

fn parse_period(s: &str) -> Result<Period, String> {
    Period::parse(s)
}

pub fn audit(args: AuditArgs) -> ExitCode {
    let config = AuditConfig {
        chains: args.chains.parse().expect("clap checked the value"),
        log: args.source.log,
        vkey: args.source.vkey,
        admin_keys: args.source.admin_keys,
        genesis: args.genesis,
        witness_keys: args.witness_keys,
        since: args.since,
        period: args.period,
        out: args.out,
        spill_dir: args.spill_dir,
        draft_policy: args.policy,
    };
    let progress = super::progress_bar("audit", "entries");
    let summary = match gatelog::audit::run(&config, &progress) {
        Ok(summary) => summary,
        Err(Failure::Usage(e)) => {
            eprintln!("gatelog: error: {e:#}");
            return ExitCode::from(2);
        }
        Err(Failure::Untrusted {
            code,
            message,
            not_written,
        }) => {
            println!("FAILED: {code}: {message}");
            if let Some(e) = not_written {
                eprintln!("gatelog: error: {e}");
            }
            return ExitCode::FAILURE;
        }
    };
    let clean = summary.findings == 0 && summary.tree_verified;
    println!(
        "{}: {} entries, tree {}, {} chains reported, {} finding(s); written to {}",
        if clean { "verified" } else { "FAILED" },
        summary.entries,
        if summary.tree_verified {
            "verified"
        } else {
            "NOT verified"
        },
        summary.chains,
        summary.findings,
        config.out.display()
    );
    if config.draft_policy.is_some() {
        println!(
            "policy simulation: {} execution intents and extensions judged under the draft, {} decided otherwise (policy_simulation.csv)",
            summary.draft_judged, summary.draft_changes
        );
    }
    for f in summary.first_findings.iter().take(20) {
        println!(
            "  entry {} chain {:?}: {}: {}",
            f.index, f.chain_id, f.code, f.message
        );
    }
    if clean {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
