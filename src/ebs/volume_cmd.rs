//! `ferrite ebs volume ...` and `ferrite ebs status`: requests to a running `ferrite ebs-server`.

use std::path::{Path, PathBuf};

use anyhow::Context;

use super::control::{self, Request, VolumeView, encode_hex};

/// The control socket named by `--control`, else the one in `--data`.
pub fn socket_of(data_dir: Option<&Path>, control: Option<&Path>) -> anyhow::Result<PathBuf> {
    match (control, data_dir) {
        (Some(c), _) => Ok(c.to_path_buf()),
        (None, Some(d)) => Ok(super::server::control_socket(d)),
        (None, None) => anyhow::bail!("say where the server is: --data DIR or --control SOCKET"),
    }
}

/// Reads a secret file whole; its contents are never printed.
fn read_secret(path: &Path, what: &str) -> anyhow::Result<Vec<u8>> {
    let bytes = std::fs::read(path)
        .with_context(|| format!("reading the {what} file {}", path.display()))?;
    anyhow::ensure!(
        !bytes.is_empty(),
        "the {what} file {} is empty",
        path.display()
    );
    Ok(bytes)
}

#[derive(Debug)]
pub struct CreateRequest<'a> {
    pub name: &'a str,
    pub blocks: u64,
    pub credential_file: &'a Path,
    pub multi_attach: bool,
    pub kek_file: Option<&'a Path>,
    pub wrapped_key_file: Option<&'a Path>,
}

pub fn create(socket: &Path, r: &CreateRequest<'_>) -> anyhow::Result<()> {
    let credential = read_secret(r.credential_file, "credential")?;
    let wrapped_key = match (r.kek_file, r.wrapped_key_file) {
        (Some(kek), _) => {
            let kek = super::kek::read_kek(kek)?;
            let key = keys::VolumeKey::generate(keys::Backend::AwsLc)?;
            let wrapped = key.wrap(&kek, r.name);
            key.destroy();
            wrapped?.as_bytes().to_vec()
        }
        (None, Some(p)) => read_secret(p, "wrapped key")?,
        (None, None) => Vec::new(),
    };
    let reply = control::query(
        socket,
        &Request::Create {
            name: r.name.to_owned(),
            blocks: r.blocks,
            credential_hex: encode_hex(&credential),
            multi_attach: r.multi_attach,
            wrapped_key_hex: encode_hex(&wrapped_key),
        },
    )
    .with_context(|| format!("creating volume {:?}", r.name))?;
    let v: VolumeView = serde_json::from_value(reply).context("the server's reply")?;
    println!("created volume {} ({} bytes)", v.name, v.size_bytes);
    Ok(())
}

pub fn delete(socket: &Path, name: &str) -> anyhow::Result<()> {
    control::query(
        socket,
        &Request::Delete {
            name: name.to_owned(),
        },
    )
    .with_context(|| format!("deleting volume {name:?}"))?;
    println!("deleted volume {name}");
    Ok(())
}

pub fn resize(socket: &Path, name: &str, blocks: u64) -> anyhow::Result<()> {
    let reply = control::query(
        socket,
        &Request::Resize {
            name: name.to_owned(),
            blocks,
        },
    )
    .with_context(|| format!("resizing volume {name:?}"))?;
    let v: VolumeView = serde_json::from_value(reply).context("the server's reply")?;
    println!("volume {} is now {} bytes", v.name, v.size_bytes);
    Ok(())
}

pub fn list(socket: &Path, json: bool) -> anyhow::Result<()> {
    let reply = control::query(socket, &Request::List).context("listing volumes")?;
    if json {
        println!("{reply}");
        return Ok(());
    }
    let volumes: Vec<VolumeView> = serde_json::from_value(reply).context("the server's reply")?;
    println!(
        "{:<32} {:>16} {:>6} {:>8}",
        "NAME", "SIZE_BYTES", "MULTI", "ATTACHED"
    );
    for v in volumes {
        println!(
            "{:<32} {:>16} {:>6} {:>8}",
            v.name,
            v.size_bytes,
            if v.multi_attach { "yes" } else { "no" },
            v.attachments
        );
    }
    Ok(())
}

pub fn status(socket: &Path) -> anyhow::Result<()> {
    let reply = control::query(socket, &Request::Status).context("asking the server's status")?;
    println!("{}", serde_json::to_string_pretty(&reply)?);
    Ok(())
}
