//! What the mutator knows about a base image: where each structure lives.
//!
//! The base is a healthy filesystem (made by `make-base`, or by
//! [`crate::synth`] in tests). [`Model::parse`] decodes it with the shared
//! on-media format and records the byte offset of every field a mutation
//! may aim at: used inodes, block pointers (in inodes and inside indirect
//! blocks), directory slots, symlink targets, bitmap words, the journal.

use std::collections::{BTreeMap, HashSet, VecDeque};

use ferrofs_format::{
    block_entries, Geometry, Inode, JournalState, Pod, Superblock, BLOCK_SIZE, DIRENT_SIZE,
    NDIRECT, PTRS_PER_BLOCK, ROOT_INO, S_IFDIR, S_IFLNK, S_IFMT, S_IFREG,
};
use ferrofs_image::inode_location;

pub const BS: usize = BLOCK_SIZE;
/// Byte offset of `direct[0]` in an inode; `indirect`, `dindirect` and
/// `tindirect` follow the 12 direct pointers.
pub const DIRECT_OFF: usize = std::mem::offset_of!(Inode, direct);

/// File types the model distinguishes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    Dir,
    Reg,
    Symlink,
}

/// Where a pointer slot is and what it points to.
#[derive(Debug, Clone)]
pub struct PtrSlot {
    /// Byte offset of the `u32` in the image.
    pub off: usize,
    /// The inode whose map holds it.
    pub owner: u32,
    /// What it is, for messages: "direct[3]", "indirect", "entry 5 of
    /// indirect block 300 (double indirect, level 1)".
    pub name: String,
    pub value: u32,
}

/// A used inode of the base.
#[derive(Clone)]
pub struct InodeInfo {
    pub ino: u32,
    /// Byte offset of its slot.
    pub off: usize,
    pub kind: FileKind,
    pub inode: Inode,
    /// A path from the root (the first name found), for messages.
    pub path: String,
    /// The 15 pointer slots of the inode (direct, indirect, dindirect,
    /// tindirect), zero ones included.
    pub slots: Vec<PtrSlot>,
    /// Data blocks, in logical order.
    pub data_blocks: Vec<u32>,
    /// Indirect blocks (any level).
    pub ind_blocks: Vec<u32>,
}

/// A used directory slot.
#[derive(Debug, Clone)]
pub struct DirentInfo {
    pub off: usize,
    /// The directory holding it.
    pub dir: u32,
    pub ino: u32,
    pub name: Vec<u8>,
    pub file_type: u8,
}

#[derive(Clone)]
pub struct Model {
    pub geo: Geometry,
    pub sb: Superblock,
    /// Blocks in the image.
    pub image_blocks: u64,
    /// Used inodes, by inode number.
    pub inodes: Vec<InodeInfo>,
    /// Nonzero pointer slots inside indirect blocks, plus the zero slots of
    /// indirect blocks that have holes (a sparse file's).
    pub ind_slots: Vec<PtrSlot>,
    pub dirents: Vec<DirentInfo>,
    /// Some free inode numbers (the first few of the table).
    pub free_inos: Vec<u32>,
    /// Data-area blocks no inode owns.
    pub free_blocks: Vec<u32>,
    /// Journal state of the base.
    pub journal: JournalState,
}

fn le32(img: &[u8], off: usize) -> u32 {
    u32::from_le_bytes(img[off..off + 4].try_into().expect("4 bytes"))
}

impl Model {
    /// Decode a healthy image. Fails with a message on anything a healthy
    /// filesystem would not have (the base must be sane for mutations to
    /// mean something).
    pub fn parse(img: &[u8]) -> Result<Model, String> {
        if img.len() < BS || !img.len().is_multiple_of(BS) {
            return Err(format!(
                "image size {} is not a whole number of {BS}-byte blocks",
                img.len()
            ));
        }
        let image_blocks = (img.len() / BS) as u64;
        let sb = Superblock::from_bytes(img).ok_or("no superblock")?;
        let geo = sb
            .validate(image_blocks)
            .map_err(|e| format!("superblock: {}", e.reason()))?;
        if geo.blocks_count != image_blocks {
            return Err(format!(
                "the image holds {image_blocks} blocks but the filesystem {}: \
                 the base must be the whole filesystem",
                geo.blocks_count
            ));
        }
        let jstart = geo.journal_start as usize * BS;
        let jlen = geo.journal_blocks as usize * BS;
        let journal = JournalState::parse(&img[jstart..jstart + jlen], &geo)
            .map_err(|e| format!("journal: {}", e.reason()))?;
        if journal.pending != 0 {
            return Err(format!(
                "the journal has an unfinished transaction ({} records): mount the \
                 base once so that it is rolled back",
                journal.pending
            ));
        }

        let mut inodes = Vec::new();
        let mut free_inos = Vec::new();
        for ino in 1..=geo.inodes_count {
            let (block, o) = inode_location(&geo, ino).expect("in range");
            let off = block as usize * BS + o;
            let d = Inode::from_bytes(&img[off..]).expect("slot in image");
            if d.is_free() {
                if free_inos.len() < 8 {
                    free_inos.push(ino);
                }
                continue;
            }
            d.validate(ino, geo.blocks_count)
                .map_err(|e| format!("inode {ino}: {}", e.reason()))?;
            let kind = match d.mode.get() & S_IFMT {
                S_IFDIR => FileKind::Dir,
                S_IFREG => FileKind::Reg,
                S_IFLNK => FileKind::Symlink,
                _ => unreachable!("validate accepts only these types"),
            };
            inodes.push(InodeInfo {
                ino,
                off,
                kind,
                inode: d,
                path: String::new(),
                slots: Vec::new(),
                data_blocks: Vec::new(),
                ind_blocks: Vec::new(),
            });
        }

        let mut ind_slots = Vec::new();
        let mut owned: HashSet<u32> = HashSet::new();
        for info in &mut inodes {
            map_inode(img, &geo, info, &mut ind_slots)?;
            for &b in info.data_blocks.iter().chain(&info.ind_blocks) {
                if !owned.insert(b) {
                    return Err(format!("block {b} is owned twice (inode {})", info.ino));
                }
            }
        }

        // Directory entries, and paths by a walk from the root.
        let mut dirents = Vec::new();
        for info in inodes.iter().filter(|i| i.kind == FileKind::Dir) {
            let nblocks = info.inode.size.get() as usize / BS;
            for &b in info.data_blocks.iter().take(nblocks) {
                let base = b as usize * BS;
                for r in block_entries(&img[base..base + BS]) {
                    let e = r.map_err(|(s, e)| {
                        format!("inode {}: slot {s}: {}", info.ino, e.reason())
                    })?;
                    dirents.push(DirentInfo {
                        off: base + e.slot * DIRENT_SIZE,
                        dir: info.ino,
                        ino: e.ino,
                        name: e.name().to_vec(),
                        file_type: e.file_type,
                    });
                }
            }
        }
        let index: BTreeMap<u32, usize> =
            inodes.iter().enumerate().map(|(i, n)| (n.ino, i)).collect();
        let root = *index.get(&ROOT_INO).ok_or("no root inode")?;
        inodes[root].path = "/".into();
        let mut queue = VecDeque::from([ROOT_INO]);
        let mut seen = HashSet::from([ROOT_INO]);
        while let Some(dir) = queue.pop_front() {
            let dpath = inodes[index[&dir]].path.clone();
            for e in dirents.iter().filter(|e| e.dir == dir) {
                let Some(&i) = index.get(&e.ino) else {
                    return Err(format!("entry in inode {dir} names free inode {}", e.ino));
                };
                if !seen.insert(e.ino) {
                    continue;
                }
                let sep = if dpath == "/" { "" } else { "/" };
                inodes[i].path = format!("{dpath}{sep}{}", String::from_utf8_lossy(&e.name));
                if inodes[i].kind == FileKind::Dir {
                    queue.push_back(e.ino);
                }
            }
        }
        for info in &mut inodes {
            if info.path.is_empty() {
                info.path = format!("<unnamed inode {}>", info.ino);
            }
        }

        let free_blocks: Vec<u32> = (geo.data_start..geo.blocks_count)
            .map(|b| b as u32)
            .filter(|b| !owned.contains(b))
            .take(8)
            .collect();
        Ok(Model {
            geo,
            sb,
            image_blocks,
            inodes,
            ind_slots,
            dirents,
            free_inos,
            free_blocks,
            journal,
        })
    }

    pub fn inode(&self, ino: u32) -> Option<&InodeInfo> {
        self.inodes.iter().find(|i| i.ino == ino)
    }

    /// Who owns block `b` (data or indirect), if anyone.
    pub fn owner_of(&self, b: u32) -> Option<u32> {
        self.inodes
            .iter()
            .find(|i| i.data_blocks.contains(&b) || i.ind_blocks.contains(&b))
            .map(|i| i.ino)
    }

    /// Byte range of the journal region.
    pub fn journal_range(&self) -> (usize, usize) {
        let s = self.geo.journal_start as usize * BS;
        (s, s + self.geo.journal_blocks as usize * BS)
    }

    pub fn of_kind(&self, k: FileKind) -> Vec<&InodeInfo> {
        self.inodes.iter().filter(|i| i.kind == k).collect()
    }
}

/// Fill in the pointer slots and blocks of `info`.
fn map_inode(
    img: &[u8],
    geo: &Geometry,
    info: &mut InodeInfo,
    ind_slots: &mut Vec<PtrSlot>,
) -> Result<(), String> {
    let d = info.inode;
    let base = info.off;
    for i in 0..NDIRECT {
        let v = d.direct[i].get();
        info.slots.push(PtrSlot {
            off: base + DIRECT_OFF + i * 4,
            owner: info.ino,
            name: format!("direct[{i}]"),
            value: v,
        });
        if v != 0 {
            info.data_blocks.push(v);
        }
    }
    let roots = [
        ("indirect", d.indirect.get(), 1u32),
        ("dindirect", d.dindirect.get(), 2),
        ("tindirect", d.tindirect.get(), 3),
    ];
    for (k, (name, v, level)) in roots.into_iter().enumerate() {
        info.slots.push(PtrSlot {
            off: base + DIRECT_OFF + (NDIRECT + k) * 4,
            owner: info.ino,
            name: name.into(),
            value: v,
        });
        if v != 0 {
            walk_indirect(img, geo, info, v, level, name, ind_slots)?;
        }
    }
    Ok(())
}

fn walk_indirect(
    img: &[u8],
    geo: &Geometry,
    info: &mut InodeInfo,
    block: u32,
    level: u32,
    root: &str,
    ind_slots: &mut Vec<PtrSlot>,
) -> Result<(), String> {
    let b = block as u64;
    if b < geo.data_start || b >= geo.blocks_count {
        return Err(format!(
            "inode {}: indirect block {block} outside the data area",
            info.ino
        ));
    }
    info.ind_blocks.push(block);
    let mut holes = Vec::new();
    let mut any = false;
    for i in 0..PTRS_PER_BLOCK {
        let off = block as usize * BS + i * 4;
        let v = le32(img, off);
        let slot = PtrSlot {
            off,
            owner: info.ino,
            name: format!("entry {i} of {root} block {block} (level {level})"),
            value: v,
        };
        if v == 0 {
            if holes.len() < 4 {
                holes.push(slot);
            }
            continue;
        }
        any = true;
        ind_slots.push(slot);
        if level == 1 {
            info.data_blocks.push(v);
        } else {
            walk_indirect(img, geo, info, v, level - 1, root, ind_slots)?;
        }
    }
    // Holes among used entries (a sparse file) are worth aiming at too.
    if any {
        ind_slots.extend(holes);
    }
    Ok(())
}
