//! Two network namespaces joined by a veth pair, with nftables dropping a share of the packets
//! that arrive on each end: loss for TCP, which a user-space relay cannot impose (it would see a
//! byte stream, not segments). The kernel here has no netem; `numgen random` drops in nftables
//! do work. Needs root and the `ip` (iproute2) and `nft` (nftables) programs; every step runs
//! one of them and fails with its command line and stderr, so a caller can skip cleanly.
//!
//! ```text
//!  netns <tag>-a: veth <tag>a 10.<subnet>.0.1/24  <==>  veth <tag>b 10.<subnet>.0.2/24 :netns <tag>-b
//!                 input: iifname <tag>a numgen random mod 100 < N drop    (and likewise on b)
//! ```
//!
//! Code runs inside a namespace through [`NetnsPair::command`] (`ip netns exec`), or by a thread
//! that joins the namespace file [`NetnsPair::netns_path`] with `setns(2)`.

use std::fmt;
use std::io::Write;
use std::net::Ipv4Addr;
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::thread::JoinHandle;
use thiserror::Error;

/// The nftables table each namespace gets; deleting it removes the loss.
const TABLE: &str = "ferrite_loss";
/// Interface names are at most 15 bytes (IFNAMSIZ - 1); a tag leaves room for its suffix.
const TAG_LEN_MAX: usize = 12;

#[derive(Debug, Error)]
pub enum NetnsError {
    #[error("network namespaces need root (running as uid {0})")]
    NotRoot(u32),
    #[error("`{command}` could not run: {reason}")]
    Spawn { command: String, reason: String },
    #[error("`{command}` failed ({status}): {stderr}")]
    Failed {
        command: String,
        status: String,
        stderr: String,
    },
    #[error("invalid netns pair: {0}")]
    Invalid(String),
}

/// One of the two namespaces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    A,
    B,
}

impl Side {
    fn index(self) -> usize {
        match self {
            Side::A => 0,
            Side::B => 1,
        }
    }
}

/// The two namespaces, torn down on drop.
pub struct NetnsPair {
    netns: [String; 2],
    veth: [String; 2],
    addrs: [Ipv4Addr; 2],
    torn_down: bool,
}

impl fmt::Debug for NetnsPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NetnsPair")
            .field("netns", &self.netns)
            .field("veth", &self.veth)
            .field("addrs", &self.addrs)
            .finish()
    }
}

/// Runs `f` on a new thread that first enters the network namespace at `netns` (a
/// [`NetnsPair::netns_path`]): sockets it makes stay in that namespace, whichever thread uses
/// them later. The thread's result is `Err` if it could not enter.
pub fn spawn_in_netns<T: Send + 'static>(
    netns: PathBuf,
    f: impl FnOnce() -> T + Send + 'static,
) -> JoinHandle<Result<T, NetnsError>> {
    std::thread::spawn(move || {
        let entered = std::fs::File::open(&netns).and_then(|file| {
            rustix::thread::move_into_link_name_space(
                file.as_fd(),
                Some(rustix::thread::LinkNameSpaceType::Network),
            )
            .map_err(std::io::Error::from)
        });
        match entered {
            Ok(()) => Ok(f()),
            Err(e) => Err(NetnsError::Spawn {
                command: format!("setns {}", netns.display()),
                reason: e.to_string(),
            }),
        }
    })
}

/// The effective uid, from /proc (std has no getuid, and this crate has no unsafe).
pub fn effective_uid() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    // Uid: real effective saved filesystem
    line.split_whitespace().nth(2)?.parse().ok()
}

fn command_line(program: &str, args: &[&str]) -> String {
    std::iter::once(program)
        .chain(args.iter().copied())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Runs a program to completion, with `stdin` fed if given; an exit other than 0 is an error
/// that carries the command line and stderr.
fn run(program: &str, args: &[&str], stdin: Option<&str>) -> Result<(), NetnsError> {
    run_output(program, args, stdin).map(|_| ())
}

/// As [`run`], returning stdout.
fn run_output(program: &str, args: &[&str], stdin: Option<&str>) -> Result<String, NetnsError> {
    let command = command_line(program, args);
    let spawn_err = |reason: String| NetnsError::Spawn {
        command: command.clone(),
        reason,
    };
    let mut child = Command::new(program)
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| spawn_err(e.to_string()))?;
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(text.as_bytes())
            .map_err(|e| spawn_err(format!("writing stdin: {e}")))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| spawn_err(e.to_string()))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(NetnsError::Failed {
            command,
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        })
    }
}

impl NetnsPair {
    /// Creates namespaces `<tag>-a` and `<tag>-b` joined by veth `<tag>a` / `<tag>b` with
    /// addresses 10.`subnet`.0.1 and .2, both ends and loopback up, no loss yet. `tag` is 1 to
    /// 12 ASCII letters and digits; a pair with the same tag must not exist (one is left behind
    /// only if a process died before tearing it down: `ip netns del <tag>-a`).
    pub fn create(tag: &str, subnet: u8) -> Result<NetnsPair, NetnsError> {
        if tag.is_empty()
            || tag.len() > TAG_LEN_MAX
            || !tag.bytes().all(|b| b.is_ascii_alphanumeric())
        {
            return Err(NetnsError::Invalid(format!(
                "tag `{tag}` is not 1..={TAG_LEN_MAX} ASCII letters and digits"
            )));
        }
        match effective_uid() {
            Some(0) => {}
            Some(uid) => return Err(NetnsError::NotRoot(uid)),
            None => return Err(NetnsError::Invalid("cannot read the uid from /proc".into())),
        }
        let pair = NetnsPair {
            netns: [format!("{tag}-a"), format!("{tag}-b")],
            veth: [format!("{tag}a"), format!("{tag}b")],
            addrs: [
                Ipv4Addr::new(10, subnet, 0, 1),
                Ipv4Addr::new(10, subnet, 0, 2),
            ],
            torn_down: false,
        };
        // From here a failure drops `pair`, which deletes whatever was made.
        for ns in &pair.netns {
            run("ip", &["netns", "add", ns], None)?;
        }
        let [na, nb] = &pair.netns;
        let [va, vb] = &pair.veth;
        run(
            "ip",
            &[
                "link", "add", va, "netns", na, "type", "veth", "peer", "name", vb, "netns", nb,
            ],
            None,
        )?;
        for side in [Side::A, Side::B] {
            let i = side.index();
            let ns = pair.netns[i].as_str();
            let veth = pair.veth[i].as_str();
            let cidr = format!("{}/24", pair.addrs[i]);
            run("ip", &["-n", ns, "addr", "add", &cidr, "dev", veth], None)?;
            // No segmentation offload: TCP would otherwise hand the veth 64 KiB super-packets
            // and one drop would cost ~45 segments, not one.
            run(
                "ip",
                &["-n", ns, "link", "set", veth, "gso_max_segs", "1"],
                None,
            )?;
            run("ip", &["-n", ns, "link", "set", veth, "up"], None)?;
            run("ip", &["-n", ns, "link", "set", "lo", "up"], None)?;
        }
        Ok(pair)
    }

    /// Sets the MTU of both veth ends (68..=65535 bytes): 9000 gives jumbo frames, which carry
    /// an SRD datagram of one 4 KiB block whole (docs/ebs-srd.md), as a data-center network does.
    pub fn set_mtu(&self, bytes: u32) -> Result<(), NetnsError> {
        if !(68..=65_535).contains(&bytes) {
            return Err(NetnsError::Invalid(format!(
                "MTU {bytes} is not in 68..=65535"
            )));
        }
        let mtu = bytes.to_string();
        for side in [Side::A, Side::B] {
            let i = side.index();
            run(
                "ip",
                &[
                    "-n",
                    &self.netns[i],
                    "link",
                    "set",
                    &self.veth[i],
                    "mtu",
                    &mtu,
                ],
                None,
            )?;
        }
        Ok(())
    }

    pub fn netns(&self, side: Side) -> &str {
        &self.netns[side.index()]
    }

    /// The veth end in the namespace of `side`.
    pub fn veth(&self, side: Side) -> &str {
        &self.veth[side.index()]
    }

    pub fn addr(&self, side: Side) -> Ipv4Addr {
        self.addrs[side.index()]
    }

    /// The namespace's file, for `setns(2)` (what `ip netns add` mounts).
    pub fn netns_path(&self, side: Side) -> PathBuf {
        PathBuf::from("/run/netns").join(self.netns(side))
    }

    /// `ip netns exec <ns> <program>`: a command that runs inside the namespace.
    pub fn command(&self, side: Side, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", self.netns(side), program]);
        c
    }

    /// Drops `percent` of the packets that arrive on each veth end (so of each direction),
    /// replacing any earlier rule; 0 removes the rule. Fails if `nft` is missing.
    pub fn set_loss_percent(&self, percent: u8) -> Result<(), NetnsError> {
        if percent > 100 {
            return Err(NetnsError::Invalid(format!("loss {percent}% is over 100%")));
        }
        for side in [Side::A, Side::B] {
            let i = side.index();
            // Declaring the table first makes the delete succeed whether or not it existed.
            let mut script = format!("table inet {TABLE}\ndelete table inet {TABLE}\n");
            if percent > 0 {
                script.push_str(&format!(
                    "table inet {TABLE} {{\n  chain input {{\n    type filter hook input priority 0; policy accept;\n    iifname \"{veth}\" counter\n    iifname \"{veth}\" numgen random mod 100 < {percent} counter drop\n  }}\n}}\n",
                    veth = self.veth[i]
                ));
            }
            run(
                "ip",
                &["netns", "exec", &self.netns[i], "nft", "-f", "-"],
                Some(&script),
            )?;
        }
        Ok(())
    }

    /// Packets that arrived on the two veth ends, and those the loss rule dropped, since
    /// the last `set_loss_percent`: (0, 0) with no rule.
    pub fn loss_counters(&self) -> Result<LossCounters, NetnsError> {
        let mut total = LossCounters::default();
        for i in 0..2 {
            let listing = match run_output(
                "ip",
                &[
                    "netns",
                    "exec",
                    &self.netns[i],
                    "nft",
                    "list",
                    "table",
                    "inet",
                    TABLE,
                ],
                None,
            ) {
                Ok(l) => l,
                // No table: no rule installed, nothing counted.
                Err(NetnsError::Failed { stderr, .. }) if stderr.contains("No such file") => {
                    continue;
                }
                Err(e) => return Err(e),
            };
            let c = parse_counters(&listing).ok_or_else(|| {
                NetnsError::Invalid(format!("no counters in `nft list table`: {listing}"))
            })?;
            total.seen_packets += c.seen_packets;
            total.dropped_packets += c.dropped_packets;
        }
        Ok(total)
    }

    /// Deletes both namespaces, which deletes the veth pair and the nftables tables in them.
    pub fn teardown(mut self) -> Result<(), NetnsError> {
        self.delete()
    }

    fn delete(&mut self) -> Result<(), NetnsError> {
        if self.torn_down {
            return Ok(());
        }
        self.torn_down = true;
        let mut first_error = None;
        for ns in &self.netns {
            // A namespace that was never made (a failed create) is not an error here.
            if PathBuf::from("/run/netns").join(ns).exists()
                && let Err(e) = run("ip", &["netns", "del", ns], None)
            {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

/// What the loss rules counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LossCounters {
    pub seen_packets: u64,
    pub dropped_packets: u64,
}

/// The two counters of one chain as `nft list table` prints them: the rule that counts every
/// packet first, then the one that drops (`... counter packets N bytes M drop`).
fn parse_counters(listing: &str) -> Option<LossCounters> {
    let mut counts = listing.lines().filter_map(|line| {
        let mut words = line.split_whitespace();
        words.find(|w| *w == "packets")?;
        let n: u64 = words.next()?.parse().ok()?;
        Some((n, line.trim_end().ends_with("drop")))
    });
    let (seen_packets, seen_drops) = counts.next()?;
    let (dropped_packets, drops) = counts.next()?;
    (!seen_drops && drops).then_some(LossCounters {
        seen_packets,
        dropped_packets,
    })
}

impl Drop for NetnsPair {
    fn drop(&mut self) {
        if let Err(e) = self.delete() {
            tracing::warn!(error = %e, "netns teardown failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_tags_are_refused_before_any_command() {
        for tag in ["", "has-dash", "waytoolongtagname", "sp ace"] {
            assert!(matches!(
                NetnsPair::create(tag, 77),
                Err(NetnsError::Invalid(_))
            ));
        }
    }

    #[test]
    fn counters_parse_from_an_nft_listing() {
        let listing = "table inet ferrite_loss {\n\tchain input {\n\t\ttype filter hook input priority filter; policy accept;\n\t\tiifname \"frta\" counter packets 1200 bytes 99000\n\t\tiifname \"frta\" numgen random mod 100 < 1 counter packets 13 bytes 900 drop\n\t}\n}\n";
        assert_eq!(
            parse_counters(listing),
            Some(LossCounters {
                seen_packets: 1200,
                dropped_packets: 13
            })
        );
        assert_eq!(parse_counters("table inet ferrite_loss {\n}\n"), None);
    }

    #[test]
    fn the_uid_is_read() {
        assert!(effective_uid().is_some());
    }

    #[test]
    fn a_missing_program_is_a_spawn_error_naming_it() {
        let e = run("ferrite-no-such-program", &["x"], None).unwrap_err();
        assert!(e.to_string().contains("ferrite-no-such-program x"), "{e}");
        let e = run("false", &[], None).unwrap_err();
        assert!(matches!(e, NetnsError::Failed { .. }), "{e}");
    }
}
