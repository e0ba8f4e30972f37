//! Terminate: the end of an instance. In order:
//!
//! 1. the instance record is marked `terminating` (a crash from here on is finished by the next
//!    `ferrite serve` or `ferrite terminate`, never served as the old instance);
//! 2. the key is destroyed in the serving process and in the kernel keyring (crypto-erase: from
//!    here on no sealed page opens, anywhere);
//! 3. a running `ferrite serve` stops serving (in-flight requests drained);
//! 4. every block of every namespace is erased;
//! 5. the record is removed, so the next `ferrite serve` creates a new instance, with a new key,
//!    on fresh namespaces.
//!
//! `ferrite terminate` asks a running `ferrite serve` to do this over its control socket (it holds
//! the key and the devices), and does it itself for a stopped instance. As on AWS, it returns
//! once the data is unreadable (steps 1-3: the key is gone) and the media erase (steps 4-5) goes
//! on in the background: in the `ferrite serve` that was asked, which exits when done, or for a
//! stopped instance in a detached `ferrite terminate --erase-in-background` whose output goes to
//! `<data_dir>/erase.log`. Either holds the data directory's lock with an `erase` note, so the
//! next `ferrite serve` waits for the erase (lock.rs) and then finds fresh namespaces. `--wait`
//! waits for the erase instead.

use std::io::Write;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};

use anyhow::Context;
use keys::{InstanceKey, KeyError};

use super::config::ServeConfig;
use super::control::{self, TerminateOutcome};
use super::erase;
use super::lock::DataDirLock;
use super::record::{InstanceRecord, InstanceState};

/// The terminate of one instance, begun at most once, by whichever comes first: a `terminate`
/// request on the control socket, a signal under `--terminate-on-exit`, or `ferrite terminate`.
#[derive(Debug)]
pub struct Termination {
    data_dir: PathBuf,
    record: InstanceRecord,
    key: Option<InstanceKey>,
    /// Step 1 done: the server must stop and erase, never close normally.
    begun: Mutex<bool>,
    /// Step 2 done: erasing may start.
    key_destroyed: AtomicBool,
    /// The `ferrite terminate` that asked, which gets every progress line as JSON.
    client: Mutex<Option<UnixStream>>,
}

impl Termination {
    /// For a running `ferrite serve`, which holds `key` (None when encryption is off).
    pub fn serving(data_dir: &Path, record: InstanceRecord, key: Option<InstanceKey>) -> Self {
        Self {
            data_dir: data_dir.to_owned(),
            record,
            key,
            begun: Mutex::new(false),
            key_destroyed: AtomicBool::new(false),
            client: Mutex::new(None),
        }
    }

    /// For a stopped instance: its key, if any, is only in the kernel keyring.
    pub fn stopped(data_dir: &Path, record: InstanceRecord) -> Self {
        Self::serving(data_dir, record, None)
    }

    pub fn instance_id(&self) -> &str {
        &self.record.instance_id
    }

    /// All steps, for a stopped instance (the caller holds the data directory's lock).
    pub fn run(self) -> anyhow::Result<()> {
        self.begin()?;
        let result = self.complete();
        self.finish(&result);
        result
    }

    /// Whether steps 1 and 2 began: the server must stop and call `complete`.
    pub fn begun(&self) -> bool {
        *self.begun.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Saves the instance's power-on time in its record, unless a terminate began (then the
    /// record says `terminating` and must stay so). Under the same lock as `begin`, so the two
    /// never overwrite each other.
    pub fn save_power_on(&self, seconds: u64) -> anyhow::Result<()> {
        let begun = self.begun.lock().unwrap_or_else(PoisonError::into_inner);
        if *begun {
            return Ok(());
        }
        let mut record = self.record.clone();
        record.power_on_seconds = seconds;
        record.save(&self.data_dir)
    }

    /// Steps 1 and 2; idempotent.
    pub fn begin(&self) -> anyhow::Result<()> {
        let mut begun = self.begun.lock().unwrap_or_else(PoisonError::into_inner);
        if *begun {
            return Ok(());
        }
        let mut record = self.record.clone();
        record.state = InstanceState::Terminating;
        record.save(&self.data_dir)?;
        *begun = true;
        self.report(&format!(
            "instance {}: terminating (recorded in {})",
            self.instance_id(),
            InstanceRecord::path(&self.data_dir).display()
        ));
        let destroyed = self.destroy_key();
        if let Err(e) = &destroyed {
            self.report(&format!("error: {e:#}"));
        }
        destroyed
    }

    /// A `terminate <instance id>` request from the control socket: the reply goes to `stream`.
    pub fn request(&self, instance_id: &str, stream: UnixStream) {
        *self.client.lock().unwrap_or_else(PoisonError::into_inner) = Some(stream);
        if instance_id != self.instance_id() {
            self.finish(&Err(anyhow::anyhow!(
                "this ferrite serve serves instance {}, not {instance_id:?}",
                self.instance_id()
            )));
            return;
        }
        if let Err(e) = self.begin()
            && !self.begun()
        {
            // Nothing changed: the server goes on serving, and the client hears why.
            self.finish(&Err(e));
        }
    }

    fn destroy_key(&self) -> anyhow::Result<()> {
        let id = self.instance_id();
        let fingerprint = self.record.key_fingerprint.as_deref().unwrap_or("unknown");
        let outcome = match &self.key {
            Some(key) => key.destroy_everywhere(),
            None if self.record.encryption => InstanceKey::terminate(id),
            None => {
                self.report(&format!("instance {id}: encryption off, no key to destroy"));
                self.key_destroyed.store(true, Ordering::SeqCst);
                return Ok(());
            }
        };
        let in_process = self.key.is_some();
        let line = match outcome {
            Ok(true) if in_process => format!(
                "instance {id}: key {fingerprint} destroyed in ferrite serve and in the kernel \
                 keyring"
            ),
            Ok(true) => format!("instance {id}: key {fingerprint} destroyed in the kernel keyring"),
            Ok(false) => format!(
                "instance {id}: key {fingerprint} {}no longer in the kernel keyring (destroyed \
                 before, or lost in a host reboot)",
                if in_process {
                    "destroyed in ferrite serve; "
                } else {
                    ""
                }
            ),
            Err(e @ KeyError::KeyringUnavailable { .. }) => format!(
                "instance {id}: key {fingerprint} {}the kernel keyring is unavailable ({e}), so \
                 the key only ever lived in the serving process and is gone with it",
                if in_process {
                    "destroyed in ferrite serve; "
                } else {
                    ""
                }
            ),
            Err(e) => {
                return Err(e).with_context(|| {
                    format!("destroying the key of instance {id} in the kernel keyring")
                });
            }
        };
        self.report(&line);
        self.key_destroyed.store(true, Ordering::SeqCst);
        Ok(())
    }

    /// Steps 4 and 5, once the server stopped serving.
    pub fn complete(&self) -> anyhow::Result<()> {
        let id = self.instance_id();
        anyhow::ensure!(
            self.key_destroyed.load(Ordering::SeqCst),
            "the key of instance {id} was not destroyed, so its blocks were not erased; run \
             `ferrite terminate --data {}` again",
            self.data_dir.display()
        );
        let tally = erase::erase_all(&self.data_dir, &mut |line| self.report(line))
            .with_context(|| format!("erasing the devices of instance {id}"))?;
        InstanceRecord::remove(&self.data_dir)?;
        self.report(&format!(
            "instance {id}: erased {} blocks on {} devices; instance record removed, the next \
             `ferrite serve` creates a new instance",
            tally.erased_blocks, tally.devices
        ));
        Ok(())
    }

    /// Steps 1-3 are done in a running server: the data is unreadable and nothing is served any
    /// more. The client may stop listening here and leave the erase to the server.
    pub fn serving_stopped(&self) {
        let line = serde_json::json!({ "crypto_erased": self.instance_id() });
        let mut client = self.client.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(stream) = client.as_mut()
            && writeln!(stream, "{line}").is_err()
        {
            *client = None;
        }
    }

    /// The last line to the client: done, or why not.
    pub fn finish(&self, result: &anyhow::Result<()>) {
        let line = match result {
            Ok(()) => serde_json::json!({ "terminated": self.instance_id() }),
            Err(e) => serde_json::json!({ "error": format!("{e:#}") }),
        };
        if let Some(mut client) = self
            .client
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        {
            // The client may have gone; the outcome is on stderr all the same.
            let _ = writeln!(client, "{line}");
        }
    }

    /// A progress line: on stderr, and to the client if one asked.
    fn report(&self, line: &str) {
        eprintln!("terminate: {line}");
        let mut client = self.client.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(stream) = client.as_mut()
            && writeln!(stream, "{}", serde_json::json!({ "progress": line })).is_err()
        {
            *client = None;
        }
    }
}

/// Log of the background erase of a stopped instance, in its data directory.
pub const ERASE_LOG: &str = "erase.log";

/// `ferrite terminate`: through the running `ferrite serve` if there is one, else here. Returns
/// once the key is destroyed, leaving the erase to the background, or with `wait` once every
/// block is erased.
pub fn terminate_instance(config: &ServeConfig, wait: bool) -> anyhow::Result<()> {
    let data_dir = &config.data_dir;
    anyhow::ensure!(
        data_dir.is_dir(),
        "no data directory {} (set it with --data or data_dir in --config)",
        data_dir.display()
    );
    let Some(record) = InstanceRecord::load(data_dir)? else {
        println!(
            "no instance recorded in {}: nothing to terminate (terminated already, or never \
             served)",
            InstanceRecord::path(data_dir).display()
        );
        return Ok(());
    };
    let id = record.instance_id.clone();
    let asked = control::request_terminate(&config.control_socket(), &id, wait, &mut |line| {
        eprintln!("terminate: {line}")
    })?;
    match asked {
        Some(TerminateOutcome::Erased) => println!("instance {id} terminated"),
        Some(TerminateOutcome::Erasing) => println!(
            "instance {id} terminated: key destroyed, so its data can no longer be read; the \
             ferrite serve that served it erases every block in the background and then exits"
        ),
        None => terminate_stopped(data_dir, &id, wait)?,
    }
    Ok(())
}

/// The terminate of a stopped instance, done here.
fn terminate_stopped(data_dir: &Path, id: &str, wait: bool) -> anyhow::Result<()> {
    let lock = DataDirLock::acquire(data_dir, &format!("terminate instance {id}"))?;
    // Read again under the lock: a server that stopped meanwhile, or a background erase we
    // waited for, may have changed it.
    let record = match InstanceRecord::load(data_dir)? {
        Some(r) if r.instance_id == id => r,
        None => {
            println!("instance {id} terminated (finished by another process)");
            return Ok(());
        }
        Some(_) => anyhow::bail!(
            "the instance record in {} changed while terminating instance {id}; run \
             `ferrite terminate` again",
            data_dir.display()
        ),
    };
    if wait {
        lock.set_erasing(id)?;
        Termination::stopped(data_dir, record).run()?;
        println!("instance {id} terminated");
        return Ok(());
    }
    // From here on whoever finds the lock held waits for the erase (ours, then the eraser's).
    lock.set_erasing(id)?;
    let termination = Termination::stopped(data_dir, record);
    termination.begin()?;
    // Started while we still hold the lock: the eraser takes it over when we exit.
    let (pid, log) = spawn_background_erase(data_dir, id)?;
    println!(
        "instance {id} terminated: key destroyed, so its data can no longer be read; every block \
         is being erased in the background (pid {pid}, log {}); `ferrite serve` waits for it",
        log.display()
    );
    Ok(())
}

/// Starts `ferrite terminate --data DIR --erase-in-background ID`, detached from our terminal
/// (its own process group, so a Ctrl-C there does not stop it) and writing to `erase.log`.
fn spawn_background_erase(data_dir: &Path, id: &str) -> anyhow::Result<(u32, PathBuf)> {
    let exe = std::env::current_exe().context("finding the ferrite executable")?;
    let data_dir = std::path::absolute(data_dir)?;
    let log_path = data_dir.join(ERASE_LOG);
    let log = std::fs::File::create(&log_path)
        .with_context(|| format!("creating {}", log_path.display()))?;
    let child = Command::new(exe)
        .arg("terminate")
        .arg("--data")
        .arg(&data_dir)
        .arg("--erase-in-background")
        .arg(id)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .process_group(0)
        .spawn()
        .context("starting the background erase")?;
    Ok((child.id(), log_path))
}

/// The background erase of instance `id`, begun by `terminate_stopped` (which destroyed the key):
/// waits for the lock, then erases, unless another process (a `ferrite serve` that started
/// first) finished it meanwhile.
pub fn erase_in_background(data_dir: &Path, id: &str) -> anyhow::Result<()> {
    let still_terminating = || -> anyhow::Result<bool> {
        Ok(InstanceRecord::load(data_dir)?
            .is_some_and(|r| r.instance_id == id && r.state == InstanceState::Terminating))
    };
    let lock = DataDirLock::acquire_for_erase(data_dir, id, &mut || still_terminating())?;
    let record = match (lock, InstanceRecord::load(data_dir)?) {
        (Some(_lock), Some(r)) if r.instance_id == id && r.state == InstanceState::Terminating => {
            eprintln!("erasing the blocks of terminated instance {id}");
            Termination::stopped(data_dir, r).run()?;
            println!("instance {id} erased");
            return Ok(());
        }
        (_, r) => r,
    };
    println!(
        "instance {id}: nothing left to erase (another process finished it{})",
        record.map_or(String::new(), |r| format!(
            "; the data directory now holds instance {}",
            r.instance_id
        ))
    );
    Ok(())
}
