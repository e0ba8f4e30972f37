#![allow(clippy::unwrap_used)]
//! The volume server and `RemoteVolume` over real UDP sockets on 127.0.0.1: data against a
//! model, the ordering rules end to end, attach rules, a vanished client, a stopped server, the
//! connection limit. The wall clock appears only as give-up guards against hangs and in the
//! printed figures, never in an assertion about speed.

use std::net::UdpSocket;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ebs_server::client::{ClientConfig, ClientError, Completion, RemoteVolume};
use ebs_server::proto::{BLOCK_BYTES, BLOCK_SEAL_BYTES, Request, Status};
use ebs_server::server::{EbsServer, ServerConfig, ServerStats};
use ebs_server::srd;
use ebs_server::volumes::{VolumeSpec, VolumeStore};
use ftl::nand::{FaultConfig, Geometry, MemNand, Nand};
use ftl::{Ftl, FtlConfig};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const EXTENT_BLOCKS: u64 = 64;
const PATHS: usize = 4;
const GIVE_UP: Duration = Duration::from_secs(60);

fn store(dir: &Path) -> Arc<VolumeStore> {
    let g = Geometry {
        channels: 1,
        dies_per_channel: 2,
        planes_per_die: 1,
        blocks_per_plane: 48,
        pages_per_block: 32,
        page_size: 4096,
        oob_size: 64,
    };
    let devs: Vec<Arc<dyn Nand>> = (0..2)
        .map(|i| {
            Arc::new(MemNand::new(g, FaultConfig::none().for_device(i), None).unwrap())
                as Arc<dyn Nand>
        })
        .collect();
    let ftl = Ftl::format(devs, FtlConfig::default()).unwrap();
    Arc::new(VolumeStore::open(ftl, &dir.join("volumes.cat"), EXTENT_BLOCKS).unwrap())
}

fn spec(name: &str, blocks: u64, multi_attach: bool) -> VolumeSpec {
    VolumeSpec {
        name: name.into(),
        blocks,
        credential: credential(name),
        multi_attach,
        wrapped_key: Vec::new(),
    }
}

fn credential(name: &str) -> Vec<u8> {
    format!("cred-{name}").into_bytes()
}

fn srd_config() -> srd::Config {
    srd::Config {
        path_count: PATHS,
        ..srd::Config::default()
    }
}

fn server(store: Arc<VolumeStore>, idle_timeout_ms: u64, connections_max: usize) -> EbsServer {
    let addrs = vec![SocketAddr::from((Ipv4Addr::LOCALHOST, 0)); PATHS];
    let config = ServerConfig {
        srd: srd_config(),
        connections_max,
        idle_timeout_ms,
        ..ServerConfig::default()
    };
    EbsServer::start(&addrs, store, config).unwrap()
}

fn client_config(request_timeout_ms: u64) -> ClientConfig {
    ClientConfig {
        srd: srd_config(),
        request_timeout_ms,
        ..ClientConfig::default()
    }
}

/// Connects to `server` and attaches `volume` with its right credential.
fn attach(
    server: &EbsServer,
    volume: &str,
    request_timeout_ms: u64,
) -> Result<RemoteVolume, ClientError> {
    RemoteVolume::connect(
        server.local_addrs(),
        volume,
        &credential(volume),
        None,
        client_config(request_timeout_ms),
    )
}

/// Blocks whose content names their address and a version, so a misplaced or stale block shows.
fn blocks(lba: u64, count: usize, version: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(count * BLOCK_BYTES);
    for i in 0..count as u64 {
        let mut b = vec![(version as u8) ^ 0x3C; BLOCK_BYTES];
        b[..8].copy_from_slice(&(lba + i).to_le_bytes());
        b[8..16].copy_from_slice(&version.to_le_bytes());
        out.extend_from_slice(&b);
    }
    out
}

fn status_of(e: &ClientError) -> Option<Status> {
    match e {
        ClientError::Server { status, .. } => Some(*status),
        _ => None,
    }
}

#[test]
fn random_writes_read_back_against_a_model() {
    const VOLUME_BLOCKS: u64 = 512;
    const WRITES: usize = 180;
    let dir = tempfile::tempdir().unwrap();
    let st = store(dir.path());
    st.create(&spec("data", VOLUME_BLOCKS, false)).unwrap();
    let srv = server(st, 10_000, 8);
    let mut c = attach(&srv, "data", 10_000).unwrap();
    let info = c.attached().unwrap().clone();
    assert_eq!(info.blocks, VOLUME_BLOCKS);
    assert!(info.wrapped_key.is_empty());

    // One call far larger than the queue depth (64) first: the whole volume.
    let mut model = blocks(0, VOLUME_BLOCKS as usize, 0);
    c.write(0, &model, false).unwrap();
    let mut written = model.len();
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let started = Instant::now();
    for version in 1..=WRITES as u64 {
        let count = rng.random_range(1..=8usize);
        let lba = rng.random_range(0..=VOLUME_BLOCKS - count as u64);
        let data = blocks(lba, count, version);
        c.write(lba, &data, version % 10 == 0).unwrap();
        let at = lba as usize * BLOCK_BYTES;
        model[at..at + data.len()].copy_from_slice(&data);
        written += data.len();
        if version % 30 == 0 {
            c.flush().unwrap();
            let lba = rng.random_range(0..VOLUME_BLOCKS - 64);
            let got = c.read(lba, 64).unwrap();
            let at = lba as usize * BLOCK_BYTES;
            assert!(got == model[at..at + got.len()], "read at {lba} differs");
        }
        assert!(
            started.elapsed() < GIVE_UP,
            "gave up after {version} writes"
        );
    }
    c.flush().unwrap();
    // A read larger than one READ (256 blocks) is split and reassembled in order.
    let all = c.read(0, VOLUME_BLOCKS).unwrap();
    assert!(all == model, "volume differs from the model");
    assert!(written >= 4 << 20, "wrote {written} bytes");
    c.detach().unwrap();
    let stats = srv.stop().unwrap();
    assert_eq!(stats.datagrams_malformed, 0);
    assert_eq!(c.stats().replies_unexpected, 0);
}

#[test]
fn overlapping_writes_in_flight_keep_their_order() {
    const LBAS: u64 = 8;
    const WRITES: u64 = 48;
    let dir = tempfile::tempdir().unwrap();
    let st = store(dir.path());
    st.create(&spec("order", 64, false)).unwrap();
    let srv = server(st, 10_000, 8);
    let mut c = attach(&srv, "order", 10_000).unwrap();

    // Many writes to few blocks, all submitted before any is waited for: each block must end up
    // with the last version submitted for it, and a flush in the middle must not reorder.
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let mut last = vec![0u64; LBAS as usize];
    let mut tags = Vec::new();
    for version in 1..=WRITES {
        let lba = rng.random_range(0..LBAS);
        tags.push(
            c.submit(Request::Write {
                lba,
                fua: false,
                seal: [0; BLOCK_SEAL_BYTES],
                data: blocks(lba, 1, version),
            })
            .unwrap(),
        );
        last[lba as usize] = version;
        if version == WRITES / 2 {
            tags.push(c.submit(Request::Flush).unwrap());
        }
    }
    for tag in tags {
        assert_eq!(c.wait(tag).unwrap(), Completion::Done);
    }
    for lba in 0..LBAS {
        let got = c.read(lba, 1).unwrap();
        let expected = if last[lba as usize] == 0 {
            vec![0; BLOCK_BYTES]
        } else {
            blocks(lba, 1, last[lba as usize])
        };
        assert!(got == expected, "block {lba} is not its last write");
    }
}

#[test]
fn trim_and_write_zeroes_read_back_zeroes() {
    let dir = tempfile::tempdir().unwrap();
    let st = store(dir.path());
    st.create(&spec("z", 128, false)).unwrap();
    let srv = server(st, 10_000, 8);
    let mut c = attach(&srv, "z", 10_000).unwrap();
    c.write(0, &blocks(0, 32, 1), false).unwrap();
    c.trim(4, 8).unwrap();
    c.write_zeroes(20, 4, true).unwrap();
    c.flush().unwrap();
    let got = c.read(0, 32).unwrap();
    let mut expected = blocks(0, 32, 1);
    expected[4 * BLOCK_BYTES..12 * BLOCK_BYTES].fill(0);
    expected[20 * BLOCK_BYTES..24 * BLOCK_BYTES].fill(0);
    assert!(got == expected);
    // Past the end: the server's OUT_OF_RANGE, named in the error.
    let e = c.read(127, 2).unwrap_err();
    assert_eq!(status_of(&e), Some(Status::OutOfRange), "{e}");
    assert!(e.to_string().contains("OutOfRange"), "{e}");
}

#[test]
fn wrong_credential_and_unknown_volume_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let st = store(dir.path());
    st.create(&spec("secret", 64, false)).unwrap();
    let srv = server(st, 10_000, 8);
    let connect = |volume: &str, cred: &[u8]| {
        RemoteVolume::connect(srv.local_addrs(), volume, cred, None, client_config(10_000))
    };
    // The handshake fails the same way for both: the server does not say which volumes exist.
    let bad_confirm = |e: &ClientError| {
        matches!(
            e,
            ClientError::Handshake(srd::handshake::HandshakeError::BadConfirm)
        )
    };
    let e = connect("secret", b"guess").unwrap_err();
    assert!(bad_confirm(&e), "{e}");
    let e = connect("nothing", b"x").unwrap_err();
    assert!(bad_confirm(&e), "{e}");
    // The server publishes its counters after each turn of its loop, which may come just after
    // the client got the answer sent in that turn.
    let settled = |what: fn(&ServerStats) -> u64| {
        let deadline = Instant::now() + Duration::from_secs(5);
        while what(&srv.stats()) == 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        what(&srv.stats())
    };
    assert_eq!(settled(|s| s.handshakes_unknown_volume), 1);
    // The right credential still works.
    let mut c = connect("secret", &credential("secret")).unwrap();
    c.write(0, &blocks(0, 1, 1), false).unwrap();
    assert_eq!(settled(|s| s.handshakes_confirmed), 1, "{:?}", srv.stats());
}

#[test]
fn a_single_attach_volume_refuses_a_second_client_until_detach() {
    let dir = tempfile::tempdir().unwrap();
    let st = store(dir.path());
    st.create(&spec("solo", 64, false)).unwrap();
    let srv = server(st, 10_000, 8);
    let mut a = attach(&srv, "solo", 10_000).unwrap();
    a.write(3, &blocks(3, 1, 9), true).unwrap();
    let e = attach(&srv, "solo", 10_000).unwrap_err();
    assert_eq!(status_of(&e), Some(Status::VolumeBusy), "{e}");
    a.detach().unwrap();
    let mut b = attach(&srv, "solo", 10_000).unwrap();
    assert!(b.read(3, 1).unwrap() == blocks(3, 1, 9));
}

#[test]
fn a_vanished_client_frees_its_volume_after_the_idle_timeout() {
    const IDLE_TIMEOUT_MS: u64 = 300;
    let dir = tempfile::tempdir().unwrap();
    let st = store(dir.path());
    st.create(&spec("solo", 64, false)).unwrap();
    let srv = server(st, IDLE_TIMEOUT_MS, 64);
    let a = attach(&srv, "solo", 10_000).unwrap();
    // A crash: no DETACH, the sockets just close.
    drop(a);
    let started = Instant::now();
    loop {
        match attach(&srv, "solo", 10_000) {
            Ok(_) => break,
            Err(e) => assert_eq!(status_of(&e), Some(Status::VolumeBusy), "{e}"),
        }
        assert!(started.elapsed() < GIVE_UP, "the volume was never freed");
        std::thread::sleep(Duration::from_millis(IDLE_TIMEOUT_MS / 3));
    }
    assert!(srv.stats().connections_expired >= 1, "{:?}", srv.stats());
}

#[test]
fn a_stopped_server_makes_the_next_request_time_out() {
    const REQUEST_TIMEOUT_MS: u64 = 500;
    let dir = tempfile::tempdir().unwrap();
    let st = store(dir.path());
    st.create(&spec("v", 64, false)).unwrap();
    let srv = server(st, 10_000, 8);
    let mut c = attach(&srv, "v", REQUEST_TIMEOUT_MS).unwrap();
    c.write(0, &blocks(0, 4, 1), false).unwrap();
    srv.stop().unwrap();
    let started = Instant::now();
    let e = c.write(0, &blocks(0, 4, 2), false).unwrap_err();
    assert!(started.elapsed() < GIVE_UP);
    assert!(
        matches!(e, ClientError::Timeout { timeout_ms, .. } if timeout_ms == REQUEST_TIMEOUT_MS),
        "{e}"
    );
    assert!(matches!(c.read(0, 1), Err(ClientError::Closed)));
}

#[test]
fn a_restarted_server_fails_the_old_client_clearly_and_serves_a_new_one() {
    const REQUEST_TIMEOUT_MS: u64 = 500;
    let dir = tempfile::tempdir().unwrap();
    let st = store(dir.path());
    st.create(&spec("v", 64, false)).unwrap();
    let srv = server(Arc::clone(&st), 10_000, 8);
    let addrs = srv.local_addrs().to_vec();
    let mut old = attach(&srv, "v", REQUEST_TIMEOUT_MS).unwrap();
    old.write(0, &blocks(0, 4, 1), false).unwrap();
    old.flush().unwrap();
    srv.stop().unwrap();
    // The same ports, the same store: a new process would open the same FTL.
    let config = ServerConfig {
        srd: srd_config(),
        connections_max: 8,
        idle_timeout_ms: 10_000,
        ..ServerConfig::default()
    };
    let srv = EbsServer::start(&addrs, st, config).unwrap();
    // The new server never keyed the old connection: its sealed packets are dropped unopened,
    // so the old client gets a clear timeout, not a hang.
    let started = Instant::now();
    let e = old.read(0, 1).unwrap_err();
    assert!(started.elapsed() < GIVE_UP);
    assert!(matches!(e, ClientError::Timeout { .. }), "{e}");
    assert!(
        srv.stats().datagrams_unknown_connection > 0,
        "{:?}",
        srv.stats()
    );
    // The old session's attachment died with the old server: a new client attaches at once.
    let mut new = attach(&srv, "v", 10_000).unwrap();
    assert!(new.read(0, 4).unwrap() == blocks(0, 4, 1));
}

#[test]
fn connections_beyond_the_limit_are_not_served() {
    let dir = tempfile::tempdir().unwrap();
    let st = store(dir.path());
    st.create(&spec("v", 64, true)).unwrap();
    let srv = server(st, 10_000, 1);
    let mut a = attach(&srv, "v", 10_000).unwrap();
    let e = attach(&srv, "v", 300).unwrap_err();
    assert!(matches!(e, ClientError::NoHandshake { .. }), "{e}");
    assert!(srv.stats().connections_refused >= 1);
    // The first connection is unaffected.
    a.write(0, &blocks(0, 1, 1), false).unwrap();
}

/// 4 KiB random writes then reads at queue depth `depth`, through the client; returns
/// (write IOPS, read IOPS). Blocks are checked on the way back.
fn iops(c: &mut RemoteVolume, volume_blocks: u64, depth: usize, ios: usize) -> (f64, f64) {
    let mut rng = ChaCha8Rng::seed_from_u64(depth as u64);
    let lbas: Vec<u64> = (0..ios)
        .map(|_| rng.random_range(0..volume_blocks))
        .collect();
    let mut last = std::collections::HashMap::new();
    let mut measure = |c: &mut RemoteVolume, write: bool| {
        let started = Instant::now();
        let mut outstanding = 0;
        for (i, &lba) in lbas.iter().enumerate() {
            if outstanding == depth {
                let (_, result) = c.wait_any().unwrap();
                result.unwrap();
                outstanding -= 1;
            }
            let request = if write {
                last.insert(lba, i as u64);
                Request::Write {
                    lba,
                    fua: false,
                    seal: [0; BLOCK_SEAL_BYTES],
                    data: blocks(lba, 1, i as u64),
                }
            } else {
                Request::Read { lba, blocks: 1 }
            };
            c.submit(request).unwrap();
            outstanding += 1;
        }
        while outstanding > 0 {
            let (_, result) = c.wait_any().unwrap();
            if let Completion::Data(d) = result.unwrap() {
                let lba = u64::from_le_bytes(d[..8].try_into().unwrap());
                assert!(d == blocks(lba, 1, last[&lba]), "block {lba}");
            }
            outstanding -= 1;
        }
        ios as f64 / started.elapsed().as_secs_f64()
    };
    let w = measure(c, true);
    let r = measure(c, false);
    (w, r)
}

#[test]
fn loopback_iops_for_the_record() {
    const VOLUME_BLOCKS: u64 = 256;
    let dir = tempfile::tempdir().unwrap();
    let st = store(dir.path());
    st.create(&spec("bench", VOLUME_BLOCKS, false)).unwrap();
    let srv = server(st, 10_000, 8);
    let mut c = attach(&srv, "bench", 10_000).unwrap();
    let (w1, r1) = iops(&mut c, VOLUME_BLOCKS, 1, 400);
    let (w32, r32) = iops(&mut c, VOLUME_BLOCKS, 32, 1600);
    println!(
        "loopback 4 KiB random, {PATHS} paths ({} build): QD1 write {w1:.0} IOPS read {r1:.0} IOPS; \
         QD32 write {w32:.0} IOPS read {r32:.0} IOPS; transport {:?}",
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        },
        c.transport_stats()
    );
}

/// A relay on 127.0.0.1 between one client and the server that drops a seeded share of the
/// datagrams on every path, both ways: the loss the kernel here cannot impose (no netem).
struct LossyRelay {
    front: Vec<SocketAddr>,
    stop: Arc<AtomicBool>,
    dropped: Arc<AtomicU64>,
    thread: Option<JoinHandle<()>>,
}

/// Datagrams the relay moves per socket per turn, so one direction cannot starve the other.
const RELAY_BATCH_MAX: usize = 64;

impl LossyRelay {
    fn start(server: &[SocketAddr], loss: f64, seed: u64) -> Self {
        let bind = || {
            let s = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
            s.set_nonblocking(true).unwrap();
            s
        };
        let front_sockets: Vec<UdpSocket> = server.iter().map(|_| bind()).collect();
        let back_sockets: Vec<UdpSocket> = server.iter().map(|_| bind()).collect();
        let front = front_sockets
            .iter()
            .map(|s| s.local_addr().unwrap())
            .collect();
        let server = server.to_vec();
        let stop = Arc::new(AtomicBool::new(false));
        let dropped = Arc::new(AtomicU64::new(0));
        let (thread_stop, thread_dropped) = (Arc::clone(&stop), Arc::clone(&dropped));
        let thread = std::thread::spawn(move || {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            let mut client: Vec<Option<SocketAddr>> = vec![None; server.len()];
            let mut buf = vec![0u8; 65536];
            while !thread_stop.load(Ordering::Acquire) {
                let mut active = false;
                for path in 0..server.len() {
                    for _ in 0..RELAY_BATCH_MAX {
                        let Ok((len, from)) = front_sockets[path].recv_from(&mut buf) else {
                            break;
                        };
                        active = true;
                        client[path] = Some(from);
                        if rng.random_bool(loss) {
                            thread_dropped.fetch_add(1, Ordering::Relaxed);
                        } else {
                            let _ = back_sockets[path].send_to(&buf[..len], server[path]);
                        }
                    }
                    for _ in 0..RELAY_BATCH_MAX {
                        let Ok((len, _)) = back_sockets[path].recv_from(&mut buf) else {
                            break;
                        };
                        active = true;
                        if rng.random_bool(loss) {
                            thread_dropped.fetch_add(1, Ordering::Relaxed);
                        } else if let Some(to) = client[path] {
                            let _ = front_sockets[path].send_to(&buf[..len], to);
                        }
                    }
                }
                if !active {
                    std::thread::yield_now();
                }
            }
        });
        LossyRelay {
            front,
            stop,
            dropped,
            thread: Some(thread),
        }
    }
}

impl Drop for LossyRelay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
    }
}

#[test]
fn data_survives_five_percent_loss_on_every_path() {
    const VOLUME_BLOCKS: u64 = 256;
    let dir = tempfile::tempdir().unwrap();
    let st = store(dir.path());
    st.create(&spec("lossy", VOLUME_BLOCKS, false)).unwrap();
    let srv = server(st, 10_000, 8);
    let relay = LossyRelay::start(srv.local_addrs(), 0.05, 5);
    let config = ClientConfig {
        srd: srd_config(),
        request_timeout_ms: 10_000,
        ..ClientConfig::default()
    };
    let mut c =
        RemoteVolume::connect(&relay.front, "lossy", &credential("lossy"), None, config).unwrap();
    let mut model = blocks(0, VOLUME_BLOCKS as usize, 0);
    c.write(0, &model, false).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(13);
    let started = Instant::now();
    for version in 1..=60u64 {
        let count = rng.random_range(1..=8usize);
        let lba = rng.random_range(0..=VOLUME_BLOCKS - count as u64);
        let data = blocks(lba, count, version);
        c.write(lba, &data, false).unwrap();
        let at = lba as usize * BLOCK_BYTES;
        model[at..at + data.len()].copy_from_slice(&data);
        assert!(
            started.elapsed() < GIVE_UP,
            "gave up after {version} writes"
        );
    }
    c.flush().unwrap();
    assert!(
        c.read(0, VOLUME_BLOCKS).unwrap() == model,
        "volume differs from the model"
    );
    let dropped = relay.dropped.load(Ordering::Relaxed);
    let stats = c.transport_stats().clone();
    assert!(dropped > 0, "the relay dropped nothing");
    assert!(stats.retransmissions > 0, "{stats:?}");
    println!(
        "5% loss: {dropped} datagrams dropped by the relay, client retransmissions {}, {} paths made suspect",
        stats.retransmissions, stats.paths_made_suspect
    );
}

#[test]
fn a_server_thread_that_ended_is_seen_as_not_running() {
    let dir = tempfile::tempdir().unwrap();
    let server = server(store(dir.path()), 60_000, 16);
    assert!(server.is_running());
    // The stop handle ends the thread as an I/O error would, without `stop` joining it.
    server.stop_handle().stop();
    let deadline = Instant::now() + std::time::Duration::from_secs(10);
    while server.is_running() {
        assert!(Instant::now() < deadline, "server thread did not end");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    server.stop().unwrap();
}

#[test]
fn keepalives_hold_an_idle_attachment_past_the_idle_timeout() {
    const IDLE_TIMEOUT_MS: u64 = 300;
    let dir = tempfile::tempdir().unwrap();
    let st = store(dir.path());
    st.create(&spec("solo", 64, false)).unwrap();
    let srv = server(st, IDLE_TIMEOUT_MS, 8);
    let mut a = attach(&srv, "solo", 10_000).unwrap();
    a.write(0, &blocks(0, 1, 1), false).unwrap();
    // Idle for several idle timeouts, with a keepalive every third of one.
    let started = Instant::now();
    while started.elapsed() < Duration::from_millis(4 * IDLE_TIMEOUT_MS) {
        a.keepalive().unwrap();
        std::thread::sleep(Duration::from_millis(IDLE_TIMEOUT_MS / 3));
    }
    assert_eq!(srv.stats().connections_expired, 0, "{:?}", srv.stats());
    // Still attached: another client is refused, and this one goes on.
    let e = attach(&srv, "solo", 10_000).unwrap_err();
    assert_eq!(status_of(&e), Some(Status::VolumeBusy), "{e}");
    assert!(a.read(0, 1).unwrap() == blocks(0, 1, 1));
}
