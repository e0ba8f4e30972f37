//! Statistics as fio 3.33 computes them: running min/max/mean/variance per latency kind (Welford,
//! as fio's `add_stat_sample`), fio's log-linear latency histogram (64 buckets per power of two
//! above 128 ns, 1856 buckets) and its percentile rule, the latency_ns/us/ms bucket counts, and
//! the iodepth distribution.

use serde::Serialize;

/// fio's FIO_IO_U_PLAT_BITS: 2^6 buckets per group.
const PLAT_BITS: u32 = 6;
const PLAT_VAL: u64 = 1 << PLAT_BITS;
const PLAT_GROUP_NR: usize = 29;
/// Buckets in the histogram (fio's FIO_IO_U_PLAT_NR).
pub const PLAT_NR: usize = PLAT_GROUP_NR * PLAT_VAL as usize;

/// The histogram bucket of a latency in ns (fio's plat_val_to_idx).
pub fn plat_val_to_idx(value_ns: u64) -> usize {
    let msb = if value_ns == 0 {
        0
    } else {
        63 - value_ns.leading_zeros()
    };
    if msb <= PLAT_BITS {
        return value_ns as usize;
    }
    let error_bits = msb - PLAT_BITS;
    let base = (u64::from(error_bits) + 1) << PLAT_BITS;
    let offset = (PLAT_VAL - 1) & (value_ns >> error_bits);
    ((base + offset) as usize).min(PLAT_NR - 1)
}

/// The value a bucket stands for: the middle of its range (fio's plat_idx_to_val).
pub fn plat_idx_to_val(idx: usize) -> u64 {
    let idx = idx as u64;
    if idx < (PLAT_VAL << 1) {
        return idx;
    }
    let error_bits = (idx >> PLAT_BITS) - 1;
    let base = 1u64 << (error_bits + u64::from(PLAT_BITS));
    let k = idx % PLAT_VAL;
    base + ((k as f64 + 0.5) * (1u64 << error_bits) as f64) as u64
}

/// Running statistics of one kind of sample (latency in ns, bandwidth, IOPS).
#[derive(Clone, Debug, Default)]
pub struct Running {
    pub samples: u64,
    pub min: u64,
    pub max: u64,
    mean: f64,
    /// Sum of squared deviations (Welford's S).
    s: f64,
}

impl Running {
    pub fn add(&mut self, value: u64) {
        if self.samples == 0 || value < self.min {
            self.min = value;
        }
        self.max = self.max.max(value);
        self.samples += 1;
        let v = value as f64;
        let delta = v - self.mean;
        self.mean += delta / self.samples as f64;
        self.s += delta * (v - self.mean);
    }

    /// Merges another run's statistics (Chan et al.), as fio's sum_stat does for group reporting.
    pub fn merge(&mut self, other: &Running) {
        if other.samples == 0 {
            return;
        }
        if self.samples == 0 {
            *self = other.clone();
            return;
        }
        let (n1, n2) = (self.samples as f64, other.samples as f64);
        let delta = other.mean - self.mean;
        let n = n1 + n2;
        self.mean += delta * n2 / n;
        self.s += other.s + delta * delta * n1 * n2 / n;
        self.samples += other.samples;
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
    }

    pub fn mean(&self) -> f64 {
        if self.samples == 0 { 0.0 } else { self.mean }
    }

    /// Sample standard deviation, as fio's calc_lat.
    pub fn stddev(&self) -> f64 {
        if self.samples > 1 {
            (self.s / (self.samples - 1) as f64).sqrt()
        } else {
            0.0
        }
    }
}

/// Latency statistics with fio's histogram.
#[derive(Clone, Debug)]
pub struct LatencyStats {
    pub running: Running,
    pub histogram: Vec<u64>,
}

impl Default for LatencyStats {
    fn default() -> Self {
        Self {
            running: Running::default(),
            histogram: vec![0; PLAT_NR],
        }
    }
}

impl LatencyStats {
    pub fn add(&mut self, value_ns: u64) {
        self.running.add(value_ns);
        self.histogram[plat_val_to_idx(value_ns)] += 1;
    }

    pub fn merge(&mut self, other: &LatencyStats) {
        self.running.merge(&other.running);
        for (a, b) in self.histogram.iter_mut().zip(&other.histogram) {
            *a += b;
        }
    }

    /// fio's calc_clat_percentiles: for each percentile (sorted), the value of the first bucket
    /// where the running count reaches p% of the samples.
    pub fn percentiles(&self, list: &[f64]) -> Vec<(f64, u64)> {
        let n = self.running.samples;
        let mut sorted = list.to_vec();
        sorted.sort_by(f64::total_cmp);
        let mut out = Vec::with_capacity(sorted.len());
        if n == 0 || sorted.is_empty() {
            return out;
        }
        let mut sum = 0u64;
        let mut j = 0;
        for (i, count) in self.histogram.iter().enumerate() {
            sum += count;
            while j < sorted.len() && sum as f64 >= sorted[j] / 100.0 * n as f64 {
                out.push((sorted[j], plat_idx_to_val(i)));
                j += 1;
            }
            if j == sorted.len() {
                break;
            }
        }
        out
    }

    /// Non-empty buckets as (value, count), for json+ "bins".
    pub fn bins(&self) -> Vec<(u64, u64)> {
        self.histogram
            .iter()
            .enumerate()
            .filter(|(_, c)| **c > 0)
            .map(|(i, c)| (plat_idx_to_val(i), *c))
            .collect()
    }
}

/// fio's latency_ns / latency_us bucket limits (each bucket holds values below the next limit).
pub const LAT_NU_KEYS: [u64; 10] = [2, 4, 10, 20, 50, 100, 250, 500, 750, 1000];
/// fio's latency_ms bucket limits; the last bucket is ">=2000".
pub const LAT_M_KEYS: [u64; 11] = [2, 4, 10, 20, 50, 100, 250, 500, 750, 1000, 2000];

fn lat_bucket(value: u64) -> usize {
    // fio's io_u_mark_lat_*: 0-1 -> 0, 2-3 -> 1, 4-9 -> 2, 10-19 -> 3, 20-49 -> 4, 50-99 -> 5,
    // 100-249 -> 6, 250-499 -> 7, 500-749 -> 8, 750-999 -> 9, 1000-1999 -> 10, 2000+ -> 11.
    const LIMITS: [u64; 11] = [2, 4, 10, 20, 50, 100, 250, 500, 750, 1000, 2000];
    LIMITS.iter().take_while(|&&l| value >= l).count()
}

/// Counts of I/O latencies in fio's latency_ns/us/ms buckets.
#[derive(Clone, Debug, Default)]
pub struct LatencyBuckets {
    pub ns: [u64; 10],
    pub us: [u64; 10],
    pub ms: [u64; 12],
}

impl LatencyBuckets {
    pub fn add(&mut self, latency_ns: u64) {
        if latency_ns < 1_000 {
            self.ns[lat_bucket(latency_ns)] += 1;
        } else if latency_ns < 1_000_000 {
            self.us[lat_bucket(latency_ns / 1_000)] += 1;
        } else {
            self.ms[lat_bucket(latency_ns / 1_000_000)] += 1;
        }
    }

    pub fn merge(&mut self, other: &LatencyBuckets) {
        for (a, b) in self.ns.iter_mut().zip(other.ns) {
            *a += b;
        }
        for (a, b) in self.us.iter_mut().zip(other.us) {
            *a += b;
        }
        for (a, b) in self.ms.iter_mut().zip(other.ms) {
            *a += b;
        }
    }
}

/// fio's stat_calc_lat: a count as a percentage of all I/Os, at least 0.01 when not zero.
pub fn percent_of(count: u64, total: u64) -> f64 {
    if total == 0 {
        return 0.0;
    }
    let p = 100.0 * count as f64 / total as f64;
    if p < 0.01 && count > 0 { 0.01 } else { p }
}

/// Depth buckets "1","2","4","8","16","32",">=64" (fio's io_u_map).
pub fn depth_bucket(depth: u32) -> usize {
    match depth {
        0 | 1 => 0,
        2..=3 => 1,
        4..=7 => 2,
        8..=15 => 3,
        16..=31 => 4,
        32..=63 => 5,
        _ => 6,
    }
}

/// Everything measured for one direction of one job.
#[derive(Clone, Debug, Default)]
pub struct DirStats {
    pub io_bytes: u64,
    pub total_ios: u64,
    pub short_ios: u64,
    pub clat: LatencyStats,
    pub lat: LatencyStats,
    /// Bandwidth samples in KiB/s and IOPS samples, one per sampling window.
    pub bw_kib_samples: Running,
    pub iops_samples: Running,
    /// Time from the first to the last I/O of this direction, in ns.
    pub runtime_ns: u64,
}

impl DirStats {
    pub fn merge(&mut self, other: &DirStats) {
        self.io_bytes += other.io_bytes;
        self.total_ios += other.total_ios;
        self.short_ios += other.short_ios;
        self.clat.merge(&other.clat);
        self.lat.merge(&other.lat);
        self.bw_kib_samples.merge(&other.bw_kib_samples);
        self.iops_samples.merge(&other.iops_samples);
        self.runtime_ns = self.runtime_ns.max(other.runtime_ns);
    }
}

/// CPU use of a job's threads, from /proc (fio uses getrusage).
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct CpuUsage {
    pub user_ms: u64,
    pub system_ms: u64,
    pub context_switches: u64,
    pub major_faults: u64,
    pub minor_faults: u64,
}

impl CpuUsage {
    /// The calling thread's usage so far: /proc/thread-self/stat (times in clock ticks of
    /// 1/100 s, Linux's USER_HZ) and /proc/thread-self/status (context switches).
    pub fn this_thread() -> CpuUsage {
        let mut usage = CpuUsage::default();
        if let Ok(stat) = std::fs::read_to_string("/proc/thread-self/stat")
            && let Some((_, rest)) = stat.rsplit_once(')')
        {
            // Fields after the command: state(3) ... minflt(10) cminflt majflt(12) cmajflt
            // utime(14) stime(15); `rest` starts at field 3.
            let fields: Vec<&str> = rest.split_whitespace().collect();
            let field = |n: usize| fields.get(n - 3).and_then(|f| f.parse::<u64>().ok());
            usage.minor_faults = field(10).unwrap_or(0);
            usage.major_faults = field(12).unwrap_or(0);
            usage.user_ms = field(14).unwrap_or(0) * 10;
            usage.system_ms = field(15).unwrap_or(0) * 10;
        }
        if let Ok(status) = std::fs::read_to_string("/proc/thread-self/status") {
            for line in status.lines() {
                if let Some((key, value)) = line.split_once(':')
                    && key.ends_with("ctxt_switches")
                {
                    usage.context_switches += value.trim().parse::<u64>().unwrap_or(0);
                }
            }
        }
        usage
    }

    pub fn since(self, start: CpuUsage) -> CpuUsage {
        CpuUsage {
            user_ms: self.user_ms.saturating_sub(start.user_ms),
            system_ms: self.system_ms.saturating_sub(start.system_ms),
            context_switches: self.context_switches.saturating_sub(start.context_switches),
            major_faults: self.major_faults.saturating_sub(start.major_faults),
            minor_faults: self.minor_faults.saturating_sub(start.minor_faults),
        }
    }

    pub fn add(&mut self, other: CpuUsage) {
        self.user_ms += other.user_ms;
        self.system_ms += other.system_ms;
        self.context_switches += other.context_switches;
        self.major_faults += other.major_faults;
        self.minor_faults += other.minor_faults;
    }
}

/// All results of one job (or of a group with group_reporting).
#[derive(Clone, Debug, Default)]
pub struct JobStats {
    pub dirs: [DirStats; 3],
    /// fsync calls (fio's "sync" direction).
    pub sync_lat: LatencyStats,
    pub latency_buckets: LatencyBuckets,
    /// I/Os by the depth in flight when they were submitted.
    pub depth_counts: [u64; 7],
    pub cpu: CpuUsage,
    /// Wall time of the job from start to end (after startdelay), in ns.
    pub job_runtime_ns: u64,
    pub verify_errors: u64,
    /// First error, fio-style errno (0 when none).
    pub error: i32,
    pub error_message: Option<String>,
}

impl JobStats {
    pub fn merge(&mut self, other: &JobStats) {
        for (a, b) in self.dirs.iter_mut().zip(&other.dirs) {
            a.merge(b);
        }
        self.sync_lat.merge(&other.sync_lat);
        self.latency_buckets.merge(&other.latency_buckets);
        for (a, b) in self.depth_counts.iter_mut().zip(other.depth_counts) {
            *a += b;
        }
        self.cpu.add(other.cpu);
        self.job_runtime_ns = self.job_runtime_ns.max(other.job_runtime_ns);
        self.verify_errors += other.verify_errors;
        if self.error == 0 {
            self.error = other.error;
            self.error_message.clone_from(&other.error_message);
        }
    }

    pub fn total_ios(&self) -> u64 {
        self.dirs.iter().map(|d| d.total_ios).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_index_matches_fio() {
        // Values below 128 are their own bucket; above, 64 buckets per power of two.
        assert_eq!(plat_val_to_idx(0), 0);
        assert_eq!(plat_val_to_idx(127), 127);
        assert_eq!(plat_val_to_idx(128), 128);
        assert_eq!(plat_val_to_idx(129), 128);
        assert_eq!(plat_val_to_idx(1000), 317);
        assert_eq!(plat_val_to_idx(1_000_000), 954);
        assert_eq!(plat_val_to_idx(u64::MAX), PLAT_NR - 1);
        // Bucket values are the middle of each bucket and map back to their bucket.
        assert_eq!(plat_idx_to_val(128), 129);
        assert_eq!(plat_idx_to_val(317), 1004);
        for idx in [0, 100, 128, 200, 317, 954, 1500, PLAT_NR - 2] {
            assert_eq!(plat_val_to_idx(plat_idx_to_val(idx)), idx, "{idx}");
        }
    }

    #[test]
    fn percentiles_follow_fios_rule() {
        let mut s = LatencyStats::default();
        for v in 1..=100u64 {
            s.add(v);
        }
        let p = s.percentiles(&[50.0, 1.0, 99.0, 100.0]);
        assert_eq!(p, vec![(1.0, 1), (50.0, 50), (99.0, 99), (100.0, 100)]);
        // A value above 128 reports the middle of its bucket, as fio does.
        let mut s = LatencyStats::default();
        s.add(10_000);
        assert_eq!(
            s.percentiles(&[50.0]),
            vec![(50.0, plat_idx_to_val(plat_val_to_idx(10_000)))]
        );
        assert!(LatencyStats::default().percentiles(&[50.0]).is_empty());
    }

    #[test]
    fn running_stats_and_merge() {
        let mut a = Running::default();
        let mut b = Running::default();
        let mut all = Running::default();
        for v in [10u64, 20, 30, 40] {
            a.add(v);
            all.add(v);
        }
        for v in [5u64, 100, 7] {
            b.add(v);
            all.add(v);
        }
        a.merge(&b);
        assert_eq!((a.samples, a.min, a.max), (7, 5, 100));
        assert!((a.mean() - all.mean()).abs() < 1e-9);
        assert!((a.stddev() - all.stddev()).abs() < 1e-9);
        // Sample standard deviation of 10,20,30,40.
        let mut c = Running::default();
        for v in [10u64, 20, 30, 40] {
            c.add(v);
        }
        assert!((c.stddev() - 12.909944).abs() < 1e-6);
    }

    #[test]
    fn latency_buckets_like_fio() {
        let mut b = LatencyBuckets::default();
        for ns in [1, 3, 999, 1_000, 49_000, 2_500_000, 5_000_000_000] {
            b.add(ns);
        }
        assert_eq!(b.ns[0] + b.ns[1] + b.ns[9], 3);
        assert_eq!(b.us[0], 1);
        assert_eq!(b.us[4], 1);
        assert_eq!(b.ms[1], 1);
        assert_eq!(b.ms[11], 1);
        assert_eq!(percent_of(1, 100_000), 0.01);
        assert_eq!(percent_of(0, 0), 0.0);
        assert_eq!(depth_bucket(1), 0);
        assert_eq!(depth_bucket(32), 5);
        assert_eq!(depth_bucket(64), 6);
    }

    #[test]
    fn cpu_usage_is_read_from_proc() {
        let start = CpuUsage::this_thread();
        let mut x = 0u64;
        for i in 0..20_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
        let used = CpuUsage::this_thread().since(start);
        assert!(used.user_ms + used.system_ms > 0, "{used:?}");
    }
}
