//! From sections to jobs: global inheritance, `numjobs` clones, groups (`stonewall`, `new_group`),
//! `wait_for`, and the trace of parsed values the comparison test checks against real fio.

use std::path::Path;

use serde::Serialize;

use super::error::JobError;
use super::lexer::{Env, Location, RawOption, Section, parse_file};
use super::options::{JobOptions, TraceValue};

/// One job to run (a clone of a section when `numjobs` > 1).
#[derive(Clone, Debug)]
pub struct Job {
    /// The section name, or the `name=` option.
    pub name: String,
    /// Which clone of its section (0 for the first).
    pub clone_index: u32,
    /// Index of the job section in the whole list of job sections.
    pub section_index: usize,
    pub groupid: u32,
    pub options: JobOptions,
    /// The job section's own options (fio's "job options").
    pub own: Vec<RawOption>,
    /// Global options in force, then the job's own: to find where an option was set.
    pub all: Vec<RawOption>,
    pub at: Location,
}

impl Job {
    /// Where option `name` was last set for this job, for error messages.
    pub fn option_at(&self, name: &str) -> Option<&RawOption> {
        self.all.iter().rev().find(|o| o.name == name)
    }

    /// An error about this job: at the option's line when it was set, else at the section.
    pub fn error(&self, option: &str, message: impl Into<String>) -> JobError {
        match self.option_at(option) {
            Some(o) => JobError::option(o, message),
            None => {
                let mut e = JobError::at(&self.at, message);
                e.option = Some(option.to_string());
                e
            }
        }
    }
}

/// What one option's text parsed to, section by section (see `JobOptions::apply`).
#[derive(Clone, Debug, Serialize)]
pub struct TraceEntry {
    pub section: String,
    pub option: String,
    pub values: Option<Vec<TraceValue>>,
}

/// Every job of one or more job files, in order.
#[derive(Clone, Debug, Default)]
pub struct JobSet {
    /// The options of all global sections (fio's "global options").
    pub global: Vec<RawOption>,
    pub jobs: Vec<Job>,
    pub trace: Vec<TraceEntry>,
}

/// Parses job files in order. As in fio, the first job of every file after the first waits for
/// all jobs before it (an implicit stonewall), and a file's [global] applies to that file only.
pub fn load_files(paths: &[&Path], env: &dyn Env) -> Result<JobSet, JobError> {
    let mut set = JobSet::default();
    let mut group = GroupCounter::default();
    for (i, path) in paths.iter().enumerate() {
        let sections = parse_file(path, env)?;
        add_sections(&mut set, &sections, i > 0, &mut group)?;
    }
    if set.jobs.is_empty() {
        return Err(JobError::plain("no jobs defined (only [global] sections?)"));
    }
    Ok(set)
}

/// Builds the jobs of one file's sections.
pub fn from_sections(sections: &[Section]) -> Result<JobSet, JobError> {
    let mut set = JobSet::default();
    add_sections(&mut set, sections, false, &mut GroupCounter::default())?;
    if set.jobs.is_empty() {
        return Err(JobError::plain("no jobs defined (only [global] sections?)"));
    }
    Ok(set)
}

#[derive(Default)]
struct GroupCounter {
    groupid: u32,
    jobs_in_group: u32,
}

/// Applies a section's options: `kb_base` first (fio sorts it ahead so that it governs the
/// section's sizes whatever its position), then the rest in file order.
fn apply_section(
    options: &mut JobOptions,
    section: &Section,
    trace: &mut Vec<TraceEntry>,
) -> Result<(), JobError> {
    let (first, rest): (Vec<&RawOption>, Vec<&RawOption>) =
        section.options.iter().partition(|o| o.name == "kb_base");
    for o in first.into_iter().chain(rest) {
        let values = options.apply(o)?;
        trace.push(TraceEntry {
            section: section.name.clone(),
            option: o.name.clone(),
            values,
        });
    }
    Ok(())
}

fn add_sections(
    set: &mut JobSet,
    sections: &[Section],
    stonewall_first: bool,
    group: &mut GroupCounter,
) -> Result<(), JobError> {
    let mut global = JobOptions::default();
    let mut global_raw: Vec<RawOption> = Vec::new();
    let mut first_job_of_file = true;
    for section in sections {
        if section.is_global() {
            apply_section(&mut global, section, &mut set.trace)?;
            global_raw.extend(section.options.iter().cloned());
            set.global.extend(section.options.iter().cloned());
            continue;
        }
        let mut options = global.clone();
        apply_section(&mut options, section, &mut set.trace)?;
        if stonewall_first && first_job_of_file {
            options.stonewall = true;
        }
        first_job_of_file = false;
        let section_index = set.jobs.last().map_or(0, |j| j.section_index + 1);
        if let Some(target) = &options.wait_for
            && !set.jobs.iter().any(|j| &j.name == target)
        {
            let o = section
                .options
                .iter()
                .chain(global_raw.iter())
                .rfind(|o| o.name == "wait_for");
            let message = format!("wait_for={target}: no job of that name comes before it");
            return Err(match o {
                Some(o) => JobError::option(o, message),
                None => JobError::at(&section.at, message),
            });
        }
        if (options.stonewall || options.new_group) && group.jobs_in_group > 0 {
            group.groupid += 1;
            group.jobs_in_group = 0;
        }
        let name = options.name.clone().unwrap_or_else(|| section.name.clone());
        let mut all = global_raw.clone();
        all.extend(section.options.iter().cloned());
        for clone_index in 0..options.numjobs {
            let mut job_options = options.clone();
            if clone_index > 0 {
                // fio clears these on the clones: they apply to the section's first job.
                job_options.stonewall = false;
                job_options.new_group = false;
            }
            set.jobs.push(Job {
                name: name.clone(),
                clone_index,
                section_index,
                groupid: group.groupid,
                options: job_options,
                own: section.options.clone(),
                all: all.clone(),
                at: section.at.clone(),
            });
            group.jobs_in_group += 1;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fio::lexer::parse_str;
    use crate::fio::options::{
        BsSplitEntry, Ddir, Distribution, EngineKind, PerDir, RwPattern, UnifiedReporting,
        VerifyKind,
    };
    use crate::fio::units::SizeValue;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn load(text: &str) -> Result<JobSet, JobError> {
        from_sections(&parse_str(text, Path::new("t.fio"), &no_env)?)
    }

    #[test]
    fn global_inheritance_and_later_globals() {
        let set =
            load("[global]\nbs=8k\nioengine=null\n[a]\n[global2]\nbs=16k\n[b]\nbs=32k\n[c]\n")
                .expect("loads");
        let bs: Vec<u64> = set.jobs.iter().map(|j| j.options.bs_bytes.read).collect();
        assert_eq!(bs, vec![8192, 32768, 16384]);
        assert!(
            set.jobs
                .iter()
                .all(|j| j.options.ioengine == EngineKind::Null)
        );
        assert_eq!(set.global.len(), 3);
        assert_eq!(set.jobs[1].own.len(), 1);
    }

    #[test]
    fn groups_like_fio() {
        // Checked against fio 3.33's JSON: a,a,b in group 0; c 1; d 2; e 2.
        let set = load(
            "[global]\nioengine=null\n[a]\nnumjobs=2\n[b]\n[c]\nnew_group\n[d]\nstonewall\n\
             [e]\nwait_for=a\n",
        )
        .expect("loads");
        let groups: Vec<(&str, u32)> = set
            .jobs
            .iter()
            .map(|j| (j.name.as_str(), j.groupid))
            .collect();
        assert_eq!(
            groups,
            vec![("a", 0), ("a", 0), ("b", 0), ("c", 1), ("d", 2), ("e", 2)]
        );
        assert_eq!(set.jobs[1].clone_index, 1);
        assert!(set.jobs[4].options.stonewall);
    }

    #[test]
    fn kb_base_governs_its_whole_section() {
        let set = load("[j]\nsize=16m\nkb_base=1000\nrate=1KiB,2k\n").expect("loads");
        let o = &set.jobs[0].options;
        assert_eq!(o.size, Some(SizeValue::Bytes(16_000_000)));
        assert_eq!(
            o.rate_bytes_per_s,
            PerDir {
                read: 1024,
                write: 2000,
                trim: 2000
            }
        );
    }

    #[test]
    fn typed_values() {
        let set = load(
            "[j]\nrw=randread:8\nbs=4k:8k\noffset=10%\nsize=1g\nruntime=2m\ntime_based\n\
             ramp_time=5\nthinktime=10ms\nrate_iops=100,200\nbsrange=1k-4k,8k-16k\n\
             bssplit=4k/10:64k/50:32k\nrandom_distribution=zipf:1.2\nverify=crc32c\n\
             verify_pattern=0xdead\"ab\"\npercentile_list=50:99.5\nunified_rw_reporting=both\n\
             rwmixwrite=30\nloops=3\nstartdelay=2\nfsync=4\nend_fsync=1\n",
        )
        .expect("loads");
        let o = &set.jobs[0].options;
        assert_eq!((o.rw, o.rw_sequential_ios), (RwPattern::RandRead, 8));
        assert_eq!(
            o.bs_bytes,
            PerDir {
                read: 4096,
                write: 8192,
                trim: 8192
            }
        );
        assert_eq!(o.offset, SizeValue::Percent(10));
        assert_eq!(o.size, Some(SizeValue::Bytes(1 << 30)));
        assert_eq!(o.runtime_us, Some(120_000_000));
        assert!(o.time_based);
        assert_eq!(
            (o.ramp_time_us, o.thinktime_us, o.startdelay_us),
            (5_000_000, 10_000, 2_000_000)
        );
        assert_eq!(
            o.rate_iops,
            PerDir {
                read: 100,
                write: 200,
                trim: 200
            }
        );
        let r = o.bsrange_bytes.expect("bsrange");
        assert_eq!(
            (r.read, r.write, r.trim),
            ((1024, 4096), (8192, 16384), (8192, 16384))
        );
        let split = o.bssplit.as_ref().expect("bssplit");
        assert_eq!(
            split.read,
            vec![
                BsSplitEntry {
                    bs_bytes: 4096,
                    percent: 10
                },
                BsSplitEntry {
                    bs_bytes: 32768,
                    percent: 40
                },
                BsSplitEntry {
                    bs_bytes: 65536,
                    percent: 50
                },
            ]
        );
        assert_eq!(split.trim, split.read);
        assert_eq!(o.random_distribution, Distribution::Zipf { theta: 1.2 });
        assert_eq!(o.verify, VerifyKind::Crc32c);
        assert_eq!(
            o.verify_pattern.as_deref(),
            Some(&[0xde, 0xad, b'a', b'b'][..])
        );
        assert_eq!(o.percentile_list, vec![50.0, 99.5]);
        assert_eq!(o.unified_rw_reporting, UnifiedReporting::Both);
        assert_eq!(o.rwmix_read_percent, 70);
        assert_eq!((o.loops, o.fsync_every_writes, o.end_fsync), (3, 4, true));
        assert_eq!(o.max_bs(Ddir::Read), 65536);
        let set = load("[j]\nrw=write:64k\n").expect("loads");
        assert_eq!(set.jobs[0].options.rw_skip_bytes, 65536);
    }

    #[test]
    fn empty_parts_keep_defaults() {
        let set = load("[j]\nbs=,8k\nrate=1m,\n").expect("loads");
        let o = &set.jobs[0].options;
        assert_eq!(
            o.bs_bytes,
            PerDir {
                read: 4096,
                write: 8192,
                trim: 8192
            }
        );
        assert_eq!(
            o.rate_bytes_per_s,
            PerDir {
                read: 1 << 20,
                write: 0,
                trim: 0
            }
        );
    }

    #[test]
    fn bad_options_name_option_and_line() {
        for (text, option, line, words) in [
            ("[j]\nfoo=4k\n", "foo", 2, "unknown option"),
            ("[j]\n\nzonemode=zbd\n", "zonemode", 3, "does not support"),
            ("[j]\nbs=4q\n", "bs", 2, "unknown unit"),
            ("[j]\nbs = 4k\n", "bs", 2, "blank"),
            ("[j]\nrw=sideways\n", "rw", 2, "not an I/O pattern"),
            ("[j]\nioengine=libblkio\n", "ioengine", 2, "not built yet"),
            ("[j]\nioengine=libaio\n", "ioengine", 2, "not supported"),
            ("[j]\ndirect\n", "direct", 2, "needs a value"),
            ("[j]\nverify=sha256\n", "verify", 2, "not supported"),
            ("[j]\nrwmixread=120\n", "rwmixread", 2, "percentage"),
            ("[j]\nruntime=10sec\n", "runtime", 2, "time unit"),
            ("[j]\nbs=4k,8k,16k,32k\n", "bs", 2, "at most 3"),
            ("[j]\nbssplit=4k/60:8k/60\n", "bssplit", 2, "more than 100"),
            (
                "[j]\nrandom_distribution=zipf\n",
                "random_distribution",
                2,
                "parameter",
            ),
            ("[a]\n[b]\nwait_for=c\n", "wait_for", 3, "no job"),
            ("[j]\nkb_base=1023\n", "kb_base", 2, "1024 or 1000"),
            ("[j]\nrw=randread:0\n", "rw", 2, "postfix"),
        ] {
            let e = load(text).expect_err(text);
            assert_eq!(e.option.as_deref(), Some(option), "{text}: {e}");
            assert_eq!(e.at.as_ref().map(|a| a.line), Some(line), "{text}: {e}");
            let shown = e.to_string();
            assert!(shown.contains(words), "{text}: {shown}");
            assert!(shown.contains(&format!("t.fio:{line}")), "{shown}");
        }
    }

    #[test]
    fn only_globals_is_an_error() {
        assert!(load("[global]\nbs=4k\n").is_err());
    }

    #[test]
    fn files_after_the_first_start_with_a_stonewall() {
        let dir = tempfile::tempdir().expect("tempdir");
        let a = dir.path().join("a.fio");
        let b = dir.path().join("b.fio");
        std::fs::write(&a, "[global]\nbs=8k\n[x]\n[y]\n").expect("write");
        std::fs::write(&b, "[z]\n").expect("write");
        let set = load_files(&[&a, &b], &no_env).expect("loads");
        let groups: Vec<u32> = set.jobs.iter().map(|j| j.groupid).collect();
        assert_eq!(groups, vec![0, 0, 1]);
        // The first file's [global] does not reach the second file.
        assert_eq!(set.jobs[2].options.bs_bytes.read, 4096);
    }
}
