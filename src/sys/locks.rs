// SPDX-License-Identifier: GPL-2.0
//! Thin RAII wrappers over the kernel's `rw_semaphore` and `mutex`.
//!
//! ferrofs lock order (outermost first); every path takes a prefix of it:
//!
//! 1. `i_rwsem` (VFS inode lock: write, truncate, fallocate, directory ops)
//!    1b. `xattr_lock` (per inode rwsem): exclusive around an extended
//!    attribute change, which then opens a transaction (6, 7, 8); shared
//!    around a read, which takes nothing else. A read may come with any
//!    `i_rwsem` held (ACL checks); nothing takes it with 2-10 held.
//! 2. `mmap_lock` (held by the core around faults)
//! 3. `invalidate_lock` (mapping): shared in faults and the fsync walk,
//!    exclusive in truncate, hole punch and eviction
//! 4. `sync_lock` (per inode mutex): one writeback walk at a time, so a second
//!    fsync cannot return while the first is still flushing an entry it claimed
//! 5. `huge_lock` (per inode rwsem): shared in PTE faults, exclusive in PMD
//!    faults, so a PMD slot never holds a page table and a PMD leaf at once.
//!    Faults and the fsync walk take no lock against each other: a fault
//!    makes a PTE writable only if its entry is still marked, checked under
//!    the page-table lock (9) after a full barrier that pairs with the
//!    walk's between clearing marks and zapping (`dax.rs`, "Marks and write
//!    access without a lock")
//! 6. a journal area (per area mutex, `journal.rs`): held by the one
//!    transaction running in that area, from begin to commit; a thread
//!    holds at most one (quiescing takes all, in order, as subclasses). A
//!    transaction also sets memalloc_nofs, so reclaim never evicts one of
//!    our inodes while we hold it
//!    6b. inode ownership (not a lock lockdep sees): a transaction that
//!    changes an inode owns it until it commits (`Tx::lock_inode`); another
//!    transaction wanting it sleeps until then with `map_lock` released,
//!    holding only its own area and locks 1-5. Two transactions that each
//!    want an inode the other owns would deadlock: only a transaction under
//!    the VFS locks (1) of every inode it changes may change two or more
//!    inodes that other transactions can reach (create, link, unlink,
//!    rename, rmdir); every other one changes one inode
//! 7. `map_lock` (per inode mutex): block map and on-media inode updates
//! 8. an allocator shard (per shard mutex, about one shard per CPU, one
//!    lockdep class; `alloc.rs`): block bitmap and inode table allocation
//!    in the shard's ranges. A thread holds at most one: an allocation
//!    takes its CPU's shard, and only after letting it go the next one,
//!    when that had no room. Taken for one call to allocate or free (or
//!    for a run of up to 64 frees of one leaf block's pointers in one
//!    shard, with this transaction's pointer stores between them, which
//!    wait for nothing: `free_leaves`), and once more per shard after a
//!    freeing transaction's commit, to release what it freed (pending until
//!    then). An allocation that finds no room in any shard while another
//!    transaction's frees are pending holds no shard and waits for that
//!    commit, holding 1-7 of its own; so a transaction that freed takes no
//!    inode after that (6b) and never waits so itself: a transaction waited
//!    for never waits for another transaction
//! 9. `i_mmap_rwsem` (unmap_mapping_range), then page-table locks: taken by
//!    the core inside any of the above (the walk's zap under `sync_lock`,
//!    truncate's under `map_lock`; the PTE upgrade of a write fault takes
//!    the page-table lock of the fault address under `huge_lock` shared,
//!    without i_mmap, and reads the XArray mark inside it)
//! 10. the XArray spinlock; the page's refcount wait queue (a truncate waiting
//!     for a pinned page sleeps with `i_rwsem` held and the invalidate lock
//!     *released*, as ext4_break_layouts does)

use core::marker::PhantomData;
use kernel::bindings;
use kernel::types::Opaque;

/// A kernel `rw_semaphore` owned by someone else (the VFS or our inode).
#[repr(transparent)]
pub(crate) struct RwSem(Opaque<bindings::rw_semaphore>);

pub(crate) struct ReadGuard<'a>(&'a RwSem);
pub(crate) struct WriteGuard<'a>(&'a RwSem);

impl RwSem {
    /// View an initialised C rw_semaphore.
    ///
    /// # Safety
    /// `p` points to an initialised `rw_semaphore` that outlives `'a`.
    pub(crate) unsafe fn from_raw<'a>(p: *mut bindings::rw_semaphore) -> &'a RwSem {
        // SAFETY: RwSem is a transparent wrapper; validity is the caller's promise.
        unsafe { &*(p as *const RwSem) }
    }
    pub(crate) fn as_ptr(&self) -> *mut bindings::rw_semaphore {
        self.0.get()
    }
    pub(crate) fn read(&self) -> ReadGuard<'_> {
        // SAFETY: the semaphore is initialised (type invariant).
        unsafe { bindings::down_read(self.0.get()) };
        ReadGuard(self)
    }
    pub(crate) fn write(&self) -> WriteGuard<'_> {
        // SAFETY: the semaphore is initialised (type invariant).
        unsafe { bindings::down_write(self.0.get()) };
        WriteGuard(self)
    }
}
impl WriteGuard<'_> {
    /// The semaphore this guard holds for write.
    pub(crate) fn sem(&self) -> &RwSem {
        self.0
    }
}
impl Drop for ReadGuard<'_> {
    fn drop(&mut self) {
        // SAFETY: this guard holds the semaphore for read.
        unsafe { bindings::up_read(self.0 .0.get()) };
    }
}
impl Drop for WriteGuard<'_> {
    fn drop(&mut self) {
        // SAFETY: this guard holds the semaphore for write.
        unsafe { bindings::up_write(self.0 .0.get()) };
    }
}

/// A kernel `mutex` embedded in a structure that never moves once initialised.
#[repr(transparent)]
pub(crate) struct RawMutex(Opaque<bindings::mutex>);

pub(crate) struct MutexGuard<'a>(&'a RawMutex, PhantomData<*mut ()>);

impl RawMutex {
    pub(crate) fn as_ptr(&self) -> *mut bindings::mutex {
        self.0.get()
    }
    pub(crate) fn lock(&self) -> MutexGuard<'_> {
        // SAFETY: the mutex was initialised by its owner before any use.
        unsafe { bindings::mutex_lock(self.0.get()) };
        MutexGuard(self, PhantomData)
    }
    /// The mutex if it is free now, without sleeping.
    pub(crate) fn try_lock(&self) -> Option<MutexGuard<'_>> {
        // SAFETY: the mutex was initialised by its owner before any use.
        if unsafe { bindings::mutex_trylock(self.0.get()) } != 0 {
            Some(MutexGuard(self, PhantomData))
        } else {
            None
        }
    }
    /// As `lock`, in lockdep subclass `sub` (one of several mutexes of one
    /// class held at once, always taken in the same order).
    pub(crate) fn lock_nested(&self, sub: u32) -> MutexGuard<'_> {
        // SAFETY: the mutex was initialised by its owner before any use.
        unsafe { super::ferrofs_mutex_lock_nested(self.0.get(), sub) };
        MutexGuard(self, PhantomData)
    }
}
impl Drop for MutexGuard<'_> {
    fn drop(&mut self) {
        // SAFETY: this guard holds the mutex.
        unsafe { bindings::mutex_unlock(self.0 .0.get()) };
    }
}

/// A mutex guarding `T`, with the C mutex in its own allocation so that the
/// owner may move. Used for per-mount state.
pub(crate) struct Mutex<T> {
    raw: kernel::alloc::KBox<LineMutex>,
    data: core::cell::UnsafeCell<T>,
}

// SAFETY: access to `data` is serialised by the mutex.
unsafe impl<T: Send> Send for Mutex<T> {}
// SAFETY: access to `data` is serialised by the mutex.
unsafe impl<T: Send> Sync for Mutex<T> {}

/// A C mutex alone in its cache line(s): the mutexes of journal areas and
/// allocator shards are taken by different CPUs side by side, and
/// kmalloc would put small ones next to each other.
#[repr(align(64))]
struct LineMutex(RawMutex);

pub(crate) struct Guard<'a, T> {
    _g: MutexGuard<'a>,
    data: &'a core::cell::UnsafeCell<T>,
}

impl<T> Mutex<T> {
    /// A mutex with its own initialiser (and so its own lockdep class).
    /// `init` must initialise the C mutex it is given (a shim that calls
    /// `mutex_init`).
    pub(crate) fn new_with(
        v: T,
        init: unsafe extern "C" fn(*mut bindings::mutex),
    ) -> kernel::error::Result<Self> {
        let raw = kernel::alloc::KBox::new(
            LineMutex(RawMutex(Opaque::uninit())),
            kernel::alloc::flags::GFP_KERNEL,
        )?;
        // SAFETY: `raw` is a fresh heap allocation that is never moved; the
        // shim initialises it exactly once.
        unsafe { init(raw.0.as_ptr()) };
        Ok(Mutex {
            raw,
            data: core::cell::UnsafeCell::new(v),
        })
    }
    pub(crate) fn lock(&self) -> Guard<'_, T> {
        Guard {
            _g: self.raw.0.lock(),
            data: &self.data,
        }
    }
    pub(crate) fn try_lock(&self) -> Option<Guard<'_, T>> {
        Some(Guard {
            _g: self.raw.0.try_lock()?,
            data: &self.data,
        })
    }
    pub(crate) fn lock_nested(&self, sub: u32) -> Guard<'_, T> {
        Guard {
            _g: self.raw.0.lock_nested(sub),
            data: &self.data,
        }
    }
}

impl<T> core::ops::Deref for Guard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the guard holds the mutex, so no one else accesses the data.
        unsafe { &*self.data.get() }
    }
}
impl<T> core::ops::DerefMut for Guard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: the guard holds the mutex, so no one else accesses the data.
        unsafe { &mut *self.data.get() }
    }
}
