//! `ferrite serve`: namespaces on FTL volumes, each served on a vhost-user-blk socket and as an
//! NBD export (nbd.rs), until
//! Ctrl-C; then every connection is drained and every volume closed with a checkpoint. Or until a
//! terminate (`ferrite terminate`, or a signal under `--terminate-on-exit`): then the key is
//! destroyed, connections drained and every block erased.
//!
//! ```text
//!  instance.rs   which instance and key a start serves; whether old data can still be opened
//!  record.rs     <data_dir>/instance.toml: instance id, encryption, key fingerprint, state
//!  lock.rs       one process owns a data directory
//!  terminate.rs  terminate: record, destroy the key, stop, erase (erase.rs), remove the record
//!  volume.rs     each namespace's FTL volume;  control.rs  the control socket
//! ```

pub mod config;
pub mod control;
pub mod erase;
pub mod generations;
pub mod instance;
pub mod journal;
pub mod lock;
pub mod nbd;
mod note;
pub mod record;
pub mod signal;
pub mod terminate;
pub mod volume;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use nvme_target::nbd::NbdStopHandle;
use nvme_target::vhost::{self, StopHandle};
use nvme_target::{Controller, PowerOnClock};

pub use config::{NamespaceConfig, ServeConfig};

/// How often a running server saves its power-on time (a crash loses at most this much).
const POWER_ON_SAVE_INTERVAL: Duration = Duration::from_secs(300);

/// The QEMU options that attach namespace `ns` (guest RAM must be a shared memfd).
pub fn qemu_command(config: &ServeConfig, ns: &NamespaceConfig) -> String {
    let socket = std::path::absolute(&ns.socket).unwrap_or_else(|_| ns.socket.clone());
    format!(
        "qemu-system-x86_64 -m 1G \
         -object memory-backend-memfd,id=mem,size=1G,share=on -numa node,memdev=mem \
         -chardev socket,id=ferrite{nsid},path={socket} \
         -device vhost-user-blk-pci,chardev=ferrite{nsid},num-queues={queues} ...",
        nsid = ns.nsid,
        socket = socket.display(),
        queues = config.transport.queues,
    )
}

/// The controller over the configured namespaces' volumes.
fn build_controller(
    config: &ServeConfig,
    volumes: &[volume::Volume],
    power_on: &Arc<PowerOnClock>,
) -> (Controller, Vec<Arc<nvme_target::ActiveNamespace>>) {
    let mut controller = Controller::new(
        "FERRITE-CTRL",
        "Ferrite NVMe controller",
        env!("CARGO_PKG_VERSION"),
    );
    let mut active = Vec::new();
    for (ns, vol) in config.namespaces.iter().zip(volumes) {
        let a = volume::activate(ns, vol, power_on);
        controller.add_namespace(a.clone());
        active.push(a);
    }
    (controller, active)
}

fn open_volumes(
    config: &ServeConfig,
    instance: &instance::Instance,
) -> anyhow::Result<Vec<volume::Volume>> {
    let fresh = instance.fresh_reason.is_some();
    config
        .namespaces
        .iter()
        .map(|ns| volume::open_volume(config, ns, instance.key.as_ref(), fresh))
        .collect()
}

/// How a run ends when `stop()` returns true.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RunOptions {
    /// Terminate the instance (destroy its key, erase every block) instead of closing.
    pub terminate_on_exit: bool,
}

/// Runs until `stop()` returns true (Ctrl-C in the CLI) or a terminate request; returns after a
/// clean close, or once the terminated instance is erased.
pub fn run(
    config: &ServeConfig,
    options: RunOptions,
    stop: impl Fn() -> bool,
) -> anyhow::Result<()> {
    config.validate()?;
    let lock = lock::DataDirLock::acquire(&config.data_dir, "serve")?;
    // Bound before any volume opens, so a taken socket or port fails cleanly.
    let nbd_server = nbd::bind(config)?;
    let mut instance = instance::Instance::start(config)?;
    let volumes = open_volumes(config, &instance)?;
    for (v, ns) in volumes.iter().zip(&config.namespaces) {
        println!("{}", v.describe(ns));
    }
    instance.mark_active(&config.data_dir)?;
    let termination = Arc::new(terminate::Termination::serving(
        &config.data_dir,
        instance.record.clone(),
        instance.key.clone(),
    ));
    let power_on = Arc::new(PowerOnClock::running(instance.record.power_on_seconds));
    let (controller, active) = build_controller(config, &volumes, &power_on);
    let controller = Arc::new(controller);
    let stops: Vec<StopHandle> = active.iter().map(|_| StopHandle::new()).collect();
    let nbd_stop = NbdStopHandle::new();
    let control_stop = Arc::new(AtomicBool::new(false));
    let result = std::thread::scope(|s| -> anyhow::Result<()> {
        let mut servers = Vec::new();
        for ((ns_config, ns), stop) in config.namespaces.iter().zip(&active).zip(&stops) {
            let capacity_mib = ns.capacity_bytes() >> 20;
            let (ns, stop) = (ns.clone(), stop.clone());
            let socket = ns_config.socket.clone();
            let options = config.transport.clone();
            servers.push(s.spawn(move || {
                vhost::serve(&socket, ns, &options, &stop).map_err(anyhow::Error::new)
            }));
            println!(
                "namespace {} ({} MiB{}) on {}\n  attach: {}",
                ns_config.nsid,
                capacity_mib,
                if ns_config.read_only {
                    ", read-only"
                } else {
                    ""
                },
                ns_config.socket.display(),
                qemu_command(config, ns_config)
            );
        }
        if let Some(server) = nbd_server {
            nbd::print_exports(config, &active, &server);
            let exports = nbd::exports(config, &active);
            let stop = nbd_stop.clone();
            servers.push(s.spawn(move || {
                server
                    .serve(exports, &stop)
                    .map_err(|e| anyhow::anyhow!("NBD server: {e}"))
            }));
        }
        let control = {
            let (path, controller, termination, flag) = (
                config.control_socket(),
                controller.clone(),
                termination.clone(),
                control_stop.clone(),
            );
            let listener = crate::control_socket::bind(&path)?;
            s.spawn(move || {
                control::serve(&listener, &path, controller, termination, || {
                    flag.load(Ordering::SeqCst)
                })
            })
        };
        println!(
            "control socket {}; Ctrl-C {}",
            config.control_socket().display(),
            if options.terminate_on_exit {
                "terminates the instance (--terminate-on-exit)"
            } else {
                "stops"
            }
        );
        let mut power_on_saved = Instant::now();
        while !stop() && !termination.begun() && !servers.iter().any(|t| t.is_finished()) {
            std::thread::sleep(Duration::from_millis(100));
            if power_on_saved.elapsed() >= POWER_ON_SAVE_INTERVAL {
                power_on_saved = Instant::now();
                if let Err(e) = termination.save_power_on(power_on.seconds()) {
                    tracing::warn!(error = %format!("{e:#}"), "could not save the power-on time");
                }
            }
        }
        let mut first_error = None;
        if options.terminate_on_exit && !termination.begun() {
            // Keys first: destroyed before the connections are even drained.
            if let Err(e) = termination.begin() {
                first_error = Some(e);
            }
        }
        for h in &stops {
            h.stop();
        }
        // NBD connections finish the requests they hold before the volumes close below.
        nbd_stop.stop();
        control_stop.store(true, Ordering::SeqCst);
        for t in servers {
            match t.join() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    first_error.get_or_insert(e);
                }
                Err(_) => {
                    first_error.get_or_insert(anyhow::anyhow!("a namespace server panicked"));
                }
            }
        }
        match control.join() {
            Ok(r) => {
                if let Err(e) = r {
                    first_error.get_or_insert(e);
                }
            }
            Err(_) => {
                first_error.get_or_insert(anyhow::anyhow!("the control server panicked"));
            }
        }
        first_error.map_or(Ok(()), Err)
    });
    drop(active);
    drop(controller);
    if termination.begun() {
        // No close: the key is destroyed, so nothing more may be sealed or checkpointed; the
        // devices are erased instead, while a new `ferrite serve` waits for the lock.
        drop(volumes);
        lock.set_erasing(termination.instance_id())?;
        termination.serving_stopped();
        let erased = termination.complete();
        termination.finish(&erased);
        return erased.and(result);
    }
    for v in volumes {
        volume::close_volume(v)?;
    }
    // Erased blocks keep their data bytes while serving (`FileErase::KeepData`); a clean stop
    // leaves no such bytes in the files, as a terminate does not either.
    let mut dropped_blocks = 0;
    for ns in config.namespaces.iter().filter(|ns| ns.remote.is_none()) {
        dropped_blocks += volume::drop_erased_data(config, ns)?;
    }
    termination.save_power_on(power_on.seconds())?;
    println!("closed cleanly (the data of {dropped_blocks} erased blocks dropped)");
    result
}

/// Identify or SMART data of a namespace: from the running server if there is one, else by
/// opening the stopped namespace's devices (and closing them again).
pub fn nvme_query(config: &ServeConfig, request: &str, nsid: u32) -> anyhow::Result<String> {
    let line = if request == "identify-controller" {
        request.to_owned()
    } else {
        format!("{request} {nsid}")
    };
    if let Some(v) = control::query(&config.control_socket(), &line)? {
        return Ok(serde_json::to_string_pretty(&v)?);
    }
    let ns = config
        .namespaces
        .iter()
        .find(|n| n.nsid == nsid)
        .with_context(|| format!("no namespace {nsid} in the configuration"))?;
    anyhow::ensure!(
        ns.remote.is_none(),
        "namespace {nsid} is a remote volume: query it while ferrite serve runs"
    );
    anyhow::ensure!(
        crate::glue::device_path(&config.namespace_dir(nsid), 0).exists(),
        "namespace {nsid} has no devices under {} (never served?)",
        config.namespace_dir(nsid).display()
    );
    // Identify and SMART read no host data, so no instance key is needed to open the volume.
    let vol = volume::open_volume(config, ns, None, false)?;
    let power_on_seconds =
        record::InstanceRecord::load(&config.data_dir)?.map_or(0, |r| r.power_on_seconds);
    let (controller, active) = build_controller(
        &ServeConfig {
            namespaces: vec![ns.clone()],
            ..config.clone()
        },
        std::slice::from_ref(&vol),
        &Arc::new(PowerOnClock::stopped(power_on_seconds)),
    );
    let value = control::answer(&controller, &line);
    drop(active);
    drop(controller);
    volume::close_volume(vol)?;
    if let Some(e) = value.get("error") {
        anyhow::bail!("{e}");
    }
    Ok(serde_json::to_string_pretty(&value)?)
}
