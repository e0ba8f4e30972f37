//! Progress lines on stderr for long runs, at most a few per second.

use std::fmt;
use std::time::{Duration, Instant};

const EVERY: Duration = Duration::from_millis(300);

#[derive(Debug)]
pub struct Progress {
    enabled: bool,
    last: Instant,
}

impl Progress {
    pub fn new(enabled: bool) -> Self {
        Self {
            enabled,
            last: Instant::now(),
        }
    }

    /// Prints the line `line` builds if the last one is old enough (the closure runs only then).
    pub fn tick(&mut self, line: impl FnOnce() -> String) {
        if self.enabled && self.last.elapsed() >= EVERY {
            self.last = Instant::now();
            eprintln!("{}", line());
        }
    }

    /// `what: NN.N%`, rate-limited like `tick`.
    pub fn percent(&mut self, what: &str, done: u64, total: u64) {
        self.tick(|| format!("{what}: {:.1}%", 100.0 * done as f64 / total.max(1) as f64));
    }

    /// Prints a line now (phase boundaries).
    pub fn say(&self, line: impl fmt::Display) {
        if self.enabled {
            eprintln!("{line}");
        }
    }
}
