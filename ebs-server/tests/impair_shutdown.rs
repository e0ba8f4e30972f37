#![allow(clippy::unwrap_used)]
//! A relay leaves no thread behind, whether stopped or dropped, with datagrams still queued.
//! Alone in its own test binary so that no other test's relay threads are counted.

use ebs_server::impair::{Relay, RelayConfig, parse_spec};
use std::net::{Ipv4Addr, UdpSocket};
use std::time::{Duration, Instant};

/// Threads of this process whose name starts with `impair-` (the relay names all of its own).
fn relay_threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter(|t| {
            let comm = t.as_ref().unwrap().path().join("comm");
            std::fs::read_to_string(comm).is_ok_and(|c| c.starts_with("impair-"))
        })
        .count()
}

fn start(paths: usize) -> (Relay, UdpSocket) {
    let server = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let base = server.local_addr().unwrap();
    let relay = Relay::start(RelayConfig {
        schedule: parse_spec("delay=10s", paths).unwrap(),
        ..RelayConfig::new(vec![base; paths])
    })
    .unwrap();
    // Something queued on every path, to be discarded by the stop.
    let client = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    for &front in relay.front_addrs() {
        client.send_to(b"queued", front).unwrap();
    }
    let started = Instant::now();
    while relay.stats().iter().any(|s| s.to_server.received == 0) {
        assert!(started.elapsed() < Duration::from_secs(20));
        std::thread::sleep(Duration::from_millis(1));
    }
    (relay, server)
}

#[test]
fn stop_and_drop_join_every_thread_promptly() {
    assert_eq!(relay_threads(), 0);
    let (relay, _server) = start(8);
    assert_eq!(relay_threads(), 2 * 8 + 1);
    let started = Instant::now();
    let stats = relay.stop().unwrap();
    let took = started.elapsed();
    println!("stop took {took:?}");
    // The wake-up datagrams end the receives at once; the read timeout (50 ms) is the backstop.
    assert!(took < Duration::from_secs(2), "stop took {took:?}");
    assert_eq!(relay_threads(), 0);
    assert!(stats.iter().all(|s| s.to_server.forwarded == 0));

    let (relay, _server) = start(3);
    assert_eq!(relay_threads(), 7);
    drop(relay);
    assert_eq!(relay_threads(), 0);
}
