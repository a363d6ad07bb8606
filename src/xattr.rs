// SPDX-License-Identifier: GPL-2.0
//! Extended attributes: `user.`, `trusted.`, `security.` and the POSIX ACLs,
//! in one block per inode (format version 3, "Extended attributes" in
//! `format.rs`).
//!
//! A change never rewrites the inode's block in place. It builds the whole
//! new block in memory, writes it to a block the transaction allocates
//! (unlogged: if the transaction rolls back, that block is free again), and
//! in the same transaction points the inode at it and frees the old block.
//! So after a crash the inode has either every old or every new attribute.
//! The change is durable when the call returns, like every other metadata
//! operation of ferrofs.
//!
//! Locking: `xattr_lock` (per inode rwsem) is exclusive around a change and
//! shared around a read, so a reader never reads a block that a change is
//! freeing. The VFS also holds `i_rwsem` around setxattr, but not around
//! getxattr or the ACL reads of permission checks, which may run with any
//! `i_rwsem` held (the order is in `sys/locks.rs`). Nothing is copied to
//! or from user memory under `xattr_lock`: the VFS hands kernel buffers.

use crate::format::{
    self, Inode as DiskInode, XattrEntry, BLOCK_SIZE, XATTR_ACL_ACCESS, XATTR_ACL_DEFAULT,
    XATTR_NAME_MAX, XATTR_SECURITY, XATTR_TRUSTED, XATTR_USER,
};
use crate::journal::Tx;
use crate::super_::FsInfo;
use crate::sys::vfs::Inode;
use kernel::error::{code::*, Result};
use kernel::prelude::*;

/// setxattr flags (include/uapi/linux/xattr.h).
pub(crate) const XATTR_CREATE: i32 = 0x1;
pub(crate) const XATTR_REPLACE: i32 = 0x2;

/// The name prefix of each namespace, for listxattr.
fn prefix(index: u8) -> &'static [u8] {
    match index {
        XATTR_USER => b"user.",
        XATTR_TRUSTED => b"trusted.",
        XATTR_SECURITY => b"security.",
        XATTR_ACL_ACCESS => b"system.posix_acl_access",
        XATTR_ACL_DEFAULT => b"system.posix_acl_default",
        _ => b"",
    }
}

/// The inode's xattr block number (0: none), from the medium: one aligned
/// load (a change rewrites it under `xattr_lock`, which the caller holds).
fn block_of(fs: &FsInfo, ino: u32) -> Result<u64> {
    let off =
        crate::alloc::inode_off(&fs.geo, ino) + core::mem::offset_of!(DiskInode, xattr) as u64;
    let b = fs.pmem.read_u32(off)? as u64;
    if b != 0 && (b < fs.geo.data_start || b >= fs.geo.blocks_count) {
        pr_err!("inode {}: xattr block {} out of range\n", ino, b);
        return Err(crate::sys::euclean());
    }
    Ok(b)
}

/// The inode's xattr block, read and checked, or `None`.
fn read_block(inode: &Inode) -> Result<Option<KVec<u8>>> {
    let fs = inode.fs();
    let b = block_of(fs, inode.ino())?;
    if b == 0 {
        return Ok(None);
    }
    let mut buf = KVec::from_elem(0u8, BLOCK_SIZE, GFP_KERNEL)?;
    fs.pmem.read(FsInfo::block_off(b), &mut buf)?;
    if let Err(e) = format::xattr_entries(&buf, inode.ino()) {
        pr_err!(
            "inode {}: xattr block {} is corrupt: {}\n",
            inode.ino(),
            b,
            e.reason()
        );
        return Err(crate::sys::euclean());
    }
    Ok(Some(buf))
}

fn entries(block: &[u8], ino: u32) -> impl Iterator<Item = XattrEntry<'_>> {
    // Checked by read_block: an error here cannot happen, and yields nothing.
    format::xattr_entries(block, ino).into_iter().flatten()
}

/// getxattr: copies the value of (`index`, `name`) into `buf` and returns
/// its length; with an empty `buf`, only the length. ENODATA when there is
/// no such attribute, ERANGE when `buf` is too small.
pub(crate) fn get(inode: &Inode, index: u8, name: &[u8], buf: &mut [u8]) -> Result<usize> {
    let _g = inode.xattr_lock().read();
    let Some(block) = read_block(inode)? else {
        return Err(crate::sys::enodata());
    };
    let e = entries(&block, inode.ino())
        .find(|e| e.index == index && e.name == name)
        .ok_or_else(crate::sys::enodata)?;
    if buf.is_empty() {
        return Ok(e.value.len());
    }
    let dst = buf.get_mut(..e.value.len()).ok_or(ERANGE)?;
    dst.copy_from_slice(e.value);
    Ok(e.value.len())
}

/// listxattr: the full names, each NUL-terminated, into `buf`; with an
/// empty `buf`, only the length. `trusted`: whether the caller may see
/// `trusted.` names (CAP_SYS_ADMIN); `acls`: whether ACL names are listed
/// (the mount has POSIX ACLs).
pub(crate) fn list(inode: &Inode, buf: &mut [u8], trusted: bool, acls: bool) -> Result<usize> {
    let _g = inode.xattr_lock().read();
    let Some(block) = read_block(inode)? else {
        return Ok(0);
    };
    let mut n = 0usize;
    for e in entries(&block, inode.ino()) {
        let shown = match e.index {
            XATTR_TRUSTED => trusted,
            XATTR_ACL_ACCESS | XATTR_ACL_DEFAULT => acls,
            _ => true,
        };
        if !shown {
            continue;
        }
        let p = prefix(e.index);
        // At most a block's worth of names: no overflow.
        let len = p.len() + e.name.len() + 1;
        if !buf.is_empty() {
            let dst = buf.get_mut(n..n + len).ok_or(ERANGE)?;
            dst[..p.len()].copy_from_slice(p);
            dst[p.len()..len - 1].copy_from_slice(e.name);
            dst[len - 1] = 0;
        }
        n += len;
    }
    Ok(n)
}

/// What [`set_tx`] changed, for after the commit.
#[must_use]
pub(crate) struct Changed {
    raised: bool,
}

impl Changed {
    /// The transaction committed.
    pub(crate) fn committed(self, fs: &FsInfo) {
        if self.raised {
            fs.version_raised(format::VERSION_XATTR);
        }
    }
}

/// setxattr / removexattr (`value` None) in one transaction of its own,
/// with the inode's ctime. `flags`: XATTR_CREATE, XATTR_REPLACE.
pub(crate) fn set(
    inode: &Inode,
    index: u8,
    name: &[u8],
    value: Option<&[u8]>,
    flags: i32,
) -> Result {
    let fs = inode.fs();
    let _g = inode.xattr_lock().write();
    let mut tx = fs.tx();
    inode.touch_ctime();
    let changed = set_tx(&mut tx, inode, index, name, value, flags)?;
    tx.commit()?;
    changed.committed(fs);
    Ok(())
}

/// The change of [`set`] inside the caller's transaction; the caller holds
/// `xattr_lock` for write, or owns a new inode no one else can see. Stores
/// the VFS inode's attributes (mode, ctime) with the new pointer.
pub(crate) fn set_tx(
    tx: &mut Tx<'_>,
    inode: &Inode,
    index: u8,
    name: &[u8],
    value: Option<&[u8]>,
    flags: i32,
) -> Result<Changed> {
    let fs = inode.fs();
    let ino = inode.ino();
    if name.len() > XATTR_NAME_MAX {
        return Err(ERANGE);
    }
    let old = read_block(inode)?;
    let old_entries = || {
        old.as_deref()
            .map(|b| entries(b, ino))
            .into_iter()
            .flatten()
    };
    let exists = old_entries().any(|e| e.index == index && e.name == name);
    if exists && flags & XATTR_CREATE != 0 {
        return Err(EEXIST);
    }
    if !exists && flags & XATTR_REPLACE != 0 {
        return Err(crate::sys::enodata());
    }
    if !exists && value.is_none() {
        return Err(crate::sys::enodata());
    }
    let new = value.map(|v| XattrEntry {
        index,
        name,
        value: v,
    });
    let kept = old_entries().filter(|e| !(e.index == index && e.name == name));
    let empty = new.is_none() && old_entries().all(|e| e.index == index && e.name == name);
    let mut buf = KVec::from_elem(0u8, BLOCK_SIZE, GFP_KERNEL)?;
    if !empty {
        format::xattr_build(&mut buf, ino, Iterator::chain(kept, new)).map_err(|e| match e {
            format::FormatError::XattrNoSpace => ENOSPC,
            _ => EINVAL,
        })?;
    }
    let raised = !empty && fs.raise_version(tx, format::VERSION_XATTR)?;
    let nb = if empty {
        0
    } else {
        let b = tx.alloc(|a, tx| a.alloc_block(tx, &fs.geo))?;
        tx.write_fresh(FsInfo::block_off(b), &buf)?;
        b
    };
    let ob = block_of(fs, ino)?;
    crate::inode::set_xattr_block_tx(tx, inode, nb, ob)?;
    if ob != 0 {
        tx.alloc(|a, tx| a.free_block(tx, &fs.geo, ob))?;
    }
    Ok(Changed { raised })
}

/// A new inode's first attributes (the ACLs it inherits), in its creating
/// transaction: the inode is not visible yet and has no block. Returns
/// what [`set_tx`] does, for after the commit.
pub(crate) fn init_tx(
    tx: &mut Tx<'_>,
    inode: &Inode,
    values: &[(u8, KVec<u8>)],
) -> Result<Changed> {
    if values.is_empty() {
        return Ok(Changed { raised: false });
    }
    let fs = inode.fs();
    let mut buf = KVec::from_elem(0u8, BLOCK_SIZE, GFP_KERNEL)?;
    let it = values.iter().map(|(index, v)| XattrEntry {
        index: *index,
        name: b"",
        value: v,
    });
    format::xattr_build(&mut buf, inode.ino(), it).map_err(|_| ENOSPC)?;
    let raised = fs.raise_version(tx, format::VERSION_XATTR)?;
    let b = tx.alloc(|a, tx| a.alloc_block(tx, &fs.geo))?;
    tx.write_fresh(FsInfo::block_off(b), &buf)?;
    crate::inode::set_xattr_block_tx(tx, inode, b, 0)?;
    Ok(Changed { raised })
}

/// Eviction of an unlinked inode: free its xattr block in `tx` (the one
/// that frees the inode). No lock: no one else holds the inode.
pub(crate) fn free_tx(tx: &mut Tx<'_>, inode: &Inode) -> Result {
    let fs = inode.fs();
    let b = block_of(fs, inode.ino())?;
    if b != 0 {
        tx.alloc(|a, tx| a.free_block(tx, &fs.geo, b))?;
    }
    Ok(())
}
