#![allow(clippy::unwrap_used)]
//! Envelope keys: only the wrapped form is stored; it unwraps with the right KEK and volume only,
//! detects damage, and survives KEK rotation.

use keys::{Backend, Kek, KeyError, VolumeKey, WRAPPED_KEY_BYTES, WrappedKey};

fn sealed_with(key: &VolumeKey) -> (Vec<u8>, [u8; 16]) {
    let mut data = vec![7u8; 4096];
    let tag = key.sealer(1).seal(3, 4, &mut data).unwrap();
    (data, tag)
}

fn opens(key: &VolumeKey, sealed: &(Vec<u8>, [u8; 16])) -> bool {
    let mut out = vec![0u8; 4096];
    key.sealer(1)
        .open(3, 4, &sealed.0, &sealed.1, &mut out)
        .is_ok()
        && out == vec![7u8; 4096]
}

#[test]
fn wrap_unwrap_round_trip_and_offsets() {
    let kek = Kek::generate().unwrap();
    let key = VolumeKey::generate(Backend::AwsLc).unwrap();
    let sealed = sealed_with(&key);
    let wrapped = key.wrap(&kek, "vol-1").unwrap();
    let bytes = wrapped.as_bytes();
    assert_eq!(bytes.len(), WRAPPED_KEY_BYTES);
    assert_eq!(&bytes[0..4], b"FWRK");
    assert_eq!(bytes[4], 1);
    assert_eq!(&bytes[5..8], &[0, 0, 0]);
    assert_eq!(&bytes[72..76], &crc32fast::hash(&bytes[..72]).to_le_bytes());
    let again = WrappedKey::from_bytes(bytes).unwrap();
    let live = again.unwrap(&kek, "vol-1", Backend::AwsLc).unwrap();
    assert_eq!(live.fingerprint(), key.fingerprint());
    assert!(opens(&live, &sealed));
    // Two wraps of one key differ (random nonce) but unwrap to the same key.
    assert_ne!(key.wrap(&kek, "vol-1").unwrap(), wrapped);
}

#[test]
fn wrong_kek_or_volume_or_damage_is_refused() {
    let kek = Kek::generate().unwrap();
    let wrapped = VolumeKey::generate(Backend::AwsLc)
        .unwrap()
        .wrap(&kek, "vol-1")
        .unwrap();
    let other = Kek::generate().unwrap();
    assert!(matches!(
        wrapped.unwrap(&other, "vol-1", Backend::AwsLc),
        Err(KeyError::Authentication { .. })
    ));
    assert!(matches!(
        wrapped.unwrap(&kek, "vol-2", Backend::AwsLc),
        Err(KeyError::Authentication { .. })
    ));
    for i in [0, 4, 13, 30, 60, 73] {
        let mut bytes = *wrapped.as_bytes();
        bytes[i] ^= 1;
        assert!(
            matches!(WrappedKey::from_bytes(&bytes), Err(KeyError::Format { .. })),
            "byte {i}"
        );
    }
    assert!(matches!(
        WrappedKey::from_bytes(&[0u8; 10]),
        Err(KeyError::Format { .. })
    ));
}

#[test]
fn rewrap_on_kek_rotation_keeps_the_data_key() {
    let (old, new) = (
        Kek::generate().unwrap(),
        Kek::from_bytes(&[42u8; 32]).unwrap(),
    );
    let key = VolumeKey::generate(Backend::AwsLc).unwrap();
    let sealed = sealed_with(&key);
    let wrapped = key.wrap(&old, "v").unwrap();
    let rotated = wrapped.rewrap(&old, &new, "v").unwrap();
    assert!(rotated.unwrap(&old, "v", Backend::AwsLc).is_err());
    assert!(opens(
        &rotated.unwrap(&new, "v", Backend::AwsLc).unwrap(),
        &sealed
    ));
    assert!(format!("{new:?}").contains("redacted"));
}

#[test]
fn a_destroyed_volume_key_cannot_be_wrapped() {
    let key = VolumeKey::generate(Backend::AwsLc).unwrap();
    key.destroy();
    assert_eq!(
        key.wrap(&Kek::generate().unwrap(), "v").unwrap_err(),
        KeyError::Destroyed
    );
}
