//! `FileNand`: a device whose pages, OOB and block metadata live in one file, so that a device
//! survives restarts: what is programmed, wear, factory and grown bad blocks.
//!
//! The layout is documented byte by byte in `docs/ftl-format.md` ("Device file (FileNand)"):
//!
//! ```text
//!   0              header (4096 bytes, crc32 in its last 4 bytes)
//!   4096           block metadata table: 16 bytes per block, padded to 4096
//!   data_offset    page data, page-major: page p of block b at (b * pages_per_block + p) * page_size
//!   oob_offset     page OOB, same order, oob_size bytes each, padded to 4096
//! ```
//!
//! Data and OOB are kept in separate regions rather than interleaved: every data page then stays
//! 4096-aligned in the file (page sizes are multiples of 4096), a data read or write is one aligned
//! positional I/O, reading an OOB alone is one small positional read, and the OOBs of a block (what
//! an FTL scans at mount) are contiguous. A program costs two positional writes instead of one.
//!
//! The file is created sparse: only the header and the metadata table are written at creation.
//! An erase zeroes the block's data and OOB in the file: `fallocate(ZERO_RANGE)`, which leaves
//! the blocks allocated (as unwritten extents on ext4 and XFS), else a hole punch
//! (`fallocate(PUNCH_HOLE)`), else written zeros. The device never shows an erased page, but the
//! file must not keep what was on it either, or erasing (a terminate, say) would leave old data
//! readable in the file by anyone with the file. Zeroing rather than punching: the next program
//! into a hole makes the file system allocate again (a delayed block, extent changes written back
//! later), while an unwritten extent only needs converting; `benches/vhost_vs_qsd` plain randwrite
//! QD32 went from 54-56K to 69-73K IOPS (p99 3.96 to 1.93 ms). A device file so keeps the disk
//! space of every block it ever programmed, up to its full length.
//!
//! **Erase mode.** With `FileErase::KeepData` an erase drops only the OOB and leaves the pages'
//! data bytes in the file until they are programmed over. Zeroing (or punching) a block's data
//! costs an `fallocate` that frees the range's page cache, and the next programs into it allocate
//! that again (folios, buffer heads) and convert the extents at writeback: 40% of a 4 KiB random
//! write's CPU in `ferrite serve` without encryption (`benches/vhost_vs_qsd`: 59-60K -> 80-91K
//! IOPS at QD32), a third of it with. `ferrite serve` uses it for sealed and unsealed devices: a
//! sealed device's leftover bytes are ciphertext under a RAM-only instance key; an unsealed one's
//! are plaintext, in the same file as all its live plaintext, and only until the block is
//! programmed over. `ferrite serve` drops them at a clean stop, at the start after a crash and at
//! a terminate (`Device::drop_erased_data`), so a stopped instance's file holds only its live
//! pages (unless it crashed and has not started since) and a terminated one nothing either way. The device never shows an erased page whatever the mode, and durability is
//! the same in both: a dropped OOB makes the page erased, and a page whose OOB survived a crash
//! but whose data did not fails its crc (which covers the data).
//!
//! The store is thread-safe without a lock: every write is a positional write (`pwrite`) of a
//! distinct range, every read a copy out of a read-only mapping of the file (`file_map.rs`; a
//! `pread` where the file cannot be mapped), and `Device` serialises the operations of one die.
//!
//! **Durability.** With `FileDurability::Host` (the default) `sync` is an `fdatasync`: what it
//! covers survives a host power failure. With `FileDurability::Process`, `sync` only orders (every
//! `pwrite` that returned is in the page cache already, which a crash of the process does not lose)
//! and the device survives process crashes only. That is all encrypted instance storage needs: its
//! key lives in RAM and is gone after a host failure, and with it every byte on the device, so
//! paying a disk flush per barrier (several per GC batch) would buy nothing.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

use rustix::fs::FallocateFlags;

use super::device::Device;
use super::file_map::FileMap;
use super::prefetch::{PREFETCH_LINES, prefetch};
use super::store::{BlockHealth, BlockMeta, PageStore};
use super::{FaultConfig, Geometry, NandError, PowerRail};

pub type FileNand = Device<FileStore>;

/// The first 8 bytes of every device file.
pub const MAGIC: [u8; 8] = *b"FERRNAND";
/// The only format version this code reads and writes.
pub const FORMAT_VERSION: u32 = 1;
/// Header length, and the alignment of every region of the file.
pub const HEADER_LEN: u64 = 4096;
pub const ALIGN: u64 = 4096;
/// Size of one block metadata entry.
pub const META_ENTRY_LEN: usize = 16;

/// Byte offsets of the header fields (all little-endian).
mod hdr {
    pub const MAGIC: usize = 0; // [u8; 8]
    pub const VERSION: usize = 8; // u32
    pub const HEADER_LEN: usize = 12; // u32
    pub const CHANNELS: usize = 16; // u32
    pub const DIES_PER_CHANNEL: usize = 20; // u32
    pub const PLANES_PER_DIE: usize = 24; // u32
    pub const BLOCKS_PER_PLANE: usize = 28; // u32
    pub const PAGES_PER_BLOCK: usize = 32; // u32
    pub const PAGE_SIZE: usize = 36; // u32
    pub const OOB_SIZE: usize = 40; // u32
    pub const META_ENTRY_LEN: usize = 44; // u32
    pub const FAULT_SEED: usize = 48; // u64
    pub const META_OFFSET: usize = 56; // u64
    pub const DATA_OFFSET: usize = 64; // u64
    pub const OOB_OFFSET: usize = 72; // u64
    pub const FILE_LEN: usize = 80; // u64
    // 88..4092: zero padding.
    /// crc32 of bytes 0..CRC, in the last 4 bytes of the header.
    pub const CRC: usize = super::HEADER_LEN as usize - 4;
}

/// Byte offsets of the fields of a block metadata entry (all little-endian).
mod meta {
    pub const ERASE_COUNT: usize = 0; // u32
    pub const PROGRAMMED_PAGES: usize = 4; // u32
    pub const HEALTH: usize = 8; // u8
    pub const RESERVED: usize = 9; // [u8; 3], zero
    /// crc32 of bytes 0..CRC.
    pub const CRC: usize = 12; // u32
}

fn align_up(x: u64) -> u64 {
    x.div_ceil(ALIGN) * ALIGN
}

/// Where each region of a device file starts, all derived from the geometry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileLayout {
    pub meta_offset: u64,
    pub data_offset: u64,
    pub oob_offset: u64,
    pub file_len: u64,
}

impl FileLayout {
    /// The layout of a (validated) geometry.
    pub fn of(g: &Geometry) -> Self {
        let meta_offset = HEADER_LEN;
        let meta_len = u64::from(g.blocks()) * META_ENTRY_LEN as u64;
        let data_offset = meta_offset + align_up(meta_len);
        let data_len = g.pages() * u64::from(g.page_size);
        let oob_offset = data_offset + align_up(data_len);
        let oob_len = g.pages() * u64::from(g.oob_size);
        Self {
            meta_offset,
            data_offset,
            oob_offset,
            file_len: oob_offset + align_up(oob_len),
        }
    }
}

/// The decoded header of a device file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileHeader {
    pub geometry: Geometry,
    /// The fault seed the factory bad blocks were placed with (informational).
    pub fault_seed: u64,
}

impl FileHeader {
    pub fn encode(&self) -> [u8; HEADER_LEN as usize] {
        let g = &self.geometry;
        let layout = FileLayout::of(g);
        let mut b = [0u8; HEADER_LEN as usize];
        let mut put32 = |at: usize, v: u32| b[at..at + 4].copy_from_slice(&v.to_le_bytes());
        put32(hdr::VERSION, FORMAT_VERSION);
        put32(hdr::HEADER_LEN, HEADER_LEN as u32);
        put32(hdr::CHANNELS, g.channels);
        put32(hdr::DIES_PER_CHANNEL, g.dies_per_channel);
        put32(hdr::PLANES_PER_DIE, g.planes_per_die);
        put32(hdr::BLOCKS_PER_PLANE, g.blocks_per_plane);
        put32(hdr::PAGES_PER_BLOCK, g.pages_per_block);
        put32(hdr::PAGE_SIZE, g.page_size);
        put32(hdr::OOB_SIZE, g.oob_size);
        put32(hdr::META_ENTRY_LEN, META_ENTRY_LEN as u32);
        let mut put64 = |at: usize, v: u64| b[at..at + 8].copy_from_slice(&v.to_le_bytes());
        put64(hdr::FAULT_SEED, self.fault_seed);
        put64(hdr::META_OFFSET, layout.meta_offset);
        put64(hdr::DATA_OFFSET, layout.data_offset);
        put64(hdr::OOB_OFFSET, layout.oob_offset);
        put64(hdr::FILE_LEN, layout.file_len);
        b[hdr::MAGIC..hdr::MAGIC + 8].copy_from_slice(&MAGIC);
        let crc = crc32fast::hash(&b[..hdr::CRC]);
        b[hdr::CRC..].copy_from_slice(&crc.to_le_bytes());
        b
    }

    /// Decodes and checks a header; the error is the reason, for `NandError::Format`.
    pub fn decode(b: &[u8; HEADER_LEN as usize]) -> Result<Self, String> {
        if b[hdr::MAGIC..hdr::MAGIC + 8] != MAGIC {
            return Err(format!(
                "bad magic {:02x?}, expected {:?} (not a FileNand device file)",
                &b[..8],
                std::str::from_utf8(&MAGIC).unwrap_or_default()
            ));
        }
        let version = get32(b, hdr::VERSION);
        if version != FORMAT_VERSION {
            return Err(format!(
                "unsupported format version {version} (this build reads version {FORMAT_VERSION})"
            ));
        }
        let header_len = get32(b, hdr::HEADER_LEN);
        if u64::from(header_len) != HEADER_LEN {
            return Err(format!(
                "header length {header_len}, version {FORMAT_VERSION} has {HEADER_LEN}"
            ));
        }
        let stored = get32(b, hdr::CRC);
        let computed = crc32fast::hash(&b[..hdr::CRC]);
        if stored != computed {
            return Err(format!(
                "header crc mismatch (stored {stored:#010x}, computed {computed:#010x})"
            ));
        }
        let geometry = Geometry {
            channels: get32(b, hdr::CHANNELS),
            dies_per_channel: get32(b, hdr::DIES_PER_CHANNEL),
            planes_per_die: get32(b, hdr::PLANES_PER_DIE),
            blocks_per_plane: get32(b, hdr::BLOCKS_PER_PLANE),
            pages_per_block: get32(b, hdr::PAGES_PER_BLOCK),
            page_size: get32(b, hdr::PAGE_SIZE),
            oob_size: get32(b, hdr::OOB_SIZE),
        };
        geometry
            .validate()
            .map_err(|e| format!("header holds an invalid geometry: {e}"))?;
        let entry_len = get32(b, hdr::META_ENTRY_LEN);
        if entry_len as usize != META_ENTRY_LEN {
            return Err(format!(
                "block metadata entries of {entry_len} bytes, version {FORMAT_VERSION} has {META_ENTRY_LEN}"
            ));
        }
        let layout = FileLayout::of(&geometry);
        let stored = FileLayout {
            meta_offset: get64(b, hdr::META_OFFSET),
            data_offset: get64(b, hdr::DATA_OFFSET),
            oob_offset: get64(b, hdr::OOB_OFFSET),
            file_len: get64(b, hdr::FILE_LEN),
        };
        if stored != layout {
            return Err(format!(
                "region offsets {stored:?} do not match the geometry's {layout:?}"
            ));
        }
        Ok(Self {
            geometry,
            fault_seed: get64(b, hdr::FAULT_SEED),
        })
    }
}

fn get32(b: &[u8], at: usize) -> u32 {
    let mut v = [0u8; 4];
    v.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(v)
}

fn get64(b: &[u8], at: usize) -> u64 {
    let mut v = [0u8; 8];
    v.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(v)
}

fn health_code(h: BlockHealth) -> u8 {
    match h {
        BlockHealth::Good => 0,
        BlockHealth::FactoryBad => 1,
        BlockHealth::GrownBad => 2,
    }
}

pub fn encode_meta(m: &BlockMeta) -> [u8; META_ENTRY_LEN] {
    let mut b = [0u8; META_ENTRY_LEN];
    b[meta::ERASE_COUNT..meta::ERASE_COUNT + 4].copy_from_slice(&m.erase_count.to_le_bytes());
    b[meta::PROGRAMMED_PAGES..meta::PROGRAMMED_PAGES + 4]
        .copy_from_slice(&m.programmed_pages.to_le_bytes());
    b[meta::HEALTH] = health_code(m.health);
    let crc = crc32fast::hash(&b[..meta::CRC]);
    b[meta::CRC..meta::CRC + 4].copy_from_slice(&crc.to_le_bytes());
    b
}

/// Decodes and checks the metadata entry of `block`; the error is the reason.
pub fn decode_meta(block: u32, b: &[u8], pages_per_block: u32) -> Result<BlockMeta, String> {
    let stored = get32(b, meta::CRC);
    let computed = crc32fast::hash(&b[..meta::CRC]);
    if stored != computed {
        return Err(format!(
            "block metadata entry of block {block}: crc mismatch (stored {stored:#010x}, computed {computed:#010x})"
        ));
    }
    let health = match b[meta::HEALTH] {
        0 => BlockHealth::Good,
        1 => BlockHealth::FactoryBad,
        2 => BlockHealth::GrownBad,
        other => {
            return Err(format!(
                "block metadata entry of block {block}: unknown health code {other}"
            ));
        }
    };
    let programmed_pages = get32(b, meta::PROGRAMMED_PAGES);
    if programmed_pages > pages_per_block {
        return Err(format!(
            "block metadata entry of block {block}: {programmed_pages} programmed pages, the block has {pages_per_block}"
        ));
    }
    debug_assert_eq!(meta::RESERVED + 3, meta::CRC);
    Ok(BlockMeta {
        erase_count: get32(b, meta::ERASE_COUNT),
        health,
        programmed_pages,
    })
}

/// The pages, OOB and block metadata of one device, in one file.
#[derive(Debug)]
pub struct FileStore {
    file: File,
    /// The whole file mapped read-only, for page and OOB reads (`file_map.rs`); None where the
    /// file could not be mapped, and reads then use `pread`.
    map: Option<FileMap>,
    path: String,
    geometry: Geometry,
    layout: FileLayout,
    /// `FileDurability as u8`: set after open, read by every `sync`.
    durability: AtomicU8,
    /// `FileErase as u8`: set after open, read by every erase.
    erase: AtomicU8,
}

/// What an erase leaves in the file (see the module docs).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(u8)]
pub enum FileErase {
    /// Data and OOB are dropped (a hole, or zeros).
    #[default]
    DropData = 0,
    /// Only the OOB is dropped; the data bytes stay until programmed over (sealed devices only).
    KeepData = 1,
}

/// What `sync` of a file device survives (see the module docs).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(u8)]
pub enum FileDurability {
    /// `sync` is `fdatasync`: a host power failure keeps what was synced.
    #[default]
    Host = 0,
    /// `sync` leaves the bytes in the page cache: only a process crash is survived.
    Process = 1,
}

impl FileStore {
    fn new(file: File, path: String, geometry: Geometry, layout: FileLayout) -> Self {
        let map = match FileMap::new(&file, layout.file_len) {
            Ok(map) => Some(map),
            Err(e) => {
                tracing::warn!("{path}: not mapped ({e}); page reads use pread");
                None
            }
        };
        Self {
            file,
            map,
            path,
            geometry,
            layout,
            durability: AtomicU8::new(FileDurability::Host as u8),
            erase: AtomicU8::new(FileErase::DropData as u8),
        }
    }

    /// Reads `out.len()` bytes at `at`: from the mapping, or with `pread` without one.
    fn read_at(&self, at: u64, out: &mut [u8]) -> Result<(), NandError> {
        if let Some(map) = &self.map
            && map.read(at, out)
        {
            return Ok(());
        }
        self.file.read_exact_at(out, at).map_err(|e| self.io(e))
    }

    /// Whether page reads go through the mapping.
    pub fn is_mapped(&self) -> bool {
        self.map.is_some()
    }

    pub fn set_durability(&self, durability: FileDurability) {
        self.durability.store(durability as u8, Ordering::Relaxed);
    }

    pub fn durability(&self) -> FileDurability {
        match self.durability.load(Ordering::Relaxed) {
            0 => FileDurability::Host,
            _ => FileDurability::Process,
        }
    }

    pub fn set_erase(&self, erase: FileErase) {
        self.erase.store(erase as u8, Ordering::Relaxed);
    }

    pub fn erase_mode(&self) -> FileErase {
        match self.erase.load(Ordering::Relaxed) {
            0 => FileErase::DropData,
            _ => FileErase::KeepData,
        }
    }

    /// Drops the data bytes of a whole block (an erased one `KeepData` left them in).
    pub fn drop_block_data(&self, block: u32) -> Result<(), NandError> {
        let end = self.geometry.pages_per_block;
        let start = self.data_at(block, 0);
        let len = self.data_at(block, end - 1) + u64::from(self.geometry.page_size) - start;
        self.drop_range(start, len)
    }

    pub fn path(&self) -> &str {
        &self.path
    }

    pub fn layout(&self) -> &FileLayout {
        &self.layout
    }

    fn io(&self, source: io::Error) -> NandError {
        io_error(&self.path, source)
    }

    fn page_index(&self, block: u32, page: u32) -> u64 {
        u64::from(block) * u64::from(self.geometry.pages_per_block) + u64::from(page)
    }

    /// Makes `len` bytes at `at` read as zeros: `fallocate(ZERO_RANGE)`, else a hole punch, else
    /// written zeros (see the module docs).
    fn drop_range(&self, at: u64, len: u64) -> Result<(), NandError> {
        let zero = FallocateFlags::ZERO_RANGE | FallocateFlags::KEEP_SIZE;
        if rustix::fs::fallocate(&self.file, zero, at, len).is_ok() {
            return Ok(());
        }
        // Not supported here (tmpfs, for one), or it failed: a punch, which any Linux file
        // system with holes does.
        let punch = FallocateFlags::PUNCH_HOLE | FallocateFlags::KEEP_SIZE;
        match rustix::fs::fallocate(&self.file, punch, at, len) {
            Ok(()) => Ok(()),
            Err(e) if e == rustix::io::Errno::OPNOTSUPP || e == rustix::io::Errno::NOSYS => {
                const CHUNK: u64 = 1 << 16;
                let zeros = [0u8; CHUNK as usize];
                let mut done = 0;
                while done < len {
                    let n = (len - done).min(CHUNK);
                    self.file
                        .write_all_at(&zeros[..n as usize], at + done)
                        .map_err(|e| self.io(e))?;
                    done += n;
                }
                Ok(())
            }
            Err(e) => Err(self.io(e.into())),
        }
    }

    fn data_at(&self, block: u32, page: u32) -> u64 {
        self.layout.data_offset + self.page_index(block, page) * u64::from(self.geometry.page_size)
    }

    fn oob_at(&self, block: u32, page: u32) -> u64 {
        self.layout.oob_offset + self.page_index(block, page) * u64::from(self.geometry.oob_size)
    }
}

fn io_error(path: &str, source: io::Error) -> NandError {
    NandError::Io {
        path: path.to_string(),
        source,
    }
}

fn format_error(path: &str, reason: String) -> NandError {
    NandError::Format {
        path: path.to_string(),
        reason,
    }
}

impl PageStore for FileStore {
    fn write_page(&self, block: u32, page: u32, data: &[u8], oob: &[u8]) -> Result<(), NandError> {
        self.file
            .write_all_at(data, self.data_at(block, page))
            .map_err(|e| self.io(e))?;
        self.file
            .write_all_at(oob, self.oob_at(block, page))
            .map_err(|e| self.io(e))
    }

    fn read_page(
        &self,
        block: u32,
        page: u32,
        offset: usize,
        data: &mut [u8],
        oob: &mut [u8],
    ) -> Result<(), NandError> {
        self.read_at(self.data_at(block, page) + offset as u64, data)?;
        self.read_oob(block, page, oob)
    }

    fn read_oob(&self, block: u32, page: u32, oob: &mut [u8]) -> Result<(), NandError> {
        self.read_at(self.oob_at(block, page), oob)
    }

    /// Only the mapping's lines that are in the page cache are loaded: a prefetch never faults.
    fn prefetch_page(&self, block: u32, page: u32) {
        let Some(map) = &self.map else {
            return;
        };
        if let Some(data) = map.address_of(self.data_at(block, page)) {
            prefetch(data, PREFETCH_LINES);
        }
        if let Some(oob) = map.address_of(self.oob_at(block, page)) {
            prefetch(oob, 1);
        }
    }

    /// Drops the bytes of pages `from_page..` of the block: data and OOB, or with
    /// `FileErase::KeepData` the OOB only (see the module docs).
    fn erase_pages(&self, block: u32, from_page: u32) -> Result<(), NandError> {
        let end = self.geometry.pages_per_block;
        if from_page >= end {
            return Ok(());
        }
        let data = self.data_at(block, from_page)
            ..self.data_at(block, end - 1) + u64::from(self.geometry.page_size);
        let oob = self.oob_at(block, from_page)
            ..self.oob_at(block, end - 1) + u64::from(self.geometry.oob_size);
        if self.erase_mode() == FileErase::DropData {
            self.drop_range(data.start, data.end - data.start)?;
        }
        self.drop_range(oob.start, oob.end - oob.start)
    }

    fn write_block_meta(&self, block: u32, meta: &BlockMeta) -> Result<(), NandError> {
        let at = self.layout.meta_offset + u64::from(block) * META_ENTRY_LEN as u64;
        self.file
            .write_all_at(&encode_meta(meta), at)
            .map_err(|e| self.io(e))
    }

    fn sync(&self) -> Result<(), NandError> {
        match self.durability() {
            FileDurability::Host => self.file.sync_data().map_err(|e| self.io(e)),
            FileDurability::Process => Ok(()),
        }
    }

    fn sync_is_slow(&self) -> bool {
        self.durability() == FileDurability::Host
    }
}

impl Device<FileStore> {
    /// Drops the data bytes of every good block without a programmed page, which erases under
    /// `FileErase::KeepData` left in the file (the last step of a terminate); how many blocks.
    /// Blocks that hold pages, and retired ones, are left as they are.
    pub fn drop_erased_data(&self) -> Result<u64, NandError> {
        let mut dropped = 0;
        for block in 0..super::Nand::geometry(self).blocks() {
            let info = super::Nand::block_info(self, block)?;
            if info.health == BlockHealth::Good && info.programmed_pages == 0 {
                self.store().drop_block_data(block)?;
                dropped += 1;
            }
        }
        Ok(dropped)
    }

    /// Creates a new device file at `path` (which must not exist): all blocks erased, factory bad
    /// blocks placed by `faults.seed`. Only the header and the metadata table are written; the
    /// page regions are left sparse.
    pub fn create(
        path: &Path,
        geometry: Geometry,
        faults: FaultConfig,
        rail: Option<Arc<PowerRail>>,
    ) -> Result<Self, NandError> {
        geometry.validate()?;
        let name = path.display().to_string();
        let layout = FileLayout::of(&geometry);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(path)
            .map_err(|e| io_error(&name, e))?;
        let metas = Self::fresh_metas(&geometry, &faults);
        let header = FileHeader {
            geometry,
            fault_seed: faults.seed,
        };
        let mut table = Vec::with_capacity(metas.len() * META_ENTRY_LEN);
        for m in &metas {
            table.extend_from_slice(&encode_meta(m));
        }
        let write = || -> io::Result<()> {
            file.set_len(layout.file_len)?;
            file.write_all_at(&header.encode(), 0)?;
            file.write_all_at(&table, layout.meta_offset)?;
            file.sync_all()
        };
        write().map_err(|e| io_error(&name, e))?;
        // Make the new directory entry durable too.
        let parent = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        File::open(parent)
            .and_then(|dir| dir.sync_all())
            .map_err(|e| io_error(&parent.display().to_string(), e))?;
        let store = FileStore::new(file, name, geometry, layout);
        Device::from_parts(geometry, faults, store, metas, rail)
    }

    /// Opens an existing device file. The geometry, wear, bad blocks and programmed pages come
    /// from the file; `faults` gives only the runtime fault knobs (its seed drives the runtime
    /// fault draws; factory bad blocks are not re-derived from it).
    pub fn open(
        path: &Path,
        faults: FaultConfig,
        rail: Option<Arc<PowerRail>>,
    ) -> Result<Self, NandError> {
        let name = path.display().to_string();
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(|e| io_error(&name, e))?;
        let len = file.metadata().map_err(|e| io_error(&name, e))?.len();
        if len < HEADER_LEN {
            return Err(format_error(
                &name,
                format!("truncated file: {len} bytes, shorter than the {HEADER_LEN}-byte header"),
            ));
        }
        let mut raw = [0u8; HEADER_LEN as usize];
        file.read_exact_at(&mut raw, 0)
            .map_err(|e| io_error(&name, e))?;
        let header = FileHeader::decode(&raw).map_err(|reason| format_error(&name, reason))?;
        let geometry = header.geometry;
        let layout = FileLayout::of(&geometry);
        if len < layout.file_len {
            return Err(format_error(
                &name,
                format!(
                    "truncated file: {len} bytes, the geometry in the header needs {}",
                    layout.file_len
                ),
            ));
        }
        if len > layout.file_len {
            return Err(format_error(
                &name,
                format!(
                    "file length {len} is inconsistent with the geometry in the header, which needs {}",
                    layout.file_len
                ),
            ));
        }
        let blocks = geometry.blocks() as usize;
        let mut table = vec![0u8; blocks * META_ENTRY_LEN];
        file.read_exact_at(&mut table, layout.meta_offset)
            .map_err(|e| io_error(&name, e))?;
        let metas = table
            .chunks_exact(META_ENTRY_LEN)
            .enumerate()
            .map(|(block, entry)| decode_meta(block as u32, entry, geometry.pages_per_block))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|reason| format_error(&name, reason))?;
        let store = FileStore::new(file, name, geometry, layout);
        Device::from_parts(geometry, faults, store, metas, rail)
    }

    /// The fault seed recorded in the file's header at creation (informational).
    pub fn read_header(path: &Path) -> Result<FileHeader, NandError> {
        let name = path.display().to_string();
        let file = File::open(path).map_err(|e| io_error(&name, e))?;
        let mut raw = [0u8; HEADER_LEN as usize];
        file.read_exact_at(&mut raw, 0).map_err(|e| {
            if e.kind() == io::ErrorKind::UnexpectedEof {
                format_error(&name, "truncated file: shorter than the header".into())
            } else {
                io_error(&name, e)
            }
        })?;
        FileHeader::decode(&raw).map_err(|reason| format_error(&name, reason))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn geometry() -> Geometry {
        Geometry {
            channels: 1,
            dies_per_channel: 2,
            planes_per_die: 1,
            blocks_per_plane: 300,
            pages_per_block: 8,
            page_size: 4096,
            oob_size: 64,
        }
    }

    #[test]
    fn layout_is_aligned_and_sized() {
        let g = geometry();
        let l = FileLayout::of(&g);
        assert_eq!(l.meta_offset, 4096);
        // 600 blocks x 16 bytes = 9600 bytes -> 3 pages of table.
        assert_eq!(l.data_offset, 4096 + 12288);
        assert_eq!(l.oob_offset, l.data_offset + 600 * 8 * 4096);
        // 4800 pages x 64 bytes = 307200 = 75 x 4096.
        assert_eq!(l.file_len, l.oob_offset + 307_200);
        for x in [l.meta_offset, l.data_offset, l.oob_offset, l.file_len] {
            assert_eq!(x % 4096, 0);
        }
    }

    #[test]
    fn default_geometry_layout_matches_the_docs() {
        // The worked example in docs/ftl-format.md.
        let l = FileLayout::of(&Geometry::default());
        assert_eq!(l.meta_offset, 0x1000);
        assert_eq!(l.data_offset, 0x3000);
        assert_eq!(l.oob_offset, 0x2000_3000);
        assert_eq!(l.file_len, 0x2080_3000);
        assert_eq!(l.file_len, 545_271_808);
        // The crc32 the docs name: CRC-32/ISO-HDLC, check value 0xcbf43926.
        assert_eq!(crc32fast::hash(b"123456789"), 0xcbf4_3926);
    }

    #[test]
    fn header_offsets_are_pinned() {
        let g = geometry();
        let h = FileHeader {
            geometry: g,
            fault_seed: 0x0102_0304_0506_0708,
        };
        let b = h.encode();
        let l = FileLayout::of(&g);
        assert_eq!(b.len(), 4096);
        assert_eq!(&b[0..8], b"FERRNAND");
        assert_eq!(b[8..12], 1u32.to_le_bytes());
        assert_eq!(b[12..16], 4096u32.to_le_bytes());
        assert_eq!(b[16..20], 1u32.to_le_bytes());
        assert_eq!(b[20..24], 2u32.to_le_bytes());
        assert_eq!(b[24..28], 1u32.to_le_bytes());
        assert_eq!(b[28..32], 300u32.to_le_bytes());
        assert_eq!(b[32..36], 8u32.to_le_bytes());
        assert_eq!(b[36..40], 4096u32.to_le_bytes());
        assert_eq!(b[40..44], 64u32.to_le_bytes());
        assert_eq!(b[44..48], 16u32.to_le_bytes());
        assert_eq!(b[48..56], 0x0102_0304_0506_0708u64.to_le_bytes());
        assert_eq!(b[56..64], 4096u64.to_le_bytes());
        assert_eq!(b[64..72], l.data_offset.to_le_bytes());
        assert_eq!(b[72..80], l.oob_offset.to_le_bytes());
        assert_eq!(b[80..88], l.file_len.to_le_bytes());
        assert!(b[88..4092].iter().all(|&x| x == 0), "padding is zero");
        assert_eq!(b[4092..4096], crc32fast::hash(&b[..4092]).to_le_bytes());
        assert_eq!(FileHeader::decode(&b), Ok(h));
    }

    #[test]
    fn header_decode_names_each_problem() {
        let h = FileHeader {
            geometry: geometry(),
            fault_seed: 9,
        };
        let good = h.encode();
        let reseal = |mut b: [u8; 4096]| {
            let crc = crc32fast::hash(&b[..4092]);
            b[4092..].copy_from_slice(&crc.to_le_bytes());
            b
        };
        let mut b = good;
        b[0] = b'X';
        assert!(FileHeader::decode(&b).expect_err("magic").contains("magic"));
        let mut b = good;
        b[8] = 2;
        assert!(
            FileHeader::decode(&b)
                .expect_err("version")
                .contains("version 2")
        );
        let mut b = good;
        b[100] = 1;
        assert!(FileHeader::decode(&b).expect_err("crc").contains("crc"));
        let mut b = good;
        b[36..40].copy_from_slice(&8192u32.to_le_bytes());
        assert!(
            FileHeader::decode(&reseal(b))
                .expect_err("geometry")
                .contains("geometry")
        );
        let mut b = good;
        b[64] ^= 1;
        assert!(
            FileHeader::decode(&reseal(b))
                .expect_err("offsets")
                .contains("offsets")
        );
    }

    #[test]
    fn meta_entry_offsets_are_pinned() {
        let m = BlockMeta {
            erase_count: 0x1122_3344,
            health: BlockHealth::GrownBad,
            programmed_pages: 7,
        };
        let b = encode_meta(&m);
        assert_eq!(b.len(), 16);
        assert_eq!(b[0..4], 0x1122_3344u32.to_le_bytes());
        assert_eq!(b[4..8], 7u32.to_le_bytes());
        assert_eq!(b[8], 2);
        assert_eq!(b[9..12], [0, 0, 0]);
        assert_eq!(b[12..16], crc32fast::hash(&b[..12]).to_le_bytes());
        assert_eq!(decode_meta(5, &b, 8), Ok(m));
        assert_eq!(encode_meta(&BlockMeta::fresh(BlockHealth::Good))[8], 0);
        assert_eq!(
            encode_meta(&BlockMeta::fresh(BlockHealth::FactoryBad))[8],
            1
        );
        let mut bad = b;
        bad[0] ^= 1;
        assert!(
            decode_meta(5, &bad, 8)
                .expect_err("crc")
                .contains("block 5")
        );
        assert!(
            decode_meta(5, &b, 6)
                .expect_err("pages")
                .contains("programmed")
        );
    }
}
