//! A small SVG line chart: throughput against thread count, log scale.

use std::fmt::Write as _;

/// One line of the chart.
pub(crate) struct Series {
    pub(crate) name: String,
    pub(crate) color: &'static str,
    /// (threads, items per second)
    pub(crate) points: Vec<(usize, f64)>,
}

pub(crate) fn svg(series: &[Series], machine: &str) -> String {
    let (w, h) = (720.0, 440.0);
    let (left, right, top, bottom) = (80.0, 200.0, 40.0, 60.0);
    let xs: Vec<usize> = {
        let mut v: Vec<usize> = series
            .iter()
            .flat_map(|s| s.points.iter().map(|p| p.0))
            .collect();
        v.sort_unstable();
        v.dedup();
        v
    };
    let ys = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.1))
        .filter(|y| *y > 0.0);
    let (mut lo, mut hi) = (f64::MAX, f64::MIN);
    for y in ys {
        lo = lo.min(y);
        hi = hi.max(y);
    }
    if lo > hi {
        (lo, hi) = (1.0, 10.0);
    }
    let (lo_exp, hi_exp) = (
        lo.log10().floor(),
        hi.log10().ceil().max(lo.log10().floor() + 1.0),
    );
    let plot_w = w - left - right;
    let plot_h = h - top - bottom;
    let x_at = |t: usize| {
        let i = xs.iter().position(|&x| x == t).unwrap_or(0) as f64;
        left + if xs.len() > 1 {
            i / (xs.len() - 1) as f64 * plot_w
        } else {
            plot_w / 2.0
        }
    };
    let y_at = |v: f64| top + plot_h - (v.max(1.0).log10() - lo_exp) / (hi_exp - lo_exp) * plot_h;
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="{w}" height="{h}" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{left}" y="22" font-size="14">Delivered items/s against producers (log scale), {}</text>"#,
        escape(machine)
    );
    let mut e = lo_exp;
    while e <= hi_exp {
        let y = y_at(10f64.powf(e));
        let _ = writeln!(
            s,
            r##"<line x1="{left}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#ddd"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
            left + plot_w,
            left - 6.0,
            y + 4.0,
            label(10f64.powf(e))
        );
        e += 1.0;
    }
    for &t in &xs {
        let x = x_at(t);
        let _ = writeln!(
            s,
            r##"<line x1="{x:.1}" y1="{top}" x2="{x:.1}" y2="{:.1}" stroke="#eee"/><text x="{x:.1}" y="{:.1}" text-anchor="middle">{t}</text>"##,
            top + plot_h,
            top + plot_h + 18.0
        );
    }
    let _ = writeln!(
        s,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">producers</text>"#,
        left + plot_w / 2.0,
        h - 18.0
    );
    for (i, series) in series.iter().enumerate() {
        let pts: Vec<String> = series
            .points
            .iter()
            .map(|&(t, v)| format!("{:.1},{:.1}", x_at(t), y_at(v)))
            .collect();
        let _ = writeln!(
            s,
            r#"<polyline fill="none" stroke="{}" stroke-width="2.5" points="{}"/>"#,
            series.color,
            pts.join(" ")
        );
        for &(t, v) in &series.points {
            let _ = writeln!(
                s,
                r#"<circle cx="{:.1}" cy="{:.1}" r="3.5" fill="{}"/>"#,
                x_at(t),
                y_at(v),
                series.color
            );
        }
        let ly = top + 20.0 + i as f64 * 22.0;
        let lx = left + plot_w + 16.0;
        let _ = writeln!(
            s,
            r#"<line x1="{lx:.1}" y1="{ly:.1}" x2="{:.1}" y2="{ly:.1}" stroke="{}" stroke-width="3"/><text x="{:.1}" y="{:.1}">{}</text>"#,
            lx + 24.0,
            series.color,
            lx + 30.0,
            ly + 4.0,
            escape(&series.name)
        );
    }
    s.push_str("</svg>\n");
    s
}

fn label(v: f64) -> String {
    if v >= 1e9 {
        format!("{:.0} G", v / 1e9)
    } else if v >= 1e6 {
        format!("{:.0} M", v / 1e6)
    } else if v >= 1e3 {
        format!("{:.0} k", v / 1e3)
    } else {
        format!("{v:.0}")
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}
