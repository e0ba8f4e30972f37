//! fio 3.33's JSON output (`--output-format=json` and `json+`), key for key, so that tools that
//! read fio's JSON read ours. Values are computed as fio computes them (stat.c): bw_bytes =
//! io_bytes * 1000 / runtime_ms, bw in KiB/s, iops as a float, latencies in ns, percentiles from
//! fio's histogram, CPU percentages of the job's runtime.

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value, json};

use super::jobs::JobSet;
use super::lexer::RawOption;
use super::options::{Ddir, UnifiedReporting};
use super::runner::{JobResult, RunResult};
use super::stats::{
    DirStats, JobStats, LAT_M_KEYS, LAT_NU_KEYS, LatencyStats, Running, percent_of,
};

/// What the "fio version" key says: the format is fio 3.33's; the writer is Ferrite.
pub const VERSION: &str = concat!("fio-3.33 (ferrite ", env!("CARGO_PKG_VERSION"), ")");

/// One report entry: a job, or a whole group under group_reporting.
#[derive(Debug, Clone)]
pub struct Entry {
    pub result: JobResult,
}

/// The entries to report: with group_reporting, one per group (stats merged, named after the
/// group's first job), else one per job.
pub fn entries(run: &RunResult) -> Vec<Entry> {
    let mut out: Vec<Entry> = Vec::new();
    for r in &run.results {
        if r.job.options.group_reporting
            && let Some(last) = out.last_mut()
            && last.result.job.groupid == r.job.groupid
            && last.result.job.options.group_reporting
        {
            last.result.stats.merge(&r.stats);
            last.result.elapsed_s = last.result.elapsed_s.max(r.elapsed_s);
            continue;
        }
        out.push(Entry { result: r.clone() });
    }
    out
}

/// Options as given, values as text. fio leaves out bare flags (`time_based`): so do we.
fn options_map(options: &[RawOption]) -> Value {
    let mut map = Map::new();
    for o in options {
        if let Some(value) = &o.value {
            map.insert(o.name.clone(), Value::String(value.clone()));
        }
    }
    Value::Object(map)
}

fn lat_object(s: &LatencyStats, percentiles: Option<&[f64]>, plus: bool) -> Value {
    let r = &s.running;
    let mut obj = json!({
        "min": if r.samples > 0 { r.min } else { 0 },
        "max": r.max,
        "mean": r.mean(),
        "stddev": r.stddev(),
        "N": r.samples,
    });
    if let Some(list) = percentiles
        && r.samples > 0
    {
        let mut p = Map::new();
        for (pct, value) in s.percentiles(list) {
            p.insert(format!("{pct:.6}"), json!(value));
        }
        obj["percentile"] = Value::Object(p);
        if plus {
            let mut bins = Map::new();
            for (value, count) in s.bins() {
                bins.insert(value.to_string(), json!(count));
            }
            obj["bins"] = Value::Object(bins);
        }
    }
    obj
}

fn running_stats(r: &Running) -> (u64, u64, f64, f64, u64) {
    (
        if r.samples > 0 { r.min } else { 0 },
        r.max,
        r.mean(),
        r.stddev(),
        r.samples,
    )
}

fn dir_object(d: &DirStats, group_agg_kib: u64, percentiles: &[f64], plus: bool) -> Value {
    let runtime_ms = d.runtime_ns / 1_000_000;
    let bw_bytes = (d.io_bytes * 1000).checked_div(runtime_ms).unwrap_or(0);
    let iops = if runtime_ms > 0 {
        1000.0 * d.total_ios as f64 / runtime_ms as f64
    } else {
        0.0
    };
    let (bw_min, bw_max, bw_mean, bw_dev, bw_samples) = running_stats(&d.bw_kib_samples);
    let (iops_min, iops_max, iops_mean, iops_dev, iops_samples) = running_stats(&d.iops_samples);
    // fio: the job's mean bandwidth as a percentage of its group's aggregate.
    let bw_agg = if group_agg_kib > 0 && bw_samples > 0 {
        (bw_mean * 100.0 / group_agg_kib as f64).min(100.0)
    } else {
        0.0
    };
    json!({
        "io_bytes": d.io_bytes,
        "io_kbytes": d.io_bytes >> 10,
        "bw_bytes": bw_bytes,
        "bw": bw_bytes / 1024,
        "iops": iops,
        "runtime": runtime_ms,
        "total_ios": d.total_ios,
        "short_ios": d.short_ios,
        "drop_ios": 0,
        "slat_ns": lat_object(&LatencyStats::default(), None, false),
        "clat_ns": lat_object(&d.clat, Some(percentiles), plus),
        "lat_ns": lat_object(&d.lat, None, false),
        "bw_min": bw_min,
        "bw_max": bw_max,
        "bw_agg": bw_agg,
        "bw_mean": bw_mean,
        "bw_dev": bw_dev,
        "bw_samples": bw_samples,
        "iops_min": iops_min,
        "iops_max": iops_max,
        "iops_mean": iops_mean,
        "iops_stddev": iops_dev,
        "iops_samples": iops_samples,
    })
}

fn buckets(keys: &[u64], counts: &[u64], total: u64, last_label: Option<&str>) -> Value {
    let mut map = Map::new();
    for (k, c) in keys.iter().zip(counts) {
        map.insert(k.to_string(), json!(percent_of(*c, total)));
    }
    if let (Some(label), Some(c)) = (last_label, counts.get(keys.len())) {
        map.insert(label.to_string(), json!(percent_of(*c, total)));
    }
    Value::Object(map)
}

fn depth_map(keys: &[&str], counts: &[u64]) -> Value {
    let total: u64 = counts.iter().sum();
    let mut map = Map::new();
    for (k, c) in keys.iter().zip(counts) {
        map.insert(
            (*k).to_string(),
            json!(if total > 0 {
                100.0 * *c as f64 / total as f64
            } else {
                0.0
            }),
        );
    }
    Value::Object(map)
}

/// Bytes per second (KiB) of a group in one direction: the sum of its jobs' bandwidth.
fn group_agg_kib(run: &[Entry], groupid: u32, ddir: Ddir) -> u64 {
    run.iter()
        .filter(|e| e.result.job.groupid == groupid)
        .map(|e| {
            let d = &e.result.stats.dirs[ddir.index()];
            let ms = d.runtime_ns / 1_000_000;
            (d.io_bytes * 1000).checked_div(ms).unwrap_or(0) / 1024
        })
        .sum()
}

fn job_object(entry: &Entry, all: &[Entry], plus: bool) -> Value {
    let r = &entry.result;
    let s: &JobStats = &r.stats;
    let o = &r.job.options;
    let percentiles = &o.percentile_list;
    let mut job = Map::new();
    job.insert("jobname".into(), json!(r.job.name));
    job.insert("groupid".into(), json!(r.job.groupid));
    job.insert("error".into(), json!(s.error));
    job.insert("eta".into(), json!(0));
    job.insert("elapsed".into(), json!(r.elapsed_s));
    job.insert("job options".into(), options_map(&r.job.own));
    let dirs = |job: &mut Map<String, Value>| {
        for ddir in Ddir::ALL {
            let agg = group_agg_kib(all, r.job.groupid, ddir);
            job.insert(
                ddir.name().into(),
                dir_object(&s.dirs[ddir.index()], agg, percentiles, plus),
            );
        }
        job.insert(
            "sync".into(),
            json!({
                "total_ios": s.sync_lat.running.samples,
                "lat_ns": lat_object(&s.sync_lat, Some(percentiles), plus),
            }),
        );
    };
    let mixed = || {
        let mut m = DirStats::default();
        for d in &s.dirs {
            m.merge(d);
        }
        dir_object(&m, 0, percentiles, plus)
    };
    match o.unified_rw_reporting {
        UnifiedReporting::None => dirs(&mut job),
        UnifiedReporting::Mixed => {
            job.insert("mixed".into(), mixed());
        }
        UnifiedReporting::Both => {
            dirs(&mut job);
            job.insert("mixed".into(), mixed());
        }
    }
    let runtime_ms = s.job_runtime_ns / 1_000_000;
    let cpu_percent = |ms: u64| {
        if runtime_ms > 0 {
            100.0 * ms as f64 / runtime_ms as f64
        } else {
            0.0
        }
    };
    job.insert("job_runtime".into(), json!(runtime_ms));
    job.insert("usr_cpu".into(), json!(cpu_percent(s.cpu.user_ms)));
    job.insert("sys_cpu".into(), json!(cpu_percent(s.cpu.system_ms)));
    job.insert("ctx".into(), json!(s.cpu.context_switches));
    job.insert("majf".into(), json!(s.cpu.major_faults));
    job.insert("minf".into(), json!(s.cpu.minor_faults));
    job.insert(
        "iodepth_level".into(),
        depth_map(&["1", "2", "4", "8", "16", "32", ">=64"], &s.depth_counts),
    );
    // Every submission and completion is one I/O (synchronous engines): fio's "4" bucket
    // holds batches of 1 to 4.
    let ios = s.total_ios();
    let batches = [0, ios, 0, 0, 0, 0, 0];
    let batch_keys = ["0", "4", "8", "16", "32", "64", ">=64"];
    job.insert("iodepth_submit".into(), depth_map(&batch_keys, &batches));
    job.insert("iodepth_complete".into(), depth_map(&batch_keys, &batches));
    let b = &s.latency_buckets;
    job.insert("latency_ns".into(), buckets(&LAT_NU_KEYS, &b.ns, ios, None));
    job.insert("latency_us".into(), buckets(&LAT_NU_KEYS, &b.us, ios, None));
    job.insert(
        "latency_ms".into(),
        buckets(&LAT_M_KEYS, &b.ms, ios, Some(">=2000")),
    );
    job.insert("latency_depth".into(), json!(o.iodepth));
    job.insert("latency_target".into(), json!(0));
    job.insert("latency_percentile".into(), json!(100.0));
    job.insert("latency_window".into(), json!(0));
    Value::Object(job)
}

/// The whole report.
pub fn report(set: &JobSet, run: &RunResult, plus: bool) -> Value {
    let started = run.started.duration_since(UNIX_EPOCH).unwrap_or_default();
    let all = entries(run);
    let mut top = Map::new();
    top.insert("fio version".into(), json!(VERSION));
    top.insert("timestamp".into(), json!(started.as_secs()));
    top.insert("timestamp_ms".into(), json!(started.as_millis() as u64));
    top.insert("time".into(), json!(ctime(run.started)));
    if !set.global.is_empty() {
        top.insert("global options".into(), options_map(&set.global));
    }
    top.insert(
        "jobs".into(),
        Value::Array(all.iter().map(|e| job_object(e, &all, plus)).collect()),
    );
    if !run.disk_util.is_empty() {
        top.insert("disk_util".into(), json!(run.disk_util));
    }
    Value::Object(top)
}

/// `Sun Nov 22 02:02:26 2026`, as C's ctime (in UTC here).
pub fn ctime(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days as i64);
    const WEEKDAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    format!(
        "{} {} {:2} {:02}:{:02}:{:02} {}",
        WEEKDAYS[(days % 7) as usize],
        MONTHS[(m - 1) as usize],
        d,
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        y
    )
}

/// Days since 1970-01-01 to (year, month, day) (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn ctime_format() {
        // The timestamp fio 3.33 printed as "Sun Nov 22 02:02:26 2026" (UTC machine).
        let t = UNIX_EPOCH + Duration::from_secs(1_795_312_946);
        assert_eq!(ctime(t), "Sun Nov 22 02:02:26 2026");
        assert_eq!(ctime(UNIX_EPOCH), "Thu Jan  1 00:00:00 1970");
    }
}
