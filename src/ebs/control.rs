//! The control socket of `ferrite ebs-server` (`DATA/control.sock`): one JSON request line in,
//! one JSON reply line out. Replies are `{"ok": ...}` or `{"error": "..."}`.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use ebs_server::server::ServerStats;
use ebs_server::volumes::{VolumeInfo, VolumeSpec, VolumeStore};
use serde::{Deserialize, Serialize};

/// Longest request line: a credential and a wrapped key in hex fit easily.
const REQUEST_BYTES_MAX: u64 = 64 * 1024;

/// The file name of the control socket in the data directory.
pub const SOCKET_FILE: &str = "control.sock";

#[derive(Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "kebab-case")]
pub enum Request {
    Create {
        name: String,
        blocks: u64,
        /// The attach credential in hex: the socket, not the command line, carries it.
        credential_hex: String,
        multi_attach: bool,
        wrapped_key_hex: String,
    },
    Delete {
        name: String,
    },
    Resize {
        name: String,
        blocks: u64,
    },
    List,
    Status,
}

// By hand: the credential must never reach a log through `{:?}`.
impl std::fmt::Debug for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Request::Create {
                name,
                blocks,
                multi_attach,
                ..
            } => f
                .debug_struct("Create")
                .field("name", name)
                .field("blocks", blocks)
                .field("credential_hex", &"<redacted>")
                .field("multi_attach", multi_attach)
                .finish_non_exhaustive(),
            Request::Delete { name } => f.debug_struct("Delete").field("name", name).finish(),
            Request::Resize { name, blocks } => f
                .debug_struct("Resize")
                .field("name", name)
                .field("blocks", blocks)
                .finish(),
            Request::List => f.write_str("List"),
            Request::Status => f.write_str("Status"),
        }
    }
}

/// A volume as the socket reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeView {
    pub name: String,
    pub id: u64,
    pub blocks: u64,
    pub size_bytes: u64,
    pub multi_attach: bool,
    pub attachments: u32,
}

impl From<VolumeInfo> for VolumeView {
    fn from(v: VolumeInfo) -> Self {
        VolumeView {
            name: v.name,
            id: v.id,
            blocks: v.blocks,
            size_bytes: v.blocks * super::BLOCK_BYTES,
            multi_attach: v.multi_attach,
            attachments: v.attachments,
        }
    }
}

pub fn encode_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn decode_hex(text: &str) -> Result<Vec<u8>, String> {
    if !text.len().is_multiple_of(2) || !text.is_ascii() {
        return Err("not hex".into());
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).map_err(|_| "not hex".to_string()))
        .collect()
}

fn stats_json(s: &ServerStats) -> serde_json::Value {
    serde_json::json!({
        "datagrams_received": s.datagrams_received,
        "datagrams_sent": s.datagrams_sent,
        "datagrams_malformed": s.datagrams_malformed,
        "datagrams_from_stranger": s.datagrams_from_stranger,
        "datagrams_unsealed": s.datagrams_unsealed,
        "datagrams_unknown_connection": s.datagrams_unknown_connection,
        "datagrams_forged": s.datagrams_forged,
        "datagrams_replayed": s.datagrams_replayed,
        "datagrams_truncated": s.datagrams_truncated,
        "hellos_received": s.hellos_received,
        "hellos_wrong_version": s.hellos_wrong_version,
        "hello_acks_resent": s.hello_acks_resent,
        "hellos_conflicting": s.hellos_conflicting,
        "handshakes_unknown_volume": s.handshakes_unknown_volume,
        "handshakes_expired": s.handshakes_expired,
        "handshakes_confirmed": s.handshakes_confirmed,
        "send_failures": s.send_failures,
        "connections_opened": s.connections_opened,
        "connections_refused": s.connections_refused,
        "connections_expired": s.connections_expired,
        "connections_open": s.connections_open,
        "requests": s.requests,
    })
}

/// Answers one request line against the store.
pub fn answer(
    store: &VolumeStore,
    stats: &dyn Fn() -> ServerStats,
    line: &str,
) -> serde_json::Value {
    let request: Request = match serde_json::from_str(line) {
        Ok(r) => r,
        Err(e) => return serde_json::json!({ "error": format!("bad request: {e}") }),
    };
    let result = match request {
        Request::Create {
            name,
            blocks,
            credential_hex,
            multi_attach,
            wrapped_key_hex,
        } => {
            let (credential, wrapped_key) = match (
                decode_hex(&credential_hex),
                decode_hex(&wrapped_key_hex),
            ) {
                (Ok(c), Ok(w)) => (c, w),
                _ => return serde_json::json!({ "error": "credential or wrapped key is not hex" }),
            };
            let spec = VolumeSpec {
                name,
                blocks,
                credential,
                multi_attach,
                wrapped_key,
            };
            store
                .create(&spec)
                .map(|v| serde_json::json!(VolumeView::from(v)))
        }
        Request::Delete { name } => store
            .delete(&name)
            .map(|()| serde_json::json!({ "deleted": name })),
        Request::Resize { name, blocks } => store
            .resize(&name, blocks)
            .map(|v| serde_json::json!(VolumeView::from(v))),
        Request::List => Ok(serde_json::json!(volumes(store))),
        Request::Status => Ok(serde_json::json!({
            "volumes": volumes(store),
            "free_blocks": store.free_blocks(),
            "extent_blocks": store.extent_blocks(),
            "server": stats_json(&stats()),
        })),
    };
    match result {
        Ok(v) => serde_json::json!({ "ok": v }),
        Err(e) => serde_json::json!({ "error": e.to_string() }),
    }
}

fn volumes(store: &VolumeStore) -> Vec<VolumeView> {
    store.list().into_iter().map(VolumeView::from).collect()
}

/// Serves the control socket until `stop()` returns true (checked every 50 ms). Requests are
/// handled one at a time: they are quick catalog changes.
pub fn serve(
    listener: &UnixListener,
    path: &Path,
    store: &Arc<VolumeStore>,
    stats: &dyn Fn() -> ServerStats,
    stop: impl Fn() -> bool,
) -> anyhow::Result<()> {
    crate::control_socket::serve(listener, path, Duration::from_millis(50), stop, |stream| {
        handle(stream, store, stats)
    })
}

fn handle(
    stream: UnixStream,
    store: &VolumeStore,
    stats: &dyn Fn() -> ServerStats,
) -> anyhow::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut line = String::new();
    BufReader::new(stream.try_clone()?)
        .take(REQUEST_BYTES_MAX)
        .read_line(&mut line)?;
    let mut out = stream;
    writeln!(out, "{}", answer(store, stats, line.trim()))?;
    Ok(())
}

/// Sends `request` to the server at `path`; returns its `ok` value, or its error as an error.
pub fn query(path: &Path, request: &Request) -> anyhow::Result<serde_json::Value> {
    let mut stream = UnixStream::connect(path).map_err(|e| {
        anyhow::anyhow!(
            "ferrite ebs-server is not running at {} ({e})",
            path.display()
        )
    })?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    writeln!(stream, "{}", serde_json::to_string(request)?)?;
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line)?;
    let mut value: serde_json::Value = serde_json::from_str(&line)
        .with_context(|| format!("reply of the server at {}", path.display()))?;
    if let Some(e) = value.get("error") {
        let e = e.as_str().map_or_else(|| e.to_string(), str::to_owned);
        anyhow::bail!("{e}");
    }
    value
        .get_mut("ok")
        .map(serde_json::Value::take)
        .context("the server's reply has neither ok nor error")
}
