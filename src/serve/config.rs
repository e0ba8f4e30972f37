//! `ferrite serve` configuration (TOML): devices, geometry, FTL, namespaces, transport, encryption.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context;
use ftl::FtlConfig;
use ftl::nand::Geometry;
use nvme_target::vhost::TransportOptions;
use serde::{Deserialize, Serialize};

/// The whole file. Every field has a default, so an empty file is the built-in default.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServeConfig {
    /// Where the device files live: one directory per namespace (`ns1/nand-0.img`, ...).
    pub data_dir: PathBuf,
    /// Seal every page with AES-256-GCM under the instance key.
    pub encryption: bool,
    /// Geometry of every NAND device.
    pub geometry: Geometry,
    pub ftl: FtlConfig,
    /// vhost-user settings shared by every namespace.
    pub transport: TransportOptions,
    /// The NBD export of every namespace (one listener for all of them).
    pub nbd: NbdConfig,
    #[serde(rename = "namespace")]
    pub namespaces: Vec<NamespaceConfig>,
}

/// One namespace: its own FTL over its own devices, served on its own socket.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NamespaceConfig {
    pub nsid: u32,
    /// NAND devices of this namespace (its FTL spans all of them).
    #[serde(default = "default_devices")]
    pub devices: u32,
    /// vhost-user socket path (relative to the working directory).
    pub socket: PathBuf,
    /// Serial number (20 ASCII characters at most); defaults to `FERRITE-NS<nsid>`.
    #[serde(default)]
    pub serial: Option<String>,
    #[serde(default)]
    pub read_only: bool,
    /// NBD export name; defaults to `ferrite` for the first namespace, `ferrite-<nsid>` for others.
    #[serde(default)]
    pub export: Option<String>,
    /// A remote volume on a `ferrite ebs-server` instead of local devices (`devices` is then
    /// unused): `remote = { server = "127.0.0.1:7000", volume = "v1", credential_file = "..." }`.
    #[serde(default)]
    pub remote: Option<RemoteConfig>,
}

/// `remote = {...}` of a namespace: where its volume is and how to attach it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemoteConfig {
    /// The server's path 0; path i is at its port + i (as `ferrite ebs-server --listen` binds).
    pub server: SocketAddr,
    /// Network paths, as the server's `--paths` (default 4).
    #[serde(default = "default_remote_paths")]
    pub paths: usize,
    /// Largest SRD DATA payload, as the server's `payload_len_max`: the default carries a 4 KiB
    /// block in one datagram (loopback, jumbo frames); 1400 on a path with a 1500-byte MTU.
    #[serde(default = "default_remote_payload_len_max")]
    pub payload_len_max: usize,
    pub volume: String,
    /// The attach credential, read at start (never in this file).
    pub credential_file: PathBuf,
    /// The KEK of a volume sealed by its clients (`ferrite ebs kek generate`); none for a
    /// volume in the clear.
    #[serde(default)]
    pub kek_file: Option<PathBuf>,
    /// How long a request may go unanswered before it fails (and the next reconnects).
    #[serde(default = "default_remote_timeout_ms")]
    pub request_timeout_ms: u64,
    /// How long a start waits for the volume while the server says another client holds it
    /// (a crashed earlier `ferrite serve`, until the server's idle timeout frees it).
    #[serde(default = "default_remote_busy_wait_ms")]
    pub busy_wait_ms: u64,
}

impl RemoteConfig {
    /// The server's path addresses.
    pub fn server_addrs(&self) -> anyhow::Result<Vec<SocketAddr>> {
        (0..self.paths)
            .map(|i| {
                let port = u16::try_from(usize::from(self.server.port()) + i)
                    .ok()
                    .with_context(|| {
                        format!(
                            "remote server {} + {} paths passes port 65535",
                            self.server, self.paths
                        )
                    })?;
                Ok(SocketAddr::new(self.server.ip(), port))
            })
            .collect()
    }
}

fn default_remote_paths() -> usize {
    4
}

fn default_remote_payload_len_max() -> usize {
    ebs_server::srd::config::PAYLOAD_LEN_DEFAULT
}

fn default_remote_timeout_ms() -> u64 {
    5_000
}

fn default_remote_busy_wait_ms() -> u64 {
    15_000
}

/// `[nbd]`: where the NBD exports listen.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NbdConfig {
    pub enabled: bool,
    /// Unix socket path (relative to the working directory).
    pub socket: PathBuf,
    /// Optional TCP address, e.g. "127.0.0.1:10809".
    pub tcp: Option<SocketAddr>,
    /// NBD has no authentication: a TCP address that is not loopback must be asked for.
    pub tcp_allow_remote: bool,
}

impl Default for NbdConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            socket: PathBuf::from("ferrite-nbd.sock"),
            tcp: None,
            tcp_allow_remote: false,
        }
    }
}

fn default_devices() -> u32 {
    8
}

impl Default for ServeConfig {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("ferrite-data"),
            encryption: true,
            geometry: Geometry::default(),
            ftl: FtlConfig::default(),
            transport: TransportOptions::default(),
            nbd: NbdConfig::default(),
            namespaces: vec![NamespaceConfig {
                nsid: 1,
                devices: default_devices(),
                socket: PathBuf::from("ferrite-vhost.sock"),
                serial: None,
                read_only: false,
                export: None,
                remote: None,
            }],
        }
    }
}

impl NamespaceConfig {
    pub fn serial(&self) -> String {
        self.serial
            .clone()
            .unwrap_or_else(|| format!("FERRITE-NS{}", self.nsid))
    }
}

impl ServeConfig {
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let config: Self =
            toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
        config.validate()?;
        Ok(config)
    }

    /// The config file, or the built-in default.
    pub fn load_or_default(path: Option<&Path>) -> anyhow::Result<Self> {
        match path {
            Some(p) => Self::load(p),
            None => Ok(Self::default()),
        }
    }

    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(!self.namespaces.is_empty(), "no [[namespace]] configured");
        for (i, ns) in self.namespaces.iter().enumerate() {
            anyhow::ensure!(ns.nsid >= 1, "namespace nsid must be 1 or more");
            anyhow::ensure!(ns.devices >= 1, "namespace {} has no devices", ns.nsid);
            if let Some(r) = &ns.remote {
                anyhow::ensure!(
                    (1..=ebs_server::srd::packet::PATHS_MAX).contains(&r.paths),
                    "namespace {}: remote paths {} not in 1..={}",
                    ns.nsid,
                    r.paths,
                    ebs_server::srd::packet::PATHS_MAX
                );
                anyhow::ensure!(
                    r.server.port() != 0,
                    "namespace {}: remote server {} needs a port",
                    ns.nsid,
                    r.server
                );
                r.server_addrs()?;
                ebs_server::proto::valid_volume_name(&r.volume).map_err(|p| {
                    anyhow::anyhow!("namespace {}: remote volume {:?}: {p}", ns.nsid, r.volume)
                })?;
                anyhow::ensure!(
                    r.request_timeout_ms > 0,
                    "namespace {}: remote request_timeout_ms must be positive",
                    ns.nsid
                );
            }
            anyhow::ensure!(
                ns.serial().len() <= 20 && ns.serial().is_ascii(),
                "namespace {} serial must be at most 20 ASCII characters",
                ns.nsid
            );
            for other in &self.namespaces[i + 1..] {
                anyhow::ensure!(other.nsid != ns.nsid, "nsid {} used twice", ns.nsid);
                anyhow::ensure!(
                    other.socket != ns.socket,
                    "socket {} used twice",
                    ns.socket.display()
                );
            }
        }
        let names: Vec<String> = self
            .namespaces
            .iter()
            .map(|ns| self.export_name(ns))
            .collect();
        for (i, name) in names.iter().enumerate() {
            anyhow::ensure!(
                !name.is_empty() && name.len() <= 4096,
                "NBD export name {name:?} must be 1 to 4096 bytes"
            );
            anyhow::ensure!(
                !names[i + 1..].contains(name),
                "NBD export name {name:?} used twice"
            );
        }
        if self.nbd.enabled {
            anyhow::ensure!(
                self.namespaces
                    .iter()
                    .all(|ns| ns.socket != self.nbd.socket),
                "[nbd] socket {} is also a namespace's vhost-user socket",
                self.nbd.socket.display()
            );
        }
        if let Some(addr) = self.nbd.tcp {
            anyhow::ensure!(
                addr.ip().is_loopback() || self.nbd.tcp_allow_remote,
                "[nbd] tcp = {addr} is not a loopback address: NBD has no authentication, so \
                 set tcp_allow_remote = true to serve it to other hosts"
            );
        }
        self.geometry
            .validate()
            .map_err(|e| anyhow::anyhow!("geometry: {e}"))?;
        self.ftl
            .validate()
            .map_err(|e| anyhow::anyhow!("ftl: {e}"))?;
        Ok(())
    }

    /// The NBD export name of namespace `ns`.
    pub fn export_name(&self, ns: &NamespaceConfig) -> String {
        if let Some(name) = &ns.export {
            return name.clone();
        }
        let first = self.namespaces.first().map(|n| n.nsid);
        if first == Some(ns.nsid) {
            "ferrite".to_owned()
        } else {
            format!("ferrite-{}", ns.nsid)
        }
    }

    /// The directory of namespace `nsid`'s device files.
    pub fn namespace_dir(&self, nsid: u32) -> PathBuf {
        self.data_dir.join(format!("ns{nsid}"))
    }

    /// Where a running `ferrite serve` answers `ferrite nvme` queries.
    pub fn control_socket(&self) -> PathBuf {
        self.data_dir.join("control.sock")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_file_is_the_default_and_fields_override_it() {
        let empty: ServeConfig = toml::from_str("").unwrap();
        assert_eq!(empty, ServeConfig::default());
        let text = r#"
            data_dir = "/tmp/x"
            encryption = false
            [transport]
            queues = 4
            [[namespace]]
            nsid = 1
            devices = 2
            socket = "a.sock"
            [[namespace]]
            nsid = 2
            devices = 2
            socket = "b.sock"
            read_only = true
            serial = "SER2"
        "#;
        let c: ServeConfig = toml::from_str(text).unwrap();
        c.validate().unwrap();
        assert_eq!(c.transport.queues, 4);
        assert_eq!(c.namespaces.len(), 2);
        assert_eq!(c.namespaces[0].serial(), "FERRITE-NS1");
        assert!(c.namespaces[1].read_only);
        assert!(toml::from_str::<ServeConfig>("bogus = 1").is_err());
        assert!(c.nbd.enabled);
        assert_eq!(c.export_name(&c.namespaces[0]), "ferrite");
        assert_eq!(c.export_name(&c.namespaces[1]), "ferrite-2");
        let named: ServeConfig = toml::from_str(&text.replace(
            "serial = \"SER2\"",
            "serial = \"SER2\"\nexport = \"ferrite\"",
        ))
        .unwrap();
        let e = named.validate().unwrap_err().to_string();
        assert!(e.contains("\"ferrite\" used twice"), "{e}");
        let remote: ServeConfig =
            toml::from_str(&format!("{text}\n[nbd]\ntcp = \"0.0.0.0:10809\"\n")).unwrap();
        assert!(
            remote
                .validate()
                .unwrap_err()
                .to_string()
                .contains("loopback")
        );
        let local: ServeConfig = toml::from_str(&format!(
            "{text}\n[nbd]\ntcp = \"127.0.0.1:10809\"\nsocket = \"x.sock\"\n"
        ))
        .unwrap();
        local.validate().unwrap();
        let dup = text.replace("nsid = 2", "nsid = 1");
        assert!(
            toml::from_str::<ServeConfig>(&dup)
                .unwrap()
                .validate()
                .is_err()
        );
    }
}
