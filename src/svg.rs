//! A small SVG histogram, for distributions people would rather see than read (erase counts).

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
    fn wide_ranges_are_binned_and_empty_input_is_fine() {
        let values: Vec<u32> = (0..5000).collect();
        let svg = histogram("t", &values);
        assert!(svg.matches(r#"class="bar""#).count() <= BINS_MAX as usize);
        assert!(histogram("empty", &[]).contains("0 blocks"));
    }
}
