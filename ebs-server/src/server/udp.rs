//! The volume server over UDP: one socket per path shared by every client connection, a thread
//! that demultiplexes datagrams by the SRD connection id, and a [`Session`] per connection over
//! the shared [`VolumeStore`].
//!
//! Only a HELLO opens a connection (up to `connections_max`, of which at most
//! `handshakes_pending_max` may be half-open): the server looks up the named volume's PSK, answers
//! HELLO_ACK and keys the connection (`srd::handshake`). The same HELLO again gets the same
//! HELLO_ACK (the first was lost); another HELLO for a connection id in use changes nothing. For a
//! volume that does not exist the server answers with a decoy PSK, so a client cannot tell an
//! unknown volume from a wrong credential. Every other datagram must be sealed for a connection
//! the server keyed; unsealed (version 1), unknown-connection and forged datagrams are dropped
//! and counted, and never open, refresh or redirect a connection.
//!
//! The peer's address on path `i` is learned from the first authentic datagram of that connection
//! on socket `i`; later datagrams of that connection from another address on that path are
//! dropped unopened. A connection is confirmed by its first authentic packet; one still half-open
//! after `handshake_timeout_ms`, or one no authentic datagram came from for `idle_timeout_ms`, is
//! dropped with its session, which releases the attached volume: that is how a crashed client's
//! volume becomes attachable again.
//!
//! Session work (the FTL reads and writes) runs on the I/O thread for now: simple, and a slow
//! request delays every connection's I/O. A worker pool is a later step.

use super::Session;
use crate::proto::{MESSAGE_LEN_MAX, READ_BLOCKS_MAX};
use crate::srd::handshake::{self, Hello, Incoming, VersionRefused};
use crate::srd::packet;
use crate::srd::seal::{PSK_LEN, SessionKeys};
use crate::srd::udp::RECV_BUF_LEN;
use crate::srd::wait::{self, ReadyMask};
use crate::srd::{self, Connection};
use crate::volumes::VolumeStore;
use aws_lc_rs::{hmac, rand as lc_rand};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Instant;
use thiserror::Error;

/// Default most client connections at once.
pub const CONNECTIONS_MAX_DEFAULT: usize = 256;
/// Hard ceiling of `connections_max`: each connection holds its transport buffers.
pub const CONNECTIONS_MAX_CEILING: usize = 4096;
/// Default time without a datagram after which a connection and its session are dropped.
pub const IDLE_TIMEOUT_MS_DEFAULT: u64 = 10_000;
/// Default most half-open connections (HELLO answered, no authentic packet yet). Each costs an
/// X25519 agreement and a few hundred bytes; the bound keeps a HELLO flood from filling
/// `connections_max` and locking real clients out for longer than `handshake_timeout_ms`.
pub const HANDSHAKES_PENDING_MAX_DEFAULT: usize = 64;
/// Default time a half-open connection is kept: long enough for a client to resend HELLO a few
/// times over a lossy path.
pub const HANDSHAKE_TIMEOUT_MS_DEFAULT: u64 = 5_000;
/// Datagrams read from one socket per turn, so one busy path cannot starve the others.
const RECV_BATCH_MAX: usize = 256;
/// Longest an idle loop waits on its sockets (srd/wait.rs) when no connection has a timer due
/// sooner: how late a stop, a stats update or an idle connection's expiry may be noticed. A
/// datagram ends the wait at once, a connection's timer when it is due.
const WAIT_US_MAX: u64 = 10_000;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("invalid server config: {0}")]
pub struct ServerConfigError(pub String);

#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// The transport's limits of every connection; `srd.path_count` sockets are bound.
    pub srd: srd::Config,
    pub connections_max: usize,
    pub idle_timeout_ms: u64,
    pub handshakes_pending_max: usize,
    pub handshake_timeout_ms: u64,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            srd: srd::Config::default(),
            connections_max: CONNECTIONS_MAX_DEFAULT,
            idle_timeout_ms: IDLE_TIMEOUT_MS_DEFAULT,
            handshakes_pending_max: HANDSHAKES_PENDING_MAX_DEFAULT,
            handshake_timeout_ms: HANDSHAKE_TIMEOUT_MS_DEFAULT,
        }
    }
}

impl ServerConfig {
    pub fn validate(&self) -> Result<(), ServerConfigError> {
        self.srd
            .validate()
            .map_err(|e| ServerConfigError(e.to_string()))?;
        if !(1..=CONNECTIONS_MAX_CEILING).contains(&self.connections_max) {
            return Err(ServerConfigError(format!(
                "connections_max {} not in 1..={CONNECTIONS_MAX_CEILING}",
                self.connections_max
            )));
        }
        if self.idle_timeout_ms == 0 {
            return Err(ServerConfigError("idle_timeout_ms must be positive".into()));
        }
        // Above connections_max it changes nothing: that bound holds for every connection.
        if !(1..=CONNECTIONS_MAX_CEILING).contains(&self.handshakes_pending_max) {
            return Err(ServerConfigError(format!(
                "handshakes_pending_max {} not in 1..={CONNECTIONS_MAX_CEILING}",
                self.handshakes_pending_max
            )));
        }
        if self.handshake_timeout_ms == 0 {
            return Err(ServerConfigError(
                "handshake_timeout_ms must be positive".into(),
            ));
        }
        // A request is taken from the transport only when all its replies fit in the send queue
        // (a READ has up to READ_BLOCKS_MAX), so no reply is ever refused.
        if self.srd.send_queue_messages_max < READ_BLOCKS_MAX as usize {
            return Err(ServerConfigError(format!(
                "srd.send_queue_messages_max must be at least {READ_BLOCKS_MAX}"
            )));
        }
        if self.srd.message_len_max < MESSAGE_LEN_MAX {
            return Err(ServerConfigError(format!(
                "srd.message_len_max must be at least {MESSAGE_LEN_MAX}"
            )));
        }
        Ok(())
    }
}

/// Counters of the server loop.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServerStats {
    pub datagrams_received: u64,
    pub datagrams_sent: u64,
    /// Not an SRD packet, or a HELLO that does not parse: dropped before any connection saw it.
    pub datagrams_malformed: u64,
    /// A well-formed version-1 (unsealed) packet: this server accepts only sealed connections.
    pub datagrams_unsealed: u64,
    /// A sealed packet naming a connection id the server has not keyed (a client of an earlier
    /// server process, or a forger): dropped unopened.
    pub datagrams_unknown_connection: u64,
    /// Sealed datagrams of a known connection whose tag did not verify.
    pub datagrams_forged: u64,
    /// Authentic datagrams received before, or older than the replay window.
    pub datagrams_replayed: u64,
    /// Sealed datagrams too short for header and tag, or with a length mismatch.
    pub datagrams_truncated: u64,
    pub hellos_received: u64,
    /// HELLOs of another protocol version (an older or newer client): answered with
    /// VERSION_REFUSED, so the client can say what is wrong, and never keyed.
    pub hellos_wrong_version: u64,
    /// The same HELLO again: its HELLO_ACK was sent once more.
    pub hello_acks_resent: u64,
    /// A different HELLO for a connection id in use: ignored, the connection keeps its keys.
    pub hellos_conflicting: u64,
    /// HELLOs naming a volume that does not exist (answered with a decoy PSK).
    pub handshakes_unknown_volume: u64,
    /// Half-open connections dropped after handshake_timeout_ms.
    pub handshakes_expired: u64,
    /// Connections confirmed by an authentic first packet.
    pub handshakes_confirmed: u64,
    /// A known connection's datagram from another address than the one learned for that path.
    pub datagrams_from_stranger: u64,
    /// A reply for a path whose peer address is not known yet, or a failed send: the transport
    /// retransmits it on another path.
    pub send_failures: u64,
    pub connections_opened: u64,
    /// HELLOs refused because `connections_max` connections or `handshakes_pending_max`
    /// half-open ones were open.
    pub connections_refused: u64,
    pub connections_expired: u64,
    pub connections_open: u64,
    pub requests: u64,
}

/// One client connection: its transport state, its session and where its paths lead.
#[derive(Debug)]
struct Client {
    connection: Connection,
    session: Session,
    peer: Vec<Option<SocketAddr>>,
    last_heard_us: u64,
    /// Until the client's first authentic packet: the HELLO answered and the HELLO_ACK sent,
    /// which the same HELLO gets again.
    half_open: Option<HalfOpen>,
}

#[derive(Debug)]
struct HalfOpen {
    hello: Vec<u8>,
    hello_ack: Vec<u8>,
}

/// The PSK offered for a volume that does not exist: an HMAC of its name under a key made at
/// start, so the same name always gets the same decoy and the handshake looks like any other
/// one whose credential is wrong.
struct DecoyPsk(hmac::Key);

impl std::fmt::Debug for DecoyPsk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DecoyPsk(<redacted>)")
    }
}

impl DecoyPsk {
    fn new() -> io::Result<Self> {
        let key = hmac::Key::generate(hmac::HMAC_SHA256, &lc_rand::SystemRandom::new())
            .map_err(|_| io::Error::other("the system random source failed"))?;
        Ok(DecoyPsk(key))
    }

    fn psk(&self, volume: &str) -> [u8; PSK_LEN] {
        let tag = hmac::sign(&self.0, volume.as_bytes());
        let mut out = [0u8; PSK_LEN];
        out.copy_from_slice(&tag.as_ref()[..PSK_LEN]);
        out
    }
}

/// A running server. Dropping it stops it.
#[derive(Debug)]
pub struct EbsServer {
    addrs: Vec<SocketAddr>,
    stop: Arc<AtomicBool>,
    stats: Arc<Mutex<ServerStats>>,
    thread: Option<JoinHandle<io::Result<()>>>,
}

/// Stops a server from another thread.
#[derive(Debug, Clone)]
pub struct StopHandle(Arc<AtomicBool>);

impl StopHandle {
    pub fn stop(&self) {
        self.0.store(true, Ordering::Release);
    }
}

impl EbsServer {
    /// Binds one socket per path (`addrs.len()` must be `config.srd.path_count`; port 0 picks an
    /// ephemeral port) and starts the server thread.
    pub fn start(
        addrs: &[SocketAddr],
        store: Arc<VolumeStore>,
        config: ServerConfig,
    ) -> io::Result<Self> {
        config
            .validate()
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        if addrs.len() != config.srd.path_count {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "{} addresses for {} paths",
                    addrs.len(),
                    config.srd.path_count
                ),
            ));
        }
        let sockets = addrs
            .iter()
            .map(|a| {
                let s = UdpSocket::bind(a)?;
                s.set_nonblocking(true)?;
                Ok(s)
            })
            .collect::<io::Result<Vec<_>>>()?;
        let bound = sockets
            .iter()
            .map(UdpSocket::local_addr)
            .collect::<io::Result<Vec<_>>>()?;
        let stop = Arc::new(AtomicBool::new(false));
        let stats = Arc::new(Mutex::new(ServerStats::default()));
        let mut server_loop = ServerLoop {
            sockets,
            store,
            config,
            clients: HashMap::new(),
            decoy: DecoyPsk::new()?,
            epoch: Instant::now(),
            buf: vec![0; RECV_BUF_LEN],
            ready: None,
            stats: ServerStats::default(),
            shared_stats: Arc::clone(&stats),
        };
        let thread_stop = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("ebs-server".into())
            .spawn(move || server_loop.run(&thread_stop))?;
        Ok(EbsServer {
            addrs: bound,
            stop,
            stats,
            thread: Some(thread),
        })
    }

    /// The bound address of each path, in path order: what a client connects to.
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }

    pub fn stats(&self) -> ServerStats {
        self.stats.lock().clone()
    }

    /// Whether the server thread still runs: false once it ended, on a stop or on an I/O error
    /// (which `stop` then returns), so a supervisor can notice a server that died by itself.
    pub fn is_running(&self) -> bool {
        self.thread.as_ref().is_some_and(|t| !t.is_finished())
    }

    pub fn stop_handle(&self) -> StopHandle {
        StopHandle(Arc::clone(&self.stop))
    }

    /// Stops the thread and waits for it; every connection and session is dropped, which
    /// releases their volumes. Returns the loop's I/O error, if it ended on one.
    pub fn stop(mut self) -> io::Result<ServerStats> {
        self.shutdown()?;
        Ok(self.stats())
    }

    fn shutdown(&mut self) -> io::Result<()> {
        self.stop.store(true, Ordering::Release);
        match self.thread.take() {
            Some(t) => t
                .join()
                .map_err(|_| io::Error::other("ebs-server thread panicked"))?,
            None => Ok(()),
        }
    }
}

impl Drop for EbsServer {
    fn drop(&mut self) {
        if let Err(e) = self.shutdown() {
            tracing::warn!(error = %e, "ebs-server stopped on an error");
        }
    }
}

struct ServerLoop {
    sockets: Vec<UdpSocket>,
    store: Arc<VolumeStore>,
    config: ServerConfig,
    clients: HashMap<u64, Client>,
    decoy: DecoyPsk,
    epoch: Instant,
    buf: Vec<u8>,
    /// The sockets the last wait found readable, for the next receive (None: ask first).
    ready: Option<ReadyMask>,
    stats: ServerStats,
    shared_stats: Arc<Mutex<ServerStats>>,
}

impl ServerLoop {
    fn run(&mut self, stop: &AtomicBool) -> io::Result<()> {
        while !stop.load(Ordering::Acquire) {
            let active = self.turn()?;
            *self.shared_stats.lock() = self.stats.clone();
            if !active {
                self.wait()?;
            }
        }
        Ok(())
    }

    /// Microseconds since the loop started, from the monotonic clock.
    fn now_us(&self) -> u64 {
        self.epoch.elapsed().as_micros() as u64
    }

    fn turn(&mut self) -> io::Result<bool> {
        let mut active = self.receive()?;
        let mut now = self.now_us();
        let send_queue_max = self.config.srd.send_queue_messages_max;
        for client in self.clients.values_mut() {
            if serve(client, &mut self.stats, send_queue_max) {
                active = true;
                // Serving ran the requests (FTL reads and writes): the replies go out now, not
                // when the turn began, and the acknowledgements they carry must say so. An ack
                // delay that left out the serving time would put it into the client's RTT
                // samples, and a reply's send time taken before it into this side's.
                now = self.epoch.elapsed().as_micros() as u64;
            }
            if client
                .connection
                .next_timeout_us()
                .is_some_and(|t| t <= now)
            {
                client.connection.handle_timeout(now);
            }
            while let Some(t) = client.connection.poll_transmit(now) {
                active = true;
                let path = usize::from(t.path_id);
                let Some(to) = client.peer.get(path).copied().flatten() else {
                    self.stats.send_failures += 1;
                    continue;
                };
                match self.sockets[path].send_to(&t.datagram, to) {
                    Ok(_) => self.stats.datagrams_sent += 1,
                    Err(_) => self.stats.send_failures += 1,
                }
            }
        }
        self.expire(now);
        Ok(active)
    }

    /// Reads up to RECV_BATCH_MAX datagrams from each readable socket and hands each to its
    /// connection. The sockets read are those the last wait found readable, or those one poll(2)
    /// finds now (one system call rather than a failing receive per socket); the clock is read
    /// once for the batch, not per datagram.
    fn receive(&mut self) -> io::Result<bool> {
        let ready = match self.ready.take() {
            Some(mask) => mask,
            None => wait::wait_readable(&self.sockets, 0)?,
        };
        let mut active = false;
        let now = self.now_us();
        for path in 0..self.sockets.len() {
            if !wait::is_ready(ready, path) {
                continue;
            }
            for _ in 0..RECV_BATCH_MAX {
                let (len, from) = match self.sockets[path].recv_from(&mut self.buf) {
                    Ok(r) => r,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    // An earlier send to a client that has gone surfaces here on Linux.
                    Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => continue,
                    Err(e) => return Err(e),
                };
                active = true;
                self.stats.datagrams_received += 1;
                match handshake::classify(&self.buf[..len]) {
                    Incoming::Hello => self.on_hello(path, from, len, now)?,
                    Incoming::Sealed { connection_id } => {
                        self.on_sealed(path, from, len, now, connection_id);
                    }
                    Incoming::HelloOtherVersion {
                        version,
                        connection_id,
                    } => {
                        self.stats.hellos_wrong_version += 1;
                        let refused = VersionRefused::of(version, connection_id).encode();
                        self.send_to(path, &refused, from);
                    }
                    Incoming::HelloAck | Incoming::VersionRefused | Incoming::Other => {
                        if packet::parse(&self.buf[..len]).is_ok() {
                            self.stats.datagrams_unsealed += 1;
                        } else {
                            self.stats.datagrams_malformed += 1;
                        }
                    }
                }
            }
        }
        self.stats.connections_open = self.clients.len() as u64;
        Ok(active)
    }

    /// Answers a HELLO (in `self.buf[..len]`, from `from` on socket `path`): keys a new
    /// connection, resends the HELLO_ACK of a repeated HELLO, or drops and counts.
    fn on_hello(
        &mut self,
        path: usize,
        from: SocketAddr,
        len: usize,
        now_us: u64,
    ) -> io::Result<()> {
        self.stats.hellos_received += 1;
        let datagram = self.buf[..len].to_vec();
        let Ok(hello) = Hello::parse(&datagram) else {
            self.stats.datagrams_malformed += 1;
            return Ok(());
        };
        let id = hello.connection_id;
        if let Some(client) = self.clients.get(&id) {
            match &client.half_open {
                Some(h) if h.hello == datagram => {
                    let hello_ack = h.hello_ack.clone();
                    self.stats.hello_acks_resent += 1;
                    self.send_to(path, &hello_ack, from);
                }
                _ => self.stats.hellos_conflicting += 1,
            }
            return Ok(());
        }
        let half_open = self
            .clients
            .values()
            .filter(|c| c.half_open.is_some())
            .count();
        if self.clients.len() >= self.config.connections_max
            || half_open >= self.config.handshakes_pending_max
        {
            self.stats.connections_refused += 1;
            return Ok(());
        }
        let psk = match self.store.psk(&hello.volume) {
            Some(psk) => psk,
            None => {
                self.stats.handshakes_unknown_volume += 1;
                self.decoy.psk(&hello.volume)
            }
        };
        let Ok((keys, hello_ack)) = handshake::respond(&hello, &psk) else {
            // A public key X25519 refuses (all-zero, small order): the HELLO was bad.
            self.stats.datagrams_malformed += 1;
            return Ok(());
        };
        let SessionKeys {
            client_to_server,
            server_to_client,
            ..
        } = keys;
        let mut connection = Connection::new(self.config.srd.clone(), id)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        connection.install_keys(server_to_client, client_to_server);
        self.send_to(path, &hello_ack, from);
        self.clients.insert(
            id,
            Client {
                connection,
                session: Session::keyed_for(Arc::clone(&self.store), hello.volume.clone()),
                peer: vec![None; self.sockets.len()],
                last_heard_us: now_us,
                half_open: Some(HalfOpen {
                    hello: datagram,
                    hello_ack,
                }),
            },
        );
        self.stats.connections_opened += 1;
        tracing::debug!(connection = id, %from, volume = %hello.volume, "handshake answered");
        Ok(())
    }

    /// Hands a sealed datagram (in `self.buf[..len]`) to its connection. Only an authentic one
    /// refreshes the connection, teaches the peer's address on that path, or confirms it.
    fn on_sealed(&mut self, path: usize, from: SocketAddr, len: usize, now_us: u64, id: u64) {
        let Some(client) = self.clients.get_mut(&id) else {
            self.stats.datagrams_unknown_connection += 1;
            return;
        };
        if client.peer[path].is_some_and(|known| known != from) {
            self.stats.datagrams_from_stranger += 1;
            return;
        }
        let before = client.connection.stats().clone();
        client
            .connection
            .handle_datagram(now_us, path as u8, &self.buf[..len]);
        let after = client.connection.stats();
        self.stats.datagrams_forged += after.dropped_forged - before.dropped_forged;
        self.stats.datagrams_replayed += after.dropped_replayed - before.dropped_replayed;
        self.stats.datagrams_truncated += after.dropped_truncated - before.dropped_truncated;
        if after.packets_opened == before.packets_opened {
            return;
        }
        client.last_heard_us = now_us;
        client.peer[path].get_or_insert(from);
        if client.half_open.take().is_some() {
            self.stats.handshakes_confirmed += 1;
            tracing::debug!(connection = id, "handshake confirmed");
        }
    }

    fn send_to(&mut self, path: usize, datagram: &[u8], to: SocketAddr) {
        match self.sockets[path].send_to(datagram, to) {
            Ok(_) => self.stats.datagrams_sent += 1,
            Err(_) => self.stats.send_failures += 1,
        }
    }

    /// Drops the connections no authentic datagram came from for idle_timeout_ms, and the
    /// half-open ones older than handshake_timeout_ms, with their sessions.
    fn expire(&mut self, now_us: u64) {
        let idle_us = self.config.idle_timeout_ms.saturating_mul(1000);
        let handshake_us = self.config.handshake_timeout_ms.saturating_mul(1000);
        let (mut idle, mut half_open) = (0u64, 0u64);
        self.clients.retain(|_, c| {
            let quiet_us = now_us.saturating_sub(c.last_heard_us);
            if c.half_open.is_some() && quiet_us >= handshake_us {
                half_open += 1;
                false
            } else if quiet_us >= idle_us {
                idle += 1;
                false
            } else {
                true
            }
        });
        if idle + half_open > 0 {
            tracing::info!(idle, half_open, "connections dropped");
            self.stats.connections_expired += idle;
            self.stats.handshakes_expired += half_open;
            self.stats.connections_open = self.clients.len() as u64;
        }
    }

    /// Waits on every socket until a datagram arrives or the earliest timer of any connection
    /// is due, at most WAIT_US_MAX; with packets in flight on any connection it spins
    /// `srd.wait_spin_us` first.
    fn wait(&mut self) -> io::Result<()> {
        let next = self
            .clients
            .values()
            .filter_map(|c| c.connection.next_timeout_us())
            .min();
        let timeout_us = wait::timeout_us(self.now_us(), next, WAIT_US_MAX);
        let in_flight = self
            .clients
            .values()
            .any(|c| c.connection.in_flight_packets() > 0);
        let spin_us = if in_flight {
            self.config.srd.wait_spin_us
        } else {
            0
        };
        let epoch = self.epoch;
        self.ready = Some(wait::spin_then_wait(
            &self.sockets,
            timeout_us,
            spin_us,
            || epoch.elapsed().as_micros() as u64,
        )?);
        Ok(())
    }
}

/// Takes delivered requests while their replies fit in the send queue, and queues the replies.
/// Returns whether a request was handled.
fn serve(client: &mut Client, stats: &mut ServerStats, send_queue_max: usize) -> bool {
    let mut served = false;
    let room_needed = READ_BLOCKS_MAX as usize;
    loop {
        let queued = client.connection.unacked_messages();
        if queued + room_needed > send_queue_max {
            // The rest waits in the transport's deliver queue, which pushes back on the client.
            break;
        }
        let Some(delivered) = client.connection.poll_delivered() else {
            break;
        };
        served = true;
        stats.requests += 1;
        for reply in client.session.handle(&delivered.payload) {
            if let Err(e) = client.connection.send_message(reply.encode()) {
                // Not reached: the room was checked above and replies are within
                // message_len_max (ServerConfig::validate). Logged rather than unwrapped.
                tracing::error!(error = %e, "reply refused by the transport");
            }
        }
    }
    served
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_limits_are_checked() {
        assert_eq!(ServerConfig::default().validate(), Ok(()));
        let bad: Vec<fn(&mut ServerConfig)> = vec![
            |c| c.connections_max = 0,
            |c| c.connections_max = CONNECTIONS_MAX_CEILING + 1,
            |c| c.idle_timeout_ms = 0,
            |c| c.handshakes_pending_max = 0,
            |c| c.handshakes_pending_max = CONNECTIONS_MAX_CEILING + 1,
            |c| c.handshake_timeout_ms = 0,
            |c| c.srd.send_queue_messages_max = READ_BLOCKS_MAX as usize - 1,
            |c| c.srd.message_len_max = MESSAGE_LEN_MAX - 1,
            |c| c.srd.path_count = 0,
        ];
        for (i, mutate) in bad.into_iter().enumerate() {
            let mut c = ServerConfig::default();
            mutate(&mut c);
            assert!(c.validate().is_err(), "mutation {i} accepted");
        }
    }
}
