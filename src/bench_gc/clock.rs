//! The bench's virtual clock: the driver sets it to a request's issue time before the FTL call,
//! and each NAND operation of the call steps it to that operation's end (so the operations of one
//! call run one after another, as the synchronous FTL issues them). After the call it reads the
//! request's completion. Unlike `VirtualClock` it may be set back: the next request is issued at
//! the earliest completion, which may precede the end of the call just made.

use std::sync::atomic::{AtomicU64, Ordering};

use ftl::nand::timing::Clock;

#[derive(Debug, Default)]
pub struct RequestClock {
    now_ns: AtomicU64,
}

impl RequestClock {
    /// The time of the next call's first operation. The bench is single-threaded: nothing else
    /// reads the clock between this and the call.
    pub fn set(&self, at_ns: u64) {
        self.now_ns.store(at_ns, Ordering::Release);
    }
}

impl Clock for RequestClock {
    fn now_ns(&self) -> u64 {
        self.now_ns.load(Ordering::Acquire)
    }

    fn wait_until(&self, end_ns: u64) {
        self.now_ns.fetch_max(end_ns, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_forward_within_a_call_and_is_set_back_between_calls() {
        let clock = RequestClock::default();
        clock.wait_until(600);
        clock.wait_until(500);
        assert_eq!(clock.now_ns(), 600);
        clock.set(100);
        assert_eq!(clock.now_ns(), 100);
    }
}
