//! `cargo bench --bench vhost_vs_qsd`: ferrite's vhost-user-blk backend against
//! qemu-storage-daemon's (vhost-user-blk export, aio=io_uring, a raw file in the same directory),
//! both driven by the same libblkio client in one run: 4 KiB random read and random write at queue
//! depth 1 and 32 on one queue, after a warm-up and a sequential fill. Prints IOPS, p50/p99/p99.9
//! latency and the ratio ferrite/qsd, with encryption off and on, and the CPU time (server and
//! client) per request.
//!
//! FERRITE_BENCH_SECS sets the measured seconds per case (default 10), FERRITE_BENCH_MIB the
//! size of each disk (default 512). To profile one case: FERRITE_BENCH_CASE runs only the cases
//! whose name contains it (e.g. "randwrite QD32"), FERRITE_BENCH_NO_QSD=1 skips qemu-storage-daemon
//! (its columns and the ratios then print as 0 and "-").

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use blkio_client::{Client, Load};
use ftl::nand::Geometry;
use ftl::{Ftl, FtlConfig};
use nvme_target::vhost::{StopHandle, TransportOptions, serve};
use nvme_target::{ActiveNamespace, FtlNamespace, NamespaceIdentity};

#[derive(Clone, Copy, Debug)]
struct Case {
    name: &'static str,
    write: bool,
    depth: usize,
}

const CASES: [Case; 4] = [
    Case {
        name: "randread  QD1 ",
        write: false,
        depth: 1,
    },
    Case {
        name: "randread  QD32",
        write: false,
        depth: 32,
    },
    Case {
        name: "randwrite QD1 ",
        write: true,
        depth: 1,
    },
    Case {
        name: "randwrite QD32",
        write: true,
        depth: 32,
    },
];

#[derive(Clone, Copy, Debug, Default)]
struct Figures {
    iops: f64,
    p50_us: f64,
    p99_us: f64,
    p999_us: f64,
    /// CPU time of the server and this client process per request: unlike IOPS, it hardly moves
    /// when another job shares the machine, so it shows what a change costs or saves.
    cpu_per_io_us: f64,
}

/// User + system CPU time of process `pid` so far, in clock ticks (USER_HZ, 100 a second).
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces): state is the first, utime the 12th.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or("", |(_, rest)| rest)
        .split_whitespace()
        .collect();
    let field = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    field(11) + field(12)
}

fn cpu_ticks_of(pids: &[u32]) -> u64 {
    pids.iter().map(|&p| cpu_ticks(p)).sum()
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn wait_for(path: &Path) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !path.exists() {
        anyhow::ensure!(
            Instant::now() < deadline,
            "{} never appeared",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(())
}

/// Runs `case` for `secs` after `warmup` and returns its figures.
fn measure(
    c: &mut Client,
    case: Case,
    blocks: u64,
    warmup: Duration,
    secs: Duration,
    pids: &[u32],
) -> anyhow::Result<Figures> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = move |_| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        (x % blocks) * 4096
    };
    let load = Load {
        write: case.write,
        block_bytes: 4096,
        depth: case.depth,
        total: 2000,
    };
    let warm_until = Instant::now() + warmup;
    while Instant::now() < warm_until {
        c.run_depth(0, load, &mut next, |_| {})?;
    }
    let mut lat_ns = Vec::new();
    let cpu_before = cpu_ticks_of(pids);
    let start = Instant::now();
    while start.elapsed() < secs {
        c.run_depth(0, load, &mut next, |ns| lat_ns.push(ns))?;
    }
    let elapsed = start.elapsed().as_secs_f64();
    let cpu_s = cpu_ticks_of(pids).saturating_sub(cpu_before) as f64 / 100.0;
    lat_ns.sort_unstable();
    let pct = |p: f64| {
        let i = ((lat_ns.len() as f64 * p) as usize).min(lat_ns.len().saturating_sub(1));
        lat_ns.get(i).copied().unwrap_or(0) as f64 / 1000.0
    };
    Ok(Figures {
        iops: lat_ns.len() as f64 / elapsed,
        p50_us: pct(0.50),
        p99_us: pct(0.99),
        p999_us: pct(0.999),
        cpu_per_io_us: cpu_s * 1e6 / lat_ns.len().max(1) as f64,
    })
}

/// Connects, fills the disk sequentially (so reads hit written data) and runs every case.
/// `pids`: the processes whose CPU time counts (the server's and this one).
fn run_all(
    socket: &Path,
    bytes: u64,
    secs: Duration,
    pids: &[u32],
) -> anyhow::Result<Vec<Figures>> {
    let mut c = Client::connect(socket, 1)?;
    let fill_block = 128 * 1024;
    let mut offset = 0u64;
    let fill = Load {
        write: true,
        block_bytes: fill_block,
        depth: 8,
        total: bytes / fill_block as u64,
    };
    c.run_depth(
        0,
        fill,
        |_| {
            let o = offset;
            offset += fill_block as u64;
            o
        },
        |_| {},
    )?;
    c.flush(0)?;
    let only = std::env::var("FERRITE_BENCH_CASE").ok();
    CASES
        .iter()
        .map(|&case| {
            if only.as_deref().is_some_and(|o| !case.name.contains(o)) {
                return Ok(Figures::default());
            }
            measure(
                &mut c,
                case,
                bytes / 4096,
                Duration::from_secs(1),
                secs,
                pids,
            )
        })
        .collect()
}

fn ferrite(dir: &Path, bytes: u64, encrypt: bool, secs: Duration) -> anyhow::Result<Vec<Figures>> {
    // 4 devices of 2 x 2 dies, 256 pages per block, sized so the logical space holds `bytes`.
    let blocks_per_plane = ((bytes * 5 / 4) / (4 * 4 * 256 * 4096)).max(16) as u32 + 8;
    let g = Geometry {
        channels: 2,
        dies_per_channel: 2,
        planes_per_die: 1,
        blocks_per_plane,
        pages_per_block: 256,
        page_size: 4096,
        oob_size: 64,
    };
    let nand_dir = dir.join(if encrypt { "ferrite-enc" } else { "ferrite" });
    // As `ferrite serve` does: sealed instance storage syncs to the page cache only (a host
    // failure takes its key, so its data, anyway); unsealed data flushes to disk at every
    // barrier. Both leave an erased block's data bytes in place until programmed over.
    let modes = if encrypt {
        ferrite::glue::FileModes::SEALED
    } else {
        ferrite::glue::FileModes::UNSEALED
    };
    let devices = ferrite::glue::file_devices_with(&nand_dir, g, 4, modes)?;
    let key = encrypt
        .then(|| keys::InstanceKey::generate(keys::Backend::AwsLc))
        .transpose()?;
    let ftl = Ftl::format_sealed(
        devices,
        FtlConfig::default(),
        key.as_ref().map(|k| k.sealer(1)),
    )?;
    anyhow::ensure!(ftl.logical_pages() * 4096 >= bytes, "geometry too small");
    let identity = NamespaceIdentity {
        nsid: 1,
        serial: "BENCH".into(),
        model: "bench".into(),
        eui64: [2, 0, 0, 0, 0, 0, 0, 1],
        read_only: false,
    };
    let ns = ActiveNamespace::new(identity, Arc::new(FtlNamespace::new(ftl)));
    let socket = dir.join(if encrypt {
        "ferrite-enc.sock"
    } else {
        "ferrite.sock"
    });
    let stop = StopHandle::new();
    let opts = TransportOptions {
        queues: 1,
        ..TransportOptions::default()
    };
    let server = {
        let (socket, stop) = (socket.clone(), stop.clone());
        std::thread::spawn(move || serve(&socket, ns, &opts, &stop))
    };
    wait_for(&socket)?;
    // The server runs in this process.
    let result = run_all(&socket, bytes, secs, &[std::process::id()]);
    stop.stop();
    server
        .join()
        .map_err(|_| anyhow::anyhow!("server panicked"))??;
    std::fs::remove_dir_all(&nand_dir)?;
    result
}

struct Qsd(Child);

impl Drop for Qsd {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn qsd(dir: &Path, bytes: u64, secs: Duration) -> anyhow::Result<Vec<Figures>> {
    let image = dir.join("qsd.raw");
    std::fs::File::create(&image)?.set_len(bytes)?;
    let socket = dir.join("qsd.sock");
    let child = Command::new("qemu-storage-daemon")
        .arg("--blockdev")
        .arg(format!("driver=file,node-name=file0,filename={},aio=io_uring", image.display()))
        .arg("--export")
        .arg(format!("type=vhost-user-blk,id=exp0,node-name=file0,addr.type=unix,addr.path={},writable=on,num-queues=1", socket.display()))
        .stdout(Stdio::null())
        .spawn()?;
    let pids = [std::process::id(), child.id()];
    let _guard = Qsd(child);
    wait_for(&socket)?;
    run_all(&socket, bytes, secs, &pids)
}

fn main() -> anyhow::Result<()> {
    if std::env::args().any(|a| a == "--list" || a == "--test") {
        return Ok(());
    }
    let secs = Duration::from_secs(env_u64("FERRITE_BENCH_SECS", 10));
    let bytes = env_u64("FERRITE_BENCH_MIB", 512) << 20;
    let dir = tempfile::tempdir_in(".")?;
    println!(
        "4 KiB random I/O, 1 queue, {} MiB disks, {:?} per case (libblkio client)",
        bytes >> 20,
        secs
    );
    let q = if std::env::var("FERRITE_BENCH_NO_QSD").is_ok() {
        vec![Figures::default(); CASES.len()]
    } else {
        qsd(dir.path(), bytes, secs)?
    };
    let plain = ferrite(dir.path(), bytes, false, secs)?;
    let sealed = ferrite(dir.path(), bytes, true, secs)?;
    println!(
        "{:<15} {:>28} {:>28} {:>28} {:>12} {:>12}",
        "case", "qsd IOPS p50/p99/p99.9 us", "ferrite", "ferrite+enc", "ratio", "ratio enc"
    );
    for (i, case) in CASES.iter().enumerate() {
        let f = |x: &Figures| {
            format!(
                "{:>9.0} {:>5.1}/{:>5.1}/{:>6.1}",
                x.iops, x.p50_us, x.p99_us, x.p999_us
            )
        };
        let ratio = |x: &Figures| {
            if q[i].iops > 0.0 {
                format!("{:.2}", x.iops / q[i].iops)
            } else {
                "-".into()
            }
        };
        println!(
            "{:<15} {:>28} {:>28} {:>28} {:>12} {:>12}",
            case.name,
            f(&q[i]),
            f(&plain[i]),
            f(&sealed[i]),
            ratio(&plain[i]),
            ratio(&sealed[i]),
        );
    }
    println!(
        "ratio = ferrite IOPS / qsd IOPS (targets: >= 1.0 at QD32 without encryption, >= 0.85 with)"
    );
    println!(
        "{:<15} {:>12} {:>12} {:>12}   CPU us per request (server + client)",
        "case", "qsd", "ferrite", "ferrite+enc"
    );
    for (i, case) in CASES.iter().enumerate() {
        println!(
            "{:<15} {:>12.1} {:>12.1} {:>12.1}",
            case.name, q[i].cpu_per_io_us, plain[i].cpu_per_io_us, sealed[i].cpu_per_io_us
        );
    }
    Ok(())
}
