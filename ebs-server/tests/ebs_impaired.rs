#![allow(clippy::unwrap_used)]
//! The volume server and `RemoteVolume` over real UDP sockets with the impairment relay
//! (`ebs_server::impair`) between them: data written under 5% loss on every path, and with one
//! path black-holed mid-run, reads back exactly and no request fails. The transport's
//! retransmission timers run in real time, so only counts are asserted, never speed.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ebs_server::client::{ClientConfig, RemoteVolume};
use ebs_server::impair::{PathImpairment, Relay, RelayConfig, parse_spec};
use ebs_server::proto::BLOCK_BYTES;
use ebs_server::server::{EbsServer, ServerConfig};
use ebs_server::srd;
use ebs_server::volumes::{VolumeSpec, VolumeStore};
use ftl::nand::{FaultConfig, Geometry, MemNand, Nand};
use ftl::{Ftl, FtlConfig};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const PATHS: usize = 4;
const VOLUME_BLOCKS: u64 = 256;
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
    Arc::new(VolumeStore::open(ftl, &dir.join("volumes.cat"), 64).unwrap())
}

fn srd_config() -> srd::Config {
    srd::Config {
        path_count: PATHS,
        ..srd::Config::default()
    }
}

/// A server with one volume, a relay in front of it impaired by `spec`, a client through the
/// relay, attached.
fn setup(dir: &Path, spec: &str, seed: u64) -> (EbsServer, Relay, RemoteVolume) {
    let st = store(dir);
    let kek = keys::Kek::generate().unwrap();
    let key = keys::VolumeKey::generate(keys::Backend::AwsLc).unwrap();
    st.create(&VolumeSpec {
        name: "v".into(),
        blocks: VOLUME_BLOCKS,
        credential: b"cred".to_vec(),
        multi_attach: false,
        wrapped_key: key.wrap(&kek, "v").unwrap().as_bytes().to_vec(),
    })
    .unwrap();
    let addrs = vec![SocketAddr::from((Ipv4Addr::LOCALHOST, 0)); PATHS];
    let srv = EbsServer::start(
        &addrs,
        st,
        ServerConfig {
            srd: srd_config(),
            ..ServerConfig::default()
        },
    )
    .unwrap();
    let relay = Relay::start(RelayConfig {
        seed,
        schedule: parse_spec(spec, PATHS).unwrap(),
        ..RelayConfig::new(srv.local_addrs().to_vec())
    })
    .unwrap();
    let config = ClientConfig {
        srd: srd_config(),
        // Far beyond any recovery under these impairments: a request that fails is a bug.
        request_timeout_ms: 20_000,
        ..ClientConfig::default()
    };
    // Sealed end to end: the envelope's seals ride the same impaired paths.
    let c = RemoteVolume::connect(relay.front_addrs(), "v", b"cred", Some(&kek), config).unwrap();
    assert!(c.is_sealed());
    (srv, relay, c)
}

/// Blocks whose content names their address and a version, so a misplaced or stale block shows.
fn blocks(lba: u64, count: usize, version: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(count * BLOCK_BYTES);
    for i in 0..count as u64 {
        let mut b = vec![(version as u8) ^ 0xC3; BLOCK_BYTES];
        b[..8].copy_from_slice(&(lba + i).to_le_bytes());
        b[8..16].copy_from_slice(&version.to_le_bytes());
        out.extend_from_slice(&b);
    }
    out
}

/// Random writes of 1..=4 blocks against `model`, one per version, each verified by a read of
/// it now and then; `between(version)` runs before each write. Returns the slowest write, a
/// figure only (real time on a shared host).
fn random_writes(
    c: &mut RemoteVolume,
    model: &mut [u8],
    rng: &mut ChaCha8Rng,
    versions: std::ops::Range<u64>,
    mut between: impl FnMut(u64),
) -> Duration {
    let started = Instant::now();
    let mut slowest = Duration::ZERO;
    for version in versions {
        between(version);
        let count = rng.random_range(1..=4usize);
        let lba = rng.random_range(0..=VOLUME_BLOCKS - count as u64);
        let data = blocks(lba, count, version);
        let write_started = Instant::now();
        c.write(lba, &data, version % 16 == 0).unwrap();
        slowest = slowest.max(write_started.elapsed());
        let at = lba as usize * BLOCK_BYTES;
        model[at..at + data.len()].copy_from_slice(&data);
        if version % 20 == 0 {
            let got = c.read(lba, count as u64).unwrap();
            assert!(
                got == data,
                "block {lba} did not read back after version {version}"
            );
        }
        assert!(started.elapsed() < GIVE_UP, "gave up at version {version}");
    }
    slowest
}

fn verify_all(c: &mut RemoteVolume, model: &[u8]) {
    c.flush().unwrap();
    let all = c.read(0, VOLUME_BLOCKS).unwrap();
    for lba in 0..VOLUME_BLOCKS as usize {
        let r = lba * BLOCK_BYTES..(lba + 1) * BLOCK_BYTES;
        assert!(
            all[r.clone()] == model[r],
            "block {lba} differs from the model"
        );
    }
}

#[test]
fn five_percent_loss_on_every_path_loses_no_data() {
    let dir = tempfile::tempdir().unwrap();
    let (srv, relay, mut c) = setup(dir.path(), "loss=0.05", 21);
    let mut model = blocks(0, VOLUME_BLOCKS as usize, 0);
    c.write(0, &model, false).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let slowest = random_writes(&mut c, &mut model, &mut rng, 1..201, |_| {});
    verify_all(&mut c, &model);
    c.detach().unwrap();
    let transport = c.transport_stats().clone();
    let stats = relay.stop().unwrap();
    let dropped: u64 = stats
        .iter()
        .map(|s| s.to_server.dropped_loss + s.to_client.dropped_loss)
        .sum();
    let forwarded: u64 = stats
        .iter()
        .map(|s| s.to_server.forwarded + s.to_client.forwarded)
        .sum();
    println!(
        "5% loss: relay forwarded {forwarded}, dropped {dropped}; client retransmissions {}; \
         slowest write {slowest:?}",
        transport.retransmissions
    );
    for (i, s) in stats.iter().enumerate() {
        assert!(s.to_server.dropped_loss > 0, "path {i} lost nothing: {s:?}");
        assert!(
            s.to_client.forwarded > 0,
            "path {i} carried no replies: {s:?}"
        );
    }
    assert!(transport.retransmissions > 0);
    assert_eq!(srv.stop().unwrap().datagrams_malformed, 0);
}

#[test]
fn a_path_black_holed_mid_run_loses_no_data() {
    black_hole_mid_run("", 22);
}

#[test]
fn a_path_black_holed_mid_run_under_five_percent_loss_loses_no_data() {
    black_hole_mid_run("loss=0.05", 23);
}

/// Path 2 turns into a black hole (with the link up: nothing tells the client) halfway
/// through, on top of `spec`, and stays one.
fn black_hole_mid_run(spec: &str, seed: u64) {
    let dir = tempfile::tempdir().unwrap();
    let (srv, relay, mut c) = setup(dir.path(), spec, seed);
    let mut model = blocks(0, VOLUME_BLOCKS as usize, 0);
    c.write(0, &model, false).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(6);
    let handle = relay.handle();
    let hole = PathImpairment {
        black_hole: true,
        ..relay.path(2).unwrap()
    };
    let slowest = random_writes(&mut c, &mut model, &mut rng, 1..201, |version| {
        if version == 100 {
            handle.set_path(2, hole.clone()).unwrap();
        }
    });
    verify_all(&mut c, &model);
    c.detach().unwrap();
    let transport = c.transport_stats().clone();
    let stats = relay.stop().unwrap();
    let holed = &stats[2];
    println!(
        "{spec:?}, path 2 black-holed: {} + {} datagrams vanished; client retransmissions {}; \
         slowest write {slowest:?}",
        holed.to_server.dropped_black_hole,
        holed.to_client.dropped_black_hole,
        transport.retransmissions
    );
    // Traffic did go into the hole: the client's (before it found the path suspect, and its
    // probes) or the server's answers on that path, or both; which, depends on where each
    // side's least-loaded path choice put packets just after the hole opened.
    assert!(
        holed.to_server.dropped_black_hole + holed.to_client.dropped_black_hole > 0,
        "{holed:?}"
    );
    for (i, s) in stats.iter().enumerate() {
        if spec.is_empty() {
            assert_eq!(
                s.to_server.dropped_loss + s.to_client.dropped_loss,
                0,
                "path {i}"
            );
        }
        if i != 2 {
            assert_eq!(s.to_server.dropped_black_hole, 0, "path {i}");
        }
    }
    assert_eq!(srv.stop().unwrap().datagrams_malformed, 0);
}
