#![allow(clippy::unwrap_used)]
//! Page sealing: the two backends agree byte for byte, and any change of key, address, device,
//! generation or bytes makes a page fail to open without leaking a byte of it.

use keys::{Backend, InstanceKey, Kek, KeyError, VolumeKey};

fn page(seed: u8) -> Vec<u8> {
    (0..4096)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

/// One data key live twice, once per backend (unwrapped from the same wrapped form).
fn same_key_both_backends() -> (VolumeKey, VolumeKey) {
    let kek = Kek::generate().unwrap();
    let wrapped = VolumeKey::generate(Backend::AwsLc)
        .unwrap()
        .wrap(&kek, "vol-a")
        .unwrap();
    (
        wrapped.unwrap(&kek, "vol-a", Backend::AwsLc).unwrap(),
        wrapped.unwrap(&kek, "vol-a", Backend::RustCrypto).unwrap(),
    )
}

#[test]
fn backends_produce_identical_ciphertext_and_tags() {
    let (aws, rust) = same_key_both_backends();
    let (a, r) = (aws.sealer(3), rust.sealer(3));
    for (i, (lpa, generation)) in [
        (0u64, 1u64),
        (7, 99),
        (123_456, 1 << 31),
        (u32::MAX as u64, u64::MAX >> 1),
    ]
    .into_iter()
    .enumerate()
    {
        let plain = page(i as u8);
        let (mut ca, mut cr) = (plain.clone(), plain.clone());
        let ta = a.seal(lpa, generation, &mut ca).unwrap();
        let tr = r.seal(lpa, generation, &mut cr).unwrap();
        assert_eq!(ca, cr, "ciphertext differs at lpa {lpa}");
        assert_eq!(ta, tr, "tag differs at lpa {lpa}");
        assert_ne!(ca, plain);
        // Each opens what the other sealed.
        let mut out = vec![0u8; 4096];
        r.open(lpa, generation, &ca, &ta, &mut out).unwrap();
        assert_eq!(out, plain);
        a.open(lpa, generation, &cr, &tr, &mut out).unwrap();
        assert_eq!(out, plain);
    }
}

#[test]
fn any_change_fails_to_open_and_leaks_nothing() {
    for backend in [Backend::AwsLc, Backend::RustCrypto] {
        let key = InstanceKey::generate(backend).unwrap();
        let sealer = key.sealer(1);
        let plain = page(9);
        let mut ct = plain.clone();
        let tag = sealer.seal(40, 1000, &mut ct).unwrap();
        let mut out = vec![0xAAu8; 4096];
        let fails = |r: Result<(), KeyError>, out: &[u8], what: &str| {
            assert!(
                matches!(r, Err(KeyError::Authentication { .. })),
                "{what}: {r:?}"
            );
            assert!(
                out.iter().all(|&b| b == 0),
                "{what}: unauthenticated bytes escaped"
            );
        };
        fails(
            sealer.open(41, 1000, &ct, &tag, &mut out),
            &out,
            "other address",
        );
        fails(
            sealer.open(40, 999, &ct, &tag, &mut out),
            &out,
            "older generation",
        );
        fails(
            key.sealer(2).open(40, 1000, &ct, &tag, &mut out),
            &out,
            "other device",
        );
        let other = InstanceKey::generate(backend).unwrap();
        fails(
            other.sealer(1).open(40, 1000, &ct, &tag, &mut out),
            &out,
            "other instance",
        );
        let mut flipped = ct.clone();
        flipped[4095] ^= 1;
        fails(
            sealer.open(40, 1000, &flipped, &tag, &mut out),
            &out,
            "flipped ciphertext",
        );
        let mut bad_tag = tag;
        bad_tag[0] ^= 0x80;
        fails(
            sealer.open(40, 1000, &ct, &bad_tag, &mut out),
            &out,
            "flipped tag",
        );
        sealer.open(40, 1000, &ct, &tag, &mut out).unwrap();
        assert_eq!(out, plain);
    }
}

#[test]
fn generations_in_different_epochs_use_different_subkeys() {
    let key = InstanceKey::generate(Backend::AwsLc).unwrap();
    let sealer = key.sealer(0);
    // Same lpa, same low 31 bits of generation, other epoch: other subkey, other ciphertext.
    let (mut a, mut b) = (page(1), page(1));
    let ta = sealer.seal(5, 10, &mut a).unwrap();
    let tb = sealer
        .seal(5, 10 + (1 << keys::EPOCH_SHIFT), &mut b)
        .unwrap();
    assert_ne!(a, b);
    assert_ne!(ta, tb);
}

#[test]
fn destroy_is_terminal_and_idempotent() {
    let key = InstanceKey::generate(Backend::AwsLc).unwrap();
    let sealer = key.sealer(0);
    let mut data = page(2);
    let tag = sealer.seal(1, 1, &mut data).unwrap();
    assert!(format!("{key:?}").contains("active"));
    key.destroy();
    key.destroy();
    assert!(key.is_destroyed());
    assert!(format!("{key:?}").contains("destroyed"));
    assert_eq!(sealer.seal(1, 2, &mut page(2)), Err(KeyError::Destroyed));
    let mut out = vec![0u8; 4096];
    assert_eq!(
        sealer.open(1, 1, &data, &tag, &mut out),
        Err(KeyError::Destroyed)
    );
    assert_eq!(
        key.sealer(9).seal(1, 2, &mut page(2)),
        Err(KeyError::Destroyed)
    );
}

#[test]
fn debug_is_redacted_and_fingerprints_are_stable() {
    let key = InstanceKey::generate(Backend::AwsLc).unwrap();
    let shown = format!("{key:?} {:?}", key.sealer(4));
    assert!(
        shown.contains("redacted") && shown.contains(key.fingerprint()),
        "{shown}"
    );
    assert_eq!(key.fingerprint().len(), 8);
    assert_eq!(key.fingerprint(), key.clone().fingerprint());
    assert_ne!(
        key.fingerprint(),
        InstanceKey::generate(Backend::AwsLc).unwrap().fingerprint()
    );
}
