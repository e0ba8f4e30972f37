//! The reference model: for every logical page, which versions a read may legitimately return.
//!
//! Per page it keeps two sets of versions (0 is the all-zero page):
//! - `current`: what a read must return while no crash happens. Normally exactly the last
//!   acknowledged value; it only grows after an operation that failed (which may or may not have
//!   taken effect), and the next read pins it to what it returned.
//! - `durable`: what a crash may leave: the last value known durable plus every value acknowledged
//!   (or attempted by a failed operation) since.
//!
//! Rules: a write acknowledges a new version (FUA: it is also the only durable one); trim and
//! write-zeroes are writes of version 0; a successful flush makes `durable := current` for every
//! page; a crash makes `current := durable`, and recovery's read of each page pins both sets to
//! what it returned. Anything else a read returns (another version, another page's data, a torn
//! page) is a violation.

use std::fmt;

use super::page::{Observed, Version};

/// A read that returned something the model does not allow.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    pub lpa: u64,
    pub got: Observed,
    pub allowed: Vec<Version>,
    pub after_reopen: bool,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let allowed: Vec<String> = self.allowed.iter().map(|v| format!("v{v}")).collect();
        write!(
            f,
            "lpa {}: read {} but allowed {{{}}}{}",
            self.lpa,
            self.got,
            allowed.join(", "),
            if self.after_reopen {
                " (read back after reopen)"
            } else {
                ""
            }
        )
    }
}

#[derive(Clone, Debug)]
struct PageModel {
    current: Vec<Version>,
    durable: Vec<Version>,
}

impl PageModel {
    fn new() -> Self {
        Self {
            current: vec![0],
            durable: vec![0],
        }
    }
}

fn add(set: &mut Vec<Version>, v: Version) {
    if !set.contains(&v) {
        set.push(v);
    }
}

#[derive(Debug)]
pub struct Model {
    pages: Vec<PageModel>,
    /// Pages whose `durable` set is not exactly `current` (the only ones a flush changes).
    dirty: Vec<u64>,
    is_dirty: Vec<bool>,
    last_version: Version,
}

impl Model {
    pub fn new(pages: u64) -> Self {
        Self {
            pages: vec![PageModel::new(); pages as usize],
            dirty: Vec::new(),
            is_dirty: vec![false; pages as usize],
            last_version: 0,
        }
    }

    pub fn pages(&self) -> u64 {
        self.pages.len() as u64
    }

    /// A fresh version id for the next write (unique over the whole run).
    pub fn next_version(&mut self) -> Version {
        self.last_version += 1;
        self.last_version
    }

    fn touch(&mut self, lpa: u64) {
        if !self.is_dirty[lpa as usize] {
            self.is_dirty[lpa as usize] = true;
            self.dirty.push(lpa);
        }
    }

    /// The target acknowledged a write of `v` (0 for trim/write-zeroes); `durable`: FUA.
    pub fn write(&mut self, lpa: u64, v: Version, durable: bool) {
        let page = &mut self.pages[lpa as usize];
        page.current = vec![v];
        if durable {
            page.durable = vec![v];
        } else {
            add(&mut page.durable, v);
            self.touch(lpa);
        }
    }

    /// The target acknowledged a trim or write-zeroes of `lpa..lpa + count`.
    pub fn zero(&mut self, lpa: u64, count: u64) {
        for p in lpa..lpa + count {
            self.write(p, 0, false);
        }
    }

    /// A write of `v` failed: it may or may not have taken effect.
    pub fn maybe_write(&mut self, lpa: u64, v: Version) {
        let page = &mut self.pages[lpa as usize];
        add(&mut page.current, v);
        add(&mut page.durable, v);
        self.touch(lpa);
    }

    /// A trim or write-zeroes of the range failed: each page may or may not be zero now.
    pub fn maybe_zero(&mut self, lpa: u64, count: u64) {
        for p in lpa..lpa + count {
            self.maybe_write(p, 0);
        }
    }

    /// The target acknowledged a flush: everything a read may return now is durable.
    pub fn flush(&mut self) {
        for lpa in std::mem::take(&mut self.dirty) {
            self.is_dirty[lpa as usize] = false;
            let page = &mut self.pages[lpa as usize];
            page.durable = page.current.clone();
        }
    }

    /// Power was lost: until recovery pins them, pages may hold anything a crash may leave.
    pub fn crash(&mut self) {
        for lpa in std::mem::take(&mut self.dirty) {
            self.is_dirty[lpa as usize] = false;
            let page = &mut self.pages[lpa as usize];
            page.current = page.durable.clone();
        }
    }

    /// What a read of `lpa` may return now.
    pub fn allowed(&self, lpa: u64) -> &[Version] {
        &self.pages[lpa as usize].current
    }

    /// Checks a read during normal operation; an ambiguous page is pinned to what it returned.
    pub fn check_read(&mut self, lpa: u64, got: &Observed) -> Result<(), Violation> {
        let v = self.check(lpa, got, false)?;
        let page = &mut self.pages[lpa as usize];
        if page.current.len() > 1 {
            page.current = vec![v];
        }
        Ok(())
    }

    /// Checks the read of `lpa` right after recovery: what it returned is now the page's only
    /// value, for reads and for later crashes alike.
    pub fn check_recovered(&mut self, lpa: u64, got: &Observed) -> Result<(), Violation> {
        let v = self.check(lpa, got, true)?;
        let page = &mut self.pages[lpa as usize];
        page.current = vec![v];
        page.durable = vec![v];
        Ok(())
    }

    fn check(&self, lpa: u64, got: &Observed, after_reopen: bool) -> Result<Version, Violation> {
        let allowed = self.allowed(lpa);
        match got {
            Observed::Version(v) if allowed.contains(v) => Ok(*v),
            _ => Err(Violation {
                lpa,
                got: got.clone(),
                allowed: allowed.to_vec(),
                after_reopen,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(x: Version) -> Observed {
        Observed::Version(x)
    }

    #[test]
    fn reads_before_a_crash_see_exactly_the_last_write() {
        let mut m = Model::new(4);
        assert!(m.check_read(0, &v(0)).is_ok());
        let a = m.next_version();
        let b = m.next_version();
        m.write(0, a, false);
        m.write(0, b, false);
        assert!(m.check_read(0, &v(b)).is_ok());
        let err = m.check_read(0, &v(a)).expect_err("stale read");
        assert_eq!(err.allowed, vec![b]);
        assert!(m.check_read(0, &v(0)).is_err());
    }

    #[test]
    fn unflushed_writes_may_be_kept_or_lost() {
        for got in [0, 1, 2] {
            let mut m = Model::new(2);
            let a = m.next_version();
            let b = m.next_version();
            assert_eq!((a, b), (1, 2));
            m.write(0, a, false);
            m.write(0, b, false);
            m.crash();
            assert!(m.check_recovered(0, &v(got)).is_ok(), "{got}");
            // Recovery pinned the page: a second crash cannot bring back anything else.
            m.crash();
            assert_eq!(m.allowed(0), &[got]);
        }
    }

    #[test]
    fn catches_a_lost_flushed_write() {
        let mut m = Model::new(2);
        let a = m.next_version();
        m.write(1, a, false);
        m.flush();
        m.crash();
        let err = m.check_recovered(1, &v(0)).expect_err("flushed write lost");
        assert_eq!(err.allowed, vec![a]);
        assert!(err.to_string().contains("lpa 1"), "{err}");
    }

    #[test]
    fn catches_a_lost_fua_write() {
        let mut m = Model::new(1);
        let a = m.next_version();
        let b = m.next_version();
        m.write(0, a, false);
        m.write(0, b, true);
        m.crash();
        assert!(m.check_recovered(0, &v(a)).is_err());
        assert!(m.check_recovered(0, &v(b)).is_ok());
    }

    #[test]
    fn catches_a_resurrected_trimmed_page() {
        let mut m = Model::new(8);
        let a = m.next_version();
        m.write(3, a, true);
        m.zero(2, 4);
        // Before the flush a crash may undo the trim ...
        let mut unflushed = Model::new(8);
        unflushed.write(3, a, true);
        unflushed.zero(2, 4);
        unflushed.crash();
        assert!(unflushed.check_recovered(3, &v(a)).is_ok());
        // ... after it, the old data must never come back.
        m.flush();
        assert!(m.check_read(3, &v(a)).is_err());
        m.crash();
        let err = m.check_recovered(3, &v(a)).expect_err("resurrected");
        assert_eq!(err.allowed, vec![0]);
    }

    #[test]
    fn catches_a_torn_page_and_foreign_data() {
        let mut m = Model::new(2);
        let a = m.next_version();
        m.write(0, a, false);
        m.crash();
        let torn = Observed::Garbage("v1 torn or corrupt at byte 2048".into());
        assert!(m.check_recovered(0, &torn).is_err());
        // A version that exists, but was written to another page, is not allowed here.
        let b = m.next_version();
        m.write(1, b, true);
        assert!(m.check_read(0, &v(b)).is_err());
    }

    #[test]
    fn failed_operations_may_or_may_not_take_effect() {
        let mut m = Model::new(4);
        let a = m.next_version();
        m.write(0, a, true);
        let b = m.next_version();
        m.maybe_write(0, b);
        m.maybe_zero(1, 2);
        m.crash();
        assert!(m.check_recovered(0, &v(b)).is_ok());
        assert!(m.check_recovered(1, &v(0)).is_ok());

        let mut m = Model::new(1);
        m.write(0, a, true);
        m.maybe_write(0, b);
        // Without a crash a read may see either, and is then pinned.
        assert!(m.check_read(0, &v(a)).is_ok());
        assert!(m.check_read(0, &v(b)).is_err());
    }

    #[test]
    fn flush_only_covers_what_was_acknowledged_before_it() {
        let mut m = Model::new(1);
        let a = m.next_version();
        let b = m.next_version();
        m.write(0, a, false);
        m.flush();
        m.write(0, b, false);
        m.crash();
        let mut allowed = m.allowed(0).to_vec();
        allowed.sort_unstable();
        assert_eq!(allowed, vec![a, b]);
    }
}
