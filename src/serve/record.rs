//! The instance record, `<data_dir>/instance.toml`: which instance the data directory belongs to,
//! whether it seals its pages, the public fingerprint of its key, and its lifecycle state. It never
//! holds key bytes: the key is in the kernel keyring (`keys::InstanceKey::open_or_create`).
//!
//! The record is the data directory's claim on its devices: no record, no instance, and the
//! next `ferrite serve` formats every namespace fresh.

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};

/// The only format version of `instance.toml` this code reads and writes.
pub const RECORD_FORMAT_VERSION: u32 = 1;
const RECORD_FILE: &str = "instance.toml";
/// Random bytes in an instance id (`i-` and twice as many hex digits).
const INSTANCE_ID_RANDOM_BYTES: usize = 8;

/// Where an instance is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum InstanceState {
    /// Serving or stopped; a restart serves the same data.
    Active,
    /// The key was created anew while old devices exist: every namespace must be formatted
    /// before serving. Recorded before the first format, so a crash during it formats again.
    Formatting,
    /// A terminate began; the next `ferrite serve` or `ferrite terminate` finishes it (destroys
    /// the key if still there, erases every block) before anything else.
    Terminating,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InstanceRecord {
    pub format_version: u32,
    pub instance_id: String,
    pub encryption: bool,
    /// `keys::InstanceKey::fingerprint` of the key that seals the data (encryption on only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_fingerprint: Option<String>,
    pub state: InstanceState,
    /// Seconds this instance has served over all its runs: the SMART log's power-on hours. Kept
    /// here rather than in an FTL checkpoint because it belongs to the controller (every
    /// namespace), must survive a crash (the checkpoint is written only at a clean close) and is
    /// host time, which the FTL has no notion of.
    #[serde(default)]
    pub power_on_seconds: u64,
}

impl InstanceRecord {
    /// A new instance with a random id, not yet saved.
    pub fn new(encryption: bool) -> anyhow::Result<Self> {
        Ok(Self {
            format_version: RECORD_FORMAT_VERSION,
            instance_id: new_instance_id()?,
            encryption,
            key_fingerprint: None,
            state: InstanceState::Active,
            power_on_seconds: 0,
        })
    }

    /// `<data_dir>/instance.toml`.
    pub fn path(data_dir: &Path) -> PathBuf {
        data_dir.join(RECORD_FILE)
    }

    /// The record of `data_dir`, or `None` if it has none.
    pub fn load(data_dir: &Path) -> anyhow::Result<Option<Self>> {
        let path = Self::path(data_dir);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        let record: Self =
            toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
        anyhow::ensure!(
            record.format_version == RECORD_FORMAT_VERSION,
            "{}: format_version {} is not the supported {RECORD_FORMAT_VERSION}",
            path.display(),
            record.format_version
        );
        Ok(Some(record))
    }

    /// Writes the record durably: a temporary file, fsync, rename over the old one, fsync of the
    /// directory, so a crash leaves either the old record or the new one, never a torn file.
    pub fn save(&self, data_dir: &Path) -> anyhow::Result<()> {
        let path = Self::path(data_dir);
        let tmp = data_dir.join(format!("{RECORD_FILE}.tmp"));
        let text = format!(
            "# Ferrite instance record (docs/keys-design.md). No key bytes: the key is in the \
             kernel keyring.\n{}",
            toml::to_string(self).context("encoding the instance record")?
        );
        let mut file = File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
        file.write_all(text.as_bytes())
            .and_then(|()| file.sync_all())
            .with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, &path).with_context(|| format!("renaming to {}", path.display()))?;
        sync_dir(data_dir)
    }

    /// Removes the record (the last step of a terminate).
    pub fn remove(data_dir: &Path) -> anyhow::Result<()> {
        let path = Self::path(data_dir);
        match std::fs::remove_file(&path) {
            Ok(()) => sync_dir(data_dir),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e).with_context(|| format!("removing {}", path.display())),
        }
    }
}

fn sync_dir(dir: &Path) -> anyhow::Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("syncing {}", dir.display()))
}

/// `i-` and 16 hex digits from the OS random source: unique, not secret.
fn new_instance_id() -> anyhow::Result<String> {
    let mut bytes = [0u8; INSTANCE_ID_RANDOM_BYTES];
    File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .context("reading /dev/urandom for a new instance id")?;
    Ok(format!(
        "i-{}",
        bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_round_trips_and_holds_what_it_should() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(InstanceRecord::load(dir.path()).unwrap(), None);
        let mut r = InstanceRecord::new(true).unwrap();
        assert!(r.instance_id.starts_with("i-") && r.instance_id.len() == 18);
        assert_ne!(
            r.instance_id,
            InstanceRecord::new(true).unwrap().instance_id
        );
        r.key_fingerprint = Some("0badf00d".into());
        r.power_on_seconds = 7 * 3600 + 12;
        r.save(dir.path()).unwrap();
        assert_eq!(InstanceRecord::load(dir.path()).unwrap(), Some(r.clone()));
        let text = std::fs::read_to_string(InstanceRecord::path(dir.path())).unwrap();
        assert!(text.contains("state = \"active\""), "{text}");
        r.state = InstanceState::Terminating;
        r.save(dir.path()).unwrap();
        assert_eq!(
            InstanceRecord::load(dir.path()).unwrap().unwrap().state,
            InstanceState::Terminating
        );
        InstanceRecord::remove(dir.path()).unwrap();
        InstanceRecord::remove(dir.path()).unwrap();
        assert_eq!(InstanceRecord::load(dir.path()).unwrap(), None);
    }

    #[test]
    fn a_record_without_power_on_time_reads_as_zero() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            InstanceRecord::path(dir.path()),
            "format_version = 1\ninstance_id = \"i-1\"\nencryption = false\nstate = \"active\"\n",
        )
        .unwrap();
        let r = InstanceRecord::load(dir.path()).unwrap().unwrap();
        assert_eq!(r.power_on_seconds, 0);
    }

    #[test]
    fn another_version_or_a_bad_file_is_refused_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = InstanceRecord::path(dir.path());
        std::fs::write(
            &path,
            "format_version = 2\ninstance_id = \"i-1\"\nencryption = true\nstate = \"active\"\n",
        )
        .unwrap();
        let err = format!("{:#}", InstanceRecord::load(dir.path()).unwrap_err());
        assert!(
            err.contains("instance.toml") && err.contains("format_version 2"),
            "{err}"
        );
        std::fs::write(&path, "key = \"00\"\n").unwrap();
        let err = format!("{:#}", InstanceRecord::load(dir.path()).unwrap_err());
        assert!(
            err.contains("parsing") && err.contains("instance.toml"),
            "{err}"
        );
    }
}
