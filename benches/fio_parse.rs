//! Criterion benches of the fio job-file parser: every file of the comparison corpus
//! (tests/fio-jobs) from text to typed jobs, and one large generated file (200 job sections with
//! a [global] section and comments), to see the cost per line.
//!
//! `cargo bench --bench fio_parse` prints the time per file and lines per second.

use std::hint::black_box;
use std::path::Path;

use criterion::{Criterion, Throughput};
use ferrite::fio::jobs::from_sections;
use ferrite::fio::lexer::parse_str;

fn no_env(name: &str) -> Option<String> {
    // include.fio's variables, so that every corpus file parses.
    match name {
        "FERRITE_FIO_SIZE" => Some("2m".into()),
        "FERRITE_FIO_RW" => Some("randwrite".into()),
        "FERRITE_FIO_RUNTIME" => Some("5".into()),
        _ => None,
    }
}

fn large_file() -> String {
    let mut text = String::from(
        "; generated\n[global]\nioengine=null\nsize=1g\nbs=4k\niodepth=32\nkb_base=1000\n",
    );
    for i in 0..200 {
        text.push_str(&format!(
            "[job{i}]   ; job {i}\nrw=randrw:{n}\nrwmixread=70\nbs=4k,8k,16k\nrate=10MiB,20m\n\
             offset={pct}%\nruntime=2m\nthinktime=10ms\nbssplit=4k/50:64k/30:128k\n\
             random_distribution=zipf:1.1\npercentile_list=50:99:99.9\nverify=crc32c\n\
             verify_pattern=0xdeadbeef\n{sw}\n",
            n = i % 7 + 1,
            pct = i % 90,
            sw = if i % 10 == 0 {
                "stonewall"
            } else {
                "new_group"
            }
        ));
    }
    text
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fio-jobs");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("corpus")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "fio"))
        .collect();
    files.sort();
    let mut group = c.benchmark_group("fio_parse");
    for path in files {
        let text = std::fs::read_to_string(&path).expect("read");
        let name = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        group.throughput(Throughput::Elements(text.lines().count() as u64));
        group.bench_function(&name, |b| {
            b.iter(|| {
                // include.fio reads common.inc from the corpus directory.
                let sections = parse_str(black_box(&text), &path, &no_env).expect("parse");
                black_box(from_sections(&sections).expect("jobs"))
            })
        });
    }
    let large = large_file();
    group.throughput(Throughput::Elements(large.lines().count() as u64));
    group.bench_function("generated_200_jobs", |b| {
        b.iter(|| {
            let sections =
                parse_str(black_box(&large), Path::new("gen.fio"), &no_env).expect("parse");
            black_box(from_sections(&sections).expect("jobs"))
        })
    });
    group.finish();
    c.final_summary();
}
