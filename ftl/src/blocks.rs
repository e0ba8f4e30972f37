//! What the FTL knows of each physical block, and the free pool with dynamic wear leveling.

use std::collections::BTreeSet;

use crate::layout::Layout;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlockKind {
    /// Erased, in the free pool.
    Free,
    /// Taking writes of a data stream (it is in `Engine::open`).
    Open,
    /// Full or closed early; holds data pages. Collected by GC.
    Closed,
    /// Taking trim-log pages.
    TrimOpen,
    /// Holds trim-log pages only. Collected by GC like data blocks.
    TrimClosed,
    /// Holds the current checkpoint; released when the next one is durable.
    Checkpoint,
    /// Factory or grown bad; never used again.
    Bad,
    /// Emptied by GC, waiting for the barrier and erase (not a victim again).
    Collected,
    /// In the checkpoint area but not holding the current checkpoint (it may hold an older one).
    Reserved,
}

impl BlockKind {
    /// The code the checkpoint's block table stores.
    pub fn code(self) -> u8 {
        match self {
            BlockKind::Free => 0,
            BlockKind::Open => 1,
            BlockKind::Closed => 2,
            BlockKind::TrimOpen => 3,
            BlockKind::TrimClosed => 4,
            BlockKind::Checkpoint => 5,
            BlockKind::Bad => 6,
            BlockKind::Collected => 7,
            BlockKind::Reserved => 8,
        }
    }
}

#[derive(Clone, Copy, Debug)]
pub struct BlockState {
    pub kind: BlockKind,
    pub stream: u8,
    /// Map entries that point into this block (data pages, or live trim entries).
    pub valid: u32,
    /// Pages programmed since the last erase.
    pub written: u32,
    pub erase_count: u32,
    /// Sequence number when the block was closed: its age for cost-benefit GC.
    pub close_seq: u64,
    /// A program failed here: after its data has moved, retire it instead of erasing it.
    pub retire: bool,
}

impl BlockState {
    pub fn free(erase_count: u32) -> Self {
        Self {
            kind: BlockKind::Free,
            stream: 0,
            valid: 0,
            written: 0,
            erase_count,
            close_seq: 0,
            retire: false,
        }
    }

    pub fn bad(erase_count: u32) -> Self {
        Self {
            kind: BlockKind::Bad,
            ..Self::free(erase_count)
        }
    }

    pub fn is_collectable(&self) -> bool {
        matches!(self.kind, BlockKind::Closed | BlockKind::TrimClosed)
    }
}

/// Free blocks per die, ordered by erase count. Data streams take the least worn block (dynamic
/// wear leveling); the static wear-leveling stream takes the most worn one for the cold data it
/// moves.
#[derive(Debug)]
pub struct FreePool {
    per_die: Vec<BTreeSet<(u32, u32)>>,
    count: u32,
}

impl FreePool {
    pub fn new(dies: u32) -> Self {
        Self {
            per_die: (0..dies).map(|_| BTreeSet::new()).collect(),
            count: 0,
        }
    }

    pub fn count(&self) -> u32 {
        self.count
    }

    pub fn insert(&mut self, layout: &Layout, gblock: u32, erase_count: u32) {
        let fresh = self.per_die[layout.die_of(gblock) as usize].insert((erase_count, gblock));
        assert!(fresh, "block {gblock} freed twice");
        self.count += 1;
    }

    pub fn has_block_on(&self, die: u32) -> bool {
        !self.per_die[die as usize].is_empty()
    }

    /// Takes a free block of `die`: the least worn, or the most worn.
    pub fn take(&mut self, die: u32, most_worn: bool) -> Option<u32> {
        let set = &mut self.per_die[die as usize];
        let item = if most_worn {
            set.pop_last()
        } else {
            set.pop_first()
        }?;
        self.count -= 1;
        Some(item.1)
    }

    /// Takes the most worn free block of any die.
    pub fn take_most_worn(&mut self) -> Option<u32> {
        let die = (0..self.per_die.len())
            .filter(|&d| !self.per_die[d].is_empty())
            .max_by_key(|&d| self.per_die[d].last().map(|&(ec, _)| ec))?;
        self.take(die as u32, true)
    }

    /// Takes the least worn free block of whichever die has the most free blocks.
    pub fn take_any(&mut self) -> Option<u32> {
        let die = (0..self.per_die.len()).max_by_key(|&d| self.per_die[d].len())?;
        self.take(die as u32, false)
    }
}
