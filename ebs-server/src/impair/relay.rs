//! The impairment relay over real UDP sockets.
//!
//! ```text
//!  client socket i  <->  front i (127.0.0.1:ephemeral)  ~~ impaired ~~  back i  <->  server path i
//! ```
//!
//! Path `i` is one front socket, which the client aims at instead of the server, and one back
//! socket, which sends to the server's path `i` (so the server sees the back socket as the
//! client's path `i`). A datagram from the server is sent back from the front socket to the last
//! address a client datagram came from on that path.
//!
//! Threads: one receiving thread per socket (2 per path), blocking in `recv_from`, which decide
//! each datagram's fate with the direction's [`Shaper`] and either send it at once (due now and
//! nothing of that direction queued ahead of it) or put it on one timer heap; one timer thread
//! sends what is due and applies the schedule's changes. A heap and one thread rather than a
//! sleep per datagram, so that a delayed datagram on one path never holds up another path, and
//! the timer thread sleeps on a condition variable until `spin_us` before the next deadline,
//! then yields until it: a futex wait alone wakes up to ~100 us late on a busy host.
//!
//! Memory: each direction of each path holds at most `queue_datagrams_max` datagrams and
//! `queue_bytes_max` bytes on the heap; beyond that a datagram is dropped and counted.

use super::schedule::{Event, Schedule, scope_covers};
use super::shaper::{DropCause, Shaper, Verdict};
use super::{PathImpairment, validate};
use parking_lot::{Condvar, Mutex};
use std::cmp::{Ordering as CmpOrdering, Reverse};
use std::collections::BinaryHeap;
use std::io;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use thiserror::Error;

/// Largest UDP payload: a receive buffer this large never truncates.
const DATAGRAM_BYTES_MAX: usize = 65_535;
/// How long a receiving thread blocks before it looks at the stop flag again; shutdown also
/// wakes them with an empty datagram, so this is only the backstop.
const RECV_TIMEOUT_MS: u64 = 50;
/// Longest the timer thread sleeps with nothing queued (the stop and new work also wake it).
const IDLE_WAIT_MS: u64 = 50;
/// Datagrams the timer thread sends per lock of the heap, so receivers are not shut out.
const SEND_BATCH_MAX: usize = 64;

pub const QUEUE_DATAGRAMS_MAX_DEFAULT: usize = 4096;
pub const QUEUE_BYTES_MAX_DEFAULT: usize = 16 << 20;
/// Ceilings of the two caps above: per direction and path, times 2 x 64 paths.
pub const QUEUE_DATAGRAMS_MAX_CEILING: usize = 1 << 16;
pub const QUEUE_BYTES_MAX_CEILING: usize = 256 << 20;
pub const SPIN_US_DEFAULT: u64 = 100;
pub const SPIN_US_MAX: u64 = 10_000;

#[derive(Debug, Error)]
pub enum RelayError {
    #[error("invalid relay config: {0}")]
    Config(String),
    #[error("path {path} does not exist (the relay has {paths})")]
    PathOutOfRange { path: usize, paths: usize },
    #[error("invalid impairment for path {path}: {reason}")]
    Impairment { path: usize, reason: String },
    #[error("relay {what}: {source}")]
    Io {
        what: String,
        #[source]
        source: io::Error,
    },
    #[error("relay thread {0} panicked")]
    ThreadPanicked(String),
}

fn io_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> RelayError {
    let what = what.into();
    move |source| RelayError::Io { what, source }
}

#[derive(Debug, Clone)]
pub struct RelayConfig {
    /// Server address of each path, in path order.
    pub server: Vec<SocketAddr>,
    /// Every random decision comes from this seed (one ChaCha stream per path and direction).
    pub seed: u64,
    /// The paths' impairments at start and their timed changes; one entry per server address.
    pub schedule: Schedule,
    /// Per path and direction: most datagrams waiting for their delivery time.
    pub queue_datagrams_max: usize,
    /// Per path and direction: most bytes waiting for their delivery time.
    pub queue_bytes_max: usize,
    /// The timer thread yields (instead of sleeping) this long before a deadline.
    pub spin_us: u64,
}

impl RelayConfig {
    /// Clean paths to `server`, seed 0, default limits.
    pub fn new(server: Vec<SocketAddr>) -> Self {
        let paths = server.len();
        RelayConfig {
            server,
            seed: 0,
            schedule: Schedule::clean(paths),
            queue_datagrams_max: QUEUE_DATAGRAMS_MAX_DEFAULT,
            queue_bytes_max: QUEUE_BYTES_MAX_DEFAULT,
            spin_us: SPIN_US_DEFAULT,
        }
    }

    /// The addresses of a server whose path `i` listens on `base` port + `i`.
    pub fn consecutive_ports(
        base: SocketAddr,
        paths: usize,
    ) -> Result<Vec<SocketAddr>, RelayError> {
        (0..paths)
            .map(|i| {
                let port = u16::try_from(usize::from(base.port()) + i)
                    .ok()
                    .filter(|_| base.port() != 0)
                    .ok_or_else(|| {
                        RelayError::Config(format!(
                            "base port {} + path {i} is no port",
                            base.port()
                        ))
                    })?;
                Ok(SocketAddr::new(base.ip(), port))
            })
            .collect()
    }

    pub fn validate(&self) -> Result<(), RelayError> {
        let bad = |m: String| Err(RelayError::Config(m));
        if self.schedule.paths() != self.server.len() {
            return bad(format!(
                "the schedule has {} paths, the server {}",
                self.schedule.paths(),
                self.server.len()
            ));
        }
        self.schedule.validate().map_err(RelayError::Config)?;
        if !(1..=QUEUE_DATAGRAMS_MAX_CEILING).contains(&self.queue_datagrams_max) {
            return bad(format!(
                "queue_datagrams_max {} not in 1..={QUEUE_DATAGRAMS_MAX_CEILING}",
                self.queue_datagrams_max
            ));
        }
        if !(DATAGRAM_BYTES_MAX..=QUEUE_BYTES_MAX_CEILING).contains(&self.queue_bytes_max) {
            return bad(format!(
                "queue_bytes_max {} not in {DATAGRAM_BYTES_MAX}..={QUEUE_BYTES_MAX_CEILING}",
                self.queue_bytes_max
            ));
        }
        if self.spin_us > SPIN_US_MAX {
            return bad(format!("spin_us {} over {SPIN_US_MAX}", self.spin_us));
        }
        Ok(())
    }
}

/// Counters of one direction of one path.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DirectionStats {
    pub received: u64,
    /// Sent on (a duplicate counts twice).
    pub forwarded: u64,
    pub dropped_loss: u64,
    pub dropped_black_hole: u64,
    /// The rate-limited link's queue was over `queue_us_max`.
    pub dropped_queue: u64,
    /// The relay's own memory cap (`queue_datagrams_max`, `queue_bytes_max`) was reached.
    pub dropped_overflow: u64,
    /// Towards the client on a path no client datagram has come in on yet: nowhere to send.
    pub dropped_no_peer: u64,
    /// Towards the client, from another address than the server's path: not relayed, and not
    /// in `received` or `dropped()`.
    pub dropped_stranger: u64,
    pub send_errors: u64,
    pub recv_errors: u64,
    pub duplicated: u64,
    pub reordered: u64,
    /// Latest a queued datagram went out after its delivery time, microseconds.
    pub late_us_max: u64,
}

impl DirectionStats {
    /// Every drop of a received datagram: once the direction is idle,
    /// `forwarded + dropped() + send_errors == received + duplicated`.
    pub fn dropped(&self) -> u64 {
        self.dropped_loss
            + self.dropped_black_hole
            + self.dropped_queue
            + self.dropped_overflow
            + self.dropped_no_peer
    }
}

/// Counters of one path, by direction.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PathStats {
    pub to_server: DirectionStats,
    pub to_client: DirectionStats,
}

#[derive(Debug, Default)]
struct Counters {
    received: AtomicU64,
    forwarded: AtomicU64,
    dropped_loss: AtomicU64,
    dropped_black_hole: AtomicU64,
    dropped_queue: AtomicU64,
    dropped_overflow: AtomicU64,
    dropped_no_peer: AtomicU64,
    dropped_stranger: AtomicU64,
    send_errors: AtomicU64,
    recv_errors: AtomicU64,
    duplicated: AtomicU64,
    reordered: AtomicU64,
    late_us_max: AtomicU64,
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

impl Counters {
    fn snapshot(&self) -> DirectionStats {
        let r = |c: &AtomicU64| c.load(Ordering::Relaxed);
        DirectionStats {
            received: r(&self.received),
            forwarded: r(&self.forwarded),
            dropped_loss: r(&self.dropped_loss),
            dropped_black_hole: r(&self.dropped_black_hole),
            dropped_queue: r(&self.dropped_queue),
            dropped_overflow: r(&self.dropped_overflow),
            dropped_no_peer: r(&self.dropped_no_peer),
            dropped_stranger: r(&self.dropped_stranger),
            send_errors: r(&self.send_errors),
            recv_errors: r(&self.recv_errors),
            duplicated: r(&self.duplicated),
            reordered: r(&self.reordered),
            late_us_max: r(&self.late_us_max),
        }
    }
}

/// Index of a direction in `[Direction; 2]`.
const TO_SERVER: usize = 0;
const TO_CLIENT: usize = 1;

#[derive(Debug, Default)]
struct Direction {
    counters: Counters,
    /// What this direction has on the heap, against the caps.
    queued_datagrams: AtomicUsize,
    queued_bytes: AtomicUsize,
}

#[derive(Debug)]
struct Path {
    front: UdpSocket,
    back: UdpSocket,
    server: SocketAddr,
    client: Mutex<Option<SocketAddr>>,
    impairment: Mutex<PathImpairment>,
    dirs: [Direction; 2],
}

impl Path {
    /// Sends towards `dir`'s far end.
    fn send(&self, dir: usize, datagram: &[u8]) {
        let counters = &self.dirs[dir].counters;
        let (socket, to) = if dir == TO_SERVER {
            (&self.back, self.server)
        } else {
            match *self.client.lock() {
                Some(client) => (&self.front, client),
                None => {
                    bump(&counters.dropped_no_peer);
                    return;
                }
            }
        };
        match socket.send_to(datagram, to) {
            Ok(_) => bump(&counters.forwarded),
            Err(_) => bump(&counters.send_errors),
        }
    }
}

/// A datagram waiting for its delivery time.
#[derive(Debug)]
struct Due {
    at_us: u64,
    /// Tie-break in arrival order, so equal times keep FIFO order.
    seq: u64,
    path: usize,
    dir: usize,
    datagram: Vec<u8>,
}

impl PartialEq for Due {
    fn eq(&self, other: &Self) -> bool {
        (self.at_us, self.seq) == (other.at_us, other.seq)
    }
}
impl Eq for Due {}
impl PartialOrd for Due {
    fn partial_cmp(&self, other: &Self) -> Option<CmpOrdering> {
        Some(self.cmp(other))
    }
}
impl Ord for Due {
    fn cmp(&self, other: &Self) -> CmpOrdering {
        (self.at_us, self.seq).cmp(&(other.at_us, other.seq))
    }
}

#[derive(Debug, Default)]
struct Heap {
    due: BinaryHeap<Reverse<Due>>,
    seq: u64,
}

#[derive(Debug)]
struct Shared {
    epoch: Instant,
    stop: AtomicBool,
    paths: Vec<Path>,
    heap: Mutex<Heap>,
    wake: Condvar,
    queue_datagrams_max: usize,
    queue_bytes_max: usize,
    spin_us: u64,
}

impl Shared {
    fn now_us(&self) -> u64 {
        self.epoch.elapsed().as_micros() as u64
    }

    fn set_path(&self, path: usize, imp: PathImpairment) -> Result<(), RelayError> {
        let paths = self.paths.len();
        let p = self
            .paths
            .get(path)
            .ok_or(RelayError::PathOutOfRange { path, paths })?;
        validate(&imp).map_err(|reason| RelayError::Impairment { path, reason })?;
        *p.impairment.lock() = imp;
        Ok(())
    }

    fn stats(&self) -> Vec<PathStats> {
        self.paths
            .iter()
            .map(|p| PathStats {
                to_server: p.dirs[TO_SERVER].counters.snapshot(),
                to_client: p.dirs[TO_CLIENT].counters.snapshot(),
            })
            .collect()
    }

    /// Delivers at `at_us`: at once if due and nothing of this direction is queued ahead
    /// (which keeps the FIFO), else on the heap if the caps allow.
    fn deliver(&self, path: usize, dir: usize, at_us: u64, now_us: u64, datagram: Vec<u8>) {
        let p = &self.paths[path];
        let d = &p.dirs[dir];
        if at_us <= now_us && d.queued_datagrams.load(Ordering::Acquire) == 0 {
            p.send(dir, &datagram);
            return;
        }
        // Only this direction's receiving thread adds to its counts, so load-then-add is exact
        // against the caps (the timer thread only takes away).
        if d.queued_datagrams.load(Ordering::Acquire) >= self.queue_datagrams_max
            || d.queued_bytes.load(Ordering::Acquire) + datagram.len() > self.queue_bytes_max
        {
            bump(&d.counters.dropped_overflow);
            return;
        }
        d.queued_datagrams.fetch_add(1, Ordering::AcqRel);
        d.queued_bytes.fetch_add(datagram.len(), Ordering::AcqRel);
        let mut heap = self.heap.lock();
        heap.seq += 1;
        let seq = heap.seq;
        let earliest = heap.due.peek().is_none_or(|Reverse(top)| at_us < top.at_us);
        heap.due.push(Reverse(Due {
            at_us,
            seq,
            path,
            dir,
            datagram,
        }));
        drop(heap);
        if earliest {
            self.wake.notify_one();
        }
    }
}

/// Changes a running relay's paths from any thread.
#[derive(Debug, Clone)]
pub struct RelayHandle(Arc<Shared>);

impl RelayHandle {
    /// Replaces path `path`'s impairments from now on (datagrams already queued keep their times).
    pub fn set_path(&self, path: usize, imp: PathImpairment) -> Result<(), RelayError> {
        self.0.set_path(path, imp)
    }

    pub fn path(&self, path: usize) -> Option<PathImpairment> {
        self.0.paths.get(path).map(|p| p.impairment.lock().clone())
    }

    pub fn stats(&self) -> Vec<PathStats> {
        self.0.stats()
    }

    /// Microseconds since the relay started: the clock of the schedule.
    pub fn now_us(&self) -> u64 {
        self.0.now_us()
    }
}

/// A running relay. Dropping it stops it.
#[derive(Debug)]
pub struct Relay {
    front_addrs: Vec<SocketAddr>,
    back_addrs: Vec<SocketAddr>,
    handle: RelayHandle,
    threads: Vec<(String, JoinHandle<()>)>,
}

impl Relay {
    /// Binds a front and a back socket per path on ephemeral ports of 127.0.0.1 and starts the
    /// threads. The schedule's clock starts now.
    pub fn start(config: RelayConfig) -> Result<Relay, RelayError> {
        config.validate()?;
        let mut paths = Vec::with_capacity(config.server.len());
        for (i, (&server, imp)) in config
            .server
            .iter()
            .zip(&config.schedule.initial)
            .enumerate()
        {
            let bind = || {
                let s = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))
                    .map_err(io_err(format!("bind path {i}")))?;
                s.set_read_timeout(Some(Duration::from_millis(RECV_TIMEOUT_MS)))
                    .map_err(io_err("set_read_timeout"))?;
                Ok::<_, RelayError>(s)
            };
            paths.push(Path {
                front: bind()?,
                back: bind()?,
                server,
                client: Mutex::new(None),
                impairment: Mutex::new(imp.clone()),
                dirs: Default::default(),
            });
        }
        let addr = |s: &UdpSocket| s.local_addr().map_err(io_err("local_addr"));
        let front_addrs = paths
            .iter()
            .map(|p| addr(&p.front))
            .collect::<Result<_, _>>()?;
        let back_addrs = paths
            .iter()
            .map(|p| addr(&p.back))
            .collect::<Result<_, _>>()?;
        let shared = Arc::new(Shared {
            epoch: Instant::now(),
            stop: AtomicBool::new(false),
            paths,
            heap: Mutex::new(Heap::default()),
            wake: Condvar::new(),
            queue_datagrams_max: config.queue_datagrams_max,
            queue_bytes_max: config.queue_bytes_max,
            spin_us: config.spin_us,
        });
        let mut relay = Relay {
            front_addrs,
            back_addrs,
            handle: RelayHandle(Arc::clone(&shared)),
            threads: Vec::new(),
        };
        // On a failed spawn the relay is dropped, which stops and joins what did start.
        let events = config.schedule.events.clone();
        let s = Arc::clone(&shared);
        relay.spawn("impair-timer".into(), move || timer_loop(&s, events))?;
        for path in 0..shared.paths.len() {
            for dir in [TO_SERVER, TO_CLIENT] {
                let s = Arc::clone(&shared);
                let shaper = Shaper::new(config.seed, path, dir == TO_CLIENT);
                let name = format!("impair-p{path}-{}", ["up", "down"][dir]);
                relay.spawn(name, move || recv_loop(&s, path, dir, shaper))?;
            }
        }
        Ok(relay)
    }

    fn spawn(&mut self, name: String, f: impl FnOnce() + Send + 'static) -> Result<(), RelayError> {
        let t = std::thread::Builder::new()
            .name(name.clone())
            .spawn(f)
            .map_err(io_err(format!("spawn {name}")))?;
        self.threads.push((name, t));
        Ok(())
    }

    /// Where the client sends path `i`: aim a client at these instead of the server.
    pub fn front_addrs(&self) -> &[SocketAddr] {
        &self.front_addrs
    }

    /// Where the server sees path `i` coming from.
    pub fn back_addrs(&self) -> &[SocketAddr] {
        &self.back_addrs
    }

    pub fn handle(&self) -> RelayHandle {
        self.handle.clone()
    }

    pub fn set_path(&self, path: usize, imp: PathImpairment) -> Result<(), RelayError> {
        self.handle.set_path(path, imp)
    }

    pub fn path(&self, path: usize) -> Option<PathImpairment> {
        self.handle.path(path)
    }

    pub fn stats(&self) -> Vec<PathStats> {
        self.handle.stats()
    }

    /// Stops every thread, waits for them and returns the final counts. Datagrams still
    /// queued are dropped.
    pub fn stop(mut self) -> Result<Vec<PathStats>, RelayError> {
        self.shutdown()?;
        Ok(self.stats())
    }

    fn shutdown(&mut self) -> Result<(), RelayError> {
        let shared = &self.handle.0;
        shared.stop.store(true, Ordering::Release);
        {
            // Under the lock, so the timer thread cannot miss it between its check and its wait.
            let _heap = shared.heap.lock();
            shared.wake.notify_all();
        }
        // An empty datagram to each socket ends its blocking receive now rather than at the
        // read timeout; if it cannot be sent the timeout still ends it.
        if let Ok(waker) = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)) {
            for addr in self.front_addrs.iter().chain(&self.back_addrs) {
                let _ = waker.send_to(&[], addr);
            }
        }
        let mut panicked = None;
        for (name, t) in self.threads.drain(..) {
            if t.join().is_err() {
                panicked.get_or_insert(name);
            }
        }
        match panicked {
            Some(name) => Err(RelayError::ThreadPanicked(name)),
            None => Ok(()),
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        if let Err(e) = self.shutdown() {
            tracing::warn!(error = %e, "impairment relay stopped on an error");
        }
    }
}

fn recv_loop(shared: &Shared, path: usize, dir: usize, mut shaper: Shaper) {
    let p = &shared.paths[path];
    let counters = &p.dirs[dir].counters;
    let socket = if dir == TO_SERVER { &p.front } else { &p.back };
    let mut buf = vec![0u8; DATAGRAM_BYTES_MAX];
    while !shared.stop.load(Ordering::Acquire) {
        let (len, from) = match socket.recv_from(&mut buf) {
            Ok(r) => r,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) =>
            {
                continue;
            }
            Err(_) => {
                // An error that is not a timeout (say, a transient ENOBUFS) must not end the
                // path; the pause keeps a persistent one from spinning a core.
                bump(&counters.recv_errors);
                std::thread::sleep(Duration::from_millis(1));
                continue;
            }
        };
        if shared.stop.load(Ordering::Acquire) {
            break;
        }
        if dir == TO_SERVER {
            *p.client.lock() = Some(from);
        } else if from != p.server {
            bump(&counters.dropped_stranger);
            continue;
        }
        bump(&counters.received);
        let now_us = shared.now_us();
        let imp = p.impairment.lock().clone();
        match shaper.decide(&imp, now_us, len) {
            Verdict::Drop(cause) => bump(match cause {
                DropCause::BlackHole => &counters.dropped_black_hole,
                DropCause::Loss => &counters.dropped_loss,
                DropCause::Queue => &counters.dropped_queue,
            }),
            Verdict::Deliver {
                at_us,
                duplicate_at_us,
                reordered,
            } => {
                if reordered {
                    bump(&counters.reordered);
                }
                let datagram = buf[..len].to_vec();
                if let Some(again_us) = duplicate_at_us {
                    debug_assert!(again_us >= at_us);
                    bump(&counters.duplicated);
                    shared.deliver(path, dir, at_us, now_us, datagram.clone());
                    shared.deliver(path, dir, again_us, now_us, datagram);
                } else {
                    shared.deliver(path, dir, at_us, now_us, datagram);
                }
            }
        }
    }
}

fn timer_loop(shared: &Shared, events: Vec<Event>) {
    let mut events = events.into_iter().peekable();
    let mut batch: Vec<Due> = Vec::with_capacity(SEND_BATCH_MAX);
    let mut heap = shared.heap.lock();
    while !shared.stop.load(Ordering::Acquire) {
        let now_us = shared.now_us();
        while let Some(e) = events.next_if(|e| e.at_us <= now_us) {
            apply_event(shared, &e);
        }
        while batch.len() < SEND_BATCH_MAX
            && heap.due.peek().is_some_and(|Reverse(d)| d.at_us <= now_us)
        {
            if let Some(Reverse(d)) = heap.due.pop() {
                batch.push(d);
            }
        }
        if !batch.is_empty() {
            drop(heap);
            for d in batch.drain(..) {
                let p = &shared.paths[d.path];
                let dir = &p.dirs[d.dir];
                p.send(d.dir, &d.datagram);
                // Taken off the counts only once sent, so a receiver that sees zero queued
                // knows nothing of its direction is still ahead of it.
                dir.queued_bytes
                    .fetch_sub(d.datagram.len(), Ordering::AcqRel);
                dir.queued_datagrams.fetch_sub(1, Ordering::AcqRel);
                dir.counters
                    .late_us_max
                    .fetch_max(now_us.saturating_sub(d.at_us), Ordering::Relaxed);
            }
            heap = shared.heap.lock();
            continue;
        }
        let next_us = [
            heap.due.peek().map(|Reverse(d)| d.at_us),
            events.peek().map(|e| e.at_us),
        ]
        .into_iter()
        .flatten()
        .min();
        match next_us {
            None => {
                shared
                    .wake
                    .wait_for(&mut heap, Duration::from_millis(IDLE_WAIT_MS));
            }
            Some(next_us) if next_us > now_us + shared.spin_us => {
                let sleep_us = next_us - now_us - shared.spin_us;
                shared
                    .wake
                    .wait_for(&mut heap, Duration::from_micros(sleep_us));
            }
            Some(_) => {
                drop(heap);
                std::thread::yield_now();
                heap = shared.heap.lock();
            }
        }
    }
}

fn apply_event(shared: &Shared, e: &Event) {
    for (i, p) in shared.paths.iter().enumerate() {
        if scope_covers(e.scope, i) {
            let mut imp = p.impairment.lock();
            let mut next = imp.clone();
            e.change.apply(&mut next);
            // The schedule was validated as a whole at start; a `set_path` since may have left
            // a state this change makes invalid, which is skipped rather than applied.
            match validate(&next) {
                Ok(()) => *imp = next,
                Err(reason) => tracing::warn!(path = i, %reason, "impairment change skipped"),
            }
        }
    }
}
