//! Volumes on the server's one FTL: each volume is a list of extents of the FTL's logical space,
//! so every volume shares one GC and one wear-leveling view of all the devices, and create,
//! resize and delete move no data.
//!
//! Invariants: an extent belongs to at most one volume (the catalog checks it on every load and
//! save); an extent is trimmed, durably, before the catalog that hands it to a volume is written,
//! so a new volume or a grown one reads zeroes, never another volume's blocks, even after a crash.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use aws_lc_rs::constant_time;
use ftl::{Ftl, FtlError};
use parking_lot::Mutex;

use super::catalog::{Catalog, VolumeRecord, decode_hex, encode_hex};
use super::error::VolumeError;
use crate::proto::{
    ATTACH_CREDENTIAL_MAX, BLOCK_BYTES, BLOCK_SEAL_BYTES, WRAPPED_KEY_MAX, valid_volume_name,
};

// The block protocol's client seal is stored in the FTL's OOB seal field as is.
const _: () = assert!(BLOCK_SEAL_BYTES == ftl::SEAL_BYTES);
use crate::srd::seal::{PSK_LEN, psk_of};

/// Blocks per extent when a store is created with no other choice: 64 MiB.
pub const EXTENT_BLOCKS_DEFAULT: u64 = 16 * 1024;

/// What `create` needs.
#[derive(Clone)]
pub struct VolumeSpec {
    pub name: String,
    pub blocks: u64,
    pub credential: Vec<u8>,
    pub multi_attach: bool,
    /// The data key wrapped by the client's key-encryption key; stored as given, never opened.
    pub wrapped_key: Vec<u8>,
}

impl std::fmt::Debug for VolumeSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VolumeSpec")
            .field("name", &self.name)
            .field("blocks", &self.blocks)
            .field("credential", &"<redacted>")
            .field("multi_attach", &self.multi_attach)
            .field("wrapped_key_bytes", &self.wrapped_key.len())
            .finish()
    }
}

/// A volume as `list` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeInfo {
    pub id: u64,
    pub name: String,
    pub blocks: u64,
    pub multi_attach: bool,
    pub attachments: u32,
}

#[derive(Debug)]
struct State {
    catalog: Catalog,
    /// Volume id -> live attachments.
    attached: HashMap<u64, u32>,
}

/// The server's volumes over its FTL.
#[derive(Debug)]
pub struct VolumeStore {
    ftl: Ftl,
    catalog_path: PathBuf,
    state: Mutex<State>,
}

fn credential_hash(credential: &[u8]) -> Vec<u8> {
    psk_of(credential).to_vec()
}

impl VolumeStore {
    /// Opens the store over `ftl`, loading the catalog at `catalog_path`, or starting an empty one
    /// with `extent_blocks` per extent when there is none.
    pub fn open(ftl: Ftl, catalog_path: &Path, extent_blocks: u64) -> Result<Self, VolumeError> {
        let extents_total =
            u32::try_from(ftl.logical_pages() / extent_blocks.max(1)).map_err(|_| {
                VolumeError::Config(format!("{extent_blocks} blocks per extent is too small"))
            })?;
        let catalog = if catalog_path.exists() {
            let catalog = Catalog::load(catalog_path)?;
            if catalog.extents_total > extents_total {
                return Err(VolumeError::Config(format!(
                    "the catalog has {} extents of {} blocks but the FTL holds only {extents_total}",
                    catalog.extents_total, catalog.extent_blocks
                )));
            }
            catalog
        } else {
            if extent_blocks == 0 || extents_total == 0 {
                return Err(VolumeError::Config(format!(
                    "an FTL of {} blocks holds no extent of {extent_blocks} blocks",
                    ftl.logical_pages()
                )));
            }
            let catalog = Catalog::new(extent_blocks, extents_total);
            catalog.save(catalog_path)?;
            catalog
        };
        Ok(Self {
            ftl,
            catalog_path: catalog_path.to_path_buf(),
            state: Mutex::new(State {
                catalog,
                attached: HashMap::new(),
            }),
        })
    }

    pub fn ftl(&self) -> &Ftl {
        &self.ftl
    }

    /// Closes the FTL cleanly (checkpoint). The catalog is always saved already.
    pub fn close(self) -> Result<(), VolumeError> {
        Ok(self.ftl.close()?)
    }

    pub fn extent_blocks(&self) -> u64 {
        self.state.lock().catalog.extent_blocks
    }

    /// Blocks not yet given to any volume.
    pub fn free_blocks(&self) -> u64 {
        let state = self.state.lock();
        state.catalog.free_extents().len() as u64 * state.catalog.extent_blocks
    }

    pub fn list(&self) -> Vec<VolumeInfo> {
        let state = self.state.lock();
        state
            .catalog
            .volumes
            .iter()
            .map(|v| info(v, &state.attached))
            .collect()
    }

    pub fn create(&self, spec: &VolumeSpec) -> Result<VolumeInfo, VolumeError> {
        valid_volume_name(&spec.name).map_err(|problem| VolumeError::BadName {
            name: spec.name.clone(),
            problem,
        })?;
        if spec.blocks == 0 {
            return Err(VolumeError::BadSize(
                "a volume needs at least one block".into(),
            ));
        }
        if spec.credential.is_empty() || spec.credential.len() > ATTACH_CREDENTIAL_MAX {
            return Err(VolumeError::BadCredentialSpec(format!(
                "{} bytes; 1 to {ATTACH_CREDENTIAL_MAX} allowed",
                spec.credential.len()
            )));
        }
        if spec.wrapped_key.len() > WRAPPED_KEY_MAX {
            return Err(VolumeError::BadSize(format!(
                "wrapped key of {} bytes; at most {WRAPPED_KEY_MAX}",
                spec.wrapped_key.len()
            )));
        }
        // The server cannot unwrap it (only clients hold the KEK), but it can refuse bytes that
        // are not a wrapped key at all, which would fail every attach later.
        if !spec.wrapped_key.is_empty() {
            keys::WrappedKey::from_bytes(&spec.wrapped_key)
                .map_err(|e| VolumeError::BadWrappedKey(e.to_string()))?;
        }
        let mut state = self.state.lock();
        if state.catalog.volumes.iter().any(|v| v.name == spec.name) {
            return Err(VolumeError::Exists(spec.name.clone()));
        }
        if state.catalog.volumes.len() >= super::catalog::VOLUMES_MAX {
            return Err(VolumeError::NoSpace(format!(
                "{} volumes, the most one server holds",
                super::catalog::VOLUMES_MAX
            )));
        }
        let extents = self.take_extents(&state.catalog, spec.blocks)?;
        let mut next = state.catalog.clone();
        let id = next.next_volume_id;
        next.next_volume_id += 1;
        next.volumes.push(VolumeRecord {
            id,
            name: spec.name.clone(),
            blocks: spec.blocks,
            multi_attach: spec.multi_attach,
            credential_sha256: encode_hex(&credential_hash(&spec.credential)),
            wrapped_key: encode_hex(&spec.wrapped_key),
            extents,
        });
        next.save(&self.catalog_path)?;
        state.catalog = next;
        let record = state.catalog.volumes.last().expect("just pushed");
        tracing::info!(volume = %record.name, id, blocks = record.blocks, "volume created");
        Ok(info(record, &state.attached))
    }

    /// Grows a volume to `blocks`. An attachment keeps the size it attached with; the next attach
    /// sees the new one. Shrinking is refused: it would drop a client's data.
    pub fn resize(&self, name: &str, blocks: u64) -> Result<VolumeInfo, VolumeError> {
        let mut state = self.state.lock();
        let index = find(&state.catalog, name)?;
        let old = &state.catalog.volumes[index];
        if blocks < old.blocks {
            return Err(VolumeError::BadSize(format!(
                "volume {name:?} has {} blocks; shrinking to {blocks} is not supported",
                old.blocks
            )));
        }
        let have = old.extents.len() as u64 * state.catalog.extent_blocks;
        let more = if blocks > have {
            self.take_extents(&state.catalog, blocks - have)?
        } else {
            Vec::new()
        };
        let mut next = state.catalog.clone();
        next.volumes[index].blocks = blocks;
        next.volumes[index].extents.extend(more);
        next.save(&self.catalog_path)?;
        state.catalog = next;
        Ok(info(&state.catalog.volumes[index], &state.attached))
    }

    /// Deletes a volume that no client holds. Its extents are trimmed after the catalog lets them
    /// go (and again when they are handed out), so a crash in between leaks nothing.
    pub fn delete(&self, name: &str) -> Result<(), VolumeError> {
        let mut state = self.state.lock();
        let index = find(&state.catalog, name)?;
        let id = state.catalog.volumes[index].id;
        if state.attached.get(&id).copied().unwrap_or(0) > 0 {
            return Err(VolumeError::Busy(name.to_string()));
        }
        let mut next = state.catalog.clone();
        let gone = next.volumes.remove(index);
        next.save(&self.catalog_path)?;
        state.catalog = next;
        let extent_blocks = state.catalog.extent_blocks;
        drop(state);
        for e in gone.extents {
            self.ftl.trim(u64::from(e) * extent_blocks, extent_blocks)?;
        }
        tracing::info!(volume = %name, id, "volume deleted");
        Ok(())
    }

    /// The pre-shared key of a volume's handshake (`srd::seal::psk_of` its credential): the
    /// stored credential hash itself. None for a volume that does not exist.
    pub fn psk(&self, name: &str) -> Option<[u8; PSK_LEN]> {
        let state = self.state.lock();
        let index = find(&state.catalog, name).ok()?;
        let stored = decode_hex(&state.catalog.volumes[index].credential_sha256)?;
        stored.try_into().ok()
    }

    /// Attaches a volume for I/O after checking the credential (in constant time). A volume not
    /// created multi-attach takes one attachment at a time.
    pub fn attach(
        self: &Arc<Self>,
        name: &str,
        credential: &[u8],
    ) -> Result<Attachment, VolumeError> {
        let mut state = self.state.lock();
        let index = find(&state.catalog, name)?;
        let v = &state.catalog.volumes[index];
        let stored = decode_hex(&v.credential_sha256).expect("validated catalog");
        if constant_time::verify_slices_are_equal(&stored, &credential_hash(credential)).is_err() {
            return Err(VolumeError::BadCredential(name.to_string()));
        }
        let count = state.attached.get(&v.id).copied().unwrap_or(0);
        if count > 0 && !v.multi_attach {
            return Err(VolumeError::Busy(name.to_string()));
        }
        let attachment = Attachment {
            store: Arc::clone(self),
            id: v.id,
            name: v.name.clone(),
            blocks: v.blocks,
            multi_attach: v.multi_attach,
            wrapped_key: decode_hex(&v.wrapped_key).expect("validated catalog"),
            extent_blocks: state.catalog.extent_blocks,
            extents: v.extents.clone(),
        };
        *state.attached.entry(attachment.id).or_insert(0) += 1;
        Ok(attachment)
    }

    /// Picks free extents for `blocks` blocks and trims them durably (they may hold a deleted
    /// volume's blocks). Changes nothing in the catalog: the caller saves the new one.
    fn take_extents(&self, catalog: &Catalog, blocks: u64) -> Result<Vec<u32>, VolumeError> {
        let need = blocks.div_ceil(catalog.extent_blocks);
        let free = catalog.free_extents();
        if need > free.len() as u64 {
            return Err(VolumeError::NoSpace(format!(
                "{blocks} blocks need {need} extents of {}; {} are free",
                catalog.extent_blocks,
                free.len()
            )));
        }
        let chosen: Vec<u32> = free.into_iter().take(need as usize).collect();
        for &e in &chosen {
            let lpa = u64::from(e) * catalog.extent_blocks;
            self.ftl.trim(lpa, catalog.extent_blocks)?;
            self.ftl.make_durable(lpa, catalog.extent_blocks)?;
        }
        Ok(chosen)
    }

    fn release(&self, id: u64) {
        let mut state = self.state.lock();
        let count = state
            .attached
            .get_mut(&id)
            .expect("attached volume is counted");
        assert!(*count > 0);
        *count -= 1;
        if *count == 0 {
            state.attached.remove(&id);
        }
    }
}

fn find(catalog: &Catalog, name: &str) -> Result<usize, VolumeError> {
    catalog
        .volumes
        .iter()
        .position(|v| v.name == name)
        .ok_or_else(|| VolumeError::NoSuchVolume(name.to_string()))
}

fn info(v: &VolumeRecord, attached: &HashMap<u64, u32>) -> VolumeInfo {
    VolumeInfo {
        id: v.id,
        name: v.name.clone(),
        blocks: v.blocks,
        multi_attach: v.multi_attach,
        attachments: attached.get(&v.id).copied().unwrap_or(0),
    }
}

/// One client's hold on a volume: block I/O in volume addresses. Dropping it detaches.
#[derive(Debug)]
pub struct Attachment {
    store: Arc<VolumeStore>,
    id: u64,
    name: String,
    blocks: u64,
    multi_attach: bool,
    wrapped_key: Vec<u8>,
    extent_blocks: u64,
    extents: Vec<u32>,
}

impl Attachment {
    pub fn id(&self) -> u64 {
        self.id
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn blocks(&self) -> u64 {
        self.blocks
    }

    pub fn multi_attach(&self) -> bool {
        self.multi_attach
    }

    pub fn wrapped_key(&self) -> &[u8] {
        &self.wrapped_key
    }

    fn check(&self, lba: u64, count: u64) -> Result<(), VolumeError> {
        match lba.checked_add(count) {
            Some(end) if count > 0 && end <= self.blocks => Ok(()),
            _ => Err(VolumeError::OutOfRange {
                lba,
                count,
                blocks: self.blocks,
            }),
        }
    }

    /// The FTL page of volume block `lba` (checked by the caller).
    fn lpa(&self, lba: u64) -> u64 {
        let extent = self.extents[(lba / self.extent_blocks) as usize];
        u64::from(extent) * self.extent_blocks + lba % self.extent_blocks
    }

    /// Runs `f(lpa, count)` over the FTL runs of volume blocks `lba..lba + count`.
    fn for_runs(
        &self,
        lba: u64,
        count: u64,
        mut f: impl FnMut(u64, u64) -> Result<(), FtlError>,
    ) -> Result<(), VolumeError> {
        self.check(lba, count)?;
        let mut at = lba;
        let end = lba + count;
        while at < end {
            let run = (self.extent_blocks - at % self.extent_blocks).min(end - at);
            f(self.lpa(at), run).map_err(|e| VolumeError::from_ftl(e, at))?;
            at += run;
        }
        Ok(())
    }

    /// Reads one block and the client seal it was written with (zero: never written, trimmed,
    /// zeroed, or written in the clear).
    pub fn read(&self, lba: u64, buf: &mut [u8]) -> Result<[u8; BLOCK_SEAL_BYTES], VolumeError> {
        assert_eq!(buf.len(), BLOCK_BYTES);
        self.check(lba, 1)?;
        self.store
            .ftl
            .read_client_sealed(self.lpa(lba), buf)
            .map_err(|e| VolumeError::from_ftl(e, lba))
    }

    /// Writes one block with its client seal, which is kept beside it on flash (the server
    /// neither checks nor understands it: only the client holds the key).
    pub fn write(
        &self,
        lba: u64,
        data: &[u8],
        seal: &[u8; BLOCK_SEAL_BYTES],
        fua: bool,
    ) -> Result<(), VolumeError> {
        assert_eq!(data.len(), BLOCK_BYTES);
        self.check(lba, 1)?;
        self.store
            .ftl
            .write_client_sealed(self.lpa(lba), data, seal, fua)
            .map_err(|e| VolumeError::from_ftl(e, lba))
    }

    pub fn trim(&self, lba: u64, count: u64) -> Result<(), VolumeError> {
        let ftl = &self.store.ftl;
        self.for_runs(lba, count, |lpa, n| ftl.trim(lpa, n))
    }

    pub fn write_zeroes(&self, lba: u64, count: u64, fua: bool) -> Result<(), VolumeError> {
        let ftl = &self.store.ftl;
        self.for_runs(lba, count, |lpa, n| {
            ftl.write_zeroes(lpa, n)?;
            if fua {
                ftl.make_durable(lpa, n)
            } else {
                Ok(())
            }
        })
    }

    /// Makes every acknowledged write of the server durable (the FTL is shared by all volumes).
    pub fn flush(&self) -> Result<(), VolumeError> {
        Ok(self.store.ftl.flush()?)
    }
}

impl Drop for Attachment {
    fn drop(&mut self) {
        self.store.release(self.id);
    }
}
