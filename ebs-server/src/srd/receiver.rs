//! The receiving half: reassembly of fragments, the dedup window that makes delivery
//! exactly-once, and the acknowledgements owed to the peer.

use super::Config;
use super::packet::Data;
use std::collections::{BTreeSet, HashMap, VecDeque};

/// What became of one received DATA fragment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Received {
    /// New fragment; acknowledge it.
    Accepted,
    /// Already had it (the message may be delivered already); acknowledge it again, since the
    /// first acknowledgement may have been lost.
    Duplicate,
    /// Refused without acknowledging, so the sender retries later.
    Refused(Refusal),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Beyond the dedup window: a correct sender never sends it.
    BeyondWindow,
    /// Fragment disagreeing with earlier fragments of the same message about its size.
    Inconsistent,
    /// The message is larger than this side accepts.
    TooLarge,
    /// Reassembly or delivery queue full: back pressure.
    Full,
}

#[derive(Debug)]
struct Reassembly {
    data: Vec<u8>,
    have: Vec<bool>,
    missing: u16,
}

/// A delivered message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivered {
    pub message_id: u64,
    pub payload: Vec<u8>,
}

#[derive(Debug)]
pub struct Receiver {
    /// Every message id below this is delivered.
    delivered_below: u64,
    /// Delivered ids at or above `delivered_below`; never more than the window.
    delivered_above: BTreeSet<u64>,
    reassembly: HashMap<u64, Reassembly>,
    deliver_queue: VecDeque<Delivered>,
    window: u64,
    message_len_max: usize,
    reassembly_max: usize,
    reassembly_bytes: usize,
    reassembly_bytes_max: usize,
    deliver_queue_max: usize,
}

impl Receiver {
    pub fn new(config: &Config) -> Self {
        Receiver {
            delivered_below: 0,
            delivered_above: BTreeSet::new(),
            reassembly: HashMap::new(),
            deliver_queue: VecDeque::new(),
            window: config.dedup_window_messages,
            message_len_max: config.message_len_max,
            reassembly_max: config.reassembly_messages_max,
            reassembly_bytes: 0,
            reassembly_bytes_max: config.reassembly_bytes_max,
            deliver_queue_max: config.deliver_queue_messages_max,
        }
    }

    fn is_delivered(&self, id: u64) -> bool {
        id < self.delivered_below || self.delivered_above.contains(&id)
    }

    fn mark_delivered(&mut self, id: u64) {
        self.delivered_above.insert(id);
        while self.delivered_above.remove(&self.delivered_below) {
            self.delivered_below += 1;
        }
        debug_assert!(self.delivered_above.len() as u64 <= self.window);
    }

    pub fn on_data(&mut self, data: &Data<'_>) -> Received {
        let id = data.message_id;
        if self.is_delivered(id) {
            return Received::Duplicate;
        }
        if id - self.delivered_below >= self.window {
            return Received::Refused(Refusal::BeyondWindow);
        }
        if data.message_len as usize > self.message_len_max {
            return Received::Refused(Refusal::TooLarge);
        }
        if self.deliver_queue.len() >= self.deliver_queue_max {
            return Received::Refused(Refusal::Full);
        }
        if data.fragment_count == 1 {
            if data.payload.len() != data.message_len as usize || data.fragment_offset != 0 {
                return Received::Refused(Refusal::Inconsistent);
            }
            self.mark_delivered(id);
            self.deliver_queue.push_back(Delivered {
                message_id: id,
                payload: data.payload.to_vec(),
            });
            return Received::Accepted;
        }
        if !self.reassembly.contains_key(&id) {
            if self.reassembly.len() >= self.reassembly_max
                || self.reassembly_bytes + data.message_len as usize > self.reassembly_bytes_max
            {
                return Received::Refused(Refusal::Full);
            }
            self.reassembly_bytes += data.message_len as usize;
        }
        let r = self.reassembly.entry(id).or_insert_with(|| Reassembly {
            data: vec![0; data.message_len as usize],
            have: vec![false; usize::from(data.fragment_count)],
            missing: data.fragment_count,
        });
        let index = usize::from(data.fragment_index);
        let start = data.fragment_offset as usize;
        if r.data.len() != data.message_len as usize
            || r.have.len() != usize::from(data.fragment_count)
        {
            return Received::Refused(Refusal::Inconsistent);
        }
        if r.have[index] {
            return Received::Duplicate;
        }
        // The parser checked offset + len <= message_len.
        r.data[start..start + data.payload.len()].copy_from_slice(data.payload);
        r.have[index] = true;
        r.missing -= 1;
        if r.missing == 0
            && let Some(done) = self.reassembly.remove(&id)
        {
            self.reassembly_bytes -= done.data.len();
            self.mark_delivered(id);
            self.deliver_queue.push_back(Delivered {
                message_id: id,
                payload: done.data,
            });
        }
        Received::Accepted
    }

    pub fn poll_delivered(&mut self) -> Option<Delivered> {
        self.deliver_queue.pop_front()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fragment(
        id: u64,
        len: u32,
        offset: u32,
        index: u16,
        count: u16,
        payload: &[u8],
    ) -> Data<'_> {
        Data {
            message_id: id,
            message_len: len,
            fragment_offset: offset,
            fragment_index: index,
            fragment_count: count,
            payload,
        }
    }

    #[test]
    fn fragments_in_any_order_deliver_once() {
        let mut r = Receiver::new(&Config::default());
        assert_eq!(
            r.on_data(&fragment(0, 5, 3, 1, 2, b"de")),
            Received::Accepted
        );
        assert_eq!(
            r.on_data(&fragment(0, 5, 3, 1, 2, b"de")),
            Received::Duplicate
        );
        assert_eq!(r.poll_delivered(), None);
        assert_eq!(
            r.on_data(&fragment(0, 5, 0, 0, 2, b"abc")),
            Received::Accepted
        );
        assert_eq!(
            r.poll_delivered(),
            Some(Delivered {
                message_id: 0,
                payload: b"abcde".to_vec()
            })
        );
        assert_eq!(
            r.on_data(&fragment(0, 5, 0, 0, 2, b"abc")),
            Received::Duplicate
        );
        assert_eq!(r.poll_delivered(), None);
    }

    #[test]
    fn dedup_window_slides_and_refuses_beyond() {
        let config = Config {
            dedup_window_messages: 4,
            ..Config::default()
        };
        let mut r = Receiver::new(&config);
        assert_eq!(
            r.on_data(&fragment(4, 1, 0, 0, 1, b"x")),
            Received::Refused(Refusal::BeyondWindow)
        );
        for id in [3, 1, 2] {
            assert_eq!(
                r.on_data(&fragment(id, 1, 0, 0, 1, b"x")),
                Received::Accepted
            );
        }
        assert_eq!(r.delivered_below, 0);
        assert_eq!(
            r.on_data(&fragment(0, 1, 0, 0, 1, b"x")),
            Received::Accepted
        );
        assert_eq!(r.delivered_below, 4, "window slid past the contiguous run");
        assert!(r.delivered_above.is_empty());
        assert_eq!(
            r.on_data(&fragment(2, 1, 0, 0, 1, b"x")),
            Received::Duplicate
        );
        assert_eq!(
            r.on_data(&fragment(7, 1, 0, 0, 1, b"x")),
            Received::Accepted
        );
    }

    #[test]
    fn reassembly_memory_is_bounded() {
        let config = Config {
            message_len_max: 100,
            reassembly_bytes_max: 150,
            ..Config::default()
        };
        let mut r = Receiver::new(&config);
        assert_eq!(
            r.on_data(&fragment(0, 100, 0, 0, 2, b"a")),
            Received::Accepted
        );
        assert_eq!(
            r.on_data(&fragment(1, 60, 0, 0, 2, b"a")),
            Received::Refused(Refusal::Full)
        );
        assert_eq!(
            r.on_data(&fragment(1, 50, 0, 0, 2, b"a")),
            Received::Accepted
        );
        assert_eq!(
            r.on_data(&fragment(1, 50, 1, 1, 2, &[0; 49])),
            Received::Accepted
        );
        assert_eq!(
            r.reassembly_bytes, 100,
            "a completed message frees its buffer"
        );
    }

    #[test]
    fn inconsistent_fragments_and_full_queues_are_refused() {
        let config = Config {
            reassembly_messages_max: 1,
            deliver_queue_messages_max: 2,
            ..Config::default()
        };
        let mut r = Receiver::new(&config);
        assert_eq!(
            r.on_data(&fragment(0, 4, 0, 0, 2, b"ab")),
            Received::Accepted
        );
        assert_eq!(
            r.on_data(&fragment(0, 6, 2, 1, 2, b"cd")),
            Received::Refused(Refusal::Inconsistent)
        );
        assert_eq!(
            r.on_data(&fragment(1, 4, 0, 0, 2, b"ab")),
            Received::Refused(Refusal::Full)
        );
        assert_eq!(
            r.on_data(&fragment(2, 2, 0, 0, 1, b"abc")),
            Received::Refused(Refusal::Inconsistent)
        );
        assert_eq!(
            r.on_data(&fragment(2, 1, 0, 0, 1, b"a")),
            Received::Accepted
        );
        assert_eq!(
            r.on_data(&fragment(3, 1, 0, 0, 1, b"a")),
            Received::Accepted
        );
        assert_eq!(
            r.on_data(&fragment(4, 1, 0, 0, 1, b"a")),
            Received::Refused(Refusal::Full)
        );
        let too_big = fragment(
            5,
            (Config::default().message_len_max + 1) as u32,
            0,
            0,
            1,
            b"a",
        );
        assert_eq!(r.on_data(&too_big), Received::Refused(Refusal::TooLarge));
    }
}
