//! `gatelog verify ...`: offline and online checks an auditor runs
//! ([`gatelog::audit::verify`]). Exit 0: verified; 1: it does not verify
//! (the reason is printed); 2: the arguments or files cannot be used.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;
use gatelog::audit::verify::{checkpoint, consistency, equivocation, inclusion, Outcome, Usage};

#[derive(Subcommand, Debug)]
pub enum VerifyCommand {
    /// Check a signed checkpoint: its format and the log's signature.
    ///
    /// SOURCE is a file, or a log's URL (its /checkpoint is fetched).
    /// Prints the origin, size, root and every signer named on it.
    ///
    /// Try it:
    ///   gatelog verify checkpoint --vkey "$VKEY" http://127.0.0.1:8080
    Checkpoint {
        /// The log's verifier key, "<origin>+<key id>+<key>".
        #[arg(long, value_name = "VKEY")]
        vkey: String,
        /// A checkpoint file, or the log's URL.
        #[arg(value_name = "FILE|URL")]
        source: String,
    },
    /// Check, offline, that an entry is in the log: the tlog-proof bundle
    /// (from `gatelog submit` or POST /v1/entries) holds a checkpoint signed
    /// by the log and an inclusion proof of the entry's leaf hash.
    ///
    /// With --policy (a C2SP tlog-policy file) the checkpoint must also
    /// carry the witness cosignatures the policy's quorum requires.
    ///
    /// Try it:
    ///   gatelog verify inclusion --vkey "$VKEY" --entry entry.bin request.tlog-proof
    Inclusion {
        #[arg(long, value_name = "VKEY")]
        vkey: String,
        /// The entry's exact bytes (for gatelog entries: the SignedEntry).
        #[arg(long, value_name = "FILE")]
        entry: PathBuf,
        /// A tlog-policy the checkpoint must satisfy (witness quorum).
        #[arg(long, value_name = "FILE")]
        policy: Option<PathBuf>,
        /// The tlog-proof bundle.
        #[arg(value_name = "PROOF")]
        proof: PathBuf,
    },
    /// Check that NEW_CHECKPOINT's tree extends OLD_CHECKPOINT's: nothing
    /// before it was rewritten. The consistency proof comes from the log
    /// (--log URL) or is computed from a mirror's tiles (--log DIR).
    ///
    /// Try it:
    ///   gatelog verify consistency --vkey "$VKEY" old.checkpoint new.checkpoint --log http://127.0.0.1:8080
    Consistency {
        #[arg(long, value_name = "VKEY")]
        vkey: String,
        #[arg(value_name = "OLD_CHECKPOINT")]
        old: PathBuf,
        #[arg(value_name = "NEW_CHECKPOINT")]
        new: PathBuf,
        /// The log's URL, or a mirror directory (`gatelog mirror`).
        #[arg(long, value_name = "URL|DIR")]
        log: String,
    },
    /// Check a split-view evidence file written by `gatelog monitor`.
    ///
    /// Exit 0: both checkpoints are signed by the key and cannot both be
    /// true. Exit 1: they are not proven inconsistent (or not signed).
    /// Exit 2: the key or the file cannot be used.
    Equivocation {
        /// The log's verifier key.
        #[arg(long, value_name = "VKEY")]
        vkey: String,
        /// The evidence file.
        file: PathBuf,
    },
}

pub fn run(command: VerifyCommand) -> ExitCode {
    let result = match command {
        VerifyCommand::Checkpoint { vkey, source } => checkpoint(&vkey, &source),
        VerifyCommand::Inclusion {
            vkey,
            entry,
            policy,
            proof,
        } => inclusion(&vkey, &entry, policy.as_deref(), &proof),
        VerifyCommand::Consistency {
            vkey,
            old,
            new,
            log,
        } => consistency(&vkey, &old, &new, &log),
        VerifyCommand::Equivocation { vkey, file } => equivocation(&vkey, &file),
    };
    match result {
        Ok(Outcome::Verified(what)) => {
            println!("verified: {what}");
            ExitCode::SUCCESS
        }
        Ok(Outcome::Failed(why)) => {
            println!("FAILED: {why}");
            ExitCode::FAILURE
        }
        Err(Usage(message)) => {
            eprintln!("gatelog: error: {message}");
            ExitCode::from(2)
        }
    }
}
