//! Ctrl-C and SIGTERM: set a flag the serve loop polls (nothing else is safe in a handler).

use std::sync::atomic::{AtomicBool, Ordering};

use vmm_sys_util::signal::register_signal_handler;

static STOP_ASKED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int, _: *mut libc::siginfo_t, _: *mut libc::c_void) {
    STOP_ASKED.store(true, Ordering::SeqCst);
}

pub fn install() -> anyhow::Result<()> {
    for sig in [libc::SIGINT, libc::SIGTERM] {
        register_signal_handler(sig, on_signal)
            .map_err(|e| anyhow::anyhow!("installing the handler of signal {sig}: {e}"))?;
    }
    Ok(())
}

pub fn stop_asked() -> bool {
    STOP_ASKED.load(Ordering::SeqCst)
}
