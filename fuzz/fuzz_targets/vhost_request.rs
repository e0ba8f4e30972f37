//! Fuzzes the virtio-blk request parser with hostile descriptor chains in guest memory. The
//! harness is `nvme_target::vhost::fuzz_input::run` (input layout documented there), which
//! `cargo test` also runs over `fuzz/corpus/vhost_request`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = nvme_target::vhost::fuzz_input::run(data);
});
