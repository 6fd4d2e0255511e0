//! Writes a seed corpus for the `entry` target into the directory given
//! (default `fuzz/corpus/entry`): every leaf of the cast's history, the
//! candidate statements signed by their actors (the passing intent, an
//! outcome, reviews, a recommendation, a denial, a revocation, a new
//! request, and some the gate refuses), and each statement's proto3 JSON.

use std::path::PathBuf;

use gatelog::access::entry::{self, DecodedEntry, Limits};
use gatelog::access::gate::{self, Verdict};
use gatelog_fuzz::{AllowAll, Cast, NOW};

fn main() {
    let dir = PathBuf::from(
        std::env::args()
            .nth(1)
            .unwrap_or_else(|| "fuzz/corpus/entry".into()),
    );
    std::fs::create_dir_all(&dir).expect("create the corpus directory");
    let cast = Cast::new();
    let mut n = 0;
    let mut write = |name: String, bytes: &[u8]| {
        std::fs::write(dir.join(name), bytes).expect("write a seed");
        n += 1;
    };
    for (i, at) in cast.history.iter().enumerate() {
        write(format!("seed-history-{i:02}.pb"), &at.leaf);
        let st = DecodedEntry::decode(&at.leaf).unwrap().statement;
        write(
            format!("seed-history-{i:02}.json"),
            serde_json_string(&st).as_bytes(),
        );
    }
    for (i, (who, st)) in cast.candidates().iter().enumerate() {
        let key = &cast.signer(who).1;
        let leaf = Cast::leaf(key, st);
        eprintln!("candidate {i:02} by {who}: {}", judge(&cast, &leaf));
        write(format!("seed-candidate-{i:02}.pb"), &leaf);
        write(
            format!("seed-candidate-{i:02}.json"),
            serde_json_string(st).as_bytes(),
        );
    }
    eprintln!("wrote {n} seeds to {}", dir.display());
}

fn serde_json_string(st: &entry::Statement) -> String {
    serde_json::to_string_pretty(st).expect("the cast's statements have a JSON form")
}

/// What the log would do with `leaf` at `cast.next`, in a few words.
fn judge(cast: &Cast, leaf: &[u8]) -> String {
    let d = match DecodedEntry::decode(leaf) {
        Ok(d) => d,
        Err(e) => return format!("undecodable ({e})"),
    };
    if let Err(e) = entry::validate(&d, NOW, &Limits::default()) {
        return format!("invalid ({e})");
    }
    let key = match cast.state.signing_key(&d) {
        Ok(k) => k,
        Err(r) => return format!("rejected: {}", r.code),
    };
    if !entry::verify(&key, &d.signed.statement, &d.signed.signature) {
        return "bad signature".into();
    }
    match gate::check(&cast.state, cast.next, &d, &mut AllowAll) {
        Ok(Verdict::Admit) => "admitted".into(),
        Ok(Verdict::Refuse(r)) => format!(
            "refused ({})",
            r.violations
                .iter()
                .map(|v| v.code.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Err(r) => format!("rejected: {}", r.code),
    }
}
