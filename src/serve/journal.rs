//! The generation journal of a sealed local namespace: what the table saved at a clean close
//! (`generations.rs`) does for a restart, this does for a crash. Each flush appends the
//! generation bounds the writes it made durable raised (`ftl::Ftl::flush_logged`) to
//! `generations.log` beside the device files before the flush completes, so an
//! older copy of a flushed page put back while the process was down (data, OOB record and block
//! summary together) fails to open after a crash as well. docs/keys-design.md says what it
//! covers; docs/ftl-format.md has the layout (`ftl::format::generations`).
//!
//! The journal extends one table (its header names the table's tag) and its records chain by
//! MAC under the instance key, so none can be dropped or forged; what a MAC cannot show is how
//! long the journal was. So the kernel keyring keeps, beside the key, the note
//! `generation-journals`: per namespace the base table's tag and the newest record's tag. At
//! start the journal must reach the record the keyring names; one cut short or rolled back is
//! refused with the namespace. A journal whose base is not the table applied is one a later
//! table superseded (each start and each compaction saves a table of every bound, then begins a
//! new journal) and is ignored.
//!
//! The note's payload (`note.rs`): a version byte (1), then records of (namespace id u32 LE,
//! base tag [u8; 32], head tag [u8; 32]), one per namespace, in no order.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;
use ftl::Ftl;
use ftl::format::generations::{self as format, Tag};
use keys::{InstanceKey, PageSealer, TABLE_MAC_BYTES};
use nvme_target::{FlushError, FlushLog};
use parking_lot::Mutex;

use super::{generations, note};

pub const FILE_NAME: &str = "generations.log";
const NOTE: &str = "generation-journals";
const RECORD_BYTES: usize = 4 + 2 * TABLE_MAC_BYTES;
/// Past this size the next flush folds the journal into a new table (the table of a 28 GiB
/// namespace is 56 MiB: the journal stays about as large as the table it extends).
pub const JOURNAL_BYTES_MAX: u64 = 64 << 20;

pub fn path(namespace_dir: &Path) -> PathBuf {
    namespace_dir.join(FILE_NAME)
}

const WHAT: &str = "generation journal tags";

/// (namespace, base tag, head tag) of every namespace in the note.
fn entries(key: &InstanceKey) -> anyhow::Result<Vec<(u32, Tag, Tag)>> {
    Ok(note::read(key, NOTE, WHAT, RECORD_BYTES)?
        .iter()
        .map(|r| {
            let nsid = u32::from_le_bytes([r[0], r[1], r[2], r[3]]);
            let mut base = [0u8; TABLE_MAC_BYTES];
            base.copy_from_slice(&r[4..4 + TABLE_MAC_BYTES]);
            let mut head = [0u8; TABLE_MAC_BYTES];
            head.copy_from_slice(&r[4 + TABLE_MAC_BYTES..]);
            (nsid, base, head)
        })
        .collect())
}

fn entry(key: &InstanceKey, nsid: u32) -> anyhow::Result<Option<(Tag, Tag)>> {
    Ok(entries(key)?
        .into_iter()
        .find(|&(n, _, _)| n == nsid)
        .map(|(_, base, head)| (base, head)))
}

/// Replaces namespace `nsid`'s entry (None: removes it).
fn set_entry(key: &InstanceKey, nsid: u32, tags: Option<(Tag, Tag)>) -> anyhow::Result<()> {
    let mut all = entries(key)?;
    all.retain(|&(n, _, _)| n != nsid);
    all.extend(tags.map(|(base, head)| (nsid, base, head)));
    note::write(
        key,
        NOTE,
        WHAT,
        all.into_iter()
            .map(|(n, base, head)| [&n.to_le_bytes()[..], &base, &head].concat()),
    )
}

/// At start, after the table (`generations::restore`, which applied the table tagged
/// `applied`): raises the bounds from namespace `nsid`'s journal; says what happened. An error
/// when the keyring names a journal that is missing, cut short or forged.
pub fn replay(
    ftl: &Ftl,
    file: &Path,
    key: &InstanceKey,
    nsid: u32,
    applied: Option<Tag>,
) -> anyhow::Result<String> {
    let sealer = ftl
        .sealer()
        .context("a generation journal needs a sealed namespace")?;
    let named = entry(key, nsid)?;
    let refuse = |what: String| {
        anyhow::anyhow!(
            "namespace {nsid}: the generation journal {} {what} (the kernel keyring names its \
             newest record): the data directory was changed or rolled back while stopped, and \
             older copies of pages could be served; refusing it (`ferrite terminate` starts the \
             instance afresh)",
            file.display()
        )
    };
    let bytes = match fs::read(file) {
        Ok(bytes) => Some(bytes),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => {
            return Err(e)
                .with_context(|| format!("reading the generation journal {}", file.display()));
        }
    };
    match (named, bytes) {
        // The table applied was saved after this journal was replayed or finished: it holds
        // every bound the journal had.
        (Some((base, _)), _) if Some(base) != applied => {
            Ok("journal superseded by the table".into())
        }
        (Some((_, head)), None) if Some(head) != applied => Err(refuse("is missing".into())),
        (Some(_), None) => Ok("journal empty".into()),
        (Some((_, head)), Some(bytes)) => {
            let journal = format::decode_journal(sealer, &bytes)
                .map_err(|e| refuse(format!("does not read back ({e})")))?;
            if Some(journal.base) != applied {
                return Err(refuse("extends another table".into()));
            }
            let reached = Some(head) == applied || journal.records.iter().any(|(_, t)| *t == head);
            if !reached {
                return Err(refuse(format!(
                    "ends before its newest record ({} records)",
                    journal.records.len()
                )));
            }
            apply(ftl, &journal)
        }
        // No tags in the keyring (a key not kept there): an authentic journal of the applied
        // table is used, anything else ignored.
        (None, None) => Ok("no journal".into()),
        (None, Some(bytes)) => match format::decode_journal(sealer, &bytes) {
            Ok(journal) if Some(journal.base) == applied => apply(ftl, &journal),
            Ok(_) => Ok("journal of another table: ignored".into()),
            Err(e) => Ok(format!("journal {e}: ignored")),
        },
    }
}

fn apply(ftl: &Ftl, journal: &format::Journal) -> anyhow::Result<String> {
    let mut pairs = 0;
    for (record, _) in &journal.records {
        ftl.raise_generation_pairs(record)
            .context("applying the generation journal")?;
        pairs += record.len();
    }
    let torn = if journal.torn_bytes > 0 {
        format!(", a torn tail of {} bytes left off", journal.torn_bytes)
    } else {
        String::new()
    };
    Ok(format!(
        "journal replayed ({} records, {pairs} bounds{torn})",
        journal.records.len()
    ))
}

/// Removes a journal left by an earlier instance (a fresh format) and namespace `nsid`'s entry.
pub fn forget(file: &Path, key: &InstanceKey, nsid: u32) -> anyhow::Result<()> {
    match fs::remove_file(file) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => {
            return Err(e).with_context(|| format!("removing {}", file.display()));
        }
        _ => {}
    }
    set_entry(key, nsid, None)
}

/// The journal of a running namespace: each flush goes through it (`FlushLog`).
#[derive(Debug)]
pub struct Journal {
    nsid: u32,
    table_file: PathBuf,
    file_path: PathBuf,
    key: InstanceKey,
    open: Mutex<Open>,
}

#[derive(Debug)]
struct Open {
    file: File,
    base: Tag,
    head: Tag,
    bytes: u64,
    /// The next flush saves a table of every bound and starts over: the journal grew past
    /// `JOURNAL_BYTES_MAX`, or an append failed (its pairs are then in no journal).
    want_all: bool,
}

impl Journal {
    /// Starts namespace `nsid`'s journal: saves the table of the FTL's bounds now (the table
    /// and journal found at start are in them), then begins an empty journal extending it.
    pub fn start(
        ftl: &Ftl,
        table_file: PathBuf,
        file_path: PathBuf,
        key: &InstanceKey,
        nsid: u32,
    ) -> anyhow::Result<Self> {
        let sealer = ftl
            .sealer()
            .context("a generation journal needs a sealed namespace")?;
        let open = begin(
            sealer,
            &ftl.generation_bounds(),
            &table_file,
            &file_path,
            key,
            nsid,
        )?;
        Ok(Self {
            nsid,
            table_file,
            file_path,
            key: key.clone(),
            open: Mutex::new(open),
        })
    }

    fn append(
        &self,
        open: &mut Open,
        sealer: &PageSealer,
        pairs: &[(u32, u64)],
    ) -> anyhow::Result<()> {
        let mut head = open.head;
        let mut bytes = Vec::new();
        for chunk in pairs.chunks(format::RECORD_PAIRS_MAX) {
            let (record, tag) = format::journal_record(sealer, &head, chunk)?;
            bytes.extend_from_slice(&record);
            head = tag;
        }
        // Written, not synced: like the sealed devices' barriers (`volume::durability`) it must
        // survive a crash of this process, which loses nothing in the page cache; after a host
        // failure the instance key is gone, and the pages with it.
        open.file.write_all(&bytes)?;
        open.bytes += bytes.len() as u64;
        open.head = head;
        set_entry(&self.key, self.nsid, Some((open.base, open.head)))
    }
}

impl FlushLog for Journal {
    fn flush(&self, ftl: &Ftl) -> Result<(), FlushError> {
        let mut open = self.open.lock();
        let drained = ftl.flush_logged(open.want_all)?;
        let sealer = ftl
            .sealer()
            .ok_or_else(|| FlushError::Log("the namespace is not sealed".into()))?;
        let result = match &drained.all {
            Some(all) => begin(
                sealer,
                all,
                &self.table_file,
                &self.file_path,
                &self.key,
                self.nsid,
            )
            .map(|fresh| *open = fresh),
            None if drained.pairs.is_empty() => Ok(()),
            None => self.append(&mut open, sealer, &drained.pairs),
        };
        open.want_all = result.is_err() || open.bytes > JOURNAL_BYTES_MAX;
        result.map_err(|e| FlushError::Log(format!("namespace {}: {e:#}", self.nsid)))
    }

    /// At a clean close, after the final table is saved: the journal is no longer needed.
    fn finish(self: Box<Self>) -> Result<(), String> {
        forget(&self.file_path, &self.key, self.nsid).map_err(|e| format!("{e:#}"))
    }
}

/// Saves the table of `bounds`, then an empty journal extending it, then names both in the
/// keyring. A crash between the steps leaves the old journal's entry, whose base is not the new
/// table: superseded, and the new table holds all it had.
fn begin(
    sealer: &PageSealer,
    bounds: &[u64],
    table_file: &Path,
    file_path: &Path,
    key: &InstanceKey,
    nsid: u32,
) -> anyhow::Result<Open> {
    let table = format::encode(sealer, bounds)
        .with_context(|| format!("namespace {nsid}: the generation table"))?;
    let base = format::table_tag(&table).context("a generation table without a tag")?;
    generations::save(&table, table_file, key, nsid)?;
    let header = format::journal_header(sealer, &base);
    let file = generations::write_atomically(&header, file_path)
        .and_then(|()| OpenOptions::new().append(true).open(file_path))
        .with_context(|| {
            format!(
                "namespace {nsid}: starting the generation journal {}",
                file_path.display()
            )
        })?;
    set_entry(key, nsid, Some((base, base)))?;
    Ok(Open {
        file,
        base,
        head: base,
        bytes: header.len() as u64,
        want_all: false,
    })
}
