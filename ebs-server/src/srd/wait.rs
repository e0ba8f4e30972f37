//! Waiting in the I/O loops: poll(2) on their UDP sockets until one has a datagram or the
//! state machine's next timer is due, instead of sleeping or yielding a fixed time.
//!
//! A sleep lasts far longer than asked on a busy host and a reply that arrives meanwhile waits
//! for it to end; a yield loop burns a core the other side of the loop (on the same two vCPUs)
//! needs. poll(2) wakes on the datagram itself. rustix's `poll` is `ppoll` on Linux, so the
//! timeout is in nanoseconds (a timer of a few tens of microseconds is not rounded to 1 ms), and
//! it is safe code (this crate forbids `unsafe`).

use rustix::event::{PollFd, PollFlags, Timespec, poll};
use std::io;
use std::net::UdpSocket;

/// Which sockets of a loop have something to read: bit `i` for socket `i` (at most 64 sockets,
/// `packet::PATHS_MAX`).
pub type ReadyMask = u64;

/// Every socket: what a loop assumes when it has not asked the kernel.
pub const READY_ALL: ReadyMask = u64::MAX;

/// Waits until one of `sockets` is readable (a datagram, or an error such as a refused earlier
/// send, which the next receive returns) or `timeout_us` has passed; 0 only asks, without
/// waiting. Returns the sockets that are ready (0: the timeout passed). A wait interrupted by a
/// signal returns READY_ALL early: the caller looks at every socket and its timers again anyway.
pub fn wait_readable(sockets: &[UdpSocket], timeout_us: u64) -> io::Result<ReadyMask> {
    if sockets.len() > ReadyMask::BITS as usize {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "{} sockets: a wait covers at most {}",
                sockets.len(),
                ReadyMask::BITS
            ),
        ));
    }
    let mut fds: Vec<PollFd<'_>> = sockets
        .iter()
        .map(|s| PollFd::new(s, PollFlags::IN))
        .collect();
    let timeout = Timespec {
        tv_sec: (timeout_us / 1_000_000) as i64,
        tv_nsec: ((timeout_us % 1_000_000) * 1_000) as i64,
    };
    match poll(&mut fds, Some(&timeout)) {
        Ok(0) => Ok(0),
        Ok(_) => Ok(fds
            .iter()
            .enumerate()
            .filter(|(_, fd)| !fd.revents().is_empty())
            .fold(0, |mask, (i, _)| mask | (1 << i))),
        Err(rustix::io::Errno::INTR) => Ok(READY_ALL),
        Err(e) => Err(e.into()),
    }
}

/// Waits like `wait_readable` for up to `timeout_us`, but first, for up to `spin_us` of it,
/// asks without blocking (a poll with a zero timeout, then a yield) before it blocks. On a host
/// where waking a thread blocked in poll(2) takes tens of microseconds (a loaded or virtualized
/// one), a reply due within a round trip is then taken at once; past `spin_us` the loop sleeps
/// and leaves the CPU to others. `now_us` is the loop's clock.
pub fn spin_then_wait(
    sockets: &[UdpSocket],
    timeout_us: u64,
    spin_us: u64,
    now_us: impl Fn() -> u64,
) -> io::Result<ReadyMask> {
    let start_us = now_us();
    let spin_end_us = start_us.saturating_add(spin_us.min(timeout_us));
    loop {
        let mask = wait_readable(sockets, 0)?;
        if mask != 0 {
            return Ok(mask);
        }
        let now = now_us();
        if now >= spin_end_us {
            let left_us = start_us.saturating_add(timeout_us).saturating_sub(now);
            return if left_us == 0 {
                Ok(0)
            } else {
                wait_readable(sockets, left_us)
            };
        }
        std::thread::yield_now();
    }
}

/// How long a loop may wait at `now_us`: until `deadline_us` (the next timer, None: none), at
/// most `wait_us_max`; 0 when the deadline has come.
pub fn timeout_us(now_us: u64, deadline_us: Option<u64>, wait_us_max: u64) -> u64 {
    deadline_us.map_or(wait_us_max, |d| d.saturating_sub(now_us).min(wait_us_max))
}

/// Whether socket `index` is in `mask`.
pub fn is_ready(mask: ReadyMask, index: usize) -> bool {
    index >= ReadyMask::BITS as usize || mask & (1 << index) != 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;
    use std::time::{Duration, Instant};

    fn sockets(n: usize) -> Vec<UdpSocket> {
        (0..n)
            .map(|_| {
                let s = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind");
                s.set_nonblocking(true).expect("nonblocking");
                s
            })
            .collect()
    }

    #[test]
    fn a_datagram_wakes_the_wait_and_names_its_socket() {
        let socks = sockets(3);
        let sender = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind");
        sender
            .send_to(b"x", socks[2].local_addr().expect("addr"))
            .expect("send");
        // Far longer than loopback delivery: the wait returns on the datagram, not the timeout.
        let mask = wait_readable(&socks, 10_000_000).expect("poll");
        assert_eq!(mask, 1 << 2);
        assert!(is_ready(mask, 2) && !is_ready(mask, 0) && !is_ready(mask, 1));
    }

    #[test]
    fn nothing_waiting_times_out_empty() {
        let socks = sockets(2);
        assert_eq!(wait_readable(&socks, 0).expect("poll"), 0);
        let started = Instant::now();
        assert_eq!(wait_readable(&socks, 2_000).expect("poll"), 0);
        // A lower bound only: the wait did wait (an upper bound would time the host).
        assert!(started.elapsed() >= Duration::from_micros(2_000));
    }

    #[test]
    fn a_spinning_wait_takes_a_datagram_or_times_out_empty() {
        let socks = sockets(2);
        let epoch = Instant::now();
        let now_us = || epoch.elapsed().as_micros() as u64;
        assert_eq!(spin_then_wait(&socks, 2_000, 500, now_us).expect("wait"), 0);
        // The whole timeout passed, spin and block together (a lower bound only).
        assert!(epoch.elapsed() >= Duration::from_micros(2_000));
        let sender = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind");
        sender
            .send_to(b"x", socks[1].local_addr().expect("addr"))
            .expect("send");
        let mask = spin_then_wait(&socks, 10_000_000, 500, now_us).expect("wait");
        assert_eq!(mask, 1 << 1);
    }

    #[test]
    fn too_many_sockets_is_an_error_not_a_wrong_mask() {
        let socks = sockets(65);
        assert!(wait_readable(&socks, 0).is_err());
    }

    #[test]
    fn the_timeout_is_the_next_deadline_capped() {
        assert_eq!(timeout_us(100, None, 5_000), 5_000);
        assert_eq!(timeout_us(100, Some(350), 5_000), 250);
        assert_eq!(timeout_us(100, Some(90_000), 5_000), 5_000);
        assert_eq!(timeout_us(100, Some(100), 5_000), 0);
        assert_eq!(timeout_us(100, Some(20), 5_000), 0);
    }
}
