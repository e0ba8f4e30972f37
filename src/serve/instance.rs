//! Which instance a `ferrite serve` start serves, with which key, and whether the data on the
//! devices can still be opened.
//!
//! As on Nitro, instance-store data survives a restart of the server (a stop, crash or upgrade of
//! `ferrite serve`: the key stays in the kernel keyring), but not a terminate or a host reboot
//! (the key is gone). When the key had to be created anew while the devices already hold data,
//! that data is sealed under a key that no longer exists, so every namespace is formatted fresh
//! rather than served as a wall of authentication failures.

use std::path::Path;

use anyhow::Context;
use keys::{InstanceKey, KeyError, KeyOrigin};

use super::config::ServeConfig;
use super::erase;
use super::record::{InstanceRecord, InstanceState};
use super::terminate::Termination;

/// Where this process got the instance key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeySource {
    Keyring(KeyOrigin),
    /// The keyring is unavailable here: a key held by this process only, lost when it ends.
    ProcessOnly,
}

/// The instance this process serves.
#[derive(Debug)]
pub struct Instance {
    pub record: InstanceRecord,
    pub key: Option<InstanceKey>,
    /// Why every namespace whose devices exist must be formatted fresh (`None`: recover them).
    pub fresh_reason: Option<String>,
}

impl Instance {
    /// Loads or creates the instance of `config.data_dir` and its key, and records it (state
    /// `Formatting` while old devices are to be formatted, else `Active`). The caller holds the
    /// data directory's lock.
    pub fn start(config: &ServeConfig) -> anyhow::Result<Self> {
        let data_dir = &config.data_dir;
        let recorded = match InstanceRecord::load(data_dir)? {
            Some(r) if r.state == InstanceState::Terminating => {
                eprintln!(
                    "instance {}: a terminate did not finish; finishing it first",
                    r.instance_id
                );
                Termination::stopped(data_dir, r).run()?;
                None
            }
            other => other,
        };
        if let Some(r) = &recorded {
            check_encryption_setting(data_dir, r, config.encryption)?;
        }
        let mut record = match &recorded {
            Some(r) => r.clone(),
            None => InstanceRecord::new(config.encryption)?,
        };
        let opened = if config.encryption {
            Some(open_key(&record.instance_id)?)
        } else {
            None
        };
        let devices_exist = !erase::namespaces(data_dir)?.is_empty();
        let fresh_reason = match &recorded {
            None => devices_exist.then(|| {
                format!(
                    "no instance was recorded in {}: the devices hold no data of the new \
                     instance {}",
                    InstanceRecord::path(data_dir).display(),
                    record.instance_id
                )
            }),
            Some(r) => stale_data_reason(r, opened.as_ref()).filter(|_| devices_exist),
        };
        record.key_fingerprint = opened.as_ref().map(|(k, _)| k.fingerprint().to_owned());
        record.state = if fresh_reason.is_some() {
            InstanceState::Formatting
        } else {
            InstanceState::Active
        };
        record.save(data_dir)?;
        print_start(&record, recorded.is_some(), opened.as_ref());
        if let Some(reason) = &fresh_reason {
            eprintln!("every namespace is formatted fresh: {reason}");
        }
        Ok(Self {
            record,
            key: opened.map(|(k, _)| k),
            fresh_reason,
        })
    }

    /// Records that every namespace is formatted or recovered: from now on a restart keeps data.
    pub fn mark_active(&mut self, data_dir: &Path) -> anyhow::Result<()> {
        if self.record.state != InstanceState::Active {
            self.record.state = InstanceState::Active;
            self.record.save(data_dir)?;
        }
        Ok(())
    }
}

fn check_encryption_setting(
    data_dir: &Path,
    record: &InstanceRecord,
    encryption: bool,
) -> anyhow::Result<()> {
    let on_off = |b: bool| if b { "on" } else { "off" };
    anyhow::ensure!(
        record.encryption == encryption,
        "instance {} in {} was created with encryption {}, but the configuration says encryption \
         {}; changing it needs a new instance: `ferrite terminate --data {}` erases this one \
         (all its data), then `ferrite serve` creates the new one",
        record.instance_id,
        data_dir.display(),
        on_off(record.encryption),
        on_off(encryption),
        data_dir.display()
    );
    Ok(())
}

/// Why the data of a recorded instance cannot be opened with the key this process has, if so.
fn stale_data_reason(
    record: &InstanceRecord,
    opened: Option<&(InstanceKey, KeySource)>,
) -> Option<String> {
    let id = &record.instance_id;
    if record.state == InstanceState::Formatting {
        return Some(format!(
            "an earlier start of instance {id} did not finish formatting"
        ));
    }
    let (key, source) = opened?;
    let recorded = record.key_fingerprint.as_deref().unwrap_or("none recorded");
    match source {
        KeySource::Keyring(KeyOrigin::Created) => Some(format!(
            "the key of instance {id} (fingerprint {recorded}) is gone from the kernel keyring \
             (the host rebooted, or a terminate did not finish), so the data sealed under it can \
             never be opened again, as instance-store data after a host failure"
        )),
        KeySource::ProcessOnly => Some(format!(
            "the key of instance {id} (fingerprint {recorded}) was held by a process only (no \
             kernel keyring) and ended with it, so the data sealed under it cannot be opened"
        )),
        KeySource::Keyring(KeyOrigin::FromKeyring)
            if record.key_fingerprint.as_deref() != Some(key.fingerprint()) =>
        {
            Some(format!(
                "the kernel keyring holds a key of instance {id} with fingerprint {}, not the \
                 recorded {recorded} that sealed the data (a start that crashed before recording \
                 its new key)",
                key.fingerprint()
            ))
        }
        KeySource::Keyring(KeyOrigin::FromKeyring) => None,
    }
}

/// The instance key from the kernel keyring, or a new one there; where the keyring is
/// unavailable, a key held by this process only (said on stderr: the data will not survive).
fn open_key(instance_id: &str) -> anyhow::Result<(InstanceKey, KeySource)> {
    match InstanceKey::open_or_create(instance_id, keys::Backend::AwsLc) {
        Ok((key, origin)) => Ok((key, KeySource::Keyring(origin))),
        Err(e @ KeyError::KeyringUnavailable { .. }) => {
            eprintln!(
                "warning: {e}\nwarning: instance {instance_id} uses a key held in this process \
                 only: its data will not survive a stop, crash or restart of ferrite serve"
            );
            let key = InstanceKey::generate(keys::Backend::AwsLc)
                .with_context(|| format!("generating a key for instance {instance_id}"))?;
            Ok((key, KeySource::ProcessOnly))
        }
        Err(e) => Err(e).with_context(|| format!("opening the key of instance {instance_id}")),
    }
}

/// One line on stdout: the instance, and for its key only public facts (never key bytes).
fn print_start(record: &InstanceRecord, recorded: bool, opened: Option<&(InstanceKey, KeySource)>) {
    let id = &record.instance_id;
    let which = if recorded { "restarted" } else { "new" };
    match opened {
        None => println!("instance {id} ({which}): encryption off"),
        Some((key, source)) => {
            let held = match source {
                KeySource::Keyring(KeyOrigin::FromKeyring) => "from the kernel keyring",
                KeySource::Keyring(KeyOrigin::Created) => "created, kept in the kernel keyring",
                KeySource::ProcessOnly => "created, held by this process only",
            };
            println!(
                "instance {id} ({which}): encryption on, key fingerprint {} ({held}), key \
                 memory {}",
                key.fingerprint(),
                keys::key_memory()
            );
        }
    }
}
