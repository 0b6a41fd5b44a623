//! The plot: one horizontal bar per measured ratio (its median, with a whisker from
//! the smallest to the largest run), the floor at 1×, and the goal where there is
//! one. Written by hand: a few dozen SVG elements need no plotting library.

use std::fmt::Write;

use crate::goals::{Goal, Measure};
use crate::results::Results;
use crate::stats::Spread;

const WIDTH: f64 = 960.0;
const LABEL_WIDTH: f64 = 300.0;
const ROW: f64 = 24.0;
const TOP: f64 = 64.0;
const BOTTOM: f64 = 48.0;

/// One bar: its label, its ratio, and the goal line drawn on it, if any.
struct Bar {
    label: String,
    ratio: Spread,
    goal: Option<(f64, bool)>,
}

/// `text` safe inside an SVG element or attribute.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// The goal on a pair's own p50 ratio, if it has one: (limit, met).
fn direct_goal(goals: &[Goal], label_scenario: crate::config::Scenario, clients: usize) -> Option<(f64, bool)> {
    goals
        .iter()
        .find(|g| g.scenario == label_scenario && g.clients == clients && g.measure == Measure::P50Ratio)
        .map(|g| (g.limit, g.met))
}

fn bars(results: &Results) -> Vec<Bar> {
    let mut bars = Vec::new();
    for p in &results.pairs {
        if let Some(ratio) = p.latency_ratio {
            bars.push(Bar {
                label: format!(
                    "{} vs {}, {} client{} (p50)",
                    p.scenario,
                    p.floor,
                    p.clients,
                    if p.clients == 1 { "" } else { "s" }
                ),
                ratio,
                goal: direct_goal(&results.goals, p.scenario, p.clients),
            });
        }
    }
    for w in &results.sweeps {
        if let Some(ratio) = w.time_ratio {
            bars.push(Bar { label: format!("cleaner vs list+scan, {} blobs (time)", w.blobs), ratio, goal: None });
        }
    }
    if let Some(r) = &results.read_memory
        && let Some(ratio) = r.product_per_image
    {
        let label = format!("profile GET held, memory ÷ image ({} reads)", r.reads);
        let limit = crate::goals::MEMORY_PER_READ_LIMIT;
        bars.push(Bar { label, ratio, goal: Some((limit, ratio.median <= limit)) });
    }
    for l in &results.listings {
        if let Some(ratio) = l.rate_ratio {
            let label = format!("S3 listing at {} vs 1, {} keys (keys/s)", l.concurrency, l.keys);
            bars.push(Bar { label, ratio, goal: Some((2.0, ratio.median >= 2.0)) });
        }
    }
    bars
}

/// The plot of `results` as an SVG document.
pub fn plot(results: &Results) -> String {
    let bars = bars(results);
    let height = TOP + BOTTOM + ROW * bars.len().max(1) as f64;
    let top_value = bars.iter().flat_map(|b| [b.ratio.max, b.goal.map_or(0.0, |g| g.0)]).fold(2.0_f64, f64::max).ceil();
    let chart = WIDTH - LABEL_WIDTH - 40.0;
    let x = |v: f64| LABEL_WIDTH + chart * (v / top_value).clamp(0.0, 1.0);
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="{WIDTH}" height="{height}" fill="white"/>"#);
    let m = &results.machine;
    let title = format!(
        "profilestore bench: product ÷ floor, median of {} interleaved runs of {:.0} s (whisker: min–max)",
        results.settings.runs, results.settings.run_time_s
    );
    let _ = writeln!(s, r#"<text x="12" y="22" font-size="15" font-weight="bold">{}</text>"#, escape(&title));
    let machine = format!("{} cores, {}; lower is better; red tick: goal", m.cores, m.cpu);
    let _ = writeln!(s, r##"<text x="12" y="42" fill="#555">{}</text>"##, escape(&machine));
    let bottom = TOP + ROW * bars.len() as f64;
    for tick in 0..=(top_value as u32) {
        let tx = x(f64::from(tick));
        let _ = writeln!(s, r##"<line x1="{tx:.1}" y1="{TOP}" x2="{tx:.1}" y2="{bottom}" stroke="#ddd"/>"##);
        let _ = writeln!(s, r#"<text x="{tx:.1}" y="{:.1}" text-anchor="middle">{tick}×</text>"#, bottom + 16.0);
    }
    for (i, bar) in bars.iter().enumerate() {
        let y = TOP + ROW * i as f64;
        let missed = bar.goal.is_some_and(|(_, met)| !met);
        let fill = if missed { "#e8833a" } else { "#4a7ebb" };
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"#,
            LABEL_WIDTH - 8.0,
            y + ROW * 0.65,
            escape(&bar.label)
        );
        let _ = writeln!(
            s,
            r#"<rect x="{LABEL_WIDTH}" y="{:.1}" width="{:.1}" height="{:.1}" fill="{fill}"><title>{}</title></rect>"#,
            y + 4.0,
            x(bar.ratio.median) - LABEL_WIDTH,
            ROW - 8.0,
            escape(&bar.ratio.to_string())
        );
        let mid = y + ROW / 2.0;
        let _ = writeln!(
            s,
            r##"<line x1="{:.1}" y1="{mid:.1}" x2="{:.1}" y2="{mid:.1}" stroke="#222"/>"##,
            x(bar.ratio.min),
            x(bar.ratio.max)
        );
        let _ = writeln!(
            s,
            r##"<text x="{:.1}" y="{:.1}" fill="#222">{:.2}×</text>"##,
            x(bar.ratio.max) + 6.0,
            y + ROW * 0.65,
            bar.ratio.median
        );
        if let Some((limit, _)) = bar.goal {
            let gx = x(limit);
            let _ = writeln!(
                s,
                r##"<line x1="{gx:.1}" y1="{:.1}" x2="{gx:.1}" y2="{:.1}" stroke="#c00" stroke-width="2"/>"##,
                y + 1.0,
                y + ROW - 1.0
            );
        }
    }
    let one = x(1.0);
    let _ = writeln!(
        s,
        r##"<line x1="{one:.1}" y1="{:.1}" x2="{one:.1}" y2="{bottom}" stroke="#000" stroke-dasharray="4 3"/>"##,
        TOP - 6.0
    );
    let _ = writeln!(s, r#"<text x="{one:.1}" y="{:.1}" text-anchor="middle">floor</text>"#, TOP - 10.0);
    s.push_str("</svg>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::escape;

    #[test]
    fn markup_characters_are_escaped() {
        assert_eq!(escape(r#"a<b & "c">"#), "a&lt;b &amp; &quot;c&quot;&gt;");
    }
}
