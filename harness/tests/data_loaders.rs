//! Tests of the dataset loaders and the stratified splitter on the real data committed under
//! `suites/data/` (and on Fashion-MNIST when the `dataset-fashion-mnist` package is installed).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use harness::data::{
    DataError, LabelColumn, Normalize, RawData, load_csv, load_idx, load_npy, read_npy_f32,
    read_npy_i64, stratified_split,
};

fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../suites/data")
}

fn mnist_path() -> PathBuf {
    data_dir().join("mnist_5k/mnist_5k.csv.gz")
}

/// mnist_5k, loaded once per test binary.
fn mnist() -> &'static RawData {
    static MNIST: OnceLock<RawData> = OnceLock::new();
    MNIST.get_or_init(|| load_csv(&mnist_path(), LabelColumn::Last).expect("load mnist_5k"))
}

fn class_counts(labels: &[i64]) -> BTreeMap<i64, usize> {
    let mut counts = BTreeMap::new();
    for &l in labels {
        *counts.entry(l).or_insert(0) += 1;
    }
    counts
}

fn min_max(data: &RawData) -> (f32, f32) {
    data.features
        .iter()
        .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &v| {
            (lo.min(v), hi.max(v))
        })
}

fn assert_one_line_naming(err: &DataError, file: &Path) {
    let msg = err.to_string();
    let name = file.file_name().unwrap().to_string_lossy();
    assert!(msg.contains(&*name), "message {msg:?} does not name {name}");
    assert!(!msg.contains('\n'), "message {msg:?} is not one line");
}

// ---------------------------------------------------------------------------------------------
// CSV

#[test]
fn mnist_5k_csv_loads() {
    let data = mnist();
    assert_eq!(data.len(), 5000);
    assert_eq!(data.features.dim(), (5000, 784));
    assert_eq!(data.features_per_sample(), 784);
    assert_eq!(data.source, mnist_path());
    let counts = class_counts(&data.labels);
    assert_eq!(
        counts,
        (0..10).map(|c| (c, 500)).collect::<BTreeMap<_, _>>()
    );
    let (lo, hi) = min_max(data);
    assert_eq!((lo, hi), (0.0, 255.0));
    assert!(data.features.iter().all(|v| v.fract() == 0.0));
}

#[test]
fn sklearn_digits_csv_loads() {
    let path = data_dir().join("sklearn_digits/digits.csv.gz");
    let data = load_csv(&path, LabelColumn::Last).unwrap();
    assert_eq!(data.features.dim(), (1797, 64));
    assert_eq!(data.labels.len(), 1797);
    let (lo, hi) = min_max(&data);
    assert_eq!((lo, hi), (0.0, 16.0));
    let counts = class_counts(&data.labels);
    assert_eq!(
        counts.keys().copied().collect::<Vec<_>>(),
        (0..10).collect::<Vec<_>>()
    );
    assert_eq!(counts.values().sum::<usize>(), 1797);
    // First row of the file: 64 pixels starting 0,0,5,13,9,1 then label 0.
    assert_eq!(data.labels[0], 0);
    assert_eq!(
        data.features
            .row(0)
            .iter()
            .take(6)
            .copied()
            .collect::<Vec<_>>(),
        [0.0, 0.0, 5.0, 13.0, 9.0, 1.0]
    );
}

#[test]
fn csv_label_column_choices_and_plain_text() {
    // The first real digits rows, as plain (uncompressed) CSV with the label first / in the middle.
    let digits = load_csv(
        &data_dir().join("sklearn_digits/digits.csv.gz"),
        LabelColumn::Last,
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let first = dir.path().join("label_first.csv");
    let middle = dir.path().join("label_middle.csv.gz"); // named .gz but plain text
    let mut text_first = String::new();
    let mut text_middle = String::new();
    for r in 0..20 {
        let px: Vec<String> = digits
            .features
            .row(r)
            .iter()
            .map(|v| v.to_string())
            .collect();
        let label = digits.labels[r];
        text_first += &format!("{label},{}\n", px.join(","));
        text_middle += &format!("{},{label},{}\n", px[..10].join(","), px[10..].join(","));
    }
    std::fs::write(&first, text_first).unwrap();
    std::fs::write(&middle, text_middle).unwrap();
    let expected = digits.select(&(0..20).collect::<Vec<_>>()).unwrap();
    let a = load_csv(&first, LabelColumn::First).unwrap();
    let b = load_csv(&middle, LabelColumn::Index(10)).unwrap();
    for got in [a, b] {
        assert_eq!(got.features, expected.features);
        assert_eq!(got.labels, expected.labels);
    }
}

// ---------------------------------------------------------------------------------------------
// NumPy

#[test]
fn npy_reference_is_every_50th_mnist_row() {
    let reference = data_dir().join("ccexam_mnist_cnn/reference");
    let pixels = reference.join("input_pixels_u8.npy");
    let labels = reference.join("labels_i64.npy");
    let data = load_npy(&pixels, &labels).unwrap();
    assert_eq!(data.features.dim(), (100, 784));
    assert_eq!(data.labels.len(), 100);

    let rows: Vec<usize> = (0..5000).step_by(50).collect();
    let expected = mnist().select(&rows).unwrap();
    assert_eq!(data.features, expected.features);
    assert_eq!(data.labels, expected.labels);

    let (shape, values) = read_npy_f32(&pixels).unwrap();
    assert_eq!(shape, [100, 784]);
    assert_eq!(values.len(), 100 * 784);
    let (shape, ints) = read_npy_i64(&labels).unwrap();
    assert_eq!(shape, [100]);
    assert_eq!(ints, data.labels);
}

#[test]
fn npy_input_f32_is_normalised_pixels() {
    let reference = data_dir().join("ccexam_mnist_cnn/reference");
    let (shape, input) = read_npy_f32(&reference.join("input_f32.npy")).unwrap();
    assert_eq!(shape, [100, 1, 28, 28]);
    assert_eq!(input.len(), 100 * 28 * 28);

    // The README's normalisation, as a suite would declare it, reproduces the model input.
    let norm: Normalize =
        toml::from_str("scale = 0.00392156862745098\nmean = 0.1307\nstd = 0.3081").unwrap();
    norm.validate().unwrap();
    let mut pixels = load_npy(
        &reference.join("input_pixels_u8.npy"),
        &reference.join("labels_i64.npy"),
    )
    .unwrap()
    .features;
    norm.apply(&mut pixels);
    let max_diff = pixels
        .iter()
        .zip(&input)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(max_diff < 1e-5, "max |diff| {max_diff}");

    let logits_path = reference.join("logits_ort_f32.npy");
    let (shape, logits) = read_npy_f32(&logits_path).unwrap();
    assert_eq!(shape, [100, 10]);
    assert!(logits.iter().all(|v| v.is_finite()));
    assert!(read_npy_i64(&logits_path).is_err()); // f32 is not an integer dtype
}

#[test]
fn normalize_defaults_and_unknown_fields() {
    let n: Normalize = toml::from_str("").unwrap();
    assert_eq!(n, Normalize::default());
    assert_eq!((n.scale, n.mean, n.std), (1.0, 0.0, 1.0));
    let n: Normalize = toml::from_str("mean = 0.5").unwrap();
    assert_eq!((n.scale, n.mean, n.std), (1.0, 0.5, 1.0));
    assert!(toml::from_str::<Normalize>("sd = 2.0").is_err());
    assert!(
        Normalize {
            std: 0.0,
            ..Normalize::default()
        }
        .validate()
        .is_err()
    );
}

// ---------------------------------------------------------------------------------------------
// IDX

/// Test-only IDX writer: magic 00 00 `dtype` `ndim`, big-endian u32 dims, then `data` (already
/// big-endian), optionally gzipped.
fn write_idx(path: &Path, dtype: u8, dims: &[u32], data: &[u8], gzip: bool) {
    let mut bytes = vec![0, 0, dtype, dims.len() as u8];
    for d in dims {
        bytes.extend_from_slice(&d.to_be_bytes());
    }
    bytes.extend_from_slice(data);
    if gzip {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(&bytes).unwrap();
        bytes = enc.finish().unwrap();
    }
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn idx_round_trip_of_real_mnist_rows() {
    let rows: Vec<usize> = (0..5000).step_by(10).collect();
    let expected = mnist().select(&rows).unwrap();
    let n = rows.len() as u32;
    let pixels_u8: Vec<u8> = expected.features.iter().map(|&v| v as u8).collect();
    let labels_u8: Vec<u8> = expected.labels.iter().map(|&l| l as u8).collect();
    let pixels_f32: Vec<u8> = expected
        .features
        .iter()
        .flat_map(|v| v.to_be_bytes())
        .collect();
    let labels_i32: Vec<u8> = expected
        .labels
        .iter()
        .flat_map(|&l| (l as i32).to_be_bytes())
        .collect();

    let dir = tempfile::tempdir().unwrap();
    let p = |name: &str| dir.path().join(name);
    write_idx(
        &p("images-idx3-ubyte"),
        0x08,
        &[n, 28, 28],
        &pixels_u8,
        false,
    );
    write_idx(&p("labels-idx1-ubyte"), 0x08, &[n], &labels_u8, false);
    write_idx(
        &p("images-idx3-ubyte.gz"),
        0x08,
        &[n, 28, 28],
        &pixels_u8,
        true,
    );
    write_idx(&p("labels-idx1-ubyte.gz"), 0x08, &[n], &labels_u8, true);
    // Gzipped but not named .gz: detected by the magic bytes.
    write_idx(&p("images-f32.idx"), 0x0D, &[n, 784], &pixels_f32, true);
    write_idx(&p("labels-i32.idx"), 0x0C, &[n], &labels_i32, false);

    for (images, labels) in [
        ("images-idx3-ubyte", "labels-idx1-ubyte"),
        ("images-idx3-ubyte.gz", "labels-idx1-ubyte.gz"),
        ("images-f32.idx", "labels-i32.idx"),
    ] {
        let got = load_idx(&p(images), &p(labels)).unwrap();
        assert_eq!(got.features, expected.features, "{images}");
        assert_eq!(got.labels, expected.labels, "{labels}");
        assert_eq!(got.source, p(images));
    }
}

#[test]
fn fashion_mnist_test_set_if_installed() {
    let dir = Path::new("/usr/share/datasets/fashion-mnist");
    if !dir.is_dir() {
        println!(
            "skipped: {} not found; install dataset-fashion-mnist (apt-get install dataset-fashion-mnist) to run this test",
            dir.display()
        );
        return;
    }
    let images = dir.join("t10k-images-idx3-ubyte.gz");
    let labels = dir.join("t10k-labels-idx1-ubyte.gz");

    // The header declares 10000 images of 28x28.
    let mut header = [0u8; 16];
    let mut dec = flate2::read::GzDecoder::new(std::fs::File::open(&images).unwrap());
    std::io::Read::read_exact(&mut dec, &mut header).unwrap();
    let dims: Vec<u32> = header[4..]
        .chunks_exact(4)
        .map(|c| u32::from_be_bytes(c.try_into().unwrap()))
        .collect();
    assert_eq!(header[..4], [0, 0, 0x08, 3]);
    assert_eq!(dims, [10000, 28, 28]);

    let data = load_idx(&images, &labels).unwrap();
    assert_eq!(data.features.dim(), (10000, 28 * 28));
    assert_eq!(
        class_counts(&data.labels),
        (0..10).map(|c| (c, 1000)).collect::<BTreeMap<_, _>>()
    );
    let (lo, hi) = min_max(&data);
    assert!(
        lo >= 0.0 && hi <= 255.0 && hi > 200.0,
        "pixel range {lo}..={hi}"
    );
}

// ---------------------------------------------------------------------------------------------
// Error paths (tiny hand-made bad files)

#[test]
fn csv_ragged_row_is_an_error_naming_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ragged.csv");
    std::fs::write(&path, "1,2,3,0\n4,5,6,1\n7,8,2\n").unwrap();
    let err = load_csv(&path, LabelColumn::Last).unwrap_err();
    assert!(
        matches!(
            err,
            DataError::CsvRagged {
                line: 3,
                found: 3,
                expected: 4,
                ..
            }
        ),
        "{err:?}"
    );
    assert_one_line_naming(&err, &path);
    assert!(err.to_string().contains("line 3"), "{err}");
}

#[test]
fn csv_non_numeric_cells_are_errors_naming_file_line_and_column() {
    let dir = tempfile::tempdir().unwrap();

    let gz = dir.path().join("bad_cell.csv.gz");
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(b"1,2,3,0\n4,five,6,1\n").unwrap();
    std::fs::write(&gz, enc.finish().unwrap()).unwrap();
    let err = load_csv(&gz, LabelColumn::Last).unwrap_err();
    assert_one_line_naming(&err, &gz);
    let msg = err.to_string();
    assert!(
        msg.contains("line 2, column 2") && msg.contains("\"five\""),
        "{msg}"
    );

    let label = dir.path().join("bad_label.csv");
    std::fs::write(&label, "1,2,3,0\n4,5,6,1.5\n7,8,9,x\n").unwrap();
    let err = load_csv(&label, LabelColumn::Last).unwrap_err();
    assert_one_line_naming(&err, &label);
    let msg = err.to_string();
    assert!(
        msg.contains("line 2, column 4") && msg.contains("label \"1.5\" is not an integer"),
        "{msg}"
    );

    let header = dir.path().join("header.csv");
    std::fs::write(&header, "a,b,label\n1,2,0\n").unwrap();
    let err = load_csv(&header, LabelColumn::Last).unwrap_err();
    assert_one_line_naming(&err, &header);
    assert!(err.to_string().contains("line 1, column 1"), "{err}");

    let empty = dir.path().join("empty.csv");
    std::fs::write(&empty, "").unwrap();
    let err = load_csv(&empty, LabelColumn::Last).unwrap_err();
    assert!(matches!(err, DataError::Empty { .. }), "{err:?}");

    let missing = dir.path().join("missing.csv");
    let err = load_csv(&missing, LabelColumn::Last).unwrap_err();
    assert_one_line_naming(&err, &missing);

    let out_of_range = dir.path().join("label_index.csv");
    std::fs::write(&out_of_range, "1,2,0\n").unwrap();
    let err = load_csv(&out_of_range, LabelColumn::Index(3)).unwrap_err();
    assert_one_line_naming(&err, &out_of_range);
}

#[test]
fn truncated_idx_is_an_error_with_byte_counts() {
    let dir = tempfile::tempdir().unwrap();
    let images = dir.path().join("short-images-idx3-ubyte");
    let labels = dir.path().join("labels-idx1-ubyte");
    // Declares 3 images of 2x2 (12 data bytes) but holds 10.
    write_idx(&images, 0x08, &[3, 2, 2], &[0; 10], false);
    write_idx(&labels, 0x08, &[3], &[1, 2, 3], false);
    let err = load_idx(&images, &labels).unwrap_err();
    assert!(
        matches!(
            err,
            DataError::SizeMismatch {
                expected: 28,
                actual: 26,
                ..
            }
        ),
        "{err:?}"
    );
    assert_one_line_naming(&err, &images);
    let msg = err.to_string();
    assert!(msg.contains("expected 28 bytes, found 26"), "{msg}");

    // The same, gzipped: the sizes are those of the decompressed stream.
    let gz = dir.path().join("short-images-idx3-ubyte.gz");
    write_idx(&gz, 0x08, &[3, 2, 2], &[0; 10], true);
    let err = load_idx(&gz, &labels).unwrap_err();
    assert_one_line_naming(&err, &gz);

    // Truncated header, and a count mismatch between images and labels.
    let stub = dir.path().join("stub-idx");
    std::fs::write(&stub, [0u8, 0, 8, 3, 0, 0]).unwrap();
    let err = load_idx(&stub, &labels).unwrap_err();
    assert_one_line_naming(&err, &stub);
    let four = dir.path().join("four-labels-idx1-ubyte");
    write_idx(&four, 0x08, &[4], &[1, 2, 3, 4], false);
    let ok_images = dir.path().join("ok-images-idx3-ubyte");
    write_idx(&ok_images, 0x08, &[3, 2, 2], &[0; 12], false);
    let err = load_idx(&ok_images, &four).unwrap_err();
    assert!(matches!(err, DataError::CountMismatch { .. }), "{err:?}");
    assert_one_line_naming(&err, &four);
}

/// Test-only `.npy` (format 1.0) writer for C-order arrays.
fn write_npy(path: &Path, descr: &str, shape: &[usize], data: &[u8]) {
    let shape_txt = match shape {
        [n] => format!("({n},)"),
        _ => format!(
            "({})",
            shape
                .iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let mut dict =
        format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape_txt}, }}");
    while (10 + dict.len() + 1) % 64 != 0 {
        dict.push(' ');
    }
    dict.push('\n');
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend_from_slice(&(dict.len() as u16).to_le_bytes());
    bytes.extend_from_slice(dict.as_bytes());
    bytes.extend_from_slice(data);
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn npy_count_mismatch_names_both_files_and_counts() {
    let dir = tempfile::tempdir().unwrap();
    let features = dir.path().join("features3.npy");
    let labels = dir.path().join("labels2.npy");
    write_npy(&features, "<f4", &[3, 2], &[0u8; 24]);
    let label_bytes: Vec<u8> = [4i64, 7].iter().flat_map(|v| v.to_le_bytes()).collect();
    write_npy(&labels, "<i8", &[2], &label_bytes);
    let err = load_npy(&features, &labels).unwrap_err();
    assert!(
        matches!(
            err,
            DataError::CountMismatch {
                features_count: 3,
                labels_count: 2,
                ..
            }
        ),
        "{err:?}"
    );
    assert_one_line_naming(&err, &features);
    assert_one_line_naming(&err, &labels);
    let msg = err.to_string();
    assert!(
        msg.contains("3 samples") && msg.contains("2 labels"),
        "{msg}"
    );

    // The hand-written files are otherwise valid.
    let (shape, values) = read_npy_i64(&labels).unwrap();
    assert_eq!((shape, values), (vec![2], vec![4, 7]));

    // Truncated data, unsupported dtype, and 2-D labels.
    let short = dir.path().join("short.npy");
    write_npy(&short, "<f4", &[3, 2], &[0u8; 20]);
    let err = read_npy_f32(&short).unwrap_err();
    assert!(
        matches!(
            err,
            DataError::SizeMismatch {
                expected: 24,
                actual: 20,
                ..
            }
        ),
        "{err:?}"
    );
    assert_one_line_naming(&err, &short);
    let f64s = dir.path().join("f64.npy");
    write_npy(&f64s, "<f8", &[2], &[0u8; 16]);
    let err = read_npy_f32(&f64s).unwrap_err();
    assert_one_line_naming(&err, &f64s);
    let labels2d = dir.path().join("labels2d.npy");
    write_npy(&labels2d, "|u1", &[3, 1], &[1, 2, 3]);
    let err = load_npy(&features, &labels2d).unwrap_err();
    assert_one_line_naming(&err, &labels2d);
}

// ---------------------------------------------------------------------------------------------
// Stratified split

#[test]
fn stratified_split_of_mnist_5k() {
    let labels = &mnist().labels;
    let (cal, eval) = (256, 4000);
    let split = stratified_split(labels, cal, eval, 42).unwrap();
    assert_eq!(split.calibration.len(), cal);
    assert_eq!(split.evaluation.len(), eval);
    assert!(split.calibration.windows(2).all(|w| w[0] < w[1]));
    assert!(split.evaluation.windows(2).all(|w| w[0] < w[1]));
    assert!(split.evaluation.iter().all(|&i| i < labels.len()));
    let cal_set: std::collections::HashSet<usize> = split.calibration.iter().copied().collect();
    assert!(
        split.evaluation.iter().all(|i| !cal_set.contains(i)),
        "overlap"
    );

    let n = labels.len() as f64;
    let totals = class_counts(labels);
    let pick = |idx: &[usize]| class_counts(&idx.iter().map(|&i| labels[i]).collect::<Vec<_>>());
    for (side, want, counts) in [
        ("calibration", cal, pick(&split.calibration)),
        ("evaluation", eval, pick(&split.evaluation)),
    ] {
        for (label, &size) in &totals {
            let exact = want as f64 * size as f64 / n;
            let got = counts.get(label).copied().unwrap_or(0) as f64;
            assert!(
                (got - exact).abs() <= 1.0,
                "{side} class {label}: {got} vs {exact}"
            );
        }
    }

    let again = stratified_split(labels, cal, eval, 42).unwrap();
    assert_eq!(split, again);
    let other = stratified_split(labels, cal, eval, 43).unwrap();
    assert_ne!(split.calibration, other.calibration);
    assert_ne!(split.evaluation, other.evaluation);

    // Every sample used.
    let all = stratified_split(labels, 200, 4800, 7).unwrap();
    assert_eq!(all.calibration.len() + all.evaluation.len(), 5000);
}

#[test]
fn stratified_split_errors() {
    let labels = &mnist().labels;
    let err = stratified_split(labels, 0, 100, 1).unwrap_err();
    assert!(
        matches!(
            err,
            DataError::ZeroSplit {
                which: "calibration"
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("calibration"));
    let err = stratified_split(labels, 100, 0, 1).unwrap_err();
    assert!(
        matches!(
            err,
            DataError::ZeroSplit {
                which: "evaluation"
            }
        ),
        "{err:?}"
    );

    let err = stratified_split(labels, 1000, 4001, 1).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("1000") && msg.contains("4001") && msg.contains("5000"),
        "{msg}"
    );
    assert!(stratified_split(labels, usize::MAX, 1, 1).is_err());

    // Class 0 has a single sample, but largest-remainder rounding (0.5 each side, ties to the
    // smaller label) asks it for 1 calibration + 1 evaluation.
    let skewed = [0i64, 1, 1, 1];
    let err = stratified_split(&skewed, 2, 2, 1).unwrap_err();
    assert!(
        matches!(
            err,
            DataError::ClassTooSmall {
                label: 0,
                available: 1,
                ..
            }
        ),
        "{err:?}"
    );
}
