//! Listeners (unix socket, TCP), a thread per connection, and the stop handle that stops
//! accepting, lets every connection finish the requests it has read, and closes them.

use std::collections::HashMap;
use std::net::{Shutdown, SocketAddr, TcpListener};
use std::os::unix::net::UnixListener;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use parking_lot::Mutex;

use super::connection::{self, Ended};
use super::stream::Stream;
use super::{Export, NbdError, validate_exports};

/// How often the accept loop looks for new connections and for a stop.
const ACCEPT_POLL: Duration = Duration::from_millis(10);
/// A client must finish the handshake within this (an idle one would hold a connection slot).
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);
/// Connections served at once; more are closed at accept (a thread each, on a small machine).
pub const MAX_CONNECTIONS: usize = 256;
/// After a stop, how long connections may take to finish what they have read before their
/// sockets are shut both ways (a client that stops reading would otherwise block its writer).
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Where to listen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Listen {
    /// A unix socket path (a stale socket there is replaced; any other file is an error).
    Unix(PathBuf),
    /// A TCP address (loopback unless the operator chose otherwise: NBD has no authentication).
    Tcp(SocketAddr),
}

/// Stops a running `NbdServer::serve` from another thread.
#[derive(Clone, Debug, Default)]
pub struct NbdStopHandle {
    inner: Arc<StopInner>,
}

#[derive(Debug, Default)]
struct StopInner {
    stop: AtomicBool,
    /// Live connections, to shut their read side down on stop.
    live: Mutex<HashMap<u64, Stream>>,
    accepted: AtomicU64,
    /// Overrides DRAIN_TIMEOUT (tests), in milliseconds; 0 = the default.
    drain_timeout_ms: AtomicU64,
}

impl NbdStopHandle {
    pub fn new() -> Self {
        Self::default()
    }

    /// Stops accepting; each connection finishes the requests it has already read, sends their
    /// replies and closes. `serve` returns once all of them are closed.
    pub fn stop(&self) {
        self.inner.stop.store(true, Ordering::SeqCst);
        for s in self.inner.live.lock().values() {
            // Ends the connection's next read; its writes still go out.
            let _ = s.shutdown(Shutdown::Read);
        }
    }

    pub fn is_stopped(&self) -> bool {
        self.inner.stop.load(Ordering::SeqCst)
    }

    /// How long connections may drain after a stop before they are closed (default 10 s).
    pub fn set_drain_timeout(&self, timeout: Duration) {
        let ms = (timeout.as_millis() as u64).max(1);
        self.inner.drain_timeout_ms.store(ms, Ordering::SeqCst);
    }

    fn drain_timeout(&self) -> Duration {
        match self.inner.drain_timeout_ms.load(Ordering::SeqCst) {
            0 => DRAIN_TIMEOUT,
            ms => Duration::from_millis(ms),
        }
    }

    /// Shuts every live connection both ways: a blocked reply write fails at once.
    fn force_close(&self) {
        for s in self.inner.live.lock().values() {
            let _ = s.shutdown(Shutdown::Both);
        }
    }

    fn live(&self) -> usize {
        self.inner.live.lock().len()
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> u64 {
        self.inner.accepted.load(Ordering::SeqCst)
    }

    /// Records a connection; false (and the connection shut) if a stop came first.
    fn register(&self, id: u64, stream: Stream) -> bool {
        let mut live = self.inner.live.lock();
        // `stop` sets the flag before taking the lock: either it sees this entry or this sees
        // the flag.
        if self.is_stopped() {
            let _ = stream.shutdown(Shutdown::Read);
            return false;
        }
        live.insert(id, stream);
        true
    }

    fn unregister(&self, id: u64) {
        self.inner.live.lock().remove(&id);
    }
}

#[derive(Debug)]
enum Bound {
    Unix(UnixListener, PathBuf),
    Tcp(TcpListener),
}

impl Bound {
    fn accept(&self) -> std::io::Result<Option<Stream>> {
        let r = match self {
            Bound::Unix(l, _) => l.accept().map(|(s, _)| Stream::Unix(s)),
            Bound::Tcp(l) => l.accept().map(|(s, _)| Stream::Tcp(s)),
        };
        match r {
            Ok(s) => Ok(Some(s)),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Ok(None),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => Ok(None),
            // The peer gave up between SYN and accept: not the listener's problem.
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionAborted => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// Bound listeners, ready to serve exports.
#[derive(Debug)]
pub struct NbdServer {
    listeners: Vec<Bound>,
    handshake_timeout: Duration,
}

impl NbdServer {
    /// Binds every listener, so that a taken port or path fails before any volume is opened.
    pub fn bind(listen: &[Listen]) -> Result<Self, NbdError> {
        let mut listeners = Vec::new();
        for l in listen {
            let bound = match l {
                Listen::Unix(path) => {
                    // Appears at its path only once it listens; replaces a stale socket only.
                    let listener = crate::socket::bind_listening(path).map_err(|e| {
                        std::io::Error::new(e.kind(), format!("binding {}: {e}", path.display()))
                    })?;
                    listener.set_nonblocking(true)?;
                    Bound::Unix(listener, path.clone())
                }
                Listen::Tcp(addr) => {
                    let listener = TcpListener::bind(addr).map_err(|e| {
                        std::io::Error::new(e.kind(), format!("binding {addr}: {e}"))
                    })?;
                    listener.set_nonblocking(true)?;
                    Bound::Tcp(listener)
                }
            };
            listeners.push(bound);
        }
        Ok(Self {
            listeners,
            handshake_timeout: HANDSHAKE_TIMEOUT,
        })
    }

    /// How long a client may take over the handshake before it is closed (default 30 s).
    pub fn set_handshake_timeout(&mut self, timeout: Duration) {
        assert!(
            !timeout.is_zero(),
            "a zero timeout means none to the socket API"
        );
        self.handshake_timeout = timeout;
    }

    /// The TCP addresses actually bound (port 0 resolved).
    pub fn tcp_addrs(&self) -> Vec<SocketAddr> {
        self.listeners
            .iter()
            .filter_map(|l| match l {
                Bound::Tcp(t) => t.local_addr().ok(),
                Bound::Unix(..) => None,
            })
            .collect()
    }

    /// Accepts and serves connections until `stop`; returns once every connection is closed.
    /// Unix socket files are removed on the way out.
    pub fn serve(self, exports: Vec<Export>, stop: &NbdStopHandle) -> Result<(), NbdError> {
        let result =
            validate_exports(&exports).and_then(|()| self.accept_loop(&Arc::new(exports), stop));
        for l in &self.listeners {
            if let Bound::Unix(_, path) = l {
                let _ = std::fs::remove_file(path);
            }
        }
        result
    }

    fn accept_loop(
        &self,
        exports: &Arc<Vec<Export>>,
        stop: &NbdStopHandle,
    ) -> Result<(), NbdError> {
        let mut threads: Vec<JoinHandle<()>> = Vec::new();
        let mut result = Ok(());
        'accepting: while !stop.is_stopped() {
            let mut accepted_any = false;
            for l in &self.listeners {
                match l.accept() {
                    Ok(Some(stream)) => {
                        accepted_any = true;
                        if stop.live() >= MAX_CONNECTIONS {
                            tracing::warn!(
                                limit = MAX_CONNECTIONS,
                                "NBD connection refused: too many connections"
                            );
                            continue;
                        }
                        match spawn(stream, exports, stop, self.handshake_timeout) {
                            Ok(Some(t)) => threads.push(t),
                            Ok(None) => {}
                            Err(e) => tracing::warn!(error = %e, "NBD connection not started"),
                        }
                    }
                    Ok(None) => {}
                    Err(e) => {
                        result = Err(NbdError::Io(e));
                        stop.stop();
                        break 'accepting;
                    }
                }
            }
            threads.retain(|t| !t.is_finished());
            if !accepted_any {
                std::thread::sleep(ACCEPT_POLL);
            }
        }
        // Drain: every connection ends after the requests it holds.
        stop.stop();
        let deadline = std::time::Instant::now() + stop.drain_timeout();
        while threads.iter().any(|t| !t.is_finished()) {
            if std::time::Instant::now() > deadline {
                tracing::warn!("NBD connections still busy after the drain timeout: closing them");
                stop.force_close();
                break;
            }
            std::thread::sleep(ACCEPT_POLL);
        }
        for t in threads {
            if t.join().is_err() {
                tracing::error!("an NBD connection thread panicked");
            }
        }
        result
    }
}

/// Starts a connection's thread (none if a stop came first).
fn spawn(
    stream: Stream,
    exports: &Arc<Vec<Export>>,
    stop: &NbdStopHandle,
    handshake_timeout: Duration,
) -> Result<Option<JoinHandle<()>>, NbdError> {
    stream.set_blocking()?;
    stream.set_nodelay()?;
    stream.set_read_timeout(Some(handshake_timeout))?;
    let id = stop.inner.accepted.fetch_add(1, Ordering::SeqCst);
    if !stop.register(id, stream.try_clone()?) {
        return Ok(None);
    }
    let exports = exports.clone();
    let handle = stop.clone();
    let spawned = std::thread::Builder::new()
        .name(format!("nbd-conn-{id}"))
        .spawn(move || {
            run_connection(id, stream, &exports);
            handle.unregister(id);
        });
    match spawned {
        Ok(t) => Ok(Some(t)),
        Err(e) => {
            stop.unregister(id);
            Err(NbdError::Io(e))
        }
    }
}

fn run_connection(id: u64, stream: Stream, exports: &[Export]) {
    let writer = match stream.try_clone() {
        Ok(w) => w,
        Err(e) => {
            tracing::warn!(connection = id, error = %e, "NBD connection: cloning the socket");
            return;
        }
    };
    let lift = match stream.try_clone() {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(connection = id, error = %e, "NBD connection: cloning the socket");
            return;
        }
    };
    // The timeout is the socket's, shared by every clone of it.
    match connection::serve_with(stream, writer, exports, move || lift.set_read_timeout(None)) {
        Ok(Ended::InHandshake) => {
            tracing::debug!(connection = id, "NBD client left during the handshake");
        }
        Ok(Ended::Transmission { export, counts }) => tracing::info!(
            connection = id,
            export,
            completed = counts.completed,
            failed = counts.failed,
            "NBD connection closed"
        ),
        Err(e) => tracing::warn!(connection = id, error = %e, "NBD connection closed on an error"),
    }
}
