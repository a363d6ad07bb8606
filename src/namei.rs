// SPDX-License-Identifier: GPL-2.0
//! Name operations: lookup, create, mkdir, symlink, link, unlink, rmdir,
//! rename. The VFS holds the directories' `i_rwsem` around each call.
//!
//! Order on the medium: a new inode is written before the entry that names
//! it; an entry is retired before the link count it held is dropped. A crash
//! between the two leaves an unreferenced inode (fsck reclaims it), never a
//! name pointing at garbage.

use crate::dir;
use crate::format::{self, BLOCK_SIZE, NAME_MAX};
use crate::inode;
use crate::super_::FsInfo;
use crate::sys::vfs::{self, Dentry, IdMap, Inode, InodeRef, Kind, NewInode};
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

/// Reserve an inode slot and build the VFS inode for a new object in `dir`.
fn new_object(
    idmap: &IdMap,
    dir: &Inode,
    dentry: &Dentry,
    mode: u16,
    kind: Kind,
) -> Result<NewInode> {
    check_name(dentry.name())?;
    let fs = dir.fs();
    let ino = inode::create_on_media(fs, mode, 0, 0, dir.ino())?;
    let ni = match NewInode::new(dir, idmap, ino, mode, kind) {
        Ok(ni) => ni,
        Err(e) => {
            let _ = fs.alloc.lock().free_inode(&fs.pmem, &fs.geo, ino);
            return Err(e);
        }
    };
    // On any error from here, dropping `ni` evicts it and frees the slot.
    inode::init_new(ni.get(), dir.ino())?;
    Ok(ni)
}

pub(crate) fn create(idmap: &IdMap, dir: &Inode, dentry: &Dentry, mode: u16) -> Result {
    let ni = new_object(idmap, dir, dentry, mode, Kind::File)?;
    dir::add(dir, dentry.name(), ni.get().ino(), format::DT_REG)?;
    ni.instantiate(dentry);
    Ok(())
}

pub(crate) fn mkdir(idmap: &IdMap, dir: &Inode, dentry: &Dentry, mode: u16) -> Result {
    let ni = new_object(idmap, dir, dentry, mode | format::S_IFDIR, Kind::Dir)?;
    ni.get().set_nlink(2);
    inode::write_inode(ni.get())?;
    dir::add(dir, dentry.name(), ni.get().ino(), format::DT_DIR)?;
    dir.inc_nlink();
    inode::write_inode(dir)?;
    ni.instantiate(dentry);
    Ok(())
}

pub(crate) fn symlink(idmap: &IdMap, dir: &Inode, dentry: &Dentry, target: &[u8]) -> Result {
    if target.len() >= BLOCK_SIZE {
        return Err(crate::sys::enametoolong());
    }
    let ni = new_object(idmap, dir, dentry, format::S_IFLNK | 0o777, Kind::Symlink)?;
    let i = ni.get();
    let fs = i.fs();
    let (b, _) = inode::get_or_alloc_block(i, 0)?;
    let off = FsInfo::block_off(b);
    // The block is zeroed, so the target stays NUL-terminated.
    fs.pmem.write_flush(off, target)?;
    crate::sys::pmem::fence();
    i.set_size(target.len() as u64);
    inode::write_inode(i)?;
    i.set_link(fs.pmem.kaddr(off, target.len() + 1)?);
    dir::add(dir, dentry.name(), i.ino(), format::DT_LNK)?;
    ni.instantiate(dentry);
    Ok(())
}

pub(crate) fn link(old: &Dentry, dir: &Inode, new: &Dentry) -> Result {
    check_name(new.name())?;
    let i = old.inode().ok_or(ENOENT)?;
    if i.nlink() >= u32::MAX - 1 {
        return Err(EMLINK);
    }
    i.inc_nlink();
    i.touch_ctime();
    inode::write_inode(i)?;
    if let Err(e) = dir::add(dir, new.name(), i.ino(), format::dt_from_mode(i.mode())) {
        i.drop_nlink();
        let _ = inode::write_inode(i);
        return Err(e);
    }
    new.instantiate_existing(i);
    Ok(())
}

pub(crate) fn unlink(dir: &Inode, dentry: &Dentry) -> Result {
    let i = dentry.inode().ok_or(ENOENT)?;
    let slot = dir::find(dir, dentry.name())?.ok_or(ENOENT)?;
    dir::remove(dir, &slot)?;
    i.touch_ctime();
    i.drop_nlink();
    inode::write_inode(i)
}

pub(crate) fn rmdir(dir: &Inode, dentry: &Dentry) -> Result {
    let i = dentry.inode().ok_or(ENOENT)?;
    if !dir::is_empty(i)? {
        return Err(crate::sys::enotempty());
    }
    let slot = dir::find(dir, dentry.name())?.ok_or(ENOENT)?;
    dir::remove(dir, &slot)?;
    i.touch_ctime();
    i.clear_nlink();
    inode::write_inode(i)?;
    dir.drop_nlink();
    inode::write_inode(dir)
}

pub(crate) fn rename(od: &Inode, old: &Dentry, nd: &Inode, new: &Dentry) -> Result {
    check_name(new.name())?;
    let src = old.inode().ok_or(ENOENT)?;
    let old_slot = dir::find(od, old.name())?.ok_or(ENOENT)?;
    let dt = format::dt_from_mode(src.mode());
    let src_is_dir = src.is_dir();
    match new.inode() {
        Some(target) => {
            if target.is_dir() && !dir::is_empty(target)? {
                return Err(crate::sys::enotempty());
            }
            let new_slot = dir::find(nd, new.name())?.ok_or(ENOENT)?;
            dir::retarget(nd, &new_slot, src.ino(), dt)?;
            target.touch_ctime();
            if target.is_dir() {
                target.clear_nlink();
                nd.drop_nlink();
            } else {
                target.drop_nlink();
            }
            inode::write_inode(target)?;
        }
        None => dir::add(nd, new.name(), src.ino(), dt)?,
    }
    dir::remove(od, &old_slot)?;
    if src_is_dir && od.ino() != nd.ino() {
        od.drop_nlink();
        nd.inc_nlink();
        inode::set_parent(src, nd.ino())?;
        inode::write_inode(od)?;
        inode::write_inode(nd)?;
    }
    src.touch_ctime();
    inode::write_inode(src)
}
