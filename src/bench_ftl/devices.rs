//! The bench's devices: how `--devices`, `--blocks` and `--pages-per-block` become a geometry, and
//! the RAM backend (the file backend is wired in `glue.rs`).

use std::sync::Arc;

use anyhow::{Context, bail};
use ftl::nand::{FaultConfig, Geometry, MemNand, Nand};

/// Per-device geometry for `blocks` blocks in total over `devices` devices: 2 channels x 2 dies
/// when the per-device count allows it (the default 4096 over 8 is 2 x 2 x 1 x 128), else fewer.
/// NAND pages of `page_size` bytes carry a 64-byte OOB record per 4 KiB logical page.
pub fn geometry_for(
    devices: u32,
    blocks: u32,
    pages_per_block: u32,
    page_size: u32,
) -> anyhow::Result<Geometry> {
    if devices == 0 {
        bail!("--devices must be at least 1");
    }
    if blocks == 0 || !blocks.is_multiple_of(devices) {
        bail!("--blocks {blocks} must be a positive multiple of --devices {devices}");
    }
    let per_device = blocks / devices;
    let (channels, dies_per_channel) = match per_device {
        n if n.is_multiple_of(4) => (2, 2),
        n if n.is_multiple_of(2) => (1, 2),
        _ => (1, 1),
    };
    let geometry = Geometry {
        channels,
        dies_per_channel,
        planes_per_die: 1,
        blocks_per_plane: per_device / (channels * dies_per_channel),
        pages_per_block,
        page_size,
        oob_size: 64 * (page_size / 4096).max(1),
    };
    geometry.validate().with_context(|| {
        format!(
            "{devices} devices x {per_device} blocks x {pages_per_block} pages of {page_size} bytes"
        )
    })?;
    Ok(geometry)
}

/// `count` fault-free RAM devices.
pub fn mem_devices(geometry: Geometry, count: u32) -> anyhow::Result<Vec<Arc<dyn Nand>>> {
    (0..count)
        .map(|i| {
            let faults = FaultConfig::none().for_device(i);
            let dev =
                MemNand::new(geometry, faults, None).with_context(|| format!("device {i}"))?;
            Ok(Arc::new(dev) as Arc<dyn Nand>)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_bench_geometry_is_the_nand_default() {
        let g = geometry_for(8, 4096, 256, 4096).expect("geometry");
        assert_eq!(g, Geometry::default());
        assert_eq!(geometry_for(2, 6, 64, 4096).expect("odd").dies(), 1);
        assert!(geometry_for(8, 4095, 256, 4096).is_err());
        let big = geometry_for(8, 4096, 256, 16384).expect("16 KiB pages");
        assert_eq!((big.page_size, big.oob_size), (16384, 256));
        assert!(geometry_for(8, 4096, 256, 8192).is_err());
        assert!(geometry_for(0, 4096, 256, 4096).is_err());
        assert!(geometry_for(8, 4096, 3, 4096).is_err());
    }
}
