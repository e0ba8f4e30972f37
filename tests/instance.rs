#![allow(clippy::unwrap_used)]
//! The instance lifecycle of `ferrite serve` with encryption on, as processes, with a libblkio
//! client: a restart or a crash keeps the data (the key waits in the kernel keyring); a terminate
//! (through a running server, of a stopped one, or by a signal under --terminate-on-exit)
//! destroys the key and erases the blocks, and the next start serves a fresh namespace; no device
//! file ever holds the plaintext or the key; a lost key (host reboot) formats fresh.
//!
//! Each test has its own data directory, hence its own random instance id, and terminates any
//! key it left in the keyring however it ends.

mod support;

use std::path::Path;

use blkio_client::Client;
use ferrite::serve::record::InstanceState;
use support::{KeyringCleanup, Server};

/// Where the tests write: past the first blocks, so it is not the first thing formatted.
const OFFSET_BYTES: u64 = 1 << 20;
const DATA_BYTES: usize = 256 * 1024;

fn setup(encryption: bool) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ferrite.toml"), support::config(encryption)).unwrap();
    dir
}

fn pattern(seed: u32) -> Vec<u8> {
    (0..DATA_BYTES as u32)
        .map(|i| (i.wrapping_mul(7).wrapping_add(seed) % 253) as u8)
        .collect()
}

fn client(dir: &Path) -> Client {
    Client::connect(&dir.join("ns1.sock"), 2).unwrap()
}

fn write_flushed(dir: &Path, data: &[u8]) {
    let mut c = client(dir);
    c.write(0, OFFSET_BYTES, data, false).unwrap();
    c.flush(1).unwrap();
}

fn read_back(dir: &Path) -> Vec<u8> {
    client(dir).read(1, OFFSET_BYTES, DATA_BYTES).unwrap()
}

/// Reads the whole namespace and asserts every byte is zero: a fresh namespace.
fn assert_namespace_is_zeroes(dir: &Path) {
    let mut c = client(dir);
    let capacity = c.capacity_bytes().unwrap();
    let chunk = 1 << 20;
    let mut offset = 0;
    while offset < capacity {
        let len = chunk.min(capacity - offset) as usize;
        let bytes = c.read(0, offset, len).unwrap();
        if let Some(i) = bytes.iter().position(|&b| b != 0) {
            panic!(
                "byte {} of a fresh namespace is {:#x}",
                offset + i as u64,
                bytes[i]
            );
        }
        offset += len as u64;
    }
}

fn terminate(dir: &Path, args: &[&str]) -> (String, String) {
    let out = support::run(dir, &[&["terminate"], args].concat());
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    assert!(
        out.status.success(),
        "ferrite terminate failed:\n{stdout}{stderr}"
    );
    (stdout, stderr)
}

/// `ferrite serve` on `dir`, which must refuse to start: its stderr.
fn refused_start(dir: &Path) -> String {
    let refused = support::run(dir, &["serve", "--config", "ferrite.toml"]);
    assert!(!refused.status.success(), "ferrite serve started");
    String::from_utf8_lossy(&refused.stderr).into_owned()
}

/// Every file called `name` under `dir`.
fn files_named(dir: &Path, name: &str) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                todo.push(path);
            } else if path.file_name().is_some_and(|n| n == name) {
                found.push(path);
            }
        }
    }
    found
}

#[test]
fn a_restart_without_terminate_reads_the_encrypted_data_back() {
    let dir = setup(true);
    let mut cleanup = KeyringCleanup::new(dir.path());
    let data = pattern(1);

    let server = Server::start(dir.path(), &[]);
    let id = cleanup.watch();
    write_flushed(dir.path(), &data);
    // One process per instance: a second server on the same data directory is refused.
    let second = support::run(dir.path(), &["serve", "--config", "ferrite.toml"]);
    assert!(!second.status.success());
    assert!(String::from_utf8_lossy(&second.stderr).contains("lock"));
    let first_run = server.stop();

    let record = support::record(dir.path()).unwrap();
    assert_eq!(record.instance_id, id);
    assert!(record.encryption);
    assert_eq!(record.state, InstanceState::Active);
    let fingerprint = record.key_fingerprint.unwrap();
    assert!(
        first_run.contains(&format!(
            "instance {id} (new): encryption on, key fingerprint {fingerprint}"
        )),
        "{first_run}"
    );
    let memory = keys::key_memory().to_string();
    assert!(
        first_run.contains(&format!("key memory {memory}")),
        "{first_run}"
    );
    // The clean stop saved the generation bounds beside the device files; the restart applies them.
    assert!(
        first_run.contains("generation bounds start now"),
        "{first_run}"
    );
    let tables = files_named(dir.path(), "generations.tbl");
    assert_eq!(tables.len(), 1, "{tables:?}");
    let table = std::fs::read(&tables[0]).unwrap();
    assert_eq!(&table[..8], b"FERRGENS");

    let server = Server::start(dir.path(), &[]);
    assert_eq!(read_back(dir.path()), data);
    let second_run = server.stop();
    assert!(
        second_run.contains("generation bounds restored"),
        "{second_run}"
    );
    assert!(
        second_run.contains(&format!("instance {id} (restarted)"))
            && second_run.contains(&format!(
                "fingerprint {fingerprint} (from the kernel keyring)"
            )),
        "{second_run}"
    );
    assert!(!second_run.contains("formatted fresh"), "{second_run}");
    assert_eq!(
        support::record(dir.path())
            .unwrap()
            .key_fingerprint
            .as_deref(),
        Some(fingerprint.as_str())
    );
}

#[test]
fn a_generation_table_deleted_or_rolled_back_while_stopped_is_refused() {
    let dir = setup(true);
    let mut cleanup = KeyringCleanup::new(dir.path());
    let server = Server::start(dir.path(), &[]);
    cleanup.watch();
    write_flushed(dir.path(), &pattern(5));
    server.stop();
    let table = files_named(dir.path(), "generations.tbl").remove(0);
    let older = std::fs::read(&table).unwrap();

    let server = Server::start(dir.path(), &[]);
    write_flushed(dir.path(), &pattern(6));
    server.stop();
    let newer = std::fs::read(&table).unwrap();
    assert_ne!(older, newer);

    // Deleted: without the table the old pages' bounds are gone, and the keyring says one was saved.
    std::fs::remove_file(&table).unwrap();
    let stderr = refused_start(dir.path());
    assert!(
        stderr.contains("is missing") && stderr.contains("rolled back"),
        "{stderr}"
    );
    // Rolled back to the older, genuine table: refused too.
    std::fs::write(&table, &older).unwrap();
    let stderr = refused_start(dir.path());
    assert!(stderr.contains("is another"), "{stderr}");

    // The table the keyring names serves again, with the newest data.
    std::fs::write(&table, &newer).unwrap();
    let server = Server::start(dir.path(), &[]);
    assert_eq!(read_back(dir.path()), pattern(6));
    let output = server.stop();
    assert!(output.contains("generation bounds restored"), "{output}");
}

/// A `FileNand` device file's header fields and regions (docs/ftl-format.md, "Device file").
struct DeviceFile {
    bytes: Vec<u8>,
    blocks: u32,
    pages_per_block: u32,
    page_size: u64,
    oob_size: u64,
    meta_offset: u64,
    data_offset: u64,
    oob_offset: u64,
}

impl DeviceFile {
    fn read(path: &Path) -> Self {
        let bytes = std::fs::read(path).unwrap();
        assert_eq!(&bytes[..8], b"FERRNAND");
        let u32_at = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap());
        let u64_at = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap());
        Self {
            blocks: u32_at(16) * u32_at(20) * u32_at(24) * u32_at(28),
            pages_per_block: u32_at(32),
            page_size: u64::from(u32_at(36)),
            oob_size: u64::from(u32_at(40)),
            meta_offset: u64_at(56),
            data_offset: u64_at(64),
            oob_offset: u64_at(72),
            bytes,
        }
    }

    fn programmed_pages(&self, block: u32) -> u32 {
        let at = (self.meta_offset + 16 * u64::from(block)) as usize + 4;
        u32::from_le_bytes(self.bytes[at..at + 4].try_into().unwrap())
    }

    /// (block, page, data_seq) of every programmed data page holding logical page `lpa`.
    fn copies_of(&self, lpa: u32) -> Vec<(u32, u32, u64)> {
        let mut found = Vec::new();
        for block in 0..self.blocks {
            for page in 0..self.programmed_pages(block) {
                let i = u64::from(block * self.pages_per_block + page);
                let at = (self.oob_offset + i * self.oob_size) as usize;
                let record = &self.bytes[at..at + 64];
                let record_lpa = u32::from_le_bytes(record[8..12].try_into().unwrap());
                if &record[0..2] == b"FE" && record[3] == 1 && record_lpa == lpa {
                    let data_seq = u64::from_le_bytes(record[24..32].try_into().unwrap());
                    found.push((block, page, data_seq));
                }
            }
        }
        found
    }

    /// What an attacker with the files does: `block` cut back to its first `pages` pages, as if
    /// the rest had never been programmed (their bytes zeroed, the metadata entry rewritten with
    /// its crc).
    fn unprogram_from(&mut self, block: u32, pages: u32) {
        for page in pages..self.programmed_pages(block) {
            let i = u64::from(block * self.pages_per_block + page);
            let data = (self.data_offset + i * self.page_size) as usize;
            self.bytes[data..data + self.page_size as usize].fill(0);
            let oob = (self.oob_offset + i * self.oob_size) as usize;
            self.bytes[oob..oob + self.oob_size as usize].fill(0);
        }
        let entry = (self.meta_offset + 16 * u64::from(block)) as usize;
        self.bytes[entry + 4..entry + 8].copy_from_slice(&pages.to_le_bytes());
        let crc = crc32fast::hash(&self.bytes[entry..entry + 12]);
        self.bytes[entry + 12..entry + 16].copy_from_slice(&crc.to_le_bytes());
    }
}

/// Every device file of namespace 1.
fn device_files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files: Vec<_> = (0..2)
        .flat_map(|i| files_named(dir, &format!("nand-{i}.img")))
        .collect();
    files.sort();
    files
}

/// Two versions of one logical page, each flushed, then a crash.
fn write_two_versions_and_crash(dir: &Path) -> (Vec<u8>, Vec<u8>) {
    let older = pattern(7)[..4096].to_vec();
    let newer = pattern(8)[..4096].to_vec();
    let server = Server::start(dir, &[]);
    let mut c = client(dir);
    c.write(0, OFFSET_BYTES, &older, false).unwrap();
    c.flush(0).unwrap();
    c.write(0, OFFSET_BYTES, &newer, false).unwrap();
    c.flush(0).unwrap();
    drop(c);
    server.crash();
    (older, newer)
}

#[test]
fn an_older_page_put_back_before_a_crash_open_is_refused_by_the_journal() {
    let dir = setup(true);
    let mut cleanup = KeyringCleanup::new(dir.path());
    // The first start saves an empty table and begins the journal.
    Server::start(dir.path(), &[]).stop();
    cleanup.watch();
    let (_, newer) = write_two_versions_and_crash(dir.path());
    let journal = files_named(dir.path(), "generations.log").remove(0);
    assert_eq!(&std::fs::read(&journal).unwrap()[..8], b"FERRGLOG");
    let lpa = (OFFSET_BYTES / 4096) as u32;

    // Both copies are on flash; take the newer one away. The older one authenticates (its own
    // generation is in its nonce), and with the newer gone the crash open's fold maps it: only the
    // journal, written at the second flush, knows a newer generation was flushed.
    let mut generations: Vec<u64> = device_files(dir.path())
        .iter()
        .flat_map(|f| DeviceFile::read(f).copies_of(lpa))
        .map(|(_, _, g)| g)
        .collect();
    generations.sort_unstable();
    assert_eq!(
        generations.len(),
        2,
        "two copies of page {lpa}: {generations:?}"
    );
    let newest = generations[1];
    let mut attacked = false;
    for file in device_files(dir.path()) {
        let mut device = DeviceFile::read(&file);
        if let Some(&(block, page, _)) =
            device.copies_of(lpa).iter().find(|&&(_, _, g)| g == newest)
        {
            device.unprogram_from(block, page);
            std::fs::write(&file, &device.bytes).unwrap();
            attacked = true;
        }
    }
    assert!(attacked);

    let server = Server::start(dir.path(), &[]);
    let read = client(dir.path()).read(1, OFFSET_BYTES, 4096);
    let output = server.stop();
    assert!(output.contains("journal replayed"), "{output}");
    match read {
        Err(_) => {}
        Ok(bytes) => panic!(
            "the older copy was served after a crash (newer one: {})",
            bytes == newer
        ),
    }
}

impl DeviceFile {
    /// Good blocks with no programmed page whose first data page is not all zeroes (what an
    /// erase that keeps the data leaves).
    fn erased_blocks_with_data(&self) -> usize {
        (0..self.blocks)
            .filter(|&b| self.programmed_pages(b) == 0)
            .filter(|&b| {
                let at = (self.data_offset + u64::from(b * self.pages_per_block) * self.page_size)
                    as usize;
                self.bytes[at..at + self.page_size as usize]
                    .iter()
                    .any(|&x| x != 0)
            })
            .count()
    }

    /// (block, page) of every programmed trim-log page.
    fn trim_log_pages(&self) -> Vec<(u32, u32)> {
        let mut found = Vec::new();
        for block in 0..self.blocks {
            for page in 0..self.programmed_pages(block) {
                let i = u64::from(block * self.pages_per_block + page);
                let at = (self.oob_offset + i * self.oob_size) as usize;
                if &self.bytes[at..at + 2] == b"FE" && self.bytes[at + 3] == 3 {
                    found.push((block, page));
                }
            }
        }
        found
    }
}

#[test]
fn a_trimmed_page_brought_back_before_a_crash_open_is_refused_by_the_journal() {
    let dir = setup(true);
    let mut cleanup = KeyringCleanup::new(dir.path());
    let server = Server::start(dir.path(), &[]);
    cleanup.watch();
    let data = pattern(9)[..4096].to_vec();
    let mut c = client(dir.path());
    c.write(0, OFFSET_BYTES, &data, false).unwrap();
    c.flush(0).unwrap();
    c.discard(0, OFFSET_BYTES, 4096).unwrap();
    c.flush(0).unwrap();
    assert_eq!(c.read(0, OFFSET_BYTES, 4096).unwrap(), vec![0; 4096]);
    drop(c);
    server.crash();

    // The written copy is still on flash; take the trim log away, so the crash open's fold maps
    // that copy again. Only the journal knows the page was trimmed after it.
    let mut cut = 0;
    for file in device_files(dir.path()) {
        let mut device = DeviceFile::read(&file);
        let pages = device.trim_log_pages();
        for &(block, page) in &pages {
            if pages.iter().all(|&(b, p)| b != block || p >= page) {
                device.unprogram_from(block, page);
                cut += 1;
            }
        }
        std::fs::write(&file, &device.bytes).unwrap();
    }
    assert!(cut > 0, "no trim-log page found");

    let server = Server::start(dir.path(), &[]);
    let read = client(dir.path()).read(1, OFFSET_BYTES, 4096);
    let output = server.stop();
    assert!(output.contains("journal replayed"), "{output}");
    match read {
        Err(_) => {}
        Ok(bytes) => panic!(
            "a trimmed page came back after a crash (its old bytes: {})",
            bytes == data
        ),
    }
}

#[test]
fn a_generation_journal_cut_short_or_deleted_while_stopped_is_refused() {
    let dir = setup(true);
    let mut cleanup = KeyringCleanup::new(dir.path());
    let server = Server::start(dir.path(), &[]);
    cleanup.watch();
    write_flushed(dir.path(), &pattern(3));
    let journal = files_named(dir.path(), "generations.log").remove(0);
    let shorter = std::fs::read(&journal).unwrap();
    write_flushed(dir.path(), &pattern(4));
    server.crash();
    let full = std::fs::read(&journal).unwrap();
    assert!(full.len() > shorter.len() && full.starts_with(&shorter));

    std::fs::write(&journal, &shorter).unwrap();
    let stderr = refused_start(dir.path());
    assert!(stderr.contains("ends before its newest record"), "{stderr}");
    std::fs::remove_file(&journal).unwrap();
    let stderr = refused_start(dir.path());
    assert!(
        stderr.contains("is missing") && stderr.contains("rolled back"),
        "{stderr}"
    );

    // The whole journal serves again, with the newest data; a clean stop then retires it.
    std::fs::write(&journal, &full).unwrap();
    let server = Server::start(dir.path(), &[]);
    assert_eq!(read_back(dir.path()), pattern(4));
    let output = server.stop();
    assert!(output.contains("journal replayed ("), "{output}");
    assert!(files_named(dir.path(), "generations.log").is_empty());
}

#[test]
fn a_crash_is_not_a_terminate() {
    let dir = setup(true);
    let mut cleanup = KeyringCleanup::new(dir.path());
    let data = pattern(2);

    let server = Server::start(dir.path(), &[]);
    let id = cleanup.watch();
    write_flushed(dir.path(), &data);
    server.crash();
    assert!(
        support::keyring_serial(&id).is_some(),
        "a crash destroyed the key"
    );

    let server = Server::start(dir.path(), &[]);
    assert_eq!(read_back(dir.path()), data);
    let output = server.stop();
    assert!(
        output.contains(&format!("instance {id} (restarted)")),
        "{output}"
    );
}

#[test]
fn no_backing_file_holds_the_plaintext_or_the_key_active_or_terminated() {
    let marker_line = format!("FERRITE-PLAINTEXT-MARKER-{:016x}|", std::process::id());
    let marker: Vec<u8> = marker_line.bytes().cycle().take(DATA_BYTES).collect();
    let needle = &marker[..marker_line.len()];

    // The scan works: unsealed, the marker is in the device files.
    let plain = setup(false);
    let server = Server::start(plain.path(), &[]);
    write_flushed(plain.path(), &marker);
    server.stop();
    assert!(
        !support::files_containing(&support::data_dir(plain.path()), needle).is_empty(),
        "the scanner finds no unsealed marker"
    );
    // Terminating erases every block, and an erased block leaves no bytes in its file.
    terminate(plain.path(), &["--config", "ferrite.toml", "--wait"]);
    let left = support::files_containing(&support::data_dir(plain.path()), needle);
    assert!(
        left.is_empty(),
        "terminated, the plaintext stays in {left:?}"
    );

    let dir = setup(true);
    let mut cleanup = KeyringCleanup::new(dir.path());
    let server = Server::start(dir.path(), &[]);
    let id = cleanup.watch();
    write_flushed(dir.path(), &marker);
    assert_eq!(read_back(dir.path()), marker);
    let key = support::keyring_payload(&id);
    assert_eq!(key.len(), 32);
    assert!(key.iter().any(|&b| b != 0));
    let needles: [(&str, &[u8]); 4] = [
        ("plaintext marker", needle),
        ("instance key", &key),
        ("first half of the key", &key[..16]),
        ("second half of the key", &key[16..]),
    ];
    // Everything this test made: device files, instance record, configuration, server logs.
    let scan = |when: &str| {
        for (what, bytes) in needles {
            let found = support::files_containing(dir.path(), bytes);
            assert!(found.is_empty(), "{when}: {what} found in {found:?}");
        }
    };
    scan("active");

    terminate(dir.path(), &["--config", "ferrite.toml"]);
    let (status, _) = server.wait();
    assert!(status.success());
    scan("terminated");
}

#[test]
fn after_terminate_a_restart_serves_zeroes_of_a_fresh_namespace() {
    let dir = setup(true);
    let mut cleanup = KeyringCleanup::new(dir.path());
    let server = Server::start(dir.path(), &[]);
    let old_id = cleanup.watch();
    let old_fingerprint = support::record(dir.path()).unwrap().key_fingerprint;
    write_flushed(dir.path(), &pattern(3));
    server.stop();
    assert!(support::programmed_blocks(dir.path()) > 0);
    assert!(support::keyring_note_serial(&old_id, "generation-tables").is_some());

    // A stopped instance, with --wait: `ferrite terminate` does it all itself before returning.
    let (stdout, stderr) = terminate(dir.path(), &["--data", "ferrite-data", "--wait"]);
    assert!(
        stdout.contains(&format!("instance {old_id} terminated")),
        "{stdout}"
    );
    assert!(
        stderr.contains("destroyed in the kernel keyring"),
        "{stderr}"
    );
    assert!(
        stderr.contains("nand-0.img") && stderr.contains("nand-1.img"),
        "{stderr}"
    );
    assert!(support::keyring_serial(&old_id).is_none());
    // The note naming the saved generation tables goes with the key.
    assert!(support::keyring_note_serial(&old_id, "generation-tables").is_none());
    assert!(support::record(dir.path()).is_none());
    assert_eq!(
        support::programmed_blocks(dir.path()),
        0,
        "a block was not erased"
    );
    // Again: nothing left to terminate, and that is not an error.
    let (stdout, _) = terminate(dir.path(), &["--data", "ferrite-data"]);
    assert!(stdout.contains("nothing to terminate"), "{stdout}");

    let server = Server::start(dir.path(), &[]);
    let new_id = cleanup.watch();
    assert_ne!(new_id, old_id);
    assert_ne!(
        support::record(dir.path()).unwrap().key_fingerprint,
        old_fingerprint
    );
    assert_namespace_is_zeroes(dir.path());
    let output = server.stop();
    assert!(
        output.contains(&format!("instance {new_id} (new)")),
        "{output}"
    );
    assert!(output.contains("formatted fresh"), "{output}");
    // The old instance's generation table can never apply (its key is gone): forgotten.
    assert!(output.contains("generation bounds start now"), "{output}");
}

#[test]
fn terminating_a_running_server_destroys_its_key_and_stops_it() {
    let dir = setup(true);
    let mut cleanup = KeyringCleanup::new(dir.path());
    let server = Server::start(dir.path(), &[]);
    let id = cleanup.watch();
    write_flushed(dir.path(), &pattern(4));
    assert!(support::keyring_serial(&id).is_some());

    // The server's progress comes back to `ferrite terminate`, which returns once the key is
    // destroyed and serving stopped; the server erases in the background.
    let (stdout, stderr) = terminate(dir.path(), &["--config", "ferrite.toml"]);
    assert!(
        stdout.contains(&format!("instance {id} terminated")) && stdout.contains("background"),
        "{stdout}"
    );
    assert!(
        stderr.contains("destroyed in ferrite serve and in the kernel keyring"),
        "{stderr}"
    );
    assert!(
        support::keyring_serial(&id).is_none(),
        "the keyring still holds the key"
    );
    // A new server started at once waits for the erase, then serves a fresh instance.
    let next = Server::start_waiting(dir.path(), &[]);
    let (status, output) = server.wait();
    assert!(
        status.success(),
        "ferrite serve exited with {status}:\n{output}"
    );
    assert!(!output.contains("closed cleanly"), "{output}");
    assert!(output.contains("terminate: erased"), "{output}");
    let next = next.started();
    let new_id = cleanup.watch();
    assert_ne!(new_id, id);
    assert_eq!(read_back(dir.path()), vec![0; DATA_BYTES]);
    next.stop();
}

#[test]
fn terminating_a_stopped_instance_erases_in_the_background() {
    let dir = setup(true);
    let mut cleanup = KeyringCleanup::new(dir.path());
    let server = Server::start(dir.path(), &[]);
    let old_id = cleanup.watch();
    // Enough rewrites for GC to erase blocks while serving: sealed devices' erases leave the
    // ciphertext in the file, which the terminate must drop as well. A crash, not a stop: a clean
    // stop drops it itself (`a_clean_stop_leaves_no_data_in_erased_blocks`).
    for round in 0..64 {
        write_flushed(dir.path(), &pattern(100 + round));
    }
    write_flushed(dir.path(), &pattern(6));
    server.crash();
    let kept = device_files(dir.path())
        .iter()
        .map(|f| DeviceFile::read(f).erased_blocks_with_data())
        .sum::<usize>();
    assert!(
        kept > 0,
        "no erased block kept its ciphertext: GC did not run"
    );

    let (stdout, _) = terminate(dir.path(), &["--data", "ferrite-data"]);
    assert!(
        stdout.contains(&format!("instance {old_id} terminated"))
            && stdout.contains("erased in the background"),
        "{stdout}"
    );
    // Crypto-erase is done when it returns; the media erase finishes on its own.
    assert!(support::keyring_serial(&old_id).is_none());
    let log = support::data_dir(dir.path()).join("erase.log");
    let done = format!("instance {old_id} erased");
    support::wait_until("the background erase to finish", || {
        std::fs::read_to_string(&log).is_ok_and(|l| l.contains(&done))
    });
    assert!(support::record(dir.path()).is_none());
    let log = std::fs::read_to_string(&log).unwrap();
    assert!(log.contains("nand-1.img"), "{log}");
    assert_eq!(
        support::programmed_blocks(dir.path()),
        0,
        "a block was not erased"
    );
    for file in device_files(dir.path()) {
        let device = DeviceFile::read(&file);
        let data = &device.bytes[device.data_offset as usize..device.oob_offset as usize];
        if let Some(at) = data.iter().position(|&b| b != 0) {
            panic!(
                "{} keeps data at byte {at} of its data region after a terminate",
                file.display()
            );
        }
    }
    let server = Server::start(dir.path(), &[]);
    assert_ne!(cleanup.watch(), old_id);
    assert_eq!(read_back(dir.path()), vec![0; DATA_BYTES]);
    server.stop();
}

#[test]
fn terminate_on_exit_terminates_on_sigterm() {
    let dir = setup(true);
    let mut cleanup = KeyringCleanup::new(dir.path());
    let server = Server::start(dir.path(), &["--terminate-on-exit"]);
    let id = cleanup.watch();
    write_flushed(dir.path(), &pattern(5));
    server.signal("TERM");
    let (status, output) = server.wait();
    assert!(
        status.success(),
        "ferrite serve exited with {status}:\n{output}"
    );
    assert!(
        output.contains("destroyed in ferrite serve and in the kernel keyring"),
        "{output}"
    );
    assert!(support::keyring_serial(&id).is_none());
    assert!(support::record(dir.path()).is_none());

    let server = Server::start(dir.path(), &[]);
    cleanup.watch();
    assert_eq!(read_back(dir.path()), vec![0; DATA_BYTES]);
    server.stop();
}

#[test]
fn a_lost_key_formats_the_namespace_fresh_and_says_why() {
    let dir = setup(true);
    let mut cleanup = KeyringCleanup::new(dir.path());
    let server = Server::start(dir.path(), &[]);
    let id = cleanup.watch();
    write_flushed(dir.path(), &pattern(6));
    server.stop();
    support::drop_keyring_key(&id);

    let server = Server::start(dir.path(), &[]);
    assert_eq!(read_back(dir.path()), vec![0; DATA_BYTES]);
    let output = server.stop();
    assert!(
        output.contains(&format!("instance {id} (restarted)")),
        "{output}"
    );
    assert!(
        output.contains("formatted fresh") && output.contains("gone from the kernel keyring"),
        "{output}"
    );
    assert_eq!(
        support::record(dir.path()).unwrap().state,
        InstanceState::Active
    );
}

#[test]
fn changing_the_encryption_setting_needs_a_terminate() {
    let dir = setup(true);
    let mut cleanup = KeyringCleanup::new(dir.path());
    Server::start(dir.path(), &[]).stop();
    let id = cleanup.watch();
    std::fs::write(dir.path().join("ferrite.toml"), support::config(false)).unwrap();

    let err = refused_start(dir.path());
    assert!(
        err.contains(&format!("instance {id}"))
            && err.contains("created with encryption on")
            && err.contains("ferrite terminate"),
        "{err}"
    );

    terminate(dir.path(), &["--config", "ferrite.toml"]);
    let server = Server::start(dir.path(), &[]);
    let record = support::record(dir.path()).unwrap();
    assert!(!record.encryption && record.key_fingerprint.is_none());
    server.stop();
}

#[test]
fn a_terminate_cut_short_is_finished_by_the_next_start() {
    let dir = setup(true);
    let mut cleanup = KeyringCleanup::new(dir.path());
    let server = Server::start(dir.path(), &[]);
    let old_id = cleanup.watch();
    write_flushed(dir.path(), &pattern(7));
    server.stop();
    // What a terminate leaves when it dies right after recording itself: the key and the
    // blocks are still there.
    let mut record = support::record(dir.path()).unwrap();
    record.state = InstanceState::Terminating;
    record.save(&support::data_dir(dir.path())).unwrap();

    let server = Server::start(dir.path(), &[]);
    let new_id = cleanup.watch();
    assert_ne!(new_id, old_id);
    assert!(support::keyring_serial(&old_id).is_none());
    assert_eq!(read_back(dir.path()), vec![0; DATA_BYTES]);
    let output = server.stop();
    assert!(
        output.contains(&format!("instance {old_id}: a terminate did not finish")),
        "{output}"
    );
    assert!(
        output.contains(&format!("instance {new_id} (new)")),
        "{output}"
    );
}

/// 40 rounds over the same 256 KiB (the last `pattern(39)`), flushed: ~10 MiB through 8 MiB of
/// raw NAND, so GC erases blocks, and erases while serving leave their data bytes
/// (`FileErase::KeepData`).
fn rewrite_until_gc_erases(dir: &Path) {
    let mut c = client(dir);
    for round in 0..40 {
        c.write(0, OFFSET_BYTES, &pattern(round), false).unwrap();
    }
    c.flush(1).unwrap();
}

#[test]
fn a_clean_stop_leaves_no_data_in_erased_blocks() {
    // Unsealed, where what an erased block kept is plaintext.
    let dir = setup(false);
    let server = Server::start(dir.path(), &[]);
    rewrite_until_gc_erases(dir.path());
    let out = server.stop();
    assert!(out.contains("erased blocks dropped"), "{out}");
    let files = device_files(dir.path());
    assert_eq!(files.len(), 2);
    for file in &files {
        let left = DeviceFile::read(file).erased_blocks_with_data();
        assert_eq!(
            left,
            0,
            "{}: {left} erased blocks hold data",
            file.display()
        );
    }
    // The live data is untouched.
    let server = Server::start(dir.path(), &[]);
    assert_eq!(read_back(dir.path()), pattern(39));
    server.stop();
}

#[test]
fn a_start_after_a_crash_drops_what_erased_blocks_kept() {
    let dir = setup(false);
    let server = Server::start(dir.path(), &[]);
    rewrite_until_gc_erases(dir.path());
    server.crash();
    let kept = device_files(dir.path())
        .iter()
        .map(|f| DeviceFile::read(f).erased_blocks_with_data())
        .sum::<usize>();
    assert!(kept > 0, "no erased block kept its data: GC did not run");
    // Nothing is written after the start, so no erase of this run can have left anything.
    let server = Server::start(dir.path(), &[]);
    assert_eq!(read_back(dir.path()), pattern(39));
    for file in device_files(dir.path()) {
        let left = DeviceFile::read(&file).erased_blocks_with_data();
        assert_eq!(
            left,
            0,
            "{}: {left} erased blocks hold data",
            file.display()
        );
    }
    server.stop();
}
