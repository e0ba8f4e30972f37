//! One connection to one peer: the pure state machine. No sockets, no clock: every call takes
//! `now_us`, outputs are returned (datagrams with their path from `poll_transmit`, messages from
//! `poll_delivered`, the next deadline from `next_timeout_us`), so a seeded simulation replays it
//! exactly.
//!
//! Sending: a message is cut into fragments of `payload_len_max`; each transmission of a fragment
//! is a packet with a fresh packet number on one path. A packet is lost when later packets on
//! the *same* path are acknowledged past it (path.rs), or when its timer (the path's RTO) fires.
//! A lost fragment is sent again on a different path. Receiving: see receiver.rs.

use super::Config;
use super::config::ConfigError;
use super::congestion::Congestion;
use super::packet::{self, ACK_PACKETS_MAX, Acked, Body, Data, Packet, PacketError};
use super::path::{Health, Path};
use super::receiver::{Delivered, Received, Receiver, Refusal};
use super::replay::ReplayWindow;
use super::seal::{OpenError, Sealer};
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use thiserror::Error;

/// A datagram to send on a path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    pub path_id: u8,
    pub datagram: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SendError {
    #[error("message of {len} bytes exceeds {max}")]
    TooLarge { len: usize, max: usize },
    #[error("send queue full ({max} messages)")]
    QueueFull { max: usize },
}

/// Lost transmissions of one fragment remembered so a late acknowledgement still counts (and is
/// counted as a spurious loss); older ones are forgotten, which bounds the table.
const LOST_RECORDS_PER_FRAGMENT: usize = 4;
/// A path whose smoothed RTT is more than this many times the median of the healthy paths gets
/// no new data while a faster path is available; it is probed to notice when it recovers.
const SLOW_PATH_FACTOR: u64 = 2;
/// A path with acknowledgements pending weighs its load by NUMERATOR / DENOMINATOR when a new
/// fragment picks its path (`Connection::choose_path`).
const PIGGYBACK_LOAD_NUMERATOR: u64 = 2;
const PIGGYBACK_LOAD_DENOMINATOR: u64 = 3;
/// Acknowledgements and probes waiting for `poll_transmit`. A peer (or a forger) sending probes
/// faster than the I/O loop drains would otherwise grow the queue without end; beyond it they are
/// dropped and counted, and the protocol recovers them like lost datagrams.
pub const CONTROL_QUEUE_MAX: usize = 4096;

/// Counters of one connection.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    pub data_packets_sent: u64,
    pub retransmissions: u64,
    /// Standalone ACK datagrams: acknowledgements that found no DATA to ride on within
    /// `ack_delay_us_max`, or that could not wait (a batch full, a packet out of order).
    pub acks_sent: u64,
    /// DATA packets that carried acknowledgements (DATA_ACK): each one an ACK datagram saved.
    pub acks_piggybacked: u64,
    /// Packets acknowledged inside DATA_ACKs.
    pub packets_acked_piggybacked: u64,
    pub probes_sent: u64,
    pub probe_acks_sent: u64,
    pub datagrams_received: u64,
    /// Datagrams that failed to parse (bad magic, version, crc, lengths...).
    pub dropped_malformed: u64,
    pub dropped_wrong_connection: u64,
    pub dropped_wrong_path: u64,
    pub last_drop: Option<PacketError>,
    pub fragments_accepted: u64,
    pub fragments_duplicate: u64,
    pub fragments_refused: u64,
    pub last_refusal: Option<Refusal>,
    pub messages_delivered: u64,
    pub messages_acked: u64,
    pub losses_by_threshold: u64,
    pub losses_by_timeout: u64,
    /// Packets moved off a path the moment it became suspect.
    pub losses_on_suspect_path: u64,
    /// Acknowledgements of packets already declared lost: each one a retransmission that was
    /// not needed.
    pub spurious_losses: u64,
    pub acks_unknown: u64,
    pub paths_made_suspect: u64,
    pub probes_answered: u64,
    /// Acknowledgements and probes dropped because CONTROL_QUEUE_MAX were already waiting.
    pub control_dropped: u64,
    /// Sealed connections: datagrams that authenticated and were not replays. The first one is
    /// the client's proof, to the server, that it holds the session keys.
    pub packets_opened: u64,
    /// Sealed connections: datagrams whose tag did not verify.
    pub dropped_forged: u64,
    /// Sealed connections: authentic datagrams already received, or older than the window.
    pub dropped_replayed: u64,
    /// Sealed connections: datagrams too short for header and tag, or with a length mismatch.
    pub dropped_truncated: u64,
    /// Sealed connections: packets not sent because the packet number reached its limit.
    pub seal_refused: u64,
}

/// The keys and replay window of a sealed connection.
#[derive(Debug)]
struct Session {
    send: Sealer,
    receive: Sealer,
    replay: ReplayWindow,
}

#[derive(Debug)]
struct Fragment {
    acked: bool,
    live: Option<u64>,
    last_path: Option<u8>,
    packets: VecDeque<u64>,
}

#[derive(Debug)]
struct OutMessage {
    data: Vec<u8>,
    fragments: Vec<Fragment>,
    unacked: usize,
    next_unsent: usize,
}

#[derive(Debug)]
struct SentPacket {
    message_id: u64,
    fragment_index: u16,
    path_id: u8,
    path_seq: u64,
    sent_us: u64,
    deadline_us: u64,
    bytes: usize,
    live: bool,
    delivered_bytes_at_send: u64,
    delivered_us_at_send: u64,
}

#[derive(Debug)]
pub struct Connection {
    config: Config,
    connection_id: u64,
    next_packet_number: u64,
    paths: Vec<Path>,
    congestion: Congestion,
    receiver: Receiver,
    next_message_id: u64,
    messages: BTreeMap<u64, OutMessage>,
    /// Messages with fragments never sent yet, oldest first.
    unsent: VecDeque<u64>,
    /// Fragments whose last transmission was lost.
    retransmit: VecDeque<(u64, u16)>,
    sent: HashMap<u64, SentPacket>,
    /// Timers of the live packets: (deadline, packet number).
    deadlines: BTreeSet<(u64, u64)>,
    /// Per path: received data packets not yet acknowledged, with their arrival time.
    pending_acks: Vec<Vec<(u64, u64)>>,
    /// Per path: the highest packet number of a DATA received on it; one below it arrived out
    /// of order and is acknowledged at once, so the sender's per-path loss detection sees it.
    highest_received: Vec<Option<u64>>,
    control: VecDeque<Transmit>,
    delivered_bytes: u64,
    delivered_us: u64,
    stats: Stats,
    /// `None`: version-1 packets (CRC only); `Some`: every packet sealed, see `seal`.
    session: Option<Session>,
}

impl Connection {
    pub fn new(config: Config, connection_id: u64) -> Result<Self, ConfigError> {
        config.validate()?;
        let path_count = config.path_count;
        Ok(Connection {
            congestion: Congestion::new(&config),
            receiver: Receiver::new(&config),
            paths: (0..path_count).map(|i| Path::new(i as u8)).collect(),
            pending_acks: vec![Vec::new(); path_count],
            highest_received: vec![None; path_count],
            config,
            connection_id,
            next_packet_number: 0,
            next_message_id: 0,
            messages: BTreeMap::new(),
            unsent: VecDeque::new(),
            retransmit: VecDeque::new(),
            sent: HashMap::new(),
            deadlines: BTreeSet::new(),
            control: VecDeque::new(),
            delivered_bytes: 0,
            delivered_us: 0,
            stats: Stats::default(),
            session: None,
        })
    }

    /// Seals every packet from now on with `send` and accepts only packets sealed with
    /// `receive` (the keys of a finished handshake). Install before the first packet.
    pub fn install_keys(&mut self, send: Sealer, receive: Sealer) {
        self.session = Some(Session {
            send,
            receive,
            replay: ReplayWindow::new(),
        });
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    pub fn paths(&self) -> &[Path] {
        &self.paths
    }

    pub fn congestion(&self) -> &Congestion {
        &self.congestion
    }

    /// Messages accepted and not yet fully acknowledged by the peer.
    pub fn unacked_messages(&self) -> usize {
        self.messages.len()
    }

    pub fn in_flight_packets(&self) -> usize {
        self.deadlines.len()
    }

    /// Queues a message; returns its id. Delivery to the peer is exactly once, in any order.
    pub fn send_message(&mut self, payload: Vec<u8>) -> Result<u64, SendError> {
        if payload.len() > self.config.message_len_max {
            return Err(SendError::TooLarge {
                len: payload.len(),
                max: self.config.message_len_max,
            });
        }
        if self.messages.len() >= self.config.send_queue_messages_max {
            return Err(SendError::QueueFull {
                max: self.config.send_queue_messages_max,
            });
        }
        let count = payload.len().div_ceil(self.config.payload_len_max).max(1);
        let id = self.next_message_id;
        self.next_message_id += 1;
        let fragments = (0..count)
            .map(|_| Fragment {
                acked: false,
                live: None,
                last_path: None,
                packets: VecDeque::new(),
            })
            .collect();
        self.messages.insert(
            id,
            OutMessage {
                data: payload,
                fragments,
                unacked: count,
                next_unsent: 0,
            },
        );
        self.unsent.push_back(id);
        Ok(id)
    }

    pub fn poll_delivered(&mut self) -> Option<Delivered> {
        let delivered = self.receiver.poll_delivered()?;
        self.stats.messages_delivered += 1;
        Some(delivered)
    }

    fn take_packet_number(&mut self) -> u64 {
        let pn = self.next_packet_number;
        self.next_packet_number += 1;
        pn
    }

    /// Queues a control packet; returns its packet number, or None (counted) when the queue is
    /// full and the packet was dropped without taking a number.
    fn push_control(&mut self, path_id: u8, body: Body<'_>) -> Option<u64> {
        if self.control.len() >= CONTROL_QUEUE_MAX {
            self.stats.control_dropped += 1;
            return None;
        }
        let packet_number = self.take_packet_number();
        let datagram = Packet {
            connection_id: self.connection_id,
            packet_number,
            path_id,
            body,
        }
        .encode();
        self.control.push_back(Transmit { path_id, datagram });
        Some(packet_number)
    }

    /// Feeds one datagram that arrived on local path `path_id`. Anything malformed, forged or
    /// for another connection is dropped and counted, never an error to the caller.
    pub fn handle_datagram(&mut self, now_us: u64, path_id: u8, datagram: &[u8]) {
        self.stats.datagrams_received += 1;
        let opened;
        let datagram = match &mut self.session {
            None => datagram,
            Some(session) => {
                let (packet_number, v1) = match session.receive.open_to_v1(datagram) {
                    Ok(o) => o,
                    Err(OpenError::Forged) => {
                        self.stats.dropped_forged += 1;
                        return;
                    }
                    Err(OpenError::Truncated { .. } | OpenError::LengthMismatch { .. }) => {
                        self.stats.dropped_truncated += 1;
                        return;
                    }
                    Err(OpenError::NotSealed) => {
                        self.stats.dropped_malformed += 1;
                        return;
                    }
                };
                // Recorded only now that the tag verified, so forgeries cannot move the window.
                if session.replay.accept(packet_number).is_err() {
                    self.stats.dropped_replayed += 1;
                    return;
                }
                self.stats.packets_opened += 1;
                opened = v1;
                &opened[..]
            }
        };
        let packet = match packet::parse(datagram) {
            Ok(p) => p,
            Err(e) => {
                self.stats.dropped_malformed += 1;
                self.stats.last_drop = Some(e);
                return;
            }
        };
        if packet.connection_id != self.connection_id {
            self.stats.dropped_wrong_connection += 1;
            return;
        }
        if packet.path_id != path_id || usize::from(path_id) >= self.paths.len() {
            self.stats.dropped_wrong_path += 1;
            return;
        }
        match packet.body {
            Body::Data(data) => self.on_data(now_us, path_id, packet.packet_number, &data),
            Body::Ack(acked) => self.on_ack(now_us, &acked),
            Body::DataAck { acked, data } => {
                self.on_ack(now_us, &acked);
                self.on_data(now_us, path_id, packet.packet_number, &data);
            }
            Body::Probe => {
                self.stats.probe_acks_sent += 1;
                let answer = Acked {
                    packet_number: packet.packet_number,
                    ack_delay_us: 0,
                };
                let _ = self.push_control(path_id, Body::ProbeAck(answer));
            }
            Body::ProbeAck(answer) => self.on_probe_ack(now_us, path_id, answer),
        }
    }

    /// Takes a DATA fragment and decides when to acknowledge it: it is held (for a DATA going
    /// back on the same path to carry, or until `ack_delay_us_max`), unless `ack_batch_packets`
    /// are now pending on the path, or it is a duplicate (the sender did not get the first ACK)
    /// or arrived below the highest packet number seen on the path (reordered, or the sender is
    /// retransmitting): then the sender wants the ACK now, and it goes at once.
    fn on_data(&mut self, now_us: u64, path_id: u8, packet_number: u64, data: &Data<'_>) {
        let duplicate = match self.receiver.on_data(data) {
            Received::Accepted => {
                self.stats.fragments_accepted += 1;
                false
            }
            Received::Duplicate => {
                self.stats.fragments_duplicate += 1;
                true
            }
            Received::Refused(refusal) => {
                self.stats.fragments_refused += 1;
                self.stats.last_refusal = Some(refusal);
                return;
            }
        };
        let p = usize::from(path_id);
        let highest = &mut self.highest_received[p];
        let out_of_order = highest.is_some_and(|h| packet_number < h);
        *highest = Some(highest.map_or(packet_number, |h| h.max(packet_number)));
        let pending = &mut self.pending_acks[p];
        pending.push((packet_number, now_us));
        if pending.len() >= self.config.ack_batch_packets || duplicate || out_of_order {
            self.flush_acks(now_us, path_id);
        }
    }

    /// Takes from the pending acknowledgements of `path_id` as many as fit in `room_bytes` of
    /// an ACK block (lowest packet numbers first, the ones the sender waits for longest); the
    /// rest stay pending with their timer.
    fn take_piggyback(&mut self, now_us: u64, path_id: u8, room_bytes: usize) -> Vec<Acked> {
        let pending = &mut self.pending_acks[usize::from(path_id)];
        let empty_block = packet::ACK_BODY_HEADER_LEN;
        let one = packet::ACK_RANGE_LEN + packet::ACK_DELAY_LEN;
        if pending.is_empty() || room_bytes < empty_block + one {
            return Vec::new();
        }
        pending.sort_unstable();
        pending.dedup_by_key(|(pn, _)| *pn);
        let mut acked: Vec<Acked> = Vec::new();
        let (mut ranges, mut taken) = (0usize, 0usize);
        for &(packet_number, received_us) in pending.iter() {
            let joins = acked
                .last()
                .is_some_and(|a| a.packet_number + 1 == packet_number);
            let (r, d) = (ranges + usize::from(!joins), taken + 1);
            let len = empty_block + r * packet::ACK_RANGE_LEN + d * packet::ACK_DELAY_LEN;
            if len > room_bytes || d > ACK_PACKETS_MAX {
                break;
            }
            (ranges, taken) = (r, d);
            acked.push(Acked {
                packet_number,
                ack_delay_us: ack_delay_us(now_us, received_us),
            });
        }
        pending.drain(..taken);
        acked
    }

    fn flush_acks(&mut self, now_us: u64, path_id: u8) {
        let mut pending = std::mem::take(&mut self.pending_acks[usize::from(path_id)]);
        pending.sort_unstable();
        pending.dedup_by_key(|(pn, _)| *pn);
        for chunk in pending.chunks(ACK_PACKETS_MAX) {
            let acked = chunk
                .iter()
                .map(|&(packet_number, received_us)| Acked {
                    packet_number,
                    ack_delay_us: ack_delay_us(now_us, received_us),
                })
                .collect();
            self.stats.acks_sent += 1;
            let _ = self.push_control(path_id, Body::Ack(acked));
        }
    }

    fn on_ack(&mut self, now_us: u64, acked: &[Acked]) {
        let mut touched = [false; packet::PATHS_MAX];
        for a in acked {
            if let Some(path_id) = self.on_packet_acked(now_us, a) {
                touched[usize::from(path_id)] = true;
            }
        }
        let touched: Vec<usize> = (0..self.paths.len()).filter(|&p| touched[p]).collect();
        for path_id in touched {
            self.detect_lost_on(now_us, path_id);
        }
        let reference = self.rtt_us_reference();
        if self.congestion.round_due(now_us, reference) {
            let rising = self.end_round_most_paths_rising();
            let base = self.rtt_us_min_reference();
            self.congestion.on_round(now_us, rising, reference, base);
        }
    }

    fn on_packet_acked(&mut self, now_us: u64, a: &Acked) -> Option<u8> {
        let Some(sent) = self.sent.remove(&a.packet_number) else {
            self.stats.acks_unknown += 1;
            return None;
        };
        let rtt_us = now_us
            .saturating_sub(sent.sent_us)
            .saturating_sub(u64::from(a.ack_delay_us));
        self.paths[usize::from(sent.path_id)].on_acked(sent.path_seq, rtt_us, sent.sent_us);
        if sent.live {
            self.deadlines.remove(&(sent.deadline_us, a.packet_number));
            self.delivered_bytes += sent.bytes as u64;
            self.delivered_us = now_us;
            let interval_us = now_us.saturating_sub(sent.delivered_us_at_send).max(1);
            let rate =
                (self.delivered_bytes - sent.delivered_bytes_at_send) * 1_000_000 / interval_us;
            let reference = self.rtt_us_reference();
            self.congestion.on_delivery_sample(now_us, rate, reference);
        } else {
            self.stats.spurious_losses += 1;
        }
        self.on_fragment_acked(sent.message_id, sent.fragment_index);
        Some(sent.path_id)
    }

    fn on_fragment_acked(&mut self, message_id: u64, fragment_index: u16) {
        let Some(message) = self.messages.get_mut(&message_id) else {
            return;
        };
        let fragment = &mut message.fragments[usize::from(fragment_index)];
        if fragment.acked {
            return;
        }
        fragment.acked = true;
        fragment.live = None;
        message.unacked -= 1;
        let others: Vec<u64> = fragment.packets.drain(..).collect();
        let done = message.unacked == 0;
        for pn in others {
            self.forget_packet(pn);
        }
        if done {
            self.messages.remove(&message_id);
            self.stats.messages_acked += 1;
        }
    }

    /// Drops the record of a packet (acknowledged through another transmission, or too old).
    fn forget_packet(&mut self, pn: u64) {
        if let Some(sent) = self.sent.remove(&pn)
            && sent.live
        {
            self.deadlines.remove(&(sent.deadline_us, pn));
            self.paths[usize::from(sent.path_id)].remove(sent.path_seq);
        }
    }

    fn detect_lost_on(&mut self, now_us: u64, path_id: usize) {
        let sent = &self.sent;
        let lost = self.paths[path_id]
            .detect_lost(now_us, |pn| sent.get(&pn).map_or(now_us, |s| s.sent_us));
        for (_, pn) in lost {
            self.paths[path_id].stats.lost_by_threshold += 1;
            self.stats.losses_by_threshold += 1;
            self.declare_lost(pn);
        }
    }

    /// Stops waiting for a live packet and queues its fragment for a retransmission.
    fn declare_lost(&mut self, pn: u64) {
        let Some(sent) = self.sent.get_mut(&pn) else {
            return;
        };
        if !sent.live {
            return;
        }
        sent.live = false;
        let (deadline, path_id, seq) = (sent.deadline_us, sent.path_id, sent.path_seq);
        let (message_id, index) = (sent.message_id, sent.fragment_index);
        self.deadlines.remove(&(deadline, pn));
        self.paths[usize::from(path_id)].remove(seq);
        if let Some(message) = self.messages.get_mut(&message_id) {
            let fragment = &mut message.fragments[usize::from(index)];
            if !fragment.acked && fragment.live == Some(pn) {
                fragment.live = None;
                self.retransmit.push_back((message_id, index));
            }
        }
    }

    fn on_probe_ack(&mut self, now_us: u64, path_id: u8, answer: Acked) {
        let path = &mut self.paths[usize::from(path_id)];
        match path.probe {
            Some((pn, sent_us)) if pn == answer.packet_number => {
                let rtt_us = now_us
                    .saturating_sub(sent_us)
                    .saturating_sub(u64::from(answer.ack_delay_us));
                path.on_probe_answered(rtt_us);
                self.stats.probes_answered += 1;
            }
            _ => self.stats.acks_unknown += 1,
        }
    }

    /// The median smoothed RTT of the healthy paths with samples: what "a round trip" means for
    /// the connection.
    fn rtt_us_reference(&self) -> u64 {
        self.median_healthy(|p| p.rtt.smoothed_us())
    }

    /// The median minimum RTT of the healthy paths: the round trip without queues, which sizes
    /// the in-flight limit (sizing it by the smoothed RTT would let queues grow themselves room).
    fn rtt_us_min_reference(&self) -> u64 {
        self.median_healthy(|p| p.rtt.min_us())
    }

    fn median_healthy(&self, value: impl Fn(&Path) -> Option<u64>) -> u64 {
        let mut rtts: Vec<u64> = self
            .paths
            .iter()
            .filter(|p| p.health() == Health::Healthy)
            .filter_map(value)
            .collect();
        if rtts.is_empty() {
            return self.config.rto_us_floor;
        }
        rtts.sort_unstable();
        rtts[rtts.len() / 2]
    }

    /// Ends the round on every healthy path; true when most of those with samples this round
    /// show a standing queue.
    fn end_round_most_paths_rising(&mut self) -> bool {
        let rise_us_min = self.config.rtt_rise_us_min;
        let (mut measured, mut rising) = (0, 0);
        for path in &mut self.paths {
            let signal = path.rtt.end_round_rising(rise_us_min);
            if path.health() == Health::Healthy
                && let Some(r) = signal
            {
                measured += 1;
                rising += usize::from(r);
            }
        }
        rising * 2 > measured
    }

    fn is_slow(&self, path: &Path, reference: u64) -> bool {
        path.rtt
            .smoothed_us()
            .is_some_and(|srtt| srtt > SLOW_PATH_FACTOR * reference)
    }

    /// The least-loaded healthy path, not `exclude`, preferring paths that are not slow. Load is
    /// the time to drain what the path has in flight: (in-flight + 1) x smoothed RTT. A path
    /// with acknowledgements pending counts its load at 2/3 (`PIGGYBACK_LOAD_*`): a fragment
    /// sent there carries them, which saves the ACK datagram and tells the peer sooner, worth a
    /// somewhat busier path (a reply then goes back on its request's path).
    fn choose_path(&self, exclude: Option<u8>) -> Option<u8> {
        let reference = self.rtt_us_reference();
        let load = |p: &Path| {
            let load = (p.in_flight_packets() as u64 + 1)
                * p.rtt.smoothed_us().unwrap_or(self.config.rto_us_floor);
            if self.pending_acks[usize::from(p.id)].is_empty() {
                load * PIGGYBACK_LOAD_DENOMINATOR
            } else {
                load * PIGGYBACK_LOAD_NUMERATOR
            }
        };
        let healthy = || self.paths.iter().filter(|p| p.health() == Health::Healthy);
        // A path with an unanswered timeout comes after every path without one: at low queue
        // depth the least-loaded path is the fastest, the one that just went dark, and taking it
        // again would cost a doubled timer each time until it turned suspect.
        let pick = |slow_ok: bool, timed_out_ok: bool, exclude: Option<u8>| {
            healthy()
                .filter(|p| {
                    Some(p.id) != exclude
                        && (slow_ok || !self.is_slow(p, reference))
                        && (timed_out_ok || !p.has_unanswered_timeout())
                })
                .min_by_key(|p| (load(p), p.id))
                .map(|p| p.id)
        };
        pick(false, false, exclude)
            .or_else(|| pick(true, false, exclude))
            .or_else(|| pick(true, true, exclude))
            .or_else(|| {
                // A retransmission goes on a different path whenever one is healthy; with a single
                // healthy path it has to go where it is.
                pick(true, true, None)
            })
    }

    /// The next fragment to send: retransmissions first, then new fragments of messages inside
    /// the dedup window.
    fn next_fragment(&mut self) -> Option<(u64, u16, bool)> {
        while let Some(&(id, index)) = self.retransmit.front() {
            let wanted = self.messages.get(&id).is_some_and(|m| {
                !m.fragments[usize::from(index)].acked
                    && m.fragments[usize::from(index)].live.is_none()
            });
            if wanted {
                return Some((id, index, true));
            }
            self.retransmit.pop_front();
        }
        let oldest = *self.messages.keys().next()?;
        let &id = self.unsent.front()?;
        if id - oldest >= self.config.dedup_window_messages {
            return None;
        }
        let message = self.messages.get(&id)?;
        Some((id, message.next_unsent as u16, false))
    }

    /// The next datagram to send now, if any.
    pub fn poll_transmit(&mut self, now_us: u64) -> Option<Transmit> {
        loop {
            let plain = self.poll_transmit_plain(now_us)?;
            let Some(session) = &self.session else {
                return Some(plain);
            };
            match session.send.seal_v1(&plain.datagram) {
                Ok(datagram) => {
                    return Some(Transmit {
                        path_id: plain.path_id,
                        datagram,
                    });
                }
                // Past the packet-number limit nothing more is sent; the peer times out and
                // the client reconnects with fresh keys.
                Err(_) => self.stats.seal_refused += 1,
            }
        }
    }

    fn poll_transmit_plain(&mut self, now_us: u64) -> Option<Transmit> {
        if let Some(t) = self.control.pop_front() {
            return Some(t);
        }
        if !self.congestion.can_send(now_us, self.in_flight_packets()) {
            return None;
        }
        let (message_id, index, is_retransmit) = self.next_fragment()?;
        let exclude = self
            .messages
            .get(&message_id)
            .and_then(|m| m.fragments[usize::from(index)].last_path);
        let path_id = self.choose_path(if is_retransmit { exclude } else { None })?;
        let packet_number = self.take_packet_number();
        let payload_len_max = self.config.payload_len_max;
        let connection_id = self.connection_id;
        let message_len = self.messages.get(&message_id)?.data.len();
        let start = usize::from(index) * payload_len_max;
        let end = (start + payload_len_max).min(message_len);
        // The acknowledgements pending on this path ride along if they fit in what the fragment
        // leaves of a full payload, so a DATA_ACK is never larger than the largest DATA (the
        // MTU reasoning of `payload_len_max` holds for both).
        let room_bytes = payload_len_max - (end - start);
        let acked = self.take_piggyback(now_us, path_id, room_bytes);
        let message = self.messages.get_mut(&message_id)?;
        let data = Data {
            message_id,
            message_len: message_len as u32,
            fragment_offset: start as u32,
            fragment_index: index,
            fragment_count: message.fragments.len() as u16,
            payload: &message.data[start..end],
        };
        let body = if acked.is_empty() {
            Body::Data(data)
        } else {
            self.stats.acks_piggybacked += 1;
            self.stats.packets_acked_piggybacked += acked.len() as u64;
            Body::DataAck { acked, data }
        };
        let datagram = Packet {
            connection_id,
            packet_number,
            path_id,
            body,
        }
        .encode();
        if is_retransmit {
            self.retransmit.pop_front();
        } else {
            message.next_unsent += 1;
            if message.next_unsent == message.fragments.len() {
                self.unsent.pop_front();
            }
        }
        let fragment = &mut message.fragments[usize::from(index)];
        fragment.live = Some(packet_number);
        fragment.last_path = Some(path_id);
        fragment.packets.push_back(packet_number);
        let forget = if fragment.packets.len() > LOST_RECORDS_PER_FRAGMENT {
            fragment.packets.pop_front()
        } else {
            None
        };
        if let Some(old) = forget {
            self.forget_packet(old);
        }

        let c = &self.config;
        let path = &mut self.paths[usize::from(path_id)];
        // The peer may hold the acknowledgement for up to ack_delay_us_max, which the RTT samples
        // leave out (as QUIC's PTO adds max_ack_delay).
        let deadline_us = now_us
            + path.rto_us(c.rto_us_floor, c.rto_us_ceiling, c.rto_us_initial)
            + c.ack_delay_us_max;
        let path_seq = path.on_sent(packet_number);
        if is_retransmit {
            path.stats.retransmissions_sent += 1;
            self.stats.retransmissions += 1;
        }
        self.stats.data_packets_sent += 1;
        self.congestion.on_sent(datagram.len());
        self.deadlines.insert((deadline_us, packet_number));
        if self.delivered_us == 0 {
            self.delivered_us = now_us;
        }
        self.sent.insert(
            packet_number,
            SentPacket {
                message_id,
                fragment_index: index,
                path_id,
                path_seq,
                sent_us: now_us,
                deadline_us,
                bytes: end - start,
                live: true,
                delivered_bytes_at_send: self.delivered_bytes,
                delivered_us_at_send: self.delivered_us,
            },
        );
        debug_assert!(self.deadlines.len() <= self.config.in_flight_packets_max);
        Some(Transmit { path_id, datagram })
    }

    /// Runs the timers due at `now_us`: packet timeouts, held acknowledgements, probes.
    pub fn handle_timeout(&mut self, now_us: u64) {
        while let Some(&(deadline, pn)) = self.deadlines.first() {
            if deadline > now_us {
                break;
            }
            let Some((path_id, sent_us)) = self.sent.get(&pn).map(|s| (s.path_id, s.sent_us))
            else {
                self.deadlines.remove(&(deadline, pn));
                continue;
            };
            self.stats.losses_by_timeout += 1;
            self.declare_lost(pn);
            // Cross-path evidence: a packet sent after this one went through on another path,
            // so the network worked, and this path did not.
            let evidence = self
                .paths
                .iter()
                .any(|q| q.id != path_id && q.newest_acked_sent_us().is_some_and(|t| t > sent_us));
            let suspect_after = self.config.suspect_after_timeouts;
            let path = &mut self.paths[usize::from(path_id)];
            if path.on_timeout(suspect_after, now_us, evidence) {
                // Everything still in flight on a suspect path is presumed lost: waiting for each
                // timer in turn would stall those messages for no benefit.
                self.stats.paths_made_suspect += 1;
                for (_, pn) in path.live_packets() {
                    self.stats.losses_on_suspect_path += 1;
                    self.declare_lost(pn);
                }
            }
        }
        for path_id in 0..self.paths.len() {
            let oldest = self.pending_acks[path_id].iter().map(|&(_, at)| at).min();
            if oldest.is_some_and(|at| at + self.config.ack_delay_us_max <= now_us) {
                self.flush_acks(now_us, path_id as u8);
            }
        }
        for path_id in 0..self.paths.len() {
            if self.probe_due_us(path_id).is_some_and(|at| at <= now_us) {
                // A probe dropped from a full control queue is not recorded (its number was
                // never sent); it is tried again an interval later.
                let queued = self.push_control(path_id as u8, Body::Probe);
                let interval = self.config.probe_interval_us;
                let path = &mut self.paths[path_id];
                path.next_probe_us = now_us + interval;
                if let Some(packet_number) = queued {
                    path.probe = Some((packet_number, now_us));
                    path.stats.probes_sent += 1;
                    self.stats.probes_sent += 1;
                }
            }
        }
    }

    /// Sends a probe on every path that has none in flight. A client calls this once when it
    /// connects: a server that learns each path's peer address from the first datagram on that
    /// path (one socket per path shared by many connections) can then answer on every path at
    /// once, instead of losing its first replies on paths the client has not used yet. The
    /// answers are RTT samples like any probe's.
    pub fn announce_paths(&mut self, now_us: u64) {
        for path_id in 0..self.paths.len() {
            if self.paths[path_id].probe.is_some() {
                continue;
            }
            let Some(packet_number) = self.push_control(path_id as u8, Body::Probe) else {
                continue;
            };
            let path = &mut self.paths[path_id];
            path.probe = Some((packet_number, now_us));
            path.stats.probes_sent += 1;
            self.stats.probes_sent += 1;
        }
    }

    /// When the next probe is due on a path that needs one: suspect paths, slow paths, and paths
    /// with an unanswered timeout and nothing in flight (all three get no data, or little, so
    /// probes are what tells that they recovered).
    fn probe_due_us(&self, path_id: usize) -> Option<u64> {
        let path = &self.paths[path_id];
        let needs = path.health() == Health::Suspect
            || (path.has_unanswered_timeout() && path.in_flight_packets() == 0)
            || self.is_slow(path, self.rtt_us_reference());
        needs.then_some(path.next_probe_us)
    }

    /// The earliest time `handle_timeout` or `poll_transmit` has work, if any.
    pub fn next_timeout_us(&self) -> Option<u64> {
        let mut next = self.deadlines.first().map(|&(d, _)| d);
        let mut consider = |t: Option<u64>| {
            if let Some(t) = t {
                next = Some(next.map_or(t, |n: u64| n.min(t)));
            }
        };
        for pending in &self.pending_acks {
            consider(
                pending
                    .iter()
                    .map(|&(_, at)| at + self.config.ack_delay_us_max)
                    .min(),
            );
        }
        for path_id in 0..self.paths.len() {
            consider(self.probe_due_us(path_id));
        }
        let has_data = !self.unsent.is_empty() || !self.retransmit.is_empty();
        if has_data && self.in_flight_packets() < self.congestion.in_flight_limit_packets() {
            consider(self.congestion.next_send_us());
        }
        next
    }
}

/// The ack delay of a packet that arrived at `received_us`, acknowledged by a packet sent at
/// `now_us`.
fn ack_delay_us(now_us: u64, received_us: u64) -> u32 {
    now_us.saturating_sub(received_us).min(u64::from(u32::MAX)) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(config: &Config) -> (Connection, Connection) {
        let a = Connection::new(config.clone(), 9).expect("config");
        let b = Connection::new(config.clone(), 9).expect("config");
        (a, b)
    }

    fn drain(c: &mut Connection, now_us: u64) -> Vec<Transmit> {
        std::iter::from_fn(|| c.poll_transmit(now_us)).collect()
    }

    /// A connection pair keyed by a real handshake with the same PSK.
    fn sealed_pair(config: &Config) -> (Connection, Connection) {
        use crate::srd::handshake::{ClientHandshake, Hello, respond};
        let psk = [3u8; 32];
        let client = ClientHandshake::start(9, "vol").expect("start");
        let hello = Hello::parse(client.hello()).expect("hello");
        let (server_keys, ack) = respond(&hello, &psk).expect("respond");
        let client_keys = client.finish(&ack, &psk).expect("finish");
        let (mut a, mut b) = pair(config);
        a.install_keys(client_keys.client_to_server, client_keys.server_to_client);
        b.install_keys(server_keys.server_to_client, server_keys.client_to_server);
        (a, b)
    }

    #[test]
    fn sealed_connections_deliver_and_drop_forged_replayed_and_truncated_packets() {
        let (mut a, mut b) = sealed_pair(&Config::default());
        let payload = vec![0x5au8; 3000];
        a.send_message(payload.clone()).expect("send");
        let sent = drain(&mut a, 0);
        assert!(!sent.is_empty());
        for t in &sent {
            assert_eq!(t.datagram[4], 4, "sealed packets are version 4");
            assert!(
                packet::parse(&t.datagram).is_err(),
                "v1 parser refuses sealed bytes"
            );
        }
        let first = sent[0].clone();
        let mut forged = first.datagram.clone();
        let last = forged.len() - 1;
        forged[last] ^= 1;
        b.handle_datagram(0, first.path_id, &forged);
        assert_eq!(b.stats().dropped_forged, 1);
        b.handle_datagram(
            0,
            first.path_id,
            &first.datagram[..first.datagram.len() - 1],
        );
        assert_eq!(b.stats().dropped_truncated, 1);
        // An unsealed v1 packet is not accepted on a sealed connection.
        let plain = Packet {
            connection_id: 9,
            packet_number: 1000,
            path_id: first.path_id,
            body: Body::Probe,
        }
        .encode();
        b.handle_datagram(0, first.path_id, &plain);
        assert_eq!(b.stats().dropped_malformed, 1);
        for t in &sent {
            b.handle_datagram(1, t.path_id, &t.datagram);
        }
        b.handle_datagram(2, first.path_id, &first.datagram);
        assert_eq!(b.stats().dropped_replayed, 1);
        let delivered = b.poll_delivered().expect("delivered");
        assert_eq!(delivered.payload, payload);
        assert!(b.poll_delivered().is_none());
        // The acknowledgements come back sealed the other way and are accepted.
        b.handle_timeout(1_000_000);
        for t in drain(&mut b, 1_000_000) {
            a.handle_datagram(1_000_010, t.path_id, &t.datagram);
        }
        assert_eq!(a.stats().dropped_forged, 0);
        assert_eq!(a.stats().messages_acked, 1);
    }

    fn kind(t: &Transmit) -> u8 {
        t.datagram[5]
    }

    #[test]
    fn announced_paths_are_each_probed_and_answered() {
        let config = Config {
            path_count: 4,
            ..Config::default()
        };
        let (mut a, mut b) = pair(&config);
        a.announce_paths(0);
        let probes = drain(&mut a, 0);
        let mut paths: Vec<u8> = probes.iter().map(|t| t.path_id).collect();
        paths.sort_unstable();
        assert_eq!(paths, vec![0, 1, 2, 3], "one probe per path");
        assert!(probes.iter().all(|t| kind(t) == 3), "all probes");
        // Announcing again while those are unanswered sends nothing more.
        a.announce_paths(1);
        assert!(drain(&mut a, 1).is_empty());
        for t in &probes {
            b.handle_datagram(10, t.path_id, &t.datagram);
        }
        for t in drain(&mut b, 10) {
            assert_eq!(kind(&t), 4, "probe acks");
            a.handle_datagram(20, t.path_id, &t.datagram);
        }
        assert_eq!(a.stats().probes_answered, 4);
        assert_eq!(a.stats().acks_unknown, 0);
    }

    #[test]
    fn reordered_and_duplicate_data_is_acknowledged_at_once() {
        let config = Config {
            path_count: 1,
            ..Config::default()
        };
        let (mut a, mut b) = pair(&config);
        for i in 0..3u8 {
            a.send_message(vec![i]).expect("send");
        }
        let sent = drain(&mut a, 0);
        assert_eq!(sent.len(), 3);
        let acked_in = |t: &Transmit| match packet::parse(&t.datagram).expect("parses").body {
            Body::Ack(acked) => acked.iter().map(|a| a.packet_number).collect::<Vec<_>>(),
            other => panic!("not an ACK: {other:?}"),
        };
        // In order: held for the delay.
        b.handle_datagram(10, 0, &sent[1].datagram);
        assert!(drain(&mut b, 10).is_empty());
        assert_eq!(b.next_timeout_us(), Some(10 + config.ack_delay_us_max));
        // Below the highest seen on the path: acknowledged at once, with what was held.
        b.handle_datagram(11, 0, &sent[0].datagram);
        let out = drain(&mut b, 11);
        assert_eq!(
            out.iter().map(acked_in).collect::<Vec<_>>(),
            vec![vec![0, 1]]
        );
        // A duplicate: the first ACK may be lost, so again at once.
        b.handle_datagram(12, 0, &sent[0].datagram);
        let out = drain(&mut b, 12);
        assert_eq!(out.iter().map(acked_in).collect::<Vec<_>>(), vec![vec![0]]);
        assert_eq!(b.stats().acks_sent, 2);
        // The held ACK's delay is the time it was held.
        b.handle_datagram(20, 0, &sent[2].datagram);
        b.handle_timeout(20 + config.ack_delay_us_max);
        let out = drain(&mut b, 20 + config.ack_delay_us_max);
        let Body::Ack(acked) = packet::parse(&out[0].datagram).expect("parses").body else {
            panic!("not an ACK")
        };
        assert_eq!(acked[0].ack_delay_us as u64, config.ack_delay_us_max);
    }

    #[test]
    fn a_reply_carries_the_ack_on_its_request_path_and_the_delay_in_it() {
        let (mut a, mut b) = pair(&Config::default());
        a.send_message(vec![1; 100]).expect("send");
        let request = drain(&mut a, 0);
        assert_eq!(request.len(), 1);
        b.handle_datagram(30, request[0].path_id, &request[0].datagram);
        assert!(b.poll_delivered().is_some());
        b.send_message(vec![2; 4096]).expect("send");
        let reply = drain(&mut b, 42);
        assert_eq!(reply.len(), 1, "no separate ACK");
        assert_eq!(
            reply[0].path_id, request[0].path_id,
            "on the request's path"
        );
        let parsed = packet::parse(&reply[0].datagram).expect("parses");
        let Body::DataAck { acked, data } = parsed.body else {
            panic!("not a DATA_ACK: {:?}", parsed.body)
        };
        assert_eq!(data.payload, &[2; 4096][..]);
        assert_eq!(acked.len(), 1);
        assert_eq!(acked[0].ack_delay_us, 12, "arrival to the reply's send");
        assert_eq!(b.stats().acks_piggybacked, 1);
        assert_eq!(b.stats().acks_sent, 0);
        assert_eq!(b.next_timeout_us().map(|t| t > 42), Some(true));
        a.handle_datagram(60, reply[0].path_id, &reply[0].datagram);
        assert_eq!(a.stats().messages_acked, 1);
        assert_eq!(a.poll_delivered().map(|d| d.payload.len()), Some(4096));
        // The sample is 60 - 0 - 12 us.
        let path = &a.paths()[usize::from(request[0].path_id)];
        assert_eq!(path.rtt.smoothed_us(), Some(48));
    }

    #[test]
    fn a_full_fragment_leaves_no_room_and_the_ack_waits() {
        let config = Config::default();
        let (mut a, mut b) = pair(&config);
        a.send_message(vec![1; 10]).expect("send");
        let request = drain(&mut a, 0);
        b.handle_datagram(5, request[0].path_id, &request[0].datagram);
        b.send_message(vec![3; config.payload_len_max])
            .expect("send");
        let out = drain(&mut b, 6);
        assert_eq!(out.len(), 1);
        assert_eq!(
            out[0].datagram[5], 1,
            "plain DATA: no room for an ACK block"
        );
        assert_eq!(b.stats().acks_piggybacked, 0);
        b.handle_timeout(5 + config.ack_delay_us_max);
        let out = drain(&mut b, 5 + config.ack_delay_us_max);
        assert_eq!(out.len(), 1);
        assert_eq!(
            out[0].datagram[5], 2,
            "the ACK alone, when the delay ran out"
        );
    }

    #[test]
    fn invalid_config_is_refused() {
        let config = Config {
            path_count: 0,
            ..Config::default()
        };
        assert!(Connection::new(config, 1).is_err());
    }

    #[test]
    fn send_limits_are_errors() {
        let config = Config {
            send_queue_messages_max: 2,
            message_len_max: 10,
            ..Config::default()
        };
        let (mut a, _) = pair(&config);
        assert_eq!(
            a.send_message(vec![0; 11]),
            Err(SendError::TooLarge { len: 11, max: 10 })
        );
        assert_eq!(a.send_message(vec![0; 10]), Ok(0));
        assert_eq!(a.send_message(vec![]), Ok(1));
        assert_eq!(
            a.send_message(vec![1]),
            Err(SendError::QueueFull { max: 2 })
        );
    }

    #[test]
    fn the_control_queue_is_bounded() {
        let (mut a, mut b) = pair(&Config::default());
        for pn in 0..CONTROL_QUEUE_MAX as u64 + 10 {
            let probe = Packet {
                connection_id: 9,
                packet_number: pn,
                path_id: 0,
                body: Body::Probe,
            }
            .encode();
            a.handle_datagram(0, 0, &probe);
        }
        assert_eq!(a.stats().control_dropped, 10);
        let answers = drain(&mut a, 0);
        assert_eq!(answers.len(), CONTROL_QUEUE_MAX);
        b.handle_datagram(1, 0, &answers[0].datagram);
        assert_eq!(
            b.stats().acks_unknown,
            1,
            "an answer to a probe b never sent"
        );
    }

    #[test]
    fn a_probe_dropped_from_a_full_control_queue_is_not_recorded() {
        let (mut a, _b) = pair(&Config::default());
        for pn in 0..CONTROL_QUEUE_MAX as u64 {
            let probe = Packet {
                connection_id: 9,
                packet_number: pn,
                path_id: 0,
                body: Body::Probe,
            }
            .encode();
            a.handle_datagram(0, 0, &probe);
        }
        let sent_before = a.stats().probes_sent;
        a.announce_paths(0);
        assert_eq!(
            a.stats().probes_sent,
            sent_before,
            "no probe fits the full queue"
        );
        assert!(
            a.paths().iter().all(|p| p.probe.is_none()),
            "a dropped probe must not be awaited"
        );
        drain(&mut a, 0);
        a.announce_paths(1);
        let queued = drain(&mut a, 1);
        let paths = a.paths().len();
        assert_eq!(queued.len(), paths);
        for (path, transmit) in a.paths().iter().zip(&queued) {
            let parsed = packet::parse(&transmit.datagram).expect("own packet parses");
            assert_eq!(path.probe.map(|(pn, _)| pn), Some(parsed.packet_number));
        }
    }

    #[test]
    fn a_retransmission_goes_on_another_path() {
        let (mut a, mut b) = pair(&Config::default());
        a.send_message(b"lost once".to_vec()).expect("send");
        let first = drain(&mut a, 0);
        assert_eq!(first.len(), 1);
        let deadline = a.next_timeout_us().expect("a timer");
        assert_eq!(
            deadline,
            Config::default().rto_us_initial + Config::default().ack_delay_us_max
        );
        a.handle_timeout(deadline);
        let out = drain(&mut a, deadline);
        let again: Vec<&Transmit> = out.iter().filter(|t| kind(t) == 1).collect();
        assert_eq!(again.len(), 1);
        assert_ne!(again[0].path_id, first[0].path_id);
        assert_eq!(a.stats().retransmissions, 1);
        assert_eq!(a.stats().losses_by_timeout, 1);
        // Nothing shows the timeout was the path's own (no other path acknowledged anything),
        // so the path stays healthy, but it is probed at once and new data avoids it.
        let timed_out = &a.paths()[usize::from(first[0].path_id)];
        assert_eq!(timed_out.health(), Health::Healthy);
        assert!(timed_out.has_unanswered_timeout());
        let probes: Vec<&Transmit> = out.iter().filter(|t| kind(t) == 3).collect();
        assert_eq!(probes.len(), 1);
        assert_eq!(probes[0].path_id, first[0].path_id);
        for i in 0..3u8 {
            a.send_message(vec![i]).expect("send");
        }
        assert!(
            drain(&mut a, deadline + 1)
                .iter()
                .all(|t| t.path_id != first[0].path_id),
            "new data on the path with an unanswered timeout while others are clean"
        );
        b.handle_datagram(deadline + 10, again[0].path_id, &again[0].datagram);
        assert_eq!(
            b.poll_delivered().map(|d| d.payload),
            Some(b"lost once".to_vec())
        );
        // Nothing more to acknowledge and nothing delivered twice when the original shows up.
        b.handle_datagram(deadline + 11, first[0].path_id, &first[0].datagram);
        assert_eq!(b.poll_delivered(), None);
        assert_eq!(b.stats().fragments_duplicate, 1);
    }

    #[test]
    fn a_suspect_path_carries_only_probes_until_one_is_answered() {
        let config = Config {
            path_count: 2,
            suspect_after_timeouts: 1,
            ..Config::default()
        };
        let (mut a, mut b) = pair(&config);
        a.send_message(vec![1]).expect("send");
        let lost = drain(&mut a, 0);
        let dark = lost[0].path_id;
        // A later message goes through on the other path: the evidence that the first one's
        // timeout is its path's fault.
        a.send_message(vec![2]).expect("send");
        let through = drain(&mut a, 1);
        assert_eq!(through.len(), 1);
        assert_ne!(through[0].path_id, dark);
        b.handle_datagram(5, through[0].path_id, &through[0].datagram);
        let ack_at = 5 + config.ack_delay_us_max;
        b.handle_timeout(ack_at);
        for t in drain(&mut b, ack_at) {
            a.handle_datagram(ack_at + 5, t.path_id, &t.datagram);
        }
        assert!(a.paths()[usize::from(through[0].path_id)].newest_acked_sent_us() == Some(1));
        let t = a.next_timeout_us().expect("timer");
        a.handle_timeout(t);
        assert_eq!(a.paths()[usize::from(dark)].health(), Health::Suspect);
        for i in 0..20 {
            a.send_message(vec![i]).expect("send");
        }
        let out = drain(&mut a, t);
        let probes: Vec<&Transmit> = out.iter().filter(|t| kind(t) == 3).collect();
        assert_eq!(probes.len(), 1);
        assert_eq!(probes[0].path_id, dark);
        assert!(
            out.iter()
                .filter(|t| kind(t) == 1)
                .all(|t| t.path_id != dark),
            "data on the suspect path"
        );
        b.handle_datagram(t + 5, dark, &probes[0].datagram);
        let answer = drain(&mut b, t + 5);
        assert_eq!(answer.len(), 1);
        assert_eq!((kind(&answer[0]), answer[0].path_id), (4, dark));
        a.handle_datagram(t + 10, dark, &answer[0].datagram);
        assert_eq!(a.paths()[usize::from(dark)].health(), Health::Healthy);
        assert_eq!(a.stats().probes_answered, 1);
    }

    #[test]
    fn the_sender_stays_inside_the_dedup_window() {
        let config = Config {
            dedup_window_messages: 3,
            ..Config::default()
        };
        let (mut a, mut b) = pair(&config);
        for i in 0..5u8 {
            a.send_message(vec![i]).expect("send");
        }
        let out = drain(&mut a, 0);
        assert_eq!(out.len(), 3, "ids 0..3 only while id 0 is unacknowledged");
        for t in &out {
            b.handle_datagram(1, t.path_id, &t.datagram);
        }
        b.handle_timeout(1 + config.ack_delay_us_max);
        for t in drain(&mut b, 1 + config.ack_delay_us_max) {
            a.handle_datagram(30, t.path_id, &t.datagram);
        }
        assert_eq!(a.stats().messages_acked, 3);
        assert_eq!(drain(&mut a, 30).len(), 2, "the window moved");
    }

    #[derive(Debug, Clone)]
    enum Forged {
        Data {
            message_id: u64,
            message_len: u32,
            offset: u32,
            index: u16,
            count: u16,
            payload: Vec<u8>,
        },
        Ack(Vec<u64>),
        /// A DATA fragment (of message `.1`, one fragment of `.2`) behind an ACK block.
        DataAck(Vec<u64>, u64, Vec<u8>),
        Probe,
        ProbeAck(u64),
    }

    /// The v1 datagram of a forged packet on connection 9.
    fn forged_datagram(path_id: u8, packet_number: u64, forged: Forged) -> Vec<u8> {
        let body = match &forged {
            Forged::Data {
                message_id,
                message_len,
                offset,
                index,
                count,
                payload,
            } => Body::Data(Data {
                message_id: *message_id,
                message_len: *message_len,
                fragment_offset: *offset,
                fragment_index: *index,
                fragment_count: *count,
                payload,
            }),
            Forged::Ack(pns) => Body::Ack(
                pns.iter()
                    .map(|&packet_number| Acked {
                        packet_number,
                        ack_delay_us: 3,
                    })
                    .collect(),
            ),
            Forged::DataAck(pns, message_id, payload) => Body::DataAck {
                acked: pns
                    .iter()
                    .map(|&packet_number| Acked {
                        packet_number,
                        ack_delay_us: 1,
                    })
                    .collect(),
                data: Data {
                    message_id: *message_id,
                    message_len: payload.len() as u32,
                    fragment_offset: 0,
                    fragment_index: 0,
                    fragment_count: 1,
                    payload,
                },
            },
            Forged::Probe => Body::Probe,
            Forged::ProbeAck(packet_number) => Body::ProbeAck(Acked {
                packet_number: *packet_number,
                ack_delay_us: 0,
            }),
        };
        Packet {
            connection_id: 9,
            packet_number,
            path_id,
            body,
        }
        .encode()
    }

    fn forged() -> impl proptest::strategy::Strategy<Value = (u8, u64, Forged)> {
        use proptest::prelude::*;
        let data = (
            0u64..20,
            0u32..10_000,
            0u32..10_000,
            0u16..8,
            0u16..8,
            proptest::collection::vec(any::<u8>(), 0..64),
        )
            .prop_map(|(message_id, message_len, offset, index, count, payload)| {
                Forged::Data {
                    message_id,
                    message_len,
                    offset,
                    index,
                    count,
                    payload,
                }
            });
        let ack = proptest::collection::btree_set(0u64..64, 1..20)
            .prop_map(|s| Forged::Ack(s.into_iter().collect()));
        let data_ack = (
            proptest::collection::btree_set(0u64..64, 1..20),
            0u64..20,
            proptest::collection::vec(any::<u8>(), 1..64),
        )
            .prop_map(|(s, id, payload)| Forged::DataAck(s.into_iter().collect(), id, payload));
        let body = prop_oneof![
            data,
            ack,
            data_ack,
            Just(Forged::Probe),
            (0u64..64).prop_map(Forged::ProbeAck)
        ];
        (0u8..4, 0u64..64, body)
    }

    proptest::proptest! {
        /// Well-formed packets with arbitrary contents (what a forger with the CRC can send until
        /// packets are sealed) never panic the connection, whatever state it is in, and it keeps
        /// its limits.
        #[test]
        fn forged_packets_never_panic_a_connection(packets in proptest::collection::vec(forged(), 1..60)) {
            let config = Config { path_count: 4, ..Config::default() };
            let (mut a, _) = pair(&config);
            for i in 0..5u8 {
                a.send_message(vec![i; 3000]).expect("send");
            }
            let mut now = 0;
            drain(&mut a, now);
            for (path_id, packet_number, body) in packets {
                now += 7;
                let datagram = forged_datagram(path_id, packet_number, body);
                a.handle_datagram(now, path_id, &datagram);
                if a.next_timeout_us().is_some_and(|t| t <= now) {
                    a.handle_timeout(now);
                }
                drain(&mut a, now);
                while a.poll_delivered().is_some() {}
                proptest::prop_assert!(a.in_flight_packets() <= config.in_flight_packets_max);
            }
        }

        /// The same against a sealed connection, with authentic packets of arbitrary contents
        /// and some with a bit flipped anywhere.
        #[test]
        fn forged_packets_never_panic_a_sealed_connection(
            packets in proptest::collection::vec(forged(), 1..60),
            flips in proptest::collection::vec(proptest::option::of(0usize..100_000), 60),
        ) {
            let config = Config { path_count: 4, ..Config::default() };
            let keys = || {
                let t = crate::srd::seal::Transcript {
                    connection_id: 9,
                    client_public_key: [1; 32],
                    client_random: [2; 32],
                    server_public_key: [3; 32],
                    server_random: [4; 32],
                };
                crate::srd::seal::SessionKeys::derive(&[5; 32], &[6; 32], &t)
            };
            let (mut a, _) = pair(&config);
            let mine = keys();
            a.install_keys(mine.client_to_server, mine.server_to_client);
            // The same keys again: the forger holds the peer's sending key, so its packets
            // authenticate and reach the state machine, unless a bit is flipped.
            let peer = keys();
            for i in 0..5u8 {
                a.send_message(vec![i; 3000]).expect("send");
            }
            let mut now = 0;
            drain(&mut a, now);
            for ((path_id, packet_number, body), flip) in packets.into_iter().zip(flips) {
                now += 7;
                let plain = forged_datagram(path_id, packet_number, body);
                let Ok(mut datagram) = peer.server_to_client.seal_v1(&plain) else {
                    continue;
                };
                if let Some(bit) = flip {
                    let bit = bit % (datagram.len() * 8);
                    datagram[bit / 8] ^= 1 << (bit % 8);
                }
                a.handle_datagram(now, path_id, &datagram);
                if a.next_timeout_us().is_some_and(|t| t <= now) {
                    a.handle_timeout(now);
                }
                drain(&mut a, now);
                while a.poll_delivered().is_some() {}
                proptest::prop_assert!(a.in_flight_packets() <= config.in_flight_packets_max);
            }
        }
    }
}
