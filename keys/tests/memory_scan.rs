#![allow(clippy::unwrap_used)]
//! Memory scan: a child process holds an instance key; this process reads the child's memory
//! through `/proc/CHILD/mem` (every readable mapping in `/proc/CHILD/maps`) looking for the 32
//! key bytes and each 16-byte half.
//!
//! Per holder (the mlock fallback always; memfd_secret where the kernel offers it):
//! 1. active, key only in its secret page: with memfd_secret the scan finds nothing, and the
//!    page's mapping is one the scanner could not read; with mlock it finds the key only inside
//!    the page (root can read mlock'ed pages: the fallback hides keys from dumps, swap and
//!    non-root peers, not from root).
//! 2. positive control: the child copies the key into an ordinary heap buffer; the scan must
//!    find the whole key there, so a scan that finds nothing is a scan that works.
//! 3. destroyed (the copy zeroed too): the scan finds none of the three patterns anywhere.
//!
//! Each scan must have read more than 1 MiB, including the child's heap and stack.
//!
//! The child makes itself non-dumpable when it creates the key; root (CAP_SYS_PTRACE) can
//! still read it. Run as another user, the test checks instead that it could read the child
//! before the key existed and is refused after (that needs no root), and says that the
//! secret-page checks need root.
//!
//! Runs itself again as the child (`FERRITE_SCAN_CHILD=<holder>`), so harness = false.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::fs::FileExt;
use std::process::{ChildStdin, Command, Stdio};

use keys::{Backend, InstanceKey, KEY_BYTES, KeyMemory, scan};
use zeroize::Zeroize;

const CHILD_ENV: &str = "FERRITE_SCAN_CHILD";
const CHUNK_BYTES: usize = 1 << 20;
const SCANNED_BYTES_MIN: usize = 1 << 20;

// ---------------------------------------------------------------------------------------------
// The child: holds a key, obeys one command per line on stdin.

fn wait_for(lines: &mut impl Iterator<Item = io::Result<String>>, command: &str) {
    let line = lines.next().unwrap().unwrap();
    assert_eq!(line, command, "child: unexpected command");
}

fn child(holder: &str) {
    let kind = match holder {
        "memfd_secret" => KeyMemory::MemfdSecret,
        "mlock" => KeyMemory::Locked,
        other => panic!("child: unknown holder {other}"),
    };
    assert!(scan::force_key_memory(kind), "child: holder already chosen");
    println!("started");
    let mut lines = io::stdin().lock().lines();
    wait_for(&mut lines, "generate");
    let key = InstanceKey::generate(Backend::AwsLc).unwrap();
    // Use it as a server does: page subkeys derived, a page sealed and opened.
    let sealer = key.sealer(1);
    let mut data = vec![0x17u8; 4096];
    let tag = sealer.seal(9, 100, &mut data).unwrap();
    let mut plain = vec![0u8; 4096];
    sealer.open(9, 100, &data, &tag, &mut plain).unwrap();
    assert_eq!(plain, vec![0x17u8; 4096]);

    let probe = scan::probe(&key).unwrap();
    let dumpable = keys::process_dumpable().unwrap();
    println!(
        "key {} page {:x} dumpable {dumpable}",
        probe.key_hex, probe.page_address
    );

    wait_for(&mut lines, "control");
    let mut control = vec![0u8; KEY_BYTES];
    scan::copy_key_into(&key, &mut control).unwrap();
    println!("control {:x}", control.as_ptr() as usize);

    wait_for(&mut lines, "destroy");
    control.zeroize();
    key.destroy();
    drop((sealer, key));
    println!("destroyed");

    wait_for(&mut lines, "exit");
}

// ---------------------------------------------------------------------------------------------
// The scanner.

#[derive(Debug)]
struct Mapping {
    start: usize,
    end: usize,
    name: String,
}

#[derive(Debug, Default)]
struct Scan {
    bytes_read: usize,
    /// Readable mappings whose memory could not be read, with the error.
    unreadable: Vec<(Mapping, io::ErrorKind, Option<i32>)>,
    /// Names of the mappings read in full.
    read_names: Vec<String>,
    /// (pattern name, address, mapping name) of every match.
    hits: Vec<(&'static str, usize, String)>,
}

fn readable_mappings(pid: u32) -> io::Result<Vec<Mapping>> {
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps"))?;
    let mut out = Vec::new();
    for line in maps.lines() {
        let mut fields = line.split_whitespace();
        let range = fields.next().unwrap();
        let perms = fields.next().unwrap();
        let name = fields.nth(3).map(str::to_owned).unwrap_or_default();
        let name = match line.find(&name) {
            Some(at) if !name.is_empty() => line[at..].to_owned(),
            _ => name,
        };
        let (start, end) = range.split_once('-').unwrap();
        if perms.starts_with('r') {
            out.push(Mapping {
                start: usize::from_str_radix(start, 16).unwrap(),
                end: usize::from_str_radix(end, 16).unwrap(),
                name,
            });
        }
    }
    Ok(out)
}

/// Reads every readable mapping of `pid` and finds every occurrence of each pattern.
fn scan(pid: u32, patterns: &[(&'static str, &[u8])]) -> io::Result<Scan> {
    let mappings = readable_mappings(pid)?;
    let mem = File::open(format!("/proc/{pid}/mem"))?;
    let finders: Vec<_> = patterns
        .iter()
        .map(|(name, p)| (*name, memchr::memmem::Finder::new(p)))
        .collect();
    let overlap = patterns.iter().map(|(_, p)| p.len()).max().unwrap_or(1) - 1;
    let mut result = Scan::default();
    let mut buf = vec![0u8; CHUNK_BYTES + overlap];
    for mapping in mappings {
        // `kept` bytes at the front of `buf` are the tail of the previous chunk, so a match
        // across a chunk boundary is found once.
        let (mut at, mut kept) = (mapping.start, 0usize);
        let mut failed = None;
        while at < mapping.end {
            let want = (mapping.end - at).min(CHUNK_BYTES);
            let got = match mem.read_at(&mut buf[kept..kept + want], at as u64) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            };
            result.bytes_read += got;
            let window_len = kept + got;
            let window = &buf[..window_len];
            let window_start = at - kept;
            for (name, finder) in &finders {
                for offset in finder.find_iter(window) {
                    // Matches entirely inside the kept tail were counted with the last chunk.
                    if offset + finder.needle().len() > kept {
                        result
                            .hits
                            .push((name, window_start + offset, mapping.name.clone()));
                    }
                }
            }
            let keep = overlap.min(window_len);
            buf.copy_within(window_len - keep..window_len, 0);
            kept = keep;
            at += got;
        }
        match failed {
            Some(e) => result
                .unreadable
                .push((mapping, e.kind(), e.raw_os_error())),
            None => result.read_names.push(mapping.name),
        }
    }
    Ok(result)
}

// ---------------------------------------------------------------------------------------------
// The parent: drives one child per holder through the three phases.

fn send(stdin: &mut ChildStdin, command: &str) {
    writeln!(stdin, "{command}").unwrap();
    stdin.flush().unwrap();
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn is_permission(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::PermissionDenied
}

/// A scan that must have read enough of the child, heap and stack included.
fn checked_scan(pid: u32, patterns: &[(&'static str, &[u8])], phase: &str) -> Scan {
    let result = scan(pid, patterns).unwrap_or_else(|e| panic!("{phase}: scan failed: {e}"));
    assert!(
        result.bytes_read > SCANNED_BYTES_MIN,
        "{phase}: read only {} bytes of the child",
        result.bytes_read
    );
    for needed in ["[heap]", "[stack]"] {
        assert!(
            result.read_names.iter().any(|n| n == needed),
            "{phase}: the child's {needed} was not read: {:?}",
            result.unreadable
        );
    }
    println!(
        "  {phase}: read {:.1} MiB, {} unreadable mappings, {} matches",
        result.bytes_read as f64 / (1 << 20) as f64,
        result.unreadable.len(),
        result.hits.len()
    );
    result
}

/// What a run could check.
#[derive(Debug, PartialEq, Eq)]
enum Checked {
    /// All three phases (this process has CAP_SYS_PTRACE).
    Scanned,
    /// Only that a non-root reader is refused once the key exists.
    RefusedWhenNotRoot,
}

/// Runs one child holding its key in `holder` memory through the phases.
fn run(holder: KeyMemory) -> Checked {
    println!("holder {holder}:");
    let exe = std::env::current_exe().unwrap();
    let mut child = Command::new(exe)
        .env(CHILD_ENV, holder.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let mut stdin = child.stdin.take().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut read_line = || lines.next().unwrap().unwrap();

    // Before any key exists the child is dumpable: whoever runs this test can read it.
    assert_eq!(read_line(), "started");
    let before = scan(pid, &[]).unwrap_or_else(|e| panic!("cannot read the child at all: {e}"));
    assert!(before.bytes_read > SCANNED_BYTES_MIN, "{before:?}");
    send(&mut stdin, "generate");

    let line = read_line();
    let fields: Vec<&str> = line.split(' ').collect();
    assert_eq!(fields.len(), 6, "child printed {line:?}");
    let key = unhex(fields[1]);
    assert_eq!(key.len(), KEY_BYTES);
    let page = usize::from_str_radix(fields[3], 16).unwrap();
    assert_eq!(
        fields[5], "false",
        "the child holding a key must not be dumpable"
    );
    let patterns: [(&'static str, &[u8]); 3] = [
        ("key", &key),
        ("first half", &key[..16]),
        ("second half", &key[16..]),
    ];

    // Phase 1: active.
    match scan(pid, &patterns) {
        Err(e) if is_permission(&e) => {
            println!(
                "  cannot read the child's memory ({e}): PR_SET_DUMPABLE=0 refuses every \
                 non-root reader. That protection holds; checking that the secret page hides \
                 the key from root needs root (CAP_SYS_PTRACE)."
            );
            send(&mut stdin, "control");
            read_line();
            send(&mut stdin, "destroy");
            read_line();
            send(&mut stdin, "exit");
            assert!(child.wait().unwrap().success());
            return Checked::RefusedWhenNotRoot;
        }
        _ => {}
    }
    let active = checked_scan(pid, &patterns, "active");
    match holder {
        KeyMemory::MemfdSecret => {
            assert!(
                active.hits.is_empty(),
                "key bytes readable while held in memfd_secret: {:x?}",
                active.hits
            );
            let hidden = active
                .unreadable
                .iter()
                .find(|(m, _, _)| (m.start..m.end).contains(&page))
                .unwrap_or_else(|| panic!("the secret page at {page:x} was readable or absent"));
            assert!(hidden.0.name.contains("secretmem"), "{hidden:?}");
        }
        KeyMemory::Locked => {
            let outside: Vec<_> = active
                .hits
                .iter()
                .filter(|(_, at, _)| !(page..page + 4096).contains(at))
                .collect();
            assert!(
                outside.is_empty(),
                "key bytes outside the locked page: {outside:x?}"
            );
            assert!(
                active
                    .hits
                    .iter()
                    .any(|(name, at, _)| *name == "key" && *at == page),
                "root reads mlock'ed pages, so the key must show in its page: {:x?}",
                active.hits
            );
        }
    }

    // Phase 2: positive control.
    send(&mut stdin, "control");
    let line = read_line();
    let copy = usize::from_str_radix(line.strip_prefix("control ").unwrap(), 16).unwrap();
    let control = checked_scan(pid, &patterns, "control");
    for name in ["key", "first half", "second half"] {
        let expected = if name == "second half" {
            copy + 16
        } else {
            copy
        };
        assert!(
            control
                .hits
                .iter()
                .any(|(n, at, _)| *n == name && *at == expected),
            "positive control: {name} not found at {expected:x}: the scanner does not work ({:x?})",
            control.hits
        );
    }

    // Phase 3: destroyed.
    send(&mut stdin, "destroy");
    assert_eq!(read_line(), "destroyed");
    let destroyed = checked_scan(pid, &patterns, "destroyed");
    assert!(
        destroyed.hits.is_empty(),
        "key bytes left in memory after destroy: {:x?}",
        destroyed.hits
    );

    send(&mut stdin, "exit");
    assert!(child.wait().unwrap().success());
    Checked::Scanned
}

fn main() {
    if let Ok(holder) = std::env::var(CHILD_ENV) {
        child(&holder);
        return;
    }
    let mut checked = vec![run(KeyMemory::Locked)];
    if keys::key_memory() == KeyMemory::MemfdSecret {
        checked.push(run(KeyMemory::MemfdSecret));
    } else {
        println!("holder memfd_secret: not offered by this kernel; only mlock was scanned");
    }
    if checked.contains(&Checked::RefusedWhenNotRoot) {
        println!("memory_scan: not root: only the refusal of non-root readers was checked");
    }
    println!("memory_scan: {} passed, 0 failed", checked.len());
}
