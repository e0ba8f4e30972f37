#![allow(clippy::unwrap_used)]
//! The volume server's sessions over a real FTL: attach rules, block I/O through the protocol's
//! bytes, volumes that never see each other's blocks, and a restart that keeps data and catalog.

use std::path::Path;
use std::sync::Arc;

use ebs_server::proto::{BLOCK_BYTES, BLOCK_SEAL_BYTES, Body, Message, Reply, Request, Status};
use ebs_server::server::Session;
use ebs_server::volumes::{VolumeError, VolumeSpec, VolumeStore};
use ftl::nand::{FaultConfig, Geometry, MemNand, Nand};
use ftl::{Ftl, FtlConfig};

const EXTENT_BLOCKS: u64 = 64;

fn devices() -> Vec<Arc<MemNand>> {
    let g = Geometry {
        channels: 1,
        dies_per_channel: 2,
        planes_per_die: 1,
        blocks_per_plane: 16,
        pages_per_block: 32,
        page_size: 4096,
        oob_size: 64,
    };
    (0..2)
        .map(|i| Arc::new(MemNand::new(g, FaultConfig::none().for_device(i), None).unwrap()))
        .collect()
}

fn dyn_devs(d: &[Arc<MemNand>]) -> Vec<Arc<dyn Nand>> {
    d.iter().map(|x| x.clone() as Arc<dyn Nand>).collect()
}

fn store(dir: &Path, devs: &[Arc<MemNand>], fresh: bool) -> Arc<VolumeStore> {
    let ftl = if fresh {
        Ftl::format(dyn_devs(devs), FtlConfig::default()).unwrap()
    } else {
        Ftl::open(dyn_devs(devs), FtlConfig::default()).unwrap().0
    };
    Arc::new(VolumeStore::open(ftl, &dir.join("volumes.cat"), EXTENT_BLOCKS).unwrap())
}

fn spec(name: &str, blocks: u64, multi_attach: bool) -> VolumeSpec {
    VolumeSpec {
        name: name.into(),
        blocks,
        credential: format!("cred-{name}").into_bytes(),
        multi_attach,
        wrapped_key: wrapped_key(name),
    }
}

/// A real wrapped data key for `name` (the server only checks its format).
fn wrapped_key(name: &str) -> Vec<u8> {
    let kek = keys::Kek::generate().unwrap();
    let key = keys::VolumeKey::generate(keys::Backend::AwsLc).unwrap();
    key.wrap(&kek, name).unwrap().as_bytes().to_vec()
}

/// The seal the tests write with block `lba` (the server stores it without looking).
fn seal(lba: u64) -> [u8; BLOCK_SEAL_BYTES] {
    let mut s = [0xC5; BLOCK_SEAL_BYTES];
    s[..8].copy_from_slice(&lba.to_le_bytes());
    s
}

fn block(lba: u64, tag: u8) -> Vec<u8> {
    let mut b = vec![tag; BLOCK_BYTES];
    b[..8].copy_from_slice(&lba.to_le_bytes());
    b
}

fn send(s: &mut Session, id: u64, r: Request) -> Vec<Reply> {
    s.handle(&Message::request(id, r).encode())
        .into_iter()
        .map(|m| {
            // Replies travel as bytes too: they must parse.
            let m = Message::decode(&m.encode()).unwrap();
            assert_eq!(m.request_id, id);
            match m.body {
                Body::Reply(r) => r,
                Body::Request(r) => panic!("request {r:?} from the server"),
            }
        })
        .collect()
}

fn status_of(replies: &[Reply]) -> Option<Status> {
    match replies {
        [Reply::Error { status, .. }] => Some(*status),
        _ => None,
    }
}

fn attach(s: &mut Session, name: &str) -> Vec<Reply> {
    send(
        s,
        1,
        Request::Attach {
            volume: name.into(),
            credential: format!("cred-{name}").into_bytes(),
        },
    )
}

fn read1(s: &mut Session, id: u64, lba: u64) -> Vec<Reply> {
    send(s, id, Request::Read { lba, blocks: 1 })
}

fn write1(s: &mut Session, id: u64, lba: u64, fua: bool, data: Vec<u8>) -> Vec<Reply> {
    let seal = seal(lba);
    send(
        s,
        id,
        Request::Write {
            lba,
            fua,
            seal,
            data,
        },
    )
}

#[test]
fn attach_rules_and_errors() {
    let dir = tempfile::tempdir().unwrap();
    let devs = devices();
    let st = store(dir.path(), &devs, true);
    st.create(&spec("solo", 100, false)).unwrap();
    st.create(&spec("shared", 10, true)).unwrap();

    let mut a = Session::new(st.clone());
    // Nothing but ATTACH first.
    assert_eq!(status_of(&read1(&mut a, 2, 0)), Some(Status::NotAttached));
    let wrong = Request::Attach {
        volume: "solo".into(),
        credential: b"wrong".to_vec(),
    };
    assert_eq!(
        status_of(&send(&mut a, 3, wrong)),
        Some(Status::BadCredential)
    );
    let missing = Request::Attach {
        volume: "nope".into(),
        credential: b"x".to_vec(),
    };
    assert_eq!(
        status_of(&send(&mut a, 4, missing)),
        Some(Status::NoSuchVolume)
    );
    match attach(&mut a, "solo").as_slice() {
        [
            Reply::Attached {
                blocks,
                multi_attach,
                wrapped_key,
                ..
            },
        ] => {
            assert_eq!(*blocks, 100);
            assert!(!multi_attach);
            assert_eq!(wrapped_key.len(), keys::WRAPPED_KEY_BYTES);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        status_of(&attach(&mut a, "shared")),
        Some(Status::AlreadyAttached)
    );
    // A second client of a single-attach volume is refused until the first detaches.
    let mut b = Session::new(st.clone());
    assert_eq!(status_of(&attach(&mut b, "solo")), Some(Status::VolumeBusy));
    assert!(matches!(st.delete("solo"), Err(VolumeError::Busy(_))));
    assert_eq!(send(&mut a, 5, Request::Detach), vec![Reply::Done]);
    assert!(matches!(
        attach(&mut b, "solo").as_slice(),
        [Reply::Attached { .. }]
    ));
    // A dropped session (a client that went away) releases its volume too.
    drop(b);
    assert!(matches!(
        attach(&mut a, "solo").as_slice(),
        [Reply::Attached { .. }]
    ));
    // Multi-attach volumes take several sessions.
    let mut c = Session::new(st.clone());
    let mut d = Session::new(st.clone());
    assert!(matches!(
        attach(&mut c, "shared").as_slice(),
        [Reply::Attached { .. }]
    ));
    assert!(matches!(
        attach(&mut d, "shared").as_slice(),
        [Reply::Attached { .. }]
    ));
    let listed = st.list();
    let shared = listed.iter().find(|v| v.name == "shared").unwrap();
    assert_eq!(shared.attachments, 2);

    // Out of range, overflowing and malformed requests get their status; the session goes on.
    assert_eq!(status_of(&read1(&mut a, 6, 100)), Some(Status::OutOfRange));
    let overflow = Request::Read {
        lba: u64::MAX,
        blocks: 2,
    };
    assert_eq!(
        status_of(&send(&mut a, 7, overflow)),
        Some(Status::OutOfRange)
    );
    let past_end = Request::Trim { lba: 99, blocks: 2 };
    assert_eq!(
        status_of(&send(&mut a, 8, past_end)),
        Some(Status::OutOfRange)
    );
    let mut bad = Message::request(9, Request::Flush).encode();
    bad[21] ^= 1; // a broken CRC
    match a.handle(&bad).as_slice() {
        [m] => {
            assert_eq!(m.request_id, 9);
            assert!(matches!(
                m.body,
                Body::Reply(Reply::Error {
                    status: Status::Malformed,
                    ..
                })
            ));
        }
        other => panic!("{other:?}"),
    }
    assert!(a.handle(b"garbage").is_empty(), "no request id: dropped");
    assert_eq!(a.counters().dropped, 1);
    assert_eq!(a.counters().malformed, 1);
    // A reply sent to the server is malformed too.
    let reply = Message::reply(11, Reply::Done).encode();
    assert_eq!(a.handle(&reply).len(), 1);
    assert_eq!(send(&mut a, 10, Request::Flush), vec![Reply::Done]);
}

#[test]
fn io_round_trip_volumes_are_isolated_and_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let devs = devices();
    let st = store(dir.path(), &devs, true);
    // Sizes that do not end on an extent, so runs cross extents.
    st.create(&spec("a", 150, false)).unwrap();
    st.create(&spec("b", 70, false)).unwrap();
    let mut a = Session::new(st.clone());
    let mut b = Session::new(st.clone());
    attach(&mut a, "a");
    attach(&mut b, "b");
    for lba in 0..150 {
        let replies = write1(&mut a, 100 + lba, lba, lba % 50 == 0, block(lba, 0xA0));
        assert_eq!(replies, vec![Reply::Done]);
    }
    for lba in 0..70 {
        let replies = write1(&mut b, 300 + lba, lba, false, block(lba, 0xB0));
        assert_eq!(replies, vec![Reply::Done]);
    }
    // A READ of many blocks comes back as one DATA per block, each with its address.
    let replies = send(
        &mut a,
        500,
        Request::Read {
            lba: 60,
            blocks: 10,
        },
    );
    assert_eq!(replies.len(), 10);
    for (i, r) in replies.iter().enumerate() {
        let lba = 60 + i as u64;
        let want = Reply::Data {
            lba,
            seal: seal(lba),
            data: block(lba, 0xA0),
        };
        assert_eq!(r, &want);
    }
    // Trim and write-zeroes across an extent boundary (64) read back zeroes; neighbours stay.
    let trim = Request::Trim { lba: 60, blocks: 8 };
    assert_eq!(send(&mut a, 501, trim), vec![Reply::Done]);
    let zeroes = Request::WriteZeroes {
        lba: 126,
        blocks: 4,
        fua: true,
    };
    assert_eq!(send(&mut a, 502, zeroes), vec![Reply::Done]);
    let zero = vec![0u8; BLOCK_BYTES];
    for (lba, expect_zero) in [
        (59, false),
        (60, true),
        (67, true),
        (68, false),
        (125, false),
        (126, true),
        (129, true),
        (130, false),
    ] {
        let (data, seal) = if expect_zero {
            (zero.clone(), [0; BLOCK_SEAL_BYTES])
        } else {
            (block(lba, 0xA0), seal(lba))
        };
        let got = read1(&mut a, 600 + lba, lba);
        assert_eq!(got, vec![Reply::Data { lba, seal, data }], "lba {lba}");
    }
    assert_eq!(send(&mut b, 700, Request::Flush), vec![Reply::Done]);
    assert_eq!(send(&mut a, 701, Request::Flush), vec![Reply::Done]);

    // Clean restart: the catalog and the data come back.
    drop(a);
    drop(b);
    Arc::try_unwrap(st).unwrap().close().unwrap();
    let st = store(dir.path(), &devs, false);
    assert_eq!(st.list().len(), 2);
    let mut b = Session::new(st.clone());
    attach(&mut b, "b");
    for lba in [0, 33, 64, 69] {
        let data = block(lba, 0xB0);
        let seal = seal(lba);
        assert_eq!(
            read1(&mut b, 800 + lba, lba),
            vec![Reply::Data { lba, seal, data }]
        );
    }
    drop(b);

    // A deleted volume's extents go to the next volume trimmed: it reads zeroes, not "a"'s data.
    st.delete("a").unwrap();
    st.create(&spec("c", 150, false)).unwrap();
    let mut c = Session::new(st.clone());
    attach(&mut c, "c");
    for lba in [0, 59, 100, 149] {
        let data = zero.clone();
        let seal = [0; BLOCK_SEAL_BYTES];
        assert_eq!(
            read1(&mut c, 900 + lba, lba),
            vec![Reply::Data { lba, seal, data }]
        );
    }
}

#[test]
fn create_resize_delete_and_space() {
    let dir = tempfile::tempdir().unwrap();
    let devs = devices();
    let st = store(dir.path(), &devs, true);
    let total = st.free_blocks();
    assert!(
        total >= 4 * EXTENT_BLOCKS,
        "test geometry holds {total} blocks"
    );
    let v = st.create(&spec("v", 10, false)).unwrap();
    assert_eq!(v.blocks, 10);
    assert_eq!(st.free_blocks(), total - EXTENT_BLOCKS);
    let again = st.create(&spec("v", 10, false));
    assert!(matches!(again, Err(VolumeError::Exists(_))));
    let bad_name = st.create(&spec("bad/name", 10, false));
    assert!(matches!(bad_name, Err(VolumeError::BadName { .. })));
    let empty = st.create(&spec("zero", 0, false));
    assert!(matches!(empty, Err(VolumeError::BadSize(_))));
    let huge = st.create(&spec("huge", total + 1, false));
    assert!(matches!(huge, Err(VolumeError::NoSpace(_))));
    assert!(matches!(st.resize("v", 5), Err(VolumeError::BadSize(_))));
    let missing = st.resize("nope", 5);
    assert!(matches!(missing, Err(VolumeError::NoSuchVolume(_))));

    // Grow while attached: the attachment keeps its size, the next attach sees the new one and
    // the grown blocks read zeroes.
    let mut s = Session::new(st.clone());
    attach(&mut s, "v");
    assert_eq!(write1(&mut s, 2, 9, true, block(9, 1)), vec![Reply::Done]);
    let grown = st.resize("v", 3 * EXTENT_BLOCKS).unwrap();
    assert_eq!(grown.blocks, 3 * EXTENT_BLOCKS);
    assert_eq!(status_of(&read1(&mut s, 3, 10)), Some(Status::OutOfRange));
    send(&mut s, 4, Request::Detach);
    match attach(&mut s, "v").as_slice() {
        [Reply::Attached { blocks, .. }] => assert_eq!(*blocks, 3 * EXTENT_BLOCKS),
        other => panic!("{other:?}"),
    }
    let data = block(9, 1);
    let want = Reply::Data {
        lba: 9,
        seal: seal(9),
        data,
    };
    assert_eq!(read1(&mut s, 5, 9), vec![want]);
    let last = 3 * EXTENT_BLOCKS - 1;
    let data = vec![0; BLOCK_BYTES];
    assert_eq!(
        read1(&mut s, 6, last),
        vec![Reply::Data {
            lba: last,
            seal: [0; BLOCK_SEAL_BYTES],
            data
        }]
    );
    drop(s);
    st.delete("v").unwrap();
    assert_eq!(st.free_blocks(), total);
    assert!(st.list().is_empty());
    // Ids are never reused.
    let w = st.create(&spec("w", 1, false)).unwrap();
    assert!(w.id > v.id);
}
