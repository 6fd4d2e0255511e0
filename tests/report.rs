//! The audit's report.html, rendered in headless Chromium (Debian's
//! `chromium`, installed by `tools/setup --test`): a seeded workload's
//! report shows a named chain's decision trail (requester, approvers, the
//! executor's workload identity, the delta) and its finding explained in
//! words. A screenshot is kept in cargo's test tmpdir (report.png).

use std::path::{Path, PathBuf};
use std::process::Command;

/// Debian's Chromium, or None (with a message) outside CI; a failure under
/// CI=true.
fn chromium() -> Option<PathBuf> {
    let candidates = ["/usr/bin/chromium", "/usr/bin/chromium-browser"];
    if let Some(found) = candidates.iter().map(PathBuf::from).find(|p| p.exists()) {
        return Some(found);
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("chromium is missing: tools/setup --test installs it");
    }
    eprintln!("SKIPPED: chromium not found; run tools/setup --test to install it");
    None
}

/// Runs headless Chromium on `page` with `args`; its stdout.
fn headless(chromium: &Path, profile: &Path, page: &Path, args: &[&str]) -> String {
    let out = Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--allow-file-access-from-files",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .arg(format!("file://{}", page.display()))
        .output()
        .expect("running chromium");
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The text of an HTML fragment: tags dropped, entities decoded.
fn text(html: &str) -> String {
    let mut out = String::new();
    let mut in_tag = false;
    for c in html.chars() {
        match c {
            '<' => in_tag = true,
            '>' => {
                in_tag = false;
                out.push(' ');
            }
            c if !in_tag => out.push(c),
            _ => {}
        }
    }
    out.replace("&amp;", "&")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
}

fn csv_rows(path: &Path) -> Vec<csv::StringRecord> {
    let mut r = csv::Reader::from_path(path).unwrap();
    r.records().map(Result::unwrap).collect()
}

/// The position of `name` among population.csv's columns.
fn column(path: &Path, name: &str) -> usize {
    let mut r = csv::Reader::from_path(path).unwrap();
    let header = r.headers().unwrap();
    header.iter().position(|h| h == name).expect(name)
}

#[test]
fn the_report_shows_a_chains_decision_trail_and_its_finding_in_a_browser() {
    let Some(chromium) = chromium() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let log = tmp.path().join("log");
    let out = Command::new(env!("CARGO_BIN_EXE_gatelog-workload"))
        .args([
            "--seed",
            "17",
            "--chains",
            "300",
            "--inject-rate",
            "0.3",
            "--out",
        ])
        .arg(&log)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pkg = tmp.path().join("audit");
    let vkey = std::fs::read_to_string(log.join("log.vkey")).unwrap();
    let audit = Command::new(env!("CARGO_BIN_EXE_gatelog"))
        .args(["audit", "--log"])
        .arg(&log)
        .args(["--vkey", vkey.trim(), "--admin-key"])
        .arg(log.join("admin.key.pub"))
        .arg("--out")
        .arg(&pkg)
        .output()
        .unwrap();
    assert_eq!(audit.status.code(), Some(1), "the workload has findings");

    // A chain with a finding, approvers, an executor with a workload
    // identity and a delta, named by population.csv.
    let population = csv_rows(&pkg.join("population.csv"));
    let (findings, file) = (
        column(&pkg.join("population.csv"), "findings"),
        column(&pkg.join("population.csv"), "chain_file"),
    );
    let row = population
        .iter()
        .find(|r| {
            r[findings].parse::<u64>().unwrap() > 0
                && !r[5].is_empty()
                && !r[7].is_empty()
                && !r[11].is_empty()
        })
        .expect("a chain with a finding and a full trail");
    let (chain, requester, approvers, workload) = (&row[0], &row[4], &row[5], &row[7]);
    let finding = csv_rows(&pkg.join("exceptions.csv"))
        .into_iter()
        .find(|f| &f[1] == chain)
        .expect("the chain's finding");
    // The request's delta, from the chain's own file (the signed statement).
    let file: serde_json::Value =
        serde_json::from_slice(&std::fs::read(pkg.join(&row[file])).unwrap()).unwrap();
    let request = file["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == "accessRequest")
        .expect("the chain's request");
    let list = |v: &serde_json::Value| {
        v.as_array()
            .map(|a| {
                a.iter()
                    .map(|s| s.as_str().unwrap())
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .unwrap_or_default()
    };
    let d = &request["statement"]["accessRequest"]["delta"];
    let delta = format!(
        "before [{}] → after [{}]",
        list(&d["before"]),
        list(&d["after"])
    );

    let page = pkg.join("report.html");
    assert!(std::fs::metadata(&page).unwrap().len() < 20 << 20);
    let profile = tmp.path().join("chromium");
    let dom = headless(&chromium, &profile, &page, &["--dump-dom"]);
    let start = dom
        .find(&format!("id=\"chain-{chain}\""))
        .unwrap_or_else(|| panic!("no decision trail for {chain} in the rendered page"));
    let end = dom[start..]
        .find("class=\"trail\"")
        .map_or(dom.len(), |e| start + e);
    let trail = text(&dom[start..end]);
    assert!(
        trail.contains(requester),
        "requester {requester} in {trail}"
    );
    for approver in approvers.split(' ') {
        assert!(trail.contains(approver), "approver {approver} in {trail}");
    }
    assert!(trail.contains(workload), "workload {workload} in {trail}");
    assert!(trail.contains(&delta), "delta {delta} in {trail}");
    assert!(
        trail.contains(&finding[2]),
        "finding code {} in {trail}",
        &finding[2]
    );
    let explanation = gatelog::audit::report::explain(&finding[2]);
    assert_ne!(
        explanation, "See the message.",
        "{} is explained",
        &finding[2]
    );
    assert!(
        trail.contains(explanation),
        "explanation of {} in {trail}",
        &finding[2]
    );
    // The page's other parts rendered: a verdict, the timeline's axes, the
    // sortable population table with every chain of this small log.
    let all = text(&dom);
    assert!(all.contains("finding(s)"), "the verdict");
    assert!(dom.contains("<svg id=\"timeline\"") && all.contains("entries per day"));
    assert_eq!(
        dom.matches("<tr><td><a href=\"chains/").count(),
        population.len()
    );

    let shot = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("report.png");
    let _ = std::fs::remove_file(&shot);
    headless(
        &chromium,
        &profile,
        &page,
        &[
            &format!("--screenshot={}", shot.display()),
            "--window-size=1280,2000",
        ],
    );
    let png = std::fs::read(&shot).expect("the screenshot");
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 10_000,
        "a real screenshot"
    );
    eprintln!("screenshot: {}", shot.display());
}
