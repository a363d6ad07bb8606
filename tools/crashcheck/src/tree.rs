//! Reading the tree under `w` straight from image bytes.

use std::collections::BTreeMap;

use ferrofs_format::{
    block_entries, map_path, xattr_entries, Geometry, Inode, MapPath, Pod, Superblock, BLOCK_SIZE,
    ROOT_INO, S_IFCHR, S_IFDIR, S_IFLNK, S_IFMT, S_IFREG, XATTR_USER,
};
use ferrofs_image::inode_location;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    Dir,
    /// Contents, `user.` extended attributes (name with its prefix) and
    /// the inode's chattr flags (`INODE_FL_*`).
    File(Vec<u8>, BTreeMap<String, Vec<u8>>, u16),
    Symlink(String),
    /// A character device 0:0 with mode 0 (what RENAME_WHITEOUT leaves).
    Whiteout,
}

/// Path (from the filesystem root, e.g. `w/a`) -> (inode number, kind).
pub type Tree = BTreeMap<String, (u32, Kind)>;

pub fn geometry(img: &[u8]) -> Result<Geometry, String> {
    let sb = Superblock::from_bytes(img).ok_or("image smaller than a superblock")?;
    sb.validate((img.len() / BLOCK_SIZE) as u64)
        .map_err(|e| format!("superblock: {}", e.reason()))
}

struct Reader<'a> {
    img: &'a [u8],
    geo: Geometry,
}

impl Reader<'_> {
    fn block(&self, b: u64) -> Result<&[u8], String> {
        if b < self.geo.data_start || b >= self.geo.blocks_count {
            return Err(format!("block pointer {b} outside the data area"));
        }
        let o = b as usize * BLOCK_SIZE;
        self.img
            .get(o..o + BLOCK_SIZE)
            .ok_or_else(|| format!("block {b} past the image"))
    }

    fn inode(&self, ino: u32) -> Result<Inode, String> {
        let (b, off) = inode_location(&self.geo, ino).ok_or(format!("inode {ino} out of range"))?;
        let o = b as usize * BLOCK_SIZE + off;
        let d = self
            .img
            .get(o..)
            .and_then(Inode::from_bytes)
            .ok_or(format!("inode {ino} past the image"))?;
        if d.is_free() {
            return Err(format!("inode {ino} is named but free"));
        }
        d.validate(ino, self.geo.blocks_count)
            .map_err(|e| format!("inode {ino}: {}", e.reason()))?;
        Ok(d)
    }

    /// Physical block of logical block `l`, 0 for a hole.
    fn map(&self, d: &Inode, l: u64) -> Result<u64, String> {
        let Some(path) = map_path(l) else {
            return Ok(0);
        };
        let (root, idx): (u32, &[usize]) = match &path {
            MapPath::Direct(i) => return Ok(d.direct[*i].get() as u64),
            MapPath::Ind(p) => (d.indirect.get(), &p[..]),
            MapPath::Dind(p) => (d.dindirect.get(), &p[..]),
            MapPath::Tind(p) => (d.tindirect.get(), &p[..]),
        };
        let mut b = root as u64;
        for &i in idx {
            if b == 0 {
                return Ok(0);
            }
            let blk = self.block(b)?;
            b = u32::from_le_bytes([blk[i * 4], blk[i * 4 + 1], blk[i * 4 + 2], blk[i * 4 + 3]])
                as u64;
        }
        Ok(b)
    }

    fn contents(&self, d: &Inode) -> Result<Vec<u8>, String> {
        let size = d.size.get();
        if size > 64 << 20 {
            return Err(format!("file size {size} implausible"));
        }
        let mut out = vec![0u8; size as usize];
        for (l, chunk) in out.chunks_mut(BLOCK_SIZE).enumerate() {
            let b = self.map(d, l as u64)?;
            if b != 0 {
                chunk.copy_from_slice(&self.block(b)?[..chunk.len()]);
            }
        }
        Ok(out)
    }

    /// The `user.` attributes of inode `ino` (its xattr block, checked).
    fn xattrs(&self, ino: u32, d: &Inode) -> Result<BTreeMap<String, Vec<u8>>, String> {
        let mut out = BTreeMap::new();
        let b = d.xattr.get() as u64;
        if b == 0 {
            return Ok(out);
        }
        let blk = self.block(b)?;
        let it = xattr_entries(blk, ino)
            .map_err(|e| format!("inode {ino}: xattr block {b}: {}", e.reason()))?;
        for e in it.filter(|e| e.index == XATTR_USER) {
            out.insert(
                format!("user.{}", String::from_utf8_lossy(e.name)),
                e.value.to_vec(),
            );
        }
        Ok(out)
    }

    fn entries(&self, dir: &Inode) -> Result<Vec<(String, u32)>, String> {
        let mut v = Vec::new();
        for l in 0..dir.size.get() / BLOCK_SIZE as u64 {
            let b = self.map(dir, l)?;
            if b == 0 {
                continue;
            }
            let blk = self.block(b)?;
            for r in block_entries(blk) {
                let e = r.map_err(|(s, e)| format!("block {b} slot {s}: {}", e.reason()))?;
                v.push((String::from_utf8_lossy(e.name()).into_owned(), e.ino));
            }
        }
        Ok(v)
    }

    fn walk(&self, path: &str, ino: u32, out: &mut Tree, depth: u32) -> Result<(), String> {
        if depth > 32 {
            return Err("directory tree too deep (a loop?)".into());
        }
        let d = self.inode(ino)?;
        let kind = match d.mode.get() & S_IFMT {
            S_IFDIR => Kind::Dir,
            S_IFREG => Kind::File(self.contents(&d)?, self.xattrs(ino, &d)?, d.flags.get()),
            S_IFLNK => {
                let b = self.block(d.direct[0].get() as u64)?;
                let n = (d.size.get() as usize).min(BLOCK_SIZE);
                Kind::Symlink(String::from_utf8_lossy(&b[..n]).into_owned())
            }
            S_IFCHR if d.mode.get() & 0o7777 == 0 && d.rdev.get() == 0 => Kind::Whiteout,
            m => return Err(format!("inode {ino}: mode {m:o}")),
        };
        let is_dir = kind == Kind::Dir;
        if out.insert(path.to_string(), (ino, kind)).is_some() {
            return Err(format!("{path} seen twice"));
        }
        if is_dir {
            for (name, child) in self.entries(&d)? {
                self.walk(&format!("{path}/{name}"), child, out, depth + 1)?;
            }
        }
        Ok(())
    }
}

/// The tree under the root: `w` (and `w1`, ... of a workload of several
/// threads), whatever else is there too.
pub fn read(img: &[u8]) -> Result<Tree, String> {
    let geo = geometry(img)?;
    let r = Reader { img, geo };
    let root = r.inode(ROOT_INO)?;
    let mut t = Tree::new();
    for (name, ino) in r.entries(&root)? {
        r.walk(&name, ino, &mut t, 0)?;
    }
    Ok(t)
}
