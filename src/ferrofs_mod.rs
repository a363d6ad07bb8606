// SPDX-License-Identifier: GPL-2.0
//! ferrofs: a filesystem for persistent memory, DAX only.
//!
//! Supports: `mount -o dax` of a DAX-capable pmem device formatted by
//! `mkfs.ferrofs`; files, directories, hard and symbolic links, rename,
//! truncate, fallocate (allocate, keep size, punch hole); read/write straight
//! to pmem; shared mappings of pmem pages with dirty tracking, so that
//! fsync/fdatasync/msync flush exactly the pages stored to; private mappings
//! with copy on write; per-mount counters in `/sys/fs/ferrofs/<device>/`.
//!
//! Layout: `sys/` is the only code that touches raw bindings; the other
//! modules are the filesystem, one concern each.

use kernel::prelude::*;

mod alloc;
mod dax;
mod dir;
mod file;
// Shared with the userspace tools, where its items are public.
#[allow(unreachable_pub)]
#[path = "format.rs"]
mod format;
mod inode;
mod journal;
mod namei;
mod super_;
mod sys;
mod xattr;

module! {
    type: FerroFs,
    name: "ferrofs",
    author: "ferrofs developers",
    description: "ferrofs: a DAX filesystem for persistent memory",
    license: "GPL",
}

struct FerroFs {
    _registration: sys::vfs::Registration,
}

impl kernel::Module for FerroFs {
    fn init(module: &'static ThisModule) -> Result<Self> {
        let registration = sys::vfs::Registration::new(module)?;
        pr_info!("loaded\n");
        Ok(FerroFs {
            _registration: registration,
        })
    }
}

impl Drop for FerroFs {
    fn drop(&mut self) {
        pr_info!("unloaded\n");
    }
}
