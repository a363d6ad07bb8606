//! Host tests for the on-media format shared with the kernel module
//! (src/format.rs, re-exported by `ferrofs_format`).

use ferrofs_format::*;

/// A superblock as mkfs would write it for a device of `blocks` blocks.
fn fresh_superblock(blocks: u64) -> Superblock {
    let geo = Geometry::for_blocks(blocks, None).expect("geometry for a valid size");
    Superblock::new(&geo, [7; 16], b"test", 1_700_000_000)
}

/// Round-trips a superblock through its on-media bytes.
fn reencode(sb: &Superblock) -> Superblock {
    Superblock::from_bytes(sb.as_bytes()).expect("512 bytes decode")
}

// ---- crc32c ----------------------------------------------------------------

#[test]
fn crc32c_of_check_string_matches_castagnoli_vector() {
    let got = crc32c(b"123456789");
    assert_eq!(got, 0xE306_9283, "expected 0xE3069283, got {got:#010x}");
}

#[test]
fn crc32c_of_empty_input_is_zero() {
    let got = crc32c(b"");
    assert_eq!(got, 0, "expected 0, got {got:#010x}");
}

#[test]
fn crc32c_of_32_zero_bytes_matches_rfc3720_vector() {
    // RFC 3720, B.4: 32 bytes of zeroes.
    let got = crc32c(&[0u8; 32]);
    assert_eq!(got, 0x8A91_36AA, "expected 0x8A9136AA, got {got:#010x}");
}

#[test]
fn crc32c_of_32_ff_bytes_matches_rfc3720_vector() {
    // RFC 3720, B.4: 32 bytes of 0xff.
    let got = crc32c(&[0xffu8; 32]);
    assert_eq!(got, 0x62A8_AB43, "expected 0x62A8AB43, got {got:#010x}");
}

// ---- Superblock ------------------------------------------------------------

#[test]
fn superblock_is_512_bytes_on_media() {
    let sb = fresh_superblock(1024);
    assert_eq!(sb.as_bytes().len(), SUPERBLOCK_SIZE);
}

#[test]
fn superblock_from_too_short_buffer_is_none() {
    assert!(Superblock::from_bytes(&[0u8; SUPERBLOCK_SIZE - 1]).is_none());
}

#[test]
fn superblock_encode_then_decode_round_trips_every_field() {
    let geo = Geometry::for_blocks(4096, Some(1000)).unwrap();
    let sb = Superblock::new(&geo, *b"0123456789abcdef", b"my label", 42);
    let bytes = sb.as_bytes().to_vec();
    let back = Superblock::from_bytes(&bytes).unwrap();
    assert_eq!(back.as_bytes(), &bytes[..], "bytes differ after round trip");
    assert_eq!(back.geometry(), geo);
    assert_eq!(back.magic, MAGIC);
    assert_eq!(back.version.get(), VERSION);
    assert_eq!(back.block_size.get(), BLOCK_SIZE as u32);
    assert_eq!(back.root_ino.get(), ROOT_INO);
    assert_eq!(&back.uuid, b"0123456789abcdef");
    assert_eq!(back.label_str(), b"my label");
    assert_eq!(back.mkfs_time.get(), 42);
    assert_eq!(back.checksum.get(), back.compute_checksum());
    assert_eq!(back.validate(4096), Ok(geo));
}

#[test]
fn superblock_integers_are_little_endian_at_fixed_offsets() {
    let sb = fresh_superblock(1024);
    let b = sb.as_bytes();
    assert_eq!(&b[0..8], b"FERROFS\0");
    assert_eq!(&b[8..12], &VERSION.to_le_bytes());
    assert_eq!(&b[12..16], &(BLOCK_SIZE as u32).to_le_bytes());
    assert_eq!(&b[16..24], &1024u64.to_le_bytes());
    assert_eq!(&b[508..512], &sb.compute_checksum().to_le_bytes());
}

#[test]
fn superblock_label_longer_than_31_bytes_is_truncated_and_nul_terminated() {
    let geo = Geometry::for_blocks(1024, None).unwrap();
    let sb = Superblock::new(&geo, [0; 16], &[b'x'; 40], 0);
    assert_eq!(sb.label_str().len(), 31);
    assert_eq!(sb.label[31], 0);
}

#[test]
fn fresh_superblock_validates() {
    for blocks in [MIN_BLOCKS, 1024, 262_144, 4_194_304] {
        let sb = reencode(&fresh_superblock(blocks));
        let got = sb.validate(blocks);
        let expected = Geometry::for_blocks(blocks, None).unwrap();
        assert_eq!(got, Ok(expected), "blocks = {blocks}");
    }
}

#[test]
fn superblock_on_larger_device_validates() {
    let sb = fresh_superblock(1024);
    assert!(sb.validate(1_000_000).is_ok());
}

#[test]
fn superblock_with_bad_magic_is_rejected_as_bad_magic() {
    let mut sb = fresh_superblock(1024);
    sb.magic[0] = b'X';
    sb.update_checksum();
    assert_eq!(sb.validate(1024), Err(FormatError::BadMagic));
}

#[test]
fn superblock_with_unknown_version_is_rejected_with_that_version() {
    for v in [0, VERSION + 1, 99] {
        let mut sb = fresh_superblock(1024);
        sb.version.set(v);
        sb.update_checksum();
        assert_eq!(sb.validate(1024), Err(FormatError::UnknownVersion(v)));
    }
}

#[test]
fn superblocks_of_versions_1_to_5_are_accepted() {
    assert_eq!(
        (
            VERSION_MIN,
            VERSION_FLAGS,
            VERSION_XATTR,
            VERSION_LONG_NAMES,
            VERSION_SLOTS,
            VERSION
        ),
        (1, 2, 3, 4, 5, 5)
    );
    for v in VERSION_MIN..=VERSION {
        let mut sb = fresh_superblock(1024);
        sb.version.set(v);
        if v < VERSION_SLOTS {
            // Older images have one journal area.
            sb.journal_slots.set(0);
        }
        sb.update_checksum();
        let g = sb
            .validate(1024)
            .unwrap_or_else(|e| panic!("version {v}: {e:?}"));
        assert_eq!(
            g.journal_slots,
            if v < VERSION_SLOTS { 1 } else { JOURNAL_SLOTS },
            "version {v}"
        );
    }
}

#[test]
fn journal_areas_are_checked() {
    let sb = fresh_superblock(1024);
    assert_eq!(
        sb.journal_slots.get(),
        JOURNAL_SLOTS,
        "mkfs makes version 5 areas"
    );
    let g = sb.validate(1024).unwrap();
    let (o1, l1) = g.slot_bytes(1);
    assert_eq!(
        (o1, l1),
        (
            l1,
            g.journal_blocks as usize * BLOCK_SIZE / JOURNAL_SLOTS as usize
        )
    );
    // Several areas on an image that says version 4: damage.
    let mut old = fresh_superblock(1024);
    old.version.set(VERSION_LONG_NAMES);
    old.update_checksum();
    assert_eq!(
        old.validate(1024),
        Err(FormatError::BadGeometry(
            "journal areas on an image older than version 5"
        ))
    );
    // Counts that do not divide the region, make areas too small, or exceed the limit.
    for n in [3u32, 5, 8, 17, 64, u32::MAX] {
        let mut sb = fresh_superblock(1024);
        sb.journal_slots.set(n);
        sb.update_checksum();
        assert_eq!(
            sb.validate(1024),
            Err(FormatError::BadGeometry("bad number of journal areas")),
            "{n} areas"
        );
    }
    for n in [0u32, 1, 2, 4] {
        let mut sb = fresh_superblock(1024);
        sb.journal_slots.set(n);
        sb.update_checksum();
        assert!(sb.validate(1024).is_ok(), "{n} areas");
    }
}

#[test]
fn inodes_with_unknown_flags_are_rejected() {
    let mut d = Inode::zeroed();
    d.mode.set(S_IFREG | 0o644);
    d.nlink.set(1);
    for (flags, ok) in [
        (0, true),
        (INODE_FL_IMMUTABLE, true),
        (INODE_FL_APPEND, true),
        (4, false),
        (0x8000, false),
    ] {
        d.flags.set(flags);
        d.update_checksum(5);
        assert_eq!(d.validate(5, 1024).is_ok(), ok, "flags {flags:#x}");
    }
}

#[test]
fn superblock_with_unknown_version_is_reported_before_bad_checksum() {
    let mut sb = fresh_superblock(1024);
    sb.version.set(9); // checksum left stale on purpose
    assert_eq!(sb.validate(1024), Err(FormatError::UnknownVersion(9)));
}

#[test]
fn superblock_with_flipped_byte_fails_checksum() {
    let sb = fresh_superblock(1024);
    let stored = sb.checksum.get();
    // Every byte covered by the checksum, except magic and version which are
    // checked (and reported) first.
    for off in 12..SUPERBLOCK_SIZE - 4 {
        let mut bytes = sb.as_bytes().to_vec();
        bytes[off] ^= 0x01;
        let bad = Superblock::from_bytes(&bytes).unwrap();
        match bad.validate(1024) {
            Err(FormatError::BadChecksum {
                stored: s,
                computed,
            }) => {
                assert_eq!(s, stored, "offset {off}: stored checksum");
                assert_ne!(computed, stored, "offset {off}: computed checksum");
            }
            other => panic!("offset {off}: expected BadChecksum, got {other:?}"),
        }
    }
}

#[test]
fn superblock_with_flipped_checksum_byte_fails_checksum() {
    let mut bytes = fresh_superblock(1024).as_bytes().to_vec();
    bytes[SUPERBLOCK_SIZE - 1] ^= 0x80;
    let got = Superblock::from_bytes(&bytes).unwrap().validate(1024);
    assert!(
        matches!(got, Err(FormatError::BadChecksum { .. })),
        "expected BadChecksum, got {got:?}"
    );
}

#[test]
fn superblock_with_bad_block_size_is_rejected_as_bad_block_size() {
    let mut sb = fresh_superblock(1024);
    sb.block_size.set(1024);
    // Without a fresh checksum the change is caught as corruption instead.
    let stale = sb.validate(1024);
    assert!(
        matches!(stale, Err(FormatError::BadChecksum { .. })),
        "expected BadChecksum with a stale checksum, got {stale:?}"
    );
    sb.update_checksum();
    assert_eq!(sb.validate(1024), Err(FormatError::BadBlockSize(1024)));
}

#[test]
fn superblock_larger_than_device_is_rejected_as_too_large() {
    let sb = fresh_superblock(1024);
    assert_eq!(
        sb.validate(1023),
        Err(FormatError::TooLarge {
            blocks: 1024,
            device_blocks: 1023
        })
    );
}

/// Changes one field of a fresh superblock, re-seals it, and expects
/// `BadGeometry`.
fn assert_bad_geometry(what: &str, change: impl FnOnce(&mut Superblock)) {
    let mut sb = fresh_superblock(1024);
    change(&mut sb);
    sb.update_checksum();
    let got = sb.validate(1024);
    assert!(
        matches!(got, Err(FormatError::BadGeometry(_))),
        "{what}: expected BadGeometry, got {got:?}"
    );
}

#[test]
fn superblock_with_overlapping_regions_is_rejected_as_bad_geometry() {
    assert_bad_geometry("bitmap inside journal", |sb| {
        let j = sb.journal_start.get();
        sb.bitmap_start.set(j + 1);
    });
    assert_bad_geometry("inode table over bitmap", |sb| {
        let b = sb.bitmap_start.get();
        sb.itable_start.set(b);
    });
    assert_bad_geometry("data over inode table", |sb| {
        let i = sb.itable_start.get();
        sb.data_start.set(i + 1);
    });
    assert_bad_geometry("journal over superblock", |sb| sb.journal_start.set(0));
}

#[test]
fn superblock_with_regions_past_the_end_is_rejected_as_bad_geometry() {
    assert_bad_geometry("data start at end", |sb| sb.data_start.set(1024));
    assert_bad_geometry("bitmap too small", |sb| sb.bitmap_blocks.set(0));
    assert_bad_geometry("inode table too small for inode count", |sb| {
        let n = sb.itable_blocks.get();
        sb.itable_blocks.set(n - 1);
    });
    assert_bad_geometry("inode count not a multiple of a block", |sb| {
        let n = sb.inodes_count.get();
        sb.inodes_count.set(n - 1);
    });
    assert_bad_geometry("zero inodes", |sb| {
        sb.inodes_count.set(0);
        sb.itable_blocks.set(0);
    });
    assert_bad_geometry("block count below minimum", |sb| {
        sb.blocks_count.set(MIN_BLOCKS - 1)
    });
    assert_bad_geometry("root inode not 1", |sb| sb.root_ino.set(2));
}

#[test]
fn superblock_with_huge_region_starts_is_rejected_without_overflow() {
    // Corrupt starts near u64::MAX must be rejected, not overflow (which
    // panics with overflow checks on, as in the kernel's default config).
    assert_bad_geometry("journal start at u64::MAX", |sb| {
        sb.journal_start.set(u64::MAX)
    });
    assert_bad_geometry("bitmap start at u64::MAX", |sb| {
        sb.bitmap_start.set(u64::MAX)
    });
    assert_bad_geometry("inode table start at u64::MAX", |sb| {
        sb.itable_start.set(u64::MAX)
    });
    assert_bad_geometry("all starts at u64::MAX", |sb| {
        sb.journal_start.set(u64::MAX);
        sb.bitmap_start.set(u64::MAX);
        sb.itable_start.set(u64::MAX);
        sb.data_start.set(u64::MAX);
    });
}

#[test]
fn format_error_reasons_are_not_empty() {
    let all = [
        FormatError::BadMagic,
        FormatError::UnknownVersion(3),
        FormatError::BadBlockSize(1),
        FormatError::BadChecksum {
            stored: 1,
            computed: 2,
        },
        FormatError::TooLarge {
            blocks: 2,
            device_blocks: 1,
        },
        FormatError::BadGeometry("g"),
        FormatError::BadInode("i"),
        FormatError::BadDirent("d"),
    ];
    for e in all {
        assert!(!e.reason().is_empty(), "{e:?} has an empty reason");
    }
}

// ---- Inode -----------------------------------------------------------------

fn dir_inode(ino: u32) -> Inode {
    let mut i = Inode::zeroed();
    i.mode.set(S_IFDIR | 0o755);
    i.nlink.set(2);
    i.size.set(BLOCK_SIZE as u64);
    i.blocks.set(1);
    i.direct[0].set(100);
    i.parent.set(ROOT_INO);
    i.update_checksum(ino);
    i
}

#[test]
fn inode_is_256_bytes_on_media() {
    assert_eq!(Inode::zeroed().as_bytes().len(), INODE_SIZE);
}

#[test]
fn inode_checksum_round_trips_through_bytes() {
    let i = dir_inode(5);
    let back = Inode::from_bytes(i.as_bytes()).unwrap();
    assert_eq!(back.as_bytes(), i.as_bytes());
    assert_eq!(back.validate(5, 1024), Ok(()));
    assert_eq!(back.checksum.get(), back.compute_checksum(5));
}

#[test]
fn inode_checksum_mixes_in_inode_number() {
    let bytes = dir_inode(5).as_bytes().to_vec();
    let i = Inode::from_bytes(&bytes).unwrap();
    assert_eq!(i.validate(5, 1024), Ok(()), "same bytes as inode 5");
    let got = i.validate(6, 1024);
    assert!(
        matches!(got, Err(FormatError::BadChecksum { .. })),
        "same bytes as inode 6: expected BadChecksum, got {got:?}"
    );
    assert_ne!(i.compute_checksum(5), i.compute_checksum(6));
}

#[test]
fn inode_with_flipped_byte_fails_checksum() {
    let good = dir_inode(3);
    for off in 0..INODE_SIZE {
        let mut bytes = good.as_bytes().to_vec();
        bytes[off] ^= 0x10;
        let bad = Inode::from_bytes(&bytes).unwrap();
        if bad.is_free() {
            continue; // a zero mode means "free slot", which is not checked
        }
        let got = bad.validate(3, 1024);
        assert!(
            matches!(got, Err(FormatError::BadChecksum { .. })),
            "offset {off}: expected BadChecksum, got {got:?}"
        );
    }
}

#[test]
fn free_inode_slot_is_not_checked() {
    let mut i = Inode::zeroed();
    i.checksum.set(0xdead_beef);
    assert!(i.is_free());
    assert_eq!(i.validate(1, 1024), Ok(()));
}

#[test]
fn inode_with_block_count_larger_than_the_filesystem_is_rejected() {
    // A count the kernel would multiply (i_blocks = blocks * 8) must be
    // bounded before use: 2^64-1 with a valid checksum is refused.
    let mut i = dir_inode(2);
    i.blocks.set(u64::MAX);
    i.update_checksum(2);
    assert_eq!(
        i.validate(2, 1024),
        Err(FormatError::BadInode(
            "block count larger than the filesystem"
        ))
    );
    i.blocks.set(1024);
    i.update_checksum(2);
    assert_eq!(i.validate(2, 1024), Ok(()));
}

#[test]
fn inode_with_block_pointer_past_end_is_rejected() {
    let mut i = dir_inode(2);
    i.direct[3].set(1024);
    i.update_checksum(2);
    assert_eq!(
        i.validate(2, 1024),
        Err(FormatError::BadInode("block pointer past the end"))
    );
    // The last block of the device is still a valid pointer.
    i.direct[3].set(1023);
    i.update_checksum(2);
    assert_eq!(i.validate(2, 1024), Ok(()));
}

#[test]
fn inode_with_indirect_pointers_past_end_is_rejected() {
    for which in 0..3 {
        let mut i = dir_inode(2);
        match which {
            0 => i.indirect.set(5000),
            1 => i.dindirect.set(5000),
            _ => i.tindirect.set(u32::MAX),
        }
        i.update_checksum(2);
        let got = i.validate(2, 1024);
        assert_eq!(
            got,
            Err(FormatError::BadInode("block pointer past the end")),
            "pointer kind {which}"
        );
    }
}

#[test]
fn inode_with_unknown_file_type_is_rejected() {
    // Version 3 knows FIFOs, devices and sockets (0o010000, 0o020000,
    // 0o060000, 0o140000); these are no file type.
    for fmt in [0o030000u16, 0o050000, 0o070000, 0o110000, 0o170000] {
        let mut i = dir_inode(4);
        i.mode.set(fmt | 0o644);
        i.update_checksum(4);
        assert_eq!(
            i.validate(4, 1024),
            Err(FormatError::BadInode("unknown file type")),
            "mode {:#o}",
            fmt
        );
    }
}

#[test]
fn inode_with_known_file_types_validates() {
    for fmt in [S_IFDIR, S_IFREG, S_IFLNK] {
        let mut i = dir_inode(4);
        i.mode.set(fmt | 0o644);
        i.update_checksum(4);
        assert_eq!(i.validate(4, 1024), Ok(()), "mode {:#o}", fmt);
    }
}

#[test]
fn dt_from_mode_maps_file_types() {
    assert_eq!(dt_from_mode(S_IFDIR | 0o755), DT_DIR);
    assert_eq!(dt_from_mode(S_IFREG | 0o644), DT_REG);
    assert_eq!(dt_from_mode(S_IFLNK | 0o777), DT_LNK);
    assert_eq!(dt_from_mode(S_IFCHR | 0o600), DT_CHR);
    assert_eq!(dt_from_mode(S_IFBLK), DT_BLK);
    assert_eq!(dt_from_mode(S_IFIFO), DT_FIFO);
    assert_eq!(dt_from_mode(S_IFSOCK), DT_SOCK);
    assert_eq!(dt_from_mode(0o030000), DT_UNKNOWN);
}

// ---- Dirent ----------------------------------------------------------------

#[test]
fn dirent_is_256_bytes_on_media() {
    let d = Dirent::new(1, b"a", DT_REG).unwrap();
    assert_eq!(d.as_bytes().len(), DIRENT_SIZE);
}

#[test]
fn dirent_with_empty_name_is_rejected() {
    let got = Dirent::new(2, b"", DT_REG).map(|_| ());
    assert_eq!(got, Err(FormatError::BadDirent("name length out of range")));
}

#[test]
fn dirent_with_name_longer_than_a_slot_is_not_one_slot() {
    let name = [b'n'; SLOT_NAME_MAX + 1];
    let got = Dirent::new(2, &name, DT_REG).map(|_| ());
    assert_eq!(got, Err(FormatError::BadDirent("name length out of range")));
}

#[test]
fn dirent_with_name_of_slot_name_max_bytes_round_trips() {
    let name = [b'n'; SLOT_NAME_MAX];
    let d = Dirent::new(9, &name, DT_DIR).unwrap();
    let back = Dirent::from_bytes(d.as_bytes()).unwrap();
    assert_eq!(back.ino.get(), 9);
    assert_eq!(back.file_type, DT_DIR);
    assert_eq!(back.name(), Ok(&name[..]));
}

#[test]
fn dirent_name_with_corrupt_length_is_rejected() {
    let d = Dirent::new(9, b"hello", DT_REG).unwrap();
    for bad_len in [0u8, SLOT_NAME_MAX as u8 + 1, u8::MAX] {
        let mut bytes = d.as_bytes().to_vec();
        bytes[4] = bad_len; // name_len
        let back = Dirent::from_bytes(&bytes).unwrap();
        assert_eq!(
            back.name(),
            Err(FormatError::BadDirent("name length out of range")),
            "name_len {bad_len}"
        );
    }
}

fn block_with(slots: &[(usize, Dirent)]) -> Vec<u8> {
    let mut blk = vec![0u8; BLOCK_SIZE];
    for (s, d) in slots {
        blk[s * DIRENT_SIZE..(s + 1) * DIRENT_SIZE].copy_from_slice(d.as_bytes());
    }
    blk
}

#[test]
fn names_of_249_to_255_bytes_take_two_slots_and_read_back() {
    assert_eq!((NAME_MAX, SLOT_NAME_MAX, VERSION_LONG_NAMES), (255, 248, 4));
    for len in [SLOT_NAME_MAX + 1, 250, NAME_MAX] {
        let name: Vec<u8> = (0..len).map(|i| b'a' + (i % 26) as u8).collect();
        let (head, cont) = Dirent::new_entry(7, &name, DT_REG).unwrap();
        let cont = cont.expect("a continuation slot");
        assert!(head.is_long() && cont.is_cont() && !cont.is_long());
        assert_eq!(cont.ino.get(), DIRENT_CONT);
        assert_eq!(cont.name_len as usize, len - SLOT_NAME_MAX);
        let short = Dirent::new(8, b"short", DT_DIR).unwrap();
        let blk = block_with(&[(0, short), (3, head), (4, cont), (15, short)]);
        let got: Vec<_> = block_entries(&blk)
            .map(|r| r.map_err(|(s, _)| s).unwrap())
            .collect();
        let seen: Vec<_> = got
            .iter()
            .map(|e| (e.slot, e.slots, e.ino, e.name().to_vec()))
            .collect();
        assert_eq!(
            seen,
            vec![
                (0, 1, 8, b"short".to_vec()),
                (3, 2, 7, name.clone()),
                (15, 1, 8, b"short".to_vec())
            ]
        );
    }
    assert!(Dirent::new_entry(7, &[b'x'; NAME_MAX + 1], DT_REG).is_err());
    let (one, none) = Dirent::new_entry(7, &[b'x'; SLOT_NAME_MAX], DT_REG).unwrap();
    assert!(none.is_none() && !one.is_long());
}

#[test]
fn broken_long_names_and_stray_continuations_are_errors() {
    let name = [b'q'; 252];
    let (head, cont) = Dirent::new_entry(7, &name, DT_REG).unwrap();
    let cont = cont.unwrap();
    let short = Dirent::new(8, b"s", DT_REG).unwrap();
    let errs = |blk: &[u8]| -> Vec<usize> {
        block_entries(blk)
            .filter_map(|r| r.err().map(|(s, _)| s))
            .collect()
    };
    // In the block's last slot: no room for the continuation.
    assert_eq!(errs(&block_with(&[(15, head)])), vec![15]);
    // Followed by a free slot, or by another entry.
    assert_eq!(errs(&block_with(&[(2, head)])), vec![2]);
    assert_eq!(errs(&block_with(&[(2, head), (3, short)])), vec![2]);
    // A continuation of the wrong length.
    let mut bad = cont;
    bad.name_len = 2;
    assert_eq!(errs(&block_with(&[(2, head), (3, bad)])), vec![2, 3]);
    // A continuation alone.
    assert_eq!(errs(&block_with(&[(0, short), (5, cont)])), vec![5]);
    // A continuation's name is not a name.
    assert!(cont.name().is_err());
}

// ---- map_path --------------------------------------------------------------

#[test]
fn map_path_boundaries_between_direct_and_indirect_levels() {
    let p = PTRS_PER_BLOCK as u64;
    let n = NDIRECT as u64;
    let cases: &[(u64, Option<MapPath>)] = &[
        (0, Some(MapPath::Direct(0))),
        (11, Some(MapPath::Direct(11))),
        (12, Some(MapPath::Ind([0]))),
        (12 + 1023, Some(MapPath::Ind([1023]))),
        (12 + 1024, Some(MapPath::Dind([0, 0]))),
        (12 + 1024 + 1023, Some(MapPath::Dind([0, 1023]))),
        (12 + 1024 + 1024, Some(MapPath::Dind([1, 0]))),
        (n + p + p * p - 1, Some(MapPath::Dind([1023, 1023]))),
        (n + p + p * p, Some(MapPath::Tind([0, 0, 0]))),
        (n + p + p * p + 1, Some(MapPath::Tind([0, 0, 1]))),
        (n + p + p * p + p, Some(MapPath::Tind([0, 1, 0]))),
        (n + p + p * p + p * p, Some(MapPath::Tind([1, 0, 0]))),
        (MAX_FILE_BLOCKS - 1, Some(MapPath::Tind([1023, 1023, 1023]))),
        (MAX_FILE_BLOCKS, None),
        (u64::MAX, None),
    ];
    for &(lblk, expected) in cases {
        let got = map_path(lblk);
        assert_eq!(got, expected, "map_path({lblk})");
    }
}

#[test]
fn max_file_blocks_counts_every_level() {
    let p = PTRS_PER_BLOCK as u64;
    assert_eq!(PTRS_PER_BLOCK, 1024);
    assert_eq!(MAX_FILE_BLOCKS, 12 + p + p * p + p * p * p);
}

// ---- Geometry --------------------------------------------------------------

#[test]
fn geometry_below_min_blocks_is_rejected_as_too_small() {
    for blocks in [0, 1, 64, MIN_BLOCKS - 1] {
        assert_eq!(
            Geometry::for_blocks(blocks, None),
            Err(FormatError::BadGeometry("device too small")),
            "blocks = {blocks}"
        );
    }
}

#[test]
fn geometry_with_too_many_inodes_for_device_is_rejected() {
    let got = Geometry::for_blocks(MIN_BLOCKS, Some(100_000));
    assert!(
        matches!(got, Err(FormatError::BadGeometry(_))),
        "expected BadGeometry, got {got:?}"
    );
}

#[test]
fn geometry_with_zero_or_overflowing_inode_count_is_rejected() {
    for inodes in [0, u32::MAX, u32::MAX - 14] {
        let got = Geometry::for_blocks(u32::MAX as u64, Some(inodes));
        assert_eq!(
            got,
            Err(FormatError::BadGeometry("inode count out of range")),
            "inodes = {inodes}"
        );
    }
}

#[test]
fn geometry_beyond_32_bit_block_numbers_is_rejected() {
    let got = Geometry::for_blocks(u32::MAX as u64 + 1, None);
    assert!(
        matches!(got, Err(FormatError::BadGeometry(_))),
        "expected BadGeometry, got {got:?}"
    );
}

#[test]
fn geometry_rounds_inode_count_up_to_whole_blocks() {
    let g = Geometry::for_blocks(1024, Some(17)).unwrap();
    assert_eq!(g.inodes_count, 32);
    assert_eq!(g.itable_blocks, 2);
}

/// The invariants mkfs relies on, for one size.
fn check_geometry(blocks: u64) {
    let g = Geometry::for_blocks(blocks, None)
        .unwrap_or_else(|e| panic!("blocks = {blocks}: unexpected {e:?}"));
    let bits = (BLOCK_SIZE * 8) as u64;
    assert_eq!(g.blocks_count, blocks);
    // Superblock, journal, bitmap, inode table, data: in order, touching,
    // never overlapping.
    assert_eq!(g.journal_start, 1, "blocks = {blocks}");
    assert_eq!(g.journal_blocks, JOURNAL_BLOCKS);
    assert_eq!(
        g.bitmap_start,
        g.journal_start + g.journal_blocks as u64,
        "blocks = {blocks}: bitmap after journal"
    );
    assert_eq!(
        g.bitmap_blocks as u64,
        blocks.div_ceil(bits),
        "blocks = {blocks}: one bit per block"
    );
    assert_eq!(
        g.itable_start,
        g.bitmap_start + g.bitmap_blocks as u64,
        "blocks = {blocks}: inode table after bitmap"
    );
    assert_eq!(
        g.itable_blocks as u64 * INODES_PER_BLOCK as u64,
        g.inodes_count as u64,
        "blocks = {blocks}: inode table holds the inodes"
    );
    assert_eq!(
        g.data_start,
        g.itable_start + g.itable_blocks as u64,
        "blocks = {blocks}: data after inode table"
    );
    assert!(
        g.data_start + 16 <= blocks,
        "blocks = {blocks}: data_start {} leaves no room for data",
        g.data_start
    );
    assert!(g.inodes_count >= 64, "blocks = {blocks}");
    // And the superblock built from it validates against the device.
    let sb = Superblock::new(&g, [0; 16], b"", 0);
    assert_eq!(sb.validate(blocks), Ok(g), "blocks = {blocks}");
}

#[test]
fn geometry_regions_are_in_order_and_disjoint_for_256_blocks() {
    check_geometry(256);
}

#[test]
fn geometry_regions_are_in_order_and_disjoint_for_1_gib() {
    check_geometry((1u64 << 30) / BLOCK_SIZE as u64);
}

#[test]
fn geometry_regions_are_in_order_and_disjoint_for_16_gib() {
    check_geometry((16u64 << 30) / BLOCK_SIZE as u64);
}

#[test]
fn geometry_regions_are_in_order_and_disjoint_for_odd_sizes() {
    for blocks in [
        257,
        1000,
        32_767,
        32_768,
        32_769,
        1_000_003,
        u32::MAX as u64,
    ] {
        check_geometry(blocks);
    }
}

#[test]
fn geometry_default_inode_count_is_one_per_16_kib_clamped() {
    let g = Geometry::for_blocks(256, None).unwrap();
    assert_eq!(g.inodes_count, 64, "256 blocks");
    let g = Geometry::for_blocks(262_144, None).unwrap(); // 1 GiB
    assert_eq!(g.inodes_count, 65_536, "1 GiB");
    let g = Geometry::for_blocks(u32::MAX as u64, None).unwrap();
    assert_eq!(g.inodes_count, 1 << 20, "16 TiB");
}

#[test]
fn inode_with_link_count_above_nlink_max_is_rejected() {
    // 2^32-1 links once wrapped to 0 in the VFS's inc_nlink (a WARN at
    // destroy_inode).
    let mut i = dir_inode(2);
    i.nlink.set(u32::MAX);
    i.update_checksum(2);
    assert_eq!(
        i.validate(2, 1024),
        Err(FormatError::BadInode("link count out of range"))
    );
    i.nlink.set(NLINK_MAX);
    i.update_checksum(2);
    assert_eq!(i.validate(2, 1024), Ok(()));
}

#[test]
fn superblock_with_a_journal_smaller_than_mkfs_makes_is_rejected() {
    // A 1-block journal cannot hold one bounded truncate transaction: the
    // module looped for ever freeing nothing.
    let mut sb = fresh_superblock(1024);
    sb.journal_blocks.set(1);
    sb.update_checksum();
    assert_eq!(
        sb.validate(1024),
        Err(FormatError::BadGeometry("journal too small"))
    );
}

// ---- extended attribute blocks (version 3) ---------------------------------

fn xattr_block(ino: u32, entries: &[XattrEntry<'_>]) -> Vec<u8> {
    let mut b = vec![0u8; BLOCK_SIZE];
    xattr_build(&mut b, ino, entries.iter().copied()).expect("entries fit");
    b
}

#[test]
fn an_xattr_block_reads_back_what_was_built() {
    let es = [
        XattrEntry {
            index: XATTR_USER,
            name: b"a",
            value: b"1",
        },
        XattrEntry {
            index: XATTR_TRUSTED,
            name: b"t.x",
            value: b"",
        },
        XattrEntry {
            index: XATTR_ACL_ACCESS,
            name: b"",
            value: &[2, 0, 0, 0],
        },
        XattrEntry {
            index: XATTR_SECURITY,
            name: &[b'n'; 255],
            value: &[7; 1000],
        },
    ];
    let b = xattr_block(9, &es);
    let got: Vec<_> = xattr_entries(&b, 9).expect("valid").collect();
    assert_eq!(got, es);
    // Another inode's block is refused.
    assert_eq!(
        xattr_entries(&b, 10).err(),
        Some(FormatError::BadXattr("block of another inode"))
    );
}

#[test]
fn every_flipped_byte_of_an_xattr_block_in_use_is_caught() {
    let es = [
        XattrEntry {
            index: XATTR_USER,
            name: b"key",
            value: b"value",
        },
        XattrEntry {
            index: XATTR_USER,
            name: b"k2",
            value: b"v2",
        },
    ];
    let b = xattr_block(3, &es);
    let used = XATTR_HEADER_SIZE + es.iter().map(|e| e.size()).sum::<usize>();
    for i in 0..used {
        if (16..24).contains(&i) {
            continue; // the check itself: any change of it is a mismatch too
        }
        let mut c = b.clone();
        c[i] ^= 0x40;
        assert!(
            xattr_entries(&c, 3).is_err(),
            "byte {i} flipped, still accepted"
        );
    }
    let mut c = b.clone();
    c[20] ^= 1;
    assert_eq!(
        xattr_entries(&c, 3).err(),
        Some(FormatError::BadXattr("bad check"))
    );
    // Bytes after the entries are not covered (they are zero after a build).
    let mut c = b;
    c[BLOCK_SIZE - 1] = 0xff;
    assert!(xattr_entries(&c, 3).is_ok());
}

#[test]
fn xattr_entries_that_do_not_fit_or_are_malformed_are_refused_by_the_builder() {
    let mut b = vec![0u8; BLOCK_SIZE];
    let mut build = |index: u8, name: &[u8], value: &[u8]| {
        xattr_build(&mut b, 1, [XattrEntry { index, name, value }].into_iter())
    };
    let big = vec![0u8; XATTR_SPACE - XATTR_ENTRY_HEADER - 1];
    assert!(build(XATTR_USER, b"x", &big).is_ok());
    let big = vec![0u8; XATTR_SPACE - XATTR_ENTRY_HEADER];
    assert_eq!(
        build(XATTR_USER, b"x", &big),
        Err(FormatError::XattrNoSpace)
    );
    for (index, name) in [
        (0u8, &b"x"[..]),
        (6, b"x"),
        (XATTR_USER, b""),
        (XATTR_ACL_DEFAULT, b"x"),
    ] {
        assert!(
            build(index, name, b"").is_err(),
            "index {index} name {name:?} accepted"
        );
    }
}

#[test]
fn an_inode_xattr_pointer_past_the_end_is_rejected() {
    let mut i = Inode::zeroed();
    i.mode.set(S_IFREG | 0o644);
    i.nlink.set(1);
    i.xattr.set(5000);
    i.update_checksum(2);
    assert_eq!(
        i.validate(2, 4096),
        Err(FormatError::BadInode("block pointer past the end"))
    );
    i.xattr.set(4000);
    i.update_checksum(2);
    assert_eq!(i.validate(2, 4096), Ok(()));
}

#[test]
fn special_files_have_no_blocks_and_only_they_have_device_numbers() {
    for (fmt, ok) in [
        (S_IFCHR, true),
        (S_IFBLK, true),
        (S_IFIFO, true),
        (S_IFSOCK, true),
        (0o070000, false),
    ] {
        let mut i = Inode::zeroed();
        i.mode.set(fmt | 0o644);
        i.nlink.set(1);
        i.rdev.set(0x1234);
        i.update_checksum(2);
        assert_eq!(i.validate(2, 4096).is_ok(), ok, "type {fmt:o}");
        if !ok {
            continue;
        }
        assert!(dt_from_mode(fmt) != DT_UNKNOWN);
        i.direct[0].set(300);
        i.update_checksum(2);
        assert_eq!(
            i.validate(2, 4096),
            Err(FormatError::BadInode("special file with data"))
        );
        i.direct[0].set(0);
        i.size.set(1);
        i.update_checksum(2);
        assert_eq!(
            i.validate(2, 4096),
            Err(FormatError::BadInode("special file with data"))
        );
    }
    let mut f = Inode::zeroed();
    f.mode.set(S_IFREG | 0o644);
    f.nlink.set(1);
    f.rdev.set(1);
    f.update_checksum(3);
    assert_eq!(
        f.validate(3, 4096),
        Err(FormatError::BadInode(
            "device number on a file that is not a device"
        ))
    );
}
