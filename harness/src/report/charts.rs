//! The report's charts, each drawn twice by plotters from one drawing function: as SVG (text stays `<text>`
//! elements, which the browser renders) and as PNG (for slides and issue comments). PNG text is rasterised
//! by `ab_glyph` from DejaVu Sans, embedded in the binary (`assets/fonts/`), so no system font or
//! fontconfig is needed; the same font measures the labels of both formats, so they lay out alike.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use plotters::coord::Shift;
use plotters::prelude::*;

use super::{BenchRow, Quality, ReportError};
use crate::results::Row;

/// DejaVu Sans (Bitstream Vera licence, `assets/fonts/LICENSE-DejaVu.txt`).
const FONT: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans.ttf");

/// One chart in both formats.
pub struct Chart {
    pub svg: String,
    pub png: Vec<u8>,
}

/// Registers the embedded font as plotters' `sans-serif` (once per process): with the `ab_glyph` feature
/// plotters has no other font, for measuring SVG labels or drawing PNG ones.
fn font() -> Result<(), ReportError> {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    let ok = *REGISTERED.get_or_init(|| {
        plotters::style::register_font("sans-serif", FontStyle::Normal, FONT).is_ok()
    });
    if ok {
        Ok(())
    } else {
        Err(err(
            "font",
            "the embedded DejaVuSans.ttf does not parse as a TrueType font",
        ))
    }
}

/// Draws a chart with `svg` on an SVG string and with `png` on an RGB buffer encoded as PNG: the two
/// closures are the same generic drawing function, instantiated once per back end (see [`chart!`]).
fn render(
    name: &str,
    size: (u32, u32),
    svg: impl FnOnce(&DrawingArea<SVGBackend<'_>, Shift>) -> Result<(), ReportError>,
    png: impl FnOnce(&DrawingArea<BitMapBackend<'_>, Shift>) -> Result<(), ReportError>,
) -> Result<Chart, ReportError> {
    font()?;
    let mut text = String::new();
    {
        let root = SVGBackend::with_string(&mut text, size).into_drawing_area();
        root.fill(&WHITE).map_err(|e| err(name, e))?;
        svg(&root)?;
        root.present().map_err(|e| err(name, e))?;
    }
    let mut rgb = vec![0u8; size.0 as usize * size.1 as usize * 3];
    {
        let root = BitMapBackend::with_buffer(&mut rgb, size).into_drawing_area();
        root.fill(&WHITE).map_err(|e| err(name, e))?;
        png(&root)?;
        root.present().map_err(|e| err(name, e))?;
    }
    Ok(Chart {
        svg: text,
        png: encode_png(name, &rgb, size)?,
    })
}

/// `chart!(name, size, draw(args...))`: [`render`] with `draw(root, args...)` on both back ends.
macro_rules! chart {
    ($name:expr, $size:expr, $draw:ident($($arg:expr),* $(,)?)) => {
        render(
            $name,
            $size,
            |root| $draw(root, $($arg),*),
            |root| $draw(root, $($arg),*),
        )
    };
}

/// 8-bit RGB pixels as a PNG file.
fn encode_png(name: &str, rgb: &[u8], (w, h): (u32, u32)) -> Result<Vec<u8>, ReportError> {
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, w, h);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    // Charts are mostly flat colour: the best deflate with per-row filters makes them several times smaller.
    encoder.set_compression(png::Compression::Best);
    encoder.set_adaptive_filter(png::AdaptiveFilterType::Adaptive);
    encoder
        .write_header()
        .and_then(|mut w| w.write_image_data(rgb))
        .map_err(|e| err(name, format!("PNG encoding: {e}")))?;
    Ok(out)
}

const SIZE: (u32, u32) = (900, 520);
const PALETTE: [RGBColor; 8] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
];

fn err(chart: &str, e: impl std::fmt::Display) -> ReportError {
    ReportError::Chart {
        chart: chart.into(),
        reason: e.to_string(),
    }
}

/// `[lo, hi]` widened by 5 % on each side (and made non-empty).
fn padded(lo: f64, hi: f64) -> std::ops::Range<f64> {
    let (lo, hi) = if hi > lo {
        (lo, hi)
    } else {
        (lo - 1.0, hi + 1.0)
    };
    let pad = (hi - lo) * 0.05;
    (lo - pad)..(hi + pad)
}

fn extent(values: impl Iterator<Item = f64>) -> (f64, f64) {
    values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
        (lo.min(v), hi.max(v))
    })
}

fn us(r: &Row) -> f64 {
    r.latency_median_ns as f64 / 1e3
}

/// Colour of a row by activation mode, so that families read apart.
fn colour(r: &Row) -> RGBColor {
    let i = match r.act_mode.as_str() {
        "fp32" => 7,
        "static" => 0,
        "dynamic" => 1,
        "weightonly" => 2,
        "fp16" => 4,
        "bf16" => 5,
        _ => 6,
    };
    PALETTE[i]
}

/// The rows no other row beats on both latency (lower) and quality (`top1`, higher): the front this chart can show
/// (the search's front also weighs size).
fn front_2d<'a>(rows: &[&'a Row]) -> Vec<&'a Row> {
    let beats = |o: &Row, r: &Row| {
        o.latency_median_ns <= r.latency_median_ns
            && o.top1 >= r.top1
            && (o.latency_median_ns < r.latency_median_ns || o.top1 > r.top1)
    };
    rows.iter()
        .filter(|r| !rows.iter().any(|o| beats(o, r)))
        .copied()
        .collect()
}

/// Quality (top-1, or mean cosine to FP32) against median latency; marker radius grows with the size ratio;
/// the accuracy-latency front as a line; the chosen strategy circled.
pub fn accuracy_latency(
    rows: &[&Row],
    chosen: Option<&str>,
    q: Quality,
) -> Result<Chart, ReportError> {
    chart!(
        "accuracy vs latency",
        SIZE,
        draw_accuracy_latency(rows, chosen, q)
    )
}

fn draw_accuracy_latency<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    rows: &[&Row],
    chosen: Option<&str>,
    q: Quality,
) -> Result<(), ReportError> {
    let front = front_2d(rows);
    let name = "accuracy vs latency";
    let (x0, x1) = extent(rows.iter().map(|r| us(r)));
    let (y0, y1) = extent(rows.iter().map(|r| q.value(r)));
    let mut chart = ChartBuilder::on(root)
        .caption(
            format!("{} vs median latency (marker area: size)", q.name()),
            ("sans-serif", 20),
        )
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(padded(x0, x1), padded(y0, y1))
        .map_err(|e| err(name, e))?;
    chart
        .configure_mesh()
        .x_desc("median latency (µs)")
        .y_desc(q.axis())
        .draw()
        .map_err(|e| err(name, e))?;
    chart
        .draw_series(rows.iter().map(|r| {
            let radius = 3.0 + 12.0 * r.size_ratio.clamp(0.0, 1.0).sqrt();
            Circle::new(
                (us(r), q.value(r)),
                radius as i32,
                colour(r).mix(0.6).filled(),
            )
        }))
        .map_err(|e| err(name, e))?;
    let mut line: Vec<(f64, f64)> = front.iter().map(|r| (us(r), q.value(r))).collect();
    line.sort_by(|a, b| a.0.total_cmp(&b.0));
    chart
        .draw_series(LineSeries::new(line, BLACK.stroke_width(1)))
        .map_err(|e| err(name, e))?
        .label("front: nothing faster is more accurate")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLACK));
    // One legend entry per activation mode present (the markers' colours).
    let modes: std::collections::BTreeSet<&str> =
        rows.iter().map(|r| r.act_mode.as_str()).collect();
    for mode in modes {
        let c = rows
            .iter()
            .find(|r| r.act_mode == mode)
            .map(|r| colour(r))
            .unwrap_or(BLACK);
        chart
            .draw_series(std::iter::empty::<Circle<(f64, f64), i32>>())
            .map_err(|e| err(name, e))?
            .label(mode.to_string())
            .legend(move |(x, y)| Circle::new((x + 10, y), 5, c.filled()));
    }
    if let Some(c) = chosen {
        chart
            .draw_series(
                rows.iter()
                    .filter(|r| r.strategy == c)
                    .map(|r| Circle::new((us(r), q.value(r)), 18, RED.stroke_width(2))),
            )
            .map_err(|e| err(name, e))?
            .label(format!("chosen: {c}"))
            .legend(|(x, y)| Circle::new((x + 10, y), 6, RED.stroke_width(2)));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(|e| err(name, e))?;
    Ok(())
}

/// Quality (top-1, or mean cosine to FP32) against the size ratio.
pub fn size_accuracy(
    rows: &[&Row],
    chosen: Option<&str>,
    q: Quality,
) -> Result<Chart, ReportError> {
    chart!(
        "size vs accuracy",
        SIZE,
        draw_size_accuracy(rows, chosen, q)
    )
}

fn draw_size_accuracy<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    rows: &[&Row],
    chosen: Option<&str>,
    q: Quality,
) -> Result<(), ReportError> {
    let name = "size vs accuracy";
    let (y0, y1) = extent(rows.iter().map(|r| q.value(r)));
    let mut chart = ChartBuilder::on(root)
        .caption(
            format!("{} vs serialized size", q.name()),
            ("sans-serif", 20),
        )
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0f64..105f64, padded(y0, y1))
        .map_err(|e| err(name, e))?;
    chart
        .configure_mesh()
        .x_desc("size (% of FP32)")
        .y_desc(q.axis())
        .draw()
        .map_err(|e| err(name, e))?;
    chart
        .draw_series(rows.iter().map(|r| {
            let style = if Some(r.strategy.as_str()) == chosen {
                RED.filled()
            } else {
                colour(r).mix(0.7).filled()
            };
            Circle::new((r.size_ratio * 100.0, q.value(r)), 5, style)
        }))
        .map_err(|e| err(name, e))?;
    Ok(())
}

/// Median latency (top panel) and quality (bottom panel: top-1, or mean cosine to FP32) of FP32 and the
/// chosen strategy, one point per run.
pub fn history(rows: &[&Row], chosen: Option<&str>, q: Quality) -> Result<Chart, ReportError> {
    chart!("history", (SIZE.0, 720), draw_history(rows, chosen, q))
}

/// A run id `20261126-043918-354` as `11-26 04:39` (another id as it is).
fn run_label(id: &str) -> String {
    let b = id.as_bytes();
    if b.len() >= 15 && b[8] == b'-' && b.iter().take(8).all(u8::is_ascii_digit) {
        format!("{}-{} {}:{}", &id[4..6], &id[6..8], &id[9..11], &id[11..13])
    } else {
        id.to_string()
    }
}

fn draw_history<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    rows: &[&Row],
    chosen: Option<&str>,
    q: Quality,
) -> Result<(), ReportError> {
    let runs: Vec<&str> = rows
        .iter()
        .map(|r| r.run_id.as_str())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    let series: Vec<&str> = std::iter::once("fp32").chain(chosen).collect();
    let (top, bottom) = root.split_vertically(root.dim_in_pixel().1 / 2);
    history_panel(
        &top,
        &runs,
        rows,
        &series,
        ("median latency over runs", "median latency (µs)"),
        &us,
    )?;
    history_panel(
        &bottom,
        &runs,
        rows,
        &series,
        (&format!("{} over runs", q.name()), q.axis()),
        &|r| q.value(r),
    )
}

/// One panel of the history chart: `value` of each series' row in each run, runs oldest first.
fn history_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    runs: &[&str],
    rows: &[&Row],
    series: &[&str],
    (caption, y_desc): (&str, &str),
    value: &dyn Fn(&Row) -> f64,
) -> Result<(), ReportError> {
    let name = "history";
    let (y0, y1) = extent(
        rows.iter()
            .filter(|r| series.contains(&r.strategy.as_str()))
            .map(|r| value(r)),
    );
    let mut chart = ChartBuilder::on(area)
        .caption(caption, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        // Integer ranges are inclusive as discrete axes: `0..n-1` is n segments.
        .build_cartesian_2d(
            (0..runs.len().saturating_sub(1)).into_segmented(),
            padded(y0, y1),
        )
        .map_err(|e| err(name, e))?;
    chart
        .configure_mesh()
        .x_desc("run (oldest first)")
        .y_desc(y_desc)
        .x_labels(runs.len().min(8))
        .x_label_formatter(&|x| match x {
            SegmentValue::CenterOf(i) | SegmentValue::Exact(i) => {
                runs.get(*i).map(|id| run_label(id)).unwrap_or_default()
            }
            SegmentValue::Last => String::new(),
        })
        .draw()
        .map_err(|e| err(name, e))?;
    for (i, s) in series.iter().enumerate() {
        let points: Vec<(SegmentValue<usize>, f64)> = runs
            .iter()
            .enumerate()
            .filter_map(|(x, run)| {
                rows.iter()
                    .find(|r| r.run_id == *run && r.strategy == *s)
                    .map(|r| (SegmentValue::CenterOf(x), value(r)))
            })
            .collect();
        let c = PALETTE[i % PALETTE.len()];
        chart
            .draw_series(LineSeries::new(points.clone(), c.stroke_width(2)))
            .map_err(|e| err(name, e))?
            .label(s.to_string())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c));
        chart
            .draw_series(points.into_iter().map(|p| Circle::new(p, 4, c.filled())))
            .map_err(|e| err(name, e))?;
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(|e| err(name, e))?;
    Ok(())
}

/// Median latency of every strategy on every target, grouped bars.
pub fn backends(latest: &BTreeMap<&str, Vec<&Row>>) -> Result<Chart, ReportError> {
    let strategies = latest
        .values()
        .flatten()
        .map(|r| r.strategy.as_str())
        .collect::<std::collections::BTreeSet<_>>()
        .len();
    // One heading row per strategy and one bar per target under it.
    let height = (SIZE.1).max(80 + 18 * strategies as u32 * (latest.len() as u32 + 1));
    chart!("back ends", (SIZE.0, height), draw_backends(latest))
}

fn draw_backends<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    latest: &BTreeMap<&str, Vec<&Row>>,
) -> Result<(), ReportError> {
    let name = "back ends";
    let strategies: Vec<&str> = latest
        .values()
        .flatten()
        .map(|r| r.strategy.as_str())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    let targets: Vec<&str> = latest.keys().copied().collect();
    // A log axis: targets of batch 1 and batch 64 differ by two orders of magnitude, and each bar should
    // still read against its neighbour on another ISA. Bars start at the axis' left end.
    let (lo, hi) = extent(latest.values().flatten().map(|r| us(r).max(1e-3)));
    let (lo, hi) = if hi > lo { (lo, hi) } else { (lo, lo * 2.0) };
    let left = lo / 2.0;
    // Room right of the longest bar for its label.
    let right = hi * 12.0;
    let per = targets.len() + 1;
    let n = strategies.len() * per;
    let mut chart = ChartBuilder::on(root)
        .caption("median latency per target", ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(20)
        .build_cartesian_2d((left..right).log_scale(), 0f64..n as f64)
        .map_err(|e| err(name, e))?;
    chart
        .configure_mesh()
        .x_desc("median latency (µs, log scale)")
        .y_labels(0)
        .disable_y_mesh()
        .draw()
        .map_err(|e| err(name, e))?;
    // Strategy by strategy from the top: its name, then one bar per target.
    let mut bars = Vec::new();
    let mut texts = Vec::new();
    for (si, s) in strategies.iter().enumerate() {
        let top = (n - si * per) as f64;
        texts.push(Text::new(
            s.to_string(),
            (left, top - 0.25),
            ("sans-serif", 13).into_font().style(FontStyle::Bold),
        ));
        for (ti, t) in targets.iter().enumerate() {
            if let Some(r) = latest[t].iter().find(|r| r.strategy == *s) {
                let y = top - 2.0 - ti as f64;
                bars.push(Rectangle::new(
                    [(left, y + 0.1), (us(r), y + 0.9)],
                    PALETTE[ti % PALETTE.len()].filled(),
                ));
                texts.push(Text::new(
                    format!("{t}  {:.1} µs ({})", us(r), r.isa),
                    (us(r) * 1.05, y + 0.5),
                    ("sans-serif", 12).into_font(),
                ));
            }
        }
    }
    chart.draw_series(bars).map_err(|e| err(name, e))?;
    chart.draw_series(texts).map_err(|e| err(name, e))?;
    Ok(())
}

/// GOPS per (kernel, shape) as bars, with each kernel's peak as a tick.
pub fn kernels(bench: &[BenchRow]) -> Result<Chart, ReportError> {
    let height = (SIZE.1).max(60 + 20 * bench.len() as u32);
    chart!("kernels", (SIZE.0, height), draw_kernels(bench))
}

fn draw_kernels<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    bench: &[BenchRow],
) -> Result<(), ReportError> {
    let name = "kernels";
    let max = bench
        .iter()
        .map(|b| b.gops.max(b.peak_gops))
        .fold(0.0, f64::max);
    let mut chart = ChartBuilder::on(root)
        .caption(
            "GEMM throughput (bars) and peak (black ticks)",
            ("sans-serif", 20),
        )
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(20)
        .build_cartesian_2d(0f64..max * 2.0 + 1e-9, 0f64..bench.len() as f64)
        .map_err(|e| err(name, e))?;
    let labels: Vec<String> = bench
        .iter()
        .map(|b| format!("{} {}x{}x{} t{}", b.kernel, b.m, b.k, b.n, b.threads))
        .collect();
    chart
        .configure_mesh()
        .x_desc("GOPS")
        .y_labels(0)
        .disable_y_mesh()
        .draw()
        .map_err(|e| err(name, e))?;
    chart
        .draw_series(bench.iter().enumerate().map(|(i, b)| {
            Rectangle::new(
                [(0.0, i as f64 + 0.15), (b.gops, i as f64 + 0.85)],
                PALETTE[i % PALETTE.len()].filled(),
            )
        }))
        .map_err(|e| err(name, e))?;
    chart
        .draw_series(bench.iter().enumerate().map(|(i, b)| {
            PathElement::new(
                vec![(b.peak_gops, i as f64), (b.peak_gops, i as f64 + 1.0)],
                BLACK.stroke_width(2),
            )
        }))
        .map_err(|e| err(name, e))?;
    chart
        .draw_series(bench.iter().enumerate().map(|(i, b)| {
            Text::new(
                format!(
                    "{}  {:.0} GOPS ({:.0} % of peak)",
                    labels[i],
                    b.gops,
                    b.peak_fraction * 100.0
                ),
                (b.gops.max(b.peak_gops) + max * 0.01, i as f64 + 0.5),
                ("sans-serif", 12),
            )
        }))
        .map_err(|e| err(name, e))?;
    Ok(())
}

/// Quality drop per layer when that layer alone is quantized (top-1 points, or the drop in mean cosine to
/// FP32, as `q` plots it): the search's sensitivity probes.
pub fn sensitivity(probes: &[(String, f64)], q: Quality) -> Result<Chart, ReportError> {
    chart!("sensitivity", SIZE, draw_sensitivity(probes, q))
}

fn draw_sensitivity<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    probes: &[(String, f64)],
    q: Quality,
) -> Result<(), ReportError> {
    let name = "sensitivity";
    // The smallest axis: a tenth of a top-1 point, or 0.001 of cosine.
    let floor = match q {
        Quality::Top1 => 0.1,
        Quality::Cosine => 0.001,
    };
    let max = probes.iter().map(|p| p.1).fold(0.0, f64::max).max(floor);
    let min = probes.iter().map(|p| p.1).fold(0.0, f64::min);
    let mut chart = ChartBuilder::on(root)
        .caption(
            "per-layer sensitivity (each layer alone quantized)",
            ("sans-serif", 20),
        )
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(20)
        .build_cartesian_2d(min.min(0.0)..max * 1.35, 0f64..probes.len() as f64)
        .map_err(|e| err(name, e))?;
    chart
        .configure_mesh()
        .x_desc(q.drop_axis())
        .y_labels(0)
        .disable_y_mesh()
        .draw()
        .map_err(|e| err(name, e))?;
    // The first layer at the top.
    let y = |i: usize| (probes.len() - 1 - i) as f64;
    chart
        .draw_series(probes.iter().enumerate().map(|(i, p)| {
            Rectangle::new(
                [(0.0, y(i) + 0.15), (p.1, y(i) + 0.85)],
                PALETTE[3].filled(),
            )
        }))
        .map_err(|e| err(name, e))?;
    // Each bar labelled with its layer and drop, just right of the bar.
    chart
        .draw_series(probes.iter().enumerate().map(|(i, p)| {
            Text::new(
                format!("{}  {}", p.0, q.format(p.1)),
                (p.1.max(0.0) + max * 0.01, y(i) + 0.5),
                ("sans-serif", 14),
            )
        }))
        .map_err(|e| err(name, e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Dark pixels (any channel below 160) in rows `rows` of an RGB PNG.
    fn dark_rows(png_bytes: &[u8], rows: std::ops::Range<usize>) -> (usize, usize) {
        let mut reader = png::Decoder::new(std::io::Cursor::new(png_bytes))
            .read_info()
            .unwrap();
        let mut buf = vec![0; reader.output_buffer_size()];
        let info = reader.next_frame(&mut buf).unwrap();
        assert_eq!(info.color_type, png::ColorType::Rgb);
        let w = info.width as usize;
        let dark = buf[rows.start * w * 3..rows.end * w * 3]
            .chunks(3)
            .filter(|p| p.iter().any(|v| *v < 160))
            .count();
        (dark, info.height as usize)
    }

    #[test]
    fn png_text_is_drawn_by_the_embedded_font() {
        let probes = vec![("Conv_1".to_string(), 0.5), ("Gemm_10".to_string(), 3.0)];
        let chart = sensitivity(&probes, Quality::Top1).unwrap();
        assert!(chart.png.starts_with(b"\x89PNG\r\n\x1a\n"));
        // The caption is the only thing drawn in the top 40 rows: no font, no dark pixels there.
        let (title, height) = dark_rows(&chart.png, 0..40);
        assert_eq!(height, SIZE.1 as usize);
        assert!(title > 200, "{title} dark pixels in the title band");
        // The SVG keeps its text as text, for the browser to render.
        assert!(chart.svg.matches("<text").count() >= 3);
        assert!(
            chart
                .svg
                .contains("per-layer sensitivity (each layer alone quantized)")
        );
        assert!(chart.svg.contains("Gemm_10  3.00"));
    }

    #[test]
    fn run_ids_are_labelled_by_date_and_time() {
        assert_eq!(run_label("20261126-043918-354"), "11-26 04:39");
        assert_eq!(run_label("merged"), "merged");
    }
}
