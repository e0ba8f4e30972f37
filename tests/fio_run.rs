//! `ferrite fio` end to end: its JSON has real fio 3.33's shape (same keys, same numeric types)
//! for the same job files; jobs run on the ferrite engine with verification; errors are reported.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

fn job(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fio-run")
        .join(name)
}

fn run_fio(args: &[&str]) -> Output {
    run_fio_env(args, &[])
}

fn run_fio_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new("fio");
    cmd.args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap_or_else(|e| {
        panic!(
            "cannot run `fio` ({e}): these tests compare against the real fio 3.33; run \
             scripts/test-all, which installs it (apt-get install fio)"
        )
    })
}

fn ferrite(args: &[&str]) -> Output {
    ferrite_env(args, &[])
}

fn ferrite_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ferrite"));
    cmd.arg("fio").args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run ferrite")
}

/// fio sometimes prints "fio: ..." lines before its JSON; the JSON starts at the first '{'.
fn parse_json(out: &Output, who: &str) -> Value {
    let text = String::from_utf8_lossy(&out.stdout);
    let start = text
        .find('{')
        .unwrap_or_else(|| panic!("{who} printed no JSON:\n{text}"));
    serde_json::from_str(&text[start..]).unwrap_or_else(|e| panic!("{who} JSON: {e}\n{text}"))
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(n) if n.is_f64() => "float",
        Value::Number(_) => "integer",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Every path where the two documents differ in keys or in the kind of value.
fn shape_diff(path: &str, theirs: &Value, ours: &Value, out: &mut Vec<String>) {
    if kind(theirs) != kind(ours) {
        out.push(format!(
            "{path}: fio {} ({theirs}), ferrite {} ({ours})",
            kind(theirs),
            kind(ours)
        ));
        return;
    }
    match (theirs, ours) {
        // json+ histogram bins: keys are latencies (data, not shape): numbers to integers.
        (Value::Object(a), Value::Object(b)) if path.ends_with(".bins") => {
            for (who, m) in [("fio", a), ("ferrite", b)] {
                if m.is_empty()
                    || !m
                        .iter()
                        .all(|(k, v)| k.parse::<u64>().is_ok() && kind(v) == "integer")
                {
                    out.push(format!("{path}: {who}'s bins are not latency -> count"));
                }
            }
        }
        (Value::Object(a), Value::Object(b)) => {
            for k in a.keys().filter(|k| !b.contains_key(*k)) {
                out.push(format!("{path}.{k}: missing in ferrite"));
            }
            for k in b.keys().filter(|k| !a.contains_key(*k)) {
                out.push(format!("{path}.{k}: not in fio"));
            }
            for (k, v) in a {
                if let Some(w) = b.get(k) {
                    shape_diff(&format!("{path}.{k}"), v, w, out);
                }
            }
        }
        (Value::Array(a), Value::Array(b)) => {
            if a.len() != b.len() {
                out.push(format!(
                    "{path}: fio has {} entries, ferrite {}",
                    a.len(),
                    b.len()
                ));
            }
            for (i, (v, w)) in a.iter().zip(b).enumerate() {
                shape_diff(&format!("{path}[{i}]"), v, w, out);
            }
        }
        _ => {}
    }
}

fn compare_shapes(file: &str, format: &str) {
    compare_shapes_env(file, format, &[]);
}

fn compare_shapes_env(file: &str, format: &str, env: &[(&str, &str)]) {
    let path = job(file);
    let p = path.to_str().expect("utf-8 path");
    let flag = format!("--output-format={format}");
    let theirs = parse_json(&run_fio_env(&[&flag, p], env), "fio");
    let out = ferrite_env(&[&flag, p], env);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ours = parse_json(&out, "ferrite");
    let mut diffs = Vec::new();
    shape_diff("", &theirs, &ours, &mut diffs);
    assert!(diffs.is_empty(), "{file} ({format}):\n{}", diffs.join("\n"));
}

#[test]
fn json_shape_matches_fio() {
    compare_shapes("null-mixed.fio", "json");
}

#[test]
fn json_shape_matches_fio_with_unified_reporting_and_percentiles() {
    compare_shapes("null-both.fio", "json");
}

#[test]
fn json_shape_matches_fio_on_a_file_with_disk_util() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path().to_str().expect("utf-8");
    compare_shapes_env("psync-file.fio", "json", &[("FERRITE_TEST_DIR", d)]);
}

#[test]
fn json_plus_shape_matches_fio() {
    compare_shapes("null-mixed.fio", "json+");
}

fn write_job(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write job file");
    path
}

fn ferrite_json(file: &Path) -> Value {
    let out = ferrite(&["--output-format=json", file.to_str().expect("utf-8")]);
    assert!(
        out.status.success(),
        "ferrite fio failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    parse_json(&out, "ferrite")
}

#[test]
fn ferrite_engine_writes_verifies_and_reads() {
    let report = ferrite_json(&job("ferrite-verify.fio"));
    let jobs = report["jobs"].as_array().expect("jobs");
    assert_eq!(jobs.len(), 2);
    let writer = &jobs[0];
    // 8 MiB of 4 KiB random writes, each block once (random map), then each read back and
    // checked by the verify phase.
    assert_eq!(writer["write"]["total_ios"], 2048);
    assert_eq!(writer["write"]["io_bytes"], 8 << 20);
    assert_eq!(writer["read"]["total_ios"], 2048);
    assert_eq!(writer["error"], 0);
    assert!(
        writer["write"]["clat_ns"]["percentile"]["99.000000"]
            .as_u64()
            .unwrap_or(0)
            > 0
    );
    let reader = &jobs[1];
    assert_eq!(reader["groupid"], 1);
    assert_eq!(reader["read"]["total_ios"], 1024);
    assert_eq!(reader["error"], 0);
    let disks = report["disk_util"].as_array().expect("disk_util");
    assert_eq!(disks.len(), 1);
    assert_eq!(disks[0]["write_ios"], 2048);
    assert_eq!(disks[0]["read_ios"], 2048 + 1024);
}

#[test]
fn rate_iops_limits_and_time_based_runs_for_its_runtime() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = write_job(
        dir.path(),
        "rate.fio",
        "[j]\nioengine=null\nsize=1g\nrw=randread\nrate_iops=200\ntime_based\nruntime=1\n",
    );
    let started = std::time::Instant::now();
    let report = ferrite_json(&file);
    let elapsed = started.elapsed().as_secs_f64();
    let ios = report["jobs"][0]["read"]["total_ios"]
        .as_u64()
        .expect("ios");
    assert!((150..=230).contains(&ios), "{ios} I/Os in 1 s at 200 IOPS");
    assert!((0.9..5.0).contains(&elapsed), "{elapsed} s");
}

#[test]
fn bad_job_files_fail_with_the_option_and_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    for (text, words) in [
        (
            "[j]\nioengine=null\nsize=1m\nbogus=1\n",
            ["line 4", "bogus"],
        ),
        ("[j]\nsize=1m\n\nioengine=nbd\n", ["line 4", "needs uri="]),
        (
            "[j]\nioengine=nbd\nuri=http://host/x\n",
            ["line 3", "unknown scheme"],
        ),
        (
            "[j]\nioengine=nbd\nuri=nbd+unix:///x?socket=/nonexistent/nbd.sock\n",
            ["line 3", "connecting to /nonexistent/nbd.sock"],
        ),
        (
            "[j]\nioengine=vhost-user\nfilename=/nonexistent/ferrite.sock\n",
            [
                "line 3",
                "connecting to the vhost-user socket /nonexistent/ferrite.sock",
            ],
        ),
        (
            "[j]\nioengine=ferrite\nsize=1m\nbs=512\n",
            ["line 4", "4096"],
        ),
    ] {
        let file = write_job(dir.path(), "bad.fio", text);
        let out = ferrite(&[file.to_str().expect("utf-8")]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{text}");
        let shown = err.replace("bad.fio:", "line ");
        for w in words {
            assert!(shown.contains(w), "{text}: {err}");
        }
        assert!(!err.contains("panicked"), "{err}");
    }
}

#[test]
fn progress_line_on_a_terminal_only() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = write_job(
        dir.path(),
        "progress.fio",
        "[j]\nioengine=null\nsize=1g\nrw=randread\ntime_based\nruntime=3\nrate_iops=1000\n",
    );
    let report = dir.path().join("report.txt");
    let command = format!(
        "{} fio {} --output {}",
        env!("CARGO_BIN_EXE_ferrite"),
        file.display(),
        report.display()
    );
    // `script` gives the command a terminal (util-linux, in every Debian).
    let out = Command::new("script")
        .args(["-qc", &command, "/dev/null"])
        .output()
        .expect("run script");
    let screen = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{screen}");
    assert!(screen.contains("Jobs: 1: [r="), "{screen}");
    assert!(screen.contains("IOPS][eta 00m:0"), "{screen}");
    assert!(
        std::fs::read_to_string(&report)
            .expect("report")
            .contains("read: IOPS=")
    );
    // Without a terminal (this test's pipes): no progress line.
    let out = ferrite(&[file.to_str().expect("utf-8")]);
    assert!(!String::from_utf8_lossy(&out.stderr).contains("Jobs:"));
}

fn run_text(text: &str) -> Value {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = write_job(dir.path(), "job.fio", text);
    ferrite_json(&file)
}

#[test]
fn io_counts_agree_with_fio() {
    let dir = tempfile::tempdir().expect("tempdir");
    for text in [
        "[j]\nioengine=null\nsize=64k\nbs=4k\nrw=write\nloops=3\nfsync=5\nend_fsync=1\n",
        "[j]\nioengine=null\nsize=1m\nbs=4k,64k\nrw=randwrite\nio_size=3m\n",
        "[j]\nioengine=null\nsize=1m\nbs=16k\nrw=read:16k\n",
        "[j]\nioengine=null\nsize=1m\noffset=256k\nbs=8k\nrw=trimwrite\n",
        "[j]\nioengine=null\nsize=2m\nbs=4k\nrw=randread:8\nnumjobs=2\n",
    ] {
        let file = write_job(dir.path(), "counts.fio", text);
        let theirs = parse_json(
            &run_fio(&["--output-format=json", file.to_str().expect("utf-8")]),
            "fio",
        );
        let ours = ferrite_json(&file);
        let (a, b) = (theirs["jobs"].as_array(), ours["jobs"].as_array());
        assert_eq!(a.map(Vec::len), b.map(Vec::len), "{text}");
        for (t, o) in a.into_iter().flatten().zip(b.into_iter().flatten()) {
            for key in ["read", "write", "trim"] {
                for field in ["total_ios", "io_bytes"] {
                    assert_eq!(t[key][field], o[key][field], "{text}: {key}.{field}");
                }
            }
            assert_eq!(
                t["sync"]["total_ios"], o["sync"]["total_ios"],
                "{text}: syncs"
            );
        }
    }
}

#[test]
fn startdelay_thinktime_and_ramp_time_shape_the_run() {
    let started = std::time::Instant::now();
    let r = run_text(
        "[j]\nioengine=null\nsize=1m\nbs=4k\nrw=read\nio_size=80k\nstartdelay=1\n\
         thinktime=20ms\n",
    );
    let j = &r["jobs"][0];
    assert_eq!(j["read"]["total_ios"], 20);
    // 20 I/Os with 20 ms of think time each: at least 400 ms of job runtime, after a 1 s delay.
    let runtime_ms = j["job_runtime"].as_u64().expect("runtime");
    assert!(runtime_ms >= 380, "{runtime_ms} ms");
    assert!(started.elapsed().as_millis() >= 1_380);
    // Ramp time: I/Os in the first second are not counted.
    let r = run_text(
        "[j]\nioengine=null\nsize=1g\nrw=randread\nrate_iops=100\nramp_time=1\ntime_based\n\
         runtime=1\n",
    );
    let ios = r["jobs"][0]["read"]["total_ios"].as_u64().expect("ios");
    assert!(
        (70..=130).contains(&ios),
        "{ios} I/Os counted in 1 s at 100 IOPS"
    );
}

#[test]
fn numjobs_clones_and_group_reporting() {
    let r = run_text(
        "[global]\nioengine=ferrite\nsize=1m\nbs=4k\n[w]\nrw=randwrite\nnumjobs=3\n\
         verify=crc32c\n[sum]\nstonewall\nrw=read\nnumjobs=2\ngroup_reporting\n",
    );
    let jobs = r["jobs"].as_array().expect("jobs");
    // Three clones reported one by one, then one entry for the reporting group.
    assert_eq!(jobs.len(), 4);
    for j in &jobs[..3] {
        assert_eq!(j["jobname"], "w");
        assert_eq!(j["write"]["total_ios"], 256);
        assert_eq!(j["read"]["total_ios"], 256);
    }
    assert_eq!(jobs[3]["jobname"], "sum");
    assert_eq!(jobs[3]["read"]["total_ios"], 512);
    // Each clone has a namespace of its own (fio's default file per clone).
    assert_eq!(r["disk_util"].as_array().map(Vec::len), Some(5));
}
