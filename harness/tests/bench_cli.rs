//! `harness bench` end to end (debug build, tiny shapes): the CSV has the promised header and one row per
//! shape with sane numbers; bad `--isa` and bad `--shapes` exit 2 with one error line naming the culprit; the
//! measured clock is plausible.

use std::process::{Command, Output};

const REQUIRED: [&str; 13] = [
    "op",
    "dtype",
    "isa",
    "kernel",
    "m",
    "k",
    "n",
    "threads",
    "median_ns",
    "min_ns",
    "gops",
    "peak_gops",
    "peak_fraction",
];

fn bench(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_harness"))
        .arg("bench")
        .args(args)
        .output()
        .expect("harness runs")
}

fn error_lines(out: &Output) -> Vec<String> {
    String::from_utf8_lossy(&out.stderr)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_owned)
        .collect()
}

/// Checks the CSV of a generic int8 run: the required header, then one row per `shapes` entry with sane
/// numbers; a generic kernel is held to the SSE2 ceiling of 32 int8 ops per cycle.
fn check_generic_int8_csv(out: Output, shapes: &[(usize, usize, usize)]) -> Vec<f64> {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let stdout = String::from_utf8(out.stdout).unwrap();
    let mut lines = stdout.lines();
    let header: Vec<&str> = lines.next().expect("a header").split(',').collect();
    for col in REQUIRED {
        assert!(header.contains(&col), "missing column {col}: {header:?}");
    }
    let col = |name: &str| header.iter().position(|h| *h == name).unwrap();
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    assert_eq!(rows.len(), shapes.len(), "{stdout}");
    let mut peaks = Vec::new();
    for (row, &shape) in rows.iter().zip(shapes) {
        assert_eq!(row.len(), header.len(), "{row:?}");
        assert_eq!(row[col("op")], "gemm");
        assert_eq!(row[col("dtype")], "int8");
        assert_eq!(row[col("isa")], "generic");
        assert!(row[col("kernel")].starts_with("generic_"), "{row:?}");
        let dim = |c: &str| row[col(c)].parse::<usize>().unwrap();
        assert_eq!((dim("m"), dim("k"), dim("n")), shape);
        assert_eq!(dim("threads"), 1);
        let num = |c: &str| row[col(c)].parse::<f64>().unwrap();
        assert!(num("runs") >= 3.0);
        assert!(
            num("min_ns") > 0.0 && num("median_ns") >= num("min_ns"),
            "{row:?}"
        );
        assert!(num("gops") > 0.0, "{row:?}");
        let expected_peak = num("clock_ghz") * 32.0;
        assert!((num("peak_gops") - expected_peak).abs() < 0.01, "{row:?}");
        let frac = num("peak_fraction");
        assert!(frac > 0.0 && frac < 1.5, "{row:?}");
        peaks.push(num("peak_gops"));
        assert!(
            stderr.contains(&format!("{}x{}x{}", shape.0, shape.1, shape.2)),
            "progress on stderr: {stderr}"
        );
    }
    peaks
}

#[test]
fn int8_generic_prints_a_csv_row() {
    let out = bench(&[
        "--op",
        "gemm",
        "--dtype",
        "int8",
        "--isa",
        "generic",
        "--shapes",
        "8x64x32",
        "--repeats",
        "3",
    ]);
    check_generic_int8_csv(out, &[(8, 64, 32)]);
}

#[test]
fn one_row_per_shape_and_a_given_clock_sets_the_peak() {
    let out = bench(&[
        "--dtype",
        "int8",
        "--isa",
        "generic",
        "--shapes",
        "8x64x32,3x5x7",
        "--repeats",
        "3",
        "--min-time-ms",
        "20",
        "--clock-ghz",
        "3.5",
    ]);
    let peaks = check_generic_int8_csv(out, &[(8, 64, 32), (3, 5, 7)]);
    assert_eq!(peaks, vec![3.5 * 32.0; 2]);
}

#[test]
fn unknown_isa_exits_2_with_one_line() {
    let out = bench(&["--isa", "sse9", "--shapes", "8x64x32"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
    let lines = error_lines(&out);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].starts_with("error:") && lines[0].contains("sse9"),
        "{lines:?}"
    );
}

#[test]
fn an_isa_this_cpu_lacks_exits_2() {
    let Some(missing) = kernels::Isa::ALL.into_iter().find(|i| !i.is_available()) else {
        eprintln!("skipped: this CPU has every ISA tier");
        return;
    };
    let out = bench(&["--isa", missing.name(), "--shapes", "8x64x32"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
    assert_eq!(error_lines(&out).len(), 1);
}

#[test]
fn malformed_shape_exits_2_naming_it() {
    let out = bench(&["--isa", "generic", "--shapes", "8x64"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
    let lines = error_lines(&out);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].contains("`8x64`"), "{lines:?}");
}

#[test]
fn measured_clock_is_plausible() {
    let ghz = harness::bench::clock::measure_ghz();
    assert!((0.5..7.0).contains(&ghz), "{ghz} GHz");
    let out = bench(&["--print-clock"]);
    assert!(out.status.success());
    let printed: f64 = String::from_utf8(out.stdout)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!((0.5..7.0).contains(&printed), "{printed} GHz");
}
