// SPDX-License-Identifier: GPL-2.0
//! Directory blocks: fixed 256-byte slots (see `format.rs`).
//!
//! Changes are made in the caller's journal transaction, so a crash never
//! exposes a half-written slot. Callers hold the directory's `i_rwsem`
//! (exclusive to modify, shared to read).

use crate::format::{self, Dirent, Pod, BLOCK_SIZE, DIRENTS_PER_BLOCK, DIRENT_SIZE};
use crate::inode;
use crate::journal::Tx;
use crate::super_::FsInfo;
use crate::sys::vfs::{DirContext, Inode};
use kernel::error::{code::*, Result};

/// Where a name was found.
pub(crate) struct Slot {
    off: u64,
    pub(crate) ino: u32,
}

/// Visit every used slot; `f` returns true to stop.
fn for_each(
    dir: &Inode,
    mut f: impl FnMut(u64, u64, &Dirent) -> Result<bool>,
) -> Result<Option<u64>> {
    let fs = dir.fs();
    let nblocks = dir.size() / BLOCK_SIZE as u64;
    for l in 0..nblocks {
        let b = inode::get_block(dir, l)?;
        if b == 0 {
            continue;
        }
        for s in 0..DIRENTS_PER_BLOCK {
            let off = FsInfo::block_off(b) + (s * DIRENT_SIZE) as u64;
            let d: Dirent = fs.pmem.read_pod(off)?;
            if d.ino.get() == 0 {
                continue;
            }
            let idx = l * DIRENTS_PER_BLOCK as u64 + s as u64;
            if f(idx, off, &d)? {
                return Ok(Some(off));
            }
        }
    }
    Ok(None)
}

fn check_ino(dir: &Inode, d: &Dirent) -> Result<u32> {
    let ino = d.ino.get();
    if !crate::alloc::ino_valid(&dir.fs().geo, ino) {
        kernel::pr_err!(
            "directory inode {}: entry names inode {} (out of range)\n",
            dir.ino(),
            ino
        );
        return Err(crate::sys::euclean());
    }
    Ok(ino)
}

fn check_name<'d>(dir: &Inode, d: &'d Dirent) -> Result<&'d [u8]> {
    d.name().map_err(|_| {
        kernel::pr_err!(
            "directory inode {}: entry with name length {}\n",
            dir.ino(),
            d.name_len
        );
        crate::sys::euclean()
    })
}

pub(crate) fn find(dir: &Inode, name: &[u8]) -> Result<Option<Slot>> {
    let mut found = None;
    for_each(dir, |_, off, d| {
        let n = check_name(dir, d)?;
        if n == name {
            found = Some(Slot {
                off,
                ino: check_ino(dir, d)?,
            });
            return Ok(true);
        }
        Ok(false)
    })?;
    Ok(found)
}

pub(crate) fn is_empty(dir: &Inode) -> Result<bool> {
    Ok(for_each(dir, |_, _, _| Ok(true))?.is_none())
}

/// Add `name -> ino`. The name must not exist (the VFS checked, under the
/// directory lock).
pub(crate) fn add(tx: &mut Tx<'_>, dir: &Inode, name: &[u8], ino: u32, file_type: u8) -> Result {
    let fs = dir.fs();
    if name.len() > format::NAME_MAX {
        return Err(crate::sys::enametoolong());
    }
    let entry = Dirent::new(ino, name, file_type).map_err(|_| EINVAL)?;
    // Find a free slot in the existing blocks, else add a block.
    let nblocks = dir.size() / BLOCK_SIZE as u64;
    let mut target = None;
    'outer: for l in 0..nblocks {
        let b = inode::get_block(dir, l)?;
        if b == 0 {
            continue;
        }
        for s in 0..DIRENTS_PER_BLOCK {
            let off = FsInfo::block_off(b) + (s * DIRENT_SIZE) as u64;
            if fs.pmem.read_u32(off)? == 0 {
                target = Some(off);
                break 'outer;
            }
        }
    }
    let off = match target {
        Some(off) => off,
        None => {
            let (b, _) = inode::get_or_alloc_tx(tx, dir, nblocks, false)?;
            dir.set_size((nblocks + 1) * BLOCK_SIZE as u64);
            FsInfo::block_off(b)
        }
    };
    // Only the name's bytes: the rest of a free slot is left as it was.
    let used = 8 + name.len();
    tx.write(off, &entry.as_bytes()[..used])?;
    dir.touch_cmtime();
    inode::write_inode_tx(tx, dir)
}

/// Retire a slot found by [`find`].
pub(crate) fn remove(tx: &mut Tx<'_>, dir: &Inode, slot: &Slot) -> Result {
    tx.write_u32(slot.off, 0)?;
    dir.touch_cmtime();
    inode::write_inode_tx(tx, dir)
}

/// Point an existing slot at another inode (rename over an existing name).
pub(crate) fn retarget(
    tx: &mut Tx<'_>,
    dir: &Inode,
    slot: &Slot,
    ino: u32,
    file_type: u8,
) -> Result {
    let mut head = [0u8; 8];
    tx.pmem().read(slot.off, &mut head)?;
    head[..4].copy_from_slice(&ino.to_le_bytes());
    head[5] = file_type;
    tx.write(slot.off, &head)?;
    dir.touch_cmtime();
    inode::write_inode_tx(tx, dir)
}

/// readdir. Positions: 0 ".", 1 "..", 2 + slot index for entries.
pub(crate) fn readdir(dir: &Inode, ctx: &mut DirContext) -> Result {
    if ctx.pos() == 0 {
        if !ctx.emit(b".", dir.ino(), format::DT_DIR) {
            return Ok(());
        }
        ctx.set_pos(1);
    }
    if ctx.pos() == 1 {
        let parent = inode::parent(dir)?;
        if !ctx.emit(b"..", parent, format::DT_DIR) {
            return Ok(());
        }
        ctx.set_pos(2);
    }
    let start = (ctx.pos() - 2) as u64;
    let stopped = for_each(dir, |idx, _, d| {
        if idx < start {
            return Ok(false);
        }
        ctx.set_pos(idx as i64 + 2);
        let name = check_name(dir, d)?;
        let ino = check_ino(dir, d)?;
        if !ctx.emit(name, ino, d.file_type) {
            return Ok(true);
        }
        ctx.set_pos(idx as i64 + 3);
        Ok(false)
    })?;
    if stopped.is_some() {
        return Ok(());
    }
    // Past the last slot: stay at the end.
    let end = (dir.size() / BLOCK_SIZE as u64) * DIRENTS_PER_BLOCK as u64 + 2;
    if ctx.pos() < end as i64 {
        ctx.set_pos(end as i64);
    }
    Ok(())
}
