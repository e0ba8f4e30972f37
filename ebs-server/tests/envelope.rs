#![allow(clippy::unwrap_used)]
//! Envelope encryption end to end over UDP: the client seals each block with a key only it can
//! unwrap (its KEK), the server stores ciphertext and the seal, and every block the server hands
//! back that the client did not seal at that address is refused by name. The server side of
//! each test reaches into the same `VolumeStore`, which is what a compromised server can do.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;

use ebs_server::client::{ClientConfig, ClientError, RemoteVolume};
use ebs_server::proto::{BLOCK_BYTES, BLOCK_SEAL_BYTES};
use ebs_server::server::{EbsServer, ServerConfig};
use ebs_server::srd;
use ebs_server::volumes::{VolumeError, VolumeSpec, VolumeStore};
use ftl::nand::{FaultConfig, Geometry, MemNand, Nand};
use ftl::{Ftl, FtlConfig};
use keys::{Backend, Kek, VolumeKey};

const PATHS: usize = 2;
const CREDENTIAL: &[u8] = b"envelope test credential";

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

/// Creates `name` with a fresh data key wrapped by `kek` (None: a volume in the clear).
fn create(st: &VolumeStore, name: &str, kek: Option<&Kek>) {
    let wrapped_key = match kek {
        Some(kek) => {
            let key = VolumeKey::generate(Backend::AwsLc).unwrap();
            let wrapped = key.wrap(kek, name).unwrap().as_bytes().to_vec();
            key.destroy();
            wrapped
        }
        None => Vec::new(),
    };
    st.create(&VolumeSpec {
        name: name.into(),
        blocks: 64,
        credential: CREDENTIAL.to_vec(),
        multi_attach: true,
        wrapped_key,
    })
    .unwrap();
}

fn server(st: Arc<VolumeStore>) -> EbsServer {
    let config = ServerConfig {
        srd: srd::Config {
            path_count: PATHS,
            ..srd::Config::default()
        },
        ..ServerConfig::default()
    };
    let addrs = vec![SocketAddr::from((Ipv4Addr::LOCALHOST, 0)); PATHS];
    EbsServer::start(&addrs, st, config).unwrap()
}

fn connect(srv: &EbsServer, volume: &str, kek: Option<&Kek>) -> Result<RemoteVolume, ClientError> {
    let config = ClientConfig {
        srd: srd::Config {
            path_count: PATHS,
            ..srd::Config::default()
        },
        request_timeout_ms: 10_000,
        ..ClientConfig::default()
    };
    RemoteVolume::connect(srv.local_addrs(), volume, CREDENTIAL, kek, config)
}

fn block(lba: u64) -> Vec<u8> {
    let mut b: Vec<u8> = (0..BLOCK_BYTES).map(|i| (i % 199) as u8 ^ 0x3C).collect();
    b[..8].copy_from_slice(&lba.to_le_bytes());
    b
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn sealed_blocks_round_trip_and_the_server_holds_only_ciphertext() {
    let dir = tempfile::tempdir().unwrap();
    let st = store(dir.path());
    let kek = Kek::generate().unwrap();
    create(&st, "enc", Some(&kek));
    let srv = server(Arc::clone(&st));
    let mut c = connect(&srv, "enc", Some(&kek)).unwrap();
    assert!(c.is_sealed());
    let data: Vec<u8> = (0..8).flat_map(block).collect();
    c.write(0, &data, true).unwrap();
    assert_eq!(c.read(0, 8).unwrap(), data);

    // What the server stores: not the plaintext, and a seal beside each block.
    let server_side = st.attach("enc", CREDENTIAL).unwrap();
    let mut stored = vec![0u8; BLOCK_BYTES];
    for lba in 0..8 {
        let seal = server_side.read(lba, &mut stored).unwrap();
        assert_ne!(seal, [0; BLOCK_SEAL_BYTES], "block {lba} has no seal");
        assert!(
            !contains(&stored, &block(lba)[100..164]),
            "block {lba} is stored in the clear"
        );
    }
    // Trimmed and zeroed blocks read back as zeroes.
    c.trim(1, 1).unwrap();
    c.write_zeroes(2, 1, false).unwrap();
    let back = c.read(0, 4).unwrap();
    assert_eq!(&back[..BLOCK_BYTES], &block(0)[..]);
    assert!(back[BLOCK_BYTES..3 * BLOCK_BYTES].iter().all(|&b| b == 0));
    assert_eq!(&back[3 * BLOCK_BYTES..], &block(3)[..]);

    // A second client with the same KEK reads what the first wrote (the key is the volume's,
    // not the connection's).
    let mut d = connect(&srv, "enc", Some(&kek)).unwrap();
    assert_eq!(d.read(4, 1).unwrap(), block(4));
}

#[test]
fn a_tampered_moved_or_substituted_block_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let st = store(dir.path());
    let kek = Kek::generate().unwrap();
    create(&st, "enc", Some(&kek));
    let srv = server(Arc::clone(&st));
    let mut c = connect(&srv, "enc", Some(&kek)).unwrap();
    let data: Vec<u8> = (0..8).flat_map(block).collect();
    c.write(0, &data, true).unwrap();

    let server_side = st.attach("enc", CREDENTIAL).unwrap();
    let mut buf = vec![0u8; BLOCK_BYTES];
    // One flipped bit in block 3's ciphertext.
    let seal = server_side.read(3, &mut buf).unwrap();
    buf[777] ^= 0x04;
    server_side.write(3, &buf, &seal, false).unwrap();
    // Block 4's ciphertext and seal copied over block 5.
    let seal = server_side.read(4, &mut buf).unwrap();
    server_side.write(5, &buf, &seal, false).unwrap();
    // Bytes with no seal at block 6: they hold no client data, whatever they are.
    server_side
        .write(6, &vec![0xEE; BLOCK_BYTES], &[0; BLOCK_SEAL_BYTES], false)
        .unwrap();

    for lba in [3, 5] {
        match c.read(lba, 1) {
            Err(ClientError::Integrity { lba: got, detail }) => {
                assert_eq!(got, lba);
                assert!(detail.contains("does not verify"), "{detail}");
            }
            other => panic!("block {lba}: {other:?}"),
        }
    }
    // A read spanning a bad block fails as a whole; the good blocks still read alone.
    assert!(matches!(
        c.read(2, 3),
        Err(ClientError::Integrity { lba: 3, .. })
    ));
    assert!(c.read(6, 1).unwrap().iter().all(|&b| b == 0));
    assert_eq!(c.read(4, 1).unwrap(), block(4));
    assert_eq!(c.read(7, 1).unwrap(), block(7));

    // A client without the key of a sealed volume never gets there: and a client of a volume in
    // the clear refuses a block that carries a seal.
    create(&st, "clear", None);
    let clear = st.attach("clear", CREDENTIAL).unwrap();
    clear
        .write(0, &block(0), &[7; BLOCK_SEAL_BYTES], false)
        .unwrap();
    let mut p = connect(&srv, "clear", None).unwrap();
    assert!(!p.is_sealed());
    assert!(matches!(
        p.read(0, 1),
        Err(ClientError::Integrity { lba: 0, .. })
    ));
}

#[test]
fn envelope_mismatches_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let st = store(dir.path());
    let kek = Kek::generate().unwrap();
    create(&st, "enc", Some(&kek));
    create(&st, "clear", None);
    let srv = server(Arc::clone(&st));
    let envelope = |r: Result<RemoteVolume, ClientError>| match r {
        Err(ClientError::Envelope(message)) => message,
        Err(other) => panic!("{other}"),
        Ok(_) => panic!("connected"),
    };
    let m = envelope(connect(&srv, "enc", None));
    assert!(
        m.contains("sealed by its client") && m.contains("--kek-file"),
        "{m}"
    );
    let other = Kek::generate().unwrap();
    let m = envelope(connect(&srv, "enc", Some(&other)));
    assert!(m.contains("does not unwrap"), "{m}");
    let m = envelope(connect(&srv, "clear", Some(&kek)));
    assert!(m.contains("no wrapped data key"), "{m}");
    // The right KEK still attaches.
    connect(&srv, "enc", Some(&kek)).unwrap();
}

#[test]
fn the_server_refuses_bytes_that_are_not_a_wrapped_key() {
    let dir = tempfile::tempdir().unwrap();
    let st = store(dir.path());
    let e = st
        .create(&VolumeSpec {
            name: "bad".into(),
            blocks: 64,
            credential: CREDENTIAL.to_vec(),
            multi_attach: false,
            wrapped_key: vec![0x5A; 40],
        })
        .unwrap_err();
    assert!(matches!(e, VolumeError::BadWrappedKey(_)), "{e}");
    assert!(e.to_string().contains("wrapped data key"), "{e}");
}
