//! Small SVG charts, for distributions people would rather see than read: a histogram (erase
//! counts) and latency CDFs (`bench gc`).

use std::fmt::Write;

const WIDTH: f64 = 720.0;
const HEIGHT: f64 = 360.0;
const MARGIN: f64 = 50.0;
const BINS_MAX: u32 = 60;

/// Renders `values` as a histogram with integer-wide (or wider) bins, marking mean and max.
pub fn histogram(title: &str, values: &[u32]) -> String {
    let min = values.iter().copied().min().unwrap_or(0);
    let max = values.iter().copied().max().unwrap_or(0);
    let span = max - min + 1;
    let bin_width = span.div_ceil(BINS_MAX).max(1);
    let bins = span.div_ceil(bin_width);
    let mut counts = vec![0u64; bins as usize];
    for &v in values {
        counts[((v - min) / bin_width) as usize] += 1;
    }
    let peak = counts.iter().copied().max().unwrap_or(1).max(1) as f64;
    let mean = values.iter().map(|&v| f64::from(v)).sum::<f64>() / values.len().max(1) as f64;
    let plot_w = WIDTH - 2.0 * MARGIN;
    let plot_h = HEIGHT - 2.0 * MARGIN;
    let bar_w = plot_w / f64::from(bins);
    let x_of = |v: f64| MARGIN + (v - f64::from(min)) / f64::from(bins * bin_width) * plot_w;

    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(svg, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        svg,
        r#"<text x="{MARGIN}" y="24" font-size="14">{}</text>"#,
        escape(title)
    );
    for (i, &c) in counts.iter().enumerate() {
        let h = c as f64 / peak * plot_h;
        let x = MARGIN + i as f64 * bar_w;
        let lo = min + i as u32 * bin_width;
        let _ = writeln!(
            svg,
            r#"<rect class="bar" x="{x:.1}" y="{:.1}" width="{:.1}" height="{h:.1}" fill="steelblue"><title>{lo}..{}: {c} blocks</title></rect>"#,
            HEIGHT - MARGIN - h,
            (bar_w - 1.0).max(0.5),
            lo + bin_width - 1,
        );
    }
    let base = HEIGHT - MARGIN;
    let _ = writeln!(
        svg,
        r#"<line x1="{MARGIN}" y1="{base}" x2="{}" y2="{base}" stroke="black"/>"#,
        WIDTH - MARGIN
    );
    // The max line stands at the right edge of the highest bar; its label gives the value.
    for (label, value, at, color) in [
        ("mean", mean, mean, "darkorange"),
        ("max", f64::from(max), f64::from(max) + 0.5, "crimson"),
    ] {
        let x = x_of(at);
        let _ = writeln!(
            svg,
            r#"<line x1="{x:.1}" y1="{MARGIN}" x2="{x:.1}" y2="{base}" stroke="{color}" stroke-dasharray="4 3"/><text x="{x:.1}" y="{}" fill="{color}">{label} {value:.1}</text>"#,
            MARGIN - 6.0,
        );
    }
    let _ = writeln!(
        svg,
        r#"<text x="{}" y="{}" text-anchor="end">{peak}</text>"#,
        MARGIN - 4.0,
        MARGIN + 4.0
    );
    let _ = writeln!(
        svg,
        r#"<text x="{}" y="{}" text-anchor="end">0</text>"#,
        MARGIN - 4.0,
        base
    );
    let _ = writeln!(
        svg,
        r#"<text x="{MARGIN}" y="{}">erase count {min}</text>"#,
        base + 18.0
    );
    let _ = writeln!(
        svg,
        r#"<text x="{}" y="{}" text-anchor="end">{max}</text>"#,
        WIDTH - MARGIN,
        base + 18.0
    );
    let _ = writeln!(
        svg,
        r#"<text x="{}" y="{}" text-anchor="middle">{} blocks; max/mean {:.3}</text>"#,
        WIDTH / 2.0,
        base + 36.0,
        values.len(),
        if mean > 0.0 {
            f64::from(max) / mean
        } else {
            0.0
        }
    );
    svg.push_str("</svg>\n");
    svg
}

/// The CDF y axis in nines: 0 is the median's neighbourhood (p0), 1 is p90, 2 p99, ... 5 p99.999.
const NINES_MAX: f64 = 5.0;
const CDF_POINTS: u32 = 500;
const CDF_COLORS: [&str; 4] = ["steelblue", "crimson", "seagreen", "darkorange"];

/// Renders the CDF of each series of sorted latencies (ns) with a log latency axis (us) and a
/// percentile axis in nines, so the tails that differ stand apart.
pub fn latency_cdf(title: &str, series: &[(String, Vec<u64>)]) -> String {
    cdf_chart(title, series, Some("reads"))
}

/// As [`latency_cdf`], with the legend giving each series' name only (for series that are a
/// sample of the latencies, whose length is not a request count). Past four series the colors
/// repeat dashed.
pub fn latency_cdf_named(title: &str, series: &[(String, Vec<u64>)]) -> String {
    cdf_chart(title, series, None)
}

fn cdf_chart(title: &str, series: &[(String, Vec<u64>)], count_word: Option<&str>) -> String {
    let us = |ns: u64| (ns as f64 / 1_000.0).max(1.0);
    let lo = series
        .iter()
        .filter_map(|(_, v)| v.first().copied())
        .map(us)
        .fold(f64::INFINITY, f64::min);
    let hi = series
        .iter()
        .filter_map(|(_, v)| v.last().copied())
        .map(us)
        .fold(1.0, f64::max);
    let decade_lo = if lo.is_finite() {
        lo.log10().floor()
    } else {
        0.0
    };
    let decade_hi = hi.log10().ceil().max(decade_lo + 1.0);
    let plot_w = WIDTH - 2.0 * MARGIN;
    let plot_h = HEIGHT - 2.0 * MARGIN;
    let x_of = |v_us: f64| MARGIN + (v_us.log10() - decade_lo) / (decade_hi - decade_lo) * plot_w;
    let y_of = |nines: f64| HEIGHT - MARGIN - nines / NINES_MAX * plot_h;
    let base = HEIGHT - MARGIN;

    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(svg, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        svg,
        r#"<text x="{MARGIN}" y="24" font-size="14">{}</text>"#,
        escape(title)
    );
    for (nines, label) in [
        (0.0, "p0"),
        (1.0, "p90"),
        (2.0, "p99"),
        (3.0, "p99.9"),
        (4.0, "p99.99"),
        (5.0, "p99.999"),
    ] {
        let y = y_of(nines);
        let _ = writeln!(
            svg,
            r##"<line x1="{MARGIN}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#ddd"/><text x="{:.1}" y="{:.1}" text-anchor="end">{label}</text>"##,
            WIDTH - MARGIN,
            MARGIN - 4.0,
            y + 4.0
        );
    }
    let mut decade = decade_lo;
    while decade <= decade_hi {
        let x = x_of(10f64.powf(decade));
        let _ = writeln!(
            svg,
            r##"<line x1="{x:.1}" y1="{MARGIN}" x2="{x:.1}" y2="{base}" stroke="#ddd"/><text x="{x:.1}" y="{:.1}" text-anchor="middle">{} us</text>"##,
            base + 16.0,
            10f64.powf(decade)
        );
        decade += 1.0;
    }
    for (index, (name, sorted)) in series.iter().enumerate() {
        let color = CDF_COLORS[index % CDF_COLORS.len()];
        let dash = if index >= CDF_COLORS.len() {
            r#" stroke-dasharray="6 3""#
        } else {
            ""
        };
        let n = sorted.len();
        let mut points = String::new();
        for k in 0..=CDF_POINTS {
            let nines = f64::from(k) / f64::from(CDF_POINTS) * NINES_MAX;
            let p = 1.0 - 10f64.powf(-nines);
            if n == 0 || p > 1.0 - 1.0 / n as f64 {
                break;
            }
            let rank = ((p * n as f64).ceil() as usize).clamp(1, n);
            let _ = write!(
                points,
                "{:.1},{:.1} ",
                x_of(us(sorted[rank - 1])),
                y_of(nines)
            );
        }
        let _ = writeln!(
            svg,
            r#"<polyline class="cdf" fill="none" stroke="{color}"{dash} stroke-width="2" points="{}"><title>{}</title></polyline>"#,
            points.trim_end(),
            escape(name)
        );
        let _ = writeln!(
            svg,
            r#"<text x="{:.1}" y="{:.1}" fill="{color}">{}{}</text>"#,
            MARGIN + 10.0,
            MARGIN + 16.0 + 16.0 * index as f64,
            escape(name),
            count_word.map_or(String::new(), |w| format!(" ({n} {w})"))
        );
    }
    let _ = writeln!(
        svg,
        r#"<line x1="{MARGIN}" y1="{base}" x2="{}" y2="{base}" stroke="black"/>"#,
        WIDTH - MARGIN
    );
    svg.push_str("</svg>\n");
    svg
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_bar_per_bin_and_counts_add_up() {
        let values: Vec<u32> = (0..1000).map(|i| 100 + i % 7).collect();
        let svg = histogram("a <b>", &values);
        assert!(svg.starts_with("<svg"));
        assert!(svg.contains("a &lt;b&gt;"));
        assert_eq!(svg.matches(r#"class="bar""#).count(), 7);
        let total: u64 = svg
            .split(" blocks</title>")
            .filter_map(|part| part.rsplit(": ").next()?.parse::<u64>().ok())
            .sum();
        assert_eq!(total, 1000);
    }

    #[test]
    fn latency_cdf_draws_one_line_per_series() {
        let fast: Vec<u64> = (1..=10_000).map(|i| 50_000 + i).collect();
        let slow: Vec<u64> = (1..=10_000).map(|i| 50_000 + i * 100).collect();
        let svg = latency_cdf(
            "reads <qd 32>",
            &[
                ("fast".into(), fast),
                ("slow".into(), slow),
                ("none".into(), Vec::new()),
            ],
        );
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>\n"));
        assert!(svg.contains("reads &lt;qd 32&gt;"));
        assert_eq!(svg.matches(r#"class="cdf""#).count(), 3);
        assert!(svg.contains("fast (10000 reads)") && svg.contains("p99.99"));
    }

    #[test]
    fn wide_ranges_are_binned_and_empty_input_is_fine() {
        let values: Vec<u32> = (0..5000).collect();
        let svg = histogram("t", &values);
        assert!(svg.matches(r#"class="bar""#).count() <= BINS_MAX as usize);
        assert!(histogram("empty", &[]).contains("0 blocks"));
    }
}
