//! `ferrite serve` as a child process for the process-level tests, and the kernel keyring seen
//! from outside it (the `keyctl` tool of keyutils: tests run as root, like `ferrite serve`).
#![allow(clippy::unwrap_used, dead_code)]

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output};
use std::time::{Duration, Instant};

use ferrite::serve::record::InstanceRecord;

pub mod ebs;

/// How long a server may take to start, stop or terminate.
const PROCESS_TIMEOUT: Duration = Duration::from_secs(60);

/// A small geometry (two 4 MiB devices), queues, one namespace on `ns1.sock`.
pub fn config(encryption: bool) -> String {
    format!(
        r#"
encryption = {encryption}
[geometry]
channels = 1
dies_per_channel = 2
planes_per_die = 1
blocks_per_plane = 16
pages_per_block = 32
page_size = 4096
oob_size = 64
[transport]
queues = 2
[[namespace]]
nsid = 1
devices = 2
socket = "ns1.sock"
serial = "SERVE-TEST-1"
"#
    )
}

pub fn ferrite(dir: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_ferrite"));
    c.current_dir(dir);
    c
}

/// `ferrite ARGS` to completion.
pub fn run(dir: &Path, args: &[&str]) -> Output {
    ferrite(dir).args(args).output().unwrap()
}

pub fn data_dir(dir: &Path) -> PathBuf {
    dir.join("ferrite-data")
}

/// The instance recorded in `dir`'s data directory, if any.
pub fn record(dir: &Path) -> Option<InstanceRecord> {
    InstanceRecord::load(&data_dir(dir)).unwrap()
}

/// A running `ferrite serve`, its stdout and stderr in a log file of its own.
#[derive(Debug)]
pub struct Server {
    child: Option<Child>,
    pub log: PathBuf,
}

impl Server {
    /// Starts `ferrite serve --config ferrite.toml EXTRA` in `dir` and waits until it serves
    /// (its vhost-user and control sockets are new: stale ones of a killed server are removed
    /// first).
    pub fn start(dir: &Path, extra: &[&str]) -> Self {
        Self::start_waiting(dir, extra).started()
    }

    /// Starts `ferrite serve` without waiting for it to serve (it may be waiting for a lock).
    pub fn start_waiting(dir: &Path, extra: &[&str]) -> Starting {
        for stale in [dir.join("ns1.sock"), data_dir(dir).join("control.sock")] {
            let _ = std::fs::remove_file(stale);
        }
        let log = (0..)
            .map(|n| dir.join(format!("serve-{n}.log")))
            .find(|p| !p.exists())
            .unwrap();
        let out = File::create(&log).unwrap();
        let child = ferrite(dir)
            .args(["serve", "--config", "ferrite.toml"])
            .args(extra)
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap();
        Starting {
            server: Self {
                child: Some(child),
                log,
            },
            dir: dir.to_owned(),
        }
    }

    pub fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap()
    }

    pub fn signal(&self, signal: &str) {
        let pid = self.child.as_ref().unwrap().id().to_string();
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &pid])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits for the server to exit on its own (after a signal or a terminate).
    pub fn wait(mut self) -> (ExitStatus, String) {
        let mut child = self.child.take().unwrap();
        let deadline = Instant::now() + PROCESS_TIMEOUT;
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return (status, self.output());
            }
            assert!(
                Instant::now() < deadline,
                "ferrite serve did not exit:\n{}",
                self.output()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Ctrl-C: a clean stop, which must succeed.
    pub fn stop(self) -> String {
        self.signal("INT");
        let (status, output) = self.wait();
        assert!(
            status.success(),
            "ferrite serve exited with {status}:\n{output}"
        );
        output
    }

    /// SIGKILL: a crash.
    pub fn crash(self) {
        self.signal("KILL");
        let (status, _) = self.wait();
        assert!(!status.success());
    }
}

/// A `ferrite serve` started, not yet known to serve.
#[derive(Debug)]
pub struct Starting {
    server: Server,
    dir: PathBuf,
}

impl Starting {
    /// Waits until the server serves (its sockets exist).
    pub fn started(mut self) -> Server {
        let (dir, server) = (&self.dir, &mut self.server);
        let deadline = Instant::now() + PROCESS_TIMEOUT;
        while !dir.join("ns1.sock").exists() || !data_dir(dir).join("control.sock").exists() {
            if let Some(status) = server.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("ferrite serve exited with {status}:\n{}", server.output());
            }
            assert!(
                Instant::now() < deadline,
                "ferrite serve did not start:\n{}",
                server.output()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        self.server
    }
}

/// Polls `done` until it holds, failing after the process timeout.
pub fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + PROCESS_TIMEOUT;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

impl Drop for Server {
    /// A failed test must not leave a server running.
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// `keyctl`, which keyutils provides (scripts/test-all installs it).
fn keyctl(args: &[&str]) -> Output {
    Command::new("keyctl")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running keyctl ({e}): install keyutils"))
}

fn description(instance_id: &str) -> String {
    format!("ferrite:instance:{instance_id}")
}

/// The serial of the instance's key in root's user keyring, if it is there.
pub fn keyring_serial(instance_id: &str) -> Option<String> {
    let out = keyctl(&["search", "@u", "user", &description(instance_id)]);
    out.status
        .success()
        .then(|| String::from_utf8(out.stdout).unwrap().trim().to_owned())
}

/// The serial of the instance's keyring note `name` (beside its key), if there is one.
pub fn keyring_note_serial(instance_id: &str, name: &str) -> Option<String> {
    let described = format!("{}:{name}", description(instance_id));
    let out = keyctl(&["search", "@u", "user", &described]);
    out.status
        .success()
        .then(|| String::from_utf8(out.stdout).unwrap().trim().to_owned())
}

/// The instance key's 32 bytes, read from the keyring as any root process could.
pub fn keyring_payload(instance_id: &str) -> Vec<u8> {
    let serial = keyring_serial(instance_id)
        .unwrap_or_else(|| panic!("no keyring key for instance {instance_id}"));
    let out = keyctl(&["pipe", &serial]);
    assert!(out.status.success(), "keyctl pipe {serial} failed");
    out.stdout
}

/// What a host reboot does to the key: it is gone from the keyring.
pub fn drop_keyring_key(instance_id: &str) {
    let serial = keyring_serial(instance_id).unwrap();
    assert!(keyctl(&["invalidate", &serial]).status.success());
}

/// Destroys the keyring keys of every instance a test's data directory had, however the test
/// ends, even when a server failed to start after creating its key (a passing test has
/// terminated them already: then this does nothing).
#[derive(Debug)]
pub struct KeyringCleanup {
    dir: PathBuf,
    seen: Vec<String>,
}

impl KeyringCleanup {
    pub fn new(dir: &Path) -> Self {
        Self {
            dir: dir.to_owned(),
            seen: Vec::new(),
        }
    }

    /// The instance recorded now, remembered for the cleanup.
    pub fn watch(&mut self) -> String {
        let id = record(&self.dir)
            .expect("an instance is recorded")
            .instance_id;
        if !self.seen.contains(&id) {
            self.seen.push(id.clone());
        }
        id
    }
}

impl Drop for KeyringCleanup {
    fn drop(&mut self) {
        let recorded = InstanceRecord::load(&data_dir(&self.dir))
            .ok()
            .flatten()
            .map(|r| r.instance_id);
        for id in self.seen.iter().chain(&recorded) {
            let _ = keys::InstanceKey::terminate(id);
        }
    }
}

/// Blocks that hold programmed pages, over every device of every namespace in `dir`'s data
/// directory (read from the device files as they are: the server must be stopped).
pub fn programmed_blocks(dir: &Path) -> u32 {
    use ftl::nand::{FaultConfig, FileNand, Nand};
    let mut programmed = 0;
    for ns in ferrite::serve::erase::namespaces(&data_dir(dir)).unwrap() {
        for i in 0..ns.devices {
            let path = ferrite::glue::device_path(&ns.dir, i);
            let device = FileNand::open(&path, FaultConfig::none(), None).unwrap();
            programmed += (0..device.geometry().blocks())
                .filter(|&b| device.block_info(b).unwrap().programmed_pages > 0)
                .count() as u32;
        }
    }
    programmed
}

/// Every file under `root` whose bytes contain `needle`, recursively.
pub fn files_containing(root: &Path, needle: &[u8]) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut dirs = vec![root.to_owned()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.is_file() {
                let bytes = std::fs::read(&path).unwrap();
                if bytes.windows(needle.len()).any(|w| w == needle) {
                    found.push(path);
                }
            }
        }
    }
    found
}
