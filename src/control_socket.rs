//! The accept loop the control sockets of `ferrite serve` and `ferrite ebs-server` share: one
//! connection at a time (requests are quick), polled so a stop is noticed between them.

use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::time::Duration;

use anyhow::Context;

/// Binds the control socket at `path` (replacing a stale socket file). Bound before the server
/// says where it is, so a client that reads that line can connect at once.
pub fn bind(path: &Path) -> anyhow::Result<UnixListener> {
    let listener = nvme_target::socket::bind_listening(path)
        .with_context(|| format!("binding {}", path.display()))?;
    listener.set_nonblocking(true)?;
    Ok(listener)
}

/// Hands each connection of `listener` (bound at `path` by `bind`) to `handle` until `stop()`
/// returns true, checked every `poll` while no connection waits. A failed request is logged,
/// not fatal; the socket file is removed at the end.
pub fn serve(
    listener: &UnixListener,
    path: &Path,
    poll: Duration,
    stop: impl Fn() -> bool,
    mut handle: impl FnMut(UnixStream) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    while !stop() {
        match listener.accept() {
            Ok((stream, _)) => {
                if let Err(e) = handle(stream) {
                    tracing::warn!(error = %e, "control request failed");
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => std::thread::sleep(poll),
            Err(e) => return Err(e).context("accepting a control connection"),
        }
    }
    let _ = std::fs::remove_file(path);
    Ok(())
}
