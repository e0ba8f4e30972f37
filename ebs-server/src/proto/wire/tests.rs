#![allow(clippy::unwrap_used)]

use proptest::prelude::*;

use super::*;

fn block(seed: u8) -> Vec<u8> {
    (0..BLOCK_BYTES)
        .map(|i| (i as u8).wrapping_mul(31) ^ seed)
        .collect()
}

fn every_kind() -> Vec<Message> {
    vec![
        Message::request(
            1,
            Request::Attach {
                volume: "vol-1.a_b".into(),
                credential: b"secret".to_vec(),
            },
        ),
        Message::request(2, Request::Detach),
        Message::request(
            3,
            Request::Read {
                lba: 7,
                blocks: 256,
            },
        ),
        Message::request(
            4,
            Request::Write {
                lba: u64::MAX,
                fua: true,
                seal: [0x11; BLOCK_SEAL_BYTES],
                data: block(1),
            },
        ),
        Message::request(
            5,
            Request::Write {
                lba: 0,
                fua: false,
                seal: [0; BLOCK_SEAL_BYTES],
                data: block(2),
            },
        ),
        Message::request(6, Request::Flush),
        Message::request(
            7,
            Request::Trim {
                lba: 9,
                blocks: TRIM_BLOCKS_MAX,
            },
        ),
        Message::request(
            8,
            Request::WriteZeroes {
                lba: 10,
                blocks: 3,
                fua: true,
            },
        ),
        Message::reply(
            9,
            Reply::Attached {
                volume_id: 42,
                blocks: 1 << 20,
                multi_attach: true,
                wrapped_key: vec![7; 60],
            },
        ),
        Message::reply(10, Reply::Done),
        Message::reply(
            11,
            Reply::Data {
                lba: 5,
                seal: core::array::from_fn(|i| i as u8),
                data: block(3),
            },
        ),
        Message::reply(
            12,
            Reply::Error {
                status: Status::OutOfRange,
                message: "blocks 5..9 past the end".into(),
            },
        ),
    ]
}

#[test]
fn every_kind_round_trips() {
    for m in every_kind() {
        let bytes = m.encode();
        assert!(bytes.len() <= MESSAGE_LEN_MAX);
        assert_eq!(Message::decode(&bytes).unwrap(), m);
        assert_eq!(request_id_of(&bytes), Some(m.request_id));
    }
}

/// The offsets docs/ebs-protocol.md gives.
#[test]
fn header_and_write_offsets_are_pinned() {
    let m = Message::request(
        0x1122_3344_5566_7788,
        Request::Write {
            lba: 0x0102_0304_0506_0708,
            fua: true,
            seal: core::array::from_fn(|i| 0x80 + i as u8),
            data: block(9),
        },
    );
    let b = m.encode();
    assert_eq!(b.len(), 24 + 8 + 28 + 4096);
    assert_eq!(&b[0..4], b"FEBP");
    assert_eq!(b[4], 2, "version");
    assert_eq!(b[5], 0x04, "kind WRITE");
    assert_eq!(u16::from_le_bytes([b[6], b[7]]), 1, "flags FUA");
    assert_eq!(
        u64::from_le_bytes(b[8..16].try_into().unwrap()),
        0x1122_3344_5566_7788
    );
    assert_eq!(
        u32::from_le_bytes(b[16..20].try_into().unwrap()),
        8 + 28 + 4096
    );
    let mut h = crc32fast::Hasher::new();
    h.update(&b[0..20]);
    h.update(&b[24..]);
    assert_eq!(
        u32::from_le_bytes(b[20..24].try_into().unwrap()),
        h.finalize()
    );
    assert_eq!(
        u64::from_le_bytes(b[24..32].try_into().unwrap()),
        0x0102_0304_0506_0708
    );
    let seal: Vec<u8> = (0..28).map(|i| 0x80 + i as u8).collect();
    assert_eq!(&b[32..60], &seal[..]);
    assert_eq!(&b[60..], &block(9)[..]);

    // DATA: the same body layout.
    let d = Message::reply(
        3,
        Reply::Data {
            lba: 0x0A0B,
            seal: [0x5C; BLOCK_SEAL_BYTES],
            data: block(4),
        },
    )
    .encode();
    assert_eq!(d[5], 0x83, "kind DATA");
    assert_eq!(u64::from_le_bytes(d[24..32].try_into().unwrap()), 0x0A0B);
    assert_eq!(&d[32..60], &[0x5C; 28]);
    assert_eq!(&d[60..], &block(4)[..]);
}

#[test]
fn attach_attached_read_and_error_offsets_are_pinned() {
    let b = Message::request(
        1,
        Request::Attach {
            volume: "v1".into(),
            credential: vec![0xAA, 0xBB, 0xCC],
        },
    )
    .encode();
    assert_eq!(b[5], 0x01);
    assert_eq!(&b[24..], &[2, 0, b'v', b'1', 3, 0, 0xAA, 0xBB, 0xCC]);

    let b = Message::request(
        1,
        Request::Read {
            lba: 0x10,
            blocks: 2,
        },
    )
    .encode();
    assert_eq!(b[5], 0x03);
    assert_eq!(&b[24..], &[0x10, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0]);

    let b = Message::reply(
        1,
        Reply::Attached {
            volume_id: 3,
            blocks: 0x100,
            multi_attach: true,
            wrapped_key: vec![9, 8],
        },
    )
    .encode();
    assert_eq!(b[5], 0x81);
    let body = &b[24..];
    assert_eq!(u64::from_le_bytes(body[0..8].try_into().unwrap()), 3);
    assert_eq!(u64::from_le_bytes(body[8..16].try_into().unwrap()), 0x100);
    assert_eq!(u32::from_le_bytes(body[16..20].try_into().unwrap()), 4096);
    assert_eq!(body[20], 1, "multi-attach");
    assert_eq!(body[21], 0, "reserved");
    assert_eq!(&body[22..], &[2, 0, 9, 8]);

    let b = Message::reply(
        1,
        Reply::Error {
            status: Status::BadCredential,
            message: "no".into(),
        },
    )
    .encode();
    assert_eq!(b[5], 0x84);
    assert_eq!(&b[24..], &[6, 0, 2, 0, b'n', b'o']);
    assert_eq!(Message::reply(1, Reply::Done).encode()[5], 0x82);
    assert_eq!(Message::request(1, Request::Flush).encode()[5], 0x05);
    assert_eq!(Message::request(1, Request::Detach).encode()[5], 0x02);
}

/// Re-signs bytes whose header or body a test changed, so the check under test is reached.
fn resign(b: &mut [u8]) {
    let mut h = crc32fast::Hasher::new();
    h.update(&b[0..20]);
    h.update(&b[24..]);
    let crc = h.finalize();
    b[20..24].copy_from_slice(&crc.to_le_bytes());
}

#[test]
fn each_rule_has_its_error() {
    let good = Message::request(1, Request::Read { lba: 1, blocks: 1 }).encode();
    assert!(matches!(
        Message::decode(&good[..10]),
        Err(WireError::Truncated {
            len: 10,
            needed: 24
        })
    ));
    let mut b = good.clone();
    b[0] = b'X';
    assert!(matches!(
        Message::decode(&b),
        Err(WireError::BadMagic { .. })
    ));
    let mut b = good.clone();
    b[4] = 1;
    assert_eq!(Message::decode(&b), Err(WireError::BadVersion { found: 1 }));
    let mut b = good.clone();
    b.push(0);
    assert!(matches!(
        Message::decode(&b),
        Err(WireError::BodyLength { .. })
    ));
    let mut b = good.clone();
    b[30] ^= 1;
    assert!(matches!(Message::decode(&b), Err(WireError::BadCrc { .. })));
    let mut b = good.clone();
    b[5] = 0x55;
    resign(&mut b);
    assert_eq!(
        Message::decode(&b),
        Err(WireError::UnknownKind { kind: 0x55 })
    );
    let mut b = good.clone();
    b[6] = 1; // FUA on a READ
    resign(&mut b);
    assert!(matches!(
        Message::decode(&b),
        Err(WireError::BadFlags { kind: 3, flags: 1 })
    ));
    let mut b = good.clone();
    b[32] = 0; // zero blocks
    resign(&mut b);
    assert!(matches!(
        Message::decode(&b),
        Err(WireError::Field {
            field: "blocks",
            ..
        })
    ));
    let mut b = good.clone();
    b[32] = 1;
    b[33] = 1; // 257 blocks
    resign(&mut b);
    assert!(matches!(
        Message::decode(&b),
        Err(WireError::Field {
            field: "blocks",
            ..
        })
    ));
    // A WRITE whose block is short.
    let mut w = Message::request(
        1,
        Request::Write {
            lba: 0,
            fua: false,
            seal: [0; BLOCK_SEAL_BYTES],
            data: block(0),
        },
    )
    .encode();
    w.truncate(w.len() - 1);
    w[16..20].copy_from_slice(&((8 + 28 + 4095) as u32).to_le_bytes());
    resign(&mut w);
    assert!(matches!(
        Message::decode(&w),
        Err(WireError::BodySize {
            kind: 4,
            expected: 4132,
            actual: 4131
        })
    ));
    // A body too large for any kind.
    let mut big = good[..24].to_vec();
    big.extend(std::iter::repeat_n(0u8, BODY_LEN_MAX + 1));
    big[16..20].copy_from_slice(&((BODY_LEN_MAX + 1) as u32).to_le_bytes());
    resign(&mut big);
    assert!(matches!(
        Message::decode(&big),
        Err(WireError::BodyLength { .. })
    ));
}

#[test]
fn attach_fields_are_checked() {
    let attach = |name: &[u8], cred: &[u8]| {
        let mut body = Vec::new();
        body.extend_from_slice(&(name.len() as u16).to_le_bytes());
        body.extend_from_slice(name);
        body.extend_from_slice(&(cred.len() as u16).to_le_bytes());
        body.extend_from_slice(cred);
        let mut b = Message::request(1, Request::Flush).encode();
        b[5] = 0x01;
        b[16..20].copy_from_slice(&(body.len() as u32).to_le_bytes());
        b.extend_from_slice(&body);
        resign(&mut b);
        Message::decode(&b)
    };
    assert!(attach(b"ok-name", b"c").is_ok());
    for (name, cred, what) in [
        (&b""[..], &b"c"[..], "volume name"),
        (&b"a/b"[..], &b"c"[..], "volume name"),
        (&b".hidden"[..], &b"c"[..], "volume name"),
        (&[0xFF, 0xFE][..], &b"c"[..], "volume name"),
        (&[b'a'; 65][..], &b"c"[..], "volume name"),
        (&b"v"[..], &b""[..], "credential"),
        (&b"v"[..], &[1u8; 257][..], "credential"),
    ] {
        match attach(name, cred) {
            Err(WireError::Field { field, .. }) => assert_eq!(field, what, "{name:?}"),
            other => panic!("{name:?}/{} bytes: {other:?}", cred.len()),
        }
    }
}

#[test]
fn long_error_messages_are_cut_at_a_character_boundary() {
    let m = Message::reply(
        1,
        Reply::Error {
            status: Status::Internal,
            message: "é".repeat(200),
        },
    );
    match Message::decode(&m.encode()).unwrap().body {
        Body::Reply(Reply::Error { message, .. }) => {
            assert!(message.len() <= ERROR_MESSAGE_MAX);
            assert_eq!(message, "é".repeat(128));
        }
        other => panic!("{other:?}"),
    }
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let _ = Message::decode(&bytes);
        let _ = request_id_of(&bytes);
    }

    #[test]
    fn arbitrary_bodies_behind_a_valid_header_never_panic(
        kind in any::<u8>(),
        flags in 0u16..4,
        body in proptest::collection::vec(any::<u8>(), 0..300),
    ) {
        let mut b = Message::request(1, Request::Flush).encode();
        b[5] = kind;
        b[6..8].copy_from_slice(&flags.to_le_bytes());
        b[16..20].copy_from_slice(&(body.len() as u32).to_le_bytes());
        b.extend_from_slice(&body);
        resign(&mut b);
        if let Ok(m) = Message::decode(&b) {
            // Whatever parses encodes back to the same bytes.
            prop_assert_eq!(m.encode(), b);
        }
    }

    #[test]
    fn any_flipped_bit_is_rejected(which in 0usize..12, at in any::<prop::sample::Index>(), bit in 0u8..8) {
        let m = &every_kind()[which];
        let mut b = m.encode();
        let i = at.index(b.len());
        b[i] ^= 1 << bit;
        prop_assert!(Message::decode(&b).is_err(), "flip at {} accepted", i);
    }
}

/// A WRITE and a DATA reply of one block each travel in one datagram with the transport's
/// default limit (docs/ebs-srd.md, "One datagram per block"), and in three with the 1500-MTU one.
#[test]
fn a_block_message_is_one_datagram_by_default() {
    use crate::srd::config::{PAYLOAD_LEN_DEFAULT, PAYLOAD_LEN_MTU_1500};
    use crate::srd::{Config, Connection};
    assert_eq!(MESSAGE_LEN_MAX, 4156);
    const { assert!(MESSAGE_LEN_MAX <= PAYLOAD_LEN_DEFAULT) };
    let write = Message::request(
        9,
        Request::Write {
            lba: 3,
            fua: false,
            seal: [7; BLOCK_SEAL_BYTES],
            data: block(1),
        },
    )
    .encode();
    let reply = Message::reply(
        9,
        Reply::Data {
            lba: 3,
            seal: [7; BLOCK_SEAL_BYTES],
            data: block(2),
        },
    )
    .encode();
    for (payload_len_max, datagrams) in [(PAYLOAD_LEN_DEFAULT, 1), (PAYLOAD_LEN_MTU_1500, 3)] {
        for message in [&write, &reply] {
            let config = Config {
                payload_len_max,
                ..Config::default()
            };
            let mut connection = Connection::new(config, 1).unwrap();
            connection.send_message(message.clone()).unwrap();
            let sent = std::iter::from_fn(|| connection.poll_transmit(0)).count();
            assert_eq!(sent, datagrams, "payload_len_max {payload_len_max}");
        }
    }
}
