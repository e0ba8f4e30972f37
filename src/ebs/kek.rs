//! Key-encryption key files (`--kek-file`): the client side's one secret for its sealed remote
//! volumes. A file holds the 32-byte key as 64 hex digits (and a newline), as
//! `ferrite ebs kek generate` writes it, or as 32 raw bytes. It must be readable by its owner
//! only, as ssh insists for private keys: a KEK anyone on the host can read protects nothing.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use anyhow::Context;
use keys::{KEY_BYTES, Kek};
use zeroize::Zeroizing;

/// Reads and checks a KEK file.
pub fn read_kek(path: &Path) -> anyhow::Result<Kek> {
    let meta = std::fs::metadata(path)
        .with_context(|| format!("reading the KEK file {}", path.display()))?;
    let mode = meta.permissions().mode();
    anyhow::ensure!(
        mode & 0o077 == 0,
        "the KEK file {} is readable by others (mode {:o}); chmod 600 it",
        path.display(),
        mode & 0o777
    );
    let bytes = Zeroizing::new(
        std::fs::read(path).with_context(|| format!("reading the KEK file {}", path.display()))?,
    );
    let mut key = Zeroizing::new([0u8; KEY_BYTES]);
    let text = std::str::from_utf8(&bytes).map(str::trim_end);
    match text {
        Ok(hex) if hex.len() == 2 * KEY_BYTES => {
            for (i, pair) in hex.as_bytes().chunks_exact(2).enumerate() {
                let digits = std::str::from_utf8(pair).unwrap_or("");
                key[i] = u8::from_str_radix(digits, 16).map_err(|_| {
                    anyhow::anyhow!(
                        "the KEK file {} is not 64 hex digits (a bad digit at {})",
                        path.display(),
                        2 * i
                    )
                })?;
            }
        }
        _ if bytes.len() == KEY_BYTES => key.copy_from_slice(&bytes),
        _ => anyhow::bail!(
            "the KEK file {} holds {} bytes: expected 64 hex digits or 32 raw bytes",
            path.display(),
            bytes.len()
        ),
    }
    Kek::from_bytes(&key).with_context(|| format!("loading the KEK from {}", path.display()))
}

/// Writes a new random KEK to `path` as 64 hex digits, mode 0600; never overwrites.
pub fn generate(path: &Path) -> anyhow::Result<String> {
    let mut key = Zeroizing::new([0u8; KEY_BYTES]);
    getrandom(&mut key[..])?;
    let mut text = Zeroizing::new(String::with_capacity(2 * KEY_BYTES + 1));
    for b in key.iter() {
        text.push_str(&format!("{b:02x}"));
    }
    text.push('\n');
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating the KEK file {}", path.display()))?;
    file.write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .with_context(|| format!("writing the KEK file {}", path.display()))?;
    let kek = Kek::from_bytes(&key)?;
    Ok(kek.fingerprint().to_owned())
}

fn getrandom(out: &mut [u8]) -> anyhow::Result<()> {
    // A KEK is made once; read it from the kernel's CSPRNG like every other key here.
    let mut f = std::fs::File::open("/dev/urandom").context("opening /dev/urandom")?;
    std::io::Read::read_exact(&mut f, out).context("reading /dev/urandom")
}
