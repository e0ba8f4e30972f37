#![allow(clippy::unwrap_used)]
//! `ferrite ebs-server` and `ferrite ebs volume ...` as a user runs them: the real binary, a
//! volume written through the library client, a SIGINT, a restart on the same directory, and
//! the same data read back.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};

use ebs_server::client::{ClientConfig, RemoteVolume};
use ebs_server::srd;

const BIN: &str = env!("CARGO_BIN_EXE_ferrite");
const PATHS: usize = 2;

/// Starts the server and returns it with its path addresses, read from its stdout.
fn start_server(data: &Path) -> (Child, Vec<SocketAddr>) {
    let mut child = Command::new(BIN)
        .args([
            "ebs-server",
            "--listen",
            "127.0.0.1:0",
            "--paths",
            "2",
            "--devices",
            "2",
        ])
        .args([
            "--blocks-per-plane",
            "32",
            "--pages-per-block",
            "32",
            "--extent-blocks",
            "64",
        ])
        .arg("--data")
        .arg(data)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut addrs = Vec::new();
    for line in &mut lines {
        let line = line.unwrap();
        if let Some(rest) = line.strip_prefix("path ") {
            addrs.push(rest.split("udp ").nth(1).unwrap().parse().unwrap());
        }
        if line.starts_with("control socket: ") {
            break;
        }
    }
    assert_eq!(addrs.len(), PATHS);
    (child, addrs)
}

fn stop_server(mut child: Child) {
    let pid = libc::pid_t::try_from(child.id()).unwrap();
    // SIGINT as Ctrl-C sends it; the server closes the FTL with a checkpoint and exits 0.
    assert_eq!(
        std::process::Command::new("kill")
            .args(["-INT", &pid.to_string()])
            .status()
            .unwrap()
            .code(),
        Some(0)
    );
    assert!(child.wait().unwrap().success());
}

fn ebs(data: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .arg("ebs")
        .args(args)
        .arg("--data")
        .arg(data)
        .output()
        .unwrap()
}

fn succeeds(out: &Output) {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn fails_with(out: &Output, text: &str) {
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(text), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

fn connect(addrs: &[SocketAddr], volume: &str, credential: &[u8]) -> RemoteVolume {
    let config = ClientConfig {
        srd: srd::Config {
            path_count: PATHS,
            ..srd::Config::default()
        },
        ..ClientConfig::default()
    };
    RemoteVolume::connect(addrs, volume, credential, None, config).unwrap()
}

#[test]
fn volumes_are_managed_served_and_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let cred = dir.path().join("cred");
    std::fs::write(&cred, b"a secret credential").unwrap();
    let cred_s = cred.to_str().unwrap();

    let out = ebs(&data, &["volume", "list"]);
    fails_with(&out, "not running at");

    let (server, addrs) = start_server(&data);
    // One server per directory.
    let second = Command::new(BIN)
        .args([
            "ebs-server",
            "--listen",
            "127.0.0.1:0",
            "--devices",
            "2",
            "--data",
        ])
        .arg(&data)
        .output()
        .unwrap();
    fails_with(&second, "another ferrite process holds");

    succeeds(&ebs(
        &data,
        &[
            "volume",
            "create",
            "v1",
            "--size",
            "1M",
            "--credential-file",
            cred_s,
        ],
    ));
    fails_with(
        &ebs(
            &data,
            &[
                "volume",
                "create",
                "v1",
                "--size",
                "1M",
                "--credential-file",
                cred_s,
            ],
        ),
        "exists already",
    );
    fails_with(
        &ebs(
            &data,
            &[
                "volume",
                "create",
                "v2",
                "--size",
                "4097",
                "--credential-file",
                cred_s,
            ],
        ),
        "multiple of 4096",
    );
    fails_with(
        &ebs(
            &data,
            &[
                "volume",
                "create",
                "v2",
                "--size",
                "1G",
                "--credential-file",
                cred_s,
            ],
        ),
        "not enough space",
    );
    fails_with(
        &ebs(&data, &["volume", "resize", "nope", "--size", "1M"]),
        "no volume named",
    );
    assert!(
        ebs(&data, &["volume", "resize", "v1", "--size", "2M"])
            .status
            .success()
    );
    let list = ebs(&data, &["volume", "list", "--json"]);
    let volumes: serde_json::Value = serde_json::from_slice(&list.stdout).unwrap();
    assert_eq!(volumes[0]["name"], "v1");
    assert_eq!(volumes[0]["size_bytes"], 2 << 20);

    let block: Vec<u8> = (0..4096u32).map(|i| (i % 251) as u8).collect();
    let mut client = connect(&addrs, "v1", b"a secret credential");
    let info = client.attached().unwrap().clone();
    assert_eq!(info.blocks, 512);
    client.write(7, &block, true).unwrap();
    fails_with(&ebs(&data, &["volume", "delete", "v1"]), "attached");
    client.detach().unwrap();
    drop(client);
    stop_server(server);
    // The device count is fixed by the first run.
    let wrong = Command::new(BIN)
        .args([
            "ebs-server",
            "--listen",
            "127.0.0.1:0",
            "--devices",
            "3",
            "--data",
        ])
        .arg(&data)
        .output()
        .unwrap();
    fails_with(
        &wrong,
        "holds 2 devices (made by the first run); --devices 3 does not match",
    );

    let (server, addrs) = start_server(&data);
    let mut client = connect(&addrs, "v1", b"a secret credential");
    assert_eq!(client.read(7, 1).unwrap(), block);
    client.detach().unwrap();
    drop(client);
    let status = ebs(&data, &["status"]);
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert!(status["server"]["requests"].as_u64().unwrap() >= 2);
    assert!(ebs(&data, &["volume", "delete", "v1"]).status.success());
    fails_with(&ebs(&data, &["volume", "delete", "v1"]), "no volume named");
    stop_server(server);
}

/// The KEK a `ferrite ebs kek generate` file holds.
fn kek_of(path: &Path) -> keys::Kek {
    let text = std::fs::read_to_string(path).unwrap();
    let hex = text.trim_end();
    assert_eq!(hex.len(), 64, "{text:?}");
    let mut key = [0u8; 32];
    for (i, b) in key.iter_mut().enumerate() {
        *b = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap();
    }
    keys::Kek::from_bytes(&key).unwrap()
}

#[test]
fn a_volume_created_with_a_kek_is_sealed_by_its_clients() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (server, addrs) = start_server(&data);
    let kek = dir.path().join("kek");
    let out = Command::new(BIN)
        .args(["ebs", "kek", "generate", "--out"])
        .arg(&kek)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("wrote KEK "));
    let mode = std::fs::metadata(&kek).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    // Never overwritten.
    let again = Command::new(BIN)
        .args(["ebs", "kek", "generate", "--out"])
        .arg(&kek)
        .output()
        .unwrap();
    fails_with(&again, "creating the KEK file");

    let cred = dir.path().join("cred");
    std::fs::write(&cred, b"a secret credential").unwrap();
    let create = |name: &str, kek_file: &Path| {
        Command::new(BIN)
            .args([
                "ebs",
                "volume",
                "create",
                name,
                "--size",
                "1M",
                "--credential-file",
            ])
            .arg(&cred)
            .arg("--kek-file")
            .arg(kek_file)
            .arg("--data")
            .arg(&data)
            .output()
            .unwrap()
    };
    // A KEK file others can read is refused, and so is one that is not a key.
    let loose = dir.path().join("loose");
    std::fs::write(&loose, "00".repeat(32)).unwrap();
    std::fs::set_permissions(&loose, std::fs::Permissions::from_mode(0o644)).unwrap();
    fails_with(&create("x", &loose), "readable by others");
    let short = dir.path().join("short");
    std::fs::write(&short, "abcd").unwrap();
    std::fs::set_permissions(&short, std::fs::Permissions::from_mode(0o600)).unwrap();
    fails_with(
        &create("x", &short),
        "expected 64 hex digits or 32 raw bytes",
    );
    succeeds(&create("sealed", &kek));

    let config = ClientConfig {
        srd: srd::Config {
            path_count: PATHS,
            ..srd::Config::default()
        },
        ..ClientConfig::default()
    };
    let kek = kek_of(&kek);
    let mut client = RemoteVolume::connect(
        &addrs,
        "sealed",
        b"a secret credential",
        Some(&kek),
        config.clone(),
    )
    .unwrap();
    assert!(client.is_sealed());
    let block: Vec<u8> = (0..4096u32).map(|i| (i % 241) as u8).collect();
    client.write(3, &block, true).unwrap();
    assert_eq!(client.read(3, 1).unwrap(), block);
    client.detach().unwrap();
    drop(client);
    let e = RemoteVolume::connect(&addrs, "sealed", b"a secret credential", None, config)
        .err()
        .unwrap();
    assert!(e.to_string().contains("--kek-file"), "{e}");
    stop_server(server);
    // The device files hold no block in the clear.
    for entry in std::fs::read_dir(data.join("devices")).unwrap() {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap();
        assert!(
            !bytes.windows(64).any(|w| w == &block[1000..1064]),
            "a device file holds the block in the clear"
        );
    }
}

#[test]
fn the_server_takes_a_config_file_and_flags_override_it() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = dir.path().join("ebs.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:0\"\ndata = \"{}\"\npaths = 3\ndevices = 2\nextent_blocks = 64\n\
             [geometry]\nchannels = 1\ndies_per_channel = 2\nplanes_per_die = 1\n\
             blocks_per_plane = 32\npages_per_block = 32\npage_size = 4096\noob_size = 64\n\
             [limits]\nidle_timeout_ms = 2000\n",
            data.display()
        ),
    )
    .unwrap();
    // --paths on the command line wins over paths = 3.
    let mut child = Command::new(BIN)
        .args(["ebs-server", "--paths", "2", "--config"])
        .arg(&config)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut paths = 0;
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        paths += usize::from(line.starts_with("path "));
        if line.starts_with("volumes: ") {
            break;
        }
    }
    assert_eq!(paths, 2);
    assert!(data.join("devices").join("nand-1.img").exists());
    stop_server(child);
    // Each problem named: no listen address, an unknown key.
    std::fs::write(&config, "paths = 2\n").unwrap();
    let out = Command::new(BIN)
        .args(["ebs-server", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    fails_with(&out, "no listen address");
    std::fs::write(&config, "listen = \"127.0.0.1:0\"\nspeed = 3\n").unwrap();
    let out = Command::new(BIN)
        .args(["ebs-server", "--data", "x", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    fails_with(&out, "unknown field `speed`");
}
