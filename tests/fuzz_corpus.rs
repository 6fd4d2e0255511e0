//! Replays every committed fuzz corpus (`fuzz/regressions/<target>/`: the
//! seeds, a minimized corpus of the timed runs, and any crash found)
//! through the checks the parser fuzz targets run (`fuzz/src/parsers.rs`,
//! shared with them), so what the fuzzer once covered or found stays
//! fixed. Timed fuzz runs are done by hand (`RUSTC_BOOTSTRAP=1 cargo fuzz
//! run <target>`; their working corpus, `fuzz/corpus/`, is not committed).

#[path = "../fuzz/src/parsers.rs"]
mod parsers;

#[test]
fn every_committed_corpus_file_passes_its_target() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/regressions");
    let mut replayed = 0;
    for (name, check) in parsers::TARGETS {
        let dir = root.join(name);
        let files = std::fs::read_dir(&dir).unwrap_or_else(|e| {
            panic!(
                "{}: {e} (commit the corpus of target {name})",
                dir.display()
            )
        });
        for file in files {
            let path = file.unwrap().path();
            let data = std::fs::read(&path).unwrap();
            let outcome = std::panic::catch_unwind(|| check(&data));
            assert!(
                outcome.is_ok(),
                "fuzz target {name} fails on {}",
                path.display()
            );
            replayed += 1;
        }
    }
    assert!(
        replayed >= parsers::TARGETS.len(),
        "only {replayed} corpus files"
    );
}
