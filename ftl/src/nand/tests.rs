//! The rules of the NAND model, each written once over `&dyn Nand` (or over a `Bench` that makes
//! devices, for the rules that need several devices, a power rail or a power cut) and run on both
//! backends: `MemNand` and `FileNand` (in a temporary directory). FileNand's own restart and
//! corruption tests are at the end.

use std::cell::Cell;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tempfile::TempDir;

use super::*;

/// 2 dies x 8 blocks x 8 pages of 4 KiB: 16 blocks, 512 KiB.
fn small() -> Geometry {
    Geometry {
        channels: 1,
        dies_per_channel: 2,
        planes_per_die: 1,
        blocks_per_plane: 8,
        pages_per_block: 8,
        page_size: 4096,
        oob_size: 64,
    }
}

/// 4 dies x 256 blocks x 4 pages of 4 KiB: 1024 blocks, 16 MiB (sparse / never touched).
fn many_blocks() -> Geometry {
    Geometry {
        channels: 2,
        dies_per_channel: 2,
        planes_per_die: 1,
        blocks_per_plane: 256,
        pages_per_block: 4,
        page_size: 4096,
        oob_size: 64,
    }
}

fn none() -> FaultConfig {
    FaultConfig::none()
}

#[derive(Clone, Copy, Debug)]
enum Kind {
    Mem,
    File,
}

/// One device of either backend, concrete so that tests can call `Device::power_cut`.
#[derive(Debug)]
enum AnyDev {
    Mem(MemNand),
    File(FileNand),
}

impl AnyDev {
    fn nand(&self) -> &dyn Nand {
        match self {
            AnyDev::Mem(d) => d,
            AnyDev::File(d) => d,
        }
    }

    fn power_cut(&self, seed: u64) {
        match self {
            AnyDev::Mem(d) => d.power_cut(seed),
            AnyDev::File(d) => d.power_cut(seed),
        }
        .expect("power cut");
    }
}

/// Makes devices of one backend; file devices live in its temporary directory.
struct Bench {
    kind: Kind,
    dir: TempDir,
    made: Cell<u32>,
}

impl Bench {
    fn new(kind: Kind) -> Self {
        Self {
            kind,
            dir: tempfile::tempdir().expect("tempdir"),
            made: Cell::new(0),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn device(
        &self,
        geometry: Geometry,
        faults: FaultConfig,
        rail: Option<Arc<PowerRail>>,
    ) -> AnyDev {
        let n = self.made.get();
        self.made.set(n + 1);
        match self.kind {
            Kind::Mem => AnyDev::Mem(MemNand::new(geometry, faults, rail).expect("MemNand")),
            Kind::File => {
                let path = self.path(&format!("dev{n}.nand"));
                AnyDev::File(FileNand::create(&path, geometry, faults, rail).expect("FileNand"))
            }
        }
    }
}

/// `on_both!(rule, geometry, faults)`: `rule(&dyn Nand)` on a fresh device of each backend.
/// `on_both!(rule)`: `rule(&Bench)` with a bench of each backend.
macro_rules! on_both {
    ($rule:ident, $geometry:expr, $faults:expr) => {
        mod $rule {
            use super::*;
            #[test]
            fn mem() {
                let bench = Bench::new(Kind::Mem);
                let dev = bench.device($geometry, $faults, None);
                super::$rule(dev.nand());
            }
            #[test]
            fn file() {
                let bench = Bench::new(Kind::File);
                let dev = bench.device($geometry, $faults, None);
                super::$rule(dev.nand());
            }
        }
    };
    ($rule:ident) => {
        mod $rule {
            use super::*;
            #[test]
            fn mem() {
                super::$rule(&Bench::new(Kind::Mem));
            }
            #[test]
            fn file() {
                super::$rule(&Bench::new(Kind::File));
            }
        }
    };
}

/// The content programmed at (block, page) in generation `generation`: never all 0xff.
fn pattern(g: &Geometry, block: u32, page: u32, generation: u32) -> (Vec<u8>, Vec<u8>) {
    let tag = block
        .wrapping_mul(7919)
        .wrapping_add(page.wrapping_mul(131))
        .wrapping_add(generation.wrapping_mul(17));
    let byte = |i: usize, salt: u32| ((i as u32).wrapping_mul(31) ^ tag ^ salt) as u8 & 0x7f;
    let data = (0..g.page_size as usize).map(|i| byte(i, 0)).collect();
    let oob = (0..g.oob_size as usize).map(|i| byte(i, 0x55)).collect();
    (data, oob)
}

fn program_gen(n: &dyn Nand, block: u32, page: u32, generation: u32) -> Result<(), NandError> {
    let (data, oob) = pattern(n.geometry(), block, page, generation);
    n.program_page(block, page, &data, &oob)
}

fn program(n: &dyn Nand, block: u32, page: u32) -> Result<(), NandError> {
    program_gen(n, block, page, 0)
}

type Page = (Vec<u8>, Vec<u8>);

fn read(n: &dyn Nand, block: u32, page: u32) -> Result<Page, NandError> {
    let g = n.geometry();
    let mut data = vec![0; g.page_size as usize];
    let mut oob = vec![0; g.oob_size as usize];
    n.read_page(block, page, &mut data, &mut oob)?;
    Ok((data, oob))
}

fn read_oob(n: &dyn Nand, block: u32, page: u32) -> Result<Vec<u8>, NandError> {
    let mut oob = vec![0; n.geometry().oob_size as usize];
    n.read_oob(block, page, &mut oob)?;
    Ok(oob)
}

fn holds(n: &dyn Nand, block: u32, page: u32, generation: u32) -> bool {
    read(n, block, page).expect("read") == pattern(n.geometry(), block, page, generation)
}

fn info(n: &dyn Nand, block: u32) -> BlockInfo {
    n.block_info(block).expect("block_info")
}

fn erased(r: Result<Page, NandError>, block: u32, page: u32) -> bool {
    matches!(r, Err(NandError::ErasedPage { block: b, page: p }) if b == block && p == page)
}

// ---------------------------------------------------------------------------------------------
// Program, read, erase

fn program_only_erased_page(n: &dyn Nand) {
    program(n, 0, 0).expect("program");
    let again = program_gen(n, 0, 0, 1);
    assert!(
        matches!(again, Err(NandError::NotErased { block: 0, page: 0 })),
        "{again:?}"
    );
    for p in 0..4 {
        program(n, 1, p).expect("program");
    }
    let again = program_gen(n, 1, 1, 1);
    assert!(
        matches!(again, Err(NandError::NotErased { block: 1, page: 1 })),
        "{again:?}"
    );
    assert!(holds(n, 0, 0, 0), "a refused program changes nothing");
    assert!(holds(n, 1, 1, 0));
    assert_eq!(info(n, 1).programmed_pages, 4);
    assert_eq!(n.stats().pages_programmed, 5);
}
on_both!(program_only_erased_page, small(), none());

fn pages_in_order(n: &dyn Nand) {
    let r = program(n, 0, 2);
    assert!(
        matches!(
            r,
            Err(NandError::OutOfOrder {
                block: 0,
                page: 2,
                expected: 0
            })
        ),
        "{r:?}"
    );
    program(n, 0, 0).expect("program");
    let r = program(n, 0, 2);
    assert!(
        matches!(r, Err(NandError::OutOfOrder { expected: 1, .. })),
        "{r:?}"
    );
    program(n, 0, 1).expect("program");
    program(n, 0, 2).expect("program");
    assert_eq!(info(n, 0).programmed_pages, 3);
}
on_both!(pages_in_order, small(), none());

fn erase_is_whole_block(n: &dyn Nand) {
    let ppb = n.geometry().pages_per_block;
    for p in 0..ppb {
        program(n, 2, p).expect("program");
    }
    program(n, 3, 0).expect("program");
    assert!(
        matches!(program(n, 2, 0), Err(NandError::NotErased { .. })),
        "a full block"
    );
    n.erase_block(2).expect("erase");
    let i = info(n, 2);
    assert_eq!((i.erase_count, i.programmed_pages), (1, 0));
    for p in 0..ppb {
        assert!(erased(read(n, 2, p), 2, p), "page {p} erased");
    }
    assert!(holds(n, 3, 0, 0), "the neighbour block is untouched");
    assert_eq!(info(n, 3).erase_count, 0);
    // Programmable again, in order from page 0.
    program_gen(n, 2, 0, 1).expect("program after erase");
    assert!(holds(n, 2, 0, 1));
    n.erase_block(2).expect("erase");
    assert_eq!(info(n, 2).erase_count, 2);
    assert_eq!(n.stats().blocks_erased, 2);
}
on_both!(erase_is_whole_block, small(), none());

fn reading_erased_page_is_an_error(n: &dyn Nand) {
    assert!(erased(read(n, 0, 0), 0, 0));
    assert!(matches!(
        read_oob(n, 0, 0),
        Err(NandError::ErasedPage { block: 0, page: 0 })
    ));
    program(n, 0, 0).expect("program");
    assert!(holds(n, 0, 0, 0));
    assert_eq!(
        read_oob(n, 0, 0).expect("oob"),
        pattern(n.geometry(), 0, 0, 0).1
    );
    assert!(erased(read(n, 0, 1), 0, 1));
    n.erase_block(0).expect("erase");
    assert!(erased(read(n, 0, 0), 0, 0));
    let s = n.stats();
    assert_eq!((s.pages_read, s.oob_reads), (1, 1));
}
on_both!(reading_erased_page_is_an_error, small(), none());

/// A range read returns exactly those bytes of the page and the whole OOB; it keeps every rule of
/// a page read (erased page, bounds).
fn range_reads_are_parts_of_a_page(n: &dyn Nand) {
    let g = *n.geometry();
    let (ps, os) = (g.page_size as usize, g.oob_size as usize);
    let mut oob = vec![0; os];
    let mut part = vec![0; 1024];
    assert!(matches!(
        n.read_range(0, 0, 0, &mut part, &mut oob),
        Err(NandError::ErasedPage { block: 0, page: 0 })
    ));
    program(n, 0, 0).expect("program");
    let (data, want_oob) = pattern(&g, 0, 0, 0);
    for offset in [0, 1024, ps - 1024] {
        n.read_range(0, 0, offset, &mut part, &mut oob)
            .expect("range read");
        assert_eq!(&part[..], &data[offset..offset + 1024], "offset {offset}");
        assert_eq!(oob, want_oob);
    }
    for (offset, len) in [(ps - 1023, 1024), (0, ps + 1), (usize::MAX, 1), (0, 0)] {
        let mut buf = vec![0; len];
        assert!(
            matches!(
                n.read_range(0, 0, offset, &mut buf, &mut oob),
                Err(NandError::Range { .. })
            ),
            "offset {offset} len {len}"
        );
    }
    assert!(matches!(
        n.read_range(0, 0, 0, &mut part, &mut [0u8; 8]),
        Err(NandError::BufferSize { .. })
    ));
}
on_both!(range_reads_are_parts_of_a_page, small(), none());

fn buffer_sizes_are_checked(n: &dyn Nand) {
    let g = *n.geometry();
    let (ps, os) = (g.page_size as usize, g.oob_size as usize);
    let is_size = |r: Result<(), NandError>, what: &str, expected: usize, got: usize| {
        assert!(
            matches!(&r, Err(NandError::BufferSize { what: w, expected: e, got: x })
                if *w == what && *e == expected && *x == got),
            "{r:?}"
        );
    };
    is_size(
        n.program_page(0, 0, &vec![0; ps - 1], &vec![0; os]),
        "page data",
        ps,
        ps - 1,
    );
    is_size(
        n.program_page(0, 0, &vec![0; ps], &vec![0; os + 1]),
        "page OOB",
        os,
        os + 1,
    );
    assert_eq!(info(n, 0).programmed_pages, 0, "nothing was programmed");
    program(n, 0, 0).expect("program");
    is_size(
        n.read_page(0, 0, &mut vec![0; ps + 1], &mut vec![0; os])
            .map(drop),
        "page data",
        ps,
        ps + 1,
    );
    is_size(
        n.read_page(0, 0, &mut vec![0; ps], &mut []).map(drop),
        "page OOB",
        os,
        0,
    );
    is_size(
        n.read_oob(0, 0, &mut vec![0; os - 1]).map(drop),
        "page OOB",
        os,
        os - 1,
    );
}
on_both!(buffer_sizes_are_checked, small(), none());

fn out_of_range_addresses(n: &dyn Nand) {
    let g = *n.geometry();
    let (nb, ppb) = (g.blocks(), g.pages_per_block);
    let oor = |r: Result<(), NandError>, block: u32, page: u32| {
        assert!(
            matches!(r, Err(NandError::OutOfRange { block: b, page: p }) if b == block && p == page),
            "{r:?}"
        );
    };
    oor(program(n, nb, 0), nb, 0);
    oor(program(n, 0, ppb), 0, ppb);
    oor(read(n, nb, 0).map(drop), nb, 0);
    oor(read(n, 0, ppb).map(drop), 0, ppb);
    oor(read_oob(n, nb, 0).map(drop), nb, 0);
    oor(read_oob(n, 0, ppb).map(drop), 0, ppb);
    oor(n.erase_block(nb), nb, 0);
    oor(n.mark_bad(nb), nb, 0);
    oor(n.block_info(nb).map(drop), nb, 0);
    oor(n.erase_block(u32::MAX), u32::MAX, 0);
    // The last valid address works.
    for p in 0..ppb {
        program(n, nb - 1, p).expect("program");
    }
    assert!(holds(n, nb - 1, ppb - 1, 0));
}
on_both!(out_of_range_addresses, small(), none());

// ---------------------------------------------------------------------------------------------
// Bad blocks and wear

fn bad_set(n: &dyn Nand) -> BTreeSet<u32> {
    (0..n.geometry().blocks())
        .filter(|&b| info(n, b).health == BlockHealth::FactoryBad)
        .collect()
}

fn factory_bad_blocks(bench: &Bench) {
    let faults = FaultConfig {
        seed: 42,
        ..FaultConfig::default()
    };
    assert_eq!(faults.factory_bad_ratio, 0.02, "the default is 2%");
    let a = bench.device(many_blocks(), faults.clone(), None);
    let a = a.nand();
    let bad = bad_set(a);
    // ~2% of 1024 blocks.
    assert!((5..=50).contains(&bad.len()), "{} bad blocks", bad.len());
    let expected: BTreeSet<u32> = (0..1024).filter(|&b| faults.is_factory_bad(b)).collect();
    assert_eq!(bad, expected, "placed by the seed");
    let again = bench.device(many_blocks(), faults.clone(), None);
    assert_eq!(bad_set(again.nand()), bad, "same seed, same bad blocks");
    let other = bench.device(
        many_blocks(),
        FaultConfig {
            seed: 43,
            ..faults.clone()
        },
        None,
    );
    assert_ne!(bad_set(other.nand()), bad, "another seed, other bad blocks");

    for &b in bad.iter().take(5) {
        let is_bad = |r: Result<(), NandError>| {
            assert!(
                matches!(r, Err(NandError::BadBlock { block }) if block == b),
                "{r:?}"
            );
        };
        is_bad(program(a, b, 0));
        is_bad(read(a, b, 0).map(drop));
        is_bad(read_oob(a, b, 0).map(drop));
        is_bad(a.erase_block(b));
        a.mark_bad(b).expect("mark_bad");
        assert_eq!(
            info(a, b).health,
            BlockHealth::FactoryBad,
            "stays factory bad"
        );
        assert_eq!(info(a, b).erase_count, 0);
    }
    let good = (0..1024).find(|b| !bad.contains(b)).expect("a good block");
    program(a, good, 0).expect("a good block programs");
    a.erase_block(good).expect("and erases");
}
on_both!(factory_bad_blocks);

fn wear_limit(n: &dyn Nand) {
    // endurance_cycles: 3
    for cycle in 0..3 {
        program(n, 0, 0).expect("program below the limit");
        n.erase_block(0).expect("erase below the limit");
        assert_eq!(info(n, 0).erase_count, cycle + 1);
    }
    let r = n.erase_block(0);
    assert!(
        matches!(r, Err(NandError::EraseFailed { block: 0 })),
        "{r:?}"
    );
    let r = program(n, 0, 0);
    assert!(
        matches!(r, Err(NandError::ProgramFailed { block: 0, page: 0 })),
        "{r:?}"
    );
    let i = info(n, 0);
    assert_eq!((i.erase_count, i.programmed_pages), (3, 1));
    assert!(matches!(
        n.erase_block(0),
        Err(NandError::EraseFailed { .. })
    ));
    let s = n.stats();
    assert_eq!((s.erase_failures, s.program_failures), (2, 1));
    assert_eq!(s.blocks_erased, 3);
    // Other blocks are not worn.
    program(n, 1, 0).expect("program");
    n.erase_block(1).expect("erase");
}
on_both!(
    wear_limit,
    small(),
    FaultConfig {
        endurance_cycles: 3,
        ..none()
    }
);

fn program_failure(n: &dyn Nand) {
    // program_fail_prob: 1.0
    let r = program(n, 0, 0);
    assert!(
        matches!(r, Err(NandError::ProgramFailed { block: 0, page: 0 })),
        "{r:?}"
    );
    assert!(r.as_ref().is_err_and(NandError::is_media_failure));
    assert_eq!(info(n, 0).programmed_pages, 1, "the page is consumed");
    let garbage = read(n, 0, 0).expect("a failed page reads");
    assert_ne!(garbage, pattern(n.geometry(), 0, 0, 0), "but holds garbage");
    assert!(matches!(program(n, 0, 0), Err(NandError::NotErased { .. })));
    assert!(matches!(
        program(n, 0, 1),
        Err(NandError::ProgramFailed { block: 0, page: 1 })
    ));
    let s = n.stats();
    assert_eq!((s.program_failures, s.pages_programmed), (2, 0));
    assert_eq!(info(n, 0).programmed_pages, 2);
}
on_both!(
    program_failure,
    small(),
    FaultConfig {
        program_fail_prob: 1.0,
        ..none()
    }
);

fn erase_failure(n: &dyn Nand) {
    // erase_fail_prob: 1.0
    program(n, 0, 0).expect("program");
    program(n, 0, 1).expect("program");
    let r = n.erase_block(0);
    assert!(
        matches!(r, Err(NandError::EraseFailed { block: 0 })),
        "{r:?}"
    );
    assert!(holds(n, 0, 0, 0) && holds(n, 0, 1, 0), "content kept");
    let i = info(n, 0);
    assert_eq!((i.erase_count, i.programmed_pages), (0, 2));
    assert_eq!(i.health, BlockHealth::Good);
    let s = n.stats();
    assert_eq!((s.erase_failures, s.blocks_erased), (1, 0));
    program(n, 0, 2).expect("the block still programs");
}
on_both!(
    erase_failure,
    small(),
    FaultConfig {
        erase_fail_prob: 1.0,
        ..none()
    }
);

fn uncorrectable_reads(bench: &Bench) {
    // Always uncorrectable: the data buffer is not filled, OOB reads are not affected.
    let always = bench.device(
        small(),
        FaultConfig {
            read_uncorrectable_prob: 1.0,
            ..none()
        },
        None,
    );
    let n = always.nand();
    program(n, 0, 0).expect("program");
    let r = read(n, 0, 0);
    assert!(
        matches!(
            r,
            Err(NandError::Uncorrectable {
                block: 0,
                page: 0,
                ..
            })
        ),
        "{r:?}"
    );
    assert!(r.as_ref().is_err_and(NandError::is_media_failure));
    assert_eq!(n.stats().uncorrectable_reads, 1);
    assert_eq!(
        read_oob(n, 0, 0).expect("oob"),
        pattern(n.geometry(), 0, 0, 0).1
    );

    // Transient: a re-read draws again and returns the right data.
    let half = bench.device(
        small(),
        FaultConfig {
            read_uncorrectable_prob: 0.5,
            ..none()
        },
        None,
    );
    let n = half.nand();
    program(n, 0, 0).expect("program");
    let (mut ok, mut bad) = (0, 0);
    for _ in 0..64 {
        match read(n, 0, 0) {
            Ok(page) => {
                assert_eq!(page, pattern(n.geometry(), 0, 0, 0));
                ok += 1;
            }
            Err(NandError::Uncorrectable { .. }) => bad += 1,
            Err(e) => panic!("{e}"),
        }
    }
    assert!(ok > 0 && bad > 0, "{ok} ok, {bad} uncorrectable");
    assert_eq!(n.stats().uncorrectable_reads, bad);

    // More raw bit errors than the ECC corrects.
    let weak = bench.device(
        small(),
        FaultConfig {
            ber_fresh: 1e-3,
            ecc_correctable_bits: 0,
            ..none()
        },
        None,
    );
    let n = weak.nand();
    program(n, 0, 0).expect("program");
    let r = read(n, 0, 0);
    assert!(
        matches!(r, Err(NandError::Uncorrectable { bits, .. }) if bits > 0),
        "{r:?}"
    );
}
on_both!(uncorrectable_reads);

fn bit_errors_grow_with_erase_count(n: &dyn Nand) {
    // ber_per_cycle 2e-5 over 32768 bits: about 0.66 raw bit errors per read per P/E cycle.
    for (block, cycles) in [(0, 0), (1, 4), (2, 32)] {
        for _ in 0..cycles {
            n.erase_block(block).expect("erase");
        }
        program(n, block, 0).expect("program");
    }
    let mut totals = Vec::new();
    for block in 0..3 {
        let before = n.stats().bits_corrected;
        let mut total = 0u64;
        for _ in 0..40 {
            let mut data = vec![0; 4096];
            let mut oob = vec![0; 64];
            let ri = n.read_page(block, 0, &mut data, &mut oob).expect("read");
            assert_eq!((data, oob), pattern(n.geometry(), block, 0, 0), "corrected");
            total += u64::from(ri.corrected_bits);
        }
        assert_eq!(n.stats().bits_corrected - before, total);
        totals.push(total);
    }
    assert_eq!(totals[0], 0, "a fresh block with ber_fresh 0");
    assert!(totals[0] < totals[1] && totals[1] < totals[2], "{totals:?}");
}
on_both!(
    bit_errors_grow_with_erase_count,
    small(),
    FaultConfig {
        ber_per_cycle: 2e-5,
        ecc_correctable_bits: 1000,
        ..none()
    }
);

fn mark_bad_retires_a_block(n: &dyn Nand) {
    program(n, 0, 0).expect("program");
    n.mark_bad(0).expect("mark_bad");
    assert_eq!(info(n, 0).health, BlockHealth::GrownBad);
    assert!(holds(n, 0, 0, 0), "a grown bad block stays readable");
    assert_eq!(
        read_oob(n, 0, 0).expect("oob"),
        pattern(n.geometry(), 0, 0, 0).1
    );
    assert!(matches!(
        program(n, 0, 1),
        Err(NandError::BadBlock { block: 0 })
    ));
    assert!(matches!(
        n.erase_block(0),
        Err(NandError::BadBlock { block: 0 })
    ));
    n.mark_bad(0).expect("marking twice is fine");
    let i = info(n, 0);
    assert_eq!(
        (i.health, i.programmed_pages, i.erase_count),
        (BlockHealth::GrownBad, 1, 0)
    );
    assert_eq!(info(n, 1).health, BlockHealth::Good);
    program(n, 1, 0).expect("other blocks are fine");
}
on_both!(mark_bad_retires_a_block, small(), none());

// ---------------------------------------------------------------------------------------------
// Power loss

/// Blocks 0..16 get 2 synced pages and then 0..=6 pending pages. Returns pages programmed per block.
fn synced_then_pending(n: &dyn Nand) -> Vec<u32> {
    let mut programmed = Vec::new();
    for b in 0..16 {
        program(n, b, 0).expect("program");
        program(n, b, 1).expect("program");
    }
    n.sync().expect("sync");
    for b in 0..16 {
        let total = 2 + (b * 5 + 3) % 7;
        for p in 2..total {
            program(n, b, p).expect("program");
        }
        programmed.push(total);
    }
    programmed
}

fn power_cut_keeps_synced_and_a_prefix_of_pending(bench: &Bench) {
    let (mut lost_some, mut kept_some_pending) = (false, false);
    for seed in 1..=4 {
        let dev = bench.device(small(), none(), None); // torn_write_prob 0
        let n = dev.nand();
        let before = synced_then_pending(n);
        dev.power_cut(seed);
        for b in 0..16 {
            let after = info(n, b).programmed_pages;
            assert!(
                (2..=before[b as usize]).contains(&after),
                "block {b}: {after} pages of {}",
                before[b as usize]
            );
            for p in 0..after {
                assert!(holds(n, b, p, 0), "block {b} page {p} survived intact");
            }
            for p in after..8 {
                assert!(erased(read(n, b, p), b, p), "block {b} page {p} erased");
            }
            lost_some |= after < before[b as usize];
            kept_some_pending |= after > 2;
        }
        // Afterwards everything is durable: a second cut changes nothing.
        let now: Vec<BlockInfo> = (0..16).map(|b| info(n, b)).collect();
        dev.power_cut(seed + 100);
        assert_eq!(now, (0..16).map(|b| info(n, b)).collect::<Vec<_>>());
        // And the blocks program on from where they stand.
        for (b, i) in now.iter().enumerate() {
            if i.programmed_pages < 8 {
                program(n, b as u32, i.programmed_pages).expect("program after the cut");
            }
        }
    }
    assert!(lost_some && kept_some_pending);
}
on_both!(power_cut_keeps_synced_and_a_prefix_of_pending);

fn power_cut_tears_pages(bench: &Bench) {
    let mut torn = 0;
    for seed in 1..=4 {
        let faults = FaultConfig {
            torn_write_prob: 1.0,
            ..none()
        };
        let dev = bench.device(small(), faults, None);
        let n = dev.nand();
        let before = synced_then_pending(n);
        dev.power_cut(seed);
        for b in 0..16 {
            let after = info(n, b).programmed_pages;
            assert!((2..=before[b as usize]).contains(&after));
            for p in 0..after.saturating_sub(1) {
                assert!(holds(n, b, p, 0), "block {b} page {p}");
            }
            let last = after - 1;
            let intact = holds(n, b, last, 0);
            if !intact {
                // Torn: programmed (readable) but garbage, and never a synced page.
                assert!(last >= 2, "block {b}: synced page {last} torn");
                torn += 1;
            }
            if after < before[b as usize] {
                assert!(
                    !intact,
                    "block {b}: with torn_write_prob 1 the first lost page is torn"
                );
            }
            for p in after..8 {
                assert!(erased(read(n, b, p), b, p));
            }
        }
    }
    assert!(torn > 0);
}
on_both!(power_cut_tears_pages);

fn power_rail_trips_after_n_ops(bench: &Bench) {
    let rail = Arc::new(PowerRail::new());
    let a = bench.device(small(), none(), Some(rail.clone()));
    let b = bench.device(small(), none(), Some(rail.clone()));
    let (a, b) = (a.nand(), b.nand());
    program(a, 0, 0).expect("program");
    program(b, 0, 0).expect("program");
    a.sync().expect("sync");
    b.sync().expect("sync");

    // Every mutating operation counts (program, erase, sync, mark_bad), on any device of the rail.
    rail.arm(5);
    program(a, 0, 1).expect("op 1");
    assert!(holds(a, 0, 0, 0), "reads do not count");
    info(b, 0);
    program(b, 0, 1).expect("op 2");
    a.erase_block(1).expect("op 3");
    b.sync().expect("op 4");
    b.mark_bad(7).expect("op 5");
    let r = program(a, 0, 2);
    assert!(matches!(r, Err(NandError::PowerLost)), "op 6: {r:?}");
    assert!(rail.is_lost());
    assert_eq!(
        info(a, 0).programmed_pages,
        2,
        "the op that lost power did nothing"
    );

    for n in [a, b] {
        let lost = |r: Result<(), NandError>| {
            assert!(matches!(r, Err(NandError::PowerLost)), "{r:?}");
        };
        lost(program(n, 0, 2));
        lost(program(n, 3, 0));
        lost(read(n, 0, 0).map(drop));
        lost(read_oob(n, 0, 0).map(drop));
        lost(n.erase_block(2));
        lost(n.mark_bad(2));
        lost(n.sync());
        assert_eq!(info(n, 2).health, BlockHealth::Good);
        assert_eq!(info(n, 0).programmed_pages, 2);
    }

    rail.restore();
    for n in [a, b] {
        assert!(holds(n, 0, 0, 0), "synced before the cut");
        program(n, 0, 2).expect("power is back");
        n.sync().expect("sync");
    }
    assert!(holds(a, 0, 1, 0) && holds(b, 0, 1, 0));
}
on_both!(power_rail_trips_after_n_ops);

fn power_loss_tears_the_interrupted_program_only(bench: &Bench) {
    let rail = Arc::new(PowerRail::new());
    let faults = FaultConfig {
        torn_write_prob: 1.0,
        ..none()
    };
    let a = bench.device(small(), faults.clone(), Some(rail.clone()));
    let b = bench.device(small(), faults, Some(rail.clone()));
    rail.arm(0);
    assert!(matches!(program(a.nand(), 0, 0), Err(NandError::PowerLost)));
    assert_eq!(
        info(a.nand(), 0).programmed_pages,
        1,
        "the interrupted program left a torn page"
    );
    // Later operations fail without touching the media.
    for n in [a.nand(), b.nand()] {
        assert!(matches!(
            program(n, 0, n.block_info(0).expect("info").programmed_pages),
            Err(NandError::PowerLost)
        ));
        assert!(matches!(n.erase_block(0), Err(NandError::PowerLost)));
    }
    assert_eq!(info(a.nand(), 0).programmed_pages, 1);
    assert_eq!(info(a.nand(), 0).erase_count, 0);
    assert_eq!(info(b.nand(), 0).programmed_pages, 0);
    rail.restore();
    a.power_cut(1);
    b.power_cut(1);
    let p = info(a.nand(), 0).programmed_pages;
    assert!(p <= 1);
    if p == 1 {
        assert!(!holds(a.nand(), 0, 0, 0), "torn: programmed but garbage");
    }
    assert_eq!(info(b.nand(), 0).programmed_pages, 0);
    program(b.nand(), 0, 0).expect("program after restore");
}
on_both!(power_loss_tears_the_interrupted_program_only);

// ---------------------------------------------------------------------------------------------
// Determinism

/// A script of operations under every kind of fault; returns everything it observed.
fn fault_trace(dev: &AnyDev) -> Vec<String> {
    let n = dev.nand();
    let mut trace = Vec::new();
    let ppb = n.geometry().pages_per_block;
    for round in 0..5u32 {
        for b in 0..n.geometry().blocks() {
            trace.push(format!("{b} {:?}", n.block_info(b)));
            trace.push(format!("erase {b} {:?}", n.erase_block(b)));
            for p in 0..ppb / 2 {
                trace.push(format!("program {b} {p} {:?}", program_gen(n, b, p, round)));
            }
            for p in 0..ppb / 2 {
                let mut data = vec![0; n.geometry().page_size as usize];
                let mut oob = vec![0; n.geometry().oob_size as usize];
                let r = n
                    .read_page(b, p, &mut data, &mut oob)
                    .map(|ri| (ri, crc32fast::hash(&data), crc32fast::hash(&oob)));
                trace.push(format!("read {b} {p} {r:?}"));
            }
        }
        if round == 2 {
            dev.power_cut(99);
        } else {
            trace.push(format!("sync {:?}", n.sync()));
        }
    }
    trace.push(format!("{:?}", n.stats()));
    trace
}

fn same_seed_same_faults(bench: &Bench) {
    let faults = FaultConfig {
        seed: 7,
        endurance_cycles: 4,
        factory_bad_ratio: 0.1,
        program_fail_prob: 0.1,
        erase_fail_prob: 0.1,
        read_uncorrectable_prob: 0.1,
        ber_fresh: 1e-4,
        ber_per_cycle: 1e-4,
        ecc_correctable_bits: 6,
        torn_write_prob: 0.5,
    };
    let one = fault_trace(&bench.device(small(), faults.clone(), None));
    let two = fault_trace(&bench.device(small(), faults.clone(), None));
    assert_eq!(one, two);
    for kind in [
        "ProgramFailed",
        "EraseFailed",
        "Uncorrectable",
        "corrected_bits",
    ] {
        assert!(
            one.iter().any(|l| l.contains(kind)),
            "no {kind} in the trace"
        );
    }
    let other = fault_trace(&bench.device(small(), FaultConfig { seed: 8, ..faults }, None));
    assert_ne!(one, other);
}
on_both!(same_seed_same_faults);

// ---------------------------------------------------------------------------------------------
// FileNand: restarts and damaged files

/// Everything a device shows: block infos and the content of every readable page.
fn snapshot(n: &dyn Nand) -> Vec<(BlockInfo, Vec<Page>)> {
    (0..n.geometry().blocks())
        .map(|b| {
            let i = info(n, b);
            let pages = if i.health == BlockHealth::FactoryBad {
                Vec::new()
            } else {
                (0..i.programmed_pages)
                    .map(|p| read(n, b, p).expect("read"))
                    .collect()
            };
            (i, pages)
        })
        .collect()
}

fn geometry_64() -> Geometry {
    Geometry {
        blocks_per_plane: 32,
        ..small()
    }
}

#[test]
fn file_restart_keeps_everything() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("dev.nand");
    let faults = FaultConfig {
        seed: 5,
        factory_bad_ratio: 0.1,
        ..none()
    };
    let before = {
        let dev = FileNand::create(&path, geometry_64(), faults.clone(), None).expect("create");
        let n: &dyn Nand = &dev;
        let good: Vec<u32> = (0..64)
            .filter(|&b| info(n, b).health == BlockHealth::Good)
            .collect();
        assert!(good.len() < 64, "some factory bad blocks");
        for (i, &b) in good.iter().enumerate().take(12) {
            for _ in 0..i % 4 {
                n.erase_block(b).expect("erase");
            }
            for p in 0..(i as u32 % 9) {
                program_gen(n, b, p, i as u32).expect("program");
            }
        }
        n.mark_bad(good[3]).expect("mark_bad");
        n.sync().expect("sync");
        // Pending at the drop: a process exit keeps what was written (not a power cut).
        program_gen(n, good[20], 0, 9).expect("program");
        snapshot(n)
    };
    let header = FileNand::read_header(&path).expect("header");
    assert_eq!((header.geometry, header.fault_seed), (geometry_64(), 5));

    // Reopened with other fault knobs: bad blocks come from the file, not from the seed.
    let dev = FileNand::open(&path, none(), None).expect("open");
    assert_eq!(*dev.geometry(), geometry_64());
    assert_eq!(snapshot(&dev), before);
    let grown = before
        .iter()
        .filter(|(i, _)| i.health == BlockHealth::GrownBad)
        .count();
    assert_eq!(grown, 1);
    assert!(before.iter().any(|(i, _)| i.erase_count == 3));

    // It carries on: the next page programs, a programmed one is refused.
    let (b, _) = before
        .iter()
        .enumerate()
        .find(|(_, (i, _))| i.health == BlockHealth::Good && (1..8).contains(&i.programmed_pages))
        .expect("a partly programmed block");
    let next = before[b].0.programmed_pages;
    program(&dev, b as u32, next).expect("program after reopen");
    assert!(matches!(
        program(&dev, b as u32, 0),
        Err(NandError::NotErased { .. })
    ));

    // A power cut's outcome is persisted too.
    dev.power_cut(3).expect("power cut");
    let after_cut = snapshot(&dev);
    drop(dev);
    let dev = FileNand::open(&path, none(), None).expect("reopen");
    assert_eq!(snapshot(&dev), after_cut);
}

fn format_reason(r: Result<FileNand, NandError>, path: &Path) -> String {
    match r {
        Err(NandError::Format { path: p, reason }) => {
            assert_eq!(p, path.display().to_string());
            reason
        }
        other => panic!("expected a format error, got {other:?}"),
    }
}

#[test]
fn file_open_rejects_damaged_files() {
    use std::os::unix::fs::FileExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let layout = FileLayout::of(&small());
    let fresh = |name: &str| {
        let path = dir.path().join(name);
        FileNand::create(&path, small(), none(), None).expect("create");
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .expect("open");
        (path, file)
    };
    let poke = |file: &std::fs::File, at: u64, bytes: &[u8]| {
        file.write_all_at(bytes, at).expect("poke");
    };

    let (path, file) = fresh("magic");
    poke(&file, 0, b"X");
    assert!(format_reason(FileNand::open(&path, none(), None), &path).contains("magic"));

    let (path, file) = fresh("header-byte");
    poke(&file, 20, &[7]); // dies_per_channel
    assert!(format_reason(FileNand::open(&path, none(), None), &path).contains("header crc"));

    let (path, file) = fresh("version");
    poke(&file, 8, &2u32.to_le_bytes());
    let reason = format_reason(FileNand::open(&path, none(), None), &path);
    assert!(reason.contains("unsupported format version 2"), "{reason}");

    let (path, file) = fresh("truncated");
    file.set_len(layout.file_len - 4096).expect("truncate");
    let reason = format_reason(FileNand::open(&path, none(), None), &path);
    assert!(reason.contains("truncated"), "{reason}");

    let (path, file) = fresh("stub");
    file.set_len(100).expect("truncate");
    let reason = format_reason(FileNand::open(&path, none(), None), &path);
    assert!(reason.contains("truncated"), "{reason}");

    let (path, file) = fresh("longer");
    file.set_len(layout.file_len + 4096).expect("extend");
    let reason = format_reason(FileNand::open(&path, none(), None), &path);
    assert!(reason.contains("inconsistent"), "{reason}");

    let (path, file) = fresh("meta");
    poke(&file, layout.meta_offset + 3 * 16 + 1, &[0x40]);
    let reason = format_reason(FileNand::open(&path, none(), None), &path);
    assert!(
        reason.contains("block 3") && reason.contains("crc"),
        "{reason}"
    );

    let missing = dir.path().join("missing");
    assert!(matches!(
        FileNand::open(&missing, none(), None),
        Err(NandError::Io { .. })
    ));
    let (path, _) = fresh("exists");
    assert!(
        matches!(
            FileNand::create(&path, small(), none(), None),
            Err(NandError::Io { source, .. }) if source.kind() == std::io::ErrorKind::AlreadyExists
        ),
        "create never clobbers a device"
    );
    let bad = Geometry {
        page_size: 1000,
        ..small()
    };
    assert!(matches!(
        FileNand::create(&dir.path().join("bad"), bad, none(), None),
        Err(NandError::Geometry { .. })
    ));
}

#[test]
fn file_is_sparse_and_reads_oob_alone() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("dev.nand");
    let dev = FileNand::create(&path, many_blocks(), none(), None).expect("create");
    let layout = *dev.store().layout();
    let meta = std::fs::metadata(&path).expect("metadata");
    assert_eq!(meta.len(), layout.file_len);
    use std::os::unix::fs::MetadataExt;
    assert!(
        meta.blocks() * 512 < 1 << 20,
        "{} bytes allocated for a 16 MiB device",
        meta.blocks() * 512
    );
    program(&dev, 5, 0).expect("program");
    // The OOB is where the docs say.
    let raw = std::fs::read(&path).expect("read file");
    let (data, oob) = pattern(&many_blocks(), 5, 0, 0);
    let index = 5 * 4;
    let at = (layout.oob_offset + index * 64) as usize;
    assert_eq!(&raw[at..at + 64], &oob[..]);
    let at = (layout.data_offset + index * 4096) as usize;
    assert_eq!(&raw[at..at + 4096], &data[..]);
    assert_eq!(read_oob(&dev, 5, 0).expect("oob"), oob);
}

/// An erase leaves none of the block's old bytes in the file (data or OOB), and a power cut that
/// drops pages drops their bytes too; other blocks keep theirs.
#[test]
fn file_erase_drops_old_bytes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("dev.nand");
    let g = many_blocks();
    let dev = FileNand::create(&path, g, none(), None).expect("create");
    let layout = *dev.store().layout();
    for page in 0..g.pages_per_block {
        program(&dev, 5, page).expect("program");
        program(&dev, 6, page).expect("program");
    }
    let block_bytes = |raw: &[u8], block: u64| {
        let pages = u64::from(g.pages_per_block);
        let data = (layout.data_offset + block * pages * 4096) as usize;
        let oob = (layout.oob_offset + block * pages * 64) as usize;
        let mut bytes = raw[data..data + (pages * 4096) as usize].to_vec();
        bytes.extend_from_slice(&raw[oob..oob + (pages * 64) as usize]);
        bytes
    };
    let raw = std::fs::read(&path).expect("read file");
    assert!(block_bytes(&raw, 5).iter().any(|&b| b != 0));
    dev.erase_block(5).expect("erase");
    let raw = std::fs::read(&path).expect("read file");
    assert!(
        block_bytes(&raw, 5).iter().all(|&b| b == 0),
        "old bytes left"
    );
    assert!(holds(&dev, 6, 0, 0), "a neighbour lost its data");
    let (data, _) = pattern(&g, 6, 3, 0);
    let at = (layout.data_offset + (6 * 4 + 3) * 4096) as usize;
    assert_eq!(&raw[at..at + 4096], &data[..]);
}

#[test]
fn a_keep_data_erase_drops_only_the_oob_until_the_data_is_dropped_too() {
    use std::os::unix::fs::FileExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("keep.nand");
    let dev = FileNand::create(&path, small(), none(), None).expect("create");
    let layout = FileLayout::of(&small());
    let file_bytes = |at: u64, len: usize| {
        let mut buf = vec![0u8; len];
        std::fs::File::open(&path)
            .expect("open")
            .read_exact_at(&mut buf, at)
            .expect("read");
        buf
    };
    let n: &dyn Nand = &dev;
    let good: Vec<u32> = (0..small().blocks())
        .filter(|&b| info(n, b).health == BlockHealth::Good)
        .take(2)
        .collect();
    let (kept, dropped) = (good[0], good[1]);
    let data_at = |b: u32| layout.data_offset + u64::from(b * 8) * 4096;
    let oob_at = |b: u32| layout.oob_offset + u64::from(b * 8) * 64;
    for b in [kept, dropped] {
        program_gen(n, b, 0, 3).expect("program");
    }
    let (data, oob) = pattern(n.geometry(), kept, 0, 3);
    assert_eq!(file_bytes(data_at(kept), 4096), data);
    assert_eq!(file_bytes(oob_at(kept), 64), oob);

    // Read through the device (its mapping of the file) first, so the pages are mapped when the
    // erases drop their bytes: the reads after the reprograms below must see the new bytes.
    assert!(dev.store().is_mapped());
    assert!(holds(n, kept, 0, 3) && holds(n, dropped, 0, 3));
    dev.store().set_erase(FileErase::KeepData);
    n.erase_block(kept).expect("erase");
    dev.store().set_erase(FileErase::DropData);
    n.erase_block(dropped).expect("erase");
    // The device shows both erased; the file keeps the first one's data bytes only.
    assert!(erased(read(n, kept, 0), kept, 0));
    assert!(erased(read(n, dropped, 0), dropped, 0));
    assert_eq!(file_bytes(data_at(kept), 4096), data);
    assert_eq!(file_bytes(oob_at(kept), 64), vec![0; 64]);
    assert_eq!(file_bytes(data_at(dropped), 4096), vec![0; 4096]);
    // A program over kept bytes replaces them.
    program_gen(n, kept, 0, 4).expect("program");
    assert!(holds(n, kept, 0, 4));
    // Dropping erased data leaves programmed blocks alone and zeroes the rest.
    program_gen(n, dropped, 0, 5).expect("program");
    dev.store().set_erase(FileErase::KeepData);
    n.erase_block(kept).expect("erase");
    let good_blocks = (0..small().blocks())
        .filter(|&b| info(n, b).health == BlockHealth::Good)
        .count() as u64;
    assert_eq!(dev.drop_erased_data().expect("drop"), good_blocks - 1);
    assert_eq!(file_bytes(data_at(kept), 4096), vec![0; 4096]);
    assert!(holds(n, dropped, 0, 5));
}
