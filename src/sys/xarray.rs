// SPDX-License-Identifier: GPL-2.0
//! The per-inode dirty-tracking XArray.
//!
//! Index: the file's page offset. Entry: a value entry holding the pmem block
//! that backs the page. `XA_MARK_0` (DIRTY) is set when a store can reach the
//! page through a writable PTE, and cleared by the writeback walk just before
//! it write-protects and flushes the page.

use kernel::bindings;
use kernel::error::{Error, Result};
use kernel::types::Opaque;

const XA_MARK_DIRTY: bindings::xa_mark_t = 0;
const XA_PRESENT: bindings::xa_mark_t = 8;
const MAX_ERRNO: u64 = 4095;

#[repr(transparent)]
pub(crate) struct XArray(Opaque<bindings::xarray>);

fn mk_value(v: u64) -> *mut core::ffi::c_void {
    ((v << 1) | 1) as usize as *mut core::ffi::c_void
}

/// The block in a value entry, or None for NULL or a non-value entry.
fn to_value(e: *mut core::ffi::c_void) -> Option<u64> {
    let v = e as usize as u64;
    if v & 1 == 1 {
        Some(v >> 1)
    } else {
        None
    }
}

fn xa_err(e: *mut core::ffi::c_void) -> Result {
    let v = e as usize as u64;
    // Internal entries are ...10; errors are xa_mk_internal(-errno).
    if v & 3 == 2 && v >= ((-(MAX_ERRNO as i64)) as u64) << 2 {
        let errno = (v as i64) >> 2;
        return Err(Error::from_errno(errno as i32));
    }
    Ok(())
}

/// What the writeback walk found when it revalidated a hint under the lock.
pub(crate) enum Claim {
    /// Present, same block, marked: the mark is now cleared and the caller owns
    /// the flush.
    Claimed,
    /// Gone, moved to another block, or no longer marked.
    Dropped,
}

impl XArray {
    pub(crate) fn as_ptr(&self) -> *mut bindings::xarray {
        self.0.get()
    }

    fn lock(&self) -> XaLockGuard<'_> {
        // SAFETY: the xarray (and its spinlock) is initialised by the inode's
        // constructor before any use.
        unsafe { bindings::spin_lock(core::ptr::addr_of_mut!((*self.0.get()).xa_lock)) };
        XaLockGuard(self)
    }

    /// Record that `index` is backed by `block` and may be dirty. Returns true
    /// if the entry was not marked before (a new dirty entry).
    ///
    /// A fault that finds the entry already `block` and marked takes no lock:
    /// the walk may clear the mark right after this look, but the fault
    /// checks the mark again under the page-table lock before it makes a PTE
    /// writable (`dax.rs`, "Marks and write access without a lock"), and
    /// marks again if it is gone. Otherwise one lock round: store the value
    /// if it is not there yet, then set the mark.
    pub(crate) fn mark_dirty(&self, index: u64, block: u64) -> Result<bool> {
        // SAFETY: valid xarray; xa_load and xa_get_mark take the RCU read
        // lock themselves.
        let marked = unsafe {
            to_value(bindings::xa_load(self.as_ptr(), index as _)) == Some(block)
                && bindings::xa_get_mark(self.as_ptr(), index as _, XA_MARK_DIRTY)
        };
        if marked {
            return Ok(false);
        }
        let _g = self.lock();
        // __xa_store may drop and retake the lock to allocate (GFP_KERNEL:
        // process context, a plain spinlock) and keeps the entry's marks; the
        // mark is tested and set after it, under the lock.
        // SAFETY: valid xarray, its lock held as __xa_store and __xa_set_mark
        // require.
        unsafe {
            let e = bindings::xa_load(self.as_ptr(), index as _);
            if to_value(e) != Some(block) {
                let old = bindings::__xa_store(
                    self.as_ptr(),
                    index as _,
                    mk_value(block),
                    bindings::GFP_KERNEL,
                );
                xa_err(old)?;
            }
            if bindings::xa_get_mark(self.as_ptr(), index as _, XA_MARK_DIRTY) {
                return Ok(false);
            }
            bindings::__xa_set_mark(self.as_ptr(), index as _, XA_MARK_DIRTY);
        }
        Ok(true)
    }

    /// The block recorded at `index`, if any (marked or not). Lockless.
    pub(crate) fn load(&self, index: u64) -> Option<u64> {
        // SAFETY: valid xarray; xa_load takes the RCU read lock itself.
        to_value(unsafe { bindings::xa_load(self.as_ptr(), index as _) })
    }

    /// Record that `index` is backed by `block`, leaving its mark as it is.
    pub(crate) fn record(&self, index: u64, block: u64) -> Result {
        // SAFETY: valid xarray; xa_store takes the lock, may allocate, and
        // keeps the entry's marks.
        let old = unsafe {
            bindings::xa_store(
                self.as_ptr(),
                index as _,
                mk_value(block),
                bindings::GFP_KERNEL,
            )
        };
        xa_err(old)
    }

    /// Lockless search for the next marked entry at or after `*index`, up to
    /// `last`. Only a hint: revalidate with [`XArray::claim`].
    pub(crate) fn next_dirty(&self, index: &mut u64, last: u64) -> Option<u64> {
        let mut i = *index as usize;
        // SAFETY: valid xarray; xa_find takes the RCU read lock itself.
        let e = unsafe { bindings::xa_find(self.as_ptr(), &mut i, last as usize, XA_MARK_DIRTY) };
        if e.is_null() {
            return None;
        }
        *index = i as u64;
        to_value(e)
    }

    /// Revalidate a hint under the XArray lock: still present, still `block`,
    /// still marked. If so, clear the mark.
    pub(crate) fn claim(&self, index: u64, block: u64) -> Claim {
        let _g = self.lock();
        // SAFETY: valid xarray; the lock is held for the load, the mark test
        // and __xa_clear_mark, so the three see one state.
        unsafe {
            let e = bindings::xa_load(self.as_ptr(), index as _);
            if to_value(e) != Some(block)
                || !bindings::xa_get_mark(self.as_ptr(), index as _, XA_MARK_DIRTY)
            {
                return Claim::Dropped;
            }
            bindings::__xa_clear_mark(self.as_ptr(), index as _, XA_MARK_DIRTY);
        }
        Claim::Claimed
    }

    /// Set the mark again on an entry just claimed, if it is still `block`.
    /// Returns whether it did.
    pub(crate) fn remark(&self, index: u64, block: u64) -> bool {
        let _g = self.lock();
        // SAFETY: valid xarray; the lock is held for the load and
        // __xa_set_mark, so the two see one state.
        unsafe {
            let e = bindings::xa_load(self.as_ptr(), index as _);
            if to_value(e) != Some(block) {
                return false;
            }
            bindings::__xa_set_mark(self.as_ptr(), index as _, XA_MARK_DIRTY);
        }
        true
    }

    /// Remove every entry in `first..=last`. Returns (removed, of which dirty).
    pub(crate) fn remove_range(&self, first: u64, last: u64) -> (u64, u64) {
        let mut removed = 0;
        let mut dirty = 0;
        let mut i = first as usize;
        loop {
            // SAFETY: valid xarray; xa_find takes the RCU read lock.
            let e = unsafe { bindings::xa_find(self.as_ptr(), &mut i, last as usize, XA_PRESENT) };
            if e.is_null() {
                break;
            }
            {
                let _g = self.lock();
                // SAFETY: lock held as __xa_erase requires.
                unsafe {
                    if bindings::xa_get_mark(self.as_ptr(), i, XA_MARK_DIRTY) {
                        dirty += 1;
                    }
                    bindings::__xa_erase(self.as_ptr(), i);
                }
            }
            removed += 1;
            if i as u64 >= last {
                break;
            }
            i += 1;
        }
        (removed, dirty)
    }

    /// Remove every entry in `first..=last`, calling `f(index, block,
    /// dirty)` for each (after its removal, without the lock).
    pub(crate) fn take_range(&self, first: u64, last: u64, f: &mut dyn FnMut(u64, u64, bool)) {
        let mut i = first as usize;
        loop {
            // SAFETY: valid xarray; xa_find takes the RCU read lock.
            let e = unsafe { bindings::xa_find(self.as_ptr(), &mut i, last as usize, XA_PRESENT) };
            if e.is_null() {
                break;
            }
            let taken = {
                let _g = self.lock();
                // SAFETY: lock held as __xa_erase requires; the load, the
                // mark test and the erase see one state.
                unsafe {
                    let cur = bindings::xa_load(self.as_ptr(), i);
                    let dirty = bindings::xa_get_mark(self.as_ptr(), i, XA_MARK_DIRTY);
                    bindings::__xa_erase(self.as_ptr(), i);
                    to_value(cur).map(|b| (b, dirty))
                }
            };
            if let Some((b, dirty)) = taken {
                f(i as u64, b, dirty);
            }
            if i as u64 >= last {
                break;
            }
            i += 1;
        }
    }

    /// Free the XArray's nodes. Entries are plain values; nothing else to free.
    pub(crate) fn destroy(&self) {
        // SAFETY: valid xarray; callers no longer use it concurrently.
        unsafe { bindings::xa_destroy(self.as_ptr()) };
    }
}

struct XaLockGuard<'a>(&'a XArray);
impl Drop for XaLockGuard<'_> {
    fn drop(&mut self) {
        // SAFETY: this guard holds the xarray spinlock.
        unsafe { bindings::spin_unlock(core::ptr::addr_of_mut!((*self.0 .0.get()).xa_lock)) };
    }
}
