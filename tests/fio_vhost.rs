#![allow(clippy::unwrap_used)]
//! `ferrite fio` with `ioengine=vhost-user`: the job's I/O goes through libblkio to an in-process
//! vhost-user-blk server on a RAM FTL. fio's crc32c verify checks what came back, a second run
//! verifies what the first left on the server, and a block overwritten behind fio's back fails
//! that verify. Several jobs with several workers each share the connection's queues.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ftl::nand::{FaultConfig, Geometry, MemNand, Nand};
use ftl::{Ftl, FtlConfig};
use nvme_target::vhost::{StopHandle, TransportOptions, serve};
use nvme_target::{ActiveNamespace, FtlNamespace, NamespaceIdentity};
use serde_json::Value;

struct Server {
    stop: StopHandle,
    thread: Option<JoinHandle<()>>,
    socket: PathBuf,
    ns: Arc<ActiveNamespace>,
}

impl Server {
    /// A server on `dir/vhost.sock` with `queues` virtqueues over about 7 MiB of RAM FTL.
    fn start(dir: &Path, queues: u16) -> Self {
        let g = Geometry {
            channels: 1,
            dies_per_channel: 2,
            planes_per_die: 1,
            blocks_per_plane: 16,
            pages_per_block: 32,
            page_size: 4096,
            oob_size: 64,
        };
        let devices: Vec<Arc<dyn Nand>> = (0..2)
            .map(|i| {
                Arc::new(MemNand::new(g, FaultConfig::none().for_device(i), None).unwrap())
                    as Arc<dyn Nand>
            })
            .collect();
        let ftl = Ftl::format(devices, FtlConfig::default()).unwrap();
        let ns = ActiveNamespace::new(
            NamespaceIdentity {
                nsid: 1,
                serial: "FERRITE-FIO-1".into(),
                model: "Ferrite fio test namespace".into(),
                eui64: NamespaceIdentity::eui64_from_serial("FERRITE-FIO-1"),
                read_only: false,
            },
            Arc::new(FtlNamespace::new(ftl)),
        );
        let socket = dir.join("vhost.sock");
        let stop = StopHandle::new();
        let options = TransportOptions {
            queues,
            ..TransportOptions::default()
        };
        let thread = {
            let (socket, stop, ns) = (socket.clone(), stop.clone(), ns.clone());
            std::thread::spawn(move || serve(&socket, ns, &options, &stop).unwrap())
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !socket.exists() {
            assert!(Instant::now() < deadline, "socket never appeared");
            std::thread::sleep(Duration::from_millis(5));
        }
        Self {
            stop,
            thread: Some(thread),
            socket,
            ns,
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.stop();
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
    }
}

fn ferrite_fio(dir: &Path, name: &str, text: &str, socket: &Path) -> Output {
    let file = dir.join(name);
    std::fs::write(&file, text).unwrap();
    std::process::Command::new(env!("CARGO_BIN_EXE_ferrite"))
        .args(["fio", "--output-format=json"])
        .arg(&file)
        .env("SOCK", socket)
        .output()
        .unwrap()
}

fn json(out: &Output) -> Value {
    assert!(
        out.status.success(),
        "ferrite fio failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

const WRITE_VERIFY: &str = "\
[global]
ioengine=vhost-user
filename=${SOCK}
size=4m
bs=4k
verify=crc32c

[writer]
rw=randwrite
";

#[test]
fn writes_verify_through_the_server_and_a_changed_block_fails_the_verify() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), 2);
    let report = json(&ferrite_fio(
        dir.path(),
        "write.fio",
        WRITE_VERIFY,
        &server.socket,
    ));
    let writer = &report["jobs"][0];
    assert_eq!(writer["error"], 0);
    assert_eq!(writer["write"]["total_ios"], 1024);
    assert_eq!(writer["write"]["io_bytes"], 4 << 20);
    // The verify phase read every block back.
    assert_eq!(writer["read"]["total_ios"], 1024);
    let smart = server.ns.smart_log();
    assert_eq!(smart.host_write_commands, 1024);
    assert_eq!(smart.host_read_commands, 1024);

    // A new process, a new connection: the data is on the server, verify_only checks it.
    let verify_only = format!("{WRITE_VERIFY}verify_only\n");
    let report = json(&ferrite_fio(
        dir.path(),
        "verify.fio",
        &verify_only,
        &server.socket,
    ));
    assert_eq!(report["jobs"][0]["error"], 0);
    assert_eq!(report["jobs"][0]["read"]["total_ios"], 1024);

    // One block changed behind fio's back: the verify names a mismatch and the run fails.
    let mut q = server.ns.new_queue();
    let status = q.execute(nvme_target::Command::Write {
        sector: 8 * 100,
        data: &[0x5a; 4096],
        fua: false,
    });
    assert!(status.is_success());
    let out = ferrite_fio(dir.path(), "verify.fio", &verify_only, &server.socket);
    assert!(!out.status.success(), "a corrupted block passed the verify");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("verify"), "{text}");
}

#[test]
fn several_jobs_and_workers_share_the_queues() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), 4);
    let text = "\
[global]
ioengine=vhost-user
filename=${SOCK}
size=4m
bs=8k

[writer]
rw=randwrite
iodepth=8
verify=crc32c
fsync=16

[readers]
stonewall
rw=randread
numjobs=2
iodepth=4
io_size=2m
group_reporting

[trim-and-sync]
stonewall
rw=randtrim
bs=64k
size=1m
end_fsync=1
";
    let report = json(&ferrite_fio(dir.path(), "mq.fio", text, &server.socket));
    let jobs = report["jobs"].as_array().unwrap();
    assert_eq!(jobs.len(), 3, "{report}");
    assert_eq!(jobs[0]["error"], 0);
    assert_eq!(jobs[0]["write"]["total_ios"], 512);
    assert_eq!(jobs[0]["read"]["total_ios"], 512);
    assert_eq!(jobs[1]["error"], 0);
    assert_eq!(jobs[1]["read"]["total_ios"], 2 * 256);
    assert_eq!(jobs[2]["error"], 0);
    assert_eq!(jobs[2]["trim"]["total_ios"], 16);
    // The trimmed first MiB reads as zeroes on the server.
    let mut q = server.ns.new_queue();
    let mut buf = vec![0xffu8; 1 << 20];
    assert!(
        q.execute(nvme_target::Command::Read {
            sector: 0,
            buf: &mut buf
        })
        .is_success()
    );
    assert!(
        buf.iter().all(|&b| b == 0),
        "trimmed range still holds data"
    );
}
