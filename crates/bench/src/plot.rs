//! A report's timed rows as an SVG strip plot (log time axis, one strip per row, every
//! sample a dot, p50 a bar).

use std::path::Path;

use plotters::prelude::*;

use crate::error::{Error, Result};
use crate::report::Row;

pub fn svg(path: &Path, rows: &[&Row], title: &str) -> Result<()> {
    let err = |e: &dyn std::fmt::Display| Error::Plot {
        path: path.to_path_buf(),
        source: e.to_string().into(),
    };
    let all: Vec<f64> = rows
        .iter()
        .flat_map(|r| r.samples.iter().copied())
        .filter(|v| *v > 0.0)
        .collect();
    let lo = all.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = all.iter().copied().fold(0.0, f64::max);
    let (lo, hi) = if all.is_empty() {
        (0.1, 10.0)
    } else {
        ((lo * 0.7).max(0.01), hi * 1.4)
    };
    let n = rows.len().max(1);
    let height = 140 + 46 * n as u32;
    let root = SVGBackend::new(path, (1100, height)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let names: Vec<String> = rows
        .iter()
        .map(|r| {
            let name: String = format!("{} {}", r.id, r.name).chars().take(60).collect();
            if r.samples.is_empty() {
                format!("{name} (n/a)")
            } else {
                name
            }
        })
        .collect();
    let mut chart = ChartBuilder::on(&root)
        .caption(format!("{title}: ms (log scale)"), ("sans-serif", 15))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(400)
        .build_cartesian_2d((lo..hi).log_scale(), -0.5f64..(n as f64 - 0.5))
        .map_err(|e| err(&e))?;
    chart
        .configure_mesh()
        .y_labels(n * 4 + 1)
        .y_label_formatter(&|y| {
            let i = y.round();
            if (y - i).abs() < 0.01 && i >= 0.0 && (i as usize) < names.len() {
                names[n - 1 - i as usize].clone()
            } else {
                String::new()
            }
        })
        .x_desc("milliseconds")
        .disable_y_mesh()
        .draw()
        .map_err(|e| err(&e))?;
    for (idx, r) in rows.iter().enumerate() {
        let y = (n - 1 - idx) as f64;
        let color = Palette99::pick(idx).to_rgba();
        // Deterministic jitter so overlapping samples stay visible.
        let pts: Vec<(f64, f64)> = r
            .samples
            .iter()
            .enumerate()
            .filter(|(_, &ms)| ms > 0.0)
            .map(|(i, &ms)| (ms, y + ((i * 37 % 17) as f64 / 17.0 - 0.5) * 0.5))
            .collect();
        chart
            .draw_series(
                pts.iter()
                    .map(|&p| Circle::new(p, 3, color.mix(0.6).filled())),
            )
            .map_err(|e| err(&e))?;
        if let Some(st) = &r.stats {
            chart
                .draw_series(LineSeries::new(
                    [(st.p50, y - 0.35), (st.p50, y + 0.35)],
                    BLACK.stroke_width(2),
                ))
                .map_err(|e| err(&e))?;
        }
    }
    root.present().map_err(|e| err(&e))
}
