//! `--out DIR`: the report as SVG plots (with `plotters`' SVG backend), each beside the JSON
//! of the numbers it shows.
//!
//! * `energy.svg`: energy per wake-up (handshake, one CoAP request, its answer), one bar chart
//!   per radio, every bar labelled with its µAh as in the table (`energy.json`, the same rows
//!   as `--json`).
//! * `timers.svg`: median handshake completion time against loss, RFC 6347 timers against
//!   the `nb-iot` link profile, one panel per swept mode, every point labelled with its seconds and the
//!   seeds that completed (`timers.json`).

use super::{Row, SweepPoint};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use std::path::{Path, PathBuf};

type PlotResult<T> = Result<T, Box<dyn std::error::Error>>;

const PALETTE: [RGBColor; 4] =
    [RGBColor(31, 119, 180), RGBColor(255, 127, 14), RGBColor(44, 160, 44), RGBColor(214, 39, 40)];

/// Writes `energy.svg`, `energy.json`, `timers.svg` and `timers.json` into `dir` (created if
/// missing); returns their paths.
pub fn write_all(dir: &Path, rows: &[Row], sweep: &[SweepPoint]) -> PlotResult<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    let files = [dir.join("energy.svg"), dir.join("energy.json"), dir.join("timers.svg"), dir.join("timers.json")];
    energy(&files[0], rows)?;
    std::fs::write(&files[1], serde_json::to_string_pretty(rows)?)?;
    timers(&files[2], sweep)?;
    std::fs::write(&files[3], serde_json::to_string_pretty(sweep)?)?;
    Ok(files.to_vec())
}

/// A label centred above (or, with `below`, under) its point.
fn label_style(size: u32, below: bool) -> TextStyle<'static> {
    let v = if below { VPos::Top } else { VPos::Bottom };
    TextStyle::from(("sans-serif", size).into_font()).color(&BLACK).pos(Pos::new(HPos::Center, v))
}

/// Energy per mode, one panel per radio (in the rows' order).
pub fn energy(path: &Path, rows: &[Row]) -> PlotResult<()> {
    let mut radios: Vec<&str> = Vec::new();
    for r in rows {
        if !radios.contains(&r.radio) {
            radios.push(r.radio);
        }
    }
    let height = 320 * radios.len().max(1) as u32;
    let root = SVGBackend::new(path, (1280, height)).into_drawing_area();
    root.fill(&WHITE)?;
    for (i, (panel, radio)) in root.split_evenly((radios.len().max(1), 1)).iter().zip(&radios).enumerate() {
        let rows: Vec<&Row> = rows.iter().filter(|r| r.radio == *radio).collect();
        energy_panel(panel, radio, &rows, PALETTE[i % PALETTE.len()])?;
    }
    root.present()?;
    Ok(())
}

fn energy_panel(
    panel: &DrawingArea<SVGBackend<'_>, Shift>,
    radio: &str,
    rows: &[&Row],
    color: RGBColor,
) -> PlotResult<()> {
    let top = rows.iter().map(|r| r.energy_uah).fold(0.0, f64::max).max(1e-3) * 1.2;
    let first = rows.first().ok_or("no rows")?;
    let caption = format!(
        "{radio}: energy per wake-up (handshake + request + answer, µAh), RTT {} ms, loss {} %",
        first.rtt_ms, first.loss_percent
    );
    let mut chart = ChartBuilder::on(panel)
        .caption(caption, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(30)
        .y_label_area_size(60)
        // `(0..k).into_segmented()` has k + 1 segments, one per value of 0..=k.
        .build_cartesian_2d((0..rows.len() - 1).into_segmented(), 0f64..top)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .max_light_lines(1)
        .x_labels(rows.len())
        .x_label_formatter(&|v| match v {
            SegmentValue::CenterOf(i) | SegmentValue::Exact(i) => {
                rows.get(*i).map_or(String::new(), |r| r.mode.to_owned())
            }
            SegmentValue::Last => String::new(),
        })
        .x_label_style(("sans-serif", 12))
        .y_desc("µAh")
        .draw()?;
    chart.draw_series(rows.iter().enumerate().map(|(i, r)| {
        let mut bar =
            Rectangle::new([(SegmentValue::Exact(i), 0.0), (SegmentValue::Exact(i + 1), r.energy_uah)], color.filled());
        bar.set_margin(0, 0, 18, 18);
        bar
    }))?;
    chart.draw_series(rows.iter().enumerate().map(|(i, r)| {
        Text::new(format!("{:.3}", r.energy_uah), (SegmentValue::CenterOf(i), r.energy_uah), label_style(13, false))
    }))?;
    Ok(())
}

/// Median completion time against loss, one panel per mode of the sweep.
pub fn timers(path: &Path, sweep: &[SweepPoint]) -> PlotResult<()> {
    let mut modes: Vec<&str> = Vec::new();
    for p in sweep {
        if !modes.contains(&p.mode) {
            modes.push(p.mode);
        }
    }
    let root = SVGBackend::new(path, (1000, 380 * modes.len().max(1) as u32)).into_drawing_area();
    root.fill(&WHITE)?;
    for (panel, mode) in root.split_evenly((modes.len().max(1), 1)).iter().zip(&modes) {
        let points: Vec<&SweepPoint> = sweep.iter().filter(|p| p.mode == *mode && p.median_s.is_finite()).collect();
        let max_loss = points.iter().map(|p| p.loss_percent).max().unwrap_or(0).max(1) as f64;
        let top = points.iter().map(|p| p.median_s).fold(0.0, f64::max).max(0.1) * 1.25;
        let rtt = points.first().map_or(0, |p| p.rtt_ms);
        let mut chart = ChartBuilder::on(panel)
            .caption(format!("{mode}: median handshake completion vs loss, RTT {rtt} ms"), ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(-1f64..max_loss + 3.0, 0f64..top)?;
        chart.configure_mesh().max_light_lines(1).x_desc("loss each way, %").y_desc("seconds").draw()?;
        for (i, timer) in ["rfc6347", "nb-iot"].into_iter().enumerate() {
            let color = PALETTE[i];
            let mine: Vec<&&SweepPoint> = points.iter().filter(|p| p.timer == timer).collect();
            let series: Vec<(f64, f64)> = mine.iter().map(|p| (f64::from(p.loss_percent), p.median_s)).collect();
            let name =
                if i == 0 { "RFC 6347 timers (1 s initial)" } else { "nb-iot profile (max(5 s, 5 × RTT) initial)" };
            chart
                .draw_series(LineSeries::new(series.iter().copied(), color.stroke_width(2)))?
                .label(name)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
            chart.draw_series(series.iter().map(|&(x, y)| Circle::new((x, y), 3, color.filled())))?;
            // RFC labels under their points, LPWAN ones above, so equal medians stay legible.
            chart.draw_series(mine.iter().map(|p| {
                let label = format!("{:.3} ({}/{})", p.median_s, p.completed, p.seeds);
                Text::new(label, (f64::from(p.loss_percent), p.median_s), label_style(11, i == 0))
            }))?;
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()?;
    }
    root.present()?;
    Ok(())
}
