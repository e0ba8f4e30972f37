//! Two endpoints over real UDP sockets on 127.0.0.1: every message arrives exactly once and
//! intact. The wall clock appears only as a give-up guard against a hang, never in an assertion
//! about speed; the throughput is printed for the record.

use ebs_server::srd::Config;
use ebs_server::srd::udp::UdpEndpoint;
use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

const MESSAGES: u64 = 3000;
const GIVE_UP: Duration = Duration::from_secs(60);
const CONNECTION_ID: u64 = 0x0DD_BA11;

/// The content of message `index`: its index, then a pattern that depends on it and on the
/// position, of a length that covers one to four fragments.
fn message(index: u64) -> Vec<u8> {
    let len = 8 + (index as usize * 977) % 5000;
    let mut bytes = index.to_le_bytes().to_vec();
    bytes.extend((8..len).map(|i| (i as u64).wrapping_mul(31).wrapping_add(index) as u8));
    bytes
}

#[test]
fn thousands_of_messages_over_loopback_arrive_exactly_once() {
    let config = Config::default();
    let mut sender = UdpEndpoint::bind_loopback(config.clone(), CONNECTION_ID).expect("bind");
    let mut receiver = UdpEndpoint::bind_loopback(config, CONNECTION_ID).expect("bind");
    sender
        .connect(receiver.local_addrs().expect("addrs"))
        .expect("connect");
    receiver
        .connect(sender.local_addrs().expect("addrs"))
        .expect("connect");

    let sender_done = Arc::new(AtomicBool::new(false));
    let done = Arc::clone(&sender_done);
    let started = Instant::now();
    let receiving = std::thread::spawn(move || {
        let mut seen = HashSet::new();
        while !done.load(Ordering::Acquire) && started.elapsed() < GIVE_UP {
            let active = receiver.turn().expect("receiver turn");
            while let Some(m) = receiver.poll_delivered() {
                let index = u64::from_le_bytes(m.payload[..8].try_into().expect("8 bytes"));
                assert_eq!(index, m.message_id, "ids are assigned in send order");
                assert!(m.payload == message(index), "message {index} corrupted");
                assert!(seen.insert(index), "message {index} delivered twice");
            }
            if !active {
                receiver.wait(1_000).expect("receiver wait");
            }
        }
        (seen, receiver.connection().stats().clone())
    });

    let mut next = 0;
    while (next < MESSAGES || sender.connection().unacked_messages() > 0)
        && started.elapsed() < GIVE_UP
    {
        while next < MESSAGES && sender.connection_mut().send_message(message(next)).is_ok() {
            next += 1;
        }
        if !sender.turn().expect("sender turn") {
            sender.wait(1_000).expect("sender wait");
        }
    }
    let elapsed = started.elapsed();
    sender_done.store(true, Ordering::Release);
    let (seen, receiver_stats) = receiving.join().expect("receiver thread");
    let stats = sender.connection().stats();
    assert_eq!(
        sender.connection().unacked_messages(),
        0,
        "gave up: {stats:?}"
    );
    assert_eq!(seen.len() as u64, MESSAGES, "{receiver_stats:?}");
    assert_eq!(stats.messages_acked, MESSAGES);
    assert_eq!(receiver_stats.dropped_malformed, 0);
    let cc = sender.connection().congestion();
    println!(
        "loopback: {MESSAGES} messages in {elapsed:?} ({:.0} messages/s), {} data packets, {} retransmissions, \
         {} paths made suspect, {} rate cuts (rate now {} B/s), io {:?}",
        MESSAGES as f64 / elapsed.as_secs_f64(),
        stats.data_packets_sent,
        stats.retransmissions,
        stats.paths_made_suspect,
        cc.cuts,
        cc.rate_bytes_per_s(),
        sender.stats,
    );
}

#[test]
fn a_connected_endpoint_never_reads_a_datagram_from_another_address() {
    let config = Config::default();
    let mut a = UdpEndpoint::bind_loopback(config.clone(), CONNECTION_ID).expect("bind");
    let b = UdpEndpoint::bind_loopback(config, CONNECTION_ID).expect("bind");
    a.connect(b.local_addrs().expect("addrs")).expect("connect");
    let stranger = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    for to in a.local_addrs().expect("addrs") {
        stranger.send_to(b"not from the peer", to).expect("send");
    }
    // Loopback delivers at once; the kernel drops them at the connected sockets.
    std::thread::sleep(Duration::from_millis(20));
    assert!(!a.turn().expect("turn"), "a stranger's datagram was read");
    assert_eq!(a.stats.datagrams_received, 0);
    assert_eq!(a.connection().stats().datagrams_received, 0);
}
