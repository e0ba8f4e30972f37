//! The timing model against hand-computed schedules, determinism, and its invariants under
//! random operation streams. Defaults: tR 50 us, tPROG 600 us, tBERS 3 ms, a 4 KiB transfer at
//! 800 MB/s 5.12 us, suspend 20 us, resume 10 us.

use proptest::prelude::*;

use super::*;
use crate::nand::Geometry;

const PAGE: u64 = 4096;
const XFER: u64 = 5_120;
const T_R: u64 = 50_000;
const T_PROG: u64 = 600_000;
const T_BERS: u64 = 3_000_000;
const SUS: u64 = 20_000;
const RES: u64 = 10_000;

/// 2 channels x 2 dies: dies 0 and 1 share channel 0, dies 2 and 3 channel 1.
fn geometry() -> Geometry {
    Geometry {
        blocks_per_plane: 4,
        pages_per_block: 4,
        ..Geometry::default()
    }
}

/// A traced model whose programs and erases both accept `max_suspends` suspensions.
fn model(suspend: bool, max_suspends: u32) -> TimingModel {
    model_with(suspend, max_suspends, max_suspends)
}

fn model_with(suspend: bool, per_program: u32, per_erase: u32) -> TimingModel {
    let config = TimingConfig {
        suspend: SuspendConfig {
            enabled: suspend,
            max_suspends_per_op: per_program,
            max_suspends_per_erase: per_erase,
            ..SuspendConfig::default()
        },
        ..TimingConfig::default()
    };
    let mut m = TimingModel::new(&config, &geometry()).expect("model");
    m.enable_trace();
    m
}

#[test]
fn two_reads_on_one_die_serialize() {
    let mut m = model(true, 4);
    let a = m.read(0, 0, PAGE);
    let b = m.read(0, 0, PAGE);
    assert_eq!((a.start_ns, a.end_ns, a.wait_ns), (0, T_R + XFER, 0));
    assert_eq!(
        b.start_ns,
        T_R + XFER,
        "the die holds the page until it is out"
    );
    assert_eq!(b.end_ns, 2 * (T_R + XFER));
    assert_eq!(b.wait_ns, T_R + XFER);
    assert!(!a.suspended_other && !b.suspended_other);
}

#[test]
fn reads_on_one_channel_overlap_sensing_and_serialize_transfers() {
    let mut m = model(true, 4);
    let a = m.read(0, 0, PAGE);
    let b = m.read(0, 1, PAGE);
    let other_channel = m.read(0, 2, PAGE);
    assert_eq!(a.end_ns, T_R + XFER);
    assert_eq!(b.start_ns, 0, "die 1 senses while die 0 does");
    assert_eq!(b.end_ns, T_R + 2 * XFER, "then waits for die 0's transfer");
    assert_eq!(b.wait_ns, XFER);
    assert_eq!(other_channel.end_ns, T_R + XFER);
    assert_eq!(m.channel_busy_until_ns(0), T_R + 2 * XFER);
}

#[test]
fn program_then_read_waits_without_suspend() {
    let mut m = model(false, 4);
    let p = m.program(0, 0, PAGE);
    assert_eq!((p.start_ns, p.end_ns), (0, XFER + T_PROG));
    let r = m.read(10_000, 0, PAGE);
    assert_eq!(r.start_ns, XFER + T_PROG);
    assert_eq!(r.end_ns, XFER + T_PROG + T_R + XFER);
    assert_eq!(r.wait_ns, r.end_ns - 10_000 - (T_R + XFER));
    assert!(!r.suspended_other);
    assert_eq!(m.die_busy_until_ns(0), r.end_ns);
}

#[test]
fn program_then_read_suspends_and_pushes_the_program() {
    let mut m = model(true, 4);
    let p = m.program(0, 0, PAGE);
    let r = m.read(10_000, 0, PAGE);
    assert!(r.suspended_other);
    assert_eq!(r.start_ns, 10_000 + SUS);
    assert_eq!(r.end_ns, 10_000 + SUS + T_R + XFER);
    assert_eq!(r.wait_ns, SUS);
    let pushed_ns = p.end_ns + (r.end_ns - 10_000) + RES;
    assert_eq!(m.die_busy_until_ns(0), pushed_ns);
    assert_eq!(m.die_activity(0, 50_000), DieActivity::Reading);
    assert_eq!(m.die_activity(0, 100_000), DieActivity::Programming);
    assert_eq!(m.die_activity(0, pushed_ns), DieActivity::Idle);

    // A read arriving while the program is still suspended chains: no second suspend cost.
    let chained = m.read(40_000, 0, PAGE);
    assert!(chained.suspended_other);
    assert_eq!(chained.start_ns, r.end_ns);
    assert_eq!(chained.end_ns, r.end_ns + T_R + XFER);
    assert_eq!(m.die_busy_until_ns(0), pushed_ns + T_R + XFER);
}

#[test]
fn a_read_during_the_transfer_in_suspends_at_the_array_phase() {
    let mut m = model(true, 4);
    m.program(0, 0, PAGE);
    let r = m.read(1_000, 0, PAGE);
    assert_eq!(
        r.start_ns,
        XFER + SUS,
        "no suspend before the program reaches the array"
    );
}

#[test]
fn suspend_limit_is_honoured() {
    let mut m = model(true, 2);
    let p = m.program(0, 0, PAGE);
    let r1 = m.read(100_000, 0, PAGE);
    let r2 = m.read(200_000, 0, PAGE);
    assert!(r1.suspended_other && r2.suspended_other);
    assert_eq!(r1.end_ns, 100_000 + SUS + T_R + XFER);
    assert_eq!(r2.end_ns, 200_000 + SUS + T_R + XFER);
    let program_end_ns = p.end_ns + 2 * (SUS + T_R + XFER + RES);
    assert_eq!(m.die_busy_until_ns(0), program_end_ns);
    let r3 = m.read(300_000, 0, PAGE);
    assert!(!r3.suspended_other, "third suspension refused");
    assert_eq!(r3.start_ns, program_end_ns);
    assert_eq!(r3.end_ns, program_end_ns + T_R + XFER);
}

#[test]
fn erase_blocks_the_die_for_tbers_only() {
    let mut m = model(false, 4);
    let e = m.erase(0, 0);
    assert_eq!((e.start_ns, e.end_ns), (0, T_BERS));
    assert_eq!(m.die_activity(0, 1), DieActivity::Erasing);
    let r = m.read(1_000, 0, PAGE);
    assert_eq!(r.end_ns, T_BERS + T_R + XFER);
    let neighbour = m.read(1_000, 1, PAGE);
    assert_eq!(
        neighbour.end_ns,
        1_000 + T_R + XFER,
        "no transfer: the channel stays free"
    );
    let p = m.program(0, 0, PAGE);
    assert_eq!(p.start_ns, r.end_ns);

    let mut s = model(true, 4);
    s.erase(0, 0);
    let r = s.read(1_000_000, 0, PAGE);
    assert_eq!(r.end_ns, 1_000_000 + SUS + T_R + XFER);
    assert_eq!(s.die_busy_until_ns(0), T_BERS + SUS + T_R + XFER + RES);
}

#[test]
fn a_transfer_takes_the_earliest_gap_on_its_bus() {
    let mut m = model(true, 4);
    let r = m.read(0, 0, PAGE);
    let p = m.program(0, 1, PAGE);
    assert_eq!(p.start_ns, 0, "the bus is free while die 0 senses");
    assert_eq!(m.next_event_after_ns(0), Some(XFER));
    assert_eq!(m.next_event_after_ns(XFER), Some(r.end_ns));

    let mut m = model(true, 4);
    let r = m.read(0, 0, PAGE);
    let p = m.program(T_R - 3_000, 1, PAGE);
    assert_eq!(
        p.start_ns, r.end_ns,
        "a 3 us gap does not fit a 5.12 us transfer"
    );
}

/// A seeded stream of operations: (kind 0..3, die, gap before it in ns).
fn stream(seed: u64, n: usize) -> Vec<(u8, u32, u64)> {
    let mut x = seed;
    (0..n)
        .map(|_| {
            x = crate::nand::mix(x.wrapping_add(1));
            ((x % 3) as u8, ((x >> 8) % 4) as u32, (x >> 16) % 200_000)
        })
        .collect()
}

fn run(m: &mut TimingModel, ops: &[(u8, u32, u64)]) -> Vec<OpTiming> {
    let mut now_ns = 0;
    ops.iter()
        .map(|&(kind, die, gap_ns)| {
            now_ns += gap_ns;
            match kind {
                0 => m.read(now_ns, die, PAGE),
                1 => m.program(now_ns, die, PAGE + 64),
                _ => m.erase(now_ns, die),
            }
        })
        .collect()
}

#[test]
fn same_operations_same_times() {
    let ops = stream(7, 2_000);
    let (mut a, mut b) = (model(true, 3), model(true, 3));
    let (ta, tb) = (run(&mut a, &ops), run(&mut b, &ops));
    assert_eq!(ta, tb);
    assert_eq!(a.trace(), b.trace());
    assert!(
        ta.iter().any(|t| t.suspended_other),
        "the stream exercises suspend"
    );
    assert!(ta.iter().any(|t| t.wait_ns > 0));
}

/// No unit (die, or channel bus) holds two segments at once.
fn assert_exclusive(trace: &[(bool, Segment)], on_die: bool) {
    let mut segments: Vec<Segment> = trace
        .iter()
        .filter(|(d, _)| *d == on_die)
        .map(|(_, s)| *s)
        .collect();
    segments.sort_by_key(|s| (s.unit, s.start_ns));
    for w in segments.windows(2) {
        if w[0].unit == w[1].unit {
            assert!(
                w[0].end_ns <= w[1].start_ns,
                "{} overlap: {:?} and {:?}",
                if on_die { "die" } else { "channel" },
                w[0],
                w[1]
            );
        }
    }
}

proptest! {
    #[test]
    fn a_die_runs_one_operation_and_a_channel_one_transfer_at_a_time(
        ops in proptest::collection::vec((0u8..3, 0u32..4, 0u64..100_000), 1..200),
        suspend in any::<bool>(),
        max_suspends in 0u32..4,
    ) {
        let mut m = model(suspend, max_suspends);
        let timings = run(&mut m, &ops);
        for t in &timings {
            prop_assert!(t.issued_ns <= t.start_ns && t.start_ns < t.end_ns);
            prop_assert!(suspend || !t.suspended_other);
        }
        let trace = m.trace();
        assert_exclusive(&trace, true);
        assert_exclusive(&trace, false);
        // Every op's own work is on the trace: die time covers service time in total.
        let die_ns: u64 = trace.iter().filter(|(d, _)| *d).map(|(_, s)| s.end_ns - s.start_ns).sum();
        let service_ns: u64 = timings.iter().map(|t| t.latency_ns() - t.wait_ns).sum();
        prop_assert!(die_ns >= service_ns, "die time {die_ns} < service {service_ns}");
    }
}

#[test]
fn model_rejects_a_bad_config() {
    let config = TimingConfig {
        read_us: 0,
        ..TimingConfig::default()
    };
    assert!(matches!(
        TimingModel::new(&config, &geometry()),
        Err(TimingError::OutOfRange {
            field: "read_us",
            ..
        })
    ));
}

#[test]
fn programs_and_erases_have_their_own_suspend_limits() {
    // One suspension per program, three per erase: reads spaced past each suspended read.
    let mut m = model_with(true, 1, 3);
    let erase = m.erase(0, 0);
    let mut suspended = Vec::new();
    for i in 0..4u64 {
        let r = m.read(erase.start_ns + 100_000 + i * 200_000, 0, PAGE);
        suspended.push(r.suspended_other);
    }
    assert_eq!(
        suspended,
        [true, true, true, false],
        "the fourth waits for the erase"
    );
    let busy_ns = m.die_busy_until_ns(1);
    let program = m.program(busy_ns, 1, PAGE);
    let array_ns = program.end_ns - 600_000;
    let first = m.read(array_ns + 100_000, 1, PAGE);
    let program_end_ns = m.die_busy_until_ns(1);
    let second = m.read(array_ns + 300_000, 1, PAGE);
    assert!(first.suspended_other && !second.suspended_other);
    assert_eq!(
        second.start_ns, program_end_ns,
        "waits for the program's end"
    );
}
