//! Verify interop with the real fio 3.33 over plain files: data real fio wrote with
//! verify=crc32c/md5/pattern verifies under `ferrite fio`, data `ferrite fio` wrote verifies
//! under real fio, and one corrupted byte is a verify error for both.

use std::os::unix::fs::FileExt;
use std::path::Path;
use std::process::{Command, Output};

const SIZE: &str = "256k";
const BLOCKS: u64 = 64;

/// Real fio; it would leave a verify state file in the working directory (the repository), so it
/// saves none.
fn fio(args: &[String]) -> Output {
    Command::new("fio")
        .arg("--verify_state_save=0")
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run `fio` ({e}): these tests compare against the real fio 3.33; run \
             scripts/test-all, which installs it (apt-get install fio)"
            )
        })
}

fn ferrite(job: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ferrite"))
        .args(["fio", "--output-format=json"])
        .arg(job)
        .output()
        .expect("run ferrite")
}

fn text(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

/// The verify options of one case, as fio command-line flags and as job-file lines.
struct Case {
    verify: &'static str,
    pattern: Option<&'static str>,
    rw: &'static str,
}

const CASES: [Case; 4] = [
    Case {
        verify: "crc32c",
        pattern: None,
        rw: "randwrite",
    },
    Case {
        verify: "md5",
        pattern: None,
        rw: "randwrite",
    },
    Case {
        verify: "pattern",
        pattern: Some("0xdeadbeef"),
        rw: "write",
    },
    Case {
        verify: "crc32c",
        pattern: Some("0x0102\"ferrite\""),
        rw: "randwrite",
    },
];

impl Case {
    fn name(&self) -> String {
        format!(
            "{}{}",
            self.verify,
            if self.pattern.is_some() {
                "+pattern"
            } else {
                ""
            }
        )
    }

    fn fio_args(&self, file: &Path, rw: &str, extra: &[&str]) -> Vec<String> {
        let mut args = vec![
            "--name=interop".to_string(),
            "--ioengine=psync".into(),
            format!("--filename={}", file.display()),
            format!("--size={SIZE}"),
            "--bs=4k".into(),
            format!("--rw={rw}"),
            format!("--verify={}", self.verify),
            "--output-format=json".into(),
        ];
        if let Some(p) = self.pattern {
            args.push(format!("--verify_pattern={p}"));
        }
        args.extend(extra.iter().map(|s| s.to_string()));
        args
    }

    fn job_file(&self, dir: &Path, file: &Path, rw: &str, extra: &str) -> std::path::PathBuf {
        let mut text = format!(
            "[interop]\nioengine=psync\nfilename={}\nsize={SIZE}\nbs=4k\nrw={rw}\nverify={}\n{extra}",
            file.display(),
            self.verify
        );
        if let Some(p) = self.pattern {
            text.push_str(&format!("verify_pattern={p}\n"));
        }
        let path = dir.join(format!("{}-{rw}.fio", self.name()));
        std::fs::write(&path, text).expect("write job");
        path
    }
}

fn corrupt(file: &Path, offset: u64) {
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(file)
        .expect("open data file");
    let mut byte = [0u8; 1];
    f.read_exact_at(&mut byte, offset).expect("read byte");
    byte[0] ^= 0x55;
    f.write_all_at(&byte, offset).expect("write byte");
}

fn json_of(out: &Output) -> serde_json::Value {
    let t = String::from_utf8_lossy(&out.stdout);
    let start = t
        .find('{')
        .unwrap_or_else(|| panic!("no JSON:\n{}", text(out)));
    serde_json::from_str(&t[start..]).unwrap_or_else(|e| panic!("{e}:\n{}", text(out)))
}

#[test]
fn ferrite_verifies_what_fio_wrote() {
    let dir = tempfile::tempdir().expect("tempdir");
    for case in &CASES {
        let file = dir.path().join(format!("{}.dat", case.name()));
        let out = fio(&case.fio_args(&file, case.rw, &["--do_verify=0"]));
        assert!(
            out.status.success(),
            "fio write {}: {}",
            case.name(),
            text(&out)
        );

        // A sequential read with verify= checks every block.
        let job = case.job_file(dir.path(), &file, "read", "");
        let out = ferrite(&job);
        assert!(out.status.success(), "{}: {}", case.name(), text(&out));
        assert_eq!(
            json_of(&out)["jobs"][0]["read"]["total_ios"],
            BLOCKS,
            "{}",
            case.name()
        );

        // verify_only replays the write job's offsets and checks them.
        let job = case.job_file(dir.path(), &file, case.rw, "verify_only\n");
        let out = ferrite(&job);
        assert!(
            out.status.success(),
            "{} verify_only: {}",
            case.name(),
            text(&out)
        );
        assert_eq!(json_of(&out)["jobs"][0]["write"]["total_ios"], 0);
        assert_eq!(json_of(&out)["jobs"][0]["read"]["total_ios"], BLOCKS);

        // One flipped byte in block 5's data.
        corrupt(&file, 5 * 4096 + 300);
        let job = case.job_file(dir.path(), &file, "read", "");
        let out = ferrite(&job);
        assert!(
            !out.status.success(),
            "{}: corruption not caught",
            case.name()
        );
        let t = text(&out);
        assert!(t.contains("offset 20480"), "{}: {t}", case.name());
        assert!(
            t.contains("verify") || t.contains("mismatch"),
            "{}: {t}",
            case.name()
        );
        assert_eq!(json_of(&out)["jobs"][0]["error"], 84, "{}", case.name());
    }
}

#[test]
fn fio_verifies_what_ferrite_wrote() {
    let dir = tempfile::tempdir().expect("tempdir");
    for case in &CASES {
        let file = dir.path().join(format!("{}.dat", case.name()));
        let job = case.job_file(dir.path(), &file, case.rw, "do_verify=0\n");
        let out = ferrite(&job);
        assert!(
            out.status.success(),
            "ferrite write {}: {}",
            case.name(),
            text(&out)
        );

        let out = fio(&case.fio_args(&file, "read", &[]));
        let report = json_of(&out);
        assert!(
            out.status.success(),
            "fio verify {}: {}",
            case.name(),
            text(&out)
        );
        assert_eq!(
            report["jobs"][0]["error"],
            0,
            "{}: {}",
            case.name(),
            text(&out)
        );
        assert_eq!(
            report["jobs"][0]["read"]["total_ios"],
            BLOCKS,
            "{}",
            case.name()
        );

        // A flipped byte in a header (block 3) and fio reports a verify error.
        corrupt(&file, 3 * 4096 + 17);
        let out = fio(&case.fio_args(&file, "read", &[]));
        let report = json_of(&out);
        assert_eq!(
            report["jobs"][0]["error"],
            84,
            "{}: {}",
            case.name(),
            text(&out)
        );
        assert!(
            text(&out).contains("12288"),
            "{}: {}",
            case.name(),
            text(&out)
        );
    }
}

#[test]
fn direct_io_round_trip() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("direct.dat");
    let case = &CASES[0];
    let job = case.job_file(dir.path(), &file, "randwrite", "direct=1\niodepth=4\n");
    let out = ferrite(&job);
    assert!(out.status.success(), "ferrite direct write: {}", text(&out));
    let out = fio(&case.fio_args(&file, "read", &["--direct=1"]));
    assert_eq!(json_of(&out)["jobs"][0]["error"], 0, "{}", text(&out));
    assert_eq!(json_of(&out)["jobs"][0]["read"]["total_ios"], BLOCKS);
}
