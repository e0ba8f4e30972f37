#![allow(clippy::unwrap_used)]
//! `ferrite ebs bench` as a user runs it: the real binary with a tiny duration and region, its
//! JSON parsed. Every (scenario, system, workload, qd) is there, measured or skipped with a
//! reason (nbd_tcp's lossy scenarios need root, `ip` and `nft`); srd has no I/O error in any
//! scenario; the figures are sane. Speed is not asserted: this is a debug build on a shared host.

use std::process::Command;

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_ferrite");

fn bench(args: &[&str]) -> std::process::Output {
    Command::new(BIN)
        .args(["ebs", "bench"])
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn every_case_is_reported_and_srd_has_no_errors() {
    let svg = tempfile::NamedTempFile::new().unwrap();
    let out = bench(&[
        "--paths",
        "4",
        "--duration",
        "300ms",
        "--region",
        "1M",
        "--json",
        "--svg",
        svg.path().to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    // One progress line per case.
    assert_eq!(
        stderr.lines().filter(|l| l.starts_with('[')).count(),
        24,
        "{stderr}"
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["paths"], 4);
    assert_eq!(report["duration_s"], 0.3);
    let results = report["results"].as_array().unwrap();
    assert_eq!(results.len(), 24);
    // Where the namespaces could be built, the veth pair has jumbo frames by default.
    let network = report["network"].as_str().unwrap();
    assert!(
        network == "loopback" || network.ends_with("MTU 9000"),
        "{network}"
    );
    for scenario in ["clean", "loss", "blackhole"] {
        for system in ["srd", "nbd_tcp"] {
            for workload in ["randwrite", "randread"] {
                for qd in [1, 32] {
                    let r = results
                        .iter()
                        .find(|r| {
                            r["scenario"] == scenario
                                && r["system"] == system
                                && r["workload"] == workload
                                && r["qd"] == qd
                        })
                        .unwrap_or_else(|| panic!("{scenario} {system} {workload} {qd} missing"));
                    let case = format!("{scenario} {system} {workload} qd {qd}: {r}");
                    if let Some(why) = r.get("skipped") {
                        // Only nbd_tcp may skip, only where loss cannot be imposed, and says why.
                        assert!(system == "nbd_tcp" && scenario != "clean", "{case}");
                        assert!(!why.as_str().unwrap().is_empty(), "{case}");
                        continue;
                    }
                    let f = |k: &str| r[k].as_f64().unwrap_or_else(|| panic!("{k}: {case}"));
                    if system == "srd" {
                        assert_eq!(r["errors"], 0, "{case}");
                    }
                    assert!(f("iops") > 0.0, "{case}");
                    assert!(f("p50_us") > 0.0, "{case}");
                    assert!(f("p50_us") <= f("p99_us"), "{case}");
                    assert!(f("p99_us") <= f("p999_us"), "{case}");
                    assert!(f("p999_us") <= f("max_us"), "{case}");
                    assert!(f("max_stall_ms") >= 0.0, "{case}");
                    assert!(f("requests") > 0.0, "{case}");
                    assert!(f("cpu_us_per_request") >= 0.0, "{case}");
                    if scenario == "blackhole" {
                        assert!(f("max_stall_ms_at_event") <= f("max_stall_ms"), "{case}");
                    } else {
                        assert!(r.get("max_stall_ms_at_event").is_none(), "{case}");
                    }
                    if system == "srd" {
                        // Over the kernel network where the bench could build it (root, ip,
                        // nft: the same place nbd_tcp's loss comes from), else the relay.
                        let note = r["note"].as_str().unwrap();
                        assert!(note.contains("veth") || note.contains("relay"), "{case}");
                        if note.contains("veth") && scenario != "clean" {
                            assert!(f("impair_drops") >= 0.0, "{case}");
                        }
                    }
                    if scenario == "blackhole" && system == "nbd_tcp" {
                        assert!(r["note"].as_str().unwrap().contains("ECMP"), "{case}");
                    }
                }
            }
        }
    }
    let ratios = &report["ratios"];
    for name in [
        "srd_errors",
        "blackhole_max_stall_ms",
        "blackhole_stall_ms_at_event",
        "blackhole_p999_over_clean_p999",
        "nbd_loss_p999_over_srd_loss_p999",
        "srd_clean_p50_over_nbd_clean_p50",
    ] {
        let t = &ratios[name];
        assert!(t["target"].is_string(), "{name}: {t}");
        assert!(t["met"].is_boolean() || t["met"].is_null(), "{name}: {t}");
        assert!(
            t["value"].is_number() || t["note"].is_string(),
            "{name}: {t}"
        );
    }
    assert_eq!(ratios["srd_errors"]["met"], true);
    let chart = std::fs::read_to_string(svg.path()).unwrap();
    assert!(chart.starts_with("<svg") && chart.matches("<polyline").count() >= 4);
}

#[test]
fn the_table_is_printed_without_json() {
    let out = bench(&[
        "--duration",
        "100ms",
        "--region",
        "256K",
        "--scenarios",
        "clean",
        "--systems",
        "srd",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.contains("scenario") && table.contains("p99.9 us"),
        "{table}"
    );
    assert_eq!(
        table.lines().filter(|l| l.starts_with("clean")).count(),
        4,
        "{table}"
    );
    assert!(table.contains("srd_errors: 0"), "{table}");
}

#[test]
fn srd_relay_always_goes_through_the_relay_and_impair_sends_srd_there() {
    for (systems, impair) in [("srd_relay", ""), ("srd", "delay=20us")] {
        let out = bench(&[
            "--duration",
            "100ms",
            "--region",
            "256K",
            "--scenarios",
            "blackhole",
            "--systems",
            systems,
            "--impair",
            impair,
            "--json",
        ]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{systems}: {stderr}");
        let report: Value = serde_json::from_slice(&out.stdout).unwrap();
        let results = report["results"].as_array().unwrap();
        assert_eq!(results.len(), 4, "{systems}");
        for r in results {
            assert_eq!(r["system"], systems, "{r}");
            assert_eq!(r["errors"], 0, "{r}");
            assert!(r["note"].as_str().unwrap().contains("relay"), "{r}");
            assert!(r["impair_drops"].as_u64().is_some(), "{r}");
        }
    }
}

#[test]
fn bad_flags_are_clear_errors() {
    for (args, says) in [
        (&["--paths", "1"][..], "--paths"),
        (&["--duration", "5ms"], "--duration"),
        (&["--duration", "soon"], "duration"),
        (&["--region", "1000"], "multiple of 4096"),
        (&["--region", "300K"], "--region"),
        (&["--impair", "path7:blackhole"], "path 7 does not exist"),
        (&["--impair", "lose=1%"], "unknown setting"),
        (&["--scenarios", "chaos"], "invalid value"),
        (&["--systems", "iscsi"], "invalid value"),
        (&["--mtu", "576"], "1280..=65535"),
    ] {
        let out = bench(args);
        assert!(!out.status.success(), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(says), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
}
