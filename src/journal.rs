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
//! One transaction runs at a time (the journal mutex). It is short: one
//! metadata operation, or one bounded slice of a large truncate.

use crate::format::{
    self, fnv1a64_update, record_check, Geometry, JournalHeader, JournalState, Pod, RecordHeader,
    Records, BLOCK_SHIFT, BLOCK_SIZE, JOURNAL_RECORDS_OFF, JOURNAL_SEQ_DONE_OFF,
    RECORD_HEADER_SIZE, RECORD_MAX_DATA,
};
use crate::sys::locks::{Guard, Mutex};
use crate::sys::pmem::Pmem;
use crate::sys::NoFs;
use kernel::error::{code::*, Result};
use kernel::prelude::*;

pub(crate) struct Journal {
    state: Mutex<JState>,
    /// Byte offset and length of the journal region.
    start: u64,
    len: usize,
    /// The superblock's format version as committed (1 to 4; see
    /// `format::VERSION`): set at mount, raised when a transaction that
    /// raised the superblock commits (`FsInfo::raise_version`).
    pub(crate) version: core::sync::atomic::AtomicU32,
}

struct JState {
    seq_done: u64,
}

impl Journal {
    /// At mount, before anything else reads metadata: roll back the
    /// transaction a crash interrupted, if any. Fails on a damaged journal.
    pub(crate) fn recover(pmem: &Pmem, g: &Geometry) -> Result<Journal> {
        let start = g.journal_start << BLOCK_SHIFT;
        let len = g.journal_blocks as usize * BLOCK_SIZE;
        // At mount, before the superblock is live, no transaction, fault or
        // user mapping exists; the rollback below writes only the records'
        // targets, which `Records` checks lie outside the journal.
        // SAFETY: so nothing writes the journal while `region` lives.
        let region = unsafe { pmem.slice(start, len)? };
        let st = match JournalState::parse(region, g) {
            Ok(st) => st,
            Err(e) => {
                pr_err!("cannot mount: journal: {}\n", e.reason());
                return Err(EINVAL);
            }
        };
        let mut seq_done = st.seq_done;
        if st.pending > 0 {
            let mut recs = KVec::with_capacity(st.pending, GFP_KERNEL)?;
            for r in Records::new(region, st.seq_done, g) {
                let r = r.map_err(|_| EINVAL)?;
                recs.push((r.target, r.pos, r.data.len()), GFP_KERNEL)?;
            }
            // Newest first, so a range logged twice ends with its oldest bytes.
            for &(target, pos, n) in recs.iter().rev() {
                let from = start + (pos + RECORD_HEADER_SIZE) as u64;
                pmem.copy_within(from, target, n)?;
                pmem.flush(target, n)?;
            }
            pmem.fence();
            // parse() bounded seq_done far below u64::MAX.
            seq_done = seq_done.checked_add(1).ok_or(EINVAL)?;
            pmem.write_u64_atomic(start + JOURNAL_SEQ_DONE_OFF as u64, seq_done)?;
            pmem.flush(start, JOURNAL_RECORDS_OFF)?;
            pmem.fence();
            pr_info!(
                "journal: rolled back unfinished transaction {} ({} records)\n",
                seq_done,
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
        Ok(Journal {
            state: Mutex::new_with(JState { seq_done }, crate::sys::ferrofs_init_journal_mutex)?,
            start,
            len,
            version: core::sync::atomic::AtomicU32::new(0),
        })
    }

    /// Start a transaction: waits for the one in progress.
    /// Wait until the transaction running now, if any, has committed (or
    /// rolled back in memory). A lockless reader that saw a pointer a
    /// transaction published calls this before it promises durability
    /// (fsync, a MAP_SYNC fault): the publishing transaction held the
    /// journal mutex from before the pointer store until after its commit.
    pub(crate) fn barrier(&self) {
        drop(self.state.lock());
    }

    pub(crate) fn begin<'a>(&'a self, pmem: &'a Pmem) -> Tx<'a> {
        let nofs = NoFs::enter();
        Tx {
            st: self.state.lock(),
            j: self,
            pmem,
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
    j: &'a Journal,
    pmem: &'a Pmem,
    /// Where the next record goes, inside the region.
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

    /// Journal bytes still free in this transaction.
    pub(crate) fn room(&self) -> usize {
        self.j.len - self.pos
    }

    /// Append a record of the current bytes at `target..target+n`.
    fn log(&mut self, target: u64, n: usize) -> Result {
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
        let rec = self.j.start + self.pos as u64;
        let data_at = rec + RECORD_HEADER_SIZE as u64;
        let mut h = RecordHeader::new(seq, target, &[]);
        h.len.set(n as u32);
        let mut check = fnv1a64_update(
            format::FNV1A64_INIT,
            &h.as_bytes()[..RECORD_HEADER_SIZE - 4],
        );
        let mut buf = [0u8; 128];
        let mut done = 0;
        while done < n {
            let k = core::cmp::min(buf.len(), n - done);
            self.pmem.read(target + done as u64, &mut buf[..k])?;
            check = fnv1a64_update(check, &buf[..k]);
            self.pmem.write(data_at + done as u64, &buf[..k])?;
            done += k;
        }
        h.crc.set(record_check(check));
        self.pmem.write(rec, h.as_bytes())?;
        self.pmem.flush(rec, RECORD_HEADER_SIZE + n)?;
        self.pos += size;
        self.records += 1;
        self.need_fence = true;
        Ok(())
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

    /// Logged aligned 8-byte store.
    pub(crate) fn write_u64(&mut self, off: u64, v: u64) -> Result {
        self.log(off, 8)?;
        self.ready();
        self.pmem.write_u64_atomic(off, v)?;
        self.pmem.flush(off, 8)?;
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
        // Every in-place store was written back; order them before the commit.
        self.pmem.fence();
        let seq = self.st.seq_done.checked_add(1).ok_or(EIO)?;
        let at = self.j.start + JOURNAL_SEQ_DONE_OFF as u64;
        self.pmem.write_u64_atomic(at, seq)?;
        self.pmem.flush(at, 8)?;
        self.pmem.fence();
        self.st.seq_done = seq;
        self.records = 0;
        self.pos = JOURNAL_RECORDS_OFF;
        if self.raises != 0 {
            self.j.version.fetch_max(self.raises, core::sync::atomic::Ordering::Relaxed);
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
        if let Err(e) = self.finish() {
            pr_err!("journal: commit failed: {:?}\n", e);
        }
    }
}
