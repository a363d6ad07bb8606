//! Laying out and writing a fresh ferrofs.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::{FileExt, FileTypeExt};
use std::time::{SystemTime, UNIX_EPOCH};

use ferrofs_format::{
    Geometry, Inode, Pod, Superblock, BLOCK_SIZE, INODE_SIZE, MAGIC, MIN_BLOCKS, ROOT_INO, S_IFDIR,
};
use ferrofs_image::{inode_location, Bitmap};

use crate::args::Options;

/// What was written, for the summary.
pub struct Summary {
    pub geometry: Geometry,
    pub free_data_blocks: u64,
    pub label: Vec<u8>,
    pub uuid: [u8; 16],
}

/// Formats `opts.device`. Every check runs before the first write: an error
/// returned before [`write_filesystem`] leaves the device untouched.
pub fn run(opts: &Options) -> Result<Summary, String> {
    let dev = &opts.device;
    let name = dev.display();
    let file = ferrofs_image::open_device(dev, true)?;
    let size = device_size(&file).map_err(|e| format!("cannot get the size of {name}: {e}"))?;
    let mut blocks = size / BLOCK_SIZE as u64;
    if let Some(want) = opts.blocks {
        if want > blocks {
            return Err(format!(
                "{name} has {blocks} blocks of {BLOCK_SIZE} bytes; {want} were asked for"
            ));
        }
        blocks = want;
    }
    if blocks < MIN_BLOCKS {
        return Err(format!(
            "{name} is too small: {size} bytes = {blocks} blocks of {BLOCK_SIZE} bytes; \
             ferrofs needs at least {MIN_BLOCKS} blocks ({} KiB)",
            MIN_BLOCKS * BLOCK_SIZE as u64 / 1024
        ));
    }
    let geo = Geometry::for_blocks(blocks, opts.inodes).map_err(|e| {
        let inodes = match opts.inodes {
            Some(n) => format!("{n} inodes"),
            None => "the default inode count".into(),
        };
        format!(
            "cannot lay out ferrofs on {name} ({blocks} blocks, {inodes}): {}",
            e.reason()
        )
    })?;

    if !opts.force {
        let mut first = vec![0u8; BLOCK_SIZE];
        file.read_exact_at(&mut first, 0)
            .map_err(|e| format!("cannot read {name}: {e}"))?;
        if let Some(found) = existing_filesystem(&first) {
            if !confirm(&format!("{name} contains {found}. Proceed anyway? (y,N) ")) {
                return Err(format!(
                    "{name} already contains {found}; use -f to overwrite it"
                ));
            }
        }
    }

    let uuid = random_uuid().map_err(|e| format!("cannot read /dev/urandom: {e}"))?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let sb = Superblock::new(&geo, uuid, &opts.label, now.as_secs());
    let root = root_inode(&geo, now.as_secs(), now.subsec_nanos());
    // Never write something the kernel would reject.
    sb.validate(blocks)
        .map_err(|e| format!("internal error: new superblock invalid: {e:?}"))?;
    root.validate(ROOT_INO, blocks)
        .map_err(|e| format!("internal error: new root inode invalid: {e:?}"))?;

    write_filesystem(&file, &geo, &sb, &root).map_err(|e| format!("writing {name} failed: {e}"))?;
    Ok(Summary {
        geometry: geo,
        free_data_blocks: geo.blocks_count - geo.data_start - 1,
        label: opts.label.clone(),
        uuid,
    })
}

/// Asks on standard error and reads one line from standard input: true only
/// for an answer starting with y or Y. End of input or a read error is no.
fn confirm(question: &str) -> bool {
    eprint!("{question}");
    let mut line = String::new();
    match io::stdin().read_line(&mut line) {
        Ok(n) if n > 0 => matches!(line.trim_start().as_bytes().first(), Some(b'y' | b'Y')),
        _ => {
            eprintln!();
            false
        }
    }
}

/// Size in bytes: a regular file's length, or a block device's capacity
/// (seeking to the end of a block device yields its size, as BLKGETSIZE64).
fn device_size(file: &File) -> io::Result<u64> {
    let md = file.metadata()?;
    if md.file_type().is_block_device() {
        let mut f = file;
        let size = f.seek(SeekFrom::End(0))?;
        f.seek(SeekFrom::Start(0))?;
        Ok(size)
    } else {
        Ok(md.len())
    }
}

/// Names a filesystem whose signature is in the first block, if any.
pub fn existing_filesystem(block0: &[u8]) -> Option<&'static str> {
    if block0.len() >= MAGIC.len() && block0[..MAGIC.len()] == MAGIC {
        return Some("a ferrofs filesystem");
    }
    // ext2/3/4: s_magic at offset 56 of the superblock at byte 1024.
    if block0.len() >= 1082 && block0[1080..1082] == 0xEF53u16.to_le_bytes() {
        return Some("an ext2/ext3/ext4 filesystem");
    }
    if block0.len() >= 4 && &block0[..4] == b"XFSB" {
        return Some("an xfs filesystem");
    }
    None
}

/// 16 random bytes, stamped as an RFC 4122 version 4 UUID.
fn random_uuid() -> io::Result<[u8; 16]> {
    let mut u = [0u8; 16];
    File::open("/dev/urandom")?.read_exact(&mut u)?;
    u[6] = (u[6] & 0x0f) | 0x40;
    u[8] = (u[8] & 0x3f) | 0x80;
    Ok(u)
}

pub fn format_uuid(u: &[u8; 16]) -> String {
    let hex: String = u.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// The root directory: one empty data block, the first after the metadata.
fn root_inode(geo: &Geometry, secs: u64, nsecs: u32) -> Inode {
    let mut i = Inode::zeroed();
    i.mode.set(S_IFDIR | 0o755);
    i.nlink.set(2);
    i.uid.set(0);
    i.gid.set(0);
    i.size.set(BLOCK_SIZE as u64);
    i.blocks.set(1);
    for t in [&mut i.atime_sec, &mut i.mtime_sec, &mut i.ctime_sec] {
        t.set(secs);
    }
    for t in [&mut i.atime_nsec, &mut i.mtime_nsec, &mut i.ctime_nsec] {
        t.set(nsecs);
    }
    i.generation.set(0);
    i.direct[0].set(geo.data_start as u32);
    i.parent.set(ROOT_INO);
    i.update_checksum(ROOT_INO);
    i
}

/// The bitmap of a fresh filesystem: blocks `0..=data_start` (metadata and the
/// root directory's block) used, and the bits past the device's end set so
/// that they never look free.
pub fn initial_bitmap(geo: &Geometry) -> Bitmap {
    let mut bm = Bitmap::zeroed(geo.bitmap_blocks);
    bm.set_range(0, geo.data_start + 1);
    bm.set_range(geo.blocks_count, bm.len());
    bm
}

/// Zeroes blocks `start..start + count`.
fn zero_blocks(file: &File, start: u64, count: u64) -> io::Result<()> {
    const CHUNK_BLOCKS: u64 = 256; // 1 MiB
    let zeroes = vec![0u8; (CHUNK_BLOCKS as usize) * BLOCK_SIZE];
    let mut done = 0;
    while done < count {
        let n = (count - done).min(CHUNK_BLOCKS);
        let off = (start + done) * BLOCK_SIZE as u64;
        file.write_all_at(&zeroes[..n as usize * BLOCK_SIZE], off)?;
        done += n;
    }
    Ok(())
}

/// Writes the filesystem. Block 0 is cleared first, so that an old signature
/// does not outlive a half-done run, and the superblock is written last, after
/// everything it describes is on the medium.
fn write_filesystem(file: &File, geo: &Geometry, sb: &Superblock, root: &Inode) -> io::Result<()> {
    let b = BLOCK_SIZE as u64;
    zero_blocks(file, 0, 1)?;
    file.sync_all()?;

    zero_blocks(file, geo.journal_start, geo.journal_blocks as u64)?;
    file.write_all_at(initial_bitmap(geo).as_bytes(), geo.bitmap_start * b)?;
    zero_blocks(file, geo.itable_start, geo.itable_blocks as u64)?;
    let (block, off) = inode_location(geo, ROOT_INO).expect("root inode in the table");
    debug_assert_eq!(root.as_bytes().len(), INODE_SIZE);
    file.write_all_at(root.as_bytes(), block * b + off as u64)?;
    zero_blocks(file, geo.data_start, 1)?;
    file.sync_all()?;

    let mut block0 = vec![0u8; BLOCK_SIZE];
    block0[..sb.as_bytes().len()].copy_from_slice(sb.as_bytes());
    file.write_all_at(&block0, 0)?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_ferrofs_ext_and_xfs_signatures() {
        let mut b = vec![0u8; BLOCK_SIZE];
        assert_eq!(existing_filesystem(&b), None);
        b[..8].copy_from_slice(&MAGIC);
        assert_eq!(existing_filesystem(&b), Some("a ferrofs filesystem"));
        let mut b = vec![0u8; BLOCK_SIZE];
        b[1080] = 0x53;
        b[1081] = 0xEF;
        assert_eq!(
            existing_filesystem(&b),
            Some("an ext2/ext3/ext4 filesystem")
        );
        let mut b = vec![0u8; BLOCK_SIZE];
        b[..4].copy_from_slice(b"XFSB");
        assert_eq!(existing_filesystem(&b), Some("an xfs filesystem"));
    }

    #[test]
    fn uuid_is_formatted_8_4_4_4_12() {
        let u: [u8; 16] = core::array::from_fn(|i| i as u8 * 0x11);
        assert_eq!(format_uuid(&u), "00112233-4455-6677-8899-aabbccddeeff");
    }

    #[test]
    fn random_uuid_is_version_4() {
        let u = random_uuid().unwrap();
        assert_eq!(u[6] >> 4, 4);
        assert_eq!(u[8] >> 6, 0b10);
    }

    #[test]
    fn initial_bitmap_marks_metadata_root_block_and_tail() {
        for blocks in [256u64, 1000, 32_768, 32_769] {
            let geo = Geometry::for_blocks(blocks, None).unwrap();
            let bm = initial_bitmap(&geo);
            assert_eq!(bm.len(), geo.bitmap_blocks as u64 * BLOCK_SIZE as u64 * 8);
            for i in 0..bm.len() {
                let want = i <= geo.data_start || i >= blocks;
                assert_eq!(bm.get(i), want, "blocks = {blocks}, bit {i}");
            }
        }
    }

    #[test]
    fn root_inode_is_a_valid_directory_with_one_block() {
        let geo = Geometry::for_blocks(1024, None).unwrap();
        let r = root_inode(&geo, 5, 6);
        assert_eq!(r.validate(ROOT_INO, 1024), Ok(()));
        assert_eq!(r.mode.get(), S_IFDIR | 0o755);
        assert_eq!(r.direct[0].get() as u64, geo.data_start);
        assert_eq!(r.parent.get(), ROOT_INO);
        assert_eq!(r.mtime_sec.get(), 5);
        assert_eq!(r.ctime_nsec.get(), 6);
    }
}
