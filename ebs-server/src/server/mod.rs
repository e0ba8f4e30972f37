//! The volume server's protocol side.
//!
//! ```text
//!  session.rs   one client's session: block-protocol bytes in, replies out
//! ```

mod session;

pub use session::{Session, SessionCounters};
