//! `ferrite ebs-server` as a child process, and a sealed volume on it, for the tests that attach
//! a remote namespace to `ferrite serve`.
#![allow(clippy::unwrap_used, dead_code)]

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, UdpSocket};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub const PATHS: usize = 4;
pub const CREDENTIAL: &[u8] = b"a remote namespace credential";

/// A base port `p` with `p..p + n` free for UDP on 127.0.0.1 right now (bound and released: a
/// race with other processes is possible but unlikely on a test machine).
pub fn free_udp_ports(n: usize) -> u16 {
    for _ in 0..64 {
        let first = UdpSocket::bind("127.0.0.1:0").unwrap();
        let base = first.local_addr().unwrap().port();
        if usize::from(base) + n > 65535 {
            continue;
        }
        let rest: Vec<_> = (1..n)
            .map(|i| UdpSocket::bind(("127.0.0.1", base + i as u16)))
            .collect();
        if rest.iter().all(Result::is_ok) {
            return base;
        }
    }
    panic!("no {n} consecutive free UDP ports");
}

/// A running `ferrite ebs-server`.
#[derive(Debug)]
pub struct EbsServer {
    child: Option<Child>,
    pub data: PathBuf,
    pub base: SocketAddr,
}

impl EbsServer {
    /// Starts a server on `base` (PATHS paths from its port) over 4 devices of 32 MiB in `data`.
    pub fn start(data: &Path, base: u16) -> Self {
        Self::start_with(data, base, &[])
    }

    /// `start` with more flags.
    pub fn start_with(data: &Path, base: u16, extra: &[&str]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_ferrite"))
            .args(["ebs-server", "--listen", &format!("127.0.0.1:{base}")])
            .args(["--paths", &PATHS.to_string(), "--devices", "4"])
            .args(["--blocks-per-plane", "64", "--pages-per-block", "64"])
            .args(["--extent-blocks", "256"])
            .args(extra)
            .arg("--data")
            .arg(data)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut ready = false;
        for line in &mut lines {
            if line.unwrap().starts_with("volumes: ") {
                ready = true;
                break;
            }
        }
        assert!(ready, "ferrite ebs-server did not start");
        Self {
            child: Some(child),
            data: data.to_owned(),
            base: SocketAddr::from(([127, 0, 0, 1], base)),
        }
    }

    /// `ferrite ebs ARGS --data DIR`, which must succeed; its stdout.
    pub fn ebs(&self, args: &[&str]) -> String {
        let out = Command::new(env!("CARGO_BIN_EXE_ferrite"))
            .arg("ebs")
            .args(args)
            .arg("--data")
            .arg(&self.data)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "ferrite ebs {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Creates `name` of `size` sealed by a new KEK; returns (credential file, KEK file).
    pub fn create_sealed(&self, dir: &Path, name: &str, size: &str) -> (PathBuf, PathBuf) {
        let credential = dir.join(format!("{name}.credential"));
        std::fs::write(&credential, CREDENTIAL).unwrap();
        std::fs::set_permissions(&credential, std::fs::Permissions::from_mode(0o600)).unwrap();
        let kek = dir.join(format!("{name}.kek"));
        let out = Command::new(env!("CARGO_BIN_EXE_ferrite"))
            .args(["ebs", "kek", "generate", "--out"])
            .arg(&kek)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        self.ebs(&[
            "volume",
            "create",
            name,
            "--size",
            size,
            "--credential-file",
            credential.to_str().unwrap(),
            "--kek-file",
            kek.to_str().unwrap(),
        ]);
        (credential, kek)
    }

    /// `ferrite ebs status` as JSON.
    pub fn status(&self) -> serde_json::Value {
        serde_json::from_str(&self.ebs(&["status"])).unwrap()
    }

    /// SIGINT; the server must exit cleanly.
    pub fn stop(mut self) {
        let mut child = self.child.take().unwrap();
        let pid = child.id().to_string();
        assert!(
            Command::new("kill")
                .args(["-INT", &pid])
                .status()
                .unwrap()
                .success()
        );
        for _ in 0..600 {
            if let Some(status) = child.try_wait().unwrap() {
                assert!(status.success(), "ferrite ebs-server exited with {status}");
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("ferrite ebs-server did not exit");
    }
}

impl Drop for EbsServer {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The `[[namespace]]` of a remote volume on `server`, on socket `ns1.sock`.
pub fn remote_namespace(
    server: &EbsServer,
    volume: &str,
    credential: &Path,
    kek: &Path,
    serial: &str,
) -> String {
    format!(
        r#"
[[namespace]]
nsid = 1
socket = "ns1.sock"
serial = "{serial}"
remote = {{ server = "{server}", paths = {PATHS}, volume = "{volume}", credential_file = "{credential}", kek_file = "{kek}" }}
"#,
        server = server.base,
        credential = credential.display(),
        kek = kek.display(),
    )
}
