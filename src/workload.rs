//! Seeded generators of logical page numbers over `0..pages`, shared by `sim` and `bench ftl`.
//!
//! Accepted spellings (see [`WorkloadSpec::from_str`]):
//! - `uniform`: every page equally likely;
//! - `zipf:THETA`: page ranks follow Zipf's law with exponent THETA (e.g. `zipf:0.99`); ranks are
//!   scattered over the address space by a fixed bijective permutation so hot pages are not adjacent;
//! - `hotcold:A/B`: A% of the accesses go to B% of the pages (e.g. `hotcold:80/20`), the hot pages
//!   scattered by the same permutation, each set uniform inside;
//! - `seq`: 0, 1, 2, ... wrapping around.

use std::fmt;
use std::str::FromStr;

use anyhow::{Context, anyhow, bail};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Zipf};

use crate::permutation::Permutation;

/// What a workload string asks for, independent of the address space.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum WorkloadSpec {
    Uniform,
    Zipf {
        theta: f64,
    },
    HotCold {
        /// Percent of accesses that go to the hot set.
        hot_access_pct: f64,
        /// Percent of the pages that form the hot set.
        hot_space_pct: f64,
    },
    Seq,
}

impl FromStr for WorkloadSpec {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let (name, arg) = match s.split_once(':') {
            Some((name, arg)) => (name, Some(arg)),
            None => (s, None),
        };
        let no_arg = |spec: WorkloadSpec| match arg {
            None => Ok(spec),
            Some(_) => Err(anyhow!("workload `{name}` takes no argument (got `{s}`)")),
        };
        match name {
            "uniform" => no_arg(WorkloadSpec::Uniform),
            "seq" | "sequential" => no_arg(WorkloadSpec::Seq),
            "zipf" => {
                let arg = arg.ok_or_else(|| anyhow!("zipf needs an exponent, e.g. `zipf:0.99`"))?;
                let theta: f64 = arg
                    .parse()
                    .with_context(|| format!("zipf exponent `{arg}` is not a number"))?;
                if !theta.is_finite() || !(0.0..=10.0).contains(&theta) {
                    bail!("zipf exponent {theta} not in 0..=10");
                }
                Ok(WorkloadSpec::Zipf { theta })
            }
            "hotcold" => {
                let arg = arg.ok_or_else(|| {
                    anyhow!("hotcold needs A/B percentages, e.g. `hotcold:80/20`")
                })?;
                let (a, b) = arg
                    .split_once('/')
                    .ok_or_else(|| anyhow!("hotcold argument `{arg}` is not of the form A/B"))?;
                let pct = |v: &str, what: &str| -> anyhow::Result<f64> {
                    let p: f64 = v
                        .trim()
                        .parse()
                        .with_context(|| format!("hotcold {what} `{v}` is not a number"))?;
                    if !(p > 0.0 && p < 100.0) {
                        bail!("hotcold {what} {p} must be strictly between 0 and 100");
                    }
                    Ok(p)
                };
                Ok(WorkloadSpec::HotCold {
                    hot_access_pct: pct(a, "access percentage A")?,
                    hot_space_pct: pct(b, "space percentage B")?,
                })
            }
            other => bail!(
                "unknown workload `{other}`: expected uniform, seq, zipf:THETA or hotcold:A/B"
            ),
        }
    }
}

impl fmt::Display for WorkloadSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WorkloadSpec::Uniform => write!(f, "uniform"),
            WorkloadSpec::Seq => write!(f, "seq"),
            WorkloadSpec::Zipf { theta } => write!(f, "zipf:{theta}"),
            WorkloadSpec::HotCold {
                hot_access_pct,
                hot_space_pct,
            } => write!(f, "hotcold:{hot_access_pct}/{hot_space_pct}"),
        }
    }
}

#[derive(Debug)]
enum Kind {
    Uniform,
    Zipf {
        dist: Zipf<f64>,
        perm: Permutation,
    },
    HotCold {
        hot_prob: f64,
        hot_pages: u64,
        perm: Permutation,
    },
    Seq {
        next: u64,
    },
}

/// A seeded stream of logical page numbers in `0..pages`.
#[derive(Debug)]
pub struct Workload {
    kind: Kind,
    pages: u64,
    rng: ChaCha8Rng,
}

impl Workload {
    pub fn new(spec: &WorkloadSpec, pages: u64, seed: u64) -> anyhow::Result<Self> {
        if pages == 0 {
            bail!("a workload needs at least one page");
        }
        let perm = || Permutation::new(pages, seed ^ 0x7065_726d);
        let kind = match *spec {
            WorkloadSpec::Uniform => Kind::Uniform,
            WorkloadSpec::Seq => Kind::Seq { next: 0 },
            WorkloadSpec::Zipf { theta } => Kind::Zipf {
                dist: Zipf::new(pages as f64, theta)
                    .map_err(|e| anyhow!("zipf over {pages} pages with exponent {theta}: {e}"))?,
                perm: perm(),
            },
            WorkloadSpec::HotCold {
                hot_access_pct,
                hot_space_pct,
            } => {
                let hot_pages =
                    ((pages as f64 * hot_space_pct / 100.0).round() as u64).clamp(1, pages);
                Kind::HotCold {
                    hot_prob: hot_access_pct / 100.0,
                    hot_pages,
                    perm: perm(),
                }
            }
        };
        Ok(Self {
            kind,
            pages,
            rng: ChaCha8Rng::seed_from_u64(seed),
        })
    }

    pub fn pages(&self) -> u64 {
        self.pages
    }

    /// The next logical page number, always `< pages`.
    pub fn next_lpa(&mut self) -> u64 {
        let pages = self.pages;
        match &mut self.kind {
            Kind::Uniform => self.rng.random_range(0..pages),
            Kind::Seq { next } => {
                let lpa = *next;
                *next = (lpa + 1) % pages;
                lpa
            }
            Kind::Zipf { dist, perm } => {
                let rank = (dist.sample(&mut self.rng) as u64).clamp(1, pages) - 1;
                perm.apply(rank)
            }
            Kind::HotCold {
                hot_prob,
                hot_pages,
                perm,
            } => {
                let cold_pages = pages - *hot_pages;
                let index = if cold_pages == 0 || self.rng.random_bool(*hot_prob) {
                    self.rng.random_range(0..*hot_pages)
                } else {
                    *hot_pages + self.rng.random_range(0..cold_pages)
                };
                perm.apply(index)
            }
        }
    }

    /// Whether `lpa` is in the hot set (hotcold only; false for other workloads). For tests and reports.
    pub fn is_hot(&self, lpa: u64) -> bool {
        match &self.kind {
            Kind::HotCold {
                hot_pages, perm, ..
            } => perm.invert(lpa) < *hot_pages,
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(s: &str) -> WorkloadSpec {
        s.parse().expect("valid spec")
    }

    #[test]
    fn parses_every_form_and_round_trips() {
        assert_eq!(spec("uniform"), WorkloadSpec::Uniform);
        assert_eq!(spec("seq"), WorkloadSpec::Seq);
        assert_eq!(spec("zipf:0.99"), WorkloadSpec::Zipf { theta: 0.99 });
        assert_eq!(
            spec("hotcold:90/10"),
            WorkloadSpec::HotCold {
                hot_access_pct: 90.0,
                hot_space_pct: 10.0
            }
        );
        for s in ["uniform", "seq", "zipf:0.99", "hotcold:80/20"] {
            assert_eq!(spec(s).to_string(), s);
        }
    }

    #[test]
    fn rejects_bad_specs_with_clear_errors() {
        for (bad, needle) in [
            ("zipf", "exponent"),
            ("zipf:abc", "not a number"),
            ("zipf:-1", "not in"),
            ("hotcold:80", "A/B"),
            ("hotcold:0/20", "between 0 and 100"),
            ("hotcold:80/x", "not a number"),
            ("uniform:3", "no argument"),
            ("random", "unknown workload"),
        ] {
            let err = bad.parse::<WorkloadSpec>().expect_err(bad).to_string();
            assert!(err.contains(needle), "{bad}: {err}");
        }
    }

    #[test]
    fn deterministic_and_in_bounds() {
        for s in ["uniform", "seq", "zipf:0.99", "hotcold:80/20"] {
            let take = |seed| {
                let mut w = Workload::new(&spec(s), 1000, seed).expect("workload");
                (0..5000).map(|_| w.next_lpa()).collect::<Vec<_>>()
            };
            let a = take(7);
            assert_eq!(a, take(7), "{s}");
            assert!(a.iter().all(|&p| p < 1000), "{s}");
            if s != "seq" {
                assert_ne!(a, take(8), "{s}");
            }
        }
        assert!(Workload::new(&WorkloadSpec::Uniform, 0, 1).is_err());
    }

    #[test]
    fn seq_wraps_around() {
        let mut w = Workload::new(&WorkloadSpec::Seq, 3, 0).expect("workload");
        let got: Vec<u64> = (0..7).map(|_| w.next_lpa()).collect();
        assert_eq!(got, [0, 1, 2, 0, 1, 2, 0]);
    }

    #[test]
    fn hotcold_hot_fraction_is_right() {
        for (s, want) in [("hotcold:90/10", 0.90), ("hotcold:80/20", 0.80)] {
            let mut w = Workload::new(&spec(s), 10_000, 3).expect("workload");
            let hot_set = (0..10_000).filter(|&p| w.is_hot(p)).count();
            let space = if want > 0.85 { 1000 } else { 2000 };
            assert_eq!(hot_set, space, "{s}");
            let n = 100_000;
            let stream: Vec<u64> = (0..n).map(|_| w.next_lpa()).collect();
            let hot = stream.iter().filter(|&&p| w.is_hot(p)).count();
            let frac = hot as f64 / n as f64;
            assert!((frac - want).abs() < 0.01, "{s}: {frac}");
        }
    }

    #[test]
    fn hot_pages_are_scattered() {
        let w = Workload::new(&spec("hotcold:90/10"), 10_000, 3).expect("workload");
        let in_first_tenth = (0..1000).filter(|&p| w.is_hot(p)).count();
        assert!(in_first_tenth < 300, "{in_first_tenth}");
    }

    #[test]
    fn zipf_is_skewed_and_scattered() {
        let pages = 10_000u64;
        let mut w = Workload::new(&spec("zipf:0.99"), pages, 11).expect("workload");
        let n = 200_000;
        let mut counts = vec![0u64; pages as usize];
        for _ in 0..n {
            counts[w.next_lpa() as usize] += 1;
        }
        let mut sorted = counts.clone();
        sorted.sort_unstable_by(|a, b| b.cmp(a));
        let top: u64 = sorted[..(pages / 100) as usize].iter().sum();
        let share = top as f64 / n as f64;
        // Theory for n=10k, s=0.99: the top 100 ranks hold about half of all accesses.
        assert!(share > 0.4, "top 1% share {share}");
        // The hottest page is not simply page 0, and the top pages are not adjacent.
        let hottest: Vec<usize> = (0..pages as usize)
            .filter(|&p| counts[p] >= sorted[9])
            .collect();
        let spread =
            hottest.iter().max().copied().unwrap_or(0) - hottest.iter().min().copied().unwrap_or(0);
        assert!(spread > 1000, "{hottest:?}");
    }
}
