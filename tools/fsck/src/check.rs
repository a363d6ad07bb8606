//! The checks and the repairs.
//!
//! Everything is read first and judged; repairs (with `-y`) are applied at
//! the end, in an order that is safe if interrupted: bitmap bits are set
//! first, then directory slots cleared, then inodes rewritten or freed, and
//! bitmap bits cleared last, so that a crash in between only leaks space.
//!
//! Passes:
//! 1. the journal: a clean one (all zero after mkfs, or the magic and stale
//!    records of finished transactions after any mount) is fine; a damaged
//!    header or a record pointing outside the metadata is an error (`-y`
//!    resets the journal to empty); an unfinished transaction is not (a
//!    crash leaves one, and mount rolls it back): with `-y` fsck rolls it
//!    back on the device first, with `-n` it checks the image as rolled back
//!    (reads see the records' bytes);
//! 2. every used inode: checksum and `validate`, its block map (pointers in
//!    the data area, blocks claimed once, mapped blocks within the size),
//!    `blocks`, directory size, symlink target, the xattr block;
//! 3. blocks claimed more than once: name every owner;
//! 4. the tree from the root: entries, file types, names per directory,
//!    directories' `parent`;
//! 5. link counts, and used inodes not reachable from the root (orphans; one
//!    with link count 0 was unlinked while open, and mount frees it: not an
//!    error);
//! 6. the bitmap against the blocks found.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::fmt::Write as _;
use std::fs::File;
use std::os::unix::fs::FileExt;

use ferrofs_format::{
    block_entries, dt_from_mode, is_special, xattr_entries, Dirent, FormatError, Geometry, Inode,
    JournalHeader, Pod, Superblock, BLOCK_SIZE, DIRENT_SIZE, INODES_PER_BLOCK, INODE_SIZE,
    JOURNAL_RECORDS_OFF, NDIRECT, PTRS_PER_BLOCK, ROOT_INO, SLOT_NAME_MAX, S_IFBLK, S_IFCHR,
    S_IFDIR, S_IFIFO, S_IFLNK, S_IFMT, S_IFREG, S_IFSOCK, VERSION_LONG_NAMES, VERSION_SPECIAL,
    VERSION_XATTR,
};
use ferrofs_image::{blocks_in, inode_location, Bitmap, Image};

const BS: u64 = BLOCK_SIZE as u64;

/// One repair. A problem is repairable when it carries at least one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fix {
    /// Set the bitmap bits of blocks `start..end`.
    MarkUsed {
        start: u64,
        end: u64,
    },
    /// Clear the bitmap bits of blocks `start..end`.
    MarkFree {
        start: u64,
        end: u64,
    },
    SetNlink {
        ino: u32,
        nlink: u32,
    },
    SetBlocks {
        ino: u32,
        blocks: u64,
    },
    /// Zero the inode's slot (its blocks are freed by `MarkFree`s).
    FreeInode {
        ino: u32,
    },
    /// Store 0 in the inode number of slot `slot` of directory block `block`.
    ClearEntry {
        block: u32,
        slot: usize,
    },
    /// Zero the journal's records and write a valid header with
    /// `seq_done` 0: an empty journal.
    ResetJournal,
}

/// A directory entry being checked: where it is and what it says.
struct EntryRef {
    slot: usize,
    /// 1, or 2 for a long name (its continuation is the next slot).
    slots: usize,
    ino: u32,
    file_type: u8,
}

/// A problem found: one line of report, naming the inode or block first.
#[derive(Debug, Clone)]
pub struct Problem {
    pub text: String,
    /// How `-y` repairs it; empty if it cannot be repaired safely.
    pub fixes: Vec<Fix>,
}

/// The result of a check.
pub struct Outcome {
    pub problems: Vec<Problem>,
    /// What was found that is not a problem (an unfinished journal
    /// transaction, orphans that mount frees).
    pub notes: Vec<String>,
    /// Whether the repairs were applied (`-y` and something to repair).
    pub repaired: bool,
    pub used_inodes: u64,
    /// Blocks marked used in the bitmap (metadata included), after repairs.
    pub used_blocks: u64,
}

/// An operational error (exit 8): the message says what could not be done.
#[derive(Debug)]
pub struct Fatal(pub String);

/// Why a superblock is rejected, for the operator.
pub fn describe_superblock_error(e: FormatError) -> String {
    match e {
        FormatError::BadMagic => "not a ferrofs filesystem (bad magic)".into(),
        FormatError::UnknownVersion(v) => {
            format!("superblock invalid: unknown format version {v}")
        }
        FormatError::BadChecksum { stored, computed } => format!(
            "superblock invalid: bad checksum (stored {stored:#010x}, computed {computed:#010x})"
        ),
        FormatError::BadBlockSize(b) => format!("superblock invalid: unsupported block size {b}"),
        FormatError::TooLarge {
            blocks,
            device_blocks,
        } => format!(
            "superblock invalid: filesystem larger than the device \
             ({blocks} blocks, the device has {device_blocks})"
        ),
        other => format!("superblock invalid: {}", other.reason()),
    }
}

fn describe_inode_error(e: FormatError) -> String {
    match e {
        FormatError::BadChecksum { stored, computed } => {
            format!("bad checksum (stored {stored:#010x}, computed {computed:#010x})")
        }
        other => other.reason().to_string(),
    }
}

/// "block 5" or "blocks 5-9" for `start..end`.
fn blocks_subject(start: u64, end: u64) -> String {
    if end - start == 1 {
        format!("block {start}")
    } else {
        format!("blocks {start}-{}", end - 1)
    }
}

/// Consecutive runs of a sorted sequence of block numbers, as `start..end`.
fn runs(sorted: impl IntoIterator<Item = u64>) -> Vec<(u64, u64)> {
    let mut out: Vec<(u64, u64)> = Vec::new();
    for b in sorted {
        match out.last_mut() {
            Some((_, end)) if *end == b => *end += 1,
            _ => out.push((b, b + 1)),
        }
    }
    out
}

fn type_name(mode: u16) -> &'static str {
    match mode & S_IFMT {
        S_IFDIR => "directory",
        S_IFREG => "regular file",
        S_IFLNK => "symlink",
        S_IFCHR => "character device",
        S_IFBLK => "block device",
        S_IFIFO => "FIFO",
        S_IFSOCK => "socket",
        _ => "inode of unknown type",
    }
}

/// A name from a directory slot, quoted and escaped for a report line.
fn show_name(name: &[u8]) -> String {
    format!("{:?}", String::from_utf8_lossy(name))
}

/// A fixed-size set of numbers.
struct BitSet(Vec<u64>);

impl BitSet {
    fn new(n: u64) -> BitSet {
        BitSet(vec![0; n.div_ceil(64) as usize])
    }
    fn get(&self, i: u64) -> bool {
        self.0[(i / 64) as usize] & (1 << (i % 64)) != 0
    }
    /// Sets bit `i`; returns whether it was set already.
    fn test_and_set(&mut self, i: u64) -> bool {
        let w = &mut self.0[(i / 64) as usize];
        let m = 1 << (i % 64);
        let was = *w & m != 0;
        *w |= m;
        was
    }
}

/// What a block pointer points at.
#[derive(Debug, Clone, Copy)]
enum Kind {
    /// Data of logical block n.
    Data(u64),
    /// An indirect block.
    Indirect,
    /// The extended attribute block.
    Xattr,
}

/// Where a block pointer is stored.
#[derive(Debug, Clone, Copy)]
enum Loc {
    Direct(usize),
    /// The inode's indirect (1), dindirect (2) or tindirect (3) pointer.
    Root(u32),
    InBlock {
        block: u32,
        index: usize,
    },
    /// The inode's xattr pointer.
    Xattr,
}

impl std::fmt::Display for Loc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Loc::Direct(i) => write!(f, "direct[{i}]"),
            Loc::Root(1) => write!(f, "the indirect pointer"),
            Loc::Root(2) => write!(f, "the double indirect pointer"),
            Loc::Root(_) => write!(f, "the triple indirect pointer"),
            Loc::InBlock { block, index } => write!(f, "entry {index} of indirect block {block}"),
            Loc::Xattr => write!(f, "the xattr pointer"),
        }
    }
}

/// The device as the checks read it: the file, seen through the rollback of
/// an unfinished journal transaction when fsck may not write (`-n`).
struct Dev<'f> {
    file: &'f File,
    /// Applied in this order over what is read.
    undo: ferrofs_image::Undo,
}

fn read_blocks(dev: &Dev, start: u64, count: u64) -> Result<Vec<u8>, Fatal> {
    let mut buf = Image::new(dev.file)
        .read_blocks(start, count)
        .map_err(|e| {
            Fatal(if count == 1 {
                format!("cannot read block {start}: {e}")
            } else {
                format!("cannot read blocks {start}-{}: {e}", start + count - 1)
            })
        })?;
    let lo = start * BS;
    let hi = lo + buf.len() as u64;
    for u in &dev.undo {
        let (t0, t1) = (u.target, u.target + u.len() as u64);
        let (a, b) = (t0.max(lo), t1.min(hi));
        if u.masked {
            // An aligned word: wholly inside a block-aligned read or out.
            if t0 >= lo && t1 <= hi {
                u.apply(&mut buf[(t0 - lo) as usize..(t1 - lo) as usize]);
            }
        } else if a < b {
            buf[(a - lo) as usize..(b - lo) as usize]
                .copy_from_slice(&u.data[(a - t0) as usize..(b - t0) as usize]);
        }
    }
    Ok(buf)
}

/// Visits every non-zero pointer of `d`'s block map: `f(kind, block, where,
/// in_data_area)`. Pointers outside the data area are reported to `f` but
/// not followed, and neither is an indirect block met a second time in the
/// same map (so a damaged map that loops cannot make the walk explode).
fn walk(
    dev: &Dev,
    geo: &Geometry,
    d: &Inode,
    f: &mut dyn FnMut(Kind, u32, Loc, bool),
) -> Result<(), Fatal> {
    let mut w = Walk {
        dev,
        geo,
        f,
        visited: HashSet::new(),
    };
    for (i, p) in d.direct.iter().enumerate() {
        let p = p.get();
        if p != 0 {
            let ok = w.in_data(p);
            (w.f)(Kind::Data(i as u64), p, Loc::Direct(i), ok);
        }
    }
    let per = PTRS_PER_BLOCK as u64;
    let mut base = NDIRECT as u64;
    for (level, root) in [(1u32, d.indirect), (2, d.dindirect), (3, d.tindirect)] {
        let p = root.get();
        if p != 0 {
            w.indirect(p, Loc::Root(level), level, base)?;
        }
        base += per.pow(level);
    }
    let p = d.xattr.get();
    if p != 0 {
        let ok = w.in_data(p);
        (w.f)(Kind::Xattr, p, Loc::Xattr, ok);
    }
    Ok(())
}

struct Walk<'a> {
    dev: &'a Dev<'a>,
    geo: &'a Geometry,
    f: &'a mut dyn FnMut(Kind, u32, Loc, bool),
    visited: HashSet<u32>,
}

impl Walk<'_> {
    fn in_data(&self, p: u32) -> bool {
        (p as u64) >= self.geo.data_start && (p as u64) < self.geo.blocks_count
    }

    /// Indirect block `block` (stored at `loc`), `level` levels above the
    /// data, whose first pointer maps logical block `base`.
    fn indirect(&mut self, block: u32, loc: Loc, level: u32, base: u64) -> Result<(), Fatal> {
        let ok = self.in_data(block);
        (self.f)(Kind::Indirect, block, loc, ok);
        if !ok || !self.visited.insert(block) {
            return Ok(());
        }
        let buf = read_blocks(self.dev, block as u64, 1)?;
        let span = (PTRS_PER_BLOCK as u64).pow(level - 1);
        for index in 0..PTRS_PER_BLOCK {
            let p = u32::from_le_bytes(buf[index * 4..index * 4 + 4].try_into().unwrap());
            if p == 0 {
                continue;
            }
            let loc = Loc::InBlock { block, index };
            let lblk = base + index as u64 * span;
            if level == 1 {
                let ok = self.in_data(p);
                (self.f)(Kind::Data(lblk), p, loc, ok);
            } else {
                self.indirect(p, loc, level - 1, lblk)?;
            }
        }
        Ok(())
    }
}

/// What the later passes need of a used inode.
struct Info {
    mode: u16,
    nlink: u32,
    size: u64,
    blocks: u64,
    parent: u32,
    /// Failed its checksum or `validate`: nothing about it is repaired.
    damaged: bool,
    /// Has block pointers outside the data area.
    bad_ptrs: bool,
}

impl Info {
    fn is_dir(&self) -> bool {
        self.mode & S_IFMT == S_IFDIR
    }
}

struct Checker<'f> {
    file: &'f File,
    dev: Dev<'f>,
    geo: Geometry,
    /// The superblock's format version.
    version: u32,
    verbose: bool,
    bitmap: Bitmap,
    /// Blocks claimed by some inode.
    seen: BitSet,
    /// Blocks claimed more than once.
    dups: HashSet<u32>,
    /// Claimed blocks whose bitmap bit is clear, with their (first) owner.
    marked_free: Vec<(u64, u32)>,
    inodes: BTreeMap<u32, Info>,
    /// Directories' mapped data blocks: (logical, physical).
    dir_maps: HashMap<u32, Vec<(u64, u32)>>,
    /// Inodes reachable from the root.
    reached: BitSet,
    /// Some part of the tree could not be trusted: no orphan or link-count
    /// repairs, since a name may live where we could not look.
    tree_incomplete: bool,
    problems: Vec<Problem>,
    notes: Vec<String>,
}

/// Checks the filesystem in `file` (opened for writing if `repair`) and, with
/// `repair`, applies the safe repairs.
pub fn check(file: &File, repair: bool, verbose: bool) -> Result<Outcome, Fatal> {
    let mut img = Image::new(file);
    let size = img
        .size()
        .map_err(|e| Fatal(format!("cannot get the size: {e}")))?;
    if size < BS {
        return Err(Fatal(format!(
            "not a ferrofs filesystem: {size} bytes, smaller than one block"
        )));
    }
    let sb: Superblock = img
        .superblock()
        .map_err(|e| Fatal(format!("cannot read the superblock: {e}")))?;
    let geo = sb
        .validate(blocks_in(size))
        .map_err(|e| Fatal(describe_superblock_error(e)))?;
    if verbose {
        println!(
            "fsck-ferrofs: superblock: {} blocks, {} inodes, journal {}, bitmap {}, \
             inode table {}, data from block {}",
            geo.blocks_count,
            geo.inodes_count,
            blocks_subject(
                geo.journal_start,
                geo.journal_start + geo.journal_blocks as u64
            ),
            blocks_subject(
                geo.bitmap_start,
                geo.bitmap_start + geo.bitmap_blocks as u64
            ),
            blocks_subject(
                geo.itable_start,
                geo.itable_start + geo.itable_blocks as u64
            ),
            geo.data_start
        );
    }
    let mut problems = Vec::new();
    let mut notes = Vec::new();
    let dev = journal(file, &geo, repair, verbose, &mut problems, &mut notes)?;
    let bitmap = Bitmap::from_bytes(read_blocks(
        &dev,
        geo.bitmap_start,
        geo.bitmap_blocks as u64,
    )?);
    let mut c = Checker {
        file,
        dev,
        geo,
        version: sb.version.get(),
        verbose,
        bitmap,
        seen: BitSet::new(geo.blocks_count),
        dups: HashSet::new(),
        marked_free: Vec::new(),
        inodes: BTreeMap::new(),
        dir_maps: HashMap::new(),
        reached: BitSet::new(geo.inodes_count as u64 + 1),
        tree_incomplete: false,
        problems,
        notes,
    };
    c.pass_inodes()?;
    c.pass_shared()?;
    let tree = c.pass_tree()?;
    c.pass_links_and_orphans(&tree)?;
    c.pass_bitmap();

    let mut repaired = false;
    let mut freed_inodes = 0;
    if repair && c.problems.iter().any(|p| !p.fixes.is_empty()) {
        freed_inodes = c.apply_fixes()?;
        repaired = true;
    }
    Ok(Outcome {
        used_inodes: c.inodes.len() as u64 - freed_inodes,
        used_blocks: c.bitmap.count_set(0, c.geo.blocks_count),
        problems: c.problems,
        notes: c.notes,
        repaired,
    })
}

impl Checker<'_> {
    fn report(&mut self, text: String, fixes: Vec<Fix>) {
        self.problems.push(Problem { text, fixes });
    }

    fn phase(&self, what: &str) {
        if self.verbose {
            println!("fsck-ferrofs: {what}");
        }
    }

    fn read_inode(&self, ino: u32) -> Result<Inode, Fatal> {
        let (block, off) = inode_location(&self.geo, ino).expect("inode number in range");
        let b = read_blocks(&self.dev, block, 1)?;
        Ok(Inode::from_bytes(&b[off..]).expect("slot within the block"))
    }

    fn pass_inodes(&mut self) -> Result<(), Fatal> {
        self.phase("checking inodes and their block maps");
        const CHUNK: u64 = 256;
        let g = self.geo;
        let mut done = 0u64;
        while done < g.itable_blocks as u64 {
            let n = CHUNK.min(g.itable_blocks as u64 - done);
            let buf = read_blocks(&self.dev, g.itable_start + done, n)?;
            for (i, slot) in buf.chunks_exact(INODE_SIZE).enumerate() {
                let ino = (done * INODES_PER_BLOCK as u64 + i as u64 + 1) as u32;
                let d = Inode::from_bytes(slot).expect("a whole slot");
                if !d.is_free() {
                    self.check_inode(ino, &d)?;
                }
            }
            done += n;
        }
        Ok(())
    }

    fn check_inode(&mut self, ino: u32, d: &Inode) -> Result<(), Fatal> {
        let mut damaged = false;
        match d.validate(ino, self.geo.blocks_count) {
            Ok(()) => {}
            // The walk below names each such pointer.
            Err(FormatError::BadInode("block pointer past the end")) => {}
            Err(e) => {
                self.report(format!("inode {ino}: {}", describe_inode_error(e)), vec![]);
                damaged = true;
            }
        }
        let mode = d.mode.get();
        let fmt = mode & S_IFMT;
        let size = d.size.get();
        // Logical blocks at or past this one must not be mapped.
        let limit = match fmt {
            S_IFREG => size.div_ceil(BS),
            S_IFDIR => size / BS,
            S_IFLNK => 1,
            // Special files: `validate` refuses any block pointer.
            _ => 0,
        };
        let mut counted = 0u64;
        let mut bad: Vec<(u32, Loc)> = Vec::new();
        let mut beyond: Vec<(u64, u32)> = Vec::new();
        let mut map: Vec<(u64, u32)> = Vec::new();
        let (seen, dups, marked_free, bitmap) = (
            &mut self.seen,
            &mut self.dups,
            &mut self.marked_free,
            &self.bitmap,
        );
        walk(&self.dev, &self.geo, d, &mut |kind, p, loc, ok| {
            if !ok {
                bad.push((p, loc));
                return;
            }
            counted += 1;
            if seen.test_and_set(p as u64) {
                dups.insert(p);
            } else if !bitmap.get(p as u64) {
                marked_free.push((p as u64, ino));
            }
            if let Kind::Data(l) = kind {
                // fallocate(FALLOC_FL_KEEP_SIZE) preallocates blocks past the
                // end of a regular file; only other types must not have any.
                if l >= limit && fmt != S_IFREG {
                    beyond.push((l, p));
                }
                if fmt == S_IFDIR {
                    map.push((l, p));
                }
            }
        })?;
        let g = self.geo;
        for (p, loc) in &bad {
            self.report(
                format!(
                    "inode {ino}: block pointer {p} in {loc} is outside the data area \
                     (blocks {}-{})",
                    g.data_start,
                    g.blocks_count - 1
                ),
                vec![],
            );
        }
        if let Some(&(l, p)) = beyond.iter().min() {
            let what = if fmt == S_IFDIR {
                "past the directory's size"
            } else {
                "past the end of the file"
            };
            self.report(
                format!(
                    "inode {ino}: {} block(s) mapped {what} (size {size}), \
                     first at logical block {l} (block {p})",
                    beyond.len()
                ),
                vec![],
            );
        }
        let bad_ptrs = !bad.is_empty();
        if counted != d.blocks.get() {
            let fixes = if damaged || bad_ptrs {
                vec![]
            } else {
                vec![Fix::SetBlocks {
                    ino,
                    blocks: counted,
                }]
            };
            self.report(
                format!(
                    "inode {ino}: blocks is {}, but {counted} block(s) are mapped",
                    d.blocks.get()
                ),
                fixes,
            );
        }
        if is_special(mode) && self.version < VERSION_SPECIAL {
            self.report(
                format!(
                    "inode {ino}: a {} on a version {} image (they came with version {VERSION_SPECIAL})",
                    type_name(mode),
                    self.version
                ),
                vec![],
            );
        }
        let xb = d.xattr.get() as u64;
        if xb >= g.data_start && xb < g.blocks_count {
            self.check_xattr(ino, xb)?;
        }
        match fmt {
            S_IFDIR => {
                if !size.is_multiple_of(BS) {
                    self.report(
                        format!("inode {ino}: directory size {size} is not a multiple of {BS}"),
                        vec![],
                    );
                }
                map.sort_unstable();
                self.dir_maps.insert(ino, map);
            }
            S_IFLNK => self.check_symlink(ino, d)?,
            _ => {}
        }
        self.inodes.insert(
            ino,
            Info {
                mode,
                nlink: d.nlink.get(),
                size,
                blocks: d.blocks.get(),
                parent: d.parent.get(),
                damaged,
                bad_ptrs,
            },
        );
        Ok(())
    }

    /// The inode's extended attribute block: its format (`xattr_entries`),
    /// no name twice, not empty, and an image version that has xattrs.
    fn check_xattr(&mut self, ino: u32, b: u64) -> Result<(), Fatal> {
        if self.version < VERSION_XATTR {
            self.report(
                format!(
                    "inode {ino}: has an xattr block ({b}), but the superblock says version {} \
                     (xattrs came with version {VERSION_XATTR})",
                    self.version
                ),
                vec![],
            );
        }
        let buf = read_blocks(&self.dev, b, 1)?;
        match xattr_entries(&buf, ino) {
            Err(e) => self.report(
                format!("inode {ino}: xattr block {b} is invalid: {}", e.reason()),
                vec![],
            ),
            Ok(it) => {
                let mut names = HashSet::new();
                let mut n = 0usize;
                for e in it {
                    n += 1;
                    if !names.insert((e.index, e.name.to_vec())) {
                        self.report(
                            format!(
                                "inode {ino}: xattr block {b} holds name {} of namespace {} twice",
                                show_name(e.name),
                                e.index
                            ),
                            vec![],
                        );
                    }
                }
                if n == 0 {
                    self.report(
                        format!("inode {ino}: xattr block {b} has no entries"),
                        vec![],
                    );
                }
            }
        }
        Ok(())
    }

    fn check_symlink(&mut self, ino: u32, d: &Inode) -> Result<(), Fatal> {
        let size = d.size.get();
        let b = d.direct[0].get() as u64;
        if size == 0 || size >= BS {
            self.report(
                format!(
                    "inode {ino}: symlink target length {size} out of range 1-{}",
                    BS - 1
                ),
                vec![],
            );
            return Ok(());
        }
        if b < self.geo.data_start || b >= self.geo.blocks_count {
            // A nonzero pointer outside the data area is reported by the walk.
            // An orphan may have none: eviction frees the block, then the
            // inode, and a crash in between leaves it for mount to free.
            if b == 0 && d.nlink.get() != 0 {
                self.report(format!("inode {ino}: symlink has no target block"), vec![]);
            }
            return Ok(());
        }
        let buf = read_blocks(&self.dev, b, 1)?;
        if buf[size as usize] != 0 {
            self.report(
                format!(
                    "inode {ino}: symlink target not NUL-terminated within block {b} \
                     (length {size})"
                ),
                vec![],
            );
        }
        Ok(())
    }

    /// Names every owner of each block claimed more than once.
    fn pass_shared(&mut self) -> Result<(), Fatal> {
        if self.dups.is_empty() {
            return Ok(());
        }
        self.phase("finding the owners of blocks claimed more than once");
        let mut owners: BTreeMap<u32, Vec<u32>> = BTreeMap::new();
        let inos: Vec<u32> = self.inodes.keys().copied().collect();
        for ino in inos {
            let d = self.read_inode(ino)?;
            let dups = &self.dups;
            walk(&self.dev, &self.geo, &d, &mut |_, p, _, ok| {
                if ok && dups.contains(&p) {
                    owners.entry(p).or_default().push(ino);
                }
            })?;
        }
        // Counting a block twice may be what is wrong with `blocks`: leave it.
        let owners_of_dups: HashSet<u32> = owners.values().flatten().copied().collect();
        for p in &mut self.problems {
            p.fixes.retain(
                |f| !matches!(f, Fix::SetBlocks { ino, .. } if owners_of_dups.contains(ino)),
            );
        }
        for (block, mut who) in owners {
            let times = who.len();
            who.dedup();
            let text = if who.len() == 1 {
                format!("block {block}: claimed {times} times by inode {}", who[0])
            } else {
                let mut s = format!("block {block}: shared by inodes ");
                for (i, o) in who.iter().enumerate() {
                    let sep = match i {
                        0 => "",
                        _ if i == who.len() - 1 => " and ",
                        _ => ", ",
                    };
                    let _ = write!(s, "{sep}{o}");
                }
                s
            };
            self.report(text, vec![]);
        }
        Ok(())
    }

    fn pass_tree(&mut self) -> Result<Tree, Fatal> {
        self.phase("walking the directory tree from the root");
        let mut t = Tree::default();
        let root_ok = match self.inodes.get(&ROOT_INO) {
            None => {
                self.report(format!("inode {ROOT_INO}: root directory is free"), vec![]);
                false
            }
            Some(r) if !r.is_dir() => {
                let text = format!(
                    "inode {ROOT_INO}: root is a {}, not a directory",
                    type_name(r.mode)
                );
                self.report(text, vec![]);
                false
            }
            Some(r) => {
                if r.parent != ROOT_INO {
                    let text = format!(
                        "inode {ROOT_INO}: root directory's parent is {}, should be {ROOT_INO}",
                        r.parent
                    );
                    self.report(text, vec![]);
                }
                true
            }
        };
        if !root_ok {
            self.tree_incomplete = true;
            return Ok(t);
        }
        self.reached.test_and_set(ROOT_INO as u64);
        let mut queue = VecDeque::from([ROOT_INO]);
        while let Some(dir) = queue.pop_front() {
            self.read_dir(dir, &mut t, &mut queue)?;
        }
        Ok(t)
    }

    /// Checks the entries of reachable directory `dir`, queueing the
    /// directories it names for the first time.
    fn read_dir(&mut self, dir: u32, t: &mut Tree, queue: &mut VecDeque<u32>) -> Result<(), Fatal> {
        let info = &self.inodes[&dir];
        if info.damaged || info.bad_ptrs || !info.size.is_multiple_of(BS) {
            self.tree_incomplete = true;
        }
        let nblocks = info.size / BS;
        let map: Vec<(u64, u32)> = self.dir_maps[&dir]
            .iter()
            .copied()
            .filter(|&(l, _)| l < nblocks)
            .collect();
        let mut names: HashSet<Vec<u8>> = HashSet::new();
        for (_, block) in map {
            let buf = read_blocks(&self.dev, block as u64, 1)?;
            for r in block_entries(&buf) {
                match r {
                    Ok(be) => {
                        if be.slots == 2 && self.version < VERSION_LONG_NAMES {
                            self.report(
                                format!(
                                    "inode {dir}: entry {} (block {block} slot {}) has a {}-byte name on a version {} image \
                                     (names over {SLOT_NAME_MAX} bytes came with version {VERSION_LONG_NAMES})",
                                    show_name(be.name()),
                                    be.slot,
                                    be.name().len(),
                                    self.version
                                ),
                                vec![],
                            );
                        }
                        let e = EntryRef {
                            slot: be.slot,
                            slots: be.slots,
                            ino: be.ino,
                            file_type: be.file_type,
                        };
                        self.check_entry(dir, block, &e, Ok(be.name()), &mut names, t, queue);
                    }
                    Err((slot, err)) => {
                        let d =
                            Dirent::from_bytes(&buf[slot * DIRENT_SIZE..]).expect("a whole slot");
                        if d.is_cont() {
                            // Its entry is gone: a free slot that was not
                            // freed. Clearing it loses nothing.
                            self.report(
                                format!("inode {dir}: block {block} slot {slot}: {}", err.reason()),
                                vec![Fix::ClearEntry { block, slot }],
                            );
                            continue;
                        }
                        let e = EntryRef {
                            slot,
                            slots: 1,
                            ino: d.ino.get(),
                            file_type: d.file_type,
                        };
                        let why = format!("with bad name length {} ({})", d.name_len, err.reason());
                        self.check_entry(dir, block, &e, Err(why), &mut names, t, queue);
                    }
                }
            }
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn check_entry(
        &mut self,
        dir: u32,
        block: u32,
        e: &EntryRef,
        name: Result<&[u8], String>,
        names: &mut HashSet<Vec<u8>>,
        t: &mut Tree,
        queue: &mut VecDeque<u32>,
    ) {
        let (ino, slot) = (e.ino, e.slot);
        let name = match name {
            Ok(n) => {
                let shown = show_name(n);
                if n.contains(&b'/') || n.contains(&0) || n == b"." || n == b".." {
                    self.report(
                        format!("inode {dir}: entry {shown} (block {block} slot {slot}) is not a valid name"),
                        vec![],
                    );
                } else if !names.insert(n.to_vec()) {
                    self.report(
                        format!("inode {dir}: entry {shown} (block {block} slot {slot}) duplicates an earlier name"),
                        vec![],
                    );
                }
                shown
            }
            Err(shown) => {
                self.report(
                    format!(
                        "inode {dir}: entry {shown} (block {block} slot {slot}) for inode {ino}"
                    ),
                    vec![],
                );
                shown
            }
        };
        let at = format!("entry {name} (block {block} slot {slot})");
        let Some(target) = self.inodes.get(&ino) else {
            let why = if ino > self.geo.inodes_count {
                format!("inode {ino}, past the last inode {}", self.geo.inodes_count)
            } else {
                format!("free inode {ino}")
            };
            self.report(
                format!("inode {dir}: {at} names {why} (dangling)"),
                (slot..slot + e.slots)
                    .map(|slot| Fix::ClearEntry { block, slot })
                    .collect(),
            );
            return;
        };
        let (mode, parent, is_dir) = (target.mode, target.parent, target.is_dir());
        *t.names.entry(ino).or_default() += 1;
        self.reached.test_and_set(ino as u64);
        let want = dt_from_mode(mode);
        if e.file_type != want {
            let text = format!(
                "inode {dir}: {at} has file type {}, but inode {ino} is a {} (type {want})",
                e.file_type,
                type_name(mode)
            );
            self.report(text, vec![]);
        }
        if !is_dir {
            return;
        }
        *t.subdirs.entry(dir).or_default() += 1;
        let here = format!("{name} in inode {dir}");
        if ino == ROOT_INO {
            self.report(
                format!("inode {ino}: the root directory has another name: {here}"),
                vec![],
            );
        } else if let Some(first) = t.first_name.get(&ino) {
            let text = format!("inode {ino}: directory has more than one name: {first} and {here}");
            self.report(text, vec![]);
        } else {
            if parent != dir {
                self.report(
                    format!("inode {ino}: directory's parent is {parent}, but it is named {here}"),
                    vec![],
                );
            }
            t.first_name.insert(ino, here);
            queue.push_back(ino);
        }
    }

    fn pass_links_and_orphans(&mut self, t: &Tree) -> Result<(), Fatal> {
        self.phase("checking link counts and looking for orphans");
        let mut orphans = Vec::new();
        let mut wrong = Vec::new();
        for (&ino, info) in &self.inodes {
            if !self.reached.get(ino as u64) {
                orphans.push(ino);
                continue;
            }
            let want = if info.is_dir() {
                2 + t.subdirs.get(&ino).copied().unwrap_or(0)
            } else {
                t.names.get(&ino).copied().unwrap_or(0)
            };
            if info.nlink != want {
                let fixes = if info.damaged || self.tree_incomplete {
                    vec![]
                } else {
                    vec![Fix::SetNlink { ino, nlink: want }]
                };
                wrong.push(Problem {
                    text: format!("inode {ino}: nlink is {}, should be {want}", info.nlink),
                    fixes,
                });
            }
        }
        self.problems.extend(wrong);
        for ino in orphans {
            let info = &self.inodes[&ino];
            if info.nlink == 0 && !info.damaged {
                // Unlinked while open when the system went down.
                let note = format!(
                    "inode {ino}: orphan (link count 0); mount frees it ({} unlinked \
                     while open)",
                    type_name(info.mode)
                );
                self.notes.push(note);
                continue;
            }
            let d = self.read_inode(ino)?;
            let mut blocks = Vec::new();
            let mut shared = false;
            let dups = &self.dups;
            walk(&self.dev, &self.geo, &d, &mut |_, p, _, ok| {
                if ok {
                    shared |= dups.contains(&p);
                    blocks.push(p as u64);
                }
            })?;
            let info = &self.inodes[&ino];
            let text = format!(
                "inode {ino}: orphan {} (nlink {}, size {}, {} block(s)) not reachable from the root",
                type_name(info.mode),
                info.nlink,
                info.size,
                info.blocks
            );
            let fixes = if info.damaged || info.bad_ptrs || shared || self.tree_incomplete {
                vec![]
            } else {
                blocks.sort_unstable();
                let mut f = vec![Fix::FreeInode { ino }];
                f.extend(
                    runs(blocks)
                        .into_iter()
                        .map(|(start, end)| Fix::MarkFree { start, end }),
                );
                f
            };
            self.report(text, fixes);
        }
        Ok(())
    }

    fn pass_bitmap(&mut self) {
        self.phase("checking the block bitmap");
        let g = self.geo;
        let meta = runs((0..g.data_start).filter(|&b| !self.bitmap.get(b)));
        for (start, end) in meta {
            self.report(
                format!(
                    "{}: metadata marked free in the bitmap",
                    blocks_subject(start, end)
                ),
                vec![Fix::MarkUsed { start, end }],
            );
        }
        // Referenced but marked free, in runs of one owner.
        let mut free = std::mem::take(&mut self.marked_free);
        free.sort_unstable();
        let mut i = 0;
        while i < free.len() {
            let (start, owner) = free[i];
            let mut end = start + 1;
            while i + 1 < free.len() && free[i + 1] == (end, owner) {
                end += 1;
                i += 1;
            }
            i += 1;
            self.report(
                format!(
                    "{}: used by inode {owner} but marked free in the bitmap",
                    blocks_subject(start, end)
                ),
                vec![Fix::MarkUsed { start, end }],
            );
        }
        let leaked = runs(
            (g.data_start..g.blocks_count).filter(|&b| self.bitmap.get(b) && !self.seen.get(b)),
        );
        for (start, end) in leaked {
            self.report(
                format!(
                    "{}: marked used but owned by nobody (leaked)",
                    blocks_subject(start, end)
                ),
                vec![Fix::MarkFree { start, end }],
            );
        }
        let tail = runs((g.blocks_count..self.bitmap.len()).filter(|&b| !self.bitmap.get(b)));
        for (start, end) in tail {
            self.report(
                format!(
                    "{}: past the end of the filesystem but marked free in the bitmap",
                    blocks_subject(start, end)
                ),
                vec![Fix::MarkUsed { start, end }],
            );
        }
    }

    fn write_at(&self, buf: &[u8], offset: u64, what: &str) -> Result<(), Fatal> {
        self.file
            .write_all_at(buf, offset)
            .map_err(|e| Fatal(format!("cannot write {what}: {e}")))
    }

    /// Writes the bitmap blocks that differ from `old`.
    fn write_bitmap(&self, old: &Bitmap) -> Result<(), Fatal> {
        let new = self.bitmap.as_bytes().chunks(BLOCK_SIZE);
        for (i, (n, o)) in new.zip(old.as_bytes().chunks(BLOCK_SIZE)).enumerate() {
            if n != o {
                let block = self.geo.bitmap_start + i as u64;
                self.write_at(n, block * BS, &format!("bitmap block {block}"))?;
            }
        }
        Ok(())
    }

    /// Applies every problem's fixes; returns the number of inodes freed.
    fn apply_fixes(&mut self) -> Result<u64, Fatal> {
        self.phase("repairing");
        let fixes: Vec<Fix> = self
            .problems
            .iter()
            .flat_map(|p| p.fixes.iter().copied())
            .collect();
        let sync = |f: &File| f.sync_all().map_err(|e| Fatal(format!("cannot sync: {e}")));
        // 0. A damaged journal: records zeroed first, then a valid header
        // (`seq_done` 0), so that no old record can become pending.
        if fixes.contains(&Fix::ResetJournal) {
            // Every area: one damaged area makes the whole journal suspect.
            for (at, end) in ferrofs_image::journal_areas(&self.geo) {
                let zeros = vec![0u8; (end - at) as usize - JOURNAL_RECORDS_OFF];
                self.write_at(&zeros, at + JOURNAL_RECORDS_OFF as u64, "the journal")?;
                sync(self.file)?;
                self.write_at(JournalHeader::new(0).as_bytes(), at, "the journal header")?;
                sync(self.file)?;
            }
        }
        // 1. Bits set: at worst a block leaks.
        let old = self.bitmap.clone();
        for f in &fixes {
            if let Fix::MarkUsed { start, end } = *f {
                self.bitmap.set_range(start, end);
            }
        }
        self.write_bitmap(&old)?;
        // 2. Entries naming nothing.
        for f in &fixes {
            if let Fix::ClearEntry { block, slot } = *f {
                let off = block as u64 * BS + (slot * DIRENT_SIZE) as u64;
                self.write_at(&[0; 4], off, &format!("block {block}"))?;
            }
        }
        // 3. Inodes.
        let mut per_inode: BTreeMap<u32, Vec<Fix>> = BTreeMap::new();
        for f in &fixes {
            match *f {
                Fix::SetNlink { ino, .. } | Fix::SetBlocks { ino, .. } | Fix::FreeInode { ino } => {
                    per_inode.entry(ino).or_default().push(*f)
                }
                _ => {}
            }
        }
        let mut freed = 0;
        for (ino, fs) in per_inode {
            let mut d = self.read_inode(ino)?;
            if fs.iter().any(|f| matches!(f, Fix::FreeInode { .. })) {
                // As the kernel frees an inode: the whole slot zeroed.
                d = Inode::zeroed();
                freed += 1;
            } else {
                for f in fs {
                    match f {
                        Fix::SetNlink { nlink, .. } => d.nlink.set(nlink),
                        Fix::SetBlocks { blocks, .. } => d.blocks.set(blocks),
                        _ => unreachable!("only inode fixes are grouped"),
                    }
                }
                d.update_checksum(ino);
            }
            let (block, off) = inode_location(&self.geo, ino).expect("inode number in range");
            self.write_at(
                d.as_bytes(),
                block * BS + off as u64,
                &format!("inode {ino}"),
            )?;
        }
        sync(self.file)?;
        // 4. Bits cleared, once nothing points at the blocks.
        let old = self.bitmap.clone();
        for f in &fixes {
            if let Fix::MarkFree { start, end } = *f {
                for b in start..end {
                    self.bitmap.clear(b);
                }
            }
        }
        self.write_bitmap(&old)?;
        sync(self.file)?;
        Ok(freed)
    }
}

/// Pass 1: the journal. A clean journal (all zero as mkfs leaves it, or the
/// magic and stale records of finished transactions as every mount leaves
/// it) is fine. An unfinished transaction is not a problem either: a crash
/// leaves one and mount rolls it back; with `repair` fsck rolls it back on
/// the device first, else the other passes read the device through an
/// overlay of its records. Returns the view of the device they read.
fn journal<'f>(
    file: &'f File,
    geo: &Geometry,
    repair: bool,
    verbose: bool,
    problems: &mut Vec<Problem>,
    notes: &mut Vec<String>,
) -> Result<Dev<'f>, Fatal> {
    let mut dev = Dev {
        file,
        undo: Vec::new(),
    };
    let areas = ferrofs_image::journal_areas(geo);
    let mut found = Vec::new();
    for (k, &(start, end)) in areas.iter().enumerate() {
        let (b0, b1) = (start / BS, end / BS);
        let region = read_blocks(&dev, b0, b1 - b0)?;
        let label = if areas.len() == 1 {
            "journal".to_string()
        } else {
            format!("journal area {k}")
        };
        match ferrofs_image::pending_undo(&region, geo) {
            Ok((state, undo)) => found.push((label, state, undo)),
            Err(e) => {
                let where_ = blocks_subject(b0, b1);
                problems.push(Problem {
                    text: format!(
                        "{where_}: {label} damaged ({}); -y resets the journal to empty \
                         (an unfinished transaction, if any, is then kept)",
                        e.reason()
                    ),
                    fixes: vec![Fix::ResetJournal],
                });
                return Ok(dev);
            }
        }
    }
    let mut pending = false;
    for (label, state, undo) in found {
        let seq = state.seq_done.wrapping_add(1);
        if state.pending == 0 {
            if verbose {
                let how = if state.fresh { "never used" } else { "clean" };
                println!(
                    "fsck-ferrofs: {label}: {how}, last finished transaction {}",
                    state.seq_done
                );
            }
            continue;
        }
        pending = true;
        if repair {
            notes.push(format!(
                "{label}: transaction {seq} unfinished ({} records): rolled back",
                state.pending
            ));
        } else {
            notes.push(format!(
                "{label}: transaction {seq} unfinished ({} records): rolled back \
                 in this check only (-n); mount or fsck -y rolls it back on the device",
                state.pending
            ));
            dev.undo.extend(undo);
        }
    }
    if pending && repair {
        ferrofs_image::recover_journal(file, geo)
            .map_err(|e| Fatal(format!("cannot roll back the journal: {e}")))?;
    }
    Ok(dev)
}

/// What the tree walk learnt.
#[derive(Default)]
struct Tree {
    /// Names of each inode in reachable directories.
    names: HashMap<u32, u32>,
    /// Subdirectory entries in each reachable directory.
    subdirs: HashMap<u32, u32>,
    /// The first name of each directory, for reports.
    first_name: HashMap<u32, String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_merge_consecutive_blocks() {
        assert_eq!(runs([1, 2, 3, 7, 9, 10]), vec![(1, 4), (7, 8), (9, 11)]);
        assert_eq!(runs([]), vec![]);
    }

    #[test]
    fn blocks_subject_names_one_block_or_a_range() {
        assert_eq!(blocks_subject(5, 6), "block 5");
        assert_eq!(blocks_subject(5, 9), "blocks 5-8");
    }

    #[test]
    fn bitset_test_and_set_reports_the_previous_state() {
        let mut s = BitSet::new(130);
        assert!(!s.test_and_set(129));
        assert!(s.test_and_set(129));
        assert!(s.get(129) && !s.get(128));
    }
}
