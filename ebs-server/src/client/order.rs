//! The client's ordering rules, as a pure scheduler over request tags (no I/O, no clock).
//!
//! The transport delivers messages in any order and the server applies each as it arrives, so
//! order is the client's job. Requests are kept in submission order; one is released (may be
//! sent) only when it conflicts with no earlier request still outstanding:
//!
//! - two requests whose block ranges overlap, at least one of them modifying (WRITE, TRIM,
//!   WRITE_ZEROES), keep their order: the later waits for the earlier's reply;
//! - FLUSH is a barrier: it waits for every earlier modifying request (and earlier flush), and
//!   every later modifying request waits for it. Reads pass it: a flush says nothing about them;
//! - ATTACH and DETACH wait for everything before them, and everything after waits for them.
//!
//! Reads that only overlap other reads run concurrently; a write never overtakes an earlier one
//! to the same block, even one still held back itself.

use std::collections::VecDeque;
use std::ops::Range;

/// What a request touches, for ordering.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Access {
    Read(Range<u64>),
    Write(Range<u64>),
    Flush,
    /// ATTACH, DETACH: ordered against everything.
    Exclusive,
}

/// Whether `later` must wait for `earlier`.
fn conflicts(earlier: &Access, later: &Access) -> bool {
    use Access::{Exclusive, Flush, Read, Write};
    match (earlier, later) {
        (Exclusive, _) | (_, Exclusive) => true,
        (Write(_) | Flush, Flush) | (Flush, Write(_)) => true,
        (Read(_), Flush) | (Flush, Read(_)) | (Read(_), Read(_)) => false,
        (Read(a) | Write(a), Read(b) | Write(b)) => a.start < b.end && b.start < a.end,
    }
}

#[derive(Debug)]
struct Entry {
    tag: u64,
    access: Access,
    released: bool,
}

/// The outstanding requests in submission order.
#[derive(Debug, Default)]
pub struct Scheduler {
    entries: VecDeque<Entry>,
}

impl Scheduler {
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Adds a request after every outstanding one. The caller bounds the count.
    pub fn push(&mut self, tag: u64, access: Access) {
        self.entries.push_back(Entry {
            tag,
            access,
            released: false,
        });
    }

    /// Marks released and returns, in submission order, every held request that no earlier
    /// outstanding request blocks. Quadratic in the outstanding count, which the client bounds
    /// by its queue depth.
    pub fn release(&mut self) -> Vec<u64> {
        let mut released = Vec::new();
        for i in 0..self.entries.len() {
            if self.entries[i].released {
                continue;
            }
            let later = &self.entries[i].access;
            let blocked = self
                .entries
                .iter()
                .take(i)
                .any(|earlier| conflicts(&earlier.access, later));
            if !blocked {
                self.entries[i].released = true;
                released.push(self.entries[i].tag);
            }
        }
        released
    }

    /// The request was answered (or failed): it no longer holds anything back.
    pub fn complete(&mut self, tag: u64) {
        if let Some(at) = self.entries.iter().position(|e| e.tag == tag) {
            self.entries.remove(at);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Access::{Exclusive, Flush, Read, Write};

    #[test]
    fn disjoint_writes_and_overlapping_reads_run_together() {
        let mut s = Scheduler::default();
        s.push(1, Write(0..1));
        s.push(2, Write(1..2));
        s.push(3, Read(5..9));
        s.push(4, Read(6..7));
        assert_eq!(s.release(), vec![1, 2, 3, 4]);
        assert!(s.release().is_empty(), "nothing is released twice");
    }

    #[test]
    fn an_overlapping_write_waits_for_the_earlier_one() {
        let mut s = Scheduler::default();
        s.push(1, Write(4..5));
        s.push(2, Write(4..5));
        s.push(3, Read(4..6));
        s.push(4, Write(0..4));
        assert_eq!(s.release(), vec![1, 4]);
        s.complete(1);
        assert_eq!(
            s.release(),
            vec![2],
            "the read waits for the second write too"
        );
        s.complete(2);
        assert_eq!(s.release(), vec![3]);
    }

    #[test]
    fn a_write_never_overtakes_a_held_write() {
        let mut s = Scheduler::default();
        s.push(1, Write(0..8));
        s.push(2, Write(7..8));
        s.push(3, Write(7..8));
        assert_eq!(s.release(), vec![1]);
        s.complete(1);
        assert_eq!(s.release(), vec![2]);
    }

    #[test]
    fn a_write_after_a_read_of_its_block_waits() {
        let mut s = Scheduler::default();
        s.push(1, Read(0..4));
        s.push(2, Write(3..4));
        assert_eq!(s.release(), vec![1]);
        s.complete(1);
        assert_eq!(s.release(), vec![2]);
    }

    #[test]
    fn flush_is_a_barrier_for_writes_not_reads() {
        let mut s = Scheduler::default();
        s.push(1, Write(0..1));
        s.push(2, Read(10..11));
        s.push(3, Flush);
        s.push(4, Write(20..21));
        s.push(5, Read(30..31));
        assert_eq!(s.release(), vec![1, 2, 5]);
        s.complete(2);
        assert!(s.release().is_empty(), "the flush waits for write 1");
        s.complete(1);
        assert_eq!(s.release(), vec![3]);
        s.complete(3);
        assert_eq!(s.release(), vec![4], "the later write waited for the flush");
    }

    #[test]
    fn attach_and_detach_are_ordered_against_everything() {
        let mut s = Scheduler::default();
        s.push(1, Exclusive);
        s.push(2, Read(0..1));
        s.push(3, Exclusive);
        assert_eq!(s.release(), vec![1]);
        s.complete(1);
        assert_eq!(s.release(), vec![2]);
        s.complete(2);
        assert_eq!(s.release(), vec![3]);
        s.complete(3);
        assert!(s.is_empty());
    }
}
