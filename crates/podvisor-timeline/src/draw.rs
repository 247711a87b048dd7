//! Drawing a [`Timeline`]: an SVG picture, and an HTML page around it with a legend.

use std::fmt::Write;

use crate::model::{Kind, MarkKind, State, Timeline};

const LEFT: f64 = 210.0;
const RIGHT: f64 = 40.0;
const WIDTH: f64 = 1200.0;
const ROW: f64 = 26.0;
const HEADER: f64 = 34.0;
const AXIS: f64 = 30.0;

/// Escapes text for XML content and attributes.
fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

fn bar_colour(s: State) -> &'static str {
    match s {
        State::Running => "#9ecae1",
        State::Started => "#3182bd",
        State::Terminating => "#fd8d3c",
    }
}

fn kind_colour(k: Kind) -> &'static str {
    match k {
        Kind::Init => "#636363",
        Kind::Sidecar => "#756bb1",
        Kind::App => "#08519c",
    }
}

fn phase_colour(p: &str) -> &'static str {
    match p {
        "Pending" => "#fee391",
        "Running" => "#c6dbef",
        "Succeeded" => "#a1d99b",
        "Failed" => "#fc9272",
        _ => "#d9d9d9",
    }
}

/// A tick step that gives about eight ticks over `end` seconds.
fn step(end: f64) -> f64 {
    let raw = end / 8.0;
    let mag = 10f64.powf(raw.max(1e-3).log10().floor());
    [1.0, 2.0, 5.0, 10.0].iter().map(|m| m * mag).find(|s| *s >= raw).unwrap_or(10.0 * mag)
}

/// The timeline as a self-contained SVG picture.
pub fn svg(t: &Timeline) -> String {
    let end = t.end().max(1.0) * 1.02;
    let plot = WIDTH - LEFT - RIGHT;
    let x = |s: f64| LEFT + (s.max(0.0) / end) * plot;
    let rows: usize = t.pods.iter().map(|p| p.rows.len()).sum();
    let height = 40.0 + t.pods.len() as f64 * (HEADER + 8.0) + rows as f64 * ROW + AXIS;
    let mut o = String::new();
    let _ = write!(
        o,
        r#"<svg xmlns="http://www.w3.org/2000/svg" class="podvisor-timeline" width="{WIDTH}" height="{height:.0}" viewBox="0 0 {WIDTH} {height:.0}" font-family="sans-serif" font-size="12">"#
    );
    let _ = write!(o, r#"<rect width="{WIDTH}" height="{height:.0}" fill="white"/>"#);
    let _ = write!(o, r#"<text x="10" y="22" font-size="15" font-weight="bold">{}</text>"#, esc(&t.title));
    let mut y = 40.0;
    for pod in &t.pods {
        let _ = write!(o, r#"<g class="pod" data-pod="{}">"#, esc(&pod.name));
        let _ = write!(o, r#"<text x="10" y="{:.1}" font-weight="bold">pod/{}</text>"#, y + 14.0, esc(&pod.name));
        // The phase band.
        for (i, (at, phase)) in pod.phases.iter().enumerate() {
            let to = pod.phases.get(i + 1).map(|(t, _)| *t).unwrap_or(pod.end);
            let (x0, x1) = (x(*at), x(to).max(x(*at) + 1.0));
            let _ = write!(
                o,
                r#"<g class="phase"><title>phase {} from {at:.3} s to {to:.3} s</title><rect x="{x0:.1}" y="{:.1}" width="{:.1}" height="14" fill="{}"/>"#,
                esc(phase),
                y + 3.0,
                x1 - x0,
                phase_colour(phase)
            );
            if x1 - x0 > 8.0 * phase.len() as f64 {
                let _ =
                    write!(o, r#"<text x="{:.1}" y="{:.1}" font-size="11">{}</text>"#, x0 + 4.0, y + 14.0, esc(phase));
            }
            o.push_str("</g>");
        }
        for m in &pod.marks {
            let mx = x(m.at);
            let colour = if m.kind == MarkKind::Warning { "#d94801" } else { "#969696" };
            let _ = write!(
                o,
                r#"<g class="mark pod-event"><title>{}</title><line x1="{mx:.1}" y1="{:.1}" x2="{mx:.1}" y2="{:.1}" stroke="{colour}" stroke-width="2"/></g>"#,
                esc(&m.text),
                y + 1.0,
                y + 19.0
            );
        }
        let top = y + HEADER;
        let bottom = top + pod.rows.len() as f64 * ROW;
        if let Some((from, grace)) = pod.grace {
            let to = grace.map(|g| (from + g).min(pod.end.max(from))).unwrap_or(pod.end);
            let label = match grace {
                Some(g) => format!("grace period ({g:.0} s) from the first SIGTERM at {from:.3} s"),
                None => format!("stopping from {from:.3} s"),
            };
            let _ = write!(
                o,
                r##"<g class="grace"><title>{}</title><rect x="{:.1}" y="{:.1}" width="{:.1}" height="{:.1}" fill="#fd8d3c" fill-opacity="0.10" stroke="#fd8d3c" stroke-dasharray="4 3"/></g>"##,
                esc(&label),
                x(from),
                top - 4.0,
                (x(to) - x(from)).max(1.0),
                bottom - top + 4.0
            );
        }
        for (i, row) in pod.rows.iter().enumerate() {
            let ry = top + i as f64 * ROW;
            let mid = ry + ROW / 2.0;
            let _ =
                write!(o, r#"<g class="row" data-container="{}" data-kind="{}">"#, esc(&row.name), row.kind.label());
            let _ = write!(
                o,
                r##"<line x1="{LEFT}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="#f0f0f0"/>"##,
                ry + ROW,
                WIDTH - RIGHT,
                ry + ROW
            );
            let restarts = if row.restarts > 0 { format!(" ↻{}", row.restarts) } else { String::new() };
            let _ = write!(
                o,
                r#"<text x="20" y="{:.1}">{}<tspan fill="{}" font-size="10"> {}{}</tspan></text>"#,
                mid + 4.0,
                esc(&row.name),
                kind_colour(row.kind),
                row.kind.label(),
                esc(&restarts)
            );
            for b in &row.bars {
                let to = b.to.unwrap_or(pod.end);
                let (x0, x1) = (x(b.from), x(to).max(x(b.from) + 1.5));
                let state = match b.state {
                    State::Running => "running",
                    State::Started => "started",
                    State::Terminating => "terminating",
                };
                let _ = write!(
                    o,
                    r#"<g class="bar {state}"><title>{}: {state} from {:.3} s to {to:.3} s</title><rect x="{x0:.1}" y="{:.1}" width="{:.1}" height="12" rx="2" fill="{}"/></g>"#,
                    esc(&row.name),
                    b.from,
                    mid - 6.0,
                    x1 - x0,
                    bar_colour(b.state)
                );
            }
            for m in &row.marks {
                let mx = x(m.at);
                let title = esc(&m.text);
                let shape = match &m.kind {
                    MarkKind::ProbeOk => {
                        format!(r##"<circle cx="{mx:.1}" cy="{:.1}" r="3" fill="#31a354"/>"##, mid - 9.0)
                    }
                    MarkKind::ProbeFailed => {
                        format!(r##"<circle cx="{mx:.1}" cy="{:.1}" r="3" fill="#de2d26"/>"##, mid - 9.0)
                    }
                    MarkKind::Hook => {
                        format!(r##"<path d="M{mx:.1} {:.1} l4 4 l-4 4 l-4 -4 z" fill="#756bb1"/>"##, mid - 13.0)
                    }
                    MarkKind::Sigterm => {
                        format!(r##"<path d="M{:.1} {:.1} h10 l-5 7 z" fill="#e6550d"/>"##, mx - 5.0, mid - 13.0)
                    }
                    MarkKind::Sigkill => format!(
                        r##"<path d="M{:.1} {:.1} l10 10 M{:.1} {:.1} l-10 10" stroke="#a50f15" stroke-width="2.5"/>"##,
                        mx - 5.0,
                        mid - 5.0,
                        mx + 5.0,
                        mid - 5.0
                    ),
                    MarkKind::Exit(code) => {
                        let colour = if *code == 0 { "#006d2c" } else { "#a50f15" };
                        format!(
                            r##"<line x1="{mx:.1}" y1="{:.1}" x2="{mx:.1}" y2="{:.1}" stroke="{colour}" stroke-width="2"/><text x="{:.1}" y="{:.1}" font-size="10" fill="{colour}">{code}</text>"##,
                            mid - 7.0,
                            mid + 7.0,
                            mx + 3.0,
                            mid + 4.0
                        )
                    }
                    MarkKind::Event => format!(
                        r##"<line x1="{mx:.1}" y1="{:.1}" x2="{mx:.1}" y2="{:.1}" stroke="#969696"/>"##,
                        mid + 7.0,
                        mid + 11.0
                    ),
                    MarkKind::Warning => {
                        format!(r##"<path d="M{:.1} {:.1} h8 l-4 -7 z" fill="#d94801"/>"##, mx - 4.0, mid + 12.0)
                    }
                };
                let class = match m.kind {
                    MarkKind::ProbeOk | MarkKind::ProbeFailed => "probe",
                    MarkKind::Hook => "hook",
                    MarkKind::Sigterm => "sigterm",
                    MarkKind::Sigkill => "sigkill",
                    MarkKind::Exit(_) => "exit",
                    MarkKind::Event => "event",
                    MarkKind::Warning => "warning",
                };
                let _ = write!(o, r#"<g class="mark {class}"><title>{title}</title>{shape}</g>"#);
            }
            o.push_str("</g>");
        }
        o.push_str("</g>");
        y = bottom + 8.0;
    }
    // The time axis.
    let s = step(end);
    let _ = write!(o, r##"<line x1="{LEFT}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#525252"/>"##, WIDTH - RIGHT);
    let mut tick = 0.0;
    while tick <= end {
        let tx = x(tick);
        let label = if s < 1.0 { format!("{tick:.1} s") } else { format!("{tick:.0} s") };
        let _ = write!(
            o,
            r##"<line x1="{tx:.1}" y1="{y:.1}" x2="{tx:.1}" y2="{:.1}" stroke="#525252"/><text x="{tx:.1}" y="{:.1}" text-anchor="middle" font-size="10">{label}</text>"##,
            y + 5.0,
            y + 17.0
        );
        tick += s;
    }
    o.push_str("</svg>\n");
    o
}

/// The timeline as a self-contained HTML page: the picture, and a legend of its marks.
pub fn html(t: &Timeline) -> String {
    let legend = [
        ("#9ecae1", "running"),
        ("#3182bd", "started (what comes after it may start)"),
        ("#fd8d3c", "terminating (SIGTERM sent)"),
        ("#31a354", "probe passed"),
        ("#de2d26", "probe failed"),
        ("#756bb1", "hook"),
        ("#e6550d", "SIGTERM"),
        ("#a50f15", "SIGKILL / non-zero exit"),
        ("#006d2c", "exit 0"),
    ];
    let items: String = legend
        .iter()
        .map(|(c, what)| {
            format!(r#"<span class="item"><span class="swatch" style="background:{c}"></span>{what}</span>"#)
        })
        .collect();
    format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title} — podvisor timeline</title>
<style>
body {{ font-family: sans-serif; margin: 16px; color: #252525; }}
.legend {{ margin: 8px 0 16px; font-size: 12px; }}
.item {{ margin-right: 14px; white-space: nowrap; }}
.swatch {{ display: inline-block; width: 12px; height: 12px; margin-right: 4px; vertical-align: -2px; border-radius: 2px; }}
svg .mark:hover, svg .bar:hover {{ opacity: 0.7; }}
</style></head>
<body>
<div class="legend">{items} <span class="item">dashed box: the grace period</span> <span class="item">hover for details</span></div>
{svg}</body></html>
"#,
        title = esc(&t.title),
        svg = svg(t)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Recorder;

    #[test]
    fn steps_are_round() {
        assert_eq!(step(35.0), 5.0);
        assert_eq!(step(1.0), 0.2);
        assert_eq!(step(600.0), 100.0);
    }

    #[test]
    fn text_is_escaped() {
        let mut r = Recorder::new("a<b>&\"c\"");
        r.event("p", Some("c"), 1.0, "x < y", false);
        let s = svg(&r.finish());
        assert!(s.contains("a&lt;b&gt;&amp;&quot;c&quot;") && s.contains("x &lt; y"));
        assert!(!s.contains("x < y"));
    }
}
