#![allow(clippy::unwrap_used)]
//! The impairment relay (`ebs_server::impair`) between plain UDP sockets on 127.0.0.1.
//!
//! The relay's decisions are seeded per path and direction, so as long as every datagram reaches
//! the relay (the senders here pace themselves on the relay's `received` count, so no socket
//! buffer overflows) the counts are exact functions of the seed. Time is real, so the only
//! assertions on time are lower bounds (a delayed datagram is never early) and give-up guards.

use ebs_server::impair::{
    self, Change, PathImpairment, PathStats, Relay, RelayConfig, RelayError, Schedule, Scope,
    parse_spec,
};
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

const GIVE_UP: Duration = Duration::from_secs(20);

fn socket() -> UdpSocket {
    let s = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    s
}

/// `paths` server sockets, a relay in front of them with `schedule`, one client socket per path.
struct Rig {
    servers: Vec<UdpSocket>,
    clients: Vec<UdpSocket>,
    relay: Relay,
}

fn rig(schedule: Schedule, seed: u64) -> Rig {
    let servers: Vec<_> = (0..schedule.paths()).map(|_| socket()).collect();
    let addrs = servers.iter().map(|s| s.local_addr().unwrap()).collect();
    let relay = Relay::start(RelayConfig {
        seed,
        schedule,
        ..RelayConfig::new(addrs)
    })
    .unwrap();
    let clients = (0..servers.len()).map(|_| socket()).collect();
    Rig {
        servers,
        clients,
        relay,
    }
}

fn datagram(path: usize, seq: u32, len: usize) -> Vec<u8> {
    let mut d = vec![0xA5; len.max(8)];
    d[..4].copy_from_slice(&(path as u32).to_le_bytes());
    d[4..8].copy_from_slice(&seq.to_le_bytes());
    d
}

fn seq_of(d: &[u8]) -> (usize, u32) {
    (
        u32::from_le_bytes(d[..4].try_into().unwrap()) as usize,
        u32::from_le_bytes(d[4..8].try_into().unwrap()),
    )
}

/// Waits until the relay has read `n` datagrams from the client on `path`.
fn wait_received(relay: &Relay, path: usize, n: u64) {
    let started = Instant::now();
    while relay.stats()[path].to_server.received < n {
        assert!(
            started.elapsed() < GIVE_UP,
            "relay read fewer than {n} on path {path}"
        );
        std::thread::sleep(Duration::from_micros(200));
    }
}

/// Reads what arrives on `s` until nothing has for the read timeout.
fn drain(s: &UdpSocket) -> Vec<(Vec<u8>, SocketAddr)> {
    let mut out = Vec::new();
    let mut buf = vec![0; 65_536];
    while let Ok((n, from)) = s.recv_from(&mut buf) {
        out.push((buf[..n].to_vec(), from));
    }
    out
}

/// A thread reading a server socket as fast as datagrams come: a socket buffer holds only a
/// few dozen small loopback datagrams (each costs a whole skb), and a test thread that is not
/// scheduled for a few milliseconds would otherwise lose some to it.
/// Each datagram with when it arrived.
type Arrivals = Vec<(Vec<u8>, Instant)>;

struct Sink {
    got: Arc<Mutex<Arrivals>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Sink {
    fn new(s: &UdpSocket) -> Sink {
        let s = s.try_clone().unwrap();
        s.set_read_timeout(Some(Duration::from_millis(5))).unwrap();
        let got = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (g, st) = (Arc::clone(&got), Arc::clone(&stop));
        let thread = std::thread::spawn(move || {
            let mut buf = vec![0; 65_536];
            while !st.load(Ordering::Acquire) {
                if let Ok((n, _)) = s.recv_from(&mut buf) {
                    g.lock().unwrap().push((buf[..n].to_vec(), Instant::now()));
                }
            }
        });
        Sink {
            got,
            stop,
            thread: Some(thread),
        }
    }

    fn len(&self) -> usize {
        self.got.lock().unwrap().len()
    }

    fn finish(mut self) -> Arrivals {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
        std::mem::take(&mut *self.got.lock().unwrap())
    }
}

/// Waits until the relay has decided and sent everything it read towards the server on
/// `path`, then until the sink has all it sent since `forwarded_before`.
fn settle(relay: &Relay, path: usize, sink: &Sink, forwarded_before: u64) {
    let started = Instant::now();
    loop {
        let s = relay.stats()[path].to_server.clone();
        if s.forwarded + s.dropped() + s.send_errors == s.received + s.duplicated
            && sink.len() as u64 + forwarded_before >= s.forwarded
        {
            return;
        }
        assert!(
            started.elapsed() < GIVE_UP,
            "never settled: {s:?}, {} arrived",
            sink.len()
        );
        std::thread::sleep(Duration::from_micros(500));
    }
}

/// Sends `count` datagrams client -> server on `path`, in batches the relay must have read
/// and the server received before the next, and returns what the server got.
fn send_paced(rig: &Rig, path: usize, count: u32, len: usize) -> Vec<Vec<u8>> {
    const BATCH: u32 = 16;
    let to = rig.relay.front_addrs()[path];
    let before = rig.relay.stats()[path].to_server.clone();
    let sink = Sink::new(&rig.servers[path]);
    for seq in 0..count {
        rig.clients[path]
            .send_to(&datagram(path, seq, len), to)
            .unwrap();
        if (seq + 1) % BATCH == 0 || seq + 1 == count {
            // Paced on what the server got, not only on what the relay read: a sink thread
            // left unscheduled while the relay forwards on would let its socket buffer fill.
            wait_received(&rig.relay, path, before.received + u64::from(seq) + 1);
            settle(&rig.relay, path, &sink, before.forwarded);
        }
    }
    sink.finish().into_iter().map(|(d, _)| d).collect()
}

#[test]
fn forwards_both_ways_on_every_path() {
    const PATHS: usize = 4;
    let r = rig(Schedule::clean(PATHS), 1);
    for round in 0..20u32 {
        for path in 0..PATHS {
            let d = datagram(path, round, 100 + path);
            r.clients[path]
                .send_to(&d, r.relay.front_addrs()[path])
                .unwrap();
            let mut buf = vec![0; 2048];
            let (n, from) = r.servers[path].recv_from(&mut buf).unwrap();
            assert_eq!(&buf[..n], &d[..]);
            // The server sees path i coming from the relay's back socket i.
            assert_eq!(from, r.relay.back_addrs()[path]);
            let reply = datagram(path, round + 1000, 50);
            r.servers[path].send_to(&reply, from).unwrap();
            let (n, from) = r.clients[path].recv_from(&mut buf).unwrap();
            assert_eq!(&buf[..n], &reply[..]);
            assert_eq!(from, r.relay.front_addrs()[path]);
        }
    }
    let stats = r.relay.stop().unwrap();
    for s in &stats {
        assert_eq!((s.to_server.received, s.to_server.forwarded), (20, 20));
        assert_eq!((s.to_client.received, s.to_client.forwarded), (20, 20));
        assert_eq!(s.to_server.dropped() + s.to_client.dropped(), 0);
    }
}

#[test]
fn a_reply_before_any_client_datagram_has_nowhere_to_go_and_strangers_are_not_relayed() {
    let r = rig(Schedule::clean(1), 1);
    // The server speaks first: no client address is known on the path yet.
    r.servers[0]
        .send_to(b"early", r.relay.back_addrs()[0])
        .unwrap();
    // Someone other than the server sends to the back socket.
    socket()
        .send_to(b"stranger", r.relay.back_addrs()[0])
        .unwrap();
    let started = Instant::now();
    while {
        let s = &r.relay.stats()[0].to_client;
        s.dropped_no_peer < 1 || s.dropped_stranger < 1
    } {
        assert!(started.elapsed() < GIVE_UP);
        std::thread::sleep(Duration::from_millis(1));
    }
    assert!(drain(&r.clients[0]).is_empty());
}

fn loss_run(seed: u64) -> (usize, PathStats) {
    let r = rig(parse_spec("loss=0.05", 2).unwrap(), seed);
    let got = send_paced(&r, 1, 4000, 200);
    let stats = r.relay.stop().unwrap();
    (got.len(), stats[1].clone())
}

#[test]
fn five_percent_loss_drops_about_five_percent_and_the_seed_fixes_which() {
    let (got, s) = loss_run(42);
    let up = &s.to_server;
    println!(
        "loss=0.05 over 4000: {} dropped, {got} arrived",
        up.dropped_loss
    );
    assert_eq!(up.received, 4000);
    assert!(
        (140..=260).contains(&up.dropped_loss),
        "{} dropped of 4000 at 5%",
        up.dropped_loss
    );
    assert_eq!(up.forwarded + up.dropped_loss, 4000);
    assert_eq!(got as u64, up.forwarded);
    assert_eq!(up.dropped() - up.dropped_loss, 0);
    // Same seed, same drops; another seed, other drops.
    assert_eq!(loss_run(42).1.to_server.dropped_loss, up.dropped_loss);
    assert_ne!(loss_run(43).1.to_server.dropped_loss, up.dropped_loss);
}

#[test]
fn a_black_hole_drops_everything_on_its_path_and_nothing_elsewhere() {
    let r = rig(parse_spec("path1:blackhole", 3).unwrap(), 5);
    let got: Vec<_> = (0..3).map(|p| send_paced(&r, p, 300, 500)).collect();
    assert_eq!(got[0].len(), 300);
    assert_eq!(got[1].len(), 0);
    assert_eq!(got[2].len(), 300);
    let stats = r.relay.stop().unwrap();
    assert_eq!(stats[1].to_server.dropped_black_hole, 300);
    assert_eq!(stats[1].to_server.forwarded, 0);
    for p in [0, 2] {
        assert_eq!(stats[p].to_server.forwarded, 300);
        assert_eq!(stats[p].to_server.dropped(), 0);
    }
}

#[test]
fn duplication_delivers_twice() {
    let r = rig(parse_spec("path0:duplicate=1", 2).unwrap(), 3);
    let got = send_paced(&r, 0, 200, 300);
    assert_eq!(got.len(), 400, "{:?}", r.relay.stats()[0]);
    for seq in 0..200u32 {
        let n = got.iter().filter(|d| seq_of(d) == (0, seq)).count();
        assert_eq!(n, 2, "datagram {seq} arrived {n} times");
    }
    // About a third, seeded, on the other path.
    r.relay
        .set_path(
            1,
            PathImpairment {
                duplicate: 0.3,
                ..impair::clean()
            },
        )
        .unwrap();
    let got = send_paced(&r, 1, 1000, 300);
    let stats = r.relay.stop().unwrap();
    assert_eq!(
        (stats[0].to_server.duplicated, stats[0].to_server.forwarded),
        (200, 400)
    );
    let dup = stats[1].to_server.duplicated;
    assert!(
        (240..=360).contains(&dup),
        "{dup} duplicated of 1000 at 30%"
    );
    assert_eq!(got.len() as u64, 1000 + dup);
}

#[test]
fn delay_is_never_early_and_jitter_keeps_the_path_in_order() {
    let r = rig(
        parse_spec("delay=20ms;path1:delay=1ms;path1:jitter=800us", 2).unwrap(),
        8,
    );
    let mut buf = vec![0; 2048];
    for seq in 0..10 {
        let sent = Instant::now();
        r.clients[0]
            .send_to(&datagram(0, seq, 64), r.relay.front_addrs()[0])
            .unwrap();
        r.servers[0].recv_from(&mut buf).unwrap();
        let took = sent.elapsed();
        assert!(
            took >= Duration::from_millis(20),
            "arrived after {took:?}, delay 20 ms"
        );
    }
    let got = send_paced(&r, 1, 500, 64);
    let order: Vec<u32> = got.iter().map(|d| seq_of(d).1).collect();
    assert_eq!(
        order,
        (0..500).collect::<Vec<_>>(),
        "jitter reordered a path"
    );
    let stats = r.relay.stop().unwrap();
    println!(
        "latest send after its time: {} us (path 0), {} us (path 1)",
        stats[0].to_server.late_us_max, stats[1].to_server.late_us_max
    );
}

#[test]
fn reordering_is_counted_and_loses_nothing() {
    let r = rig(parse_spec("reorder=0.2,reorder_max=2ms", 1).unwrap(), 11);
    let got = send_paced(&r, 0, 1000, 64);
    let stats = r.relay.stop().unwrap();
    let reordered = stats[0].to_server.reordered;
    assert!(
        (140..=260).contains(&reordered),
        "{reordered} held back of 1000 at 20%"
    );
    let mut seqs: Vec<u32> = got.iter().map(|d| seq_of(d).1).collect();
    let inversions = seqs.windows(2).filter(|w| w[0] > w[1]).count();
    println!("{reordered} held back, {inversions} arrived after a later one");
    seqs.sort_unstable();
    assert_eq!(seqs, (0..1000).collect::<Vec<_>>());
}

#[test]
fn a_rate_limit_spaces_datagrams_and_tail_drops_a_burst() {
    // 1000-byte datagrams at 1 MB/s take 1 ms each; the queue holds 5 ms.
    let r = rig(parse_spec("rate=1MB/s,queue=5ms", 1).unwrap(), 2);
    let sink = Sink::new(&r.servers[0]);
    for seq in 0..30 {
        r.clients[0]
            .send_to(&datagram(0, seq, 1000), r.relay.front_addrs()[0])
            .unwrap();
    }
    wait_received(&r.relay, 0, 30);
    settle(&r.relay, 0, &sink, 0);
    let arrivals: Vec<Instant> = sink.finish().into_iter().map(|(_, at)| at).collect();
    let spread = match (arrivals.first(), arrivals.last()) {
        (Some(first), Some(last)) => *last - *first,
        _ => Duration::ZERO,
    };
    let stats = r.relay.stop().unwrap();
    let up = &stats[0].to_server;
    println!(
        "burst of 30: {} forwarded, {} tail-dropped",
        up.forwarded, up.dropped_queue
    );
    assert!(up.dropped_queue > 0, "a 30 ms burst fit a 5 ms queue");
    assert_eq!(up.forwarded + up.dropped_queue, 30);
    assert_eq!(arrivals.len() as u64, up.forwarded);
    // Spaced by the rate: n datagrams leave 1 ms apart in relay time. Measured at the socket a
    // late send shortens the spread (a timer thread kept off the CPU for 5 ms sends them all at
    // once), so half of it is asserted, and only when the relay was never late by much.
    let floor = Duration::from_micros((up.forwarded - 1) * 500);
    if up.late_us_max < 500 {
        assert!(spread >= floor, "{spread:?}");
    } else {
        println!(
            "relay late by {} us: spread {spread:?} not judged",
            up.late_us_max
        );
    }
}

#[test]
fn the_memory_cap_drops_and_counts_and_stop_discards_the_queue() {
    let servers = [socket()];
    let relay = Relay::start(RelayConfig {
        queue_datagrams_max: 10,
        schedule: parse_spec("delay=30s", 1).unwrap(),
        ..RelayConfig::new(vec![servers[0].local_addr().unwrap()])
    })
    .unwrap();
    let client = socket();
    for seq in 0..50 {
        client
            .send_to(&datagram(0, seq, 100), relay.front_addrs()[0])
            .unwrap();
        wait_received(&relay, 0, u64::from(seq) + 1);
    }
    let started = Instant::now();
    let stats = relay.stop().unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "stop waited for queued datagrams"
    );
    assert_eq!(stats[0].to_server.dropped_overflow, 40);
    assert_eq!(stats[0].to_server.forwarded, 0);
    assert!(drain(&servers[0]).is_empty());
}

#[test]
fn scheduled_and_handle_changes_take_effect() {
    let r = rig(parse_spec("path0:blackhole@2s", 2).unwrap(), 4);
    let got = send_paced(&r, 0, 100, 64);
    assert!(
        r.relay.handle().now_us() < 2_000_000,
        "the host is too slow for this test"
    );
    assert_eq!(got.len(), 100, "black-holed before its time");
    let started = Instant::now();
    while !r.relay.path(0).unwrap().black_hole {
        assert!(
            started.elapsed() < GIVE_UP,
            "the scheduled black hole never began"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(r.relay.handle().now_us() >= 2_000_000);
    assert!(send_paced(&r, 0, 100, 64).is_empty());
    assert_eq!(send_paced(&r, 1, 100, 64).len(), 100);

    // The handle: at once, from another thread, validated.
    let handle = r.relay.handle();
    std::thread::spawn(move || handle.set_path(0, impair::clean()).unwrap())
        .join()
        .unwrap();
    assert_eq!(send_paced(&r, 0, 100, 64).len(), 100);
    assert!(matches!(
        r.relay.set_path(2, impair::clean()),
        Err(RelayError::PathOutOfRange { path: 2, paths: 2 })
    ));
    let bad = PathImpairment {
        loss: 2.0,
        ..impair::clean()
    };
    let e = r.relay.set_path(1, bad).unwrap_err();
    assert!(e.to_string().contains("loss 2"), "{e}");
    let stats = r.relay.stop().unwrap();
    assert_eq!(stats[0].to_server.dropped_black_hole, 100);
}

#[test]
fn a_bad_config_is_an_error_not_a_panic() {
    let addr = socket().local_addr().unwrap();
    let mismatch = RelayConfig {
        schedule: Schedule::clean(2),
        ..RelayConfig::new(vec![addr])
    };
    assert!(
        Relay::start(mismatch)
            .unwrap_err()
            .to_string()
            .contains("2 paths")
    );
    let bad_event = RelayConfig::new(vec![addr]);
    let bad_event = RelayConfig {
        schedule: bad_event.schedule.at(10, Scope::All, Change::Reorder(-1.0)),
        ..bad_event
    };
    assert!(Relay::start(bad_event).is_err());
    assert!(Relay::start(RelayConfig::new(vec![])).is_err());
    let base: SocketAddr = "127.0.0.1:65534".parse().unwrap();
    assert_eq!(
        RelayConfig::consecutive_ports(base, 2).unwrap()[1].port(),
        65535
    );
    assert!(RelayConfig::consecutive_ports(base, 3).is_err());
}

#[test]
fn delay_accuracy_figure() {
    // One datagram at a time, so each waits on the timer heap alone: the figure is the timer
    // thread's wake-up error plus two loopback hops, on whatever load the host has.
    const DELAY_US: u64 = 500;
    let r = rig(parse_spec("delay=500us", 1).unwrap(), 1);
    let mut excess_us = Vec::new();
    let mut buf = vec![0; 2048];
    for seq in 0..200 {
        let sent = Instant::now();
        r.clients[0]
            .send_to(&datagram(0, seq, 64), r.relay.front_addrs()[0])
            .unwrap();
        r.servers[0].recv_from(&mut buf).unwrap();
        let took_us = sent.elapsed().as_micros() as u64;
        assert!(
            took_us >= DELAY_US,
            "arrived after {took_us} us, delay {DELAY_US} us"
        );
        excess_us.push(took_us - DELAY_US);
    }
    excess_us.sort_unstable();
    let stats = r.relay.stop().unwrap();
    println!(
        "delay 500 us, past it at the receiver: p50 {} us, p99 {} us, max {} us; relay's latest send {} us",
        excess_us[100], excess_us[198], excess_us[199], stats[0].to_server.late_us_max
    );

    // What a clean relay path costs over a direct send: one more hop through user space.
    let r = rig(Schedule::clean(1), 1);
    let mut one_way_p50_us = |to: SocketAddr| {
        let mut us: Vec<u64> = (0..200)
            .map(|seq| {
                let sent = Instant::now();
                r.clients[0].send_to(&datagram(0, seq, 64), to).unwrap();
                r.servers[0].recv_from(&mut buf).unwrap();
                sent.elapsed().as_micros() as u64
            })
            .collect();
        us.sort_unstable();
        us[100]
    };
    let relayed = one_way_p50_us(r.relay.front_addrs()[0]);
    let direct = one_way_p50_us(r.servers[0].local_addr().unwrap());
    println!("one way, p50: {relayed} us through a clean relay path, {direct} us direct");
}
