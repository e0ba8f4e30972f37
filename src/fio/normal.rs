//! The readable summary (`--output-format=normal`), laid out like fio's: per job a header,
//! per direction IOPS/BW, latencies, percentiles, bandwidth samples; then CPU, depths and a
//! run-status line per group.

use std::fmt::Write as _;

use super::json::{Entry, entries};
use super::options::{Ddir, UnifiedReporting};
use super::runner::RunResult;
use super::stats::{DirStats, LatencyStats, percent_of};

/// fio's num2str for the common cases: 4 significant figures with a unit prefix.
fn human(value: f64, base: f64, units: &[&str]) -> String {
    let mut v = value;
    let mut i = 0;
    while v >= base * 0.9995 && i + 1 < units.len() {
        v /= base;
        i += 1;
    }
    let digits = if i == 0 || v >= 100.0 {
        0
    } else if v >= 10.0 {
        1
    } else {
        2
    };
    format!("{v:.digits$}{}", units[i])
}

fn bin_bytes(v: f64) -> String {
    human(v, 1024.0, &["B", "KiB", "MiB", "GiB", "TiB", "PiB"])
}

fn dec_bytes(v: f64) -> String {
    human(v, 1000.0, &["B", "kB", "MB", "GB", "TB", "PB"])
}

fn count(v: f64) -> String {
    human(v, 1000.0, &["", "k", "M", "G", "T"])
}

/// The unit fio picks for a latency line: msec, usec or nsec by the mean.
fn lat_line(out: &mut String, name: &str, s: &LatencyStats) {
    let r = &s.running;
    if r.samples == 0 {
        return;
    }
    let (div, unit) = if r.mean() >= 1e6 {
        (1e6, "msec")
    } else if r.mean() >= 1e3 {
        (1e3, "usec")
    } else {
        (1.0, "nsec")
    };
    let _ = writeln!(
        out,
        "    {name} ({unit}): min={}, max={}, avg={:.2}, stdev={:.2}",
        (r.min as f64 / div).round(),
        (r.max as f64 / div).round(),
        r.mean() / div,
        r.stddev() / div
    );
}

fn percentile_lines(out: &mut String, s: &LatencyStats, list: &[f64]) {
    let p = s.percentiles(list);
    if p.is_empty() {
        return;
    }
    let max = p.iter().map(|(_, v)| *v).max().unwrap_or(0);
    let min = p.iter().map(|(_, v)| *v).min().unwrap_or(0);
    let (div, unit) = if min > 2_000_000 && max > 99_999_999 {
        (1_000_000, "msec")
    } else if min > 2_000 && max > 99_999 {
        (1_000, "usec")
    } else {
        (1, "nsec")
    };
    let _ = writeln!(out, "    clat percentiles ({unit}):");
    for chunk in p.chunks(4) {
        let cells: Vec<String> = chunk
            .iter()
            .map(|(pct, v)| format!("{pct:5.2}th=[{:5}]", v.div_ceil(div)))
            .collect();
        let _ = writeln!(out, "     | {}", cells.join(", "));
    }
}

fn dir_block(out: &mut String, name: &str, d: &DirStats, list: &[f64]) {
    if d.total_ios == 0 {
        return;
    }
    let ms = (d.runtime_ns / 1_000_000).max(1);
    let bw = d.io_bytes as f64 * 1000.0 / ms as f64;
    let iops = d.total_ios as f64 * 1000.0 / ms as f64;
    let _ = writeln!(
        out,
        "  {}: IOPS={}, BW={}/s ({}/s)({}/{}msec)",
        name,
        count(iops),
        bin_bytes(bw),
        dec_bytes(bw),
        bin_bytes(d.io_bytes as f64),
        ms
    );
    lat_line(out, "clat", &d.clat);
    lat_line(out, " lat", &d.lat);
    percentile_lines(out, &d.clat, list);
    let b = &d.bw_kib_samples;
    if b.samples > 0 {
        let _ = writeln!(
            out,
            "   bw (  KiB/s): min={}, max={}, avg={:.2}, stdev={:.2}, samples={}",
            b.min,
            b.max,
            b.mean(),
            b.stddev(),
            b.samples
        );
        let i = &d.iops_samples;
        let _ = writeln!(
            out,
            "   iops        : min={}, max={}, avg={:.2}, stdev={:.2}, samples={}",
            i.min,
            i.max,
            i.mean(),
            i.stddev(),
            i.samples
        );
    }
}

fn job_block(out: &mut String, e: &Entry) {
    let r = &e.result;
    let s = &r.stats;
    let _ = writeln!(
        out,
        "{}: (groupid={}, jobs=1): err={:2}",
        r.job.name, r.job.groupid, s.error
    );
    if let Some(m) = &s.error_message {
        let _ = writeln!(out, "  error: {m}");
    }
    let list = &r.job.options.percentile_list;
    let unified = r.job.options.unified_rw_reporting;
    if unified != UnifiedReporting::Mixed {
        for ddir in Ddir::ALL {
            dir_block(out, ddir.name(), &s.dirs[ddir.index()], list);
        }
    }
    if unified != UnifiedReporting::None {
        let mut mixed = DirStats::default();
        for d in &s.dirs {
            mixed.merge(d);
        }
        dir_block(out, "mixed", &mixed, list);
    }
    if s.sync_lat.running.samples > 0 {
        let _ = writeln!(out, "  fsync/fdatasync/sync_file_range:");
        lat_line(out, "sync", &s.sync_lat);
    }
    let ms = (s.job_runtime_ns / 1_000_000).max(1) as f64;
    let _ = writeln!(
        out,
        "  cpu          : usr={:.2}%, sys={:.2}%, ctx={}, majf={}, minf={}",
        100.0 * s.cpu.user_ms as f64 / ms,
        100.0 * s.cpu.system_ms as f64 / ms,
        s.cpu.context_switches,
        s.cpu.major_faults,
        s.cpu.minor_faults
    );
    let total: u64 = s.depth_counts.iter().sum();
    let depths: Vec<String> = ["1", "2", "4", "8", "16", "32", ">=64"]
        .iter()
        .zip(s.depth_counts)
        .map(|(k, c)| format!("{k}={:.1}%", percent_of(c, total)))
        .collect();
    let _ = writeln!(out, "  IO depths    : {}", depths.join(", "));
    let d = &s.dirs;
    let _ = writeln!(
        out,
        "     issued rwts: total={},{},{},0 short={},{},{},0 dropped=0,0,0,0",
        d[0].total_ios,
        d[1].total_ios,
        d[2].total_ios,
        d[0].short_ios,
        d[1].short_ios,
        d[2].short_ios
    );
    if s.verify_errors > 0 {
        let _ = writeln!(out, "  verify errors: {}", s.verify_errors);
    }
    out.push('\n');
}

/// The whole summary.
pub fn report(run: &RunResult) -> String {
    let all = entries(run);
    let mut out = String::new();
    for e in &all {
        job_block(&mut out, e);
    }
    let mut groups: Vec<u32> = all.iter().map(|e| e.result.job.groupid).collect();
    groups.dedup();
    for g in groups {
        let _ = writeln!(out, "Run status group {g} (all jobs):");
        for ddir in Ddir::ALL {
            let members: Vec<&DirStats> = all
                .iter()
                .filter(|e| e.result.job.groupid == g)
                .map(|e| &e.result.stats.dirs[ddir.index()])
                .filter(|d| d.total_ios > 0)
                .collect();
            if members.is_empty() {
                continue;
            }
            let io: u64 = members.iter().map(|d| d.io_bytes).sum();
            let run_ms: Vec<u64> = members
                .iter()
                .map(|d| (d.runtime_ns / 1_000_000).max(1))
                .collect();
            let max_ms = run_ms.iter().copied().max().unwrap_or(1);
            let min_ms = run_ms.iter().copied().min().unwrap_or(1);
            let agg = io as f64 * 1000.0 / max_ms as f64;
            let _ = writeln!(
                out,
                "{:>7}: bw={}/s ({}/s), io={} ({}), run={min_ms}-{max_ms}msec",
                ddir.name().to_uppercase(),
                bin_bytes(agg),
                dec_bytes(agg),
                bin_bytes(io as f64),
                dec_bytes(io as f64)
            );
        }
    }
    if !run.disk_util.is_empty() {
        out.push_str("\nDisk stats (read/write):\n");
        for d in &run.disk_util {
            let _ = writeln!(
                out,
                "  {}: ios={}/{}, ticks={}/{}, util={:.2}%",
                d.name, d.read_ios, d.write_ios, d.read_ticks, d.write_ticks, d.util
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_units_like_fio() {
        assert_eq!(bin_bytes(1024.0 * 1024.0), "1.00MiB");
        assert_eq!(bin_bytes(4096.0), "4.00KiB");
        assert_eq!(dec_bytes(1_049_000.0), "1.05MB");
        assert_eq!(count(256_000.0), "256k");
        assert_eq!(count(12.0), "12");
    }
}
