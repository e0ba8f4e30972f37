#![allow(clippy::unwrap_used)]
//! Client seals: 28 bytes a client (a remote volume's sealing client) gives with each page of an
//! FTL in the clear. They are stored in the page's OOB record and must come back with the data
//! after GC and wear leveling moved the page, after a clean reopen and after a crash, and never
//! belong to another version of the page.

mod common;

use common::{Rig, geometry};
use ftl::nand::FaultConfig;
use ftl::{Ftl, FtlConfig, FtlError, SEAL_BYTES};
use keys::{Backend, InstanceKey};

/// A seal naming its page and version, so a seal of another page or version shows.
fn seal(lpa: u64, version: u64) -> [u8; SEAL_BYTES] {
    let mut s = [0u8; SEAL_BYTES];
    s[..8].copy_from_slice(&lpa.to_le_bytes());
    s[8..16].copy_from_slice(&version.to_le_bytes());
    s[16..].fill(0x5A ^ version as u8);
    s
}

fn check_all(ftl: &Ftl, version: &[u64]) {
    let mut buf = vec![0u8; 4096];
    for (lpa, &v) in version.iter().enumerate() {
        let lpa = lpa as u64;
        let got = ftl.read_client_sealed(lpa, &mut buf).unwrap();
        assert_eq!(buf, common::page(lpa, v), "data of lpa {lpa}");
        let want = if v == 0 {
            [0; SEAL_BYTES]
        } else {
            seal(lpa, v)
        };
        assert_eq!(got, want, "seal of lpa {lpa} version {v}");
    }
}

#[test]
fn seals_follow_their_pages_through_gc_wear_leveling_reopen_and_crash() {
    let rig = Rig::new(
        2,
        geometry(2, 16, 16),
        &FaultConfig::none(),
        FtlConfig::default(),
    );
    let ftl = rig.format();
    let n = ftl.logical_pages();
    let mut version = vec![0u64; n as usize];
    let mut x = 0x2545_f491_4f6c_dd1du64;
    // Cold pages written once (wear leveling moves them) and hot ones overwritten (GC moves
    // the survivors of their blocks).
    for i in 0..n * 6 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let lpa = if i < n { i } else { x % (n / 4) };
        version[lpa as usize] += 1;
        let v = version[lpa as usize];
        ftl.write_client_sealed(lpa, &common::page(lpa, v), &seal(lpa, v), i % 61 == 0)
            .unwrap();
    }
    // A trimmed page and a zeroed page read back with no seal.
    ftl.trim(n - 1, 1).unwrap();
    version[n as usize - 1] = 0;
    ftl.write_zeroes(n - 2, 1).unwrap();
    version[n as usize - 2] = 0;
    let stats = ftl.stats();
    assert!(stats.gc_pages_moved > 0, "{stats:?}");
    assert!(stats.wl_pages_moved > 0, "{stats:?}");
    check_all(&ftl, &version);
    ftl.close().unwrap();
    let (ftl, _) = rig.open();
    check_all(&ftl, &version);
    // Flushed writes, then more that are lost in the crash: each page reads back a version it
    // had, with that version's seal.
    ftl.flush().unwrap();
    for lpa in 0..8 {
        ftl.write_client_sealed(lpa, &common::page(lpa, 1000), &seal(lpa, 1000), false)
            .unwrap();
    }
    let (ftl, _) = rig.crash(ftl, 7);
    let mut buf = vec![0u8; 4096];
    for lpa in 0..n {
        let got = ftl.read_client_sealed(lpa, &mut buf).unwrap();
        let v = if buf == common::page(lpa, 1000) {
            1000
        } else {
            version[lpa as usize]
        };
        assert_eq!(buf, common::page(lpa, v), "data of lpa {lpa}");
        let want = if v == 0 {
            [0; SEAL_BYTES]
        } else {
            seal(lpa, v)
        };
        assert_eq!(got, want, "seal of lpa {lpa} after the crash");
    }
}

#[test]
fn a_plain_write_has_no_seal_and_a_sealed_ftl_refuses_client_seals() {
    let rig = Rig::small();
    let ftl = rig.format();
    ftl.write_client_sealed(3, &common::page(3, 1), &seal(3, 1), false)
        .unwrap();
    ftl.write(3, &common::page(3, 2), false).unwrap();
    let mut buf = vec![0u8; 4096];
    assert_eq!(
        ftl.read_client_sealed(3, &mut buf).unwrap(),
        [0; SEAL_BYTES]
    );
    drop(ftl);

    let rig = Rig::small();
    let key = InstanceKey::generate(Backend::AwsLc).unwrap();
    let ftl =
        Ftl::format_sealed(rig.dyn_devs(), FtlConfig::default(), Some(key.sealer(1))).unwrap();
    let e = ftl
        .write_client_sealed(0, &common::page(0, 1), &seal(0, 1), false)
        .unwrap_err();
    assert!(matches!(e, FtlError::Config(_)), "{e}");
    let e = ftl.read_client_sealed(0, &mut buf).unwrap_err();
    assert!(matches!(e, FtlError::Config(_)), "{e}");
}
