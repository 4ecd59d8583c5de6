//! The TCO report as text tables and as a hand-written SVG chart (cost against volume, break-even
//! points marked).

use std::fmt::Write;

use rust_decimal::prelude::ToPrimitive;
use rust_decimal::Decimal;

use super::config::Scale;
use super::plan::{api_monthly, Kind, StepModel, TcoReport};

fn volume(v: Decimal) -> String {
    group(&v.round_dp(1).normalize().to_string())
}

/// `1234567.5` → `1,234,567.5`.
fn group(s: &str) -> String {
    let (int, frac) = s.split_once('.').map_or((s, None), |(i, f)| (i, Some(f)));
    let (sign, digits) = int.strip_prefix('-').map_or(("", int), |d| ("-", d));
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    match frac {
        Some(f) => format!("{sign}{out}.{f}"),
        None => format!("{sign}{out}"),
    }
}

fn usd(v: impl std::fmt::Display) -> String {
    format!("${}", group(&v.to_string()))
}

/// Plain-text report.
pub fn render_text(r: &TcoReport) -> String {
    let c = &r.config;
    let t = &c.traffic;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "Traffic: {} requests/day, {} input + {} output tokens per request, peak {}x average, growth {}/month; horizon {} months.",
        volume(t.requests_per_day),
        t.input_tokens_per_request.normalize(),
        t.output_tokens_per_request.normalize(),
        t.peak_to_average.normalize(),
        t.monthly_growth.normalize(),
        c.horizon_months
    );
    let _ = writeln!(s, "\nAt today's volume:");
    let _ = writeln!(
        s,
        "  {:<28} {:>14} {:>12} {:>16} {:>9}",
        "option", "per month", "per 1M tok", "horizon total", "replicas"
    );
    for o in &r.options {
        let _ = writeln!(
            s,
            "  {:<28} {:>14} {:>12} {:>16} {:>9}",
            o.name,
            usd(o.monthly_usd),
            usd(o.usd_per_million_tokens),
            usd(o.horizon_total_usd),
            o.replicas.map_or("-".to_string(), |r| r.to_string())
        );
    }

    let _ = writeln!(s, "\nMonthly cost by volume (requests/day):");
    let mut head = format!("  {:>14}", "requests/day");
    for o in &r.options {
        let _ = write!(head, " {:>22}", truncate(&o.name, 22));
    }
    let _ = writeln!(s, "{head}");
    for p in &r.volumes {
        let mut line = format!("  {:>14}", volume(p.requests_per_day));
        for oc in &p.costs {
            let cell = match oc.replicas {
                Some(n) => format!("{} ({n}r)", usd(oc.monthly_usd)),
                None => usd(oc.monthly_usd),
            };
            let _ = write!(line, " {cell:>22}");
        }
        let _ = writeln!(s, "{line}");
    }

    let _ = writeln!(s, "\nCumulative cost over the horizon:");
    for m in r.horizon.iter().filter(|m| m.month == 1 || m.month % 6 == 0 || m.month == c.horizon_months) {
        let mut line = format!("  month {:>3} ({:>12} req/day)", m.month, volume(m.requests_per_day));
        for mc in &m.costs {
            let _ = write!(line, "  {}: {}", mc.option, usd(mc.cumulative_usd));
        }
        let _ = writeln!(s, "{line}");
    }

    let _ = writeln!(s, "\nBreak-even:");
    for b in &r.break_even {
        let range =
            format!("{}–{} requests/day", volume(c.range.min_requests_per_day), volume(c.range.max_requests_per_day));
        let line = match (b.requests_per_day, b.cheaper_at_min) {
            (Some(v), _) => {
                let tail = if b.cheaper_at_max == Kind::SelfHosted {
                    ""
                } else {
                    " (the API is cheaper again at the top of the range)"
                };
                format!("{} requests/day: {} cheaper above, {} below{tail}", volume(v), b.self_hosted, b.api)
            }
            (None, Kind::SelfHosted) => {
                format!("none in range: {} is cheaper from the start of {range}", b.self_hosted)
            }
            (None, Kind::Api) => format!("none in range: {} is cheaper across {range}", b.api),
        };
        let _ = writeln!(s, "  {} vs {}: {line}", b.api, b.self_hosted);
        if b.truncated {
            let _ = writeln!(s, "    (scan stopped after many replica steps; later crossings not listed)");
        }
    }

    if !r.sensitivity.is_empty() {
        let _ = writeln!(
            s,
            "\nSensitivity (±{} %), self-hosted minus API per month at today's volume, and break-even:",
            (c.sensitivity_delta * Decimal::from(100)).normalize()
        );
        for row in &r.sensitivity {
            let be = |v: Option<Decimal>| v.map_or("none".to_string(), volume);
            let _ = writeln!(
                s,
                "  {:<44} low {:>12} high {:>12}   break-even {} / {}",
                truncate(&row.input, 44),
                usd(row.difference_low_usd),
                usd(row.difference_high_usd),
                be(row.break_even_low),
                be(row.break_even_high)
            );
        }
    }
    let _ = writeln!(s, "\nAssumptions:");
    for a in &r.assumptions {
        let _ = writeln!(s, "  - {a}");
    }
    s
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(n.saturating_sub(1)).collect();
        t.push('…');
        t
    }
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

const COLOURS: [&str; 6] = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf"];

/// SVG chart: monthly cost (y) against requests per day (x, log or linear as configured), one
/// line per option, break-even points circled.
pub fn render_svg(r: &TcoReport) -> String {
    let c = &r.config;
    let (w, h, left, right, top, bottom) = (880.0, 520.0, 90.0, 220.0, 40.0, 60.0);
    let (pw, ph) = (w - left - right, h - top - bottom);
    let lo = c.range.min_requests_per_day.to_f64().unwrap_or(1.0);
    let hi = c.range.max_requests_per_day.to_f64().unwrap_or(2.0);
    let log = c.range.scale == Scale::Log;
    let x_of = |v: f64| {
        let f = if log { (v.ln() - lo.ln()) / (hi.ln() - lo.ln()) } else { (v - lo) / (hi - lo) };
        left + f * pw
    };
    // Sample each curve at 400 x positions; exact costs at each.
    let n = 400;
    let xs: Vec<Decimal> = (0..=n)
        .map(|i| {
            let f = f64::from(i) / f64::from(n);
            let v = if log { lo * (hi / lo).powf(f) } else { lo + (hi - lo) * f };
            Decimal::from_f64_retain(v).unwrap_or(c.range.min_requests_per_day)
        })
        .collect();
    let mut curves: Vec<(String, Vec<f64>)> = Vec::new();
    for a in &c.api {
        curves.push((
            a.name.clone(),
            xs.iter().map(|v| api_monthly(a, &c.traffic, *v).to_f64().unwrap_or(0.0)).collect(),
        ));
    }
    for sh in &c.self_hosted {
        let m = StepModel::new(sh, &c.traffic);
        curves.push((sh.name.clone(), xs.iter().map(|v| m.monthly(*v).to_f64().unwrap_or(0.0)).collect()));
    }
    let ymax = curves.iter().flat_map(|(_, ys)| ys.iter().copied()).fold(1.0_f64, f64::max) * 1.05;
    let y_of = |v: f64| top + ph - (v / ymax).clamp(0.0, 1.0) * ph;

    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="{w}" height="{h}" fill="white"/>"#);
    let _ = writeln!(s, r#"<text x="{left}" y="24" font-size="15">Monthly cost by volume</text>"#);
    let _ = writeln!(s, r##"<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="none" stroke="#999"/>"##);
    for i in 0..=4 {
        let v = ymax * f64::from(i) / 4.0;
        let y = y_of(v);
        let _ = writeln!(
            s,
            r##"<line x1="{left}" x2="{}" y1="{y:.1}" y2="{y:.1}" stroke="#eee"/><text x="{}" y="{:.1}" text-anchor="end">${}</text>"##,
            left + pw,
            left - 6.0,
            y + 4.0,
            group(&format!("{v:.0}"))
        );
    }
    let ticks: Vec<f64> = if log {
        let mut t = Vec::new();
        let mut p = 10f64.powf(lo.log10().floor());
        while p <= hi * 1.0001 {
            if p >= lo * 0.9999 {
                t.push(p);
            }
            p *= 10.0;
        }
        t
    } else {
        (0..=4).map(|i| lo + (hi - lo) * f64::from(i) / 4.0).collect()
    };
    for v in ticks {
        let x = x_of(v);
        let _ = writeln!(
            s,
            r##"<line x1="{x:.1}" x2="{x:.1}" y1="{top}" y2="{}" stroke="#eee"/><text x="{x:.1}" y="{}" text-anchor="middle">{}</text>"##,
            top + ph,
            top + ph + 16.0,
            group(&format!("{v:.0}"))
        );
    }
    let _ = writeln!(
        s,
        r#"<text x="{}" y="{}" text-anchor="middle">requests per day{}</text>"#,
        left + pw / 2.0,
        h - 16.0,
        if log { " (log scale)" } else { "" }
    );
    for (i, (name, ys)) in curves.iter().enumerate() {
        let colour = COLOURS[i % COLOURS.len()];
        let points: Vec<String> =
            xs.iter().zip(ys).map(|(v, y)| format!("{:.1},{:.1}", x_of(v.to_f64().unwrap_or(lo)), y_of(*y))).collect();
        let _ =
            writeln!(s, r#"<polyline fill="none" stroke="{colour}" stroke-width="2" points="{}"/>"#, points.join(" "));
        let ly = top + 16.0 + 18.0 * i as f64;
        let _ = writeln!(
            s,
            r#"<line x1="{}" x2="{}" y1="{ly}" y2="{ly}" stroke="{colour}" stroke-width="3"/><text x="{}" y="{}">{}</text>"#,
            left + pw + 12.0,
            left + pw + 32.0,
            left + pw + 38.0,
            ly + 4.0,
            esc(name)
        );
    }
    for b in &r.break_even {
        if let Some(v) = b.requests_per_day {
            let api = c.api.iter().find(|a| a.name == b.api);
            let cost = api.map(|a| api_monthly(a, &c.traffic, v)).and_then(|d| d.to_f64()).unwrap_or(0.0);
            let (x, y) = (x_of(v.to_f64().unwrap_or(lo)), y_of(cost));
            let _ = writeln!(
                s,
                r#"<circle class="break-even" cx="{x:.1}" cy="{y:.1}" r="6" fill="none" stroke="black" stroke-width="2"/>"#
            );
            let _ =
                writeln!(s, r#"<text x="{:.1}" y="{:.1}">break-even {} req/day</text>"#, x + 8.0, y - 8.0, volume(v));
        }
    }
    s.push_str("</svg>\n");
    s
}
