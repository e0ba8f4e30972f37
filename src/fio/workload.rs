//! What a job does next: direction (rw, rwmixread, trimwrite), block size (bs, bsrange, bssplit)
//! and offset (sequential with `rw=read:N` holes, random over a random map that visits every
//! block once per pass, or with `norandommap` / zipf / pareto / normal draws, `rw=randread:N`
//! runs), until `io_size` (or `size`) bytes times `loops`, or for ever when time_based.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution as _, Normal, Zipf};

use super::options::{Ddir, Distribution, JobOptions, RwPattern};
use crate::permutation::Permutation;

/// One I/O to issue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IoPlan {
    pub ddir: Ddir,
    pub offset: u64,
    pub len: u64,
}

/// The next thing a worker does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Next {
    Io(IoPlan),
    /// An fsync (after every `fsync=N` writes).
    Sync,
    /// The job's I/O is done.
    Done,
}

#[derive(Debug)]
pub struct Workload {
    options: JobOptions,
    start: u64,
    end: u64,
    /// Random offsets are multiples of this (the smallest block size).
    granularity: u64,
    blocks: u64,
    rng: ChaCha8Rng,
    map: Option<Permutation>,
    map_position: u64,
    zipf: Option<Zipf<f64>>,
    next_sequential: u64,
    /// I/Os left in the current run of `rw=randread:N`.
    run_left: u64,
    bytes_per_loop: u64,
    bytes_this_loop: u64,
    loops_left: u64,
    writes_since_sync: u64,
    /// trimwrite: the block just trimmed, written next.
    pending_write: Option<(u64, u64)>,
}

impl Workload {
    /// A workload over `[start, end)` of the target; `seed` picks the random offsets.
    pub fn new(options: &JobOptions, start: u64, end: u64, granularity: u64, seed: u64) -> Self {
        let o = options;
        let min_bs = Ddir::ALL
            .iter()
            .filter(|d| o.rw.has(**d))
            .map(|d| min_bs(o, *d))
            .min()
            .unwrap_or(4096)
            .max(granularity);
        let span = end.saturating_sub(start);
        let blocks = (span / min_bs).max(1);
        let size = span;
        let bytes_per_loop = o.io_size_bytes.unwrap_or(size).max(1);
        let map =
            (o.rw.is_random() && !o.norandommap && o.random_distribution == Distribution::Random)
                .then(|| Permutation::new(blocks, seed));
        let zipf = match o.random_distribution {
            Distribution::Zipf { theta } => Zipf::new(blocks as f64, theta).ok(),
            _ => None,
        };
        Self {
            options: o.clone(),
            start,
            end,
            granularity: min_bs,
            blocks,
            rng: ChaCha8Rng::seed_from_u64(seed),
            map,
            map_position: 0,
            zipf,
            next_sequential: start,
            run_left: 0,
            bytes_per_loop,
            bytes_this_loop: 0,
            loops_left: o.loops,
            writes_since_sync: 0,
            pending_write: None,
        }
    }

    /// The next I/O, or Done when loops are exhausted (never when time_based).
    pub fn next_io(&mut self) -> Next {
        let fsync_every = self.options.fsync_every_writes;
        let time_based = self.options.time_based;
        let trimwrite = matches!(
            self.options.rw,
            RwPattern::TrimWrite | RwPattern::RandTrimWrite
        );
        if fsync_every > 0 && self.writes_since_sync >= fsync_every {
            self.writes_since_sync = 0;
            return Next::Sync;
        }
        if let Some((offset, len)) = self.pending_write.take() {
            // trimwrite's write covers the block its trim counted: the block counts once.
            self.writes_since_sync += 1;
            return Next::Io(IoPlan {
                ddir: Ddir::Write,
                offset,
                len,
            });
        }
        if self.bytes_this_loop >= self.bytes_per_loop {
            self.loops_left = self.loops_left.saturating_sub(1);
            if self.loops_left == 0 && !time_based {
                return Next::Done;
            }
            self.bytes_this_loop = 0;
            self.next_sequential = self.start;
            self.map_position = 0;
        }
        let ddir = self.pick_ddir();
        let len = self.pick_bs(ddir);
        let offset = self.pick_offset(len);
        if trimwrite {
            self.pending_write = Some((offset, len));
            return self.issue(Ddir::Trim, offset, len);
        }
        self.issue(ddir, offset, len)
    }

    fn issue(&mut self, ddir: Ddir, offset: u64, len: u64) -> Next {
        self.bytes_this_loop += len;
        if ddir == Ddir::Write {
            self.writes_since_sync += 1;
        }
        Next::Io(IoPlan { ddir, offset, len })
    }

    /// The job's writes need a final sync before the job ends (`fsync=N` leftovers).
    pub fn writes_since_sync(&self) -> u64 {
        self.writes_since_sync
    }

    fn pick_ddir(&mut self) -> Ddir {
        let o = &self.options;
        if o.rw.is_mixed_rw() {
            if self.rng.random_range(0..100) < o.rwmix_read_percent {
                Ddir::Read
            } else {
                Ddir::Write
            }
        } else if o.rw.has(Ddir::Read) {
            Ddir::Read
        } else if o.rw.has(Ddir::Trim) && !o.rw.has(Ddir::Write) {
            Ddir::Trim
        } else {
            Ddir::Write
        }
    }

    fn pick_bs(&mut self, ddir: Ddir) -> u64 {
        let o = &self.options;
        let bs = if let Some(split) = &o.bssplit {
            let entries = split.get(ddir);
            let roll = self.rng.random_range(0..100u32);
            let mut acc = 0;
            let mut chosen = entries.last().map_or(4096, |e| e.bs_bytes);
            for e in entries {
                acc += e.percent;
                if roll < acc {
                    chosen = e.bs_bytes;
                    break;
                }
            }
            chosen
        } else if let Some(range) = &o.bsrange_bytes {
            let (lo, hi) = *range.get(ddir);
            // fio draws a size in [lo, hi] rounded down to a multiple of lo.
            let v = self.rng.random_range(lo..=hi);
            (v / lo * lo).max(lo)
        } else {
            *o.bs_bytes.get(ddir)
        };
        // A block never runs past the region.
        bs.min(self.end - self.start).max(1)
    }

    fn pick_offset(&mut self, len: u64) -> u64 {
        let o = &self.options;
        let last_start = self.end.saturating_sub(len).max(self.start);
        if !o.rw.is_random() || self.run_left > 0 {
            self.run_left = self.run_left.saturating_sub(1);
            if self.next_sequential + len > self.end {
                self.next_sequential = self.start;
            }
            let offset = self.next_sequential;
            self.next_sequential = offset + len + o.rw_skip_bytes;
            return offset;
        }
        let block = match (&self.map, o.random_distribution) {
            (Some(map), _) => {
                let b = map.apply(self.map_position % self.blocks);
                self.map_position += 1;
                b
            }
            (None, Distribution::Random) => self.rng.random_range(0..self.blocks),
            (None, Distribution::Zipf { .. }) => {
                let rank = self.zipf.map_or(1.0, |z| z.sample(&mut self.rng)) as u64;
                self.scatter(rank.saturating_sub(1))
            }
            (None, Distribution::Pareto { h }) => {
                // fio: rank = (n - 1) * u^(log(h) / log(1 - h)), scattered over the range.
                let u: f64 = self.rng.random();
                let rank = ((self.blocks - 1) as f64 * u.powf(h.ln() / (1.0 - h).ln())) as u64;
                self.scatter(rank)
            }
            (None, Distribution::Normal { dev_percent }) => {
                let center = self.blocks as f64 / 2.0;
                let dev = (self.blocks as f64 * dev_percent / 100.0).max(1e-9);
                let x = Normal::new(center, dev).map_or(center, |n| n.sample(&mut self.rng));
                (x.max(0.0) as u64).min(self.blocks - 1)
            }
        };
        self.run_left = o.rw_sequential_ios.saturating_sub(1);
        let mut offset = self.start + block * self.granularity;
        if offset > last_start {
            offset = self.start + (last_start - self.start) / self.granularity * self.granularity;
        }
        self.next_sequential = offset + len;
        offset
    }

    /// Spreads ranks over the range (hot blocks are not all at the start), as fio hashes them.
    fn scatter(&self, rank: u64) -> u64 {
        let p = Permutation::new(self.blocks, 0x05ee_df10);
        p.apply(rank.min(self.blocks - 1))
    }
}

/// The smallest block size a direction may use.
pub fn min_bs(o: &JobOptions, ddir: Ddir) -> u64 {
    if let Some(split) = &o.bssplit {
        return split
            .get(ddir)
            .iter()
            .map(|e| e.bs_bytes)
            .min()
            .unwrap_or(4096);
    }
    if let Some(range) = &o.bsrange_bytes {
        return range.get(ddir).0;
    }
    *o.bs_bytes.get(ddir)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fio::jobs::from_sections;
    use crate::fio::lexer::parse_str;
    use std::collections::HashSet;
    use std::path::Path;

    fn options(text: &str) -> JobOptions {
        let none = |_: &str| None;
        let sections = parse_str(text, Path::new("w.fio"), &none).expect("parse");
        from_sections(&sections).expect("jobs").jobs[0]
            .options
            .clone()
    }

    fn ios(w: &mut Workload) -> Vec<IoPlan> {
        let mut out = Vec::new();
        while let Next::Io(p) = w.next_io() {
            out.push(p);
            assert!(out.len() < 1_000_000, "runaway workload");
        }
        out
    }

    #[test]
    fn sequential_with_loops_and_holes() {
        let o = options("[j]\nrw=write\nbs=4k\nsize=16k\nloops=2\n");
        let offsets: Vec<u64> = ios(&mut Workload::new(&o, 0, 16384, 1, 1))
            .iter()
            .map(|p| p.offset)
            .collect();
        assert_eq!(offsets, vec![0, 4096, 8192, 12288, 0, 4096, 8192, 12288]);
        let o = options("[j]\nrw=read:4k\nbs=4k\nsize=32k\nio_size=16k\n");
        let offsets: Vec<u64> = ios(&mut Workload::new(&o, 0, 32768, 1, 1))
            .iter()
            .map(|p| p.offset)
            .collect();
        assert_eq!(offsets, vec![0, 8192, 16384, 24576]);
    }

    #[test]
    fn random_map_visits_every_block_once() {
        let o = options("[j]\nrw=randwrite\nbs=4k\nsize=1m\n");
        let plans = ios(&mut Workload::new(&o, 1 << 20, 2 << 20, 1, 7));
        let offsets: HashSet<u64> = plans.iter().map(|p| p.offset).collect();
        assert_eq!(plans.len(), 256);
        assert_eq!(offsets.len(), 256);
        assert!(
            offsets
                .iter()
                .all(|o| (1 << 20..2 << 20).contains(o) && o % 4096 == 0)
        );
        // Not sequential.
        assert_ne!(plans[1].offset, plans[0].offset + 4096);
    }

    #[test]
    fn randread_runs_and_mix() {
        let o = options("[j]\nrw=randrw:4\nrwmixread=75\nbs=4k\nsize=4m\n");
        let plans = ios(&mut Workload::new(&o, 0, 4 << 20, 1, 3));
        let reads = plans.iter().filter(|p| p.ddir == Ddir::Read).count();
        assert!((650..850).contains(&reads), "{reads} of 1024 reads");
        // Runs of 4: each next I/O of a run follows the previous one.
        assert_eq!(plans[1].offset, plans[0].offset + 4096);
        assert_eq!(plans[3].offset, plans[2].offset + 4096);
    }

    #[test]
    fn block_sizes_and_trimwrite() {
        let o = options("[j]\nrw=randread\nbssplit=4k/90:64k/10\nsize=8m\nnorandommap\n");
        let plans = ios(&mut Workload::new(&o, 0, 8 << 20, 1, 3));
        let small = plans.iter().filter(|p| p.len == 4096).count();
        let big = plans.iter().filter(|p| p.len == 65536).count();
        assert_eq!(small + big, plans.len());
        assert!(small > big, "{small} {big}");
        let o = options("[j]\nrw=trimwrite\nbs=4k\nsize=16k\n");
        let plans = ios(&mut Workload::new(&o, 0, 16384, 1, 1));
        assert_eq!(plans.len(), 8);
        assert_eq!((plans[0].ddir, plans[1].ddir), (Ddir::Trim, Ddir::Write));
        assert_eq!(plans[0].offset, plans[1].offset);
        let o = options("[j]\nrw=randread\nbsrange=4k-16k\nsize=1m\n");
        for p in ios(&mut Workload::new(&o, 0, 1 << 20, 1, 9)) {
            assert!(p.len % 4096 == 0 && (4096..=16384).contains(&p.len));
            assert!(p.offset + p.len <= 1 << 20);
        }
    }

    #[test]
    fn fsync_every_n_writes() {
        let o = options("[j]\nrw=write\nbs=4k\nsize=32k\nfsync=3\n");
        let mut w = Workload::new(&o, 0, 32768, 1, 1);
        let mut seq = Vec::new();
        loop {
            match w.next_io() {
                Next::Io(_) => seq.push('w'),
                Next::Sync => seq.push('s'),
                Next::Done => break,
            }
        }
        assert_eq!(seq.iter().collect::<String>(), "wwwswwwsww");
    }

    #[test]
    fn skewed_distributions_concentrate() {
        for dist in ["zipf:1.2", "pareto:0.9", "normal:5"] {
            let o = options(&format!(
                "[j]\nrw=randread\nbs=4k\nsize=4m\nrandom_distribution={dist}\n"
            ));
            let plans = ios(&mut Workload::new(&o, 0, 4 << 20, 1, 5));
            let distinct: HashSet<u64> = plans.iter().map(|p| p.offset).collect();
            // 1024 I/Os over 1024 blocks: a uniform draw touches ~650 blocks, a skewed one fewer.
            assert!(distinct.len() < 500, "{dist}: {} distinct", distinct.len());
            assert!(plans.iter().all(|p| p.offset + p.len <= 4 << 20));
        }
    }
}
