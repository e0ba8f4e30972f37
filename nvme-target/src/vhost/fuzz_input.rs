//! The cargo-fuzz harness of the request parser (fuzz/fuzz_targets/vhost_request.rs), here so that
//! `cargo test` replays its seed corpus through the same code (tests/fuzz_corpus.rs) and it cannot
//! rot. From the fuzz bytes it builds guest memory and a descriptor chain, parses the chain as
//! the queue worker does (header read from guest memory, discard/write-zeroes segments gathered
//! and parsed), and checks what a parsed request promises.
//!
//! Input layout: byte 0 is the number of descriptors; each descriptor is 13 bytes (address u64
//! LE, length u32 LE, flags: bit 0 device-writable); every byte after them is the guest memory's
//! content from address 0 (`GUEST_MEMORY_BYTES` at most). Missing bytes end the chain early.

use vm_memory::{Bytes, GuestAddress};

use super::request::{
    self, DISCARD_SEGMENT_BYTES, Desc, MAX_DATA_SEGMENTS, MAX_DISCARD_SEGMENTS, Rejected, Request,
    RequestKind,
};
use super::worker::{GuestMemory, read_header};
use crate::queue::{MAX_TRANSFER_BYTES, SECTOR_BYTES};

/// Guest memory of the harness: one region at address 0.
pub const GUEST_MEMORY_BYTES: usize = 64 * 1024;
/// Bytes of one descriptor in the input.
pub const DESC_INPUT_BYTES: usize = 13;

/// What one input came to, for the corpus test (which wants both outcomes among its seeds).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Parsed(RequestKind),
    Rejected(Rejected),
}

/// The descriptors an input describes, and the guest memory content after them.
pub fn split_input(data: &[u8]) -> (Vec<Desc>, &[u8]) {
    let Some((&count, mut rest)) = data.split_first() else {
        return (Vec::new(), data);
    };
    let mut descs = Vec::with_capacity(usize::from(count));
    for _ in 0..count {
        let Some((raw, tail)) = rest.split_first_chunk::<DESC_INPUT_BYTES>() else {
            break;
        };
        let mut addr = [0u8; 8];
        addr.copy_from_slice(&raw[0..8]);
        let mut len = [0u8; 4];
        len.copy_from_slice(&raw[8..12]);
        descs.push(Desc {
            addr: u64::from_le_bytes(addr),
            len: u32::from_le_bytes(len),
            device_writable: raw[12] & 1 != 0,
        });
        rest = tail;
    }
    (descs, rest)
}

/// Runs one fuzz input. Panics only if the parser breaks a promise (that is the bug to find).
pub fn run(data: &[u8]) -> Outcome {
    let (descs, content) = split_input(data);
    let memory = GuestMemory::from_ranges(&[(GuestAddress(0), GUEST_MEMORY_BYTES)])
        .expect("a fixed, valid region");
    let n = content.len().min(GUEST_MEMORY_BYTES);
    memory
        .write_slice(&content[..n], GuestAddress(0))
        .expect("inside the region");
    match request::parse(&descs, |addr| read_header(&memory, addr)) {
        Ok(r) => {
            check_request(&descs, &r);
            if matches!(r.kind, RequestKind::Discard | RequestKind::WriteZeroes) {
                check_segments(&memory, &r);
            }
            Outcome::Parsed(r.kind)
        }
        Err(rejected) => {
            // A status address is given back only when the status descriptor itself is sound.
            if let Some(addr) = rejected.status_addr {
                let last = descs.last().expect("a status address needs a descriptor");
                assert!(last.device_writable && last.len > 0 && last.addr == addr);
            }
            Outcome::Rejected(rejected)
        }
    }
}

fn check_request(descs: &[Desc], r: &Request) {
    let last = descs
        .last()
        .expect("a parsed chain has a status descriptor");
    assert_eq!(r.status_addr, last.addr);
    assert!(last.device_writable && last.len > 0);
    assert!(r.data.len() <= MAX_DATA_SEGMENTS);
    assert_eq!(r.data.as_slice(), &descs[1..descs.len() - 1]);
    let total: u64 = r.data.iter().map(|d| u64::from(d.len)).sum();
    assert_eq!(u64::from(r.data_len), total.min(u64::from(u32::MAX)));
    let device_writes = matches!(r.kind, RequestKind::Read | RequestKind::GetId);
    if r.kind != RequestKind::Flush {
        assert!(r.data.iter().all(|d| d.device_writable == device_writes));
        assert!(r.data_len > 0);
    }
    if matches!(r.kind, RequestKind::Read | RequestKind::Write) {
        assert!(total <= MAX_TRANSFER_BYTES as u64 && total.is_multiple_of(SECTOR_BYTES));
        assert!(
            r.sector
                .checked_mul(SECTOR_BYTES)
                .and_then(|s| s.checked_add(total))
                .is_some()
        );
    }
}

/// Gathers the segments from guest memory as the worker does and parses them.
fn check_segments(memory: &GuestMemory, r: &Request) {
    let limit = MAX_DISCARD_SEGMENTS * DISCARD_SEGMENT_BYTES as usize;
    assert!(r.data_len as usize <= limit);
    let mut payload = Vec::with_capacity(r.data_len as usize);
    for d in &r.data {
        let mut buf = vec![0u8; d.len as usize];
        if memory.read_slice(&mut buf, GuestAddress(d.addr)).is_err() {
            return;
        }
        payload.extend_from_slice(&buf);
    }
    let unmap_allowed = r.kind == RequestKind::WriteZeroes;
    if let Ok(ranges) = request::parse_segments(&payload, unmap_allowed) {
        assert_eq!(ranges.len() * DISCARD_SEGMENT_BYTES as usize, payload.len());
    }
}
