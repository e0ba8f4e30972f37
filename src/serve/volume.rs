//! The volume behind each namespace: a local FTL, formatted on first start and recovered on every
//! later one, or a remote volume on a `ferrite ebs-server`, attached at start and detached at
//! close.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use ftl::{Ftl, RecoveryReport};
use nvme_target::{
    ActiveNamespace, FtlNamespace, Namespace, NamespaceIdentity, PowerOnClock, RemoteNamespace,
    RemoteTarget,
};
use zeroize::Zeroizing;

use super::config::{NamespaceConfig, RemoteConfig, ServeConfig};
use super::{generations, journal};
use crate::glue::{self, FileModes};
use ftl::nand::Nand;

/// What a device file's `sync` must survive and what its erases leave. Sealed instance storage is
/// unreadable after a host failure (its key is RAM-only), so it needs to survive only a crash of
/// this process, which loses nothing already written to the page cache: no disk flush per
/// barrier. Unsealed data outlives the host, so its barriers and flushes reach the disk. Either
/// way erases leave the data bytes in place until programmed over (zeroing them was 40% of a
/// plain random write's CPU), and a clean stop (`drop_erased_data`) or a terminate drops what
/// erased blocks kept.
fn file_modes(config: &ServeConfig) -> FileModes {
    if config.encryption {
        FileModes::SEALED
    } else {
        FileModes::UNSEALED
    }
}

/// What backs a namespace.
#[derive(Debug)]
pub enum Backend {
    Local(Arc<FtlNamespace>),
    Remote(Arc<RemoteNamespace>),
}

/// A namespace's volume, and how it came to be open.
#[derive(Debug)]
pub struct Volume {
    pub nsid: u32,
    pub backend: Backend,
    /// Local volumes: recovered from their files (Some) or formatted now (None).
    pub recovered: Option<RecoveryReport>,
    /// Sealed local volumes: where the generation table is saved at close, what became of the
    /// one found at start, and the key whose keyring entry names the saved table.
    pub generations: Option<(PathBuf, String, keys::InstanceKey)>,
}

impl Volume {
    pub fn namespace(&self) -> Arc<dyn Namespace> {
        match &self.backend {
            Backend::Local(ns) => ns.clone(),
            Backend::Remote(ns) => ns.clone(),
        }
    }

    /// One line saying how the volume was opened.
    pub fn describe(&self, ns: &NamespaceConfig) -> String {
        match (&self.backend, &ns.remote) {
            (Backend::Remote(remote), Some(r)) => format!(
                "namespace {}: remote volume {:?} on {} ({} paths, {})",
                self.nsid,
                r.volume,
                r.server,
                r.paths,
                if remote.is_sealed() {
                    "blocks sealed by this client"
                } else {
                    "blocks in the clear"
                }
            ),
            _ => {
                let opened = match &self.recovered {
                    Some(r) => format!("namespace {}: recovered ({r:?})", self.nsid),
                    None => format!("namespace {}: formatted", self.nsid),
                };
                match &self.generations {
                    Some((_, said, _)) => format!("{opened}; {said}"),
                    None => opened,
                }
            }
        }
    }
}

/// Attaches namespace `ns`'s remote volume: reads its credential and KEK files, runs the
/// handshake and ATTACH.
fn open_remote(ns: &NamespaceConfig, r: &RemoteConfig) -> anyhow::Result<Volume> {
    let credential = Zeroizing::new(std::fs::read(&r.credential_file).with_context(|| {
        format!(
            "namespace {}: reading the credential file {}",
            ns.nsid,
            r.credential_file.display()
        )
    })?);
    let kek = match &r.kek_file {
        Some(path) => Some(
            crate::ebs::kek::read_kek(path).with_context(|| format!("namespace {}", ns.nsid))?,
        ),
        None => None,
    };
    let server = r.server_addrs()?;
    let client = ebs_server::client::ClientConfig {
        srd: ebs_server::srd::Config {
            path_count: r.paths,
            payload_len_max: r.payload_len_max,
            ..ebs_server::srd::Config::default()
        },
        request_timeout_ms: r.request_timeout_ms,
        ..ebs_server::client::ClientConfig::default()
    };
    let remote = RemoteNamespace::attach(RemoteTarget {
        server,
        volume: r.volume.clone(),
        credential,
        kek,
        client,
        busy_wait_ms: r.busy_wait_ms,
    })
    .with_context(|| {
        format!(
            "namespace {}: attaching remote volume {:?} on {}",
            ns.nsid, r.volume, r.server
        )
    })?;
    Ok(Volume {
        nsid: ns.nsid,
        backend: Backend::Remote(Arc::new(remote)),
        recovered: None,
        generations: None,
    })
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
    if let Some(r) = &ns.remote {
        return open_remote(ns, r);
    }
    let dir = config.namespace_dir(ns.nsid);
    let sealer = key.map(|k| k.sealer(u64::from(ns.nsid)));
    let exists = glue::device_path(&dir, 0).exists();
    let modes = file_modes(config);
    let (ftl, recovered) = if exists && fresh {
        let devices = glue::open_file_devices_with(&dir, ns.devices, modes)?;
        let ftl = Ftl::format_sealed(devices, config.ftl.clone(), sealer).with_context(|| {
            format!(
                "formatting namespace {} in {} fresh",
                ns.nsid,
                dir.display()
            )
        })?;
        (ftl, None)
    } else if exists {
        // What erased blocks kept when the last run did not stop cleanly (a crash): dropped
        // before the devices open, so that no run begins with leftovers of an earlier one.
        drop_erased_data(config, ns)?;
        let devices = glue::open_file_devices_with(&dir, ns.devices, modes)?;
        let (ftl, report) = Ftl::open_sealed(devices, config.ftl.clone(), sealer)
            .with_context(|| format!("recovering namespace {} from {}", ns.nsid, dir.display()))?;
        (ftl, Some(report))
    } else {
        let devices = glue::file_devices_with(&dir, config.geometry, ns.devices, modes)?;
        let ftl = Ftl::format_sealed(devices, config.ftl.clone(), sealer)
            .with_context(|| format!("formatting namespace {} in {}", ns.nsid, dir.display()))?;
        (ftl, None)
    };
    let Some(key) = key else {
        return Ok(Volume {
            nsid: ns.nsid,
            backend: Backend::Local(Arc::new(FtlNamespace::new(ftl))),
            recovered,
            generations: None,
        });
    };
    let table_file = generations::path(&dir);
    let journal_file = journal::path(&dir);
    let said = if recovered.is_some() {
        let (table, applied) = generations::restore(&ftl, &table_file, key, ns.nsid)?;
        let journal = journal::replay(&ftl, &journal_file, key, ns.nsid, applied)?;
        format!("{table}, {journal}")
    } else {
        generations::forget(&table_file, key, ns.nsid)?;
        journal::forget(&journal_file, key, ns.nsid)?;
        "generation bounds start now".to_owned()
    };
    let journal = journal::Journal::start(&ftl, table_file.clone(), journal_file, key, ns.nsid)?;
    let ns_backend = FtlNamespace::with_flush_log(ftl, Box::new(journal))
        .with_context(|| format!("namespace {}: the generation journal", ns.nsid))?;
    Ok(Volume {
        nsid: ns.nsid,
        backend: Backend::Local(Arc::new(ns_backend)),
        recovered,
        generations: Some((table_file, said, key.clone())),
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
    ActiveNamespace::with_power_on(identity, volume.namespace(), power_on.clone())
}

/// Drops the data bytes that erased blocks of a closed local namespace kept in its device files
/// (`file_modes`: erases leave them until the block is programmed over), so that a cleanly
/// stopped instance's files hold no byte of erased data, plaintext or ciphertext; returns how
/// many blocks. Only blocks with no programmed page are touched, so the namespace's data and its
/// recovery are as they were. Run after a clean close and before a namespace is opened again
/// (after a crash, the bytes stay until then).
pub fn drop_erased_data(config: &ServeConfig, ns: &NamespaceConfig) -> anyhow::Result<u64> {
    let dir = config.namespace_dir(ns.nsid);
    if !glue::device_path(&dir, 0).exists() {
        return Ok(0);
    }
    let mut dropped = 0;
    for (index, device) in glue::open_file_nands(&dir, ns.devices, FileModes::default())?
        .iter()
        .enumerate()
    {
        let path = glue::device_path(&dir, index as u32);
        dropped += device
            .drop_erased_data()
            .with_context(|| format!("dropping erased data of {}", path.display()))?;
        device
            .sync()
            .with_context(|| format!("syncing {}", path.display()))?;
    }
    Ok(dropped)
}

/// Closes a volume once nothing else holds it: a local one with a flush and checkpoint, a
/// remote one with a flush and DETACH.
pub fn close_volume(volume: Volume) -> anyhow::Result<()> {
    let nsid = volume.nsid;
    match volume.backend {
        Backend::Local(ns) => {
            let ns = Arc::try_unwrap(ns)
                .map_err(|_| anyhow::anyhow!("namespace {nsid} is still in use at close"))?;
            let (ftl, flush_log) = ns.into_parts();
            // Taken before the close (which consumes the FTL; no host write comes in between) and
            // saved after it succeeds, so a saved table always belongs to a clean close.
            // A terminated instance's key is gone, and with it every page: nothing to save.
            let table = volume
                .generations
                .filter(|(_, _, key)| !key.is_destroyed())
                .map(|(file, _, key)| (file, key, ftl.generation_table()));
            ftl.close()
                .with_context(|| format!("closing namespace {nsid}"))?;
            if let Some((file, key, table)) = table {
                let table =
                    table.with_context(|| format!("namespace {nsid}: the generation table"))?;
                generations::save(&table, &file, &key, nsid)?;
                // The table holds every bound now: the journal is done with.
                if let Some(journal) = flush_log {
                    journal
                        .finish()
                        .map_err(|e| anyhow::anyhow!("namespace {nsid}: {e}"))?;
                }
            }
            Ok(())
        }
        Backend::Remote(ns) => {
            ns.flush()
                .with_context(|| format!("flushing remote namespace {nsid}"))?;
            ns.close();
            Ok(())
        }
    }
}
