// SPDX-License-Identifier: GPL-2.0
//! Block and inode allocation.
//!
//! The block bitmap in pmem is the truth (bit i set: block i in use); the
//! allocator keeps only hints and free counts in memory, rebuilt at mount.
//! Callers hold `FsInfo::alloc` for one call, inside a journal transaction
//! (`Tx::alloc`): every bitmap and inode-table store is logged, bitmap words
//! with their own bits only (`Tx::write_bits`).
//!
//! Frees are pending until their transaction commits: a freed block or
//! inode slot is clear on the medium at once, but it is listed in
//! `pending` with the freeing transaction's tag, allocation passes over it,
//! and the free counts (and group counts) take it in only when
//! [`Allocator::release`] runs after the commit. So no other transaction can
//! take (and overwrite) what a crash may yet give back to its old owner by
//! rolling the free back, and unrelated allocations do not wait for the
//! freeing transaction to commit.
//!
//! Huge extents: the data area is seen as groups of 512 blocks (2 MiB,
//! aligned in the device). `groups` holds each group's free count, rebuilt
//! at mount from the bitmap. A group wholly free can back one PMD mapping;
//! single blocks come from partly used groups first, and from a whole free
//! group only when no partly used one has room, so whole groups stay whole
//! as the file system ages (WineFS's idea, with the bitmap as the only
//! on-media state: no format change).

use crate::format::{self, Geometry, Inode as DiskInode, Pod};
use crate::journal::Tx;
use crate::sys::pmem::Pmem;
use crate::sys::stats::Counter;
use kernel::error::{code::*, Result};
use kernel::prelude::*;

pub(crate) struct Allocator {
    free_blocks: u64,
    free_inodes: u64,
    next_block: u64,
    next_ino: u32,
    /// Free blocks per group of [`GROUP`] blocks (a group not wholly inside
    /// the data area counts its blocks outside it as used).
    groups: KVec<u16>,
    /// Where the search for a whole free group starts.
    next_group: usize,
    /// Groups whose first block started a sequentially written file (see
    /// [`Allocator::alloc_stream`]), most recent last; `u64::MAX` is empty.
    /// Single blocks for anything else come from them only when no other
    /// partly used group has room, so the file can grow into the rest of
    /// the group and its first 2 MiB can be mapped with one PMD. An entry
    /// lapses when the group fills or when newer streams push it out.
    reserved: [u64; RESERVED],
    /// Blocks and inode slots freed by transactions not yet committed (see
    /// the module comment), unordered: few at a time, one transaction's
    /// frees are bounded by its journal area.
    pending: KVec<Pending>,
    /// Every pending block lies in bitmap words `pend_lo..=pend_hi` (empty:
    /// lo > hi).
    pend_lo: u64,
    pend_hi: u64,
}

/// Frees not yet committed, of one transaction: of the blocks of bitmap
/// word `what` whose bits are set in `mask` (a truncate frees in order, so
/// one entry takes up to 64 of its frees), or of inode slot
/// `what & !PENDING_INODE` when that bit is set.
#[derive(Clone, Copy)]
struct Pending {
    tag: u64,
    what: u64,
    mask: u64,
}

const PENDING_INODE: u64 = 1 << 63;

/// Test only: a traced mount with `trace_tx_delay` set takes the lowest
/// free block and slot ([`crate::sys::trace::Trace::low_first`]).
fn low_first(tx: &Tx<'_>) -> bool {
    tx.pmem().trace().is_some_and(|t| t.low_first())
}

/// How many stream groups are kept reserved at once.
const RESERVED: usize = 16;

/// Blocks per huge extent (2 MiB).
pub(crate) const GROUP: u64 = 512;
// A bitmap word's blocks lie in one group (`Allocator::release`).
const _: () = assert!(GROUP % 64 == 0);
const GROUP_WORDS: u64 = GROUP / 64;

impl Allocator {
    /// Count free blocks and inodes. Bits past the end are set by mkfs.
    /// Used inodes with link count 0 (orphans: unlinked while open, then a
    /// crash) go to `orphans`, for mount to free.
    pub(crate) fn scan(pmem: &Pmem, g: &Geometry, orphans: &mut KVec<u32>) -> Result<Allocator> {
        let bitmap = g.bitmap_start << format::BLOCK_SHIFT;
        let words = g.blocks_count.div_ceil(64);
        let mut used = 0u64;
        for w in 0..words {
            let mut v = pmem.read_u64(bitmap + w * 8)?;
            if w == words - 1 && g.blocks_count % 64 != 0 {
                v &= (1u64 << (g.blocks_count % 64)) - 1;
            }
            used += v.count_ones() as u64;
        }
        let mut free_inodes = 0u64;
        for ino in 1..=g.inodes_count {
            let mode = pmem.read_u32(inode_off(g, ino))? & 0xffff;
            if mode == 0 {
                free_inodes += 1;
            } else if ino != format::ROOT_INO {
                let d: DiskInode = pmem.read_pod(inode_off(g, ino))?;
                if d.nlink.get() == 0 {
                    orphans.push(ino, GFP_KERNEL)?;
                }
            }
        }
        let ngroups = g.blocks_count.div_ceil(GROUP) as usize;
        let mut groups = KVec::with_capacity(ngroups, GFP_KERNEL)?;
        for gi in 0..ngroups as u64 {
            let mut free = 0u16;
            for w in gi * GROUP_WORDS..(gi + 1) * GROUP_WORDS {
                if w >= words {
                    break;
                }
                let mut v = pmem.read_u64(bitmap + w * 8)?;
                if w == words - 1 && g.blocks_count % 64 != 0 {
                    v |= !((1u64 << (g.blocks_count % 64)) - 1);
                }
                free += v.count_zeros() as u16;
            }
            groups.push(free, GFP_KERNEL)?;
        }
        Ok(Allocator {
            free_blocks: g.blocks_count - used,
            free_inodes,
            next_block: g.data_start,
            next_ino: format::ROOT_INO + 1,
            groups,
            next_group: 0,
            reserved: [u64::MAX; RESERVED],
            pending: KVec::new(),
            pend_lo: u64::MAX,
            pend_hi: 0,
        })
    }

    pub(crate) fn free_blocks(&self) -> u64 {
        self.free_blocks
    }
    pub(crate) fn free_inodes(&self) -> u64 {
        self.free_inodes
    }

    /// Allocate one block: set its bit (flushed). The caller initialises and
    /// flushes the block before publishing a pointer to it.
    pub(crate) fn alloc_block(&mut self, tx: &mut Tx<'_>, g: &Geometry) -> Result<u64> {
        if self.free_blocks == 0 {
            return Err(ENOSPC);
        }
        if tx.freed {
            // Undo would relink the freed block after it was overwritten.
            pr_err!("internal error: allocation after a free in one transaction\n");
            return Err(EIO);
        }
        let pmem = tx.pmem();
        let bitmap = g.bitmap_start << format::BLOCK_SHIFT;
        let words = g.blocks_count.div_ceil(64);
        let next = if low_first(tx) {
            g.data_start
        } else {
            self.next_block
        };
        let start = next.clamp(g.data_start, g.blocks_count - 1) / 64;
        // First pass: partly used groups not reserved for a stream; second:
        // partly used ones; third: any group.
        for i in 0..3 * words {
            let w = (start + i % words) % words;
            let gi = (w / GROUP_WORDS) as usize;
            let whole = self.groups.get(gi).copied() == Some(GROUP as u16);
            if (i < 2 * words && whole) || (i < words && self.is_reserved(gi as u64)) {
                continue;
            }
            let off = bitmap + w * 8;
            let on = pmem.read_u64(off)?;
            let v = on | self.pending_mask(w);
            if v != on && on != u64::MAX {
                tx.count(Counter::PendingSkips);
            }
            if v == u64::MAX {
                continue;
            }
            let bit = (!v).trailing_zeros() as u64;
            let b = w * 64 + bit;
            if b >= g.blocks_count || b < g.data_start {
                // Bits below data_start or past the end are set by mkfs; a
                // clear one means a damaged bitmap. Never hand it out.
                tx.write_bits(off, 1 << bit, u64::MAX)?;
                continue;
            }
            tx.write_bits(off, 1 << bit, u64::MAX)?;
            self.free_blocks -= 1;
            self.group_add(b, -1);
            self.next_block = b + 1;
            return Ok(b);
        }
        Err(ENOSPC)
    }

    /// Allocate block `goal` if it is free (the block after the one that
    /// backs the previous page of a file, so that a file written in order
    /// lies in order), else any block as [`Allocator::alloc_block`] does.
    pub(crate) fn alloc_block_near(
        &mut self,
        tx: &mut Tx<'_>,
        g: &Geometry,
        goal: u64,
    ) -> Result<u64> {
        if goal >= g.data_start && goal < g.blocks_count && !tx.freed {
            let off = (g.bitmap_start << format::BLOCK_SHIFT) + (goal / 64) * 8;
            let v = tx.pmem().read_u64(off)?;
            let m = 1u64 << (goal % 64);
            let pending = v & m == 0 && self.block_pending(goal);
            if pending {
                tx.count(Counter::PendingSkips);
            }
            if v & m == 0 && !pending {
                tx.write_bits(off, m, u64::MAX)?;
                self.free_blocks -= 1;
                self.group_add(goal, -1);
                return Ok(goal);
            }
        }
        self.alloc_block(tx, g)
    }

    /// Allocate the first block of a wholly free group and reserve the rest
    /// of the group for the file that starts there (a large first write at
    /// offset 0: its later blocks follow with [`Allocator::alloc_block_near`],
    /// and its first 2 MiB become one aligned extent). Any block if no group
    /// is wholly free.
    pub(crate) fn alloc_stream(&mut self, tx: &mut Tx<'_>, g: &Geometry) -> Result<u64> {
        let Some((_, gi)) = self.whole_group(g, 0) else {
            return self.alloc_block(tx, g);
        };
        self.next_group = (gi + 1) % self.groups.len();
        self.reserved.copy_within(1.., 0);
        self.reserved[RESERVED - 1] = gi as u64;
        self.alloc_block_near(tx, g, gi as u64 * GROUP)
    }

    /// The first group that the free counts say is wholly free and that
    /// lies inside the data area, searching cyclically from `next_group`,
    /// skipping the first `skip`: (its distance from `next_group`, index).
    fn whole_group(&self, g: &Geometry, skip: usize) -> Option<(usize, usize)> {
        let n = self.groups.len();
        (skip..n)
            .map(|i| (i, (self.next_group + i) % n))
            .find(|&(_, gi)| {
                let first = gi as u64 * GROUP;
                self.groups[gi] == GROUP as u16
                    && first >= g.data_start
                    && first + GROUP <= g.blocks_count
            })
    }

    fn is_reserved(&self, gi: u64) -> bool {
        self.reserved.contains(&gi)
    }

    pub(crate) fn free_block(&mut self, tx: &mut Tx<'_>, g: &Geometry, b: u64) -> Result {
        let pmem = tx.pmem();
        if b < g.data_start || b >= g.blocks_count {
            kernel::pr_err!("freeing block {} outside the data area\n", b);
            return Err(EIO);
        }
        let off = (g.bitmap_start << format::BLOCK_SHIFT) + (b / 64) * 8;
        let v = pmem.read_u64(off)?;
        let m = 1u64 << (b % 64);
        if v & m == 0 {
            kernel::pr_err!("block {} freed twice\n", b);
            return Err(EIO);
        }
        let w = b / 64;
        let tag = tx.tag();
        let last = self.pending.len().checked_sub(1);
        let same = last.filter(|&i| self.pending[i].tag == tag && self.pending[i].what == w);
        if same.is_none() {
            // Room first: once the bit is clear the block must be listed.
            self.pending.reserve(1, GFP_KERNEL)?;
        }
        tx.write_bits(off, m, 0)?;
        tx.freed = true;
        match same {
            Some(i) => {
                self.pending[i].mask |= m;
                tx.pends = true;
            }
            None => self.pend(tx, w, m),
        }
        self.pend_lo = self.pend_lo.min(w);
        self.pend_hi = self.pend_hi.max(w);
        Ok(())
    }

    /// List a free of this transaction (room reserved by the caller).
    fn pend(&mut self, tx: &mut Tx<'_>, what: u64, mask: u64) {
        tx.pends = true;
        // Cannot fail: the caller reserved room.
        let _ = self.pending.push(
            Pending {
                tag: tx.tag(),
                what,
                mask,
            },
            GFP_KERNEL,
        );
    }

    /// The bits of bitmap word `w` whose blocks are pending frees.
    fn pending_mask(&self, w: u64) -> u64 {
        if w < self.pend_lo || w > self.pend_hi {
            return 0;
        }
        self.pending
            .iter()
            .filter(|p| p.what == w)
            .fold(0, |m, p| m | p.mask)
    }

    fn block_pending(&self, b: u64) -> bool {
        self.pending_mask(b / 64) & (1 << (b % 64)) != 0
    }

    fn inode_pending(&self, ino: u32) -> bool {
        let what = PENDING_INODE | ino as u64;
        self.pending.iter().any(|p| p.what == what)
    }

    /// The transaction of `tag` committed: its frees become free space.
    pub(crate) fn release(&mut self, tag: u64) {
        let (mut lo, mut hi) = (u64::MAX, 0);
        let mut kept = 0;
        for i in 0..self.pending.len() {
            let p = self.pending[i];
            if p.tag != tag {
                if p.what & PENDING_INODE == 0 {
                    lo = lo.min(p.what);
                    hi = hi.max(p.what);
                }
                self.pending[kept] = p;
                kept += 1;
            } else if p.what & PENDING_INODE != 0 {
                self.free_inodes += 1;
            } else {
                // One word's blocks lie in one group (GROUP is a multiple
                // of 64).
                let first = p.what * 64;
                self.free_blocks += p.mask.count_ones() as u64;
                self.group_add(first, p.mask.count_ones() as i32);
                let b = first + p.mask.trailing_zeros() as u64;
                if b < self.next_block {
                    self.next_block = b;
                }
            }
        }
        // SAFETY: `kept <= len`, the first `kept` entries were just written,
        // and `Pending` is `Copy`: the entries cut off need no drop.
        unsafe { self.pending.set_len(kept) };
        self.pend_lo = lo;
        self.pend_hi = hi;
    }

    /// The tag of a transaction other than `tag` with frees pending, for
    /// which `running` holds (one that is still in flight).
    pub(crate) fn pending_other(&self, tag: u64, running: impl Fn(u64) -> bool) -> Option<u64> {
        self.pending
            .iter()
            .map(|p| p.tag)
            .find(|&t| t != tag && running(t))
    }

    fn group_add(&mut self, b: u64, d: i32) {
        let gi = b / GROUP;
        if let Some(c) = self.groups.get_mut(gi as usize) {
            *c = (*c as i32 + d).clamp(0, GROUP as i32) as u16;
            if *c == 0 {
                // A full group needs no reservation.
                for r in self.reserved.iter_mut() {
                    if *r == gi {
                        *r = u64::MAX;
                    }
                }
            }
        }
    }

    /// Allocate a whole free group of [`GROUP`] blocks, aligned: its first
    /// block, or None if no group is wholly free. Sets its 8 bitmap words
    /// with one logged store. The caller zeroes the blocks before it
    /// publishes a pointer to them.
    pub(crate) fn alloc_group(&mut self, tx: &mut Tx<'_>, g: &Geometry) -> Result<Option<u64>> {
        if tx.freed {
            pr_err!("internal error: allocation after a free in one transaction\n");
            return Err(EIO);
        }
        let n = self.groups.len();
        let pmem = tx.pmem();
        let bitmap = g.bitmap_start << format::BLOCK_SHIFT;
        let mut skip = 0;
        while let Some((i, gi)) = self.whole_group(g, skip) {
            skip = i + 1;
            let first = gi as u64 * GROUP;
            let off = bitmap + gi as u64 * GROUP_WORDS * 8;
            // The in-memory count says free; the bitmap is the truth.
            let mut words = [0u8; (GROUP_WORDS * 8) as usize];
            pmem.read(off, &mut words)?;
            if words.iter().any(|&x| x != 0) {
                pr_err!("block group {}: free count disagrees with the bitmap\n", gi);
                self.groups[gi] = 0;
                continue;
            }
            tx.write(off, &[0xffu8; (GROUP_WORDS * 8) as usize])?;
            self.groups[gi] = 0;
            self.free_blocks -= GROUP;
            self.next_group = (gi + 1) % n;
            return Ok(Some(first));
        }
        Ok(None)
    }

    /// Find a free inode slot and write `init` into it (flushed): the slot is
    /// taken as soon as its mode is nonzero.
    pub(crate) fn alloc_inode(
        &mut self,
        tx: &mut Tx<'_>,
        g: &Geometry,
        init: &mut DiskInode,
    ) -> Result<u32> {
        if self.free_inodes == 0 {
            return Err(ENOSPC);
        }
        let pmem = tx.pmem();
        let n = g.inodes_count;
        let next = if low_first(tx) { 1 } else { self.next_ino };
        for i in 0..n {
            let ino = (next - 1 + i) % n + 1;
            let off = inode_off(g, ino);
            if pmem.read_u32(off)? & 0xffff != 0 {
                continue;
            }
            if self.inode_pending(ino) {
                tx.count(Counter::PendingSkips);
                continue;
            }
            init.update_checksum(ino);
            tx.write(off, init.as_bytes())?;
            self.free_inodes -= 1;
            self.next_ino = ino % n + 1;
            return Ok(ino);
        }
        Err(ENOSPC)
    }

    pub(crate) fn free_inode(&mut self, tx: &mut Tx<'_>, g: &Geometry, ino: u32) -> Result {
        let off = inode_off(g, ino);
        // Room first: once the slot is zero it must be listed.
        self.pending.reserve(1, GFP_KERNEL)?;
        tx.zero(off, format::INODE_SIZE)?;
        self.pend(tx, PENDING_INODE | ino as u64, 0);
        Ok(())
    }
}

/// Byte offset of inode `ino`'s slot.
pub(crate) fn inode_off(g: &Geometry, ino: u32) -> u64 {
    (g.itable_start << format::BLOCK_SHIFT) + (ino as u64 - 1) * format::INODE_SIZE as u64
}

/// Whether `ino` names a slot of the table.
pub(crate) fn ino_valid(g: &Geometry, ino: u32) -> bool {
    ino >= 1 && ino <= g.inodes_count
}
