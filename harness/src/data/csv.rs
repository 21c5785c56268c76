//! CSV loading: headerless numeric CSV (gzip detected by magic bytes) with one integer label
//! column, into [`RawData`].

use std::path::Path;

use ndarray::Array2;

use super::{DataError, LabelColumn, RawData, open_maybe_gzip};

/// Loads a headerless numeric CSV, gzip-compressed or plain (decided by the file's magic bytes,
/// not its name). Every row must have the same number of columns; `label` picks the label
/// column, which must hold integers; every other cell is a feature and must be a finite number.
/// A header line is not supported: it is reported as a non-numeric cell on line 1.
pub fn load_csv(path: &Path, label: LabelColumn) -> Result<RawData, DataError> {
    let input = open_maybe_gzip(path)?;
    let mut reader = ::csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .trim(::csv::Trim::All)
        .from_reader(input);

    let mut record = ::csv::ByteRecord::new();
    let mut layout: Option<Layout> = None;
    let mut features: Vec<f32> = Vec::new();
    let mut labels: Vec<i64> = Vec::new();

    loop {
        match reader.read_byte_record(&mut record) {
            Ok(true) => {}
            Ok(false) => break,
            Err(e) => return Err(csv_error(path, e)),
        }
        let line = record.position().map_or(0, |p| p.line());
        let layout = match layout {
            Some(l) => l,
            None => {
                let l = Layout::new(path, line, record.len(), label)?;
                layout = Some(l);
                features.reserve(l.features * 1024);
                l
            }
        };
        if record.len() != layout.columns {
            return Err(DataError::CsvRagged {
                path: path.to_path_buf(),
                line,
                found: record.len(),
                expected: layout.columns,
                first_line: layout.first_line,
            });
        }
        for (col, cell) in record.iter().enumerate() {
            if col == layout.label {
                labels.push(parse_label(path, line, col, cell)?);
            } else {
                features.push(parse_feature(path, line, col, cell)?);
            }
        }
    }

    let Some(layout) = layout else {
        return Err(DataError::Empty {
            path: path.to_path_buf(),
        });
    };
    let n = labels.len();
    let features = Array2::from_shape_vec((n, layout.features), features).map_err(|e| {
        DataError::CsvFormat {
            path: path.to_path_buf(),
            line: layout.first_line,
            message: format!("cannot shape features as [{n}, {}]: {e}", layout.features),
        }
    })?;
    Ok(RawData {
        features,
        labels,
        source: path.to_path_buf(),
    })
}

/// Column layout fixed by the first row.
#[derive(Clone, Copy)]
struct Layout {
    columns: usize,
    /// Zero-based label column.
    label: usize,
    features: usize,
    first_line: u64,
}

impl Layout {
    fn new(path: &Path, line: u64, columns: usize, label: LabelColumn) -> Result<Self, DataError> {
        if columns < 2 {
            return Err(DataError::CsvFormat {
                path: path.to_path_buf(),
                line,
                message: format!(
                    "row has {columns} column(s); need a label column and at least one feature"
                ),
            });
        }
        let label = match label {
            LabelColumn::First => 0,
            LabelColumn::Last => columns - 1,
            LabelColumn::Index(i) if i < columns => i,
            LabelColumn::Index(i) => {
                return Err(DataError::CsvFormat {
                    path: path.to_path_buf(),
                    line,
                    message: format!(
                        "label column index {i} (0-based) is out of range for rows of {columns} columns"
                    ),
                });
            }
        };
        Ok(Layout {
            columns,
            label,
            features: columns - 1,
            first_line: line,
        })
    }
}

/// A hint appended to "not a number" errors on the first line, where a header is the likely cause.
fn header_hint(line: u64) -> &'static str {
    if line == 1 {
        " (CSV files must have no header line)"
    } else {
        ""
    }
}

fn cell_error(path: &Path, line: u64, col: usize, message: String) -> DataError {
    DataError::CsvCell {
        path: path.to_path_buf(),
        line,
        column: col + 1,
        message,
    }
}

fn parse_feature(path: &Path, line: u64, col: usize, cell: &[u8]) -> Result<f32, DataError> {
    let text = String::from_utf8_lossy(cell);
    match text.parse::<f32>() {
        Ok(v) if v.is_finite() => Ok(v),
        Ok(_) => Err(cell_error(
            path,
            line,
            col,
            format!("value {text:?} is not a finite number"),
        )),
        Err(_) => Err(cell_error(
            path,
            line,
            col,
            format!("value {text:?} is not a number{}", header_hint(line)),
        )),
    }
}

/// Labels are integers; an integral decimal such as `3.0` is accepted as 3.
fn parse_label(path: &Path, line: u64, col: usize, cell: &[u8]) -> Result<i64, DataError> {
    let text = String::from_utf8_lossy(cell);
    if let Ok(v) = text.parse::<i64>() {
        return Ok(v);
    }
    const LIMIT: f64 = 9_007_199_254_740_992.0; // 2^53: every integer up to here is exact in f64
    match text.parse::<f64>() {
        Ok(v) if v.is_finite() && v.fract() == 0.0 && v.abs() <= LIMIT => Ok(v as i64),
        Ok(_) => Err(cell_error(
            path,
            line,
            col,
            format!("label {text:?} is not an integer"),
        )),
        Err(_) => Err(cell_error(
            path,
            line,
            col,
            format!("label {text:?} is not an integer{}", header_hint(line)),
        )),
    }
}

fn csv_error(path: &Path, e: ::csv::Error) -> DataError {
    let line = e.position().map_or(0, |p| p.line());
    let message = e.to_string();
    match e.into_kind() {
        ::csv::ErrorKind::Io(source) => DataError::io(path, source),
        _ => DataError::CsvFormat {
            path: path.to_path_buf(),
            line,
            message,
        },
    }
}
