// SPDX-License-Identifier: GPL-2.0
//! Inodes on the medium: loading, storing, the block map, truncation and
//! eviction.
//!
//! The block map lives only in pmem (it is byte-addressable, so there is no
//! reason to cache it); it changes under the inode's `map_lock`, inside a
//! journal transaction (`journal.rs`). Functions named `*_tx` join the
//! caller's transaction; the others run their own.

use crate::alloc::GROUP;
use crate::alloc::{ino_valid, inode_off};
use crate::format::{
    self, Inode as DiskInode, MapPath, Pod, BLOCK_SHIFT, BLOCK_SIZE, PTRS_PER_BLOCK,
};
use crate::journal::{Tx, RESERVE};
use crate::super_::FsInfo;
use crate::sys::stats::Counter;
use crate::sys::vfs::{Inode, Kind};
use kernel::bindings::{FS_APPEND_FL, FS_IMMUTABLE_FL};
use kernel::error::{code::*, Result};
use kernel::prelude::*;

/// Read and check inode `inode.ino()` from pmem into the VFS inode (I_NEW).
pub(crate) fn read_inode(inode: &Inode) -> Result {
    let fs = inode.fs();
    let ino = inode.ino();
    if !ino_valid(&fs.geo, ino) {
        pr_err!("inode number {} out of range\n", ino);
        return Err(crate::sys::euclean());
    }
    let d: DiskInode = fs.pmem.read_pod(inode_off(&fs.geo, ino))?;
    if d.is_free() {
        pr_err!("inode {} is referenced but free\n", ino);
        return Err(crate::sys::euclean());
    }
    if let Err(e) = d.validate(ino, fs.geo.blocks_count) {
        pr_err!("inode {} is corrupt: {}\n", ino, e.reason());
        return Err(crate::sys::euclean());
    }
    let kind = match d.mode.get() & format::S_IFMT {
        format::S_IFDIR => Kind::Dir,
        format::S_IFLNK => Kind::Symlink,
        // `validate` checked: no blocks, size 0.
        _ if format::is_special(d.mode.get()) => Kind::Special(d.rdev.get()),
        _ => Kind::File,
    };
    // Sizes bound every loop over a file's blocks: a corrupt size must not
    // turn a directory scan into a near-endless one.
    let size = d.size.get();
    let size_ok = match kind {
        Kind::Dir => size % BLOCK_SIZE as u64 == 0 && size <= fs.geo.blocks_count << BLOCK_SHIFT,
        Kind::Symlink => size < BLOCK_SIZE as u64,
        Kind::File => size <= format::MAX_FILE_BLOCKS << BLOCK_SHIFT,
        Kind::Special(_) => size == 0,
    };
    if !size_ok {
        pr_err!("inode {} is corrupt: size {} out of range\n", ino, size);
        return Err(crate::sys::euclean());
    }
    inode.init_from_disk(&d, kind);
    if kind == Kind::Symlink {
        let b = d.direct[0].get() as u64;
        if b == 0 && d.nlink.get() == 0 {
            // An orphan whose eviction freed its target block and went down
            // before freeing the inode (two transactions, see `evict`): no
            // name leads to it, and the mount that reads it frees it.
            return inode.set_link(b"");
        }
        if b < fs.geo.data_start || b >= fs.geo.blocks_count {
            pr_err!("symlink inode {} is corrupt: target block {}\n", ino, b);
            return Err(crate::sys::euclean());
        }
        // A copy, not a pointer into pmem: the VFS runs strlen over i_link,
        // and on a damaged image the block may belong to a file too.
        let n = size as usize;
        let mut target = KVec::from_elem(0u8, n, GFP_KERNEL)?;
        fs.pmem.read(FsInfo::block_off(b), &mut target)?;
        if target.contains(&0) {
            pr_err!("symlink inode {} is corrupt: NUL in its target\n", ino);
            return Err(crate::sys::euclean());
        }
        inode.set_link(&target)?;
    }
    Ok(())
}

/// The VFS's FS_*_FL flags for on-media inode flags.
pub(crate) fn fs_flags_of(disk: u16) -> u32 {
    let mut f = 0;
    if disk & format::INODE_FL_IMMUTABLE != 0 {
        f |= FS_IMMUTABLE_FL;
    }
    if disk & format::INODE_FL_APPEND != 0 {
        f |= FS_APPEND_FL;
    }
    f
}

/// chattr: store FS_IMMUTABLE_FL / FS_APPEND_FL (the only ones `flags` may
/// hold, checked by the caller) in the inode, with its ctime, in one
/// transaction, then let the VFS enforce them. The first flag on a version
/// 1 image raises the superblock to version 2 in the same transaction.
pub(crate) fn set_fs_flags(inode: &Inode, flags: u32) -> Result {
    let fs = inode.fs();
    let mut disk = 0u16;
    if flags & FS_IMMUTABLE_FL != 0 {
        disk |= format::INODE_FL_IMMUTABLE;
    }
    if flags & FS_APPEND_FL != 0 {
        disk |= format::INODE_FL_APPEND;
    }
    let mut tx = fs.tx();
    let raised = disk != 0 && fs.raise_version(&mut tx, format::VERSION_FLAGS)?;
    inode.touch_ctime();
    {
        let _g = tx.lock_inode(inode);
        let mut d = load(inode)?;
        d.flags.set(disk);
        fill_attrs(inode, &mut d);
        store(&mut tx, inode, &mut d)?;
    }
    tx.commit()?;
    if raised {
        fs.version_raised(format::VERSION_FLAGS);
    }
    inode.set_fs_flags(flags);
    Ok(())
}

/// The parent directory number of directory `inode`: one aligned load, since
/// rename of a directory rewrites it without the lock readdir holds.
pub(crate) fn parent(inode: &Inode) -> Result<u32> {
    let fs = inode.fs();
    fs.pmem.read_u32(field_off(
        fs,
        inode.ino(),
        core::mem::offset_of!(DiskInode, parent),
    ))
}

/// The on-media inode as it is now.
pub(crate) fn load(inode: &Inode) -> Result<DiskInode> {
    let fs = inode.fs();
    fs.pmem.read_pod(inode_off(&fs.geo, inode.ino()))
}

fn store(tx: &mut Tx<'_>, inode: &Inode, d: &mut DiskInode) -> Result {
    let fs = inode.fs();
    d.update_checksum(inode.ino());
    let off = inode_off(&fs.geo, inode.ino());
    tx.write(off, d.as_bytes())
}

/// Copy the VFS inode's attributes into `d` (block pointers are kept).
fn fill_attrs(inode: &Inode, d: &mut DiskInode) {
    d.mode.set(inode.mode());
    d.uid.set(inode.uid());
    d.gid.set(inode.gid());
    d.nlink.set(inode.nlink());
    d.size.set(inode.size());
    let [a, m, c] = inode.times();
    d.atime_sec.set(a.sec as u64);
    d.atime_nsec.set(a.nsec);
    d.mtime_sec.set(m.sec as u64);
    d.mtime_nsec.set(m.nsec);
    d.ctime_sec.set(c.sec as u64);
    d.ctime_nsec.set(c.nsec);
    d.generation.set(inode.generation());
    let rdev = if format::is_special(inode.mode()) {
        crate::sys::vfs::encode_dev(inode.rdev())
    } else {
        0
    };
    d.rdev.set(rdev);
}

/// Write the VFS inode's attributes to pmem, in a transaction of its own.
pub(crate) fn write_inode(inode: &Inode) -> Result {
    let mut tx = inode.fs().tx();
    write_inode_tx(&mut tx, inode)
}

pub(crate) fn write_inode_tx(tx: &mut Tx<'_>, inode: &Inode) -> Result {
    let _g = tx.lock_inode(inode);
    let mut d = load(inode)?;
    if d.is_free() {
        // Evicted and freed, or never written: nothing to update.
        return Ok(());
    }
    let before = d;
    fill_attrs(inode, &mut d);
    d.update_checksum(inode.ino());
    if d.as_bytes() == before.as_bytes() {
        return Ok(());
    }
    store(tx, inode, &mut d)
}

/// Allocate an inode slot for a new object and write its first version.
pub(crate) fn create_on_media(
    tx: &mut Tx<'_>,
    fs: &FsInfo,
    mode: u16,
    uid: u32,
    gid: u32,
    parent: u32,
) -> Result<u32> {
    let mut d = DiskInode::zeroed();
    d.mode.set(mode);
    d.uid.set(uid);
    d.gid.set(gid);
    d.nlink.set(1);
    d.parent.set(parent);
    tx.alloc(|a, tx| a.alloc_inode(tx, &fs.geo, &mut d))
}

/// After NewInode set owner, mode and times: store them.
pub(crate) fn init_new_tx(tx: &mut Tx<'_>, inode: &Inode, parent: u32) -> Result {
    let _g = tx.lock_inode(inode);
    let mut d = load(inode)?;
    fill_attrs(inode, &mut d);
    d.parent.set(parent);
    store(tx, inode, &mut d)
}

/// Point the inode at xattr block `new` (0: none) instead of `old`, with
/// its block count and the VFS inode's attributes (see `xattr.rs`).
pub(crate) fn set_xattr_block_tx(tx: &mut Tx<'_>, inode: &Inode, new: u64, old: u64) -> Result {
    let _g = tx.lock_inode(inode);
    let mut d = load(inode)?;
    let blocks = d
        .blocks
        .get()
        .saturating_sub(u64::from(old != 0))
        .saturating_add(u64::from(new != 0));
    d.blocks.set(blocks);
    d.xattr.set(u32::try_from(new).map_err(|_| EINVAL)?);
    inode.set_blocks(blocks);
    fill_attrs(inode, &mut d);
    store(tx, inode, &mut d)
}

pub(crate) fn set_parent_tx(tx: &mut Tx<'_>, inode: &Inode, parent: u32) -> Result {
    let _g = tx.lock_inode(inode);
    let mut d = load(inode)?;
    d.parent.set(parent);
    store(tx, inode, &mut d)
}

// ---------------------------------------------------------------------------
// Block map

fn ptr_off(block: u64, idx: usize) -> u64 {
    FsInfo::block_off(block) + (idx * 4) as u64
}

fn check_ptr(fs: &FsInfo, ino: u32, b: u32) -> Result<u64> {
    let b = b as u64;
    if b != 0 && (b < fs.geo.data_start || b >= fs.geo.blocks_count) {
        pr_err!("inode {}: block pointer {} outside the data area\n", ino, b);
        return Err(crate::sys::euclean());
    }
    Ok(b)
}

/// Byte offset of a 4-byte field of inode `ino`'s slot.
fn field_off(fs: &FsInfo, ino: u32, field: usize) -> u64 {
    inode_off(&fs.geo, ino) + field as u64
}

/// The block backing logical block `lblk`, or 0 for a hole.
///
/// Lockless: faults and read(2) call it while an allocation may be
/// publishing a pointer on the same path. Every pointer is an aligned 4-byte
/// word stored whole (`Pmem::write` for the inode, `write_u32_atomic` for
/// indirect blocks) and read here with one aligned load, so each read sees
/// the old pointer (0) or the new one. A new pointer is published only after
/// the block it names is zeroed and flushed, and a published pointer stays
/// valid until truncate or punch, which hold the invalidate lock exclusive
/// (faults hold it shared; read(2) holds i_rwsem, which truncate needs).
pub(crate) fn get_block(inode: &Inode, lblk: u64) -> Result<u64> {
    let fs = inode.fs();
    let ino = inode.ino();
    let Some(path) = format::map_path(lblk) else {
        return Ok(0);
    };
    let (root, idx): (usize, &[usize]) = match &path {
        MapPath::Direct(i) => (core::mem::offset_of!(DiskInode, direct) + 4 * i, &[]),
        MapPath::Ind(p) => (core::mem::offset_of!(DiskInode, indirect), &p[..]),
        MapPath::Dind(p) => (core::mem::offset_of!(DiskInode, dindirect), &p[..]),
        MapPath::Tind(p) => (core::mem::offset_of!(DiskInode, tindirect), &p[..]),
    };
    let mut b = check_ptr(fs, ino, fs.pmem.read_u32(field_off(fs, ino, root))?)?;
    for &i in idx {
        if b == 0 {
            return Ok(0);
        }
        b = check_ptr(fs, ino, fs.pmem.read_u32(ptr_off(b, i))?)?;
    }
    Ok(b)
}

/// How many logical blocks from `lblk` (whose block is `b`, nonzero) map to
/// `b`, `b + 1`, ...: at least 1, at most `max`. Lockless, like
/// [`get_block`]. Inside one leaf indirect block this reads consecutive
/// pointers of that leaf (one load each) instead of walking the tree for
/// every block; across leaves and in the direct pointers it walks.
pub(crate) fn contiguous(inode: &Inode, lblk: u64, b: u64, max: u64) -> Result<u64> {
    let fs = inode.fs();
    let mut run = 1u64;
    while run < max {
        let l = lblk + run;
        let leaf_at = match format::map_path(l) {
            Some(MapPath::Ind(a)) => Some((a[0], 1)),
            Some(MapPath::Dind(a)) => Some((a[1], 2)),
            Some(MapPath::Tind(a)) => Some((a[2], 3)),
            _ => None,
        };
        let mut path = [0u64; 3];
        match leaf_at {
            Some((i0, depth)) if map_path_blocks(inode, l, &mut path)? == depth => {
                let leaf = path[depth - 1];
                let mut i = i0;
                while run < max && i < PTRS_PER_BLOCK {
                    let p = check_ptr(fs, inode.ino(), fs.pmem.read_u32(ptr_off(leaf, i))?)?;
                    if p != b + run {
                        return Ok(run);
                    }
                    run += 1;
                    i += 1;
                }
            }
            Some(_) => return Ok(run), // a hole on the way
            None => {
                if get_block(inode, l)? != b + run {
                    return Ok(run);
                }
                run += 1;
            }
        }
    }
    Ok(run)
}

/// The indirect blocks on the path to logical block `lblk`, root first,
/// into `out`; returns how many (0 for a direct block or a hole at the
/// root). Lockless, like [`get_block`].
pub(crate) fn map_path_blocks(inode: &Inode, lblk: u64, out: &mut [u64; 3]) -> Result<usize> {
    let fs = inode.fs();
    let ino = inode.ino();
    let Some(path) = format::map_path(lblk) else {
        return Ok(0);
    };
    let (root, idx): (usize, &[usize]) = match &path {
        MapPath::Direct(_) => return Ok(0),
        MapPath::Ind(p) => (core::mem::offset_of!(DiskInode, indirect), &p[..]),
        MapPath::Dind(p) => (core::mem::offset_of!(DiskInode, dindirect), &p[..]),
        MapPath::Tind(p) => (core::mem::offset_of!(DiskInode, tindirect), &p[..]),
    };
    let mut b = check_ptr(fs, ino, fs.pmem.read_u32(field_off(fs, ino, root))?)?;
    let mut n = 0;
    // The last index names the data block, not an indirect one.
    for &i in idx {
        if b == 0 || n >= out.len() {
            break;
        }
        out[n] = b;
        n += 1;
        b = check_ptr(fs, ino, fs.pmem.read_u32(ptr_off(b, i))?)?;
    }
    Ok(n)
}

/// Allocate a block and zero it. No record: if the transaction rolls back,
/// the block is free again.
fn alloc_zeroed(tx: &mut Tx<'_>, fs: &FsInfo) -> Result<u64> {
    let b = tx.alloc(|a, tx| a.alloc_block(tx, &fs.geo))?;
    tx.zero_fresh(FsInfo::block_off(b), BLOCK_SIZE)?;
    Ok(b)
}

/// The block backing `lblk`, allocating it (zeroed) and any indirect blocks
/// on the way, in one transaction. Returns (block, newly allocated).
/// `stream`: see [`alloc_data`].
pub(crate) fn get_or_alloc_block(inode: &Inode, lblk: u64, stream: bool) -> Result<(u64, bool)> {
    let mut tx = inode.fs().tx();
    get_or_alloc_tx(&mut tx, inode, lblk, stream)
}

/// Where a data block goes: after the block of the page before it if that
/// one is free (a file written in order lies in order); with `stream`, at
/// the start of a wholly free group, which stays reserved for the file
/// (`Allocators::alloc_stream`). Indirect blocks go anywhere else.
fn alloc_data(tx: &mut Tx<'_>, inode: &Inode, lblk: u64, stream: bool) -> Result<u64> {
    let fs = inode.fs();
    let prev = match lblk.checked_sub(1) {
        Some(p) => get_block(inode, p)?,
        None => 0,
    };
    let b = if stream && lblk % GROUP == 0 {
        tx.alloc(|a, tx| a.alloc_stream(tx, &fs.geo))?
    } else if prev != 0 && (prev + 1) % GROUP != 0 {
        tx.alloc(|a, tx| a.alloc_block_near(tx, &fs.geo, prev + 1))?
    } else {
        tx.alloc(|a, tx| a.alloc_block(tx, &fs.geo))?
    };
    tx.zero_fresh(FsInfo::block_off(b), BLOCK_SIZE)?;
    Ok(b)
}

/// [`get_or_alloc_block`] inside the caller's transaction; `stream` as for
/// [`alloc_data`].
pub(crate) fn get_or_alloc_tx(
    tx: &mut Tx<'_>,
    inode: &Inode,
    lblk: u64,
    stream: bool,
) -> Result<(u64, bool)> {
    let _g = tx.lock_inode(inode);
    let fs = inode.fs();
    let mut d = load(inode)?;
    let path = format::map_path(lblk).ok_or(EFBIG)?;
    let mut new_blocks = 0u64;
    let result = (|| -> Result<(u64, bool)> {
        let (slot, idx): (&mut format::Le32, &[usize]) = match &path {
            MapPath::Direct(i) => (&mut d.direct[*i], &[]),
            MapPath::Ind(p) => (&mut d.indirect, &p[..]),
            MapPath::Dind(p) => (&mut d.dindirect, &p[..]),
            MapPath::Tind(p) => (&mut d.tindirect, &p[..]),
        };
        let mut fresh = false;
        let mut b = check_ptr(fs, inode.ino(), slot.get())?;
        if b == 0 {
            b = if idx.is_empty() {
                alloc_data(tx, inode, lblk, stream)?
            } else {
                alloc_zeroed(tx, fs)?
            };
            new_blocks += 1;
            fresh = true;
            slot.set(b as u32);
        }
        for (k, &i) in idx.iter().enumerate() {
            let off = ptr_off(b, i);
            let mut next = check_ptr(fs, inode.ino(), fs.pmem.read_u32(off)?)?;
            fresh = false;
            if next == 0 {
                next = if k + 1 == idx.len() {
                    alloc_data(tx, inode, lblk, stream)?
                } else {
                    alloc_zeroed(tx, fs)?
                };
                new_blocks += 1;
                fresh = true;
                tx.write_u32(off, next as u32)?;
            }
            b = next;
        }
        Ok((b, fresh))
    })();
    if new_blocks > 0 {
        let Some(blocks) = d.blocks.get().checked_add(new_blocks) else {
            pr_err!(
                "inode {}: block count {} overflows\n",
                inode.ino(),
                d.blocks.get()
            );
            return Err(crate::sys::euclean());
        };
        d.blocks.set(blocks);
        inode.set_blocks(blocks);
        store(tx, inode, &mut d)?;
    }
    if let Ok((_, true)) = result {
        // A hole became a block. Read faults may have mapped the zero page
        // for it, in this or any other mapping of the file: zap those PTEs
        // so that every mapping sees the new bytes (fs/dax.c does the same
        // when a block replaces a zero-page entry). The pointer is already
        // published and map_lock is held, which the hole read fault also
        // takes around its lookup and zero-page insert (`dax::map_hole`),
        // so no zero-page PTE for this page can be installed after this.
        inode.unmap_range(lblk << BLOCK_SHIFT, BLOCK_SIZE as u64, false);
    }
    result
}

/// The first block of a huge extent backing logical blocks
/// `start..start+GROUP` (`start` aligned): all allocated, physically
/// contiguous and starting at a 2 MiB-aligned block. Lockless like
/// [`get_block`]; callers hold the invalidate lock shared.
pub(crate) fn extent_at(inode: &Inode, start: u64) -> Result<Option<u64>> {
    // Fast path: the 512 pointers are consecutive words of one leaf
    // indirect block (NDIRECT = 12, so an aligned 2 MiB never starts in the
    // direct pointers, and only one 1024-pointer leaf in two splits it).
    let idx = |p: &MapPath| -> Option<usize> {
        match p {
            MapPath::Direct(_) => None,
            MapPath::Ind(a) => Some(a[0]),
            MapPath::Dind(a) => Some(a[1]),
            MapPath::Tind(a) => Some(a[2]),
        }
    };
    let depth = |p: &MapPath| -> usize {
        match p {
            MapPath::Direct(_) => 0,
            MapPath::Ind(_) => 1,
            MapPath::Dind(_) => 2,
            MapPath::Tind(_) => 3,
        }
    };
    if let (Some(p0), Some(p1)) = (format::map_path(start), format::map_path(start + GROUP - 1)) {
        if let (Some(i0), Some(i1)) = (idx(&p0), idx(&p1)) {
            if depth(&p0) == depth(&p1) && i1 == i0 + GROUP as usize - 1 {
                let mut path = [0u64; 3];
                let n = map_path_blocks(inode, start, &mut path)?;
                if n != depth(&p0) {
                    return Ok(None); // a hole on the way
                }
                let fs = inode.fs();
                let leaf = path[n - 1];
                let b0 = check_ptr(fs, inode.ino(), fs.pmem.read_u32(ptr_off(leaf, i0))?)?;
                // The whole extent inside the data area (a damaged pointer
                // must not map past the device).
                if b0 == 0 || b0 % GROUP != 0 || b0 + GROUP > fs.geo.blocks_count {
                    return Ok(None);
                }
                for k in 1..GROUP as usize {
                    // One aligned load per pointer, as get_block reads it.
                    if fs.pmem.read_u32(ptr_off(leaf, i0 + k))? as u64 != b0 + k as u64 {
                        return Ok(None);
                    }
                }
                return Ok(Some(b0));
            }
        }
    }
    let b0 = get_block(inode, start)?;
    if b0 == 0 || b0 % GROUP != 0 {
        return Ok(None);
    }
    for i in 1..GROUP {
        if get_block(inode, start + i)? != b0 + i {
            return Ok(None);
        }
    }
    Ok(Some(b0))
}

/// Give the hole `start..start+GROUP` (aligned, every block a hole) a whole
/// aligned extent, zeroed, in one transaction: the bitmap words, zeroing
/// with flushing stores, the pointers (and any indirect block on the way)
/// and the block count. None if some block of the range is allocated, or
/// no whole group is free (the caller maps 4 KiB pages instead).
pub(crate) fn alloc_extent(inode: &Inode, start: u64) -> Result<Option<u64>> {
    let fs = inode.fs();
    let mut tx = fs.tx();
    let _g = tx.lock_inode(inode);
    for i in 0..GROUP {
        if get_block(inode, start + i)? != 0 {
            return Ok(None);
        }
    }
    let Some(b0) = tx.alloc(|a, tx| a.alloc_group(tx, &fs.geo))? else {
        return Ok(None);
    };
    tx.zero_fresh(FsInfo::block_off(b0), (GROUP as usize) << BLOCK_SHIFT)?;
    let mut d = load(inode)?;
    let mut new_blocks = GROUP;
    let mut result = Ok(());
    for i in 0..GROUP {
        match set_block_tx(&mut tx, inode, &mut d, start + i, b0 + i) {
            Ok(n) => new_blocks += n,
            Err(e) => {
                result = Err(e);
                break;
            }
        }
    }
    let Some(blocks) = d.blocks.get().checked_add(new_blocks) else {
        return Err(crate::sys::euclean());
    };
    d.blocks.set(blocks);
    inode.set_blocks(blocks);
    store(&mut tx, inode, &mut d)?;
    result?;
    tx.commit()?;
    // As for a 4 KiB hole fill: read faults may have mapped the zero page
    // in the range; with the pointers published and map_lock held, zap them.
    inode.unmap_range(start << BLOCK_SHIFT, GROUP << BLOCK_SHIFT, false);
    Ok(Some(b0))
}

/// Point logical block `lblk` (a hole) at `b`, allocating indirect blocks
/// on the way; direct pointers change in `d`, which the caller stores.
/// Returns how many indirect blocks it allocated.
fn set_block_tx(
    tx: &mut Tx<'_>,
    inode: &Inode,
    d: &mut DiskInode,
    lblk: u64,
    b: u64,
) -> Result<u64> {
    let fs = inode.fs();
    let path = format::map_path(lblk).ok_or(EFBIG)?;
    let (slot, idx): (&mut format::Le32, &[usize]) = match &path {
        MapPath::Direct(i) => (&mut d.direct[*i], &[]),
        MapPath::Ind(p) => (&mut d.indirect, &p[..]),
        MapPath::Dind(p) => (&mut d.dindirect, &p[..]),
        MapPath::Tind(p) => (&mut d.tindirect, &p[..]),
    };
    if idx.is_empty() {
        slot.set(b as u32);
        return Ok(0);
    }
    let mut n = 0;
    let mut cur = check_ptr(fs, inode.ino(), slot.get())?;
    if cur == 0 {
        cur = alloc_zeroed(tx, fs)?;
        n += 1;
        slot.set(cur as u32);
    }
    for (k, &i) in idx.iter().enumerate() {
        let off = ptr_off(cur, i);
        if k + 1 == idx.len() {
            tx.write_u32(off, b as u32)?;
            break;
        }
        let mut next = check_ptr(fs, inode.ino(), fs.pmem.read_u32(off)?)?;
        if next == 0 {
            next = alloc_zeroed(tx, fs)?;
            n += 1;
            tx.write_u32(off, next as u32)?;
        }
        cur = next;
    }
    Ok(n)
}

/// Free the blocks of logical range `first..=last` (whole blocks), and the
/// indirect blocks left empty. Callers hold the invalidate lock exclusive
/// and have removed the range's DAX entries and PTEs.
///
/// A large range takes several transactions, each freeing what fits in the
/// journal. Every intermediate state is consistent: a file whose remaining
/// blocks lie past its (already stored) size, which fsck accepts.
pub(crate) fn free_range(inode: &Inode, first: u64, last: u64) -> Result {
    let fs = inode.fs();
    loop {
        let mut tx = fs.tx();
        let (done, stuck) = {
            let _g = tx.lock_inode(inode);
            let (done, freed) = free_some(&mut tx, inode, first, last)?;
            // A transaction too small to free anything would loop for ever.
            (done, !done && freed == 0)
        };
        tx.commit()?;
        if done {
            return Ok(());
        }
        if stuck {
            pr_err!("inode {}: truncate makes no progress\n", inode.ino());
            return Err(EIO);
        }
    }
}

/// One transaction's worth of [`free_range`]: whether the range is done,
/// and how many blocks it freed.
fn free_some(tx: &mut Tx<'_>, inode: &Inode, first: u64, last: u64) -> Result<(bool, u64)> {
    let fs = inode.fs();
    let mut d = load(inode)?;
    let mut freed = 0u64;
    let mut full = false;
    for i in 0..format::NDIRECT {
        let l = i as u64;
        if l >= first && l <= last {
            let b = check_ptr(fs, inode.ino(), d.direct[i].get())?;
            if b != 0 {
                d.direct[i].set(0);
                free_block(tx, fs, b)?;
                freed += 1;
            }
        }
    }
    let p = PTRS_PER_BLOCK as u64;
    let mut base = format::NDIRECT as u64;
    let roots: [(u32, u64); 3] = [(1, p), (2, p * p), (3, p * p * p)];
    for (k, (level, span)) in roots.iter().enumerate() {
        let slot = match k {
            0 => &mut d.indirect,
            1 => &mut d.dindirect,
            _ => &mut d.tindirect,
        };
        if !full && base <= last && base + span > first {
            let b = check_ptr(fs, inode.ino(), slot.get())?;
            if b != 0 {
                let (n, empty) = free_tree(tx, inode, b, *level, base, first, last, &mut full)?;
                freed += n;
                if empty {
                    slot.set(0);
                    free_block(tx, fs, b)?;
                    freed += 1;
                }
            }
        }
        base += span;
    }
    d.blocks.set(d.blocks.get().saturating_sub(freed));
    inode.set_blocks(d.blocks.get());
    fill_attrs(inode, &mut d);
    store(tx, inode, &mut d)?;
    Ok((!full, freed))
}

fn free_block(tx: &mut Tx<'_>, fs: &FsInfo, b: u64) -> Result {
    tx.alloc(|a, tx| a.free_block(tx, &fs.geo, b))
}

/// Free the leaves of indirect block `b` (covering logical blocks from
/// `base`, `level` levels above the data) inside `first..=last`. Returns the
/// number of blocks freed below `b` and whether `b` is now empty. Stops,
/// setting `full`, when the transaction has no more room.
#[allow(clippy::too_many_arguments)]
fn free_tree(
    tx: &mut Tx<'_>,
    inode: &Inode,
    b: u64,
    level: u32,
    base: u64,
    first: u64,
    last: u64,
    full: &mut bool,
) -> Result<(u64, bool)> {
    if level == 1 {
        return free_leaves(tx, inode, b, base, first, last, full);
    }
    let fs = inode.fs();
    let p = PTRS_PER_BLOCK as u64;
    let span = p.pow(level - 1);
    let mut freed = 0;
    let mut empty = true;
    for i in 0..PTRS_PER_BLOCK {
        if *full || tx.room() < RESERVE {
            *full = true;
            return Ok((freed, false));
        }
        let off = ptr_off(b, i);
        let child = check_ptr(fs, inode.ino(), fs.pmem.read_u32(off)?)?;
        if child == 0 {
            continue;
        }
        let lo = base + i as u64 * span;
        let hi = lo + span - 1;
        if hi < first || lo > last {
            empty = false;
            continue;
        }
        let remove = if level == 1 {
            true
        } else {
            let (n, e) = free_tree(tx, inode, child, level - 1, lo, first, last, full)?;
            freed += n;
            e
        };
        if remove {
            tx.write_u32(off, 0)?;
            free_block(tx, fs, child)?;
            freed += 1;
        } else {
            empty = false;
        }
    }
    Ok((freed, empty))
}

/// How many pointers of a leaf block [`free_leaves`] clears and frees under
/// one hold of the allocator.
const FREE_BATCH: usize = 64;

/// [`free_tree`] of a leaf block `b` (its pointers are data blocks, from
/// logical block `base`): the same result. Its frees go in batches of
/// [`FREE_BATCH`] under one hold of the allocator, not one lock round per
/// block; between them only the pointer stores of this transaction, which
/// wait for nothing.
fn free_leaves(
    tx: &mut Tx<'_>,
    inode: &Inode,
    b: u64,
    base: u64,
    first: u64,
    last: u64,
    full: &mut bool,
) -> Result<(u64, bool)> {
    let fs = inode.fs();
    let mut freed = 0;
    let mut empty = true;
    let mut i = 0;
    while i < PTRS_PER_BLOCK {
        let end = (i + FREE_BATCH).min(PTRS_PER_BLOCK);
        let stop = tx.with_frees(|a, tx| -> Result<bool> {
            while i < end {
                if *full || tx.room() < RESERVE {
                    *full = true;
                    return Ok(true);
                }
                let off = ptr_off(b, i);
                let lblk = base + i as u64;
                i += 1;
                let child = check_ptr(fs, inode.ino(), fs.pmem.read_u32(off)?)?;
                if child == 0 {
                    continue;
                }
                if lblk < first || lblk > last {
                    empty = false;
                    continue;
                }
                tx.write_u32(off, 0)?;
                a.free_block(tx, &fs.geo, child)?;
                freed += 1;
            }
            Ok(false)
        })?;
        if stop {
            return Ok((freed, false));
        }
    }
    Ok((freed, empty))
}

/// Call `f(lblk, block)` for every allocated data block of logical range
/// `first..=last`, in order, until it returns `Ok(false)`. Reads the map
/// without map_lock: callers hold the invalidate lock exclusive (truncate,
/// punch), or i_rwsem (which those hold exclusive: fiemap), or evict, so
/// no block of the range is freed meanwhile; blocks allocated meanwhile
/// by write(2) may or may not be seen. Cost follows the allocated blocks,
/// not the range: holes in the tree are skipped whole.
pub(crate) fn for_each_block(
    inode: &Inode,
    first: u64,
    last: u64,
    f: &mut dyn FnMut(u64, u64) -> Result<bool>,
) -> Result {
    let fs = inode.fs();
    let d = load(inode)?;
    for i in 0..format::NDIRECT {
        let l = i as u64;
        if l >= first && l <= last {
            let b = check_ptr(fs, inode.ino(), d.direct[i].get())?;
            if b != 0 && !f(l, b)? {
                return Ok(());
            }
        }
    }
    let p = PTRS_PER_BLOCK as u64;
    let mut base = format::NDIRECT as u64;
    let roots = [
        (d.indirect.get(), 1u32, p),
        (d.dindirect.get(), 2, p * p),
        (d.tindirect.get(), 3, p * p * p),
    ];
    for (root, level, span) in roots {
        if base <= last && base + span > first {
            let b = check_ptr(fs, inode.ino(), root)?;
            if b != 0 && !walk_tree(inode, b, level, base, first, last, f)? {
                return Ok(());
            }
        }
        base += span;
    }
    Ok(())
}

fn walk_tree(
    inode: &Inode,
    b: u64,
    level: u32,
    base: u64,
    first: u64,
    last: u64,
    f: &mut dyn FnMut(u64, u64) -> Result<bool>,
) -> Result<bool> {
    let fs = inode.fs();
    let span = (PTRS_PER_BLOCK as u64).pow(level - 1);
    for i in 0..PTRS_PER_BLOCK {
        let lo = base + i as u64 * span;
        if lo > last {
            break;
        }
        if lo + span - 1 < first {
            continue;
        }
        let child = check_ptr(fs, inode.ino(), fs.pmem.read_u32(ptr_off(b, i))?)?;
        if child == 0 {
            continue;
        }
        let go_on = if level == 1 {
            f(lo, child)?
        } else {
            walk_tree(inode, child, level - 1, lo, first, last, f)?
        };
        if !go_on {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Before the blocks of `first..=last` (pages) are freed: zap every PTE of
/// the range (private COW copies too) and wait until get_user_pages holds
/// none of their pages (an O_DIRECT transfer in flight, a /proc/pid/mem
/// access): a block must not be reused while someone can still write to
/// it. Then the pages are told they no longer belong to the file.
///
/// `inv` is the invalidate lock, held for write; it is dropped while
/// waiting (a pin holder may need to fault on this file), so the range is
/// zapped and checked again after every wait, as ext4_break_layouts does.
/// Interruptible: a signal ends it with ERESTARTSYS before anything is
/// freed.
pub(crate) fn break_layouts(
    inode: &Inode,
    first: u64,
    last: u64,
    inv: &crate::sys::locks::WriteGuard<'_>,
) -> Result {
    let fs = inode.fs();
    let len = match last.checked_sub(first).and_then(|n| n.checked_add(1)) {
        Some(n) if n < (1u64 << (63 - BLOCK_SHIFT)) => n << BLOCK_SHIFT,
        _ => 0, // to the end of the file
    };
    loop {
        inode.unmap_range(first << BLOCK_SHIFT, len, true);
        if !inode.was_associated() {
            return Ok(());
        }
        let mut busy = None;
        for_each_block(inode, first, last, &mut |_, b| {
            let pfn = fs.pmem.pfn(FsInfo::block_off(b))?;
            if crate::sys::vfs::page_busy(pfn) {
                busy = Some(pfn);
                return Ok(false);
            }
            Ok(true)
        })?;
        let Some(pfn) = busy else { break };
        fs.count(Counter::PinWaits);
        inode.wait_page_idle(pfn, inv)?;
    }
    for_each_block(inode, first, last, &mut |_, b| {
        inode.disassociate(fs.pmem.pfn(FsInfo::block_off(b))?);
        Ok(true)
    })
}

/// How long eviction waits for each page get_user_pages still holds.
const EVICT_PIN_WAIT_MS: u32 = 5000;

/// Eviction: wait (bounded) for pins on the file's pages, and unlink every
/// page from the mapping that is going away. Whether all pages are idle.
fn release_pages_final(inode: &Inode) -> bool {
    if !inode.was_associated() {
        return true;
    }
    let fs = inode.fs();
    let mut idle = true;
    let r = for_each_block(inode, 0, u64::MAX >> BLOCK_SHIFT, &mut |_, b| {
        let pfn = fs.pmem.pfn(FsInfo::block_off(b))?;
        if crate::sys::vfs::page_busy(pfn) {
            fs.count(Counter::PinWaits);
            idle &= inode.wait_page_idle_final(pfn, EVICT_PIN_WAIT_MS);
        }
        // Even if still held: a holder that finds no mapping takes the
        // no-mapping paths (folio_mark_dirty's noop), never a freed one.
        inode.disassociate(pfn);
        Ok(true)
    });
    if let Err(e) = r {
        pr_err!(
            "inode {}: releasing its pages failed: {:?}\n",
            inode.ino(),
            e
        );
        return false;
    }
    idle
}

/// Change the file size (setattr with i_rwsem held). Shrinking takes the
/// invalidate lock exclusive, zaps mappings past the new end, removes their
/// DAX entries and only then frees the blocks.
pub(crate) fn set_size(inode: &Inode, size: u64) -> Result {
    let fs = inode.fs();
    let old = inode.size();
    if size >= old {
        zero_tail(inode, old)?;
        inode.set_size(size);
        return write_inode(inode);
    }
    let inv = inode.invalidate_lock().write();
    // Zap PTEs (and private COW copies) from the first page past the new
    // end, and wait for pins there, before anything changes.
    let first_page = size.div_ceil(BLOCK_SIZE as u64);
    break_layouts(inode, first_page, u64::MAX >> BLOCK_SHIFT, &inv)?;
    inode.set_size(size);
    crate::dax::drop_huge(inode, first_page, u64::MAX >> BLOCK_SHIFT, true);
    let (_, dirty) = inode.dirty.remove_range(first_page, u64::MAX >> 1);
    fs.stats.add(Counter::EntriesRemoved, dirty);
    // Zero the tail of the last partial block so a later extension reads zeros.
    let tail = size % BLOCK_SIZE as u64;
    if tail != 0 {
        let b = get_block(inode, size >> BLOCK_SHIFT)?;
        if b != 0 {
            fs.pmem
                .zero_flush(FsInfo::block_off(b) + tail, BLOCK_SIZE - tail as usize)?;
        }
    }
    free_range(inode, first_page, u64::MAX)
}

/// Punch `off..off+len`: zero partial blocks, free whole ones.
pub(crate) fn punch_hole(inode: &Inode, off: u64, len: u64) -> Result {
    let fs = inode.fs();
    let end = core::cmp::min(off.saturating_add(len), inode.size());
    if off >= end {
        return Ok(());
    }
    let inv = inode.invalidate_lock().write();
    let bs = BLOCK_SIZE as u64;
    let first_full = off.div_ceil(bs);
    let end_full = end / bs; // exclusive
    let map_start = off - off % bs;
    // Whole blocks are freed: wait for pins on them. The partial head and
    // tail keep their blocks; their PTEs go too (COW copies of them would
    // keep the old bytes).
    if end_full > first_full {
        break_layouts(inode, first_full, end_full - 1, &inv)?;
    }
    inode.unmap_range(map_start, (end - map_start).next_multiple_of(bs), true);
    // Partial head and tail blocks keep their block; zero their bytes.
    let (head, tail) = (off / bs, end / bs);
    if off % bs != 0 {
        let stop = if tail == head { end % bs } else { bs };
        zero_in_block(inode, head, off % bs, stop)?;
    }
    if end % bs != 0 && (tail != head || off % bs == 0) {
        zero_in_block(inode, tail, 0, end % bs)?;
    }
    if end_full > first_full {
        crate::dax::drop_huge(inode, first_full, end_full - 1, true);
        let (_, dirty) = inode.dirty.remove_range(first_full, end_full - 1);
        fs.stats.add(Counter::EntriesRemoved, dirty);
        free_range(inode, first_full, end_full - 1)?;
    }
    inode.touch_cmtime();
    write_inode(inode)
}

/// Before the size grows from `old`: zero the rest of the block holding the
/// old end, which a mapping may have stored into (bytes past EOF must read
/// as zeros once they are inside the file).
pub(crate) fn zero_tail(inode: &Inode, old: u64) -> Result {
    let tail = old % BLOCK_SIZE as u64;
    if tail == 0 {
        return Ok(());
    }
    zero_in_block(inode, old >> BLOCK_SHIFT, tail, BLOCK_SIZE as u64)
}

fn zero_in_block(inode: &Inode, lblk: u64, from: u64, to: u64) -> Result {
    let b = get_block(inode, lblk)?;
    if b != 0 && to > from {
        inode
            .fs()
            .pmem
            .zero_flush(FsInfo::block_off(b) + from, (to - from) as usize)?;
    }
    Ok(())
}

/// Last reference gone. Unlinked: free everything. Still linked: make sure
/// every dirty DAX entry is written back before its tracking disappears.
pub(crate) fn evict(inode: &Inode) {
    let fs = inode.fs();
    if inode.nlink() == 0 {
        // Freeing writes the medium: not while the file system is frozen.
        let _iw = inode.start_intwrite();
        let _inv = inode.invalidate_lock().write();
        crate::dax::drop_huge(inode, 0, u64::MAX >> BLOCK_SHIFT, false);
        let (_, dirty) = inode.dirty.remove_range(0, u64::MAX >> 1);
        fs.stats.add(Counter::EntriesRemoved, dirty);
        let on_media = load(inode).map(|d| !d.is_free()).unwrap_or(false);
        if on_media {
            // No mapping is left, but a pin taken through one may be (an
            // O_DIRECT transfer the process did not wait for, a vmspliced
            // page in a pipe). Its blocks must not be reused while it is:
            // if it outlasts the wait, leave the inode an orphan, which the
            // next mount frees.
            if !release_pages_final(inode) {
                pr_warn!(
                    "inode {}: pages still held by get_user_pages; its blocks stay allocated until the next mount\n",
                    inode.ino()
                );
                return;
            }
            // Blocks first (possibly several transactions), the inode last:
            // a crash in between leaves an orphan that the next mount frees
            // (a symlink's with no target block, which `read_inode` and
            // fsck accept for an orphan).
            if let Err(e) = free_range(inode, 0, u64::MAX) {
                pr_err!("inode {}: freeing blocks failed: {:?}\n", inode.ino(), e);
            }
            let mut tx = fs.tx();
            let r = crate::xattr::free_tx(&mut tx, inode)
                .and_then(|()| tx.alloc(|a, tx| a.free_inode(tx, &fs.geo, inode.ino())));
            if let Err(e) = r.and_then(|()| tx.commit()) {
                pr_err!("inode {}: freeing the inode failed: {:?}\n", inode.ino(), e);
            }
        }
    } else {
        if let Err(e) = crate::dax::writeback_evicting(inode) {
            pr_err!(
                "inode {}: writeback at eviction failed: {:?}\n",
                inode.ino(),
                e
            );
        }
        // The pages stay the file's, but this in-memory inode and its
        // mapping go: no page may point to them any more.
        release_pages_final(inode);
    }
}
