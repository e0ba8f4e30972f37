//! NVMe-style namespaces over the FTL, served to virtual machines as a vhost-user-blk backend.
//!
//! ```text
//!  nbd/             transport: NBD export (a thread per connection) and an NBD client
//!  vhost/           transport: vhost-user-blk on rust-vmm (one worker thread per virtqueue)
//!   |- request.rs   parses a guest's descriptor chain (hostile input) into a Command
//!   |- worker.rs    per-queue loop: pop, execute, status, used ring, notify, adaptive polling
//!   |- backend.rs   VhostUserBackend: features, config space, memory (control plane)
//!   `- daemon.rs    socket, accept, serve, reconnect, stop
//!  queue.rs         I/O queue pair: sector commands -> whole blocks, read-modify-write
//!  controller.rs    namespaces, identity, Identify data, SMART/health log (control plane)
//!  namespace.rs     the Namespace trait (whole blocks); ftl_backend.rs: the local FTL backend
//!  block_locks.rs   striped block locks for read-modify-write
//!  power_on.rs      power-on time (earlier runs + this one) for the health log
//!  identify.rs, smart.rs, status.rs: NVMe data structures and statuses
//!  socket.rs        unix listeners whose path appears only once they listen
//! ```

#![forbid(unsafe_code)]

mod block_locks;
pub mod controller;
pub mod ftl_backend;
pub mod identify;
pub mod namespace;
pub mod nbd;
pub mod power_on;
pub mod queue;
pub mod remote_backend;
pub mod smart;
pub mod socket;
pub mod status;
pub mod vhost;

pub use controller::{ActiveNamespace, Controller, NamespaceIdentity};
pub use ftl_backend::{FlushError, FlushLog, FtlNamespace};
pub use namespace::{BackendHealth, Namespace, NamespaceError};
pub use power_on::PowerOnClock;
pub use queue::{Command, IoQueue, SECTOR_BYTES};
pub use remote_backend::{RemoteNamespace, RemoteTarget};
pub use status::Status;
