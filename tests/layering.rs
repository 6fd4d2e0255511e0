//! The source tree's layering, as a test: each part of `src/` uses only
//! the parts below it, and the pure parts do no I/O. The parts and what
//! each may use are listed in `src/lib.rs`'s docs; this is the same list.

use std::fs;
use std::path::{Path, PathBuf};

/// Each part and the parts it may use.
const PARTS: &[(&str, &[&str])] = &[
    ("tlog", &[]),
    ("access", &["tlog"]),
    ("sys", &["tlog"]),
    ("server", &["tlog", "access", "sys"]),
    ("observers", &["tlog", "access", "sys", "server"]),
    ("audit", &["tlog", "access", "sys", "observers"]),
];

/// Parts that must stay pure: no async runtime, no network, no files, no
/// database, no processes or environment, no wall clock.
const PURE: &[&str] = &["tlog", "access"];
/// Crates a pure part must not name.
const IMPURE_CRATES: &[&str] = &["tokio", "hyper", "hyper_util", "rocksdb"];
/// Modules and types of `std` a pure part must not name.
const IMPURE_STD: &[&str] = &["fs", "net", "process", "env", "SystemTime"];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The file's code without comments (doc comments may name anything).
/// A `//` inside a string literal ("http://...") is not a comment.
fn code(path: &Path) -> String {
    fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|line| {
            let mut in_string = false;
            let mut prev = ' ';
            for (i, c) in line.char_indices() {
                if c == '"' && prev != '\\' {
                    in_string = !in_string;
                }
                if !in_string && c == '/' && prev == '/' {
                    return &line[..i - 1];
                }
                prev = c;
            }
            line
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every name that follows `prefix::` in `code`, looking into `{...}`
/// groups at any depth: `crate::{server::store::X, tlog}` names `server`,
/// `store`, `X` and `tlog`. Over-inclusive on purpose: a name deeper in a
/// path counts too, which can only make the check stricter.
fn names_after(code: &str, prefix: &str) -> Vec<String> {
    let word = |c: char| c.is_alphanumeric() || c == '_';
    let mut named = Vec::new();
    let needle = format!("{prefix}::");
    for (i, _) in code.match_indices(&needle) {
        // Only a path that starts at `prefix`, not `foo_crate::`.
        if code[..i].chars().next_back().is_some_and(word) {
            continue;
        }
        let rest = &code[i + needle.len()..];
        let end = if rest.starts_with('{') {
            let mut depth = 0;
            rest.char_indices()
                .find(|&(_, c)| {
                    depth += match c {
                        '{' => 1,
                        '}' => -1,
                        _ => 0,
                    };
                    depth == 0
                })
                .map_or(rest.len(), |(e, _)| e)
        } else {
            rest.find(|c: char| !word(c) && c != ':')
                .unwrap_or(rest.len())
        };
        named.extend(
            rest[..end]
                .split(|c: char| !word(c))
                .filter(|w| !w.is_empty())
                .map(str::to_string),
        );
    }
    named
}

#[test]
fn each_part_uses_only_the_parts_below_it() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let all: Vec<&str> = PARTS.iter().map(|(p, _)| *p).collect();
    let mut violations = Vec::new();
    for (part, allowed) in PARTS {
        let dir = src.join(part);
        if !dir.exists() {
            violations.push(format!("src/{part}/ is missing"));
            continue;
        }
        let mut files = Vec::new();
        rust_files(&dir, &mut files);
        for file in files {
            let code = code(&file);
            // From a part's own mod.rs, `super::` is the crate root.
            let root_file = file.parent() == Some(dir.as_path()) && file.ends_with("mod.rs");
            let mut named = names_after(&code, "crate");
            if root_file {
                named.extend(names_after(&code, "super"));
            }
            for other in &all {
                if other != part && !allowed.contains(other) && named.iter().any(|n| n == other) {
                    violations.push(format!("{} uses the part {other}", file.display()));
                }
            }
            if PURE.contains(part) {
                let std_names = names_after(&code, "std");
                for bad in IMPURE_STD {
                    if std_names.iter().any(|n| n == bad) {
                        violations.push(format!("{} (pure) uses std {bad}", file.display()));
                    }
                }
                for bad in IMPURE_CRATES {
                    if !names_after(&code, bad).is_empty() {
                        violations.push(format!("{} (pure) uses {bad}", file.display()));
                    }
                }
            }
        }
    }
    assert!(
        violations.is_empty(),
        "layering violations:\n{}",
        violations.join("\n")
    );
}

#[test]
fn every_folder_of_src_is_a_known_part() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    for entry in fs::read_dir(&src).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_string();
        if path.is_dir() {
            assert!(
                name == "cli" || PARTS.iter().any(|(p, _)| *p == name),
                "src/{name}/ is not in PARTS: say what it may use"
            );
        } else {
            assert!(
                ["lib.rs", "main.rs"].contains(&name.as_str()),
                "src/{name}: put it in a part"
            );
        }
    }
}

#[test]
fn the_checker_catches_what_it_should() {
    let has =
        |code: &str, prefix: &str, name: &str| names_after(code, prefix).iter().any(|n| n == name);
    assert!(has("use std::{fs, io};", "std", "fs"));
    assert!(has("let f = std::fs::read(p);", "std", "fs"));
    assert!(has("use std::{io::{Read}, fs};", "std", "fs"));
    assert!(!has("use std::{fmt, io};", "std", "fs"));
    assert!(has(
        "use crate::{server::store::X, tlog};",
        "crate",
        "server"
    ));
    assert!(has(
        "use crate::{access::{entry, gate}, sys::clock};",
        "crate",
        "sys"
    ));
    assert!(has(
        "x = crate::server::log::Log::open();",
        "crate",
        "server"
    ));
    assert!(!has("use my_crate::server;", "crate", "server"));
    assert!(has("use tokio::net::TcpStream;", "tokio", "net"));
    let tmp = std::env::temp_dir().join("gatelog-layering-check.rs");
    fs::write(&tmp, "let u = \"http://x\"; use std::fs; // std::net\n").unwrap();
    let stripped = code(&tmp);
    assert!(
        stripped.contains("use std::fs") && !stripped.contains("std::net"),
        "{stripped}"
    );
}

/// Lines of code: not blank, not a comment, not an attribute (a command's
/// flags are mostly doc comments, which are its --help).
fn code_lines(path: &Path) -> usize {
    fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("//") && !l.starts_with("#["))
        .count()
}

#[test]
fn the_cli_holds_no_product_logic() {
    // cli/ turns flags into a configuration and makes one library call per
    // command; a file there that grows past this holds logic that belongs
    // in a part of the library.
    let cli = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/cli");
    let mut files = Vec::new();
    rust_files(&cli, &mut files);
    assert!(!files.is_empty());
    for file in files {
        let lines = code_lines(&file);
        assert!(
            lines <= 350,
            "{} has {lines} lines of code: move its logic into a part of the library",
            file.display()
        );
    }
}
