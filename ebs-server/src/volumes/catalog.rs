//! The volume catalog: which volumes exist, their sizes, credentials (as SHA-256), wrapped data
//! keys and extents of the server's FTL. One file, replaced atomically (write, sync, rename, sync
//! the directory), so a crash leaves the old catalog or the new one, never a mix.
//!
//! File format v1 (docs/ebs-protocol.md, "Volume catalog"): a 24-byte header (magic `FEVOLCAT`,
//! version u32, body length u32, CRC-32 of the body u32, reserved u32 = 0), then a JSON body.

use std::fs;
use std::io::Write;
use std::path::Path;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::proto::valid_volume_name;

pub const MAGIC: [u8; 8] = *b"FEVOLCAT";
pub const VERSION: u32 = 1;
pub const HEADER_LEN: usize = 24;
/// A catalog larger than this is refused on load (far more than any number of volumes needs).
pub const BODY_LEN_MAX: usize = 64 << 20;
/// Most volumes one server holds.
pub const VOLUMES_MAX: usize = 4096;

#[derive(Debug, Error)]
pub enum CatalogError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {problem}")]
    Format { path: String, problem: String },
}

/// One volume as the catalog keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VolumeRecord {
    pub id: u64,
    pub name: String,
    pub blocks: u64,
    pub multi_attach: bool,
    /// Lower-case hex SHA-256 of the attach credential: the credential itself is never stored.
    pub credential_sha256: String,
    /// Lower-case hex of the client-wrapped data key (empty: the client keeps none here).
    pub wrapped_key: String,
    /// The FTL extents holding the volume, in volume order.
    pub extents: Vec<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Catalog {
    /// Blocks (4 KiB FTL logical pages) per extent.
    pub extent_blocks: u64,
    /// Extents of the FTL's logical space (its pages / extent_blocks).
    pub extents_total: u32,
    /// The id the next volume gets: ids are never reused.
    pub next_volume_id: u64,
    pub volumes: Vec<VolumeRecord>,
}

impl Catalog {
    pub fn new(extent_blocks: u64, extents_total: u32) -> Self {
        Self {
            extent_blocks,
            extents_total,
            next_volume_id: 1,
            volumes: Vec::new(),
        }
    }

    /// Extents no volume holds, lowest first.
    pub fn free_extents(&self) -> Vec<u32> {
        let mut used = vec![false; self.extents_total as usize];
        for v in &self.volumes {
            for &e in &v.extents {
                used[e as usize] = true;
            }
        }
        (0..self.extents_total)
            .filter(|&e| !used[e as usize])
            .collect()
    }

    /// Every rule a catalog obeys; a loaded one is checked whole before use.
    pub fn validate(&self) -> Result<(), String> {
        if self.extent_blocks == 0 {
            return Err("extent_blocks is 0".into());
        }
        if self.volumes.len() > VOLUMES_MAX {
            return Err(format!(
                "{} volumes; at most {VOLUMES_MAX}",
                self.volumes.len()
            ));
        }
        let mut owner = vec![None::<u64>; self.extents_total as usize];
        let mut names = std::collections::HashSet::new();
        let mut ids = std::collections::HashSet::new();
        for v in &self.volumes {
            valid_volume_name(&v.name).map_err(|p| format!("volume name {:?}: {p}", v.name))?;
            if !names.insert(v.name.as_str()) {
                return Err(format!("volume {:?} appears twice", v.name));
            }
            if v.id == 0 || v.id >= self.next_volume_id || !ids.insert(v.id) {
                return Err(format!(
                    "volume {:?}: id {} is not unique and below next_volume_id",
                    v.name, v.id
                ));
            }
            if v.credential_sha256.len() != 64 || decode_hex(&v.credential_sha256).is_none() {
                return Err(format!(
                    "volume {:?}: credential_sha256 is not 32 bytes of hex",
                    v.name
                ));
            }
            if decode_hex(&v.wrapped_key).is_none() {
                return Err(format!("volume {:?}: wrapped_key is not hex", v.name));
            }
            let capacity = v.extents.len() as u64 * self.extent_blocks;
            if v.blocks == 0 || v.blocks > capacity || capacity - v.blocks >= self.extent_blocks {
                return Err(format!(
                    "volume {:?}: {} blocks do not fit its {} extents exactly",
                    v.name,
                    v.blocks,
                    v.extents.len()
                ));
            }
            for &e in &v.extents {
                let slot = owner.get_mut(e as usize).ok_or_else(|| {
                    format!(
                        "volume {:?}: extent {e} past the {} there are",
                        v.name, self.extents_total
                    )
                })?;
                if let Some(other) = slot.replace(v.id) {
                    return Err(format!(
                        "extent {e} belongs to volumes {other} and {}",
                        v.id
                    ));
                }
            }
        }
        Ok(())
    }

    /// Loads and checks the catalog at `path`.
    pub fn load(path: &Path) -> Result<Self, CatalogError> {
        let shown = path.display().to_string();
        let io = |source| CatalogError::Io {
            path: shown.clone(),
            source,
        };
        let format = |problem: String| CatalogError::Format {
            path: shown.clone(),
            problem,
        };
        let bytes = fs::read(path).map_err(io)?;
        let header = bytes
            .get(..HEADER_LEN)
            .ok_or_else(|| format(format!("{} bytes, shorter than the header", bytes.len())))?;
        if header[..8] != MAGIC {
            return Err(format("not a volume catalog (bad magic)".into()));
        }
        let word = |at: usize| {
            u32::from_le_bytes([header[at], header[at + 1], header[at + 2], header[at + 3]])
        };
        let version = word(8);
        if version != VERSION {
            return Err(format(format!(
                "catalog version {version}; this build reads {VERSION}"
            )));
        }
        let body_len = word(12) as usize;
        if body_len > BODY_LEN_MAX || HEADER_LEN + body_len != bytes.len() {
            return Err(format(format!(
                "body length {body_len} does not match the file's {} bytes",
                bytes.len()
            )));
        }
        if word(20) != 0 {
            return Err(format("reserved header word is not zero".into()));
        }
        let body = &bytes[HEADER_LEN..];
        let crc = crc32fast::hash(body);
        if crc != word(16) {
            return Err(format(format!(
                "CRC mismatch (header {:#010x}, body {crc:#010x})",
                word(16)
            )));
        }
        let catalog: Catalog =
            serde_json::from_slice(body).map_err(|e| format(format!("body: {e}")))?;
        catalog.validate().map_err(format)?;
        Ok(catalog)
    }

    /// Replaces the catalog at `path` atomically and durably.
    pub fn save(&self, path: &Path) -> Result<(), CatalogError> {
        assert!(
            self.validate().is_ok(),
            "saving an invalid catalog: {:?}",
            self.validate()
        );
        let shown = path.display().to_string();
        let io = |source| CatalogError::Io {
            path: shown.clone(),
            source,
        };
        let body = serde_json::to_vec_pretty(self).map_err(|e| io(std::io::Error::other(e)))?;
        let mut bytes = Vec::with_capacity(HEADER_LEN + body.len());
        bytes.extend_from_slice(&MAGIC);
        bytes.extend_from_slice(&VERSION.to_le_bytes());
        bytes.extend_from_slice(&(body.len() as u32).to_le_bytes());
        bytes.extend_from_slice(&crc32fast::hash(&body).to_le_bytes());
        bytes.extend_from_slice(&0u32.to_le_bytes());
        bytes.extend_from_slice(&body);
        let tmp = path.with_extension("tmp");
        let mut file = fs::File::create(&tmp).map_err(io)?;
        file.write_all(&bytes).map_err(io)?;
        file.sync_all().map_err(io)?;
        fs::rename(&tmp, path).map_err(io)?;
        let dir = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        fs::File::open(dir).and_then(|d| d.sync_all()).map_err(io)?;
        Ok(())
    }
}

pub fn encode_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn decode_hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn record(id: u64, name: &str, blocks: u64, extents: Vec<u32>) -> VolumeRecord {
        VolumeRecord {
            id,
            name: name.into(),
            blocks,
            multi_attach: false,
            credential_sha256: "ab".repeat(32),
            wrapped_key: String::new(),
            extents,
        }
    }

    fn sample() -> Catalog {
        let mut c = Catalog::new(16, 8);
        c.volumes.push(record(1, "a", 20, vec![3, 0]));
        c.volumes.push(record(2, "b", 16, vec![5]));
        c.next_volume_id = 3;
        c
    }

    #[test]
    fn save_load_round_trip_and_header_offsets() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("volumes.cat");
        let c = sample();
        c.save(&path).unwrap();
        assert_eq!(Catalog::load(&path).unwrap(), c);
        let bytes = fs::read(&path).unwrap();
        assert_eq!(&bytes[0..8], b"FEVOLCAT");
        assert_eq!(u32::from_le_bytes(bytes[8..12].try_into().unwrap()), 1);
        let body_len = u32::from_le_bytes(bytes[12..16].try_into().unwrap()) as usize;
        assert_eq!(body_len, bytes.len() - 24);
        assert_eq!(
            u32::from_le_bytes(bytes[16..20].try_into().unwrap()),
            crc32fast::hash(&bytes[24..])
        );
        assert_eq!(&bytes[20..24], &[0; 4]);
        assert_eq!(c.free_extents(), vec![1, 2, 4, 6, 7]);
        assert!(!dir.path().join("volumes.tmp").exists());
    }

    #[test]
    fn a_damaged_file_names_its_problem() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("volumes.cat");
        sample().save(&path).unwrap();
        let good = fs::read(&path).unwrap();
        let check = |bytes: &[u8], needle: &str| {
            fs::write(&path, bytes).unwrap();
            let e = Catalog::load(&path).unwrap_err().to_string();
            assert!(e.contains(needle), "{e}");
        };
        check(&good[..10], "shorter than the header");
        let mut b = good.clone();
        b[0] = b'X';
        check(&b, "bad magic");
        let mut b = good.clone();
        b[8] = 9;
        check(&b, "catalog version 9");
        check(&good[..good.len() - 1], "body length");
        let mut b = good.clone();
        let last = b.len() - 3;
        b[last] ^= 1;
        check(&b, "CRC mismatch");
    }

    #[test]
    fn invalid_catalogs_are_refused() {
        let mut c = sample();
        c.volumes[1].extents = vec![3];
        assert!(
            c.validate()
                .unwrap_err()
                .contains("extent 3 belongs to volumes 1 and 2")
        );
        let mut c = sample();
        c.volumes[1].name = "a".into();
        assert!(c.validate().unwrap_err().contains("appears twice"));
        let mut c = sample();
        c.volumes[0].blocks = 33;
        assert!(c.validate().unwrap_err().contains("do not fit"));
        let mut c = sample();
        c.volumes[0].blocks = 16; // two extents for 16 blocks: one too many
        assert!(c.validate().unwrap_err().contains("do not fit"));
        let mut c = sample();
        c.volumes[0].extents = vec![8, 0];
        assert!(c.validate().unwrap_err().contains("past the 8"));
        let mut c = sample();
        c.volumes[1].id = 3;
        assert!(c.validate().unwrap_err().contains("id 3"));
        let mut c = sample();
        c.volumes[0].credential_sha256 = "zz".repeat(32);
        assert!(c.validate().unwrap_err().contains("credential_sha256"));
    }

    #[test]
    fn hex_round_trips_and_rejects_junk() {
        assert_eq!(
            decode_hex(&encode_hex(&[0, 1, 0xfe, 0xff])).unwrap(),
            vec![0, 1, 0xfe, 0xff]
        );
        assert_eq!(decode_hex("abc"), None);
        assert_eq!(decode_hex("zz"), None);
        assert_eq!(decode_hex("é1"), None);
        assert_eq!(decode_hex("").unwrap(), Vec::<u8>::new());
    }
}
