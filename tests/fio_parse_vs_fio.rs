//! Ferrite's job-file parser against the real fio 3.33: for every job file in tests/fio-jobs,
//! `fio --parse-only --debug=parse` prints the value it parsed for each numeric option (`out=`);
//! Ferrite must parse the same files to the same values, section by section. Files in
//! tests/fio-jobs/bad must be rejected by both.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use ferrite::fio::jobs::load_files;
use ferrite::fio::options::TraceValue;

/// The environment both fio and Ferrite see for `${VAR}` in include.fio.
const ENV: [(&str, &str); 3] = [
    ("FERRITE_FIO_SIZE", "2m"),
    ("FERRITE_FIO_RW", "randwrite"),
    ("FERRITE_FIO_RUNTIME", "5"),
];

fn corpus(dir: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "fio"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no job files in {}", dir.display());
    files
}

fn fio(args: &[&str], file: &Path) -> std::process::Output {
    let mut cmd = Command::new("fio");
    cmd.args(args).arg(file);
    for (k, v) in ENV {
        cmd.env(k, v);
    }
    match cmd.output() {
        Ok(out) => out,
        Err(e) => panic!(
            "cannot run `fio` ({e}): these tests compare against the real fio 3.33; run \
             scripts/test-all, which installs it (apt-get install fio)"
        ),
    }
}

/// (section, option, occurrence in that section) -> values, from fio's debug output.
type Values = BTreeMap<(String, String, usize), Vec<TraceValue>>;

fn fio_values(file: &Path) -> Values {
    let out = fio(&["--parse-only", "--debug=parse"], file);
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "fio rejected {}:\n{text}",
        file.display()
    );
    let mut values = Values::new();
    let mut section: Option<String> = None;
    let mut current: Option<(String, String, usize)> = None;
    let mut seen: BTreeMap<(String, String), usize> = BTreeMap::new();
    for line in text.lines() {
        // "parse    PID message", the PID padded to a width.
        let Some(message) = line
            .strip_prefix("parse")
            .map(str::trim_start)
            .and_then(|l| l.split_once(' ').map(|(_pid, m)| m.trim_start()))
        else {
            continue;
        };
        if let Some(name) = message
            .strip_prefix("Parsing section [")
            .and_then(|n| n.strip_suffix(']'))
        {
            section = Some(name.to_string());
            current = None;
        } else if let Some(rest) = message.strip_prefix("handle_option=") {
            let Some(s) = &section else { continue };
            let option = rest.split(',').next().unwrap_or_default().to_string();
            let n = seen.entry((s.clone(), option.clone())).or_default();
            current = Some((s.clone(), option, *n));
            *n += 1;
        } else if let Some(rest) = message.trim_start().strip_prefix("ret=0, out=") {
            let value = rest.trim().parse::<u64>().expect("integer out=");
            if let Some(key) = &current {
                values
                    .entry(key.clone())
                    .or_default()
                    .push(TraceValue::Int(value));
            }
        } else if let Some(rest) = message.trim_start().strip_prefix("out=") {
            let value = rest.trim().parse::<f64>().expect("float out=");
            if let Some(key) = &current {
                values
                    .entry(key.clone())
                    .or_default()
                    .push(TraceValue::Float(value));
            }
        }
    }
    values
}

fn ferrite_values(file: &Path) -> Values {
    let env = |k: &str| {
        ENV.iter()
            .find(|(n, _)| *n == k)
            .map(|(_, v)| v.to_string())
    };
    let set = load_files(&[file], &env)
        .unwrap_or_else(|e| panic!("Ferrite rejected {}: {e}", file.display()));
    let mut values = Values::new();
    let mut seen: BTreeMap<(String, String), usize> = BTreeMap::new();
    for entry in set.trace {
        let n = seen
            .entry((entry.section.clone(), entry.option.clone()))
            .or_default();
        let key = (entry.section, entry.option, *n);
        *n += 1;
        if let Some(v) = entry.values
            && !v.is_empty()
        {
            values.insert(key, v);
        }
    }
    values
}

/// fio prints floats with six decimals.
fn same(a: &[TraceValue], b: &[TraceValue]) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|(x, y)| match (x, y) {
            (TraceValue::Int(x), TraceValue::Int(y)) => x == y,
            (TraceValue::Float(x), TraceValue::Float(y)) => (x - y).abs() < 1e-6,
            _ => false,
        })
}

#[test]
fn ferrite_parses_every_corpus_file_to_fios_values() {
    let mut compared = 0;
    let mut mismatches = Vec::new();
    for file in corpus("tests/fio-jobs") {
        let theirs = fio_values(&file);
        let ours = ferrite_values(&file);
        assert!(
            !theirs.is_empty(),
            "fio printed no values for {}",
            file.display()
        );
        for key in theirs.keys().chain(ours.keys()) {
            let (a, b) = (theirs.get(key), ours.get(key));
            match (a, b) {
                (Some(a), Some(b)) if same(a, b) => compared += 1,
                _ => mismatches.push(format!(
                    "{} [{}] {} #{}: fio {a:?}, ferrite {b:?}",
                    file.file_name().unwrap_or_default().to_string_lossy(),
                    key.0,
                    key.1,
                    key.2
                )),
            }
        }
    }
    mismatches.dedup();
    assert!(
        mismatches.is_empty(),
        "{} values differ:\n{}",
        mismatches.len(),
        mismatches.join("\n")
    );
    assert!(compared >= 60, "only {compared} values compared");
}

#[test]
fn files_fio_rejects_ferrite_rejects() {
    for file in corpus("tests/fio-jobs/bad") {
        let out = fio(&["--parse-only"], &file);
        assert!(!out.status.success(), "fio accepted {}", file.display());
        let env = |_: &str| None;
        let err = load_files(&[&file], &env).expect_err("Ferrite accepted a bad file");
        let line = err
            .at
            .as_ref()
            .map(|a| a.line)
            .unwrap_or_else(|| panic!("{}: error without a line: {err}", file.display()));
        // The line named is the one with the offending option.
        let text = std::fs::read_to_string(&file).expect("read");
        let named = text.lines().nth(line - 1).unwrap_or_default();
        if let Some(option) = &err.option {
            assert!(
                named.starts_with(option.as_str()),
                "{}: {err} names {named:?}",
                file.display()
            );
        }
    }
}
