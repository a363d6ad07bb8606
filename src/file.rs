// SPDX-License-Identifier: GPL-2.0
//! read, write and fallocate: data moves straight between user memory and
//! pmem, no page cache. Writes use non-temporal (cache-flushing) copies, so a
//! write is durable once the fence at its fsync/fdatasync (or O_DSYNC) runs.

use crate::format::{BLOCK_SHIFT, BLOCK_SIZE};
use crate::inode;
use crate::super_::FsInfo;
use crate::sys::vfs::{Inode, IovIter, Kiocb, FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE};
use kernel::error::{code::*, Result};

const BS: u64 = BLOCK_SIZE as u64;

pub(crate) fn read(i: &Inode, k: &mut Kiocb, to: &mut IovIter) -> Result<usize> {
    let fs = i.fs();
    // Shared i_rwsem: a racing truncate cannot free (and reuse) a block
    // while we copy from it.
    let _g = i.rwsem().read();
    let size = i.size();
    let mut pos = k.pos();
    let mut done = 0usize;
    while to.count() > 0 && pos < size {
        let inb = pos % BS;
        let n = core::cmp::min(core::cmp::min(BS - inb, size - pos), to.count() as u64) as usize;
        let b = inode::get_block(i, pos >> BLOCK_SHIFT)?;
        let got = if b == 0 {
            to.zero(n)
        } else {
            fs.pmem.copy_to_iter(FsInfo::block_off(b) + inb, n, to)?
        };
        pos += got as u64;
        done += got;
        if got < n {
            if done == 0 {
                return Err(EFAULT);
            }
            break;
        }
    }
    k.set_pos(pos);
    Ok(done)
}

pub(crate) fn write(i: &Inode, k: &mut Kiocb, from: &mut IovIter) -> Result<usize> {
    let fs = i.fs();
    let _g = i.rwsem().write();
    let count = k.write_checks(from)?;
    if count == 0 {
        return Ok(0);
    }
    k.write_prepare()?;
    let mut pos = k.pos();
    if pos > i.size() {
        inode::zero_tail(i, i.size())?;
    }
    let end = pos + count as u64;
    let mut done = 0usize;
    let mut err = None;
    while pos < end {
        let inb = pos % BS;
        let n = core::cmp::min(BS - inb, end - pos) as usize;
        let b = match inode::get_or_alloc_block(i, pos >> BLOCK_SHIFT) {
            Ok((b, _)) => b,
            Err(e) => {
                err = Some(e);
                break;
            }
        };
        let got = fs
            .pmem
            .copy_from_iter_flushcache(FsInfo::block_off(b) + inb, n, from)?;
        pos += got as u64;
        done += got;
        if got < n {
            if got == 0 && done == 0 {
                err = Some(EFAULT);
            }
            break;
        }
    }
    if pos > i.size() {
        i.set_size(pos);
    }
    inode::write_inode(i)?;
    k.set_pos(pos);
    match err {
        Some(e) if done == 0 => Err(e),
        _ => Ok(done),
    }
}

pub(crate) fn fallocate(i: &Inode, mode: i32, off: u64, len: u64) -> Result {
    let _g = i.rwsem().write();
    let end = off.checked_add(len).ok_or(EFBIG)?;
    match mode {
        0 | FALLOC_FL_KEEP_SIZE => {
            for l in (off >> BLOCK_SHIFT)..=((end - 1) >> BLOCK_SHIFT) {
                inode::get_or_alloc_block(i, l)?;
            }
            if mode == 0 && end > i.size() {
                inode::zero_tail(i, i.size())?;
                i.set_size(end);
            }
            i.touch_ctime();
            inode::write_inode(i)
        }
        m if m == FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE => inode::punch_hole(i, off, len),
        _ => Err(crate::sys::eopnotsupp()),
    }
}
