#![allow(clippy::unwrap_used)]
//! The remote namespace backend over a real `EbsServer` on 127.0.0.1: several threads at once
//! against a model, a sealed volume, detach on drop, and a server restart (the I/O in flight
//! fails clearly, then the backend reconnects and the disk works again).

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use ebs_server::client::ClientConfig;
use ebs_server::server::{EbsServer, ServerConfig};
use ebs_server::srd;
use ebs_server::volumes::{VolumeSpec, VolumeStore};
use ftl::nand::{FaultConfig, Geometry, MemNand, Nand};
use ftl::{Ftl, FtlConfig};
use keys::{Backend, Kek, VolumeKey};
use nvme_target::{Namespace, NamespaceError, RemoteNamespace, RemoteTarget};
use zeroize::Zeroizing;

const PATHS: usize = 2;
const CREDENTIAL: &[u8] = b"remote backend credential";
const BLOCKS: u64 = 128;

fn store(dir: &std::path::Path, kek: &Kek) -> Arc<VolumeStore> {
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
    let key = VolumeKey::generate(Backend::AwsLc).unwrap();
    st.create(&VolumeSpec {
        name: "disk".into(),
        blocks: BLOCKS,
        credential: CREDENTIAL.to_vec(),
        multi_attach: false,
        wrapped_key: key.wrap(kek, "disk").unwrap().as_bytes().to_vec(),
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

fn server(st: Arc<VolumeStore>, addrs: &[SocketAddr]) -> EbsServer {
    let config = ServerConfig {
        srd: srd_config(),
        ..ServerConfig::default()
    };
    EbsServer::start(addrs, st, config).unwrap()
}

fn target(server: &[SocketAddr], request_timeout_ms: u64) -> RemoteTarget {
    RemoteTarget {
        server: server.to_vec(),
        volume: "disk".into(),
        credential: Zeroizing::new(CREDENTIAL.to_vec()),
        // A KEK has no copy or export path: a second one is made from the same bytes.
        kek: Some(test_kek()),
        client: ClientConfig {
            srd: srd_config(),
            request_timeout_ms,
            ..ClientConfig::default()
        },
        busy_wait_ms: 0,
    }
}

fn test_kek() -> Kek {
    Kek::from_bytes(&[0x42; 32]).unwrap()
}

fn block(lba: u64, version: u64) -> Vec<u8> {
    let mut b = vec![(version as u8) ^ 0x5A; 4096];
    b[..8].copy_from_slice(&lba.to_le_bytes());
    b[8..16].copy_from_slice(&version.to_le_bytes());
    b
}

#[test]
fn threads_at_once_read_back_what_they_wrote_on_a_sealed_volume() {
    let dir = tempfile::tempdir().unwrap();
    let kek = test_kek();
    let st = store(dir.path(), &kek);
    let any = vec![SocketAddr::from((Ipv4Addr::LOCALHOST, 0)); PATHS];
    let srv = server(Arc::clone(&st), &any);
    let ns = Arc::new(RemoteNamespace::attach(target(srv.local_addrs(), 10_000)).unwrap());
    assert!(ns.is_sealed());
    assert_eq!(ns.blocks(), BLOCKS);
    assert_eq!(ns.block_size(), 4096);
    // Each thread owns a stripe of blocks, so the model per thread is exact.
    let threads: Vec<_> = (0..4u64)
        .map(|t| {
            let ns = Arc::clone(&ns);
            std::thread::spawn(move || {
                let mut buf = vec![0u8; 4096];
                for round in 1..=5u64 {
                    for lba in (t..BLOCKS).step_by(4) {
                        ns.write_block(lba, &block(lba, round), round == 5).unwrap();
                    }
                    for lba in (t..BLOCKS).step_by(4) {
                        ns.read_block(lba, &mut buf).unwrap();
                        assert_eq!(buf, block(lba, round), "lba {lba} round {round}");
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    ns.flush().unwrap();
    ns.deallocate(0, 4).unwrap();
    ns.write_zeroes(4, 4).unwrap();
    let mut buf = vec![1u8; 4096];
    for lba in 0..8 {
        ns.read_block(lba, &mut buf).unwrap();
        assert!(buf.iter().all(|&b| b == 0), "lba {lba}");
    }
    assert!(matches!(
        ns.read_block(BLOCKS, &mut buf),
        Err(NamespaceError::OutOfRange { .. })
    ));
    let h = ns.health();
    assert!(h.lifetime_bytes_written >= 5 * BLOCKS * 4096);
    // Closing detaches: the single-attach volume takes another client at once.
    ns.close();
    assert!(matches!(
        ns.read_block(0, &mut buf),
        Err(NamespaceError::Backend(_))
    ));
    let again = RemoteNamespace::attach(target(srv.local_addrs(), 10_000)).unwrap();
    again.read_block(9, &mut buf).unwrap();
    assert_eq!(buf, block(9, 5));
}

#[test]
fn a_server_restart_fails_the_io_in_flight_clearly_then_the_backend_reconnects() {
    let dir = tempfile::tempdir().unwrap();
    let kek = test_kek();
    let st = store(dir.path(), &kek);
    let any = vec![SocketAddr::from((Ipv4Addr::LOCALHOST, 0)); PATHS];
    let srv = server(Arc::clone(&st), &any);
    let addrs = srv.local_addrs().to_vec();
    let ns = RemoteNamespace::attach(target(&addrs, 500)).unwrap();
    ns.write_block(3, &block(3, 1), true).unwrap();
    srv.stop().unwrap();
    // No server: the request times out and fails with the reason.
    let mut buf = vec![0u8; 4096];
    match ns.read_block(3, &mut buf) {
        Err(NamespaceError::Backend(m)) => assert!(m.contains("no answer"), "{m}"),
        other => panic!("{other:?}"),
    }
    // Still none: the next request tries to reconnect, and says it could not.
    match ns.read_block(3, &mut buf) {
        Err(NamespaceError::Backend(m)) => assert!(m.contains("not connected"), "{m}"),
        other => panic!("{other:?}"),
    }
    // The server is back on the same ports (a restarted process): within a reconnect interval
    // the disk works again; requests before that fail at once, not after a timeout each.
    let srv = server(Arc::clone(&st), &addrs);
    let back = std::time::Instant::now();
    loop {
        let tried = std::time::Instant::now();
        match ns.read_block(3, &mut buf) {
            Ok(()) => break,
            Err(NamespaceError::Backend(m)) => {
                assert!(m.contains("not connected"), "{m}");
                assert!(
                    tried.elapsed() < Duration::from_millis(400),
                    "a failed request waited"
                );
            }
            Err(e) => panic!("{e}"),
        }
        assert!(
            back.elapsed() < Duration::from_secs(10),
            "never reconnected"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(buf, block(3, 1));
    assert!(ns.reconnects() >= 1);
    ns.write_block(4, &block(4, 2), true).unwrap();
    drop(ns);
    drop(srv);
    std::thread::sleep(Duration::from_millis(10));
}

/// A queue's batch goes out together (`write_blocks`, `read_blocks`): blocks written several times
/// in one batch keep the last write (the client holds back an overlapping write), every block of
/// a batch read returns its data, a block out of range fails alone, and after a close the whole
/// batch fails with a clear error.
#[test]
fn batches_are_in_flight_together_and_keep_their_order() {
    let dir = tempfile::tempdir().unwrap();
    let kek = test_kek();
    let st = store(dir.path(), &kek);
    let any = vec![SocketAddr::from((Ipv4Addr::LOCALHOST, 0)); PATHS];
    let srv = server(Arc::clone(&st), &any);
    let ns = RemoteNamespace::attach(target(srv.local_addrs(), 10_000)).unwrap();
    // 48 writes: blocks 0..16 three times over, in rounds, plus one past the end in the middle.
    let data: Vec<(u64, Vec<u8>)> = (1..=3u64)
        .flat_map(|round| (0..16u64).map(move |lba| (lba, block(lba, round))))
        .collect();
    let mut writes: Vec<(u64, &[u8])> = data.iter().map(|(l, d)| (*l, d.as_slice())).collect();
    let past_end = vec![7u8; 4096];
    writes.insert(20, (BLOCKS, &past_end));
    let mut results = Vec::new();
    ns.write_blocks(&writes, &mut results);
    assert_eq!(results.len(), writes.len());
    for (i, r) in results.iter().enumerate() {
        match (i, r) {
            (20, Err(NamespaceError::OutOfRange { lba, .. })) => assert_eq!(*lba, BLOCKS),
            (20, other) => panic!("the write past the end: {other:?}"),
            (_, r) => assert!(r.is_ok(), "write {i}: {r:?}"),
        }
    }
    // Read them back in one batch, in reverse, with one past the end among them.
    let mut lbas: Vec<u64> = (0..16u64).rev().collect();
    lbas.insert(5, BLOCKS + 3);
    let mut out = vec![0u8; lbas.len() * 4096];
    ns.read_blocks(&lbas, &mut out, &mut results);
    for (i, (&lba, got)) in lbas.iter().zip(out.chunks(4096)).enumerate() {
        if lba >= BLOCKS {
            assert!(
                matches!(results[i], Err(NamespaceError::OutOfRange { .. })),
                "{:?}",
                results[i]
            );
        } else {
            assert!(results[i].is_ok(), "read of {lba}: {:?}", results[i]);
            assert!(
                got == block(lba, 3).as_slice(),
                "block {lba} is not its last write"
            );
        }
    }
    ns.close();
    ns.read_blocks(&[1, 2], &mut out[..2 * 4096], &mut results);
    assert!(
        results
            .iter()
            .all(|r| matches!(r, Err(NamespaceError::Backend(_)))),
        "{results:?}"
    );
}
