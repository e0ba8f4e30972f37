//! Seal and open of 4 KiB pages, per backend (the figure the keys issue asks for: >= 8 GB/s per
//! core with aws-lc-rs, >= 2.5 GB/s with RustCrypto).

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use keys::{Backend, Kek, VolumeKey};

fn sealers() -> Vec<(&'static str, keys::PageSealer, VolumeKey)> {
    let kek = Kek::generate().expect("kek");
    let wrapped = VolumeKey::generate(Backend::AwsLc)
        .expect("key")
        .wrap(&kek, "bench")
        .expect("wrap");
    [
        ("aws-lc-rs", Backend::AwsLc),
        ("rustcrypto", Backend::RustCrypto),
    ]
    .into_iter()
    .map(|(name, backend)| {
        let key = wrapped.unwrap(&kek, "bench", backend).expect("unwrap");
        (name, key.sealer(1), key)
    })
    .collect()
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("page_4k");
    group.throughput(Throughput::Bytes(4096));
    for (name, sealer, _key) in sealers() {
        let mut data = vec![0x5au8; 4096];
        let mut generation = 1u64;
        group.bench_function(format!("seal/{name}"), |b| {
            b.iter(|| {
                generation += 1;
                sealer.seal(7, generation, &mut data).expect("seal")
            })
        });
        let mut plain = vec![0u8; 4096];
        let mut sealed = vec![0x5au8; 4096];
        let tag = sealer.seal(7, 1, &mut sealed).expect("seal");
        group.bench_function(format!("open/{name}"), |b| {
            b.iter(|| sealer.open(7, 1, &sealed, &tag, &mut plain).expect("open"))
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
