//! Serving one namespace on a vhost-user socket: accept a frontend, serve it until it goes away,
//! accept the next one; stop on request, draining in-flight requests first.

use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use thiserror::Error;
use vhost::vhost_user::Listener;
use vhost_user_backend::{ShutdownHandle, VhostUserDaemon};
use vm_memory::{GuestMemoryAtomic, GuestMemoryMmap};
use vmm_sys_util::epoll::{ControlOperation, Epoll, EpollEvent, EventSet};

use super::backend::{BackendError, BlkBackend};
use super::config::TransportOptions;
use crate::controller::ActiveNamespace;

/// How often a daemon waiting for a frontend checks whether it was asked to stop.
const ACCEPT_POLL: Duration = Duration::from_millis(100);

#[derive(Debug, Error)]
pub enum DaemonError {
    #[error("listening on {path}: {source}")]
    Listen {
        path: PathBuf,
        source: vhost::vhost_user::Error,
    },
    #[error("waiting for a frontend: {0}")]
    Poll(std::io::Error),
    #[error("device: {0}")]
    Backend(#[from] BackendError),
    #[error("vhost-user daemon: {0}")]
    Daemon(String),
}

/// Stops a running `serve` from another thread (e.g. a Ctrl-C handler).
#[derive(Clone, Debug, Default)]
pub struct StopHandle {
    inner: Arc<StopInner>,
}

#[derive(Default)]
struct StopInner {
    stop: AtomicBool,
    connection: Mutex<Option<ShutdownHandle>>,
    connections: AtomicU64,
}

impl std::fmt::Debug for StopInner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StopInner")
            .field("stop", &self.stop)
            .field("connections", &self.connections)
            .finish_non_exhaustive()
    }
}

impl StopHandle {
    pub fn new() -> Self {
        Self::default()
    }

    /// Asks `serve` to return: closes the current connection (after its workers finish the
    /// requests they hold) and stops accepting new ones.
    pub fn stop(&self) {
        self.inner.stop.store(true, Ordering::SeqCst);
        if let Some(conn) = self.inner.connection.lock().as_ref() {
            conn.shutdown();
        }
    }

    pub fn is_stopped(&self) -> bool {
        self.inner.stop.load(Ordering::SeqCst)
    }

    /// Frontend connections accepted so far.
    pub fn connections(&self) -> u64 {
        self.inner.connections.load(Ordering::SeqCst)
    }
}

/// Blocks until the listener has a connection to accept (true) or a stop was asked (false).
fn wait_for_frontend(listener: &Listener, stop: &StopHandle) -> Result<bool, DaemonError> {
    let epoll = Epoll::new().map_err(DaemonError::Poll)?;
    epoll
        .ctl(
            ControlOperation::Add,
            listener.as_raw_fd(),
            EpollEvent::new(EventSet::IN, 0),
        )
        .map_err(DaemonError::Poll)?;
    let mut events = [EpollEvent::default(); 1];
    loop {
        if stop.is_stopped() {
            return Ok(false);
        }
        match epoll.wait(ACCEPT_POLL.as_millis() as i32, &mut events) {
            Ok(0) => continue,
            Ok(_) => return Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(DaemonError::Poll(e)),
        }
    }
}

/// Serves `namespace` on the vhost-user socket `path` (replacing a stale socket file) until
/// `stop` is asked. Each frontend gets a fresh device; when it disconnects the next is accepted.
pub fn serve(
    path: &Path,
    namespace: Arc<ActiveNamespace>,
    options: &TransportOptions,
    stop: &StopHandle,
) -> Result<(), DaemonError> {
    let mut listener = crate::socket::bind_listening(path)
        .map(Listener::from)
        .map_err(|e| DaemonError::Listen {
            path: path.to_owned(),
            source: vhost::vhost_user::Error::SocketError(e),
        })?;
    let result = serve_on(&mut listener, namespace, options, stop);
    let _ = std::fs::remove_file(path);
    result
}

fn serve_on(
    listener: &mut Listener,
    namespace: Arc<ActiveNamespace>,
    options: &TransportOptions,
    stop: &StopHandle,
) -> Result<(), DaemonError> {
    let name = format!("ferrite-ns{}", namespace.identity().nsid);
    while wait_for_frontend(listener, stop)? {
        let mem = GuestMemoryAtomic::new(GuestMemoryMmap::new());
        let backend = Arc::new(BlkBackend::new(
            namespace.clone(),
            options.clone(),
            mem.clone(),
        )?);
        let mut daemon = VhostUserDaemon::new(name.clone(), backend.clone(), mem)
            .map_err(|e| DaemonError::Daemon(e.to_string()))?;
        if let Err(e) = daemon.start(listener) {
            // The peer may have gone before the handshake: wait for the next one.
            tracing::warn!(error = %e, "accepting a frontend failed");
            continue;
        }
        stop.inner.connections.fetch_add(1, Ordering::SeqCst);
        *stop.inner.connection.lock() = daemon.shutdown_handle();
        // A stop asked between the accept and the line above would have found no connection.
        if stop.is_stopped() {
            daemon.request_shutdown();
        }
        tracing::info!(socket = %name, "frontend connected");
        match daemon.wait() {
            Ok(()) => tracing::info!(socket = %name, "frontend disconnected"),
            Err(e) => tracing::info!(socket = %name, error = %e, "frontend connection ended"),
        }
        *stop.inner.connection.lock() = None;
        // Dropping the daemon stops its queue workers; each finishes the chain it holds first.
        drop(daemon);
        let (rejected, completed) = backend.request_counts();
        let per_queue = backend.completed_per_queue();
        // Each refusal is logged at debug only (a hostile guest could flood the log); the sum
        // is a warning, so a frontend whose requests fail is seen at the default level.
        if rejected > 0 {
            tracing::warn!(completed, ?per_queue, rejected, "connection closed");
        } else {
            tracing::info!(completed, ?per_queue, rejected, "connection closed");
        }
    }
    Ok(())
}
