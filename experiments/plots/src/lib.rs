//! SVG line charts of the experiments' results against request size (log axis), with
//! `plotters`: the cost model's curves, bench-aes's and bench-vm's throughput.
use std::path::Path;

use plotters::prelude::*;

/// One line.
pub struct Series {
    /// Legend text.
    pub label: String,
    /// (x, y), in increasing x (request bytes, or the chart's own x quantity).
    pub points: Vec<(f64, f64)>,
}

/// Line colours, cycled; markers change every `PALETTE.len()` series.
const PALETTE: [RGBColor; 3] = [RGBColor(31, 119, 180), RGBColor(214, 39, 40), RGBColor(44, 160, 44)];

/// Writes `series` as one SVG chart: x = request bytes (log scale), y from 0 (at least to 1,
/// so that ratios show where parity is).
pub fn against_size(path: &Path, title: &str, y_label: &str, series: &[Series]) -> Result<(), String> {
    chart(path, title, "request bytes", y_label, series)
}

/// [`against_size`] with another quantity on the (log) x axis: `x_label` names it.
pub fn chart(path: &Path, title: &str, x_label: &str, y_label: &str, series: &[Series]) -> Result<(), String> {
    let xs = series.iter().flat_map(|s| s.points.iter().map(|p| p.0));
    let (x_min, x_max) = xs.fold((f64::MAX, f64::MIN), |(lo, hi), x| (lo.min(x), hi.max(x)));
    if x_min >= x_max {
        return Err("nothing to plot".into());
    }
    let y_max = series.iter().flat_map(|s| s.points.iter().map(|p| p.1)).fold(1.0f64, f64::max) * 1.1;
    let root = SVGBackend::new(path, (900, 560)).into_drawing_area();
    let e = |e: &dyn std::fmt::Display| e.to_string();
    root.fill(&WHITE).map_err(|x| e(&x))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(55)
        .build_cartesian_2d((x_min..x_max).log_scale(), 0.0..y_max)
        .map_err(|x| e(&x))?;
    chart
        .configure_mesh()
        .x_desc(x_label)
        .y_desc(y_label)
        .x_label_formatter(&|x| format!("{}", x.round() as u64))
        .draw()
        .map_err(|x| e(&x))?;
    for (i, s) in series.iter().enumerate() {
        let color = PALETTE[i / 3 % PALETTE.len()];
        let width = 1 + (i % 3) as u32;
        let style = ShapeStyle { color: color.to_rgba(), filled: true, stroke_width: width };
        chart
            .draw_series(LineSeries::new(s.points.iter().copied(), style))
            .map_err(|x| e(&x))?
            .label(s.label.clone())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], style));
        chart.draw_series(s.points.iter().map(|&p| Circle::new(p, 2 + width as i32, style))).map_err(|x| e(&x))?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .draw()
        .map_err(|x| e(&x))?;
    root.present().map_err(|x| e(&x))
}
