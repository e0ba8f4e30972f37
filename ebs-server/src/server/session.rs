//! One client session of the volume server: takes the bytes of each block-protocol message the
//! transport delivered and returns the replies. No I/O of its own besides the volume's, so the
//! same session runs behind the SRD transport and in tests.
//!
//! Rules: nothing but ATTACH before a volume is attached; one volume per session; a READ of N
//! blocks is answered by N DATA messages or, at the first block that fails, by one ERROR; every
//! other request by one DONE or one ERROR. A message that does not parse is answered with
//! MALFORMED when its request id can be read, and dropped otherwise; the session goes on.

use std::sync::Arc;

use crate::proto::{BLOCK_BYTES, Body, Message, Reply, Request, Status, request_id_of};
use crate::volumes::{Attachment, VolumeError, VolumeStore};

/// What a session has refused or dropped (for the server's log and tests).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SessionCounters {
    pub requests: u64,
    pub errors: u64,
    pub malformed: u64,
    pub dropped: u64,
}

#[derive(Debug)]
pub struct Session {
    store: Arc<VolumeStore>,
    /// The volume the connection's handshake was keyed for: the only one ATTACH may name.
    /// None for a session outside a keyed connection (tests of the protocol alone).
    keyed_for: Option<String>,
    attached: Option<Attachment>,
    counters: SessionCounters,
}

impl Session {
    pub fn new(store: Arc<VolumeStore>) -> Self {
        Self {
            store,
            keyed_for: None,
            attached: None,
            counters: SessionCounters::default(),
        }
    }

    /// A session of a connection keyed by a handshake for `volume`: the PSK proved the client
    /// holds that volume's credential, not another's, so ATTACH may name only that volume.
    pub fn keyed_for(store: Arc<VolumeStore>, volume: String) -> Self {
        Self {
            keyed_for: Some(volume),
            ..Self::new(store)
        }
    }

    pub fn counters(&self) -> SessionCounters {
        self.counters
    }

    pub fn attached(&self) -> Option<&Attachment> {
        self.attached.as_ref()
    }

    /// Handles one message's bytes; returns the replies to send, in any order.
    pub fn handle(&mut self, bytes: &[u8]) -> Vec<Message> {
        let message = match Message::decode(bytes) {
            Ok(m) => m,
            Err(e) => {
                return match request_id_of(bytes) {
                    Some(id) => {
                        self.counters.malformed += 1;
                        tracing::debug!(request = id, error = %e, "malformed request");
                        vec![error(id, Status::Malformed, e.to_string())]
                    }
                    None => {
                        self.counters.dropped += 1;
                        Vec::new()
                    }
                };
            }
        };
        let id = message.request_id;
        let Body::Request(request) = message.body else {
            self.counters.malformed += 1;
            return vec![error(
                id,
                Status::Malformed,
                "a reply sent to the server".into(),
            )];
        };
        self.counters.requests += 1;
        let replies = self.dispatch(id, request);
        if replies
            .iter()
            .any(|m| matches!(m.body, Body::Reply(Reply::Error { .. })))
        {
            self.counters.errors += 1;
        }
        replies
    }

    fn dispatch(&mut self, id: u64, request: Request) -> Vec<Message> {
        if let Request::Attach { volume, credential } = &request {
            if self.attached.is_some() {
                return vec![error(
                    id,
                    Status::AlreadyAttached,
                    "this session has a volume".into(),
                )];
            }
            if let Some(keyed) = &self.keyed_for
                && keyed != volume
            {
                return vec![error(
                    id,
                    Status::BadCredential,
                    format!("this connection was keyed for volume {keyed:?}, not {volume:?}"),
                )];
            }
            return match self.store.attach(volume, credential) {
                Ok(a) => {
                    let reply = Reply::Attached {
                        volume_id: a.id(),
                        blocks: a.blocks(),
                        multi_attach: a.multi_attach(),
                        wrapped_key: a.wrapped_key().to_vec(),
                    };
                    tracing::info!(volume = %a.name(), "attached");
                    self.attached = Some(a);
                    vec![Message::reply(id, reply)]
                }
                Err(e) => vec![volume_error(id, &e)],
            };
        }
        let Some(volume) = &self.attached else {
            return vec![error(
                id,
                Status::NotAttached,
                "attach a volume first".into(),
            )];
        };
        let done = |r: Result<(), VolumeError>| match r {
            Ok(()) => vec![Message::reply(id, Reply::Done)],
            Err(e) => vec![volume_error(id, &e)],
        };
        match request {
            Request::Attach { .. } => unreachable!("handled above"),
            Request::Detach => {
                self.attached = None;
                vec![Message::reply(id, Reply::Done)]
            }
            Request::Read { lba, blocks } => {
                let mut replies = Vec::with_capacity(blocks as usize);
                for i in 0..u64::from(blocks) {
                    let Some(at) = lba.checked_add(i) else {
                        return vec![volume_error(
                            id,
                            &VolumeError::OutOfRange {
                                lba,
                                count: u64::from(blocks),
                                blocks: volume.blocks(),
                            },
                        )];
                    };
                    let mut data = vec![0u8; BLOCK_BYTES];
                    match volume.read(at, &mut data) {
                        Ok(seal) => replies.push(Message::reply(
                            id,
                            Reply::Data {
                                lba: at,
                                seal,
                                data,
                            },
                        )),
                        // The blocks read so far were good; the client fails the whole read.
                        Err(e) => {
                            replies.push(volume_error(id, &e));
                            return replies;
                        }
                    }
                }
                replies
            }
            Request::Write {
                lba,
                fua,
                seal,
                data,
            } => done(volume.write(lba, &data, &seal, fua)),
            Request::Flush => done(volume.flush()),
            Request::Trim { lba, blocks } => done(volume.trim(lba, u64::from(blocks))),
            Request::WriteZeroes { lba, blocks, fua } => {
                done(volume.write_zeroes(lba, u64::from(blocks), fua))
            }
        }
    }
}

fn error(id: u64, status: Status, message: String) -> Message {
    Message::reply(id, Reply::Error { status, message })
}

fn volume_error(id: u64, e: &VolumeError) -> Message {
    error(id, e.status(), e.to_string())
}
