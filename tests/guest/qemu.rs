//! One guest boot: QEMU under TCG (KVM does not work on these machines) with 2 vCPUs, the disk a
//! vhost-user-blk device with 2 queues on a `ferrite serve` socket; it runs until the guest
//! powers off, and its console is checked for the steps the guest must report.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A boot under TCG takes ~5 s; fio, mkfs and the checks a minute or so more.
const BOOT_TIMEOUT: Duration = Duration::from_secs(240);
/// The guest's RAM holds the ~100 MB initramfs unpacked, fio's buffers and the page cache.
const MEMORY: &str = "768M";
pub const QUEUES: u32 = 2;

/// What one boot printed, and how long it ran.
pub struct Boot {
    pub console: String,
    pub elapsed: Duration,
}

impl Boot {
    /// Panics with the console unless the guest printed every `steps` marker in order and
    /// finished (the serial console ends lines with "\r\n", and the first line the guest
    /// prints follows the terminal escapes the firmware left).
    pub fn expect_steps(&self, stage: u32, steps: &[&str]) {
        let failure = self
            .console
            .lines()
            .find(|l| l.contains("FERRITE-GUEST-FAIL"))
            .unwrap_or("");
        let mut lines = self.console.lines().map(str::trim_end);
        for step in steps {
            let marker = format!("FERRITE-GUEST-STEP {step}");
            assert!(
                lines.any(|l| l.ends_with(&marker)),
                "boot {stage}: no step `{step}` after the ones before it. {failure}\nconsole:\n{}",
                self.console
            );
        }
        assert!(
            lines.any(|l| l.ends_with("FERRITE-GUEST-OK")),
            "boot {stage}: the guest did not finish. {failure}\nconsole:\n{}",
            self.console
        );
    }

    /// The value of `key=` on the guest's `FERRITE-GUEST ` report lines.
    pub fn value(&self, key: &str) -> &str {
        let prefix = format!("{key}=");
        self.console
            .lines()
            .filter_map(|l| l.find("FERRITE-GUEST ").map(|at| &l[at..]))
            .flat_map(|l| l.split_whitespace())
            .find_map(|w| w.strip_prefix(&prefix))
            .unwrap_or_else(|| panic!("the guest reported no {key}=; console:\n{}", self.console))
    }
}

/// Boots `kernel` with `initrd` and `ferrite.stage=STAGE`, the disk on `socket`.
pub fn boot(kernel: &Path, initrd: &Path, socket: &Path, stage: u32) -> Boot {
    let started = Instant::now();
    let mut qemu = Command::new("qemu-system-x86_64")
        .args(["-accel", "tcg", "-m", MEMORY, "-smp", &QUEUES.to_string()])
        .args(["-nographic", "-no-reboot", "-nic", "none"])
        .arg("-object")
        .arg(format!(
            "memory-backend-memfd,id=mem,size={MEMORY},share=on"
        ))
        .args(["-numa", "node,memdev=mem"])
        .arg("-kernel")
        .arg(kernel)
        .arg("-initrd")
        .arg(initrd)
        .arg("-append")
        .arg(format!(
            "console=ttyS0 quiet panic=-1 ferrite.stage={stage}"
        ))
        .arg("-chardev")
        .arg(format!("socket,id=c0,path={}", socket.display()))
        .arg("-device")
        .arg(format!("vhost-user-blk-pci,chardev=c0,num-queues={QUEUES}"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("qemu-system-x86_64: install qemu-system-x86");
    let reader = |mut pipe: Box<dyn std::io::Read + Send>| {
        std::thread::spawn(move || {
            let mut s = Vec::new();
            let _ = pipe.read_to_end(&mut s);
            String::from_utf8_lossy(&s).into_owned()
        })
    };
    let console = reader(Box::new(qemu.stdout.take().unwrap()));
    let stderr = reader(Box::new(qemu.stderr.take().unwrap()));
    let status = loop {
        if let Some(status) = qemu.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > BOOT_TIMEOUT {
            let _ = qemu.kill();
            let _ = qemu.wait();
            panic!(
                "boot {stage}: the guest did not finish in {BOOT_TIMEOUT:?}; console:\n{}\n{}",
                console.join().unwrap(),
                stderr.join().unwrap()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let console = console.join().unwrap();
    let stderr = stderr.join().unwrap();
    assert!(
        status.success(),
        "boot {stage}: qemu failed: {status}\n{stderr}\nconsole:\n{console}"
    );
    eprintln!(
        "boot {stage} ran {:?}; console:\n{console}",
        started.elapsed()
    );
    Boot {
        console,
        elapsed: started.elapsed(),
    }
}
