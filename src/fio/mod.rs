//! `ferrite fio`: fio 3.33 job files run against Ferrite's targets, with fio's JSON output.
//!
//! - `lexer`: job-file lines into ordered sections (comments, include, `${VAR}`).
//! - `units`: fio's number, size and time parsing.
//! - `options`: typed job options; `jobs`: global inheritance, clones, groups.

pub mod error;
pub mod jobs;
pub mod lexer;
pub mod options;
pub mod units;

pub use error::JobError;
pub mod diskstats;
pub mod engine;
pub mod ferrite_engine;
pub mod json;
pub mod nbd_engine;
pub mod normal;
pub mod progress;
pub mod runner;
pub mod stats;
pub mod verify;
pub mod vhost_engine;
pub mod workload;

use std::io::IsTerminal as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context as _;

/// `--output-format`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    Normal,
    Json,
    #[value(name = "json+")]
    JsonPlus,
}

/// `ferrite fio JOBFILE... [--output-format F] [--output FILE]`: parses, runs, reports. Exit
/// status 1 when a job failed (an I/O or verify error).
pub fn main(
    files: &[PathBuf],
    format: OutputFormat,
    output: Option<&std::path::Path>,
) -> anyhow::Result<ExitCode> {
    let paths: Vec<&std::path::Path> = files.iter().map(PathBuf::as_path).collect();
    let set = jobs::load_files(&paths, &lexer::ProcessEnv)?;
    let progress = progress::ProgressLine::default();
    // The line is redrawn in place, so only on a terminal; the report is printed after it.
    let show_progress = std::io::stderr().is_terminal();
    let done = AtomicBool::new(false);
    let result = std::thread::scope(|scope| {
        if show_progress {
            scope.spawn(|| progress.run_until(&done));
        }
        let r = runner::run(&set, &progress);
        done.store(true, Ordering::Relaxed);
        r
    })?;
    let text = match format {
        OutputFormat::Normal => normal::report(&result),
        OutputFormat::Json | OutputFormat::JsonPlus => {
            let value = json::report(&set, &result, format == OutputFormat::JsonPlus);
            serde_json::to_string_pretty(&value)? + "\n"
        }
    };
    match output {
        Some(path) => {
            std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?
        }
        None => print!("{text}"),
    }
    for r in &result.results {
        if let Some(m) = &r.stats.error_message {
            eprintln!("fio: job {}: {m}", r.job.name);
        }
    }
    Ok(if result.any_error() {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
