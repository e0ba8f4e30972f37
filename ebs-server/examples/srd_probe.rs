//! `srd_probe`: where the time of one SRD round trip goes, over loopback.
//!
//! ```text
//! cargo run --release -p ebs-server --example srd_probe -- [--rounds N] [--paths P]
//! ```
//!
//! One message at a time (queue depth 1) from a client endpoint to an echo endpoint and back,
//! for a small message (64 bytes) and a one-block message (4156 bytes: a WRITE or a DATA reply
//! of the block protocol). Each row prints the round-trip latency distribution in microseconds
//! and what the transport sent per round trip:
//!
//! - `raw udp`: two plain blocking UDP sockets and an echo thread: what the kernel and the
//!   thread wake-ups cost alone, the floor under any transport on this host.
//! - `raw udp, poll 1000 us first`: the same, each side waiting in poll(2) with a timeout before
//!   it receives, as the srd loops block: what a poll wake-up costs over a blocking receive.
//! - `srd`: two sealed `UdpEndpoint`s (the state machine, AES-256-GCM per packet, acknowledgements,
//!   the waits), with the default `payload_len_max` (one datagram per block) and the default
//!   `wait_spin_us` (spin before blocking), with no spin (block in poll(2) at once), and with the
//!   1500-MTU payload (`PAYLOAD_LEN_MTU_1500`, three datagrams per block).
//!
//! The difference between the rows is the transport's own cost; the client's block sealing, the
//! server's FTL and the relay of `ferrite ebs bench` are not in any of them.

use ebs_server::srd::config::{PAYLOAD_LEN_DEFAULT, PAYLOAD_LEN_MTU_1500, WAIT_SPIN_US_DEFAULT};
use ebs_server::srd::handshake::{ClientHandshake, Hello, respond};
use ebs_server::srd::udp::UdpEndpoint;
use ebs_server::srd::wait::wait_readable;
use ebs_server::srd::{Config, Stats};
use std::net::{Ipv4Addr, UdpSocket};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Round trips measured per row unless `--rounds` says otherwise.
const ROUNDS_DEFAULT: usize = 20_000;
const ROUNDS_MAX: usize = 10_000_000;
/// Round trips run before each row's measurement (connections warm, RTTs learned).
const WARMUP_ROUNDS: usize = 500;
const PATHS_DEFAULT: usize = 4;
const SMALL_BYTES: usize = 64;
/// A block-protocol message with one 4 KiB block (`proto::MESSAGE_LEN_MAX`).
const BLOCK_MESSAGE_BYTES: usize = 4156;
/// Longest wait for one echo before the probe gives up: far above any loopback round trip.
const ROUND_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest an idle endpoint waits on its sockets before it looks at its stop flag again.
const WAIT_US_MAX: u64 = 1_000;
const CONNECTION_ID: u64 = 0x5eed_0f5d;

struct Options {
    rounds: usize,
    paths: usize,
}

fn parse_options() -> Result<Options, String> {
    let mut options = Options {
        rounds: ROUNDS_DEFAULT,
        paths: PATHS_DEFAULT,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| {
            args.next()
                .ok_or_else(|| format!("{name} needs a value"))?
                .parse::<usize>()
                .map_err(|e| format!("{name}: {e}"))
        };
        match arg.as_str() {
            "--rounds" => options.rounds = value("--rounds")?,
            "--paths" => options.paths = value("--paths")?,
            "-h" | "--help" => {
                return Err("usage: srd_probe [--rounds N] [--paths P]".into());
            }
            other => return Err(format!("unknown argument {other:?} (try --help)")),
        }
    }
    if !(1..=ROUNDS_MAX).contains(&options.rounds) {
        return Err(format!(
            "--rounds {} not in 1..={ROUNDS_MAX}",
            options.rounds
        ));
    }
    let paths_max = ebs_server::srd::packet::PATHS_MAX;
    if !(1..=paths_max).contains(&options.paths) {
        return Err(format!("--paths {} not in 1..={paths_max}", options.paths));
    }
    Ok(options)
}

/// Round-trip times of one row, nanoseconds.
struct Row {
    name: String,
    bytes: usize,
    rtts_ns: Vec<u64>,
    /// Datagrams and retransmissions per round trip, both directions, for the srd rows.
    per_round: Option<(f64, f64)>,
}

fn percentile_us(sorted_ns: &[u64], p: f64) -> f64 {
    let i = ((sorted_ns.len() as f64 * p).ceil() as usize).clamp(1, sorted_ns.len()) - 1;
    sorted_ns[i] as f64 / 1_000.0
}

fn print_row(row: &mut Row) {
    row.rtts_ns.sort_unstable();
    let r = &row.rtts_ns;
    let mean_us = r.iter().sum::<u64>() as f64 / r.len() as f64 / 1_000.0;
    let per_round = row.per_round.map_or_else(
        || "-".to_string(),
        |(datagrams, retx)| format!("{datagrams:.2} / {retx:.3}"),
    );
    println!(
        "| {} | {} | {} | {mean_us:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {per_round} |",
        row.name,
        row.bytes,
        r.len(),
        percentile_us(r, 0.5),
        percentile_us(r, 0.9),
        percentile_us(r, 0.99),
        percentile_us(r, 0.999),
        r[r.len() - 1] as f64 / 1_000.0,
    );
}

/// Plain UDP: a blocking echo thread, and the caller's blocking round trips; with `poll_us`,
/// each side first waits in poll(2) with that timeout (as the srd loops do) before it receives.
fn raw_udp(bytes: usize, rounds: usize, poll_us: Option<u64>) -> Result<Row, String> {
    let io = |e: std::io::Error| format!("raw udp: {e}");
    let echo = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).map_err(io)?;
    let client = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).map_err(io)?;
    client.connect(echo.local_addr().map_err(io)?).map_err(io)?;
    client.set_read_timeout(Some(ROUND_TIMEOUT)).map_err(io)?;
    echo.set_read_timeout(Some(Duration::from_millis(100)))
        .map_err(io)?;
    let stop = Arc::new(AtomicBool::new(false));
    let echo_stop = Arc::clone(&stop);
    let echo_thread: JoinHandle<()> = std::thread::spawn(move || {
        let mut buf = vec![0u8; 65_536];
        while !echo_stop.load(Ordering::Acquire) {
            if let Some(us) = poll_us
                && !matches!(wait_readable(std::slice::from_ref(&echo), us), Ok(m) if m != 0)
            {
                continue;
            }
            if let Ok((len, from)) = echo.recv_from(&mut buf) {
                let _ = echo.send_to(&buf[..len], from);
            }
        }
    });
    let message = vec![0xa5u8; bytes];
    let mut buf = vec![0u8; 65_536];
    let mut rtts_ns = Vec::with_capacity(rounds);
    let mut result = Ok(());
    for round in 0..WARMUP_ROUNDS + rounds {
        let started = Instant::now();
        let echoed = client
            .send(&message)
            .and_then(|_| {
                if let Some(us) = poll_us {
                    while wait_readable(std::slice::from_ref(&client), us)? == 0 {}
                }
                client.recv(&mut buf)
            })
            .map_err(io);
        match echoed {
            Ok(len) if len == bytes => {}
            Ok(len) => {
                result = Err(format!("raw udp: echo of {len} bytes, sent {bytes}"));
                break;
            }
            Err(e) => {
                result = Err(e);
                break;
            }
        }
        if round >= WARMUP_ROUNDS {
            rtts_ns.push(started.elapsed().as_nanos() as u64);
        }
    }
    stop.store(true, Ordering::Release);
    echo_thread
        .join()
        .map_err(|_| "raw udp: the echo thread panicked".to_string())?;
    result.map(|()| Row {
        name: match poll_us {
            None => "raw udp".into(),
            Some(us) => format!("raw udp, poll {us} us first"),
        },
        bytes,
        rtts_ns,
        per_round: None,
    })
}

/// Two endpoints keyed by a real handshake (the client's keys on `client`), aimed at each other.
fn sealed_endpoints(config: &Config) -> Result<(UdpEndpoint, UdpEndpoint), String> {
    let io = |e: std::io::Error| format!("srd endpoints: {e}");
    let mut client = UdpEndpoint::bind_loopback(config.clone(), CONNECTION_ID).map_err(io)?;
    let mut server = UdpEndpoint::bind_loopback(config.clone(), CONNECTION_ID).map_err(io)?;
    client
        .connect(server.local_addrs().map_err(io)?)
        .map_err(io)?;
    server
        .connect(client.local_addrs().map_err(io)?)
        .map_err(io)?;
    let psk = [0x42u8; 32];
    let handshake = ClientHandshake::start(CONNECTION_ID, "probe").map_err(|e| e.to_string())?;
    let hello = Hello::parse(handshake.hello()).map_err(|e| e.to_string())?;
    let (server_keys, ack) = respond(&hello, &psk).map_err(|e| e.to_string())?;
    let client_keys = handshake.finish(&ack, &psk).map_err(|e| e.to_string())?;
    client
        .connection_mut()
        .install_keys(client_keys.client_to_server, client_keys.server_to_client);
    server
        .connection_mut()
        .install_keys(server_keys.server_to_client, server_keys.client_to_server);
    Ok((client, server))
}

/// The echo side: sends every delivered message back until stopped; returns its counters.
fn echo_loop(mut server: UdpEndpoint, stop: &AtomicBool) -> Result<Stats, String> {
    while !stop.load(Ordering::Acquire) {
        let mut active = server.turn().map_err(|e| format!("echo turn: {e}"))?;
        while let Some(delivered) = server.poll_delivered() {
            active = true;
            server
                .connection_mut()
                .send_message(delivered.payload)
                .map_err(|e| format!("echo send: {e}"))?;
        }
        if !active {
            server
                .wait(WAIT_US_MAX)
                .map_err(|e| format!("echo wait: {e}"))?;
        }
    }
    Ok(server.connection().stats().clone())
}

/// One message to the echo endpoint and back.
fn round_trip(client: &mut UdpEndpoint, message: &[u8]) -> Result<(), String> {
    client
        .connection_mut()
        .send_message(message.to_vec())
        .map_err(|e| format!("send: {e}"))?;
    let started = Instant::now();
    loop {
        let active = client.turn().map_err(|e| format!("turn: {e}"))?;
        if let Some(delivered) = client.poll_delivered() {
            if delivered.payload != message {
                return Err("the echo differs from the message".into());
            }
            return Ok(());
        }
        if started.elapsed() > ROUND_TIMEOUT {
            return Err(format!("no echo within {ROUND_TIMEOUT:?}"));
        }
        if !active {
            client.wait(WAIT_US_MAX).map_err(|e| format!("wait: {e}"))?;
        }
    }
}

fn srd(
    payload_len_max: usize,
    wait_spin_us: u64,
    paths: usize,
    bytes: usize,
    rounds: usize,
) -> Result<Row, String> {
    let name = &format!("srd payload {payload_len_max}, spin {wait_spin_us} us");
    let config = Config {
        path_count: paths,
        payload_len_max,
        wait_spin_us,
        ..Config::default()
    };
    let (mut client, server) = sealed_endpoints(&config)?;
    let stop = Arc::new(AtomicBool::new(false));
    let echo_stop = Arc::clone(&stop);
    let echo = std::thread::spawn(move || echo_loop(server, &echo_stop));
    let message = vec![0x5au8; bytes];
    let mut rtts_ns = Vec::with_capacity(rounds);
    let mut result = Ok(());
    let mut before = None;
    for round in 0..WARMUP_ROUNDS + rounds {
        if round == WARMUP_ROUNDS {
            before = Some((
                client.stats.datagrams_sent,
                client.connection().stats().clone(),
            ));
        }
        let started = Instant::now();
        if let Err(e) = round_trip(&mut client, &message) {
            result = Err(format!("{name}: round {round}: {e}"));
            break;
        }
        if round >= WARMUP_ROUNDS {
            rtts_ns.push(started.elapsed().as_nanos() as u64);
        }
    }
    stop.store(true, Ordering::Release);
    let echo_stats = echo
        .join()
        .map_err(|_| format!("{name}: the echo thread panicked"))??;
    result?;
    // The echo side's counters cover its warm-up too; the client's are taken over the measured
    // rounds only, and the echo's datagrams are estimated as its share of the same total.
    let (sent_before, stats_before) = before.ok_or("no measured round")?;
    let stats = client.connection().stats();
    let client_datagrams = (client.stats.datagrams_sent - sent_before) as f64;
    let client_retx = (stats.retransmissions - stats_before.retransmissions) as f64;
    let all_rounds = (WARMUP_ROUNDS + rounds) as f64;
    let echo_datagrams = (echo_stats.data_packets_sent
        + echo_stats.acks_sent
        + echo_stats.probes_sent
        + echo_stats.probe_acks_sent) as f64
        * rounds as f64
        / all_rounds;
    let echo_retx = echo_stats.retransmissions as f64 * rounds as f64 / all_rounds;
    Ok(Row {
        name: name.into(),
        bytes,
        rtts_ns,
        per_round: Some((
            (client_datagrams + echo_datagrams) / rounds as f64,
            (client_retx + echo_retx) / rounds as f64,
        )),
    })
}

fn run(options: &Options) -> Result<(), String> {
    println!(
        "srd_probe: {} round trips per row after {WARMUP_ROUNDS} of warm-up, queue depth 1, {} paths, 127.0.0.1",
        options.rounds, options.paths
    );
    println!();
    println!(
        "| row | bytes | rounds | mean us | p50 us | p90 us | p99 us | p99.9 us | max us | datagrams / retx per round trip |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    let (paths, rounds) = (options.paths, options.rounds);
    for bytes in [SMALL_BYTES, BLOCK_MESSAGE_BYTES] {
        print_row(&mut raw_udp(bytes, rounds, None)?);
        print_row(&mut raw_udp(bytes, rounds, Some(WAIT_US_MAX))?);
        for spin_us in [WAIT_SPIN_US_DEFAULT, 0] {
            print_row(&mut srd(
                PAYLOAD_LEN_DEFAULT,
                spin_us,
                paths,
                bytes,
                rounds,
            )?);
        }
        if bytes > PAYLOAD_LEN_MTU_1500 {
            print_row(&mut srd(
                PAYLOAD_LEN_MTU_1500,
                WAIT_SPIN_US_DEFAULT,
                paths,
                bytes,
                rounds,
            )?);
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    let options = match parse_options() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("srd_probe: {e}");
            return ExitCode::from(2);
        }
    };
    match run(&options) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("srd_probe: {e}");
            ExitCode::FAILURE
        }
    }
}
