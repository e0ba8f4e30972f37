//! What a relay's paths do over a run: the impairments at start and timed changes, such as
//! "black-hole path 2 from t = 2 s". Times are microseconds since the relay started.

use super::{PATHS_MAX, PathImpairment, clean, validate};

/// Which paths a change applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    All,
    Path(usize),
}

/// One change to a path's impairments. Each sets one field, except `Set` (all of them) and
/// `Clear` (back to [`clean`]), so that changes compose: `loss=0.01` then `path2:blackhole`
/// leaves path 2 both lossy and black-holed.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    Loss(f64),
    DelayUs(u64),
    JitterUs(u64),
    Reorder(f64),
    ReorderUsMax(u64),
    Duplicate(f64),
    BlackHole(bool),
    RateBytesPerS(Option<u64>),
    QueueUsMax(u64),
    Set(PathImpairment),
    Clear,
}

impl Change {
    pub fn apply(&self, imp: &mut PathImpairment) {
        match self {
            Change::Loss(p) => imp.loss = *p,
            Change::DelayUs(t) => imp.delay_us = *t,
            Change::JitterUs(t) => imp.jitter_us = *t,
            Change::Reorder(p) => imp.reorder = *p,
            Change::ReorderUsMax(t) => imp.reorder_us_max = *t,
            Change::Duplicate(p) => imp.duplicate = *p,
            Change::BlackHole(on) => imp.black_hole = *on,
            Change::RateBytesPerS(r) => imp.rate_bytes_per_s = *r,
            Change::QueueUsMax(t) => imp.queue_us_max = *t,
            Change::Set(all) => *imp = all.clone(),
            Change::Clear => *imp = clean(),
        }
    }
}

/// A change at a time.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub at_us: u64,
    pub scope: Scope,
    pub change: Change,
}

/// The impairments of every path at start, and the changes to come.
#[derive(Debug, Clone, PartialEq)]
pub struct Schedule {
    pub initial: Vec<PathImpairment>,
    /// In the order they take effect: by time, and in the order given at equal times.
    pub events: Vec<Event>,
}

impl Schedule {
    /// `paths` clean paths and nothing planned.
    pub fn clean(paths: usize) -> Self {
        Schedule::uniform(paths, clean())
    }

    /// Every path impaired alike.
    pub fn uniform(paths: usize, imp: PathImpairment) -> Self {
        Schedule {
            initial: vec![imp; paths],
            events: Vec::new(),
        }
    }

    pub fn paths(&self) -> usize {
        self.initial.len()
    }

    /// Applies a change now, to the initial state.
    pub fn apply_initial(&mut self, scope: Scope, change: &Change) {
        for (i, imp) in self.initial.iter_mut().enumerate() {
            if scope_covers(scope, i) {
                change.apply(imp);
            }
        }
    }

    /// Plans a change; events stay sorted by time (stable, so equal times keep their order).
    pub fn at(mut self, at_us: u64, scope: Scope, change: Change) -> Self {
        self.push(Event {
            at_us,
            scope,
            change,
        });
        self
    }

    pub fn push(&mut self, event: Event) {
        let i = self.events.partition_point(|e| e.at_us <= event.at_us);
        self.events.insert(i, event);
    }

    /// Checks the path count, every scope, and every state the paths go through, so a relay
    /// never meets an invalid impairment mid-run.
    pub fn validate(&self) -> Result<(), String> {
        let paths = self.paths();
        if !(1..=PATHS_MAX).contains(&paths) {
            return Err(format!("{paths} paths, not in 1..={PATHS_MAX}"));
        }
        let mut state = self.initial.clone();
        for (i, imp) in state.iter().enumerate() {
            validate(imp).map_err(|e| format!("path {i} at start: {e}"))?;
        }
        for w in self.events.windows(2) {
            if w[0].at_us > w[1].at_us {
                return Err("events are not sorted by time".into());
            }
        }
        for e in &self.events {
            if let Scope::Path(p) = e.scope
                && p >= paths
            {
                return Err(format!("event at {} us names path {p} of {paths}", e.at_us));
            }
            for (i, imp) in state.iter_mut().enumerate() {
                if scope_covers(e.scope, i) {
                    e.change.apply(imp);
                    validate(imp).map_err(|m| format!("path {i} at {} us: {m}", e.at_us))?;
                }
            }
        }
        Ok(())
    }
}

pub fn scope_covers(scope: Scope, path: usize) -> bool {
    match scope {
        Scope::All => true,
        Scope::Path(p) => p == path,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_sort_stably_and_changes_compose() {
        let s = Schedule::clean(3)
            .at(2_000, Scope::Path(2), Change::BlackHole(true))
            .at(1_000, Scope::All, Change::Loss(0.1))
            .at(2_000, Scope::Path(2), Change::BlackHole(false));
        assert_eq!(
            s.events.iter().map(|e| e.at_us).collect::<Vec<_>>(),
            [1_000, 2_000, 2_000]
        );
        assert_eq!(s.events[1].change, Change::BlackHole(true));
        assert_eq!(s.validate(), Ok(()));
        let mut imp = clean();
        Change::Loss(0.1).apply(&mut imp);
        Change::BlackHole(true).apply(&mut imp);
        assert!(imp.black_hole && imp.loss == 0.1);
        Change::Clear.apply(&mut imp);
        assert_eq!(imp, clean());
    }

    #[test]
    fn validate_names_the_bad_path_or_event() {
        assert!(Schedule::clean(0).validate().is_err());
        assert!(Schedule::clean(PATHS_MAX + 1).validate().is_err());
        let s = Schedule::clean(2).at(5, Scope::Path(2), Change::Clear);
        assert!(s.validate().unwrap_err().contains("path 2 of 2"));
        let s = Schedule::clean(2).at(5, Scope::All, Change::Loss(2.0));
        assert!(s.validate().unwrap_err().contains("at 5 us"));
    }
}
