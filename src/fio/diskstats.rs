//! fio's "disk_util" for file targets: the block device under the file, from /sys/block/NAME/stat
//! sampled when the target opens and when the run ends (as fio samples the same counters).

use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use super::engine::DiskUtil;

/// /sys/block/NAME/stat fields (Documentation/block/stat.rst).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Counters {
    read_ios: u64,
    read_merges: u64,
    read_ticks: u64,
    write_ios: u64,
    write_merges: u64,
    write_ticks: u64,
    io_ticks: u64,
    time_in_queue: u64,
}

fn parse_stat(text: &str) -> Option<Counters> {
    let f: Vec<u64> = text
        .split_whitespace()
        .map(|x| x.parse().ok())
        .collect::<Option<_>>()?;
    if f.len() < 11 {
        return None;
    }
    Some(Counters {
        read_ios: f[0],
        read_merges: f[1],
        read_ticks: f[3],
        write_ios: f[4],
        write_merges: f[5],
        write_ticks: f[7],
        io_ticks: f[9],
        time_in_queue: f[10],
    })
}

/// The whole disk holding `file` (a partition's parent), if the file is on a block device.
fn disk_dir(file: &Path) -> Option<PathBuf> {
    let dev = std::fs::metadata(file).ok()?.dev();
    let major = ((dev >> 8) & 0xfff) | ((dev >> 32) & !0xfff);
    let minor = (dev & 0xff) | ((dev >> 12) & !0xff);
    let dir = std::fs::canonicalize(format!("/sys/dev/block/{major}:{minor}")).ok()?;
    if dir.join("partition").exists() {
        dir.parent().map(Path::to_path_buf)
    } else {
        Some(dir)
    }
}

/// The counters of one disk from when a target opened.
#[derive(Debug)]
pub struct DiskWatch {
    name: String,
    stat_path: PathBuf,
    start: Counters,
    opened: Instant,
}

impl DiskWatch {
    /// None when the file is not on a block device (tmpfs, overlay), as fio then prints none.
    pub fn for_file(file: &Path) -> Option<Self> {
        let dir = disk_dir(file)?;
        let stat_path = dir.join("stat");
        let start = parse_stat(&std::fs::read_to_string(&stat_path).ok()?)?;
        Some(Self {
            name: dir.file_name()?.to_string_lossy().into_owned(),
            stat_path,
            start,
            opened: Instant::now(),
        })
    }

    /// What the disk did since the target opened.
    pub fn util(&self) -> Option<DiskUtil> {
        let now = parse_stat(&std::fs::read_to_string(&self.stat_path).ok()?)?;
        let s = self.start;
        let wall_ms = (self.opened.elapsed().as_millis() as u64).max(1);
        let io_ticks = now.io_ticks.saturating_sub(s.io_ticks);
        Some(DiskUtil {
            name: self.name.clone(),
            read_ios: now.read_ios.saturating_sub(s.read_ios),
            write_ios: now.write_ios.saturating_sub(s.write_ios),
            read_merges: now.read_merges.saturating_sub(s.read_merges),
            write_merges: now.write_merges.saturating_sub(s.write_merges),
            read_ticks: now.read_ticks.saturating_sub(s.read_ticks),
            write_ticks: now.write_ticks.saturating_sub(s.write_ticks),
            in_queue: now.time_in_queue.saturating_sub(s.time_in_queue),
            util: (100.0 * io_ticks as f64 / wall_ms as f64).min(100.0),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields() {
        let c = parse_stat("  100 2 800 30 50 4 400 60 0 70 90 0 0 0 0 0 0\n").expect("parses");
        assert_eq!((c.read_ios, c.read_merges, c.read_ticks), (100, 2, 30));
        assert_eq!((c.write_ios, c.write_merges, c.write_ticks), (50, 4, 60));
        assert_eq!((c.io_ticks, c.time_in_queue), (70, 90));
        assert!(parse_stat("1 2 3").is_none());
    }

    #[test]
    fn a_file_on_tmpfs_or_a_disk() {
        // Whatever /tmp is here, the answer is consistent: a disk has a stat file we can read.
        if let Some(w) = DiskWatch::for_file(Path::new("/proc/self/stat")) {
            panic!("procfs is not a block device: {w:?}");
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let f = dir.path().join("x");
        std::fs::write(&f, b"x").expect("write");
        if let Some(w) = DiskWatch::for_file(&f) {
            let u = w.util().expect("util");
            assert!(!u.name.is_empty());
        }
    }
}
