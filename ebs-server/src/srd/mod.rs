//! The SRD-style transport: reliable, unordered, multipath datagrams (docs/ebs-srd.md).
//!
//! ```text
//!  packet.rs      the wire format, and the checked parse of untrusted bytes
//!  config.rs      every limit of a connection, validated once
//!  rtt.rs         smoothed RTT / variance / minimum of one path, the RTO
//!  path.rs        one path: load, health (healthy / suspect), per-path loss detection
//!  congestion.rs  pacing rate and in-flight limit from ACK timing and RTT rise
//!  receiver.rs    reassembly, dedup window, exactly-once delivery
//!  handshake.rs   HELLO / HELLO_ACK: X25519 + PSK, keys a connection before any DATA
//!  replay.rs      the replay window over packet numbers of sealed packets
//!  seal.rs        the v2 key schedule (HKDF over PSK + X25519) and AES-256-GCM per packet
//!  connection.rs  the pure state machine joining them (no sockets, no clock)
//!  sim.rs         a seeded simulated network of impaired paths, for tests
//!  wait.rs        poll(2) on an I/O loop's sockets until a datagram or the next timer
//!  udp.rs         the thin real I/O loop over N UDP sockets on a peer
//! ```

pub mod config;
pub mod congestion;
pub mod connection;
pub mod handshake;
pub mod packet;
pub mod path;
pub mod receiver;
pub mod replay;
pub mod rtt;
pub mod seal;
pub mod sim;
pub mod udp;
pub mod wait;

pub use config::Config;
pub use connection::{Connection, SendError, Stats, Transmit};
pub use receiver::Delivered;
