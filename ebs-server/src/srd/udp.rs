//! The thin real I/O loop: one non-blocking UDP socket per path, feeding received datagrams and
//! the monotonic clock into a [`Connection`] and sending what it returns. Path `i` is local socket
//! `i` talking to the peer's socket `i`, so each path is one (source port, destination port)
//! pair, which is what ECMP hashes on. Everything protocol-related stays in the state machine.

use super::packet::{DATAGRAM_LEN_MAX, TRAILER_LEN};
use super::seal::TAG_LEN;
use super::wait::{self, ReadyMask};
use super::{Config, Connection, Delivered};
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::time::Instant;

/// The receive buffer: the largest datagram a connection sends (sealing replaces the 4-byte CRC
/// trailer by the 16-byte tag), plus one byte so that a longer one shows as too long instead of
/// being cut to a length that might parse.
pub const RECV_BUF_LEN: usize = DATAGRAM_LEN_MAX - TRAILER_LEN + TAG_LEN + 1;

/// Counters of the I/O loop (the protocol's own are in `Connection::stats`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IoStats {
    pub datagrams_received: u64,
    pub datagrams_sent: u64,
    /// From an address that is not the peer's socket for that path: dropped unread.
    pub datagrams_from_stranger: u64,
    /// The socket buffer was full or the send failed: dropped, the protocol retransmits.
    pub send_failures: u64,
}

#[derive(Debug)]
pub struct UdpEndpoint {
    sockets: Vec<UdpSocket>,
    peer: Vec<SocketAddr>,
    connection: Connection,
    epoch: Instant,
    buf: Vec<u8>,
    /// The sockets the last wait found readable, for the next turn to read (None: ask first).
    ready: Option<ReadyMask>,
    /// `Config::wait_spin_us`.
    wait_spin_us: u64,
    pub stats: IoStats,
}

impl UdpEndpoint {
    /// Binds `config.path_count` sockets on ephemeral ports of 127.0.0.1.
    pub fn bind_loopback(config: Config, connection_id: u64) -> io::Result<Self> {
        Self::bind_on(config, connection_id, IpAddr::V4(Ipv4Addr::LOCALHOST))
    }

    /// Binds `config.path_count` sockets on ephemeral ports from which `peer` is reachable: the
    /// loopback address for a peer on loopback (nothing else can then send to them), else the
    /// unspecified address of the peer's family, so the routing table picks the interface and
    /// source address as it would for any client. A peer of mixed families is refused.
    pub fn bind_for_peer(
        config: Config,
        connection_id: u64,
        peer: &[SocketAddr],
    ) -> io::Result<Self> {
        let Some(first) = peer.first() else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "no peer address to bind for",
            ));
        };
        if peer.iter().any(|a| a.is_ipv4() != first.is_ipv4()) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "the peer's addresses mix IPv4 and IPv6",
            ));
        }
        let local = match first.ip() {
            ip if peer.iter().all(|a| a.ip().is_loopback()) => ip,
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        };
        Self::bind_on(config, connection_id, local)
    }

    fn bind_on(config: Config, connection_id: u64, local: IpAddr) -> io::Result<Self> {
        let path_count = config.path_count;
        let wait_spin_us = config.wait_spin_us;
        let connection = Connection::new(config, connection_id)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let sockets = (0..path_count)
            .map(|_| {
                let socket = UdpSocket::bind((local, 0))?;
                socket.set_nonblocking(true)?;
                Ok(socket)
            })
            .collect::<io::Result<Vec<_>>>()?;
        Ok(UdpEndpoint {
            sockets,
            peer: Vec::new(),
            connection,
            epoch: Instant::now(),
            buf: vec![0; RECV_BUF_LEN],
            ready: None,
            wait_spin_us,
            stats: IoStats::default(),
        })
    }

    pub fn local_addrs(&self) -> io::Result<Vec<SocketAddr>> {
        self.sockets.iter().map(UdpSocket::local_addr).collect()
    }

    /// Sets the peer's sockets, one per path, in path order, and connects each socket to its
    /// peer socket: the kernel then keeps the route (no lookup per datagram sent) and drops
    /// datagrams from any other address before they are read.
    pub fn connect(&mut self, peer: Vec<SocketAddr>) -> io::Result<()> {
        if peer.len() != self.sockets.len() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "{} peer addresses for {} paths",
                    peer.len(),
                    self.sockets.len()
                ),
            ));
        }
        for (socket, to) in self.sockets.iter().zip(&peer) {
            socket.connect(to)?;
        }
        self.peer = peer;
        Ok(())
    }

    pub fn connection(&self) -> &Connection {
        &self.connection
    }

    pub fn connection_mut(&mut self) -> &mut Connection {
        &mut self.connection
    }

    /// Microseconds since this endpoint was made, from the monotonic clock: the only clock read.
    pub fn now_us(&self) -> u64 {
        self.epoch.elapsed().as_micros() as u64
    }

    /// Sends a datagram outside the connection (a HELLO) on path `path`.
    pub fn send_raw(&mut self, path: usize, datagram: &[u8]) -> io::Result<()> {
        let (Some(socket), Some(&to)) = (self.sockets.get(path), self.peer.get(path)) else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("no path {path} (connect first)"),
            ));
        };
        debug_assert_eq!(socket.peer_addr().ok(), Some(to));
        socket.send(datagram)?;
        self.stats.datagrams_sent += 1;
        Ok(())
    }

    /// Takes one waiting datagram from the peer off any socket, without handing it to the
    /// connection (a HELLO_ACK): its path and bytes, or None if nothing is waiting.
    pub fn recv_raw(&mut self) -> io::Result<Option<(usize, Vec<u8>)>> {
        for path in 0..self.sockets.len() {
            loop {
                match self.sockets[path].recv_from(&mut self.buf) {
                    Ok((len, from)) => {
                        self.stats.datagrams_received += 1;
                        if self.peer.get(path) != Some(&from) {
                            self.stats.datagrams_from_stranger += 1;
                            continue;
                        }
                        return Ok(Some((path, self.buf[..len].to_vec())));
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => break,
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(None)
    }

    pub fn poll_delivered(&mut self) -> Option<Delivered> {
        self.connection.poll_delivered()
    }

    /// One turn of the loop: read every waiting datagram, run the timers that are due, send
    /// everything the connection has. Returns whether anything was received or sent.
    ///
    /// Only the sockets the last wait found readable are read (or, without a wait before, those
    /// one poll(2) finds readable: one system call instead of a failing receive per path). The
    /// clock is read once for the received batch and once for the timers and sends, not per
    /// datagram.
    pub fn turn(&mut self) -> io::Result<bool> {
        let ready = match self.ready.take() {
            Some(mask) => mask,
            None => wait::wait_readable(&self.sockets, 0)?,
        };
        let mut active = false;
        let received_us = self.now_us();
        for path in 0..self.sockets.len() {
            if !wait::is_ready(ready, path) {
                continue;
            }
            loop {
                match self.sockets[path].recv_from(&mut self.buf) {
                    Ok((len, from)) => {
                        active = true;
                        self.stats.datagrams_received += 1;
                        if self.peer.get(path) != Some(&from) {
                            self.stats.datagrams_from_stranger += 1;
                            continue;
                        }
                        self.connection
                            .handle_datagram(received_us, path as u8, &self.buf[..len]);
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    // A refused earlier send (the peer's port closed) surfaces here on Linux; it
                    // is not this socket's failure.
                    Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => break,
                    Err(e) => return Err(e),
                }
            }
        }
        let now = self.now_us();
        if self.connection.next_timeout_us().is_some_and(|t| t <= now) {
            self.connection.handle_timeout(now);
        }
        while let Some(t) = self.connection.poll_transmit(now) {
            active = true;
            let Some(socket) = self.sockets.get(usize::from(t.path_id)) else {
                self.stats.send_failures += 1;
                continue;
            };
            // Connected to the peer's socket of this path (`connect`).
            match socket.send(&t.datagram) {
                Ok(_) => self.stats.datagrams_sent += 1,
                Err(_) => self.stats.send_failures += 1,
            }
        }
        Ok(active)
    }

    /// Waits while idle: until a datagram arrives on any path or the connection's next timer is
    /// due, at most `wait_us_max` (the caller's own deadlines); returns at once if a timer is
    /// already due. With packets in flight it spins `Config::wait_spin_us` before it blocks.
    /// The next `turn` reads only the sockets found readable.
    pub fn wait(&mut self, wait_us_max: u64) -> io::Result<()> {
        let timeout_us = wait::timeout_us(
            self.now_us(),
            self.connection.next_timeout_us(),
            wait_us_max,
        );
        let spin_us = if self.connection.in_flight_packets() > 0 {
            self.wait_spin_us
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

    /// Waits up to `timeout_us` for a datagram on any path, whatever the connection's timers
    /// (the handshake, before the connection is keyed).
    pub fn wait_for_datagram(&mut self, timeout_us: u64) -> io::Result<()> {
        self.ready = Some(wait::wait_readable(&self.sockets, timeout_us)?);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(path_count: usize) -> Config {
        Config {
            path_count,
            ..Config::default()
        }
    }

    #[test]
    fn a_loopback_peer_gets_loopback_sockets_and_a_remote_one_the_unspecified_address() {
        let on = |peer: Vec<SocketAddr>| {
            let e = UdpEndpoint::bind_for_peer(config(peer.len()), 1, &peer).expect("bind");
            let addrs = e.local_addrs().expect("addrs");
            assert_eq!(addrs.len(), peer.len());
            assert!(addrs.iter().all(|a| a.port() != 0));
            addrs[0].ip()
        };
        let lo: SocketAddr = "127.0.0.1:4000".parse().expect("addr");
        assert_eq!(on(vec![lo, lo]), IpAddr::V4(Ipv4Addr::LOCALHOST));
        let remote: SocketAddr = "10.1.2.3:4000".parse().expect("addr");
        assert_eq!(on(vec![remote, remote]), IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        // One path elsewhere than loopback: the sockets must reach it.
        assert_eq!(on(vec![lo, remote]), IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    }

    #[test]
    fn mixed_families_and_no_peer_are_refused() {
        let v4: SocketAddr = "10.1.2.3:4000".parse().expect("addr");
        let v6: SocketAddr = "[fd00::1]:4000".parse().expect("addr");
        let e = UdpEndpoint::bind_for_peer(config(2), 1, &[v4, v6]).unwrap_err();
        assert!(e.to_string().contains("mix IPv4 and IPv6"), "{e}");
        let e = UdpEndpoint::bind_for_peer(config(1), 1, &[]).unwrap_err();
        assert!(e.to_string().contains("no peer"), "{e}");
    }
}
