//! Format and open. Opening rebuilds the map from the newest complete checkpoint, then folds in
//! every block that changed since it was taken, newest sequence number winning.
//!
//! Why this is correct after any crash (see docs/ftl-format.md, "Durability and recovery"):
//! - every version the map points to is durable before the block holding an older copy is erased
//!   (`Engine::barrier` runs before every erase), and relocation keeps a page's `data_seq`;
//! - so for every logical page the newest durable version is on flash, and taking the highest
//!   `data_seq` among the copies recovery sees returns it (copies with equal `data_seq` are equal);
//! - blocks unchanged since the checkpoint hold nothing newer than what the checkpoint maps, so
//!   only changed blocks need reading; a checkpoint pointer into a changed block is dropped and
//!   re-derived from the fold. A relocated copy (data_seq below the checkpoint id) only fills such a
//!   dropped pointer; it never overrides a pointer that is still good.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::AtomicU32;
use std::time::Instant;

use serde::Serialize;

use crate::blocks::{BlockKind, BlockState};
use crate::config::FtlConfig;
use crate::engine::{Counters, Engine, Shared, logical_pages_for};
use crate::error::FtlError;
use crate::format::checkpoint::Checkpoint;
use crate::format::oob::{PageKind, PageRecord};
use crate::format::{summary, trim_log};
use crate::io::{read_page, read_verified, slot_record};
use crate::layout::{Entry, Layout, TRIM_FLAG, UNMAPPED};
use crate::nand::{BlockHealth, BlockInfo, Nand, NandError};

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct RecoveryReport {
    /// No block changed since the checkpoint: the last close was clean.
    pub clean: bool,
    pub checkpoint_id: u64,
    pub blocks_surveyed: u32,
    /// Blocks read in full because they changed after the checkpoint.
    pub blocks_folded: u32,
    pub pages_read: u64,
    /// Checkpoint pointers into changed blocks for which no copy was found (must be 0).
    pub pointers_unresolved: u64,
    pub elapsed_ms: f64,
}

fn layout_of(devices: &[Arc<dyn Nand>]) -> Result<Layout, FtlError> {
    let first = devices
        .first()
        .ok_or_else(|| FtlError::Devices("no devices".into()))?;
    let geometry = *first.geometry();
    if let Some(i) = devices.iter().position(|d| *d.geometry() != geometry) {
        return Err(FtlError::Devices(format!(
            "device {i} has a different geometry from device 0"
        )));
    }
    Layout::new(geometry, devices.len() as u32).map_err(FtlError::Devices)
}

fn new_map(logical_pages: u64) -> Vec<AtomicU32> {
    (0..logical_pages)
        .map(|_| AtomicU32::new(UNMAPPED))
        .collect()
}

/// The checkpoint area: the first `Layout::area_blocks` blocks in `Layout::area_order` that are
/// not factory bad. Factory marks never change, so format and every later open find the same area.
fn checkpoint_area(layout: &Layout, infos: &[BlockInfo]) -> Vec<u32> {
    layout
        .area_order()
        .filter(|&g| infos[g as usize].health != BlockHealth::FactoryBad)
        .take(layout.area_blocks() as usize)
        .collect()
}

fn block_infos(layout: &Layout, devices: &[Arc<dyn Nand>]) -> Result<Vec<BlockInfo>, FtlError> {
    let mut infos = Vec::with_capacity(layout.blocks as usize);
    for g in 0..layout.blocks {
        let (d, b) = layout.split_block(g);
        infos.push(devices[d].block_info(b)?);
    }
    Ok(infos)
}

/// Erases every good block, sets the checkpoint area apart and sizes the logical space.
pub fn format(
    devices: Vec<Arc<dyn Nand>>,
    config: FtlConfig,
) -> Result<(Shared, Engine), FtlError> {
    config.validate().map_err(FtlError::Config)?;
    let layout = layout_of(&devices)?;
    let infos = block_infos(&layout, &devices)?;
    let area = checkpoint_area(&layout, &infos);
    let mut in_area = vec![false; layout.blocks as usize];
    for &g in &area {
        in_area[g as usize] = true;
    }
    let mut blocks = Vec::with_capacity(layout.blocks as usize);
    for (g, info) in infos.iter().enumerate() {
        let (d, b) = layout.split_block(g as u32);
        let mut state = if info.health != BlockHealth::Good {
            BlockState::bad(info.erase_count)
        } else if info.programmed_pages == 0 {
            BlockState::free(info.erase_count)
        } else {
            match devices[d].erase_block(b) {
                Ok(()) => BlockState::free(info.erase_count + 1),
                Err(NandError::EraseFailed { .. }) => {
                    devices[d].mark_bad(b)?;
                    BlockState::bad(info.erase_count)
                }
                Err(e) => return Err(e.into()),
            }
        };
        if in_area[g] && state.kind == BlockKind::Free {
            state.kind = BlockKind::Reserved;
        }
        blocks.push(state);
    }
    let good_outside_area = blocks
        .iter()
        .enumerate()
        .filter(|&(g, b)| b.kind != BlockKind::Bad && !in_area[g])
        .count() as u32;
    let logical_pages = logical_pages_for(&config, &layout, good_outside_area);
    if logical_pages == 0 {
        return Err(FtlError::Devices(
            "too few good blocks for any logical space".into(),
        ));
    }
    let shared = Shared {
        layout,
        devices,
        map: new_map(logical_pages),
        generations: Vec::new(),
    };
    let mut engine = Engine::new(config, layout, blocks, logical_pages);
    engine.area = area;
    Ok((shared, engine))
}

/// What one look at a block's first page says.
#[derive(Clone, Copy, Debug)]
enum Survey {
    Bad {
        erase_count: u32,
        /// Went bad in use (a failed program or erase), as opposed to at the factory.
        grown: bool,
    },
    Free {
        erase_count: u32,
    },
    /// Programmed, and its erase and program counts match the checkpoint: unchanged since, so its
    /// page 0 is not read.
    Unchanged {
        erase_count: u32,
        written: u32,
    },
    /// Programmed; `first` is page 0's record, or None if page 0 is torn or foreign.
    Used {
        erase_count: u32,
        written: u32,
        first: Option<PageRecord>,
    },
}

/// Devices are surveyed on a thread each from this many blocks on.
const PARALLEL_SURVEY_BLOCKS: u32 = 4096;

/// Describes every block from its info, reading page 0's OOB of the blocks `read` selects (one
/// thread per device: on a cold page cache these reads are most of an open).
fn survey(
    layout: &Layout,
    devices: &[Arc<dyn Nand>],
    infos: &[BlockInfo],
    read: &(dyn Fn(u32) -> bool + Sync),
) -> Result<Vec<Survey>, FtlError> {
    let survey_device = |d: usize| -> Result<Vec<Survey>, FtlError> {
        let device = devices[d].as_ref();
        let mut oob = vec![0u8; layout.oob_size];
        (0..layout.blocks_per_device)
            .map(|b| {
                let g = layout.gblock(d, b);
                let info = infos[g as usize];
                Ok(if info.health != BlockHealth::Good {
                    Survey::Bad {
                        erase_count: info.erase_count,
                        grown: info.health == BlockHealth::GrownBad,
                    }
                } else if info.programmed_pages == 0 {
                    Survey::Free {
                        erase_count: info.erase_count,
                    }
                } else if !read(g) {
                    Survey::Unchanged {
                        erase_count: info.erase_count,
                        written: info.programmed_pages,
                    }
                } else {
                    device.read_oob(b, 0, &mut oob)?;
                    let first = PageRecord::decode_unverified(&oob).ok();
                    Survey::Used {
                        erase_count: info.erase_count,
                        written: info.programmed_pages,
                        first,
                    }
                })
            })
            .collect()
    };
    // Threads pay off only when there are many blocks to look at (and reads that may miss a cache).
    let parallel = devices.len() > 1 && layout.blocks >= PARALLEL_SURVEY_BLOCKS;
    let per_device: Vec<Result<Vec<Survey>, FtlError>> = if parallel {
        std::thread::scope(|s| {
            let handles: Vec<_> = (0..devices.len())
                .map(|d| s.spawn(move || survey_device(d)))
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
                })
                .collect()
        })
    } else {
        (0..devices.len()).map(survey_device).collect()
    };
    let mut surveys = Vec::with_capacity(layout.blocks as usize);
    for device in per_device {
        surveys.extend(device?);
    }
    debug_assert_eq!(surveys.len(), layout.blocks as usize);
    Ok(surveys)
}

pub fn open(
    devices: Vec<Arc<dyn Nand>>,
    config: FtlConfig,
) -> Result<(Shared, Engine, RecoveryReport, Vec<u64>), FtlError> {
    config.validate().map_err(FtlError::Config)?;
    let started = Instant::now();
    let layout = layout_of(&devices)?;
    let mut report = RecoveryReport::default();
    let infos = block_infos(&layout, &devices)?;
    let area = checkpoint_area(&layout, &infos);
    let mut in_area = vec![false; layout.blocks as usize];
    for &g in &area {
        in_area[g as usize] = true;
    }
    // The checkpoint lives in the area; look everywhere only if it is not there.
    let area_survey = survey(&layout, &devices, &infos, &|g| in_area[g as usize])?;
    let mut found = find_checkpoint(&layout, &devices, &area_survey, &mut report)?;
    if found.0.is_none() {
        let everything = survey(&layout, &devices, &infos, &|_| true)?;
        found = find_checkpoint(&layout, &devices, &everything, &mut report)?;
    }
    let (checkpoint, checkpoint_blocks, checkpoint_max_seq) = found;
    let checkpoint_read = Instant::now();
    let Some(checkpoint) = checkpoint else {
        let all_free = infos
            .iter()
            .all(|i| i.programmed_pages == 0 || i.health == BlockHealth::FactoryBad);
        return Err(if all_free {
            FtlError::NotFormatted
        } else {
            FtlError::Recovery("no complete checkpoint on the devices".into())
        });
    };
    if checkpoint.blocks.len() != layout.blocks as usize
        || checkpoint.pages_per_block != layout.pages_per_block
        || checkpoint.slots_per_page != layout.slots_per_page
    {
        return Err(FtlError::Recovery(format!(
            "checkpoint describes {} blocks of {} pages of {} logical pages; devices have {} of \
             {} of {}",
            checkpoint.blocks.len(),
            checkpoint.pages_per_block,
            checkpoint.slots_per_page,
            layout.blocks,
            layout.pages_per_block,
            layout.slots_per_page
        )));
    }
    let id = checkpoint.id;
    let logical_pages = checkpoint.map.len() as u64;

    // A block erased or programmed since the checkpoint has other counts than it recorded (erase
    // counts only grow, pages are only added, and the checkpoint was taken after a sync). Only
    // those blocks, and the area, are read.
    let unchanged = |g: u32| {
        let then = &checkpoint.blocks[g as usize];
        let now = &infos[g as usize];
        now.erase_count == then.erase_count && now.programmed_pages == then.written
    };
    let surveys = survey(&layout, &devices, &infos, &|g| {
        in_area[g as usize] || !unchanged(g)
    })?;
    let surveyed = Instant::now();
    report.blocks_surveyed = surveys
        .iter()
        .filter(|s| matches!(s, Survey::Used { .. }))
        .count() as u32;
    let shared_devices = devices;
    let mut oob = vec![0u8; layout.oob_size];

    // Which blocks changed since the checkpoint, and which can still back a checkpoint pointer.
    let mut changed = vec![false; layout.blocks as usize];
    let mut pointer_ok = vec![false; layout.blocks as usize];
    for (g, s) in surveys.iter().enumerate() {
        if in_area[g] {
            continue;
        }
        match *s {
            Survey::Used {
                first: Some(first), ..
            } => changed[g] = matches!(first.kind, PageKind::Data | PageKind::TrimLog),
            Survey::Unchanged { .. } => {
                pointer_ok[g] = matches!(checkpoint.blocks[g].state, 1..=4);
            }
            _ => {}
        }
    }

    // Start from the checkpoint's map; drop pointers into blocks that changed.
    let shared = Shared {
        layout,
        devices: shared_devices,
        map: new_map(logical_pages),
        generations: Vec::new(),
    };
    // After a clean close nothing is folded: skip the per-page bookkeeping of the fold (tens of
    // megabytes at 16 GiB, whose first touch costs more than the rest of the open).
    let fold_needed = changed.iter().any(|&c| c);
    let len = if fold_needed {
        logical_pages as usize
    } else {
        0
    };
    let mut map_seq = vec![0u64; len];
    let mut dropped = vec![false; len];
    for (lpa, &raw) in checkpoint.map.iter().enumerate() {
        let entry = Entry::decode(raw);
        let keep = match entry.psn() {
            Some(psn) => {
                u64::from(psn) < layout.slots() && pointer_ok[layout.block_of(psn) as usize]
            }
            None => true,
        };
        if keep {
            shared.set(lpa as u32, raw);
            if fold_needed {
                map_seq[lpa] = id.saturating_sub(1);
            }
        } else if fold_needed {
            dropped[lpa] = true;
        } else {
            // Nothing changed, yet the pointer is not good: nothing can resolve it.
            report.pointers_unresolved += 1;
        }
    }

    let map_loaded = Instant::now();

    // Fold every changed block in.
    // New sequence numbers must also pass those of pages the fold skips: a block whose first page
    // is torn keeps its record's seq (recovery reads only that record of it, and GC only later
    // erases it). Were that seq reused, the next checkpoint's id could be below it, and the block
    // would count as changed since that checkpoint: no clean open after a clean close.
    let surveyed_max_seq = surveys
        .iter()
        .filter_map(|s| match *s {
            Survey::Used {
                first: Some(first), ..
            } => Some(first.seq),
            _ => None,
        })
        .max()
        .unwrap_or(0);
    let mut max_seq = checkpoint_max_seq
        .max(id.saturating_sub(1))
        .max(surveyed_max_seq);
    let mut close_seq = vec![0u64; layout.blocks as usize];
    let mut data = vec![0u8; layout.page_size];
    let mut apply = |lpa: u32, data_seq: u64, raw: u32| {
        if u64::from(lpa) < logical_pages && data_seq > map_seq[lpa as usize] {
            map_seq[lpa as usize] = data_seq;
            shared.set(lpa, raw);
        }
    };
    for g in 0..layout.blocks {
        if !changed[g as usize] {
            continue;
        }
        let Survey::Used {
            written,
            first: Some(first),
            ..
        } = surveys[g as usize]
        else {
            continue;
        };
        report.blocks_folded += 1;
        let mut block_max = 0;
        let summary_page = layout.data_pages_per_block();
        let slots = layout.slots_per_page;
        let summary = (first.kind == PageKind::Data && written == layout.pages_per_block)
            .then(|| {
                read_verified(
                    &shared,
                    layout.ppn(g, summary_page),
                    &mut data,
                    &mut oob,
                    config.read_retries,
                )
                .ok()
            })
            .flatten()
            .filter(|r| r.kind == PageKind::Summary)
            .and_then(|r| {
                summary::decode(&data, layout.data_slots_per_block() as usize)
                    .ok()
                    .map(|e| (r, e))
            });
        if let Some((record, entries)) = summary {
            report.pages_read += 1;
            block_max = record.seq;
            let first_slot = layout.psn(g, 0, 0);
            for (slot, e) in entries.iter().enumerate() {
                if e.lpa != summary::NO_LPA {
                    apply(e.lpa, e.data_seq, first_slot + slot as u32);
                }
            }
        } else {
            for page in 0..written {
                report.pages_read += 1;
                let ppn = layout.ppn(g, page);
                if read_page(&shared, ppn, &mut data, &mut oob, config.read_retries).is_err() {
                    continue;
                }
                // Data pages: a record per slot, each over its slot (padding has none). Others:
                // one record over the whole page.
                let Ok(head) = PageRecord::decode_unverified(&oob) else {
                    continue;
                };
                if head.kind == PageKind::Data {
                    for slot in 0..slots {
                        if let Ok(record) = slot_record(&layout, &data, &oob, slot) {
                            block_max = block_max.max(record.seq);
                            apply(record.lpa, record.data_seq, layout.psn(g, page, slot));
                        }
                    }
                    continue;
                }
                let Ok(record) = PageRecord::decode(&data, &oob) else {
                    continue;
                };
                block_max = block_max.max(record.seq);
                if record.kind == PageKind::TrimLog {
                    for e in trim_log::decode(&data).unwrap_or_default() {
                        apply(e.lpa, e.data_seq, TRIM_FLAG | layout.psn(g, page, 0));
                    }
                }
            }
        }
        close_seq[g as usize] = block_max;
        max_seq = max_seq.max(block_max);
    }
    let folded = Instant::now();
    report.pointers_unresolved += dropped
        .iter()
        .enumerate()
        .filter(|&(lpa, &d)| d && shared.entry(lpa as u32) == Entry::Unmapped)
        .count() as u64;
    if report.pointers_unresolved > 0 {
        tracing::error!(
            count = report.pointers_unresolved,
            "checkpoint pointers with no surviving copy"
        );
    }

    // The generations the fold mapped are exact (from the pages' own records), unlike the
    // checkpoint's entries (kept at id - 1, above their real generation): only those are lower
    // bounds for a sealed read's replay check. Every fold override is above id - 1; a dropped
    // pointer refilled by the fold is exact whatever its value.
    let fold_bounds: Vec<u64> = (0..map_seq.len())
        .map(|lpa| {
            let data = matches!(shared.entry(lpa as u32), Entry::Data { .. });
            if data && (map_seq[lpa] > id.saturating_sub(1) || dropped[lpa]) {
                map_seq[lpa]
            } else {
                0
            }
        })
        .collect();

    // Block table, valid counts and the reverse map from the final map.
    let mut blocks = Vec::with_capacity(layout.blocks as usize);
    let mut held = Vec::new();
    for (g, s) in surveys.iter().enumerate() {
        let held_here = checkpoint_blocks.contains(&(g as u32));
        blocks.push(match *s {
            Survey::Bad { erase_count, .. } => BlockState::bad(erase_count),
            Survey::Free { erase_count } => {
                let mut b = BlockState::free(erase_count);
                if in_area[g] {
                    b.kind = BlockKind::Reserved;
                }
                b
            }
            Survey::Used {
                erase_count,
                written,
                first,
            } => {
                let mut b = BlockState {
                    written,
                    ..BlockState::free(erase_count)
                };
                b.kind = BlockKind::Closed;
                match first.map(|f| (f.kind, f.stream)) {
                    _ if held_here => b.kind = BlockKind::Checkpoint,
                    _ if in_area[g] => b.kind = BlockKind::Reserved,
                    Some((PageKind::TrimLog, stream)) => {
                        b.kind = BlockKind::TrimClosed;
                        b.stream = stream;
                    }
                    Some((PageKind::Data, stream)) => b.stream = stream,
                    // A torn first page, or an old checkpoint outside the area: empty, to erase.
                    _ => {}
                }
                b.close_seq = close_seq[g];
                b
            }
            Survey::Unchanged {
                erase_count,
                written,
            } => {
                let then = checkpoint.blocks[g];
                let kind = match then.state {
                    _ if held_here => BlockKind::Checkpoint,
                    3 | 4 => BlockKind::TrimClosed,
                    // Data blocks (open ones are not resumed) and anything else: closed.
                    _ => BlockKind::Closed,
                };
                BlockState {
                    kind,
                    stream: then.stream,
                    written,
                    close_seq: then.close_seq,
                    ..BlockState::free(erase_count)
                }
            }
        });
        if held_here {
            held.push(g as u32);
        }
    }
    let mut engine = Engine::new(config, layout, blocks, logical_pages);
    let grown = surveys
        .iter()
        .filter(|s| matches!(s, Survey::Bad { grown: true, .. }))
        .count();
    engine.account_grown_bad(grown as u32);
    for lpa in 0..logical_pages as u32 {
        let entry = shared.entry(lpa);
        if let Some(psn) = entry.psn() {
            engine.blocks[layout.block_of(psn) as usize].valid += 1;
        }
    }
    // A program lost to a crash may have carried any sequence number above the last one that was
    // durable. No block is erased without a barrier, so since the last sync every program went to
    // its own erased page: at most one per physical slot can have been lost, plus the slots of
    // the pages still in assembly (one per stream), plus a trim entry per logical page (each
    // takes a number). Starting past that many never repeats a sequence number, so never a page
    // generation (the AES-GCM nonce of sealed pages). An open cannot tell a clean close from a
    // crash that lost every program since (no block then looks changed), so the gap is taken on
    // every open; u64 has room for it.
    let lost_at_most = 2 * layout.slots() + logical_pages + 64;
    engine.next_seq = max_seq + lost_at_most + 1;
    engine.counters = Counters::from_array(checkpoint.counters);
    engine.checkpoint_blocks = held;
    engine.area = area;
    report.checkpoint_id = id;
    report.clean = report.blocks_folded == 0;
    report.elapsed_ms = started.elapsed().as_secs_f64() * 1e3;
    let ms = |from: Instant, to: Instant| to.duration_since(from).as_secs_f64() * 1e3;
    tracing::debug!(
        checkpoint_ms = ms(started, checkpoint_read),
        survey_ms = ms(checkpoint_read, surveyed),
        map_load_ms = ms(surveyed, map_loaded),
        fold_ms = ms(map_loaded, folded),
        rebuild_ms = ms(folded, Instant::now()),
        "open phases"
    );
    tracing::info!(?report, "opened");
    Ok((shared, engine, report, fold_bounds))
}

/// Finds the newest checkpoint whose pages are all present and intact. Returns it, the blocks
/// holding it, and the highest sequence number any checkpoint page on flash can carry.
///
/// Page 0 of a checkpoint block (from the survey) names the checkpoint (`data_seq`) and the index
/// of the block's first page (`lpa`), so the blocks of each checkpoint are ordered without reading
/// anything else. A checkpoint's pages take consecutive sequence numbers (nothing else programs
/// while one is written), so a block's last `seq` is page 0's plus its page count less one.
fn find_checkpoint(
    layout: &Layout,
    devices: &[Arc<dyn Nand>],
    surveys: &[Survey],
    report: &mut RecoveryReport,
) -> Result<(Option<Checkpoint>, Vec<u32>, u64), FtlError> {
    // checkpoint id -> index of the block's first page -> (block, pages programmed)
    let mut found: BTreeMap<u64, BTreeMap<u32, (u32, u32)>> = BTreeMap::new();
    let mut max_seq = 0;
    for (g, s) in surveys.iter().enumerate() {
        let Survey::Used {
            written,
            first: Some(first),
            ..
        } = *s
        else {
            continue;
        };
        if first.kind != PageKind::Checkpoint {
            continue;
        }
        max_seq = max_seq.max(first.seq + u64::from(written) - 1);
        found
            .entry(first.data_seq)
            .or_default()
            .insert(first.lpa, (g as u32, written));
    }
    let shared = Shared {
        layout: *layout,
        devices: devices.to_vec(),
        map: Vec::new(),
        generations: Vec::new(),
    };
    let mut data = vec![0u8; layout.page_size];
    let mut oob = vec![0u8; layout.oob_size];
    let ppb = layout.pages_per_block;
    for (id, blocks) in found.iter().rev() {
        let mut stream = Vec::new();
        let mut expected = usize::MAX;
        let mut index = 0u32;
        'pages: while stream.len() < expected {
            let Some(&(gblock, written)) = blocks.get(&(index - index % ppb)) else {
                break;
            };
            let page = index % ppb;
            if page >= written {
                break;
            }
            report.pages_read += 1;
            let ppn = layout.ppn(gblock, page);
            let Ok(r) = read_verified(&shared, ppn, &mut data, &mut oob, 3) else {
                break 'pages;
            };
            if r.kind != PageKind::Checkpoint || r.data_seq != *id || r.lpa != index {
                break;
            }
            if index == 0 {
                match Checkpoint::peek_len(&data) {
                    Ok(len) => {
                        expected = len;
                        stream.reserve_exact(len.next_multiple_of(layout.page_size));
                    }
                    Err(_) => break,
                }
            }
            stream.extend_from_slice(&data);
            index += 1;
        }
        if stream.len() < expected {
            tracing::warn!(id, "checkpoint incomplete; trying an older one");
            continue;
        }
        match Checkpoint::decode(&stream) {
            Ok(cp) if cp.id == *id => {
                let held = blocks.values().map(|&(g, _)| g).collect();
                return Ok((Some(cp), held, max_seq));
            }
            Ok(_) => tracing::warn!(id, "checkpoint id mismatch; trying an older one"),
            Err(e) => tracing::warn!(id, error = %e, "checkpoint unreadable; trying an older one"),
        }
    }
    Ok((None, Vec::new(), max_seq))
}
