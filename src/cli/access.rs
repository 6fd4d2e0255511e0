//! `gatelog access`: who has what, from a mirror or the log's URL, with
//! the log replayed and verified first (no trust in the server's answer).

use std::path::PathBuf;
use std::process::ExitCode;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use clap::Args;
use gatelog::access::entry::{millis, DecodedEntry, Timestamp};
use gatelog::access::gate::holdings::holding_json;
use gatelog::audit::access::{replay, AccessReplay};
use gatelog::tlog::merkle::leaf_hash;
use serde_json::{json, Value};

#[derive(Args, Debug)]
#[command(group(clap::ArgGroup::new("question").required(true).args(["subject", "resource", "actor"])))]
pub struct AccessArgs {
    #[command(flatten)]
    source: super::LogSource,
    /// What this subject holds (or held --at a time).
    #[arg(long, value_name = "ID")]
    subject: Option<String>,
    /// Who holds access to this resource (of --system).
    #[arg(long, value_name = "NAME", requires = "system")]
    resource: Option<String>,
    /// The resource's system, with --resource.
    #[arg(long, value_name = "NAME", requires = "resource")]
    system: Option<String>,
    /// Every entry this identity signed: what it requested, approved,
    /// executed, recommended.
    #[arg(long, value_name = "ID")]
    actor: Option<String>,
    /// As held at this RFC 3339 time, instead of at the checkpoint.
    #[arg(long, value_name = "TIME", conflicts_with = "actor")]
    at: Option<String>,
    /// Where open chains' entries wait during the replay, past 64 MiB
    /// kept in memory (an unnamed file) [default: the system's temp dir]
    #[arg(long, value_name = "DIR")]
    spill_dir: Option<PathBuf>,
}

/// Exit 0: answered from a log that verifies; 1: answered, but the log
/// has findings (`gatelog audit` lists them) or does not hash to its
/// checkpoint; 2: no answer.
pub fn access(args: AccessArgs) -> ExitCode {
    match answer(&args) {
        Ok((answer, clean)) => {
            println!(
                "{}",
                serde_json::to_string_pretty(&answer).unwrap_or_default()
            );
            if clean {
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

fn answer(args: &AccessArgs) -> anyhow::Result<(Value, bool)> {
    let at = args
        .at
        .as_ref()
        .map(|t| {
            serde_json::from_value::<Timestamp>(Value::String(t.clone()))
                .map(|ts| millis(&ts))
                .map_err(|_| anyhow::anyhow!("--at must be an RFC 3339 time, got {t:?}"))
        })
        .transpose()?;
    let r = AccessReplay {
        log: args.source.log.clone(),
        vkey: args.source.vkey.clone(),
        admin_keys: args.source.admin_keys.clone(),
        spill_dir: args.spill_dir.clone().unwrap_or_else(std::env::temp_dir),
    };
    let replayed = replay(&r, &super::progress_bar("replay", "entries"))?;
    let clean = replayed.findings == 0 && replayed.tree_verified;
    if !clean {
        eprintln!(
            "gatelog: warning: the log has {} finding(s){}; `gatelog audit` lists them",
            replayed.findings,
            if replayed.tree_verified {
                ""
            } else {
                " and its entries do not hash to its checkpoint"
            }
        );
    }
    let state = replayed.auditor.state();
    let holdings = state.holdings().expect("the replay keeps holdings");
    let now = gatelog::sys::clock::now_ms();
    let mut answer = json!({
        "tree_size": replayed.checkpoint.size,
        "checkpoint": replayed.note,
        "verified": clean,
    });
    if let Some(actor) = &args.actor {
        let mut entries = Vec::new();
        for (index, leaf, proof) in replayed.entries(holdings.by_actor(actor))? {
            let decoded = DecodedEntry::decode(&leaf).ok();
            entries.push(json!({
                "index": index,
                "leaf_hash": B64.encode(leaf_hash(&leaf)),
                "kind": decoded.as_ref().map(|d| d.kind().name()),
                "chain_id": decoded.as_ref().map(|d| d.statement.chain_id.clone()),
                "inclusion_proof": proof.iter().map(|h| B64.encode(h)).collect::<Vec<_>>(),
            }));
        }
        answer["actor"] = json!(actor);
        answer["entries"] = json!(entries);
    } else {
        let held = match (&args.subject, &args.resource) {
            (Some(s), _) => holdings.of_subject(s, at),
            (_, Some(r)) => holdings.on_resource(args.system.as_deref().unwrap_or_default(), r, at),
            _ => unreachable!("clap requires one question"),
        };
        let mut outcomes: Vec<u64> = held.iter().map(|h| h.outcome).collect();
        outcomes.sort_unstable();
        outcomes.dedup();
        let proven: std::collections::HashMap<u64, (Vec<u8>, Vec<_>)> = replayed
            .entries(&outcomes)?
            .into_iter()
            .map(|(i, leaf, proof)| (i, (leaf, proof)))
            .collect();
        answer["holdings"] = held
            .iter()
            .map(|h| {
                let mut row = holding_json(h, state.grant_revoked_at(h.outcome), at.unwrap_or(now));
                if let Some((leaf, proof)) = proven.get(&h.outcome) {
                    row["outcome"]["leaf_hash"] = json!(B64.encode(leaf_hash(leaf)));
                    row["outcome"]["inclusion_proof"] =
                        json!(proof.iter().map(|h| B64.encode(h)).collect::<Vec<_>>());
                }
                row
            })
            .collect();
    }
    Ok((answer, clean))
}
