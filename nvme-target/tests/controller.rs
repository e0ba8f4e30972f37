#![allow(clippy::unwrap_used)]
//! The controller over a real FTL namespace: sector commands, read-modify-write, statuses,
//! Identify and SMART figures, and a proptest against a byte-array model.

mod common_ftl;

use std::sync::Arc;

use nvme_target::{ActiveNamespace, Command, FtlNamespace, PowerOnClock, SECTOR_BYTES, Status};
use proptest::prelude::*;

fn pattern(seed: u64, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (seed.wrapping_mul(31).wrapping_add(i as u64 * 7) % 251) as u8)
        .collect()
}

#[test]
fn aligned_and_unaligned_writes_read_back() {
    let ns = common_ftl::namespace(false);
    let mut q = ns.new_queue();
    let block = pattern(1, 4096);
    assert_eq!(
        q.execute(Command::Write {
            sector: 8,
            data: &block,
            fua: true
        }),
        Status::Success
    );
    // 3 sectors starting at sector 7: the tail of block 0 and the head of block 1 (RMW on both).
    let small = pattern(2, 1536);
    assert_eq!(
        q.execute(Command::Write {
            sector: 7,
            data: &small,
            fua: false
        }),
        Status::Success
    );
    let mut back = vec![0u8; 5 * 512];
    assert_eq!(
        q.execute(Command::Read {
            sector: 6,
            buf: &mut back
        }),
        Status::Success
    );
    assert!(
        back[..512].iter().all(|&b| b == 0),
        "sector 6 never written"
    );
    assert_eq!(&back[512..2048], &small[..]);
    assert_eq!(&back[2048..], &block[1024..1536]);
}

#[test]
fn write_zeroes_and_deallocate_read_zeroes() {
    let ns = common_ftl::namespace(false);
    let mut q = ns.new_queue();
    let data = pattern(3, 4 * 4096);
    assert_eq!(
        q.execute(Command::Write {
            sector: 0,
            data: &data,
            fua: false
        }),
        Status::Success
    );
    // Zero sectors 3..20: partial head of block 0, whole block 1, partial head of block 2.
    assert_eq!(
        q.execute(Command::WriteZeroes {
            sector: 3,
            sectors: 17
        }),
        Status::Success
    );
    let mut back = vec![0u8; 4 * 4096];
    assert_eq!(
        q.execute(Command::Read {
            sector: 0,
            buf: &mut back
        }),
        Status::Success
    );
    assert_eq!(&back[..1536], &data[..1536]);
    assert!(back[1536..20 * 512].iter().all(|&b| b == 0));
    assert_eq!(&back[20 * 512..], &data[20 * 512..]);
    // Deallocate block 3 exactly.
    assert_eq!(
        q.execute(Command::Deallocate {
            sector: 24,
            sectors: 8
        }),
        Status::Success
    );
    assert_eq!(
        q.execute(Command::Read {
            sector: 0,
            buf: &mut back
        }),
        Status::Success
    );
    assert!(back[3 * 4096..].iter().all(|&b| b == 0));
    assert_eq!(q.execute(Command::Flush), Status::Success);
}

#[test]
fn hostile_ranges_get_statuses_not_panics() {
    let ns = common_ftl::namespace(false);
    let mut q = ns.new_queue();
    let sectors = ns.capacity_bytes() / SECTOR_BYTES;
    let mut buf = vec![0u8; 4096];
    assert_eq!(
        q.execute(Command::Read {
            sector: sectors - 7,
            buf: &mut buf
        }),
        Status::LbaOutOfRange
    );
    assert_eq!(
        q.execute(Command::Read {
            sector: sectors - 8,
            buf: &mut buf
        }),
        Status::Success
    );
    assert_eq!(
        q.execute(Command::Read {
            sector: u64::MAX,
            buf: &mut buf
        }),
        Status::LbaOutOfRange
    );
    assert_eq!(
        q.execute(Command::Read {
            sector: u64::MAX / 512 + 1,
            buf: &mut buf
        }),
        Status::LbaOutOfRange
    );
    assert_eq!(
        q.execute(Command::Read {
            sector: 0,
            buf: &mut buf[..100]
        }),
        Status::InvalidField
    );
    assert_eq!(
        q.execute(Command::WriteZeroes {
            sector: 1,
            sectors: u64::MAX
        }),
        Status::LbaOutOfRange
    );
    assert_eq!(
        q.execute(Command::Deallocate {
            sector: sectors,
            sectors: 1
        }),
        Status::LbaOutOfRange
    );
    let huge = vec![0u8; nvme_target::queue::MAX_TRANSFER_BYTES + 512];
    assert_eq!(
        q.execute(Command::Write {
            sector: 0,
            data: &huge,
            fua: false
        }),
        Status::InvalidField
    );
}

#[test]
fn read_only_namespace_refuses_every_change() {
    let ns = common_ftl::namespace(true);
    let mut q = ns.new_queue();
    let data = vec![7u8; 4096];
    assert_eq!(
        q.execute(Command::Write {
            sector: 0,
            data: &data,
            fua: false
        }),
        Status::WriteProtected
    );
    assert_eq!(
        q.execute(Command::WriteZeroes {
            sector: 0,
            sectors: 8
        }),
        Status::WriteProtected
    );
    assert_eq!(
        q.execute(Command::Deallocate {
            sector: 0,
            sectors: 8
        }),
        Status::WriteProtected
    );
    let mut back = vec![1u8; 4096];
    assert_eq!(
        q.execute(Command::Read {
            sector: 0,
            buf: &mut back
        }),
        Status::Success
    );
    assert!(back.iter().all(|&b| b == 0));
    assert!(ns.identify().write_protected);
}

#[test]
fn identify_and_smart_follow_the_namespace_and_its_traffic() {
    let ns = common_ftl::namespace(false);
    let id = ns.identify();
    assert_eq!(id.block_size_bytes, 4096);
    assert_eq!(id.size_blocks * 4096, ns.capacity_bytes());
    assert_eq!(id.eui64, common_ftl::identity(false).eui64);
    let mut q1 = ns.new_queue();
    let mut q2 = ns.new_queue();
    let data = vec![9u8; 64 * 4096];
    for i in 0..20 {
        let q = if i % 2 == 0 { &mut q1 } else { &mut q2 };
        assert_eq!(
            q.execute(Command::Write {
                sector: 0,
                data: &data,
                fua: false
            }),
            Status::Success
        );
    }
    let mut buf = vec![0u8; 4096];
    assert_eq!(
        q2.execute(Command::Read {
            sector: 0,
            buf: &mut buf
        }),
        Status::Success
    );
    let log = ns.smart_log();
    assert_eq!(log.host_write_commands, 20);
    assert_eq!(log.host_read_commands, 1);
    // 20 x 256 KiB = 10240 sectors -> 11 data units (rounded up).
    assert_eq!(log.data_units_written, 11);
    assert_eq!(log.media_errors, 0);
    assert_eq!(log.available_spare_percent, 100);
    assert_eq!(log.critical_warning, 0);
    assert_eq!(log.composite_temperature_kelvin, 313);
    assert_eq!(log.power_on_hours, 0);
    // A controller that served 49.5 hours in earlier runs reports 49.
    let earlier = ActiveNamespace::with_power_on(
        common_ftl::identity(false),
        Arc::new(FtlNamespace::new(common_ftl::small_ftl())),
        Arc::new(PowerOnClock::running(49 * 3600 + 1800)),
    );
    assert_eq!(earlier.smart_log().power_on_hours, 49);
    assert_eq!(u64::from(earlier.smart_log().to_bytes()[128]), 49);
}

#[test]
fn concurrent_read_modify_writes_of_one_block_lose_nothing() {
    let ns = common_ftl::namespace(false);
    let rounds = 300u32;
    std::thread::scope(|s| {
        for t in 0..4u64 {
            let ns = Arc::clone(&ns);
            s.spawn(move || {
                let mut q = ns.new_queue();
                // Thread t owns sectors t and t + 4 of blocks 0 and 1: every write is an RMW of a
                // block the other threads rewrite at the same time.
                for round in 0..rounds {
                    for sector in [t, t + 4, t + 8, t + 12] {
                        let mut data = vec![0u8; 512];
                        data[..4].copy_from_slice(&round.to_le_bytes());
                        data[4] = sector as u8;
                        assert_eq!(
                            q.execute(Command::Write {
                                sector,
                                data: &data,
                                fua: false
                            }),
                            Status::Success
                        );
                    }
                }
            });
        }
    });
    let mut q = ns.new_queue();
    let mut back = vec![0u8; 16 * 512];
    assert_eq!(
        q.execute(Command::Read {
            sector: 0,
            buf: &mut back
        }),
        Status::Success
    );
    for sector in 0..16usize {
        let s = &back[sector * 512..(sector + 1) * 512];
        assert_eq!(
            u32::from_le_bytes(s[..4].try_into().unwrap()),
            rounds - 1,
            "sector {sector}"
        );
        assert_eq!(s[4], sector as u8);
    }
}

#[derive(Clone, Debug)]
enum Op {
    Write {
        sector: u64,
        sectors: u64,
        seed: u64,
        fua: bool,
    },
    Read {
        sector: u64,
        sectors: u64,
    },
    Zeroes {
        sector: u64,
        sectors: u64,
    },
    Deallocate {
        sector: u64,
        sectors: u64,
    },
    Flush,
}

/// Ops over the first 48 blocks (384 sectors) and a little past the end of the namespace.
fn op(total_sectors: u64) -> impl Strategy<Value = Op> {
    let near = prop_oneof![0..384u64, (total_sectors - 40)..(total_sectors + 8)];
    let near2 = near.clone();
    let near3 = near.clone();
    let near4 = near.clone();
    prop_oneof![
        4 => (near, 1..40u64, any::<u64>(), any::<bool>())
            .prop_map(|(sector, sectors, seed, fua)| Op::Write { sector, sectors, seed, fua }),
        3 => (near2, 1..40u64).prop_map(|(sector, sectors)| Op::Read { sector, sectors }),
        1 => (near3, 0..40u64).prop_map(|(sector, sectors)| Op::Zeroes { sector, sectors }),
        1 => (near4, 0..40u64).prop_map(|(sector, sectors)| Op::Deallocate { sector, sectors }),
        1 => Just(Op::Flush),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]
    #[test]
    fn commands_match_a_byte_array_model(ops in prop::collection::vec(op(common_ftl_sectors()), 1..60)) {
        let ns = common_ftl::namespace(false);
        let mut q = ns.new_queue();
        let cap = ns.capacity_bytes();
        let mut model = vec![0u8; cap as usize];
        let bs = 4096u64;
        let in_range = |sector: u64, sectors: u64| (sector + sectors) * 512 <= cap;
        for op in ops {
            match op {
                Op::Write { sector, sectors, seed, fua } => {
                    let data = pattern(seed, (sectors * 512) as usize);
                    let st = q.execute(Command::Write { sector, data: &data, fua });
                    if in_range(sector, sectors) {
                        prop_assert_eq!(st, Status::Success);
                        let at = (sector * 512) as usize;
                        model[at..at + data.len()].copy_from_slice(&data);
                    } else {
                        prop_assert_eq!(st, Status::LbaOutOfRange);
                    }
                }
                Op::Read { sector, sectors } => {
                    let mut buf = vec![0xAAu8; (sectors * 512) as usize];
                    let st = q.execute(Command::Read { sector, buf: &mut buf });
                    if in_range(sector, sectors) {
                        prop_assert_eq!(st, Status::Success);
                        let at = (sector * 512) as usize;
                        prop_assert_eq!(&buf[..], &model[at..at + buf.len()]);
                    } else {
                        prop_assert_eq!(st, Status::LbaOutOfRange);
                    }
                }
                Op::Zeroes { sector, sectors } => {
                    let st = q.execute(Command::WriteZeroes { sector, sectors });
                    if in_range(sector, sectors) {
                        prop_assert_eq!(st, Status::Success);
                        model[(sector * 512) as usize..((sector + sectors) * 512) as usize].fill(0);
                    } else {
                        prop_assert_eq!(st, Status::LbaOutOfRange);
                    }
                }
                Op::Deallocate { sector, sectors } => {
                    let st = q.execute(Command::Deallocate { sector, sectors });
                    if in_range(sector, sectors) {
                        prop_assert_eq!(st, Status::Success);
                        // Whole blocks inside the range are forgotten; partial edges are kept.
                        let first = (sector * 512).div_ceil(bs);
                        let end = (sector + sectors) * 512 / bs;
                        if first < end {
                            model[(first * bs) as usize..(end * bs) as usize].fill(0);
                        }
                    } else {
                        prop_assert_eq!(st, Status::LbaOutOfRange);
                    }
                }
                Op::Flush => prop_assert_eq!(q.execute(Command::Flush), Status::Success),
            }
        }
    }
}

/// Sectors of `common_ftl::namespace` (its geometry is fixed), for the op strategy.
fn common_ftl_sectors() -> u64 {
    common_ftl::namespace(false).capacity_bytes() / 512
}
