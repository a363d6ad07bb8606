// SPDX-License-Identifier: GPL-2.0
//! Access to the persistent memory of a mounted device.
//!
//! [`Pmem`] is the only way the filesystem reads or writes the medium. Every
//! access is bounds-checked against the mapped length, so a corrupt image can
//! make an operation fail with `EIO` but never reach outside the device.
//!
//! The persistence primitives ([`Pmem::flush`], [`fence`], the flushing
//! copies) are named, non-inlined functions: a trace or checker can hook them.

use super::trace::Trace;
use crate::format::Pod;
use kernel::bindings;
use kernel::error::{code::*, Result};

pub(crate) const CACHELINE: usize = 64;

/// The cache-line write-back instruction chosen at mount from CPU features.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum FlushInsn {
    Clwb,
    Clflushopt,
    Clflush,
}

impl FlushInsn {
    pub(crate) fn detect() -> FlushInsn {
        // SAFETY: reads boot CPU feature bits; no preconditions.
        match unsafe { super::ferrofs_flush_insn() } {
            2 => FlushInsn::Clwb,
            1 => FlushInsn::Clflushopt,
            _ => FlushInsn::Clflush,
        }
    }
    pub(crate) fn name(self) -> &'static str {
        match self {
            FlushInsn::Clwb => "clwb",
            FlushInsn::Clflushopt => "clflushopt",
            FlushInsn::Clflush => "clflush",
        }
    }
}

/// A device mapped with `dax_direct_access`: `len` bytes at kernel address
/// `base`, whose first page is page frame `pfn0`.
pub(crate) struct Pmem {
    base: *mut u8,
    len: usize,
    pfn0: u64,
    insn: FlushInsn,
    /// Test-only persistence trace (`-o trace=MiB`).
    trace: Option<Trace>,
}

// SAFETY: `Pmem` holds a raw pointer to the device's kernel mapping, valid
// for the mount's lifetime (the mount holds the dax device), and hands out no
// references into it except through `unsafe fn slice`, whose callers promise
// no concurrent writer. Every other access is a raw-pointer copy of its own,
// so sharing a `Pmem` between threads is sound as long as concurrent accesses
// to the same bytes are data-race free, which the filesystem ensures this way:
// - a field that is read without the lock its writers hold (block pointers in
//   the inode and in indirect blocks, read by faults and read(2)) is an
//   aligned word, written with one aligned store ([`Pmem::write`] stores
//   every aligned word of a range whole, `write_u32_atomic`) and read with
//   one aligned load ([`Pmem::read_u32`]): the kernel's WRITE_ONCE/READ_ONCE;
// - every other metadata byte is written under the inode's `map_lock` or
//   the journal mutexes and the mutex of the allocator shard that owns it
//   (bitmap words, inode slots while free), and read under them or when no writer
//   can exist (mount, an inode being loaded under I_NEW);
// - file data is the user's: concurrent read/write/mmap of the same bytes
//   races exactly as it does on memory shared with user space.
unsafe impl Send for Pmem {}
// SAFETY: as above.
unsafe impl Sync for Pmem {}

impl Pmem {
    /// # Safety
    /// `base..base+len` must be a kernel mapping of the device that stays valid
    /// until the `Pmem` is dropped, and `pfn0` the frame of `base`.
    pub(crate) unsafe fn new(base: *mut u8, len: usize, pfn0: u64, insn: FlushInsn) -> Pmem {
        Pmem {
            base,
            len,
            pfn0,
            insn,
            trace: None,
        }
    }

    /// Record every store, flush and fence from now on.
    pub(crate) fn set_trace(&mut self, t: Trace) {
        self.trace = Some(t);
    }

    pub(crate) fn trace(&self) -> Option<&Trace> {
        self.trace.as_ref()
    }

    pub(crate) fn len(&self) -> u64 {
        self.len as u64
    }

    fn range(&self, off: u64, n: usize) -> Result<*mut u8> {
        let end = off.checked_add(n as u64).ok_or(EIO)?;
        if end > self.len as u64 {
            return Err(EIO);
        }
        // SAFETY: off + n <= len, so the result stays within the mapping.
        Ok(unsafe { self.base.add(off as usize) })
    }

    /// Copy `off..off+buf.len()` out with the machine-check-safe copy: a
    /// poisoned line gives `EIO`, not a machine check in the kernel.
    pub(crate) fn read(&self, off: u64, buf: &mut [u8]) -> Result {
        let p = self.range(off, buf.len())?;
        // copy_mc_to_kernel returns the number of bytes it could not copy.
        // SAFETY: `p..p+len` is inside the mapping (checked); `buf` is ours
        // and cannot overlap the device mapping.
        let left = unsafe {
            super::ferrofs_copy_mc(buf.as_mut_ptr().cast(), p.cast_const().cast(), buf.len())
        };
        if left != 0 {
            kernel::pr_err!(
                "media error reading {} bytes at offset {}\n",
                buf.len(),
                off
            );
            return Err(EIO);
        }
        Ok(())
    }

    /// Plain stores: not durable until flushed and fenced. Every naturally
    /// aligned 8-, 4- and 2-byte word of the range is written with one
    /// store of its width, so a lockless reader of an aligned field (a block
    /// pointer) sees its old or its new value, never a mix.
    #[inline(never)]
    pub(crate) fn write(&self, off: u64, data: &[u8]) -> Result {
        let p = self.range(off, data.len())?;
        // SAFETY: `p..p+len` is inside the mapping (checked) and `data`, a
        // Rust slice, cannot overlap it.
        unsafe { store_words(p, data.as_ptr(), data.len()) };
        if let Some(t) = &self.trace {
            t.store(off, data);
        }
        Ok(())
    }

    /// A view of `off..off+n`.
    ///
    /// # Safety
    /// Nothing may write `off..off+n` (through this `Pmem`, a user mapping
    /// or the device) while the returned slice lives: a Rust reference
    /// promises unchanging bytes. The journal at mount, before the
    /// superblock is live, is such a region.
    pub(crate) unsafe fn slice(&self, off: u64, n: usize) -> Result<&[u8]> {
        let p = self.range(off, n)?;
        // SAFETY: `p..p+n` is inside the mapping (checked), which lives as
        // long as `self`; no writer, by the caller's contract.
        Ok(unsafe { core::slice::from_raw_parts(p, n) })
    }

    /// Plain stores copying `n` bytes from `from` to `to` (not overlapping).
    #[inline(never)]
    pub(crate) fn copy_within(&self, from: u64, to: u64, n: usize) -> Result {
        let src = self.range(from, n)?;
        let dst = self.range(to, n)?;
        if from < to + n as u64 && to < from + n as u64 {
            return Err(EINVAL);
        }
        // SAFETY: both ranges are inside the mapping (checked) and disjoint.
        unsafe { store_words(dst, src, n) };
        if let Some(t) = &self.trace {
            // SAFETY: `dst..dst+n` is inside the mapping, just written.
            t.store(to, unsafe { core::slice::from_raw_parts(dst, n) });
        }
        Ok(())
    }

    #[inline(never)]
    pub(crate) fn zero(&self, off: u64, n: usize) -> Result {
        let p = self.range(off, n)?;
        // SAFETY: `p..p+n` is inside the mapping (checked).
        unsafe { core::ptr::write_bytes(p, 0, n) };
        if let Some(t) = &self.trace {
            t.zero(off, n);
        }
        Ok(())
    }

    /// A copy of the structure at `off` (machine-check safe, see `read`).
    /// Its fields are a snapshot only if no one changes them concurrently:
    /// fields read without the writers' lock must be read with `read_u32`.
    pub(crate) fn read_pod<T: Pod>(&self, off: u64) -> Result<T> {
        let mut v = core::mem::MaybeUninit::<T>::uninit();
        // SAFETY: the MaybeUninit is T::SIZE bytes of our own stack.
        let buf = unsafe { core::slice::from_raw_parts_mut(v.as_mut_ptr().cast::<u8>(), T::SIZE) };
        self.read(off, buf)?;
        // SAFETY: every byte was written by `read`; every bit pattern is a
        // valid T (Pod contract).
        Ok(unsafe { v.assume_init() })
    }

    /// One aligned 4-byte load (READ_ONCE): for block pointers and other
    /// words read without the lock their writers hold. Fails with `EIO` on
    /// an unaligned offset.
    pub(crate) fn read_u32(&self, off: u64) -> Result<u32> {
        let p = self.aligned(off, 4)?;
        // SAFETY: inside the mapping and 4-byte aligned (checked); writers
        // store such words whole (`write`, `write_u32_atomic`).
        Ok(u32::from_le(unsafe {
            core::ptr::read_volatile(p.cast::<u32>())
        }))
    }

    /// `off..off+n` inside the mapping and `n`-aligned: a store of `n <= 8`
    /// bytes there is atomic with respect to power failure on x86 (it cannot
    /// straddle a cache line).
    fn aligned(&self, off: u64, n: usize) -> Result<*mut u8> {
        if off % n as u64 != 0 {
            return Err(EIO);
        }
        self.range(off, n)
    }

    /// One atomic 4-byte store: publishes directory slots and block pointers.
    #[inline(never)]
    pub(crate) fn write_u32_atomic(&self, off: u64, v: u32) -> Result {
        let p = self.aligned(off, 4)?;
        // SAFETY: inside the mapping and 4-byte aligned (checked).
        unsafe { core::ptr::write_volatile(p.cast::<u32>(), v.to_le()) };
        if let Some(t) = &self.trace {
            t.store(off, &v.to_le_bytes());
        }
        Ok(())
    }

    /// One aligned 8-byte load (bitmap words, the journal's commit word).
    pub(crate) fn read_u64(&self, off: u64) -> Result<u64> {
        let p = self.aligned(off, 8)?;
        // SAFETY: inside the mapping and 8-byte aligned (checked).
        Ok(u64::from_le(unsafe {
            core::ptr::read_volatile(p.cast::<u64>())
        }))
    }

    /// One atomic 8-byte store: bitmap words.
    #[inline(never)]
    pub(crate) fn write_u64_atomic(&self, off: u64, v: u64) -> Result {
        let p = self.aligned(off, 8)?;
        // SAFETY: inside the mapping and 8-byte aligned (checked).
        unsafe { core::ptr::write_volatile(p.cast::<u64>(), v.to_le()) };
        if let Some(t) = &self.trace {
            t.store(off, &v.to_le_bytes());
        }
        Ok(())
    }

    /// Write back every cache line touching `off..off+n`. Returns the number of
    /// lines. Not ordered until [`fence`].
    #[inline(never)]
    pub(crate) fn flush(&self, off: u64, n: usize) -> Result<u64> {
        if n == 0 {
            return Ok(0);
        }
        let p = self.range(off, n)? as usize;
        let start = p & !(CACHELINE - 1);
        let end = p + n;
        // `range` checked p..p+n lies in the mapping, so neither overflows.
        let lines = (end - start).div_ceil(CACHELINE) as u64;
        // `range` checked that p..p+n lies in the device mapping, valid for
        // the Pmem's life; `start` only rounds p down within the same
        // (page-aligned) mapping.
        // SAFETY: so start..end is mapped, as flush_lines requires.
        unsafe { flush_lines(self.insn, start, end) };
        if let Some(t) = &self.trace {
            t.flush(off, n);
        }
        Ok(lines)
    }

    /// Stores then flush: `write` + `flush`, still unfenced.
    pub(crate) fn write_flush(&self, off: u64, data: &[u8]) -> Result {
        self.write(off, data)?;
        self.flush(off, data.len())?;
        Ok(())
    }

    pub(crate) fn zero_flush(&self, off: u64, n: usize) -> Result {
        self.zero(off, n)?;
        self.flush(off, n)?;
        Ok(())
    }

    /// The page frame of byte offset `off` (which must be page aligned).
    pub(crate) fn pfn(&self, off: u64) -> Result<u64> {
        self.range(off, crate::format::BLOCK_SIZE)?;
        Ok(self.pfn0 + (off >> crate::format::BLOCK_SHIFT))
    }

    /// Copy `n` bytes at `off` to a user iterator. Returns bytes copied.
    pub(crate) fn copy_to_iter(
        &self,
        off: u64,
        n: usize,
        iter: &mut super::vfs::IovIter,
    ) -> Result<usize> {
        let p = self.range(off, n)?;
        // Machine-check safe: a poisoned line ends the copy short.
        // SAFETY: `p..p+n` is inside the mapping (checked); the iterator is
        // valid for the duration of the call (IovIter invariant).
        let got = unsafe { super::ferrofs_copy_mc_to_iter(p as *const _, n, iter.as_ptr()) };
        if got < n {
            // A fault on the user's buffer or a media error: tell them apart
            // by reading the line it stopped at into the kernel.
            let mut line = [0u8; CACHELINE];
            let at = off + got as u64;
            let k = core::cmp::min(CACHELINE - (at as usize % CACHELINE), n - got);
            self.read(at, &mut line[..k])?;
        }
        Ok(got)
    }

    /// Copy `n` bytes from a user iterator into pmem with non-temporal stores
    /// (cache lines written back), ready for a [`fence`]. Returns bytes copied.
    #[inline(never)]
    pub(crate) fn copy_from_iter_flushcache(
        &self,
        off: u64,
        n: usize,
        iter: &mut super::vfs::IovIter,
    ) -> Result<usize> {
        let p = self.range(off, n)?;
        // SAFETY: `p..p+n` is inside the mapping (checked); the iterator is
        // valid for the duration of the call (IovIter invariant).
        let got = unsafe { bindings::_copy_from_iter_flushcache(p as *mut _, n, iter.as_ptr()) };
        if let Some(t) = &self.trace {
            // SAFETY: `p..p+got` (got <= n) is inside the mapping, just written.
            t.ntstore(off, unsafe { core::slice::from_raw_parts(p, got) });
        }
        Ok(got)
    }
}

/// Copy `n` bytes from `src` to `dst` (not overlapping), each naturally
/// aligned 8-, 4- or 2-byte word of the destination with one volatile store
/// of that width (WRITE_ONCE), the source read with unaligned loads.
///
/// # Safety
/// `src..src+n` readable, `dst..dst+n` writable, the two disjoint.
#[inline(always)]
unsafe fn store_words(dst: *mut u8, src: *const u8, n: usize) {
    let mut i = 0;
    while i < n {
        let a = dst as usize + i;
        let left = n - i;
        // In every arm `i + width <= n`, and the store is aligned to its
        // width (checked on `a`); the load is unaligned.
        // SAFETY: so both accesses stay inside the caller's ranges.
        unsafe {
            if a % 8 == 0 && left >= 8 {
                let v = core::ptr::read_unaligned(src.add(i).cast::<u64>());
                core::ptr::write_volatile(dst.add(i).cast::<u64>(), v);
                i += 8;
            } else if a % 4 == 0 && left >= 4 {
                let v = core::ptr::read_unaligned(src.add(i).cast::<u32>());
                core::ptr::write_volatile(dst.add(i).cast::<u32>(), v);
                i += 4;
            } else if a % 2 == 0 && left >= 2 {
                let v = core::ptr::read_unaligned(src.add(i).cast::<u16>());
                core::ptr::write_volatile(dst.add(i).cast::<u16>(), v);
                i += 2;
            } else {
                core::ptr::write_volatile(dst.add(i), *src.add(i));
                i += 1;
            }
        }
    }
}

/// Write back every cache line from `start` (line aligned) up to `end`:
/// one tight loop per instruction, so a 2 MiB extent is 32768 instructions
/// and a compare each, not a call and a match per line.
///
/// # Safety
/// `start..end` must lie in a live kernel mapping (the pmem mapping): a
/// flush of an unmapped address faults like a load.
#[inline(never)]
unsafe fn flush_lines(insn: FlushInsn, start: usize, end: usize) {
    let mut a = start;
    // Every `a` lies in `start..end`, mapped (the caller's promise); these
    // instructions only write back cache lines and do not modify memory.
    // SAFETY: as just said: each flushed address is mapped.
    unsafe {
        match insn {
            FlushInsn::Clwb => {
                while a < end {
                    core::arch::asm!("clwb [{0}]", in(reg) a, options(nostack, preserves_flags));
                    a += CACHELINE;
                }
            }
            FlushInsn::Clflushopt => {
                while a < end {
                    core::arch::asm!("clflushopt [{0}]", in(reg) a, options(nostack, preserves_flags));
                    a += CACHELINE;
                }
            }
            FlushInsn::Clflush => {
                while a < end {
                    core::arch::asm!("clflush [{0}]", in(reg) a, options(nostack, preserves_flags));
                    a += CACHELINE;
                }
            }
        }
    }
}

impl Pmem {
    /// Order all earlier flushes and non-temporal stores before later stores.
    #[inline(never)]
    pub(crate) fn fence(&self) {
        // SAFETY: `sfence` has no operands and no effect beyond store ordering.
        unsafe { core::arch::asm!("sfence", options(nostack, preserves_flags)) };
        if let Some(t) = &self.trace {
            t.fence();
        }
    }
}
