//! The text form of a [`Schedule`], as `ferrite ebs bench --impair SPEC` takes it
//! (grammar in docs/ebs-bench.md):
//!
//! ```text
//! spec    = [ item { ("," | ";") item } ]
//! item    = [ scope ":" ] setting [ "@" time ]
//! scope   = "all" | "path" INDEX                  0-based, below the path count
//! setting = "loss=" prob | "delay=" time | "jitter=" time | "reorder=" prob
//!         | "reorder_max=" time | "duplicate=" prob | "rate=" rate | "queue=" time
//!         | "blackhole" [ "=" ("on" | "off") ] | "clear"
//! prob    = DECIMAL (0..=1) | DECIMAL "%" (0..=100)
//! time    = DECIMAL ("us" | "ms" | "s")
//! rate    = DECIMAL ("B/s" | "kB/s" | "MB/s" | "GB/s" | "kbit/s" | "Mbit/s" | "Gbit/s") | "off"
//! ```
//!
//! Items without a time shape the paths at start, in order; items with one are changes at that
//! time since the relay started. `loss=0.01;path2:blackhole@2s` is 1% loss everywhere and path 2
//! black-holed from 2 s on. Every error names the item it is in.

use super::schedule::{Change, Event, Schedule, Scope};
use super::{PATHS_MAX, TIME_US_MAX};
use thiserror::Error;

/// A spec that does not parse: the offending item and why.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("bad impairment `{token}`: {reason}")]
pub struct SpecError {
    pub token: String,
    pub reason: String,
}

/// Longest spec accepted; a command line is far shorter, and the bound keeps the event list small.
pub const SPEC_LEN_MAX: usize = 4096;

/// Parses `text` for a relay of `paths` paths. An empty spec is clean paths.
pub fn parse_spec(text: &str, paths: usize) -> Result<Schedule, SpecError> {
    let whole = |reason: String| SpecError {
        token: text.chars().take(64).collect(),
        reason,
    };
    if text.len() > SPEC_LEN_MAX {
        return Err(whole(format!("longer than {SPEC_LEN_MAX} bytes")));
    }
    if !(1..=PATHS_MAX).contains(&paths) {
        return Err(whole(format!("{paths} paths, not in 1..={PATHS_MAX}")));
    }
    let mut schedule = Schedule::clean(paths);
    if text.trim().is_empty() {
        return Ok(schedule);
    }
    for item in text.split([',', ';']) {
        let item = item.trim();
        let bad = |reason: String| SpecError {
            token: item.to_string(),
            reason,
        };
        if item.is_empty() {
            return Err(bad("empty item (two separators in a row?)".into()));
        }
        let (body, at_us) = match item.split_once('@') {
            Some((body, time)) => (body, Some(parse_time_us(time).map_err(bad)?)),
            None => (item, None),
        };
        let (scope, setting) = match body.split_once(':') {
            Some((scope, setting)) => (parse_scope(scope.trim(), paths).map_err(bad)?, setting),
            None => (Scope::All, body),
        };
        let change = parse_setting(setting.trim()).map_err(bad)?;
        match at_us {
            Some(at_us) => schedule.push(Event {
                at_us,
                scope,
                change,
            }),
            None => schedule.apply_initial(scope, &change),
        }
    }
    // Each value was range-checked on its own; this catches nothing today but keeps the promise
    // that a parsed schedule is one a relay accepts.
    schedule.validate().map_err(whole)?;
    Ok(schedule)
}

fn parse_scope(s: &str, paths: usize) -> Result<Scope, String> {
    if s == "all" {
        return Ok(Scope::All);
    }
    let Some(index) = s.strip_prefix("path") else {
        return Err(format!("scope `{s}` is not `all` or `pathN`"));
    };
    let i: usize = index
        .parse()
        .map_err(|_| format!("`{index}` is not a path number"))?;
    if i >= paths {
        return Err(format!(
            "path {i} does not exist: paths are 0..={}",
            paths - 1
        ));
    }
    Ok(Scope::Path(i))
}

fn parse_setting(s: &str) -> Result<Change, String> {
    match s {
        "blackhole" | "blackhole=on" => return Ok(Change::BlackHole(true)),
        "blackhole=off" => return Ok(Change::BlackHole(false)),
        "clear" => return Ok(Change::Clear),
        _ => {}
    }
    let Some((key, value)) = s.split_once('=') else {
        return Err(format!("`{s}` is not key=value, `blackhole` or `clear`"));
    };
    let value = value.trim();
    Ok(match key.trim() {
        "loss" => Change::Loss(parse_prob(value)?),
        "delay" => Change::DelayUs(parse_time_us(value)?),
        "jitter" => Change::JitterUs(parse_time_us(value)?),
        "reorder" => Change::Reorder(parse_prob(value)?),
        "reorder_max" => Change::ReorderUsMax(parse_time_us(value)?),
        "duplicate" => Change::Duplicate(parse_prob(value)?),
        "rate" => Change::RateBytesPerS(parse_rate(value)?),
        "queue" => Change::QueueUsMax(parse_time_us(value)?),
        "blackhole" => return Err(format!("blackhole takes `on` or `off`, not `{value}`")),
        other => {
            return Err(format!(
                "unknown setting `{other}` (loss, delay, jitter, reorder, reorder_max, \
                 duplicate, rate, queue, blackhole, clear)"
            ));
        }
    })
}

fn parse_decimal(s: &str) -> Result<f64, String> {
    // Digits and one dot only: no signs, exponents, `inf` or `nan`, which `f64::from_str` takes.
    let ok = !s.is_empty()
        && s.chars().all(|c| c.is_ascii_digit() || c == '.')
        && s.chars().filter(|&c| c == '.').count() <= 1
        && s.chars().any(|c| c.is_ascii_digit());
    if !ok {
        return Err(format!("`{s}` is not a decimal number"));
    }
    s.parse::<f64>()
        .map_err(|_| format!("`{s}` is not a decimal number"))
}

fn parse_prob(s: &str) -> Result<f64, String> {
    let (number, scale) = match s.strip_suffix('%') {
        Some(n) => (n, 100.0),
        None => (s, 1.0),
    };
    let p = parse_decimal(number.trim())? / scale;
    if !(0.0..=1.0).contains(&p) {
        return Err(format!("probability `{s}` is not in 0..=1 (or 0%..=100%)"));
    }
    Ok(p)
}

fn parse_time_us(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let (number, us_per_unit) = if let Some(n) = s.strip_suffix("us") {
        (n, 1.0)
    } else if let Some(n) = s.strip_suffix("ms") {
        (n, 1e3)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1e6)
    } else {
        return Err(format!("time `{s}` needs a unit: us, ms or s"));
    };
    let us = (parse_decimal(number.trim())? * us_per_unit).round();
    if us > TIME_US_MAX as f64 {
        return Err(format!("time `{s}` is over {} s", TIME_US_MAX / 1_000_000));
    }
    Ok(us as u64)
}

fn parse_rate(s: &str) -> Result<Option<u64>, String> {
    if s == "off" {
        return Ok(None);
    }
    const UNITS: [(&str, f64); 7] = [
        ("kbit/s", 1e3 / 8.0),
        ("Mbit/s", 1e6 / 8.0),
        ("Gbit/s", 1e9 / 8.0),
        ("kB/s", 1e3),
        ("MB/s", 1e6),
        ("GB/s", 1e9),
        ("B/s", 1.0),
    ];
    let Some((number, bytes_per_unit)) = UNITS
        .iter()
        .find_map(|(unit, scale)| s.strip_suffix(unit).map(|n| (n, *scale)))
    else {
        return Err(format!(
            "rate `{s}` needs a unit: B/s, kB/s, MB/s, GB/s, kbit/s, Mbit/s, Gbit/s (or `off`)"
        ));
    };
    let bytes_per_s = (parse_decimal(number.trim())? * bytes_per_unit).round();
    // A terabyte per second is beyond any loopback; the bound keeps the product in range.
    if !(1.0..=1e12).contains(&bytes_per_s) {
        return Err(format!("rate `{s}` is not in 1 B/s..=1 TB/s"));
    }
    Ok(Some(bytes_per_s as u64))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::impair::clean;

    #[test]
    fn the_examples_parse() {
        let s = parse_spec("loss=0.01", 4).unwrap();
        assert!(s.initial.iter().all(|p| p.loss == 0.01) && s.events.is_empty());

        let s = parse_spec("path2:blackhole@2s", 4).unwrap();
        assert_eq!(s.initial, vec![clean(); 4]);
        assert_eq!(
            s.events,
            [Event {
                at_us: 2_000_000,
                scope: Scope::Path(2),
                change: Change::BlackHole(true)
            }]
        );

        let s = parse_spec("delay=50us,jitter=10us", 2).unwrap();
        assert!(
            s.initial
                .iter()
                .all(|p| p.delay_us == 50 && p.jitter_us == 10)
        );
    }

    #[test]
    fn every_setting_and_unit() {
        let s = parse_spec(
            "all:loss=1%; path0:delay=1.5ms; path1:jitter=2s; reorder=0.25; reorder_max=300us; \
             duplicate=0.5%; path1:rate=8Mbit/s; path0:rate=2MB/s; queue=5ms; path1:blackhole=on; \
             path1:blackhole=off@1s; path0:clear@500ms; rate=off@3s",
            2,
        )
        .unwrap();
        let (p0, p1) = (&s.initial[0], &s.initial[1]);
        assert_eq!(p0.loss, 0.01);
        assert_eq!(p0.delay_us, 1_500);
        assert_eq!(p1.jitter_us, 2_000_000);
        assert_eq!((p0.reorder, p0.reorder_us_max), (0.25, 300));
        assert_eq!(p1.duplicate, 0.005);
        assert_eq!(p1.rate_bytes_per_s, Some(1_000_000));
        assert_eq!(p0.rate_bytes_per_s, Some(2_000_000));
        assert_eq!(p1.queue_us_max, 5_000);
        assert!(p1.black_hole && !p0.black_hole);
        let at: Vec<_> = s.events.iter().map(|e| (e.at_us, e.scope)).collect();
        assert_eq!(
            at,
            [
                (500_000, Scope::Path(0)),
                (1_000_000, Scope::Path(1)),
                (3_000_000, Scope::All)
            ]
        );
        assert_eq!(s.events[2].change, Change::RateBytesPerS(None));
        assert_eq!(parse_spec("", 3).unwrap(), Schedule::clean(3));
        assert_eq!(parse_spec("  ", 3).unwrap(), Schedule::clean(3));
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_text_never_panics(text in ".{0,80}", paths in 0usize..70) {
            let _ = parse_spec(&text, paths);
        }

        #[test]
        fn spec_shaped_text_never_panics(
            text in "((all|path[0-9]{1,3}|x):)?(loss|delay|jitter|reorder|reorder_max|duplicate|rate|queue|blackhole|clear)(=[0-9.%a-zA-Z/]{0,8})?(@[0-9.]{0,6}(us|ms|s)?)?([,;].{0,10})?",
        ) {
            if let Ok(s) = parse_spec(&text, 4) {
                proptest::prop_assert_eq!(s.validate(), Ok(()));
            }
        }
    }

    #[test]
    fn errors_name_the_bad_item() {
        for (spec, token, says) in [
            ("loss=0.01,lose=0.1", "lose=0.1", "unknown setting `lose`"),
            ("loss=1.5", "loss=1.5", "not in 0..=1"),
            ("loss=-0.1", "loss=-0.1", "not a decimal"),
            ("loss=nan", "loss=nan", "not a decimal"),
            ("delay=50", "delay=50", "needs a unit"),
            ("delay=2min", "delay=2min", "needs a unit"),
            ("delay=2xs", "delay=2xs", "not a decimal"),
            ("delay=100s", "delay=100s", "over 60 s"),
            (
                "path4:blackhole",
                "path4:blackhole",
                "path 4 does not exist",
            ),
            ("pathx:blackhole", "pathx:blackhole", "not a path number"),
            ("lane1:blackhole", "lane1:blackhole", "not `all` or `pathN`"),
            (
                "path1:blackhole@soon",
                "path1:blackhole@soon",
                "needs a unit",
            ),
            ("blackhole=maybe", "blackhole=maybe", "`on` or `off`"),
            ("rate=10", "rate=10", "needs a unit"),
            ("rate=0B/s", "rate=0B/s", "not in 1 B/s"),
            ("loss=0.1,,delay=1us", "", "empty item"),
            ("jitter", "jitter", "not key=value"),
        ] {
            let e = parse_spec(spec, 4).unwrap_err();
            assert_eq!(e.token, token, "{spec}: {e}");
            assert!(e.reason.contains(says), "{spec}: {e}");
            assert!(e.to_string().contains(&format!("`{token}`")), "{e}");
        }
        assert!(parse_spec("loss=0.1", 0).is_err());
        assert!(parse_spec(&"loss=0.1,".repeat(1000), 4).is_err());
    }
}
