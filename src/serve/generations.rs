//! The generation table of a sealed local namespace, kept beside its device files across a clean
//! restart: at close `ferrite serve` saves the FTL's per-page generation bounds (an authenticated
//! table, `ftl::format::generations`), and at start it applies them, so an older copy of a page
//! put back into a device file fails to open after the restart too (docs/keys-design.md).
//!
//! The table is no secret (generations are in every page's OOB record anyway) and no key: a MAC
//! under the instance key makes it unforgeable. A table that is missing, damaged or of another
//! key weakens the check to what the media says and is reported; it never fails a good read.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use ftl::Ftl;

pub const FILE_NAME: &str = "generations.tbl";

pub fn path(namespace_dir: &Path) -> PathBuf {
    namespace_dir.join(FILE_NAME)
}

/// Applies the saved table, if any; says what happened (for the start-up log).
pub fn restore(ftl: &Ftl, file: &Path) -> String {
    let bytes = match fs::read(file) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return "no generation table (replays of pages older than this start go unnoticed)"
                .into();
        }
        Err(e) => return format!("generation table {} unreadable: {e}", file.display()),
    };
    match ftl.apply_generation_table(&bytes) {
        Ok(()) => "generation bounds restored".into(),
        Err(e) => format!("{e} ({}): ignored", file.display()),
    }
}

/// Writes `table` in place of the old one: to a temporary file, synced, then renamed over it,
/// so a crash leaves the old table or the new one, never a torn one.
pub fn save(table: &[u8], file: &Path) -> io::Result<()> {
    let tmp = file.with_extension("tbl.tmp");
    {
        let mut f = File::create(&tmp)?;
        f.write_all(table)?;
        f.sync_all()?;
    }
    fs::rename(&tmp, file)?;
    if let Some(dir) = file.parent() {
        File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// Removes a table left by an earlier instance (its key is gone, so it can never apply).
pub fn forget(file: &Path) -> io::Result<()> {
    match fs::remove_file(file) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}
