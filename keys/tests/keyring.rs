#![allow(clippy::unwrap_used)]
//! Instance keys kept in the kernel keyring: reopening finds the same key, terminate makes the
//! next open create a new one, instances are independent. Each test uses its own instance ids
//! (pid + counter) and terminates them when done.
//!
//! Skips (printing why) only if the keyring is unavailable here (`KeyError::KeyringUnavailable`:
//! a sandbox without add_key/keyctl).

use std::sync::atomic::{AtomicU32, Ordering};

use keys::{Backend, InstanceKey, KeyError, KeyOrigin};

static NEXT_ID: AtomicU32 = AtomicU32::new(0);

/// A fresh instance id, terminated when dropped.
struct TestInstance(String);

impl TestInstance {
    fn new(tag: &str) -> Self {
        let n = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        Self(format!("test-{tag}-{}-{n}", std::process::id()))
    }

    /// `open_or_create`, or None if this host has no usable keyring.
    fn open(&self) -> Option<(InstanceKey, KeyOrigin)> {
        match InstanceKey::open_or_create(&self.0, Backend::AwsLc) {
            Ok(opened) => Some(opened),
            Err(e @ KeyError::KeyringUnavailable { .. }) => {
                eprintln!("skipped: {e}");
                None
            }
            Err(e) => panic!("open_or_create {}: {e}", self.0),
        }
    }
}

impl Drop for TestInstance {
    fn drop(&mut self) {
        let _ = InstanceKey::terminate(&self.0);
    }
}

fn page(seed: u8) -> Vec<u8> {
    (0..4096)
        .map(|i| (i as u8).wrapping_mul(13).wrapping_add(seed))
        .collect()
}

/// Seals `page(seed)` at (lpa 3, generation 7) of device 1.
fn seal(key: &InstanceKey, seed: u8) -> (Vec<u8>, [u8; 16]) {
    let mut data = page(seed);
    let tag = key.sealer(1).seal(3, 7, &mut data).unwrap();
    (data, tag)
}

fn open_page(key: &InstanceKey, sealed: &(Vec<u8>, [u8; 16])) -> Result<Vec<u8>, KeyError> {
    let mut out = vec![0u8; 4096];
    key.sealer(1)
        .open(3, 7, &sealed.0, &sealed.1, &mut out)
        .map(|()| out)
}

#[test]
fn reopening_finds_the_same_key() {
    let instance = TestInstance::new("reopen");
    let Some((first, origin)) = instance.open() else {
        return;
    };
    assert_eq!(origin, KeyOrigin::Created);
    assert_eq!(first.instance_id(), Some(instance.0.as_str()));
    let sealed = seal(&first, 1);

    let (second, origin) = instance.open().unwrap();
    assert_eq!(origin, KeyOrigin::FromKeyring);
    assert_eq!(second.fingerprint(), first.fingerprint());
    assert_eq!(open_page(&second, &sealed).unwrap(), page(1));

    // The process's own copy gone (a restart): the keyring still has it.
    let fingerprint = first.fingerprint().to_owned();
    drop((first, second));
    let (third, origin) = instance.open().unwrap();
    assert_eq!(origin, KeyOrigin::FromKeyring);
    assert_eq!(third.fingerprint(), fingerprint);
    assert_eq!(open_page(&third, &sealed).unwrap(), page(1));
}

#[test]
fn terminate_destroys_every_copy_and_the_next_open_creates_a_new_key() {
    let instance = TestInstance::new("terminate");
    let Some((first, _)) = instance.open() else {
        return;
    };
    let (second, _) = instance.open().unwrap();
    let sealed = seal(&first, 2);

    assert_eq!(InstanceKey::terminate(&instance.0), Ok(true));
    for key in [&first, &second] {
        assert!(key.is_destroyed(), "{key:?}");
        assert_eq!(open_page(key, &sealed), Err(KeyError::Destroyed));
    }
    assert_eq!(InstanceKey::terminate(&instance.0), Ok(false), "idempotent");

    let (fresh, origin) = instance.open().unwrap();
    assert_eq!(origin, KeyOrigin::Created);
    assert_ne!(fresh.fingerprint(), first.fingerprint());
    assert!(matches!(
        open_page(&fresh, &sealed),
        Err(KeyError::Authentication { .. })
    ));
}

#[test]
fn destroy_everywhere_is_a_terminate() {
    let instance = TestInstance::new("everywhere");
    let Some((key, _)) = instance.open() else {
        return;
    };
    assert_eq!(key.destroy_everywhere(), Ok(true));
    assert!(key.is_destroyed());
    assert_eq!(key.destroy_everywhere(), Ok(false), "idempotent");
    let (_, origin) = instance.open().unwrap();
    assert_eq!(origin, KeyOrigin::Created);
}

#[test]
fn two_instances_are_independent() {
    let (a, b) = (TestInstance::new("a"), TestInstance::new("b"));
    let Some((key_a, _)) = a.open() else {
        return;
    };
    let (key_b, origin) = b.open().unwrap();
    assert_eq!(origin, KeyOrigin::Created);
    assert_ne!(key_a.fingerprint(), key_b.fingerprint());
    let sealed_b = seal(&key_b, 3);
    assert!(matches!(
        open_page(&key_a, &sealed_b),
        Err(KeyError::Authentication { .. })
    ));

    assert_eq!(InstanceKey::terminate(&a.0), Ok(true));
    assert!(key_a.is_destroyed());
    assert!(!key_b.is_destroyed());
    let (again_b, origin) = b.open().unwrap();
    assert_eq!(origin, KeyOrigin::FromKeyring);
    assert_eq!(open_page(&again_b, &sealed_b).unwrap(), page(3));
}

#[test]
fn terminating_an_instance_without_a_key_is_fine() {
    let instance = TestInstance::new("nokey");
    match InstanceKey::terminate(&instance.0) {
        Ok(found) => assert!(!found),
        Err(e @ KeyError::KeyringUnavailable { .. }) => eprintln!("skipped: {e}"),
        Err(e) => panic!("{e}"),
    }
}

#[test]
fn bad_instance_ids_are_refused_before_the_keyring() {
    for bad in ["", "a b", "../x", "x:y", &"y".repeat(65)] {
        let err = InstanceKey::open_or_create(bad, Backend::AwsLc).unwrap_err();
        assert!(matches!(err, KeyError::InstanceId { .. }), "{bad:?}: {err}");
        assert!(matches!(
            InstanceKey::terminate(bad),
            Err(KeyError::InstanceId { .. })
        ));
    }
}

#[test]
fn generated_keys_are_ram_only() {
    let key = InstanceKey::generate(Backend::AwsLc).unwrap();
    assert_eq!(key.instance_id(), None);
    assert!(format!("{key:?}").contains("RAM only"));
    assert_eq!(key.destroy_everywhere(), Ok(false));
    assert!(key.is_destroyed());
}

#[test]
fn creating_a_key_makes_the_process_non_dumpable() {
    let _key = InstanceKey::generate(Backend::AwsLc).unwrap();
    assert_eq!(keys::process_dumpable(), Ok(false));
}
