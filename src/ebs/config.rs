//! `ferrite ebs-server --config FILE` (TOML): every setting of the server in one file; the
//! command-line flags, where given, override it. Every field has a default, so an empty file is
//! the built-in default (which still needs `listen` and `data`, from the file or the flags).
//!
//! ```toml
//! listen = "127.0.0.1:7400"    # path i on port + i
//! data = "ebs-data"
//! paths = 4
//! payload_len_max = 4224       # one 4 KiB block per datagram; 1400 on a 1500-byte MTU path
//! devices = 8
//! extent_blocks = 256          # fixed when the catalog is created
//! [geometry]                   # of devices created on the first start
//! channels = 1
//! dies_per_channel = 2
//! planes_per_die = 1
//! blocks_per_plane = 256
//! pages_per_block = 64
//! page_size = 4096
//! oob_size = 64
//! [ftl]                        # the FTL's settings (FtlConfig), as in ferrite serve
//! [limits]
//! connections_max = 256
//! idle_timeout_ms = 10000
//! handshakes_pending_max = 64
//! handshake_timeout_ms = 5000
//! ```

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context;
use ebs_server::server::{
    CONNECTIONS_MAX_DEFAULT, HANDSHAKE_TIMEOUT_MS_DEFAULT, HANDSHAKES_PENDING_MAX_DEFAULT,
    IDLE_TIMEOUT_MS_DEFAULT, ServerConfig,
};
use ftl::FtlConfig;
use ftl::nand::Geometry;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EbsServerConfig {
    pub listen: Option<SocketAddr>,
    pub data: Option<PathBuf>,
    pub paths: usize,
    /// Largest SRD DATA payload (`srd::Config::payload_len_max`): the default carries a 4 KiB
    /// block in one datagram (loopback, jumbo frames); a path with a 1500-byte MTU needs
    /// `srd::config::PAYLOAD_LEN_MTU_1500` (1400). Clients should use the same value.
    pub payload_len_max: usize,
    pub devices: u32,
    pub extent_blocks: u64,
    pub geometry: Geometry,
    pub ftl: FtlConfig,
    pub limits: Limits,
}

/// The server's limits on its clients.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    pub connections_max: usize,
    /// A connection no authentic datagram came from for this long is dropped, and its volume
    /// released (how a crashed client's volume becomes attachable again).
    pub idle_timeout_ms: u64,
    pub handshakes_pending_max: usize,
    pub handshake_timeout_ms: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            connections_max: CONNECTIONS_MAX_DEFAULT,
            idle_timeout_ms: IDLE_TIMEOUT_MS_DEFAULT,
            handshakes_pending_max: HANDSHAKES_PENDING_MAX_DEFAULT,
            handshake_timeout_ms: HANDSHAKE_TIMEOUT_MS_DEFAULT,
        }
    }
}

impl Default for EbsServerConfig {
    fn default() -> Self {
        Self {
            listen: None,
            data: None,
            paths: 4,
            payload_len_max: ebs_server::srd::config::PAYLOAD_LEN_DEFAULT,
            devices: 8,
            extent_blocks: 256,
            geometry: Geometry {
                channels: 1,
                dies_per_channel: 2,
                planes_per_die: 1,
                blocks_per_plane: 256,
                pages_per_block: 64,
                page_size: 4096,
                oob_size: 64,
            },
            ftl: FtlConfig::default(),
            limits: Limits::default(),
        }
    }
}

impl EbsServerConfig {
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))
    }

    /// The transport server's settings.
    pub fn server_config(&self) -> ServerConfig {
        let mut c = ServerConfig {
            connections_max: self.limits.connections_max,
            idle_timeout_ms: self.limits.idle_timeout_ms,
            handshakes_pending_max: self.limits.handshakes_pending_max,
            handshake_timeout_ms: self.limits.handshake_timeout_ms,
            ..ServerConfig::default()
        };
        c.srd.path_count = self.paths;
        c.srd.payload_len_max = self.payload_len_max;
        c
    }

    /// Checks everything a start needs, each problem named.
    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.listen.is_some(),
            "no listen address: --listen ADDR or listen = \"...\" in the config"
        );
        anyhow::ensure!(
            self.data.is_some(),
            "no data directory: --data DIR or data = \"...\" in the config"
        );
        anyhow::ensure!(
            (1..=ebs_server::srd::packet::PATHS_MAX).contains(&self.paths),
            "paths {} not in 1..={}",
            self.paths,
            ebs_server::srd::packet::PATHS_MAX
        );
        anyhow::ensure!(self.devices >= 1, "devices must be at least 1");
        anyhow::ensure!(self.extent_blocks >= 1, "extent_blocks must be at least 1");
        anyhow::ensure!(
            self.geometry.page_size == 4096,
            "geometry.page_size {} : remote volumes use 4096-byte pages",
            self.geometry.page_size
        );
        self.geometry
            .validate()
            .map_err(|e| anyhow::anyhow!("geometry: {e}"))?;
        self.ftl
            .validate()
            .map_err(|e| anyhow::anyhow!("ftl: {e}"))?;
        self.server_config()
            .validate()
            .map_err(|e| anyhow::anyhow!("limits: {e}"))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_file_is_the_default_and_every_section_parses() {
        let c: EbsServerConfig = toml::from_str("").unwrap();
        assert_eq!(c, EbsServerConfig::default());
        assert!(c.validate().unwrap_err().to_string().contains("no listen"));
        let c: EbsServerConfig = toml::from_str(
            r#"
listen = "127.0.0.1:7400"
data = "d"
paths = 2
payload_len_max = 1400
devices = 3
extent_blocks = 64
[geometry]
channels = 2
dies_per_channel = 2
planes_per_die = 1
blocks_per_plane = 32
pages_per_block = 32
page_size = 4096
oob_size = 64
[limits]
idle_timeout_ms = 3000
"#,
        )
        .unwrap();
        c.validate().unwrap();
        assert_eq!(c.server_config().idle_timeout_ms, 3000);
        assert_eq!(c.server_config().srd.path_count, 2);
        assert_eq!(c.server_config().srd.payload_len_max, 1400);
        assert_eq!(c.geometry.channels, 2);
    }

    #[test]
    fn bad_settings_are_refused_by_name() {
        assert!(
            toml::from_str::<EbsServerConfig>("pathz = 3")
                .unwrap_err()
                .to_string()
                .contains("pathz")
        );
        let base = EbsServerConfig {
            listen: Some("127.0.0.1:1".parse().unwrap()),
            data: Some("d".into()),
            ..EbsServerConfig::default()
        };
        type Mutation = fn(&mut EbsServerConfig);
        let cases: [(Mutation, &str); 5] = [
            (|c| c.paths = 0, "paths"),
            (|c| c.payload_len_max = 0, "payload_len_max"),
            (|c| c.limits.idle_timeout_ms = 0, "idle_timeout_ms"),
            (|c| c.geometry.page_size = 16384, "page_size"),
            (|c| c.data = None, "no data directory"),
        ];
        for (mutate, text) in cases {
            let mut c = base.clone();
            mutate(&mut c);
            let e = c.validate().unwrap_err().to_string();
            assert!(e.contains(text), "{e}");
        }
    }
}
