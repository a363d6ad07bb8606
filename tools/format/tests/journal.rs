//! Host tests for the undo journal's on-media rules (src/format.rs).

use ferrofs_format::*;

fn geo() -> Geometry {
    Geometry::for_blocks(4096, None).expect("geometry for 16 MiB")
}

fn region() -> Vec<u8> {
    vec![0u8; JOURNAL_BLOCKS as usize * BLOCK_SIZE]
}

/// Append a record at `pos` as the module does; returns the next position.
fn put(r: &mut [u8], pos: usize, seq: u64, target: u64, data: &[u8]) -> usize {
    let h = RecordHeader::new(seq, target, data);
    r[pos..pos + RECORD_HEADER_SIZE].copy_from_slice(h.as_bytes());
    r[pos + RECORD_HEADER_SIZE..pos + RECORD_HEADER_SIZE + data.len()].copy_from_slice(data);
    pos + record_size(data.len())
}

fn header(r: &mut [u8], seq_done: u64) {
    r[..JOURNAL_RECORDS_OFF].copy_from_slice(JournalHeader::new(seq_done).as_bytes());
}

fn meta(g: &Geometry, k: u64) -> u64 {
    g.bitmap_start * BLOCK_SIZE as u64 + 8 * k
}

#[test]
fn zeroed_region_is_a_fresh_clean_journal() {
    let s = JournalState::parse(&region(), &geo()).expect("zeroed journal parses");
    assert!(s.fresh);
    assert_eq!((s.seq_done, s.pending), (0, 0));
}

#[test]
fn records_of_the_next_transaction_are_pending_in_order() {
    let g = geo();
    let mut r = region();
    header(&mut r, 41);
    let p = put(&mut r, JOURNAL_RECORDS_OFF, 42, meta(&g, 0), &[1; 8]);
    let p = put(&mut r, p, 42, meta(&g, 100), &[2; 13]);
    let s = JournalState::parse(&r, &g).expect("parses");
    assert!(!s.fresh);
    assert_eq!((s.seq_done, s.pending, s.end), (41, 2, p));
    let recs: Vec<_> = Records::new(&r, 41, &g)
        .map(|x| x.expect("valid"))
        .collect();
    assert_eq!(recs[0].target, meta(&g, 0));
    assert_eq!(recs[1].data, &[2; 13]);
}

#[test]
fn records_of_a_finished_transaction_are_not_pending() {
    let g = geo();
    let mut r = region();
    header(&mut r, 42);
    put(&mut r, JOURNAL_RECORDS_OFF, 42, meta(&g, 0), &[1; 8]);
    assert_eq!(JournalState::parse(&r, &g).expect("parses").pending, 0);
}

#[test]
fn a_torn_record_ends_the_transaction() {
    let g = geo();
    let mut r = region();
    header(&mut r, 7);
    let p = put(&mut r, JOURNAL_RECORDS_OFF, 8, meta(&g, 0), &[1; 8]);
    let q = put(&mut r, p, 8, meta(&g, 1), &[2; 64]);
    put(&mut r, q, 8, meta(&g, 9), &[3; 8]);
    // Tear the middle record's data: it and everything after are not valid.
    r[p + RECORD_HEADER_SIZE + 10] ^= 0xff;
    assert_eq!(JournalState::parse(&r, &g).expect("parses").pending, 1);
}

#[test]
fn stale_records_after_the_new_ones_are_ignored() {
    let g = geo();
    let mut r = region();
    header(&mut r, 7);
    let p = put(&mut r, JOURNAL_RECORDS_OFF, 7, meta(&g, 0), &[1; 8]);
    put(&mut r, p, 7, meta(&g, 1), &[2; 8]);
    // Transaction 8 overwrote only the first record.
    put(&mut r, JOURNAL_RECORDS_OFF, 8, meta(&g, 5), &[9; 8]);
    let s = JournalState::parse(&r, &g).expect("parses");
    assert_eq!(s.pending, 1);
}

#[test]
fn a_valid_record_outside_the_metadata_is_damage() {
    let g = geo();
    for target in [
        0,
        BLOCK_SIZE as u64,
        g.blocks_count * BLOCK_SIZE as u64 - 4,
        u64::MAX - 2,
    ] {
        let mut r = region();
        header(&mut r, 0);
        put(&mut r, JOURNAL_RECORDS_OFF, 1, target, &[1; 8]);
        let e = JournalState::parse(&r, &g).expect_err("target out of range must fail");
        assert!(
            matches!(e, FormatError::BadJournal(_)),
            "target {target}: {e:?}"
        );
    }
}

#[test]
fn bad_magic_or_garbage_header_is_damage() {
    let g = geo();
    let mut r = region();
    header(&mut r, 3);
    r[0] ^= 1;
    assert!(matches!(
        JournalState::parse(&r, &g),
        Err(FormatError::BadJournal(_))
    ));
    let mut r = region();
    r[30] = 1;
    assert!(matches!(
        JournalState::parse(&r, &g),
        Err(FormatError::BadJournal(_))
    ));
}

#[test]
fn oversized_or_overrunning_records_end_the_walk() {
    let g = geo();
    let mut r = region();
    header(&mut r, 0);
    // A header claiming more data than the region holds.
    let mut h = RecordHeader::new(1, meta(&g, 0), &[0; 8]);
    h.len.set(u32::MAX);
    r[JOURNAL_RECORDS_OFF..JOURNAL_RECORDS_OFF + RECORD_HEADER_SIZE].copy_from_slice(h.as_bytes());
    assert_eq!(JournalState::parse(&r, &g).expect("parses").pending, 0);
    // A too-short region never panics.
    assert!(JournalState::parse(&r[..10], &g).is_err());
    let short = &r[..JOURNAL_RECORDS_OFF + 5];
    assert_eq!(JournalState::parse(short, &g).expect("parses").pending, 0);
}

#[test]
fn record_sizes_are_8_byte_multiples() {
    assert_eq!(record_size(1), RECORD_HEADER_SIZE + 8);
    assert_eq!(record_size(8), RECORD_HEADER_SIZE + 8);
    assert_eq!(record_size(256), RECORD_HEADER_SIZE + 256);
    assert_eq!(RECORD_HEADER_SIZE % 8, 0);
}

#[test]
fn a_record_torn_between_two_versions_of_an_inode_is_not_valid() {
    // Found by ferrocrash: with a CRC-32C record check, the header of a new
    // record over the old record's data (same slot, older inode) passed.
    let g = geo();
    let mut old = Inode::zeroed();
    old.mode.set(S_IFREG | 0o644);
    old.direct[0].set(149);
    old.blocks.set(1);
    old.update_checksum(40);
    let mut new = old;
    new.direct[1].set(150);
    new.blocks.set(2);
    new.update_checksum(40);
    let target = g.itable_start * BLOCK_SIZE as u64;
    let mut r = region();
    header(&mut r, 7);
    put(&mut r, JOURNAL_RECORDS_OFF, 8, target, new.as_bytes());
    // The data lines did not persist: the previous record's bytes remain.
    let at = JOURNAL_RECORDS_OFF + RECORD_HEADER_SIZE;
    r[at..at + INODE_SIZE].copy_from_slice(old.as_bytes());
    assert_eq!(JournalState::parse(&r, &g).expect("parses").pending, 0);
}

#[test]
fn journal_sequence_number_near_the_top_is_refused() {
    // A checksummed header with seq_done = 2^64-1 once made the module add
    // with overflow (a kernel panic with overflow checks on).
    let g = geo();
    for bad in [u64::MAX, u64::MAX - 1, JOURNAL_SEQ_MAX + 1] {
        let mut r = region();
        header(&mut r, bad);
        assert_eq!(
            JournalState::parse(&r, &g).map(|s| s.seq_done),
            Err(FormatError::BadJournal(
                "journal sequence number out of range"
            )),
            "seq_done {bad:#x}"
        );
    }
    let mut r = region();
    header(&mut r, JOURNAL_SEQ_MAX);
    assert!(JournalState::parse(&r, &g).is_ok());
}
