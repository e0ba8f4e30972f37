//! The global GC scheduler: which dies may take garbage-collection work now.
//!
//! It sees every device's timing model, so it knows for each die when the work charged to it
//! ends. GC work (a relocation read or program, an erase) is issued only to a die that is idle at
//! the current time, i.e. that has no host operation queued: host reads never wait behind GC work
//! that was queued after them, and a read that arrives while GC work runs suspends it (program /
//! erase suspend in the timing model). On top of that:
//! - at most `max_gc_dies` (the configured share of all dies) have GC work in flight at once;
//! - spread across channels: a die may join only while its channel has fewer than
//!   `ceil(max_gc_dies / channels)` dies in GC (one move may then add its two dies there);
//! - staggered in time: erase starts are at least `tBERS / max_gc_dies` apart, so erases do not
//!   start in a burst on many dies;
//! - preemptible between page moves: the engine asks before each move (`Engine::background_gc`).
//!
//! The scheduler holds no FTL state; the engine tells it which dies it is about to touch and it
//! records what the models say those dies are busy with afterwards.

use std::sync::Arc;

use parking_lot::Mutex;
use serde::Serialize;

use crate::engine::{RANK_BUSY, RANK_COLLECTING, RANK_IDLE};
use crate::layout::Layout;
use crate::nand::timing::{Clock, TimingModel};

/// The timing side of the devices an FTL runs on: each device's model (in device order) and the
/// clock they are charged on.
#[derive(Clone, Debug)]
pub struct GcTiming {
    pub models: Vec<Arc<Mutex<TimingModel>>>,
    pub clock: Arc<dyn Clock>,
}

/// What one call of `Ftl::background_gc` did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GcWork {
    /// No GC needed (free space above the background watermark), or no scheduler attached.
    Idle,
    /// GC is needed but no die may take it now (busy with host work, or the share is used up).
    Blocked,
    /// One valid page (or the victim's page list) was read and programmed elsewhere.
    Moved,
    /// One collected block was erased.
    Erased,
    /// One page of a checkpoint static wear leveling asked for was programmed
    /// (`persist_background.rs`; its erases count as `Erased`).
    Checkpointed,
}

/// Counters of the scheduler since it was attached.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct GcSchedStats {
    /// The most dies that may have GC work in flight at once.
    pub max_gc_dies: u32,
    /// The most that ever did.
    pub peak_gc_dies: u32,
    pub moves: u64,
    pub erases: u64,
    /// Calls that found GC needed but no die allowed to take it.
    pub blocked: u64,
    /// GC units whose relocated page went to a die that was not idle (no idle die could take it).
    pub busy_die_placements: u64,
    /// Checkpoint pages programmed as GC work, one per unit.
    pub checkpoint_pages: u64,
}

/// Which dies may take GC work at one instant, and how many more may join.
#[derive(Clone, Debug)]
pub struct GcPlan {
    pub now_ns: u64,
    /// Per global die: idle now, not already doing GC work, and its channel has room.
    pub eligible: Vec<bool>,
    /// Dies that may still start GC work (the share minus those doing it).
    pub free_slots: u32,
    /// An erase may start now (stagger).
    pub erase_allowed: bool,
}

#[derive(Debug)]
pub struct GcScheduler {
    models: Vec<Arc<Mutex<TimingModel>>>,
    clock: Arc<dyn Clock>,
    dies_per_device: u32,
    channels_per_device: u32,
    max_gc_dies: u32,
    max_gc_dies_per_channel: u32,
    /// Global channel of each global die.
    channel_of_die: Vec<u32>,
    /// Per global die: end (as charged) of the last collection work (victim read, erase) there.
    gc_until_ns: Vec<u64>,
    erase_stagger_ns: u64,
    /// One page program on a die, transfer in included (placement estimates queue growth).
    page_program_ns: u64,
    last_erase_start_ns: Option<u64>,
    stats: GcSchedStats,
}

impl GcScheduler {
    pub fn new(timing: GcTiming, layout: &Layout, gc_die_share: f64) -> Result<Self, String> {
        if timing.models.len() != layout.devices as usize {
            return Err(format!(
                "{} timing models for {} devices",
                timing.models.len(),
                layout.devices
            ));
        }
        let dies_per_device = layout.dies_per_device;
        let mut erase_ns = 0;
        let mut page_program_ns = 0;
        let mut channel_of_die = Vec::with_capacity(layout.dies() as usize);
        let channels_per_device = layout.geometry.channels;
        for (device, model) in timing.models.iter().enumerate() {
            let m = model.lock();
            channel_of_die.extend(
                (0..m.dies()).map(|d| device as u32 * channels_per_device + m.channel_of_die(d)),
            );
            if m.dies() != dies_per_device {
                return Err(format!(
                    "device {device}: timing model has {} dies, the geometry {dies_per_device}",
                    m.dies()
                ));
            }
            erase_ns = m.config().erase_us * 1_000;
            let page_bytes = u64::from(layout.geometry.page_size + layout.geometry.oob_size);
            page_program_ns = m.config().program_us * 1_000 + m.config().transfer_ns(page_bytes);
        }
        if !(0.01..=1.0).contains(&gc_die_share) {
            return Err(format!("gc_die_share {gc_die_share} not in 0.01..=1.0"));
        }
        let dies = layout.dies();
        // At least one, or GC could never run.
        let max_gc_dies = ((f64::from(dies) * gc_die_share).floor() as u32).clamp(1, dies);
        let channels = channels_per_device * layout.devices;
        Ok(Self {
            models: timing.models,
            clock: timing.clock,
            dies_per_device,
            channels_per_device,
            max_gc_dies,
            max_gc_dies_per_channel: max_gc_dies.div_ceil(channels).max(1),
            channel_of_die,
            gc_until_ns: vec![0; dies as usize],
            erase_stagger_ns: erase_ns / u64::from(max_gc_dies),
            page_program_ns,
            last_erase_start_ns: None,
            stats: GcSchedStats {
                max_gc_dies,
                ..GcSchedStats::default()
            },
        })
    }

    pub fn now_ns(&self) -> u64 {
        self.clock.now_ns()
    }

    /// What one more page program adds to a die's queue.
    pub fn page_program_ns(&self) -> u64 {
        self.page_program_ns
    }

    pub fn stats(&self) -> GcSchedStats {
        self.stats
    }

    /// Global channel of a global die.
    pub fn channel_of(&self, die: u32) -> u32 {
        self.channel_of_die[die as usize]
    }

    /// When every die finishes the work charged to it so far.
    pub fn busy_until_ns(&self) -> Vec<u64> {
        let mut out = Vec::with_capacity(self.gc_until_ns.len());
        for model in &self.models {
            let m = model.lock();
            out.extend((0..self.dies_per_device).map(|d| m.die_busy_until_ns(d)));
        }
        out
    }

    /// Dies with GC work in flight at `now_ns`.
    pub fn gc_dies_at(&self, now_ns: u64) -> u32 {
        self.gc_until_ns.iter().filter(|&&t| t > now_ns).count() as u32
    }

    /// Which dies may take GC work at the clock's current time.
    pub fn plan(&self) -> GcPlan {
        let now_ns = self.now_ns();
        let busy = self.busy_until_ns();
        let channels = (self.channels_per_device * self.models.len() as u32) as usize;
        let mut per_channel = vec![0u32; channels];
        let mut active = 0;
        for (die, &until) in self.gc_until_ns.iter().enumerate() {
            if until > now_ns {
                per_channel[self.channel_of(die as u32) as usize] += 1;
                active += 1;
            }
        }
        assert!(active <= self.max_gc_dies, "{active} dies in GC");
        let eligible = (0..busy.len())
            .map(|die| {
                busy[die] <= now_ns
                    && self.gc_until_ns[die] <= now_ns
                    && per_channel[self.channel_of(die as u32) as usize]
                        < self.max_gc_dies_per_channel
            })
            .collect();
        let erase_allowed = self
            .last_erase_start_ns
            .is_none_or(|t| now_ns >= t + self.erase_stagger_ns);
        GcPlan {
            now_ns,
            eligible,
            free_slots: self.max_gc_dies - active,
            erase_allowed,
        }
    }

    /// After the engine issued GC work at `plan.now_ns`: `collecting` is the die whose block it
    /// read from or erased; it counts as in GC until that work ends. Other dies whose busy time
    /// grew took the relocated pages (programs, placed like host writes on idle dies).
    pub fn record(&mut self, plan: &GcPlan, before: &[u64], work: GcWork, collecting: Option<u32>) {
        let after = self.busy_until_ns();
        let mut placed_on_busy = false;
        for (die, (&b, &a)) in before.iter().zip(&after).enumerate() {
            if a <= b {
                continue;
            }
            if Some(die as u32) == collecting {
                self.gc_until_ns[die] = self.gc_until_ns[die].max(a);
            } else if b > plan.now_ns {
                placed_on_busy = true;
            }
        }
        if placed_on_busy {
            self.stats.busy_die_placements += 1;
        }
        let active = self.gc_dies_at(plan.now_ns);
        // The engine collects only on eligible dies, one per unit, with a slot free: the share
        // holds.
        assert!(
            active <= self.max_gc_dies,
            "{active} dies in GC, at most {} allowed",
            self.max_gc_dies
        );
        self.stats.peak_gc_dies = self.stats.peak_gc_dies.max(active);
        match work {
            GcWork::Moved => self.stats.moves += 1,
            GcWork::Erased => {
                self.stats.erases += 1;
                self.last_erase_start_ns = Some(plan.now_ns);
            }
            GcWork::Checkpointed => self.stats.checkpoint_pages += 1,
            GcWork::Blocked => self.stats.blocked += 1,
            GcWork::Idle => {}
        }
    }

    /// Per global die at the clock's current time, where new pages (host or relocated) should
    /// go first: idle, then busy with host work, then being collected (an erase there would
    /// hold the page, and every read queued behind it, for milliseconds).
    pub fn die_ranks(&self) -> Vec<u8> {
        let now_ns = self.now_ns();
        self.busy_until_ns()
            .iter()
            .zip(&self.gc_until_ns)
            .map(|(&busy, &gc)| {
                if gc > now_ns {
                    RANK_COLLECTING
                } else if busy > now_ns {
                    RANK_BUSY
                } else {
                    RANK_IDLE
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nand::Geometry;
    use crate::nand::timing::{TimingConfig, VirtualClock};

    fn scheduler(share: f64) -> (GcScheduler, Arc<VirtualClock>) {
        let geometry = Geometry {
            channels: 2,
            dies_per_channel: 2,
            planes_per_die: 1,
            blocks_per_plane: 8,
            pages_per_block: 16,
            page_size: 4096,
            oob_size: 64,
        };
        let layout = Layout::new(geometry, 2).expect("layout");
        let clock = Arc::new(VirtualClock::manual());
        let models = (0..2)
            .map(|_| {
                let m = TimingModel::new(&TimingConfig::default(), &geometry).expect("model");
                Arc::new(Mutex::new(m))
            })
            .collect();
        let timing = GcTiming {
            models,
            clock: clock.clone() as Arc<dyn Clock>,
        };
        (
            GcScheduler::new(timing, &layout, share).expect("scheduler"),
            clock,
        )
    }

    #[test]
    fn busy_dies_channels_with_gc_and_the_share_limit_eligibility() {
        // 8 dies on 4 channels, a quarter: 2 dies in GC at most, 1 per channel.
        let (mut sched, clock) = scheduler(0.25);
        assert_eq!(sched.stats().max_gc_dies, 2);
        // Host work on device 0's die 0: not idle, so not eligible.
        sched.models[0].lock().program(0, 0, 4160);
        let plan = sched.plan();
        assert!(!plan.eligible[0] && plan.eligible[1] && plan.eligible[2]);
        assert_eq!(plan.free_slots, 2);
        // An erase on die 2 (device 0, channel 1) makes it a die in GC.
        let before = sched.busy_until_ns();
        sched.models[0].lock().erase(0, 2);
        sched.record(&plan, &before, GcWork::Erased, Some(2));
        let plan = sched.plan();
        assert_eq!(plan.free_slots, 1);
        assert!(!plan.eligible[2], "in GC");
        assert!(!plan.eligible[3], "its channel already has its share");
        assert!(plan.eligible[4], "another device's channel");
        assert!(!plan.erase_allowed, "erases are staggered");
        // Once the erase ends the die is free again and erases may start.
        clock.advance_to(3_000_000);
        let plan = sched.plan();
        assert_eq!(plan.free_slots, 2);
        assert!(plan.eligible[2] && plan.eligible[3] && plan.erase_allowed);
        assert_eq!(sched.stats().peak_gc_dies, 1);
        assert_eq!(sched.stats().erases, 1);
    }

    #[test]
    #[should_panic(expected = "dies in GC")]
    fn more_dies_in_gc_than_the_share_is_caught() {
        let (mut sched, _clock) = scheduler(0.125);
        assert_eq!(sched.stats().max_gc_dies, 1);
        let plan = sched.plan();
        for die in [0, 4] {
            let before = sched.busy_until_ns();
            let (device, local) = (die / 4, die % 4);
            sched.models[device as usize].lock().erase(0, local);
            sched.record(&plan, &before, GcWork::Erased, Some(die));
        }
    }
}
