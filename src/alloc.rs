// SPDX-License-Identifier: GPL-2.0
//! Block and inode allocation.
//!
//! The block bitmap in pmem is the truth (bit i set: block i in use); the
//! allocator keeps only hints and free counts in memory, rebuilt at mount.
//! Every call runs inside a journal transaction (`Tx::alloc`): every bitmap
//! and inode-table store is logged, bitmap words with their own bits only
//! (`Tx::write_bits`).
//!
//! Shards: the groups of the data area (and the inode table) are split
//! into [`Allocators::shards`] contiguous ranges, one [`Allocator`] with its
//! own mutex each, about one per CPU (NOVA and WineFS keep per-CPU free
//! lists the same way). An allocation takes the shard of the CPU it runs
//! on, and the others in turn, one at a time, only when that one has no
//! room (counted in `alloc_remote`); a free goes to the shard that owns the
//! block or slot. So threads on different CPUs allocate under different
//! locks, from different bitmap words, and their files do not interleave
//! block by block. No shard lock is held while another is taken. The shards
//! are in memory only: the on-media format does not change.
//!
//! Frees are pending until their transaction commits: a freed block or
//! inode slot is clear on the medium at once, but it is listed in
//! `pending` with the freeing transaction's tag, allocation passes over it,
//! and the free counts (and group counts) take it in only when
//! [`Allocators::release`] runs after the commit. So no other transaction can
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
use crate::sys::locks::{Guard, Mutex};
use crate::sys::pmem::Pmem;
use crate::sys::stats::Counter;
use kernel::error::{code::*, Result};
use kernel::prelude::*;

pub(crate) struct Allocator {
    /// This shard's index in [`Allocators::shards`].
    idx: usize,
    /// What it owns: bitmap words `w_lo..w_hi` (the blocks of groups
    /// `g_lo..`, as far as the device goes) and inode slots
    /// `ino_lo..ino_hi`.
    w_lo: u64,
    w_hi: u64,
    g_lo: u64,
    ino_lo: u64,
    ino_hi: u64,
    free_blocks: u64,
    free_inodes: u64,
    next_block: u64,
    next_ino: u64,
    /// Free blocks per group of [`GROUP`] blocks of this shard, from group
    /// `g_lo` (a group not wholly inside the data area counts its blocks
    /// outside it as used).
    groups: KVec<u16>,
    /// Where the search for a whole free group starts (an index of
    /// `groups`).
    next_group: usize,
    /// Groups whose first block started a sequentially written file (see
    /// [`Allocators::alloc_stream`]), most recent last; `u64::MAX` is empty.
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
// A bitmap word's blocks lie in one group (`Allocator::release`), and so in
// one shard (shards are whole groups).
const _: () = assert!(GROUP % 64 == 0);
const GROUP_WORDS: u64 = GROUP / 64;

/// What a mount-time scan of the bitmap and inode table finds, before it
/// is split into shards.
struct Scan {
    groups: KVec<u16>,
    /// Free inode slots per shard.
    free_inodes: KVec<u64>,
}

/// At least this many groups (8 MiB) per shard: a file system under 16 MiB
/// is one shard, as before shards; the 16 MiB one of the crash checks has
/// two, so its two-thread workload allocates in both.
const MIN_SHARD_GROUPS: u64 = 4;
/// At most this many shards (a transaction notes its shards in a `u64`).
const MAX_SHARDS: usize = 16;

/// `x % n`, 0 when `n` is 0 (no division-by-zero panic path).
fn wrap(x: usize, n: usize) -> usize {
    x.checked_rem(n).unwrap_or(0)
}

fn wrap64(x: u64, n: u64) -> u64 {
    x.checked_rem(n).unwrap_or(0)
}

/// Shard `k` of `n`: its part `lo..hi` of `total` groups or inode slots.
fn split(total: u64, k: usize, n: usize) -> (u64, u64) {
    // The first `total % n` shards get one more. No overflow: both ends
    // are at most `total` (k < n).
    let n = n.max(1) as u64;
    let (base, rem) = (total / n, total % n);
    let at = |k: u64| base * k + k.min(rem);
    (at(k as u64), at(k as u64 + 1))
}

/// The shards of a mount (see the module comment).
pub(crate) struct Allocators {
    shards: KVec<Shard>,
}

/// One shard, padded to whole cache lines: two CPUs allocating in two
/// shards touch no line in common. (The mutex itself has its own padded
/// allocation, `locks::Mutex`.)
#[repr(align(64))]
struct Shard {
    a: Mutex<Allocator>,
    /// Copies of the allocator's ranges, which never change: to find a
    /// block's or slot's shard without taking locks.
    w_lo: u64,
    w_hi: u64,
    ino_lo: u64,
    ino_hi: u64,
}

impl Shard {
    fn owns_block(&self, b: u64) -> bool {
        b / 64 >= self.w_lo && b / 64 < self.w_hi
    }
}

impl Allocators {
    /// Count free blocks and inodes, and split them into `cpus` shards
    /// (fewer on a small device). Bits past the end are set by mkfs. Used
    /// inodes with link count 0 (orphans: unlinked while open, then a crash)
    /// go to `orphans`, for mount to free.
    pub(crate) fn scan(
        pmem: &Pmem,
        g: &Geometry,
        cpus: usize,
        orphans: &mut KVec<u32>,
    ) -> Result<Allocators> {
        let bitmap = g.bitmap_start << format::BLOCK_SHIFT;
        let words = g.blocks_count.div_ceil(64);
        let ngroups = g.blocks_count.div_ceil(GROUP);
        let n = cpus
            .clamp(1, MAX_SHARDS)
            .min(core::cmp::max(1, ngroups / MIN_SHARD_GROUPS) as usize);
        let mut scan = Scan {
            groups: KVec::with_capacity(ngroups as usize, GFP_KERNEL)?,
            free_inodes: KVec::with_capacity(n, GFP_KERNEL)?,
        };
        for gi in 0..ngroups {
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
            scan.groups.push(free, GFP_KERNEL)?;
        }
        let ninodes = g.inodes_count as u64;
        for k in 0..n {
            let (lo, hi) = split(ninodes, k, n);
            let mut free = 0u64;
            // Slots are 1-based: shard k has inodes lo+1..=hi.
            for ino in lo + 1..=hi {
                let ino = ino as u32;
                let mode = pmem.read_u32(inode_off(g, ino))? & 0xffff;
                if mode == 0 {
                    free += 1;
                } else if ino != format::ROOT_INO {
                    let d: DiskInode = pmem.read_pod(inode_off(g, ino))?;
                    if d.nlink.get() == 0 {
                        orphans.push(ino, GFP_KERNEL)?;
                    }
                }
            }
            scan.free_inodes.push(free, GFP_KERNEL)?;
        }
        let mut shards = KVec::with_capacity(n, GFP_KERNEL)?;
        for k in 0..n {
            let (g_lo, g_hi) = split(ngroups, k, n);
            let (i_lo, i_hi) = split(ninodes, k, n);
            let mut groups = KVec::with_capacity((g_hi - g_lo) as usize, GFP_KERNEL)?;
            let mut free_blocks = 0u64;
            for gi in g_lo..g_hi {
                let c = scan.groups[gi as usize];
                free_blocks += c as u64;
                groups.push(c, GFP_KERNEL)?;
            }
            let w_lo = g_lo * GROUP_WORDS;
            let a = Allocator {
                idx: k,
                w_lo,
                w_hi: (g_hi * GROUP_WORDS).min(words),
                g_lo,
                ino_lo: i_lo + 1,
                ino_hi: i_hi + 1,
                free_blocks,
                free_inodes: scan.free_inodes[k],
                next_block: (w_lo * 64).max(g.data_start),
                next_ino: (i_lo + 1).max(format::ROOT_INO as u64 + 1),
                groups,
                next_group: 0,
                reserved: [u64::MAX; RESERVED],
                pending: KVec::new(),
                pend_lo: u64::MAX,
                pend_hi: 0,
            };
            let (w_lo, w_hi, ino_lo, ino_hi) = (a.w_lo, a.w_hi, a.ino_lo, a.ino_hi);
            shards.push(
                Shard {
                    a: Mutex::new_with(a, crate::sys::ferrofs_init_alloc_mutex)?,
                    w_lo,
                    w_hi,
                    ino_lo,
                    ino_hi,
                },
                GFP_KERNEL,
            )?;
        }
        Ok(Allocators { shards })
    }

    /// How many shards.
    pub(crate) fn shards(&self) -> usize {
        self.shards.len()
    }

    pub(crate) fn free_blocks(&self) -> u64 {
        self.shards.iter().map(|s| s.a.lock().free_blocks).sum()
    }
    pub(crate) fn free_inodes(&self) -> u64 {
        self.shards.iter().map(|s| s.a.lock().free_inodes).sum()
    }

    /// The shard an allocation tries first: the CPU's (the lowest one in
    /// the test mode that takes the lowest free block, so that two threads
    /// meet each other's pending frees).
    fn home(&self, tx: &Tx<'_>) -> usize {
        if low_first(tx) {
            0
        } else {
            wrap(crate::sys::this_cpu(), self.shards.len())
        }
    }

    /// Run `f` on the home shard, then on the others in turn while it
    /// finds no room (`Ok(None)`), one lock at a time.
    fn each<R>(
        &self,
        tx: &mut Tx<'_>,
        mut f: impl FnMut(&mut Allocator, &mut Tx<'_>) -> Result<Option<R>>,
    ) -> Result<Option<R>> {
        let n = self.shards.len();
        let home = self.home(tx);
        for i in 0..n {
            let k = wrap(home + i, n);
            let r = f(&mut self.shards[k].a.lock(), tx)?;
            if r.is_some() {
                if i > 0 {
                    tx.count(Counter::AllocRemote);
                }
                return Ok(r);
            }
        }
        Ok(None)
    }

    /// The shard that owns block `b`.
    fn owner_of_block(&self, b: u64) -> Option<usize> {
        self.shards.iter().position(|s| s.owns_block(b))
    }

    /// The shard that owns inode slot `ino`.
    fn owner_of_inode(&self, ino: u32) -> Option<usize> {
        let ino = ino as u64;
        self.shards
            .iter()
            .position(|s| ino >= s.ino_lo && ino < s.ino_hi)
    }

    /// Allocate one block: set its bit (logged). The caller initialises and
    /// flushes the block before publishing a pointer to it.
    pub(crate) fn alloc_block(&self, tx: &mut Tx<'_>, g: &Geometry) -> Result<u64> {
        self.each(tx, |a, tx| a.alloc_block(tx, g))?.ok_or(ENOSPC)
    }

    /// Allocate block `goal` if it is free (the block after the one that
    /// backs the previous page of a file, so that a file written in order
    /// lies in order), else any block as [`Allocators::alloc_block`] does.
    pub(crate) fn alloc_block_near(&self, tx: &mut Tx<'_>, g: &Geometry, goal: u64) -> Result<u64> {
        if goal >= g.data_start && goal < g.blocks_count {
            if let Some(k) = self.owner_of_block(goal) {
                if let Some(b) = self.shards[k].a.lock().alloc_goal(tx, g, goal)? {
                    return Ok(b);
                }
            }
        }
        self.alloc_block(tx, g)
    }

    /// Allocate the first block of a wholly free group and reserve the rest
    /// of the group for the file that starts there (a large first write at
    /// offset 0: its later blocks follow with [`Allocators::alloc_block_near`],
    /// and its first 2 MiB become one aligned extent). Any block if no group
    /// is wholly free.
    pub(crate) fn alloc_stream(&self, tx: &mut Tx<'_>, g: &Geometry) -> Result<u64> {
        match self.each(tx, |a, tx| a.alloc_stream(tx, g))? {
            Some(b) => Ok(b),
            None => self.alloc_block(tx, g),
        }
    }

    /// Allocate a whole free group of [`GROUP`] blocks, aligned: its first
    /// block, or None if no group is wholly free. The caller zeroes the
    /// blocks before it publishes a pointer to them.
    pub(crate) fn alloc_group(&self, tx: &mut Tx<'_>, g: &Geometry) -> Result<Option<u64>> {
        self.each(tx, |a, tx| a.alloc_group(tx, g))
    }

    /// Find a free inode slot and write `init` into it (flushed): the slot is
    /// taken as soon as its mode is nonzero.
    pub(crate) fn alloc_inode(
        &self,
        tx: &mut Tx<'_>,
        g: &Geometry,
        init: &mut DiskInode,
    ) -> Result<u32> {
        self.each(tx, |a, tx| a.alloc_inode(tx, g, init))?
            .ok_or(ENOSPC)
    }

    pub(crate) fn free_block(&self, tx: &mut Tx<'_>, g: &Geometry, b: u64) -> Result {
        self.frees().free_block(tx, g, b)
    }

    pub(crate) fn free_inode(&self, tx: &mut Tx<'_>, g: &Geometry, ino: u32) -> Result {
        let Some(k) = self.owner_of_inode(ino) else {
            kernel::pr_err!("freeing inode {} outside the table\n", ino);
            return Err(EIO);
        };
        self.shards[k].a.lock().free_inode(tx, g, ino)
    }

    /// A freer for several frees in a row: it keeps the last block's shard
    /// locked while the next block is in the same one (a truncate frees
    /// runs of neighbours), and holds one shard at a time.
    pub(crate) fn frees(&self) -> Frees<'_> {
        Frees {
            allocs: self,
            held: None,
        }
    }

    /// The transaction of `tag` committed: its frees (in the shards of
    /// `shards`, a bit each) become free space.
    pub(crate) fn release(&self, tag: u64, shards: u64) {
        for (k, s) in self.shards.iter().enumerate() {
            if shards & (1 << k) != 0 {
                s.a.lock().release(tag);
            }
        }
    }

    /// The tag of a transaction other than `tag` with frees pending in any
    /// shard, for which `running` holds (one that is still in flight).
    pub(crate) fn pending_other(&self, tag: u64, running: impl Fn(u64) -> bool) -> Option<u64> {
        self.shards
            .iter()
            .find_map(|s| s.a.lock().pending_other(tag, &running))
    }
}

/// See [`Allocators::frees`].
pub(crate) struct Frees<'a> {
    allocs: &'a Allocators,
    held: Option<(usize, Guard<'a, Allocator>)>,
}

impl Frees<'_> {
    pub(crate) fn free_block(&mut self, tx: &mut Tx<'_>, g: &Geometry, b: u64) -> Result {
        let allocs = self.allocs;
        let hit = matches!(&self.held, Some((k, _)) if allocs.shards[*k].owns_block(b));
        if !hit {
            // Let go of the one held before taking the next.
            self.held = None;
            let Some(k) = allocs.owner_of_block(b) else {
                kernel::pr_err!("freeing block {} outside the data area\n", b);
                return Err(EIO);
            };
            self.held = Some((k, allocs.shards[k].a.lock()));
        }
        match &mut self.held {
            Some((_, a)) => a.free_block(tx, g, b),
            None => Err(EIO),
        }
    }
}

impl Allocator {
    /// Allocate one block of this shard, or None if it has no room.
    fn alloc_block(&mut self, tx: &mut Tx<'_>, g: &Geometry) -> Result<Option<u64>> {
        if self.free_blocks == 0 || self.w_hi <= self.w_lo {
            return Ok(None);
        }
        if tx.freed {
            // Undo would relink the freed block after it was overwritten.
            pr_err!("internal error: allocation after a free in one transaction\n");
            return Err(EIO);
        }
        let n = self.w_hi - self.w_lo;
        let low = low_first(tx);
        let next = if low { g.data_start } else { self.next_block };
        let start = (next / 64).clamp(self.w_lo, self.w_hi - 1) - self.w_lo;
        // First pass: partly used groups not reserved for a stream.
        for i in 0..n {
            let w = self.w_lo + wrap64(start + i, n);
            let gi = w / GROUP_WORDS;
            if self.group_free(gi) == Some(GROUP as u16) || self.is_reserved(gi) {
                continue;
            }
            if let Some(b) = self.take_in_word(tx, g, w)? {
                return Ok(Some(b));
            }
        }
        // Then a whole group, the highest of the shard: streams and extents
        // take whole groups from the low end, so the group that single
        // blocks break open (the next partly used one, for the blocks that
        // follow) is away from them, and a stream's reserved group does not
        // get the indirect block of its own file. (On a fresh shard with no
        // metadata in it, no other group is partly used.)
        if !low {
            let top = (0..self.groups.len()).rev().find(|&li| {
                let gi = self.g_lo + li as u64;
                let first = gi * GROUP;
                self.groups[li] == GROUP as u16
                    && !self.is_reserved(gi)
                    && first >= g.data_start
                    && first + GROUP <= g.blocks_count
            });
            if let Some(li) = top {
                let w0 = (self.g_lo + li as u64) * GROUP_WORDS;
                for w in w0..(w0 + GROUP_WORDS).min(self.w_hi) {
                    if let Some(b) = self.take_in_word(tx, g, w)? {
                        return Ok(Some(b));
                    }
                }
            }
        }
        // Then partly used groups reserved for a stream; then any group.
        for i in 0..2 * n {
            let w = self.w_lo + wrap64(start + wrap64(i, n), n);
            let gi = w / GROUP_WORDS;
            if i < n && self.group_free(gi) == Some(GROUP as u16) {
                continue;
            }
            if let Some(b) = self.take_in_word(tx, g, w)? {
                return Ok(Some(b));
            }
        }
        Ok(None)
    }

    /// The lowest free block of bitmap word `w` (of this shard) that no
    /// transaction in flight freed, taken; None if there is none.
    fn take_in_word(&mut self, tx: &mut Tx<'_>, g: &Geometry, w: u64) -> Result<Option<u64>> {
        let off = (g.bitmap_start << format::BLOCK_SHIFT) + w * 8;
        let on = tx.pmem().read_u64(off)?;
        let v0 = on | self.pending_mask(w);
        if v0 != on && on != u64::MAX {
            tx.count(Counter::PendingSkips);
        }
        let mut v = v0;
        while v != u64::MAX {
            let bit = (!v).trailing_zeros() as u64;
            let b = w * 64 + bit;
            tx.write_bits(off, 1 << bit, u64::MAX)?;
            if b >= g.blocks_count || b < g.data_start {
                // Bits below data_start or past the end are set by mkfs; a
                // clear one means a damaged bitmap. Never hand it out (the
                // bit is set now).
                v |= 1 << bit;
                continue;
            }
            self.free_blocks -= 1;
            self.group_add(b, -1);
            self.next_block = b + 1;
            return Ok(Some(b));
        }
        Ok(None)
    }

    /// Block `goal` (of this shard) if it is free and not pending.
    fn alloc_goal(&mut self, tx: &mut Tx<'_>, g: &Geometry, goal: u64) -> Result<Option<u64>> {
        if tx.freed {
            return Ok(None);
        }
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
            return Ok(Some(goal));
        }
        Ok(None)
    }

    /// The first block of a wholly free group of this shard, the rest of the
    /// group reserved for the file it starts; None if the shard has none.
    fn alloc_stream(&mut self, tx: &mut Tx<'_>, g: &Geometry) -> Result<Option<u64>> {
        let Some((_, i)) = self.whole_group(g, 0) else {
            return Ok(None);
        };
        self.next_group = wrap(i + 1, self.groups.len());
        let gi = self.g_lo + i as u64;
        self.reserved.copy_within(1.., 0);
        self.reserved[RESERVED - 1] = gi;
        match self.alloc_goal(tx, g, gi * GROUP)? {
            Some(b) => Ok(Some(b)),
            None => self.alloc_block(tx, g),
        }
    }

    /// The first group that the free counts say is wholly free and that
    /// lies inside the data area, searching cyclically from `next_group`,
    /// skipping the first `skip`: (its distance from `next_group`, index in
    /// `groups`).
    fn whole_group(&self, g: &Geometry, skip: usize) -> Option<(usize, usize)> {
        let n = self.groups.len();
        (skip..n)
            .map(|i| (i, wrap(self.next_group + i, n)))
            .find(|&(_, i)| {
                let first = (self.g_lo + i as u64) * GROUP;
                self.groups[i] == GROUP as u16
                    && first >= g.data_start
                    && first + GROUP <= g.blocks_count
            })
    }

    /// Free count of group `gi` (an index of the device), if this shard
    /// has it.
    fn group_free(&self, gi: u64) -> Option<u16> {
        let i = gi.checked_sub(self.g_lo)?;
        self.groups.get(i as usize).copied()
    }

    fn is_reserved(&self, gi: u64) -> bool {
        self.reserved.contains(&gi)
    }

    fn free_block(&mut self, tx: &mut Tx<'_>, g: &Geometry, b: u64) -> Result {
        let pmem = tx.pmem();
        let w = b / 64;
        if b < g.data_start || b >= g.blocks_count || w < self.w_lo || w >= self.w_hi {
            kernel::pr_err!("freeing block {} outside the data area\n", b);
            return Err(EIO);
        }
        let off = (g.bitmap_start << format::BLOCK_SHIFT) + w * 8;
        let v = pmem.read_u64(off)?;
        let m = 1u64 << (b % 64);
        if v & m == 0 {
            kernel::pr_err!("block {} freed twice\n", b);
            return Err(EIO);
        }
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
            }
            None => self.pend(tx, w, m),
        }
        self.pend_lo = self.pend_lo.min(w);
        self.pend_hi = self.pend_hi.max(w);
        Ok(())
    }

    /// List a free of this transaction (room reserved by the caller).
    fn pend(&mut self, tx: &mut Tx<'_>, what: u64, mask: u64) {
        tx.pend_in(self.idx);
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

    /// The transaction of `tag` committed: its frees in this shard become
    /// free space.
    fn release(&mut self, tag: u64) {
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

    /// The tag of a transaction other than `tag` with frees pending here,
    /// for which `running` holds (one that is still in flight).
    fn pending_other(&self, tag: u64, running: &impl Fn(u64) -> bool) -> Option<u64> {
        self.pending
            .iter()
            .map(|p| p.tag)
            .find(|&t| t != tag && running(t))
    }

    fn group_add(&mut self, b: u64, d: i32) {
        let gi = b / GROUP;
        let Some(i) = gi.checked_sub(self.g_lo) else {
            return;
        };
        if let Some(c) = self.groups.get_mut(i as usize) {
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

    /// A whole free group of this shard, aligned: its first block, or None
    /// if the shard has none wholly free. Sets its 8 bitmap words with one
    /// logged store.
    fn alloc_group(&mut self, tx: &mut Tx<'_>, g: &Geometry) -> Result<Option<u64>> {
        if tx.freed {
            pr_err!("internal error: allocation after a free in one transaction\n");
            return Err(EIO);
        }
        let n = self.groups.len();
        let pmem = tx.pmem();
        let bitmap = g.bitmap_start << format::BLOCK_SHIFT;
        let mut skip = 0;
        while let Some((i, li)) = self.whole_group(g, skip) {
            skip = i + 1;
            let gi = self.g_lo + li as u64;
            let first = gi * GROUP;
            let off = bitmap + gi * GROUP_WORDS * 8;
            // The in-memory count says free; the bitmap is the truth.
            let mut words = [0u8; (GROUP_WORDS * 8) as usize];
            pmem.read(off, &mut words)?;
            if words.iter().any(|&x| x != 0) {
                pr_err!("block group {}: free count disagrees with the bitmap\n", gi);
                self.groups[li] = 0;
                continue;
            }
            tx.write(off, &[0xffu8; (GROUP_WORDS * 8) as usize])?;
            self.groups[li] = 0;
            self.free_blocks -= GROUP;
            self.next_group = wrap(li + 1, n);
            return Ok(Some(first));
        }
        Ok(None)
    }

    /// A free inode slot of this shard with `init` written into it, or None
    /// if the shard has none.
    fn alloc_inode(
        &mut self,
        tx: &mut Tx<'_>,
        g: &Geometry,
        init: &mut DiskInode,
    ) -> Result<Option<u32>> {
        if self.free_inodes == 0 || self.ino_hi <= self.ino_lo {
            return Ok(None);
        }
        let pmem = tx.pmem();
        let n = self.ino_hi - self.ino_lo;
        let next = if low_first(tx) { 1 } else { self.next_ino };
        let start = next.clamp(self.ino_lo, self.ino_hi - 1) - self.ino_lo;
        for i in 0..n {
            // Below ino_hi, which is at most inodes_count + 1: a u32 slot
            // number (ino_valid) unless it is past the table.
            let Ok(ino) = u32::try_from(self.ino_lo + wrap64(start + i, n)) else {
                break;
            };
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
            let after = ino as u64 + 1;
            self.next_ino = if after >= self.ino_hi {
                self.ino_lo
            } else {
                after
            };
            return Ok(Some(ino));
        }
        Ok(None)
    }

    fn free_inode(&mut self, tx: &mut Tx<'_>, g: &Geometry, ino: u32) -> Result {
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
