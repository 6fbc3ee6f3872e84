//! The benchmark chart: throughput and p99 latency against connections, one line per server,
//! as a plain SVG (axes with units, ticks, a legend) that any browser or GitHub renders.

use std::fmt::Write as _;

/// One server's measurements, in connection order.
pub(super) struct Series<'a> {
    /// The legend's label.
    pub(super) name: &'a str,
    /// The line's colour.
    pub(super) colour: &'a str,
    /// Requests per second at each connection count.
    pub(super) throughput: Vec<f64>,
    /// p99 latency in milliseconds at each connection count.
    pub(super) p99_ms: Vec<f64>,
}

const PANEL_WIDTH: f64 = 420.0;
const PANEL_HEIGHT: f64 = 300.0;
const MARGIN_LEFT: f64 = 70.0;
const MARGIN_BOTTOM: f64 = 50.0;
const MARGIN_TOP: f64 = 40.0;

/// The SVG of both panels for `connections` on the x axis.
pub(super) fn render(title: &str, connections: &[u32], series: &[Series<'_>]) -> String {
    let width = 2.0 * (MARGIN_LEFT + PANEL_WIDTH) + 40.0;
    let height = MARGIN_TOP + PANEL_HEIGHT + MARGIN_BOTTOM + 40.0;
    let mut svg = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="12">
<rect width="100%" height="100%" fill="white"/>
<text x="{}" y="20" text-anchor="middle" font-size="15">{}</text>
"#,
        width / 2.0,
        escape(title)
    );
    let throughput: Vec<(&Series<'_>, &[f64])> =
        series.iter().map(|s| (s, s.throughput.as_slice())).collect();
    let latency: Vec<(&Series<'_>, &[f64])> =
        series.iter().map(|s| (s, s.p99_ms.as_slice())).collect();
    panel(&mut svg, MARGIN_LEFT, "Throughput (requests/s)", connections, &throughput);
    let second = 2.0 * MARGIN_LEFT + PANEL_WIDTH + 20.0;
    panel(&mut svg, second, "p99 latency (ms)", connections, &latency);
    let legend_y = MARGIN_TOP + PANEL_HEIGHT + MARGIN_BOTTOM + 20.0;
    for (index, s) in series.iter().enumerate() {
        let x = MARGIN_LEFT + index as f64 * 160.0;
        let _ = writeln!(
            svg,
            r#"<line x1="{x}" y1="{legend_y}" x2="{}" y2="{legend_y}" stroke="{}" stroke-width="3"/><text x="{}" y="{}">{}</text>"#,
            x + 24.0,
            s.colour,
            x + 30.0,
            legend_y + 4.0,
            escape(s.name)
        );
    }
    svg.push_str("</svg>\n");
    svg
}

/// One panel: axes from 0 to a round maximum, the x axis labelled by connection count.
fn panel(
    svg: &mut String,
    left: f64,
    label: &str,
    connections: &[u32],
    lines: &[(&Series<'_>, &[f64])],
) {
    let top = MARGIN_TOP;
    let bottom = top + PANEL_HEIGHT;
    let highest = lines.iter().flat_map(|(_, values)| values.iter().copied()).fold(0.0, f64::max);
    let step = nice_step(highest / 5.0);
    let maximum = (highest / step).ceil().max(1.0) * step;
    let x = |index: usize| left + (index as f64 + 0.5) * PANEL_WIDTH / connections.len() as f64;
    let y = |value: f64| bottom - value / maximum * PANEL_HEIGHT;
    let _ = writeln!(
        svg,
        r#"<rect x="{left}" y="{top}" width="{PANEL_WIDTH}" height="{PANEL_HEIGHT}" fill="none" stroke="black"/>
<text x="{}" y="{}" text-anchor="middle" transform="rotate(-90 {} {})">{}</text>
<text x="{}" y="{}" text-anchor="middle">Concurrent connections</text>"#,
        left - 52.0,
        top + PANEL_HEIGHT / 2.0,
        left - 52.0,
        top + PANEL_HEIGHT / 2.0,
        escape(label),
        left + PANEL_WIDTH / 2.0,
        bottom + 38.0
    );
    let mut tick = 0.0;
    while tick <= maximum + step / 2.0 {
        let _ = writeln!(
            svg,
            r##"<line x1="{left}" y1="{0}" x2="{1}" y2="{0}" stroke="#ddd"/><text x="{2}" y="{3}" text-anchor="end">{4}</text>"##,
            y(tick),
            left + PANEL_WIDTH,
            left - 6.0,
            y(tick) + 4.0,
            format_number(tick)
        );
        tick += step;
    }
    for (index, count) in connections.iter().enumerate() {
        let _ = writeln!(
            svg,
            r#"<text x="{}" y="{}" text-anchor="middle">{count}</text>"#,
            x(index),
            bottom + 18.0
        );
    }
    for (series, values) in lines {
        let points: Vec<String> =
            values.iter().enumerate().map(|(i, v)| format!("{:.1},{:.1}", x(i), y(*v))).collect();
        let _ = writeln!(
            svg,
            r#"<polyline points="{}" fill="none" stroke="{}" stroke-width="2.5"/>"#,
            points.join(" "),
            series.colour
        );
        for (i, v) in values.iter().enumerate() {
            let _ = writeln!(
                svg,
                r#"<circle cx="{:.1}" cy="{:.1}" r="4" fill="{}"/>"#,
                x(i),
                y(*v),
                series.colour
            );
        }
    }
}

/// A round tick step (1, 2 or 5 times a power of ten) near `rough`.
fn nice_step(rough: f64) -> f64 {
    if rough.is_nan() || rough <= 0.0 {
        return 1.0;
    }
    let power = 10f64.powf(rough.log10().floor());
    let multiple = [1.0, 2.0, 5.0, 10.0].into_iter().find(|m| m * power >= rough).unwrap_or(10.0);
    multiple * power
}

/// A tick label: tens of thousands as `20k`, small numbers with at most one decimal.
fn format_number(value: f64) -> String {
    if value >= 10_000.0 {
        format!("{}k", value / 1000.0)
    } else if value.fract() == 0.0 {
        format!("{value}")
    } else {
        format!("{value:.1}")
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_round_and_cover_the_data() {
        assert_eq!(nice_step(4_300.0), 5_000.0);
        assert_eq!(nice_step(0.9), 1.0);
        assert_eq!(nice_step(0.0), 1.0);
        assert_eq!(format_number(25_000.0), "25k");
        let series = [Series {
            name: "a<b",
            colour: "red",
            throughput: vec![1.0, 2.0],
            p99_ms: vec![3.0, 4.0],
        }];
        let svg = render("t", &[8, 64], &series);
        assert!(svg.contains("a&lt;b") && svg.contains("Concurrent connections"));
        assert_eq!(svg.matches("<polyline").count(), 2, "one line per panel");
    }
}
