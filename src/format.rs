// SPDX-License-Identifier: GPL-2.0
//! The ferrofs on-media format, version 1.
//!
//! Defined once, in plain `core` Rust, and compiled into both the kernel module
//! and the userspace tools (mkfs, fsck) through `#[path]`. Nothing here allocates
//! or panics on input from the medium: decoding returns [`FormatError`].
//!
//! Layout of a ferrofs image (block size 4096, all integers little-endian):
//!
//! | blocks                         | content                                   |
//! |--------------------------------|-------------------------------------------|
//! | 0                              | superblock ([`Superblock`], 512 bytes)    |
//! | `journal_start..+journal_blocks` | metadata undo journal (see below)     |
//! | `bitmap_start..+bitmap_blocks` | block allocation bitmap, bit i = block i  |
//! | `itable_start..+itable_blocks` | inode table, [`INODES_PER_BLOCK`] a block |
//! | `data_start..blocks_count`     | data, directory and indirect blocks       |
//!
//! Inode numbers start at 1 ([`ROOT_INO`]); inode `n` is slot `n - 1` of the
//! table. A slot whose `mode` is 0 is free. Free block and inode counts are not
//! stored: mount derives them from the bitmap and the table, so there is no
//! counter to get out of step after a crash.
//!
//! A directory's data blocks hold [`DIRENTS_PER_BLOCK`] fixed slots
//! ([`Dirent`]); a slot with `ino == 0` is free. `.` and `..` are not stored: a
//! directory inode records its parent in `parent`.
//!
//! A file's blocks are found through 12 direct pointers, one single, one
//! double and one triple indirect block of [`PTRS_PER_BLOCK`] `u32` block
//! numbers each. Pointer 0 is a hole.

#![allow(dead_code)]

/// Bytes in a block (and in a page: ferrofs maps blocks straight into user space).
pub const BLOCK_SIZE: usize = 4096;
pub const BLOCK_SHIFT: u32 = 12;
/// `b"FERROFS\0"`.
pub const MAGIC: [u8; 8] = *b"FERROFS\0";
/// The format version mkfs writes. Version 2 gives inode `flags` a meaning
/// ([`INODE_FL_IMMUTABLE`], [`INODE_FL_APPEND`]); version 3 gives the inode
/// an extended attribute block (`xattr`, see "Extended attributes" below)
/// and has device nodes, FIFOs and sockets (`rdev`).
/// Versions 1 and 2 are the same layout with every inode's flags (in
/// version 1) and `xattr` field 0, and still mount. The module raises an older
/// superblock in the transaction that first uses what a newer version adds
/// (a flag: 2, an xattr block: 3), so a module that does not know it
/// refuses the image instead of ignoring it.
/// Version 4 has names of up to 255 bytes ([`SLOT_NAME_MAX`]); it is the
/// same layout, and older images have no continuation slots.
/// Version 5 splits the journal region into [`JOURNAL_SLOTS`] areas, one
/// transaction in flight in each (superblock `journal_slots`), and has
/// masked bitmap records ([`RECORD_MASKED`]). mkfs writes it; an older
/// image keeps one area (its `journal_slots` is 0) and is never raised to 5.
pub const VERSION: u32 = 5;
/// The first version with inode flags.
pub const VERSION_FLAGS: u32 = 2;
/// The first version with extended attribute blocks.
pub const VERSION_XATTR: u32 = 3;
/// The first version with device nodes, FIFOs and sockets (`rdev`).
pub const VERSION_SPECIAL: u32 = 3;
/// The first version with names longer than [`SLOT_NAME_MAX`] bytes.
pub const VERSION_LONG_NAMES: u32 = 4;
/// The first version with several journal areas.
pub const VERSION_SLOTS: u32 = 5;
/// Journal areas mkfs makes (version 5): `JOURNAL_BLOCKS / JOURNAL_SLOTS`
/// blocks each.
pub const JOURNAL_SLOTS: u32 = 4;
/// The most journal areas an image may have.
pub const JOURNAL_SLOTS_MAX: u32 = 16;
/// The fewest blocks one journal area may have.
pub const JOURNAL_SLOT_MIN_BLOCKS: u32 = 16;
/// The oldest version this code reads.
pub const VERSION_MIN: u32 = 1;
/// Inode flags (version 2): chattr +i and +a.
pub const INODE_FL_IMMUTABLE: u16 = 1;
pub const INODE_FL_APPEND: u16 = 2;
pub const INODE_FL_KNOWN: u16 = INODE_FL_IMMUTABLE | INODE_FL_APPEND;
pub const ROOT_INO: u32 = 1;
pub const SUPERBLOCK_SIZE: usize = 512;
pub const INODE_SIZE: usize = 256;
pub const INODES_PER_BLOCK: usize = BLOCK_SIZE / INODE_SIZE;
pub const DIRENT_SIZE: usize = 256;
pub const DIRENTS_PER_BLOCK: usize = BLOCK_SIZE / DIRENT_SIZE;
/// Longest file name (Linux's NAME_MAX).
pub const NAME_MAX: usize = 255;
/// Name bytes one slot holds. A longer name (version 4) takes two slots of
/// one block: the entry's slot with `name_len` the whole length and the
/// first [`SLOT_NAME_MAX`] bytes, and the next slot, a continuation:
/// `ino` [`DIRENT_CONT`], `name_len` the rest's length (1 to 7),
/// `file_type` 0, and the rest of the name. Fixed-size slots keep lookups
/// and crash reasoning simple; both slots change in one transaction.
pub const SLOT_NAME_MAX: usize = 248;
/// The `ino` of a continuation slot. Never an inode number: the inode
/// count is a multiple of 16, so at most `0xffff_fff0`.
pub const DIRENT_CONT: u32 = u32::MAX;
pub const NDIRECT: usize = 12;
pub const PTRS_PER_BLOCK: usize = BLOCK_SIZE / 4;
pub const JOURNAL_BLOCKS: u32 = 64;
/// The most links an inode may have. Larger on the medium is damage: the
/// VFS's link counting (inc_nlink) must never wrap. Also `s_max_links`.
pub const NLINK_MAX: u32 = 65000;
/// Smallest device mkfs accepts: room for the metadata and a few data blocks.
pub const MIN_BLOCKS: u64 = 256;
/// One inode per this many bytes of device, by default.
pub const BYTES_PER_INODE: u64 = 16 * 1024;

/// File types stored in directory slots (the values of `DT_*`).
pub const DT_UNKNOWN: u8 = 0;
pub const DT_FIFO: u8 = 1;
pub const DT_CHR: u8 = 2;
pub const DT_DIR: u8 = 4;
pub const DT_BLK: u8 = 6;
pub const DT_REG: u8 = 8;
pub const DT_LNK: u8 = 10;
pub const DT_SOCK: u8 = 12;

pub const S_IFMT: u16 = 0o170000;
pub const S_IFDIR: u16 = 0o040000;
pub const S_IFREG: u16 = 0o100000;
pub const S_IFLNK: u16 = 0o120000;
/// Version 3: special files. They have no blocks and size 0.
pub const S_IFCHR: u16 = 0o020000;
pub const S_IFBLK: u16 = 0o060000;
pub const S_IFIFO: u16 = 0o010000;
pub const S_IFSOCK: u16 = 0o140000;

/// A device node, FIFO or socket.
pub fn is_special(mode: u16) -> bool {
    matches!(mode & S_IFMT, S_IFCHR | S_IFBLK | S_IFIFO | S_IFSOCK)
}

/// Why a piece of the medium was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FormatError {
    BadMagic,
    UnknownVersion(u32),
    BadBlockSize(u32),
    BadChecksum {
        stored: u32,
        computed: u32,
    },
    /// The superblock describes more blocks than the device has.
    TooLarge {
        blocks: u64,
        device_blocks: u64,
    },
    /// Regions overlap, run past the end, or are too small for their content.
    BadGeometry(&'static str),
    BadInode(&'static str),
    BadDirent(&'static str),
    BadJournal(&'static str),
    BadXattr(&'static str),
    /// The extended attributes do not fit in their block.
    XattrNoSpace,
}

impl FormatError {
    /// A short human-readable reason, for log lines and tool messages.
    pub fn reason(&self) -> &'static str {
        match self {
            FormatError::BadMagic => "bad magic",
            FormatError::UnknownVersion(_) => "unknown format version",
            FormatError::BadBlockSize(_) => "unsupported block size",
            FormatError::BadChecksum { .. } => "bad checksum",
            FormatError::TooLarge { .. } => "filesystem larger than the device",
            FormatError::BadGeometry(why) => why,
            FormatError::BadInode(why) => why,
            FormatError::BadDirent(why) => why,
            FormatError::BadJournal(why) => why,
            FormatError::BadXattr(why) => why,
            FormatError::XattrNoSpace => "extended attributes do not fit in their block",
        }
    }
}

/// Little-endian integers stored as byte arrays: alignment 1, every bit
/// pattern valid, so on-media structs can be viewed as bytes and back.
macro_rules! le_int {
    ($name:ident, $t:ty, $n:literal) => {
        #[derive(Clone, Copy, Default, PartialEq, Eq)]
        #[repr(transparent)]
        pub struct $name([u8; $n]);
        impl $name {
            pub const fn new(v: $t) -> Self {
                Self(v.to_le_bytes())
            }
            pub const fn get(self) -> $t {
                <$t>::from_le_bytes(self.0)
            }
            pub fn set(&mut self, v: $t) {
                self.0 = v.to_le_bytes();
            }
        }
        impl core::fmt::Debug for $name {
            fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                write!(f, "{}", self.get())
            }
        }
    };
}
le_int!(Le16, u16, 2);
le_int!(Le32, u32, 4);
le_int!(Le64, u64, 8);

/// A plain-old-data on-media struct: `#[repr(C)]`, made only of byte arrays.
///
/// # Safety
/// The implementor must be `#[repr(C)]` (or transparent), have alignment 1,
/// no padding, size `SIZE`, and accept every bit pattern.
pub unsafe trait Pod: Copy + Sized {
    const SIZE: usize;
    fn from_bytes(b: &[u8]) -> Option<Self> {
        if b.len() < Self::SIZE {
            return None;
        }
        // SAFETY: `b` holds at least SIZE bytes and, by the trait's contract,
        // every bit pattern of SIZE bytes is a valid Self of alignment 1.
        Some(unsafe { core::ptr::read_unaligned(b.as_ptr().cast::<Self>()) })
    }
    fn as_bytes(&self) -> &[u8] {
        // SAFETY: Self is SIZE bytes with no padding (the trait's contract), so
        // viewing it as bytes reads only initialised memory.
        unsafe { core::slice::from_raw_parts((self as *const Self).cast::<u8>(), Self::SIZE) }
    }
}

/// CRC-32C (Castagnoli), reflected, as used by ext4 and btrfs.
pub fn crc32c(data: &[u8]) -> u32 {
    crc32c_update(!0, data) ^ !0
}

const fn crc32c_table() -> [u32; 256] {
    let mut t = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 {
                (c >> 1) ^ 0x82F6_3B78
            } else {
                c >> 1
            };
            k += 1;
        }
        t[i] = c;
        i += 1;
    }
    t
}
static CRC32C_TABLE: [u32; 256] = crc32c_table();

/// Continue a CRC-32C: `crc32c(a ++ b) == crc32c_update(crc32c_update(!0, a), b) ^ !0`.
pub fn crc32c_update(mut crc: u32, data: &[u8]) -> u32 {
    for &b in data {
        crc = CRC32C_TABLE[((crc ^ b as u32) & 0xff) as usize] ^ (crc >> 8);
    }
    crc
}

/// Block 0.
#[derive(Clone, Copy)]
#[repr(C)]
pub struct Superblock {
    pub magic: [u8; 8],
    pub version: Le32,
    pub block_size: Le32,
    pub blocks_count: Le64,
    pub inodes_count: Le32,
    pub flags: Le32,
    pub journal_start: Le64,
    pub journal_blocks: Le32,
    /// Journal areas (version 5); 0 on older images: one.
    pub journal_slots: Le32,
    pub bitmap_start: Le64,
    pub bitmap_blocks: Le32,
    pub pad1: Le32,
    pub itable_start: Le64,
    pub itable_blocks: Le32,
    pub pad2: Le32,
    pub data_start: Le64,
    pub root_ino: Le32,
    pub pad3: Le32,
    pub uuid: [u8; 16],
    pub label: [u8; 32],
    pub mkfs_time: Le64,
    pub reserved: [u8; 356],
    pub checksum: Le32,
}
const _: () = assert!(core::mem::size_of::<Superblock>() == SUPERBLOCK_SIZE);
const _: () = assert!(core::mem::align_of::<Superblock>() == 1);
// SAFETY: repr(C), only byte-array fields, size asserted above.
unsafe impl Pod for Superblock {
    const SIZE: usize = SUPERBLOCK_SIZE;
}

/// Layout chosen by mkfs for a device of `blocks` blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Geometry {
    pub blocks_count: u64,
    pub inodes_count: u32,
    pub journal_start: u64,
    pub journal_blocks: u32,
    /// Journal areas, at least 1: the region split in equal parts, each a
    /// journal of its own (see "Metadata journal").
    pub journal_slots: u32,
    pub bitmap_start: u64,
    pub bitmap_blocks: u32,
    pub itable_start: u64,
    pub itable_blocks: u32,
    pub data_start: u64,
}

impl Geometry {
    /// Byte offset (from the journal region's start) and length of journal
    /// area `k` (`k < journal_slots`).
    pub fn slot_bytes(&self, k: u32) -> (usize, usize) {
        let slots = self.journal_slots.max(1) as usize;
        let len = self.journal_blocks as usize * BLOCK_SIZE / slots;
        (k as usize * len, len)
    }
}

impl Geometry {
    /// The layout for `blocks` blocks; `inodes` overrides the default count.
    pub fn for_blocks(blocks: u64, inodes: Option<u32>) -> Result<Geometry, FormatError> {
        if blocks < MIN_BLOCKS {
            return Err(FormatError::BadGeometry("device too small"));
        }
        if blocks > u32::MAX as u64 {
            return Err(FormatError::BadGeometry(
                "device too large for 32-bit block numbers",
            ));
        }
        let default_inodes = (blocks * BLOCK_SIZE as u64 / BYTES_PER_INODE).clamp(64, 1 << 20);
        let inodes = inodes.map(u64::from).unwrap_or(default_inodes);
        let inodes = inodes.div_ceil(INODES_PER_BLOCK as u64) * INODES_PER_BLOCK as u64;
        if inodes == 0 || inodes > u32::MAX as u64 {
            return Err(FormatError::BadGeometry("inode count out of range"));
        }
        let bits_per_block = (BLOCK_SIZE * 8) as u64;
        let journal_start = 1u64;
        let bitmap_start = journal_start + JOURNAL_BLOCKS as u64;
        let bitmap_blocks = blocks.div_ceil(bits_per_block);
        let itable_start = bitmap_start + bitmap_blocks;
        let itable_blocks = inodes / INODES_PER_BLOCK as u64;
        let data_start = itable_start + itable_blocks;
        if data_start + 16 > blocks {
            return Err(FormatError::BadGeometry(
                "device too small for its metadata",
            ));
        }
        Ok(Geometry {
            blocks_count: blocks,
            inodes_count: inodes as u32,
            journal_start,
            journal_blocks: JOURNAL_BLOCKS,
            journal_slots: JOURNAL_SLOTS,
            bitmap_start,
            bitmap_blocks: bitmap_blocks as u32,
            itable_start,
            itable_blocks: itable_blocks as u32,
            data_start,
        })
    }
}

impl Superblock {
    pub fn new(geo: &Geometry, uuid: [u8; 16], label: &[u8], mkfs_time: u64) -> Superblock {
        let mut l = [0u8; 32];
        let n = label.len().min(31);
        l[..n].copy_from_slice(&label[..n]);
        let mut sb = Superblock {
            magic: MAGIC,
            version: Le32::new(VERSION),
            block_size: Le32::new(BLOCK_SIZE as u32),
            blocks_count: Le64::new(geo.blocks_count),
            inodes_count: Le32::new(geo.inodes_count),
            flags: Le32::new(0),
            journal_start: Le64::new(geo.journal_start),
            journal_blocks: Le32::new(geo.journal_blocks),
            journal_slots: Le32::new(if geo.journal_slots > 1 {
                geo.journal_slots
            } else {
                0
            }),
            bitmap_start: Le64::new(geo.bitmap_start),
            bitmap_blocks: Le32::new(geo.bitmap_blocks),
            pad1: Le32::new(0),
            itable_start: Le64::new(geo.itable_start),
            itable_blocks: Le32::new(geo.itable_blocks),
            pad2: Le32::new(0),
            data_start: Le64::new(geo.data_start),
            root_ino: Le32::new(ROOT_INO),
            pad3: Le32::new(0),
            uuid,
            label: l,
            mkfs_time: Le64::new(mkfs_time),
            reserved: [0; 356],
            checksum: Le32::new(0),
        };
        sb.update_checksum();
        sb
    }

    pub fn compute_checksum(&self) -> u32 {
        crc32c(&self.as_bytes()[..SUPERBLOCK_SIZE - 4])
    }

    pub fn update_checksum(&mut self) {
        let c = self.compute_checksum();
        self.checksum.set(c);
    }

    pub fn geometry(&self) -> Geometry {
        Geometry {
            blocks_count: self.blocks_count.get(),
            inodes_count: self.inodes_count.get(),
            journal_start: self.journal_start.get(),
            journal_blocks: self.journal_blocks.get(),
            journal_slots: self.journal_slots.get().max(1),
            bitmap_start: self.bitmap_start.get(),
            bitmap_blocks: self.bitmap_blocks.get(),
            itable_start: self.itable_start.get(),
            itable_blocks: self.itable_blocks.get(),
            data_start: self.data_start.get(),
        }
    }

    /// Check everything a mount relies on, against a device of
    /// `device_blocks` blocks. Order matters: the first failure is the reason
    /// reported, so magic comes before version before checksum.
    pub fn validate(&self, device_blocks: u64) -> Result<Geometry, FormatError> {
        if self.magic != MAGIC {
            return Err(FormatError::BadMagic);
        }
        if self.version.get() < VERSION_MIN || self.version.get() > VERSION {
            return Err(FormatError::UnknownVersion(self.version.get()));
        }
        let computed = self.compute_checksum();
        if computed != self.checksum.get() {
            return Err(FormatError::BadChecksum {
                stored: self.checksum.get(),
                computed,
            });
        }
        if self.block_size.get() != BLOCK_SIZE as u32 {
            return Err(FormatError::BadBlockSize(self.block_size.get()));
        }
        let g = self.geometry();
        if g.blocks_count > device_blocks {
            return Err(FormatError::TooLarge {
                blocks: g.blocks_count,
                device_blocks,
            });
        }
        if g.blocks_count < MIN_BLOCKS || g.blocks_count > u32::MAX as u64 {
            return Err(FormatError::BadGeometry("block count out of range"));
        }
        let bits_per_block = (BLOCK_SIZE * 8) as u64;
        let inodes = g.inodes_count as u64;
        if inodes == 0 || inodes % INODES_PER_BLOCK as u64 != 0 {
            return Err(FormatError::BadGeometry(
                "inode count not a whole number of blocks",
            ));
        }
        // Regions must follow one another in order, with no overlap. The
        // starts come from the medium: saturate rather than overflow (a panic).
        // A smaller journal cannot hold one bounded transaction (a large
        // truncate would make no progress); mkfs always makes this size.
        if g.journal_blocks < JOURNAL_BLOCKS {
            return Err(FormatError::BadGeometry("journal too small"));
        }
        let slots = self.journal_slots.get();
        if slots > 1 && self.version.get() < VERSION_SLOTS {
            return Err(FormatError::BadGeometry(
                "journal areas on an image older than version 5",
            ));
        }
        if slots > JOURNAL_SLOTS_MAX
            || g.journal_blocks % g.journal_slots != 0
            || g.journal_blocks / g.journal_slots < JOURNAL_SLOT_MIN_BLOCKS
        {
            return Err(FormatError::BadGeometry("bad number of journal areas"));
        }
        let regions_ok = g.journal_start >= 1
            && g.bitmap_start >= g.journal_start.saturating_add(g.journal_blocks as u64)
            && (g.bitmap_blocks as u64) >= g.blocks_count.div_ceil(bits_per_block)
            && g.itable_start >= g.bitmap_start.saturating_add(g.bitmap_blocks as u64)
            && g.itable_blocks as u64 * INODES_PER_BLOCK as u64 == inodes
            && g.data_start >= g.itable_start.saturating_add(g.itable_blocks as u64)
            && g.data_start < g.blocks_count;
        if !regions_ok {
            return Err(FormatError::BadGeometry(
                "metadata regions overlap or run past the end",
            ));
        }
        let root = self.root_ino.get();
        if root != ROOT_INO {
            return Err(FormatError::BadGeometry("bad root inode number"));
        }
        Ok(g)
    }

    pub fn label_str(&self) -> &[u8] {
        let n = self
            .label
            .iter()
            .position(|&c| c == 0)
            .unwrap_or(self.label.len());
        &self.label[..n]
    }
}

/// One slot of the inode table.
#[derive(Clone, Copy)]
#[repr(C)]
pub struct Inode {
    pub mode: Le16,
    pub flags: Le16,
    pub uid: Le32,
    pub gid: Le32,
    pub nlink: Le32,
    pub size: Le64,
    /// Blocks allocated to the file (data and indirect), in 4 KiB units.
    pub blocks: Le64,
    pub atime_sec: Le64,
    pub mtime_sec: Le64,
    pub ctime_sec: Le64,
    pub atime_nsec: Le32,
    pub mtime_nsec: Le32,
    pub ctime_nsec: Le32,
    pub generation: Le32,
    pub direct: [Le32; NDIRECT],
    pub indirect: Le32,
    pub dindirect: Le32,
    pub tindirect: Le32,
    /// Parent directory, for directories.
    pub parent: Le32,
    /// Block of extended attributes ([`XattrHeader`]), 0 for none
    /// (version 3; 0 in older images).
    pub xattr: Le32,
    /// Device number of a device node, in the kernel's `new_encode_dev`
    /// form (version 3; 0 for everything else).
    pub rdev: Le32,
    pub reserved: [u8; 108],
    pub checksum: Le32,
}
const _: () = assert!(core::mem::size_of::<Inode>() == INODE_SIZE);
const _: () = assert!(core::mem::align_of::<Inode>() == 1);
// SAFETY: repr(C), only byte-array fields, size asserted above.
unsafe impl Pod for Inode {
    const SIZE: usize = INODE_SIZE;
}

impl Inode {
    pub const fn zeroed() -> Inode {
        Inode {
            mode: Le16::new(0),
            flags: Le16::new(0),
            uid: Le32::new(0),
            gid: Le32::new(0),
            nlink: Le32::new(0),
            size: Le64::new(0),
            blocks: Le64::new(0),
            atime_sec: Le64::new(0),
            mtime_sec: Le64::new(0),
            ctime_sec: Le64::new(0),
            atime_nsec: Le32::new(0),
            mtime_nsec: Le32::new(0),
            ctime_nsec: Le32::new(0),
            generation: Le32::new(0),
            direct: [Le32::new(0); NDIRECT],
            indirect: Le32::new(0),
            dindirect: Le32::new(0),
            tindirect: Le32::new(0),
            parent: Le32::new(0),
            xattr: Le32::new(0),
            rdev: Le32::new(0),
            reserved: [0; 108],
            checksum: Le32::new(0),
        }
    }

    pub fn is_free(&self) -> bool {
        self.mode.get() == 0
    }

    pub fn compute_checksum(&self, ino: u32) -> u32 {
        // The inode number is mixed in, so a slot copied to the wrong place fails.
        crc32c_update(
            crc32c(&ino.to_le_bytes()),
            &self.as_bytes()[..INODE_SIZE - 4],
        )
    }

    pub fn update_checksum(&mut self, ino: u32) {
        let c = self.compute_checksum(ino);
        self.checksum.set(c);
    }

    /// Checks a used slot read from the medium. Free slots are not checked.
    pub fn validate(&self, ino: u32, blocks_count: u64) -> Result<(), FormatError> {
        if self.is_free() {
            return Ok(());
        }
        let computed = self.compute_checksum(ino);
        if computed != self.checksum.get() {
            return Err(FormatError::BadChecksum {
                stored: self.checksum.get(),
                computed,
            });
        }
        let fmt = self.mode.get() & S_IFMT;
        let special = is_special(self.mode.get());
        if fmt != S_IFDIR && fmt != S_IFREG && fmt != S_IFLNK && !special {
            return Err(FormatError::BadInode("unknown file type"));
        }
        if special {
            let mapped = self
                .direct
                .iter()
                .chain([&self.indirect, &self.dindirect, &self.tindirect])
                .any(|p| p.get() != 0);
            if mapped || self.size.get() != 0 {
                return Err(FormatError::BadInode("special file with data"));
            }
        } else if self.rdev.get() != 0 {
            return Err(FormatError::BadInode(
                "device number on a file that is not a device",
            ));
        }
        if self.flags.get() & !INODE_FL_KNOWN != 0 {
            return Err(FormatError::BadInode("unknown inode flags"));
        }
        let ptr_ok = |b: u32| (b as u64) < blocks_count;
        let all = self
            .direct
            .iter()
            .chain([
                &self.indirect,
                &self.dindirect,
                &self.tindirect,
                &self.xattr,
            ])
            .all(|p| ptr_ok(p.get()));
        if !all {
            return Err(FormatError::BadInode("block pointer past the end"));
        }
        if self.nlink.get() > NLINK_MAX {
            return Err(FormatError::BadInode("link count out of range"));
        }
        if self.blocks.get() > blocks_count {
            return Err(FormatError::BadInode(
                "block count larger than the filesystem",
            ));
        }
        Ok(())
    }
}

/// One directory slot.
#[derive(Clone, Copy)]
#[repr(C)]
pub struct Dirent {
    pub ino: Le32,
    pub name_len: u8,
    pub file_type: u8,
    pub reserved: [u8; 2],
    pub name: [u8; SLOT_NAME_MAX],
}
const _: () = assert!(core::mem::size_of::<Dirent>() == DIRENT_SIZE);
const _: () = assert!(NAME_MAX - SLOT_NAME_MAX < SLOT_NAME_MAX && NAME_MAX <= u8::MAX as usize);
const _: () = assert!(core::mem::align_of::<Dirent>() == 1);
// SAFETY: repr(C), only byte-array fields, size asserted above.
unsafe impl Pod for Dirent {
    const SIZE: usize = DIRENT_SIZE;
}

impl Dirent {
    /// The slot of a name of up to [`SLOT_NAME_MAX`] bytes.
    pub fn new(ino: u32, name: &[u8], file_type: u8) -> Result<Dirent, FormatError> {
        if name.is_empty() || name.len() > SLOT_NAME_MAX {
            return Err(FormatError::BadDirent("name length out of range"));
        }
        Ok(Self::slot(ino, name.len(), file_type, name))
    }

    fn slot(ino: u32, name_len: usize, file_type: u8, bytes: &[u8]) -> Dirent {
        let mut d = Dirent {
            ino: Le32::new(ino),
            name_len: name_len as u8,
            file_type,
            reserved: [0; 2],
            name: [0; SLOT_NAME_MAX],
        };
        let n = bytes.len().min(SLOT_NAME_MAX);
        d.name[..n].copy_from_slice(&bytes[..n]);
        d
    }

    /// The slots of an entry: one, or for a name longer than
    /// [`SLOT_NAME_MAX`] bytes (up to [`NAME_MAX`]) the entry's slot and
    /// its continuation.
    pub fn new_entry(
        ino: u32,
        name: &[u8],
        file_type: u8,
    ) -> Result<(Dirent, Option<Dirent>), FormatError> {
        if name.len() <= SLOT_NAME_MAX {
            return Ok((Self::new(ino, name, file_type)?, None));
        }
        if name.len() > NAME_MAX {
            return Err(FormatError::BadDirent("name length out of range"));
        }
        let (head, rest) = name.split_at(SLOT_NAME_MAX);
        Ok((
            Self::slot(ino, name.len(), file_type, head),
            Some(Self::slot(DIRENT_CONT, rest.len(), 0, rest)),
        ))
    }

    /// A continuation slot (the second of a long name).
    pub fn is_cont(&self) -> bool {
        self.ino.get() == DIRENT_CONT
    }

    /// Whether this entry's name goes on in the next slot.
    pub fn is_long(&self) -> bool {
        !self.is_cont() && self.name_len as usize > SLOT_NAME_MAX
    }

    /// The name of a used one-slot entry, or an error if its length is
    /// corrupt or it is long (see [`Dirent::full_name`]).
    pub fn name(&self) -> Result<&[u8], FormatError> {
        let n = self.name_len as usize;
        if self.is_cont() || n == 0 || n > SLOT_NAME_MAX {
            return Err(FormatError::BadDirent("name length out of range"));
        }
        Ok(&self.name[..n])
    }

    /// The whole name of a used entry, copied into `buf`; `next` is the
    /// slot after it in the same block (None after the block's last slot),
    /// read only for a long name, which must be followed by its
    /// continuation.
    pub fn full_name<'b>(
        &self,
        next: Option<&Dirent>,
        buf: &'b mut [u8; NAME_MAX],
    ) -> Result<&'b [u8], FormatError> {
        let n = self.name_len as usize;
        if !self.is_long() {
            let name = self.name()?;
            buf[..n].copy_from_slice(name);
            return Ok(&buf[..n]);
        }
        let Some(c) = next else {
            return Err(FormatError::BadDirent("long name in a block's last slot"));
        };
        if !c.is_cont() || c.name_len as usize != n - SLOT_NAME_MAX || c.file_type != 0 {
            return Err(FormatError::BadDirent(
                "long name without its continuation slot",
            ));
        }
        buf[..SLOT_NAME_MAX].copy_from_slice(&self.name);
        buf[SLOT_NAME_MAX..n].copy_from_slice(&c.name[..n - SLOT_NAME_MAX]);
        Ok(&buf[..n])
    }
}

/// One entry of a directory block, as [`block_entries`] finds it.
pub struct BlockEntry {
    /// The index of its (first) slot in the block.
    pub slot: usize,
    /// 1, or 2 for a long name.
    pub slots: usize,
    pub ino: u32,
    pub file_type: u8,
    name: [u8; NAME_MAX],
    len: usize,
}

impl BlockEntry {
    pub fn name(&self) -> &[u8] {
        &self.name[..self.len]
    }
}

/// The entries of directory block `blk` ([`BLOCK_SIZE`] bytes or more), in
/// slot order: `Err((slot, e))` for a slot that is not a valid entry (a bad
/// name length, a long name without its continuation, a continuation
/// without its entry). Free slots are skipped. The inode numbers are not
/// checked against the geometry.
pub fn block_entries(
    blk: &[u8],
) -> impl Iterator<Item = Result<BlockEntry, (usize, FormatError)>> + '_ {
    let slot = |s: usize| blk.get(s * DIRENT_SIZE..).and_then(Dirent::from_bytes);
    let mut s = 0;
    core::iter::from_fn(move || loop {
        if s >= DIRENTS_PER_BLOCK {
            return None;
        }
        let here = s;
        s += 1;
        let Some(d) = slot(here) else {
            return Some(Err((here, FormatError::BadDirent("short directory block"))));
        };
        if d.ino.get() == 0 {
            continue;
        }
        if d.is_cont() {
            return Some(Err((
                here,
                FormatError::BadDirent("continuation slot without its entry"),
            )));
        }
        let next = if d.is_long() { slot(s) } else { None };
        let mut e = BlockEntry {
            slot: here,
            slots: 1,
            ino: d.ino.get(),
            file_type: d.file_type,
            name: [0; NAME_MAX],
            len: 0,
        };
        match d.full_name(next.as_ref(), &mut e.name) {
            Ok(n) => e.len = n.len(),
            Err(err) => return Some(Err((here, err))),
        }
        if d.is_long() {
            e.slots = 2;
            s += 1;
        }
        return Some(Ok(e));
    })
}

/// DT_* type for an inode mode.
pub fn dt_from_mode(mode: u16) -> u8 {
    match mode & S_IFMT {
        S_IFDIR => DT_DIR,
        S_IFREG => DT_REG,
        S_IFLNK => DT_LNK,
        S_IFCHR => DT_CHR,
        S_IFBLK => DT_BLK,
        S_IFIFO => DT_FIFO,
        S_IFSOCK => DT_SOCK,
        _ => DT_UNKNOWN,
    }
}

/// Where logical block `lblk` of a file lives in its block map.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MapPath {
    Direct(usize),
    /// Index into the single indirect block.
    Ind([usize; 1]),
    Dind([usize; 2]),
    Tind([usize; 3]),
}

/// The path to logical block `lblk`, or None past the largest file.
pub fn map_path(lblk: u64) -> Option<MapPath> {
    let p = PTRS_PER_BLOCK as u64;
    let mut l = lblk;
    if l < NDIRECT as u64 {
        return Some(MapPath::Direct(l as usize));
    }
    l -= NDIRECT as u64;
    if l < p {
        return Some(MapPath::Ind([l as usize]));
    }
    l -= p;
    if l < p * p {
        return Some(MapPath::Dind([(l / p) as usize, (l % p) as usize]));
    }
    l -= p * p;
    if l < p * p * p {
        return Some(MapPath::Tind([
            (l / (p * p)) as usize,
            ((l / p) % p) as usize,
            (l % p) as usize,
        ]));
    }
    None
}

/// Largest file size the block map can address (bytes); also capped by the
/// kernel's `s_maxbytes`.
pub const MAX_FILE_BLOCKS: u64 = NDIRECT as u64
    + PTRS_PER_BLOCK as u64
    + (PTRS_PER_BLOCK * PTRS_PER_BLOCK) as u64
    + (PTRS_PER_BLOCK * PTRS_PER_BLOCK * PTRS_PER_BLOCK) as u64;

// ---------------------------------------------------------------------------
// Metadata journal: an undo log.
//
// The region `journal_start..+journal_blocks` starts with a [`JournalHeader`]
// (one cache line) followed by records packed from byte [`JOURNAL_RECORDS_OFF`],
// each a [`RecordHeader`] and `len` bytes of data padded to 8 bytes.
//
// A transaction numbered `seq` (always `seq_done + 1`) writes, before it
// changes any metadata bytes in place, a record holding their old contents,
// and makes the record durable (flush + fence) before the first in-place
// store. It commits by making its in-place stores durable (flush + fence) and
// then storing `seq_done = seq` with one atomic 8-byte store (flush + fence).
//
// So after a crash the records of an unfinished transaction are exactly the
// valid records at the start of the region with `seq == seq_done + 1`: older
// records carry a smaller `seq`, and a record torn by the crash fails its
// checksum (and nothing after it was written, because each record is fenced
// before the stores it protects). Recovery copies their data back in reverse
// order, makes that durable, then stores `seq_done = seq`. Recovery is
// idempotent: a crash during it leaves the same records valid.
//
// An all-zero header (a fresh mkfs) is an empty journal with `seq_done == 0`.
//
// Version 5 splits the region into `journal_slots` equal areas
// ([`Geometry::slot_bytes`]), each laid out as above with its own header and
// sequence numbers: one transaction may be in flight in each. Transactions
// in flight at once never change the same bytes (the module holds each
// inode it changes, directories are held by the VFS, and what a
// transaction frees no other may take until it commits), with one exception: bitmap
// words, which two transactions may each change a bit of. A bitmap change
// is logged as a masked record ([`RECORD_MASKED`] set in `len`): 16 bytes
// of data, the mask of the bits it changes and their old values, and
// recovery puts back only those bits of the 8-byte word at `target`. So
// the unfinished transactions of all areas roll back independently, in any
// order.

/// The largest `seq_done` a valid journal holds.
pub const JOURNAL_SEQ_MAX: u64 = 1 << 62;

/// `b"FERROJNL"`.
pub const JOURNAL_MAGIC: [u8; 8] = *b"FERROJNL";
/// Byte offset of the first record inside the journal region.
pub const JOURNAL_RECORDS_OFF: usize = 64;
/// Largest data length of one record: a block.
pub const RECORD_MAX_DATA: usize = BLOCK_SIZE;
/// Byte offset of `seq_done` inside the header (8-byte aligned: atomic store).
pub const JOURNAL_SEQ_DONE_OFF: usize = 8;
/// Set in a record's `len`: a masked record (version 5). Its data is the
/// mask (8 bytes) and the old values of those bits (8 bytes) of the aligned
/// 8-byte word at `target`.
pub const RECORD_MASKED: u32 = 1 << 31;
/// Data bytes of a masked record.
pub const MASKED_DATA: usize = 16;

/// The first 64 bytes of the journal region.
#[derive(Clone, Copy)]
#[repr(C)]
pub struct JournalHeader {
    pub magic: [u8; 8],
    /// The last transaction that finished (committed or rolled back).
    pub seq_done: Le64,
    pub reserved: [u8; 48],
}
const _: () = assert!(core::mem::size_of::<JournalHeader>() == JOURNAL_RECORDS_OFF);
// SAFETY: repr(C), only byte-array fields, size asserted above.
unsafe impl Pod for JournalHeader {
    const SIZE: usize = JOURNAL_RECORDS_OFF;
}

impl JournalHeader {
    pub const fn new(seq_done: u64) -> JournalHeader {
        JournalHeader {
            magic: JOURNAL_MAGIC,
            seq_done: Le64::new(seq_done),
            reserved: [0; 48],
        }
    }
}

/// Precedes each record's data.
#[derive(Clone, Copy)]
#[repr(C)]
pub struct RecordHeader {
    /// The transaction that wrote the record.
    pub seq: Le64,
    /// Device byte offset of the bytes the data restores.
    pub target: Le64,
    pub len: Le32,
    /// [`record_check`] of `seq`, `target`, `len` and the data.
    pub crc: Le32,
}
pub const RECORD_HEADER_SIZE: usize = 24;
const _: () = assert!(core::mem::size_of::<RecordHeader>() == RECORD_HEADER_SIZE);
// SAFETY: repr(C), only byte-array fields, size asserted above.
unsafe impl Pod for RecordHeader {
    const SIZE: usize = RECORD_HEADER_SIZE;
}

impl RecordHeader {
    pub fn new(seq: u64, target: u64, data: &[u8]) -> RecordHeader {
        let mut h = RecordHeader {
            seq: Le64::new(seq),
            target: Le64::new(target),
            len: Le32::new(data.len() as u32),
            crc: Le32::new(0),
        };
        h.crc.set(h.compute_crc(data));
        h
    }

    pub fn compute_crc(&self, data: &[u8]) -> u32 {
        let h = fnv1a64_update(FNV1A64_INIT, &self.as_bytes()[..RECORD_HEADER_SIZE - 4]);
        record_check(fnv1a64_update(h, data))
    }
}

/// The record check is FNV-1a (64-bit, folded to 32), not CRC-32C: a CRC
/// cannot tell two versions of an inode apart, because an inode ends with
/// its own CRC-32C, and a CRC over a message followed by its CRC is the
/// same whatever the message (CRCs are linear). A record torn between two
/// versions of one inode would then pass. FNV-1a's multiplications mod 2^64
/// are not linear over GF(2).
pub const FNV1A64_INIT: u64 = 0xcbf2_9ce4_8422_2325;

pub fn fnv1a64_update(mut h: u64, data: &[u8]) -> u64 {
    for &b in data {
        h ^= b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// The 32-bit record check of a finished FNV-1a state.
pub fn record_check(h: u64) -> u32 {
    (h ^ (h >> 32)) as u32
}

/// Bytes a record with `len` bytes of data takes in the region.
pub const fn record_size(len: usize) -> usize {
    RECORD_HEADER_SIZE + len.next_multiple_of(8)
}

/// One valid record of the unfinished transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record<'a> {
    /// Byte offset of the record inside the region.
    pub pos: usize,
    pub target: u64,
    pub data: &'a [u8],
    /// A masked record: `data` is the mask and the old bits of the word at
    /// `target` ([`RECORD_MASKED`]).
    pub masked: bool,
}

/// The mask and old bits of a masked record's data.
pub fn masked_parts(data: &[u8]) -> (u64, u64) {
    let mut m = [0u8; 8];
    let mut o = [0u8; 8];
    if data.len() == MASKED_DATA {
        m.copy_from_slice(&data[..8]);
        o.copy_from_slice(&data[8..]);
    }
    (u64::from_le_bytes(m), u64::from_le_bytes(o))
}

/// The 8-byte word `word` with a masked record (its `data`) undone: the
/// record's bits put back, every other bit as it is. Recovery in the module
/// and in the tools both use this.
pub fn masked_undo(word: u64, data: &[u8]) -> u64 {
    let (m, old) = masked_parts(data);
    (word & !m) | (old & m)
}

/// A masked record's data: `mask` and the bits of `old` it selects.
pub fn masked_data(mask: u64, old: u64) -> [u8; MASKED_DATA] {
    let mut d = [0u8; MASKED_DATA];
    d[..8].copy_from_slice(&mask.to_le_bytes());
    d[8..].copy_from_slice(&(old & mask).to_le_bytes());
    d
}

/// The journal region as found on the medium.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JournalState {
    /// The header magic was zero: a journal never used since mkfs.
    pub fresh: bool,
    pub seq_done: u64,
    /// Records of the unfinished transaction `seq_done + 1` (0: clean).
    pub pending: usize,
    /// Bytes those records span, from the region start.
    pub end: usize,
}

impl JournalState {
    /// Read the header and count the pending records of `region` (the whole
    /// journal region) for a filesystem of geometry `g`.
    pub fn parse(region: &[u8], g: &Geometry) -> Result<JournalState, FormatError> {
        let h = JournalHeader::from_bytes(region)
            .ok_or(FormatError::BadJournal("journal region too small"))?;
        let fresh = h.magic == [0; 8];
        if fresh {
            if region[..JOURNAL_RECORDS_OFF].iter().any(|&b| b != 0) {
                return Err(FormatError::BadJournal("journal header is corrupt"));
            }
        } else if h.magic != JOURNAL_MAGIC {
            return Err(FormatError::BadJournal("bad journal magic"));
        }
        let seq_done = h.seq_done.get();
        // 2^62 transactions is centuries at any rate; a larger number is
        // damage, and would overflow as transactions count on.
        if seq_done > JOURNAL_SEQ_MAX {
            return Err(FormatError::BadJournal(
                "journal sequence number out of range",
            ));
        }
        let mut pending = 0;
        let mut end = JOURNAL_RECORDS_OFF;
        for r in Records::new(region, seq_done, g) {
            let r = r?;
            pending += 1;
            end = r.pos + record_size(r.data.len());
        }
        Ok(JournalState {
            fresh,
            seq_done,
            pending,
            end,
        })
    }
}

/// Walks the valid records of transaction `seq_done + 1` from the start of
/// the region, stopping at the first that is not one. A valid record whose
/// target is not metadata of this filesystem is an error (damage, not a
/// torn write: its checksum matched).
pub struct Records<'a> {
    region: &'a [u8],
    seq: u64,
    pos: usize,
    lo: u64,
    hi: u64,
    done: bool,
}

impl<'a> Records<'a> {
    pub fn new(region: &'a [u8], seq_done: u64, g: &Geometry) -> Records<'a> {
        Records {
            region,
            seq: seq_done.wrapping_add(1),
            pos: JOURNAL_RECORDS_OFF,
            // Metadata lives from the bitmap to the end of the filesystem.
            lo: g.bitmap_start.saturating_mul(BLOCK_SIZE as u64),
            hi: g.blocks_count.saturating_mul(BLOCK_SIZE as u64),
            done: false,
        }
    }
}

impl<'a> Iterator for Records<'a> {
    type Item = Result<Record<'a>, FormatError>;
    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let pos = self.pos;
        let h = self
            .region
            .get(pos..)
            .and_then(RecordHeader::from_bytes)
            .filter(|h| h.seq.get() == self.seq);
        let raw_len = h.map(|h| h.len.get()).unwrap_or(0);
        let masked = raw_len & RECORD_MASKED != 0;
        let len = (raw_len & !RECORD_MASKED) as usize;
        let data_at = pos + RECORD_HEADER_SIZE;
        let data = self.region.get(data_at..data_at.saturating_add(len));
        let (Some(h), Some(data)) = (h, data) else {
            self.done = true;
            return None;
        };
        if len == 0 || len > RECORD_MAX_DATA || h.compute_crc(data) != h.crc.get() {
            self.done = true;
            return None;
        }
        let target = h.target.get();
        let span = if masked { 8 } else { len as u64 };
        let in_range =
            target >= self.lo && target.checked_add(span).is_some_and(|end| end <= self.hi);
        if masked && (len != MASKED_DATA || target % 8 != 0) {
            self.done = true;
            return Some(Err(FormatError::BadJournal(
                "malformed masked journal record",
            )));
        }
        if !in_range {
            self.done = true;
            return Some(Err(FormatError::BadJournal(
                "journal record outside the metadata area",
            )));
        }
        self.pos = pos + record_size(len);
        Some(Ok(Record {
            pos,
            target,
            data,
            masked,
        }))
    }
}

// ---------------------------------------------------------------------------
// Extended attributes (version 3)
//
// An inode's extended attributes live in one block of their own, pointed to
// by the inode's `xattr` field and counted in its `blocks`. The block starts
// with an [`XattrHeader`]; `used` bytes of entries follow, packed, each
//
//   index: u8, name_len: u8, value_len: Le16, name[name_len], value[value_len]
//
// `index` is the namespace ([`XATTR_USER`] ... [`XATTR_ACL_DEFAULT`]) and
// `name` the rest of the name after its prefix (empty for the two ACLs). No
// two entries have the same index and name. The header's check is FNV-1a
// over its first 16 bytes and the `used` bytes of entries; its `ino` names
// the owner, so a block that two inodes point to is caught.
//
// A block is never changed in place: a change writes a whole new block, then
// one transaction points the inode at it and frees the old one. A block
// with no entries is never kept (the inode's `xattr` goes back to 0).

pub const XATTR_MAGIC: [u8; 4] = *b"FRXA";
pub const XATTR_HEADER_SIZE: usize = 24;
pub const XATTR_ENTRY_HEADER: usize = 4;
/// Bytes for entries in a block.
pub const XATTR_SPACE: usize = BLOCK_SIZE - XATTR_HEADER_SIZE;
/// Namespaces: `user.`, `trusted.`, `security.`, and the POSIX ACLs
/// `system.posix_acl_access` and `system.posix_acl_default`.
pub const XATTR_USER: u8 = 1;
pub const XATTR_TRUSTED: u8 = 2;
pub const XATTR_SECURITY: u8 = 3;
pub const XATTR_ACL_ACCESS: u8 = 4;
pub const XATTR_ACL_DEFAULT: u8 = 5;
/// Longest name after the prefix (the VFS allows 255 in all).
pub const XATTR_NAME_MAX: usize = 255;

#[derive(Clone, Copy)]
#[repr(C)]
pub struct XattrHeader {
    pub magic: [u8; 4],
    /// The inode that owns the block.
    pub ino: Le32,
    pub count: Le16,
    /// Bytes of entries after the header.
    pub used: Le16,
    pub reserved: [u8; 4],
    pub check: Le64,
}
const _: () = assert!(core::mem::size_of::<XattrHeader>() == XATTR_HEADER_SIZE);
// SAFETY: repr(C), only byte-array fields, size asserted above.
unsafe impl Pod for XattrHeader {
    const SIZE: usize = XATTR_HEADER_SIZE;
}

/// One entry of an xattr block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct XattrEntry<'a> {
    pub index: u8,
    pub name: &'a [u8],
    pub value: &'a [u8],
}

impl XattrEntry<'_> {
    /// Bytes the entry takes in a block.
    pub fn size(&self) -> usize {
        XATTR_ENTRY_HEADER + self.name.len() + self.value.len()
    }
}

/// The check of an xattr block: header bytes 0..16, then the entries.
pub fn xattr_check(block: &[u8], used: usize) -> u64 {
    let h = fnv1a64_update(FNV1A64_INIT, &block[..16]);
    fnv1a64_update(h, &block[XATTR_HEADER_SIZE..XATTR_HEADER_SIZE + used])
}

fn xattr_index_ok(index: u8, name_len: usize) -> bool {
    match index {
        XATTR_USER | XATTR_TRUSTED | XATTR_SECURITY => name_len > 0,
        XATTR_ACL_ACCESS | XATTR_ACL_DEFAULT => name_len == 0,
        _ => false,
    }
}

/// The entries of a checked xattr block.
#[derive(Clone)]
pub struct XattrIter<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for XattrIter<'a> {
    type Item = XattrEntry<'a>;
    fn next(&mut self) -> Option<XattrEntry<'a>> {
        // The block was checked by `xattr_entries`: every entry is whole.
        if self.rest.len() < XATTR_ENTRY_HEADER {
            return None;
        }
        let index = self.rest[0];
        let nlen = self.rest[1] as usize;
        let vlen = u16::from_le_bytes([self.rest[2], self.rest[3]]) as usize;
        let end = XATTR_ENTRY_HEADER + nlen + vlen;
        if end > self.rest.len() {
            self.rest = &[];
            return None;
        }
        let e = XattrEntry {
            index,
            name: &self.rest[XATTR_ENTRY_HEADER..XATTR_ENTRY_HEADER + nlen],
            value: &self.rest[XATTR_ENTRY_HEADER + nlen..end],
        };
        self.rest = &self.rest[end..];
        Some(e)
    }
}

/// Checks xattr block `block` (a whole block) of inode `ino` and returns its
/// entries: magic, owner, check, and every entry within `used`, of a known
/// namespace, with `count` entries in all. Duplicate names are not looked
/// for here (fsck does).
pub fn xattr_entries(block: &[u8], ino: u32) -> Result<XattrIter<'_>, FormatError> {
    if block.len() != BLOCK_SIZE {
        return Err(FormatError::BadXattr("not a whole block"));
    }
    let hdr = XattrHeader::from_bytes(block).ok_or(FormatError::BadXattr("not a whole block"))?;
    if hdr.magic != XATTR_MAGIC {
        return Err(FormatError::BadXattr("bad magic"));
    }
    if hdr.ino.get() != ino {
        return Err(FormatError::BadXattr("block of another inode"));
    }
    let used = hdr.used.get() as usize;
    if used > XATTR_SPACE {
        return Err(FormatError::BadXattr("entries past the end of the block"));
    }
    if xattr_check(block, used) != hdr.check.get() {
        return Err(FormatError::BadXattr("bad check"));
    }
    let area = &block[XATTR_HEADER_SIZE..XATTR_HEADER_SIZE + used];
    let mut off = 0usize;
    let mut n = 0u32;
    while off < used {
        if used - off < XATTR_ENTRY_HEADER {
            return Err(FormatError::BadXattr("torn entry"));
        }
        let nlen = area[off + 1] as usize;
        let vlen = u16::from_le_bytes([area[off + 2], area[off + 3]]) as usize;
        if !xattr_index_ok(area[off], nlen) {
            return Err(FormatError::BadXattr("unknown namespace or bad name"));
        }
        let size = XATTR_ENTRY_HEADER + nlen + vlen;
        if size > used - off {
            return Err(FormatError::BadXattr("entry past the end"));
        }
        off += size;
        n += 1;
    }
    if n != hdr.count.get() as u32 {
        return Err(FormatError::BadXattr("entry count does not match"));
    }
    Ok(XattrIter { rest: area })
}

/// Writes a whole xattr block for inode `ino` holding `entries` into `out`.
/// Fails (leaving `out` partly written) when they do not fit or one is not
/// valid.
pub fn xattr_build<'a>(
    out: &mut [u8],
    ino: u32,
    entries: impl Iterator<Item = XattrEntry<'a>>,
) -> Result<(), FormatError> {
    if out.len() != BLOCK_SIZE {
        return Err(FormatError::BadXattr("not a whole block"));
    }
    out.fill(0);
    let mut off = XATTR_HEADER_SIZE;
    let mut count = 0u16;
    for e in entries {
        if !xattr_index_ok(e.index, e.name.len()) || e.name.len() > XATTR_NAME_MAX {
            return Err(FormatError::BadXattr("unknown namespace or bad name"));
        }
        let vlen = u16::try_from(e.value.len()).map_err(|_| FormatError::XattrNoSpace)?;
        if e.size() > BLOCK_SIZE - off {
            return Err(FormatError::XattrNoSpace);
        }
        out[off] = e.index;
        out[off + 1] = e.name.len() as u8;
        out[off + 2..off + 4].copy_from_slice(&vlen.to_le_bytes());
        let n = off + XATTR_ENTRY_HEADER;
        out[n..n + e.name.len()].copy_from_slice(e.name);
        out[n + e.name.len()..n + e.name.len() + e.value.len()].copy_from_slice(e.value);
        off += e.size();
        count = count.checked_add(1).ok_or(FormatError::XattrNoSpace)?;
    }
    let used = off - XATTR_HEADER_SIZE;
    let mut hdr = XattrHeader {
        magic: XATTR_MAGIC,
        ino: Le32::new(ino),
        count: Le16::new(count),
        used: Le16::new(used as u16),
        reserved: [0; 4],
        check: Le64::new(0),
    };
    out[..XATTR_HEADER_SIZE].copy_from_slice(hdr.as_bytes());
    hdr.check.set(xattr_check(out, used));
    out[..XATTR_HEADER_SIZE].copy_from_slice(hdr.as_bytes());
    Ok(())
}
