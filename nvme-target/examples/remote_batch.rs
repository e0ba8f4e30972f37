//! `cargo run --release -p nvme-target --example remote_batch`: what handing a remote namespace a
//! queue's batch at once (`Namespace::read_blocks`, `write_blocks`) buys over one block at a time,
//! from one thread, on a sealed volume of an `EbsServer` on 127.0.0.1 (2 paths, `MemNand`). Prints
//! blocks per second for each, a few rounds (the machine's noise shows between them).
//!
//! Batches of `BATCH` blocks: what the vhost worker stages from one pass of a busy queue.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use ebs_server::client::ClientConfig;
use ebs_server::server::{EbsServer, ServerConfig};
use ebs_server::srd;
use ebs_server::volumes::{VolumeSpec, VolumeStore};
use ftl::nand::{FaultConfig, Geometry, MemNand, Nand};
use ftl::{Ftl, FtlConfig};
use keys::{Backend, Kek, VolumeKey};
use nvme_target::{Namespace, RemoteNamespace, RemoteTarget};
use zeroize::Zeroizing;

const PATHS: usize = 2;
const BLOCKS: u64 = 1024;
const BATCH: usize = 16;
const BATCHES_PER_ROUND: usize = 500;
const ROUNDS: usize = 3;
const CREDENTIAL: &[u8] = b"remote batch example";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let g = Geometry {
        channels: 1,
        dies_per_channel: 2,
        planes_per_die: 1,
        blocks_per_plane: 64,
        pages_per_block: 64,
        page_size: 4096,
        oob_size: 64,
    };
    let devs = (0..2)
        .map(|i| {
            Ok(
                Arc::new(MemNand::new(g, FaultConfig::none().for_device(i), None)?)
                    as Arc<dyn Nand>,
            )
        })
        .collect::<Result<Vec<_>, ftl::nand::NandError>>()?;
    let store = VolumeStore::open(
        Ftl::format(devs, FtlConfig::default())?,
        &dir.path().join("volumes.cat"),
        16,
    )?;
    let kek = Kek::from_bytes(&[0x42; 32])?;
    let key = VolumeKey::generate(Backend::AwsLc)?;
    store.create(&VolumeSpec {
        name: "disk".into(),
        blocks: BLOCKS,
        credential: CREDENTIAL.to_vec(),
        multi_attach: false,
        wrapped_key: key.wrap(&kek, "disk")?.as_bytes().to_vec(),
    })?;
    let srd = srd::Config {
        path_count: PATHS,
        ..srd::Config::default()
    };
    let any = vec![SocketAddr::from((Ipv4Addr::LOCALHOST, 0)); PATHS];
    let server = EbsServer::start(
        &any,
        Arc::new(store),
        ServerConfig {
            srd: srd.clone(),
            ..ServerConfig::default()
        },
    )?;
    let ns = RemoteNamespace::attach(RemoteTarget {
        server: server.local_addrs().to_vec(),
        volume: "disk".into(),
        credential: Zeroizing::new(CREDENTIAL.to_vec()),
        kek: Some(kek),
        client: ClientConfig {
            srd,
            ..ClientConfig::default()
        },
        busy_wait_ms: 0,
    })?;
    let data = vec![0x5au8; 4096];
    for lba in 0..BLOCKS {
        ns.write_block(lba, &data, false)?;
    }
    let lbas: Vec<u64> = (0..BATCH as u64).map(|i| (i * 61) % BLOCKS).collect();
    let writes: Vec<(u64, &[u8])> = lbas.iter().map(|&l| (l, data.as_slice())).collect();
    let mut out = vec![0u8; BATCH * 4096];
    let mut results = Vec::new();
    let per_s = |t: Instant| (BATCH * BATCHES_PER_ROUND) as f64 / t.elapsed().as_secs_f64();
    println!(
        "blocks/s, one thread, batches of {BATCH}: reads one at a time / batched, writes one at a time / batched"
    );
    for round in 1..=ROUNDS {
        let t = Instant::now();
        for _ in 0..BATCHES_PER_ROUND {
            for (&lba, buf) in lbas.iter().zip(out.chunks_mut(4096)) {
                ns.read_block(lba, buf)?;
            }
        }
        let reads_one = per_s(t);
        let t = Instant::now();
        for _ in 0..BATCHES_PER_ROUND {
            ns.read_blocks(&lbas, &mut out, &mut results);
            results.drain(..).collect::<Result<Vec<()>, _>>()?;
        }
        let reads_batched = per_s(t);
        let t = Instant::now();
        for _ in 0..BATCHES_PER_ROUND {
            for &(lba, d) in &writes {
                ns.write_block(lba, d, false)?;
            }
        }
        let writes_one = per_s(t);
        let t = Instant::now();
        for _ in 0..BATCHES_PER_ROUND {
            ns.write_blocks(&writes, &mut results);
            results.drain(..).collect::<Result<Vec<()>, _>>()?;
        }
        let writes_batched = per_s(t);
        println!(
            "round {round}: reads {reads_one:.0} / {reads_batched:.0}, writes {writes_one:.0} / {writes_batched:.0}"
        );
    }
    Ok(())
}
