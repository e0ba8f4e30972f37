//! The kernel network of the bench: two network namespaces joined by a veth pair
//! (`impair::netns`), where nftables imposes the loss on both systems alike and the black holes:
//! of the whole flow for `nbd_tcp` (one TCP flow rides one path), and of one path's UDP port for
//! `srd`. Without root, `ip` or `nft` it is plain loopback, and only the clean scenario runs
//! there (srd then goes through the user-space relay).
//!
//! A black hole has to land at its time without disturbing the run: spawning `ip netns exec ...
//! nft` costs milliseconds of CPU, which on two vCPUs would show up as a stall of its own. So the
//! srd black hole is armed before the case starts (`nft -f -` running, its script written) and
//! fired at the event by closing nft's stdin, after which nft only commits one batch.

use std::io::Write;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Stdio};

use ebs_server::impair::netns::{NetnsPair, Side, effective_uid, spawn_in_netns};

/// The nftables table of the black hole (the loss rule has its own, `ferrite_loss`).
const BLACK_HOLE_TABLE: &str = "ferrite_bench_hole";
/// Which /24 the veth pair uses (10.SUBNET.0.0/24): one nothing else here uses.
const SUBNET: u8 = 214;

/// Where the kernel-network systems run (nbd_tcp, and srd unless it goes through the relay),
/// found once per bench.
#[derive(Debug)]
pub enum Network {
    /// Plain loopback; loss cannot be imposed, for this reason.
    Loopback { why_no_loss: String },
    /// Across a veth pair between two namespaces; `nft` is `Err(reason)` if loss cannot be set.
    Netns {
        pair: NetnsPair,
        nft: Result<(), String>,
        mtu: u32,
    },
}

impl Network {
    /// Builds the namespaces if this process can (root, `ip`), with the veth pair's MTU at `mtu`,
    /// and checks that `nft` works.
    pub fn detect(mtu: u32) -> Network {
        match effective_uid() {
            Some(0) => {}
            uid => {
                let uid = uid.map_or("unknown".to_string(), |u| u.to_string());
                return Network::Loopback {
                    why_no_loss: format!("network namespaces need root (uid {uid})"),
                };
            }
        }
        let tag = format!("feb{}", std::process::id() % 1_000_000);
        let pair = match NetnsPair::create(&tag, SUBNET) {
            Ok(p) => p,
            Err(e) => {
                return Network::Loopback {
                    why_no_loss: format!("cannot build network namespaces: {e}"),
                };
            }
        };
        if let Err(e) = pair.set_mtu(mtu) {
            return Network::Loopback {
                why_no_loss: format!("cannot set the veth MTU to {mtu}: {e}"),
            };
        }
        let nft = pair
            .set_loss_percent(0)
            .map_err(|e| format!("nftables is not usable: {e}"));
        Network::Netns { pair, nft, mtu }
    }

    /// Why loss cannot be imposed, if it cannot.
    pub fn loss_unavailable(&self) -> Option<String> {
        match self {
            Network::Loopback { why_no_loss } => Some(why_no_loss.clone()),
            Network::Netns { nft: Err(e), .. } => Some(e.clone()),
            Network::Netns { nft: Ok(()), .. } => None,
        }
    }

    /// Drops `percent` of the packets arriving on each veth end (100: a black hole).
    pub fn set_loss_percent(&self, percent: u8) -> Result<(), String> {
        match self {
            Network::Netns {
                pair, nft: Ok(()), ..
            } => pair.set_loss_percent(percent).map_err(|e| e.to_string()),
            _ if percent == 0 => Ok(()),
            other => Err(other.loss_unavailable().unwrap_or_default()),
        }
    }

    /// Drops every packet arriving in either namespace from outside (both directions of the
    /// flow), with the link still up: the black hole of one path. A table of its own, so the
    /// loss rule and its counters are untouched; `on = false` deletes it.
    pub fn set_black_hole(&self, on: bool) -> Result<(), String> {
        let Network::Netns {
            pair, nft: Ok(()), ..
        } = self
        else {
            return match on {
                false => Ok(()),
                true => Err(self.loss_unavailable().unwrap_or_default()),
            };
        };
        // Declaring the table first makes the delete succeed whether or not it existed.
        let mut script =
            format!("table inet {BLACK_HOLE_TABLE}\ndelete table inet {BLACK_HOLE_TABLE}\n");
        if on {
            script.push_str(&format!(
                "table inet {BLACK_HOLE_TABLE} {{\n  chain input {{\n    type filter hook input priority -10; policy accept;\n    iifname != \"lo\" counter drop\n  }}\n}}\n"
            ));
        }
        for side in [Side::A, Side::B] {
            arm_nft(pair, side, &script)?.fire()?;
        }
        Ok(())
    }

    /// Starts `nft -f -` in the server's namespace with a batch that drops every datagram to
    /// and from the server's UDP `port` on the veth (one srd path, both directions, the link
    /// still up); it lands when the returned [`ArmedNft`] fires. `set_black_hole(false)` lifts it.
    pub fn arm_udp_black_hole(&self, port: u16) -> Result<ArmedNft, String> {
        let Network::Netns {
            pair, nft: Ok(()), ..
        } = self
        else {
            return Err(self.loss_unavailable().unwrap_or_default());
        };
        arm_nft(pair, Side::B, &udp_hole_script(pair.veth(Side::B), port))
    }

    /// Packets the black hole (of either kind) dropped: 0 with none set.
    pub fn black_hole_drops(&self) -> Option<u64> {
        let Network::Netns {
            pair, nft: Ok(()), ..
        } = self
        else {
            return None;
        };
        let mut total = 0;
        for side in [Side::A, Side::B] {
            let out = pair
                .command(side, "nft")
                .args(["list", "table", "inet", BLACK_HOLE_TABLE])
                .stderr(Stdio::null())
                .output()
                .ok()?;
            // No table: no black hole here.
            if out.status.success() {
                total += dropped_in_listing(&String::from_utf8_lossy(&out.stdout));
            }
        }
        Some(total)
    }

    /// Packets the loss rule dropped since it was last set.
    pub fn dropped_packets(&self) -> Option<u64> {
        match self {
            Network::Netns {
                pair, nft: Ok(()), ..
            } => pair.loss_counters().ok().map(|c| c.dropped_packets),
            _ => None,
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Network::Loopback { .. } => "loopback".into(),
            Network::Netns { mtu, .. } => {
                format!("a veth pair between two network namespaces, MTU {mtu}")
            }
        }
    }

    /// Deletes the namespaces (also done on drop).
    pub fn teardown(self) {
        if let Network::Netns { pair, .. } = self
            && let Err(e) = pair.teardown()
        {
            eprintln!("warning: network namespaces not deleted: {e}");
        }
    }

    /// The namespace file and address of one side (the client is on A, the server on B).
    pub fn side(&self, side: Side) -> Option<(PathBuf, Ipv4Addr)> {
        match self {
            Network::Netns { pair, .. } => Some((pair.netns_path(side), pair.addr(side))),
            Network::Loopback { .. } => None,
        }
    }
}

/// Runs `f` on a thread inside the network namespace at `netns` (sockets made there stay in it,
/// whichever thread uses them later) and waits for it.
pub fn in_netns<T: Send + 'static>(
    netns: PathBuf,
    f: impl FnOnce() -> Result<T, String> + Send + 'static,
) -> Result<T, String> {
    spawn_in_netns(netns, f)
        .join()
        .map_err(|_| "the namespace thread panicked".to_string())?
        .map_err(|e| e.to_string())?
}

/// Starts `nft -f -` in the namespace of `side` and writes `script` to it; the batch commits
/// when the returned [`ArmedNft`] fires (closes nft's stdin).
fn arm_nft(pair: &NetnsPair, side: Side, script: &str) -> Result<ArmedNft, String> {
    let netns = pair.netns(side).to_string();
    let mut child = pair
        .command(side, "nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("running nft in {netns}: {e}"))?;
    let stdin = child.stdin.take();
    // Made before the write, so a failed write kills the child (Drop).
    let mut armed = ArmedNft {
        child: Some(child),
        stdin,
        netns,
    };
    if let Some(pipe) = armed.stdin.as_mut() {
        pipe.write_all(script.as_bytes())
            .map_err(|e| format!("writing to nft: {e}"))?;
    }
    Ok(armed)
}

/// The batch of an srd path's black hole, for the server's namespace (its veth is `veth`).
fn udp_hole_script(veth: &str, port: u16) -> String {
    format!(
        "table inet {BLACK_HOLE_TABLE}\ndelete table inet {BLACK_HOLE_TABLE}\n\
         table inet {BLACK_HOLE_TABLE} {{\n  \
           chain input {{\n    type filter hook input priority -10; policy accept;\n    \
             iifname \"{veth}\" udp dport {port} counter drop\n  }}\n  \
           chain output {{\n    type filter hook output priority -10; policy accept;\n    \
             oifname \"{veth}\" udp sport {port} counter drop\n  }}\n}}\n"
    )
}

/// An nft batch waiting in a running `nft -f -` for its stdin to close; killed if dropped
/// unfired.
#[derive(Debug)]
pub struct ArmedNft {
    child: Option<Child>,
    stdin: Option<ChildStdin>,
    netns: String,
}

impl ArmedNft {
    /// Closes nft's stdin, so it commits the batch, and waits for it to finish.
    pub fn fire(mut self) -> Result<(), String> {
        drop(self.stdin.take());
        let Some(child) = self.child.take() else {
            return Err("the armed nft was already fired".into());
        };
        let out = child
            .wait_with_output()
            .map_err(|e| format!("running nft in {}: {e}", self.netns))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "nft in {} ({}): {}",
                self.netns,
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    }
}

impl Drop for ArmedNft {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The packets of every `... counter packets N bytes M drop` rule in an `nft list` output.
fn dropped_in_listing(listing: &str) -> u64 {
    listing
        .lines()
        .filter(|l| l.trim_end().ends_with("drop"))
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            words.find(|w| *w == "packets")?;
            words.next()?.parse::<u64>().ok()
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drops_are_summed_over_the_drop_rules_only() {
        let listing = "table inet ferrite_bench_hole {\n\tchain input {\n\t\tiifname \"feb1b\" udp dport 4000 counter packets 17 bytes 900 drop\n\t}\n\tchain output {\n\t\toifname \"feb1b\" counter packets 99 bytes 1\n\t\toifname \"feb1b\" udp sport 4000 counter packets 5 bytes 300 drop\n\t}\n}\n";
        assert_eq!(dropped_in_listing(listing), 22);
        assert_eq!(dropped_in_listing("table inet x {\n}\n"), 0);
    }

    #[test]
    fn the_udp_hole_script_drops_both_directions_of_the_port_on_the_server_side() {
        let s = udp_hole_script("feb1b", 4321);
        assert!(s.contains("hook input"), "{s}");
        assert!(
            s.contains("iifname \"feb1b\" udp dport 4321 counter drop"),
            "{s}"
        );
        assert!(s.contains("hook output"), "{s}");
        assert!(
            s.contains("oifname \"feb1b\" udp sport 4321 counter drop"),
            "{s}"
        );
        // The table is declared and deleted first, so arming twice replaces, not adds.
        assert!(
            s.starts_with(&format!("table inet {BLACK_HOLE_TABLE}\ndelete table")),
            "{s}"
        );
    }
}
