//! `scratchnet plot`: training curves from a metrics file; the confusion
//! matrix and the misclassified test digits from a model. Fonts are bundled
//! (DejaVu Sans), so no system font is needed.

use super::{Common, ModelArg, Verbosity};
use anyhow::{anyhow, bail, Context, Result};
use plotters::coord::{CoordTranslate, Shift};
use plotters::prelude::*;
use plotters::style::{register_font, FontStyle};
use scratchnet::backend::{logits, Target};
use scratchnet::data::{Dataset, Split, CLASSES};
use scratchnet::fsutil::check_output_dir;
use scratchnet::model_io::Model;
use scratchnet::nn::network::argmax;
use scratchnet::train::metrics::confusion;
use scratchnet::train::EvalRecord;
use std::path::{Path, PathBuf};

#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:
  scratchnet train --metrics run.jsonl --save model.safetensors
  scratchnet plot --metrics run.jsonl --model model.safetensors --out plots/
  scratchnet plot --compare fast.jsonl best.jsonl --out plots/")]
pub struct PlotArgs {
    /// Metrics file from `train --metrics`: draws curves.png and curves.svg
    #[arg(long, value_name = "FILE", required_unless_present_any = ["file", "named", "compare"])]
    metrics: Option<PathBuf>,
    /// Metrics files of several runs: draws frontier.png and frontier.svg,
    /// test accuracy against training time, one line per run
    #[arg(long, value_name = "FILE", num_args = 1..)]
    compare: Vec<PathBuf>,
    /// Draws confusion.png/.svg and misclassified.png on the test split
    #[command(flatten)]
    model: ModelArg,
    /// Directory for the images
    #[arg(long, default_value = "plots", value_name = "DIR")]
    out: PathBuf,
    #[command(flatten)]
    pub(super) common: Common,
}

const FONT: &str = "sans-serif";

/// Curves of this many evaluations or fewer show a marker at each.
const MARKED: usize = 20;

/// Line colours, in order: matplotlib's "tab10", distinct on white.
const COLORS: [RGBColor; 10] = [
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

pub fn run(args: PlotArgs, v: Verbosity) -> Result<()> {
    register_font(
        FONT,
        FontStyle::Normal,
        include_bytes!("../../assets/DejaVuSans.ttf"),
    )
    .map_err(|_| anyhow!("bundled font is unreadable"))?;
    check_output_dir("--out", &args.out)?;
    if let Some(m) = &args.metrics {
        let records = read_metrics(m)?;
        if records.len() == 1 && v > Verbosity::Quiet {
            eprintln!(
                "note: {} holds one evaluation, so each curve is a single point; \
                 `train --eval-every N` records more",
                m.display()
            );
        }
        let png = args.out.join("curves.png");
        curves(
            BitMapBackend::new(&png, (1200, 500)).into_drawing_area(),
            &records,
            m,
        )?;
        let svg = args.out.join("curves.svg");
        curves(
            SVGBackend::new(&svg, (1200, 500)).into_drawing_area(),
            &records,
            m,
        )?;
        if v > Verbosity::Quiet {
            println!("wrote {} and {}", png.display(), svg.display());
        }
    }
    if !args.compare.is_empty() {
        let runs = args
            .compare
            .iter()
            .map(|m| {
                let name = m.file_stem().unwrap_or_default().to_string_lossy();
                Ok((name.into_owned(), read_metrics(m)?))
            })
            .collect::<Result<Vec<_>>>()?;
        let png = args.out.join("frontier.png");
        frontier(
            BitMapBackend::new(&png, (900, 560)).into_drawing_area(),
            &runs,
        )?;
        let svg = args.out.join("frontier.svg");
        frontier(SVGBackend::new(&svg, (900, 560)).into_drawing_area(), &runs)?;
        if v > Verbosity::Quiet {
            println!("wrote {} and {}", png.display(), svg.display());
        }
    }
    if let Some(mp) = args.model.path() {
        let model = Model::load(mp)?;
        let path = args.common.data_path()?;
        let data = Dataset::load(&path, None)?;
        if model.layout.arch.inputs != data.features() || model.layout.arch.classes != CLASSES {
            bail!(
                "{}: the model does not fit the images of {}",
                mp.display(),
                path.display()
            );
        }
        let test = &data.test;
        let target = Target::cpu(rayon::current_num_threads());
        let z = logits(target, &model.layout, &model.params, &test.images.floats())?;
        let pred: Vec<u8> = z.chunks_exact(CLASSES).map(argmax).collect();
        let m = confusion(&data.test.labels, &pred);
        let png = args.out.join("confusion.png");
        heat_map(BitMapBackend::new(&png, (760, 700)).into_drawing_area(), &m)?;
        let svg = args.out.join("confusion.svg");
        heat_map(SVGBackend::new(&svg, (760, 700)).into_drawing_area(), &m)?;
        let grid = args.out.join("misclassified.png");
        misclassified(
            BitMapBackend::new(&grid, (1000, 1140)).into_drawing_area(),
            &data.test,
            data.shape,
            &pred,
        )?;
        if v > Verbosity::Quiet {
            println!(
                "wrote {}, {} and {}",
                png.display(),
                svg.display(),
                grid.display()
            );
        }
    }
    Ok(())
}

fn read_metrics(path: &Path) -> Result<Vec<EvalRecord>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("--metrics {}: cannot read", path.display()))?;
    let records = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l)
                .with_context(|| format!("{}:{}: not a metrics record", path.display(), i + 1))
        })
        .collect::<Result<Vec<EvalRecord>>>()?;
    if records.is_empty() {
        bail!("{}: no records to plot", path.display());
    }
    Ok(records)
}

fn err<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow!("drawing failed: {e:?}")
}

/// The loss on the left (training, with dropout, and validation, without:
/// cross-entropy both), the three accuracies on the right, against the
/// iteration. Metrics from before the losses were recorded show J.
fn curves<DB: DrawingBackend>(
    root: DrawingArea<DB, Shift>,
    r: &[EvalRecord],
    src: &Path,
) -> Result<()> {
    root.fill(&WHITE).map_err(err)?;
    let title = format!(
        "training curves: {}",
        src.file_name().unwrap_or_default().to_string_lossy()
    );
    let root = root.titled(&title, (FONT, 22)).map_err(err)?;
    let (left, right) = root.split_horizontally(600);
    // A margin on the right, so that the last evaluation's marker shows whole.
    let x_max = r.iter().map(|r| r.iter).max().unwrap_or(1).max(1) as f64 * 1.04;
    let points = |f: fn(&EvalRecord) -> Option<f64>| -> Vec<(f64, f64)> {
        r.iter()
            .filter_map(|x| f(x).filter(|v| v.is_finite()).map(|v| (x.iter as f64, v)))
            .collect()
    };
    let losses = vec![
        (
            "training",
            points(|x| x.train_loss.or(Some(x.j))),
            COLORS[0],
        ),
        ("validation", points(|x| x.val_loss), COLORS[1]),
    ];
    let accuracies = vec![
        ("training", points(|x| Some(x.train_acc)), COLORS[0]),
        ("validation", points(|x| x.val_acc), COLORS[1]),
        ("test", points(|x| Some(x.test_acc)), COLORS[2]),
    ];
    let l_max = losses
        .iter()
        .flat_map(|s| s.1.iter().map(|p| p.1))
        .fold(0.0, f64::max)
        * 1.05
        + 1e-9;
    let lo = accuracies
        .iter()
        .flat_map(|s| s.1.iter().map(|p| p.1))
        .fold(1.0, f64::min);
    let lo = ((lo * 20.0).floor() / 20.0).clamp(0.0, 0.95);
    let charts = [
        (left, "loss (cross-entropy)", "loss", 0.0..l_max, losses),
        (right, "accuracy", "accuracy", lo..1.0, accuracies),
    ];
    for (area, caption, y_desc, range, series) in charts {
        let mut c = ChartBuilder::on(&area)
            .margin(15)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .caption(caption, (FONT, 18))
            .build_cartesian_2d(0.0..x_max, range)
            .map_err(err)?;
        c.configure_mesh()
            .x_desc("iteration")
            .y_desc(y_desc)
            .label_style((FONT, 14))
            .x_label_formatter(&|x| format!("{x:.0}"))
            .draw()
            .map_err(err)?;
        for (name, pts, color) in series {
            if pts.is_empty() {
                continue;
            }
            // Few evaluations are marked, so that even one shows.
            if pts.len() <= MARKED {
                c.draw_series(pts.iter().map(|&p| Circle::new(p, 4, color.filled())))
                    .map_err(err)?;
            }
            c.draw_series(LineSeries::new(pts, color.stroke_width(2)))
                .map_err(err)?
                .label(name)
                .legend(legend_line(color));
        }
        legend(&mut c)?;
    }
    root.present().map_err(err)
}

/// Test accuracy against seconds of training (log scale), one line per
/// run: where each recipe stands in accuracy for time.
fn frontier<DB: DrawingBackend>(
    root: DrawingArea<DB, Shift>,
    runs: &[(String, Vec<EvalRecord>)],
) -> Result<()> {
    root.fill(&WHITE).map_err(err)?;
    let points = || runs.iter().flat_map(|r| &r.1);
    let t_min = points()
        .map(|r| r.elapsed_s)
        .fold(f64::MAX, f64::min)
        .max(1e-3);
    let t_max = points()
        .map(|r| r.elapsed_s)
        .fold(0.0, f64::max)
        .max(t_min * 2.0);
    let best = |r: &[EvalRecord]| r.iter().map(|x| x.test_acc).fold(0.0, f64::max);
    let hi = runs.iter().map(|r| best(&r.1)).fold(0.0, f64::max);
    // The axis starts 3 points below the weakest run's best, so that early
    // evaluations (10% at the start) do not flatten where the runs differ.
    let lo = runs.iter().map(|r| best(&r.1)).fold(1.0, f64::min) - 0.03;
    let lo = points().map(|r| r.test_acc).fold(1.0, f64::min).max(lo);
    // Whole tenths of a percent around the results, with room above the best.
    let (lo, hi) = (
        (lo * 1000.0).floor() / 1000.0,
        ((hi * 1000.0).ceil() / 1000.0 + 0.001).min(1.0),
    );
    let mut c = ChartBuilder::on(&root)
        .caption("test accuracy against training time", (FONT, 20))
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(70)
        .build_cartesian_2d(
            (t_min * 0.8..t_max * 1.25).log_scale(),
            lo..hi.max(lo + 0.001),
        )
        .map_err(err)?;
    c.configure_mesh()
        .x_desc("seconds of training (evaluations included)")
        .y_desc("test accuracy")
        .label_style((FONT, 14))
        .x_labels(12)
        .x_label_formatter(&|x| format!("{}", (x * 10.0).round() / 10.0))
        .y_label_formatter(&|y| format!("{:.1}%", y * 100.0))
        .draw()
        .map_err(err)?;
    for (k, (name, records)) in runs.iter().enumerate() {
        let color = COLORS[k % COLORS.len()];
        let pts: Vec<(f64, f64)> = records.iter().map(|r| (r.elapsed_s, r.test_acc)).collect();
        let pieces = above(&pts, lo);
        for (i, piece) in pieces.iter().enumerate() {
            let line = c
                .draw_series(LineSeries::new(
                    piece.iter().copied(),
                    color.stroke_width(2),
                ))
                .map_err(err)?;
            if i == 0 {
                line.label(name.as_str()).legend(legend_line(color));
            }
        }
        let marks = pts.into_iter().filter(|p| p.1 >= lo);
        c.draw_series(marks.map(|p| Circle::new(p, 3, color.filled())))
            .map_err(err)?;
    }
    legend(&mut c)?;
    root.present().map_err(err)
}

/// The pieces of a line over (log x, y) that lie at or above `lo`, each
/// cut where it crosses `lo` (plotters would move such points onto the
/// axis and bend the line).
fn above(pts: &[(f64, f64)], lo: f64) -> Vec<Vec<(f64, f64)>> {
    let crossing = |(x0, y0): (f64, f64), (x1, y1): (f64, f64)| {
        let t = (lo - y0) / (y1 - y0);
        ((x0.ln() + t * (x1.ln() - x0.ln())).exp(), lo)
    };
    let mut pieces = Vec::new();
    let mut current = Vec::new();
    let mut prev: Option<(f64, f64)> = None;
    for &p in pts {
        let up = p.1 >= lo;
        if let Some(q) = prev.filter(|q| (q.1 >= lo) != up) {
            current.push(crossing(q, p));
            if !up {
                pieces.push(std::mem::take(&mut current));
            }
        }
        if up {
            current.push(p);
        }
        prev = Some(p);
    }
    if !current.is_empty() {
        pieces.push(current);
    }
    pieces
}

/// The series' labels, lower right.
fn legend<'a, DB: DrawingBackend + 'a, CT: CoordTranslate>(
    c: &mut ChartContext<'a, DB, CT>,
) -> Result<()> {
    c.configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .label_font((FONT, 15))
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(err)
}

/// A series' mark in the legend: a short line in its colour.
fn legend_line<C: Color + Copy>(color: C) -> impl Fn((i32, i32)) -> PathElement<(i32, i32)> {
    move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
}

/// The confusion matrix: cells shaded by the share of their true class,
/// with counts written in.
fn heat_map<DB: DrawingBackend>(
    root: DrawingArea<DB, Shift>,
    m: &[[usize; CLASSES]; CLASSES],
) -> Result<()> {
    root.fill(&WHITE).map_err(err)?;
    let total: usize = m.iter().flatten().sum();
    let right: usize = (0..CLASSES).map(|c| m[c][c]).sum();
    let title = format!(
        "confusion matrix, test set: {right} / {total} right ({:.2}%)",
        100.0 * right as f64 / total.max(1) as f64
    );
    // Rows are drawn bottom-up, so true class t sits at row `last - t` (0 on top).
    let last = CLASSES as i32 - 1;
    let class_label = |v: &SegmentValue<i32>, flip: bool| match v {
        SegmentValue::CenterOf(k) => (if flip { last - k } else { *k }).to_string(),
        _ => String::new(),
    };
    let mut c = ChartBuilder::on(&root)
        .caption(title, (FONT, 20))
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(45)
        .build_cartesian_2d((0..last).into_segmented(), (0..last).into_segmented())
        .map_err(err)?;
    c.configure_mesh()
        .disable_mesh()
        .x_desc("predicted")
        .y_desc("true")
        .label_style((FONT, 16))
        .x_labels(CLASSES)
        .y_labels(CLASSES)
        .x_label_formatter(&|v| class_label(v, false))
        .y_label_formatter(&|v| class_label(v, true))
        .draw()
        .map_err(err)?;
    for (t, row) in m.iter().enumerate() {
        let n = row.iter().sum::<usize>().max(1) as f64;
        for (p, &count) in row.iter().enumerate() {
            let share = count as f64 / n;
            // Diagonal in blue, errors in red, both fading to white at zero.
            let strength = if t == p {
                share
            } else {
                (share * 20.0).min(1.0)
            };
            let base = if t == p {
                (30.0, 90.0, 200.0)
            } else {
                (210.0, 40.0, 40.0)
            };
            let mix = |b: f64| (255.0 - (255.0 - b) * strength) as u8;
            let color = RGBColor(mix(base.0), mix(base.1), mix(base.2));
            let row = last - t as i32;
            let (x, y) = (SegmentValue::Exact(p as i32), SegmentValue::Exact(row));
            let (x1, y1) = (
                SegmentValue::Exact(p as i32 + 1),
                SegmentValue::Exact(row + 1),
            );
            c.draw_series(std::iter::once(Rectangle::new(
                [(x, y), (x1, y1)],
                color.filled(),
            )))
            .map_err(err)?;
            let ink = if strength > 0.6 { WHITE } else { BLACK };
            let label = Text::new(
                count.to_string(),
                (
                    SegmentValue::CenterOf(p as i32),
                    SegmentValue::CenterOf(row),
                ),
                (FONT, 15)
                    .into_font()
                    .color(&ink)
                    .pos(plotters::style::text_anchor::Pos::new(
                        plotters::style::text_anchor::HPos::Center,
                        plotters::style::text_anchor::VPos::Center,
                    )),
            );
            c.draw_series(std::iter::once(label)).map_err(err)?;
        }
    }
    root.present().map_err(err)
}

/// Up to 100 misclassified test digits, each labelled "true → predicted".
fn misclassified<DB: DrawingBackend>(
    root: DrawingArea<DB, Shift>,
    test: &Split,
    (h, w): (usize, usize),
    pred: &[u8],
) -> Result<()> {
    root.fill(&WHITE).map_err(err)?;
    let wrong: Vec<usize> = (0..test.len())
        .filter(|&i| pred[i] != test.labels[i])
        .collect();
    let title = format!(
        "misclassified test digits: {} of {} (first {} shown, true → predicted)",
        wrong.len(),
        test.len(),
        wrong.len().min(100)
    );
    let root = root.titled(&title, (FONT, 20)).map_err(err)?;
    let cells = root.split_evenly((10, 10));
    for (cell, &i) in cells.iter().zip(&wrong) {
        let (cw, ch) = cell.dim_in_pixel();
        let scale = ((cw as usize).min(ch as usize - 22) / w.max(h)).max(1) as i32;
        let x0 = (cw as i32 - scale * w as i32) / 2;
        for (k, &v) in test.image(i).iter().enumerate() {
            if v > 0.0 {
                let g = (255.0 * (1.0 - v)) as u8;
                let (x, y) = (x0 + (k % w) as i32 * scale, 2 + (k / w) as i32 * scale);
                cell.draw(&Rectangle::new(
                    [(x, y), (x + scale, y + scale)],
                    RGBColor(g, g, g).filled(),
                ))
                .map_err(err)?;
            }
        }
        cell.draw(&Rectangle::new(
            [(x0, 2), (x0 + scale * w as i32, 2 + scale * h as i32)],
            RGBColor(200, 200, 200),
        ))
        .map_err(err)?;
        let label = format!("{} → {}", test.labels[i], pred[i]);
        cell.draw(&Text::new(
            label,
            (x0 + 4, ch as i32 - 20),
            (FONT, 16).into_font().color(&RGBColor(180, 20, 20)),
        ))
        .map_err(err)?;
    }
    root.present().map_err(err)
}

#[cfg(test)]
mod tests {
    use super::above;

    fn close(a: &[(f64, f64)], b: &[(f64, f64)]) -> bool {
        a.len() == b.len()
            && a.iter()
                .zip(b)
                .all(|(p, q)| (p.0 - q.0).abs() < 1e-9 * q.0.abs() && (p.1 - q.1).abs() < 1e-12)
    }

    #[test]
    fn a_line_is_cut_where_it_crosses_the_axis_in_log_x() {
        // Rising through 0.9 halfway (in log x) between 1 and 100: at 10.
        let rise = above(&[(1.0, 0.8), (100.0, 1.0), (1000.0, 0.95)], 0.9);
        assert_eq!(rise.len(), 1);
        assert!(
            close(&rise[0], &[(10.0, 0.9), (100.0, 1.0), (1000.0, 0.95)]),
            "{rise:?}"
        );
        // A dip below the axis splits the line in two.
        let dip = above(&[(1.0, 0.95), (10.0, 0.85), (100.0, 0.95)], 0.9);
        let root10 = 10f64.sqrt();
        assert_eq!(dip.len(), 2, "{dip:?}");
        assert!(close(&dip[0], &[(1.0, 0.95), (root10, 0.9)]), "{dip:?}");
        assert!(
            close(&dip[1], &[(10.0 * root10, 0.9), (100.0, 0.95)]),
            "{dip:?}"
        );
        // Wholly below: nothing; wholly above: the points themselves.
        assert!(above(&[(1.0, 0.5), (2.0, 0.6)], 0.9).is_empty());
        let all = [(1.0, 0.95), (2.0, 0.97)];
        assert!(close(&above(&all, 0.9)[0], &all));
    }
}
