//! The sweep's charts, as SVG (plotters' SVG backend: no font or image
//! libraries; the text is left to whatever shows the SVG).
//!
//! Every chart is drawn from the per-cell statistics of [`record::cells`](super::record::cells):
//! medians of the runs that found a nonce, with min–max whiskers where a cell
//! has more than one such run.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use plotters::coord::Shift;
use plotters::element::ErrorBarOrientV;
use plotters::prelude::*;

use super::record::{Cell, RunRecord};

/// Pixel size of each chart.
const SIZE: (u32, u32) = (900, 600);

/// Ten colours that tell series apart (Tableau 10).
const PALETTE: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

fn color(i: usize) -> RGBColor {
    PALETTE[i % PALETTE.len()]
}

/// The chart files, in the order the report shows them.
pub const TIME_VS_PODS: &str = "time_vs_pods.svg";
/// See [`TIME_VS_PODS`].
pub const SPEEDUP: &str = "speedup.svg";
/// See [`TIME_VS_PODS`].
pub const EFFICIENCY: &str = "efficiency.svg";
/// See [`TIME_VS_PODS`].
pub const TIME_VS_DIFFICULTY: &str = "time_vs_difficulty.svg";
/// See [`TIME_VS_PODS`]; only drawn where pending time was seen.
pub const PENDING: &str = "pending.svg";

/// The median pending time (seconds) of some cell that makes the pending chart
/// worth drawing. Local workers are "pending" for the milliseconds it takes to
/// spawn them; pods waiting for a node, for seconds to minutes.
pub const PENDING_SHOWN: f64 = 0.5;

/// Why a chart could not be drawn or written.
#[derive(Debug, thiserror::Error)]
pub enum ChartError {
    /// plotters failed.
    #[error("drawing {chart}: {detail}")]
    Draw {
        /// The chart's file name.
        chart: &'static str,
        /// plotters' error.
        detail: String,
    },
    /// The file could not be written.
    #[error("writing {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

type DrawResult = Result<(), Box<dyn std::error::Error>>;
type Cells = BTreeMap<(u32, u64), Cell>;

/// One drawn chart: its file name, what it shows, and the SVG.
#[derive(Debug, Clone)]
pub struct Chart {
    /// The file name (e.g. `time_vs_pods.svg`).
    pub file: &'static str,
    /// A one-line description, for the report.
    pub title: &'static str,
    /// The SVG document.
    pub svg: String,
}

/// Every chart the records have data for (none when no run found a nonce;
/// the pending chart only where a cell's workers were pending for
/// [`PENDING_SHOWN`] or more).
pub fn draw_all(records: &[RunRecord]) -> Result<Vec<Chart>, ChartError> {
    let cells = super::record::cells(records);
    if !cells.values().any(|c| c.time.is_some()) {
        return Ok(Vec::new());
    }
    let mut charts = vec![
        render(
            TIME_VS_PODS,
            "Time to result against pods, per D (log-log), with the ideal 1/P",
            |root| time_vs_pods(root, &cells),
        )?,
        render(SPEEDUP, "Speed-up against pods, per D", |root| {
            scaling(root, &cells, Scaling::Speedup)
        })?,
        render(
            EFFICIENCY,
            "Parallel efficiency against pods, per D",
            |root| scaling(root, &cells, Scaling::Efficiency),
        )?,
        render(
            TIME_VS_DIFFICULTY,
            "Median time against D, per pod count, with 2^D / the measured rate",
            |root| time_vs_difficulty(root, &cells),
        )?,
    ];
    if cells
        .values()
        .any(|c| c.pending.is_some_and(|p| p >= PENDING_SHOWN))
    {
        charts.push(render(
            PENDING,
            "Time before the first worker ran (nodes, images) and searching time per cell",
            |root| pending(root, &cells),
        )?);
    }
    Ok(charts)
}

/// Writes `charts` into `dir`; returns their paths.
pub fn write_all(dir: &Path, charts: &[Chart]) -> Result<Vec<PathBuf>, ChartError> {
    charts
        .iter()
        .map(|chart| {
            let path = dir.join(chart.file);
            std::fs::write(&path, &chart.svg).map_err(|source| ChartError::Io {
                path: path.clone(),
                source,
            })?;
            Ok(path)
        })
        .collect()
}

fn render(
    file: &'static str,
    title: &'static str,
    draw: impl FnOnce(&DrawingArea<SVGBackend<'_>, Shift>) -> DrawResult,
) -> Result<Chart, ChartError> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        let drawn = root
            .fill(&WHITE)
            .map_err(|e| e.into())
            .and_then(|()| draw(&root))
            .and_then(|()| root.present().map_err(|e| e.into()));
        drawn.map_err(|e: Box<dyn std::error::Error>| ChartError::Draw {
            chart: file,
            detail: e.to_string(),
        })?;
    }
    Ok(Chart { file, title, svg })
}

/// A range for a log axis around `values`, with some room.
fn log_bounds(values: impl IntoIterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = values
        .into_iter()
        .filter(|v| v.is_finite() && *v > 0.0)
        .fold((f64::INFINITY, 0.0_f64), |(lo, hi), v| {
            (lo.min(v), hi.max(v))
        });
    if !lo.is_finite() {
        return (0.1, 10.0);
    }
    (lo / 1.6, hi * 1.6)
}

/// Seconds on an axis: `250ms`, `2s`, `1.5s`, `5min`.
pub fn secs_label(s: f64) -> String {
    match s {
        s if s < 1.0 => format!("{}ms", round_sig(s * 1e3)),
        s if s < 120.0 => format!("{}s", round_sig(s)),
        s if s < 7200.0 => format!("{}min", round_sig(s / 60.0)),
        s => format!("{}h", round_sig(s / 3600.0)),
    }
}

/// Two significant digits, without trailing zeros.
fn round_sig(v: f64) -> String {
    if v == 0.0 || !v.is_finite() {
        return "0".into();
    }
    let digits = (1 - v.abs().log10().floor() as i32).max(0) as usize;
    let text = format!("{v:.digits$}");
    if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        text
    }
}

fn difficulties(cells: &Cells) -> Vec<u32> {
    let set: BTreeSet<u32> = cells
        .values()
        .filter(|c| c.time.is_some())
        .map(|c| c.difficulty)
        .collect();
    set.into_iter().collect()
}

fn pod_counts(cells: &Cells) -> Vec<u64> {
    let set: BTreeSet<u64> = cells
        .values()
        .filter(|c| c.time.is_some())
        .map(|c| c.pods)
        .collect();
    set.into_iter().collect()
}

/// The cells of difficulty `d` that found a nonce, by pods.
fn row(cells: &Cells, d: u32) -> Vec<&Cell> {
    cells
        .values()
        .filter(|c| c.difficulty == d && c.time.is_some())
        .collect()
}

fn legend_line(c: RGBColor) -> impl Fn((i32, i32)) -> PathElement<(i32, i32)> {
    move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(2))
}

fn legend_dashes(c: RGBColor) -> impl Fn((i32, i32)) -> PathElement<(i32, i32)> {
    move |(x, y)| PathElement::new(vec![(x, y), (x + 6, y)], c.stroke_width(2))
}

fn time_vs_pods(root: &DrawingArea<SVGBackend<'_>, Shift>, cells: &Cells) -> DrawResult {
    let pods = pod_counts(cells);
    let (x_lo, x_hi) = (pods[0] as f64 / 1.3, *pods.last().unwrap() as f64 * 1.3);
    let mut ys = Vec::new();
    for c in cells.values() {
        if let Some(t) = c.time {
            ys.extend([t.min, t.max]);
        }
    }
    for d in difficulties(cells) {
        let row = row(cells, d);
        let base = row[0];
        let t0 = base.time.unwrap().median * base.pods as f64;
        ys.extend(pods.iter().map(|p| t0 / *p as f64));
    }
    let (y_lo, y_hi) = log_bounds(ys);
    let mut chart = ChartBuilder::on(root)
        .caption(
            "Time to a golden nonce against pods (log-log)",
            ("sans-serif", 22),
        )
        .margin(16)
        .x_label_area_size(48)
        .y_label_area_size(72)
        .build_cartesian_2d(
            (x_lo..x_hi)
                .log_scale()
                .with_key_points(pods.iter().map(|p| *p as f64).collect()),
            (y_lo..y_hi).log_scale(),
        )?;
    chart
        .configure_mesh()
        .x_desc("pods (log scale)")
        .y_desc("time to result, seconds (log scale)")
        .x_label_formatter(&|v| format!("{v:.0}"))
        .y_label_formatter(&|v| secs_label(*v))
        .draw()?;
    let ds = difficulties(cells);
    for (i, d) in ds.iter().copied().enumerate() {
        let c = color(i);
        let row = row(cells, d);
        let medians: Vec<(f64, f64)> = row
            .iter()
            .map(|cell| (cell.pods as f64, cell.time.unwrap().median))
            .collect();
        chart
            .draw_series(LineSeries::new(medians.clone(), c.stroke_width(2)))?
            .label(format!("D = {d}"))
            .legend(legend_line(c));
        chart.draw_series(medians.iter().map(|&p| Circle::new(p, 4, c.filled())))?;
        chart.draw_series(whiskers(&row, c, |cell| cell.pods as f64, |t| t))?;
        // The ideal: the fewest pods' median time, divided among more pods.
        let base = row[0];
        let t0 = base.time.unwrap().median * base.pods as f64;
        let ideal = chart.draw_series(DashedLineSeries::new(
            pods.iter()
                .filter(|p| **p >= base.pods)
                .map(|p| (*p as f64, t0 / *p as f64)),
            6,
            4,
            c.mix(0.7).stroke_width(1),
        ))?;
        // Labelled once, last, below the series.
        if i + 1 == ds.len() {
            ideal
                .label("ideal 1/P (dashed, from the fewest pods)")
                .legend(legend_dashes(BLACK));
        }
    }
    legend(&mut chart, SeriesLabelPosition::UpperRight)
}

/// Every chart's legend box, at `at`.
fn legend<'a, CT: CoordTranslate>(
    chart: &mut ChartContext<'a, SVGBackend<'a>, CT>,
    at: SeriesLabelPosition,
) -> DrawResult {
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .position(at)
        .draw()?;
    Ok(())
}

/// Min–max whiskers of the cells with more than one found run.
fn whiskers<'a>(
    row: &'a [&'a Cell],
    c: RGBColor,
    x: impl Fn(&Cell) -> f64 + 'a,
    y: impl Fn(f64) -> f64 + 'a,
) -> impl Iterator<Item = ErrorBar<f64, f64, ErrorBarOrientV<f64, f64>>> + 'a {
    row.iter().filter(|cell| cell.found > 1).map(move |cell| {
        let t = cell.time.unwrap();
        let (a, b) = (y(t.min), y(t.max));
        ErrorBar::new_vertical(
            x(cell),
            a.min(b),
            y(t.median),
            a.max(b),
            c.stroke_width(1),
            8,
        )
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scaling {
    Speedup,
    Efficiency,
}

fn scaling(root: &DrawingArea<SVGBackend<'_>, Shift>, cells: &Cells, what: Scaling) -> DrawResult {
    let pods = pod_counts(cells);
    let p_max = *pods.last().unwrap() as f64;
    // Speed-up over the fewest pods of each D, taken as ideal up to there:
    // S(P) = P0 · T(P0) / T(P); efficiency S(P) / P.
    let value = |base: &Cell, p: u64, t: f64| {
        let s = base.pods as f64 * base.time.unwrap().median / t;
        match what {
            Scaling::Speedup => s,
            Scaling::Efficiency => s / p as f64,
        }
    };
    let mut y_hi: f64 = match what {
        Scaling::Speedup => p_max,
        Scaling::Efficiency => 1.0,
    };
    for d in difficulties(cells) {
        let row = row(cells, d);
        for cell in &row {
            let t = cell.time.unwrap();
            y_hi = y_hi.max(value(row[0], cell.pods, t.min));
        }
    }
    let (caption, y_desc) = match what {
        Scaling::Speedup => (
            "Speed-up against pods",
            "speed-up S(P) = P0·T(P0) / T(P), ×",
        ),
        Scaling::Efficiency => (
            "Parallel efficiency against pods",
            "parallel efficiency S(P) / P, %",
        ),
    };
    let mut chart = ChartBuilder::on(root)
        .caption(caption, ("sans-serif", 22))
        .margin(16)
        .x_label_area_size(48)
        .y_label_area_size(72)
        .build_cartesian_2d(
            (pods[0] as f64 / 1.3..p_max * 1.3)
                .log_scale()
                .with_key_points(pods.iter().map(|p| *p as f64).collect()),
            0.0..y_hi * 1.1,
        )?;
    chart
        .configure_mesh()
        .x_desc("pods (log scale)")
        .y_desc(y_desc)
        .x_label_formatter(&|v| format!("{v:.0}"))
        .y_label_formatter(&|v| match what {
            Scaling::Speedup => round_sig(*v),
            Scaling::Efficiency => format!("{:.0}%", v * 100.0),
        })
        .draw()?;
    // Dense enough to look straight or curved as it should on the log axis.
    let p_min = pods[0] as f64;
    let ideal: Vec<(f64, f64)> = (0..=64)
        .map(|i| p_min * (p_max / p_min).powf(f64::from(i) / 64.0))
        .map(|p| match what {
            Scaling::Speedup => (p, p),
            Scaling::Efficiency => (p, 1.0),
        })
        .collect();
    chart
        .draw_series(DashedLineSeries::new(ideal, 6, 4, BLACK.stroke_width(1)))?
        .label(match what {
            Scaling::Speedup => "ideal (S = P)",
            Scaling::Efficiency => "ideal (100%)",
        })
        .legend(legend_dashes(BLACK));
    for (i, d) in difficulties(cells).into_iter().enumerate() {
        let c = color(i);
        let row = row(cells, d);
        let base = row[0];
        let points: Vec<(f64, f64)> = row
            .iter()
            .map(|cell| {
                let t = cell.time.unwrap().median;
                (cell.pods as f64, value(base, cell.pods, t))
            })
            .collect();
        chart
            .draw_series(LineSeries::new(points.clone(), c.stroke_width(2)))?
            .label(format!("D = {d}"))
            .legend(legend_line(c));
        chart.draw_series(points.iter().map(|&p| Circle::new(p, 4, c.filled())))?;
        // A slower run means a smaller speed-up: the whiskers come from the extremes.
        chart.draw_series(row.iter().filter(|cell| cell.found > 1).map(|cell| {
            let t = cell.time.unwrap();
            ErrorBar::new_vertical(
                cell.pods as f64,
                value(base, cell.pods, t.max),
                value(base, cell.pods, t.median),
                value(base, cell.pods, t.min),
                c.stroke_width(1),
                8,
            )
        }))?;
    }
    legend(
        &mut chart,
        match what {
            Scaling::Speedup => SeriesLabelPosition::UpperLeft,
            Scaling::Efficiency => SeriesLabelPosition::UpperRight,
        },
    )
}

/// Seconds to hash 2^d at `mhs` MH/s: the expected time to a golden nonce.
pub fn expected_secs(d: u32, mhs: f64) -> f64 {
    2f64.powi(d as i32) / (mhs * 1e6)
}

fn time_vs_difficulty(root: &DrawingArea<SVGBackend<'_>, Shift>, cells: &Cells) -> DrawResult {
    let ds = difficulties(cells);
    let (d_lo, d_hi) = (ds[0] as f64 - 0.5, *ds.last().unwrap() as f64 + 0.5);
    // Each pod count's rate: the median over its cells' median rates.
    let rates: BTreeMap<u64, f64> = pod_counts(cells)
        .into_iter()
        .filter_map(|p| {
            let rates: Vec<f64> = cells
                .values()
                .filter(|c| c.pods == p)
                .filter_map(|c| c.mhs)
                .collect();
            super::record::Spread::of(&rates).map(|s| (p, s.median))
        })
        .collect();
    let mut ys = Vec::new();
    for c in cells.values() {
        if let Some(t) = c.time {
            ys.extend([t.min, t.max]);
        }
    }
    for mhs in rates.values() {
        ys.extend([
            expected_secs(ds[0], *mhs),
            expected_secs(*ds.last().unwrap(), *mhs),
        ]);
    }
    let (y_lo, y_hi) = log_bounds(ys);
    let mut chart = ChartBuilder::on(root)
        .caption(
            "Median time to a golden nonce against D",
            ("sans-serif", 22),
        )
        .margin(16)
        .x_label_area_size(48)
        .y_label_area_size(72)
        .build_cartesian_2d(d_lo..d_hi, (y_lo..y_hi).log_scale())?;
    chart
        .configure_mesh()
        // A tick per whole D (d_hi - d_lo of them fit).
        .x_labels((d_hi - d_lo) as usize + 1)
        .x_desc("difficulty D, leading zero bits")
        .y_desc("time to result, seconds (log scale)")
        .x_label_formatter(&|v| format!("{v:.0}"))
        .y_label_formatter(&|v| secs_label(*v))
        .draw()?;
    let pods = pod_counts(cells);
    for (i, p) in pods.iter().copied().enumerate() {
        let c = color(i);
        let column: Vec<&Cell> = cells
            .values()
            .filter(|cell| cell.pods == p && cell.time.is_some())
            .collect();
        let medians: Vec<(f64, f64)> = column
            .iter()
            .map(|cell| (cell.difficulty as f64, cell.time.unwrap().median))
            .collect();
        chart
            .draw_series(LineSeries::new(medians.clone(), c.stroke_width(2)))?
            .label(if p == 1 {
                "1 pod".to_string()
            } else {
                format!("{p} pods")
            })
            .legend(legend_line(c));
        chart.draw_series(medians.iter().map(|&p| Circle::new(p, 4, c.filled())))?;
        chart.draw_series(whiskers(&column, c, |cell| cell.difficulty as f64, |t| t))?;
        if let Some(mhs) = rates.get(&p) {
            let expected = chart.draw_series(DashedLineSeries::new(
                ds.iter().map(|d| (*d as f64, expected_secs(*d, *mhs))),
                6,
                4,
                c.mix(0.7).stroke_width(1),
            ))?;
            if i + 1 == pods.len() {
                expected
                    .label("2^D hashes at the measured rate (dashed)")
                    .legend(legend_dashes(BLACK));
            }
        }
    }
    legend(&mut chart, SeriesLabelPosition::UpperLeft)
}

fn pending(root: &DrawingArea<SVGBackend<'_>, Shift>, cells: &Cells) -> DrawResult {
    // By pods, then D, so each pod count's bars stand together.
    let mut bars: Vec<&Cell> = cells.values().filter(|c| c.time.is_some()).collect();
    bars.sort_by_key(|c| (c.pods, c.difficulty));
    let n = bars.len();
    let y_hi = bars
        .iter()
        .map(|c| c.time.unwrap().median)
        .fold(0.0_f64, f64::max)
        * 1.15;
    let labels: Vec<String> = bars
        .iter()
        .map(|c| format!("{}p D{}", c.pods, c.difficulty))
        .collect();
    let mut chart = ChartBuilder::on(root)
        .caption(
            "Where the time went: before the first worker ran vs searching",
            ("sans-serif", 22),
        )
        .margin(16)
        .x_label_area_size(56)
        .y_label_area_size(72)
        // Bar i is centred on x = i, where its tick and label are.
        .build_cartesian_2d(-0.5..n as f64 - 0.5, 0.0..y_hi.max(0.001))?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(n)
        .x_desc("cell: pods (p) and difficulty (D)")
        .y_desc("median time to result, seconds")
        .x_label_formatter(&|v| {
            labels
                .get(v.round().max(0.0) as usize)
                .cloned()
                .unwrap_or_default()
        })
        .y_label_formatter(&|v| secs_label(*v))
        .draw()?;
    let pending_color = color(3);
    let search_color = color(0);
    let split: Vec<(f64, f64)> = bars
        .iter()
        .map(|c| {
            let total = c.time.unwrap().median;
            let pending = c.pending.unwrap_or(0.0).min(total);
            (pending, total)
        })
        .collect();
    chart
        .draw_series(split.iter().enumerate().map(|(i, (pending, _))| {
            Rectangle::new(
                [(i as f64 - 0.35, 0.0), (i as f64 + 0.35, *pending)],
                pending_color.filled(),
            )
        }))?
        .label("pending (median)")
        .legend(move |(x, y)| {
            Rectangle::new([(x, y - 5), (x + 14, y + 5)], pending_color.filled())
        });
    chart
        .draw_series(split.iter().enumerate().map(|(i, (pending, total))| {
            Rectangle::new(
                [(i as f64 - 0.35, *pending), (i as f64 + 0.35, *total)],
                search_color.filled(),
            )
        }))?
        .label("searching (median time − pending)")
        .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 14, y + 5)], search_color.filled()));
    legend(&mut chart, SeriesLabelPosition::UpperLeft)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cmd::sweep::record::tests::found;

    /// The text of every `<text>` element of `svg`, which must be well-formed XML.
    pub fn texts(svg: &str) -> Vec<String> {
        let doc = roxmltree::Document::parse(svg).expect("well-formed SVG");
        assert_eq!(doc.root_element().tag_name().name(), "svg");
        doc.descendants()
            .filter(|n| n.has_tag_name("text"))
            .map(|n| n.text().unwrap_or_default().trim().to_string())
            .collect()
    }

    /// Two difficulties, pods 1, 2, 4, three repeats each, halving with pods.
    fn grid() -> Vec<RunRecord> {
        let mut records = Vec::new();
        for d in [20, 22] {
            for pods in [1u64, 2, 4] {
                for (repeat, jitter) in [(1, 0.8), (2, 1.0), (3, 1.3)] {
                    let secs = 2f64.powi(d as i32 - 20) * 4.0 / pods as f64 * jitter;
                    records.push(found(pods, d, repeat, secs));
                }
            }
        }
        records
    }

    #[test]
    fn every_chart_is_well_formed_with_its_series_and_axes() {
        let charts = draw_all(&grid()).unwrap();
        let files: Vec<&str> = charts.iter().map(|c| c.file).collect();
        // No pending time in the data: no pending chart.
        assert_eq!(
            files,
            [TIME_VS_PODS, SPEEDUP, EFFICIENCY, TIME_VS_DIFFICULTY]
        );
        let by_file = |f: &str| texts(&charts.iter().find(|c| c.file == f).unwrap().svg);

        let t = by_file(TIME_VS_PODS);
        for want in [
            "D = 20",
            "D = 22",
            "ideal 1/P (dashed, from the fewest pods)",
            "pods (log scale)",
            "time to result, seconds (log scale)",
            "1",
            "2",
            "4",
        ] {
            assert!(t.iter().any(|s| s == want), "{want:?} not in {t:?}");
        }
        let s = by_file(SPEEDUP);
        assert!(s.iter().any(|x| x == "ideal (S = P)"), "{s:?}");
        assert!(s.iter().any(|x| x.starts_with("speed-up")), "{s:?}");
        let e = by_file(EFFICIENCY);
        assert!(e.iter().any(|x| x == "ideal (100%)"), "{e:?}");
        assert!(
            e.iter().any(|x| x == "parallel efficiency S(P) / P, %"),
            "{e:?}"
        );
        let d = by_file(TIME_VS_DIFFICULTY);
        for want in [
            "1 pod",
            "2 pods",
            "4 pods",
            "difficulty D, leading zero bits",
        ] {
            assert!(d.iter().any(|s| s == want), "{want:?} not in {d:?}");
        }
        assert!(d.iter().any(|s| s.starts_with("2^D hashes")), "{d:?}");
    }

    /// `<line>` elements stroked in `color`: the whiskers (three lines each);
    /// series are polylines, the mesh is grey.
    fn lines_in(svg: &str, color: &str) -> usize {
        let doc = roxmltree::Document::parse(svg).expect("well-formed SVG");
        doc.descendants()
            .filter(|n| n.has_tag_name("line") && n.attribute("stroke") == Some(color))
            .count()
    }

    #[test]
    fn repeated_cells_get_whiskers_and_single_runs_do_not() {
        let repeated = draw_all(&grid()).unwrap();
        let single: Vec<RunRecord> = grid().into_iter().filter(|r| r.repeat == 2).collect();
        let once = draw_all(&single).unwrap();
        // D = 20 is the first series: three cells, three lines per whisker.
        assert_eq!(lines_in(&repeated[0].svg, "#1F77B4"), 9);
        assert_eq!(lines_in(&once[0].svg, "#1F77B4"), 0);
    }

    #[test]
    fn pending_time_adds_the_stacked_bar_chart() {
        let mut records = grid();
        // Milliseconds of pending (spawning local workers) draw no chart ...
        for r in records.iter_mut() {
            r.pending_ms = Some(12);
        }
        assert!(draw_all(&records)
            .unwrap()
            .iter()
            .all(|c| c.file != PENDING));
        // ... half a second or more (pods waiting for a node) does.
        for r in records.iter_mut().filter(|r| r.pods == 4) {
            r.pending_ms = Some(500);
        }
        let charts = draw_all(&records).unwrap();
        let pending = charts
            .iter()
            .find(|c| c.file == PENDING)
            .expect("a pending chart");
        let t = texts(&pending.svg);
        for want in ["pending (median)", "4p D22", "1p D20"] {
            assert!(t.iter().any(|s| s == want), "{want:?} not in {t:?}");
        }
        // 6 cells × (pending + searching) bars, and the 2 legend swatches.
        assert!(pending.svg.matches("<rect").count() >= 14);
    }

    #[test]
    fn nothing_found_draws_nothing() {
        let mut r = found(1, 20, 1, 1.0);
        r.outcome = crate::cmd::sweep::record::Outcome::Error;
        assert!(draw_all(&[r]).unwrap().is_empty());
    }

    #[test]
    fn axis_labels_read_as_times() {
        assert_eq!(secs_label(0.25), "250ms");
        assert_eq!(secs_label(2.0), "2s");
        assert_eq!(secs_label(1.5), "1.5s");
        assert_eq!(secs_label(300.0), "5min");
        assert!((expected_secs(20, 1.048576) - 1.0).abs() < 1e-12);
    }
}
