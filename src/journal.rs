// SPDX-License-Identifier: GPL-2.0
//! Metadata transactions: an undo journal in pmem.
//!
//! Every change to metadata (the block bitmap, the inode table, directory
//! and indirect blocks) is made inside a [`Tx`]. Before the first in-place
//! store to a range, the transaction appends a record with the range's old
//! bytes to the journal region and makes it durable; at commit it makes the
//! in-place stores durable and then marks the transaction done with one
//! atomic 8-byte store. Mount rolls back a transaction that did not commit.
//! The on-media rules are in `format.rs` ("Metadata journal").
//!
//! Why this is crash-atomic, for any crash point:
//! - an in-place store can only reach pmem after the record holding the
//!   bytes it overwrites is durable (`Tx::ready` fences between the two);
//! - before the commit store, every in-place store of the transaction has
//!   been written back and fenced, so once `seq_done` names the transaction
//!   all of it is durable;
//! - until then its records are valid (checksummed, `seq == seq_done + 1`)
//!   and restore every byte it may have changed, newest last undone first.
//!
//! So a crash leaves each operation entirely before or entirely after.
//! Blocks allocated by the transaction itself are written without records
//! (`write_fresh`): if it rolls back, they are free again and their bytes do
//! not matter. That is sound only because a transaction never reuses a block
//! it freed (the allocator refuses, see `Tx::freed`).
//!
//! Several transactions at once (version 5): the region is split into
//! areas (`format::Geometry::slot_bytes`), each with its own header and
//! sequence numbers, and a transaction runs in whichever area is free. The
//! rule above holds per area; across areas, recovery rolls back each
//! area's unfinished transaction independently, which is sound because
//! transactions in flight at once never change the same bytes:
//! - an inode's slot and block map (and its indirect blocks) are changed
//!   only by the transaction that owns the inode ([`Tx::lock_inode`]),
//!   until it commits;
//! - a directory's blocks only under its `i_rwsem`, which the VFS holds
//!   across the whole operation (and so across the commit);
//! - bitmap words are shared: allocation and free change them under the
//!   mutex of the allocator shard that owns the word (a word, like an inode
//!   slot, belongs to one shard), each change logged as a masked record of
//!   its own bits
//!   (`Tx::write_bits`); what a transaction frees stays pending (listed in
//!   the allocator, passed over by every allocation) until it commits, so
//!   no other transaction can take a block (or inode slot) whose free may
//!   yet roll back (`alloc.rs`);
//! - the superblock's version is raised only on images older than
//!   version 5, which have one area.
//!
//! An older image has one area, and then plain records (an older module
//! reading its journal knows no masked record).
//!
//! Each transaction is short: one metadata operation, or one bounded slice
//! of a large truncate.

use crate::alloc::{Allocators, Frees};
use crate::format::{
    self, fnv1a64_update, masked_data, record_check, Geometry, JournalHeader, JournalState, Pod,
    RecordHeader, Records, BLOCK_SHIFT, JOURNAL_RECORDS_OFF, JOURNAL_SEQ_DONE_OFF,
    RECORD_HEADER_SIZE, RECORD_MASKED, RECORD_MAX_DATA,
};
use crate::sys::locks::{Guard, Mutex, MutexGuard};
use crate::sys::pmem::Pmem;
use crate::sys::stats::{Counter, Stats};
use crate::sys::vfs::Inode;
use crate::sys::NoFs;
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use kernel::error::{code::*, Result};
use kernel::prelude::*;

pub(crate) struct Journal {
    slots: KVec<Slot>,
    /// Plain (one area) or masked bitmap records.
    masked: bool,
    /// Numbers transactions since mount (from 1), for [`Inode::tx_tag`].
    ids: AtomicU64,
    /// The superblock's format version as committed (1 to 5; see
    /// `format::VERSION`): set at mount, raised when a transaction that
    /// raised the superblock commits (`FsInfo::raise_version`).
    pub(crate) version: AtomicU32,
}

/// One journal area.
struct Slot {
    state: Mutex<JState>,
    /// Byte offset and length of the area.
    start: u64,
    len: usize,
    /// The id of the transaction running in this area, 0 if none. Boxed:
    /// waiters sleep on its address.
    running: KBox<AtomicU64>,
}

struct JState {
    seq_done: u64,
}

/// Tags in [`Inode::tx_tag`]: transaction id above, area below.
const TAG_SLOT_BITS: u32 = 5;

impl Journal {
    /// At mount, before anything else reads metadata: roll back the
    /// transaction a crash interrupted in each area, if any. Fails on a
    /// damaged journal.
    pub(crate) fn recover(pmem: &Pmem, g: &Geometry) -> Result<Journal> {
        let base = g.journal_start << BLOCK_SHIFT;
        let n = g.journal_slots.max(1);
        let mut slots = KVec::with_capacity(n as usize, GFP_KERNEL)?;
        for k in 0..n {
            let (off, len) = g.slot_bytes(k);
            let start = base + off as u64;
            let seq_done = Self::recover_area(pmem, g, start, len, k)?;
            slots.push(
                Slot {
                    state: Mutex::new_with(
                        JState { seq_done },
                        crate::sys::ferrofs_init_journal_mutex,
                    )?,
                    start,
                    len,
                    running: KBox::new(AtomicU64::new(0), GFP_KERNEL)?,
                },
                GFP_KERNEL,
            )?;
        }
        Ok(Journal {
            slots,
            masked: n > 1,
            ids: AtomicU64::new(1),
            version: AtomicU32::new(0),
        })
    }

    /// Roll back area `k` (`start..start+len`); its `seq_done` after.
    fn recover_area(pmem: &Pmem, g: &Geometry, start: u64, len: usize, k: u32) -> Result<u64> {
        // At mount, before the superblock is live, no transaction, fault or
        // user mapping exists; the rollback below writes only the records'
        // targets, which `Records` checks lie outside the journal.
        // SAFETY: so nothing writes the journal while `region` lives.
        let region = unsafe { pmem.slice(start, len)? };
        let st = match JournalState::parse(region, g) {
            Ok(st) => st,
            Err(e) => {
                pr_err!("cannot mount: journal: {} (area {})\n", e.reason(), k);
                return Err(EINVAL);
            }
        };
        let mut seq_done = st.seq_done;
        if st.pending > 0 {
            let mut recs = KVec::with_capacity(st.pending, GFP_KERNEL)?;
            for r in Records::new(region, st.seq_done, g) {
                let r = r.map_err(|_| EINVAL)?;
                recs.push((r.target, r.pos, r.data.len(), r.masked), GFP_KERNEL)?;
            }
            // Newest first, so a range logged twice ends with its oldest bytes.
            for &(target, pos, n, masked) in recs.iter().rev() {
                let from = start + (pos + RECORD_HEADER_SIZE) as u64;
                if masked {
                    // Records::new checked: 16 bytes of data, target 8-aligned.
                    let mut d = [0u8; format::MASKED_DATA];
                    pmem.read(from, &mut d)?;
                    let v = pmem.read_u64(target)?;
                    pmem.write_u64_atomic(target, format::masked_undo(v, &d))?;
                    pmem.flush(target, 8)?;
                } else {
                    pmem.copy_within(from, target, n)?;
                    pmem.flush(target, n)?;
                }
            }
            pmem.fence();
            // parse() bounded seq_done far below u64::MAX.
            seq_done = seq_done.checked_add(1).ok_or(EINVAL)?;
            pmem.write_u64_atomic(start + JOURNAL_SEQ_DONE_OFF as u64, seq_done)?;
            pmem.flush(start, JOURNAL_RECORDS_OFF)?;
            pmem.fence();
            pr_info!(
                "journal: rolled back unfinished transaction {} of area {} ({} records)\n",
                seq_done,
                k,
                recs.len()
            );
        }
        if st.fresh {
            // seq_done is 0 already; the magic is one aligned 8-byte store.
            let magic = u64::from_le_bytes(JournalHeader::new(0).magic);
            pmem.write_u64_atomic(start, magic)?;
            pmem.flush(start, 8)?;
            pmem.fence();
        }
        Ok(seq_done)
    }

    /// Journal areas of this mount.
    pub(crate) fn areas(&self) -> usize {
        self.slots.len()
    }

    /// Whether the transaction of tag `t` (see [`Inode::tx_tag`]) is still
    /// running.
    fn in_flight(&self, t: u64) -> bool {
        let k = (t & ((1 << TAG_SLOT_BITS) - 1)) as usize;
        let id = t >> TAG_SLOT_BITS;
        t != 0
            && self
                .slots
                .get(k)
                .is_some_and(|s| s.running.load(Ordering::Acquire) == id)
    }

    /// Sleep until the transaction of tag `t` has finished.
    fn wait(&self, t: u64) {
        let k = (t & ((1 << TAG_SLOT_BITS) - 1)) as usize;
        let id = t >> TAG_SLOT_BITS;
        if let Some(s) = self.slots.get(k) {
            // SAFETY: `running` is boxed and lives as long as the journal;
            // the C side only reads it (READ_ONCE) and sleeps on its address.
            unsafe { crate::sys::ferrofs_wait_var_ne(s.running.as_ptr(), id) };
        }
    }

    /// Wait until every transaction running now, if any, has committed (or
    /// rolled back in memory). sync_fs, freeze and remount read-only call
    /// this: each transaction holds its area's mutex from begin to commit.
    pub(crate) fn barrier(&self) {
        for s in self.slots.iter() {
            drop(s.state.lock());
        }
    }

    /// Wait until the last transaction that changed `inode` has committed.
    /// A lockless reader that saw a pointer or size a transaction published
    /// calls this before it promises durability (fsync, a MAP_SYNC fault):
    /// the publishing transaction owned the inode from before that store
    /// until after its commit ([`Tx::lock_inode`]).
    pub(crate) fn barrier_inode(&self, inode: &Inode) {
        let t = inode.tx_tag().load(Ordering::Acquire);
        if self.in_flight(t) {
            self.wait(t);
        }
    }

    /// Run `f` with no transaction in flight and none starting (the trace
    /// mode's MAP_SYNC check).
    pub(crate) fn quiesced<R>(&self, f: impl FnOnce() -> R) -> R {
        fn from<R>(s: &[Slot], k: u32, f: impl FnOnce() -> R) -> R {
            match s.split_first() {
                None => f(),
                Some((first, rest)) => {
                    let _g = first.state.lock_nested(k);
                    from(rest, k + 1, f)
                }
            }
        }
        from(&self.slots, 0, f)
    }

    /// Start a transaction in a free area, or wait for area 0.
    pub(crate) fn begin<'a>(
        &'a self,
        pmem: &'a Pmem,
        alloc: &'a Allocators,
        stats: &'a Stats,
    ) -> Tx<'a> {
        let nofs = NoFs::enter();
        let mut got = None;
        for (k, s) in self.slots.iter().enumerate() {
            if let Some(g) = s.state.try_lock() {
                got = Some((k, g));
                break;
            }
        }
        let (k, st) = match got {
            Some(x) => x,
            None => (0, self.slots[0].state.lock()),
        };
        let slot = &self.slots[k];
        let id = self.ids.fetch_add(1, Ordering::Relaxed);
        slot.running.store(id, Ordering::Release);
        Tx {
            st,
            slot,
            tag: (id << TAG_SLOT_BITS) | k as u64,
            j: self,
            pmem,
            alloc,
            pends: false,
            pend_shards: 0,
            stats,
            pos: JOURNAL_RECORDS_OFF,
            records: 0,
            need_fence: false,
            freed: false,
            raises: 0,
            _nofs: nofs,
        }
    }
}

/// An open transaction; commits when dropped (or by [`Tx::commit`]).
pub(crate) struct Tx<'a> {
    st: Guard<'a, JState>,
    slot: &'a Slot,
    /// This transaction's [`Inode::tx_tag`].
    tag: u64,
    j: &'a Journal,
    pmem: &'a Pmem,
    alloc: &'a Allocators,
    /// This transaction freed a block or inode slot, pending in the
    /// allocator until [`Allocators::release`] after the commit, in the
    /// shards of `pend_shards` (a bit each).
    pends: bool,
    pend_shards: u64,
    stats: &'a Stats,
    /// Where the next record goes, inside the area.
    pos: usize,
    records: usize,
    /// Records written since the last fence.
    need_fence: bool,
    /// A block was freed: none may be allocated in this transaction.
    pub(crate) freed: bool,
    /// A format version this transaction raised the superblock to (0:
    /// none): `Journal::version` follows once it commits
    /// ([`crate::super_::FsInfo::raise_version_on_commit`]).
    pub(crate) raises: u32,
    _nofs: NoFs,
}

/// Space a caller keeps for the final inode update of a long operation.
pub(crate) const RESERVE: usize = 4096;

impl<'a> Tx<'a> {
    pub(crate) fn pmem(&self) -> &'a Pmem {
        self.pmem
    }

    pub(crate) fn count(&self, c: Counter) {
        self.stats.inc(c)
    }

    /// This transaction's tag (see [`Inode::tx_tag`]).
    pub(crate) fn tag(&self) -> u64 {
        self.tag
    }

    /// The journal area this transaction runs in.
    pub(crate) fn area(&self) -> u64 {
        self.tag & ((1 << TAG_SLOT_BITS) - 1)
    }

    /// Journal bytes still free in this transaction.
    pub(crate) fn room(&self) -> usize {
        self.slot.len - self.pos
    }

    /// Append a record of the current bytes at `target..target+n`.
    fn log(&mut self, target: u64, n: usize) -> Result {
        self.append(target, n, None)
    }

    /// Append a record: of the `n` bytes now at `target`, or (`masked`)
    /// a masked record with that data (`n` is its length).
    fn append(&mut self, target: u64, n: usize, masked: Option<&[u8]>) -> Result {
        if n == 0 || n > RECORD_MAX_DATA {
            return Err(EINVAL);
        }
        let size = format::record_size(n);
        if size > self.room() {
            pr_err!(
                "journal: transaction too large ({} records)\n",
                self.records
            );
            return Err(ENOSPC);
        }
        // Bounded at mount (JOURNAL_SEQ_MAX); 2^62 more would take centuries.
        let seq = self.st.seq_done.checked_add(1).ok_or(EIO)?;
        let rec = self.slot.start + self.pos as u64;
        let data_at = rec + RECORD_HEADER_SIZE as u64;
        let mut h = RecordHeader::new(seq, target, &[]);
        h.len
            .set(n as u32 | if masked.is_some() { RECORD_MASKED } else { 0 });
        let mut check = fnv1a64_update(
            format::FNV1A64_INIT,
            &h.as_bytes()[..RECORD_HEADER_SIZE - 4],
        );
        if let Some(d) = masked {
            check = fnv1a64_update(check, d);
            self.pmem.write(data_at, d)?;
        } else {
            let mut buf = [0u8; 128];
            let mut done = 0;
            while done < n {
                let k = core::cmp::min(buf.len(), n - done);
                self.pmem.read(target + done as u64, &mut buf[..k])?;
                check = fnv1a64_update(check, &buf[..k]);
                self.pmem.write(data_at + done as u64, &buf[..k])?;
                done += k;
            }
        }
        h.crc.set(record_check(check));
        self.pmem.write(rec, h.as_bytes())?;
        self.pmem.flush(rec, RECORD_HEADER_SIZE + n)?;
        self.pos += size;
        self.records += 1;
        self.need_fence = true;
        Ok(())
    }

    /// Logged change of the bits `mask` of the aligned 8-byte word at
    /// `off` to those of `bits` (a bitmap word: the caller holds the
    /// allocator, so no other change of the word runs meanwhile). With
    /// several journal areas the record is masked, so that it undoes only
    /// these bits (see the module comment).
    pub(crate) fn write_bits(&mut self, off: u64, mask: u64, bits: u64) -> Result {
        let v = self.pmem.read_u64(off)?;
        if self.j.masked {
            let d = masked_data(mask, v);
            self.append(off, d.len(), Some(&d))?;
        } else {
            self.log(off, 8)?;
        }
        self.ready();
        self.pmem
            .write_u64_atomic(off, (v & !mask) | (bits & mask))?;
        self.pmem.flush(off, 8)?;
        Ok(())
    }

    /// Take `inode`'s `map_lock` and own the inode until this transaction
    /// commits: if another transaction still running owns it, sleep (with
    /// `map_lock` released) until that one has committed. Every change of
    /// an inode's slot or block map is made through this (lock order 6b).
    pub(crate) fn lock_inode<'i>(&mut self, inode: &'i Inode) -> MutexGuard<'i> {
        loop {
            let g = inode.map_lock().lock();
            let t = inode.tx_tag().load(Ordering::Acquire);
            if t == self.tag || !self.j.in_flight(t) {
                if t != self.tag && self.pends {
                    // Could deadlock: a transaction that owns this inode
                    // may wait for our pending frees (`Tx::alloc`).
                    pr_err!("internal error: inode {} taken after a free\n", inode.ino());
                }
                inode.tx_tag().store(self.tag, Ordering::Release);
                return g;
            }
            drop(g);
            self.j.wait(t);
        }
    }

    /// Run `f` on the allocator (whose calls each lock the shards they
    /// need). If it finds no room while another transaction's frees are
    /// pending, wait for that one to commit and run `f` again: the space is
    /// about to be free. Only a transaction with no frees of its own waits
    /// (`pends`), so no two wait for each other: a transaction waited for
    /// is one that freed, which never waits.
    pub(crate) fn alloc<R>(
        &mut self,
        mut f: impl FnMut(&'a Allocators, &mut Tx<'a>) -> Result<R>,
    ) -> Result<R> {
        let allocs = self.alloc;
        loop {
            let r = f(allocs, self);
            if self.pends || !matches!(&r, Err(e) if *e == ENOSPC) {
                return r;
            }
            let j = self.j;
            let Some(t) = allocs.pending_other(self.tag, |t| j.in_flight(t)) else {
                return r;
            };
            self.count(Counter::PendingWaits);
            self.j.wait(t);
        }
    }

    /// Run `f` once with a freer ([`Allocators::frees`]), no retry: for
    /// frees (which never want room), several of them with the stores
    /// between them. `f` must not wait for anything (another transaction,
    /// an inode, an allocator shard other than through the freer): the
    /// freer holds a shard (lock 8).
    pub(crate) fn with_frees<R>(&mut self, f: impl FnOnce(&mut Frees<'a>, &mut Tx<'a>) -> R) -> R {
        let mut frees = self.alloc.frees();
        f(&mut frees, self)
    }

    /// A free of this transaction is pending in allocator shard `k`.
    pub(crate) fn pend_in(&mut self, k: usize) {
        self.pends = true;
        self.pend_shards |= 1 << k;
    }

    /// Records before the in-place stores they protect.
    fn ready(&mut self) {
        if self.need_fence {
            self.pmem.fence();
            self.need_fence = false;
        }
    }

    /// Logged store of `data` at `off` (written back, not yet fenced).
    pub(crate) fn write(&mut self, off: u64, data: &[u8]) -> Result {
        self.log(off, data.len())?;
        self.ready();
        self.pmem.write_flush(off, data)
    }

    /// Logged aligned 4-byte store.
    pub(crate) fn write_u32(&mut self, off: u64, v: u32) -> Result {
        self.log(off, 4)?;
        self.ready();
        self.pmem.write_u32_atomic(off, v)?;
        self.pmem.flush(off, 4)?;
        Ok(())
    }

    /// Logged zeroing of `off..off+n` (`n` at most a block).
    pub(crate) fn zero(&mut self, off: u64, n: usize) -> Result {
        self.log(off, n)?;
        self.ready();
        self.pmem.zero_flush(off, n)
    }

    /// Unlogged store into a block this transaction allocated.
    pub(crate) fn write_fresh(&mut self, off: u64, data: &[u8]) -> Result {
        self.pmem.write_flush(off, data)
    }

    /// Unlogged zeroing of a block this transaction allocated.
    pub(crate) fn zero_fresh(&mut self, off: u64, n: usize) -> Result {
        self.pmem.zero_flush(off, n)
    }

    fn finish(&mut self) -> Result {
        if self.records == 0 {
            return Ok(());
        }
        if let Some(t) = self.pmem.trace() {
            // Test only (`trace_tx_delay`): let other transactions run now.
            t.tx_delay();
        }
        // Every in-place store was written back; order them before the commit.
        self.pmem.fence();
        let seq = self.st.seq_done.checked_add(1).ok_or(EIO)?;
        let at = self.slot.start + JOURNAL_SEQ_DONE_OFF as u64;
        self.pmem.write_u64_atomic(at, seq)?;
        self.pmem.flush(at, 8)?;
        self.pmem.fence();
        self.st.seq_done = seq;
        self.records = 0;
        self.pos = JOURNAL_RECORDS_OFF;
        if self.raises != 0 {
            self.j
                .version
                .fetch_max(self.raises, core::sync::atomic::Ordering::Relaxed);
            self.raises = 0;
        }
        Ok(())
    }

    /// Commit now and report a failure (dropping commits too, silently).
    pub(crate) fn commit(mut self) -> Result {
        self.finish()
    }
}

impl Drop for Tx<'_> {
    fn drop(&mut self) {
        match self.finish() {
            // Before `running` clears: a transaction waiting in `Tx::alloc`
            // for these frees finds them released when it wakes.
            Ok(()) if self.pends => self.alloc.release(self.tag, self.pend_shards),
            Ok(()) => {}
            // Not committed: what it freed stays pending, out of use until
            // the next mount reads the bitmap again.
            Err(e) => pr_err!("journal: commit failed: {:?}\n", e),
        }
        // SAFETY: `running` is boxed and lives as long as the journal; the
        // store is WRITE_ONCE, then a full barrier and the wake-up.
        unsafe { crate::sys::ferrofs_set_var_wake(self.slot.running.as_ptr(), 0) };
        // The area's mutex (`st`) is released after this.
    }
}
