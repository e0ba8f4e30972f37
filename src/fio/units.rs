//! Numbers, sizes and times exactly as fio 3.33 reads them (parse.c), with its quirks, except
//! where fio silently reads a value as something else: those are errors here, with the reason.
//!
//! - Sizes: `k`/`kb` = kb_base (1024 by default), `m`, `g`, `t`, `p` its powers; the `KiB` family
//!   is the *other* base: 1000 under kb_base=1024 and 1024 under kb_base=1000 (fio's rule).
//!   `N%` is a percentage (size, offset). `0x..` is hexadecimal.
//! - Times: a bare number is seconds for options counted in seconds (runtime, ramp_time,
//!   startdelay) and microseconds for the others (thinktime); suffixes `us`/`usec`, `ms`/`msec`,
//!   `s`, `m` (minutes), `h`, `d`. Every time is kept in microseconds, as fio keeps it.
//! - Integer options (iodepth, numjobs, rate_iops, ...) go through the size parser in fio, so
//!   `iodepth=1k` is 1024; booleans take a plain number.

/// A size or offset: bytes, or a percentage of the target's size.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum SizeValue {
    Bytes(u64),
    Percent(u64),
}

impl SizeValue {
    /// The number fio 3.33 stores (and prints with --debug=parse): a percentage `p` is kept as
    /// `u64::MAX - p`, a marker that later code resolves against the file size.
    pub fn fio_encoding(self) -> u64 {
        match self {
            SizeValue::Bytes(b) => b,
            SizeValue::Percent(p) => u64::MAX - p,
        }
    }

    /// Resolves against a target of `total` bytes.
    pub fn resolve(self, total: u64) -> u64 {
        match self {
            SizeValue::Bytes(b) => b,
            SizeValue::Percent(p) => (total as u128 * u128::from(p) / 100) as u64,
        }
    }
}

/// fio's blanks-after-'=' trap: `bs = 8k` gives the value " 8k", which fio 3.33 reads as 8.
fn reject_leading_blank(text: &str) -> Result<(), String> {
    if text.starts_with(char::is_whitespace) {
        return Err(format!(
            "value {text:?} starts with a blank: fio 3.33 keeps blanks after '=' and then reads \
             sizes like \" 8k\" as 8; write it without the blank"
        ));
    }
    Ok(())
}

fn split_number(text: &str) -> Result<(u64, &str), String> {
    if text.starts_with('(') {
        return Err(format!(
            "{text:?}: arithmetic expressions are not supported; write the number"
        ));
    }
    let digits = text.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 {
        return Err(format!("{text:?} is not a number"));
    }
    let (number, suffix) = text.split_at(digits);
    if suffix.starts_with(['.', ',']) {
        return Err(format!(
            "{text:?}: fio 3.33 drops the fraction and reads only {number}; write a whole number \
             in a smaller unit"
        ));
    }
    let value = number
        .parse::<u64>()
        .map_err(|_| format!("{text:?} is too large"))?;
    Ok((value, suffix))
}

fn parse_hex(text: &str) -> Result<u64, String> {
    let hex = text
        .strip_prefix("0x")
        .or_else(|| text.strip_prefix("0X"))
        .ok_or_else(|| format!("{text:?}: a hexadecimal number starts with 0x"))?;
    u64::from_str_radix(hex, 16).map_err(|_| format!("{text:?} is not a hexadecimal number"))
}

/// A size with its unit, or a percentage.
pub fn parse_size(text: &str, kb_base: u64) -> Result<SizeValue, String> {
    reject_leading_blank(text)?;
    if text.contains("0x") || text.contains("0X") {
        return parse_hex(text).map(SizeValue::Bytes);
    }
    let (value, suffix) = split_number(text)?;
    let lower = suffix.to_ascii_lowercase();
    if lower == "%" {
        if value > 100 {
            return Err(format!("{text:?}: a percentage is at most 100%"));
        }
        return Ok(SizeValue::Percent(value));
    }
    let other_base = if kb_base == 1000 { 1024 } else { 1000 };
    let (base, power) = match lower.as_str() {
        "" | "b" => (kb_base, 0),
        "k" | "kb" => (kb_base, 1),
        "m" | "mb" => (kb_base, 2),
        "g" | "gb" => (kb_base, 3),
        "t" | "tb" => (kb_base, 4),
        "p" | "pb" => (kb_base, 5),
        "kib" => (other_base, 1),
        "mib" => (other_base, 2),
        "gib" => (other_base, 3),
        "tib" => (other_base, 4),
        "pib" => (other_base, 5),
        _ => {
            return Err(format!(
                "{text:?}: unknown unit {suffix:?} (k, m, g, t, p, their kb/KiB forms, or %)"
            ));
        }
    };
    base.checked_pow(power)
        .and_then(|m| value.checked_mul(m))
        .map(SizeValue::Bytes)
        .ok_or_else(|| format!("{text:?} is too large"))
}

/// A size that may not be a percentage.
pub fn parse_bytes(text: &str, kb_base: u64) -> Result<u64, String> {
    match parse_size(text, kb_base)? {
        SizeValue::Bytes(b) => Ok(b),
        SizeValue::Percent(_) => Err(format!("{text:?}: a percentage is not allowed here")),
    }
}

/// A time in microseconds; a bare number is seconds when `bare_is_seconds`, else microseconds.
pub fn parse_time_us(text: &str, bare_is_seconds: bool) -> Result<u64, String> {
    reject_leading_blank(text)?;
    let (value, suffix) = split_number(text)?;
    let multiplier: u64 = match suffix.to_ascii_lowercase().as_str() {
        "" if bare_is_seconds => 1_000_000,
        "" | "us" | "usec" => 1,
        "ms" | "msec" => 1_000,
        "s" => 1_000_000,
        "m" => 60 * 1_000_000,
        "h" => 3_600 * 1_000_000,
        "d" => 86_400 * 1_000_000,
        _ => {
            return Err(format!(
                "{text:?}: unknown time unit {suffix:?} (us, ms, s, m = minutes, h, d); fio 3.33 \
                 would silently read it as microseconds"
            ));
        }
    };
    value
        .checked_mul(multiplier)
        .ok_or_else(|| format!("{text:?} is too large"))
}

/// A boolean option's value: a plain (or 0x) number, 0 or 1.
pub fn parse_bool(text: &str) -> Result<bool, String> {
    reject_leading_blank(text)?;
    let value = if text.contains("0x") || text.contains("0X") {
        parse_hex(text)?
    } else {
        text.parse::<u64>()
            .map_err(|_| format!("{text:?} is not 0 or 1"))?
    };
    match value {
        0 => Ok(false),
        1 => Ok(true),
        _ => Err(format!("{text:?}: a boolean is 0 or 1")),
    }
}

/// A float (percentile_list entries, distribution parameters).
pub fn parse_float(text: &str) -> Result<f64, String> {
    reject_leading_blank(text)?;
    text.parse::<f64>()
        .ok()
        .filter(|v| v.is_finite())
        .ok_or_else(|| format!("{text:?} is not a number"))
}

/// Splits a value of a per-direction option into its parts as fio's handle_option does: at each
/// step the next ',' ends the part, or if there is none the next ':', or else the next '-'.
/// A value ending in ',' has an empty last part. Empty parts mean "not given".
pub fn split_parts(text: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut rest = text;
    loop {
        let cut = rest
            .find(',')
            .or_else(|| rest.find(':'))
            .or_else(|| rest.find('-'));
        match cut {
            Some(i) => {
                parts.push(&rest[..i]);
                rest = &rest[i + 1..];
            }
            None => {
                parts.push(rest);
                return parts;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_under_both_bases() {
        let b = |t: &str, base| parse_bytes(t, base).expect(t);
        assert_eq!(b("4k", 1024), 4096);
        assert_eq!(b("4K", 1024), 4096);
        assert_eq!(b("4kb", 1024), 4096);
        assert_eq!(b("4KiB", 1024), 4000);
        assert_eq!(b("4k", 1000), 4000);
        assert_eq!(b("4KiB", 1000), 4096);
        assert_eq!(b("16m", 1024), 16 << 20);
        assert_eq!(b("16m", 1000), 16_000_000);
        assert_eq!(b("1g", 1024), 1 << 30);
        assert_eq!(b("2GiB", 1024), 2_000_000_000);
        assert_eq!(b("1t", 1024), 1 << 40);
        assert_eq!(b("1p", 1024), 1 << 50);
        assert_eq!(b("512", 1024), 512);
        assert_eq!(b("512b", 1024), 512);
        assert_eq!(b("0x1000", 1024), 4096);
    }

    #[test]
    fn percentages() {
        assert_eq!(parse_size("10%", 1024), Ok(SizeValue::Percent(10)));
        assert_eq!(SizeValue::Percent(10).fio_encoding(), 18446744073709551605);
        assert_eq!(SizeValue::Percent(25).resolve(1000), 250);
        assert!(parse_size("101%", 1024).is_err());
        assert!(parse_bytes("10%", 1024).is_err());
    }

    #[test]
    fn values_fio_misreads_are_errors() {
        for bad in [" 8k", "1.5k", "abc", "", "4x", "4kbytes", "(1+2)", "0xzz"] {
            assert!(parse_size(bad, 1024).is_err(), "{bad}");
        }
        assert!(parse_bytes("99999999999p", 1024).is_err());
    }

    #[test]
    fn times() {
        let t = |s: &str, secs| parse_time_us(s, secs).expect(s);
        assert_eq!(t("10", true), 10_000_000);
        assert_eq!(t("10", false), 10);
        assert_eq!(t("2m", true), 120_000_000);
        assert_eq!(t("2m", false), 120_000_000);
        assert_eq!(t("10ms", false), 10_000);
        assert_eq!(t("10msec", true), 10_000);
        assert_eq!(t("5us", true), 5);
        assert_eq!(t("3s", false), 3_000_000);
        assert_eq!(t("1h", true), 3_600_000_000);
        assert_eq!(t("1d", true), 86_400_000_000);
        for bad in ["10sec", "1min", "x", "1.5s", " 1"] {
            assert!(parse_time_us(bad, true).is_err(), "{bad}");
        }
    }

    #[test]
    fn bools_and_floats() {
        assert_eq!(parse_bool("1"), Ok(true));
        assert_eq!(parse_bool("0"), Ok(false));
        assert!(parse_bool("2").is_err());
        assert!(parse_bool("yes").is_err());
        assert_eq!(parse_float("99.5"), Ok(99.5));
        assert!(parse_float("nan").is_err());
    }

    #[test]
    fn parts_split_like_fio() {
        assert_eq!(split_parts("4k"), vec!["4k"]);
        assert_eq!(split_parts("4k:8k"), vec!["4k", "8k"]);
        assert_eq!(split_parts("4k,8k,16k"), vec!["4k", "8k", "16k"]);
        assert_eq!(split_parts(",8k"), vec!["", "8k"]);
        assert_eq!(split_parts("1m,"), vec!["1m", ""]);
        assert_eq!(split_parts("4k,8k:16k"), vec!["4k", "8k", "16k"]);
        assert_eq!(split_parts("1k-2k"), vec!["1k", "2k"]);
    }
}
