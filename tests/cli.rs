//! The `ferrite` binary end to end, against the in-memory fake FTL.

use std::process::Command;

fn ferrite(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ferrite"))
        .args(args)
        .env_remove("RUST_BACKTRACE")
        .output()
        .expect("run ferrite");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn help_lists_sim_and_bench_ftl() {
    let (code, out, _) = ferrite(&["--help"]);
    assert_eq!(code, 0);
    assert!(out.contains("sim") && out.contains("bench"), "{out}");
    let (code, out, _) = ferrite(&["bench", "--help"]);
    assert_eq!(code, 0);
    assert!(out.contains("ftl"), "{out}");
}

#[test]
fn sim_passes_on_a_correct_fake() {
    let (code, out, _) = ferrite(&["sim", "--target", "fake", "--seeds", "3"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("sim: 3 seeds passed"), "{out}");
}

#[test]
fn sim_failure_prints_the_replay_command_and_exits_non_zero() {
    let (code, out, _) = ferrite(&[
        "sim",
        "--target",
        "fake",
        "--fake-flaw",
        "flush-is-noop",
        "--seeds",
        "20",
    ]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("FAIL seed"), "{out}");
    assert!(
        out.contains("replay: ferrite sim --seed")
            && out.contains("--verbose --target fake --fake-flaw flush-is-noop"),
        "{out}"
    );
}

#[test]
fn bench_ftl_prints_json() {
    let (code, out, err) = ferrite(&[
        "bench",
        "ftl",
        "--target",
        "fake",
        "--blocks",
        "32",
        "--pages-per-block",
        "16",
        "--workload",
        "hotcold:90/10",
        "--writes",
        "2x",
        "--json",
    ]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).expect("one JSON object");
    assert_eq!(v["workload"], "hotcold:90/10");
    assert_eq!(v["waf"], 1.0);
}

#[test]
fn bench_recovery_runs_small_on_both_backends() {
    let (code, out, err) = ferrite(&[
        "bench",
        "recovery",
        "--logical-mib",
        "64",
        "--backend",
        "mem",
        "--verify",
        "2000",
        "--json",
    ]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).expect("one JSON object");
    assert!(v["logical_gib"].as_f64().expect("logical_gib") >= 64.0 / 1024.0);
    assert_eq!(v["devices"], 8);
    assert!(v["fill_mib_s"].as_f64().expect("fill_mib_s") > 0.0);
    for key in ["clean_open_ms", "crash_open_ms", "full_fold_open_ms"] {
        assert!(v[key].as_f64().is_some(), "{key}");
    }
    assert_eq!(v["clean_open"]["recovery"]["blocks_folded"], 0);
    assert!(v["crash_open"]["recovery"]["blocks_folded"].as_u64() > Some(0));
    assert!(v["full_fold_open"]["recovery"]["pages_read"].as_u64() > Some(0));
    assert!(err.contains("fill"), "{err}");

    let dir = tempfile::tempdir().expect("tempdir");
    let devices = dir.path().join("devices");
    let (code, out, err) = ferrite(&[
        "bench",
        "recovery",
        "--logical-mib",
        "16",
        "--devices",
        "2",
        "--pages-per-block",
        "64",
        "--dir",
        devices.to_str().expect("utf-8 path"),
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("clean open:") && out.contains("target < 200 ms"),
        "{out}"
    );
    assert!(!devices.exists(), "device files left behind without --keep");
}

#[test]
fn bad_arguments_are_errors_not_panics() {
    for args in [
        &["bench", "ftl", "--workload", "zipf:x"][..],
        &["bench", "ftl", "--writes", "4q"],
        &["bench", "ftl", "--blocks", "100", "--target", "fake"],
    ] {
        let (code, _, err) = ferrite(args);
        assert!(code == 1 || code == 2, "{args:?}: {code} {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
}

/// A reader that goes away before the report (`ferrite ... | head`) does not make ferrite panic.
#[test]
fn a_closed_stdout_is_not_a_panic() {
    use std::process::Stdio;
    let mut child = Command::new(env!("CARGO_BIN_EXE_ferrite"))
        .args(["sim", "--target", "fake", "--seeds", "2"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run ferrite");
    // Close the read end before ferrite writes its summary.
    drop(child.stdout.take());
    let out = child.wait_with_output().expect("wait");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(out.status.code(), Some(0), "{stderr}");
}
