//! `RemoteVolume`: a blocking client of one volume on an `EbsServer`, over a `UdpEndpoint` on
//! 127.0.0.1 (the only place tests send traffic).
//!
//! Two ways to use it: the blocking calls (`attach`, `read`, `write`, ...), each of which may
//! put several requests in flight at once (a write of N blocks is N WRITEs), and `submit` /
//! `wait` / `wait_any` to keep many requests outstanding (queue depth), which is what a block
//! device front end does. Either way the ordering rules of `order.rs` hold.
//!
//! Every request released to the transport must be answered within `request_timeout_ms`; the
//! first that is not fails with `ClientError::Timeout`, every other outstanding request fails
//! with it too, and the client is closed: what the server applied is unknown, so no later
//! request could be ordered after it safely.

use super::error::ClientError;
use super::order::{Access, Scheduler};
use crate::proto::{
    ATTACH_CREDENTIAL_MAX, BLOCK_BYTES, BLOCK_SEAL_BYTES, Body, MESSAGE_LEN_MAX, Message,
    READ_BLOCKS_MAX, Reply, Request, TRIM_BLOCKS_MAX,
};
use crate::srd;
use crate::srd::handshake::{ClientHandshake, HelloAck, Incoming, VersionRefused, classify};
use crate::srd::seal::{SessionKeys, psk_of};
use crate::srd::udp::UdpEndpoint;
use aws_lc_rs::rand::{self as lc_rand, SecureRandom};
use keys::{Backend, BlockSealer, Kek, KeyError, WrappedKey};
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Default time a request may go unanswered.
pub const REQUEST_TIMEOUT_MS_DEFAULT: u64 = 5_000;
/// Default most requests outstanding (submitted and not yet collected).
pub const QUEUE_DEPTH_DEFAULT: usize = 64;
/// Ceiling of `queue_depth_max`: the ordering scan is quadratic in it.
pub const QUEUE_DEPTH_CEILING: usize = 1024;
/// The first wait for HELLO_ACK before HELLO is sent again: a few loopback RTTs.
const HELLO_RESEND_MS_FIRST: u64 = 50;
/// The longest wait between HELLOs.
const HELLO_RESEND_MS_MAX: u64 = 800;
/// Longest a blocking call (`wait`, `wait_any`, a full `submit`) waits on the sockets before it
/// looks at its request timers again: the transport's own timers end a wait sooner, a datagram
/// at once. It only bounds how late a request timeout (milliseconds) is noticed.
const WAIT_US_MAX: u64 = 1_000;

#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// The transport's limits; `srd.path_count` must match the server's.
    pub srd: srd::Config,
    pub request_timeout_ms: u64,
    pub queue_depth_max: usize,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            srd: srd::Config::default(),
            request_timeout_ms: REQUEST_TIMEOUT_MS_DEFAULT,
            queue_depth_max: QUEUE_DEPTH_DEFAULT,
        }
    }
}

impl ClientConfig {
    pub fn validate(&self) -> Result<(), ClientError> {
        self.srd
            .validate()
            .map_err(|e| ClientError::Config(e.to_string()))?;
        if self.request_timeout_ms == 0 {
            return Err(ClientError::Config(
                "request_timeout_ms must be positive".into(),
            ));
        }
        if !(1..=QUEUE_DEPTH_CEILING).contains(&self.queue_depth_max)
            || self.queue_depth_max > self.srd.send_queue_messages_max
        {
            return Err(ClientError::Config(format!(
                "queue_depth_max must be in 1..={QUEUE_DEPTH_CEILING} and at most srd.send_queue_messages_max"
            )));
        }
        if self.srd.message_len_max < MESSAGE_LEN_MAX {
            return Err(ClientError::Config(format!(
                "srd.message_len_max must be at least {MESSAGE_LEN_MAX}"
            )));
        }
        Ok(())
    }
}

/// What ATTACH returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttachInfo {
    pub volume_id: u64,
    pub blocks: u64,
    pub multi_attach: bool,
    /// The volume's data key wrapped by the client's key-encryption key (empty: none).
    pub wrapped_key: Vec<u8>,
}

/// A request's successful result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Completion {
    Done,
    Attached(AttachInfo),
    /// A READ's blocks, in address order.
    Data(Vec<u8>),
}

/// A request that finished: its tag and its result.
pub type Finished = (u64, Result<Completion, ClientError>);

/// Counters of one client.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientStats {
    pub requests_sent: u64,
    pub replies: u64,
    /// Replies that do not parse, name no outstanding request or do not fit it: dropped.
    pub replies_unexpected: u64,
}

#[derive(Debug)]
struct ReadState {
    lba: u64,
    data: Vec<u8>,
    got: Vec<bool>,
    missing: usize,
}

impl ReadState {
    /// The index of block `lba` in this read, if it is one the read still waits for.
    fn index_of(&self, lba: u64) -> Option<usize> {
        lba.checked_sub(self.lba)
            .and_then(|i| usize::try_from(i).ok())
            .filter(|&i| i < self.got.len() && !self.got[i])
    }
}

#[derive(Debug)]
struct Pending {
    /// The encoded request until it is handed to the transport.
    bytes: Vec<u8>,
    is_attach: bool,
    read: Option<ReadState>,
    released_at: Option<Instant>,
}

#[derive(Debug)]
pub struct RemoteVolume {
    endpoint: UdpEndpoint,
    /// Seals blocks before they leave and opens them on return, for a volume with a wrapped
    /// data key (envelope encryption); None for a volume in the clear.
    sealer: Option<BlockSealer>,
    config: ClientConfig,
    scheduler: Scheduler,
    /// Released requests the transport's send queue had no room for yet, oldest first.
    to_send: VecDeque<u64>,
    pending: HashMap<u64, Pending>,
    done: HashMap<u64, Result<Completion, ClientError>>,
    next_request_id: u64,
    attached: Option<AttachInfo>,
    closed: bool,
    stats: ClientStats,
}

impl RemoteVolume {
    /// Binds one socket per path on 127.0.0.1 and aims path `i` at `server[i]`; runs the
    /// handshake for `volume` with `credential` (which keys every later packet and proves both
    /// sides know the credential), announces every path so the server can answer on all of them,
    /// and attaches the volume.
    ///
    /// A wrong credential and a volume that does not exist give the same
    /// `ClientError::Handshake(BadConfirm)` (the server does not tell which); no answer within
    /// `request_timeout_ms` gives `ClientError::NoHandshake`; a refused ATTACH (the volume is
    /// attached elsewhere) gives its `ClientError::Server` status.
    ///
    /// `kek`: a volume created with a wrapped data key is sealed by its client, and needs the
    /// key-encryption key that unwraps it; every block is then sealed before it is sent and
    /// opened when it comes back (docs/ebs-protocol.md, "Envelope encryption"). A volume without
    /// one is in the clear and takes no KEK. Either mismatch is `ClientError::Envelope`.
    pub fn connect(
        server: &[SocketAddr],
        volume: &str,
        credential: &[u8],
        kek: Option<&Kek>,
        config: ClientConfig,
    ) -> Result<Self, ClientError> {
        config.validate()?;
        if !(1..=ATTACH_CREDENTIAL_MAX).contains(&credential.len()) {
            return Err(ClientError::InvalidArgument(format!(
                "credential of {} bytes (1..={ATTACH_CREDENTIAL_MAX})",
                credential.len()
            )));
        }
        let id = connection_id()?;
        let mut endpoint = UdpEndpoint::bind_for_peer(config.srd.clone(), id, server)?;
        endpoint.connect(server.to_vec())?;
        let SessionKeys {
            client_to_server,
            server_to_client,
            ..
        } = handshake(
            &mut endpoint,
            id,
            volume,
            credential,
            config.srd.path_count,
            config.request_timeout_ms,
        )?;
        endpoint
            .connection_mut()
            .install_keys(client_to_server, server_to_client);
        let now = endpoint.now_us();
        endpoint.connection_mut().announce_paths(now);
        let mut client = RemoteVolume {
            endpoint,
            sealer: None,
            config,
            scheduler: Scheduler::default(),
            to_send: VecDeque::new(),
            pending: HashMap::new(),
            done: HashMap::new(),
            next_request_id: 1,
            attached: None,
            closed: false,
            stats: ClientStats::default(),
        };
        let info = client.attach(volume, credential)?;
        client.sealer = envelope(volume, &info, kek)?;
        Ok(client)
    }

    /// Whether this client seals the volume's blocks (a volume with a wrapped data key).
    pub fn is_sealed(&self) -> bool {
        self.sealer.is_some()
    }

    pub fn attached(&self) -> Option<&AttachInfo> {
        self.attached.as_ref()
    }

    pub fn stats(&self) -> &ClientStats {
        &self.stats
    }

    pub fn transport_stats(&self) -> &srd::Stats {
        self.endpoint.connection().stats()
    }

    /// The transport's paths: health, RTT estimate and counters of each.
    pub fn transport_paths(&self) -> &[srd::path::Path] {
        self.endpoint.connection().paths()
    }

    /// Submits one request; returns its tag for `wait`. Waits (driving I/O) while
    /// `queue_depth_max` requests are outstanding.
    pub fn submit(&mut self, request: Request) -> Result<u64, ClientError> {
        if self.closed {
            return Err(ClientError::Closed);
        }
        let access = access_of(&request)?;
        let request = self.seal_write(request)?;
        while self.pending.len() + self.done.len() >= self.config.queue_depth_max {
            if self.pending.is_empty() {
                return Err(ClientError::InvalidArgument(format!(
                    "{} completions not collected (queue_depth_max {})",
                    self.done.len(),
                    self.config.queue_depth_max
                )));
            }
            self.pump(WAIT_US_MAX)?;
        }
        let tag = self.next_request_id;
        self.next_request_id += 1;
        let read = match request {
            Request::Read { lba, blocks } => Some(ReadState {
                lba,
                data: vec![0; blocks as usize * BLOCK_BYTES],
                got: vec![false; blocks as usize],
                missing: blocks as usize,
            }),
            _ => None,
        };
        let is_attach = matches!(request, Request::Attach { .. });
        self.pending.insert(
            tag,
            Pending {
                bytes: Message::request(tag, request).encode(),
                is_attach,
                read,
                released_at: None,
            },
        );
        self.scheduler.push(tag, access);
        self.release();
        Ok(tag)
    }

    /// Waits for one request's result.
    pub fn wait(&mut self, tag: u64) -> Result<Completion, ClientError> {
        loop {
            if let Some(result) = self.done.remove(&tag) {
                return result;
            }
            if !self.pending.contains_key(&tag) {
                return Err(ClientError::InvalidArgument(format!(
                    "request {tag} is not outstanding"
                )));
            }
            self.pump(WAIT_US_MAX)?;
        }
    }

    /// Waits for whichever outstanding request completes first.
    pub fn wait_any(&mut self) -> Result<(u64, Result<Completion, ClientError>), ClientError> {
        loop {
            if let Some(&tag) = self.done.keys().next()
                && let Some(result) = self.done.remove(&tag)
            {
                return Ok((tag, result));
            }
            if self.pending.is_empty() {
                return Err(ClientError::InvalidArgument(
                    "no request outstanding".into(),
                ));
            }
            self.pump(WAIT_US_MAX)?;
        }
    }

    /// Whichever outstanding request has completed, after at most one turn of I/O: for an I/O
    /// loop that also waits on other things (a backend thread taking requests from a channel).
    /// None when nothing completed yet (or nothing is outstanding). It does not block on the
    /// sockets (the caller's channel could not wake it); an idle turn yields the CPU instead.
    pub fn poll_completion(&mut self) -> Result<Option<Finished>, ClientError> {
        if self.done.is_empty() && !self.pending.is_empty() {
            self.pump(0)?;
        }
        let Some(&tag) = self.done.keys().next() else {
            return Ok(None);
        };
        Ok(self.done.remove(&tag).map(|result| (tag, result)))
    }

    /// Keeps an idle connection alive: the server drops a connection it has heard nothing
    /// authentic from for its idle timeout (10 s by default), and with it the attachment. Call
    /// this every few seconds while no request is outstanding; it probes every path (which also
    /// tells which paths work) and runs one turn of I/O for the answers.
    pub fn keepalive(&mut self) -> Result<(), ClientError> {
        if self.closed {
            return Err(ClientError::Closed);
        }
        let now = self.endpoint.now_us();
        self.endpoint.connection_mut().announce_paths(now);
        self.pump(0)
    }

    /// Whether an earlier failure closed this client: every later request fails with Closed, and
    /// only a new connection can go on.
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// ATTACH; the handshake's volume is the only one the server lets this connection attach.
    fn attach(&mut self, volume: &str, credential: &[u8]) -> Result<AttachInfo, ClientError> {
        let tag = self.submit(Request::Attach {
            volume: volume.into(),
            credential: credential.to_vec(),
        })?;
        match self.wait(tag)? {
            Completion::Attached(info) => Ok(info),
            other => Err(ClientError::Protocol(format!(
                "ATTACH answered with {other:?}"
            ))),
        }
    }

    pub fn detach(&mut self) -> Result<(), ClientError> {
        let tag = self.submit(Request::Detach)?;
        self.wait(tag).map(|_| ())?;
        self.attached = None;
        Ok(())
    }

    /// Reads `blocks` blocks from `lba`, as READs of at most READ_BLOCKS_MAX blocks in flight at
    /// once.
    pub fn read(&mut self, lba: u64, blocks: u64) -> Result<Vec<u8>, ClientError> {
        let requests = ranges(lba, blocks, u64::from(READ_BLOCKS_MAX))?
            .map(|(lba, blocks)| Request::Read { lba, blocks });
        let mut out = Vec::with_capacity(blocks as usize * BLOCK_BYTES);
        for completion in self.run_all(requests)? {
            match completion {
                Completion::Data(data) => out.extend_from_slice(&data),
                other => {
                    return Err(ClientError::Protocol(format!(
                        "READ answered with {other:?}"
                    )));
                }
            }
        }
        Ok(out)
    }

    /// Writes whole blocks from `lba`: one WRITE per block, up to the queue depth in flight.
    pub fn write(&mut self, lba: u64, data: &[u8], fua: bool) -> Result<(), ClientError> {
        if data.is_empty() || !data.len().is_multiple_of(BLOCK_BYTES) {
            return Err(ClientError::InvalidArgument(format!(
                "write of {} bytes is not a positive multiple of {BLOCK_BYTES}",
                data.len()
            )));
        }
        let count = (data.len() / BLOCK_BYTES) as u64;
        // Checked whole first, so a write is not cut short by an address that overflows.
        let _ = ranges(lba, count, count)?;
        let requests = data
            .chunks_exact(BLOCK_BYTES)
            .enumerate()
            .map(|(i, block)| Request::Write {
                lba: lba + i as u64,
                fua,
                seal: [0; BLOCK_SEAL_BYTES],
                data: block.to_vec(),
            });
        self.run_all(requests).map(|_| ())
    }

    /// A barrier: returns when every earlier write is durable on the server.
    pub fn flush(&mut self) -> Result<(), ClientError> {
        let tag = self.submit(Request::Flush)?;
        self.wait(tag).map(|_| ())
    }

    pub fn trim(&mut self, lba: u64, blocks: u64) -> Result<(), ClientError> {
        let requests = ranges(lba, blocks, u64::from(TRIM_BLOCKS_MAX))?
            .map(|(lba, blocks)| Request::Trim { lba, blocks });
        self.run_all(requests).map(|_| ())
    }

    pub fn write_zeroes(&mut self, lba: u64, blocks: u64, fua: bool) -> Result<(), ClientError> {
        let requests = ranges(lba, blocks, u64::from(TRIM_BLOCKS_MAX))?
            .map(|(lba, blocks)| Request::WriteZeroes { lba, blocks, fua });
        self.run_all(requests).map(|_| ())
    }

    /// Submits every request, keeping at most the queue depth outstanding by waiting for its own
    /// oldest one when full, and returns the completions in request order, or the first failure
    /// (after every submitted request has finished, so no result is left behind).
    fn run_all(
        &mut self,
        requests: impl IntoIterator<Item = Request>,
    ) -> Result<Vec<Completion>, ClientError> {
        let mut tags = VecDeque::new();
        let mut completions = Vec::new();
        let mut first_error = None;
        let mut collect = |result: Result<Completion, ClientError>| match result {
            Ok(c) => completions.push(c),
            Err(e) => {
                first_error.get_or_insert(e);
            }
        };
        for request in requests {
            while self.pending.len() + self.done.len() >= self.config.queue_depth_max {
                let Some(tag) = tags.pop_front() else { break };
                collect(self.wait(tag));
            }
            match self.submit(request) {
                Ok(tag) => tags.push_back(tag),
                Err(e) => {
                    collect(Err(e));
                    break;
                }
            }
        }
        for tag in tags {
            collect(self.wait(tag));
        }
        first_error.map_or(Ok(completions), Err)
    }

    /// Moves every request the ordering rules allow onto the send list and starts its timer.
    fn release(&mut self) {
        let released = self.scheduler.release();
        if released.is_empty() {
            return;
        }
        let now = Instant::now();
        for tag in released {
            if let Some(p) = self.pending.get_mut(&tag) {
                p.released_at = Some(now);
                self.to_send.push_back(tag);
            }
        }
    }

    /// One turn of I/O: hand released requests to the transport, send and receive, match the
    /// replies, run the request timers. A turn that moved nothing then waits on the sockets for
    /// at most `wait_us_max` (or the transport's next timer); with 0 it yields instead.
    fn pump(&mut self, wait_us_max: u64) -> Result<(), ClientError> {
        if self.closed {
            return Err(ClientError::Closed);
        }
        let send_queue_max = self.config.srd.send_queue_messages_max;
        while let Some(&tag) = self.to_send.front() {
            // Checked first because send_message consumes the bytes even when it refuses them.
            if self.endpoint.connection().unacked_messages() >= send_queue_max {
                break;
            }
            self.to_send.pop_front();
            let Some(p) = self.pending.get_mut(&tag) else {
                continue;
            };
            let bytes = std::mem::take(&mut p.bytes);
            match self.endpoint.connection_mut().send_message(bytes) {
                Ok(_) => self.stats.requests_sent += 1,
                Err(e) => self.complete(tag, Err(ClientError::Protocol(e.to_string()))),
            }
        }
        let active = match self.endpoint.turn() {
            Ok(active) => active,
            Err(e) => {
                self.close();
                return Err(e.into());
            }
        };
        while let Some(delivered) = self.endpoint.poll_delivered() {
            self.on_reply(&delivered.payload);
        }
        self.release();
        self.check_timeouts();
        if !active && self.done.is_empty() {
            if wait_us_max == 0 {
                std::thread::yield_now();
            } else if let Err(e) = self.endpoint.wait(wait_us_max) {
                self.close();
                return Err(e.into());
            }
        }
        Ok(())
    }

    /// Seals a WRITE's block with the volume's block key; a WRITE must come with a zero seal
    /// (the seal is this client's to make).
    fn seal_write(&self, request: Request) -> Result<Request, ClientError> {
        let Request::Write {
            lba,
            fua,
            seal,
            mut data,
        } = request
        else {
            return Ok(request);
        };
        if seal != [0; BLOCK_SEAL_BYTES] {
            return Err(ClientError::InvalidArgument(
                "a WRITE's seal is made by the client; pass zeroes".into(),
            ));
        }
        let seal = match &self.sealer {
            None => seal,
            Some(sealer) => sealer.seal(lba, &mut data).map_err(ClientError::Key)?,
        };
        Ok(Request::Write {
            lba,
            fua,
            seal,
            data,
        })
    }

    /// A DATA block as the caller sees it: opened with the block key, zeroes for a block with
    /// no seal (never written, trimmed, zeroed), or refused.
    fn open_block(
        &self,
        lba: u64,
        seal: &[u8; BLOCK_SEAL_BYTES],
        data: &mut [u8],
    ) -> Result<(), ClientError> {
        let unsealed = *seal == [0; BLOCK_SEAL_BYTES];
        match &self.sealer {
            // Whatever bytes a server sends beside a zero seal, the block holds no client data.
            Some(_) if unsealed => {
                data.fill(0);
                Ok(())
            }
            Some(sealer) => sealer.open(lba, data, seal).map_err(|e| match e {
                KeyError::Authentication { .. } => ClientError::Integrity {
                    lba,
                    detail: "its seal does not verify: not a block this volume's key sealed at this address".into(),
                },
                other => ClientError::Key(other),
            }),
            None if unsealed => Ok(()),
            None => Err(ClientError::Integrity {
                lba,
                detail: "it is sealed by a client but this client has no key for the volume".into(),
            }),
        }
    }

    fn on_reply(&mut self, payload: &[u8]) {
        self.stats.replies += 1;
        let Ok(message) = Message::decode(payload) else {
            self.stats.replies_unexpected += 1;
            return;
        };
        let tag = message.request_id;
        let Body::Reply(reply) = message.body else {
            self.stats.replies_unexpected += 1;
            return;
        };
        let Some(p) = self.pending.get_mut(&tag) else {
            self.stats.replies_unexpected += 1;
            return;
        };
        match reply {
            Reply::Error { status, message } => self.complete(
                tag,
                Err(ClientError::Server {
                    request_id: tag,
                    status,
                    message,
                }),
            ),
            Reply::Data {
                lba,
                seal,
                mut data,
            } => {
                let Some(index) = p.read.as_ref().and_then(|r| r.index_of(lba)) else {
                    self.stats.replies_unexpected += 1;
                    return;
                };
                // Opened only once it is known to be an awaited block: a stray DATA costs no
                // decryption and cannot fail a read.
                if let Err(e) = self.open_block(lba, &seal, &mut data) {
                    self.complete(tag, Err(e));
                    return;
                }
                let Some(read) = self.pending.get_mut(&tag).and_then(|p| p.read.as_mut()) else {
                    return;
                };
                read.data[index * BLOCK_BYTES..(index + 1) * BLOCK_BYTES].copy_from_slice(&data);
                read.got[index] = true;
                read.missing -= 1;
                if read.missing == 0 {
                    let data = std::mem::take(&mut read.data);
                    self.complete(tag, Ok(Completion::Data(data)));
                }
            }
            Reply::Done if p.read.is_none() && !p.is_attach => {
                self.complete(tag, Ok(Completion::Done));
            }
            Reply::Attached {
                volume_id,
                blocks,
                multi_attach,
                wrapped_key,
            } if p.is_attach => {
                let info = AttachInfo {
                    volume_id,
                    blocks,
                    multi_attach,
                    wrapped_key,
                };
                self.attached = Some(info.clone());
                self.complete(tag, Ok(Completion::Attached(info)));
            }
            Reply::Done | Reply::Attached { .. } => self.stats.replies_unexpected += 1,
        }
    }

    fn complete(&mut self, tag: u64, result: Result<Completion, ClientError>) {
        self.pending.remove(&tag);
        self.scheduler.complete(tag);
        self.done.insert(tag, result);
    }

    fn check_timeouts(&mut self) {
        let timeout = Duration::from_millis(self.config.request_timeout_ms);
        // One clock read for every request, not one each.
        let now = Instant::now();
        let expired = self.pending.values().any(|p| {
            p.released_at
                .is_some_and(|at| now.saturating_duration_since(at) >= timeout)
        });
        if expired {
            tracing::warn!(
                outstanding = self.pending.len(),
                "request timed out; client closed"
            );
            self.close();
        }
    }

    /// Fails every outstanding request with a timeout and refuses later ones.
    fn close(&mut self) {
        self.closed = true;
        let timeout_ms = self.config.request_timeout_ms;
        let tags: Vec<u64> = self.pending.keys().copied().collect();
        for tag in tags {
            self.complete(
                tag,
                Err(ClientError::Timeout {
                    request_id: tag,
                    timeout_ms,
                }),
            );
        }
        self.to_send.clear();
    }
}

fn access_of(request: &Request) -> Result<Access, ClientError> {
    let range = |lba: u64, blocks: u64| {
        lba.checked_add(blocks)
            .filter(|_| blocks > 0)
            .map(|end| lba..end)
            .ok_or_else(|| ClientError::InvalidArgument(format!("{blocks} blocks from lba {lba}")))
    };
    Ok(match request {
        Request::Attach { .. } | Request::Detach => Access::Exclusive,
        Request::Flush => Access::Flush,
        Request::Read { lba, blocks } => {
            if *blocks > READ_BLOCKS_MAX {
                return Err(ClientError::InvalidArgument(format!(
                    "READ of {blocks} blocks exceeds {READ_BLOCKS_MAX}"
                )));
            }
            Access::Read(range(*lba, u64::from(*blocks))?)
        }
        Request::Write { lba, data, .. } => {
            if data.len() != BLOCK_BYTES {
                return Err(ClientError::InvalidArgument(format!(
                    "WRITE carries one block of {BLOCK_BYTES} bytes, not {}",
                    data.len()
                )));
            }
            Access::Write(range(*lba, 1)?)
        }
        Request::Trim { lba, blocks } | Request::WriteZeroes { lba, blocks, .. } => {
            Access::Write(range(*lba, u64::from(*blocks))?)
        }
    })
}

/// The block sealer of an attached volume: unwraps its data key with `kek`, or checks that a
/// volume in the clear got none.
fn envelope(
    volume: &str,
    info: &AttachInfo,
    kek: Option<&Kek>,
) -> Result<Option<BlockSealer>, ClientError> {
    match (info.wrapped_key.is_empty(), kek) {
        (true, None) => Ok(None),
        (true, Some(_)) => Err(ClientError::Envelope(format!(
            "volume {volume:?} has no wrapped data key, so its blocks are in the clear; \
             create it with --kek-file to seal them, or attach without a KEK"
        ))),
        (false, None) => Err(ClientError::Envelope(format!(
            "volume {volume:?} is sealed by its client: attach with the KEK that wraps its data key (--kek-file)"
        ))),
        (false, Some(kek)) => {
            let wrapped = WrappedKey::from_bytes(&info.wrapped_key).map_err(|e| {
                ClientError::Envelope(format!("volume {volume:?}: stored wrapped key: {e}"))
            })?;
            let data_key = wrapped.unwrap(kek, volume, Backend::AwsLc).map_err(|e| {
                ClientError::Envelope(format!(
                    "volume {volume:?}: this KEK does not unwrap its data key ({e})"
                ))
            })?;
            let sealer = data_key
                .block_sealer(info.volume_id)
                .map_err(ClientError::Key);
            // The block key is all the client keeps; the data key goes now.
            data_key.destroy();
            sealer.map(Some)
        }
    }
}

/// A random connection id from the OS CSPRNG: unguessable, so nobody can take a client's id
/// with a HELLO of their own before the client's arrives.
fn connection_id() -> Result<u64, ClientError> {
    let mut id = [0u8; 8];
    lc_rand::SystemRandom::new()
        .fill(&mut id)
        .map_err(|_| ClientError::Io(std::io::Error::other("the system random source failed")))?;
    Ok(u64::from_le_bytes(id))
}

/// Runs the client side of the handshake: HELLO on path 0, then again on the next path each
/// time no HELLO_ACK came (after HELLO_RESEND_MS_FIRST, doubling up to HELLO_RESEND_MS_MAX),
/// until `timeout_ms`. Anything but a HELLO_ACK of this connection is ignored meanwhile.
fn handshake(
    endpoint: &mut UdpEndpoint,
    connection_id: u64,
    volume: &str,
    credential: &[u8],
    path_count: usize,
    timeout_ms: u64,
) -> Result<SessionKeys, ClientError> {
    let client = ClientHandshake::start(connection_id, volume).map_err(ClientError::Handshake)?;
    let psk = psk_of(credential);
    let deadline = Instant::now() + Duration::from_millis(timeout_ms);
    let mut resend_ms = HELLO_RESEND_MS_FIRST;
    for attempt in 0.. {
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        endpoint.send_raw(attempt % path_count, client.hello())?;
        let resend_at = (now + Duration::from_millis(resend_ms)).min(deadline);
        loop {
            let now = Instant::now();
            if now >= resend_at {
                break;
            }
            let Some((_, datagram)) = endpoint.recv_raw()? else {
                let left_us = resend_at.duration_since(now).as_micros() as u64;
                endpoint.wait_for_datagram(left_us)?;
                continue;
            };
            match classify(&datagram) {
                Incoming::HelloAck => {}
                // A server of another version names this connection: no point waiting on.
                Incoming::VersionRefused => match VersionRefused::parse(&datagram) {
                    Ok(refused) if refused.connection_id == connection_id => {
                        return Err(ClientError::Handshake(refused.error()));
                    }
                    _ => continue,
                },
                _ => continue,
            }
            // A corrupted copy, or one for another connection, is not the answer: wait on.
            match HelloAck::parse(&datagram) {
                Ok(ack) if ack.connection_id == connection_id => {
                    return client
                        .finish(&datagram, &psk)
                        .map_err(ClientError::Handshake);
                }
                _ => continue,
            }
        }
        resend_ms = (resend_ms * 2).min(HELLO_RESEND_MS_MAX);
    }
    Err(ClientError::NoHandshake { timeout_ms })
}

/// `blocks` blocks from `lba` as (lba, count) pieces of at most `per_request` (a u32 limit of the
/// protocol) blocks.
fn ranges(
    lba: u64,
    blocks: u64,
    per_request: u64,
) -> Result<impl Iterator<Item = (u64, u32)>, ClientError> {
    let end = lba
        .checked_add(blocks)
        .filter(|_| blocks > 0)
        .ok_or_else(|| ClientError::InvalidArgument(format!("{blocks} blocks from lba {lba}")))?;
    let per_request = per_request.clamp(1, u64::from(u32::MAX));
    Ok((lba..end)
        .step_by(per_request as usize)
        .map(move |at| (at, per_request.min(end - at) as u32)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_limits_are_checked() {
        assert!(ClientConfig::default().validate().is_ok());
        let bad: Vec<fn(&mut ClientConfig)> = vec![
            |c| c.request_timeout_ms = 0,
            |c| c.queue_depth_max = 0,
            |c| c.queue_depth_max = QUEUE_DEPTH_CEILING + 1,
            |c| {
                c.srd.send_queue_messages_max = 8;
                c.queue_depth_max = 9;
            },
            |c| c.srd.message_len_max = MESSAGE_LEN_MAX - 1,
        ];
        for (i, mutate) in bad.into_iter().enumerate() {
            let mut c = ClientConfig::default();
            mutate(&mut c);
            assert!(c.validate().is_err(), "mutation {i} accepted");
        }
    }

    #[test]
    fn ranges_cover_the_blocks_in_pieces() {
        let pieces: Vec<_> = ranges(10, 600, 256).unwrap().collect();
        assert_eq!(pieces, vec![(10, 256), (266, 256), (522, 88)]);
        assert!(ranges(0, 0, 256).is_err());
        assert!(ranges(u64::MAX, 2, 256).is_err());
    }

    #[test]
    fn requests_are_checked_before_they_are_queued() {
        let write = |len| Request::Write {
            lba: 0,
            fua: false,
            seal: [0; BLOCK_SEAL_BYTES],
            data: vec![0; len],
        };
        assert!(access_of(&write(BLOCK_BYTES)).is_ok());
        assert!(access_of(&write(BLOCK_BYTES - 1)).is_err());
        let read = |blocks| Request::Read { lba: 0, blocks };
        assert!(access_of(&read(READ_BLOCKS_MAX)).is_ok());
        assert!(access_of(&read(READ_BLOCKS_MAX + 1)).is_err());
        assert!(access_of(&read(0)).is_err());
        let trim = Request::Trim {
            lba: u64::MAX,
            blocks: 1,
        };
        assert!(access_of(&trim).is_err());
    }
}
