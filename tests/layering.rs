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
/// database.
const PURE: &[&str] = &["tlog", "access"];
const IMPURE_PATHS: &[&str] = &[
    "tokio::",
    "hyper::",
    "hyper_util::",
    "rocksdb::",
    "std::fs",
    "std::net",
];

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
fn code(path: &Path) -> String {
    fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| l.split("//").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Whether `code` names `std::<module>`, directly or in a `use std::{...}`.
fn names_std_module(code: &str, module: &str) -> bool {
    if code.contains(&format!("std::{module}")) {
        return true;
    }
    code.match_indices("std::{").any(|(i, _)| {
        let group = &code[i + 6..];
        let group = &group[..group.find('}').unwrap_or(group.len())];
        group
            .split(|c: char| !c.is_alphanumeric() && c != '_')
            .any(|w| w == module)
    })
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
            for other in &all {
                if other == part || allowed.contains(other) {
                    continue;
                }
                if code.contains(&format!("crate::{other}::"))
                    || code.contains(&format!("crate::{other};"))
                {
                    violations.push(format!("{} uses crate::{other}", file.display()));
                }
            }
            if PURE.contains(part) {
                for bad in IMPURE_PATHS {
                    let hit = match bad.strip_prefix("std::") {
                        Some(module) => names_std_module(&code, module),
                        None => code.contains(bad),
                    };
                    if hit {
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
fn the_checker_catches_what_it_should() {
    assert!(names_std_module("use std::{fs, io};", "fs"));
    assert!(names_std_module("let f = std::fs::read(p);", "fs"));
    assert!(!names_std_module("use std::{fmt, io};", "fs"));
    assert!(!names_std_module("use std::{ffi::OsStr};", "fs"));
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
