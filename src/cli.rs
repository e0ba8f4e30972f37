//! The command line (clap derive): `ferrite sim`, `ferrite bench ftl`, `ferrite bench recovery`,
//! `ferrite bench gc`,
//! `ferrite serve`, `ferrite terminate` and `ferrite nvme`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::args::{WriteAmount, parse_fill, parse_op_ratio, parse_workload, parse_write_amount};
use crate::bench_ftl::Backend;
use crate::fake::FakeFlaw;
use crate::target::GcChoice;
use crate::workload::WorkloadSpec;

/// `ftl::nand::FileDurability` on the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Durability {
    Host,
    Process,
}

impl From<Durability> for ftl::nand::FileDurability {
    fn from(d: Durability) -> Self {
        match d {
            Durability::Host => Self::Host,
            Durability::Process => Self::Process,
        }
    }
}

#[derive(Debug, Parser)]
#[command(
    name = "ferrite",
    version,
    about = "Ferrite storage engine: one FTL over many emulated NAND devices",
    long_about = "Ferrite storage engine: one flash translation layer over many emulated NAND \
                  devices.\n\nSet RUST_LOG (e.g. RUST_LOG=ftl=debug) for logs on stderr."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Deterministic simulation: random workloads, power cuts and reopens, every read checked
    /// against a model of what it may legitimately return.
    #[command(
        long_about = "Deterministic simulation of the FTL over emulated NAND devices sharing one \
                      power rail. Each seed picks a geometry, faults (factory bad blocks, program/\
                      erase failures, uncorrectable reads), FTL settings and a workload mix, then \
                      runs writes (some FUA), reads, trims, write-zeroes, flushes, clean reopens and \
                      crashes (between operations and in the middle of one). Every read is checked \
                      against the model; after each crash every logical page is read back.\n\n\
                      A failing seed prints the command that replays it; the exit status is then 1."
    )]
    Sim(SimArgs),
    /// Benchmarks: `bench ftl` measures write amplification, wear spread and throughput;
    /// `bench recovery` the open time after a clean close and after a crash.
    #[command(subcommand)]
    Bench(BenchCommand),
    /// Runs fio 3.33 job files against Ferrite's targets and reports as fio does.
    #[command(
        long_about = "Runs fio 3.33 job files: the same grammar, units and options (an option \
                      Ferrite does not support is an error naming it and its line). Engines: \
                      ioengine=ferrite runs in-process against an FTL over emulated NAND \
                      (ferrite_devices, ferrite_capacity, ferrite_pages_per_block, ferrite_op, \
                      ferrite_backend=mem|file, ferrite_dir); psync/sync use a regular file \
                      (filename=); null moves no data. iodepth=N runs N worker threads per job, \
                      each with one synchronous I/O in flight. verify=crc32c|md5|pattern writes \
                      fio's verify format, so real fio verifies what Ferrite wrote and the other \
                      way round.\n\nExit status 1 when a job hit an I/O or verify error."
    )]
    Fio(FioArgs),
    /// Serve NVMe-style namespaces over vhost-user-blk and NBD (Ctrl-C closes cleanly).
    #[command(
        long_about = "Serves namespaces, each an FTL volume over FileNand devices, on vhost-user-blk \
                      sockets and as NBD exports. With no arguments: 8 devices under \
                      ./ferrite-data, one namespace using all of them, encryption on, vhost-user \
                      socket ./ferrite-vhost.sock, NBD on ./ferrite-nbd.sock with the export \
                      `ferrite`; it prints the QEMU options and the fio command line that attach \
                      it. --config FILE (TOML) sets data_dir, encryption, [geometry], [ftl], \
                      [transport] (queues, queue_size, logical_block_bytes, poll_us), [nbd] \
                      (enabled, socket, tcp = \"127.0.0.1:10809\", tcp_allow_remote) and \
                      [[namespace]] entries (nsid, devices, socket, serial, read_only, export: \
                      the NBD export name, default `ferrite` for the first namespace and \
                      `ferrite-NSID` for the others). The first start creates an instance (data_dir/instance.toml: \
                      its id, encryption, the key's fingerprint) whose key is kept in the kernel \
                      keyring, and formats the devices; later starts recover them with the same \
                      key. If the key is gone (host reboot, unfinished terminate), the old data \
                      cannot be opened and every namespace is formatted fresh. Ctrl-C drains every \
                      connection (vhost-user and NBD) and closes every volume with a checkpoint; with \
                      --terminate-on-exit it terminates the instance instead."
    )]
    Serve(ServeArgs),
    /// End an instance: destroy its key (crypto-erase), erase every block, forget the instance.
    #[command(
        long_about = "Terminates the instance of a data directory, as terminating an instance \
                      ends its instance storage: the instance key is destroyed in the running \
                      ferrite serve (asked over its control socket, it stops serving) and in the \
                      kernel keyring; it returns then, with the data unreadable. Every block of \
                      every namespace is then erased in the background (by that ferrite serve, \
                      or for a stopped instance by a detached process logging to \
                      data_dir/erase.log) and data_dir/instance.toml removed; --wait waits for \
                      that. The next ferrite serve waits for an unfinished erase, then creates a \
                      new instance with a new key on empty namespaces. A stop or crash of \
                      ferrite serve is not a terminate."
    )]
    Terminate(TerminateArgs),
    /// Identify data and SMART/health log of a namespace (running or stopped).
    #[command(subcommand)]
    Nvme(NvmeCommand),
    /// Serve remote volumes over UDP from an FTL over FileNand devices in --data (Ctrl-C closes cleanly).
    #[command(
        long_about = "Serves remote volumes (docs/ebs-server.md) over the SRD-like multipath UDP \
                      transport: path i listens on --listen's port + i. The first start creates \
                      --data with --devices FileNand devices and formats one FTL over them \
                      (unencrypted: the client seals its blocks itself); later starts recover \
                      it and serve the same volumes. Volumes are managed through \
                      DATA/control.sock with `ferrite ebs volume ...`. Ctrl-C or SIGTERM stops \
                      serving and closes the FTL with a checkpoint. One server per data directory."
    )]
    EbsServer(EbsServerArgs),
    /// Manage the volumes of a running `ferrite ebs-server` (create, delete, list, resize, status).
    #[command(subcommand)]
    Ebs(EbsCommand),
}

#[derive(Debug, Args)]
pub struct EbsServerArgs {
    /// TOML file with every setting (docs/ebs-server.md); the flags below override it.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Base UDP address: path i listens on its port + i (port 0: ephemeral ports).
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<std::net::SocketAddr>,
    /// Data directory: the device files, the volume catalog, the lock and control.sock.
    #[arg(long, value_name = "DIR")]
    pub data: Option<PathBuf>,
    /// Network paths (UDP sockets) per connection [default: 4].
    #[arg(long)]
    pub paths: Option<usize>,
    /// FileNand devices under the FTL (the same number on every start) [default: 8].
    #[arg(long)]
    pub devices: Option<u32>,
    /// Erase blocks per plane of new devices (small values for tests) [default: 256].
    #[arg(long)]
    pub blocks_per_plane: Option<u32>,
    /// Pages (4 KiB) per erase block of new devices [default: 64].
    #[arg(long)]
    pub pages_per_block: Option<u32>,
    /// Blocks (4 KiB) per volume extent, the unit of space a volume gets (fixed at the first
    /// start) [default: 256].
    #[arg(long)]
    pub extent_blocks: Option<u64>,
    /// Drop a connection (and release its volume) after this long without an authentic
    /// datagram [default: 10000].
    #[arg(long, value_name = "MS")]
    pub idle_timeout_ms: Option<u64>,
}

/// How `ferrite ebs` finds the server.
#[derive(Debug, Args)]
pub struct EbsTarget {
    /// The server's data directory (its control socket is DIR/control.sock).
    #[arg(long, value_name = "DIR", required_unless_present = "control")]
    pub data: Option<PathBuf>,
    /// The server's control socket.
    #[arg(long, value_name = "SOCKET", conflicts_with = "data")]
    pub control: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum EbsCommand {
    /// Create, delete, list or resize volumes.
    #[command(subcommand)]
    Volume(EbsVolumeCommand),
    /// The server's volumes, free space and transport counters (JSON).
    Status(EbsTarget),
    /// Key-encryption keys of the client side.
    #[command(subcommand)]
    Kek(EbsKekCommand),
    /// Remote volumes over SRD against NBD over TCP: clean, under 1% loss, with a path
    /// black-holed; IOPS, latency percentiles, stalls and the targets.
    #[command(
        long_about = "Runs, in this process, 4 KiB random writes and reads at queue depth 1 and 32 \
                      for each scenario (clean; loss: 1% on every path, both directions; \
                      blackhole: path PATHS/2 black-holed from mid-run on, link still up) and each \
                      system (srd: an EBS server on a RAM FTL and a sealed RemoteVolume; nbd_tcp: \
                      Ferrite's NBD export of the same FTL over one TCP connection). Run as root \
                      with ip and nft, both cross a veth pair between two network namespaces and \
                      nftables imposes the loss and the black holes on both alike; otherwise srd \
                      goes through the seeded user-space impairment relay on loopback and nbd_tcp \
                      runs the clean scenario only, over loopback. Reports \
                      errors, IOPS, p50/p99/p99.9/max latency and the longest stall per case, and \
                      the issue's targets as ratios (docs/ebs-bench.md). Progress on stderr.\n\n\
                      --impair SPEC is added after each scenario's own relay spec (srd only, and \
                      it sends srd through the relay): \
                      `--impair delay=200us` makes every scenario 200 us slower per hop; times \
                      after @ count from the start of each measured case."
    )]
    Bench(EbsBenchArgs),
}

#[derive(Debug, Args)]
pub struct EbsBenchArgs {
    /// SRD paths (UDP sockets) per connection, 2..=64.
    #[arg(long, default_value_t = 4)]
    pub paths: usize,
    /// Extra relay impairments (the `--impair` grammar of docs/ebs-bench.md), on top of each
    /// scenario's; srd only, through the relay.
    #[arg(long, value_name = "SPEC", default_value = "")]
    pub impair: String,
    /// Measured time per case (100ms..=60s); each case also prefills its region first.
    #[arg(long, default_value = "5s", value_parser = crate::bench_gc::parse_duration_ns)]
    pub duration: u64,
    /// Seed of the addresses (the same for every system) and of the relay's impairments.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// The volume region the random I/O covers: 256K..=256M, a multiple of 256K.
    #[arg(long, default_value = "16M", value_parser = crate::ebs::parse_size_blocks, value_name = "SIZE")]
    pub region: u64,
    /// Scenarios to run (comma-separated).
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "clean,loss,blackhole"
    )]
    pub scenarios: Vec<crate::ebs::bench::Scenario>,
    /// Systems to run (comma-separated); `srd_relay` is srd always through the relay (what its
    /// hops and threads cost), `srd_direct` (clean only) srd straight over loopback.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "srd,nbd_tcp")]
    pub systems: Vec<crate::ebs::bench::System>,
    /// MTU of the veth pair both systems cross (root with ip and nft): 9000, jumbo frames as in
    /// a data center, carries an srd block in one packet; 1500 makes IP fragment it in 3.
    #[arg(long, default_value_t = crate::ebs::bench::MTU_DEFAULT,
          value_parser = clap::value_parser!(u32).range(1280..=65535))]
    pub mtu: u32,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Also draw the latency CDFs (one chart per workload and queue depth) into FILE (SVG).
    #[arg(long, value_name = "FILE")]
    pub svg: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum EbsKekCommand {
    /// Write a new random KEK (64 hex digits, mode 0600) for `--kek-file`; prints its
    /// fingerprint. Keep it on the client side only: the server never needs it.
    Generate {
        /// The file to create (never overwritten).
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
pub enum EbsVolumeCommand {
    /// Create a volume; it reads zeroes until written.
    Create {
        name: String,
        /// Size in bytes, with an optional K/M/G/T suffix (binary); a multiple of 4 KiB.
        #[arg(long, value_parser = crate::ebs::parse_size_blocks, value_name = "SIZE")]
        size: u64,
        /// File holding the attach credential (never given on the command line).
        #[arg(long, value_name = "FILE")]
        credential_file: PathBuf,
        /// Let several clients attach at once.
        #[arg(long)]
        multi_attach: bool,
        /// Seal the volume's blocks on its clients: make a random data key, wrap it with the
        /// KEK in FILE (for this volume's name) and store only the wrapped form. Clients attach
        /// with the same --kek-file; the server and the wire never see a block in the clear.
        #[arg(long, value_name = "FILE", conflicts_with = "wrapped_key_file")]
        kek_file: Option<PathBuf>,
        /// File holding a data key wrapped elsewhere (76 bytes, docs/keys-format.md), stored as
        /// given and handed to attaching clients.
        #[arg(long, value_name = "FILE")]
        wrapped_key_file: Option<PathBuf>,
        #[command(flatten)]
        target: EbsTarget,
    },
    /// Delete a volume (refused while attached).
    Delete {
        name: String,
        #[command(flatten)]
        target: EbsTarget,
    },
    /// List volumes.
    List {
        /// JSON: an array of {name, id, blocks, size_bytes, multi_attach, attachments}.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        target: EbsTarget,
    },
    /// Grow or shrink a volume.
    Resize {
        name: String,
        /// New size in bytes, with an optional K/M/G/T suffix; a multiple of 4 KiB.
        #[arg(long, value_parser = crate::ebs::parse_size_blocks, value_name = "SIZE")]
        size: u64,
        #[command(flatten)]
        target: EbsTarget,
    },
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Configuration file (TOML); without it, the built-in default.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// On Ctrl-C or SIGTERM, terminate the instance (destroy its key, erase every block) instead
    /// of closing it.
    #[arg(long)]
    pub terminate_on_exit: bool,
}

#[derive(Debug, Args)]
pub struct TerminateArgs {
    /// The `ferrite serve` configuration file (its data_dir); default: the built-in default.
    #[arg(long, value_name = "FILE", conflicts_with = "data")]
    pub config: Option<PathBuf>,
    /// Data directory of the instance.
    #[arg(long, value_name = "DIR")]
    pub data: Option<PathBuf>,
    /// Return only once every block is erased (default: once the key is destroyed, leaving the
    /// erase to the background).
    #[arg(long)]
    pub wait: bool,
    /// Internal: the background erase a terminate of a stopped instance starts.
    #[arg(long, value_name = "INSTANCE_ID", hide = true, conflicts_with = "wait")]
    pub erase_in_background: Option<String>,
}

/// Which namespace `ferrite nvme` asks about, and where its server or devices are.
#[derive(Debug, Args)]
pub struct NvmeTarget {
    /// The `ferrite serve` configuration file (default: the built-in default).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Data directory, overriding the configuration's `data_dir`.
    #[arg(long, value_name = "DIR")]
    pub data: Option<PathBuf>,
    /// Namespace ID.
    #[arg(long, default_value_t = 1)]
    pub nsid: u32,
}

#[derive(Debug, Subcommand)]
pub enum NvmeCommand {
    /// Identify Controller data (JSON).
    IdentifyController(NvmeTarget),
    /// Identify Namespace data (JSON).
    Identify(NvmeTarget),
    /// SMART / health information log (JSON).
    SmartLog(NvmeTarget),
}

#[derive(Debug, Args)]
pub struct FioArgs {
    /// Job files, run in order (each file after the first starts with a stonewall).
    #[arg(required = true, value_name = "JOBFILE")]
    pub jobfiles: Vec<PathBuf>,
    /// Report format.
    #[arg(long, value_enum, default_value_t = crate::fio::OutputFormat::Normal)]
    pub output_format: crate::fio::OutputFormat,
    /// Write the report to FILE instead of stdout.
    #[arg(long, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

/// What `sim` and `bench ftl` drive.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum TargetKind {
    /// The real FTL (ftl::Ftl).
    Ftl,
    /// An in-memory fake FTL (to test the harness itself).
    Fake,
}

#[derive(Debug, Args)]
pub struct SimArgs {
    /// Number of seeds to run.
    #[arg(long, default_value_t = 100, conflicts_with = "seed")]
    pub seeds: u64,
    /// First seed of the run.
    #[arg(long, default_value_t = 0, conflicts_with = "seed")]
    pub seed_start: u64,
    /// Run this one seed only (replays a failure exactly).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Print the seed's plan and every operation on stderr.
    #[arg(long, short)]
    pub verbose: bool,
    /// What to simulate.
    #[arg(long, value_enum, default_value_t = TargetKind::Ftl)]
    pub target: TargetKind,
    /// With `--target fake`: a deliberate bug, to see the model catch it.
    #[arg(long, value_enum, default_value_t = FakeFlaw::None)]
    pub fake_flaw: FakeFlaw,
    /// Attach the global GC scheduler (timed devices on a virtual clock): GC, and the
    /// wear-leveling checkpoint, then run as background units between the operations, so the
    /// power cuts land in them too.
    #[arg(long, conflicts_with = "target")]
    pub gc_scheduler: bool,
}

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Write amplification, wear spread and throughput of the FTL under a workload.
    #[command(
        long_about = "Formats an FTL over emulated NAND, fills --fill of its logical space \
                      sequentially, then issues --writes host writes chosen by --workload and \
                      reports, for that second phase only: write amplification, GC runs, erase \
                      count spread and write throughput; then times random reads of mapped pages."
    )]
    Ftl(BenchFtlArgs),
    /// Open time of the FTL after a clean close, after a crash, and with every block folded.
    #[command(
        long_about = "Sizes 2 x 2 dies per device so that the FTL exports at least --logical-gib \
                      (or --logical-mib), formats, fills every logical page once, closes and times \
                      the reopen (clean open, target < 200 ms at 8 devices and 16 GiB); overwrites \
                      a random 5% of the pages and drops the FTL without closing, then times the \
                      reopen (crash open, target < 3 s); formats, fills and crashes again, and \
                      times the reopen that folds every block. After each reopen a sample of pages \
                      is read back and checked."
    )]
    Recovery(BenchRecoveryArgs),
    /// Read and write tail latency with sustained GC: coordinated, independent and no-gc.
    #[command(
        long_about = "On the virtual clock (deterministic; device time, not wall time): builds \
                      --devices timed NAND devices, fills and overwrites their logical space, \
                      then runs --workload at --qd for --duration of device time in three modes: \
                      coordinated (one FTL over all devices, the global GC scheduler), \
                      independent (one FTL per device with its own GC, striped like RAID-0) and \
                      no-gc (devices with the same dies and more blocks, never collecting: the \
                      floor). Prints read and write latency p50/p99/p99.9/p99.99/max, IOPS and \
                      WAF per mode and their ratios; --svg draws the read latency CDFs."
    )]
    Gc(BenchGcArgs),
}

#[derive(Debug, Args)]
pub struct BenchGcArgs {
    /// Number of NAND devices.
    #[arg(long, default_value_t = 8)]
    pub devices: u32,
    /// randrw:READ_PERCENT (uniform random 4 KiB requests), randread or randwrite.
    #[arg(long, default_value = "randrw:70")]
    pub workload: crate::bench_gc::GcWorkload,
    /// Requests outstanding at once.
    #[arg(long, default_value_t = 32)]
    pub qd: u32,
    /// Measured window in device time: 60s, 500ms, 2m.
    #[arg(long, default_value = "60s", value_parser = crate::bench_gc::parse_duration_ns)]
    pub duration: u64,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Also draw the read latency CDFs of the three modes into FILE (SVG).
    #[arg(long, value_name = "FILE")]
    pub svg: Option<PathBuf>,
    /// Seed of the workload (the same in every mode).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Blocks per die (each device has 2 channels x 2 dies).
    #[arg(long, default_value_t = 32)]
    pub blocks_per_die: u32,
    /// Pages per block (4 KiB pages).
    #[arg(long, default_value_t = 64)]
    pub pages_per_block: u32,
    /// Over-provisioning ratio.
    #[arg(long, default_value = "0.125", value_parser = parse_op_ratio)]
    pub op: f64,
    /// Most dies in GC at once in coordinated mode, as a share of all dies.
    #[arg(long, default_value_t = 0.25)]
    pub gc_share: f64,
    /// Turn program/erase suspend off (reads then wait for programs and erases).
    #[arg(long)]
    pub no_suspend: bool,
    /// Suspensions one program accepts before reads wait for its end (0..=64).
    #[arg(long, default_value_t = ftl::nand::timing::SuspendConfig::default().max_suspends_per_op)]
    pub max_suspends: u32,
    /// Suspensions one erase accepts before reads wait for its end (0..=64).
    #[arg(long, default_value_t = ftl::nand::timing::SuspendConfig::default().max_suspends_per_erase)]
    pub max_erase_suspends: u32,
    /// Turn static wear leveling off in every mode.
    #[arg(long)]
    pub no_static_wl: bool,
    /// Also report, per mode, what the reads at or above p99.9 waited behind.
    #[arg(long)]
    pub explain_tail: bool,
}

#[derive(Debug, Args)]
pub struct BenchRecoveryArgs {
    /// Number of NAND devices.
    #[arg(long, default_value_t = 8)]
    pub devices: u32,
    /// Logical capacity to reach at least, in GiB.
    #[arg(long, default_value_t = 16)]
    pub logical_gib: u64,
    /// Logical capacity in MiB instead of --logical-gib (for small runs).
    #[arg(long, conflicts_with = "logical_gib")]
    pub logical_mib: Option<u64>,
    /// Pages per block (4 KiB pages).
    #[arg(long, default_value_t = 256)]
    pub pages_per_block: u32,
    /// Where device pages live: one file per device under --dir, or RAM.
    #[arg(long, value_enum, default_value_t = Backend::File)]
    pub backend: Backend,
    /// Directory of the device files (file backend); removed at the end unless --keep.
    #[arg(long, default_value = "ferrite-bench-recovery")]
    pub dir: PathBuf,
    /// Keep the device files.
    #[arg(long)]
    pub keep: bool,
    /// Percentage of the logical pages overwritten before the crash.
    #[arg(long, default_value_t = 5.0)]
    pub rewrite_percent: f64,
    /// Pages read back and checked after each reopen.
    #[arg(long, default_value_t = 10_000)]
    pub verify: u64,
    /// Seed of the rewritten and verified pages.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Print one JSON object instead of a readable summary.
    #[arg(long)]
    pub json: bool,
}

impl BenchRecoveryArgs {
    /// The logical size asked for, in bytes.
    pub fn logical_bytes(&self) -> u64 {
        match self.logical_mib {
            Some(mib) => mib.saturating_mul(1 << 20),
            None => self.logical_gib.saturating_mul(1 << 30),
        }
    }
}

#[derive(Debug, Args)]
pub struct BenchFtlArgs {
    /// Which pages the measured writes hit: uniform, seq, zipf:THETA (e.g. zipf:0.99) or
    /// hotcold:A/B (A% of writes to B% of pages, e.g. hotcold:90/10).
    #[arg(long, default_value = "uniform", value_parser = parse_workload)]
    pub workload: WorkloadSpec,
    /// Over-provisioning ratio (e.g. 0.07, 0.125, 0.28).
    #[arg(long, default_value = "0.125", value_parser = parse_op_ratio)]
    pub op: f64,
    /// Fraction of the logical space written sequentially before measuring, in (0, 1].
    #[arg(long, default_value = "1.0", value_parser = parse_fill)]
    pub fill: f64,
    /// Measured host writes: a multiple of the logical capacity (4x) or a page count.
    #[arg(long, default_value = "4x", value_parser = parse_write_amount)]
    pub writes: WriteAmount,
    /// Print one JSON object instead of a readable summary.
    #[arg(long)]
    pub json: bool,
    /// Also draw the erase-count distribution of all blocks at the end as an SVG histogram.
    #[arg(long, value_name = "FILE")]
    pub svg: Option<std::path::PathBuf>,
    /// Number of NAND devices.
    #[arg(long, default_value_t = 8)]
    pub devices: u32,
    /// Blocks over all devices (a multiple of --devices).
    #[arg(long, default_value_t = 4096)]
    pub blocks: u32,
    /// Pages per block (4 KiB pages).
    #[arg(long, default_value_t = 256)]
    pub pages_per_block: u32,
    /// NAND page size in bytes: 4096, or 16384 (four 4 KiB logical pages per NAND page).
    #[arg(long, default_value_t = 4096)]
    pub page_size: u32,
    /// Seed of the workload and of the random reads.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Turn static wear leveling off.
    #[arg(long)]
    pub no_static_wl: bool,
    /// Garbage-collection victim policy.
    #[arg(long, value_enum, default_value_t = GcChoice::CostBenefit)]
    pub gc: GcChoice,
    /// Turn hot/cold stream separation off.
    #[arg(long)]
    pub no_streams: bool,
    /// Seal every host page with AES-256-GCM under a fresh instance key (as local instance
    /// storage does), to measure what encryption costs.
    #[arg(long)]
    pub encrypt: bool,
    /// Where device pages live: RAM, or one file per device under --dir.
    #[arg(long, value_enum, default_value_t = Backend::Mem)]
    pub backend: Backend,
    /// Directory for --backend file.
    #[arg(long, required_if_eq("backend", "file"))]
    pub dir: Option<PathBuf>,
    /// What a device file's sync survives (--backend file): `host` flushes to disk at every
    /// barrier, `process` leaves it to the page cache (what `ferrite serve` uses when encrypted).
    #[arg(long, value_enum, default_value_t = Durability::Host)]
    pub durability: Durability,
    /// Random reads in the read phase.
    #[arg(long, default_value_t = 200_000)]
    pub reads: u64,
    /// Reads issued together in the read phase, as a client with that many queued issues them:
    /// the FTL overlaps their map lookups and memory misses (1: one read at a time).
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u64).range(1..=64))]
    pub read_batch: u64,
    /// What to benchmark.
    #[arg(long, value_enum, default_value_t = TargetKind::Ftl)]
    pub target: TargetKind,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("ferrite").chain(args.iter().copied()))
    }

    #[test]
    fn clap_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn bench_ftl_args() {
        let cli = parse(&[
            "bench",
            "ftl",
            "--workload",
            "zipf:0.99",
            "--op",
            "0.07",
            "--fill",
            "1.0",
            "--writes",
            "4x",
            "--json",
            "--gc",
            "cost-benefit",
            "--no-streams",
        ])
        .expect("parse");
        let Command::Bench(BenchCommand::Ftl(a)) = cli.command else {
            panic!("not bench ftl");
        };
        assert_eq!(a.workload, WorkloadSpec::Zipf { theta: 0.99 });
        assert_eq!(a.op, 0.07);
        assert_eq!(a.writes, WriteAmount::Capacity(4.0));
        assert!(a.json && a.no_streams && !a.no_static_wl);
        assert_eq!(a.gc, GcChoice::CostBenefit);
        assert_eq!((a.devices, a.blocks, a.pages_per_block), (8, 4096, 256));

        let cli = parse(&[
            "bench",
            "ftl",
            "--workload",
            "hotcold:90/10",
            "--writes",
            "5000",
        ])
        .expect("parse");
        let Command::Bench(BenchCommand::Ftl(a)) = cli.command else {
            panic!("not bench ftl");
        };
        assert_eq!(a.writes, WriteAmount::Pages(5000));
        assert!(matches!(a.workload, WorkloadSpec::HotCold { .. }));
    }

    #[test]
    fn bench_gc_args() {
        let cli = parse(&[
            "bench",
            "gc",
            "--devices",
            "8",
            "--workload",
            "randrw:70",
            "--qd",
            "32",
            "--duration",
            "60s",
            "--json",
            "--svg",
            "cdf.svg",
            "--seed",
            "7",
        ])
        .expect("parse");
        let Command::Bench(BenchCommand::Gc(a)) = cli.command else {
            panic!("not bench gc");
        };
        assert_eq!((a.devices, a.qd, a.seed), (8, 32, 7));
        assert_eq!(a.workload.read_pct, 70);
        assert_eq!(a.duration, 60_000_000_000);
        assert!(a.json && !a.no_suspend && !a.no_static_wl);
        assert_eq!(a.svg, Some(PathBuf::from("cdf.svg")));
        assert!(parse(&["bench", "gc", "--workload", "randrw:x"]).is_err());
        assert!(parse(&["bench", "gc", "--duration", "0s"]).is_err());
    }

    #[test]
    fn ebs_bench_args() {
        use crate::ebs::bench::{Scenario, System};
        let cli = parse(&["ebs", "bench"]).expect("parse");
        let Command::Ebs(EbsCommand::Bench(a)) = cli.command else {
            panic!("not ebs bench");
        };
        assert_eq!(
            (a.paths, a.duration, a.seed, a.region),
            (4, 5_000_000_000, 1, 4096)
        );
        assert_eq!(a.scenarios, Scenario::ALL.to_vec());
        assert_eq!(a.systems, System::ALL.to_vec());
        assert!(a.impair.is_empty() && !a.json && a.svg.is_none());
        let cli = parse(&[
            "ebs",
            "bench",
            "--paths",
            "8",
            "--impair",
            "delay=1ms",
            "--duration",
            "300ms",
            "--scenarios",
            "loss,blackhole",
            "--systems",
            "nbd_tcp",
            "--json",
        ])
        .expect("parse");
        let Command::Ebs(EbsCommand::Bench(a)) = cli.command else {
            panic!("not ebs bench");
        };
        assert_eq!((a.paths, a.duration), (8, 300_000_000));
        assert_eq!(a.scenarios, vec![Scenario::Loss, Scenario::Blackhole]);
        assert_eq!(a.systems, vec![System::NbdTcp]);
        assert!(a.json);
        assert!(parse(&["ebs", "bench", "--scenarios", "chaos"]).is_err());
        assert!(parse(&["ebs", "bench", "--region", "1000"]).is_err());
    }

    #[test]
    fn bench_recovery_args() {
        let cli = parse(&["bench", "recovery"]).expect("parse");
        let Command::Bench(BenchCommand::Recovery(a)) = cli.command else {
            panic!("not bench recovery");
        };
        assert_eq!((a.devices, a.pages_per_block), (8, 256));
        assert_eq!(a.logical_bytes(), 16 << 30);
        assert_eq!(a.backend, Backend::File);
        assert!(!a.json && !a.keep);
        let cli = parse(&[
            "bench",
            "recovery",
            "--logical-mib",
            "64",
            "--backend",
            "mem",
            "--json",
        ])
        .expect("parse");
        let Command::Bench(BenchCommand::Recovery(a)) = cli.command else {
            panic!("not bench recovery");
        };
        assert_eq!(a.logical_bytes(), 64 << 20);
        assert_eq!(a.backend, Backend::Mem);
        assert!(
            parse(&[
                "bench",
                "recovery",
                "--logical-gib",
                "1",
                "--logical-mib",
                "64"
            ])
            .is_err()
        );
    }

    #[test]
    fn bad_values_are_rejected() {
        for args in [
            &["bench", "ftl", "--workload", "zipf"][..],
            &["bench", "ftl", "--workload", "hotcold:90"],
            &["bench", "ftl", "--writes", "x"],
            &["bench", "ftl", "--op", "1.5"],
            &["bench", "ftl", "--backend", "file"],
            &["sim", "--seed", "3", "--seeds", "10"],
        ] {
            assert!(parse(args).is_err(), "{args:?}");
        }
    }

    #[test]
    fn serve_and_terminate_args() {
        let cli = parse(&["serve", "--terminate-on-exit"]).expect("parse");
        let Command::Serve(a) = cli.command else {
            panic!("not serve");
        };
        assert!(a.terminate_on_exit && a.config.is_none());
        let cli = parse(&["terminate", "--data", "d"]).expect("parse");
        let Command::Terminate(a) = cli.command else {
            panic!("not terminate");
        };
        assert_eq!(a.data, Some(PathBuf::from("d")));
        assert!(parse(&["terminate", "--data", "d", "--config", "f"]).is_err());
    }

    #[test]
    fn sim_args() {
        let cli = parse(&["sim", "--seed", "42", "--verbose"]).expect("parse");
        let Command::Sim(a) = cli.command else {
            panic!("not sim");
        };
        assert_eq!(a.seed, Some(42));
        assert!(a.verbose);
        let cli = parse(&[
            "sim",
            "--seeds",
            "500",
            "--seed-start",
            "1000",
            "--target",
            "fake",
        ])
        .expect("parse");
        let Command::Sim(a) = cli.command else {
            panic!("not sim");
        };
        assert_eq!(
            (a.seeds, a.seed_start, a.target),
            (500, 1000, TargetKind::Fake)
        );
    }
}
