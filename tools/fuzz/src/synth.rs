//! A populated image made on the host, without the kernel: the layout of
//! [`crate::layout`] written straight into an image, as mkfs and then the
//! module would leave it (block maps with indirect blocks, directory slots,
//! NUL-terminated symlink targets, bitmap, checksums, a used journal
//! header). The host tests fuzz it; `make-base --synthetic` writes one.
//! The guest's `make-base` is the real thing and is what `tests/60-fuzz.sh`
//! uses.

use std::collections::BTreeMap;

use ferrofs_format::{
    dt_from_mode, Dirent, Geometry, Inode, JournalHeader, MapPath, Pod, Superblock, BLOCK_SIZE,
    DIRENTS_PER_BLOCK, DIRENT_SIZE, ROOT_INO, S_IFDIR, S_IFLNK, S_IFMT, S_IFREG,
};
use ferrofs_image::{inode_location, Bitmap};

use crate::layout::{fill_byte, layout, Node};

const BS: usize = BLOCK_SIZE;

struct Builder {
    img: Vec<u8>,
    geo: Geometry,
    bitmap: Bitmap,
    next_block: u64,
    inodes: BTreeMap<u32, Inode>,
    /// Entries of each directory, in creation order.
    entries: BTreeMap<u32, Vec<(Vec<u8>, u32, u8)>>,
    names: BTreeMap<String, u32>,
}

impl Builder {
    fn new(blocks: u64) -> Builder {
        let geo = Geometry::for_blocks(blocks, None).expect("a valid size");
        let mut bitmap = Bitmap::zeroed(geo.bitmap_blocks);
        bitmap.set_range(0, geo.data_start);
        bitmap.set_range(geo.blocks_count, bitmap.len());
        let mut b = Builder {
            img: vec![0; blocks as usize * BS],
            geo,
            bitmap,
            next_block: geo.data_start,
            inodes: BTreeMap::new(),
            entries: BTreeMap::new(),
            names: BTreeMap::new(),
        };
        let root = b.new_inode(S_IFDIR | 0o755, ROOT_INO);
        assert_eq!(root, ROOT_INO);
        b.inodes.get_mut(&ROOT_INO).unwrap().nlink.set(2);
        b.names.insert(String::new(), ROOT_INO);
        b
    }

    fn alloc_block(&mut self) -> u32 {
        let b = self.next_block;
        assert!(b < self.geo.blocks_count, "synthetic image full");
        self.next_block += 1;
        self.bitmap.set(b);
        b as u32
    }

    fn new_inode(&mut self, mode: u16, parent: u32) -> u32 {
        let ino = self.inodes.len() as u32 + 1;
        let mut d = Inode::zeroed();
        d.mode.set(mode);
        d.nlink.set(1);
        d.parent.set(parent);
        for t in [&mut d.atime_sec, &mut d.mtime_sec, &mut d.ctime_sec] {
            t.set(1_700_000_000);
        }
        self.inodes.insert(ino, d);
        ino
    }

    /// Map logical block `lblk` of `ino` to a fresh block; returns it.
    fn map(&mut self, ino: u32, lblk: u64) -> u32 {
        let path = ferrofs_format::map_path(lblk).expect("within the largest file");
        let mut d = self.inodes[&ino];
        let mut new = 0u64;
        let (slot, idx): (&mut ferrofs_format::Le32, Vec<usize>) = match path {
            MapPath::Direct(i) => (&mut d.direct[i], vec![]),
            MapPath::Ind(p) => (&mut d.indirect, p.to_vec()),
            MapPath::Dind(p) => (&mut d.dindirect, p.to_vec()),
            MapPath::Tind(p) => (&mut d.tindirect, p.to_vec()),
        };
        let mut b = slot.get();
        if b == 0 {
            b = self.alloc_block();
            new += 1;
            slot.set(b);
        }
        for i in idx {
            let off = b as usize * BS + i * 4;
            let mut next = u32::from_le_bytes(self.img[off..off + 4].try_into().unwrap());
            if next == 0 {
                next = self.alloc_block();
                new += 1;
                self.img[off..off + 4].copy_from_slice(&next.to_le_bytes());
            }
            b = next;
        }
        d.blocks.set(d.blocks.get() + new);
        self.inodes.insert(ino, d);
        b
    }

    fn lookup(&self, path: &str) -> u32 {
        self.names[path]
    }

    fn split(path: &str) -> (&str, &str) {
        match path.rfind('/') {
            Some(i) => (&path[..i], &path[i + 1..]),
            None => ("", path),
        }
    }

    fn add_name(&mut self, path: &str, ino: u32) {
        let (dir, name) = Self::split(path);
        let dino = self.lookup(dir);
        let dt = dt_from_mode(self.inodes[&ino].mode.get());
        self.entries
            .entry(dino)
            .or_default()
            .push((name.as_bytes().to_vec(), ino, dt));
        self.names.insert(path.to_string(), ino);
    }

    fn create(&mut self, node: &Node) {
        match node {
            Node::Dir { path } => {
                let parent = self.lookup(Self::split(path).0);
                let ino = self.new_inode(S_IFDIR | 0o755, parent);
                self.inodes.get_mut(&ino).unwrap().nlink.set(2);
                let p = self.inodes.get_mut(&parent).unwrap();
                p.nlink.set(p.nlink.get() + 1);
                self.add_name(path, ino);
            }
            Node::File { path, blocks, size } => {
                let ino = self.new_inode(S_IFREG | 0o644, 0);
                for &l in blocks {
                    let b = self.map(ino, l) as usize;
                    self.img[b * BS..(b + 1) * BS].fill(fill_byte(path, l));
                }
                self.inodes.get_mut(&ino).unwrap().size.set(*size);
                // A partial last block reads as zeros past the end.
                if size % BS as u64 != 0 {
                    let last = size / BS as u64;
                    if blocks.contains(&last) {
                        let b = self.block_of(ino, last) as usize;
                        let tail = (size % BS as u64) as usize;
                        self.img[b * BS + tail..(b + 1) * BS].fill(0);
                    }
                }
                self.add_name(path, ino);
            }
            Node::Symlink { path, target } => {
                let ino = self.new_inode(S_IFLNK | 0o777, 0);
                let b = self.map(ino, 0) as usize;
                self.img[b * BS..b * BS + target.len()].copy_from_slice(target.as_bytes());
                self.inodes
                    .get_mut(&ino)
                    .unwrap()
                    .size
                    .set(target.len() as u64);
                self.add_name(path, ino);
            }
            Node::Link { path, to } => {
                let ino = self.lookup(to);
                let d = self.inodes.get_mut(&ino).unwrap();
                d.nlink.set(d.nlink.get() + 1);
                self.add_name(path, ino);
            }
        }
    }

    fn block_of(&self, ino: u32, lblk: u64) -> u32 {
        let d = &self.inodes[&ino];
        match ferrofs_format::map_path(lblk).unwrap() {
            MapPath::Direct(i) => d.direct[i].get(),
            MapPath::Ind([i]) => self.ptr(d.indirect.get(), i),
            MapPath::Dind([i, j]) => self.ptr(self.ptr(d.dindirect.get(), i), j),
            MapPath::Tind([i, j, k]) => self.ptr(self.ptr(self.ptr(d.tindirect.get(), i), j), k),
        }
    }

    fn ptr(&self, block: u32, i: usize) -> u32 {
        let off = block as usize * BS + i * 4;
        u32::from_le_bytes(self.img[off..off + 4].try_into().unwrap())
    }

    fn finish(mut self) -> Vec<u8> {
        // Directory blocks: the root's first block is the first data block,
        // as mkfs makes it.
        let dirs: Vec<u32> = self
            .inodes
            .iter()
            .filter(|(_, d)| d.mode.get() & S_IFMT == S_IFDIR)
            .map(|(&i, _)| i)
            .collect();
        for dino in dirs {
            let entries = self.entries.get(&dino).cloned().unwrap_or_default();
            // As the module does it: an empty directory has no block (the
            // root keeps the one mkfs gave it).
            let mut nblocks = entries.len().div_ceil(DIRENTS_PER_BLOCK);
            if dino == ROOT_INO {
                nblocks = nblocks.max(1);
            }
            for l in 0..nblocks {
                self.map(dino, l as u64);
            }
            for (n, (name, ino, dt)) in entries.iter().enumerate() {
                let b = self.block_of(dino, (n / DIRENTS_PER_BLOCK) as u64) as usize;
                let off = b * BS + (n % DIRENTS_PER_BLOCK) * DIRENT_SIZE;
                let e = Dirent::new(*ino, name, *dt).expect("a valid name");
                self.img[off..off + DIRENT_SIZE].copy_from_slice(e.as_bytes());
            }
            self.inodes
                .get_mut(&dino)
                .unwrap()
                .size
                .set((nblocks * BS) as u64);
        }
        for (&ino, d) in &self.inodes {
            let mut d = *d;
            d.update_checksum(ino);
            let (block, o) = inode_location(&self.geo, ino).unwrap();
            let off = block as usize * BS + o;
            self.img[off..off + 256].copy_from_slice(d.as_bytes());
        }
        let g = self.geo;
        let bm = g.bitmap_start as usize * BS;
        self.img[bm..bm + self.bitmap.as_bytes().len()].copy_from_slice(self.bitmap.as_bytes());
        let sb = Superblock::new(&g, [7; 16], b"synthetic", 1_700_000_000);
        self.img[..512].copy_from_slice(sb.as_bytes());
        // A journal that has been used (and left clean): magic, seq_done.
        let j = g.journal_start as usize * BS;
        self.img[j..j + 64].copy_from_slice(JournalHeader::new(17).as_bytes());
        self.img
    }
}

/// The layout written into an image of `blocks` blocks (the default
/// geometry for that size).
pub fn build(blocks: u64) -> Vec<u8> {
    let mut b = Builder::new(blocks);
    // The root's block comes first (data_start), as with mkfs.
    b.map(ROOT_INO, 0);
    for n in layout() {
        b.create(&n);
    }
    b.finish()
}

/// The default synthetic base: 16 MiB, as `make-base` makes in the guest.
pub fn default_base() -> Vec<u8> {
    build(4096)
}
