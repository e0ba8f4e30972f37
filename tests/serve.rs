#![allow(clippy::unwrap_used)]
//! `ferrite serve` as a process: a libblkio client writes, `ferrite nvme` reads SMART from the
//! running server, Ctrl-C (SIGINT) closes cleanly, a restart serves the same data, and the
//! stopped namespace still answers Identify.
//!
//! Encryption is off here (tests/instance.rs restarts with it on), so the unsealed path is tested too.

mod support;

use std::path::Path;

use blkio_client::Client;
use support::{Server, ferrite};

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
    std::fs::write(dir.path().join("ferrite.toml"), support::config(false)).unwrap();
    let data: Vec<u8> = (0..256 * 1024u32).map(|i| (i * 7 % 253) as u8).collect();

    let server = Server::start(dir.path(), &[]);
    {
        let mut c = Client::connect(&dir.path().join("ns1.sock"), 2).unwrap();
        c.write(0, 1 << 20, &data, false).unwrap();
        c.write(1, 0, &data[..4096], false).unwrap();
        c.flush(1).unwrap();
    }
    let smart = nvme(dir.path(), "smart-log");
    assert_eq!(smart["host_write_commands"], 2);
    assert_eq!(smart["critical_warning"], 0);
    assert_eq!(smart["composite_temperature_kelvin"], 313);
    assert_eq!(smart["power_on_hours"], 0);
    // Serve at least a second, so the power-on time the record keeps cannot be zero.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    server.stop();
    let first_run_s = power_on_seconds(dir.path());
    assert!(first_run_s >= 1, "power-on time not saved at stop");

    // Stopped: the devices answer Identify, opened from their files.
    let id = nvme(dir.path(), "identify");
    assert_eq!(id["block_size_bytes"], 4096);
    assert!(id["size_blocks"].as_u64().unwrap() > 1000);

    let server = Server::start(dir.path(), &[]);
    {
        let mut c = Client::connect(&dir.path().join("ns1.sock"), 2).unwrap();
        assert_eq!(c.read(1, 1 << 20, data.len()).unwrap(), data);
        assert_eq!(c.read(0, 0, 4096).unwrap(), &data[..4096]);
    }
    let id = nvme(dir.path(), "identify-controller");
    assert_eq!(id["namespaces"], 1);
    std::thread::sleep(std::time::Duration::from_millis(1100));
    server.stop();
    // The second run adds to the first instead of starting again from zero.
    assert!(power_on_seconds(dir.path()) > first_run_s);
}

fn power_on_seconds(dir: &Path) -> u64 {
    support::record(dir).unwrap().power_on_seconds
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
