//! The volume server's protocol side.
//!
//! ```text
//!  session.rs   one client's session: block-protocol bytes in, replies out
//!  udp.rs       the server over UDP: sockets per path, connections demultiplexed by id, idle expiry
//! ```

mod session;
mod udp;

pub use session::{Session, SessionCounters};
pub use udp::{
    CONNECTIONS_MAX_CEILING, CONNECTIONS_MAX_DEFAULT, EbsServer, HANDSHAKE_TIMEOUT_MS_DEFAULT,
    HANDSHAKES_PENDING_MAX_DEFAULT, IDLE_TIMEOUT_MS_DEFAULT, ServerConfig, ServerConfigError,
    ServerStats, StopHandle,
};
