//! The client side of remote volumes (docs/ebs-protocol.md, "Client").
//!
//! ```text
//!  order.rs    the ordering rules: which outstanding requests may be sent
//!  remote.rs   RemoteVolume: a blocking client of one volume over the SRD transport
//!  error.rs    what a client call fails with
//! ```

mod error;
mod order;
mod remote;

pub use error::ClientError;
pub use order::{Access, Scheduler};
pub use remote::{
    AttachInfo, ClientConfig, ClientStats, Completion, QUEUE_DEPTH_CEILING, QUEUE_DEPTH_DEFAULT,
    REQUEST_TIMEOUT_MS_DEFAULT, RemoteVolume,
};
