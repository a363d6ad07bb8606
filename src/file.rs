// SPDX-License-Identifier: GPL-2.0
//! read, write and fallocate: data moves straight between user memory and
//! pmem, no page cache. Writes use non-temporal (cache-flushing) copies, so a
//! write is durable once the fence at its fsync/fdatasync (or O_DSYNC) runs.

use crate::alloc::GROUP;
use crate::format::{BLOCK_SHIFT, BLOCK_SIZE};
use crate::inode;
use crate::super_::FsInfo;
use crate::sys::vfs::{
    Fiemap, Inode, IovIter, Kiocb, FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE, FALLOC_FL_ZERO_RANGE,
    FIEMAP_EXTENT_LAST,
};
use kernel::error::{code::*, Result};
use kernel::prelude::*;

const BS: u64 = BLOCK_SIZE as u64;
/// Blocks one copy of read(2) or write(2) may cover (1 MiB).
const RUN_MAX: u64 = 256;
/// The size of a first write at offset 0 that starts a file at the head of
/// a free 2 MiB group (`inode::alloc_data`).
const STREAM_MIN: u64 = 256 << 10;

/// Blocks a copy of `want` bytes from `inb` into its first block touches,
/// at most [`RUN_MAX`].
fn blocks_for(inb: u64, want: u64) -> u64 {
    core::cmp::min(
        RUN_MAX,
        (inb + core::cmp::min(want, RUN_MAX * BS)).div_ceil(BS),
    )
}

pub(crate) fn read(i: &Inode, k: &mut Kiocb, to: &mut IovIter) -> Result<usize> {
    let fs = i.fs();
    // Shared i_rwsem: a racing truncate cannot free (and reuse) a block
    // while we copy from it.
    let _g = i.rwsem().read();
    let size = i.size();
    let mut pos = k.pos();
    let mut done = 0usize;
    while to.count() > 0 && pos < size {
        let inb = pos % BS;
        let lblk = pos >> BLOCK_SHIFT;
        let want = core::cmp::min(size - pos, to.count() as u64);
        let b = inode::get_block(i, lblk)?;
        // A run of physically contiguous blocks is one copy (up to 1 MiB).
        let run = if b != 0 {
            inode::contiguous(i, lblk, b, blocks_for(inb, want))?
        } else {
            1
        };
        let n = core::cmp::min(run * BS - inb, want) as usize;
        let got = if b == 0 {
            to.zero(n)
        } else {
            fs.pmem.copy_to_iter(FsInfo::block_off(b) + inb, n, to)?
        };
        pos += got as u64;
        done += got;
        if got < n {
            if done == 0 {
                return Err(EFAULT);
            }
            break;
        }
    }
    k.set_pos(pos);
    Ok(done)
}

pub(crate) fn write(i: &Inode, k: &mut Kiocb, from: &mut IovIter) -> Result<usize> {
    let fs = i.fs();
    let _g = i.rwsem().write();
    let count = k.write_checks(from)?;
    if count == 0 {
        return Ok(0);
    }
    k.write_prepare()?;
    let mut pos = k.pos();
    if pos > i.size() {
        inode::zero_tail(i, i.size())?;
    }
    let end = pos + count as u64;
    let mut done = 0usize;
    let mut err = None;
    while pos < end {
        let inb = pos % BS;
        let lblk = pos >> BLOCK_SHIFT;
        // Lockless first: i_rwsem (held exclusive) keeps truncate and punch
        // out, so a block found stays the file's; a hole may be filled by a
        // fault meanwhile, which get_or_alloc_block sorts out under map_lock.
        let mut b = inode::get_block(i, lblk)?;
        if b == 0 {
            if lblk % GROUP == 0 && (lblk >= GROUP || end >= (lblk + GROUP) << BLOCK_SHIFT) {
                // A write that fills a whole aligned 2 MiB, or a file past
                // its first 2 MiB growing into the next: allocate the whole
                // extent (if all of it is holes), so mappings of it can use
                // a PMD.
                if let Err(e) = inode::alloc_extent(i, lblk) {
                    err = Some(e);
                    break;
                }
            }
            // A first write of 256 KiB or more at offset 0 starts the file
            // at the head of a free 2 MiB group, reserved for it: written
            // on in order, its first 2 MiB become one extent too.
            let stream = lblk == 0 && end >= STREAM_MIN;
            b = match inode::get_or_alloc_block(i, lblk, stream) {
                Ok((b, _)) => b,
                Err(e) => {
                    err = Some(e);
                    break;
                }
            };
        }
        // Extend over the physically contiguous blocks that follow, so one
        // copy covers a run (up to 1 MiB) instead of one block.
        let want = end - pos;
        let run = inode::contiguous(i, lblk, b, blocks_for(inb, want))?;
        let n = core::cmp::min(run * BS - inb, want) as usize;
        let got = fs
            .pmem
            .copy_from_iter_flushcache(FsInfo::block_off(b) + inb, n, from)?;
        pos += got as u64;
        done += got;
        if got < n {
            if got == 0 && done == 0 {
                err = Some(EFAULT);
            }
            break;
        }
    }
    if pos > i.size() {
        i.set_size(pos);
    }
    inode::write_inode(i)?;
    k.set_pos(pos);
    match err {
        Some(e) if done == 0 => Err(e),
        _ => Ok(done),
    }
}

pub(crate) fn fallocate(i: &Inode, mode: i32, off: u64, len: u64) -> Result {
    let _g = i.rwsem().write();
    let end = off.checked_add(len).ok_or(EFBIG)?;
    match mode {
        0 | FALLOC_FL_KEEP_SIZE => allocate(i, mode == 0, off, end),
        m if m == FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE => inode::punch_hole(i, off, len),
        // The range reads as zeros and has blocks: free what is inside the
        // file (partial blocks are zeroed in place), then allocate, as
        // preallocation does. New blocks are zeroed before they are
        // mapped. Not one transaction, as in ext4: a crash in between
        // leaves a hole, which reads as zeros too.
        m if m & !FALLOC_FL_KEEP_SIZE == FALLOC_FL_ZERO_RANGE => {
            inode::punch_hole(i, off, len)?;
            allocate(i, m & FALLOC_FL_KEEP_SIZE == 0, off, end)
        }
        _ => Err(crate::sys::eopnotsupp()),
    }
}

/// Give `off..end` (bytes, `end > off`) blocks; `grow`: and make the file
/// at least `end` long. The caller holds the inode's rwsem for writing.
fn allocate(i: &Inode, grow: bool, off: u64, end: u64) -> Result {
    let last = (end - 1) >> BLOCK_SHIFT;
    let mut l = off >> BLOCK_SHIFT;
    while l <= last {
        // Whole aligned 2 MiB ranges get whole extents (PMD-mappable).
        if l % GROUP == 0 && l + GROUP - 1 <= last && inode::alloc_extent(i, l)?.is_some() {
            l += GROUP;
            continue;
        }
        inode::get_or_alloc_block(i, l, false)?;
        l += 1;
    }
    if grow && end > i.size() {
        inode::zero_tail(i, i.size())?;
        i.set_size(end);
    }
    i.touch_ctime();
    inode::write_inode(i)
}

/// FS_IOC_FIEMAP: the allocated blocks of `start..start+len` (bytes) as
/// extents of physically contiguous blocks. Physical offsets are bytes from
/// the start of the file system's block device, as ext4 and xfs report
/// them (a block's offset in pmem is its offset in the device: the whole
/// device is the file system). Holes are gaps between extents. The last
/// extent is flagged FIEMAP_EXTENT_LAST when no block of the file lies
/// beyond it (blocks past EOF from fallocate KEEP_SIZE count).
///
/// Shared i_rwsem: truncate and hole punch, the only frees, hold it
/// exclusive, so no block or indirect block of the map is freed while it is
/// walked. Faults can still allocate (under map_lock, publishing each
/// pointer with one atomic store); the walk sees each new block or not.
/// Extents are collected first and reported after the walk, so the copies
/// to user memory (which may fault on a mapping of this very file) run with
/// no ferrofs lock held.
pub(crate) fn fiemap(i: &Inode, start: u64, len: u64, out: &mut Fiemap) -> Result {
    if len == 0 {
        return Ok(());
    }
    let max = (crate::format::MAX_FILE_BLOCKS << BLOCK_SHIFT) - 1;
    if start > max {
        return Ok(());
    }
    let first = start >> BLOCK_SHIFT;
    let last = core::cmp::min(start.saturating_add(len - 1), max) >> BLOCK_SHIFT;
    let mut from = first;
    loop {
        // (logical block, physical byte offset, blocks)
        let mut ext: KVec<(u64, u64, u64)> = KVec::new();
        let mut more = false;
        {
            let _g = i.rwsem().read();
            inode::for_each_block(i, from, last, &mut |l, b| {
                let phys = FsInfo::block_off(b);
                if let Some(e) = ext.last_mut() {
                    if e.0 + e.2 == l && e.1 + (e.2 << BLOCK_SHIFT) == phys {
                        e.2 += 1;
                        return Ok(true);
                    }
                }
                if ext.len() == FIEMAP_BATCH {
                    more = true;
                    return Ok(false);
                }
                ext.push((l, phys, 1), GFP_KERNEL).map_err(|_| ENOMEM)?;
                Ok(true)
            })?;
        }
        let Some(&(l, _, n)) = ext.last() else {
            return Ok(());
        };
        // Is anything allocated after the final extent?
        let after = l + n;
        let beyond = if more {
            true
        } else {
            let _g = i.rwsem().read();
            let mut found = false;
            if after < crate::format::MAX_FILE_BLOCKS {
                inode::for_each_block(
                    i,
                    after,
                    crate::format::MAX_FILE_BLOCKS - 1,
                    &mut |_, _| {
                        found = true;
                        Ok(false)
                    },
                )?;
            }
            found
        };
        let count = ext.len();
        for (k, &(l, p, n)) in ext.iter().enumerate() {
            let flags = if k + 1 == count && !beyond {
                FIEMAP_EXTENT_LAST
            } else {
                0
            };
            if out.fill(l << BLOCK_SHIFT, p, n << BLOCK_SHIFT, flags)? {
                return Ok(());
            }
        }
        if !more {
            return Ok(());
        }
        // The batch filled up inside the walk: go on after its last extent.
        from = after;
    }
}

/// Extents collected per walk before they are copied out.
const FIEMAP_BATCH: usize = 256;
