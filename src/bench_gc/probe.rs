//! `bench gc --explain-tail`: what the slowest reads waited behind.
//!
//! A `ProbeNand` sits over each `TimedNand` of a volume and notes every operation charged to a
//! die: its kind, whose it is (the bench says whether the FTL call under way is a host request or
//! background GC) and when it ends (the latency the timed device recorded for it). A host read
//! looks, before it is charged, at the operations still running or queued on its die; after, at
//! whether it waited and whether it suspended something. The bench keeps that per read and
//! sums the causes over the reads at or above p99.9. Only the bench builds probes: the FTL and
//! the timing model do not know about them.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use ftl::nand::timing::{DieActivity, OpKind, TimedNand};
use ftl::nand::{BlockInfo, Geometry, Nand, NandError, NandStats, ReadInfo};
use parking_lot::Mutex;
use serde::Serialize;

/// A read that waited less than this (ns) over its own sensing and transfer did not wait.
const NO_WAIT_NS: u64 = 1_000;
/// Operations of a die kept in the probe's record at most (older ones have ended long ago).
const OPS_PER_DIE_MAX: usize = 256;

/// One operation charged to a die, as the probe saw it.
#[derive(Clone, Copy, Debug)]
struct OpRecord {
    end_ns: u64,
    kind: OpKind,
    gc: bool,
}

/// What one host read waited behind.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReadCause {
    pub wait_ns: u64,
    pub label: String,
}

/// One cause among the tail reads of a mode.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TailCause {
    pub cause: String,
    pub reads: u64,
    pub mean_wait_us: f64,
}

#[derive(Debug, Default)]
pub struct Probe {
    /// The FTL call under way is background GC (else a host request).
    gc_call: AtomicBool,
    dies_per_device: u32,
    dies: Mutex<Vec<VecDeque<OpRecord>>>,
    last_read: Mutex<Option<ReadCause>>,
}

impl Probe {
    pub fn new(devices: u32, dies_per_device: u32) -> Arc<Self> {
        Arc::new(Self {
            gc_call: AtomicBool::new(false),
            dies_per_device,
            dies: Mutex::new(vec![VecDeque::new(); (devices * dies_per_device) as usize]),
            last_read: Mutex::new(None),
        })
    }

    pub fn set_gc_call(&self, gc: bool) {
        self.gc_call.store(gc, Ordering::Release);
    }

    /// The cause of the last host read charged (taken: each read is counted once).
    pub fn take_read_cause(&self) -> Option<ReadCause> {
        self.last_read.lock().take()
    }
}

/// Sums the causes of the reads whose latency is at least `threshold_ns`, most frequent first.
pub fn tail_causes(reads: &[(u64, ReadCause)], threshold_ns: u64) -> Vec<TailCause> {
    let mut sums: Vec<(String, u64, u64)> = Vec::new();
    for (_, cause) in reads.iter().filter(|(l, _)| *l >= threshold_ns) {
        match sums.iter_mut().find(|(label, _, _)| *label == cause.label) {
            Some(entry) => {
                entry.1 += 1;
                entry.2 += cause.wait_ns;
            }
            None => sums.push((cause.label.clone(), 1, cause.wait_ns)),
        }
    }
    sums.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    sums.into_iter()
        .map(|(cause, reads, wait_ns)| TailCause {
            cause,
            reads,
            mean_wait_us: wait_ns as f64 / reads as f64 / 1_000.0,
        })
        .collect()
}

/// `2 host-program + 1 gc-read`: the operations queued behind the running one, by name, with
/// programs and erases counted exactly and reads in ranges (they are short).
fn queued_summary(ops: &[OpRecord]) -> String {
    let mut counts: Vec<(String, usize)> = Vec::new();
    for op in ops {
        let name = op_name(op);
        match counts.iter_mut().find(|(n, _)| *n == name) {
            Some(entry) => entry.1 += 1,
            None => counts.push((name, 1)),
        }
    }
    counts.sort();
    counts
        .iter()
        .map(|(name, n)| {
            if name.ends_with("-read") {
                let range = if *n <= 2 { "1-2" } else { "3+" };
                format!("{range} {name}")
            } else {
                format!("{n} {name}")
            }
        })
        .collect::<Vec<_>>()
        .join(" + ")
}

fn op_name(op: &OpRecord) -> String {
    let owner = if op.gc { "gc" } else { "host" };
    let kind = match op.kind {
        OpKind::Read => "read",
        OpKind::Program => "program",
        OpKind::Erase => "erase",
    };
    format!("{owner}-{kind}")
}

#[derive(Debug)]
pub struct ProbeNand {
    inner: Arc<TimedNand>,
    device: u32,
    probe: Arc<Probe>,
}

impl ProbeNand {
    pub fn new(inner: Arc<TimedNand>, device: u32, probe: Arc<Probe>) -> Self {
        Self {
            inner,
            device,
            probe,
        }
    }

    fn index(&self, block: u32) -> (usize, u32) {
        let die = self.inner.geometry().die_of_block(block);
        (
            (self.device * self.probe.dies_per_device + die) as usize,
            die,
        )
    }

    /// Runs `op` and records what it charged: `(latency, wait, suspended)` of the new operation of
    /// `kind`, if the device charged one.
    fn observe<T>(
        &self,
        block: u32,
        kind: OpKind,
        op: impl FnOnce() -> T,
    ) -> (T, Option<(u64, u64, bool)>) {
        let pick = |l: &ftl::nand::timing::LatencyStats| match kind {
            OpKind::Read => l.read,
            OpKind::Program => l.program,
            OpKind::Erase => l.erase,
        };
        let before = pick(&self.inner.latency());
        let now_ns = self.inner.clock().now_ns();
        let result = op();
        let after = pick(&self.inner.latency());
        if after.count == before.count {
            return (result, None);
        }
        let latency_ns = after.total_ns - before.total_ns;
        let wait_ns = after.wait_ns - before.wait_ns;
        let suspended = after.suspends > before.suspends;
        let (index, _) = self.index(block);
        let mut dies = self.probe.dies.lock();
        let ops = &mut dies[index];
        ops.retain(|o| o.end_ns > now_ns);
        if ops.len() == OPS_PER_DIE_MAX {
            ops.pop_front();
        }
        ops.push_back(OpRecord {
            end_ns: now_ns + latency_ns,
            kind,
            gc: self.probe.gc_call.load(Ordering::Acquire),
        });
        (result, Some((latency_ns, wait_ns, suspended)))
    }

    fn read_observed<T>(&self, block: u32, op: impl FnOnce() -> T) -> T {
        let gc = self.probe.gc_call.load(Ordering::Acquire);
        let (index, die) = self.index(block);
        let now_ns = self.inner.clock().now_ns();
        // What the die has running or queued as the read arrives.
        let ahead: Vec<OpRecord> = self.probe.dies.lock()[index]
            .iter()
            .filter(|o| o.end_ns > now_ns)
            .copied()
            .collect();
        let idle = self.inner.model().lock().die_activity(die, now_ns) == DieActivity::Idle;
        let (result, charged) = self.observe(block, OpKind::Read, op);
        if let (false, Some((_, wait_ns, suspended))) = (gc, charged) {
            let label = if wait_ns < NO_WAIT_NS {
                "no wait".to_string()
            } else if ahead.is_empty() || idle {
                "die idle: channel bus".to_string()
            } else {
                let first = op_name(&ahead[0]);
                let queued = ahead.len() - 1;
                let how = if suspended { "suspended" } else { "waited for" };
                let mut label = format!("{how} {first}");
                if queued > 0 {
                    label.push_str(&format!(", queued {}", queued_summary(&ahead[1..])));
                }
                label
            };
            *self.probe.last_read.lock() = Some(ReadCause { wait_ns, label });
        }
        result
    }
}

impl Nand for ProbeNand {
    fn geometry(&self) -> &Geometry {
        self.inner.geometry()
    }

    fn program_page(
        &self,
        block: u32,
        page: u32,
        data: &[u8],
        oob: &[u8],
    ) -> Result<(), NandError> {
        self.observe(block, OpKind::Program, || {
            self.inner.program_page(block, page, data, oob)
        })
        .0
    }

    fn read_page(
        &self,
        block: u32,
        page: u32,
        data: &mut [u8],
        oob: &mut [u8],
    ) -> Result<ReadInfo, NandError> {
        self.read_observed(block, || self.inner.read_page(block, page, data, oob))
    }

    fn read_range(
        &self,
        block: u32,
        page: u32,
        offset: usize,
        data: &mut [u8],
        oob: &mut [u8],
    ) -> Result<ReadInfo, NandError> {
        self.read_observed(block, || {
            self.inner.read_range(block, page, offset, data, oob)
        })
    }

    fn read_oob(&self, block: u32, page: u32, oob: &mut [u8]) -> Result<ReadInfo, NandError> {
        self.read_observed(block, || self.inner.read_oob(block, page, oob))
    }

    fn erase_block(&self, block: u32) -> Result<(), NandError> {
        self.observe(block, OpKind::Erase, || self.inner.erase_block(block))
            .0
    }

    fn mark_bad(&self, block: u32) -> Result<(), NandError> {
        self.inner.mark_bad(block)
    }

    fn block_info(&self, block: u32) -> Result<BlockInfo, NandError> {
        self.inner.block_info(block)
    }

    fn sync(&self) -> Result<(), NandError> {
        self.inner.sync()
    }

    fn sync_is_slow(&self) -> bool {
        self.inner.sync_is_slow()
    }

    fn stats(&self) -> NandStats {
        self.inner.stats()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cause(wait_ns: u64, label: &str) -> ReadCause {
        ReadCause {
            wait_ns,
            label: label.to_string(),
        }
    }

    #[test]
    fn tail_causes_count_reads_at_or_above_the_threshold_most_frequent_first() {
        let reads = vec![
            (60_000, cause(0, "no wait")),
            (3_000_000, cause(2_900_000, "waited for gc-erase")),
            (700_000, cause(600_000, "suspended host-program")),
            (800_000, cause(700_000, "suspended host-program")),
        ];
        let causes = tail_causes(&reads, 700_000);
        assert_eq!(causes.len(), 2);
        assert_eq!(
            (causes[0].cause.as_str(), causes[0].reads),
            ("suspended host-program", 2)
        );
        assert_eq!(causes[0].mean_wait_us, 650.0);
        assert_eq!(
            (causes[1].cause.as_str(), causes[1].reads),
            ("waited for gc-erase", 1)
        );
        assert!(tail_causes(&[], 0).is_empty());
    }

    #[test]
    fn queued_operations_are_summarised_by_name() {
        let op = |kind, gc| OpRecord {
            end_ns: 1,
            kind,
            gc,
        };
        let ops = [
            op(OpKind::Program, false),
            op(OpKind::Read, false),
            op(OpKind::Program, false),
            op(OpKind::Erase, true),
        ];
        assert_eq!(
            queued_summary(&ops),
            "1 gc-erase + 2 host-program + 1-2 host-read"
        );
    }
}
