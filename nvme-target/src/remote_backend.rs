//! A namespace on a remote volume (`ebs_server::client::RemoteVolume`): what `ferrite serve`
//! attaches when a namespace is configured `remote = {...}`, so a guest sees an EBS-style volume
//! over vhost-user-blk like a local one.
//!
//! `RemoteVolume` is a single-threaded, blocking client; the `Namespace` trait is called from
//! every queue worker at once. So one backend thread owns the client: workers send it requests
//! over a bounded channel and wait for their answer, and the thread keeps up to the client's
//! queue depth in flight, which is what lets several queues (and one queue's batch) overlap on
//! the network. The client's ordering rules (order.rs) hold across all of them: requests reach it
//! in the order the thread takes them.
//!
//! Idle, the thread sends keepalives so the server keeps the attachment. After a failure that
//! closes the client (no answer within the request timeout: the server restarted or is gone),
//! the requests it held fail, and the next request reconnects once (a new handshake and ATTACH)
//! before it is sent: a server restart costs the guest the I/O that was in flight, with a clear
//! error, and then the disk works again.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TryRecvError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ebs_server::client::{ClientConfig, ClientError, Completion, RemoteVolume};
use ebs_server::proto::{BLOCK_BYTES, BLOCK_SEAL_BYTES, Request, Status as WireStatus};
use keys::Kek;
use parking_lot::Mutex;
use zeroize::Zeroizing;

use crate::namespace::{BackendHealth, Namespace, NamespaceError};

/// How often an idle backend sends a keepalive: well inside the server's default 10 s idle
/// timeout, so two can be lost.
pub const KEEPALIVE_MS: u64 = 2_000;
/// Most requests waiting for the backend thread beyond those in flight; a worker blocks beyond.
const WAITING_MAX: usize = 256;
/// Between attach attempts while the volume is busy.
const BUSY_RETRY_MS: u64 = 200;
/// Least time between reconnect attempts after a failure: each attempt may take the request
/// timeout, so requests arriving in between fail at once instead of each waiting for its own.
const RECONNECT_INTERVAL_MS: u64 = 1_000;

/// Where and what to attach.
pub struct RemoteTarget {
    /// The server's path addresses, in path order (`config.srd.path_count` of them).
    pub server: Vec<SocketAddr>,
    pub volume: String,
    pub credential: Zeroizing<Vec<u8>>,
    /// The KEK of a volume sealed by its clients (docs/ebs-protocol.md, "Envelope encryption").
    pub kek: Option<Kek>,
    pub client: ClientConfig,
    /// How long `attach` waits for a volume another client holds: after a crash of this host's
    /// previous client, the server frees the attachment once its idle timeout (10 s by
    /// default) passes, so a restart right after a crash waits instead of failing.
    pub busy_wait_ms: u64,
}

impl std::fmt::Debug for RemoteTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteTarget")
            .field("server", &self.server)
            .field("volume", &self.volume)
            .field("credential", &"<redacted>")
            .field("kek", &self.kek)
            .finish_non_exhaustive()
    }
}

type Reply = SyncSender<Result<Completion, NamespaceError>>;

struct Op {
    request: Request,
    reply: Reply,
}

/// Counters of the backend, for health and tests.
#[derive(Debug, Default)]
struct Counters {
    bytes_read: AtomicU64,
    bytes_written: AtomicU64,
    reconnects: AtomicU64,
    keepalives: AtomicU64,
}

/// A remote volume as a namespace. Dropping it detaches (best effort) and ends its thread.
#[derive(Debug)]
pub struct RemoteNamespace {
    ops: Mutex<Option<SyncSender<Op>>>,
    blocks: u64,
    sealed: bool,
    counters: Arc<Counters>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl RemoteNamespace {
    /// Connects, runs the handshake and attaches (failing with the client's error, which says
    /// what is wrong: no server, wrong credential, a KEK mismatch, the volume busy), then starts
    /// the backend thread.
    pub fn attach(target: RemoteTarget) -> Result<Self, ClientError> {
        let client = connect_waiting(&target)?;
        let info = client
            .attached()
            .cloned()
            .ok_or_else(|| ClientError::Protocol("attached without ATTACHED".into()))?;
        let sealed = client.is_sealed();
        let (tx, rx) = mpsc::sync_channel(WAITING_MAX);
        let counters = Arc::new(Counters::default());
        let worker = Worker {
            target,
            client: Some(client),
            ops: rx,
            counters: Arc::clone(&counters),
            waiting: HashMap::new(),
            last_reconnect: None,
        };
        let thread = std::thread::Builder::new()
            .name(format!("remote-{}", worker.target.volume))
            .spawn(move || worker.run())
            .map_err(ClientError::Io)?;
        Ok(Self {
            ops: Mutex::new(Some(tx)),
            blocks: info.blocks,
            sealed,
            counters,
            thread: Mutex::new(Some(thread)),
        })
    }

    /// Whether blocks are sealed by this client (a volume with a wrapped data key).
    pub fn is_sealed(&self) -> bool {
        self.sealed
    }

    /// Times the backend reconnected after a failure.
    pub fn reconnects(&self) -> u64 {
        self.counters.reconnects.load(Ordering::Relaxed)
    }

    /// Detaches and ends the backend thread; later requests fail. Idempotent.
    pub fn close(&self) {
        self.ops.lock().take();
        if let Some(t) = self.thread.lock().take()
            && t.join().is_err()
        {
            tracing::error!("the remote namespace thread panicked");
        }
    }

    fn call(&self, request: Request) -> Result<Completion, NamespaceError> {
        self.call_many(std::iter::once(request))
            .pop()
            .unwrap_or_else(|| Err(NamespaceError::Backend("no answer".into())))
    }

    /// Sends every request to the backend thread before waiting for any answer, so a batch of a
    /// queue's requests is in flight on the network together (up to the client's queue depth)
    /// instead of one round trip after another. The answers come back in request order. The
    /// client keeps their order where it matters (a write overlapping one in flight waits for it,
    /// a flush is a barrier: `ebs_server::client`'s order rules), since they reach it in order.
    fn call_many(
        &self,
        requests: impl Iterator<Item = Request>,
    ) -> Vec<Result<Completion, NamespaceError>> {
        let ended = || NamespaceError::Backend("remote volume thread ended".into());
        let sent = self.ops.lock().as_ref().cloned();
        let answers: Vec<_> = requests
            .map(|request| {
                let sent = sent
                    .as_ref()
                    .ok_or_else(|| NamespaceError::Backend("remote volume detached".into()))?;
                let (reply, answer) = mpsc::sync_channel(1);
                sent.send(Op { request, reply }).map_err(|_| ended())?;
                Ok(answer)
            })
            .collect();
        answers
            .into_iter()
            .map(|answer| answer?.recv().map_err(|_| ended())?)
            .collect()
    }

    /// The data of a one-block READ's completion, into `buf`.
    fn read_answer(
        &self,
        lba: u64,
        answer: Result<Completion, NamespaceError>,
        buf: &mut [u8],
    ) -> Result<(), NamespaceError> {
        match answer? {
            Completion::Data(data) if data.len() == buf.len() => {
                buf.copy_from_slice(&data);
                self.counters
                    .bytes_read
                    .fetch_add(BLOCK_BYTES as u64, Ordering::Relaxed);
                Ok(())
            }
            other => Err(NamespaceError::Backend(format!(
                "READ of block {lba} answered with {other:?}"
            ))),
        }
    }

    fn write_request(lba: u64, data: &[u8], durable: bool) -> Request {
        Request::Write {
            lba,
            fua: durable,
            seal: [0; BLOCK_SEAL_BYTES],
            data: data.to_vec(),
        }
    }

    fn check(&self, lba: u64, count: u64) -> Result<(), NamespaceError> {
        match lba.checked_add(count) {
            Some(end) if end <= self.blocks => Ok(()),
            _ => Err(NamespaceError::OutOfRange { lba, count }),
        }
    }
}

impl Drop for RemoteNamespace {
    fn drop(&mut self) {
        self.close();
    }
}

impl Namespace for RemoteNamespace {
    fn block_size(&self) -> usize {
        BLOCK_BYTES
    }

    fn blocks(&self) -> u64 {
        self.blocks
    }

    fn read_block(&self, lba: u64, buf: &mut [u8]) -> Result<(), NamespaceError> {
        self.check(lba, 1)?;
        let answer = self.call(Request::Read { lba, blocks: 1 });
        self.read_answer(lba, answer, buf)
    }

    /// All in flight at once (`call_many`); a block out of range fails alone.
    fn read_blocks(
        &self,
        lbas: &[u64],
        out: &mut [u8],
        results: &mut Vec<Result<(), NamespaceError>>,
    ) {
        results.clear();
        let checked: Vec<_> = lbas.iter().map(|&lba| self.check(lba, 1)).collect();
        let requests = lbas
            .iter()
            .zip(&checked)
            .filter(|(_, c)| c.is_ok())
            .map(|(&lba, _)| Request::Read { lba, blocks: 1 });
        let mut answers = self.call_many(requests).into_iter();
        for ((&lba, check), buf) in lbas.iter().zip(checked).zip(out.chunks_mut(BLOCK_BYTES)) {
            results.push(check.and_then(|()| {
                let answer = answers
                    .next()
                    .unwrap_or_else(|| Err(NamespaceError::Backend("no answer".into())));
                self.read_answer(lba, answer, buf)
            }));
        }
    }

    fn write_block(&self, lba: u64, data: &[u8], durable: bool) -> Result<(), NamespaceError> {
        self.check(lba, 1)?;
        self.call(Self::write_request(lba, data, durable))?;
        self.counters
            .bytes_written
            .fetch_add(BLOCK_BYTES as u64, Ordering::Relaxed);
        Ok(())
    }

    /// All in flight at once (`call_many`), in order: the client holds back a write that
    /// overlaps one in flight, so a block written twice keeps the later data.
    fn write_blocks(&self, writes: &[(u64, &[u8])], results: &mut Vec<Result<(), NamespaceError>>) {
        results.clear();
        let checked: Vec<_> = writes.iter().map(|&(lba, _)| self.check(lba, 1)).collect();
        let requests = writes
            .iter()
            .zip(&checked)
            .filter(|(_, c)| c.is_ok())
            .map(|(&(lba, data), _)| Self::write_request(lba, data, false));
        let mut answers = self.call_many(requests).into_iter();
        for check in checked {
            results.push(check.and_then(|()| {
                answers
                    .next()
                    .unwrap_or_else(|| Err(NamespaceError::Backend("no answer".into())))?;
                self.counters
                    .bytes_written
                    .fetch_add(BLOCK_BYTES as u64, Ordering::Relaxed);
                Ok(())
            }));
        }
    }

    fn flush(&self) -> Result<(), NamespaceError> {
        self.call(Request::Flush).map(|_| ())
    }

    fn deallocate(&self, lba: u64, count: u64) -> Result<(), NamespaceError> {
        self.ranges(lba, count, |lba, blocks| Request::Trim { lba, blocks })
    }

    fn write_zeroes(&self, lba: u64, count: u64) -> Result<(), NamespaceError> {
        self.ranges(lba, count, |lba, blocks| Request::WriteZeroes {
            lba,
            blocks,
            fua: false,
        })
    }

    fn health(&self) -> BackendHealth {
        // The server's wear is the server's; the guest sees a volume that is never worn.
        BackendHealth {
            percentage_used: 0,
            available_spare: 100,
            available_spare_threshold: 10,
            read_only: false,
            blocks_in_use: None,
            lifetime_bytes_read: self.counters.bytes_read.load(Ordering::Relaxed),
            lifetime_bytes_written: self.counters.bytes_written.load(Ordering::Relaxed),
        }
    }
}

impl RemoteNamespace {
    /// A TRIM or WRITE_ZEROES over `count` blocks, in pieces the protocol allows.
    fn ranges(
        &self,
        lba: u64,
        count: u64,
        request: impl Fn(u64, u32) -> Request,
    ) -> Result<(), NamespaceError> {
        self.check(lba, count)?;
        let max = u64::from(ebs_server::proto::TRIM_BLOCKS_MAX);
        let mut at = lba;
        while at < lba + count {
            let n = (lba + count - at).min(max);
            self.call(request(at, n as u32))?;
            at += n;
        }
        Ok(())
    }
}

fn connect(target: &RemoteTarget) -> Result<RemoteVolume, ClientError> {
    RemoteVolume::connect(
        &target.server,
        &target.volume,
        &target.credential,
        target.kek.as_ref(),
        target.client.clone(),
    )
}

/// `connect`, retried while the server says the volume is attached elsewhere, for up to
/// `busy_wait_ms`.
fn connect_waiting(target: &RemoteTarget) -> Result<RemoteVolume, ClientError> {
    let started = Instant::now();
    let mut told = false;
    loop {
        match connect(target) {
            Err(ClientError::Server {
                status: WireStatus::VolumeBusy,
                ..
            }) if started.elapsed() < Duration::from_millis(target.busy_wait_ms) => {
                if !told {
                    told = true;
                    tracing::warn!(
                        volume = %target.volume,
                        wait_ms = target.busy_wait_ms,
                        "volume attached by another client (a crashed earlier one is released \
                         at the server's idle timeout): waiting"
                    );
                }
                std::thread::sleep(Duration::from_millis(BUSY_RETRY_MS));
            }
            other => return other,
        }
    }
}

/// A client error as the namespace reports it: the guest gets the NVMe status that fits.
fn namespace_error(e: ClientError) -> NamespaceError {
    match e {
        ClientError::Integrity { lba, detail } => NamespaceError::Media {
            lba,
            detail: format!("remote block: {detail}"),
        },
        ClientError::Server {
            status, message, ..
        } => match status {
            WireStatus::Media => NamespaceError::Media {
                lba: 0,
                detail: message,
            },
            WireStatus::ReadOnly => NamespaceError::ReadOnly { reason: message },
            WireStatus::OutOfRange => NamespaceError::Backend(message),
            _ => NamespaceError::Backend(format!("remote server: {message}")),
        },
        other => NamespaceError::Backend(format!("remote volume: {other}")),
    }
}

/// The backend thread: owns the client, takes requests, answers them.
struct Worker {
    target: RemoteTarget,
    /// None after a failure that closed it and a reconnect that failed.
    client: Option<RemoteVolume>,
    ops: Receiver<Op>,
    counters: Arc<Counters>,
    waiting: HashMap<u64, Reply>,
    last_reconnect: Option<Instant>,
}

impl Worker {
    fn run(mut self) {
        let queue_depth = self.target.client.queue_depth_max;
        loop {
            // Take what is waiting, up to the queue depth; block only when nothing is in flight.
            while self.waiting.len() < queue_depth {
                let op = if self.waiting.is_empty() {
                    match self.ops.recv_timeout(Duration::from_millis(KEEPALIVE_MS)) {
                        Ok(op) => op,
                        Err(RecvTimeoutError::Timeout) => {
                            self.keepalive();
                            continue;
                        }
                        Err(RecvTimeoutError::Disconnected) => return self.detach(),
                    }
                } else {
                    match self.ops.try_recv() {
                        Ok(op) => op,
                        Err(TryRecvError::Empty) => break,
                        // Finish what is in flight first; the loop ends when it is answered.
                        Err(TryRecvError::Disconnected) => break,
                    }
                };
                self.submit(op);
            }
            self.complete_some();
        }
    }

    fn submit(&mut self, op: Op) {
        let Some(client) = self.usable_client() else {
            let _ = op.reply.send(Err(NamespaceError::Backend(format!(
                "remote volume {:?}: not connected (the server did not answer a reconnect; \
                 trying again at most once a second)",
                self.target.volume
            ))));
            return;
        };
        match client.submit(op.request) {
            Ok(tag) => {
                self.waiting.insert(tag, op.reply);
            }
            Err(e) => {
                let _ = op.reply.send(Err(namespace_error(e)));
            }
        }
    }

    /// The client, reconnected first if a failure closed it.
    fn usable_client(&mut self) -> Option<&mut RemoteVolume> {
        let due = self
            .last_reconnect
            .is_none_or(|t| t.elapsed() >= Duration::from_millis(RECONNECT_INTERVAL_MS));
        if self.client.as_ref().is_none_or(RemoteVolume::is_closed)
            && self.waiting.is_empty()
            && due
        {
            self.client = None;
            self.last_reconnect = Some(Instant::now());
            match connect(&self.target) {
                Ok(c) => {
                    self.counters.reconnects.fetch_add(1, Ordering::Relaxed);
                    tracing::info!(volume = %self.target.volume, "remote volume reconnected");
                    self.client = Some(c);
                }
                Err(e) => {
                    tracing::warn!(volume = %self.target.volume, error = %e, "reconnect failed");
                }
            }
        }
        self.client.as_mut().filter(|c| !c.is_closed())
    }

    /// Drives I/O once and answers what completed; a failure that closed the client fails
    /// everything it held.
    fn complete_some(&mut self) {
        let Some(client) = self.client.as_mut() else {
            return;
        };
        loop {
            match client.poll_completion() {
                Ok(Some((tag, result))) => {
                    if let Some(reply) = self.waiting.remove(&tag) {
                        let _ = reply.send(result.map_err(namespace_error));
                    }
                }
                Ok(None) => return,
                Err(e) => {
                    // Closed: every request it held already completed with the failure and is
                    // drained above on later polls; whatever is left is answered here.
                    let message = e.to_string();
                    for (_, reply) in self.waiting.drain() {
                        let _ = reply.send(Err(NamespaceError::Backend(format!(
                            "remote volume: {message}"
                        ))));
                    }
                    return;
                }
            }
        }
    }

    fn keepalive(&mut self) {
        if let Some(client) = self.client.as_mut()
            && !client.is_closed()
        {
            self.counters.keepalives.fetch_add(1, Ordering::Relaxed);
            if let Err(e) = client.keepalive() {
                tracing::warn!(volume = %self.target.volume, error = %e, "keepalive failed");
            }
        }
    }

    fn detach(mut self) {
        if let Some(client) = self.client.as_mut()
            && !client.is_closed()
            && let Err(e) = client.detach()
        {
            tracing::warn!(volume = %self.target.volume, error = %e, "detach failed");
        }
    }
}
