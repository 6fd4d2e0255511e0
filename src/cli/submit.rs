//! `gatelog submit` and `gatelog endorse`: a statement signed, endorsed by
//! further admins where the log's threshold asks for it, and sent.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use gatelog::access::entry::{self, statement_from_json, timestamp, SignedEntry, Statement};
use gatelog::sys::client::{http_request, parse_url};
use gatelog::sys::keyfile;
use hyper::Method;
use prost::Message;

#[derive(Args, Debug)]
pub struct SubmitArgs {
    /// The log's URL, e.g. http://127.0.0.1:8080.
    #[arg(long, value_name = "URL")]
    pub log: String,
    /// The log's verifier key, from a source you trust (not from the log
    /// itself). The answer must verify with it, or submit exits 1: the
    /// checkpoint's signature, the inclusion proof, and that the entry
    /// proven is the one sent.
    #[arg(long, value_name = "VKEY", required_unless_present_any = ["hold", "insecure_no_verify", "dry_run"])]
    pub vkey: Option<String>,
    /// A tlog-policy file: the checkpoint must also carry its witnesses'
    /// cosignatures.
    #[arg(long, value_name = "FILE")]
    pub policy: Option<PathBuf>,
    /// Believe the log's answer without checking it (tests, first contact).
    #[arg(long)]
    pub insecure_no_verify: bool,
    /// The signer's private key file (from `gatelog keygen`).
    #[arg(long, value_name = "FILE", required_unless_present = "entry")]
    pub key: Option<PathBuf>,
    /// Another admin's private key file, whose signature (an endorsement)
    /// joins the signer's; repeatable. An admin action that creates
    /// authority (the admin set, a HUMAN's registration or key, a policy)
    /// needs as many admins as the log's admin threshold.
    #[arg(long = "endorse-key", value_name = "FILE")]
    pub endorse_keys: Vec<PathBuf>,
    /// Sign, but do not send: write the signed entry to FILE for other
    /// admins to `gatelog endorse`, then send it with --entry. Every
    /// endorsement must be in within the log's clock skew (default 5
    /// minutes) of the statement's issuedAt.
    #[arg(long, value_name = "FILE", conflicts_with = "entry")]
    pub hold: Option<PathBuf>,
    /// Ask the gate what it would decide on the signed statement now,
    /// logging nothing (`POST /v1/gate/check`): prints the verdict and
    /// every violation; exits 0 if it would be admitted, 1 if not.
    /// Advisory: the answer is not signed, and the log may decide
    /// otherwise by the time the statement is sent.
    #[arg(long, conflicts_with = "hold")]
    pub dry_run: bool,
    /// Send this signed (and endorsed) entry instead of a statement.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["statement", "key"])]
    pub entry: Option<PathBuf>,
    /// Where to save the tlog-proof bundle (default: STATEMENT or ENTRY with
    /// the extension .tlog-proof).
    #[arg(long, value_name = "FILE")]
    pub proof_out: Option<PathBuf>,
    /// Seconds to wait for the log's answer.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub timeout_secs: u64,
    /// The statement, in proto3 JSON ("-" reads standard input).
    #[arg(required_unless_present = "entry")]
    pub statement: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct EndorseArgs {
    /// This admin's private key file.
    #[arg(long, value_name = "FILE")]
    pub key: PathBuf,
    /// The entry `gatelog submit --hold` wrote; the endorsement is added
    /// to it in place.
    pub entry: PathBuf,
}

pub(super) fn submit(args: &SubmitArgs) -> anyhow::Result<ExitCode> {
    let log = parse_url(&args.log)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let timeout = Duration::from_secs(args.timeout_secs);
    let (signed, source) = match (&args.entry, &args.statement, &args.key) {
        (Some(path), _, _) => (read_entry(path)?, path.clone()),
        (None, Some(path), Some(key)) => {
            let mut statement = read_statement(path)?;
            name_the_log(&runtime, &log, &args.log, &mut statement, timeout)?;
            let mut signed = entry::sign(&keyfile::read_private_key(key)?, &statement);
            for path in &args.endorse_keys {
                entry::endorse(&keyfile::read_private_key(path)?, &mut signed);
            }
            (signed, path.clone())
        }
        _ => anyhow::bail!("give a STATEMENT and --key, or --entry"),
    };
    if args.dry_run {
        return dry_run(&runtime, &log, &args.log, &signed, timeout);
    }
    if let Some(hold) = &args.hold {
        write_entry(hold, &signed)?;
        eprintln!(
            "gatelog: signed, not sent: {} (admins endorse it with `gatelog endorse --key FILE {0}`, then `gatelog submit --log {} --entry {0}`)",
            hold.display(),
            args.log
        );
        return Ok(ExitCode::SUCCESS);
    }
    let (status, body) = runtime
        .block_on(http_request(
            Method::POST,
            &log,
            "/v1/entries",
            signed.encode_to_vec().into(),
            timeout,
        ))
        .map_err(|e| anyhow::anyhow!("submitting to {}: {e}", args.log))?;
    let answer: serde_json::Value = serde_json::from_slice(&body)
        .unwrap_or_else(|_| serde_json::Value::String(String::from_utf8_lossy(&body).into_owned()));
    let pretty = serde_json::to_string_pretty(&answer).unwrap_or_default();
    if status != 200 {
        eprintln!("gatelog: the log refused the statement (HTTP {status}):");
        eprintln!("{pretty}");
        return Ok(ExitCode::FAILURE);
    }
    let checked = match (&args.vkey, args.insecure_no_verify) {
        (Some(vkey), _) => Some(check_answer(
            vkey,
            args.policy.as_deref(),
            &signed,
            &answer,
        )?),
        (None, true) => None,
        (None, false) => anyhow::bail!("--vkey is required (or --insecure-no-verify)"),
    };
    match checked {
        Some(Err(why)) => {
            eprintln!("gatelog: the log's answer does not verify: {why}");
            eprintln!("{pretty}");
            return Ok(ExitCode::FAILURE);
        }
        Some(Ok(what)) => eprintln!("gatelog: verified: {what}"),
        None => eprintln!("gatelog: not verified (--insecure-no-verify)"),
    }
    println!("{pretty}");
    let proof_out = args.proof_out.clone().unwrap_or_else(|| {
        if source.as_os_str() == "-" {
            PathBuf::from("statement.tlog-proof")
        } else {
            source.with_extension("tlog-proof")
        }
    });
    let proof = answer["proof"].as_str().unwrap_or_default();
    std::fs::write(&proof_out, proof)
        .with_context(|| format!("writing {}", proof_out.display()))?;
    eprintln!(
        "gatelog: tlog-proof bundle saved to {}",
        proof_out.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// A statement names the log it is for: unless it does, asks the log its
/// name.
fn name_the_log(
    runtime: &tokio::runtime::Runtime,
    log: &hyper::Uri,
    url: &str,
    statement: &mut Statement,
    timeout: Duration,
) -> anyhow::Result<()> {
    if !statement.log_origin.is_empty() {
        return Ok(());
    }
    let (status, body) = runtime
        .block_on(http_request(
            Method::GET,
            log,
            "/v1/log",
            Vec::new().into(),
            timeout,
        ))
        .map_err(|e| anyhow::anyhow!("asking {url} for its origin: {e}"))?;
    let about: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    match about["origin"].as_str() {
        Some(origin) if status == 200 => statement.log_origin = origin.to_string(),
        _ => anyhow::bail!(
            "{url} did not say its origin (GET /v1/log: HTTP {status}); set logOrigin in the statement"
        ),
    }
    Ok(())
}

/// Asks the gate what it would decide on `signed` now.
fn dry_run(
    runtime: &tokio::runtime::Runtime,
    log: &hyper::Uri,
    url: &str,
    signed: &SignedEntry,
    timeout: Duration,
) -> anyhow::Result<ExitCode> {
    let (status, body) = runtime
        .block_on(http_request(
            Method::POST,
            log,
            "/v1/gate/check",
            signed.encode_to_vec().into(),
            timeout,
        ))
        .map_err(|e| anyhow::anyhow!("asking {url} for a dry run: {e}"))?;
    let answer: serde_json::Value = serde_json::from_slice(&body)
        .unwrap_or_else(|_| serde_json::Value::String(String::from_utf8_lossy(&body).into_owned()));
    println!(
        "{}",
        serde_json::to_string_pretty(&answer).unwrap_or_default()
    );
    let verdict = answer["verdict"].as_str().unwrap_or("");
    eprintln!(
        "gatelog: dry run (HTTP {status}): {}",
        match verdict {
            "admit" => "the gate would admit it now",
            "refuse" => "the gate would refuse it (and record the refusal)",
            "reject" => "the log would reject it (nothing logged)",
            _ => "no verdict",
        }
    );
    Ok(if status == 200 && verdict == "admit" {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Shows what the entry says, then adds this admin's endorsement.
pub(super) fn endorse(args: &EndorseArgs) -> anyhow::Result<ExitCode> {
    let key = keyfile::read_private_key(&args.key)?;
    let mut signed = read_entry(&args.entry)?;
    let statement = Statement::decode(signed.statement.as_slice())
        .with_context(|| format!("{}: the statement does not decode", args.entry.display()))?;
    if signed.signer_id == key.name()
        || signed
            .endorsements
            .iter()
            .any(|e| e.signer_id == key.name())
    {
        anyhow::bail!("{} has already signed {}", key.name(), args.entry.display());
    }
    eprintln!(
        "gatelog: {} endorses, as signed by {}:",
        key.name(),
        signed.signer_id
    );
    eprintln!(
        "{}",
        serde_json::to_string_pretty(&statement).unwrap_or_default()
    );
    entry::endorse(&key, &mut signed);
    write_entry(&args.entry, &signed)?;
    eprintln!(
        "gatelog: {} now has {} signature(s)",
        args.entry.display(),
        1 + signed.endorsements.len()
    );
    Ok(ExitCode::SUCCESS)
}

/// Whether the log's 200 answer proves the entry that was sent
/// ([`gatelog::sys::client::verify_answer`]), with the key and policy
/// files read. `Err` of the outer result: unusable arguments.
fn check_answer(
    vkey: &str,
    policy: Option<&Path>,
    sent: &SignedEntry,
    answer: &serde_json::Value,
) -> anyhow::Result<Result<String, String>> {
    use gatelog::tlog::merkle::{hex, leaf_hash};
    use gatelog::tlog::note::NoteVerifier;
    use gatelog::tlog::policy::Policy;
    let key = NoteVerifier::parse(vkey).map_err(|e| anyhow::anyhow!("--vkey {vkey:?}: {e}"))?;
    let policy = match policy {
        None => None,
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            Some(Policy::parse(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?)
        }
    };
    let sent = sent.encode_to_vec();
    Ok(
        gatelog::sys::client::verify_answer(answer, &sent, &key, policy.as_ref()).map(|p| {
            format!(
                "entry {} (leaf {}) is in checkpoint {} of size {}",
                p.index,
                hex(&leaf_hash(&sent)[..8]),
                p.checkpoint.origin,
                p.checkpoint.size
            )
        }),
    )
}

fn read_statement(path: &Path) -> anyhow::Result<Statement> {
    let json = if path.as_os_str() == "-" {
        std::io::read_to_string(std::io::stdin()).context("reading standard input")?
    } else {
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?
    };
    let mut statement =
        statement_from_json(&json).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    if statement.issued_at.is_none() {
        statement.issued_at = Some(timestamp(gatelog::sys::clock::now_ms()));
    }
    Ok(statement)
}

fn read_entry(path: &Path) -> anyhow::Result<SignedEntry> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    SignedEntry::decode(bytes.as_slice()).with_context(|| {
        format!(
            "{}: not a signed entry (from `gatelog submit --hold`)",
            path.display()
        )
    })
}

/// Written whole or not at all (a temporary file renamed over it).
fn write_entry(path: &Path, signed: &SignedEntry) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, signed.encode_to_vec())
        .and_then(|()| std::fs::rename(&tmp, path))
        .with_context(|| format!("writing {}", path.display()))
}
