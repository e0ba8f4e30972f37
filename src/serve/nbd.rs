//! The NBD side of `ferrite serve`: one listener (unix socket, optionally TCP) exporting every
//! namespace under its export name, and the fio command line that drives it.

use std::sync::Arc;

use nvme_target::ActiveNamespace;
use nvme_target::nbd::{Export, Listen, NbdServer};

use super::config::ServeConfig;

/// Binds the configured listeners, or None when `[nbd] enabled = false`.
pub fn bind(config: &ServeConfig) -> anyhow::Result<Option<NbdServer>> {
    if !config.nbd.enabled {
        return Ok(None);
    }
    let mut listen = vec![Listen::Unix(config.nbd.socket.clone())];
    if let Some(addr) = config.nbd.tcp {
        listen.push(Listen::Tcp(addr));
    }
    let server = NbdServer::bind(&listen).map_err(|e| anyhow::anyhow!("NBD listener: {e}"))?;
    Ok(Some(server))
}

/// Every namespace as an export.
pub fn exports(config: &ServeConfig, active: &[Arc<ActiveNamespace>]) -> Vec<Export> {
    config
        .namespaces
        .iter()
        .zip(active)
        .map(|(ns, a)| Export {
            name: config.export_name(ns),
            description: format!("Ferrite namespace {}", ns.nsid),
            namespace: a.clone(),
        })
        .collect()
}

/// The fio command that runs 4 KiB random reads at queue depth 32 over an export.
pub fn fio_command(socket: &std::path::Path, export: &str, size_bytes: u64) -> String {
    let socket = std::path::absolute(socket).unwrap_or_else(|_| socket.to_owned());
    format!(
        "fio --name=randread --ioengine=nbd --uri='nbd+unix:///{export}?socket={}' \
         --rw=randread --bs=4k --iodepth=32 --size={size_bytes}",
        socket.display()
    )
}

pub fn print_exports(config: &ServeConfig, active: &[Arc<ActiveNamespace>], server: &NbdServer) {
    let tcp: Vec<String> = server
        .tcp_addrs()
        .iter()
        .map(|a| format!(", tcp {a}"))
        .collect();
    println!("NBD on {}{}", config.nbd.socket.display(), tcp.concat());
    for (ns, a) in config.namespaces.iter().zip(active) {
        let name = config.export_name(ns);
        println!(
            "  export {name} (namespace {}): {}",
            ns.nsid,
            fio_command(&config.nbd.socket, &name, a.capacity_bytes())
        );
    }
}
