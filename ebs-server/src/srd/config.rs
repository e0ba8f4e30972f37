//! Every limit and tuning knob of a connection, checked once when the connection is made.

use super::packet::{ACK_PACKETS_MAX, MESSAGE_LEN_MAX, PATHS_MAX, PAYLOAD_LEN_MAX};
use thiserror::Error;

/// Default paths per peer: eight UDP source ports spread a connection over eight ECMP routes.
pub const PATH_COUNT_DEFAULT: usize = 8;
/// Default largest DATA payload: a block-protocol message with one 4 KiB block (4156 bytes)
/// travels in one datagram of 4288 bytes sealed (header 28, DATA header 20, payload, tag 16), so
/// a lost datagram is one lost block and the server applies each block as it arrives, with one
/// system call per block each way. Loopback (MTU 64 KiB) and 9000-byte jumbo frames carry it
/// whole; a path with a 1500-byte MTU (a veth pair, most Ethernet) would fragment it at the IP
/// layer, where the loss of any fragment loses the whole datagram: there, set
/// PAYLOAD_LEN_MTU_1500.
pub const PAYLOAD_LEN_DEFAULT: usize = 4224;
/// The payload limit for a 1500-byte MTU: a sealed datagram of 1464 bytes, within 1500 with the
/// IPv4 (20) and UDP (8) headers; a 4 KiB block then takes three datagrams.
pub const PAYLOAD_LEN_MTU_1500: usize = 1400;
/// Most packets a connection may have unacknowledged, whatever the congestion control allows.
pub const IN_FLIGHT_PACKETS_MAX: usize = 16384;
/// Default `wait_spin_us`: a few loopback round trips of this host.
pub const WAIT_SPIN_US_DEFAULT: u64 = 50;
/// Default `ack_delay_us_max`: longer than a server takes to answer a block request or a
/// client to send the next one (so the reply or the next request carries the ACK), a quarter
/// of the 200 us `rto_us_floor` (the sender's timers add it, so a held ACK never looks lost).
pub const ACK_DELAY_US_MAX_DEFAULT: u64 = 50;
/// Default `ack_batch_packets`: a burst of this many on one path is acknowledged at once, so
/// the sender's window and loss detection do not wait for the delay under load.
pub const ACK_BATCH_PACKETS_DEFAULT: usize = 8;
/// Ceiling of `wait_spin_us`.
pub const WAIT_SPIN_US_MAX: u64 = 10_000;
/// Most messages waiting to be sent, and most messages delivered but not yet taken.
pub const QUEUE_MESSAGES_MAX: usize = 65536;
/// Most bytes of reassembly buffers.
pub const REASSEMBLY_BYTES_MAX: usize = 1 << 30;
/// Largest dedup window (message ids the receiver tracks ahead of the oldest undelivered one).
pub const DEDUP_WINDOW_MAX: u64 = 1 << 20;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("invalid SRD config: {0}")]
pub struct ConfigError(pub String);

/// The configuration of one connection. Both peers should use the same limits: a receiver drops
/// (without acknowledging) what exceeds its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Paths (UDP source ports) per peer, 1..=PATHS_MAX.
    pub path_count: usize,
    /// Largest payload of one DATA packet: PAYLOAD_LEN_DEFAULT (one 4 KiB block per datagram,
    /// for loopback and jumbo frames) or PAYLOAD_LEN_MTU_1500 on a 1500-byte MTU path.
    pub payload_len_max: usize,
    /// Largest message the sender accepts and the receiver reassembles.
    pub message_len_max: usize,
    /// Hard cap on unacknowledged packets; the congestion control's limit stays below it.
    pub in_flight_packets_max: usize,
    /// Messages accepted by `send_message` and not yet fully acknowledged.
    pub send_queue_messages_max: usize,
    /// Delivered messages the layer above has not taken yet; beyond it the receiver stops
    /// acknowledging new messages, which pushes back on the sender.
    pub deliver_queue_messages_max: usize,
    /// Partially received messages held at once.
    pub reassembly_messages_max: usize,
    /// Bytes of buffers held for partially received messages: a reassembly buffer is allocated
    /// at the message's full length when its first fragment arrives, so this, not the count,
    /// bounds the memory a peer can make the receiver hold.
    pub reassembly_bytes_max: usize,
    /// Message ids the receiver accepts beyond its oldest undelivered one; the sender never has a
    /// message further ahead of its oldest unacknowledged one than this.
    pub dedup_window_messages: u64,
    /// Lower bound of the retransmission timeout. Microseconds, not TCP's 200 ms: a datacenter
    /// round trip is tens of microseconds.
    pub rto_us_floor: u64,
    /// Upper bound of the retransmission timeout, backoff included.
    pub rto_us_ceiling: u64,
    /// Retransmission timeout of a path without an RTT sample yet.
    pub rto_us_initial: u64,
    /// Consecutive timeouts after which a path is suspect and carries only probes.
    pub suspect_after_timeouts: u32,
    /// Time between probes on a suspect path.
    pub probe_interval_us: u64,
    /// Longest the receiver holds an acknowledgement: for a DATA going back on the same path to
    /// carry it (a reply carries the ACK of its request, the next request that of the reply),
    /// else it goes alone when this expires. The sender adds it to every retransmission timer,
    /// so it must stay well below `rto_us_floor` (at most half, checked).
    pub ack_delay_us_max: u64,
    /// Packets pending on one path that make the receiver acknowledge at once.
    pub ack_batch_packets: usize,
    /// Congestion control: the sending rate before any measurement, and its bounds.
    pub rate_bytes_per_s_initial: u64,
    pub rate_bytes_per_s_min: u64,
    pub rate_bytes_per_s_max: u64,
    /// Congestion control: the in-flight limit never goes below this many packets.
    pub in_flight_packets_min: usize,
    /// Congestion control: a path's RTT counts as rising only this far (at least) above its
    /// minimum. Queueing on a datacenter network shows in hundreds of microseconds; less than
    /// that is host scheduling noise.
    pub rtt_rise_us_min: u64,
    /// I/O loops: with packets in flight, how long an idle loop polls its sockets without
    /// blocking (yielding in between) before it blocks in poll(2) (srd/wait.rs). 0: block at
    /// once. Spinning trades CPU for the wake-up latency of a blocked thread.
    pub wait_spin_us: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            path_count: PATH_COUNT_DEFAULT,
            payload_len_max: PAYLOAD_LEN_DEFAULT,
            message_len_max: 1 << 20,
            in_flight_packets_max: 1024,
            send_queue_messages_max: 4096,
            deliver_queue_messages_max: 4096,
            reassembly_messages_max: 256,
            reassembly_bytes_max: 16 << 20,
            dedup_window_messages: 8192,
            rto_us_floor: 200,
            rto_us_ceiling: 50_000,
            rto_us_initial: 1_000,
            suspect_after_timeouts: 3,
            probe_interval_us: 1_000,
            ack_delay_us_max: ACK_DELAY_US_MAX_DEFAULT,
            ack_batch_packets: ACK_BATCH_PACKETS_DEFAULT,
            rate_bytes_per_s_initial: 100 << 20,
            rate_bytes_per_s_min: 1 << 20,
            rate_bytes_per_s_max: 10 << 30,
            in_flight_packets_min: 16,
            rtt_rise_us_min: 250,
            wait_spin_us: WAIT_SPIN_US_DEFAULT,
        }
    }
}

impl Config {
    /// Checks every field against its hard limit and the others.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let fail = |what: String| Err(ConfigError(what));
        if !(1..=PATHS_MAX).contains(&self.path_count) {
            return fail(format!(
                "path_count {} not in 1..={PATHS_MAX}",
                self.path_count
            ));
        }
        if !(1..=PAYLOAD_LEN_MAX).contains(&self.payload_len_max) {
            return fail(format!(
                "payload_len_max {} not in 1..={PAYLOAD_LEN_MAX}",
                self.payload_len_max
            ));
        }
        if self.message_len_max > MESSAGE_LEN_MAX {
            return fail(format!(
                "message_len_max {} > {MESSAGE_LEN_MAX}",
                self.message_len_max
            ));
        }
        if self.message_len_max.div_ceil(self.payload_len_max) > usize::from(u16::MAX) {
            return fail(
                "message_len_max / payload_len_max needs more than 65535 fragments".into(),
            );
        }
        if !(1..=IN_FLIGHT_PACKETS_MAX).contains(&self.in_flight_packets_max)
            || !(1..=self.in_flight_packets_max).contains(&self.in_flight_packets_min)
        {
            return fail(
                "need 1 <= in_flight_packets_min <= in_flight_packets_max <= 16384".into(),
            );
        }
        for (name, value) in [
            ("send_queue_messages_max", self.send_queue_messages_max),
            (
                "deliver_queue_messages_max",
                self.deliver_queue_messages_max,
            ),
            ("reassembly_messages_max", self.reassembly_messages_max),
        ] {
            if !(1..=QUEUE_MESSAGES_MAX).contains(&value) {
                return fail(format!("{name} {value} not in 1..={QUEUE_MESSAGES_MAX}"));
            }
        }
        if !(self.message_len_max..=REASSEMBLY_BYTES_MAX).contains(&self.reassembly_bytes_max) {
            return fail(format!(
                "reassembly_bytes_max not in message_len_max..={REASSEMBLY_BYTES_MAX}"
            ));
        }
        if !(1..=DEDUP_WINDOW_MAX).contains(&self.dedup_window_messages) {
            return fail(format!(
                "dedup_window_messages not in 1..={DEDUP_WINDOW_MAX}"
            ));
        }
        if self.rto_us_floor == 0
            || self.rto_us_floor > self.rto_us_ceiling
            || !(self.rto_us_floor..=self.rto_us_ceiling).contains(&self.rto_us_initial)
        {
            return fail("need 0 < rto_us_floor <= rto_us_initial <= rto_us_ceiling".into());
        }
        if self.suspect_after_timeouts == 0 || self.probe_interval_us == 0 {
            return fail("suspect_after_timeouts and probe_interval_us must be positive".into());
        }
        // The receiver's held acks must fire well before the sender's earliest timeout, or every
        // batched ack would look like a loss.
        if self.ack_delay_us_max * 2 > self.rto_us_floor {
            return fail("ack_delay_us_max must be at most half of rto_us_floor".into());
        }
        if self.wait_spin_us > WAIT_SPIN_US_MAX {
            return fail(format!(
                "wait_spin_us {} > {WAIT_SPIN_US_MAX}",
                self.wait_spin_us
            ));
        }
        if !(1..=ACK_PACKETS_MAX).contains(&self.ack_batch_packets) {
            return fail(format!("ack_batch_packets not in 1..={ACK_PACKETS_MAX}"));
        }
        if self.rate_bytes_per_s_min == 0
            || !(self.rate_bytes_per_s_min..=self.rate_bytes_per_s_max)
                .contains(&self.rate_bytes_per_s_initial)
        {
            return fail("need 0 < rate_bytes_per_s_min <= initial <= max".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_valid() {
        assert_eq!(Config::default().validate(), Ok(()));
    }

    #[test]
    fn payload_limits_fit_their_mtu() {
        use super::super::packet::{DATA_BODY_HEADER_LEN, HEADER_LEN};
        use super::super::seal::TAG_LEN;
        let sealed = |payload: usize| HEADER_LEN + DATA_BODY_HEADER_LEN + payload + TAG_LEN;
        const IPV4_UDP_HEADERS: usize = 20 + 8;
        assert_eq!(sealed(PAYLOAD_LEN_DEFAULT), 4288);
        assert!(sealed(PAYLOAD_LEN_DEFAULT) + IPV4_UDP_HEADERS <= 9000);
        assert!(sealed(PAYLOAD_LEN_MTU_1500) + IPV4_UDP_HEADERS <= 1500);
        for payload_len_max in [PAYLOAD_LEN_DEFAULT, PAYLOAD_LEN_MTU_1500] {
            let c = Config {
                payload_len_max,
                ..Config::default()
            };
            assert_eq!(c.validate(), Ok(()));
        }
    }

    #[test]
    fn each_limit_is_checked() {
        let bad: Vec<fn(&mut Config)> = vec![
            |c| c.path_count = 0,
            |c| c.path_count = PATHS_MAX + 1,
            |c| c.payload_len_max = PAYLOAD_LEN_MAX + 1,
            |c| c.message_len_max = MESSAGE_LEN_MAX + 1,
            |c| c.payload_len_max = 1,
            |c| c.in_flight_packets_max = IN_FLIGHT_PACKETS_MAX + 1,
            |c| c.in_flight_packets_min = c.in_flight_packets_max + 1,
            |c| c.send_queue_messages_max = 0,
            |c| c.deliver_queue_messages_max = QUEUE_MESSAGES_MAX + 1,
            |c| c.reassembly_messages_max = 0,
            |c| c.reassembly_bytes_max = c.message_len_max - 1,
            |c| c.dedup_window_messages = 0,
            |c| c.rto_us_floor = 0,
            |c| c.rto_us_initial = c.rto_us_ceiling + 1,
            |c| c.suspect_after_timeouts = 0,
            |c| c.ack_delay_us_max = c.rto_us_floor,
            |c| c.ack_batch_packets = ACK_PACKETS_MAX + 1,
            |c| c.wait_spin_us = WAIT_SPIN_US_MAX + 1,
            |c| c.rate_bytes_per_s_initial = c.rate_bytes_per_s_max + 1,
        ];
        for (i, mutate) in bad.into_iter().enumerate() {
            let mut c = Config::default();
            mutate(&mut c);
            assert!(c.validate().is_err(), "mutation {i} accepted");
        }
    }
}
