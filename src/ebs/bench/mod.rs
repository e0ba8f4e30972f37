//! `ferrite ebs bench`: the figures of issue 7. For each scenario (clean, 1% loss on every path,
//! one path black-holed from mid-run on) and each system (`srd`: the EBS server, the impairment
//! relay and a sealed `RemoteVolume`; `nbd_tcp`: Ferrite's NBD export over one TCP connection,
//! with loss from nftables where the rig allows), 4 KiB random writes and reads at queue depth
//! 1 and 32: IOPS, latency percentiles, the longest stall, errors; then the issue's targets as
//! ratios. docs/ebs-bench.md has the figures and what they mean.
//!
//! ```text
//!  mod.rs       options, scenarios, the run of every case
//!  workload.rs  the closed-loop workload over a `Target`, and the prefill
//!  srd.rs       the srd system
//!  net.rs       the kernel network: namespaces, nftables loss and black holes
//!  nbd.rs       the nbd_tcp system
//!  stats.rs     latency histogram and stall tracking
//!  report.rs    results, target ratios, JSON and the table
//! ```

pub mod nbd;
pub mod net;
pub mod report;
pub mod srd;
pub mod stats;
pub mod workload;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use ebs_server::impair::{Schedule, parse_spec};
use ftl::nand::{FaultConfig, Geometry, MemNand, Nand};

use report::{CaseResult, Report};
use workload::{Op, Target, prefill, run_case};

/// Paths of the srd system: at least 2 (a black hole on the only path is an outage, not a
/// path failure), at most the relay's ceiling.
pub const PATHS_MIN: usize = 2;
pub const PATHS_MAX: usize = ebs_server::impair::PATHS_MAX;
/// Measured time per case.
pub const DURATION_MIN: Duration = Duration::from_millis(100);
pub const DURATION_MAX: Duration = Duration::from_secs(60);
/// The random region, in 4 KiB blocks: a multiple of the volume extent, 256 KiB to 256 MiB
/// (each case formats a RAM FTL of about 1.6 times it).
pub const REGION_BLOCKS_MIN: u64 = 64;
pub const REGION_BLOCKS_MAX: u64 = 65_536;
pub const REGION_BLOCKS_DEFAULT: u64 = 4_096;
/// The loss of the `loss` scenario, on every path and in both directions.
pub const LOSS_PERCENT: u8 = 1;
/// Queue depths measured.
pub const QUEUE_DEPTHS: [usize; 2] = [1, 32];
/// MTU of the veth pair: jumbo frames, as the data-center networks SRD runs on have; an srd
/// datagram of one 4 KiB block (4288 bytes sealed) then crosses as one packet.
pub const MTU_DEFAULT: u32 = 9000;
/// Devices under each case's FTL.
const DEVICES: u32 = 2;
/// Depth of the (unmeasured) prefill.
const PREFILL_QD: usize = 32;
const PREFILL_TIMEOUT: Duration = Duration::from_secs(120);

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Scenario {
    Clean,
    Loss,
    Blackhole,
}

impl Scenario {
    pub const ALL: [Scenario; 3] = [Scenario::Clean, Scenario::Loss, Scenario::Blackhole];

    pub fn name(self) -> &'static str {
        match self {
            Scenario::Clean => "clean",
            Scenario::Loss => "loss",
            Scenario::Blackhole => "blackhole",
        }
    }

    /// The relay spec of the scenario, before `--impair`: times count from the case's start.
    pub fn srd_spec(self, paths: usize, duration: Duration) -> String {
        match self {
            Scenario::Clean => String::new(),
            Scenario::Loss => format!("loss={LOSS_PERCENT}%"),
            Scenario::Blackhole => format!(
                "path{}:blackhole@{}us",
                black_hole_path(paths),
                duration.as_micros() / 2
            ),
        }
    }
}

/// The path the blackhole scenario takes away: one in the middle, not path 0, which carries the
/// handshake's first packets.
pub fn black_hole_path(paths: usize) -> usize {
    paths / 2
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum System {
    /// srd over the kernel network (namespaces, nftables) where the bench has one and no
    /// `--impair` asks for what only the relay does; through the relay otherwise.
    Srd,
    /// Ferrite's NBD export of the same RAM FTL over one TCP connection, pipelined to the queue
    /// depth.
    #[value(name = "nbd_tcp")]
    NbdTcp,
    /// srd straight over loopback (clean only): the transport without any impairment machinery.
    #[value(name = "srd_direct")]
    SrdDirect,
    /// srd through the user-space impairment relay, always.
    #[value(name = "srd_relay")]
    SrdRelay,
}

impl System {
    /// What runs by default: the issue's two systems.
    pub const ALL: [System; 2] = [System::Srd, System::NbdTcp];

    pub fn name(self) -> &'static str {
        match self {
            System::Srd => "srd",
            System::NbdTcp => "nbd_tcp",
            System::SrdDirect => "srd_direct",
            System::SrdRelay => "srd_relay",
        }
    }
}

#[derive(Clone, Debug)]
pub struct BenchOptions {
    pub paths: usize,
    /// Added after each scenario's own relay spec (srd only).
    pub impair: String,
    pub duration: Duration,
    pub seed: u64,
    pub region_blocks: u64,
    pub scenarios: Vec<Scenario>,
    pub systems: Vec<System>,
    /// MTU of the veth pair of the kernel network.
    pub mtu: u32,
    /// One line per case on stderr.
    pub progress: bool,
}

impl BenchOptions {
    pub fn validate(&self) -> Result<(), String> {
        if !(PATHS_MIN..=PATHS_MAX).contains(&self.paths) {
            return Err(format!(
                "--paths {} is not in {PATHS_MIN}..={PATHS_MAX}",
                self.paths
            ));
        }
        if !(DURATION_MIN..=DURATION_MAX).contains(&self.duration) {
            return Err(format!(
                "--duration {:?} is not in {:?}..={:?}",
                self.duration, DURATION_MIN, DURATION_MAX
            ));
        }
        if !(REGION_BLOCKS_MIN..=REGION_BLOCKS_MAX).contains(&self.region_blocks)
            || !self.region_blocks.is_multiple_of(REGION_BLOCKS_MIN)
        {
            return Err(format!(
                "--region of {} blocks: must be a multiple of 256K from 256K to 256M",
                self.region_blocks
            ));
        }
        if self.scenarios.is_empty() || self.systems.is_empty() {
            return Err("no scenario or no system to run".into());
        }
        // Every scenario's spec with --impair on top must parse, before anything starts.
        for s in &self.scenarios {
            self.schedule(*s)?;
        }
        Ok(())
    }

    /// The srd relay schedule of a scenario: its own spec, then `--impair`.
    pub fn schedule(&self, scenario: Scenario) -> Result<Schedule, String> {
        let own = scenario.srd_spec(self.paths, self.duration);
        let spec = match (own.is_empty(), self.impair.trim().is_empty()) {
            (_, true) => own,
            (true, false) => self.impair.clone(),
            (false, false) => format!("{own};{}", self.impair),
        };
        parse_spec(&spec, self.paths).map_err(|e| format!("--impair: {e}"))
    }
}

/// `devices` RAM NAND devices of `geometry`.
pub fn ram_devices(geometry: Geometry, devices: u32) -> Result<Vec<Arc<dyn Nand>>, String> {
    (0..devices)
        .map(|i| {
            MemNand::new(geometry, FaultConfig::none().for_device(i), None)
                .map(|d| Arc::new(d) as Arc<dyn Nand>)
                .map_err(|e| format!("RAM NAND device {i}: {e}"))
        })
        .collect()
}

/// A geometry whose FTL exports the region with room to spare: about 1.6 times it raw, so GC
/// runs (writes overwrite a full region) without dominating, the same for both systems.
pub fn geometry_for(region_blocks: u64) -> Geometry {
    const PAGES_PER_BLOCK: u32 = 64;
    const DIES: u64 = 2;
    let per_plane = (region_blocks * 8 / 5).div_ceil(u64::from(DEVICES) * DIES * 64) + 12;
    Geometry {
        channels: 1,
        dies_per_channel: DIES as u32,
        planes_per_die: 1,
        blocks_per_plane: per_plane as u32,
        pages_per_block: PAGES_PER_BLOCK,
        page_size: 4096,
        oob_size: 64,
    }
}

/// A change to the network at a time since the case started.
type Event<'a> = (
    Duration,
    Box<dyn FnOnce() -> Result<(), String> + Send + 'a>,
);

/// Runs `body` while a timer thread applies `events` at their times; returns what `body`
/// returned and the events' errors. The timer thread gives up on events still due when `body`
/// ends.
fn with_timeline<'a, R>(
    start: Instant,
    events: Vec<Event<'a>>,
    body: impl FnOnce() -> R,
) -> (R, Vec<String>) {
    let done = AtomicBool::new(false);
    std::thread::scope(|s| {
        let timer = s.spawn(|| {
            let mut errors = Vec::new();
            for (at, apply) in events {
                loop {
                    if done.load(Ordering::Relaxed) {
                        return errors;
                    }
                    let left = (start + at).saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        break;
                    }
                    // Short naps so the thread ends promptly with the case.
                    std::thread::sleep(left.min(Duration::from_millis(5)));
                }
                if let Err(e) = apply() {
                    errors.push(e);
                }
            }
            errors
        });
        let r = body();
        done.store(true, Ordering::Relaxed);
        let errors = timer
            .join()
            .unwrap_or_else(|_| vec!["the timeline thread panicked".into()]);
        (r, errors)
    })
}

/// One case's workload.
#[derive(Clone, Copy, Debug)]
struct Case {
    scenario: Scenario,
    op: Op,
    qd: usize,
    seed: u64,
}

/// Runs every case; the report holds them in run order and the target ratios.
pub fn run(opts: &BenchOptions) -> Result<Report, String> {
    opts.validate()?;
    let geometry = geometry_for(opts.region_blocks);
    let net = opts
        .systems
        .iter()
        .any(|s| matches!(s, System::NbdTcp | System::Srd))
        .then(|| net::Network::detect(opts.mtu));
    let cases: Vec<(Op, usize)> = [Op::Write, Op::Read]
        .iter()
        .flat_map(|&op| QUEUE_DEPTHS.iter().map(move |&qd| (op, qd)))
        .collect();
    let total = opts.scenarios.len() * opts.systems.len() * cases.len();
    let mut results = Vec::with_capacity(total);
    let mut failure = None;
    'all: for &scenario in &opts.scenarios {
        for &system in &opts.systems {
            for (i, &(op, qd)) in cases.iter().enumerate() {
                let case = Case {
                    scenario,
                    op,
                    qd,
                    // The same address sequence for both systems and every scenario.
                    seed: opts.seed.wrapping_mul(31).wrapping_add(i as u64),
                };
                let result = match (system, &net) {
                    (System::Srd, Some(net))
                        if net.loss_unavailable().is_none() && opts.impair.trim().is_empty() =>
                    {
                        srd_case(opts, geometry, case, System::Srd, srd::Route::Kernel(net))
                    }
                    (System::Srd, _) => {
                        srd_case(opts, geometry, case, System::Srd, srd::Route::Relay)
                    }
                    (System::SrdRelay, _) => {
                        srd_case(opts, geometry, case, System::SrdRelay, srd::Route::Relay)
                    }
                    (System::SrdDirect, _) if scenario != Scenario::Clean => {
                        Ok(CaseResult::skipped(
                            scenario,
                            system,
                            op,
                            qd,
                            "srd_direct has no relay, so no impairment: clean only".into(),
                        ))
                    }
                    (System::SrdDirect, _) => {
                        srd_case(opts, geometry, case, System::SrdDirect, srd::Route::Direct)
                    }
                    (System::NbdTcp, Some(net)) => nbd_case(opts, geometry, net, case),
                    (System::NbdTcp, None) => Err("no network for nbd_tcp".into()),
                };
                match result {
                    Ok(r) => {
                        if opts.progress {
                            eprintln!("[{}/{total}] {}", results.len() + 1, r.progress_line());
                        }
                        results.push(r);
                    }
                    Err(e) => {
                        failure = Some(format!(
                            "{} {} {} qd {qd}: {e}",
                            scenario.name(),
                            system.name(),
                            op.workload_name()
                        ));
                        break 'all;
                    }
                }
            }
        }
    }
    let network = net.as_ref().map(|n| n.describe().to_string());
    if let Some(net) = net {
        net.teardown();
    }
    if let Some(f) = failure {
        return Err(f);
    }
    Ok(Report::new(opts, network, results))
}

fn case_spec(opts: &BenchOptions, case: Case) -> workload::CaseSpec {
    workload::CaseSpec {
        op: case.op,
        qd: case.qd,
        region_blocks: opts.region_blocks,
        duration: opts.duration,
        seed: case.seed,
        // The black hole falls at half time for both systems (srd_spec, nbd_case).
        event_at: (case.scenario == Scenario::Blackhole).then_some(opts.duration / 2),
    }
}

fn srd_case(
    opts: &BenchOptions,
    geometry: Geometry,
    case: Case,
    system: System,
    route: srd::Route<'_>,
) -> Result<CaseResult, String> {
    let schedule = opts.schedule(case.scenario)?;
    let mut sys = srd::SrdSystem::start(
        route,
        opts.paths,
        opts.region_blocks,
        geometry,
        DEVICES,
        opts.seed ^ case.seed,
    )?;
    prefill(&mut sys, opts.region_blocks, PREFILL_QD, PREFILL_TIMEOUT)?;
    let retransmissions_before = sys.retransmissions();
    let dropped_before = sys.relay_dropped();
    let mut events: Vec<Event<'_>> = Vec::new();
    if let Some(relay) = sys.relay() {
        srd::apply_initial(&relay, &schedule)?;
        for e in &schedule.events {
            let relay = relay.clone();
            let paths = opts.paths;
            let apply: Box<dyn FnOnce() -> Result<(), String> + Send> =
                Box::new(move || srd::apply_change(&relay, e.scope, &e.change, paths));
            events.push((Duration::from_micros(e.at_us), apply));
        }
    }
    if let srd::Route::Kernel(net) = route {
        // The scenarios as nftables rules: the same loss as nbd_tcp's, and the black hole of the
        // same path at the same time as the relay's (Scenario::srd_spec).
        let loss = match case.scenario {
            Scenario::Loss => LOSS_PERCENT,
            Scenario::Clean | Scenario::Blackhole => 0,
        };
        net.set_loss_percent(loss)?;
        if case.scenario == Scenario::Blackhole {
            let path = black_hole_path(opts.paths);
            let port = sys
                .server_port(path)
                .ok_or_else(|| format!("the server has no path {path}"))?;
            let armed = net.arm_udp_black_hole(port)?;
            events.push((opts.duration / 2, Box::new(move || armed.fire())));
        }
    }
    let start = Instant::now();
    let (outcome, event_errors) = with_timeline(start, events, || {
        run_case(&mut sys as &mut dyn Target, case_spec(opts, case), start)
    });
    let kernel_drops = match route {
        srd::Route::Kernel(net) => {
            let drops = net
                .dropped_packets()
                .zip(net.black_hole_drops())
                .map(|(loss, hole)| loss + hole);
            // Lifted before the detach, so it can be answered.
            net.set_black_hole(false)
                .and_then(|()| net.set_loss_percent(0))?;
            drops
        }
        srd::Route::Relay | srd::Route::Direct => None,
    };
    if let Some(e) = event_errors.first() {
        return Err(format!("applying the scenario: {e}"));
    }
    let mut r = CaseResult::measured(case.scenario, system, case.op, case.qd, &outcome);
    r.retransmissions = Some(sys.retransmissions() - retransmissions_before);
    r.note = Some(match route {
        srd::Route::Kernel(net) => {
            r.impair_drops = kernel_drops;
            format!(
                "over {}: nftables drops the loss and the black-holed path's port",
                net.describe()
            )
        }
        srd::Route::Relay => {
            r.impair_drops = Some(sys.relay_dropped().saturating_sub(dropped_before));
            "through the user-space impairment relay on loopback".into()
        }
        srd::Route::Direct => {
            "srd without the relay: client and server sockets talk directly".into()
        }
    });
    r.first_error = sys.first_error.take().or(outcome.failure.clone());
    if !opts.impair.trim().is_empty() {
        r.note = Some(format!(
            "through the relay, with --impair {:?} on top of the scenario",
            opts.impair
        ));
    }
    sys.stop();
    Ok(r)
}

fn nbd_case(
    opts: &BenchOptions,
    geometry: Geometry,
    net: &net::Network,
    case: Case,
) -> Result<CaseResult, String> {
    let skipped = |why: String| {
        Ok(CaseResult::skipped(
            case.scenario,
            System::NbdTcp,
            case.op,
            case.qd,
            why,
        ))
    };
    if case.scenario != Scenario::Clean
        && let Some(why) = net.loss_unavailable()
    {
        return skipped(format!("cannot impose loss on TCP here: {why}"));
    }
    let mut sys = nbd::NbdSystem::start(geometry, DEVICES, net)?;
    prefill(&mut sys, opts.region_blocks, PREFILL_QD, PREFILL_TIMEOUT)?;
    let percent = if case.scenario == Scenario::Loss {
        LOSS_PERCENT
    } else {
        0
    };
    net.set_loss_percent(percent)?;
    let mut events: Vec<Event<'_>> = Vec::new();
    if case.scenario == Scenario::Blackhole {
        // One TCP flow rides one path: black-holing "one of four paths" is, for the flow on it,
        // black-holing the flow. Every packet of both directions is dropped from mid-run on.
        let apply: Box<dyn FnOnce() -> Result<(), String> + Send> =
            Box::new(move || net.set_black_hole(true));
        events.push((opts.duration / 2, apply));
    }
    let start = Instant::now();
    let (outcome, event_errors) = with_timeline(start, events, || {
        run_case(&mut sys as &mut dyn Target, case_spec(opts, case), start)
    });
    let drops = net.dropped_packets();
    // Lifted before the disconnect, so the connection can close cleanly.
    let lifted = net
        .set_black_hole(false)
        .and_then(|()| net.set_loss_percent(0));
    let first_error = sys.first_error.take();
    sys.stop();
    if let Some(e) = event_errors.first() {
        return Err(format!("applying the scenario: {e}"));
    }
    lifted?;
    let mut r = CaseResult::measured(case.scenario, System::NbdTcp, case.op, case.qd, &outcome);
    r.impair_drops = drops;
    r.first_error = first_error.or(outcome.failure.clone());
    r.note = Some(nbd_note(case.scenario, opts, net, outcome.errors));
    Ok(r)
}

fn nbd_note(scenario: Scenario, opts: &BenchOptions, net: &net::Network, errors: u64) -> String {
    let mut note = match scenario {
        Scenario::Clean => format!("one connection, {}", net.describe()),
        Scenario::Loss => format!(
            "one connection; nftables drops {LOSS_PERCENT}% of the packets arriving on each veth end"
        ),
        Scenario::Blackhole => format!(
            "one TCP flow rides one of the {paths} paths (ECMP hashing): with probability 1/{paths} \
             it is the black-holed one, and this entry is that case: every packet dropped from \
             mid-run on; TCP cannot move the flow to another path, so {errors} requests were \
             given up {drain} ms after the end of the run (counted as errors, and in the \
             latency figures with the time they had waited) and the stall lasts from the black \
             hole to that give-up. In the other {others}/{paths} of cases the flow is unaffected \
             and looks like `clean`",
            paths = opts.paths,
            drain = workload::DRAIN_TIMEOUT.as_millis(),
            others = opts.paths - 1,
        ),
    };
    if !opts.impair.trim().is_empty() {
        note.push_str("; --impair applies to srd only");
    }
    note
}

/// The latency CDFs of every case, one chart per (workload, qd), stacked in one SVG.
pub fn svg(report: &Report) -> String {
    const CHART_HEIGHT: usize = 360;
    let mut charts = Vec::new();
    for op in [Op::Write, Op::Read] {
        for qd in QUEUE_DEPTHS {
            let series = report.cdf_series(op.workload_name(), qd);
            if series.is_empty() {
                continue;
            }
            let title = format!(
                "{} qd {qd}, 4 KiB, {} paths: latency CDF per system and scenario",
                op.workload_name(),
                report.paths
            );
            charts.push(crate::svg::latency_cdf_named(&title, &series));
        }
    }
    let mut out = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"720\" height=\"{}\">\n",
        CHART_HEIGHT * charts.len().max(1)
    );
    for (i, chart) in charts.iter().enumerate() {
        out.push_str(&chart.replacen("<svg ", &format!("<svg y=\"{}\" ", i * CHART_HEIGHT), 1));
    }
    out.push_str("</svg>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options() -> BenchOptions {
        BenchOptions {
            paths: 4,
            impair: String::new(),
            duration: Duration::from_secs(5),
            seed: 1,
            region_blocks: REGION_BLOCKS_DEFAULT,
            scenarios: Scenario::ALL.to_vec(),
            systems: System::ALL.to_vec(),
            mtu: MTU_DEFAULT,
            progress: false,
        }
    }

    #[test]
    fn scenarios_are_relay_specs() {
        let o = options();
        assert!(
            o.schedule(Scenario::Clean)
                .unwrap_or_else(|e| panic!("{e}"))
                .events
                .is_empty()
        );
        let loss = o.schedule(Scenario::Loss).unwrap_or_else(|e| panic!("{e}"));
        assert!(loss.initial.iter().all(|p| p.loss == 0.01));
        let hole = o
            .schedule(Scenario::Blackhole)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(hole.events.len(), 1);
        assert_eq!(hole.events[0].at_us, 2_500_000);
        assert_eq!(hole.events[0].scope, ebs_server::impair::Scope::Path(2));
        // --impair comes on top of the scenario's own spec.
        let o = BenchOptions {
            impair: "delay=100us".into(),
            ..options()
        };
        let loss = o.schedule(Scenario::Loss).unwrap_or_else(|e| panic!("{e}"));
        assert!(
            loss.initial
                .iter()
                .all(|p| p.loss == 0.01 && p.delay_us == 100)
        );
    }

    #[test]
    fn bad_options_are_refused_with_a_reason() {
        for (o, says) in [
            (
                BenchOptions {
                    paths: 1,
                    ..options()
                },
                "--paths",
            ),
            (
                BenchOptions {
                    paths: 65,
                    ..options()
                },
                "--paths",
            ),
            (
                BenchOptions {
                    duration: Duration::from_millis(10),
                    ..options()
                },
                "--duration",
            ),
            (
                BenchOptions {
                    duration: Duration::from_secs(61),
                    ..options()
                },
                "--duration",
            ),
            (
                BenchOptions {
                    region_blocks: 100,
                    ..options()
                },
                "--region",
            ),
            (
                BenchOptions {
                    region_blocks: REGION_BLOCKS_MAX * 2,
                    ..options()
                },
                "--region",
            ),
            (
                BenchOptions {
                    impair: "path9:blackhole".into(),
                    ..options()
                },
                "path 9 does not exist",
            ),
            (
                BenchOptions {
                    impair: "loss=2".into(),
                    ..options()
                },
                "--impair",
            ),
            (
                BenchOptions {
                    scenarios: vec![],
                    ..options()
                },
                "no scenario",
            ),
        ] {
            let e = o.validate().unwrap_err();
            assert!(e.contains(says), "{e}");
        }
        assert_eq!(options().validate(), Ok(()));
    }

    #[test]
    fn the_geometry_holds_the_region() {
        for region in [REGION_BLOCKS_MIN, REGION_BLOCKS_DEFAULT, REGION_BLOCKS_MAX] {
            let g = geometry_for(region);
            let raw = u64::from(DEVICES) * g.pages();
            assert!(raw * 5 >= region * 8, "{region}: {raw}");
        }
    }

    #[test]
    fn the_timeline_applies_events_in_time_and_stops_with_the_body() {
        let hits = std::sync::Mutex::new(Vec::new());
        let start = Instant::now();
        let events: Vec<Event<'_>> = vec![
            (
                Duration::from_millis(10),
                Box::new(|| {
                    hits.lock()
                        .map_err(|e| e.to_string())?
                        .push(start.elapsed());
                    Ok(())
                }),
            ),
            (
                Duration::from_millis(20),
                Box::new(|| Err("boom".to_string())),
            ),
            (
                Duration::from_secs(3600),
                Box::new(|| Err("never".to_string())),
            ),
        ];
        let (r, errors) = with_timeline(start, events, || {
            std::thread::sleep(Duration::from_millis(50));
            7
        });
        assert_eq!(r, 7);
        assert_eq!(errors, vec!["boom".to_string()]);
        let hits = hits.lock().map(|h| h.clone()).unwrap_or_default();
        assert_eq!(hits.len(), 1);
        assert!(hits[0] >= Duration::from_millis(10));
        assert!(start.elapsed() < Duration::from_secs(10));
    }
}
