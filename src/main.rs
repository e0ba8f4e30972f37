//! `ferrite`: the command line of the Ferrite storage engine.
#![forbid(unsafe_code)]

use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use tracing_subscriber::EnvFilter;

use ferrite::bench_ftl::{self, BenchParams, devices};
use ferrite::bench_recovery::{self, RecoveryParams};
use ferrite::cli::{
    BenchCommand, BenchFtlArgs, BenchGcArgs, BenchRecoveryArgs, Cli, Command, EbsBenchArgs,
    EbsCommand, EbsKekCommand, EbsServerArgs, EbsTarget, EbsVolumeCommand, NvmeCommand, ServeArgs,
    SimArgs, TargetKind, TerminateArgs,
};
use ferrite::fake::{FakeFactory, FakeFlaw, FakeFtl};
use ferrite::target::FtlOptions;
use ferrite::{ebs, glue, serve, sim};

fn main() -> anyhow::Result<ExitCode> {
    let cli = Cli::parse();
    // The simulation injects faults on purpose: the FTL's warnings about them are noise there.
    let default_level = match cli.command {
        Command::Sim(_) => "error",
        Command::Serve(_) | Command::Terminate(_) | Command::EbsServer(_) => "info",
        _ => "warn",
    };
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    match cli.command {
        Command::Sim(args) => sim(&args),
        Command::Bench(BenchCommand::Ftl(args)) => bench_ftl(&args).map(|()| ExitCode::SUCCESS),
        Command::Bench(BenchCommand::Gc(args)) => bench_gc(&args).map(|()| ExitCode::SUCCESS),
        Command::Bench(BenchCommand::Recovery(args)) => {
            bench_recovery(&args).map(|()| ExitCode::SUCCESS)
        }
        Command::Serve(args) => serve_cmd(&args).map(|()| ExitCode::SUCCESS),
        Command::Terminate(args) => terminate_cmd(&args).map(|()| ExitCode::SUCCESS),
        Command::Nvme(command) => nvme_cmd(&command).map(|()| ExitCode::SUCCESS),
        Command::EbsServer(args) => ebs_server_cmd(&args).map(|()| ExitCode::SUCCESS),
        Command::Ebs(command) => ebs_cmd(&command).map(|()| ExitCode::SUCCESS),
        Command::Fio(args) => {
            ferrite::fio::main(&args.jobfiles, args.output_format, args.output.as_deref())
        }
    }
}

fn ebs_server_cmd(args: &EbsServerArgs) -> anyhow::Result<()> {
    let mut config = match &args.config {
        Some(path) => ebs::config::EbsServerConfig::load(path)?,
        None => ebs::config::EbsServerConfig::default(),
    };
    // Flags given on the command line win over the file.
    if let Some(v) = args.listen {
        config.listen = Some(v);
    }
    if let Some(v) = &args.data {
        config.data = Some(v.clone());
    }
    if let Some(v) = args.paths {
        config.paths = v;
    }
    if let Some(v) = args.devices {
        config.devices = v;
    }
    if let Some(v) = args.blocks_per_plane {
        config.geometry.blocks_per_plane = v;
    }
    if let Some(v) = args.pages_per_block {
        config.geometry.pages_per_block = v;
    }
    if let Some(v) = args.extent_blocks {
        config.extent_blocks = v;
    }
    if let Some(v) = args.idle_timeout_ms {
        config.limits.idle_timeout_ms = v;
    }
    config.validate()?;
    let options = ebs::server::EbsServerOptions::from_config(&config);
    serve::signal::install()?;
    ebs::server::run(&options, serve::signal::stop_asked)
}

fn ebs_cmd(command: &EbsCommand) -> anyhow::Result<()> {
    let socket =
        |t: &EbsTarget| ebs::volume_cmd::socket_of(t.data.as_deref(), t.control.as_deref());
    match command {
        EbsCommand::Status(target) => ebs::volume_cmd::status(&socket(target)?),
        EbsCommand::Volume(EbsVolumeCommand::Create {
            name,
            size,
            credential_file,
            multi_attach,
            kek_file,
            wrapped_key_file,
            target,
        }) => ebs::volume_cmd::create(
            &socket(target)?,
            &ebs::volume_cmd::CreateRequest {
                name,
                blocks: *size,
                credential_file,
                multi_attach: *multi_attach,
                kek_file: kek_file.as_deref(),
                wrapped_key_file: wrapped_key_file.as_deref(),
            },
        ),
        EbsCommand::Kek(EbsKekCommand::Generate { out }) => {
            let fingerprint = ebs::kek::generate(out)?;
            println!("wrote KEK {fingerprint} to {}", out.display());
            Ok(())
        }
        EbsCommand::Volume(EbsVolumeCommand::Delete { name, target }) => {
            ebs::volume_cmd::delete(&socket(target)?, name)
        }
        EbsCommand::Volume(EbsVolumeCommand::List { json, target }) => {
            ebs::volume_cmd::list(&socket(target)?, *json)
        }
        EbsCommand::Volume(EbsVolumeCommand::Resize { name, size, target }) => {
            ebs::volume_cmd::resize(&socket(target)?, name, *size)
        }
        EbsCommand::Bench(args) => ebs_bench_cmd(args),
    }
}

fn ebs_bench_cmd(a: &EbsBenchArgs) -> anyhow::Result<()> {
    let options = ebs::bench::BenchOptions {
        paths: a.paths,
        impair: a.impair.clone(),
        duration: std::time::Duration::from_nanos(a.duration),
        seed: a.seed,
        region_blocks: a.region,
        scenarios: a.scenarios.clone(),
        systems: a.systems.clone(),
        mtu: a.mtu,
        progress: true,
    };
    let report = ebs::bench::run(&options).map_err(|e| anyhow::anyhow!("ebs bench: {e}"))?;
    if let Some(path) = &a.svg {
        std::fs::write(path, ebs::bench::svg(&report))
            .with_context(|| format!("writing {}", path.display()))?;
    }
    if a.json {
        stdout_line(serde_json::to_string(&report)?)
    } else {
        stdout_line(&report)
    }
}

fn serve_cmd(args: &ServeArgs) -> anyhow::Result<()> {
    let config = serve::ServeConfig::load_or_default(args.config.as_deref())?;
    serve::signal::install()?;
    let options = serve::RunOptions {
        terminate_on_exit: args.terminate_on_exit,
    };
    serve::run(&config, options, serve::signal::stop_asked)
}

fn terminate_cmd(args: &TerminateArgs) -> anyhow::Result<()> {
    let mut config = serve::ServeConfig::load_or_default(args.config.as_deref())?;
    if let Some(dir) = &args.data {
        config.data_dir = dir.clone();
    }
    match &args.erase_in_background {
        Some(id) => serve::terminate::erase_in_background(&config.data_dir, id),
        None => serve::terminate::terminate_instance(&config, args.wait),
    }
}

fn nvme_cmd(command: &NvmeCommand) -> anyhow::Result<()> {
    let (request, target) = match command {
        NvmeCommand::IdentifyController(t) => ("identify-controller", t),
        NvmeCommand::Identify(t) => ("identify", t),
        NvmeCommand::SmartLog(t) => ("smart-log", t),
    };
    let mut config = serve::ServeConfig::load_or_default(target.config.as_deref())?;
    if let Some(dir) = &target.data {
        config.data_dir = dir.clone();
    }
    stdout_line(serve::nvme_query(&config, request, target.nsid)?)
}

/// Prints one line of a command's result. A reader that went away (`ferrite ... | head`) is not
/// an error of the command: the rest is dropped quietly, as Unix tools do, instead of panicking.
fn stdout_line(text: impl std::fmt::Display) -> anyhow::Result<()> {
    use std::io::Write;
    match writeln!(std::io::stdout().lock(), "{text}") {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(()),
    }
}

fn replay_command(args: &SimArgs, seed: u64) -> String {
    let mut cmd = format!("ferrite sim --seed {seed} --verbose");
    if args.gc_scheduler {
        cmd.push_str(" --gc-scheduler");
    }
    if args.target == TargetKind::Fake {
        cmd.push_str(" --target fake");
        if args.fake_flaw != FakeFlaw::None {
            let flaw = clap::ValueEnum::to_possible_value(&args.fake_flaw)
                .map(|v| v.get_name().to_string())
                .unwrap_or_default();
            cmd.push_str(&format!(" --fake-flaw {flaw}"));
        }
    }
    cmd
}

fn sim(args: &SimArgs) -> anyhow::Result<ExitCode> {
    let seeds = match args.seed {
        Some(seed) => seed..seed.saturating_add(1),
        None => args.seed_start..args.seed_start.saturating_add(args.seeds),
    };
    let progress = seeds.end - seeds.start > 1;
    let (summary, failure) = match args.target {
        TargetKind::Ftl if args.gc_scheduler => {
            glue::sim_on_scheduled_ftl(seeds, args.verbose, progress)?
        }
        TargetKind::Ftl => glue::sim_on_ftl(seeds, args.verbose, progress)?,
        TargetKind::Fake => sim::run_seeds(
            &mut FakeFactory::new(args.fake_flaw),
            seeds,
            args.verbose,
            progress,
        ),
    };
    stdout_line(summary)?;
    match failure {
        None => Ok(ExitCode::SUCCESS),
        Some(f) => {
            stdout_line(format!("FAIL seed {}: {}", f.seed, f.reason))?;
            stdout_line(format!("replay: {}", replay_command(args, f.seed)))?;
            Ok(ExitCode::FAILURE)
        }
    }
}

fn bench_ftl(a: &BenchFtlArgs) -> anyhow::Result<()> {
    let geometry = devices::geometry_for(a.devices, a.blocks, a.pages_per_block, a.page_size)?;
    let params = BenchParams {
        workload: a.workload,
        options: FtlOptions {
            op_ratio: a.op,
            static_wear_leveling: !a.no_static_wl,
            stream_separation: !a.no_streams,
            gc_policy: a.gc,
        },
        fill: a.fill,
        writes: a.writes,
        devices: a.devices,
        blocks: a.blocks,
        pages_per_block: a.pages_per_block,
        page_size: a.page_size,
        seed: a.seed,
        backend: a.backend,
        reads: a.reads,
        read_batch: a.read_batch as usize,
        encrypt: a.encrypt,
        progress: true,
    };
    let report = match a.target {
        TargetKind::Ftl => {
            let devs = match a.backend {
                bench_ftl::Backend::Mem => devices::mem_devices(geometry, a.devices)?,
                bench_ftl::Backend::File => {
                    let dir = a.dir.as_deref().context("--backend file needs --dir")?;
                    glue::file_devices_with(
                        dir,
                        geometry,
                        a.devices,
                        glue::FileModes {
                            durability: a.durability.into(),
                            ..glue::FileModes::default()
                        },
                    )?
                }
            };
            glue::bench_on_ftl(devs, &params, a.svg.as_deref())?
        }
        TargetKind::Fake => {
            let raw = geometry.pages() * u64::from(a.devices);
            let fake = FakeFtl::standalone((raw as f64 * (1.0 - a.op)) as u64);
            bench_ftl::run(&fake, &params)?
        }
    };
    if a.json {
        stdout_line(serde_json::to_string(&report)?)?;
    } else {
        stdout_line(&report)?;
    }
    Ok(())
}

fn bench_gc(a: &BenchGcArgs) -> anyhow::Result<()> {
    let mut params = ferrite::bench_gc::GcBenchParams::defaults();
    params.devices = a.devices;
    params.workload = a.workload;
    params.qd = a.qd;
    params.duration_ns = a.duration;
    params.seed = a.seed;
    params.blocks_per_die = a.blocks_per_die;
    params.pages_per_block = a.pages_per_block;
    params.op_ratio = a.op;
    params.gc_die_share = a.gc_share;
    params.timing.suspend.enabled = !a.no_suspend;
    params.timing.suspend.max_suspends_per_op = a.max_suspends;
    params.timing.suspend.max_suspends_per_erase = a.max_erase_suspends;
    params.static_wear_leveling = !a.no_static_wl;
    params.explain_tail = a.explain_tail;
    params.progress = true;
    let (report, cdfs) = ferrite::bench_gc::run(&params)?;
    if let Some(path) = &a.svg {
        let title = format!(
            "Read latency, {} qd {}, {} devices, sustained GC",
            report.workload, report.qd, report.devices
        );
        std::fs::write(path, ferrite::svg::latency_cdf(&title, &cdfs))
            .with_context(|| format!("writing {}", path.display()))?;
    }
    if a.json {
        stdout_line(serde_json::to_string(&report)?)?;
    } else {
        stdout_line(&report)?;
    }
    Ok(())
}

fn bench_recovery(a: &BenchRecoveryArgs) -> anyhow::Result<()> {
    let params = RecoveryParams {
        devices: a.devices,
        logical_bytes: a.logical_bytes(),
        pages_per_block: a.pages_per_block,
        backend: a.backend,
        dir: a.dir.clone(),
        keep: a.keep,
        rewrite: a.rewrite_percent / 100.0,
        verify_pages: a.verify,
        seed: a.seed,
        progress: true,
    };
    let report = bench_recovery::run(&params)?;
    if a.json {
        stdout_line(serde_json::to_string(&report)?)?;
    } else {
        stdout_line(&report)?;
    }
    Ok(())
}
