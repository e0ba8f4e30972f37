//! The `srd` system: an in-process `EbsServer` over a RAM FTL with one sealed volume (a KEK and
//! a wrapped data key, as `ferrite ebs volume create --kek-file` makes) and a `RemoteVolume`
//! attached to it (`submit` / `wait_any` for queue depth), joined by one of three [`Route`]s:
//! the kernel network of the bench (the server in one namespace, the client in the other, with
//! nftables for loss and black holes: no thread between them), the seeded user-space impairment
//! relay (any `--impair` spec, at the cost of its hops and threads), or plain loopback. Every
//! case gets a fresh one, so no case inherits another's suspect paths or GC debt.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use ebs_server::client::{ClientConfig, Completion, RemoteVolume};
use ebs_server::impair::{Relay, RelayConfig, RelayHandle, Schedule, Scope};
use ebs_server::proto::{BLOCK_BYTES, BLOCK_SEAL_BYTES, Request};
use ebs_server::server::{EbsServer, ServerConfig};
use ebs_server::srd;
use ebs_server::volumes::{VolumeSpec, VolumeStore};
use ftl::FtlConfig;

use super::net::{Network, in_netns};
use super::workload::{Op, Target};
use ebs_server::impair::netns::Side;

const VOLUME: &str = "bench";
const CREDENTIAL: &[u8] = b"ferrite-bench-credential";
/// Blocks per volume extent of the bench's store.
const EXTENT_BLOCKS: u64 = 64;
/// A request unanswered this long fails the client (and the case): far above any recovery SRD
/// should need, so a failure here is a finding, not a tuning artefact.
const REQUEST_TIMEOUT_MS: u64 = 5_000;

/// How the client reaches the server.
#[derive(Debug, Clone, Copy)]
pub enum Route<'a> {
    /// Server in the network's namespace B, client in A, across the veth pair.
    Kernel(&'a Network),
    /// Through the impairment relay on loopback.
    Relay,
    /// Straight over loopback (no impairment possible).
    Direct,
}

/// A server, a relay (only for `Route::Relay`) and an attached client, torn down on drop (temp
/// dir last).
pub struct SrdSystem {
    client: RemoteVolume,
    relay: Option<Relay>,
    server: EbsServer,
    /// Block contents written by every write (sealed per block by the client).
    block: Vec<u8>,
    /// The first request failure, for the report.
    pub first_error: Option<String>,
    _dir: tempfile::TempDir,
}

impl std::fmt::Debug for SrdSystem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SrdSystem")
            .field("relayed", &self.relay.is_some())
            .finish()
    }
}

fn srd_config(paths: usize) -> srd::Config {
    srd::Config {
        path_count: paths,
        ..srd::Config::default()
    }
}

impl SrdSystem {
    /// Starts everything for a volume of `region_blocks` blocks with `paths` paths over
    /// `route`, the network clean (the case applies its scenario when it starts); a relay is
    /// seeded with `seed`.
    pub fn start(
        route: Route<'_>,
        paths: usize,
        region_blocks: u64,
        geometry: ftl::nand::Geometry,
        devices: u32,
        seed: u64,
    ) -> Result<SrdSystem, String> {
        let dir = tempfile::tempdir().map_err(|e| format!("temp dir: {e}"))?;
        let ftl = ftl::Ftl::format(super::ram_devices(geometry, devices)?, FtlConfig::default())
            .map_err(|e| format!("formatting the server's FTL: {e}"))?;
        let store = VolumeStore::open(ftl, &dir.path().join("volumes.cat"), EXTENT_BLOCKS)
            .map_err(|e| format!("opening the volume store: {e}"))?;
        let kek = keys::Kek::generate().map_err(|e| format!("KEK: {e}"))?;
        let key = keys::VolumeKey::generate(keys::Backend::AwsLc)
            .map_err(|e| format!("data key: {e}"))?;
        let wrapped = key
            .wrap(&kek, VOLUME)
            .map_err(|e| format!("wrapping the data key: {e}"))?;
        store
            .create(&VolumeSpec {
                name: VOLUME.into(),
                blocks: region_blocks,
                credential: CREDENTIAL.to_vec(),
                multi_attach: false,
                wrapped_key: wrapped.as_bytes().to_vec(),
            })
            .map_err(|e| format!("creating the volume: {e}"))?;
        let store = Arc::new(store);
        let server_config = ServerConfig {
            srd: srd_config(paths),
            ..ServerConfig::default()
        };
        let server = match route {
            Route::Kernel(net) => {
                let (netns, addr) = net.side(Side::B).ok_or("the network has no namespaces")?;
                in_netns(netns, move || {
                    EbsServer::start(
                        &vec![SocketAddr::from((addr, 0)); paths],
                        store,
                        server_config,
                    )
                    .map_err(|e| format!("starting the server: {e}"))
                })?
            }
            Route::Relay | Route::Direct => EbsServer::start(
                &vec![SocketAddr::from((Ipv4Addr::LOCALHOST, 0)); paths],
                store,
                server_config,
            )
            .map_err(|e| format!("starting the server: {e}"))?,
        };
        let relay = matches!(route, Route::Relay)
            .then(|| {
                Relay::start(RelayConfig {
                    seed,
                    schedule: Schedule::clean(paths),
                    ..RelayConfig::new(server.local_addrs().to_vec())
                })
                .map_err(|e| format!("starting the relay: {e}"))
            })
            .transpose()?;
        let to = match &relay {
            Some(r) => r.front_addrs().to_vec(),
            None => server.local_addrs().to_vec(),
        };
        let config = ClientConfig {
            srd: srd_config(paths),
            request_timeout_ms: REQUEST_TIMEOUT_MS,
            ..ClientConfig::default()
        };
        let connect = move || {
            RemoteVolume::connect(&to, VOLUME, CREDENTIAL, Some(&kek), config)
                .map_err(|e| format!("attaching the volume: {e}"))
        };
        // The client's sockets are made in namespace A, so its datagrams cross the veth.
        let client = match route {
            Route::Kernel(net) => {
                let (netns, _) = net.side(Side::A).ok_or("the network has no namespaces")?;
                in_netns(netns, connect)?
            }
            Route::Relay | Route::Direct => connect()?,
        };
        if !client.is_sealed() {
            return Err("the volume attached unsealed".into());
        }
        Ok(SrdSystem {
            client,
            relay,
            server,
            block: vec![0x5a; BLOCK_BYTES],
            first_error: None,
            _dir: dir,
        })
    }

    /// The server's UDP port of path `path`.
    pub fn server_port(&self, path: usize) -> Option<u16> {
        self.server.local_addrs().get(path).map(SocketAddr::port)
    }

    pub fn relay(&self) -> Option<RelayHandle> {
        self.relay.as_ref().map(Relay::handle)
    }

    /// The transport's retransmissions so far.
    pub fn retransmissions(&self) -> u64 {
        self.client.transport_stats().retransmissions
    }

    /// Datagrams the relay dropped (loss, black hole, queues), both directions, all paths.
    pub fn relay_dropped(&self) -> u64 {
        self.relay
            .iter()
            .flat_map(|r| r.stats())
            .map(|p| p.to_server.dropped() + p.to_client.dropped())
            .sum()
    }

    /// Detaches (if the client still can) and stops the relay and the server.
    pub fn stop(mut self) {
        let _ = self.client.detach();
        let SrdSystem { relay, server, .. } = self;
        if let Some(relay) = relay {
            let _ = relay.stop();
        }
        let _ = server.stop();
    }
}

/// Sets every path to the schedule's start state: the scenario begins.
pub fn apply_initial(relay: &RelayHandle, schedule: &Schedule) -> Result<(), String> {
    for (i, imp) in schedule.initial.iter().enumerate() {
        relay
            .set_path(i, imp.clone())
            .map_err(|e| format!("relay path {i}: {e}"))?;
    }
    Ok(())
}

/// Applies one timed change of the schedule to the paths it covers, from their current state.
pub fn apply_change(
    relay: &RelayHandle,
    scope: Scope,
    change: &ebs_server::impair::Change,
    paths: usize,
) -> Result<(), String> {
    for i in 0..paths {
        if matches!(scope, Scope::Path(p) if p != i) {
            continue;
        }
        let mut imp = relay
            .path(i)
            .ok_or_else(|| format!("relay has no path {i}"))?;
        change.apply(&mut imp);
        relay
            .set_path(i, imp)
            .map_err(|e| format!("relay path {i}: {e}"))?;
    }
    Ok(())
}

impl Target for SrdSystem {
    fn submit(&mut self, op: Op, lba: u64) -> Result<u64, String> {
        let request = match op {
            Op::Read => Request::Read { lba, blocks: 1 },
            Op::Write => Request::Write {
                lba,
                fua: false,
                seal: [0; BLOCK_SEAL_BYTES],
                data: self.block.clone(),
            },
        };
        self.client.submit(request).map_err(|e| e.to_string())
    }

    /// The client's own request timer bounds the wait (REQUEST_TIMEOUT_MS), not `timeout`.
    fn wait_any(&mut self, _timeout: Duration) -> Result<Option<(u64, bool)>, String> {
        match self.client.wait_any() {
            Ok((tag, Ok(Completion::Done | Completion::Data(_)))) => Ok(Some((tag, true))),
            Ok((tag, Ok(other))) => {
                self.first_error
                    .get_or_insert(format!("request {tag} answered with {other:?}"));
                Ok(Some((tag, false)))
            }
            Ok((tag, Err(e))) => {
                self.first_error
                    .get_or_insert(format!("request {tag}: {e}"));
                Ok(Some((tag, false)))
            }
            Err(e) => Err(e.to_string()),
        }
    }
}
