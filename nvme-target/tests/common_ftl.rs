//! Shared by the integration tests: a small FTL namespace over RAM NAND.
#![allow(dead_code, clippy::unwrap_used)]

use std::sync::Arc;

use ftl::nand::{FaultConfig, Geometry, MemNand, Nand};
use ftl::{Ftl, FtlConfig};
use nvme_target::{ActiveNamespace, FtlNamespace, NamespaceIdentity};

/// 2 devices x 2 dies x 16 blocks x 32 pages of 4 KiB: about 7 MiB of logical space.
pub fn small_ftl() -> Ftl {
    small_ftl_sealed(None)
}

/// `small_ftl` with every page sealed by `sealer` (None: in the clear).
pub fn small_ftl_sealed(sealer: Option<keys::PageSealer>) -> Ftl {
    let g = Geometry {
        channels: 1,
        dies_per_channel: 2,
        planes_per_die: 1,
        blocks_per_plane: 16,
        pages_per_block: 32,
        page_size: 4096,
        oob_size: 64,
    };
    let devices: Vec<Arc<dyn Nand>> = (0..2)
        .map(|i| {
            Arc::new(MemNand::new(g, FaultConfig::none().for_device(i), None).unwrap())
                as Arc<dyn Nand>
        })
        .collect();
    Ftl::format_sealed(devices, FtlConfig::default(), sealer).unwrap()
}

pub fn identity(read_only: bool) -> NamespaceIdentity {
    NamespaceIdentity {
        nsid: 1,
        serial: "FERRITE-TEST-1".into(),
        model: "Ferrite test namespace".into(),
        eui64: NamespaceIdentity::eui64_from_serial("FERRITE-TEST-1"),
        read_only,
    }
}

pub fn namespace(read_only: bool) -> Arc<ActiveNamespace> {
    ActiveNamespace::new(
        identity(read_only),
        Arc::new(FtlNamespace::new(small_ftl())),
    )
}
