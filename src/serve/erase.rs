//! Erasing every block of every namespace of a data directory: the second step of a terminate,
//! after the key is destroyed (crypto-erase first, as AWS does, then the media).
//!
//! The devices are found in the data directory itself (`ns<N>/nand-<i>.img`), not in a
//! configuration, so a namespace that was served once and later removed from the configuration
//! is erased too. No checkpoint is written: a terminated data directory has no instance record,
//! and the next `ferrite serve` formats every namespace fresh.

use std::path::{Path, PathBuf};

use anyhow::Context;
use ftl::nand::{BlockHealth, Nand, NandError};

use crate::glue;

/// One namespace's device files.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NamespaceFiles {
    pub dir: PathBuf,
    pub devices: u32,
}

/// What erasing found and did, over all devices.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EraseTally {
    pub devices: u32,
    pub blocks: u64,
    /// Good blocks that held programmed pages and were erased now.
    pub erased_blocks: u64,
    /// Blocks whose erase failed now: retired (marked bad), like any block that fails an erase.
    pub failed_blocks: u64,
    /// Blocks retired earlier (grown bad): NAND cannot erase them, so their old pages stay, sealed
    /// under the destroyed key when encryption was on.
    pub retired_blocks: u64,
}

/// The namespaces under `data_dir`: every `ns<N>` directory with `nand-0.img`, counting its
/// devices up to the first missing index.
pub fn namespaces(data_dir: &Path) -> anyhow::Result<Vec<NamespaceFiles>> {
    let entries = match std::fs::read_dir(data_dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("listing {}", data_dir.display())),
    };
    let mut found = Vec::new();
    for entry in entries {
        let entry = entry.with_context(|| format!("listing {}", data_dir.display()))?;
        let name = entry.file_name();
        let is_namespace = name
            .to_str()
            .and_then(|n| n.strip_prefix("ns"))
            .is_some_and(|nsid| nsid.parse::<u32>().is_ok());
        if !is_namespace || !entry.path().is_dir() {
            continue;
        }
        let dir = entry.path();
        let devices = (0..)
            .take_while(|&i| glue::device_path(&dir, i).exists())
            .count() as u32;
        if devices > 0 {
            found.push(NamespaceFiles { dir, devices });
        }
    }
    found.sort_by(|a, b| a.dir.cmp(&b.dir));
    Ok(found)
}

/// Erases every programmed good block of every device under `data_dir`, calling `progress` with
/// one line per device.
pub fn erase_all(data_dir: &Path, progress: &mut dyn FnMut(&str)) -> anyhow::Result<EraseTally> {
    let mut tally = EraseTally::default();
    for ns in namespaces(data_dir)? {
        let devices = glue::open_file_nands(&ns.dir, ns.devices, glue::FileModes::default())?;
        for (index, device) in devices.iter().enumerate() {
            let path = glue::device_path(&ns.dir, index as u32);
            let done = erase_device(device.as_ref())
                .with_context(|| format!("erasing {}", path.display()))?;
            // What erases of the running instance left in the file (sealed devices keep the
            // ciphertext of erased blocks until programmed over): dropped too.
            device
                .drop_erased_data()
                .with_context(|| format!("dropping erased data of {}", path.display()))?;
            device
                .sync()
                .with_context(|| format!("syncing {}", path.display()))?;
            progress(&format!(
                "erased {}: {} of {} blocks held data{}{}",
                path.display(),
                done.erased_blocks,
                done.blocks,
                plural_note(done.failed_blocks, "failed to erase and retired"),
                plural_note(done.retired_blocks, "retired earlier, cannot be erased"),
            ));
            tally.devices += 1;
            tally.blocks += done.blocks;
            tally.erased_blocks += done.erased_blocks;
            tally.failed_blocks += done.failed_blocks;
            tally.retired_blocks += done.retired_blocks;
        }
    }
    Ok(tally)
}

fn plural_note(count: u64, what: &str) -> String {
    if count == 0 {
        String::new()
    } else {
        format!(", {count} {what}")
    }
}

fn erase_device(device: &dyn Nand) -> Result<EraseTally, NandError> {
    let blocks = device.geometry().blocks();
    let mut tally = EraseTally {
        devices: 1,
        blocks: u64::from(blocks),
        ..EraseTally::default()
    };
    for block in 0..blocks {
        let info = device.block_info(block)?;
        match info.health {
            BlockHealth::FactoryBad => {}
            BlockHealth::GrownBad => tally.retired_blocks += 1,
            BlockHealth::Good if info.programmed_pages == 0 => {}
            BlockHealth::Good => match device.erase_block(block) {
                Ok(()) => tally.erased_blocks += 1,
                Err(NandError::EraseFailed { .. }) => {
                    device.mark_bad(block)?;
                    tally.failed_blocks += 1;
                }
                Err(e) => return Err(e),
            },
        }
    }
    Ok(tally)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ftl::nand::Geometry;

    fn small() -> Geometry {
        Geometry {
            channels: 1,
            dies_per_channel: 1,
            planes_per_die: 1,
            blocks_per_plane: 8,
            pages_per_block: 4,
            page_size: 4096,
            oob_size: 64,
        }
    }

    #[test]
    fn every_programmed_block_of_every_namespace_is_erased() {
        let dir = tempfile::tempdir().unwrap();
        let ns1 = dir.path().join("ns1");
        let ns7 = dir.path().join("ns7");
        std::fs::create_dir_all(dir.path().join("nsx")).unwrap();
        let devs1 = glue::file_devices(&ns1, small(), 2).unwrap();
        let devs7 = glue::file_devices(&ns7, small(), 1).unwrap();
        let page = vec![0xa5u8; 4096];
        let oob = vec![0u8; 64];
        for (dev, block) in [
            (&devs1[0], 0),
            (&devs1[1], 3),
            (&devs7[0], 5),
            (&devs7[0], 6),
        ] {
            dev.program_page(block, 0, &page, &oob).unwrap();
        }
        drop((devs1, devs7));
        assert_eq!(
            namespaces(dir.path()).unwrap(),
            vec![
                NamespaceFiles {
                    dir: ns1.clone(),
                    devices: 2
                },
                NamespaceFiles {
                    dir: ns7.clone(),
                    devices: 1
                }
            ]
        );
        let mut lines = Vec::new();
        let tally = erase_all(dir.path(), &mut |l| lines.push(l.to_owned())).unwrap();
        assert_eq!(
            (tally.devices, tally.blocks, tally.erased_blocks),
            (3, 24, 4)
        );
        assert_eq!(lines.len(), 3);
        assert!(lines[0].contains("nand-0.img: 1 of 8 blocks"), "{lines:?}");
        for (ns, count) in [(&ns1, 2), (&ns7, 1)] {
            for dev in glue::open_file_devices(ns, count).unwrap() {
                for b in 0..8 {
                    assert_eq!(dev.block_info(b).unwrap().programmed_pages, 0);
                }
            }
        }
        let again = erase_all(dir.path(), &mut |_| {}).unwrap();
        assert_eq!(again.erased_blocks, 0);
    }

    #[test]
    fn a_data_dir_without_namespaces_erases_nothing() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(namespaces(&dir.path().join("absent")).unwrap(), vec![]);
        assert_eq!(
            erase_all(dir.path(), &mut |_| {}).unwrap(),
            EraseTally::default()
        );
    }
}
