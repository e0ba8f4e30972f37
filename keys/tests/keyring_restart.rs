#![allow(clippy::unwrap_used)]
//! Restart is not terminate, across processes: a child process opens an instance (creating its
//! key in the kernel keyring), seals a page and exits without terminating, as a crashed or
//! stopped `ferrite serve` would. This process, the "restarted" server, finds the same key and
//! opens the page. After a terminate, the next child creates a new key.
//!
//! Runs itself again as the child (`FERRITE_KEYRING_CHILD=<instance id>`), so harness = false.

use std::process::Command;

use keys::{Backend, InstanceKey, KeyError, KeyOrigin};

const CHILD_ENV: &str = "FERRITE_KEYRING_CHILD";
const LPA: u64 = 11;
const GENERATION: u64 = 42;

fn page() -> Vec<u8> {
    (0..4096).map(|i| (i % 251) as u8).collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// The "server before the restart": open, seal, exit without terminating.
fn child(instance: &str) {
    let (key, origin) = InstanceKey::open_or_create(instance, Backend::AwsLc).unwrap();
    let mut data = page();
    let tag = key.sealer(0).seal(LPA, GENERATION, &mut data).unwrap();
    println!(
        "{origin:?} {} {} {}",
        key.fingerprint(),
        hex(&tag),
        hex(&data)
    );
}

struct Sealed {
    origin: String,
    fingerprint: String,
    tag: [u8; 16],
    data: Vec<u8>,
}

fn run_child(instance: &str) -> Sealed {
    let exe = std::env::current_exe().unwrap();
    let out = Command::new(exe).env(CHILD_ENV, instance).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "child failed: {}\n{stdout}{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let fields: Vec<&str> = stdout.trim().split(' ').collect();
    assert_eq!(fields.len(), 4, "child printed {stdout:?}");
    Sealed {
        origin: fields[0].into(),
        fingerprint: fields[1].into(),
        tag: unhex(fields[2]).try_into().unwrap(),
        data: unhex(fields[3]),
    }
}

/// Terminates the test instance however the test ends.
struct Cleanup<'a>(&'a str);

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        let _ = InstanceKey::terminate(self.0);
    }
}

fn parent() {
    let instance = format!("test-restart-{}", std::process::id());
    let _cleanup = Cleanup(&instance);
    match InstanceKey::terminate(&instance) {
        Ok(_) => {}
        Err(e @ KeyError::KeyringUnavailable { .. }) => {
            println!("keyring_restart: skipped: {e}");
            return;
        }
        Err(e) => panic!("{e}"),
    }

    let before = run_child(&instance);
    assert_eq!(before.origin, "Created");

    // The restarted server: same key, the page opens.
    let (key, origin) = InstanceKey::open_or_create(&instance, Backend::AwsLc).unwrap();
    assert_eq!(origin, KeyOrigin::FromKeyring);
    assert_eq!(key.fingerprint(), before.fingerprint);
    let mut out = vec![0u8; 4096];
    key.sealer(0)
        .open(LPA, GENERATION, &before.data, &before.tag, &mut out)
        .unwrap();
    assert_eq!(out, page());

    // Another restart (the child again) still finds it.
    let again = run_child(&instance);
    assert_eq!(again.origin, "FromKeyring");
    assert_eq!(again.fingerprint, before.fingerprint);

    // Terminate: the next server creates a new key, and the old page no longer opens.
    assert_eq!(InstanceKey::terminate(&instance), Ok(true));
    assert!(key.is_destroyed());
    let after = run_child(&instance);
    assert_eq!(after.origin, "Created");
    assert_ne!(after.fingerprint, before.fingerprint);
    let (fresh, _) = InstanceKey::open_or_create(&instance, Backend::AwsLc).unwrap();
    assert_eq!(fresh.fingerprint(), after.fingerprint);
    assert!(matches!(
        fresh
            .sealer(0)
            .open(LPA, GENERATION, &before.data, &before.tag, &mut out),
        Err(KeyError::Authentication { .. })
    ));
    assert_eq!(fresh.destroy_everywhere(), Ok(true));
    println!("keyring_restart: 1 passed, 0 failed");
}

fn main() {
    match std::env::var(CHILD_ENV) {
        Ok(instance) => child(&instance),
        Err(_) => parent(),
    }
}
