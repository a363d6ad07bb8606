// SPDX-License-Identifier: GPL-2.0
//! The persistence trace: a test-only record of every store, cache-line
//! write-back and fence the module issues to pmem, for the crash-state
//! checker (`tools/crashcheck`). Enabled per mount with `-o trace=MiB`; off,
//! it costs one branch per primitive.
//!
//! The trace is read from `/sys/fs/ferrofs/<dev>/trace` (format in
//! `tools/crashcheck`): a 32-byte header, then packed events. The workload
//! writes markers to `/sys/fs/ferrofs/<dev>/trace_mark`, and reports the
//! stores it made through MAP_SYNC mappings (which no hook sees) to
//! `trace_user` ([`Trace::user`]).
//!
//! The same hooks keep, per cache line of the device, whether the module
//! stored to it and has not yet written it back ("unflushed") or wrote it
//! back and has not yet fenced ("unfenced"). fsync asks [`Trace::unclean`]
//! about every line it was responsible for: the assertion that nothing it
//! acknowledged is still only in the CPU cache.

use core::pin::Pin;
use kernel::alloc::{KBox, VVec};
use kernel::error::{code::*, Result};
use kernel::init::InPlaceInit;
use kernel::new_spinlock;
use kernel::prelude::*;
use kernel::sync::SpinLock;

const STORE: u8 = 1;
const ZERO: u8 = 2;
const NTSTORE: u8 = 3;
const FLUSH: u8 = 4;
const FENCE: u8 = 5;
const MARK: u8 = 6;
pub(crate) const HEADER_SIZE: usize = 32;
const MAGIC: &[u8; 8] = b"FERROTRC";
/// 2: FLUSH, NTSTORE and FENCE carry the task (thread id) that issued them.
const VERSION: u32 = 2;

/// The current task's thread id (a fence orders that task's write-backs).
fn task() -> u32 {
    // SAFETY: reads `current`'s pid; no preconditions.
    unsafe { crate::sys::ferrofs_current_pid() }
}
const LINE_SHIFT: u32 = 6;
/// Lines written back since the last fence that are remembered one by one;
/// past that, a fence clears the whole map.
const UNFENCED_LIST: usize = 1 << 16;

struct Buf {
    ev: VVec<u8>,
    len: usize,
    overflow: bool,
    /// One bit per cache line of the device.
    unflushed: VVec<u64>,
    unfenced: VVec<u64>,
    list: VVec<u32>,
    list_len: usize,
    list_overflow: bool,
}

pub(crate) struct Trace {
    buf: Pin<KBox<SpinLock<Buf>>>,
    lines: u64,
    /// `trace_tx_delay`: microseconds every transaction sleeps before it
    /// commits (0: none). Test-only, to widen the window in which another
    /// transaction runs beside it, so crash states with two transactions in
    /// flight are many instead of rare.
    tx_delay_us: core::sync::atomic::AtomicU32,
}

fn bit(map: &[u64], line: u64) -> bool {
    map.get((line / 64) as usize)
        .is_some_and(|w| w & (1 << (line % 64)) != 0)
}
fn set_bit(map: &mut [u64], line: u64, on: bool) {
    if let Some(w) = map.get_mut((line / 64) as usize) {
        if on {
            *w |= 1 << (line % 64);
        } else {
            *w &= !(1 << (line % 64));
        }
    }
}

impl Buf {
    fn put(&mut self, parts: &[&[u8]]) {
        let n: usize = parts.iter().map(|p| p.len()).sum();
        if self.overflow || self.len + n > self.ev.len() {
            self.overflow = true;
            return;
        }
        for p in parts {
            self.ev.as_mut_slice()[self.len..self.len + p.len()].copy_from_slice(p);
            self.len += p.len();
        }
    }

    fn lines(off: u64, n: usize) -> core::ops::Range<u64> {
        if n == 0 {
            return 0..0;
        }
        (off >> LINE_SHIFT)..((off + n as u64 - 1) >> LINE_SHIFT) + 1
    }

    fn stored(&mut self, off: u64, n: usize) {
        for l in Self::lines(off, n) {
            set_bit(self.unflushed.as_mut_slice(), l, true);
        }
    }

    /// Written back (clwb of a stored line, or a non-temporal store): only a
    /// fence is missing.
    fn written_back(&mut self, off: u64, n: usize, nt: bool) {
        for l in Self::lines(off, n) {
            if !nt && !bit(self.unflushed.as_slice(), l) {
                continue;
            }
            set_bit(self.unflushed.as_mut_slice(), l, false);
            if !bit(self.unfenced.as_slice(), l) {
                set_bit(self.unfenced.as_mut_slice(), l, true);
                if self.list_len < self.list.len() {
                    self.list.as_mut_slice()[self.list_len] = l as u32;
                    self.list_len += 1;
                } else {
                    self.list_overflow = true;
                }
            }
        }
    }

    fn fenced(&mut self) {
        if self.list_overflow {
            self.unfenced.as_mut_slice().fill(0);
        } else {
            for i in 0..self.list_len {
                let l = self.list.as_slice()[i] as u64;
                set_bit(self.unfenced.as_mut_slice(), l, false);
            }
        }
        self.list_len = 0;
        self.list_overflow = false;
    }
}

impl Trace {
    /// A trace of up to `mib` MiB of events for a device of `dev_bytes`.
    pub(crate) fn new(mib: usize, dev_bytes: u64) -> Result<Trace> {
        let lines = dev_bytes >> LINE_SHIFT;
        let words = lines.div_ceil(64) as usize;
        let buf = Buf {
            ev: VVec::from_elem(0u8, mib << 20, GFP_KERNEL)?,
            len: 0,
            overflow: false,
            unflushed: VVec::from_elem(0u64, words, GFP_KERNEL)?,
            unfenced: VVec::from_elem(0u64, words, GFP_KERNEL)?,
            list: VVec::from_elem(0u32, UNFENCED_LIST, GFP_KERNEL)?,
            list_len: 0,
            list_overflow: false,
        };
        let buf = KBox::pin_init(new_spinlock!(buf, "ferrofs_trace"), GFP_KERNEL)?;
        Ok(Trace {
            buf,
            lines,
            tx_delay_us: core::sync::atomic::AtomicU32::new(0),
        })
    }

    /// See the field.
    pub(crate) fn set_tx_delay(&self, us: u32) {
        self.tx_delay_us
            .store(us, core::sync::atomic::Ordering::Relaxed);
    }

    /// While `trace_tx_delay` is set, allocations also take the lowest
    /// free block and inode slot (`alloc.rs`) instead of going on from the
    /// last one: what a transaction frees is then what the other thread's
    /// next allocation meets, while the free is still in flight, so crash
    /// states test that pending frees are passed over.
    pub(crate) fn low_first(&self) -> bool {
        self.tx_delay_us.load(core::sync::atomic::Ordering::Relaxed) > 0
    }

    /// Sleep as `trace_tx_delay` asks, before a commit.
    pub(crate) fn tx_delay(&self) {
        let us = self.tx_delay_us.load(core::sync::atomic::Ordering::Relaxed);
        if us > 0 {
            // SAFETY: a sleep; the one caller, `Tx::finish`, runs in process
            // context holding only mutexes (area, allocator, map_lock).
            unsafe { super::ferrofs_usleep(us as kernel::ffi::c_ulong) };
        }
    }

    /// Cached stores of `data` at `off`.
    pub(crate) fn store(&self, off: u64, data: &[u8]) {
        let mut b = self.buf.lock();
        b.put(&[
            &[STORE],
            &off.to_le_bytes(),
            &(data.len() as u32).to_le_bytes(),
            data,
        ]);
        b.stored(off, data.len());
    }

    pub(crate) fn zero(&self, off: u64, n: usize) {
        let mut b = self.buf.lock();
        b.put(&[&[ZERO], &off.to_le_bytes(), &(n as u32).to_le_bytes()]);
        b.stored(off, n);
    }

    /// Non-temporal stores: durable at the next fence of the same task.
    pub(crate) fn ntstore(&self, off: u64, data: &[u8]) {
        let task = task();
        let mut b = self.buf.lock();
        b.put(&[
            &[NTSTORE],
            &task.to_le_bytes(),
            &off.to_le_bytes(),
            &(data.len() as u32).to_le_bytes(),
            data,
        ]);
        b.written_back(off, data.len(), true);
    }

    pub(crate) fn flush(&self, off: u64, n: usize) {
        let task = task();
        let mut b = self.buf.lock();
        b.put(&[
            &[FLUSH],
            &task.to_le_bytes(),
            &off.to_le_bytes(),
            &(n as u32).to_le_bytes(),
        ]);
        b.written_back(off, n, false);
    }

    /// A fence orders the write-backs and non-temporal stores of the task
    /// that issues it (trace version 2 records the task with each of the
    /// three). The per-line state below (fsync's assertion) does not tell
    /// tasks apart: it is exact only with one task storing at a time.
    pub(crate) fn fence(&self) {
        let task = task();
        let mut b = self.buf.lock();
        b.put(&[&[FENCE], &task.to_le_bytes()]);
        b.fenced();
    }

    /// User-space stores at device offset `off`, written back by the user
    /// (clwb): a STORE and a FLUSH event. `off == u64::MAX` with no bytes:
    /// the user's fence. Test workloads report what they did through a
    /// MAP_SYNC mapping this way (sysfs `trace_user`), after doing it.
    pub(crate) fn user(&self, off: u64, data: &[u8]) -> Result {
        if off == u64::MAX && data.is_empty() {
            self.fence();
            return Ok(());
        }
        let end = off.checked_add(data.len() as u64).ok_or(EINVAL)?;
        if data.is_empty() || end > self.lines << LINE_SHIFT {
            return Err(EINVAL);
        }
        self.store(off, data);
        self.flush(off, data.len());
        Ok(())
    }

    pub(crate) fn mark(&self, v: u64) {
        self.buf.lock().put(&[&[MARK], &v.to_le_bytes()]);
    }

    /// Treat `off..off+n` as stored to by the module: the lines an fsync
    /// found dirty in the XArray (user stores are not traced).
    pub(crate) fn note_dirty(&self, off: u64, n: usize) {
        self.buf.lock().stored(off, n);
    }

    /// Lines of `off..off+n` not yet written back and fenced. Word at a
    /// time: the MAP_SYNC check asks about the whole metadata area.
    pub(crate) fn unclean(&self, off: u64, n: usize) -> u64 {
        let b = self.buf.lock();
        let r = Buf::lines(off, n);
        let end = core::cmp::min(r.end, self.lines);
        let mut l = r.start;
        let mut count = 0u64;
        while l < end {
            let w = (l / 64) as usize;
            let at = l % 64;
            let take = core::cmp::min(64 - at, end - l);
            let mask = if take == 64 {
                !0u64
            } else {
                ((1u64 << take) - 1) << at
            };
            let bits = b.unflushed.as_slice().get(w).copied().unwrap_or(0)
                | b.unfenced.as_slice().get(w).copied().unwrap_or(0);
            count += (bits & mask).count_ones() as u64;
            l += take;
        }
        count
    }

    /// Copy trace bytes from `pos` (header included) into `out`.
    pub(crate) fn read(&self, pos: usize, out: &mut [u8]) -> usize {
        let b = self.buf.lock();
        let mut h = [0u8; HEADER_SIZE];
        h[..8].copy_from_slice(MAGIC);
        h[8..12].copy_from_slice(&VERSION.to_le_bytes());
        h[12..16].copy_from_slice(&(b.overflow as u32).to_le_bytes());
        h[16..24].copy_from_slice(&(b.len as u64).to_le_bytes());
        let total = HEADER_SIZE + b.len;
        let mut n = 0;
        let mut p = pos;
        while n < out.len() && p < total {
            let (src, at) = if p < HEADER_SIZE {
                (&h[..], p)
            } else {
                (&b.ev.as_slice()[..b.len], p - HEADER_SIZE)
            };
            let k = core::cmp::min(out.len() - n, src.len() - at);
            out[n..n + k].copy_from_slice(&src[at..at + k]);
            n += k;
            p += k;
        }
        n
    }
}
