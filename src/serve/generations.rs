//! The generation table of a sealed local namespace, kept beside its device files across a clean
//! restart: at close `ferrite serve` saves the FTL's per-page generation bounds (an authenticated
//! table, `ftl::format::generations`), and at start it applies them, so an older copy of a page
//! put back into a device file fails to open after the restart too (docs/keys-design.md).
//!
//! The table is no secret (generations are in every page's OOB record anyway) and no key: a MAC
//! under the instance key makes it unforgeable. What a MAC cannot show is which genuine table is
//! the newest, or that one should be there at all: so the kernel keyring, beside the instance key,
//! holds the MAC tag of each namespace's table saved at the last clean stop (the note
//! `generation-tables`). At start a table whose tag the keyring names is applied; a missing one,
//! or another (an older one: the data directory rolled back), is refused with the namespace. With
//! no tag in the keyring (a key not kept there, or the first start after an upgrade), a table
//! found is applied if it authenticates, and a damaged one is reported and ignored.
//!
//! The note's payload: a version byte (1), then records of (namespace id u32 LE, table tag
//! [u8; 32]), at most two per namespace (the old and the new tag while a save is in flight), in
//! no order. (The kernel refuses an empty `user` key, so the version byte also keeps a note with
//! no records storable.)

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use ftl::Ftl;
use ftl::format::generations::table_tag as tag_of;
use keys::{InstanceKey, TABLE_MAC_BYTES};

use super::note;

pub const FILE_NAME: &str = "generations.tbl";
const NOTE: &str = "generation-tables";
const RECORD_BYTES: usize = 4 + TABLE_MAC_BYTES;

pub type Tag = [u8; TABLE_MAC_BYTES];

const WHAT: &str = "generation tags";

/// Every (namespace, tag) record of the note.
fn records(key: &InstanceKey) -> anyhow::Result<Vec<(u32, Tag)>> {
    Ok(note::read(key, NOTE, WHAT, RECORD_BYTES)?
        .iter()
        .map(|r| {
            let nsid = u32::from_le_bytes([r[0], r[1], r[2], r[3]]);
            let mut tag = [0u8; TABLE_MAC_BYTES];
            tag.copy_from_slice(&r[4..]);
            (nsid, tag)
        })
        .collect())
}

/// Replaces namespace `nsid`'s tags in the note with `tags`.
fn set_tags(key: &InstanceKey, nsid: u32, tags: &[Tag]) -> anyhow::Result<()> {
    let mut all = records(key)?;
    all.retain(|&(n, _)| n != nsid);
    all.extend(tags.iter().map(|&t| (nsid, t)));
    note::write(
        key,
        NOTE,
        WHAT,
        all.into_iter()
            .map(|(n, t)| [&n.to_le_bytes()[..], &t].concat()),
    )
}

fn tags(key: &InstanceKey, nsid: u32) -> anyhow::Result<Vec<Tag>> {
    Ok(records(key)?
        .into_iter()
        .filter(|&(n, _)| n == nsid)
        .map(|(_, t)| t)
        .collect())
}

pub fn path(namespace_dir: &Path) -> PathBuf {
    namespace_dir.join(FILE_NAME)
}

/// Applies namespace `nsid`'s saved table; says what happened (for the start-up line), and the
/// applied table's tag. An error when the keyring names a table and the file is missing or
/// another one.
pub fn restore(
    ftl: &Ftl,
    file: &Path,
    key: &InstanceKey,
    nsid: u32,
) -> anyhow::Result<(String, Option<Tag>)> {
    let expected = tags(key, nsid)?;
    let refuse = |what: String| {
        anyhow::anyhow!(
            "namespace {nsid}: {what}, not the one saved at the last clean stop (the kernel keyring \
             names it): the data directory was changed or rolled back while stopped, and older \
             copies of pages could be served; refusing it (`ferrite terminate` starts the instance \
             afresh)"
        )
    };
    let bytes = match fs::read(file) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            if !expected.is_empty() {
                return Err(refuse(format!(
                    "the generation table {} is missing",
                    file.display()
                )));
            }
            return Ok((
                "no generation table (replays of pages older than this start go unnoticed)".into(),
                None,
            ));
        }
        Err(e) => {
            return Err(e)
                .with_context(|| format!("reading the generation table {}", file.display()));
        }
    };
    if !expected.is_empty() && !tag_of(&bytes).is_some_and(|t| expected.contains(&t)) {
        return Err(refuse(format!(
            "the generation table {} is another",
            file.display()
        )));
    }
    match ftl.apply_generation_table(&bytes) {
        Ok(()) => Ok(("generation bounds restored".into(), tag_of(&bytes))),
        Err(e) if expected.is_empty() => Ok((format!("{e} ({}): ignored", file.display()), None)),
        Err(e) => Err(refuse(format!("{e} ({})", file.display()))),
    }
}

/// Saves namespace `nsid`'s table: its tag is added to the keyring's, the file replaced (to a
/// temporary file, synced, renamed over the old one), then the keyring keeps only the new tag.
/// A crash at any point leaves a table the keyring names.
pub fn save(table: &[u8], file: &Path, key: &InstanceKey, nsid: u32) -> anyhow::Result<()> {
    let Some(new) = tag_of(table) else {
        bail!("namespace {nsid}: a generation table too short to carry its MAC");
    };
    let mut during = tags(key, nsid)?;
    during.push(new);
    set_tags(key, nsid, &during)?;
    write_atomically(table, file).with_context(|| {
        format!(
            "namespace {nsid}: saving the generation table {}",
            file.display()
        )
    })?;
    set_tags(key, nsid, &[new])
}

/// Removes a table left by an earlier instance (its key is gone, so it can never apply), and
/// namespace `nsid`'s tags.
pub fn forget(file: &Path, key: &InstanceKey, nsid: u32) -> anyhow::Result<()> {
    match fs::remove_file(file) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => {
            return Err(e).with_context(|| format!("removing {}", file.display()));
        }
        _ => {}
    }
    set_tags(key, nsid, &[])
}

/// Replaces `file` with `bytes` so that a crash leaves the old file or the new one: written to
/// `<file>.tmp`, synced, renamed over it, the directory synced.
pub fn write_atomically(bytes: &[u8], file: &Path) -> io::Result<()> {
    let mut tmp = file.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    {
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    fs::rename(&tmp, file)?;
    if let Some(dir) = file.parent() {
        File::open(dir)?.sync_all()?;
    }
    Ok(())
}
