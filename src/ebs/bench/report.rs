//! What `ferrite ebs bench` reports: one result per (scenario, system, workload, qd), the
//! issue's targets as ratios, as JSON or a table.

use std::fmt;

use serde::Serialize;

use super::workload::{CaseOutcome, Op};
use super::{BenchOptions, Scenario, System};

/// Points of each case's latency CDF kept for `--svg`.
/// (10^5: enough for the chart's p99.999 axis.)
const CDF_POINTS: usize = 100_000;

#[derive(Clone, Debug, Serialize)]
pub struct CaseResult {
    pub scenario: &'static str,
    pub system: &'static str,
    pub workload: &'static str,
    pub qd: usize,
    /// Why the case did not run (then no figures follow).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skipped: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errors: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub requests: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iops: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p50_us: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p99_us: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p999_us: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_us: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_stall_ms: Option<f64>,
    /// blackhole: the longest stall overlapping the black hole's first 100 ms, the one it caused
    /// (`max_stall_ms` may be a host hiccup elsewhere in the run).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_stall_ms_at_event: Option<f64>,
    /// When the longest stall began, in ms since the case started (the black hole falls at
    /// half the duration).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_stall_began_ms: Option<f64>,
    /// CPU time of the whole bench process (client, server and, for srd_relay, the relay's
    /// threads) during the measured run, per completed request: unlike IOPS it hardly moves
    /// when another job shares the machine.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu_us_per_request: Option<f64>,
    /// srd: the transport's retransmissions in the case.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retransmissions: Option<u64>,
    /// What the impairment dropped: relay datagrams (srd) or nftables packets (nbd_tcp).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub impair_drops: Option<u64>,
    /// The first failed request, or why requests were given up on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// Sorted latencies (ns) spread over the distribution, for the CDF chart.
    #[serde(skip)]
    pub cdf_ns: Vec<u64>,
}

fn ms(ns: u64) -> f64 {
    (ns as f64 / 1e4).round() / 100.0
}

fn us(ns: u64) -> f64 {
    // Two decimals: the histogram's precision is far coarser.
    (ns as f64 / 10.0).round() / 100.0
}

impl CaseResult {
    fn empty(scenario: Scenario, system: System, op: Op, qd: usize) -> Self {
        CaseResult {
            scenario: scenario.name(),
            system: system.name(),
            workload: op.workload_name(),
            qd,
            skipped: None,
            errors: None,
            requests: None,
            iops: None,
            p50_us: None,
            p99_us: None,
            p999_us: None,
            max_us: None,
            max_stall_ms: None,
            max_stall_ms_at_event: None,
            max_stall_began_ms: None,
            cpu_us_per_request: None,
            retransmissions: None,
            impair_drops: None,
            first_error: None,
            note: None,
            cdf_ns: Vec::new(),
        }
    }

    pub fn skipped(scenario: Scenario, system: System, op: Op, qd: usize, why: String) -> Self {
        CaseResult {
            skipped: Some(why),
            ..Self::empty(scenario, system, op, qd)
        }
    }

    pub fn measured(
        scenario: Scenario,
        system: System,
        op: Op,
        qd: usize,
        o: &CaseOutcome,
    ) -> Self {
        let secs = o.elapsed.as_secs_f64().max(1e-9);
        let h = &o.latency;
        CaseResult {
            errors: Some(o.errors),
            requests: Some(o.completed),
            iops: Some((o.completed as f64 / secs).round()),
            p50_us: Some(us(h.quantile_ns(0.5))),
            p99_us: Some(us(h.quantile_ns(0.99))),
            p999_us: Some(us(h.quantile_ns(0.999))),
            max_us: Some(us(h.max_ns())),
            max_stall_ms: Some(ms(o.max_stall_ns)),
            max_stall_ms_at_event: o.max_stall_ns_at_event.map(ms),
            max_stall_began_ms: Some(ms(o.max_stall_since_ns)),
            cpu_us_per_request: o
                .cpu_ms
                .filter(|_| o.completed > 0)
                .map(|cpu| (cpu as f64 * 1000.0 / o.completed as f64 * 10.0).round() / 10.0),
            cdf_ns: h.cdf_points_ns(CDF_POINTS),
            ..Self::empty(scenario, system, op, qd)
        }
    }

    fn key(&self) -> String {
        format!("{}_qd{}", self.workload, self.qd)
    }

    pub fn progress_line(&self) -> String {
        let head = format!(
            "{} {} {} qd {}",
            self.scenario, self.system, self.workload, self.qd
        );
        match &self.skipped {
            Some(why) => format!("{head}: skipped: {why}"),
            None => format!(
                "{head}: {} IOPS, p50 {} us, p99.9 {} us, max stall {} ms, {} errors",
                self.iops.unwrap_or(0.0),
                self.p50_us.unwrap_or(0.0),
                self.p999_us.unwrap_or(0.0),
                self.max_stall_ms.unwrap_or(0.0),
                self.errors.unwrap_or(0)
            ),
        }
    }
}

/// One of the targets, over every (workload, qd) where both sides were measured.
#[derive(Clone, Debug, Serialize)]
pub struct TargetRatio {
    /// What is compared, in words.
    pub what: &'static str,
    /// The bound, as text (`< 5`, `>= 5`...).
    pub target: &'static str,
    /// The worst case over the workloads (the one that decides `met`); null if none measured.
    pub value: Option<f64>,
    /// Whether the worst case meets the target; null if nothing could be measured.
    pub met: Option<bool>,
    /// The value of each workload, `randwrite_qd1` and so on.
    pub per_case: serde_json::Map<String, serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Ratios {
    pub srd_errors: TargetRatio,
    pub blackhole_max_stall_ms: TargetRatio,
    pub blackhole_stall_ms_at_event: TargetRatio,
    pub blackhole_p999_over_clean_p999: TargetRatio,
    pub nbd_loss_p999_over_srd_loss_p999: TargetRatio,
    pub srd_clean_p50_over_nbd_clean_p50: TargetRatio,
    /// Only with `--systems ...,srd_direct`: the same without the relay's hops.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub srd_direct_clean_p50_over_nbd_clean_p50: Option<TargetRatio>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub paths: usize,
    pub duration_s: f64,
    pub region_bytes: u64,
    pub seed: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub impair: Option<String>,
    /// The kernel network nbd_tcp (and srd, unless through the relay) ran over: loopback, or a
    /// veth pair between namespaces and its MTU.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub network: Option<String>,
    pub results: Vec<CaseResult>,
    pub ratios: Ratios,
}

fn find<'a>(
    results: &'a [CaseResult],
    scenario: &str,
    system: &str,
    key: &str,
) -> Option<&'a CaseResult> {
    results.iter().find(|r| {
        r.scenario == scenario && r.system == system && r.key() == key && r.skipped.is_none()
    })
}

/// Worst-is-largest or worst-is-smallest, and the bound.
#[derive(Clone, Copy)]
enum Bound {
    Below(f64),
    AtMost(f64),
    AtLeast(f64),
}

impl Bound {
    fn met(self, v: f64) -> bool {
        match self {
            Bound::Below(b) => v < b,
            Bound::AtMost(b) => v <= b,
            Bound::AtLeast(b) => v >= b,
        }
    }

    fn worse(self, a: f64, b: f64) -> f64 {
        match self {
            Bound::Below(_) | Bound::AtMost(_) => a.max(b),
            Bound::AtLeast(_) => a.min(b),
        }
    }
}

fn target(
    what: &'static str,
    text: &'static str,
    bound: Bound,
    values: Vec<(String, Option<f64>)>,
    missing: &str,
) -> TargetRatio {
    let mut per_case = serde_json::Map::new();
    let mut worst: Option<f64> = None;
    for (key, v) in values {
        per_case.insert(key, v.map_or(serde_json::Value::Null, |v| round3(v).into()));
        if let Some(v) = v.filter(|v| v.is_finite()) {
            worst = Some(worst.map_or(v, |w| bound.worse(w, v)));
        }
    }
    TargetRatio {
        what,
        target: text,
        value: worst.map(round3),
        met: worst.map(|w| bound.met(w)),
        per_case,
        note: worst.is_none().then(|| missing.to_string()),
    }
}

fn round3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

fn ratio(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => Some(a / b),
        _ => None,
    }
}

impl Ratios {
    pub fn of(results: &[CaseResult]) -> Ratios {
        let mut keys: Vec<String> = Vec::new();
        for r in results {
            if !keys.contains(&r.key()) {
                keys.push(r.key());
            }
        }
        let per = |f: &dyn Fn(&str) -> Option<f64>| -> Vec<(String, Option<f64>)> {
            keys.iter().map(|k| (k.clone(), f(k))).collect()
        };
        let srd = |scenario: &str, k: &str| find(results, scenario, "srd", k);
        let nbd = |scenario: &str, k: &str| find(results, scenario, "nbd_tcp", k);
        let srd_errors: Vec<(String, Option<f64>)> = results
            .iter()
            .filter(|r| r.system.starts_with("srd") && r.skipped.is_none())
            .map(|r| {
                (
                    match r.system {
                        "srd" => format!("{}_{}", r.scenario, r.key()),
                        other => format!("{other}_{}_{}", r.scenario, r.key()),
                    },
                    r.errors.map(|e| e as f64),
                )
            })
            .collect();
        Ratios {
            srd_errors: target(
                "I/O errors of srd (and srd_direct, srd_relay) in any case",
                "= 0",
                Bound::AtMost(0.0),
                srd_errors,
                "no srd case ran",
            ),
            blackhole_max_stall_ms: target(
                "srd, one path black-holed mid-run: longest stall (ms)",
                "< 5",
                Bound::Below(5.0),
                per(&|k| srd("blackhole", k).and_then(|r| r.max_stall_ms)),
                "srd blackhole not run",
            ),
            blackhole_stall_ms_at_event: target(
                "srd: longest stall overlapping the black hole's first 100 ms (ms)",
                "< 5",
                Bound::Below(5.0),
                per(&|k| srd("blackhole", k).and_then(|r| r.max_stall_ms_at_event)),
                "srd blackhole not run",
            ),
            blackhole_p999_over_clean_p999: target(
                "srd p99.9 with a path black-holed / srd clean p99.9",
                "< 3",
                Bound::Below(3.0),
                per(&|k| {
                    ratio(
                        srd("blackhole", k).and_then(|r| r.p999_us),
                        srd("clean", k).and_then(|r| r.p999_us),
                    )
                }),
                "srd blackhole or clean not run",
            ),
            nbd_loss_p999_over_srd_loss_p999: target(
                "p99.9 under 1% loss: nbd_tcp / srd",
                ">= 5",
                Bound::AtLeast(5.0),
                per(&|k| {
                    ratio(
                        nbd("loss", k).and_then(|r| r.p999_us),
                        srd("loss", k).and_then(|r| r.p999_us),
                    )
                }),
                "nbd_tcp or srd under loss not measured (see the skipped entries)",
            ),
            srd_clean_p50_over_nbd_clean_p50: target(
                "clean p50: srd / nbd_tcp",
                "<= 1.2",
                Bound::AtMost(1.2),
                per(&|k| {
                    ratio(
                        srd("clean", k).and_then(|r| r.p50_us),
                        nbd("clean", k).and_then(|r| r.p50_us),
                    )
                }),
                "srd or nbd_tcp clean not run",
            ),
            srd_direct_clean_p50_over_nbd_clean_p50: results
                .iter()
                .any(|r| r.system == "srd_direct")
                .then(|| {
                    target(
                        "clean p50: srd without the relay / nbd_tcp",
                        "<= 1.2",
                        Bound::AtMost(1.2),
                        per(&|k| {
                            ratio(
                                find(results, "clean", "srd_direct", k).and_then(|r| r.p50_us),
                                nbd("clean", k).and_then(|r| r.p50_us),
                            )
                        }),
                        "srd_direct or nbd_tcp clean not run",
                    )
                }),
        }
    }

    fn all(&self) -> Vec<(&'static str, &TargetRatio)> {
        let mut all = vec![
            ("srd_errors", &self.srd_errors),
            ("blackhole_max_stall_ms", &self.blackhole_max_stall_ms),
            (
                "blackhole_stall_ms_at_event",
                &self.blackhole_stall_ms_at_event,
            ),
            (
                "blackhole_p999_over_clean_p999",
                &self.blackhole_p999_over_clean_p999,
            ),
            (
                "nbd_loss_p999_over_srd_loss_p999",
                &self.nbd_loss_p999_over_srd_loss_p999,
            ),
            (
                "srd_clean_p50_over_nbd_clean_p50",
                &self.srd_clean_p50_over_nbd_clean_p50,
            ),
        ];
        if let Some(t) = &self.srd_direct_clean_p50_over_nbd_clean_p50 {
            all.push(("srd_direct_clean_p50_over_nbd_clean_p50", t));
        }
        all
    }
}

impl Report {
    pub fn new(opts: &BenchOptions, network: Option<String>, results: Vec<CaseResult>) -> Self {
        Report {
            paths: opts.paths,
            duration_s: opts.duration.as_secs_f64(),
            region_bytes: opts.region_blocks * 4096,
            seed: opts.seed,
            impair: (!opts.impair.trim().is_empty()).then(|| opts.impair.clone()),
            network,
            ratios: Ratios::of(&results),
            results,
        }
    }

    /// The latency CDF series of one workload, one per (scenario, system) measured.
    pub fn cdf_series(&self, workload: &str, qd: usize) -> Vec<(String, Vec<u64>)> {
        self.results
            .iter()
            .filter(|r| r.workload == workload && r.qd == qd && !r.cdf_ns.is_empty())
            .map(|r| (format!("{} {}", r.system, r.scenario), r.cdf_ns.clone()))
            .collect()
    }
}

fn cell(v: Option<f64>) -> String {
    v.map_or("-".into(), |v| {
        if v >= 100.0 {
            format!("{v:.0}")
        } else {
            format!("{v:.1}")
        }
    })
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "ferrite ebs bench: {} paths, {} s per case, {} KiB region, seed {}{}",
            self.paths,
            self.duration_s,
            self.region_bytes >> 10,
            self.seed,
            self.impair
                .as_ref()
                .map_or(String::new(), |s| format!(", --impair {s}"))
        )?;
        writeln!(
            f,
            "{:<10} {:<10} {:<10} {:>3} {:>6} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
            "scenario",
            "system",
            "workload",
            "qd",
            "errors",
            "IOPS",
            "p50 us",
            "p99 us",
            "p99.9 us",
            "max us",
            "stall ms",
            "@hole ms",
            "CPU us/op"
        )?;
        for r in &self.results {
            write!(
                f,
                "{:<10} {:<10} {:<10} {:>3} ",
                r.scenario, r.system, r.workload, r.qd
            )?;
            match &r.skipped {
                Some(why) => writeln!(f, "skipped: {why}")?,
                None => writeln!(
                    f,
                    "{:>6} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
                    r.errors.unwrap_or(0),
                    cell(r.iops),
                    cell(r.p50_us),
                    cell(r.p99_us),
                    cell(r.p999_us),
                    cell(r.max_us),
                    cell(r.max_stall_ms),
                    cell(r.max_stall_ms_at_event),
                    cell(r.cpu_us_per_request)
                )?,
            }
        }
        writeln!(f, "targets:")?;
        for (name, t) in self.ratios.all() {
            let verdict = match t.met {
                Some(true) => "met",
                Some(false) => "NOT met",
                None => "not measured",
            };
            writeln!(
                f,
                "  {name}: {} (target {}): {verdict}{}",
                t.value.map_or("-".into(), |v| v.to_string()),
                t.target,
                t.note.as_ref().map_or(String::new(), |n| format!(" ({n})"))
            )?;
        }
        if let Some(n) = &self.network {
            writeln!(f, "the kernel network: {n}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(scenario: Scenario, system: System, p50: f64, p999: f64, stall: f64) -> CaseResult {
        CaseResult {
            errors: Some(0),
            p50_us: Some(p50),
            p999_us: Some(p999),
            max_stall_ms: Some(stall),
            ..CaseResult::empty(scenario, system, Op::Read, 32)
        }
    }

    #[test]
    fn ratios_take_the_worst_case_and_say_met() {
        let results = vec![
            result(Scenario::Clean, System::Srd, 60.0, 300.0, 1.0),
            result(Scenario::Clean, System::NbdTcp, 50.0, 200.0, 1.0),
            result(Scenario::Loss, System::Srd, 70.0, 1000.0, 2.0),
            result(Scenario::Loss, System::NbdTcp, 60.0, 210_000.0, 200.0),
            result(Scenario::Blackhole, System::Srd, 65.0, 1200.0, 4.0),
        ];
        let r = Ratios::of(&results);
        assert_eq!(r.srd_errors.met, Some(true));
        assert_eq!(r.blackhole_max_stall_ms.value, Some(4.0));
        assert_eq!(r.blackhole_max_stall_ms.met, Some(true));
        assert_eq!(r.blackhole_p999_over_clean_p999.value, Some(4.0));
        assert_eq!(r.blackhole_p999_over_clean_p999.met, Some(false));
        assert_eq!(r.nbd_loss_p999_over_srd_loss_p999.value, Some(210.0));
        assert_eq!(r.nbd_loss_p999_over_srd_loss_p999.met, Some(true));
        assert_eq!(r.srd_clean_p50_over_nbd_clean_p50.value, Some(1.2));
        assert_eq!(r.srd_clean_p50_over_nbd_clean_p50.met, Some(true));
    }

    #[test]
    fn skipped_cases_leave_a_target_unmeasured() {
        let results = vec![
            result(Scenario::Loss, System::Srd, 70.0, 1000.0, 2.0),
            CaseResult::skipped(
                Scenario::Loss,
                System::NbdTcp,
                Op::Read,
                32,
                "no nft".into(),
            ),
        ];
        let r = Ratios::of(&results);
        assert_eq!(r.nbd_loss_p999_over_srd_loss_p999.met, None);
        assert!(r.nbd_loss_p999_over_srd_loss_p999.note.is_some());
        let json = serde_json::to_value(&results[1]).unwrap_or_default();
        assert_eq!(json["skipped"], "no nft");
        assert!(json.get("iops").is_none());
    }
}
