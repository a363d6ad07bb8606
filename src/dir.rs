// SPDX-License-Identifier: GPL-2.0
//! Directory blocks: fixed 256-byte slots, two for a name longer than 248
//! bytes (see `format.rs`).
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
    /// 1, or 2 for a long name (its continuation is the next slot).
    slots: u8,
    pub(crate) ino: u32,
}

/// A used entry, as [`for_each`] hands it over: `name` checked.
struct Entry<'n> {
    /// Its index among the directory's slots (readdir positions).
    idx: u64,
    off: u64,
    slots: u8,
    ino: u32,
    file_type: u8,
    name: &'n [u8],
}

/// Visit every entry; `f` returns true to stop (then: the entry's offset).
/// A slot that is not a valid entry (a corrupt name length, a long name
/// without its continuation, a stray continuation) fails with EUCLEAN.
fn for_each(dir: &Inode, mut f: impl FnMut(&Entry<'_>) -> Result<bool>) -> Result<Option<u64>> {
    let fs = dir.fs();
    let nblocks = dir.size() / BLOCK_SIZE as u64;
    let mut buf = [0u8; format::NAME_MAX];
    for l in 0..nblocks {
        let b = inode::get_block(dir, l)?;
        if b == 0 {
            continue;
        }
        let base = FsInfo::block_off(b);
        let mut s = 0;
        while s < DIRENTS_PER_BLOCK {
            let off = base + (s * DIRENT_SIZE) as u64;
            let idx = l * DIRENTS_PER_BLOCK as u64 + s as u64;
            s += 1;
            let d: Dirent = fs.pmem.read_pod(off)?;
            if d.ino.get() == 0 {
                continue;
            }
            let next: Option<Dirent> = if d.is_long() && s < DIRENTS_PER_BLOCK {
                Some(fs.pmem.read_pod(base + (s * DIRENT_SIZE) as u64)?)
            } else {
                None
            };
            let name = d.full_name(next.as_ref(), &mut buf).map_err(|e| {
                kernel::pr_err!(
                    "directory inode {}: slot {}: {} (name length {})\n",
                    dir.ino(),
                    idx,
                    e.reason(),
                    d.name_len
                );
                crate::sys::euclean()
            })?;
            let slots = if d.is_long() {
                s += 1;
                2
            } else {
                1
            };
            let e = Entry {
                idx,
                off,
                slots,
                ino: check_ino(dir, d.ino.get())?,
                file_type: d.file_type,
                name,
            };
            if f(&e)? {
                return Ok(Some(off));
            }
        }
    }
    Ok(None)
}

fn check_ino(dir: &Inode, ino: u32) -> Result<u32> {
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

pub(crate) fn find(dir: &Inode, name: &[u8]) -> Result<Option<Slot>> {
    let mut found = None;
    for_each(dir, |e| {
        if e.name == name {
            found = Some(Slot {
                off: e.off,
                slots: e.slots,
                ino: e.ino,
            });
            return Ok(true);
        }
        Ok(false)
    })?;
    Ok(found)
}

pub(crate) fn is_empty(dir: &Inode) -> Result<bool> {
    Ok(for_each(dir, |_| Ok(true))?.is_none())
}

/// Add `name -> ino`. The name must not exist (the VFS checked, under the
/// directory lock). A name longer than a slot holds takes two slots of one
/// block, written in this transaction, and raises the image to version 4.
pub(crate) fn add(tx: &mut Tx<'_>, dir: &Inode, name: &[u8], ino: u32, file_type: u8) -> Result {
    let fs = dir.fs();
    if name.len() > format::NAME_MAX {
        return Err(crate::sys::enametoolong());
    }
    let (entry, cont) = Dirent::new_entry(ino, name, file_type).map_err(|_| EINVAL)?;
    let need = if cont.is_some() { 2 } else { 1 };
    // Find `need` free slots in a row in an existing block, else add a block.
    let nblocks = dir.size() / BLOCK_SIZE as u64;
    let mut target = None;
    'outer: for l in 0..nblocks {
        let b = inode::get_block(dir, l)?;
        if b == 0 {
            continue;
        }
        let mut run = 0;
        for s in 0..DIRENTS_PER_BLOCK {
            let off = FsInfo::block_off(b) + (s * DIRENT_SIZE) as u64;
            if fs.pmem.read_u32(off)? != 0 {
                run = 0;
                continue;
            }
            run += 1;
            if run == need {
                target = Some(off - ((need - 1) * DIRENT_SIZE) as u64);
                break 'outer;
            }
        }
    }
    if cont.is_some() {
        fs.raise_version_on_commit(tx, format::VERSION_LONG_NAMES)?;
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
    let used = 8 + core::cmp::min(name.len(), format::SLOT_NAME_MAX);
    tx.write(off, &entry.as_bytes()[..used])?;
    if let Some(c) = cont {
        let used = 8 + (name.len() - format::SLOT_NAME_MAX);
        tx.write(off + DIRENT_SIZE as u64, &c.as_bytes()[..used])?;
    }
    dir.touch_cmtime();
    inode::write_inode_tx(tx, dir)
}

/// Retire a slot found by [`find`].
pub(crate) fn remove(tx: &mut Tx<'_>, dir: &Inode, slot: &Slot) -> Result {
    tx.write_u32(slot.off, 0)?;
    if slot.slots == 2 {
        tx.write_u32(slot.off + DIRENT_SIZE as u64, 0)?;
    }
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
    let stopped = for_each(dir, |e| {
        if e.idx < start {
            return Ok(false);
        }
        ctx.set_pos(e.idx as i64 + 2);
        if !ctx.emit(e.name, e.ino, e.file_type) {
            return Ok(true);
        }
        ctx.set_pos(e.idx as i64 + 3);
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
