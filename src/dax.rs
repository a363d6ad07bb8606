// SPDX-License-Identifier: GPL-2.0
//! DAX mappings: page faults, dirty tracking and the fsync writeback walk.
//!
//! A user store through a mapping lands in the CPU cache, not in pmem. To
//! make it durable at fsync, every page a store can reach is recorded in the
//! inode's XArray (`Inode::dirty`, index = page offset, value = pmem block)
//! with the DIRTY mark, *before* a writable PTE for it exists:
//!
//! - `fault` for a write (shared mapping): allocate the block if needed, mark
//!   the entry, install a writable PTE. For a read: install a read-only PTE
//!   (the zero page for a hole). Private mappings only ever get read-only
//!   PTEs; the core copies on write, so their stores never reach pmem.
//! - `pfn_mkwrite` (a store to a read-only PTE): mark, make that PTE
//!   writable.
//!
//! ## Mapping types (get_user_pages)
//!
//! Every ferrofs VMA is `VM_MIXEDMAP`. A file page is mapped as a *devmap*
//! PTE (`vmf_insert_mixed` with a PFN_DEV|PFN_MAP `pfn_t`; the pmem driver's
//! pages are a MEMORY_DEVICE_FS_DAX dev_pagemap), a hole as the zero page.
//! get_user_pages and gup-fast take references on devmap pages, so shared
//! futexes, /proc/pid/mem, process_vm_readv, ptrace and O_DIRECT to or from
//! a mapped buffer work, as on ext4-dax (before, shared VMAs were
//! `VM_PFNMAP` with special PTEs, which gup refuses). Inodes are `S_DAX`:
//! the kernel then refuses FOLL_LONGTERM pins (`vma_is_fsdax`) and allows
//! the zero page in a shared writable MIXEDMAP VMA.
//!
//! The insert is always read-only: a shared writable VMA's `vm_page_prot`
//! has no write bit, because we have `pfn_mkwrite` (write notification).
//! Modules cannot call `vmf_insert_mixed_mkwrite`, and letting the core
//! make the PTE writable after `pfn_mkwrite` returns 0 (`finish_mkwrite_fault`)
//! would race: between our mark and its upgrade, fsync may clear the mark
//! and zap, a read fault put back an identical read-only PTE, and the
//! core's `pte_same` then upgrades a PTE whose entry is clean. So the fault
//! handler upgrades the one PTE itself, in `apply_to_existing_page_range`'s
//! callback (page-table lock held), to write+dirty+young as `wp_page_reuse`
//! does, if its entry is still marked (below), and returns
//! VM_FAULT_NOPAGE so the core changes nothing. An upgrade needs no TLB
//! flush (a stale read-only entry only causes a spurious fault).
//!
//! A page that may be mapped records its file and offset in its struct page
//! (`mapping`, `index`), as fs/dax.c's `dax_associate_entry` does: futex
//! keys and `folio_mark_dirty` on unpin use them. Truncate, hole punch and
//! eviction zap, then wait until no block they free has a page reference
//! beyond the pagemap's own (`inode::break_layouts`, like
//! `ext4_break_layouts`), then clear the link. A pinned page can be stored
//! to through the kernel's mapping with no PTE to fault, so fsync keeps the
//! entry of a page still referenced after its zap marked (`pinned_remarks`)
//! and the next fsync flushes it again.
//!
//! ## Marks and write access without a lock
//!
//! No writable PTE may outlive the clearing of its entry's mark: a store
//! after the walk's zap faults and re-marks, a store before it is in the
//! cache lines the walk flushes next. Faults and the writeback walk
//! ([`writeback`], behind fsync, fdatasync, msync(MS_SYNC), sync(2) and
//! eviction) keep this without a lock between them, so faults on one part
//! of a file never wait for a walk over another part:
//!
//! - a write fault (1) marks the entry, (2) inserts a read-only PTE
//!   (`pfn_mkwrite` comes with one and keeps it, unless it is gone),
//!   (3) takes the page-table lock, issues a full barrier and makes the PTE
//!   writable only if the entry is *still marked* (`VmFault::pte_mkwrite`);
//!   if not, it marks again and retries (`upgrade_remarks`);
//! - the walk (a) clears the marks it claims, (b) issues a full barrier
//!   (`sys::smp_mb`), (c) zaps the claimed pages' PTEs, which takes the
//!   page-table lock of every table it finds.
//!
//! If (c) took the lock before (3), the lock orders (a) before the check
//! in (3), which then sees the mark cleared. If after, the zap finds the
//! PTE (3) made writable and removes it. If (c) found no page table (so
//! took no lock), the table was populated in (2) after (c) looked; the
//! barriers of (b) and (3) then forbid (c) missing (2) while (3) misses
//! (a). So after (c), every PTE of a claimed page is read-only, gone, or
//! belongs to a fault whose entry is marked again. fs/dax.c gets the same
//! from its entry lock, held by the fault from mark to PTE and by the
//! writeback of that entry; ours is a mark and a barrier, no lock at all,
//! as the page-table lock already orders each PTE. PMDs do the same with
//! the PMD's lock and `dirty_pmd`. Regression tests:
//! `write_faults_racing_fsync_leave_no_unmarked_writable_pte` and its PMD
//! twin (without the check, every page ends with a writable PTE on a
//! clean entry).
//!
//! The walk holds the mapping's invalidate lock shared throughout; truncate,
//! hole punch and eviction take it exclusive before removing entries and
//! freeing blocks. An entry found by the lockless XArray search is only a
//! hint: it is revalidated under the XArray lock (present, same block, still
//! marked) before the walk acts on it, so it never flushes a block the file
//! no longer owns.
//!
//! ## PMD mappings
//!
//! A fault in a DAX VMA comes to `huge_fault` first (the core calls it
//! when the PMD slot is empty, or for a store to a read-only PMD). For DAX
//! VMAs the core does not check that a PMD fits (`__thp_vma_allowable_orders`
//! returns early), so `huge_fault` does, as fs/dax.c does: the fault's
//! address and file offset must agree modulo 2 MiB, and the aligned 2 MiB
//! must lie inside the VMA. If the 512 pages lie inside the file and
//! are backed by one whole extent (512 blocks, physically contiguous,
//! starting on a 2 MiB boundary of the device), it is mapped with one
//! devmap PMD (`vmf_insert_pfn_pmd`, so get_user_pages works on it as on
//! pages). A write fault into a range that is all holes first allocates a
//! whole free group of the allocator (`alloc::Allocators::alloc_group`) and
//! zeroes it, in one transaction (`inode::alloc_extent`). Anything else
//! falls back to 4 KiB PTEs. Mappings of 2 MiB or more get 2 MiB-aligned
//! addresses (`thp_get_unmapped_area`).
//!
//! One design for both sizes: the PMD is inserted read-only, and a write
//! fault upgrades that one PMD itself under its lock, after marking, if
//! the mark is still there (as for a PTE, above). Its
//! dirty state is one entry in a second XArray, `Inode::dirty_pmd`
//! (index = page offset / 512, value = the extent's first block), which the
//! writeback walk searches for marks over the same range, revalidates,
//! claims, zaps (2 MiB) and flushes as a whole. A separate array rather
//! than a multi-index entry in `dirty`: a store of a 4 KiB entry inside a
//! multi-index entry replaces the whole entry, and its mark, so every PTE
//! fault would have to split it first; two arrays keep each page's and
//! each extent's state apart, and cost the walk one more search.
//!
//! A PMD slot must never hold a page table and a PMD leaf at once (the
//! core WARNs inserting a writable PMD over a table). PTE faults hold the
//! inode's `huge_lock` shared and retry if they find a PMD leaf; PMD
//! faults hold it exclusive and fall back if they find a table, as
//! fs/dax.c's entry lock orders them.
//!
//! Truncate and hole punch zap the range they free, which drops a PMD
//! mapping whole (a DAX PMD is not split into PTEs), then `drop_huge`
//! removes the PMD entries over the range; one only partly inside hands
//! its mark to 4 KiB entries of the pages that stay, so no store made
//! through it goes unflushed.
//!
//! ## MAP_SYNC
//!
//! mmap(2) and Documentation/filesystems/dax.rst: once a write fault on a
//! MAP_SYNC mapping returns, every piece of metadata needed to reach the
//! block after a crash is durable, so flushing the data from user space
//! (clwb + sfence) is enough. ext4 and xfs commit their journals lazily and
//! so need `VM_FAULT_NEEDDSYNC` and an fsync of the page at the end of the
//! fault (`dax_finish_sync_fault`). ferrofs's fault path already meets the
//! contract, with no extra step:
//! - a block, and any indirect block on its path, is allocated in one
//!   journal transaction (`inode::get_or_alloc_block`) that commits before
//!   `get_or_alloc_block` returns, so before the PTE is inserted: the
//!   bitmap, the pointers and the inode's block count are written back, then
//!   fenced, then the commit word is stored, written back and fenced
//!   (`journal::Tx::finish`);
//! - a fresh block is zeroed with flushing stores inside that transaction,
//!   so after a crash the bytes the user did not store read as zero, never
//!   as a former file's data;
//! - the fault may find an existing block (or extent) through a pointer
//!   another thread has just published, before that thread's transaction
//!   commits: a write fault on an allocated block takes no journal lock
//!   (the lookup is lockless), so on a MAP_SYNC mapping it waits for the
//!   running transaction first (`Journal::barrier`: the publishing
//!   transaction holds the journal mutex until its commit is durable);
//!   fsync and sync_fs wait the same way;
//! - the file size never changes in a fault (a fault past EOF is SIGBUS):
//!   it was made durable by the truncate, fallocate or write(2) that set
//!   it, each a committed transaction;
//! - times (the mtime update of a write fault) are not needed to reach data.
//!
//! The trace mode checks this after every MAP_SYNC write fault
//! ([`check_sync_fault`]), as it checks fsync. MAP_SYNC is refused with
//! EOPNOTSUPP where the device is not synchronous (`dax_synchronous`: a
//! virtio-pmem device needs a flush request that a CPU cache flush does not
//! send), as ext4 and xfs refuse it.
//!
//! Marks live in the inode, not the mapping: stores made through a mapping
//! that was then unmapped are still flushed by the next fsync, and eviction
//! writes back whatever is left.

use crate::alloc::GROUP;
use crate::format::{BLOCK_SHIFT, BLOCK_SIZE, INODE_SIZE};
use crate::inode;
use crate::super_::FsInfo;
use crate::sys::stats::Counter;
use crate::sys::vfs::{
    page_busy, Inode, Upgrade, VmFault, VM_FAULT_FALLBACK, VM_FAULT_NOPAGE, VM_FAULT_OOM,
    VM_FAULT_SIGBUS,
};
use crate::sys::xarray::{Claim, XArray};
use kernel::bindings::vm_fault_t;

const PMD_ORDER: u32 = kernel::bindings::PMD_ORDER;
use kernel::error::{code::*, Error, Result};

fn to_fault(e: Error) -> vm_fault_t {
    if e == ENOMEM {
        VM_FAULT_OOM
    } else {
        VM_FAULT_SIGBUS
    }
}

fn beyond_eof(inode: &Inode, pgoff: u64) -> bool {
    pgoff >= inode.size().div_ceil(BLOCK_SIZE as u64)
}

pub(crate) fn fault(vmf: &VmFault) -> vm_fault_t {
    let inode = vmf.inode();
    let fs = inode.fs();
    fs.count(Counter::Faults);
    let write = vmf.is_write() && !vmf.is_cow();
    if write {
        fs.count(Counter::WriteFaults);
        vmf.sb_start_pagefault();
        vmf.file_update_time();
    }
    let ret = {
        let _inv = inode.invalidate_lock().read();
        if beyond_eof(inode, vmf.pgoff()) {
            VM_FAULT_SIGBUS
        } else if write {
            map_writable(vmf, inode, false)
        } else {
            let _h = inode.huge_lock().read();
            if vmf.pmd_is_leaf() {
                // Raced with a PMD fault of this range: retry.
                VM_FAULT_NOPAGE
            } else {
                map_readonly(vmf, inode)
            }
        }
    };
    if write {
        vmf.sb_end_pagefault();
    }
    ret
}

pub(crate) fn pfn_mkwrite(vmf: &VmFault) -> vm_fault_t {
    let inode = vmf.inode();
    inode.fs().count(Counter::PfnMkwrite);
    vmf.sb_start_pagefault();
    vmf.file_update_time();
    let ret = {
        let _inv = inode.invalidate_lock().read();
        if beyond_eof(inode, vmf.pgoff()) {
            VM_FAULT_SIGBUS
        } else {
            map_writable(vmf, inode, true)
        }
    };
    vmf.sb_end_pagefault();
    ret
}

fn map_readonly(vmf: &VmFault, inode: &Inode) -> vm_fault_t {
    match inode::get_block(inode, vmf.pgoff()) {
        // A block stays the file's while we hold the invalidate lock shared.
        Ok(b) if b != 0 => insert_block_ro(vmf, inode, b),
        Ok(_) => map_hole(vmf, inode),
        Err(e) => to_fault(e),
    }
}

fn insert_block_ro(vmf: &VmFault, inode: &Inode, block: u64) -> vm_fault_t {
    match inode.fs().pmem.pfn(FsInfo::block_off(block)) {
        Ok(pfn) => {
            vmf.associate(pfn, vmf.pgoff());
            vmf.insert_ro(pfn)
        }
        Err(e) => to_fault(e),
    }
}

/// A read fault on a hole maps the zero page. Under `map_lock`, so that it
/// is ordered with an allocation of the same page: either the allocation
/// comes first and the lookup below sees its block, or it comes after and
/// zaps the zero-page PTE installed here (`inode::get_or_alloc_tx`).
fn map_hole(vmf: &VmFault, inode: &Inode) -> vm_fault_t {
    let _m = inode.map_lock().lock();
    match inode::get_block(inode, vmf.pgoff()) {
        Ok(0) => vmf.insert_zero(),
        Ok(b) => insert_block_ro(vmf, inode, b),
        Err(e) => to_fault(e),
    }
}

/// `huge_fault` for a PMD (order 9): map the 2 MiB extent behind the
/// fault with one devmap PMD, or VM_FAULT_FALLBACK to 4 KiB PTEs. See
/// "PMD mappings" above.
pub(crate) fn huge_fault(vmf: &VmFault, order: u32) -> vm_fault_t {
    if order != PMD_ORDER || vmf.is_cow() || !vmf.pmd_fits() {
        return VM_FAULT_FALLBACK;
    }
    let inode = vmf.inode();
    let fs = inode.fs();
    let start = vmf.pgoff() & !(GROUP - 1);
    let write = vmf.is_write();
    if write {
        vmf.sb_start_pagefault();
        vmf.file_update_time();
    }
    let ret = {
        let _inv = inode.invalidate_lock().read();
        if start + GROUP > inode.size() >> BLOCK_SHIFT {
            // Not all of the 2 MiB lies inside the file.
            VM_FAULT_FALLBACK
        } else {
            map_huge(vmf, inode, start, write)
        }
    };
    if write {
        vmf.sb_end_pagefault();
    }
    if ret == VM_FAULT_NOPAGE {
        fs.count(Counter::PmdFaults);
    }
    ret
}

fn map_huge(vmf: &VmFault, inode: &Inode, start: u64, write: bool) -> vm_fault_t {
    let fs = inode.fs();
    let mut fresh = 0;
    // An entry of dirty_pmd (marked or not) names an extent an earlier PMD
    // fault found whole and associated; entries go (drop_huge) before any
    // block of the extent is freed, under the invalidate lock exclusive,
    // which this fault holds shared. So it stands for extent_at and for
    // the 512 associations.
    let cached = inode.dirty_pmd.load(start / GROUP);
    let found = match cached {
        Some(b) => Ok(Some(b)),
        None => inode::extent_at(inode, start),
    };
    let b0 = match found {
        Ok(Some(b)) => {
            if write && vmf.is_sync() {
                // As for a page: the extent's pointers may not be committed.
                fs.journal.barrier_inode(inode);
            }
            b
        }
        Ok(None) if write => match inode::alloc_extent(inode, start) {
            Ok(Some(b)) => {
                fresh = GROUP;
                b
            }
            Ok(None) => return VM_FAULT_FALLBACK,
            Err(e) => return to_fault(e),
        },
        Ok(None) => return VM_FAULT_FALLBACK,
        Err(e) => return to_fault(e),
    };
    let pfn = match fs.pmem.pfn(FsInfo::block_off(b0)) {
        Ok(p) if p % GROUP == 0 => p,
        Ok(_) => return VM_FAULT_FALLBACK,
        Err(e) => return to_fault(e),
    };
    if write && vmf.is_sync() {
        fs.count(Counter::SyncWriteFaults);
        if fs.pmem.trace().is_some() {
            check_sync_fault(inode, start, b0, fresh);
        }
    }
    if !write && cached.is_none() {
        if let Err(e) = inode.dirty_pmd.record(start / GROUP, b0) {
            return to_fault(e);
        }
    }
    let _h = inode.huge_lock().write();
    if cached.is_none() {
        for i in 0..GROUP {
            vmf.associate(pfn + i, start + i);
        }
    }
    for _ in 0..4 {
        // The mark before any writable PMD, as for a page.
        if write {
            if let Err(e) = mark(
                inode,
                &inode.dirty_pmd,
                start / GROUP,
                b0,
                Counter::PmdEntriesMarked,
            ) {
                return to_fault(e);
            }
        }
        let r = vmf.insert_pmd_ro(pfn);
        if r != VM_FAULT_NOPAGE || !write {
            return r;
        }
        match vmf.pmd_mkwrite(pfn, &inode.dirty_pmd, start / GROUP) {
            Upgrade::Done => return VM_FAULT_NOPAGE,
            Upgrade::Unmarked => fs.count(Counter::UpgradeRemarks),
            Upgrade::Gone => {}
            // A page table in the slot (filled by PTE faults before ours):
            // the retry maps 4 KiB pages. The PMD mark stays, a superset.
            Upgrade::Other => return VM_FAULT_FALLBACK,
        }
    }
    VM_FAULT_NOPAGE
}

/// Mark entry `index` of `xa` (`block` behind it) dirty, before a fault
/// makes a PTE or PMD writable. A new mark is counted in `counter` and puts
/// the inode on the mount's sync list (after the mark: see `sync_all`).
fn mark(inode: &Inode, xa: &XArray, index: u64, block: u64, counter: Counter) -> Result {
    if xa.mark_dirty(index, block)? {
        let fs = inode.fs();
        fs.count(counter);
        inode.mark_pages_dirty();
        fs.sync_list.add(inode);
    }
    Ok(())
}

/// mmap: MAP_SYNC (`sync`) only on a synchronous device.
pub(crate) fn mmap_check(inode: &Inode, sync: bool) -> Result {
    if sync {
        let fs = inode.fs();
        if !fs.synchronous {
            return Err(crate::sys::eopnotsupp());
        }
        fs.count(Counter::SyncMaps);
    }
    Ok(())
}

/// Mark the page dirty, then give it a writable PTE: insert a read-only PTE
/// if none is there, then upgrade that PTE if the entry is still marked
/// (see "Marks and write access without a lock" above).
fn map_writable(vmf: &VmFault, inode: &Inode, present: bool) -> vm_fault_t {
    let fs = inode.fs();
    let pgoff = vmf.pgoff();
    // An allocated block needs no transaction: the lockless lookup (one
    // atomic load per pointer) finds it, and no mount-wide lock is taken.
    // Only a hole opens one.
    let (block, fresh) = match inode::get_block(inode, pgoff) {
        Ok(0) => match inode::get_or_alloc_block(inode, pgoff, false) {
            Ok(r) => r,
            Err(e) => return to_fault(e),
        },
        Ok(b) => {
            if vmf.is_sync() {
                // The pointer may come from a transaction that has not
                // committed yet: MAP_SYNC must not return before it has.
                fs.journal.barrier_inode(inode);
            }
            (b, false)
        }
        Err(e) => return to_fault(e),
    };
    if vmf.is_sync() {
        fs.count(Counter::SyncWriteFaults);
        if fs.pmem.trace().is_some() {
            check_sync_fault(inode, pgoff, block, fresh as u64);
        }
    }
    let pfn = match fs.pmem.pfn(FsInfo::block_off(block)) {
        Ok(p) => p,
        Err(e) => return to_fault(e),
    };
    let _h = inode.huge_lock().read();
    if vmf.pmd_is_leaf() {
        // Raced with a PMD fault of this range: retry (it is mapped now).
        return VM_FAULT_NOPAGE;
    }
    vmf.associate(pfn, pgoff);
    // pfn_mkwrite comes with a read-only PTE of this block (the core saw it
    // before calling us; a store to a page first read): upgrade it in
    // place. Inserting it again would only find it there, after
    // vmf_insert_mixed's track_pfn_insert, which takes two locks of the
    // whole machine (the PAT memtype lock and the resource lock), and walk
    // the page tables twice. If the PTE is gone by now, insert it as below.
    let mut in_place = present && !fresh;
    // A fresh block's allocation already zapped this page's zero-page PTEs
    // in every mapping (`inode::get_or_alloc_tx`). A few rounds: a PTE can
    // vanish between insert and upgrade (MADV_DONTNEED needs only the mmap
    // lock shared), a PTE of another page is zapped here, and a writeback
    // walk may claim the entry between the mark and the upgrade.
    for _ in 0..4 {
        if let Err(e) = mark(inode, &inode.dirty, pgoff, block, Counter::EntriesMarked) {
            return to_fault(e);
        }
        if !in_place {
            let r = vmf.insert_ro(pfn);
            if r != VM_FAULT_NOPAGE {
                return r;
            }
        }
        in_place = false;
        match vmf.pte_mkwrite(pfn, &inode.dirty, pgoff) {
            Upgrade::Done => return VM_FAULT_NOPAGE,
            Upgrade::Unmarked => fs.count(Counter::UpgradeRemarks),
            Upgrade::Gone => {}
            Upgrade::Other => inode.unmap_range(pgoff << BLOCK_SHIFT, BLOCK_SIZE as u64, false),
        }
    }
    // No writable PTE: the store faults again, and is marked again.
    VM_FAULT_NOPAGE
}

/// fsync, fdatasync and msync(MS_SYNC) of `start..=end` (bytes).
pub(crate) fn fsync(inode: &Inode, start: u64, end: u64, _datasync: bool) -> Result {
    inode.fs().count(Counter::FsyncCalls);
    // Metadata (size, block map, times) is durable when its transaction
    // commits. A fault may have mapped a block through a pointer whose
    // transaction (another thread's allocation) was still running: wait for
    // it, so the block map behind every store this fsync flushes is there.
    // That transaction owned the inode, so waiting for the inode's last
    // transaction is enough; other inodes' transactions are not waited for.
    // The walk's closing fence orders the metadata with the data.
    inode.fs().journal.barrier_inode(inode);
    writeback(inode, start, end)
}

/// Hints taken from one lockless search before they are revalidated.
const BATCH: usize = 32;

/// The lockless part of a writeback walk: up to [`BATCH`] (index, block)
/// hints of marked entries of `xa` in `*index..=last`, moving `*index` past
/// them. Returns how many, and whether the range may hold more.
fn next_hints(
    xa: &XArray,
    index: &mut u64,
    last: u64,
    hints: &mut [(u64, u64); BATCH],
) -> (usize, bool) {
    let mut n = 0;
    while n < BATCH {
        let Some(block) = xa.next_dirty(index, last) else {
            return (n, false);
        };
        hints[n] = (*index, block);
        n += 1;
        if *index >= last {
            return (n, false);
        }
        *index += 1;
    }
    (n, true)
}

/// Write back every dirty page of `start..=end` (bytes): the heart of fsync.
/// Cost follows the number of marked entries, not the file size: the XArray
/// search skips unmarked subtrees.
pub(crate) fn writeback(inode: &Inode, start: u64, end: u64) -> Result {
    let fs = inode.fs();
    let first = start >> BLOCK_SHIFT;
    let last = core::cmp::min(end, i64::MAX as u64) >> BLOCK_SHIFT;
    if first > last {
        return Ok(());
    }
    let _inv = inode.invalidate_lock().read();
    let _one_walk = inode.sync_lock().lock();
    let mut index = first;
    let mut more = true;
    while more {
        // 1. Lockless search: hints only.
        let mut hints = [(0u64, 0u64); BATCH];
        let n;
        (n, more) = next_hints(&inode.dirty, &mut index, last, &mut hints);
        if n == 0 {
            break;
        }
        // 2. Revalidate and clear marks, then (after a full barrier) zap
        //    the PTEs: a fault that marked before the clear either sees
        //    the clear when it comes to upgrade its PTE, or made it
        //    writable before the zap, which removes it (see "Marks and
        //    write access without a lock" above).
        let mut claimed = [false; BATCH];
        {
            for k in 0..n {
                let (idx, block) = hints[k];
                match inode.dirty.claim(idx, block) {
                    Claim::Claimed => claimed[k] = true,
                    Claim::Dropped => fs.count(Counter::RevalidateDrops),
                }
            }
            crate::sys::smp_mb();
            zap_claimed(inode, &hints[..n], &claimed[..n], 1);
            // After the zap no new reference can be taken without a fault
            // (which marks). A page get_user_pages still holds may be
            // stored to through the kernel's mapping, which no PTE
            // tracks: keep its entry marked, so the fsync after the
            // holder lets go flushes those stores too.
            let mut pinned = false;
            for k in (0..n).filter(|&k| claimed[k]) {
                let (idx, block) = hints[k];
                if let Ok(pfn) = fs.pmem.pfn(FsInfo::block_off(block)) {
                    if page_busy(pfn) && inode.dirty.remark(idx, block) {
                        // Marked again: counted as a mark, so that marks
                        // still balance flushes, drops and removals.
                        fs.count(Counter::EntriesMarked);
                        fs.count(Counter::PinnedRemarks);
                        pinned = true;
                    }
                }
            }
            if pinned {
                fs.sync_list.add(inode);
            }
        }
        if let Some(t) = fs.pmem.trace() {
            for k in (0..n).filter(|&k| claimed[k]) {
                t.note_dirty(FsInfo::block_off(hints[k].1), BLOCK_SIZE);
            }
        }
        // 3. Flush. A store that lands from now on faults and re-marks.
        for k in (0..n).filter(|&k| claimed[k]) {
            let lines = fs.pmem.flush(FsInfo::block_off(hints[k].1), BLOCK_SIZE)?;
            fs.count(Counter::EntriesFlushed);
            fs.stats.add(Counter::LinesFlushed, lines);
        }
    }
    // 3b. The PMD entries that overlap the range, the same way: claim,
    //     barrier and zap, then flush 2 MiB each.
    writeback_huge(inode, first / GROUP, last / GROUP)?;
    // 4. One fence for the whole walk.
    fs.pmem.fence();
    if fs.pmem.trace().is_some() {
        check_clean(inode, first, last)?;
    }
    Ok(())
}

/// The PMD part of [`writeback`]: entries `first..=last` of `dirty_pmd`
/// (indexes of 2 MiB extents), in batches as the 4 KiB walk: claim, then
/// after the barrier zap runs of adjacent claimed extents with one
/// unmap each (one TLB flush per run, not per extent), then flush 2 MiB
/// each. No fence: the caller's ends the walk.
fn writeback_huge(inode: &Inode, first: u64, last: u64) -> Result {
    let fs = inode.fs();
    let mut i = first;
    let mut more = true;
    while more {
        let mut hints = [(0u64, 0u64); BATCH];
        let n;
        (n, more) = next_hints(&inode.dirty_pmd, &mut i, last, &mut hints);
        if n == 0 {
            break;
        }
        let mut claimed = [false; BATCH];
        {
            for k in 0..n {
                let (pi, b0) = hints[k];
                match inode.dirty_pmd.claim(pi, b0) {
                    Claim::Claimed => claimed[k] = true,
                    Claim::Dropped => fs.count(Counter::RevalidateDrops),
                }
            }
            // As for pages: the barrier pairs with the PMD upgrade's.
            crate::sys::smp_mb();
            zap_claimed(inode, &hints[..n], &claimed[..n], GROUP);
            // A page of the extent that get_user_pages still holds: keep
            // the entry marked (see the 4 KiB walk).
            let mut pinned = false;
            for k in (0..n).filter(|&k| claimed[k]) {
                let (pi, b0) = hints[k];
                let pfn0 = fs.pmem.pfn(FsInfo::block_off(b0))?;
                if (0..GROUP).any(|j| page_busy(pfn0 + j)) && inode.dirty_pmd.remark(pi, b0) {
                    fs.count(Counter::PinnedRemarks);
                    pinned = true;
                }
            }
            if pinned {
                fs.sync_list.add(inode);
            }
        }
        for k in (0..n).filter(|&k| claimed[k]) {
            let off = FsInfo::block_off(hints[k].1);
            let len = (GROUP as usize) << BLOCK_SHIFT;
            if let Some(t) = fs.pmem.trace() {
                t.note_dirty(off, len);
            }
            let lines = fs.pmem.flush(off, len)?;
            fs.count(Counter::PmdEntriesFlushed);
            fs.stats.add(Counter::LinesFlushed, lines);
        }
    }
    Ok(())
}

/// Truncate, hole punch and eviction remove pages `first..=last`: drop the
/// PMD entries over them. An entry only partly inside hands its dirty state
/// to the 4 KiB entries of the pages that stay (their PMD mapping is gone:
/// the zap before this dropped it whole), so no store made through the
/// PMD before the zap goes unflushed. Callers hold the invalidate lock
/// exclusive and have zapped the range.
///
/// `keep`: hand partial entries' dirty state on (truncate, punch); eviction
/// of an unlinked inode drops everything (its inode is off the sync list
/// and must stay off).
pub(crate) fn drop_huge(inode: &Inode, first: u64, last: u64, keep: bool) {
    let fs = inode.fs();
    inode
        .dirty_pmd
        .take_range(first / GROUP, last / GROUP, &mut |pi, b0, dirty| {
            if dirty {
                fs.count(Counter::PmdEntriesRemoved);
            }
            if !dirty || !keep {
                return;
            }
            let base = pi * GROUP;
            for k in 0..GROUP {
                let p = base + k;
                if p >= first && p <= last {
                    continue;
                }
                match inode.dirty.mark_dirty(p, b0 + k) {
                    Ok(true) => fs.count(Counter::EntriesMarked),
                    Ok(false) => {}
                    Err(e) => kernel::pr_err!(
                        "inode {}: page {}: keeping its dirty state failed: {:?}\n",
                        inode.ino(),
                        p,
                        e
                    ),
                }
            }
            fs.sync_list.add(inode);
        });
}

/// sync(2) and syncfs(2) (`sync_fs` with wait): write back every inode of
/// the mount that may hold marks. An inode goes on the mount's list after
/// each new mark, and this takes it off before its walk, both under the
/// list's lock: a mark made before the take is seen by the walk, one made
/// after puts the inode back for the next sync. The flusher's `writepages`
/// alone cannot promise this: it clears the inode's dirty state after our
/// walk returns, forgetting pages re-marked during the walk.
pub(crate) fn sync_all(fs: &FsInfo) -> Result {
    // As in fsync: pointers faults saw belong to committed transactions.
    fs.journal.barrier();
    let mut res = Ok(());
    fs.sync_list.drain(|inode| {
        if let Err(e) = writeback(inode, 0, u64::MAX) {
            kernel::pr_err!("inode {}: writeback at sync failed: {:?}\n", inode.ino(), e);
            // Its marks are still there: keep it for the next sync.
            fs.sync_list.add(inode);
            if res.is_ok() {
                res = Err(e);
            }
        }
    });
    fs.pmem.fence();
    res
}

/// Trace mode only: the fsync assertion. Every line of the file's blocks in
/// `first..=last` (pages) and of its inode that the module stored to, or
/// that the XArray said was dirty, must be written back and fenced by now.
fn check_clean(inode: &Inode, first: u64, last: u64) -> Result {
    let fs = inode.fs();
    let Some(t) = fs.pmem.trace() else {
        return Ok(());
    };
    let mut bad = t.unclean(crate::alloc::inode_off(&fs.geo, inode.ino()), INODE_SIZE);
    let end = core::cmp::min(last, inode.size().div_ceil(BLOCK_SIZE as u64));
    for l in first..end {
        let b = crate::inode::get_block(inode, l)?;
        if b != 0 {
            bad += t.unclean(FsInfo::block_off(b), BLOCK_SIZE);
        }
    }
    if bad > 0 {
        kernel::pr_err!(
            "inode {}: fsync returned with {} cache lines not flushed and fenced\n",
            inode.ino(),
            bad
        );
        fs.stats.add(Counter::PersistViolations, bad);
    }
    Ok(())
}

/// Trace mode only: the MAP_SYNC assertion, at a write fault of a MAP_SYNC
/// mapping, before its PTE exists. With the journal quiesced, so no
/// transaction is half done: every line of the metadata areas (superblock,
/// journal, bitmap, inode table), of the indirect blocks on the page's
/// path and, for a block this fault allocated, of the block itself must be
/// written back and fenced. A line left over is counted in
/// `persist_violations`.
fn check_sync_fault(inode: &Inode, pgoff: u64, block: u64, fresh_blocks: u64) {
    let fs = inode.fs();
    let Some(t) = fs.pmem.trace() else {
        return;
    };
    fs.journal
        .quiesced(|| check_sync_fault_quiet(inode, pgoff, block, fresh_blocks, t));
}

fn check_sync_fault_quiet(
    inode: &Inode,
    pgoff: u64,
    block: u64,
    fresh_blocks: u64,
    t: &crate::sys::trace::Trace,
) {
    let fs = inode.fs();
    let mut bad = t.unclean(0, (fs.geo.data_start << BLOCK_SHIFT) as usize);
    let mut path = [0u64; 3];
    let n = inode::map_path_blocks(inode, pgoff, &mut path).unwrap_or(0);
    for &b in &path[..n] {
        bad += t.unclean(FsInfo::block_off(b), BLOCK_SIZE);
    }
    if fresh_blocks > 0 {
        bad += t.unclean(
            FsInfo::block_off(block),
            (fresh_blocks as usize) << BLOCK_SHIFT,
        );
    }
    if bad > 0 {
        kernel::pr_err!(
            "inode {}: MAP_SYNC write fault at page {} left {} metadata cache lines not flushed and fenced\n",
            inode.ino(),
            pgoff,
            bad
        );
        fs.stats.add(Counter::PersistViolations, bad);
    }
}

/// Eviction: the inode has no users, mappings or PTEs left, and may be
/// evicted from memory reclaim, where taking the invalidate lock would invert
/// the lock order. Flush whatever is still marked.
pub(crate) fn writeback_evicting(inode: &Inode) -> Result {
    let fs = inode.fs();
    let mut index = 0;
    while let Some(block) = inode
        .dirty
        .next_dirty(&mut index, i64::MAX as u64 >> BLOCK_SHIFT)
    {
        if let Claim::Claimed = inode.dirty.claim(index, block) {
            let lines = fs.pmem.flush(FsInfo::block_off(block), BLOCK_SIZE)?;
            fs.count(Counter::EntriesFlushed);
            fs.stats.add(Counter::LinesFlushed, lines);
        }
        index += 1;
    }
    let mut index = 0;
    while let Some(b0) = inode
        .dirty_pmd
        .next_dirty(&mut index, i64::MAX as u64 >> (BLOCK_SHIFT + 9))
    {
        if let Claim::Claimed = inode.dirty_pmd.claim(index, b0) {
            let lines = fs
                .pmem
                .flush(FsInfo::block_off(b0), (GROUP as usize) << BLOCK_SHIFT)?;
            fs.count(Counter::PmdEntriesFlushed);
            fs.stats.add(Counter::LinesFlushed, lines);
        }
        index += 1;
    }
    fs.pmem.fence();
    Ok(())
}

/// Zap the mappings of the claimed entries (of `pages` pages each: 1, or
/// GROUP for PMD entries), one call per run of consecutive entries.
fn zap_claimed(inode: &Inode, hints: &[(u64, u64)], claimed: &[bool], pages: u64) {
    let mut k = 0;
    while k < hints.len() {
        if !claimed[k] {
            k += 1;
            continue;
        }
        let start = hints[k].0;
        let mut end = start;
        while k + 1 < hints.len() && claimed[k + 1] && hints[k + 1].0 == end + 1 {
            k += 1;
            end += 1;
        }
        inode.unmap_range(
            (start * pages) << BLOCK_SHIFT,
            ((end - start + 1) * pages) << BLOCK_SHIFT,
            false,
        );
        k += 1;
    }
}
