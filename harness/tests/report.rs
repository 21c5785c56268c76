//! `harness report` on the shipped suites: suites/quickstart.toml (one run) and suites/nightly.toml (two runs,
//! for history), with every dataset, model, target and strategy kept and only the sample counts and timing
//! repeats cut so that the test stays fast in the debug profile, plus a `harness bench` CSV. Checks:
//!
//! * `harness run --json` prints one JSON object on stdout (files, counts, rows, the choice) and its progress
//!   bar on stderr;
//! * every chart kind is drawn: accuracy vs latency, size vs accuracy, per-layer sensitivity (the nightly
//!   suite's `sens.<layer>` probes), back ends, history over runs and kernel GOPS;
//! * each chart's SVG has marks and text, and its PNG decodes, is not one colour, and has text drawn in the
//!   title band (by the embedded font, not a system one);
//! * tables are ordered by the objective with the chosen strategy's row (and only it) highlighted;
//! * no page names the network, and, where Chromium is installed (`.ci/run` installs Debian's `chromium`),
//!   every page renders headless with every image loaded (naturalWidth > 0), no error event or console
//!   message, and a screenshot that is not blank.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::harness;

/// Starts the `harness` binary in `cwd`, its output captured.
fn harness_spawn(args: &[&str], cwd: &Path) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_harness"))
        .args(args)
        .current_dir(cwd)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("harness starts")
}

fn ok(out: &Output, what: &str) {
    assert!(
        out.status.success(),
        "{what}: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `suites/<name>.toml` copied into `dir` with its data paths made absolute, and the lines starting with
/// each prefix of `set` replaced by its line (each prefix must occur, so a renamed key fails here rather
/// than leaving the test slow).
fn shipped_suite(dir: &Path, name: &str, set: &[(&str, &str)]) -> PathBuf {
    let suites = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../suites")
        .canonicalize()
        .unwrap();
    let text = std::fs::read_to_string(suites.join(format!("{name}.toml"))).unwrap();
    let text = text.replace(
        "path = \"data/",
        &format!("path = \"{}/data/", suites.display()),
    );
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    for (prefix, new) in set {
        let mut found = 0;
        for line in &mut lines {
            if line.starts_with(prefix) {
                *line = new.to_string();
                found += 1;
            }
        }
        assert!(
            found > 0,
            "suites/{name}.toml has no line starting `{prefix}`"
        );
    }
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, lines.join("\n")).unwrap();
    path
}

/// Fewer samples and timed runs; the datasets, models, targets and space stay the suite's.
const SMALL: &[(&str, &str)] = &[
    ("calibration = { samples", "calibration = { samples = 64 }"),
    ("evaluation = { samples", "evaluation = { samples = 300 }"),
    ("warmup =", "warmup = 0"),
    ("repeats =", "repeats = 3"),
    ("min_time_ms =", "min_time_ms = 0"),
];

fn json(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not one JSON object ({e}):\n{}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
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

/// A decoded 8-bit PNG: width, height, channels and pixels.
fn decode_png(bytes: &[u8], what: &str) -> (usize, usize, usize, Vec<u8>) {
    assert!(
        bytes.starts_with(b"\x89PNG\r\n\x1a\n"),
        "{what}: no PNG signature"
    );
    let mut reader = png::Decoder::new(std::io::Cursor::new(bytes))
        .read_info()
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader
        .next_frame(&mut buf)
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    assert_eq!(info.bit_depth, png::BitDepth::Eight, "{what}");
    let channels = info.color_type.samples();
    buf.truncate(info.buffer_size());
    (info.width as usize, info.height as usize, channels, buf)
}

/// Pixels of rows `rows` darker than light grey (any channel below 160).
fn dark_pixels(
    (w, _, c, px): &(usize, usize, usize, Vec<u8>),
    rows: std::ops::Range<usize>,
) -> usize {
    px[rows.start * w * c..rows.end * w * c]
        .chunks(*c)
        .filter(|p| p.iter().take(3).any(|v| *v < 160))
        .count()
}

/// `<tr>` rows of the page's first table: (highlighted, first cell), header left out.
fn table_rows(html: &str) -> Vec<(bool, String)> {
    let table = &html[html.find("<table>").unwrap()..html.find("</table>").unwrap()];
    table
        .split("<tr")
        .skip(2)
        .map(|tr| {
            let cell = tr.split("<td>").nth(1).unwrap();
            (
                tr.starts_with(" class=\"chosen\""),
                cell[..cell.find("</td>").unwrap()].to_string(),
            )
        })
        .collect()
}

/// Prepended to a copy of each page for the browser check: records error events (a resource that fails to
/// load included; capture phase) and console errors, then on `load` writes every image's state into the
/// DOM, which `--dump-dom` prints.
const PROBE: &str = r#"<script>
window.__errors = [];
window.addEventListener('error', function (e) {
  window.__errors.push(String(e.message || (e.target && (e.target.src || e.target.href)) || e));
}, true);
window.addEventListener('unhandledrejection', function (e) { window.__errors.push(String(e.reason)); });
var __consoleError = console.error;
console.error = function () { window.__errors.push([].join.call(arguments, ' ')); __consoleError.apply(console, arguments); };
window.addEventListener('load', function () {
  var out = { errors: window.__errors, images: [].map.call(document.images, function (i) {
    return { src: i.getAttribute('src'), complete: i.complete, width: i.naturalWidth };
  }) };
  var pre = document.createElement('pre');
  pre.id = 'qh-check';
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
});
</script>"#;

/// Renders `page` headless: the probed copy's DOM (every image loaded, no error) and a screenshot of it
/// (not blank), and no console message in Chromium's log (the pages have no script of their own).
fn browser_check(browser: &str, page: &Path, images: usize) {
    let html = std::fs::read_to_string(page).unwrap();
    let probed = page.with_extension("probe.html");
    std::fs::write(
        &probed,
        html.replacen("<head>", &format!("<head>{PROBE}"), 1),
    )
    .unwrap();
    let shot = page.with_extension("shot.png");
    let out = Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--enable-logging=stderr",
            "--v=0",
            "--virtual-time-budget=10000",
            "--window-size=1200,1600",
            "--dump-dom",
            &format!("--screenshot={}", shot.display()),
        ])
        .arg(format!("file://{}", probed.display()))
        .output()
        .unwrap();
    let name = page.display();
    let log = String::from_utf8_lossy(&out.stderr);
    for bad in [
        ":CONSOLE",
        "Uncaught",
        "Failed to load resource",
        "net::ERR",
    ] {
        assert!(
            !log.contains(bad),
            "{name}: `{bad}` in Chromium's log\n{log}"
        );
    }
    let dom = String::from_utf8_lossy(&out.stdout);
    let start = dom
        .find("<pre id=\"qh-check\">")
        .unwrap_or_else(|| panic!("{name}: the load event never ran\n{log}"));
    let text = &dom[start + "<pre id=\"qh-check\">".len()..];
    let text = text[..text.find("</pre>").unwrap()]
        .replace("&quot;", "\"")
        .replace("&amp;", "&");
    let state: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(state["errors"], serde_json::json!([]), "{name}");
    let imgs = state["images"].as_array().unwrap();
    assert_eq!(imgs.len(), images, "{name}: {imgs:?}");
    for img in imgs {
        assert!(
            img["complete"] == true && img["width"].as_u64().unwrap_or(0) > 0,
            "{name}: image did not load: {img}"
        );
    }
    let png = decode_png(
        &std::fs::read(&shot).unwrap_or_else(|e| panic!("{name}: no screenshot ({e})\n{log}")),
        &format!("{name} screenshot"),
    );
    // A blank page has no dark pixel; the index's headings and links alone have thousands.
    let dark = dark_pixels(&png, 0..png.1);
    assert!(
        dark > 2000,
        "{name}: screenshot looks blank ({dark} dark pixels)"
    );
    let _ = std::fs::remove_file(probed);
    let _ = std::fs::remove_file(shot);
}

#[test]
fn shipped_suites_report_every_chart_and_render_in_chromium() {
    let dir = std::env::temp_dir().join(format!("harness-report-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let quickstart = shipped_suite(&dir, "quickstart", SMALL);
    let nightly = shipped_suite(&dir, "nightly", SMALL);

    // `run --json`, with the progress bar on stderr.
    let clock = std::time::Instant::now();
    let lap = |what: &str| eprintln!("{what}: {:.1} s", clock.elapsed().as_secs_f64());
    let out = harness(&["run", quickstart.to_str().unwrap(), "--json"], &dir);
    lap("quickstart run");
    ok(&out, "run quickstart");
    let run = json(&out);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let rows = run["rows"].as_array().unwrap();
    // Two targets, FP32 and the 12 int8 strategies on each.
    assert_eq!(rows.len(), 26, "{run}");
    assert_eq!(run["suite"], "quickstart");
    assert_eq!(run["trials_run"], 26);
    assert_eq!(run["trials_reused"], 0);
    assert!(
        stderr.contains("] 26/26 "),
        "no progress bar on stderr:\n{stderr}"
    );
    let csv = PathBuf::from(run["csv"].as_str().unwrap());
    assert!(dir.join(&csv).is_file() && dir.join(run["samples"].as_str().unwrap()).is_file());
    assert_eq!(
        csv.file_stem().unwrap().to_str(),
        run["run_id"].as_str(),
        "{run}"
    );
    for r in rows {
        assert!(r["latency_median_ns"].as_u64().unwrap() > 0 && r["top1"].as_f64().unwrap() > 0.5);
    }
    let chosen: BTreeMap<String, String> = run["chosen"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["target"].as_str().unwrap().to_string(),
                c["strategy"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    assert_eq!(chosen.len(), 2, "{run}");

    // Two nights, each measured afresh (rows reused from the trial log keep the run id that measured them,
    // so they would not make a second point of history). Both at once: GPTQ dominates and the runs are
    // independent (the second starts later, so its run id, a millisecond timestamp, differs).
    let nightly = nightly.to_str().unwrap();
    let first = harness_spawn(&["run", nightly, "-q", "--fresh"], &dir);
    std::thread::sleep(std::time::Duration::from_millis(20));
    let second = harness_spawn(&["run", nightly, "-q", "--fresh"], &dir);
    ok(&first.wait_with_output().unwrap(), "run nightly");
    ok(&second.wait_with_output().unwrap(), "run nightly");
    // A third run reuses every trial, which `run --json` counts (the report leaves out its copies of the rows).
    let out = harness(&["run", nightly, "-q", "--json"], &dir);
    ok(&out, "run nightly again");
    let again = json(&out);
    // Three targets, each with FP32, BF16, four int8 / int4 strategies, GPTQ and four sensitivity probes.
    assert_eq!(again["trials_run"], 0, "{again}");
    assert_eq!(again["trials_reused"], 33, "{again}");
    assert!(
        out.stderr.is_empty(),
        "--quiet: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let reused_csv = dir.join(again["csv"].as_str().unwrap());
    assert_eq!(again["rows"].as_array().unwrap().len(), 33);
    lap("two nightly runs");
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
    let mut csvs: Vec<String> = ["quickstart", "nightly"]
        .iter()
        .flat_map(|s| std::fs::read_dir(dir.join("results").join(s)).unwrap())
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "csv") && *p != reused_csv)
        .map(|p| p.display().to_string())
        .collect();
    csvs.sort();
    assert_eq!(csvs.len(), 3, "{csvs:?}");
    let mut args = vec!["report".to_string()];
    args.extend(csvs.iter().cloned());
    args.push("bench.csv".into());
    args.extend(["--out".into(), "site".into()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    ok(&harness(&args, &dir), "report");
    lap("bench and report");

    let site = dir.join("site");
    let pages: Vec<PathBuf> = walk(&site)
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "html"))
        .collect();
    // index and kernels; quickstart: two targets and back ends; nightly: three targets and back ends.
    assert_eq!(pages.len(), 9, "{pages:?}");
    let latest: Vec<harness::results::Row> = csvs
        .iter()
        .flat_map(|c| harness::results::read_rows(Path::new(c)).unwrap())
        .collect();
    // chart kind (the file name's last `--` part) -> suites drawing it.
    let mut kinds: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut images = BTreeMap::new();
    for page in &pages {
        let html = std::fs::read_to_string(page).unwrap();
        let name = page.display();
        assert!(
            !html.contains("http://") && !html.contains("https://"),
            "{name} references the network"
        );
        let dir = page.parent().unwrap();
        let suite = dir.file_name().unwrap().to_string_lossy().to_string();
        let srcs: Vec<&str> = html
            .split("<img src=\"")
            .skip(1)
            .map(|s| &s[..s.find('"').unwrap()])
            .collect();
        images.insert(page.clone(), srcs.len());
        for src in &srcs {
            let svg = std::fs::read_to_string(dir.join(src))
                .unwrap_or_else(|e| panic!("{name} -> {src}: {e}"));
            // A drawn chart has axes, labels and data marks, not just a background.
            let marks = svg.matches("<circle").count()
                + svg.matches("<rect").count()
                + svg.matches("<polyline").count();
            assert!(
                marks >= 5 && svg.matches("<text").count() >= 5,
                "{src} looks blank"
            );
            // The same chart as PNG, linked from the page, with its title drawn by the embedded font.
            let png_name = src.replace(".svg", ".png");
            assert!(
                html.contains(&format!("<a href=\"{png_name}\">PNG</a>")),
                "{name}: no link to {png_name}"
            );
            let png = decode_png(&std::fs::read(dir.join(&png_name)).unwrap(), &png_name);
            let first = &png.3[..png.2];
            assert!(
                png.3.chunks(png.2).any(|p| p != first),
                "{png_name} is one colour"
            );
            let title = dark_pixels(&png, 0..40);
            assert!(
                title > 200,
                "{png_name}: no text in the title band ({title} dark pixels)"
            );
            let stem = src.trim_end_matches(".svg");
            let kind = stem.rsplit("--").next().unwrap().to_string();
            kinds.entry(kind).or_default().insert(suite.clone());
        }
        // Target pages: rows in order of median latency (the suites' objective), the chosen row highlighted.
        if let Some(target) = page
            .file_stem()
            .and_then(|s| s.to_str())
            .and_then(|s| s.strip_prefix("ccexam-cnn--"))
            .filter(|t| *t != "backends")
        {
            let run_id = latest
                .iter()
                .filter(|r| r.suite == suite && r.target == target)
                .map(|r| r.run_id.as_str())
                .max()
                .unwrap();
            let mut expected: Vec<&harness::results::Row> = latest
                .iter()
                .filter(|r| r.suite == suite && r.target == target && r.run_id == run_id)
                .collect();
            expected.sort_by_key(|r| (r.latency_median_ns, r.size_bytes));
            let rows = table_rows(&html);
            let order: Vec<&str> = rows.iter().map(|r| r.1.as_str()).collect();
            let want: Vec<&str> = expected.iter().map(|r| r.strategy.as_str()).collect();
            assert_eq!(order, want, "{name}: table not ordered by latency");
            let highlighted: Vec<&str> =
                rows.iter().filter(|r| r.0).map(|r| r.1.as_str()).collect();
            assert_eq!(highlighted.len(), 1, "{name}: {highlighted:?}");
            assert!(
                html.contains(&format!("Chosen: {}", highlighted[0])),
                "{name}: the highlighted row is not the chosen strategy"
            );
            if suite == "quickstart" {
                assert_eq!(highlighted[0], chosen[target], "{name} vs run --json");
            }
        }
    }
    let suites = |k: &str| kinds.get(k).cloned().unwrap_or_default();
    let both: BTreeSet<String> = ["nightly".to_string(), "quickstart".to_string()].into();
    for kind in ["pareto", "size", "backends"] {
        assert_eq!(suites(kind), both, "{kind}: {kinds:?}");
    }
    // One run of quickstart, no sensitivity probes in its space.
    for kind in ["history", "sensitivity"] {
        assert_eq!(
            suites(kind),
            ["nightly".to_string()].into(),
            "{kind}: {kinds:?}"
        );
    }
    assert_eq!(suites("kernels"), ["site".to_string()].into(), "{kinds:?}");
    let index = std::fs::read_to_string(site.join("index.html")).unwrap();
    assert!(
        index.contains("Suite nightly")
            && index.contains("Suite quickstart")
            && index.contains("kernels.html")
    );

    match chromium() {
        None => eprintln!(
            "skipped the browser check: no chromium here (apt-get install chromium; .ci/run does)"
        ),
        Some(browser) => {
            // Two browsers at a time.
            let (a, b) = pages.split_at(pages.len() / 2);
            std::thread::scope(|s| {
                for half in [a, b] {
                    let images = &images;
                    s.spawn(move || {
                        for page in half {
                            browser_check(browser, page, images[page]);
                        }
                    });
                }
            });
            lap("browser");
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
