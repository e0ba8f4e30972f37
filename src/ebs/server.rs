//! `ferrite ebs-server`: formats the FTL over FileNand devices in the data directory on the first
//! start and recovers it on every later one, serves its volumes over UDP, and manages them
//! through `DATA/control.sock` until Ctrl-C or SIGTERM.

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use ebs_server::server::{EbsServer, ServerConfig};
use ebs_server::volumes::VolumeStore;
use ftl::nand::Geometry;
use ftl::{Ftl, FtlConfig};

use crate::glue;
use crate::serve::lock::DataDirLock;

const DEVICES_DIR: &str = "devices";
const CATALOG_FILE: &str = "volumes.cat";

/// What `ferrite ebs-server` was asked for.
#[derive(Debug, Clone)]
pub struct EbsServerOptions {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub paths: usize,
    pub devices: u32,
    /// Geometry of devices created on the first start (later starts read it from the files).
    pub geometry: Geometry,
    /// Blocks per volume extent, the unit of allocation, fixed on the first start.
    pub extent_blocks: u64,
    pub ftl: FtlConfig,
    /// The transport server's limits (`srd.path_count` is `paths`).
    pub server: ServerConfig,
}

impl EbsServerOptions {
    /// The options of a validated config (`listen` and `data` present).
    pub fn from_config(c: &super::config::EbsServerConfig) -> Self {
        Self {
            listen: c
                .listen
                .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0))),
            data_dir: c.data.clone().unwrap_or_default(),
            paths: c.paths,
            devices: c.devices,
            geometry: c.geometry,
            extent_blocks: c.extent_blocks,
            ftl: c.ftl.clone(),
            server: c.server_config(),
        }
    }
}

/// Path `i` listens on `listen`'s port + `i` (port 0: every path picks an ephemeral port).
fn path_addrs(listen: SocketAddr, paths: usize) -> anyhow::Result<Vec<SocketAddr>> {
    (0..paths)
        .map(|i| {
            if listen.port() == 0 {
                return Ok(listen);
            }
            let port = u16::try_from(usize::from(listen.port()) + i)
                .ok()
                .context("the listen port + paths goes past port 65535")?;
            Ok(SocketAddr::new(listen.ip(), port))
        })
        .collect()
}

fn open_ftl(options: &EbsServerOptions) -> anyhow::Result<Ftl> {
    let dir = options.data_dir.join(DEVICES_DIR);
    // Remote volumes outlive the host: every barrier reaches the disk. The FTL is not sealed:
    // the client seals its blocks itself, and an instance key would not survive a reboot. (So
    // erases drop the data too: the defaults.)
    let durability = glue::FileModes::default();
    if glue::device_path(&dir, 0).exists() {
        let found = (0..)
            .take_while(|&i| glue::device_path(&dir, i).exists())
            .count();
        anyhow::ensure!(
            found == options.devices as usize,
            "{} holds {found} devices (made by the first run); --devices {} does not match",
            dir.display(),
            options.devices
        );
        let devices = glue::open_file_devices_with(&dir, options.devices, durability)?;
        let (ftl, _report) = Ftl::open(devices, options.ftl.clone())
            .with_context(|| format!("recovering the FTL in {}", dir.display()))?;
        eprintln!("recovered {} devices in {}", options.devices, dir.display());
        Ok(ftl)
    } else {
        let devices = glue::file_devices_with(&dir, options.geometry, options.devices, durability)?;
        let ftl = Ftl::format(devices, options.ftl.clone())
            .with_context(|| format!("formatting the FTL in {}", dir.display()))?;
        eprintln!("formatted {} devices in {}", options.devices, dir.display());
        Ok(ftl)
    }
}

/// The control socket of the server of `data_dir`.
pub fn control_socket(data_dir: &Path) -> PathBuf {
    data_dir.join(super::control::SOCKET_FILE)
}

/// Runs the server until `stop()` returns true, then closes it cleanly (FTL checkpoint).
pub fn run(options: &EbsServerOptions, stop: impl Fn() -> bool) -> anyhow::Result<()> {
    let _lock = DataDirLock::acquire(&options.data_dir, "run ebs-server")?;
    let addrs = path_addrs(options.listen, options.paths)?;
    let ftl = open_ftl(options)?;
    let catalog = options.data_dir.join(CATALOG_FILE);
    let store = Arc::new(
        VolumeStore::open(ftl, &catalog, options.extent_blocks)
            .with_context(|| format!("opening the volumes of {}", catalog.display()))?,
    );
    let server = EbsServer::start(&addrs, Arc::clone(&store), options.server.clone())
        .with_context(|| format!("listening on {addrs:?}"))?;
    let socket = control_socket(&options.data_dir);
    let listener = crate::control_socket::bind(&socket)?;
    // Written, not println!: a server whose stdout was closed (a supervisor that read the
    // addresses and went away) keeps serving instead of panicking on a broken pipe.
    let mut out = std::io::stdout().lock();
    for (i, a) in server.local_addrs().iter().enumerate() {
        let _ = writeln!(out, "path {i}: udp {a}");
    }
    let _ = writeln!(out, "control socket: {}", socket.display());
    let _ = writeln!(
        out,
        "volumes: {}, free: {} MiB",
        store.list().len(),
        (store.free_blocks() * super::BLOCK_BYTES) >> 20
    );
    let _ = out.flush();
    drop(out);
    // The control loop also ends when the UDP thread has ended by itself (an I/O error), so a
    // dead server exits with that error instead of answering volume commands forever.
    let served = super::control::serve(&listener, &socket, &store, &|| server.stats(), || {
        stop() || !server.is_running()
    });
    let stats = server
        .stop()
        .context("the UDP server ended on an I/O error")?;
    served?;
    eprintln!(
        "stopped after {} requests on {} connections",
        stats.requests, stats.connections_opened
    );
    let store = Arc::try_unwrap(store)
        .map_err(|_| anyhow::anyhow!("the volume store is still in use at close"))?;
    store.close().context("closing the FTL")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::path_addrs;

    #[test]
    fn paths_listen_on_consecutive_ports() {
        let base = "127.0.0.1:7400".parse().unwrap_or_else(|_| unreachable!());
        let addrs = path_addrs(base, 3).unwrap_or_default();
        let ports: Vec<u16> = addrs.iter().map(|a| a.port()).collect();
        assert_eq!(ports, [7400, 7401, 7402]);
        let high = "127.0.0.1:65535".parse().unwrap_or_else(|_| unreachable!());
        assert!(path_addrs(high, 2).is_err());
    }
}
