//! The subcommands used by the shell tests: fill, verify, mmap-fill,
//! sbpatch, flipbyte. Each returns a message on failure.

use std::path::Path;

use ferrofs_format::{Pod, Superblock, SUPERBLOCK_SIZE};

use crate::args::{SbField, SyncMode};
use crate::pattern;
use crate::sys::{self, Fd, Map};

const CHUNK: usize = 1 << 20;

fn usize_len(len: u64) -> Result<usize, String> {
    usize::try_from(len).map_err(|_| format!("length {len} too large"))
}

/// Writes `len` pattern bytes with write(2), then fsync.
pub fn fill(file: &Path, seed: u64, len: u64) -> Result<(), String> {
    let fd = Fd::create(file)?;
    let mut buf = vec![0u8; CHUNK];
    let mut off = 0u64;
    while off < len {
        let n = (len - off).min(CHUNK as u64) as usize;
        pattern::fill(seed, off, &mut buf[..n]);
        fd.write_all(&buf[..n])?;
        off += n as u64;
    }
    fd.fsync()
}

/// Checks that `file` is exactly `len` pattern bytes (read with read(2)).
pub fn verify(file: &Path, seed: u64, len: u64) -> Result<(), String> {
    let fd = Fd::open_ro(file)?;
    let size = fd.size()?;
    let mut buf = vec![0u8; CHUNK];
    let mut off = 0u64;
    loop {
        let n = fd.read_full(&mut buf)?;
        let data = &buf[..n];
        let want = len.saturating_sub(off).min(n as u64) as usize;
        if let Some((at, e, g)) = pattern::first_mismatch(seed, off, &data[..want]) {
            return Err(format!(
                "{}: mismatch at offset {at}: expected {e:#04x}, got {g:#04x}",
                file.display()
            ));
        }
        if want < n {
            return Err(format!(
                "{}: longer than {len} bytes (size {size}); first mismatching offset {len}",
                file.display()
            ));
        }
        off += n as u64;
        if n < buf.len() {
            break;
        }
    }
    if off < len {
        return Err(format!(
            "{}: only {off} bytes (size {size}), expected {len}; first mismatching offset {off}",
            file.display()
        ));
    }
    Ok(())
}

/// Creates/truncates `file` to `len`, stores the pattern through a shared
/// mapping, then syncs as asked and unmaps.
pub fn mmap_fill(file: &Path, seed: u64, len: u64, sync: SyncMode) -> Result<(), String> {
    let n = usize_len(len)?;
    let fd = Fd::create(file)?;
    fd.ftruncate(len)?;
    if n == 0 {
        return fd.fsync();
    }
    let map = if sync == SyncMode::MapSync {
        Map::new(
            &fd,
            n,
            libc::PROT_READ | libc::PROT_WRITE,
            sys::MAP_SHARED_VALIDATE | sys::MAP_SYNC,
        )?
    } else {
        Map::shared_rw(&fd, n)?
    };
    let insn = sys::FlushInsn::detect();
    let mut buf = vec![0u8; CHUNK];
    let mut off = 0;
    while off < n {
        let k = (n - off).min(CHUNK);
        pattern::fill(seed, off as u64, &mut buf[..k]);
        map.copy_in(off, &buf[..k]);
        if sync == SyncMode::MapSync {
            // SAFETY: `off..off+k` lies inside the live mapping.
            unsafe { sys::persist(insn, (map.addr() + off) as *const u8, k) };
        }
        off += k;
    }
    match sync {
        SyncMode::MapSync => {
            // Durable already: the faults made the metadata durable and the
            // stores were written back and fenced above. No system call.
            map.unmap()
        }
        SyncMode::Msync => {
            map.msync(0, n, libc::MS_SYNC)?;
            map.unmap()
        }
        SyncMode::Fsync => {
            fd.fsync()?;
            map.unmap()
        }
        SyncMode::None => {
            // The marks must outlive the mapping: fsync after munmap.
            map.unmap()?;
            fd.fsync()
        }
        SyncMode::Unmap => map.unmap(),
        SyncMode::Syncfs => {
            // sync_fs must find the marks by itself (no fsync, no msync).
            // SAFETY: plain syscall on our descriptor.
            if unsafe { libc::syncfs(fd.raw()) } != 0 {
                return Err(format!("syncfs {}: {}", file.display(), sys::last_err()));
            }
            map.unmap()
        }
    }
}

/// Sets `field` of `sb` from its text `value`; returns the old and new
/// values for the message.
pub fn patch_superblock(
    sb: &mut Superblock,
    field: SbField,
    value: &str,
) -> Result<(String, String), String> {
    let num = |max: u64| -> Result<u64, String> {
        let v = crate::args::parse_num(value)?;
        if v > max {
            return Err(format!("{value} does not fit the field"));
        }
        Ok(v)
    };
    Ok(match field {
        SbField::Magic => {
            let b = value.as_bytes();
            if b.len() > 8 {
                return Err(format!("magic {value:?}: at most 8 bytes"));
            }
            let mut m = [0u8; 8];
            m[..b.len()].copy_from_slice(b);
            let old = format!("{:?}", String::from_utf8_lossy(&sb.magic));
            sb.magic = m;
            (old, format!("{:?}", String::from_utf8_lossy(&m)))
        }
        SbField::Version => {
            let v = num(u32::MAX as u64)? as u32;
            let old = sb.version.get().to_string();
            sb.version.set(v);
            if v < ferrofs_format::VERSION_SLOTS {
                // An older version has one journal area: the layout of an
                // image made by that version's mkfs (a clean journal reads
                // the same either way).
                sb.journal_slots.set(0);
            }
            (old, v.to_string())
        }
        SbField::BlocksCount => {
            let v = num(u64::MAX)?;
            let old = sb.blocks_count.get().to_string();
            sb.blocks_count.set(v);
            (old, v.to_string())
        }
        SbField::BlockSize => {
            let v = num(u32::MAX as u64)? as u32;
            let old = sb.block_size.get().to_string();
            sb.block_size.set(v);
            (old, v.to_string())
        }
    })
}

pub fn sbpatch(dev: &Path, field: SbField, value: &str, fix_csum: bool) -> Result<String, String> {
    let fd = Fd::open_rw(dev)?;
    let mut raw = [0u8; SUPERBLOCK_SIZE];
    fd.pread_exact(&mut raw, 0)?;
    let mut sb = Superblock::from_bytes(&raw)
        .ok_or_else(|| format!("{}: short superblock", dev.display()))?;
    let (old, new) = patch_superblock(&mut sb, field, value)?;
    let csum_old = sb.checksum.get();
    if fix_csum {
        sb.update_checksum();
    }
    fd.pwrite_all(sb.as_bytes(), 0)?;
    fd.fsync()?;
    Ok(format!(
        "{}: {} {old} -> {new}; checksum {csum_old:#010x} -> {:#010x}{}",
        dev.display(),
        field.name(),
        sb.checksum.get(),
        if fix_csum { "" } else { " (stale)" }
    ))
}

/// Free symlink `ino`'s target block on the unmounted `dev`: its pointer
/// and block count zeroed (checksum updated), its bitmap bit cleared.
pub fn cut_symlink_block(dev: &Path, ino: u32) -> Result<String, String> {
    use ferrofs_format::{BLOCK_SIZE, S_IFLNK, S_IFMT};
    let name = dev.display();
    let file = std::fs::File::open(dev).map_err(|e| format!("{name}: {e}"))?;
    let mut img = ferrofs_image::Image::new(file);
    let (_, geo) = img
        .validated_superblock()
        .map_err(|e| format!("{name}: {e}"))?;
    let mut d = img.inode(&geo, ino).map_err(|e| format!("{name}: {e}"))?;
    if d.mode.get() & S_IFMT != S_IFLNK {
        return Err(format!(
            "inode {ino} is not a symlink (mode {:o})",
            d.mode.get()
        ));
    }
    let b = u64::from(d.direct[0].get());
    if b < geo.data_start || b >= geo.blocks_count {
        return Err(format!("inode {ino}: target block {b} is not a data block"));
    }
    // Both offsets lie inside the validated geometry, so inside the device.
    let (block, slot) =
        ferrofs_image::inode_location(&geo, ino).ok_or("inode outside the table")?;
    let at_inode = block * BLOCK_SIZE as u64 + slot as u64;
    let at_bit = geo.bitmap_start * BLOCK_SIZE as u64 + b / 8;
    d.direct[0].set(0);
    d.blocks.set(0);
    d.update_checksum(ino);
    let fd = Fd::open_rw(dev)?;
    fd.pwrite_all(d.as_bytes(), at_inode)?;
    let mut byte = [0u8; 1];
    fd.pread_exact(&mut byte, at_bit)?;
    byte[0] &= !(1u8 << (b % 8));
    fd.pwrite_all(&byte, at_bit)?;
    fd.fsync()?;
    Ok(format!("{name}: inode {ino}: target block {b} freed"))
}

pub fn flipbyte(dev: &Path, offset: u64) -> Result<String, String> {
    let fd = Fd::open_rw(dev)?;
    let mut b = [0u8; 1];
    if fd.pread(&mut b, offset)? != 1 {
        return Err(format!(
            "{}: offset {offset} is beyond the end",
            dev.display()
        ));
    }
    let new = [!b[0]];
    fd.pwrite_all(&new, offset)?;
    fd.fsync()?;
    Ok(format!(
        "{}: byte at {offset}: {:#04x} -> {:#04x}",
        dev.display(),
        b[0],
        new[0]
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferrofs_format::{Geometry, MAGIC};

    fn sb() -> Superblock {
        let g = Geometry::for_blocks(1024, None).unwrap();
        Superblock::new(&g, [1; 16], b"t", 0)
    }

    #[test]
    fn patches_fields() {
        let mut s = sb();
        assert!(s.validate(1024).is_ok());
        let (old, new) = patch_superblock(&mut s, SbField::Magic, "XERROFS").unwrap();
        assert_eq!(old, "\"FERROFS\\0\"");
        assert_eq!(new, "\"XERROFS\\0\"");
        assert_eq!(&s.magic, b"XERROFS\0");
        assert!(patch_superblock(&mut s, SbField::Magic, "123456789").is_err());
        patch_superblock(&mut s, SbField::Magic, "FERROFS").unwrap();
        assert_eq!(s.magic, MAGIC);
        assert!(s.validate(1024).is_ok());

        patch_superblock(&mut s, SbField::Version, "2").unwrap();
        assert_eq!(s.version.get(), 2);
        assert!(patch_superblock(&mut s, SbField::Version, "4294967296").is_err());
        patch_superblock(&mut s, SbField::BlocksCount, "0x1000").unwrap();
        assert_eq!(s.blocks_count.get(), 4096);
        patch_superblock(&mut s, SbField::BlockSize, "512").unwrap();
        assert_eq!(s.block_size.get(), 512);
        assert!(patch_superblock(&mut s, SbField::BlockSize, "x").is_err());
    }

    #[test]
    fn checksum_stale_unless_fixed() {
        let mut s = sb();
        patch_superblock(&mut s, SbField::BlocksCount, "1000").unwrap();
        assert!(matches!(
            s.validate(1024),
            Err(ferrofs_format::FormatError::BadChecksum { .. })
        ));
        s.update_checksum();
        assert_eq!(s.validate(1024).unwrap().blocks_count, 1000);
    }

    fn tmp(name: &str) -> std::path::PathBuf {
        std::env::temp_dir().join(format!("ferrotest-unit-{}-{name}", std::process::id()))
    }

    #[test]
    fn fill_verify_mmap_fill_and_patch_files() {
        let f = tmp("data");
        fill(&f, 3, 10_000).unwrap();
        verify(&f, 3, 10_000).unwrap();
        assert!(verify(&f, 4, 10_000).unwrap_err().contains("offset 0"));
        assert!(verify(&f, 3, 10_001).unwrap_err().contains("offset 10000"));
        assert!(verify(&f, 3, 9_999).unwrap_err().contains("offset 9999"));
        flipbyte(&f, 4321).unwrap();
        assert!(verify(&f, 3, 10_000).unwrap_err().contains("offset 4321"));
        assert!(flipbyte(&f, 10_000).is_err());
        for sync in [SyncMode::Msync, SyncMode::Fsync, SyncMode::None] {
            mmap_fill(&f, 9, 3 * 4096 + 5, sync).unwrap();
            verify(&f, 9, 3 * 4096 + 5).unwrap();
        }
        mmap_fill(&f, 9, 0, SyncMode::Msync).unwrap();
        verify(&f, 9, 0).unwrap();
        fill(&f, 1, 3 << 20).unwrap();
        verify(&f, 1, 3 << 20).unwrap();

        let img = tmp("img");
        let mut block = sb().as_bytes().to_vec();
        block.resize(4096, 0);
        std::fs::write(&img, &block).unwrap();
        sbpatch(&img, SbField::Version, "7", false).unwrap();
        let raw = std::fs::read(&img).unwrap();
        let s = Superblock::from_bytes(&raw).unwrap();
        assert_eq!(s.version.get(), 7);
        assert_ne!(s.compute_checksum(), s.checksum.get());
        assert_eq!(raw.len(), 4096);
        sbpatch(&img, SbField::Version, "1", true).unwrap();
        let s = Superblock::from_bytes(&std::fs::read(&img).unwrap()).unwrap();
        assert!(s.validate(1024).is_ok());
        std::fs::remove_file(&f).unwrap();
        std::fs::remove_file(&img).unwrap();
    }
}
