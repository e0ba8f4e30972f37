//! The timing model: a pure, deterministic account of when each NAND operation runs.
//!
//! State per die: when it is free, and the program or erase it is running (which a read may
//! suspend). State per channel: when its bus is free. Times are u64 nanoseconds on whatever
//! clock the caller uses; the model never reads a clock and holds no floats.
//!
//! - read at T: waits for the die, senses for tR, waits for the channel, transfers out. The die is
//!   held until the transfer ends (its page register holds the data until then).
//! - program at T: waits for the die and the channel, transfers in, then the die programs for tPROG.
//! - erase at T: waits for the die, erases for tBERS; no transfer.
//! - suspend: a read arriving while the die's last operation is a program or erase in its array
//!   phase suspends it (if enabled and under the per-operation limit): the read senses after the
//!   suspend cost, and the suspended operation ends later by the read's die time (suspend cost,
//!   sensing, channel wait, transfer) plus the resume cost. Reads arriving while the die is still
//!   suspended chain onto the same suspension without paying it again.
//! - A transfer takes the earliest gap on its channel's bus that fits (`bus.rs`), so a read queued
//!   behind an erase does not hold the bus of the other dies meanwhile. Transfers that ended before
//!   the latest issue time are forgotten: an operation issued earlier than one charged before it
//!   (threads racing on a real clock) cannot use those gaps.

use super::bus::Bus;
use super::config::TimingConfig;
use crate::nand::Geometry;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum OpKind {
    Read,
    Program,
    Erase,
}

/// When one operation ran. `wait_ns` is the time it spent queued (for the die, the channel, or a
/// suspend), i.e. `end_ns - issued_ns` minus its own service time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OpTiming {
    pub kind: OpKind,
    pub issued_ns: u64,
    /// The operation's first own work: sensing (read), transfer in (program), erase.
    pub start_ns: u64,
    /// Completion as known when charged. A program or erase suspended later by reads completes
    /// later; `TimingModel::die_busy_until_ns` has the pushed figure.
    pub end_ns: u64,
    pub wait_ns: u64,
    /// This read suspended a program or erase (or chained onto a suspension).
    pub suspended_other: bool,
}

impl OpTiming {
    pub fn latency_ns(&self) -> u64 {
        self.end_ns - self.issued_ns
    }
}

/// A stretch of time a die or a channel spent on one operation, for checking the model's
/// invariants (recorded only when tracing is on).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment {
    pub kind: OpKind,
    /// Die index for die segments, channel index for bus segments.
    pub unit: u32,
    pub start_ns: u64,
    pub end_ns: u64,
}

/// A program or erase on a die, which reads may suspend.
#[derive(Clone, Copy, Debug)]
struct LongOp {
    kind: OpKind,
    /// Start of the array phase (after the transfer in, for a program): no suspend before it.
    array_start_ns: u64,
    end_ns: u64,
    suspends: u32,
    /// Start of the die segment not yet traced (moves past each suspension).
    segment_start_ns: u64,
}

#[derive(Clone, Copy, Debug, Default)]
struct Die {
    busy_until_ns: u64,
    long: Option<LongOp>,
    /// While the die is suspended: when its reads end and the resume begins.
    suspended_until_ns: u64,
}

/// What a die is doing at a given instant, for schedulers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DieActivity {
    Idle,
    /// Busy with reads (or a suspended program/erase waiting to resume).
    Reading,
    Programming,
    Erasing,
}

#[derive(Debug)]
pub struct TimingModel {
    read_ns: u64,
    program_ns: u64,
    erase_ns: u64,
    suspend_enabled: bool,
    suspend_cost_ns: u64,
    resume_cost_ns: u64,
    max_suspends_per_op: u32,
    max_suspends_per_erase: u32,
    config: TimingConfig,
    dies_per_channel: u32,
    dies: Vec<Die>,
    channels: Vec<Bus>,
    trace: Option<Vec<(bool, Segment)>>,
}

const NS_PER_US: u64 = 1_000;

impl TimingModel {
    /// A model of one device: every die and channel idle at time 0.
    pub fn new(config: &TimingConfig, geometry: &Geometry) -> Result<Self, super::TimingError> {
        config.validate()?;
        assert!(geometry.channels > 0 && geometry.dies_per_channel > 0);
        Ok(Self {
            read_ns: config.read_us * NS_PER_US,
            program_ns: config.program_us * NS_PER_US,
            erase_ns: config.erase_us * NS_PER_US,
            suspend_enabled: config.suspend.enabled,
            suspend_cost_ns: config.suspend.suspend_cost_us * NS_PER_US,
            resume_cost_ns: config.suspend.resume_cost_us * NS_PER_US,
            max_suspends_per_op: config.suspend.max_suspends_per_op,
            max_suspends_per_erase: config.suspend.max_suspends_per_erase,
            config: *config,
            dies_per_channel: geometry.dies_per_channel,
            dies: vec![Die::default(); geometry.dies() as usize],
            channels: vec![Bus::default(); geometry.channels as usize],
            trace: None,
        })
    }

    /// Records every die and bus segment from now on (tests and debugging; costs memory).
    pub fn enable_trace(&mut self) {
        self.trace = Some(Vec::new());
    }

    /// Die segments (`.0 == true`) and bus segments recorded so far, including the unfinished
    /// part of programs and erases still running.
    pub fn trace(&self) -> Vec<(bool, Segment)> {
        let mut out = self.trace.clone().unwrap_or_default();
        for (index, die) in self.dies.iter().enumerate() {
            if let Some(long) = die.long {
                push_nonempty(
                    &mut out,
                    true,
                    long.kind,
                    index as u32,
                    long.segment_start_ns,
                    long.end_ns,
                );
            }
        }
        out
    }

    pub fn config(&self) -> &TimingConfig {
        &self.config
    }

    pub fn dies(&self) -> u32 {
        self.dies.len() as u32
    }

    pub fn channel_of_die(&self, die: u32) -> u32 {
        die / self.dies_per_channel
    }

    /// When the die finishes everything charged to it so far (suspended work included).
    pub fn die_busy_until_ns(&self, die: u32) -> u64 {
        self.dies[die as usize].busy_until_ns
    }

    pub fn channel_busy_until_ns(&self, channel: u32) -> u64 {
        self.channels[channel as usize].busy_until_ns()
    }

    /// What the die is doing at `at_ns` given what has been charged.
    pub fn die_activity(&self, die: u32, at_ns: u64) -> DieActivity {
        let d = &self.dies[die as usize];
        if at_ns >= d.busy_until_ns {
            return DieActivity::Idle;
        }
        match d.long {
            Some(long) if at_ns >= d.suspended_until_ns && at_ns < long.end_ns => match long.kind {
                OpKind::Program => DieActivity::Programming,
                _ => DieActivity::Erasing,
            },
            _ => DieActivity::Reading,
        }
    }

    /// The earliest instant after `after_ns` at which a die or a channel becomes free: where an
    /// event-driven caller advances a virtual clock to next.
    pub fn next_event_after_ns(&self, after_ns: u64) -> Option<u64> {
        self.dies
            .iter()
            .map(|d| d.busy_until_ns)
            .chain(self.channels.iter().flat_map(Bus::ends_ns))
            .filter(|&t| t > after_ns)
            .min()
    }

    /// Reads `bytes` (data and OOB that cross the bus) of a page on `die`, issued at `at_ns`.
    pub fn read(&mut self, at_ns: u64, die: u32, bytes: u64) -> OpTiming {
        let transfer_ns = self.config.transfer_ns(bytes);
        let channel = self.channel_of_die(die);
        self.channels[channel as usize].advance(at_ns);
        let d = self.dies[die as usize];
        let suspendable = d
            .long
            .filter(|long| d.busy_until_ns == long.end_ns && at_ns < long.end_ns);
        let (sense_start_ns, suspension) = match suspendable {
            // Chain onto a suspension still serving reads: no new suspend cost.
            Some(long) if self.suspend_enabled && at_ns < d.suspended_until_ns => (
                d.suspended_until_ns,
                Some((long, d.suspended_until_ns, false)),
            ),
            Some(long) if self.suspend_enabled && long.suspends < self.max_suspends(long.kind) => {
                let at = at_ns.max(long.array_start_ns);
                (at + self.suspend_cost_ns, Some((long, at, true)))
            }
            _ => (at_ns.max(d.busy_until_ns), None),
        };
        let sense_end_ns = sense_start_ns + self.read_ns;
        let bus_start_ns = self.channels[channel as usize].reserve(sense_end_ns, transfer_ns);
        let end_ns = bus_start_ns + transfer_ns;
        self.record(false, OpKind::Read, channel, bus_start_ns, end_ns);

        let die_state = &mut self.dies[die as usize];
        match suspension {
            Some((long, suspended_at_ns, new_suspend)) => {
                let mut long = long;
                let resume_ns = if new_suspend { self.resume_cost_ns } else { 0 };
                // The operation stands still from the suspension to the end of the read, and
                // pays the resume once per suspension.
                long.end_ns += (end_ns - suspended_at_ns) + resume_ns;
                let segment = (long.segment_start_ns, suspended_at_ns);
                long.segment_start_ns = end_ns;
                if new_suspend {
                    long.suspends += 1;
                }
                die_state.long = Some(long);
                die_state.busy_until_ns = long.end_ns;
                die_state.suspended_until_ns = end_ns;
                self.record(true, long.kind, die, segment.0, segment.1);
                self.record(true, OpKind::Read, die, suspended_at_ns, end_ns);
            }
            None => {
                die_state.busy_until_ns = end_ns;
                self.close_long(die);
                self.record(true, OpKind::Read, die, sense_start_ns, end_ns);
            }
        }
        let service_ns = self.read_ns + transfer_ns;
        timing(
            OpKind::Read,
            at_ns,
            sense_start_ns,
            end_ns,
            service_ns,
            suspension.is_some(),
        )
    }

    /// Programs a page of `bytes` (data and OOB) on `die`, issued at `at_ns`.
    pub fn program(&mut self, at_ns: u64, die: u32, bytes: u64) -> OpTiming {
        let transfer_ns = self.config.transfer_ns(bytes);
        let channel = self.channel_of_die(die);
        self.channels[channel as usize].advance(at_ns);
        let die_free_ns = at_ns.max(self.dies[die as usize].busy_until_ns);
        let start_ns = self.channels[channel as usize].reserve(die_free_ns, transfer_ns);
        let array_start_ns = start_ns + transfer_ns;
        let end_ns = array_start_ns + self.program_ns;
        self.record(false, OpKind::Program, channel, start_ns, array_start_ns);
        self.start_long(die, OpKind::Program, start_ns, array_start_ns, end_ns);
        timing(
            OpKind::Program,
            at_ns,
            start_ns,
            end_ns,
            transfer_ns + self.program_ns,
            false,
        )
    }

    /// Erases a block on `die`, issued at `at_ns`.
    pub fn erase(&mut self, at_ns: u64, die: u32) -> OpTiming {
        let start_ns = at_ns.max(self.dies[die as usize].busy_until_ns);
        let end_ns = start_ns + self.erase_ns;
        self.start_long(die, OpKind::Erase, start_ns, start_ns, end_ns);
        timing(OpKind::Erase, at_ns, start_ns, end_ns, self.erase_ns, false)
    }

    /// Suspensions an operation of `kind` (program or erase) accepts.
    fn max_suspends(&self, kind: OpKind) -> u32 {
        match kind {
            OpKind::Erase => self.max_suspends_per_erase,
            _ => self.max_suspends_per_op,
        }
    }

    fn start_long(
        &mut self,
        die: u32,
        kind: OpKind,
        start_ns: u64,
        array_start_ns: u64,
        end_ns: u64,
    ) {
        self.close_long(die);
        let d = &mut self.dies[die as usize];
        assert!(start_ns >= d.busy_until_ns);
        d.busy_until_ns = end_ns;
        d.suspended_until_ns = 0;
        d.long = Some(LongOp {
            kind,
            array_start_ns,
            end_ns,
            suspends: 0,
            segment_start_ns: start_ns,
        });
    }

    /// The die's program or erase can no longer be suspended: trace its last segment, forget it.
    fn close_long(&mut self, die: u32) {
        if let Some(long) = self.dies[die as usize].long.take() {
            self.record(true, long.kind, die, long.segment_start_ns, long.end_ns);
        }
    }

    fn record(&mut self, on_die: bool, kind: OpKind, unit: u32, start_ns: u64, end_ns: u64) {
        if let Some(trace) = self.trace.as_mut() {
            push_nonempty(trace, on_die, kind, unit, start_ns, end_ns);
        }
    }
}

fn push_nonempty(
    trace: &mut Vec<(bool, Segment)>,
    on_die: bool,
    kind: OpKind,
    unit: u32,
    start_ns: u64,
    end_ns: u64,
) {
    assert!(start_ns <= end_ns, "segment {start_ns}..{end_ns}");
    if start_ns < end_ns {
        trace.push((
            on_die,
            Segment {
                kind,
                unit,
                start_ns,
                end_ns,
            },
        ));
    }
}

fn timing(
    kind: OpKind,
    issued_ns: u64,
    start_ns: u64,
    end_ns: u64,
    service_ns: u64,
    suspended_other: bool,
) -> OpTiming {
    assert!(start_ns >= issued_ns && end_ns >= issued_ns + service_ns);
    OpTiming {
        kind,
        issued_ns,
        start_ns,
        end_ns,
        wait_ns: end_ns - issued_ns - service_ns,
        suspended_other,
    }
}
