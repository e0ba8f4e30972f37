//! The FTL volume behind each namespace: formatted on first start, recovered on every later one.

use std::sync::Arc;

use anyhow::Context;
use ftl::nand::FileDurability;
use ftl::{Ftl, RecoveryReport};
use nvme_target::{ActiveNamespace, FtlNamespace, NamespaceIdentity, PowerOnClock};

use super::config::{NamespaceConfig, ServeConfig};
use crate::glue;

/// What a device file's `sync` must survive. Sealed instance storage is unreadable after a host
/// failure (its key is RAM-only), so it needs to survive only a crash of this process, which loses
/// nothing already written to the page cache: no disk flush per barrier. Unsealed data outlives
/// the host, so its barriers and flushes reach the disk.
fn durability(config: &ServeConfig) -> FileDurability {
    if config.encryption {
        FileDurability::Process
    } else {
        FileDurability::Host
    }
}

/// A namespace's FTL, and whether it was formatted now or recovered from its files.
#[derive(Debug)]
pub struct Volume {
    pub nsid: u32,
    pub ftl_namespace: Arc<FtlNamespace>,
    pub recovered: Option<RecoveryReport>,
}

/// Opens namespace `ns`'s devices: recovers them, or formats them on first use and, with
/// `fresh`, formats the existing ones (their data belongs to no key this instance has; the
/// device files stay, with their wear).
pub fn open_volume(
    config: &ServeConfig,
    ns: &NamespaceConfig,
    key: Option<&keys::InstanceKey>,
    fresh: bool,
) -> anyhow::Result<Volume> {
    let dir = config.namespace_dir(ns.nsid);
    let sealer = key.map(|k| k.sealer(u64::from(ns.nsid)));
    let exists = glue::device_path(&dir, 0).exists();
    let durability = durability(config);
    let (ftl, recovered) = if exists && fresh {
        let devices = glue::open_file_devices_with(&dir, ns.devices, durability)?;
        let ftl = Ftl::format_sealed(devices, config.ftl.clone(), sealer).with_context(|| {
            format!(
                "formatting namespace {} in {} fresh",
                ns.nsid,
                dir.display()
            )
        })?;
        (ftl, None)
    } else if exists {
        let devices = glue::open_file_devices_with(&dir, ns.devices, durability)?;
        let (ftl, report) = Ftl::open_sealed(devices, config.ftl.clone(), sealer)
            .with_context(|| format!("recovering namespace {} from {}", ns.nsid, dir.display()))?;
        (ftl, Some(report))
    } else {
        let devices = glue::file_devices_with(&dir, config.geometry, ns.devices, durability)?;
        let ftl = Ftl::format_sealed(devices, config.ftl.clone(), sealer)
            .with_context(|| format!("formatting namespace {} in {}", ns.nsid, dir.display()))?;
        (ftl, None)
    };
    Ok(Volume {
        nsid: ns.nsid,
        ftl_namespace: Arc::new(FtlNamespace::new(ftl)),
        recovered,
    })
}

/// The controller's view of a volume.
pub fn activate(
    ns: &NamespaceConfig,
    volume: &Volume,
    power_on: &Arc<PowerOnClock>,
) -> Arc<ActiveNamespace> {
    let serial = ns.serial();
    let identity = NamespaceIdentity {
        nsid: ns.nsid,
        eui64: NamespaceIdentity::eui64_from_serial(&serial),
        serial,
        model: "Ferrite NVMe namespace".to_owned(),
        read_only: ns.read_only,
    };
    ActiveNamespace::with_power_on(identity, volume.ftl_namespace.clone(), power_on.clone())
}

/// Closes a volume (flush + checkpoint) once nothing else holds it.
pub fn close_volume(volume: Volume) -> anyhow::Result<()> {
    let nsid = volume.nsid;
    let ns = Arc::try_unwrap(volume.ftl_namespace)
        .map_err(|_| anyhow::anyhow!("namespace {nsid} is still in use at close"))?;
    ns.into_inner()
        .close()
        .with_context(|| format!("closing namespace {nsid}"))
}
