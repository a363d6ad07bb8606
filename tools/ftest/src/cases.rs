//! The DAX mmap/fsync cases. Each runs in its own process (see runner.rs)
//! and asserts the outcomes ferrofs promises: which pages get marked dirty,
//! how many an fsync flushes, what reaches the file, where SIGBUS comes.

use crate::coherence;
use crate::counters::{valid_flush_insn, Field};
use crate::gup;
use crate::mapsync;
use crate::pattern;
use crate::pmd;
use crate::runner::{Case, CaseError, CaseResult, Ctx};
use crate::stress;
use crate::sys::{touch_in_child, ChildEnd, Fd, Map, PAGE};

use Field::*;

pub static CASES: &[Case] = &[
    Case {
        name: "mmap_store_k_pages_fsync_flushes_exactly_k",
        needs_counters: true,
        run: mmap_store_k_pages_fsync_flushes_exactly_k,
    },
    Case {
        name: "second_fsync_without_stores_flushes_nothing",
        needs_counters: true,
        run: second_fsync_without_stores_flushes_nothing,
    },
    Case {
        name: "store_after_fsync_faults_again_and_is_flushed",
        needs_counters: true,
        run: store_after_fsync_faults_again_and_is_flushed,
    },
    Case {
        name: "read_then_store_goes_through_pfn_mkwrite",
        needs_counters: true,
        run: read_then_store_goes_through_pfn_mkwrite,
    },
    Case {
        name: "ranged_msync_flushes_only_its_range",
        needs_counters: true,
        run: ranged_msync_flushes_only_its_range,
    },
    Case {
        name: "fsync_after_munmap_flushes_the_stores",
        needs_counters: false,
        run: fsync_after_munmap_flushes_the_stores,
    },
    Case {
        name: "map_private_stores_do_not_reach_the_file",
        needs_counters: false,
        run: map_private_stores_do_not_reach_the_file,
    },
    Case {
        name: "fault_beyond_eof_gets_sigbus",
        needs_counters: false,
        run: fault_beyond_eof_gets_sigbus,
    },
    Case {
        name: "truncate_while_mapped_removes_entries_and_sigbus",
        needs_counters: false,
        run: truncate_while_mapped_removes_entries_and_sigbus,
    },
    Case {
        name: "hole_read_through_mapping_is_zero",
        needs_counters: false,
        run: hole_read_through_mapping_is_zero,
    },
    Case {
        name: "write_and_mmap_are_coherent",
        needs_counters: false,
        run: write_and_mmap_are_coherent,
    },
    Case {
        name: "mmap_store_survives_close_and_reopen",
        needs_counters: false,
        run: mmap_store_survives_close_and_reopen,
    },
    Case {
        name: "counters_add_up",
        needs_counters: true,
        run: counters_add_up,
    },
    Case {
        name: "hole_mappings_see_pwrite",
        needs_counters: false,
        run: coherence::hole_mappings_see_pwrite,
    },
    Case {
        name: "hole_mappings_see_fallocate_then_pwrite",
        needs_counters: false,
        run: coherence::hole_mappings_see_fallocate_then_pwrite,
    },
    Case {
        name: "hole_mappings_see_child_store",
        needs_counters: false,
        run: coherence::hole_mappings_see_child_store,
    },
    Case {
        name: "hole_mappings_see_own_store",
        needs_counters: false,
        run: coherence::hole_mappings_see_own_store,
    },
    Case {
        name: "hole_fill_race_stress",
        needs_counters: false,
        run: coherence::hole_fill_race_stress,
    },
    Case {
        name: "block_pointer_race_stress",
        needs_counters: false,
        run: coherence::block_pointer_race_stress,
    },
    Case {
        name: "syncfs_flushes_stores_made_during_writeback",
        needs_counters: true,
        run: coherence::syncfs_flushes_stores_made_during_writeback,
    },
    Case {
        name: "write_faults_racing_fsync_leave_no_unmarked_writable_pte",
        needs_counters: true,
        run: coherence::write_faults_racing_fsync_leave_no_unmarked_writable_pte,
    },
    Case {
        name: "shared_futex_wait_wake_between_processes",
        needs_counters: false,
        run: gup::shared_futex_wait_wake_between_processes,
    },
    Case {
        name: "shared_futex_wait_times_out",
        needs_counters: false,
        run: gup::shared_futex_wait_times_out,
    },
    Case {
        name: "robust_pshared_mutex_under_contention",
        needs_counters: false,
        run: gup::robust_pshared_mutex_under_contention,
    },
    Case {
        name: "proc_self_mem_reads_and_writes_mapped_bytes",
        needs_counters: false,
        run: gup::proc_self_mem_reads_and_writes_mapped_bytes,
    },
    Case {
        name: "fsync_keeps_pinned_pages_dirty",
        needs_counters: true,
        run: gup::fsync_keeps_pinned_pages_dirty,
    },
    Case {
        name: "odirect_read_from_block_device_into_mapping",
        needs_counters: false,
        run: gup::odirect_read_from_block_device_into_mapping,
    },
    Case {
        name: "odirect_write_from_mapping_to_block_device",
        needs_counters: false,
        run: gup::odirect_write_from_mapping_to_block_device,
    },
    Case {
        name: "truncate_racing_odirect_read_stress",
        needs_counters: false,
        run: gup::truncate_racing_odirect_read_stress,
    },
    Case {
        name: "map_sync_mapping_is_accepted_and_faults_are_synchronous",
        needs_counters: false,
        run: mapsync::map_sync_mapping_is_accepted_and_faults_are_synchronous,
    },
    Case {
        name: "statx_reports_dax",
        needs_counters: false,
        run: mapsync::statx_reports_dax,
    },
    Case {
        name: "fiemap_maps_file_offsets_to_device_offsets",
        needs_counters: false,
        run: mapsync::fiemap_maps_file_offsets_to_device_offsets,
    },
    Case {
        name: "longterm_pin_of_a_dax_mapping_is_refused",
        needs_counters: false,
        run: mapsync::longterm_pin_of_a_dax_mapping_is_refused,
    },
    Case {
        name: "pmd_write_faults_map_2mib_and_fsync_flushes_each_once",
        needs_counters: true,
        run: pmd::pmd_write_faults_map_2mib_and_fsync_flushes_each_once,
    },
    Case {
        name: "pmd_write_faults_racing_fsync_leave_no_unmarked_writable_pmd",
        needs_counters: true,
        run: pmd::pmd_write_faults_racing_fsync_leave_no_unmarked_writable_pmd,
    },
    Case {
        name: "skewed_and_small_mappings_of_pmd_extents_map_each_page",
        needs_counters: true,
        run: pmd::skewed_and_small_mappings_of_pmd_extents_map_each_page,
    },
    Case {
        name: "punch_inside_a_pmd_keeps_the_rest_dirty",
        needs_counters: true,
        run: pmd::punch_inside_a_pmd_keeps_the_rest_dirty,
    },
    Case {
        name: "futexes_in_pages_of_a_pmd_mapping_have_their_own_keys",
        needs_counters: true,
        run: pmd::futexes_in_pages_of_a_pmd_mapping_have_their_own_keys,
    },
    Case {
        name: "sequential_writes_from_offset_0_make_every_2mib_one_extent",
        needs_counters: true,
        run: pmd::sequential_writes_from_offset_0_make_every_2mib_one_extent,
    },
    Case {
        name: "read_pmds_see_punches_and_truncates_that_follow",
        needs_counters: true,
        run: pmd::read_pmds_see_punches_and_truncates_that_follow,
    },
    Case {
        name: "truncate_race_stress",
        needs_counters: false,
        run: stress::truncate_race_stress,
    },
    Case {
        name: "truncate_race_stress_pmd",
        needs_counters: false,
        run: stress::truncate_race_stress_pmd,
    },
    Case {
        name: "concurrent_metadata_stress",
        needs_counters: false,
        run: crate::mtstress::concurrent_metadata_stress,
    },
];

/// Ten distinct pages of a 64-page file.
const K10: [usize; 10] = [0, 3, 7, 12, 18, 25, 33, 42, 52, 63];

/// Where in `page` the single-byte stores go (varies, never page start only).
fn spot(page: usize) -> usize {
    page * PAGE + (page * 37 + 11) % PAGE
}

/// A new sparse file of `pages` pages (ftruncate), mapped shared read-write.
fn new_mapped(ctx: &Ctx, pages: usize) -> Result<(Fd, Map), CaseError> {
    let fd = Fd::create(&ctx.file(""))?;
    fd.ftruncate((pages * PAGE) as u64)?;
    let map = Map::shared_rw(&fd, pages * PAGE)?;
    Ok((fd, map))
}

fn store_pages(map: &Map, pages: &[usize], v: u8) {
    for &p in pages {
        map.write(spot(p), v);
    }
}

/// Checks `data` (bytes `off..` of a file) against pattern `seed`.
fn check_pattern(ctx: &mut Ctx, what: &str, seed: u64, off: u64, data: &[u8]) {
    if let Some((at, want, got)) = pattern::first_mismatch(seed, off, data) {
        ctx.fail(&format!(
            "{what}: first mismatch at offset {at}: expected {want:#04x}, got {got:#04x}"
        ));
    }
}

fn check_zero(ctx: &mut Ctx, what: &str, off: u64, data: &[u8]) {
    if let Some(i) = data.iter().position(|&b| b != 0) {
        ctx.fail(&format!(
            "{what}: expected zeros, offset {} holds {:#04x}",
            off + i as u64,
            data[i]
        ));
    }
}

fn pattern_vec(seed: u64, off: u64, len: usize) -> Vec<u8> {
    let mut v = vec![0u8; len];
    pattern::fill(seed, off, &mut v);
    v
}

fn expect_sigbus(ctx: &mut Ctx, what: &str, end: ChildEnd) {
    ctx.check(end == ChildEnd::Signaled(libc::SIGBUS), || {
        format!("{what}: expected the child to be killed by SIGBUS, it {end}")
    });
}

fn mmap_store_k_pages_fsync_flushes_exactly_k(ctx: &mut Ctx) -> CaseResult {
    let (fd, map) = new_mapped(ctx, 64)?;
    let s0 = ctx.snap()?;
    store_pages(&map, &K10, 0xa5);
    let s1 = ctx.snap()?;
    let step = "stores to 10 clean pages";
    ctx.check_delta_sum(step, &s0, &s1, &[WriteFaults, PfnMkwrite], 10);
    ctx.check_delta(step, &s0, &s1, EntriesMarked, 10);
    fd.fsync()?;
    let s2 = ctx.snap()?;
    ctx.check_delta("fsync", &s1, &s2, EntriesFlushed, 10);
    ctx.check_delta("fsync", &s1, &s2, LinesFlushed, 640);
    ctx.check_delta("fsync", &s1, &s2, FsyncCalls, 1);
    Ok(())
}

fn second_fsync_without_stores_flushes_nothing(ctx: &mut Ctx) -> CaseResult {
    let (fd, map) = new_mapped(ctx, 64)?;
    let s0 = ctx.snap()?;
    store_pages(&map, &K10, 0x11);
    fd.fsync()?;
    let s1 = ctx.snap()?;
    ctx.check_delta("first fsync", &s0, &s1, EntriesFlushed, 10);
    fd.fsync()?;
    let s2 = ctx.snap()?;
    ctx.check_delta("second fsync", &s1, &s2, EntriesFlushed, 0);
    ctx.check_delta("second fsync", &s1, &s2, LinesFlushed, 0);
    ctx.check_delta("second fsync", &s1, &s2, FsyncCalls, 1);
    Ok(())
}

fn store_after_fsync_faults_again_and_is_flushed(ctx: &mut Ctx) -> CaseResult {
    let (fd, map) = new_mapped(ctx, 64)?;
    store_pages(&map, &K10, 0x22);
    fd.fsync()?;
    let s0 = ctx.snap()?;
    map.write(spot(3), 0x23);
    let s1 = ctx.snap()?;
    let step = "store to a flushed page";
    ctx.check_delta_sum(step, &s0, &s1, &[WriteFaults, PfnMkwrite], 1);
    ctx.check_delta(step, &s0, &s1, EntriesMarked, 1);
    // The page is writable and dirty now: another store neither faults
    // nor marks.
    map.write(spot(3) + 1, 0x24);
    let s2 = ctx.snap()?;
    let step = "second store to the dirty page";
    ctx.check_delta_sum(step, &s1, &s2, &[WriteFaults, PfnMkwrite], 0);
    ctx.check_delta(step, &s1, &s2, EntriesMarked, 0);
    fd.fsync()?;
    let s3 = ctx.snap()?;
    ctx.check_delta("fsync", &s2, &s3, EntriesFlushed, 1);
    ctx.check_delta("fsync", &s2, &s3, LinesFlushed, 64);
    Ok(())
}

fn read_then_store_goes_through_pfn_mkwrite(ctx: &mut Ctx) -> CaseResult {
    let (fd, map) = new_mapped(ctx, 64)?;
    // Page 5 gets a block (and K10 some company), then fsync zaps the PTEs.
    store_pages(&map, &[5], 0x55);
    store_pages(&map, &K10, 0x33);
    fd.fsync()?;
    let s0 = ctx.snap()?;
    let v = map.read(spot(5));
    ctx.check_eq("byte read back from page 5", 0x55, v);
    let s1 = ctx.snap()?;
    let step = "read of page 5";
    ctx.check_delta(step, &s0, &s1, WriteFaults, 0);
    ctx.check_delta(step, &s0, &s1, PfnMkwrite, 0);
    ctx.check_delta(step, &s0, &s1, EntriesMarked, 0);
    map.write(spot(5), 0x56);
    let s2 = ctx.snap()?;
    let step = "store to the read-mapped page 5";
    ctx.check_delta(step, &s1, &s2, PfnMkwrite, 1);
    ctx.check_delta(step, &s1, &s2, WriteFaults, 0);
    ctx.check_delta(step, &s1, &s2, EntriesMarked, 1);
    // pfn_mkwrite made the read-only PTE writable in place: the next store
    // to the page faults no more.
    map.write(spot(5) + 64, 0x57);
    let s2b = ctx.snap()?;
    let step = "second store to page 5";
    ctx.check_delta(step, &s2, &s2b, PfnMkwrite, 0);
    ctx.check_delta(step, &s2, &s2b, WriteFaults, 0);
    fd.fsync()?;
    let s3 = ctx.snap()?;
    ctx.check_delta("fsync", &s2b, &s3, EntriesFlushed, 1);
    Ok(())
}

fn ranged_msync_flushes_only_its_range(ctx: &mut Ctx) -> CaseResult {
    let (fd, map) = new_mapped(ctx, 64)?;
    let pages: Vec<usize> = (0..16).collect();
    store_pages(&map, &pages, 0x44);
    let s0 = ctx.snap()?;
    map.msync(4 * PAGE, 4 * PAGE, libc::MS_SYNC)?;
    let s1 = ctx.snap()?;
    ctx.check_delta("msync of pages 4..8", &s0, &s1, EntriesFlushed, 4);
    ctx.check_delta("msync of pages 4..8", &s0, &s1, LinesFlushed, 256);
    fd.fsync()?;
    let s2 = ctx.snap()?;
    ctx.check_delta("fsync after the msync", &s1, &s2, EntriesFlushed, 12);
    ctx.check_delta("fsync after the msync", &s1, &s2, LinesFlushed, 768);
    Ok(())
}

fn fsync_after_munmap_flushes_the_stores(ctx: &mut Ctx) -> CaseResult {
    const PAGES: [usize; 8] = [1, 2, 9, 17, 30, 31, 47, 60];
    let path = ctx.file("");
    let (fd, map) = new_mapped(ctx, 64)?;
    let s0 = ctx.snap()?;
    for &p in &PAGES {
        map.write(spot(p), p as u8 + 1);
    }
    let s1 = ctx.snap()?;
    ctx.check_delta("stores to 8 pages", &s0, &s1, EntriesMarked, 8);
    map.unmap()?;
    let s2 = ctx.snap()?;
    fd.fsync()?;
    let s3 = ctx.snap()?;
    ctx.check_delta("fsync after munmap", &s2, &s3, EntriesFlushed, 8);
    ctx.check_delta("fsync after munmap", &s2, &s3, LinesFlushed, 512);
    drop(fd);
    let fd = Fd::open_ro(&path)?;
    let mut data = vec![0u8; 64 * PAGE];
    let n = fd.read_full(&mut data)?;
    ctx.check_eq("bytes read back", 64 * PAGE, n);
    let mut want = vec![0u8; 64 * PAGE];
    for &p in &PAGES {
        want[spot(p)] = p as u8 + 1;
    }
    if let Some(i) = (0..n).find(|&i| data[i] != want[i]) {
        ctx.fail(&format!(
            "read(2) after reopen: offset {i} (page {}): expected {:#04x}, got {:#04x}",
            i / PAGE,
            want[i],
            data[i]
        ));
    }
    Ok(())
}

fn map_private_stores_do_not_reach_the_file(ctx: &mut Ctx) -> CaseResult {
    const LEN: usize = 4 * PAGE;
    const SEED: u64 = 7;
    let path = ctx.file("");
    let fd = Fd::create(&path)?;
    fd.write_all(&pattern_vec(SEED, 0, LEN))?;
    fd.fsync()?;
    let s0 = ctx.snap()?;
    let map = Map::private_rw(&fd, LEN)?;
    let mut orig = vec![0u8; LEN];
    map.copy_out(0, &mut orig);
    check_pattern(ctx, "MAP_PRIVATE mapping before the stores", SEED, 0, &orig);
    // Overwrite the first 256 bytes of every page with their complement.
    for p in 0..4 {
        let new: Vec<u8> = orig[p * PAGE..p * PAGE + 256].iter().map(|b| !b).collect();
        map.copy_in(p * PAGE, &new);
    }
    let mut seen = vec![0u8; LEN];
    map.copy_out(0, &mut seen);
    for i in 0..LEN {
        let want = if i % PAGE < 256 { !orig[i] } else { orig[i] };
        if seen[i] != want {
            ctx.fail(&format!(
                "private mapping after the stores: offset {i}: expected {want:#04x}, got {:#04x}",
                seen[i]
            ));
            break;
        }
    }
    map.unmap()?;
    let s1 = ctx.snap()?;
    ctx.check_delta("MAP_PRIVATE stores", &s0, &s1, EntriesMarked, 0);
    fd.fsync()?;
    let s2 = ctx.snap()?;
    ctx.check_delta(
        "fsync after MAP_PRIVATE stores",
        &s1,
        &s2,
        EntriesFlushed,
        0,
    );
    drop(fd);
    let fd = Fd::open_ro(&path)?;
    let mut data = vec![0u8; LEN + 1];
    let n = fd.read_full(&mut data)?;
    ctx.check_eq("file size read back", LEN, n);
    check_pattern(ctx, "file after MAP_PRIVATE stores", SEED, 0, &data[..n]);
    Ok(())
}

fn fault_beyond_eof_gets_sigbus(ctx: &mut Ctx) -> CaseResult {
    const SIZE: usize = PAGE + 10;
    const SEED: u64 = 8;
    let fd = Fd::create(&ctx.file(""))?;
    fd.write_all(&pattern_vec(SEED, 0, SIZE))?;
    fd.fsync()?;
    let map = Map::shared_rw(&fd, 3 * PAGE)?;
    let mut data = vec![0u8; 2 * PAGE];
    map.copy_out(0, &mut data);
    check_pattern(ctx, "pages 0-1 through the mapping", SEED, 0, &data[..SIZE]);
    check_zero(ctx, "page 1 beyond EOF", SIZE as u64, &data[SIZE..]);
    let end = touch_in_child(&map, 2 * PAGE + 100, false)?;
    expect_sigbus(ctx, "load from page 2 (beyond EOF)", end);
    let end = touch_in_child(&map, 2 * PAGE, true)?;
    expect_sigbus(ctx, "store to page 2 (beyond EOF)", end);
    // The partial page still works after all that.
    let end = touch_in_child(&map, PAGE + 5, false)?;
    ctx.check(end == ChildEnd::Exited(0), || {
        format!("load from page 1 (partial, within EOF): the child {end}")
    });
    Ok(())
}

fn truncate_while_mapped_removes_entries_and_sigbus(ctx: &mut Ctx) -> CaseResult {
    let (fd, map) = new_mapped(ctx, 8)?;
    let all: Vec<usize> = (0..8).collect();
    let s0 = ctx.snap()?;
    for &p in &all {
        map.write(spot(p), 0x60 + p as u8);
    }
    let s1 = ctx.snap()?;
    ctx.check_delta("stores to 8 pages", &s0, &s1, EntriesMarked, 8);
    fd.ftruncate(2 * PAGE as u64)?;
    let s2 = ctx.snap()?;
    ctx.check_delta("ftruncate to 2 pages", &s1, &s2, EntriesRemoved, 6);
    ctx.check_delta("ftruncate to 2 pages", &s1, &s2, EntriesFlushed, 0);
    let end = touch_in_child(&map, spot(5), false)?;
    expect_sigbus(ctx, "load from page 5 after truncation", end);
    let end = touch_in_child(&map, spot(2), true)?;
    expect_sigbus(ctx, "store to page 2 after truncation", end);
    for p in 0..2 {
        ctx.check_eq(
            &format!("page {p} byte through the mapping"),
            0x60 + p as u8,
            map.read(spot(p)),
        );
    }
    let s3 = ctx.snap()?;
    fd.fsync()?;
    let s4 = ctx.snap()?;
    ctx.check_delta("fsync after truncation", &s3, &s4, EntriesFlushed, 2);
    ctx.check_eq("file size", 2 * PAGE as u64, fd.size()?);
    let mut b = [0u8; 1];
    for p in 0..2 {
        fd.pread_exact(&mut b, spot(p) as u64)?;
        ctx.check_eq(&format!("page {p} byte by pread"), 0x60 + p as u8, b[0]);
    }
    Ok(())
}

fn hole_read_through_mapping_is_zero(ctx: &mut Ctx) -> CaseResult {
    const LEN: usize = 16 * PAGE;
    let fd = Fd::create(&ctx.file(""))?;
    fd.ftruncate(LEN as u64)?;
    ctx.check_eq("st_blocks after ftruncate", 0, fd.stat()?.st_blocks);
    let s0 = ctx.snap()?;
    let map = Map::shared_ro(&fd, LEN)?;
    let mut data = vec![0xeeu8; LEN];
    map.copy_out(0, &mut data);
    check_zero(ctx, "sparse file through a shared mapping", 0, &data);
    map.unmap()?;
    let s1 = ctx.snap()?;
    ctx.check_delta("reads of holes", &s0, &s1, EntriesMarked, 0);
    ctx.check_eq("st_blocks after reading the holes", 0, fd.stat()?.st_blocks);
    ctx.check_eq("file size", LEN as u64, fd.size()?);
    Ok(())
}

fn write_and_mmap_are_coherent(ctx: &mut Ctx) -> CaseResult {
    const LEN: usize = 8 * PAGE;
    let fd = Fd::create(&ctx.file(""))?;
    fd.write_all(&pattern_vec(11, 0, LEN))?;
    let map = Map::shared_rw(&fd, LEN)?;
    let mut data = vec![0u8; LEN];
    map.copy_out(0, &mut data);
    check_pattern(ctx, "mapping after write(2)", 11, 0, &data);

    // Stores through the mapping (pages 2..6) are what pread sees.
    let off = 2 * PAGE;
    map.copy_in(off, &pattern_vec(12, off as u64, 4 * PAGE));
    let mut got = vec![0u8; LEN];
    fd.pread_exact(&mut got, 0)?;
    check_pattern(ctx, "pread of pages 0-1 (unchanged)", 11, 0, &got[..off]);
    check_pattern(
        ctx,
        "pread of pages 2-5 (stored through the mapping)",
        12,
        off as u64,
        &got[off..off + 4 * PAGE],
    );
    check_pattern(
        ctx,
        "pread of pages 6-7 (unchanged)",
        11,
        (off + 4 * PAGE) as u64,
        &got[off + 4 * PAGE..],
    );

    // And pwrite (a partial page) is what the mapping sees.
    let off = 7 * PAGE + 100;
    fd.pwrite_all(&pattern_vec(13, off as u64, 1000), off as u64)?;
    let mut seen = vec![0u8; 1000];
    map.copy_out(off, &mut seen);
    check_pattern(
        ctx,
        "mapping after pwrite into page 7",
        13,
        off as u64,
        &seen,
    );
    let mut around = vec![0u8; 100];
    map.copy_out(7 * PAGE, &mut around);
    check_pattern(
        ctx,
        "page 7 before the pwrite range",
        11,
        7 * PAGE as u64,
        &around,
    );
    Ok(())
}

fn mmap_store_survives_close_and_reopen(ctx: &mut Ctx) -> CaseResult {
    const LEN: usize = 8 * PAGE;
    const SEED: u64 = 12;
    let path = ctx.file("");
    let (fd, map) = new_mapped(ctx, 8)?;
    map.copy_in(0, &pattern_vec(SEED, 0, LEN));
    let s0 = ctx.snap()?;
    map.msync(0, LEN, libc::MS_SYNC)?;
    let s1 = ctx.snap()?;
    ctx.check_delta("msync of 8 stored pages", &s0, &s1, EntriesFlushed, 8);
    map.unmap()?;
    drop(fd);
    let fd = Fd::open_ro(&path)?;
    ctx.check_eq("file size after reopen", LEN as u64, fd.size()?);
    let mut data = vec![0u8; LEN + 1];
    let n = fd.read_full(&mut data)?;
    ctx.check_eq("bytes read after reopen", LEN, n);
    check_pattern(ctx, "read(2) after reopen", SEED, 0, &data[..n]);
    Ok(())
}

fn counters_add_up(ctx: &mut Ctx) -> CaseResult {
    let Some(c) = ctx.snap()? else {
        return Err(CaseError::Skip("needs counters".into()));
    };
    ctx.diag(&c.to_string());
    ctx.check_invariant(&Some(c.clone()));
    ctx.check(valid_flush_insn(&c.flush_insn), || {
        format!(
            "flush_insn: expected clwb, clflushopt or clflush, got {:?}",
            c.flush_insn
        )
    });
    Ok(())
}
