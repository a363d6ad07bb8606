//! Runs the built fsck.ferrofs on images built here, clean and damaged in
//! one way each, and checks what it reports, its exit status and what `-y`
//! leaves behind.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use ferrofs_format::*;

const FSCK: &str = env!("CARGO_BIN_EXE_fsck-ferrofs");
const BS: usize = BLOCK_SIZE;
const BLOCKS: u64 = 1024;

// ---- a small image builder -------------------------------------------------

/// An image under construction, written the way the kernel writes it.
#[derive(Clone)]
struct Fs {
    geo: Geometry,
    img: Vec<u8>,
    next_block: u64,
    next_ino: u32,
}

impl Fs {
    /// A fresh filesystem as mkfs makes it: an empty root with one block.
    fn new() -> Fs {
        let geo = Geometry::for_blocks(BLOCKS, None).unwrap();
        let mut fs = Fs {
            geo,
            img: vec![0; BLOCKS as usize * BS],
            next_block: geo.data_start,
            next_ino: ROOT_INO + 1,
        };
        let sb = Superblock::new(&geo, [1; 16], b"test", 1_700_000_000);
        fs.img[..SUPERBLOCK_SIZE].copy_from_slice(sb.as_bytes());
        for b in 0..geo.data_start {
            fs.set_bit(b, true);
        }
        let bits = geo.bitmap_blocks as u64 * BS as u64 * 8;
        for b in BLOCKS..bits {
            fs.set_bit(b, true);
        }
        let mut root = Inode::zeroed();
        root.mode.set(S_IFDIR | 0o755);
        root.nlink.set(2);
        root.parent.set(ROOT_INO);
        fs.put_inode(ROOT_INO, root);
        fs.grow_dir(ROOT_INO);
        fs
    }

    fn bit(&self, b: u64) -> bool {
        let off = self.geo.bitmap_start as usize * BS + (b / 8) as usize;
        self.img[off] & (1 << (b % 8)) != 0
    }

    fn set_bit(&mut self, b: u64, used: bool) {
        let off = self.geo.bitmap_start as usize * BS + (b / 8) as usize;
        if used {
            self.img[off] |= 1 << (b % 8);
        } else {
            self.img[off] &= !(1 << (b % 8));
        }
    }

    fn alloc_block(&mut self) -> u32 {
        let b = self.next_block;
        self.next_block += 1;
        self.set_bit(b, true);
        b as u32
    }

    fn block_mut(&mut self, b: u32) -> &mut [u8] {
        &mut self.img[b as usize * BS..(b as usize + 1) * BS]
    }

    fn slot_off(&self, ino: u32) -> usize {
        self.geo.itable_start as usize * BS + (ino as usize - 1) * INODE_SIZE
    }

    fn inode(&self, ino: u32) -> Inode {
        Inode::from_bytes(&self.img[self.slot_off(ino)..]).unwrap()
    }

    /// Writes `d` to slot `ino` with its checksum.
    fn put_inode(&mut self, ino: u32, mut d: Inode) {
        d.update_checksum(ino);
        self.put_raw_inode(ino, d);
    }

    /// Writes `d` to slot `ino` as it is.
    fn put_raw_inode(&mut self, ino: u32, d: Inode) {
        let off = self.slot_off(ino);
        self.img[off..off + INODE_SIZE].copy_from_slice(d.as_bytes());
    }

    /// Changes inode `ino` and recomputes its checksum.
    fn edit_inode(&mut self, ino: u32, f: impl FnOnce(&mut Inode)) {
        let mut d = self.inode(ino);
        f(&mut d);
        self.put_inode(ino, d);
    }

    fn new_inode(&mut self, mode: u16, parent: u32) -> (u32, Inode) {
        let ino = self.next_ino;
        self.next_ino += 1;
        let mut d = Inode::zeroed();
        d.mode.set(mode);
        d.nlink.set(1);
        d.parent.set(parent);
        (ino, d)
    }

    /// Appends a zeroed block to directory `dir` (direct blocks only).
    fn grow_dir(&mut self, dir: u32) -> u32 {
        let b = self.alloc_block();
        self.edit_inode(dir, |d| {
            let n = (d.size.get() / BS as u64) as usize;
            d.direct[n].set(b);
            d.size.set((n as u64 + 1) * BS as u64);
            d.blocks.set(d.blocks.get() + 1);
        });
        b
    }

    /// Writes an entry into the first free slot of `dir`; returns
    /// (block, slot).
    /// A name longer than one slot takes two free slots in a row.
    fn add_entry(&mut self, dir: u32, name: &[u8], ino: u32, dt: u8) -> (u32, usize) {
        let (e, cont) = Dirent::new_entry(ino, name, dt).unwrap();
        let need = 1 + cont.is_some() as usize;
        let d = self.inode(dir);
        let nblocks = d.size.get() as usize / BS;
        let mut at = None;
        'find: for l in 0..nblocks {
            let b = d.direct[l].get();
            let mut run = 0;
            for s in 0..DIRENTS_PER_BLOCK {
                let off = b as usize * BS + s * DIRENT_SIZE;
                run = if self.img[off..off + 4] == [0; 4] {
                    run + 1
                } else {
                    0
                };
                if run == need {
                    at = Some((b, s + 1 - need));
                    break 'find;
                }
            }
        }
        let (b, s) = at.unwrap_or_else(|| (self.grow_dir(dir), 0));
        let off = s * DIRENT_SIZE;
        self.block_mut(b)[off..off + DIRENT_SIZE].copy_from_slice(e.as_bytes());
        if let Some(c) = cont {
            self.block_mut(b)[off + DIRENT_SIZE..off + 2 * DIRENT_SIZE]
                .copy_from_slice(c.as_bytes());
        }
        (b, s)
    }

    fn set_version(&mut self, v: u32) {
        let mut sb = Superblock::from_bytes(&self.img).unwrap();
        sb.version.set(v);
        if v < VERSION_SLOTS {
            // Older images have one journal area.
            sb.journal_slots.set(0);
            self.geo.journal_slots = 1;
        }
        sb.update_checksum();
        self.img[..SUPERBLOCK_SIZE].copy_from_slice(sb.as_bytes());
    }

    /// Where the entry `name` of `dir` is: (block, slot).
    fn find_entry(&self, dir: u32, name: &[u8]) -> (u32, usize) {
        let d = self.inode(dir);
        for l in 0..d.size.get() as usize / BS {
            let b = d.direct[l].get();
            for s in 0..DIRENTS_PER_BLOCK {
                let off = b as usize * BS + s * DIRENT_SIZE;
                let e = Dirent::from_bytes(&self.img[off..]).unwrap();
                if e.ino.get() != 0 && e.name() == Ok(name) {
                    return (b, s);
                }
            }
        }
        panic!("no entry {name:?} in inode {dir}");
    }

    /// Retires the entry `name` of `dir` as the kernel does: ino = 0.
    fn clear_entry(&mut self, dir: u32, name: &[u8]) {
        let (b, s) = self.find_entry(dir, name);
        self.block_mut(b)[s * DIRENT_SIZE..s * DIRENT_SIZE + 4].fill(0);
    }

    fn mkdir(&mut self, parent: u32, name: &[u8]) -> u32 {
        let (ino, mut d) = self.new_inode(S_IFDIR | 0o755, parent);
        d.nlink.set(2);
        self.put_inode(ino, d);
        self.grow_dir(ino);
        self.add_entry(parent, name, ino, DT_DIR);
        self.edit_inode(parent, |p| p.nlink.set(p.nlink.get() + 1));
        ino
    }

    /// A regular file of `size` bytes, every block of it mapped (through the
    /// indirect block past the 12th), each block filled with its number.
    fn file(&mut self, parent: u32, name: &[u8], size: u64) -> u32 {
        let (ino, mut d) = self.new_inode(S_IFREG | 0o644, parent);
        d.size.set(size);
        let n = size.div_ceil(BS as u64) as usize;
        assert!(n <= NDIRECT + PTRS_PER_BLOCK, "single indirect is enough");
        let mut blocks = 0;
        let mut ind = 0;
        for l in 0..n {
            let b = self.alloc_block();
            self.block_mut(b).fill(b as u8);
            blocks += 1;
            if l < NDIRECT {
                d.direct[l].set(b);
            } else {
                if ind == 0 {
                    ind = self.alloc_block();
                    self.block_mut(ind).fill(0);
                    d.indirect.set(ind);
                    blocks += 1;
                }
                let off = (l - NDIRECT) * 4;
                self.block_mut(ind)[off..off + 4].copy_from_slice(&b.to_le_bytes());
            }
        }
        d.blocks.set(blocks);
        self.put_inode(ino, d);
        self.add_entry(parent, name, ino, DT_REG);
        ino
    }

    fn symlink(&mut self, parent: u32, name: &[u8], target: &[u8]) -> u32 {
        let (ino, mut d) = self.new_inode(S_IFLNK | 0o777, parent);
        let b = self.alloc_block();
        self.block_mut(b)[..target.len()].copy_from_slice(target);
        d.direct[0].set(b);
        d.size.set(target.len() as u64);
        d.blocks.set(1);
        self.put_inode(ino, d);
        self.add_entry(parent, name, ino, DT_LNK);
        ino
    }

    /// A second name for `ino`.
    fn link(&mut self, dir: u32, name: &[u8], ino: u32) {
        let dt = dt_from_mode(self.inode(ino).mode.get());
        self.add_entry(dir, name, ino, dt);
        self.edit_inode(ino, |d| d.nlink.set(d.nlink.get() + 1));
    }

    /// The first block past everything allocated: free in the bitmap.
    fn unused_block(&self) -> u64 {
        self.next_block + 5
    }
}

/// The standard tree: root, a subdirectory, files (one through an indirect
/// block), a hard link and a symlink.
struct Sample {
    fs: Fs,
    sub: u32,
    inner: u32,
    small: u32,
    big: u32,
    link: u32,
}

fn sample() -> Sample {
    let mut fs = Fs::new();
    let sub = fs.mkdir(ROOT_INO, b"sub");
    let inner = fs.file(sub, b"inner", 2 * BS as u64);
    let small = fs.file(ROOT_INO, b"small", 100);
    // 14 blocks: 12 direct, 2 through the indirect block.
    let big = fs.file(ROOT_INO, b"big", 14 * BS as u64 - 10);
    fs.link(sub, b"hard", small);
    let link = fs.symlink(ROOT_INO, b"link", b"sub/inner");
    Sample {
        fs,
        sub,
        inner,
        small,
        big,
        link,
    }
}

// ---- running fsck -----------------------------------------------------------

/// A scratch image file, removed on drop.
struct TempImage {
    path: PathBuf,
}

impl TempImage {
    fn new(name: &str, bytes: &[u8]) -> TempImage {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("fsck-tests");
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("{name}-{}.img", std::process::id()));
        fs::write(&path, bytes).unwrap();
        TempImage { path }
    }

    fn bytes(&self) -> Vec<u8> {
        fs::read(&self.path).unwrap()
    }

    fn fs(&self) -> Fs {
        let mut fs = Fs::new();
        fs.img = self.bytes();
        fs
    }

    fn fsck(&self, args: &[&str]) -> Run {
        let out = Command::new(FSCK)
            .args(args)
            .arg(&self.path)
            .output()
            .expect("run fsck");
        Run::new(out)
    }
}

impl Drop for TempImage {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Run {
    fn new(o: Output) -> Run {
        Run {
            code: o.status.code(),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }

    /// The problem lines: everything but fsck's own messages.
    fn problems(&self) -> Vec<&str> {
        self.stdout
            .lines()
            .filter(|l| !l.starts_with("fsck-ferrofs:"))
            .collect()
    }

    fn summary(&self) -> &str {
        self.stdout.lines().last().unwrap_or("")
    }

    #[track_caller]
    fn expect_code(&self, code: i32) -> &Run {
        assert_eq!(
            self.code,
            Some(code),
            "exit status\nstdout:\n{}stderr:\n{}",
            self.stdout,
            self.stderr
        );
        self
    }

    /// Exactly one problem line, starting with `subject` and holding every
    /// piece of `words`.
    #[track_caller]
    fn expect_one(&self, subject: &str, words: &[&str]) -> &Run {
        let p = self.problems();
        assert_eq!(p.len(), 1, "expected one problem, got:\n{}", self.stdout);
        expect_line(p[0], subject, words);
        self
    }
}

#[track_caller]
fn expect_line(line: &str, subject: &str, words: &[&str]) {
    assert!(
        line.starts_with(&format!("{subject}:")),
        "line does not start with {subject:?}: {line}"
    );
    for w in words {
        assert!(line.contains(w), "line lacks {w:?}: {line}");
    }
}

/// Checks a damaged image: -n finds exactly `subject`/`words` (exit 4) and
/// writes nothing; -y fixes it (exit 1) and a rerun is clean (exit 0).
/// Returns the repaired image.
#[track_caller]
fn assert_found_and_fixed(name: &str, fs: &Fs, subject: &str, words: &[&str]) -> Fs {
    let img = TempImage::new(name, &fs.img);
    img.fsck(&["-n"]).expect_code(4).expect_one(subject, words);
    assert!(img.bytes() == fs.img, "-n wrote to the image");
    let r = img.fsck(&["-y"]);
    r.expect_code(1).expect_one(subject, words);
    assert!(r.problems()[0].ends_with("[fixed]"), "{}", r.stdout);
    assert!(
        r.summary().contains("1 problem, 1 fixed"),
        "{}",
        r.summary()
    );
    img.fsck(&[]).expect_code(0);
    img.fs()
}

/// Checks a damaged image whose problem cannot be repaired: -n and -y both
/// find exactly it (exit 4), and -y writes nothing.
#[track_caller]
fn assert_found_not_fixed(name: &str, fs: &Fs, subject: &str, words: &[&str]) {
    let img = TempImage::new(name, &fs.img);
    img.fsck(&["-n"]).expect_code(4).expect_one(subject, words);
    img.fsck(&["-y"]).expect_code(4).expect_one(subject, words);
    assert!(img.bytes() == fs.img, "-y changed an unrepairable image");
}

// ---- clean images -----------------------------------------------------------

#[test]
fn sample_tree_is_clean_exit_0_with_counts_in_summary() {
    let s = sample();
    let img = TempImage::new("clean", &s.fs.img);
    let r = img.fsck(&[]);
    r.expect_code(0);
    assert!(r.problems().is_empty(), "{}", r.stdout);
    // root, sub, inner, small, big, link; metadata + 2 dir blocks + 2 + 1 +
    // 14 + 1 indirect + 1 symlink block.
    let used = s.fs.geo.data_start + 21;
    let want = format!(
        "fsck-ferrofs: {}: 6 inodes, {used} blocks used, 0 problems, 0 fixed",
        img.path.display()
    );
    assert_eq!(r.summary(), want);
}

#[test]
fn y_on_a_clean_image_exits_0_and_writes_nothing() {
    let s = sample();
    let img = TempImage::new("clean-y", &s.fs.img);
    img.fsck(&["-y"]).expect_code(0);
    assert!(img.bytes() == s.fs.img, "-y changed a clean image");
}

#[test]
fn fresh_filesystem_with_only_the_root_is_clean() {
    let fs = Fs::new();
    let img = TempImage::new("fresh", &fs.img);
    let r = img.fsck(&["-n"]);
    r.expect_code(0);
    assert!(r.summary().contains(": 1 inode, "), "{}", r.summary());
}

#[test]
fn verbose_names_the_passes_and_stays_clean() {
    let s = sample();
    let img = TempImage::new("verbose", &s.fs.img);
    let r = img.fsck(&["-v"]);
    r.expect_code(0);
    assert!(r.problems().is_empty(), "{}", r.stdout);
    assert!(r.stdout.contains("superblock: 1024 blocks"), "{}", r.stdout);
    assert!(
        r.stdout.contains("checking the block bitmap"),
        "{}",
        r.stdout
    );
}

#[test]
fn image_made_by_mkfs_is_clean_when_mkfs_is_built() {
    // mkfs-ferrofs is another package's binary: found beside ours when the
    // workspace's tests are built together, skipped otherwise.
    let mkfs = Path::new(FSCK).with_file_name("mkfs-ferrofs");
    if !mkfs.exists() {
        eprintln!("skipped: {} not built", mkfs.display());
        return;
    }
    let img = TempImage::new("mkfs", &vec![0xAAu8; 4 << 20]);
    let o = Command::new(&mkfs)
        .args(["-q", "-f"])
        .arg(&img.path)
        .output()
        .unwrap();
    assert!(o.status.success(), "mkfs failed: {o:?}");
    let r = img.fsck(&["-n"]);
    r.expect_code(0);
    assert!(r.summary().contains(": 1 inode, "), "{}", r.summary());
}

#[test]
fn n_and_default_never_write_a_damaged_image() {
    let mut s = sample();
    let b = s.fs.unused_block();
    s.fs.set_bit(b, true);
    s.fs.edit_inode(s.small, |d| d.nlink.set(9));
    s.fs.clear_entry(ROOT_INO, b"big");
    let img = TempImage::new("readonly", &s.fs.img);
    for args in [&[][..], &["-n"][..], &["-nv"][..]] {
        let r = img.fsck(args);
        r.expect_code(4);
        assert_eq!(r.problems().len(), 3, "{}", r.stdout);
        assert!(
            r.summary()
                .ends_with("3 problems, 0 fixed (3 fixable with -y)"),
            "{}",
            r.summary()
        );
        assert!(img.bytes() == s.fs.img, "{args:?} wrote to the image");
    }
}

// ---- repairable damage ---------------------------------------------------------

#[test]
fn leaked_block_is_found_and_freed() {
    let mut s = sample();
    let b = s.fs.unused_block();
    s.fs.set_bit(b, true);
    let fixed = assert_found_and_fixed("leaked", &s.fs, &format!("block {b}"), &["leaked"]);
    assert!(!fixed.bit(b), "bit still set");
}

#[test]
fn leaked_run_of_blocks_is_one_problem() {
    let mut s = sample();
    let b = s.fs.unused_block();
    for i in b..b + 4 {
        s.fs.set_bit(i, true);
    }
    assert_found_and_fixed(
        "leaked-run",
        &s.fs,
        &format!("blocks {b}-{}", b + 3),
        &["leaked"],
    );
}

#[test]
fn orphan_file_is_freed_with_its_data_and_indirect_blocks() {
    let mut s = sample();
    let d = s.fs.inode(s.big);
    let mut blocks: Vec<u64> = d.direct.iter().map(|p| p.get() as u64).collect();
    let ind = d.indirect.get();
    blocks.push(ind as u64);
    let ib = &s.fs.img[ind as usize * BS..];
    blocks.push(u32::from_le_bytes(ib[0..4].try_into().unwrap()) as u64);
    blocks.push(u32::from_le_bytes(ib[4..8].try_into().unwrap()) as u64);
    // A crash between retiring the name and dropping the link count.
    s.fs.clear_entry(ROOT_INO, b"big");
    let fixed = assert_found_and_fixed(
        "orphan",
        &s.fs,
        &format!("inode {}", s.big),
        &["orphan", "regular file", "not reachable"],
    );
    assert!(
        fixed.inode(s.big).as_bytes().iter().all(|&b| b == 0),
        "slot not zeroed"
    );
    for b in blocks {
        assert!(!fixed.bit(b), "block {b} of the orphan still marked used");
    }
}

/// A symlink unlinked and evicted up to the crash: its target block freed
/// (one transaction), the inode not yet (the next). Mount frees the
/// orphan; it is no problem. The same missing block on a linked symlink is.
#[test]
fn orphan_symlink_without_its_target_block_is_no_problem_but_a_linked_one_is() {
    let mut s = sample();
    let b = s.fs.inode(s.link).direct[0].get() as u64;
    let mut linked = s.fs.clone();
    s.fs.clear_entry(ROOT_INO, b"link");
    s.fs.edit_inode(s.link, |d| {
        d.nlink.set(0);
        d.direct[0].set(0);
        d.blocks.set(0);
    });
    s.fs.set_bit(b, false);
    let img = TempImage::new("orphan-symlink", &s.fs.img);
    let r = img.fsck(&["-n"]);
    r.expect_code(0);
    assert!(r.stdout.contains("orphan (link count 0)"), "{}", r.stdout);
    // Still named, with link count 1: a damaged symlink.
    linked.edit_inode(s.link, |d| {
        d.direct[0].set(0);
        d.blocks.set(0);
    });
    linked.set_bit(b, false);
    let img = TempImage::new("linked-symlink", &linked.img);
    img.fsck(&["-n"]).expect_code(4).expect_one(
        &format!("inode {}", s.link),
        &["symlink has no target block"],
    );
}

#[test]
fn orphan_directory_is_freed_with_its_contents_and_links_are_recounted() {
    let mut s = sample();
    s.fs.clear_entry(ROOT_INO, b"sub");
    let img = TempImage::new("orphan-dir", &s.fs.img);
    let r = img.fsck(&["-y"]);
    r.expect_code(1);
    let p = r.problems();
    assert_eq!(p.len(), 4, "{}", r.stdout);
    // Root lost a subdirectory, small lost its name sub/hard, and sub and
    // sub/inner are unreachable.
    expect_line(p[0], "inode 1", &["nlink is 3, should be 2", "[fixed]"]);
    expect_line(
        p[1],
        &format!("inode {}", s.small),
        &["nlink is 2, should be 1", "[fixed]"],
    );
    expect_line(
        p[2],
        &format!("inode {}", s.sub),
        &["orphan directory", "[fixed]"],
    );
    expect_line(
        p[3],
        &format!("inode {}", s.inner),
        &["orphan regular file", "[fixed]"],
    );
    img.fsck(&[]).expect_code(0);
    let fixed = img.fs();
    assert!(fixed.inode(s.sub).is_free() && fixed.inode(s.inner).is_free());
}

#[test]
fn wrong_file_link_count_is_set_to_its_number_of_names() {
    let mut s = sample();
    s.fs.edit_inode(s.small, |d| d.nlink.set(5));
    let fixed = assert_found_and_fixed(
        "nlink",
        &s.fs,
        &format!("inode {}", s.small),
        &["nlink is 5, should be 2"],
    );
    let d = fixed.inode(s.small);
    assert_eq!(d.nlink.get(), 2);
    assert_eq!(
        d.validate(s.small, BLOCKS),
        Ok(()),
        "checksum not recomputed"
    );
}

#[test]
fn wrong_directory_link_count_is_set_to_2_plus_subdirectories() {
    let mut s = sample();
    s.fs.edit_inode(ROOT_INO, |d| d.nlink.set(7));
    let fixed = assert_found_and_fixed("dir-nlink", &s.fs, "inode 1", &["nlink is 7, should be 3"]);
    assert_eq!(fixed.inode(ROOT_INO).nlink.get(), 3);
}

#[test]
fn wrong_blocks_count_is_set_to_data_plus_indirect_blocks() {
    let mut s = sample();
    s.fs.edit_inode(s.big, |d| d.blocks.set(3));
    let fixed = assert_found_and_fixed(
        "blocks",
        &s.fs,
        &format!("inode {}", s.big),
        &["blocks is 3, but 15 block(s) are mapped"],
    );
    assert_eq!(fixed.inode(s.big).blocks.get(), 15);
    assert_eq!(fixed.inode(s.big).validate(s.big, BLOCKS), Ok(()));
}

#[test]
fn dangling_entry_to_a_free_inode_is_cleared() {
    let mut s = sample();
    let (b, slot) = s.fs.add_entry(s.sub, b"ghost", 200, DT_REG);
    let fixed = assert_found_and_fixed(
        "dangling",
        &s.fs,
        &format!("inode {}", s.sub),
        &["\"ghost\"", "free inode 200", "dangling"],
    );
    let off = b as usize * BS + slot * DIRENT_SIZE;
    assert_eq!(
        fixed.img[off..off + 4],
        [0; 4],
        "slot still names inode 200"
    );
}

// ---- long names (two slots, version 4) ----------------------------------------

#[test]
fn long_names_are_clean_and_their_targets_counted() {
    let mut s = sample();
    let long = [b'L'; NAME_MAX];
    let f = s.fs.file(s.sub, &long, 5000);
    s.fs.link(ROOT_INO, &[b'k'; SLOT_NAME_MAX + 1], f);
    s.fs.add_entry(s.sub, b"after", s.small, DT_REG);
    s.fs.edit_inode(s.small, |d| d.nlink.set(d.nlink.get() + 1));
    let img = TempImage::new("long-names", &s.fs.img);
    img.fsck(&["-n"]).expect_code(0);
}

#[test]
fn a_long_name_on_a_version_3_image_is_reported() {
    let mut s = sample();
    s.fs.file(s.sub, &[b'v'; 252], 10);
    s.fs.set_version(3);
    assert_found_not_fixed(
        "long-name-v3",
        &s.fs,
        &format!("inode {}", s.sub),
        &["252-byte name", "version 3"],
    );
}

#[test]
fn a_continuation_slot_without_its_entry_is_cleared() {
    let mut s = sample();
    let (_, cont) = Dirent::new_entry(5, &[b'c'; 250], DT_REG).unwrap();
    let b = s.fs.grow_dir(s.sub);
    s.fs.block_mut(b)[3 * DIRENT_SIZE..4 * DIRENT_SIZE].copy_from_slice(cont.unwrap().as_bytes());
    let fixed = assert_found_and_fixed(
        "stray-cont",
        &s.fs,
        &format!("inode {}", s.sub),
        &[
            &format!("block {b} slot 3"),
            "continuation slot without its entry",
        ],
    );
    let off = b as usize * BS + 3 * DIRENT_SIZE;
    assert_eq!(fixed.img[off..off + 4], [0; 4]);
}

#[test]
fn a_dangling_long_entry_is_cleared_with_its_continuation() {
    let mut s = sample();
    let (b, slot) = s.fs.add_entry(s.sub, &[b'g'; 254], 200, DT_REG);
    let fixed = assert_found_and_fixed(
        "dangling-long",
        &s.fs,
        &format!("inode {}", s.sub),
        &["free inode 200", "dangling"],
    );
    for sl in [slot, slot + 1] {
        let off = b as usize * BS + sl * DIRENT_SIZE;
        assert_eq!(fixed.img[off..off + 4], [0; 4], "slot {sl}");
    }
}

#[test]
fn a_long_entry_whose_continuation_is_gone_is_reported() {
    let mut s = sample();
    let (b, slot) = s.fs.add_entry(s.sub, &[b'h'; 249], s.small, DT_REG);
    s.fs.edit_inode(s.small, |d| d.nlink.set(d.nlink.get() + 1));
    let off = b as usize * BS + (slot + 1) * DIRENT_SIZE;
    s.fs.img[off..off + 4].fill(0);
    let img = TempImage::new("long-no-cont", &s.fs.img);
    img.fsck(&["-n"]).expect_code(4).expect_one(
        &format!("inode {}", s.sub),
        &["bad name length 249", "without its continuation"],
    );
}

#[test]
fn dangling_entry_past_the_inode_table_is_cleared() {
    let mut s = sample();
    s.fs.add_entry(ROOT_INO, b"far", 1_000_000, DT_REG);
    assert_found_and_fixed(
        "dangling-far",
        &s.fs,
        "inode 1",
        &["inode 1000000", "dangling"],
    );
}

#[test]
fn removed_directory_entry_to_subdir_leaves_dangling_and_nlink_fixed_together() {
    // The subdirectory's inode freed but its name and the parent's count kept.
    let mut s = sample();
    s.fs.add_entry(ROOT_INO, b"gone", 201, DT_DIR);
    s.fs.edit_inode(ROOT_INO, |d| d.nlink.set(4));
    let img = TempImage::new("dangling-dir", &s.fs.img);
    let r = img.fsck(&["-y"]);
    r.expect_code(1);
    assert_eq!(r.problems().len(), 2, "{}", r.stdout);
    img.fsck(&[]).expect_code(0);
    assert_eq!(img.fs().inode(ROOT_INO).nlink.get(), 3);
}

#[test]
fn block_in_use_but_marked_free_is_marked_used() {
    let mut s = sample();
    let b = s.fs.inode(s.inner).direct[1].get() as u64;
    s.fs.set_bit(b, false);
    let fixed = assert_found_and_fixed(
        "marked-free",
        &s.fs,
        &format!("block {b}"),
        &[&format!("used by inode {}", s.inner), "marked free"],
    );
    assert!(fixed.bit(b));
}

#[test]
fn indirect_block_marked_free_is_marked_used() {
    let mut s = sample();
    let b = s.fs.inode(s.big).indirect.get() as u64;
    s.fs.set_bit(b, false);
    assert_found_and_fixed(
        "ind-free",
        &s.fs,
        &format!("block {b}"),
        &[&format!("used by inode {}", s.big)],
    );
}

#[test]
fn metadata_block_marked_free_is_marked_used() {
    let mut s = sample();
    let b = s.fs.geo.itable_start + 1;
    s.fs.set_bit(b, false);
    assert_found_and_fixed("meta-free", &s.fs, &format!("block {b}"), &["metadata"]);
}

#[test]
fn bitmap_bits_past_the_end_marked_free_are_set() {
    let mut s = sample();
    s.fs.set_bit(BLOCKS + 7, false);
    assert_found_and_fixed(
        "tail-free",
        &s.fs,
        &format!("block {}", BLOCKS + 7),
        &["past the end"],
    );
}

// ---- damage reported, not repaired -------------------------------------------

#[test]
fn block_shared_by_two_files_is_reported_with_both_owners_and_not_repaired() {
    let mut s = sample();
    let shared = s.fs.inode(s.inner).direct[0].get();
    let own = s.fs.inode(s.small).direct[0].get();
    s.fs.edit_inode(s.small, |d| d.direct[0].set(shared));
    s.fs.set_bit(own as u64, false);
    assert_found_not_fixed(
        "shared",
        &s.fs,
        &format!("block {shared}"),
        &[&format!("shared by inodes {} and {}", s.inner, s.small)],
    );
}

#[test]
fn flipped_inode_checksum_names_the_inode_and_is_not_repaired() {
    let mut s = sample();
    let mut d = s.fs.inode(s.small);
    d.checksum.set(d.checksum.get() ^ 0x10);
    s.fs.put_raw_inode(s.small, d);
    assert_found_not_fixed(
        "checksum",
        &s.fs,
        &format!("inode {}", s.small),
        &["bad checksum"],
    );
}

#[test]
fn bit_flip_inside_an_inode_fails_its_checksum() {
    let mut s = sample();
    let mut d = s.fs.inode(s.big);
    d.size.set(d.size.get() ^ 1);
    s.fs.put_raw_inode(s.big, d);
    assert_found_not_fixed(
        "checksum-body",
        &s.fs,
        &format!("inode {}", s.big),
        &["bad checksum"],
    );
}

/// Journal area 0 (the whole journal on images older than version 5).
fn journal_region(fs: &Fs) -> std::ops::Range<usize> {
    let start = fs.geo.journal_start as usize * BS;
    start..start + fs.geo.slot_bytes(0).1
}

/// "blocks A-B" of journal area `k`.
fn area_blocks(fs: &Fs, k: u32) -> String {
    let (off, len) = fs.geo.slot_bytes(k);
    let a = fs.geo.journal_start as usize + off / BS;
    format!("blocks {a}-{}", a + len / BS - 1)
}

/// The journal as the module leaves it: the header says `seq_done`.
fn put_journal_header(fs: &mut Fs, seq_done: u64) {
    let r = journal_region(fs);
    fs.img[r.start..r.start + JOURNAL_RECORDS_OFF]
        .copy_from_slice(JournalHeader::new(seq_done).as_bytes());
}

/// Append an undo record at byte `pos` of the journal; returns the next.
fn put_record(fs: &mut Fs, pos: usize, seq: u64, target: u64, old: &[u8]) -> usize {
    let at = journal_region(fs).start + pos;
    let h = RecordHeader::new(seq, target, old);
    fs.img[at..at + RECORD_HEADER_SIZE].copy_from_slice(h.as_bytes());
    fs.img[at + RECORD_HEADER_SIZE..at + RECORD_HEADER_SIZE + old.len()].copy_from_slice(old);
    pos + record_size(old.len())
}

#[test]
fn journal_damaged_header_is_found_and_emptied() {
    let mut s = sample();
    put_journal_header(&mut s.fs, 9);
    let j = s.fs.geo.journal_start;
    s.fs.img[j as usize * BS] ^= 0x5a;
    let fixed = assert_found_and_fixed(
        "journal",
        &s.fs,
        &area_blocks(&s.fs, 0),
        &["journal area 0 damaged", "bad journal magic"],
    );
    // Every area is reset.
    for k in 0..s.fs.geo.journal_slots {
        let (off, len) = s.fs.geo.slot_bytes(k);
        let r = j as usize * BS + off..j as usize * BS + off + len;
        assert_eq!(
            &fixed.img[r.start..r.start + JOURNAL_RECORDS_OFF],
            JournalHeader::new(0).as_bytes(),
            "journal header of area {k} after the reset"
        );
        assert!(
            fixed.img[r.start + JOURNAL_RECORDS_OFF..r.end]
                .iter()
                .all(|&b| b == 0),
            "journal records of area {k} not zeroed"
        );
    }
}

#[test]
fn journal_garbage_in_a_zero_magic_header_is_damage_and_reset() {
    let mut s = sample();
    let j = s.fs.geo.journal_start;
    // Garbage in area 2's all-zero header.
    let off = s.fs.geo.slot_bytes(2).0;
    s.fs.img[j as usize * BS + off + 20] = 7;
    assert_found_and_fixed(
        "journal-garbage",
        &s.fs,
        &area_blocks(&s.fs, 2),
        &["journal area 2 damaged", "header is corrupt"],
    );
}

#[test]
fn journal_with_only_finished_transactions_is_clean() {
    let mut s = sample();
    put_journal_header(&mut s.fs, 6);
    let target = s.fs.geo.bitmap_start * BS as u64;
    let p = put_record(&mut s.fs, JOURNAL_RECORDS_OFF, 6, target, &[0xff; 8]);
    put_record(&mut s.fs, p, 5, target + 8, &[0xee; 8]);
    let img = TempImage::new("journal-stale", &s.fs.img);
    let r = img.fsck(&["-n"]);
    r.expect_code(0);
    assert!(r.problems().is_empty(), "{}", r.stdout);
    assert!(!r.stdout.contains("journal:"), "{}", r.stdout);
    let r = img.fsck(&["-v"]);
    r.expect_code(0);
    assert!(
        r.stdout
            .contains("journal area 0: clean, last finished transaction 6"),
        "{}",
        r.stdout
    );
    img.fsck(&["-y"]).expect_code(0);
    assert!(img.bytes() == s.fs.img, "-y changed a clean journal");
}

#[test]
fn unfinished_transaction_is_checked_rolled_back_and_y_applies_it() {
    let mut s = sample();
    put_journal_header(&mut s.fs, 41);
    // A crash inside `unlink small`'s transaction: the slot was cleared in
    // place after its undo record was made durable.
    let (b, slot) = s.fs.find_entry(ROOT_INO, b"small");
    let off = b as u64 * BS as u64 + (slot * DIRENT_SIZE) as u64;
    let old = s.fs.img[off as usize..off as usize + 4].to_vec();
    put_record(&mut s.fs, JOURNAL_RECORDS_OFF, 42, off, &old);
    s.fs.img[off as usize..off as usize + 4].fill(0);
    let img = TempImage::new("journal-pending", &s.fs.img);
    let r = img.fsck(&["-n"]);
    r.expect_code(0);
    assert!(r.problems().is_empty(), "{}", r.stdout);
    assert!(
        r.stdout
            .contains("journal area 0: transaction 42 unfinished (1 records): rolled back"),
        "{}",
        r.stdout
    );
    assert!(img.bytes() == s.fs.img, "-n wrote to the image");
    let r = img.fsck(&["-y"]);
    r.expect_code(0);
    assert!(r.problems().is_empty(), "{}", r.stdout);
    assert!(
        r.stdout
            .contains("journal area 0: transaction 42 unfinished (1 records): rolled back\n"),
        "{}",
        r.stdout
    );
    let after = img.bytes();
    assert_eq!(
        &after[off as usize..off as usize + 4],
        &old[..],
        "slot not restored"
    );
    let j = journal_region(&s.fs).start;
    let seq = u64::from_le_bytes(after[j + 8..j + 16].try_into().unwrap());
    assert_eq!(seq, 42, "seq_done after the rollback");
    let r = img.fsck(&["-n"]);
    r.expect_code(0);
    assert!(!r.stdout.contains("unfinished"), "{}", r.stdout);
}

#[test]
fn journal_record_outside_the_metadata_is_damage() {
    let mut s = sample();
    put_journal_header(&mut s.fs, 0);
    put_record(&mut s.fs, JOURNAL_RECORDS_OFF, 1, 0, &[0; 8]);
    let img = TempImage::new("journal-target", &s.fs.img);
    let r = img.fsck(&["-n"]);
    r.expect_code(4);
    assert!(
        r.stdout.contains("outside the metadata area"),
        "{}",
        r.stdout
    );
}

#[test]
fn orphan_with_link_count_0_is_left_for_mount() {
    let mut s = sample();
    // Unlinked while open, then a crash: no name, link count 0.
    s.fs.clear_entry(ROOT_INO, b"big");
    let mut d = s.fs.inode(s.big);
    d.nlink.set(0);
    s.fs.put_inode(s.big, d);
    let img = TempImage::new("orphan-0", &s.fs.img);
    let r = img.fsck(&["-y"]);
    r.expect_code(0);
    let note = format!("inode {}: orphan (link count 0); mount frees it", s.big);
    assert!(r.stdout.contains(&note), "{}", r.stdout);
    assert!(r.problems().is_empty(), "{}", r.stdout);
    assert!(img.bytes() == s.fs.img, "fsck changed a consistent image");
}

#[test]
fn named_inode_with_link_count_0_is_an_error() {
    let mut s = sample();
    let mut d = s.fs.inode(s.big);
    d.nlink.set(0);
    s.fs.put_inode(s.big, d);
    assert_found_and_fixed(
        "named-nlink-0",
        &s.fs,
        &format!("inode {}", s.big),
        &["nlink is 0, should be 1"],
    );
}

#[test]
fn unfinished_transaction_restoring_an_orphans_name_leaves_no_orphan() {
    let mut s = sample();
    put_journal_header(&mut s.fs, 3);
    // A crash inside `unlink big` (open elsewhere): name cleared and link
    // count 0 in place; the undo records hold the name and the old inode.
    let (b, slot) = s.fs.find_entry(ROOT_INO, b"big");
    let dent = b as u64 * BS as u64 + (slot * DIRENT_SIZE) as u64;
    let old_dent = s.fs.img[dent as usize..dent as usize + 4].to_vec();
    let (ib, ioff) = (
        s.fs.geo.itable_start + (s.big as u64 - 1) / INODES_PER_BLOCK as u64,
        (s.big as usize - 1) % INODES_PER_BLOCK * INODE_SIZE,
    );
    let iat = ib * BS as u64 + ioff as u64;
    let old_inode = s.fs.img[iat as usize..iat as usize + INODE_SIZE].to_vec();
    let p = put_record(&mut s.fs, JOURNAL_RECORDS_OFF, 4, dent, &old_dent);
    put_record(&mut s.fs, p, 4, iat, &old_inode);
    s.fs.clear_entry(ROOT_INO, b"big");
    let mut d = s.fs.inode(s.big);
    d.nlink.set(0);
    s.fs.put_inode(s.big, d);
    let img = TempImage::new("journal-unlink", &s.fs.img);
    let r = img.fsck(&["-n"]);
    r.expect_code(0);
    assert!(r.problems().is_empty(), "{}", r.stdout);
    assert!(!r.stdout.contains(": orphan"), "{}", r.stdout);
    assert!(
        r.stdout.contains("transaction 4 unfinished (2 records)"),
        "{}",
        r.stdout
    );
}

#[test]
fn entry_file_type_not_matching_the_inode_is_reported() {
    let mut s = sample();
    let (b, slot) = s.fs.find_entry(ROOT_INO, b"link");
    s.fs.block_mut(b)[slot * DIRENT_SIZE + 5] = DT_REG;
    assert_found_not_fixed(
        "dtype",
        &s.fs,
        "inode 1",
        &[
            "\"link\"",
            "file type 8",
            &format!("inode {} is a symlink", s.link),
        ],
    );
}

#[test]
fn directory_with_a_second_name_is_reported() {
    let mut s = sample();
    s.fs.add_entry(ROOT_INO, b"again", s.sub, DT_DIR);
    s.fs.edit_inode(ROOT_INO, |d| d.nlink.set(4));
    assert_found_not_fixed(
        "two-names",
        &s.fs,
        &format!("inode {}", s.sub),
        &[
            "more than one name",
            "\"sub\" in inode 1",
            "\"again\" in inode 1",
        ],
    );
}

#[test]
fn directory_parent_not_matching_its_name_is_reported() {
    let mut s = sample();
    s.fs.edit_inode(s.sub, |d| d.parent.set(s.small));
    assert_found_not_fixed(
        "parent",
        &s.fs,
        &format!("inode {}", s.sub),
        &[
            &format!("parent is {}", s.small),
            "named \"sub\" in inode 1",
        ],
    );
}

#[test]
fn blocks_past_a_regular_file_size_are_preallocation_not_damage() {
    // fallocate(FALLOC_FL_KEEP_SIZE) leaves exactly this on the medium.
    let mut s = sample();
    s.fs.edit_inode(s.inner, |d| d.size.set(100));
    let img = TempImage::new("prealloc", &s.fs.img);
    img.fsck(&["-n"]).expect_code(0);
}

#[test]
fn directory_size_not_a_multiple_of_the_block_size_is_reported() {
    let mut s = sample();
    s.fs.edit_inode(s.sub, |d| d.size.set(5000));
    assert_found_not_fixed(
        "dir-size",
        &s.fs,
        &format!("inode {}", s.sub),
        &["not a multiple of 4096"],
    );
}

#[test]
fn symlink_target_without_nul_is_reported() {
    let mut s = sample();
    let b = s.fs.inode(s.link).direct[0].get();
    s.fs.block_mut(b)[b"sub/inner".len()] = b'x';
    assert_found_not_fixed(
        "symlink",
        &s.fs,
        &format!("inode {}", s.link),
        &["not NUL-terminated", &format!("block {b}")],
    );
}

#[test]
fn block_pointer_into_metadata_or_past_the_end_is_reported() {
    let mut s = sample();
    let meta = s.fs.geo.itable_start as u32;
    s.fs.edit_inode(s.small, |d| d.direct[3].set(meta));
    assert_found_not_fixed(
        "ptr-meta",
        &s.fs,
        &format!("inode {}", s.small),
        &[
            &format!("block pointer {meta} in direct[3]"),
            "outside the data area",
        ],
    );
    let mut s = sample();
    let b = s.fs.inode(s.big).indirect.get();
    s.fs.block_mut(b)[8..12].copy_from_slice(&5_000_000u32.to_le_bytes());
    assert_found_not_fixed(
        "ptr-far",
        &s.fs,
        &format!("inode {}", s.big),
        &[
            &format!("entry 2 of indirect block {b}"),
            "outside the data area",
        ],
    );
}

#[test]
fn indirect_block_pointing_at_itself_is_claimed_twice_and_not_followed() {
    let mut s = sample();
    let x = s.fs.alloc_block();
    s.fs.block_mut(x).fill(0);
    s.fs.block_mut(x)[..4].copy_from_slice(&x.to_le_bytes());
    s.fs.edit_inode(s.big, |d| d.dindirect.set(x));
    s.fs.edit_inode(s.big, |d| d.blocks.set(d.blocks.get() + 1));
    let img = TempImage::new("loop", &s.fs.img);
    for args in [&["-n"][..], &["-y"][..]] {
        let r = img.fsck(args);
        r.expect_code(4);
        let p = r.problems();
        assert_eq!(p.len(), 2, "{}", r.stdout);
        let big = format!("inode {}", s.big);
        expect_line(p[0], &big, &["blocks is 16, but 17 block(s) are mapped"]);
        assert!(
            !p[0].contains("fixed"),
            "blocks of a map with a loop set: {}",
            p[0]
        );
        expect_line(
            p[1],
            &format!("block {x}"),
            &[&format!("claimed 2 times by {big}")],
        );
    }
    assert!(img.bytes() == s.fs.img, "-y changed the image");
}

#[test]
fn mixed_repairable_and_unrepairable_damage_exits_5_then_4() {
    let mut s = sample();
    let b = s.fs.unused_block();
    s.fs.set_bit(b, true);
    let mut d = s.fs.inode(s.small);
    d.checksum.set(d.checksum.get() ^ 0x10);
    s.fs.put_raw_inode(s.small, d);
    let img = TempImage::new("mixed", &s.fs.img);
    let r = img.fsck(&["-y"]);
    r.expect_code(5);
    assert!(
        r.summary().ends_with("2 problems, 1 fixed"),
        "{}",
        r.summary()
    );
    img.fsck(&["-y"])
        .expect_code(4)
        .expect_one(&format!("inode {}", s.small), &["bad checksum"]);
}

// ---- operational and usage errors -------------------------------------------

#[test]
fn bad_superblock_magic_is_operational_error_8() {
    let mut s = sample();
    s.fs.img[0] ^= 0xff;
    let img = TempImage::new("magic", &s.fs.img);
    let r = img.fsck(&["-y"]);
    r.expect_code(8);
    assert!(
        r.stderr.contains("not a ferrofs filesystem (bad magic)"),
        "{}",
        r.stderr
    );
    assert!(img.bytes() == s.fs.img, "wrote to a non-ferrofs image");
}

#[test]
fn bad_superblock_checksum_is_operational_error_8() {
    let mut s = sample();
    s.fs.img[60] ^= 1; // in padding: only the checksum notices
    let img = TempImage::new("sb-csum", &s.fs.img);
    let r = img.fsck(&[]);
    r.expect_code(8);
    assert!(
        r.stderr.contains("superblock invalid: bad checksum"),
        "{}",
        r.stderr
    );
}

#[test]
fn superblock_larger_than_the_image_is_operational_error_8() {
    let s = sample();
    let img = TempImage::new("short", &s.fs.img[..512 * BS]);
    let r = img.fsck(&[]);
    r.expect_code(8);
    assert!(r.stderr.contains("larger than the device"), "{}", r.stderr);
}

#[test]
fn superblock_with_overlapping_regions_is_operational_error_8() {
    let mut s = sample();
    let mut sb = Superblock::from_bytes(&s.fs.img).unwrap();
    sb.data_start.set(sb.itable_start.get());
    sb.update_checksum();
    s.fs.img[..SUPERBLOCK_SIZE].copy_from_slice(sb.as_bytes());
    let r = TempImage::new("overlap", &s.fs.img).fsck(&[]);
    r.expect_code(8);
    assert!(r.stderr.contains("overlap"), "{}", r.stderr);
}

#[test]
fn file_smaller_than_a_block_or_missing_is_operational_error_8() {
    let img = TempImage::new("tiny", &[0u8; 100]);
    let r = img.fsck(&[]);
    r.expect_code(8);
    assert!(
        r.stderr.contains("not a ferrofs filesystem"),
        "{}",
        r.stderr
    );
    let r = Run::new(
        Command::new(FSCK)
            .arg("/nonexistent/ferrofs.img")
            .output()
            .unwrap(),
    );
    r.expect_code(8);
    assert!(r.stderr.contains("cannot open"), "{}", r.stderr);
}

#[test]
fn bad_command_lines_are_usage_errors_16() {
    for args in [
        &[][..],
        &["-n", "-y", "x.img"],
        &["-q", "x.img"],
        &["a.img", "b.img"],
    ] {
        let r = Run::new(Command::new(FSCK).args(args).output().unwrap());
        r.expect_code(16);
        assert!(r.stderr.contains("usage:"), "{args:?}: {}", r.stderr);
    }
    let r = Run::new(Command::new(FSCK).arg("-h").output().unwrap());
    r.expect_code(0);
    assert!(r.stdout.contains("usage:"));
}
