// SPDX-License-Identifier: GPL-2.0
//! Per-mount counters, one value a file under `/sys/fs/ferrofs/<device>/`,
//! and the test-only persistence trace: `trace` (read) and `trace_mark`
//! (write a number to put a marker in the trace); see `trace.rs`.

use core::sync::atomic::{AtomicU64, Ordering};
use kernel::bindings;
use kernel::error::{code::*, Result};
use kernel::types::Opaque;

use super::trace::Trace;

/// Each counter has a sysfs file of the same name.
#[derive(Clone, Copy)]
#[repr(usize)]
pub(crate) enum Counter {
    Faults,
    WriteFaults,
    PfnMkwrite,
    EntriesMarked,
    FsyncCalls,
    EntriesFlushed,
    LinesFlushed,
    RevalidateDrops,
    EntriesRemoved,
    /// Truncate, hole punch or eviction waited for a page that
    /// get_user_pages held.
    PinWaits,
    /// fsync left an entry marked because get_user_pages held its page
    /// (the holder may still store to it).
    PinnedRemarks,
    /// 2 MiB (PMD) mappings made by huge faults.
    PmdFaults,
    /// PMD dirty entries: newly marked, flushed by the writeback walk, and
    /// dropped (while marked) by truncate, punch or eviction.
    PmdEntriesMarked,
    PmdEntriesFlushed,
    PmdEntriesRemoved,
    /// MAP_SYNC mappings set up.
    SyncMaps,
    /// Write faults and pfn_mkwrite on MAP_SYNC mappings.
    SyncWriteFaults,
    /// Trace mode: lines fsync, or a MAP_SYNC write fault, left unflushed
    /// or unfenced (must stay 0).
    PersistViolations,
    /// fsfreeze: freezes done (journal quiesced) and thaws.
    Freezes,
    Thaws,
    /// Transactions begun in a journal area other than the first, because
    /// that one was running a transaction (version 5: two at once).
    TxOverlapped,
    /// A write fault found its entry no longer marked when it came to make
    /// the PTE (or PMD) writable: a writeback walk claimed it in between.
    /// The fault marked it again (counted in `entries_marked` or
    /// `pmd_entries_marked`) and retried.
    UpgradeRemarks,
    /// An allocation passed over a block or inode slot that a transaction
    /// still in flight had freed (pending until it commits, `alloc.rs`).
    PendingSkips,
    /// An allocation found no room but another transaction's frees
    /// pending, and waited for that transaction to commit.
    PendingWaits,
    /// An allocation came from an allocator shard other than its CPU's
    /// (that one had no room; `alloc.rs`).
    AllocRemote,
}
const NCOUNTERS: usize = 25;
/// Rows of counters; each row is a whole number of 64-byte lines.
const SHARDS: usize = 8;
const SHARD_WORDS: usize = NCOUNTERS.next_multiple_of(8);
/// Counters, then `flush_insn`, `trace_tx_delay`, `trace_mark` and
/// `trace_user`.
const NATTRS: usize = NCOUNTERS + 4;
const NAMES: [&core::ffi::CStr; NATTRS] = [
    c"faults",
    c"write_faults",
    c"pfn_mkwrite",
    c"entries_marked",
    c"fsync_calls",
    c"entries_flushed",
    c"lines_flushed",
    c"revalidate_drops",
    c"entries_removed",
    c"pin_waits",
    c"pinned_remarks",
    c"pmd_faults",
    c"pmd_entries_marked",
    c"pmd_entries_flushed",
    c"pmd_entries_removed",
    c"sync_maps",
    c"sync_write_faults",
    c"persist_violations",
    c"freezes",
    c"thaws",
    c"tx_overlapped",
    c"upgrade_remarks",
    c"pending_skips",
    c"pending_waits",
    c"alloc_remote",
    c"flush_insn",
    c"trace_tx_delay",
    c"trace_mark",
    c"trace_user",
];

/// The kobject and the counters it shows; freed by the kobject's release.
#[repr(C)]
struct StatsObj {
    kobj: Opaque<bindings::kobject>,
    /// One row of counters per CPU group (CPU number mod [`SHARDS`]): a
    /// fault on one CPU does not bounce another's cache lines. A value is
    /// the sum of its column.
    counters: [[AtomicU64; SHARD_WORDS]; SHARDS],
    insn: &'static str,
    /// The mount's trace, if tracing; valid while the kobject is in sysfs
    /// (the owner drops `Stats` before the trace).
    trace: core::sync::atomic::AtomicPtr<Trace>,
}

/// Owner handle: dropping it removes the sysfs directory.
pub(crate) struct Stats {
    obj: *mut StatsObj,
}

// SAFETY: the counters are atomics; the kobject is refcounted by the kernel.
unsafe impl Send for Stats {}
// SAFETY: as above.
unsafe impl Sync for Stats {}

struct SyncCell<T>(T);
// SAFETY: the tables below are written once at module init and then read-only.
unsafe impl<T> Sync for SyncCell<T> {}

static mut ATTRS: [bindings::kobj_attribute; NATTRS] =
    // SAFETY: an all-zero kobj_attribute is valid (null name, no callbacks); filled in init().
    unsafe { core::mem::MaybeUninit::zeroed().assume_init() };
static mut ATTR_PTRS: [*mut bindings::attribute; NATTRS + 1] = [core::ptr::null_mut(); NATTRS + 1];
static mut BIN_ATTR: bindings::bin_attribute =
    // SAFETY: an all-zero bin_attribute is valid; filled in init().
    unsafe { core::mem::MaybeUninit::zeroed().assume_init() };
static mut BIN_ATTR_PTRS: [*mut bindings::bin_attribute; 2] = [core::ptr::null_mut(); 2];
static mut GROUP: bindings::attribute_group =
    // SAFETY: an all-zero attribute_group is valid; filled in init().
    unsafe { core::mem::MaybeUninit::zeroed().assume_init() };
static mut GROUPS: [*const bindings::attribute_group; 2] = [core::ptr::null(); 2];
static mut KTYPE: bindings::kobj_type =
    // SAFETY: an all-zero kobj_type is valid; filled in init().
    unsafe { core::mem::MaybeUninit::zeroed().assume_init() };
static ROOT: SyncCell<core::sync::atomic::AtomicPtr<bindings::kobject>> =
    SyncCell(core::sync::atomic::AtomicPtr::new(core::ptr::null_mut()));

/// sysfs `show` for every counter file.
///
/// # Safety
/// Called by sysfs only for attributes of our ktype: `kobj` is the first
/// field of a live [`StatsObj`], `attr` an element of `ATTRS`, `buf` a page.
unsafe extern "C" fn show(
    kobj: *mut bindings::kobject,
    attr: *mut bindings::kobj_attribute,
    buf: *mut kernel::ffi::c_char,
) -> isize {
    // SAFETY: `kobj` is the first field of a live StatsObj (we only register
    // this callback on our own ktype); `attr` is one of ATTRS.
    unsafe {
        let obj = kobj as *mut StatsObj;
        let idx = attr.offset_from(core::ptr::addr_of_mut!(ATTRS) as *mut bindings::kobj_attribute)
            as usize;
        let mut w = Writer { buf, len: 0 };
        if idx < NCOUNTERS {
            let v = (*obj).counters.iter().fold(0u64, |a, row| {
                a.wrapping_add(row[idx].load(Ordering::Relaxed))
            });
            let _ = core::fmt::write(&mut w, format_args!("{}\n", v));
        } else {
            let _ = core::fmt::write(&mut w, format_args!("{}\n", (*obj).insn));
        }
        w.len as isize
    }
}

/// sysfs `store` of `trace_mark`: a decimal number becomes a MARK event.
///
/// # Safety
/// As [`store_decimal`].
unsafe extern "C" fn store_mark(
    kobj: *mut bindings::kobject,
    _attr: *mut bindings::kobj_attribute,
    buf: *const kernel::ffi::c_char,
    count: usize,
) -> isize {
    // SAFETY: the caller's promise, passed on.
    unsafe {
        store_decimal(kobj, buf, count, |t, v| {
            t.mark(v);
            true
        })
    }
}

/// sysfs `store` of `trace_tx_delay`: microseconds (0 to 100000) every
/// transaction sleeps before its commit, in a traced mount (test only).
///
/// # Safety
/// As [`store_decimal`].
unsafe extern "C" fn store_tx_delay(
    kobj: *mut bindings::kobject,
    _attr: *mut bindings::kobj_attribute,
    buf: *const kernel::ffi::c_char,
    count: usize,
) -> isize {
    // SAFETY: the caller's promise, passed on.
    unsafe {
        store_decimal(kobj, buf, count, |t, us| match u32::try_from(us) {
            Ok(us) if us <= 100_000 => {
                t.set_tx_delay(us);
                true
            }
            _ => false,
        })
    }
}

/// A `store` of a decimal number on one of our trace files: `apply` takes
/// it (false: out of range, EINVAL).
///
/// # Safety
/// Called from a sysfs `store` of our ktype: `kobj` is the first field of a
/// live [`StatsObj`]; `buf` holds `count` bytes.
unsafe fn store_decimal(
    kobj: *mut bindings::kobject,
    buf: *const kernel::ffi::c_char,
    count: usize,
    apply: impl FnOnce(&Trace, u64) -> bool,
) -> isize {
    // SAFETY: the caller's promise, passed on.
    let (t, bytes) = match unsafe { store_args(kobj, buf, count) } {
        Ok(a) => a,
        Err(e) => return e,
    };
    let text = core::str::from_utf8(bytes).unwrap_or("").trim();
    match text.parse::<u64>() {
        Ok(v) if apply(t, v) => count as isize,
        _ => -(bindings::EINVAL as isize),
    }
}

/// The trace and the written bytes of a `store` on one of our trace files,
/// or the errno to return (no trace: ENODEV).
///
/// # Safety
/// `kobj` is the first field of a live [`StatsObj`]; `buf` holds `count`
/// readable bytes that outlive the returned slice (sysfs's page, for the
/// `store` call).
unsafe fn store_args<'a>(
    kobj: *mut bindings::kobject,
    buf: *const kernel::ffi::c_char,
    count: usize,
) -> core::result::Result<(&'a Trace, &'a [u8]), isize> {
    // SAFETY: the caller's promise: a live StatsObj, `count` readable bytes.
    let (obj, bytes) = unsafe {
        (
            &*(kobj as *const StatsObj),
            core::slice::from_raw_parts(buf, count),
        )
    };
    let t = obj.trace.load(Ordering::Acquire);
    if t.is_null() {
        return Err(-(bindings::ENODEV as isize));
    }
    // SAFETY: the trace outlives the sysfs files (StatsObj::trace), and so
    // the store call.
    Ok((unsafe { &*t }, bytes))
}

/// sysfs `store` of `trace_user`: stores a test workload made from user
/// space, which the trace cannot see, reported after the fact so the crash
/// checker can replay them (`Trace::user`). Binary: an 8-byte little-endian
/// device offset, then the bytes stored there and written back; the offset
/// `u64::MAX` with no bytes is the user's fence.
///
/// # Safety
/// Called by sysfs for our ktype: `kobj` is the first field of a live
/// [`StatsObj`]; `buf` holds `count` bytes.
unsafe extern "C" fn store_user(
    kobj: *mut bindings::kobject,
    _attr: *mut bindings::kobj_attribute,
    buf: *const kernel::ffi::c_char,
    count: usize,
) -> isize {
    // SAFETY: the caller's promise, passed on.
    let (t, bytes) = match unsafe { store_args(kobj, buf, count) } {
        Ok(a) => a,
        Err(e) => return e,
    };
    let Some((head, data)) = bytes.split_first_chunk::<8>() else {
        return -(bindings::EINVAL as isize);
    };
    let off = u64::from_le_bytes(*head);
    match t.user(off, data) {
        Ok(()) => count as isize,
        Err(e) => e.to_errno() as isize,
    }
}

/// sysfs binary `read` of `trace`.
///
/// # Safety
/// Called by sysfs for our ktype: `kobj` is the first field of a live
/// [`StatsObj`]; `buf` has room for `count` bytes.
unsafe extern "C" fn read_trace(
    _file: *mut bindings::file,
    kobj: *mut bindings::kobject,
    _attr: *mut bindings::bin_attribute,
    buf: *mut kernel::ffi::c_char,
    pos: bindings::loff_t,
    count: usize,
) -> isize {
    // SAFETY: the caller's promise: a live StatsObj, `count` writable bytes.
    let (obj, out) = unsafe {
        (
            &*(kobj as *const StatsObj),
            core::slice::from_raw_parts_mut(buf, count),
        )
    };
    let t = obj.trace.load(Ordering::Acquire);
    if t.is_null() {
        return -(bindings::ENODEV as isize);
    }
    if pos < 0 {
        return -(bindings::EINVAL as isize);
    }
    // SAFETY: the trace outlives the sysfs files (StatsObj::trace).
    unsafe { (*t).read(pos as usize, out) as isize }
}

/// Formats into a sysfs page buffer (PAGE_SIZE bytes).
struct Writer {
    buf: *mut u8,
    len: usize,
}
impl core::fmt::Write for Writer {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        let n = s.len().min(4095 - self.len);
        // SAFETY: sysfs hands show() a PAGE_SIZE buffer; we stay below 4095.
        unsafe { core::ptr::copy_nonoverlapping(s.as_ptr(), self.buf.add(self.len), n) };
        self.len += n;
        Ok(())
    }
}

/// kobject release: frees the [`StatsObj`].
///
/// # Safety
/// Called once by the kobject core when the last reference is dropped.
unsafe extern "C" fn release(kobj: *mut bindings::kobject) {
    // SAFETY: the kobject is the first field of a StatsObj allocated with
    // krealloc in Stats::new; this is its last reference.
    unsafe { bindings::kfree(kobj as *const core::ffi::c_void) };
}

/// Set up the static tables and `/sys/fs/ferrofs`. Called once at module init.
pub(crate) fn init() -> Result {
    // SAFETY: module init runs once, before any mount can use these tables.
    unsafe {
        for i in 0..NATTRS {
            ATTRS[i].attr.name = NAMES[i].as_ptr() as *const kernel::ffi::c_char;
            ATTRS[i].attr.mode = 0o444;
            ATTRS[i].show = Some(show);
            ATTR_PTRS[i] = core::ptr::addr_of_mut!(ATTRS[i].attr);
        }
        ATTRS[NATTRS - 3].attr.mode = 0o200;
        ATTRS[NATTRS - 3].show = None;
        ATTRS[NATTRS - 3].store = Some(store_tx_delay);
        ATTRS[NATTRS - 2].attr.mode = 0o200;
        ATTRS[NATTRS - 2].show = None;
        ATTRS[NATTRS - 2].store = Some(store_mark);
        ATTRS[NATTRS - 1].attr.mode = 0o200;
        ATTRS[NATTRS - 1].show = None;
        ATTRS[NATTRS - 1].store = Some(store_user);
        BIN_ATTR.attr.name = c"trace".as_ptr() as *const kernel::ffi::c_char;
        BIN_ATTR.attr.mode = 0o400;
        BIN_ATTR.read = Some(read_trace);
        BIN_ATTR_PTRS[0] = core::ptr::addr_of_mut!(BIN_ATTR);
        GROUP.attrs = core::ptr::addr_of_mut!(ATTR_PTRS) as *mut *mut bindings::attribute;
        GROUP.bin_attrs =
            core::ptr::addr_of_mut!(BIN_ATTR_PTRS) as *mut *mut bindings::bin_attribute;
        GROUPS[0] = core::ptr::addr_of!(GROUP);
        KTYPE.release = Some(release);
        KTYPE.sysfs_ops = core::ptr::addr_of!(bindings::kobj_sysfs_ops);
        KTYPE.default_groups =
            core::ptr::addr_of_mut!(GROUPS) as *mut *const bindings::attribute_group;
        let root = bindings::kobject_create_and_add(
            c"ferrofs".as_ptr() as *const kernel::ffi::c_char,
            bindings::fs_kobj,
        );
        if root.is_null() {
            return Err(ENOMEM);
        }
        ROOT.0.store(root, Ordering::Release);
    }
    Ok(())
}

pub(crate) fn exit() {
    let root = ROOT.0.swap(core::ptr::null_mut(), Ordering::AcqRel);
    if !root.is_null() {
        // SAFETY: `root` came from kobject_create_and_add in init().
        unsafe { bindings::kobject_put(root) };
    }
}

impl Stats {
    /// Create `/sys/fs/ferrofs/<name>/`.
    pub(crate) fn new(name: &core::ffi::CStr, insn: &'static str) -> Result<Stats> {
        let size = core::mem::size_of::<StatsObj>();
        // SAFETY: plain allocation; zeroed memory is a valid StatsObj except for
        // `insn`, written before use below.
        let obj = unsafe {
            bindings::krealloc(
                core::ptr::null(),
                size,
                bindings::GFP_KERNEL | bindings::__GFP_ZERO,
            )
        } as *mut StatsObj;
        if obj.is_null() {
            return Err(ENOMEM);
        }
        // SAFETY: `obj` is a fresh zeroed allocation of the right size; the
        // kobject takes ownership of it (release frees it), even on error.
        unsafe {
            core::ptr::addr_of_mut!((*obj).insn).write(insn);
            let ret = bindings::kobject_init_and_add(
                (*obj).kobj.get(),
                core::ptr::addr_of!(KTYPE),
                ROOT.0.load(Ordering::Acquire),
                c"%s".as_ptr() as *const kernel::ffi::c_char,
                name.as_ptr(),
            );
            if ret != 0 {
                bindings::kobject_put((*obj).kobj.get());
                return Err(kernel::error::Error::from_errno(ret));
            }
        }
        Ok(Stats { obj })
    }

    pub(crate) fn add(&self, c: Counter, n: u64) {
        // SAFETY: plain read of the current CPU number (preemption may move
        // us on; any row is correct, the CPU's own is only faster).
        let cpu = unsafe { super::ferrofs_cpu() } as usize;
        // SAFETY: `obj` stays allocated while this handle holds its reference.
        unsafe { (*self.obj).counters[cpu % SHARDS][c as usize].fetch_add(n, Ordering::Relaxed) };
    }

    pub(crate) fn inc(&self, c: Counter) {
        self.add(c, 1)
    }

    /// Expose `t` through `trace` and `trace_mark`. The caller keeps `t`
    /// alive and in place until this `Stats` is dropped.
    pub(crate) fn set_trace(&self, t: &Trace) {
        // SAFETY: `obj` stays allocated while this handle holds its reference.
        unsafe {
            (*self.obj)
                .trace
                .store(t as *const Trace as *mut Trace, Ordering::Release)
        };
    }
}

impl Drop for Stats {
    fn drop(&mut self) {
        // SAFETY: drops the reference taken by kobject_init_and_add.
        unsafe { bindings::kobject_put((*self.obj).kobj.get()) };
    }
}
