// SPDX-License-Identifier: GPL-2.0
//! VFS glue: the `file_system_type`, every operations table, and the
//! `extern "C"` trampolines that turn the kernel's raw pointers into the safe
//! handles ([`Inode`], [`Dentry`], [`VmFault`], ...) that the filesystem
//! modules work with. Errors come back as `Result` and are turned into errnos
//! (or `vm_fault_t`) here.
//!
//! # Safety of the trampolines
//! Every `unsafe extern "C" fn` below is called only by the kernel, through
//! the operations tables in this file, with the arguments that table's C
//! contract guarantees (live objects, the locks the VFS documents). Each one
//! states at its `unsafe` block which of those guarantees it relies on.
#![allow(clippy::missing_safety_doc)]

use super::locks::{RawMutex, RwSem, WriteGuard};
use super::xarray::XArray;
use crate::super_::FsInfo;
use kernel::bindings;
use kernel::error::{code::*, from_result, Error, Result};
use kernel::ffi::{c_char, c_int, c_long, c_uint, c_ulong, c_void};
use kernel::prelude::{KVec, GFP_KERNEL};
use kernel::types::Opaque;

/// `statfs` magic: "FRRF".
pub(crate) const FERROFS_MAGIC: u64 = 0x4652_5246;
const IOCB_DSYNC: c_int = 0x2;
const IOCB_SYNC: c_int = 0x4;
pub(crate) const FALLOC_FL_KEEP_SIZE: c_int = 0x01;
pub(crate) const FALLOC_FL_PUNCH_HOLE: c_int = 0x02;
pub(crate) const FALLOC_FL_ZERO_RANGE: c_int = 0x10;
const FMODE_CAN_ODIRECT: u32 = 1 << 22;
const SB_NOSEC: c_ulong = 1 << 28;
/// SB_POSIXACL (a BIT() macro bindgen drops; the shim asserts the value).
const SB_POSIXACL: c_ulong = 1 << 16;
/// ACL types (uapi/linux/posix_acl.h; asserted in the shim).
const ACL_TYPE_ACCESS: c_int = 0x8000;
const ACL_TYPE_DEFAULT: c_int = 0x4000;
const MAX_LFS_FILESIZE: i64 = i64::MAX;

// ---------------------------------------------------------------------------
// Inodes

/// A ferrofs in-memory inode: the VFS inode followed by our per-inode state.
/// Allocated by `alloc_inode`, freed (after RCU) by `free_inode`.
#[repr(C)]
pub(crate) struct Inode {
    vfs: Opaque<bindings::inode>,
    /// Dirty tracking for DAX mappings (see `dax.rs`).
    pub(crate) dirty: XArray,
    /// Dirty tracking of 2 MiB (PMD) mappings: index = page offset / 512,
    /// value = the extent's first block (see `dax.rs`, "PMD mappings").
    pub(crate) dirty_pmd: XArray,
    /// PTE faults shared, PMD faults exclusive: a PMD slot never gets a page
    /// table and a PMD leaf at once.
    huge_lock: Opaque<bindings::rw_semaphore>,
    /// Exclusive while extended attributes change, shared while they are
    /// read (see `xattr.rs`).
    xattr_lock: Opaque<bindings::rw_semaphore>,
    sync_lock: RawMutex,
    map_lock: RawMutex,
    /// On the mount's [`SyncList`] while it may hold dirty marks.
    sync_link: Opaque<bindings::list_head>,
    /// Some fault has associated a page with this inode's mapping
    /// (`VmFault::associate`): its pages must be disassociated before the
    /// in-memory inode goes, and checked for pins before blocks are freed.
    associated: core::sync::atomic::AtomicBool,
    /// The last transaction that took this inode (`journal::Tx::lock_inode`):
    /// its id and journal area; 0 if none since the inode was read.
    tx_tag: core::sync::atomic::AtomicU64,
}

// SAFETY: the VFS inode is shared between threads by design; our fields are
// kernel locks and an XArray, all thread-safe.
unsafe impl Sync for Inode {}
// SAFETY: as above.
unsafe impl Send for Inode {}

/// Timestamp as stored: seconds and nanoseconds.
#[derive(Clone, Copy, Default)]
pub(crate) struct Time {
    pub(crate) sec: i64,
    pub(crate) nsec: u32,
}

/// What kind of operations table a new or loaded inode gets.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Dir,
    File,
    Symlink,
    /// A device node, FIFO or socket, with its device number in the
    /// on-media form ([`encode_dev`]).
    Special(u32),
}

/// The kernel's `dev_t` (major << 20 | minor) in the 32-bit form stored on
/// the medium, as `new_encode_dev` (include/linux/kdev_t.h).
pub(crate) fn encode_dev(dev: u32) -> u32 {
    let (major, minor) = (dev >> 20, dev & 0xfffff);
    (minor & 0xff) | (major << 8) | ((minor & !0xff) << 12)
}

/// The inverse of [`encode_dev`] (`new_decode_dev`).
pub(crate) fn decode_dev(v: u32) -> u32 {
    let major = (v & 0xfff00) >> 8;
    let minor = (v & 0xff) | ((v >> 12) & 0xfff00);
    (major << 20) | minor
}

impl Inode {
    /// # Safety
    /// `p` must be the `vfs` field of a live ferrofs `Inode`.
    pub(crate) unsafe fn from_raw<'a>(p: *mut bindings::inode) -> &'a Inode {
        // SAFETY: `vfs` is the first field of the repr(C) Inode.
        unsafe { &*(p as *const Inode) }
    }

    fn raw(&self) -> *mut bindings::inode {
        self.vfs.get()
    }

    pub(crate) fn fs(&self) -> &FsInfo {
        // SAFETY: s_fs_info is set before the first inode is read and cleared
        // only after every inode of the mount is evicted.
        unsafe { &*((*(*self.raw()).i_sb).s_fs_info as *const FsInfo) }
    }

    pub(crate) fn ino(&self) -> u32 {
        // SAFETY: reading a field of a live inode.
        unsafe { (*self.raw()).i_ino as u32 }
    }

    pub(crate) fn size(&self) -> u64 {
        // SAFETY: i_size is a 64-bit field, read atomically on x86-64 (what
        // i_size_read does on 64-bit).
        unsafe { core::ptr::read_volatile(core::ptr::addr_of!((*self.raw()).i_size)) as u64 }
    }

    /// Callers hold `i_rwsem` (or own the inode exclusively).
    pub(crate) fn set_size(&self, size: u64) {
        // SAFETY: as size(); writers are serialised by i_rwsem.
        unsafe {
            core::ptr::write_volatile(core::ptr::addr_of_mut!((*self.raw()).i_size), size as i64)
        };
    }

    pub(crate) fn mode(&self) -> u16 {
        // SAFETY: reading a field of a live inode.
        unsafe { (*self.raw()).i_mode }
    }

    /// Set the mode bits; the caller holds `i_rwsem` (set_acl) and stores
    /// the inode afterwards.
    pub(crate) fn set_mode(&self, mode: u16) {
        // SAFETY: a field store to a live inode, serialised by i_rwsem.
        unsafe { (*self.raw()).i_mode = mode };
    }

    pub(crate) fn is_dir(&self) -> bool {
        self.mode() & crate::format::S_IFMT == crate::format::S_IFDIR
    }

    pub(crate) fn nlink(&self) -> u32 {
        // SAFETY: reading a field of a live inode.
        unsafe { (*self.raw()).__bindgen_anon_1.i_nlink }
    }

    pub(crate) fn set_nlink(&self, n: u32) {
        // SAFETY: live inode; set_nlink handles the sb's orphan accounting.
        unsafe { bindings::set_nlink(self.raw(), n) };
    }
    pub(crate) fn inc_nlink(&self) {
        // SAFETY: live inode.
        unsafe { bindings::inc_nlink(self.raw()) };
    }
    pub(crate) fn drop_nlink(&self) {
        if self.nlink() > 0 {
            // SAFETY: live inode with a nonzero link count.
            unsafe { bindings::drop_nlink(self.raw()) };
        }
    }
    pub(crate) fn clear_nlink(&self) {
        // SAFETY: live inode.
        unsafe { bindings::clear_nlink(self.raw()) };
    }

    /// The device number of a device node (`i_rdev`), 0 otherwise.
    pub(crate) fn rdev(&self) -> u32 {
        // SAFETY: reading a field of a live inode.
        unsafe { (*self.raw()).i_rdev }
    }

    pub(crate) fn uid(&self) -> u32 {
        // SAFETY: reading a field of a live inode (kuid in the init namespace).
        unsafe { (*self.raw()).i_uid.val }
    }
    pub(crate) fn gid(&self) -> u32 {
        // SAFETY: reading a field of a live inode.
        unsafe { (*self.raw()).i_gid.val }
    }
    pub(crate) fn generation(&self) -> u32 {
        // SAFETY: reading a field of a live inode.
        unsafe { (*self.raw()).i_generation }
    }

    pub(crate) fn times(&self) -> [Time; 3] {
        let i = self.raw();
        // The VFS updates times without a lock, so a time may be torn
        // between seconds and nanoseconds, as for every filesystem.
        // SAFETY: field reads through the raw pointer of a live inode.
        unsafe {
            [
                Time {
                    sec: (*i).i_atime_sec,
                    nsec: (*i).i_atime_nsec,
                },
                Time {
                    sec: (*i).i_mtime_sec,
                    nsec: (*i).i_mtime_nsec,
                },
                Time {
                    sec: (*i).i_ctime_sec,
                    nsec: (*i).i_ctime_nsec,
                },
            ]
        }
    }

    /// ctime = mtime = now.
    pub(crate) fn touch_cmtime(&self) {
        // SAFETY: live inode; the setters are what inode_set_mtime_to_ts does.
        unsafe {
            let now = bindings::inode_set_ctime_current(self.raw());
            (*self.raw()).i_mtime_sec = now.tv_sec;
            (*self.raw()).i_mtime_nsec = now.tv_nsec as u32;
        }
    }

    /// The chattr flags the VFS enforces for this inode (FS_IMMUTABLE_FL,
    /// FS_APPEND_FL).
    pub(crate) fn fs_flags(&self) -> u32 {
        // SAFETY: live inode; one read of i_flags.
        unsafe { super::ferrofs_inode_fs_flags(self.raw()) }
    }
    /// Set S_IMMUTABLE and S_APPEND from FS_IMMUTABLE_FL and FS_APPEND_FL.
    pub(crate) fn set_fs_flags(&self, flags: u32) {
        // SAFETY: live inode; inode_set_flags updates i_flags atomically.
        unsafe { super::ferrofs_inode_set_fs_flags(self.raw(), flags) }
    }
    pub(crate) fn touch_ctime(&self) {
        // SAFETY: live inode.
        unsafe { bindings::inode_set_ctime_current(self.raw()) };
    }

    /// Record the allocated 4 KiB blocks in `i_blocks` (512-byte units).
    /// `blocks` comes from the medium: saturate rather than overflow.
    pub(crate) fn set_blocks(&self, blocks: u64) {
        // SAFETY: one aligned 8-byte store to a field of a live inode (under
        // the map lock, or I_NEW); stat reads it without a lock.
        unsafe {
            core::ptr::write_volatile(
                core::ptr::addr_of_mut!((*self.raw()).i_blocks),
                blocks.saturating_mul(8),
            )
        };
    }

    pub(crate) fn xattr_lock(&self) -> &RwSem {
        // SAFETY: initialised in alloc_inode and alive as long as the inode.
        unsafe { RwSem::from_raw(self.xattr_lock.get()) }
    }
    pub(crate) fn huge_lock(&self) -> &RwSem {
        // SAFETY: initialised in alloc_inode and alive as long as the inode.
        unsafe { RwSem::from_raw(self.huge_lock.get()) }
    }
    pub(crate) fn sync_lock(&self) -> &RawMutex {
        &self.sync_lock
    }
    pub(crate) fn map_lock(&self) -> &RawMutex {
        &self.map_lock
    }

    /// See the field: who owns this inode's on-media state (`journal.rs`).
    pub(crate) fn tx_tag(&self) -> &core::sync::atomic::AtomicU64 {
        &self.tx_tag
    }
    pub(crate) fn rwsem(&self) -> &RwSem {
        // SAFETY: i_rwsem is initialised by inode_init_once.
        unsafe { RwSem::from_raw(core::ptr::addr_of_mut!((*self.raw()).i_rwsem)) }
    }
    pub(crate) fn invalidate_lock(&self) -> &RwSem {
        // SAFETY: i_data.invalidate_lock is initialised by inode_init_once.
        unsafe {
            RwSem::from_raw(core::ptr::addr_of_mut!(
                (*self.raw()).i_data.invalidate_lock
            ))
        }
    }

    /// Zap user PTEs of the file range `start..start+len` (`len` 0: to EOF)
    /// in every mapping; `even_cows` also drops private COW copies.
    pub(crate) fn unmap_range(&self, start: u64, len: u64, even_cows: bool) {
        // SAFETY: live inode; unmap_mapping_range may sleep, and callers hold
        // no spinlocks.
        unsafe {
            bindings::unmap_mapping_range(
                (*self.raw()).i_mapping,
                start as i64,
                len as i64,
                even_cows as c_int,
            )
        };
    }

    pub(crate) fn mark_associated(&self) {
        if !self.associated.load(core::sync::atomic::Ordering::Relaxed) {
            self.associated
                .store(true, core::sync::atomic::Ordering::Relaxed);
        }
    }
    /// Whether a fault may have mapped (and so associated) a page. Read
    /// with the invalidate lock exclusive or at eviction, when no fault
    /// runs: the store in a fault is ordered before by the lock.
    pub(crate) fn was_associated(&self) -> bool {
        self.associated.load(core::sync::atomic::Ordering::Relaxed)
    }
    /// Count an internal write of the file system (freeing an unlinked
    /// inode) against freezing: waits while the file system is frozen,
    /// and `freeze_super` waits for the guard to go.
    pub(crate) fn start_intwrite(&self) -> IntWrite {
        // SAFETY: a live inode's superblock (the inode holds it).
        let sb = unsafe { (*self.raw()).i_sb };
        // SAFETY: as above; paired with sb_end_intwrite in IntWrite's drop.
        unsafe { super::ferrofs_sb_start_intwrite(sb) };
        IntWrite(sb)
    }

    /// Drop `pfn`'s link to this file (see the shim), if it has one.
    pub(crate) fn disassociate(&self, pfn: u64) {
        // SAFETY: a page of the mounted device with a struct page (checked
        // at mount); the shim only clears the link if it is ours.
        unsafe { super::ferrofs_page_disassociate(pfn as c_ulong, (*self.raw()).i_mapping) };
    }

    /// Wait until `pfn` is idle (see the shim), releasing the invalidate
    /// lock, which `held` holds for write, while asleep; held again on
    /// return. ERESTARTSYS on a signal.
    pub(crate) fn wait_page_idle(&self, pfn: u64, held: &WriteGuard<'_>) -> Result {
        let sem = self.invalidate_lock().as_ptr();
        if held.sem().as_ptr() != sem {
            return Err(EINVAL);
        }
        // `held` (checked above to be this inode's invalidate lock) holds
        // `sem` for write; the shim releases and retakes it around each
        // sleep, so the guard's drop still releases it exactly once.
        // SAFETY: `sem` is held for write (above); `pfn` has a struct page.
        let r = unsafe { super::ferrofs_wait_page_idle(pfn as c_ulong, sem) };
        if r != 0 {
            return Err(Error::from_errno(r));
        }
        Ok(())
    }
    /// As `wait_page_idle`, uninterruptible, dropping no lock, for at most
    /// `msecs` (eviction). Whether the page is idle.
    pub(crate) fn wait_page_idle_final(&self, pfn: u64, msecs: u32) -> bool {
        // SAFETY: `pfn` has a struct page (checked at mount).
        unsafe { super::ferrofs_wait_page_idle_final(pfn as c_ulong, msecs) != 0 }
    }

    /// Let the flusher (and sync(2)) know this inode has dirty DAX entries:
    /// it calls our `writepages`, which runs the writeback walk.
    pub(crate) fn mark_pages_dirty(&self) {
        // SAFETY: live inode.
        unsafe { bindings::__mark_inode_dirty(self.raw(), bindings::I_DIRTY_PAGES as c_int) };
    }

    /// Give a symlink inode its target: a NUL-terminated kmalloc'd copy,
    /// freed with the inode (`free_inode`, after RCU: lookups in RCU mode
    /// read it). Only once, on an inode being set up (I_NEW or NewInode).
    pub(crate) fn set_link(&self, target: &[u8]) -> Result {
        let n = target.len().checked_add(1).ok_or(EINVAL)?;
        // SAFETY: plain allocation.
        let p =
            unsafe { bindings::krealloc(core::ptr::null(), n, bindings::GFP_KERNEL) } as *mut u8;
        if p.is_null() {
            return Err(ENOMEM);
        }
        // The inode is being set up: simple_get_link reads i_link only after
        // unlock_new_inode / d_instantiate_new.
        // SAFETY: `p` has `n` bytes; the source is a Rust slice, disjoint.
        unsafe {
            core::ptr::copy_nonoverlapping(target.as_ptr(), p, target.len());
            *p.add(target.len()) = 0;
            (*self.raw()).__bindgen_anon_4.i_link = p as *mut c_char;
        }
        Ok(())
    }

    /// Fill the VFS inode from its on-media copy and choose its operations.
    /// The caller checked `d` (`inode::read_inode`).
    pub(crate) fn init_from_disk(&self, d: &crate::format::Inode, kind: Kind) {
        let i = self.raw();
        // The inode is I_NEW: iget_locked hashed it, so other CPUs can find
        // it, but they wait for unlock_new_inode before they use these fields.
        // SAFETY: no one else writes them until then; raw field stores only.
        unsafe {
            (*i).i_mode = d.mode.get();
            (*i).i_uid.val = d.uid.get();
            (*i).i_gid.val = d.gid.get();
            bindings::set_nlink(i, d.nlink.get());
            (*i).i_size = core::cmp::min(d.size.get(), i64::MAX as u64) as i64;
            (*i).i_atime_sec = clamp_sec(d.atime_sec.get());
            (*i).i_atime_nsec = d.atime_nsec.get();
            (*i).i_mtime_sec = clamp_sec(d.mtime_sec.get());
            (*i).i_mtime_nsec = d.mtime_nsec.get();
            (*i).i_ctime_sec = clamp_sec(d.ctime_sec.get());
            (*i).i_ctime_nsec = d.ctime_nsec.get();
            (*i).i_generation = d.generation.get();
        }
        self.set_fs_flags(crate::inode::fs_flags_of(d.flags.get()));
        self.set_blocks(d.blocks.get());
        self.set_ops(kind);
    }

    fn set_ops(&self, kind: Kind) {
        let i = self.raw();
        // SAFETY: the inode is I_NEW (as in init_from_disk) or not yet
        // hashed (NewInode); the tables are static. Raw field stores only.
        unsafe {
            match kind {
                Kind::Dir => {
                    (*i).i_op = &DIR_IOPS.0;
                    (*i).__bindgen_anon_3.i_fop = &DIR_FOPS.0;
                }
                Kind::File => {
                    // DAX: vma_is_fsdax() is true for our mappings, so the
                    // kernel refuses FOLL_LONGTERM pins of them and allows
                    // the zero page in shared ones. fs/dax.c's users of
                    // IS_DAX only act on entries in i_pages, which ferrofs
                    // leaves empty (its entries are in `Inode::dirty`).
                    (*i).i_flags |= bindings::S_DAX;
                    (*i).i_op = &FILE_IOPS.0;
                    (*i).__bindgen_anon_3.i_fop = &FILE_FOPS.0;
                    (*(*i).i_mapping).a_ops = &AOPS.0;
                }
                Kind::Symlink => {
                    (*i).i_op = &SYMLINK_IOPS.0;
                }
                Kind::Special(rdev) => {
                    (*i).i_op = &SPECIAL_IOPS.0;
                    // The VFS's operations for devices, FIFOs and sockets.
                    bindings::init_special_inode(i, (*i).i_mode, decode_dev(rdev));
                }
            }
        }
    }
}

/// On-media seconds are unsigned; the VFS keeps `time64_t`.
fn clamp_sec(s: u64) -> i64 {
    core::cmp::min(s, i64::MAX as u64) as i64
}

/// The inodes of a mount that may hold dirty marks: `sync_fs` writes them
/// back (see `dax::sync_all`). Boxed: the C list head and lock never move.
pub(crate) struct SyncList {
    lock: Opaque<bindings::spinlock_t>,
    head: Opaque<bindings::list_head>,
}

// SAFETY: the list and its links are only touched under its spinlock (the
// shims in shim.c take it).
unsafe impl Sync for SyncList {}
// SAFETY: as above.
unsafe impl Send for SyncList {}

impl SyncList {
    pub(crate) fn new() -> Result<kernel::alloc::KBox<SyncList>> {
        let b = kernel::alloc::KBox::new(
            SyncList {
                lock: Opaque::uninit(),
                head: Opaque::uninit(),
            },
            kernel::alloc::flags::GFP_KERNEL,
        )?;
        // SAFETY: a fresh heap allocation that is never moved out of its
        // box; initialised once, here, before any use.
        unsafe { super::ferrofs_sync_list_init(b.lock.get(), b.head.get()) };
        Ok(b)
    }

    /// `inode` has (or just got) a dirty mark: make sure the next sync_fs
    /// visits it. Called after the mark is set, so a sync_fs that takes the
    /// inode off the list (under the same lock) sees the mark in its walk.
    pub(crate) fn add(&self, inode: &Inode) {
        // SAFETY: the list is initialised (new); the link is initialised in
        // alloc_inode and belongs to a live inode of this mount.
        unsafe {
            super::ferrofs_sync_list_add(self.lock.get(), self.head.get(), inode.sync_link.get())
        };
    }

    /// Eviction: the inode leaves the list before its memory can go.
    fn del(&self, inode: &Inode) {
        // SAFETY: as add; list_del_init of a link on no list is a no-op.
        unsafe { super::ferrofs_sync_list_del(self.lock.get(), inode.sync_link.get()) };
    }

    /// Take every inode now on the list and run `f` on each, holding a
    /// reference. Inodes marked again meanwhile go back on the list for the
    /// next call, so this ends even while stores go on.
    pub(crate) fn drain(&self, mut f: impl FnMut(&Inode)) {
        let private = Opaque::<bindings::list_head>::uninit();
        // `private` is a list head on this stack frame, not moved, and empty
        // again (every entry popped or deleted under the lock) before the
        // frame ends; evict_inode may unlink entries meanwhile, under it.
        // SAFETY: both lists are initialised and only touched under the lock.
        unsafe {
            super::ferrofs_list_init(private.get());
            super::ferrofs_sync_list_splice(self.lock.get(), self.head.get(), private.get());
        }
        loop {
            // SAFETY: as above; `sync_link`'s offset locates the inode.
            let p = unsafe {
                super::ferrofs_sync_list_pop(
                    self.lock.get(),
                    private.get(),
                    core::mem::offset_of!(Inode, sync_link),
                )
            };
            if p.is_null() {
                break;
            }
            // igrab took the reference InodeRef drops.
            let r = InodeRef(p);
            f(r.get());
        }
    }
}

/// A counted reference to an inode (from `iget`); `iput` on drop.
pub(crate) struct InodeRef(*mut bindings::inode);

impl InodeRef {
    pub(crate) fn get(&self) -> &Inode {
        // SAFETY: we hold a reference, so the inode is live.
        unsafe { Inode::from_raw(self.0) }
    }
    fn into_raw(self) -> *mut bindings::inode {
        let p = self.0;
        core::mem::forget(self);
        p
    }
}
impl Drop for InodeRef {
    fn drop(&mut self) {
        // SAFETY: we own one reference.
        unsafe { bindings::iput(self.0) };
    }
}

/// Look up inode `ino`, reading it from pmem if it is not in the cache.
pub(crate) fn iget(fs: &FsInfo, ino: u32) -> Result<InodeRef> {
    // SAFETY: fs.sb is the live superblock of this mount.
    let p = unsafe { bindings::iget_locked(fs.sb(), ino as c_ulong) };
    if p.is_null() {
        return Err(ENOMEM);
    }
    // SAFETY: iget_locked returned a referenced inode; I_NEW tells whether we
    // must fill it in (we are then its only user).
    unsafe {
        if (*p).i_state & bindings::I_NEW == 0 {
            return Ok(InodeRef(p));
        }
        let inode = Inode::from_raw(p);
        match crate::inode::read_inode(inode) {
            Ok(()) => {
                bindings::unlock_new_inode(p);
                Ok(InodeRef(p))
            }
            Err(e) => {
                bindings::iget_failed(p);
                Err(e)
            }
        }
    }
}

/// A freshly created inode, locked (I_NEW) until handed to a dentry.
pub(crate) struct NewInode(*mut bindings::inode);

impl NewInode {
    /// Allocate a VFS inode numbered `ino` for a new object in `dir`: owner,
    /// group (setgid dirs) and mode as the VFS rules say, times now.
    pub(crate) fn new(
        dir: &Inode,
        idmap: &IdMap,
        ino: u32,
        mode: u16,
        kind: Kind,
    ) -> Result<NewInode> {
        // SAFETY: dir is live, so its superblock is.
        let p = unsafe { bindings::new_inode((*dir.raw()).i_sb) };
        if p.is_null() {
            return Err(ENOMEM);
        }
        // SAFETY: `p` is a new inode only we know of.
        unsafe {
            (*p).i_ino = ino as c_ulong;
            bindings::inode_init_owner(idmap.0, p, dir.raw(), mode);
            let now = bindings::inode_set_ctime_current(p);
            (*p).i_mtime_sec = now.tv_sec;
            (*p).i_mtime_nsec = now.tv_nsec as u32;
            (*p).i_atime_sec = now.tv_sec;
            (*p).i_atime_nsec = now.tv_nsec as u32;
            (*p).i_generation = bindings::get_random_u32();
            let r = bindings::insert_inode_locked(p);
            if r != 0 {
                // Not hashed, nothing of ours on the medium to release (the
                // caller frees the slot in its open transaction): a bad
                // inode's eviction skips `inode::evict`, which would start
                // a transaction of its own and wait for the caller's.
                bindings::make_bad_inode(p);
                bindings::clear_nlink(p);
                bindings::iput(p);
                return Err(Error::from_errno(r));
            }
        }
        let n = NewInode(p);
        n.get().set_ops(kind);
        Ok(n)
    }

    pub(crate) fn get(&self) -> &Inode {
        // SAFETY: we hold the only reference to this live inode.
        unsafe { Inode::from_raw(self.0) }
    }

    /// O_TMPFILE: attach to the open `file`'s dentry (d_tmpfile drops the
    /// link count to 0 and makes the inode linkable), unlock, and finish the
    /// open.
    ///
    /// # Safety
    /// `file` is the file the VFS passed to `tmpfile`, not yet opened.
    pub(crate) unsafe fn instantiate_tmpfile(self, file: *mut bindings::file) -> c_int {
        let p = self.0;
        core::mem::forget(self);
        // SAFETY: `p` is a locked new inode whose reference passes to the
        // file's dentry; `file` is the VFS's (the caller's promise).
        unsafe {
            bindings::d_tmpfile(file, p);
            bindings::unlock_new_inode(p);
            bindings::finish_open(file, (*file).f_path.dentry, None)
        }
    }

    /// Unlock and drop our reference, attaching it to no dentry: an inode
    /// named on the medium (a whiteout), found by a later lookup.
    pub(crate) fn release(self) {
        let p = self.0;
        core::mem::forget(self);
        // SAFETY: `p` is a locked new inode and ours is its only reference;
        // with a link count of 1 the last iput keeps it cached.
        unsafe {
            bindings::unlock_new_inode(p);
            bindings::iput(p);
        }
    }

    /// Publish: attach to `dentry` and unlock.
    pub(crate) fn instantiate(self, dentry: &Dentry) {
        let p = self.0;
        core::mem::forget(self);
        // SAFETY: `p` is a locked new inode whose reference passes to the dentry.
        unsafe { bindings::d_instantiate_new(dentry.raw(), p) };
    }
}

impl Drop for NewInode {
    /// Creation failed: the inode never became visible. Link count 0 makes
    /// eviction release its on-media slot, if it got one.
    fn drop(&mut self) {
        // SAFETY: we hold the only reference to this locked new inode.
        unsafe {
            bindings::clear_nlink(self.0);
            bindings::discard_new_inode(self.0);
        }
    }
}

/// The idmapping a VFS call came with.
pub(crate) struct IdMap(*mut bindings::mnt_idmap);

// ---------------------------------------------------------------------------
// Dentries, iterators, attributes

#[repr(transparent)]
pub(crate) struct Dentry(Opaque<bindings::dentry>);

impl Dentry {
    /// # Safety
    /// `p` must be a live dentry for `'a`.
    unsafe fn from_raw<'a>(p: *mut bindings::dentry) -> &'a Dentry {
        // SAFETY: transparent wrapper; liveness is the caller's promise.
        unsafe { &*(p as *const Dentry) }
    }
    fn raw(&self) -> *mut bindings::dentry {
        self.0.get()
    }
    pub(crate) fn name(&self) -> &[u8] {
        // SAFETY: the VFS keeps d_name stable while it holds the parent's
        // i_rwsem, which it does around every call that passes us a dentry.
        unsafe {
            let q = &(*self.raw()).d_name;
            let len = q.__bindgen_anon_1.__bindgen_anon_1.len as usize;
            core::slice::from_raw_parts(q.name, len)
        }
    }
    /// The inode of a positive dentry.
    pub(crate) fn inode(&self) -> Option<&Inode> {
        // SAFETY: a positive dentry pins its ferrofs inode.
        unsafe {
            let i = (*self.raw()).d_inode;
            if i.is_null() {
                None
            } else {
                Some(Inode::from_raw(i))
            }
        }
    }
    /// Attach an existing inode (hard link): takes a new reference.
    pub(crate) fn instantiate_existing(&self, inode: &Inode) {
        // SAFETY: both live; ihold takes the reference d_instantiate consumes.
        unsafe {
            bindings::ihold(inode.raw());
            bindings::d_instantiate(self.raw(), inode.raw());
        }
    }
}

/// A user I/O iterator, valid for the read/write call it came with.
pub(crate) struct IovIter(*mut bindings::iov_iter);

impl IovIter {
    pub(crate) fn as_ptr(&mut self) -> *mut bindings::iov_iter {
        self.0
    }
    pub(crate) fn count(&self) -> usize {
        // SAFETY: valid iterator for the duration of the call.
        unsafe { super::ferrofs_iov_count(self.0) }
    }
    /// Fill `n` bytes of the destination with zeros (a hole).
    pub(crate) fn zero(&mut self, n: usize) -> usize {
        // SAFETY: valid iterator.
        unsafe { bindings::iov_iter_zero(n, self.0) }
    }
}

/// A read/write request: the file's inode, position and flags.
pub(crate) struct Kiocb(*mut bindings::kiocb);

impl Kiocb {
    pub(crate) fn pos(&self) -> u64 {
        // SAFETY: valid kiocb for the call.
        unsafe { (*self.0).ki_pos as u64 }
    }
    pub(crate) fn set_pos(&mut self, p: u64) {
        // SAFETY: valid kiocb for the call.
        unsafe { (*self.0).ki_pos = p as i64 };
    }
    pub(crate) fn is_sync(&self) -> bool {
        // SAFETY: valid kiocb for the call.
        unsafe { (*self.0).ki_flags & (IOCB_DSYNC | IOCB_SYNC) != 0 }
    }
    /// generic_write_checks (O_APPEND, limits, signals): the count to write.
    pub(crate) fn write_checks(&mut self, from: &mut IovIter) -> Result<usize> {
        // SAFETY: valid kiocb and iterator; caller holds i_rwsem.
        let r = unsafe { bindings::generic_write_checks(self.0, from.as_ptr()) };
        if r < 0 {
            return Err(Error::from_errno(r as i32));
        }
        Ok(r as usize)
    }
    /// Drop setuid bits and update times, as every write must.
    pub(crate) fn write_prepare(&mut self) -> Result {
        // SAFETY: valid file; caller holds i_rwsem.
        unsafe {
            let f = (*self.0).ki_filp;
            let r = bindings::file_remove_privs(f);
            if r != 0 {
                return Err(Error::from_errno(r));
            }
            let r = bindings::file_update_time(f);
            if r != 0 {
                return Err(Error::from_errno(r));
            }
        }
        Ok(())
    }
}

/// A page fault on a ferrofs mapping.
pub(crate) struct VmFault(*mut bindings::vm_fault);

impl VmFault {
    pub(crate) fn inode(&self) -> &Inode {
        // SAFETY: the VMA's file pins its inode while the fault runs.
        unsafe { Inode::from_raw((*(*(*(*self.0).__bindgen_anon_1.vma).vm_file).f_mapping).host) }
    }
    pub(crate) fn pgoff(&self) -> u64 {
        // SAFETY: valid vm_fault for the call.
        unsafe { (*self.0).__bindgen_anon_1.pgoff as u64 }
    }
    pub(crate) fn is_write(&self) -> bool {
        // SAFETY: valid vm_fault for the call.
        unsafe { (*self.0).flags & bindings::fault_flag_FAULT_FLAG_WRITE != 0 }
    }
    /// A private writable mapping: stores go to anonymous COW copies made by
    /// the core, never to pmem.
    pub(crate) fn is_cow(&self) -> bool {
        // SAFETY: valid vma for the call.
        let f = unsafe { (*(*self.0).__bindgen_anon_1.vma).__bindgen_anon_2.vm_flags };
        is_cow_mapping(f as u64)
    }
    /// A MAP_SYNC mapping: a write fault must leave the metadata it
    /// depends on durable (src/dax.rs, "MAP_SYNC").
    pub(crate) fn is_sync(&self) -> bool {
        // SAFETY: valid vma for the call.
        let f = unsafe { (*(*self.0).__bindgen_anon_1.vma).__bindgen_anon_2.vm_flags };
        f as u64 & bindings::VM_SYNC as u64 != 0
    }
    fn vma(&self) -> *mut bindings::vm_area_struct {
        // SAFETY: valid vm_fault for the call.
        unsafe { (*self.0).__bindgen_anon_1.vma }
    }
    /// Map file page `pfn` read-only at the fault address, as a devmap PTE
    /// (get_user_pages accepts it). Nothing if a PTE is already there.
    pub(crate) fn insert_ro(&self, pfn: u64) -> bindings::vm_fault_t {
        // The shim builds a PFN_DEV|PFN_MAP pfn_t, which fill_super checked
        // the device provides.
        // SAFETY: a live fault on a VM_MIXEDMAP ferrofs VMA (`mmap`).
        unsafe { super::ferrofs_insert_page(self.0, pfn as c_ulong) }
    }
    /// The fault address lies in a PMD leaf already (a PTE fault that raced
    /// with a PMD fault: retry).
    pub(crate) fn pmd_is_leaf(&self) -> bool {
        // SAFETY: a live fault: vmf->pmd is this fault's PMD slot.
        unsafe { super::ferrofs_pmd_is_leaf(self.0) != 0 }
    }
    /// A PMD may map this fault: address and file offset agree modulo
    /// 2 MiB and the aligned 2 MiB lies inside the VMA. The core checks
    /// neither for DAX VMAs before calling `huge_fault`.
    pub(crate) fn pmd_fits(&self) -> bool {
        // SAFETY: a live fault: vmf->vma is valid.
        unsafe { super::ferrofs_pmd_fits(self.0) != 0 }
    }
    /// Map the 2 MiB extent at `pfn` (aligned) read-only with one PMD, as a
    /// devmap entry; VM_FAULT_FALLBACK where the slot holds a page table.
    /// The caller holds the inode's huge lock exclusive.
    pub(crate) fn insert_pmd_ro(&self, pfn: u64) -> bindings::vm_fault_t {
        // SAFETY: a live huge fault on a VM_MIXEDMAP ferrofs VMA; the pfn is
        // a device page with a struct page (checked at mount).
        unsafe { super::ferrofs_insert_pmd(self.0, pfn as c_ulong) }
    }
    /// Make the PMD at the fault address writable if it maps `pfn` and
    /// entry `index` of `xa` is still marked: see [`Upgrade`].
    pub(crate) fn pmd_mkwrite(&self, pfn: u64, xa: &XArray, index: u64) -> Upgrade {
        // The core holds the mmap or VMA lock: vmf->pmd and the mm stay valid.
        // SAFETY: a live fault (above); `xa` is an initialised XArray that
        // the borrow keeps alive for the call.
        match unsafe {
            super::ferrofs_pmd_mkwrite(self.0, pfn as c_ulong, xa.as_ptr(), index as c_ulong)
        } {
            1 => Upgrade::Done,
            2 => Upgrade::Unmarked,
            0 => Upgrade::Gone,
            _ => Upgrade::Other,
        }
    }
    /// Map the zero page read-only at the fault address.
    pub(crate) fn insert_zero(&self) -> bindings::vm_fault_t {
        // vmf_insert_mixed allows the zero page in a shared writable VMA of
        // an S_DAX inode (vm_mixed_zeropage_allowed).
        // SAFETY: a live fault on a VM_MIXEDMAP ferrofs VMA of an S_DAX inode.
        unsafe { super::ferrofs_insert_zero(self.0) }
    }
    /// Make the PTE at the fault address writable and dirty if it maps
    /// `pfn` and entry `index` of `xa` is still marked: see [`Upgrade`].
    pub(crate) fn pte_mkwrite(&self, pfn: u64, xa: &XArray, index: u64) -> Upgrade {
        // The core holds the mmap lock or the VMA lock around the fault, so
        // the page tables of the fault address are not freed under the walk.
        // SAFETY: a live fault: vmf->vma and its mm are valid (above); `xa`
        // is an initialised XArray that the borrow keeps alive for the call.
        match unsafe {
            super::ferrofs_pte_mkwrite(self.0, pfn as c_ulong, xa.as_ptr(), index as c_ulong)
        } {
            1 => Upgrade::Done,
            2 => Upgrade::Unmarked,
            0 => Upgrade::Gone,
            _ => Upgrade::Other,
        }
    }
    /// Tell the file page `pfn` which file and page offset `index` it holds
    /// (see the shim), before any PTE or PMD maps it. For a PMD, each of its
    /// 512 pages gets its own index: shared futex keys and rmap walks read
    /// the page's, not the fault's.
    pub(crate) fn associate(&self, pfn: u64, index: u64) {
        let inode = self.inode();
        inode.mark_associated();
        // Every caller got `pfn` from Pmem::pfn (inside the device), and the
        // device has struct pages (checked at mount).
        // SAFETY: a device page with a struct page; the live inode's mapping.
        unsafe {
            super::ferrofs_page_associate(
                pfn as c_ulong,
                (*inode.raw()).i_mapping,
                index as c_ulong,
            )
        };
    }
    pub(crate) fn sb_start_pagefault(&self) {
        // SAFETY: live inode's superblock.
        unsafe { super::ferrofs_sb_start_pagefault((*self.inode().raw()).i_sb) };
    }
    pub(crate) fn sb_end_pagefault(&self) {
        // SAFETY: paired with sb_start_pagefault.
        unsafe { super::ferrofs_sb_end_pagefault((*self.inode().raw()).i_sb) };
    }
    pub(crate) fn file_update_time(&self) {
        // SAFETY: the VMA's file is live during the fault.
        unsafe { bindings::file_update_time((*self.vma()).vm_file) };
    }
}

/// Whether someone besides the device's pagemap holds page `pfn`: a
/// get_user_pages reference or pin (fsdax pages idle at refcount 1).
pub(crate) fn page_busy(pfn: u64) -> bool {
    // SAFETY: `pfn` is a page of the mounted device (Pmem::pfn), which has
    // struct pages (checked at mount); an atomic read.
    unsafe { super::ferrofs_page_refs(pfn as c_ulong) > 1 }
}

/// An internal write in progress ([`Inode::start_intwrite`]).
pub(crate) struct IntWrite(*mut bindings::super_block);

impl Drop for IntWrite {
    fn drop(&mut self) {
        // SAFETY: started by start_intwrite on this superblock, which lives
        // as long as the inode that the guard was taken through.
        unsafe { super::ferrofs_sb_end_intwrite(self.0) };
    }
}

/// What [`VmFault::pte_mkwrite`] found at the fault address.
#[derive(PartialEq, Eq)]
pub(crate) enum Upgrade {
    /// A PTE of the page: it is writable now.
    Done,
    /// A PTE of the page, but its dirty entry is no longer marked: a
    /// writeback walk claimed it after the fault marked it, and may have
    /// zapped before this PTE was there. Left read-only; mark again.
    Unmarked,
    /// No PTE (zapped since it was inserted).
    Gone,
    /// A PTE of another page, or the VMA is not shared and writable.
    Other,
}

fn is_cow_mapping(flags: u64) -> bool {
    flags & (bindings::VM_SHARED | bindings::VM_MAYWRITE) as u64 == bindings::VM_MAYWRITE as u64
}

pub(crate) const VM_FAULT_SIGBUS: bindings::vm_fault_t = bindings::vm_fault_reason_VM_FAULT_SIGBUS;
pub(crate) const VM_FAULT_OOM: bindings::vm_fault_t = bindings::vm_fault_reason_VM_FAULT_OOM;
pub(crate) const VM_FAULT_NOPAGE: bindings::vm_fault_t = bindings::vm_fault_reason_VM_FAULT_NOPAGE;
pub(crate) const VM_FAULT_FALLBACK: bindings::vm_fault_t =
    bindings::vm_fault_reason_VM_FAULT_FALLBACK;

/// The user's FS_IOC_FIEMAP extent array, after `fiemap_prep` checked it.
pub(crate) struct Fiemap(*mut bindings::fiemap_extent_info);

/// FIEMAP_EXTENT_LAST (the shim asserts the value).
pub(crate) const FIEMAP_EXTENT_LAST: u32 = 1;

impl Fiemap {
    /// Report one extent (bytes); `Ok(true)`: the array is full, stop.
    /// Copies to user memory, which may fault: hold no lock a fault takes.
    pub(crate) fn fill(&mut self, logical: u64, phys: u64, len: u64, flags: u32) -> Result<bool> {
        // SAFETY: the fiemap_extent_info of the running ioctl.
        let r = unsafe { super::ferrofs_fiemap_fill(self.0, logical, phys, len, flags) };
        if r < 0 {
            return Err(Error::from_errno(r));
        }
        Ok(r == 1)
    }
}

/// A readdir cursor.
pub(crate) struct DirContext(*mut bindings::dir_context);

impl DirContext {
    pub(crate) fn pos(&self) -> i64 {
        // SAFETY: valid context for the call.
        unsafe { (*self.0).pos }
    }
    pub(crate) fn set_pos(&mut self, p: i64) {
        // SAFETY: valid context for the call.
        unsafe { (*self.0).pos = p };
    }
    /// Emit one entry at the current position; false: the buffer is full.
    pub(crate) fn emit(&mut self, name: &[u8], ino: u32, dt: u8) -> bool {
        // SAFETY: valid context; actor is set by the VFS (dir_emit).
        unsafe {
            match (*self.0).actor {
                Some(actor) => actor(
                    self.0,
                    name.as_ptr() as *const c_char,
                    name.len() as c_int,
                    (*self.0).pos,
                    ino as u64,
                    dt as c_uint,
                ),
                None => false,
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Superblock

/// The superblock being set up by `fill_super`.
pub(crate) struct NewSuper(*mut bindings::super_block);

impl NewSuper {
    pub(crate) fn raw(&self) -> *mut bindings::super_block {
        self.0
    }
    /// The device name, e.g. "pmem0".
    pub(crate) fn id(&self) -> &core::ffi::CStr {
        // SAFETY: s_id is a NUL-terminated array set by mount_bdev.
        unsafe { core::ffi::CStr::from_ptr((*self.0).s_id.as_ptr() as *const core::ffi::c_char) }
    }
    pub(crate) fn bdev(&self) -> *mut bindings::block_device {
        // SAFETY: a block-device superblock has s_bdev.
        unsafe { (*self.0).s_bdev }
    }
    /// Set block size, limits and operations.
    pub(crate) fn setup(&self, max_bytes: u64) -> Result {
        // SAFETY: fill_super runs with s_umount held exclusive and before
        // SB_BORN: the VFS reads none of these fields until we return.
        unsafe {
            if bindings::sb_set_blocksize(self.0, crate::format::BLOCK_SIZE as c_int) == 0 {
                return Err(EINVAL);
            }
            // Raw field stores: the superblock is already on the type's list
            // (sget), so no `&mut` to all of it.
            let s = self.0;
            (*s).s_magic = FERROFS_MAGIC as c_ulong;
            (*s).s_op = &SOPS.0;
            (*s).s_maxbytes = core::cmp::min(max_bytes, MAX_LFS_FILESIZE as u64) as i64;
            (*s).s_time_gran = 1;
            // The VFS refuses link, mkdir and rename past this (EMLINK), so
            // a link count checked at iget never wraps.
            (*s).s_max_links = crate::format::NLINK_MAX;
            (*s).s_flags |= SB_NOSEC;
            (*s).s_xattr = super::ferrofs_xattr_handlers();
            // POSIX ACLs: the VFS then leaves the umask to us
            // (posix_acl_create in `acl_create`).
            (*s).s_flags |= SB_POSIXACL;
        }
        Ok(())
    }
    pub(crate) fn set_fs_info(&self, fs: *mut FsInfo) {
        // SAFETY: not yet visible; freed in kill_sb.
        unsafe { (*self.0).s_fs_info = fs as *mut c_void };
    }
    /// Make `root` the root dentry; consumes the reference.
    pub(crate) fn set_root(&self, root: InodeRef) -> Result {
        let p = root.into_raw();
        // SAFETY: d_make_root consumes the inode reference, even on failure.
        let d = unsafe { bindings::d_make_root(p) };
        if d.is_null() {
            return Err(ENOMEM);
        }
        // SAFETY: the superblock is being set up.
        unsafe { (*self.0).s_root = d };
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// Operations tables

struct Table<T>(T);
// SAFETY: the tables are immutable after construction and hold only function
// pointers and pointers to other static data.
unsafe impl<T> Sync for Table<T> {}

macro_rules! zeroed {
    () => {
        // SAFETY: all-zero is a valid operations table (every hook NULL).
        unsafe { core::mem::MaybeUninit::zeroed().assume_init() }
    };
}

static SOPS: Table<bindings::super_operations> = Table(bindings::super_operations {
    alloc_inode: Some(alloc_inode),
    free_inode: Some(free_inode),
    evict_inode: Some(evict_inode),
    dirty_inode: Some(dirty_inode),
    statfs: Some(statfs),
    show_options: Some(show_options),
    sync_fs: Some(sync_fs),
    freeze_fs: Some(freeze_fs),
    unfreeze_fs: Some(unfreeze_fs),
    ..zeroed!()
});

static DIR_IOPS: Table<bindings::inode_operations> = Table(bindings::inode_operations {
    lookup: Some(lookup),
    create: Some(create),
    mkdir: Some(mkdir),
    unlink: Some(unlink),
    rmdir: Some(rmdir),
    rename: Some(rename),
    link: Some(link),
    tmpfile: Some(tmpfile),
    symlink: Some(symlink),
    mknod: Some(mknod),
    setattr: Some(setattr),
    getattr: Some(getattr),
    fileattr_get: Some(fileattr_get),
    fileattr_set: Some(fileattr_set),
    listxattr: Some(listxattr),
    get_inode_acl: Some(get_inode_acl),
    set_acl: Some(set_acl),
    ..zeroed!()
});

static FILE_IOPS: Table<bindings::inode_operations> = Table(bindings::inode_operations {
    setattr: Some(setattr),
    getattr: Some(getattr),
    fiemap: Some(fiemap),
    fileattr_get: Some(fileattr_get),
    fileattr_set: Some(fileattr_set),
    listxattr: Some(listxattr),
    get_inode_acl: Some(get_inode_acl),
    set_acl: Some(set_acl),
    ..zeroed!()
});

static SPECIAL_IOPS: Table<bindings::inode_operations> = Table(bindings::inode_operations {
    setattr: Some(setattr),
    getattr: Some(getattr),
    listxattr: Some(listxattr),
    get_inode_acl: Some(get_inode_acl),
    set_acl: Some(set_acl),
    ..zeroed!()
});

static SYMLINK_IOPS: Table<bindings::inode_operations> = Table(bindings::inode_operations {
    get_link: Some(bindings::simple_get_link),
    setattr: Some(setattr),
    getattr: Some(getattr),
    listxattr: Some(listxattr),
    ..zeroed!()
});

// The xattr handlers (one per namespace, `flags` = the namespace's
// on-media index) are C statics in the shim: bindgen sees `struct
// xattr_handler` as opaque. They forward to `ferrofs_xattr_get_rs` and
// `ferrofs_xattr_set_rs` below. The VFS strips the prefix before calling
// them, and lists names through `listxattr` (ours), not the handlers.

static DIR_FOPS: Table<bindings::file_operations> = Table(bindings::file_operations {
    llseek: Some(bindings::generic_file_llseek),
    read: Some(bindings::generic_read_dir),
    iterate_shared: Some(iterate_shared),
    fsync: Some(fsync),
    ..zeroed!()
});

/// `FOP_MMAP_SYNC` (a bitwise-typed macro bindgen drops; the shim asserts
/// the value): mmap accepts MAP_SYNC.
const FOP_MMAP_SYNC: bindings::fop_flags_t = 1 << 2;

static FILE_FOPS: Table<bindings::file_operations> = Table(bindings::file_operations {
    // MAP_SYNC: see "MAP_SYNC" in src/dax.rs; `mmap` refuses it on a device
    // that is not synchronous.
    fop_flags: FOP_MMAP_SYNC,
    // 2 MiB-aligned addresses for mappings of 2 MiB or more, so PMD
    // mappings are possible (src/dax.rs, "PMD mappings").
    get_unmapped_area: Some(bindings::thp_get_unmapped_area),
    llseek: Some(bindings::generic_file_llseek),
    read_iter: Some(read_iter),
    write_iter: Some(write_iter),
    mmap: Some(mmap),
    open: Some(open),
    fsync: Some(fsync),
    fallocate: Some(fallocate),
    splice_read: Some(bindings::copy_splice_read),
    splice_write: Some(bindings::iter_file_splice_write),
    ..zeroed!()
});

static AOPS: Table<bindings::address_space_operations> =
    Table(bindings::address_space_operations {
        writepages: Some(writepages),
        // A page that get_user_pages returned is marked dirty through its
        // mapping when it is unpinned (and by /proc/pid/mem writes): with
        // the page lock or the page-table lock held, so nothing that
        // sleeps. fsync keeps a pinned page's entry marked instead
        // (dax::writeback).
        dirty_folio: Some(super::ferrofs_dirty_folio),
        ..zeroed!()
    });

static VM_OPS: Table<bindings::vm_operations_struct> = Table(bindings::vm_operations_struct {
    fault: Some(fault),
    huge_fault: Some(huge_fault),
    pfn_mkwrite: Some(pfn_mkwrite),
    ..zeroed!()
});

static mut FS_TYPE: bindings::file_system_type = zeroed!();

/// Registration of the `ferrofs` filesystem type; unregisters on drop.
pub(crate) struct Registration;

impl Registration {
    pub(crate) fn new(module: &'static kernel::ThisModule) -> Result<Registration> {
        super::stats::init()?;
        // SAFETY: module init runs once; FS_TYPE is not yet registered, so
        // nothing else reads it while we fill it in.
        let r = unsafe {
            let t = &mut *core::ptr::addr_of_mut!(FS_TYPE);
            t.name = c"ferrofs".as_ptr() as *const c_char;
            t.fs_flags = bindings::FS_REQUIRES_DEV as c_int;
            super::ferrofs_fs_type_setup(t);
            t.kill_sb = Some(kill_sb);
            t.owner = module.as_ptr();
            bindings::register_filesystem(t)
        };
        if r != 0 {
            super::stats::exit();
            return Err(Error::from_errno(r));
        }
        Ok(Registration)
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        // SAFETY: registered in new(); unregister waits for no users.
        unsafe { bindings::unregister_filesystem(core::ptr::addr_of_mut!(FS_TYPE)) };
        super::stats::exit();
    }
}

// ---------------------------------------------------------------------------
// Trampolines: superblock

// The mount API: the shim's fs_context operations (src/sys/shim.c) parse
// each parameter with the kernel's fs_parse and its table, then call these.

/// One mount parameter, after fs_parse matched it (`opt`: the shim's
/// FERROFS_OPT_*; `value`: the u32 or the dax= mode). `trace` is the
/// context's trace size.
#[no_mangle]
unsafe extern "C" fn ferrofs_param_rs(trace: *mut u32, opt: c_int, value: u32) -> c_int {
    let p = match opt {
        0 => crate::super_::MountParam::Dax,
        1 => crate::super_::MountParam::DaxMode(value),
        2 => crate::super_::MountParam::Trace(value),
        _ => return -(bindings::EINVAL as c_int),
    };
    from_result(|| {
        if let Some(mib) = crate::super_::check_param(p)? {
            // The VFS parses one parameter of a context at a time.
            // SAFETY: `trace` is the parsed context's fs_private, a u32 the shim allocated.
            unsafe { *trace = mib };
        }
        Ok(0)
    })
}

/// `get_tree_bdev`'s fill_super: `trace_mib` 0 means no trace.
#[no_mangle]
unsafe extern "C" fn ferrofs_fill_super_rs(
    sb: *mut bindings::super_block,
    trace_mib: u32,
) -> c_int {
    let trace = if trace_mib == 0 {
        None
    } else {
        Some(trace_mib)
    };
    from_result(|| {
        crate::super_::fill_super(&NewSuper(sb), trace)?;
        Ok(0)
    })
}

/// `SB_RDONLY` (a `BIT()` macro bindgen drops; the shim asserts the value).
const SB_RDONLY: c_uint = 1;

/// `mount -o remount`: the shim has run `sync_filesystem`; the VFS changes
/// the flags in `mask` to `flags` when we return 0.
#[no_mangle]
unsafe extern "C" fn ferrofs_reconfigure_rs(
    sb: *mut bindings::super_block,
    trace_mib: u32,
    flags: c_uint,
    mask: c_uint,
) -> c_int {
    // SAFETY: reconfigure runs on a mounted ferrofs with s_umount held
    // exclusive; s_fs_info is set until kill_sb.
    let (fs, rdonly) = unsafe {
        (
            &*((*sb).s_fs_info as *const FsInfo),
            (*sb).s_flags & SB_RDONLY as c_ulong != 0,
        )
    };
    let to_ro = mask & SB_RDONLY != 0 && flags & SB_RDONLY != 0 && !rdonly;
    from_result(|| fs.reconfigure(trace_mib, to_ro).map(|()| 0))
}

unsafe extern "C" fn kill_sb(sb: *mut bindings::super_block) {
    // SAFETY: called once per superblock by the VFS; after kill_block_super
    // all inodes are evicted and nothing reads s_fs_info any more.
    unsafe {
        bindings::kill_block_super(sb);
        let fs = (*sb).s_fs_info as *mut FsInfo;
        (*sb).s_fs_info = core::ptr::null_mut();
        if !fs.is_null() {
            crate::super_::free_fs_info(fs, sb);
        }
    }
}

unsafe extern "C" fn alloc_inode(sb: *mut bindings::super_block) -> *mut bindings::inode {
    let size = core::mem::size_of::<Inode>();
    // SAFETY: plain allocation.
    let p =
        unsafe { bindings::krealloc(core::ptr::null(), size, bindings::GFP_KERNEL) } as *mut Inode;
    if p.is_null() {
        return core::ptr::null_mut();
    }
    let _ = sb;
    // SAFETY: `p` is a fresh allocation of an Inode; each field is initialised
    // in place exactly once before the inode is returned.
    unsafe {
        bindings::inode_init_once((*p).vfs.get());
        super::ferrofs_init_inode_locks(
            (*p).sync_lock.as_ptr(),
            (*p).map_lock.as_ptr(),
            (*p).dirty.as_ptr(),
        );
        super::ferrofs_init_huge((*p).huge_lock.get(), (*p).dirty_pmd.as_ptr());
        super::ferrofs_init_xattr_lock((*p).xattr_lock.get());
        super::ferrofs_list_init((*p).sync_link.get());
        core::ptr::addr_of_mut!((*p).associated).write(core::sync::atomic::AtomicBool::new(false));
        core::ptr::addr_of_mut!((*p).tx_tag).write(core::sync::atomic::AtomicU64::new(0));
        (*p).vfs.get()
    }
}

unsafe extern "C" fn free_inode(inode: *mut bindings::inode) {
    // A symlink's i_link is its own allocation (set_link); in other inodes
    // that union member is unused by ferrofs. make_bad_inode makes a failed
    // symlink S_IFREG, but read_inode sets the link after every check.
    // SAFETY: RCU-delayed free of an inode from alloc_inode (vfs is the
    // first field, so the pointers coincide) and of its own link copy.
    unsafe {
        if u32::from((*inode).i_mode) & bindings::S_IFMT == bindings::S_IFLNK {
            bindings::kfree((*inode).__bindgen_anon_4.i_link as *const c_void);
        }
        bindings::kfree(inode as *const c_void)
    };
}

unsafe extern "C" fn evict_inode(inode: *mut bindings::inode) {
    // SAFETY: the VFS evicts a live ferrofs inode with no other users.
    let i = unsafe { Inode::from_raw(inode) };
    // SAFETY: as above.
    unsafe { bindings::truncate_inode_pages_final(core::ptr::addr_of_mut!((*inode).i_data)) };
    i.fs().sync_list.del(i);
    // A bad inode (failed to load) has nothing of ours to release.
    // SAFETY: live inode.
    if !unsafe { bindings::is_bad_inode(inode) } {
        crate::inode::evict(i);
    }
    // SAFETY: as above.
    unsafe { bindings::clear_inode(inode) };
    i.dirty.destroy();
    i.dirty_pmd.destroy();
}

unsafe extern "C" fn dirty_inode(inode: *mut bindings::inode, _flags: c_int) {
    // SAFETY: live ferrofs inode.
    let i = unsafe { Inode::from_raw(inode) };
    if let Err(e) = crate::inode::write_inode(i) {
        kernel::pr_err!("inode {}: writing metadata failed: {:?}\n", i.ino(), e);
    }
}

unsafe extern "C" fn statfs(dentry: *mut bindings::dentry, buf: *mut bindings::kstatfs) -> c_int {
    // SAFETY: dentry of a mounted ferrofs; s_fs_info is set.
    let fs = unsafe { &*((*(*dentry).d_sb).s_fs_info as *const FsInfo) };
    let s = fs.statfs();
    // SAFETY: `buf` is the caller's kstatfs.
    unsafe {
        super::ferrofs_fill_statfs(
            buf,
            FERROFS_MAGIC,
            s.blocks,
            s.bfree,
            s.files,
            s.ffree,
            crate::format::NAME_MAX as u64,
            s.fsid,
        )
    };
    0
}

unsafe extern "C" fn show_options(
    m: *mut bindings::seq_file,
    root: *mut bindings::dentry,
) -> c_int {
    // SAFETY: the root dentry of a mounted ferrofs; s_fs_info is set.
    let fs = unsafe { &*((*(*root).d_sb).s_fs_info as *const FsInfo) };
    // ferrofs is always DAX; fstests and users look for "dax" in
    // /proc/mounts. A remount given these options back accepts them.
    let mut buf = [0u8; 32];
    let mut w = ByteWriter {
        buf: &mut buf,
        len: 0,
    };
    let _ = if fs.trace_mib != 0 {
        core::fmt::Write::write_fmt(&mut w, format_args!(",dax,trace={}", fs.trace_mib))
    } else {
        core::fmt::Write::write_str(&mut w, ",dax")
    };
    let len = w.len;
    // SAFETY: valid seq_file for the call; `len` bytes of `buf` are written.
    unsafe { super::seq_write(m, buf.as_ptr() as *const c_void, len) };
    0
}

/// Formats into a fixed buffer, dropping what does not fit.
struct ByteWriter<'a> {
    buf: &'a mut [u8],
    len: usize,
}
impl core::fmt::Write for ByteWriter<'_> {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        let room = self.buf.len() - self.len;
        let n = core::cmp::min(room, s.len());
        self.buf[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
        self.len += n;
        if n < s.len() {
            Err(core::fmt::Error)
        } else {
            Ok(())
        }
    }
}

unsafe extern "C" fn sync_fs(sb: *mut bindings::super_block, wait: c_int) -> c_int {
    // SAFETY: a mounted ferrofs superblock; s_fs_info is set until kill_sb.
    let fs = unsafe { &*((*sb).s_fs_info as *const FsInfo) };
    // sync(2) and syncfs(2) call us with wait = 0, then 1. Metadata was
    // flushed as it was written; data needs the writeback walk of every
    // inode that may hold marks: writepages alone is not enough, since the
    // flusher forgets an inode re-marked while its writepages ran.
    if wait == 0 {
        fs.pmem.fence();
        return 0;
    }
    from_result(|| crate::dax::sync_all(fs).map(|()| 0))
}

/// fsfreeze: by now `freeze_super` has blocked writers, page faults and
/// internal writes, and `sync_fs` has flushed every marked page (which also
/// took write access away from every mapped page, so a store faults and
/// waits for thaw). What is left is the journal: no transaction may be
/// running, so the medium is still from here until thaw.
unsafe extern "C" fn freeze_fs(sb: *mut bindings::super_block) -> c_int {
    // SAFETY: a mounted ferrofs superblock; s_fs_info is set until kill_sb.
    let fs = unsafe { &*((*sb).s_fs_info as *const FsInfo) };
    from_result(|| fs.freeze().map(|()| 0))
}

unsafe extern "C" fn unfreeze_fs(sb: *mut bindings::super_block) -> c_int {
    // SAFETY: as in freeze_fs.
    let fs = unsafe { &*((*sb).s_fs_info as *const FsInfo) };
    fs.count(crate::sys::stats::Counter::Thaws);
    0
}

// ---------------------------------------------------------------------------
// Trampolines: namespace

unsafe extern "C" fn lookup(
    dir: *mut bindings::inode,
    dentry: *mut bindings::dentry,
    _flags: c_uint,
) -> *mut bindings::dentry {
    // SAFETY: VFS passes a live directory and a negative dentry, parent locked.
    let (dir, d) = unsafe { (Inode::from_raw(dir), Dentry::from_raw(dentry)) };
    match crate::namei::lookup(dir, d) {
        // SAFETY: d_splice_alias consumes the inode reference (NULL: negative).
        Ok(Some(inode)) => unsafe { bindings::d_splice_alias(inode.into_raw(), dentry) },
        // SAFETY: as above.
        Ok(None) => unsafe { bindings::d_splice_alias(core::ptr::null_mut(), dentry) },
        Err(e) => e.to_ptr(),
    }
}

unsafe extern "C" fn create(
    idmap: *mut bindings::mnt_idmap,
    dir: *mut bindings::inode,
    dentry: *mut bindings::dentry,
    mode: bindings::umode_t,
    _excl: bool,
) -> c_int {
    // SAFETY: VFS passes a live directory (locked) and a negative dentry.
    let (dir, d) = unsafe { (Inode::from_raw(dir), Dentry::from_raw(dentry)) };
    from_result(|| {
        crate::namei::create(&IdMap(idmap), dir, d, mode | crate::format::S_IFREG).map(|()| 0)
    })
}

unsafe extern "C" fn fileattr_get(
    dentry: *mut bindings::dentry,
    fa: *mut bindings::fileattr,
) -> c_int {
    // SAFETY: the VFS passes a live, positive dentry and its fileattr.
    let inode = unsafe { Inode::from_raw((*dentry).d_inode) };
    // SAFETY: `fa` is the caller's.
    unsafe { super::ferrofs_fileattr_fill(fa, inode.fs_flags()) };
    0
}

unsafe extern "C" fn fileattr_set(
    _idmap: *mut bindings::mnt_idmap,
    dentry: *mut bindings::dentry,
    fa: *mut bindings::fileattr,
) -> c_int {
    // SAFETY: the VFS passes a live, positive dentry (inode locked, the
    // permission and CAP_LINUX_IMMUTABLE checks done) and its fileattr.
    let (inode, f) = unsafe {
        (
            Inode::from_raw((*dentry).d_inode),
            super::ferrofs_fileattr_flags(fa),
        )
    };
    if f < 0 {
        return f as c_int;
    }
    from_result(|| crate::inode::set_fs_flags(inode, f as u32).map(|()| 0))
}

/// A kernel buffer of the VFS as a slice: empty for NULL or size 0 (the
/// caller asks for the length only).
///
/// # Safety
/// `p` is NULL or points to `size` writable bytes for `'a`.
unsafe fn kbuf<'a>(p: *mut c_void, size: usize) -> &'a mut [u8] {
    if p.is_null() || size == 0 {
        return &mut [];
    }
    // SAFETY: the caller's promise.
    unsafe { core::slice::from_raw_parts_mut(p as *mut u8, size) }
}

/// The `get` of the shim's xattr handlers.
#[no_mangle]
unsafe extern "C" fn ferrofs_xattr_get_rs(
    index: c_int,
    inode: *mut bindings::inode,
    name: *const c_char,
    buffer: *mut c_void,
    size: usize,
) -> c_int {
    // The VFS calls one of our handlers (through the shim).
    // SAFETY: live inode, NUL-terminated name after the prefix, kernel buffer of `size` bytes or NULL.
    let (inode, name, buf) = unsafe {
        (
            Inode::from_raw(inode),
            core::ffi::CStr::from_ptr(name as *const core::ffi::c_char).to_bytes(),
            kbuf(buffer, size),
        )
    };
    match crate::xattr::get(inode, index as u8, name, buf) {
        // At most a block.
        Ok(n) => n as c_int,
        Err(e) => e.to_errno(),
    }
}

/// The `set` of the shim's xattr handlers.
#[no_mangle]
unsafe extern "C" fn ferrofs_xattr_set_rs(
    index: c_int,
    inode: *mut bindings::inode,
    name: *const c_char,
    value: *const c_void,
    size: usize,
    flags: c_int,
) -> c_int {
    // The VFS calls one of our handlers (through the shim), i_rwsem held, permission checked.
    // SAFETY: live inode and NUL-terminated name after the prefix (the value is read below).
    let (inode, name) = unsafe {
        (
            Inode::from_raw(inode),
            core::ffi::CStr::from_ptr(name as *const core::ffi::c_char).to_bytes(),
        )
    };
    let value: Option<&[u8]> = if value.is_null() {
        None
    } else if size == 0 {
        Some(&[])
    } else {
        // SAFETY: the VFS passes the value as a kernel buffer of `size` bytes (not NULL here).
        Some(unsafe { core::slice::from_raw_parts(value as *const u8, size) })
    };
    from_result(|| crate::xattr::set(inode, index as u8, name, value, flags).map(|()| 0))
}

unsafe extern "C" fn listxattr(
    dentry: *mut bindings::dentry,
    buffer: *mut c_char,
    size: usize,
) -> isize {
    // SAFETY: the VFS passes a live, positive dentry and a kernel buffer of
    // `size` bytes or NULL.
    let (inode, buf) = unsafe {
        (
            Inode::from_raw((*dentry).d_inode),
            kbuf(buffer as *mut c_void, size),
        )
    };
    // SAFETY: capable() checks the current task.
    let trusted = unsafe { bindings::capable(bindings::CAP_SYS_ADMIN as c_int) };
    match crate::xattr::list(inode, buf, trusted, true) {
        Ok(n) => n as isize,
        Err(e) => e.to_errno() as isize,
    }
}

unsafe extern "C" fn get_inode_acl(
    inode: *mut bindings::inode,
    ty: c_int,
    rcu: bool,
) -> *mut bindings::posix_acl {
    if rcu {
        // Reading the block sleeps: the VFS retries outside RCU.
        return ECHILD.to_ptr();
    }
    // SAFETY: the VFS passes a live inode.
    let inode = unsafe { Inode::from_raw(inode) };
    match read_acl(inode, ty) {
        Ok(Some(acl)) => acl.into_raw(),
        Ok(None) => core::ptr::null_mut(),
        Err(e) => e.to_ptr(),
    }
}

unsafe extern "C" fn set_acl(
    idmap: *mut bindings::mnt_idmap,
    dentry: *mut bindings::dentry,
    acl: *mut bindings::posix_acl,
    ty: c_int,
) -> c_int {
    // SAFETY: the VFS passes a positive dentry (i_rwsem held, ownership
    // checked) and an ACL it holds a reference to for the call, or NULL.
    let inode = unsafe { Inode::from_raw((*dentry).d_inode) };
    from_result(|| write_acl(inode, idmap, acl, ty).map(|()| 0))
}

/// A counted reference to a `posix_acl`, dropped with posix_acl_release.
pub(crate) struct Acl(*mut bindings::posix_acl);

impl Acl {
    fn into_raw(self) -> *mut bindings::posix_acl {
        let p = self.0;
        core::mem::forget(self);
        p
    }

    /// The ACL in the VFS's xattr form, as ferrofs stores it.
    fn to_xattr(acl: *const bindings::posix_acl) -> Result<KVec<u8>> {
        // SAFETY: `acl` is a live ACL the caller holds.
        let size = unsafe { super::ferrofs_acl_xattr_size(acl) };
        let size = usize::try_from(size).map_err(|_| EINVAL)?;
        let mut v = KVec::from_elem(0u8, size, GFP_KERNEL)?;
        // SAFETY: `v` has `size` bytes; `acl` as above.
        let r = unsafe { super::ferrofs_acl_to_xattr(acl, v.as_mut_ptr() as *mut c_void, size) };
        if r < 0 {
            return Err(Error::from_errno(r));
        }
        Ok(v)
    }
}

impl Drop for Acl {
    fn drop(&mut self) {
        // SAFETY: we own one reference.
        unsafe { super::ferrofs_acl_release(self.0) };
    }
}

fn acl_index(ty: c_int) -> Result<u8> {
    match ty {
        ACL_TYPE_ACCESS => Ok(crate::format::XATTR_ACL_ACCESS),
        ACL_TYPE_DEFAULT => Ok(crate::format::XATTR_ACL_DEFAULT),
        _ => Err(EINVAL),
    }
}

/// The stored ACL of type `ty`, or None.
fn read_acl(inode: &Inode, ty: c_int) -> Result<Option<Acl>> {
    let index = acl_index(ty)?;
    let mut buf = KVec::from_elem(0u8, crate::format::BLOCK_SIZE, GFP_KERNEL)?;
    let n = match crate::xattr::get(inode, index, b"", &mut buf) {
        Ok(n) => n,
        Err(e) if e == crate::sys::enodata() => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut acl = core::ptr::null_mut();
    // SAFETY: `buf` holds `n` bytes; `acl` receives a new reference.
    let r = unsafe { super::ferrofs_acl_from_xattr(buf.as_ptr() as *const c_void, n, &mut acl) };
    if r != 0 {
        return Err(Error::from_errno(r));
    }
    Ok(if acl.is_null() { None } else { Some(Acl(acl)) })
}

/// set_acl: store `acl` (NULL: remove) as type `ty`; an access ACL that
/// says no more than the mode bits is folded into the mode instead.
fn write_acl(
    inode: &Inode,
    idmap: *mut bindings::mnt_idmap,
    acl: *mut bindings::posix_acl,
    ty: c_int,
) -> Result {
    let index = acl_index(ty)?;
    if ty == ACL_TYPE_DEFAULT && !inode.is_dir() {
        return if acl.is_null() { Ok(()) } else { Err(EACCES) };
    }
    let mut acl = acl;
    let old_mode = inode.mode();
    let mut mode = old_mode;
    if ty == ACL_TYPE_ACCESS && !acl.is_null() {
        // SAFETY: live inode (i_rwsem held) and the caller's ACL; it may
        // set `acl` to NULL (no reference is dropped).
        let r = unsafe { super::ferrofs_acl_update_mode(idmap, inode.raw(), &mut mode, &mut acl) };
        if r != 0 {
            return Err(Error::from_errno(r));
        }
    }
    let value = if acl.is_null() {
        None
    } else {
        Some(Acl::to_xattr(acl)?)
    };
    inode.set_mode(mode);
    match crate::xattr::set(inode, index, b"", value.as_deref(), 0) {
        Ok(()) => {}
        // Removing an ACL that is not there; the mode may still change.
        Err(e) if e == crate::sys::enodata() && value.is_none() => {
            if mode != old_mode {
                inode.touch_ctime();
                crate::inode::write_inode(inode)?;
            }
        }
        Err(e) => {
            inode.set_mode(old_mode);
            return Err(e);
        }
    }
    // SAFETY: live inode; set_cached_acl takes its own reference.
    unsafe { super::ferrofs_set_cached_acl(inode.raw(), ty, acl) };
    Ok(())
}

/// The ACLs a new inode inherits from `dir` (posix_acl_create), in the
/// form ferrofs stores, with `mode` adjusted (the umask, when `dir` has no
/// default ACL). Computed before the creating transaction: reading `dir`'s
/// ACL takes its xattr lock.
pub(crate) struct NewAcls {
    default: Option<Acl>,
    access: Option<Acl>,
    /// (index, xattr-form value) of each.
    pub(crate) values: KVec<(u8, KVec<u8>)>,
}

pub(crate) fn acl_create(dir: &Inode, mode: &mut u16) -> Result<NewAcls> {
    let mut m: bindings::umode_t = *mode;
    let (mut def, mut acc) = (core::ptr::null_mut(), core::ptr::null_mut());
    // SAFETY: a live directory (its i_rwsem held by the VFS); each pointer
    // receives a new reference or NULL.
    let r = unsafe { super::ferrofs_acl_create(dir.raw(), &mut m, &mut def, &mut acc) };
    if r != 0 {
        return Err(Error::from_errno(r));
    }
    let default = (!def.is_null()).then(|| Acl(def));
    let access = (!acc.is_null()).then(|| Acl(acc));
    let mut values = KVec::new();
    if let Some(a) = &default {
        values.push(
            (crate::format::XATTR_ACL_DEFAULT, Acl::to_xattr(a.0)?),
            GFP_KERNEL,
        )?;
    }
    if let Some(a) = &access {
        values.push(
            (crate::format::XATTR_ACL_ACCESS, Acl::to_xattr(a.0)?),
            GFP_KERNEL,
        )?;
    }
    *mode = m;
    Ok(NewAcls {
        default,
        access,
        values,
    })
}

impl NewAcls {
    /// After the new inode is created: cache what it got (NULL: none), so
    /// the first permission check does not read the block back.
    pub(crate) fn cache(&self, inode: &Inode) {
        let p = |a: &Option<Acl>| a.as_ref().map_or(core::ptr::null_mut(), |a| a.0);
        // SAFETY: a live inode; set_cached_acl takes its own references.
        unsafe {
            super::ferrofs_set_cached_acl(inode.raw(), ACL_TYPE_DEFAULT, p(&self.default));
            super::ferrofs_set_cached_acl(inode.raw(), ACL_TYPE_ACCESS, p(&self.access));
        }
    }
}

unsafe extern "C" fn tmpfile(
    idmap: *mut bindings::mnt_idmap,
    dir: *mut bindings::inode,
    file: *mut bindings::file,
    mode: bindings::umode_t,
) -> c_int {
    // SAFETY: VFS passes a live directory and the file being opened.
    let dir = unsafe { Inode::from_raw(dir) };
    match crate::namei::tmpfile(&IdMap(idmap), dir, mode | crate::format::S_IFREG) {
        // SAFETY: `file` is the one the VFS passed for this open.
        Ok(ni) => unsafe { ni.instantiate_tmpfile(file) },
        Err(e) => e.to_errno(),
    }
}

unsafe extern "C" fn mknod(
    idmap: *mut bindings::mnt_idmap,
    dir: *mut bindings::inode,
    dentry: *mut bindings::dentry,
    mode: bindings::umode_t,
    dev: bindings::dev_t,
) -> c_int {
    // SAFETY: VFS passes a live directory (locked) and a negative dentry.
    let (dir, d) = unsafe { (Inode::from_raw(dir), Dentry::from_raw(dentry)) };
    from_result(|| crate::namei::mknod(&IdMap(idmap), dir, d, mode, dev).map(|()| 0))
}

unsafe extern "C" fn mkdir(
    idmap: *mut bindings::mnt_idmap,
    dir: *mut bindings::inode,
    dentry: *mut bindings::dentry,
    mode: bindings::umode_t,
) -> c_int {
    // SAFETY: as create.
    let (dir, d) = unsafe { (Inode::from_raw(dir), Dentry::from_raw(dentry)) };
    from_result(|| crate::namei::mkdir(&IdMap(idmap), dir, d, mode).map(|()| 0))
}

unsafe extern "C" fn symlink(
    idmap: *mut bindings::mnt_idmap,
    dir: *mut bindings::inode,
    dentry: *mut bindings::dentry,
    target: *const c_char,
) -> c_int {
    // SAFETY: as create; `target` is a NUL-terminated kernel string.
    let (dir, d, t) = unsafe {
        (
            Inode::from_raw(dir),
            Dentry::from_raw(dentry),
            core::ffi::CStr::from_ptr(target as *const core::ffi::c_char),
        )
    };
    from_result(|| crate::namei::symlink(&IdMap(idmap), dir, d, t.to_bytes()).map(|()| 0))
}

unsafe extern "C" fn link(
    old: *mut bindings::dentry,
    dir: *mut bindings::inode,
    new: *mut bindings::dentry,
) -> c_int {
    // SAFETY: VFS passes a positive old dentry and a locked directory.
    let (old, dir, new) = unsafe {
        (
            Dentry::from_raw(old),
            Inode::from_raw(dir),
            Dentry::from_raw(new),
        )
    };
    from_result(|| crate::namei::link(old, dir, new).map(|()| 0))
}

unsafe extern "C" fn unlink(dir: *mut bindings::inode, dentry: *mut bindings::dentry) -> c_int {
    // SAFETY: VFS passes a locked directory and a positive dentry.
    let (dir, d) = unsafe { (Inode::from_raw(dir), Dentry::from_raw(dentry)) };
    from_result(|| crate::namei::unlink(dir, d).map(|()| 0))
}

unsafe extern "C" fn rmdir(dir: *mut bindings::inode, dentry: *mut bindings::dentry) -> c_int {
    // SAFETY: as unlink.
    let (dir, d) = unsafe { (Inode::from_raw(dir), Dentry::from_raw(dentry)) };
    from_result(|| crate::namei::rmdir(dir, d).map(|()| 0))
}

unsafe extern "C" fn rename(
    idmap: *mut bindings::mnt_idmap,
    old_dir: *mut bindings::inode,
    old: *mut bindings::dentry,
    new_dir: *mut bindings::inode,
    new: *mut bindings::dentry,
    flags: c_uint,
) -> c_int {
    // SAFETY: VFS passes both directories locked and both dentries live.
    let (od, o, nd, n) = unsafe {
        (
            Inode::from_raw(old_dir),
            Dentry::from_raw(old),
            Inode::from_raw(new_dir),
            Dentry::from_raw(new),
        )
    };
    from_result(|| {
        // RENAME_NOREPLACE: the VFS refused an existing target already.
        // The VFS refuses EXCHANGE with either of the others.
        if flags == bindings::RENAME_EXCHANGE {
            return crate::namei::exchange(od, o, nd, n).map(|()| 0);
        }
        if flags & !(bindings::RENAME_NOREPLACE | bindings::RENAME_WHITEOUT) != 0 {
            return Err(EINVAL);
        }
        let whiteout = flags & bindings::RENAME_WHITEOUT != 0;
        crate::namei::rename(&IdMap(idmap), od, o, nd, n, whiteout).map(|()| 0)
    })
}

unsafe extern "C" fn setattr(
    idmap: *mut bindings::mnt_idmap,
    dentry: *mut bindings::dentry,
    attr: *mut bindings::iattr,
) -> c_int {
    from_result(|| {
        // SAFETY: VFS passes a positive dentry with i_rwsem held, and a valid
        // iattr.
        unsafe {
            let r = bindings::setattr_prepare(idmap, dentry, attr);
            if r != 0 {
                return Err(Error::from_errno(r));
            }
            let inode = (*dentry).d_inode;
            let i = Inode::from_raw(inode);
            if (*attr).ia_valid & bindings::ATTR_SIZE != 0 && (*attr).ia_size as u64 != i.size() {
                crate::inode::set_size(i, (*attr).ia_size as u64)?;
            }
            bindings::setattr_copy(idmap, inode, attr);
            crate::inode::write_inode(i)?;
            if (*attr).ia_valid & bindings::ATTR_MODE != 0 {
                // The access ACL follows the new mode bits.
                let r = super::ferrofs_acl_chmod(idmap, dentry, (*inode).i_mode);
                if r != 0 {
                    return Err(Error::from_errno(r));
                }
            }
        }
        Ok(0)
    })
}

unsafe extern "C" fn getattr(
    idmap: *mut bindings::mnt_idmap,
    path: *const bindings::path,
    stat: *mut bindings::kstat,
    mask: u32,
    _flags: c_uint,
) -> c_int {
    // SAFETY: VFS passes a valid path and stat buffer.
    unsafe {
        let inode = (*(*path).dentry).d_inode;
        bindings::generic_fillattr(idmap, mask, inode, stat);
    }
    0
}

unsafe extern "C" fn fiemap(
    inode: *mut bindings::inode,
    fi: *mut bindings::fiemap_extent_info,
    start: u64,
    len: u64,
) -> c_int {
    let mut len = len;
    // SAFETY: the VFS passes a live inode and the ioctl's extent info;
    // fiemap_prep checks the request flags and clamps `len` to s_maxbytes.
    let r = unsafe { super::ferrofs_fiemap_prep(inode, fi, start, &mut len) };
    if r != 0 {
        return r;
    }
    // SAFETY: as above.
    let i = unsafe { Inode::from_raw(inode) };
    let mut out = Fiemap(fi);
    from_result(|| crate::file::fiemap(i, start, len, &mut out).map(|()| 0))
}

// ---------------------------------------------------------------------------
// Trampolines: files

unsafe extern "C" fn open(inode: *mut bindings::inode, file: *mut bindings::file) -> c_int {
    // O_DIRECT is accepted, as on ext4-dax: every I/O already bypasses caches.
    // SAFETY: valid file being opened.
    unsafe { (*file).f_mode |= FMODE_CAN_ODIRECT };
    // SAFETY: as above.
    unsafe { bindings::generic_file_open(inode, file) }
}

unsafe extern "C" fn read_iter(iocb: *mut bindings::kiocb, to: *mut bindings::iov_iter) -> isize {
    let mut k = Kiocb(iocb);
    let mut it = IovIter(to);
    // SAFETY: an open ferrofs file pins its inode for the call.
    let i = unsafe { Inode::from_raw((*(*(*iocb).ki_filp).f_mapping).host) };
    let r = crate::file::read(i, &mut k, &mut it);
    // As ext4_dax_read_iter: the access time (relatime, noatime and
    // O_NOATIME are file_accessed's to apply; dirty_inode stores it).
    // SAFETY: the open file of the call.
    unsafe { super::ferrofs_file_accessed((*iocb).ki_filp) };
    match r {
        Ok(n) => n as isize,
        Err(e) => e.to_errno() as isize,
    }
}

unsafe extern "C" fn write_iter(
    iocb: *mut bindings::kiocb,
    from: *mut bindings::iov_iter,
) -> isize {
    let mut k = Kiocb(iocb);
    let mut it = IovIter(from);
    // SAFETY: an open ferrofs file pins its inode for the call.
    let i = unsafe { Inode::from_raw((*(*(*iocb).ki_filp).f_mapping).host) };
    match crate::file::write(i, &mut k, &mut it) {
        Ok(n) => {
            if n > 0 && k.is_sync() {
                i.fs().pmem.fence();
            }
            n as isize
        }
        Err(e) => e.to_errno() as isize,
    }
}

unsafe extern "C" fn fsync(
    file: *mut bindings::file,
    start: i64,
    end: i64,
    datasync: c_int,
) -> c_int {
    // SAFETY: an open ferrofs file pins its inode.
    let i = unsafe { Inode::from_raw((*(*file).f_mapping).host) };
    from_result(|| crate::dax::fsync(i, start as u64, end as u64, datasync != 0).map(|()| 0))
}

unsafe extern "C" fn fallocate(
    file: *mut bindings::file,
    mode: c_int,
    off: i64,
    len: i64,
) -> c_long {
    // SAFETY: an open ferrofs file pins its inode.
    let i = unsafe { Inode::from_raw((*(*file).f_mapping).host) };
    from_result(|| {
        if off < 0 || len <= 0 {
            return Err(EINVAL);
        }
        crate::file::fallocate(i, mode, off as u64, len as u64).map(|()| 0)
    }) as c_long
}

unsafe extern "C" fn iterate_shared(
    file: *mut bindings::file,
    ctx: *mut bindings::dir_context,
) -> c_int {
    // SAFETY: an open directory pins its inode; the VFS holds it shared.
    let i = unsafe { Inode::from_raw((*(*file).f_mapping).host) };
    let mut c = DirContext(ctx);
    from_result(|| crate::dir::readdir(i, &mut c).map(|()| 0))
}

unsafe extern "C" fn mmap(file: *mut bindings::file, vma: *mut bindings::vm_area_struct) -> c_int {
    // SAFETY: valid file and VMA being set up by mmap_region; an open file
    // pins its inode.
    let (i, flags) = unsafe {
        (
            Inode::from_raw((*(*file).f_mapping).host),
            (*vma).__bindgen_anon_2.vm_flags as u64,
        )
    };
    if let Err(e) = crate::dax::mmap_check(i, flags & bindings::VM_SYNC as u64 != 0) {
        return e.to_errno();
    }
    // SAFETY: as above.
    unsafe {
        super::ferrofs_file_accessed(file);
        // MIXEDMAP, shared or private: file pages are devmap PTEs, which
        // get_user_pages accepts, holes the zero page (src/dax.rs).
        super::ferrofs_vm_flags_set(vma, bindings::VM_MIXEDMAP as c_ulong);
        (*vma).vm_ops = &VM_OPS.0;
    }
    0
}

unsafe extern "C" fn fault(vmf: *mut bindings::vm_fault) -> bindings::vm_fault_t {
    crate::dax::fault(&VmFault(vmf))
}

unsafe extern "C" fn huge_fault(
    vmf: *mut bindings::vm_fault,
    order: c_uint,
) -> bindings::vm_fault_t {
    crate::dax::huge_fault(&VmFault(vmf), order)
}

unsafe extern "C" fn pfn_mkwrite(vmf: *mut bindings::vm_fault) -> bindings::vm_fault_t {
    crate::dax::pfn_mkwrite(&VmFault(vmf))
}

unsafe extern "C" fn writepages(
    mapping: *mut bindings::address_space,
    wbc: *mut bindings::writeback_control,
) -> c_int {
    // SAFETY: writeback of a live ferrofs inode's mapping.
    let (i, start, end) = unsafe {
        (
            Inode::from_raw((*mapping).host),
            (*wbc).range_start as u64,
            (*wbc).range_end as u64,
        )
    };
    from_result(|| crate::dax::writeback(i, start, end).map(|()| 0))
}
