//! `harness report` on real results: a tiny suite (the pretrained MNIST CNN on real digits, two targets, run
//! twice for history) and a `harness bench` CSV. Every page's images exist and are drawn charts (not blank
//! SVG), pages reference nothing on the network, and, where Chromium is installed (`.ci/run` installs
//! Debian's `chromium`), every page renders headless with no console error and a non-blank screenshot.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{harness, mnist_suite};

fn ok(out: &Output, what: &str) {
    assert!(
        out.status.success(),
        "{what}: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Two targets (the best ISA and the portable generic kernels), static and weight-only per channel.
fn suite(dir: &Path) -> PathBuf {
    mnist_suite(
        dir,
        "report-test",
        3,
        r#"[[target]]
name = "best"

[[target]]
name = "portable"
isa = "generic"

[space]
activations = ["static", "weight-only"]
granularity = ["channel"]
scheme = ["symmetric"]

[measure]
warmup = 0
repeats = 2
min_time_ms = 0
eval_batch = 50
"#,
    )
}

/// Chromium's binary name on Debian, if installed.
fn chromium() -> Option<&'static str> {
    ["chromium", "chromium-browser", "google-chrome"]
        .into_iter()
        .find(|b| {
            Command::new(b)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success())
        })
}

#[test]
fn report_pages_have_drawn_charts_and_render_offline() {
    let dir = std::env::temp_dir().join(format!("harness-report-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let suite = suite(&dir);
    let s = suite.to_str().unwrap();
    // Two runs (history), measured afresh.
    for _ in 0..2 {
        ok(&harness(&["run", s, "-q", "--fresh"], &dir), "run");
    }
    let bench = harness(
        &[
            "bench",
            "--op",
            "gemm",
            "--dtype",
            "int8,f32",
            "--shapes",
            "8x64x64",
            "--threads",
            "1",
        ],
        &dir,
    );
    ok(&bench, "bench");
    std::fs::write(dir.join("bench.csv"), &bench.stdout).unwrap();
    let mut csvs: Vec<String> = std::fs::read_dir(dir.join("results/report-test"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "csv"))
        .map(|p| p.display().to_string())
        .collect();
    csvs.sort();
    assert_eq!(csvs.len(), 2, "{csvs:?}");
    let mut args = vec!["report".to_string()];
    args.extend(csvs);
    args.push("bench.csv".into());
    args.extend(["--out".into(), "site".into()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = harness(&args, &dir);
    ok(&out, "report");

    let site = dir.join("site");
    let pages: Vec<PathBuf> = walk(&site)
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "html"))
        .collect();
    // index, kernels, two target pages and the back-end page.
    assert_eq!(pages.len(), 5, "{pages:?}");
    let mut charts = 0;
    for page in &pages {
        let html = std::fs::read_to_string(page).unwrap();
        assert!(
            !html.contains("http://") && !html.contains("https://"),
            "{} references the network",
            page.display()
        );
        for src in html
            .split("<img src=\"")
            .skip(1)
            .map(|s| &s[..s.find('"').unwrap()])
        {
            let svg = std::fs::read_to_string(page.parent().unwrap().join(src))
                .unwrap_or_else(|e| panic!("{} -> {src}: {e}", page.display()));
            // A drawn chart has axes, labels and data marks, not just a background.
            let marks = svg.matches("<circle").count()
                + svg.matches("<rect").count()
                + svg.matches("<polyline").count();
            assert!(
                marks >= 5 && svg.matches("<text").count() >= 5,
                "{src} looks blank"
            );
            charts += 1;
        }
    }
    // Per target: Pareto, size, history (2 runs); the back-end chart; the kernel chart.
    assert_eq!(charts, 2 * 3 + 1 + 1);
    let index = std::fs::read_to_string(site.join("index.html")).unwrap();
    assert!(index.contains("report-test") && index.contains("kernels.html"));

    match chromium() {
        None => eprintln!(
            "skipped the browser check: no chromium here (apt-get install chromium; .ci/run does)"
        ),
        Some(browser) => {
            for page in &pages {
                let shot = dir.join("shot.png");
                let _ = std::fs::remove_file(&shot);
                let out = Command::new(browser)
                    .args([
                        "--headless",
                        "--no-sandbox",
                        "--disable-gpu",
                        "--enable-logging=stderr",
                        "--v=0",
                        "--window-size=1200,1600",
                        &format!("--screenshot={}", shot.display()),
                    ])
                    .arg(format!("file://{}", page.display()))
                    .output()
                    .unwrap();
                let log = String::from_utf8_lossy(&out.stderr);
                for bad in [
                    "Failed to load resource",
                    "Uncaught",
                    "ERR_FILE_NOT_FOUND",
                    "net::ERR",
                ] {
                    assert!(!log.contains(bad), "{}: {bad}\n{log}", page.display());
                }
                let png = std::fs::read(&shot)
                    .unwrap_or_else(|e| panic!("{}: no screenshot ({e})\n{log}", page.display()));
                // A white 1200x1600 page compresses to a few KB; charts and tables do not.
                assert!(
                    png.len() > 20_000,
                    "{}: screenshot of {} bytes looks blank",
                    page.display(),
                    png.len()
                );
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}
