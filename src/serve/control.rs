//! The control socket of a running `ferrite serve`: one request line in, one JSON line out.
//!
//! Requests: `identify-controller`, `identify <nsid>`, `smart-log <nsid>`.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use nvme_target::Controller;

/// Answers one request line from the controller's current state.
pub fn answer(controller: &Controller, line: &str) -> serde_json::Value {
    let mut words = line.split_whitespace();
    let command = words.next().unwrap_or("");
    let nsid = words.next().and_then(|w| w.parse::<u32>().ok());
    let ns = nsid.and_then(|n| controller.namespace(n));
    let result = match (command, ns) {
        ("identify-controller", _) => serde_json::to_value(controller.identify()),
        ("identify", Some(ns)) => serde_json::to_value(ns.identify()),
        ("smart-log", Some(ns)) => serde_json::to_value(ns.smart_log()),
        ("identify" | "smart-log", None) => {
            return serde_json::json!({ "error": format!("no namespace {:?}", nsid) });
        }
        _ => return serde_json::json!({ "error": format!("unknown request {line:?}") }),
    };
    result.unwrap_or_else(|e| serde_json::json!({ "error": e.to_string() }))
}

/// Serves the control socket until `stop()` returns true (checked every 100 ms).
pub fn serve(
    path: &Path,
    controller: Arc<Controller>,
    stop: impl Fn() -> bool,
) -> anyhow::Result<()> {
    let _ = std::fs::remove_file(path);
    let listener =
        UnixListener::bind(path).with_context(|| format!("binding {}", path.display()))?;
    listener.set_nonblocking(true)?;
    while !stop() {
        match listener.accept() {
            Ok((stream, _)) => {
                if let Err(e) = handle(stream, &controller) {
                    tracing::warn!(error = %e, "control request failed");
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(e) => return Err(e).context("accepting a control connection"),
        }
    }
    let _ = std::fs::remove_file(path);
    Ok(())
}

fn handle(stream: UnixStream, controller: &Controller) -> anyhow::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut line = String::new();
    BufReader::new(stream.try_clone()?)
        .take(4096)
        .read_line(&mut line)?;
    let mut out = stream;
    writeln!(out, "{}", answer(controller, line.trim()))?;
    Ok(())
}

/// Asks a running server; `Ok(None)` if nothing listens at `path`.
pub fn query(path: &Path, request: &str) -> anyhow::Result<Option<serde_json::Value>> {
    let mut stream = match UnixStream::connect(path) {
        Ok(s) => s,
        Err(_) => return Ok(None),
    };
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    writeln!(stream, "{request}")?;
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line)?;
    let value: serde_json::Value = serde_json::from_str(&line).context("control reply")?;
    if let Some(e) = value.get("error") {
        anyhow::bail!("ferrite serve answered: {e}");
    }
    Ok(Some(value))
}
