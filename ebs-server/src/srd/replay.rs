//! The receiver's replay window over packet numbers of one direction of a sealed connection.
//!
//! A sealed packet that authenticates may still be an old one an attacker recorded and sent
//! again. Packet numbers never repeat per direction (each transmission, of every kind, takes a
//! fresh one), so the receiver remembers which numbers it has accepted: a bitmap of the
//! `WINDOW_LEN_PACKETS` numbers below the highest accepted, and drops anything older than that
//! because it can no longer tell whether it was seen. Packets arrive out of order across paths,
//! so the window must be wider than the reordering depth of the paths (1024 packets is several
//! times the in-flight limit of `Config`).
//!
//! The check is split from the update on purpose: the receiver checks before it authenticates
//! (cheap rejection) and records only after the tag verified, so a forged packet with a high
//! packet number cannot slide the window and make legitimate packets look old.

/// Packet numbers remembered below the highest accepted one.
pub const WINDOW_LEN_PACKETS: u64 = 1024;
const WORDS: usize = (WINDOW_LEN_PACKETS / 64) as usize;

/// Why a packet number is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Replay {
    /// Accepted before.
    Duplicate,
    /// Below the window: it may or may not have been seen, so it is dropped.
    TooOld,
}

/// Which packet numbers of one direction have been accepted.
#[derive(Debug, Clone)]
pub struct ReplayWindow {
    /// Highest accepted packet number, `None` before the first.
    highest: Option<u64>,
    /// Bit `i` set: packet number `highest - i` was accepted (bit 0 is `highest` itself).
    seen: [u64; WORDS],
}

impl Default for ReplayWindow {
    fn default() -> Self {
        Self::new()
    }
}

impl ReplayWindow {
    pub fn new() -> Self {
        Self {
            highest: None,
            seen: [0; WORDS],
        }
    }

    /// Whether `packet_number` would be accepted, without recording it.
    pub fn check(&self, packet_number: u64) -> Result<(), Replay> {
        let Some(highest) = self.highest else {
            return Ok(());
        };
        if packet_number > highest {
            return Ok(());
        }
        let age = highest - packet_number;
        if age >= WINDOW_LEN_PACKETS {
            return Err(Replay::TooOld);
        }
        if self.bit(age) {
            Err(Replay::Duplicate)
        } else {
            Ok(())
        }
    }

    /// Checks and records `packet_number`; call only once the packet authenticated.
    pub fn accept(&mut self, packet_number: u64) -> Result<(), Replay> {
        self.check(packet_number)?;
        match self.highest {
            Some(highest) if packet_number <= highest => self.set(highest - packet_number),
            Some(highest) => {
                self.shift(packet_number - highest);
                self.highest = Some(packet_number);
                self.set(0);
            }
            None => {
                self.highest = Some(packet_number);
                self.set(0);
            }
        }
        Ok(())
    }

    fn bit(&self, age: u64) -> bool {
        let (word, bit) = ((age / 64) as usize, age % 64);
        self.seen[word] & (1 << bit) != 0
    }

    fn set(&mut self, age: u64) {
        let (word, bit) = ((age / 64) as usize, age % 64);
        self.seen[word] |= 1 << bit;
    }

    /// Ages every remembered number by `by`, forgetting those that fall out of the window.
    fn shift(&mut self, by: u64) {
        if by >= WINDOW_LEN_PACKETS {
            self.seen = [0; WORDS];
            return;
        }
        let (words, bits) = ((by / 64) as usize, (by % 64) as u32);
        for i in (0..WORDS).rev() {
            let from = i.checked_sub(words);
            let high = from.map_or(0, |f| self.seen[f]);
            let carry = match from.and_then(|f| f.checked_sub(1)) {
                Some(f) if bits > 0 => self.seen[f] >> (64 - bits),
                _ => 0,
            };
            self.seen[i] = if bits > 0 { high << bits } else { high } | carry;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    #[test]
    fn duplicates_are_refused_and_reordering_within_the_window_is_not() {
        let mut w = ReplayWindow::new();
        assert_eq!(w.accept(10), Ok(()));
        assert_eq!(w.accept(10), Err(Replay::Duplicate));
        assert_eq!(w.accept(5), Ok(()));
        assert_eq!(w.accept(5), Err(Replay::Duplicate));
        assert_eq!(w.accept(0), Ok(()));
        assert_eq!(w.accept(11), Ok(()));
        assert_eq!(w.accept(10), Err(Replay::Duplicate));
        assert_eq!(w.check(9), Ok(()));
    }

    #[test]
    fn numbers_below_the_window_are_too_old() {
        let mut w = ReplayWindow::new();
        assert_eq!(w.accept(WINDOW_LEN_PACKETS), Ok(()));
        assert_eq!(w.check(1), Ok(()));
        assert_eq!(w.check(0), Err(Replay::TooOld));
        assert_eq!(w.accept(5 * WINDOW_LEN_PACKETS), Ok(()));
        assert_eq!(w.check(WINDOW_LEN_PACKETS), Err(Replay::TooOld));
    }

    #[test]
    fn check_does_not_record() {
        let mut w = ReplayWindow::new();
        assert_eq!(w.check(7), Ok(()));
        assert_eq!(w.check(7), Ok(()));
        assert_eq!(w.accept(7), Ok(()));
        assert_eq!(w.check(7), Err(Replay::Duplicate));
    }

    #[test]
    fn the_largest_packet_number_does_not_overflow() {
        let mut w = ReplayWindow::new();
        assert_eq!(w.accept(u64::MAX), Ok(()));
        assert_eq!(w.accept(u64::MAX), Err(Replay::Duplicate));
        assert_eq!(w.accept(u64::MAX - 1), Ok(()));
        assert_eq!(w.check(0), Err(Replay::TooOld));
    }

    proptest! {
        /// Against a model that remembers every number: the window agrees on every number
        /// within it, and refuses (never accepts) everything below it.
        #[test]
        fn agrees_with_a_set_of_every_accepted_number(
            numbers in proptest::collection::vec(0u64..4096, 1..600),
        ) {
            let mut w = ReplayWindow::new();
            let mut model = BTreeSet::new();
            let mut highest: Option<u64> = None;
            for n in numbers {
                let got = w.accept(n);
                let expected = match highest {
                    Some(h) if n <= h && h - n >= WINDOW_LEN_PACKETS => Err(Replay::TooOld),
                    _ if model.contains(&n) => Err(Replay::Duplicate),
                    _ => Ok(()),
                };
                prop_assert_eq!(got, expected, "packet number {}", n);
                if got.is_ok() {
                    model.insert(n);
                    highest = Some(highest.map_or(n, |h| h.max(n)));
                }
            }
        }
    }
}
