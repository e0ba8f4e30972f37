//! The bench's virtual clock, FEMU/NVMeVirt style: the driver sets it to a request's issue time
//! before the FTL call, every NAND operation of the call is charged at that time (the timing
//! model queues them per die and channel), and the request completes at the latest end among
//! them, which the clock records. It may be set back: the next request is issued at the
//! earliest completion, which may precede the end of the call just made.

use std::sync::atomic::{AtomicU64, Ordering};

use ftl::nand::timing::Clock;

#[derive(Debug, Default)]
pub struct RequestClock {
    now_ns: AtomicU64,
    /// The latest end of an operation charged since the last `set`.
    call_end_ns: AtomicU64,
}

impl RequestClock {
    /// The time of the next call's operations. The bench is single-threaded: nothing else
    /// uses the clock between this and the call.
    pub fn set(&self, at_ns: u64) {
        self.now_ns.store(at_ns, Ordering::Release);
        self.call_end_ns.store(at_ns, Ordering::Release);
    }

    /// When the operations charged since the last `set` are all done.
    pub fn call_end_ns(&self) -> u64 {
        self.call_end_ns.load(Ordering::Acquire)
    }
}

impl Clock for RequestClock {
    fn now_ns(&self) -> u64 {
        self.now_ns.load(Ordering::Acquire)
    }

    fn wait_until(&self, end_ns: u64) {
        self.call_end_ns.fetch_max(end_ns, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_call_ends_with_its_latest_operation_and_the_clock_may_go_back() {
        let clock = RequestClock::default();
        clock.set(100);
        clock.wait_until(600);
        clock.wait_until(500);
        assert_eq!((clock.now_ns(), clock.call_end_ns()), (100, 600));
        clock.set(50);
        assert_eq!((clock.now_ns(), clock.call_end_ns()), (50, 50));
    }
}
