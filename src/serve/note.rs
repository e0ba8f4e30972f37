//! The payload of a keyring note made of fixed-size records (`keys::InstanceKey::note`): a
//! version byte (1), then the records back to back, in no order. The version byte also keeps a
//! note with no records storable (the kernel refuses an empty `user` key). Shared by the notes
//! naming the generation tables (`generations.rs`) and journals (`journal.rs`).

use anyhow::{Context, bail};
use keys::InstanceKey;

const VERSION: u8 = 1;

/// Every record of note `name` (each `record_bytes` long); none when it was never stored.
/// `what` names the note in errors.
pub fn read(
    key: &InstanceKey,
    name: &str,
    what: &str,
    record_bytes: usize,
) -> anyhow::Result<Vec<Vec<u8>>> {
    let Some(payload) = key
        .note(name)
        .with_context(|| format!("reading the {what} in the kernel keyring"))?
    else {
        return Ok(Vec::new());
    };
    let Some((&version, body)) = payload.split_first() else {
        bail!("the keyring's {what} are empty");
    };
    if version != VERSION {
        bail!("the keyring's {what} are version {version}, this build reads {VERSION}");
    }
    if body.len() % record_bytes != 0 {
        bail!(
            "the keyring's {what} are {} bytes, not a whole number of {record_bytes}-byte records",
            body.len()
        );
    }
    Ok(body
        .chunks_exact(record_bytes)
        .map(<[u8]>::to_vec)
        .collect())
}

/// Replaces note `name` with `records`.
pub fn write(
    key: &InstanceKey,
    name: &str,
    what: &str,
    records: impl IntoIterator<Item = Vec<u8>>,
) -> anyhow::Result<()> {
    let mut payload = vec![VERSION];
    for record in records {
        payload.extend_from_slice(&record);
    }
    key.set_note(name, &payload)
        .with_context(|| format!("storing the {what} in the kernel keyring"))
}
