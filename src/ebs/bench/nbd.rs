//! The `nbd_tcp` system: Ferrite's own NBD server exporting an FTL volume (the same RAM NAND
//! geometry as the `srd` server's) over one TCP connection, and a pipelined client that keeps
//! the queue depth outstanding on that connection (`NbdClient` has one request in flight).
//!
//! Loss is imposed where the rig allows it: as root with `ip` and `nft`, the server listens in
//! one network namespace and the client connects from another, over a veth pair whose ends drop
//! a share of the arriving packets (`impair::netns`). Without that, the connection is plain
//! loopback TCP and only the clean scenario can run.

use std::io::{BufReader, BufWriter, Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpStream};
use std::sync::{Arc, mpsc};
use std::thread::JoinHandle;
use std::time::Duration;

use ebs_server::impair::netns::Side;
use ftl::FtlConfig;
use nvme_target::nbd::wire::{
    CMD_DISC, CMD_READ, CMD_WRITE, FLAG_C_FIXED_NEWSTYLE, FLAG_C_NO_ZEROES, FLAG_FIXED_NEWSTYLE,
    FLAG_NO_ZEROES, GREETING_BYTES, IHAVEOPT, NBD_MAGIC, OPT_EXPORT_NAME, OptionHeader,
    REQUEST_MAGIC, Request, SIMPLE_REPLY_BYTES, SIMPLE_REPLY_MAGIC, SimpleReply, decode_greeting,
};
use nvme_target::nbd::{Export, Listen, NbdServer, NbdStopHandle};
use nvme_target::{ActiveNamespace, FtlNamespace, NamespaceIdentity};

use super::net::{Network, in_netns};
use super::workload::{Op, Target};

const EXPORT: &str = "bench";
const BLOCK_BYTES: usize = 4096;
/// The handshake and connect may take this long (a lossy veth included).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// A blocked send gives up after this: with a black-holed flow the send buffer may fill.
const WRITE_TIMEOUT: Duration = Duration::from_secs(2);
/// How long connections may drain when a case's server stops.
const DRAIN_TIMEOUT: Duration = Duration::from_millis(300);

/// A server thread and a connected pipelined client, for one case.
#[derive(Debug)]
pub struct NbdSystem {
    w: BufWriter<TcpStream>,
    stream: TcpStream,
    completions: mpsc::Receiver<(u64, u32)>,
    reader: Option<JoinHandle<()>>,
    stop: NbdStopHandle,
    server: Option<JoinHandle<()>>,
    next_seq: u64,
    block: Vec<u8>,
    /// The first request failure, for the report.
    pub first_error: Option<String>,
}

impl NbdSystem {
    pub fn start(
        geometry: ftl::nand::Geometry,
        devices: u32,
        net: &Network,
    ) -> Result<NbdSystem, String> {
        let ftl = ftl::Ftl::format(super::ram_devices(geometry, devices)?, FtlConfig::default())
            .map_err(|e| format!("formatting the NBD server's FTL: {e}"))?;
        let namespace = ActiveNamespace::new(
            NamespaceIdentity {
                nsid: 1,
                serial: "FERRITE-EBS-BENCH".into(),
                model: "Ferrite ebs bench NBD namespace".into(),
                eui64: NamespaceIdentity::eui64_from_serial("FERRITE-EBS-BENCH"),
                read_only: false,
            },
            Arc::new(FtlNamespace::new(ftl)),
        );
        let exports = vec![Export {
            name: EXPORT.into(),
            description: "ferrite ebs bench".into(),
            namespace,
        }];
        let server = match net.side(Side::B) {
            Some((netns, addr)) => in_netns(netns, move || {
                NbdServer::bind(&[Listen::Tcp(SocketAddr::from((addr, 0)))])
                    .map_err(|e| format!("binding the NBD server: {e}"))
            })?,
            None => NbdServer::bind(&[Listen::Tcp(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))])
                .map_err(|e| format!("binding the NBD server: {e}"))?,
        };
        let to = *server
            .tcp_addrs()
            .first()
            .ok_or("the NBD server bound no TCP address")?;
        let stop = NbdStopHandle::new();
        stop.set_drain_timeout(DRAIN_TIMEOUT);
        let serving = {
            let stop = stop.clone();
            std::thread::Builder::new()
                .name("bench-nbd-server".into())
                .spawn(move || {
                    if let Err(e) = server.serve(exports, &stop) {
                        eprintln!("warning: NBD server: {e}");
                    }
                })
                .map_err(|e| format!("spawning the NBD server: {e}"))?
        };
        let connect = move || {
            TcpStream::connect_timeout(&to, CONNECT_TIMEOUT)
                .map_err(|e| format!("connecting to {to}: {e}"))
        };
        let stream = match net.side(Side::A) {
            Some((netns, _)) => in_netns(netns, connect),
            None => connect(),
        };
        let stream = match stream {
            Ok(s) => s,
            Err(e) => {
                stop.stop();
                let _ = serving.join();
                return Err(e);
            }
        };
        let (r, w) = match handshake(&stream) {
            Ok(rw) => rw,
            Err(e) => {
                let _ = stream.shutdown(Shutdown::Both);
                stop.stop();
                let _ = serving.join();
                return Err(e);
            }
        };
        let (tx, completions) = mpsc::channel();
        let reader = std::thread::Builder::new()
            .name("bench-nbd-reader".into())
            .spawn(move || read_replies(r, &tx))
            .map_err(|e| format!("spawning the reply reader: {e}"))?;
        Ok(NbdSystem {
            w,
            stream,
            completions,
            reader: Some(reader),
            stop,
            server: Some(serving),
            next_seq: 1,
            block: vec![0x5a; BLOCK_BYTES],
            first_error: None,
        })
    }

    /// Disconnects, stops the server and joins every thread.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        let disc = Request {
            magic: REQUEST_MAGIC,
            flags: 0,
            kind: CMD_DISC,
            handle: 0,
            offset: 0,
            length: 0,
        };
        let _ = self.w.write_all(&disc.encode());
        let _ = self.w.flush();
        let _ = self.stream.shutdown(Shutdown::Both);
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
        self.stop.stop();
        if let Some(s) = self.server.take() {
            let _ = s.join();
        }
    }
}

impl Drop for NbdSystem {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// The fixed newstyle handshake with NBD_OPT_EXPORT_NAME on `stream`: the reader and writer of
/// the transmission phase.
fn handshake(stream: &TcpStream) -> Result<(BufReader<TcpStream>, BufWriter<TcpStream>), String> {
    let io = |e: std::io::Error| format!("NBD handshake: {e}");
    stream.set_nodelay(true).map_err(io)?;
    stream.set_read_timeout(Some(CONNECT_TIMEOUT)).map_err(io)?;
    stream.set_write_timeout(Some(WRITE_TIMEOUT)).map_err(io)?;
    let mut r = BufReader::new(stream.try_clone().map_err(io)?);
    let mut w = BufWriter::new(stream.try_clone().map_err(io)?);
    let mut greeting = [0u8; GREETING_BYTES];
    r.read_exact(&mut greeting).map_err(io)?;
    let (magic, opt_magic, flags) = decode_greeting(&greeting);
    if magic != NBD_MAGIC || opt_magic != IHAVEOPT || flags & FLAG_FIXED_NEWSTYLE == 0 {
        return Err("the NBD server does not speak fixed newstyle".into());
    }
    let mut client_flags = FLAG_C_FIXED_NEWSTYLE;
    if flags & FLAG_NO_ZEROES != 0 {
        client_flags |= FLAG_C_NO_ZEROES;
    }
    w.write_all(&client_flags.to_be_bytes()).map_err(io)?;
    let header = OptionHeader {
        magic: IHAVEOPT,
        option: OPT_EXPORT_NAME,
        length: EXPORT.len() as u32,
    };
    w.write_all(&header.encode()).map_err(io)?;
    w.write_all(EXPORT.as_bytes()).map_err(io)?;
    w.flush().map_err(io)?;
    // Size (8) and transmission flags (2), then 124 zeroes unless NO_ZEROES was agreed.
    let mut reply = [0u8; 10];
    r.read_exact(&mut reply).map_err(io)?;
    if client_flags & FLAG_C_NO_ZEROES == 0 {
        let mut zeroes = [0u8; 124];
        r.read_exact(&mut zeroes).map_err(io)?;
    }
    // From here the reader blocks as long as it must: the workload's own timers give up.
    stream.set_read_timeout(None).map_err(io)?;
    Ok((r, w))
}

/// A handle's low bit says whether it is a read, whose reply carries a block of data.
fn handle_of(seq: u64, op: Op) -> u64 {
    (seq << 1) | u64::from(op == Op::Read)
}

/// Reads simple replies (and a read's data) until the connection ends, sending (handle, errno).
fn read_replies(mut r: BufReader<TcpStream>, tx: &mpsc::Sender<(u64, u32)>) {
    let mut data = vec![0u8; BLOCK_BYTES];
    loop {
        let mut b = [0u8; SIMPLE_REPLY_BYTES];
        if r.read_exact(&mut b).is_err() {
            return;
        }
        let reply = SimpleReply::decode(&b);
        if reply.magic != SIMPLE_REPLY_MAGIC {
            return;
        }
        if reply.handle & 1 == 1 && reply.error == 0 && r.read_exact(&mut data).is_err() {
            return;
        }
        if tx.send((reply.handle, reply.error)).is_err() {
            return;
        }
    }
}

impl Target for NbdSystem {
    fn submit(&mut self, op: Op, lba: u64) -> Result<u64, String> {
        let handle = handle_of(self.next_seq, op);
        self.next_seq += 1;
        let req = Request {
            magic: REQUEST_MAGIC,
            flags: 0,
            kind: if op == Op::Read { CMD_READ } else { CMD_WRITE },
            handle,
            offset: lba * BLOCK_BYTES as u64,
            length: BLOCK_BYTES as u32,
        };
        let sent = self.w.write_all(&req.encode()).and_then(|()| {
            if op == Op::Write {
                self.w.write_all(&self.block)?;
            }
            self.w.flush()
        });
        sent.map_err(|e| format!("sending an NBD request: {e}"))?;
        Ok(handle)
    }

    fn wait_any(&mut self, timeout: Duration) -> Result<Option<(u64, bool)>, String> {
        match self.completions.recv_timeout(timeout) {
            Ok((handle, 0)) => Ok(Some((handle, true))),
            Ok((handle, errno)) => {
                self.first_error
                    .get_or_insert(format!("request {handle}: errno {errno}"));
                Ok(Some((handle, false)))
            }
            Err(mpsc::RecvTimeoutError::Timeout) => Ok(None),
            Err(mpsc::RecvTimeoutError::Disconnected) => Err("the NBD connection closed".into()),
        }
    }
}
