//! Userspace access to a ferrofs image or device: blocks, the superblock, the
//! allocation bitmap and inode slots, decoded with the shared on-media format
//! (`ferrofs_format`). Used by mkfs and by tests that check what it wrote.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::{FileExt, FileTypeExt, OpenOptionsExt};
use std::path::Path;

use ferrofs_format::{
    FormatError, Geometry, Inode, JournalState, Pod, Records, Superblock, BLOCK_SIZE,
    INODES_PER_BLOCK, INODE_SIZE, JOURNAL_MAGIC, JOURNAL_SEQ_DONE_OFF,
};

/// Whole blocks in a device or image of `bytes` bytes.
pub fn blocks_in(bytes: u64) -> u64 {
    bytes / BLOCK_SIZE as u64
}

/// Where inode `ino` lives: (block number, byte offset in that block), or
/// None if `ino` is 0 or beyond the inode table.
pub fn inode_location(geo: &Geometry, ino: u32) -> Option<(u64, usize)> {
    if ino == 0 || ino > geo.inodes_count {
        return None;
    }
    let slot = (ino - 1) as u64;
    let per = INODES_PER_BLOCK as u64;
    Some((
        geo.itable_start + slot / per,
        (slot % per) as usize * INODE_SIZE,
    ))
}

/// The block allocation bitmap: bit `i` is block `i`, least significant bit
/// first within each byte, bytes in order.
#[derive(Clone, PartialEq, Eq)]
pub struct Bitmap {
    bytes: Vec<u8>,
}

impl Bitmap {
    /// An all-clear bitmap of `bitmap_blocks` blocks.
    pub fn zeroed(bitmap_blocks: u32) -> Bitmap {
        Bitmap {
            bytes: vec![0; bitmap_blocks as usize * BLOCK_SIZE],
        }
    }

    pub fn from_bytes(bytes: Vec<u8>) -> Bitmap {
        Bitmap { bytes }
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Number of bits the bitmap holds.
    pub fn len(&self) -> u64 {
        self.bytes.len() as u64 * 8
    }

    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// Whether block `i` is marked used. Bits past the end read as used.
    pub fn get(&self, i: u64) -> bool {
        match self.bytes.get((i / 8) as usize) {
            Some(b) => b & (1 << (i % 8)) != 0,
            None => true,
        }
    }

    /// Marks block `i` used. Panics if `i` is past the end of the bitmap.
    pub fn set(&mut self, i: u64) {
        self.bytes[(i / 8) as usize] |= 1 << (i % 8);
    }

    /// Marks block `i` free. Panics if `i` is past the end of the bitmap.
    pub fn clear(&mut self, i: u64) {
        self.bytes[(i / 8) as usize] &= !(1 << (i % 8));
    }

    /// Marks blocks `start..end` used (clamped to the bitmap's length).
    pub fn set_range(&mut self, start: u64, end: u64) {
        for i in start..end.min(self.len()) {
            self.set(i);
        }
    }

    /// Blocks in `start..end` that are marked used.
    pub fn count_set(&self, start: u64, end: u64) -> u64 {
        (start..end).filter(|&i| self.get(i)).count() as u64
    }
}

impl std::fmt::Debug for Bitmap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Bitmap({} bits)", self.len())
    }
}

/// An error decoding the medium, as an `io::Error` (kind `InvalidData`).
pub fn format_error(e: FormatError) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("{} ({e:?})", e.reason()),
    )
}

/// A ferrofs image or device, read block by block.
pub struct Image<D> {
    dev: D,
}

impl<D: Read + Seek> Image<D> {
    pub fn new(dev: D) -> Image<D> {
        Image { dev }
    }

    pub fn into_inner(self) -> D {
        self.dev
    }

    /// Size of the device in bytes.
    pub fn size(&mut self) -> io::Result<u64> {
        self.dev.seek(SeekFrom::End(0))
    }

    /// Blocks `start..start + count`, concatenated. Fails with
    /// `UnexpectedEof` if the device ends before them.
    pub fn read_blocks(&mut self, start: u64, count: u64) -> io::Result<Vec<u8>> {
        let bytes = count
            .checked_mul(BLOCK_SIZE as u64)
            .and_then(|n| usize::try_from(n).ok())
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "block range too large"))?;
        let offset = start
            .checked_mul(BLOCK_SIZE as u64)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "block number too large"))?;
        let mut buf = vec![0; bytes];
        self.dev.seek(SeekFrom::Start(offset))?;
        self.dev.read_exact(&mut buf)?;
        Ok(buf)
    }

    pub fn read_block(&mut self, n: u64) -> io::Result<Vec<u8>> {
        self.read_blocks(n, 1)
    }

    /// The superblock, decoded but not validated.
    pub fn superblock(&mut self) -> io::Result<Superblock> {
        let b = self.read_block(0)?;
        Ok(Superblock::from_bytes(&b).expect("a block holds a superblock"))
    }

    /// The superblock, validated against the device's size; with the
    /// geometry it describes.
    pub fn validated_superblock(&mut self) -> io::Result<(Superblock, Geometry)> {
        let blocks = blocks_in(self.size()?);
        let sb = self.superblock()?;
        let geo = sb.validate(blocks).map_err(format_error)?;
        Ok((sb, geo))
    }

    /// Inode slot `ino`, decoded but not validated.
    pub fn inode(&mut self, geo: &Geometry, ino: u32) -> io::Result<Inode> {
        let (block, off) = inode_location(geo, ino).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("inode {ino} outside 1..={}", geo.inodes_count),
            )
        })?;
        let b = self.read_block(block)?;
        Ok(Inode::from_bytes(&b[off..]).expect("slot lies within the block"))
    }

    /// The whole allocation bitmap.
    pub fn bitmap(&mut self, geo: &Geometry) -> io::Result<Bitmap> {
        let bytes = self.read_blocks(geo.bitmap_start, geo.bitmap_blocks as u64)?;
        Ok(Bitmap::from_bytes(bytes))
    }
}

/// One undo record: the bytes to put back at a device offset, or (masked,
/// version 5) the bits of the 8-byte word there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UndoRec {
    pub target: u64,
    /// The old bytes, or a masked record's mask and old bits.
    pub data: Vec<u8>,
    pub masked: bool,
}

impl UndoRec {
    /// Bytes at `target` the record changes.
    pub fn len(&self) -> usize {
        if self.masked {
            8
        } else {
            self.data.len()
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Undo on `cur`, the [`UndoRec::len`] bytes now at `target`.
    pub fn apply(&self, cur: &mut [u8]) {
        if self.masked {
            let mut w = [0u8; 8];
            w.copy_from_slice(&cur[..8]);
            let v = ferrofs_format::masked_undo(u64::from_le_bytes(w), &self.data);
            cur[..8].copy_from_slice(&v.to_le_bytes());
        } else {
            cur.copy_from_slice(&self.data);
        }
    }
}

/// Undo records, in the order to apply them.
pub type Undo = Vec<UndoRec>;

/// The unfinished journal transaction in `region` (one journal area of a
/// filesystem of geometry `geo`, see [`journal_areas`]): its state and the
/// undo records in the order to apply them (newest first, so a range logged
/// twice ends with its oldest bytes). An error is a damaged journal.
pub fn pending_undo(region: &[u8], geo: &Geometry) -> Result<(JournalState, Undo), FormatError> {
    let state = JournalState::parse(region, geo)?;
    let mut undo = Vec::with_capacity(state.pending);
    for r in Records::new(region, state.seq_done, geo) {
        let r = r?;
        undo.push(UndoRec {
            target: r.target,
            data: r.data.to_vec(),
            masked: r.masked,
        });
    }
    undo.reverse();
    Ok((state, undo))
}

/// Device byte ranges of the journal areas of `geo` (one on images older
/// than version 5). Transactions of different areas never change the same
/// bytes (masked records: the same bits), so their undo can be applied in
/// any order.
pub fn journal_areas(geo: &Geometry) -> Vec<(u64, u64)> {
    let bs = BLOCK_SIZE as u64;
    let base = geo.journal_start.saturating_mul(bs);
    (0..geo.journal_slots.max(1))
        .map(|k| {
            let (off, len) = geo.slot_bytes(k);
            let s = base.saturating_add(off as u64);
            (s, s.saturating_add(len as u64))
        })
        .collect()
}

/// Roll back the unfinished transaction of each journal area of a whole
/// image held in memory, as mount does: the records' bytes put back newest
/// first, then `seq_done` advanced (a fresh all-zero header gets the magic
/// too). Returns the number of records applied; 0 and nothing written if
/// the journal is clean.
pub fn rollback_in_memory(image: &mut [u8], geo: &Geometry) -> Result<usize, FormatError> {
    let past_end = FormatError::BadJournal("journal region past the end of the image");
    let mut total = 0;
    for (start, end) in journal_areas(geo) {
        let (start, end) = match (usize::try_from(start), usize::try_from(end)) {
            (Ok(s), Ok(e)) => (s, e),
            _ => return Err(past_end),
        };
        let region = image.get(start..end).ok_or(past_end)?;
        let (state, undo) = pending_undo(region, geo)?;
        if state.pending == 0 {
            continue;
        }
        for u in &undo {
            let t = usize::try_from(u.target).unwrap_or(usize::MAX);
            let cur =
                image
                    .get_mut(t..t.saturating_add(u.len()))
                    .ok_or(FormatError::BadJournal(
                        "journal record past the end of the image",
                    ))?;
            u.apply(cur);
        }
        let seq = state.seq_done.wrapping_add(1);
        image[start..start + 8].copy_from_slice(&JOURNAL_MAGIC);
        image[start + JOURNAL_SEQ_DONE_OFF..start + JOURNAL_SEQ_DONE_OFF + 8]
            .copy_from_slice(&seq.to_le_bytes());
        total += undo.len();
    }
    Ok(total)
}

/// Roll back the unfinished transaction of each journal area on a device
/// or image file (opened for writing), as mount does: the records' bytes
/// written back newest first and synced, then `seq_done` advanced and
/// synced, so that a crash in between leaves the same transaction to roll
/// back again. Returns the number of records applied; 0 and nothing written
/// if the journal is clean. A damaged journal is an `InvalidData` error,
/// found before anything is written.
pub fn recover_journal(file: &File, geo: &Geometry) -> io::Result<usize> {
    let mut areas = Vec::new();
    for (start, end) in journal_areas(geo) {
        let len = usize::try_from(end - start)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "journal region too large"))?;
        let mut region = vec![0u8; len];
        file.read_exact_at(&mut region, start)?;
        let (state, undo) = pending_undo(&region, geo).map_err(format_error)?;
        areas.push((start, state, undo));
    }
    let mut total = 0;
    for (start, state, undo) in areas {
        if state.pending == 0 {
            continue;
        }
        for u in &undo {
            let mut cur = vec![0u8; u.len()];
            if u.masked {
                file.read_exact_at(&mut cur, u.target)?;
            }
            u.apply(&mut cur);
            file.write_all_at(&cur, u.target)?;
        }
        file.sync_all()?;
        if state.fresh {
            file.write_all_at(&JOURNAL_MAGIC, start)?;
        }
        let seq = state.seq_done.wrapping_add(1);
        file.write_all_at(&seq.to_le_bytes(), start + JOURNAL_SEQ_DONE_OFF as u64)?;
        file.sync_all()?;
        total += undo.len();
    }
    Ok(total)
}

/// Open a ferrofs device or image file, refusing anything else. With
/// `write`, a block device is opened O_EXCL, which fails with EBUSY while it
/// is mounted or otherwise claimed (as mkfs.ext4 and e2fsck do).
pub fn open_device(dev: &Path, write: bool) -> Result<File, String> {
    let name = dev.display();
    let is_blockdev = std::fs::metadata(dev)
        .map(|m| m.file_type().is_block_device())
        .unwrap_or(false);
    let mut oo = OpenOptions::new();
    oo.read(true);
    if write {
        oo.write(true);
        if is_blockdev {
            oo.custom_flags(libc::O_EXCL);
        }
    }
    let file = oo.open(dev).map_err(|e| {
        let hint = if write && is_blockdev && e.raw_os_error() == Some(libc::EBUSY) {
            " (is it mounted? write only an unmounted filesystem)"
        } else {
            ""
        };
        let how = if write {
            "for reading and writing"
        } else {
            "for reading"
        };
        format!("cannot open {name} {how}: {e}{hint}")
    })?;
    let ft = file
        .metadata()
        .map_err(|e| format!("cannot stat {name}: {e}"))?
        .file_type();
    if !ft.is_block_device() && !ft.is_file() {
        return Err(format!("{name} is not a block device or a regular file"));
    }
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bitmap_bits_are_lsb_first_within_bytes() {
        let mut bm = Bitmap::zeroed(1);
        bm.set(0);
        bm.set(9);
        assert_eq!(&bm.as_bytes()[..2], &[0b0000_0001, 0b0000_0010]);
        assert!(bm.get(0) && bm.get(9));
        assert!(!bm.get(1) && !bm.get(8));
    }

    #[test]
    fn bitmap_bits_past_the_end_read_as_used() {
        let bm = Bitmap::zeroed(1);
        assert_eq!(bm.len(), (BLOCK_SIZE * 8) as u64);
        assert!(!bm.get(bm.len() - 1));
        assert!(bm.get(bm.len()));
    }

    #[test]
    fn bitmap_clear_frees_one_bit_only() {
        let mut bm = Bitmap::zeroed(1);
        bm.set_range(0, 16);
        bm.clear(9);
        assert_eq!(&bm.as_bytes()[..2], &[0xff, 0b1111_1101]);
        assert!(!bm.get(9) && bm.get(8) && bm.get(10));
    }

    #[test]
    fn bitmap_set_range_clamps_and_counts() {
        let mut bm = Bitmap::zeroed(1);
        bm.set_range(10, 20);
        assert_eq!(bm.count_set(0, bm.len()), 10);
        bm.set_range(bm.len() - 3, u64::MAX);
        assert_eq!(bm.count_set(0, bm.len()), 13);
    }

    #[test]
    fn inode_location_maps_ino_1_to_first_slot_and_rejects_out_of_range() {
        let geo = Geometry::for_blocks(1024, Some(64)).unwrap();
        assert_eq!(inode_location(&geo, 1), Some((geo.itable_start, 0)));
        assert_eq!(
            inode_location(&geo, 17),
            Some((geo.itable_start + 1, 0)),
            "17th inode starts the second table block"
        );
        assert_eq!(
            inode_location(&geo, 64),
            Some((geo.itable_start + 3, 15 * INODE_SIZE))
        );
        assert_eq!(inode_location(&geo, 0), None);
        assert_eq!(inode_location(&geo, 65), None);
    }

    #[test]
    fn reading_past_the_end_is_unexpected_eof() {
        let mut img = Image::new(io::Cursor::new(vec![0u8; BLOCK_SIZE * 2]));
        assert!(img.read_block(1).is_ok());
        let e = img.read_block(2).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
    }

    use ferrofs_format::{record_size, JournalHeader, RecordHeader, JOURNAL_RECORDS_OFF};

    /// A 1024-block image whose journal (header `seq_done`, unless None: an
    /// all-zero header) holds one record per entry of `records`, each
    /// `(target, old bytes)` of transaction `seq_done + 1`.
    fn image_with_journal(seq_done: Option<u64>, records: &[(u64, &[u8])]) -> (Geometry, Vec<u8>) {
        let geo = Geometry::for_blocks(1024, Some(64)).unwrap();
        let mut img = vec![0u8; 1024 * BLOCK_SIZE];
        let j = geo.journal_start as usize * BLOCK_SIZE;
        if let Some(done) = seq_done {
            img[j..j + JOURNAL_RECORDS_OFF].copy_from_slice(JournalHeader::new(done).as_bytes());
        }
        let seq = seq_done.unwrap_or(0) + 1;
        let mut pos = j + JOURNAL_RECORDS_OFF;
        for (target, old) in records {
            let h = RecordHeader::new(seq, *target, old);
            img[pos..pos + 24].copy_from_slice(h.as_bytes());
            img[pos + 24..pos + 24 + old.len()].copy_from_slice(old);
            pos += record_size(old.len());
        }
        (geo, img)
    }

    fn seq_done_of(img: &[u8], geo: &Geometry) -> u64 {
        let at = geo.journal_start as usize * BLOCK_SIZE + JOURNAL_SEQ_DONE_OFF;
        u64::from_le_bytes(img[at..at + 8].try_into().unwrap())
    }

    /// A scratch file holding `bytes`, removed on drop.
    struct TempFile(std::path::PathBuf);

    impl TempFile {
        fn new(name: &str, bytes: &[u8]) -> TempFile {
            let path = std::env::temp_dir()
                .join(format!("ferrofs-image-{name}-{}.img", std::process::id()));
            std::fs::write(&path, bytes).unwrap();
            TempFile(path)
        }
        fn open(&self) -> File {
            OpenOptions::new()
                .read(true)
                .write(true)
                .open(&self.0)
                .unwrap()
        }
        fn bytes(&self) -> Vec<u8> {
            std::fs::read(&self.0).unwrap()
        }
    }

    impl Drop for TempFile {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    #[test]
    fn pending_undo_lists_records_newest_first() {
        let geo = Geometry::for_blocks(1024, Some(64)).unwrap();
        let t = geo.bitmap_start * BLOCK_SIZE as u64;
        let (geo, img) = image_with_journal(Some(7), &[(t, &[1; 8]), (t + 100, &[2; 3])]);
        let j = geo.journal_start as usize * BLOCK_SIZE;
        let region = &img[j..j + geo.journal_blocks as usize * BLOCK_SIZE];
        let (state, undo) = pending_undo(region, &geo).unwrap();
        assert_eq!((state.seq_done, state.pending), (7, 2));
        let got: Vec<(u64, Vec<u8>)> = undo.iter().map(|u| (u.target, u.data.clone())).collect();
        assert_eq!(got, vec![(t + 100, vec![2; 3]), (t, vec![1; 8])]);
    }

    /// Version 5: two areas, each with an unfinished transaction that set
    /// one bit of the same bitmap word (masked records), and a third bit
    /// a committed transaction set. Rolling back both, in either file or
    /// memory, clears exactly their bits.
    #[test]
    fn masked_records_of_two_areas_undo_only_their_bits() {
        use ferrofs_format::{masked_data, RECORD_MASKED};
        let geo = Geometry::for_blocks(1024, Some(64)).unwrap();
        assert_eq!(geo.journal_slots, 4);
        let mut img = vec![0u8; 1024 * BLOCK_SIZE];
        let word = geo.bitmap_start * BLOCK_SIZE as u64 + 64;
        let w = word as usize;
        img[w..w + 8].copy_from_slice(&0b111u64.to_le_bytes());
        let base = geo.journal_start as usize * BLOCK_SIZE;
        for (k, bit) in [(0u32, 0b001u64), (2, 0b010)] {
            let j = base + geo.slot_bytes(k).0;
            img[j..j + JOURNAL_RECORDS_OFF].copy_from_slice(JournalHeader::new(9).as_bytes());
            let d = masked_data(bit, 0);
            let mut h = RecordHeader::new(10, word, &d);
            h.len.set(d.len() as u32 | RECORD_MASKED);
            h.crc.set(h.compute_crc(&d));
            let at = j + JOURNAL_RECORDS_OFF;
            img[at..at + 24].copy_from_slice(h.as_bytes());
            img[at + 24..at + 40].copy_from_slice(&d);
        }
        let f = TempFile::new("masked", &img);
        assert_eq!(recover_journal(&f.open(), &geo).unwrap(), 2);
        let after = f.bytes();
        assert_eq!(
            u64::from_le_bytes(after[w..w + 8].try_into().unwrap()),
            0b100
        );
        assert_eq!(rollback_in_memory(&mut img, &geo), Ok(2));
        assert!(img == after, "file and in-memory rollback differ");
        for k in [0u32, 2] {
            let j = base + geo.slot_bytes(k).0 + JOURNAL_SEQ_DONE_OFF;
            assert_eq!(
                u64::from_le_bytes(after[j..j + 8].try_into().unwrap()),
                10,
                "area {k}"
            );
        }
        assert_eq!(recover_journal(&f.open(), &geo).unwrap(), 0, "second run");
    }

    #[test]
    fn pending_undo_of_a_bad_magic_is_bad_journal() {
        let (geo, mut img) = image_with_journal(Some(7), &[]);
        let j = geo.journal_start as usize * BLOCK_SIZE;
        img[j] ^= 1;
        let region = &img[j..j + geo.journal_blocks as usize * BLOCK_SIZE];
        assert!(matches!(
            pending_undo(region, &geo),
            Err(FormatError::BadJournal(_))
        ));
    }

    #[test]
    fn rollback_in_memory_restores_newest_record_last_undone_first() {
        let geo = Geometry::for_blocks(1024, Some(64)).unwrap();
        let t = geo.bitmap_start * BLOCK_SIZE as u64;
        // The same range logged twice: first with its original bytes.
        let (geo, mut img) = image_with_journal(Some(3), &[(t, &[1; 8]), (t, &[2; 8])]);
        img[t as usize..t as usize + 8].fill(9);
        assert_eq!(rollback_in_memory(&mut img, &geo), Ok(2));
        assert_eq!(&img[t as usize..t as usize + 8], &[1u8; 8]);
        assert_eq!(
            rollback_in_memory(&mut img, &geo),
            Ok(0),
            "rolled back twice"
        );
    }

    #[test]
    fn rollback_in_memory_of_a_fresh_header_writes_the_magic() {
        let geo = Geometry::for_blocks(1024, Some(64)).unwrap();
        let t = geo.itable_start * BLOCK_SIZE as u64;
        let (geo, mut img) = image_with_journal(None, &[(t, &[5; 16])]);
        assert_eq!(rollback_in_memory(&mut img, &geo), Ok(1));
        assert_eq!(&img[t as usize..t as usize + 16], &[5; 16]);
        let j = geo.journal_start as usize * BLOCK_SIZE;
        assert_eq!(&img[j..j + 8], &JOURNAL_MAGIC);
        assert_eq!(seq_done_of(&img, &geo), 1);
    }

    #[test]
    fn recover_journal_writes_the_old_bytes_back_and_finishes_the_transaction() {
        let geo = Geometry::for_blocks(1024, Some(64)).unwrap();
        let t = geo.bitmap_start * BLOCK_SIZE as u64;
        let (geo, mut img) = image_with_journal(Some(41), &[(t, &[1; 8]), (t + 4, &[2; 8])]);
        img[t as usize..t as usize + 12].fill(9);
        let f = TempFile::new("recover", &img);
        assert_eq!(recover_journal(&f.open(), &geo).unwrap(), 2);
        let after = f.bytes();
        // Newest first: [2; 8] at t+4, then [1; 8] over t..t+8.
        assert_eq!(
            &after[t as usize..t as usize + 12],
            &[1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2]
        );
        assert_eq!(seq_done_of(&after, &geo), 42);
        let mut want = img.clone();
        assert_eq!(rollback_in_memory(&mut want, &geo), Ok(2));
        assert!(after == want, "file and in-memory rollbacks differ");
        assert_eq!(recover_journal(&f.open(), &geo).unwrap(), 0, "second run");
        assert!(f.bytes() == after, "a clean journal was rewritten");
    }

    #[test]
    fn recover_journal_of_a_clean_journal_writes_nothing() {
        let geo = Geometry::for_blocks(1024, Some(64)).unwrap();
        let t = geo.bitmap_start * BLOCK_SIZE as u64;
        // Stale records of finished transaction 6 (seq_done 6).
        let (geo, img) = image_with_journal(Some(5), &[(t, &[1; 8])]);
        let j = geo.journal_start as usize * BLOCK_SIZE;
        let mut img = img;
        img[j..j + JOURNAL_RECORDS_OFF].copy_from_slice(JournalHeader::new(6).as_bytes());
        let f = TempFile::new("clean", &img);
        assert_eq!(recover_journal(&f.open(), &geo).unwrap(), 0);
        assert!(f.bytes() == img, "a clean journal was rewritten");
    }

    #[test]
    fn recover_journal_of_a_damaged_journal_is_invalid_data_and_writes_nothing() {
        let (geo, mut img) = image_with_journal(Some(3), &[]);
        img[geo.journal_start as usize * BLOCK_SIZE + 3] ^= 0x40;
        let f = TempFile::new("damaged", &img);
        let e = recover_journal(&f.open(), &geo).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        assert!(f.bytes() == img, "a damaged journal was written");
    }
}
