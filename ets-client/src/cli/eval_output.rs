//! The report files of `ets eval`: `summary.json`, `summary.md`, and SVG plots drawn with
//! plotters (live KV tokens per depth per method, one plot per width; accuracy against mean
//! live KV per method).

use std::collections::HashSet;
use std::path::Path;

use anyhow::Context;
use ets_core::answer::Grader;
use ets_core::eval::{
    compare_with_baseline, markdown_table, summarize, CellSummary, EvalRecord, EvalSummary,
};
use plotters::prelude::*;

use super::eval::read_records;

/// Summarises the `wanted` cells of `out/results.jsonl`, graded by `grader` (records graded
/// otherwise are regraded from their trajectories), beside the same cells of the `baseline`
/// eval's directory if given, and writes every report file.
pub fn write_reports(
    out: &Path,
    dataset: &str,
    grader: Grader,
    wanted: &HashSet<String>,
    baseline: Option<&Path>,
) -> anyhow::Result<EvalSummary> {
    // Graded once here; `summarize` then has nothing left to regrade.
    let records: Vec<EvalRecord> = read_records(&out.join("results.jsonl"), Some(wanted))?
        .into_iter()
        .map(|r| r.regraded(grader))
        .collect();
    let compared = match baseline {
        Some(dir) => {
            let base: Vec<EvalRecord> = read_records(&dir.join("results.jsonl"), None)
                .with_context(|| format!("--baseline {}", dir.display()))?
                .into_iter()
                .map(|r| r.regraded(grader))
                .collect();
            compare_with_baseline(&records, &base)
        }
        None => Vec::new(),
    };
    let mut summary = summarize(dataset, grader, records);
    summary.baseline = compared;
    let write = |name: &str, text: String| {
        let path = out.join(name);
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))
    };
    write(
        "summary.json",
        serde_json::to_string_pretty(&summary)? + "\n",
    )?;
    write("summary.md", markdown_table(&summary))?;
    let mut settings: Vec<(usize, Option<u64>)> = summary
        .cells
        .iter()
        .map(|c| (c.width, c.kv_limit))
        .collect();
    settings.dedup();
    for (width, kv_limit) in settings {
        let cells: Vec<&CellSummary> = summary
            .cells
            .iter()
            .filter(|c| c.width == width && c.kv_limit == kv_limit)
            .collect();
        let name = match kv_limit {
            Some(limit) => format!("kv_per_depth_w{width}_limit{limit}.svg"),
            None => format!("kv_per_depth_w{width}.svg"),
        };
        let path = out.join(name);
        plot_kv_per_depth(&path, width, kv_limit, &cells)
            .map_err(|e| anyhow::anyhow!("cannot draw {}: {e}", path.display()))?;
    }
    let path = out.join("accuracy_vs_kv.svg");
    plot_accuracy_vs_kv(&path, &summary.cells)
        .map_err(|e| anyhow::anyhow!("cannot draw {}: {e}", path.display()))?;
    Ok(summary)
}

type DrawResult = Result<(), Box<dyn std::error::Error>>;

/// The colour of a method, the same in every plot.
fn colour(method: &str) -> RGBColor {
    let index = ets_core::Method::ALL
        .iter()
        .position(|m| m.name() == method)
        .unwrap_or(5);
    let colours = [
        RGBColor(214, 39, 40),
        RGBColor(31, 119, 180),
        RGBColor(44, 160, 44),
        RGBColor(148, 103, 189),
        RGBColor(255, 127, 14),
        RGBColor(90, 90, 90),
    ];
    colours[index]
}

/// Upper end of an axis: a little above the largest value, never empty.
fn axis_top(max: f64) -> f64 {
    if max > 0.0 {
        max * 1.1
    } else {
        1.0
    }
}

fn plot_kv_per_depth(
    path: &Path,
    width: usize,
    kv_limit: Option<u64>,
    cells: &[&CellSummary],
) -> DrawResult {
    let depths = cells
        .iter()
        .map(|c| c.live_tokens_per_depth.len())
        .max()
        .unwrap_or(0)
        .max(2);
    let top = cells
        .iter()
        .flat_map(|c| c.live_tokens_per_depth.iter().copied())
        .fold(0.0, f64::max);
    let root = SVGBackend::new(path, (800, 500)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            match kv_limit {
                Some(limit) => format!("Live KV tokens per depth (width {width}, limit {limit})"),
                None => format!("Live KV tokens per depth (width {width})"),
            },
            ("sans-serif", 20),
        )
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(1.0..depths as f64, 0.0..axis_top(top))?;
    chart
        .configure_mesh()
        .x_desc("depth")
        .y_desc("tokens in the union of root→candidate paths")
        .draw()?;
    for cell in cells {
        let c = colour(&cell.method);
        let points: Vec<(f64, f64)> = cell
            .live_tokens_per_depth
            .iter()
            .enumerate()
            .map(|(i, &t)| ((i + 1) as f64, t))
            .collect();
        line_with_points(&mut chart, points, &cell.method, c, 3)?;
    }
    finish(chart, &root)
}

type Chart<'a, 'b> = ChartContext<
    'a,
    SVGBackend<'b>,
    Cartesian2d<plotters::coord::types::RangedCoordf64, plotters::coord::types::RangedCoordf64>,
>;

/// One labelled line with a dot of `radius` at each point.
fn line_with_points(
    chart: &mut Chart<'_, '_>,
    points: Vec<(f64, f64)>,
    label: &str,
    c: RGBColor,
    radius: i32,
) -> DrawResult {
    chart
        .draw_series(LineSeries::new(points.clone(), c.stroke_width(2)))?
        .label(label.to_owned())
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(2)));
    chart.draw_series(
        points
            .into_iter()
            .map(|p| Circle::new(p, radius, c.filled())),
    )?;
    Ok(())
}

/// Draws the legend and writes the file.
fn finish<'a, 'b: 'a>(
    mut chart: Chart<'a, 'b>,
    root: &DrawingArea<SVGBackend<'_>, plotters::coord::Shift>,
) -> DrawResult {
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}

fn plot_accuracy_vs_kv(path: &Path, cells: &[CellSummary]) -> DrawResult {
    let right = cells.iter().map(|c| c.mean_live_tokens).fold(0.0, f64::max);
    let root = SVGBackend::new(path, (800, 500)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption("Accuracy against mean live KV", ("sans-serif", 20))
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..axis_top(right), 0.0..1.05)?;
    chart
        .configure_mesh()
        .x_desc("mean live KV tokens per depth (one point per width and KV limit)")
        .y_desc("accuracy")
        .draw()?;
    let mut methods: Vec<&str> = cells.iter().map(|c| c.method.as_str()).collect();
    methods.dedup();
    let mut seen = HashSet::new();
    methods.retain(|m| seen.insert(*m));
    for method in methods {
        let c = colour(method);
        let mut points: Vec<(f64, f64)> = cells
            .iter()
            .filter(|cell| cell.method == method)
            .map(|cell| (cell.mean_live_tokens, cell.accuracy))
            .collect();
        points.sort_by(|a, b| a.0.total_cmp(&b.0));
        line_with_points(&mut chart, points, method, c, 4)?;
    }
    finish(chart, &root)
}
