#![allow(clippy::unwrap_used)]
//! A hostile guest: hand-made descriptor chains in a real split virtqueue in guest memory, served
//! by the queue worker. Each malformed chain gets its status (or is returned with nothing written
//! when its status buffer is unusable) and the valid requests around them still complete.

mod common_ftl;
mod common_guest;

use common_guest::{Guest, IOERR, OK, QUEUE_SIZE, UNSUPP, UNTOUCHED, serve};
use nvme_target::vhost::worker::GuestMemory;
use virtio_queue::mock::MockSplitQueue;
use vm_memory::{Bytes, GuestAddress};

#[test]
fn malformed_chains_get_their_status_and_the_queue_keeps_serving() {
    let mem = GuestMemory::from_ranges(&[(GuestAddress(0), 16 << 20)]).unwrap();
    let q = MockSplitQueue::new(&mem, QUEUE_SIZE);
    let mut g = Guest::new(&mem);
    let (hdr, data, status) = (0x10_0000u64, 0x20_0000u64, 0x30_0000u64);
    let ns = common_ftl::namespace(false);
    let sectors = ns.capacity_bytes() / 512;
    let payload: Vec<u8> = (0..4096u32).map(|i| (i % 251) as u8).collect();
    mem.write_slice(&payload, GuestAddress(data)).unwrap();

    // 0: a valid write of block 0.
    g.header(hdr, 1, 0);
    g.chain(
        &q,
        &[(hdr, 16, false), (data, 4096, false), (status, 1, true)],
        None,
    );
    // 1: a read into a device-readable buffer.
    g.header(hdr + 64, 0, 0);
    g.chain(
        &q,
        &[
            (hdr + 64, 16, false),
            (data + 8192, 4096, false),
            (status + 1, 1, true),
        ],
        None,
    );
    // 2: an unknown request type.
    g.header(hdr + 128, 99, 0);
    g.chain(&q, &[(hdr + 128, 16, false), (status + 2, 1, true)], None);
    // 3: a status buffer the device may not write: returned with nothing written.
    g.header(hdr + 192, 4, 0);
    g.chain(&q, &[(hdr + 192, 16, false), (status + 3, 1, false)], None);
    // 4: a header of 8 bytes.
    g.chain(&q, &[(hdr + 256, 8, false), (status + 4, 1, true)], None);
    // 5: a read one block past the end.
    g.header(hdr + 320, 0, sectors);
    g.chain(
        &q,
        &[
            (hdr + 320, 16, false),
            (data + 8192, 4096, true),
            (status + 5, 1, true),
        ],
        None,
    );
    // 6: a sector whose byte offset overflows.
    g.header(hdr + 384, 0, u64::MAX / 2);
    g.chain(
        &q,
        &[
            (hdr + 384, 16, false),
            (data + 8192, 4096, true),
            (status + 6, 1, true),
        ],
        None,
    );
    // 7: a write from a buffer outside guest memory.
    g.header(hdr + 448, 1, 8);
    g.chain(
        &q,
        &[
            (hdr + 448, 16, false),
            (1 << 40, 4096, false),
            (status + 7, 1, true),
        ],
        None,
    );
    // 8: a header whose next index is outside the table: the chain ends at the header.
    g.header(hdr + 512, 0, 0);
    g.chain(
        &q,
        &[(hdr + 512, 16, false), (status + 8, 1, true)],
        Some(QUEUE_SIZE + 40),
    );
    // 9: a discard segment with the UNMAP flag (not allowed for discard).
    let mut seg = [0u8; 16];
    seg[8..12].copy_from_slice(&8u32.to_le_bytes());
    seg[12] = 1;
    mem.write_slice(&seg, GuestAddress(data + 65536)).unwrap();
    g.header(hdr + 576, 11, 0);
    g.chain(
        &q,
        &[
            (hdr + 576, 16, false),
            (data + 65536, 16, false),
            (status + 9, 1, true),
        ],
        None,
    );
    // 10: a write whose data is not a whole number of sectors.
    g.header(hdr + 640, 1, 0);
    g.chain(
        &q,
        &[
            (hdr + 640, 16, false),
            (data, 100, false),
            (status + 10, 1, true),
        ],
        None,
    );
    // 11: a valid read of block 0 (the write of chain 0 must be there).
    g.header(hdr + 704, 0, 0);
    g.chain(
        &q,
        &[
            (hdr + 704, 16, false),
            (data + 16384, 4096, true),
            (status + 11, 1, true),
        ],
        None,
    );
    // 12: GET_ID.
    g.header(hdr + 768, 8, 0);
    g.chain(
        &q,
        &[
            (hdr + 768, 16, false),
            (data + 32768, 20, true),
            (status + 12, 1, true),
        ],
        None,
    );

    let worker = serve(&mem, &q, &ns, true);

    let used_idx: u16 = mem.read_obj(GuestAddress(q.used_addr().0 + 2)).unwrap();
    assert_eq!(used_idx, g.chains, "every chain is returned to the guest");
    let want = [
        OK, IOERR, UNSUPP, UNTOUCHED, IOERR, IOERR, IOERR, IOERR, UNTOUCHED, UNSUPP, IOERR, OK, OK,
    ];
    for (i, &w) in want.iter().enumerate() {
        assert_eq!(g.status(i), w, "status of chain {i}");
    }
    // Used lengths: a returned-untouched chain reports 0 bytes; a read reports data + status.
    assert_eq!(g.used(&q, 3).1, 0);
    assert_eq!(g.used(&q, 8).1, 0);
    assert_eq!(g.used(&q, 11).1, 4097);
    assert_eq!(g.used(&q, 12).1, 21);
    let mut back = vec![0u8; 4096];
    mem.read_slice(&mut back, GuestAddress(data + 16384))
        .unwrap();
    assert_eq!(back, payload);
    let mut id = [0u8; 20];
    mem.read_slice(&mut id, GuestAddress(data + 32768)).unwrap();
    assert_eq!(&id[..14], b"FERRITE-TEST-1");
    assert!(id[14..].iter().all(|&b| b == 0));
    // Chains 1-4 and 6-10 break a rule; chain 5 is well formed and fails in the controller.
    assert_eq!(worker.counters.rejected_requests, 9);
}
