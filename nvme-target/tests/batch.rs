#![allow(clippy::unwrap_used)]
//! Batched writes: whole-block writes popped in one pass are applied together (one FTL
//! engine-lock hold). They keep submission order (the last write of a block wins, a read after
//! them sees them), a bad request in a batch fails alone, and sealing changes none of it.

mod common_ftl;
mod common_guest;

use std::sync::Arc;

use common_guest::{Guest, IOERR, OK, QUEUE_SIZE, serve};
use keys::{Backend, InstanceKey};
use nvme_target::vhost::worker::GuestMemory;
use nvme_target::{ActiveNamespace, Command, FtlNamespace, SECTOR_BYTES, Status};
use virtio_queue::mock::MockSplitQueue;
use vm_memory::{Bytes, GuestAddress};

const T_IN: u32 = 0;
const T_OUT: u32 = 1;
const T_FLUSH: u32 = 4;
const BLOCK: usize = 4096;
const SECTORS_PER_BLOCK: u64 = BLOCK as u64 / SECTOR_BYTES;

fn pattern(seed: u64, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (seed.wrapping_mul(31).wrapping_add(i as u64 * 7) % 251) as u8)
        .collect()
}

fn namespace(sealed: Option<&InstanceKey>) -> Arc<ActiveNamespace> {
    let ftl = common_ftl::small_ftl_sealed(sealed.map(|k| k.sealer(1)));
    ActiveNamespace::new(
        common_ftl::identity(false),
        Arc::new(FtlNamespace::new(ftl)),
    )
}

fn read_block(ns: &Arc<ActiveNamespace>, lba: u64) -> Vec<u8> {
    let mut q = ns.new_queue();
    let mut back = vec![0u8; BLOCK];
    let status = q.execute(Command::Read {
        sector: lba * SECTORS_PER_BLOCK,
        buf: &mut back,
    });
    assert_eq!(status, Status::Success);
    back
}

/// A pass of writes that overlap (block 0 three times, block 1 twice), a read in the middle and a
/// flush, all popped at once.
fn overlapping_writes_keep_submission_order(sealed: Option<&InstanceKey>) {
    let mem = GuestMemory::from_ranges(&[(GuestAddress(0), 16 << 20)]).unwrap();
    let q = MockSplitQueue::new(&mem, QUEUE_SIZE);
    let mut g = Guest::new(&mem);
    let ns = namespace(sealed);
    let (hdr, data, status) = (0x10_0000u64, 0x20_0000u64, 0x30_0000u64);
    let (a, b, c, d) = (
        pattern(1, BLOCK),
        pattern(2, 2 * BLOCK),
        pattern(3, BLOCK),
        pattern(4, BLOCK),
    );
    mem.write_slice(&a, GuestAddress(data)).unwrap();
    mem.write_slice(&b, GuestAddress(data + 0x1_0000)).unwrap();
    mem.write_slice(&c, GuestAddress(data + 0x2_0000)).unwrap();
    mem.write_slice(&d, GuestAddress(data + 0x3_0000)).unwrap();
    let write = |g: &mut Guest, i: u64, lba: u64, at: u64, len: u32| {
        g.header(hdr + 64 * i, T_OUT, lba * SECTORS_PER_BLOCK);
        g.chain(
            &q,
            &[
                (hdr + 64 * i, 16, false),
                (at, len, false),
                (status + i, 1, true),
            ],
            None,
        );
    };
    // 0: block 0 = a. 1: blocks 0-1 = b (two descriptors). 2: block 1 = c.
    write(&mut g, 0, 0, data, BLOCK as u32);
    g.header(hdr + 64, T_OUT, 0);
    g.chain(
        &q,
        &[
            (hdr + 64, 16, false),
            (data + 0x1_0000, 1024, false),
            (data + 0x1_0000 + 1024, 2 * BLOCK as u32 - 1024, false),
            (status + 1, 1, true),
        ],
        None,
    );
    write(&mut g, 2, 1, data + 0x2_0000, BLOCK as u32);
    // 3: a read of blocks 0-1 between the writes must see them: b's first block, then c.
    g.header(hdr + 192, T_IN, 0);
    g.chain(
        &q,
        &[
            (hdr + 192, 16, false),
            (data + 0x8_0000, 2 * BLOCK as u32, true),
            (status + 3, 1, true),
        ],
        None,
    );
    // 4: block 0 = d, then 5: a flush, then 6: block 1 = a.
    write(&mut g, 4, 0, data + 0x3_0000, BLOCK as u32);
    g.header(hdr + 320, T_FLUSH, 0);
    g.chain(&q, &[(hdr + 320, 16, false), (status + 5, 1, true)], None);
    write(&mut g, 6, 1, data, BLOCK as u32);

    let worker = serve(&mem, &q, &ns, true);

    let used_idx: u16 = mem.read_obj(GuestAddress(q.used_addr().0 + 2)).unwrap();
    assert_eq!(used_idx, g.chains, "every chain is returned");
    for i in 0..7 {
        assert_eq!(g.status(i), OK, "status of chain {i}");
    }
    let mut seen = vec![0u8; 2 * BLOCK];
    mem.read_slice(&mut seen, GuestAddress(data + 0x8_0000))
        .unwrap();
    assert_eq!(
        &seen[..BLOCK],
        &b[..BLOCK],
        "the read sees the second write"
    );
    assert_eq!(&seen[BLOCK..], &c[..], "and the third");
    assert_eq!(read_block(&ns, 0), d, "the last write of block 0 wins");
    assert_eq!(read_block(&ns, 1), a, "the last write of block 1 wins");
    assert_eq!(worker.counters.completed_requests, 7);
    assert_eq!(worker.counters.rejected_requests, 0);
}

#[test]
fn overlapping_writes_in_one_pass_keep_submission_order() {
    overlapping_writes_keep_submission_order(None);
}

#[test]
fn overlapping_sealed_writes_in_one_pass_keep_submission_order() {
    let key = InstanceKey::generate(Backend::AwsLc).unwrap();
    overlapping_writes_keep_submission_order(Some(&key));
}

/// Good writes around a write from outside guest memory and a write past the end: the two bad
/// ones get IOERR, the good ones land.
fn a_bad_request_fails_alone(sealed: Option<&InstanceKey>) {
    let mem = GuestMemory::from_ranges(&[(GuestAddress(0), 16 << 20)]).unwrap();
    let q = MockSplitQueue::new(&mem, QUEUE_SIZE);
    let mut g = Guest::new(&mem);
    let ns = namespace(sealed);
    let blocks = ns.capacity_bytes() / BLOCK as u64;
    let (hdr, data, status) = (0x10_0000u64, 0x20_0000u64, 0x30_0000u64);
    let (a, b) = (pattern(5, BLOCK), pattern(6, BLOCK));
    mem.write_slice(&a, GuestAddress(data)).unwrap();
    mem.write_slice(&b, GuestAddress(data + 0x1_0000)).unwrap();
    let chains: [(u64, u64); 5] = [
        (3, data),
        (4, 1 << 40),
        (blocks, data),
        (5, data + 0x1_0000),
        (blocks - 1, data),
    ];
    for (i, &(lba, at)) in chains.iter().enumerate() {
        let i = i as u64;
        g.header(hdr + 64 * i, T_OUT, lba * SECTORS_PER_BLOCK);
        g.chain(
            &q,
            &[
                (hdr + 64 * i, 16, false),
                (at, BLOCK as u32, false),
                (status + i, 1, true),
            ],
            None,
        );
    }

    let worker = serve(&mem, &q, &ns, true);

    let used_idx: u16 = mem.read_obj(GuestAddress(q.used_addr().0 + 2)).unwrap();
    assert_eq!(used_idx, g.chains, "every chain is returned");
    let want = [OK, IOERR, IOERR, OK, OK];
    for (i, &w) in want.iter().enumerate() {
        assert_eq!(g.status(i), w, "status of chain {i}");
    }
    for i in 0..5 {
        assert_eq!(
            g.used(&q, i).1,
            1,
            "used length of chain {i}: the status byte"
        );
    }
    assert_eq!(read_block(&ns, 3), a);
    assert_eq!(
        read_block(&ns, 4),
        vec![0u8; BLOCK],
        "the unreadable write left nothing"
    );
    assert_eq!(read_block(&ns, 5), b);
    assert_eq!(read_block(&ns, blocks - 1), a);
    assert_eq!(worker.counters.completed_requests, 5);
    // The unreadable buffer is refused by the worker; the range is refused by the controller.
    assert_eq!(worker.counters.rejected_requests, 1);
}

#[test]
fn a_bad_request_in_a_batch_fails_alone() {
    a_bad_request_fails_alone(None);
}

#[test]
fn a_bad_sealed_request_in_a_batch_fails_alone() {
    let key = InstanceKey::generate(Backend::AwsLc).unwrap();
    a_bad_request_fails_alone(Some(&key));
}

#[test]
fn more_writes_than_one_batch_holds_all_land() {
    let mem = GuestMemory::from_ranges(&[(GuestAddress(0), 16 << 20)]).unwrap();
    let q = MockSplitQueue::new(&mem, QUEUE_SIZE);
    let mut g = Guest::new(&mem);
    let ns = namespace(None);
    let (hdr, data, status) = (0x10_0000u64, 0x20_0000u64, 0x30_0000u64);
    // 80 chains of 3 descriptors (the ring holds 256): 40 blocks written twice, the second
    // round in reverse, so batches split in the middle of overlapping writes.
    let n = 40u64;
    for round in 0..2u64 {
        for k in 0..n {
            let lba = if round == 0 { k } else { n - 1 - k };
            let i = round * n + k;
            let at = data + i * BLOCK as u64;
            mem.write_slice(&pattern(lba * 10 + round, BLOCK), GuestAddress(at))
                .unwrap();
            g.header(hdr + 64 * i, T_OUT, lba * SECTORS_PER_BLOCK);
            g.chain(
                &q,
                &[
                    (hdr + 64 * i, 16, false),
                    (at, BLOCK as u32, false),
                    (status + i, 1, true),
                ],
                None,
            );
        }
    }
    let worker = serve(&mem, &q, &ns, true);
    for i in 0..(2 * n) as usize {
        assert_eq!(g.status(i), OK, "status of chain {i}");
    }
    for lba in 0..n {
        assert_eq!(
            read_block(&ns, lba),
            pattern(lba * 10 + 1, BLOCK),
            "block {lba}"
        );
    }
    assert_eq!(worker.counters.completed_requests, 2 * n);
}

#[test]
fn a_queue_batch_mixes_whole_block_and_partial_writes_in_order() {
    let ns = namespace(None);
    let mut q = ns.new_queue();
    let blocks = ns.capacity_bytes() / BLOCK as u64;
    let (a, half, c, bad) = (
        pattern(7, 2 * BLOCK),
        pattern(8, 1024),
        pattern(9, BLOCK),
        pattern(10, 100),
    );
    let writes: Vec<(u64, &[u8])> = vec![
        // Blocks 2-3 = a.
        (2 * SECTORS_PER_BLOCK, &a),
        // 1 KiB into block 3 (read-modify-write of what the first write left).
        (3 * SECTORS_PER_BLOCK + 2, &half),
        // Not whole sectors; past the end.
        (0, &bad),
        (blocks * SECTORS_PER_BLOCK, &c),
        // Block 2 again: the last write wins.
        (2 * SECTORS_PER_BLOCK, &c),
    ];
    let mut statuses = Vec::new();
    q.write_batch(&writes, &mut statuses);
    assert_eq!(
        statuses,
        vec![
            Status::Success,
            Status::Success,
            Status::InvalidField,
            Status::LbaOutOfRange,
            Status::Success
        ]
    );
    assert_eq!(read_block(&ns, 2), c);
    let mut want3 = a[BLOCK..].to_vec();
    want3[1024..2048].copy_from_slice(&half);
    assert_eq!(read_block(&ns, 3), want3);
}

#[test]
fn a_read_only_namespace_refuses_a_batch() {
    let ns = ActiveNamespace::new(
        common_ftl::identity(true),
        Arc::new(FtlNamespace::new(common_ftl::small_ftl())),
    );
    let mut q = ns.new_queue();
    let a = pattern(11, BLOCK);
    let mut statuses = Vec::new();
    q.write_batch(&[(0, &a), (8, &a)], &mut statuses);
    assert_eq!(statuses, vec![Status::WriteProtected; 2]);
    assert_eq!(read_block(&ns, 0), vec![0u8; BLOCK]);
}

fn write_block(ns: &Arc<ActiveNamespace>, lba: u64, data: &[u8]) {
    let mut q = ns.new_queue();
    let status = q.execute(Command::Write {
        sector: lba * SECTORS_PER_BLOCK,
        data,
        fua: false,
    });
    assert_eq!(status, Status::Success);
}

/// One pass of reads, run as batches (`IoQueue::read_batch`): more than one batch holds, a
/// two-block read over two descriptors, a partial (one sector) read served alone in its place,
/// a read past the end and a read into memory outside the guest (each IOERR, alone), a write in
/// the middle that the reads before it do not see and the reads after it do. Sealed or not.
fn reads_in_one_pass(sealed: Option<&InstanceKey>) {
    let mem = GuestMemory::from_ranges(&[(GuestAddress(0), 16 << 20)]).unwrap();
    let q = MockSplitQueue::new(&mem, QUEUE_SIZE);
    let mut g = Guest::new(&mem);
    let ns = namespace(sealed);
    let blocks = ns.capacity_bytes() / BLOCK as u64;
    for lba in 0..24 {
        write_block(&ns, lba, &pattern(lba, BLOCK));
    }
    let (hdr, data, status) = (0x10_0000u64, 0x20_0000u64, 0x30_0000u64);
    let newer = pattern(100, BLOCK);
    mem.write_slice(&newer, GuestAddress(data + 0x80_0000))
        .unwrap();
    // (kind, sector, data descriptors): 20 one-block reads of blocks 0..20, then the odd ones.
    type Chain = (u32, u64, Vec<(u64, u32)>);
    let mut chains: Vec<Chain> = (0..20u64)
        .map(|k| {
            let at = data + k * BLOCK as u64;
            (T_IN, k * SECTORS_PER_BLOCK, vec![(at, BLOCK as u32)])
        })
        .collect();
    let at = data + 0x40_0000;
    // 20: blocks 20-21 over two descriptors split mid-block.
    chains.push((
        T_IN,
        20 * SECTORS_PER_BLOCK,
        vec![(at, 1000), (at + 1000, 2 * BLOCK as u32 - 1000)],
    ));
    // 21: one sector of block 22, from its second sector.
    chains.push((T_IN, 22 * SECTORS_PER_BLOCK + 1, vec![(at + 0x1_0000, 512)]));
    // 22: past the end. 23: into memory outside the guest.
    chains.push((
        T_IN,
        blocks * SECTORS_PER_BLOCK,
        vec![(at + 0x2_0000, BLOCK as u32)],
    ));
    chains.push((T_IN, 23 * SECTORS_PER_BLOCK, vec![(1 << 40, BLOCK as u32)]));
    // 24: block 5 written with `newer`; 25: block 5 read again.
    chains.push((
        T_OUT,
        5 * SECTORS_PER_BLOCK,
        vec![(data + 0x80_0000, BLOCK as u32)],
    ));
    chains.push((
        T_IN,
        5 * SECTORS_PER_BLOCK,
        vec![(at + 0x3_0000, BLOCK as u32)],
    ));
    for (i, (kind, sector, descs)) in chains.iter().enumerate() {
        let i = i as u64;
        g.header(hdr + 64 * i, *kind, *sector);
        let mut chain = vec![(hdr + 64 * i, 16, false)];
        chain.extend(descs.iter().map(|&(a, l)| (a, l, *kind == T_IN)));
        chain.push((status + i, 1, true));
        g.chain(&q, &chain, None);
    }

    let worker = serve(&mem, &q, &ns, true);

    let used_idx: u16 = mem.read_obj(GuestAddress(q.used_addr().0 + 2)).unwrap();
    assert_eq!(used_idx, g.chains, "every chain is returned");
    let mut got = vec![0u8; BLOCK];
    for k in 0..20u64 {
        assert_eq!(g.status(k as usize), OK, "status of read {k}");
        assert_eq!(
            g.used(&q, k as u16).1,
            BLOCK as u32 + 1,
            "used length of read {k}"
        );
        mem.read_slice(&mut got, GuestAddress(data + k * BLOCK as u64))
            .unwrap();
        let want = pattern(k, BLOCK);
        assert!(got == want, "read {k} returned other bytes");
    }
    let mut two = vec![0u8; 2 * BLOCK];
    mem.read_slice(&mut two, GuestAddress(at)).unwrap();
    assert_eq!(g.status(20), OK);
    assert_eq!(g.used(&q, 20).1, 2 * BLOCK as u32 + 1);
    assert!(two[..BLOCK] == pattern(20, BLOCK)[..] && two[BLOCK..] == pattern(21, BLOCK)[..]);
    let mut sector = vec![0u8; 512];
    mem.read_slice(&mut sector, GuestAddress(at + 0x1_0000))
        .unwrap();
    assert_eq!(g.status(21), OK);
    assert!(sector == pattern(22, BLOCK)[512..1024], "the partial read");
    assert_eq!((g.status(22), g.status(23)), (IOERR, IOERR));
    assert_eq!((g.used(&q, 22).1, g.used(&q, 23).1), (1, 1));
    assert_eq!((g.status(24), g.status(25)), (OK, OK));
    mem.read_slice(&mut got, GuestAddress(at + 0x3_0000))
        .unwrap();
    assert!(got == newer, "a read after a write sees it");
    assert_eq!(worker.counters.completed_requests, chains.len() as u64);
    // The buffer outside the guest is refused by the worker; the range by the controller.
    assert_eq!(worker.counters.rejected_requests, 1);
}

#[test]
fn reads_in_one_pass_run_as_batches() {
    reads_in_one_pass(None);
}

#[test]
fn sealed_reads_in_one_pass_run_as_batches() {
    let key = InstanceKey::generate(Backend::AwsLc).unwrap();
    reads_in_one_pass(Some(&key));
}
