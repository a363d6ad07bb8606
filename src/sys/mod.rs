// SPDX-License-Identifier: GPL-2.0
//! The FFI layer: everything that touches `kernel::bindings` or raw pointers.
//!
//! The filesystem modules above (`super_`, `inode`, `namei`, `dir`, `file`,
//! `alloc`, `dax`) use only the safe types exported from here. `vfs` owns every
//! C operations table and its `extern "C"` trampolines.

pub(crate) mod locks;
pub(crate) mod pmem;
pub(crate) mod stats;
pub(crate) mod trace;
pub(crate) mod vfs;
pub(crate) mod xarray;

use kernel::bindings;
use kernel::error::Error;

/// Errnos the kernel crate of 6.12 has no constant for.
pub(crate) fn enametoolong() -> Error {
    Error::from_errno(-(bindings::ENAMETOOLONG as i32))
}
pub(crate) fn enotempty() -> Error {
    Error::from_errno(-(bindings::ENOTEMPTY as i32))
}
/// "Structure needs cleaning": what ext4 and xfs return for metadata that
/// fails a check (EFSCORRUPTED).
pub(crate) fn euclean() -> Error {
    Error::from_errno(-(bindings::EUCLEAN as i32))
}
/// No such attribute (ENODATA, which the kernel crate does not name).
pub(crate) fn enodata() -> Error {
    Error::from_errno(-(bindings::ENODATA as i32))
}
/// A full memory barrier (`smp_mb`): the writeback walk's side of the
/// upgrade protocol, between clearing marks and zapping (`dax.rs`).
pub(crate) fn smp_mb() {
    // SAFETY: a barrier; no memory is accessed.
    unsafe { ferrofs_smp_mb() }
}

/// The CPU this runs on now (preemption may move us on at once: for
/// choosing among per-CPU things, where any choice is correct).
pub(crate) fn this_cpu() -> usize {
    // SAFETY: plain read of the current CPU number.
    unsafe { ferrofs_cpu() as usize }
}

/// CPUs online now (at least 1).
pub(crate) fn online_cpus() -> usize {
    // SAFETY: plain read of the online CPU count.
    core::cmp::max(1, unsafe { ferrofs_online_cpus() } as usize)
}

pub(crate) fn eopnotsupp() -> Error {
    Error::from_errno(-(bindings::EOPNOTSUPP as i32))
}

// Pointers to kernel structs, passed through untouched.
#[allow(improper_ctypes)]
extern "C" {
    pub(crate) fn ferrofs_dax_get(
        bdev: *mut bindings::block_device,
        start_off: *mut u64,
        holder: *mut kernel::ffi::c_void,
    ) -> *mut kernel::ffi::c_void;
    pub(crate) fn ferrofs_dax_put(dax: *mut kernel::ffi::c_void, holder: *mut kernel::ffi::c_void);
    pub(crate) fn ferrofs_dax_map(
        dax: *mut kernel::ffi::c_void,
        start_off: u64,
        nr_pages: kernel::ffi::c_long,
        kaddr: *mut *mut kernel::ffi::c_void,
        pfn: *mut kernel::ffi::c_ulong,
        has_pages: *mut kernel::ffi::c_int,
    ) -> kernel::ffi::c_long;
    pub(crate) fn ferrofs_bdev_bytes(bdev: *mut bindings::block_device) -> u64;
    pub(crate) fn ferrofs_dax_synchronous(dax: *mut kernel::ffi::c_void) -> kernel::ffi::c_int;
    pub(crate) fn ferrofs_fiemap_prep(
        inode: *mut bindings::inode,
        fi: *mut bindings::fiemap_extent_info,
        start: u64,
        len: *mut u64,
    ) -> kernel::ffi::c_int;
    pub(crate) fn ferrofs_fiemap_fill(
        fi: *mut bindings::fiemap_extent_info,
        logical: u64,
        phys: u64,
        len: u64,
        flags: u32,
    ) -> kernel::ffi::c_int;
    pub(crate) fn ferrofs_flush_insn() -> kernel::ffi::c_int;
    pub(crate) fn ferrofs_init_inode_locks(
        sync: *mut bindings::mutex,
        map: *mut bindings::mutex,
        xa: *mut bindings::xarray,
    );
    pub(crate) fn ferrofs_init_alloc_mutex(m: *mut bindings::mutex);
    pub(crate) fn ferrofs_online_cpus() -> kernel::ffi::c_uint;
    pub(crate) fn ferrofs_init_huge(huge: *mut bindings::rw_semaphore, xa: *mut bindings::xarray);
    pub(crate) fn ferrofs_init_xattr_lock(sem: *mut bindings::rw_semaphore);
    pub(crate) fn ferrofs_xattr_handlers() -> *const *mut bindings::xattr_handler;
    pub(crate) fn ferrofs_fs_type_setup(t: *mut bindings::file_system_type);
    pub(crate) fn ferrofs_acl_from_xattr(
        value: *const kernel::ffi::c_void,
        size: usize,
        out: *mut *mut bindings::posix_acl,
    ) -> kernel::ffi::c_int;
    pub(crate) fn ferrofs_acl_xattr_size(acl: *const bindings::posix_acl) -> kernel::ffi::c_long;
    pub(crate) fn ferrofs_acl_to_xattr(
        acl: *const bindings::posix_acl,
        buf: *mut kernel::ffi::c_void,
        size: usize,
    ) -> kernel::ffi::c_int;
    pub(crate) fn ferrofs_acl_release(acl: *mut bindings::posix_acl);
    pub(crate) fn ferrofs_acl_create(
        dir: *mut bindings::inode,
        mode: *mut bindings::umode_t,
        def: *mut *mut bindings::posix_acl,
        acl: *mut *mut bindings::posix_acl,
    ) -> kernel::ffi::c_int;
    pub(crate) fn ferrofs_acl_chmod(
        idmap: *mut bindings::mnt_idmap,
        dentry: *mut bindings::dentry,
        mode: bindings::umode_t,
    ) -> kernel::ffi::c_int;
    pub(crate) fn ferrofs_set_cached_acl(
        inode: *mut bindings::inode,
        ty: kernel::ffi::c_int,
        acl: *mut bindings::posix_acl,
    );
    pub(crate) fn ferrofs_acl_update_mode(
        idmap: *mut bindings::mnt_idmap,
        inode: *mut bindings::inode,
        mode: *mut bindings::umode_t,
        acl: *mut *mut bindings::posix_acl,
    ) -> kernel::ffi::c_int;
    pub(crate) fn ferrofs_insert_pmd(
        vmf: *mut bindings::vm_fault,
        pfn: kernel::ffi::c_ulong,
    ) -> bindings::vm_fault_t;
    pub(crate) fn ferrofs_pmd_mkwrite(
        vmf: *mut bindings::vm_fault,
        pfn: kernel::ffi::c_ulong,
        xa: *mut bindings::xarray,
        index: kernel::ffi::c_ulong,
    ) -> kernel::ffi::c_int;
    pub(crate) fn ferrofs_pmd_is_leaf(vmf: *mut bindings::vm_fault) -> kernel::ffi::c_int;
    pub(crate) fn ferrofs_pmd_fits(vmf: *mut bindings::vm_fault) -> kernel::ffi::c_int;
    pub(crate) fn ferrofs_vm_flags_set(
        vma: *mut bindings::vm_area_struct,
        flags: kernel::ffi::c_ulong,
    );
    pub(crate) fn ferrofs_iov_count(i: *const bindings::iov_iter) -> usize;
    pub(crate) fn ferrofs_sb_start_pagefault(sb: *mut bindings::super_block);
    pub(crate) fn ferrofs_sb_end_pagefault(sb: *mut bindings::super_block);
    pub(crate) fn ferrofs_inode_fs_flags(inode: *mut bindings::inode) -> kernel::ffi::c_uint;
    pub(crate) fn ferrofs_fileattr_fill(fa: *mut bindings::fileattr, flags: kernel::ffi::c_uint);
    pub(crate) fn ferrofs_fileattr_flags(fa: *const bindings::fileattr) -> kernel::ffi::c_long;
    pub(crate) fn ferrofs_inode_set_fs_flags(
        inode: *mut bindings::inode,
        flags: kernel::ffi::c_uint,
    );
    pub(crate) fn ferrofs_sb_start_intwrite(sb: *mut bindings::super_block);
    pub(crate) fn ferrofs_sb_end_intwrite(sb: *mut bindings::super_block);
    pub(crate) fn ferrofs_insert_page(
        vmf: *mut bindings::vm_fault,
        pfn: kernel::ffi::c_ulong,
    ) -> bindings::vm_fault_t;
    pub(crate) fn ferrofs_smp_mb();
    pub(crate) fn ferrofs_usleep(us: kernel::ffi::c_ulong);
    pub(crate) fn ferrofs_insert_zero(vmf: *mut bindings::vm_fault) -> bindings::vm_fault_t;
    pub(crate) fn ferrofs_pte_mkwrite(
        vmf: *mut bindings::vm_fault,
        pfn: kernel::ffi::c_ulong,
        xa: *mut bindings::xarray,
        index: kernel::ffi::c_ulong,
    ) -> kernel::ffi::c_int;
    pub(crate) fn ferrofs_page_refs(pfn: kernel::ffi::c_ulong) -> kernel::ffi::c_int;
    pub(crate) fn ferrofs_page_associate(
        pfn: kernel::ffi::c_ulong,
        mapping: *mut bindings::address_space,
        index: kernel::ffi::c_ulong,
    );
    pub(crate) fn ferrofs_page_disassociate(
        pfn: kernel::ffi::c_ulong,
        mapping: *mut bindings::address_space,
    );
    pub(crate) fn ferrofs_wait_page_idle(
        pfn: kernel::ffi::c_ulong,
        drop: *mut bindings::rw_semaphore,
    ) -> kernel::ffi::c_int;
    pub(crate) fn ferrofs_wait_page_idle_final(
        pfn: kernel::ffi::c_ulong,
        msecs: kernel::ffi::c_uint,
    ) -> kernel::ffi::c_int;
    pub(crate) fn ferrofs_dirty_folio(
        mapping: *mut bindings::address_space,
        folio: *mut bindings::folio,
    ) -> bool;
}

// Pointers to kernel structs, passed through untouched.
#[allow(improper_ctypes)]
extern "C" {
    pub(crate) fn ferrofs_fill_statfs(
        buf: *mut bindings::kstatfs,
        magic: u64,
        blocks: u64,
        bfree: u64,
        files: u64,
        ffree: u64,
        namelen: u64,
        fsid: u64,
    );
}

// Pointers to kernel structs, passed through untouched.
#[allow(improper_ctypes)]
extern "C" {
    /// From fs/seq_file.c (linux/seq_file.h is not in the bindings).
    pub(crate) fn seq_write(
        m: *mut bindings::seq_file,
        data: *const kernel::ffi::c_void,
        len: usize,
    ) -> kernel::ffi::c_int;
    pub(crate) fn ferrofs_file_accessed(file: *mut bindings::file);
    pub(crate) fn ferrofs_init_journal_mutex(m: *mut bindings::mutex);
    pub(crate) fn ferrofs_cpu() -> kernel::ffi::c_uint;
    pub(crate) fn ferrofs_current_pid() -> kernel::ffi::c_uint;
    pub(crate) fn ferrofs_mutex_lock_nested(m: *mut bindings::mutex, sub: kernel::ffi::c_uint);
    pub(crate) fn ferrofs_wait_var_ne(var: *mut u64, v: u64);
    pub(crate) fn ferrofs_set_var_wake(var: *mut u64, v: u64);
    pub(crate) fn ferrofs_nofs_save() -> kernel::ffi::c_uint;
    pub(crate) fn ferrofs_nofs_restore(flags: kernel::ffi::c_uint);
    pub(crate) fn ferrofs_sync_list_init(
        lock: *mut bindings::spinlock_t,
        head: *mut bindings::list_head,
    );
    pub(crate) fn ferrofs_list_init(e: *mut bindings::list_head);
    pub(crate) fn ferrofs_sync_list_add(
        lock: *mut bindings::spinlock_t,
        head: *mut bindings::list_head,
        e: *mut bindings::list_head,
    );
    pub(crate) fn ferrofs_sync_list_del(
        lock: *mut bindings::spinlock_t,
        e: *mut bindings::list_head,
    );
    pub(crate) fn ferrofs_sync_list_splice(
        lock: *mut bindings::spinlock_t,
        head: *mut bindings::list_head,
        priv_: *mut bindings::list_head,
    );
    pub(crate) fn ferrofs_sync_list_pop(
        lock: *mut bindings::spinlock_t,
        priv_: *mut bindings::list_head,
        link_off: usize,
    ) -> *mut bindings::inode;
    pub(crate) fn ferrofs_copy_mc(
        dst: *mut kernel::ffi::c_void,
        src: *const kernel::ffi::c_void,
        n: usize,
    ) -> kernel::ffi::c_ulong;
    pub(crate) fn ferrofs_copy_mc_to_iter(
        src: *const kernel::ffi::c_void,
        n: usize,
        i: *mut bindings::iov_iter,
    ) -> usize;
}

/// Allocations in scope cannot recurse into filesystem reclaim (which could
/// evict one of our inodes and wait for the journal we hold).
pub(crate) struct NoFs(kernel::ffi::c_uint);
impl NoFs {
    pub(crate) fn enter() -> NoFs {
        // SAFETY: saves and sets a flag of the current task; no preconditions.
        NoFs(unsafe { ferrofs_nofs_save() })
    }
}
impl Drop for NoFs {
    fn drop(&mut self) {
        // SAFETY: restores what enter() saved, in LIFO order (RAII).
        unsafe { ferrofs_nofs_restore(self.0) };
    }
}
