//! The control socket of a running `ferrite serve`: one request line in, one JSON line out.
//!
//! Requests: `identify-controller`, `identify <nsid>`, `smart-log <nsid>`, and
//! `terminate <instance id>`, which answers with JSON lines: `{"progress": ...}` for each step,
//! `{"crypto_erased": id}` once the key is destroyed and serving stopped (a client that does not
//! wait for the erase may hang up here), then `{"terminated": id}` once every block is erased, or
//! `{"error": ...}`.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use nvme_target::Controller;

use super::terminate::Termination;

/// How long `ferrite terminate` waits for each progress line of a running server (stopping
/// drains in-flight requests, and a device's erase is one line).
const TERMINATE_LINE_TIMEOUT: Duration = Duration::from_secs(120);

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
    listener: &UnixListener,
    path: &Path,
    controller: Arc<Controller>,
    termination: Arc<Termination>,
    stop: impl Fn() -> bool,
) -> anyhow::Result<()> {
    crate::control_socket::serve(listener, path, Duration::from_millis(100), stop, |stream| {
        handle(stream, &controller, &termination)
    })
}

fn handle(
    stream: UnixStream,
    controller: &Controller,
    termination: &Termination,
) -> anyhow::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut line = String::new();
    BufReader::new(stream.try_clone()?)
        .take(4096)
        .read_line(&mut line)?;
    let mut words = line.split_whitespace();
    if words.next() == Some("terminate") {
        termination.request(words.next().unwrap_or(""), stream);
        return Ok(());
    }
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

/// How far a terminate through a running server got when `request_terminate` returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TerminateOutcome {
    /// Key destroyed and serving stopped; the server erases the blocks in the background.
    Erasing,
    /// Every block erased and the instance record removed.
    Erased,
}

/// Asks the `ferrite serve` listening at `path` to terminate instance `instance_id`, passing each
/// progress line to `progress`, until the key is destroyed (or with `wait`, until the erase is
/// done). `Ok(None)` if nothing listens at `path`.
pub fn request_terminate(
    path: &Path,
    instance_id: &str,
    wait: bool,
    progress: &mut dyn FnMut(&str),
) -> anyhow::Result<Option<TerminateOutcome>> {
    let mut stream = match UnixStream::connect(path) {
        Ok(s) => s,
        Err(_) => return Ok(None),
    };
    stream.set_read_timeout(Some(TERMINATE_LINE_TIMEOUT))?;
    writeln!(stream, "terminate {instance_id}")?;
    let unfinished = || {
        format!(
            "ferrite serve (control socket {}) stopped answering before instance {instance_id} \
             was terminated; run `ferrite terminate` again to finish",
            path.display()
        )
    };
    for line in BufReader::new(stream).lines() {
        let line = line.with_context(unfinished)?;
        let value: serde_json::Value =
            serde_json::from_str(&line).with_context(|| format!("control reply {line:?}"))?;
        if let Some(text) = value.get("progress").and_then(|p| p.as_str()) {
            progress(text);
        } else if value.get("crypto_erased").is_some() {
            if !wait {
                return Ok(Some(TerminateOutcome::Erasing));
            }
        } else if value.get("terminated").is_some() {
            return Ok(Some(TerminateOutcome::Erased));
        } else if let Some(e) = value.get("error") {
            let e = e.as_str().map_or_else(|| e.to_string(), str::to_owned);
            anyhow::bail!("ferrite serve could not terminate instance {instance_id}: {e}");
        }
    }
    anyhow::bail!(unfinished())
}
