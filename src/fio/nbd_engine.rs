//! `ioengine=nbd`: jobs drive an NBD export through `nvme_target::nbd::NbdClient`, addressed by
//! fio's `uri=` option in libnbd's forms (`nbd+unix:///EXPORT?socket=PATH`,
//! `nbd://HOST[:PORT]/EXPORT`).
//!
//! The client is synchronous, and the runner emulates iodepth with one thread per I/O in flight,
//! so the target keeps a pool of connections: a worker takes an idle one (or opens a new one),
//! does its I/O and puts it back. The pool grows to the number of I/Os in flight at once. With a
//! server that does not offer CAN_MULTI_CONN, a sync flushes every idle connection.

use std::sync::Mutex;

use nvme_target::nbd::uri::parse_uri;
use nvme_target::nbd::{NbdAddress, NbdClient, NbdError};

use super::engine::IoTarget;
use super::error::JobError;
use super::jobs::Job;

#[derive(Debug)]
pub struct NbdTarget {
    address: NbdAddress,
    export: String,
    size_bytes: u64,
    granularity_bytes: u64,
    multi_conn: bool,
    idle: Mutex<Vec<NbdClient>>,
}

impl NbdTarget {
    /// Connects once to learn the export's size and constraints (that connection is pooled).
    pub fn open(job: &Job) -> Result<Self, JobError> {
        let Some(uri) = &job.options.uri else {
            return Err(job.error(
                "ioengine",
                "ioengine=nbd needs uri= (nbd+unix:///EXPORT?socket=PATH or \
                 nbd://HOST:PORT/EXPORT)",
            ));
        };
        let (address, export) = parse_uri(uri).map_err(|e| job.error("uri", e))?;
        let client = NbdClient::connect(&address, &export)
            .map_err(|e| job.error("uri", format!("connecting to {uri}: {e}")))?;
        let writes = super::engine::writes(job.options.rw) && !job.options.verify_only;
        if writes && client.read_only() {
            return Err(job.error("rw", format!("the export of {uri} is read-only")));
        }
        Ok(Self {
            address,
            export,
            size_bytes: client.size_bytes(),
            granularity_bytes: u64::from(client.min_block_bytes()),
            multi_conn: client.can_multi_conn(),
            idle: Mutex::new(vec![client]),
        })
    }

    /// Runs `f` on an idle connection (or a new one) and returns the connection to the pool
    /// unless it broke.
    fn with_client<T>(
        &self,
        f: impl FnOnce(&mut NbdClient) -> Result<T, NbdError>,
    ) -> Result<T, String> {
        let pooled = self.idle.lock().map_err(|_| "pool poisoned")?.pop();
        let mut client = match pooled {
            Some(c) => c,
            None => NbdClient::connect(&self.address, &self.export)
                .map_err(|e| format!("opening another NBD connection: {e}"))?,
        };
        let result = f(&mut client);
        // A server error leaves the connection in step; anything else (I/O, protocol) may not.
        if matches!(result, Ok(_) | Err(NbdError::Server { .. })) {
            self.idle.lock().map_err(|_| "pool poisoned")?.push(client);
        }
        result.map_err(|e| e.to_string())
    }
}

impl IoTarget for NbdTarget {
    fn size_bytes(&self) -> u64 {
        self.size_bytes
    }
    fn granularity_bytes(&self) -> u64 {
        self.granularity_bytes.max(1)
    }
    fn keeps_data(&self) -> bool {
        true
    }
    fn read(&self, offset: u64, buf: &mut [u8]) -> Result<(), String> {
        self.with_client(|c| c.read(offset, buf))
    }
    fn write(&self, offset: u64, data: &[u8]) -> Result<(), String> {
        self.with_client(|c| c.write(offset, data, false))
    }
    fn trim(&self, offset: u64, len: u64) -> Result<(), String> {
        self.with_client(|c| c.trim(offset, len))
    }
    fn sync(&self) -> Result<(), String> {
        if self.multi_conn {
            return self.with_client(NbdClient::flush);
        }
        let mut idle = self.idle.lock().map_err(|_| "pool poisoned")?;
        for c in idle.iter_mut() {
            c.flush().map_err(|e| e.to_string())?;
        }
        Ok(())
    }
    fn finish(&self) -> Result<(), String> {
        let mut idle = self.idle.lock().map_err(|_| "pool poisoned")?;
        for c in idle.drain(..) {
            c.disconnect().map_err(|e| e.to_string())?;
        }
        Ok(())
    }
}
