//! The mutator: one field of a healthy image changed to a hostile value,
//! with every checksum recomputed by the format's own functions, so that
//! the kernel gets past its checksum checks and has to cope with the value.
//!
//! A [`Mutation`] is a list of byte patches and checksum fix-ups: it says
//! what it changes ("inode 12 (/big) blocks: 1103 -> 18446744073709551615")
//! and is applied to a copy of the base. It depends only on the base and
//! the round's generator ([`Rng::for_round`]), so a round is reproduced from
//! the seed and its number.
//!
//! The journal kinds first craft a valid unfinished transaction on the base
//! (as a crash inside an unlink would leave it: the entry cleared, the
//! inode's link count dropped, a bitmap bit cleared, each with an undo
//! record), then change one thing of it.

use std::fmt::Write as _;
use std::mem::offset_of;

use ferrofs_format::{
    Inode, JournalHeader, Pod, RecordHeader, Superblock, DT_BLK, DT_CHR, DT_DIR, DT_FIFO, DT_LNK,
    DT_REG, DT_SOCK, DT_UNKNOWN, INODE_SIZE, JOURNAL_MAGIC, JOURNAL_RECORDS_OFF,
    JOURNAL_SEQ_DONE_OFF, MAX_FILE_BLOCKS, MIN_BLOCKS, RECORD_HEADER_SIZE, RECORD_MAX_DATA,
    SLOT_NAME_MAX, S_IFDIR, S_IFLNK, S_IFMT, S_IFREG,
};

use crate::model::{DirentInfo, FileKind, InodeInfo, Model, PtrSlot, BS};
use crate::rng::Rng;

/// What a round changes. Each kind aims at one kind of field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// blocks_count, inodes_count, root_ino.
    SbCount,
    /// Starts and lengths of the journal, bitmap, inode table; data_start.
    SbRegion,
    /// magic, version, block_size, flags.
    SbMisc,
    InodeMode,
    InodeSize,
    InodeBlocks,
    InodeNlink,
    /// direct, indirect, dindirect, tindirect pointers.
    InodePtr,
    /// A directory's parent.
    InodeParent,
    /// uid, gid, times, nanoseconds, flags, generation.
    InodeAttr,
    /// A pointer inside an indirect block.
    IndirectPtr,
    DirentIno,
    DirentNameLen,
    DirentName,
    DirentType,
    SymlinkSize,
    /// A symlink's target block (direct[0]).
    SymlinkBlock,
    /// The target bytes (no checksum covers them).
    SymlinkData,
    /// A word of the allocation bitmap.
    Bitmap,
    /// A valid unfinished transaction, nothing hostile: mount rolls it back.
    JournalValid,
    /// The journal header's magic and reserved bytes.
    JournalHeader,
    /// seq_done and the records' seq.
    JournalSeq,
    /// A pending record's target.
    JournalTarget,
    /// A pending record's length.
    JournalLen,
    /// A pending record's data: what rollback writes back.
    JournalData,
    /// Pending records filling the region to its end.
    JournalFill,
}

pub const KINDS: &[Kind] = &[
    Kind::SbCount,
    Kind::SbRegion,
    Kind::SbMisc,
    Kind::InodeMode,
    Kind::InodeSize,
    Kind::InodeBlocks,
    Kind::InodeNlink,
    Kind::InodePtr,
    Kind::InodeParent,
    Kind::InodeAttr,
    Kind::IndirectPtr,
    Kind::DirentIno,
    Kind::DirentNameLen,
    Kind::DirentName,
    Kind::DirentType,
    Kind::SymlinkSize,
    Kind::SymlinkBlock,
    Kind::SymlinkData,
    Kind::Bitmap,
    Kind::JournalValid,
    Kind::JournalHeader,
    Kind::JournalSeq,
    Kind::JournalTarget,
    Kind::JournalLen,
    Kind::JournalData,
    Kind::JournalFill,
];

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::SbCount => "sb-count",
            Kind::SbRegion => "sb-region",
            Kind::SbMisc => "sb-misc",
            Kind::InodeMode => "inode-mode",
            Kind::InodeSize => "inode-size",
            Kind::InodeBlocks => "inode-blocks",
            Kind::InodeNlink => "inode-nlink",
            Kind::InodePtr => "inode-ptr",
            Kind::InodeParent => "inode-parent",
            Kind::InodeAttr => "inode-attr",
            Kind::IndirectPtr => "indirect-ptr",
            Kind::DirentIno => "dirent-ino",
            Kind::DirentNameLen => "dirent-name-len",
            Kind::DirentName => "dirent-name",
            Kind::DirentType => "dirent-type",
            Kind::SymlinkSize => "symlink-size",
            Kind::SymlinkBlock => "symlink-block",
            Kind::SymlinkData => "symlink-data",
            Kind::Bitmap => "bitmap",
            Kind::JournalValid => "journal-valid",
            Kind::JournalHeader => "journal-header",
            Kind::JournalSeq => "journal-seq",
            Kind::JournalTarget => "journal-target",
            Kind::JournalLen => "journal-len",
            Kind::JournalData => "journal-data",
            Kind::JournalFill => "journal-fill",
        }
    }

    pub fn parse(s: &str) -> Option<Kind> {
        KINDS.iter().copied().find(|k| k.name() == s)
    }
}

/// A checksum to recompute after the patches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fix {
    Superblock,
    /// The inode slot at byte `off`, inode number `ino`.
    Inode {
        ino: u32,
        off: usize,
    },
    /// The journal record whose header is at byte `off` (its data must end
    /// before `region_end`; otherwise the record is left torn).
    Record {
        off: usize,
        region_end: usize,
    },
}

/// One mutation of the base.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mutation {
    pub kind: Kind,
    /// The field changed, with the object it belongs to.
    pub field: String,
    pub old: String,
    pub new: String,
    /// (byte offset, bytes), applied in order.
    pub patches: Vec<(usize, Vec<u8>)>,
    pub fixes: Vec<Fix>,
}

impl Mutation {
    fn new(kind: Kind, field: String, old: String, new: String) -> Mutation {
        Mutation {
            kind,
            field,
            old,
            new,
            patches: Vec::new(),
            fixes: Vec::new(),
        }
    }

    fn patch(&mut self, off: usize, bytes: &[u8]) {
        self.patches.push((off, bytes.to_vec()));
    }

    fn fix(&mut self, f: Fix) {
        if !self.fixes.contains(&f) {
            self.fixes.push(f);
        }
    }

    /// Apply to `img` (a copy of the base): the patches, then the checksums.
    pub fn apply(&self, img: &mut [u8]) {
        for (off, bytes) in &self.patches {
            img[*off..*off + bytes.len()].copy_from_slice(bytes);
        }
        for f in &self.fixes {
            match *f {
                Fix::Superblock => {
                    let mut sb = Superblock::from_bytes(img).expect("block 0");
                    sb.update_checksum();
                    img[..sb.as_bytes().len()].copy_from_slice(sb.as_bytes());
                }
                Fix::Inode { ino, off } => {
                    let mut d = Inode::from_bytes(&img[off..]).expect("inode slot");
                    d.update_checksum(ino);
                    img[off..off + INODE_SIZE].copy_from_slice(d.as_bytes());
                }
                Fix::Record { off, region_end } => {
                    let mut h = RecordHeader::from_bytes(&img[off..]).expect("record header");
                    let data_at = off + RECORD_HEADER_SIZE;
                    let len = h.len.get() as usize;
                    if let Some(end) = data_at.checked_add(len).filter(|&e| e <= region_end) {
                        let c = h.compute_crc(&img[data_at..end]);
                        h.crc.set(c);
                        img[off..off + RECORD_HEADER_SIZE].copy_from_slice(h.as_bytes());
                    }
                }
            }
        }
    }

    /// "inode-blocks: inode 12 (/big) blocks 1103 -> 18446744073709551615"
    pub fn describe(&self) -> String {
        format!(
            "{}: {} {} -> {}",
            self.kind.name(),
            self.field,
            self.old,
            self.new
        )
    }
}

/// What the mutator needs to know beyond the image.
#[derive(Debug, Clone, Copy)]
pub struct Target {
    /// Blocks of the device the image will be written to (boundary values).
    pub device_blocks: u64,
}

impl Default for Target {
    fn default() -> Target {
        // /dev/pmem1 of the test guest: 1 GiB.
        Target {
            device_blocks: 1 << 18,
        }
    }
}

/// Values interesting for any 64-bit field.
const GENERIC_U64: &[u64] = &[
    0,
    1,
    2,
    0x7fff_ffff,
    0x8000_0000,
    0xffff_ffff,
    0x1_0000_0000,
    0x7fff_ffff_ffff_ffff,
    0x8000_0000_0000_0000,
    u64::MAX - 1,
    u64::MAX,
];

/// Values interesting for any 32-bit field.
const GENERIC_U32: &[u64] = &[
    0,
    1,
    2,
    0xffff,
    0x1_0000,
    0x7fff_ffff,
    0x8000_0000,
    0xffff_fffe,
    0xffff_ffff,
];

/// A value different from `old`: from `special` (the field's own
/// boundaries) two times in three, else a generic one.
fn choose(rng: &mut Rng, old: u64, special: &[u64], generic: &[u64], max: u64) -> u64 {
    let special: Vec<u64> = special.iter().copied().filter(|&v| v <= max).collect();
    for _ in 0..64 {
        let v = if !special.is_empty() && rng.chance(2, 3) {
            *rng.pick(&special)
        } else {
            *rng.pick(generic)
        };
        if v != old {
            return v;
        }
    }
    old ^ 1
}

fn choose_u64(rng: &mut Rng, old: u64, special: &[u64]) -> u64 {
    choose(rng, old, special, GENERIC_U64, u64::MAX)
}

fn choose_u32(rng: &mut Rng, old: u32, special: &[u64]) -> u32 {
    choose(rng, old as u64, special, GENERIC_U32, u32::MAX as u64) as u32
}

/// A number as the messages show it: decimal, and hex when large.
pub fn show(v: u64) -> String {
    if v > 0xffff {
        format!("{v} ({v:#x})")
    } else {
        v.to_string()
    }
}

fn le32(img: &[u8], off: usize) -> u32 {
    u32::from_le_bytes(img[off..off + 4].try_into().expect("4 bytes"))
}

fn le64(img: &[u8], off: usize) -> u64 {
    u64::from_le_bytes(img[off..off + 8].try_into().expect("8 bytes"))
}

/// Make one mutation of `base` (described by `model`) of one of `kinds`,
/// chosen by `rng`.
pub fn generate(
    model: &Model,
    base: &[u8],
    rng: &mut Rng,
    kinds: &[Kind],
    target: Target,
) -> Result<Mutation, String> {
    if kinds.is_empty() {
        return Err("no mutation kind left to choose from".into());
    }
    // The kind is drawn from all kinds, again until it is one of `kinds`,
    // and the mutation from a generator of its own: a round whose first
    // draw is allowed gives the same mutation whatever the other kinds are
    // (so `--skip-kind` leaves the other rounds as they were).
    let sub = rng.next_u64();
    for i in 0..8192 {
        let k = if i < 4096 {
            *rng.pick(KINDS)
        } else {
            *rng.pick(kinds)
        };
        if !kinds.contains(&k) {
            continue;
        }
        let mut g = Rng::new(crate::rng::mix64(sub ^ (k as u64 + 1)));
        if let Some(m) = generate_kind(k, model, base, &mut g, target) {
            return Ok(m);
        }
    }
    Err("the base has nothing the chosen kinds can mutate".into())
}

/// One mutation of kind `kind`, or None if the base has nothing to aim at.
pub fn generate_kind(
    kind: Kind,
    model: &Model,
    base: &[u8],
    rng: &mut Rng,
    target: Target,
) -> Option<Mutation> {
    let g = Gen {
        model,
        base,
        target,
    };
    match kind {
        Kind::SbCount | Kind::SbRegion | Kind::SbMisc => g.superblock(kind, rng),
        Kind::InodeMode
        | Kind::InodeSize
        | Kind::InodeBlocks
        | Kind::InodeNlink
        | Kind::InodeParent
        | Kind::InodeAttr => g.inode_field(kind, rng),
        Kind::InodePtr => g.inode_ptr(rng),
        Kind::IndirectPtr => g.indirect_ptr(rng),
        Kind::DirentIno | Kind::DirentNameLen | Kind::DirentName | Kind::DirentType => {
            g.dirent(kind, rng)
        }
        Kind::SymlinkSize | Kind::SymlinkBlock | Kind::SymlinkData => g.symlink(kind, rng),
        Kind::Bitmap => g.bitmap(rng),
        Kind::JournalValid
        | Kind::JournalHeader
        | Kind::JournalSeq
        | Kind::JournalTarget
        | Kind::JournalLen
        | Kind::JournalData
        | Kind::JournalFill => g.journal(kind, rng),
    }
}

struct Gen<'a> {
    model: &'a Model,
    base: &'a [u8],
    target: Target,
}

/// Offsets of inode fields.
mod ioff {
    use super::{offset_of, Inode};
    pub const MODE: usize = offset_of!(Inode, mode);
    pub const FLAGS: usize = offset_of!(Inode, flags);
    pub const UID: usize = offset_of!(Inode, uid);
    pub const GID: usize = offset_of!(Inode, gid);
    pub const NLINK: usize = offset_of!(Inode, nlink);
    pub const SIZE: usize = offset_of!(Inode, size);
    pub const BLOCKS: usize = offset_of!(Inode, blocks);
    pub const ATIME: usize = offset_of!(Inode, atime_sec);
    pub const MTIME: usize = offset_of!(Inode, mtime_sec);
    pub const CTIME: usize = offset_of!(Inode, ctime_sec);
    pub const ATIME_NS: usize = offset_of!(Inode, atime_nsec);
    pub const MTIME_NS: usize = offset_of!(Inode, mtime_nsec);
    pub const CTIME_NS: usize = offset_of!(Inode, ctime_nsec);
    pub const GENERATION: usize = offset_of!(Inode, generation);
    pub const PARENT: usize = offset_of!(Inode, parent);
}

const S_IFCHR: u16 = 0o020000;
const S_IFBLK: u16 = 0o060000;
const S_IFIFO: u16 = 0o010000;
const S_IFSOCK: u16 = 0o140000;

impl Gen<'_> {
    fn geo(&self) -> &ferrofs_format::Geometry {
        &self.model.geo
    }

    /// Set the `width`-byte field at `off` (little-endian).
    fn set_int(m: &mut Mutation, off: usize, width: usize, v: u64) {
        m.patch(off, &v.to_le_bytes()[..width]);
    }

    fn read_int(&self, off: usize, width: usize) -> u64 {
        match width {
            1 => self.base[off] as u64,
            2 => u16::from_le_bytes([self.base[off], self.base[off + 1]]) as u64,
            4 => le32(self.base, off) as u64,
            _ => le64(self.base, off),
        }
    }

    // --- superblock -------------------------------------------------------

    fn superblock(&self, kind: Kind, rng: &mut Rng) -> Option<Mutation> {
        let g = *self.geo();
        let ib = self.model.image_blocks;
        let db = self.target.device_blocks;
        let bits = (BS * 8) as u64;
        let ic = g.inodes_count as u64;
        let jend = g.journal_start + g.journal_blocks as u64;
        let bend = g.bitmap_start + g.bitmap_blocks as u64;
        let iend = g.itable_start + g.itable_blocks as u64;
        let bc = g.blocks_count;
        type F = (&'static str, usize, usize, Vec<u64>);
        let fields: Vec<F> = match kind {
            Kind::SbCount => vec![
                (
                    "blocks_count",
                    offset_of!(Superblock, blocks_count),
                    8,
                    vec![
                        0,
                        1,
                        MIN_BLOCKS - 1,
                        MIN_BLOCKS,
                        g.data_start,
                        g.data_start + 1,
                        ib / 2,
                        ib - 1,
                        ib + 1,
                        g.bitmap_blocks as u64 * bits,
                        g.bitmap_blocks as u64 * bits + 1,
                        db - 1,
                        db,
                        db + 1,
                    ],
                ),
                (
                    "inodes_count",
                    offset_of!(Superblock, inodes_count),
                    4,
                    vec![0, 1, 15, 16, 17, ic - 16, ic - 1, ic + 1, ic + 16, ic * 2],
                ),
                (
                    "root_ino",
                    offset_of!(Superblock, root_ino),
                    4,
                    vec![0, 2, 3, ic, ic + 1, u32::MAX as u64],
                ),
            ],
            Kind::SbRegion => vec![
                (
                    "journal_start",
                    offset_of!(Superblock, journal_start),
                    8,
                    vec![
                        0,
                        2,
                        g.bitmap_start,
                        g.itable_start,
                        g.data_start,
                        bc - 1,
                        bc,
                    ],
                ),
                (
                    "journal_blocks",
                    offset_of!(Superblock, journal_blocks),
                    4,
                    vec![
                        0,
                        1,
                        2,
                        8,
                        63,
                        g.bitmap_start - g.journal_start + 1,
                        1 << 31,
                    ],
                ),
                (
                    "bitmap_start",
                    offset_of!(Superblock, bitmap_start),
                    8,
                    vec![0, 1, jend - 1, jend + 1, g.itable_start, g.data_start, bc],
                ),
                (
                    "bitmap_blocks",
                    offset_of!(Superblock, bitmap_blocks),
                    4,
                    vec![0, 2, g.itable_start - g.bitmap_start + 1, u32::MAX as u64],
                ),
                (
                    "itable_start",
                    offset_of!(Superblock, itable_start),
                    8,
                    vec![0, 1, g.bitmap_start, bend - 1, bend + 1, g.data_start, bc],
                ),
                (
                    "itable_blocks",
                    offset_of!(Superblock, itable_blocks),
                    4,
                    vec![
                        0,
                        1,
                        g.itable_blocks as u64 - 1,
                        g.itable_blocks as u64 + 1,
                        g.itable_blocks as u64 * 2,
                        1 << 28,
                    ],
                ),
                (
                    "data_start",
                    offset_of!(Superblock, data_start),
                    8,
                    vec![
                        0,
                        1,
                        g.itable_start,
                        iend - 1,
                        g.data_start + 1,
                        g.data_start + 2,
                        g.data_start + 16,
                        bc - 1,
                        bc,
                        bc + 1,
                    ],
                ),
            ],
            _ => vec![
                (
                    "version",
                    offset_of!(Superblock, version),
                    4,
                    vec![0, 2, u32::MAX as u64],
                ),
                (
                    "block_size",
                    offset_of!(Superblock, block_size),
                    4,
                    vec![0, 512, 1024, 2048, 4095, 4097, 8192, 65536],
                ),
                (
                    "flags",
                    offset_of!(Superblock, flags),
                    4,
                    vec![1, 0x8000_0000, u32::MAX as u64],
                ),
                (
                    "magic",
                    offset_of!(Superblock, magic),
                    8,
                    vec![
                        0,
                        u64::from_le_bytes(*b"FERROFS1"),
                        u64::from_le_bytes(*b"ferrofs\0"),
                    ],
                ),
            ],
        };
        let (name, off, width, special) = rng.pick(&fields).clone();
        let old = self.read_int(off, width);
        let new = if width == 8 {
            choose_u64(rng, old, &special)
        } else {
            choose_u32(rng, old as u32, &special) as u64
        };
        let mut m = Mutation::new(kind, format!("superblock {name}"), show(old), show(new));
        Self::set_int(&mut m, off, width, new);
        m.fix(Fix::Superblock);
        Some(m)
    }

    // --- inodes ------------------------------------------------------------

    fn pick_inode<'m>(
        &'m self,
        rng: &mut Rng,
        want: impl Fn(&InodeInfo) -> bool,
    ) -> Option<&'m InodeInfo> {
        let c: Vec<&InodeInfo> = self.model.inodes.iter().filter(|i| want(i)).collect();
        if c.is_empty() {
            None
        } else {
            Some(*rng.pick(&c))
        }
    }

    fn inode_label(i: &InodeInfo) -> String {
        format!("inode {} ({})", i.ino, i.path)
    }

    fn some_ino(&self, rng: &mut Rng, k: FileKind, not: u32) -> Option<u32> {
        self.pick_inode(rng, |i| i.kind == k && i.ino != not)
            .map(|i| i.ino)
    }

    fn inode_field(&self, kind: Kind, rng: &mut Rng) -> Option<Mutation> {
        let info = match kind {
            Kind::InodeParent => self.pick_inode(rng, |i| i.kind == FileKind::Dir)?,
            _ => self.pick_inode(rng, |_| true)?,
        };
        let d = &info.inode;
        let ic = self.geo().inodes_count as u64;
        let bc = self.geo().blocks_count;
        let (name, foff, width, special): (&str, usize, usize, Vec<u64>) = match kind {
            Kind::InodeMode => {
                let mode = d.mode.get();
                let perm = mode & !S_IFMT;
                let others: Vec<u16> = [S_IFDIR, S_IFREG, S_IFLNK]
                    .into_iter()
                    .filter(|&t| t != mode & S_IFMT)
                    .collect();
                let mut v: Vec<u64> = vec![
                    0,
                    (S_IFCHR | 0o644) as u64,
                    (S_IFBLK | 0o644) as u64,
                    (S_IFIFO | 0o644) as u64,
                    (S_IFSOCK | 0o644) as u64,
                    (S_IFMT | 0o777) as u64,
                    0o644,
                    ((mode & S_IFMT) | 0o7777) as u64,
                    (mode & S_IFMT) as u64,
                    0xffff,
                ];
                for t in others {
                    // The other valid types, each twice as likely: a file
                    // read as a directory is the interesting case.
                    v.push((t | perm) as u64);
                    v.push((t | perm) as u64);
                }
                ("mode", ioff::MODE, 2, v)
            }
            Kind::InodeSize => {
                let s = d.size.get();
                let max = MAX_FILE_BLOCKS * BS as u64;
                (
                    "size",
                    ioff::SIZE,
                    8,
                    vec![
                        0,
                        1,
                        4095,
                        4096,
                        4097,
                        s.saturating_sub(1),
                        s + 1,
                        s + 4096,
                        s.saturating_sub(4096),
                        s * 2,
                        d.blocks.get() * BS as u64,
                        max - 1,
                        max,
                        max + 1,
                        bc * BS as u64,
                        bc * BS as u64 + BS as u64,
                    ],
                )
            }
            Kind::InodeBlocks => {
                let b = d.blocks.get();
                (
                    "blocks",
                    ioff::BLOCKS,
                    8,
                    vec![
                        0,
                        b.saturating_sub(1),
                        b + 1,
                        bc,
                        (1 << 61) - 1,
                        1 << 61,
                        u64::MAX,
                        u64::MAX,
                    ],
                )
            }
            Kind::InodeNlink => {
                let n = d.nlink.get() as u64;
                (
                    "nlink",
                    ioff::NLINK,
                    4,
                    vec![
                        0,
                        0,
                        1,
                        n.saturating_sub(1),
                        n + 1,
                        65000,
                        65535,
                        65536,
                        u32::MAX as u64 - 1,
                        u32::MAX as u64,
                    ],
                )
            }
            Kind::InodeParent => {
                let mut v = vec![0, info.ino as u64, 1, ic, ic + 1, u32::MAX as u64];
                v.extend(self.model.free_inos.first().map(|&i| i as u64));
                v.extend(self.some_ino(rng, FileKind::Reg, 0).map(u64::from));
                v.extend(self.some_ino(rng, FileKind::Symlink, 0).map(u64::from));
                v.extend(self.some_ino(rng, FileKind::Dir, info.ino).map(u64::from));
                ("parent", ioff::PARENT, 4, v)
            }
            _ => {
                let times = vec![
                    0x7fff_ffff_ffff_ffff,
                    0x8000_0000_0000_0000,
                    u64::MAX,
                    1 << 40,
                    0xffff_ffff,
                ];
                let nsecs = vec![999_999_999, 1_000_000_000, 0x8000_0000, u32::MAX as u64];
                let ids = vec![u32::MAX as u64, 65534, 0x8000_0000];
                let f: Vec<(&str, usize, usize, Vec<u64>)> = vec![
                    ("uid", ioff::UID, 4, ids.clone()),
                    ("gid", ioff::GID, 4, ids),
                    ("atime_sec", ioff::ATIME, 8, times.clone()),
                    ("mtime_sec", ioff::MTIME, 8, times.clone()),
                    ("ctime_sec", ioff::CTIME, 8, times),
                    ("atime_nsec", ioff::ATIME_NS, 4, nsecs.clone()),
                    ("mtime_nsec", ioff::MTIME_NS, 4, nsecs.clone()),
                    ("ctime_nsec", ioff::CTIME_NS, 4, nsecs),
                    ("flags", ioff::FLAGS, 2, vec![1, 0x8000, 0xffff]),
                    ("generation", ioff::GENERATION, 4, vec![u32::MAX as u64]),
                ];
                rng.pick(&f).clone()
            }
        };
        let off = info.off + foff;
        let old = self.read_int(off, width);
        let new = match width {
            8 => choose_u64(rng, old, &special),
            4 => choose_u32(rng, old as u32, &special) as u64,
            _ => choose(rng, old, &special, &[0, 1, 0x8000, 0xffff], 0xffff),
        };
        let shown = |v: u64| {
            if kind == Kind::InodeMode {
                format!("{v:#o}")
            } else {
                show(v)
            }
        };
        let mut m = Mutation::new(
            kind,
            format!("{} {name}", Self::inode_label(info)),
            shown(old),
            shown(new),
        );
        Self::set_int(&mut m, off, width, new);
        m.fix(Fix::Inode {
            ino: info.ino,
            off: info.off,
        });
        Some(m)
    }

    /// Hostile values for a block pointer held by `owner`.
    fn ptr_values(&self, rng: &mut Rng, owner: &InodeInfo) -> Vec<u64> {
        let g = self.geo();
        let db = self.target.device_blocks;
        let mut v = vec![
            0,
            1,
            g.journal_start + g.journal_blocks as u64 - 1,
            g.bitmap_start,
            g.itable_start,
            // The block of the owner's own inode.
            (owner.off / BS) as u64,
            g.itable_start + g.itable_blocks as u64 - 1,
            g.data_start - 1,
            // The root directory's first block.
            g.data_start,
            g.blocks_count - 1,
            g.blocks_count,
            db - 1,
            db,
        ];
        let other = self.pick_inode(rng, |i| i.ino != owner.ino && !i.data_blocks.is_empty());
        if let Some(o) = other {
            v.push(*rng.pick(&o.data_blocks) as u64);
        }
        if let Some(o) = self.pick_inode(rng, |i| i.ino != owner.ino && !i.ind_blocks.is_empty()) {
            v.push(*rng.pick(&o.ind_blocks) as u64);
        }
        let dir = |i: &InodeInfo| {
            i.kind == FileKind::Dir && i.ino != owner.ino && !i.data_blocks.is_empty()
        };
        if let Some(d) = self.pick_inode(rng, dir) {
            v.push(*rng.pick(&d.data_blocks) as u64);
        }
        if !owner.data_blocks.is_empty() {
            v.push(*rng.pick(&owner.data_blocks) as u64);
        }
        if !owner.ind_blocks.is_empty() {
            // Its own indirect block: a loop in the map.
            v.push(*rng.pick(&owner.ind_blocks) as u64);
            v.push(*rng.pick(&owner.ind_blocks) as u64);
        }
        if !self.model.free_blocks.is_empty() {
            v.push(*rng.pick(&self.model.free_blocks) as u64);
        }
        v
    }

    fn ptr_mutation(
        &self,
        kind: Kind,
        rng: &mut Rng,
        owner: &InodeInfo,
        slot: &PtrSlot,
    ) -> Mutation {
        let special = self.ptr_values(rng, owner);
        let new = choose_u32(rng, slot.value, &special);
        let what = match self.model.owner_of(new) {
            Some(o) if o == owner.ino => " (its own block)".to_string(),
            Some(o) => format!(" (a block of inode {o})"),
            None => String::new(),
        };
        let mut m = Mutation::new(
            kind,
            format!("{} {}", Self::inode_label(owner), slot.name),
            show(slot.value as u64),
            format!("{}{what}", show(new as u64)),
        );
        m.patch(slot.off, &new.to_le_bytes());
        if slot.off >= owner.off && slot.off < owner.off + INODE_SIZE {
            m.fix(Fix::Inode {
                ino: owner.ino,
                off: owner.off,
            });
        }
        m
    }

    fn inode_ptr(&self, rng: &mut Rng) -> Option<Mutation> {
        let info = self.pick_inode(rng, |_| true)?;
        let used: Vec<&PtrSlot> = info.slots.iter().filter(|s| s.value != 0).collect();
        let slot = if !used.is_empty() && rng.chance(3, 4) {
            *rng.pick(&used)
        } else {
            rng.pick(&info.slots)
        };
        Some(self.ptr_mutation(Kind::InodePtr, rng, info, slot))
    }

    fn indirect_ptr(&self, rng: &mut Rng) -> Option<Mutation> {
        if self.model.ind_slots.is_empty() {
            return None;
        }
        let slot = rng.pick(&self.model.ind_slots);
        let owner = self.model.inode(slot.owner)?;
        Some(self.ptr_mutation(Kind::IndirectPtr, rng, owner, slot))
    }

    // --- directory entries ---------------------------------------------------

    fn dirent_label(&self, e: &DirentInfo) -> String {
        let dir = self
            .model
            .inode(e.dir)
            .map(|i| i.path.as_str())
            .unwrap_or("?");
        format!(
            "entry {:?} of directory {} ({dir})",
            String::from_utf8_lossy(&e.name),
            e.dir
        )
    }

    fn dirent(&self, kind: Kind, rng: &mut Rng) -> Option<Mutation> {
        if self.model.dirents.is_empty() {
            return None;
        }
        let e = rng.pick(&self.model.dirents);
        let label = self.dirent_label(e);
        let ic = self.geo().inodes_count as u64;
        match kind {
            Kind::DirentIno => {
                let dir = self.model.inode(e.dir)?;
                let mut v = vec![
                    0,
                    ic,
                    ic + 1,
                    0x8000_0000,
                    u32::MAX as u64,
                    1,
                    // The directory holding the entry: a loop.
                    e.dir as u64,
                    e.dir as u64,
                    dir.inode.parent.get() as u64,
                ];
                v.extend(self.model.free_inos.first().map(|&i| i as u64));
                v.extend(self.model.free_inos.first().map(|&i| i as u64));
                v.extend(self.some_ino(rng, FileKind::Dir, e.ino).map(u64::from));
                v.extend(self.some_ino(rng, FileKind::Dir, e.ino).map(u64::from));
                v.extend(self.some_ino(rng, FileKind::Reg, e.ino).map(u64::from));
                v.extend(self.some_ino(rng, FileKind::Symlink, e.ino).map(u64::from));
                let new = choose_u32(rng, e.ino, &v);
                let what = match self.model.inode(new) {
                    Some(i) => format!(" ({})", i.path),
                    None if new >= 1 && new as u64 <= ic => " (a free inode)".into(),
                    None => String::new(),
                };
                let mut m = Mutation::new(
                    kind,
                    format!("{label} ino"),
                    show(e.ino as u64),
                    format!("{}{what}", show(new as u64)),
                );
                m.patch(e.off, &new.to_le_bytes());
                Some(m)
            }
            Kind::DirentNameLen => {
                let old = e.name.len() as u64;
                let v = [
                    0,
                    1,
                    old.saturating_sub(1),
                    old + 1,
                    SLOT_NAME_MAX as u64,
                    SLOT_NAME_MAX as u64 + 1,
                    255,
                ];
                let new = choose(rng, old, &v, &[0, 255], 255);
                let mut m = Mutation::new(kind, format!("{label} name_len"), show(old), show(new));
                m.patch(e.off + 4, &[new as u8]);
                Some(m)
            }
            Kind::DirentName => {
                let mut names: Vec<(Vec<u8>, &str)> = vec![
                    (b".".to_vec(), "\".\""),
                    (b"..".to_vec(), "\"..\""),
                    (b"a/b".to_vec(), "\"a/b\""),
                    (b"x\0y".to_vec(), "a name with a NUL byte"),
                    (vec![b'x'; SLOT_NAME_MAX], "248 bytes"),
                    (vec![0xff; 3], "\\xff\\xff\\xff"),
                ];
                let twin = self
                    .model
                    .dirents
                    .iter()
                    .filter(|o| o.dir == e.dir && o.off != e.off)
                    .map(|o| o.name.clone())
                    .next();
                if let Some(t) = twin {
                    names.push((t, "the name of another entry of the directory"));
                    let n = names.len();
                    names.push(names[n - 1].clone());
                }
                let (new, what) = rng.pick(&names).clone();
                let mut m = Mutation::new(
                    kind,
                    format!("{label} name"),
                    format!("{:?}", String::from_utf8_lossy(&e.name)),
                    what.to_string(),
                );
                m.patch(e.off + 4, &[new.len() as u8]);
                m.patch(e.off + 8, &new);
                Some(m)
            }
            _ => {
                let old = e.file_type as u64;
                let all = [
                    DT_UNKNOWN, DT_FIFO, DT_CHR, DT_DIR, DT_BLK, DT_REG, DT_LNK, DT_SOCK, 3, 14,
                    255,
                ];
                let v: Vec<u64> = all.iter().map(|&t| t as u64).collect();
                let new = choose(rng, old, &v, &v, 255);
                let mut m = Mutation::new(kind, format!("{label} file_type"), show(old), show(new));
                m.patch(e.off + 5, &[new as u8]);
                Some(m)
            }
        }
    }

    // --- symlinks -------------------------------------------------------------

    fn symlink(&self, kind: Kind, rng: &mut Rng) -> Option<Mutation> {
        let info = self.pick_inode(rng, |i| i.kind == FileKind::Symlink)?;
        let label = Self::inode_label(info);
        let size = info.inode.size.get();
        match kind {
            Kind::SymlinkSize => {
                let v = [
                    0,
                    1,
                    size - 1,
                    size + 1,
                    4095,
                    4096,
                    4097,
                    1 << 32,
                    1 << 63,
                    u64::MAX,
                ];
                let new = choose_u64(rng, size, &v);
                let mut m = Mutation::new(kind, format!("{label} size"), show(size), show(new));
                m.patch(info.off + ioff::SIZE, &new.to_le_bytes());
                m.fix(Fix::Inode {
                    ino: info.ino,
                    off: info.off,
                });
                Some(m)
            }
            Kind::SymlinkBlock => {
                let slot = &info.slots[0];
                let mut m = self.ptr_mutation(kind, rng, info, slot);
                m.field = format!("{label} target block (direct[0])");
                Some(m)
            }
            _ => {
                let b = info.data_blocks.first().copied()? as usize;
                let at = b * BS;
                let size = size as usize;
                let variants = [
                    "unterminated",
                    "NUL first",
                    "all '/'",
                    "all '../'",
                    "all \\xff",
                    "its own name",
                ];
                let which = rng.index(variants.len());
                let mut m = Mutation::new(
                    kind,
                    format!("{label} target bytes"),
                    format!("{size} bytes"),
                    variants[which].to_string(),
                );
                match which {
                    0 => m.patch(at + size, b"x"),
                    1 => m.patch(at, &[0]),
                    2 => m.patch(at, &vec![b'/'; size]),
                    3 => {
                        let t: Vec<u8> = b"../".iter().copied().cycle().take(size).collect();
                        m.patch(at, &t);
                    }
                    4 => m.patch(at, &vec![0xff; size]),
                    _ => {
                        // A link to itself: its own name, NUL-padded to the size.
                        let name = info.path.rsplit('/').next().unwrap_or("x").as_bytes();
                        let mut t = vec![0u8; size];
                        let n = name.len().min(size);
                        t[..n].copy_from_slice(&name[..n]);
                        m.patch(at, &t);
                    }
                }
                Some(m)
            }
        }
    }

    // --- bitmap ---------------------------------------------------------------

    fn bitmap(&self, rng: &mut Rng) -> Option<Mutation> {
        let g = *self.geo();
        let bm = g.bitmap_start as usize * BS;
        let bits = g.bitmap_blocks as u64 * (BS * 8) as u64;
        let word_of = |b: u64| bm + (b / 64) as usize * 8;
        let with_data = self.pick_inode(rng, |i| !i.data_blocks.is_empty());
        let with_ind = self.pick_inode(rng, |i| !i.ind_blocks.is_empty());
        let mut cases: Vec<(u64, &str)> = Vec::new();
        if let Some(i) = with_data {
            let b = *rng.pick(&i.data_blocks) as u64;
            cases.push((b, "clear"));
            cases.push((b, "clear"));
            cases.push((b, "word 0"));
        }
        if let Some(i) = with_ind {
            cases.push((*rng.pick(&i.ind_blocks) as u64, "clear"));
        }
        cases.push((g.data_start, "clear"));
        let meta = [
            0,
            g.journal_start,
            g.bitmap_start,
            g.itable_start,
            g.data_start - 1,
        ];
        cases.push((*rng.pick(&meta), "clear"));
        cases.push((g.blocks_count, "clear"));
        cases.push((bits - 1, "clear"));
        if let Some(&f) = self.model.free_blocks.first() {
            cases.push((f as u64, "set"));
            cases.push((f as u64, "word all ones"));
        }
        let (b, how) = *rng.pick(&cases);
        let off = word_of(b);
        let old = le64(self.base, off);
        let bit = 1u64 << (b % 64);
        let new = match how {
            "clear" => old & !bit,
            "set" => old | bit,
            "word 0" => 0,
            _ => u64::MAX,
        };
        let owner = match self.model.owner_of(b as u32) {
            Some(o) => format!(", block of inode {o}"),
            None if b < g.data_start => ", metadata".into(),
            None if b >= g.blocks_count => ", past the end".into(),
            None => ", free".into(),
        };
        let mut m = Mutation::new(
            Kind::Bitmap,
            format!("bitmap word {} (block {b}{owner}: {how})", (b / 64)),
            format!("{old:#018x}"),
            format!("{new:#018x}"),
        );
        if new == old {
            // Already so: make it the other way round, still on that block.
            m.new = format!("{:#018x}", old ^ bit);
            m.patch(off, &(old ^ bit).to_le_bytes());
        } else {
            m.patch(off, &new.to_le_bytes());
        }
        Some(m)
    }

    // --- journal ----------------------------------------------------------------

    fn journal(&self, kind: Kind, rng: &mut Rng) -> Option<Mutation> {
        let mut p = Pending::craft(self.model, self.base)?;
        let (jstart, jend) = self.model.journal_range();
        let g = *self.geo();
        let mut m = Mutation::new(kind, String::new(), String::new(), String::new());
        match kind {
            Kind::JournalValid => {
                m.field = "journal".into();
                m.old = "clean".into();
                m.new = p.summary.clone();
            }
            Kind::JournalHeader => {
                m.field = format!("journal header (with {})", p.summary);
                let variants: [(&str, [u8; 8], Option<u8>); 5] = [
                    ("magic all zero, seq_done kept", [0; 8], None),
                    ("magic \"FERROJNX\"", *b"FERROJNX", None),
                    ("magic \"ferrojnl\"", *b"ferrojnl", None),
                    ("reserved byte 0xff", JOURNAL_MAGIC, Some(0xff)),
                    ("all zero (fresh)", [0; 8], Some(0)),
                ];
                let (what, magic, reserved) = *rng.pick(&variants);
                m.old = "\"FERROJNL\"".into();
                m.new = what.into();
                p.patch(jstart, &magic);
                match (what, reserved) {
                    ("all zero (fresh)", _) => p.patch(jstart, &[0; JOURNAL_RECORDS_OFF]),
                    (_, Some(r)) => p.patch(jstart + 16 + rng.index(48), &[r]),
                    _ => {}
                }
            }
            Kind::JournalSeq => {
                let special = [
                    0,
                    1,
                    0x7fff_ffff,
                    0xffff_ffff,
                    0x7fff_ffff_ffff_ffff,
                    u64::MAX - 1,
                    u64::MAX,
                    u64::MAX,
                ];
                let old = p.seq - 1;
                let done = choose_u64(rng, old, &special);
                let with_records = rng.chance(2, 3);
                m.field = format!(
                    "journal seq_done{} (with {})",
                    if with_records {
                        ", records renumbered to seq_done + 1"
                    } else {
                        ", records kept"
                    },
                    p.summary
                );
                m.old = show(old);
                m.new = show(done);
                p.patch(jstart + JOURNAL_SEQ_DONE_OFF, &done.to_le_bytes());
                if with_records {
                    let seq = done.wrapping_add(1);
                    for r in p.records.clone() {
                        p.patch(r.off, &seq.to_le_bytes());
                    }
                }
            }
            Kind::JournalTarget => {
                let i = rng.index(p.records.len());
                let r = p.records[i].clone();
                let lo = g.bitmap_start * BS as u64;
                let hi = g.blocks_count * BS as u64;
                let dev = self.target.device_blocks * BS as u64;
                let len = r.len as u64;
                let root_inode = g.itable_start * BS as u64;
                let special = [
                    0,
                    8,
                    512,
                    g.journal_start * BS as u64,
                    (jstart + JOURNAL_RECORDS_OFF) as u64,
                    lo - 1,
                    lo,
                    root_inode,
                    root_inode + 1,
                    g.data_start * BS as u64,
                    hi - len,
                    hi - len + 1,
                    hi,
                    dev - len,
                    dev,
                    1 << 32,
                    1 << 63,
                    u64::MAX - len + 1,
                    u64::MAX,
                ];
                let new = choose_u64(rng, r.target, &special);
                m.field = format!("journal record {i} ({}) {}", p.label(i), "target");
                m.old = show(r.target);
                m.new = show(new);
                p.patch(r.off + 8, &new.to_le_bytes());
            }
            Kind::JournalLen => {
                let i = rng.index(p.records.len());
                let r = p.records[i].clone();
                let room = (jend - r.off - RECORD_HEADER_SIZE) as u64;
                let max = RECORD_MAX_DATA as u64;
                let special = [
                    0,
                    1,
                    2,
                    3,
                    5,
                    7,
                    9,
                    255,
                    256,
                    257,
                    max - 1,
                    max,
                    max + 1,
                    2 * max,
                    room,
                    room + 1,
                    0x8000_0000,
                    u32::MAX as u64,
                ];
                let new = choose_u32(rng, r.len as u32, &special);
                m.field = format!("journal record {i} ({}) {}", p.label(i), "len");
                m.old = show(r.len as u64);
                m.new = show(new as u64);
                p.patch(r.off + 16, &new.to_le_bytes());
            }
            Kind::JournalData => {
                let i = rng.index(p.records.len());
                let r = p.records[i].clone();
                let data_at = r.off + RECORD_HEADER_SIZE;
                m.field = format!("journal record {i} ({}) {}", p.label(i), "data");
                match r.what {
                    RecWhat::Inode(ino) => {
                        // Rollback writes back an inode with a valid checksum
                        // and one hostile field.
                        let mut d = Inode::from_bytes(&self.base[r.target as usize..])?;
                        let cases: [(&str, u64); 8] = [
                            ("blocks", u64::MAX),
                            ("size", u64::MAX),
                            ("mode", (S_IFCHR | 0o644) as u64),
                            ("mode", (S_IFDIR | 0o755) as u64),
                            ("nlink", 0),
                            ("direct[0]", g.itable_start),
                            ("indirect", (r.target / BS as u64)),
                            ("nlink", u32::MAX as u64),
                        ];
                        let (f, v) = *rng.pick(&cases);
                        match f {
                            "blocks" => d.blocks.set(v),
                            "size" => d.size.set(v),
                            "mode" => d.mode.set(v as u16),
                            "nlink" => d.nlink.set(v as u32),
                            "direct[0]" => d.direct[0].set(v as u32),
                            _ => d.indirect.set(v as u32),
                        }
                        d.update_checksum(ino);
                        m.old = format!("inode {ino} as it was");
                        m.new = if f == "mode" {
                            format!("inode {ino} with mode = {v:#o}")
                        } else {
                            format!("inode {ino} with {f} = {}", show(v))
                        };
                        p.patch(data_at, d.as_bytes());
                    }
                    RecWhat::DirentIno => {
                        let ic = self.geo().inodes_count as u64;
                        let mut v = vec![0, 1, ic + 1, u32::MAX as u64];
                        v.extend(self.model.free_inos.first().map(|&i| i as u64));
                        let new = choose_u32(rng, le32(self.base, r.target as usize), &v);
                        m.old = show(le32(self.base, r.target as usize) as u64);
                        m.new = format!("entry ino {}", show(new as u64));
                        p.patch(data_at, &new.to_le_bytes());
                    }
                    RecWhat::BitmapWord => {
                        let new = if rng.chance(1, 2) { 0u64 } else { u64::MAX };
                        m.old = format!("{:#018x}", le64(self.base, r.target as usize));
                        m.new = format!("bitmap word {new:#018x}");
                        p.patch(data_at, &new.to_le_bytes());
                    }
                }
            }
            Kind::JournalFill => {
                let tails = [0usize, 1, 8, 23, 24, 32];
                let tail = *rng.pick(&tails);
                let n = p.fill(self.base, tail);
                m.field = format!("journal ({} + {n} bitmap records)", p.summary);
                m.old = "3 pending records".into();
                m.new = format!("region full, {tail} bytes left at its end");
            }
            _ => unreachable!("not a journal kind"),
        }
        m.patches = p.patches;
        for r in &p.records {
            m.fix(Fix::Record {
                off: r.off,
                region_end: jend,
            });
        }
        Some(m)
    }
}

/// What a crafted record restores.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RecWhat {
    DirentIno,
    Inode(u32),
    BitmapWord,
}

#[derive(Debug, Clone)]
struct Rec {
    /// Byte offset of the record header in the image.
    off: usize,
    target: u64,
    len: usize,
    what: RecWhat,
}

/// A valid unfinished transaction crafted on the base: an unlink of a file
/// in the root directory interrupted after its in-place stores.
struct Pending {
    patches: Vec<(usize, Vec<u8>)>,
    records: Vec<Rec>,
    seq: u64,
    /// Where the next record would go.
    pos: usize,
    summary: String,
}

impl Pending {
    fn patch(&mut self, off: usize, bytes: &[u8]) {
        self.patches.push((off, bytes.to_vec()));
    }

    /// "the inode 11 record of pending transaction 18 (...)"
    fn label(&self, i: usize) -> String {
        let what = match self.records[i].what {
            RecWhat::DirentIno => "entry ino".to_string(),
            RecWhat::Inode(ino) => format!("inode {ino}"),
            RecWhat::BitmapWord => "bitmap word".to_string(),
        };
        format!("{what}, in {}", self.summary)
    }

    fn craft(model: &Model, base: &[u8]) -> Option<Pending> {
        let (jstart, _) = model.journal_range();
        // The root's entry of the regular file with the most blocks.
        let e = model
            .dirents
            .iter()
            .filter(|e| e.dir == ferrofs_format::ROOT_INO)
            .filter_map(|e| model.inode(e.ino).map(|i| (e, i)))
            .filter(|(_, i)| i.kind == FileKind::Reg && !i.data_blocks.is_empty())
            .max_by_key(|(_, i)| i.data_blocks.len());
        let (e, victim) = e?;
        let seq_done = model.journal.seq_done;
        let mut p = Pending {
            patches: Vec::new(),
            records: Vec::new(),
            seq: seq_done + 1,
            pos: jstart + JOURNAL_RECORDS_OFF,
            summary: format!(
                "pending transaction {}: unlink of /{} undone",
                seq_done + 1,
                String::from_utf8_lossy(&e.name)
            ),
        };
        if model.journal.fresh {
            p.patch(jstart, JournalHeader::new(seq_done).as_bytes());
        }
        // 1. The entry's inode number, cleared in place.
        p.record(base, e.off as u64, 4, RecWhat::DirentIno);
        p.patch(e.off, &[0; 4]);
        // 2. The inode, its link count dropped in place.
        p.record(
            base,
            victim.off as u64,
            INODE_SIZE,
            RecWhat::Inode(victim.ino),
        );
        let mut d = victim.inode;
        d.nlink.set(d.nlink.get().saturating_sub(1));
        d.ctime_sec.set(d.ctime_sec.get() + 1);
        d.update_checksum(victim.ino);
        p.patch(victim.off, d.as_bytes());
        // 3. A bitmap word, one of its blocks freed in place.
        let b = victim.data_blocks[0] as u64;
        let w = model.geo.bitmap_start as usize * BS + (b / 64) as usize * 8;
        p.record(base, w as u64, 8, RecWhat::BitmapWord);
        let old = le64(base, w);
        p.patch(w, &(old & !(1 << (b % 64))).to_le_bytes());
        p.terminate();
        Some(p)
    }

    /// Append a record of the base's bytes at `target` (checksum by the
    /// mutation's fix-ups).
    fn record(&mut self, base: &[u8], target: u64, len: usize, what: RecWhat) {
        let t = target as usize;
        let h = RecordHeader::new(self.seq, target, &base[t..t + len]);
        let off = self.pos;
        self.patch(off, h.as_bytes());
        self.patch(off + RECORD_HEADER_SIZE, &base[t..t + len]);
        let pad = ferrofs_format::record_size(len) - RECORD_HEADER_SIZE - len;
        if pad > 0 {
            self.patch(off + RECORD_HEADER_SIZE + len, &vec![0; pad]);
        }
        self.records.push(Rec {
            off,
            target,
            len,
            what,
        });
        self.pos = off + ferrofs_format::record_size(len);
    }

    /// A zero header after the last record, so stale bytes of older
    /// transactions there are never mistaken for a record.
    fn terminate(&mut self) {
        let pos = self.pos;
        self.patch(pos, &[0; RECORD_HEADER_SIZE]);
    }

    /// Add records of the bitmap's first block (restoring its own bytes:
    /// harmless) until `tail` bytes of the region are left. Returns how
    /// many were added.
    fn fill(&mut self, base: &[u8], tail: usize) -> usize {
        let jend = self.pos_limit(base);
        let bm = self.bitmap_off(base);
        let mut n = 0;
        loop {
            let left = jend - self.pos;
            if left < tail + RECORD_HEADER_SIZE + 8 {
                break;
            }
            // The length of a last record that leaves `tail` bytes (a
            // multiple of 8: an odd tail leaves what the padding makes).
            let last = (left - tail - RECORD_HEADER_SIZE) & !7;
            let len = if last <= RECORD_MAX_DATA {
                last
            } else if last - RECORD_MAX_DATA >= RECORD_HEADER_SIZE + 8 {
                RECORD_MAX_DATA
            } else {
                RECORD_MAX_DATA / 2
            };
            if len == 0 {
                break;
            }
            self.record(base, bm as u64, len, RecWhat::BitmapWord);
            n += 1;
        }
        if jend - self.pos >= RECORD_HEADER_SIZE {
            self.terminate();
        }
        n
    }

    fn pos_limit(&self, base: &[u8]) -> usize {
        let sb = Superblock::from_bytes(base).expect("superblock");
        (sb.journal_start.get() as usize + sb.journal_blocks.get() as usize) * BS
    }

    fn bitmap_off(&self, base: &[u8]) -> usize {
        let sb = Superblock::from_bytes(base).expect("superblock");
        sb.bitmap_start.get() as usize * BS
    }
}

/// Checks that `img` (the base with `m` applied) has every checksum right:
/// the superblock, every used inode slot (by the base's geometry), and
/// every record the mutation wrote whose data lies inside the journal
/// region (a record made longer than the region cannot have a valid check:
/// that is the one thing such a mutation breaks). Returns what is wrong.
pub fn verify_checksums(img: &[u8], model: &Model, m: &Mutation) -> Result<(), String> {
    let mut bad = String::new();
    let sb = Superblock::from_bytes(img).ok_or("no superblock")?;
    if sb.compute_checksum() != sb.checksum.get() {
        bad.push_str("superblock checksum; ");
    }
    let g = &model.geo;
    for ino in 1..=g.inodes_count {
        let (block, o) = ferrofs_image::inode_location(g, ino).expect("in range");
        let off = block as usize * BS + o;
        let d = Inode::from_bytes(&img[off..]).expect("slot");
        if !d.is_free() && d.compute_checksum(ino) != d.checksum.get() {
            let _ = write!(bad, "inode {ino} checksum; ");
        }
    }
    for f in &m.fixes {
        if let Fix::Record { off, region_end } = *f {
            let h = RecordHeader::from_bytes(&img[off..]).expect("header");
            let data_at = off + RECORD_HEADER_SIZE;
            let end = data_at.saturating_add(h.len.get() as usize);
            if end <= region_end && h.compute_crc(&img[data_at..end]) != h.crc.get() {
                let _ = write!(bad, "journal record at {off} check; ");
            }
        }
    }
    if bad.is_empty() {
        Ok(())
    } else {
        Err(bad)
    }
}

/// The byte ranges a mutation may change: its patches and the checksum
/// fields of its fix-ups.
pub fn allowed_ranges(m: &Mutation) -> Vec<(usize, usize)> {
    let mut r: Vec<(usize, usize)> = m.patches.iter().map(|(o, b)| (*o, *o + b.len())).collect();
    for f in &m.fixes {
        r.push(match *f {
            Fix::Superblock => {
                let o = offset_of!(Superblock, checksum);
                (o, o + 4)
            }
            Fix::Inode { off, .. } => {
                let o = off + offset_of!(Inode, checksum);
                (o, o + 4)
            }
            Fix::Record { off, .. } => {
                let o = off + offset_of!(RecordHeader, crc);
                (o, o + 4)
            }
        });
    }
    r
}
