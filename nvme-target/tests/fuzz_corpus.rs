#![allow(clippy::unwrap_used)]
//! Replays the checked-in seed corpus of the cargo-fuzz target (fuzz/corpus/vhost_request)
//! through its harness, so the harness cannot rot while CI does not run the fuzzer, and pins
//! what each seed must come to.

use std::path::Path;

use nvme_target::vhost::fuzz_input::{Outcome, run};
use nvme_target::vhost::request::{RequestError, RequestKind};

fn corpus() -> Vec<(String, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/vhost_request");
    let mut seeds: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| {
            let path = e.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&path).unwrap())
        })
        .collect();
    seeds.sort();
    seeds
}

#[test]
fn the_seed_corpus_parses_as_each_seed_says() {
    let seeds = corpus();
    assert!(
        seeds.len() >= 10,
        "seed corpus missing: {} files",
        seeds.len()
    );
    for (name, bytes) in &seeds {
        let outcome = run(bytes);
        let want = match name.as_str() {
            "read" => Some(Outcome::Parsed(RequestKind::Read)),
            "write" => Some(Outcome::Parsed(RequestKind::Write)),
            "flush" => Some(Outcome::Parsed(RequestKind::Flush)),
            "get-id" => Some(Outcome::Parsed(RequestKind::GetId)),
            "discard" => Some(Outcome::Parsed(RequestKind::Discard)),
            "write-zeroes-unmap" => Some(Outcome::Parsed(RequestKind::WriteZeroes)),
            _ => None,
        };
        let rejected_with = match &outcome {
            Outcome::Rejected(r) => Some(r.error.clone()),
            Outcome::Parsed(_) => None,
        };
        match name.as_str() {
            "empty" => assert_eq!(rejected_with, Some(RequestError::EmptyChain)),
            "unknown-type" => assert_eq!(rejected_with, Some(RequestError::UnsupportedType(99))),
            "short-header" => assert_eq!(rejected_with, Some(RequestError::HeaderTooShort(8))),
            "status-read-only" => {
                assert_eq!(rejected_with, Some(RequestError::StatusNotWritable));
            }
            "header-outside-memory" => {
                assert_eq!(rejected_with, Some(RequestError::HeaderUnreadable));
            }
            "sector-overflow" => assert!(
                matches!(rejected_with, Some(RequestError::SectorOverflow { .. })),
                "{outcome:?}"
            ),
            _ => {
                if let Some(want) = want {
                    assert_eq!(outcome, want, "seed {name}");
                }
            }
        }
    }
}
