//! The job-file grammar as fio 3.33 reads it: lines, `[sections]`, comments, `include`, `${VAR}`.
//!
//! The result is an ordered list of sections, each with its options in file order and the place
//! every option came from, so that later errors can name the option and its line. Typing the
//! values is `options.rs`'s business.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::error::JobError;

/// Includes nest at most this deep (fio has no limit; a cycle would never end).
const MAX_INCLUDE_DEPTH: usize = 16;

/// Where a line came from: file and 1-based line number.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Location {
    pub file: Arc<Path>,
    pub line: usize,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file.display(), self.line)
    }
}

/// One `name=value` line, or a bare `name` (fio's flag options such as `time_based`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RawOption {
    pub name: String,
    /// The text after `=`, exactly as fio keeps it (comments cut, trailing blanks trimmed, leading
    /// blanks kept: fio 3.33 does not strip them, see `units.rs`).
    pub value: Option<String>,
    pub at: Location,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Section {
    pub name: String,
    pub at: Location,
    pub options: Vec<RawOption>,
}

impl Section {
    /// fio treats `[global]` and every section whose name starts with "global" as global options.
    pub fn is_global(&self) -> bool {
        self.name.starts_with("global")
    }
}

/// Looks up `${VAR}` values; the process environment in the CLI, a map in tests.
pub trait Env {
    fn var(&self, name: &str) -> Option<String>;
}

/// The process environment.
#[derive(Debug, Clone, Copy)]
pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

impl<F: Fn(&str) -> Option<String>> Env for F {
    fn var(&self, name: &str) -> Option<String> {
        self(name)
    }
}

/// Reads and parses a job file (and the files it includes).
pub fn parse_file(path: &Path, env: &dyn Env) -> Result<Vec<Section>, JobError> {
    let mut sections = Vec::new();
    read_into(path, env, &mut sections, 0, None)?;
    Ok(sections)
}

/// Parses job-file text as if read from `origin` (used for messages and relative includes).
pub fn parse_str(text: &str, origin: &Path, env: &dyn Env) -> Result<Vec<Section>, JobError> {
    let mut sections = Vec::new();
    parse_lines(text, origin, env, &mut sections, 0)?;
    Ok(sections)
}

fn read_into(
    path: &Path,
    env: &dyn Env,
    sections: &mut Vec<Section>,
    depth: usize,
    included_at: Option<&Location>,
) -> Result<(), JobError> {
    let text = std::fs::read_to_string(path).map_err(|e| match included_at {
        Some(at) => JobError::at(at, format!("include {}: {e}", path.display())),
        None => JobError::plain(format!("reading job file {}: {e}", path.display())),
    })?;
    parse_lines(&text, path, env, sections, depth)
}

fn parse_lines(
    text: &str,
    origin: &Path,
    env: &dyn Env,
    sections: &mut Vec<Section>,
    depth: usize,
) -> Result<(), JobError> {
    let file: Arc<Path> = Arc::from(origin);
    for (index, raw) in text.lines().enumerate() {
        let at = Location {
            file: file.clone(),
            line: index + 1,
        };
        let line = strip_comment(raw.trim_start());
        if line.is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix('[') {
            let Some(name) = rest.strip_suffix(']').filter(|n| !n.is_empty()) else {
                return Err(JobError::at(
                    &at,
                    format!("malformed section header {line:?}"),
                ));
            };
            sections.push(Section {
                name: name.to_string(),
                at,
                options: Vec::new(),
            });
            continue;
        }
        if let Some(target) = include_target(line) {
            if depth >= MAX_INCLUDE_DEPTH {
                return Err(JobError::at(
                    &at,
                    format!("includes nest deeper than {MAX_INCLUDE_DEPTH} (a cycle?)"),
                ));
            }
            let target = substitute(target, env);
            let path = resolve_include(origin, &target);
            read_into(&path, env, sections, depth + 1, Some(&at))?;
            continue;
        }
        let Some(section) = sections.last_mut() else {
            return Err(JobError::at(
                &at,
                format!("option {line:?} is outside of any [section]"),
            ));
        };
        let line = substitute(line, env);
        let (name, value) = match line.split_once('=') {
            Some((name, value)) => (name.trim_end().to_string(), Some(value.to_string())),
            None => (line.trim_end().to_string(), None),
        };
        if name.is_empty() {
            return Err(JobError::at(
                &at,
                format!("option line {line:?} has no name"),
            ));
        }
        section.options.push(RawOption { name, value, at });
    }
    Ok(())
}

/// fio cuts a line at its first `;` and at its first `#`, wherever they are, then trims the end.
fn strip_comment(line: &str) -> &str {
    let end = line.find([';', '#']).unwrap_or(line.len());
    line[..end].trim_end()
}

/// `include FILE` (the keyword, then blanks, then the file name).
fn include_target(line: &str) -> Option<&str> {
    let rest = line.strip_prefix("include")?;
    rest.starts_with(char::is_whitespace)
        .then(|| rest.trim())
        .filter(|t| !t.is_empty())
}

/// A relative include is looked up next to the file that includes it.
fn resolve_include(origin: &Path, target: &str) -> PathBuf {
    let target = Path::new(target);
    if target.is_absolute() {
        return target.to_path_buf();
    }
    match origin.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.join(target),
        _ => target.to_path_buf(),
    }
}

/// `${VAR}` becomes the variable's value; an unset variable becomes the empty string, as in fio.
pub fn substitute(line: &str, env: &dyn Env) -> String {
    let mut out = String::with_capacity(line.len());
    let mut rest = line;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        match after.find('}') {
            Some(end) if end > 0 => {
                out.push_str(&env.var(&after[..end]).unwrap_or_default());
                rest = &after[end + 1..];
            }
            _ => {
                out.push_str("${");
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn parse(text: &str) -> Result<Vec<Section>, JobError> {
        parse_str(text, Path::new("job.fio"), &no_env)
    }

    fn opts(s: &Section) -> Vec<(&str, Option<&str>)> {
        s.options
            .iter()
            .map(|o| (o.name.as_str(), o.value.as_deref()))
            .collect()
    }

    #[test]
    fn sections_options_flags_and_comments() {
        let s = parse(
            "; header comment\n# another\n[global]\nbs=4k ; trailing\nrw=randread:8   # x\n\
             time_based\n\n  [job1]\nsize=1g;cut\nfilename=/a#b\n[job1]\n",
        )
        .expect("parses");
        assert_eq!(s.len(), 3);
        assert_eq!(s[0].name, "global");
        assert!(s[0].is_global());
        assert_eq!(
            opts(&s[0]),
            vec![
                ("bs", Some("4k")),
                ("rw", Some("randread:8")),
                ("time_based", None)
            ]
        );
        assert_eq!(s[0].options[2].at.line, 6);
        assert_eq!(
            opts(&s[1]),
            vec![("size", Some("1g")), ("filename", Some("/a"))]
        );
        // A repeated section name is a second job, not a merge.
        assert_eq!((s[1].name.as_str(), s[2].name.as_str()), ("job1", "job1"));
        assert!(s[2].options.is_empty());
    }

    #[test]
    fn global_prefix_and_blanks_around_equals() {
        let s = parse("[globalfoo]\nbs = 8k\n[globe]\n").expect("parses");
        assert!(s[0].is_global());
        assert!(!s[1].is_global());
        // fio keeps the blank after '=' in the value (and strips the one before it).
        assert_eq!(opts(&s[0]), vec![("bs", Some(" 8k"))]);
    }

    #[test]
    fn env_substitution() {
        let env = |k: &str| (k == "SZ").then(|| "16m".to_string());
        let s = parse_str(
            "[j]\nsize=${SZ}\nfilename=/x/${UNSET}y\nname=${\n",
            Path::new("j.fio"),
            &env,
        )
        .expect("parses");
        assert_eq!(
            opts(&s[0]),
            vec![
                ("size", Some("16m")),
                ("filename", Some("/x/y")),
                ("name", Some("${"))
            ]
        );
    }

    #[test]
    fn include_is_relative_to_the_including_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(
            dir.path().join("common.fio"),
            "iodepth=4\n[second]\nbs=8k\n",
        )
        .expect("write");
        let main = dir.path().join("main.fio");
        std::fs::write(&main, "[first]\ninclude common.fio\nsize=1m\n").expect("write");
        let s = parse_file(&main, &no_env).expect("parses");
        assert_eq!(s.len(), 2);
        assert_eq!(opts(&s[0]), vec![("iodepth", Some("4"))]);
        assert_eq!(opts(&s[1]), vec![("bs", Some("8k")), ("size", Some("1m"))]);
        assert!(s[0].options[0].at.file.ends_with("common.fio"));
        assert_eq!(s[1].options[1].at.line, 3);
    }

    #[test]
    fn errors_name_the_line() {
        let e = parse("bs=4k\n[j]\n").expect_err("outside");
        assert!(e.to_string().contains("job.fio:1"), "{e}");
        assert!(e.to_string().contains("outside"), "{e}");
        let e = parse("[j]\n[broken\n").expect_err("header");
        assert!(e.to_string().contains("job.fio:2"), "{e}");
        let e = parse("[j]\ninclude /nonexistent/ferrite.fio\n").expect_err("include");
        assert!(e.to_string().contains("job.fio:2"), "{e}");
        let e = parse("[j]\n=4k\n").expect_err("no name");
        assert!(e.to_string().contains("no name"), "{e}");
    }

    #[test]
    fn include_cycle_is_an_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let main = dir.path().join("loop.fio");
        std::fs::write(&main, "[j]\ninclude loop.fio\n").expect("write");
        let e = parse_file(&main, &no_env).expect_err("cycle");
        assert!(e.to_string().contains("deeper"), "{e}");
    }
}
