// SPDX-License-Identifier: GPL-2.0
//! Mount: options, the DAX device, superblock validation, per-mount state.

use crate::alloc::Allocators;
use crate::format::{self, Geometry, Pod, Superblock};
use crate::journal::{Journal, Tx};
use crate::sys::pmem::{FlushInsn, Pmem};
use crate::sys::stats::{Counter, Stats};
use crate::sys::vfs::{self, NewSuper};
use kernel::bindings;
use kernel::error::{code::*, Result};
use kernel::prelude::*;

/// Per-mount state, in `s_fs_info` from `fill_super` to `kill_sb`.
pub(crate) struct FsInfo {
    pub(crate) stats: Stats,
    pub(crate) pmem: Pmem,
    pub(crate) geo: Geometry,
    pub(crate) alloc: Allocators,
    pub(crate) journal: Journal,
    /// Inodes that may hold dirty marks, for sync_fs.
    pub(crate) sync_list: KBox<vfs::SyncList>,
    uuid: [u8; 16],
    sb: *mut bindings::super_block,
    /// The device makes a store durable once it is written back from the
    /// CPU caches (`dax_synchronous`; not virtio-pmem): MAP_SYNC is allowed.
    pub(crate) synchronous: bool,
    /// The `trace=` size in MiB, 0 without a trace (show_options, remount).
    pub(crate) trace_mib: u32,
    /// Held for the mount's lifetime: the pmem mapping depends on it.
    _dax: DaxDevice,
}

pub(crate) struct StatFs {
    pub(crate) blocks: u64,
    pub(crate) bfree: u64,
    pub(crate) files: u64,
    pub(crate) ffree: u64,
    pub(crate) fsid: u64,
}

impl FsInfo {
    pub(crate) fn sb(&self) -> *mut bindings::super_block {
        self.sb
    }

    /// Start a metadata transaction (see `journal.rs`).
    pub(crate) fn tx(&self) -> Tx<'_> {
        let tx = self.journal.begin(&self.pmem, &self.alloc, &self.stats);
        if tx.area() > 0 {
            self.count(Counter::TxOverlapped);
        }
        tx
    }

    pub(crate) fn count(&self, c: Counter) {
        self.stats.inc(c)
    }

    /// `freeze_fs`: writers, faults and internal writes are blocked and
    /// every marked page was flushed; wait for the transaction running now
    /// (none can start until thaw) and fence, so the medium holds a
    /// committed, stable image until thaw.
    pub(crate) fn freeze(&self) -> Result {
        self.journal.barrier();
        self.pmem.fence();
        self.count(Counter::Freezes);
        Ok(())
    }

    /// `mount -o remount`: the parameters may not change the trace (it is
    /// set up at mount); going read-only, wait for the running transaction
    /// and fence, as freeze does: `sync_filesystem` has flushed every marked
    /// page and the VFS refused the remount if a file is open for writing.
    pub(crate) fn reconfigure(&self, trace_mib: u32, to_ro: bool) -> Result {
        if trace_mib != 0 && trace_mib != self.trace_mib {
            pr_err!("trace= is set at mount and cannot change on remount\n");
            return Err(EINVAL);
        }
        if to_ro {
            self.journal.barrier();
            self.pmem.fence();
        }
        Ok(())
    }

    /// Inside `tx`: make the superblock say at least version `to`
    /// ([`format::VERSION_FLAGS`], [`format::VERSION_XATTR`]), before the
    /// transaction writes anything only that version defines. Returns
    /// whether it wrote the superblock; the caller then calls
    /// [`FsInfo::version_raised`] once `tx` has committed (a rolled-back
    /// raise leaves the old version, and the next user raises again).
    /// Raises happen only on images older than version 5, which have one
    /// journal area: their transactions run one at a time.
    pub(crate) fn raise_version(&self, tx: &mut crate::journal::Tx<'_>, to: u32) -> Result<bool> {
        if self
            .journal
            .version
            .load(core::sync::atomic::Ordering::Relaxed)
            >= to
        {
            return Ok(false);
        }
        let mut raw: Superblock = self.pmem.read_pod(0)?;
        raw.version.set(to);
        raw.update_checksum();
        tx.write(0, raw.as_bytes())?;
        Ok(true)
    }

    /// [`FsInfo::raise_version`] for a caller deep inside a transaction:
    /// the in-memory version follows when `tx` commits.
    pub(crate) fn raise_version_on_commit(
        &self,
        tx: &mut crate::journal::Tx<'_>,
        to: u32,
    ) -> Result {
        if self.raise_version(tx, to)? {
            tx.raises = core::cmp::max(tx.raises, to);
        }
        Ok(())
    }

    /// The transaction of [`FsInfo::raise_version`]`(.., to)` committed.
    pub(crate) fn version_raised(&self, to: u32) {
        self.journal
            .version
            .fetch_max(to, core::sync::atomic::Ordering::Relaxed);
    }

    pub(crate) fn statfs(&self) -> StatFs {
        let a = &self.alloc;
        let mut fsid = [0u8; 8];
        for (i, b) in self.uuid.iter().enumerate() {
            fsid[i % 8] ^= b;
        }
        StatFs {
            blocks: self.geo.blocks_count - self.geo.data_start,
            bfree: a.free_blocks(),
            files: self.geo.inodes_count as u64,
            ffree: a.free_inodes(),
            fsid: u64::from_le_bytes(fsid),
        }
    }

    /// Byte offset of block `b`.
    pub(crate) fn block_off(b: u64) -> u64 {
        b << format::BLOCK_SHIFT
    }
}

/// A DAX device held for the mount; released on drop.
struct DaxDevice {
    dev: *mut core::ffi::c_void,
    holder: *mut core::ffi::c_void,
}

impl Drop for DaxDevice {
    fn drop(&mut self) {
        // SAFETY: `dev` came from ferrofs_dax_get with this holder.
        unsafe { crate::sys::ferrofs_dax_put(self.dev, self.holder) };
    }
}

/// A mount parameter as the kernel's parser matched it (the table is in
/// src/sys/shim.c): `dax`, `dax=always|never|inode` (in that order, 0..2),
/// `trace=MiB`. Unknown names and malformed values never get here: the
/// parser refuses them ("ferrofs: Unknown parameter ..." in the log).
pub(crate) enum MountParam {
    Dax,
    DaxMode(u32),
    Trace(u32),
}

/// Check one mount parameter. ferrofs is DAX only: `dax` and `dax=always`
/// are accepted (and implied); `dax=never` and `dax=inode` fail the mount.
/// `trace=MiB` (tests only) records a persistence trace of up to MiB MiB:
/// returns that size.
pub(crate) fn check_param(p: MountParam) -> Result<Option<u32>> {
    match p {
        MountParam::Dax | MountParam::DaxMode(0) => Ok(None),
        MountParam::DaxMode(m) => {
            let name = if m == 1 { "dax=never" } else { "dax=inode" };
            pr_err!("{} is not supported: ferrofs is DAX only\n", name);
            Err(EINVAL)
        }
        MountParam::Trace(n) if (1..=1024).contains(&n) => Ok(Some(n)),
        MountParam::Trace(_) => {
            pr_err!("trace= takes a size in MiB from 1 to 1024\n");
            Err(EINVAL)
        }
    }
}

pub(crate) fn fill_super(sb: &NewSuper, trace_mib: Option<u32>) -> Result {
    let dev = sb.id();
    let holder = sb.raw() as *mut core::ffi::c_void;
    let mut start_off = 0u64;
    // SAFETY: the superblock's block device is open for the mount.
    let daxp = unsafe { crate::sys::ferrofs_dax_get(sb.bdev(), &mut start_off, holder) };
    if daxp.is_null() {
        pr_err!("{:?}: device does not support DAX\n", dev);
        return Err(EINVAL);
    }
    let dax = DaxDevice { dev: daxp, holder };
    // SAFETY: `daxp` is held (just above).
    let synchronous = unsafe { crate::sys::ferrofs_dax_synchronous(daxp) } != 0;
    // SAFETY: the block device is open.
    let dev_bytes = unsafe { crate::sys::ferrofs_bdev_bytes(sb.bdev()) };
    let pages = dev_bytes >> format::BLOCK_SHIFT;
    if pages < format::MIN_BLOCKS {
        pr_err!("{:?}: device too small ({} bytes)\n", dev, dev_bytes);
        return Err(EINVAL);
    }
    let mut kaddr: *mut core::ffi::c_void = core::ptr::null_mut();
    let mut pfn: kernel::ffi::c_ulong = 0;
    let mut has_pages: kernel::ffi::c_int = 0;
    // SAFETY: `dax.dev` is held; the shim takes the dax read lock.
    let n = unsafe {
        crate::sys::ferrofs_dax_map(
            dax.dev,
            start_off,
            pages as _,
            &mut kaddr,
            &mut pfn,
            &mut has_pages,
        )
    };
    if n < pages as kernel::ffi::c_long {
        pr_err!(
            "{:?}: cannot map the device for direct access ({})\n",
            dev,
            n
        );
        return Err(if n < 0 {
            kernel::error::Error::from_errno(n as i32)
        } else {
            EINVAL
        });
    }
    if has_pages == 0 {
        // Mappings are devmap PTEs (src/dax.rs): they need struct pages.
        pr_err!(
            "{:?}: the device's memory has no struct pages (PFN_MAP); ferrofs needs them to map files\n",
            dev
        );
        return Err(crate::sys::eopnotsupp());
    }
    let insn = FlushInsn::detect();
    // SAFETY: dax_direct_access mapped `pages` pages at kaddr, valid while the
    // dax device is held, which FsInfo does for the mount's lifetime.
    let mut pmem = unsafe {
        Pmem::new(
            kaddr as *mut u8,
            (pages << format::BLOCK_SHIFT) as usize,
            pfn as u64,
            insn,
        )
    };

    let raw: Superblock = pmem.read_pod(0)?;
    let geo = match raw.validate(pages) {
        Ok(g) => g,
        Err(e) => {
            pr_err!("{:?}: cannot mount: {}\n", dev, e.reason());
            return Err(EINVAL);
        }
    };
    if let Some(mib) = trace_mib {
        pmem.set_trace(crate::sys::trace::Trace::new(mib as usize, pmem.len())?);
        pr_info!(
            "{:?}: tracing pmem stores, flushes and fences ({} MiB)\n",
            dev,
            mib
        );
    }
    // Roll back an interrupted transaction before anything reads metadata.
    let journal = Journal::recover(&pmem, &geo)?;
    // The version as recovered: a version raise interrupted by a crash was
    // just rolled back (`raw` was read before).
    let version = pmem.read_pod::<Superblock>(0)?.version.get();
    if !(format::VERSION_MIN..=format::VERSION).contains(&version) {
        pr_err!(
            "{:?}: cannot mount: the journal's rollback leaves format version {}\n",
            dev,
            version
        );
        return Err(EINVAL);
    }
    journal
        .version
        .store(version, core::sync::atomic::Ordering::Relaxed);
    let mut orphans = KVec::new();
    let allocator = Allocators::scan(&pmem, &geo, crate::sys::online_cpus(), &mut orphans)?;
    let stats = Stats::new(dev, insn.name())?;
    let fs = KBox::new(
        FsInfo {
            stats,
            pmem,
            geo,
            alloc: allocator,
            journal,
            sync_list: vfs::SyncList::new()?,
            uuid: raw.uuid,
            sb: sb.raw(),
            synchronous,
            trace_mib: trace_mib.unwrap_or(0),
            _dax: dax,
        },
        GFP_KERNEL,
    )?;
    let max_bytes = format::MAX_FILE_BLOCKS << format::BLOCK_SHIFT;
    sb.setup(max_bytes)?;
    let fsp = KBox::into_raw(fs);
    sb.set_fs_info(fsp);
    // From here kill_sb frees the FsInfo, whatever happens.
    // SAFETY: just stored; lives until kill_sb.
    let fs = unsafe { &*fsp };
    if let Some(t) = fs.pmem.trace() {
        // FsInfo is boxed (never moves) and drops `stats` before `pmem`.
        fs.stats.set_trace(t);
    }
    let root = vfs::iget(fs, format::ROOT_INO).inspect_err(|_| {
        pr_err!("{:?}: cannot read the root directory\n", dev);
    })?;
    if !root.get().is_dir() {
        pr_err!("{:?}: root inode is not a directory\n", dev);
        return Err(EINVAL);
    }
    sb.set_root(root)?;
    // Orphans: unlinked while open when the system went down. Reading and
    // dropping them frees them, as eviction of any unlinked inode does.
    let mut freed = 0usize;
    for &ino in orphans.iter() {
        match vfs::iget(fs, ino) {
            Ok(i) => {
                drop(i);
                freed += 1;
            }
            Err(e) => pr_err!("{:?}: cannot free orphan inode {}: {:?}\n", dev, ino, e),
        }
    }
    if !orphans.is_empty() {
        pr_info!("{:?}: freed {} orphan inodes\n", dev, freed);
    }
    {
        let a = &fs.alloc;
        pr_info!(
            "mounted {:?}: {} blocks ({} free), {} inodes ({} free), {} journal area{}, {} allocator shard{}, flush with {}\n",
            dev,
            geo.blocks_count,
            a.free_blocks(),
            geo.inodes_count,
            a.free_inodes(),
            fs.journal.areas(),
            if fs.journal.areas() == 1 { "" } else { "s" },
            a.shards(),
            if a.shards() == 1 { "" } else { "s" },
            insn.name()
        );
    }
    Ok(())
}

/// Called from kill_sb after every inode is gone.
///
/// # Safety
/// `fs` came from `KBox::into_raw` in `fill_super` and is no longer used.
pub(crate) unsafe fn free_fs_info(fs: *mut FsInfo, _sb: *mut bindings::super_block) {
    // SAFETY: the caller's promise.
    drop(unsafe { KBox::from_raw(fs) });
}
