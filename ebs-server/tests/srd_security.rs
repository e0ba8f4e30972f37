#![allow(clippy::unwrap_used)]
//! Attacks on the sealed transport over real UDP sockets on 127.0.0.1: a relay between client
//! and server records every datagram and injects altered copies from the address the server
//! learned for the client, which is what an attacker on the path can do. Each attack is
//! dropped and counted by the server, the client's I/O goes on, and the data stays right.

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ebs_server::client::{ClientConfig, RemoteVolume};
use ebs_server::proto::BLOCK_BYTES;
use ebs_server::server::{EbsServer, ServerConfig, ServerStats};
use ebs_server::srd;
use ebs_server::srd::handshake::{ClientHandshake, HelloAck};
use ebs_server::srd::packet::{Body, Packet};
use ebs_server::volumes::{VolumeSpec, VolumeStore};
use ftl::nand::{FaultConfig, Geometry, MemNand, Nand};
use ftl::{Ftl, FtlConfig};
use parking_lot::Mutex;

const PATHS: usize = 4;
const GIVE_UP: Duration = Duration::from_secs(30);

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
    let st = VolumeStore::open(ftl, &dir.join("volumes.cat"), 64).unwrap();
    st.create(&VolumeSpec {
        name: "v".into(),
        blocks: 64,
        credential: b"the right credential".to_vec(),
        multi_attach: true,
        wrapped_key: Vec::new(),
    })
    .unwrap();
    Arc::new(st)
}

fn srd_config() -> srd::Config {
    srd::Config {
        path_count: PATHS,
        ..srd::Config::default()
    }
}

fn server(store: Arc<VolumeStore>, config: ServerConfig) -> EbsServer {
    let addrs = vec![SocketAddr::from((Ipv4Addr::LOCALHOST, 0)); PATHS];
    EbsServer::start(
        &addrs,
        store,
        ServerConfig {
            srd: srd_config(),
            ..config
        },
    )
    .unwrap()
}

fn connect(to: &[SocketAddr], request_timeout_ms: u64) -> RemoteVolume {
    let config = ClientConfig {
        srd: srd_config(),
        request_timeout_ms,
        ..ClientConfig::default()
    };
    RemoteVolume::connect(to, "v", b"the right credential", None, config).unwrap()
}

/// A block no datagram could contain by chance.
fn block(version: u8) -> Vec<u8> {
    (0..BLOCK_BYTES)
        .map(|i| (i as u8).wrapping_mul(31) ^ version)
        .collect()
}

/// Waits until the server's counters satisfy `done` (the server thread publishes them after
/// each turn).
fn wait_for(srv: &EbsServer, what: &str, done: impl Fn(&ServerStats) -> bool) -> ServerStats {
    let started = Instant::now();
    loop {
        let s = srv.stats();
        if done(&s) {
            return s;
        }
        assert!(started.elapsed() < GIVE_UP, "never saw {what}: {s:?}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

type Record = Arc<Mutex<Vec<(usize, Vec<u8>)>>>;

/// Forwards each path both ways, recording every datagram; `inject` sends bytes to the server
/// from the relay's back socket of a path: the address the server knows the client by.
struct RecordingRelay {
    front: Vec<SocketAddr>,
    back: Vec<UdpSocket>,
    server: Vec<SocketAddr>,
    to_server: Record,
    to_client: Record,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl RecordingRelay {
    fn start(server: &[SocketAddr]) -> Self {
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
        let back = back_sockets
            .iter()
            .map(|s| s.try_clone().unwrap())
            .collect();
        let (to_server, to_client): (Record, Record) = Default::default();
        let stop = Arc::new(AtomicBool::new(false));
        let (rec_up, rec_down, thread_stop) = (
            Arc::clone(&to_server),
            Arc::clone(&to_client),
            Arc::clone(&stop),
        );
        let server_addrs = server.to_vec();
        let thread = std::thread::spawn(move || {
            let mut client: Vec<Option<SocketAddr>> = vec![None; server_addrs.len()];
            let mut buf = vec![0u8; 65536];
            while !thread_stop.load(Ordering::Acquire) {
                let mut active = false;
                for path in 0..server_addrs.len() {
                    while let Ok((len, from)) = front_sockets[path].recv_from(&mut buf) {
                        active = true;
                        client[path] = Some(from);
                        rec_up.lock().push((path, buf[..len].to_vec()));
                        let _ = back_sockets[path].send_to(&buf[..len], server_addrs[path]);
                    }
                    while let Ok((len, _)) = back_sockets[path].recv_from(&mut buf) {
                        active = true;
                        rec_down.lock().push((path, buf[..len].to_vec()));
                        if let Some(to) = client[path] {
                            let _ = front_sockets[path].send_to(&buf[..len], to);
                        }
                    }
                }
                if !active {
                    std::thread::sleep(Duration::from_micros(50));
                }
            }
        });
        RecordingRelay {
            front,
            back,
            server: server.to_vec(),
            to_server,
            to_client,
            stop,
            thread: Some(thread),
        }
    }

    fn inject(&self, path: usize, datagram: &[u8]) {
        self.back[path]
            .send_to(datagram, self.server[path])
            .unwrap();
    }

    /// The sealed datagrams the client sent so far (not its HELLOs).
    fn sealed_to_server(&self) -> Vec<(usize, Vec<u8>)> {
        self.to_server
            .lock()
            .iter()
            .filter(|(_, d)| {
                matches!(
                    srd::handshake::classify(d),
                    srd::handshake::Incoming::Sealed { .. }
                )
            })
            .cloned()
            .collect()
    }
}

impl Drop for RecordingRelay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn no_block_crosses_the_wire_in_the_clear() {
    let dir = tempfile::tempdir().unwrap();
    let srv = server(store(dir.path()), ServerConfig::default());
    let relay = RecordingRelay::start(srv.local_addrs());
    let mut c = connect(&relay.front, 10_000);
    c.write(5, &block(1), true).unwrap();
    assert_eq!(c.read(5, 1).unwrap(), block(1));
    // A 64-byte piece of the block is enough to find it in any datagram that carried it.
    let piece = &block(1)[1000..1064];
    for (dir, record) in [
        ("to server", &relay.to_server),
        ("to client", &relay.to_client),
    ] {
        let record = record.lock();
        assert!(!record.is_empty());
        assert!(
            record.iter().all(|(_, d)| !contains(d, piece)),
            "a datagram {dir} carries the block in the clear"
        );
    }
}

#[test]
fn replayed_packets_are_dropped_and_do_not_undo_a_later_write() {
    let dir = tempfile::tempdir().unwrap();
    let srv = server(store(dir.path()), ServerConfig::default());
    let relay = RecordingRelay::start(srv.local_addrs());
    let mut c = connect(&relay.front, 10_000);
    c.write(9, &block(1), true).unwrap();
    let old = relay.sealed_to_server();
    c.write(9, &block(2), true).unwrap();
    // Everything the client sent up to and including the first write, again, from its address.
    for (path, d) in &old {
        relay.inject(*path, d);
    }
    let s = wait_for(&srv, "the replays counted", |s| {
        s.datagrams_replayed >= old.len() as u64
    });
    assert_eq!(s.datagrams_forged, 0, "{s:?}");
    assert_eq!(
        c.read(9, 1).unwrap(),
        block(2),
        "a replayed WRITE was applied"
    );
}

#[test]
fn forged_and_truncated_packets_are_dropped_and_the_connection_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let srv = server(store(dir.path()), ServerConfig::default());
    let relay = RecordingRelay::start(srv.local_addrs());
    let mut c = connect(&relay.front, 10_000);
    c.write(3, &block(7), false).unwrap();
    let sealed = relay.sealed_to_server();
    assert!(!sealed.is_empty());
    let mut forged = 0u64;
    let mut truncated = 0u64;
    for (i, (path, d)) in sealed.iter().enumerate() {
        // A flipped bit in the header (past the connection id, which routes it), the body
        // or the tag fails the tag.
        let mut f = d.clone();
        let at = 16 + (i * 7919) % (f.len() - 16);
        f[at] ^= 1 << (i % 8);
        relay.inject(*path, &f);
        forged += 1;
        // Cut short: too short for the tag its header promises.
        relay.inject(*path, &d[..d.len() - 1]);
        truncated += 1;
    }
    let s = wait_for(&srv, "the forgeries counted", |s| {
        s.datagrams_forged + s.datagrams_truncated >= forged + truncated
    });
    assert_eq!(s.datagrams_replayed, 0, "{s:?}");
    assert!(s.datagrams_truncated >= truncated, "{s:?}");
    c.write(4, &block(8), false).unwrap();
    assert_eq!(c.read(3, 2).unwrap(), [block(7), block(8)].concat());
}

#[test]
fn unsealed_strange_and_unknown_datagrams_are_dropped_unopened() {
    let dir = tempfile::tempdir().unwrap();
    let srv = server(store(dir.path()), ServerConfig::default());
    let relay = RecordingRelay::start(srv.local_addrs());
    let mut c = connect(&relay.front, 10_000);
    c.write(1, &block(3), false).unwrap();
    let (path, live) = relay.sealed_to_server().pop().unwrap();
    let connection_id = u64::from_le_bytes(live[8..16].try_into().unwrap());
    // A well-formed version-1 packet on the live connection: this server never accepts one.
    let v1 = Packet {
        connection_id,
        packet_number: 1 << 40,
        path_id: path as u8,
        body: Body::Probe,
    }
    .encode();
    relay.inject(path, &v1);
    // A sealed packet for a connection the server never keyed.
    let mut unknown = live.clone();
    unknown[8..16].copy_from_slice(&(connection_id ^ 1).to_le_bytes());
    relay.inject(path, &unknown);
    // The live connection's packet from another address than the one the server learned.
    let stranger = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    stranger.send_to(&live, srv.local_addrs()[path]).unwrap();
    // Not SRD at all.
    relay.inject(path, b"GET / HTTP/1.1\r\n\r\n");
    let s = wait_for(&srv, "each drop counted", |s| {
        s.datagrams_unsealed >= 1
            && s.datagrams_unknown_connection >= 1
            && s.datagrams_from_stranger >= 1
            && s.datagrams_malformed >= 1
    });
    assert_eq!(
        s.connections_opened, 1,
        "a stray datagram opened a connection: {s:?}"
    );
    assert_eq!(c.read(1, 1).unwrap(), block(3));
}

#[test]
fn a_repeated_hello_gets_the_same_answer_and_a_conflicting_one_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let srv = server(store(dir.path()), ServerConfig::default());
    let raw = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    raw.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let to = srv.local_addrs()[0];
    let hello = ClientHandshake::start(0xFEED, "v").unwrap();
    let mut acks = Vec::new();
    for _ in 0..2 {
        raw.send_to(hello.hello(), to).unwrap();
        let mut buf = [0u8; 2048];
        let (len, _) = raw.recv_from(&mut buf).unwrap();
        acks.push(buf[..len].to_vec());
    }
    assert_eq!(
        acks[0], acks[1],
        "the second HELLO was answered with new keys"
    );
    HelloAck::parse(&acks[0]).unwrap();
    // Another HELLO for the same connection id: ignored, not answered.
    let other = ClientHandshake::start(0xFEED, "v").unwrap();
    raw.send_to(other.hello(), to).unwrap();
    let s = wait_for(&srv, "the conflicting HELLO", |s| s.hellos_conflicting == 1);
    assert_eq!(s.hello_acks_resent, 1, "{s:?}");
    assert_eq!(s.connections_opened, 1, "{s:?}");
    // The first handshake still completes with the first answer.
    hello
        .finish(&acks[0], &srd::seal::psk_of(b"the right credential"))
        .unwrap();
}

#[test]
fn a_hello_flood_is_bounded_and_real_clients_get_in_once_it_expires() {
    const FLOOD: u64 = 100;
    let dir = tempfile::tempdir().unwrap();
    let config = ServerConfig {
        handshakes_pending_max: 16,
        handshake_timeout_ms: 300,
        ..ServerConfig::default()
    };
    let srv = server(store(dir.path()), config);
    let mut before = connect(srv.local_addrs(), 10_000);
    before.write(0, &block(1), false).unwrap();
    let raw = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    for id in 0..FLOOD {
        let hello = ClientHandshake::start(id, "v").unwrap();
        raw.send_to(hello.hello(), srv.local_addrs()[(id as usize) % PATHS])
            .unwrap();
    }
    let s = wait_for(&srv, "the flood", |s| s.hellos_received > FLOOD);
    assert!(s.connections_refused >= FLOOD - 16, "{s:?}");
    assert!(s.connections_open <= 17, "{s:?}");
    // A keyed connection is not disturbed by the flood.
    before.write(1, &block(2), false).unwrap();
    // The half-open ones expire; a new client (whose handshake retries for longer than the
    // handshake timeout) then gets in.
    let mut after = connect(srv.local_addrs(), 10_000);
    assert_eq!(after.read(0, 2).unwrap(), [block(1), block(2)].concat());
    assert!(srv.stats().handshakes_expired >= 16, "{:?}", srv.stats());
}

/// The HELLO of a client of another protocol version (2: before piggybacked ACKs) is refused
/// by version, never keyed; a client that gets such a refusal stops with the versions named
/// instead of waiting for a HELLO_ACK that will not come.
#[test]
fn a_hello_of_another_version_is_refused_and_the_client_says_why() {
    use ebs_server::client::ClientError;
    use ebs_server::srd::handshake::{HandshakeError, VersionRefused};
    let dir = tempfile::tempdir().unwrap();
    let srv = server(store(dir.path()), ServerConfig::default());
    let raw = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    raw.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let hello = ClientHandshake::start(0xFEED, "v").unwrap();
    let mut old = hello.hello().to_vec();
    old[4] = 2;
    let at = old.len() - 4;
    let crc = crc32fast::hash(&old[..at]);
    old[at..].copy_from_slice(&crc.to_le_bytes());
    raw.send_to(&old, srv.local_addrs()[0]).unwrap();
    let mut buf = [0u8; 2048];
    let (len, _) = raw.recv_from(&mut buf).unwrap();
    assert_eq!(
        VersionRefused::parse(&buf[..len]).unwrap(),
        VersionRefused {
            version: srd::handshake::VERSION_SEALED,
            refused_version: 2,
            connection_id: 0xFEED
        }
    );
    let s = wait_for(&srv, "the refused HELLO", |s| s.hellos_wrong_version == 1);
    assert_eq!((s.connections_opened, s.hellos_received), (0, 0), "{s:?}");

    // A server of a later version (6) refusing this client's HELLO.
    let later: Vec<UdpSocket> = (0..PATHS)
        .map(|_| UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap())
        .collect();
    let addrs: Vec<SocketAddr> = later.iter().map(|s| s.local_addr().unwrap()).collect();
    let answering = later.into_iter().next().unwrap();
    answering
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let refuser = std::thread::spawn(move || {
        let mut buf = [0u8; 2048];
        let (len, from) = answering.recv_from(&mut buf).unwrap();
        assert_eq!(buf[5], 5, "a HELLO first");
        let connection_id = u64::from_le_bytes(buf[8..16].try_into().unwrap());
        let refused = VersionRefused {
            version: 6,
            refused_version: buf[4],
            connection_id,
        };
        assert!(len > refused.encode().len());
        answering.send_to(&refused.encode(), from).unwrap();
    });
    let config = ClientConfig {
        srd: srd_config(),
        request_timeout_ms: 10_000,
        ..ClientConfig::default()
    };
    let started = Instant::now();
    let Err(e) = RemoteVolume::connect(&addrs, "v", b"the right credential", None, config) else {
        panic!("connected to a server that refused the version");
    };
    refuser.join().unwrap();
    assert!(
        matches!(
            e,
            ClientError::Handshake(HandshakeError::VersionMismatch { ours: 4, theirs: 6 })
        ),
        "{e}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "waited for the timeout"
    );
    println!("{e}");
}
