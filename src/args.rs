//! Parsers for the command-line values that are more than a number: `--writes 4x`, `--op 0.125`,
//! `--fill 1.0`, `--workload zipf:0.99`. Each returns a message clap shows as is.

use std::fmt;
use std::str::FromStr;

use crate::workload::WorkloadSpec;

/// How many host writes the measured phase of `bench ftl` issues.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum WriteAmount {
    /// A multiple of the logical capacity (`4x`).
    Capacity(f64),
    /// A number of 4 KiB pages (`1000000`).
    Pages(u64),
}

impl WriteAmount {
    pub fn pages(self, logical_pages: u64) -> u64 {
        match self {
            WriteAmount::Capacity(x) => (logical_pages as f64 * x).round() as u64,
            WriteAmount::Pages(n) => n,
        }
    }
}

impl FromStr for WriteAmount {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if let Some(x) = s.strip_suffix(['x', 'X']) {
            let x: f64 = x
                .parse()
                .map_err(|_| format!("`{s}`: expected a multiple of capacity like 4x or 0.5x"))?;
            if !(x.is_finite() && x > 0.0) {
                return Err(format!("`{s}`: the multiple must be positive"));
            }
            Ok(WriteAmount::Capacity(x))
        } else {
            let n: u64 = s.parse().map_err(|_| {
                format!("`{s}`: expected a page count (1000000) or a multiple (4x)")
            })?;
            if n == 0 {
                return Err("the page count must be positive".into());
            }
            Ok(WriteAmount::Pages(n))
        }
    }
}

impl fmt::Display for WriteAmount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WriteAmount::Capacity(x) => write!(f, "{x}x"),
            WriteAmount::Pages(n) => write!(f, "{n}"),
        }
    }
}

pub fn parse_write_amount(s: &str) -> Result<WriteAmount, String> {
    s.parse()
}

pub fn parse_workload(s: &str) -> Result<WorkloadSpec, String> {
    s.parse::<WorkloadSpec>().map_err(|e| format!("{e:#}"))
}

fn parse_fraction(s: &str, what: &str, allow_one: bool) -> Result<f64, String> {
    let x: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("{what} `{s}` is not a number"))?;
    let ok = x > 0.0 && (x < 1.0 || (allow_one && x == 1.0));
    if !ok {
        let range = if allow_one { "(0, 1]" } else { "(0, 1)" };
        return Err(format!("{what} {x} not in {range}"));
    }
    Ok(x)
}

/// Over-provisioning ratio: strictly between 0 and 1 (0.07, 0.125, 0.28 are the usual ones).
pub fn parse_op_ratio(s: &str) -> Result<f64, String> {
    parse_fraction(s, "over-provisioning ratio", false)
}

/// Fraction of the logical space to fill before measuring: (0, 1].
pub fn parse_fill(s: &str) -> Result<f64, String> {
    parse_fraction(s, "fill fraction", true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_amounts() {
        assert_eq!(parse_write_amount("4x"), Ok(WriteAmount::Capacity(4.0)));
        assert_eq!(parse_write_amount("0.5X"), Ok(WriteAmount::Capacity(0.5)));
        assert_eq!(parse_write_amount("1000"), Ok(WriteAmount::Pages(1000)));
        assert_eq!(WriteAmount::Capacity(4.0).pages(1000), 4000);
        assert_eq!(WriteAmount::Pages(7).pages(1000), 7);
        assert_eq!(WriteAmount::Capacity(4.0).to_string(), "4x");
        for bad in ["x", "-1x", "0x", "0", "four", "4y", ""] {
            assert!(parse_write_amount(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn workloads() {
        assert_eq!(
            parse_workload("zipf:0.99"),
            Ok(WorkloadSpec::Zipf { theta: 0.99 })
        );
        assert_eq!(
            parse_workload("hotcold:90/10"),
            Ok(WorkloadSpec::HotCold {
                hot_access_pct: 90.0,
                hot_space_pct: 10.0
            })
        );
        let err = parse_workload("hotcold:90").expect_err("no B");
        assert!(err.contains("A/B"), "{err}");
    }

    #[test]
    fn ratios() {
        assert_eq!(parse_op_ratio("0.07"), Ok(0.07));
        assert_eq!(parse_op_ratio("0.28"), Ok(0.28));
        assert!(parse_op_ratio("1").is_err());
        assert!(parse_op_ratio("0").is_err());
        assert!(parse_op_ratio("abc").is_err());
        assert_eq!(parse_fill("1.0"), Ok(1.0));
        assert!(parse_fill("1.5").is_err());
        assert!(parse_fill("0").is_err());
    }
}
