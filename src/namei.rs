// SPDX-License-Identifier: GPL-2.0
//! Name operations: lookup, create, mknod, mkdir, symlink, link, unlink,
//! rmdir, rename. The VFS holds the directories' `i_rwsem` around each call.
//!
//! The mount has POSIX ACLs (SB_POSIXACL), so the VFS leaves the umask to
//! us: every new file and directory goes through `vfs::acl_create`, which
//! applies it or the parent's default ACL, and gets the inherited ACLs in
//! its creating transaction.
//!
//! Each operation is one journal transaction: after a crash it happened
//! entirely or not at all. An inode whose last name goes away keeps its
//! blocks until eviction (it may still be open); if the system goes down
//! first, the next mount finds it with link count 0 and frees it.
//!
//! A new VFS inode must not be dropped while the transaction is open: its
//! eviction would start another transaction and wait for ours. [`with_new`]
//! keeps it outside the transaction's scope.

use crate::dir;
use crate::format::{self, BLOCK_SIZE, NAME_MAX};
use crate::inode;
use crate::journal::Tx;
use crate::super_::FsInfo;
use crate::sys::vfs::{self, Dentry, IdMap, Inode, InodeRef, Kind, NewInode};
use crate::xattr;
use kernel::error::{code::*, Result};

fn check_name(name: &[u8]) -> Result {
    if name.len() > NAME_MAX {
        return Err(crate::sys::enametoolong());
    }
    Ok(())
}

pub(crate) fn lookup(dir: &Inode, dentry: &Dentry) -> Result<Option<InodeRef>> {
    let name = dentry.name();
    check_name(name)?;
    match dir::find(dir, name)? {
        Some(slot) => Ok(Some(vfs::iget(dir.fs(), slot.ino)?)),
        None => Ok(None),
    }
}

/// Reserve an inode slot and build the VFS inode for a new object in `dir`,
/// inside `tx`, to be named `dentry` (None: a whiteout, named by rename).
/// The inode goes to `out` (dropped by the caller, after `tx`).
fn new_object<'n>(
    tx: &mut Tx<'_>,
    idmap: &IdMap,
    dir: &Inode,
    dentry: Option<&Dentry>,
    mode: u16,
    kind: Kind,
    out: &'n mut Option<NewInode>,
) -> Result<&'n NewInode> {
    if let Some(d) = dentry {
        check_name(d.name())?;
    }
    let fs = dir.fs();
    let ino = inode::create_on_media(tx, fs, mode, 0, 0, dir.ino())?;
    let ni = match NewInode::new(dir, idmap, ino, mode, kind) {
        Ok(ni) => out.insert(ni),
        Err(e) => {
            let _ = tx.alloc(|a, tx| a.free_inode(tx, &fs.geo, ino));
            return Err(e);
        }
    };
    // On any error from here, dropping the inode evicts it and frees the slot.
    inode::init_new_tx(tx, ni.get(), dir.ino())?;
    Ok(ni)
}

/// Run `f` in one transaction with a slot for a new inode; on success return
/// the inode. On failure the transaction is committed (what was done is
/// consistent) before the inode is dropped, so its eviction can run.
fn with_new(
    fs: &FsInfo,
    f: impl FnOnce(&mut Tx<'_>, &mut Option<NewInode>) -> Result,
) -> Result<NewInode> {
    let mut slot = None;
    let r = {
        let mut tx = fs.tx();
        f(&mut tx, &mut slot)
    };
    r?;
    slot.ok_or(EIO)
}

pub(crate) fn create(idmap: &IdMap, dir: &Inode, dentry: &Dentry, mode: u16) -> Result {
    let mut mode = mode;
    let acls = vfs::acl_create(dir, &mut mode)?;
    let mut changed = None;
    let ni = with_new(dir.fs(), |tx, slot| {
        let ni = new_object(tx, idmap, dir, Some(dentry), mode, Kind::File, slot)?;
        changed = Some(xattr::init_tx(tx, ni.get(), &acls.values)?);
        dir::add(tx, dir, dentry.name(), ni.get().ino(), format::DT_REG)
    })?;
    if let Some(c) = changed {
        c.committed(dir.fs());
    }
    acls.cache(ni.get());
    ni.instantiate(dentry);
    Ok(())
}

/// A device node, FIFO or socket: an inode with no blocks and its device
/// number (format version 3, raised in the same transaction).
pub(crate) fn mknod(idmap: &IdMap, dir: &Inode, dentry: &Dentry, mode: u16, dev: u32) -> Result {
    if !format::is_special(mode) {
        return Err(EINVAL);
    }
    let fs = dir.fs();
    let mut mode = mode;
    let acls = vfs::acl_create(dir, &mut mode)?;
    let (mut changed, mut raised) = (None, false);
    let kind = Kind::Special(vfs::encode_dev(dev));
    let ni = with_new(fs, |tx, slot| {
        raised = fs.raise_version(tx, format::VERSION_SPECIAL)?;
        let ni = new_object(tx, idmap, dir, Some(dentry), mode, kind, slot)?;
        changed = Some(xattr::init_tx(tx, ni.get(), &acls.values)?);
        dir::add(
            tx,
            dir,
            dentry.name(),
            ni.get().ino(),
            format::dt_from_mode(mode),
        )
    })?;
    if raised {
        fs.version_raised(format::VERSION_SPECIAL);
    }
    if let Some(c) = changed {
        c.committed(fs);
    }
    acls.cache(ni.get());
    ni.instantiate(dentry);
    Ok(())
}

/// O_TMPFILE: a file with no name. On the medium its link count is 0 from
/// the start (in the creating transaction), so after a crash the next mount
/// frees it as an orphan; linkat gives it a name in one transaction
/// ([`link`]). In memory the count is 1 until d_tmpfile drops it.
pub(crate) fn tmpfile(idmap: &IdMap, dir: &Inode, mode: u16) -> Result<NewInode> {
    let fs = dir.fs();
    let mut mode = mode;
    let acls = vfs::acl_create(dir, &mut mode)?;
    let mut changed = None;
    let ni = with_new(fs, |tx, slot| {
        let ino = inode::create_on_media(tx, fs, mode, 0, 0, dir.ino())?;
        let ni = match NewInode::new(dir, idmap, ino, mode, Kind::File) {
            Ok(ni) => slot.insert(ni),
            Err(e) => {
                let _ = tx.alloc(|a, tx| a.free_inode(tx, &fs.geo, ino));
                return Err(e);
            }
        };
        let i = ni.get();
        i.set_nlink(0);
        let r =
            inode::init_new_tx(tx, i, dir.ino()).and_then(|()| xattr::init_tx(tx, i, &acls.values));
        i.set_nlink(1);
        changed = Some(r?);
        Ok(())
    })?;
    if let Some(c) = changed {
        c.committed(fs);
    }
    acls.cache(ni.get());
    Ok(ni)
}

pub(crate) fn mkdir(idmap: &IdMap, dir: &Inode, dentry: &Dentry, mode: u16) -> Result {
    let mut mode = mode | format::S_IFDIR;
    let acls = vfs::acl_create(dir, &mut mode)?;
    let mut changed = None;
    let ni = with_new(dir.fs(), |tx, slot| {
        let ni = new_object(tx, idmap, dir, Some(dentry), mode, Kind::Dir, slot)?;
        ni.get().set_nlink(2);
        inode::write_inode_tx(tx, ni.get())?;
        changed = Some(xattr::init_tx(tx, ni.get(), &acls.values)?);
        dir::add(tx, dir, dentry.name(), ni.get().ino(), format::DT_DIR)?;
        dir.inc_nlink();
        inode::write_inode_tx(tx, dir)
    })?;
    if let Some(c) = changed {
        c.committed(dir.fs());
    }
    acls.cache(ni.get());
    ni.instantiate(dentry);
    Ok(())
}

pub(crate) fn symlink(idmap: &IdMap, dir: &Inode, dentry: &Dentry, target: &[u8]) -> Result {
    if target.len() >= BLOCK_SIZE {
        return Err(crate::sys::enametoolong());
    }
    let fs = dir.fs();
    let ni = with_new(fs, |tx, slot| {
        let ni = new_object(
            tx,
            idmap,
            dir,
            Some(dentry),
            format::S_IFLNK | 0o777,
            Kind::Symlink,
            slot,
        )?;
        let i = ni.get();
        let (b, _) = inode::get_or_alloc_tx(tx, i, 0, false)?;
        let off = FsInfo::block_off(b);
        // A block of this transaction, zeroed: the target stays NUL-terminated.
        tx.write_fresh(off, target)?;
        i.set_size(target.len() as u64);
        inode::write_inode_tx(tx, i)?;
        i.set_link(target)?;
        dir::add(tx, dir, dentry.name(), i.ino(), format::DT_LNK)
    })?;
    ni.instantiate(dentry);
    Ok(())
}

pub(crate) fn link(old: &Dentry, dir: &Inode, new: &Dentry) -> Result {
    check_name(new.name())?;
    let i = old.inode().ok_or(ENOENT)?;
    if i.nlink() >= format::NLINK_MAX {
        return Err(EMLINK);
    }
    let mut tx = dir.fs().tx();
    i.inc_nlink();
    i.touch_ctime();
    inode::write_inode_tx(&mut tx, i)?;
    if let Err(e) = dir::add(
        &mut tx,
        dir,
        new.name(),
        i.ino(),
        format::dt_from_mode(i.mode()),
    ) {
        i.drop_nlink();
        let _ = inode::write_inode_tx(&mut tx, i);
        return Err(e);
    }
    tx.commit()?;
    new.instantiate_existing(i);
    Ok(())
}

pub(crate) fn unlink(dir: &Inode, dentry: &Dentry) -> Result {
    let i = dentry.inode().ok_or(ENOENT)?;
    let slot = dir::find(dir, dentry.name())?.ok_or(ENOENT)?;
    let mut tx = dir.fs().tx();
    dir::remove(&mut tx, dir, &slot)?;
    i.touch_ctime();
    i.drop_nlink();
    inode::write_inode_tx(&mut tx, i)?;
    tx.commit()
}

pub(crate) fn rmdir(dir: &Inode, dentry: &Dentry) -> Result {
    let i = dentry.inode().ok_or(ENOENT)?;
    if !dir::is_empty(i)? {
        return Err(crate::sys::enotempty());
    }
    let slot = dir::find(dir, dentry.name())?.ok_or(ENOENT)?;
    let mut tx = dir.fs().tx();
    dir::remove(&mut tx, dir, &slot)?;
    i.touch_ctime();
    i.clear_nlink();
    inode::write_inode_tx(&mut tx, i)?;
    dir.drop_nlink();
    inode::write_inode_tx(&mut tx, dir)?;
    tx.commit()
}

/// rename(2) and renameat2 with RENAME_NOREPLACE (the VFS refused an
/// existing target) or RENAME_WHITEOUT (`whiteout`: the old name is left
/// pointing at a new whiteout, a character device 0:0, as overlayfs asks;
/// the VFS checked CAP_MKNOD). One transaction.
pub(crate) fn rename(
    idmap: &IdMap,
    od: &Inode,
    old: &Dentry,
    nd: &Inode,
    new: &Dentry,
    whiteout: bool,
) -> Result {
    check_name(new.name())?;
    // The lookups first, outside the transaction, as in the other
    // operations.
    let plan = RenamePlan::new(od, old, nd, new)?;
    let fs = od.fs();
    if !whiteout {
        return plan.run(fs.tx(), od, nd, new, None);
    }
    // Declared before the transaction: on an error the inode is dropped
    // (and evicted) after the transaction is.
    let mut slot = None;
    let raised = {
        let mut tx = fs.tx();
        let raised = fs.raise_version(&mut tx, format::VERSION_SPECIAL)?;
        let mode = format::S_IFCHR | WHITEOUT_MODE;
        let kind = Kind::Special(vfs::encode_dev(0));
        let w = new_object(&mut tx, idmap, od, None, mode, kind, &mut slot)?;
        plan.run(tx, od, nd, new, Some(w.get()))?;
        raised
    };
    if raised {
        fs.version_raised(format::VERSION_SPECIAL);
    }
    // Named on the medium; nothing in the dcache points at it (a lookup of
    // the old name finds it there).
    slot.ok_or(EIO)?.release();
    Ok(())
}

/// include/linux/fs.h: a whiteout is a character device 0:0 with no
/// permission bits.
const WHITEOUT_MODE: u16 = 0;

/// What a rename changes, found before its transaction (the VFS holds both
/// directories' `i_rwsem`, so it stays true until the transaction).
struct RenamePlan<'a> {
    src: &'a Inode,
    old_slot: dir::Slot,
    target: Option<(&'a Inode, dir::Slot)>,
}

impl<'a> RenamePlan<'a> {
    fn new(od: &Inode, old: &'a Dentry, nd: &Inode, new: &'a Dentry) -> Result<Self> {
        let src = old.inode().ok_or(ENOENT)?;
        let old_slot = dir::find(od, old.name())?.ok_or(ENOENT)?;
        let target = match new.inode() {
            Some(t) => {
                if t.is_dir() && !dir::is_empty(t)? {
                    return Err(crate::sys::enotempty());
                }
                Some((t, dir::find(nd, new.name())?.ok_or(ENOENT)?))
            }
            None => None,
        };
        Ok(RenamePlan {
            src,
            old_slot,
            target,
        })
    }

    /// In `tx`, then commit: `new` names the source; the old name goes, or
    /// names `whiteout`.
    fn run(
        self,
        mut tx: Tx<'_>,
        od: &Inode,
        nd: &Inode,
        new: &Dentry,
        whiteout: Option<&Inode>,
    ) -> Result {
        let src = self.src;
        let dt = format::dt_from_mode(src.mode());
        match self.target {
            Some((target, new_slot)) => {
                dir::retarget(&mut tx, nd, &new_slot, src.ino(), dt)?;
                target.touch_ctime();
                if target.is_dir() {
                    target.clear_nlink();
                    nd.drop_nlink();
                } else {
                    target.drop_nlink();
                }
                inode::write_inode_tx(&mut tx, target)?;
            }
            None => dir::add(&mut tx, nd, new.name(), src.ino(), dt)?,
        }
        match whiteout {
            Some(w) => dir::retarget(&mut tx, od, &self.old_slot, w.ino(), format::DT_CHR)?,
            None => dir::remove(&mut tx, od, &self.old_slot)?,
        }
        if src.is_dir() && od.ino() != nd.ino() {
            od.drop_nlink();
            nd.inc_nlink();
            inode::set_parent_tx(&mut tx, src, nd.ino())?;
            inode::write_inode_tx(&mut tx, od)?;
        }
        // Also the target directory's link count, when a directory was replaced.
        inode::write_inode_tx(&mut tx, nd)?;
        src.touch_ctime();
        inode::write_inode_tx(&mut tx, src)?;
        tx.commit()
    }
}

/// renameat2(RENAME_EXCHANGE): swap what two names point at, atomically (one
/// transaction). Both names exist (the VFS checked). A directory that moves
/// to the other parent gets that parent, and the parents' link counts
/// follow the subdirectories they gain and lose.
pub(crate) fn exchange(od: &Inode, old: &Dentry, nd: &Inode, new: &Dentry) -> Result {
    let a = old.inode().ok_or(ENOENT)?;
    let b = new.inode().ok_or(ENOENT)?;
    let a_slot = dir::find(od, old.name())?.ok_or(ENOENT)?;
    let b_slot = dir::find(nd, new.name())?.ok_or(ENOENT)?;
    let (a_dt, b_dt) = (
        format::dt_from_mode(a.mode()),
        format::dt_from_mode(b.mode()),
    );
    let mut tx = od.fs().tx();
    dir::retarget(&mut tx, od, &a_slot, b.ino(), b_dt)?;
    dir::retarget(&mut tx, nd, &b_slot, a.ino(), a_dt)?;
    if od.ino() != nd.ino() {
        if a.is_dir() {
            inode::set_parent_tx(&mut tx, a, nd.ino())?;
        }
        if b.is_dir() {
            inode::set_parent_tx(&mut tx, b, od.ino())?;
        }
        match (a.is_dir(), b.is_dir()) {
            (true, false) => {
                od.drop_nlink();
                nd.inc_nlink();
            }
            (false, true) => {
                nd.drop_nlink();
                od.inc_nlink();
            }
            _ => {}
        }
        inode::write_inode_tx(&mut tx, od)?;
        inode::write_inode_tx(&mut tx, nd)?;
    }
    a.touch_ctime();
    b.touch_ctime();
    inode::write_inode_tx(&mut tx, a)?;
    inode::write_inode_tx(&mut tx, b)?;
    tx.commit()
}
