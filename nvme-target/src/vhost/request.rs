//! Parsing a guest's virtio-blk request: the guest is hostile.
//!
//! A request is a descriptor chain: a 16-byte device-readable header (type, reserved, sector),
//! data descriptors, and a device-writable status byte last. Every rule a chain can break has
//! its own error variant, all arithmetic is checked, and nothing here panics or allocates more
//! than `MAX_DATA_SEGMENTS` entries whatever the guest sends. The parser sees plain descriptor
//! values and a header-reading closure, not guest memory, so it is unit-tested and fuzzed alone.

use thiserror::Error;
use virtio_bindings::virtio_blk::{
    VIRTIO_BLK_S_IOERR, VIRTIO_BLK_S_UNSUPP, VIRTIO_BLK_T_DISCARD, VIRTIO_BLK_T_FLUSH,
    VIRTIO_BLK_T_GET_ID, VIRTIO_BLK_T_IN, VIRTIO_BLK_T_OUT, VIRTIO_BLK_T_WRITE_ZEROES,
    VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP,
};

use crate::queue::{MAX_TRANSFER_BYTES, SECTOR_BYTES};

/// Bytes of the request header (`struct virtio_blk_outhdr`).
pub const HEADER_BYTES: u32 = 16;
/// Bytes of one discard / write-zeroes segment (`struct virtio_blk_discard_write_zeroes`).
pub const DISCARD_SEGMENT_BYTES: u32 = 16;
/// Data descriptors of one request at most (the SEG_MAX the device advertises).
pub const MAX_DATA_SEGMENTS: usize = 128;
/// Segments of one discard or write-zeroes request at most (max_discard_seg).
pub const MAX_DISCARD_SEGMENTS: usize = 32;
/// Bytes of a GET_ID reply (the serial, NUL-padded).
pub const ID_BYTES: usize = 20;

/// One descriptor as the guest wrote it (already flattened from any indirect table).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Desc {
    pub addr: u64,
    pub len: u32,
    /// VIRTQ_DESC_F_WRITE: the device may write into it.
    pub device_writable: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequestKind {
    Read,
    Write,
    Flush,
    GetId,
    Discard,
    WriteZeroes,
}

/// A request that passed every rule: what to do, with which guest buffers, and where the status
/// byte goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    pub kind: RequestKind,
    pub sector: u64,
    /// Data descriptors in chain order (device-writable for Read/GetId, readable otherwise).
    pub data: Vec<Desc>,
    /// Total bytes of `data`.
    pub data_len: u32,
    /// Guest address of the status byte.
    pub status_addr: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum RequestError {
    #[error("descriptor chain is empty")]
    EmptyChain,
    #[error("descriptor chain has no status descriptor")]
    MissingStatus,
    #[error("status descriptor is not device-writable")]
    StatusNotWritable,
    #[error("status descriptor has no room for the status byte")]
    StatusTooShort,
    #[error("header descriptor is device-writable")]
    HeaderNotReadable,
    #[error("header descriptor holds {0} bytes, fewer than 16")]
    HeaderTooShort(u32),
    #[error("header is not in guest memory")]
    HeaderUnreadable,
    #[error("request type {0} is not supported")]
    UnsupportedType(u32),
    #[error("a read's data descriptor is not device-writable")]
    ReadIntoReadOnlyDescriptor,
    #[error("a write's data descriptor is device-writable")]
    WriteFromWriteOnlyDescriptor,
    #[error("{0} data descriptors, more than the {MAX_DATA_SEGMENTS} allowed")]
    TooManySegments(usize),
    #[error("data length overflows")]
    DataLengthOverflow,
    #[error("data length {0} is not a multiple of 512")]
    DataNotSectorMultiple(u64),
    #[error("data length {0} exceeds the largest transfer")]
    DataTooLong(u64),
    #[error("request of type {0} must carry data")]
    MissingData(u32),
    #[error("sector {sector} + {len} bytes overflows")]
    SectorOverflow { sector: u64, len: u64 },
    #[error("discard/write-zeroes payload of {0} bytes is not whole segments")]
    SegmentsMalformed(u32),
    #[error("{0} discard/write-zeroes segments, more than {MAX_DISCARD_SEGMENTS}")]
    TooManyDiscardSegments(usize),
    #[error("unsupported flags {0:#x} in a discard/write-zeroes segment")]
    UnsupportedSegmentFlags(u32),
    #[error("a data buffer is not in guest memory")]
    DataUnreadable,
}

impl RequestError {
    /// The virtio status the guest gets for this request.
    pub fn virtio_status(&self) -> u8 {
        match self {
            RequestError::UnsupportedType(_) | RequestError::UnsupportedSegmentFlags(_) => {
                VIRTIO_BLK_S_UNSUPP as u8
            }
            _ => VIRTIO_BLK_S_IOERR as u8,
        }
    }
}

/// A request that broke a rule: the error, and the status byte's address if the status
/// descriptor itself was sound (otherwise the chain is returned with no status written).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejected {
    pub error: RequestError,
    pub status_addr: Option<u64>,
}

/// Checks a chain against every rule and returns the request it carries.
///
/// `read_header` reads 16 bytes of guest memory at an address (None if not guest memory).
pub fn parse(
    descs: &[Desc],
    read_header: impl FnOnce(u64) -> Option<[u8; 16]>,
) -> Result<Request, Rejected> {
    let reject = |error, status_addr| Rejected { error, status_addr };
    let Some((status, rest)) = descs.split_last() else {
        return Err(reject(RequestError::EmptyChain, None));
    };
    if rest.is_empty() {
        return Err(reject(RequestError::MissingStatus, None));
    }
    if !status.device_writable {
        return Err(reject(RequestError::StatusNotWritable, None));
    }
    if status.len == 0 {
        return Err(reject(RequestError::StatusTooShort, None));
    }
    let status_addr = Some(status.addr);
    let (header, data) = rest
        .split_first()
        .ok_or(reject(RequestError::MissingStatus, None))?;
    if header.device_writable {
        return Err(reject(RequestError::HeaderNotReadable, status_addr));
    }
    if header.len < HEADER_BYTES {
        return Err(reject(
            RequestError::HeaderTooShort(header.len),
            status_addr,
        ));
    }
    let raw =
        read_header(header.addr).ok_or(reject(RequestError::HeaderUnreadable, status_addr))?;
    let request_type = u32::from_le_bytes([raw[0], raw[1], raw[2], raw[3]]);
    let sector = u64::from_le_bytes([
        raw[8], raw[9], raw[10], raw[11], raw[12], raw[13], raw[14], raw[15],
    ]);
    let kind = match request_type {
        VIRTIO_BLK_T_IN => RequestKind::Read,
        VIRTIO_BLK_T_OUT => RequestKind::Write,
        VIRTIO_BLK_T_FLUSH => RequestKind::Flush,
        VIRTIO_BLK_T_GET_ID => RequestKind::GetId,
        VIRTIO_BLK_T_DISCARD => RequestKind::Discard,
        VIRTIO_BLK_T_WRITE_ZEROES => RequestKind::WriteZeroes,
        other => {
            return Err(reject(RequestError::UnsupportedType(other), status_addr));
        }
    };
    if data.len() > MAX_DATA_SEGMENTS {
        return Err(reject(
            RequestError::TooManySegments(data.len()),
            status_addr,
        ));
    }
    let device_writes = matches!(kind, RequestKind::Read | RequestKind::GetId);
    let mut data_len: u64 = 0;
    for d in data {
        match (device_writes, d.device_writable) {
            (true, false) => {
                return Err(reject(
                    RequestError::ReadIntoReadOnlyDescriptor,
                    status_addr,
                ));
            }
            (false, true) => {
                return Err(reject(
                    RequestError::WriteFromWriteOnlyDescriptor,
                    status_addr,
                ));
            }
            _ => {}
        }
        data_len = data_len
            .checked_add(u64::from(d.len))
            .ok_or(reject(RequestError::DataLengthOverflow, status_addr))?;
    }
    match kind {
        RequestKind::Read | RequestKind::Write => {
            if data_len == 0 {
                return Err(reject(RequestError::MissingData(request_type), status_addr));
            }
            if !data_len.is_multiple_of(SECTOR_BYTES) {
                return Err(reject(
                    RequestError::DataNotSectorMultiple(data_len),
                    status_addr,
                ));
            }
            if data_len > MAX_TRANSFER_BYTES as u64 {
                return Err(reject(RequestError::DataTooLong(data_len), status_addr));
            }
            let end = sector
                .checked_mul(SECTOR_BYTES)
                .and_then(|start| start.checked_add(data_len));
            if end.is_none() {
                return Err(reject(
                    RequestError::SectorOverflow {
                        sector,
                        len: data_len,
                    },
                    status_addr,
                ));
            }
        }
        RequestKind::Discard | RequestKind::WriteZeroes => {
            if data_len == 0 {
                return Err(reject(RequestError::MissingData(request_type), status_addr));
            }
            if !data_len.is_multiple_of(u64::from(DISCARD_SEGMENT_BYTES)) {
                return Err(reject(
                    RequestError::SegmentsMalformed(data_len.min(u64::from(u32::MAX)) as u32),
                    status_addr,
                ));
            }
            let segments = (data_len / u64::from(DISCARD_SEGMENT_BYTES)) as usize;
            if segments > MAX_DISCARD_SEGMENTS {
                return Err(reject(
                    RequestError::TooManyDiscardSegments(segments),
                    status_addr,
                ));
            }
        }
        RequestKind::GetId => {
            if data_len == 0 {
                return Err(reject(RequestError::MissingData(request_type), status_addr));
            }
        }
        // A flush carries no data; any buffers the guest adds are ignored, as QEMU does.
        RequestKind::Flush => {}
    }
    Ok(Request {
        kind,
        sector,
        data: data.to_vec(),
        // Bounded by MAX_TRANSFER_BYTES or by MAX_DISCARD_SEGMENTS segments above, except for
        // GetId and Flush, whose length only bounds what is written back.
        data_len: data_len.min(u64::from(u32::MAX)) as u32,
        status_addr: status.addr,
    })
}

/// One range of a discard or write-zeroes request, in sectors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SectorRange {
    pub sector: u64,
    pub sectors: u64,
}

/// Checks the segments of a discard (`unmap_allowed` false) or write-zeroes request.
pub fn parse_segments(
    payload: &[u8],
    unmap_allowed: bool,
) -> Result<Vec<SectorRange>, RequestError> {
    let seg = DISCARD_SEGMENT_BYTES as usize;
    if !payload.len().is_multiple_of(seg) {
        return Err(RequestError::SegmentsMalformed(payload.len() as u32));
    }
    if payload.len() / seg > MAX_DISCARD_SEGMENTS {
        return Err(RequestError::TooManyDiscardSegments(payload.len() / seg));
    }
    let allowed_flags = if unmap_allowed {
        VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP
    } else {
        0
    };
    payload
        .chunks_exact(seg)
        .map(|c| {
            let mut sector = [0u8; 8];
            sector.copy_from_slice(&c[0..8]);
            let mut sectors = [0u8; 4];
            sectors.copy_from_slice(&c[8..12]);
            let mut flags = [0u8; 4];
            flags.copy_from_slice(&c[12..16]);
            let flags = u32::from_le_bytes(flags);
            if flags & !allowed_flags != 0 {
                return Err(RequestError::UnsupportedSegmentFlags(flags));
            }
            Ok(SectorRange {
                sector: u64::from_le_bytes(sector),
                sectors: u64::from(u32::from_le_bytes(sectors)),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn header(kind: u32, sector: u64) -> [u8; 16] {
        let mut h = [0u8; 16];
        h[0..4].copy_from_slice(&kind.to_le_bytes());
        h[8..16].copy_from_slice(&sector.to_le_bytes());
        h
    }

    fn d(addr: u64, len: u32, device_writable: bool) -> Desc {
        Desc {
            addr,
            len,
            device_writable,
        }
    }

    fn parse_with(descs: &[Desc], h: [u8; 16]) -> Result<Request, Rejected> {
        parse(descs, |_| Some(h))
    }

    fn err(r: Result<Request, Rejected>) -> (RequestError, Option<u64>) {
        let r = r.expect_err("must be rejected");
        (r.error, r.status_addr)
    }

    #[test]
    fn a_well_formed_read_parses() {
        let chain = [
            d(0x1000, 16, false),
            d(0x2000, 4096, true),
            d(0x3000, 1, true),
        ];
        let r = parse_with(&chain, header(VIRTIO_BLK_T_IN, 8)).unwrap();
        assert_eq!(r.kind, RequestKind::Read);
        assert_eq!(r.sector, 8);
        assert_eq!(r.data_len, 4096);
        assert_eq!(r.status_addr, 0x3000);
    }

    #[test]
    fn each_rule_has_its_error() {
        let h = header(VIRTIO_BLK_T_IN, 0);
        assert_eq!(err(parse_with(&[], h)), (RequestError::EmptyChain, None));
        assert_eq!(
            err(parse_with(&[d(0, 1, true)], h)),
            (RequestError::MissingStatus, None)
        );
        assert_eq!(
            err(parse_with(&[d(0, 16, false), d(9, 1, false)], h)),
            (RequestError::StatusNotWritable, None)
        );
        assert_eq!(
            err(parse_with(&[d(0, 16, false), d(9, 0, true)], h)),
            (RequestError::StatusTooShort, None)
        );
        assert_eq!(
            err(parse_with(&[d(0, 16, true), d(9, 1, true)], h)),
            (RequestError::HeaderNotReadable, Some(9))
        );
        assert_eq!(
            err(parse_with(&[d(0, 15, false), d(9, 1, true)], h)),
            (RequestError::HeaderTooShort(15), Some(9))
        );
        assert_eq!(
            err(parse(&[d(0, 16, false), d(9, 1, true)], |_| None)),
            (RequestError::HeaderUnreadable, Some(9))
        );
        assert_eq!(
            err(parse_with(&[d(0, 16, false), d(9, 1, true)], header(99, 0))),
            (RequestError::UnsupportedType(99), Some(9))
        );
        assert_eq!(
            err(parse_with(
                &[d(0, 16, false), d(5, 512, false), d(9, 1, true)],
                h
            )),
            (RequestError::ReadIntoReadOnlyDescriptor, Some(9))
        );
        let w = header(VIRTIO_BLK_T_OUT, 0);
        assert_eq!(
            err(parse_with(
                &[d(0, 16, false), d(5, 512, true), d(9, 1, true)],
                w
            )),
            (RequestError::WriteFromWriteOnlyDescriptor, Some(9))
        );
        assert_eq!(
            err(parse_with(
                &[d(0, 16, false), d(5, 100, false), d(9, 1, true)],
                w
            )),
            (RequestError::DataNotSectorMultiple(100), Some(9))
        );
        assert_eq!(
            err(parse_with(&[d(0, 16, false), d(9, 1, true)], w)),
            (RequestError::MissingData(VIRTIO_BLK_T_OUT), Some(9))
        );
        let far = header(VIRTIO_BLK_T_OUT, u64::MAX / 256);
        assert!(matches!(
            err(parse_with(
                &[d(0, 16, false), d(5, 512, false), d(9, 1, true)],
                far
            ))
            .0,
            RequestError::SectorOverflow { .. }
        ));
        let big: Vec<Desc> = std::iter::once(d(0, 16, false))
            .chain((0..3).map(|i| d(i << 32, u32::MAX - 511, false)))
            .chain(std::iter::once(d(9, 1, true)))
            .collect();
        assert!(matches!(
            err(parse_with(&big, w)).0,
            RequestError::DataTooLong(_)
        ));
        let many: Vec<Desc> = std::iter::once(d(0, 16, false))
            .chain((0..129).map(|i| d(i * 512, 512, false)))
            .chain(std::iter::once(d(9, 1, true)))
            .collect();
        assert_eq!(
            err(parse_with(&many, w)),
            (RequestError::TooManySegments(129), Some(9))
        );
        let dz = header(VIRTIO_BLK_T_DISCARD, 0);
        assert_eq!(
            err(parse_with(
                &[d(0, 16, false), d(5, 17, false), d(9, 1, true)],
                dz
            )),
            (RequestError::SegmentsMalformed(17), Some(9))
        );
    }

    #[test]
    fn segments_check_flags_and_size() {
        let mut seg = [0u8; 16];
        seg[0..8].copy_from_slice(&24u64.to_le_bytes());
        seg[8..12].copy_from_slice(&8u32.to_le_bytes());
        assert_eq!(
            parse_segments(&seg, false).unwrap(),
            vec![SectorRange {
                sector: 24,
                sectors: 8
            }]
        );
        seg[12] = 1;
        assert_eq!(
            parse_segments(&seg, false),
            Err(RequestError::UnsupportedSegmentFlags(1))
        );
        assert!(parse_segments(&seg, true).is_ok());
        seg[12] = 2;
        assert_eq!(
            parse_segments(&seg, true),
            Err(RequestError::UnsupportedSegmentFlags(2))
        );
        assert_eq!(
            parse_segments(&seg[..15], true),
            Err(RequestError::SegmentsMalformed(15))
        );
        assert_eq!(
            RequestError::UnsupportedSegmentFlags(2).virtio_status(),
            VIRTIO_BLK_S_UNSUPP as u8
        );
        assert_eq!(
            RequestError::HeaderTooShort(3).virtio_status(),
            VIRTIO_BLK_S_IOERR as u8
        );
    }

    fn any_desc() -> impl Strategy<Value = Desc> {
        (any::<u64>(), any::<u32>(), any::<bool>()).prop_map(|(addr, len, device_writable)| Desc {
            addr,
            len,
            device_writable,
        })
    }

    proptest! {
        #[test]
        fn any_chain_parses_or_is_rejected_without_panic(
            descs in prop::collection::vec(any_desc(), 0..200),
            raw in any::<[u8; 16]>(),
            kind in prop_oneof![Just(0u32), Just(1), Just(4), Just(8), Just(11), Just(13), any::<u32>()],
        ) {
            let mut h = raw;
            h[0..4].copy_from_slice(&kind.to_le_bytes());
            match parse(&descs, |_| Some(h)) {
                Ok(r) => {
                    prop_assert!(r.data.len() <= MAX_DATA_SEGMENTS);
                    prop_assert_eq!(Some(r.status_addr), descs.last().map(|d| d.addr));
                    if matches!(r.kind, RequestKind::Read | RequestKind::Write) {
                        prop_assert!(r.data_len as usize <= MAX_TRANSFER_BYTES);
                        prop_assert!(r.sector.checked_mul(512).and_then(|s| s.checked_add(u64::from(r.data_len))).is_some());
                    }
                }
                Err(rejected) => {
                    if let Some(addr) = rejected.status_addr {
                        prop_assert_eq!(Some(addr), descs.last().map(|d| d.addr));
                    }
                }
            }
        }

        #[test]
        fn any_segment_payload_is_checked_without_panic(payload in prop::collection::vec(any::<u8>(), 0..700), unmap in any::<bool>()) {
            if let Ok(ranges) = parse_segments(&payload, unmap) {
                prop_assert_eq!(ranges.len(), payload.len() / 16);
            }
        }
    }
}
