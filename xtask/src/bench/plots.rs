//! The report's SVG plots, drawn with plotters' SVG backend (text is left to the browser's
//! fonts, so nothing on the machine is needed).
use std::path::Path;

use anyhow::{Result, anyhow};
use plotters::{coord::ranged1d::SegmentValue, prelude::*};

use super::{
    results::{FailoverSeries, Implementation, RestPoint, ScalePoint, Scenario, XdpCase},
    stats,
};

const OURS: RGBColor = RGBColor(31, 119, 180);
const OURS_LIGHT: RGBColor = RGBColor(140, 190, 225);
const THEIRS: RGBColor = RGBColor(214, 39, 40);
const GREY: RGBColor = RGBColor(150, 150, 150);
const FONT: &str = "sans-serif";
/// Log axes cannot show 0: a run without loss is drawn at this floor.
pub const OUTAGE_FLOOR_MS: f64 = 0.5;

fn err(e: impl std::fmt::Display) -> anyhow::Error {
    anyhow!("drawing a plot: {e}")
}

/// Outage per setting (median dot, min-max bar, p90 tick), one panel per scenario, log scale.
pub fn failover(series: &[FailoverSeries], path: &Path) -> Result<()> {
    let root = SVGBackend::new(path, (1000, 720)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let labels: Vec<String> = series
        .iter()
        .map(|s| match s.implementation {
            Implementation::Ha => format!("ha {}", s.setting.trim_end_matches(" ms")),
            Implementation::Keepalived => format!("ka {}", s.setting.trim_start_matches("advert ")),
            Implementation::HaRouted => format!("bgp {}", s.setting.split(" ms").next().unwrap_or_default()),
            Implementation::HaTwoLinks => format!("2 links {}", s.setting.split(" ms").next().unwrap_or_default()),
            Implementation::Floor => format!("floor {}", s.setting),
        })
        .collect();
    let top = series
        .iter()
        .flat_map(|s| s.scenarios.iter().flat_map(|r| r.runs.iter().map(|r| r.outage_ms)))
        .fold(10.0f64, f64::max)
        * 1.5;
    // A segmented 0..=last has one segment per value.
    let last = series.len().max(1) as i32 - 1;
    for (area, scenario) in root.split_evenly((2, 2)).iter().zip(Scenario::ALL) {
        let mut chart = ChartBuilder::on(area)
            .caption(scenario.title(), (FONT, 18))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(52)
            .build_cartesian_2d((0..last).into_segmented(), (OUTAGE_FLOOR_MS..top).log_scale())
            .map_err(err)?;
        let label_of = |v: &SegmentValue<i32>| match v {
            SegmentValue::CenterOf(i) => labels.get(*i as usize).cloned().unwrap_or_default(),
            _ => String::new(),
        };
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(series.len() + 1)
            .x_label_formatter(&label_of)
            .x_label_style((FONT, 11))
            .y_desc("client-observed outage (ms)")
            .y_label_formatter(&|v| format!("{v}"))
            .draw()
            .map_err(err)?;
        for (i, s) in series.iter().enumerate() {
            let Some(runs) = s.scenarios.iter().find(|r| r.scenario == scenario) else { continue };
            let st = stats::scenario(runs).outage;
            if st.n == 0 {
                continue;
            }
            let color = if s.implementation == Implementation::Ha { OURS } else { THEIRS };
            let y = |v: f64| v.max(OUTAGE_FLOOR_MS);
            let x = || SegmentValue::CenterOf(i as i32);
            chart
                .draw_series([ErrorBar::new_vertical(
                    x(),
                    y(st.min),
                    y(st.median),
                    y(st.max),
                    color.stroke_width(2),
                    14,
                )])
                .map_err(err)?;
            chart.draw_series([Circle::new((x(), y(st.median)), 5, color.filled())]).map_err(err)?;
            chart.draw_series([TriangleMarker::new((x(), y(st.p90)), 5, color.mix(0.6).filled())]).map_err(err)?;
        }
    }
    root.present().map_err(err)
}

/// Convergence, CPU and memory against the number of nodes.
pub fn scale(points: &[ScalePoint], path: &Path) -> Result<()> {
    let root = SVGBackend::new(path, (1200, 400)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let xmax = points.iter().map(|p| p.nodes).max().unwrap_or(2) as f64 + 2.0;
    let panels = root.split_evenly((1, 3));
    let series_sets: [(&str, &str, Vec<Line>); 3] = [
        (
            "time to one holder from start",
            "ms",
            vec![("converge", OURS, points.iter().map(|p| (p.nodes as f64, p.converge_ms)).collect())],
        ),
        (
            "CPU per node (% of one core)",
            "%",
            vec![
                ("agent, mean", OURS, points.iter().map(|p| (p.nodes as f64, p.cpu_pct_mean)).collect()),
                ("agent, max", OURS_LIGHT, points.iter().map(|p| (p.nodes as f64, p.cpu_pct_max)).collect()),
                (
                    "XDP",
                    THEIRS,
                    points.iter().map(|p| (p.nodes as f64, p.xdp_cpu_pct_total / p.nodes.max(1) as f64)).collect(),
                ),
            ],
        ),
        (
            "agent memory (RSS)",
            "MiB",
            vec![
                ("mean", OURS, points.iter().map(|p| (p.nodes as f64, p.rss_mib_mean)).collect()),
                ("max", OURS_LIGHT, points.iter().map(|p| (p.nodes as f64, p.rss_mib_max)).collect()),
            ],
        ),
    ];
    for (area, (title, unit, lines)) in panels.iter().zip(series_sets) {
        let ymax =
            lines.iter().flat_map(|(_, _, v)| v.iter().map(|p| p.1)).filter(|v| v.is_finite()).fold(0.0f64, f64::max);
        line_panel(area, title, "nodes", unit, (0.0..xmax, 0.0..(ymax * 1.25).max(0.01)), &lines)?;
    }
    root.present().map_err(err)
}

/// CPU and memory of idle agents against the interval (log axis).
pub fn rest(points: &[RestPoint], path: &Path) -> Result<()> {
    let root = SVGBackend::new(path, (900, 400)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let panels = root.split_evenly((1, 2));
    let pick = |f: &dyn Fn(&RestPoint) -> Option<f64>| -> Vec<(f64, f64)> {
        points.iter().filter_map(|p| Some((p.interval_ms, f(p)?))).collect()
    };
    let sets: [(&str, &str, f64, Vec<Line>); 2] = [
        (
            "agent CPU at rest (% of one core)",
            "%",
            1.0,
            vec![
                ("holder", OURS, pick(&|p| p.cpu_pct.first().copied())),
                ("standby", THEIRS, pick(&|p| p.cpu_pct.get(1).copied())),
            ],
        ),
        (
            "agent memory at rest (RSS)",
            "MiB",
            20.0,
            vec![
                ("holder", OURS, pick(&|p| p.rss_mib.first().copied())),
                ("standby", THEIRS, pick(&|p| p.rss_mib.get(1).copied())),
            ],
        ),
    ];
    for (area, (title, unit, target, mut lines)) in panels.iter().zip(sets) {
        let ymax = lines.iter().flat_map(|(_, _, v)| v.iter().map(|p| p.1)).fold(target, f64::max) * 1.2;
        lines.push(("target at 10 ms", GREY, vec![(0.5, target), (200.0, target)]));
        let mut chart = ChartBuilder::on(area)
            .caption(title, (FONT, 16))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(52)
            .build_cartesian_2d((0.5f64..200.0).log_scale(), 0.0..ymax)
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_desc("heartbeat interval (ms)")
            .y_desc(unit)
            .x_label_formatter(&|v| number(*v))
            .y_label_formatter(&|v| number(*v))
            .draw()
            .map_err(err)?;
        draw_lines(&mut chart, &lines)?;
    }
    root.present().map_err(err)
}

/// ns/packet per case: the whole bar is what the kernel measured, the dark part the program
/// alone (the test loop's own cost removed); a grey tick marks the target.
pub fn xdp(cases: &[XdpCase], path: &Path) -> Result<()> {
    let root = SVGBackend::new(path, (900, 380)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let last = cases.len().max(1) as i32 - 1;
    let ymax = cases.iter().map(|c| c.measured_ns.max(c.target_ns)).fold(10.0f64, f64::max) * 1.15;
    let mut chart = ChartBuilder::on(&root)
        .caption("XDP program per packet (BPF_PROG_TEST_RUN)", (FONT, 16))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(52)
        .build_cartesian_2d((0..last).into_segmented(), 0.0..ymax)
        .map_err(err)?;
    let label_of = |v: &SegmentValue<i32>| match v {
        SegmentValue::CenterOf(i) => cases.get(*i as usize).map(|c| c.case.clone()).unwrap_or_default(),
        _ => String::new(),
    };
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(cases.len() + 1)
        .x_label_formatter(&label_of)
        .x_label_style((FONT, 11))
        .y_desc("ns per packet")
        .draw()
        .map_err(err)?;
    for (i, c) in cases.iter().enumerate() {
        let (a, b) = (|| SegmentValue::Exact(i as i32), || SegmentValue::Exact(i as i32 + 1));
        for (v, style) in [(c.measured_ns, OURS.mix(0.35).filled()), (c.program_ns, OURS.filled())] {
            let mut bar = Rectangle::new([(a(), 0.0), (b(), v)], style);
            bar.set_margin(0, 0, 30, 30);
            chart.draw_series([bar]).map_err(err)?;
        }
        let mut tick = Rectangle::new([(a(), c.target_ns), (b(), c.target_ns + ymax / 300.0)], GREY.filled());
        tick.set_margin(0, 0, 15, 15);
        chart.draw_series([tick]).map_err(err)?;
    }
    root.present().map_err(err)
}

/// Axis numbers without needless decimals: 3500, 2.5, 0.25.
fn number(v: f64) -> String {
    if v == 0.0 || v.abs() >= 10.0 || v.fract() == 0.0 {
        format!("{v:.0}")
    } else if v.abs() >= 1.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}").trim_end_matches('0').to_string()
    }
}

/// A named, coloured polyline.
type Line<'a> = (&'a str, RGBColor, Vec<(f64, f64)>);
type Lines<'a> = [Line<'a>];

fn line_panel(
    area: &DrawingArea<SVGBackend, plotters::coord::Shift>,
    title: &str,
    xdesc: &str,
    ydesc: &str,
    (x, y): (std::ops::Range<f64>, std::ops::Range<f64>),
    lines: &Lines,
) -> Result<()> {
    let mut chart = ChartBuilder::on(area)
        .caption(title, (FONT, 16))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(52)
        .build_cartesian_2d(x, y)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc(xdesc)
        .y_desc(ydesc)
        .x_label_formatter(&|v| number(*v))
        .y_label_formatter(&|v| number(*v))
        .draw()
        .map_err(err)?;
    draw_lines(&mut chart, lines)
}

fn draw_lines<'a, X, Y>(chart: &mut ChartContext<'a, SVGBackend<'a>, Cartesian2d<X, Y>>, lines: &Lines) -> Result<()>
where
    X: Ranged<ValueType = f64>,
    Y: Ranged<ValueType = f64>,
{
    for (name, color, pts) in lines {
        let color = *color;
        let pts: Vec<(f64, f64)> = pts.iter().copied().filter(|p| p.1.is_finite()).collect();
        chart
            .draw_series(LineSeries::new(pts.clone(), color.stroke_width(2)))
            .map_err(err)?
            .label(*name)
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 16, y)], color.stroke_width(2)));
        chart.draw_series(pts.iter().map(|&p| Circle::new(p, 3, color.filled()))).map_err(err)?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.8))
        .border_style(GREY)
        .label_font((FONT, 12))
        .draw()
        .map_err(err)
}
