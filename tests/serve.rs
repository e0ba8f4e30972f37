#![allow(clippy::unwrap_used)]
//! `ferrite serve` as a process: a libblkio client writes, `ferrite nvme` reads SMART from the
//! running server, Ctrl-C (SIGINT) closes cleanly, a restart serves the same data, and the
//! stopped namespace still answers Identify.
//!
//! Encryption is off here: the instance key does not survive a restart until the keyring-backed
//! key lands (see src/serve/volume.rs, `instance_key`).

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use blkio_client::Client;

const CONFIG: &str = r#"
encryption = false
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
"#;

fn ferrite(dir: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_ferrite"));
    c.current_dir(dir);
    c
}

fn start(dir: &Path) -> Child {
    let _ = std::fs::remove_file(dir.join("ns1.sock"));
    let child = ferrite(dir)
        .args(["serve", "--config", "ferrite.toml"])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !dir.join("ns1.sock").exists() || !dir.join("ferrite-data/control.sock").exists() {
        assert!(Instant::now() < deadline, "ferrite serve did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    child
}

fn stop(mut child: Child) {
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "ferrite serve exited with {status}");
            return;
        }
        assert!(Instant::now() < deadline, "ferrite serve did not stop");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn nvme(dir: &Path, what: &str) -> serde_json::Value {
    let out = ferrite(dir)
        .args(["nvme", what, "--config", "ferrite.toml"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn serve_survives_a_restart_and_reports_health() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ferrite.toml"), CONFIG).unwrap();
    let data: Vec<u8> = (0..256 * 1024u32).map(|i| (i * 7 % 253) as u8).collect();

    let server = start(dir.path());
    {
        let mut c = Client::connect(&dir.path().join("ns1.sock"), 2).unwrap();
        c.write(0, 1 << 20, &data, false).unwrap();
        c.write(1, 0, &data[..4096], false).unwrap();
        c.flush(1).unwrap();
    }
    let smart = nvme(dir.path(), "smart-log");
    assert_eq!(smart["host_write_commands"], 2);
    assert_eq!(smart["critical_warning"], 0);
    stop(server);

    // Stopped: the devices answer Identify, opened from their files.
    let id = nvme(dir.path(), "identify");
    assert_eq!(id["block_size_bytes"], 4096);
    assert!(id["size_blocks"].as_u64().unwrap() > 1000);

    let server = start(dir.path());
    {
        let mut c = Client::connect(&dir.path().join("ns1.sock"), 2).unwrap();
        assert_eq!(c.read(1, 1 << 20, data.len()).unwrap(), data);
        assert_eq!(c.read(0, 0, 4096).unwrap(), &data[..4096]);
    }
    let id = nvme(dir.path(), "identify-controller");
    assert_eq!(id["namespaces"], 1);
    stop(server);
}

#[test]
fn a_bad_config_is_refused_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ferrite.toml"), "[[namespace]]\nnsid = 1\n").unwrap();
    let out = ferrite(dir.path())
        .args(["serve", "--config", "ferrite.toml"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("parsing ferrite.toml"), "{err}");
    assert!(err.contains("socket"), "{err}");
}
